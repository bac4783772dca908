//! Connection tracking and NAT compared with the kernel: the same ruleset and the same traffic through a
//! kernel-forwarding namespace (ruleset loaded with the real `nft`, `ip_forward=1`, read back with the real
//! `conntrack -L`) and through sluice (`sluice lab`, read back with `sluice conntrack -L`) must leave the
//! same conntrack entries: states, tuples and NAT translations. Timeouts (seconds tick) and ICMP echo
//! identifiers (chosen by ping) are masked; client ports are fixed with `curl --local-port`.
//!
//! Plus the table-full behaviour on sluice alone (the kernel's nf_conntrack_max cannot be changed inside
//! a network namespace): a SYN flood at ten times the maximum while a download that started before runs.
//!
//! Needs root, `nft`, `conntrack` and `curl` (CI installs them); otherwise each test says why it skips.

use hw::netns::{Netns, TestNet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

const SLUICE: &str = env!("CARGO_BIN_EXE_sluice");

fn skip(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("{test}: skipped, needs root");
        return true;
    }
    for tool in ["nft", "conntrack", "curl", "ping"] {
        let found = std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).exists()));
        if !found {
            eprintln!("{test}: skipped, `{tool}` is not installed");
            return true;
        }
    }
    false
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// What a rig can do: run a command in one of its hosts, start one in the background, list conntrack.
trait Rig {
    fn name(&self) -> &'static str;
    fn ns(&self, role: &str) -> String;
    fn children(&mut self) -> &mut Vec<Child>;
    fn conntrack(&self) -> Vec<String>;

    fn run(&self, role: &str, argv: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.ns(role)])
            .args(argv)
            .output()
            .expect("ip netns exec")
    }

    fn spawn(&mut self, role: &str, argv: &[&str]) {
        let c = Command::new("ip")
            .args(["netns", "exec", &self.ns(role)])
            .args(argv)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        self.children().push(c);
    }

    /// `curl` from `role` with a fixed client port; the HTTP status code ("000" when it failed).
    fn curl(&self, role: &str, port: u16, url: &str, extra: &[&str]) -> String {
        let p = port.to_string();
        let mut argv = vec![
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-m",
            "3",
            "--local-port",
            &p,
        ];
        argv.extend_from_slice(extra);
        argv.push(url);
        String::from_utf8_lossy(&self.run(role, &argv).stdout).into_owned()
    }
}

/// The kernel forwarding: PREFIX-cli — PREFIX-fw (nft, ip_forward=1) — PREFIX-srv, the lab's addresses.
struct Kernel {
    net: TestNet,
    hosts: Vec<(String, Netns)>,
    children: Vec<Child>,
}

impl Kernel {
    fn new(ruleset: &Path) -> Kernel {
        let mut net = TestNet::new();
        let cli = net.add_ns("kcli").unwrap();
        let fw = net.add_ns("kfw").unwrap();
        let srv = net.add_ns("ksrv").unwrap();
        net.veth(&cli, "cli0", &fw, "fw-cli").unwrap();
        net.veth(&fw, "fw-srv", &srv, "srv0").unwrap();
        net.addr(&cli, "cli0", "192.0.2.2/24").unwrap();
        net.addr(&fw, "fw-cli", "192.0.2.1/24").unwrap();
        net.addr(&fw, "fw-srv", "198.51.100.1/24").unwrap();
        net.addr(&srv, "srv0", "198.51.100.2/24").unwrap();
        net.route(&cli, "default", "192.0.2.1").unwrap();
        net.route(&srv, "default", "198.51.100.1").unwrap();
        net.sysctl(&fw, "net.ipv4.ip_forward", "1").unwrap();
        net.exec_ok(&fw, &["nft", "-f", ruleset.to_str().unwrap()])
            .unwrap();
        let mut k = Kernel {
            net,
            hosts: vec![("cli".into(), cli), ("fw".into(), fw), ("srv".into(), srv)],
            children: Vec::new(),
        };
        k.spawn(
            "srv",
            &[SLUICE, "internal", "http-serve", "198.51.100.2:80"],
        );
        wait_http(&k);
        k
    }
}

impl Rig for Kernel {
    fn name(&self) -> &'static str {
        "kernel"
    }
    fn ns(&self, role: &str) -> String {
        self.hosts
            .iter()
            .find(|(r, _)| r == role)
            .map(|(_, n)| n.name().to_string())
            .unwrap()
    }
    fn children(&mut self) -> &mut Vec<Child> {
        &mut self.children
    }
    fn conntrack(&self) -> Vec<String> {
        let fw = &self.hosts[1].1;
        let o = self
            .net
            .exec(fw, &["conntrack", "-L", "-f", "ipv4"])
            .unwrap();
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(String::from)
            .collect()
    }
}

