//! The per-packet path: link layer, ARP, conntrack, the netfilter hooks, routing, neighbours, rewrite.
//!
//! Pure logic over byte buffers: the caller passes each frame, the time and the live ruleset, and gets an
//! [`Action`]; frames the pipeline generates itself (ARP, released packets) wait in [`Pipeline::take_emitted`].

use crate::conntrack::{Confirm, Conntrack, CtPkt, CtResult, Sysctls};
use crate::fib::{Fib, RouteDecision};
use crate::icmp::{
    self, IcmpLimiter, ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED, ICMP_HOST_UNREACH, ICMP_NET_UNREACH,
    ICMP_TIME_EXCEEDED,
};
use crate::neigh::{Miss, NeighTable};
use crate::stats::WorkerStats;
use crate::trace::{Event, Trace};
use crate::wire::{self, ArpRepr, Ipv4Info, ARP_REPLY, ARP_REQUEST, BROADCAST_MAC, ETH_HLEN};
use rules::eval::{ct_state, ConnCounts, CtTupleView, CtView, RejectKind};
use rules::{ChainId, CompiledRuleset, CounterValue, Hook, NfProto, PacketCtx, Verdict};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

mod dup;
mod nat_hooks;
mod v6;
use nat_hooks::{has_nat_chains6, Carry, NatStep, NAT_DST_PRIO, NAT_SRC_PRIO};

/// What to do with a frame after the pipeline saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Transmit the (rewritten) frame on port `0`.
    Forward(usize),
    /// Discard it; the reason was counted.
    Drop,
    /// The pipeline took what it needed (ARP, a queued packet, a frame the kernel also received).
    Consumed,
}

/// Per-port facts the pipeline needs besides the FIB.
#[derive(Clone, Copy, Debug)]
pub struct PortRole {
    /// The kernel answers ARP and takes local traffic on this interface itself.
    pub kernel_shares: bool,
}

/// Settings of one pipeline.
#[derive(Clone, Debug)]
pub struct PipelineConfig {
    /// Conntrack settings; `nf_conntrack_max` is for the whole appliance, each worker gets its share.
    pub conntrack: Sysctls,
    /// Workers sharing `nf_conntrack_max`.
    pub workers: u32,
    /// Seeds the conntrack hash (pick it at random in production).
    pub hash_seed: u64,
    /// Limits on the ICMP errors the appliance sends (the kernel's defaults).
    pub icmp: icmp::IcmpRateLimit,
    /// `ct count` counts: one for all the workers (give them the same `Arc`).
    pub conncount: Arc<ConnCounts>,
    /// The kernel stack sits behind a host TUN (the exception path): packets for the box's own addresses
    /// go through PREROUTING and INPUT here and are then handed to it ([`Pipeline::take_to_host`]); what it
    /// sends comes back through [`Pipeline::from_host`]. Ports then do not share their traffic with the
    /// kernel (`PortRole::kernel_shares` false).
    pub host_path: bool,
    /// `net.ipv4.conf.{all,IF}.send_redirects` per port (either set: on): an ICMP redirect tells a sender
    /// on the link when its packet leaves by the interface it came in on. Missing ports: off.
    pub send_redirects: Vec<bool>,
}

impl PipelineConfig {
    /// This worker's share of `nf_conntrack_max`.
    pub fn conntrack_share(&self) -> u32 {
        self.conntrack.max.div_ceil(self.workers.max(1))
    }
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            conntrack: Sysctls::default(),
            workers: 1,
            hash_seed: 0x51_1ce,
            icmp: Default::default(),
            conncount: Default::default(),
            host_path: false,
            send_redirects: Vec::new(),
        }
    }
}

pub struct Pipeline {
    fib: Arc<Fib>,
    roles: Vec<PortRole>,
    neigh: NeighTable,
    pub conntrack: Conntrack<Ipv4Addr>,
    /// IPv6 connections: a table of their own, so IPv4 entries keep their size (128 bytes against 176);
    /// `nf_conntrack_max` applies to each table.
    pub conntrack6: Conntrack<Ipv6Addr>,
    /// IPv6 neighbours, resolved by neighbour discovery.
    neigh6: NeighTable<Ipv6Addr>,
    pub stats: WorkerStats,
    /// Rule counters of the current generation, indexed by counter slot.
    pub counters: Vec<CounterValue>,
    generation: usize,
    emitted: Vec<(usize, Vec<u8>)>,
    /// NAT port allocation state.
    nat: crate::nat::Nat,
    /// When "no free NAT port" was last logged (ns).
    last_exhausted_log: Option<u64>,
    config: PipelineConfig,
    icmp_limit: IcmpLimiter,
    route_errors: IcmpLimiter,
    /// ip_rt_send_redirect's per-sender state: when the last redirect went, how many in a row.
    redirect_peers: std::collections::HashMap<Ipv4Addr, (u64, u32)>,
    /// Redirects built while their packet was on its way (sent once it is done with conntrack).
    pending_redirects: Vec<Vec<u8>>,
    ip_id: u16,
    /// Packet tracing: records for `nft monitor trace` and `sluice replay`.
    pub trace: Trace,
    defrag: crate::defrag::Defrag,
    /// The ruleset uses connection tracking, so fragments are reassembled first (nf_defrag).
    defrag_on: bool,
    /// Set while a reassembled datagram goes through: the size to fragment it to again.
    reassembled: Option<usize>,
    defrag6: crate::defrag::Defrag6,
    /// While a reassembled IPv6 datagram goes through: the identification its fragments had.
    frag6_id: u32,
    /// While a reassembled datagram (either family) goes through: its fragments' data lengths, the
    /// pieces it leaves in again.
    frag_pieces: Vec<usize>,
    /// Connections on the box's own addresses to steer to (true) or away from (false) the dataplane.
    steer: Vec<(hw::LocalFlow, bool)>,
    conncount: Arc<ConnCounts>,
    /// IP packets for the kernel behind the host TUN (see [`PipelineConfig::host_path`]).
    to_host: Vec<Vec<u8>>,
    /// While a datagram the kernel sent in fragments goes through OUTPUT/POSTROUTING whole: the pieces
    /// it leaves in again.
    host_pieces: Option<HostPieces>,
}

/// An IP packet from the host TUN in an Ethernet frame (zero MACs; ethertype by the IP version, 0 when the
/// packet is neither IPv4 nor IPv6), as the output path takes it.
pub fn host_frame(packet: &[u8]) -> Vec<u8> {
    let ethertype = match packet.first().map(|b| b >> 4) {
        Some(4) => wire::ETHERTYPE_IPV4,
        Some(6) => wire::ETHERTYPE_IPV6,
        _ => 0,
    };
    let mut frame = Vec::with_capacity(ETH_HLEN + packet.len());
    frame.extend_from_slice(&[0; 12]);
    frame.extend_from_slice(&ethertype.to_be_bytes());
    frame.extend_from_slice(packet);
    frame
}

/// Sends the fragments of a datagram to `next_hop` on `iface`, or queues them for its neighbour entry;
/// `true` when the neighbour is to be solicited (ARP or NS).
fn send_pieces<A: Copy + Eq + std::hash::Hash>(
    neigh: &mut NeighTable<A>,
    emitted: &mut Vec<(usize, Vec<u8>)>,
    stats: &mut WorkerStats,
    iface: usize,
    next_hop: A,
    frags: Vec<Vec<u8>>,
    now: u64,
) -> bool {
    let mut solicit = false;
    for mut f in frags {
        match neigh.lookup(iface, next_hop, now) {
            Some(mac) => {
                f[0..6].copy_from_slice(&mac);
                emitted.push((iface, f));
            }
            None => match neigh.enqueue(iface, next_hop, &f, now) {
                Miss::QueuedSendRequest => solicit = true,
                Miss::Queued => {}
                Miss::Overflow => stats.neigh_pending_overflow += 1,
                Miss::Failed => stats.neigh_failed += 1,
            },
        }
    }
    solicit
}

