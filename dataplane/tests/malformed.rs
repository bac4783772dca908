//! Malformed packets never panic the pipeline: random bytes, and valid frames (TCP, UDP, ICMP errors,
//! ARP, fragments, IPv4 options, IPv6) with bytes flipped, truncated or lengthened, through a ruleset that
//! exercises reject, ICMP errors, conntrack, sets and jumps. Each outcome must also be one of the
//! pipeline's actions on a port that exists. (The cargo-fuzz target under dataplane/fuzz does the same
//! with coverage guidance.)

use dataplane::ipv6::{self, NdRepr, ND_NEIGHBOUR_SOLICIT};
use dataplane::testkit::{
    self, fix_l4_checksum_v6, ipv4_frame, ipv6_frame, ipv6_frame_ext, lab_fib, tcp_header,
    udp_datagram, with_macs, CLI6, FW_IN6, SRV6,
};
use dataplane::{Action, Pipeline, PipelineConfig, PortRole};
use proptest::prelude::*;
use std::sync::Arc;

const RULESET: &str = r#"
table inet f {
	set ports { type inet_service; elements = { 22, 53, 80 } }
	map seen { typeof ip6 saddr : meta mark; flags dynamic,timeout; timeout 2s; }
	map pp { typeof ip6 saddr . udp dport : ip6 daddr; flags dynamic; }
	chain pre { type filter hook prerouting priority raw; policy accept; ip ttl 3 drop; }
	chain forward {
		type filter hook forward priority filter; policy accept;
		ct state invalid counter
		tcp dport 22 reject with tcp reset
		udp dport 53 reject
		tcp dport 23 reject with icmpx admin-prohibited
		meta l4proto icmp jump icmpc
		th dport @ports counter accept
		ip daddr 203.0.113.0/24 drop
		ip6 daddr 2001:db8:3::/48 drop
		ip6 hoplimit 2 reject with icmpv6 admin-prohibited
		meta l4proto ipv6-icmp counter
		meta l4proto udp update @seen { ip6 saddr counter limit rate 5/second : meta mark }
		meta mark set ip6 saddr map @seen
		udp dport 80 add @pp { ip6 saddr . udp dport : ip6 daddr }
	}
	chain icmpc { icmp type echo-request meta mark set 1 return; }
	chain out { type filter hook output priority filter; policy accept; ip protocol icmp counter; }
}
"#;

/// Rules that write into packets, copy them elsewhere and NAT both families: malformed frames must meet
/// these paths too (payload writes past the end, checksums of truncated headers, copies of odd frames).
const MANGLE: &str = r#"
table inet m {
	chain pre {
		type filter hook prerouting priority raw; policy accept;
		ip ttl set 9 ip dscp set cs1 tcp dport set 8080
		udp sport set 1
		icmp id set 3
		ip6 flowlabel set 0x12345 ip6 hoplimit set 7 icmpv6 id set 4
		sctp dport set 9
		@th,0,16 set 0x1234 @nh,8,8 set 0x2
		ip daddr set ip saddr
		ip6 daddr set ip6 saddr
		meta mark set jhash ip saddr . tcp dport mod 4 seed 0x1
	}
	chain forward {
		type filter hook forward priority filter; policy accept;
		ip length set 20
		ip6 length set 9
	}
	chain post { type nat hook postrouting priority srcnat; policy accept; masquerade; }
	chain prerouting { type nat hook prerouting priority dstnat; policy accept; udp dport 53 dnat ip to 198.51.100.2; udp dport 53 dnat ip6 to 2001:db8:2::2; }
}
table ip d4 {
	chain forward { type filter hook forward priority filter; policy accept; meta mark 1 dup to 198.51.100.2; dup to 198.51.100.9 device "fw-srv"; }
}
table ip6 d6 {
	chain pre { type filter hook prerouting priority filter; policy accept; dup to 2001:db8:2::2 device "fw-srv"; }
}
table netdev n {
	chain in { type filter hook ingress device "fw-cli" priority filter; policy accept; udp dport 9 dup to "fw-srv"; udp dport 10 fwd to "fw-srv"; }
}
"#;

