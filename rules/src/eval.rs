//! Evaluation: what a packet looks like to the rules, and the chain walker.

use crate::ast::Hook;
use crate::compile::{Bin, CompiledRuleset, Load, Op, StoreTarget, Test, VOp, VSrc};
use crate::CounterValue;

/// Network protocol of a packet at an IP hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NfProto {
    Ipv4,
    Ipv6,
}

impl NfProto {
    /// NFPROTO_* value (`meta nfproto`).
    pub fn value(self) -> u8 {
        match self {
            NfProto::Ipv4 => 2,
            NfProto::Ipv6 => 10,
        }
    }
    /// Ethertype (`meta protocol`).
    pub fn ethertype(self) -> u16 {
        match self {
            NfProto::Ipv4 => 0x0800,
            NfProto::Ipv6 => 0x86dd,
        }
    }
    pub(crate) fn index(self) -> usize {
        match self {
            NfProto::Ipv4 => 0,
            NfProto::Ipv6 => 1,
        }
    }
}

/// The final verdict of a base chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    Drop,
    /// Drop, and send the reply described (the `reject` statement). The packet is gone as with `Drop`.
    Reject(RejectKind),
    /// `fwd`: the packet was handed to [`Tracer::dup`] to leave elsewhere; it goes no further here.
    Stolen,
}

impl Verdict {
    /// Drop or reject: the packet does not go on.
    pub fn is_drop(self) -> bool {
        !matches!(self, Verdict::Accept)
    }
}

/// The reply a `reject` sends, with the family's default resolved (nft_reject's types; the codes are
/// ICMP / ICMPv6 / ICMPX codes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RejectKind {
    /// ICMP destination unreachable with this code (IPv4 only).
    Icmp(u8),
    /// ICMPv6 destination unreachable with this code (IPv6 only).
    Icmpv6(u8),
    /// Family-independent code: 0 no-route, 1 port-unreachable, 2 host-unreachable, 3 admin-prohibited.
    Icmpx(u8),
    /// A TCP RST (the rule only applies to TCP).
    TcpReset,
}

/// A verdict as the tracer reports it for one rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TraceVerdict {
    Accept,
    Drop,
    Reject(RejectKind),
    Continue,
    Return,
    Jump(ChainId),
    Goto(ChainId),
    /// `fwd`: the packet left
    Stolen,
}

/// What the chain walker reports, in the order it happens (the kernel's trace types, plus `NoMatch`,
/// which the kernel does not report but an offline trace wants).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TraceEvent {
    /// Rule `rule` (index within `chain`) matched and issued `verdict` (`Continue` when it has none).
    Rule {
        chain: ChainId,
        rule: u32,
        verdict: TraceVerdict,
    },
    /// Rule `rule` was evaluated but a match failed.
    NoMatch { chain: ChainId, rule: u32 },
    /// The end of `chain` was reached (back to the caller, or to the policy for a base chain).
    Return { chain: ChainId },
    /// The base chain's policy decided.
    Policy { chain: ChainId, verdict: Verdict },
}

