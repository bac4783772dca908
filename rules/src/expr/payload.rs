//! Payload expressions: header fields at fixed offsets (`ip saddr`, `tcp dport`, ...).
//!
//! Adding a header field is adding a row to [`PROTOS`]; parsing, printing, typing, dependencies and
//! evaluation all come from the row.

use crate::types::Dtype;

/// Where a header starts (the kernel's `NFT_PAYLOAD_*_HEADER`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Base {
    Link,
    Network,
    Transport,
    Inner,
    /// an IPv6 extension header of this type, found by walking the header chain
    Exthdr(u8),
}

#[derive(Debug, PartialEq, Eq)]
pub struct Field {
    pub name: &'static str,
    /// offset and length in bits from the start of the header
    pub off: u16,
    pub len: u16,
    pub dtype: Dtype,
}

/// What a protocol needs to be present, and which protocol the kernel check compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layer {
    /// link layer (ether, vlan): needs an Ethernet frame
    Link,
    /// network layer protocol with its ethertype and NFPROTO value
    Network { ethertype: u16, nfproto: u8 },
    /// transport layer protocol with its IPPROTO value; `l3` names an address family it implies
    Transport {
        ipproto: u8,
        l3: Option<&'static str>,
    },
    /// IPv6 extension header
    Exthdr,
    /// any transport header (`th dport`)
    AnyTransport,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Proto {
    pub name: &'static str,
    pub base: Base,
    pub layer: Layer,
    pub fields: &'static [Field],
}

const fn f(name: &'static str, off: u16, len: u16, dtype: Dtype) -> Field {
    Field {
        name,
        off,
        len,
        dtype,
    }
}
use Dtype::*;

