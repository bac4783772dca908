//! `sluice-bench`: the same traffic through in-kernel nftables and through sluice, on a netns rig it builds
//! and removes itself. See docs/BENCHMARKS.md for the method.
//!
//! ```sh
//! cargo build --release -p control -p bench
//! sudo target/release/sluice-bench --out docs/bench --update-doc docs/BENCHMARKS.md   # the full comparison
//! sudo target/release/sluice-bench --quick                                              # seconds: a smoke run
//! ```

use anyhow::{bail, Context, Result};
use bench::report::{self, Metric, Sample};
use bench::rig::{self, Forwarder, Rig, RigConfig};
use bench::scenario::Scenario;
use bench::swap::{self, Load, SwapConfig, SwapResult};
use bench::traffic;
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(
    name = "sluice-bench",
    about = "Line-rate comparison of sluice with in-kernel nftables on a netns rig"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Sub>,
    /// A short smoke run (two scenarios, one round, 1 s windows): checks the rig and both paths.
    #[arg(long)]
    quick: bool,
    /// Where the CSV files, the Markdown table and the plots go (default: docs/bench, or a temporary
    /// directory with --quick).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Rounds of kernel/sluice alternation per scenario (default 3; 1 with --quick).
    #[arg(long)]
    rounds: Option<usize>,
    /// Measurement window per run, seconds (default 3; 1 with --quick).
    #[arg(long)]
    window: Option<u32>,
    /// Only these scenarios (comma separated: none,lab,linear-1k,linear-10k,linear-100k,set-10k,set-1M,
    /// masquerade,vip).
    #[arg(long, value_delimiter = ',')]
    scenarios: Vec<String>,
    /// Only these kinds of traffic (udp,tcp,conn).
    #[arg(long, value_delimiter = ',')]
    traffic: Vec<String>,
    /// sluice workers (one per RX queue).
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// RX/TX queues per veth.
    #[arg(long, default_value_t = 2)]
    queues: u32,
    /// Niceness of the measured processes (generators, servers, sluice); 0 to leave it alone.
    #[arg(long, default_value_t = -10, allow_hyphen_values = true)]
    nice: i32,
    /// sluice frames per batch.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Concurrent connections of wrk.
    #[arg(long, default_value_t = 16)]
    connections: u32,
    /// The sluice binary (default: `sluice` next to this executable, i.e. the same target directory).
    #[arg(long)]
    sluice: Option<PathBuf>,
    /// Profile the forwarding CPU with `perf` during the first UDP window of these scenarios (both paths):
    /// `perf stat` and a `perf record -e cpu-clock` report go to OUT/perf-SCENARIO-PATH.txt.
    #[arg(long, value_delimiter = ',')]
    perf: Vec<String>,
    /// Include the runs of an earlier invocation (its runs.csv) in the report.
    #[arg(long)]
    merge: Option<PathBuf>,
    /// Measure nothing: rewrite the report, CSV files and plots from --merge's runs.
    #[arg(long, requires = "merge")]
    report_only: bool,
    /// How long sluice may take to load a ruleset and come up, seconds.
    #[arg(long, default_value_t = 300)]
    start_timeout: u64,
    /// The swap test instead of the comparison: replace a ruleset of --swap-rules rules with another one this
    /// many times under load, on both paths (see bench/src/swap.rs). `--quick` runs a short one (3 swaps of
    /// 1,000 rules) after its comparison.
    #[arg(long)]
    swap: Option<usize>,
    /// Rules of each ruleset of the swap test.
    #[arg(long, default_value_t = 100_000)]
    swap_rules: usize,
    /// Paths of the swap test (kernel,sluice).
    #[arg(long, value_delimiter = ',', default_values_t = ["kernel".to_string(), "sluice".to_string()])]
    swap_paths: Vec<String>,
    /// Seconds of the swap test's baseline phase (same traffic, no swap).
    #[arg(long, default_value_t = 10)]
    swap_baseline: u64,
    /// UDP packets/s through sluice during the swap test.
    #[arg(long, default_value_t = 20_000)]
    swap_pps: u64,
    /// Rate limit of each iperf3 stream through sluice during the swap test, Mbit/s.
    #[arg(long, default_value_t = 20.0)]
    swap_tcp_mbit: f64,
    /// UDP packets/s through the kernel during the swap test (the kernel walks every rule of the chain for
    /// each packet: ≈ 400 packets/s on one CPU at 100k rules).
    #[arg(long, default_value_t = 100)]
    swap_kernel_pps: u64,
    /// Rate limit of each iperf3 stream through the kernel during the swap test, Mbit/s.
    #[arg(long, default_value_t = 0.5)]
    swap_kernel_tcp_mbit: f64,
    /// iperf3 streams during the swap test.
    #[arg(long, default_value_t = 2)]
    swap_streams: u32,
    /// Control experiment for the swap test: run the commands with `-c` (parse, check, compile, discard:
    /// nothing is published), to tell loss caused by the control plane's CPU use from loss caused by swaps.
    #[arg(long)]
    swap_check_only: bool,
    /// Replace the results section (between `<!-- bench:results:start -->` and `<!-- bench:results:end -->`)
    /// of this Markdown file.
    #[arg(long)]
    update_doc: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Sub {
    /// The HTTP server the rig runs in srv (internal).
    #[command(hide = true)]
    Serve { listen: std::net::SocketAddr },
}

/// Debian packages providing each tool the rig needs.
const TOOLS: &[(&str, &str)] = &[
    ("ip", "iproute2"),
    ("ss", "iproute2"),
    ("nft", "nftables"),
    ("trafgen", "netsniff-ng"),
    ("iperf3", "iperf3"),
    ("wrk", "wrk"),
    ("taskset", "util-linux"),
];

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Sub::Serve { listen }) = cli.cmd {
        return match traffic::serve(listen) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("serve: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sluice-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn sluice_binary(cli: &Cli) -> Result<PathBuf> {
    if let Some(p) = &cli.sluice {
        return p
            .canonicalize()
            .with_context(|| format!("no sluice binary at {}", p.display()));
    }
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("executable without a directory")?;
    let p = dir.join("sluice");
    if p.is_file() {
        return Ok(p);
    }
    bail!(
        "no sluice binary next to {} — build it into the same target directory first \
         (cargo build --release -p control), or pass --sluice PATH",
        exe.display()
    )
}

fn text_of(cmd: &mut Command) -> String {
    cmd.output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|_| "?".into())
}

