//! Frame parsing into a small per-packet metadata struct, and checksum arithmetic.
//!
//! Headers are validated with etherparse; what the rest of the pipeline needs (offsets, addresses, ports) is
//! copied into [`Parsed`], so later stages never re-parse. Malformed input is a typed error, never a panic.

use etherparse::{Ipv4HeaderSlice, TcpHeaderSlice, UdpHeaderSlice};
use std::net::Ipv4Addr;

pub const ETH_HLEN: usize = 14;
pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_ARP: u16 = 0x0806;
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
pub const ETHERTYPE_VLAN: u16 = 0x8100;
pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const BROADCAST_MAC: [u8; 6] = [0xff; 6];

/// Why a frame could not be parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("frame shorter than an Ethernet header")]
    TruncatedEthernet,
    #[error("malformed ARP packet")]
    BadArp,
    #[error("malformed IPv4 header")]
    BadIpv4,
    #[error("IPv4 header checksum mismatch")]
    BadIpv4Checksum,
    #[error("malformed transport header")]
    BadTransport,
    #[error("malformed IPv6 header (short, not version 6, or a payload length past the frame)")]
    BadIpv6,
    #[error("IPv6 source or destination address the kernel refuses on input")]
    BadIpv6Address,
    #[error("malformed or discarding IPv6 hop-by-hop options")]
    BadIpv6Options,
    #[error("unknown IPv6 hop-by-hop option at byte {pointer} asking for a parameter problem")]
    Ipv6OptionParamProblem {
        /// Offset of the option from the start of the IPv6 header (the ICMPv6 pointer).
        pointer: u16,
    },
    #[error("IPv6 extension-header chain that cannot be walked")]
    BadIpv6ExtHeader,
    #[error("malformed neighbour discovery message")]
    BadNdp,
}

/// What the link layer says about a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EthInfo {
    pub dst: [u8; 6],
    pub src: [u8; 6],
    pub ethertype: u16,
}

pub fn parse_eth(frame: &[u8]) -> Result<EthInfo, ParseError> {
    if frame.len() < ETH_HLEN {
        return Err(ParseError::TruncatedEthernet);
    }
    Ok(EthInfo {
        dst: frame[0..6].try_into().unwrap(),
        src: frame[6..12].try_into().unwrap(),
        ethertype: u16::from_be_bytes([frame[12], frame[13]]),
    })
}

/// An IPv4-over-Ethernet ARP packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArpRepr {
    pub op: u16,
    pub sender_mac: [u8; 6],
    pub sender_ip: Ipv4Addr,
    pub target_mac: [u8; 6],
    pub target_ip: Ipv4Addr,
}

pub const ARP_REQUEST: u16 = 1;
pub const ARP_REPLY: u16 = 2;
const ARP_LEN: usize = 28;

impl ArpRepr {
    /// Parses the ARP payload that follows the Ethernet header.
    pub fn parse(payload: &[u8]) -> Result<ArpRepr, ParseError> {
        if payload.len() < ARP_LEN {
            return Err(ParseError::BadArp);
        }
        let htype = u16::from_be_bytes([payload[0], payload[1]]);
        let ptype = u16::from_be_bytes([payload[2], payload[3]]);
        if htype != 1 || ptype != ETHERTYPE_IPV4 || payload[4] != 6 || payload[5] != 4 {
            return Err(ParseError::BadArp);
        }
        Ok(ArpRepr {
            op: u16::from_be_bytes([payload[6], payload[7]]),
            sender_mac: payload[8..14].try_into().unwrap(),
            sender_ip: Ipv4Addr::new(payload[14], payload[15], payload[16], payload[17]),
            target_mac: payload[18..24].try_into().unwrap(),
            target_ip: Ipv4Addr::new(payload[24], payload[25], payload[26], payload[27]),
        })
    }

