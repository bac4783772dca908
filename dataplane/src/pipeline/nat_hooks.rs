//! The NAT hooks of the packet path (the kernel's nf_nat hook functions): at PREROUTING (destination,
//! priority -100) and POSTROUTING (source, priority 100). For the first packet of a connection the nat
//! chains of the hook choose a binding (the first chain whose NAT statement applies wins; if none does,
//! the null binding); then every packet whose connection is bound gets rewritten here.

use super::*;
use crate::conntrack::{ms, status, Dir};
use crate::nat::{self, Manip, NatError, NatKind, Range};
use rules::nat_effect::NatRequest;
use std::net::{IpAddr, Ipv6Addr};

/// `NF_IP_PRI_NAT_DST` and `NF_IP_PRI_NAT_SRC`: filter chains of the same hook with a priority up to
/// these run before the NAT step, the others after it.
pub(super) const NAT_DST_PRIO: i32 = -100;
pub(super) const NAT_SRC_PRIO: i32 = 100;

/// What the rules may have changed on a packet that must survive rebuilding its context after a rewrite.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Carry {
    pub mark: u32,
    pub ct_mark: u32,
    pub ct_label: u128,
    pub ct_counted: u32,
    pub nftrace: bool,
    /// the packet's arrival time (ns), for `limit`
    pub now: u64,
}

impl Carry {
    /// Puts what rules set before into a fresh rule context.
    pub(super) fn apply(&self, p: &mut PacketCtx) {
        p.mark = self.mark;
        p.ct_mark = self.ct_mark;
        p.ct_label = self.ct_label;
        p.ct_counted = self.ct_counted;
        p.nftrace = self.nftrace;
        p.now = self.now;
    }

    pub(super) fn of(p: &PacketCtx) -> Carry {
        Carry {
            mark: p.mark,
            ct_mark: p.ct_mark,
            ct_label: p.ct_label,
            ct_counted: p.ct_counted,
            nftrace: p.nftrace,
            now: p.now,
        }
    }
}

/// Does the ruleset have nat chains on `hook` for IPv4?
pub(super) fn has_nat_chains(rs: &CompiledRuleset, hook: Hook) -> bool {
    rs.hook_chains(NfProto::Ipv4, hook)
        .iter()
        .any(|&c| rs.is_nat_chain(c))
}

fn v4_range(r: &NatRequest) -> Option<Range<Ipv4Addr>> {
    let addr = match r.addr {
        None => None,
        Some((IpAddr::V4(lo), IpAddr::V4(hi))) => Some((lo, hi)),
        Some(_) => return None,
    };
    Some(Range {
        addr,
        ports: r.ports,
        flags: r.flags,
    })
}

/// The outcome of a NAT hook.
pub(super) enum NatStep {
    /// Nothing changed.
    Same,
    /// The packet was rewritten.
    Rewritten,
    /// Drop it (counted).
    Drop,
}

/// The steering key of a reply tuple that ends on one of the box's addresses.
pub(super) fn local_flow(reply: &crate::conntrack::Tuple<Ipv4Addr>) -> hw::LocalFlow {
    let icmp = reply.is_icmp();
    hw::LocalFlow {
        local: reply.dst,
        remote: reply.src,
        local_port: if icmp { reply.sport } else { reply.dport },
        remote_port: if icmp { 0 } else { reply.sport },
        proto: reply.proto,
    }
}

impl Pipeline {
    /// A new connection whose replies come to one of the box's own addresses (masquerade, SNAT to a
    /// local address, hairpin): have its frames steered here rather than to the kernel.
    pub(super) fn steer_if_local(&mut self, idx: u32) {
        let Some(e) = self.conntrack.get_mut(idx) else {
            return;
        };
        if e.status & status::SRC_NAT == 0 || !self.fib.is_local(e.reply().dst) {
            return;
        }
        e.status |= status::STEERED;
        let flow = local_flow(&e.reply());
        self.steer.push((flow, true));
    }

    /// Is a packet for one of the box's own addresses ours to handle? Only when it belongs to a NATed
    /// connection, or may start one (a nat chain at PREROUTING can send it elsewhere).
    pub(super) fn nat_wants_local(&self, rs: &CompiledRuleset, ct: CtResult) -> bool {
        match ct {
            CtResult::New => has_nat_chains(rs, Hook::Prerouting),
            CtResult::Existing { idx, .. } | CtResult::Related { idx, .. } => self
                .conntrack
                .get(idx)
                .is_some_and(|e| e.status & status::NAT_MASK != 0),
            _ => false,
        }
    }

