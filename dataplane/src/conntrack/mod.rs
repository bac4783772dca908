//! Connection tracking, as the kernel's nf_conntrack does it, in one table per worker (no locks).
//!
//! - One [`Entry`] per connection, reachable from both its original and its reply [`Tuple`] (plus the
//!   zone). Entries live in a chunked slab with stable indexes; an index of cache-line buckets ([`index`])
//!   maps tuple hashes to `index << 1 | direction` (6.4 bytes per key when full), and the packet path
//!   prefetches a batch's buckets and entries before it looks them up ([`Conntrack::prefetch`]).
//! - The protocol trackers are the kernel's: TCP ([`tcp`]: the `tcp_conntracks` table and window
//!   tracking), UDP (unreplied / replied / assured after 2 s), ICMP and ICMPv6 echo-like exchanges, ICMP
//!   errors quoting a tracked flow as RELATED, and a generic tracker for other protocols.
//! - A packet of an unknown flow gets a *pending* entry (the kernel's unconfirmed conntrack); NAT bindings
//!   are written into it by the nat hooks, and it enters the table at [`Conntrack::confirm`], after the last
//!   hook accepted the packet.
//! - Expiry is incremental: a timer wheel of 4096 one-second buckets visited from the worker's timer and
//!   from each insertion, plus the kernel's rule that an expired entry found by a lookup is dead.
//! - Limits: `nf_conntrack_max`; when full, early drop of a non-assured entry (as `early_drop()`), else the
//!   new flow is refused, counted, and logged at most once a second. Established flows are never touched.

mod index;
pub mod sysctl;
pub mod tcp;

use crate::stats::WorkerStats;
use crate::wire::{Ipv4Info, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP};
use hashbrown::HashMap;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
pub use sysctl::Sysctls;
pub use tcp::TcpState;

pub const IPPROTO_ICMPV6: u8 = 58;

/// `ct state` bits as the kernel defines them (NF_CT_STATE_*_BIT).
pub mod state {
    pub const INVALID: u32 = 1;
    pub const ESTABLISHED: u32 = 2;
    pub const RELATED: u32 = 4;
    pub const NEW: u32 = 8;
    pub const UNTRACKED: u32 = 64;
}

/// `ct status` bits (IPS_*), as the kernel numbers them.
pub mod status {
    pub const EXPECTED: u16 = 1 << 0;
    pub const SEEN_REPLY: u16 = 1 << 1;
    pub const ASSURED: u16 = 1 << 2;
    pub const CONFIRMED: u16 = 1 << 3;
    pub const SRC_NAT: u16 = 1 << 4;
    pub const DST_NAT: u16 = 1 << 5;
    pub const NAT_MASK: u16 = SRC_NAT | DST_NAT;
    pub const SEQ_ADJUST: u16 = 1 << 6;
    pub const SRC_NAT_DONE: u16 = 1 << 7;
    pub const DST_NAT_DONE: u16 = 1 << 8;
    pub const DYING: u16 = 1 << 9;
    pub const FIXED_TIMEOUT: u16 = 1 << 10;
    /// sluice's own: the reply tuple is on one of the box's addresses and its frames are steered to the
    /// dataplane (see `hw::Port::steer_local_flow`); undone when the entry goes.
    pub const STEERED: u16 = 1 << 15;
}

/// An address family the tracker can key on.
pub trait Addr:
    Copy + Eq + fmt::Debug + fmt::Display + Send + Sync + 'static + std::str::FromStr
{
    /// NFPROTO_* (`ipv4` 2, `ipv6` 10).
    const NFPROTO: u8;
    /// The ICMP protocol of this family.
    const ICMP: u8;
    /// Layer 3 name as conntrack-tools prints it (`ipv4`, `ipv6`).
    const NAME: &'static str;
    /// A 64-bit digest for hashing.
    fn word(&self) -> u64;
    fn unspecified() -> Self;
    /// From network-order bytes of exactly the address length.
    fn from_slice(b: &[u8]) -> Option<Self>;
    fn octets_vec(&self) -> Vec<u8>;
    /// Writes the network-order bytes into the start of `out` (at least the address length).
    fn put(&self, out: &mut [u8]);
}

impl Addr for Ipv4Addr {
    const NFPROTO: u8 = 2;
    const ICMP: u8 = IPPROTO_ICMP;
    const NAME: &'static str = "ipv4";
    fn word(&self) -> u64 {
        self.to_bits() as u64
    }
    fn unspecified() -> Self {
        Ipv4Addr::UNSPECIFIED
    }
    fn from_slice(b: &[u8]) -> Option<Self> {
        Some(Ipv4Addr::from(<[u8; 4]>::try_from(b).ok()?))
    }
    fn octets_vec(&self) -> Vec<u8> {
        self.octets().to_vec()
    }
    fn put(&self, out: &mut [u8]) {
        out[..4].copy_from_slice(&self.octets());
    }
}

impl Addr for Ipv6Addr {
    const NFPROTO: u8 = 10;
    const ICMP: u8 = IPPROTO_ICMPV6;
    const NAME: &'static str = "ipv6";
    fn word(&self) -> u64 {
        let b = self.to_bits();
        (b as u64) ^ ((b >> 64) as u64).rotate_left(29)
    }
    fn unspecified() -> Self {
        Ipv6Addr::UNSPECIFIED
    }
    fn from_slice(b: &[u8]) -> Option<Self> {
        Some(Ipv6Addr::from(<[u8; 16]>::try_from(b).ok()?))
    }
    fn octets_vec(&self) -> Vec<u8> {
        self.octets().to_vec()
    }
    fn put(&self, out: &mut [u8]) {
        out[..16].copy_from_slice(&self.octets());
    }
}

