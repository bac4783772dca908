//! `snat`, `dnat`, `masquerade`, `redirect`.

use crate::ast::Family;
use crate::expr::value::ValExpr;
use crate::expr::{parse::interval_part, Part};
use crate::lex::Tok;
use crate::parse::{PResult, Parser, RuleCtx};
use crate::types::{Dtype, ValFmt};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NatKind {
    Snat,
    Dnat,
    Masquerade,
    Redirect,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Nat {
    pub kind: NatKind,
    /// `ip` / `ip6` written or implied (inet tables print it)
    pub family: Option<&'static str>,
    pub print_family: bool,
    pub prefix: bool,
    pub addr: Option<ValExpr>,
    pub port: Option<ValExpr>,
    /// random, fully-random, persistent, netmap
    pub flags: u8,
}

const RANDOM: u8 = 1;
const FULLY_RANDOM: u8 = 2;
const PERSISTENT: u8 = 4;
const NETMAP: u8 = 8;

impl Nat {
    pub fn print(&self, out: &mut String, fmt: ValFmt) {
        out.push_str(match self.kind {
            NatKind::Snat => "snat",
            NatKind::Dnat => "dnat",
            NatKind::Masquerade => "masquerade",
            NatKind::Redirect => "redirect",
        });
        if self.print_family {
            if let Some(f) = self.family {
                out.push(' ');
                out.push_str(f);
            }
        }
        if self.prefix {
            out.push_str(" prefix");
        }
        if self.addr.is_some() || self.port.is_some() {
            out.push_str(" to ");
        }
        let v6 = self.family == Some("ip6");
        if let Some(a) = &self.addr {
            let bracket = v6 && self.port.is_some() && matches!(a, ValExpr::Const(..));
            match (bracket, a) {
                (true, ValExpr::Const(t, Part::Range(lo, hi))) => {
                    out.push('[');
                    t.print(lo, fmt, out);
                    out.push_str("]-[");
                    t.print(hi, fmt, out);
                    out.push(']');
                }
                (true, _) => {
                    out.push('[');
                    a.print(fmt, out);
                    out.push(']');
                }
                _ => a.print(fmt, out),
            }
        }
        if let Some(p) = &self.port {
            out.push(':');
            p.print(fmt, out);
        }
        let mut f = Vec::new();
        if self.flags & RANDOM != 0 {
            f.push("random");
        }
        if self.flags & FULLY_RANDOM != 0 {
            f.push("fully-random");
        }
        if self.flags & PERSISTENT != 0 {
            f.push("persistent");
        }
        if self.flags & NETMAP != 0 {
            f.push("netmap");
        }
        if !f.is_empty() {
            out.push(' ');
            out.push_str(&f.join(","));
        }
    }
}

impl Parser<'_> {
    pub(crate) fn nat_stmt(&mut self, ctx: &mut RuleCtx) -> PResult<super::Stmt> {
        let t = self.next();
        let kind = match self.text(t) {
            "snat" => NatKind::Snat,
            "dnat" => NatKind::Dnat,
            "masquerade" => NatKind::Masquerade,
            _ => NatKind::Redirect,
        };
        let mut n = Nat {
            kind,
            family: None,
            print_family: false,
            prefix: false,
            addr: None,
            port: None,
            flags: 0,
        };
        if matches!(kind, NatKind::Snat | NatKind::Dnat) {
            if self.is_word("ip") && !self.selector_follows() {
                self.next();
                n.family = Some("ip");
                n.print_family = true;
            } else if self.is_word("ip6") && !self.selector_follows() {
                self.next();
                n.family = Some("ip6");
                n.print_family = true;
            }
            if self.eat_word("prefix") {
                n.prefix = true;
            }
        }
        if self.eat_word("to") {
            if self.peek().kind != Tok::Colon {
                let fam = n.family.or(match ctx.family {
                    Family::Ip => Some("ip"),
                    Family::Ip6 => Some("ip6"),
                    _ => None,
                });
                let fam = fam.or(ctx.l3.filter(|l| *l == "ip" || *l == "ip6"));
                let Some(fam) = fam else {
                    let t = self.peek();
                    return Err(self.err(
                        t.span,
                        "specify `dnat ip` or 'dnat ip6' in inet table to disambiguate",
                    ));
                };
                if ctx.family == Family::Inet {
                    n.print_family = true;
                    if ctx.l3.is_some_and(|l| l != fam) {
                        let t = self.peek();
                        self.sem_err(t.span, "conflicting protocols specified");
                    }
                }
                if (ctx.family == Family::Ip && fam == "ip6")
                    || (ctx.family == Family::Ip6 && fam == "ip")
                {
                    let t = self.peek();
                    self.sem_err(t.span, "conflicting protocols specified");
                }
                n.family = Some(fam);
                let at = if fam == "ip6" {
                    Dtype::Ipv6Addr
                } else {
                    Dtype::Ipv4Addr
                };
                let bracket = self.eat(Tok::LBrack);
                let mut a = if bracket {
                    let (p, _) = self.value(at)?;
                    self.expect(Tok::RBrack, "']'")?;
                    if self.peek().kind == Tok::Dash {
                        self.next();
                        self.expect(Tok::LBrack, "'['")?;
                        let (hi, _) = self.value(at)?;
                        self.expect(Tok::RBrack, "']'")?;
                        match (p, hi) {
                            (Part::Val(lo), Part::Val(hi)) => {
                                ValExpr::Const(at, Part::Range(lo, hi))
                            }
                            _ => ValExpr::Const(at, p),
                        }
                    } else if self.peek().kind == Tok::Slash {
                        self.next();
                        let (plen, _) = self.number()?;
                        match p {
                            Part::Val(v) => ValExpr::Const(at, Part::Prefix(v, plen as u32)),
                            _ => ValExpr::Const(at, p),
                        }
                    } else {
                        ValExpr::Const(at, p)
                    }
                } else {
                    let mut expected = vec![at];
                    let with_port = self.map_with_port_ahead();
                    if with_port {
                        expected.push(Dtype::InetService);
                    }
                    let start = self.peek().span;
                    let v = self.value_expr(ctx, &expected)?;
                    // a map to `address . port` maps ports too: nft wants a transport protocol
                    if with_port && ctx.l4.is_none() {
                        let src = self.srcs[t.span.src as usize].text;
                        let d = self
                            .err(
                                start.to(self.prev),
                                "transport protocol mapping is only valid after transport protocol match",
                            )
                            .with_secondary(src, t.span.lo as usize, t.span.hi as usize);
                        self.sem_errors.push(d);
                    }
                    v
                };
                if let ValExpr::Const(t, Part::Range(lo, hi)) = &a {
                    a = ValExpr::Const(
                        *t,
                        interval_part(*t, t.bytes(), lo.to_u128(), hi.to_u128()),
                    );
                }
                n.addr = Some(a);
            }
            if self.eat(Tok::Colon) {
                let p = self.value_expr(ctx, &[Dtype::InetService])?;
                if ctx.l4.is_none() {
                    let t = self.peek();
                    self.sem_err(
                        t.span,
                        "transport protocol mapping is only valid after transport protocol match",
                    );
                }
                n.port = Some(p);
            }
        }
        loop {
            let w = self.peek_word().unwrap_or_default();
            let f = match w {
                "random" => RANDOM,
                "fully-random" => FULLY_RANDOM,
                "persistent" => PERSISTENT,
                "netmap" => NETMAP,
                _ => break,
            };
            self.next();
            n.flags |= f;
            if !self.eat(Tok::Comma) {
                break;
            }
        }
        ctx.dep = None;
        Ok(super::Stmt::Nat(Box::new(n)))
    }

    /// `ip saddr ...` after `snat ip` is an expression, not a family qualifier followed by `to`.
    fn selector_follows(&mut self) -> bool {
        let n = self.peek2();
        n.kind == Tok::Word && self.text(n) != "to" && self.text(n) != "prefix"
    }

    /// Is this a `... map { k : addr . port }` (concatenated data)? Scans ahead to the first `:`
    /// inside the braces and checks for a `.` before the next `,` or `}`.
    fn map_with_port_ahead(&mut self) -> bool {
        let mut i = 0;
        let mut depth = 0;
        let mut seen_colon = false;
        loop {
            match self.peek_nth(i).kind {
                Tok::LBrace => depth += 1,
                Tok::RBrace => {
                    if depth <= 1 {
                        return false;
                    }
                    depth -= 1
                }
                Tok::Colon if depth == 1 => seen_colon = true,
                Tok::Comma if depth == 1 => seen_colon = false,
                Tok::Dot if depth == 1 && seen_colon => return true,
                Tok::Newline | Tok::Semi if depth == 0 => return false,
                Tok::Eof => return false,
                _ => {}
            }
            i += 1;
        }
    }
}
