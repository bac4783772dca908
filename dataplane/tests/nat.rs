//! NAT packet-in → packet-out fixtures through a worker on in-memory ports: masquerade, a dnat 8080→80
//! port forward, hairpin NAT, port exhaustion, ICMP errors translated back, and the conntrack entries
//! each leaves behind.
//!
//! Topology: outside hosts on 192.0.2.0/24 (port 0, fw 192.0.2.1), inside hosts on 198.51.100.0/24
//! (port 1, fw 198.51.100.1).

use arc_swap::ArcSwap;
use dataplane::conntrack::{status, Dir};
use dataplane::wire::{self, checksum, parse_ipv4, ArpRepr, ARP_REQUEST, ETH_HLEN};
use dataplane::{Fib, InterfaceConfig, Pipeline, PipelineConfig, PortRole, Worker, WorkerConfig};
use hw::mem::{MemHandle, MemPort};
use hw::{Batch, Port};
use std::net::Ipv4Addr;
use std::sync::Arc;

const FW_OUT: [u8; 6] = [2, 0, 0, 0, 1, 1];
const FW_IN: [u8; 6] = [2, 0, 0, 0, 2, 1];
const FW_OUT_IP: [u8; 4] = [192, 0, 2, 1];
const FW_IN_IP: [u8; 4] = [198, 51, 100, 1];
const EXT: [u8; 4] = [192, 0, 2, 2];
const EXT_MAC: [u8; 6] = [2, 0, 0, 0, 1, 2];
const SRV: [u8; 4] = [198, 51, 100, 2];
const SRV_MAC: [u8; 6] = [2, 0, 0, 0, 2, 2];
const LAN: [u8; 4] = [198, 51, 100, 3];
const LAN_MAC: [u8; 6] = [2, 0, 0, 0, 2, 3];

const TCP: u8 = 6;
const UDP: u8 = 17;
const SYN: u8 = 0x02;
const ACK: u8 = 0x10;

struct Rig {
    worker: Worker,
    batch: Batch,
    out: MemHandle,
    inside: MemHandle,
    now: u64,
}

impl Rig {
    fn new(ruleset: &str) -> Rig {
        let ifaces = vec![
            InterfaceConfig {
                name: "fw-out".into(),
                ifindex: 2,
                mac: FW_OUT,
                mtu: 1500,
                ipv4: vec![(FW_OUT_IP.into(), 24)],
            },
            InterfaceConfig {
                name: "fw-in".into(),
                ifindex: 3,
                mac: FW_IN,
                mtu: 1500,
                ipv4: vec![(FW_IN_IP.into(), 24)],
            },
        ];
        let fib = Arc::new(Fib::new(ifaces, &[]));
        let (p0, out) = MemPort::new("fw-out", FW_OUT);
        let (p1, inside) = MemPort::new("fw-in", FW_IN);
        let ports: Vec<Box<dyn Port>> = vec![Box::new(p0), Box::new(p1)];
        let roles = vec![
            PortRole {
                kernel_shares: false
            };
            2
        ];
        let pipeline = Pipeline::new(fib, roles, &PipelineConfig::default());
        let ast = rules::parse_ruleset(ruleset, "nat.nft").unwrap();
        let live = Arc::new(ArcSwap::from_pointee(rules::compile(&ast).unwrap()));
        let (tx, rx) = std::sync::mpsc::channel();
        std::mem::forget(tx);
        let worker = Worker::new(0, ports, pipeline, live, rx, WorkerConfig::default());
        let mut rig = Rig {
            worker,
            batch: Batch::with_capacity(64),
            out,
            inside,
            now: 1_000_000,
        };
        // Every host asks for the firewall's MAC first, so the firewall knows them all.
        for (h, mac, ip, fw_ip) in [
            (0, EXT_MAC, EXT, FW_OUT_IP),
            (1, SRV_MAC, SRV, FW_IN_IP),
            (1, LAN_MAC, LAN, FW_IN_IP),
        ] {
            let a = ArpRepr {
                op: ARP_REQUEST,
                sender_mac: mac,
                sender_ip: ip.into(),
                target_mac: [0; 6],
                target_ip: fw_ip.into(),
            };
            let mut buf = vec![0u8; 60];
            a.emit_frame(mac, [0xff; 6], &mut buf);
            rig.port(h).inject(&buf);
        }
        rig.step();
        rig.out.take_sent();
        rig.inside.take_sent();
        rig
    }

