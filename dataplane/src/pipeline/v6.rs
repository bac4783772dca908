//! The IPv6 packet path, after the kernel's `ipv6_rcv` → PREROUTING → `ip6_route_input` → `ip6_forward`
//! → FORWARD → `ip6_output` (POSTROUTING) → `ip6_finish_output2` (neighbour discovery).
//!
//! The hooks run the base chains of the `ip6` and `inet` tables registered for NFPROTO_IPV6, by priority,
//! exactly as for IPv4 (the same [`run_hook`] and [`run_list`]); connection tracking keeps IPv6
//! connections in a table of their own ([`Pipeline::conntrack6`], the same generic `Conntrack`).
//!
//! NAT as for IPv4 at the same hook points (`nat_hook6`: nf_nat_ipv6's rewrites). With conntrack in use,
//! fragments are reassembled before PREROUTING as nf_defrag_ipv6 does ([`crate::defrag::Defrag6`]): the
//! hooks see the whole datagram, which leaves again in the pieces it came in (`finish_forward6`).
//! Not done yet, and so different from the kernel: without the exception path (`--host-tun`), replies of
//! connections NATed to one of the box's own addresses reach the kernel on live ports, not the dataplane
//! (IPv4 steers them one by one; with the exception path every frame for the box comes here); the
//! identification of the fragments sent again (kept, where the kernel picks a new one); the parameter
//! problem about a jumbo payload option (dropped, counted, no error); redirects (the kernel sends an IPv6
//! redirect when a packet leaves by the interface it came in by; sluice sends them for IPv4 only); a
//! link-local destination that is not the box's is dropped (`drop_ip6_scope`), where the kernel would
//! route it back out of its link.

use super::*;
use crate::defrag::Frag6Outcome;
use crate::fib::RouteDecision6;
use crate::ipv6::{
    self, Ipv6Info, NdRepr, ICMPV6_ADDR_UNREACH, ICMPV6_DEST_UNREACH, ICMPV6_EXC_FRAGTIME,
    ICMPV6_EXC_HOPLIMIT, ICMPV6_NOROUTE, ICMPV6_NOT_NEIGHBOUR, ICMPV6_PARAMPROB, ICMPV6_PKT_TOOBIG,
    ICMPV6_TIME_EXCEED, ICMPV6_UNK_OPTION, IPPROTO_ICMPV6, IPV6_MIN_MTU, NA_OVERRIDE, NA_ROUTER,
    NA_SOLICITED, ND_NEIGHBOUR_ADVERT, ND_NEIGHBOUR_SOLICIT, ND_REDIRECT, ND_ROUTER_SOLICIT,
};
use crate::wire::ParseError;
use std::net::IpAddr;

/// ff02::1, all nodes.
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

