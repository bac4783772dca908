//! IPv6 packet-in → packet-out: neighbour discovery (solicit, learn, answer, give up), forwarding with
//! the hop limit decremented, ip6 and inet base chains at every hook by priority, conntrack states of
//! IPv6 flows, `reject` as ICMPv6 and TCP RST, and the ICMPv6 errors of the routing decision
//! (`ip6_route_input`/`ip6_forward`: no route, hop limit, scope, packet too big).

use dataplane::ipv6::{
    self, l4_checksum_v6, parse_ipv6, Ipv6Info, NdRepr, IPPROTO_ICMPV6, NA_OVERRIDE, NA_ROUTER,
    NA_SOLICITED, ND_NEIGHBOUR_ADVERT, ND_NEIGHBOUR_SOLICIT,
};
use dataplane::testkit::{
    fix_l4_checksum_v6, icmp6_echo, ipv6_frame, ipv6_frame_ext, lab_fib, tcp_header, udp_datagram,
    with_macs, CLI6, CLI_MAC, FW_IN, FW_IN6, FW_OUT, FW_OUT6, SRV6, SRV_MAC,
};
use dataplane::wire::{self, ETH_HLEN};
use dataplane::{Action, Pipeline, PipelineConfig, PortRole, Route6};
use rules::CompiledRuleset;
use std::net::Ipv6Addr;
use std::sync::Arc;

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

const FAR: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 3, 0, 0, 0, 0, 5);
const GW6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 0xfe);

impl Rig {
    /// The lab's fw with 2001:db8:3::/48 via 2001:db8:2::fe; no neighbours known.
    fn bare(src: &str, srv_mtu: u32) -> Rig {
        Rig::bare_with(src, srv_mtu, PipelineConfig::default())
    }

    fn bare_with(src: &str, srv_mtu: u32, config: PipelineConfig) -> Rig {
        let mut fib = (*lab_fib()).clone();
        fib.interfaces[1].mtu = srv_mtu;
        fib.add_route6(Route6 {
            dst: "2001:db8:3::".parse().unwrap(),
            prefix: 48,
            gateway: Some(GW6),
            iface: 1,
        });
        let roles = vec![
            PortRole {
                kernel_shares: false
            };
            2
        ];
        let mut p = Pipeline::new(Arc::new(fib), roles, &config);
        let rs = ruleset(src);
        p.use_generation(&rs);
        Rig {
            p,
            rs,
            now: 1_000_000_000,
            last: Vec::new(),
        }
    }

