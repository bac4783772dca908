//! Netfilter semantics on the packet path, packet-in → packet-out: hook order by priority across tables,
//! conntrack at -200, accept ending only its base chain, reject replies (ICMP and TCP RST) going out
//! through OUTPUT and POSTROUTING, and the ICMP errors of the routing decision.

use dataplane::icmp::l4_checksum_v4;
use dataplane::wire::{self, checksum, parse_ipv4, ArpRepr, ARP_REPLY, ETH_HLEN};
use dataplane::{Action, Fib, InterfaceConfig, Pipeline, PipelineConfig, PortRole, Route};
use rules::CompiledRuleset;
use std::sync::Arc;

const FW_IN: [u8; 6] = [2, 0, 0, 0, 1, 1];
const FW_OUT: [u8; 6] = [2, 0, 0, 0, 2, 1];
const CLI_MAC: [u8; 6] = [2, 0, 0, 0, 1, 2];
const SRV_MAC: [u8; 6] = [2, 0, 0, 0, 2, 2];
const CLI: [u8; 4] = [192, 0, 2, 2];
const SRV: [u8; 4] = [198, 51, 100, 2];

struct Rig {
    p: Pipeline,
    rs: Arc<CompiledRuleset>,
    now: u64,
    last: Vec<u8>,
}

fn ruleset(src: &str) -> Arc<CompiledRuleset> {
    let ast = rules::parse_ruleset(src, "t.nft").unwrap_or_else(|e| panic!("{e}"));
    Arc::new(rules::compile(&ast).unwrap_or_else(|e| panic!("{e}")))
}

impl Rig {
    fn new(src: &str) -> Rig {
        Rig::with_mtu(src, 1500)
    }
    fn with_mtu(src: &str, mtu: u32) -> Rig {
        Rig::with_config(src, mtu, PipelineConfig::default())
    }
    fn with_config(src: &str, mtu: u32, config: PipelineConfig) -> Rig {
        let ifaces = vec![
            InterfaceConfig {
                name: "fw-cli".into(),
                ifindex: 2,
                mac: FW_IN,
                mtu: 1500,
                ipv4: vec![([192, 0, 2, 1].into(), 24)],
            },
            InterfaceConfig {
                name: "fw-srv".into(),
                ifindex: 3,
                mac: FW_OUT,
                mtu,
                ipv4: vec![([198, 51, 100, 1].into(), 24)],
            },
        ];
        let fib = Arc::new(Fib::new(
            ifaces,
            &[Route {
                dst: [203, 0, 113, 0].into(),
                prefix: 24,
                gateway: Some([198, 51, 100, 254].into()),
                iface: 1,
            }],
        ));
        let roles = vec![
            PortRole {
                kernel_shares: false
            };
            2
        ];
        let mut p = Pipeline::new(fib, roles, &config);
        let rs = ruleset(src);
        p.use_generation(&rs);
        let mut rig = Rig {
            p,
            rs,
            now: 1_000_000_000,
            last: Vec::new(),
        };
        // Both neighbours are known (learned from ARP addressed to us).
        rig.send(0, &arp(CLI_MAC, CLI, [192, 0, 2, 1], FW_IN));
        rig.send(1, &arp(SRV_MAC, SRV, [198, 51, 100, 1], FW_OUT));
        rig.p.take_emitted().for_each(drop);
        rig
    }

    fn send(&mut self, port: usize, frame: &[u8]) -> Action {
        self.now += 1000;
        let mut slot = frame.to_vec();
        slot.resize(frame.len().max(2048), 0);
        let rs = self.rs.clone();
        let a = self
            .p
            .process(&mut slot, frame.len(), port, false, &rs, self.now);
        if let Action::Forward(_) = a {
            self.last = slot[..frame.len()].to_vec();
        }
        a
    }

    fn emitted(&mut self) -> Vec<(usize, Vec<u8>)> {
        self.p.take_emitted().collect()
    }

    fn counter(&self, i: usize) -> u64 {
        self.p.counters[i].packets
    }
}

fn arp(smac: [u8; 6], sip: [u8; 4], tip: [u8; 4], dst: [u8; 6]) -> Vec<u8> {
    let a = ArpRepr {
        op: ARP_REPLY,
        sender_mac: smac,
        sender_ip: sip.into(),
        target_mac: dst,
        target_ip: tip.into(),
    };
    let mut buf = vec![0u8; 60];
    a.emit_frame(smac, dst, &mut buf);
    buf
}