/// Receives [`TraceEvent`]s during [`CompiledRuleset::eval_chain_traced`]. `pkt.nftrace` tells whether
/// the packet is marked for tracing (`meta nftrace set 1`) at the time of the event.
pub trait Tracer {
    fn event(&mut self, pkt: &PacketCtx<'_>, ev: TraceEvent);
    /// Whether the walk must visit every rule in order, reporting `NoMatch` for each one that fails
    /// (the default). When `false`, chains with a compiled classifier visit only the rules it cannot
    /// rule out: the same `Rule`, `Return` and `Policy` events, verdicts, counters and side effects in
    /// the same order, but `NoMatch` only for the rules visited.
    fn every_rule(&self) -> bool {
        true
    }
    /// A `log` statement was reached with the packet as it is now.
    fn log(&mut self, _pkt: &PacketCtx<'_>, _log: &crate::stmt::log::Log) {}
    /// A `dup` or `fwd` statement was reached: the packet as it is now goes where `to` says (for
    /// `fwd` the walk then ends with [`Verdict::Stolen`]). Evaluation with [`NoTrace`] drops these.
    fn dup(&mut self, _pkt: &PacketCtx<'_>, _to: &Duplicate<'_>) {}
}

/// Where a `dup` / `fwd` statement sends the packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Duplicate<'a> {
    /// `fwd` (the packet itself) rather than `dup` (a copy)
    pub fwd: bool,
    /// the next hop (4 or 16 bytes): `dup to ADDR`, `fwd ip to ADDR`
    pub addr: Option<&'a [u8]>,
    /// the device: `dup to DEV` / `fwd to DEV` (netdev), `device DEV`
    pub device: Option<&'a str>,
}

/// The tracer that records nothing (what [`CompiledRuleset::eval_chain`] uses).
pub struct NoTrace;

impl Tracer for NoTrace {
    #[inline(always)]
    fn event(&mut self, _: &PacketCtx<'_>, _: TraceEvent) {}
    #[inline(always)]
    fn every_rule(&self) -> bool {
        false
    }
}

/// A chain of a compiled ruleset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ChainId(pub u32);

/// Kernel conntrack state bits as `ct state` sees them.
pub mod ct_state {
    pub const INVALID: u32 = 1;
    pub const ESTABLISHED: u32 = 2;
    pub const RELATED: u32 = 4;
    pub const NEW: u32 = 8;
    pub const UNTRACKED: u32 = 64;
}

/// What evaluation sees of a packet (filled by the dataplane's parser).
#[derive(Debug)]
pub struct PacketCtx<'a> {
    /// whole frame starting at the Ethernet header (payload statements write into it)
    pub frame: &'a mut [u8],
    /// network header offset in `frame`
    pub nh_off: usize,
    /// transport header offset; `None` for non-first fragments / unknown
    pub th_off: Option<usize>,
    pub nfproto: NfProto,
    /// IPPROTO_* of the transport header (after IPv6 extension headers)
    pub l4proto: u8,
    /// L3 length: what counters count as bytes
    pub len: u32,
    pub iif: u32,
    pub iifname: &'a str,
    pub oif: u32,
    pub oifname: &'a str,
    pub mark: u32,
    /// kernel bits: see [`ct_state`]
    pub ct_state: u32,
    pub ct_mark: u32,
    /// `ct label` bits (written back to the entry by the dataplane, like `ct_mark`).
    pub ct_label: u128,
    /// The rest of the packet's conntrack entry (`ct status`, `ct direction`, tuples, ...): `None` when
    /// the packet has no entry, or when the ruleset reads none of it ([`CompiledRuleset::uses_ct_view`]).
    pub ct_view: Option<&'a CtView>,
    /// `ct count`: the live per-statement connection counts shared by the workers (`None`: only this
    /// connection counts), and which statements already count this packet's connection (bit per
    /// statement; set by evaluation, the dataplane adds the new ones to `conncount` when the entry stays).
    pub conncount: Option<&'a ConnCounts>,
    pub ct_counted: u32,
    pub hook: Hook,
    /// `meta nftrace`: the packet is traced (set by `meta nftrace set 1`).
    pub nftrace: bool,
    /// monotonic time in nanoseconds (for `limit`)
    pub now: u64,
    /// the routing table `fib` expressions ask; without one they do not match
    pub fib: Option<&'a dyn FibLookup>,
    /// How many payload statements wrote into `frame`: the dataplane reads the headers again (a new
    /// destination routes anew).
    pub payload_writes: u32,
}

impl<'a> PacketCtx<'a> {
    /// What the rules see of the IP packet in `frame` (an Ethernet frame) at `hook`, when nothing is
    /// known of it beyond its headers: no interfaces, marks, connection or routing table. Reads the
    /// family, the transport header's offset (after an IPv4 header's options; right after a fixed IPv6
    /// header) and protocol, and the length from the network header; callers set the rest.
    pub fn new(frame: &'a mut [u8], hook: Hook, now: u64) -> PacketCtx<'a> {
        const NH: usize = 14;
        let byte = |i: usize| frame.get(NH + i).copied().unwrap_or(0) as usize;
        let (nfproto, th_off, l4proto, len) = if byte(0) >> 4 == 6 {
            let len = 40 + (byte(4) << 8 | byte(5));
            (NfProto::Ipv6, Some(NH + 40), byte(6) as u8, len)
        } else {
            let first = (byte(6) << 8 | byte(7)) & 0x1fff == 0;
            let th = first.then_some(NH + (byte(0) & 0xf) * 4);
            (NfProto::Ipv4, th, byte(9) as u8, byte(2) << 8 | byte(3))
        };
        PacketCtx {
            frame,
            nh_off: NH,
            th_off,
            nfproto,
            l4proto,
            len: len as u32,
            iif: 0,
            iifname: "",
            oif: 0,
            oifname: "",
            mark: 0,
            ct_state: 0,
            ct_mark: 0,
            ct_label: 0,
            ct_view: None,
            conncount: None,
            ct_counted: 0,
            hook,
            nftrace: false,
            now,
            fib: None,
            payload_writes: 0,
        }
    }
}

/// What `fib` expressions ask of the routing table (the dataplane's FIB).
pub trait FibLookup: std::fmt::Debug {
    /// The output interface (ifindex, name) of the route to `dst` (4 or 16 bytes); `None` without a
    /// usable route, or when `dst` is one of the box's own addresses (the kernel's RTN_LOCAL).
    fn route(&self, dst: &[u8]) -> Option<(u32, &str)>;
    /// `inet_dev_addr_type`: the RTN_* type of `addr` (2 local, 1 unicast, 3 broadcast, 5 multicast,
    /// 7 unreachable, …), as seen from interface `ifindex` when given.
    fn addr_type(&self, addr: &[u8], ifindex: Option<u32>) -> u32;
}

/// `fib`, as nft_fib4_eval / nft_fib6_eval: look the source (or destination) address up; with `iif` or
/// `oif` in the flags only a route through that interface counts.
fn fib_load(
    flags: u8,
    result: crate::expr::FibResult,
    p: &PacketCtx<'_>,
    out: &mut [u8],
) -> Option<usize> {
    use crate::expr::FibResult;
    const SADDR: u8 = 1;
    const DADDR: u8 = 2;
    const IIF: u8 = 8;
    const OIF: u8 = 16;
    let fib = p.fib?;
    let (s, d, w) = match p.nfproto {
        NfProto::Ipv4 => (p.nh_off + 12, p.nh_off + 16, 4),
        NfProto::Ipv6 => (p.nh_off + 8, p.nh_off + 24, 16),
    };
    let saddr = p.frame.get(s..s + w)?;
    let daddr = p.frame.get(d..d + w)?;
    let restrict = if flags & IIF != 0 {
        Some((p.iif, p.iifname))
    } else if flags & OIF != 0 {
        Some((p.oif, p.oifname))
    } else {
        None
    };
    let addr = if flags & DADDR != 0 || flags & SADDR == 0 {
        daddr
    } else {
        saddr
    };
    if result == FibResult::Type {
        let t = fib.addr_type(addr, restrict.map(|r| r.0));
        out.get_mut(..4)?.copy_from_slice(&t.to_be_bytes());
        return Some(4);
    }
    let v4_zeronet_local = w == 4
        && saddr == [0, 0, 0, 0]
        && (daddr == [255, 255, 255, 255] || daddr[..3] == [224, 0, 0]);
    let found: Option<(u32, &str)> = if v4_zeronet_local {
        // DHCP discovery and the like: the interface it came in on
        Some((p.iif, p.iifname))
    } else {
        match (fib.route(addr), restrict) {
            (Some(r), None) => Some(r),
            (Some(r), Some(want)) if r.0 == want.0 => Some(want),
            _ => None,
        }
    };
    match result {
        FibResult::Oif => {
            out.get_mut(..4)?
                .copy_from_slice(&found.map_or(0, |f| f.0).to_be_bytes());
            Some(4)
        }
        FibResult::Oifname => {
            let o = out.get_mut(..16)?;
            o.fill(0);
            if let Some((_, name)) = found {
                let n = name.len().min(16);
                o[..n].copy_from_slice(&name.as_bytes()[..n]);
            }
            Some(16)
        }
        _ => {
            *out.get_mut(0)? = found.is_some() as u8;
            Some(1)
        }
    }
}

/// The conntrack entry of a packet as `ct` expressions see it, filled by the dataplane after conntrack
/// (and again after a NAT binding changes it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CtView {
    /// IPS_* bits (`ct status`).
    pub status: u32,
    /// The packet travels in the reply direction (`ct direction`).
    pub reply: bool,
    /// Milliseconds until the entry expires (`ct expiration`); 0 for a connection not confirmed yet,
    /// whose timeout the kernel still keeps relative.
    pub expiration_ms: u32,
    /// NFPROTO_* (`ct l3proto`).
    pub l3proto: u8,
    /// IPPROTO_* (`ct protocol`).
    pub protocol: u8,
    pub zone: u16,
    /// Original and reply tuples.
    pub tuples: [CtTupleView; 2],
    /// Per direction (0 unless accounting is on, as with the kernel's `nf_conntrack_acct`).
    pub packets: [u64; 2],
    pub bytes: [u64; 2],
}

/// One direction's tuple: addresses (an IPv4 address in the first 4 bytes), ports (ICMP: the id and
/// `type << 8 | code`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CtTupleView {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub sport: u16,
    pub dport: u16,
}

