//! IPv6 on the wire: the header and its extension-header chain, neighbour discovery (NS/NA), and the
//! packets the appliance answers IPv6 with (ICMPv6 errors, TCP resets over IPv6).
//!
//! Validation follows the kernel's receive path, because that decides what is dropped and what is
//! forwarded. `ip6_rcv_core` drops a packet whose header is short, whose version is not 6, whose payload
//! length runs past the frame, whose source is multicast or v4-mapped, and whose hop-by-hop options
//! (`ipv6_parse_hopopts` / `ip6_parse_tlv`, before PREROUTING) are malformed or unknown with a discard
//! action: those are [`ParseError`]s here and the pipeline drops and counts them. The rest of the chain
//! (routing, fragment, destination options, AH) is never checked by the kernel's forwarding path: when
//! `ipv6_find_hdr` cannot walk it (an extension header that cannot be read), nftables sees no transport
//! header (`nft_set_pktinfo_unspec`: `meta l4proto` 0) and conntrack finds no protocol (the packet has
//! no ct, `ct state invalid`), but the packet is still forwarded if the rules let it; when the last
//! extension header only claims more bytes than there are, the protocol after it is still named, with no
//! transport header to read. [`Ipv6Info::chain_error`]
//! records that case and the pipeline counts it (`ip6_exthdr_unparsed`) and goes on the same way.

use crate::wire::{checksum, IcmpInfo, ParseError, ETH_HLEN, IPPROTO_TCP, IPPROTO_UDP};
use std::net::Ipv6Addr;

pub const ETHERTYPE_IPV6: u16 = 0x86dd;
pub const IPPROTO_ICMPV6: u8 = 58;
pub const IPV6_HLEN: usize = 40;
/// IPV6_MIN_MTU: every IPv6 link carries at least this much, and an ICMPv6 error fits in it.
pub const IPV6_MIN_MTU: usize = 1280;

pub const NEXTHDR_HOP: u8 = 0;
pub const NEXTHDR_ROUTING: u8 = 43;
pub const NEXTHDR_FRAGMENT: u8 = 44;
pub const NEXTHDR_AUTH: u8 = 51;
pub const NEXTHDR_NONE: u8 = 59;
pub const NEXTHDR_DEST: u8 = 60;

pub const ICMPV6_DEST_UNREACH: u8 = 1;
pub const ICMPV6_PKT_TOOBIG: u8 = 2;
pub const ICMPV6_TIME_EXCEED: u8 = 3;
pub const ICMPV6_PARAMPROB: u8 = 4;
pub const ICMPV6_NOROUTE: u8 = 0;
/// Beyond scope of source address (a link-local source the router will not forward).
pub const ICMPV6_NOT_NEIGHBOUR: u8 = 2;
pub const ICMPV6_ADM_PROHIBITED: u8 = 1;
pub const ICMPV6_ADDR_UNREACH: u8 = 3;
pub const ICMPV6_PORT_UNREACH: u8 = 4;
pub const ICMPV6_EXC_HOPLIMIT: u8 = 0;
/// Time exceeded: fragment reassembly time exceeded.
pub const ICMPV6_EXC_FRAGTIME: u8 = 1;
pub const ICMPV6_UNK_OPTION: u8 = 2;
pub const ND_ROUTER_SOLICIT: u8 = 133;
pub const ND_REDIRECT: u8 = 137;
pub const ND_NEIGHBOUR_SOLICIT: u8 = 135;
pub const ND_NEIGHBOUR_ADVERT: u8 = 136;
/// `net.ipv6.conf.*.hop_limit`: the hop limit of packets the appliance builds.
pub const DEFAULT_HOP_LIMIT: u8 = 64;
/// IP6_DEFAULT_MAX_HBH_OPTS_CNT (`net.ipv6.max_hbh_opts_number`).
const MAX_HBH_OPTS: usize = 8;

/// A fragment header in the chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frag6 {
    /// Offset of the fragment header in the frame.
    pub hdr_off: usize,
    /// Fragment offset in bytes.
    pub offset: usize,
    pub more: bool,
    pub id: u32,
}

/// The parsed view of an IPv6 packet: offsets into the frame plus the fields the pipeline decides on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv6Info {
    pub nh_off: usize,
    /// Transport header offset (after the extension headers); `None` for non-first fragments and chains
    /// that could not be walked.
    pub th_off: Option<usize>,
    /// Header plus payload (`40 + payload length`).
    pub total_len: usize,
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    /// The Next Header field of the fixed header.
    pub next_header: u8,
    /// The upper-layer protocol after the extension headers (`meta l4proto`); 0 when the chain could not
    /// be walked, as nftables has it then.
    pub proto: u8,
    pub hop_limit: u8,
    pub traffic_class: u8,
    pub frag: Option<Frag6>,
    pub sport: u16,
    pub dport: u16,
    pub tcp_flags: u8,
    /// ICMPv6 type, code and echo identifier.
    pub icmp: Option<IcmpInfo>,
    /// The extension-header chain after hop-by-hop could not be walked (the kernel forwards such packets
    /// without a transport header for the rules and without conntrack).
    pub chain_error: Option<ParseError>,
    /// Offset of a hop-by-hop header carrying a router alert option.
    pub router_alert: bool,
}