impl Pipeline {
    pub(super) fn ipv6(
        &mut self,
        frame: &mut [u8],
        port: usize,
        kernel_has_copy: bool,
        rs: &CompiledRuleset,
        now: u64,
    ) -> Action {
        let mut ip = match ipv6::parse_ipv6(frame, ETH_HLEN) {
            Ok(ip) => ip,
            Err(ParseError::Ipv6OptionParamProblem { pointer }) if !kernel_has_copy => {
                // ip6_tlvopt_unknown, before PREROUTING: drop and tell the sender which option
                self.stats.drop_ip6_hbh += 1;
                if let Ok(ip) = ipv6::parse_fixed_header(frame, ETH_HLEN) {
                    self.icmp6_error(
                        frame,
                        &ip,
                        Some(port),
                        ICMPV6_PARAMPROB,
                        ICMPV6_UNK_OPTION,
                        pointer as u32,
                        rs,
                        now,
                    );
                }
                return Action::Drop;
            }
            Err(e) => {
                match e {
                    ParseError::BadIpv6Options | ParseError::Ipv6OptionParamProblem { .. } => {
                        self.stats.drop_ip6_hbh += 1
                    }
                    ParseError::BadIpv6 | ParseError::BadIpv6Address => {
                        self.stats.drop_ip6_invalid += 1
                    }
                    _ => self.stats.drop_parse_error += 1,
                }
                return if kernel_has_copy {
                    Action::Consumed
                } else {
                    Action::Drop
                };
            }
        };
        if ip.chain_error.is_some() {
            self.stats.ip6_exthdr_unparsed += 1;
        }
        if ip.proto == IPPROTO_ICMPV6 {
            if let Some(ty) = ip.th_off.and_then(|t| frame.get(t)) {
                if (ND_ROUTER_SOLICIT..=ND_REDIRECT).contains(ty) {
                    return self.ndisc(frame, &ip, port, kernel_has_copy, now);
                }
            }
        }
        if kernel_has_copy {
            // copies from the tap are for neighbour discovery only
            return Action::Consumed;
        }
        let mut decision = self.fib.lookup6(ip.dst);
        if decision == RouteDecision6::Local
            && self.shares(port)
            && !has_nat_chains6(rs, Hook::Prerouting)
            && !has_nat_chains6(rs, Hook::Postrouting)
        {
            return self.local(port, kernel_has_copy);
        }
        if frame[0] & 1 == 1 && decision != RouteDecision6::Local {
            // ip6_forward: only PACKET_HOST frames are forwarded
            self.stats.drop_not_for_us += 1;
            return Action::Drop;
        }
        self.trace.begin_packet();
        let fib = &*self.fib;
        let in_ifc = &fib.interfaces[port];
        // (ingress runs once per fragment, not again for the reassembled datagram)
        if self.reassembled.is_none() && rs.ingress_chains(&in_ifc.name).next().is_some() {
            let chains: Vec<ChainId> = rs.ingress_chains(&in_ifc.name).collect();
            let mut pkt = ctx6(
                fib,
                frame,
                &ip,
                in_ifc,
                None,
                CtResult::Invalid,
                Carry {
                    now,
                    ..Carry::default()
                },
                Hook::Ingress,
            );
            let v = run_list(rs, &chains, &mut pkt, &mut self.counters, &mut self.trace);
            let wrote = pkt.payload_writes != 0;
            if v.is_drop() {
                return self.ruled_out6(v, port, &ip, rs, now, frame);
            }
            if wrote {
                let Some(i) = self.reread6(frame) else {
                    return Action::Drop;
                };
                ip = i;
                decision = self.fib.lookup6(ip.dst);
            }
        }
        // nf_defrag_ipv6 (priority -400) when conntrack is in use: hold fragments, go on with the whole
        // datagram (without its fragment header).
        if ip.frag.is_some() && self.defrag_on && self.reassembled.is_none() {
            match self.defrag6.add(frame, &ip, now, &mut self.stats) {
                Frag6Outcome::Held => return Action::Consumed,
                Frag6Outcome::Dropped => return Action::Drop,
                Frag6Outcome::Pass => {}
                Frag6Outcome::Whole(whole) => {
                    let mut buf = whole.frame;
                    let len = buf.len();
                    self.reassembled = Some(whole.frag_max_size);
                    self.frag6_id = ip.frag.map_or(0, |f| f.id);
                    self.frag_pieces = whole.pieces;
                    let action = self.ipv6(&mut buf, port, kernel_has_copy, rs, now);
                    self.reassembled = None;
                    return match action {
                        Action::Forward(out) => {
                            // finish_forward6 fragments what is larger than the fragments were;
                            // a datagram that came as one fragment leaves whole
                            buf.truncate(len);
                            self.emitted.push((out, buf));
                            Action::Consumed
                        }
                        a => a,
                    };
                }
            }
        }
        // PREROUTING chains before conntrack (priority < -200) see no ct state.
        let fib = &*self.fib;
        let in_ifc = &fib.interfaces[port];
        let mut pkt = ctx6(
            fib,
            frame,
            &ip,
            in_ifc,
            None,
            CtResult::Invalid,
            Carry {
                now,
                ..Carry::default()
            },
            Hook::Prerouting,
        );
        let v = run_hook(
            rs,
            Hook::Prerouting,
            &mut pkt,
            &mut self.counters,
            &mut self.trace,
            i32::MIN,
            NF_IP_PRI_CONNTRACK - 1,
        );
        let carry = Carry::of(&pkt);
        let wrote = pkt.payload_writes != 0;
        let untracked = pkt.ct_state == ct_state::UNTRACKED;
        if v.is_drop() {
            return self.ruled_out6(v, port, &ip, rs, now, frame);
        }
        if wrote {
            let Some(i) = self.reread6(frame) else {
                return Action::Drop;
            };
            ip = i;
            decision = self.fib.lookup6(ip.dst);
        }
        // `notrack` in a chain before conntrack
        let ct = if untracked {
            CtResult::Untracked
        } else {
            self.track6(frame, &ip, now)
        };
        if ct == CtResult::TableFull {
            return Action::Drop;
        }
        if decision == RouteDecision6::Local && self.shares(port) && !self.nat_wants_local6(rs, ct)
        {
            self.conntrack6.abandon();
            return self.local(port, kernel_has_copy);
        }
        // What the rules may read and set of the connection (as for IPv4): its mark, labels and
        // `ct count`s, and when a rule reads them the rest of the entry.
        let carry = super::ct_carry_of(&self.conntrack6, ct, carry);
        let mut view = CtView::default();
        let use_view = rs.uses_ct_view() && super::ct_view_of(&self.conntrack6, ct, now, &mut view);
        let mut view = use_view.then_some(view);
        let fib = &*self.fib;
        let in_ifc = &fib.interfaces[port];
        let mut pkt = ctx6(fib, frame, &ip, in_ifc, None, ct, carry, Hook::Prerouting);
        pkt.ct_view = view.as_ref();
        pkt.conncount = Some(&self.conncount);
        if self.trace.active() {
            self.trace.note(
                &pkt,
                Event::Conntrack {
                    state: pkt.ct_state,
                },
            );
        }
        let v = run_hook(
            rs,
            Hook::Prerouting,
            &mut pkt,
            &mut self.counters,
            &mut self.trace,
            NF_IP_PRI_CONNTRACK,
            NAT_DST_PRIO,
        );
        let wrote = pkt.payload_writes != 0;
        if v.is_drop() {
            return self.ruled_out6(v, port, &ip, rs, now, frame);
        }
        let carry = Carry::of(&pkt);
        if wrote {
            let Some(i) = self.reread6(frame) else {
                return Action::Drop;
            };
            ip = i;
            decision = self.fib.lookup6(ip.dst);
        }
        let step = self.nat_hook6(
            rs,
            Hook::Prerouting,
            frame,
            &ip,
            ct,
            Some(port),
            None,
            carry,
            view.as_ref(),
            now,
        );
        match step {
            NatStep::Drop => return Action::Drop,
            NatStep::Rewritten => {
                // the destination moved: route on the new one
                let Some(i) = self.reread6(frame) else {
                    return Action::Drop;
                };
                ip = i;
                decision = self.fib.lookup6(ip.dst);
            }
            NatStep::Same => {}
        }
        if let Some(v) = view.as_mut() {
            super::ct_view_of(&self.conntrack6, ct, now, v);
        }
        if decision == RouteDecision6::Local && self.shares(port) {
            self.conntrack6.abandon();
            return self.local(port, kernel_has_copy);
        }
        let fib = &*self.fib;
        let in_ifc = &fib.interfaces[port];
        let mut pkt = ctx6(fib, frame, &ip, in_ifc, None, ct, carry, Hook::Prerouting);
        pkt.ct_view = view.as_ref();
        pkt.conncount = Some(&self.conncount);
        let v = run_hook(
            rs,
            Hook::Prerouting,
            &mut pkt,
            &mut self.counters,
            &mut self.trace,
            NAT_DST_PRIO + 1,
            i32::MAX,
        );
        let wrote = pkt.payload_writes != 0;
        if v.is_drop() {
            return self.ruled_out6(v, port, &ip, rs, now, frame);
        }
        let carry = Carry::of(&pkt);
        if wrote {
            // ip6_rcv_finish routes after the whole PREROUTING hook: on what the rules wrote
            let Some(i) = self.reread6(frame) else {
                return Action::Drop;
            };
            ip = i;
            decision = self.fib.lookup6(ip.dst);
        }
        let (iface, next_hop) = match decision {
            RouteDecision6::Forward { iface, next_hop } => (iface, next_hop),
            RouteDecision6::Local => {
                // No kernel behind this port: INPUT is ours, and nothing listens after it.
                let fib = &*self.fib;
                let mut pkt = ctx6(
                    fib,
                    frame,
                    &ip,
                    &fib.interfaces[port],
                    None,
                    ct,
                    carry,
                    Hook::Input,
                );
                pkt.ct_view = view.as_ref();
                pkt.conncount = Some(&self.conncount);
                let host = self.config.host_path;
                let v = run_hook(
                    rs,
                    Hook::Input,
                    &mut pkt,
                    &mut self.counters,
                    &mut self.trace,
                    i32::MIN,
                    if host { NAT_SRC_PRIO } else { i32::MAX },
                );
                let carry = Carry::of(&pkt);
                self.conntrack6
                    .set_rule_state(ct, carry.ct_mark, carry.ct_label, carry.ct_counted);
                if v.is_drop() {
                    return self.ruled_out6(v, port, &ip, rs, now, frame);
                }
                if host {
                    // INPUT's NAT (see the IPv4 path), the rest of INPUT, then the kernel
                    let v6view = view.as_ref();
                    match self.nat_hook6(
                        rs,
                        Hook::Input,
                        frame,
                        &ip,
                        ct,
                        Some(port),
                        None,
                        carry,
                        v6view,
                        now,
                    ) {
                        NatStep::Drop => return Action::Drop,
                        NatStep::Rewritten => {
                            let Some(i) = self.reread6(frame) else {
                                return Action::Drop;
                            };
                            ip = i;
                        }
                        NatStep::Same => {}
                    }
                    let fib = &*self.fib;
                    let mut pkt = ctx6(
                        fib,
                        frame,
                        &ip,
                        &fib.interfaces[port],
                        None,
                        ct,
                        carry,
                        Hook::Input,
                    );
                    pkt.ct_view = view.as_ref();
                    pkt.conncount = Some(&self.conncount);
                    let v = run_hook(
                        rs,
                        Hook::Input,
                        &mut pkt,
                        &mut self.counters,
                        &mut self.trace,
                        NAT_SRC_PRIO + 1,
                        i32::MAX,
                    );
                    let carry = Carry::of(&pkt);
                    self.conntrack6.set_rule_state(
                        ct,
                        carry.ct_mark,
                        carry.ct_label,
                        carry.ct_counted,
                    );
                    if v.is_drop() {
                        return self.ruled_out6(v, port, &ip, rs, now, frame);
                    }
                    if self.conntrack6.confirm(ct, now, &mut self.stats) == Confirm::InsertFailed {
                        return Action::Drop;
                    }
                    return self.deliver_to_host(frame, ip.total_len);
                }
                self.conntrack6.abandon();
                return self.local(port, kernel_has_copy);
            }
            RouteDecision6::NotForwardable => {
                self.conntrack6.abandon();
                self.stats.drop_ip6_scope += 1;
                return Action::Drop;
            }
            RouteDecision6::Unreachable => {
                self.conntrack6.abandon();
                self.stats.drop_no_route += 1;
                self.icmp6_error(
                    frame,
                    &ip,
                    Some(port),
                    ICMPV6_DEST_UNREACH,
                    ICMPV6_NOROUTE,
                    0,
                    rs,
                    now,
                );
                return Action::Drop;
            }
        };
        // ip6_forward's checks, in its order.
        if ip.hop_limit <= 1 {
            self.conntrack6.abandon();
            self.stats.drop_hop_limit += 1;
            self.icmp6_error(
                frame,
                &ip,
                Some(port),
                ICMPV6_TIME_EXCEED,
                ICMPV6_EXC_HOPLIMIT,
                0,
                rs,
                now,
            );
            return Action::Drop;
        }
        // "This check is security critical": never forward an unspecified or link-local source; the kernel
        // skips it where it would send a redirect instead (out by the interface the packet came in by),
        // and so does sluice (which sends no redirects).
        if iface != port && ip.src.is_unspecified() {
            self.conntrack6.abandon();
            self.stats.drop_ip6_scope += 1;
            return Action::Drop;
        }
        if iface != port && is_link_local(ip.src) {
            self.conntrack6.abandon();
            self.stats.drop_ip6_scope += 1;
            self.icmp6_error(
                frame,
                &ip,
                Some(port),
                ICMPV6_DEST_UNREACH,
                ICMPV6_NOT_NEIGHBOUR,
                0,
                rs,
                now,
            );
            return Action::Drop;
        }
        let mtu = (self.fib.interfaces[iface].mtu as usize).max(IPV6_MIN_MTU);
        // ip6_pkt_too_big: a reassembled datagram is too big only if one of its fragments was
        if ip.total_len > mtu && self.reassembled.is_none_or(|max| max > mtu) {
            // Routers never fragment IPv6.
            self.conntrack6.abandon();
            self.stats.drop_too_big6 += 1;
            self.icmp6_error(
                frame,
                &ip,
                Some(port),
                ICMPV6_PKT_TOOBIG,
                0,
                mtu as u32,
                rs,
                now,
            );
            return Action::Drop;
        }
        // The hop limit is decremented before FORWARD: rules there see the new value.
        ipv6::decrement_hop_limit(frame, ip.nh_off);
        ip.hop_limit -= 1;
        let fib = &*self.fib;
        let (in_ifc, out_ifc) = (&fib.interfaces[port], &fib.interfaces[iface]);
        let mut pkt = ctx6(
            fib,
            frame,
            &ip,
            in_ifc,
            Some(out_ifc),
            ct,
            carry,
            Hook::Forward,
        );
        pkt.ct_view = view.as_ref();
        pkt.conncount = Some(&self.conncount);
        let v = run_hook(
            rs,
            Hook::Forward,
            &mut pkt,
            &mut self.counters,
            &mut self.trace,
            i32::MIN,
            i32::MAX,
        );
        if v.is_drop() {
            return self.ruled_out6(v, port, &ip, rs, now, frame);
        }
        let v = run_hook(
            rs,
            Hook::Postrouting,
            &mut pkt,
            &mut self.counters,
            &mut self.trace,
            i32::MIN,
            NAT_SRC_PRIO,
        );
        let carry = Carry::of(&pkt);
        let wrote = pkt.payload_writes != 0;
        if v.is_drop() {
            self.stats.dropped_by_rule += 1;
            self.conntrack6.abandon();
            return Action::Drop;
        }
        if wrote {
            let Some(i) = self.reread6(frame) else {
                return Action::Drop;
            };
            ip = i;
        }
        let step = self.nat_hook6(
            rs,
            Hook::Postrouting,
            frame,
            &ip,
            ct,
            Some(port),
            Some((iface, next_hop)),
            carry,
            view.as_ref(),
            now,
        );
        match step {
            NatStep::Drop => return Action::Drop,
            NatStep::Rewritten => {
                let Some(i) = self.reread6(frame) else {
                    return Action::Drop;
                };
                ip = i;
            }
            NatStep::Same => {}
        }
        if let Some(v) = view.as_mut() {
            super::ct_view_of(&self.conntrack6, ct, now, v);
        }
        let fib = &*self.fib;
        let (in_ifc, out_ifc) = (&fib.interfaces[port], &fib.interfaces[iface]);
        let mut pkt = ctx6(
            fib,
            frame,
            &ip,
            in_ifc,
            Some(out_ifc),
            ct,
            carry,
            Hook::Postrouting,
        );
        pkt.ct_view = view.as_ref();
        pkt.conncount = Some(&self.conncount);
        let v = run_hook(
            rs,
            Hook::Postrouting,
            &mut pkt,
            &mut self.counters,
            &mut self.trace,
            NAT_SRC_PRIO + 1,
            i32::MAX,
        );
        let carry = Carry::of(&pkt);
        let wrote = pkt.payload_writes != 0;
        if v.is_drop() {
            self.stats.dropped_by_rule += 1;
            self.conntrack6.abandon();
            return Action::Drop;
        }
        if wrote {
            let Some(i) = self.reread6(frame) else {
                return Action::Drop;
            };
            ip = i;
        }
        self.conntrack6
            .set_rule_state(ct, carry.ct_mark, carry.ct_label, carry.ct_counted);
        if self.conntrack6.confirm(ct, now, &mut self.stats) == Confirm::InsertFailed {
            return Action::Drop;
        }
        self.finish_forward6(frame, &ip, iface, next_hop, now)
    }