/// Most `ct count` statements a ruleset may have.
pub const MAX_CONNLIMIT: usize = 32;

/// Live connections per `ct count` statement (by its index in the compiled ruleset), shared by the
/// workers; the dataplane adds a connection when it stays in the table and takes it away when it goes
/// or closes (as nf_conncount forgets closed connections).
pub type ConnCounts = [std::sync::atomic::AtomicU32; MAX_CONNLIMIT];

/// Kernel's NFT_JUMP_STACK_SIZE.
pub const JUMP_STACK: usize = 16;

const BUF: usize = 64;

impl CompiledRuleset {
    /// Runs one base chain to its verdict, following jump/goto/return, applying the chain policy when
    /// no rule decides. Counters are per worker, indexed by counter slot. Does not allocate.
    pub fn eval_chain(
        &self,
        chain: ChainId,
        pkt: &mut PacketCtx<'_>,
        counters: &mut [CounterValue],
    ) -> Verdict {
        self.eval_chain_traced(chain, pkt, counters, &mut NoTrace)
    }

    /// [`CompiledRuleset::eval_chain`] reporting every rule evaluated, chain end and policy to `tracer`
    /// (monomorphised: with [`NoTrace`] it costs nothing).
    pub fn eval_chain_traced<T: Tracer + ?Sized>(
        &self,
        chain: ChainId,
        pkt: &mut PacketCtx<'_>,
        counters: &mut [CounterValue],
        tracer: &mut T,
    ) -> Verdict {
        self.walk(chain, pkt, counters, tracer, &mut None)
    }

