//! Keeping both directions of a flow on one worker.
//!
//! With several RX queues the NIC (or veth, which has no RSS at all) may deliver the two directions of a
//! connection to different workers, and each worker keeps its own conntrack table. Every frame therefore
//! has an owner — a symmetric hash of its flow, the same for both directions and for ICMP errors quoting the
//! flow — and a frame that arrives at another worker is passed to its owner over a lock-free ring
//! (VPP's handoff nodes, Katran's per-CPU tables). Frame buffers travel in boxes that come back through a free
//! ring, so the steady state allocates nothing.

use crossbeam::queue::ArrayQueue;
use std::sync::Arc;

use crate::wire::{
    ETHERTYPE_IPV4, ETHERTYPE_IPV6, ETH_HLEN, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP,
};

/// A frame on its way to its owner.
pub struct HandoffFrame {
    pub len: u16,
    pub port: u16,
    pub kernel_has_copy: bool,
    pub data: [u8; hw::FRAME_CAPACITY],
}

/// One direction between two workers: frames go over `ready`, their boxes come back over `free`.
pub struct Lane {
    ready: ArrayQueue<Box<HandoffFrame>>,
    free: ArrayQueue<Box<HandoffFrame>>,
}

impl Lane {
    fn new(depth: usize) -> Lane {
        let free = ArrayQueue::new(depth);
        for _ in 0..depth {
            let _ = free.push(Box::new(HandoffFrame {
                len: 0,
                port: 0,
                kernel_has_copy: false,
                data: [0; hw::FRAME_CAPACITY],
            }));
        }
        Lane {
            ready: ArrayQueue::new(depth),
            free,
        }
    }
}

/// One worker's ends of the mesh: `to[w]` carries frames to worker `w`, `from[w]` frames from it.
pub struct HandoffEnd {
    pub id: usize,
    pub workers: usize,
    to: Vec<Option<Arc<Lane>>>,
    from: Vec<Option<Arc<Lane>>>,
}

/// Builds the full mesh for `workers` workers with `depth` frames in flight per direction.
pub fn mesh(workers: usize, depth: usize) -> Vec<HandoffEnd> {
    let lanes: Vec<Vec<Option<Arc<Lane>>>> = (0..workers)
        .map(|a| {
            (0..workers)
                .map(|b| (a != b).then(|| Arc::new(Lane::new(depth))))
                .collect()
        })
        .collect();
    (0..workers)
        .map(|id| HandoffEnd {
            id,
            workers,
            to: (0..workers).map(|b| lanes[id][b].clone()).collect(),
            from: (0..workers).map(|a| lanes[a][id].clone()).collect(),
        })
        .collect()
}

impl HandoffEnd {
    /// Passes `frame` to worker `owner`. False when that lane is full (the caller counts a drop).
    pub fn send(&self, owner: usize, frame: &[u8], port: u16, kernel_has_copy: bool) -> bool {
        let Some(lane) = self.to.get(owner).and_then(|l| l.as_ref()) else {
            return false;
        };
        let Some(mut b) = lane.free.pop() else {
            return false;
        };
        let len = frame.len().min(hw::FRAME_CAPACITY);
        b.data[..len].copy_from_slice(&frame[..len]);
        b.len = len as u16;
        b.port = port;
        b.kernel_has_copy = kernel_has_copy;
        lane.ready.push(b).is_ok()
    }

    /// Calls `f` for every frame other workers passed here, up to `budget`, and returns the buffers.
    pub fn drain(&self, budget: usize, mut f: impl FnMut(&mut HandoffFrame)) -> usize {
        let mut n = 0;
        for lane in self.from.iter().flatten() {
            while n < budget {
                let Some(mut b) = lane.ready.pop() else { break };
                f(&mut b);
                let _ = lane.free.push(b);
                n += 1;
            }
        }
        n
    }
}

fn mix(mut h: u64) -> u64 {
    // splitmix64 finaliser: cheap, and spreads the bits of a small key well.
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58476d1ce4e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d049bb133111eb);
    h ^ (h >> 31)
}

fn symmetric(a: u128, b: u128, pa: u16, pb: u16, proto: u8) -> u64 {
    let (lo, hi) = if (a, pa) <= (b, pb) {
        ((a, pa), (b, pb))
    } else {
        ((b, pb), (a, pa))
    };
    let folded = (lo.0 as u64)
        ^ ((lo.0 >> 64) as u64).rotate_left(7)
        ^ (hi.0 as u64).rotate_left(17)
        ^ ((hi.0 >> 64) as u64).rotate_left(29);
    mix(folded ^ ((lo.1 as u64) << 16 | hi.1 as u64) << 8 ^ proto as u64)
}