impl Ipv6Info {
    pub fn is_fragment(&self) -> bool {
        self.frag.is_some()
    }
    /// A fragment other than the first: no transport header.
    pub fn is_later_fragment(&self) -> bool {
        self.frag.is_some_and(|f| f.offset != 0)
    }
    pub fn payload(&self) -> (usize, usize) {
        (self.nh_off + IPV6_HLEN, self.nh_off + self.total_len)
    }
}

fn addr(b: &[u8]) -> Ipv6Addr {
    Ipv6Addr::from(<[u8; 16]>::try_from(b).unwrap())
}

/// Whether `a` is a v4-mapped address (::ffff:a.b.c.d).
fn v4_mapped(a: &Ipv6Addr) -> bool {
    let o = a.octets();
    o[..10] == [0; 10] && o[10] == 0xff && o[11] == 0xff
}

/// Parses and validates the IPv6 packet at `nh_off` the way `ip6_rcv_core` does, then walks its extension
/// headers as `ipv6_find_hdr` does. Frame bytes past the payload length are Ethernet padding.
pub fn parse_ipv6(frame: &[u8], nh_off: usize) -> Result<Ipv6Info, ParseError> {
    let mut info = parse_fixed_header(frame, nh_off)?;
    let end = nh_off + info.total_len;
    if info.next_header == NEXTHDR_HOP {
        info.router_alert = hop_by_hop(&frame[nh_off + IPV6_HLEN..end], &info.dst)?;
    }
    walk_chain(frame, &mut info)?;
    Ok(info)
}

/// Only `ip6_rcv_core`'s checks of the fixed header: the view of a packet refused later (by its
/// hop-by-hop options) that an ICMPv6 error can still quote and answer. No transport header.
pub fn parse_fixed_header(frame: &[u8], nh_off: usize) -> Result<Ipv6Info, ParseError> {
    let h = frame
        .get(nh_off..nh_off + IPV6_HLEN)
        .ok_or(ParseError::BadIpv6)?;
    if h[0] >> 4 != 6 {
        return Err(ParseError::BadIpv6);
    }
    let payload_len = u16::from_be_bytes([h[4], h[5]]) as usize;
    let next_header = h[6];
    if payload_len == 0 && next_header == NEXTHDR_HOP {
        // A jumbogram: never valid in a frame of this size (ipv6_hop_jumbo refuses it).
        return Err(ParseError::BadIpv6);
    }
    let total_len = IPV6_HLEN + payload_len;
    if nh_off + total_len > frame.len() {
        return Err(ParseError::BadIpv6);
    }
    let src = addr(&h[8..24]);
    let dst = addr(&h[24..40]);
    if src.is_multicast() || v4_mapped(&src) || src.is_loopback() || dst.is_loopback() {
        return Err(ParseError::BadIpv6Address);
    }
    if dst.is_multicast() && matches!(dst.octets()[1] & 0xf, 0 | 1) {
        // interface-local multicast from the wire, or the reserved scope 0 (RFC 4291 2.7)
        return Err(ParseError::BadIpv6Address);
    }
    Ok(Ipv6Info {
        nh_off,
        th_off: None,
        total_len,
        src,
        dst,
        next_header,
        proto: 0,
        hop_limit: h[7],
        traffic_class: (h[0] << 4) | (h[1] >> 4),
        frag: None,
        sport: 0,
        dport: 0,
        tcp_flags: 0,
        icmp: None,
        chain_error: None,
        router_alert: false,
    })
}

