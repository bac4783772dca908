//! Shared pieces of sluice's benchmarks: synthetic rulesets and frames, an in-memory pipeline rig, and the
//! netns rig that compares sluice with in-kernel nftables (`sluice-bench`).

pub mod load;
pub mod plot;
pub mod report;
pub mod rig;
pub mod scenario;
pub mod swap;
pub mod traffic;

use dataplane::wire::{ArpRepr, ARP_REQUEST, ETH_HLEN};
use dataplane::{Action, Fib, InterfaceConfig, Pipeline, PipelineConfig, PortRole};
use std::fmt::Write;
use std::sync::Arc;

pub const FW_IN: [u8; 6] = [2, 0, 0, 0, 1, 1];
pub const FW_OUT: [u8; 6] = [2, 0, 0, 0, 2, 1];
/// The generator's (client's) MAC and the sink's (server's), as in the netns rig.
pub const GEN_MAC: [u8; 6] = [2, 0, 0, 0, 1, 2];
pub const SRV_MAC: [u8; 6] = [2, 0, 0, 0, 2, 2];

pub const GEN_ADDR: [u8; 4] = [192, 0, 2, 2];
pub const FW_GEN_ADDR: [u8; 4] = [192, 0, 2, 1];
pub const FW_SRV_ADDR: [u8; 4] = [198, 51, 100, 1];
pub const SRV_ADDR: [u8; 4] = [198, 51, 100, 2];
/// A second address of the sink, the other back end of the load-balanced VIP.
pub const SRV_ADDR2: [u8; 4] = [198, 51, 100, 3];
/// The load-balanced virtual address.
pub const VIP: [u8; 4] = [203, 0, 113, 10];

/// The lab gateway ruleset (docs/examples/lab.nft).
pub const LAB_RULESET: &str = include_str!("../../docs/examples/lab.nft");

/// The port the benchmark's UDP flood goes to (discard), the iperf3 port and the HTTP port.
pub const UDP_PORT: u16 = 9;
pub const IPERF_PORT: u16 = 5201;
pub const HTTP_PORT: u16 = 80;

/// A forward chain of `n` rules `ip saddr 10.x.y.z drop` (distinct addresses, none matching 192.0.2.0/24),
/// then an accept.
pub fn linear_saddr_ruleset(n: usize) -> String {
    let mut s = String::from("table inet filter {\n\tchain forward {\n\t\ttype filter hook forward priority filter; policy drop;\n");
    for i in 0..n {
        let _ = writeln!(
            s,
            "\t\tip saddr 10.{}.{}.{} drop",
            (i >> 16) & 255,
            (i >> 8) & 255,
            i & 255
        );
    }
    s.push_str("\t\taccept\n\t}\n}\n");
    s
}

/// "No ruleset": a forward chain that accepts everything (so both sides run a hook, as nft with an empty
/// chain does).
pub fn accept_all_ruleset() -> String {
    "table inet filter {\n\tchain forward {\n\t\ttype filter hook forward priority filter; policy accept;\n\t}\n}\n"
        .to_string()
}

/// The lab gateway ruleset with the benchmark's UDP flood (to port 9) and iperf3 (port 5201) admitted too:
/// the lab's policy drops both otherwise. HTTP to port 80 is the lab's own rule.
pub fn lab_bench_ruleset() -> Result<String, String> {
    let extra = format!(
        "\t\tip saddr 192.0.2.0/24 udp dport {UDP_PORT} counter accept\n\
         \t\tip saddr 192.0.2.0/24 ip daddr 198.51.100.2 tcp dport {IPERF_PORT} counter accept\n"
    );
    let mut out = String::new();
    let mut done = 0;
    for line in LAB_RULESET.lines() {
        if line.trim() == "counter drop" {
            out.push_str(&extra);
            done += 1;
        }
        out.push_str(line);
        out.push('\n');
    }
    if done != 1 {
        return Err(
            "docs/examples/lab.nft no longer ends its forward chain with one `counter drop` line; \
                    update bench::lab_bench_ruleset"
                .into(),
        );
    }
    Ok(out)
}