impl Drop for Kernel {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// sluice forwarding: `sluice lab up --prefix P --ruleset FILE`, removed on drop.
struct Sluice {
    prefix: String,
    children: Vec<Child>,
}

impl Sluice {
    fn new(tag: &str, ruleset: &Path) -> Sluice {
        let prefix = format!("ct{}{tag}", std::process::id() % 100_000);
        let s = Sluice {
            prefix,
            children: Vec::new(),
        };
        let o = s.sluice(&["lab", "up", "--ruleset", ruleset.to_str().unwrap()]);
        assert!(o.status.success(), "lab up: {}", text(&o));
        wait_http(&s);
        s
    }
    fn sluice(&self, args: &[&str]) -> Output {
        Command::new(SLUICE)
            .args(args)
            .args(["--prefix", &self.prefix])
            .output()
            .expect("run sluice")
    }
    fn control(&self) -> String {
        format!("/run/sluice/{}/control.sock", self.prefix)
    }
    fn ctl(&self, words: &[&str]) -> String {
        let c = self.control();
        let mut argv = vec!["ctl", "--control", &c];
        argv.extend_from_slice(words);
        text(&Command::new(SLUICE).args(&argv).output().unwrap())
    }
    fn counter(&self, name: &str) -> u64 {
        self.ctl(&["stats"])
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no counter {name}"))
    }
}

impl Rig for Sluice {
    fn name(&self) -> &'static str {
        "sluice"
    }
    fn ns(&self, role: &str) -> String {
        format!("{}-{role}", self.prefix)
    }
    fn children(&mut self) -> &mut Vec<Child> {
        &mut self.children
    }
    fn conntrack(&self) -> Vec<String> {
        let o = Command::new(SLUICE)
            .args(["conntrack", "--control", &self.control(), "-L"])
            .output()
            .unwrap();
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("flow entries have been shown"),
            "{}",
            text(&o)
        );
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(String::from)
            .collect()
    }
}

impl Drop for Sluice {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new(SLUICE)
            .args(["lab", "down", "--prefix", &self.prefix])
            .output();
    }
}

fn wait_http(r: &dyn Rig) {
    for _ in 0..50 {
        let o = r.run(
            "srv",
            &[
                "curl",
                "-s",
                "-o",
                "/dev/null",
                "-m",
                "1",
                "http://198.51.100.2/",
            ],
        );
        if o.status.success() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{}: the HTTP server did not come up", r.name());
}

/// Masks what legitimately differs between two runs: the timeout and ICMP identifiers.
fn normalize(lines: &[String], extra: &dyn Fn(String) -> String) -> Vec<String> {
    let mut v: Vec<String> = lines
        .iter()
        .map(|l| {
            let mut w: Vec<String> = l.split_whitespace().map(String::from).collect();
            if w.len() > 2 && w[2].chars().all(|c| c.is_ascii_digit()) {
                w.remove(2);
            }
            for t in w.iter_mut() {
                if t.starts_with("id=") {
                    *t = "id=*".into();
                }
            }
            extra(w.join(" "))
        })
        .collect();
    v.sort();
    v
}

fn ruleset_file(name: &str, text: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("sluice-ct-{}-{name}.nft", std::process::id()));
    std::fs::write(&p, text).unwrap();
    p
}

/// Runs `traffic` on the kernel rig and on sluice, and checks both leave the same entries.
fn same_as_kernel(
    name: &str,
    ruleset: &str,
    traffic: &dyn Fn(&mut dyn Rig),
    extra: &dyn Fn(String) -> String,
) {
    let file = ruleset_file(name, ruleset);
    let kernel = {
        let mut k = Kernel::new(&file);
        traffic(&mut k);
        std::thread::sleep(Duration::from_millis(300));
        normalize(&k.conntrack(), extra)
    };
    let ours = {
        let mut s = Sluice::new(&name[..name.len().min(3)], &file);
        traffic(&mut s);
        std::thread::sleep(Duration::from_millis(300));
        normalize(&s.conntrack(), extra)
    };
    let _ = std::fs::remove_file(&file);
    assert!(!kernel.is_empty(), "{name}: the kernel tracked nothing");
    assert_eq!(
        ours, kernel,
        "{name}: sluice (left) and the kernel (right) differ"
    );
}

const MASQ: &str = "table ip nat {
	chain post {
		type nat hook postrouting priority srcnat; policy accept;
		ip daddr 198.51.100.0/24 masquerade
	}
}
";

