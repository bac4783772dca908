//! Packet-in → packet-out through a worker on in-memory ports with the lab ruleset: ARP, neighbour
//! resolution with a pending queue, conntrack states, the filter verdicts, TTL and checksums.

use arc_swap::ArcSwap;
use dataplane::testkit::{
    arp_frame, ipv4_frame as ipv4, lab_fib, tcp_header as tcp, with_macs as eth, CLI, CLI_MAC,
    FW_IN, FW_OUT, SRV, SRV_MAC,
};
use dataplane::wire::{self, checksum, ArpRepr, ARP_REPLY, ARP_REQUEST, ETH_HLEN};
use dataplane::{Pipeline, PipelineConfig, PortRole, Worker, WorkerConfig};
use hw::mem::{MemHandle, MemPort};
use hw::{Batch, Port};
use std::net::Ipv4Addr;
use std::sync::Arc;

const LAB: &str = include_str!("../../docs/examples/lab.nft");

struct Rig {
    worker: Worker,
    live: Arc<ArcSwap<rules::CompiledRuleset>>,
    batch: Batch,
    cli: MemHandle,
    srv: MemHandle,
    now: u64,
}

impl Rig {
    fn new(ruleset: &str) -> Rig {
        let fib = lab_fib();
        let (p0, cli) = MemPort::new("fw-cli", FW_IN);
        let (p1, srv) = MemPort::new("fw-srv", FW_OUT);
        let ports: Vec<Box<dyn Port>> = vec![Box::new(p0), Box::new(p1)];
        let roles = vec![
            PortRole {
                kernel_shares: false
            };
            2
        ];
        let pipeline = Pipeline::new(fib, roles, &PipelineConfig::default());
        let ast = rules::parse_ruleset(ruleset, "test.nft").unwrap();
        let live = Arc::new(ArcSwap::from_pointee(rules::compile(&ast).unwrap()));
        let (_tx, rx) = std::sync::mpsc::channel();
        std::mem::forget(_tx);
        let worker = Worker::new(
            0,
            ports,
            pipeline,
            live.clone(),
            rx,
            WorkerConfig::default(),
        );
        Rig {
            worker,
            live,
            batch: Batch::with_capacity(64),
            cli,
            srv,
            now: 1_000,
        }
    }

    fn step(&mut self) {
        self.now += 1_000;
        self.worker.poll_once(&mut self.batch, self.now);
    }

    fn stats(&self) -> dataplane::WorkerStats {
        self.worker.snapshot(false).stats
    }
}

fn as_arp(frame: &[u8]) -> Option<ArpRepr> {
    (wire::parse_eth(frame).ok()?.ethertype == wire::ETHERTYPE_ARP)
        .then(|| ArpRepr::parse(&frame[ETH_HLEN..]).unwrap())
}

/// Sends a SYN cli→srv:80, answers the ARP the appliance asks, and returns the forwarded SYN.
fn open_http(rig: &mut Rig) -> Vec<u8> {
    rig.cli.inject(&eth(
        FW_IN,
        CLI_MAC,
        ipv4(CLI, SRV, 6, &tcp(40000, 80, wire::TCP_SYN), 64),
    ));
    rig.step();
    let sent = rig.srv.take_sent();
    assert_eq!(sent.len(), 1, "one ARP request expected");
    let req = as_arp(&sent[0]).expect("ARP request");
    assert_eq!(
        (req.op, req.target_ip, req.sender_ip),
        (
            ARP_REQUEST,
            Ipv4Addr::from(SRV),
            Ipv4Addr::new(198, 51, 100, 1)
        )
    );
    rig.srv.inject(&arp_frame(
        ARP_REPLY,
        SRV_MAC,
        SRV,
        FW_OUT,
        [198, 51, 100, 1],
        FW_OUT,
    ));
    rig.step();
    let mut sent = rig.srv.take_sent();
    assert_eq!(
        sent.len(),
        1,
        "the queued SYN is released once the neighbour answers"
    );
    sent.pop().unwrap()
}

