//! The kernel as oracle: every case in `tests/differential/*.toml` (a ruleset and probe packets) runs
//! through the kernel — the ruleset loaded with the real `nft` into a forwarding namespace — and through
//! `sluice replay` with the same topology; what comes out of each interface must be the same frames.
//!
//! Topology (both sides): cli (192.0.2.2, 02:00:00:00:01:02) — fw-cli [fw] fw-srv — srv (198.51.100.2,
//! 02:00:00:00:02:02); fw-cli is 192.0.2.1/24 with MAC 02:00:00:00:01:01, fw-srv 198.51.100.1/24 with MAC
//! 02:00:00:00:02:01; 203.0.113.0/24 via 198.51.100.254 (02:00:00:00:02:fe). Neighbours are static, the
//! end namespaces have no addresses (nothing there answers), and ICMP rate limits are lifted on both
//! sides. Frames are compared byte for byte except the IPv4 ID and header checksum of packets the
//! appliance generates (the kernel picks random IDs).
//!
//! Probe syntax, one string per packet, sent in order (state carries over within a case):
//! `cli|srv tcp SPORT DPORT FLAGS`, `… udp SPORT DPORT`, `… icmp echo ID`, `… icmp TYPE CODE`, then
//! options `ttl=N dst=IP src=IP len=N (payload) tos=N df=0|1 seq=N ack=N csum=bad|none (none: a UDP datagram
//! without a checksum) frag=N fragorder=rev` (`frag=N,M,…`: the first fragments' sizes in turn, the last for the rest).
//! IPv6 probes say `cli6|srv6` (cli 2001:db8:1::2, srv 2001:db8:2::2; fw-cli 2001:db8:1::1/64, fw-srv
//! 2001:db8:2::1/64, 2001:db8:3::/48 via 2001:db8:2::fe) with `tcp`, `udp`, `icmp6 echo ID` or `icmp6
//! TYPE CODE`; `ttl=` is the hop limit, `tos=` the traffic class, and `ext=hbh,dst,rt` puts extension
//! headers (hop-by-hop and destination options with a PadN, a type-0 routing header with segments left
//! 0; `rtlong` claims 56 bytes where it has 8; `hbhskip`, `hbhdrop`, `hbhicmp`, `hbhicmpuc` carry an
//! unknown option of each action) before the transport header; `frag=N fragorder=rev` as for IPv4 (a
//! fragment header after the fixed header; output fragments are compared without their identification). A case with IPv6 probes runs with IPv6 on in fw (addresses without
//! DAD, `auto_flowlabels=0` so the kernel's own packets carry flow label 0 as sluice's do); multicast
//! frames (the kernel's MLD reports and DAD) are left out of the comparison.
//! A case may say `xfail = "reason"`: its difference is known and documented (docs/DIFFERENTIAL.md).
//! Probes addressed to the box itself run live with `sluice run --host-tun` (the exception path), so fw's
//! kernel answers them behind sluice's INPUT and its answers cross sluice's OUTPUT; a case whose kernel
//! answers matter says `live_only = "reason"` (replay has no kernel stack behind the box).

use hw::netns::{Netns, TestNet};
use hw::packet::PacketPort;
use hw::{Batch, Port};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const SLUICE: &str = env!("CARGO_BIN_EXE_sluice");
const FW_CLI: [u8; 6] = [2, 0, 0, 0, 1, 1];
const FW_SRV: [u8; 6] = [2, 0, 0, 0, 2, 1];
const CLI_MAC: [u8; 6] = [2, 0, 0, 0, 1, 2];
const SRV_MAC: [u8; 6] = [2, 0, 0, 0, 2, 2];
const CLI: [u8; 4] = [192, 0, 2, 2];
const SRV: [u8; 4] = [198, 51, 100, 2];
const CLI6: &str = "2001:db8:1::2";
const SRV6: &str = "2001:db8:2::2";

const TOPOLOGY: &str = r#"
[[interface]]
name = "fw-cli"
mac = "02:00:00:00:01:01"
addresses = ["192.0.2.1/24", "2001:db8:1::1/64"]
[[interface]]
name = "fw-srv"
mac = "02:00:00:00:02:01"
mtu = MTU
addresses = ["198.51.100.1/24", "2001:db8:2::1/64"]
[[route]]
dst = "203.0.113.0/24"
via = "198.51.100.254"
dev = "fw-srv"
[[neighbour]]
dev = "fw-cli"
ip = "192.0.2.2"
mac = "02:00:00:00:01:02"
[[neighbour]]
dev = "fw-srv"
ip = "198.51.100.2"
mac = "02:00:00:00:02:02"
[[neighbour]]
dev = "fw-srv"
ip = "198.51.100.254"
mac = "02:00:00:00:02:fe"
[[route]]
dst = "2001:db8:3::/48"
via = "2001:db8:2::fe"
dev = "fw-srv"
[[neighbour]]
dev = "fw-cli"
ip = "2001:db8:1::2"
mac = "02:00:00:00:01:02"
[[neighbour]]
dev = "fw-srv"
ip = "2001:db8:2::2"
mac = "02:00:00:00:02:02"
[[neighbour]]
dev = "fw-srv"
ip = "2001:db8:2::fe"
mac = "02:00:00:00:02:fe"
"#;

