use super::tcp::{ACK, FIN, RST, SYN};
use super::*;
use crate::wire::tests::{ipv4_frame, tcp_header};
use crate::wire::{parse_ipv4, ETH_HLEN};

const C: [u8; 4] = [192, 0, 2, 2];
const S: [u8; 4] = [198, 51, 100, 2];
const SEC: u64 = 1_000_000_000;

fn table(max: u32) -> Conntrack<Ipv4Addr> {
    Conntrack::new(Sysctls::default(), max, 1)
}

/// A TCP segment with sequence numbers.
fn tcp_seg(src: [u8; 4], dst: [u8; 4], sp: u16, dp: u16, flags: u8, seq: u32, ack: u32) -> Vec<u8> {
    let mut h = tcp_header(sp, dp, flags);
    h[4..8].copy_from_slice(&seq.to_be_bytes());
    h[8..12].copy_from_slice(&ack.to_be_bytes());
    h[14..16].copy_from_slice(&64240u16.to_be_bytes());
    ipv4_frame(src, dst, IPPROTO_TCP, &h, 64)
}

struct T {
    ct: Conntrack<Ipv4Addr>,
    stats: WorkerStats,
}

impl T {
    fn new(max: u32) -> T {
        T {
            ct: table(max),
            stats: WorkerStats::default(),
        }
    }
    /// Tracks a frame and confirms it, as the pipeline does when every hook accepts.
    fn run(&mut self, f: &[u8], now: u64) -> CtResult {
        let ip = parse_ipv4(f, ETH_HLEN).unwrap();
        let r = self
            .ct
            .track(&CtPkt::from_ipv4(&ip, f), 0, now, &mut self.stats);
        self.ct.confirm(r, now, &mut self.stats);
        r
    }
    fn only(&self) -> &Entry<Ipv4Addr> {
        assert_eq!(self.ct.len(), 1);
        self.ct.entries().next().unwrap().1
    }
}

const CI: u32 = 1000;
const SI: u32 = 9000;

fn handshake(t: &mut T, sport: u16, now: u64) {
    assert_eq!(
        t.run(&tcp_seg(C, S, sport, 80, SYN, CI, 0), now).state(),
        state::NEW
    );
    assert_eq!(
        t.run(&tcp_seg(S, C, 80, sport, SYN | ACK, SI, CI + 1), now)
            .state(),
        state::ESTABLISHED
    );
    assert_eq!(
        t.run(&tcp_seg(C, S, sport, 80, ACK, CI + 1, SI + 1), now)
            .state(),
        state::ESTABLISHED
    );
}

#[test]
fn entry_sizes() {
    // The budget is 128 bytes per IPv4 entry (the kernel's nf_conn is ~320 with its extensions).
    let v4 = std::mem::size_of::<Option<Entry<Ipv4Addr>>>();
    let v6 = std::mem::size_of::<Option<Entry<Ipv6Addr>>>();
    eprintln!("entry size: ipv4 {v4} bytes, ipv6 {v6} bytes");
    assert!(v4 <= 128, "IPv4 entry is {v4} bytes");
    assert!(v6 <= 176, "IPv6 entry is {v6} bytes");
}

#[test]
fn tcp_handshake_goes_new_then_established_and_assured() {
    let mut t = T::new(16);
    handshake(&mut t, 4000, SEC);
    let e = t.only();
    assert_eq!(e.tcp_state(), Some(TcpState::Established));
    assert!(e.has(status::ASSURED) && e.has(status::SEEN_REPLY) && e.has(status::CONFIRMED));
    assert_eq!(e.packets, [2, 1]);
    assert_eq!(e.bytes, [80, 40]);
    assert_eq!(e.expires_in_ms(ms(SEC)) / 1000, 432_000);
    t.run(&tcp_seg(C, S, 4000, 80, FIN | ACK, CI + 1, SI + 1), 2 * SEC);
    assert_eq!(t.only().tcp_state(), Some(TcpState::FinWait));
    t.run(&tcp_seg(S, C, 80, 4000, FIN | ACK, SI + 1, CI + 2), 2 * SEC);
    assert_eq!(t.only().tcp_state(), Some(TcpState::LastAck));
    t.run(&tcp_seg(C, S, 4000, 80, ACK, CI + 2, SI + 2), 2 * SEC);
    assert_eq!(t.only().tcp_state(), Some(TcpState::TimeWait));
    assert_eq!(t.only().expires_in_ms(ms(2 * SEC)) / 1000, 120);
}

