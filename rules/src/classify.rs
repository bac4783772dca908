//! The compiled classifier (DESIGN-NOTES §4): per chain, an index that narrows the rules a packet has
//! to visit down to the few that can match, with the linear walk's semantics kept exactly.
//!
//! # Why it is exact
//!
//! A rule's *prefix* is its leading compares, up to its first op with an effect (counter, store,
//! verdict), plus a verdict-map lookup in that position (a miss ends the rule). When a prefix compare
//! fails, the linear walk leaves the rule having done nothing. So each prefix compare on a field whose
//! value cannot change while a chain runs is a necessary condition for the rule to do anything: a rule
//! whose condition does not hold can be skipped, and every rule that is visited runs with the linear
//! code ([`CompiledRuleset::run_rule`]), which checks everything again, in rule order. Visiting a
//! superset of the rules that can match, in order, gives the same verdict, counters and side effects.
//!
//! Fields that can change during a walk (`meta mark`, `ct mark`, `meta nftrace`: the `Store` targets)
//! and loads that read state other than the packet bytes and its fixed metadata are never indexed; the
//! rules testing them are still filed under another field or visited always.
//!
//! # Structure
//!
//! *Indexed field*: a key (loads + optional mask/shift) of at most 16 bytes whose value is fixed for the
//! walk: payload fields and the meta keys iif/oif(name), l4proto, nfproto, protocol, length, pkttype.
//! Each prefix compare on one becomes a union of closed intervals of the key's value space (`==` a
//! point, prefixes and ranges an interval, `!=`/`<`/`>` one or two intervals, anonymous and named sets
//! and verdict maps their elements; bit tests on 1-byte keys by trying all 256 values).
//!
//! Per field the value space is cut into *classes*: each value that some rule tests for equality is a
//! class of its own (found with a hash probe), and the elementary intervals between the boundaries of
//! the ranges are the others (found through a bucket table over the boundaries, then a binary search
//! within the bucket). Each rule is filed under one of its compares — the most selective (fewest rules
//! of the chain sharing a class with it) — or, when every compare covers more than [`WIDE`] classes
//! (`!=`, wide ranges over many others, big sets) or it has none, in the chain's `always` list. Each
//! class stores the sorted list of rules filed under that field whose compare holds for it.
//!
//! A packet computes each filed field once per chain visit and gets one sorted list per field; the
//! walk visits the union of those lists and `always`, in rule order (a k-way merge over ≤ 17 lists).
//! Cost per packet: one hash probe and/or bucketed search per field, plus the rules visited. No
//! bitmaps: per-class dense bitmaps would cost n²/8 bytes (1.25 GB at 100k rules) and n/64 words per
//! packet.

use crate::compile::{Bin, CompiledRuleset, Load, Op, Test};
use crate::eval::{apply_bin, load, PacketCtx};

/// Chains with fewer rules are walked linearly.
pub(crate) const MIN_RULES: usize = 8;
/// Distinct fields indexed per chain.
const MAX_FIELDS: usize = 16;
/// A compare covering more classes than this is not used to file its rule (its rule id would be copied
/// into that many lists).
const WIDE: u32 = 64;
const MAX_LISTS: usize = MAX_FIELDS + 1;

/// The classifier of a compiled ruleset: an optional index per chain.
#[derive(Default)]
pub(crate) struct Classifier {
    chains: Vec<Option<Box<ChainIndex>>>,
}

pub(crate) struct ChainIndex {
    /// fields of at most 8 bytes (IPv4 addresses, ports, protocols, …)
    narrow: Box<[FieldIndex<u64>]>,
    /// fields of 9 to 16 bytes (IPv6 addresses, interface names, concatenations)
    wide: Box<[FieldIndex<u128>]>,
    /// rules with no compare the index can use: visited always
    always: Box<[u32]>,
}

struct FieldIndex<K> {
    loads: Box<[Load]>,
    bin: Option<Bin>,
    width: usize,
    points: PointTable<K>,
    ranges: Ranges<K>,
    /// class c's rules: `ids[offsets[c]..offsets[c + 1]]` (range classes first, then point classes)
    offsets: Box<[u32]>,
    ids: Box<[u32]>,
    /// every rule filed under this field (the loaded key had an unexpected width)
    all: Box<[u32]>,
}

/// A key value: the big-endian number its bytes spell.
trait Key: Copy + Eq + Ord {
    fn from_u128(v: u128) -> Self;
    /// The first `n` bytes of `buf`.
    fn from_buf(buf: &[u8; 64], n: usize) -> Self;
    fn hash(self) -> u64;
    /// `(self - base) >> shift`, saturated to u64 (`self >= base`).
    fn bucket(self, base: Self, shift: u32) -> u64;
    /// `self + 1` (`self` is below the field's maximum).
    fn succ(self) -> Self;
}

impl Key for u64 {
    #[inline(always)]
    fn from_u128(v: u128) -> u64 {
        v as u64
    }
    #[inline(always)]
    fn from_buf(buf: &[u8; 64], n: usize) -> u64 {
        buf[..n.min(8)]
            .iter()
            .fold(0u64, |a, &x| (a << 8) | x as u64)
    }
    #[inline(always)]
    fn hash(self) -> u64 {
        (self ^ (self >> 29)).wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }
    #[inline(always)]
    fn bucket(self, base: u64, shift: u32) -> u64 {
        (self - base).checked_shr(shift).unwrap_or(0)
    }
    #[inline(always)]
    fn succ(self) -> u64 {
        self + 1
    }
}

