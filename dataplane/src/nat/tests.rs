use super::*;
use crate::conntrack::{CtPkt, CtResult, Sysctls};
use crate::stats::WorkerStats;
use crate::wire::tests::{ipv4_frame, tcp_header};
use crate::wire::{checksum, parse_ipv4, ETH_HLEN};

const C: [u8; 4] = [192, 0, 2, 2];
const C2: [u8; 4] = [192, 0, 2, 3];
const S: [u8; 4] = [198, 51, 100, 2];
const N: [u8; 4] = [198, 51, 100, 1];

/// A TCP (or UDP) packet with correct IP and transport checksums.
fn l4_frame(src: [u8; 4], dst: [u8; 4], proto: u8, sport: u16, dport: u16) -> Vec<u8> {
    let l4 = if proto == IPPROTO_TCP {
        let mut h = tcp_header(sport, dport, 0x02);
        h.extend_from_slice(b"payload!");
        h
    } else {
        let mut h = vec![0u8; 8];
        h[0..2].copy_from_slice(&sport.to_be_bytes());
        h[2..4].copy_from_slice(&dport.to_be_bytes());
        h[4..6].copy_from_slice(&13u16.to_be_bytes());
        h.extend_from_slice(b"hello");
        h
    };
    let mut f = ipv4_frame(src, dst, proto, &l4, 64);
    let c = l4_checksum(&f);
    let at = ETH_HLEN + 20 + if proto == IPPROTO_TCP { 16 } else { 6 };
    f[at..at + 2].copy_from_slice(&c.to_be_bytes());
    assert_eq!(l4_checksum(&f), 0);
    f
}

/// The transport checksum over pseudo-header and segment (0 when correct).
fn l4_checksum(f: &[u8]) -> u16 {
    let ip = &f[ETH_HLEN..];
    let len = u16::from_be_bytes([ip[2], ip[3]]) as usize - 20;
    let mut buf = Vec::new();
    buf.extend_from_slice(&ip[12..20]);
    buf.extend_from_slice(&[0, ip[9]]);
    buf.extend_from_slice(&(len as u16).to_be_bytes());
    buf.extend_from_slice(&ip[20..20 + len]);
    checksum(&buf)
}

fn ip_ok(f: &[u8]) -> bool {
    checksum(&f[ETH_HLEN..ETH_HLEN + 20]) == 0
}

struct T {
    ct: Conntrack<Ipv4Addr>,
    nat: Nat,
    st: WorkerStats,
}

impl T {
    fn new() -> T {
        T {
            ct: Conntrack::new(Sysctls::default(), 1000, 7),
            nat: Nat::new(42),
            st: WorkerStats::default(),
        }
    }
    /// A new flow through SNAT/DNAT with `range` at `manip`; returns the confirmed entry's index.
    fn open(
        &mut self,
        f: &[u8],
        range: Option<&Range<Ipv4Addr>>,
        manip: Manip,
    ) -> Result<u32, NatError> {
        let ip = parse_ipv4(f, ETH_HLEN).unwrap();
        let r = self
            .ct
            .track(&CtPkt::from_ipv4(&ip, f), 0, 1_000_000, &mut self.st);
        assert_eq!(r, CtResult::New);
        self.nat.setup(&mut self.ct, range, manip, 1)?;
        match self.ct.confirm(r, 1_000_000, &mut self.st) {
            crate::conntrack::Confirm::Inserted(i) => Ok(i),
            other => panic!("{other:?}"),
        }
    }
}

fn v4(a: [u8; 4]) -> Ipv4Addr {
    a.into()
}

fn snat_to(a: [u8; 4], ports: Option<(u16, u16)>, flags: u8) -> Range<Ipv4Addr> {
    Range {
        addr: Some((v4(a), v4(a))),
        ports,
        flags,
    }
}