/// One rule `ip saddr @blk drop` against a named set of `n` addresses in 10.0.0.0/8 (none matching the
/// traffic), policy accept.
pub fn set_saddr_ruleset(n: usize) -> String {
    let mut s = String::with_capacity(n * 14 + 256);
    s.push_str("table inet filter {\n\tset blk {\n\t\ttype ipv4_addr\n");
    if n > 0 {
        s.push_str("\t\telements = { ");
        for i in 0..n {
            if i > 0 {
                s.push_str(if i % 8 == 0 { ",\n\t\t\t" } else { ", " });
            }
            let _ = write!(s, "10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255);
        }
        s.push_str(" }\n");
    }
    s.push_str("\t}\n\n\tchain forward {\n\t\ttype filter hook forward priority filter; policy accept;\n\t\tip saddr @blk drop\n\t}\n}\n");
    s
}

/// Source NAT: everything leaving towards the sink is masqueraded behind fw's address.
pub fn masquerade_ruleset() -> String {
    "table inet filter {\n\tchain forward {\n\t\ttype filter hook forward priority filter; policy accept;\n\t}\n}\n\
     table ip nat {\n\tchain postrouting {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n\
     \t\toifname \"fw-srv\" masquerade\n\t}\n}\n"
        .to_string()
}

/// A load-balanced VIP: connections to 203.0.113.10 are spread over the sink's two addresses (nft's
/// `numgen`, as RIG-NOTES suggests where IPVS is missing).
pub fn vip_ruleset() -> String {
    "table inet filter {\n\tchain forward {\n\t\ttype filter hook forward priority filter; policy accept;\n\t}\n}\n\
     table ip nat {\n\tchain prerouting {\n\t\ttype nat hook prerouting priority dstnat; policy accept;\n\
     \t\tip daddr 203.0.113.10 dnat to numgen inc mod 2 map { 0 : 198.51.100.2, 1 : 198.51.100.3 }\n\t}\n}\n"
        .to_string()
}

/// The two-interface FIB of the lab's fw box.
pub fn lab_fib() -> Arc<Fib> {
    Arc::new(Fib::new(
        vec![
            InterfaceConfig {
                name: "fw-cli".into(),
                ifindex: 2,
                mac: FW_IN,
                mtu: 1500,
                ipv4: vec![([192, 0, 2, 1].into(), 24)],
            },
            InterfaceConfig {
                name: "fw-srv".into(),
                ifindex: 3,
                mac: FW_OUT,
                mtu: 1500,
                ipv4: vec![([198, 51, 100, 1].into(), 24)],
            },
        ],
        &[],
    ))
}

pub fn pipeline() -> Pipeline {
    Pipeline::new(
        lab_fib(),
        vec![
            PortRole {
                kernel_shares: false
            };
            2
        ],
        &PipelineConfig::default(),
    )
}

/// Parses and compiles `src` with sluice's rules crate.
pub fn compile(src: &str) -> Result<rules::CompiledRuleset, String> {
    let ast = rules::parse_ruleset(src, "bench.nft").map_err(|d| d.to_string())?;
    rules::compile(&ast).map_err(|d| d.to_string())
}

/// Teaches the pipeline the MACs of the generator and both sink addresses (ARP requests addressed to fw),
/// so that forwarded frames leave at once instead of waiting for neighbour resolution.
pub fn prime_neighbours(p: &mut Pipeline, rs: &rules::CompiledRuleset) {
    for (port, mac, ip, fw_ip, fw_mac) in [
        (0, GEN_MAC, GEN_ADDR, FW_GEN_ADDR, FW_IN),
        (1, SRV_MAC, SRV_ADDR, FW_SRV_ADDR, FW_OUT),
        (1, SRV_MAC, SRV_ADDR2, FW_SRV_ADDR, FW_OUT),
    ] {
        let req = ArpRepr {
            op: ARP_REQUEST,
            sender_mac: mac,
            sender_ip: ip.into(),
            target_mac: [0; 6],
            target_ip: fw_ip.into(),
        };
        let mut f = vec![0u8; 60];
        req.emit_frame(mac, fw_mac, &mut f);
        let len = f.len();
        p.process(&mut f, len, port, false, rs, 0);
    }
    p.take_emitted().for_each(drop);
}

/// A 64-byte UDP frame from 192.0.2.2:`sport` to 198.51.100.2:9 addressed to fw's MAC.
pub fn udp_frame(sport: u16) -> Vec<u8> {
    udp_frame_to(SRV_ADDR, sport)
}

/// A 64-byte (60 without FCS) UDP frame from the generator to `dst`:9, addressed to fw's MAC, IP checksum
/// filled in, UDP checksum 0 (none).
pub fn udp_frame_to(dst: [u8; 4], sport: u16) -> Vec<u8> {
    let mut f = vec![0u8; 60];
    f[0..6].copy_from_slice(&FW_IN);
    f[6..12].copy_from_slice(&GEN_MAC);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip = &mut f[14..];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&46u16.to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&GEN_ADDR);
    ip[16..20].copy_from_slice(&dst);
    let c = dataplane::wire::checksum(&ip[..20]);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    ip[20..22].copy_from_slice(&sport.to_be_bytes());
    ip[22..24].copy_from_slice(&UDP_PORT.to_be_bytes());
    ip[24..26].copy_from_slice(&26u16.to_be_bytes());
    f
}