#[test]
fn http_syn_is_forwarded_with_ttl_decremented_and_valid_checksum() {
    let mut rig = Rig::new(LAB);
    let syn = open_http(&mut rig);
    assert_eq!(&syn[0..6], &SRV_MAC);
    assert_eq!(&syn[6..12], &FW_OUT);
    assert_eq!(syn[ETH_HLEN + 8], 63);
    assert_eq!(checksum(&syn[ETH_HLEN..ETH_HLEN + 20]), 0);
    let s = rig.stats();
    assert_eq!((s.forwarded, s.ct_new, s.arp_requests_sent), (1, 1, 1));
}

#[test]
fn reply_direction_is_established_and_needs_its_own_arp() {
    let mut rig = Rig::new(LAB);
    open_http(&mut rig);
    rig.srv.inject(&eth(
        FW_OUT,
        SRV_MAC,
        ipv4(
            SRV,
            CLI,
            6,
            &tcp(80, 40000, wire::TCP_SYN | wire::TCP_ACK),
            64,
        ),
    ));
    rig.step();
    let req = as_arp(&rig.cli.take_sent()[0]).expect("ARP for the client");
    assert_eq!(req.target_ip, Ipv4Addr::from(CLI));
    rig.cli.inject(&arp_frame(
        ARP_REPLY,
        CLI_MAC,
        CLI,
        FW_IN,
        [192, 0, 2, 1],
        FW_IN,
    ));
    rig.step();
    let synack = rig.cli.take_sent();
    assert_eq!(synack.len(), 1);
    assert_eq!(&synack[0][0..6], &CLI_MAC);
    // Later packets go straight through, with no ARP.
    rig.cli.inject(&eth(
        FW_IN,
        CLI_MAC,
        ipv4(CLI, SRV, 6, &tcp(40000, 80, wire::TCP_ACK), 64),
    ));
    rig.step();
    assert_eq!(rig.srv.take_sent().len(), 1);
    assert_eq!(rig.stats().dropped_by_rule, 0);
}

#[test]
fn denied_port_stray_packets_and_expired_ttl_are_dropped_and_counted() {
    let mut rig = Rig::new(LAB);
    rig.cli.inject(&eth(
        FW_IN,
        CLI_MAC,
        ipv4(CLI, SRV, 6, &tcp(40001, 8080, wire::TCP_SYN), 64),
    ));
    // A SYN/ACK that belongs to no connection: conntrack says invalid, the ruleset drops it.
    rig.srv.inject(&eth(
        FW_OUT,
        SRV_MAC,
        ipv4(
            SRV,
            CLI,
            6,
            &tcp(80, 40002, wire::TCP_SYN | wire::TCP_ACK),
            64,
        ),
    ));
    rig.cli.inject(&eth(
        FW_IN,
        CLI_MAC,
        ipv4(CLI, SRV, 6, &tcp(40003, 80, wire::TCP_SYN), 1),
    ));
    rig.step();
    assert!(rig.srv.take_sent().is_empty());
    // The expired TTL is answered with ICMP time exceeded, which first needs the client's address.
    let to_cli = rig.cli.take_sent();
    assert_eq!(to_cli.len(), 1);
    assert_eq!(as_arp(&to_cli[0]).unwrap().target_ip, Ipv4Addr::from(CLI));
    let s = rig.stats();
    assert_eq!(s.icmp_errors_sent, 1);
    assert_eq!(s.dropped_by_rule, 2);
    // the SYN/ACK, and the time-exceeded error about a connection never confirmed
    assert_eq!(s.ct_invalid, 2);
    assert_eq!(s.drop_ttl_exceeded, 1);
    // Rule counters: `ct state invalid counter drop` and the final `counter drop` each saw one packet.
    let counters = rig.worker.snapshot(false).counters;
    let hits: Vec<u64> = counters.iter().map(|c| c.packets).collect();
    assert_eq!(hits, vec![1, 0, 0, 1], "{hits:?}");
}

#[test]
fn answers_arp_for_its_own_address_when_the_kernel_does_not() {
    let mut rig = Rig::new(LAB);
    rig.cli.inject(&arp_frame(
        ARP_REQUEST,
        CLI_MAC,
        CLI,
        [0; 6],
        [192, 0, 2, 1],
        [0xff; 6],
    ));
    rig.step();
    let sent = rig.cli.take_sent();
    let reply = as_arp(&sent[0]).expect("ARP reply");
    assert_eq!(
        (reply.op, reply.sender_mac, reply.target_mac),
        (ARP_REPLY, FW_IN, CLI_MAC)
    );
}