    fn port(&self, i: usize) -> &MemHandle {
        if i == 0 {
            &self.out
        } else {
            &self.inside
        }
    }

    fn step(&mut self) {
        self.now += 1_000_000;
        self.worker.poll_once(&mut self.batch, self.now);
    }

    /// Sends `frame` into port `from`, returns what comes out of port `to` (and asserts nothing else
    /// comes out of the other port).
    fn through(&mut self, from: usize, frame: Vec<u8>, to: usize) -> Vec<Vec<u8>> {
        let dst_mac = if from == 0 { FW_OUT } else { FW_IN };
        let mut f = frame;
        f[0..6].copy_from_slice(&dst_mac);
        self.port(from).inject(&f);
        self.step();
        let got = self.port(to).take_sent();
        if from != to {
            assert!(self.port(from).take_sent().is_empty());
        }
        got
    }

    fn stats(&self) -> dataplane::WorkerStats {
        self.worker.snapshot(false).stats
    }

    fn entries(&self) -> Vec<dataplane::worker::ConnSnapshot> {
        self.worker.snapshot(true).conntrack
    }
}

fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, l4: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; ETH_HLEN + 20 + l4.len()];
    f[12..14].copy_from_slice(&wire::ETHERTYPE_IPV4.to_be_bytes());
    let ip = &mut f[ETH_HLEN..];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
    ip[6] = 0x40;
    ip[8] = 64;
    ip[9] = proto;
    ip[12..16].copy_from_slice(&src);
    ip[16..20].copy_from_slice(&dst);
    let c = checksum(&ip[..20]);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    ip[20..].copy_from_slice(l4);
    if proto == TCP || proto == UDP {
        let at = ETH_HLEN + 20 + if proto == TCP { 16 } else { 6 };
        let c = l4_checksum(&f);
        f[at..at + 2].copy_from_slice(&c.to_be_bytes());
    } else {
        let c = checksum(&f[ETH_HLEN + 20..]);
        f[ETH_HLEN + 22..ETH_HLEN + 24].copy_from_slice(&c.to_be_bytes());
    }
    f
}

fn l4_checksum(f: &[u8]) -> u16 {
    let ip = &f[ETH_HLEN..];
    let len = u16::from_be_bytes([ip[2], ip[3]]) as usize - 20;
    let mut b = Vec::new();
    b.extend_from_slice(&ip[12..20]);
    b.extend_from_slice(&[0, ip[9]]);
    b.extend_from_slice(&(len as u16).to_be_bytes());
    b.extend_from_slice(&ip[20..20 + len]);
    checksum(&b)
}

fn tcp(sport: u16, dport: u16, flags: u8, seq: u32, ack: u32) -> Vec<u8> {
    let mut t = vec![0u8; 20];
    t[0..2].copy_from_slice(&sport.to_be_bytes());
    t[2..4].copy_from_slice(&dport.to_be_bytes());
    t[4..8].copy_from_slice(&seq.to_be_bytes());
    t[8..12].copy_from_slice(&ack.to_be_bytes());
    t[12] = 5 << 4;
    t[13] = flags;
    t[14..16].copy_from_slice(&64240u16.to_be_bytes());
    t
}

fn udp(sport: u16, dport: u16) -> Vec<u8> {
    let mut u = vec![0u8; 8];
    u[0..2].copy_from_slice(&sport.to_be_bytes());
    u[2..4].copy_from_slice(&dport.to_be_bytes());
    u[4..6].copy_from_slice(&12u16.to_be_bytes());
    u.extend_from_slice(b"ping");
    u
}