    /// Runs the NAT step of `hook` for one packet. `pkt_at` builds the rule context from the current frame;
    /// `out` is the egress interface and next hop (POSTROUTING).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn nat_hook(
        &mut self,
        rs: &CompiledRuleset,
        hook: Hook,
        frame: &mut [u8],
        ip: &Ipv4Info,
        ct: CtResult,
        in_port: Option<usize>,
        out: Option<(usize, Ipv4Addr)>,
        carry: Carry,
        view: Option<&CtView>,
        now: u64,
    ) -> NatStep {
        let manip = manip_of(hook);
        // Once the family has a nat chain, every new connection gets a binding at both NAT hooks, the
        // null binding where no rule gives one (the kernel registers nf_nat at all of them with the
        // first nat chain): a connection DNATed at PREROUTING gets its source binding here too, which
        // with several workers is what brings its replies to this worker.
        // a payload statement in a nat chain wrote into the packet: the caller reads it again
        let mut wrote = false;
        if ct == CtResult::New && has_any_nat_chains(rs, NfProto::Ipv4) {
            let fib = &*self.fib;
            let in_ifc = in_port.map(|p| &fib.interfaces[p]);
            let (oif, oifname) = match out {
                Some((i, _)) => (fib.interfaces[i].ifindex, fib.interfaces[i].name.as_str()),
                None => (0, ""),
            };
            let mut pkt = PacketCtx {
                frame: &mut *frame,
                nh_off: ETH_HLEN,
                th_off: ip.th_off,
                nfproto: NfProto::Ipv4,
                l4proto: ip.proto,
                len: ip.total_len as u32,
                iif: in_ifc.map_or(0, |i| i.ifindex),
                iifname: in_ifc.map_or("", |i| i.name.as_str()),
                oif,
                oifname,
                mark: carry.mark,
                ct_state: ct.state(),
                ct_mark: carry.ct_mark,
                ct_label: carry.ct_label,
                ct_view: view,
                conncount: Some(&self.conncount),
                ct_counted: carry.ct_counted,
                hook,
                nftrace: carry.nftrace,
                now: carry.now,
                fib: Some(fib),
                payload_writes: 0,
            };
            let Ok(request) = first_nat_request(rs, hook, &mut pkt, &mut self.counters) else {
                self.stats.dropped_by_rule += 1;
                return NatStep::Drop;
            };
            wrote = pkt.payload_writes != 0;
            let range = match request {
                None => None,
                Some(r) => {
                    let resolved = if wrong_hook(r.kind, manip) {
                        None
                    } else {
                        match r.kind {
                            NatKind::Snat | NatKind::Dnat => v4_range(&r),
                            // The address the route out would use as source (inet_select_addr).
                            NatKind::Masquerade => out
                                .and_then(|(i, nh)| fib.source_for(i, nh))
                                .map(|a| Range {
                                    addr: Some((a, a)),
                                    ports: r.ports,
                                    flags: r.flags,
                                }),
                            // The primary address of the interface the packet came in on (the
                            // box's own packets would go to 127.0.0.1, which sluice cannot reach).
                            NatKind::Redirect => {
                                in_ifc.and_then(|i| i.ipv4.first()).map(|&(a, _)| Range {
                                    addr: Some((a, a)),
                                    ports: r.ports,
                                    flags: r.flags,
                                })
                            }
                        }
                    };
                    match resolved {
                        Some(range) => Some(range),
                        None => {
                            self.stats.nat_no_address += 1;
                            return NatStep::Drop;
                        }
                    }
                }
            };
            match self
                .nat
                .setup(&mut self.conntrack, range.as_ref(), manip, ms(now))
            {
                Ok(()) => {
                    if range.is_some() {
                        self.stats.nat_bindings += 1;
                    }
                }
                Err(NatError::Exhausted) => {
                    self.nat_exhausted(now);
                    return NatStep::Drop;
                }
            }
        }
        let end = (ETH_HLEN + ip.total_len).min(frame.len());
        let l3 = &mut frame[ETH_HLEN..end];
        let changed = match ct {
            CtResult::New => self
                .conntrack
                .pending()
                .is_some_and(|e| nat::apply_ipv4(l3, e, Dir::Original, manip)),
            CtResult::Existing { idx, dir, .. } => self
                .conntrack
                .get(idx)
                .is_some_and(|e| nat::apply_ipv4(l3, e, dir, manip)),
            CtResult::Related { idx, dir } => {
                let done = self
                    .conntrack
                    .get(idx)
                    .is_some_and(|e| nat::icmp_error_ipv4(l3, e, dir, manip));
                if done {
                    self.stats.nat_icmp_errors += 1;
                }
                done
            }
            _ => false,
        };
        if changed || wrote {
            NatStep::Rewritten
        } else {
            NatStep::Same
        }
    }
}