/// fw's IPv6 addresses in the topology above (the kernel rig adds the same, plus link-local ones that
/// neither side uses as a source here).
const TOPOLOGY6_ADDRS: [(&str, &str); 2] = [
    ("fw-cli", "2001:db8:1::1/64"),
    ("fw-srv", "2001:db8:2::1/64"),
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    ruleset: String,
    probes: Vec<String>,
    #[serde(default)]
    xfail: Option<String>,
    /// Compared live only, for this reason: replay has no kernel stack behind the box to answer what
    /// INPUT lets through (the live run has fw's kernel behind sluice's exception path).
    #[serde(default)]
    live_only: Option<String>,
    /// MTU of fw-srv (and of its peer), 1500 when not given.
    #[serde(default)]
    mtu_srv: Option<u32>,
    /// A comment on what the case covers.
    #[serde(default)]
    #[allow(dead_code)]
    covers: Option<String>,
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum = 0u32;
    for c in data.chunks(2) {
        sum += u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32;
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Builds the frame a probe line describes. `from_cli` picks the side (and default addresses).
fn build_probe(line: &str) -> Result<(bool, Vec<Vec<u8>>), String> {
    let mut words = line.split_whitespace();
    let side = words.next().ok_or("empty probe")?;
    let (from_cli, v6) = match side {
        "cli" => (true, false),
        "srv" => (false, false),
        "cli6" => (true, true),
        "srv6" => (false, true),
        s => {
            return Err(format!(
                "probe side must be cli, srv, cli6 or srv6, not {s}"
            ))
        }
    };
    let proto = words.next().ok_or("no protocol")?;
    let mut pos: Vec<&str> = Vec::new();
    let mut opts: BTreeMap<&str, &str> = BTreeMap::new();
    for w in words {
        match w.split_once('=') {
            Some((k, v)) => {
                opts.insert(k, v);
            }
            None => pos.push(w),
        }
    }
    let num = |s: &str| -> Result<u32, String> { s.parse().map_err(|_| format!("bad number {s}")) };
    let (mut src, mut dst) = if from_cli { (CLI, SRV) } else { (SRV, CLI) };
    if v6 {
        return build_probe6(from_cli, proto, &pos, &opts);
    }
    if let Some(d) = opts.get("dst") {
        dst = d.parse::<Ipv4Addr>().map_err(|e| e.to_string())?.octets();
    }
    if let Some(s) = opts.get("src") {
        src = s.parse::<Ipv4Addr>().map_err(|e| e.to_string())?.octets();
    }
    let payload = vec![0x61u8; opts.get("len").map(|l| num(l)).transpose()?.unwrap_or(0) as usize];
    let (ipproto, mut l4) = match proto {
        "tcp" => {
            let (sp, dp, flags) = (
                num(pos[0])?,
                num(pos[1])?,
                pos.get(2).copied().unwrap_or(""),
            );
            let mut f = 0u8;
            for c in flags.chars() {
                f |= match c {
                    'F' => 1,
                    'S' => 2,
                    'R' => 4,
                    'P' => 8,
                    'A' => 16,
                    _ => return Err(format!("bad tcp flag {c}")),
                };
            }
            let syn = f & 2 != 0;
            let seq = match opts.get("seq") {
                Some(s) => num(s)?,
                None => match (from_cli, syn) {
                    (true, true) => 1000,
                    (true, false) => 1001,
                    (false, true) => 5000,
                    (false, false) => 5001,
                },
            };
            let ack = match opts.get("ack") {
                Some(s) => num(s)?,
                None if f & 16 != 0 => {
                    if from_cli {
                        5001
                    } else {
                        1001
                    }
                }
                None => 0,
            };
            let mut t = vec![0u8; 20];
            t[0..2].copy_from_slice(&(sp as u16).to_be_bytes());
            t[2..4].copy_from_slice(&(dp as u16).to_be_bytes());
            t[4..8].copy_from_slice(&seq.to_be_bytes());
            t[8..12].copy_from_slice(&ack.to_be_bytes());
            t[12] = 5 << 4;
            t[13] = f;
            t[14..16].copy_from_slice(&64240u16.to_be_bytes());
            t.extend_from_slice(&payload);
            (6u8, t)
        }
        "udp" => {
            let (sp, dp) = (num(pos[0])?, num(pos[1])?);
            let mut u = vec![0u8; 8];
            u[0..2].copy_from_slice(&(sp as u16).to_be_bytes());
            u[2..4].copy_from_slice(&(dp as u16).to_be_bytes());
            u[4..6].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
            u.extend_from_slice(&payload);
            (17u8, u)
        }
        "icmp" => {
            let (ty, code, id) = if pos[0] == "echo" {
                (8u8, 0u8, num(pos.get(1).copied().unwrap_or("1"))?)
            } else if pos[0] == "echo-reply" {
                (0, 0, num(pos.get(1).copied().unwrap_or("1"))?)
            } else {
                (num(pos[0])? as u8, num(pos[1])? as u8, 0)
            };
            let mut m = vec![ty, code, 0, 0, 0, 0, 0, 1];
            m[4..6].copy_from_slice(&(id as u16).to_be_bytes());
            m.extend_from_slice(&payload);
            (1u8, m)
        }
        p => return Err(format!("unknown probe protocol {p}")),
    };
    let ttl = opts.get("ttl").map(|t| num(t)).transpose()?.unwrap_or(64) as u8;
    let tos = opts.get("tos").map(|t| num(t)).transpose()?.unwrap_or(0) as u8;
    let df = opts.get("df").map(|t| num(t)).transpose()?.unwrap_or(1) != 0;
    let total = 20 + l4.len();
    let mut ip = vec![0u8; 20];
    ip[0] = 0x45;
    ip[1] = tos;
    ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    ip[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
    if df {
        ip[6] = 0x40;
    }
    ip[8] = ttl;
    ip[9] = ipproto;
    ip[12..16].copy_from_slice(&src);
    ip[16..20].copy_from_slice(&dst);
    let c = checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    // transport checksum
    match ipproto {
        6 | 17 => {
            let mut pseudo = Vec::new();
            pseudo.extend_from_slice(&src);
            pseudo.extend_from_slice(&dst);
            pseudo.extend_from_slice(&[0, ipproto]);
            pseudo.extend_from_slice(&(l4.len() as u16).to_be_bytes());
            pseudo.extend_from_slice(&l4);
            let mut c = checksum(&pseudo);
            if ipproto == 17 && c == 0 {
                c = 0xffff;
            }
            if opts.get("csum") == Some(&"bad") {
                c ^= 0x5555;
            }
            if ipproto == 17 && opts.get("csum") == Some(&"none") {
                c = 0;
            }
            let off = if ipproto == 6 { 16 } else { 6 };
            l4[off..off + 2].copy_from_slice(&c.to_be_bytes());
        }
        _ => {
            let c = checksum(&l4);
            l4[2..4].copy_from_slice(&c.to_be_bytes());
        }
    }
    let (dmac, smac) = if from_cli {
        (FW_CLI, CLI_MAC)
    } else {
        (FW_SRV, SRV_MAC)
    };
    let mut f = Vec::new();
    f.extend_from_slice(&dmac);
    f.extend_from_slice(&smac);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(&ip);
    f.extend_from_slice(&l4);
    // `frag=N`: sent as fragments of N payload bytes (a multiple of 8), `fragorder=rev` last first.
    let Some(sizes) = opts.get("frag").map(|n| frag_sizes(n)).transpose()? else {
        return Ok((from_cli, vec![f]));
    };
    let data = f[34..].to_vec();
    let mut frames = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let n = sizes[frames.len().min(sizes.len() - 1)];
        let len = n.min(data.len() - at);
        let last = at + len == data.len();
        let mut g = f[..34].to_vec();
        g.extend_from_slice(&data[at..at + len]);
        g[16..18].copy_from_slice(&((20 + len) as u16).to_be_bytes());
        let off = (at / 8) as u16 | if last { 0 } else { 0x2000 };
        g[20..22].copy_from_slice(&off.to_be_bytes());
        g[24] = 0;
        g[25] = 0;
        let c = checksum(&g[14..34]);
        g[24..26].copy_from_slice(&c.to_be_bytes());
        frames.push(g);
        at += len;
    }
    if opts.get("fragorder") == Some(&"rev") {
        frames.reverse();
    }
    Ok((from_cli, frames))
}

/// `frag=N` or `frag=N,M,…`: the payload bytes of each fragment in turn, the last size for the rest.
fn frag_sizes(s: &str) -> Result<Vec<usize>, String> {
    s.split(',')
        .map(|n| match n.parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!("bad fragment size {n}")),
        })
        .collect()
}

