//! The exception path to the kernel behind the host TUN, packet-in → packet-out: what is for the box goes
//! through PREROUTING and INPUT and is handed over as an IP packet; what the kernel sends comes back
//! through OUTPUT (with conntrack: the kernel's answer is `established`) and POSTROUTING to the wire.

use dataplane::testkit::*;
use dataplane::wire::ETH_HLEN;
use dataplane::{Action, Pipeline, PipelineConfig, PortRole};
use rules::CompiledRuleset;
use std::sync::Arc;

const HOST_FIREWALL: &str = "
table inet filter {
    chain input {
        type filter hook input priority filter; policy drop;
        ct state established,related counter accept
        tcp dport 22 counter accept
        meta l4proto ipv6-icmp accept
    }
    chain output {
        type filter hook output priority filter; policy drop;
        ct state established,related counter accept
        udp dport 53 counter accept
    }
}";

struct Rig {
    p: Pipeline,
    rs: Arc<CompiledRuleset>,
    now: u64,
}

impl Rig {
    fn new(src: &str) -> Rig {
        let ast = rules::parse_ruleset(src, "t.nft").unwrap_or_else(|e| panic!("{e}"));
        let rs = Arc::new(rules::compile(&ast).unwrap_or_else(|e| panic!("{e}")));
        let config = PipelineConfig {
            host_path: true,
            ..Default::default()
        };
        let roles = vec![
            PortRole {
                kernel_shares: false
            };
            2
        ];
        let mut p = Pipeline::new(lab_fib(), roles, &config);
        p.add_static_neighbour(0, CLI.into(), CLI_MAC);
        p.add_static_neighbour(1, SRV.into(), SRV_MAC);
        p.add_static_neighbour6(0, CLI6, CLI_MAC);
        p.add_static_neighbour6(1, SRV6, SRV_MAC);
        p.use_generation(&rs);
        Rig {
            p,
            rs,
            now: 1_000_000_000,
        }
    }

    fn input(&mut self, port: usize, frame: Vec<u8>) -> Action {
        let mut f = frame;
        let len = f.len();
        self.now += 1000;
        self.p.process(&mut f, len, port, false, &self.rs, self.now)
    }

    fn to_host(&mut self) -> Vec<Vec<u8>> {
        self.p.take_to_host().collect()
    }

    fn from_host(&mut self, frame: Vec<u8>) -> Vec<(usize, Vec<u8>)> {
        self.now += 1000;
        self.p.from_host(&frame[ETH_HLEN..], &self.rs, self.now);
        self.p.take_emitted().collect()
    }
}

fn at_fw(frame: Vec<u8>) -> Vec<u8> {
    with_macs(FW_IN, CLI_MAC, frame)
}