/// Which address a NAT hook rewrites: the destination at PREROUTING and OUTPUT, the source at INPUT and
/// POSTROUTING (for replies: the reverse).
pub(super) fn manip_of(hook: Hook) -> Manip {
    match hook {
        Hook::Postrouting | Hook::Input => Manip::Src,
        _ => Manip::Dst,
    }
}

/// Does the family have a nat chain at any hook? Then every new connection gets bindings.
pub(super) fn has_any_nat_chains(rs: &CompiledRuleset, nfproto: NfProto) -> bool {
    [
        Hook::Prerouting,
        Hook::Input,
        Hook::Output,
        Hook::Postrouting,
    ]
    .iter()
    .any(|&h| {
        rs.hook_chains(nfproto, h)
            .iter()
            .any(|&c| rs.is_nat_chain(c))
    })
}

/// A NAT statement of the wrong kind for the hook (snat in PREROUTING): no binding.
fn wrong_hook(kind: NatKind, manip: Manip) -> bool {
    match kind {
        NatKind::Snat | NatKind::Masquerade => manip != Manip::Src,
        NatKind::Dnat | NatKind::Redirect => manip != Manip::Dst,
    }
}

/// Walks the nat chains of `hook` for the packet's family in priority order: the first NAT statement
/// that applies gives the request (`None`: the null binding); `Err` when a chain dropped the packet.
fn first_nat_request(
    rs: &CompiledRuleset,
    hook: Hook,
    pkt: &mut PacketCtx<'_>,
    counters: &mut [CounterValue],
) -> Result<Option<NatRequest>, ()> {
    for &chain in rs.hook_chains(pkt.nfproto, hook) {
        if !rs.is_nat_chain(chain) {
            continue;
        }
        let (v, r) = rs.eval_chain_nat(chain, pkt, counters);
        if v.is_drop() {
            return Err(());
        }
        if r.is_some() {
            return Ok(r);
        }
    }
    Ok(None)
}

impl Pipeline {
    /// No free port for a new connection's binding: counted, and logged at most once a second.
    fn nat_exhausted(&mut self, now: u64) {
        self.stats.nat_port_exhausted += 1;
        let quiet = self
            .last_exhausted_log
            .is_some_and(|t| now.saturating_sub(t) < 1_000_000_000);
        if !quiet {
            self.last_exhausted_log = Some(now);
            tracing::warn!(
                "nf_nat: no free port in the NAT range, dropping new flow (so far: {})",
                self.stats.nat_port_exhausted
            );
        }
    }
}

fn v6_range(r: &NatRequest) -> Option<Range<Ipv6Addr>> {
    let addr = match r.addr {
        None => None,
        Some((IpAddr::V6(lo), IpAddr::V6(hi))) => Some((lo, hi)),
        Some(_) => return None,
    };
    Some(Range {
        addr,
        ports: r.ports,
        flags: r.flags,
    })
}

/// Does the ruleset have nat chains on `hook` for IPv6?
pub(super) fn has_nat_chains6(rs: &CompiledRuleset, hook: Hook) -> bool {
    rs.hook_chains(NfProto::Ipv6, hook)
        .iter()
        .any(|&c| rs.is_nat_chain(c))
}