/// `ipv6_find_hdr(target -1)`: the first header that is not an extension header, and the transport fields.
fn walk_chain(frame: &[u8], info: &mut Ipv6Info) -> Result<(), ParseError> {
    let end = info.nh_off + info.total_len;
    let mut next = info.next_header;
    let mut off = info.nh_off + IPV6_HLEN;
    loop {
        match next {
            NEXTHDR_HOP | NEXTHDR_ROUTING | NEXTHDR_DEST | NEXTHDR_AUTH => {
                let Some(hdr) = frame.get(off..(off + 2).min(end)).filter(|h| h.len() == 2) else {
                    info.chain_error = Some(ParseError::BadIpv6ExtHeader);
                    return Ok(());
                };
                let len = if next == NEXTHDR_AUTH {
                    (hdr[1] as usize + 2) * 4
                } else {
                    (hdr[1] as usize + 1) * 8
                };
                next = hdr[0];
                off += len;
            }
            NEXTHDR_FRAGMENT => {
                let Some(fh) = frame.get(off..off + 8).filter(|_| off + 8 <= end) else {
                    info.chain_error = Some(ParseError::BadIpv6ExtHeader);
                    return Ok(());
                };
                let fo = u16::from_be_bytes([fh[2], fh[3]]);
                let f = Frag6 {
                    hdr_off: off,
                    offset: (fo & !7) as usize,
                    more: fo & 1 != 0,
                    id: u32::from_be_bytes([fh[4], fh[5], fh[6], fh[7]]),
                };
                info.frag = Some(f);
                next = fh[0];
                off += 8;
                if f.offset != 0 {
                    // A later fragment: the protocol is known only if no extension header follows.
                    if is_ext(next) && next != NEXTHDR_NONE {
                        info.chain_error = Some(ParseError::BadIpv6ExtHeader);
                        return Ok(());
                    }
                    info.proto = next;
                    return Ok(());
                }
            }
            _ => break,
        }
    }
    info.proto = next;
    if off > end {
        // The last extension header claims more than the payload holds. ipv6_find_hdr still names the
        // protocol after it (so `meta l4proto` matches) with a transport offset past the end (so every
        // transport field fails to load), and conntrack finds no tuple there (`ct state invalid`).
        info.chain_error = Some(ParseError::BadIpv6ExtHeader);
        return Ok(());
    }
    info.th_off = Some(off);
    let l4 = &frame[off..end];
    let first_fragment_only = info.frag.is_some_and(|f| f.more);
    match next {
        IPPROTO_TCP if !first_fragment_only => {
            if l4.len() < 20 || (l4[12] >> 4) < 5 || (l4[12] >> 4) as usize * 4 > l4.len() {
                return Err(ParseError::BadTransport);
            }
            info.sport = u16::from_be_bytes([l4[0], l4[1]]);
            info.dport = u16::from_be_bytes([l4[2], l4[3]]);
            info.tcp_flags = l4[13];
        }
        IPPROTO_UDP if !first_fragment_only => {
            if l4.len() < 8 {
                return Err(ParseError::BadTransport);
            }
            info.sport = u16::from_be_bytes([l4[0], l4[1]]);
            info.dport = u16::from_be_bytes([l4[2], l4[3]]);
        }
        IPPROTO_TCP | IPPROTO_UDP if l4.len() >= 4 => {
            info.sport = u16::from_be_bytes([l4[0], l4[1]]);
            info.dport = u16::from_be_bytes([l4[2], l4[3]]);
        }
        IPPROTO_ICMPV6 => {
            if l4.len() < 8 {
                return Err(ParseError::BadTransport);
            }
            info.icmp = Some(IcmpInfo {
                ty: l4[0],
                code: l4[1],
                id: u16::from_be_bytes([l4[4], l4[5]]),
            });
        }
        _ => {}
    }
    Ok(())
}

fn is_ext(nh: u8) -> bool {
    matches!(
        nh,
        NEXTHDR_HOP
            | NEXTHDR_ROUTING
            | NEXTHDR_FRAGMENT
            | NEXTHDR_AUTH
            | NEXTHDR_NONE
            | NEXTHDR_DEST
    )
}

/// `ipv6_parse_hopopts` + `ip6_parse_tlv` for a forwarded packet: the header must fit the payload, pads
/// are at most 7 bytes of zeros, at most 8 options, every option fits, and an unknown option whose type's
/// two high bits ask for a discard drops the packet — with a parameter problem for 10, and for 11 unless
/// the destination is multicast (`ip6_tlvopt_unknown`): [`ParseError::Ipv6OptionParamProblem`]. Returns
/// whether a router alert option is present.
fn hop_by_hop(payload: &[u8], dst: &Ipv6Addr) -> Result<bool, ParseError> {
    if payload.len() < 8 {
        return Err(ParseError::BadIpv6Options);
    }
    let len = (payload[1] as usize + 1) * 8;
    let hdr = payload.get(..len).ok_or(ParseError::BadIpv6Options)?;
    let mut off = 2;
    let mut padlen = 0;
    let mut count = 0;
    let mut router_alert = false;
    while off < len {
        let ty = hdr[off];
        if ty == 0 {
            padlen += 1;
            if padlen > 7 {
                return Err(ParseError::BadIpv6Options);
            }
            off += 1;
            continue;
        }
        if len - off < 2 {
            return Err(ParseError::BadIpv6Options);
        }
        let optlen = hdr[off + 1] as usize + 2;
        if optlen > len - off {
            return Err(ParseError::BadIpv6Options);
        }
        if ty == 1 {
            padlen += optlen;
            if padlen > 7 || hdr[off + 2..off + optlen].iter().any(|&b| b != 0) {
                return Err(ParseError::BadIpv6Options);
            }
        } else {
            count += 1;
            if count > MAX_HBH_OPTS {
                return Err(ParseError::BadIpv6Options);
            }
            match ty {
                // router alert: exactly two bytes of value
                5 => {
                    if optlen != 4 {
                        return Err(ParseError::BadIpv6Options);
                    }
                    router_alert = true;
                }
                // IOAM: ignored while ioam6_enabled is 0 (the default)
                0x31 => {}
                // jumbo payload (refused above, and here for a non-zero payload length), CALIPSO
                0xc2 | 0x07 => return Err(ParseError::BadIpv6Options),
                _ => match ty >> 6 {
                    0 => {}
                    3 if dst.is_multicast() => return Err(ParseError::BadIpv6Options),
                    2 | 3 => {
                        return Err(ParseError::Ipv6OptionParamProblem {
                            pointer: (IPV6_HLEN + off) as u16,
                        })
                    }
                    _ => return Err(ParseError::BadIpv6Options),
                },
            }
            padlen = 0;
        }
        off += optlen;
    }
    Ok(router_alert)
}