struct Meta {
    kernel: String,
    nft: String,
    cpu_model: String,
    ncpu: usize,
}

fn meta() -> Meta {
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "?".into());
    Meta {
        kernel: text_of(Command::new("uname").arg("-r")),
        nft: text_of(Command::new("nft").arg("--version")),
        cpu_model,
        ncpu: rig::num_cpus(),
    }
}

fn fmt_dur(d: Duration) -> String {
    let s = d.as_secs();
    format!("{}:{:02}", s / 60, s % 60)
}

struct Progress {
    start: Instant,
    done: usize,
    total: usize,
}

impl Progress {
    fn line(&mut self, text: &str) {
        self.done += 1;
        let el = self.start.elapsed();
        let eta = if self.done > 0 {
            el.mul_f64((self.total - self.done) as f64 / self.done as f64)
        } else {
            Duration::ZERO
        };
        eprintln!(
            "[{:>3}/{} {} eta {}] {text}",
            self.done,
            self.total,
            fmt_dur(el),
            fmt_dur(eta)
        );
    }
}

fn cpu_text(cpu: &traffic::CpuUse) -> String {
    format!(
        "fwd {:.2} cores; busy {} %; softirq {} %",
        cpu.forwarder,
        cpu.busy
            .iter()
            .map(|c| format!("{:.0}", c * 100.0))
            .collect::<Vec<_>>()
            .join("/"),
        cpu.softirq
            .iter()
            .map(|c| format!("{:.0}", c * 100.0))
            .collect::<Vec<_>>()
            .join("/")
    )
}