impl Key for u128 {
    #[inline(always)]
    fn from_u128(v: u128) -> u128 {
        v
    }
    #[inline(always)]
    fn from_buf(buf: &[u8; 64], n: usize) -> u128 {
        let mut b = [0u8; 16];
        b.copy_from_slice(&buf[..16]);
        u128::from_be_bytes(b) >> (128 - 8 * n)
    }
    #[inline(always)]
    fn hash(self) -> u64 {
        ((self as u64) ^ ((self >> 64) as u64).rotate_left(29)).wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }
    #[inline(always)]
    fn bucket(self, base: u128, shift: u32) -> u64 {
        u64::try_from((self - base).checked_shr(shift).unwrap_or(0)).unwrap_or(u64::MAX)
    }
    #[inline(always)]
    fn succ(self) -> u128 {
        self + 1
    }
}

/// The range classes of a field: class j is `[starts[j], starts[j + 1])`, `starts[0] == 0`. Found
/// by a bucket table over `[starts[1], last start]` (about two buckets per boundary, each knowing the
/// boundaries below it) and a binary search within the bucket: O(1) for evenly spread boundaries, never
/// worse than one binary search.
struct Ranges<K> {
    starts: Box<[K]>,
    shift: u32,
    /// `buckets[b]`: how many starts are below bucket b's low end `starts[1] + (b << shift)`; then
    /// `starts.len()`
    buckets: Box<[u32]>,
}

impl<K: Key> Ranges<K> {
    fn new(starts: &[K]) -> Ranges<K> {
        let starts: Box<[K]> = starts.into();
        let n = starts.len();
        if n <= 2 {
            return Ranges {
                starts,
                shift: 0,
                buckets: Box::new([]),
            };
        }
        let (lo, hi) = (starts[1], starts[n - 1]);
        let mut shift = 0;
        while hi.bucket(lo, shift) >= 2 * n as u64 {
            shift += 1;
        }
        let nb = hi.bucket(lo, shift) as usize + 1;
        let mut buckets = vec![0u32; nb + 1];
        let mut j = 0;
        for (b, slot) in buckets[..nb].iter_mut().enumerate() {
            // the starts below the bucket's low end `lo + (b << shift)`
            while j < n && (starts[j] < lo || starts[j].bucket(lo, shift) < b as u64) {
                j += 1;
            }
            *slot = j as u32;
        }
        buckets[nb] = n as u32;
        Ranges {
            starts,
            shift,
            buckets: buckets.into_boxed_slice(),
        }
    }

    /// The class of `v`.
    #[inline]
    fn class(&self, v: K) -> usize {
        let s = &self.starts;
        if self.buckets.is_empty() {
            return s.partition_point(|&x| x <= v) - 1;
        }
        if v < s[1] {
            return 0;
        }
        let b = v.bucket(s[1], self.shift);
        let nb = self.buckets.len() - 1;
        if b >= nb as u64 {
            return s.len() - 1;
        }
        let (a, z) = (
            self.buckets[b as usize] as usize,
            self.buckets[b as usize + 1] as usize,
        );
        // the count of starts ≤ v is in [a, z]: the ones below the bucket, plus those in it ≤ v
        a + s[a..z].partition_point(|&x| x <= v) - 1
    }
}

/// Open-addressing hash table (linear probing, at most half full) from a point value to its class.
struct PointTable<K> {
    slots: Box<[Slot<K>]>,
    shift: u32,
}

#[derive(Clone, Copy)]
struct Slot<K> {
    key: K,
    /// `u32::MAX`: empty
    class: u32,
}

impl<K: Key> PointTable<K> {
    fn new(points: &[K], first_class: u32) -> PointTable<K> {
        if points.is_empty() {
            return PointTable {
                slots: Box::new([]),
                shift: 63,
            };
        }
        let bits = (points.len() * 2)
            .next_power_of_two()
            .trailing_zeros()
            .max(1);
        let mask = (1usize << bits) - 1;
        let mut slots = vec![
            Slot {
                key: K::from_u128(0),
                class: u32::MAX
            };
            1 << bits
        ];
        let shift = 64 - bits;
        for (i, &p) in points.iter().enumerate() {
            let mut j = (p.hash() >> shift) as usize;
            while slots[j].class != u32::MAX {
                j = (j + 1) & mask;
            }
            slots[j] = Slot {
                key: p,
                class: first_class + i as u32,
            };
        }
        PointTable {
            slots: slots.into_boxed_slice(),
            shift,
        }
    }

    #[inline]
    fn get(&self, k: K) -> Option<u32> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.slots.len() - 1;
        let mut j = (k.hash() >> self.shift) as usize;
        loop {
            let s = self.slots[j];
            if s.class == u32::MAX {
                return None;
            }
            if s.key == k {
                return Some(s.class);
            }
            j = (j + 1) & mask;
        }
    }
}

#[inline]
fn be(b: &[u8]) -> u128 {
    // in 64-bit halves: registers only (a copy into a stack array stalls the load that reads it back)
    let f = |b: &[u8]| b.iter().fold(0u64, |a, &x| (a << 8) | x as u64);
    match b.len() {
        0..=8 => f(b) as u128,
        9..=16 => {
            let (hi, lo) = b.split_at(b.len() - 8);
            ((f(hi) as u128) << 64) | f(lo) as u128
        }
        _ => b.iter().fold(0u128, |a, &x| (a << 8) | x as u128),
    }
}

fn max_of(width: usize) -> u128 {
    if width >= 16 {
        u128::MAX
    } else {
        (1u128 << (8 * width)) - 1
    }
}

impl<K: Key> FieldIndex<K> {
    /// The rules filed under this field that can match `pkt`.
    #[inline]
    fn lookup(&self, pkt: &PacketCtx<'_>) -> &[u32] {
        let mut buf = [0u8; 64];
        let mut n = 0;
        for l in self.loads.iter() {
            match load(l, pkt, &mut buf[n..]) {
                Some(k) => n += k,
                // the load fails in every rule filed here: none of them matches
                None => return &[],
            }
        }
        if let Some(b) = &self.bin {
            apply_bin(b, &mut buf[..n]);
        }
        if n != self.width {
            return &self.all;
        }
        let v = K::from_buf(&buf, n);
        let class = match self.points.get(v) {
            Some(c) => c as usize,
            None => self.ranges.class(v),
        };
        &self.ids[self.offsets[class] as usize..self.offsets[class + 1] as usize]
    }

