//! The swap test (issue 6): while the rig carries a UDP flood and long TCP transfers, replace a big ruleset
//! with another one N times — `sluice nft -f` against the sluice daemon, `nft -f` in fw for the kernel — and
//! report the packets lost because of the swaps, whether every TCP connection survived, and how long each
//! swap took from the command's start to the new generation being live.
//!
//! Per path: the rig's forwarder comes up with ruleset A; two unmeasured swaps (B, A) without traffic give
//! an estimate of the swap time; then a **baseline** phase (no swap) and a **swap** phase run the same traffic:
//! trafgen at a fixed rate plus an iperf3 client with several rate-limited streams. UDP loss is counted exactly:
//! trafgen's own count of frames sent against the sink's counter, both read before the phase's trafgen starts
//! and after it has stopped and the path has drained. The loss attributable to the swaps is the swap phase's
//! loss minus what the baseline's loss rate predicts for as many frames. The iperf3 client of the swap phase
//! runs across all swaps (its duration is set from the estimate); it must end without error with every stream
//! having delivered data, and its per-second intervals show any stall.
//!
//! Swap latency is measured by the bench with a monotonic clock around the command: from spawning the
//! command (`sluice nft -f FILE`, or `nft -f FILE` in fw's network namespace, both pinned to the generator's
//! CPU) to its successful exit. The sluice daemon answers only after it has stored the new generation in
//! the `ArcSwap` the workers read at the start of every batch, and nft returns after the kernel has
//! committed the transaction, so on both paths the interval ends after the new generation is live. For sluice
//! the daemon's own breakdown (from `sluice ctl stats`: parse+check, compile, prepare, publish, measured
//! from the request's arrival to the store) is recorded next to it.

use crate::rig::{addr, run, sleep_checked, Forwarder, Rig};
use crate::traffic::Guard;
use anyhow::{anyhow, bail, Context, Result};
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One of the two rulesets the swap alternates between: `flush ruleset`, then a forward chain of `n` rules
/// `ip saddr 10.x.y.z drop` that the bench traffic matches none of, then an accept. `variant` 0 and 1 use
/// disjoint addresses (10.0.0.0/10 and 10.64.0.0/10), so every load is a real change.
pub fn swap_ruleset(n: usize, variant: u8) -> String {
    let mut s = String::with_capacity(n * 32 + 256);
    s.push_str("flush ruleset\n");
    s.push_str(
        "table inet filter {\n\tchain forward {\n\t\ttype filter hook forward priority filter; policy drop;\n",
    );
    let hi = 64 * (variant as usize & 1);
    for i in 0..n {
        let _ = writeln!(
            s,
            "\t\tip saddr 10.{}.{}.{} drop",
            hi + ((i >> 16) & 63),
            (i >> 8) & 255,
            i & 255
        );
    }
    s.push_str("\t\taccept\n\t}\n}\n");
    s
}

#[derive(Clone, Debug)]
pub struct SwapConfig {
    pub swaps: usize,
    pub rules: usize,
    /// How long the baseline (no swap) phase runs.
    pub baseline: Duration,
    /// iperf3 streams (one client, `-P`).
    pub streams: u32,
    /// A control experiment: the same commands with `-c` (check: parse, check and compile, then discard),
    /// so nothing is published; loss then comes from the control plane's CPU use, not from a swap.
    pub check_only: bool,
}

/// The load one path carries during both phases.
#[derive(Clone, Copy, Debug)]
pub struct Load {
    /// UDP packets per second (trafgen `-b`).
    pub pps: u64,
    /// Rate limit of each iperf3 stream, Mbit/s.
    pub tcp_mbit: f64,
}

/// UDP counts of one phase.
#[derive(Clone, Copy, Debug, Default)]
pub struct Phase {
    pub secs: f64,
    pub sent: u64,
    pub received: u64,
}

