//! Sets and maps written from the packet path: `add @s { ip saddr }`, `update @s { ip saddr timeout
//! 1m }`, `delete @s { … }`, `update @m { ip saddr : ct mark }`, with per-element `counter`, `limit`
//! and `quota` (meters), element timeouts and the set's `size`, as the kernel's nft_dynset does:
//!
//! - `add` inserts a missing element and leaves an existing one alone; `update` also restarts its
//!   timeout; both then run the element's statements (a `limit` over its rate ends the rule) — and
//!   when the set is full (`size`) the rule does not match;
//! - a map element's data is written when the element is made: neither `add` nor `update` changes
//!   the data of an element already there (nft_dynset_new runs only for a missing key);
//! - an expired element is absent; workers sweep expired ones a few shards at a time.
//!
//! Every worker of a generation shares one table (a kernel set is one set for all CPUs). It is
//! sharded, each shard behind a reader-writer lock: lookups and updates of existing elements take a
//! shard's read lock (element state is atomic), only inserts, deletes and sweeps write. Static
//! elements of the set stay in the compiled set; these hold the dynamic ones (those with a timeout
//! or added by packets). The control plane writes them back into the AST
//! ([`crate::CompiledRuleset::write_state`]), so they are listed and survive the next transaction.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::RwLock;

use crate::stateful::{LimitState, QuotaState, SharedCounter};
use crate::stmt::Stmt;

const SHARDS: usize = 16;
/// `expires` holds a duration still to be started (an element compiled from a listing), not a time.
const RELATIVE: u64 = 1 << 63;

#[derive(Debug)]
pub struct DynElem {
    /// monotonic ns at which it expires; 0: never; `RELATIVE | ns`: that long after first seen
    expires: AtomicU64,
    /// its own timeout (ns), when it differs from the set's
    pub timeout: u64,
    pub counter: Option<SharedCounter>,
    pub limit: Option<LimitState>,
    pub quota: Option<QuotaState>,
    /// the `limit`/`quota` statements it was made with (for listings)
    templates: Vec<Stmt>,
    /// maps: the element's data (for verdict maps, the index of its verdict, 4 bytes big-endian)
    data: Box<[u8]>,
}

impl DynElem {
    fn new<'s>(
        stmts: impl Iterator<Item = &'s Stmt>,
        expires: u64,
        timeout: u64,
        data: &[u8],
    ) -> DynElem {
        let mut e = DynElem {
            expires: AtomicU64::new(expires),
            timeout,
            data: data.into(),
            counter: None,
            limit: None,
            quota: None,
            templates: Vec::new(),
        };
        for s in stmts {
            match s {
                Stmt::Counter(c) => e.counter = Some(SharedCounter::new(c.packets, c.bytes)),
                Stmt::Limit(l) => {
                    e.limit = LimitState::new(l);
                    e.templates.push(s.clone());
                }
                Stmt::Quota(q) => {
                    e.quota = Some(QuotaState::new(q));
                    e.templates.push(s.clone());
                }
                _ => {}
            }
        }
        e
    }

    /// Expiry time at `now` (arming a relative one).
    fn expiry(&self, now: u64) -> u64 {
        let e = self.expires.load(Ordering::Relaxed);
        if e & RELATIVE == 0 {
            return e;
        }
        let at = now.saturating_add(e & !RELATIVE).max(1);
        let _ = self
            .expires
            .compare_exchange(e, at, Ordering::Relaxed, Ordering::Relaxed);
        self.expires.load(Ordering::Relaxed)
    }

    fn live(&self, now: u64) -> bool {
        let e = self.expiry(now);
        e == 0 || e > now
    }

    /// Nanoseconds left at `now` (`None`: no timeout).
    pub fn remaining(&self, now: u64) -> Option<u64> {
        match self.expiry(now) {
            0 => None,
            e => Some(e.saturating_sub(now)),
        }
    }

    /// The element's statements for one packet: `false` when one of them ends the rule.
    fn run(&self, now: u64, len: u32) -> bool {
        if let Some(c) = &self.counter {
            c.add(len);
        }
        if let Some(l) = &self.limit {
            if !l.matches(now, len) {
                return false;
            }
        }
        if let Some(q) = &self.quota {
            if !q.matches(len) {
                return false;
            }
        }
        true
    }
}

/// A live element as a listing shows it (see [`DynSet::elements`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    pub key: Box<[u8]>,
    /// ns left (`None`: no timeout)
    pub left: Option<u64>,
    /// its own timeout (ns; 0: the set's)
    pub timeout: u64,
    /// (packets, bytes) of its counter
    pub counter: Option<(u64, u64)>,
    /// `limit`/`quota` statements, with the quota's use so far
    pub stmts: Vec<Stmt>,
    /// map data (empty for sets)
    pub data: Box<[u8]>,
}

