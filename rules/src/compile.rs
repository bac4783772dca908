//! Lowering the ruleset to a small IR: per rule, a list of `load → test` compares and actions.
//!
//! Like nft's linearizer, implicit protocol dependencies (`meta l4proto tcp` before `tcp dport`,
//! `meta nfproto ipv4` before `ip saddr` in inet tables) are inserted here.

use std::ops::Range;
use std::sync::Arc;

use crate::ast::*;
use crate::diag::Diagnostic;
use crate::eval::{ChainId, NfProto, RejectKind, Verdict};
use crate::expr::{ct, meta, payload, BinOp, Elem, Lhs, Match, Part, RelOp, Rhs, Selector};
use crate::key::Key;
use crate::stmt::verdict::VerdictExpr;
use crate::stmt::Stmt;
use crate::types::Val;
use crate::CounterValue;

#[derive(Clone, Debug)]
pub(crate) enum Load {
    /// something only the dataplane knows (fib lookups): the match fails
    Unavailable,
    Payload(payload::Load),
    /// option/chunk field (or presence when `field` is None)
    Opt {
        space: crate::expr::opt::Space,
        kind: u8,
        field: Option<&'static crate::expr::opt::OptField>,
    },
    Meta(&'static meta::Key),
    /// a conntrack key, its direction and its width in bytes (addresses: 4 or 16)
    Ct(&'static ct::Key, Option<ct::Dir>, u8),
    /// `fib FLAGS RESULT`, answered by the packet's [`crate::eval::FibLookup`]
    Fib {
        flags: u8,
        result: crate::expr::FibResult,
    },
    /// `numgen inc|random mod M [offset O]`: a 32-bit number (network byte order, like every integer here)
    /// from a generator. `inc` counts as the kernel's nft_ng_inc_gen does, one counter per expression shared
    /// by every worker.
    Numgen(Arc<Numgen>),
    /// `jhash …` / `symhash …` (crate::expr::hash): a 32-bit bucket number, network byte order
    Hash(Arc<HashLoad>),
}

#[derive(Debug)]
pub(crate) struct HashLoad {
    /// `jhash`'s key, each load in whole 32-bit words as the kernel's registers; `None`: `symhash`
    pub(crate) key: Option<Box<[Load]>>,
    pub(crate) modulus: u32,
    pub(crate) seed: u32,
    pub(crate) offset: u32,
}

#[derive(Debug)]
pub(crate) struct Numgen {
    pub(crate) random: bool,
    pub(crate) modulus: u32,
    pub(crate) offset: u32,
    /// the last value of `inc` (starts at modulus - 1, so the first packet gets 0, as in the kernel)
    pub(crate) counter: std::sync::atomic::AtomicU32,
}

impl Numgen {
    fn new(random: bool, modulus: u32, offset: u32) -> Numgen {
        let modulus = modulus.max(1);
        Numgen {
            random,
            modulus,
            offset,
            counter: std::sync::atomic::AtomicU32::new(modulus - 1),
        }
    }

    /// The next value.
    pub(crate) fn next(&self) -> u32 {
        use std::sync::atomic::Ordering::Relaxed;
        let n = if self.random {
            thread_local! {
                static STATE: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
            }
            STATE.with(|st| {
                let mut x = st.get();
                if x == 0 {
                    // seeded per thread from its stack address and the time
                    let t = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_nanos() as u64);
                    x = (t ^ (&x as *const u64 as u64)) | 1;
                }
                // xorshift64*
                x ^= x >> 12;
                x ^= x << 25;
                x ^= x >> 27;
                st.set(x);
                ((x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) % self.modulus as u64) as u32
            })
        } else {
            let mut old = self.counter.load(Relaxed);
            loop {
                let new = if old + 1 < self.modulus { old + 1 } else { 0 };
                match self
                    .counter
                    .compare_exchange_weak(old, new, Relaxed, Relaxed)
                {
                    Ok(_) => break new,
                    Err(cur) => old = cur,
                }
            }
        };
        n.wrapping_add(self.offset)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Bin {
    /// x = (x & and) ^ xor
    Mask {
        and: Key,
        xor: Key,
    },
    Shl(u8),
    Shr(u8),
}

#[derive(Clone, Debug)]
pub(crate) enum Test {
    Eq(Key),
    Ne(Key),
    Lt(Key),
    Gt(Key),
    Le(Key),
    Ge(Key),
    /// `lo..=hi` of at most 8 bytes each (ports, IPv4 prefixes and ranges: half the compares of some
    /// 100k-rule rulesets), in line: `lo[..len]..=hi[..len]`
    Range8 {
        lo: [u8; 8],
        hi: [u8; 8],
        len: u8,
        neg: bool,
    },
    /// `lo..=hi` of other widths (boxed: it keeps [`Op`] at 32 bytes)
    Range {
        lh: Box<(Key, Key)>,
        neg: bool,
    },
    /// any of the mask bits set (bitmask types, implicit op); `neg`: none set
    AnyBits {
        mask: Key,
        neg: bool,
    },
    Set {
        set: u32,
        neg: bool,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum VOp {
    Accept,
    Drop,
    Continue,
    Return,
    Jump(u32),
    Goto(u32),
    Reject(RejectKind),
    /// a NAT statement (index into `nats`): terminal, like accept
    Nat(u32),
    /// `fwd`: the packet left by the tracer's `dup`
    Stolen,
}

/// A key as compares and verdict-map lookups load it: the loads (concatenated) and an optional
/// mask/shift. Ops name one by index ([`CompiledRuleset::sels`]): the rules of a chain share a few, and
/// an index keeps [`Op`] at 32 bytes.
#[derive(Debug)]
pub(crate) struct CSel {
    pub loads: Arc<[Load]>,
    pub bin: Option<Bin>,
}

#[derive(Clone, Debug)]
pub(crate) enum Op {
    /// load `sels[sel]`, test it
    Cmp {
        sel: u32,
        test: Test,
    },
    /// write a packet/conntrack field (`meta mark set ...`)
    Store {
        target: StoreTarget,
        /// boxed: rare, and it keeps [`Op`] small
        src: Box<VSrc>,
    },
    /// verdict map lookup of `sels[sel]`: a miss ends the rule
    Vmap {
        sel: u32,
        set: u32,
    },
    Counter(u32),
    /// `limit` (index into `limits`): a packet outside the rate (inside it, with `over`) ends the rule
    Limit(u32),
    /// `quota` (index into `quotas`), likewise
    Quota(u32),
    /// `counter name X` (index into `obj_counters`)
    ObjCounter(u32),
    /// `log …` (index into `logs`): reported to the tracer, which writes the line
    Log(u32),
    /// `add|update|delete @set { key … }`
    DynSet(Box<DynOp>),
    /// `ct count [over] N`: statement `id` of the ruleset's connlimits
    Connlimit {
        id: u32,
        limit: u32,
        over: bool,
    },
    /// `ip ttl set 5`, `tcp dport set 8080`: a write into the packet with its checksum fix-ups
    PayloadSet(Box<PayloadSet>),
    /// `dup` / `fwd` (terminal for `fwd`)
    Dup(Box<DupOp>),
    /// `counter|quota|limit name KEY map { … }`: the object the packet's key names
    ObjMap(Box<ObjMap>),
    Verdict(VOp),
}

#[derive(Clone, Debug)]
pub(crate) struct ObjMap {
    pub loads: Arc<[Load]>,
    pub set: u32,
    /// per element of the set, in its order: the op of the object it names (`ObjCounter`, `Quota`,
    /// `Limit`), `None` for kinds not evaluated
    pub objs: Vec<Option<Op>>,
}

#[derive(Clone, Debug)]
pub(crate) struct DupOp {
    pub fwd: bool,
    /// `to` names a device (netdev `dup to DEV`, `fwd to DEV`) rather than an address
    pub to_is_device: bool,
    pub to: VSrc,
    pub device: Option<VSrc>,
}

#[derive(Clone, Debug)]
pub(crate) struct PayloadSet {
    pub write: payload::Write,
    pub src: VSrc,
}

// 100k-rule loads hold ~6 ops a rule: keep them small (docs/BENCHMARKS.md)
#[cfg(target_pointer_width = "64")]
const _: () = assert!(std::mem::size_of::<Op>() <= 32);

#[derive(Clone, Debug)]
pub(crate) struct DynOp {
    pub key: VSrc,
    pub set: u32,
    pub kind: crate::dynset::DynOpKind,
    /// ns; 0: the set's
    pub timeout: u64,
    /// per-element statements (counter, limit, quota)
    pub stmts: Vec<Stmt>,
    /// maps: what a new element maps to
    pub data: Option<VSrc>,
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum StoreTarget {
    Mark,
    CtMark,
    CtLabel,
    Nftrace,
    /// `notrack`: a packet without a connection (yet) stays untracked
    Notrack,
}

/// A computed value: a constant, a load with an optional mask/shift, or a map lookup.
#[derive(Clone, Debug)]
pub(crate) enum VSrc {
    Const(Key),
    Load {
        loads: Arc<[Load]>,
        bin: Vec<Bin>,
    },
    /// key loads → set lookup → element data
    Map {
        loads: Arc<[Load]>,
        set: u32,
        data: Vec<Key>,
        /// Where the elements written from the packet path are, when not in `set` itself (NAT keeps
        /// its own copy of a dynamic map's declared elements, with their ranges).
        written: Option<u32>,
    },
}

pub(crate) struct CChain {
    pub rules: Range<u32>,
    /// base chains: the policy
    pub policy: Option<Verdict>,
    /// base chains: the priority
    pub priority: Option<i32>,
    /// (table index, chain index) in the AST
    pub at: (usize, usize),
}

pub(crate) struct CRule {
    pub ops: Range<u32>,
}

/// A compiled set: sorted exact keys, sorted disjoint intervals, and per-component interval
/// elements for concatenations.
type Bounds = (Key, Key);

/// A compiled set or map: sorted exact keys, sorted intervals, per-component intervals for
/// concatenations, and a catch-all; each match yields the element's index (for map data).
#[allow(clippy::type_complexity)]
pub(crate) struct CSet {
    width: usize,
    exact: Vec<u8>,
    exact_idx: Vec<u32>,
    ranges: Vec<(Key, Key, u32)>, // (lo, hi, element)
    disjoint: bool,
    comp_ranges: Vec<(Vec<Bounds>, u32)>,
    catchall: Option<u32>,
    /// verdict maps: the verdict of each element
    pub verdicts: Vec<VOp>,
    /// sets written from the packet path, or with timeouts: their dynamic elements
    pub(crate) dynamic: Option<Box<crate::dynset::DynSet>>,
}

impl CSet {
    /// Key width in bytes.
    pub(crate) fn width(&self) -> usize {
        self.width
    }

    /// Calls `f` with each element as a closed interval of keys, for the classifier; `false` (having
    /// called nothing) when an element is no single interval (a concatenation of ranges, the
    /// catch-all) or there are more than `limit` elements.
    pub(crate) fn intervals(&self, limit: usize, mut f: impl FnMut(&[u8], &[u8])) -> bool {
        let w = self.width;
        let n = self.exact.len().checked_div(w).unwrap_or(0);
        if !self.comp_ranges.is_empty()
            || self.catchall.is_some()
            || self.dynamic.is_some()
            || w == 0
            || n + self.ranges.len() > limit
        {
            return false;
        }
        for k in self.exact.chunks_exact(w) {
            f(k, k);
        }
        for (l, h, _) in &self.ranges {
            f(l, h);
        }
        true
    }

    /// Membership at `now`, dynamic elements included.
    #[inline]
    pub fn contains_at(&self, k: &[u8], now: u64) -> bool {
        self.find(k).is_some() || self.dynamic.as_ref().is_some_and(|d| d.contains(k, now))
    }

    /// Index of the element matching `k`, if any.
    #[inline]
    pub fn find(&self, k: &[u8]) -> Option<u32> {
        let w = self.width;
        if k.len() != w {
            return None;
        }
        if let Some(n) = self.exact.len().checked_div(w) {
            let (mut lo, mut hi) = (0usize, n);
            while lo < hi {
                let mid = (lo + hi) / 2;
                match self.exact[mid * w..mid * w + w].cmp(k) {
                    std::cmp::Ordering::Equal => return Some(self.exact_idx[mid]),
                    std::cmp::Ordering::Less => lo = mid + 1,
                    std::cmp::Ordering::Greater => hi = mid,
                }
            }
        }
        if self.disjoint {
            // sorted and disjoint: the candidate is the last interval starting at or before k
            let idx = self.ranges.partition_point(|(l, _, _)| &l[..] <= k);
            if idx > 0 && k <= &self.ranges[idx - 1].1[..] {
                return Some(self.ranges[idx - 1].2);
            }
        } else if let Some(r) = self
            .ranges
            .iter()
            .find(|(l, h, _)| k >= &l[..] && k <= &h[..])
        {
            return Some(r.2);
        }
        for (comps, i) in &self.comp_ranges {
            let mut off = 0;
            let hit = comps.iter().all(|(l, h)| {
                let part = &k[off..off + l.len()];
                off += l.len();
                part >= &l[..] && part <= &h[..]
            });
            if hit {
                return Some(*i);
            }
        }
        self.catchall
    }
}

/// An immutable, compiled ruleset. `Send + Sync`; meant to be published in an `ArcSwap`.
pub struct CompiledRuleset {
    rs: Ruleset,
    pub(crate) chains: Vec<CChain>,
    pub(crate) rules: Vec<CRule>,
    pub(crate) ops: Vec<Op>,
    /// what compares and verdict-map lookups load (see [`CSel`])
    pub(crate) sels: Vec<CSel>,
    pub(crate) sets: Vec<CSet>,
    hooks: Vec<Vec<ChainId>>,
    /// netdev ingress (and inet ingress) base chains in priority order, with their devices
    ingress: Vec<(ChainId, Vec<String>)>,
    names: Vec<(&'static str, String, String)>,
    initial: Vec<CounterValue>,
    /// compiled NAT statements (see `nat_effect`)
    pub(crate) nats: Vec<crate::nat_effect::CNat>,
    /// the per-chain indexes (see [`crate::classify`])
    pub(crate) cls: crate::classify::Classifier,
    /// `limit` and `quota` state, statements first (in compile order), then named objects
    pub(crate) limits: Vec<crate::stateful::LimitState>,
    pub(crate) quotas: Vec<crate::stateful::QuotaState>,
    /// the quota objects' entries in `quotas`: (table, object index) → state
    quota_objs: Vec<((usize, usize), u32)>,
    /// the quota statements' entries in `quotas`, in compile order
    quota_stmts: Vec<u32>,
    /// named counter objects used by rules: (table, object index), and their shared counts
    pub(crate) obj_counters: Vec<crate::stateful::SharedCounter>,
    counter_objs: Vec<((usize, usize), u32)>,
    /// the log statements
    pub(crate) logs: Vec<crate::stmt::log::Log>,
    /// named sets with dynamic elements: (table, set name) → compiled set
    dyn_sets: Vec<((usize, String), u32)>,
    /// some rule reads a `ct` key beyond state, mark and label (see [`CompiledRuleset::uses_ct_view`])
    ct_view: bool,
    /// number of `ct count` statements
    connlimits: u32,
    /// [`Properties`], derived on first use (see [`CompiledRuleset::properties`])
    props: std::sync::OnceLock<Properties>,
}

/// Whole-ruleset facts a dataplane needs when it switches to a generation. They cost a walk over every rule
/// (a print, for `conntrack`), so they are derived once per generation: the publisher calls
/// [`CompiledRuleset::properties`] before it stores the generation, and the dataplane reads the memo.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Properties {
    /// Some rule sets `meta nftrace`.
    pub nftrace: bool,
    /// The ruleset makes the kernel load connection tracking (a `ct` expression or statement, `notrack`, a
    /// nat chain): only then does it reassemble fragments before the hooks.
    pub conntrack: bool,
}

impl Properties {
    fn of(rs: &Ruleset) -> Properties {
        let nftrace = rs
            .tables
            .iter()
            .flat_map(|t| &t.chains)
            .flat_map(|c| &c.rules)
            .flat_map(|r| &r.stmts)
            .any(|s| {
                matches!(s, Stmt::SetField(sf)
                    if matches!(&sf.target, Selector::Meta { key, .. } if key.name == "nftrace"))
            });
        Properties {
            nftrace,
            conntrack: conntrack_words(&without_plain_rules(rs)),
        }
    }
}

/// Whether the printed ruleset has a nat chain or the word `ct` or `notrack` anywhere.
fn conntrack_words(rs: &Ruleset) -> bool {
    let text = crate::print_ruleset(rs, &Default::default(), None);
    text.lines().any(|l| {
        let l = l.trim();
        l.starts_with("type nat ") || l.split_whitespace().any(|w| w == "ct" || w == "notrack")
    })
}

/// A rule whose printed form cannot contain the words `ct` or `notrack`: payload and meta matches against
/// constants or a named set (symbols of those types are protocol and type names, strings print quoted),
/// counters, and verdicts that name no chain. Most rules of big rulesets are like this.
fn plain_rule(r: &Rule) -> bool {
    r.stmts.iter().all(|s| match s {
        Stmt::Match(m) => m
            .left
            .sels
            .iter()
            .all(|sel| matches!(sel, Selector::Payload { .. } | Selector::Meta { .. })),
        Stmt::Counter(_) => true,
        Stmt::Verdict(v) => matches!(
            v,
            VerdictExpr::Accept | VerdictExpr::Drop | VerdictExpr::Continue | VerdictExpr::Return
        ),
        _ => false,
    })
}

/// The ruleset without its plain rules (see [`plain_rule`]): printing it finds the same `ct` words as printing
/// the whole, at a fraction of the cost when most rules are plain.
fn without_plain_rules(rs: &Ruleset) -> Ruleset {
    Ruleset {
        tables: rs
            .tables
            .iter()
            .map(|t| Table {
                family: t.family,
                name: t.name.clone(),
                handle: t.handle,
                flags: t.flags.clone(),
                comment: t.comment.clone(),
                objs: t.objs.clone(),
                sets: t.sets.clone(),
                flowtables: t.flowtables.clone(),
                chains: t
                    .chains
                    .iter()
                    .map(|c| Chain {
                        name: c.name.clone(),
                        handle: c.handle,
                        base: c.base.clone(),
                        rules: c.rules.iter().filter(|r| !plain_rule(r)).cloned().collect(),
                        comment: c.comment.clone(),
                    })
                    .collect(),
                next_handle: t.next_handle,
            })
            .collect(),
        next_table_handle: rs.next_table_handle,
    }
}

impl Properties {
    /// The definition [`Properties::of`] shortens: print everything.
    #[cfg(test)]
    fn by_printing_everything(rs: &Ruleset) -> bool {
        conntrack_words(rs)
    }
}

const HOOKS: [Hook; 7] = [
    Hook::Prerouting,
    Hook::Input,
    Hook::Forward,
    Hook::Output,
    Hook::Postrouting,
    Hook::Ingress,
    Hook::Egress,
];

fn hook_index(h: Hook) -> usize {
    HOOKS.iter().position(|&x| x == h).unwrap()
}

impl CompiledRuleset {
    /// Whether a rule reads conntrack keys beyond `ct state`, `ct mark` and `ct label`: only then does
    /// the dataplane fill [`crate::eval::PacketCtx::ct_view`].
    pub fn uses_ct_view(&self) -> bool {
        self.ct_view
    }
    /// Number of `ct count` statements (their ids are `0..n`).
    pub fn connlimits(&self) -> usize {
        self.connlimits as usize
    }
    /// The AST it came from, for printing.
    pub fn ruleset(&self) -> &Ruleset {
        &self.rs
    }
    /// [`Properties`] of this generation, derived on the first call and remembered.
    pub fn properties(&self) -> Properties {
        *self.props.get_or_init(|| Properties::of(&self.rs))
    }
    pub fn counter_slots(&self) -> usize {
        self.initial.len()
    }
    /// The literal counter values from the source, by slot.
    pub fn initial_counters(&self) -> Vec<CounterValue> {
        self.initial.clone()
    }
    /// Base chains registered on (family, hook), in priority order. Ties go as in the kernel, which
    /// inserts a hook before those of equal priority: the chain registered last (later in the ruleset)
    /// runs first. IPv4 packets see the chains of `ip` and `inet` tables, IPv6 packets those of `ip6`
    /// and `inet` tables.
    pub fn hook_chains(&self, nfproto: NfProto, hook: Hook) -> &[ChainId] {
        &self.hooks[nfproto.index() * HOOKS.len() + hook_index(hook)]
    }
    /// The priority of a base chain (`None` for regular chains).
    pub fn chain_priority(&self, c: ChainId) -> Option<i32> {
        self.chains.get(c.0 as usize).and_then(|c| c.priority)
    }
    /// The policy of a base chain (`None` for regular chains).
    pub fn chain_policy(&self, c: ChainId) -> Option<Verdict> {
        self.chains.get(c.0 as usize).and_then(|c| c.policy)
    }
    /// The chain's AST.
    pub fn chain_ast(&self, c: ChainId) -> &Chain {
        let (t, i) = self.chains[c.0 as usize].at;
        &self.rs.tables[t].chains[i]
    }
    /// The table a chain belongs to.
    pub fn chain_table(&self, c: ChainId) -> &Table {
        &self.rs.tables[self.chains[c.0 as usize].at.0]
    }
    /// Ingress base chains (netdev family, and inet `hook ingress`) attached to device `ifname`, in
    /// priority order.
    pub fn ingress_chains<'a>(&'a self, ifname: &'a str) -> impl Iterator<Item = ChainId> + 'a {
        self.ingress
            .iter()
            .filter(move |(_, devs)| devs.iter().any(|d| d == ifname))
            .map(|(c, _)| *c)
    }
    /// (family, table, chain) names of a chain.
    pub fn chain_name(&self, c: ChainId) -> (&str, &str, &str) {
        let (f, t, n) = &self.names[c.0 as usize];
        (f, t, n)
    }
    /// Writes the live state of quotas (statements and objects) and of named counters used by rules
    /// into `rs`, a copy of this generation's AST: what a listing shows as `used …` and
    /// `packets … bytes …`, and what a change applied on top of it starts from.
    pub fn write_state(&self, rs: &mut Ruleset, now: u64) {
        use crate::obj::ObjBody;
        self.write_dynamic_elements(rs, now);
        // quota statements, in compile order: the named chains' rules, then binding chains
        // breadth-first as the compiler queues them
        let mut quotas: Vec<&mut crate::stmt::limit::Quota> = Vec::new();
        let mut queue: std::collections::VecDeque<&mut [Rule]> = Default::default();
        fn visit<'r>(
            rules: &'r mut [Rule],
            quotas: &mut Vec<&'r mut crate::stmt::limit::Quota>,
            queue: &mut std::collections::VecDeque<&'r mut [Rule]>,
        ) {
            for r in rules.iter_mut() {
                for s in r.stmts.iter_mut() {
                    match s {
                        Stmt::Quota(q) => quotas.push(q),
                        Stmt::Verdict(VerdictExpr::JumpBlock(b) | VerdictExpr::GotoBlock(b)) => {
                            queue.push_back(b)
                        }
                        _ => {}
                    }
                }
            }
        }
        let mut objs: Vec<(usize, usize, &mut ObjBody)> = Vec::new();
        for (ti, t) in rs.tables.iter_mut().enumerate() {
            for c in t.chains.iter_mut() {
                visit(&mut c.rules, &mut quotas, &mut queue);
            }
            for (oi, o) in t.objs.iter_mut().enumerate() {
                objs.push((ti, oi, &mut o.body));
            }
        }
        while let Some(b) = queue.pop_front() {
            visit(b, &mut quotas, &mut queue);
        }
        for (q, &i) in quotas.into_iter().zip(&self.quota_stmts) {
            q.used = self.quotas[i as usize].used();
        }
        for (ti, oi, body) in objs {
            match body {
                ObjBody::Quota(q) => {
                    if let Some(&(_, i)) = self.quota_objs.iter().find(|e| e.0 == (ti, oi)) {
                        q.used = self.quotas[i as usize].used();
                    }
                }
                ObjBody::Counter(c) => {
                    if let Some(&(_, i)) = self.counter_objs.iter().find(|e| e.0 == (ti, oi)) {
                        (c.packets, c.bytes) = self.obj_counters[i as usize].get();
                    }
                }
                _ => {}
            }
        }
    }
    /// The dynamic elements of sets, as of `now`, in place of the timed elements the AST had.
    fn write_dynamic_elements(&self, rs: &mut Ruleset, now: u64) {
        let ms = 1_000_000u64;
        for ((ti, name), i) in &self.dyn_sets {
            let Some(d) = self.sets[*i as usize].dynamic.as_deref() else {
                continue;
            };
            let Some(set) = rs
                .tables
                .get_mut(*ti)
                .and_then(|t| t.sets.iter_mut().find(|s| &s.name == name))
            else {
                continue;
            };
            let widths: Vec<usize> = set.key_types().iter().map(|t| t.bytes()).collect();
            let data_widths: Vec<usize> = set
                .data_types()
                .unwrap_or_default()
                .iter()
                .map(|t| t.bytes())
                .collect();
            // a verdict map's dynamic elements come from the ruleset's text (the packet path cannot
            // write verdicts): their verdicts are listed as written
            let verdicts: Vec<(Key, Box<crate::expr::Data>)> = if set.is_vmap() {
                set.elems
                    .iter()
                    .filter(|e| dynamic_elem(e))
                    .filter_map(|e| Some((bounds(&e.parts).0, e.data.clone()?)))
                    .collect()
            } else {
                Vec::new()
            };
            set.elems.retain(|e| !dynamic_elem(e));
            for crate::dynset::Listed {
                key,
                left,
                timeout: own_timeout,
                counter,
                stmts,
                data,
            } in d.elements(now)
            {
                let mut parts = crate::expr::Parts::new();
                let mut at = 0;
                for w in &widths {
                    if at + w > key.len() {
                        break;
                    }
                    parts.push(Part::Val(Val::from_bytes(&key[at..at + w])));
                    at += w;
                }
                let mut o = crate::expr::ElemOpts::default();
                // its own timeout only when it differs from the set's, as the kernel lists them
                if own_timeout != 0 {
                    o.timeout = Some(own_timeout / ms);
                }
                o.expires = left.map(|l| (l / ms).max(1));
                // per-element statements in the order they were written (the kernel's listing)
                if let Some((packets, bytes)) = counter {
                    o.stmts.push(Stmt::Counter(crate::stmt::counter::Counter {
                        packets,
                        bytes,
                    }));
                }
                o.stmts.extend(stmts);
                let data = if set.is_vmap() {
                    verdicts
                        .iter()
                        .find(|(k, _)| k[..] == key[..])
                        .map(|(_, d)| d.clone())
                } else if set.is_map {
                    let mut parts = Vec::new();
                    let mut at = 0;
                    for w in &data_widths {
                        if at + w > data.len() {
                            break;
                        }
                        parts.push(Part::Val(Val::from_bytes(&data[at..at + w])));
                        at += w;
                    }
                    Some(Box::new(crate::expr::Data::Val(parts)))
                } else {
                    None
                };
                set.elems.push(Elem {
                    parts,
                    data,
                    opts: Some(Box::new(o)),
                });
            }
        }
    }

    /// Sweeps expired dynamic set elements: a few shards of every dynamic set per call.
    pub fn sweep_dynamic(&self, now: u64) {
        for (_, i) in &self.dyn_sets {
            if let Some(d) = &self.sets[*i as usize].dynamic {
                d.sweep(now, 2);
            }
        }
    }

    /// Whether any rule logs (the dataplane then walks chains with a tracer that writes log lines).
    pub fn has_logs(&self) -> bool {
        !self.logs.is_empty()
    }
    /// Whether any rule has a `dup` or `fwd` statement (evaluation must report them to a tracer).
    pub fn has_dups(&self) -> bool {
        self.ops.iter().any(|op| matches!(op, Op::Dup(_)))
    }
    /// Looks a chain up by name.
    pub fn chain_id(&self, family: Family, table: &str, chain: &str) -> Option<ChainId> {
        self.names
            .iter()
            .position(|(f, t, c)| *f == family.name() && t == table && c == chain)
            .map(|i| ChainId(i as u32))
    }
}

pub(crate) struct Compiler {
    /// number of named chains (anonymous binding chains get ids after them)
    n_named: usize,
    /// binding chains to compile: (table, its first chain id, rules)
    /// binding chains to compile: (table, its first chain id, parent chain, rules, first counter slot)
    blocks: Vec<(usize, usize, usize, Vec<Rule>, u32)>,
    /// AST index of the chain being compiled (binding chains point at their parent)
    cur_chain: usize,
    /// named sets already compiled: (table index, name) → set
    named: std::collections::HashMap<(usize, String), u32>,
    /// index of the table being compiled, and its first chain id
    table: usize,
    chain_base: usize,
    chains: Vec<CChain>,
    rules: Vec<CRule>,
    ops: Vec<Op>,
    pub(crate) sets: Vec<CSet>,
    slot: u32,
    initial: Vec<CounterValue>,
    nats: Vec<crate::nat_effect::CNat>,
    limits: Vec<crate::stateful::LimitState>,
    quotas: Vec<crate::stateful::QuotaState>,
    /// named limit and quota objects already given state: (table, object index) → state index
    limit_objs: Vec<((usize, usize), u32)>,
    quota_objs: Vec<((usize, usize), u32)>,
    quota_stmts: Vec<u32>,
    obj_counters: Vec<crate::stateful::SharedCounter>,
    counter_objs: Vec<((usize, usize), u32)>,
    logs: Vec<crate::stmt::log::Log>,
    /// sets written by rules: (table, name), found before compiling
    updated_sets: std::collections::HashSet<(usize, String)>,
    dyn_sets: Vec<((usize, String), u32)>,
    /// load lists handed out recently: rules mostly load what the rules before them loaded
    recent_loads: Vec<Arc<[Load]>>,
    sels: Vec<CSel>,
    /// `sels` handed out recently, likewise, with their [`fingerprint`]s
    recent_sels: Vec<(u64, u32)>,
    /// the `sels` of single payload fields and meta keys without a mask, by the addresses of their
    /// static descriptions (see [`Compiler::sel_of`])
    sel_memo: Vec<(usize, usize, u32)>,
    /// the `sel_memo` entries of the implicit dependencies' meta keys (by [`dep_key`] index), once
    /// there: rules check those on nearly every payload match
    dep_sels: [Option<u32>; 3],
    /// chain positions by name in the table with this index (jump targets)
    chain_pos: (Option<usize>, std::collections::HashMap<String, usize>),
    /// `ct count` statements so far
    connlimits: u32,
}

impl<'a> From<&'a Ruleset> for std::borrow::Cow<'a, Ruleset> {
    fn from(rs: &'a Ruleset) -> Self {
        std::borrow::Cow::Borrowed(rs)
    }
}

impl From<Ruleset> for std::borrow::Cow<'_, Ruleset> {
    fn from(rs: Ruleset) -> Self {
        std::borrow::Cow::Owned(rs)
    }
}

/// Compiles a ruleset. The result keeps the AST (for listings): pass the `Ruleset` by value to move it
/// there, or by reference to have it cloned.
pub fn compile<'a>(
    rs: impl Into<std::borrow::Cow<'a, Ruleset>>,
) -> Result<CompiledRuleset, Diagnostic> {
    let rs = rs.into();
    let mut names = Vec::new();
    let mut chain_base = Vec::new();
    for t in &rs.tables {
        chain_base.push(names.len());
        for c in &t.chains {
            names.push((t.family.name(), t.name.clone(), c.name.clone()));
        }
    }
    let updated_sets = check_loops(&rs, &chain_base)?;
    // room for the rules and their ops up front (about 6 ops a rule: the big vectors are not copied as
    // they grow; room never written is never paged in)
    let nrules: usize = rs
        .tables
        .iter()
        .flat_map(|t| &t.chains)
        .map(|c| c.rules.len())
        .sum();
    let mut cc = Compiler {
        n_named: names.len(),
        blocks: Vec::new(),
        cur_chain: 0,
        named: Default::default(),
        table: 0,
        chain_base: 0,
        chains: Vec::new(),
        rules: Vec::with_capacity(nrules),
        ops: Vec::with_capacity(nrules * 6),
        sets: Vec::new(),
        slot: 0,
        initial: Vec::new(),
        nats: Vec::new(),
        limits: Vec::new(),
        quotas: Vec::new(),
        limit_objs: Vec::new(),
        quota_objs: Vec::new(),
        quota_stmts: Vec::new(),
        obj_counters: Vec::new(),
        counter_objs: Vec::new(),
        logs: Vec::new(),
        updated_sets,
        dyn_sets: Vec::new(),
        recent_loads: Vec::new(),
        sels: Vec::new(),
        recent_sels: Vec::new(),
        sel_memo: Vec::new(),
        dep_sels: [None; 3],
        chain_pos: Default::default(),
        connlimits: 0,
    };
    let mut hooks: Vec<Vec<(i32, usize, ChainId)>> = vec![Vec::new(); 2 * HOOKS.len()];
    let mut ingress: Vec<(i32, usize, ChainId, Vec<String>)> = Vec::new();
    for (ti, t) in rs.tables.iter().enumerate() {
        cc.table = ti;
        cc.chain_base = chain_base[ti];
        for (ci, c) in t.chains.iter().enumerate() {
            cc.cur_chain = ci;
            let id = ChainId(cc.chains.len() as u32);
            let start = cc.rules.len() as u32;
            for r in &c.rules {
                let ops_start = cc.ops.len() as u32;
                cc.rule(t, r, chain_base[ti])?;
                cc.rules.push(CRule {
                    ops: ops_start..cc.ops.len() as u32,
                });
            }
            let policy = c.base.as_ref().map(|b| match b.policy {
                Policy::Accept => Verdict::Accept,
                Policy::Drop => Verdict::Drop,
            });
            cc.chains.push(CChain {
                rules: start..cc.rules.len() as u32,
                policy,
                priority: c.base.as_ref().map(|b| b.priority),
                at: (ti, ci),
            });
            if let Some(b) = &c.base {
                if b.hook == Hook::Ingress {
                    ingress.push((b.priority, ti, id, b.devices.clone()));
                    continue;
                }
                let protos: &[NfProto] = match t.family {
                    Family::Ip => &[NfProto::Ipv4],
                    Family::Ip6 => &[NfProto::Ipv6],
                    Family::Inet => &[NfProto::Ipv4, NfProto::Ipv6],
                    _ => &[],
                };
                for p in protos {
                    hooks[p.index() * HOOKS.len() + hook_index(b.hook)].push((b.priority, ti, id));
                }
            }
        }
    }
    // Equal priorities: the kernel inserts a new hook before those of the same priority, so the chain
    // registered last runs first.
    // binding chains (`jump { ... }`), which may nest
    let mut k = 0;
    while k < cc.blocks.len() {
        let (ti, base, parent, rules, slot) = cc.blocks[k].clone();
        // its counters take the slots reserved where it is written
        let after = std::mem::replace(&mut cc.slot, slot);
        cc.cur_chain = parent;
        let t = &rs.tables[ti];
        cc.table = ti;
        cc.chain_base = base;
        let start = cc.rules.len() as u32;
        for r in &rules {
            let ops_start = cc.ops.len() as u32;
            cc.rule(t, r, base)?;
            cc.rules.push(CRule {
                ops: ops_start..cc.ops.len() as u32,
            });
        }
        cc.chains.push(CChain {
            rules: start..cc.rules.len() as u32,
            policy: None,
            priority: None,
            at: (ti, parent),
        });
        names.push((t.family.name(), t.name.clone(), format!("__chain{k}")));
        cc.slot = after;
        k += 1;
    }
    let hooks = hooks
        .into_iter()
        .map(|mut v| {
            v.sort_by_key(|&(p, ti, id)| (p, std::cmp::Reverse((ti, id.0))));
            v.into_iter().map(|(_, _, id)| id).collect()
        })
        .collect();
    ingress.sort_by_key(|&(p, ti, id, _)| (p, std::cmp::Reverse((ti, id.0))));
    let ingress = ingress
        .into_iter()
        .map(|(_, _, id, devs)| (id, devs))
        .collect();
    let ct_view = cc.ops.iter().any(|op| {
        let loads: &[Load] = match op {
            Op::Cmp { sel, .. } | Op::Vmap { sel, .. } => &cc.sels[*sel as usize].loads,
            Op::Store { src, .. } => match &**src {
                VSrc::Load { loads, .. } | VSrc::Map { loads, .. } => loads,
                _ => &[],
            },
            Op::PayloadSet(w) => match &w.src {
                VSrc::Load { loads, .. } | VSrc::Map { loads, .. } => loads,
                _ => &[],
            },
            _ => &[],
        };
        loads
            .iter()
            .any(|l| matches!(l, Load::Ct(k, ..) if !matches!(k.name, "state" | "mark" | "label")))
    });
    let mut out = CompiledRuleset {
        rs: rs.into_owned(),
        chains: cc.chains,
        rules: cc.rules,
        ops: cc.ops,
        sels: cc.sels,
        sets: cc.sets,
        hooks,
        ingress,
        names,
        initial: cc.initial,
        nats: cc.nats,
        cls: Default::default(),
        limits: cc.limits,
        quotas: cc.quotas,
        quota_objs: cc.quota_objs,
        quota_stmts: cc.quota_stmts,
        obj_counters: cc.obj_counters,
        counter_objs: cc.counter_objs,
        logs: cc.logs,
        dyn_sets: cc.dyn_sets,
        ct_view,
        connlimits: cc.connlimits,
        props: Default::default(),
    };
    out.cls = crate::classify::build(&out);
    Ok(out)
}

/// Rejects jump/goto loops (the kernel's ELOOP) and jumps to unknown chains; on the same walk over the
/// rules, finds the (table, set) pairs some rule writes from the packet path.
fn check_loops(
    rs: &Ruleset,
    chain_base: &[usize],
) -> Result<std::collections::HashSet<(usize, String)>, Diagnostic> {
    // the sets written from the packet path (`add @s { ... }`), found on the same walk
    let mut updated = std::collections::HashSet::new();
    for (ti, t) in rs.tables.iter().enumerate() {
        let n = t.chains.len();
        let mut edges = vec![Vec::new(); n];
        // chains with a reject statement (not counting their binding chains, as before)
        let mut rejects = vec![false; n];
        let by_name: std::collections::HashMap<&str, usize> = t
            .chains
            .iter()
            .enumerate()
            .map(|(i, c)| (c.name.as_str(), i))
            .collect();
        for (ci, c) in t.chains.iter().enumerate() {
            // jumps and gotos of the chain, including those inside its binding chains (`jump { ... }`)
            let mut verdicts: Vec<&VerdictExpr> = Vec::new();
            let mut blocks: Vec<&Rule> = Vec::new();
            /// Collects the rule's jumps, binding chains and updated sets; `true` if it rejects.
            fn scan<'r>(
                r: &'r Rule,
                blocks: &mut Vec<&'r Rule>,
                out: &mut Vec<&'r VerdictExpr>,
                sets: &mut (usize, std::collections::HashSet<(usize, String)>),
            ) -> bool {
                let mut reject = false;
                for s in &r.stmts {
                    match s {
                        Stmt::Verdict(VerdictExpr::JumpBlock(rs) | VerdictExpr::GotoBlock(rs)) => {
                            blocks.extend(rs.iter())
                        }
                        Stmt::Verdict(v) if v.target().is_some() => out.push(v),
                        Stmt::Reject(_) => reject = true,
                        Stmt::SetUpdate(u) => {
                            sets.1.insert((sets.0, u.set.clone()));
                        }
                        _ => {}
                    }
                }
                reject
            }
            let mut sets = (ti, std::mem::take(&mut updated));
            for r in &c.rules {
                rejects[ci] |= scan(r, &mut blocks, &mut verdicts, &mut sets);
            }
            while let Some(r) = blocks.pop() {
                scan(r, &mut blocks, &mut verdicts, &mut sets);
            }
            updated = sets.1;
            {
                for v in verdicts {
                    {
                        if let Some(target) = v.target() {
                            let Some(&j) = by_name.get(target) else {
                                return Err(Diagnostic::bare(format!(
                                    "Could not process rule: No such file or directory: chain {target} in table {} {}",
                                    t.family.name(),
                                    t.name
                                )));
                            };
                            edges[ci].push(j);
                        }
                    }
                }
            }
        }
        // colour DFS
        let mut state = vec![0u8; n];
        fn dfs(i: usize, edges: &[Vec<usize>], state: &mut [u8]) -> bool {
            state[i] = 1;
            for &j in &edges[i] {
                if state[j] == 1 || (state[j] == 0 && dfs(j, edges, state)) {
                    return true;
                }
            }
            state[i] = 2;
            false
        }
        for i in 0..n {
            if state[i] == 0 && dfs(i, &edges, &mut state) {
                return Err(Diagnostic::bare(format!(
                    "Could not process rule: Too many levels of symbolic links (chain {} in table {} {} loops)",
                    t.chains[i].name,
                    t.family.name(),
                    t.name
                )));
            }
        }
        // No loops: the longest chain of jumps from each chain. The kernel refuses rulesets whose jumps
        // nest deeper than its jump stack (nft_chain_validate: EMLINK).
        fn depth(i: usize, edges: &[Vec<usize>], memo: &mut [Option<usize>]) -> usize {
            if let Some(d) = memo[i] {
                return d;
            }
            let d = edges[i]
                .iter()
                .map(|&j| 1 + depth(j, edges, memo))
                .max()
                .unwrap_or(0);
            memo[i] = Some(d);
            d
        }
        let mut memo = vec![None; n];
        for (i, c) in t.chains.iter().enumerate() {
            if c.base.is_some() && depth(i, &edges, &mut memo) > crate::eval::JUMP_STACK {
                return Err(Diagnostic::bare(format!(
                    "Could not process rule: Too many links (jumps from chain {} in table {} {} nest deeper than {})",
                    c.name,
                    t.family.name(),
                    t.name,
                    crate::eval::JUMP_STACK
                )));
            }
        }
        // `reject` only where nft_reject_validate allows it: not reachable from postrouting/egress.
        let mut reach = vec![false; n];
        let mut todo: Vec<usize> = t
            .chains
            .iter()
            .enumerate()
            .filter(|(_, c)| {
                c.base
                    .as_ref()
                    .is_some_and(|b| matches!(b.hook, Hook::Postrouting | Hook::Egress))
            })
            .map(|(i, _)| i)
            .collect();
        while let Some(i) = todo.pop() {
            if !std::mem::replace(&mut reach[i], true) {
                todo.extend(edges[i].iter().copied());
            }
        }
        for (i, c) in t.chains.iter().enumerate() {
            if reach[i] && rejects[i] {
                return Err(Diagnostic::bare(format!(
                    "Could not process rule: Operation not supported (reject in chain {} of table {} {} is reachable from a postrouting/egress hook)",
                    c.name,
                    t.family.name(),
                    t.name
                )));
            }
        }
        let _ = chain_base[ti];
    }
    Ok(updated)
}

const NFPROTO: usize = 0;
const PROTOCOL: usize = 1;
const L4PROTO: usize = 2;

/// The meta keys of implicit dependencies (looked up once: every `ip saddr`, `tcp dport` adds one).
fn dep_key(i: usize) -> &'static meta::Key {
    static KEYS: std::sync::OnceLock<[&'static meta::Key; 3]> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| ["nfproto", "protocol", "l4proto"].map(|n| meta::key(n).unwrap()))[i]
}

fn bx(v: &[u8]) -> Key {
    Key::new(v)
}

/// A number equal for load lists that are [`same_loads`] (a cheap first compare).
fn fingerprint(loads: &[Load]) -> u64 {
    let mut h = loads.len() as u64;
    for l in loads {
        let x = match l {
            Load::Payload(p) => {
                let base = match p.base {
                    payload::Base::Link => 0,
                    payload::Base::Network => 1,
                    payload::Base::Transport => 2,
                    payload::Base::Inner => 3,
                    payload::Base::Exthdr(t) => 4 + t as u64,
                };
                base | (p.off as u64) << 9
                    | (p.len as u64) << 25
                    | (p.shift as u64) << 33
                    | (p.out_len as u64) << 41
                    | (p.mask as u64) << 49
            }
            Load::Meta(k) => *k as *const meta::Key as u64,
            Load::Ct(k, _, w) => (*k as *const ct::Key as u64) ^ *w as u64,
            Load::Opt { kind, .. } => *kind as u64,
            _ => 0,
        };
        h = (h ^ x).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    h
}

/// Same load lists ([`same_load`] one by one).
fn same_loads(a: &[Load], b: &[Load]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same_load(x, y))
}

/// Same load (statics compared by address).
fn same_load(a: &Load, b: &Load) -> bool {
    match (a, b) {
        (Load::Unavailable, Load::Unavailable) => true,
        (Load::Payload(x), Load::Payload(y)) => {
            (x.base, x.off, x.len, x.shift, x.mask, x.out_len)
                == (y.base, y.off, y.len, y.shift, y.mask, y.out_len)
        }
        (
            Load::Opt {
                space: s1,
                kind: k1,
                field: f1,
            },
            Load::Opt {
                space: s2,
                kind: k2,
                field: f2,
            },
        ) => {
            s1 == s2
                && k1 == k2
                && match (f1, f2) {
                    (None, None) => true,
                    (Some(a), Some(b)) => std::ptr::eq(*a, *b),
                    _ => false,
                }
        }
        (Load::Meta(x), Load::Meta(y)) => std::ptr::eq(*x, *y),
        (Load::Ct(x, d1, w1), Load::Ct(y, d2, w2)) => std::ptr::eq(*x, *y) && d1 == d2 && w1 == w2,
        _ => false,
    }
}

impl Compiler {
    fn rule(&mut self, t: &Table, r: &Rule, _chain_base: usize) -> Result<(), Diagnostic> {
        let mut have_l3 = matches!(t.family, Family::Ip | Family::Ip6 | Family::Arp);
        let mut have_l4: Option<u8> = None;
        for s in &r.stmts {
            match s {
                Stmt::Match(m) => {
                    for sel in &m.left.sels {
                        self.deps(t.family, sel, &mut have_l3, &mut have_l4);
                    }
                    self.matching(t, m)?;
                }
                Stmt::Vmap(v) => {
                    for sel in &v.key.sels {
                        self.deps(t.family, sel, &mut have_l3, &mut have_l4);
                    }
                    let sel = self.sel_of(&v.key);
                    let width: usize = v.key.sels.iter().map(|s| s.dtype().bytes()).sum();
                    let set = match &v.map {
                        crate::stmt::vmap::MapRef::Anon(elems) => self.set(t, elems, width),
                        crate::stmt::vmap::MapRef::Named(n) => self.named_set(t, n, width)?,
                    };
                    self.ops.push(Op::Vmap { sel, set });
                }
                Stmt::Counter(c) => {
                    let slot = self.slot;
                    self.slot += 1;
                    self.ops.push(Op::Counter(slot));
                    if self.initial.len() <= slot as usize {
                        self.initial
                            .resize(slot as usize + 1, CounterValue::default());
                    }
                    self.initial[slot as usize] = CounterValue {
                        packets: c.packets,
                        bytes: c.bytes,
                    };
                }
                Stmt::Verdict(v) => {
                    let op = self.vop(t, v);
                    self.ops.push(Op::Verdict(op));
                }
                Stmt::Reject(rj) => {
                    use crate::stmt::reject::Reject;
                    let kind = match (*rj, t.family) {
                        (Reject::Default, Family::Ip) => RejectKind::Icmp(3),
                        (Reject::Default, Family::Ip6) => RejectKind::Icmpv6(4),
                        (Reject::Default, _) => RejectKind::Icmpx(1),
                        (Reject::Icmp(c), _) => RejectKind::Icmp(c),
                        (Reject::Icmpv6(c), _) => RejectKind::Icmpv6(c),
                        (Reject::Icmpx(c), _) => RejectKind::Icmpx(c),
                        (Reject::TcpReset, _) => RejectKind::TcpReset,
                    };
                    // nft's implicit dependencies: `with tcp reset` applies to TCP only; in inet
                    // tables `with icmp` to IPv4 only, `with icmpv6` to IPv6 only.
                    let meta_eq = |c: &mut Self, key: &str, v: u8| {
                        c.eq(Load::Meta(meta::key(key).unwrap()), &[v])
                    };
                    match kind {
                        RejectKind::TcpReset if have_l4 != Some(6) => {
                            meta_eq(self, "l4proto", 6);
                            have_l4 = Some(6);
                        }
                        RejectKind::Icmp(_) if !have_l3 => meta_eq(self, "nfproto", 2),
                        RejectKind::Icmpv6(_) if !have_l3 => meta_eq(self, "nfproto", 10),
                        _ => {}
                    }
                    self.ops.push(Op::Verdict(VOp::Reject(kind)));
                }
                Stmt::Dup(d) => {
                    let to_is_device = d.fwd_family.is_none() && t.family == Family::Netdev;
                    let to = self.vsrc(t, &d.to);
                    // a device that does not compute leaves the statement out, as `to` does
                    let device = d.device.as_ref().map(|x| self.vsrc(t, x));
                    if let (Some(to), Some(device)) =
                        (to, device.map_or(Some(None), |d| d.map(Some)))
                    {
                        self.ops.push(Op::Dup(Box::new(DupOp {
                            fwd: d.fwd,
                            to_is_device,
                            to,
                            device,
                        })));
                    }
                }
                Stmt::Queue(_) => {
                    return Err(Diagnostic::bare(format!(
                        "Could not process rule: Operation not supported: queue in table {} {}: sluice has no user-space queue (nfqueue) to hand packets to; use accept or drop",
                        t.family.name(),
                        t.name
                    )));
                }
                Stmt::SetField(sf) => {
                    let mut sels = Vec::new();
                    sf.value.selectors(&mut sels);
                    for s in sels {
                        self.deps(t.family, s, &mut have_l3, &mut have_l4);
                    }
                    let write = match &sf.target {
                        Selector::Payload { proto, field } => Some(proto.write(field)),
                        Selector::Raw { base, off, len } => Some(payload::Write::new(
                            *base,
                            *off,
                            *len,
                            payload::Csum::None,
                            false,
                        )),
                        _ => None,
                    };
                    if let Some(write) = write {
                        self.deps(t.family, &sf.target, &mut have_l3, &mut have_l4);
                        if let Some(src) = self.vsrc(t, &sf.value) {
                            self.ops
                                .push(Op::PayloadSet(Box::new(PayloadSet { write, src })));
                        }
                        continue;
                    }
                    let target = match &sf.target {
                        Selector::Meta { key, .. } if key.name == "mark" => Some(StoreTarget::Mark),
                        Selector::Ct { key, .. } if key.name == "mark" => Some(StoreTarget::CtMark),
                        Selector::Ct { key, .. } if key.name == "label" => {
                            Some(StoreTarget::CtLabel)
                        }
                        Selector::Meta { key, .. } if key.name == "nftrace" => {
                            Some(StoreTarget::Nftrace)
                        }
                        _ => None,
                    };
                    if let (Some(target), Some(src)) = (target, self.vsrc(t, &sf.value)) {
                        self.ops.push(Op::Store {
                            target,
                            src: Box::new(src),
                        });
                    }
                }
                Stmt::Nat(n) => {
                    if let Some(c) = self.nat(t, n) {
                        self.nats.push(c);
                        let i = (self.nats.len() - 1) as u32;
                        self.ops.push(Op::Verdict(VOp::Nat(i)));
                    }
                }
                Stmt::Limit(l) => {
                    let st = crate::stateful::LimitState::new(l).ok_or_else(|| {
                        Diagnostic::bare(
                            "Could not process rule: Value too large for defined data type",
                        )
                    })?;
                    self.limits.push(st);
                    self.ops.push(Op::Limit(self.limits.len() as u32 - 1));
                }
                Stmt::Quota(q) => {
                    self.quotas.push(crate::stateful::QuotaState::new(q));
                    let i = self.quotas.len() as u32 - 1;
                    self.quota_stmts.push(i);
                    self.ops.push(Op::Quota(i));
                }
                Stmt::ObjRef(o) => {
                    let mut sels = Vec::new();
                    o.target.selectors(&mut sels);
                    for s in sels {
                        self.deps(t.family, s, &mut have_l3, &mut have_l4);
                    }
                    self.obj_ref(t, o)?
                }
                Stmt::Log(l) => {
                    self.logs.push((**l).clone());
                    self.ops.push(Op::Log(self.logs.len() as u32 - 1));
                }
                Stmt::SetUpdate(u) => self.set_update(t, u)?,
                // not evaluated (yet): notrack, flowtable offload
                Stmt::Notrack => self.ops.push(Op::Store {
                    target: StoreTarget::Notrack,
                    src: Box::new(VSrc::Const(bx(&[1]))),
                }),
                Stmt::FlowAdd(_) => {}
                Stmt::Connlimit { count, over } => {
                    if self.connlimits as usize >= crate::eval::MAX_CONNLIMIT {
                        return Err(Diagnostic::bare(format!(
                            "Could not process rule: Operation not supported: more than {} ct count statements",
                            crate::eval::MAX_CONNLIMIT
                        )));
                    }
                    self.ops.push(Op::Connlimit {
                        id: self.connlimits,
                        limit: *count,
                        over: *over,
                    });
                    self.connlimits += 1;
                }
            }
        }
        Ok(())
    }