    fn new(field: &Field<'_, K>, cl: Classes<K>, ch: &[usize], pclass: &[u32]) -> Self {
        // every class each chosen compare covers, with its rule
        fn cover<K: Key>(
            field: &Field<'_, K>,
            cl: &Classes<K>,
            ch: &[usize],
            pclass: &[u32],
            mut g: impl FnMut(u32, usize),
        ) {
            for &i in ch {
                let c = &field.cmps[i];
                if c.n == 1 && pclass[c.iv as usize] != u32::MAX {
                    g(c.rule, pclass[c.iv as usize] as usize);
                } else {
                    for &iv in field.ivs_of(i) {
                        cl.cover(iv, |k| g(c.rule, k));
                    }
                }
            }
        }
        let n = cl.count();
        let mut offsets = vec![0u32; n + 1];
        cover(field, &cl, ch, pclass, |_, k| offsets[k + 1] += 1);
        for k in 0..n {
            offsets[k + 1] += offsets[k];
        }
        let mut fill = offsets.clone();
        let mut ids = vec![0u32; offsets[n] as usize];
        cover(field, &cl, ch, pclass, |rule, k| {
            ids[fill[k] as usize] = rule;
            fill[k] += 1;
        });
        let rules: Vec<u32> = ch.iter().map(|&i| field.cmps[i].rule).collect();
        FieldIndex {
            loads: field.loads.into(),
            bin: field.bin.cloned(),
            width: field.width,
            points: cl.table,
            ranges: Ranges::new(&cl.starts),
            offsets: offsets.into_boxed_slice(),
            ids: ids.into_boxed_slice(),
            all: rules.into_boxed_slice(),
        }
    }
}

/// The candidate rules of one chain for one packet: sorted lists of rule indices, merged on the fly.
pub(crate) struct Cands<'a> {
    chain: u32,
    last: u32,
    n: usize,
    lists: [&'a [u32]; MAX_LISTS],
    /// how far each list has been consumed
    pos: [u32; MAX_LISTS],
}

impl<'a> Cands<'a> {
    /// The first candidate at or after rule `from`.
    #[inline]
    fn next(&mut self, from: u32) -> Option<u32> {
        if from < self.last {
            // the chain was entered afresh (jumped to again): restart the lists
            self.pos = [0; MAX_LISTS];
        }
        self.last = from;
        let mut best = u32::MAX;
        for (l, p) in self.lists[..self.n].iter().zip(&mut self.pos) {
            let mut i = *p as usize;
            if l.get(i).is_some_and(|&x| x < from) {
                i += l[i..].partition_point(|&x| x < from);
                *p = i as u32;
            }
            if let Some(&x) = l.get(i) {
                best = best.min(x);
            }
        }
        (best != u32::MAX).then_some(best)
    }
}

impl ChainIndex {
    #[inline]
    fn fill<'a>(&'a self, c: &mut Cands<'a>, pkt: &PacketCtx<'_>) {
        let mut n = 0;
        if !self.always.is_empty() {
            c.lists[0] = &self.always;
            n = 1;
        }
        for f in self.narrow.iter() {
            let l = f.lookup(pkt);
            if !l.is_empty() {
                c.lists[n] = l;
                n += 1;
            }
        }
        for f in self.wide.iter() {
            let l = f.lookup(pkt);
            if !l.is_empty() {
                c.lists[n] = l;
                n += 1;
            }
        }
        c.n = n;
    }
}

/// What the classifier made of a chain ([`CompiledRuleset::index_stats`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexStats {
    /// rules in the chain
    pub rules: usize,
    /// rules filed under a field (skipped when their compare does not hold)
    pub filed: usize,
    /// rules visited for every packet
    pub always: usize,
    /// fields looked up per packet, with their class counts
    pub fields: Vec<usize>,
}

impl CompiledRuleset {
    /// The classifier's index of chain `c`; `None` when the chain is walked linearly (short, or no rule
    /// has a compare it can use).
    pub fn index_stats(&self, c: crate::eval::ChainId) -> Option<IndexStats> {
        let ix = self.cls.chains.get(c.0 as usize)?.as_ref()?;
        let rules = self.chains[c.0 as usize].rules.len();
        Some(IndexStats {
            rules,
            filed: (ix.narrow.iter().map(|f| f.all.len()))
                .chain(ix.wide.iter().map(|f| f.all.len()))
                .sum(),
            always: ix.always.len(),
            fields: (ix.narrow.iter().map(|f| f.offsets.len() - 1))
                .chain(ix.wide.iter().map(|f| f.offsets.len() - 1))
                .collect(),
        })
    }
}

impl CompiledRuleset {
    /// The next rule of chain `c` at or after `r` that the classifier cannot rule out for `pkt` (the end
    /// of the chain when there is none); `r` itself for chains without an index. `cands` caches the
    /// packet's lookups for the chain being walked.
    #[inline]
    pub(crate) fn next_candidate<'a>(
        &'a self,
        c: usize,
        r: u32,
        pkt: &PacketCtx<'_>,
        cands: &mut Option<Cands<'a>>,
    ) -> u32 {
        let Some(Some(ix)) = self.cls.chains.get(c) else {
            return r;
        };
        if cands.as_ref().is_none_or(|cs| cs.chain != c as u32) {
            let cs = cands.insert(Cands {
                chain: c as u32,
                last: 0,
                n: 0,
                lists: [&[]; MAX_LISTS],
                pos: [0; MAX_LISTS],
            });
            ix.fill(cs, pkt);
        }
        let cs = cands.as_mut().expect("filled");
        cs.next(r).unwrap_or(self.chains[c].rules.end)
    }
}

