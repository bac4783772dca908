//! NAT, as the kernel's nf_nat does it: a binding is chosen once, on the first packet of a connection, by
//! rewriting the pending conntrack entry's reply tuple (`nf_nat_setup_info`); from then on every packet of
//! the connection is rewritten at the NAT hooks from the two tuples alone (`nf_nat_packet`): destination at
//! PREROUTING, source at POSTROUTING, in both directions.
//!
//! - The binding: `get_unique_tuple` — keep the source if it is free and in range, else pick an address by
//!   the kernel's jhash2 (so address choices in a range match the kernel's), keep the port when allowed and
//!   free, else search the port range from a random offset with the kernel's attempt schedule. A port that
//!   would clash is never used: when none is free the flow is refused and `nat_port_exhausted` counts it.
//! - Packet rewriting with incremental checksums (RFC 1624) for IPv4, TCP, UDP (a zero UDP checksum
//!   stays zero) and ICMP echo identifiers.
//! - ICMP errors about a NATed connection: the quoted packet gets the opposite rewrite and the outer header
//!   the normal one (`nf_nat_icmp_reply_translation`).

use crate::conntrack::{status, Addr, Conntrack, Dir, Entry, Tuple};
use crate::wire::{csum_replace2, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP};
use std::net::{Ipv4Addr, Ipv6Addr};

const IPPROTO_ICMPV6: u8 = 58;

pub use rules::nat_effect::{FULLY_RANDOM, NETMAP, PERSISTENT, RANDOM};
pub use rules::stmt::nat::NatKind;

/// Which side of the tuple a NAT hook rewrites.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Manip {
    /// POSTROUTING (and INPUT): source NAT.
    Src,
    /// PREROUTING (and OUTPUT): destination NAT.
    Dst,
}

impl Manip {
    fn done_bit(self) -> u16 {
        match self {
            Manip::Src => status::SRC_NAT_DONE,
            Manip::Dst => status::DST_NAT_DONE,
        }
    }
    fn nat_bit(self) -> u16 {
        match self {
            Manip::Src => status::SRC_NAT,
            Manip::Dst => status::DST_NAT,
        }
    }
    fn other(self) -> Manip {
        match self {
            Manip::Src => Manip::Dst,
            Manip::Dst => Manip::Src,
        }
    }
}

/// A NAT range resolved to addresses of one family (`struct nf_nat_range2`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range<A> {
    /// NF_NAT_RANGE_MAP_IPS when set.
    pub addr: Option<(A, A)>,
    /// NF_NAT_RANGE_PROTO_SPECIFIED when set.
    pub ports: Option<(u16, u16)>,
    pub flags: u8,
}

impl<A> Range<A> {
    fn random_all(&self) -> bool {
        self.flags & (RANDOM | FULLY_RANDOM) != 0
    }
}

/// Why a binding could not be set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NatError {
    /// Every port of the range would clash with an existing connection.
    Exhausted,
}

/// Per-worker NAT state: the PRNG behind port offsets (the kernel's get_random_u16).
pub struct Nat {
    rng: u64,
    /// This worker and how many there are: with hand-off, a source port is only chosen if the reply
    /// tuple it makes is owned by the same worker as the original one.
    owner: (usize, usize),
}

impl Nat {
    pub fn new(seed: u64) -> Nat {
        Nat {
            rng: seed | 1,
            owner: (0, 1),
        }
    }

    /// Declares this worker's place among `workers` that hand flows off by hash.
    pub fn set_owner(&mut self, worker: usize, workers: usize) {
        self.owner = (worker, workers.max(1));
    }

