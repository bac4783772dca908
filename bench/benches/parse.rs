//! The nft language front end on one core: parse + check + compile of generated rulesets of 10k and 100k
//! rules like `ip saddr 10.a.b.c tcp dport N counter drop` in one chain (issue 3's workload; `nft -f`
//! needs 1.84 s and 351 MB for 100k). The AST is moved into the compiled ruleset, as a loader does.
//!
//! Peak memory is measured by `cargo run --release -p bench --bin rules-mem -- 100000` (VmHWM of a fresh
//! process; criterion cannot measure it).
//!
//! `cargo bench -p bench --bench parse`

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};

/// `n` rules `ip saddr 10.a.b.c tcp dport N counter drop` in one base chain.
fn ruleset(n: usize) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(n * 52 + 128);
    s.push_str("table ip filter {\n\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n");
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
    s.push_str("\t}\n}\n");
    s
}

fn parse_check_compile(c: &mut Criterion) {
    let mut g = c.benchmark_group("rules_load");
    for n in [10_000usize, 100_000] {
        let src = ruleset(n);
        g.throughput(Throughput::Elements(n as u64));
        g.sample_size(if n >= 100_000 { 10 } else { 20 });
        g.bench_function(format!("parse_check_compile_{}k", n / 1000), |b| {
            b.iter(|| {
                let rs = rules::parse_ruleset(black_box(&src), "bench.nft").expect("parses");
                rules::compile(rs).expect("compiles")
            })
        });
        g.bench_function(format!("parse_check_{}k", n / 1000), |b| {
            b.iter(|| rules::parse_ruleset(black_box(&src), "bench.nft").expect("parses"))
        });
    }
    g.finish();
}

criterion_group!(benches, parse_check_compile);
criterion_main!(benches);