/// (src, sport, dst, dport) of a forwarded frame, after checking every checksum.
fn seen(f: &[u8]) -> (Ipv4Addr, u16, Ipv4Addr, u16) {
    let ip = parse_ipv4(f, ETH_HLEN).expect("valid IPv4 (header checksum included)");
    if ip.proto == TCP || ip.proto == UDP {
        assert_eq!(l4_checksum(f), 0, "transport checksum");
    }
    (ip.src, ip.sport, ip.dst, ip.dport)
}

fn a(x: [u8; 4]) -> Ipv4Addr {
    x.into()
}

const MASQ: &str = "table ip nat {
    chain post {
        type nat hook postrouting priority srcnat; policy accept;
        oifname \"fw-out\" masquerade
    }
}";

#[test]
fn masquerade_out_and_back() {
    let mut rig = Rig::new(MASQ);
    let out = rig.through(1, ipv4(SRV, EXT, TCP, &tcp(40000, 80, SYN, 100, 0)), 0);
    assert_eq!(out.len(), 1);
    assert_eq!(
        seen(&out[0]),
        (a(FW_OUT_IP), 40000, a(EXT), 80),
        "source masqueraded, port kept"
    );
    assert_eq!(&out[0][0..6], &EXT_MAC);
    // The SYN/ACK comes back to the firewall's own address and goes to the inside host.
    let back = rig.through(
        0,
        ipv4(EXT, FW_OUT_IP, TCP, &tcp(80, 40000, SYN | ACK, 900, 101)),
        1,
    );
    assert_eq!(back.len(), 1);
    assert_eq!(seen(&back[0]), (a(EXT), 80, a(SRV), 40000));
    assert_eq!(&back[0][0..6], &SRV_MAC);
    let out = rig.through(1, ipv4(SRV, EXT, TCP, &tcp(40000, 80, ACK, 101, 901)), 0);
    assert_eq!(seen(&out[0]).0, a(FW_OUT_IP));
    let e = &rig.entries()[0].entry;
    assert_eq!(e.tcp_state().unwrap().name(), "ESTABLISHED");
    assert!(e.has(status::SRC_NAT) && e.has(status::ASSURED));
    assert_eq!(e.tuple(Dir::Reply).dst, a(FW_OUT_IP));
    assert_eq!(rig.stats().nat_bindings, 1);
}

