//! Frame builders and a lab-shaped FIB for tests and benchmarks (here and in other crates): packets are
//! data, so every test builds them the same way.

use crate::fib::{Fib, InterfaceConfig};
use crate::wire::{checksum, ArpRepr, ETHERTYPE_IPV4, ETH_HLEN};
use std::net::Ipv6Addr;
use std::sync::Arc;

/// fw's MAC on the client side of the lab.
pub const FW_IN: [u8; 6] = [2, 0, 0, 0, 1, 1];
/// fw's MAC on the server side of the lab.
pub const FW_OUT: [u8; 6] = [2, 0, 0, 0, 2, 1];
pub const CLI_MAC: [u8; 6] = [2, 0, 0, 0, 1, 2];
pub const SRV_MAC: [u8; 6] = [2, 0, 0, 0, 2, 2];
pub const CLI: [u8; 4] = [192, 0, 2, 2];
pub const SRV: [u8; 4] = [198, 51, 100, 2];

/// Clears the DF bit of the IPv4 packet in `frame` and fixes its header checksum (a datagram the path
/// may fragment).
pub fn clear_df(frame: &mut [u8]) {
    let h = &mut frame[ETH_HLEN..ETH_HLEN + 20];
    h[6] = 0;
    h[10..12].fill(0);
    let c = checksum(h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
}

/// An Ethernet + IPv4 frame around `l4` with a correct header checksum (MACs 02:00:00:00:00:01 ← :02).
pub fn ipv4_frame(src: [u8; 4], dst: [u8; 4], proto: u8, l4: &[u8], ttl: u8) -> Vec<u8> {
    let mut f = vec![0u8; ETH_HLEN + 20 + l4.len()];
    f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
    f[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    let ip = &mut f[ETH_HLEN..];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
    ip[6] = 0x40;
    ip[8] = ttl;
    ip[9] = proto;
    ip[12..16].copy_from_slice(&src);
    ip[16..20].copy_from_slice(&dst);
    let c = checksum(&ip[..20]);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    ip[20..].copy_from_slice(l4);
    f
}

/// cli's and srv's IPv6 addresses in the lab (fw-cli is 2001:db8:1::1/64, fw-srv 2001:db8:2::1/64).
pub const CLI6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2);
pub const SRV6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 2);
pub const FW_IN6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1);
pub const FW_OUT6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 1);

/// An Ethernet + IPv6 frame around `l4` (MACs 02:00:00:00:00:01 ← :02, flow label 0).
pub fn ipv6_frame(src: Ipv6Addr, dst: Ipv6Addr, next: u8, l4: &[u8], hop_limit: u8) -> Vec<u8> {
    ipv6_frame_ext(src, dst, &[], next, l4, hop_limit)
}

/// An Ethernet + IPv6 frame with extension headers: each `(type, bytes)` is one header whose first byte
/// (its Next Header field) is set here to the type of what follows; `bytes` carry its own length field.
pub fn ipv6_frame_ext(
    src: Ipv6Addr,
    dst: Ipv6Addr,
    exts: &[(u8, &[u8])],
    next: u8,
    l4: &[u8],
    hop_limit: u8,
) -> Vec<u8> {
    let mut payload = Vec::new();
    for (i, (_, body)) in exts.iter().enumerate() {
        let mut b = body.to_vec();
        if let Some(first) = b.first_mut() {
            *first = exts.get(i + 1).map_or(next, |e| e.0);
        }
        payload.extend_from_slice(&b);
    }
    payload.extend_from_slice(l4);
    let mut f = vec![0u8; ETH_HLEN + 40];
    f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
    f[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
    crate::ipv6::write_ipv6_header(
        &mut f[ETH_HLEN..],
        0,
        payload.len(),
        exts.first().map_or(next, |e| e.0),
        hop_limit,
        src,
        dst,
    );
    f.extend_from_slice(&payload);
    f
}

/// Fills in the TCP (16), UDP (6) or ICMPv6 (2) checksum of an IPv6 frame without extension headers.
pub fn fix_l4_checksum_v6(f: &mut [u8]) {
    let next = f[ETH_HLEN + 6];
    let at = match next {
        6 => 16,
        17 => 6,
        58 => 2,
        _ => return,
    };
    let src = Ipv6Addr::from(<[u8; 16]>::try_from(&f[ETH_HLEN + 8..ETH_HLEN + 24]).unwrap());
    let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&f[ETH_HLEN + 24..ETH_HLEN + 40]).unwrap());
    let l4 = ETH_HLEN + 40;
    f[l4 + at..l4 + at + 2].fill(0);
    let c = crate::ipv6::l4_checksum_v6(src, dst, next, &f[l4..]);
    f[l4 + at..l4 + at + 2].copy_from_slice(&c.to_be_bytes());
}