/// The checksum over the IPv6 pseudo-header and `l4` (0 when `l4` carries a correct checksum).
pub fn l4_checksum_v6(src: Ipv6Addr, dst: Ipv6Addr, proto: u8, l4: &[u8]) -> u16 {
    let mut pseudo = Vec::with_capacity(40 + l4.len());
    pseudo.extend_from_slice(&src.octets());
    pseudo.extend_from_slice(&dst.octets());
    pseudo.extend_from_slice(&(l4.len() as u32).to_be_bytes());
    pseudo.extend_from_slice(&[0, 0, 0, proto]);
    pseudo.extend_from_slice(l4);
    checksum(&pseudo)
}

/// Writes a fixed IPv6 header (flow label 0) into `h`.
pub fn write_ipv6_header(
    h: &mut [u8],
    tclass: u8,
    payload_len: usize,
    next: u8,
    hop_limit: u8,
    src: Ipv6Addr,
    dst: Ipv6Addr,
) {
    h[0] = 0x60 | (tclass >> 4);
    h[1] = tclass << 4;
    h[2] = 0;
    h[3] = 0;
    h[4..6].copy_from_slice(&(payload_len as u16).to_be_bytes());
    h[6] = next;
    h[7] = hop_limit;
    h[8..24].copy_from_slice(&src.octets());
    h[24..40].copy_from_slice(&dst.octets());
}

/// An Ethernet + IPv6 frame (Ethernet addresses zero) around `l4`, whose checksum (ICMPv6, TCP, UDP)
/// is filled in at `csum_at` if given.
fn frame_v6(
    tclass: u8,
    next: u8,
    hop_limit: u8,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    l4: &[u8],
    csum_at: Option<usize>,
) -> Vec<u8> {
    let mut f = vec![0u8; ETH_HLEN + IPV6_HLEN + l4.len()];
    f[12..14].copy_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
    write_ipv6_header(
        &mut f[ETH_HLEN..],
        tclass,
        l4.len(),
        next,
        hop_limit,
        src,
        dst,
    );
    f[ETH_HLEN + IPV6_HLEN..].copy_from_slice(l4);
    if let Some(at) = csum_at {
        let c = l4_checksum_v6(src, dst, next, &f[ETH_HLEN + IPV6_HLEN..]);
        f[ETH_HLEN + IPV6_HLEN + at..ETH_HLEN + IPV6_HLEN + at + 2]
            .copy_from_slice(&c.to_be_bytes());
    }
    f
}

/// Whether `icmp6_send` would answer this packet with an error of `ty`/`code`: never about an ICMPv6
/// error (`is_ineligible`), never to an unspecified or multicast source, and about a packet sent to a
/// multicast address (link or IP) only with packet-too-big or a parameter problem about an option.
pub fn icmp6_may_answer(frame: &[u8], ip: &Ipv6Info, ty: u8, code: u8) -> bool {
    let mcast = frame.first().is_some_and(|b| b & 1 == 1) || ip.dst.is_multicast();
    if mcast && !(ty == ICMPV6_PKT_TOOBIG || (ty == ICMPV6_PARAMPROB && code == ICMPV6_UNK_OPTION))
    {
        return false;
    }
    if ip.src.is_unspecified() || ip.src.is_multicast() {
        return false;
    }
    if ip.proto == IPPROTO_ICMPV6 {
        if let Some(th) = ip.th_off {
            return frame.get(th).is_some_and(|t| t & 0x80 != 0);
        }
        // is_ineligible reads the type where ipv6_skip_exthdr stops, which for a later fragment is
        // payload; with nothing there it is eligible (RFC 8200 4.5)
        return match ip.frag {
            Some(f) if f.offset != 0 => frame
                .get(f.hdr_off + 8)
                .filter(|_| f.hdr_off + 8 < ip.nh_off + ip.total_len)
                .is_none_or(|t| t & 0x80 != 0),
            _ => true,
        };
    }
    true
}

/// Builds an ICMPv6 error from `src` to the sender of the packet at `frame[ip.nh_off..]`, quoting as much
/// of it as keeps the error within the IPv6 minimum MTU (`icmp6_send`). `info` is the 32-bit field after
/// the checksum (the MTU for packet-too-big, the pointer for a parameter problem).
pub fn icmp6_error(
    frame: &[u8],
    ip: &Ipv6Info,
    src: Ipv6Addr,
    ty: u8,
    code: u8,
    info: u32,
) -> Vec<u8> {
    let orig = &frame[ip.nh_off..ip.nh_off + ip.total_len];
    let quote = orig.len().min(IPV6_MIN_MTU - IPV6_HLEN - 8);
    let mut m = vec![0u8; 8 + quote];
    m[0] = ty;
    m[1] = code;
    m[4..8].copy_from_slice(&info.to_be_bytes());
    m[8..].copy_from_slice(&orig[..quote]);
    frame_v6(
        0,
        IPPROTO_ICMPV6,
        DEFAULT_HOP_LIMIT,
        src,
        ip.src,
        &m,
        Some(2),
    )
}