#[test]
fn input_decides_what_reaches_the_kernel_and_its_answers_leave_as_established() {
    let mut r = Rig::new(HOST_FIREWALL);
    let fw = [192, 0, 2, 1];
    // ssh is let in: the kernel gets the IP packet as it arrived
    let syn = at_fw(ipv4_frame(CLI, fw, 6, &tcp_header(40000, 22, 0x02), 64));
    assert_eq!(r.input(0, syn.clone()), Action::Consumed);
    let got = r.to_host();
    assert_eq!(got, vec![syn[ETH_HLEN..].to_vec()]);
    // telnet is not
    let other = at_fw(ipv4_frame(CLI, fw, 6, &tcp_header(40001, 23, 0x02), 64));
    assert_eq!(r.input(0, other), Action::Drop);
    assert!(r.to_host().is_empty());
    assert_eq!(r.p.stats.local_to_host, 1);

    // the kernel's SYN-ACK is established for OUTPUT, whose policy is drop
    let synack = ipv4_frame(fw, CLI, 6, &tcp_header(22, 40000, 0x12), 64);
    let out = r.from_host(synack.clone());
    assert_eq!(out.len(), 1, "{:?}", r.p.stats);
    let (port, frame) = &out[0];
    assert_eq!(*port, 0);
    assert_eq!(&frame[0..6], &CLI_MAC);
    assert_eq!(&frame[6..12], &FW_IN);
    assert_eq!(&frame[ETH_HLEN..], &synack[ETH_HLEN..]);
    assert_eq!(r.p.stats.host_rx, 1);

    // a connection the kernel opens itself: only what OUTPUT lets out leaves
    let dns = ipv4_frame([198, 51, 100, 1], SRV, 17, &udp_datagram(5353, 53, 4), 64);
    let out = r.from_host(dns);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, 1);
    let ntp = ipv4_frame([198, 51, 100, 1], SRV, 17, &udp_datagram(5353, 123, 4), 64);
    assert!(r.from_host(ntp).is_empty());
    assert_eq!(r.p.stats.local_out_dropped_by_rule, 1);
    // and the answer to the kernel's query is let in as established
    let answer = with_macs(
        FW_OUT,
        SRV_MAC,
        ipv4_frame(SRV, [198, 51, 100, 1], 17, &udp_datagram(53, 5353, 4), 64),
    );
    assert_eq!(r.input(1, answer.clone()), Action::Consumed);
    assert_eq!(r.to_host(), vec![answer[ETH_HLEN..].to_vec()]);
}

#[test]
fn ipv6_takes_the_same_path() {
    let mut r = Rig::new(HOST_FIREWALL);
    let req = at_fw(ipv6_frame(CLI6, FW_IN6, 58, &icmp6_echo(9, 1), 64));
    let mut req = req;
    fix_l4_checksum_v6(&mut req);
    assert_eq!(r.input(0, req.clone()), Action::Consumed);
    assert_eq!(r.to_host(), vec![req[ETH_HLEN..].to_vec()]);
    let mut reply_l4 = icmp6_echo(9, 1);
    reply_l4[0] = 129;
    let mut reply = ipv6_frame(FW_IN6, CLI6, 58, &reply_l4, 64);
    fix_l4_checksum_v6(&mut reply);
    let out = r.from_host(reply.clone());
    assert_eq!(out.len(), 1, "{:?}", r.p.stats);
    assert_eq!(out[0].0, 0);
    assert_eq!(&out[0].1[ETH_HLEN..], &reply[ETH_HLEN..]);
    // ssh over IPv6 to the box is let in, telnet is not
    let syn = at_fw(ipv6_frame(
        CLI6,
        FW_IN6,
        6,
        &tcp_header(40000, 22, 0x02),
        64,
    ));
    assert_eq!(r.input(0, syn), Action::Consumed);
    let telnet = at_fw(ipv6_frame(
        CLI6,
        FW_IN6,
        6,
        &tcp_header(40000, 23, 0x02),
        64,
    ));
    assert_eq!(r.input(0, telnet), Action::Drop);
    assert_eq!(r.to_host().len(), 1);
}

#[test]
fn garbage_from_the_kernel_is_counted_not_sent() {
    let mut r = Rig::new(HOST_FIREWALL);
    r.p.from_host(&[0x45, 0, 0], &r.rs.clone(), 1);
    r.p.from_host(&[0x10, 1, 2, 3], &r.rs.clone(), 1);
    r.p.from_host(&[], &r.rs.clone(), 1);
    assert_eq!(r.p.stats.host_bad, 3);
    assert_eq!(r.p.take_emitted().count(), 0);
}