#[test]
fn malformed_frames_never_panic_and_are_counted() {
    let mut rig = Rig::new(LAB);
    let good = eth(
        FW_IN,
        CLI_MAC,
        ipv4(CLI, SRV, 6, &tcp(40000, 80, wire::TCP_SYN), 64),
    );
    for cut in 0..good.len() {
        rig.cli.inject(&good[..cut]);
    }
    let mut bad_csum = good.clone();
    bad_csum[ETH_HLEN + 10] ^= 0xff;
    rig.cli.inject(&bad_csum);
    for _ in 0..4 {
        rig.step();
    }
    let s = rig.stats();
    assert_eq!(s.drop_bad_ip_checksum, 1);
    assert!(s.drop_parse_error >= 20, "{s:?}");
    assert_eq!(s.forwarded, 0);
}

#[test]
fn a_new_generation_takes_effect_on_the_next_batch_and_connections_survive_it() {
    let mut rig = Rig::new(LAB);
    open_http(&mut rig);
    rig.cli.inject(&eth(
        FW_IN,
        CLI_MAC,
        ipv4(CLI, SRV, 6, &tcp(40001, 8080, wire::TCP_SYN), 64),
    ));
    rig.step();
    assert!(
        rig.srv.take_sent().is_empty(),
        "8080 is denied by the lab ruleset"
    );

    let open_all = "table inet filter {\n\tchain forward {\n\t\ttype filter hook forward priority filter; policy accept;\n\t}\n}\n";
    rig.live.store(Arc::new(
        rules::compile(&rules::parse_ruleset(open_all, "open.nft").unwrap()).unwrap(),
    ));
    rig.cli.inject(&eth(
        FW_IN,
        CLI_MAC,
        ipv4(CLI, SRV, 6, &tcp(40002, 8080, wire::TCP_SYN), 64),
    ));
    // The HTTP connection opened under the old generation is still tracked.
    rig.cli.inject(&eth(
        FW_IN,
        CLI_MAC,
        ipv4(CLI, SRV, 6, &tcp(40000, 80, wire::TCP_ACK), 64),
    ));
    rig.step();
    assert_eq!(rig.srv.take_sent().len(), 2);
    let s = rig.stats();
    assert_eq!(s.generation_switches, 2);
    assert_eq!(rig.worker.snapshot(false).conntrack_len, 2);
}

/// Two workers, each owning "queue q" of both interfaces, joined by the hand-off mesh.
struct TwoWorkers {
    workers: Vec<Worker>,
    cli: Vec<MemHandle>,
    srv: Vec<MemHandle>,
    batch: Batch,
    now: u64,
}

impl TwoWorkers {
    fn new() -> TwoWorkers {
        TwoWorkers::with(LAB, false)
    }

    /// Two workers running `ruleset`; with `neighbours`, both end hosts are static neighbours.
    fn with(ruleset: &str, neighbours: bool) -> TwoWorkers {
        let ast = rules::parse_ruleset(ruleset, "test.nft").unwrap();
        let live = Arc::new(ArcSwap::from_pointee(rules::compile(&ast).unwrap()));
        let fib = lab_fib();
        let mut ends = dataplane::handoff::mesh(2, 64).into_iter();
        let (mut workers, mut cli, mut srv) = (Vec::new(), Vec::new(), Vec::new());
        for id in 0..2 {
            let (p0, h0) = MemPort::new("fw-cli", FW_IN);
            let (p1, h1) = MemPort::new("fw-srv", FW_OUT);
            let config = PipelineConfig {
                workers: 2,
                ..PipelineConfig::default()
            };
            let mut pipeline = Pipeline::new(
                fib.clone(),
                vec![
                    PortRole {
                        kernel_shares: false
                    };
                    2
                ],
                &config,
            );
            if neighbours {
                pipeline.add_static_neighbour(0, CLI.into(), CLI_MAC);
                pipeline.add_static_neighbour(1, SRV.into(), SRV_MAC);
            }
            let (tx, rx) = std::sync::mpsc::channel();
            std::mem::forget(tx);
            let ports: Vec<Box<dyn Port>> = vec![Box::new(p0), Box::new(p1)];
            let w = Worker::new(
                id,
                ports,
                pipeline,
                live.clone(),
                rx,
                WorkerConfig::default(),
            )
            .with_handoff(ends.next().unwrap());
            workers.push(w);
            cli.push(h0);
            srv.push(h1);
        }
        TwoWorkers {
            workers,
            cli,
            srv,
            batch: Batch::with_capacity(64),
            now: 1_000,
        }
    }