    fn random_u16(&mut self) -> u16 {
        // xorshift64*
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 48) as u16
    }

    /// `nf_nat_setup_info`: binds the pending connection of `ct` for `manip`. With `range == None` this
    /// is the null binding (no rule matched): the tuple is kept, or only its port changed if it is taken.
    pub fn setup<A: Addr>(
        &mut self,
        ct: &mut Conntrack<A>,
        range: Option<&Range<A>>,
        manip: Manip,
        now_ms: u32,
    ) -> Result<(), NatError> {
        let Some(e) = ct.pending() else {
            return Ok(());
        };
        if e.has(manip.done_bit()) {
            return Ok(());
        }
        let zone = e.zone;
        // The original direction as it looks now (after an earlier DNAT, for instance).
        let Some(curr) = e.reply().invert() else {
            return Ok(());
        };
        let null;
        let range = match range {
            Some(r) => r,
            None => {
                let a = match manip {
                    Manip::Src => curr.src,
                    Manip::Dst => curr.dst,
                };
                null = Range {
                    addr: Some((a, a)),
                    ports: None,
                    flags: 0,
                };
                &null
            }
        };
        let new = self.unique_tuple(ct, zone, &curr, range, manip, now_ms)?;
        let e = ct.pending_mut().unwrap();
        if new != curr {
            if let Some(reply) = new.invert() {
                e.set_reply(reply);
                e.status |= manip.nat_bit();
            }
        }
        e.status |= manip.done_bit();
        Ok(())
    }

    /// `get_unique_tuple`.
    fn unique_tuple<A: Addr>(
        &mut self,
        ct: &mut Conntrack<A>,
        zone: u16,
        orig: &Tuple<A>,
        range: &Range<A>,
        manip: Manip,
        now_ms: u32,
    ) -> Result<Tuple<A>, NatError> {
        let owner = self.owner;
        // With several workers a source binding must also make the replies hash to this worker; a
        // destination binding need not: the source binding at POSTROUTING that follows (null or not)
        // picks the port that brings its replies here.
        let used = |t: &Tuple<A>| {
            (manip == Manip::Src && !owned_here(owner, t))
                || match t.invert() {
                    Some(r) => ct.tuple_taken(zone, &r, now_ms),
                    None => false,
                }
        };
        // 1. Source NAT: keep the tuple if it already fits and is free.
        if manip == Manip::Src && !range.random_all() && in_range(orig, range) && !used(orig) {
            return Ok(*orig);
        }
        // 2. The address, by hash.
        let mut t = *orig;
        best_ip(&mut t, range, manip, zone);
        // 3. The port: keep it if allowed and free.
        if !range.random_all() {
            match range.ports {
                Some((lo, hi)) => {
                    if port_in_range(&t, manip, lo, hi) && (lo == hi || !used(&t)) {
                        return Ok(t);
                    }
                }
                None => {
                    if !used(&t) {
                        return Ok(t);
                    }
                }
            }
        }
        self.unique_l4(ct, zone, &mut t, range, manip, now_ms)?;
        Ok(t)
    }

    /// `nf_nat_l4proto_unique_tuple`, but a search that finds nothing free is an error, not a clash.
    fn unique_l4<A: Addr>(
        &mut self,
        ct: &mut Conntrack<A>,
        zone: u16,
        t: &mut Tuple<A>,
        range: &Range<A>,
        manip: Manip,
        now_ms: u32,
    ) -> Result<(), NatError> {
        let owner = self.owner;
        let used = |ct: &Conntrack<A>, t: &Tuple<A>| {
            (manip == Manip::Src && !owned_here(owner, t))
                || match t.invert() {
                    Some(r) => ct.tuple_taken(zone, &r, now_ms),
                    None => false,
                }
        };
        let icmp = t.is_icmp();
        let has_ports = matches!(t.proto, IPPROTO_TCP | IPPROTO_UDP | 132 | 33 | 136);
        if !icmp && !has_ports {
            // No ports to play with (GRE, ESP, ...): the tuple is what it is.
            return if used(ct, t) {
                Err(NatError::Exhausted)
            } else {
                Ok(())
            };
        }
        let (min, size): (u32, u32) = if icmp {
            match range.ports {
                Some((lo, hi)) => (lo as u32, hi.max(lo) as u32 - lo.min(hi) as u32 + 1),
                None => (0, 65536),
            }
        } else {
            match range.ports {
                Some((lo, hi)) => {
                    let (lo, hi) = (lo.min(hi), lo.max(hi));
                    (lo as u32, hi as u32 - lo as u32 + 1)
                }
                None => {
                    if manip == Manip::Dst {
                        // A destination rewrite without ports cannot move the port: the tuple stays
                        // as it is, and the source binding at POSTROUTING moves the source port if it
                        // clashes (as the kernel's nf_nat_l4proto_unique_tuple returns here).
                        return Ok(());
                    }
                    let p = t.sport;
                    if p < 512 {
                        (1, 511)
                    } else if p < 1024 {
                        (600, 1023 - 600 + 1)
                    } else {
                        (1024, 65535 - 1024 + 1)
                    }
                }
            }
        };
        let key = |t: &mut Tuple<A>, v: u16| {
            if icmp || manip == Manip::Src {
                t.sport = v;
            } else {
                t.dport = v;
            }
        };
        let mut off: u32 = if range.random_all() || manip != Manip::Dst {
            self.random_u16() as u32
        } else {
            0
        };
        let mut attempts = size.min(128);
        loop {
            for i in 0..attempts {
                key(t, (min + off % size) as u16);
                if (manip == Manip::Dst || owned_here(self.owner, t))
                    && !used_harder(ct, zone, t, attempts - i, now_ms)
                {
                    return Ok(());
                }
                off = off.wrapping_add(1);
            }
            if attempts >= size || attempts < 16 {
                return Err(NatError::Exhausted);
            }
            attempts /= 2;
            off = self.random_u16() as u32;
        }
    }
}

