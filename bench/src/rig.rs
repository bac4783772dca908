//! The netns rig of the line-rate comparison: `<prefix>-gen` — `<prefix>-fw` — `<prefix>-srv`.
//!
//! ```text
//!  gen: gen0 192.0.2.2 ─── fw-gen 192.0.2.1 [fw: kernel nftables or sluice] fw-srv 198.51.100.1 ─── srv0 198.51.100.2 (+ .3)
//! ```
//!
//! Multi-queue veths (RIG-NOTES), fixed MACs and static (permanent) neighbours in every namespace, end hosts
//! with TX checksum offload off (the veth CHECKSUM_PARTIAL trap: a copying forwarder would pass unfinished
//! checksums on; set the same way for both paths). The sink in srv counts and drops the UDP flood in a netdev
//! ingress chain (`udp dport 9 counter drop`), so no ICMP errors flow back; iperf3 and an HTTP server run in
//! srv for the TCP runs.
//!
//! CPU placement (RIG-NOTES "Caution on fairness"): the generator and the end hosts' processes are pinned to
//! `cpu_gen`. The forwarding work goes to `cpu_fw` on both paths: sluice pins its worker there (`sluice run`
//! puts worker q on core (q+1) mod ncores), and for the kernel path RPS on fw's interfaces moves the
//! forwarding softirq there (without it the kernel would forward in the generator's softirq, on its CPU).
//! When sluice runs fewer workers than the veths have queues, XPS on the end hosts sends everything to the
//! queues that have a worker.
//!
//! Everything is removed in `Drop` (errors, panics and Ctrl-C — the caller turns the signal into an error —
//! included): processes in the namespaces are killed, the namespaces deleted. Namespaces of a bench process
//! that died without cleaning up are swept by the next run ([`sweep_stale`]).

use anyhow::{anyhow, bail, Context, Result};
use std::fs;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Every namespace the bench creates starts with this, then `<pid>-`.
pub const NS_PREFIX: &str = "sluice-bench-";
/// State directories (rulesets, logs, control socket) live under this.
pub const STATE_ROOT: &str = "/run/sluice-bench";

#[derive(Clone, Debug)]
pub struct RigConfig {
    /// RX/TX queues of every veth.
    pub queues: u32,
    /// sluice workers (one per queue it serves); traffic is steered to queues `0..workers`.
    pub workers: usize,
    /// Frames per batch in sluice.
    pub batch: usize,
    pub cpu_gen: usize,
    pub cpu_fw: usize,
    /// Niceness of every process the bench measures (generators, servers, sluice): on a shared machine a
    /// negative value keeps other work from taking their CPU. The kernel's softirq work needs no such help.
    pub nice: i32,
}

/// Which forwarder runs in fw.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Forwarder {
    Kernel,
    Sluice,
}

impl Forwarder {
    pub fn name(self) -> &'static str {
        match self {
            Forwarder::Kernel => "kernel",
            Forwarder::Sluice => "sluice",
        }
    }
}

pub struct Rig {
    pub prefix: String,
    pub state: PathBuf,
    pub cfg: RigConfig,
    interrupted: Arc<AtomicBool>,
    sluice: Option<Child>,
    sluice_log: Option<PathBuf>,
    sluice_runs: usize,
    servers: Vec<Child>,
    /// How long `sluice_up` waits for the daemon to answer.
    pub start_timeout: Duration,
}