impl Pipeline {
    /// [`Pipeline::nat_hook`] for IPv6 (nf_nat_ipv6): the binding from the ip6/inet nat chains on a
    /// connection's first packet, then the rewrite of every packet of a bound connection (addresses,
    /// ports, ICMPv6 echo identifiers, the checksums through the pseudo-header; ICMPv6 errors about the
    /// connection get their quote rewritten the other way).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn nat_hook6(
        &mut self,
        rs: &CompiledRuleset,
        hook: Hook,
        frame: &mut [u8],
        ip: &crate::ipv6::Ipv6Info,
        ct: CtResult,
        in_port: Option<usize>,
        out: Option<(usize, Ipv6Addr)>,
        carry: Carry,
        view: Option<&CtView>,
        now: u64,
    ) -> NatStep {
        let manip = manip_of(hook);
        let mut wrote = false;
        if ct == CtResult::New && has_any_nat_chains(rs, NfProto::Ipv6) {
            let fib = &*self.fib;
            let out_ifc = out.map(|(i, _)| &fib.interfaces[i]);
            // the box's own packets have no input interface
            let Some(in_ifc) = in_port.map(|p| &fib.interfaces[p]).or(out_ifc) else {
                return NatStep::Same;
            };
            let mut pkt = super::v6::ctx6(fib, &mut *frame, ip, in_ifc, out_ifc, ct, carry, hook);
            if in_port.is_none() {
                pkt.iif = 0;
                pkt.iifname = "";
            }
            pkt.ct_view = view;
            pkt.conncount = Some(&self.conncount);
            let Ok(request) = first_nat_request(rs, hook, &mut pkt, &mut self.counters) else {
                self.stats.dropped_by_rule += 1;
                return NatStep::Drop;
            };
            wrote = pkt.payload_writes != 0;
            let range = match request {
                None => None,
                Some(r) => {
                    let resolved = if wrong_hook(r.kind, manip) {
                        None
                    } else {
                        let own = |a: Option<Ipv6Addr>| {
                            a.map(|a| Range {
                                addr: Some((a, a)),
                                ports: r.ports,
                                flags: r.flags,
                            })
                        };
                        match r.kind {
                            NatKind::Snat | NatKind::Dnat => v6_range(&r),
                            // the source address the route out would use (ipv6_dev_get_saddr)
                            NatKind::Masquerade => {
                                own(out.and_then(|(i, nh)| fib.source6_for(i, nh)))
                            }
                            // an address of the interface the packet came in on
                            NatKind::Redirect => {
                                own(in_port.and_then(|p| fib.source6_for(p, ip.src)))
                            }
                        }
                    };
                    match resolved {
                        Some(range) => Some(range),
                        None => {
                            self.stats.nat_no_address += 1;
                            return NatStep::Drop;
                        }
                    }
                }
            };
            match self
                .nat
                .setup(&mut self.conntrack6, range.as_ref(), manip, ms(now))
            {
                Ok(()) => {
                    if range.is_some() {
                        self.stats.nat_bindings += 1;
                    }
                }
                Err(NatError::Exhausted) => {
                    self.nat_exhausted(now);
                    return NatStep::Drop;
                }
            }
        }
        let end = (ETH_HLEN + ip.total_len).min(frame.len());
        let l3 = &mut frame[ETH_HLEN..end];
        let l4_at = ip.th_off.map(|t| t - ETH_HLEN);
        let changed = match ct {
            CtResult::New => self
                .conntrack6
                .pending()
                .is_some_and(|e| nat::apply_ipv6(l3, l4_at, ip.proto, e, Dir::Original, manip)),
            CtResult::Existing { idx, dir, .. } => self
                .conntrack6
                .get(idx)
                .is_some_and(|e| nat::apply_ipv6(l3, l4_at, ip.proto, e, dir, manip)),
            CtResult::Related { idx, dir } => {
                let done = l4_at.is_some_and(|at| {
                    self.conntrack6
                        .get(idx)
                        .is_some_and(|e| nat::icmp_error_ipv6(l3, at, e, dir, manip))
                });
                if done {
                    self.stats.nat_icmp_errors += 1;
                }
                done
            }
            _ => false,
        };
        if changed || wrote {
            NatStep::Rewritten
        } else {
            NatStep::Same
        }
    }

    /// [`Pipeline::nat_wants_local`] for IPv6.
    pub(super) fn nat_wants_local6(&self, rs: &CompiledRuleset, ct: CtResult) -> bool {
        match ct {
            CtResult::New => has_nat_chains6(rs, Hook::Prerouting),
            CtResult::Existing { idx, .. } | CtResult::Related { idx, .. } => self
                .conntrack6
                .get(idx)
                .is_some_and(|e| e.status & status::NAT_MASK != 0),
            _ => false,
        }
    }
}
