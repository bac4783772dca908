//! Value expressions: what statements compute (`meta mark set ct mark & 0xff | 0x10`,
//! `dnat to ip saddr map { ... }`, `queue to jhash oif mod 4`).

use super::parse::normalize_anon_set;
use super::{print_anon_map, BinOp, Elem, Part, Selector};
use crate::lex::Tok;
use crate::parse::{PResult, Parser, RuleCtx};
use crate::stmt::vmap::MapRef;
use crate::types::{Dtype, Val, ValFmt};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ValExpr {
    Const(Dtype, Part),
    Sel(Selector),
    Binop(Box<ValExpr>, BinOp, Box<ValExpr>),
    Concat(Vec<ValExpr>),
    /// `KEY map { k : v }` / `KEY map @m`; data types
    Map(Box<ValExpr>, MapRef, Vec<Dtype>),
    Numgen {
        random: bool,
        modulus: u32,
        offset: u32,
    },
    Jhash {
        key: Box<ValExpr>,
        modulus: u32,
        seed: Option<u32>,
        offset: u32,
    },
    Symhash {
        modulus: u32,
        offset: u32,
    },
}

fn prec(op: BinOp) -> u8 {
    match op {
        BinOp::Or => 1,
        BinOp::Xor => 2,
        BinOp::And => 3,
        BinOp::Shl | BinOp::Shr => 4,
    }
}

impl ValExpr {
    pub fn dtypes(&self) -> Vec<Dtype> {
        match self {
            ValExpr::Const(t, _) => vec![*t],
            ValExpr::Sel(s) => vec![s.dtype()],
            ValExpr::Binop(_, BinOp::Shl | BinOp::Shr, _) => vec![Dtype::Hex(32)],
            ValExpr::Binop(l, _, _) => l.dtypes(),
            ValExpr::Concat(v) => v.iter().flat_map(|e| e.dtypes()).collect(),
            ValExpr::Map(_, _, d) => d.clone(),
            _ => vec![Dtype::Integer(32)],
        }
    }

    pub fn print(&self, fmt: ValFmt, out: &mut String) {
        self.print_prec(fmt, 0, out)
    }

    /// Every selector the value reads (for their protocol dependencies).
    pub fn selectors<'a>(&'a self, out: &mut Vec<&'a Selector>) {
        match self {
            ValExpr::Const(..) | ValExpr::Numgen { .. } | ValExpr::Symhash { .. } => {}
            ValExpr::Sel(s) => out.push(s),
            ValExpr::Binop(l, _, r) => {
                l.selectors(out);
                r.selectors(out);
            }
            ValExpr::Concat(v) => v.iter().for_each(|e| e.selectors(out)),
            ValExpr::Map(k, ..) => k.selectors(out),
            ValExpr::Jhash { key, .. } => key.selectors(out),
        }
    }

    fn print_prec(&self, fmt: ValFmt, parent: u8, out: &mut String) {
        match self {
            ValExpr::Const(t, p) => p.print(*t, fmt, out),
            ValExpr::Sel(s) => s.print(out),
            ValExpr::Binop(l, op, r) => {
                let p = prec(*op);
                if p < parent {
                    out.push('(');
                }
                l.print_prec(fmt, p, out);
                out.push(' ');
                out.push_str(op.symbol());
                out.push(' ');
                if matches!(op, BinOp::Shl | BinOp::Shr) {
                    if let ValExpr::Const(_, Part::Val(v)) = &**r {
                        out.push_str(&v.to_u128().to_string());
                    } else {
                        r.print_prec(fmt, p + 1, out);
                    }
                } else if let ValExpr::Const(t, Part::Val(v)) = &**r {
                    if t.is_bitmask() {
                        let n = v.to_u64().count_ones();
                        let paren = n > 1 && *op != BinOp::Or;
                        if paren {
                            out.push('(');
                        }
                        super::print_flags_or(*t, v, fmt, out);
                        if paren {
                            out.push(')');
                        }
                    } else {
                        r.print_prec(fmt, p + 1, out);
                    }
                } else {
                    r.print_prec(fmt, p + 1, out);
                }
                if p < parent {
                    out.push(')');
                }
            }
            ValExpr::Concat(v) => {
                for (i, e) in v.iter().enumerate() {
                    if i > 0 {
                        out.push_str(" . ");
                    }
                    e.print_prec(fmt, 5, out);
                }
            }
            ValExpr::Map(k, m, data) => {
                k.print_prec(fmt, 0, out);
                out.push_str(" map ");
                match m {
                    MapRef::Anon(elems) => print_anon_map(elems, &k.dtypes(), Some(data), fmt, out),
                    MapRef::Named(n) => {
                        out.push('@');
                        out.push_str(n);
                    }
                }
            }
            ValExpr::Numgen {
                random,
                modulus,
                offset,
            } => {
                out.push_str(&format!(
                    "numgen {} mod {modulus}",
                    if *random { "random" } else { "inc" }
                ));
                if *offset != 0 {
                    out.push_str(&format!(" offset {offset}"));
                }
            }
            ValExpr::Jhash {
                key,
                modulus,
                seed,
                offset,
            } => {
                out.push_str("jhash ");
                key.print_prec(fmt, 5, out);
                out.push_str(&format!(" mod {modulus}"));
                if let Some(s) = seed {
                    out.push_str(&format!(" seed 0x{s:x}"));
                }
                if *offset != 0 {
                    out.push_str(&format!(" offset {offset}"));
                }
            }
            ValExpr::Symhash { modulus, offset } => {
                out.push_str(&format!("symhash mod {modulus}"));
                if *offset != 0 {
                    out.push_str(&format!(" offset {offset}"));
                }
            }
        }
    }
}