    /// Conntrack for an IPv6 packet. A chain that cannot be walked gives no protocol to track
    /// (`ipv6_get_l4proto` fails: no ct, `ct state invalid`).
    fn track6(&mut self, frame: &[u8], ip: &Ipv6Info, now: u64) -> CtResult {
        if ip.chain_error.is_some() {
            self.stats.ct_invalid += 1;
            return CtResult::Invalid;
        }
        let l4 = ip
            .th_off
            .and_then(|o| frame.get(o..ip.nh_off + ip.total_len))
            .unwrap_or(&[]);
        let pkt = CtPkt {
            src: ip.src,
            dst: ip.dst,
            proto: ip.proto,
            l4,
            len: ip.total_len as u32,
            fragment: ip.is_fragment(),
        };
        self.conntrack6.track(&pkt, 0, now, &mut self.stats)
    }

    fn ruled_out6(
        &mut self,
        v: Verdict,
        port: usize,
        ip: &Ipv6Info,
        rs: &CompiledRuleset,
        now: u64,
        frame: &[u8],
    ) -> Action {
        self.conntrack6.abandon();
        if v == Verdict::Stolen {
            return Action::Consumed;
        }
        self.stats.dropped_by_rule += 1;
        if let Verdict::Reject(kind) = v {
            self.reject_v6(kind, frame, ip, port, rs, now);
        }
        Action::Drop
    }