fn run(cli: Cli) -> Result<()> {
    if !rig::is_root() {
        bail!("must run as root (it builds network namespaces and runs AF_XDP)");
    }
    let missing: Vec<String> = TOOLS
        .iter()
        .filter(|(t, _)| !rig::which(t))
        .map(|(t, p)| format!("{t} (package {p})"))
        .collect();
    if !missing.is_empty() {
        bail!("missing tools: {}", missing.join(", "));
    }
    let sluice = sluice_binary(&cli)?;
    let interrupted = Arc::new(AtomicBool::new(false));
    for sig in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ] {
        signal_hook::flag::register(sig, interrupted.clone())?;
    }

    let quick = cli.quick;
    let rounds = cli.rounds.unwrap_or(if quick { 1 } else { 3 }).max(1);
    let window = cli.window.unwrap_or(if quick { 1 } else { 3 }).max(1);
    let warm = if quick {
        Duration::from_millis(500)
    } else {
        Duration::from_secs(1)
    };
    let tcp_omit = if quick { 0 } else { 1 };
    let out_dir = cli.out.clone().unwrap_or_else(|| {
        if quick {
            std::env::temp_dir().join("sluice-bench-quick")
        } else {
            PathBuf::from("docs/bench")
        }
    });
    let metrics: Vec<Metric> = if cli.traffic.is_empty() {
        Metric::ALL.to_vec()
    } else {
        cli.traffic
            .iter()
            .map(|t| Metric::parse(t).with_context(|| format!("unknown traffic {t:?}")))
            .collect::<Result<_>>()?
    };
    let mut scenarios = if cli.swap.is_some() && !quick {
        Vec::new()
    } else if !cli.scenarios.is_empty() {
        cli.scenarios
            .iter()
            .map(|n| Scenario::by_name(n).with_context(|| format!("unknown scenario {n:?}")))
            .collect::<Result<Vec<_>>>()?
    } else if quick {
        Scenario::quick()
    } else {
        Scenario::all()
    };
    let mut skipped = Vec::new();
    scenarios.retain(|s| match s.sluice_support() {
        Ok(()) => true,
        Err(why) => {
            eprintln!(
                "sluice-bench: skipping {} — sluice does not support it yet ({why})",
                s.name
            );
            skipped.push((
                s.name.clone(),
                format!("not supported by sluice yet: {why}"),
            ));
            false
        }
    });

    let m = meta();
    let ncpu = m.ncpu;
    let (cpu_gen, cpu_fw) = (0, if ncpu > 1 { 1 } else { 0 });
    let cfg = RigConfig {
        queues: cli.queues.max(cli.workers as u32).max(1),
        workers: cli.workers.max(1),
        batch: cli.batch,
        cpu_gen,
        cpu_fw,
        nice: cli.nice,
    };
    eprintln!(
        "sluice-bench: {} vCPU ({}), kernel {}, {}; sluice {}",
        ncpu,
        m.cpu_model,
        m.kernel,
        m.nft,
        sluice.display()
    );
    eprintln!(
        "CPU budget: generator and end hosts pinned to CPU {cpu_gen}; forwarding on CPU {cpu_fw} on both paths \
         (sluice: {} busy-polling worker(s) from CPU {cpu_fw}; kernel: RPS on fw's interfaces to CPU {cpu_fw}). \
         veths with {} queues; {} round(s) of kernel/sluice alternation, {} s windows.",
        cfg.workers, cfg.queues, rounds, window
    );
    if ncpu < 2 {
        eprintln!("warning: one CPU only: generator and forwarder share it; the figures are not comparable with 2-CPU runs");
    }
    let names: Vec<&str> = scenarios.iter().map(|s| s.name.as_str()).collect();
    eprintln!(
        "scenarios: {}; traffic: {}",
        names.join(", "),
        metrics
            .iter()
            .map(|m| m.name())
            .collect::<Vec<_>>()
            .join(", ")
    );

    // With autogroup scheduling (the default), nice only ranks processes inside one session; between sessions
    // CPU is shared equally. So the bench's session gets the niceness too, restored when it ends.
    let _autogroup = AutogroupNice::set(cfg.nice);
    let mut samples: Vec<Sample> = match &cli.merge {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read {}", p.display()))?;
            let s = report::parse_runs_csv(&text).map_err(anyhow::Error::msg)?;
            eprintln!("merging {} earlier runs from {}", s.len(), p.display());
            s
        }
        None => Vec::new(),
    };
    let swap_plan: Option<(SwapConfig, Vec<Forwarder>)> = if cli.report_only {
        None
    } else if let Some(n) = cli.swap.or(quick.then_some(3)) {
        let (rules, baseline) = if quick && cli.swap.is_none() {
            (1000, Duration::from_secs(1))
        } else {
            (cli.swap_rules, Duration::from_secs(cli.swap_baseline))
        };
        let paths = cli
            .swap_paths
            .iter()
            .map(|p| match p.as_str() {
                "kernel" => Ok(Forwarder::Kernel),
                "sluice" => Ok(Forwarder::Sluice),
                _ => bail!("unknown swap path {p:?} (kernel, sluice)"),
            })
            .collect::<Result<Vec<_>>>()?;
        Some((
            SwapConfig {
                swaps: n,
                rules,
                baseline,
                streams: cli.swap_streams.max(1),
                check_only: cli.swap_check_only,
            },
            paths,
        ))
    } else {
        None
    };
    let swap_load = |fwd: Forwarder| match (fwd, quick && cli.swap.is_none()) {
        (Forwarder::Sluice, false) => Load {
            pps: cli.swap_pps,
            tcp_mbit: cli.swap_tcp_mbit,
        },
        (Forwarder::Kernel, false) => Load {
            pps: cli.swap_kernel_pps,
            tcp_mbit: cli.swap_kernel_tcp_mbit,
        },
        // The quick form: 1,000 rules, which both paths carry at these rates.
        (_, true) => Load {
            pps: 2000,
            tcp_mbit: 5.0,
        },
    };
    let mut swap_results: Vec<SwapResult> = Vec::new();
    let started = Instant::now();
    let load_before = loadavg();
    let result = (|| -> Result<()> {
        if cli.report_only {
            return Ok(());
        }
        let mut rig = Rig::up(cfg.clone(), interrupted.clone()).context("building the rig")?;
        rig.start_timeout = Duration::from_secs(cli.start_timeout);
        eprintln!("rig up: namespaces {}-{{gen,fw,srv}}", rig.prefix);
        let mut progress = Progress {
            start: Instant::now(),
            done: 0,
            total: scenarios.len() * rounds * 2 * metrics.len(),
        };
        for sc in &scenarios {
            let text = sc.ruleset().map_err(anyhow::Error::msg)?;
            let file = rig.write_file(&format!("{}.nft", sc.name), &text)?;
            let mut sluice_failed = false;
            for round in 0..rounds {
                // A B, then B A: drift over time does not favour one side.
                let order = if round % 2 == 0 {
                    [Forwarder::Kernel, Forwarder::Sluice]
                } else {
                    [Forwarder::Sluice, Forwarder::Kernel]
                };
                for fwd in order {
                    if fwd == Forwarder::Sluice && sluice_failed {
                        continue;
                    }
                    let load = match fwd {
                        Forwarder::Kernel => rig.kernel_up(&file)?,
                        Forwarder::Sluice => match rig.sluice_up(&sluice, &file) {
                            Ok(d) => d,
                            Err(e) if !interrupted.load(Ordering::Relaxed) => {
                                // Recorded, and not retried in later rounds (it would fail the same way).
                                let note =
                                    format!("{e:#}").lines().next().unwrap_or("").to_string();
                                eprintln!(
                                    "      {}: {note}; no sluice runs for this scenario",
                                    sc.name
                                );
                                for &m in &metrics {
                                    samples.push(Sample {
                                        scenario: sc.name.clone(),
                                        metric: m,
                                        fwd,
                                        round,
                                        value: None,
                                        offered: None,
                                        cpu: Default::default(),
                                        load_s: 0.0,
                                        note: note.clone(),
                                    });
                                    progress.line(&format!(
                                        "{:<12} sluice {}: {note}",
                                        sc.name,
                                        m.name()
                                    ));
                                }
                                sluice_failed = true;
                                continue;
                            }
                            Err(e) => return Err(e),
                        },
                    };
                    let profile = (round == 0 && cli.perf.contains(&sc.name))
                        .then(|| out_dir.join(format!("perf-{}-{}.txt", sc.name, fwd.name())));
                    let res = measure(
                        &mut rig,
                        sc,
                        fwd,
                        round,
                        load,
                        &metrics,
                        window,
                        warm,
                        tcp_omit,
                        cli.connections,
                        profile.as_deref(),
                        &mut samples,
                        &mut progress,
                    );
                    let down = match fwd {
                        Forwarder::Kernel => rig.kernel_down(),
                        Forwarder::Sluice => {
                            if let Ok(stats) = rig.control("stats") {
                                let keep = [
                                    "forwarded",
                                    "dropped_by_rule",
                                    "rx_frames",
                                    "tx_frames",
                                    "tx_ring_full",
                                    "ct_new",
                                ];
                                let picked: Vec<&str> = stats
                                    .lines()
                                    .filter(|l| {
                                        keep.iter().any(|k| l.starts_with(&format!("{k} ")))
                                    })
                                    .collect();
                                eprintln!("      sluice counters: {}", picked.join(", "));
                            }
                            if std::env::var_os("SLUICE_BENCH_DEBUG").is_some() {
                                for (role, ifname) in [
                                    ("fw", "fw-gen"),
                                    ("fw", "fw-srv"),
                                    ("gen", "gen0"),
                                    ("srv", "srv0"),
                                ] {
                                    let out =
                                        rig::run(&mut rig.cmd(role, &["ethtool", "-S", ifname]))
                                            .unwrap_or_default();
                                    let nz: Vec<&str> = out
                                        .lines()
                                        .map(str::trim)
                                        .filter(|l| !l.ends_with(": 0") && l.contains(':'))
                                        .collect();
                                    eprintln!("      {ifname}: {}", nz.join(", "));
                                }
                            }
                            rig.sluice_down()
                        }
                    };
                    res?;
                    down?;
                }
            }
            for r in report::summarize(&samples)
                .iter()
                .filter(|r| r.scenario == sc.name)
            {
                eprintln!(
                    "  == {} {}: kernel {} {u}, sluice {} {u}, ratio {}",
                    r.scenario,
                    r.metric.name(),
                    r.kernel
                        .median
                        .map(|v| r.metric.format(v))
                        .unwrap_or("–".into()),
                    r.sluice
                        .median
                        .map(|v| r.metric.format(v))
                        .unwrap_or("–".into()),
                    r.ratio().map(|x| format!("{x:.3}")).unwrap_or("–".into()),
                    u = r.metric.unit()
                );
            }
        }
        if let Some((scfg, paths)) = &swap_plan {
            eprintln!(
                "swap test{}: {} swaps of {} rules on {}",
                if scfg.check_only {
                    " (check only: nothing published)"
                } else {
                    ""
                },
                scfg.swaps,
                scfg.rules,
                paths
                    .iter()
                    .map(|p| p.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            let t = Instant::now();
            for &fwd in paths {
                let load = swap_load(fwd);
                eprintln!(
                    "  {}: UDP {} pps, {} iperf3 stream(s) at {} Mbit/s each",
                    fwd.name(),
                    load.pps,
                    scfg.streams,
                    load.tcp_mbit
                );
                let r = swap::run_path(&mut rig, fwd, &sluice, scfg, load, &mut |l| {
                    eprintln!("  [{}] {l}", fmt_dur(t.elapsed()))
                })?;
                eprintln!(
                    "  {}: {} swaps, attributable loss {:.0}, TCP {}",
                    fwd.name(),
                    r.latencies.len(),
                    r.attributable_loss(),
                    if r.tcp.survived { "survived" } else { "BROKEN" }
                );
                swap_results.push(r);
            }
        }
        eprintln!("tearing the rig down");
        Ok(())
    })();
    if interrupted.load(Ordering::Relaxed) {
        eprintln!("sluice-bench: interrupted; the rig has been removed");
    }

    // Whatever was measured is written, also after a failure.
    if !swap_results.is_empty() {
        let machine = format!(
            "{} vCPU ({}), kernel {}, {}; traffic generators, end hosts and the swap commands on CPU {cpu_gen}, \
             forwarding on CPU {cpu_fw}",
            ncpu, m.cpu_model, m.kernel, m.nft
        );
        let smd = swap::markdown(&swap_results, &today(), &machine);
        std::fs::create_dir_all(&out_dir)
            .with_context(|| format!("cannot create {}", out_dir.display()))?;
        write(&out_dir.join("swap.csv"), &swap::swaps_csv(&swap_results))?;
        write(&out_dir.join("swap.md"), &smd)?;
        println!("{smd}");
        if let (Some(doc), Ok(())) = (&cli.update_doc, &result) {
            match report::update_doc_section(doc, "swap", &smd) {
                Ok(true) => eprintln!("updated the swap section of {}", doc.display()),
                Ok(false) => eprintln!(
                    "{} has no <!-- bench:swap:start/end --> markers; swap section not updated",
                    doc.display()
                ),
                Err(e) => eprintln!("cannot update {}: {e}", doc.display()),
            }
        }
        if cli.swap.is_some() && !quick {
            eprintln!("wrote {}/{{swap.csv,swap.md}}", out_dir.display());
            return result;
        }
    }
    let rows = report::summarize(&samples);
    let cpu_names = if ncpu > 1 {
        format!("CPU{cpu_gen}/CPU{cpu_fw}")
    } else {
        "CPU0".into()
    };
    let mut md = if cli.report_only {
        format!(
            "Report rewritten {} from the runs in {} (measured on {} vCPU ({}), kernel {}, {}; generator and \
             end hosts on CPU {cpu_gen}, forwarding on CPU {cpu_fw}; medians (min–max)).\n\n",
            today(),
            cli.merge.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
            ncpu,
            m.cpu_model,
            m.kernel,
            m.nft
        )
    } else {
        format!(
        "Measured {} on {} vCPU ({}), kernel {}, {}. sluice: {} worker(s), batch {}, AF_XDP copy mode on veth; \
         {} round(s) per scenario, kernel and sluice alternating; {} s windows; medians (min–max). \
         Generator and end hosts on CPU {cpu_gen}, forwarding on CPU {cpu_fw}; measured processes at nice {}. \
         Total time {}; 1-minute load average {} before, {} after (the machine is shared: other work shows up as noise).\n\n",
        today(),
        ncpu,
        m.cpu_model,
        m.kernel,
        m.nft,
        cfg.workers,
        cfg.batch,
        rounds,
        window,
        cfg.nice,
        fmt_dur(started.elapsed()),
        load_before,
        loadavg()
    )
    };
    md.push_str(&report::markdown(&rows, &skipped, &cpu_names));
    std::fs::create_dir_all(&out_dir)
        .with_context(|| format!("cannot create {}", out_dir.display()))?;
    write(&out_dir.join("runs.csv"), &report::runs_csv(&samples))?;
    write(&out_dir.join("summary.csv"), &report::summary_csv(&rows))?;
    write(&out_dir.join("results.md"), &md)?;
    let subtitle = format!(
        "{} vCPU, kernel {}, {}; generator CPU {cpu_gen}, forwarder CPU {cpu_fw}; median of {rounds}, whiskers min–max",
        ncpu, m.kernel, m.nft
    );
    match bench::plot::plots(&rows, &out_dir, &subtitle) {
        Ok(files) => {
            for f in files {
                eprintln!("wrote {}", f.display());
            }
        }
        Err(e) => eprintln!("plots skipped: {e:#}"),
    }
    if let Some(doc) = &cli.update_doc {
        if result.is_ok() {
            match report::update_doc(doc, &md) {
                Ok(true) => eprintln!("updated {}", doc.display()),
                Ok(false) => eprintln!(
                    "{} has no <!-- bench:results:start/end --> markers; not updated",
                    doc.display()
                ),
                Err(e) => eprintln!("cannot update {}: {e}", doc.display()),
            }
        }
    }
    println!("{md}");
    eprintln!(
        "wrote {}/{{runs.csv,summary.csv,results.md}}",
        out_dir.display()
    );
    result
}

/// `perf stat` and `perf record -e cpu-clock` of the forwarding CPU for `w`; returns both reports. (Hardware
/// counters are often missing in VMs: perf then prints "<not supported>" for cycles and instructions.)
fn perf_profile(rig: &Rig, w: Duration) -> Result<String> {
    let cpu = rig.cfg.cpu_fw.to_string();
    let secs = format!("{:.1}", w.as_secs_f64());
    let data = rig.state.join("perf.data");
    let stat = Command::new("perf")
        .args([
            "stat",
            "-C",
            &cpu,
            "-e",
            "task-clock,context-switches,cycles,instructions",
            "--",
            "sleep",
            &secs,
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("cannot run perf (package linux-perf)")?;
    let rec = Command::new("perf")
        .args([
            "record",
            "-q",
            "-e",
            "cpu-clock",
            "-F",
            "2000",
            "-C",
            &cpu,
            "-o",
        ])
        .arg(&data)
        .args(["--", "sleep", &secs])
        .output()
        .context("perf record")?;
    let stat = stat.wait_with_output()?;
    let report = Command::new("perf")
        .args([
            "report",
            "--stdio",
            "--no-children",
            "--sort",
            "comm,dso,sym",
            "-i",
        ])
        .arg(&data)
        .output()
        .context("perf report")?;
    let top: Vec<String> = String::from_utf8_lossy(&report.stdout)
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .take(40)
        .map(str::to_string)
        .collect();
    Ok(format!(
        "## perf stat -C {cpu}\n\n{}\n\n## perf record -e cpu-clock -C {cpu} (top 40){}\n\n{}\n",
        String::from_utf8_lossy(&stat.stderr).trim(),
        if rec.status.success() {
            ""
        } else {
            " (perf record failed)"
        },
        top.join("\n")
    ))
}

fn write(p: &Path, text: &str) -> Result<()> {
    std::fs::write(p, text).with_context(|| format!("cannot write {}", p.display()))
}

/// The autogroup (session) niceness, set for the bench's duration.
struct AutogroupNice(Option<i32>);

impl AutogroupNice {
    fn read() -> Option<i32> {
        let t = std::fs::read_to_string("/proc/self/autogroup").ok()?;
        t.split_whitespace().last()?.parse().ok()
    }

    fn set(nice: i32) -> AutogroupNice {
        if nice == 0 {
            return AutogroupNice(None);
        }
        let Some(old) = Self::read() else {
            return AutogroupNice(None);
        };
        match std::fs::write("/proc/self/autogroup", nice.to_string()) {
            Ok(()) => AutogroupNice(Some(old)),
            Err(e) => {
                eprintln!("sluice-bench: cannot set the session's autogroup niceness: {e}");
                AutogroupNice(None)
            }
        }
    }
}

impl Drop for AutogroupNice {
    fn drop(&mut self) {
        if let Some(old) = self.0 {
            let _ = std::fs::write("/proc/self/autogroup", old.to_string());
        }
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|t| t.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

fn today() -> String {
    text_of(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"]))
}

#[allow(clippy::too_many_arguments)]
fn measure(
    rig: &mut Rig,
    sc: &Scenario,
    fwd: Forwarder,
    round: usize,
    load: Duration,
    metrics: &[Metric],
    window: u32,
    warm: Duration,
    tcp_omit: u32,
    connections: u32,
    profile: Option<&Path>,
    samples: &mut Vec<Sample>,
    progress: &mut Progress,
) -> Result<()> {
    let dst = sc.target();
    for &m in metrics {
        let mut s = Sample {
            scenario: sc.name.clone(),
            metric: m,
            fwd,
            round,
            value: None,
            offered: None,
            cpu: Default::default(),
            load_s: load.as_secs_f64(),
            note: String::new(),
        };
        let res: Result<String> = match m {
            Metric::Udp => {
                let w = Duration::from_secs(window as u64);
                let mut prof = String::new();
                let r = match profile {
                    Some(_) => traffic::udp_with(rig, dst, warm, w, &mut |rig, w| {
                        prof = perf_profile(rig, w)?;
                        Ok(())
                    }),
                    None => traffic::udp(rig, dst, warm, w),
                };
                if let (Some(path), Ok(r)) = (profile, &r) {
                    let text = format!(
                        "# {} through {}: {} pps delivered during the profile\n\n{prof}",
                        sc.name,
                        fwd.name(),
                        report::thousands(r.delivered_pps as u64)
                    );
                    std::fs::create_dir_all(path.parent().unwrap())?;
                    std::fs::write(path, text)?;
                    eprintln!("      profile written to {}", path.display());
                }
                r
            }
            .map(|r| {
                s.value = Some(r.delivered_pps);
                s.offered = Some(r.offered_pps);
                s.cpu = r.cpu;
                format!(
                    "{} pps (offered {})",
                    report::thousands(r.delivered_pps as u64),
                    report::thousands(r.offered_pps as u64)
                )
            }),
            Metric::Tcp => traffic::tcp(rig, dst, window, tcp_omit).map(|r| {
                s.value = Some(r.gbit_s);
                s.cpu = r.cpu;
                s.note = format!("retransmits {}", r.retransmits);
                format!("{:.3} Gbit/s ({} retransmits)", r.gbit_s, r.retransmits)
            }),
            Metric::Cps => traffic::cps(rig, dst, window, connections).map(|r| {
                s.value = Some(r.conn_s);
                s.cpu = r.cpu;
                s.note = format!("errors {}", r.errors);
                format!(
                    "{} conn/s ({} errors)",
                    report::thousands(r.conn_s as u64),
                    r.errors
                )
            }),
        };
        if rig.interrupted().load(Ordering::Relaxed) {
            bail!("interrupted");
        }
        let text = match res {
            Ok(t) => t,
            Err(e) => {
                s.note = format!("{e:#}");
                format!("FAILED: {e:#}")
            }
        };
        progress.line(&format!(
            "{:<12} {:<6} round {} {:<6} {}  cpu {}",
            sc.name,
            fwd.name(),
            round + 1,
            m.name(),
            text,
            cpu_text(&s.cpu)
        ));
        samples.push(s);
        if std::env::var_os("SLUICE_BENCH_DEBUG").is_some() {
            if let Some(pid) = rig.sluice_pid() {
                let out = rig::run(Command::new("ps").args([
                    "-L",
                    "-o",
                    "tid,psr,ni,pcpu,stat,time,comm",
                    "-p",
                    &pid.to_string(),
                ]))
                .unwrap_or_default();
                eprintln!("{out}");
            }
        }
        if fwd == Forwarder::Sluice && !rig.sluice_alive() {
            bail!("sluice died during the run:\n{}", rig.sluice_log_text());
        }
    }
    Ok(())
}
