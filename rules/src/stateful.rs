//! The state behind `limit` and `quota` (statements and named objects), shared by every worker that
//! evaluates the same compiled ruleset: like the kernel's, a limit is one bucket and a quota one byte
//! count for the whole box, not one per CPU. Both are a single atomic word updated with a
//! compare-and-swap, so the packet path takes no lock.
//!
//! The arithmetic is the kernel's (`net/netfilter/nft_limit.c`, `nft_quota.c`): a token bucket counted
//! in nanoseconds. A packet rate's bucket holds `burst` packets of `unit / rate` ns each (a rate
//! without a burst gets the kernel's default burst of 5); a byte rate's holds
//! `unit * (rate + burst) / rate` ns and a packet costs `unit * len / rate` ns. The differential case
//! `limit-burst` checks both against the kernel.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use crate::stmt::limit::{Limit, Quota};

/// NFT_LIMIT_PKT_BURST_DEFAULT
const PKT_BURST_DEFAULT: u64 = 5;
const NSEC_PER_SEC: u64 = 1_000_000_000;

/// A compiled `limit rate [over] …`.
#[derive(Debug)]
pub struct LimitState {
    /// nanoseconds one packet costs (packet rates); 0 for byte rates
    pkt_cost: u64,
    /// the period in ns and the rate, for the per-byte cost
    nsecs: u64,
    rate: u64,
    /// bucket size in ns
    tokens_max: u64,
    over: bool,
    /// the time (ns) at which the bucket was empty: tokens at `now` = min(tokens_max, now - empty_at).
    /// `i64::MIN` until the first packet: a full bucket, whatever the clock's origin.
    empty_at: AtomicI64,
}

impl LimitState {
    /// `None` when the kernel would refuse the values (zero rate, overflow): EOVERFLOW.
    pub fn new(l: &Limit) -> Option<LimitState> {
        let nsecs = l.unit.checked_mul(NSEC_PER_SEC)?;
        if l.rate == 0 {
            return None;
        }
        let burst = if !l.bytes && l.burst == 0 {
            PKT_BURST_DEFAULT
        } else {
            l.burst
        };
        let with_burst = l.rate.checked_add(burst)?;
        let (pkt_cost, tokens_max) = if l.bytes {
            (
                0,
                u64::try_from((nsecs as u128 * with_burst as u128) / l.rate as u128).ok()?,
            )
        } else {
            let cost = nsecs / l.rate;
            (cost, cost.checked_mul(burst)?)
        };
        Some(LimitState {
            pkt_cost,
            nsecs,
            rate: l.rate,
            tokens_max,
            over: l.over,
            empty_at: AtomicI64::new(i64::MIN),
        })
    }

    /// Whether the statement matches a packet of `len` bytes at `now` (ns): within the rate for
    /// `limit rate N/…`, above it for `limit rate over N/…`. Takes the packet's tokens when within.
    pub fn matches(&self, now: u64, len: u32) -> bool {
        let cost = if self.pkt_cost != 0 {
            self.pkt_cost
        } else {
            ((self.nsecs as u128 * len as u128) / self.rate as u128).min(i64::MAX as u128) as u64
        };
        let now = now.min(i64::MAX as u64) as i64;
        let max = self.tokens_max.min(i64::MAX as u64) as i64;
        let mut e = self.empty_at.load(Ordering::Relaxed);
        let within = loop {
            let tokens = (now as i128 - e as i128).min(max as i128);
            if tokens < cost as i128 {
                // the kernel only clamps the bucket here, which changes nothing observable
                break false;
            }
            // spend: tokens' = tokens - cost, i.e. empty_at' = now - tokens'
            let next = (now as i128 - (tokens - cost as i128)) as i64;
            match self
                .empty_at
                .compare_exchange_weak(e, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => break true,
                Err(cur) => e = cur,
            }
        };
        within != self.over
    }
}