#[test]
fn masquerade_keeps_a_free_source_port_and_remaps_a_taken_one() {
    let mut t = T::new();
    let r = snat_to(N, None, 0);
    let a = t
        .open(
            &l4_frame(C, S, IPPROTO_TCP, 40000, 80),
            Some(&r),
            Manip::Src,
        )
        .unwrap();
    let e = t.ct.get(a).unwrap();
    assert_eq!(e.reply().dst, v4(N));
    assert_eq!(e.reply().dport, 40000, "port preserved");
    assert!(e.has(status::SRC_NAT) && e.has(status::SRC_NAT_DONE));
    // Another client with the same source port to the same server: the port must move.
    let b = t
        .open(
            &l4_frame(C2, S, IPPROTO_TCP, 40000, 80),
            Some(&r),
            Manip::Src,
        )
        .unwrap();
    let p = t.ct.get(b).unwrap().reply().dport;
    assert_ne!(p, 40000);
    assert!(p >= 1024);
    // Random: not kept even when free.
    let rr = snat_to(N, None, RANDOM);
    let c = t
        .open(
            &l4_frame(C, S, IPPROTO_TCP, 40001, 80),
            Some(&rr),
            Manip::Src,
        )
        .unwrap();
    let _ = t.ct.get(c).unwrap().reply().dport; // any port; only uniqueness matters
    assert_eq!(t.ct.len(), 3);
}

#[test]
fn low_ports_stay_low_as_in_the_kernel() {
    let mut t = T::new();
    let r = snat_to(N, None, 0);
    t.open(&l4_frame(C, S, IPPROTO_UDP, 123, 123), Some(&r), Manip::Src)
        .unwrap();
    let b = t
        .open(
            &l4_frame(C2, S, IPPROTO_UDP, 123, 123),
            Some(&r),
            Manip::Src,
        )
        .unwrap();
    let p = t.ct.get(b).unwrap().reply().dport;
    assert!((1..512).contains(&p), "{p}");
}

#[test]
fn a_small_port_range_is_exhausted_without_clashing() {
    let mut t = T::new();
    let r = snat_to(N, Some((5000, 5002)), 0);
    let mut got = Vec::new();
    for (i, client) in (2..5u8).enumerate() {
        let idx = t
            .open(
                &l4_frame([192, 0, 2, client], S, IPPROTO_TCP, 40000, 80),
                Some(&r),
                Manip::Src,
            )
            .unwrap_or_else(|e| panic!("flow {i}: {e:?}"));
        got.push(t.ct.get(idx).unwrap().reply().dport);
    }
    got.sort();
    assert_eq!(got, vec![5000, 5001, 5002]);
    let f = l4_frame([192, 0, 2, 9], S, IPPROTO_TCP, 40000, 80);
    let ip = parse_ipv4(&f, ETH_HLEN).unwrap();
    let res =
        t.ct.track(&CtPkt::from_ipv4(&ip, &f), 0, 1_000_000, &mut t.st);
    assert_eq!(res, CtResult::New);
    assert_eq!(
        t.nat.setup(&mut t.ct, Some(&r), Manip::Src, 1),
        Err(NatError::Exhausted)
    );
    // The same client to another server can reuse a port: the reply tuples differ.
    let other = l4_frame([192, 0, 2, 9], [198, 51, 100, 3], IPPROTO_TCP, 40000, 80);
    assert!(t.open(&other, Some(&r), Manip::Src).is_ok());
}

