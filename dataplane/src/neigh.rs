//! Neighbours: IPv4 → MAC per interface, learned from ARP, with a bounded queue of packets waiting for
//! resolution. One table per worker, so lookups take no lock.

use hashbrown::HashMap;
use std::hash::Hash;
use std::net::Ipv4Addr;

/// How long a learned entry is trusted before it is resolved again.
pub const REACHABLE_NS: u64 = 30_000_000_000;
/// Interval between ARP requests for an unresolved neighbour.
pub const RETRY_NS: u64 = 1_000_000_000;
/// Requests sent before the neighbour is declared failed and its queued packets dropped.
pub const MAX_PROBES: u8 = 3;
/// Packets held per unresolved neighbour (the kernel's `unres_qlen` is similar in spirit).
pub const PENDING_PER_NEIGHBOUR: usize = 8;
/// Packets held for all unresolved neighbours together.
pub const PENDING_TOTAL: usize = 256;

#[derive(Debug)]
enum State {
    Reachable {
        mac: [u8; 6],
        confirmed_at: u64,
    },
    Incomplete {
        probes: u8,
        last_probe: u64,
        pending: Vec<Vec<u8>>,
    },
    Failed {
        at: u64,
    },
    /// Configured by hand (`ip neigh add … nud permanent`, a replay topology): never expires or changes.
    Permanent {
        mac: [u8; 6],
    },
}

/// What the caller must do after [`NeighTable::resolve`] missed.
#[derive(Debug, PartialEq, Eq)]
pub enum Miss {
    /// The packet was queued; send an ARP request now.
    QueuedSendRequest,
    /// The packet was queued; a request is already out.
    Queued,
    /// The queue is full: drop the packet.
    Overflow,
    /// The neighbour did not answer recently: drop the packet.
    Failed,
}

/// One address family's neighbours: `NeighTable` (IPv4, resolved by ARP) or `NeighTable<Ipv6Addr>`
/// (resolved by neighbour discovery); both hold the same bounded pending queues.
pub struct NeighTable<A = Ipv4Addr> {
    entries: HashMap<(usize, A), State>,
    pending_total: usize,
}

impl<A> Default for NeighTable<A> {
    fn default() -> Self {
        NeighTable {
            entries: HashMap::new(),
            pending_total: 0,
        }
    }
}

impl<A: Copy + Eq + Hash> NeighTable<A> {
    pub fn lookup(&self, iface: usize, ip: A, now: u64) -> Option<[u8; 6]> {
        match self.entries.get(&(iface, ip)) {
            Some(State::Reachable { mac, confirmed_at })
                if now.saturating_sub(*confirmed_at) < REACHABLE_NS =>
            {
                Some(*mac)
            }
            Some(State::Permanent { mac }) => Some(*mac),
            _ => None,
        }
    }

    /// Holds `frame` until `ip` on `iface` resolves.
    pub fn enqueue(&mut self, iface: usize, ip: A, frame: &[u8], now: u64) -> Miss {
        let entry = self
            .entries
            .entry((iface, ip))
            .or_insert(State::Incomplete {
                probes: 0,
                last_probe: 0,
                pending: Vec::new(),
            });
        if let State::Failed { at } = entry {
            if now.saturating_sub(*at) < RETRY_NS * MAX_PROBES as u64 {
                return Miss::Failed;
            }
            *entry = State::Incomplete {
                probes: 0,
                last_probe: 0,
                pending: Vec::new(),
            };
        }
        if let State::Reachable { .. } = entry {
            // Stale: resolve again, as the kernel does from STALE.
            *entry = State::Incomplete {
                probes: 0,
                last_probe: 0,
                pending: Vec::new(),
            };
        }
        let State::Incomplete {
            probes,
            last_probe,
            pending,
        } = entry
        else {
            unreachable!()
        };
        if pending.len() >= PENDING_PER_NEIGHBOUR || self.pending_total >= PENDING_TOTAL {
            return Miss::Overflow;
        }
        pending.push(frame.to_vec());
        self.pending_total += 1;
        if *probes == 0 {
            *probes = 1;
            *last_probe = now;
            Miss::QueuedSendRequest
        } else {
            Miss::Queued
        }
    }

