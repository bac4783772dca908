//! Real traffic through the ports: three namespaces A — B — C joined by veth pairs a0<->b0 and b1<->c1.
//! In B a dumb L2 forwarder (rewrite MACs, send out of the other port) runs on two ports of the backend under
//! test; A pings C through it, and pings B's own addresses, which must reach B's kernel instead.
//!
//! Needs root (skips with a message otherwise). Addresses: 192.0.2.0/24 (A—B), 198.51.100.0/24 (B—C), only
//! inside the test's own namespaces.

use hw::netns::{is_root, Netns, TestNet};
use hw::xdp::{AttachMode, BindMode, XdpConfig, XdpPort, XdpProgram};
use hw::{Batch, HwError, Port};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

const A_IP: &str = "192.0.2.1";
const B0_IP: &str = "192.0.2.2";
const B1_IP: &str = "198.51.100.2";
const C_IP: &str = "198.51.100.1";

struct Lab {
    net: TestNet,
    a: Netns,
    b: Netns,
    c: Netns,
    a0_mac: [u8; 6],
    c1_mac: [u8; 6],
}

fn lab() -> Lab {
    let mut net = TestNet::new();
    let a = net.add_ns("a").unwrap();
    let b = net.add_ns("b").unwrap();
    let c = net.add_ns("c").unwrap();
    net.veth(&a, "a0", &b, "b0").unwrap();
    net.veth(&b, "b1", &c, "c1").unwrap();
    net.addr(&a, "a0", &format!("{A_IP}/24")).unwrap();
    net.addr(&b, "b0", &format!("{B0_IP}/24")).unwrap();
    net.addr(&b, "b1", &format!("{B1_IP}/24")).unwrap();
    net.addr(&c, "c1", &format!("{C_IP}/24")).unwrap();
    net.route(&a, "198.51.100.0/24", B0_IP).unwrap();
    net.route(&c, "192.0.2.0/24", B1_IP).unwrap();
    // The end hosts finish their own checksums (veth's CHECKSUM_PARTIAL trap, see docs/IO.md).
    let a0_mac = a.run(|| {
        hw::iface::set_tx_checksum_offload("a0", false).unwrap();
        assert!(!hw::iface::tx_checksum_offload("a0").unwrap());
        hw::iface::lookup("a0").unwrap().mac
    });
    let c1_mac = c.run(|| {
        hw::iface::set_tx_checksum_offload("c1", false).unwrap();
        hw::iface::lookup("c1").unwrap().mac
    });
    Lab {
        net,
        a,
        b,
        c,
        a0_mac,
        c1_mac,
    }
}

#[derive(Clone, Debug)]
enum Backend {
    Xdp(XdpConfig),
    Packet,
}

#[derive(Debug, Default)]
struct Counts {
    forwarded: [u64; 2],
    arp_with_kernel_copy: u64,
    /// Frames to B's own addresses that came up the fast path (kernel_has_copy = false): must stay 0.
    local_on_fast_path: u64,
    tx_full: u64,
    busy_loops: u64,
}

struct Forwarder {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<Counts>>,
}

impl Forwarder {
    fn stop(mut self) -> Counts {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.take().unwrap().join().unwrap()
    }
}

impl Drop for Forwarder {
    /// On a failing test: stop the loop before the namespaces go away.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn ipv4_dst(f: &[u8]) -> Option<Ipv4Addr> {
    (f.len() >= 34 && f[12..14] == [0x08, 0x00]).then(|| Ipv4Addr::new(f[30], f[31], f[32], f[33]))
}

fn open(backend: &Backend, ifname: &str) -> hw::Result<Box<dyn Port>> {
    Ok(match backend {
        Backend::Xdp(cfg) => Box::new(XdpPort::open(ifname, cfg)?),
        Backend::Packet => Box::new(hw::packet::PacketPort::open(ifname)?),
    })
}