    /// `loads` as a shared list: one of the recent ones when equal.
    fn shared(&mut self, loads: &[Load]) -> Arc<[Load]> {
        if let Some(i) = self.recent_loads.iter().rposition(|a| same_loads(a, loads)) {
            // most recently used last
            let a = self.recent_loads.remove(i);
            self.recent_loads.push(a.clone());
            return a;
        }
        let a: Arc<[Load]> = loads.into();
        if self.recent_loads.len() == 8 {
            self.recent_loads.remove(0);
        }
        self.recent_loads.push(a.clone());
        a
    }

    /// The index in `sels` of `loads` with `bin`: one of the recent ones when equal.
    fn sel(&mut self, loads: &[Load], bin: Option<Bin>) -> u32 {
        let fp = fingerprint(loads);
        let found = self.recent_sels.iter().rposition(|&(f, i)| {
            let s = &self.sels[i as usize];
            f == fp && s.bin == bin && same_loads(&s.loads, loads)
        });
        if let Some(i) = found {
            // most recently used last
            let e = self.recent_sels[i];
            self.recent_sels.copy_within(i + 1.., i);
            let last = self.recent_sels.len() - 1;
            self.recent_sels[last] = e;
            return e.1;
        }
        let loads = self.shared(loads);
        let id = self.sels.len() as u32;
        self.sels.push(CSel { loads, bin });
        if self.recent_sels.len() == 8 {
            self.recent_sels.remove(0);
        }
        self.recent_sels.push((fp, id));
        id
    }