fn pipeline_with(ruleset: &str) -> (Pipeline, Arc<rules::CompiledRuleset>) {
    let roles = vec![
        PortRole {
            kernel_shares: false
        };
        2
    ];
    let mut p = Pipeline::new(lab_fib(), roles, &PipelineConfig::default());
    let rs = Arc::new(rules::compile(&rules::parse_ruleset(ruleset, "m.nft").unwrap()).unwrap());
    p.use_generation(&rs);
    (p, rs)
}

fn pipeline() -> (Pipeline, Arc<rules::CompiledRuleset>) {
    pipeline_with(RULESET)
}

fn seeds() -> Vec<Vec<u8>> {
    let cli = [192, 0, 2, 2];
    let srv = [198, 51, 100, 2];
    let m = |f| with_macs(testkit::FW_IN, testkit::CLI_MAC, f);
    let mut icmp_err = vec![3, 3, 0, 0, 0, 0, 0, 0];
    icmp_err.extend_from_slice(&ipv4_frame(srv, cli, 17, &udp_datagram(53, 5000, 4), 64)[14..]);
    let mut frag = ipv4_frame(cli, srv, 17, &udp_datagram(1, 53, 40), 64);
    frag[14 + 6] = 0x20; // more fragments
    let mut opts = ipv4_frame(cli, srv, 6, &tcp_header(1, 22, 2), 64);
    opts[14] = 0x46; // claims a 24-byte header
    let mut v6 = vec![0u8; 14 + 40 + 8];
    v6[12] = 0x86;
    v6[13] = 0xdd;
    v6[14] = 0x60;
    v6[19] = 8;
    v6[20] = 17;
    v6[21] = 64;
    let mut v = vec![
        m(ipv4_frame(cli, srv, 6, &tcp_header(40000, 22, 2), 64)),
        m(ipv4_frame(cli, srv, 6, &tcp_header(40000, 80, 0x12), 1)),
        m(ipv4_frame(cli, srv, 17, &udp_datagram(5000, 53, 30), 64)),
        m(ipv4_frame(
            cli,
            [8, 8, 8, 8],
            17,
            &udp_datagram(5000, 9, 3),
            64,
        )),
        m(ipv4_frame(cli, srv, 1, &[8, 0, 0, 0, 0, 1, 0, 1], 64)),
        m(ipv4_frame(cli, srv, 1, &icmp_err, 64)),
        m(ipv4_frame(
            cli,
            [192, 0, 2, 1],
            6,
            &tcp_header(1, 22, 2),
            64,
        )),
        m(frag),
        m(opts),
        testkit::arp_frame(1, testkit::CLI_MAC, cli, [0; 6], [192, 0, 2, 1], [0xff; 6]),
        with_macs(testkit::FW_IN, testkit::CLI_MAC, v6),
    ];
    v.extend(seeds6());
    v
}

