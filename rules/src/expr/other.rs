//! Expressions that are parsed, checked and printed but that nothing here evaluates (the dataplane has
//! no socket lookup, OS fingerprinting, IPsec state, route lookup or segment routing header walk):
//! `socket transparent`, `osf [ttl loose|skip] name|version`, `ipsec in|out [spnum N] reqid|spi|ip
//! saddr|...`, `exthdr hbh|rt|frag|dst|mh` (presence), `rt [ip|ip6] nexthop|mtu|ipsec`, `srh sid[N]`.
//! They become [`Selector::Other`]: their printed text and datatype; compiled to a load that fails.

use super::Selector;
use crate::diag::Span;
use crate::lex::Tok;
use crate::parse::{PResult, Parser, RuleCtx};
use crate::types::Dtype;

/// Words that start one of these expressions (when what follows fits; see [`Parser::other_selector`]).
pub(crate) const STARTS: &[&str] = &["socket", "osf", "ipsec", "exthdr", "rt", "srh"];

impl<'a> Parser<'a> {
    /// The next word, appended to the expression's `text` and `span`.
    fn other_word(&mut self, text: &mut String, span: &mut Span) -> PResult<&'a str> {
        let t = self.next();
        if t.kind != Tok::Word {
            return Err(self.unexpected(t, None));
        }
        *span = span.to(t.span);
        let s = self.text(t);
        text.push(' ');
        text.push_str(s);
        Ok(s)
    }

    /// Does the input at `w` (the next word, not consumed) start one of these expressions?
    pub(crate) fn other_ahead(&mut self, w: &str) -> bool {
        if !STARTS.contains(&w) {
            return false;
        }
        let n = self.peek2();
        let n = if n.kind == Tok::Word {
            self.text(n)
        } else {
            ""
        };
        match w {
            "socket" => matches!(n, "transparent" | "mark" | "wildcard"),
            "osf" => matches!(n, "ttl" | "name" | "version"),
            "ipsec" => matches!(n, "in" | "out"),
            "exthdr" => matches!(n, "hbh" | "rt" | "frag" | "dst" | "mh"),
            "rt" => matches!(n, "nexthop" | "ip" | "ip6" | "mtu" | "ipsec"),
            "srh" => n == "sid",
            _ => false,
        }
    }

    /// One of these expressions, the first word `w` (at `first`) already consumed.
    pub(crate) fn other_selector(
        &mut self,
        ctx: &mut RuleCtx,
        w: &str,
        first: Span,
    ) -> PResult<(Selector, Span)> {
        let mut text = String::from(w);
        let mut span = first;
        let dtype = match w {
            "socket" => match self.other_word(&mut text, &mut span)? {
                "mark" => Dtype::Mark,
                _ => Dtype::Integer(1),
            },
            "osf" => {
                let mut k = self.other_word(&mut text, &mut span)?;
                if k == "ttl" {
                    let t = self.peek();
                    let mode = self.other_word(&mut text, &mut span)?;
                    if !matches!(mode, "loose" | "skip") {
                        return Err(self.unexpected(t, None));
                    }
                    let t = self.peek();
                    k = self.other_word(&mut text, &mut span)?;
                    if !matches!(k, "name" | "version") {
                        return Err(self.unexpected(t, None));
                    }
                }
                Dtype::Str16
            }
            "ipsec" => {
                self.other_word(&mut text, &mut span)?; // in | out
                if self.eat_word("spnum") {
                    let (n, ns) = self.number()?;
                    if n > 255 {
                        self.sem_err(ns, format!("spnum {n} exceeds valid range 0-255"));
                    }
                    if n != 0 {
                        text.push_str(&format!(" spnum {n}"));
                    }
                }
                let t = self.peek();
                match self.other_word(&mut text, &mut span)? {
                    "reqid" | "spi" => Dtype::Integer(32),
                    f @ ("ip" | "ip6") => {
                        let t2 = self.peek();
                        if !matches!(self.other_word(&mut text, &mut span)?, "saddr" | "daddr") {
                            return Err(self.unexpected(t2, None));
                        }
                        if f == "ip" {
                            Dtype::Ipv4Addr
                        } else {
                            Dtype::Ipv6Addr
                        }
                    }
                    _ => return Err(self.unexpected(t, None)),
                }
            }
            "exthdr" => {
                self.other_word(&mut text, &mut span)?;
                Dtype::Boolean
            }
            "rt" => {
                let t = self.peek();
                let mut k = self.other_word(&mut text, &mut span)?;
                let mut fam = None;
                if matches!(k, "ip" | "ip6") {
                    fam = Some(k);
                    let t2 = self.peek();
                    k = self.other_word(&mut text, &mut span)?;
                    if k != "nexthop" {
                        return Err(self.unexpected(t2, None));
                    }
                }
                match k {
                    "mtu" => Dtype::Integer(16),
                    "ipsec" => Dtype::Boolean,
                    "nexthop" => {
                        // the address family: written, or the table's / an earlier match's
                        let l3 = match (fam, ctx.l3) {
                            (Some(f), Some(l3)) if f != l3 => {
                                return Err(self.err(
                                    span,
                                    format!("conflicting protocols specified: {l3} vs. {f}"),
                                ))
                            }
                            (Some(f), _) => f,
                            (None, Some(l3 @ ("ip" | "ip6"))) => l3,
                            _ => {
                                return Err(self.err(
                                    span,
                                    "cannot determine ip protocol version, use \"ip nexthop\" or \"ip6 nexthop\" instead",
                                ))
                            }
                        };
                        text = format!("rt {l3} nexthop");
                        if l3 == "ip" {
                            Dtype::Ipv4Addr
                        } else {
                            Dtype::Ipv6Addr
                        }
                    }
                    _ => return Err(self.unexpected(t, None)),
                }
            }
            "srh" => {
                self.other_word(&mut text, &mut span)?; // sid
                self.expect(Tok::LBrack, "'['")?;
                let (n, _) = self.number()?;
                let close = self.expect(Tok::RBrack, "']'")?;
                span = span.to(close.span);
                text.push_str(&format!("[{n}]"));
                Dtype::Ipv6Addr
            }
            _ => return Err(self.err(first, "unknown expression")),
        };
        Ok((
            Selector::Other {
                text: text.into_boxed_str(),
                dtype,
            },
            span,
        ))
    }
}