/// Builds the index of every chain long enough to need one.
pub(crate) fn build(rs: &CompiledRuleset) -> Classifier {
    let chains = rs
        .chains
        .iter()
        .map(|c| {
            if (c.rules.end - c.rules.start) as usize >= MIN_RULES {
                build_chain(rs, c.rules.clone()).map(Box::new)
            } else {
                None
            }
        })
        .collect();
    Classifier { chains }
}

/// Whether a load's value is fixed for the whole walk of a chain (no op can change it).
fn fixed(l: &Load) -> bool {
    match l {
        Load::Payload(p) => !matches!(p.base, crate::expr::payload::Base::Inner),
        Load::Meta(k) => matches!(
            k.name,
            "iif"
                | "iifname"
                | "oif"
                | "oifname"
                | "l4proto"
                | "nfproto"
                | "protocol"
                | "length"
                | "pkttype"
        ),
        // ct keys include `ct mark`, which rules set; options are rare in big chains
        Load::Ct(..)
        | Load::Opt { .. }
        | Load::Unavailable
        | Load::Fib { .. }
        | Load::Numgen(_)
        | Load::Hash(_) => false,
    }
}

fn same_load(a: &Load, b: &Load) -> bool {
    match (a, b) {
        (Load::Payload(x), Load::Payload(y)) => {
            x.base == y.base
                && x.off == y.off
                && x.len == y.len
                && x.shift == y.shift
                && x.mask == y.mask
                && x.out_len == y.out_len
        }
        (Load::Meta(x), Load::Meta(y)) => std::ptr::eq(*x, *y) || x.name == y.name,
        _ => false,
    }
}

fn same_bin(a: Option<&Bin>, b: Option<&Bin>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(Bin::Mask { and: a1, xor: x1 }), Some(Bin::Mask { and: a2, xor: x2 })) => {
            a1 == a2 && x1 == x2
        }
        (Some(Bin::Shl(x)), Some(Bin::Shl(y))) | (Some(Bin::Shr(x)), Some(Bin::Shr(y))) => x == y,
        _ => false,
    }
}

/// What a prefix op tests.
enum Cond<'a> {
    Test(&'a Test),
    /// verdict map: the key must be in the set
    Vmap(u32),
}

/// The closed intervals of key values for which `cond` holds, sorted and disjoint, appended to `out`;
/// returns the key width, or `None` when the condition cannot be indexed.
fn intervals(rs: &CompiledRuleset, cond: &Cond<'_>, out: &mut Vec<(u128, u128)>) -> Option<usize> {
    if let Cond::Test(Test::Eq(v)) = cond {
        // the common case: one point
        let v: &[u8] = v;
        let width = v.len();
        if width == 0 || width > 16 {
            return None;
        }
        let x = be(v);
        out.push((x, x));
        return Some(width);
    }
    let start = out.len();
    let width = match cond {
        Cond::Test(t) => match t {
            Test::Eq(v) | Test::Ne(v) | Test::Lt(v) | Test::Gt(v) | Test::Le(v) | Test::Ge(v) => {
                v.len()
            }
            Test::Range8 { len, .. } => *len as usize,
            Test::Range { lh, .. } if lh.0.len() == lh.1.len() => lh.0.len(),
            Test::Range { .. } => return None,
            Test::AnyBits { mask, .. } => mask.len(),
            Test::Set { set, .. } => rs.sets[*set as usize].width(),
        },
        Cond::Vmap(set) => rs.sets[*set as usize].width(),
    };
    if width == 0 || width > 16 {
        return None;
    }
    let max = max_of(width);
    if let (1, Cond::Test(t @ Test::AnyBits { .. })) = (width, cond) {
        // bit tests on one byte (tcp flags): try every value with the linear code itself
        for b in 0..=255u8 {
            if rs.test(t, &[b], 0) {
                out.push((b as u128, b as u128));
            }
        }
        normalize(out, start);
        return Some(1);
    }
    // [0, v) and (v, max]
    let below = |out: &mut Vec<(u128, u128)>, v: u128| {
        if v > 0 {
            out.push((0, v - 1));
        }
    };
    let above = |out: &mut Vec<(u128, u128)>, v: u128| {
        if v < max {
            out.push((v + 1, max));
        }
    };
    let set_elems = |out: &mut Vec<(u128, u128)>, set: u32| {
        rs.sets[set as usize].intervals(WIDE as usize, |l, h| out.push((be(l), be(h))))
    };
    match cond {
        Cond::Test(t) => match t {
            Test::Eq(v) => out.push((be(v), be(v))),
            Test::Ne(v) => {
                below(out, be(v));
                above(out, be(v));
            }
            Test::Lt(v) => below(out, be(v)),
            Test::Le(v) => out.push((0, be(v))),
            Test::Gt(v) => above(out, be(v)),
            Test::Ge(v) => out.push((be(v), max)),
            Test::Range { .. } | Test::Range8 { .. } => {
                let (lo, hi, neg) = match t {
                    Test::Range { lh, neg } => (be(&lh.0), be(&lh.1), neg),
                    Test::Range8 { lo, hi, len, neg } => {
                        let n = *len as usize;
                        (be(&lo[..n]), be(&hi[..n]), neg)
                    }
                    _ => unreachable!(),
                };
                match (neg, lo <= hi) {
                    (false, true) => out.push((lo, hi)),
                    (false, false) => {}
                    (true, true) => {
                        below(out, lo);
                        above(out, hi);
                    }
                    (true, false) => out.push((0, max)),
                }
            }
            Test::AnyBits { .. } => return None,
            Test::Set { set, neg: false } => {
                if !set_elems(out, *set) {
                    out.truncate(start);
                    return None;
                }
            }
            Test::Set { neg: true, .. } => return None,
        },
        Cond::Vmap(set) => {
            if !set_elems(out, *set) {
                out.truncate(start);
                return None;
            }
        }
    }
    normalize(out, start);
    Some(width)
}