#[test]
fn stray_synack_fin_and_rst_are_invalid_and_not_tracked() {
    let mut t = T::new(16);
    assert_eq!(
        t.run(&tcp_seg(S, C, 80, 4000, SYN | ACK, 1, 1), 0),
        CtResult::Invalid
    );
    assert_eq!(
        t.run(&tcp_seg(S, C, 80, 4000, RST, 1, 0), 0),
        CtResult::Invalid
    );
    assert_eq!(
        t.run(&tcp_seg(S, C, 80, 4000, FIN | ACK, 1, 1), 0),
        CtResult::Invalid
    );
    assert_eq!(
        t.run(&tcp_seg(S, C, 80, 4000, SYN | FIN, 1, 1), 0),
        CtResult::Invalid
    );
    assert!(t.ct.is_empty());
    assert_eq!(t.stats.ct_invalid, 4);
    assert_eq!(
        t.stats.ct_error, 1,
        "only the bad flag combination is a header error"
    );
}

#[test]
fn rst_answering_a_syn_kills_the_entry_but_the_rst_passes() {
    let mut t = T::new(16);
    t.run(&tcp_seg(C, S, 4000, 80, SYN, CI, 0), SEC);
    let r = t.run(&tcp_seg(S, C, 80, 4000, RST | ACK, 0, CI + 1), SEC);
    assert_eq!(r.state(), state::ESTABLISHED);
    assert!(t.only().has(status::DYING));
    // The next lookup finds it dead and a new SYN starts over.
    assert_eq!(
        t.run(&tcp_seg(C, S, 4000, 80, SYN, CI + 5, 0), SEC + 1)
            .state(),
        state::NEW
    );
    assert_eq!(t.only().tcp_state(), Some(TcpState::SynSent));
    assert_eq!(t.stats.ct_new, 2);
}

#[test]
fn syn_in_time_wait_reopens_as_a_fresh_connection() {
    let mut t = T::new(16);
    handshake(&mut t, 4000, SEC);
    t.run(&tcp_seg(C, S, 4000, 80, FIN | ACK, CI + 1, SI + 1), SEC);
    t.run(&tcp_seg(S, C, 80, 4000, FIN | ACK, SI + 1, CI + 2), SEC);
    t.run(&tcp_seg(C, S, 4000, 80, ACK, CI + 2, SI + 2), SEC);
    let r = t.run(&tcp_seg(C, S, 4000, 80, SYN, CI + 100_000, 0), 2 * SEC);
    assert_eq!(r.state(), state::NEW);
    let e = t.only();
    assert_eq!(e.tcp_state(), Some(TcpState::SynSent));
    assert!(!e.has(status::ASSURED));
    assert_eq!(e.packets, [1, 0]);
}

#[test]
fn udp_unreplied_then_replied_then_assured_stream() {
    let mut t = T::new(16);
    let q = ipv4_frame(C, S, IPPROTO_UDP, &[0x0f, 0xa0, 0, 53, 0, 8, 0, 0], 64);
    let a = ipv4_frame(S, C, IPPROTO_UDP, &[0, 53, 0x0f, 0xa0, 0, 8, 0, 0], 64);
    assert_eq!(t.run(&q, SEC).state(), state::NEW);
    assert!(!t.only().has(status::SEEN_REPLY));
    assert_eq!(t.only().expires_in_ms(ms(SEC)) / 1000, 30);
    assert_eq!(t.run(&q, SEC).state(), state::NEW, "unreplied: still NEW");
    assert_eq!(t.run(&a, SEC).state(), state::ESTABLISHED);
    let e = t.only();
    assert!(e.has(status::SEEN_REPLY) && !e.has(status::ASSURED));
    assert_eq!(e.expires_in_ms(ms(SEC)) / 1000, 30);
    // The next packet after the reply: assured (as the kernel since 6.x), but within 2 s of the first
    // packet not a stream yet: the short timeout.
    t.run(&q, 2 * SEC);
    assert!(t.only().has(status::ASSURED));
    assert_eq!(t.only().expires_in_ms(ms(2 * SEC)) / 1000, 30);
    // Still talking after 2 s: the stream timeout.
    assert_eq!(t.run(&q, 4 * SEC).state(), state::ESTABLISHED);
    assert!(t.only().has(status::ASSURED));
    assert_eq!(t.only().expires_in_ms(ms(4 * SEC)) / 1000, 120);
}

#[test]
fn truncated_udp_is_an_error() {
    let mut t = T::new(16);
    let bad = ipv4_frame(C, S, IPPROTO_UDP, &[0x0f, 0xa0, 0, 53, 0, 30, 0, 0], 64);
    assert_eq!(t.run(&bad, 0), CtResult::Invalid);
    assert_eq!(t.stats.ct_error, 1);
}