/// Starts the forwarder in B; returns once both ports are open.
fn start_forwarder(lab: &Lab, backend: &Backend, busy: bool) -> Forwarder {
    let stop = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = mpsc::channel();
    let (a0_mac, c1_mac) = (lab.a0_mac, lab.c1_mac);
    let stop2 = stop.clone();
    let backend = backend.clone();
    let handle = lab.b.spawn(move || {
        let mut ports = [open(&backend, "b0").unwrap(), open(&backend, "b1").unwrap()];
        if let Backend::Xdp(_) = backend {
            // A second program on the same interface is refused with a clear error.
            let err = XdpProgram::attach("b0", AttachMode::Skb).unwrap_err();
            assert!(matches!(err, HwError::XdpAlreadyAttached(_)), "{err}");
        }
        let local: Vec<Ipv4Addr> = [B0_IP, B1_IP].iter().map(|s| s.parse().unwrap()).collect();
        let next_hop = [c1_mac, a0_mac];
        let macs = [ports[0].info().mac, ports[1].info().mac];
        let mut batch = Batch::with_capacity(64);
        let mut counts = Counts::default();
        ready_tx.send(()).unwrap();
        let mut fds: Vec<libc::pollfd> = ports
            .iter()
            .map(|p| libc::pollfd {
                fd: p.poll_fd().unwrap(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        while !stop2.load(Ordering::Relaxed) {
            let mut got = 0;
            for i in 0..2 {
                batch.clear();
                got += ports[i].recv(&mut batch, i as u16).unwrap();
                let out = 1 - i;
                for k in 0..batch.len() {
                    let meta = batch.meta(k);
                    let f = batch.frame_mut(k);
                    if f.len() >= 14 && f[12..14] == [0x08, 0x06] {
                        assert!(meta.kernel_has_copy, "ARP must come with kernel_has_copy");
                        counts.arp_with_kernel_copy += 1;
                        continue;
                    }
                    let Some(dst) = ipv4_dst(f) else { continue };
                    if local.contains(&dst) || f[0..6] != macs[i] {
                        if !meta.kernel_has_copy {
                            counts.local_on_fast_path += 1;
                        }
                        continue; // the kernel's business
                    }
                    f[0..6].copy_from_slice(&next_hop[i]);
                    f[6..12].copy_from_slice(&macs[out]);
                    if ports[out].send(f).unwrap() {
                        counts.forwarded[i] += 1;
                    } else {
                        counts.tx_full += 1;
                    }
                }
            }
            for p in ports.iter_mut() {
                p.flush().unwrap();
            }
            if got == 0 && !busy {
                // SAFETY: fds is a valid pollfd array.
                unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 1) };
            } else {
                counts.busy_loops += 1;
            }
        }
        counts
    });
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("forwarder did not start");
    Forwarder {
        stop,
        handle: Some(handle),
    }
}

fn ping(net: &TestNet, from: &Netns, to: &str, count: u32) -> bool {
    let c = count.to_string();
    let out = net
        .exec(from, &["ping", "-c", &c, "-i", "0.1", "-W", "2", "-q", to])
        .unwrap();
    if !out.status.success() {
        eprintln!("ping {to}: {}", String::from_utf8_lossy(&out.stdout));
    }
    out.status.success()
}

fn xdp_attached(net: &TestNet, ns: &Netns, ifname: &str) -> bool {
    let out = net.ip(ns, &["link", "show", "dev", ifname]).unwrap();
    String::from_utf8_lossy(&out.stdout).contains("xdp")
}

fn forwards_pings(backend: Backend) {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let lab = lab();
    let fwd = start_forwarder(&lab, &backend, false);
    if let Backend::Xdp(_) = backend {
        assert!(xdp_attached(&lab.net, &lab.b, "b0"));
        assert!(xdp_attached(&lab.net, &lab.b, "b1"));
    }
    let through = ping(&lab.net, &lab.a, C_IP, 5);
    let to_b0 = ping(&lab.net, &lab.a, B0_IP, 2);
    let to_b1 = ping(&lab.net, &lab.a, B1_IP, 2);
    let from_c = ping(&lab.net, &lab.c, B1_IP, 2);
    let counts = fwd.stop();
    eprintln!("{backend:?}: {counts:?}");
    assert!(through, "A cannot ping C through the forwarder");
    assert!(
        to_b0 && to_b1 && from_c,
        "B's own addresses must stay reachable"
    );
    assert!(
        counts.forwarded[0] >= 5 && counts.forwarded[1] >= 5,
        "{counts:?}"
    );
    assert!(counts.arp_with_kernel_copy >= 1, "{counts:?}");
    assert_eq!(counts.local_on_fast_path, 0);
    // The ports are dropped with the forwarder thread: the links are gone.
    assert!(!xdp_attached(&lab.net, &lab.b, "b0"));
    assert!(!xdp_attached(&lab.net, &lab.b, "b1"));
    // And B no longer forwards (its kernel has forwarding off), so A cannot reach C any more.
    assert!(!ping(&lab.net, &lab.a, C_IP, 1));
    let _ = &lab.c;
}

#[test]
fn xdp_native_forwards_a_to_c_and_passes_local_traffic() {
    forwards_pings(Backend::Xdp(XdpConfig::default()));
}

#[test]
fn xdp_skb_mode_forwards_too() {
    forwards_pings(Backend::Xdp(XdpConfig {
        attach_mode: AttachMode::Skb,
        ..XdpConfig::default()
    }));
}

#[test]
fn xdp_copy_mode_without_need_wakeup_and_small_rings_forwards_too() {
    let cfg = XdpConfig {
        bind_mode: BindMode::Copy,
        need_wakeup: false,
        frame_count: 256,
        ring_size: 64,
        ..XdpConfig::default()
    };
    forwards_pings(Backend::Xdp(cfg));
}

#[test]
fn af_packet_forwards_a_to_c() {
    forwards_pings(Backend::Packet);
}

#[test]
fn zero_copy_on_veth_is_refused_and_auto_falls_back_to_copy() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let lab = lab();
    lab.b.run(|| {
        let zc = XdpConfig {
            bind_mode: BindMode::ZeroCopy,
            ..XdpConfig::default()
        };
        match XdpPort::open("b0", &zc) {
            Err(HwError::Io { source, .. }) => {
                assert_eq!(source.raw_os_error(), Some(libc::EOPNOTSUPP))
            }
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("veth accepted zero-copy"),
        }
        let port = XdpPort::open("b0", &XdpConfig::default()).unwrap();
        assert!(!port.is_zero_copy());
        assert!(port.kernel_shares_interface());
        let locals = port.program().local_addresses();
        assert!(
            locals.contains(&B0_IP.parse().unwrap()) && locals.contains(&B1_IP.parse().unwrap())
        );
    });
}