/// Sorts `out[start..]` and merges overlapping or adjacent intervals.
fn normalize(out: &mut Vec<(u128, u128)>, start: usize) {
    if out.len() <= start + 1 {
        return;
    }
    out[start..].sort_unstable();
    let mut w = start;
    for i in start..out.len() {
        let (lo, hi) = out[i];
        if w > start && lo <= out[w - 1].1.saturating_add(1) {
            out[w - 1].1 = out[w - 1].1.max(hi);
        } else {
            out[w] = (lo, hi);
            w += 1;
        }
    }
    out.truncate(w);
}

/// A field as the rules of one chain load it, and the prefix compares on it; `K`: `u64` for fields of at
/// most 8 bytes, else `u128`.
struct Field<'a, K> {
    loads: &'a [Load],
    bin: Option<&'a Bin>,
    width: usize,
    /// the compares, in rule order
    cmps: Vec<Cmp>,
    /// their intervals
    ivs: Vec<(K, K)>,
    /// the last few single points and single ranges added to `ivs`, with their slots (`u32::MAX`:
    /// none), each replaced in turn from `next`
    recent: [[(K, K, u32); 4]; 2],
    next: [usize; 2],
    /// the last few groups of several intervals added: (first slot, count; `u32::MAX`: none)
    groups: [(u32, u16); 4],
    next_group: usize,
}

/// One prefix compare: its rule, its position among the rule's indexable compares (ties in the
/// choice go to the first), and its intervals (`ivs[iv..iv + n]` of its field; compares with the same
/// intervals as a recent one on the field share them). 12 bytes: one for most compares of the chain.
struct Cmp {
    rule: u32,
    iv: u32,
    /// (saturated: ties among a rule's 65,535th and later compares go to any of them)
    pos: u16,
    n: u16,
}

impl<'a, K: Key> Field<'a, K> {
    fn new(loads: &'a [Load], bin: Option<&'a Bin>, width: usize) -> Self {
        Field {
            loads,
            bin,
            width,
            cmps: Vec::new(),
            ivs: Vec::new(),
            recent: [[(K::from_u128(0), K::from_u128(0), u32::MAX); 4]; 2],
            next: [0; 2],
            groups: [(u32::MAX, 0); 4],
            next_group: 0,
        }
    }

    fn is(&self, loads: &[Load], bin: Option<&Bin>, width: usize) -> bool {
        self.width == width
            && (std::ptr::eq(self.loads, loads)
                || (self.loads.len() == loads.len()
                    && self.loads.iter().zip(loads).all(|(a, b)| same_load(a, b))))
            && same_bin(self.bin, bin)
    }

    fn ivs_of(&self, i: usize) -> &[(K, K)] {
        let c = &self.cmps[i];
        &self.ivs[c.iv as usize..c.iv as usize + c.n as usize]
    }

    /// Appends a compare with intervals `ivs`, sharing them when equal with one of the last few single
    /// points, single ranges or groups of intervals added.
    fn push(&mut self, rule: u32, pos: u32, ivs: &[(u128, u128)]) {
        let n = ivs.len() as u16;
        let k = |&(lo, hi): &(u128, u128)| (K::from_u128(lo), K::from_u128(hi));
        if let [x] = ivs {
            // one interval (most compares)
            let x = k(x);
            // points and ranges remembered apart (many points, few ranges repeated further apart)
            let kind = (x.0 != x.1) as usize;
            let shared = (self.recent[kind].iter())
                .find(|r| r.2 != u32::MAX && (r.0, r.1) == x)
                .map(|r| r.2);
            let iv = shared.unwrap_or_else(|| {
                let iv = self.ivs.len() as u32;
                self.ivs.push(x);
                self.recent[kind][self.next[kind]] = (x.0, x.1, iv);
                self.next[kind] = (self.next[kind] + 1) % 4;
                iv
            });
            self.cmps.push(Cmp {
                rule,
                iv,
                pos: pos.min(u16::MAX as u32) as u16,
                n,
            });
            return;
        }
        let shared = (self.groups.iter())
            .find(|&&(iv, m)| {
                iv != u32::MAX
                    && m == n
                    && self.ivs[iv as usize..iv as usize + m as usize]
                        .iter()
                        .zip(ivs)
                        .all(|(a, b)| *a == k(b))
            })
            .map(|g| g.0);
        let iv = shared.unwrap_or_else(|| {
            let s = self.ivs.len() as u32;
            self.ivs.extend(ivs.iter().map(k));
            self.groups[self.next_group] = (s, n);
            self.next_group = (self.next_group + 1) % 4;
            s
        });
        self.cmps.push(Cmp {
            rule,
            iv,
            pos: pos.min(u16::MAX as u32) as u16,
            n,
        });
    }
}

/// `s.partition_point(pred)`, searched from the start with doubling steps: cheap when the point is
/// near the start.
#[inline]
fn gallop<K: Copy>(s: &[K], pred: impl Fn(K) -> bool) -> usize {
    let mut end = 1;
    while end < s.len() && pred(s[end]) {
        end *= 2;
    }
    // `pred` holds up to `end / 2` (inclusive, when `end > 1`)
    let start = end / 2;
    let end = end.min(s.len());
    start + s[start..end].partition_point(|&x| pred(x))
}

/// A field's value space cut at the boundaries of some intervals: range classes `0..starts.len()`,
/// then one class per point value.
struct Classes<K> {
    starts: Vec<K>,
    points: Vec<K>,
    /// point value → its class
    table: PointTable<K>,
}