/// Whether the transport checksum is right (`reject6_csum_ok`): the kernel sends no reject reply about a
/// packet whose TCP, UDP (a zero UDP checksum is not "none" in IPv6, but it is skipped here as the kernel's
/// `nf_reject_verify_csum` skips it) or ICMPv6 checksum is wrong, nor about a later fragment.
pub fn transport_checksum_ok_v6(frame: &[u8], ip: &Ipv6Info) -> bool {
    let Some(th) = ip.th_off else {
        return false;
    };
    let Some(l4) = frame.get(th..ip.nh_off + ip.total_len) else {
        return false;
    };
    if l4.is_empty() {
        // thoff >= skb->len
        return false;
    }
    match ip.proto {
        IPPROTO_UDP if l4.len() >= 8 && l4[6] == 0 && l4[7] == 0 => true,
        // GRE, AH, ESP, SCTP: other integrity checks; UDP-Lite, DCCP: partial checksums
        47 | 51 | 50 | 132 | 136 | 33 => true,
        // everything else is summed over the whole payload, as nf_ip6_checksum does
        _ => l4_checksum_v6(ip.src, ip.dst, ip.proto, l4) == 0,
    }
}

/// The RST `nf_send_reset6` answers a TCP segment with (traffic class 0 — `nf_reject_ip6hdr_put`'s
/// DEFAULT_TOS_VALUE, unlike IPv4 —, flow label 0, hop limit 64), or `None` where the kernel sends none (an RST, a later fragment, a bad checksum, a multicast
/// destination, a segment not unicast to us).
pub fn tcp_reset6(frame: &[u8], ip: &Ipv6Info) -> Option<Vec<u8>> {
    let th = ip.th_off?;
    if ip.proto != IPPROTO_TCP || frame[0] & 1 == 1 || ip.dst.is_multicast() {
        return None;
    }
    let oth = frame.get(th..ip.nh_off + ip.total_len)?;
    if oth.len() < 20 || oth[13] & crate::wire::TCP_RST != 0 {
        return None;
    }
    if l4_checksum_v6(ip.src, ip.dst, IPPROTO_TCP, oth) != 0 {
        return None;
    }
    let flags = oth[13];
    let doff = (oth[12] >> 4) as usize * 4;
    let mut t = vec![0u8; 20];
    t[0..2].copy_from_slice(&oth[2..4]);
    t[2..4].copy_from_slice(&oth[0..2]);
    t[12] = 5 << 4;
    if flags & crate::wire::TCP_ACK != 0 {
        t[4..8].copy_from_slice(&oth[8..12]);
        t[13] = crate::wire::TCP_RST;
    } else {
        let seq = u32::from_be_bytes(oth[4..8].try_into().unwrap());
        let payload = oth.len().saturating_sub(doff) as u32;
        let ack = seq
            .wrapping_add((flags & crate::wire::TCP_SYN != 0) as u32)
            .wrapping_add((flags & crate::wire::TCP_FIN != 0) as u32)
            .wrapping_add(payload);
        t[8..12].copy_from_slice(&ack.to_be_bytes());
        t[13] = crate::wire::TCP_RST | crate::wire::TCP_ACK;
    }
    Some(frame_v6(
        0,
        IPPROTO_TCP,
        DEFAULT_HOP_LIMIT,
        ip.dst,
        ip.src,
        &t,
        Some(16),
    ))
}

/// Decrements the hop limit of the IPv6 header at `nh_off` (no header checksum in IPv6).
pub fn decrement_hop_limit(frame: &mut [u8], nh_off: usize) {
    frame[nh_off + 7] -= 1;
}

/// A neighbour solicitation or advertisement (RFC 4861 §4.3, §4.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NdRepr {
    pub ty: u8,
    pub target: Ipv6Addr,
    /// Source (NS) or target (NA) link-layer address option.
    pub lladdr: Option<[u8; 6]>,
    /// NA flags: router 0x80, solicited 0x40, override 0x20.
    pub flags: u8,
}

pub const NA_ROUTER: u8 = 0x80;
pub const NA_SOLICITED: u8 = 0x40;
pub const NA_OVERRIDE: u8 = 0x20;