#[test]
fn icmp_error_quoting_a_connection_is_related_in_the_reply_direction() {
    let mut t = T::new(16);
    let udp = [0x0f, 0xa0, 0x27, 0x0f, 0, 8, 0, 0];
    let f = ipv4_frame(C, S, IPPROTO_UDP, &udp, 64);
    t.run(&f, 0);
    // Port unreachable from S, quoting the datagram.
    let mut icmp = vec![3, 3, 0, 0, 0, 0, 0, 0];
    icmp.extend_from_slice(&f[ETH_HLEN..ETH_HLEN + 28]);
    let e = ipv4_frame(S, C, IPPROTO_ICMP, &icmp, 64);
    let r = t.run(&e, 1);
    assert_eq!(r.state(), state::RELATED);
    assert_eq!(r.entry().map(|x| x.1), Some(Dir::Reply));
    // The same error about an unknown flow is invalid.
    let mut other = icmp.clone();
    other[8 + 20] = 0x10;
    let e2 = ipv4_frame(S, C, IPPROTO_ICMP, &other, 64);
    assert_eq!(t.run(&e2, 1), CtResult::Invalid);
}

#[test]
fn echo_reply_matches_request_and_lone_reply_is_invalid() {
    let mut t = T::new(16);
    let req = ipv4_frame(C, S, IPPROTO_ICMP, &[8, 0, 0, 0, 0, 7, 0, 1], 64);
    assert_eq!(t.run(&req, 0).state(), state::NEW);
    let e = t.only();
    assert_eq!((e.orig().sport, e.orig().dport), (7, 8 << 8));
    assert_eq!((e.reply().sport, e.reply().dport), (7, 0));
    let rep = ipv4_frame(S, C, IPPROTO_ICMP, &[0, 0, 0, 0, 0, 7, 0, 1], 64);
    assert_eq!(t.run(&rep, 1).state(), state::ESTABLISHED);
    let lone = ipv4_frame(C, S, IPPROTO_ICMP, &[0, 0, 0, 0, 0, 9, 0, 1], 64);
    assert_eq!(t.run(&lone, 1), CtResult::Invalid);
    let redirect_like = ipv4_frame(C, S, IPPROTO_ICMP, &[9, 0, 0, 0, 0, 9, 0, 1], 64);
    assert_eq!(t.run(&redirect_like, 1), CtResult::Invalid);
}

#[test]
fn icmpv6_echo_is_tracked_in_the_ipv6_table() {
    let mut ct: Conntrack<Ipv6Addr> = Conntrack::new(Sysctls::default(), 8, 1);
    let mut st = WorkerStats::default();
    let a: Ipv6Addr = "2001:db8::1".parse().unwrap();
    let b: Ipv6Addr = "2001:db8::2".parse().unwrap();
    let req = [128u8, 0, 0, 0, 0, 5, 0, 1];
    let p = CtPkt {
        src: a,
        dst: b,
        proto: IPPROTO_ICMPV6,
        l4: &req,
        len: 48,
        fragment: false,
    };
    let r = ct.track(&p, 0, 0, &mut st);
    assert_eq!(r, CtResult::New);
    ct.confirm(r, 0, &mut st);
    let rep = [129u8, 0, 0, 0, 0, 5, 0, 1];
    let p = CtPkt {
        src: b,
        dst: a,
        l4: &rep,
        ..p
    };
    assert_eq!(ct.track(&p, 0, 1, &mut st).state(), state::ESTABLISHED);
    let (_, e) = ct.entries().next().unwrap();
    assert_eq!(e.expires_in_ms(0) / 1000, 30);
}

#[test]
fn generic_protocols_get_the_generic_timeout() {
    let mut t = T::new(16);
    let gre = ipv4_frame(C, S, 47, &[0, 0, 0x08, 0], 64);
    assert_eq!(t.run(&gre, 0).state(), state::NEW);
    assert_eq!(t.only().expires_in_ms(0) / 1000, 600);
}

#[test]
fn zones_separate_identical_tuples() {
    let mut ct = table(16);
    let mut st = WorkerStats::default();
    let f = tcp_seg(C, S, 4000, 80, SYN, CI, 0);
    let ip = parse_ipv4(&f, ETH_HLEN).unwrap();
    for zone in [0, 7] {
        let r = ct.track(&CtPkt::from_ipv4(&ip, &f), zone, 0, &mut st);
        assert_eq!(r, CtResult::New);
        assert!(matches!(ct.confirm(r, 0, &mut st), Confirm::Inserted(_)));
    }
    assert_eq!(ct.len(), 2);
}

