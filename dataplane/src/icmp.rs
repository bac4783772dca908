//! Packets the appliance answers with: ICMP errors (`icmp_send`), TCP resets (`nf_send_reset`), and the
//! kernel's rate limits for them. Builders return whole frames with the Ethernet addresses left zero: the
//! local-output path routes them, runs OUTPUT/POSTROUTING and fills the link layer in.

use crate::wire::{
    self, checksum, Ipv4Info, ETHERTYPE_IPV4, ETH_HLEN, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP,
    TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN,
};
use hashbrown::HashMap;
use std::net::{IpAddr, Ipv4Addr};

pub const ICMP_DEST_UNREACH: u8 = 3;
pub const ICMP_TIME_EXCEEDED: u8 = 11;
pub const ICMP_REDIRECT: u8 = 5;
pub const ICMP_REDIR_HOST: u8 = 1;
pub const ICMP_NET_UNREACH: u8 = 0;
pub const ICMP_HOST_UNREACH: u8 = 1;
pub const ICMP_PORT_UNREACH: u8 = 3;
pub const ICMP_FRAG_NEEDED: u8 = 4;
pub const ICMP_PKT_FILTERED: u8 = 13;

/// `sysctl net.ipv4.ip_default_ttl`.
pub const DEFAULT_TTL: u8 = 64;
/// icmp_send quotes at most this much: an ICMP error fits in 576 bytes.
const ICMP_ERROR_MAX: usize = 576;
const IPTOS_PREC_INTERNETCONTROL: u8 = 0xc0;
const IPTOS_TOS_MASK: u8 = 0x1e;

/// ICMPX codes (nft's `icmpx`) to ICMP codes, as nft_reject_icmp_code does.
pub fn icmpx_to_icmp(code: u8) -> u8 {
    match code {
        0 => ICMP_NET_UNREACH,
        2 => ICMP_HOST_UNREACH,
        3 => ICMP_PKT_FILTERED,
        _ => ICMP_PORT_UNREACH,
    }
}

/// ICMPX codes to ICMPv6 destination-unreachable codes (nft_reject_icmpv6_code).
pub fn icmpx_to_icmpv6(code: u8) -> u8 {
    match code {
        0 => 0, // no route
        2 => 3, // address unreachable
        3 => 1, // administratively prohibited
        _ => 4, // port unreachable
    }
}

/// Whether the kernel's `icmp_send` would answer this packet at all: never about an ICMP error, a
/// non-first fragment, or a packet that was not unicast to us at the link layer.
pub fn icmp4_may_answer(frame: &[u8], ip: &Ipv4Info) -> bool {
    if frame.first().is_some_and(|b| b & 1 == 1) {
        return false; // link-layer broadcast / multicast (pkt_type != PACKET_HOST)
    }
    if ip.th_off.is_none() {
        return false; // non-first fragment
    }
    let d = ip.dst.octets();
    if ip.dst.is_broadcast() || (224..=239).contains(&d[0]) || ip.src.is_unspecified() {
        return false;
    }
    if ip.proto == IPPROTO_ICMP {
        // informational types only (icmp_pointers[type].error is false)
        return matches!(ip.icmp, Some(i) if matches!(i.ty, 0 | 8 | 13 | 14 | 15 | 16 | 17 | 18));
    }
    true
}