impl NdRepr {
    /// Validates an NS/NA as `ndisc_rcv` does: hop limit 255, code 0, at least 24 bytes, a unicast target,
    /// options of non-zero length that fit; an NS from the unspecified address (duplicate address
    /// detection) goes to a solicited-node address and carries no link-layer address.
    pub fn parse(frame: &[u8], ip: &Ipv6Info) -> Result<NdRepr, ParseError> {
        let th = ip.th_off.ok_or(ParseError::BadNdp)?;
        let m = frame
            .get(th..ip.nh_off + ip.total_len)
            .ok_or(ParseError::BadNdp)?;
        if ip.hop_limit != 255 || m.len() < 24 || m[1] != 0 || ip.frag.is_some() {
            return Err(ParseError::BadNdp);
        }
        if l4_checksum_v6(ip.src, ip.dst, IPPROTO_ICMPV6, m) != 0 {
            return Err(ParseError::BadNdp);
        }
        let ty = m[0];
        let target = addr(&m[8..24]);
        if target.is_multicast() {
            return Err(ParseError::BadNdp);
        }
        let want = if ty == ND_NEIGHBOUR_SOLICIT { 1 } else { 2 };
        let mut lladdr = None;
        let mut o = &m[24..];
        while !o.is_empty() {
            if o.len() < 2 || o[1] == 0 || o[1] as usize * 8 > o.len() {
                return Err(ParseError::BadNdp);
            }
            let n = o[1] as usize * 8;
            if o[0] == want && n >= 8 {
                lladdr = Some(o[2..8].try_into().unwrap());
            }
            o = &o[n..];
        }
        if ty == ND_NEIGHBOUR_ADVERT && ip.dst.is_multicast() && m[4] & NA_SOLICITED != 0 {
            // ndisc_recv_na: a solicited advertisement is never multicast
            return Err(ParseError::BadNdp);
        }
        if ty == ND_NEIGHBOUR_SOLICIT && ip.src.is_unspecified() {
            let d = ip.dst.octets();
            if lladdr.is_some() || d[..13] != [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff] {
                return Err(ParseError::BadNdp);
            }
        }
        Ok(NdRepr {
            ty,
            target,
            lladdr,
            flags: if ty == ND_NEIGHBOUR_ADVERT { m[4] } else { 0 },
        })
    }

    /// A whole frame carrying this NS/NA with a link-layer address option holding `own_mac`.
    pub fn emit_frame(
        &self,
        own_mac: [u8; 6],
        eth_dst: [u8; 6],
        src: Ipv6Addr,
        dst: Ipv6Addr,
    ) -> Vec<u8> {
        let mut m = vec![0u8; 32];
        m[0] = self.ty;
        if self.ty == ND_NEIGHBOUR_ADVERT {
            m[4] = self.flags;
        }
        m[8..24].copy_from_slice(&self.target.octets());
        m[24] = if self.ty == ND_NEIGHBOUR_SOLICIT {
            1
        } else {
            2
        };
        m[25] = 1;
        m[26..32].copy_from_slice(&own_mac);
        let mut f = frame_v6(0, IPPROTO_ICMPV6, 255, src, dst, &m, Some(2));
        f[0..6].copy_from_slice(&eth_dst);
        f[6..12].copy_from_slice(&own_mac);
        f
    }
}

/// The solicited-node multicast address of `a` (ff02::1:ffXX:XXXX) and its Ethernet address.
pub fn solicited_node(a: Ipv6Addr) -> (Ipv6Addr, [u8; 6]) {
    let o = a.octets();
    let ip = Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | o[13] as u16,
        u16::from_be_bytes([o[14], o[15]]),
    );
    (ip, multicast_mac(ip))
}

