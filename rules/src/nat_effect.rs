//! What a NAT statement asks the dataplane to do: `snat`/`dnat`/`masquerade`/`redirect` compiled to a
//! [`NatRequest`] computed per packet (constant addresses and ports, ranges, or map lookups such as
//! `dnat to ip daddr map { … }` and `dnat ip to ip saddr . tcp dport map { … : addr . port }`).
//!
//! A NAT statement is terminal, as in the kernel (nft_nat sets the verdict): evaluating it ends the chain
//! with accept. [`CompiledRuleset::eval_chain_nat`] returns the request; the dataplane sets up the binding.

use crate::ast::{ChainType, Table};
use crate::compile::{CompiledRuleset, Compiler, VSrc};
use crate::eval::{ChainId, NfProto, PacketCtx, Verdict};
use crate::expr::value::ValExpr;
use crate::expr::{Data, Elem, Part};
use crate::stmt::nat::{Nat, NatKind};
use crate::types::Dtype;
use crate::CounterValue;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// `random`: the port (and address, by hash) is picked at random-ish (`NF_NAT_RANGE_PROTO_RANDOM`).
pub const RANDOM: u8 = 1;
/// `fully-random`: port picked by a PRNG (`NF_NAT_RANGE_PROTO_RANDOM_FULLY`).
pub const FULLY_RANDOM: u8 = 2;
/// `persistent`: the same client always gets the same address (`NF_NAT_RANGE_PERSISTENT`).
pub const PERSISTENT: u8 = 4;
/// `netmap`: map prefix onto prefix.
pub const NETMAP: u8 = 8;

/// One evaluated NAT statement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NatRequest {
    pub kind: NatKind,
    /// Address range (inclusive); `None`: keep the address (masquerade/redirect pick their own).
    pub addr: Option<(IpAddr, IpAddr)>,
    /// Port range (inclusive); `None`: keep the port when possible.
    pub ports: Option<(u16, u16)>,
    /// [`RANDOM`], [`FULLY_RANDOM`], [`PERSISTENT`], [`NETMAP`].
    pub flags: u8,
}

/// A compiled NAT statement.
#[derive(Clone, Debug)]
pub(crate) struct CNat {
    kind: NatKind,
    /// `Some(true)` for `ip6`, `Some(false)` for `ip`, `None` when the statement names no address.
    v6: Option<bool>,
    addr: Option<VSrc>,
    port: Option<VSrc>,
    /// The address source also yields the port (`… map { k : addr . port }`).
    addr_has_port: bool,
    flags: u8,
}

fn addr_len(v6: bool) -> usize {
    if v6 {
        16
    } else {
        4
    }
}

fn ip(b: &[u8]) -> Option<IpAddr> {
    match b.len() {
        4 => Some(IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(b).ok()?))),
        16 => Some(IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(b).ok()?))),
        _ => None,
    }
}

/// A constant part as `lo ++ hi` (a single value is its own range).
fn range_bytes(p: &Part) -> crate::key::Key {
    let (lo, hi) = p.bounds();
    let mut v = lo.bytes().to_vec();
    v.extend_from_slice(hi.bytes());
    crate::key::Key::new(&v)
}

impl Compiler {
    /// Compiles a NAT statement; `None` when it uses an expression the dataplane cannot evaluate.
    pub(crate) fn nat(&mut self, t: &Table, n: &Nat) -> Option<CNat> {
        let v6 = n.family.map(|f| f == "ip6");
        let mut addr_has_port = false;
        let addr = match &n.addr {
            None => None,
            Some(ValExpr::Const(_, p)) => Some(VSrc::Const(range_bytes(p))),
            Some(ValExpr::Map(key, m, dtypes)) => {
                // Element data may be ranges: keep both bounds (`lo ++ hi` per component).
                addr_has_port = dtypes.len() == 2 && dtypes[1] == Dtype::InetService;
                let VSrc::Map { loads, set, .. } =
                    self.vsrc(t, &ValExpr::Map(key.clone(), m.clone(), dtypes.clone()))?
                else {
                    return None;
                };
                let elems: Vec<Elem> = match m {
                    crate::stmt::vmap::MapRef::Anon(e) => e.clone(),
                    crate::stmt::vmap::MapRef::Named(name) => t.set(name)?.elems.clone(),
                };
                // a map with dynamic elements is shared with the rules writing it; NAT reads the
                // declared elements' ranges from its own compile of them, and what packets wrote
                // (single addresses) from the shared map
                let (set, written) = match m {
                    crate::stmt::vmap::MapRef::Named(name) if self.is_dynamic(t.set(name)?) => {
                        let w = self.sets[set as usize].width();
                        (self.set(t, &elems, w), Some(set))
                    }
                    _ => (set, None),
                };
                let data = elems
                    .iter()
                    .map(|e| match e.data.as_deref() {
                        Some(Data::Val(parts)) => {
                            let mut v = Vec::new();
                            for p in parts {
                                v.extend_from_slice(&range_bytes(p));
                            }
                            crate::key::Key::new(&v)
                        }
                        _ => crate::key::Key::new(&[]),
                    })
                    .collect();
                Some(VSrc::Map {
                    loads,
                    set,
                    data,
                    written,
                })
            }
            Some(other) => Some(self.vsrc(t, other)?),
        };
        let port = match &n.port {
            None => None,
            Some(ValExpr::Const(_, p)) => Some(VSrc::Const(range_bytes(p))),
            Some(other) => Some(self.vsrc(t, other)?),
        };
        Some(CNat {
            kind: n.kind,
            v6,
            addr,
            port,
            addr_has_port,
            flags: n.flags,
        })
    }
}

