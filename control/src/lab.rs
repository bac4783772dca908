//! `sluice lab`: the built-in netns rig. Three namespaces — `<prefix>-cli`, `<prefix>-fw`, `<prefix>-srv` —
//! joined by veth pairs; sluice runs in fw (whose kernel does not forward: ip_forward=0), an HTTP server in
//! srv, probes from cli; a report; everything removed afterwards, also on Ctrl-C or failure.

use crate::ctl;
use anyhow::{anyhow, bail, Context, Result};
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const LAB_RULESET: &str = include_str!("../../docs/examples/lab.nft");

pub const CLI_ADDR: &str = "192.0.2.2";
pub const FW_CLI_ADDR: &str = "192.0.2.1";
pub const FW_SRV_ADDR: &str = "198.51.100.1";
pub const SRV_ADDR: &str = "198.51.100.2";
/// A port the srv listens on but the lab ruleset denies: a blocked probe then proves the firewall, not a
/// closed port.
pub const DENIED_PORT: u16 = 8080;

#[derive(Clone, Debug, clap::Args)]
pub struct LabArgs {
    /// Namespace name prefix (namespaces are PREFIX-cli, PREFIX-fw, PREFIX-srv).
    #[arg(long, default_value = "sluice", global = true)]
    pub prefix: String,
    /// Ruleset to load instead of the built-in lab gateway (docs/examples/lab.nft).
    #[arg(long, global = true)]
    pub ruleset: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "xdp", global = true)]
    pub backend: crate::daemon::Backend,
    /// RX/TX queues per veth; sluice runs one worker per queue.
    #[arg(long, default_value_t = 1, global = true)]
    pub queues: u32,
    /// Leave the box's own traffic to fw's kernel directly, as before the exception path: sluice's INPUT
    /// and OUTPUT chains then do not see it. By default (xdp backend) it goes through sluice's PREROUTING,
    /// INPUT, OUTPUT and POSTROUTING, over a TUN to fw's kernel (`sluice run --host-tun`).
    #[arg(long, global = true)]
    pub no_host_path: bool,
}

pub struct Lab {
    pub prefix: String,
    queues: u32,
    pub state: PathBuf,
    pub socket: PathBuf,
    backend: crate::daemon::Backend,
    host_path: bool,
}

/// The TUN device in fw for the exception path (not with `--no-host-path` or the packet backend).
pub const HOST_TUN: &str = "sluice-host";

