//! Test support: throw-away network namespaces, veth pairs, addresses and routes, built with `ip`.
//!
//! Public (not `cfg(test)`) because the other crates' tests build their labs with it too.
//!
//! ```no_run
//! use hw::netns::TestNet;
//! if !hw::netns::is_root() { eprintln!("skipped: needs root"); return; }
//! let mut net = TestNet::new();
//! let a = net.add_ns("a").unwrap();
//! let b = net.add_ns("b").unwrap();
//! net.veth(&a, "a0", &b, "b0").unwrap();
//! net.addr(&a, "a0", "192.0.2.1/24").unwrap();
//! net.addr(&b, "b0", "192.0.2.2/24").unwrap();
//! assert!(net.exec(&a, &["ping", "-c1", "-W1", "192.0.2.2"]).unwrap().status.success());
//! let mac = b.run(|| hw::iface::lookup("b0").unwrap().mac);
//! # let _ = mac;
//! // namespaces and everything in them are deleted when `net` drops, panics included
//! ```
//!
//! Namespace names are `sluice-t-<pid>-<counter>-<label>`, so parallel tests and parallel test binaries never
//! collide. Interfaces are created directly inside their namespaces (never in the caller's), so names like
//! `a0` can repeat across tests. Namespaces left behind by a killed test process (its pid no longer alive) are
//! removed by the next [`TestNet::new`].

use crate::{HwError, Result};
use std::os::fd::AsRawFd;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

/// Prefix of every namespace this module creates.
pub const PREFIX: &str = "sluice-t-";

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// True when the process runs as root (the namespace tests need it; they print a message and skip otherwise).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A named network namespace (created by [`TestNet::add_ns`]). Cheap to clone; it does not own the namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Refers to an existing namespace by its `ip netns` name.
    pub fn from_name(name: &str) -> Netns {
        Netns {
            name: name.to_string(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `f` on a dedicated thread that has entered this namespace (`setns(CLONE_NEWNET)`; the network
    /// namespace is per thread) and returns its result. A panic in `f` is propagated to the caller.
    pub fn run<R: Send + 'static>(&self, f: impl FnOnce() -> R + Send + 'static) -> R {
        match self.spawn(f).join() {
            Ok(r) => r,
            Err(p) => std::panic::resume_unwind(p),
        }
    }

    /// Like [`Netns::run`] but returns the thread's handle at once (for a forwarder loop running beside the
    /// test). Panics inside the thread if the namespace cannot be entered.
    pub fn spawn<R: Send + 'static>(
        &self,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> std::thread::JoinHandle<R> {
        let name = self.name.clone();
        std::thread::Builder::new()
            .name(format!("ns-{name}"))
            .spawn(move || {
                enter(&name).unwrap_or_else(|e| panic!("{e}"));
                f()
            })
            .expect("spawn netns thread")
    }
}

/// Moves the calling thread into namespace `name` (by its `ip netns` name). Prefer [`Netns::run`].
pub fn enter(name: &str) -> Result<()> {
    let path = format!("/run/netns/{name}");
    let file = std::fs::File::open(&path).map_err(|e| HwError::io(format!("open {path}"), e))?;
    // SAFETY: setns on a valid namespace fd affects only the calling thread.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(HwError::last_os(format!("setns({path})")));
    }
    Ok(())
}

/// Runs a command, failing with its stderr when it exits non-zero.
pub fn run_cmd(program: &str, args: &[&str]) -> Result<Output> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| HwError::io(format!("run {program} {}", args.join(" ")), e))?;
    if !out.status.success() {
        return Err(HwError::io(
            format!(
                "{program} {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            std::io::Error::other("command failed"),
        ));
    }
    Ok(out)
}

/// A set of namespaces deleted together when this value drops (also during a panic's unwinding).
pub struct TestNet {
    namespaces: Vec<Netns>,
}

impl Default for TestNet {
    fn default() -> Self {
        Self::new()
    }
}

impl TestNet {
    pub fn new() -> TestNet {
        remove_stale();
        TestNet {
            namespaces: Vec::new(),
        }
    }

