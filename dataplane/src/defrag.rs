//! IPv4 reassembly before conntrack, as nf_defrag_ipv4 (priority -400) does when connection tracking is
//! in use: fragments are held per (source, destination, protocol, ID) until the datagram is whole, then it
//! goes through the hooks as one packet and leaves fragmented again to the largest fragment size seen
//! (`frag_max_size`). Bounded like the kernel's `ipfrag_high_thresh` and `ipfrag_time`; overlapping
//! fragments drop the whole datagram (as inet_frag_queue_insert does). Every outcome is counted.

use crate::stats::WorkerStats;
use crate::wire::{checksum, Ipv4Info, ETH_HLEN};
use hashbrown::HashMap;
use std::net::Ipv4Addr;

/// `net.ipv4.ipfrag_time`: 30 s.
pub const TIMEOUT_NS: u64 = 30_000_000_000;
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
    /// Ethernet + IPv4 header of the first fragment.
    head: Option<Vec<u8>>,
    /// Payload length, known once the last fragment (MF clear) arrived.
    total: Option<usize>,
    bytes: usize,
    max_frag: usize,
    started: u64,
}

/// A reassembled datagram: the whole frame and the largest fragment (IP length) it came in.
pub struct Whole {
    pub frame: Vec<u8>,
    pub frag_max_size: usize,
}

#[derive(Debug, Default)]
pub struct Defrag {
    queues: HashMap<Key, Queue>,
    held: usize,
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
        if !self.queues.contains_key(&key)
            && (self.queues.len() >= MAX_QUEUES || self.held + data.len() > HIGH_THRESH)
        {
            stats.defrag_overflow += 1;
            return None;
        }
        if self.held + data.len() > HIGH_THRESH {
            stats.defrag_overflow += 1;
            self.drop_queue(&key);
            return None;
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
                    stats.defrag_invalid += 1;
                    self.drop_queue(&key);
                    return None;
                }
            }
        }
        if duplicate {
            return None;
        }
        if !more {
            if q.total.is_some_and(|t| t != end) || q.parts.iter().any(|(o, d)| o + d.len() > end) {
                stats.defrag_invalid += 1;
                self.drop_queue(&key);
                return None;
            }
            q.total = Some(end);
        } else if q.total.is_some_and(|t| end > t) {
            stats.defrag_invalid += 1;
            self.drop_queue(&key);
            return None;
        }
        if offset == 0 {
            q.head = Some(frame[..nh + hl].to_vec());
        }
        let pos = q.parts.partition_point(|(o, _)| *o < offset);
        q.parts.insert(pos, (offset, data.to_vec()));
        q.bytes += data.len();
        q.max_frag = q.max_frag.max(ip.total_len);
        self.held += data.len();
        // Whole when the pieces cover 0..total without a gap.
        let total = q.total?;
        q.head.as_ref()?;
        let mut at = 0;
        for (o, d) in &q.parts {
            if *o != at {
                return None;
            }
            at += d.len();
        }
        if at != total {
            return None;
        }
        let q = self.queues.remove(&key).unwrap();
        self.held -= q.bytes;
        let mut frame = q.head.unwrap();
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
        })
    }

    fn drop_queue(&mut self, key: &Key) {
        if let Some(q) = self.queues.remove(key) {
            self.held -= q.bytes;
        }
    }

    /// Drops datagrams not completed within `ipfrag_time`.
    pub fn expire(&mut self, now: u64, stats: &mut WorkerStats) {
        let mut freed = 0;
        let before = self.queues.len();
        self.queues.retain(|_, q| {
            let keep = now.saturating_sub(q.started) < TIMEOUT_NS;
            if !keep {
                freed += q.bytes;
            }
            keep
        });
        stats.defrag_timeout += (before - self.queues.len()) as u64;
        self.held -= freed;
    }

    /// Bytes held.
    pub fn held(&self) -> usize {
        self.held
    }
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
        whole[ETH_HLEN + 6] = 0; // no DF
        let h = &mut whole[ETH_HLEN..ETH_HLEN + 20];
        h[10..12].fill(0);
        let c = checksum(h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
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
}