fn ip6(s: &str) -> Result<std::net::Ipv6Addr, String> {
    s.parse().map_err(|e| format!("{s}: {e}"))
}

/// An IPv6 probe (see the header for the syntax).
fn build_probe6(
    from_cli: bool,
    proto: &str,
    pos: &[&str],
    opts: &BTreeMap<&str, &str>,
) -> Result<(bool, Vec<Vec<u8>>), String> {
    let num = |s: &str| -> Result<u32, String> { s.parse().map_err(|_| format!("bad number {s}")) };
    let (mut src, mut dst) = if from_cli {
        (ip6(CLI6)?, ip6(SRV6)?)
    } else {
        (ip6(SRV6)?, ip6(CLI6)?)
    };
    if let Some(d) = opts.get("dst") {
        dst = ip6(d)?;
    }
    if let Some(s) = opts.get("src") {
        src = ip6(s)?;
    }
    let payload = vec![0x61u8; opts.get("len").map(|l| num(l)).transpose()?.unwrap_or(0) as usize];
    let arg = |i: usize| {
        pos.get(i)
            .copied()
            .ok_or(format!("{proto}: missing argument {i}"))
    };
    let (next, mut l4, csum_at) = match proto {
        "tcp" => {
            let mut f = 0u8;
            for c in pos.get(2).copied().unwrap_or("").chars() {
                f |= match c {
                    'F' => 1,
                    'S' => 2,
                    'R' => 4,
                    'P' => 8,
                    'A' => 16,
                    _ => return Err(format!("bad tcp flag {c}")),
                };
            }
            let seq = match opts.get("seq") {
                Some(s) => num(s)?,
                None => match (from_cli, f & 2 != 0) {
                    (true, true) => 1000,
                    (true, false) => 1001,
                    (false, true) => 5000,
                    (false, false) => 5001,
                },
            };
            let ack = match opts.get("ack") {
                Some(s) => num(s)?,
                None if f & 16 != 0 => {
                    if from_cli {
                        5001
                    } else {
                        1001
                    }
                }
                None => 0,
            };
            let mut t = vec![0u8; 20];
            t[0..2].copy_from_slice(&(num(arg(0)?)? as u16).to_be_bytes());
            t[2..4].copy_from_slice(&(num(arg(1)?)? as u16).to_be_bytes());
            t[4..8].copy_from_slice(&seq.to_be_bytes());
            t[8..12].copy_from_slice(&ack.to_be_bytes());
            t[12] = 5 << 4;
            t[13] = f;
            t[14..16].copy_from_slice(&64240u16.to_be_bytes());
            t.extend_from_slice(&payload);
            (6u8, t, 16)
        }
        "udp" => {
            let mut u = vec![0u8; 8];
            u[0..2].copy_from_slice(&(num(arg(0)?)? as u16).to_be_bytes());
            u[2..4].copy_from_slice(&(num(arg(1)?)? as u16).to_be_bytes());
            u[4..6].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
            u.extend_from_slice(&payload);
            (17u8, u, 6)
        }
        "icmp6" => {
            let (ty, code, id) = match arg(0)? {
                "echo" => (128u8, 0u8, num(pos.get(1).copied().unwrap_or("1"))?),
                "echo-reply" => (129, 0, num(pos.get(1).copied().unwrap_or("1"))?),
                t => (num(t)? as u8, num(arg(1)?)? as u8, 0),
            };
            let mut m = vec![ty, code, 0, 0, 0, 0, 0, 1];
            m[4..6].copy_from_slice(&(id as u16).to_be_bytes());
            m.extend_from_slice(&payload);
            (58u8, m, 2)
        }
        p => return Err(format!("unknown IPv6 probe protocol {p}")),
    };
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&src.octets());
    pseudo.extend_from_slice(&dst.octets());
    pseudo.extend_from_slice(&(l4.len() as u32).to_be_bytes());
    pseudo.extend_from_slice(&[0, 0, 0, next]);
    pseudo.extend_from_slice(&l4);
    let mut c = checksum(&pseudo);
    if next == 17 && c == 0 {
        c = 0xffff;
    }
    if opts.get("csum") == Some(&"bad") {
        c ^= 0x5555;
    }
    l4[csum_at..csum_at + 2].copy_from_slice(&c.to_be_bytes());
    // Extension headers, in the order given; each one's first byte names what follows.
    let mut exts: Vec<(u8, Vec<u8>)> = Vec::new();
    if let Some(list) = opts.get("ext") {
        for e in list.split(',') {
            exts.push(match e {
                "hbh" => (0, vec![0, 0, 1, 4, 0, 0, 0, 0]),
                "dst" => (60, vec![0, 0, 1, 4, 0, 0, 0, 0]),
                "rt" => (43, vec![0, 0, 0, 0, 0, 0, 0, 0]),
                // hop-by-hop with an unknown option whose type says: skip it (0x1e), discard (0x5e),
                // discard and send a parameter problem (0x9e), the same unless multicast (0xde)
                "hbhskip" => (0, vec![0, 0, 0x1e, 4, 0, 0, 0, 0]),
                "hbhdrop" => (0, vec![0, 0, 0x5e, 4, 0, 0, 0, 0]),
                "hbhicmp" => (0, vec![0, 0, 0x9e, 4, 0, 0, 0, 0]),
                "hbhicmpuc" => (0, vec![0, 0, 0xde, 4, 0, 0, 0, 0]),
                // a routing header claiming 56 bytes where it has 8
                "rtlong" => (43, vec![0, 6, 0, 0, 0, 0, 0, 0]),
                e => return Err(format!("unknown extension header {e}")),
            });
        }
    }
    let mut payload6 = Vec::new();
    for i in 0..exts.len() {
        let mut h = exts[i].1.clone();
        h[0] = exts.get(i + 1).map_or(next, |e| e.0);
        payload6.extend_from_slice(&h);
    }
    payload6.extend_from_slice(&l4);
    let hl = opts.get("ttl").map(|t| num(t)).transpose()?.unwrap_or(64) as u8;
    let tc = opts.get("tos").map(|t| num(t)).transpose()?.unwrap_or(0) as u8;
    let mut f = Vec::new();
    let (dmac, smac) = if from_cli {
        (FW_CLI, CLI_MAC)
    } else {
        (FW_SRV, SRV_MAC)
    };
    f.extend_from_slice(&dmac);
    f.extend_from_slice(&smac);
    f.extend_from_slice(&[0x86, 0xdd]);
    f.extend_from_slice(&[0x60 | (tc >> 4), tc << 4, 0, 0]);
    f.extend_from_slice(&(payload6.len() as u16).to_be_bytes());
    f.push(exts.first().map_or(next, |e| e.0));
    f.push(hl);
    f.extend_from_slice(&src.octets());
    f.extend_from_slice(&dst.octets());
    f.extend_from_slice(&payload6);
    // `frag=N`: a fragment header right after the fixed header, N bytes of the rest (a multiple of 8)
    // in each piece; `fragorder=rev` last first.
    let Some(sizes) = opts.get("frag").map(|n| frag_sizes(n)).transpose()? else {
        return Ok((from_cli, vec![f]));
    };
    let data = f[54..].to_vec();
    let mut frames = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let n = sizes[frames.len().min(sizes.len() - 1)];
        let len = n.min(data.len() - at);
        let more = at + len < data.len();
        let mut g = f[..54].to_vec();
        g[18..20].copy_from_slice(&((8 + len) as u16).to_be_bytes());
        g[20] = 44;
        g.extend_from_slice(&[f[20], 0]);
        g.extend_from_slice(&(at as u16 | more as u16).to_be_bytes());
        g.extend_from_slice(&0x5eed_0001u32.to_be_bytes());
        g.extend_from_slice(&data[at..at + len]);
        frames.push(g);
        at += len;
    }
    if opts.get("fragorder") == Some(&"rev") {
        frames.reverse();
    }
    Ok((from_cli, frames))
}

