//! The JSON reader (`rules::json_in`) against the JSON writer: a ruleset printed as `nft -j list ruleset`
//! and read back must list exactly like the original. Over the example rulesets (all must agree), a set of
//! hand-written rulesets, and the round-trippable shell dumps of nftables' corpus when it is present
//! (../shared/nft-conformance; a floor on the count that agree, like the conformance ratchet).
//! The comparison with the real nft's own JSON is in control/tests/fmt_vs_nft.rs.

use std::path::Path;

use rules::{parse_json_ruleset, parse_ruleset, print_ruleset, print_ruleset_json, PrintOptions};

/// Dumps of the corpus that must survive the JSON round trip (measured 2026-11-25; raise it, never lower).
const CORPUS_FLOOR: usize = 289;

/// `Ok(())` when `text` lists the same after text → JSON → reader; else what differs.
fn round_trip(text: &str, name: &str) -> Result<(), String> {
    let rs = parse_ruleset(text, name).map_err(|d| format!("does not parse: {d}"))?;
    let want = print_ruleset(&rs, &PrintOptions::default(), None);
    let json = print_ruleset_json(&rs, &PrintOptions::default(), None);
    let back = parse_json_ruleset(&json, name).map_err(|d| format!("{d}\n(JSON: {json})"))?;
    let got = print_ruleset(&back, &PrintOptions::default(), None);
    if got == want {
        return Ok(());
    }
    let diff = want
        .lines()
        .zip(got.lines())
        .find(|(a, b)| a != b)
        .map(|(a, b)| format!("want `{a}`\n got `{b}`"))
        .unwrap_or_else(|| "length differs".into());
    Err(diff)
}

#[test]
fn example_rulesets_survive_the_json_round_trip() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/examples");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "nft") {
            let text = std::fs::read_to_string(&p).unwrap();
            round_trip(&text, &p.display().to_string())
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            n += 1;
        }
    }
    assert!(n >= 3, "examples not found in {}", dir.display());
}

#[test]
fn hand_written_rulesets_survive_the_json_round_trip() {
    let cases = [
        "table ip t {\n\tchain c {\n\t\ttype filter hook input priority filter; policy drop;\n\t\tip saddr 10.0.0.0/8 tcp dport { 22, 80-90 } counter packets 1 bytes 2 accept\n\t\ttcp flags syn / fin,syn,rst,ack ct state new log prefix \"new \" level warn drop\n\t\tmeta mark & 0x0000ff00 == 0x00000100 meta mark set 0x00000001 accept\n\t\tiifname \"wan*\" oifname \"eth0\" reject with tcp reset\n\t}\n}\n",
        "table inet f {\n\tset allow {\n\t\ttype ipv4_addr . inet_service\n\t\tflags interval\n\t\telements = { 10.0.0.0/24 . 22, 192.0.2.1 . 443 }\n\t}\n\n\tmap ports {\n\t\ttype inet_service : verdict\n\t\telements = { 22 : accept, 23 : drop }\n\t}\n\n\tchain in {\n\t\ttype filter hook input priority filter + 5; policy accept;\n\t\tip saddr . tcp dport @allow accept\n\t\ttcp dport vmap @ports\n\t\tudp dport vmap { 53 : accept, 123 : jump ntp }\n\t\tlimit rate 10/second burst 5 packets counter\n\t\tquota over 10 mbytes drop\n\t\tct state established,related accept comment \"ok\"\n\t}\n\n\tchain ntp {\n\t\tip6 saddr 2001:db8::/32 return\n\t}\n}\n",
        "table ip nat {\n\tchain pre {\n\t\ttype nat hook prerouting priority dstnat; policy accept;\n\t\ttcp dport 80 dnat to 192.0.2.10:8080\n\t\tudp dport 53 redirect to :5353\n\t}\n\n\tchain post {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n\t\toifname \"eth0\" masquerade random,persistent\n\t\tip saddr 10.0.0.0/8 snat to 198.51.100.1-198.51.100.9\n\t}\n}\n",
        "table netdev n {\n\tchain ing {\n\t\ttype filter hook ingress device \"eth0\" priority -10; policy accept;\n\t\tether saddr 02:00:00:00:00:01 drop\n\t}\n}\n",
    ];
    for (i, c) in cases.iter().enumerate() {
        round_trip(c, &format!("case{i}")).unwrap_or_else(|e| panic!("case {i}: {e}\n{c}"));
    }
}