pub static PROTOS: &[Proto] = &[
    Proto {
        name: "ether",
        base: Base::Link,
        layer: Layer::Link,
        fields: &[
            f("daddr", 0, 48, EtherAddr),
            f("saddr", 48, 48, EtherAddr),
            f("type", 96, 16, EtherType),
        ],
    },
    Proto {
        name: "ip",
        base: Base::Network,
        layer: Layer::Network {
            ethertype: 0x0800,
            nfproto: 2,
        },
        fields: &[
            f("version", 0, 4, Integer(4)),
            f("hdrlength", 4, 4, Integer(4)),
            f("dscp", 8, 6, Dscp),
            f("ecn", 14, 2, Ecn),
            f("length", 16, 16, Integer(16)),
            f("id", 32, 16, Integer(16)),
            f("frag-off", 48, 16, Hex(16)),
            f("ttl", 64, 8, Integer(8)),
            f("protocol", 72, 8, InetProto),
            f("checksum", 80, 16, Integer(16)),
            f("saddr", 96, 32, Ipv4Addr),
            f("daddr", 128, 32, Ipv4Addr),
        ],
    },
    Proto {
        name: "ip6",
        base: Base::Network,
        layer: Layer::Network {
            ethertype: 0x86dd,
            nfproto: 10,
        },
        fields: &[
            f("version", 0, 4, Integer(4)),
            f("dscp", 4, 6, Dscp),
            f("ecn", 10, 2, Ecn),
            f("flowlabel", 12, 20, Integer(20)),
            f("length", 32, 16, Integer(16)),
            f("nexthdr", 48, 8, InetProto),
            f("hoplimit", 56, 8, Integer(8)),
            f("saddr", 64, 128, Ipv6Addr),
            f("daddr", 192, 128, Ipv6Addr),
        ],
    },
    Proto {
        name: "vlan",
        base: Base::Link,
        layer: Layer::Link,
        fields: &[
            f("pcp", 112, 3, Integer(3)),
            f("dei", 115, 1, Integer(1)),
            f("cfi", 115, 1, Integer(1)),
            f("id", 116, 12, Integer(12)),
            f("type", 128, 16, EtherType),
        ],
    },
    Proto {
        name: "hbh",
        base: Base::Exthdr(0),
        layer: Layer::Exthdr,
        fields: &[
            f("nexthdr", 0, 8, ProtoNum),
            f("hdrlength", 8, 8, Integer(8)),
        ],
    },
    Proto {
        name: "rt",
        base: Base::Exthdr(43),
        layer: Layer::Exthdr,
        fields: &[
            f("nexthdr", 0, 8, ProtoNum),
            f("hdrlength", 8, 8, Integer(8)),
            f("type", 16, 8, Integer(8)),
            f("seg-left", 24, 8, Integer(8)),
        ],
    },
    Proto {
        name: "frag",
        base: Base::Exthdr(44),
        layer: Layer::Exthdr,
        fields: &[
            f("nexthdr", 0, 8, ProtoNum),
            f("reserved", 8, 8, Integer(8)),
            f("frag-off", 16, 13, Integer(13)),
            f("reserved2", 29, 2, Integer(2)),
            f("more-fragments", 31, 1, Integer(1)),
            f("id", 32, 32, Integer(32)),
        ],
    },
    Proto {
        name: "dst",
        base: Base::Exthdr(60),
        layer: Layer::Exthdr,
        fields: &[
            f("nexthdr", 0, 8, ProtoNum),
            f("hdrlength", 8, 8, Integer(8)),
        ],
    },
    Proto {
        name: "mh",
        base: Base::Exthdr(135),
        layer: Layer::Exthdr,
        fields: &[
            f("nexthdr", 0, 8, ProtoNum),
            f("hdrlength", 8, 8, Integer(8)),
            f("type", 16, 8, MhType),
            f("reserved", 24, 8, Integer(8)),
            f("checksum", 32, 16, Integer(16)),
        ],
    },
    Proto {
        name: "srh",
        base: Base::Exthdr(43),
        layer: Layer::Exthdr,
        fields: &[
            f("nexthdr", 0, 8, ProtoNum),
            f("hdrlength", 8, 8, Integer(8)),
            f("type", 16, 8, Integer(8)),
            f("seg-left", 24, 8, Integer(8)),
            f("last-entry", 32, 8, Integer(8)),
            f("flags", 40, 8, Integer(8)),
            f("tag", 48, 16, Integer(16)),
        ],
    },
    Proto {
        name: "arp",
        base: Base::Network,
        layer: Layer::Network {
            ethertype: 0x0806,
            nfproto: 3,
        },
        fields: &[
            f("htype", 0, 16, Integer(16)),
            f("ptype", 16, 16, EtherType),
            f("hlen", 32, 8, Integer(8)),
            f("plen", 40, 8, Integer(8)),
            f("operation", 48, 16, ArpOp),
            f("saddr ether", 64, 48, EtherAddr),
            f("saddr ip", 112, 32, Ipv4Addr),
            f("daddr ether", 144, 48, EtherAddr),
            f("daddr ip", 192, 32, Ipv4Addr),
        ],
    },
    Proto {
        name: "vxlan",
        base: Base::Inner,
        layer: Layer::AnyTransport,
        fields: &[f("flags", 0, 8, Hex(8)), f("vni", 32, 24, Integer(24))],
    },
    Proto {
        name: "geneve",
        base: Base::Inner,
        layer: Layer::AnyTransport,
        fields: &[
            f("version", 0, 2, Integer(2)),
            f("opt-len", 2, 6, Integer(6)),
            f("o", 8, 1, Integer(1)),
            f("c", 9, 1, Integer(1)),
            f("protocol", 16, 16, EtherType),
            f("vni", 32, 24, Integer(24)),
        ],
    },
    Proto {
        name: "gretap",
        base: Base::Inner,
        layer: Layer::Transport {
            ipproto: 47,
            l3: None,
        },
        fields: &[],
    },
    Proto {
        name: "th",
        base: Base::Transport,
        layer: Layer::AnyTransport,
        fields: &[
            f("sport", 0, 16, InetService),
            f("dport", 16, 16, InetService),
        ],
    },
    Proto {
        name: "igmp",
        base: Base::Transport,
        layer: Layer::Transport {
            ipproto: 2,
            l3: Some("ip"),
        },
        fields: &[
            f("type", 0, 8, IgmpType),
            f("mrt", 8, 8, Integer(8)),
            f("checksum", 16, 16, Integer(16)),
            f("group", 32, 32, Integer(32)),
        ],
    },
    Proto {
        name: "gre",
        base: Base::Transport,
        layer: Layer::Transport {
            ipproto: 47,
            l3: None,
        },
        fields: &[
            f("flags", 0, 5, Integer(5)),
            f("version", 13, 3, Integer(3)),
            f("protocol", 16, 16, EtherType),
        ],
    },
    Proto {
        name: "tcp",
        base: Base::Transport,
        layer: Layer::Transport {
            ipproto: 6,
            l3: None,
        },
        fields: &[
            f("sport", 0, 16, InetService),
            f("dport", 16, 16, InetService),
            f("sequence", 32, 32, Integer(32)),
            f("ackseq", 64, 32, Integer(32)),
            f("doff", 96, 4, Integer(4)),
            f("reserved", 100, 4, Integer(4)),
            f("flags", 104, 8, TcpFlags),
            f("window", 112, 16, Integer(16)),
            f("checksum", 128, 16, Integer(16)),
            f("urgptr", 144, 16, Integer(16)),
        ],
    },
    Proto {
        name: "udp",
        base: Base::Transport,
        layer: Layer::Transport {
            ipproto: 17,
            l3: None,
        },
        fields: &[
            f("sport", 0, 16, InetService),
            f("dport", 16, 16, InetService),
            f("length", 32, 16, Integer(16)),
            f("checksum", 48, 16, Integer(16)),
        ],
    },
    Proto {
        name: "udplite",
        base: Base::Transport,
        layer: Layer::Transport {
            ipproto: 136,
            l3: None,
        },
        fields: &[
            f("sport", 0, 16, InetService),
            f("dport", 16, 16, InetService),
            f("csumcov", 32, 16, Integer(16)),
            f("checksum", 48, 16, Integer(16)),
        ],
    },
    Proto {
        name: "icmp",
        base: Base::Transport,
        layer: Layer::Transport {
            ipproto: 1,
            l3: Some("ip"),
        },
        fields: &[
            f("type", 0, 8, IcmpType),
            f("code", 8, 8, IcmpCode),
            f("checksum", 16, 16, Integer(16)),
            f("id", 32, 16, Integer(16)),
            f("sequence", 48, 16, Integer(16)),
            f("gateway", 32, 32, Integer(32)),
            f("mtu", 48, 16, Integer(16)),
        ],
    },
    Proto {
        name: "icmpv6",
        base: Base::Transport,
        layer: Layer::Transport {
            ipproto: 58,
            l3: Some("ip6"),
        },
        fields: &[
            f("type", 0, 8, Icmpv6Type),
            f("code", 8, 8, Icmpv6Code),
            f("checksum", 16, 16, Integer(16)),
            f("parameter-problem", 32, 32, Integer(32)),
            f("mtu", 32, 32, Integer(32)),
            f("id", 32, 16, Integer(16)),
            f("sequence", 48, 16, Integer(16)),
            f("max-delay", 32, 16, Integer(16)),
        ],
    },
    Proto {
        name: "sctp",
        base: Base::Transport,
        layer: Layer::Transport {
            ipproto: 132,
            l3: None,
        },
        fields: &[
            f("sport", 0, 16, InetService),
            f("dport", 16, 16, InetService),
            f("vtag", 32, 32, Integer(32)),
            f("checksum", 64, 32, Integer(32)),
        ],
    },
    Proto {
        name: "dccp",
        base: Base::Transport,
        layer: Layer::Transport {
            ipproto: 33,
            l3: None,
        },
        fields: &[
            f("sport", 0, 16, InetService),
            f("dport", 16, 16, InetService),
            f("type", 100, 4, DccpType),
        ],
    },
    Proto {
        name: "ah",
        base: Base::Transport,
        layer: Layer::Transport {
            ipproto: 51,
            l3: None,
        },
        fields: &[
            f("nexthdr", 0, 8, InetProto),
            f("hdrlength", 8, 8, Integer(8)),
            f("reserved", 16, 16, Integer(16)),
            f("spi", 32, 32, Integer(32)),
            f("sequence", 64, 32, Integer(32)),
        ],
    },
    Proto {
        name: "esp",
        base: Base::Transport,
        layer: Layer::Transport {
            ipproto: 50,
            l3: None,
        },
        fields: &[
            f("spi", 0, 32, Integer(32)),
            f("sequence", 32, 32, Integer(32)),
        ],
    },
    Proto {
        name: "comp",
        base: Base::Transport,
        layer: Layer::Transport {
            ipproto: 108,
            l3: None,
        },
        fields: &[
            f("nexthdr", 0, 8, InetProto),
            f("flags", 8, 8, Hex(8)),
            f("cpi", 16, 16, Integer(16)),
        ],
    },
];