/// One shard of a set's dynamic elements, by key.
type Shard = RwLock<HashMap<Box<[u8]>, DynElem>>;

#[derive(Debug)]
pub struct DynSet {
    shards: Box<[Shard]>,
    /// the set's `timeout` (ns; 0: none)
    pub timeout: u64,
    /// the set's `size` (0: no limit)
    size: usize,
    len: AtomicUsize,
    /// statements every element gets (the set's `counter` flag)
    set_stmts: Vec<Stmt>,
    /// inserts refused because the set was full
    pub full: AtomicU64,
    sweep_next: AtomicUsize,
}

/// What a rule does to the set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DynOpKind {
    Add,
    Update,
    Delete,
}

fn shard_of(k: &[u8]) -> usize {
    // FNV-1a: keys are short and the shards only spread lock traffic
    let mut h: u32 = 0x811c_9dc5;
    for &b in k {
        h = (h ^ b as u32).wrapping_mul(0x0100_0193);
    }
    (h as usize) % SHARDS
}

impl DynSet {
    pub fn new(timeout: u64, size: u64, set_stmts: Vec<Stmt>) -> DynSet {
        DynSet {
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
            timeout,
            size: size as usize,
            len: AtomicUsize::new(0),
            set_stmts,
            full: AtomicU64::new(0),
            sweep_next: AtomicUsize::new(0),
        }
    }