#[test]
fn dnat_port_forward_rewrites_both_directions_with_valid_checksums() {
    let mut t = T::new();
    let r = Range {
        addr: Some((v4(S), v4(S))),
        ports: Some((80, 80)),
        flags: 0,
    };
    let mut syn = l4_frame(C, N, IPPROTO_TCP, 40000, 8080);
    let idx = t.open(&syn, Some(&r), Manip::Dst).unwrap();
    let e = t.ct.get(idx).unwrap().clone();
    assert_eq!(
        (
            e.reply().src,
            e.reply().sport,
            e.reply().dst,
            e.reply().dport
        ),
        (v4(S), 80, v4(C), 40000)
    );
    assert!(e.has(status::DST_NAT) && !e.has(status::SRC_NAT));
    // Original direction at PREROUTING: destination becomes S:80.
    assert!(apply_ipv4(
        &mut syn[ETH_HLEN..],
        &e,
        Dir::Original,
        Manip::Dst
    ));
    let ip = parse_ipv4(&syn, ETH_HLEN).unwrap();
    assert_eq!((ip.dst, ip.dport), (v4(S), 80));
    assert!(ip_ok(&syn) && l4_checksum(&syn) == 0);
    // ...and nothing at POSTROUTING.
    assert!(!apply_ipv4(
        &mut syn[ETH_HLEN..],
        &e,
        Dir::Original,
        Manip::Src
    ));
    // The reply from S:80 gets its source turned back into N:8080 at POSTROUTING.
    let mut rep = l4_frame(S, C, IPPROTO_TCP, 80, 40000);
    assert!(!apply_ipv4(
        &mut rep[ETH_HLEN..],
        &e,
        Dir::Reply,
        Manip::Dst
    ));
    assert!(apply_ipv4(&mut rep[ETH_HLEN..], &e, Dir::Reply, Manip::Src));
    let ip = parse_ipv4(&rep, ETH_HLEN).unwrap();
    assert_eq!((ip.src, ip.sport), (v4(N), 8080));
    assert!(ip_ok(&rep) && l4_checksum(&rep) == 0);
}

#[test]
fn snat_udp_checksums_and_zero_checksum_stays_zero() {
    let mut t = T::new();
    let r = snat_to(N, None, 0);
    let mut f = l4_frame(C, S, IPPROTO_UDP, 5353, 53);
    let idx = t.open(&f, Some(&r), Manip::Src).unwrap();
    let e = t.ct.get(idx).unwrap().clone();
    assert!(apply_ipv4(
        &mut f[ETH_HLEN..],
        &e,
        Dir::Original,
        Manip::Src
    ));
    assert!(ip_ok(&f) && l4_checksum(&f) == 0);
    assert_eq!(parse_ipv4(&f, ETH_HLEN).unwrap().src, v4(N));
    let mut z = l4_frame(C, S, IPPROTO_UDP, 5353, 53);
    z[ETH_HLEN + 26..ETH_HLEN + 28].copy_from_slice(&[0, 0]);
    apply_ipv4(&mut z[ETH_HLEN..], &e, Dir::Original, Manip::Src);
    assert_eq!(&z[ETH_HLEN + 26..ETH_HLEN + 28], &[0, 0]);
    // The answer goes back to C:5353.
    let mut a = l4_frame(S, N, IPPROTO_UDP, 53, 5353);
    assert!(apply_ipv4(&mut a[ETH_HLEN..], &e, Dir::Reply, Manip::Dst));
    let ip = parse_ipv4(&a, ETH_HLEN).unwrap();
    assert_eq!((ip.dst, ip.dport), (v4(C), 5353));
    assert!(ip_ok(&a) && l4_checksum(&a) == 0);
}

#[test]
fn icmp_echo_identifier_is_translated() {
    let mut t = T::new();
    let r = snat_to(N, Some((100, 100)), 0);
    let mut req = ipv4_frame(
        C,
        S,
        IPPROTO_ICMP,
        &[8, 0, 0, 0, 0, 7, 0, 1, 1, 2, 3, 4],
        64,
    );
    let c = checksum(&req[ETH_HLEN + 20..]);
    req[ETH_HLEN + 22..ETH_HLEN + 24].copy_from_slice(&c.to_be_bytes());
    let idx = t.open(&req, Some(&r), Manip::Src).unwrap();
    let e = t.ct.get(idx).unwrap().clone();
    assert_eq!(e.reply().sport, 100);
    apply_ipv4(&mut req[ETH_HLEN..], &e, Dir::Original, Manip::Src);
    assert_eq!(&req[ETH_HLEN + 24..ETH_HLEN + 26], &100u16.to_be_bytes());
    assert_eq!(checksum(&req[ETH_HLEN + 20..]), 0);
    assert!(ip_ok(&req));
}

