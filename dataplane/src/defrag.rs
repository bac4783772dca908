//! IPv4 reassembly before conntrack, as nf_defrag_ipv4 (priority -400) does when connection tracking is
//! in use: fragments are held per (source, destination, protocol, ID) until the datagram is whole, then it
//! goes through the hooks as one packet and leaves fragmented again: in the pieces it came in (the
//! kernel's fast path over the fragment list, [`Whole::pieces`]), or where they no longer fit cut to
//! the largest fragment size seen (`frag_max_size`). Bounded like the kernel's `ipfrag_high_thresh` and `ipfrag_time`; overlapping
//! fragments drop the whole datagram (as inet_frag_queue_insert does). Every outcome is counted.
//!
//! IPv6 likewise, as nf_defrag_ipv6 ([`Defrag6`]): the same queues (`nf_conntrack_frag6_high_thresh`
//! 4 MiB, `nf_conntrack_frag6_timeout` 60 s), the fragment header removed from the whole datagram, and
//! [`fragment_ipv6`] to cut it again on the way out.

use crate::ipv6::{
    Ipv6Info, IPV6_HLEN, NEXTHDR_DEST, NEXTHDR_FRAGMENT, NEXTHDR_HOP, NEXTHDR_ROUTING,
};
use crate::stats::WorkerStats;
use crate::wire::{checksum, Ipv4Info, ETH_HLEN};
use hashbrown::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};

/// `net.ipv4.ipfrag_time`: 30 s.
pub const TIMEOUT_NS: u64 = 30_000_000_000;
/// `net.netfilter.nf_conntrack_frag6_timeout`: 60 s.
pub const TIMEOUT6_NS: u64 = 60_000_000_000;
/// `net.ipv4.ipfrag_high_thresh`: 4 MiB held at most (per worker here).
pub const HIGH_THRESH: usize = 4 * 1024 * 1024;
/// Datagrams being reassembled at most.
pub const MAX_QUEUES: usize = 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Key {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
    id: u16,
}

#[derive(Debug)]
struct Queue {
    /// (offset, data) sorted by offset, non-overlapping.
    parts: Vec<(usize, Vec<u8>)>,
    /// The first fragment's headers (IPv4: Ethernet + IPv4 header; IPv6: the whole first fragment).
    head: Option<Vec<u8>>,
    /// Payload length, known once the last fragment (MF clear) arrived.
    total: Option<usize>,
    bytes: usize,
    max_frag: usize,
    started: u64,
}

/// What one fragment did to its datagram's queue.
enum Outcome {
    /// Held (or an exact duplicate of what is held, ignored as the kernel does).
    Held,
    /// The datagram is complete: its queue, parts in order.
    Whole(Queue),
    /// Malformed or overlapping: the fragment (and its datagram's queue) dropped.
    Invalid,
    /// Memory or queue limit reached: the fragment dropped.
    Overflow,
}

/// Reassembly queues by datagram key, bounded in memory and count (shared by both families).
#[derive(Debug)]
struct Frags<K> {
    queues: HashMap<K, Queue>,
    held: usize,
}

impl<K> Default for Frags<K> {
    fn default() -> Self {
        Frags {
            queues: HashMap::new(),
            held: 0,
        }
    }
}