/// Whether `a == b`, with length and first byte compared before the bytes (a call): names of
/// protocols and fields mostly differ there.
#[inline]
fn same_name(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.as_bytes().first() == b.as_bytes().first() && a == b
}

pub fn proto(name: &str) -> Option<&'static Proto> {
    static INDEX: std::sync::OnceLock<super::NameIndex> = std::sync::OnceLock::new();
    let index = INDEX.get_or_init(|| super::NameIndex::new(PROTOS.iter().map(|p| p.name)));
    index.find(name, |i| PROTOS[i].name).map(|i| &PROTOS[i])
}

impl Proto {
    pub fn field(&'static self, name: &str) -> Option<&'static Field> {
        self.fields.iter().find(|f| same_name(f.name, name))
    }
}

/// A compiled payload load: bytes `[off, off+len)` from `base`, then (for bit fields) shift and mask.
#[derive(Clone, Copy, Debug)]
pub struct Load {
    pub base: Base,
    pub off: u16,
    pub len: u8,
    pub shift: u8,
    pub mask: u32,
    pub out_len: u8,
}

impl Field {
    pub fn load(&self, base: Base) -> Load {
        let first = self.off / 8;
        let last = (self.off + self.len).div_ceil(8);
        let len = (last - first) as u8;
        let aligned = self.off.is_multiple_of(8) && self.len.is_multiple_of(8);
        let shift = if aligned {
            0
        } else {
            (len as u16 * 8 - (self.off % 8) - self.len) as u8
        };
        let mask = if aligned || self.len >= 32 {
            u32::MAX
        } else {
            (1u32 << self.len) - 1
        };
        Load {
            base,
            off: first,
            len,
            shift,
            mask,
            out_len: self.dtype.bytes() as u8,
        }
    }
}

impl Load {
    /// Reads the field from a packet into `out` (exactly `out_len` bytes). `None` when out of bounds
    /// or the header is absent.
    #[inline]
    pub fn read(
        &self,
        frame: &[u8],
        nh: usize,
        th: Option<usize>,
        out: &mut [u8],
    ) -> Option<usize> {
        let base = match self.base {
            Base::Link => 0,
            Base::Network => nh,
            Base::Transport => th?,
            Base::Inner => return None,
            Base::Exthdr(t) => find_exthdr(frame, nh, t)?,
        };
        let start = base.checked_add(self.off as usize)?;
        let src = frame.get(start..start.checked_add(self.len as usize)?)?;
        let n = self.out_len as usize;
        if self.shift == 0 && self.mask == u32::MAX {
            out.get_mut(..n)?.copy_from_slice(&src[..n]);
        } else {
            let mut v: u32 = 0;
            for &b in src {
                v = (v << 8) | b as u32;
            }
            v = (v >> self.shift) & self.mask;
            let be = v.to_be_bytes();
            out.get_mut(..n)?.copy_from_slice(&be[4 - n..]);
        }
        Some(n)
    }
}

/// How a payload write keeps checksums right: the kernel's `NFT_PAYLOAD_CSUM_*` type, as nft chooses it
/// from the field's protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Csum {
    None,
    /// the Internet checksum at this byte offset from the start of the written header
    Inet(u8),
    /// SCTP's CRC32c over the whole SCTP packet
    Sctp,
}