    /// Writes a whole Ethernet frame carrying this ARP packet into `out`; returns its length (60, padded to
    /// the Ethernet minimum).
    pub fn emit_frame(&self, eth_src: [u8; 6], eth_dst: [u8; 6], out: &mut [u8]) -> usize {
        let len = 60;
        out[..len].fill(0);
        out[0..6].copy_from_slice(&eth_dst);
        out[6..12].copy_from_slice(&eth_src);
        out[12..14].copy_from_slice(&ETHERTYPE_ARP.to_be_bytes());
        let p = &mut out[ETH_HLEN..];
        p[0..2].copy_from_slice(&1u16.to_be_bytes());
        p[2..4].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        p[4] = 6;
        p[5] = 4;
        p[6..8].copy_from_slice(&self.op.to_be_bytes());
        p[8..14].copy_from_slice(&self.sender_mac);
        p[14..18].copy_from_slice(&self.sender_ip.octets());
        p[18..24].copy_from_slice(&self.target_mac);
        p[24..28].copy_from_slice(&self.target_ip.octets());
        len
    }
}

/// The parsed view of an IPv4 packet: offsets into the frame plus the fields the pipeline decides on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Info {
    pub nh_off: usize,
    /// Transport header offset; `None` for non-first fragments.
    pub th_off: Option<usize>,
    pub header_len: usize,
    pub total_len: usize,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub proto: u8,
    pub ttl: u8,
    pub dont_fragment: bool,
    pub is_fragment: bool,
    /// Ports for TCP/UDP; ICMP: (type, code) in `sport`/`dport` is avoided — see `icmp`.
    pub sport: u16,
    pub dport: u16,
    pub tcp_flags: u8,
    /// ICMP type, code and echo identifier.
    pub icmp: Option<IcmpInfo>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IcmpInfo {
    pub ty: u8,
    pub code: u8,
    pub id: u16,
}

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

/// Parses and validates the IPv4 packet at `nh_off` the way the kernel's `ip_rcv` does: header length,
/// total length against the frame, header checksum. Frame bytes past `total_len` are Ethernet padding.
pub fn parse_ipv4(frame: &[u8], nh_off: usize) -> Result<Ipv4Info, ParseError> {
    read_ipv4(frame, nh_off, true)
}

/// Reads the IPv4 header again after a rule wrote into it (`ip daddr set …`): like [`parse_ipv4`] but
/// the header checksum is not checked, since a raw write (`@nh,64,8 set 1`) leaves it as it was, and the
/// kernel, which checked it once in `ip_rcv`, forwards such a packet as it is.
pub fn reread_ipv4(frame: &[u8], nh_off: usize) -> Result<Ipv4Info, ParseError> {
    read_ipv4(frame, nh_off, false)
}

