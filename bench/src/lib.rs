//! Shared pieces of sluice's benchmarks: synthetic rulesets and frames, and an in-memory pipeline rig.

use dataplane::{Fib, InterfaceConfig, Pipeline, PipelineConfig, PortRole};
use std::fmt::Write;
use std::sync::Arc;

pub const FW_IN: [u8; 6] = [2, 0, 0, 0, 1, 1];
pub const FW_OUT: [u8; 6] = [2, 0, 0, 0, 2, 1];

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

/// A 64-byte UDP frame from 192.0.2.2:`sport` to 198.51.100.2:9 addressed to fw's MAC.
pub fn udp_frame(sport: u16) -> Vec<u8> {
    let mut f = vec![0u8; 60];
    f[0..6].copy_from_slice(&FW_IN);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 1, 2]);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip = &mut f[14..];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&46u16.to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&[192, 0, 2, 2]);
    ip[16..20].copy_from_slice(&[198, 51, 100, 2]);
    let c = dataplane::wire::checksum(&ip[..20]);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    ip[20..22].copy_from_slice(&sport.to_be_bytes());
    ip[22..24].copy_from_slice(&9u16.to_be_bytes());
    ip[24..26].copy_from_slice(&26u16.to_be_bytes());
    f
}