/// A connection's identity in one direction. For ICMP, `sport` is the identifier and `dport` holds
/// `type << 8 | code`, so a request and its reply invert into each other.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Tuple<A> {
    pub src: A,
    pub dst: A,
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
}

/// ICMP / ICMPv6 types that open a connection, and the type of their answer (the kernel's `invmap`).
fn icmp_inverse(proto: u8, ty: u8) -> Option<u8> {
    match (proto, ty) {
        (IPPROTO_ICMP, 8) => Some(0),
        (IPPROTO_ICMP, 0) => Some(8),
        (IPPROTO_ICMP, 13) => Some(14),
        (IPPROTO_ICMP, 14) => Some(13),
        (IPPROTO_ICMP, 15) => Some(16),
        (IPPROTO_ICMP, 16) => Some(15),
        (IPPROTO_ICMP, 17) => Some(18),
        (IPPROTO_ICMP, 18) => Some(17),
        (IPPROTO_ICMPV6, 128) => Some(129),
        (IPPROTO_ICMPV6, 129) => Some(128),
        (IPPROTO_ICMPV6, 139) => Some(140),
        (IPPROTO_ICMPV6, 140) => Some(139),
        _ => None,
    }
}

/// ICMP types that may start a connection (`valid_new`).
fn icmp_opens(proto: u8, ty: u8) -> bool {
    matches!(
        (proto, ty),
        (IPPROTO_ICMP, 8 | 13 | 15 | 17) | (IPPROTO_ICMPV6, 128 | 139)
    )
}

fn is_icmp_error(proto: u8, ty: u8) -> bool {
    match proto {
        IPPROTO_ICMP => matches!(ty, 3 | 4 | 5 | 11 | 12),
        IPPROTO_ICMPV6 => ty < 128,
        _ => false,
    }
}

impl<A: Addr> Tuple<A> {
    pub fn is_icmp(&self) -> bool {
        self.proto == A::ICMP
    }

    /// The tuple of the answer; `None` for ICMP types without one.
    pub fn invert(&self) -> Option<Tuple<A>> {
        let (sport, dport) = if self.is_icmp() {
            let ty = icmp_inverse(self.proto, (self.dport >> 8) as u8)?;
            (self.sport, (ty as u16) << 8 | (self.dport & 0xff))
        } else {
            (self.dport, self.sport)
        };
        Some(Tuple {
            src: self.dst,
            dst: self.src,
            proto: self.proto,
            sport,
            dport,
        })
    }

    fn key(&self) -> Key<A> {
        Key {
            src: self.src,
            dst: self.dst,
            sport: self.sport,
            dport: self.dport,
        }
    }
}

/// A tuple without its protocol, as stored in an entry (the protocol is stored once).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Key<A> {
    src: A,
    dst: A,
    sport: u16,
    dport: u16,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dir {
    Original = 0,
    Reply = 1,
}

impl Dir {
    pub fn other(self) -> Dir {
        match self {
            Dir::Original => Dir::Reply,
            Dir::Reply => Dir::Original,
        }
    }
    fn from_bit(b: u32) -> Dir {
        if b & 1 == 0 {
            Dir::Original
        } else {
            Dir::Reply
        }
    }
}

/// Per-protocol state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L4 {
    Tcp(tcp::TcpCt),
    /// UDP: after `stream_ts` (ms clock), a replied flow becomes a stream (assured, long timeout).
    Udp {
        stream_ts: u32,
    },
    Other,
}

/// One tracked connection. 128 bytes for IPv4 (see the `entry_sizes` test).
#[derive(Clone, Debug)]
pub struct Entry<A> {
    keys: [Key<A>; 2],
    /// Packets and bytes (L3 length) per direction.
    pub packets: [u64; 2],
    pub bytes: [u64; 2],
    /// Millisecond clock (wrapping, like jiffies) at which the entry dies.
    expires: u32,
    pub mark: u32,
    pub status: u16,
    pub zone: u16,
    /// The timer-wheel bucket holding this entry's reference.
    wheel: u16,
    pub proto: u8,
    pub l4: L4,
}

impl<A: Addr> Entry<A> {
    pub fn tuple(&self, d: Dir) -> Tuple<A> {
        let k = &self.keys[d as usize];
        Tuple {
            src: k.src,
            dst: k.dst,
            proto: self.proto,
            sport: k.sport,
            dport: k.dport,
        }
    }
    pub fn orig(&self) -> Tuple<A> {
        self.tuple(Dir::Original)
    }
    pub fn reply(&self) -> Tuple<A> {
        self.tuple(Dir::Reply)
    }
    /// Rewrites the reply tuple (NAT setup on a pending entry).
    pub fn set_reply(&mut self, t: Tuple<A>) {
        self.keys[1] = t.key();
    }
    pub fn tcp_state(&self) -> Option<TcpState> {
        match &self.l4 {
            L4::Tcp(t) => Some(t.state),
            _ => None,
        }
    }
    pub fn has(&self, bit: u16) -> bool {
        self.status & bit != 0
    }
    /// Milliseconds left at `now_ms` (0 when expired).
    pub fn expires_in_ms(&self, now_ms: u32) -> u32 {
        let d = self.expires.wrapping_sub(now_ms) as i32;
        d.max(0) as u32
    }
    fn expired(&self, now_ms: u32) -> bool {
        (self.expires.wrapping_sub(now_ms) as i32) <= 0
    }
    /// `ct state` of a packet in direction `d`.
    fn ctinfo(&self, d: Dir) -> u32 {
        if d == Dir::Original && !self.has(status::SEEN_REPLY) {
            state::NEW
        } else {
            state::ESTABLISHED
        }
    }
    fn can_early_drop(&self) -> bool {
        !self.has(status::ASSURED) || self.tcp_state().is_some_and(|s| s.can_early_drop())
    }
}

