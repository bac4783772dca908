//! The compiled classifier in memory: `CompiledRuleset::eval_chain` on one forward chain of 10 … 100k
//! rules that the packet matches none of, and the time to parse and compile such rulesets.
//!
//! ```sh
//! cargo bench -p bench --bench classifier                # criterion groups, then the summary table
//! cargo bench -p bench --bench classifier -- summary     # only the summary table (about a minute)
//! cargo bench -p bench --bench classifier -- saddr/100k  # one criterion case
//! ```
//!
//! Rulesets (`table inet filter`, chain `forward`, policy accept, then a final `counter`):
//! - `saddr`: `ip saddr 10.x.y.z drop`, distinct addresses;
//! - `mix`: a rotation of `ip saddr` exact addresses and /24 prefixes, `ip daddr` /24 prefixes with
//!   `tcp dport` values, `udp dport` ranges, `meta l4proto`, `iifname`/`oifname` (exact and `wan*`);
//!   distinct values, so rules do not repeat.
//!
//! The packet: TCP 192.0.2.1:40000 → 198.51.100.1:9 from eth0 to eth1, matching no rule but the last
//! (`counter`). The summary also runs 1024 different packets matching none (sources in 10.128.0.0/10),
//! so that lookups do not always hit the same cache lines. It runs the sizes interleaved, measures this
//! thread's CPU time (the machine is shared) and prints ns/packet, Mpps and the ratio of packets/s to
//! the 10-rule chain, the linear walk (a tracer asking for every rule) for comparison, and the CPU time
//! to parse and to compile each ruleset.

use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use rules::eval::{TraceEvent, Tracer};
use rules::{
    compile, parse_ruleset, ChainId, CompiledRuleset, CounterValue, Family, Hook, NfProto,
    PacketCtx,
};
use std::fmt::Write;
use std::hint::black_box;
use std::time::Duration;

const SIZES: [(&str, usize); 4] = [
    ("10", 10),
    ("1k", 1_000),
    ("10k", 10_000),
    ("100k", 100_000),
];

fn head() -> String {
    "table inet filter {\n\tchain forward {\n\t\ttype filter hook forward priority filter; policy accept;\n"
        .to_string()
}

fn saddr_ruleset(n: usize) -> String {
    let mut s = head();
    for i in 0..n {
        let _ = writeln!(
            s,
            "\t\tip saddr 10.{}.{}.{} drop",
            (i >> 16) & 255,
            (i >> 8) & 255,
            i & 255
        );
    }
    s.push_str("\t\tcounter\n\t}\n}\n");
    s
}

/// The mix rotation is the load benchmarks' (`bench::load::mix`).
fn mix_ruleset(n: usize) -> String {
    bench::load::mix(n)
}

fn frame() -> Vec<u8> {
    let mut f = vec![0u8; 14 + 20 + 20];
    f[12] = 0x08;
    let ip = &mut f[14..];
    ip[0] = 0x45;
    ip[3] = 40;
    ip[8] = 64;
    ip[9] = 6;
    ip[12..16].copy_from_slice(&[192, 0, 2, 1]);
    ip[16..20].copy_from_slice(&[198, 51, 100, 1]);
    ip[20..22].copy_from_slice(&40000u16.to_be_bytes());
    ip[22..24].copy_from_slice(&9u16.to_be_bytes());
    f
}

fn ctx(frame: &mut [u8]) -> PacketCtx<'_> {
    PacketCtx {
        frame,
        nh_off: 14,
        th_off: Some(34),
        nfproto: NfProto::Ipv4,
        l4proto: 6,
        len: 40,
        iif: 2,
        iifname: "eth0",
        oif: 3,
        oifname: "eth1",
        mark: 0,
        ct_state: 8,
        ct_mark: 0,
        ct_label: 0,
        ct_view: None,
        conncount: None,
        ct_counted: 0,
        hook: Hook::Forward,
        nftrace: false,
        now: 0,
        fib: None,
        payload_writes: 0,
    }
}

/// A tracer that records nothing but asks for every rule: the plain linear walk.
struct Linear;