    /// The chain walker behind the `eval_chain*` methods; a NAT statement ends the chain with accept and
    /// leaves its request in `nat`.
    pub(crate) fn walk<T: Tracer + ?Sized>(
        &self,
        chain: ChainId,
        pkt: &mut PacketCtx<'_>,
        counters: &mut [CounterValue],
        tracer: &mut T,
        nat: &mut Option<crate::nat_effect::NatRequest>,
    ) -> Verdict {
        let base = chain.0 as usize;
        let policy = self.chains[base].policy.unwrap_or(Verdict::Accept);
        let mut stack = [(0u32, 0u32); JUMP_STACK];
        let mut sp = 0usize;
        let mut c = base;
        let mut r = self.chains[c].rules.start;
        // the compiled classifier: skip to the next rule that can match (crate::classify)
        let indexed = !tracer.every_rule();
        let mut cands = None;
        loop {
            if indexed {
                r = self.next_candidate(c, r, pkt, &mut cands);
            }
            if r >= self.chains[c].rules.end {
                // end of chain: implicit return
                tracer.event(
                    pkt,
                    TraceEvent::Return {
                        chain: ChainId(c as u32),
                    },
                );
                if sp == 0 {
                    tracer.event(
                        pkt,
                        TraceEvent::Policy {
                            chain,
                            verdict: policy,
                        },
                    );
                    return policy;
                }
                sp -= 1;
                c = stack[sp].0 as usize;
                r = stack[sp].1;
                continue;
            }
            let rule = &self.rules[r as usize];
            let cid = ChainId(c as u32);
            let idx = r - self.chains[c].rules.start;
            let writes = pkt.payload_writes;
            let ran = self.run_rule(rule.ops.clone(), pkt, counters, tracer);
            if pkt.payload_writes != writes {
                // the packet changed under the classifier's candidates: ask it again
                cands = None;
            }
            let Some(mut v) = ran else {
                tracer.event(
                    pkt,
                    TraceEvent::NoMatch {
                        chain: cid,
                        rule: idx,
                    },
                );
                r += 1;
                continue;
            };
            if let VOp::Nat(i) = v {
                // Not for this packet's family, or no map element: the rule does not apply.
                *nat = self.nat_request(i, pkt);
                v = if nat.is_some() {
                    VOp::Accept
                } else {
                    VOp::Continue
                };
            }
            let tv = match v {
                VOp::Nat(_) => TraceVerdict::Accept,
                VOp::Accept => TraceVerdict::Accept,
                VOp::Drop => TraceVerdict::Drop,
                VOp::Reject(k) => TraceVerdict::Reject(k),
                VOp::Stolen => TraceVerdict::Stolen,
                VOp::Continue => TraceVerdict::Continue,
                VOp::Return => TraceVerdict::Return,
                VOp::Jump(t) => TraceVerdict::Jump(ChainId(t)),
                VOp::Goto(t) => TraceVerdict::Goto(ChainId(t)),
            };
            tracer.event(
                pkt,
                TraceEvent::Rule {
                    chain: cid,
                    rule: idx,
                    verdict: tv,
                },
            );
            match v {
                VOp::Continue => r += 1,
                VOp::Accept | VOp::Nat(_) => return Verdict::Accept,
                VOp::Drop => return Verdict::Drop,
                VOp::Reject(k) => return Verdict::Reject(k),
                VOp::Stolen => return Verdict::Stolen,
                VOp::Return => {
                    if sp == 0 {
                        tracer.event(
                            pkt,
                            TraceEvent::Policy {
                                chain,
                                verdict: policy,
                            },
                        );
                        return policy;
                    }
                    sp -= 1;
                    c = stack[sp].0 as usize;
                    r = stack[sp].1;
                }
                VOp::Jump(t) => {
                    if sp >= JUMP_STACK {
                        // not reached for compiled rulesets: compile refuses deeper nesting (EMLINK)
                        return Verdict::Drop;
                    }
                    stack[sp] = (c as u32, r + 1);
                    sp += 1;
                    c = t as usize;
                    r = self.chains[c].rules.start;
                }
                VOp::Goto(t) => {
                    c = t as usize;
                    r = self.chains[c].rules.start;
                }
            }
        }
    }