impl<K: std::hash::Hash + Eq + Copy> Frags<K> {
    /// Queues `data` at byte `offset` of datagram `key`; `head` is kept when `offset` is 0, `len`
    /// (the fragment's IP length) feeds `frag_max_size`.
    #[allow(clippy::too_many_arguments)]
    fn insert(
        &mut self,
        key: K,
        offset: usize,
        more: bool,
        data: &[u8],
        len: usize,
        head: &[u8],
        now: u64,
    ) -> Outcome {
        if !self.queues.contains_key(&key)
            && (self.queues.len() >= MAX_QUEUES || self.held + data.len() > HIGH_THRESH)
        {
            return Outcome::Overflow;
        }
        if self.held + data.len() > HIGH_THRESH {
            self.drop_queue(&key);
            return Outcome::Overflow;
        }
        let q = self.queues.entry(key).or_insert_with(|| Queue {
            parts: Vec::new(),
            head: None,
            total: None,
            bytes: 0,
            max_frag: 0,
            started: now,
        });
        let end = offset + data.len();
        // Overlap with what is held (exact duplicates are ignored, as the kernel does).
        let mut duplicate = false;
        for (o, d) in &q.parts {
            let (a, b) = (*o, *o + d.len());
            if offset < b && a < end {
                if a == offset && b == end {
                    duplicate = true;
                } else {
                    self.drop_queue(&key);
                    return Outcome::Invalid;
                }
            }
        }
        if duplicate {
            return Outcome::Held;
        }
        if !more {
            if q.total.is_some_and(|t| t != end) || q.parts.iter().any(|(o, d)| o + d.len() > end) {
                self.drop_queue(&key);
                return Outcome::Invalid;
            }
            q.total = Some(end);
        } else if q.total.is_some_and(|t| end > t) {
            self.drop_queue(&key);
            return Outcome::Invalid;
        }
        if offset == 0 {
            q.head = Some(head.to_vec());
        }
        let pos = q.parts.partition_point(|(o, _)| *o < offset);
        q.parts.insert(pos, (offset, data.to_vec()));
        q.bytes += data.len();
        q.max_frag = q.max_frag.max(len);
        self.held += data.len();
        // Whole when the pieces cover 0..total without a gap.
        let Some(total) = q.total else {
            return Outcome::Held;
        };
        if q.head.is_none() {
            return Outcome::Held;
        }
        let mut at = 0;
        for (o, d) in &q.parts {
            if *o != at {
                return Outcome::Held;
            }
            at += d.len();
        }
        if at != total {
            return Outcome::Held;
        }
        let q = self.queues.remove(&key).unwrap();
        self.held -= q.bytes;
        Outcome::Whole(q)
    }

    fn drop_queue(&mut self, key: &K) {
        if let Some(q) = self.queues.remove(key) {
            self.held -= q.bytes;
        }
    }

    /// Drops the queues older than `timeout`; calls `expired` with the first fragment's head of each
    /// that had one. Returns how many were dropped.
    fn expire(&mut self, now: u64, timeout: u64, mut expired: impl FnMut(Vec<u8>)) -> u64 {
        let mut freed = 0;
        let before = self.queues.len();
        self.queues.retain(|_, q| {
            let keep = now.saturating_sub(q.started) < timeout;
            if !keep {
                freed += q.bytes;
                if let Some(h) = q.head.take() {
                    expired(h);
                }
            }
            keep
        });
        self.held -= freed;
        (before - self.queues.len()) as u64
    }
}

/// A reassembled datagram: the whole frame and the largest fragment (IP length) it came in.
pub struct Whole {
    pub frame: Vec<u8>,
    pub frag_max_size: usize,
    /// The data length of each fragment, in offset order
    pub pieces: Vec<usize>,
}

#[derive(Debug, Default)]
pub struct Defrag {
    frags: Frags<Key>,
}