/// A compiled `quota [over] N bytes [used M bytes]`.
#[derive(Debug)]
pub struct QuotaState {
    quota: u64,
    over: bool,
    consumed: AtomicU64,
}

impl QuotaState {
    pub fn new(q: &Quota) -> QuotaState {
        QuotaState {
            quota: q.bytes,
            over: q.over,
            consumed: AtomicU64::new(q.used),
        }
    }

    /// Counts the packet's `len` bytes and tells whether the statement matches: `quota N` while the
    /// bytes so far (this packet included) stay below N, `quota over N` from then on.
    pub fn matches(&self, len: u32) -> bool {
        let total = self
            .consumed
            .fetch_add(len as u64, Ordering::Relaxed)
            .wrapping_add(len as u64);
        (total >= self.quota) == self.over
    }

    /// Bytes counted so far (`used` in listings).
    pub fn used(&self) -> u64 {
        self.consumed.load(Ordering::Relaxed)
    }
}

/// A named counter object's packets and bytes, counted by every worker.
#[derive(Debug)]
pub struct SharedCounter {
    packets: AtomicU64,
    bytes: AtomicU64,
}

impl SharedCounter {
    pub fn new(packets: u64, bytes: u64) -> SharedCounter {
        SharedCounter {
            packets: AtomicU64::new(packets),
            bytes: AtomicU64::new(bytes),
        }
    }
    pub fn add(&self, len: u32) {
        self.packets.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(len as u64, Ordering::Relaxed);
    }
    pub fn get(&self) -> (u64, u64) {
        (
            self.packets.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(rate: u64, unit: u64, bytes: bool, burst: u64, over: bool) -> LimitState {
        LimitState::new(&Limit {
            over,
            rate,
            unit,
            bytes,
            burst,
        })
        .unwrap()
    }

    #[test]
    fn packet_rate_passes_the_default_burst_then_refills() {
        // 10/second, burst 5 (default): the bucket holds 0.5 s of tokens, a packet costs 0.1 s
        let l = limit(10, 1, false, 0, false);
        let t0 = 5 * NSEC_PER_SEC;
        let passed = (0..100).filter(|_| l.matches(t0, 60)).count();
        assert_eq!(passed, 5);
        // 0.35 s later: 3 more tokens
        let t1 = t0 + 350_000_000;
        assert_eq!((0..100).filter(|_| l.matches(t1, 60)).count(), 3);
    }

    #[test]
    fn over_is_the_complement() {
        let l = limit(2, 60, false, 1, true);
        let got: Vec<bool> = (0..5).map(|_| l.matches(0, 60)).collect();
        // bucket: 1 packet's worth (burst 1)
        assert_eq!(got, [false, true, true, true, true]);
    }

    #[test]
    fn byte_rate_costs_by_length() {
        // 1000 bytes/second, no burst: a 1 s bucket
        let l = limit(1000, 1, true, 0, false);
        assert!(l.matches(0, 600));
        assert!(!l.matches(0, 600));
        assert!(l.matches(0, 400));
        assert!(l.matches(NSEC_PER_SEC / 2, 500));
    }

    #[test]
    fn kernel_refuses_zero_rate_and_overflow() {
        assert!(LimitState::new(&Limit {
            over: false,
            rate: 0,
            unit: 1,
            bytes: false,
            burst: 0
        })
        .is_none());
        assert!(LimitState::new(&Limit {
            over: false,
            rate: 1,
            unit: u64::MAX / 2,
            bytes: false,
            burst: 0
        })
        .is_none());
    }

    #[test]
    fn quota_matches_until_reached_and_over_after() {
        let q = QuotaState::new(&Quota {
            over: false,
            bytes: 250,
            used: 0,
        });
        let got: Vec<bool> = (0..4).map(|_| q.matches(100)).collect();
        assert_eq!(got, [true, true, false, false]);
        assert_eq!(q.used(), 400);
        let o = QuotaState::new(&Quota {
            over: true,
            bytes: 250,
            used: 200,
        });
        assert!(o.matches(100));
    }
}