    /// Runs one rule's ops. `None`: a match failed; `Continue` when all matched and no verdict was given.
    #[inline]
    pub(crate) fn run_rule<T: Tracer + ?Sized>(
        &self,
        ops: std::ops::Range<u32>,
        pkt: &mut PacketCtx<'_>,
        counters: &mut [CounterValue],
        tracer: &mut T,
    ) -> Option<VOp> {
        for op in &self.ops[ops.start as usize..ops.end as usize] {
            match op {
                Op::Cmp { sel, test } => {
                    let sel = &self.sels[*sel as usize];
                    let mut buf = [0u8; BUF];
                    let mut n = 0;
                    for l in sel.loads.iter() {
                        n += load(l, pkt, &mut buf[n..])?;
                    }
                    if let Some(b) = &sel.bin {
                        apply_bin(b, &mut buf[..n]);
                    }
                    if !self.test(test, &buf[..n], pkt.now) {
                        return None;
                    }
                }
                Op::Vmap { sel, set } => {
                    let sel = &self.sels[*sel as usize];
                    let mut buf = [0u8; BUF];
                    let mut n = 0;
                    for l in sel.loads.iter() {
                        n += load(l, pkt, &mut buf[n..])?;
                    }
                    if let Some(b) = &sel.bin {
                        apply_bin(b, &mut buf[..n]);
                    }
                    let s = &self.sets[*set as usize];
                    let i = match s.find(&buf[..n]) {
                        Some(i) => i,
                        // a dynamic element's data is the index of its verdict
                        None => {
                            let d = s.dynamic.as_ref()?;
                            let mut v = [0u8; 4];
                            (d.get(&buf[..n], pkt.now, &mut v)? == 4).then_some(())?;
                            u32::from_be_bytes(v)
                        }
                    };
                    return s.verdicts.get(i as usize).copied();
                }
                Op::Store { target, src } => {
                    let mut buf = [0u8; BUF];
                    let n = self.compute(src, pkt, &mut buf)?;
                    let mut v = 0u32;
                    for &b in &buf[..n.min(4)] {
                        v = (v << 8) | b as u32;
                    }
                    match target {
                        StoreTarget::Mark => pkt.mark = v,
                        StoreTarget::CtMark => pkt.ct_mark = v,
                        StoreTarget::CtLabel => {
                            // nf_connlabels_replace with mask = value: the bit is added
                            if let Some(bit) = buf[..n].last().filter(|&&b| b < 128) {
                                pkt.ct_label |= 1u128 << bit;
                            }
                        }
                        StoreTarget::Nftrace => pkt.nftrace = v != 0,
                        // nft_notrack_eval: no effect on a packet that has a connection
                        StoreTarget::Notrack => {
                            if pkt.ct_state == ct_state::INVALID {
                                pkt.ct_state = ct_state::UNTRACKED;
                            }
                        }
                    }
                }
                Op::Counter(slot) => {
                    if let Some(c) = counters.get_mut(*slot as usize) {
                        c.packets += 1;
                        c.bytes += pkt.len as u64;
                    }
                }
                Op::Limit(i) => {
                    if !self.limits[*i as usize].matches(pkt.now, pkt.len) {
                        return None;
                    }
                }
                Op::Quota(i) => {
                    if !self.quotas[*i as usize].matches(pkt.len) {
                        return None;
                    }
                }
                Op::ObjCounter(i) => self.obj_counters[*i as usize].add(pkt.len),
                Op::Log(i) => tracer.log(pkt, &self.logs[*i as usize]),
                Op::DynSet(d) => {
                    let mut buf = [0u8; BUF];
                    let n = self.compute(&d.key, pkt, &mut buf)?;
                    let cs = &self.sets[d.set as usize];
                    // a range or prefix of the set's own text covers it: nothing to add
                    if d.kind != crate::dynset::DynOpKind::Delete && cs.find(&buf[..n]).is_some() {
                        continue;
                    }
                    let set = cs.dynamic.as_ref()?;
                    let mut data = [0u8; BUF];
                    let dn = match &d.data {
                        Some(src) => self.compute(src, pkt, &mut data)?,
                        None => 0,
                    };
                    if !set.apply(
                        d.kind,
                        &buf[..n],
                        &data[..dn],
                        d.timeout,
                        &d.stmts,
                        pkt.now,
                        pkt.len,
                    ) {
                        return None;
                    }
                }
                Op::Connlimit { id, limit, over } => {
                    // nft_connlimit_do_eval: this connection is added if not counted yet, then
                    // `count > limit` decides (inverted without `over`).
                    // A packet without an entry counts once, from its own tuple, and is forgotten.
                    let tracked = pkt.ct_state & (ct_state::INVALID | ct_state::UNTRACKED) == 0;
                    let bit = 1u32 << id;
                    let mut count = pkt.conncount.map_or(0, |c| {
                        c[*id as usize].load(std::sync::atomic::Ordering::Relaxed)
                    });
                    if pkt.ct_counted & bit == 0 {
                        if tracked {
                            pkt.ct_counted |= bit;
                        }
                        count += 1;
                    }
                    if (count > *limit) != *over {
                        return None;
                    }
                }
                Op::PayloadSet(w) => {
                    let mut buf = [0u8; BUF];
                    let n = self.compute(&w.src, pkt, &mut buf)?;
                    let l3_end = pkt.nh_off.saturating_add(pkt.len as usize);
                    w.write.apply(
                        pkt.frame,
                        pkt.nh_off,
                        pkt.th_off,
                        l3_end.min(pkt.frame.len()),
                        pkt.nfproto == NfProto::Ipv4,
                        pkt.l4proto,
                        &buf[..n],
                    )?;
                    pkt.payload_writes += 1;
                }
                Op::ObjMap(m) => {
                    let mut buf = [0u8; BUF];
                    let mut n = 0;
                    for l in m.loads.iter() {
                        n += load(l, pkt, &mut buf[n..])?;
                    }
                    // no element for the key: the rule ends here (nft_objref_map_eval's NFT_BREAK)
                    let i = self.sets[m.set as usize].find(&buf[..n])?;
                    match m.objs.get(i as usize) {
                        Some(Some(Op::ObjCounter(c))) => {
                            self.obj_counters[*c as usize].add(pkt.len)
                        }
                        Some(Some(Op::Quota(q))) if !self.quotas[*q as usize].matches(pkt.len) => {
                            return None
                        }
                        Some(Some(Op::Limit(l)))
                            if !self.limits[*l as usize].matches(pkt.now, pkt.len) =>
                        {
                            return None
                        }
                        _ => {}
                    }
                }
                Op::Dup(d) => {
                    let mut to = [0u8; BUF];
                    let n = self.compute(&d.to, pkt, &mut to)?;
                    let mut dev = [0u8; BUF];
                    let dn = match &d.device {
                        Some(src) => Some(self.compute(src, pkt, &mut dev)?),
                        None => None,
                    };
                    fn name(b: &[u8]) -> Option<&str> {
                        let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
                        std::str::from_utf8(&b[..end]).ok()
                    }
                    let (addr, device) = if d.to_is_device {
                        (None, Some(name(&to[..n])?))
                    } else {
                        (Some(&to[..n]), dn.and_then(|k| name(&dev[..k])))
                    };
                    tracer.dup(
                        pkt,
                        &Duplicate {
                            fwd: d.fwd,
                            addr,
                            device,
                        },
                    );
                    if d.fwd {
                        return Some(VOp::Stolen);
                    }
                }
                Op::Verdict(v) => return Some(*v),
            }
        }
        Some(VOp::Continue)
    }