    /// The `sels` index of what `lhs` loads; single payload fields and meta keys (most compares) found
    /// by the addresses of their static descriptions, without building their loads.
    fn sel_of(&mut self, lhs: &Lhs) -> u32 {
        let memo = match (&lhs.sels[..], &lhs.binop) {
            ([Selector::Payload { proto, field }], None) => Some((
                *proto as *const payload::Proto as usize,
                *field as *const payload::Field as usize,
            )),
            ([Selector::Meta { key, .. }], None) => Some((*key as *const meta::Key as usize, 0)),
            _ => None,
        };
        self.memo_sel(memo, || (Self::loads(lhs), Self::bin(lhs)))
    }

    fn memo_sel(
        &mut self,
        memo: Option<(usize, usize)>,
        what: impl FnOnce() -> (smallvec::SmallVec<[Load; 4]>, Option<Bin>),
    ) -> u32 {
        if let Some(k) = memo {
            if let Some(m) = self.sel_memo.iter().find(|m| (m.0, m.1) == k) {
                return m.2;
            }
        }
        let (loads, bin) = what();
        let id = self.sel(&loads, bin);
        if let Some(k) = memo.filter(|_| self.sel_memo.len() < 32) {
            self.sel_memo.push((k.0, k.1, id));
        }
        id
    }

