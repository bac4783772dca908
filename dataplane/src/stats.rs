//! Named per-worker counters. Every rare path bumps one; the control plane sums them across workers.
//!
//! Declared once, with help strings, in the `worker_stats!` list (as VPP declares node counters): the struct,
//! its names and its help texts all come from that one list.

macro_rules! worker_stats {
    ($($name:ident: $help:literal,)*) => {
        /// Plain (non-atomic) counters owned by one worker; snapshots are sent to the control plane.
        #[derive(Clone, Debug, Default, PartialEq, Eq)]
        pub struct WorkerStats {
            $(#[doc = $help] pub $name: u64,)*
        }

        impl WorkerStats {
            /// `(name, help)` of every counter, in declaration order.
            pub const FIELDS: &'static [(&'static str, &'static str)] = &[$((stringify!($name), $help),)*];

            /// Values in the order of [`WorkerStats::FIELDS`].
            pub fn values(&self) -> Vec<u64> {
                vec![$(self.$name,)*]
            }

            /// Adds `other` into `self` (to sum workers).
            pub fn add(&mut self, other: &WorkerStats) {
                $(self.$name += other.$name;)*
            }
        }
    };
}

worker_stats! {
    rx_frames: "frames received from all ports",
    rx_kernel_copies: "frames received that the kernel stack also received (ARP tap, AF_PACKET)",
    tx_frames: "frames handed to ports for transmission",
    tx_ring_full: "frames dropped because a TX ring was full",
    forwarded: "IPv4 packets forwarded",
    dropped_by_rule: "packets dropped by a rule or a chain policy",
    drop_parse_error: "frames dropped because a header was truncated or malformed",
    drop_bad_ip_checksum: "IPv4 packets dropped for a bad header checksum",
    drop_not_for_us: "unicast frames for another MAC address",
    drop_no_route: "packets with no route to their destination",
    drop_ttl_exceeded: "packets whose TTL ran out",
    drop_too_big: "packets larger than the egress MTU with DF set",
    drop_unsupported: "frames of a protocol the dataplane does not forward (VLAN, non-IP)",
    local_to_kernel: "packets for the appliance's own addresses left to the kernel stack",
    local_no_path: "packets for the appliance's own addresses with no path to the kernel",
    local_to_host: "packets for the appliance's own addresses INPUT accepted and handed to the kernel through the host TUN",
    host_rx: "packets the kernel sent through the host TUN (run through OUTPUT and POSTROUTING)",
    icmp_redirects_sent: "ICMP host redirects sent to senders whose packet left by the interface it came in on",
    icmp_redirects_limited: "ICMP redirects not sent because of the per-sender redirect limit",
    host_tx_failed: "packets for the kernel the host TUN refused",
    host_bad: "packets from the host TUN that were not valid IPv4/IPv6",
    arp_requests_sent: "ARP requests sent to resolve next hops",
    arp_replies_sent: "ARP replies sent for the appliance's own addresses",
    arp_learned: "neighbour entries learned or refreshed from ARP",
    neigh_pending_overflow: "packets dropped because the neighbour's pending queue was full",
    neigh_failed: "packets dropped because the next hop did not answer ARP",
    ct_new: "connections confirmed into the conntrack table (conntrack -S insert)",
    ct_invalid: "packets conntrack classified as invalid",
    ct_error: "packets with a malformed or impossible transport header for conntrack (conntrack -S error)",
    ct_expired: "conntrack entries removed on timeout",
    ct_table_full: "new connections refused because the conntrack table was full (conntrack -S drop)",
    ct_early_drop: "non-assured conntrack entries evicted to make room for a new connection",
    ct_insert_failed: "new connections dropped at confirmation because a tuple was already taken",
    nat_bindings: "new connections bound by a NAT statement (snat, dnat, masquerade, redirect)",
    nat_port_exhausted: "new connections dropped because every port of the NAT range was taken",
    nat_no_address: "new connections dropped because masquerade/redirect found no address to use",
    nat_icmp_errors: "ICMP errors about NATed connections translated (outer and quoted headers)",
    steer_failed: "connections on the box's own addresses whose frames could not be steered to sluice",
    generation_switches: "times the worker picked up a new ruleset generation",
    handoff_sent: "frames passed to the worker that owns their flow",
    handoff_received: "frames received from other workers for flows this worker owns",
    handoff_full: "frames dropped because the hand-off ring to their owner was full",
    log_lines_lost: "log statement lines dropped because too many came in one batch",
    defrag_fragments: "IPv4 fragments taken for reassembly before conntrack",
    defrag_reassembled: "IPv4 datagrams reassembled from fragments",
    defrag_invalid: "IPv4 fragments dropped as invalid or overlapping (their datagram with them)",
    defrag_overflow: "IPv4 fragments dropped because the reassembly memory or queue limit was reached",
    defrag_timeout: "IPv4 datagrams dropped because their fragments did not all arrive in time",
    fragments_created: "IPv4 fragments sent for packets larger than the egress MTU without DF",
    defrag6_fragments: "IPv6 fragments taken for reassembly before conntrack",
    defrag6_reassembled: "IPv6 datagrams reassembled from fragments",
    defrag6_invalid: "IPv6 fragments dropped as invalid or overlapping (their datagram with them), or passed on unreassembled when not a multiple of 8 bytes",
    defrag6_overflow: "IPv6 fragments dropped because the reassembly memory or queue limit was reached",
    defrag6_timeout: "IPv6 datagrams dropped because their fragments did not all arrive in time",
    fragments6_created: "IPv6 fragments sent for reassembled datagrams, cut to the largest fragment that came in",
    icmp_errors_sent: "ICMP errors sent (reject, time exceeded, unreachable, fragmentation needed)",
    icmp_rate_limited: "ICMP errors not sent because of the per-destination or global rate limit",
    reject_tcp_reset: "TCP resets sent by reject with tcp reset",
    reject_no_reply: "rejected packets the kernel would not answer (RST, fragment, bad checksum)",
    local_out_sent: "packets the appliance emitted itself that left after OUTPUT and POSTROUTING",
    local_out_dropped_by_rule: "packets the appliance emitted itself that OUTPUT or POSTROUTING dropped",
    local_out_no_route: "packets the appliance emitted itself with no route to their destination",
    dup_sent: "copies sent by dup statements and packets sent by fwd statements",
    dup_no_device: "dup/fwd statements naming a device the appliance does not have (nothing sent)",
    dup_no_route: "dup copies with no route to their next hop (nothing sent)",
    forwarded6: "IPv6 packets forwarded",
    drop_ip6_invalid: "IPv6 packets dropped on input as ip6_rcv_core drops them (short, bad version or length, bad addresses)",
    drop_ip6_hbh: "IPv6 packets dropped for malformed or discarding hop-by-hop options (ipv6_parse_hopopts)",
    ip6_exthdr_unparsed: "IPv6 packets whose extension-header chain cannot be walked (no transport header for rules, no conntrack; forwarded as the kernel does)",
    drop_ip6_scope: "IPv6 packets not forwarded because of their address scope (link-local source or destination, multicast)",
    drop_hop_limit: "IPv6 packets whose hop limit ran out",
    drop_too_big6: "IPv6 packets larger than the egress MTU (answered with packet too big)",
    ndp_bad: "neighbour discovery messages dropped as invalid (hop limit, checksum, options)",
    ndp_learned: "IPv6 neighbour entries learned or refreshed from NS/NA",
    ndp_solicits_sent: "neighbour solicitations sent to resolve IPv6 next hops",
    ndp_adverts_sent: "neighbour advertisements sent for the appliance's own IPv6 addresses",
    icmp6_errors_sent: "ICMPv6 errors sent (reject, time exceeded, unreachable, packet too big)",
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_and_values_line_up_and_add_sums() {
        let mut a = WorkerStats {
            forwarded: 3,
            ..Default::default()
        };
        let b = WorkerStats {
            forwarded: 4,
            rx_frames: 1,
            ..Default::default()
        };
        a.add(&b);
        let i = WorkerStats::FIELDS
            .iter()
            .position(|(n, _)| *n == "forwarded")
            .unwrap();
        assert_eq!(a.values()[i], 7);
        assert_eq!(a.values().len(), WorkerStats::FIELDS.len());
    }
}