    /// Computes a value into `buf`; `None` when a load or lookup fails.
    pub(crate) fn compute(
        &self,
        src: &VSrc,
        pkt: &PacketCtx<'_>,
        buf: &mut [u8; BUF],
    ) -> Option<usize> {
        match src {
            VSrc::Const(c) => {
                buf[..c.len()].copy_from_slice(c);
                Some(c.len())
            }
            VSrc::Load { loads, bin } => {
                let mut n = 0;
                for l in loads.iter() {
                    n += load(l, pkt, &mut buf[n..])?;
                }
                for b in bin {
                    apply_bin(b, &mut buf[..n]);
                }
                Some(n)
            }
            VSrc::Map {
                loads,
                set,
                data,
                written,
            } => {
                let mut n = 0;
                for l in loads.iter() {
                    n += load(l, pkt, &mut buf[n..])?;
                }
                let s = &self.sets[*set as usize];
                match s.find(&buf[..n]) {
                    Some(i) => {
                        let d = data.get(i as usize)?;
                        buf[..d.len()].copy_from_slice(d);
                        Some(d.len())
                    }
                    None => {
                        let mut key = [0u8; BUF];
                        key[..n].copy_from_slice(&buf[..n]);
                        let w = written.map_or(s, |w| &self.sets[w as usize]);
                        w.dynamic.as_ref()?.get(&key[..n], pkt.now, buf)
                    }
                }
            }
        }
    }