fn read_ipv4(frame: &[u8], nh_off: usize, verify: bool) -> Result<Ipv4Info, ParseError> {
    let bytes = frame.get(nh_off..).ok_or(ParseError::BadIpv4)?;
    let ip = Ipv4HeaderSlice::from_slice(bytes).map_err(|_| ParseError::BadIpv4)?;
    let header_len = ip.ihl() as usize * 4;
    let total_len = ip.total_len() as usize;
    if total_len < header_len || total_len > bytes.len() {
        return Err(ParseError::BadIpv4);
    }
    if verify && checksum(&bytes[..header_len]) != 0 {
        return Err(ParseError::BadIpv4Checksum);
    }
    let frag_off: u16 = ip.fragments_offset().value();
    let is_fragment = ip.more_fragments() || frag_off != 0;
    let mut info = Ipv4Info {
        nh_off,
        th_off: None,
        header_len,
        total_len,
        src: ip.source_addr(),
        dst: ip.destination_addr(),
        proto: ip.protocol().0,
        ttl: ip.ttl(),
        dont_fragment: ip.dont_fragment(),
        is_fragment,
        sport: 0,
        dport: 0,
        tcp_flags: 0,
        icmp: None,
    };
    if frag_off != 0 {
        return Ok(info);
    }
    let th_off = nh_off + header_len;
    let l4 = &frame[th_off..nh_off + total_len];
    info.th_off = Some(th_off);
    match info.proto {
        IPPROTO_TCP if !is_fragment => {
            let tcp = TcpHeaderSlice::from_slice(l4).map_err(|_| ParseError::BadTransport)?;
            info.sport = tcp.source_port();
            info.dport = tcp.destination_port();
            info.tcp_flags = l4[13];
        }
        IPPROTO_UDP if !is_fragment => {
            let udp = UdpHeaderSlice::from_slice(l4).map_err(|_| ParseError::BadTransport)?;
            info.sport = udp.source_port();
            info.dport = udp.destination_port();
        }
        IPPROTO_ICMP => {
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
    Ok(info)
}

/// The Internet checksum (RFC 1071) of `data`: 0 when `data` includes a correct checksum field.
pub fn checksum(data: &[u8]) -> u16 {
    let mut sum = 0u32;
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u16::from_be_bytes([c[0], c[1]]) as u32;
    }
    if let [b] = chunks.remainder() {
        sum += (*b as u32) << 8;
    }
    fold(sum)
}

fn fold(mut sum: u32) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Updates checksum `csum` (as stored in the header) for a 16-bit word changing from `old` to `new`
/// (RFC 1624, eqn. 3: HC' = ~(~HC + ~m + m')).
pub fn csum_replace2(csum: u16, old: u16, new: u16) -> u16 {
    let sum = (!csum as u32) + (!old as u32) + (new as u32);
    fold(sum)
}

/// Splits the IPv4 packet in `frame` (Ethernet header first) into fragments that fit `mtu`, as the
/// kernel's `ip_fragment`: each fragment carries the header (options only in the first, which is all
/// this does: packets with options keep them in every fragment, a simplification), data in multiples of
/// 8 bytes, MF on all but the last, offsets continuing the packet's own. `None` when the MTU leaves no
/// room for data.
pub fn fragment_ipv4(frame: &[u8], ip: &Ipv4Info, mtu: usize) -> Option<Vec<Vec<u8>>> {
    let hl = ip.header_len;
    let room = mtu.checked_sub(hl)? & !7;
    if room == 0 {
        return None;
    }
    let len = ip.total_len.checked_sub(hl)?;
    let pieces: Vec<usize> = (0..len)
        .step_by(room)
        .map(|at| room.min(len - at))
        .collect();
    cut_ipv4(frame, ip, &pieces)
}

/// ip_do_fragment for a datagram nf_defrag reassembled: its fast path sends the fragments it came in
/// again (`pieces`, their data lengths) while each fits `mtu` and every one but the last is a multiple
/// of 8 bytes; else [`fragment_ipv4`] cuts it to `mtu`.
pub fn refragment_ipv4(
    frame: &[u8],
    ip: &Ipv4Info,
    pieces: &[usize],
    mtu: usize,
) -> Option<Vec<Vec<u8>>> {
    let hl = ip.header_len;
    let fits = !pieces.is_empty()
        && pieces.iter().sum::<usize>() + hl == ip.total_len
        && pieces.iter().all(|&p| p > 0 && hl + p <= mtu)
        && pieces[..pieces.len() - 1]
            .iter()
            .all(|p| p.is_multiple_of(8));
    if fits {
        cut_ipv4(frame, ip, pieces)
    } else {
        fragment_ipv4(frame, ip, mtu)
    }
}

/// Fragments of `frame` holding `pieces` bytes of its payload each (they sum to it).
fn cut_ipv4(frame: &[u8], ip: &Ipv4Info, pieces: &[usize]) -> Option<Vec<Vec<u8>>> {
    let hl = ip.header_len;
    let nh = ip.nh_off;
    let data = frame.get(nh + hl..nh + ip.total_len)?;
    let orig_off = u16::from_be_bytes([frame[nh + 6], frame[nh + 7]]);
    let base = (orig_off & 0x1fff) as usize * 8;
    let orig_mf = orig_off & 0x2000 != 0;
    let mut out = Vec::with_capacity(pieces.len());
    let mut at = 0;
    for &n in pieces {
        let last = at + n == data.len();
        let mut f = Vec::with_capacity(nh + hl + n);
        f.extend_from_slice(&frame[..nh + hl]);
        f.extend_from_slice(data.get(at..at + n)?);
        let h = &mut f[nh..nh + hl];
        h[2..4].copy_from_slice(&((hl + n) as u16).to_be_bytes());
        let mf = !last || orig_mf;
        let off = (((base + at) / 8) as u16) | if mf { 0x2000 } else { 0 };
        h[6..8].copy_from_slice(&off.to_be_bytes());
        h[10..12].fill(0);
        let c = checksum(&h[..hl]);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        out.push(f);
        at += n;
    }
    Some(out)
}

/// Decrements the TTL of the IPv4 header at `nh_off` and patches its checksum incrementally.
pub fn decrement_ttl(frame: &mut [u8], nh_off: usize) {
    let ttl = frame[nh_off + 8];
    let proto = frame[nh_off + 9];
    let old = u16::from_be_bytes([ttl, proto]);
    let new = u16::from_be_bytes([ttl - 1, proto]);
    frame[nh_off + 8] = ttl - 1;
    let csum = u16::from_be_bytes([frame[nh_off + 10], frame[nh_off + 11]]);
    frame[nh_off + 10..nh_off + 12].copy_from_slice(&csum_replace2(csum, old, new).to_be_bytes());
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub use crate::testkit::{ipv4_frame, tcp_header};

    #[test]
    fn refragments_in_the_pieces_given_while_they_fit() {
        let mut f = ipv4_frame(
            [192, 0, 2, 2],
            [198, 51, 100, 2],
            IPPROTO_UDP,
            &crate::testkit::udp_datagram(1, 2, 400),
            64,
        );
        crate::testkit::clear_df(&mut f);
        let ip = parse_ipv4(&f, ETH_HLEN).unwrap();
        let lens = |v: Vec<Vec<u8>>| {
            v.iter()
                .map(|x| x.len() - ETH_HLEN - 20)
                .collect::<Vec<_>>()
        };
        let as_given = refragment_ipv4(&f, &ip, &[80, 160, 168], 200).unwrap();
        assert_eq!(lens(as_given), [80, 160, 168]);
        // a piece over the MTU, or one not a multiple of 8 before the last: cut to the MTU
        assert_eq!(
            lens(refragment_ipv4(&f, &ip, &[80, 160, 168], 150).unwrap()),
            [128, 128, 128, 24]
        );
        assert_eq!(
            lens(refragment_ipv4(&f, &ip, &[84, 156, 168], 200).unwrap()),
            [176, 176, 56]
        );
    }

    #[test]
    fn parses_tcp_and_validates_checksum() {
        let f = ipv4_frame(
            [192, 0, 2, 2],
            [198, 51, 100, 2],
            IPPROTO_TCP,
            &tcp_header(1234, 80, TCP_SYN),
            64,
        );
        let info = parse_ipv4(&f, ETH_HLEN).unwrap();
        assert_eq!(
            (info.sport, info.dport, info.tcp_flags),
            (1234, 80, TCP_SYN)
        );
        assert_eq!(info.th_off, Some(ETH_HLEN + 20));
        let mut bad = f.clone();
        bad[ETH_HLEN + 12] ^= 1;
        assert_eq!(parse_ipv4(&bad, ETH_HLEN), Err(ParseError::BadIpv4Checksum));
    }

    #[test]
    fn truncated_and_lying_lengths_are_errors_not_panics() {
        let f = ipv4_frame(
            [1, 1, 1, 1],
            [2, 2, 2, 2],
            IPPROTO_TCP,
            &tcp_header(1, 2, 0),
            64,
        );
        for cut in 0..f.len() {
            let _ = parse_ipv4(&f[..cut], ETH_HLEN);
        }
        let mut lying = f.clone();
        lying[ETH_HLEN + 2..ETH_HLEN + 4].copy_from_slice(&2000u16.to_be_bytes());
        assert!(parse_ipv4(&lying, ETH_HLEN).is_err());
        // A TCP header cut short by the IP total length is a transport error.
        let short = ipv4_frame([1, 1, 1, 1], [2, 2, 2, 2], IPPROTO_TCP, &[0u8; 8], 64);
        assert_eq!(parse_ipv4(&short, ETH_HLEN), Err(ParseError::BadTransport));
    }

    #[test]
    fn ttl_decrement_keeps_checksum_valid() {
        let mut f = ipv4_frame(
            [10, 0, 0, 1],
            [10, 0, 0, 2],
            IPPROTO_UDP,
            &[0, 1, 0, 2, 0, 8, 0, 0],
            64,
        );
        for _ in 0..63 {
            decrement_ttl(&mut f, ETH_HLEN);
            assert_eq!(checksum(&f[ETH_HLEN..ETH_HLEN + 20]), 0);
        }
        assert_eq!(f[ETH_HLEN + 8], 1);
    }

    #[test]
    fn arp_round_trip() {
        let a = ArpRepr {
            op: ARP_REQUEST,
            sender_mac: [2, 0, 0, 0, 0, 9],
            sender_ip: Ipv4Addr::new(192, 0, 2, 1),
            target_mac: [0; 6],
            target_ip: Ipv4Addr::new(192, 0, 2, 2),
        };
        let mut buf = [0u8; 64];
        let n = a.emit_frame([2, 0, 0, 0, 0, 9], BROADCAST_MAC, &mut buf);
        assert_eq!(n, 60);
        assert_eq!(parse_eth(&buf).unwrap().ethertype, ETHERTYPE_ARP);
        assert_eq!(ArpRepr::parse(&buf[ETH_HLEN..]).unwrap(), a);
        assert_eq!(
            ArpRepr::parse(&buf[ETH_HLEN..ETH_HLEN + 10]),
            Err(ParseError::BadArp)
        );
    }
}

/// Parses the IPv4 header (and first 8 transport bytes) quoted inside an ICMP error. The quote is usually
/// truncated, so only the header checksum and the 8 bytes are required, not the whole datagram.
pub fn parse_inner_ipv4(quote: &[u8]) -> Result<Ipv4Info, ParseError> {
    let ip = Ipv4HeaderSlice::from_slice(quote).map_err(|_| ParseError::BadIpv4)?;
    let header_len = ip.ihl() as usize * 4;
    let l4 = quote
        .get(header_len..header_len + 8)
        .ok_or(ParseError::BadTransport)?;
    let proto = ip.protocol().0;
    let mut info = Ipv4Info {
        nh_off: 0,
        th_off: Some(header_len),
        header_len,
        total_len: ip.total_len() as usize,
        src: ip.source_addr(),
        dst: ip.destination_addr(),
        proto,
        ttl: ip.ttl(),
        dont_fragment: ip.dont_fragment(),
        is_fragment: false,
        sport: 0,
        dport: 0,
        tcp_flags: 0,
        icmp: None,
    };
    match proto {
        IPPROTO_TCP | IPPROTO_UDP => {
            info.sport = u16::from_be_bytes([l4[0], l4[1]]);
            info.dport = u16::from_be_bytes([l4[2], l4[3]]);
        }
        IPPROTO_ICMP => {
            info.icmp = Some(IcmpInfo {
                ty: l4[0],
                code: l4[1],
                id: u16::from_be_bytes([l4[4], l4[5]]),
            })
        }
        _ => {}
    }
    Ok(info)
}