/// With several workers: would the replies of the connection `t` (its original-direction tuple after
/// NAT) reach this worker? IPv4 TCP/UDP only; other flows hash on addresses the NAT cannot choose.
fn owned_here<A: Addr>(owner: (usize, usize), t: &Tuple<A>) -> bool {
    let (me, n) = owner;
    if n <= 1 || !matches!(t.proto, IPPROTO_TCP | IPPROTO_UDP) || A::NFPROTO != 2 {
        return true;
    }
    let v4 = |a: &A| Ipv4Addr::from(<[u8; 4]>::try_from(&a.octets_vec()[..]).unwrap_or([0; 4]));
    crate::handoff::ipv4_tuple_owner(v4(&t.src), v4(&t.dst), t.sport, t.dport, t.proto, n) == me
}

/// The last attempts of a TCP port search (`nf_nat_used_tuple_harder`): a tuple held by a source-NATed
/// connection in TIME_WAIT (or later) whose sequence the new connection has passed is evicted and reused.
fn used_harder<A: Addr>(
    ct: &mut Conntrack<A>,
    zone: u16,
    t: &Tuple<A>,
    attempts_left: u32,
    now_ms: u32,
) -> bool {
    let Some(reply) = t.invert() else {
        return false;
    };
    let new_end = match ct.pending().map(|p| &p.l4) {
        Some(crate::conntrack::L4::Tcp(tc)) if tc.state == crate::conntrack::TcpState::SynSent => {
            tc.td_end(0)
        }
        _ => return ct.tuple_taken(zone, &reply, now_ms),
    };
    if attempts_left > 128 / 4 || t.proto != IPPROTO_TCP {
        return ct.tuple_taken(zone, &reply, now_ms);
    }
    let mut st = crate::stats::WorkerStats::default();
    let Some((idx, dir)) = ct.lookup(zone, &reply, now_ms, &mut st) else {
        return false;
    };
    if dir == Dir::Original {
        return true;
    }
    let old = ct.get(idx).unwrap();
    let may_kill = old
        .tcp_state()
        .is_some_and(|s| s as u8 >= crate::conntrack::TcpState::TimeWait as u8)
        && old.status & (status::FIXED_TIMEOUT | status::DYING) == 0
        && old.status & status::SRC_NAT != 0;
    let advanced = match &old.l4 {
        crate::conntrack::L4::Tcp(tc) => (new_end.wrapping_sub(tc.td_end(0)) as i32) > 0,
        _ => false,
    };
    if may_kill && advanced {
        ct.remove(idx);
        return false;
    }
    true
}