#[test]
fn corpus_dumps_survive_the_json_round_trip() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/nft-conformance");
    let Ok(tsv) = std::fs::read_to_string(root.join("shell/ROUNDTRIP.tsv")) else {
        println!("nft conformance corpus not found (../shared/nft-conformance): skipping");
        return;
    };
    let (mut ok, mut total) = (0, 0);
    let mut failed = Vec::new();
    for line in tsv.lines().filter(|l| !l.starts_with('#')) {
        let cols: Vec<&str> = line.split('\t').collect();
        if cols.len() < 4 || cols[3] != "yes" {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(root.join("shell").join(cols[0])) else {
            continue;
        };
        // only dumps sluice itself lists identically: the round trip is what is tested here
        let Ok(rs) = parse_ruleset(&text, cols[0]) else {
            continue;
        };
        if print_ruleset(&rs, &PrintOptions::default(), None) != text {
            continue;
        }
        total += 1;
        match round_trip(&text, cols[0]) {
            Ok(()) => ok += 1,
            Err(e) => failed.push(format!(
                "{}: {}",
                cols[0],
                e.lines().take(2).collect::<Vec<_>>().join(" / ")
            )),
        }
    }
    println!("JSON round trip of corpus dumps: {ok} of {total}");
    for f in &failed {
        println!("  {f}");
    }
    assert!(
        ok >= CORPUS_FLOOR,
        "{ok} corpus dumps survive the JSON round trip, fewer than the recorded {CORPUS_FLOOR}"
    );
}