impl Defrag {
    /// Adds the fragment in `frame`; returns the whole datagram when this fragment completes it.
    pub fn add(
        &mut self,
        frame: &[u8],
        ip: &Ipv4Info,
        now: u64,
        stats: &mut WorkerStats,
    ) -> Option<Whole> {
        stats.defrag_fragments += 1;
        let nh = ip.nh_off;
        let hl = ip.header_len;
        let off_field = u16::from_be_bytes([frame[nh + 6], frame[nh + 7]]);
        let offset = (off_field & 0x1fff) as usize * 8;
        let more = off_field & 0x2000 != 0;
        let data = &frame[nh + hl..nh + ip.total_len];
        if (more && !data.len().is_multiple_of(8))
            || data.is_empty()
            || offset + data.len() > 65535 - hl
        {
            stats.defrag_invalid += 1;
            return None;
        }
        let key = Key {
            src: ip.src,
            dst: ip.dst,
            proto: ip.proto,
            id: u16::from_be_bytes([frame[nh + 4], frame[nh + 5]]),
        };
        let q = match self.frags.insert(
            key,
            offset,
            more,
            data,
            ip.total_len,
            &frame[..nh + hl],
            now,
        ) {
            Outcome::Held => return None,
            Outcome::Invalid => {
                stats.defrag_invalid += 1;
                return None;
            }
            Outcome::Overflow => {
                stats.defrag_overflow += 1;
                return None;
            }
            Outcome::Whole(q) => q,
        };
        let total = q.total.unwrap_or(0);
        let mut frame = q.head.unwrap_or_default();
        let hl = frame.len() - ETH_HLEN;
        for (_, d) in &q.parts {
            frame.extend_from_slice(d);
        }
        let h = &mut frame[ETH_HLEN..ETH_HLEN + hl];
        h[2..4].copy_from_slice(&((hl + total) as u16).to_be_bytes());
        let df = u16::from_be_bytes([h[6], h[7]]) & 0x4000;
        h[6..8].copy_from_slice(&df.to_be_bytes());
        h[10..12].fill(0);
        let c = checksum(h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        stats.defrag_reassembled += 1;
        Some(Whole {
            frame,
            frag_max_size: q.max_frag,
            pieces: q.parts.iter().map(|(_, d)| d.len()).collect(),
        })
    }

    /// Drops datagrams not completed within `ipfrag_time`.
    pub fn expire(&mut self, now: u64, stats: &mut WorkerStats) {
        stats.defrag_timeout += self.frags.expire(now, TIMEOUT_NS, |_| {});
    }

    /// Bytes held.
    pub fn held(&self) -> usize {
        self.frags.held
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Key6 {
    src: Ipv6Addr,
    dst: Ipv6Addr,
    id: u32,
}

/// IPv6 reassembly before conntrack, as nf_defrag_ipv6 (nf_conntrack_reasm.c): fragments are held per
/// (source, destination, identification); the whole datagram has the headers before the fragment header
/// of the first fragment, without the fragment header. `frag_max_size` is the largest fragment's IPv6
/// length (40 + its payload length): on the way out the datagram is too big only if that is, and it
/// leaves in its pieces ([`refragment_ipv6`]).
#[derive(Debug, Default)]
pub struct Defrag6 {
    frags: Frags<Key6>,
}

/// What [`Defrag6::add`] did with a fragment.
pub enum Frag6Outcome {
    /// Held until the datagram is whole (or ignored as a duplicate): the packet goes no further.
    Held,
    /// Dropped (malformed, overlapping, over the limits): counted.
    Dropped,
    /// Not reassembled; the packet goes on as it is (nf_ct_frag6_gather's "return 0": a jumbo payload,
    /// or a fragment not a multiple of 8 bytes long with more to come, whose datagram is forgotten).
    Pass,
    Whole(Whole),
}

impl Defrag6 {
    /// Adds the fragment in `frame` (described by `ip`, whose `frag` is set).
    pub fn add(
        &mut self,
        frame: &[u8],
        ip: &Ipv6Info,
        now: u64,
        stats: &mut WorkerStats,
    ) -> Frag6Outcome {
        let Some(f) = ip.frag else {
            return Frag6Outcome::Pass;
        };
        stats.defrag6_fragments += 1;
        let nh = ip.nh_off;
        let data_at = f.hdr_off + 8;
        let end_at = nh + ip.total_len;
        if ip.total_len == IPV6_HLEN || data_at > end_at || end_at > frame.len() {
            return Frag6Outcome::Pass;
        }
        let data = &frame[data_at..end_at];
        let key = Key6 {
            src: ip.src,
            dst: ip.dst,
            id: f.id,
        };
        if f.more && !(f.offset + data.len()).is_multiple_of(8) {
            // nf_ct_frag6_queue: the queue is killed, the fragment goes on (-EPROTO)
            self.frags.drop_queue(&key);
            stats.defrag6_invalid += 1;
            return Frag6Outcome::Pass;
        }
        if data.is_empty() || f.offset + data.len() > 65535 {
            stats.defrag6_invalid += 1;
            return Frag6Outcome::Dropped;
        }
        let q = match self.frags.insert(
            key,
            f.offset,
            f.more,
            data,
            ip.total_len,
            &frame[..end_at],
            now,
        ) {
            Outcome::Held => return Frag6Outcome::Held,
            Outcome::Invalid => {
                stats.defrag6_invalid += 1;
                return Frag6Outcome::Dropped;
            }
            Outcome::Overflow => {
                stats.defrag6_overflow += 1;
                return Frag6Outcome::Dropped;
            }
            Outcome::Whole(q) => q,
        };
        // The first fragment's headers up to its fragment header, then the data in order.
        let first = q.head.unwrap_or_default();
        let Ok(fip) = crate::ipv6::parse_fixed_header(&first, ETH_HLEN) else {
            stats.defrag6_invalid += 1;
            return Frag6Outcome::Dropped;
        };
        let Some((hdr_off, prev_nh)) = frag_header_of(&first, &fip) else {
            stats.defrag6_invalid += 1;
            return Frag6Outcome::Dropped;
        };
        let total = q.total.unwrap_or(0);
        let unfrag = hdr_off - ETH_HLEN - IPV6_HLEN;
        if unfrag + total > 65535 {
            stats.defrag6_invalid += 1;
            return Frag6Outcome::Dropped;
        }
        let mut whole = Vec::with_capacity(hdr_off + total);
        whole.extend_from_slice(&first[..hdr_off]);
        whole[prev_nh] = first[hdr_off];
        for (_, d) in &q.parts {
            whole.extend_from_slice(d);
        }
        whole[ETH_HLEN + 4..ETH_HLEN + 6].copy_from_slice(&((unfrag + total) as u16).to_be_bytes());
        stats.defrag6_reassembled += 1;
        Frag6Outcome::Whole(Whole {
            frame: whole,
            frag_max_size: q.max_frag,
            pieces: q.parts.iter().map(|(_, d)| d.len()).collect(),
        })
    }

    /// Drops datagrams not completed within `nf_conntrack_frag6_timeout`; returns the first fragment of
    /// each that had it (the kernel answers those with time exceeded, reassembly time exceeded).
    pub fn expire(&mut self, now: u64, stats: &mut WorkerStats) -> Vec<Vec<u8>> {
        let mut firsts = Vec::new();
        stats.defrag6_timeout += self.frags.expire(now, TIMEOUT6_NS, |h| firsts.push(h));
        firsts
    }

    /// Bytes held.
    pub fn held(&self) -> usize {
        self.frags.held
    }
}

/// Offset of the fragment header in a frame, and of the Next Header byte that names it.
fn frag_header_of(frame: &[u8], ip: &Ipv6Info) -> Option<(usize, usize)> {
    let end = ip.nh_off + ip.total_len;
    let mut next = ip.next_header;
    let mut at = ip.nh_off + 6;
    let mut off = ip.nh_off + IPV6_HLEN;
    loop {
        match next {
            NEXTHDR_FRAGMENT => return Some((off, at)),
            NEXTHDR_HOP | NEXTHDR_ROUTING | NEXTHDR_DEST => {
                let h = frame.get(off..off + 2).filter(|_| off + 2 <= end)?;
                next = h[0];
                at = off;
                off += (h[1] as usize + 1) * 8;
            }
            _ => return None,
        }
    }
}

/// ip6_find_1stfragopt: where the fragmentable part starts (hop-by-hop, routing, and destination
/// options before a routing header stay in every fragment), the offset of the Next Header byte naming
/// what follows, and that value. `None` for a chain past the packet's end.
fn unfragmentable(frame: &[u8], ip: &Ipv6Info) -> Option<(usize, usize, u8)> {
    let end = ip.nh_off + ip.total_len;
    let mut next = ip.next_header;
    let mut at = ip.nh_off + 6;
    let mut off = ip.nh_off + IPV6_HLEN;
    let mut found_rhdr = false;
    loop {
        match next {
            NEXTHDR_HOP | NEXTHDR_ROUTING | NEXTHDR_DEST => {
                if next == NEXTHDR_DEST && found_rhdr {
                    return Some((off, at, next));
                }
                found_rhdr |= next == NEXTHDR_ROUTING;
                let h = frame.get(off..off + 2).filter(|_| off + 2 <= end)?;
                next = h[0];
                at = off;
                off += (h[1] as usize + 1) * 8;
                if off > end {
                    return None;
                }
            }
            _ => return Some((off, at, next)),
        }
    }
}

/// ip6_fragment's slow path: cuts `frame` (an IPv6 packet without a fragment header) into fragments of
/// at most `mtu` bytes, the fragment header after the unfragmentable part, identification `id`.
/// `None` when the headers leave no room for 8 bytes of data.
pub fn fragment_ipv6(frame: &[u8], ip: &Ipv6Info, mtu: usize, id: u32) -> Option<Vec<Vec<u8>>> {
    let (off, _, _) = unfragmentable(frame, ip)?;
    let room = mtu.checked_sub(off - ip.nh_off + 8)? & !7;
    if room == 0 {
        return None;
    }
    let len = ip.nh_off + ip.total_len - off;
    let pieces: Vec<usize> = (0..len)
        .step_by(room)
        .map(|at| room.min(len - at))
        .collect();
    cut_ipv6(frame, ip, &pieces, id)
}

/// ip6_fragment for a datagram nf_defrag_ipv6 reassembled: its fast path sends the fragments it came in
/// again (`pieces`, their data lengths), when they still fit `mtu` and their geometry (every piece but
/// the last a multiple of 8 bytes); else the slow path cuts it to `mtu`.
pub fn refragment_ipv6(
    frame: &[u8],
    ip: &Ipv6Info,
    pieces: &[usize],
    mtu: usize,
    id: u32,
) -> Option<Vec<Vec<u8>>> {
    let (off, _, _) = unfragmentable(frame, ip)?;
    let hlen = off - ip.nh_off;
    let fits = pieces.iter().sum::<usize>() == ip.nh_off + ip.total_len - off
        && pieces.iter().all(|&p| p > 0 && hlen + 8 + p <= mtu)
        && pieces[..pieces.len().saturating_sub(1)]
            .iter()
            .all(|p| p.is_multiple_of(8));
    if fits {
        cut_ipv6(frame, ip, pieces, id)
    } else {
        fragment_ipv6(frame, ip, mtu, id)
    }
}

/// Fragments of `frame` holding `pieces` bytes of its fragmentable part each (they sum to it).
fn cut_ipv6(frame: &[u8], ip: &Ipv6Info, pieces: &[usize], id: u32) -> Option<Vec<Vec<u8>>> {
    let (off, at, next) = unfragmentable(frame, ip)?;
    let hlen = off - ip.nh_off;
    let data = frame.get(off..ip.nh_off + ip.total_len)?;
    let mut out = Vec::with_capacity(pieces.len());
    let mut pos = 0;
    for &len in pieces {
        let more = pos + len < data.len();
        let mut f = Vec::with_capacity(off + 8 + len);
        f.extend_from_slice(&frame[..off]);
        f[at] = NEXTHDR_FRAGMENT;
        f[ip.nh_off + 4..ip.nh_off + 6]
            .copy_from_slice(&((hlen - IPV6_HLEN + 8 + len) as u16).to_be_bytes());
        f.push(next);
        f.push(0);
        f.extend_from_slice(&((pos as u16) | more as u16).to_be_bytes());
        f.extend_from_slice(&id.to_be_bytes());
        f.extend_from_slice(data.get(pos..pos + len)?);
        out.push(f);
        pos += len;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{ipv4_frame, udp_datagram};
    use crate::wire::{fragment_ipv4, parse_ipv4};

    fn frags(mtu: usize) -> (Vec<u8>, Vec<Vec<u8>>) {
        let mut whole = ipv4_frame(
            [192, 0, 2, 2],
            [198, 51, 100, 2],
            17,
            &udp_datagram(1, 2, 1400),
            64,
        );
        crate::testkit::clear_df(&mut whole);
        let ip = parse_ipv4(&whole, ETH_HLEN).unwrap();
        let f = fragment_ipv4(&whole, &ip, mtu).unwrap();
        (whole, f)
    }

    #[test]
    fn reassembles_in_any_order_and_counts() {
        let (whole, mut f) = frags(600);
        assert_eq!(f.len(), 3);
        f.reverse();
        let mut d = Defrag::default();
        let mut s = WorkerStats::default();
        let mut out = None;
        for x in &f {
            let ip = parse_ipv4(x, ETH_HLEN).unwrap();
            assert!(out.is_none());
            out = d.add(x, &ip, 0, &mut s);
        }
        let w = out.expect("whole");
        assert_eq!(w.frame, whole);
        assert_eq!(w.frag_max_size, 596);
        assert_eq!((s.defrag_fragments, s.defrag_reassembled), (3, 1));
        assert_eq!(d.held(), 0);
    }

    #[test]
    fn overlaps_drop_the_datagram_and_timeouts_free_it() {
        let (_, f) = frags(600);
        let mut d = Defrag::default();
        let mut s = WorkerStats::default();
        let ip0 = parse_ipv4(&f[0], ETH_HLEN).unwrap();
        assert!(d.add(&f[0], &ip0, 0, &mut s).is_none());
        // the same fragment again is a duplicate, ignored
        assert!(d.add(&f[0], &ip0, 0, &mut s).is_none());
        assert_eq!(s.defrag_invalid, 0);
        // a fragment starting inside the first overlaps: all is dropped
        let mut bad = f[1].clone();
        bad[ETH_HLEN + 7] -= 1;
        bad[ETH_HLEN + 10..ETH_HLEN + 12].fill(0);
        let c = checksum(&bad[ETH_HLEN..ETH_HLEN + 20]);
        bad[ETH_HLEN + 10..ETH_HLEN + 12].copy_from_slice(&c.to_be_bytes());
        let ipb = parse_ipv4(&bad, ETH_HLEN).unwrap();
        assert!(d.add(&bad, &ipb, 0, &mut s).is_none());
        assert_eq!(s.defrag_invalid, 1);
        assert_eq!(d.held(), 0);
        assert!(d.add(&f[0], &ip0, 0, &mut s).is_none());
        d.expire(TIMEOUT_NS - 1, &mut s);
        assert!(d.held() > 0);
        d.expire(TIMEOUT_NS, &mut s);
        assert_eq!((d.held(), s.defrag_timeout), (0, 1));
    }

    fn frags6(room: usize) -> (Vec<u8>, Vec<Vec<u8>>) {
        use crate::testkit::{ipv6_frame_ext, CLI6, SRV6};
        // a destination options header before any routing header: unfragmentable, in every piece
        let whole = ipv6_frame_ext(
            CLI6,
            SRV6,
            &[(NEXTHDR_DEST, &[0, 0, 1, 4, 0, 0, 0, 0])],
            17,
            &udp_datagram(1, 2, 1000),
            64,
        );
        let ip = crate::ipv6::parse_ipv6(&whole, ETH_HLEN).unwrap();
        let f = fragment_ipv6(&whole, &ip, room, 0x1234_5678).unwrap();
        (whole, f)
    }

    #[test]
    fn ipv6_fragments_and_reassembles_in_any_order() {
        let (whole, mut f) = frags6(400);
        // 1008 bytes after the destination options, 344 a piece (400 - 48 - 8, rounded down to 8)
        assert_eq!(f.len(), 3);
        assert_eq!(f[0].len() - ETH_HLEN, 48 + 8 + 344);
        let ip0 = crate::ipv6::parse_ipv6(&f[0], ETH_HLEN).unwrap();
        let fr = ip0.frag.unwrap();
        assert_eq!(
            (fr.hdr_off, fr.offset, fr.more, fr.id),
            (62, 0, true, 0x1234_5678)
        );
        let last = crate::ipv6::parse_ipv6(&f[2], ETH_HLEN)
            .unwrap()
            .frag
            .unwrap();
        assert_eq!((last.offset, last.more), (688, false));
        f.swap(0, 2);
        let mut d = Defrag6::default();
        let mut s = WorkerStats::default();
        let mut out = None;
        for x in &f {
            let ip = crate::ipv6::parse_ipv6(x, ETH_HLEN).unwrap();
            assert!(out.is_none());
            match d.add(x, &ip, 0, &mut s) {
                Frag6Outcome::Held => {}
                Frag6Outcome::Whole(w) => out = Some(w),
                _ => panic!("not held"),
            }
        }
        let w = out.expect("whole");
        assert_eq!(w.frame, whole);
        assert_eq!(w.frag_max_size, 400);
        assert_eq!((s.defrag6_fragments, s.defrag6_reassembled), (3, 1));
        assert_eq!(d.held(), 0);
    }

    #[test]
    fn ipv6_overlaps_drop_misaligned_pass_and_timeouts_return_the_first() {
        let (_, f) = frags6(400);
        let mut d = Defrag6::default();
        let mut s = WorkerStats::default();
        let p = |x: &[u8]| crate::ipv6::parse_ipv6(x, ETH_HLEN).unwrap();
        assert!(matches!(
            d.add(&f[0], &p(&f[0]), 0, &mut s),
            Frag6Outcome::Held
        ));
        // a duplicate is ignored
        assert!(matches!(
            d.add(&f[0], &p(&f[0]), 0, &mut s),
            Frag6Outcome::Held
        ));
        // the second piece moved 8 bytes back overlaps the first: all is dropped
        let mut bad = f[1].clone();
        let at = p(&bad).frag.unwrap().hdr_off + 2;
        let off = u16::from_be_bytes([bad[at], bad[at + 1]]) - 8;
        bad[at..at + 2].copy_from_slice(&off.to_be_bytes());
        assert!(matches!(
            d.add(&bad, &p(&bad), 0, &mut s),
            Frag6Outcome::Dropped
        ));
        assert_eq!((s.defrag6_invalid, d.held()), (1, 0));
        // a piece with more to come whose end is not a multiple of 8 passes on unreassembled
        let mut odd = f[1].clone();
        odd.pop();
        let pl = u16::from_be_bytes([odd[ETH_HLEN + 4], odd[ETH_HLEN + 5]]) - 1;
        odd[ETH_HLEN + 4..ETH_HLEN + 6].copy_from_slice(&pl.to_be_bytes());
        assert!(matches!(
            d.add(&odd, &p(&odd), 0, &mut s),
            Frag6Outcome::Pass
        ));
        assert_eq!(s.defrag6_invalid, 2);
        // the first piece waits 60 s, then comes back for the time-exceeded error
        assert!(matches!(
            d.add(&f[0], &p(&f[0]), 0, &mut s),
            Frag6Outcome::Held
        ));
        assert!(d.expire(TIMEOUT6_NS - 1, &mut s).is_empty());
        assert_eq!(d.expire(TIMEOUT6_NS, &mut s), vec![f[0].clone()]);
        assert_eq!((d.held(), s.defrag6_timeout), (0, 1));
    }
}