    /// Sends what `reject` asks for over IPv6, as nf_send_unreach6 / nf_send_reset6 do.
    fn reject_v6(
        &mut self,
        kind: RejectKind,
        frame: &[u8],
        ip: &Ipv6Info,
        port: usize,
        rs: &CompiledRuleset,
        now: u64,
    ) {
        let code = match kind {
            RejectKind::TcpReset => {
                match ipv6::tcp_reset6(frame, ip) {
                    Some(rst) => {
                        self.stats.reject_tcp_reset += 1;
                        self.local_out_v6(rst, Some(port), rs, now);
                    }
                    None => self.stats.reject_no_reply += 1,
                }
                return;
            }
            RejectKind::Icmpv6(c) => c,
            RejectKind::Icmpx(c) => icmp::icmpx_to_icmpv6(c),
            // `reject with icmp` matches IPv4 only (the compiler adds the dependency)
            RejectKind::Icmp(_) => return,
        };
        if !ipv6::transport_checksum_ok_v6(frame, ip) {
            self.stats.reject_no_reply += 1;
            return;
        }
        self.icmp6_error(frame, ip, Some(port), ICMPV6_DEST_UNREACH, code, 0, rs, now);
    }

    /// Sends an ICMPv6 error about the packet in `frame` back to its sender, as `icmp6_send` does: from the
    /// packet's destination when that is the box's, else from the address of the interface the error leaves
    /// by; rate limited per destination and globally except packet-too-big (not in the default
    /// `net.ipv6.icmp.ratemask`).
    #[allow(clippy::too_many_arguments)]
    fn icmp6_error(
        &mut self,
        frame: &[u8],
        ip: &Ipv6Info,
        in_port: Option<usize>,
        ty: u8,
        code: u8,
        info: u32,
        rs: &CompiledRuleset,
        now: u64,
    ) {
        if !ipv6::icmp6_may_answer(frame, ip, ty, code) {
            return;
        }
        let Some((iface, _)) = self.route_out6(ip.src, in_port) else {
            return;
        };
        let src = if self.fib.is_own6(ip.dst) {
            ip.dst
        } else {
            match self.fib.source6_for(iface, ip.src) {
                Some(s) => s,
                None => return,
            }
        };
        // icmpv6_xrlim_allow: "give more bandwidth to wider prefixes" (the per-destination interval
        // shifted right by (128 - prefix length of the route back) / 32).
        // Types outside net.ipv6.icmp.ratemask (packet too big by default) are not limited at all.
        let mut limit = self.config.icmp.clone();
        let plen = self.fib.route6(ip.src).map_or(128, |r| r.prefix);
        limit.per_dest_ns = limit.per_dest6_ns >> ((128 - plen as u32) >> 5);
        if ty != ICMPV6_PKT_TOOBIG
            && limit.limits_icmp6_type(ty)
            && !self.icmp_limit.allow(&limit, IpAddr::V6(ip.src), now)
        {
            self.stats.icmp_rate_limited += 1;
            return;
        }
        let err = ipv6::icmp6_error(frame, ip, src, ty, code, info);
        self.stats.icmp6_errors_sent += 1;
        self.local_out_v6(err, in_port, rs, now);
    }