    fn eq(&mut self, load: Load, v: &[u8]) {
        let sel = match load {
            // as `sel_of` finds a meta selector
            Load::Meta(k) => self.memo_sel(Some((k as *const meta::Key as usize, 0)), || {
                (smallvec::smallvec![load], None)
            }),
            _ => self.sel(&[load], None),
        };
        self.ops.push(Op::Cmp {
            sel,
            test: Test::Eq(bx(v)),
        });
    }

    /// `eq` of the meta key [`dep_key`]`(i)`: its selector taken from `dep_sels` once `sel_memo`
    /// has it (where `eq` would find it: entries stay).
    fn dep_eq(&mut self, i: usize, v: &[u8]) {
        let sel = match self.dep_sels[i] {
            Some(sel) => sel,
            None => {
                let k = dep_key(i);
                let memo = (k as *const meta::Key as usize, 0);
                let sel = self.memo_sel(Some(memo), || (smallvec::smallvec![Load::Meta(k)], None));
                if self.sel_memo.iter().any(|m| (m.0, m.1) == memo) {
                    self.dep_sels[i] = Some(sel);
                }
                sel
            }
        };
        self.ops.push(Op::Cmp {
            sel,
            test: Test::Eq(bx(v)),
        });
    }

    /// Inserts the implicit protocol checks a selector needs.
    fn deps(
        &mut self,
        family: Family,
        sel: &Selector,
        have_l3: &mut bool,
        have_l4: &mut Option<u8>,
    ) {
        if let Selector::Computed(v) = sel {
            let mut sels = Vec::new();
            v.selectors(&mut sels);
            for s in sels {
                self.deps(family, s, have_l3, have_l4);
            }
            return;
        }
        let Selector::Payload { proto, .. } = sel else {
            return;
        };
        let l3_dep = |c: &mut Self, name: &str| {
            let (ethertype, nfproto) = match name {
                "ip" => (0x0800u16, 2u8),
                "ip6" => (0x86dd, 10),
                _ => (0x0806, 3),
            };
            match family {
                Family::Inet => c.dep_eq(NFPROTO, &[nfproto]),
                Family::Bridge | Family::Netdev => c.dep_eq(PROTOCOL, &ethertype.to_be_bytes()),
                _ => {}
            }
        };
        match proto.layer {
            payload::Layer::Link | payload::Layer::AnyTransport => {}
            payload::Layer::Exthdr => {
                if !*have_l3 {
                    l3_dep(self, "ip6");
                    *have_l3 = true;
                }
            }
            payload::Layer::Network { .. } => {
                if !*have_l3 {
                    l3_dep(self, proto.name);
                    *have_l3 = true;
                }
            }
            payload::Layer::Transport { ipproto, l3 } => {
                if let Some(l3) = l3 {
                    if !*have_l3 {
                        l3_dep(self, l3);
                        *have_l3 = true;
                    }
                }
                if *have_l4 != Some(ipproto) {
                    self.dep_eq(L4PROTO, &[ipproto]);
                    *have_l4 = Some(ipproto);
                }
            }
        }
    }