    fn step(&mut self) {
        for _ in 0..2 {
            self.now += 1_000;
            for w in &mut self.workers {
                w.poll_once(&mut self.batch, self.now);
            }
        }
    }

    fn sent(&self, handles: &[MemHandle]) -> Vec<(usize, Vec<u8>)> {
        handles
            .iter()
            .enumerate()
            .flat_map(|(i, h)| h.take_sent().into_iter().map(move |f| (i, f)))
            .collect()
    }
}

#[test]
fn two_workers_keep_both_directions_of_a_flow_on_its_owner() {
    let mut rig = TwoWorkers::new();
    let syn = eth(
        FW_IN,
        CLI_MAC,
        ipv4(CLI, SRV, 6, &tcp(40000, 80, wire::TCP_SYN), 64),
    );
    let owner = dataplane::handoff::flow_owner(&syn, 2).unwrap();
    let other = 1 - owner;
    // The SYN arrives at the worker that does not own the flow.
    rig.cli[other].inject(&syn);
    rig.step();
    let arp = rig.sent(&rig.srv);
    assert_eq!(arp.len(), 1);
    assert_eq!(arp[0].0, owner, "the owner resolves the next hop");
    // Every worker sees ARP (each queue's port has its own tap on a real NIC).
    for h in &rig.srv {
        h.inject(&arp_frame(
            ARP_REPLY,
            SRV_MAC,
            SRV,
            FW_OUT,
            [198, 51, 100, 1],
            FW_OUT,
        ));
    }
    for h in &rig.cli {
        h.inject(&arp_frame(
            ARP_REPLY,
            CLI_MAC,
            CLI,
            FW_IN,
            [192, 0, 2, 1],
            FW_IN,
        ));
    }
    rig.step();
    let fwd = rig.sent(&rig.srv);
    assert_eq!(fwd.len(), 1, "SYN forwarded once the neighbour answered");
    // The SYN/ACK comes back on the other worker's queue: without the hand-off it would meet an empty
    // conntrack table, count as invalid and be dropped by the lab ruleset.
    rig.srv[other].inject(&eth(
        FW_OUT,
        SRV_MAC,
        ipv4(
            SRV,
            CLI,
            6,
            &tcp(80, 40000, wire::TCP_SYN | wire::TCP_ACK),
            64,
        ),
    ));
    rig.step();
    let back = rig.sent(&rig.cli);
    assert_eq!(back.len(), 1, "SYN/ACK forwarded");
    let o = rig.workers[owner].snapshot(false);
    let n = rig.workers[other].snapshot(false);
    assert_eq!(n.stats.handoff_sent, 2);
    assert_eq!(o.stats.handoff_received, 2);
    assert_eq!((o.stats.dropped_by_rule, n.stats.dropped_by_rule), (0, 0));
    assert_eq!((o.conntrack_len, n.conntrack_len), (1, 0));
}

/// The (src, sport, dst, dport) of a forwarded TCP frame.
fn tcp_ends(f: &[u8]) -> (Ipv4Addr, u16, Ipv4Addr, u16) {
    let ip = wire::parse_ipv4(f, ETH_HLEN).unwrap();
    (ip.src, ip.sport, ip.dst, ip.dport)
}