#[test]
fn traffic_for_the_box_not_nated_is_left_alone() {
    let mut rig = Rig::new(MASQ);
    let out = rig.through(0, ipv4(EXT, FW_OUT_IP, TCP, &tcp(5555, 22, SYN, 1, 0)), 1);
    assert!(out.is_empty());
    assert_eq!(rig.stats().local_no_path, 1);
    assert!(rig.entries().is_empty());
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
table ip filter {
    chain forward {
        type filter hook forward priority filter; policy drop;
        ct state established,related accept
        ip daddr 198.51.100.2 tcp dport 80 accept
    }
}";

#[test]
fn dnat_port_forward_8080_to_80() {
    let mut rig = Rig::new(FORWARD);
    let fwd = rig.through(
        0,
        ipv4(EXT, FW_OUT_IP, TCP, &tcp(33000, 8080, SYN, 7, 0)),
        1,
    );
    assert_eq!(fwd.len(), 1, "{:?}", rig.stats());
    assert_eq!(seen(&fwd[0]), (a(EXT), 33000, a(SRV), 80));
    let back = rig.through(1, ipv4(SRV, EXT, TCP, &tcp(80, 33000, SYN | ACK, 50, 8)), 0);
    assert_eq!(back.len(), 1);
    assert_eq!(seen(&back[0]), (a(FW_OUT_IP), 8080, a(EXT), 33000));
    let e = &rig.entries()[0].entry;
    assert!(e.has(status::DST_NAT) && !e.has(status::SRC_NAT));
    assert_eq!(e.tcp_state().unwrap().name(), "SYN_RECV");
    // Port 8081 is not forwarded: it is the box's, and dropped here (no kernel behind a mem port).
    let none = rig.through(
        0,
        ipv4(EXT, FW_OUT_IP, TCP, &tcp(33001, 8081, SYN, 7, 0)),
        1,
    );
    assert!(none.is_empty());
}

#[test]
fn hairpin_inside_client_reaches_inside_server_through_the_public_address() {
    let mut rig = Rig::new(FORWARD);
    // LAN host -> public address:8080: DNAT to SRV and masquerade to the inside address, out the same port.
    let fwd = rig.through(
        1,
        ipv4(LAN, FW_OUT_IP, TCP, &tcp(44000, 8080, SYN, 7, 0)),
        1,
    );
    assert_eq!(fwd.len(), 1, "{:?}", rig.stats());
    assert_eq!(seen(&fwd[0]), (a(FW_IN_IP), 44000, a(SRV), 80));
    assert_eq!(&fwd[0][0..6], &SRV_MAC);
    // SRV answers the firewall; the answer goes back to LAN from the public address.
    let back = rig.through(
        1,
        ipv4(SRV, FW_IN_IP, TCP, &tcp(80, 44000, SYN | ACK, 50, 8)),
        1,
    );
    assert_eq!(back.len(), 1);
    assert_eq!(seen(&back[0]), (a(FW_OUT_IP), 8080, a(LAN), 44000));
    assert_eq!(&back[0][0..6], &LAN_MAC);
    let e = &rig.entries()[0].entry;
    assert!(e.has(status::DST_NAT) && e.has(status::SRC_NAT));
}

#[test]
fn a_two_port_range_runs_out_and_says_so() {
    let rs = "table ip nat {
        chain post {
            type nat hook postrouting priority srcnat; policy accept;
            oifname \"fw-out\" meta l4proto udp snat to 192.0.2.1:5000-5001
        }
    }";
    let mut rig = Rig::new(rs);
    let mut ports = Vec::new();
    for src in [[198, 51, 100, 2], [198, 51, 100, 3]] {
        let out = rig.through(1, ipv4(src, EXT, UDP, &udp(7000, 53)), 0);
        assert_eq!(out.len(), 1);
        ports.push(seen(&out[0]).1);
    }
    ports.sort();
    assert_eq!(ports, vec![5000, 5001]);
    // A third client: no port left. Dropped and counted, never a clash.
    let out = rig.through(1, ipv4([198, 51, 100, 4], EXT, UDP, &udp(7000, 53)), 0);
    assert!(out.is_empty());
    let s = rig.stats();
    assert_eq!((s.nat_port_exhausted, s.ct_insert_failed), (1, 0));
    assert_eq!(rig.entries().len(), 2);
    // Existing flows keep working.
    let out = rig.through(1, ipv4(SRV, EXT, UDP, &udp(7000, 53)), 0);
    assert_eq!(out.len(), 1);
}

#[test]
fn icmp_port_unreachable_for_a_masqueraded_datagram_reaches_the_inside_host() {
    let mut rig = Rig::new(MASQ);
    let out = rig.through(1, ipv4(SRV, EXT, UDP, &udp(6000, 53)), 0);
    let sent = &out[0];
    // EXT says port unreachable, quoting what it got (from the firewall's address).
    let mut icmp = vec![3, 3, 0, 0, 0, 0, 0, 0];
    icmp.extend_from_slice(&sent[ETH_HLEN..ETH_HLEN + 28]);
    let err = ipv4(EXT, FW_OUT_IP, 1, &icmp);
    let back = rig.through(0, err, 1);
    assert_eq!(back.len(), 1, "{:?}", rig.stats());
    let ip = parse_ipv4(&back[0], ETH_HLEN).unwrap();
    assert_eq!((ip.src, ip.dst), (a(EXT), a(SRV)));
    assert_eq!(checksum(&back[0][ETH_HLEN + 20..]), 0, "ICMP checksum");
    let inner = &back[0][ETH_HLEN + 28..];
    assert_eq!(&inner[12..16], &SRV, "quoted source translated back");
    assert_eq!(checksum(&inner[..20]), 0);
    assert_eq!(rig.stats().nat_icmp_errors, 1);
}