    /// `numgen`, `jhash`, `symhash` as one load.
    fn computed_load(v: &crate::expr::value::ValExpr) -> Load {
        use crate::expr::value::ValExpr as V;
        match v {
            V::Numgen {
                random,
                modulus,
                offset,
            } => Load::Numgen(Arc::new(Numgen::new(*random, *modulus, *offset))),
            V::Jhash {
                key,
                modulus,
                seed,
                offset,
            } => {
                let sels: Option<crate::expr::Sels> = match &**key {
                    V::Sel(s) => Some(crate::expr::Sels::one(s.clone())),
                    V::Concat(parts) => parts
                        .iter()
                        .map(|p| match p {
                            V::Sel(s) => Some(s.clone()),
                            _ => None,
                        })
                        .collect(),
                    _ => None,
                };
                let Some(sels) = sels else {
                    return Load::Unavailable;
                };
                let key = Self::loads(&Lhs { sels, binop: None }).into_vec();
                Load::Hash(Arc::new(HashLoad {
                    key: Some(key.into_boxed_slice()),
                    modulus: *modulus,
                    seed: seed.unwrap_or_else(crate::expr::hash::random_seed),
                    offset: *offset,
                }))
            }
            V::Symhash { modulus, offset } => Load::Hash(Arc::new(HashLoad {
                key: None,
                modulus: *modulus,
                seed: crate::expr::hash::random_seed(),
                offset: *offset,
            })),
            _ => Load::Unavailable,
        }
    }