#[test]
fn ports_of_one_interface_share_the_program() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let mut net = TestNet::new();
    let a = net.add_ns("mqa").unwrap();
    let b = net.add_ns("mqb").unwrap();
    net.veth_queues(&a, "a0", &b, "b0", 2).unwrap();
    b.run(|| {
        let p0 = XdpPort::open("b0", &XdpConfig::default().queue(0)).unwrap();
        let p1 = XdpPort::open("b0", &XdpConfig::default().queue(1)).unwrap();
        assert!(Arc::ptr_eq(p0.program(), p1.program()));
        assert_eq!(p0.program().queues(), 2);
        assert!(XdpPort::open("b0", &XdpConfig::default().queue(2)).is_err());
        p0.program()
            .set_local_addresses(&["203.0.113.9".parse().unwrap()])
            .unwrap();
        assert_eq!(
            p1.program().local_addresses(),
            vec!["203.0.113.9".parse::<Ipv4Addr>().unwrap()]
        );
    });
    assert!(!xdp_attached(&net, &b, "b0"));
}

fn link_rx_packets(net: &TestNet, ns: &Netns, ifname: &str) -> u64 {
    let out = net
        .ip(ns, &["-s", "-j", "link", "show", "dev", ifname])
        .unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    // "rx":{"bytes":N,"packets":M,…
    let i = s.find("\"rx\":{").expect("ip -s -j output");
    let rest = &s[i..];
    let j = rest.find("\"packets\":").unwrap() + "\"packets\":".len();
    rest[j..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// A quick throughput figure (not a benchmark): trafgen in A sends 64-byte UDP frames at C for about a second,
/// the forwarder in B busy-polls, frames are counted on c1. All of it shares the machine's 2 vCPUs.
fn measure(backend: Backend) {
    if !is_root()
        || std::process::Command::new("trafgen")
            .arg("-v")
            .output()
            .is_err()
    {
        eprintln!("skipped: needs root and trafgen");
        return;
    }
    let lab = lab();
    let b0_mac = lab.b.run(|| hw::iface::lookup("b0").unwrap().mac);
    let fwd = start_forwarder(&lab, &backend, true);
    assert!(ping(&lab.net, &lab.a, C_IP, 1));
    let mac = |m: [u8; 6]| {
        m.iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":")
    };
    let cfg = format!(
        "{{ eth(da={}, sa={}), ipv4(saddr={A_IP}, daddr={C_IP}, ttl=64), udp(sp=dinc(1024, 1100), dp=9), fill(0x41, 18) }}\n",
        mac(b0_mac),
        mac(lab.a0_mac)
    );
    let path = std::env::temp_dir().join(format!("sluice-hw-trafgen-{}.cfg", std::process::id()));
    std::fs::write(&path, cfg).unwrap();
    let before = link_rx_packets(&lab.net, &lab.c, "c1");
    let n = 400_000u64;
    let t0 = Instant::now();
    let out = lab
        .net
        .exec(
            &lab.a,
            &[
                "trafgen",
                "-o",
                "a0",
                "-i",
                path.to_str().unwrap(),
                "-n",
                &n.to_string(),
                "--cpus",
                "1",
                "-q",
            ],
        )
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let elapsed = t0.elapsed().as_secs_f64() - 0.2;
    let _ = std::fs::remove_file(&path);
    assert!(
        out.status.success(),
        "trafgen: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = link_rx_packets(&lab.net, &lab.c, "c1") - before;
    let tcp = iperf(&lab);
    let counts = fwd.stop();
    eprintln!(
        "MEASURE {backend:?}: sent {n} in {elapsed:.2}s, received at c1 {got} ({:.0} pps, {:.1}% delivered); TCP A->C {tcp}; {counts:?}",
        got as f64 / elapsed,
        100.0 * got as f64 / n as f64
    );
    assert!(got > n / 10, "most frames lost: {got} of {n}");
}

/// Two seconds of iperf3 TCP from A to C through the forwarder; the receiver's summary line.
fn iperf(lab: &Lab) -> String {
    let mut server = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            lab.c.name(),
            "iperf3",
            "-s",
            "-1",
            "-p",
            "5201",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let out = lab
        .net
        .exec(
            &lab.a,
            &["iperf3", "-c", C_IP, "-p", "5201", "-t", "2", "-f", "m"],
        )
        .unwrap();
    let _ = server.wait();
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find(|l| l.contains("receiver"))
        .map(|l| {
            l.split_whitespace()
                .skip(4)
                .take(4)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|| format!("iperf3 failed: {}", String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn measure_xdp_native() {
    measure(Backend::Xdp(XdpConfig::default()));
}

#[test]
fn measure_af_packet() {
    measure(Backend::Packet);
}

/// IPv6 on the XDP path: frames for B's own addresses (link-local ones included) and multicast (neighbour
/// discovery, MLD) pass to B's kernel, which keeps answering them; every other IPv6 frame comes up the fast
/// path; and the neighbour solicitations/advertisements B's kernel receives are copied to the port with
/// `kernel_has_copy` (and nothing else IPv6 is). Addresses in 2001:db8::/32 inside the test's namespaces.
#[test]
fn xdp_steers_ipv6_by_destination_and_copies_neighbour_discovery() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let mut net = TestNet::new();
    let a = net.add_ns("v6a").unwrap();
    let b = net.add_ns("v6b").unwrap();
    net.veth(&a, "a0", &b, "b0").unwrap();
    for (ns, ifname, cidr) in [
        (&a, "a0", "2001:db8:1::2/64"),
        (&b, "b0", "2001:db8:1::1/64"),
    ] {
        net.ip(ns, &["addr", "add", cidr, "dev", ifname, "nodad"])
            .unwrap();
    }
    net.ip(
        &a,
        &[
            "-6",
            "route",
            "add",
            "2001:db8:2::/64",
            "via",
            "2001:db8:1::1",
        ],
    )
    .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let (ready_tx, ready_rx) = mpsc::channel();
    let watcher = b.spawn(move || {
        let mut port = XdpPort::open("b0", &XdpConfig::default()).unwrap();
        let local = port.program().local_addresses6();
        ready_tx.send(local).unwrap();
        let mut batch = Batch::with_capacity(64);
        let (mut fast, mut copies) = (Vec::new(), Vec::new());
        while !stop2.load(Ordering::Relaxed) {
            batch.clear();
            if port.recv(&mut batch, 0).unwrap() == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
            for k in 0..batch.len() {
                let copy = batch.meta(k).kernel_has_copy;
                let f = batch.frame_mut(k);
                if f.len() < 55 || f[12..14] != [0x86, 0xdd] {
                    continue;
                }
                let dst = std::net::Ipv6Addr::from(<[u8; 16]>::try_from(&f[38..54]).unwrap());
                if copy {
                    copies.push((f[20], f[54]));
                } else {
                    fast.push(dst);
                }
            }
        }
        (fast, copies)
    });
    let local = ready_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    let own: std::net::Ipv6Addr = "2001:db8:1::1".parse().unwrap();
    assert!(local.contains(&own), "{local:?}");
    assert!(local.iter().any(|a| a.segments()[0] == 0xfe80), "{local:?}");
    let to_b = net
        .exec(
            &a,
            &[
                "ping",
                "-6",
                "-c",
                "2",
                "-i",
                "0.2",
                "-W",
                "2",
                "2001:db8:1::1",
            ],
        )
        .unwrap();
    let far = net
        .exec(
            &a,
            &[
                "ping",
                "-6",
                "-c",
                "2",
                "-i",
                "0.2",
                "-W",
                "1",
                "2001:db8:2::9",
            ],
        )
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    let (fast, copies) = watcher.join().unwrap();
    eprintln!("fast path: {fast:?}; kernel copies (next header, type): {copies:?}");
    assert!(
        to_b.status.success(),
        "B's kernel must keep answering its own IPv6 address"
    );
    assert!(!far.status.success(), "nothing forwards in this test");
    let far: std::net::Ipv6Addr = "2001:db8:2::9".parse().unwrap();
    assert!(fast.iter().filter(|d| **d == far).count() >= 2, "{fast:?}");
    assert!(
        fast.iter().all(|d| *d == far),
        "only the frames not for B come up the fast path: {fast:?}"
    );
    assert!(
        !copies.is_empty(),
        "A's solicitation of B's address is copied"
    );
    assert!(
        copies
            .iter()
            .all(|&(nh, ty)| nh == 58 && (ty == 135 || ty == 136)),
        "{copies:?}"
    );
}