#[test]
fn ping_through_masquerade_keeps_the_identifier_when_free() {
    let mut rig = Rig::new(MASQ);
    let echo = ipv4(SRV, EXT, 1, &[8, 0, 0, 0, 0x12, 0x34, 0, 1, 9, 9]);
    let out = rig.through(1, echo, 0);
    let ip = parse_ipv4(&out[0], ETH_HLEN).unwrap();
    assert_eq!(ip.src, a(FW_OUT_IP));
    assert_eq!(ip.icmp.unwrap().id, 0x1234);
    let reply = ipv4(EXT, FW_OUT_IP, 1, &[0, 0, 0, 0, 0x12, 0x34, 0, 1, 9, 9]);
    let back = rig.through(0, reply, 1);
    assert_eq!(back.len(), 1);
    assert_eq!(parse_ipv4(&back[0], ETH_HLEN).unwrap().dst, a(SRV));
    assert_eq!(checksum(&back[0][ETH_HLEN + 20..]), 0);
}

/// `ct status`, `ct direction`, the tuples, `ct l3proto` and `ct protocol` read the packet's entry,
/// after the DNAT binding rewrote its reply tuple.
const CT_KEYS: &str = "table ip nat {
    chain pre {
        type nat hook prerouting priority dstnat; policy accept;
        ip daddr 192.0.2.1 tcp dport 8080 dnat to 198.51.100.2:80
    }
}
table ip filter {
    chain forward {
        type filter hook forward priority filter; policy drop;
        ct status dnat ct direction original ct protocol tcp ct original proto-dst 8080 ct reply proto-src 80 ct original ip daddr 192.0.2.1 ct reply ip saddr 198.51.100.2 ct l3proto ipv4 ct expiration 0 accept
        ct status dnat ct direction reply ct status seen-reply ct original ip saddr 192.0.2.2 ct reply ip daddr 192.0.2.2 ct expiration > 50s accept
    }
}";

#[test]
fn ct_keys_read_the_entry_of_the_packet() {
    let mut rig = Rig::new(CT_KEYS);
    let fwd = rig.through(
        0,
        ipv4(EXT, FW_OUT_IP, TCP, &tcp(33000, 8080, SYN, 7, 0)),
        1,
    );
    assert_eq!(fwd.len(), 1, "{:?}", rig.stats());
    let back = rig.through(1, ipv4(SRV, EXT, TCP, &tcp(80, 33000, SYN | ACK, 50, 8)), 0);
    assert_eq!(back.len(), 1, "{:?}", rig.stats());
    // Not DNATed: `ct status dnat` fails and the policy drops it.
    let direct = rig.through(0, ipv4(EXT, SRV, TCP, &tcp(33001, 80, SYN, 7, 0)), 1);
    assert!(direct.is_empty());
    assert_eq!(rig.stats().dropped_by_rule, 1);
}

/// `ct mark set` and `ct label set` on the first packet are what later packets of the connection see.
const CT_MARK: &str = "table ip filter {
    chain forward {
        type filter hook forward priority filter; policy drop;
        ct state new udp dport 53 ct mark set 0x2a ct label set 3 accept
        ct state new accept
        ct direction reply ct mark 0x2a ct label 3 accept
    }
}";

#[test]
fn ct_mark_and_label_stay_on_the_connection() {
    let mut rig = Rig::new(CT_MARK);
    assert_eq!(
        rig.through(1, ipv4(SRV, EXT, UDP, &udp(5000, 53)), 0).len(),
        1
    );
    assert_eq!(
        rig.through(0, ipv4(EXT, SRV, UDP, &udp(53, 5000)), 1).len(),
        1
    );
    // another flow without the mark: its reply is dropped
    assert_eq!(
        rig.through(1, ipv4(SRV, EXT, UDP, &udp(5001, 54)), 0).len(),
        1
    );
    assert!(rig
        .through(0, ipv4(EXT, SRV, UDP, &udp(54, 5001)), 1)
        .is_empty());
    let marks: Vec<u32> = rig.entries().iter().map(|c| c.entry.mark).collect();
    assert!(marks.contains(&0x2a) && marks.contains(&0), "{marks:?}");
}