/// A compiled payload write (`ip ttl set 5`, `tcp dport set 8080`, `@nh,8,8 set 3`): the bytes nft's
/// `payload write` covers, which bits of them the field is, and the checksums to fix.
#[derive(Clone, Copy, Debug)]
pub struct Write {
    pub base: Base,
    /// first byte written, from `base`
    pub off: u16,
    /// bytes written (≤ 16)
    pub len: u8,
    /// the field's bits inside those bytes: its width and how far its lowest bit sits from the end
    pub bits: u16,
    pub shift: u16,
    pub csum: Csum,
    /// `NFT_PAYLOAD_L4CSUM_PSEUDOHDR`: the field is part of the transport checksum's pseudo-header
    pub pseudo: bool,
}

impl Proto {
    /// What nft's payload statement generates for writing `field` of this protocol.
    pub fn write(&self, field: &Field) -> Write {
        let csum = match self.name {
            "ip" => Csum::Inet(10),
            "tcp" => Csum::Inet(16),
            "udp" => Csum::Inet(6),
            "icmp" | "icmpv6" | "igmp" => Csum::Inet(2),
            "sctp" => Csum::Sctp,
            _ => Csum::None,
        };
        let pseudo = matches!(
            (self.name, field.name),
            ("ip" | "ip6", "saddr" | "daddr" | "length") | ("ip", "protocol") | ("ip6", "nexthdr")
        );
        Write::new(self.base, field.off, field.len, csum, pseudo)
    }
}