fn ipv4_flow(ip: &[u8], depth: u8) -> Option<u64> {
    if ip.len() < 20 || ip[0] >> 4 != 4 {
        return None;
    }
    let ihl = (ip[0] & 0xf) as usize * 4;
    let src = u32::from_be_bytes(ip[12..16].try_into().ok()?) as u128;
    let dst = u32::from_be_bytes(ip[16..20].try_into().ok()?) as u128;
    let proto = ip[9];
    let fragment = u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0;
    let l4 = ip.get(ihl..)?;
    let (sp, dp) = match proto {
        _ if fragment => (0, 0),
        IPPROTO_TCP | IPPROTO_UDP if l4.len() >= 4 => (
            u16::from_be_bytes([l4[0], l4[1]]),
            u16::from_be_bytes([l4[2], l4[3]]),
        ),
        // An ICMP error belongs to the flow it quotes.
        IPPROTO_ICMP if depth == 0 && l4.len() >= 8 && matches!(l4[0], 3 | 4 | 5 | 11 | 12) => {
            return ipv4_flow(&l4[8..], 1);
        }
        _ => (0, 0),
    };
    Some(symmetric(src, dst, sp, dp, proto))
}

fn ipv6_flow(ip: &[u8]) -> Option<u64> {
    if ip.len() < 40 {
        return None;
    }
    let src = u128::from_be_bytes(ip[8..24].try_into().ok()?);
    let dst = u128::from_be_bytes(ip[24..40].try_into().ok()?);
    let next = ip[6];
    let (sp, dp) = match next {
        IPPROTO_TCP | IPPROTO_UDP if ip.len() >= 44 => (
            u16::from_be_bytes([ip[40], ip[41]]),
            u16::from_be_bytes([ip[42], ip[43]]),
        ),
        _ => (0, 0),
    };
    Some(symmetric(src, dst, sp, dp, next))
}

/// The owner of an IPv4 TCP/UDP flow given by its tuple (the same hash as [`flow_owner`] on a frame).
pub fn ipv4_tuple_owner(
    src: std::net::Ipv4Addr,
    dst: std::net::Ipv4Addr,
    sport: u16,
    dport: u16,
    proto: u8,
    workers: usize,
) -> usize {
    let h = symmetric(
        src.to_bits() as u128,
        dst.to_bits() as u128,
        sport,
        dport,
        proto,
    );
    (h % workers.max(1) as u64) as usize
}

/// The worker (of `workers`) that owns the flow of `frame`; `None` for frames that are not per-flow
/// (ARP, malformed), which any worker may handle.
pub fn flow_owner(frame: &[u8], workers: usize) -> Option<usize> {
    if workers <= 1 || frame.len() < ETH_HLEN {
        return None;
    }
    let ethertype = u16::from_be_bytes([frame[12], frame[13]]);
    let h = match ethertype {
        ETHERTYPE_IPV4 => ipv4_flow(&frame[ETH_HLEN..], 0)?,
        ETHERTYPE_IPV6 => ipv6_flow(&frame[ETH_HLEN..])?,
        _ => return None,
    };
    Some((h % workers as u64) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::tests::{ipv4_frame, tcp_header};

    #[test]
    fn both_directions_and_quoting_icmp_errors_share_an_owner() {
        let mut spread = [0usize; 4];
        for port in 1000..1400u16 {
            let fwd = ipv4_frame(
                [192, 0, 2, 2],
                [198, 51, 100, 2],
                IPPROTO_TCP,
                &tcp_header(port, 80, 2),
                64,
            );
            let rev = ipv4_frame(
                [198, 51, 100, 2],
                [192, 0, 2, 2],
                IPPROTO_TCP,
                &tcp_header(80, port, 18),
                64,
            );
            let owner = flow_owner(&fwd, 4).unwrap();
            assert_eq!(owner, flow_owner(&rev, 4).unwrap());
            let mut icmp = vec![3, 3, 0, 0, 0, 0, 0, 0];
            icmp.extend_from_slice(&fwd[ETH_HLEN..ETH_HLEN + 28]);
            let err = ipv4_frame([198, 51, 100, 1], [192, 0, 2, 2], IPPROTO_ICMP, &icmp, 64);
            assert_eq!(flow_owner(&err, 4), Some(owner));
            spread[owner] += 1;
        }
        assert!(
            spread.iter().all(|&n| n > 60),
            "flows spread over workers: {spread:?}"
        );
        assert_eq!(flow_owner(&[0u8; 10], 4), None);
    }

    #[test]
    fn frames_travel_and_buffers_come_back() {
        let ends = mesh(2, 2);
        assert!(ends[0].send(1, &[1, 2, 3], 1, false));
        assert!(ends[0].send(1, &[4], 0, true));
        assert!(!ends[0].send(1, &[5], 0, false), "lane depth is bounded");
        let mut got = Vec::new();
        assert_eq!(
            ends[1].drain(16, |f| got
                .push((f.data[..f.len as usize].to_vec(), f.port))),
            2
        );
        assert_eq!(got, vec![(vec![1, 2, 3], 1), (vec![4], 0)]);
        assert!(ends[0].send(1, &[6], 0, false), "buffers were returned");
    }
}
