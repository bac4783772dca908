//! Peak memory and CPU time of loading a ruleset with the rules crate (parse + check + compile), in a
//! fresh process: `rules-mem N [simple|mix]` generates `N` rules of that kind in one chain (the
//! workloads of `benches/parse.rs`, see `bench::load`); `rules-mem FILE` loads a file;
//! `rules-mem --emit N [simple|mix]` prints the generated source instead (to load it with `nft -f`). Prints VmHWM (peak resident
//! set) before and after, and the CPU time of the phases (from /proc/thread-self/schedstat, so that other
//! load on the machine does not count).

fn status_kb(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// This thread's (user, system) CPU time in ns and minor page faults so far.
fn rusage() -> (u64, u64, u64) {
    // SAFETY: getrusage fills the zeroed struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; RUSAGE_THREAD is Linux's per-thread usage.
    if unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) } != 0 {
        return (0, 0, 0);
    }
    let ns = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1000;
    (ns(ru.ru_utime), ns(ru.ru_stime), ru.ru_minflt as u64)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let emit = args.first().is_some_and(|a| a == "--emit");
    let args = &args[usize::from(emit)..];
    let arg = args
        .first()
        .cloned()
        .unwrap_or_else(|| "100000".to_string());
    let kind = args.get(1).map_or("simple", String::as_str);
    let (name, src) = match arg.parse::<usize>() {
        Ok(n) => (
            format!("{n} generated rules ({kind})"),
            bench::load::ruleset(kind, n).unwrap_or_else(|| {
                panic!("unknown kind {kind:?}, one of {:?}", bench::load::KINDS)
            }),
        ),
        Err(_) => (
            arg.clone(),
            std::fs::read_to_string(&arg).unwrap_or_else(|e| panic!("{arg}: {e}")),
        ),
    };
    if emit {
        print!("{src}");
        return;
    }
    let before = status_kb("VmHWM:");
    let r0 = rusage();
    let c0 = cpu_ns();
    let rs = rules::parse_ruleset(&src, &name).unwrap_or_else(|d| panic!("{d}"));
    let c1 = cpu_ns();
    let after_parse = status_kb("VmHWM:");
    let compiled = rules::compile(rs).unwrap_or_else(|d| panic!("{d}"));
    let c2 = cpu_ns();
    let r2 = rusage();
    let peak = status_kb("VmHWM:");
    let rss = status_kb("VmRSS:");
    println!("{name} ({} bytes of source)", src.len());
    println!(
        "  CPU: parse+check {:.1} ms, compile {:.1} ms, total {:.1} ms",
        (c1 - c0) as f64 / 1e6,
        (c2 - c1) as f64 / 1e6,
        (c2 - c0) as f64 / 1e6
    );
    println!(
        "  of which user {:.1} ms, system {:.1} ms ({} minor page faults)",
        (r2.0 - r0.0) as f64 / 1e6,
        (r2.1 - r0.1) as f64 / 1e6,
        r2.2 - r0.2
    );
    println!(
        "  VmHWM: {} MB before, {} MB after parsing, {} MB after compiling ({} MB for the load); VmRSS {} MB holding the compiled ruleset",
        before / 1024,
        after_parse / 1024,
        peak / 1024,
        (peak - before) / 1024,
        rss / 1024
    );
    std::hint::black_box(&compiled);
}