/// Runs a command, failing with its stderr when it exits non-zero.
pub fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {:?}", cmd.get_program()))?;
    if !out.status.success() {
        bail!(
            "{:?} {:?} failed ({}): {}",
            cmd.get_program(),
            cmd.get_args().collect::<Vec<_>>(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn ip(args: &[&str]) -> Result<String> {
    run(Command::new("ip").args(args))
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Sleeps `d`, returning an error as soon as `flag` is raised.
pub fn sleep_checked(d: Duration, flag: &AtomicBool) -> Result<()> {
    let end = Instant::now() + d;
    loop {
        if flag.load(Ordering::Relaxed) {
            bail!("interrupted");
        }
        let now = Instant::now();
        if now >= end {
            return Ok(());
        }
        std::thread::sleep((end - now).min(Duration::from_millis(20)));
    }
}

fn namespace_pids(ns: &str) -> Vec<i32> {
    Command::new("ip")
        .args(["netns", "pids", ns])
        .stderr(Stdio::null())
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Kills every process inside namespace `ns` (SIGTERM, then SIGKILL after 3 s) and deletes it.
fn destroy_namespace(ns: &str) {
    for pid in namespace_pids(ns) {
        // SAFETY: kill(2) on a pid living in a namespace this bench created.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    while !namespace_pids(ns).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    for pid in namespace_pids(ns) {
        // SAFETY: as above.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let _ = Command::new("ip")
        .args(["netns", "del", ns])
        .stderr(Stdio::null())
        .status();
}

/// Removes namespaces and state left by bench processes that no longer exist.
pub fn sweep_stale() {
    if let Ok(dir) = fs::read_dir("/run/netns") {
        for e in dir.filter_map(|e| e.ok()) {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_prefix(NS_PREFIX) else {
                continue;
            };
            let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
                continue;
            };
            if !Path::new(&format!("/proc/{pid}")).exists() {
                eprintln!("sluice-bench: removing stale namespace {name}");
                destroy_namespace(&name);
            }
        }
    }
    if let Ok(dir) = fs::read_dir(STATE_ROOT) {
        for e in dir.filter_map(|e| e.ok()) {
            let name = e.file_name().to_string_lossy().into_owned();
            let pid = name
                .strip_prefix(NS_PREFIX)
                .and_then(|r| r.parse::<u32>().ok());
            if pid.is_some_and(|p| !Path::new(&format!("/proc/{p}")).exists()) {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }
}

/// Whether the child has exited, without reaping it (a zombie keeps its pid and process group reserved).
fn exited_nowait(pid: i32) -> bool {
    // SAFETY: waitid with WNOHANG|WNOWAIT on our own child only inspects it; `info` is a valid out pointer.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let r = libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        );
        r != 0 || info.si_pid() != 0
    }
}

/// Stops a child started by [`Rig::cmd`] and everything it forked: `sig` to its process group, SIGKILL to
/// the group after `grace` (forked members may outlive the leader), then reaps the leader.
pub fn stop_child(child: &mut Child, sig: i32, grace: Duration) {
    let pid = child.id() as i32;
    if !exited_nowait(pid) {
        // SAFETY: kill(2) on the process group of our own child, which is not reaped yet.
        unsafe { libc::kill(-pid, sig) };
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline && !exited_nowait(pid) {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    // SAFETY: as above: the leader is at worst a zombie, so the group id is still ours.
    unsafe { libc::kill(-pid, libc::SIGKILL) };
    let _ = child.wait();
}

fn mac(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

pub fn addr(a: [u8; 4]) -> String {
    format!("{}.{}.{}.{}", a[0], a[1], a[2], a[3])
}

/// Parses the first `packets N` of an nft listing.
pub fn parse_counter(text: &str) -> Option<u64> {
    let mut words = text.split_whitespace();
    while let Some(w) = words.next() {
        if w == "packets" {
            return words.next()?.parse().ok();
        }
    }
    None
}

impl Rig {
    /// Builds the rig. A half-built rig is removed before the error returns.
    pub fn up(cfg: RigConfig, interrupted: Arc<AtomicBool>) -> Result<Rig> {
        sweep_stale();
        let prefix = format!("{NS_PREFIX}{}", std::process::id());
        let state = PathBuf::from(STATE_ROOT).join(&prefix);
        let mut rig = Rig {
            prefix,
            state,
            cfg,
            interrupted,
            sluice: None,
            sluice_log: None,
            sluice_runs: 0,
            servers: Vec::new(),
            start_timeout: Duration::from_secs(300),
        };
        rig.build()?;
        Ok(rig)
    }

    pub fn ns(&self, role: &str) -> String {
        format!("{}-{role}", self.prefix)
    }

    /// `ip netns exec <ns> argv…`, in a process group of its own (trafgen forks: stopping it means signalling
    /// the group, see [`stop_child`]).
    pub fn cmd(&self, role: &str, argv: &[&str]) -> Command {
        use std::os::unix::process::CommandExt;
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns(role)]).args(argv);
        c.process_group(0);
        c
    }

    /// Kills whatever still runs in the generator's namespace (generators only live there).
    pub fn reap_gen(&self) {
        for pid in namespace_pids(&self.ns("gen")) {
            // SAFETY: kill(2) on a pid inside the bench's own generator namespace.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }

    /// Runs `argv` in `role`'s namespace pinned to `cpu` (taskset), at the configured niceness.
    pub fn pinned(&self, role: &str, cpu: usize, argv: &[&str]) -> Command {
        let cpu = cpu.to_string();
        let nice = self.cfg.nice.to_string();
        let mut full = vec!["nice", "-n", nice.as_str(), "taskset", "-c", cpu.as_str()];
        full.extend_from_slice(argv);
        self.cmd(role, &full)
    }

    /// The pid of the running sluice daemon (`ip netns exec` and `nice` exec into it).
    pub fn sluice_pid(&self) -> Option<u32> {
        self.sluice.as_ref().map(|c| c.id())
    }

    pub fn sh(&self, role: &str, script: &str) -> Result<String> {
        run(&mut self.cmd(role, &["sh", "-c", script]))
    }

    pub fn interrupted(&self) -> &AtomicBool {
        &self.interrupted
    }

    fn check(&self) -> Result<()> {
        if self.interrupted.load(Ordering::Relaxed) {
            bail!("interrupted");
        }
        Ok(())
    }

    fn build(&mut self) -> Result<()> {
        fs::create_dir_all(&self.state)?;
        let (gen, fw, srv) = (self.ns("gen"), self.ns("fw"), self.ns("srv"));
        for ns in [&gen, &fw, &srv] {
            ip(&["netns", "add", ns])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        self.check()?;
        let q = self.cfg.queues.to_string();
        let (fw_in, fw_out) = (mac(crate::FW_IN), mac(crate::FW_OUT));
        let (gen_mac, srv_mac) = (mac(crate::GEN_MAC), mac(crate::SRV_MAC));
        #[rustfmt::skip]
        ip(&["-n", &gen, "link", "add", "gen0", "address", &gen_mac, "numrxqueues", &q, "numtxqueues", &q,
             "type", "veth", "peer", "name", "fw-gen", "netns", &fw, "address", &fw_in,
             "numrxqueues", &q, "numtxqueues", &q])?;
        #[rustfmt::skip]
        ip(&["-n", &srv, "link", "add", "srv0", "address", &srv_mac, "numrxqueues", &q, "numtxqueues", &q,
             "type", "veth", "peer", "name", "fw-srv", "netns", &fw, "address", &fw_out,
             "numrxqueues", &q, "numtxqueues", &q])?;
        let (gen_a, fw_gen_a, fw_srv_a, srv_a, srv_a2) = (
            addr(crate::GEN_ADDR),
            addr(crate::FW_GEN_ADDR),
            addr(crate::FW_SRV_ADDR),
            addr(crate::SRV_ADDR),
            addr(crate::SRV_ADDR2),
        );
        for (ns, ifname, a) in [
            (&gen, "gen0", format!("{gen_a}/24")),
            (&fw, "fw-gen", format!("{fw_gen_a}/24")),
            (&fw, "fw-srv", format!("{fw_srv_a}/24")),
            (&srv, "srv0", format!("{srv_a}/24")),
            (&srv, "srv0", format!("{srv_a2}/24")),
        ] {
            ip(&["-n", ns, "addr", "add", &a, "dev", ifname])?;
        }
        for (ns, ifname) in [
            (&gen, "gen0"),
            (&fw, "fw-gen"),
            (&fw, "fw-srv"),
            (&srv, "srv0"),
        ] {
            ip(&["-n", ns, "link", "set", ifname, "up"])?;
        }
        ip(&["-n", &gen, "route", "add", "default", "via", &fw_gen_a])?;
        ip(&["-n", &srv, "route", "add", "default", "via", &fw_srv_a])?;
        // Static neighbours everywhere: no ARP in the measured windows on the kernel's side. (sluice keeps its
        // own neighbour table and resolves once per run, during the warm-up.)
        for (ns, dev, a, m) in [
            (&gen, "gen0", &fw_gen_a, &fw_in),
            (&fw, "fw-gen", &gen_a, &gen_mac),
            (&fw, "fw-srv", &srv_a, &srv_mac),
            (&fw, "fw-srv", &srv_a2, &srv_mac),
            (&srv, "srv0", &fw_srv_a, &fw_out),
        ] {
            ip(&[
                "-n",
                ns,
                "neigh",
                "replace",
                a,
                "lladdr",
                m,
                "dev",
                dev,
                "nud",
                "permanent",
            ])?;
        }
        self.sh("fw", "echo 0 > /proc/sys/net/ipv4/ip_forward")?;
        // The same end-host offloads for both paths: TX checksum offload off (and so TSO); GSO is software and
        // still hands fw MTU-sized segments.
        for (role, ifname) in [("gen", "gen0"), ("srv", "srv0")] {
            let n = hw::netns::Netns::from_name(&self.ns(role));
            let name = ifname.to_string();
            n.run(move || hw::iface::set_tx_checksum_offload(&name, false))
                .with_context(|| format!("turning TX checksum offload off on {ifname}"))?;
        }
        self.steer_queues()?;
        self.check()?;
        // The sink.
        let sink = "table netdev sink {\n\tchain in {\n\t\ttype filter hook ingress device \"srv0\" priority 0; policy accept;\n\t\tudp dport 9 counter drop\n\t}\n}\n";
        let sink_file = self.state.join("sink.nft");
        fs::write(&sink_file, sink)?;
        run(&mut self.cmd("srv", &["nft", "-f", sink_file.to_str().unwrap()]))?;
        // The HTTP server for the connection-rate runs; iperf3 starts per run.
        let exe = std::env::current_exe()?;
        let listen = format!("0.0.0.0:{}", crate::HTTP_PORT);
        let log = fs::File::create(self.state.join("http.log"))?;
        let child = self
            .pinned(
                "srv",
                self.cfg.cpu_gen,
                &[exe.to_str().unwrap(), "serve", &listen],
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("cannot start the HTTP server")?;
        self.servers.push(child);
        self.wait_tcp_listen("srv", crate::HTTP_PORT)?;
        Ok(())
    }

    /// XPS: with fewer sluice workers than queues, the end hosts transmit only on queues that have a worker
    /// (veth delivers TX queue q to the peer's RX queue q). RPS: fw's forwarding softirq runs on `cpu_fw`.
    fn steer_queues(&self) -> Result<()> {
        let q = self.cfg.queues as usize;
        let w = self.cfg.workers.clamp(1, q);
        let ncpu = num_cpus();
        if w < q {
            for (role, ifname) in [("gen", "gen0"), ("srv", "srv0")] {
                let mut script = String::new();
                for t in 0..q {
                    // Every CPU maps to a queue that has a worker: queue t gets CPUs i with i mod w == t.
                    let mut mask = 0u64;
                    if t < w {
                        for c in 0..ncpu.min(63) {
                            if c % w == t {
                                mask |= 1 << c;
                            }
                        }
                    }
                    script.push_str(&format!(
                        "echo {mask:x} > /sys/class/net/{ifname}/queues/tx-{t}/xps_cpus; "
                    ));
                }
                self.sh(role, &script)
                    .with_context(|| format!("XPS on {ifname}"))?;
            }
        }
        let rps = format!("{:x}", 1u64 << self.cfg.cpu_fw.min(63));
        let mut script = String::new();
        for ifname in ["fw-gen", "fw-srv"] {
            for r in 0..q {
                script.push_str(&format!(
                    "echo {rps} > /sys/class/net/{ifname}/queues/rx-{r}/rps_cpus; "
                ));
            }
        }
        self.sh("fw", &script).context("RPS on fw's interfaces")?;
        Ok(())
    }

    fn wait_tcp_listen(&self, role: &str, port: u16) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let pat = format!(":{port} ");
        loop {
            self.check()?;
            let out = run(&mut self.cmd(role, &["ss", "-Hltn"])).unwrap_or_default();
            if out.contains(&pat) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("nothing listens on port {port} in {}", self.ns(role));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Writes a ruleset into the state directory.
    pub fn write_file(&self, name: &str, text: &str) -> Result<PathBuf> {
        let p = self.state.join(name);
        fs::write(&p, text)?;
        Ok(p)
    }

    /// Kernel path: the ruleset loaded with the real `nft -f` in fw, `ip_forward=1`. Returns the load time.
    pub fn kernel_up(&self, ruleset: &Path) -> Result<Duration> {
        run(&mut self.cmd("fw", &["nft", "flush", "ruleset"]))?;
        if which("conntrack") {
            let _ = run(&mut self.cmd("fw", &["conntrack", "-F"]));
        }
        let t = Instant::now();
        run(&mut self.cmd("fw", &["nft", "-f", ruleset.to_str().unwrap()]))
            .context("nft -f in fw")?;
        let load = t.elapsed();
        self.sh("fw", "echo 1 > /proc/sys/net/ipv4/ip_forward")?;
        Ok(load)
    }

    pub fn kernel_down(&self) -> Result<()> {
        self.sh("fw", "echo 0 > /proc/sys/net/ipv4/ip_forward")?;
        run(&mut self.cmd("fw", &["nft", "flush", "ruleset"]))?;
        Ok(())
    }

    pub fn control_socket(&self) -> PathBuf {
        self.state.join("control.sock")
    }

    /// One request to the running daemon's control socket; the body of an `ok` answer.
    pub fn control(&self, line: &str) -> Result<String> {
        let mut s = UnixStream::connect(self.control_socket())?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        s.write_all(format!("{line}\n").as_bytes())?;
        s.shutdown(std::net::Shutdown::Write)?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        match out.split_once('\n') {
            Some(("ok", body)) => Ok(body.to_string()),
            Some((_, body)) => bail!("sluice answered an error: {body}"),
            None if out == "ok" => Ok(String::new()),
            None => bail!("sluice answered {out:?}"),
        }
    }

    /// sluice path: kernel forwarding off, no kernel ruleset, `sluice run` on fw's two interfaces. Returns the
    /// time from start to the control socket answering (includes compiling the ruleset).
    pub fn sluice_up(&mut self, sluice: &Path, ruleset: &Path) -> Result<Duration> {
        run(&mut self.cmd("fw", &["nft", "flush", "ruleset"]))?;
        self.sh("fw", "echo 0 > /proc/sys/net/ipv4/ip_forward")?;
        self.sluice_runs += 1;
        let log_path = self.state.join(format!("sluice-{}.log", self.sluice_runs));
        let log = fs::File::create(&log_path)?;
        let socket = self.control_socket();
        let workers = self.cfg.workers.to_string();
        let batch = self.cfg.batch.to_string();
        let nice = self.cfg.nice.to_string();
        let t = Instant::now();
        let child = self
            .cmd(
                "fw",
                &[
                    "nice",
                    "-n",
                    &nice,
                    sluice.to_str().ok_or_else(|| anyhow!("non-UTF-8 path"))?,
                    "run",
                    "--iface",
                    "fw-gen",
                    "--iface",
                    "fw-srv",
                    "--ruleset",
                    ruleset.to_str().unwrap(),
                    "--control",
                    socket.to_str().unwrap(),
                    "--backend",
                    "xdp",
                    "--workers",
                    &workers,
                    "--batch",
                    &batch,
                ],
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", sluice.display()))?;
        self.sluice = Some(child);
        self.sluice_log = Some(log_path);
        let deadline = Instant::now() + self.start_timeout;
        loop {
            if self.interrupted.load(Ordering::Relaxed) {
                bail!("interrupted");
            }
            if self.control("ping").is_ok() {
                return Ok(t.elapsed());
            }
            let exited = self.sluice.as_mut().unwrap().try_wait()?.is_some();
            if exited || Instant::now() > deadline {
                let log = self.sluice_log_text();
                self.sluice_down_quiet();
                bail!(
                    "sluice did not come up ({}):\n{}",
                    if exited {
                        "it exited".to_string()
                    } else {
                        format!("not ready after {} s", self.start_timeout.as_secs())
                    },
                    log.trim_end()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn sluice_log_text(&self) -> String {
        self.sluice_log
            .as_ref()
            .and_then(|p| fs::read_to_string(p).ok())
            .unwrap_or_default()
    }

    /// Whether the sluice daemon still runs.
    pub fn sluice_alive(&mut self) -> bool {
        self.sluice
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    fn sluice_down_quiet(&mut self) {
        if let Some(mut c) = self.sluice.take() {
            stop_child(&mut c, libc::SIGTERM, Duration::from_secs(5));
        }
    }

    /// Stops sluice (its XDP programs go with it) and waits until fw's interfaces have no XDP program.
    pub fn sluice_down(&mut self) -> Result<()> {
        self.sluice_down_quiet();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let out = ip(&["-n", &self.ns("fw"), "link", "show"])?;
            if !out.contains(" xdp") && !out.contains("prog/xdp") {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("an XDP program is still attached in fw after sluice stopped:\n{out}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Packets the sink has counted (and dropped).
    pub fn sink_packets(&self) -> Result<u64> {
        let out = run(&mut self.cmd("srv", &["nft", "list", "chain", "netdev", "sink", "in"]))?;
        parse_counter(&out).ok_or_else(|| anyhow!("no counter in the sink's chain:\n{out}"))
    }

    /// gen0's transmitted and dropped-on-transmit packet counters.
    pub fn gen_tx(&self) -> Result<(u64, u64)> {
        let out = self.sh(
            "gen",
            "cat /sys/class/net/gen0/statistics/tx_packets /sys/class/net/gen0/statistics/tx_dropped",
        )?;
        let v: Vec<u64> = out
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
        match v.as_slice() {
            [a, b] => Ok((*a, *b)),
            _ => bail!("unexpected gen0 statistics {out:?}"),
        }
    }

    /// Tears everything down (also done by `Drop`).
    pub fn down(&mut self) {
        self.sluice_down_quiet();
        for mut c in self.servers.drain(..) {
            stop_child(&mut c, libc::SIGTERM, Duration::from_secs(2));
        }
        for role in ["gen", "fw", "srv"] {
            let ns = self.ns(role);
            if Path::new("/run/netns").join(&ns).exists() {
                destroy_namespace(&ns);
            }
        }
        let _ = fs::remove_dir_all(&self.state);
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.down();
    }
}

pub fn num_cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Whether `prog` is on PATH.
pub fn which(prog: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|d| d.join(prog).is_file()))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_parse() {
        let t = "table netdev sink {\n\tchain in {\n\t\tudp dport 9 counter packets 1234 bytes 5678 drop\n\t}\n}\n";
        assert_eq!(parse_counter(t), Some(1234));
        assert_eq!(parse_counter("no counter"), None);
    }
}