/// `nf_in_range` for source NAT.
fn in_range<A: Addr>(t: &Tuple<A>, r: &Range<A>) -> bool {
    if let Some((lo, hi)) = r.addr {
        if !addr_in(&t.src, &lo, &hi) {
            return false;
        }
    }
    match r.ports {
        None => true,
        Some((lo, hi)) => port_in_range(t, Manip::Src, lo, hi),
    }
}

fn addr_in<A: Addr>(a: &A, lo: &A, hi: &A) -> bool {
    let (a, lo, hi) = (a.octets_vec(), lo.octets_vec(), hi.octets_vec());
    a >= lo && a <= hi
}

fn port_in_range<A: Addr>(t: &Tuple<A>, manip: Manip, lo: u16, hi: u16) -> bool {
    let p = if t.is_icmp() || manip == Manip::Src {
        t.sport
    } else if matches!(t.proto, IPPROTO_TCP | IPPROTO_UDP | 132 | 33 | 136) {
        t.dport
    } else {
        return true;
    };
    p >= lo && p <= hi
}

/// `find_best_ips_proto`: the kernel hashes the source address with jhash2 (seeded with the destination
/// unless `persistent`) and scales it into the range, so a client keeps its address across connections.
fn best_ip<A: Addr>(t: &mut Tuple<A>, r: &Range<A>, manip: Manip, zone: u16) {
    let Some((lo, hi)) = r.addr else { return };
    if lo == hi {
        match manip {
            Manip::Src => t.src = lo,
            Manip::Dst => t.dst = lo,
        }
        return;
    }
    let words = |a: &A| -> [u32; 4] {
        let b = a.octets_vec();
        let mut w = [0u32; 4];
        for (i, c) in b.chunks(4).enumerate() {
            w[i] = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        }
        w
    };
    let src = words(&t.src);
    let dst = words(&t.dst);
    let n = lo.octets_vec().len() / 4;
    let max = n - 1;
    let init = if r.flags & PERSISTENT != 0 {
        0
    } else {
        dst[max] ^ zone as u32
    };
    let mut j = jhash2(&src, init);
    let (lo_w, hi_w) = (words(&lo), words(&hi));
    let mut out = [0u32; 4];
    for i in 0..=max {
        let (min, dist) = if i == max {
            let (mn, mx) = (u32::from_be(lo_w[i]), u32::from_be(hi_w[i]));
            (mn, mx.wrapping_sub(mn).wrapping_add(1))
        } else {
            (0, u32::MAX)
        };
        let scaled = ((j as u64 * dist as u64) >> 32) as u32;
        out[i] = min.wrapping_add(scaled).to_be();
        if r.flags & PERSISTENT == 0 {
            j ^= dst[i];
        }
    }
    let mut bytes = Vec::with_capacity(n * 4);
    for w in &out[..n] {
        bytes.extend_from_slice(&w.to_le_bytes());
    }
    if let Some(a) = A::from_slice(&bytes) {
        match manip {
            Manip::Src => t.src = a,
            Manip::Dst => t.dst = a,
        }
    }
}