impl<K: Key> Classes<K> {
    fn new<'x>(width: usize, ivs: impl Iterator<Item = &'x (K, K)>) -> Classes<K>
    where
        K: 'x,
    {
        let max = K::from_u128(max_of(width));
        let mut starts = vec![K::from_u128(0)];
        let mut points = Vec::new();
        for &(lo, hi) in ivs {
            if lo == hi {
                points.push(lo);
            } else {
                starts.push(lo);
                if hi < max {
                    starts.push(hi.succ());
                }
            }
        }
        starts.sort_unstable();
        starts.dedup();
        points.sort_unstable();
        points.dedup();
        let table = PointTable::new(&points, starts.len() as u32);
        Classes {
            starts,
            points,
            table,
        }
    }

    fn count(&self) -> usize {
        self.starts.len() + self.points.len()
    }

    /// Calls `f` with every class the interval covers; a point must be one of `points`.
    #[inline]
    fn cover(&self, iv: (K, K), f: impl FnMut(usize)) {
        let (a, b, pa, pb) = self.span(iv);
        (a..=b).chain(pa..pb).for_each(f);
    }

    /// The classes an interval covers, as [`Classes::cover`] visits them: range classes `a..=b` and point
    /// classes `pa..pb` (a point: no range class, one point class).
    #[inline]
    fn span(&self, (lo, hi): (K, K)) -> (usize, usize, usize, usize) {
        let m = self.starts.len();
        if lo == hi {
            let p = match self.table.get(lo) {
                Some(c) => c as usize,
                None => m + self.points.partition_point(|&p| p < lo),
            };
            return (1, 0, p, p + 1);
        }
        // the upper ends searched from the lower ones: most intervals cover few classes
        let a = self.starts.partition_point(|&s| s <= lo) - 1;
        let b = a + gallop(&self.starts[a..], |s| s <= hi) - 1;
        let pa = self.points.partition_point(|&p| p < lo);
        let pb = pa + gallop(&self.points[pa..], |p| p <= hi);
        (a, b, m + pa, m + pb)
    }

    /// The class of a point value (one of `points`).
    #[inline]
    fn point_class(&self, v: K) -> u32 {
        match self.table.get(v) {
            Some(c) => c,
            None => (self.starts.len() + self.points.partition_point(|&p| p < v)) as u32,
        }
    }

    /// Per interval slot of `field`: the class of the slot of each compare (`which` of them) that tests
    /// for a single value, else `u32::MAX` (compares sharing a slot share its class).
    fn point_classes(&self, field: &Field<'_, K>, which: impl Iterator<Item = usize>) -> Vec<u32> {
        let mut out = vec![u32::MAX; field.ivs.len()];
        for i in which {
            let c = &field.cmps[i];
            let s = c.iv as usize;
            if c.n == 1 && out[s] == u32::MAX {
                let (lo, hi) = field.ivs[s];
                if lo == hi {
                    out[s] = self.point_class(lo);
                }
            }
        }
        out
    }
}

/// A rule's choice so far: (cost, classes covered, position in the rule, field, compare); field `f` of
/// the narrow ones is `f`, of the wide ones `MAX_FIELDS + f`.
type Best = (u32, u32, u32, u8, u32);

/// Step 1 for one field: the classes and point classes (per interval slot, see
/// [`Classes::point_classes`]) of its compares, and each compare offered to its rule's `best` (the
/// first rule is `first`). Compares sharing their intervals (`Cmp::iv`) share their coverage and cost:
/// both are found once per slot, each slot's classes counted once per compare using it.
fn cost_field<K: Key>(
    field: &Field<'_, K>,
    f: u8,
    first: u32,
    best: &mut [Best],
) -> (Classes<K>, Vec<u32>) {
    let ns = field.ivs.len();
    let cl = Classes::new(field.width, field.ivs.iter());
    // per slot that starts a compare's intervals: their count, and how many compares use them (the
    // slots of different compares are the same or disjoint)
    let mut len = vec![0u16; ns];
    let mut uses = vec![0u32; ns];
    for c in field.cmps.iter().filter(|c| c.n > 0) {
        len[c.iv as usize] = c.n;
        uses[c.iv as usize] += 1;
    }
    let mut pclass = vec![u32::MAX; ns];
    let mut cov = vec![u32::MAX; ns];
    let mut den = vec![0u32; cl.count()];
    // coverage first: only narrow compares are counted and costed (each interval's classes found once,
    // kept for the costs of narrow slots that are not a point, in slot order)
    let mut spans = Vec::new();
    let mut kept = Vec::new();
    for s in 0..ns {
        let (u, n) = (uses[s], len[s] as usize);
        if u == 0 {
            continue;
        }
        if n == 1 && field.ivs[s].0 == field.ivs[s].1 {
            let p = cl.point_class(field.ivs[s].0);
            pclass[s] = p;
            cov[s] = 1;
            den[p as usize] += u;
            continue;
        }
        spans.clear();
        if n == 1 {
            spans.push(cl.span(field.ivs[s]));
        } else {
            for &iv in &field.ivs[s..s + n] {
                spans.push(cl.span(iv));
            }
        }
        let c = spans
            .iter()
            .map(|&(a, b, pa, pb)| ((b + 1).saturating_sub(a) + (pb - pa)) as u32)
            .fold(0u32, |x, y| x.saturating_add(y));
        cov[s] = c;
        if c <= WIDE {
            for &(a, b, pa, pb) in &spans {
                (a..=b).chain(pa..pb).for_each(|k| den[k] += u);
            }
            kept.extend_from_slice(&spans);
        }
    }
    // the cost of each slot: the most compares sharing one of its classes
    let mut worst = uses;
    let mut at = 0;
    for s in 0..ns {
        if worst[s] == 0 || cov[s] > WIDE {
            continue;
        }
        if pclass[s] != u32::MAX {
            worst[s] = den[pclass[s] as usize];
            continue;
        }
        let n = len[s] as usize;
        let mut w = 0;
        for &(a, b, pa, pb) in &kept[at..at + n] {
            (a..=b).chain(pa..pb).for_each(|k| w = w.max(den[k]));
        }
        at += n;
        worst[s] = w;
    }
    for (i, cmp) in field.cmps.iter().enumerate() {
        // (no intervals: holds for no value, covers no class)
        let (w, c) = match cmp.n {
            0 => (0, 0),
            _ => (worst[cmp.iv as usize], cov[cmp.iv as usize]),
        };
        if c > WIDE {
            continue;
        }
        let b = &mut best[(cmp.rule - first) as usize];
        let key = (w, c, cmp.pos as u32);
        if key < (b.0, b.1, b.2) {
            *b = (key.0, key.1, key.2, f, i as u32);
        }
    }
    // the point table is built again for the index (kept, the tables of all fields would raise the
    // peak memory while the others are costed)
    let mut cl = cl;
    cl.table = PointTable::new(&[], 0);
    (cl, pclass)
}