/// Builds an ICMP error from `src` to the sender of the packet at `frame[ip.nh_off..]`, quoting it as
/// `icmp_send` does (up to 576 bytes in all). `info` is the 32-bit field after the checksum (the next-hop
/// MTU for fragmentation-needed).
pub fn icmp4_error(
    frame: &[u8],
    ip: &Ipv4Info,
    src: Ipv4Addr,
    ty: u8,
    code: u8,
    info: u32,
    ip_id: u16,
) -> Vec<u8> {
    let orig = &frame[ip.nh_off..ip.nh_off + ip.total_len];
    let quote = orig.len().min(ICMP_ERROR_MAX - 20 - 8);
    let total = 20 + 8 + quote;
    let mut f = vec![0u8; ETH_HLEN + total];
    f[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    let tos = (orig[1] & IPTOS_TOS_MASK) | IPTOS_PREC_INTERNETCONTROL;
    write_ipv4_header(
        &mut f[ETH_HLEN..],
        tos,
        total,
        ip_id,
        false,
        DEFAULT_TTL,
        IPPROTO_ICMP,
        src,
        ip.src,
    );
    let icmp = &mut f[ETH_HLEN + 20..];
    icmp[0] = ty;
    icmp[1] = code;
    icmp[4..8].copy_from_slice(&info.to_be_bytes());
    icmp[8..].copy_from_slice(&orig[..quote]);
    let c = checksum(icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    f
}

#[allow(clippy::too_many_arguments)]
pub fn write_ipv4_header(
    h: &mut [u8],
    tos: u8,
    total_len: usize,
    id: u16,
    df: bool,
    ttl: u8,
    proto: u8,
    src: Ipv4Addr,
    dst: Ipv4Addr,
) {
    h[0] = 0x45;
    h[1] = tos;
    h[2..4].copy_from_slice(&(total_len as u16).to_be_bytes());
    h[4..6].copy_from_slice(&id.to_be_bytes());
    h[6..8].copy_from_slice(&(if df { 0x4000u16 } else { 0 }).to_be_bytes());
    h[8] = ttl;
    h[9] = proto;
    h[10..12].fill(0);
    h[12..16].copy_from_slice(&src.octets());
    h[16..20].copy_from_slice(&dst.octets());
    let c = checksum(&h[..20]);
    h[10..12].copy_from_slice(&c.to_be_bytes());
}

/// The checksum over the IPv4 pseudo-header and `l4` (0 when `l4` carries a correct checksum).
pub fn l4_checksum_v4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, l4: &[u8]) -> u16 {
    let mut pseudo = Vec::with_capacity(12 + l4.len());
    pseudo.extend_from_slice(&src.octets());
    pseudo.extend_from_slice(&dst.octets());
    pseudo.extend_from_slice(&[0, proto]);
    pseudo.extend_from_slice(&(l4.len() as u16).to_be_bytes());
    pseudo.extend_from_slice(l4);
    checksum(&pseudo)
}

/// Whether the transport checksum of a TCP/UDP packet is correct (`nf_reject_verify_csum` /
/// `nf_ip_checksum`: the kernel sends no reject reply about a packet with a bad checksum). A UDP checksum
/// of zero means "none".
pub fn transport_checksum_ok_v4(frame: &[u8], ip: &Ipv4Info) -> bool {
    let Some(th) = ip.th_off else {
        return true;
    };
    if ip.is_fragment {
        return true;
    }
    let l4 = &frame[th..ip.nh_off + ip.total_len];
    match ip.proto {
        IPPROTO_TCP => l4_checksum_v4(ip.src, ip.dst, IPPROTO_TCP, l4) == 0,
        IPPROTO_UDP => {
            l4.len() < 8 || (l4[6] == 0 && l4[7] == 0) || {
                l4_checksum_v4(ip.src, ip.dst, IPPROTO_UDP, l4) == 0
            }
        }
        _ => true,
    }
}

/// The RST `nf_send_reset` answers a TCP segment with, or `None` where the kernel sends none (an RST, a
/// fragment, a bad checksum, a segment not unicast to us).
pub fn tcp_reset4(frame: &[u8], ip: &Ipv4Info) -> Option<Vec<u8>> {
    let th = ip.th_off?;
    if ip.proto != IPPROTO_TCP || ip.is_fragment || frame[0] & 1 == 1 {
        return None;
    }
    let oth = frame.get(th..ip.nh_off + ip.total_len)?;
    if oth.len() < 20 || oth[13] & TCP_RST != 0 || !transport_checksum_ok_v4(frame, ip) {
        return None;
    }
    let flags = oth[13];
    let doff = (oth[12] >> 4) as usize * 4;
    let mut f = vec![0u8; ETH_HLEN + 40];
    f[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    write_ipv4_header(
        &mut f[ETH_HLEN..],
        0,
        40,
        0,
        true,
        DEFAULT_TTL,
        IPPROTO_TCP,
        ip.dst,
        ip.src,
    );
    let t = &mut f[ETH_HLEN + 20..];
    t[0..2].copy_from_slice(&oth[2..4]);
    t[2..4].copy_from_slice(&oth[0..2]);
    t[12] = 5 << 4;
    if flags & TCP_ACK != 0 {
        t[4..8].copy_from_slice(&oth[8..12]);
        t[13] = TCP_RST;
    } else {
        let seq = u32::from_be_bytes(oth[4..8].try_into().unwrap());
        let payload = oth.len().saturating_sub(doff) as u32;
        let ack = seq
            .wrapping_add((flags & TCP_SYN != 0) as u32)
            .wrapping_add((flags & TCP_FIN != 0) as u32)
            .wrapping_add(payload);
        t[8..12].copy_from_slice(&ack.to_be_bytes());
        t[13] = TCP_RST | TCP_ACK;
    }
    let c = l4_checksum_v4(ip.dst, ip.src, IPPROTO_TCP, &f[ETH_HLEN + 20..]);
    f[ETH_HLEN + 36..ETH_HLEN + 38].copy_from_slice(&c.to_be_bytes());
    Some(f)
}

/// The kernel's limits on the ICMP errors it sends: a token bucket per destination
/// (`inet_peer_xrlim_allow`, `net.ipv4.icmp_ratelimit`, burst of 6) and a global one
/// (`net.ipv4.icmp_msgs_per_sec` with `icmp_msgs_burst`).
#[derive(Clone, Debug)]
pub struct IcmpRateLimit {
    /// Nanoseconds per error per destination (0: no per-destination limit). Kernel default 1 s.
    pub per_dest_ns: u64,
    /// Errors per second in all (0: no global limit). Kernel default 1000.
    pub msgs_per_sec: u64,
    /// Burst of the global bucket. Kernel default 50.
    pub msgs_burst: u64,
    /// ICMPv6's own per-destination interval (`net.ipv6.icmp.ratelimit`, ms → ns). Kernel default 1 s.
    pub per_dest6_ns: u64,
    /// The ICMPv6 types that are rate limited at all (`net.ipv6.icmp.ratemask`, a bit per type). Kernel
    /// default `0-1,3-127`: packet too big and the informational messages above 127 are not.
    pub ratemask6: [u64; 4],
}

impl Default for IcmpRateLimit {
    fn default() -> Self {
        IcmpRateLimit {
            per_dest_ns: 1_000_000_000,
            msgs_per_sec: 1000,
            msgs_burst: 50,
            per_dest6_ns: 1_000_000_000,
            ratemask6: parse_ratemask("0-1,3-127").unwrap(),
        }
    }
}

/// Parses a type list in the kernel's bitmap syntax (`0-1,3-127`, as `net.ipv6.icmp.ratemask` prints
/// it); `None` when it is not one.
pub fn parse_ratemask(text: &str) -> Option<[u64; 4]> {
    let mut mask = [0u64; 4];
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (a.trim().parse::<u8>().ok()?, b.trim().parse::<u8>().ok()?),
            None => {
                let v = part.trim().parse::<u8>().ok()?;
                (v, v)
            }
        };
        if hi < lo {
            return None;
        }
        for t in lo..=hi {
            mask[t as usize / 64] |= 1 << (t % 64);
        }
    }
    Some(mask)
}

