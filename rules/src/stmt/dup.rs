//! `dup to ADDR [device DEV]` (ip, ip6), `dup to DEV` (netdev), `fwd to DEV` and
//! `fwd ip|ip6 to ADDR device DEV` (netdev): copies of the packet, or the packet itself, sent elsewhere
//! (nft_dup_ipv4/6, nft_dup_netdev, nft_fwd_netdev).

use crate::ast::Family;
use crate::expr::value::ValExpr;
use crate::parse::{PResult, Parser, RuleCtx};
use crate::types::{Dtype, ValFmt};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dup {
    /// `fwd` (the packet goes, nothing follows) rather than `dup` (a copy goes)
    pub fwd: bool,
    /// `fwd ip|ip6 to ADDR device DEV`: the neighbour to send to
    pub fwd_family: Option<Family>,
    /// the address (ip, ip6, `fwd ip`) or the device (netdev `dup to` / `fwd to`)
    pub to: ValExpr,
    pub device: Option<ValExpr>,
}

impl Dup {
    pub fn print(&self, out: &mut String, fmt: ValFmt) {
        out.push_str(if self.fwd { "fwd " } else { "dup " });
        if let Some(f) = self.fwd_family {
            out.push_str(f.name());
            out.push(' ');
        }
        out.push_str("to ");
        self.to.print(fmt, out);
        if let Some(d) = &self.device {
            out.push_str(" device ");
            d.print(fmt, out);
        }
    }
}

impl Parser<'_> {
    /// After `dup` or `fwd` (not consumed yet); `family` is the table's.
    pub(crate) fn dup_stmt(&mut self, ctx: &mut RuleCtx) -> PResult<super::Stmt> {
        let family = ctx.family;
        let start = self.next();
        let fwd = self.text(start) == "fwd";
        let fwd_family = if fwd {
            match self.peek_word() {
                Some("ip") => {
                    self.next();
                    Some(Family::Ip)
                }
                Some("ip6") => {
                    self.next();
                    Some(Family::Ip6)
                }
                _ => None,
            }
        } else {
            None
        };
        self.expect_word("to")?;
        // what `to` names: an address where a neighbour or route is meant, else a device
        let addr_family = fwd_family.or(match family {
            Family::Ip | Family::Ip6 if !fwd => Some(family),
            _ => None,
        });
        let to_type = match addr_family {
            Some(Family::Ip) => Dtype::Ipv4Addr,
            Some(Family::Ip6) => Dtype::Ipv6Addr,
            _ => Dtype::Ifname,
        };
        let to = self.value_expr(ctx, &[to_type])?;
        let device = if fwd_family.is_some() {
            self.expect_word("device")?;
            Some(self.value_expr(ctx, &[Dtype::Ifname])?)
        } else if self.eat_word("device") {
            Some(self.value_expr(ctx, &[Dtype::Ifname])?)
        } else {
            None
        };
        let span = start.span.to(self.prev);
        let family_ok = match family {
            Family::Netdev => true,
            Family::Ip | Family::Ip6 => !fwd,
            _ => false,
        };
        if !family_ok {
            self.sem_err(span, "unsupported family");
        } else if family == Family::Netdev && !fwd && device.is_some() {
            self.sem_err(span, "cannot specify device");
        }
        Ok(super::Stmt::Dup(Box::new(Dup {
            fwd,
            fwd_family,
            to,
            device,
        })))
    }
}