/// The Ethernet address of an IPv6 multicast address (33:33 + its last 32 bits).
pub fn multicast_mac(a: Ipv6Addr) -> [u8; 6] {
    let o = a.octets();
    [0x33, 0x33, o[12], o[13], o[14], o[15]]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{ipv6_frame, ipv6_frame_ext, tcp_header};

    const A: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2);
    const B: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 2);

    #[test]
    fn parses_tcp_behind_extension_headers() {
        let dest_opts = [6u8, 0, 1, 4, 0, 0, 0, 0];
        let f = ipv6_frame_ext(
            A,
            B,
            &[(NEXTHDR_DEST, &dest_opts[..])],
            IPPROTO_TCP,
            &tcp_header(1234, 80, 2),
            64,
        );
        let ip = parse_ipv6(&f, ETH_HLEN).unwrap();
        assert_eq!(ip.next_header, NEXTHDR_DEST);
        assert_eq!(ip.proto, IPPROTO_TCP);
        assert_eq!(ip.th_off, Some(ETH_HLEN + 48));
        assert_eq!((ip.sport, ip.dport, ip.tcp_flags), (1234, 80, 2));
        assert_eq!(ip.chain_error, None);
    }

    #[test]
    fn truncated_chain_is_recorded_not_fatal_and_cuts_never_panic() {
        let f = ipv6_frame(A, B, IPPROTO_UDP, &[0, 1, 0, 2, 0, 8, 0, 0], 64);
        for cut in 0..f.len() {
            let _ = parse_ipv6(&f[..cut], ETH_HLEN);
        }
        // routing header claiming 3 × 8 more bytes than the payload has, then UDP: the protocol is named
        // (ipv6_find_hdr stops at a non-extension header without reading it), the header is not there
        let rh = [17u8, 3, 0, 0, 0, 0, 0, 0];
        let g = ipv6_frame_ext(A, B, &[(NEXTHDR_ROUTING, &rh[..])], 17, &[], 64);
        let ip = parse_ipv6(&g, ETH_HLEN).unwrap();
        assert_eq!(ip.chain_error, Some(ParseError::BadIpv6ExtHeader));
        assert_eq!((ip.proto, ip.th_off), (17, None));
        // … then destination options that cannot be read: no protocol at all
        let g = ipv6_frame_ext(A, B, &[(NEXTHDR_ROUTING, &rh[..])], NEXTHDR_DEST, &[], 64);
        let ip = parse_ipv6(&g, ETH_HLEN).unwrap();
        assert_eq!(ip.chain_error, Some(ParseError::BadIpv6ExtHeader));
        assert_eq!((ip.proto, ip.th_off), (0, None));
    }

    #[test]
    fn addresses_refused_on_input_as_ip6_rcv_core_refuses_them() {
        let udp = [0u8, 1, 0, 2, 0, 8, 0, 0];
        for (src, dst) in [
            ("ff02::1", "2001:db8:2::2"),          // multicast source
            ("::ffff:192.0.2.1", "2001:db8:2::2"), // v4-mapped source
            ("::1", "2001:db8:2::2"),              // loopback from the wire
            ("2001:db8:1::2", "::1"),
            ("2001:db8:1::2", "ff01::1"), // interface-local multicast
            ("2001:db8:1::2", "ff00::1"), // reserved multicast scope 0
        ] {
            let f = ipv6_frame(src.parse().unwrap(), dst.parse().unwrap(), 17, &udp, 64);
            assert_eq!(
                parse_ipv6(&f, ETH_HLEN),
                Err(ParseError::BadIpv6Address),
                "{src} -> {dst}"
            );
        }
        let ok = ipv6_frame(A, "ff02::1".parse().unwrap(), 17, &udp, 64);
        assert!(parse_ipv6(&ok, ETH_HLEN).is_ok());
        // version 4 in an IPv6 frame, a payload length past the frame, a jumbogram
        let mut v4 = ipv6_frame(A, B, 17, &udp, 64);
        v4[ETH_HLEN] = 0x40;
        let mut long = ipv6_frame(A, B, 17, &udp, 64);
        long[ETH_HLEN + 5] = 9;
        let jumbo = ipv6_frame_ext(
            A,
            B,
            &[(NEXTHDR_HOP, &[17, 0, 1, 4, 0, 0, 0, 0][..])],
            17,
            &[],
            64,
        );
        let mut jumbo = jumbo;
        jumbo[ETH_HLEN + 4..ETH_HLEN + 6].fill(0);
        for f in [v4, long, jumbo] {
            assert_eq!(parse_ipv6(&f, ETH_HLEN), Err(ParseError::BadIpv6));
        }
    }

    #[test]
    fn icmpv6_errors_and_later_fragments_follow_is_ineligible() {
        // a later fragment of an ICMPv6 message: the byte after the fragment header decides
        let frag = |first: u8| {
            let fh = [IPPROTO_ICMPV6, 0, 0, 8, 0, 0, 0, 1]; // offset 8, no more fragments
            ipv6_frame_ext(
                A,
                B,
                &[(NEXTHDR_FRAGMENT, &fh[..])],
                IPPROTO_ICMPV6,
                &[first, 0, 0, 0],
                64,
            )
        };
        let info = frag(0x80);
        let ip = parse_ipv6(&info, ETH_HLEN).unwrap();
        assert!(ip.is_later_fragment() && ip.th_off.is_none());
        assert!(icmp6_may_answer(&info, &ip, ICMPV6_TIME_EXCEED, 0));
        let err = frag(0x01);
        assert!(!icmp6_may_answer(
            &err,
            &parse_ipv6(&err, ETH_HLEN).unwrap(),
            ICMPV6_TIME_EXCEED,
            0
        ));
        // to a multicast destination only packet-too-big is sent
        let m = ipv6_frame(
            A,
            "ff0e::1".parse().unwrap(),
            17,
            &[0u8, 1, 0, 2, 0, 8, 0, 0],
            64,
        );
        let mip = parse_ipv6(&m, ETH_HLEN).unwrap();
        assert!(!icmp6_may_answer(&m, &mip, ICMPV6_TIME_EXCEED, 0));
        assert!(icmp6_may_answer(&m, &mip, ICMPV6_PKT_TOOBIG, 0));
    }

    #[test]
    fn hop_by_hop_is_validated() {
        let ok = [17u8, 0, 1, 4, 0, 0, 0, 0]; // PadN of 4 zero bytes
        let f = ipv6_frame_ext(A, B, &[(NEXTHDR_HOP, &ok[..])], 255, &[0; 8], 64);
        assert!(parse_ipv6(&f, ETH_HLEN).is_ok());
        for bad in [
            [17u8, 0, 1, 4, 0, 0, 1, 0],  // PadN with a non-zero byte
            [17, 0, 0x40, 4, 0, 0, 0, 0], // unknown option, "discard"
            [17, 0, 0x40, 9, 0, 0, 0, 0], // option longer than the header
            [17, 0, 5, 3, 0, 0, 0, 0],    // router alert of the wrong length
        ] {
            let f = ipv6_frame_ext(A, B, &[(NEXTHDR_HOP, &bad[..])], 255, &[0; 8], 64);
            assert_eq!(
                parse_ipv6(&f, ETH_HLEN),
                Err(ParseError::BadIpv6Options),
                "{bad:?}"
            );
        }
        // unknown options asking for a parameter problem: it points at the option (40 + 2); type 11
        // options never answer a multicast destination
        let mc: Ipv6Addr = "ff0e::1".parse().unwrap();
        let want = Err(ParseError::Ipv6OptionParamProblem { pointer: 42 });
        let icmp = [17u8, 0, 0x80, 4, 0, 0, 0, 0];
        let uc = [17u8, 0, 0xc0, 4, 0, 0, 0, 0];
        for (opt, dst, expected) in [
            (icmp, B, want),
            (icmp, mc, want),
            (uc, B, want),
            (uc, mc, Err(ParseError::BadIpv6Options)),
        ] {
            let f = ipv6_frame_ext(A, dst, &[(NEXTHDR_HOP, &opt[..])], 255, &[0; 8], 64);
            assert_eq!(parse_ipv6(&f, ETH_HLEN), expected, "{opt:?} to {dst}");
        }
        let skip = [17u8, 0, 0x3e, 4, 0, 0, 0, 0]; // unknown, "skip"
        let f = ipv6_frame_ext(A, B, &[(NEXTHDR_HOP, &skip[..])], 255, &[0; 8], 64);
        assert!(parse_ipv6(&f, ETH_HLEN).is_ok());
    }

    #[test]
    fn rst6_and_icmp6_error_check_out() {
        let mut l4 = tcp_header(40000, 22, crate::wire::TCP_SYN);
        l4[4..8].copy_from_slice(&1000u32.to_be_bytes());
        let c = l4_checksum_v6(A, B, IPPROTO_TCP, &l4);
        l4[16..18].copy_from_slice(&c.to_be_bytes());
        let mut f = ipv6_frame(A, B, IPPROTO_TCP, &l4, 63);
        f[0] = 2; // unicast
        f[ETH_HLEN] = 0x6b; // traffic class 0xb8 …
        f[ETH_HLEN + 1] = 0x80;
        let ip = parse_ipv6(&f, ETH_HLEN).unwrap();
        let r = tcp_reset6(&f, &ip).unwrap();
        let rip = parse_ipv6(&r, ETH_HLEN).unwrap();
        assert_eq!((rip.src, rip.dst, rip.sport, rip.dport), (B, A, 22, 40000));
        assert_eq!(rip.tcp_flags, 0x14);
        assert_eq!(rip.traffic_class, 0, "not copied from the segment's 0xb8");
        assert!(transport_checksum_ok_v6(&r, &rip));
        let e = icmp6_error(&f, &ip, B, ICMPV6_DEST_UNREACH, ICMPV6_PORT_UNREACH, 0);
        let eip = parse_ipv6(&e, ETH_HLEN).unwrap();
        assert_eq!(eip.proto, IPPROTO_ICMPV6);
        assert!(transport_checksum_ok_v6(&e, &eip));
        assert_eq!(&e[ETH_HLEN + 48..], &f[ETH_HLEN..]);
        assert!(!icmp6_may_answer(&e, &eip, ICMPV6_DEST_UNREACH, 0));
        let mut bad = f.clone();
        bad[ETH_HLEN + 40 + 17] ^= 1;
        assert!(tcp_reset6(&bad, &parse_ipv6(&bad, ETH_HLEN).unwrap()).is_none());
    }

    #[test]
    fn nd_round_trip() {
        let ns = NdRepr {
            ty: ND_NEIGHBOUR_SOLICIT,
            target: B,
            lladdr: Some([2, 0, 0, 0, 0, 9]),
            flags: 0,
        };
        let (sn, mac) = solicited_node(B);
        let f = ns.emit_frame([2, 0, 0, 0, 0, 9], mac, A, sn);
        assert_eq!(&f[0..6], &[0x33, 0x33, 0xff, 0, 0, 2]);
        let ip = parse_ipv6(&f, ETH_HLEN).unwrap();
        assert_eq!(NdRepr::parse(&f, &ip), Ok(ns));
        let mut low = f.clone();
        low[ETH_HLEN + 7] = 64;
        let lip = parse_ipv6(&low, ETH_HLEN).unwrap();
        assert_eq!(NdRepr::parse(&low, &lip), Err(ParseError::BadNdp));
        // a solicited advertisement to a multicast address is invalid, an unsolicited one is fine
        let na = |flags| NdRepr {
            ty: ND_NEIGHBOUR_ADVERT,
            target: B,
            lladdr: Some([2, 0, 0, 0, 0, 9]),
            flags,
        };
        let all = "ff02::1".parse().unwrap();
        let f = na(NA_SOLICITED).emit_frame([2, 0, 0, 0, 0, 9], multicast_mac(all), B, all);
        assert_eq!(
            NdRepr::parse(&f, &parse_ipv6(&f, ETH_HLEN).unwrap()),
            Err(ParseError::BadNdp)
        );
        let f = na(NA_OVERRIDE).emit_frame([2, 0, 0, 0, 0, 9], multicast_mac(all), B, all);
        assert_eq!(
            NdRepr::parse(&f, &parse_ipv6(&f, ETH_HLEN).unwrap()),
            Ok(na(NA_OVERRIDE))
        );
    }
}