    /// An element from the ruleset's text (a listing written back): `expires_in` ns from when the
    /// dataplane first sees it (0: never); `data` for maps.
    pub fn preload(&self, key: &[u8], expires_in: u64, timeout: u64, stmts: &[Stmt], data: &[u8]) {
        let e = DynElem::new(
            self.set_stmts.iter().chain(stmts),
            if expires_in == 0 {
                0
            } else {
                RELATIVE | expires_in
            },
            timeout,
            data,
        );
        let mut s = self.shards[shard_of(key)].write().unwrap();
        if s.insert(key.into(), e).is_none() {
            self.len.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn contains(&self, key: &[u8], now: u64) -> bool {
        let s = self.shards[shard_of(key)].read().unwrap();
        s.get(key).is_some_and(|e| e.live(now))
    }

    /// A map lookup at `now`: copies the live element's data into `out`, returns its length.
    pub fn get(&self, key: &[u8], now: u64, out: &mut [u8]) -> Option<usize> {
        let s = self.shards[shard_of(key)].read().unwrap();
        let e = s.get(key).filter(|e| e.live(now))?;
        let d = out.get_mut(..e.data.len())?;
        d.copy_from_slice(&e.data);
        Some(e.data.len())
    }

    /// Runs `add`/`update`/`delete` for a packet of `len` bytes at `now`; whether the rule goes on.
    /// `timeout` (ns) is the statement's, 0 for the set's; `stmts` the statement's per-element ones;
    /// `data` what a new map element maps to (empty for sets).
    #[allow(clippy::too_many_arguments)]
    pub fn apply(
        &self,
        op: DynOpKind,
        key: &[u8],
        data: &[u8],
        timeout: u64,
        stmts: &[Stmt],
        now: u64,
        len: u32,
    ) -> bool {
        let sh = &self.shards[shard_of(key)];
        if op == DynOpKind::Delete {
            if sh.write().unwrap().remove(key).is_some() {
                self.len.fetch_sub(1, Ordering::Relaxed);
            }
            return true;
        }
        let timeout_ns = if timeout != 0 { timeout } else { self.timeout };
        {
            let s = sh.read().unwrap();
            if let Some(e) = s.get(key).filter(|e| e.live(now)) {
                if op == DynOpKind::Update && timeout_ns != 0 {
                    e.expires.store(now + timeout_ns, Ordering::Relaxed);
                }
                return e.run(now, len);
            }
        }
        let mut s = sh.write().unwrap();
        // expired in the meantime, or never there
        if let Some(old) = s.get(key) {
            if old.live(now) {
                return old.run(now, len);
            }
            s.remove(key);
            self.len.fetch_sub(1, Ordering::Relaxed);
        }
        // reserve a place: inserts into other shards run at the same time
        let reserved = self
            .len
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (self.size == 0 || n < self.size).then_some(n + 1)
            });
        if reserved.is_err() {
            self.full.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        let e = DynElem::new(
            self.set_stmts.iter().chain(stmts),
            if timeout_ns == 0 { 0 } else { now + timeout_ns },
            if timeout != 0 && timeout != self.timeout {
                timeout
            } else {
                0
            },
            data,
        );
        let go_on = e.run(now, len);
        s.insert(key.into(), e);
        go_on
    }

    /// Removes the expired elements of the next `shards` shards.
    pub fn sweep(&self, now: u64, shards: usize) {
        for _ in 0..shards.min(SHARDS) {
            let i = self.sweep_next.fetch_add(1, Ordering::Relaxed) % SHARDS;
            let mut s = self.shards[i].write().unwrap();
            let before = s.len();
            s.retain(|_, e| e.live(now));
            self.len.fetch_sub(before - s.len(), Ordering::Relaxed);
        }
    }

    /// Live elements, in key order.
    pub fn elements(&self, now: u64) -> Vec<Listed> {
        let mut out = Vec::new();
        for sh in self.shards.iter() {
            for (k, e) in sh.read().unwrap().iter() {
                if e.live(now) {
                    let mut stmts = e.templates.clone();
                    for st in &mut stmts {
                        if let (Stmt::Quota(q), Some(state)) = (st, &e.quota) {
                            q.used = state.used();
                        }
                    }
                    out.push(Listed {
                        key: k.clone(),
                        left: e.remaining(now),
                        timeout: e.timeout,
                        counter: e.counter.as_ref().map(|c| c.get()),
                        stmts,
                        data: e.data.clone(),
                    });
                }
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out
    }

    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stmt::limit::Limit;

    const S: u64 = 1_000_000_000;

    #[test]
    fn add_keeps_update_refreshes_and_elements_expire() {
        let d = DynSet::new(10 * S, 0, vec![]);
        assert!(d.apply(DynOpKind::Add, b"a", b"", 0, &[], S, 60));
        assert!(d.contains(b"a", 5 * S));
        // add does not restart the timeout
        assert!(d.apply(DynOpKind::Add, b"a", b"", 0, &[], 9 * S, 60));
        assert!(!d.contains(b"a", 11 * S + 1));
        assert!(d.apply(DynOpKind::Add, b"b", b"", 0, &[], S, 60));
        assert!(d.apply(DynOpKind::Update, b"b", b"", 0, &[], 9 * S, 60));
        assert!(d.contains(b"b", 18 * S));
        d.sweep(20 * S, SHARDS);
        assert_eq!(d.len(), 0);
        assert!(d.apply(DynOpKind::Add, b"c", b"", 0, &[], 20 * S, 60));
        assert!(d.apply(DynOpKind::Delete, b"c", b"", 0, &[], 20 * S, 60));
        assert!(!d.contains(b"c", 20 * S));
    }

    #[test]
    fn map_data_is_written_when_the_element_is_made() {
        let d = DynSet::new(0, 0, vec![]);
        let mut out = [0u8; 8];
        assert_eq!(d.get(b"a", 0, &mut out), None);
        assert!(d.apply(DynOpKind::Update, b"a", &[0, 0, 0, 5], 0, &[], S, 60));
        assert!(d.apply(DynOpKind::Update, b"a", &[0, 0, 0, 7], 0, &[], S, 60));
        assert!(d.apply(DynOpKind::Add, b"a", &[0, 0, 0, 9], 0, &[], S, 60));
        assert_eq!(d.get(b"a", S, &mut out), Some(4));
        assert_eq!(out[..4], [0, 0, 0, 5]);
        assert_eq!(d.elements(S)[0].data[..], [0, 0, 0, 5]);
    }

    #[test]
    fn full_set_refuses_and_counts() {
        let d = DynSet::new(0, 2, vec![]);
        assert!(d.apply(DynOpKind::Add, b"a", b"", 0, &[], 0, 60));
        assert!(d.apply(DynOpKind::Add, b"b", b"", 0, &[], 0, 60));
        assert!(!d.apply(DynOpKind::Add, b"c", b"", 0, &[], 0, 60));
        assert_eq!(d.full.load(Ordering::Relaxed), 1);
        // existing elements still update
        assert!(d.apply(DynOpKind::Update, b"a", b"", 0, &[], 0, 60));
    }

    #[test]
    fn meter_limits_each_key_on_its_own() {
        let d = DynSet::new(0, 0, vec![]);
        let lim = [Stmt::Limit(Box::new(Limit {
            over: false,
            rate: 1,
            unit: 60,
            bytes: false,
            burst: 2,
        }))];
        let pass = |k: &[u8]| {
            (0..5)
                .filter(|_| d.apply(DynOpKind::Update, k, b"", 0, &lim, S, 60))
                .count()
        };
        assert_eq!(pass(b"x"), 2);
        assert_eq!(pass(b"y"), 2);
    }

    #[test]
    fn preloaded_elements_start_their_clock_when_first_seen() {
        let d = DynSet::new(0, 0, vec![]);
        d.preload(b"k", 5 * S, 0, &[], b"");
        assert!(d.contains(b"k", 100 * S));
        assert!(d.contains(b"k", 104 * S));
        assert!(!d.contains(b"k", 105 * S));
    }
}
