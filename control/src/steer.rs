//! Which destination ports on the box's own addresses the dataplane must see first (port forwards):
//! the TCP/UDP destination ports matched by rules with a `dnat` or `redirect` statement in nat chains
//! on prerouting. The XDP program sends those to sluice instead of the kernel (`local_ports`); the
//! connections sluice binds to local addresses are steered one by one by the dataplane.

use rules::expr::{Lhs, Part, Rhs, Selector};
use rules::stmt::nat::NatKind;
use rules::stmt::Stmt;
use rules::{Hook, Ruleset};

/// Largest port range a single match may claim.
const MAX_RANGE: u64 = 4096;

/// (protocol, port) pairs to claim.
pub fn forwarded_ports(rs: &Ruleset) -> Vec<(u8, u16)> {
    let mut out = Vec::new();
    for t in &rs.tables {
        for c in &t.chains {
            let Some(b) = &c.base else { continue };
            if b.ty != rules::ast::ChainType::Nat || b.hook != Hook::Prerouting {
                continue;
            }
            for r in &c.rules {
                let dnat = r.stmts.iter().any(|s| {
                    matches!(s, Stmt::Nat(n) if matches!(n.kind, NatKind::Dnat | NatKind::Redirect))
                });
                if !dnat {
                    continue;
                }
                for s in &r.stmts {
                    if let Stmt::Match(m) = s {
                        collect(&m.left, &m.right, &mut out);
                    }
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

fn collect(left: &Lhs, right: &Rhs, out: &mut Vec<(u8, u16)>) {
    let [Selector::Payload { proto, field }] = left.sels.as_slice() else {
        return;
    };
    if field.name != "dport" || left.binop.is_some() {
        return;
    }
    let protos: &[u8] = match proto.name {
        "tcp" => &[6],
        "udp" => &[17],
        "th" => &[6, 17],
        _ => return,
    };
    let mut parts: Vec<Part> = Vec::new();
    match right {
        Rhs::Elem(e) => parts.extend(e.iter().copied()),
        Rhs::Set(elems) => {
            for e in elems {
                parts.extend(e.parts.iter().copied());
            }
        }
        _ => {}
    }
    for p in parts {
        let (lo, hi) = p.bounds();
        let (lo, hi) = (lo.to_u64(), hi.to_u64());
        if hi < lo || hi - lo >= MAX_RANGE || hi > 65535 {
            continue;
        }
        for port in lo..=hi {
            for &pr in protos {
                out.push((pr, port as u16));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_of_port_forwards() {
        let rs = rules::parse_ruleset(
            "table ip nat {
                chain pre { type nat hook prerouting priority dstnat; policy accept;
                    tcp dport 8080 dnat to 198.51.100.2:80
                    udp dport { 53, 5000-5001 } dnat to 198.51.100.3
                    tcp dport 22 accept
                    meta l4proto tcp redirect to :3128
                }
                chain post { type nat hook postrouting priority srcnat; policy accept;
                    tcp dport 9999 masquerade
                }
            }",
            "t.nft",
        )
        .unwrap();
        assert_eq!(
            forwarded_ports(&rs),
            vec![(6, 8080), (17, 53), (17, 5000), (17, 5001)]
        );
    }
}