fn ipv4(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src: [u8; 4],
    dst: [u8; 4],
    proto: u8,
    l4: &[u8],
    ttl: u8,
) -> Vec<u8> {
    let mut f = vec![0u8; ETH_HLEN + 20 + l4.len()];
    f[0..6].copy_from_slice(&dst_mac);
    f[6..12].copy_from_slice(&src_mac);
    f[12..14].copy_from_slice(&wire::ETHERTYPE_IPV4.to_be_bytes());
    let ip = &mut f[ETH_HLEN..];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
    ip[6] = 0x40;
    ip[8] = ttl;
    ip[9] = proto;
    ip[12..16].copy_from_slice(&src);
    ip[16..20].copy_from_slice(&dst);
    let c = checksum(&ip[..20]);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    ip[20..].copy_from_slice(l4);
    if proto == 6 || proto == 17 {
        let off = if proto == 6 { 16 } else { 6 };
        let c = l4_checksum_v4(src.into(), dst.into(), proto, &f[ETH_HLEN + 20..]);
        f[ETH_HLEN + 20 + off..ETH_HLEN + 22 + off].copy_from_slice(&c.to_be_bytes());
    }
    f
}

fn tcp(sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let mut t = vec![0u8; 20];
    t[0..2].copy_from_slice(&sport.to_be_bytes());
    t[2..4].copy_from_slice(&dport.to_be_bytes());
    t[4..8].copy_from_slice(&5000u32.to_be_bytes());
    t[12] = 5 << 4;
    t[13] = flags;
    t
}

fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = vec![0u8; 8];
    u[0..2].copy_from_slice(&sport.to_be_bytes());
    u[2..4].copy_from_slice(&dport.to_be_bytes());
    u[4..6].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    u.extend_from_slice(payload);
    u
}

fn cli_tcp(dport: u16, flags: u8, ttl: u8) -> Vec<u8> {
    ipv4(FW_IN, CLI_MAC, CLI, SRV, 6, &tcp(40000, dport, flags), ttl)
}

#[test]
fn priorities_order_chains_across_tables_and_accept_ends_only_its_chain() {
    // b's chain (priority -10) runs first and accepts; a's (0) still runs and drops port 81;
    // c's at 10 never sees port 81 but counts port 80.
    let mut rig = Rig::new(
        "table ip a { chain f { type filter hook forward priority 0; tcp dport 81 counter drop; } }\n\
         table ip b { chain f { type filter hook forward priority -10; counter accept; } }\n\
         table inet c { chain f { type filter hook forward priority 10; counter; } }\n",
    );
    assert_eq!(
        rig.send(0, &cli_tcp(80, wire::TCP_SYN, 64)),
        Action::Forward(1)
    );
    assert_eq!(rig.send(0, &cli_tcp(81, wire::TCP_SYN, 64)), Action::Drop);
    // counter slots: a (81 drop), b (accept), c
    assert_eq!((rig.counter(0), rig.counter(1), rig.counter(2)), (1, 2, 1));
}

#[test]
fn chains_before_conntrack_see_no_ct_state() {
    let mut rig = Rig::new(
        "table ip raw { chain p { type filter hook prerouting priority raw; ct state new counter; ct state invalid counter; } }\n\
         table ip f { chain p { type filter hook prerouting priority -200; ct state new counter; } }\n",
    );
    rig.send(0, &cli_tcp(80, wire::TCP_SYN, 64));
    assert_eq!((rig.counter(0), rig.counter(1), rig.counter(2)), (0, 1, 1));
}