/// The comparable form of an output frame: IPv4 packets that the appliance generated (source is one of
/// its addresses, or an ICMP error / RST it built) get their ID and header checksum zeroed.
fn normalize(iface: &str, frame: &[u8], kernel: bool) -> String {
    let mut f = frame.to_vec();
    // Ethernet padding of short frames is not part of the packet.
    if f.len() >= 34 && f[12..14] == [0x08, 0x00] {
        let total = u16::from_be_bytes([f[16], f[17]]) as usize;
        f.truncate((14 + total).min(f.len()));
        let src = [f[26], f[27], f[28], f[29]];
        let generated =
            src == [192, 0, 2, 1] || src == [198, 51, 100, 1] || f[18..20] != [0x12, 0x34];
        if generated {
            f[18] = 0;
            f[19] = 0;
            f[24] = 0;
            f[25] = 0;
        }
        // The kernel hands locally built TCP/UDP packets to veth with CHECKSUM_PARTIAL: the field holds
        // only the pseudo-header sum, completed by "hardware" that veth does not have. Complete it; sluice's
        // own checksums are compared as they are.
        let ihl = (f[14] & 15) as usize * 4;
        let proto = f[23];
        if kernel && generated && (proto == 6 || proto == 17) && f.len() >= 14 + ihl + 8 {
            let off = 14 + ihl + if proto == 6 { 16 } else { 6 };
            if f.len() >= off + 2 {
                f[off] = 0;
                f[off + 1] = 0;
                let mut pseudo = Vec::new();
                pseudo.extend_from_slice(&f[26..34]);
                pseudo.extend_from_slice(&[0, proto]);
                pseudo.extend_from_slice(&((f.len() - 14 - ihl) as u16).to_be_bytes());
                pseudo.extend_from_slice(&f[14 + ihl..]);
                let c = checksum(&pseudo);
                f[off..off + 2].copy_from_slice(&c.to_be_bytes());
            }
        }
    }
    if f.len() >= 54 && f[12..14] == [0x86, 0xdd] {
        let total = 40 + u16::from_be_bytes([f[18], f[19]]) as usize;
        f.truncate((14 + total).min(f.len()));
        // A fragment header right after the fixed header: its identification is not compared (the kernel
        // picks a new one when it fragments a reassembled datagram again, ipv6_select_ident; sluice
        // keeps the one the fragments came with).
        if f[20] == 44 && f.len() >= 62 {
            f[58..62].fill(0);
        }
    }
    let hex: String = f.iter().map(|b| format!("{b:02x}")).collect();
    format!("{iface} {}", describe(&f)) + " " + &hex
}