    /// Where a packet the appliance emits to `dst` leaves: by the FIB, or for a link-local destination
    /// (which the FIB does not route) by `scope_port`, the interface the packet answered came in by.
    pub(super) fn route_out6(
        &self,
        dst: Ipv6Addr,
        scope_port: Option<usize>,
    ) -> Option<(usize, Ipv6Addr)> {
        match self.fib.lookup6(dst) {
            RouteDecision6::Forward { iface, next_hop } => Some((iface, next_hop)),
            RouteDecision6::NotForwardable if is_link_local(dst) => scope_port.map(|p| (p, dst)),
            _ => None,
        }
    }

    /// The path of an IPv6 packet the appliance emits (reject replies, ICMPv6 errors): route, OUTPUT with
    /// conntrack, POSTROUTING, confirm, neighbour. Such packets never cause further replies.
    /// `scope_port` is the interface for a link-local destination.
    pub fn local_out_v6(
        &mut self,
        frame: Vec<u8>,
        scope_port: Option<usize>,
        rs: &CompiledRuleset,
        now: u64,
    ) {
        self.local_out_v6_via(frame, scope_port, None, true, rs, now);
    }

    /// [`Pipeline::local_out_v6`] to a given interface and next hop (`via`), and without conntrack
    /// when not `tracked` (a `dup` copy: the chains see `ct state untracked`).
    pub(crate) fn local_out_v6_via(
        &mut self,
        mut frame: Vec<u8>,
        scope_port: Option<usize>,
        via: Option<(usize, Ipv6Addr)>,
        tracked: bool,
        rs: &CompiledRuleset,
        now: u64,
    ) {
        let Ok(mut ip) = ipv6::parse_ipv6(&frame, ETH_HLEN) else {
            return;
        };
        let Some((mut iface, mut next_hop)) = via.or_else(|| self.route_out6(ip.dst, scope_port))
        else {
            self.stats.local_out_no_route += 1;
            return;
        };
        self.trace.begin_packet();
        let fib = self.fib.clone();
        let conncount = self.conncount.clone();
        let mut carry = Carry {
            now,
            ..Carry::default()
        };
        // One stage of OUTPUT/POSTROUTING (see local_out_v4_via).
        macro_rules! stage {
            ($hook:expr, $ct:expr, $state:expr, $lo:expr, $hi:expr) => {{
                let out_ifc = &fib.interfaces[iface];
                let mut pkt = ctx6(
                    &fib,
                    &mut frame,
                    &ip,
                    out_ifc,
                    Some(out_ifc),
                    $ct,
                    carry,
                    $hook,
                );
                pkt.iif = 0;
                pkt.iifname = "";
                pkt.ct_state = $state;
                pkt.conncount = Some(&conncount);
                let v = run_hook(
                    rs,
                    $hook,
                    &mut pkt,
                    &mut self.counters,
                    &mut self.trace,
                    $lo,
                    $hi,
                );
                carry = Carry::of(&pkt);
                (v, pkt.ct_state, pkt.payload_writes != 0)
            }};
        }
        let before = if tracked {
            ct_state::INVALID
        } else {
            ct_state::UNTRACKED
        };
        let (v, state, wrote) = stage!(
            Hook::Output,
            CtResult::Invalid,
            before,
            i32::MIN,
            NF_IP_PRI_CONNTRACK - 1
        );
        if v.is_drop() {
            self.stats.local_out_dropped_by_rule += 1;
            return;
        }
        if wrote {
            let Some(i) = self.reread6(&frame) else {
                return;
            };
            ip = i;
        }
        let mut ct = CtResult::Untracked;
        if state != ct_state::UNTRACKED {
            let l4 = ip
                .th_off
                .and_then(|o| frame.get(o..ip.nh_off + ip.total_len))
                .unwrap_or(&[]);
            let cp = CtPkt {
                src: ip.src,
                dst: ip.dst,
                proto: ip.proto,
                l4,
                len: ip.total_len as u32,
                fragment: false,
            };
            ct = self.conntrack6.track(&cp, 0, now, &mut self.stats);
            if ct == CtResult::TableFull {
                return;
            }
        }
        carry = ct_carry_of(&self.conntrack6, ct, carry);
        if self.trace.active() {
            let out_ifc = &fib.interfaces[iface];
            let pkt = ctx6(
                &fib,
                &mut frame,
                &ip,
                out_ifc,
                Some(out_ifc),
                ct,
                carry,
                Hook::Output,
            );
            self.trace.note(
                &pkt,
                Event::Conntrack {
                    state: pkt.ct_state,
                },
            );
        }
        let dropped = |p: &mut Pipeline| {
            p.conntrack6.abandon();
            p.stats.local_out_dropped_by_rule += 1;
        };
        for step in LOCAL_OUT_STEPS {
            match step {
                LocalOutStep::Chains(hook, lo, hi) => {
                    let (v, _, wrote) = stage!(hook, ct, ct.state(), lo, hi);
                    if v.is_drop() {
                        return dropped(self);
                    }
                    if wrote {
                        let Some(i) = self.reread6(&frame) else {
                            return self.conntrack6.abandon();
                        };
                        ip = i;
                    }
                }
                LocalOutStep::Nat(hook) => {
                    let out = Some((iface, next_hop));
                    match self.nat_hook6(rs, hook, &mut frame, &ip, ct, None, out, carry, None, now)
                    {
                        NatStep::Drop => return self.conntrack6.abandon(),
                        NatStep::Rewritten => {
                            let Some(i) = self.reread6(&frame) else {
                                return self.conntrack6.abandon();
                            };
                            ip = i;
                            if hook == Hook::Output && via.is_none() {
                                let Some(r) = self.route_out6(ip.dst, scope_port) else {
                                    self.conntrack6.abandon();
                                    self.stats.local_out_no_route += 1;
                                    return;
                                };
                                (iface, next_hop) = r;
                            }
                        }
                        NatStep::Same => {}
                    }
                }
            }
        }
        self.conntrack6
            .set_rule_state(ct, carry.ct_mark, carry.ct_label, carry.ct_counted);
        if self.conntrack6.confirm(ct, now, &mut self.stats) == Confirm::InsertFailed {
            return;
        }
        let out_mac = fib.interfaces[iface].mac;
        frame[6..12].copy_from_slice(&out_mac);
        let frames = match self.host_pieces.take() {
            // a datagram the kernel sent in fragments: in those pieces again (ip6_fragment)
            Some(hp) => {
                let mtu = fib.interfaces[iface].mtu as usize;
                if ip.total_len > hp.max || ip.total_len > mtu {
                    let end = ETH_HLEN + ip.total_len;
                    let Some(f) = crate::defrag::refragment_ipv6(
                        &frame[..end],
                        &ip,
                        &hp.pieces,
                        hp.max.max(IPV6_MIN_MTU),
                        hp.id6,
                    ) else {
                        self.stats.drop_too_big6 += 1;
                        return;
                    };
                    self.stats.fragments6_created += f.len() as u64;
                    f
                } else {
                    vec![frame]
                }
            }
            None => vec![frame],
        };
        for mut frame in frames {
            match self.neigh6.lookup(iface, next_hop, now) {
                Some(mac) => {
                    frame[0..6].copy_from_slice(&mac);
                    self.stats.local_out_sent += 1;
                    self.emitted.push((iface, frame));
                }
                None => match self.neigh6.enqueue(iface, next_hop, &frame, now) {
                    Miss::QueuedSendRequest => {
                        self.send_ns(iface, next_hop);
                        self.stats.local_out_sent += 1;
                    }
                    Miss::Queued => self.stats.local_out_sent += 1,
                    Miss::Overflow => self.stats.neigh_pending_overflow += 1,
                    Miss::Failed => self.stats.neigh_failed += 1,
                },
            }
        }
    }