#[test]
fn reject_sends_icmp_port_unreachable_through_output_and_postrouting() {
    let mut rig = Rig::new(
        "table ip f {\n\
           chain forward { type filter hook forward priority 0; tcp dport 22 reject; }\n\
           chain out { type filter hook output priority 0; icmp type destination-unreachable counter; }\n\
           chain post { type filter hook postrouting priority 0; oifname \"fw-cli\" counter; }\n\
         }\n",
    );
    let syn = cli_tcp(22, wire::TCP_SYN, 64);
    assert_eq!(rig.send(0, &syn), Action::Drop);
    let out = rig.emitted();
    assert_eq!(out.len(), 1);
    let (port, f) = &out[0];
    assert_eq!(*port, 0);
    assert_eq!((&f[0..6], &f[6..12]), (&CLI_MAC[..], &FW_IN[..]));
    let ip = parse_ipv4(f, ETH_HLEN).unwrap();
    assert_eq!(ip.src, std::net::Ipv4Addr::new(192, 0, 2, 1));
    assert_eq!(ip.dst, std::net::Ipv4Addr::from(CLI));
    let icmp = ip.icmp.unwrap();
    assert_eq!((icmp.ty, icmp.code), (3, 3));
    // the quote is the packet as FORWARD saw it: TTL already decremented
    assert_eq!(f[ETH_HLEN + 28 + 8], 63);
    assert_eq!(
        &f[ETH_HLEN + 28 + 12..ETH_HLEN + 28 + 20],
        &syn[ETH_HLEN + 12..ETH_HLEN + 20]
    );
    assert_eq!((rig.counter(0), rig.counter(1)), (1, 1));
    assert_eq!(rig.p.stats.icmp_errors_sent, 1);
}

#[test]
fn reject_with_tcp_reset_and_icmpx_codes() {
    let mut rig = Rig::new(
        "table inet f { chain forward { type filter hook forward priority 0;\n\
           tcp dport 23 reject with tcp reset\n\
           tcp dport 24 reject with icmpx admin-prohibited\n\
           udp dport 53 reject with icmp host-prohibited\n } }\n",
    );
    assert_eq!(rig.send(0, &cli_tcp(23, wire::TCP_SYN, 64)), Action::Drop);
    let out = rig.emitted();
    let ip = parse_ipv4(&out[0].1, ETH_HLEN).unwrap();
    assert_eq!((ip.src, ip.dst), (SRV.into(), CLI.into()));
    assert_eq!(
        (ip.sport, ip.dport, ip.tcp_flags),
        (23, 40000, wire::TCP_RST | wire::TCP_ACK)
    );
    rig.send(0, &cli_tcp(24, wire::TCP_SYN, 64));
    let ip = parse_ipv4(&rig.emitted()[0].1, ETH_HLEN).unwrap();
    assert_eq!(ip.icmp.map(|i| (i.ty, i.code)), Some((3, 13)));
    rig.send(
        0,
        &ipv4(FW_IN, CLI_MAC, CLI, SRV, 17, &udp(5000, 53, b"q"), 64),
    );
    let ip = parse_ipv4(&rig.emitted()[0].1, ETH_HLEN).unwrap();
    assert_eq!(ip.icmp.map(|i| (i.ty, i.code)), Some((3, 10)));
    // an RST is never answered
    assert_eq!(rig.send(0, &cli_tcp(23, wire::TCP_RST, 64)), Action::Drop);
    assert!(rig.emitted().is_empty());
    assert_eq!(rig.p.stats.reject_no_reply, 1);
}

#[test]
fn routing_errors_answer_with_icmp_like_the_kernel() {
    let mut rig = Rig::with_mtu(
        "table ip f { chain c { type filter hook forward priority 0; } }",
        1400,
    );
    // TTL 1: time exceeded, quoting the packet before any decrement
    assert_eq!(rig.send(0, &cli_tcp(80, wire::TCP_SYN, 1)), Action::Drop);
    let out = rig.emitted();
    let ip = parse_ipv4(&out[0].1, ETH_HLEN).unwrap();
    assert_eq!(ip.icmp.map(|i| (i.ty, i.code)), Some((11, 0)));
    assert_eq!(out[0].1[ETH_HLEN + 28 + 8], 1);
    // no route: net unreachable
    let lost = ipv4(FW_IN, CLI_MAC, CLI, [8, 8, 8, 8], 17, &udp(1, 2, &[]), 64);
    assert_eq!(rig.send(0, &lost), Action::Drop);
    let ip = parse_ipv4(&rig.emitted()[0].1, ETH_HLEN).unwrap();
    assert_eq!(ip.icmp.map(|i| (i.ty, i.code)), Some((3, 0)));
    // too big with DF: fragmentation needed carrying the next-hop MTU
    let big = ipv4(FW_IN, CLI_MAC, CLI, SRV, 17, &udp(1, 2, &[0; 1450]), 64);
    assert_eq!(rig.send(0, &big), Action::Drop);
    let e = &rig.emitted()[0].1;
    let ip = parse_ipv4(e, ETH_HLEN).unwrap();
    assert_eq!(ip.icmp.map(|i| (i.ty, i.code)), Some((3, 4)));
    assert_eq!(&e[ETH_HLEN + 26..ETH_HLEN + 28], &1400u16.to_be_bytes());
    // an ICMP error is never answered with one
    let err = ipv4(FW_IN, CLI_MAC, CLI, SRV, 1, &[3, 3, 0, 0, 0, 0, 0, 0], 1);
    rig.send(0, &err);
    assert!(rig.emitted().is_empty());
    assert_eq!(rig.p.stats.icmp_errors_sent, 3);
}