impl Write {
    /// A write of `len` bits at bit `off` of `base`. With an Internet checksum to fix, nft writes whole
    /// 16-bit words (the checksum arithmetic works on them): an odd byte count grows by one, backwards
    /// when it starts on an odd byte.
    pub fn new(base: Base, off: u16, len: u16, csum: Csum, pseudo: bool) -> Write {
        let mut first = off / 8;
        let mut last = (off + len).div_ceil(8);
        let shift = last * 8 - off - len;
        let mut shift_extra = 0;
        if matches!(csum, Csum::Inet(_)) && (last - first) % 2 == 1 {
            if first % 2 == 1 {
                first -= 1;
            } else {
                last += 1;
                shift_extra = 8;
            }
        }
        Write {
            base,
            off: first,
            len: (last - first).min(16) as u8,
            bits: len,
            shift: shift + shift_extra,
            csum,
            pseudo,
        }
    }

    /// nft_payload_set_eval: writes `value` (the field's value, big-endian, right-aligned) into the
    /// packet and fixes the checksums the kernel fixes. `nh`/`th` are the header offsets (`th` is `None`
    /// for non-first fragments), `l3_end` where the network packet ends, `l4proto` its transport
    /// protocol. `None` when the header is absent or the write does not fit: the rule stops there.
    #[allow(clippy::too_many_arguments)]
    pub fn apply(
        &self,
        frame: &mut [u8],
        nh: usize,
        th: Option<usize>,
        l3_end: usize,
        ipv4: bool,
        l4proto: u8,
        value: &[u8],
    ) -> Option<()> {
        let base = match self.base {
            Base::Link => 0,
            Base::Network => nh,
            Base::Transport => th?,
            Base::Inner => return None,
            Base::Exthdr(t) => find_exthdr(frame, nh, t)?,
        };
        let start = base.checked_add(self.off as usize)?;
        let n = self.len as usize;
        let old = frame.get(start..start.checked_add(n)?)?;
        let mut new = [0u8; 16];
        new[..n].copy_from_slice(old);
        if self.shift == 0 && self.bits as usize == n * 8 {
            // whole bytes: the value right-aligned into them
            let k = value.len().min(n);
            new[..n - k].fill(0);
            new[n - k..n].copy_from_slice(&value[value.len() - k..]);
        } else {
            let mut v: u128 = 0;
            for &b in value {
                v = (v << 8) | b as u128;
            }
            let mask = if self.bits >= 128 {
                u128::MAX
            } else {
                (1u128 << self.bits) - 1
            };
            let mut cur: u128 = 0;
            for &b in &new[..n] {
                cur = (cur << 8) | b as u128;
            }
            cur = (cur & !(mask << self.shift)) | ((v & mask) << self.shift);
            new[..n].copy_from_slice(&cur.to_be_bytes()[16 - n..]);
        }
        if let Csum::Inet(at) = self.csum {
            let (fsum, tsum) = (csum_partial(old), csum_partial(&new[..n]));
            csum_replace_at(frame, base + at as usize, fsum, tsum)?;
            if self.pseudo {
                l4_pseudo_update(frame, th, ipv4, l4proto, fsum, tsum)?;
            }
        } else if self.pseudo {
            let (fsum, tsum) = (csum_partial(old), csum_partial(&new[..n]));
            l4_pseudo_update(frame, th, ipv4, l4proto, fsum, tsum)?;
        }
        frame[start..start + n].copy_from_slice(&new[..n]);
        if self.csum == Csum::Sctp && l4proto == 132 {
            // nft_payload_csum_sctp: the CRC32c of the whole SCTP packet, checksum field zeroed
            if let Some(th) = th {
                let pkt = frame.get_mut(th..l3_end)?;
                if pkt.len() >= 12 {
                    pkt[8..12].fill(0);
                    let crc = crc32c::crc32c(pkt);
                    pkt[8..12].copy_from_slice(&crc.to_le_bytes());
                }
            }
        }
        Some(())
    }
}