    fn finish_forward6(
        &mut self,
        frame: &mut [u8],
        ip: &Ipv6Info,
        iface: usize,
        next_hop: Ipv6Addr,
        now: u64,
    ) -> Action {
        let out_mac = self.fib.interfaces[iface].mac;
        frame[6..12].copy_from_slice(&out_mac);
        // a reassembled datagram larger than its largest fragment leaves in the pieces it came in
        // (__ip6_finish_output → ip6_fragment, its fast path over the fragment list), or cut to
        // frag_max_size (at least the IPv6 minimum MTU) where they no longer fit
        if let Some(max) = self.reassembled {
            let mtu = self.fib.interfaces[iface].mtu as usize;
            if ip.total_len > max || ip.total_len > mtu {
                let end = ETH_HLEN + ip.total_len;
                let Some(frags) = crate::defrag::refragment_ipv6(
                    &frame[..end],
                    ip,
                    &self.frag_pieces,
                    max.max(IPV6_MIN_MTU),
                    self.frag6_id,
                ) else {
                    self.stats.drop_too_big6 += 1;
                    return Action::Drop;
                };
                self.stats.fragments6_created += frags.len() as u64;
                self.stats.forwarded6 += 1;
                let (neigh, out, stats) = (&mut self.neigh6, &mut self.emitted, &mut self.stats);
                if send_pieces(neigh, out, stats, iface, next_hop, frags, now) {
                    self.send_ns(iface, next_hop);
                }
                return Action::Consumed;
            }
        }
        match self.neigh6.lookup(iface, next_hop, now) {
            Some(mac) => {
                frame[0..6].copy_from_slice(&mac);
                self.stats.forwarded6 += 1;
                Action::Forward(iface)
            }
            None => {
                let end = ETH_HLEN + ip.total_len;
                match self.neigh6.enqueue(iface, next_hop, &frame[..end], now) {
                    Miss::QueuedSendRequest => {
                        self.send_ns(iface, next_hop);
                        self.stats.forwarded6 += 1;
                    }
                    Miss::Queued => self.stats.forwarded6 += 1,
                    Miss::Overflow => {
                        self.stats.neigh_pending_overflow += 1;
                        return Action::Drop;
                    }
                    Miss::Failed => {
                        self.stats.neigh_failed += 1;
                        return Action::Drop;
                    }
                }
                Action::Consumed
            }
        }
    }

