//! The nft language front end on one core: parse + check + compile of generated rulesets of 10k and 100k
//! rules in one chain (`bench::load`): `simple` is `ip saddr 10.a.b.c tcp dport N counter drop` (issue 3's
//! workload; `nft -f` needs 1.84 s and 351 MB for 100k), `mix` the classifier bench's rotation of eight
//! rule shapes. The AST is moved into the compiled ruleset, as a loader does. Wall-clock time: on a shared
//! machine prefer the CPU times of `rules-mem` (or `bench/scripts/load-vs-nft.sh`).
//!
//! Peak memory is measured by `cargo run --release -p bench --bin rules-mem -- 100000 mix` (VmHWM of a
//! fresh process; criterion cannot measure it).
//!
//! `cargo bench -p bench --bench parse` (or `-- mix/100k` for one case)

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};

fn parse_check_compile(c: &mut Criterion) {
    for kind in bench::load::KINDS {
        let mut g = c.benchmark_group(format!("rules_load/{kind}"));
        for n in [10_000usize, 100_000] {
            let src = bench::load::ruleset(kind, n).expect("known kind");
            g.throughput(Throughput::Elements(n as u64));
            g.sample_size(10);
            // the result is dropped outside the timing (freeing 100k rules costs another ~0.1 s)
            g.bench_function(format!("parse_check_compile_{}k", n / 1000), |b| {
                b.iter_batched(
                    || (),
                    |()| {
                        let rs =
                            rules::parse_ruleset(black_box(&src), "bench.nft").expect("parses");
                        rules::compile(rs).expect("compiles")
                    },
                    BatchSize::PerIteration,
                )
            });
            g.bench_function(format!("parse_check_{}k", n / 1000), |b| {
                b.iter_batched(
                    || (),
                    |()| rules::parse_ruleset(black_box(&src), "bench.nft").expect("parses"),
                    BatchSize::PerIteration,
                )
            });
        }
        g.finish();
    }
}

criterion_group!(benches, parse_check_compile);
criterion_main!(benches);