#[test]
fn masquerade_leaves_the_same_entries_as_the_kernel() {
    if skip("masquerade") {
        return;
    }
    same_as_kernel(
        "masq",
        MASQ,
        &|r| {
            assert_eq!(
                r.curl("cli", 40001, "http://198.51.100.2/", &[]),
                "200",
                "{}",
                r.name()
            );
            let o = r.run("cli", &["ping", "-c", "1", "-W", "2", "198.51.100.2"]);
            assert!(o.status.success(), "{}: ping: {}", r.name(), text(&o));
        },
        &|l| l,
    );
}

const FORWARD: &str = "table ip nat {
	chain pre {
		type nat hook prerouting priority dstnat; policy accept;
		ip daddr 192.0.2.1 tcp dport 8080 dnat to 198.51.100.2:80
	}
	chain post {
		type nat hook postrouting priority srcnat; policy accept;
		ip saddr 198.51.100.0/24 ip daddr 198.51.100.2 tcp dport 80 masquerade
	}
}
";

#[test]
fn port_forward_8080_to_80_leaves_the_same_entries_as_the_kernel() {
    if skip("port forward") {
        return;
    }
    same_as_kernel(
        "fwd",
        FORWARD,
        &|r| {
            assert_eq!(
                r.curl("cli", 40002, "http://192.0.2.1:8080/", &[]),
                "200",
                "{}",
                r.name()
            );
        },
        &|l| l,
    );
}

#[test]
fn hairpin_nat_leaves_the_same_entries_as_the_kernel() {
    if skip("hairpin") {
        return;
    }
    // The server reaches itself through the public address: DNAT and masquerade on one connection, in
    // and out of the same interface.
    same_as_kernel(
        "hairpin",
        FORWARD,
        &|r| {
            assert_eq!(
                r.curl("srv", 40003, "http://192.0.2.1:8080/", &[]),
                "200",
                "{}",
                r.name()
            );
        },
        &|l| l,
    );
}

#[test]
fn port_exhaustion_refuses_the_third_flow_like_the_kernel() {
    if skip("port exhaustion") {
        return;
    }
    let rs = "table ip nat {
	chain post {
		type nat hook postrouting priority srcnat; policy accept;
		ip daddr 198.51.100.2 tcp dport 80 masquerade to :50000-50001
	}
}
";
    same_as_kernel(
        "exhaust",
        rs,
        &|r| {
            // Two slow downloads hold both ports (ESTABLISHED: no TIME_WAIT reuse), a third connection
            // finds no port and times out.
            for port in ["40021", "40022"] {
                r.spawn(
                    "cli",
                    &[
                        "curl",
                        "-s",
                        "-o",
                        "/dev/null",
                        "--local-port",
                        port,
                        "--limit-rate",
                        "10k",
                        "http://198.51.100.2/bytes/40000000",
                    ],
                );
            }
            std::thread::sleep(Duration::from_millis(700));
            let third = r.curl("cli", 40023, "http://198.51.100.2/", &["-m", "2"]);
            assert_eq!(
                third,
                "000",
                "{}: the third flow should find no port; entries: {:#?}",
                r.name(),
                r.conntrack()
            );
        },
        // Which download got which port is random in both.
        &|l| l.replace("=50000", "=5000x").replace("=50001", "=5000x"),
    );
}

#[test]
fn table_full_syn_flood_spares_an_established_download() {
    if skip("table full") {
        return;
    }
    let file = ruleset_file("full", MASQ);
    let mut s = Sluice::new("full", &file);
    let _ = std::fs::remove_file(&file);
    let set = s.ctl(&["sysctl", "net.netfilter.nf_conntrack_max=100"]);
    assert!(set.contains("nf_conntrack_max = 100"), "{set}");
    // A 4 MB download at 2 MB/s: it starts before the flood and must finish whole.
    let ns = s.ns("cli");
    let download = std::thread::spawn(move || {
        Command::new("ip")
            .args(["netns", "exec", &ns])
            .args([
                "curl",
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code} %{size_download}",
                "-m",
                "20",
                "--limit-rate",
                "2M",
                "http://198.51.100.2/bytes/4000000",
            ])
            .output()
            .unwrap()
    });
    std::thread::sleep(Duration::from_millis(500));
    // 1000 SYNs (10x the maximum) from changing ports to a host that never answers.
    let flood = s.run(
        "cli",
        &[
            SLUICE,
            "internal",
            "syn-flood",
            "192.0.2.2",
            "198.51.100.77:80",
            "1000",
        ],
    );
    assert!(flood.status.success(), "flood: {}", text(&flood));
    let got = download.join().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&got.stdout),
        "200 4000000",
        "{}",
        text(&got)
    );
    let entries = s.conntrack();
    assert!(entries.len() <= 100, "{} entries", entries.len());
    let drops = s.counter("ct_early_drop") + s.counter("ct_table_full");
    assert!(drops >= 800, "early drops + refusals: {drops}");
    s.children().clear();
}