    /// Records that `ip` on `iface` is at `mac`. Returns the frames that were waiting for it (the caller
    /// fills in their Ethernet header and sends them).
    pub fn learn(&mut self, iface: usize, ip: A, mac: [u8; 6], now: u64) -> Vec<Vec<u8>> {
        if let Some(State::Permanent { .. }) = self.entries.get(&(iface, ip)) {
            return Vec::new();
        }
        let old = self.entries.insert(
            (iface, ip),
            State::Reachable {
                mac,
                confirmed_at: now,
            },
        );
        match old {
            Some(State::Incomplete { pending, .. }) => {
                self.pending_total -= pending.len();
                pending
            }
            _ => Vec::new(),
        }
    }

    /// Adds a permanent entry (a static neighbour).
    pub fn add_permanent(&mut self, iface: usize, ip: A, mac: [u8; 6]) {
        if let Some(State::Incomplete { pending, .. }) =
            self.entries.insert((iface, ip), State::Permanent { mac })
        {
            self.pending_total -= pending.len();
        }
    }

    /// Whether an entry for `ip` exists in any state (the kernel updates, but does not create, entries from
    /// ARP traffic that was not addressed to it).
    pub fn knows(&self, iface: usize, ip: A) -> bool {
        self.entries.contains_key(&(iface, ip))
    }

    /// Retransmits and gives up on unresolved neighbours. Calls `send_request(iface, ip)` for each
    /// retransmission and `failed(iface, frame)` for each queued packet dropped because its neighbour did
    /// not answer (the kernel answers those with ICMP host-unreachable); returns how many were dropped.
    pub fn on_timer(
        &mut self,
        now: u64,
        mut send_request: impl FnMut(usize, A),
        mut failed: impl FnMut(usize, Vec<u8>),
    ) -> usize {
        let mut dropped = 0;
        for (&(iface, ip), state) in self.entries.iter_mut() {
            if let State::Incomplete {
                probes,
                last_probe,
                pending,
            } = state
            {
                if now.saturating_sub(*last_probe) >= RETRY_NS {
                    if *probes >= MAX_PROBES {
                        dropped += pending.len();
                        for f in pending.drain(..) {
                            failed(iface, f);
                        }
                        *state = State::Failed { at: now };
                    } else {
                        *probes += 1;
                        *last_probe = now;
                        send_request(iface, ip);
                    }
                }
            }
        }
        self.pending_total -= dropped;
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);

    #[test]
    fn queue_then_learn_releases_frames() {
        let mut t = NeighTable::default();
        assert_eq!(t.lookup(0, IP, 0), None);
        assert_eq!(t.enqueue(0, IP, &[1], 0), Miss::QueuedSendRequest);
        assert_eq!(t.enqueue(0, IP, &[2], 1), Miss::Queued);
        let released = t.learn(0, IP, [2, 0, 0, 0, 0, 2], 5);
        assert_eq!(released, vec![vec![1], vec![2]]);
        assert_eq!(t.lookup(0, IP, 6), Some([2, 0, 0, 0, 0, 2]));
        assert_eq!(t.lookup(0, IP, 6 + REACHABLE_NS), None);
    }

    #[test]
    fn pending_queue_is_bounded_and_failure_drops() {
        let mut t = NeighTable::default();
        for i in 0..PENDING_PER_NEIGHBOUR {
            assert_ne!(t.enqueue(0, IP, &[i as u8], 0), Miss::Overflow);
        }
        assert_eq!(t.enqueue(0, IP, &[0], 0), Miss::Overflow);
        let mut requests = 0;
        let mut now = 0;
        let mut dropped = 0;
        for _ in 0..=MAX_PROBES {
            now += RETRY_NS;
            dropped += t.on_timer(now, |_, _| requests += 1, |_, _| {});
        }
        assert_eq!(requests, (MAX_PROBES - 1) as usize);
        assert_eq!(dropped, PENDING_PER_NEIGHBOUR);
        assert_eq!(t.enqueue(0, IP, &[0], now + 1), Miss::Failed);
    }
}