/// Runs `frame` (from the generator's side) through an in-memory pipeline loaded with `ruleset` and returns
/// what came out on the sink's side, or why nothing did.
pub fn forward_once(ruleset: &str, frame: &[u8]) -> Result<Vec<u8>, String> {
    let rs = compile(ruleset)?;
    let rs = Arc::new(rs);
    let mut p = pipeline();
    p.use_generation(&rs);
    prime_neighbours(&mut p, &rs);
    let mut slot = frame.to_vec();
    slot.resize(hw::FRAME_CAPACITY, 0);
    match p.process(&mut slot, frame.len(), 0, false, &rs, 1_000) {
        Action::Forward(1) => Ok(slot[..frame.len()].to_vec()),
        other => Err(format!(
            "the dataplane did not forward the probe frame ({other:?})"
        )),
    }
}

fn ip_field(frame: &[u8], off: usize) -> [u8; 4] {
    frame[ETH_HLEN + off..ETH_HLEN + off + 4]
        .try_into()
        .expect("4 bytes")
}

/// Whether sluice can run a scenario yet: `Ok` or the reason it is skipped. Each check runs the scenario's
/// ruleset through the real rules compiler and an in-memory pipeline, so the bench picks features up as
/// soon as they land.
pub mod support {
    use super::*;

    /// Named sets: `ip saddr @blk drop` must compile, drop a member and pass a non-member.
    pub fn named_sets() -> Result<(), String> {
        let mut src = set_saddr_ruleset(3);
        src = src.replace("10.0.0.2", "192.0.2.2");
        if forward_once(&src, &udp_frame(1024)).is_ok() {
            return Err("a packet whose source is in the set was not dropped".into());
        }
        forward_once(&set_saddr_ruleset(3), &udp_frame(1024))
            .map(drop)
            .map_err(|e| format!("a packet outside the set: {e}"))
    }

    /// Masquerade: the forwarded packet must leave with fw's address as its source.
    pub fn masquerade() -> Result<(), String> {
        let out = forward_once(&masquerade_ruleset(), &udp_frame(1024))?;
        let src = ip_field(&out, 12);
        if src != FW_SRV_ADDR {
            return Err(format!(
                "the source address was not rewritten (left as {src:?})"
            ));
        }
        Ok(())
    }

    /// DNAT to a VIP's back ends.
    pub fn load_balanced_vip() -> Result<(), String> {
        let out = forward_once(&vip_ruleset(), &udp_frame_to(VIP, 1024))?;
        let dst = ip_field(&out, 16);
        if dst != SRV_ADDR && dst != SRV_ADDR2 {
            return Err(format!(
                "the destination was not rewritten to a back end (left as {dst:?})"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rulesets_compile() {
        for src in [
            accept_all_ruleset(),
            lab_bench_ruleset().unwrap(),
            linear_saddr_ruleset(100),
        ] {
            compile(&src).unwrap();
        }
    }

    #[test]
    fn the_bench_traffic_passes_the_lab_ruleset_and_linear_rules() {
        forward_once(&lab_bench_ruleset().unwrap(), &udp_frame(1024)).unwrap();
        forward_once(&linear_saddr_ruleset(1000), &udp_frame(1024)).unwrap();
        forward_once(&accept_all_ruleset(), &udp_frame(1024)).unwrap();
        // and the plain lab ruleset drops it: the extra rule is what admits it
        assert!(forward_once(LAB_RULESET, &udp_frame(1024)).is_err());
    }

    #[test]
    fn the_vip_spreads_new_flows_over_both_back_ends_in_turn() {
        support::load_balanced_vip().unwrap();
        let rs = Arc::new(compile(&vip_ruleset()).unwrap());
        let mut p = pipeline();
        p.use_generation(&rs);
        prime_neighbours(&mut p, &rs);
        let mut seen = Vec::new();
        for sport in 2000..2006u16 {
            let f = udp_frame_to(VIP, sport);
            let mut slot = f.clone();
            slot.resize(hw::FRAME_CAPACITY, 0);
            match p.process(&mut slot, f.len(), 0, false, &rs, 1_000) {
                Action::Forward(1) => seen.push(ip_field(&slot, 16)[3]),
                other => panic!("flow {sport}: {other:?}"),
            }
        }
        // numgen inc: 0, 1, 0, … (the kernel's first value is 0) → .2, .3, .2, …
        assert_eq!(seen, [2, 3, 2, 3, 2, 3]);
    }

    #[test]
    fn set_ruleset_text_is_well_formed() {
        let s = set_saddr_ruleset(20);
        assert_eq!(s.matches("10.0.0.").count(), 20);
        assert!(s.contains("10.0.0.19 }"));
    }
}