fn describe(f: &[u8]) -> String {
    if f.len() >= 54 && f[12..14] == [0x86, 0xdd] {
        let a = |o: usize| std::net::Ipv6Addr::from(<[u8; 16]>::try_from(&f[o..o + 16]).unwrap());
        let t = &f[54..];
        let what = match (f[20], t) {
            (6, t) if t.len() >= 14 => format!(
                "tcp {}>{} flags {:#04x}",
                u16::from_be_bytes([t[0], t[1]]),
                u16::from_be_bytes([t[2], t[3]]),
                t[13]
            ),
            (17, t) if t.len() >= 4 => format!(
                "udp {}>{}",
                u16::from_be_bytes([t[0], t[1]]),
                u16::from_be_bytes([t[2], t[3]])
            ),
            (58, t) if t.len() >= 2 => format!("icmp6 {}/{}", t[0], t[1]),
            (p, _) => format!("next {p}"),
        };
        return format!("{}>{} hlim {} {what}", a(22), a(38), f[21]);
    }
    if f.len() < 34 || f[12..14] != [0x08, 0x00] {
        return format!("non-IPv4 frame ({} bytes)", f.len());
    }
    let src = Ipv4Addr::new(f[26], f[27], f[28], f[29]);
    let dst = Ipv4Addr::new(f[30], f[31], f[32], f[33]);
    let ihl = (f[14] & 15) as usize * 4;
    let l4 = &f[14 + ihl..];
    let what = match (f[23], l4) {
        (6, t) if t.len() >= 14 => format!(
            "tcp {}>{} flags {:#04x}",
            u16::from_be_bytes([t[0], t[1]]),
            u16::from_be_bytes([t[2], t[3]]),
            t[13]
        ),
        (17, t) if t.len() >= 4 => format!(
            "udp {}>{}",
            u16::from_be_bytes([t[0], t[1]]),
            u16::from_be_bytes([t[2], t[3]])
        ),
        (1, t) if t.len() >= 2 => format!("icmp {}/{}", t[0], t[1]),
        (p, _) => format!("proto {p}"),
    };
    format!("{src}>{dst} ttl {} {what}", f[22])
}

struct KernelRig {
    cli: PacketPort,
    srv: PacketPort,
    /// `sluice run` in fw (live mode), stopped on drop before the namespaces go.
    daemon: Option<std::process::Child>,
    _net: TestNet,
}

impl Drop for KernelRig {
    fn drop(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            unsafe { libc::kill(d.id() as i32, libc::SIGTERM) };
            let _ = d.wait();
        }
    }
}

/// Which forwarder sits in fw.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fw {
    /// The kernel, with the ruleset loaded by `nft -f`.
    Kernel,
    /// `sluice run` on AF_XDP (kernel forwarding off), reading the same addresses, routes and
    /// permanent neighbours from the namespace.
    Sluice,
    /// `sluice run --host-tun`: as `Sluice`, and the box's own traffic goes through sluice's INPUT and
    /// OUTPUT to and from fw's kernel (probes addressed to the box).
    SluiceHost,
}