/// nft 1.0.6 prints ct timeout policies in seconds (`established : 100`), nft 1.1 and sluice as times
/// (`established : 1m40s`): the listing's times back to seconds.
fn policy_in_seconds(listing: &str) -> String {
    let secs = |t: &str| -> String {
        let (mut total, mut n) = (0u64, 0u64);
        for c in t.chars() {
            match c {
                '0'..='9' => n = n * 10 + c.to_digit(10).unwrap() as u64,
                'd' => (total, n) = (total + n * 86400, 0),
                'h' => (total, n) = (total + n * 3600, 0),
                'm' => (total, n) = (total + n * 60, 0),
                's' => (total, n) = (total + n, 0),
                _ => return t.to_string(),
            }
        }
        (total + n).to_string()
    };
    listing
        .lines()
        .map(|l| {
            if !l.trim_start().starts_with("policy = {") {
                return l.to_string();
            }
            l.split(' ')
                .map(|w| {
                    let bare = w.trim_end_matches(',');
                    if bare.ends_with(['s', 'm', 'h', 'd'])
                        && bare.starts_with(|c: char| c.is_ascii_digit())
                    {
                        w.replacen(bare, &secs(bare), 1)
                    } else {
                        w.to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .map(|l| l + "\n")
        .collect()
}

/// `nft -j list ruleset` (nft 1.0.6) of a table with ct helper, ct timeout, ct expectation and synproxy
/// objects and rules using them (tests/json_in/ct_objects.json) reads back to nft's own text listing
/// (tests/json_in/ct_objects.listing), and to what the same listing parsed as text prints.
#[test]
fn nft_json_of_ct_and_synproxy_objects_reads_back_to_nft_listing() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/json_in");
    let json = std::fs::read_to_string(dir.join("ct_objects.json")).unwrap();
    let nft_listing = std::fs::read_to_string(dir.join("ct_objects.listing")).unwrap();
    let got = print_ruleset(
        &parse_json_ruleset(&json, "ct_objects.json").unwrap(),
        &PrintOptions::default(),
        None,
    );
    let text = print_ruleset(
        &parse_ruleset(&nft_listing, "ct_objects.nft").unwrap(),
        &PrintOptions::default(),
        None,
    );
    assert_eq!(got, text);
    assert_eq!(policy_in_seconds(&got), nft_listing);
    assert!(got.contains("policy = { established : 1m40s, close_wait : 4s, close : 4s }"));
}

/// The objects in `add`/`create`/`delete` commands; a single synproxy flag as a string; errors.
#[test]
fn ct_and_synproxy_object_commands() {
    let json = r#"{"nftables": [
{"add": {"table": {"family": "ip", "name": "x"}}},
{"add": {"ct helper": {"family": "ip", "table": "x", "name": "h1", "type": "ftp", "protocol": "tcp"}}},
{"create": {"ct helper": {"family": "ip", "table": "x", "name": "h2", "type": "sip", "protocol": "udp", "l3proto": "ip", "comment": "two"}}},
{"add": {"ct timeout": {"family": "ip", "table": "x", "name": "t1", "protocol": "udp", "policy": {"replied": 12, "unreplied": 15}}}},
{"add": {"ct expectation": {"family": "ip", "table": "x", "name": "e1", "protocol": "udp", "dport": 5060, "timeout": 3000, "size": 5, "l3proto": "ip"}}},
{"add": {"synproxy": {"family": "ip", "table": "x", "name": "s1", "mss": 1460, "wscale": 7, "flags": "timestamp", "comment": "one"}}},
{"add": {"synproxy": {"family": "ip", "table": "x", "name": "s2", "mss": 536, "wscale": 2}}},
{"delete": {"ct helper": {"family": "ip", "table": "x", "name": "h2"}}},
{"delete": {"synproxy": {"family": "ip", "table": "x", "name": "s2"}}},
{"add": {"chain": {"family": "ip", "table": "x", "name": "in", "type": "filter", "hook": "input", "prio": 0, "policy": "accept"}}},
{"add": {"rule": {"family": "ip", "table": "x", "chain": "in", "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 21}}, {"ct helper": "h1"}]}}},
{"add": {"rule": {"family": "ip", "table": "x", "chain": "in", "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 443}}, {"synproxy": "s1"}]}}}
]}"#;
    let rs = parse_json_ruleset(json, "objs.json").unwrap();
    assert_eq!(
        print_ruleset(&rs, &PrintOptions::default(), None),
        "table ip x {\n\tct helper h1 {\n\t\ttype \"ftp\" protocol tcp\n\t\tl3proto ip\n\t}\n\n\
         \tct timeout t1 {\n\t\tprotocol udp\n\t\tl3proto ip\n\t\tpolicy = { unreplied : 15s, replied : 12s }\n\t}\n\n\
         \tct expectation e1 {\n\t\tprotocol udp\n\t\tdport 5060\n\t\ttimeout 3s\n\t\tsize 5\n\t\tl3proto ip\n\t}\n\n\
         \tsynproxy s1 {\n\t\tcomment \"one\"\n\t\tmss 1460\n\t\twscale 7\n\t\ttimestamp\n\t}\n\n\
         \tchain in {\n\t\ttype filter hook input priority filter; policy accept;\n\
         \t\ttcp dport 21 ct helper set \"h1\"\n\t\ttcp dport 443 synproxy name \"s1\"\n\t}\n}\n"
    );
    let e = parse_json_ruleset(
        r#"{"nftables": [{"table": {"family": "ip", "name": "x"}}, {"ct helper": {"family": "ip", "table": "x", "name": "h", "protocol": "tcp"}}]}"#,
        "bad.json",
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        e,
        "Error: Object item not found: type\nError: Parsing command array at index 1 failed."
    );
    // deleting what is not there
    let e = parse_json_ruleset(
        r#"{"nftables": [{"table": {"family": "ip", "name": "x"}}, {"delete": {"synproxy": {"family": "ip", "table": "x", "name": "nope"}}}]}"#,
        "bad.json",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("Could not process rule: No such file or directory"),
        "{e}"
    );
}

/// `list` and `reset` commands: what they name must exist (nft: `No such file or directory`), `reset`
/// zeroes counter and quota objects; the ruleset is otherwise unchanged. `monitor` is refused as nft
/// refuses it (its JSON parser has no such command and takes the key for an object to add).
#[test]
fn list_reset_and_monitor_commands() {
    let json = r#"{"nftables": [
{"add": {"table": {"family": "ip", "name": "t"}}},
{"add": {"counter": {"family": "ip", "table": "t", "name": "c1", "packets": 5, "bytes": 50}}},
{"add": {"counter": {"family": "ip", "table": "t", "name": "c2", "packets": 6, "bytes": 60}}},
{"add": {"quota": {"family": "ip", "table": "t", "name": "q1", "bytes": 100, "used": 40}}},
{"add": {"chain": {"family": "ip", "table": "t", "name": "c"}}},
{"list": {"ruleset": null}},
{"list": {"ruleset": {"family": "ip"}}},
{"list": {"table": {"family": "ip", "name": "t"}}},
{"list": {"chain": {"family": "ip", "table": "t", "name": "c"}}},
{"list": {"counter": {"family": "ip", "table": "t", "name": "c1"}}},
{"list": {"counters": {"family": "ip"}}},
{"list": {"quotas": {"family": "ip", "table": "t"}}},
{"list": {"tables": null}},
{"list": {"ct helpers": null}},
{"reset": {"counter": {"family": "ip", "table": "t", "name": "c1"}}},
{"reset": {"quotas": null}}
]}"#;
    let rs = parse_json_ruleset(json, "l.json").unwrap();
    assert_eq!(
        print_ruleset(&rs, &PrintOptions::default(), None),
        "table ip t {\n\tcounter c1 {\n\t\tpackets 0 bytes 0\n\t}\n\n\tcounter c2 {\n\t\tpackets 6 bytes 60\n\t}\n\n\
         \tquota q1 {\n\t\t100 bytes\n\t}\n\n\tchain c {\n\t}\n}\n"
    );
    assert_eq!(
        rules::json_in::to_nft(r#"{"nftables": [{"list": {"counters": {"family": "ip", "table": "t"}}}, {"reset": {"quota": {"family": "inet", "table": "t", "name": "q"}}}]}"#)
            .unwrap(),
        "list counters table ip t\nreset quota inet t q\n"
    );
    let missing = |j: &str| parse_json_ruleset(j, "m.json").unwrap_err().to_string();
    let e = missing(r#"{"nftables": [{"list": {"table": {"family": "ip", "name": "nosuch"}}}]}"#);
    assert_eq!(
        e,
        "m.json (as nft):1:15-20: Error: No such file or directory\nlist table ip nosuch\n              ^^^^^^"
    );
    let e = missing(
        r#"{"nftables": [{"table": {"family": "ip", "name": "t"}}, {"list": {"counter": {"family": "ip", "table": "t", "name": "c"}}}]}"#,
    );
    assert!(e.contains("Error: No such file or directory"), "{e}");
    let e = missing(
        r#"{"nftables": [{"reset": {"chain": {"family": "ip", "table": "t", "name": "c"}}}]}"#,
    );
    assert_eq!(
        e,
        "Error: Unknown object 'chain' for command 'reset'.\nError: Parsing command array at index 0 failed."
    );
    let e = missing(r#"{"nftables": [{"monitor": {"event": "new", "object": "tables"}}]}"#);
    assert_eq!(
        e,
        "Error: Unknown object passed to add command.\nError: Parsing command array at index 0 failed."
    );
}
