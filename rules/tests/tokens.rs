//! The token stream: `$variables`, `include`, tokens put back, far look-ahead.

use rules::{parse_ruleset, parse_ruleset_with, print_ruleset, Loader, PrintOptions};

struct Files(&'static [(&'static str, &'static str)]);

impl Loader for Files {
    fn load(&self, path: &str, _from: &str) -> Result<Vec<(String, String)>, String> {
        let hits: Vec<(String, String)> = self
            .0
            .iter()
            .filter(|(n, _)| match path.strip_suffix('*') {
                Some(stem) => n.starts_with(stem),
                None => *n == path,
            })
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect();
        if hits.is_empty() {
            Err(format!("File not found: {path}"))
        } else {
            Ok(hits)
        }
    }
}

fn list(src: &str, loader: &dyn Loader) -> String {
    let rs = parse_ruleset_with(src, "main.nft", loader).unwrap_or_else(|d| panic!("{d}"));
    print_ruleset(&rs, &PrintOptions::default(), None)
}

#[test]
fn variables_nest_and_expand_everywhere() {
    let src = "define NET = 10.0.0.0/8\ndefine NETS = { $NET, 192.0.2.1 }\ndefine V = drop\n\
               table ip t {\n\tchain c {\n\t\tip saddr $NETS tcp dport 22 $V\n\t\tip daddr $NET $V\n\t}\n}\n";
    assert_eq!(
        list(src, &rules::NoIncludes),
        "table ip t {\n\tchain c {\n\t\tip saddr { 10.0.0.0/8, 192.0.2.1 } tcp dport 22 drop\n\t\tip daddr 10.0.0.0/8 drop\n\t}\n}\n"
    );
}

#[test]
fn includes_splice_files_in_order_with_their_own_locations() {
    let files = Files(&[
        ("rules.d/a.nft", "add rule t c tcp dport 22 accept\n"),
        ("rules.d/b.nft", "add rule t c tcp dport 80 accept"),
        ("vars.nft", "define P = 443\n"),
        (
            "bad.nft",
            "table ip u {\n\tchain c {\n\t\ttcp dport 70000 accept\n\t}\n}\n",
        ),
    ]);
    let src = "include \"vars.nft\"\ntable ip t {\n\tchain c {\n\t}\n}\n\
               add rule t c tcp dport 21 accept\ninclude \"rules.d/*\"\nadd rule t c tcp dport $P accept\n";
    assert_eq!(
        list(src, &files),
        "table ip t {\n\tchain c {\n\t\ttcp dport 21 accept\n\t\ttcp dport 22 accept\n\t\ttcp dport 80 accept\n\t\ttcp dport 443 accept\n\t}\n}\n"
    );
    let e = parse_ruleset_with("include \"bad.nft\"\n", "main.nft", &files)
        .unwrap_err()
        .to_string();
    assert!(
        // nft 1.0.6 names the include statement (its location takes in the newline after it)
        e.starts_with(
            "In file included from main.nft:1:1-18:\nbad.nft:3:13-17: Error: Service out of range"
        ),
        "{e}"
    );
}

#[test]
fn many_rules_share_one_variable() {
    // expansion must not cost time proportional to the rest of the file
    let mut src = String::from("define IF = \"eth0\"\ntable ip t {\n\tchain c {\n");
    for i in 0..20_000 {
        src.push_str(&format!(
            "\t\tiifname $IF tcp dport {} accept\n",
            i % 65535 + 1
        ));
    }
    src.push_str("\t}\n}\n");
    let rs = parse_ruleset(&src, "v.nft").unwrap();
    assert_eq!(rs.tables[0].chains[0].rules.len(), 20_000);
}

#[test]
fn glued_units_and_far_lookahead() {
    // `1025bytes` is split and the unit put back; `map { k : a . p }` is found by scanning ahead
    let src = "table ip t {\n\tchain c {\n\t\tlimit rate over 1025bytes/second drop\n\t}\n\
               \tchain n {\n\t\ttype nat hook prerouting priority dstnat; policy accept;\n\
               \t\tmeta l4proto tcp dnat to ip saddr map { 192.0.2.1 : 10.0.0.1 . 8080 }\n\t}\n}\n";
    let out = list(src, &rules::NoIncludes);
    assert!(out.contains("limit rate over 1025 bytes/second"), "{out}");
    assert!(
        out.contains("meta l4proto tcp dnat to ip saddr map { 192.0.2.1 : 10.0.0.1 . 8080 }"),
        "{out}"
    );
}

#[test]
fn recursive_variables_end_in_an_error() {
    for src in [
        "define A = $A\ntable ip t {\n\tchain c {\n\t\tip saddr $A drop\n\t}\n}\n",
        "define A = $B\ndefine B = { $A, 1.2.3.4 }\ntable ip t {\n\tchain c {\n\t\tip saddr $B drop\n\t}\n}\n",
    ] {
        assert!(parse_ruleset(src, "r.nft").is_err());
    }
}

#[test]
fn look_ahead_over_a_long_map() {
    // deciding whether a map's data has ports scans the whole map (hundreds of tokens ahead); the
    // tokens looked at are then read one by one, and the rule after it from the file again
    let map = (1..=60)
        .map(|i| format!("192.0.2.{i} : 10.0.0.{i}"))
        .collect::<Vec<_>>()
        .join(", ");
    let rules = format!(
        "\t\tmeta l4proto tcp dnat to ip saddr map {{ {map} }}\n\t\tmeta l4proto udp dnat to 10.0.0.1\n"
    );
    let src = format!(
        "table ip t {{\n\tchain n {{\n\t\ttype nat hook prerouting priority dstnat; policy accept;\n{rules}\t}}\n}}\n"
    );
    assert_eq!(list(&src, &rules::NoIncludes), src);
}