fn kernel_rig(ruleset: &Path, mtu: u32, fw_kind: Fw, v6: bool) -> Result<KernelRig, String> {
    let e = |x: hw::HwError| x.to_string();
    let mut net = TestNet::new();
    let cli = net.add_ns("dcli").map_err(e)?;
    let fw = net.add_ns("dfw").map_err(e)?;
    let srv = net.add_ns("dsrv").map_err(e)?;
    // IPv6 stays off in the end namespaces (nothing there sends anything), and in fw unless the case
    // needs it.
    for ns in [&cli, &fw, &srv] {
        if v6 && ns.name() == fw.name() {
            continue;
        }
        net.sysctl(ns, "net.ipv6.conf.all.disable_ipv6", "1")
            .map_err(e)?;
        net.sysctl(ns, "net.ipv6.conf.default.disable_ipv6", "1")
            .map_err(e)?;
    }
    #[rustfmt::skip]
    let ip_cmds: &[(&Netns, &[&str])] = &[
        (&fw, &["link", "add", "fw-cli", "address", "02:00:00:00:01:01", "type", "veth", "peer", "name", "cli0", "address", "02:00:00:00:01:02", "netns", cli.name()]),
        (&fw, &["link", "add", "fw-srv", "address", "02:00:00:00:02:01", "type", "veth", "peer", "name", "srv0", "address", "02:00:00:00:02:02", "netns", srv.name()]),
        (&fw, &["link", "set", "fw-cli", "up"]),
        (&fw, &["link", "set", "fw-srv", "up"]),
        (&cli, &["link", "set", "cli0", "up"]),
        (&srv, &["link", "set", "srv0", "up"]),
        (&fw, &["addr", "add", "192.0.2.1/24", "dev", "fw-cli"]),
        (&fw, &["addr", "add", "198.51.100.1/24", "dev", "fw-srv"]),
        (&fw, &["route", "add", "203.0.113.0/24", "via", "198.51.100.254"]),
        (&fw, &["neigh", "add", "192.0.2.2", "lladdr", "02:00:00:00:01:02", "dev", "fw-cli", "nud", "permanent"]),
        (&fw, &["neigh", "add", "198.51.100.2", "lladdr", "02:00:00:00:02:02", "dev", "fw-srv", "nud", "permanent"]),
        (&fw, &["neigh", "add", "198.51.100.254", "lladdr", "02:00:00:00:02:fe", "dev", "fw-srv", "nud", "permanent"]),
    ];
    for (ns, args) in ip_cmds {
        net.ip(ns, args).map_err(e)?;
    }
    let mtu = mtu.to_string();
    net.ip(&fw, &["link", "set", "fw-srv", "mtu", &mtu])
        .map_err(e)?;
    net.ip(&srv, &["link", "set", "srv0", "mtu", &mtu])
        .map_err(e)?;
    let forward = if fw_kind == Fw::Kernel { "1" } else { "0" };
    for (k, v) in [
        ("net.ipv4.ip_forward", forward),
        ("net.ipv4.icmp_ratelimit", "0"),
        ("net.ipv4.conf.all.send_redirects", "0"),
    ] {
        net.sysctl(&fw, k, v).map_err(e)?;
    }
    if v6 {
        for (k, v) in [
            ("net.ipv6.conf.all.forwarding", forward),
            ("net.ipv6.icmp.ratelimit", "0"),
            ("net.ipv6.auto_flowlabels", "0"),
        ] {
            net.sysctl(&fw, k, v).map_err(e)?;
        }
        for (dev, cidr) in TOPOLOGY6_ADDRS {
            net.ip(&fw, &["addr", "add", cidr, "dev", dev, "nodad"])
                .map_err(e)?;
        }
        #[rustfmt::skip]
        let v6_cmds: &[&[&str]] = &[
            &["-6", "route", "add", "2001:db8:3::/48", "via", "2001:db8:2::fe", "dev", "fw-srv"],
            &["-6", "neigh", "add", CLI6, "lladdr", "02:00:00:00:01:02", "dev", "fw-cli", "nud", "permanent"],
            &["-6", "neigh", "add", SRV6, "lladdr", "02:00:00:00:02:02", "dev", "fw-srv", "nud", "permanent"],
            &["-6", "neigh", "add", "2001:db8:2::fe", "lladdr", "02:00:00:00:02:fe", "dev", "fw-srv", "nud", "permanent"],
        ];
        for args in v6_cmds {
            net.ip(&fw, args).map_err(e)?;
        }
    }
    let mut daemon = None;
    if fw_kind == Fw::Kernel {
        let out = net
            .exec(&fw, &["nft", "-f", ruleset.to_str().unwrap()])
            .map_err(e)?;
        if !out.status.success() {
            return Err(format!(
                "nft -f refused the ruleset: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    } else {
        let sock = ruleset.with_extension("sock");
        let child = std::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                fw.name(),
                SLUICE,
                "run",
                "--iface",
                "fw-cli",
                "--iface",
                "fw-srv",
            ])
            .args(if fw_kind == Fw::SluiceHost {
                &["--host-tun", "sl-host"][..]
            } else {
                &[]
            })
            .arg("--ruleset")
            .arg(ruleset)
            .arg("--control")
            .arg(&sock)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|x| x.to_string())?;
        daemon = Some(child);
        let start = Instant::now();
        loop {
            let ok = std::process::Command::new(SLUICE)
                .args(["ctl", "--control"])
                .arg(&sock)
                .arg("stats")
                .output()
                .is_ok_and(|o| o.status.success());
            if ok {
                break;
            }
            if start.elapsed() > Duration::from_secs(10) {
                if let Some(mut d) = daemon.take() {
                    let _ = d.kill();
                    let _ = d.wait();
                }
                return Err("sluice run did not come up".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let cli_port = cli.run(|| PacketPort::open("cli0")).map_err(e)?;
    let srv_port = srv.run(|| PacketPort::open("srv0")).map_err(e)?;
    Ok(KernelRig {
        cli: cli_port,
        srv: srv_port,
        daemon,
        _net: net,
    })
}

/// Drains both ports until nothing arrived for `quiet`.
fn collect(rig: &mut KernelRig, quiet: Duration) -> Vec<String> {
    let mut out = Vec::new();
    let mut batch = Batch::with_capacity(64);
    let mut last = Instant::now();
    let start = Instant::now();
    while last.elapsed() < quiet && start.elapsed() < Duration::from_secs(1) {
        let mut got = false;
        for (name, port) in [("fw-cli", &mut rig.cli), ("fw-srv", &mut rig.srv)] {
            batch.clear();
            if port.recv(&mut batch, 0).unwrap_or(0) > 0 {
                got = true;
                for i in 0..batch.len() {
                    let f = batch.frame(i);
                    if f.starts_with(&[0x33, 0x33]) {
                        continue; // IPv6 multicast: fw's kernel announcing itself (MLD, DAD)
                    }
                    out.push(normalize(name, f, true));
                }
            }
        }
        if got {
            last = Instant::now();
        } else {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    out.sort();
    out
}

fn run_kernel(
    ruleset: &Path,
    mtu: u32,
    probes: &[(bool, Vec<Vec<u8>>)],
    fw: Fw,
    v6: bool,
) -> Result<Vec<Vec<String>>, String> {
    let mut rig = kernel_rig(ruleset, mtu, fw, v6)?;
    collect(&mut rig, Duration::from_millis(20));
    let mut results = Vec::new();
    for (from_cli, frames) in probes {
        let port = if *from_cli {
            &mut rig.cli
        } else {
            &mut rig.srv
        };
        for frame in frames {
            port.send(frame).map_err(|e| e.to_string())?;
        }
        port.flush().map_err(|e| e.to_string())?;
        // sluice's worker may be asleep in poll(2) (10 ms) on a loaded machine: wait longer for it.
        let quiet = if fw == Fw::Kernel { 25 } else { 50 };
        results.push(collect(&mut rig, Duration::from_millis(quiet)));
    }
    Ok(results)
}

fn write_pcap(path: &Path, frames: &[(Duration, &[u8])]) {
    use pcap_file::pcap::{PcapPacket, PcapWriter};
    let f = std::fs::File::create(path).unwrap();
    let mut w = PcapWriter::new(f).unwrap();
    for (ts, data) in frames {
        w.write_packet(&PcapPacket::new(*ts, data.len() as u32, data))
            .unwrap();
    }
}

fn read_pcap(path: &Path) -> Vec<(Duration, Vec<u8>)> {
    use pcap_file::pcap::PcapReader;
    let Ok(f) = std::fs::File::open(path) else {
        return Vec::new();
    };
    let mut r = PcapReader::new(f).unwrap();
    let mut out = Vec::new();
    while let Some(p) = r.next_packet() {
        let p = p.unwrap();
        out.push((p.timestamp, p.data.into_owned()));
    }
    out
}

fn run_replay(
    dir: &Path,
    ruleset: &Path,
    mtu: u32,
    probes: &[(bool, Vec<Vec<u8>>)],
) -> Result<Vec<Vec<String>>, String> {
    let topo = dir.join("topology.toml");
    std::fs::write(&topo, TOPOLOGY.replace("MTU", &mtu.to_string())).unwrap();
    let ts = |i: usize| Duration::from_secs(100 + i as u64);
    let cli: Vec<_> = probes
        .iter()
        .enumerate()
        .filter(|(_, p)| p.0)
        .flat_map(|(i, p)| p.1.iter().map(move |f| (ts(i), &f[..])))
        .collect();
    let srv: Vec<_> = probes
        .iter()
        .enumerate()
        .filter(|(_, p)| !p.0)
        .flat_map(|(i, p)| p.1.iter().map(move |f| (ts(i), &f[..])))
        .collect();
    write_pcap(&dir.join("in-cli.pcap"), &cli);
    write_pcap(&dir.join("in-srv.pcap"), &srv);
    let out_dir = dir.join("out");
    let _ = std::fs::remove_dir_all(&out_dir);
    let o = std::process::Command::new(SLUICE)
        .args(["replay", "--no-icmp-ratelimit", "--ruleset"])
        .arg(ruleset)
        .arg("--topology")
        .arg(&topo)
        .arg("--in")
        .arg(format!("fw-cli={}", dir.join("in-cli.pcap").display()))
        .arg("--in")
        .arg(format!("fw-srv={}", dir.join("in-srv.pcap").display()))
        .arg("--out")
        .arg(&out_dir)
        .output()
        .unwrap();
    if !o.status.success() {
        return Err(format!(
            "sluice replay failed: {}",
            String::from_utf8_lossy(&o.stderr)
        ));
    }
    let mut results = vec![Vec::new(); probes.len()];
    for iface in ["fw-cli", "fw-srv"] {
        for (t, f) in read_pcap(&out_dir.join(format!("{iface}.pcap"))) {
            let i = t.as_secs().saturating_sub(100) as usize;
            if let Some(r) = results.get_mut(i) {
                r.push(normalize(iface, &f, false));
            }
        }
    }
    for r in &mut results {
        r.sort();
    }
    Ok(results)
}

fn cases() -> Vec<(String, PathBuf)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/differential");
    let mut v: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .map(|p| (p.file_stem().unwrap().to_string_lossy().into_owned(), p))
        .collect();
    v.sort();
    v
}

#[test]
fn corpus_parses_and_has_enough_cases() {
    let cases = cases();
    assert!(cases.len() >= 50, "only {} cases", cases.len());
    for (name, path) in cases {
        let c: Case = toml::from_str(&std::fs::read_to_string(&path).unwrap())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!c.probes.is_empty(), "{name}: no probes");
        for p in &c.probes {
            build_probe(p).unwrap_or_else(|e| panic!("{name}: {p}: {e}"));
        }
        rules::parse_ruleset(&c.ruleset, &name).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn kernel_and_replay_agree_on_every_case() {
    if !hw::netns::is_root()
        || std::process::Command::new("nft")
            .arg("-v")
            .output()
            .is_err()
    {
        eprintln!("kernel_and_replay_agree_on_every_case: skipped, needs root and nft");
        return;
    }
    let only = std::env::var("DIFF_CASE").ok();
    let tmp = std::env::temp_dir().join(format!("sluice-diff-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let mut failures = Vec::new();
    let mut xfails = Vec::new();
    let mut ran = 0;
    for (name, path) in cases() {
        if only.as_ref().is_some_and(|o| !name.contains(o.as_str())) {
            continue;
        }
        let c: Case = toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let dir = tmp.join(&name);
        std::fs::create_dir_all(&dir).unwrap();
        let rs = dir.join("ruleset.nft");
        std::fs::write(&rs, format!("flush ruleset\n{}", c.ruleset)).unwrap();
        let probes: Vec<_> = c.probes.iter().map(|p| build_probe(p).unwrap()).collect();
        let mtu = c.mtu_srv.unwrap_or(1500);
        let v6 = c
            .probes
            .iter()
            .any(|p| p.starts_with("cli6") || p.starts_with("srv6"));
        let kernel = run_kernel(&rs, mtu, &probes, Fw::Kernel, v6);
        let sluice = run_replay(&dir, &rs, mtu, &probes);
        // Live: the same probes through `sluice run` on AF_XDP; with the exception path to fw's kernel
        // (`--host-tun`) when a probe is addressed to the box itself, so that the kernel answers it
        // after sluice's INPUT and its answer goes through sluice's OUTPUT.
        let to_box = c.probes.iter().any(|p| {
            p.contains("dst=192.0.2.1")
                || p.contains("dst=198.51.100.1")
                || p.contains("dst=2001:db8:1::1 ")
                || p.ends_with("dst=2001:db8:1::1")
                || p.contains("dst=2001:db8:2::1 ")
                || p.ends_with("dst=2001:db8:2::1")
        });
        let live_fw = if to_box { Fw::SluiceHost } else { Fw::Sluice };
        let live = if std::env::var("DIFF_NO_LIVE").is_ok() {
            None
        } else {
            // A live run races the probe windows against a busy machine (a worker descheduled for
            // longer than the quiet time moves a frame into the next probe's window): one that
            // differs from the kernel is run once more, and only a difference seen twice counts.
            let first = run_kernel(&rs, mtu, &probes, live_fw, v6);
            if matches!((&kernel, &first), (Ok(k), Ok(l)) if k != l) {
                eprintln!("{name}: the live run differs from the kernel; running it again");
                Some(run_kernel(&rs, mtu, &probes, live_fw, v6))
            } else {
                Some(first)
            }
        };
        ran += 1;
        if std::env::var("DIFF_VERBOSE").is_ok() {
            eprintln!("{name}:\n  kernel {kernel:#?}\n  sluice {sluice:#?}\n  live {live:#?}");
        }
        let mut report = String::new();
        if c.live_only.is_some() && live.is_none() {
            eprintln!("{name}: compared live only, and DIFF_NO_LIVE is set: skipped");
            continue;
        }
        match (&kernel, &sluice) {
            _ if c.live_only.is_some() => {}
            (Ok(k), Ok(s)) => {
                for (i, p) in c.probes.iter().enumerate() {
                    if k[i] != s[i] {
                        report.push_str(&format!(
                            "  probe {i} `{p}`\n    kernel: {:#?}\n    sluice: {:#?}\n",
                            k[i].iter()
                                .map(|l| l.split(' ').take(7).collect::<Vec<_>>().join(" "))
                                .collect::<Vec<_>>(),
                            s[i].iter()
                                .map(|l| l.split(' ').take(7).collect::<Vec<_>>().join(" "))
                                .collect::<Vec<_>>()
                        ));
                        for (a, b) in k[i].iter().zip(&s[i]) {
                            if a != b {
                                report
                                    .push_str(&format!("    kernel hex {a}\n    sluice hex {b}\n"));
                            }
                        }
                    }
                }
            }
            (k, s) => {
                report = format!(
                    "  kernel: {:?}\n  sluice: {:?}\n",
                    k.as_ref().err(),
                    s.as_ref().err()
                )
            }
        }
        match (&kernel, &live) {
            (Ok(k), Some(Ok(l))) => {
                for (i, p) in c.probes.iter().enumerate() {
                    if k[i] != l[i] {
                        report.push_str(&format!(
                            "  live probe {i} `{p}`\n    kernel: {:#?}\n    live sluice: {:#?}\n",
                            k[i], l[i]
                        ));
                    }
                }
            }
            (_, Some(Err(e))) => report.push_str(&format!("  live sluice: {e}\n")),
            _ => {}
        }
        match (&c.xfail, report.is_empty()) {
            (None, false) => failures.push(format!("{name}:\n{report}")),
            (Some(why), false) => xfails.push(format!("{name} (known: {why})")),
            (Some(why), true) => failures.push(format!(
                "{name}: marked xfail ({why}) but agrees now: remove the mark"
            )),
            (None, true) => {}
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
    eprintln!("{ran} cases run; known differences: {xfails:#?}");
    assert!(
        failures.is_empty(),
        "{} of {ran} cases differ from the kernel:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