impl Phase {
    pub fn lost(&self) -> u64 {
        self.sent.saturating_sub(self.received)
    }
    pub fn loss_rate(&self) -> f64 {
        if self.sent == 0 {
            0.0
        } else {
            self.lost() as f64 / self.sent as f64
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct TcpOutcome {
    /// The client ended without error and every stream delivered data.
    pub survived: bool,
    pub error: Option<String>,
    pub streams: u32,
    /// Streams with a receiver byte count above zero.
    pub streams_ok: u32,
    pub bytes: u64,
    pub secs: f64,
    pub retransmits: u64,
    /// Longest run of consecutive 1-second intervals in which no byte arrived.
    pub longest_stall_s: u32,
}

/// The daemon's account of one apply (microseconds), from `sluice ctl stats`.
#[derive(Clone, Copy, Debug, Default)]
pub struct DaemonTimes {
    pub generation: u64,
    pub base_us: u64,
    pub parse_us: u64,
    pub compile_us: u64,
    pub prepare_us: u64,
    pub publish_us: u64,
    pub total_us: u64,
}

impl DaemonTimes {
    pub fn parse(stats: &str) -> Option<DaemonTimes> {
        let get = |k: &str| -> Option<u64> {
            stats.lines().find_map(|l| {
                let (name, v) = l.split_once(' ')?;
                (name == k).then(|| v.trim().parse().ok()).flatten()
            })
        };
        Some(DaemonTimes {
            generation: get("ruleset_generation")?,
            base_us: get("last_apply_base_us")?,
            parse_us: get("last_apply_parse_us")?,
            compile_us: get("last_apply_compile_us")?,
            prepare_us: get("last_apply_prepare_us")?,
            publish_us: get("last_apply_publish_us")?,
            total_us: get("last_apply_total_us")?,
        })
    }
}

#[derive(Clone, Debug)]
pub struct SwapResult {
    pub fwd: Forwarder,
    /// The control experiment (`-c`: nothing published).
    pub check_only: bool,
    pub load: Load,
    pub rules: usize,
    pub swaps_planned: usize,
    /// Command start → successful exit, per swap done.
    pub latencies: Vec<Duration>,
    /// sluice only: the daemon's breakdown per swap.
    pub daemon: Vec<DaemonTimes>,
    /// Swaps whose command failed, with the message.
    pub failures: Vec<String>,
    pub baseline: Phase,
    pub swapping: Phase,
    pub tcp_baseline: TcpOutcome,
    pub tcp: TcpOutcome,
    /// Swaps the TCP transfer spanned (it may end early if the estimate was short).
    pub swaps_under_tcp: usize,
    /// sluice only: generations published during the swap phase, by the daemon's count.
    pub generations: Option<u64>,
    /// Load average (1 min) before and after.
    pub loadavg: (String, String),
    /// Drop counters that moved during the baseline and during the swap phase (see [`drop_counters`]).
    pub counters_baseline: Vec<(String, u64)>,
    pub counters_swapping: Vec<(String, u64)>,
}

impl SwapResult {
    /// Packets lost beyond what the baseline's loss rate predicts (negative: fewer).
    pub fn attributable_loss(&self) -> f64 {
        self.swapping.lost() as f64 - self.baseline.loss_rate() * self.swapping.sent as f64
    }
}

/// The `p`-quantile (0..=1) of sorted durations, nearest rank.
pub fn quantile(sorted: &[Duration], p: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|t| t.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

/// A command run directly (no `ip netns exec`: that remounts /sys and would be counted in the latency) in
/// the namespace `ns` (when given), pinned to `cpu`.
fn in_netns(ns: Option<&str>, cpu: usize, argv: &[&str]) -> Result<Command> {
    use std::os::unix::process::CommandExt;
    let fd = match ns {
        Some(ns) => Some(
            fs::File::open(Path::new("/run/netns").join(ns))
                .with_context(|| format!("network namespace {ns}"))?,
        ),
        None => None,
    };
    let mut c = Command::new(argv[0]);
    c.args(&argv[1..]);
    // SAFETY: only async-signal-safe calls (setns, sched_setaffinity, CPU_* on a local) between fork and exec.
    unsafe {
        c.pre_exec(move || {
            if let Some(f) = &fd {
                use std::os::fd::AsRawFd;
                if libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_ZERO(&mut set);
            libc::CPU_SET(cpu, &mut set);
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
            Ok(())
        });
    }
    Ok(c)
}

/// A trafgen flood at a fixed rate; [`Flood::stop`] returns how many frames it sent.
struct Flood {
    g: Guard,
    log: PathBuf,
}

impl Flood {
    fn start(rig: &Rig, pps: u64) -> Result<Flood> {
        let dst = crate::SRV_ADDR;
        let cfg = rig.write_file("swap-trafgen.cfg", &crate::traffic::trafgen_config(dst))?;
        let log = rig.state.join("swap-trafgen.log");
        let out = fs::File::create(&log)?;
        let rate = format!("{pps}pps");
        let child = rig
            .pinned(
                "gen",
                rig.cfg.cpu_gen,
                &[
                    "trafgen",
                    "-i",
                    cfg.to_str().unwrap(),
                    "-o",
                    "gen0",
                    "-P",
                    "1",
                    "--no-sock-mem",
                    "--notouch-irq",
                    "--no-cpu-stats",
                    "-t",
                    "0",
                    "-b",
                    &rate,
                ],
            )
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .context("cannot start trafgen (package netsniff-ng)")?;
        Ok(Flood {
            g: Guard(Some(child)),
            log,
        })
    }

    /// SIGINT, wait for trafgen's summary; the number of frames it sent.
    fn stop(mut self) -> Result<u64> {
        let pid = self.g.child().id() as i32;
        if self.g.child().try_wait()?.is_some() {
            bail!(
                "trafgen exited early: {}",
                fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
        // SAFETY: signalling our own child's process group (it is not reaped yet).
        unsafe { libc::kill(-pid, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.g.child().try_wait()?.is_none() {
            if Instant::now() > deadline {
                bail!("trafgen did not stop on SIGINT");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.g.0 = None;
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        parse_trafgen_sent(&text)
            .ok_or_else(|| anyhow!("no \"packets outgoing\" in trafgen's output:\n{text}"))
    }
}

/// trafgen's closing summary: `N packets outgoing`.
pub fn parse_trafgen_sent(text: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.contains("packets outgoing"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Waits until the sink's counter stops moving (the forwarder's rings are empty); returns the count.
fn settle(rig: &Rig) -> Result<u64> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = rig.sink_packets()?;
    let mut still = 0;
    while still < 3 && Instant::now() < deadline {
        sleep_checked(Duration::from_millis(150), rig.interrupted())?;
        let now = rig.sink_packets()?;
        if now == last {
            still += 1;
        } else {
            still = 0;
        }
        last = now;
    }
    Ok(last)
}

/// The iperf3 transfer of one phase: server in srv, client in gen, both on the generator's CPU. The client's
/// JSON goes to a file: a long run's output is more than a pipe holds, and iperf3 would block writing it.
struct Transfer {
    _server: Guard,
    client: Guard,
    streams: u32,
    out: PathBuf,
}

impl Transfer {
    fn start(rig: &Rig, streams: u32, mbit: f64, secs: u64) -> Result<Transfer> {
        let port = crate::IPERF_PORT.to_string();
        let server = rig
            .pinned("srv", rig.cfg.cpu_gen, &["iperf3", "-s", "-1", "-p", &port])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start iperf3 (package iperf3)")?;
        let server = Guard(Some(server));
        let deadline = Instant::now() + Duration::from_secs(5);
        while !run(&mut rig.cmd("srv", &["ss", "-Hltn"]))?.contains(&format!(":{port} ")) {
            if Instant::now() > deadline {
                bail!("iperf3 server did not start");
            }
            sleep_checked(Duration::from_millis(20), rig.interrupted())?;
        }
        let target = addr(crate::SRV_ADDR);
        let (p, t, b) = (
            streams.to_string(),
            secs.to_string(),
            format!("{}K", (mbit * 1000.0).round().max(1.0) as u64),
        );
        let out = rig.state.join("swap-iperf3.json");
        let out_file = fs::File::create(&out)?;
        let client = rig
            .pinned(
                "gen",
                rig.cfg.cpu_gen,
                &[
                    "iperf3",
                    "-c",
                    &target,
                    "-p",
                    &port,
                    "-P",
                    &p,
                    "-b",
                    &b,
                    "-t",
                    &t,
                    "-J",
                    "--connect-timeout",
                    "3000",
                ],
            )
            .stdin(Stdio::null())
            .stdout(out_file.try_clone()?)
            .stderr(out_file)
            .spawn()
            .context("cannot start iperf3")?;
        Ok(Transfer {
            _server: server,
            client: Guard(Some(client)),
            streams,
            out,
        })
    }

    fn running(&mut self) -> bool {
        matches!(self.client.child().try_wait(), Ok(None))
    }

    fn finish(mut self, rig: &Rig, limit: Duration) -> TcpOutcome {
        let streams = self.streams;
        let fail = |e: String| TcpOutcome {
            survived: false,
            error: Some(e),
            streams,
            ..Default::default()
        };
        let deadline = Instant::now() + limit;
        let status = loop {
            if rig.interrupted().load(std::sync::atomic::Ordering::Relaxed) {
                return fail("interrupted".into());
            }
            match self.client.child().try_wait() {
                Ok(Some(st)) => break st,
                Ok(None) if Instant::now() > deadline => {
                    return fail(format!("iperf3 did not finish within {limit:?}"))
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
                Err(e) => return fail(format!("waiting for iperf3: {e}")),
            }
        };
        let out = fs::read_to_string(&self.out).unwrap_or_default();
        // iperf3 -J prints its JSON, with "error", also when it fails: parse it either way.
        let json = out.find('{').map_or("", |i| &out[i..]);
        if !status.success() && json.is_empty() {
            return fail(format!("iperf3 failed ({status}): {}", out.trim()));
        }
        let out = json.to_string();
        match parse_iperf(&out, streams) {
            Ok(mut o) if !status.success() => {
                o.survived = false;
                o.error
                    .get_or_insert(format!("iperf3 exited with {status}"));
                o
            }
            Ok(o) => o,
            Err(e) => fail(format!("{e:#}")),
        }
    }
}

/// Reads iperf3's JSON: errors, per-stream receiver bytes, retransmits, stalls.
pub fn parse_iperf(out: &str, streams: u32) -> Result<TcpOutcome> {
    let v: serde_json::Value =
        serde_json::from_str(out).map_err(|e| anyhow!("iperf3 printed no JSON ({e}): {out}"))?;
    let error = v.get("error").and_then(|e| e.as_str()).map(str::to_string);
    let end = &v["end"];
    let per_stream: Vec<u64> = end["streams"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| s["receiver"]["bytes"].as_u64().unwrap_or(0))
                .collect()
        })
        .unwrap_or_default();
    let streams_ok = per_stream.iter().filter(|&&b| b > 0).count() as u32;
    let mut longest = 0;
    let mut run_len = 0;
    for i in v["intervals"].as_array().into_iter().flatten() {
        if i["sum"]["bytes"].as_u64().unwrap_or(0) == 0 {
            run_len += 1;
            longest = longest.max(run_len);
        } else {
            run_len = 0;
        }
    }
    Ok(TcpOutcome {
        survived: error.is_none() && streams_ok == streams,
        error,
        streams,
        streams_ok,
        bytes: end["sum_received"]["bytes"].as_u64().unwrap_or(0),
        secs: end["sum_received"]["seconds"].as_f64().unwrap_or(0.0),
        retransmits: end["sum_sent"]["retransmits"].as_u64().unwrap_or(0),
        longest_stall_s: longest,
    })
}

/// Drop-related counters of the path, to say where packets were lost: sluice's own (`sluice ctl stats`),
/// fw's veths (`ethtool -S`: veth counts frames its XDP program could not hand to an AF_XDP ring as
/// drops) and the kernel's backlog drops (`/proc/net/softnet_stat`, machine-wide).
fn drop_counters(rig: &Rig, fwd: Forwarder) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    if fwd == Forwarder::Sluice {
        if let Ok(stats) = rig.control("stats") {
            for l in stats.lines() {
                if let Some((k, v)) = l.split_once(' ') {
                    let keep = k == "rx_frames"
                        || k == "forwarded"
                        || k.starts_with("drop")
                        || k.ends_with("_full")
                        || k.ends_with("overflow");
                    if let (true, Ok(v)) = (keep, v.trim().parse()) {
                        out.push((format!("sluice {k}"), v));
                    }
                }
            }
        }
    }
    for ifname in ["fw-gen", "fw-srv"] {
        let text = run(&mut rig.cmd("fw", &["ethtool", "-S", ifname])).unwrap_or_default();
        for l in text.lines() {
            if let Some((k, v)) = l.trim().split_once(':') {
                if k.contains("drop") || k.contains("xdp_tx_err") {
                    if let Ok(v) = v.trim().parse() {
                        out.push((format!("{ifname} {k}"), v));
                    }
                }
            }
        }
    }
    let softnet: u64 = fs::read_to_string("/proc/net/softnet_stat")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| u64::from_str_radix(l.split_whitespace().nth(1)?, 16).ok())
        .sum();
    out.push(("softnet dropped (machine)".into(), softnet));
    out
}

/// Counters that moved between two readings of [`drop_counters`].
fn moved(a: &[(String, u64)], b: &[(String, u64)]) -> Vec<(String, u64)> {
    b.iter()
        .filter_map(|(k, vb)| {
            let va = a.iter().find(|(ka, _)| ka == k).map_or(0, |x| x.1);
            (vb > &va).then(|| (k.clone(), vb - va))
        })
        .collect()
}

/// One swap: the command, timed; `Err` with its output when it fails.
fn swap_once(
    rig: &Rig,
    fwd: Forwarder,
    sluice: &Path,
    file: &Path,
    check_only: bool,
) -> Result<Duration, String> {
    let file = file.to_str().unwrap();
    let f = if check_only { "-cf" } else { "-f" };
    let socket = rig.control_socket();
    let cmd = match fwd {
        Forwarder::Kernel => in_netns(Some(&rig.ns("fw")), rig.cfg.cpu_gen, &["nft", f, file]),
        // The control socket is a path: the client needs no namespace.
        Forwarder::Sluice => in_netns(
            None,
            rig.cfg.cpu_gen,
            &[
                sluice.to_str().unwrap(),
                "nft",
                "--control",
                socket.to_str().unwrap(),
                f,
                file,
            ],
        ),
    };
    let mut cmd = cmd.map_err(|e| format!("{e:#}"))?;
    cmd.stdin(Stdio::null());
    let t = Instant::now();
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run the swap: {e}"))?;
    let took = t.elapsed();
    if !out.status.success() {
        return Err(format!(
            "{} ({}): {}",
            match fwd {
                Forwarder::Kernel => "nft -f",
                Forwarder::Sluice => "sluice nft -f",
            },
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(took)
}

/// Runs the baseline and swap phases on one path. The rig must have no forwarder up; it has none after.
pub fn run_path(
    rig: &mut Rig,
    fwd: Forwarder,
    sluice: &Path,
    cfg: &SwapConfig,
    load: Load,
    progress: &mut dyn FnMut(&str),
) -> Result<SwapResult> {
    let files = [
        rig.write_file("swap-a.nft", &swap_ruleset(cfg.rules, 0))?,
        rig.write_file("swap-b.nft", &swap_ruleset(cfg.rules, 1))?,
    ];
    let load_before = loadavg();
    let up = match fwd {
        Forwarder::Kernel => rig.kernel_up(&files[0]),
        Forwarder::Sluice => rig.sluice_up(sluice, &files[0]),
    };
    up.with_context(|| format!("{} with {} rules", fwd.name(), cfg.rules))?;
    let res = phases(rig, fwd, sluice, cfg, load, &files, progress);
    let down = match fwd {
        Forwarder::Kernel => rig.kernel_down(),
        Forwarder::Sluice => {
            let alive = rig.sluice_alive();
            let log = rig.sluice_log_text();
            rig.sluice_down()?;
            if !alive {
                bail!("sluice died during the swap test:\n{log}");
            }
            Ok(())
        }
    };
    let mut r = res?;
    down?;
    r.loadavg = (load_before, loadavg());
    Ok(r)
}

fn phases(
    rig: &mut Rig,
    fwd: Forwarder,
    sluice: &Path,
    cfg: &SwapConfig,
    load: Load,
    files: &[PathBuf; 2],
    progress: &mut dyn FnMut(&str),
) -> Result<SwapResult> {
    // Unmeasured: B then A, to estimate a swap's duration (and to warm caches on both paths alike).
    let mut estimate = Duration::ZERO;
    for f in [&files[1], &files[0]] {
        estimate = estimate.max(swap_once(rig, fwd, sluice, f, false).map_err(|e| anyhow!(e))?);
    }
    progress(&format!(
        "{}: {} rules, a swap takes ≈ {:.0} ms; baseline {} s",
        fwd.name(),
        cfg.rules,
        estimate.as_secs_f64() * 1e3,
        cfg.baseline.as_secs()
    ));
    // Let the sink's counter settle before counting (nothing flows yet).
    let warm = Flood::start(rig, load.pps)?;
    sleep_checked(Duration::from_millis(500), rig.interrupted())?;
    warm.stop()?;
    settle(rig)?;

    // Baseline: the same traffic, no swap.
    let base_secs = cfg.baseline.as_secs().max(1);
    let mut tcp = Transfer::start(rig, cfg.streams, load.tcp_mbit, base_secs + 2)?;
    sleep_checked(Duration::from_millis(500), rig.interrupted())?;
    let s0 = rig.sink_packets()?;
    let c0 = drop_counters(rig, fwd);
    let t0 = Instant::now();
    let flood = Flood::start(rig, load.pps)?;
    sleep_checked(cfg.baseline, rig.interrupted())?;
    let sent = flood.stop()?;
    let secs = t0.elapsed().as_secs_f64();
    let s1 = settle(rig)?;
    let counters_baseline = moved(&c0, &drop_counters(rig, fwd));
    let baseline = Phase {
        secs,
        sent,
        received: s1 - s0,
    };
    let tcp_baseline = tcp.finish(rig, Duration::from_secs(base_secs + 30));
    progress(&format!(
        "{}: baseline {} of {} UDP frames lost ({:.4} %); TCP {}",
        fwd.name(),
        baseline.lost(),
        baseline.sent,
        baseline.loss_rate() * 100.0,
        tcp_text(&tcp_baseline)
    ));

    // The swaps, under the same traffic.
    let gen0 = match fwd {
        Forwarder::Sluice => rig
            .control("stats")
            .ok()
            .and_then(|s| DaemonTimes::parse(&s))
            .map(|d| d.generation),
        Forwarder::Kernel => None,
    };
    let tcp_secs = (estimate.as_secs_f64() * 1.3 * cfg.swaps as f64).ceil() as u64 + 4;
    tcp = Transfer::start(rig, cfg.streams, load.tcp_mbit, tcp_secs)?;
    sleep_checked(Duration::from_millis(500), rig.interrupted())?;
    let s0 = rig.sink_packets()?;
    let c0 = drop_counters(rig, fwd);
    let t0 = Instant::now();
    let flood = Flood::start(rig, load.pps)?;
    sleep_checked(Duration::from_millis(500), rig.interrupted())?;
    let mut latencies = Vec::new();
    let mut daemon = Vec::new();
    let mut failures = Vec::new();
    let mut swaps_under_tcp = 0;
    let step = (cfg.swaps / 10).max(1);
    for i in 0..cfg.swaps {
        if rig.interrupted().load(std::sync::atomic::Ordering::Relaxed) {
            bail!("interrupted");
        }
        let file = &files[(i + 1) % 2];
        match swap_once(rig, fwd, sluice, file, cfg.check_only) {
            Ok(d) => latencies.push(d),
            Err(e) => failures.push(e),
        }
        if tcp.running() {
            swaps_under_tcp += 1;
        }
        if fwd == Forwarder::Sluice {
            // Asked in the check-only experiment too (the same pacing), but a check publishes nothing and
            // leaves the daemon's record of the last apply as it was.
            if let Some(d) = rig
                .control("stats")
                .ok()
                .and_then(|s| DaemonTimes::parse(&s))
                .filter(|_| !cfg.check_only)
            {
                daemon.push(d);
            }
        }
        if (i + 1) % step == 0 {
            progress(&format!(
                "{}: swap {}/{}: {:.0} ms",
                fwd.name(),
                i + 1,
                cfg.swaps,
                latencies.last().map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
            ));
        }
    }
    sleep_checked(Duration::from_millis(500), rig.interrupted())?;
    let sent = flood.stop()?;
    let secs = t0.elapsed().as_secs_f64();
    let s1 = settle(rig)?;
    let counters_swapping = moved(&c0, &drop_counters(rig, fwd));
    let swapping = Phase {
        secs,
        sent,
        received: s1 - s0,
    };
    let generations = match (fwd, gen0) {
        (Forwarder::Sluice, Some(g0)) => rig
            .control("stats")
            .ok()
            .and_then(|s| DaemonTimes::parse(&s))
            .map(|d| d.generation - g0),
        _ => None,
    };
    let tcp = tcp.finish(rig, Duration::from_secs(tcp_secs + 30));
    Ok(SwapResult {
        fwd,
        load,
        rules: cfg.rules,
        swaps_planned: cfg.swaps,
        check_only: cfg.check_only,
        latencies,
        daemon,
        failures,
        baseline,
        swapping,
        tcp_baseline,
        tcp,
        swaps_under_tcp,
        generations,
        loadavg: Default::default(),
        counters_baseline,
        counters_swapping,
    })
}

fn tcp_text(t: &TcpOutcome) -> String {
    if t.survived {
        format!(
            "{}/{} streams completed, {:.1} MB in {:.1} s, {} retransmits, longest stall {} s",
            t.streams_ok,
            t.streams,
            t.bytes as f64 / 1e6,
            t.secs,
            t.retransmits,
            t.longest_stall_s
        )
    } else {
        format!(
            "FAILED ({}/{} streams delivered): {}",
            t.streams_ok,
            t.streams,
            t.error.as_deref().unwrap_or("?")
        )
    }
}

fn ms(d: Option<Duration>) -> String {
    d.map_or("–".into(), |d| format!("{:.0}", d.as_secs_f64() * 1e3))
}

/// One CSV row per swap: path, index, latency and (sluice) the daemon's breakdown.
pub fn swaps_csv(results: &[SwapResult]) -> String {
    let mut s = String::from(
        "path,rules,swap,latency_ms,daemon_total_ms,daemon_base_ms,daemon_parse_ms,daemon_compile_ms,daemon_prepare_ms,daemon_publish_ms\n",
    );
    for r in results {
        for (i, l) in r.latencies.iter().enumerate() {
            let _ = write!(
                s,
                "{},{},{},{:.3}",
                r.fwd.name(),
                r.rules,
                i + 1,
                l.as_secs_f64() * 1e3
            );
            match r.daemon.get(i) {
                Some(d) => {
                    for v in [
                        d.total_us,
                        d.base_us,
                        d.parse_us,
                        d.compile_us,
                        d.prepare_us,
                        d.publish_us,
                    ] {
                        let _ = write!(s, ",{:.3}", v as f64 / 1e3);
                    }
                }
                None => s.push_str(",,,,,,"),
            }
            s.push('\n');
        }
    }
    s
}

/// The Markdown report: one row per path, then the daemon's breakdown for sluice.
pub fn markdown(results: &[SwapResult], when: &str, machine: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "Measured {when} on {machine}.\n");
    s.push_str(
        "| path | rules | swaps done / planned | latency p50 | p99 | max | UDP rate | UDP lost, baseline | UDP lost, swapping | lost attributable to swaps | TCP streams survived | longest TCP stall | load avg |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in results {
        let mut sorted = r.latencies.clone();
        sorted.sort();
        let _ = writeln!(
            s,
            "| {}{} | {} | {} / {} | {} ms | {} ms | {} ms | {} pps | {} of {} | {} of {} | **{:.0}** | {} | {} s | {} → {} |",
            r.fwd.name(),
            if r.check_only { " (`-c`: check only)" } else { "" },
            crate::report::thousands(r.rules as u64),
            r.latencies.len(),
            r.swaps_planned,
            ms(quantile(&sorted, 0.5)),
            ms(quantile(&sorted, 0.99)),
            ms(sorted.last().copied()),
            crate::report::thousands(r.load.pps),
            crate::report::thousands(r.baseline.lost()),
            crate::report::thousands(r.baseline.sent),
            crate::report::thousands(r.swapping.lost()),
            crate::report::thousands(r.swapping.sent),
            r.attributable_loss(),
            if r.tcp.survived {
                format!(
                    "all {} (over {} swaps)",
                    r.tcp.streams, r.swaps_under_tcp
                )
            } else {
                format!("**no**: {}", tcp_text(&r.tcp))
            },
            r.tcp.longest_stall_s,
            r.loadavg.0,
            r.loadavg.1
        );
    }
    s.push_str("\nCounters that moved (baseline; swapping):\n\n");
    for r in results {
        let list = |v: &[(String, u64)]| {
            if v.is_empty() {
                "none".to_string()
            } else {
                v.iter()
                    .map(|(k, n)| format!("{k} {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        };
        let _ = writeln!(
            s,
            "- {}: {}; {}",
            r.fwd.name(),
            list(&r.counters_baseline),
            list(&r.counters_swapping)
        );
    }
    for r in results {
        if !r.failures.is_empty() {
            let _ = writeln!(
                s,
                "\n{} swap command(s) failed on {}: {}",
                r.failures.len(),
                r.fwd.name(),
                r.failures[0]
            );
        }
    }
    for r in results.iter().filter(|r| !r.daemon.is_empty()) {
        let col = |f: &dyn Fn(&DaemonTimes) -> u64| -> (String, String) {
            let mut v: Vec<Duration> = r
                .daemon
                .iter()
                .map(|d| Duration::from_micros(f(d)))
                .collect();
            v.sort();
            (ms(quantile(&v, 0.5)), ms(quantile(&v, 0.99)))
        };
        let _ = writeln!(
            s,
            "\nInside the sluice daemon (request arrival → store into the live `ArcSwap`; p50 / p99 over {} swaps{}):\n",
            r.daemon.len(),
            match r.generations {
                Some(g) => format!(", {g} generations published"),
                None => String::new(),
            }
        );
        s.push_str("| phase | p50 | p99 |\n|---|---:|---:|\n");
        for (name, f) in [
            (
                "lock + base (`flush ruleset`: no copy of the running ruleset)",
                &(|d: &DaemonTimes| d.base_us) as &dyn Fn(&DaemonTimes) -> u64,
            ),
            ("parse + check", &|d: &DaemonTimes| d.parse_us),
            ("compile (incl. classifier)", &|d: &DaemonTimes| {
                d.compile_us
            }),
            ("prepare (per-generation properties)", &|d: &DaemonTimes| {
                d.prepare_us
            }),
            ("publish (steer + store)", &|d: &DaemonTimes| d.publish_us),
            ("total in the daemon", &|d: &DaemonTimes| d.total_us),
        ] {
            let (p50, p99) = col(f);
            let _ = writeln!(s, "| {name} | {p50} ms | {p99} ms |");
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swap_rulesets_differ_and_pass_the_bench_traffic() {
        let (a, b) = (swap_ruleset(300, 0), swap_ruleset(300, 1));
        assert_ne!(a, b);
        assert!(a.starts_with("flush ruleset\n"));
        assert_eq!(a.matches(" drop\n").count(), 300);
        for src in [&a, &b] {
            crate::forward_once(src, &crate::udp_frame(1024)).unwrap();
        }
        // and each drops a source it lists
        let mut c = swap_ruleset(3, 1);
        c = c.replace("10.64.0.1", "192.0.2.2");
        assert!(crate::forward_once(&c, &crate::udp_frame(1024)).is_err());
    }

    #[test]
    fn trafgen_summary_and_iperf_json_parse() {
        assert_eq!(
            parse_trafgen_sent(
                "Running!\n\n\n       40000 packets outgoing\n     2400000 bytes outgoing\n"
            ),
            Some(40000)
        );
        assert_eq!(parse_trafgen_sent("nothing"), None);
        let ok = r#"{"intervals":[{"sum":{"bytes":10}},{"sum":{"bytes":0}},{"sum":{"bytes":0}},{"sum":{"bytes":5}}],
            "end":{"streams":[{"receiver":{"bytes":7}},{"receiver":{"bytes":8}}],
            "sum_received":{"bytes":15,"seconds":4.0},"sum_sent":{"retransmits":2}}}"#;
        let o = parse_iperf(ok, 2).unwrap();
        assert!(o.survived);
        assert_eq!((o.bytes, o.retransmits, o.longest_stall_s), (15, 2, 2));
        let broken = r#"{"end":{"streams":[{"receiver":{"bytes":7}},{"receiver":{"bytes":0}}]},"error":"connection reset"}"#;
        let o = parse_iperf(broken, 2).unwrap();
        assert!(!o.survived);
        assert_eq!(o.streams_ok, 1);
    }

    #[test]
    fn quantiles_nearest_rank() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(quantile(&v, 0.5), Some(Duration::from_millis(50)));
        assert_eq!(quantile(&v, 0.99), Some(Duration::from_millis(99)));
        assert_eq!(quantile(&v[..1], 0.99), Some(Duration::from_millis(1)));
        assert_eq!(quantile(&[], 0.5), None);
    }

    #[test]
    fn daemon_times_parse_from_stats() {
        let s = "workers 1\nruleset_generation 7\nlast_apply_base_us 1\nlast_apply_parse_us 2\nlast_apply_compile_us 3\nlast_apply_prepare_us 4\nlast_apply_publish_us 5\nlast_apply_total_us 15\nforwarded 9\n";
        let d = DaemonTimes::parse(s).unwrap();
        assert_eq!((d.generation, d.compile_us, d.total_us), (7, 3, 15));
        assert!(DaemonTimes::parse("workers 1\n").is_none());
    }
}