impl CompiledRuleset {
    /// Evaluates NAT statement `i` for a packet: `None` if it does not apply (another family, or a map
    /// without an element for this packet: the rule does not match).
    pub(crate) fn nat_request(&self, i: u32, pkt: &PacketCtx<'_>) -> Option<NatRequest> {
        let n = &self.nats[i as usize];
        if let Some(v6) = n.v6 {
            if v6 != (pkt.nfproto == NfProto::Ipv6) {
                return None;
            }
        }
        let alen = addr_len(pkt.nfproto == NfProto::Ipv6);
        let mut buf = [0u8; 64];
        let mut req = NatRequest {
            kind: n.kind,
            addr: None,
            ports: None,
            flags: n.flags,
        };
        let port_of = |b: &[u8]| -> Option<(u16, u16)> {
            match b.len() {
                2 => {
                    let p = u16::from_be_bytes([b[0], b[1]]);
                    Some((p, p))
                }
                4 => Some((
                    u16::from_be_bytes([b[0], b[1]]),
                    u16::from_be_bytes([b[2], b[3]]),
                )),
                _ => None,
            }
        };
        if let Some(src) = &n.addr {
            let len = self.compute(src, pkt, &mut buf)?;
            let b = &buf[..len];
            let (a, rest) = if b.len() >= 2 * alen && b.len() != alen + 2 {
                let lo = ip(&b[..alen])?;
                let hi = ip(&b[alen..2 * alen])?;
                ((lo, hi), &b[2 * alen..])
            } else if b.len() >= alen {
                let a = ip(&b[..alen])?;
                ((a, a), &b[alen..])
            } else {
                return None;
            };
            req.addr = Some(a);
            if n.addr_has_port {
                req.ports = Some(port_of(rest)?);
            }
        }
        if let Some(src) = &n.port {
            let len = self.compute(src, pkt, &mut buf)?;
            req.ports = Some(port_of(&buf[..len])?);
        }
        Some(req)
    }

    /// Is `c` a base chain of type nat?
    pub fn is_nat_chain(&self, c: ChainId) -> bool {
        self.chain_ast(c)
            .base
            .as_ref()
            .is_some_and(|b| b.ty == ChainType::Nat)
    }

    /// [`CompiledRuleset::eval_chain`] for a nat chain: also returns the NAT request of the statement
    /// that ended the chain, if one did.
    pub fn eval_chain_nat(
        &self,
        chain: ChainId,
        pkt: &mut PacketCtx<'_>,
        counters: &mut [CounterValue],
    ) -> (Verdict, Option<NatRequest>) {
        let mut nat = None;
        let v = self.walk(chain, pkt, counters, &mut crate::eval::NoTrace, &mut nat);
        (v, nat)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ast::Hook;

    fn compiled(src: &str) -> CompiledRuleset {
        crate::compile(crate::parse_ruleset(src, "t.nft").unwrap()).unwrap()
    }

    fn tcp_pkt(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 40];
        f[12] = 8;
        f[14] = 0x45;
        f[16..18].copy_from_slice(&40u16.to_be_bytes());
        f[22] = 64;
        f[23] = 6;
        f[26..30].copy_from_slice(&src);
        f[30..34].copy_from_slice(&dst);
        f[34..36].copy_from_slice(&sport.to_be_bytes());
        f[36..38].copy_from_slice(&dport.to_be_bytes());
        f[46] = 0x50;
        f
    }

    fn eval(rs: &CompiledRuleset, hook: Hook, frame: &[u8]) -> (Verdict, Option<NatRequest>) {
        let mut frame = frame.to_vec();
        let mut pkt = PacketCtx {
            frame: &mut frame,
            nh_off: 14,
            th_off: Some(34),
            nfproto: NfProto::Ipv4,
            l4proto: 6,
            len: 40,
            iif: 1,
            iifname: "in0",
            oif: 2,
            oifname: "out0",
            mark: 0,
            ct_state: crate::eval::ct_state::NEW,
            ct_mark: 0,
            ct_label: 0,
            ct_view: None,
            conncount: None,
            ct_counted: 0,
            hook,
            nftrace: false,
            now: 0,
            fib: None,
            payload_writes: 0,
        };
        let chain = rs.hook_chains(NfProto::Ipv4, hook)[0];
        assert!(rs.is_nat_chain(chain));
        let mut counters = rs.initial_counters();
        rs.eval_chain_nat(chain, &mut pkt, &mut counters)
    }

