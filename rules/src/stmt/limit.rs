//! `limit rate [over] N/unit [burst N packets]`, `limit rate [over] N kbytes/second [burst N kbytes]`,
//! and `quota [over] N mbytes [used N bytes]`.

use crate::lex::Tok;
use crate::parse::{PResult, Parser};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limit {
    pub over: bool,
    /// packets (or bytes when `bytes`) per `unit` seconds
    pub rate: u64,
    pub unit: u64,
    pub bytes: bool,
    pub burst: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Quota {
    pub over: bool,
    pub bytes: u64,
    pub used: u64,
}

fn unit_name(secs: u64) -> &'static str {
    match secs {
        1 => "second",
        60 => "minute",
        3600 => "hour",
        86400 => "day",
        _ => "week",
    }
}

/// nft's `get_rate`: the largest unit that divides the value.
pub fn print_bytes(v: u64, out: &mut String) {
    let (n, u) = if v != 0 && v.is_multiple_of(1024 * 1024) {
        (v / (1024 * 1024), "mbytes")
    } else if v != 0 && v.is_multiple_of(1024) {
        (v / 1024, "kbytes")
    } else {
        (v, "bytes")
    };
    out.push_str(&format!("{n} {u}"));
}

impl Limit {
    pub fn print(&self, out: &mut String) {
        out.push_str("limit rate ");
        if self.over {
            out.push_str("over ");
        }
        if self.bytes {
            print_bytes(self.rate, out);
            out.push_str(&format!("/{}", unit_name(self.unit)));
            if self.burst != 0 {
                out.push_str(" burst ");
                print_bytes(self.burst, out);
            }
        } else {
            out.push_str(&format!("{}/{}", self.rate, unit_name(self.unit)));
            if self.burst != 0 {
                out.push_str(&format!(" burst {} packets", self.burst));
            }
        }
    }
}

impl Quota {
    pub fn print(&self, stateless: bool, out: &mut String) {
        out.push_str("quota ");
        if self.over {
            out.push_str("over ");
        }
        print_bytes(self.bytes, out);
        if !stateless && self.used != 0 {
            out.push_str(" used ");
            print_bytes(self.used, out);
        }
    }
}

impl Parser<'_> {
    fn byte_unit(&mut self) -> PResult<Option<u64>> {
        let w = self.peek_word().unwrap_or_default();
        let m = match w {
            "bytes" => 1,
            "kbytes" => 1024,
            "mbytes" => 1024 * 1024,
            _ => return Ok(None),
        };
        self.next();
        Ok(Some(m))
    }

    fn time_unit(&mut self) -> PResult<u64> {
        let (u, span) = self.identifier()?;
        Ok(match u.as_str() {
            "second" => 1,
            "minute" => 60,
            "hour" => 3600,
            "day" => 86400,
            "week" => 604800,
            _ => return Err(self.err(span, "Wrong rate format, expecting time unit".to_string())),
        })
    }

    pub(crate) fn limit_stmt(&mut self) -> PResult<super::Stmt> {
        self.next();
        self.expect_word("rate")?;
        Ok(super::Stmt::Limit(Box::new(self.limit_body(5)?)))
    }

    /// `[over] N/unit [burst N packets]` (after `rate`); `default_burst` for packet rates.
    pub(crate) fn limit_body(&mut self, default_burst: u64) -> PResult<Limit> {
        let start = self.peek();
        let over = self.eat_word("over");
        // `1025bytes` is one word to the scanner
        let glued = self.peek_word().and_then(|w| {
            let i = w.find(|c: char| !c.is_ascii_digit())?;
            let n: u64 = w[..i].parse().ok()?;
            matches!(&w[i..], "bytes" | "kbytes" | "mbytes").then(|| (n, w[i..].to_string()))
        });
        let rate = match glued {
            Some((n, unit)) => {
                let t = self.next();
                // put the unit back as its own token
                let span = crate::diag::Span {
                    lo: t.span.hi - unit.len() as u32,
                    ..t.span
                };
                self.push_tokens(vec![crate::lex::Token {
                    kind: Tok::Word,
                    span,
                }]);
                n
            }
            None => self.number()?.0,
        };
        // `kbytes/second` is one word to the scanner
        let (mult, unit) = match self.peek_word().and_then(|w| {
            w.split_once('/')
                .map(|(a, b)| (a.to_string(), b.to_string()))
        }) {
            Some((bu, tu)) => {
                let t = self.next();
                let m = match bu.as_str() {
                    "bytes" => 1,
                    "kbytes" => 1024,
                    "mbytes" => 1024 * 1024,
                    _ => return Err(self.unexpected(t, Some("slash"))),
                };
                let u = match tu.as_str() {
                    "second" => 1,
                    "minute" => 60,
                    "hour" => 3600,
                    "day" => 86400,
                    "week" => 604800,
                    _ => return Err(self.err(t.span, "Wrong rate format, expecting time unit")),
                };
                (Some(m), u)
            }
            None => {
                let mult = self.byte_unit()?;
                let t = self.peek();
                if t.kind != Tok::Slash {
                    return Err(self.unexpected(t, Some("slash")));
                }
                self.next();
                (mult, self.time_unit()?)
            }
        };
        let mut l = Limit {
            over,
            rate: rate * mult.unwrap_or(1),
            unit,
            bytes: mult.is_some(),
            burst: 0,
        };
        if self.eat_word("burst") {
            // `512bytes` is one word to the scanner
            let glued = self.peek_word().and_then(|w| {
                let i = w.find(|c: char| !c.is_ascii_digit())?;
                let n: u64 = w[..i].parse().ok()?;
                let m = match &w[i..] {
                    "bytes" => 1,
                    "kbytes" => 1024,
                    "mbytes" => 1024 * 1024,
                    _ => return None,
                };
                Some((n, m))
            });
            let (b, span, bm) = match glued {
                Some((n, m)) => {
                    let t = self.next();
                    (n, t.span, Some(m))
                }
                None => {
                    let (b, span) = self.number()?;
                    (b, span, self.byte_unit()?)
                }
            };
            if bm.is_none() {
                self.expect_word("packets")?;
            }
            if bm.is_some() != l.bytes {
                self.sem_err(span, "burst unit does not match rate unit");
            }
            l.burst = b * bm.unwrap_or(1);
        } else if !l.bytes {
            l.burst = default_burst;
        }
        if l.rate == 0 {
            self.sem_err(start.span, "Invalid rate");
        }
        Ok(l)
    }

    pub(crate) fn quota_stmt(&mut self) -> PResult<super::Stmt> {
        self.next();
        Ok(super::Stmt::Quota(self.quota_body()?))
    }

    /// `[over] N unit [used N unit]`
    pub(crate) fn quota_body(&mut self) -> PResult<Quota> {
        let over = self.eat_word("over");
        let (n, span) = self.number()?;
        let Some(m) = self.byte_unit()? else {
            let t = self.peek();
            return Err(self.unexpected(t, None));
        };
        let mut q = Quota {
            over,
            bytes: n * m,
            used: 0,
        };
        if self.eat_word("used") {
            let (u, _) = self.number()?;
            let Some(um) = self.byte_unit()? else {
                let t = self.peek();
                return Err(self.unexpected(t, None));
            };
            q.used = u * um;
        }
        let _ = span;
        Ok(q)
    }
}