    /// Creates a namespace `sluice-t-<pid>-<n>-<label>` with `lo` up.
    pub fn add_ns(&mut self, label: &str) -> Result<Netns> {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("{PREFIX}{}-{n}-{label}", std::process::id());
        run_cmd("ip", &["netns", "add", &name])?;
        let ns = Netns { name };
        self.namespaces.push(ns.clone());
        self.ip(&ns, &["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn namespaces(&self) -> &[Netns] {
        &self.namespaces
    }

    /// `ip -n NS ARGS…`
    pub fn ip(&self, ns: &Netns, args: &[&str]) -> Result<Output> {
        let mut full = vec!["-n", ns.name()];
        full.extend_from_slice(args);
        run_cmd("ip", &full)
    }

    /// A veth pair `a_if` (in `a`) — `b_if` (in `b`), both up.
    pub fn veth(&self, a: &Netns, a_if: &str, b: &Netns, b_if: &str) -> Result<()> {
        self.veth_queues(a, a_if, b, b_if, 1)
    }

    /// A veth pair with `queues` RX and TX queues on each end, both up.
    pub fn veth_queues(
        &self,
        a: &Netns,
        a_if: &str,
        b: &Netns,
        b_if: &str,
        queues: u32,
    ) -> Result<()> {
        let q = queues.to_string();
        #[rustfmt::skip]
        self.ip(a, &[
            "link", "add", a_if, "numrxqueues", &q, "numtxqueues", &q, "type", "veth",
            "peer", "name", b_if, "netns", b.name(), "numrxqueues", &q, "numtxqueues", &q,
        ])?;
        self.ip(a, &["link", "set", a_if, "up"])?;
        self.ip(b, &["link", "set", b_if, "up"])?;
        Ok(())
    }

    /// Adds `cidr` (e.g. `192.0.2.1/24`) to `ifname`.
    pub fn addr(&self, ns: &Netns, ifname: &str, cidr: &str) -> Result<()> {
        self.ip(ns, &["addr", "add", cidr, "dev", ifname]).map(drop)
    }

    /// Adds a route to `dest` (`default` or a prefix) via `gateway`.
    pub fn route(&self, ns: &Netns, dest: &str, gateway: &str) -> Result<()> {
        self.ip(ns, &["route", "add", dest, "via", gateway])
            .map(drop)
    }

    /// Sets a sysctl inside `ns`, e.g. `("net.ipv4.ip_forward", "1")`.
    pub fn sysctl(&self, ns: &Netns, key: &str, value: &str) -> Result<()> {
        let kv = format!("{key}={value}");
        self.exec_ok(ns, &["sysctl", "-qw", &kv]).map(drop)
    }

    /// Runs a command inside `ns` (`ip netns exec`) and returns its output whatever its exit status.
    pub fn exec(&self, ns: &Netns, cmd: &[&str]) -> Result<Output> {
        Command::new("ip")
            .args(["netns", "exec", ns.name()])
            .args(cmd)
            .output()
            .map_err(|e| HwError::io(format!("ip netns exec {} {}", ns.name(), cmd.join(" ")), e))
    }

    /// Like [`TestNet::exec`] but fails when the command exits non-zero.
    pub fn exec_ok(&self, ns: &Netns, cmd: &[&str]) -> Result<Output> {
        let mut full = vec!["netns", "exec", ns.name()];
        full.extend_from_slice(cmd);
        run_cmd("ip", &full)
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        for ns in self.namespaces.drain(..).rev() {
            // Deleting the namespace destroys the veths in it (and their peers elsewhere).
            if let Err(e) = run_cmd("ip", &["netns", "del", ns.name()]) {
                eprintln!("netns cleanup: {e}");
            }
        }
    }
}

/// Deletes `sluice-t-<pid>-…` namespaces whose process is gone (left behind by a killed test run).
fn remove_stale() {
    let Ok(dir) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for entry in dir.filter_map(|e| e.ok()) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = run_cmd("ip", &["netns", "del", &name]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_are_created_entered_and_removed() {
        if !is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let name;
        {
            let mut net = TestNet::new();
            let a = net.add_ns("a").unwrap();
            let b = net.add_ns("b").unwrap();
            name = a.name().to_string();
            assert!(name.starts_with(PREFIX));
            net.veth(&a, "x0", &b, "x1").unwrap();
            net.addr(&a, "x0", "192.0.2.1/24").unwrap();
            net.addr(&b, "x1", "192.0.2.2/24").unwrap();
            let (idx, queues) = a.run(|| {
                let i = crate::iface::lookup("x0").unwrap();
                (i.ifindex, i.rx_queues)
            });
            assert!(idx > 0);
            assert_eq!(queues, 1);
            // the interface does not exist in the caller's namespace
            assert!(
                crate::iface::lookup("x0").is_err()
                    || idx != crate::iface::lookup("x0").unwrap().ifindex
            );
            let out = net.exec(&a, &["ping", "-c1", "-W1", "192.0.2.2"]).unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stdout)
            );
            // the thread-local namespace sees its own addresses
            let addrs = b.run(|| crate::iface::local_ipv4_addrs().unwrap());
            assert!(addrs.contains(&"192.0.2.2".parse().unwrap()));
            assert!(addrs.contains(&"192.0.2.255".parse().unwrap()));
        }
        assert!(!std::path::Path::new(&format!("/run/netns/{name}")).exists());
    }

    #[test]
    fn cleanup_happens_on_panic() {
        if !is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let r = std::panic::catch_unwind(|| {
            let mut net = TestNet::new();
            let a = net.add_ns("p").unwrap();
            panic!("{}", a.name());
        });
        let msg = *r.unwrap_err().downcast::<String>().unwrap();
        assert!(!std::path::Path::new(&format!("/run/netns/{msg}")).exists());
    }

    #[test]
    fn multiqueue_veth_reports_its_queues() {
        if !is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let mut net = TestNet::new();
        let a = net.add_ns("mq").unwrap();
        let b = net.add_ns("mq").unwrap();
        net.veth_queues(&a, "m0", &b, "m1", 2).unwrap();
        assert_eq!(a.run(|| crate::iface::lookup("m0").unwrap().rx_queues), 2);
    }
}