/// The kernel's `jhash2` over four words (Bob Jenkins' lookup3 `hashword`).
pub fn jhash2(k: &[u32; 4], initval: u32) -> u32 {
    let init = 0xdead_beefu32
        .wrapping_add((k.len() as u32) << 2)
        .wrapping_add(initval);
    let (mut a, mut b, mut c) = (init, init, init);
    a = a.wrapping_add(k[0]);
    b = b.wrapping_add(k[1]);
    c = c.wrapping_add(k[2]);
    // __jhash_mix
    a = a.wrapping_sub(c);
    a ^= c.rotate_left(4);
    c = c.wrapping_add(b);
    b = b.wrapping_sub(a);
    b ^= a.rotate_left(6);
    a = a.wrapping_add(c);
    c = c.wrapping_sub(b);
    c ^= b.rotate_left(8);
    b = b.wrapping_add(a);
    a = a.wrapping_sub(c);
    a ^= c.rotate_left(16);
    c = c.wrapping_add(b);
    b = b.wrapping_sub(a);
    b ^= a.rotate_left(19);
    a = a.wrapping_add(c);
    c = c.wrapping_sub(b);
    c ^= b.rotate_left(4);
    b = b.wrapping_add(a);
    // the remaining word, then __jhash_final
    a = a.wrapping_add(k[3]);
    c ^= b;
    c = c.wrapping_sub(b.rotate_left(14));
    a ^= c;
    a = a.wrapping_sub(c.rotate_left(11));
    b ^= a;
    b = b.wrapping_sub(a.rotate_left(25));
    c ^= b;
    c = c.wrapping_sub(b.rotate_left(16));
    a ^= c;
    a = a.wrapping_sub(c.rotate_left(4));
    b ^= a;
    b = b.wrapping_sub(a.rotate_left(14));
    c ^= b;
    c = c.wrapping_sub(b.rotate_left(24));
    c
}

/// Does a packet in direction `dir` of `e` get rewritten at a `manip` hook (`nf_nat_packet`)?
pub fn applies<A: Addr>(e: &Entry<A>, dir: Dir, manip: Manip) -> bool {
    let mut bit = manip.nat_bit();
    if dir == Dir::Reply {
        bit ^= status::NAT_MASK;
    }
    e.status & bit != 0
}

/// The tuple a packet in direction `dir` must carry after the NAT hooks: the inverse of the other
/// direction's tuple.
pub fn target<A: Addr>(e: &Entry<A>, dir: Dir) -> Option<Tuple<A>> {
    e.tuple(dir.other()).invert()
}

fn rd16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn wr16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

/// RFC 1624 update of a checksum for a 32-bit word change.
pub fn csum_replace4(csum: u16, old: [u8; 4], new: [u8; 4]) -> u16 {
    let c = csum_replace2(
        csum,
        u16::from_be_bytes([old[0], old[1]]),
        u16::from_be_bytes([new[0], new[1]]),
    );
    csum_replace2(
        c,
        u16::from_be_bytes([old[2], old[3]]),
        u16::from_be_bytes([new[2], new[3]]),
    )
}

/// Rewrites the IPv4 packet starting at `ip` (a slice from its header to the end of what is present —
/// possibly a truncated quote) so that its source (`Src`) or destination (`Dst`) is `target`'s,
/// fixing the IP, TCP, UDP and ICMP-echo checksums incrementally (`nf_nat_ipv4_manip_pkt`).
pub fn manip_ipv4(ip: &mut [u8], target: &Tuple<Ipv4Addr>, manip: Manip) {
    if ip.len() < 20 {
        return;
    }
    let hl = (ip[0] & 0xf) as usize * 4;
    let proto = ip[9];
    let frag_off = rd16(ip, 6) & 0x1fff;
    let (addr_at, new_addr, new_port) = match manip {
        Manip::Src => (12, target.src.octets(), target.sport),
        Manip::Dst => (16, target.dst.octets(), target.dport),
    };
    let old_addr: [u8; 4] = ip[addr_at..addr_at + 4].try_into().unwrap();
    if frag_off == 0 && ip.len() > hl {
        let l4 = &mut ip[hl..];
        match proto {
            IPPROTO_TCP | IPPROTO_UDP => {
                let port_at = if manip == Manip::Src { 0 } else { 2 };
                if l4.len() >= port_at + 2 {
                    let old_port = rd16(l4, port_at);
                    let csum_at = if proto == IPPROTO_TCP { 16 } else { 6 };
                    if l4.len() >= csum_at + 2 {
                        let c = rd16(l4, csum_at);
                        if !(proto == IPPROTO_UDP && c == 0) {
                            let mut c = csum_replace4(c, old_addr, new_addr);
                            c = csum_replace2(c, old_port, new_port);
                            if proto == IPPROTO_UDP && c == 0 {
                                c = 0xffff;
                            }
                            wr16(l4, csum_at, c);
                        }
                    }
                    wr16(l4, port_at, new_port);
                }
            }
            IPPROTO_ICMP => {
                // Only the echo-like messages carry an identifier to rewrite.
                if l4.len() >= 8 && matches!(l4[0], 0 | 8 | 13 | 14 | 15 | 16 | 17 | 18) {
                    let old = rd16(l4, 4);
                    let c = csum_replace2(rd16(l4, 2), old, target.sport);
                    wr16(l4, 2, c);
                    wr16(l4, 4, target.sport);
                }
            }
            _ => {}
        }
    }
    let c = csum_replace4(rd16(ip, 10), old_addr, new_addr);
    wr16(ip, 10, c);
    ip[addr_at..addr_at + 4].copy_from_slice(&new_addr);
}