    fn loads(lhs: &Lhs) -> smallvec::SmallVec<[Load; 4]> {
        lhs.sels
            .iter()
            .map(|s| match s {
                Selector::Opt {
                    space, kind, field, ..
                } => Load::Opt {
                    space: *space,
                    kind: *kind,
                    field: *field,
                },
                Selector::Payload { proto, field } => Load::Payload(field.load(proto.base)),
                Selector::Fib { flags, result } => Load::Fib {
                    flags: *flags,
                    result: *result,
                },
                Selector::Inner { .. } | Selector::Other { .. } => Load::Unavailable,
                Selector::Computed(v) => Self::computed_load(v),
                Selector::Raw { base, off, len } => {
                    let f = payload::Field {
                        name: "raw",
                        off: *off,
                        len: *len,
                        dtype: s.dtype(),
                    };
                    Load::Payload(f.load(*base))
                }
                Selector::Meta { key, .. } => Load::Meta(key),
                Selector::Ct { key, dir, dtype } => {
                    // `ct label` loads the 128 label bits; matches name a bit (see `matching`)
                    let w = if key.name == "label" {
                        16
                    } else {
                        dtype.bytes()
                    };
                    Load::Ct(key, *dir, w as u8)
                }
            })
            .collect()
    }

    fn bin(lhs: &Lhs) -> Option<Bin> {
        lhs.binop.as_deref().map(|(op, v)| {
            let all = vec![0xffu8; v.len as usize];
            match op {
                BinOp::And => Bin::Mask {
                    and: bx(v.bytes()),
                    xor: bx(&vec![0; v.len as usize]),
                },
                BinOp::Or => Bin::Mask {
                    and: bx(v.not().bytes()),
                    xor: bx(v.bytes()),
                },
                BinOp::Xor => Bin::Mask {
                    and: bx(&all),
                    xor: bx(v.bytes()),
                },
                BinOp::Shl => Bin::Shl(v.to_u64() as u8),
                BinOp::Shr => Bin::Shr(v.to_u64() as u8),
            }
        })
    }

    fn named_set(&mut self, t: &Table, name: &str, width: usize) -> Result<u32, Diagnostic> {
        if let Some(&i) = self.named.get(&(self.table, name.to_string())) {
            return Ok(i);
        }
        let Some(set) = t.set(name) else {
            return Err(Diagnostic::bare(format!(
                "Could not process rule: No such file or directory: set {name} in table {} {}",
                t.family.name(),
                t.name
            )));
        };
        let key = (self.table, name.to_string());
        let i = if self.is_dynamic(set) {
            // single keys live in the dynamic table (with their timeouts, state and map data);
            // ranges and prefixes stay static
            let (timed, fixed): (Vec<&Elem>, Vec<&Elem>) =
                set.elems.iter().partition(|e| dynamic_elem(e));
            let fixed: Vec<Elem> = fixed.into_iter().cloned().collect();
            let i = self.set(t, &fixed, width);
            let ms = 1_000_000u64;
            let d = crate::dynset::DynSet::new(
                set.timeout.unwrap_or(0).saturating_mul(ms),
                set.size.unwrap_or(0),
                set.stmts.clone(),
            );
            for e in timed {
                let none = Default::default();
                let o: &crate::expr::ElemOpts = e.opts.as_deref().unwrap_or(&none);
                let timeout = o.timeout.unwrap_or(0).saturating_mul(ms);
                let set_timeout = set.timeout.unwrap_or(0).saturating_mul(ms);
                let left = o
                    .expires
                    .map_or(if timeout != 0 { timeout } else { set_timeout }, |x| {
                        x.saturating_mul(ms)
                    });
                let mut stmts = o.stmts.clone();
                if let Some(c) = &o.counter {
                    stmts.push(Stmt::Counter(*c));
                }
                // map data: the value's bytes, or for a verdict its index in the set's verdicts
                let data: Key = match e.data.as_deref() {
                    None => bx(&[]),
                    Some(crate::expr::Data::Val(parts)) => data_bytes(parts),
                    Some(crate::expr::Data::Verdict(v)) => {
                        let vop = self.vop(t, v);
                        let verdicts = &mut self.sets[i as usize].verdicts;
                        verdicts.push(vop);
                        bx(&((verdicts.len() - 1) as u32).to_be_bytes())
                    }
                };
                d.preload(bounds(&e.parts).0.as_ref(), left, timeout, &stmts, &data);
            }
            self.sets[i as usize].dynamic = Some(Box::new(d));
            self.dyn_sets.push((key.clone(), i));
            i
        } else {
            self.set(t, &set.elems, width)
        };
        self.named.insert(key, i);
        Ok(i)
    }