/// What the tracker sees of a packet: addresses, protocol and the transport bytes (header and payload,
/// ending where the IP packet ends).
#[derive(Clone, Copy, Debug)]
pub struct CtPkt<'a, A> {
    pub src: A,
    pub dst: A,
    pub proto: u8,
    pub l4: &'a [u8],
    /// L3 length, for accounting.
    pub len: u32,
    /// A fragment: not tracked until reassembled.
    pub fragment: bool,
}

impl<'a> CtPkt<'a, Ipv4Addr> {
    /// The tracker's view of a parsed IPv4 packet inside `frame`.
    pub fn from_ipv4(ip: &Ipv4Info, frame: &'a [u8]) -> CtPkt<'a, Ipv4Addr> {
        let l4 = ip
            .th_off
            .and_then(|o| frame.get(o..ip.nh_off + ip.total_len))
            .unwrap_or(&[]);
        CtPkt {
            src: ip.src,
            dst: ip.dst,
            proto: ip.proto,
            l4,
            len: ip.total_len as u32,
            fragment: ip.is_fragment,
        }
    }
}

/// The transport identity of a packet; `None` when its header is unusable (counted as an error).
fn tuple_of<A: Addr>(src: A, dst: A, proto: u8, l4: &[u8]) -> Option<Tuple<A>> {
    let (sport, dport) = match proto {
        IPPROTO_TCP | IPPROTO_UDP | 132 | 33 | 136 => {
            // TCP, UDP, SCTP, DCCP, UDP-Lite: ports first.
            if l4.len() < 4 {
                return None;
            }
            (
                u16::from_be_bytes([l4[0], l4[1]]),
                u16::from_be_bytes([l4[2], l4[3]]),
            )
        }
        p if p == A::ICMP => {
            if l4.len() < 8 {
                return None;
            }
            (
                u16::from_be_bytes([l4[4], l4[5]]),
                (l4[0] as u16) << 8 | l4[1] as u16,
            )
        }
        _ => (0, 0),
    };
    Some(Tuple {
        src,
        dst,
        proto,
        sport,
        dport,
    })
}

/// The tracker's classification of a packet, computed before the hooks run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CtResult {
    /// A packet of a connection in the table.
    Existing {
        idx: u32,
        dir: Dir,
        state: u32,
    },
    /// The first packet of a connection: the pending entry enters the table at confirmation.
    New,
    /// An ICMP error about a connection in the table, travelling in direction `dir` of it.
    Related {
        idx: u32,
        dir: Dir,
    },
    Invalid,
    Untracked,
    /// A new flow refused because the table is full (the packet must be dropped).
    TableFull,
}

impl CtResult {
    /// The `ct state` bits a rule sees.
    pub fn state(&self) -> u32 {
        match self {
            CtResult::Existing { state, .. } => *state,
            CtResult::New => state::NEW,
            CtResult::Related { .. } => state::RELATED,
            CtResult::Invalid | CtResult::TableFull => state::INVALID,
            CtResult::Untracked => state::UNTRACKED,
        }
    }
    /// The entry (existing or related) and the packet's direction in it.
    pub fn entry(&self) -> Option<(u32, Dir)> {
        match *self {
            CtResult::Existing { idx, dir, .. } | CtResult::Related { idx, dir } => {
                Some((idx, dir))
            }
            _ => None,
        }
    }
}

/// Outcome of [`Conntrack::confirm`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Confirm {
    Inserted(u32),
    NotNew,
    /// One of the tuples is already in the table (a NAT binding collided): the packet is dropped, as the
    /// kernel's `insert_failed`.
    InsertFailed,
}

/// Connection events for `conntrack -E`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    New,
    Update,
    Destroy,
}

#[derive(Clone, Debug)]
pub struct Event<A> {
    pub kind: EventKind,
    pub entry: Entry<A>,
    /// Seconds left (NEW and UPDATE).
    pub timeout: u32,
}

const CHUNK_BITS: u32 = 10;
const CHUNK: usize = 1 << CHUNK_BITS;

/// Entries in fixed-size chunks: indexes stay valid and growth never moves an entry.
struct Slab<E> {
    chunks: Vec<Box<[Option<E>]>>,
    free: Vec<u32>,
    next: u32,
    len: u32,
}

impl<E> Slab<E> {
    fn new() -> Slab<E> {
        Slab {
            chunks: Vec::new(),
            free: Vec::new(),
            next: 0,
            len: 0,
        }
    }
    #[inline]
    fn get(&self, i: u32) -> Option<&E> {
        self.chunks
            .get((i >> CHUNK_BITS) as usize)?
            .get(i as usize & (CHUNK - 1))?
            .as_ref()
    }
    #[inline]
    fn get_mut(&mut self, i: u32) -> Option<&mut E> {
        self.chunks
            .get_mut((i >> CHUNK_BITS) as usize)?
            .get_mut(i as usize & (CHUNK - 1))?
            .as_mut()
    }
    fn insert(&mut self, e: E) -> u32 {
        let i = match self.free.pop() {
            Some(i) => i,
            None => {
                let i = self.next;
                if (i as usize) >> CHUNK_BITS == self.chunks.len() {
                    self.chunks.push(
                        (0..CHUNK)
                            .map(|_| None)
                            .collect::<Vec<_>>()
                            .into_boxed_slice(),
                    );
                }
                self.next += 1;
                i
            }
        };
        self.chunks[(i >> CHUNK_BITS) as usize][i as usize & (CHUNK - 1)] = Some(e);
        self.len += 1;
        i
    }
    fn remove(&mut self, i: u32) -> Option<E> {
        let e = self.chunks[(i >> CHUNK_BITS) as usize][i as usize & (CHUNK - 1)].take()?;
        self.free.push(i);
        self.len -= 1;
        Some(e)
    }
    fn slots(&self) -> u32 {
        self.next
    }
    fn clear(&mut self) {
        self.chunks.clear();
        self.free.clear();
        self.next = 0;
        self.len = 0;
    }
    fn bytes(&self) -> usize {
        self.chunks.len() * CHUNK * std::mem::size_of::<Option<E>>() + self.free.capacity() * 4
    }
}