impl IcmpRateLimit {
    /// Is ICMPv6 type `ty` subject to the limits (`icmpv6_mask_allow`)?
    pub fn limits_icmp6_type(&self, ty: u8) -> bool {
        self.ratemask6[ty as usize / 64] & (1 << (ty % 64)) != 0
    }
}

/// XRLIM_BURST_FACTOR.
const BURST_FACTOR: u64 = 6;
/// Destinations remembered before the table is cleared (inetpeer's GC, bounded).
const MAX_PEERS: usize = 4096;

#[derive(Debug, Default)]
pub struct IcmpLimiter {
    peers: HashMap<IpAddr, (u64, u64)>,
    global_tokens: u64,
    global_last: u64,
    started: bool,
}

impl IcmpLimiter {
    /// May an ICMP error go to `dst` now? Consumes a token if so.
    pub fn allow(&mut self, cfg: &IcmpRateLimit, dst: IpAddr, now: u64) -> bool {
        if cfg.msgs_per_sec > 0 {
            let per = 1_000_000_000 / cfg.msgs_per_sec;
            if !self.started {
                self.started = true;
                self.global_tokens = cfg.msgs_burst;
                self.global_last = now;
            }
            let gained = now.saturating_sub(self.global_last) / per.max(1);
            if gained > 0 {
                self.global_tokens = (self.global_tokens + gained).min(cfg.msgs_burst);
                self.global_last = now;
            }
            if self.global_tokens == 0 {
                return false;
            }
        }
        if cfg.per_dest_ns > 0 {
            if self.peers.len() >= MAX_PEERS && !self.peers.contains_key(&dst) {
                self.peers.clear();
            }
            let cap = BURST_FACTOR * cfg.per_dest_ns;
            // A new peer starts as if last seen 60 s ago (rate_last = jiffies - 60 * HZ): a full burst.
            let (tokens, last) = self.peers.entry(dst).or_insert((cap, now));
            let t = (*tokens + now.saturating_sub(*last)).min(cap);
            *last = now;
            if t < cfg.per_dest_ns {
                *tokens = t;
                return false;
            }
            *tokens = t - cfg.per_dest_ns;
        }
        if cfg.msgs_per_sec > 0 {
            self.global_tokens -= 1;
        }
        true
    }
}