impl Tracer for Linear {
    #[inline(always)]
    fn event(&mut self, _: &PacketCtx<'_>, _: TraceEvent) {}
}

struct Case {
    rs: CompiledRuleset,
    chain: ChainId,
    counters: Vec<CounterValue>,
}

fn load(src: &str) -> Case {
    let rs = compile(parse_ruleset(src, "bench.nft").expect("parses")).expect("compiles");
    let chain = rs
        .chain_id(Family::Inet, "filter", "forward")
        .expect("chain");
    let counters = vec![CounterValue::default(); rs.counter_slots()];
    Case {
        rs,
        chain,
        counters,
    }
}

/// (name, ruleset of n rules)
type Scenario = (&'static str, fn(usize) -> String);

fn scenarios() -> [Scenario; 2] {
    [("saddr", saddr_ruleset), ("mix", mix_ruleset)]
}

fn bench_eval(c: &mut Criterion) {
    let mut f = frame();
    for (scen, gen) in scenarios() {
        let mut g = c.benchmark_group(format!("classifier-{scen}"));
        g.throughput(Throughput::Elements(1));
        g.warm_up_time(Duration::from_millis(500));
        g.measurement_time(Duration::from_secs(2));
        for (name, n) in SIZES {
            let mut case: Option<Case> = None;
            g.bench_function(BenchmarkId::from_parameter(name), |b| {
                let k = case.get_or_insert_with(|| load(&gen(n)));
                b.iter(|| {
                    let mut p = ctx(&mut f);
                    black_box(k.rs.eval_chain(k.chain, &mut p, &mut k.counters))
                })
            });
        }
        g.finish();
    }
}

/// Nanoseconds of CPU time this thread has used (`CLOCK_THREAD_CPUTIME_ID`), so that time slices lost
/// to other processes on a busy machine do not count.
fn cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// CPU ns per packet over `iters` packets, cycling through `frames`.
fn time_eval(k: &mut Case, frames: &mut [Vec<u8>], iters: u32, linear: bool) -> f64 {
    let t = cpu_ns();
    for i in 0..iters as usize {
        let n = frames.len();
        let mut p = ctx(black_box(&mut frames[i % n]));
        let v = if linear {
            k.rs.eval_chain_traced(k.chain, &mut p, &mut k.counters, &mut Linear)
        } else {
            k.rs.eval_chain(k.chain, &mut p, &mut k.counters)
        };
        black_box(v);
    }
    (cpu_ns() - t) as f64 / iters as f64
}

/// 1024 different packets that match no rule either: sources in 10.128.0.0/10, destinations in
/// 198.51.100.0/24, ports 1-1023 (every lookup lands somewhere else in the tables).
fn varied_frames() -> Vec<Vec<u8>> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut f = frame();
            let b = x.to_be_bytes();
            f[26..30].copy_from_slice(&[10, 128 | (b[0] & 63), b[1], b[2]]);
            f[33] = b[3];
            f[34..36].copy_from_slice(&(1024 + (b[4] as u16)).to_be_bytes());
            f[36..38].copy_from_slice(&(1 + u16::from_be_bytes([b[5], b[6]]) % 1023).to_be_bytes());
            f
        })
        .collect()
}

fn summary() {
    let mut same = vec![frame()];
    let mut varied = varied_frames();
    println!(
        "\nclassifier summary (CPU time of this thread, best of 9 interleaved rounds of 100k packets)\n\
         same: one packet matching no rule, again and again; varied: 1024 different such packets;\n\
         ratio: packets/s relative to the 10-rule chain; linear: the walk without the index (same packet);\n\
         parse, compile: CPU time for the whole ruleset text (compile includes building the index)"
    );
    for (scen, gen) in scenarios() {
        let mut cases = Vec::new();
        println!("\n{scen}:");
        println!(
            "  {:>5}  {:>9}  {:>9}  {:>13}  {:>8} {:>6} {:>6}  {:>8} {:>6} {:>6}  {:>10}",
            "rules",
            "parse",
            "compile",
            "filed/rules",
            "same ns",
            "Mpps",
            "ratio",
            "varied",
            "Mpps",
            "ratio",
            "linear ns"
        );
        let mut loads = Vec::new();
        for (_, n) in SIZES {
            let src = gen(n);
            let t0 = cpu_ns();
            let ast = parse_ruleset(&src, "bench.nft").expect("parses");
            let t1 = cpu_ns();
            let rs = compile(ast).expect("compiles");
            let t2 = cpu_ns();
            let chain = rs.chain_id(Family::Inet, "filter", "forward").unwrap();
            let counters = vec![CounterValue::default(); rs.counter_slots()];
            loads.push((t1 - t0, t2 - t1));
            cases.push(Case {
                rs,
                chain,
                counters,
            });
        }
        let mut best = [[f64::MAX; SIZES.len()]; 2];
        for _ in 0..9 {
            for (i, k) in cases.iter_mut().enumerate() {
                best[0][i] = best[0][i].min(time_eval(k, &mut same, 100_000, false));
                best[1][i] = best[1][i].min(time_eval(k, &mut varied, 100_000, false));
            }
        }
        for (i, k) in cases.iter_mut().enumerate() {
            let n = SIZES[i].1;
            // the linear walk: fewer packets for long chains
            let iters = (2_000_000 / (n as u32 + 10)).clamp(20, 200_000);
            let lin = (0..3)
                .map(|_| time_eval(k, &mut same, iters, true))
                .fold(f64::MAX, f64::min);
            let st = k.rs.index_stats(k.chain);
            println!(
                "  {:>5}  {:>7.1}ms  {:>7.1}ms  {:>13}  {:>8.1} {:>6.2} {:>5.2}x  {:>8.1} {:>6.2} {:>5.2}x  {:>10.0}",
                SIZES[i].0,
                loads[i].0 as f64 / 1e6,
                loads[i].1 as f64 / 1e6,
                st.map_or("not indexed".to_string(), |s| format!("{}/{}", s.filed, s.rules)),
                best[0][i],
                1e3 / best[0][i],
                best[0][0] / best[0][i],
                best[1][i],
                1e3 / best[1][i],
                best[1][0] / best[1][i],
                lin
            );
        }
    }
}

criterion_group!(benches, bench_eval);

fn main() {
    // positional arguments are criterion's filters; `summary` is the summary table alone
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let only_summary = filters.iter().any(|f| f == "summary");
    if !only_summary {
        benches();
        criterion::Criterion::default()
            .configure_from_args()
            .final_summary();
    }
    if filters.is_empty() || only_summary {
        summary();
    }
}