/// The one's complement sum of `b` as 16-bit big-endian words (an odd tail byte is a word's high
/// byte), unfolded: the kernel's `csum_partial` on the same bytes.
fn csum_partial(b: &[u8]) -> u32 {
    let mut s: u32 = 0;
    let mut it = b.chunks_exact(2);
    for w in &mut it {
        s += u16::from_be_bytes([w[0], w[1]]) as u32;
    }
    if let [x] = it.remainder() {
        s += (*x as u32) << 8;
    }
    s
}

fn fold(mut s: u64) -> u16 {
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// nft_csum_replace: the checksum at `at` after bytes summing to `fsum` became bytes summing to
/// `tsum`; a result of 0 is written as 0xffff (CSUM_MANGLED_0).
fn csum_replace_at(frame: &mut [u8], at: usize, fsum: u32, tsum: u32) -> Option<()> {
    let c = frame.get_mut(at..at.checked_add(2)?)?;
    let old = u16::from_be_bytes([c[0], c[1]]);
    // ~old + ~fsum + tsum, all one's complement
    let f = fold(fsum as u64);
    let mut s = fold((!old) as u64 + (!f) as u64 + tsum as u64);
    s = !s;
    if s == 0 {
        s = 0xffff;
    }
    c.copy_from_slice(&s.to_be_bytes());
    Some(())
}

/// nft_payload_l4csum_update: a pseudo-header field changed; the transport checksum follows, where the
/// packet has one (TCP, UDP with a checksum, UDP-Lite, ICMPv6; not in non-first fragments).
fn l4_pseudo_update(
    frame: &mut [u8],
    th: Option<usize>,
    ipv4: bool,
    l4proto: u8,
    fsum: u32,
    tsum: u32,
) -> Option<()> {
    let Some(th) = th else {
        return Some(());
    };
    let at = match l4proto {
        6 => th + 16,
        17 => {
            let c = frame.get(th + 6..th + 8)?;
            if ipv4 && c == [0, 0] {
                return Some(());
            }
            th + 6
        }
        136 => th + 6,
        58 => th + 2,
        _ => return Some(()),
    };
    csum_replace_at(frame, at, fsum, tsum)
}

/// Walks the IPv6 extension header chain from the network header to the header of type `want`.
fn find_exthdr(frame: &[u8], nh: usize, want: u8) -> Option<usize> {
    if frame.get(nh)? >> 4 != 6 {
        return None;
    }
    let mut next = *frame.get(nh.checked_add(6)?)?;
    let mut off = nh.checked_add(40)?;
    for _ in 0..8 {
        if next == want {
            return Some(off);
        }
        match next {
            0 | 43 | 60 | 135 => {
                next = *frame.get(off)?;
                off += (*frame.get(off + 1)? as usize + 1) * 8;
            }
            44 => {
                next = *frame.get(off)?;
                off += 8;
            }
            51 => {
                next = *frame.get(off)?;
                off += (*frame.get(off + 1)? as usize + 2) * 4;
            }
            _ => return None,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitfields() {
        let ip = proto("ip").unwrap();
        let hdr = [
            0x45u8, 0xb8, 0, 20, 0, 0, 0, 0, 64, 6, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8,
        ];
        let mut out = [0u8; 16];
        let l = ip.field("version").unwrap().load(Base::Network);
        assert_eq!(l.read(&hdr, 0, None, &mut out), Some(1));
        assert_eq!(out[0], 4);
        let l = ip.field("dscp").unwrap().load(Base::Network);
        l.read(&hdr, 0, None, &mut out).unwrap();
        assert_eq!(out[0], 0x2e);
        let l = ip.field("saddr").unwrap().load(Base::Network);
        assert_eq!(l.read(&hdr, 0, None, &mut out), Some(4));
        assert_eq!(&out[..4], &[1, 2, 3, 4]);
        assert_eq!(l.read(&hdr[..15], 0, None, &mut out), None);
        let tcp = proto("tcp").unwrap();
        assert_eq!(
            tcp.field("dport")
                .unwrap()
                .load(Base::Transport)
                .read(&hdr, 0, None, &mut out),
            None
        );
    }
}