#[test]
fn icmp_errors_are_rate_limited_per_destination() {
    let mut rig =
        Rig::new("table ip f { chain c { type filter hook forward priority 0; reject; } }");
    for i in 0..10 {
        rig.send(0, &cli_tcp(1000 + i, wire::TCP_SYN, 64));
    }
    assert_eq!(rig.emitted().len(), 6);
    assert_eq!(rig.p.stats.icmp_rate_limited, 4);
    rig.now += 1_000_000_000;
    rig.send(0, &cli_tcp(2000, wire::TCP_SYN, 64));
    assert_eq!(rig.emitted().len(), 1);
}

#[test]
fn forward_rules_see_the_decremented_ttl() {
    let mut rig = Rig::new("table ip f { chain c { type filter hook forward priority 0; ip ttl 63 counter; ip ttl 64 counter; } }");
    rig.send(0, &cli_tcp(80, wire::TCP_SYN, 64));
    assert_eq!((rig.counter(0), rig.counter(1)), (1, 0));
}

#[test]
fn log_statements_write_the_kernels_line_at_each_hook_and_limit_throttles() {
    let mut rig = Rig::new(
        "table ip f {\n\
           chain pre { type filter hook prerouting priority 0; tcp dport 22 log prefix \"PRE \" level info; }\n\
           chain forward { type filter hook forward priority 0; tcp dport 22 limit rate 1/minute burst 1 packets log prefix \"ssh: \" drop; }\n\
           chain post { type filter hook postrouting priority 0; meta mark set 7 log; }\n\
         }\n",
    );
    assert_eq!(rig.send(0, &cli_tcp(22, wire::TCP_SYN, 64)), Action::Drop);
    let logs: Vec<(u8, String)> = rig.p.trace.logs.drain(..).collect();
    assert_eq!(logs.len(), 2, "{logs:?}");
    assert_eq!(logs[0].0, 6);
    assert!(
        logs[0].1.starts_with(
            "PRE IN=fw-cli OUT= MAC=02:00:00:00:01:01:02:00:00:00:01:02:08:00 SRC=192.0.2.2 DST=198.51.100.2 LEN=40 "
        ),
        "{}",
        logs[0].1
    );
    assert!(logs[0].1.contains(" TTL=64 "), "{}", logs[0].1);
    assert_eq!(logs[1].0, 4);
    assert!(
        logs[1].1.starts_with("ssh: IN=fw-cli OUT=fw-srv MAC=")
            && logs[1].1.contains(" TTL=63 ")
            && logs[1]
                .1
                .ends_with("PROTO=TCP SPT=40000 DPT=22 WINDOW=0 RES=0x00 SYN URGP=0 "),
        "{}",
        logs[1].1
    );
    // over the limit: the rule does not match, so nothing logs and the packet goes on
    assert_eq!(
        rig.send(0, &cli_tcp(22, wire::TCP_SYN, 64)),
        Action::Forward(1)
    );
    let logs: Vec<(u8, String)> = rig.p.trace.logs.drain(..).collect();
    assert_eq!(logs.len(), 2, "{logs:?}");
    assert!(
        logs[1].1.starts_with("IN=fw-cli OUT=fw-srv "),
        "{}",
        logs[1].1
    );
    assert!(logs[1].1.ends_with(" MARK=0x7 "), "{}", logs[1].1);
}

