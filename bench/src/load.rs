//! Generated rulesets for the load benchmarks (parse + check + compile; `benches/parse.rs`,
//! `bin/rules-mem.rs`), written so that the same text can also be loaded with the real `nft -f`.
//!
//! - `simple`: `ip saddr 10.a.b.c tcp dport N counter drop`, distinct addresses (issue 3's workload);
//! - `mix`: the rotation of the classifier bench (exact addresses and /24 prefixes, `tcp dport` values,
//!   `udp dport` ranges, `meta l4proto`, `iifname`/`oifname` exact and `wan*`, anonymous sets).
//!
//! Both put all rules in one base chain of `table inet filter`, then a final `counter`.

use std::fmt::Write;

/// The workloads by name, as `rules-mem` and the parse bench name them.
pub const KINDS: [&str; 2] = ["simple", "mix"];

/// The ruleset of kind `kind` ("simple" or "mix") with `n` rules; `None` for an unknown kind.
pub fn ruleset(kind: &str, n: usize) -> Option<String> {
    match kind {
        "simple" => Some(simple(n)),
        "mix" => Some(mix(n)),
        _ => None,
    }
}

fn head(n: usize, per_rule: usize) -> String {
    let mut s = String::with_capacity(n * per_rule + 128);
    s.push_str(
        "table inet filter {\n\tchain forward {\n\t\ttype filter hook forward priority filter; policy accept;\n",
    );
    s
}

/// `n` rules `ip saddr 10.a.b.c tcp dport N counter drop`.
pub fn simple(n: usize) -> String {
    let mut s = head(n, 52);
    for i in 0..n {
        let _ = writeln!(
            s,
            "\t\tip saddr 10.{}.{}.{} tcp dport {} counter drop",
            (i >> 16) & 255,
            (i >> 8) & 255,
            i & 255,
            1 + i % 65535
        );
    }
    s.push_str("\t\tcounter\n\t}\n}\n");
    s
}

/// `n` rules of eight kinds in rotation, all distinct.
pub fn mix(n: usize) -> String {
    let mut s = head(n, 56);
    for i in 0..n {
        let (a, b, c) = ((i >> 16) & 255, (i >> 8) & 255, i & 255);
        let port = 1024 + (i % 60_000);
        let _ = match i % 8 {
            0 => writeln!(s, "\t\tip saddr 10.{a}.{b}.{c} drop"),
            1 => writeln!(
                s,
                "\t\tip daddr 172.{}.{b}.0/24 tcp dport {port} accept",
                16 + a
            ),
            2 => writeln!(
                s,
                "\t\tip saddr 10.{}.{b}.0/24 udp dport 1000-2000 counter drop",
                100 + a
            ),
            3 => writeln!(s, "\t\ttcp dport {port} iifname \"eth{}\" accept", i % 4),
            4 => writeln!(
                s,
                "\t\tmeta l4proto {} ip daddr 10.{a}.{b}.{c} counter drop",
                if i % 16 == 4 { "udp" } else { "tcp" }
            ),
            5 => writeln!(s, "\t\toifname \"veth{i}\" ip saddr 10.{a}.{b}.{c} accept"),
            6 => writeln!(
                s,
                "\t\tiifname \"wan*\" ip saddr 10.{}.{b}.{c} tcp dport {{ 22, 80, 443 }} drop",
                200 + a
            ),
            _ => writeln!(s, "\t\tudp dport {port} ip saddr 10.{a}.{b}.{c} accept"),
        };
    }
    s.push_str("\t\tcounter\n\t}\n}\n");
    s
}