/// The fragments a datagram from the host TUN came in (see [`Pipeline::from_host`]).
struct HostPieces {
    /// The largest fragment (IP length).
    max: usize,
    /// Each fragment's data length, in offset order.
    pieces: Vec<usize>,
    /// The IPv6 fragment identification.
    id6: u32,
}

/// A step of the path of a packet the box sends, after conntrack: the chains of a hook in a priority
/// range, or that hook's NAT.
#[derive(Clone, Copy)]
pub(super) enum LocalOutStep {
    Chains(Hook, i32, i32),
    Nat(Hook),
}

/// OUTPUT up to the NAT priority, its NAT (a destination rewrite routes again, as
/// ip_route_me_harder), the rest of OUTPUT; POSTROUTING up to the source NAT, it, the rest.
pub(super) const LOCAL_OUT_STEPS: [LocalOutStep; 6] = [
    LocalOutStep::Chains(Hook::Output, NF_IP_PRI_CONNTRACK, NAT_DST_PRIO),
    LocalOutStep::Nat(Hook::Output),
    LocalOutStep::Chains(Hook::Output, NAT_DST_PRIO + 1, i32::MAX),
    LocalOutStep::Chains(Hook::Postrouting, i32::MIN, NAT_SRC_PRIO),
    LocalOutStep::Nat(Hook::Postrouting),
    LocalOutStep::Chains(Hook::Postrouting, NAT_SRC_PRIO + 1, i32::MAX),
];

/// Does the IPv4 header carry a loose or strict source route option (no redirects for those)?
fn has_source_route(frame: &[u8], ip: &Ipv4Info) -> bool {
    let opts = frame
        .get(ip.nh_off + 20..ip.nh_off + ip.header_len)
        .unwrap_or(&[]);
    let mut i = 0;
    while i < opts.len() {
        match opts[i] {
            0 => return false,
            1 => i += 1,
            0x83 | 0x89 => return true,
            _ => {
                let len = opts.get(i + 1).copied().unwrap_or(0) as usize;
                if len < 2 {
                    return false;
                }
                i += len;
            }
        }
    }
    false
}

/// Identifies a ruleset generation by the address of its shared allocation.
pub fn generation_id(rs: &Arc<CompiledRuleset>) -> usize {
    Arc::as_ptr(rs) as usize
}

impl Pipeline {
    pub fn new(fib: Arc<Fib>, roles: Vec<PortRole>, config: &PipelineConfig) -> Pipeline {
        let mut conntrack = Conntrack::new(
            config.conntrack.clone(),
            config.conntrack_share(),
            config.hash_seed,
        );
        conntrack.set_conncount(config.conncount.clone());
        let mut conntrack6 = Conntrack::new(
            config.conntrack.clone(),
            config.conntrack_share(),
            config.hash_seed ^ 0x6_6666,
        );
        conntrack6.set_conncount(config.conncount.clone());
        Pipeline {
            fib,
            roles,
            neigh: NeighTable::default(),
            conntrack,
            conntrack6,
            neigh6: NeighTable::default(),
            stats: WorkerStats::default(),
            counters: Vec::new(),
            generation: 0,
            emitted: Vec::new(),
            nat: crate::nat::Nat::new(config.hash_seed ^ 0x6e61_7400),
            last_exhausted_log: None,
            config: config.clone(),
            icmp_limit: IcmpLimiter::default(),
            route_errors: IcmpLimiter::default(),
            redirect_peers: Default::default(),
            pending_redirects: Vec::new(),
            ip_id: 0,
            trace: Trace::default(),
            defrag: Default::default(),
            defrag_on: false,
            reassembled: None,
            defrag6: Default::default(),
            frag6_id: 0,
            frag_pieces: Vec::new(),
            steer: Vec::new(),
            conncount: config.conncount.clone(),
            to_host: Vec::new(),
            host_pieces: None,
        }
    }

    /// Replaces the addresses and routes (re-read from the kernel). The interfaces must be the same, in
    /// the same order: neighbours and conntrack entries keep their interface indexes.
    pub fn set_fib(&mut self, fib: Arc<Fib>) {
        debug_assert_eq!(fib.interfaces.len(), self.fib.interfaces.len());
        self.fib = fib;
    }

    /// With hand-off between `workers`, NAT picks ports whose replies hash to this worker.
    pub fn set_nat_owner(&mut self, worker: usize, workers: usize) {
        self.nat.set_owner(worker, workers);
    }

    /// Steering changes since the last call: connections bound to the box's own addresses, whose frames
    /// the kernel would otherwise take (and connections that went).
    pub fn take_steering(&mut self) -> Vec<(hw::LocalFlow, bool)> {
        for t in self.conntrack.unsteer.drain(..) {
            self.steer.push((nat_hooks::local_flow(&t), false));
        }
        std::mem::take(&mut self.steer)
    }

    pub fn fib(&self) -> &Fib {
        &self.fib
    }

    /// A neighbour that never needs resolving (`ip neigh add … nud permanent`).
    pub fn add_static_neighbour(&mut self, iface: usize, ip: Ipv4Addr, mac: [u8; 6]) {
        self.neigh.add_permanent(iface, ip, mac);
    }

    /// A permanent IPv6 neighbour (`ip -6 neigh add … nud permanent`).
    pub fn add_static_neighbour6(&mut self, iface: usize, ip: Ipv6Addr, mac: [u8; 6]) {
        self.neigh6.add_permanent(iface, ip, mac);
    }

    /// Called once per batch with the ruleset the batch will use: a new generation starts from the counter
    /// values written in its source, as the kernel's do after `nft -f` recreates the rules.
    pub fn use_generation(&mut self, rs: &Arc<CompiledRuleset>) {
        let id = generation_id(rs);
        if id != self.generation {
            self.generation = id;
            self.counters = rs.initial_counters();
            self.stats.generation_switches += 1;
            // Derived once per generation (the publisher derives them before it stores the generation, so a
            // switch costs the worker no walk over the rules).
            let props = rs.properties();
            self.trace.ruleset_traces = props.nftrace;
            self.trace.ruleset_logs = rs.has_logs();
            self.trace.ruleset_dups = rs.has_dups();
            self.defrag_on = props.conntrack;
        }
    }