/// Rewrites a packet of connection `e` travelling in `dir` at a `manip` hook, if the binding says so.
/// `ip` runs from the IPv4 header to the end of the packet. Returns whether anything changed.
pub fn apply_ipv4(ip: &mut [u8], e: &Entry<Ipv4Addr>, dir: Dir, manip: Manip) -> bool {
    if !applies(e, dir, manip) {
        return false;
    }
    let Some(t) = target(e, dir) else {
        return false;
    };
    manip_ipv4(ip, &t, manip);
    true
}

/// `nf_nat_icmp_reply_translation`: an ICMP error travelling in `dir` of the NATed connection `e`. The
/// quoted packet gets the opposite rewrite (it travelled the other way), the ICMP checksum is
/// recomputed, then the outer header gets the normal one. Returns whether anything changed.
pub fn icmp_error_ipv4(ip: &mut [u8], e: &Entry<Ipv4Addr>, dir: Dir, manip: Manip) -> bool {
    if !applies(e, dir, manip) || ip.len() < 20 {
        return false;
    }
    let hl = (ip[0] & 0xf) as usize * 4;
    if ip.len() < hl + 8 + 20 {
        return false;
    }
    let other = e.tuple(dir.other());
    manip_ipv4(&mut ip[hl + 8..], &other, manip.other());
    // The quote changed: recompute the whole ICMP checksum, as the kernel does.
    let icmp = &mut ip[hl..];
    icmp[2] = 0;
    icmp[3] = 0;
    let c = crate::wire::checksum(icmp);
    wr16(icmp, 2, c);
    let Some(mut t) = other.invert() else {
        return true;
    };
    t.proto = IPPROTO_ICMP;
    // The outer header: addresses only (an error has no identifier to rewrite).
    let (addr_at, new_addr) = match manip {
        Manip::Src => (12, t.src.octets()),
        Manip::Dst => (16, t.dst.octets()),
    };
    let old_addr: [u8; 4] = ip[addr_at..addr_at + 4].try_into().unwrap();
    let c = csum_replace4(rd16(ip, 10), old_addr, new_addr);
    wr16(ip, 10, c);
    ip[addr_at..addr_at + 4].copy_from_slice(&new_addr);
    true
}

/// RFC 1624 update of a checksum for a 128-bit (IPv6 address) change.
pub fn csum_replace16(mut csum: u16, old: [u8; 16], new: [u8; 16]) -> u16 {
    for i in (0..16).step_by(4) {
        csum = csum_replace4(
            csum,
            old[i..i + 4].try_into().unwrap(),
            new[i..i + 4].try_into().unwrap(),
        );
    }
    csum
}