    #[inline]
    pub(crate) fn test(&self, t: &Test, k: &[u8], now: u64) -> bool {
        match t {
            Test::Eq(v) => k == &v[..],
            Test::Ne(v) => k != &v[..],
            Test::Lt(v) => k < &v[..],
            Test::Gt(v) => k > &v[..],
            Test::Le(v) => k <= &v[..],
            Test::Ge(v) => k >= &v[..],
            Test::Range { lh, neg } => (k >= &lh.0[..] && k <= &lh.1[..]) != *neg,
            Test::Range8 { lo, hi, len, neg } => {
                let n = *len as usize;
                (k >= &lo[..n] && k <= &hi[..n]) != *neg
            }
            Test::AnyBits { mask, neg } => {
                k.iter().zip(mask.iter()).any(|(a, b)| a & b != 0) != *neg
            }
            Test::Set { set, neg } => self.sets[*set as usize].contains_at(k, now) != *neg,
        }
    }
}

#[inline]
pub(crate) fn load(l: &Load, p: &PacketCtx<'_>, out: &mut [u8]) -> Option<usize> {
    match l {
        Load::Payload(pl) => pl.read(p.frame, p.nh_off, p.th_off, out),
        Load::Meta(k) => k.read(p, out),
        Load::Unavailable => None,
        Load::Numgen(g) => {
            out.get_mut(..4)?.copy_from_slice(&g.next().to_be_bytes());
            Some(4)
        }
        Load::Hash(h) => {
            use crate::expr::hash;
            let v = match &h.key {
                Some(key) => {
                    // the key as the kernel's registers hold it: host-order integers (meta mark,
                    // ct mark) little-endian; a concatenation's parts each in whole 32-bit words,
                    // zero-padded (a single key hashes its own length)
                    let mut buf = [0u8; BUF];
                    let mut n = 0;
                    for l in key.iter() {
                        let k = load(l, p, &mut buf[n..])?;
                        if host_order(l) {
                            buf[n..n + k].reverse();
                        }
                        n += k;
                        if key.len() > 1 {
                            n = n.next_multiple_of(4).min(BUF);
                        }
                    }
                    hash::jhash(&buf[..n], h.seed)
                }
                None => {
                    let th = p.th_off.and_then(|t| p.frame.get(t..t + 4));
                    let (sport, dport) = match (p.l4proto, th) {
                        (6 | 17 | 132 | 33 | 136, Some(b)) => (
                            u16::from_be_bytes([b[0], b[1]]),
                            u16::from_be_bytes([b[2], b[3]]),
                        ),
                        _ => (0, 0),
                    };
                    let (s, d) = match p.nfproto {
                        NfProto::Ipv4 => (p.nh_off + 12, p.nh_off + 16),
                        NfProto::Ipv6 => (p.nh_off + 8, p.nh_off + 24),
                    };
                    let w = if p.nfproto == NfProto::Ipv4 { 4 } else { 16 };
                    let src = p.frame.get(s..s + w)?;
                    let dst = p.frame.get(d..d + w)?;
                    hash::symmetric(src, dst, p.l4proto, sport, dport, h.seed)
                }
            };
            out.get_mut(..4)?
                .copy_from_slice(&hash::bucket(v, h.modulus, h.offset).to_be_bytes());
            Some(4)
        }
        Load::Opt { space, kind, field } => {
            let at = crate::expr::opt::find(*space, p.frame, p.th_off?, *kind);
            match field {
                None => {
                    *out.get_mut(0)? = at.is_some() as u8;
                    Some(1)
                }
                Some(f) => {
                    let at = at?;
                    let first = at + f.off as usize / 8;
                    let last = at + (f.off + f.len).div_ceil(8) as usize;
                    let src = p.frame.get(first..last)?;
                    let n = f.dtype.bytes();
                    if f.off % 8 == 0 && f.len % 8 == 0 {
                        out.get_mut(..n)?.copy_from_slice(src);
                    } else {
                        let mut v: u64 = 0;
                        for &b in src {
                            v = (v << 8) | b as u64;
                        }
                        let shift = (src.len() * 8) as u16 - f.off % 8 - f.len;
                        v = (v >> shift) & ((1u64 << f.len) - 1);
                        out.get_mut(..n)?.copy_from_slice(&v.to_be_bytes()[8 - n..]);
                    }
                    Some(n)
                }
            }
        }
        Load::Ct(k, d, w) => k.read(p, *d, *w, out),
        Load::Fib { flags, result } => fib_load(*flags, *result, p, out),
    }
}

