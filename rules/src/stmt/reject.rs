//! `reject [with icmp|icmpv6|icmpx CODE | with tcp reset]`

use crate::ast::Family;
use crate::parse::{DepFact, PResult, Parser, RuleCtx};
use crate::types::{lookup, rlookup, ICMPV6_CODES, ICMPX_CODES, ICMP_CODES};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reject {
    /// the family's default (icmp / icmpv6 / icmpx port-unreachable)
    Default,
    Icmp(u8),
    Icmpv6(u8),
    Icmpx(u8),
    TcpReset,
}

impl Reject {
    pub fn print(&self, out: &mut String) {
        out.push_str("reject");
        let (kw, tab, c) = match *self {
            Reject::Default => return,
            Reject::TcpReset => {
                out.push_str(" with tcp reset");
                return;
            }
            Reject::Icmp(c) => ("icmp", ICMP_CODES, c),
            Reject::Icmpv6(c) => ("icmpv6", ICMPV6_CODES, c),
            Reject::Icmpx(c) => ("icmpx", ICMPX_CODES, c),
        };
        match rlookup(tab, c as u64) {
            Some(n) => out.push_str(&format!(" with {kw} {n}")),
            None => out.push_str(&format!(" with {kw} {c}")),
        }
    }
}

impl Parser<'_> {
    pub(crate) fn reject_stmt(&mut self, ctx: &mut RuleCtx) -> PResult<super::Stmt> {
        let start = self.next();
        let mut r = Reject::Default;
        let mut span = start.span;
        if self.eat_word("with") {
            let (kind, ks) = self.identifier()?;
            span = ks;
            if kind == "tcp" {
                self.expect_word("reset")?;
                r = Reject::TcpReset;
            } else {
                let tab = match kind.as_str() {
                    "icmp" => ICMP_CODES,
                    "icmpv6" => ICMPV6_CODES,
                    "icmpx" => ICMPX_CODES,
                    _ => return Err(self.err(ks, format!("unknown reject type {kind}"))),
                };
                let (code, cs) = self.identifier()?;
                let c = match crate::types::parse_number(&code)
                    .map(|n| n as u64)
                    .or_else(|| lookup(tab, &code))
                {
                    Some(c) if c < 256 => c as u8,
                    _ => {
                        self.sem_err(cs, format!("Could not parse {kind} code"));
                        0
                    }
                };
                span = ks.to(cs);
                r = match kind.as_str() {
                    "icmp" => Reject::Icmp(c),
                    "icmpv6" => Reject::Icmpv6(c),
                    _ => Reject::Icmpx(c),
                };
            }
        }
        // normalise to the family's default, like nft's listing
        let l3 = ctx.l3;
        match (ctx.family, r) {
            (Family::Ip, Reject::Icmp(3)) | (Family::Ip6, Reject::Icmpv6(4)) => r = Reject::Default,
            (Family::Ip, Reject::Icmpv6(_) | Reject::Icmpx(_))
            | (Family::Ip6, Reject::Icmp(_) | Reject::Icmpx(_)) => {
                self.sem_err(span, "conflicting protocols specified");
            }
            (Family::Inet | Family::Bridge | Family::Netdev, Reject::Icmpx(1)) => {
                r = Reject::Default
            }
            (Family::Arp, _) => self.sem_err(start.span, "reject is not supported for arp"),
            _ => {}
        }
        if matches!(ctx.family, Family::Inet | Family::Bridge | Family::Netdev) {
            if l3 == Some("arp") {
                self.sem_err(span, "conflicting protocols specified: arp vs. reject");
            }
            match (l3, r) {
                (Some("ip"), Reject::Icmpv6(_)) | (Some("ip6"), Reject::Icmp(_)) => {
                    self.sem_err(span, "conflicting protocols specified");
                }
                (Some("ip"), Reject::Default) => r = Reject::Icmp(3),
                (Some("ip6"), Reject::Default) => r = Reject::Icmpv6(4),
                _ => {}
            }
            if let Some((idx, DepFact::NfProto(_))) = ctx.dep {
                if idx + 1 == ctx.nstmts && matches!(r, Reject::Icmp(_) | Reject::Icmpv6(_)) {
                    ctx.kill.push(idx);
                }
            }
            if r == Reject::TcpReset && ctx.l4.is_none() {
                ctx.prepend_l4 = Some(6);
            }
        }
        if r == Reject::TcpReset {
            if let (Some((name, n)), Some(l4)) = (ctx.l4, ctx.l4_span) {
                // (a set of protocols, `meta l4proto { udp, tcp }`, may hold tcp)
                if n != 6 && name != "{set}" {
                    let src = self.srcs[start.span.src as usize].text;
                    let d = self
                        .err(start.span, "you cannot use tcp reset with this protocol")
                        .with_secondary(src, l4.lo as usize, l4.hi as usize);
                    self.sem_errors.push(d);
                }
            }
        }
        ctx.dep = None;
        Ok(super::Stmt::Reject(r))
    }
}