#[test]
fn a_packet_sent_back_out_of_its_interface_earns_its_sender_a_limited_redirect() {
    let config = PipelineConfig {
        send_redirects: vec![true, true],
        ..Default::default()
    };
    let mut r = Rig::with_config("", 1500, config);
    r.p.add_static_neighbour(1, [198, 51, 100, 254].into(), [2, 0, 0, 0, 2, 0xfe]);
    let far = [203, 0, 113, 5];
    let from_srv = |sport| ipv4(FW_OUT, SRV_MAC, SRV, far, 17, &udp(sport, 53, b"x"), 64);
    assert!(matches!(r.send(1, &from_srv(1000)), Action::Forward(1)));
    let out = r.emitted();
    assert_eq!(out.len(), 1);
    let (port, f) = &out[0];
    assert_eq!(*port, 1);
    let icmp = &f[ETH_HLEN + 20..];
    assert_eq!((icmp[0], icmp[1]), (5, 1));
    // the gateway to use, then the packet as it left (TTL already decremented)
    assert_eq!(&icmp[4..8], &[198, 51, 100, 254]);
    assert_eq!(icmp[8 + 8], 63);
    assert_eq!(&f[ETH_HLEN + 12..ETH_HLEN + 16], &[198, 51, 100, 1]);
    assert_eq!(checksum(icmp), 0);
    // the next one within 40 ms is not redirected (20 ms << 1), one after it is
    r.send(1, &from_srv(1001));
    assert!(r.emitted().is_empty());
    r.now += 41_000_000;
    r.send(1, &from_srv(1002));
    assert_eq!(r.emitted().len(), 1);
    // 9 in all, then silence until the sender stops for 20.48 s
    for i in 0..20u16 {
        r.now += 2_000_000_000;
        r.send(1, &from_srv(1100 + i));
    }
    assert_eq!(r.p.stats.icmp_redirects_sent, 9);
    r.now += 21_000_000_000;
    r.send(1, &from_srv(1200));
    assert_eq!(r.p.stats.icmp_redirects_sent, 10);
    // from the other side, or with redirects off: none
    r.send(
        0,
        &ipv4(FW_IN, CLI_MAC, CLI, far, 17, &udp(1, 53, b"x"), 64),
    );
    assert_eq!(r.p.stats.icmp_redirects_sent, 10);
    let mut off = Rig::new("");
    off.p
        .add_static_neighbour(1, [198, 51, 100, 254].into(), [2, 0, 0, 0, 2, 0xfe]);
    off.send(1, &from_srv(1000));
    assert_eq!(off.p.stats.icmp_redirects_sent, 0);
}

#[test]
fn a_datagram_too_big_for_the_link_waits_for_its_neighbour_in_pieces() {
    // conntrack in use: fragments are reassembled first, and the whole leaves in the pieces it came in
    let mut r = Rig::new(
        "table ip t { chain f { type filter hook forward priority 0; ct state new accept; } }",
    );
    let gw = [198, 51, 100, 254];
    let gw_mac = [2, 0, 0, 0, 2, 0xfe];
    let mut big = ipv4(
        FW_IN,
        CLI_MAC,
        CLI,
        [203, 0, 113, 5],
        17,
        &udp(1, 53, &[7; 2500]),
        64,
    );
    dataplane::testkit::clear_df(&mut big);
    let ip = parse_ipv4(&big, ETH_HLEN).unwrap();
    let pieces = wire::fragment_ipv4(&big, &ip, 1000).unwrap();
    assert_eq!(pieces.len(), 3);
    for p in &pieces {
        assert_eq!(r.send(0, p), Action::Consumed);
    }
    // the gateway is not resolved yet: only an ARP request leaves
    let asked = r.emitted();
    assert_eq!(asked.len(), 1);
    assert_eq!(&asked[0].1[12..14], &[0x08, 0x06]);
    r.send(1, &arp(gw_mac, gw, [198, 51, 100, 1], FW_OUT));
    let out = r.emitted();
    assert_eq!(out.len(), 3, "{:?}", r.p.stats);
    for ((port, f), p) in out.iter().zip(&pieces) {
        assert_eq!(*port, 1);
        assert_eq!(&f[0..6], &gw_mac);
        assert_eq!(f.len() - ETH_HLEN, p.len() - ETH_HLEN);
        assert!(f.len() - ETH_HLEN <= 1500);
    }
}
