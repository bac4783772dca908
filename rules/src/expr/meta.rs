//! Meta expressions: packet metadata (`meta mark`, `iifname`, `meta l4proto`, ...).
//!
//! Adding a key is adding a row to [`KEYS`] and, if it can be evaluated, an arm in [`Key::read`].

use crate::eval::PacketCtx;
use crate::types::Dtype;

#[derive(Debug, PartialEq, Eq)]
pub struct Key {
    pub name: &'static str,
    pub dtype: Dtype,
    /// printed without the `meta` prefix (nft's `meta_key_is_unqualified`)
    pub unqualified_print: bool,
    /// accepted without the `meta` prefix on input
    pub unqualified_parse: bool,
}

const fn k(name: &'static str, dtype: Dtype, up: bool, uparse: bool) -> Key {
    Key {
        name,
        dtype,
        unqualified_print: up,
        unqualified_parse: uparse,
    }
}
use Dtype::*;

pub static KEYS: &[Key] = &[
    k("length", Integer(32), false, false),
    k("protocol", EtherType, false, false),
    k("priority", Classid, false, true),
    k("mark", Mark, false, true),
    k("iif", Iface, true, true),
    k("iifname", Ifname, true, true),
    k("iiftype", IfType, false, true),
    k("oif", Iface, true, true),
    k("oifname", Ifname, true, true),
    k("oiftype", IfType, false, true),
    k("skuid", Uid, false, true),
    k("skgid", Gid, false, true),
    k("nftrace", Integer(1), false, true),
    k("rtclassid", Integer(32), false, true),
    k("ibrname", Ifname, false, true),
    k("obrname", Ifname, false, true),
    k("pkttype", PktType, false, true),
    k("cpu", Integer(32), false, true),
    k("iifgroup", Devgroup, true, true),
    k("oifgroup", Devgroup, true, true),
    k("cgroup", Integer(32), false, true),
    k("nfproto", NfProto, false, false),
    k("l4proto", InetProto, false, false),
    k("secmark", Integer(32), false, false),
    k("random", Integer(32), false, false),
    k("ipsec", Boolean, false, true),
    k("sdif", Iface, false, false),
    k("day", Day, false, true),
    k("time", Date, false, true),
    k("hour", Hour, false, true),
    k("sdifname", Ifname, false, false),
];

pub fn key(name: &str) -> Option<&'static Key> {
    static INDEX: std::sync::OnceLock<super::NameIndex> = std::sync::OnceLock::new();
    let index = INDEX.get_or_init(|| super::NameIndex::new(KEYS.iter().map(|k| k.name)));
    index.find(name, |i| KEYS[i].name).map(|i| &KEYS[i])
}

fn put(out: &mut [u8], bytes: &[u8]) -> Option<usize> {
    out.get_mut(..bytes.len())?.copy_from_slice(bytes);
    Some(bytes.len())
}

fn put_name(out: &mut [u8], name: &str) -> Option<usize> {
    let o = out.get_mut(..16)?;
    o.fill(0);
    let n = name.len().min(16);
    o[..n].copy_from_slice(&name.as_bytes()[..n]);
    Some(16)
}

impl Key {
    /// Loads this key for a packet (big-endian, `dtype` width). `None` = not available: the match fails.
    #[inline]
    pub fn read(&self, p: &PacketCtx<'_>, out: &mut [u8]) -> Option<usize> {
        match self.name {
            "length" => put(out, &p.len.to_be_bytes()),
            "mark" => put(out, &p.mark.to_be_bytes()),
            "iif" => put_name(out, p.iifname),
            "iifname" => put_name(out, p.iifname),
            "oif" => put_name(out, p.oifname),
            "oifname" => put_name(out, p.oifname),
            "nfproto" => put(out, &[p.nfproto.value()]),
            // IPv6 whose extension headers could not be walked (nft_set_pktinfo_unspec): no
            // NFT_PKTINFO_L4PROTO, so `meta l4proto` breaks the rule whatever it compares with. 0 is
            // never an IPv6 upper-layer protocol (it is the hop-by-hop header), so it marks that case.
            "l4proto" if p.l4proto == 0 && p.nfproto == crate::eval::NfProto::Ipv6 => None,
            "l4proto" => put(out, &[p.l4proto]),
            "protocol" => put(out, &p.nfproto.ethertype().to_be_bytes()),
            "pkttype" => {
                let dst = p.frame.get(..6)?;
                let t = if dst.iter().all(|&b| b == 0xff) {
                    1
                } else if dst[0] & 1 == 1 {
                    2
                } else {
                    0
                };
                put(out, &[t])
            }
            "cpu" | "iifgroup" | "oifgroup" | "skuid" | "skgid" | "secmark" | "rtclassid"
            | "cgroup" => None,
            _ => None,
        }
    }
}