fn fold(l: &Val, op: BinOp, r: &Val) -> Val {
    let mut v = *l;
    match op {
        BinOp::And => v = l.and(r),
        BinOp::Or => v = l.or(r),
        BinOp::Xor => v = l.xor(r),
        BinOp::Shl | BinOp::Shr => {
            let n = r.to_u128() as u32;
            let w = v.len as u32 * 8;
            let x = l.to_u128();
            let x = if op == BinOp::Shl {
                x.checked_shl(n).unwrap_or(0)
            } else {
                x.checked_shr(n).unwrap_or(0)
            };
            let x = if w < 128 { x & ((1u128 << w) - 1) } else { x };
            v = Val::from_u128(x, v.len as usize);
        }
    }
    v
}

impl Parser<'_> {
    /// A value expression whose result has types `expected` (one per concatenated component).
    pub(crate) fn value_expr(&mut self, ctx: &mut RuleCtx, expected: &[Dtype]) -> PResult<ValExpr> {
        let first = expected.first().copied().unwrap_or(Dtype::Integer(32));
        let mut parts = vec![self.vx_binop(ctx, first, 1)?];
        let mut i = 1;
        while self.peek().kind == Tok::Dot {
            self.next();
            let t = expected.get(i).copied().unwrap_or(Dtype::Integer(32));
            parts.push(self.vx_binop(ctx, t, 1)?);
            i += 1;
        }
        let key = if parts.len() == 1 {
            parts.pop().unwrap()
        } else {
            ValExpr::Concat(parts)
        };
        if self.eat_word("map") {
            let ktypes = key.dtypes();
            let t = self.peek();
            let m = if t.kind == Tok::At {
                self.next();
                let name = self.at_name(t)?;
                self.check_set_ref(&name, &ktypes, t.span, false)?;
                MapRef::Named(name)
            } else {
                let elems: Vec<Elem> = self.set_elems(&ktypes, Some(expected))?;
                MapRef::Anon(normalize_anon_set(elems, &ktypes))
            };
            return Ok(ValExpr::Map(Box::new(key), m, expected.to_vec()));
        }
        Ok(key)
    }

    fn binop_tok(&mut self) -> Option<BinOp> {
        let t = self.peek();
        let op = match t.kind {
            Tok::Amp => BinOp::And,
            Tok::Pipe => BinOp::Or,
            Tok::Caret => BinOp::Xor,
            Tok::Shl => BinOp::Shl,
            Tok::Shr => BinOp::Shr,
            Tok::Word => match self.text(t) {
                "and" => BinOp::And,
                "or" => BinOp::Or,
                "xor" => BinOp::Xor,
                "lshift" => BinOp::Shl,
                "rshift" => BinOp::Shr,
                _ => return None,
            },
            _ => return None,
        };
        Some(op)
    }

    /// Precedence climbing over `| ^ & << >>`.
    fn vx_binop(&mut self, ctx: &mut RuleCtx, t: Dtype, min: u8) -> PResult<ValExpr> {
        let mut left = self.vx_primary(ctx, t)?;
        while let Some(op) = self.binop_tok() {
            let p = prec(op);
            if p < min {
                break;
            }
            let opt = self.next();
            let lt = left.dtypes().first().copied().unwrap_or(t);
            if matches!(
                lt,
                Dtype::Ifname | Dtype::Iface | Dtype::Str16 | Dtype::Obj(_)
            ) {
                return Err(self.err(
                    opt.span,
                    format!(
                        "Binary operation ({}) is undefined for string expressions",
                        op.symbol()
                    ),
                ));
            }
            // `meta mark set ip dscp | 0x40`: numbers combined with a field narrower than the
            // statement's target have the target's width (they keep the field's type for printing)
            let widen = lt == Dtype::Dscp
                && t.bits() > lt.bits()
                && matches!(t, Dtype::Mark | Dtype::Integer(_))
                && self.peek().kind == Tok::Num;
            let rt = if matches!(op, BinOp::Shl | BinOp::Shr) {
                Dtype::Integer(32)
            } else if widen {
                Dtype::Integer(t.bits() as u8)
            } else {
                lt
            };
            let mut right = self.vx_binop(ctx, rt, p + 1)?;
            if widen {
                if let ValExpr::Const(_, part) = right {
                    right = ValExpr::Const(lt, part);
                }
            }
            if matches!(op, BinOp::Shl | BinOp::Shr) {
                if let ValExpr::Const(_, Part::Val(v)) = &right {
                    right = ValExpr::Const(
                        Dtype::Integer(32),
                        Part::Val(Val::from_u128(v.to_u128(), lt.bytes())),
                    );
                }
            }
            left = match (&left, &right) {
                (ValExpr::Const(t1, Part::Val(a)), ValExpr::Const(_, Part::Val(b))) => {
                    let b = Val::from_u128(b.to_u128(), a.len as usize);
                    ValExpr::Const(*t1, Part::Val(fold(a, op, &b)))
                }
                // constants go right: `0x1 | ct mark` → `ct mark | 0x1`
                (ValExpr::Const(..), _) if !matches!(op, BinOp::Shl | BinOp::Shr) => {
                    let lt2 = right.dtypes().first().copied().unwrap_or(t);
                    let l2 = match left {
                        ValExpr::Const(_, p) => ValExpr::Const(lt2, p),
                        x => x,
                    };
                    ValExpr::Binop(Box::new(right), op, Box::new(l2))
                }
                _ => ValExpr::Binop(Box::new(left), op, Box::new(right)),
            };
        }
        Ok(left)
    }

    /// Does the next word start a selector here (rather than being a symbolic constant)?
    fn selector_ahead(&mut self) -> bool {
        let Some(w) = self.peek_word() else {
            return false;
        };
        if w == "meta" || w == "ct" {
            return true;
        }
        if self.other_ahead(w) {
            return true;
        }
        if let Some(p) = super::payload::proto(w) {
            let n = self.peek2();
            return n.kind == Tok::Word && p.fields.iter().any(|f| f.name == self.text(n));
        }
        super::meta::key(w).is_some_and(|k| k.unqualified_parse)
    }

    pub(crate) fn vx_primary(&mut self, ctx: &mut RuleCtx, t: Dtype) -> PResult<ValExpr> {
        if self.eat(Tok::LParen) {
            let e = self.vx_binop(ctx, t, 1)?;
            self.expect(Tok::RParen, "')'")?;
            return Ok(e);
        }
        let w = self.peek_word().unwrap_or_default();
        match w {
            "numgen" => {
                self.next();
                let (mode, span) = self.identifier()?;
                let random = match mode.as_str() {
                    "inc" => false,
                    "random" => true,
                    _ => return Err(self.err(span, "unknown numgen mode")),
                };
                self.expect_word("mod")?;
                let modulus = self.number()?.0 as u32;
                let offset = if self.eat_word("offset") {
                    self.number()?.0 as u32
                } else {
                    0
                };
                return Ok(ValExpr::Numgen {
                    random,
                    modulus,
                    offset,
                });
            }
            "jhash" => {
                self.next();
                let mut parts = vec![self.vx_sel(ctx)?];
                while self.eat(Tok::Dot) {
                    parts.push(self.vx_sel(ctx)?);
                }
                let key = if parts.len() == 1 {
                    parts.pop().unwrap()
                } else {
                    ValExpr::Concat(parts)
                };
                self.expect_word("mod")?;
                let modulus = self.number()?.0 as u32;
                let seed = if self.eat_word("seed") {
                    Some(self.number()?.0 as u32)
                } else {
                    None
                };
                let offset = if self.eat_word("offset") {
                    self.number()?.0 as u32
                } else {
                    0
                };
                return Ok(ValExpr::Jhash {
                    key: Box::new(key),
                    modulus,
                    seed,
                    offset,
                });
            }
            "symhash" => {
                self.next();
                self.expect_word("mod")?;
                let modulus = self.number()?.0 as u32;
                let offset = if self.eat_word("offset") {
                    self.number()?.0 as u32
                } else {
                    0
                };
                return Ok(ValExpr::Symhash { modulus, offset });
            }
            _ => {}
        }
        if self.selector_ahead() {
            return self.vx_sel(ctx);
        }
        let p = self.part(t)?;
        if t.is_bitmask() && self.peek().kind == Tok::Comma {
            let Part::Val(mut acc) = p else {
                return Ok(ValExpr::Const(t, p));
            };
            while self.eat(Tok::Comma) {
                let (p2, span) = self.value(t)?;
                let Part::Val(v) = p2 else {
                    return Err(self.err(span, "expected a flag value"));
                };
                acc = acc.or(&v);
            }
            return Ok(ValExpr::Const(t, Part::Val(acc)));
        }
        Ok(ValExpr::Const(t, p))
    }

    fn vx_sel(&mut self, ctx: &mut RuleCtx) -> PResult<ValExpr> {
        let (s, _) = self.selector(ctx)?;
        Ok(ValExpr::Sel(s))
    }
}