fn run(cmd: &mut Command) -> Result<Output> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {:?}", cmd.get_program()))?;
    if !out.status.success() {
        bail!(
            "{:?} {:?} failed: {}",
            cmd.get_program(),
            cmd.get_args().collect::<Vec<_>>(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out)
}

fn ip(args: &[&str]) -> Result<Output> {
    run(Command::new("ip").args(args))
}

fn self_exe() -> Result<PathBuf> {
    std::env::current_exe().context("cannot find the sluice executable")
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

pub fn namespace_exists(name: &str) -> bool {
    Path::new("/run/netns").join(name).exists()
}

impl Lab {
    pub fn new(args: &LabArgs) -> Lab {
        let state = PathBuf::from("/run/sluice").join(&args.prefix);
        Lab {
            prefix: args.prefix.clone(),
            queues: args.queues.max(1),
            socket: state.join("control.sock"),
            state,
            backend: args.backend,
            // without /dev/net/tun (no tun module) the lab runs as before: the kernel takes fw's own traffic
            host_path: !args.no_host_path
                && args.backend == crate::daemon::Backend::Xdp
                && Path::new("/dev/net/tun").exists(),
        }
    }

    pub fn ns(&self, role: &str) -> String {
        format!("{}-{role}", self.prefix)
    }

    /// Runs `argv` inside namespace `role`.
    pub fn exec(&self, role: &str, argv: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns(role)]).args(argv);
        c
    }

    /// Builds the namespaces and links, starts the HTTP server and the sluice daemon, waits until it answers.
    pub fn up(&self, ruleset: Option<&Path>, interrupted: &AtomicBool) -> Result<()> {
        if ["cli", "fw", "srv"]
            .iter()
            .any(|r| namespace_exists(&self.ns(r)))
        {
            bail!(
                "the lab is already up (namespaces {}-*); `sluice lab down` removes it",
                self.prefix
            );
        }
        fs::create_dir_all(&self.state)?;
        for role in ["cli", "fw", "srv"] {
            ip(&["netns", "add", &self.ns(role)])?;
            ip(&["-n", &self.ns(role), "link", "set", "lo", "up"])?;
        }
        let (cli, fw, srv) = (self.ns("cli"), self.ns("fw"), self.ns("srv"));
        let q = self.queues.to_string();
        for (end, ns_end, peer, ns_peer) in
            [("cli0", &cli, "fw-cli", &fw), ("srv0", &srv, "fw-srv", &fw)]
        {
            #[rustfmt::skip]
            ip(&["link", "add", end, "netns", ns_end, "numrxqueues", &q, "numtxqueues", &q, "type", "veth",
                 "peer", "name", peer, "netns", ns_peer, "numrxqueues", &q, "numtxqueues", &q])?;
        }
        for (ns, ifname, addr) in [
            (&cli, "cli0", format!("{CLI_ADDR}/24")),
            (&fw, "fw-cli", format!("{FW_CLI_ADDR}/24")),
            (&fw, "fw-srv", format!("{FW_SRV_ADDR}/24")),
            (&srv, "srv0", format!("{SRV_ADDR}/24")),
        ] {
            ip(&["-n", ns, "addr", "add", &addr, "dev", ifname])?;
            ip(&["-n", ns, "link", "set", ifname, "up"])?;
        }
        ip(&["-n", &cli, "route", "add", "default", "via", FW_CLI_ADDR])?;
        ip(&["-n", &srv, "route", "add", "default", "via", FW_SRV_ADDR])?;
        // Only sluice may forward in fw.
        run(&mut self.exec(
            "fw",
            &["sh", "-c", "echo 0 > /proc/sys/net/ipv4/ip_forward"],
        ))?;
        // veth hands frames over with the TCP/UDP checksum not yet filled in (CHECKSUM_PARTIAL); a copying
        // forwarder would pass them on unfinished. The end hosts compute checksums themselves instead.
        let exe = self_exe()?;
        let exe = exe
            .to_str()
            .ok_or_else(|| anyhow!("non-UTF-8 executable path"))?;
        run(&mut self.exec("cli", &[exe, "internal", "tx-csum-off", "cli0"]))?;
        run(&mut self.exec("srv", &[exe, "internal", "tx-csum-off", "srv0"]))?;

        let ruleset_path = match ruleset {
            Some(p) => p
                .canonicalize()
                .with_context(|| format!("cannot find ruleset {}", p.display()))?,
            None => {
                let p = self.state.join("lab.nft");
                fs::write(&p, LAB_RULESET)?;
                p
            }
        };
        let http = format!("{SRV_ADDR}:80");
        let denied = format!("{SRV_ADDR}:{DENIED_PORT}");
        self.spawn_detached(
            "srv",
            "http",
            &[exe, "internal", "http-serve", &http, &denied],
        )?;
        let backend = match self.backend {
            crate::daemon::Backend::Xdp => "xdp",
            crate::daemon::Backend::Packet => "packet",
        };
        let socket = self.socket.to_str().unwrap().to_string();
        let rs = ruleset_path
            .to_str()
            .ok_or_else(|| anyhow!("non-UTF-8 ruleset path"))?;
        let mut argv = vec![
            exe,
            "run",
            "--iface",
            "fw-cli",
            "--iface",
            "fw-srv",
            "--ruleset",
            rs,
            "--control",
            &socket,
            "--backend",
            backend,
        ];
        if self.host_path {
            argv.extend(["--host-tun", HOST_TUN]);
        }
        self.spawn_detached("fw", "sluice", &argv)?;
        self.wait_ready(interrupted)
    }

    /// Starts a long-running process in a namespace, in its own session (it outlives `lab up`), logging to
    /// the state directory.
    fn spawn_detached(&self, role: &str, name: &str, argv: &[&str]) -> Result<()> {
        let log = fs::File::create(self.state.join(format!("{name}.log")))?;
        let mut cmd = self.exec(role, argv);
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        fs::write(
            self.state.join(format!("{name}.pid")),
            child.id().to_string(),
        )?;
        Ok(())
    }

    fn wait_ready(&self, interrupted: &AtomicBool) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if interrupted.load(Ordering::Relaxed) {
                bail!("interrupted");
            }
            if ctl::request(&self.socket, "ping", "").is_ok() {
                return Ok(());
            }
            let pid = fs::read_to_string(self.state.join("sluice.pid")).unwrap_or_default();
            let alive = Path::new("/proc").join(pid.trim()).exists();
            if !alive || Instant::now() > deadline {
                let log = fs::read_to_string(self.state.join("sluice.log")).unwrap_or_default();
                bail!("the sluice daemon did not come up:\n{}", log.trim_end());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops every process in the lab's namespaces and deletes them. Safe to call on a half-built lab.
    pub fn down(&self) -> Result<bool> {
        let mut found = false;
        for role in ["cli", "fw", "srv"] {
            let ns = self.ns(role);
            if !namespace_exists(&ns) {
                continue;
            }
            found = true;
            kill_namespace_processes(&ns);
            let _ = ip(&["netns", "del", &ns]);
        }
        fs::remove_dir_all(&self.state).ok();
        Ok(found)
    }
}

fn namespace_pids(ns: &str) -> Vec<i32> {
    Command::new("ip")
        .args(["netns", "pids", ns])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn kill_namespace_processes(ns: &str) {
    for pid in namespace_pids(ns) {
        // SAFETY: kill(2) with a pid from the namespace.
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
}

/// One probe's expectation and outcome.
pub struct Probe {
    pub what: String,
    pub expect_pass: bool,
    pub passed: bool,
    pub detail: String,
}

impl Lab {
    fn internal(&self, role: &str, args: &[&str]) -> Result<(bool, String)> {
        let exe = self_exe()?;
        let mut argv = vec![exe.to_str().unwrap(), "internal"];
        argv.extend_from_slice(args);
        let out = self.exec(role, &argv).output()?;
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string()
            + String::from_utf8_lossy(&out.stderr).trim();
        Ok((out.status.success(), text))
    }

    pub fn probes(&self, interrupted: &AtomicBool) -> Result<Vec<Probe>> {
        let http = format!("{SRV_ADDR}:80");
        let denied = format!("{SRV_ADDR}:{DENIED_PORT}");
        let plan: Vec<(String, bool, Vec<&str>)> = vec![
            (
                format!("ping cli -> srv {SRV_ADDR}"),
                true,
                vec!["ping", SRV_ADDR],
            ),
            (
                format!("HTTP GET http://{SRV_ADDR}/"),
                true,
                vec!["http-get", &http, "/"],
            ),
            (
                format!("TCP connect {denied} (denied by the ruleset)"),
                false,
                vec!["tcp-connect", &denied],
            ),
            (
                format!("ping cli -> fw {FW_CLI_ADDR} (the box itself)"),
                true,
                vec!["ping", FW_CLI_ADDR],
            ),
        ];
        let mut out = Vec::new();
        for (what, expect_pass, args) in plan {
            if interrupted.load(Ordering::Relaxed) {
                bail!("interrupted");
            }
            let (passed, detail) = self.internal("cli", &args)?;
            out.push(Probe {
                what,
                expect_pass,
                passed,
                detail,
            });
        }
        Ok(out)
    }

    pub fn ip_forward(&self) -> String {
        self.exec("fw", &["cat", "/proc/sys/net/ipv4/ip_forward"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_else(|_| "?".into())
    }
}

/// `sluice lab`: up, probe, report, down. Returns whether every probe met its expectation.
pub fn run_lab(args: &LabArgs) -> Result<bool> {
    let interrupted = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGINT, interrupted.clone())?;
    signal_hook::flag::register(signal_hook::consts::SIGTERM, interrupted.clone())?;
    let lab = Lab::new(args);
    struct Teardown<'a>(&'a Lab);
    impl Drop for Teardown<'_> {
        fn drop(&mut self) {
            let _ = self.0.down();
        }
    }
    if ["cli", "fw", "srv"]
        .iter()
        .any(|r| namespace_exists(&lab.ns(r)))
    {
        bail!(
            "the lab is already up (namespaces {}-*); `sluice lab down` removes it",
            lab.prefix
        );
    }
    let _teardown = Teardown(&lab);
    println!(
        "sluice lab: {}-cli {CLI_ADDR} -- [{}-fw: sluice, {:?} backend, ip_forward=0{}] -- {}-srv {SRV_ADDR}",
        lab.prefix,
        lab.prefix,
        args.backend,
        if lab.host_path {
            format!(", fw's own traffic through sluice's INPUT/OUTPUT over {HOST_TUN}")
        } else {
            String::new()
        },
        lab.prefix
    );
    lab.up(args.ruleset.as_deref(), &interrupted)?;
    let fwd_during = lab.ip_forward();
    let probes = lab.probes(&interrupted)?;
    let ok = probes.iter().all(|p| p.passed == p.expect_pass);
    println!();
    println!("{:<52} {:<8} {:<8} detail", "probe", "expect", "result");
    for p in &probes {
        let word = |pass: bool| if pass { "pass" } else { "blocked" };
        let mark = if p.passed == p.expect_pass {
            ""
        } else {
            "  <-- UNEXPECTED"
        };
        println!(
            "{:<52} {:<8} {:<8} {}{mark}",
            p.what,
            word(p.expect_pass),
            word(p.passed),
            p.detail
        );
    }
    println!();
    println!("net.ipv4.ip_forward in {}-fw: {fwd_during}", lab.prefix);
    println!();
    println!("ruleset with counters (sluice nft list ruleset):");
    match ctl::request(&lab.socket, "list ruleset", "") {
        Ok(text) => print!("{text}"),
        Err(e) => println!("  (unavailable: {e})"),
    }
    println!();
    match ctl::request(&lab.socket, "stats", "") {
        Ok(text) => {
            let want = [
                "forwarded",
                "dropped_by_rule",
                "local_to_kernel",
                "local_to_host",
                "host_rx",
                "arp_requests_sent",
                "ct_new",
                "rx_frames",
                "tx_frames",
            ];
            let picked: Vec<String> = text
                .lines()
                .filter_map(|l| l.split_once(' '))
                .filter(|(k, _)| want.contains(k))
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            println!("sluice counters: {}", picked.join(", "));
        }
        Err(e) => println!("sluice counters unavailable: {e}"),
    }
    println!();
    println!(
        "{}",
        if ok {
            "lab: all probes as expected"
        } else {
            "lab: SOME PROBES FAILED"
        }
    );
    Ok(ok)
}