/// An ICMPv6 echo request (type 128) with identifier `id`.
pub fn icmp6_echo(id: u16, seq: u16) -> Vec<u8> {
    let mut m = vec![128, 0, 0, 0, 0, 0, 0, 0];
    m[4..6].copy_from_slice(&id.to_be_bytes());
    m[6..8].copy_from_slice(&seq.to_be_bytes());
    m
}

/// Rewrites the Ethernet addresses of `frame`.
pub fn with_macs(dst: [u8; 6], src: [u8; 6], mut frame: Vec<u8>) -> Vec<u8> {
    frame[0..6].copy_from_slice(&dst);
    frame[6..12].copy_from_slice(&src);
    frame
}

/// A 20-byte TCP header (checksum left zero: the pipeline does not verify L4 checksums, like the kernel's
/// forwarding path).
pub fn tcp_header(sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let mut t = vec![0u8; 20];
    t[0..2].copy_from_slice(&sport.to_be_bytes());
    t[2..4].copy_from_slice(&dport.to_be_bytes());
    t[12] = 5 << 4;
    t[13] = flags;
    t
}

/// A UDP header with `payload` bytes of zeros behind it.
pub fn udp_datagram(sport: u16, dport: u16, payload: usize) -> Vec<u8> {
    let mut u = vec![0u8; 8 + payload];
    u[0..2].copy_from_slice(&sport.to_be_bytes());
    u[2..4].copy_from_slice(&dport.to_be_bytes());
    u[4..6].copy_from_slice(&((8 + payload) as u16).to_be_bytes());
    u
}

/// An ARP frame from `smac`/`sip` about `tip`, sent to `dst`.
pub fn arp_frame(
    op: u16,
    smac: [u8; 6],
    sip: [u8; 4],
    tmac: [u8; 6],
    tip: [u8; 4],
    dst: [u8; 6],
) -> Vec<u8> {
    let a = ArpRepr {
        op,
        sender_mac: smac,
        sender_ip: sip.into(),
        target_mac: tmac,
        target_ip: tip.into(),
    };
    let mut buf = vec![0u8; 60];
    a.emit_frame(smac, dst, &mut buf);
    buf
}

/// The lab's fw box: `fw-cli` 192.0.2.1/24 and 2001:db8:1::1/64 (MAC [`FW_IN`]), `fw-srv`
/// 198.51.100.1/24 and 2001:db8:2::1/64 (MAC [`FW_OUT`]).
pub fn lab_fib() -> Arc<Fib> {
    let ifc = |name: &str, ifindex, mac, addr: [u8; 4]| InterfaceConfig {
        name: name.into(),
        ifindex,
        mac,
        mtu: 1500,
        ipv4: vec![(addr.into(), 24)],
    };
    let mut fib = Fib::new(
        vec![
            ifc("fw-cli", 2, FW_IN, [192, 0, 2, 1]),
            ifc("fw-srv", 3, FW_OUT, [198, 51, 100, 1]),
        ],
        &[],
    );
    fib.add_ipv6(0, FW_IN6, 64);
    fib.add_ipv6(1, FW_OUT6, 64);
    Arc::new(fib)
}