#[test]
fn icmp_error_about_a_masqueraded_flow_is_translated_back() {
    let mut t = T::new();
    let r = snat_to(N, Some((6000, 6000)), 0);
    let mut out = l4_frame(C, S, IPPROTO_UDP, 5353, 53);
    let idx = t.open(&out, Some(&r), Manip::Src).unwrap();
    let e = t.ct.get(idx).unwrap().clone();
    apply_ipv4(&mut out[ETH_HLEN..], &e, Dir::Original, Manip::Src);
    // S answers port unreachable to N, quoting what it received (N:6000 -> S:53).
    let mut icmp = vec![3, 3, 0, 0, 0, 0, 0, 0];
    icmp.extend_from_slice(&out[ETH_HLEN..ETH_HLEN + 28]);
    let mut err = ipv4_frame(S, N, IPPROTO_ICMP, &icmp, 64);
    let c = checksum(&err[ETH_HLEN + 20..]);
    err[ETH_HLEN + 22..ETH_HLEN + 24].copy_from_slice(&c.to_be_bytes());
    let ip = parse_ipv4(&err, ETH_HLEN).unwrap();
    let res =
        t.ct.track(&CtPkt::from_ipv4(&ip, &err), 0, 2_000_000, &mut t.st);
    assert_eq!(
        res,
        CtResult::Related {
            idx,
            dir: Dir::Reply
        }
    );
    assert!(icmp_error_ipv4(
        &mut err[ETH_HLEN..],
        &e,
        Dir::Reply,
        Manip::Dst
    ));
    let ip = parse_ipv4(&err, ETH_HLEN).unwrap();
    assert_eq!(ip.dst, v4(C));
    assert!(ip_ok(&err));
    assert_eq!(checksum(&err[ETH_HLEN + 20..]), 0, "ICMP checksum");
    let inner = &err[ETH_HLEN + 28..];
    assert_eq!(&inner[12..16], &C, "quoted source is the client again");
    assert_eq!(&inner[20..22], &5353u16.to_be_bytes());
    assert_eq!(checksum(&inner[..20]), 0, "quoted IP header checksum");
}

#[test]
fn address_ranges_pick_by_hash_and_persistent_ignores_the_destination() {
    let mut t = T::new();
    let r = Range {
        addr: Some((v4([203, 0, 113, 10]), v4([203, 0, 113, 19]))),
        ports: None,
        flags: PERSISTENT,
    };
    let mut seen = Vec::new();
    for d in 1..6u8 {
        let i = t
            .open(
                &l4_frame(C, [198, 51, 100, d], IPPROTO_TCP, 40000, 80),
                Some(&r),
                Manip::Src,
            )
            .unwrap();
        seen.push(t.ct.get(i).unwrap().reply().dst);
    }
    assert!(seen.iter().all(|a| *a == seen[0]), "persistent: {seen:?}");
    let o = seen[0].octets();
    assert!(o[3] >= 10 && o[3] <= 19);
}

#[test]
fn null_binding_moves_only_a_clashing_port() {
    let mut t = T::new();
    // An SNAT flow takes N:40000 towards S:80 ...
    let r = snat_to(N, None, 0);
    t.open(
        &l4_frame(C, S, IPPROTO_TCP, 40000, 80),
        Some(&r),
        Manip::Src,
    )
    .unwrap();
    // ... then N itself (routed through, not NATed) uses the same source port to S:80.
    let i = t
        .open(&l4_frame(N, S, IPPROTO_TCP, 40000, 80), None, Manip::Src)
        .unwrap();
    let e = t.ct.get(i).unwrap();
    assert_eq!(e.reply().dst, v4(N));
    assert_ne!(e.reply().dport, 40000);
    // A flow with nothing in the way keeps its tuple and gets no NAT bit.
    let j = t
        .open(&l4_frame(C2, S, IPPROTO_TCP, 1234, 80), None, Manip::Src)
        .unwrap();
    let e = t.ct.get(j).unwrap();
    assert_eq!(e.reply(), e.orig().invert().unwrap());
    assert!(!e.has(status::SRC_NAT) && e.has(status::SRC_NAT_DONE));
}