    /// Frames generated by the pipeline since the last call, with their egress port.
    pub fn take_emitted(&mut self) -> std::vec::Drain<'_, (usize, Vec<u8>)> {
        self.emitted.drain(..)
    }

    /// Timers: ARP retransmission and give-up, incremental conntrack expiry.
    pub fn on_timer(&mut self, now: u64, rs: &CompiledRuleset) {
        rs.sweep_dynamic(now);
        let mut requests = Vec::new();
        let mut lost = Vec::new();
        let failed = self.neigh.on_timer(
            now,
            |iface, ip| requests.push((iface, ip)),
            |iface, f| lost.push((iface, f)),
        );
        self.stats.neigh_failed += failed as u64;
        for (iface, ip) in requests {
            self.send_arp_request(iface, ip);
        }
        for (iface, f) in lost {
            if let Ok(ip) = wire::parse_ipv4(&f, ETH_HLEN) {
                // quoted as it was queued: after the TTL decrement, as the kernel's queued skb
                let mut f = f;
                f[0] = 0; // it was unicast to us
                self.icmp_error(
                    &f,
                    &ip,
                    iface,
                    ICMP_DEST_UNREACH,
                    ICMP_HOST_UNREACH,
                    0,
                    rs,
                    now,
                );
            }
        }
        self.conntrack.expire(now, 4096, &mut self.stats);
        self.conntrack6.expire(now, 4096, &mut self.stats);
        self.defrag.expire(now, &mut self.stats);
        self.on_timer6(now, rs);
    }

    /// Runs one received frame through the pipeline. `slot` holds the frame in its first `len` bytes and may
    /// be rewritten in place.
    pub fn process(
        &mut self,
        slot: &mut [u8],
        len: usize,
        port: usize,
        kernel_has_copy: bool,
        rs: &CompiledRuleset,
        now: u64,
    ) -> Action {
        let action = self.process_frame(slot, len, port, kernel_has_copy, rs, now);
        if !self.trace.dups.is_empty() {
            self.send_dups(rs, now);
        }
        if !self.pending_redirects.is_empty() {
            for r in std::mem::take(&mut self.pending_redirects) {
                self.local_out_v4(r, rs, now);
            }
        }
        action
    }

    fn process_frame(
        &mut self,
        slot: &mut [u8],
        len: usize,
        port: usize,
        kernel_has_copy: bool,
        rs: &CompiledRuleset,
        now: u64,
    ) -> Action {
        self.stats.rx_frames += 1;
        if kernel_has_copy {
            self.stats.rx_kernel_copies += 1;
        }
        let frame = &mut slot[..len];
        let eth = match wire::parse_eth(frame) {
            Ok(e) => e,
            Err(_) => return self.drop_parse(),
        };
        let Some(ifc) = self.fib.interfaces.get(port) else {
            return Action::Drop;
        };
        if eth.dst != ifc.mac && eth.dst[0] & 1 == 0 {
            if kernel_has_copy {
                return Action::Consumed;
            }
            self.stats.drop_not_for_us += 1;
            return Action::Drop;
        }
        match eth.ethertype {
            wire::ETHERTYPE_ARP => self.arp(frame, port, kernel_has_copy, now),
            wire::ETHERTYPE_IPV4 if eth.dst == ifc.mac => {
                self.ipv4(frame, port, kernel_has_copy, rs, now)
            }
            wire::ETHERTYPE_IPV6 => self.ipv6(frame, port, kernel_has_copy, rs, now),
            _ if kernel_has_copy || self.shares(port) => Action::Consumed,
            _ => {
                self.stats.drop_unsupported += 1;
                Action::Drop
            }
        }
    }

    /// Prefetching for a batch (see [`Conntrack::prefetch`]): call with `stage` 0 for every frame of the
    /// batch, then 1 for every frame, then process them. Reads the IPv4 header without checking it.
    #[inline]
    pub fn prefetch_ct(&self, frame: &[u8], stage: u8) {
        let Some(ip) = frame.get(ETH_HLEN..) else {
            return;
        };
        if frame[12..14] != wire::ETHERTYPE_IPV4.to_be_bytes() || ip.len() < 20 || ip[0] >> 4 != 4 {
            return;
        }
        let ihl = (ip[0] & 0xf) as usize * 4;
        let total = (u16::from_be_bytes([ip[2], ip[3]]) as usize).min(ip.len());
        let Some(l4) = ip.get(ihl..total) else {
            return;
        };
        let pkt = CtPkt {
            src: Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]),
            dst: Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]),
            proto: ip[9],
            l4,
            len: total as u32,
            fragment: u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0,
        };
        self.conntrack.prefetch(&pkt, 0, stage);
    }

    fn shares(&self, port: usize) -> bool {
        self.roles.get(port).is_some_and(|r| r.kernel_shares)
    }

    fn drop_parse(&mut self) -> Action {
        self.stats.drop_parse_error += 1;
        Action::Drop
    }

    fn arp(&mut self, frame: &[u8], port: usize, kernel_has_copy: bool, now: u64) -> Action {
        let Ok(arp) = ArpRepr::parse(&frame[ETH_HLEN..]) else {
            return if kernel_has_copy {
                Action::Consumed
            } else {
                self.drop_parse()
            };
        };
        let ifc = &self.fib.interfaces[port];
        let for_us = ifc.ipv4.iter().any(|(a, _)| *a == arp.target_ip);
        // As the kernel's arp_process: create an entry when the ARP is addressed to us, refresh known ones.
        if !arp.sender_ip.is_unspecified() && (for_us || self.neigh.knows(port, arp.sender_ip)) {
            self.stats.arp_learned += 1;
            let waiting = self.neigh.learn(port, arp.sender_ip, arp.sender_mac, now);
            let mac = ifc.mac;
            for mut f in waiting {
                f[0..6].copy_from_slice(&arp.sender_mac);
                f[6..12].copy_from_slice(&mac);
                self.emitted.push((port, f));
            }
        }
        if arp.op == ARP_REQUEST && for_us && !kernel_has_copy && !self.shares(port) {
            let reply = ArpRepr {
                op: ARP_REPLY,
                sender_mac: ifc.mac,
                sender_ip: arp.target_ip,
                target_mac: arp.sender_mac,
                target_ip: arp.sender_ip,
            };
            let mut buf = vec![0u8; 60];
            reply.emit_frame(ifc.mac, arp.sender_mac, &mut buf);
            self.emitted.push((port, buf));
            self.stats.arp_replies_sent += 1;
        }
        Action::Consumed
    }

    fn send_arp_request(&mut self, iface: usize, ip: Ipv4Addr) {
        let Some(ifc) = self.fib.interfaces.get(iface) else {
            return;
        };
        let Some(src) = self.fib.source_for(iface, ip) else {
            return;
        };
        let req = ArpRepr {
            op: ARP_REQUEST,
            sender_mac: ifc.mac,
            sender_ip: src,
            target_mac: [0; 6],
            target_ip: ip,
        };
        let mut buf = vec![0u8; 60];
        req.emit_frame(ifc.mac, BROADCAST_MAC, &mut buf);
        self.emitted.push((iface, buf));
        self.stats.arp_requests_sent += 1;
    }

    fn ipv4(
        &mut self,
        frame: &mut [u8],
        port: usize,
        kernel_has_copy: bool,
        rs: &CompiledRuleset,
        now: u64,
    ) -> Action {
        let mut ip = match wire::parse_ipv4(frame, ETH_HLEN) {
            Ok(ip) => ip,
            Err(wire::ParseError::BadIpv4Checksum) => {
                self.stats.drop_bad_ip_checksum += 1;
                return Action::Drop;
            }
            Err(_) => return self.drop_parse(),
        };
        self.trace.begin_packet();
        // netdev (and inet) ingress chains of this device run first, before the IP layer (once per
        // fragment, not again for the reassembled datagram).
        if self.reassembled.is_none()
            && rs
                .ingress_chains(&self.fib.interfaces[port].name)
                .next()
                .is_some()
        {
            let fib = &*self.fib;
            let in_ifc = &fib.interfaces[port];
            let chains: Vec<ChainId> = rs.ingress_chains(&in_ifc.name).collect();
            let mut pkt = packet_ctx(
                fib,
                frame,
                &ip,
                &in_ifc.name,
                in_ifc.ifindex,
                Hook::Ingress,
                now,
            );
            pkt.ct_state = ct_state::INVALID;
            let v = run_list(rs, &chains, &mut pkt, &mut self.counters, &mut self.trace);
            let wrote = pkt.payload_writes != 0;
            if v.is_drop() {
                return self.ruled_out(v, port, &ip, rs, now, frame);
            }
            if wrote {
                match wire::reread_ipv4(frame, ETH_HLEN) {
                    Ok(i) => ip = i,
                    Err(_) => return self.drop_parse(),
                }
            }
        }
        // The kernel stack already has packets for the box when it shares the interface; INPUT runs there.
        // Unless they belong to a NATed connection (replies to a masqueraded flow, a port forward).
        let mut decision = self.fib.lookup(ip.dst);
        if decision == RouteDecision::Local
            && !nat_hooks::has_nat_chains(rs, Hook::Prerouting)
            && !nat_hooks::has_nat_chains(rs, Hook::Postrouting)
            && (kernel_has_copy || self.shares(port))
        {
            return self.local(port, kernel_has_copy);
        }
        // nf_defrag (priority -400) when conntrack is in use: hold fragments, go on with the whole.
        if ip.is_fragment && self.defrag_on && self.reassembled.is_none() {
            let Some(whole) = self.defrag.add(frame, &ip, now, &mut self.stats) else {
                return Action::Consumed;
            };
            let mut buf = whole.frame;
            let len = buf.len();
            self.reassembled = Some(whole.frag_max_size);
            self.frag_pieces = whole.pieces;
            let action = self.ipv4(&mut buf, port, kernel_has_copy, rs, now);
            self.reassembled = None;
            return match action {
                Action::Forward(out) => {
                    // finish_forward fragments reassembled datagrams itself; a whole one that fits
                    // leaves as it is.
                    self.emitted.push((out, buf[..len].to_vec()));
                    Action::Consumed
                }
                a => a,
            };
        }
        // PREROUTING chains before conntrack (priority < -200, NF_IP_PRI_CONNTRACK) see no ct state.
        let fib = &*self.fib;
        let in_ifc = &fib.interfaces[port];
        let mut pkt = ctx(
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
            None,
            &self.conncount,
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
            return self.ruled_out(v, port, &ip, rs, now, frame);
        }
        if wrote {
            // conntrack and the routing decision see what the rules wrote (a raw-priority rewrite)
            match wire::reread_ipv4(frame, ETH_HLEN) {
                Ok(i) => ip = i,
                Err(_) => return self.drop_parse(),
            }
            decision = self.fib.lookup(ip.dst);
        }
        // `notrack` in a chain before conntrack
        let ct = if untracked {
            CtResult::Untracked
        } else {
            self.conntrack
                .track(&CtPkt::from_ipv4(&ip, frame), 0, now, &mut self.stats)
        };
        if ct == CtResult::TableFull {
            return Action::Drop;
        }
        if decision == RouteDecision::Local
            && (kernel_has_copy || self.shares(port))
            && !self.nat_wants_local(rs, ct)
        {
            self.conntrack.abandon();
            return self.local(port, kernel_has_copy);
        }
        // What the rules may read and set of the connection: its mark, labels, `ct count`s, and (when
        // a rule reads them) the rest of the entry.
        let carry = self.ct_carry(ct, carry);
        let mut view = CtView::default();
        let use_view = rs.uses_ct_view() && self.ct_view(ct, now, &mut view);
        let fib = &*self.fib;
        let in_ifc = &fib.interfaces[port];
        let mut pkt = ctx(
            fib,
            frame,
            &ip,
            in_ifc,
            None,
            ct,
            carry,
            use_view.then_some(&view),
            &self.conncount,
            Hook::Prerouting,
        );
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
            return self.ruled_out(v, port, &ip, rs, now, frame);
        }
        let carry = Carry::of(&pkt);
        if wrote {
            match wire::reread_ipv4(frame, ETH_HLEN) {
                Ok(i) => ip = i,
                Err(_) => return self.drop_parse(),
            }
            decision = self.fib.lookup(ip.dst);
        }
        let step = self.nat_hook(
            rs,
            Hook::Prerouting,
            frame,
            &ip,
            ct,
            Some(port),
            None,
            carry,
            use_view.then_some(&view),
            now,
        );
        if use_view {
            self.ct_view(ct, now, &mut view);
        }
        match step {
            NatStep::Drop => return Action::Drop,
            NatStep::Rewritten => {
                // The destination moved: route on the new one.
                ip = match wire::reread_ipv4(frame, ETH_HLEN) {
                    Ok(ip) => ip,
                    Err(_) => return self.drop_parse(),
                };
                decision = self.fib.lookup(ip.dst);
            }
            NatStep::Same => {}
        }
        if decision == RouteDecision::Local && (kernel_has_copy || self.shares(port)) {
            self.conntrack.abandon();
            return self.local(port, kernel_has_copy);
        }
        let fib = &*self.fib;
        let in_ifc = &fib.interfaces[port];
        let mut pkt = ctx(
            fib,
            frame,
            &ip,
            in_ifc,
            None,
            ct,
            carry,
            use_view.then_some(&view),
            &self.conncount,
            Hook::Prerouting,
        );
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
            return self.ruled_out(v, port, &ip, rs, now, frame);
        }
        let carry = Carry::of(&pkt);
        if wrote {
            // ip_rcv_finish routes after the whole PREROUTING hook: on the address the rules wrote
            match wire::reread_ipv4(frame, ETH_HLEN) {
                Ok(i) => ip = i,
                Err(_) => return self.drop_parse(),
            }
            decision = self.fib.lookup(ip.dst);
        }

        // The routing decision (ip_route_input, then ip_forward's checks in the kernel's order).
        let (iface, next_hop) = match decision {
            RouteDecision::Forward { iface, next_hop } => (iface, next_hop),
            RouteDecision::Local => {
                // No kernel behind this port (in-memory ports, replay): INPUT is ours, and nothing
                // listens after it.
                let fib = &*self.fib;
                let mut pkt = ctx(
                    fib,
                    frame,
                    &ip,
                    &fib.interfaces[port],
                    None,
                    ct,
                    carry,
                    use_view.then_some(&view),
                    &self.conncount,
                    Hook::Input,
                );
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
                self.conntrack
                    .set_rule_state(ct, carry.ct_mark, carry.ct_label, carry.ct_counted);
                if v.is_drop() {
                    return self.ruled_out(v, port, &ip, rs, now, frame);
                }
                if host {
                    // INPUT's NAT: a reply gets the source the box's connection was opened to
                    // (OUTPUT's dnat undone), and snat in input chains applies
                    let view = use_view.then_some(&view);
                    match self.nat_hook(
                        rs,
                        Hook::Input,
                        frame,
                        &ip,
                        ct,
                        Some(port),
                        None,
                        carry,
                        view,
                        now,
                    ) {
                        NatStep::Drop => return Action::Drop,
                        NatStep::Rewritten => match wire::reread_ipv4(frame, ETH_HLEN) {
                            Ok(i) => ip = i,
                            Err(_) => return self.drop_parse(),
                        },
                        NatStep::Same => {}
                    }
                    let fib = &*self.fib;
                    let mut pkt = ctx(
                        fib,
                        frame,
                        &ip,
                        &fib.interfaces[port],
                        None,
                        ct,
                        carry,
                        view,
                        &self.conncount,
                        Hook::Input,
                    );
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
                    self.conntrack.set_rule_state(
                        ct,
                        carry.ct_mark,
                        carry.ct_label,
                        carry.ct_counted,
                    );
                    if v.is_drop() {
                        return self.ruled_out(v, port, &ip, rs, now, frame);
                    }
                    // the local socket takes it: the connection is kept (conntrack confirm)
                    if self.conntrack.confirm(ct, now, &mut self.stats) == Confirm::InsertFailed {
                        return Action::Drop;
                    }
                    return self.deliver_to_host(frame, ip.total_len);
                }
                // nothing behind INPUT takes the packet: the connection is not kept
                self.conntrack.abandon();
                return self.local(port, kernel_has_copy);
            }
            RouteDecision::Unreachable => {
                self.conntrack.abandon();
                self.stats.drop_no_route += 1;
                if self.route_error_allowed(ip.src, now) {
                    self.icmp_error(
                        frame,
                        &ip,
                        port,
                        ICMP_DEST_UNREACH,
                        ICMP_NET_UNREACH,
                        0,
                        rs,
                        now,
                    );
                }
                return Action::Drop;
            }
        };
        if ip.ttl <= 1 {
            self.conntrack.abandon();
            self.stats.drop_ttl_exceeded += 1;
            self.icmp_error(frame, &ip, port, ICMP_TIME_EXCEEDED, 0, 0, rs, now);
            return Action::Drop;
        }
        let mtu = self.fib.interfaces[iface].mtu;
        if ip.total_len > mtu as usize && ip.dont_fragment {
            self.conntrack.abandon();
            self.stats.drop_too_big += 1;
            self.icmp_error(
                frame,
                &ip,
                port,
                ICMP_DEST_UNREACH,
                ICMP_FRAG_NEEDED,
                mtu,
                rs,
                now,
            );
            return Action::Drop;
        }
        // ip_forward decrements the TTL before the FORWARD hook: rules there see the new TTL.
        wire::decrement_ttl(frame, ip.nh_off);
        ip.ttl -= 1;
        // ip_forward, before the FORWARD hook: a packet that leaves by the interface it came in on,
        // from a sender on that link, earns the sender a host redirect to the next hop.
        if iface == port && self.config.send_redirects.get(port) == Some(&true) {
            self.redirect(frame, &ip, port, next_hop, now);
        }
        let fib = &*self.fib;
        let (in_ifc, out_ifc) = (&fib.interfaces[port], &fib.interfaces[iface]);
        let mut pkt = ctx(
            fib,
            frame,
            &ip,
            in_ifc,
            Some(out_ifc),
            ct,
            carry,
            use_view.then_some(&view),
            &self.conncount,
            Hook::Forward,
        );
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
            return self.ruled_out(v, port, &ip, rs, now, frame);
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
        if v.is_drop() {
            // reject is refused at load in postrouting: this is a drop
            self.stats.dropped_by_rule += 1;
            return Action::Drop;
        }
        let carry = Carry::of(&pkt);
        if pkt.payload_writes != 0 {
            match wire::reread_ipv4(frame, ETH_HLEN) {
                Ok(i) => ip = i,
                Err(_) => return self.drop_parse(),
            }
        }
        let out = Some((iface, next_hop));
        let step = self.nat_hook(
            rs,
            Hook::Postrouting,
            frame,
            &ip,
            ct,
            Some(port),
            out,
            carry,
            use_view.then_some(&view),
            now,
        );
        if use_view {
            self.ct_view(ct, now, &mut view);
        }
        match step {
            NatStep::Drop => return Action::Drop,
            NatStep::Rewritten => {
                ip = match wire::reread_ipv4(frame, ETH_HLEN) {
                    Ok(ip) => ip,
                    Err(_) => return self.drop_parse(),
                };
            }
            NatStep::Same => {}
        }
        let fib = &*self.fib;
        let (in_ifc, out_ifc) = (&fib.interfaces[port], &fib.interfaces[iface]);
        let mut pkt = ctx(
            fib,
            frame,
            &ip,
            in_ifc,
            Some(out_ifc),
            ct,
            carry,
            use_view.then_some(&view),
            &self.conncount,
            Hook::Postrouting,
        );
        let v = run_hook(
            rs,
            Hook::Postrouting,
            &mut pkt,
            &mut self.counters,
            &mut self.trace,
            NAT_SRC_PRIO + 1,
            i32::MAX,
        );
        if v.is_drop() {
            self.stats.dropped_by_rule += 1;
            return Action::Drop;
        }
        let carry = Carry::of(&pkt);
        if pkt.payload_writes != 0 {
            match wire::reread_ipv4(frame, ETH_HLEN) {
                Ok(i) => ip = i,
                Err(_) => return self.drop_parse(),
            }
        }
        self.conntrack
            .set_rule_state(ct, carry.ct_mark, carry.ct_label, carry.ct_counted);
        match self.conntrack.confirm(ct, now, &mut self.stats) {
            Confirm::InsertFailed => return Action::Drop,
            Confirm::Inserted(idx) => self.steer_if_local(idx),
            Confirm::NotNew => {}
        }
        self.finish_forward(frame, &ip, iface, next_hop, now)
    }

    /// The rule-visible state of the packet's connection as the packet starts its walk after
    /// conntrack: mark, labels and `ct count` bits of its entry (none for a new one).
    fn ct_carry(&self, ct: CtResult, c: Carry) -> Carry {
        ct_carry_of(&self.conntrack, ct, c)
    }

    /// Fills `v` from the packet's entry (pending, existing or the one an ICMP error relates to);
    /// `false` when it has none.
    fn ct_view(&self, ct: CtResult, now: u64, v: &mut CtView) -> bool {
        ct_view_of(&self.conntrack, ct, now, v)
    }

    /// A hook dropped or rejected the packet: count it, and for `reject` send the reply.
    #[allow(clippy::too_many_arguments)]
    fn ruled_out(
        &mut self,
        v: Verdict,
        port: usize,
        ip: &Ipv4Info,
        rs: &CompiledRuleset,
        now: u64,
        frame: &[u8],
    ) -> Action {
        self.conntrack.abandon();
        if v == Verdict::Stolen {
            // `fwd` took it (send_dups sends it)
            return Action::Consumed;
        }
        self.stats.dropped_by_rule += 1;
        if let Verdict::Reject(kind) = v {
            self.reject_v4(kind, frame, ip, port, rs, now);
        }
        Action::Drop
    }

    /// Sends what `reject` asks for, as nf_send_unreach / nf_send_reset do.
    #[allow(clippy::too_many_arguments)]
    fn reject_v4(
        &mut self,
        kind: RejectKind,
        frame: &[u8],
        ip: &Ipv4Info,
        port: usize,
        rs: &CompiledRuleset,
        now: u64,
    ) {
        let code = match kind {
            RejectKind::TcpReset => {
                match icmp::tcp_reset4(frame, ip) {
                    Some(rst) => {
                        self.stats.reject_tcp_reset += 1;
                        self.local_out_v4(rst, rs, now);
                    }
                    None => self.stats.reject_no_reply += 1,
                }
                return;
            }
            RejectKind::Icmp(c) => c,
            RejectKind::Icmpx(c) => icmp::icmpx_to_icmp(c),
            RejectKind::Icmpv6(_) => return,
        };
        if !icmp::transport_checksum_ok_v4(frame, ip) {
            self.stats.reject_no_reply += 1;
            return;
        }
        self.icmp_error(frame, ip, port, ICMP_DEST_UNREACH, code, 0, rs, now);
    }

    /// Builds the ICMP host redirect `ip_rt_send_redirect` sends (queued: it leaves after the packet,
    /// through OUTPUT), within its per-sender limit.
    fn redirect(&mut self, frame: &[u8], ip: &Ipv4Info, port: usize, gateway: Ipv4Addr, now: u64) {
        let fib = &*self.fib;
        let on_link = fib.interfaces[port]
            .ipv4
            .iter()
            .any(|&(a, p)| crate::fib::same_subnet(a, ip.src, p));
        if !on_link || has_source_route(frame, ip) || !icmp::icmp4_may_answer(frame, ip) {
            return;
        }
        let Some(src) = fib.source_for(port, ip.src) else {
            return;
        };
        if !self.redirect_allowed(ip.src, now) {
            self.stats.icmp_redirects_limited += 1;
            return;
        }
        self.ip_id = self.ip_id.wrapping_add(1);
        let err = icmp::icmp4_error(
            frame,
            ip,
            src,
            icmp::ICMP_REDIRECT,
            icmp::ICMP_REDIR_HOST,
            u32::from(gateway),
            self.ip_id,
        );
        self.stats.icmp_redirects_sent += 1;
        self.pending_redirects.push(err);
    }

    /// ip_rt_send_redirect's limit per sender: after a redirect the next waits 20 ms << (redirects so
    /// far); after 9 unheeded ones none is sent until the sender has been quiet for 20.48 s.
    fn redirect_allowed(&mut self, sender: Ipv4Addr, now: u64) -> bool {
        const LOAD_NS: u64 = 20_000_000;
        const SILENCE_NS: u64 = LOAD_NS << 10;
        const NUMBER: u32 = 9;
        if self.redirect_peers.len() >= 4096 && !self.redirect_peers.contains_key(&sender) {
            self.redirect_peers.clear();
        }
        let (last, n) = self.redirect_peers.entry(sender).or_insert((0, 0));
        if now > *last + SILENCE_NS {
            *n = 0;
        }
        if *n >= NUMBER {
            *last = now;
            return false;
        }
        if *n == 0 || now > *last + (LOAD_NS << *n) {
            *last = now;
            *n += 1;
            return true;
        }
        false
    }

    /// ip_error's own limit on unreachable errors for routing failures (ip_rt_error_cost 1 s, burst 5).
    fn route_error_allowed(&mut self, to: Ipv4Addr, now: u64) -> bool {
        let cfg = icmp::IcmpRateLimit {
            per_dest_ns: self.config.icmp.per_dest_ns,
            msgs_per_sec: 0,
            msgs_burst: 0,
            ..Default::default()
        };
        // burst 5 rather than icmp's 6: the kernel's ip_rt_error_burst
        if cfg.per_dest_ns == 0 {
            return true;
        }
        let ok = self.route_errors.allow(&cfg, to.into(), now);
        if !ok {
            self.stats.icmp_rate_limited += 1;
        }
        ok
    }

    /// Sends an ICMP error about the packet in `frame` back to its sender, as `icmp_send` does: from the
    /// address of the interface the reply leaves by, rate limited per destination and globally.
    #[allow(clippy::too_many_arguments)]
    fn icmp_error(
        &mut self,
        frame: &[u8],
        ip: &Ipv4Info,
        _in_port: usize,
        ty: u8,
        code: u8,
        info: u32,
        rs: &CompiledRuleset,
        now: u64,
    ) {
        if !icmp::icmp4_may_answer(frame, ip) {
            return;
        }
        let RouteDecision::Forward { iface, .. } = self.fib.lookup(ip.src) else {
            return;
        };
        let Some(src) = self.fib.source_for(iface, ip.src) else {
            return;
        };
        if !self.icmp_limit.allow(&self.config.icmp, ip.src.into(), now) {
            self.stats.icmp_rate_limited += 1;
            return;
        }
        self.ip_id = self.ip_id.wrapping_add(1);
        let err = icmp::icmp4_error(frame, ip, src, ty, code, info, self.ip_id);
        self.stats.icmp_errors_sent += 1;
        self.local_out_v4(err, rs, now);
    }

    /// The path of a packet the appliance itself emits (reject replies, ICMP errors): route, OUTPUT with
    /// conntrack, POSTROUTING, confirm, neighbour. Such packets never cause further replies.
    pub fn local_out_v4(&mut self, frame: Vec<u8>, rs: &CompiledRuleset, now: u64) {
        self.local_out_v4_via(frame, None, true, rs, now);
    }

    /// [`Pipeline::local_out_v4`] to a given interface and next hop (`via`), and without conntrack
    /// when not `tracked` (the chains see `ct state untracked`, as for a `dup` copy).
    pub(crate) fn local_out_v4_via(
        &mut self,
        mut frame: Vec<u8>,
        via: Option<(usize, Ipv4Addr)>,
        tracked: bool,
        rs: &CompiledRuleset,
        now: u64,
    ) {
        let Ok(mut ip) = wire::parse_ipv4(&frame, ETH_HLEN) else {
            return;
        };
        let route = |fib: &Fib, dst: Ipv4Addr| match fib.lookup(dst) {
            RouteDecision::Forward { iface, next_hop } => Some((iface, next_hop)),
            _ => None,
        };
        let Some((mut iface, mut next_hop)) = via.or_else(|| route(&self.fib, ip.dst)) else {
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
        // One stage of OUTPUT/POSTROUTING: the chains of `hook` with a priority in `prios`, on the
        // packet as it is now (NAT may rewrite it between stages).
        macro_rules! stage {
            ($hook:expr, $ct:expr, $lo:expr, $hi:expr) => {{
                let out_ifc = &fib.interfaces[iface];
                let mut pkt = packet_ctx(&fib, &mut frame, &ip, "", 0, $hook, now);
                pkt.oif = out_ifc.ifindex;
                pkt.oifname = &out_ifc.name;
                carry.apply(&mut pkt);
                pkt.ct_state = $ct;
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
        let (v, state, _) = stage!(Hook::Output, before, i32::MIN, NF_IP_PRI_CONNTRACK - 1);
        if v.is_drop() {
            self.stats.local_out_dropped_by_rule += 1;
            return;
        }
        if let Ok(i) = wire::reread_ipv4(&frame, ETH_HLEN) {
            ip = i;
        }
        let mut ct = CtResult::Untracked;
        if state != ct_state::UNTRACKED {
            ct = self
                .conntrack
                .track(&CtPkt::from_ipv4(&ip, &frame), 0, now, &mut self.stats);
            if ct == CtResult::TableFull {
                return;
            }
        }
        // the connection's mark, labels and `ct count`s, as rules set them in INPUT or before
        carry = ct_carry_of(&self.conntrack, ct, carry);
        if self.trace.active() {
            let mut pkt = packet_ctx(&fib, &mut frame, &ip, "", 0, Hook::Output, now);
            pkt.ct_state = ct.state();
            self.trace.note(
                &pkt,
                Event::Conntrack {
                    state: pkt.ct_state,
                },
            );
        }
        let dropped = |p: &mut Pipeline| {
            p.conntrack.abandon();
            p.stats.local_out_dropped_by_rule += 1;
        };
        for step in LOCAL_OUT_STEPS {
            match step {
                LocalOutStep::Chains(hook, lo, hi) => {
                    let (v, _, wrote) = stage!(hook, ct.state(), lo, hi);
                    if v.is_drop() {
                        return dropped(self);
                    }
                    if wrote {
                        match wire::reread_ipv4(&frame, ETH_HLEN) {
                            Ok(i) => ip = i,
                            Err(_) => return dropped(self),
                        }
                    }
                }
                LocalOutStep::Nat(hook) => {
                    let out = Some((iface, next_hop));
                    match self.nat_hook(rs, hook, &mut frame, &ip, ct, None, out, carry, None, now)
                    {
                        NatStep::Drop => return self.conntrack.abandon(),
                        NatStep::Rewritten => {
                            let Ok(i) = wire::reread_ipv4(&frame, ETH_HLEN) else {
                                return dropped(self);
                            };
                            ip = i;
                            if hook == Hook::Output && via.is_none() {
                                let Some(r) = route(&fib, ip.dst) else {
                                    self.conntrack.abandon();
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
        self.conntrack
            .set_rule_state(ct, carry.ct_mark, carry.ct_label, carry.ct_counted);
        if self.conntrack.confirm(ct, now, &mut self.stats) == Confirm::InsertFailed {
            return;
        }
        let out_mac = fib.interfaces[iface].mac;
        frame[6..12].copy_from_slice(&out_mac);
        let frames = match self.host_pieces.take() {
            // a datagram the kernel sent in fragments: in those pieces again (while they fit)
            Some(hp) => {
                let mtu = (fib.interfaces[iface].mtu as usize).min(hp.max);
                if ip.total_len > mtu {
                    let end = ETH_HLEN + ip.total_len;
                    let Some(f) = wire::refragment_ipv4(&frame[..end], &ip, &hp.pieces, mtu) else {
                        self.stats.drop_too_big += 1;
                        return;
                    };
                    self.stats.fragments_created += f.len() as u64;
                    f
                } else {
                    vec![frame]
                }
            }
            None => vec![frame],
        };
        for mut frame in frames {
            match self.neigh.lookup(iface, next_hop, now) {
                Some(mac) => {
                    frame[0..6].copy_from_slice(&mac);
                    self.stats.local_out_sent += 1;
                    self.emitted.push((iface, frame));
                }
                None => match self.neigh.enqueue(iface, next_hop, &frame, now) {
                    Miss::QueuedSendRequest => {
                        self.send_arp_request(iface, next_hop);
                        self.stats.local_out_sent += 1;
                    }
                    Miss::Queued => self.stats.local_out_sent += 1,
                    Miss::Overflow => self.stats.neigh_pending_overflow += 1,
                    Miss::Failed => self.stats.neigh_failed += 1,
                },
            }
        }
    }

    /// Queues the IP packet of `frame` (`ip_len` bytes after the Ethernet header) for the kernel behind
    /// the host TUN.
    fn deliver_to_host(&mut self, frame: &[u8], ip_len: usize) -> Action {
        let Some(packet) = frame.get(ETH_HLEN..ETH_HLEN + ip_len) else {
            return self.drop_parse();
        };
        self.stats.local_to_host += 1;
        self.to_host.push(packet.to_vec());
        Action::Consumed
    }

    /// IP packets INPUT accepted for the kernel behind the host TUN, since the last call.
    pub fn take_to_host(&mut self) -> std::vec::Drain<'_, Vec<u8>> {
        self.to_host.drain(..)
    }

    /// An IP packet the kernel sent through the host TUN: OUTPUT (with conntrack), the routing decision,
    /// POSTROUTING and the neighbour, as the kernel's `ip_local_out` would; it leaves through
    /// [`Pipeline::take_emitted`].
    pub fn from_host(&mut self, packet: &[u8], rs: &CompiledRuleset, now: u64) {
        self.from_host_frame(host_frame(packet), rs, now);
    }

    /// [`Pipeline::from_host`] for a packet already in the frame [`host_frame`] made of it (what a worker
    /// hands to the flow's owner).
    pub fn from_host_frame(&mut self, frame: Vec<u8>, rs: &CompiledRuleset, now: u64) {
        self.stats.host_rx += 1;
        let ethertype = frame
            .get(12..14)
            .map_or(0, |e| u16::from_be_bytes([e[0], e[1]]));
        if ethertype != wire::ETHERTYPE_IPV4 && ethertype != wire::ETHERTYPE_IPV6 {
            self.stats.host_bad += 1;
            return;
        }
        // The kernel fragments what it sends after POSTROUTING (ip_finish_output), so its hooks see whole
        // datagrams; the TUN hands over the fragments: whole again for OUTPUT/POSTROUTING (with
        // conntrack in use), they leave in the pieces the kernel cut.
        if ethertype == wire::ETHERTYPE_IPV4 {
            let Ok(ip) = wire::parse_ipv4(&frame, ETH_HLEN) else {
                self.stats.host_bad += 1;
                return;
            };
            if ip.is_fragment && self.defrag_on {
                let Some(whole) = self.defrag.add(&frame, &ip, now, &mut self.stats) else {
                    return;
                };
                self.host_pieces = Some(HostPieces {
                    max: whole.frag_max_size,
                    pieces: whole.pieces,
                    id6: 0,
                });
                self.local_out_v4(whole.frame, rs, now);
                self.host_pieces = None;
                return;
            }
            self.local_out_v4(frame, rs, now);
        } else {
            let Ok(ip) = crate::ipv6::parse_ipv6(&frame, ETH_HLEN) else {
                self.stats.host_bad += 1;
                return;
            };
            if ip.frag.is_some() && self.defrag_on {
                match self.defrag6.add(&frame, &ip, now, &mut self.stats) {
                    crate::defrag::Frag6Outcome::Held | crate::defrag::Frag6Outcome::Dropped => {
                        return
                    }
                    crate::defrag::Frag6Outcome::Pass => {}
                    crate::defrag::Frag6Outcome::Whole(whole) => {
                        self.host_pieces = Some(HostPieces {
                            max: whole.frag_max_size,
                            pieces: whole.pieces,
                            id6: ip.frag.map_or(0, |f| f.id),
                        });
                        self.local_out_v6(whole.frame, None, rs, now);
                        self.host_pieces = None;
                        return;
                    }
                }
            }
            self.local_out_v6(frame, None, rs, now);
        }
    }

    /// A packet for the box itself: the kernel has it (or nobody does).
    fn local(&mut self, port: usize, kernel_has_copy: bool) -> Action {
        if kernel_has_copy || self.shares(port) {
            self.stats.local_to_kernel += 1;
            Action::Consumed
        } else {
            self.stats.local_no_path += 1;
            Action::Drop
        }
    }

    fn finish_forward(
        &mut self,
        frame: &mut [u8],
        ip: &Ipv4Info,
        iface: usize,
        next_hop: Ipv4Addr,
        now: u64,
    ) -> Action {
        let out_mac = self.fib.interfaces[iface].mac;
        frame[6..12].copy_from_slice(&out_mac);
        let mut mtu = self.fib.interfaces[iface].mtu as usize;
        if let Some(max) = self.reassembled {
            // leave in pieces no larger than the largest that came in (frag_max_size)
            mtu = mtu.min(max);
        }
        if ip.total_len > mtu {
            // Too big without DF (DF was answered before FORWARD): fragment as ip_fragment does; a
            // reassembled datagram in the pieces it came in (ip_do_fragment's fast path over its
            // fragment list) while they fit. The pieces wait for the neighbour, not the whole.
            let end = ETH_HLEN + ip.total_len;
            let frags = match self.reassembled {
                Some(_) => wire::refragment_ipv4(&frame[..end], ip, &self.frag_pieces, mtu),
                None => wire::fragment_ipv4(&frame[..end], ip, mtu),
            };
            let Some(frags) = frags else {
                self.stats.drop_too_big += 1;
                return Action::Drop;
            };
            self.stats.fragments_created += frags.len() as u64;
            self.stats.forwarded += 1;
            let (neigh, out, stats) = (&mut self.neigh, &mut self.emitted, &mut self.stats);
            if send_pieces(neigh, out, stats, iface, next_hop, frags, now) {
                self.send_arp_request(iface, next_hop);
            }
            return Action::Consumed;
        }
        match self.neigh.lookup(iface, next_hop, now) {
            Some(mac) => {
                frame[0..6].copy_from_slice(&mac);
                self.stats.forwarded += 1;
                Action::Forward(iface)
            }
            None => {
                // Ethernet padding is not part of the packet; queue just the packet.
                let end = ETH_HLEN + ip.total_len;
                match self.neigh.enqueue(iface, next_hop, &frame[..end], now) {
                    Miss::QueuedSendRequest => {
                        self.send_arp_request(iface, next_hop);
                        self.stats.forwarded += 1;
                    }
                    Miss::Queued => self.stats.forwarded += 1,
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
}

/// The rule-visible state of the packet's connection as the packet starts its walk after conntrack:
/// mark, labels and `ct count` bits of its entry (none for a new one).
fn ct_carry_of<A: crate::conntrack::Addr>(t: &Conntrack<A>, ct: CtResult, mut c: Carry) -> Carry {
    c.ct_mark = 0;
    c.ct_label = 0;
    c.ct_counted = 0;
    if let Some((idx, _)) = ct.entry() {
        if let Some(e) = t.get(idx) {
            c.ct_mark = e.mark;
        }
        c.ct_label = t.label(idx);
        c.ct_counted = t.counted(idx);
    }
    c
}

/// Fills `v` from the packet's entry in `t` (pending, existing or the one an ICMP error relates to);
/// `false` when it has none.
fn ct_view_of<A: crate::conntrack::Addr>(
    t: &Conntrack<A>,
    ct: CtResult,
    now: u64,
    v: &mut CtView,
) -> bool {
    let (e, reply, confirmed) = match ct {
        CtResult::New => (t.pending(), false, false),
        CtResult::Existing { idx, dir, .. } | CtResult::Related { idx, dir } => {
            (t.get(idx), dir == crate::conntrack::Dir::Reply, true)
        }
        _ => return false,
    };
    let Some(e) = e else {
        return false;
    };
    let tv = |x: crate::conntrack::Tuple<A>| {
        let mut o = CtTupleView {
            sport: x.sport,
            dport: x.dport,
            ..Default::default()
        };
        x.src.put(&mut o.src);
        x.dst.put(&mut o.dst);
        o
    };
    let acct = t.sysctls().acct;
    *v = CtView {
        status: (e.status & !crate::conntrack::status::STEERED) as u32,
        reply,
        expiration_ms: if confirmed {
            e.expires_in_ms(crate::conntrack::ms(now))
        } else {
            0
        },
        l3proto: A::NFPROTO,
        protocol: e.proto,
        zone: e.zone,
        tuples: [tv(e.orig()), tv(e.reply())],
        packets: if acct { e.packets } else { [0; 2] },
        bytes: if acct { e.bytes } else { [0; 2] },
    };
    true
}

/// Evaluates the base chains on `hook` whose priority is in `min_prio..=max_prio`, in order. `accept`
/// ends only its own chain; drop and reject end the packet. nat chains run in the NAT step (see
/// nat_hooks), at their fixed place in the hook.
#[allow(clippy::too_many_arguments)]
fn run_hook(
    rs: &CompiledRuleset,
    hook: Hook,
    pkt: &mut PacketCtx,
    counters: &mut [CounterValue],
    trace: &mut Trace,
    min_prio: i32,
    max_prio: i32,
) -> Verdict {
    pkt.hook = hook;
    let all = rs.hook_chains(pkt.nfproto, hook);
    let lo = all.partition_point(|&c| rs.chain_priority(c).unwrap_or(0) < min_prio);
    let hi = all.partition_point(|&c| rs.chain_priority(c).unwrap_or(0) <= max_prio);
    if lo >= hi {
        return Verdict::Accept;
    }
    if trace.active() {
        let (iif, oif) = (pkt.iifname, pkt.oifname);
        let mut rec = trace.recorder(hook, iif, oif);
        for &chain in &all[lo..hi] {
            if rs.is_nat_chain(chain) {
                continue;
            }
            rec.base(chain);
            let v = rs.eval_chain_traced(chain, pkt, counters, &mut rec);
            if v.is_drop() {
                return v;
            }
        }
        return Verdict::Accept;
    }
    for &chain in &all[lo..hi] {
        if rs.is_nat_chain(chain) {
            continue;
        }
        let v = rs.eval_chain(chain, pkt, counters);
        if v.is_drop() {
            return v;
        }
    }
    Verdict::Accept
}

/// Evaluates a list of base chains in order (ingress, locally generated packets).
fn run_list(
    rs: &CompiledRuleset,
    chains: &[ChainId],
    pkt: &mut PacketCtx,
    counters: &mut [CounterValue],
    trace: &mut Trace,
) -> Verdict {
    if trace.active() {
        let (iif, oif) = (pkt.iifname, pkt.oifname);
        let mut rec = trace.recorder(pkt.hook, iif, oif);
        for &chain in chains {
            if rs.is_nat_chain(chain) {
                continue;
            }
            rec.base(chain);
            let v = rs.eval_chain_traced(chain, pkt, counters, &mut rec);
            if v.is_drop() {
                return v;
            }
        }
        return Verdict::Accept;
    }
    for &chain in chains {
        if rs.is_nat_chain(chain) {
            continue;
        }
        let v = rs.eval_chain(chain, pkt, counters);
        if v.is_drop() {
            return v;
        }
    }
    Verdict::Accept
}

/// The index of the first chain that runs after conntrack.
/// NF_IP_PRI_CONNTRACK: chains with a lower priority see packets before conntrack does.
pub const NF_IP_PRI_CONNTRACK: i32 = -200;

/// What the rules see of an IPv4 packet at `hook` (no conntrack, no marks yet).
fn packet_ctx<'a>(
    fib: &'a crate::fib::Fib,
    frame: &'a mut [u8],
    ip: &Ipv4Info,
    iifname: &'a str,
    iif: u32,
    hook: Hook,
    now: u64,
) -> PacketCtx<'a> {
    PacketCtx {
        frame,
        nh_off: ip.nh_off,
        th_off: ip.th_off,
        nfproto: NfProto::Ipv4,
        l4proto: ip.proto,
        len: ip.total_len as u32,
        iif,
        iifname,
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
        fib: Some(fib),
        payload_writes: 0,
    }
}

/// The rule context of an IPv4 packet (rebuilt after a NAT rewrite, carrying what rules set).
fn ctx<'a>(
    fib: &'a crate::fib::Fib,
    frame: &'a mut [u8],
    ip: &Ipv4Info,
    in_ifc: &'a crate::fib::InterfaceConfig,
    out_ifc: Option<&'a crate::fib::InterfaceConfig>,
    ct: CtResult,
    carry: Carry,
    view: Option<&'a CtView>,
    conncount: &'a ConnCounts,
    hook: Hook,
) -> PacketCtx<'a> {
    PacketCtx {
        frame,
        nh_off: ETH_HLEN,
        th_off: ip.th_off,
        nfproto: NfProto::Ipv4,
        l4proto: ip.proto,
        len: ip.total_len as u32,
        iif: in_ifc.ifindex,
        iifname: &in_ifc.name,
        oif: out_ifc.map_or(0, |o| o.ifindex),
        oifname: out_ifc.map_or("", |o| o.name.as_str()),
        mark: carry.mark,
        ct_state: ct.state(),
        ct_mark: carry.ct_mark,
        ct_label: carry.ct_label,
        ct_view: view,
        conncount: Some(conncount),
        ct_counted: carry.ct_counted,
        hook,
        nftrace: carry.nftrace,
        now: carry.now,
        fib: Some(fib),
        payload_writes: 0,
    }
}