const WHEEL_BITS: u32 = 12;
const WHEEL: usize = 1 << WHEEL_BITS;
/// One wheel tick is 1024 ms.
const TICK_SHIFT: u32 = 10;

/// A timer wheel over entry indexes with lazy rescheduling: a bucket is visited when its second comes, and
/// each entry in it either expired (removed) or is filed again under its current expiry.
struct Wheel {
    buckets: Vec<Vec<u32>>,
    /// The next tick to visit; `None` until the first entry.
    tick: Option<u32>,
}

impl Wheel {
    fn new() -> Wheel {
        Wheel {
            buckets: (0..WHEEL).map(|_| Vec::new()).collect(),
            tick: None,
        }
    }
    /// Files `idx` under `expires` (ms); returns the bucket.
    fn schedule(&mut self, idx: u32, expires: u32, now_ms: u32) -> u16 {
        let cur = *self.tick.get_or_insert(now_ms >> TICK_SHIFT);
        let delta = ((expires >> TICK_SHIFT).wrapping_sub(cur) as i32).clamp(1, WHEEL as i32 - 1);
        let b = (cur.wrapping_add(delta as u32) as usize) & (WHEEL - 1);
        self.buckets[b].push(idx);
        b as u16
    }
}

/// Where one tracker is: `conntrack -S` per worker.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableInfo {
    pub entries: u32,
    pub max: u32,
    /// Bytes held by the slab, the index and the wheel.
    pub bytes: usize,
}

/// One worker's connection table for one address family.
pub struct Conntrack<A> {
    cfg: Sysctls,
    /// This worker's share of `nf_conntrack_max`.
    max: u32,
    seed: u64,
    slab: Slab<Entry<A>>,
    index: index::Index,
    wheel: Wheel,
    /// The unconfirmed entry of the packet being processed.
    pending: Option<Entry<A>>,
    /// `ct label` bits of the entries that have any (rare: kept off the entry).
    labels: HashMap<u32, u128>,
    /// The `ct count` statements counting each entry that any counts (bit per statement), and the
    /// counts the workers share.
    counted: HashMap<u32, u32>,
    conncount: Option<std::sync::Arc<rules::eval::ConnCounts>>,
    /// Label and `ct count` bits the rules gave the pending entry (they move in at confirm).
    pending_label: u128,
    pending_counted: u32,
    early_cursor: u32,
    /// When the last "table full" line was logged (ns).
    last_full_log: Option<u64>,
    /// Collect events for `conntrack -E`.
    pub events_enabled: bool,
    pub events: Vec<Event<A>>,
    /// Reply tuples of removed STEERED entries, for the worker to un-steer.
    pub unsteer: Vec<Tuple<A>>,
}

/// A 64-bit multiply-fold mixer.
#[inline]
fn mix(x: u64) -> u64 {
    let m = (x as u128).wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835);
    (m as u64) ^ ((m >> 64) as u64)
}

#[inline]
fn hash_key<A: Addr>(seed: u64, zone: u16, proto: u8, k: &Key<A>) -> u64 {
    let h = mix(seed ^ ((zone as u64) << 8 | proto as u64));
    let h = mix(h ^ k.src.word());
    let h = mix(h ^ k.dst.word());
    mix(h ^ ((k.sport as u64) << 16 | k.dport as u64))
}

/// ms clock from the pipeline's ns clock (wrapping, like jiffies).
#[inline]
pub fn ms(now_ns: u64) -> u32 {
    (now_ns / 1_000_000) as u32
}

impl<A: Addr> Conntrack<A> {
    /// A table holding at most `max` entries (this worker's share of `nf_conntrack_max`).
    pub fn new(cfg: Sysctls, max: u32, seed: u64) -> Conntrack<A> {
        // Reserve up front (both keys of every entry, up to 1M entries) so the fast path never rehashes.
        let index = index::Index::with_capacity(2 * max.min(1 << 20) as usize);
        Conntrack {
            cfg,
            max,
            seed: mix(seed ^ 0x5eed),
            slab: Slab::new(),
            index,
            wheel: Wheel::new(),
            pending: None,
            labels: HashMap::new(),
            counted: HashMap::new(),
            conncount: None,
            pending_label: 0,
            pending_counted: 0,
            early_cursor: 0,
            last_full_log: None,
            events_enabled: false,
            events: Vec::new(),
            unsteer: Vec::new(),
        }
    }

    pub fn sysctls(&self) -> &Sysctls {
        &self.cfg
    }

    /// Changes settings; a new maximum applies to new flows (entries above it stay until they expire).
    pub fn set_sysctls(&mut self, cfg: Sysctls, max: u32) {
        self.cfg = cfg;
        self.max = max;
    }