/// Reads the IPv4 header fields of a frame built by this module (for tests and the local-output path).
pub fn parse_built(frame: &[u8]) -> Option<Ipv4Info> {
    wire::parse_ipv4(frame, ETH_HLEN).ok()
}

#[cfg(test)]
mod ratemask_tests {
    use super::*;

    #[test]
    fn the_kernels_default_ratemask() {
        let d = IcmpRateLimit::default();
        assert!(d.limits_icmp6_type(1) && d.limits_icmp6_type(0) && d.limits_icmp6_type(3));
        assert!(d.limits_icmp6_type(127) && d.limits_icmp6_type(4));
        assert!(!d.limits_icmp6_type(2) && !d.limits_icmp6_type(128) && !d.limits_icmp6_type(255));
        assert_eq!(parse_ratemask(""), Some([0; 4]));
        assert_eq!(parse_ratemask("255"), Some([0, 0, 0, 1 << 63]));
        assert_eq!(parse_ratemask("3-1"), None);
        assert_eq!(parse_ratemask("x"), None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::parse_ipv4;
    use crate::wire::tests::{ipv4_frame, tcp_header};

    fn tcp_with_csum(flags: u8, payload: &[u8]) -> Vec<u8> {
        let mut l4 = tcp_header(40000, 22, flags);
        l4[4..8].copy_from_slice(&1000u32.to_be_bytes());
        l4[8..12].copy_from_slice(&77u32.to_be_bytes());
        l4.extend_from_slice(payload);
        let c = l4_checksum_v4([192, 0, 2, 2].into(), [198, 51, 100, 2].into(), 6, &l4);
        l4[16..18].copy_from_slice(&c.to_be_bytes());
        ipv4_frame([192, 0, 2, 2], [198, 51, 100, 2], IPPROTO_TCP, &l4, 63)
    }

    #[test]
    fn rst_answers_a_syn_with_ack_of_seq_plus_one() {
        let f = tcp_with_csum(TCP_SYN, &[]);
        let ip = parse_ipv4(&f, ETH_HLEN).unwrap();
        let r = tcp_reset4(&f, &ip).unwrap();
        let rip = parse_ipv4(&r, ETH_HLEN).unwrap();
        assert_eq!((rip.src, rip.dst), (ip.dst, ip.src));
        assert_eq!((rip.sport, rip.dport), (22, 40000));
        assert_eq!(rip.tcp_flags, TCP_RST | TCP_ACK);
        assert_eq!(&r[ETH_HLEN + 28..ETH_HLEN + 32], &1001u32.to_be_bytes());
        assert_eq!(&r[ETH_HLEN + 24..ETH_HLEN + 28], &[0; 4]);
        assert!(rip.dont_fragment);
        assert_eq!(rip.ttl, 64);
        assert!(transport_checksum_ok_v4(&r, &rip));
    }

    #[test]
    fn rst_answers_an_ack_with_its_ack_number_and_never_an_rst() {
        let f = tcp_with_csum(TCP_ACK, b"hello");
        let ip = parse_ipv4(&f, ETH_HLEN).unwrap();
        let r = tcp_reset4(&f, &ip).unwrap();
        assert_eq!(r[ETH_HLEN + 33], TCP_RST);
        assert_eq!(&r[ETH_HLEN + 24..ETH_HLEN + 28], &77u32.to_be_bytes());
        let rst = tcp_with_csum(TCP_RST, &[]);
        assert!(tcp_reset4(&rst, &parse_ipv4(&rst, ETH_HLEN).unwrap()).is_none());
        let mut bad = tcp_with_csum(TCP_SYN, &[]);
        bad[ETH_HLEN + 20 + 16] ^= 0xff;
        assert!(tcp_reset4(&bad, &parse_ipv4(&bad, ETH_HLEN).unwrap()).is_none());
    }

    #[test]
    fn icmp_error_quotes_the_packet_and_checks_out() {
        let f = tcp_with_csum(TCP_SYN, &[7; 1000]);
        let ip = parse_ipv4(&f, ETH_HLEN).unwrap();
        assert!(icmp4_may_answer(&f, &ip));
        let e = icmp4_error(&f, &ip, [192, 0, 2, 1].into(), 3, 3, 0, 9);
        let eip = parse_ipv4(&e, ETH_HLEN).unwrap();
        assert_eq!(eip.total_len, 576);
        assert_eq!(eip.src, Ipv4Addr::new(192, 0, 2, 1));
        assert_eq!(eip.dst, ip.src);
        assert_eq!(e[ETH_HLEN + 1], 0xc0);
        assert!(!eip.dont_fragment);
        assert_eq!(checksum(&e[ETH_HLEN + 20..]), 0);
        assert_eq!(
            &e[ETH_HLEN + 28..ETH_HLEN + 48],
            &f[ETH_HLEN..ETH_HLEN + 20]
        );
        // never about an ICMP error
        let err_ip = parse_ipv4(&e, ETH_HLEN).unwrap();
        assert!(!icmp4_may_answer(&e, &err_ip));
    }

    #[test]
    fn rate_limit_bursts_six_per_destination_then_one_per_second() {
        let cfg = IcmpRateLimit::default();
        let mut l = IcmpLimiter::default();
        let d: IpAddr = Ipv4Addr::new(192, 0, 2, 2).into();
        let now = 100_000_000_000;
        let allowed = (0..10).filter(|_| l.allow(&cfg, d, now)).count();
        assert_eq!(allowed, 6);
        assert!(!l.allow(&cfg, d, now + 500_000_000));
        assert!(l.allow(&cfg, d, now + 1_000_000_000));
        // another destination has its own bucket
        assert!(l.allow(&cfg, Ipv4Addr::new(192, 0, 2, 3).into(), now));
        let off = IcmpRateLimit {
            per_dest_ns: 0,
            msgs_per_sec: 0,
            msgs_burst: 0,
            ..Default::default()
        };
        assert!((0..100).all(|_| l.allow(&off, d, now)));
    }
}
