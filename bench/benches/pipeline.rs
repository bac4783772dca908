//! In-memory figures: packets per second through `dataplane::Pipeline` (no I/O), and conntrack rates.
//!
//! ```sh
//! cargo bench -p bench --bench pipeline                  # all (about a minute and a half)
//! cargo bench -p bench --bench pipeline -- linear-10k    # one
//! ```
//!
//! Pipeline: batches of 32 64-byte UDP frames from 32 established flows (generator → sink), each copied into
//! its slot and run through `Pipeline::process` (parse, conntrack, the forward hook, TTL, neighbour, rewrite),
//! with the lab ruleset and with 10 … 100k linear `ip saddr` rules that the packets match none of.
//! Conntrack: `track` on established flows; `track` + `confirm` of new flows into an empty table (the
//! default `nf_conntrack_max`, reserved up front as the daemon does).

use bench::{
    compile, lab_bench_ruleset, linear_saddr_ruleset, pipeline, prime_neighbours, udp_frame,
};
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use dataplane::conntrack::{Conntrack, CtPkt, Sysctls};
use dataplane::wire::{self, ETH_HLEN};
use dataplane::Action;
use dataplane::WorkerStats;
use std::hint::black_box;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

const BATCH: usize = 32;
const NOW: u64 = 5_000_000_000;

fn bench_pipeline(c: &mut Criterion) {
    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(BATCH as u64));
    let mut cases: Vec<(String, String)> =
        vec![("lab".into(), lab_bench_ruleset().expect("lab ruleset"))];
    for (name, n) in [
        ("linear-10", 10),
        ("linear-1k", 1_000),
        ("linear-10k", 10_000),
        ("linear-100k", 100_000),
    ] {
        cases.push((name.into(), linear_saddr_ruleset(n)));
    }
    for (name, src) in cases {
        g.sample_size(if name == "linear-100k" { 10 } else { 30 });
        // Set up on first use: criterion calls the closure only when the name passes the command line
        // filter (and then once per sample, hence the cache).
        let mut state: Option<(Arc<rules::CompiledRuleset>, dataplane::Pipeline)> = None;
        let frames: Vec<Vec<u8>> = (0..BATCH).map(|i| udp_frame(1024 + i as u16)).collect();
        let mut slots = vec![vec![0u8; hw::FRAME_CAPACITY]; BATCH];
        let run =
            |rs: &rules::CompiledRuleset, p: &mut dataplane::Pipeline, slots: &mut [Vec<u8>]| {
                let mut fwd = 0;
                for (slot, f) in slots.iter_mut().zip(&frames) {
                    slot[..f.len()].copy_from_slice(f);
                    if let Action::Forward(_) = p.process(slot, f.len(), 0, false, rs, NOW) {
                        fwd += 1;
                    }
                }
                fwd
            };
        g.bench_function(BenchmarkId::from_parameter(&name), |b| {
            let (rs, p) = state.get_or_insert_with(|| {
                let rs = Arc::new(compile(&src).expect("compiles"));
                let mut p = pipeline();
                p.use_generation(&rs);
                prime_neighbours(&mut p, &rs);
                // The first pass creates the flows; every frame must be forwarded, or the figure is
                // meaningless.
                assert_eq!(
                    run(&rs, &mut p, &mut slots),
                    BATCH,
                    "{name}: not every frame forwarded"
                );
                (rs, p)
            });
            b.iter(|| black_box(run(rs, p, &mut slots)))
        });
    }
    g.finish();
}

fn parsed(frames: &[Vec<u8>]) -> Vec<wire::Ipv4Info> {
    frames
        .iter()
        .map(|f| wire::parse_ipv4(f, ETH_HLEN).expect("valid frame"))
        .collect()
}

/// A worker's table as `sluice run` makes it (the default `nf_conntrack_max`).
fn table() -> Conntrack<Ipv4Addr> {
    let cfg = Sysctls::default();
    let max = cfg.max;
    Conntrack::new(cfg, max, 0x5eed)
}

/// Frames of `n` distinct flows: source ports and source addresses in 10.0.0.0/8 vary.
fn flows(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let mut f = udp_frame(1024 + (i % 50_000) as u16);
            let src = [10, (i >> 16) as u8, (i >> 8) as u8, i as u8];
            f[ETH_HLEN + 12..ETH_HLEN + 16].copy_from_slice(&src);
            f[ETH_HLEN + 10..ETH_HLEN + 12].copy_from_slice(&[0, 0]);
            let c = wire::checksum(&f[ETH_HLEN..ETH_HLEN + 20]);
            f[ETH_HLEN + 10..ETH_HLEN + 12].copy_from_slice(&c.to_be_bytes());
            f
        })
        .collect()
}

fn bench_conntrack(c: &mut Criterion) {
    let mut g = c.benchmark_group("conntrack");
    g.sample_size(30);

    // Established: 1024 flows in the table, each packet finds its entry.
    let frames = flows(1024);
    let infos = parsed(&frames);
    let mut stats = WorkerStats::default();
    let mut ct = table();
    for (ip, f) in infos.iter().zip(&frames) {
        let res = ct.track(&CtPkt::from_ipv4(ip, f), 0, NOW, &mut stats);
        ct.confirm(res, NOW, &mut stats);
    }
    assert_eq!(ct.len(), 1024);
    g.throughput(Throughput::Elements(infos.len() as u64));
    g.bench_function("established", |b| {
        b.iter(|| {
            for (ip, f) in infos.iter().zip(&frames) {
                black_box(ct.track(&CtPkt::from_ipv4(ip, f), 0, NOW, &mut stats));
            }
        })
    });

    // New flows: 8192 first packets into an empty table (track, then confirm as after the hooks).
    let frames = flows(8192);
    let infos = parsed(&frames);
    g.throughput(Throughput::Elements(infos.len() as u64));
    g.bench_function("new-flow", |b| {
        b.iter_batched(
            table,
            |mut ct| {
                for (ip, f) in infos.iter().zip(&frames) {
                    let res = ct.track(&CtPkt::from_ipv4(ip, f), 0, NOW, &mut stats);
                    black_box(ct.confirm(res, NOW, &mut stats));
                }
                ct
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args()
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_pipeline, bench_conntrack
}
criterion_main!(benches);