#[test]
fn jhash2_is_deterministic_and_mixes() {
    assert_eq!(jhash2(&[1, 0, 0, 0], 0), jhash2(&[1, 0, 0, 0], 0));
    assert_ne!(jhash2(&[1, 0, 0, 0], 0), jhash2(&[2, 0, 0, 0], 0));
    assert_ne!(jhash2(&[1, 0, 0, 0], 0), jhash2(&[1, 0, 0, 0], 1));
}

#[test]
fn time_wait_tuples_are_reused_by_a_later_syn_as_in_the_kernel() {
    let mut t = T::new();
    let r = snat_to(N, Some((5000, 5000)), 0);
    let seg = |src: [u8; 4], dst: [u8; 4], sp: u16, dp: u16, flags: u8, seq: u32, ack: u32| {
        let mut h = tcp_header(sp, dp, flags);
        h[4..8].copy_from_slice(&seq.to_be_bytes());
        h[8..12].copy_from_slice(&ack.to_be_bytes());
        h[14..16].copy_from_slice(&64240u16.to_be_bytes());
        ipv4_frame(src, dst, IPPROTO_TCP, &h, 64)
    };
    let run = |t: &mut T, f: Vec<u8>| {
        let ip = parse_ipv4(&f, ETH_HLEN).unwrap();
        let r =
            t.ct.track(&CtPkt::from_ipv4(&ip, &f), 0, 1_000_000, &mut t.st);
        t.ct.confirm(r, 1_000_000, &mut t.st);
    };
    t.open(&seg(C, S, 40000, 80, 0x02, 1000, 0), Some(&r), Manip::Src)
        .unwrap();
    run(&mut t, seg(S, N, 80, 5000, 0x12, 9000, 1001));
    run(&mut t, seg(C, S, 40000, 80, 0x10, 1001, 9001));
    run(&mut t, seg(C, S, 40000, 80, 0x11, 1001, 9001));
    run(&mut t, seg(S, N, 80, 5000, 0x11, 9001, 1002));
    run(&mut t, seg(C, S, 40000, 80, 0x10, 1002, 9002));
    let (_, e) = t.ct.entries().next().unwrap();
    assert_eq!(e.tcp_state(), Some(crate::conntrack::TcpState::TimeWait));
    // A SYN from another client with a sequence below the old one: the port stays taken.
    let f = seg(C2, S, 40001, 80, 0x02, 500, 0);
    let ip = parse_ipv4(&f, ETH_HLEN).unwrap();
    t.ct.track(&CtPkt::from_ipv4(&ip, &f), 0, 1_000_000, &mut t.st);
    assert_eq!(
        t.nat.setup(&mut t.ct, Some(&r), Manip::Src, 1),
        Err(NatError::Exhausted)
    );
    // Past it: the TIME_WAIT entry is evicted and its port reused.
    let i = t
        .open(
            &seg(C2, S, 40001, 80, 0x02, 50_000, 0),
            Some(&r),
            Manip::Src,
        )
        .unwrap();
    assert_eq!(t.ct.get(i).unwrap().reply().dport, 5000);
    assert_eq!(t.ct.len(), 1);
}

#[test]
fn with_two_workers_the_chosen_port_keeps_replies_on_this_worker() {
    for me in 0..2usize {
        let mut t = T::new();
        t.nat.set_owner(me, 2);
        let r = snat_to(N, None, 0);
        for p in 0..40u16 {
            let i = t
                .open(
                    &l4_frame(C, S, IPPROTO_TCP, 30000 + p, 80),
                    Some(&r),
                    Manip::Src,
                )
                .unwrap();
            let rep = t.ct.get(i).unwrap().reply();
            let owner = crate::handoff::ipv4_tuple_owner(
                rep.src, rep.dst, rep.sport, rep.dport, rep.proto, 2,
            );
            assert_eq!(owner, me, "port {}", rep.dport);
        }
    }
}