    /// A neighbour solicitation for `target` on `iface`, to its solicited-node address.
    pub(super) fn send_ns(&mut self, iface: usize, target: Ipv6Addr) {
        let Some(ifc) = self.fib.interfaces.get(iface) else {
            return;
        };
        let Some(src) = self.fib.source6_for(iface, target) else {
            return;
        };
        let (group, mac) = ipv6::solicited_node(target);
        let ns = NdRepr {
            ty: ND_NEIGHBOUR_SOLICIT,
            target,
            lladdr: Some(ifc.mac),
            flags: 0,
        };
        let f = ns.emit_frame(ifc.mac, mac, src, group);
        self.emitted.push((iface, f));
        self.stats.ndp_solicits_sent += 1;
    }

    /// Neighbour discovery: learn from NS/NA (`ndisc_recv_ns`, `ndisc_recv_na`), answer NS for the box's
    /// own addresses where the kernel does not share the port. Router solicitations, advertisements and
    /// redirects are the kernel's (or nobody's).
    fn ndisc(
        &mut self,
        frame: &[u8],
        ip: &Ipv6Info,
        port: usize,
        kernel_has_copy: bool,
        now: u64,
    ) -> Action {
        let theirs = kernel_has_copy || self.shares(port);
        let ty = ip.th_off.and_then(|t| frame.get(t)).copied().unwrap_or(0);
        if ty != ND_NEIGHBOUR_SOLICIT && ty != ND_NEIGHBOUR_ADVERT {
            if theirs {
                return Action::Consumed;
            }
            self.stats.local_no_path += 1;
            return Action::Drop;
        }
        let nd = match NdRepr::parse(frame, ip) {
            Ok(nd) => nd,
            Err(_) => {
                self.stats.ndp_bad += 1;
                return if theirs {
                    Action::Consumed
                } else {
                    Action::Drop
                };
            }
        };
        let fib = &*self.fib;
        let ifc = &fib.interfaces[port];
        let own = fib.ipv6_addrs(port).iter().any(|(a, _)| *a == nd.target);
        let (learn_ip, learn_mac) = if ty == ND_NEIGHBOUR_SOLICIT {
            // the sender, when it asks about us (not during duplicate address detection)
            let ok = own && !ip.src.is_unspecified();
            (ok.then_some(ip.src), nd.lladdr)
        } else {
            // an advertisement updates an entry we have (we made it when we solicited)
            let ok = self.neigh6.knows(port, nd.target);
            (ok.then_some(nd.target), nd.lladdr)
        };
        if let (Some(who), Some(mac)) = (learn_ip, learn_mac) {
            self.stats.ndp_learned += 1;
            let waiting = self.neigh6.learn(port, who, mac, now);
            let own_mac = ifc.mac;
            for mut f in waiting {
                f[0..6].copy_from_slice(&mac);
                f[6..12].copy_from_slice(&own_mac);
                self.emitted.push((port, f));
            }
        }
        if ty == ND_NEIGHBOUR_SOLICIT && own && !theirs {
            let dad = ip.src.is_unspecified();
            let (dst, eth_dst, flags) = if dad {
                (
                    ALL_NODES,
                    ipv6::multicast_mac(ALL_NODES),
                    NA_ROUTER | NA_OVERRIDE,
                )
            } else {
                let mac = nd
                    .lladdr
                    .unwrap_or_else(|| frame[6..12].try_into().unwrap());
                (ip.src, mac, NA_ROUTER | NA_SOLICITED | NA_OVERRIDE)
            };
            let ifc = &self.fib.interfaces[port];
            let na = NdRepr {
                ty: ND_NEIGHBOUR_ADVERT,
                target: nd.target,
                lladdr: Some(ifc.mac),
                flags,
            };
            let f = na.emit_frame(ifc.mac, eth_dst, nd.target, dst);
            self.emitted.push((port, f));
            self.stats.ndp_adverts_sent += 1;
        }
        Action::Consumed
    }

