//! Sending what `dup` and `fwd` statements asked for (collected by the trace recorder while the
//! packet walked its hooks): nf_dup_ipv4/6, nf_dup_netdev and nf_fwd_netdev.

use super::Pipeline;
use crate::ipv6;
use crate::neigh::Miss;
use crate::trace::DupRequest;
use crate::wire::{self, ETH_HLEN};
use rules::{CompiledRuleset, Hook};
use std::net::IpAddr;

impl Pipeline {
    /// Sends every copy the last packet's `dup`/`fwd` statements asked for. Statements the copies meet
    /// on their own way out send nothing (the kernel's `nf_skb_duplicated`).
    pub(super) fn send_dups(&mut self, rs: &CompiledRuleset, now: u64) {
        let reqs = std::mem::take(&mut self.trace.dups);
        for r in reqs {
            self.send_dup(r, rs, now);
        }
        self.trace.dups.clear();
    }

    fn send_dup(&mut self, r: DupRequest, rs: &CompiledRuleset, now: u64) {
        let dev = match &r.device {
            Some(name) => match self.fib.interfaces.iter().position(|i| &i.name == name) {
                Some(i) => Some(i),
                None => {
                    // the kernel finds no such device and sends nothing
                    self.stats.dup_no_device += 1;
                    return;
                }
            },
            None => None,
        };
        let mut frame = r.frame;
        match (r.addr, dev) {
            // netdev `dup to DEV` / `fwd to DEV`: the frame as it is, out of the device
            (None, Some(iface)) => {
                self.stats.dup_sent += 1;
                self.emitted.push((iface, frame));
            }
            (None, None) => {}
            // `fwd ip to ADDR device DEV`: nft_fwd_neigh_eval, TTL down, to the neighbour ADDR
            (Some(addr), Some(iface)) if r.fwd => {
                let mac = self.fib.interfaces[iface].mac;
                frame[6..12].copy_from_slice(&mac);
                match addr {
                    IpAddr::V4(a) => {
                        if frame.get(12..14) != Some(&wire::ETHERTYPE_IPV4.to_be_bytes()) {
                            return;
                        }
                        wire::decrement_ttl(&mut frame, ETH_HLEN);
                        self.stats.dup_sent += 1;
                        match self.neigh.lookup(iface, a, now) {
                            Some(m) => {
                                frame[0..6].copy_from_slice(&m);
                                self.emitted.push((iface, frame));
                            }
                            None => {
                                if self.neigh.enqueue(iface, a, &frame, now)
                                    == Miss::QueuedSendRequest
                                {
                                    self.send_arp_request(iface, a);
                                }
                            }
                        }
                    }
                    IpAddr::V6(a) => {
                        if frame.get(12..14) != Some(&wire::ETHERTYPE_IPV6.to_be_bytes()) {
                            return;
                        }
                        ipv6::decrement_hop_limit(&mut frame, ETH_HLEN);
                        self.stats.dup_sent += 1;
                        match self.neigh6.lookup(iface, a, now) {
                            Some(m) => {
                                frame[0..6].copy_from_slice(&m);
                                self.emitted.push((iface, frame));
                            }
                            None => {
                                if self.neigh6.enqueue(iface, a, &frame, now)
                                    == Miss::QueuedSendRequest
                                {
                                    self.send_ns(iface, a);
                                }
                            }
                        }
                    }
                }
            }
            // `dup to ADDR [device DEV]`: nf_dup_ipv4/6, a copy routed to ADDR (the next hop) and sent
            // the local way (OUTPUT, POSTROUTING) without conntrack
            (Some(IpAddr::V4(gw)), dev) => {
                let Ok(ip) = wire::parse_ipv4(&frame, ETH_HLEN) else {
                    return;
                };
                let via = match dev {
                    Some(i) => (i, gw),
                    None => match self.fib.lookup(gw) {
                        crate::fib::RouteDecision::Forward { iface, next_hop } => (iface, next_hop),
                        _ => {
                            self.stats.dup_no_route += 1;
                            return;
                        }
                    },
                };
                // DF on, so the sender hears of a smaller MTU on the copy's way; the TTL down in
                // PREROUTING and INPUT, against loops between two hosts
                let nh = ip.nh_off;
                frame[nh + 6] |= 0x40;
                if matches!(r.hook, Hook::Prerouting | Hook::Input) {
                    frame[nh + 8] = frame[nh + 8].wrapping_sub(1);
                }
                frame[nh + 10..nh + 12].fill(0);
                let c = wire::checksum(&frame[nh..nh + ip.header_len]);
                frame[nh + 10..nh + 12].copy_from_slice(&c.to_be_bytes());
                self.stats.dup_sent += 1;
                self.local_out_v4_via(frame, Some(via), false, rs, now);
            }
            (Some(IpAddr::V6(gw)), dev) => {
                let Ok(ip) = ipv6::parse_ipv6(&frame, ETH_HLEN) else {
                    return;
                };
                if matches!(r.hook, Hook::Prerouting | Hook::Input) {
                    let h = ip.nh_off + 7;
                    frame[h] = frame[h].wrapping_sub(1);
                }
                // without a device the route to the next hop decides
                let via = dev.map(|i| (i, gw)).or_else(|| self.route_out6(gw, None));
                let Some(via) = via else {
                    self.stats.dup_no_route += 1;
                    return;
                };
                self.stats.dup_sent += 1;
                self.local_out_v6_via(frame, None, Some(via), false, rs, now);
            }
        }
    }
}