    pub fn len(&self) -> usize {
        self.slab.len as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn info(&self) -> TableInfo {
        TableInfo {
            entries: self.slab.len,
            max: self.max,
            bytes: self.slab.bytes()
                + self.index.bytes()
                + self
                    .wheel
                    .buckets
                    .iter()
                    .map(|b| b.capacity() * 4)
                    .sum::<usize>(),
        }
    }

    /// Every entry with its slot index.
    pub fn entries(&self) -> impl Iterator<Item = (u32, &Entry<A>)> {
        (0..self.slab.slots()).filter_map(move |i| self.slab.get(i).map(|e| (i, e)))
    }

    pub fn get(&self, idx: u32) -> Option<&Entry<A>> {
        self.slab.get(idx)
    }

    pub fn get_mut(&mut self, idx: u32) -> Option<&mut Entry<A>> {
        self.slab.get_mut(idx)
    }

    /// The entry of the packet being processed, if it is new.
    pub fn pending(&self) -> Option<&Entry<A>> {
        self.pending.as_ref()
    }

    pub fn pending_mut(&mut self) -> Option<&mut Entry<A>> {
        self.pending.as_mut()
    }

    pub fn label(&self, idx: u32) -> u128 {
        if self.labels.is_empty() {
            return 0;
        }
        self.labels.get(&idx).copied().unwrap_or(0)
    }

    pub fn set_label(&mut self, idx: u32, bits: u128) {
        if bits == 0 {
            self.labels.remove(&idx);
        } else {
            self.labels.insert(idx, bits);
        }
    }

    /// The `ct count` counts this table adds its connections to (shared by the workers).
    pub fn set_conncount(&mut self, c: std::sync::Arc<rules::eval::ConnCounts>) {
        self.conncount = Some(c);
    }

    /// The `ct count` statements counting entry `idx` (bit per statement).
    pub fn counted(&self, idx: u32) -> u32 {
        if self.counted.is_empty() {
            return 0;
        }
        self.counted.get(&idx).copied().unwrap_or(0)
    }

    /// What the rules left on a packet's connection: `ct mark`, `ct label` and the `ct count`
    /// statements that now count it (`ct`: the packet's [`CtResult`]; a pending entry keeps them until
    /// confirmation).
    pub fn set_rule_state(&mut self, ct: CtResult, mark: u32, label: u128, counted: u32) {
        match ct {
            CtResult::New => {
                if let Some(e) = self.pending.as_mut() {
                    e.mark = mark;
                    self.pending_label = label;
                    self.pending_counted = counted;
                }
            }
            CtResult::Existing { idx, .. } | CtResult::Related { idx, .. } => {
                let Some(e) = self.slab.get_mut(idx) else {
                    return;
                };
                e.mark = mark;
                if label != self.label(idx) {
                    self.set_label(idx, label);
                }
                let old = self.counted(idx);
                if counted & !old != 0 {
                    self.count_in(idx, counted & !old);
                }
            }
            _ => {}
        }
    }

    /// Adds entry `idx` to the counts of the `ct count` statements in `bits`.
    fn count_in(&mut self, idx: u32, bits: u32) {
        if let Some(c) = &self.conncount {
            for i in 0..32 {
                if bits & (1 << i) != 0 {
                    c[i].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }
        *self.counted.entry(idx).or_insert(0) |= bits;
    }

    /// Takes entry `idx` out of every `ct count` (it went, or closed: nf_conncount forgets closed
    /// connections).
    fn count_out(&mut self, idx: u32) {
        if self.counted.is_empty() {
            return;
        }
        let Some(bits) = self.counted.remove(&idx) else {
            return;
        };
        if let Some(c) = &self.conncount {
            for i in 0..32 {
                if bits & (1 << i) != 0 {
                    c[i].fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }
    }

    fn hash(&self, zone: u16, t: &Tuple<A>) -> u64 {
        hash_key(self.seed, zone, t.proto, &t.key())
    }

    /// Prefetching for a batch of packets, in two passes before the batch is processed: `stage` 0 brings
    /// the index bucket of the packet's tuple toward the cache, stage 1 (after stage 0 for the whole
    /// batch) looks the tuple up in it and brings the entry. Changes nothing; a packet that is not
    /// tracked (fragment, malformed) is skipped.
    #[inline]
    pub fn prefetch(&self, pkt: &CtPkt<A>, zone: u16, stage: u8) {
        if pkt.fragment || (pkt.proto == A::ICMP && pkt.l4.len() >= 8) {
            return;
        }
        let Some(t) = tuple_of(pkt.src, pkt.dst, pkt.proto, pkt.l4) else {
            return;
        };
        if stage == 0 {
            self.index.prefetch(self.hash(zone, &t));
        } else if let Some((idx, _)) = self.find(zone, &t) {
            if let Some(e) = self.slab.get(idx) {
                let p = e as *const Entry<A> as *const u8;
                // 128 bytes, 8-aligned: at most three lines
                index::prefetch(p);
                index::prefetch(p.wrapping_add(64));
                index::prefetch(p.wrapping_add(127));
            }
        }
    }

    /// The entry holding `t` (in zone `zone`), live or expired.
    fn find(&self, zone: u16, t: &Tuple<A>) -> Option<(u32, Dir)> {
        let k = t.key();
        let slab = &self.slab;
        self.index
            .find(self.hash(zone, t), |v| {
                let e = slab.get(v >> 1).expect("index points at live entries");
                e.keys[(v & 1) as usize] == k && e.proto == t.proto && e.zone == zone
            })
            .map(|v| (v >> 1, Dir::from_bit(v)))
    }

    /// Looks up a tuple as the packet path does: an expired entry is removed and not found.
    pub fn lookup(
        &mut self,
        zone: u16,
        t: &Tuple<A>,
        now_ms: u32,
        stats: &mut WorkerStats,
    ) -> Option<(u32, Dir)> {
        let (idx, dir) = self.find(zone, t)?;
        if self.slab.get(idx).unwrap().expired(now_ms) {
            self.remove(idx);
            stats.ct_expired += 1;
            return None;
        }
        Some((idx, dir))
    }

    /// Is `t` (in zone `zone`) a tuple of a live connection (the NAT port allocator's
    /// `nf_nat_used_tuple`; the pending connection being bound is not counted)?
    pub fn tuple_taken(&self, zone: u16, t: &Tuple<A>, now_ms: u32) -> bool {
        self.find(zone, t)
            .is_some_and(|(i, _)| !self.slab.get(i).unwrap().expired(now_ms))
    }

    /// Removes an entry now (`conntrack -D`, expiry, early drop).
    pub fn remove(&mut self, idx: u32) -> Option<Entry<A>> {
        let e = self.slab.remove(idx)?;
        for d in 0..2 {
            let h = hash_key(self.seed, e.zone, e.proto, &e.keys[d]);
            self.index.remove(h, idx << 1 | d as u32);
        }
        self.labels.remove(&idx);
        self.count_out(idx);
        if e.status & status::STEERED != 0 {
            self.unsteer.push(e.reply());
        }
        if self.events_enabled {
            self.events.push(Event {
                kind: EventKind::Destroy,
                entry: e.clone(),
                timeout: 0,
            });
        }
        Some(e)
    }

    fn event(&mut self, kind: EventKind, idx: u32, now_ms: u32) {
        if self.events_enabled {
            if let Some(e) = self.slab.get(idx) {
                let timeout = e.expires_in_ms(now_ms) / 1000;
                self.events.push(Event {
                    kind,
                    entry: e.clone(),
                    timeout,
                });
            }
        }
    }

    /// Classifies a packet and updates the connection it belongs to (`nf_conntrack_in`, before the
    /// filter hooks decide). For a new flow, the pending entry is set up.
    pub fn track(
        &mut self,
        pkt: &CtPkt<A>,
        zone: u16,
        now: u64,
        stats: &mut WorkerStats,
    ) -> CtResult {
        self.pending = None;
        self.pending_label = 0;
        self.pending_counted = 0;
        let now_ms = ms(now);
        if pkt.fragment {
            // Reassembly (nf_defrag) happens before conntrack; fragments reaching here are not tracked.
            stats.ct_invalid += 1;
            return CtResult::Invalid;
        }
        if pkt.proto == A::ICMP {
            if pkt.l4.len() < 8 {
                stats.ct_error += 1;
                stats.ct_invalid += 1;
                return CtResult::Invalid;
            }
            if is_icmp_error(pkt.proto, pkt.l4[0]) {
                return self.related(pkt, zone, now_ms, stats);
            }
        }
        let Some(tuple) = tuple_of(pkt.src, pkt.dst, pkt.proto, pkt.l4) else {
            stats.ct_error += 1;
            stats.ct_invalid += 1;
            return CtResult::Invalid;
        };
        let seg = if pkt.proto == IPPROTO_TCP {
            match tcp::Segment::parse(pkt.l4) {
                Some(s) => Some(s),
                None => {
                    stats.ct_error += 1;
                    stats.ct_invalid += 1;
                    return CtResult::Invalid;
                }
            }
        } else {
            None
        };
        if pkt.proto == IPPROTO_UDP {
            let ulen = pkt
                .l4
                .get(4..6)
                .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]) as usize);
            if pkt.l4.len() < 8 || ulen < 8 || ulen > pkt.l4.len() {
                stats.ct_error += 1;
                stats.ct_invalid += 1;
                return CtResult::Invalid;
            }
        }
        loop {
            let Some((idx, dir)) = self.lookup(zone, &tuple, now_ms, stats) else {
                return self.new_flow(tuple, pkt, seg.as_ref(), zone, now, stats);
            };
            match self.update(idx, dir, pkt, seg.as_ref(), now_ms) {
                Update::Ok(state) => {
                    if !self.counted.is_empty()
                        && self
                            .slab
                            .get(idx)
                            .and_then(|e| e.tcp_state())
                            .is_some_and(|s| matches!(s, TcpState::TimeWait | TcpState::Close))
                    {
                        self.count_out(idx);
                    }
                    return CtResult::Existing { idx, dir, state };
                }
                Update::Invalid => {
                    stats.ct_invalid += 1;
                    return CtResult::Invalid;
                }
                Update::Repeat => {
                    // A SYN re-opening a closed connection: the old entry goes, the packet starts a new one.
                    self.remove(idx);
                }
            }
        }
    }

    fn timeout_for(&self, proto: u8) -> u32 {
        match proto {
            IPPROTO_UDP => self.cfg.udp_timeout,
            IPPROTO_ICMP => self.cfg.icmp_timeout,
            IPPROTO_ICMPV6 => self.cfg.icmpv6_timeout,
            _ => self.cfg.generic_timeout,
        }
    }

    fn new_flow(
        &mut self,
        orig: Tuple<A>,
        pkt: &CtPkt<A>,
        seg: Option<&tcp::Segment>,
        zone: u16,
        now: u64,
        stats: &mut WorkerStats,
    ) -> CtResult {
        let now_ms = ms(now);
        // The protocol's "may this packet open a connection?" (tcp_new, icmp valid_new).
        let (l4, timeout) = match pkt.proto {
            IPPROTO_TCP => {
                let seg = seg.expect("tcp segment");
                let Some(mut t) = tcp::TcpCt::new(seg, &self.cfg) else {
                    stats.ct_invalid += 1;
                    return CtResult::Invalid;
                };
                let mut st = 0u16;
                let timeout = match t.packet(0, seg, &mut st, 0, &self.cfg) {
                    tcp::Outcome::Accept(Some(s)) => s,
                    tcp::Outcome::Accept(None) => tcp::timeout_of(t.state, &self.cfg),
                    _ => {
                        stats.ct_invalid += 1;
                        return CtResult::Invalid;
                    }
                };
                (L4::Tcp(t), timeout)
            }
            IPPROTO_UDP => (
                L4::Udp {
                    stream_ts: now_ms.wrapping_add(2000),
                },
                self.cfg.udp_timeout,
            ),
            p if p == A::ICMP => {
                if !icmp_opens(p, pkt.l4[0]) {
                    stats.ct_invalid += 1;
                    return CtResult::Invalid;
                }
                (L4::Other, self.timeout_for(p))
            }
            p => (L4::Other, self.timeout_for(p)),
        };
        let Some(reply) = orig.invert() else {
            stats.ct_invalid += 1;
            return CtResult::Invalid;
        };
        if self.slab.len >= self.max && !self.early_drop(now_ms, stats) {
            stats.ct_table_full += 1;
            let quiet = self
                .last_full_log
                .is_some_and(|t| now.saturating_sub(t) < 1_000_000_000);
            if !quiet {
                self.last_full_log = Some(now);
                tracing::warn!(
                    max = self.max,
                    "nf_conntrack: table full, dropping packet (refused so far: {})",
                    stats.ct_table_full
                );
            }
            return CtResult::TableFull;
        }
        self.pending = Some(Entry {
            keys: [orig.key(), reply.key()],
            packets: [1, 0],
            bytes: [pkt.len as u64, 0],
            expires: now_ms.wrapping_add(timeout.saturating_mul(1000)),
            mark: 0,
            status: 0,
            zone,
            wheel: 0,
            proto: orig.proto,
            l4,
        });
        CtResult::New
    }

    /// `early_drop`: frees a slot by deleting a non-assured connection (or an assured TCP one that is
    /// closing). Looks at a bounded number of slots from a rotating cursor.
    fn early_drop(&mut self, now_ms: u32, stats: &mut WorkerStats) -> bool {
        let n = self.slab.slots();
        if n == 0 {
            return false;
        }
        for _ in 0..64.min(n) {
            self.early_cursor = (self.early_cursor + 1) % n;
            let i = self.early_cursor;
            let Some(e) = self.slab.get(i) else { continue };
            if e.expired(now_ms) {
                self.remove(i);
                stats.ct_expired += 1;
                return true;
            }
            if e.can_early_drop() {
                self.remove(i);
                stats.ct_early_drop += 1;
                return true;
            }
        }
        false
    }

    fn update(
        &mut self,
        idx: u32,
        dir: Dir,
        pkt: &CtPkt<A>,
        seg: Option<&tcp::Segment>,
        now_ms: u32,
    ) -> Update {
        let cfg = &self.cfg;
        let e = self.slab.get_mut(idx).expect("live entry");
        let d = dir as usize;
        let before = (e.status, e.tcp_state());
        let expires_in = e.expires_in_ms(now_ms) / 1000;
        let timeout = match &mut e.l4 {
            L4::Tcp(t) => {
                match t.packet(d, seg.expect("tcp segment"), &mut e.status, expires_in, cfg) {
                    tcp::Outcome::Accept(t) => t,
                    tcp::Outcome::AcceptKill => {
                        // Dies now; the packet still passes (with its NAT binding).
                        e.status |= status::DYING;
                        e.expires = now_ms;
                        e.packets[d] += 1;
                        e.bytes[d] += pkt.len as u64;
                        return Update::Ok(e.ctinfo(dir));
                    }
                    tcp::Outcome::Ignore => return Update::Ok(e.ctinfo(dir)),
                    tcp::Outcome::Invalid(shorten) => {
                        if let Some(s) = shorten {
                            e.expires = now_ms.wrapping_add(s * 1000);
                        }
                        return Update::Invalid;
                    }
                    tcp::Outcome::Repeat => return Update::Repeat,
                }
            }
            L4::Udp { stream_ts } => {
                // SEEN_REPLY is set after this (as in nf_conntrack_in): the first reply keeps the short
                // timeout; any packet after it makes the flow assured, and one more than 2 s after the
                // first packet gives it the stream timeout (nf_conntrack_udp_packet).
                if e.status & status::SEEN_REPLY != 0 {
                    e.status |= status::ASSURED;
                    if (now_ms.wrapping_sub(*stream_ts) as i32) > 0 {
                        Some(cfg.udp_timeout_stream)
                    } else {
                        Some(cfg.udp_timeout)
                    }
                } else {
                    Some(cfg.udp_timeout)
                }
            }
            L4::Other => Some(match e.proto {
                IPPROTO_ICMP => cfg.icmp_timeout,
                IPPROTO_ICMPV6 => cfg.icmpv6_timeout,
                _ => cfg.generic_timeout,
            }),
        };
        let info = e.ctinfo(dir);
        if dir == Dir::Reply {
            e.status |= status::SEEN_REPLY;
        }
        if let Some(t) = timeout {
            if e.status & status::FIXED_TIMEOUT == 0 {
                e.expires = now_ms.wrapping_add(t.saturating_mul(1000));
            }
        }
        e.packets[d] += 1;
        e.bytes[d] += pkt.len as u64;
        if self.events_enabled && (e.status, e.tcp_state()) != before {
            self.event(EventKind::Update, idx, now_ms);
        }
        Update::Ok(info)
    }

    /// An ICMP error: RELATED if it quotes a packet of a tracked connection (`icmp_error_message`).
    fn related(
        &mut self,
        pkt: &CtPkt<A>,
        zone: u16,
        now_ms: u32,
        stats: &mut WorkerStats,
    ) -> CtResult {
        let inner = quoted_tuple::<A>(&pkt.l4[8..]);
        let found = inner
            .and_then(|t| t.invert())
            .and_then(|t| self.lookup(zone, &t, now_ms, stats));
        match found {
            Some((idx, dir)) => CtResult::Related { idx, dir },
            None => {
                stats.ct_invalid += 1;
                CtResult::Invalid
            }
        }
    }

    /// Enters the pending connection into the table once the packet survived every hook
    /// (`__nf_conntrack_confirm`).
    pub fn confirm(&mut self, ct: CtResult, now: u64, stats: &mut WorkerStats) -> Confirm {
        if ct != CtResult::New {
            return Confirm::NotNew;
        }
        let Some(mut e) = self.pending.take() else {
            return Confirm::NotNew;
        };
        let now_ms = ms(now);
        for d in [Dir::Original, Dir::Reply] {
            if self.lookup(e.zone, &e.tuple(d), now_ms, stats).is_some() {
                stats.ct_insert_failed += 1;
                return Confirm::InsertFailed;
            }
        }
        e.status |= status::CONFIRMED;
        let (zone, proto, keys, expires) = (e.zone, e.proto, e.keys, e.expires);
        let idx = self.slab.insert(e);
        for (d, k) in keys.iter().enumerate() {
            let h = hash_key(self.seed, zone, proto, k);
            let seed = self.seed;
            let slab = &self.slab;
            self.index.insert(h, idx << 1 | d as u32, |v| {
                let e = slab.get(v >> 1).unwrap();
                hash_key(seed, e.zone, e.proto, &e.keys[(v & 1) as usize])
            });
        }
        let b = self.wheel.schedule(idx, expires, now_ms);
        self.slab.get_mut(idx).unwrap().wheel = b;
        if self.pending_label != 0 {
            self.labels
                .insert(idx, std::mem::take(&mut self.pending_label));
        }
        if self.pending_counted != 0 {
            let bits = std::mem::take(&mut self.pending_counted);
            self.count_in(idx, bits);
        }
        stats.ct_new += 1;
        self.event(EventKind::New, idx, now_ms);
        // Pay for expiry as we go: a few wheel items per insertion keeps pace with any creation rate.
        self.expire(now, 4, stats);
        Confirm::Inserted(idx)
    }

    /// Forgets the pending entry (the packet was dropped before confirmation).
    pub fn abandon(&mut self) {
        self.pending = None;
        self.pending_label = 0;
        self.pending_counted = 0;
    }

    /// Visits due wheel buckets, removing expired entries and re-filing the others, doing at most
    /// `budget` items. Returns the number removed.
    pub fn expire(&mut self, now: u64, budget: usize, stats: &mut WorkerStats) -> usize {
        let now_ms = ms(now);
        let Some(mut tick) = self.wheel.tick else {
            return 0;
        };
        let now_tick = now_ms >> TICK_SHIFT;
        let mut work = 0;
        let mut removed = 0;
        while (now_tick.wrapping_sub(tick) as i32) >= 0 {
            let b = (tick as usize) & (WHEEL - 1);
            while let Some(idx) = self.wheel.buckets[b].pop() {
                work += 1;
                let Some(e) = self.slab.get(idx) else {
                    continue;
                };
                if e.wheel as usize != b {
                    continue; // stale reference: the slot was reused and filed elsewhere
                }
                if e.expired(now_ms) {
                    self.remove(idx);
                    removed += 1;
                } else {
                    let expires = e.expires;
                    // File under its expiry, at least one tick ahead of the one being visited.
                    let delta = ((expires >> TICK_SHIFT).wrapping_sub(tick) as i32)
                        .clamp(1, WHEEL as i32 - 1);
                    let nb = (tick.wrapping_add(delta as u32) as usize) & (WHEEL - 1);
                    self.wheel.buckets[nb].push(idx);
                    self.slab.get_mut(idx).unwrap().wheel = nb as u16;
                }
                if work >= budget {
                    self.wheel.tick = Some(tick);
                    stats.ct_expired += removed as u64;
                    return removed;
                }
            }
            tick = tick.wrapping_add(1);
        }
        self.wheel.tick = Some(tick);
        stats.ct_expired += removed as u64;
        removed
    }

    /// Removes every entry (`conntrack -F`).
    pub fn flush(&mut self) {
        let steered: Vec<Tuple<A>> = self
            .entries()
            .filter(|(_, e)| e.status & status::STEERED != 0)
            .map(|(_, e)| e.reply())
            .collect();
        self.unsteer.extend(steered);
        if self.events_enabled {
            let idxs: Vec<u32> = self.entries().map(|(i, _)| i).collect();
            for i in idxs {
                self.remove(i);
            }
        }
        let idxs: Vec<u32> = self.counted.keys().copied().collect();
        for i in idxs {
            self.count_out(i);
        }
        self.index.clear();
        self.slab.clear();
        self.labels.clear();
        for b in &mut self.wheel.buckets {
            b.clear();
        }
        self.wheel.tick = None;
        self.pending = None;
    }
}

enum Update {
    Ok(u32),
    Invalid,
    Repeat,
}

/// The tuple of the packet quoted in an ICMP error (its IP header and the first 8 transport bytes).
fn quoted_tuple<A: Addr>(quote: &[u8]) -> Option<Tuple<A>> {
    let (src, dst, proto, l4) = parse_quoted::<A>(quote)?;
    if proto == A::ICMP && is_icmp_error(proto, *l4.first()?) {
        // Errors about errors are never related.
        return None;
    }
    tuple_of(src, dst, proto, l4)
}

/// Addresses, protocol and transport bytes of a quoted IP header.
pub(crate) fn parse_quoted<A: Addr>(q: &[u8]) -> Option<(A, A, u8, &[u8])> {
    let text = A::from_slice;
    match A::NFPROTO {
        2 => {
            if q.len() < 20 || q[0] >> 4 != 4 {
                return None;
            }
            let hl = (q[0] & 0xf) as usize * 4;
            if hl < 20 || q.len() < hl + 8 {
                return None;
            }
            Some((text(&q[12..16])?, text(&q[16..20])?, q[9], &q[hl..]))
        }
        _ => {
            // IPv6 without extension headers in the quote.
            if q.len() < 48 || q[0] >> 4 != 6 {
                return None;
            }
            Some((text(&q[8..24])?, text(&q[24..40])?, q[6], &q[40..]))
        }
    }
}

#[cfg(test)]
mod tests;