/// Rewrites the IPv6 packet starting at `ip` (its header; the transport header at `l4_at` from there,
/// `None` for a non-first fragment or an unknown header chain) so that its source (`Src`) or
/// destination (`Dst`) is `target`'s, fixing the TCP, UDP and ICMPv6 checksums incrementally: they all
/// cover the addresses through the pseudo-header (`nf_nat_ipv6_manip_pkt`).
pub fn manip_ipv6(
    ip: &mut [u8],
    l4_at: Option<usize>,
    proto: u8,
    target: &Tuple<Ipv6Addr>,
    manip: Manip,
) {
    if ip.len() < 40 {
        return;
    }
    let (addr_at, new_addr, new_port) = match manip {
        Manip::Src => (8, target.src.octets(), target.sport),
        Manip::Dst => (24, target.dst.octets(), target.dport),
    };
    let old_addr: [u8; 16] = ip[addr_at..addr_at + 16].try_into().unwrap();
    if let Some(at) = l4_at.filter(|&a| a < ip.len()) {
        let l4 = &mut ip[at..];
        match proto {
            IPPROTO_TCP | IPPROTO_UDP => {
                let port_at = if manip == Manip::Src { 0 } else { 2 };
                let csum_at = if proto == IPPROTO_TCP { 16 } else { 6 };
                if l4.len() >= port_at + 2 {
                    let old_port = rd16(l4, port_at);
                    if l4.len() >= csum_at + 2 {
                        let mut c = csum_replace16(rd16(l4, csum_at), old_addr, new_addr);
                        c = csum_replace2(c, old_port, new_port);
                        if proto == IPPROTO_UDP && c == 0 {
                            c = 0xffff;
                        }
                        wr16(l4, csum_at, c);
                    }
                    wr16(l4, port_at, new_port);
                }
            }
            IPPROTO_ICMPV6 if l4.len() >= 4 => {
                let mut c = csum_replace16(rd16(l4, 2), old_addr, new_addr);
                // echo request and reply carry the identifier the tuple keys on
                if l4.len() >= 8 && matches!(l4[0], 128 | 129) {
                    let old = rd16(l4, 4);
                    c = csum_replace2(c, old, target.sport);
                    wr16(l4, 4, target.sport);
                }
                wr16(l4, 2, c);
            }
            _ => {}
        }
    }
    ip[addr_at..addr_at + 16].copy_from_slice(&new_addr);
}

/// [`apply_ipv4`] for IPv6.
pub fn apply_ipv6(
    ip: &mut [u8],
    l4_at: Option<usize>,
    proto: u8,
    e: &Entry<Ipv6Addr>,
    dir: Dir,
    manip: Manip,
) -> bool {
    if !applies(e, dir, manip) {
        return false;
    }
    let Some(t) = target(e, dir) else {
        return false;
    };
    manip_ipv6(ip, l4_at, proto, &t, manip);
    true
}

/// [`icmp_error_ipv4`] for ICMPv6 errors (`l4_at`: the ICMPv6 header). The quoted packet's transport
/// header is taken to follow its fixed header (no extension headers in the quote); the ICMPv6 checksum
/// is recomputed over the new pseudo-header.
pub fn icmp_error_ipv6(
    ip: &mut [u8],
    l4_at: usize,
    e: &Entry<Ipv6Addr>,
    dir: Dir,
    manip: Manip,
) -> bool {
    if !applies(e, dir, manip) || ip.len() < l4_at + 8 + 40 {
        return false;
    }
    let other = e.tuple(dir.other());
    let inner = l4_at + 8;
    let inner_proto = ip[inner + 6];
    manip_ipv6(
        &mut ip[inner..],
        Some(40),
        inner_proto,
        &other,
        manip.other(),
    );
    if let Some(mut t) = other.invert() {
        t.proto = IPPROTO_ICMPV6;
        let (addr_at, new_addr) = match manip {
            Manip::Src => (8, t.src.octets()),
            Manip::Dst => (24, t.dst.octets()),
        };
        ip[addr_at..addr_at + 16].copy_from_slice(&new_addr);
    }
    // The quote and the pseudo-header changed: the whole ICMPv6 checksum again.
    let len = ip.len() - l4_at;
    let mut sum = 0u32;
    for w in ip[8..40].chunks_exact(2) {
        sum += rd16(w, 0) as u32;
    }
    sum += len as u32 + IPPROTO_ICMPV6 as u32;
    let icmp = &mut ip[l4_at..];
    icmp[2] = 0;
    icmp[3] = 0;
    let body = !crate::wire::checksum(icmp) as u32;
    sum += body;
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    wr16(icmp, 2, !(sum as u16));
    true
}

#[cfg(test)]
mod tests;