/// Whether the kernel keeps this value in host byte order in its registers (we keep every integer in
/// network order): what `jhash` must swap back to hash the kernel's bytes.
fn host_order(l: &Load) -> bool {
    match l {
        Load::Meta(k) => matches!(
            k.name,
            "mark"
                | "iif"
                | "oif"
                | "length"
                | "priority"
                | "skuid"
                | "skgid"
                | "iiftype"
                | "oiftype"
                | "cpu"
                | "iifgroup"
                | "oifgroup"
                | "cgroup"
                | "secmark"
        ),
        Load::Ct(k, ..) => matches!(
            k.name,
            "mark"
                | "state"
                | "status"
                | "expiration"
                | "zone"
                | "bytes"
                | "packets"
                | "avgpkt"
                | "id"
        ),
        Load::Numgen(_) | Load::Hash(_) => true,
        _ => false,
    }
}

#[inline]
pub(crate) fn apply_bin(b: &Bin, buf: &mut [u8]) {
    match b {
        Bin::Mask { and, xor } => {
            for (i, x) in buf.iter_mut().enumerate() {
                *x = (*x & and.get(i).copied().unwrap_or(0xff)) ^ xor.get(i).copied().unwrap_or(0);
            }
        }
        Bin::Shl(n) | Bin::Shr(n) => {
            let mut v: u128 = 0;
            for &x in buf.iter() {
                v = (v << 8) | x as u128;
            }
            let w = buf.len() * 8;
            v = if matches!(b, Bin::Shl(_)) {
                v << *n
            } else {
                v >> *n
            };
            if w < 128 {
                v &= (1u128 << w) - 1;
            }
            let be = v.to_be_bytes();
            let n = buf.len();
            buf.copy_from_slice(&be[16 - n..]);
        }
    }
}