    const A: [u8; 4] = [192, 0, 2, 2];
    const B: [u8; 4] = [198, 51, 100, 2];

    fn v4(a: [u8; 4]) -> IpAddr {
        IpAddr::V4(a.into())
    }

    #[test]
    fn dnat_port_forward_and_masquerade() {
        let rs = compiled(
            "table ip nat {
               chain pre { type nat hook prerouting priority dstnat; policy accept;
                 tcp dport 8080 dnat to 198.51.100.2:80
               }
               chain post { type nat hook postrouting priority srcnat; policy accept;
                 oifname \"out0\" masquerade random,persistent
               }
             }",
        );
        let (v, r) = eval(
            &rs,
            Hook::Prerouting,
            &tcp_pkt(A, [203, 0, 113, 1], 999, 8080),
        );
        assert_eq!(v, Verdict::Accept);
        let r = r.unwrap();
        assert_eq!(r.kind, NatKind::Dnat);
        assert_eq!(r.addr, Some((v4(B), v4(B))));
        assert_eq!(r.ports, Some((80, 80)));
        let (_, r) = eval(&rs, Hook::Prerouting, &tcp_pkt(A, B, 999, 22));
        assert_eq!(r, None);
        let (_, r) = eval(&rs, Hook::Postrouting, &tcp_pkt(A, B, 999, 22));
        let r = r.unwrap();
        assert_eq!((r.kind, r.addr, r.ports), (NatKind::Masquerade, None, None));
        assert_eq!(r.flags, RANDOM | PERSISTENT);
    }

    #[test]
    fn ranges_and_maps() {
        let rs = compiled(
            "table ip nat {
               chain post { type nat hook postrouting priority srcnat; policy accept;
                 ip saddr 10.0.0.0/8 meta l4proto tcp snat to 203.0.113.10-203.0.113.20:1024-2047 fully-random
                 snat to ip saddr map { 192.0.2.2 : 203.0.113.5, 192.0.2.3 : 203.0.113.6-203.0.113.7 }
               }
             }",
        );
        let (_, r) = eval(&rs, Hook::Postrouting, &tcp_pkt([10, 1, 1, 1], B, 1, 2));
        let r = r.unwrap();
        assert_eq!(r.addr, Some((v4([203, 0, 113, 10]), v4([203, 0, 113, 20]))));
        assert_eq!((r.ports, r.flags), (Some((1024, 2047)), FULLY_RANDOM));
        let (_, r) = eval(&rs, Hook::Postrouting, &tcp_pkt(A, B, 1, 2));
        assert_eq!(
            r.unwrap().addr,
            Some((v4([203, 0, 113, 5]), v4([203, 0, 113, 5])))
        );
        let (_, r) = eval(&rs, Hook::Postrouting, &tcp_pkt([192, 0, 2, 3], B, 1, 2));
        assert_eq!(
            r.unwrap().addr,
            Some((v4([203, 0, 113, 6]), v4([203, 0, 113, 7])))
        );
        // No element: the rule does not match, the chain's policy decides.
        let (v, r) = eval(&rs, Hook::Postrouting, &tcp_pkt([192, 0, 2, 9], B, 1, 2));
        assert_eq!((v, r), (Verdict::Accept, None));
    }

    #[test]
    fn concatenated_map_gives_address_and_port_and_inet_family_filters() {
        let rs = compiled(
            "table inet nat {
               chain pre { type nat hook prerouting priority dstnat; policy accept;
                 dnat ip to ip daddr . tcp dport map { 203.0.113.1 . 8080 : 198.51.100.2 . 80 }
                 meta l4proto tcp dnat ip6 to [2001:db8::1]:80
                 meta l4proto tcp redirect to :3128
               }
             }",
        );
        let (_, r) = eval(
            &rs,
            Hook::Prerouting,
            &tcp_pkt(A, [203, 0, 113, 1], 5, 8080),
        );
        let r = r.unwrap();
        assert_eq!((r.addr, r.ports), (Some((v4(B), v4(B))), Some((80, 80))));
        // An IPv4 packet skips the ip6 rule and reaches the redirect.
        let (_, r) = eval(
            &rs,
            Hook::Prerouting,
            &tcp_pkt(A, [203, 0, 113, 1], 5, 9999),
        );
        let r = r.unwrap();
        assert_eq!(
            (r.kind, r.addr, r.ports),
            (NatKind::Redirect, None, Some((3128, 3128)))
        );
    }
}