    /// IPv6 neighbour timers: retransmit solicitations, and answer the packets of a neighbour that never
    /// answered with address unreachable (`ndisc_error_report`).
    pub(super) fn on_timer6(&mut self, now: u64, rs: &CompiledRuleset) {
        // datagrams whose fragments did not all come in time: the first fragment, if it came, is
        // answered with time exceeded (ip6frag_expire_frag_queue)
        for first in self.defrag6.expire(now, &mut self.stats) {
            if let Ok(ip) = ipv6::parse_ipv6(&first, ETH_HLEN) {
                self.icmp6_error(
                    &first,
                    &ip,
                    None,
                    ICMPV6_TIME_EXCEED,
                    ICMPV6_EXC_FRAGTIME,
                    0,
                    rs,
                    now,
                );
            }
        }
        let mut requests = Vec::new();
        let mut lost = Vec::new();
        let failed = self.neigh6.on_timer(
            now,
            |iface, ip| requests.push((iface, ip)),
            |iface, f| lost.push((iface, f)),
        );
        self.stats.neigh_failed += failed as u64;
        for (iface, ip) in requests {
            self.send_ns(iface, ip);
        }
        for (_, mut f) in lost {
            f[0] = 0; // it was unicast to us
            if let Ok(ip) = ipv6::parse_ipv6(&f, ETH_HLEN) {
                self.icmp6_error(
                    &f,
                    &ip,
                    None,
                    ICMPV6_DEST_UNREACH,
                    ICMPV6_ADDR_UNREACH,
                    0,
                    rs,
                    now,
                );
            }
        }
    }
}

impl Pipeline {
    /// The IPv6 headers again after a rule wrote into them; `None` (counted) when they no longer parse.
    fn reread6(&mut self, frame: &[u8]) -> Option<Ipv6Info> {
        match ipv6::parse_ipv6(frame, ETH_HLEN) {
            Ok(ip) => Some(ip),
            Err(_) => {
                self.stats.drop_parse_error += 1;
                None
            }
        }
    }
}

fn is_link_local(a: Ipv6Addr) -> bool {
    a.segments()[0] & 0xffc0 == 0xfe80
}

/// The rule context of an IPv6 packet.
pub(super) fn ctx6<'a>(
    fib: &'a crate::fib::Fib,
    frame: &'a mut [u8],
    ip: &Ipv6Info,
    in_ifc: &'a crate::fib::InterfaceConfig,
    out_ifc: Option<&'a crate::fib::InterfaceConfig>,
    ct: CtResult,
    carry: Carry,
    hook: Hook,
) -> PacketCtx<'a> {
    PacketCtx {
        frame,
        nh_off: ip.nh_off,
        th_off: ip.th_off,
        nfproto: NfProto::Ipv6,
        l4proto: ip.proto,
        len: ip.total_len as u32,
        iif: in_ifc.ifindex,
        iifname: &in_ifc.name,
        oif: out_ifc.map_or(0, |o| o.ifindex),
        oifname: out_ifc.map_or("", |o| o.name.as_str()),
        mark: carry.mark,
        ct_state: ct.state(),
        ct_mark: carry.ct_mark,
        // the entry view and the shared `ct count` counts are set by the caller after conntrack
        ct_label: carry.ct_label,
        ct_view: None,
        conncount: None,
        ct_counted: carry.ct_counted,
        hook,
        nftrace: carry.nftrace,
        now: carry.now,
        fib: Some(fib),
        payload_writes: 0,
    }
}