    /// Whether a named set or map keeps dynamic elements (timeouts, or written by rules).
    pub(crate) fn is_dynamic(&self, set: &crate::set::Set) -> bool {
        set.flags.dynamic
            || set.flags.timeout
            || set.timeout.is_some()
            || self
                .updated_sets
                .contains(&(self.table, set.name.to_string()))
    }

    /// `add|update|delete @s { KEY [timeout T] [stmts] [: DATA] }`.
    fn set_update(
        &mut self,
        t: &Table,
        u: &crate::stmt::dynset::SetUpdate,
    ) -> Result<(), Diagnostic> {
        use crate::dynset::DynOpKind;
        use crate::expr::value::ValExpr as V;
        let unsupported = |what: &str| {
            Diagnostic::bare(format!(
                "Could not process rule: Operation not supported: {what} @{} from the packet path: sluice evaluates keys and data made of header, meta and ct fields",
                u.set
            ))
        };
        let data = match &u.data {
            None => None,
            Some(d) => Some(
                self.vsrc(t, d)
                    .ok_or_else(|| unsupported("this data for"))?,
            ),
        };
        let sels: crate::expr::Sels = match &u.key {
            V::Sel(s) => crate::expr::Sels::one(s.clone()),
            V::Concat(parts) => parts
                .iter()
                .map(|p| match p {
                    V::Sel(s) => Ok(s.clone()),
                    _ => Err(unsupported("a computed key for")),
                })
                .collect::<Result<_, _>>()?,
            _ => return Err(unsupported("a computed key for")),
        };
        let width: usize = sels.iter().map(|s| s.dtype().bytes()).sum();
        let lhs = Lhs { sels, binop: None };
        let loads = self.shared(&Self::loads(&lhs));
        let set = self.named_set(t, &u.set, width)?;
        let kind = match u.op {
            "add" => DynOpKind::Add,
            "update" => DynOpKind::Update,
            _ => DynOpKind::Delete,
        };
        self.ops.push(Op::DynSet(Box::new(DynOp {
            key: VSrc::Load { loads, bin: vec![] },
            set,
            kind,
            timeout: u.timeout.unwrap_or(0).saturating_mul(1_000_000),
            stmts: u.stmts.clone(),
            data,
        })));
        Ok(())
    }