#[test]
fn expiry_through_the_wheel_and_dead_entries_are_not_found() {
    let mut t = T::new(64);
    for p in 0..10 {
        t.run(&tcp_seg(C, S, 1000 + p, 80, SYN, CI, 0), SEC);
    }
    assert_eq!(t.ct.len(), 10);
    assert_eq!(t.ct.expire(100 * SEC, 1000, &mut t.stats), 0);
    assert_eq!(t.ct.len(), 10);
    // SYN_SENT lasts 120 s: at 122 s all are due; a small budget removes them over several calls.
    let mut removed = 0;
    for _ in 0..20 {
        removed += t.ct.expire(122 * SEC, 3, &mut t.stats);
    }
    assert_eq!(removed, 10);
    assert!(t.ct.is_empty());
    assert_eq!(t.stats.ct_expired, 10);
    // A lookup of an expired entry does not find it, even before the wheel gets there.
    t.run(&tcp_seg(C, S, 5000, 80, SYN, CI, 0), 200 * SEC);
    let r = t.run(&tcp_seg(S, C, 80, 5000, SYN | ACK, SI, CI + 1), 321 * SEC);
    assert_eq!(r, CtResult::Invalid);
}

#[test]
fn refreshed_entries_survive_the_wheel() {
    let mut t = T::new(64);
    let q = ipv4_frame(C, S, IPPROTO_UDP, &[0x0f, 0xa0, 0, 53, 0, 8, 0, 0], 64);
    t.run(&q, 0);
    for s in 1..100 {
        t.run(&q, s * 10 * SEC);
        t.ct.expire(s * 10 * SEC, 100, &mut t.stats);
    }
    assert_eq!(t.ct.len(), 1);
    t.ct.expire(2000 * SEC, 100, &mut t.stats);
    assert!(t.ct.is_empty());
}

#[test]
fn table_full_early_drops_unassured_then_refuses_and_spares_established() {
    let mut t = T::new(4);
    handshake(&mut t, 1, SEC);
    handshake(&mut t, 2, SEC);
    // Two half-open connections fill the table.
    t.run(&tcp_seg(C, S, 3, 80, SYN, CI, 0), SEC);
    t.run(&tcp_seg(C, S, 4, 80, SYN, CI, 0), SEC);
    assert_eq!(t.ct.len(), 4);
    // A fifth flow evicts a half-open one.
    assert_eq!(t.run(&tcp_seg(C, S, 5, 80, SYN, CI, 0), SEC), CtResult::New);
    assert_eq!(t.stats.ct_early_drop, 1);
    assert_eq!(t.ct.len(), 4);
    // Fill the rest with assured flows: now nothing may be evicted.
    let mut t = T::new(2);
    handshake(&mut t, 1, SEC);
    handshake(&mut t, 2, SEC);
    assert_eq!(
        t.run(&tcp_seg(C, S, 3, 80, SYN, CI, 0), SEC),
        CtResult::TableFull
    );
    assert_eq!(t.stats.ct_table_full, 1);
    // The established flows carry on.
    assert_eq!(
        t.run(&tcp_seg(C, S, 1, 80, ACK, CI + 1, SI + 1), SEC)
            .state(),
        state::ESTABLISHED
    );
    assert_eq!(t.ct.len(), 2);
}

#[test]
fn insert_fails_when_a_nat_binding_collides() {
    let mut t = T::new(16);
    handshake(&mut t, 4000, SEC);
    let f = tcp_seg(C, S, 4001, 80, SYN, CI, 0);
    let ip = parse_ipv4(&f, ETH_HLEN).unwrap();
    let r = t.ct.track(&CtPkt::from_ipv4(&ip, &f), 0, SEC, &mut t.stats);
    // Pretend a NAT rule mapped it onto the first connection's reply tuple.
    let taken = t.only().reply();
    t.ct.pending_mut().unwrap().set_reply(taken);
    assert_eq!(t.ct.confirm(r, SEC, &mut t.stats), Confirm::InsertFailed);
    assert_eq!(t.stats.ct_insert_failed, 1);
    assert_eq!(t.ct.len(), 1);
}

#[test]
fn events_report_new_update_destroy() {
    let mut t = T::new(16);
    t.ct.events_enabled = true;
    handshake(&mut t, 4000, SEC);
    let kinds: Vec<_> = t.ct.events.iter().map(|e| e.kind).collect();
    assert_eq!(kinds[0], EventKind::New);
    assert!(kinds[1..].iter().all(|k| *k == EventKind::Update) && kinds.len() >= 3);
    t.ct.flush();
    assert_eq!(t.ct.events.last().unwrap().kind, EventKind::Destroy);
    assert!(t.ct.is_empty());
}

#[test]
fn remove_and_reinsert_reuses_slots_and_keeps_index_consistent() {
    let mut t = T::new(1024);
    for round in 0..3u64 {
        for p in 0..300 {
            t.run(&tcp_seg(C, S, 1000 + p, 80, SYN, CI, 0), round * 1000 * SEC);
        }
        let idxs: Vec<u32> = t.ct.entries().map(|(i, _)| i).step_by(2).collect();
        for i in idxs {
            t.ct.remove(i);
        }
        t.ct.expire((round * 1000 + 500) * SEC, 100_000, &mut t.stats);
        assert!(t.ct.is_empty(), "round {round}");
    }
    assert!(t.ct.slab.slots() <= 300);
}