/// Step 3 for one field: the index over the compares chosen for it (`ch`, in rule order); `cl1`, `pc1`:
/// the classes of step 1, used when every compare was chosen.
fn index_field<K: Key>(
    field: Field<'_, K>,
    ch: &[usize],
    cl1: Classes<K>,
    pc1: Vec<u32>,
) -> FieldIndex<K> {
    let (cl, pclass) = if ch.len() == field.cmps.len() {
        // every compare on the field was chosen: the classes are those of step 1
        let mut cl = cl1;
        cl.table = PointTable::new(&cl.points, cl.starts.len() as u32);
        (cl, pc1)
    } else {
        drop((cl1, pc1));
        let cl = Classes::new(field.width, ch.iter().flat_map(|&i| field.ivs_of(i)));
        let pc = cl.point_classes(&field, ch.iter().copied());
        (cl, pc)
    };
    FieldIndex::new(&field, cl, ch, &pclass)
}

/// The field of `fields` a compare of these loads and width is filed under: `last` (the one its selector
/// was filed under before), the first that matches, or a new one while there is `room`.
fn field_for<'a, K: Key>(
    fields: &mut Vec<Field<'a, K>>,
    last: Option<usize>,
    loads: &'a [Load],
    bin: Option<&'a Bin>,
    width: usize,
    room: bool,
) -> Option<usize> {
    last.or_else(|| fields.iter().position(|f| f.is(loads, bin, width)))
        .or_else(|| {
            room.then(|| {
                fields.push(Field::new(loads, bin, width));
                fields.len() - 1
            })
        })
}