/// `ct count over 2`: a third concurrent connection is refused; one that closes stops counting.
const CT_COUNT: &str = "table ip filter {
    chain forward {
        type filter hook forward priority filter; policy accept;
        ct state new ct count over 2 drop
    }
}";

#[test]
fn ct_count_limits_concurrent_connections() {
    let mut rig = Rig::new(CT_COUNT);
    for p in [40000, 40001] {
        let out = rig.through(1, ipv4(SRV, EXT, TCP, &tcp(p, 80, SYN, 100, 0)), 0);
        assert_eq!(out.len(), 1);
    }
    assert!(rig
        .through(1, ipv4(SRV, EXT, TCP, &tcp(40002, 80, SYN, 100, 0)), 0)
        .is_empty());
    // packets of counted connections are not counted again
    let back = rig.through(
        0,
        ipv4(EXT, SRV, TCP, &tcp(80, 40000, SYN | ACK, 900, 101)),
        1,
    );
    assert_eq!(back.len(), 1);
    // the first one is reset: closed connections leave the count
    const RST: u8 = 0x04;
    let rst = rig.through(
        1,
        ipv4(SRV, EXT, TCP, &tcp(40000, 80, RST | ACK, 101, 901)),
        0,
    );
    assert_eq!(rst.len(), 1);
    let out = rig.through(1, ipv4(SRV, EXT, TCP, &tcp(40003, 80, SYN, 100, 0)), 0);
    assert_eq!(out.len(), 1, "{:?}", rig.stats());
    assert!(rig
        .through(1, ipv4(SRV, EXT, TCP, &tcp(40004, 80, SYN, 100, 0)), 0)
        .is_empty());
}

#[test]
fn dnat_reads_what_the_packet_path_wrote_into_its_map() {
    // nftlb's persistence: a client's backend is remembered in a dynamic map, and dnat follows it
    let mut rig = Rig::new(
        "table ip lb {
            map sticky { type ipv4_addr : ipv4_addr; flags dynamic,timeout; timeout 1m;
                elements = { 192.0.2.9 : 198.51.100.3 }
            }
            chain pick { type filter hook prerouting priority mangle; policy accept;
                tcp dport 8080 update @sticky { ip saddr : 198.51.100.2 }
            }
            chain pre { type nat hook prerouting priority dstnat; policy accept;
                tcp dport { 8080, 8081 } dnat to ip saddr map @sticky
            }
        }",
    );
    // no element for EXT yet on 8081: no rule matches, the packet is the box's (dropped here)
    let none = rig.through(
        0,
        ipv4(EXT, FW_OUT_IP, TCP, &tcp(33001, 8081, SYN, 7, 0)),
        1,
    );
    assert!(none.is_empty());
    // 8080 writes EXT's backend first, and the dnat reads it
    let fwd = rig.through(
        0,
        ipv4(EXT, FW_OUT_IP, TCP, &tcp(33000, 8080, SYN, 7, 0)),
        1,
    );
    assert_eq!(fwd.len(), 1, "{:?}", rig.stats());
    assert_eq!(seen(&fwd[0]), (a(EXT), 33000, a(SRV), 8080));
    // and from then on 8081 finds it too
    let fwd = rig.through(
        0,
        ipv4(EXT, FW_OUT_IP, TCP, &tcp(33002, 8081, SYN, 7, 0)),
        1,
    );
    assert_eq!(fwd.len(), 1, "{:?}", rig.stats());
    assert_eq!(seen(&fwd[0]), (a(EXT), 33002, a(SRV), 8081));
}