/// IPv6 frames from cli: TCP and UDP to rejecting ports, extension-header chains, fragments, a neighbour
/// solicitation, an ICMPv6 error quoting a flow, a hop limit that runs out.
fn seeds6() -> Vec<Vec<u8>> {
    let m = |mut f: Vec<u8>| {
        f = with_macs(testkit::FW_IN, testkit::CLI_MAC, f);
        fix_l4_checksum_v6(&mut f);
        f
    };
    let opts = [0u8, 0, 1, 4, 0, 0, 0, 0];
    let rh = [
        0u8, 2, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    // two fragments of one datagram (24 + 16 bytes): with conntrack in use they are reassembled
    let first = [0u8, 0, 0, 1, 0, 0, 0, 7];
    let later = [0u8, 0, 0, 24, 0, 0, 0, 7];
    let ah = [0u8, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1];
    let mut quote = ipv6_frame(SRV6, CLI6, 17, &udp_datagram(53, 5000, 4), 64)[14..].to_vec();
    quote.truncate(48);
    let mut err = vec![1, 4, 0, 0, 0, 0, 0, 0];
    err.extend_from_slice(&quote);
    let (group, mac) = ipv6::solicited_node(FW_IN6);
    let ns = NdRepr {
        ty: ND_NEIGHBOUR_SOLICIT,
        target: FW_IN6,
        lladdr: Some(testkit::CLI_MAC),
        flags: 0,
    }
    .emit_frame(testkit::CLI_MAC, mac, CLI6, group);
    let far = "2001:db8:3::1".parse().unwrap();
    vec![
        m(ipv6_frame(CLI6, SRV6, 6, &tcp_header(40000, 22, 2), 64)),
        m(ipv6_frame(CLI6, SRV6, 17, &udp_datagram(5000, 53, 12), 64)),
        m(ipv6_frame(CLI6, SRV6, 17, &udp_datagram(5000, 80, 12), 2)),
        m(ipv6_frame(CLI6, far, 17, &udp_datagram(5000, 80, 12), 1)),
        m(ipv6_frame(CLI6, SRV6, 58, &err, 64)),
        m(ipv6_frame_ext(
            CLI6,
            SRV6,
            &[
                (0, &opts[..]),
                (43, &rh[..]),
                (60, &opts[..]),
                (51, &ah[..]),
            ],
            6,
            &tcp_header(1, 80, 2),
            64,
        )),
        m(ipv6_frame_ext(
            CLI6,
            SRV6,
            &[(44, &first[..])],
            17,
            &udp_datagram(1, 53, 16),
            64,
        )),
        m(ipv6_frame_ext(
            CLI6,
            SRV6,
            &[(44, &later[..])],
            17,
            &[0x41; 16],
            64,
        )),
        ns,
    ]
}

fn run(p: &mut Pipeline, rs: &rules::CompiledRuleset, port: usize, frame: &[u8], now: u64) {
    let mut slot = frame.to_vec();
    slot.resize(frame.len().max(2048), 0);
    match p.process(&mut slot, frame.len(), port, false, rs, now) {
        Action::Forward(out) => assert!(out < 2),
        Action::Drop | Action::Consumed => {}
    }
    for (out, f) in p.take_emitted() {
        assert!(out < 2);
        assert!(f.len() >= 14);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, .. ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(port in 0usize..2, frame in proptest::collection::vec(any::<u8>(), 0..200)) {
        let (mut p, rs) = pipeline();
        run(&mut p, &rs, port, &frame, 1_000_000_000);
    }

    #[test]
    fn mutated_frames_never_panic(
        seed in 0usize..20,
        flips in proptest::collection::vec((any::<u16>(), any::<u8>()), 1..6),
        cut in any::<u16>(),
        extra in 0usize..40,
        port in 0usize..2,
    ) {
        let (mut p, rs) = pipeline();
        let all = seeds();
        let mut f = all[seed % all.len()].clone();
        for (at, x) in flips {
            let i = at as usize % f.len();
            f[i] ^= x;
        }
        let keep = f.len() - (cut as usize % 8).min(f.len());
        f.truncate(keep);
        f.extend(std::iter::repeat_n(0x5a, extra));
        run(&mut p, &rs, port, &f, 1_000_000_000);
        // and again later, with timers in between (neighbour give-up, conntrack expiry)
        for t in 1..4u64 {
            p.on_timer(1_000_000_000 + t * 1_100_000_000, &rs);
        }
        run(&mut p, &rs, port, &f, 6_000_000_000);
        p.take_emitted().for_each(drop);
    }

    #[test]
    fn mutated_fragments_reassembled_or_expired_never_panic(
        mutate_first in any::<bool>(),
        flips in proptest::collection::vec((any::<u16>(), any::<u8>()), 0..6),
        cut in any::<u16>(),
        port in 0usize..2,
    ) {
        // the last two IPv6 seeds before the solicitation: a datagram's first and later fragment
        let (mut p, rs) = pipeline();
        let s6 = seeds6();
        let (mut a, mut b) = (s6[6].clone(), s6[7].clone());
        let f = if mutate_first { &mut a } else { &mut b };
        for (at, x) in flips {
            let i = at as usize % f.len();
            f[i] ^= x;
        }
        let keep = f.len() - (cut as usize % 8).min(f.len());
        f.truncate(keep);
        run(&mut p, &rs, port, &a, 1_000_000_000);
        run(&mut p, &rs, port, &b, 1_000_000_000);
        // a datagram left incomplete expires (and its first fragment is answered)
        run(&mut p, &rs, port, &a, 2_000_000_000);
        p.on_timer(70_000_000_000, &rs);
        p.take_emitted().for_each(drop);
    }

    #[test]
    fn mutated_frames_through_rewrites_never_panic(
        seed in 0usize..40,
        flips in proptest::collection::vec((any::<u16>(), any::<u8>()), 0..6),
        cut in any::<u16>(),
        port in 0usize..2,
    ) {
        let (mut p, rs) = pipeline_with(MANGLE);
        let f = mutated(seed, &flips, cut);
        run(&mut p, &rs, port, &f, 1_000_000_000);
        run(&mut p, &rs, port, &f, 2_000_000_000);
    }

    /// The exception path: mutated frames to and from the kernel behind the host TUN (its packets are
    /// the frames without their Ethernet header, reversed in direction or not: the pipeline must not care).
    #[test]
    fn mutated_packets_on_the_host_path_never_panic(
        seed in 0usize..40,
        flips in proptest::collection::vec((any::<u16>(), any::<u8>()), 0..6),
        cut in any::<u16>(),
        port in 0usize..2,
    ) {
        let (mut p, rs) = pipeline_host(MANGLE);
        let f = mutated(seed, &flips, cut);
        run(&mut p, &rs, port, &f, 1_000_000_000);
        p.from_host(f.get(14..).unwrap_or(&[]), &rs, 1_500_000_000);
        p.from_host(f.get(14..).unwrap_or(&[]), &rs, 2_000_000_000);
        let _ = p.take_to_host().count();
        let _ = p.take_emitted().count();
    }
}

/// Seed frame `seed` (IPv4 and IPv6 seeds in turn) with bytes flipped and up to 7 bytes cut off its end.
fn mutated(seed: usize, flips: &[(u16, u8)], cut: u16) -> Vec<u8> {
    let all: Vec<Vec<u8>> = seeds().into_iter().chain(seeds6()).collect();
    let mut f = all[seed % all.len()].clone();
    for &(at, x) in flips {
        let i = at as usize % f.len();
        f[i] ^= x;
    }
    let keep = f.len() - (cut as usize % 8).min(f.len());
    f.truncate(keep);
    f
}

fn pipeline_host(ruleset: &str) -> (Pipeline, Arc<rules::CompiledRuleset>) {
    let roles = vec![
        PortRole {
            kernel_shares: false
        };
        2
    ];
    let config = PipelineConfig {
        host_path: true,
        send_redirects: vec![true, true],
        ..Default::default()
    };
    let mut p = Pipeline::new(lab_fib(), roles, &config);
    let rs = Arc::new(rules::compile(&rules::parse_ruleset(ruleset, "m.nft").unwrap()).unwrap());
    p.use_generation(&rs);
    (p, rs)
}

#[test]
fn seeds_are_valid_frames() {
    let (mut p, rs) = pipeline();
    for f in seeds() {
        run(&mut p, &rs, 0, &f, 1_000_000_000);
    }
    assert_eq!(p.stats.rx_frames, 20);
    assert_eq!(p.stats.drop_parse_error, 0);
}

/// Each malformed IPv6 frame is refused with its own counter, before any hook sees it.
#[test]
fn malformed_ipv6_is_a_counted_drop() {
    let good = with_macs(
        testkit::FW_IN,
        testkit::CLI_MAC,
        ipv6_frame(CLI6, SRV6, 17, &udp_datagram(1, 2, 8), 64),
    );
    let hbh = |opts: &[u8]| {
        with_macs(
            testkit::FW_IN,
            testkit::CLI_MAC,
            ipv6_frame_ext(
                CLI6,
                SRV6,
                &[(0, &opts[..])],
                17,
                &udp_datagram(1, 2, 0),
                64,
            ),
        )
    };
    let mut short = good.clone();
    short.truncate(14 + 39);
    let mut version = good.clone();
    version[14] = 0x40;
    let mut long = good.clone();
    long[14 + 5] += 1;
    let mut mcast_src = good.clone();
    mcast_src[14 + 8] = 0xff;
    let mut tcp_short = with_macs(
        testkit::FW_IN,
        testkit::CLI_MAC,
        ipv6_frame(CLI6, SRV6, 6, &tcp_header(1, 80, 2), 64),
    );
    tcp_short[14 + 40 + 12] = 0xf0; // data offset 60 in a 20-byte segment
    type Counter = fn(&dataplane::WorkerStats) -> u64;
    let cases: Vec<(&str, Vec<u8>, Counter)> = vec![
        ("short header", short, |s| s.drop_ip6_invalid),
        ("version 4", version, |s| s.drop_ip6_invalid),
        ("payload past the frame", long, |s| s.drop_ip6_invalid),
        ("multicast source", mcast_src, |s| s.drop_ip6_invalid),
        ("PadN with data", hbh(&[0, 0, 1, 4, 0, 9, 0, 0]), |s| {
            s.drop_ip6_hbh
        }),
        (
            "unknown option, discard",
            hbh(&[0, 0, 0x41, 4, 0, 0, 0, 0]),
            |s| s.drop_ip6_hbh,
        ),
        (
            "option past the header",
            hbh(&[0, 0, 0x05, 7, 0, 0, 0, 0]),
            |s| s.drop_ip6_hbh,
        ),
        (
            "eight bytes of padding",
            hbh(&[0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            |s| s.drop_ip6_hbh,
        ),
        ("truncated TCP", tcp_short, |s| s.drop_parse_error),
    ];
    for (what, f, counter) in cases {
        let (mut p, rs) = pipeline();
        let mut slot = f.clone();
        slot.resize(2048, 0);
        let a = p.process(&mut slot, f.len(), 0, false, &rs, 1_000_000_000);
        assert_eq!(a, Action::Drop, "{what}");
        assert_eq!(counter(&p.stats), 1, "{what}");
        assert!(
            p.counters.iter().all(|c| c.packets == 0),
            "{what}: a hook saw it"
        );
        assert_eq!(p.take_emitted().count(), 0, "{what}");
    }
}

/// The fragment seeds make one datagram (the property test above reaches the reassembled path), and one
/// left alone expires with its first fragment answered.
#[test]
fn fragment_seeds_reassemble_and_expire() {
    let (mut p, rs) = pipeline();
    let s6 = seeds6();
    run(&mut p, &rs, 0, &s6[7], 1_000_000_000);
    run(&mut p, &rs, 0, &s6[6], 1_000_000_000);
    assert_eq!(p.stats.defrag6_reassembled, 1);
    run(&mut p, &rs, 0, &s6[6], 2_000_000_000);
    let sent = p.stats.icmp6_errors_sent;
    p.on_timer(70_000_000_000, &rs);
    assert_eq!(p.stats.defrag6_timeout, 1);
    // time exceeded (reassembly) for cli, waiting for its neighbour to answer
    assert_eq!(p.stats.icmp6_errors_sent, sent + 1);
}