/// Opens `flows` connections through the two workers (each SYN arrives at the worker that does not own
/// it) and answers each from the server on queue `reply_q`; returns how many SYN/ACKs reached the client
/// translated back to what it sent to.
fn nat_flows_through_two_workers(rig: &mut TwoWorkers, dst: ([u8; 4], u16), flows: u16) -> usize {
    let mut ok = 0;
    for i in 0..flows {
        let sport = 40000 + i;
        let syn = eth(
            FW_IN,
            CLI_MAC,
            ipv4(CLI, dst.0, 6, &tcp(sport, dst.1, wire::TCP_SYN), 64),
        );
        let owner = dataplane::handoff::flow_owner(&syn, 2).unwrap();
        rig.cli[1 - owner].inject(&syn);
        rig.step();
        let fwd = rig.sent(&rig.srv);
        assert_eq!(
            fwd.len(),
            1,
            "SYN {i} forwarded: {:?}",
            rig.workers
                .iter()
                .map(|w| w.snapshot(false).stats)
                .collect::<Vec<_>>()
        );
        let (s, sp, d, dp) = tcp_ends(&fwd[0].1);
        assert_eq!(s, Ipv4Addr::from(CLI), "DNAT leaves the source address");
        // The server answers the tuple it saw, on either queue.
        let reply = eth(
            FW_OUT,
            SRV_MAC,
            ipv4(
                d.octets(),
                s.octets(),
                6,
                &tcp(dp, sp, wire::TCP_SYN | wire::TCP_ACK),
                64,
            ),
        );
        rig.srv[(i % 2) as usize].inject(&reply);
        rig.step();
        let back = rig.sent(&rig.cli);
        if back.len() == 1 && tcp_ends(&back[0].1) == (dst.0.into(), dst.1, CLI.into(), sport) {
            ok += 1;
        }
    }
    ok
}

const DNAT: &str = "table ip nat {
    chain pre {
        type nat hook prerouting priority dstnat; policy accept;
        ip daddr 198.51.100.9 tcp dport 8080 dnat to 198.51.100.2:80
        ip daddr 198.51.100.10 dnat to 198.51.100.2
    }
}
table inet filter {
    chain forward {
        type filter hook forward priority filter; policy drop;
        ct state established,related accept
        ct state new ct status dnat accept
    }
}";

#[test]
fn two_workers_dnat_replies_reach_the_owner_of_the_connection() {
    let mut rig = TwoWorkers::with(DNAT, true);
    // a port forward (address and port change) and an address-only forward
    for dst in [([198, 51, 100, 9], 8080), ([198, 51, 100, 10], 80)] {
        assert_eq!(
            nat_flows_through_two_workers(&mut rig, dst, 16),
            16,
            "{dst:?}"
        );
    }
    let stats: Vec<_> = rig
        .workers
        .iter()
        .map(|w| w.snapshot(false).stats)
        .collect();
    assert!(stats
        .iter()
        .all(|s| s.dropped_by_rule == 0 && s.nat_port_exhausted == 0));
}

const SNAT: &str = "table ip nat {
    chain post {
        type nat hook postrouting priority srcnat; policy accept;
        oifname \"fw-srv\" snat to 198.51.100.1
    }
}
table inet filter {
    chain forward {
        type filter hook forward priority filter; policy drop;
        ct state established,related accept
        ct state new accept
    }
}";

#[test]
fn two_workers_snat_replies_reach_the_owner_of_the_connection() {
    let mut rig = TwoWorkers::with(SNAT, true);
    let mut ok = 0;
    for i in 0..16u16 {
        let sport = 41000 + i;
        let syn = eth(
            FW_IN,
            CLI_MAC,
            ipv4(CLI, SRV, 6, &tcp(sport, 80, wire::TCP_SYN), 64),
        );
        let owner = dataplane::handoff::flow_owner(&syn, 2).unwrap();
        rig.cli[1 - owner].inject(&syn);
        rig.step();
        let fwd = rig.sent(&rig.srv);
        assert_eq!(fwd.len(), 1);
        let (s, sp, d, dp) = tcp_ends(&fwd[0].1);
        assert_eq!(s, Ipv4Addr::new(198, 51, 100, 1));
        // the reply hashes to the owner of the original direction
        let reply = eth(
            FW_OUT,
            SRV_MAC,
            ipv4(
                d.octets(),
                s.octets(),
                6,
                &tcp(dp, sp, wire::TCP_SYN | wire::TCP_ACK),
                64,
            ),
        );
        assert_eq!(dataplane::handoff::flow_owner(&reply, 2), Some(owner));
        rig.srv[(i % 2) as usize].inject(&reply);
        rig.step();
        let back = rig.sent(&rig.cli);
        if back.len() == 1 && tcp_ends(&back[0].1) == (SRV.into(), 80, CLI.into(), sport) {
            ok += 1;
        }
    }
    assert_eq!(ok, 16);
}