fn build_chain(rs: &CompiledRuleset, rules: std::ops::Range<u32>) -> Option<ChainIndex> {
    // fields of at most 8 bytes, and wider ones (at most MAX_FIELDS in all)
    let mut nf: Vec<Field<'_, u64>> = Vec::new();
    let mut wf: Vec<Field<'_, u128>> = Vec::new();
    let mut scratch: Vec<(u128, u128)> = Vec::new();
    let mut any = false;
    // per selector (`rs.sels`, interned): whether its loads are fixed (0: not known yet, 1: yes, 2: no),
    // and the field it was last filed under with the width of that compare (narrow `f`, wide
    // `MAX_FIELDS + f`; `u8::MAX`: none yet)
    let mut sel_fixed: Vec<u8> = vec![0; rs.sels.len()];
    let mut sel_field: Vec<(u8, u8)> = vec![(0, u8::MAX); rs.sels.len()];
    for r in rules.clone() {
        let ops = &rs.rules[r as usize].ops;
        let mut pos = 0u32;
        for op in &rs.ops[ops.start as usize..ops.end as usize] {
            let (sel, loads, bin, cond) = match op {
                Op::Cmp { sel, test } => {
                    let s = &rs.sels[*sel as usize];
                    (*sel as usize, &s.loads, s.bin.as_ref(), Cond::Test(test))
                }
                Op::Vmap { sel, set } => {
                    let s = &rs.sels[*sel as usize];
                    (*sel as usize, &s.loads, s.bin.as_ref(), Cond::Vmap(*set))
                }
                // the first effect ends the prefix
                Op::Store { .. }
                | Op::PayloadSet(_)
                | Op::Dup(_)
                | Op::ObjMap(_)
                | Op::Counter(_)
                | Op::Limit(_)
                | Op::Quota(_)
                | Op::ObjCounter(_)
                | Op::Log(_)
                | Op::DynSet(_)
                | Op::Connlimit { .. }
                | Op::Verdict(_) => break,
            };
            // whether the loads are fixed, remembered per selector (`fixed` compares key names)
            let is_fixed = match sel_fixed[sel] {
                0 => {
                    let f = !loads.is_empty() && loads.iter().all(fixed);
                    sel_fixed[sel] = if f { 1 } else { 2 };
                    f
                }
                v => v == 1,
            };
            if is_fixed {
                scratch.clear();
                let width = intervals(rs, &cond, &mut scratch);
                if let Some(width) = width.filter(|_| scratch.len() <= u16::MAX as usize) {
                    let room = nf.len() + wf.len() < MAX_FIELDS;
                    // the selector's field when this compare has the width it was filed with
                    let last = sel_field[sel];
                    let last =
                        (last.1 != u8::MAX && last.0 as usize == width).then_some(last.1 as usize);
                    let filed = if width <= 8 {
                        field_for(&mut nf, last, loads, bin, width, room).map(|f| {
                            sel_field[sel] = (width as u8, f as u8);
                            nf[f].push(r, pos, &scratch)
                        })
                    } else {
                        let last = last.map(|f| f - MAX_FIELDS);
                        field_for(&mut wf, last, loads, bin, width, room).map(|f| {
                            sel_field[sel] = (width as u8, (MAX_FIELDS + f) as u8);
                            wf[f].push(r, pos, &scratch)
                        })
                    };
                    if filed.is_some() {
                        pos += 1;
                        any = true;
                    }
                }
            }
            if matches!(cond, Cond::Vmap(_)) {
                break;
            }
        }
    }
    if !any {
        return None;
    }

    // 1. cost of filing each compare's rule under it: the most rules of the chain that test the field
    //    and share one of the classes it covers (not usable when it covers too many classes); 2. each
    //    rule's compare: the cheapest, then the fewest classes covered, then the first
    let mut best: Vec<Best> =
        vec![(u32::MAX, u32::MAX, u32::MAX, 0, 0); (rules.end - rules.start) as usize];
    let mut ncl: Vec<_> = (nf.iter().enumerate())
        .map(|(f, field)| cost_field(field, f as u8, rules.start, &mut best))
        .collect();
    let mut wcl: Vec<_> = (wf.iter().enumerate())
        .map(|(f, field)| cost_field(field, (MAX_FIELDS + f) as u8, rules.start, &mut best))
        .collect();
    let mut nch: Vec<Vec<usize>> = vec![Vec::new(); nf.len()];
    let mut wch: Vec<Vec<usize>> = vec![Vec::new(); wf.len()];
    let mut always = Vec::new();
    for (r, b) in rules.clone().zip(&best) {
        match b.3 as usize {
            _ if b.0 == u32::MAX => always.push(r),
            f if f < MAX_FIELDS => nch[f].push(b.4 as usize),
            f => wch[f - MAX_FIELDS].push(b.4 as usize),
        }
    }
    drop(best);
    if nch.iter().chain(&wch).all(|c| c.is_empty()) {
        return None;
    }
    // what step 3 does not read goes before it allocates the index
    fn trim<K: Key>(
        fields: &mut [Field<'_, K>],
        chosen: &[Vec<usize>],
        cls: &mut [(Classes<K>, Vec<u32>)],
    ) {
        for ((field, ch), (cl, pclass)) in fields.iter_mut().zip(chosen).zip(cls) {
            if ch.len() != field.cmps.len() {
                (cl.starts, cl.points, *pclass) = (Vec::new(), Vec::new(), Vec::new());
                cl.table = PointTable::new(&[], 0);
            }
            if ch.is_empty() {
                (field.cmps, field.ivs) = (Vec::new(), Vec::new());
            }
        }
    }
    trim(&mut nf, &nch, &mut ncl);
    trim(&mut wf, &wch, &mut wcl);

    // 3. per field, classes from the chosen compares only, and each class's rules (each field's
    //    compares and classes freed once its index is built)
    let mut narrow = Vec::new();
    for ((field, ch), (cl, pc)) in nf.into_iter().zip(nch).zip(ncl) {
        if !ch.is_empty() {
            narrow.push(index_field(field, &ch, cl, pc));
        }
    }
    let mut wide = Vec::new();
    for ((field, ch), (cl, pc)) in wf.into_iter().zip(wch).zip(wcl) {
        if !ch.is_empty() {
            wide.push(index_field(field, &ch, cl, pc));
        }
    }
    Some(ChainIndex {
        narrow: narrow.into_boxed_slice(),
        wide: wide.into_boxed_slice(),
        always: always.into_boxed_slice(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_ranges<K: Key + std::fmt::Debug>(starts: &[u128], probes: &[u128]) {
        let ks: Vec<K> = starts.iter().map(|&s| K::from_u128(s)).collect();
        let r: Ranges<K> = Ranges::new(&ks);
        for &v in probes {
            let want = starts.partition_point(|&s| s <= v) - 1;
            assert_eq!(r.class(K::from_u128(v)), want, "{v:#x} in {starts:x?}");
        }
    }

    #[test]
    fn gallop_is_partition_point() {
        for n in 0..70usize {
            let s: Vec<u64> = (0..n as u64).map(|x| x * 3).collect();
            for v in 0..(3 * n as u64 + 3) {
                assert_eq!(
                    gallop(&s, |x| x <= v),
                    s.partition_point(|&x| x <= v),
                    "{n} {v}"
                );
            }
        }
    }

    #[test]
    fn range_buckets_agree_with_binary_search() {
        let mut x = 0x1234_5678_9abc_def1u64;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for case in 0..300 {
            let n = 1 + (rnd() % 200) as usize;
            // clustered, spread, and tiny value spaces
            let span = match case % 4 {
                0 => 1u64 << 32,
                1 => 1 << 16,
                2 => 300,
                _ => u64::MAX,
            };
            let base = if case % 4 == 1 { 0x0a00_0000 } else { 0 };
            let mut starts: Vec<u128> = (0..n).map(|_| (base + rnd() % span) as u128).collect();
            starts.push(0);
            starts.sort_unstable();
            starts.dedup();
            let mut probes: Vec<u128> = (0..200).map(|_| (base + rnd() % span) as u128).collect();
            for &s in &starts {
                probes.extend([s, s.saturating_sub(1), s + 1]);
            }
            probes.extend([0, u64::MAX as u128]);
            check_ranges::<u64>(&starts, &probes);
            check_ranges::<u128>(&starts, &probes);
            // 128-bit keys beyond 64 bits
            let wide: Vec<u128> = starts
                .iter()
                .map(|&s| if s == 0 { 0 } else { s << 64 | s })
                .collect();
            let wprobes: Vec<u128> = probes
                .iter()
                .map(|&p| p << 64 | p)
                .chain([u128::MAX])
                .collect();
            check_ranges::<u128>(&wide, &wprobes);
        }
    }
}