    /// As `bare`, with cli, srv and the gateway known as static neighbours.
    fn new(src: &str) -> Rig {
        let mut rig = Rig::bare(src, 1500);
        rig.p.add_static_neighbour6(0, CLI6, CLI_MAC);
        rig.p.add_static_neighbour6(1, SRV6, SRV_MAC);
        rig.p.add_static_neighbour6(1, GW6, [2, 0, 0, 0, 2, 0xfe]);
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

/// An IPv6 frame from cli's side (to fw's MAC) with its transport checksum filled in.
fn from_cli(src: Ipv6Addr, dst: Ipv6Addr, next: u8, l4: &[u8], hl: u8) -> Vec<u8> {
    let mut f = with_macs(FW_IN, CLI_MAC, ipv6_frame(src, dst, next, l4, hl));
    fix_l4_checksum_v6(&mut f);
    f
}

fn from_srv(src: Ipv6Addr, dst: Ipv6Addr, next: u8, l4: &[u8], hl: u8) -> Vec<u8> {
    let mut f = with_macs(FW_OUT, SRV_MAC, ipv6_frame(src, dst, next, l4, hl));
    fix_l4_checksum_v6(&mut f);
    f
}

fn syn(dport: u16) -> Vec<u8> {
    from_cli(CLI6, SRV6, 6, &tcp_header(40000, dport, wire::TCP_SYN), 64)
}

fn parsed(f: &[u8]) -> Ipv6Info {
    parse_ipv6(f, ETH_HLEN).expect("an IPv6 frame")
}

/// The transport checksum of a frame the appliance built checks out over the pseudo-header.
fn checks_out(f: &[u8]) -> bool {
    let ip = parsed(f);
    let th = ip.th_off.unwrap();
    l4_checksum_v6(ip.src, ip.dst, ip.proto, &f[th..ip.nh_off + ip.total_len]) == 0
}

/// ICMPv6 type and code of an emitted frame, after checking its addresses and checksum.
fn icmp6_of(f: &[u8], src: Ipv6Addr, dst: Ipv6Addr) -> (u8, u8) {
    let ip = parsed(f);
    assert_eq!((ip.src, ip.dst, ip.proto), (src, dst, IPPROTO_ICMPV6));
    assert_eq!(ip.hop_limit, 64);
    assert!(checks_out(f), "bad ICMPv6 checksum");
    let i = ip.icmp.unwrap();
    (i.ty, i.code)
}

#[test]
fn neighbour_discovery_resolves_the_next_hop_and_releases_the_queued_packet() {
    let mut rig = Rig::bare(
        "table ip6 f { chain c { type filter hook forward priority 0; } }",
        1500,
    );
    assert_eq!(rig.send(0, &syn(80)), Action::Consumed);
    let out = rig.emitted();
    assert_eq!(out.len(), 1, "one neighbour solicitation");
    let (port, ns) = &out[0];
    assert_eq!(*port, 1);
    // to the solicited-node group of srv, from fw's address on that link
    let (group, mac) = ipv6::solicited_node(SRV6);
    assert_eq!((&ns[0..6], &ns[6..12]), (&mac[..], &FW_OUT[..]));
    let ip = parsed(ns);
    assert_eq!((ip.src, ip.dst, ip.hop_limit), (FW_OUT6, group, 255));
    let nd = NdRepr::parse(ns, &ip).unwrap();
    assert_eq!(
        (nd.ty, nd.target, nd.lladdr),
        (ND_NEIGHBOUR_SOLICIT, SRV6, Some(FW_OUT))
    );
    // a second packet waits behind the first without another solicitation
    assert_eq!(rig.send(0, &syn(81)), Action::Consumed);
    assert!(rig.emitted().is_empty());
    // srv answers; both packets leave, hop limit 63, addressed to srv's MAC
    let na = NdRepr {
        ty: ND_NEIGHBOUR_ADVERT,
        target: SRV6,
        lladdr: Some(SRV_MAC),
        flags: NA_SOLICITED | NA_OVERRIDE,
    }
    .emit_frame(SRV_MAC, FW_OUT, SRV6, FW_OUT6);
    assert_eq!(rig.send(1, &na), Action::Consumed);
    let out = rig.emitted();
    assert_eq!(out.len(), 2);
    for ((port, f), dport) in out.iter().zip([80, 81]) {
        assert_eq!(*port, 1);
        assert_eq!((&f[0..6], &f[6..12]), (&SRV_MAC[..], &FW_OUT[..]));
        let ip = parsed(f);
        assert_eq!(
            (ip.src, ip.dst, ip.hop_limit, ip.dport),
            (CLI6, SRV6, 63, dport)
        );
        assert!(checks_out(f));
    }
    // now known: forwarded directly
    assert_eq!(rig.send(0, &syn(82)), Action::Forward(1));
    assert_eq!(rig.p.stats.ndp_learned, 1);
    assert_eq!(rig.p.stats.forwarded6, 3);
}

#[test]
fn an_unanswered_solicitation_gives_address_unreachable() {
    let mut rig = Rig::bare("", 1500);
    rig.p.add_static_neighbour6(0, CLI6, CLI_MAC);
    let probe = syn(80);
    rig.send(0, &probe);
    assert_eq!(rig.emitted().len(), 1);
    let rs = rig.rs.clone();
    let mut errors = Vec::new();
    let mut solicitations = 0;
    for s in 1..6 {
        rig.p.on_timer(rig.now + s * 1_100_000_000, &rs);
        for (port, f) in rig.emitted() {
            match parsed(&f).icmp.map(|i| i.ty) {
                Some(ND_NEIGHBOUR_SOLICIT) => solicitations += 1,
                _ => errors.push((port, f)),
            }
        }
    }
    assert!(solicitations >= 2, "retransmitted: {solicitations}");
    assert_eq!(errors.len(), 1);
    let (port, e) = &errors[0];
    assert_eq!(*port, 0);
    // ICMPV6_DEST_UNREACH / ICMPV6_ADDR_UNREACH from fw's address facing cli
    assert_eq!(icmp6_of(e, FW_IN6, CLI6), (1, 3));
    assert_eq!(rig.p.stats.neigh_failed, 1);
}

#[test]
fn answers_solicitations_for_its_own_addresses_and_learns_the_sender() {
    let mut rig = Rig::bare("", 1500);
    let ns = NdRepr {
        ty: ND_NEIGHBOUR_SOLICIT,
        target: FW_IN6,
        lladdr: Some(CLI_MAC),
        flags: 0,
    };
    let (group, mac) = ipv6::solicited_node(FW_IN6);
    let f = ns.emit_frame(CLI_MAC, mac, CLI6, group);
    assert_eq!(rig.send(0, &f), Action::Consumed);
    let out = rig.emitted();
    assert_eq!(out.len(), 1);
    let (port, na) = &out[0];
    assert_eq!(*port, 0);
    assert_eq!((&na[0..6], &na[6..12]), (&CLI_MAC[..], &FW_IN[..]));
    let ip = parsed(na);
    assert_eq!((ip.src, ip.dst, ip.hop_limit), (FW_IN6, CLI6, 255));
    assert!(checks_out(na));
    let nd = NdRepr::parse(na, &ip).unwrap();
    assert_eq!(nd.ty, ND_NEIGHBOUR_ADVERT);
    assert_eq!(nd.target, FW_IN6);
    assert_eq!(nd.lladdr, Some(FW_IN));
    assert_eq!(nd.flags, NA_ROUTER | NA_SOLICITED | NA_OVERRIDE);
    // a solicitation for somebody else's address is not answered
    let other = NdRepr {
        target: "2001:db8:1::77".parse().unwrap(),
        ..ns
    };
    let (g2, m2) = ipv6::solicited_node(other.target);
    rig.send(0, &other.emit_frame(CLI_MAC, m2, CLI6, g2));
    assert!(rig.emitted().is_empty());
    // one with a hop limit other than 255 is invalid
    let mut low = f.clone();
    low[ETH_HLEN + 7] = 254;
    rig.send(0, &low);
    assert!(rig.emitted().is_empty());
    assert_eq!(rig.p.stats.ndp_bad, 1);
    // cli was learned from the solicitation: a reply to it needs no solicitation of its own
    rig.p.add_static_neighbour6(1, SRV6, SRV_MAC);
    let back = from_srv(SRV6, CLI6, 17, &udp_datagram(53, 5000, 4), 64);
    assert_eq!(rig.send(1, &back), Action::Forward(0));
    assert_eq!(&rig.last[0..6], &CLI_MAC[..]);
}

#[test]
fn ip6_and_inet_chains_run_by_priority_at_every_hook_and_ip_chains_never_see_ipv6() {
    let mut rig = Rig::new(
        "table ip v4 {\n\
           chain f { type filter hook forward priority -50; counter; }\n\
         }\n\
         table ip6 a {\n\
           chain pre { type filter hook prerouting priority 0; counter; }\n\
           chain f1 { type filter hook forward priority -10; counter; accept; }\n\
           chain post { type filter hook postrouting priority 0; oifname \"fw-srv\" counter; }\n\
         }\n\
         table inet b {\n\
           chain f2 { type filter hook forward priority 10; ip6 hoplimit 63 counter; meta nfproto ipv6 counter; }\n\
           chain raw { type filter hook prerouting priority -300; ct state invalid counter; }\n\
           chain f3 { type filter hook forward priority 20; tcp dport 9 drop; }\n\
         }\n",
    );
    assert_eq!(rig.send(0, &syn(80)), Action::Forward(1));
    // counters in statement order: v4 f; a pre, f1, post; b f2 (two), raw
    let c: Vec<u64> = (0..7).map(|i| rig.counter(i)).collect();
    assert_eq!(c, vec![0, 1, 1, 1, 1, 1, 1], "accept in f1 ends only f1");
    assert_eq!(rig.send(0, &syn(9)), Action::Drop);
    assert_eq!(rig.p.stats.dropped_by_rule, 1);
    // the post chain saw only the forwarded packet
    assert_eq!(rig.counter(3), 1);
}

#[test]
fn input_chains_run_for_the_box_when_no_kernel_shares_the_port() {
    let mut rig = Rig::new(
        "table inet f { chain i { type filter hook input priority 0; meta l4proto ipv6-icmp counter; } }",
    );
    let ping = from_cli(CLI6, FW_IN6, IPPROTO_ICMPV6, &icmp6_echo(7, 1), 64);
    assert_eq!(rig.send(0, &ping), Action::Drop);
    assert_eq!(rig.counter(0), 1);
    assert_eq!(rig.p.stats.local_no_path, 1);
}

#[test]
fn conntrack_tracks_ipv6_flows_and_related_icmpv6_errors() {
    let mut rig = Rig::new(
        "table ip6 f { chain c { type filter hook forward priority 0;\n\
           ct state new counter\n\
           ct state established counter\n\
           ct state related counter\n\
           ct state invalid counter\n } }",
    );
    assert_eq!(rig.send(0, &syn(80)), Action::Forward(1));
    let mut synack = tcp_header(80, 40000, wire::TCP_SYN | wire::TCP_ACK);
    synack[8..12].copy_from_slice(&1u32.to_be_bytes());
    let reply = from_srv(SRV6, CLI6, 6, &synack, 64);
    assert_eq!(rig.send(1, &reply), Action::Forward(0));
    // a packet-too-big from a router behind srv about cli's flow is related
    let mut quote = syn(80)[ETH_HLEN..].to_vec();
    quote[7] = 60;
    let mut ptb = vec![2, 0, 0, 0, 0, 0, 5, 0];
    ptb.extend_from_slice(&quote);
    let err = from_srv(GW6, CLI6, IPPROTO_ICMPV6, &ptb, 64);
    assert_eq!(rig.send(1, &err), Action::Forward(0));
    // a SYN-ACK nobody asked for is invalid
    let stray = from_srv(
        SRV6,
        CLI6,
        6,
        &tcp_header(81, 40001, wire::TCP_SYN | wire::TCP_ACK),
        64,
    );
    rig.send(1, &stray);
    let c: Vec<u64> = (0..4).map(|i| rig.counter(i)).collect();
    assert_eq!(c, vec![1, 1, 1, 1]);
    assert_eq!(rig.p.conntrack6.len(), 1);
    assert_eq!(rig.p.conntrack.len(), 0);
}

#[test]
fn reject_answers_with_icmpv6_or_a_tcp_reset_with_correct_checksums() {
    let mut rig = Rig::new(
        "table inet f { chain forward { type filter hook forward priority 0;\n\
           tcp dport 22 reject\n\
           tcp dport 23 reject with tcp reset\n\
           tcp dport 24 reject with icmpx admin-prohibited\n\
           tcp dport 25 reject with icmpv6 addr-unreachable\n\
           udp dport 53 reject with icmp host-prohibited\n\
           udp dport 54 reject\n } }\n\
         table ip6 o { chain out { type filter hook output priority 0; icmpv6 type destination-unreachable counter; }\n\
           chain post { type filter hook postrouting priority 0; oifname \"fw-cli\" counter; } }",
    );
    assert_eq!(rig.send(0, &syn(22)), Action::Drop);
    let out = rig.emitted();
    assert_eq!(out.len(), 1);
    let (port, e) = &out[0];
    assert_eq!(*port, 0);
    assert_eq!((&e[0..6], &e[6..12]), (&CLI_MAC[..], &FW_IN[..]));
    // port unreachable, from fw's address facing cli (srv6 is not the box's)
    assert_eq!(icmp6_of(e, FW_IN6, CLI6), (1, 4));
    // the quote is the packet as FORWARD saw it: hop limit already decremented
    let q = ETH_HLEN + 48;
    assert_eq!(e[q + 7], 63);
    assert_eq!(&e[q + 8..q + 40], &syn(22)[ETH_HLEN + 8..ETH_HLEN + 40]);
    assert_eq!((rig.counter(0), rig.counter(1)), (1, 1));

    assert_eq!(rig.send(0, &syn(23)), Action::Drop);
    let rst = &rig.emitted()[0].1;
    let ip = parsed(rst);
    assert_eq!(
        (ip.src, ip.dst, ip.sport, ip.dport),
        (SRV6, CLI6, 23, 40000)
    );
    assert_eq!(ip.tcp_flags, wire::TCP_RST | wire::TCP_ACK);
    assert!(checks_out(rst));
    // a SYN of sequence 0 is acknowledged as 1
    assert_eq!(
        &rst[ETH_HLEN + 40 + 8..ETH_HLEN + 40 + 12],
        &1u32.to_be_bytes()
    );

    rig.send(0, &syn(24));
    assert_eq!(icmp6_of(&rig.emitted()[0].1, FW_IN6, CLI6), (1, 1));
    rig.send(0, &syn(25));
    assert_eq!(icmp6_of(&rig.emitted()[0].1, FW_IN6, CLI6), (1, 3));
    // `reject with icmp` matches IPv4 only: the IPv6 datagram goes on to the next rule
    let dns = from_cli(CLI6, SRV6, 17, &udp_datagram(5000, 53, 4), 64);
    assert_eq!(rig.send(0, &dns), Action::Forward(1));
    // no reply about a datagram with a bad checksum (reject6_csum_ok), the packet is still dropped
    let mut bad = from_cli(CLI6, SRV6, 17, &udp_datagram(5000, 54, 4), 64);
    bad[ETH_HLEN + 40 + 6] ^= 0x55;
    assert_eq!(rig.send(0, &bad), Action::Drop);
    assert!(rig.emitted().is_empty());
    // an RST is never answered
    let rst_in = from_cli(CLI6, SRV6, 6, &tcp_header(40000, 23, wire::TCP_RST), 64);
    assert_eq!(rig.send(0, &rst_in), Action::Drop);
    assert!(rig.emitted().is_empty());
    assert_eq!(rig.p.stats.reject_no_reply, 2);
}

#[test]
fn routing_errors_answer_with_icmpv6_like_ip6_forward() {
    let mut rig = Rig::bare(
        "table ip6 f { chain c { type filter hook forward priority 0; counter; } }",
        1400,
    );
    rig.p.add_static_neighbour6(0, CLI6, CLI_MAC);
    rig.p.add_static_neighbour6(1, SRV6, SRV_MAC);
    // hop limit 1: time exceeded, quoting the packet undecremented; FORWARD never sees it
    let h1 = from_cli(CLI6, SRV6, 6, &tcp_header(40000, 80, wire::TCP_SYN), 1);
    assert_eq!(rig.send(0, &h1), Action::Drop);
    let e = &rig.emitted()[0].1;
    assert_eq!(icmp6_of(e, FW_IN6, CLI6), (3, 0));
    assert_eq!(e[ETH_HLEN + 48 + 7], 1);
    // no route: destination unreachable, no route
    let lost: Ipv6Addr = "2001:db8:99::1".parse().unwrap();
    rig.now += 1_000_000_000;
    assert_eq!(
        rig.send(0, &from_cli(CLI6, lost, 17, &udp_datagram(1, 2, 0), 64)),
        Action::Drop
    );
    assert_eq!(icmp6_of(&rig.emitted()[0].1, FW_IN6, CLI6), (1, 0));
    // too big for the 1400-byte link: packet too big carrying the MTU, never rate limited
    let big = from_cli(CLI6, SRV6, 17, &udp_datagram(1, 2, 1400), 64);
    for _ in 0..10 {
        assert_eq!(rig.send(0, &big), Action::Drop);
        let out = rig.emitted();
        assert_eq!(out.len(), 1);
        let e = &out[0].1;
        assert_eq!(icmp6_of(e, FW_IN6, CLI6), (2, 0));
        assert_eq!(&e[ETH_HLEN + 44..ETH_HLEN + 48], &1400u32.to_be_bytes());
        // the error fits in the IPv6 minimum MTU
        assert_eq!(e.len() - ETH_HLEN, 1280);
    }
    // exactly the MTU passes
    let fits = from_cli(CLI6, SRV6, 17, &udp_datagram(1, 2, 1400 - 48), 64);
    assert_eq!(rig.send(0, &fits), Action::Forward(1));
    // a link-local source is not forwarded off its link: beyond scope of source address
    let ll: Ipv6Addr = "fe80::2".parse().unwrap();
    rig.p.add_static_neighbour6(0, ll, CLI_MAC);
    rig.now += 1_000_000_000;
    let scoped = from_cli(ll, SRV6, 17, &udp_datagram(1, 2, 0), 64);
    assert_eq!(rig.send(0, &scoped), Action::Drop);
    let out = rig.emitted();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, 0);
    let ip = parsed(&out[0].1);
    assert_eq!(ip.dst, ll);
    assert_eq!(ip.icmp.map(|i| (i.ty, i.code)), Some((1, 2)));
    // an ICMPv6 error is never answered with one
    let mut quote = h1[ETH_HLEN..].to_vec();
    quote.truncate(48);
    let mut err = vec![1, 4, 0, 0, 0, 0, 0, 0];
    err.extend_from_slice(&quote);
    rig.send(0, &from_cli(CLI6, lost, IPPROTO_ICMPV6, &err, 64));
    assert!(rig.emitted().is_empty());
    // only the packet that fit reached FORWARD
    assert_eq!(rig.counter(0), 1);
    assert_eq!(rig.p.stats.drop_hop_limit, 1);
    assert_eq!(rig.p.stats.drop_too_big6, 10);
}

#[test]
fn icmpv6_errors_are_rate_limited_per_destination_by_prefix_length() {
    let mut rig =
        Rig::new("table ip6 f { chain c { type filter hook forward priority 0; reject; } }");
    for i in 0..10 {
        rig.send(
            0,
            &from_cli(CLI6, SRV6, 17, &udp_datagram(1000 + i, 9, 0), 64),
        );
    }
    // burst 6 per destination
    assert_eq!(rig.emitted().len(), 6);
    assert_eq!(rig.p.stats.icmp_rate_limited, 4);
    // cli is reached by a /64: one token per 1 s >> ((128 - 64) >> 5) = 250 ms
    rig.now += 260_000_000;
    rig.send(0, &from_cli(CLI6, SRV6, 17, &udp_datagram(2000, 9, 0), 64));
    rig.send(0, &from_cli(CLI6, SRV6, 17, &udp_datagram(2001, 9, 0), 64));
    assert_eq!(rig.emitted().len(), 1);
}

#[test]
fn the_icmpv6_sysctls_decide_the_limit_not_the_ipv4_ones() {
    let reject = "table ip6 f { chain c { type filter hook forward priority 0; reject; } }";
    let burst = |config: PipelineConfig| {
        let mut rig = Rig::bare_with(reject, 1500, config);
        rig.p.add_static_neighbour6(0, CLI6, CLI_MAC);
        rig.p.add_static_neighbour6(1, SRV6, SRV_MAC);
        for i in 0..10 {
            rig.send(
                0,
                &from_cli(CLI6, SRV6, 17, &udp_datagram(1000 + i, 9, 0), 64),
            );
        }
        rig.emitted().len()
    };
    let mut config = PipelineConfig::default();
    // net.ipv4.icmp_ratelimit=0 does not lift ICMPv6's limit ...
    config.icmp.per_dest_ns = 0;
    assert_eq!(burst(config.clone()), 6);
    // ... net.ipv6.icmp.ratelimit=0 does
    config.icmp.per_dest6_ns = 0;
    config.icmp.msgs_per_sec = 0;
    assert_eq!(burst(config), 10);
    // and a ratemask without destination unreachable (type 1) leaves it unlimited
    let mut config = PipelineConfig::default();
    config.icmp.ratemask6 = dataplane::icmp::parse_ratemask("0,3-127").unwrap();
    assert_eq!(burst(config), 10);
}

#[test]
fn extension_headers_are_walked_for_the_rules_and_broken_chains_are_forwarded_untracked() {
    let mut rig = Rig::new(
        "table ip6 f { chain c { type filter hook forward priority 0;\n\
           tcp dport 80 counter\n\
           meta l4proto tcp counter\n\
           meta l4proto 0 counter\n\
           ct state invalid counter\n } }",
    );
    // TCP behind hop-by-hop and destination options
    let hbh = [0u8, 0, 1, 4, 0, 0, 0, 0];
    let dst = [0u8, 0, 1, 4, 0, 0, 0, 0];
    let mut l4 = tcp_header(40000, 80, wire::TCP_SYN);
    let c = l4_checksum_v6(CLI6, SRV6, 6, &l4);
    l4[16..18].copy_from_slice(&c.to_be_bytes());
    let f = with_macs(
        FW_IN,
        CLI_MAC,
        ipv6_frame_ext(CLI6, SRV6, &[(0, &hbh[..]), (60, &dst[..])], 6, &l4, 64),
    );
    assert_eq!(rig.send(0, &f), Action::Forward(1));
    assert_eq!(parsed(&rig.last).hop_limit, 63);
    // a routing header that claims more than the payload, then TCP: the protocol is named but there is
    // no transport header to read, and no conntrack; still forwarded
    let rh = [0u8, 6, 0, 0, 0, 0, 0, 0];
    let g = with_macs(
        FW_IN,
        CLI_MAC,
        ipv6_frame_ext(CLI6, SRV6, &[(43, &rh[..])], 6, &l4, 64),
    );
    assert_eq!(rig.send(0, &g), Action::Forward(1));
    // … then destination options that cannot be read: no protocol at all
    let g = with_macs(
        FW_IN,
        CLI_MAC,
        ipv6_frame_ext(CLI6, SRV6, &[(43, &rh[..])], 60, &l4[..4], 64),
    );
    assert_eq!(rig.send(0, &g), Action::Forward(1));
    // (`meta l4proto` is unavailable then, as the kernel's NFT_BREAK: not even `meta l4proto 0` matches)
    let c: Vec<u64> = (0..4).map(|i| rig.counter(i)).collect();
    assert_eq!(c, vec![1, 2, 0, 2]);
    assert_eq!(rig.p.stats.ip6_exthdr_unparsed, 2);
    // malformed hop-by-hop options are dropped before PREROUTING
    let bad = [0u8, 0, 0xc3, 4, 0, 0, 0, 0];
    let h = with_macs(
        FW_IN,
        CLI_MAC,
        ipv6_frame_ext(CLI6, SRV6, &[(0, &bad[..])], 6, &l4, 64),
    );
    assert_eq!(rig.send(0, &h), Action::Drop);
    assert_eq!(rig.p.stats.drop_ip6_hbh, 1);
}

#[test]
fn routes_through_a_gateway_use_its_link_layer_address() {
    let mut rig = Rig::new("");
    let f = from_cli(CLI6, FAR, 17, &udp_datagram(1, 2, 3), 64);
    assert_eq!(rig.send(0, &f), Action::Forward(1));
    assert_eq!(&rig.last[0..6], &[2, 0, 0, 0, 2, 0xfe]);
    assert_eq!(parsed(&rig.last).dst, FAR);
}

#[test]
fn unknown_hop_by_hop_options_asking_for_it_get_a_parameter_problem_before_prerouting() {
    let mut rig = Rig::new(
        "table ip6 f { chain pre { type filter hook prerouting priority -300; counter; }\n\
           chain out { type filter hook output priority 0; icmpv6 type parameter-problem counter; } }",
    );
    let opt = |ty: u8| [0u8, 0, ty, 4, 0, 0, 0, 0];
    let send = |rig: &mut Rig, ty: u8| {
        let o = opt(ty);
        let f = with_macs(
            FW_IN,
            CLI_MAC,
            ipv6_frame_ext(CLI6, SRV6, &[(0, &o[..])], 17, &udp_datagram(1, 2, 0), 64),
        );
        rig.send(0, &f)
    };
    // 10xxxxxx: discard, and send a parameter problem pointing at the option (40 + 2)
    assert_eq!(send(&mut rig, 0x9e), Action::Drop);
    let out = rig.emitted();
    assert_eq!(out.len(), 1);
    assert_eq!(icmp6_of(&out[0].1, FW_IN6, CLI6), (4, 2));
    assert_eq!(
        &out[0].1[ETH_HLEN + 44..ETH_HLEN + 48],
        &42u32.to_be_bytes()
    );
    // 01xxxxxx: discard silently; 00xxxxxx: skip the option and forward
    assert_eq!(send(&mut rig, 0x5e), Action::Drop);
    assert!(rig.emitted().is_empty());
    assert_eq!(send(&mut rig, 0x1e), Action::Forward(1));
    // PREROUTING saw only the forwarded packet, OUTPUT the error
    assert_eq!((rig.counter(0), rig.counter(1)), (1, 1));
    assert_eq!(rig.p.stats.drop_ip6_hbh, 2);
}

/// A UDP datagram from cli to srv port `dport` with `len` payload bytes, cut into fragments of at most
/// `mtu` bytes (identification 0x5eed).
fn fragments6(dport: u16, len: usize, mtu: usize) -> (Vec<u8>, Vec<Vec<u8>>) {
    let whole = from_cli(CLI6, SRV6, 17, &udp_datagram(1, dport, len), 64);
    let frags = dataplane::defrag::fragment_ipv6(&whole, &parsed(&whole), mtu, 0x5eed).unwrap();
    (whole, frags)
}

#[test]
fn fragments_are_reassembled_before_conntrack_and_leave_cut_as_they_came() {
    let mut rig = Rig::new(
        "table ip6 t {
	chain c_fwd {
		type filter hook forward priority filter; policy drop;
		ct state new udp dport 10 counter accept
	}
}",
    );
    let (whole, frags) = fragments6(10, 400, 208);
    assert_eq!(frags.len(), 3);
    // held until the last piece (sent first here) completes the datagram
    for f in frags.iter().rev() {
        assert_eq!(rig.send(0, f), Action::Consumed);
    }
    let out = rig.emitted();
    assert_eq!(rig.counter(0), 1, "the rule saw one whole datagram");
    assert_eq!(out.len(), 3, "{out:?}");
    let mut want = whole.clone();
    want[ETH_HLEN + 7] -= 1;
    let want = with_macs(SRV_MAC, FW_OUT, want);
    let again = dataplane::defrag::fragment_ipv6(&want, &parsed(&want), 208, 0x5eed).unwrap();
    for ((port, got), want) in out.iter().zip(&again) {
        assert_eq!(*port, 1);
        assert_eq!(got, want);
    }
    let s = &rig.p.stats;
    assert_eq!(
        (
            s.defrag6_fragments,
            s.defrag6_reassembled,
            s.fragments6_created
        ),
        (3, 1, 3)
    );
    // pieces of unequal sizes leave as they came (ip6_fragment's fast path), not cut to the largest
    let whole = from_cli(CLI6, SRV6, 17, &udp_datagram(2, 10, 400), 64);
    let ip = parsed(&whole);
    let odd = dataplane::defrag::refragment_ipv6(&whole, &ip, &[80, 240, 88], 1500, 7).unwrap();
    for f in &odd {
        assert_eq!(rig.send(0, f), Action::Consumed);
    }
    let sizes: Vec<usize> = rig.emitted().iter().map(|(_, f)| f.len()).collect();
    assert_eq!(
        sizes,
        [ETH_HLEN + 48 + 80, ETH_HLEN + 48 + 240, ETH_HLEN + 48 + 88]
    );
    // a datagram whose pieces overlap is dropped, counted
    let (_, frags) = fragments6(10, 400, 208);
    assert_eq!(rig.send(0, &frags[0]), Action::Consumed);
    let mut bad = frags[1].clone();
    bad[ETH_HLEN + 40 + 3] -= 8;
    assert_eq!(rig.send(0, &bad), Action::Drop);
    assert_eq!(rig.p.stats.defrag6_invalid, 1);
}

#[test]
fn without_conntrack_fragments_go_through_one_by_one() {
    let mut rig = Rig::new(
        "table ip6 t {
	chain c_fwd {
		type filter hook forward priority filter; policy accept;
		udp dport 10 counter
	}
}",
    );
    let (_, frags) = fragments6(10, 400, 208);
    for f in &frags {
        assert!(matches!(rig.send(0, f), Action::Forward(1)));
    }
    // only the first piece has the transport header
    assert_eq!(rig.counter(0), 1);
    assert_eq!(rig.p.stats.defrag6_fragments, 0);
}