#[test]
fn output_sees_the_connection_mark_input_set() {
    let mut r = Rig::new(
        "table ip t {
            chain input { type filter hook input priority filter; policy accept;
                tcp dport 22 ct mark set 0x7
            }
            chain output { type filter hook output priority filter; policy drop;
                ct mark 0x7 accept
            }
        }",
    );
    let fw = [192, 0, 2, 1];
    let ssh = at_fw(ipv4_frame(CLI, fw, 6, &tcp_header(40000, 22, 0x02), 64));
    let web = at_fw(ipv4_frame(CLI, fw, 6, &tcp_header(40001, 80, 0x02), 64));
    assert_eq!(r.input(0, ssh), Action::Consumed);
    assert_eq!(r.input(0, web), Action::Consumed);
    assert_eq!(r.to_host().len(), 2);
    // the kernel answers both; only the marked connection's answer passes OUTPUT
    let ssh_ack = ipv4_frame(fw, CLI, 6, &tcp_header(22, 40000, 0x12), 64);
    let web_ack = ipv4_frame(fw, CLI, 6, &tcp_header(80, 40001, 0x12), 64);
    assert_eq!(r.from_host(ssh_ack).len(), 1);
    assert_eq!(r.from_host(web_ack).len(), 0);
}

#[test]
fn nat_applies_to_the_boxs_own_connections_and_their_replies() {
    let mut r = Rig::new(
        "table ip nat {
            chain out { type nat hook output priority -100; policy accept;
                ip daddr 192.0.2.77 udp dport 53 dnat to 198.51.100.2
            }
            chain post { type nat hook postrouting priority srcnat; policy accept;
                oifname \"fw-srv\" udp dport 53 snat to 198.51.100.9
            }
        }",
    );
    // the kernel asks 192.0.2.77; OUTPUT's dnat sends it to srv instead (routed again: out of fw-srv),
    // POSTROUTING's snat gives it another source
    let query = ipv4_frame(
        [192, 0, 2, 1],
        [192, 0, 2, 77],
        17,
        &udp_datagram(5353, 53, 4),
        64,
    );
    let out = r.from_host(query);
    assert_eq!(out.len(), 1, "{:?}", r.p.stats);
    let (port, f) = &out[0];
    assert_eq!(*port, 1);
    assert_eq!(&f[0..6], &SRV_MAC);
    assert_eq!(&f[ETH_HLEN + 12..ETH_HLEN + 16], &[198, 51, 100, 9]);
    assert_eq!(&f[ETH_HLEN + 16..ETH_HLEN + 20], &SRV);
    assert_eq!(dataplane::wire::checksum(&f[ETH_HLEN..ETH_HLEN + 20]), 0);
    // srv's answer comes back to the kernel as from the address it asked
    let sport = u16::from_be_bytes([f[ETH_HLEN + 20], f[ETH_HLEN + 21]]);
    let answer = with_macs(
        FW_OUT,
        SRV_MAC,
        ipv4_frame(SRV, [198, 51, 100, 9], 17, &udp_datagram(53, sport, 4), 64),
    );
    assert_eq!(r.input(1, answer), Action::Consumed, "{:?}", r.p.stats);
    let got = r.to_host();
    assert_eq!(got.len(), 1);
    assert_eq!(&got[0][12..16], &[192, 0, 2, 77]);
    assert_eq!(&got[0][16..20], &[192, 0, 2, 1]);
    assert_eq!(u16::from_be_bytes([got[0][22], got[0][23]]), 5353);
    assert_eq!(dataplane::wire::checksum(&got[0][..20]), 0);
}