    /// `counter|quota|limit name X`: the named object's state, shared by every rule naming it. A name
    /// chosen by a map lookup (`quota name ip saddr map { … }`) is not evaluated yet.
    fn obj_ref(&mut self, t: &Table, o: &crate::obj::ObjRef) -> Result<(), Diagnostic> {
        use crate::expr::value::ValExpr as V;
        match &o.target {
            V::Const(_, crate::expr::Part::Val(v)) => {
                if let Some(op) = self.obj_op(t, o.kind, &v.as_str())? {
                    self.ops.push(op);
                }
                Ok(())
            }
            // `counter name tcp dport map { 443 : "c1", 80 : "c2" }`: the object the map names
            V::Map(k, m, _) => {
                let sels: crate::expr::Sels = match &**k {
                    V::Sel(s) => crate::expr::Sels::one(s.clone()),
                    V::Concat(v) => v
                        .iter()
                        .map(|e| match e {
                            V::Sel(s) => Some(s.clone()),
                            _ => None,
                        })
                        .collect::<Option<_>>()
                        .unwrap_or_default(),
                    _ => Default::default(),
                };
                if sels.is_empty() {
                    return Ok(());
                }
                let width = sels.iter().map(|s| s.dtype().bytes()).sum();
                let loads = Self::loads(&Lhs { sels, binop: None })[..].into();
                let elems: Vec<Elem> = match m {
                    crate::stmt::vmap::MapRef::Anon(e) => e.clone(),
                    crate::stmt::vmap::MapRef::Named(n) => match t.set(n) {
                        Some(s) => s.elems.clone(),
                        None => return Ok(()),
                    },
                };
                let mut objs = Vec::with_capacity(elems.len());
                for e in &elems {
                    let name = match e.data.as_deref() {
                        Some(crate::expr::Data::Val(parts)) => match parts.first() {
                            Some(Part::Val(v)) => v.as_str(),
                            _ => String::new(),
                        },
                        _ => String::new(),
                    };
                    objs.push(self.obj_op(t, o.kind, &name)?);
                }
                let set = self.set(t, &elems, width);
                self.ops
                    .push(Op::ObjMap(Box::new(ObjMap { loads, set, objs })));
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// The op that uses the object `name` of `kind` in table `t` (one state per object, shared by
    /// every rule naming it); `None` for kinds the rules do not evaluate (ct helper, synproxy, ...).
    fn obj_op(
        &mut self,
        t: &Table,
        kind: crate::types::ObjKind,
        name: &str,
    ) -> Result<Option<Op>, Diagnostic> {
        use crate::obj::ObjBody;
        use crate::stateful::{LimitState, QuotaState, SharedCounter};
        use crate::types::ObjKind;
        let o_kind = kind;
        let Some(oi) = t
            .objs
            .iter()
            .position(|x| x.name == name && x.kind() == o_kind)
        else {
            return Err(Diagnostic::bare(
                "Could not process rule: No such file or directory",
            ));
        };
        let key = (self.table, oi);
        let find = |v: &[((usize, usize), u32)]| v.iter().find(|e| e.0 == key).map(|e| e.1);
        let op = match (o_kind, &t.objs[oi].body) {
            (ObjKind::Counter, ObjBody::Counter(c)) => {
                let i = find(&self.counter_objs).unwrap_or_else(|| {
                    self.obj_counters
                        .push(SharedCounter::new(c.packets, c.bytes));
                    let i = self.obj_counters.len() as u32 - 1;
                    self.counter_objs.push((key, i));
                    i
                });
                Op::ObjCounter(i)
            }
            (ObjKind::Quota, ObjBody::Quota(q)) => {
                let i = find(&self.quota_objs).unwrap_or_else(|| {
                    self.quotas.push(QuotaState::new(q));
                    let i = self.quotas.len() as u32 - 1;
                    self.quota_objs.push((key, i));
                    i
                });
                Op::Quota(i)
            }
            (ObjKind::Limit, ObjBody::Limit(l)) => {
                let i = match find(&self.limit_objs) {
                    Some(i) => i,
                    None => {
                        let st = LimitState::new(l).ok_or_else(|| {
                            Diagnostic::bare(
                                "Could not process rule: Value too large for defined data type",
                            )
                        })?;
                        self.limits.push(st);
                        let i = self.limits.len() as u32 - 1;
                        self.limit_objs.push((key, i));
                        i
                    }
                };
                Op::Limit(i)
            }
            // ct helper/timeout/expectation, synproxy, secmark: attached by the dataplane, if at all
            _ => return Ok(None),
        };
        Ok(Some(op))
    }

    fn matching(&mut self, t: &Table, m: &Match) -> Result<(), Diagnostic> {
        let width: usize = m.left.sels.iter().map(|s| s.dtype().bytes()).sum();
        if width > 64 {
            return Err(Diagnostic::bare("concatenation too long"));
        }
        let sel = self.sel_of(&m.left);
        let bitmask =
            m.left.sels.len() == 1 && m.left.sels[0].dtype().is_bitmask() && m.left.binop.is_none();
        let neg = m.op == RelOp::Ne;
        if let [Selector::Ct { key, .. }] = &m.left.sels[..] {
            if key.name == "label" && m.left.binop.is_none() {
                return self.label_match(m, sel);
            }
        }
        let test = match &m.right {
            Rhs::Elem(e) => {
                let single = e.iter().all(|p| p.is_single());
                if single {
                    let lo = low(e);
                    if bitmask && matches!(m.op, RelOp::Implicit | RelOp::Ne | RelOp::Bang) {
                        Test::AnyBits {
                            mask: lo,
                            neg: neg || m.op == RelOp::Bang,
                        }
                    } else {
                        match m.op {
                            RelOp::Implicit | RelOp::Eq => Test::Eq(lo),
                            RelOp::Ne => Test::Ne(lo),
                            RelOp::Lt => Test::Lt(lo),
                            RelOp::Gt => Test::Gt(lo),
                            RelOp::Le => Test::Le(lo),
                            RelOp::Ge => Test::Ge(lo),
                            RelOp::Bang => Test::AnyBits {
                                mask: lo,
                                neg: true,
                            },
                        }
                    }
                } else if e.len() == 1 {
                    let (lo, hi) = bounds(e);
                    if lo.len() == hi.len() && lo.len() <= 8 {
                        let (mut l, mut h) = ([0; 8], [0; 8]);
                        l[..lo.len()].copy_from_slice(&lo);
                        h[..hi.len()].copy_from_slice(&hi);
                        Test::Range8 {
                            lo: l,
                            hi: h,
                            len: lo.len() as u8,
                            neg,
                        }
                    } else {
                        Test::Range {
                            lh: Box::new((lo, hi)),
                            neg,
                        }
                    }
                } else {
                    // a concatenation with ranges: a set of one element
                    let e = Elem {
                        parts: e.clone(),
                        data: None,
                        opts: None,
                    };
                    let set = self.set(t, std::slice::from_ref(&e), width);
                    Test::Set { set, neg }
                }
            }
            Rhs::Set(elems) => {
                let set = self.set(t, elems, width);
                Test::Set { set, neg }
            }
            Rhs::SetRef(name) => {
                let set = self.named_set(t, name, width)?;
                Test::Set { set, neg }
            }
        };
        self.ops.push(Op::Cmp { sel, test });
        Ok(())
    }

    /// `ct label NAME|BIT`: that bit of the 128 label bits is set (`!=`: is not).
    fn label_match(&mut self, m: &Match, sel: u32) -> Result<(), Diagnostic> {
        let Rhs::Elem(e) = &m.right else {
            return Err(Diagnostic::bare(
                "Could not process rule: Operation not supported: ct label in a set",
            ));
        };
        let (lo, _) = bounds(e);
        let bit = lo.last().copied().unwrap_or(0);
        if !e.iter().all(|p| p.is_single()) || bit >= 128 {
            return Err(Diagnostic::bare(
                "Could not process rule: Operation not supported: ct label range",
            ));
        }
        let mut mask = [0u8; 16];
        mask[15 - bit as usize / 8] = 1 << (bit % 8);
        let neg = matches!(m.op, RelOp::Ne | RelOp::Bang);
        self.ops.push(Op::Cmp {
            sel,
            test: Test::AnyBits {
                mask: Key::new(&mask),
                neg,
            },
        });
        Ok(())
    }

    pub(crate) fn set(&mut self, t: &Table, elems: &[Elem], width: usize) -> u32 {
        // exact keys: their bytes one after another, and (start, end, element) of each
        // sized for exact keys, the usual elements (no growth on the way)
        let mut flat: Vec<u8> = Vec::with_capacity(elems.len() * width);
        let mut keys: Vec<(u32, u32, u32)> = Vec::with_capacity(elems.len());
        let mut ranges = Vec::new();
        let mut comp_ranges = Vec::new();
        let mut catchall = None;
        let mut verdicts = Vec::with_capacity(elems.len());
        for (i, e) in elems.iter().enumerate() {
            let i = i as u32;
            if let Some(crate::expr::Data::Verdict(v)) = e.data.as_deref() {
                verdicts.push(self.vop(t, v));
            } else {
                verdicts.push(VOp::Continue);
            }
            if e.parts.is_empty() {
                catchall = Some(i);
            } else if e.parts.iter().all(|p| p.is_single()) {
                // the parts' bytes one after another, as `bounds(e).0` (without building either key)
                let s = flat.len() as u32;
                let mut n = 0;
                for p in &e.parts {
                    let Part::Val(v) = p else { continue };
                    let b = v.bytes();
                    if e.parts.len() > 1 && n + b.len() > 256 {
                        break;
                    }
                    flat.extend_from_slice(b);
                    n += b.len();
                }
                keys.push((s, flat.len() as u32, i));
            } else if e.parts.len() == 1 {
                let (lo, hi) = bounds(&e.parts);
                ranges.push((lo, hi, i));
            } else {
                let comps = e
                    .parts
                    .iter()
                    .map(|p| {
                        let (l, h) = p.bounds();
                        (bx(l.bytes()), bx(h.bytes()))
                    })
                    .collect();
                comp_ranges.push((comps, i));
            }
        }
        let key = |&(s, e, _): &(u32, u32, u32)| &flat[s as usize..e as usize];
        // by bytes, then element (the first of equal keys stays)
        keys.sort_by(|a, b| key(a).cmp(key(b)).then(a.2.cmp(&b.2)));
        keys.dedup_by(|a, b| key(a) == key(b));
        let mut exact = Vec::with_capacity(flat.len());
        let mut exact_idx = Vec::with_capacity(keys.len());
        for k in &keys {
            exact.extend_from_slice(key(k));
            exact_idx.push(k.2);
        }
        ranges.sort();
        let disjoint = ranges.windows(2).all(|w| w[0].1 < w[1].0);
        self.sets.push(CSet {
            width,
            exact,
            exact_idx,
            ranges,
            disjoint,
            comp_ranges,
            catchall,
            verdicts,
            dynamic: None,
        });
        (self.sets.len() - 1) as u32
    }

    /// Lowers the value expressions evaluation supports; `None` for the rest.
    pub(crate) fn vsrc(&mut self, t: &Table, v: &crate::expr::value::ValExpr) -> Option<VSrc> {
        use crate::expr::value::ValExpr as V;
        match v {
            V::Const(_, Part::Val(x)) => Some(VSrc::Const(bx(x.bytes()))),
            V::Sel(s) => Some(VSrc::Load {
                loads: Self::loads(&Lhs {
                    sels: crate::expr::Sels::one(s.clone()),
                    binop: None,
                })[..]
                    .into(),
                bin: vec![],
            }),
            V::Binop(l, op, r) => {
                let V::Const(_, Part::Val(c)) = &**r else {
                    return None;
                };
                let VSrc::Load { loads, mut bin } = self.vsrc(t, l)? else {
                    return None;
                };
                let lhs = Lhs {
                    sels: Default::default(),
                    binop: Some(Box::new((*op, *c))),
                };
                bin.push(Self::bin(&lhs)?);
                Some(VSrc::Load { loads, bin })
            }
            V::Numgen {
                random,
                modulus,
                offset,
            } => Some(VSrc::Load {
                loads: vec![Load::Numgen(Arc::new(Numgen::new(
                    *random, *modulus, *offset,
                )))]
                .into(),
                bin: vec![],
            }),
            V::Jhash { .. } | V::Symhash { .. } => Some(VSrc::Load {
                loads: vec![Self::computed_load(v)].into(),
                bin: vec![],
            }),
            V::Map(k, m, _)
                if matches!(&**k, V::Numgen { .. } | V::Jhash { .. } | V::Symhash { .. }) =>
            {
                let VSrc::Load { loads, .. } = self.vsrc(t, k)? else {
                    return None;
                };
                self.map_vsrc(t, m, loads, 4)
            }
            V::Map(k, m, _) => {
                let sels: crate::expr::Sels = match &**k {
                    V::Sel(s) => crate::expr::Sels::one(s.clone()),
                    V::Concat(v) => v
                        .iter()
                        .map(|e| {
                            if let V::Sel(s) = e {
                                Some(s.clone())
                            } else {
                                None
                            }
                        })
                        .collect::<Option<_>>()?,
                    _ => return None,
                };
                let width = sels.iter().map(|s| s.dtype().bytes()).sum();
                let loads = Self::loads(&Lhs { sels, binop: None })[..].into();
                self.map_vsrc(t, m, loads, width)
            }
            _ => None,
        }
    }

    /// A map lookup whose key comes from `loads` (`width` bytes): the element data as values. A named
    /// map with dynamic elements is the one compiled set every rule shares (what the packet path
    /// writes into it is seen by the lookups).
    fn map_vsrc(
        &mut self,
        t: &Table,
        m: &crate::stmt::vmap::MapRef,
        loads: Arc<[Load]>,
        width: usize,
    ) -> Option<VSrc> {
        let elems: Vec<Elem> = match m {
            crate::stmt::vmap::MapRef::Anon(e) => e.clone(),
            crate::stmt::vmap::MapRef::Named(n) => {
                let named = t.set(n)?;
                if self.is_dynamic(named) {
                    let set = self.named_set(t, n, width).ok()?;
                    let data = named
                        .elems
                        .iter()
                        .filter(|e| !dynamic_elem(e))
                        .map(elem_data)
                        .collect();
                    return Some(VSrc::Map {
                        loads,
                        set,
                        data,
                        written: None,
                    });
                }
                named.elems.clone()
            }
        };
        let data = elems.iter().map(elem_data).collect();
        let set = self.set(t, &elems, width);
        Some(VSrc::Map {
            loads,
            set,
            data,
            written: None,
        })
    }

    fn vop(&mut self, t: &Table, v: &VerdictExpr) -> VOp {
        if self.chain_pos.0 != Some(self.table) {
            self.chain_pos = (
                Some(self.table),
                t.chains
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (c.name.clone(), i))
                    .collect(),
            );
        }
        let pos = &self.chain_pos.1;
        let base = self.chain_base;
        let target = |name: &str| (base + pos.get(name).copied().unwrap_or(0)) as u32;
        match v {
            VerdictExpr::Accept => VOp::Accept,
            VerdictExpr::Drop => VOp::Drop,
            VerdictExpr::Continue => VOp::Continue,
            VerdictExpr::Return => VOp::Return,
            VerdictExpr::Jump(c) => VOp::Jump(target(c)),
            VerdictExpr::Goto(c) => VOp::Goto(target(c)),
            VerdictExpr::JumpBlock(rules) | VerdictExpr::GotoBlock(rules) => {
                let id = (self.n_named + self.blocks.len()) as u32;
                // Counter slots go in statement order, binding chains included (as the AST lists
                // them: `Ruleset::counters`): the block's counters get the next ones, now.
                let slot = self.slot;
                self.slot += crate::ast::count_counters(rules) as u32;
                self.blocks.push((
                    self.table,
                    self.chain_base,
                    self.cur_chain,
                    rules.clone(),
                    slot,
                ));
                if matches!(v, VerdictExpr::JumpBlock(_)) {
                    VOp::Jump(id)
                } else {
                    VOp::Goto(id)
                }
            }
        }
    }
}

/// Elements a set or map with dynamic elements keeps in its hash table: single keys (the catch-all
/// and ranges stay static).
fn dynamic_elem(e: &Elem) -> bool {
    !e.parts.is_empty() && e.parts.iter().all(|p| p.is_single())
}

/// A map element's data as bytes (empty for none or a verdict).
fn elem_data(e: &Elem) -> Key {
    match e.data.as_deref() {
        Some(crate::expr::Data::Val(parts)) => data_bytes(parts),
        _ => bx(&[]),
    }
}

/// Map data as bytes: the values' lower bounds one after another.
fn data_bytes(parts: &[Part]) -> Key {
    bounds(parts).0
}

/// Concatenated lower and upper bounds of an element.
/// The key of an element of single values (its lower bound: no upper one built).
fn low(parts: &[Part]) -> Key {
    match parts {
        [Part::Val(v)] => Key::new(v.bytes()),
        _ => bounds(parts).0,
    }
}

fn bounds(parts: &[Part]) -> (Key, Key) {
    if let [p] = parts {
        let (l, h): (Val, Val) = match p {
            Part::Val(v) => (*v, *v),
            _ => p.bounds(),
        };
        return (Key::new(l.bytes()), Key::new(h.bytes()));
    }
    let mut lo = [0u8; 256];
    let mut hi = [0u8; 256];
    let mut n = 0;
    for p in parts {
        let (l, h): (Val, Val) = match p {
            Part::Val(v) => (*v, *v),
            _ => p.bounds(),
        };
        let w = l.bytes().len();
        if n + w > lo.len() {
            break;
        }
        lo[n..n + w].copy_from_slice(l.bytes());
        hi[n..n + w].copy_from_slice(h.bytes());
        n += w;
    }
    (Key::new(&lo[..n]), Key::new(&hi[..n]))
}

#[cfg(test)]
mod properties_tests {
    use super::*;

    fn props(src: &str) -> (Properties, bool) {
        let rs = crate::parse_ruleset(src, "t.nft").unwrap();
        let c = compile(&rs).unwrap();
        (c.properties(), Properties::by_printing_everything(&rs))
    }

    #[test]
    fn properties_match_the_whole_print() {
        let chain = |body: &str| {
            format!(
                "table inet t {{\n\tchain x {{\n\t}}\n\tchain f {{\n\t\ttype filter hook forward priority 0; policy accept;\n\
                 \t\tip saddr 10.0.0.1 counter drop\n\t\tiifname \"ct\" tcp dport {{ 22, 80 }} accept\n{body}\t}}\n}}\n"
            )
        };
        let nat = "table ip n {\n\tchain p {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n\t}\n}\n";
        for (src, nftrace, conntrack) in [
            (chain(""), false, false),
            (chain("\t\tct state established accept\n"), false, true),
            (chain("\t\tip daddr 10.0.0.9 notrack\n"), false, true),
            (chain("\t\tjump x\n"), false, false),
            (
                chain("\t\tip saddr 10.0.0.2 jump x\n\t\tct mark 1 accept\n"),
                false,
                true,
            ),
            (chain("\t\tmeta nftrace set 1\n"), true, false),
            (chain("") + nat, false, true),
        ] {
            let (p, whole) = props(&src);
            assert_eq!((p.nftrace, p.conntrack), (nftrace, conntrack), "{src}");
            assert_eq!(p.conntrack, whole, "{src}");
        }
    }
}