#[test]
fn ipv6_nat_applies_to_the_boxs_own_connections_and_their_replies() {
    let mut r = Rig::new(
        "table ip6 nat {
            chain out { type nat hook output priority -100; policy accept;
                ip6 daddr 2001:db8:1::77 udp dport 53 dnat to 2001:db8:2::2
            }
            chain post { type nat hook postrouting priority srcnat; policy accept;
                oifname \"fw-srv\" udp dport 53 snat to 2001:db8:2::9
            }
        }",
    );
    let asked: std::net::Ipv6Addr = "2001:db8:1::77".parse().unwrap();
    let snat: std::net::Ipv6Addr = "2001:db8:2::9".parse().unwrap();
    let mut query = ipv6_frame(FW_IN6, asked, 17, &udp_datagram(5353, 53, 4), 64);
    fix_l4_checksum_v6(&mut query);
    let out = r.from_host(query);
    assert_eq!(out.len(), 1, "{:?}", r.p.stats);
    let (port, f) = &out[0];
    assert_eq!(*port, 1);
    assert_eq!(&f[ETH_HLEN + 8..ETH_HLEN + 24], &snat.octets());
    assert_eq!(&f[ETH_HLEN + 24..ETH_HLEN + 40], &SRV6.octets());
    let sport = u16::from_be_bytes([f[ETH_HLEN + 40], f[ETH_HLEN + 41]]);
    let mut answer = with_macs(
        FW_OUT,
        SRV_MAC,
        ipv6_frame(SRV6, snat, 17, &udp_datagram(53, sport, 4), 64),
    );
    fix_l4_checksum_v6(&mut answer);
    assert_eq!(r.input(1, answer), Action::Consumed, "{:?}", r.p.stats);
    let got = r.to_host();
    assert_eq!(got.len(), 1, "{:?}", r.p.stats);
    assert_eq!(&got[0][8..24], &asked.octets());
    assert_eq!(&got[0][24..40], &FW_IN6.octets());
    assert_eq!(u16::from_be_bytes([got[0][42], got[0][43]]), 5353);
}

/// An IPv4 ICMP echo (request or reply) of `size` data bytes, DF clear, cut into fragments of at most
/// `mtu` bytes of IP.
fn fragmented_echo(src: [u8; 4], dst: [u8; 4], ty: u8, size: usize, mtu: usize) -> Vec<Vec<u8>> {
    let mut l4 = vec![0u8; 8 + size];
    l4[0] = ty;
    l4[4..8].copy_from_slice(&[0, 9, 0, 1]);
    for (i, b) in l4[8..].iter_mut().enumerate() {
        *b = i as u8;
    }
    let c = dataplane::wire::checksum(&l4);
    l4[2..4].copy_from_slice(&c.to_be_bytes());
    let mut f = ipv4_frame(src, dst, 1, &l4, 64);
    dataplane::testkit::clear_df(&mut f);
    let ip = dataplane::wire::parse_ipv4(&f, ETH_HLEN).unwrap();
    dataplane::wire::fragment_ipv4(&f, &ip, mtu).unwrap()
}

#[test]
fn the_kernels_fragments_are_one_datagram_for_output_and_leave_as_they_came() {
    let mut r = Rig::new(
        "table ip t {
            chain input { type filter hook input priority filter; policy drop;
                icmp type echo-request accept
            }
            chain output { type filter hook output priority filter; policy drop;
                ct state established accept
            }
        }",
    );
    let fw = [192, 0, 2, 1];
    // a big ping to the box arrives in pieces: the kernel gets it whole, after INPUT
    let request = fragmented_echo(CLI, fw, 8, 3000, 1500);
    assert_eq!(request.len(), 3);
    for f in &request {
        assert_eq!(r.input(0, at_fw(f.clone())), Action::Consumed);
    }
    let got = r.to_host();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].len(), 20 + 8 + 3000);
    // the kernel answers in pieces too; OUTPUT (policy drop) lets the whole reply through as established,
    // and it leaves in the kernel's pieces
    let reply = fragmented_echo(fw, CLI, 0, 3000, 1500);
    let mut out = Vec::new();
    for f in &reply {
        out.extend(r.from_host(f.clone()));
    }
    assert_eq!(out.len(), reply.len(), "{:?}", r.p.stats);
    for ((port, got), want) in out.iter().zip(&reply) {
        assert_eq!(*port, 0);
        assert_eq!(&got[ETH_HLEN..], &want[ETH_HLEN..]);
    }
    assert_eq!(r.p.stats.local_out_dropped_by_rule, 0);
}
