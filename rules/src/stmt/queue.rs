//! `queue [flags bypass,fanout] [to N | to N-M | to EXPR]` (and the older `queue num N bypass`).

use crate::expr::value::ValExpr;
use crate::expr::Part;
use crate::lex::Tok;
use crate::parse::{PResult, Parser, RuleCtx};
use crate::types::{Dtype, Val, ValFmt};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Queue {
    pub bypass: bool,
    pub fanout: bool,
    pub to: ValExpr,
}

impl Queue {
    pub fn print(&self, out: &mut String, fmt: ValFmt) {
        out.push_str("queue");
        match (self.bypass, self.fanout) {
            (true, true) => out.push_str(" flags bypass,fanout"),
            (true, false) => out.push_str(" flags bypass"),
            (false, true) => out.push_str(" flags fanout"),
            _ => {}
        }
        out.push_str(" to ");
        self.to.print(fmt, out);
    }
}

impl Parser<'_> {
    pub(crate) fn queue_stmt(&mut self, ctx: &mut RuleCtx) -> PResult<super::Stmt> {
        let start = self.next();
        let mut q = Queue {
            bypass: false,
            fanout: false,
            to: ValExpr::Const(Dtype::Integer(16), Part::Val(Val::from_u128(0, 2))),
        };
        let flags = |p: &mut Self, q: &mut Queue| -> PResult<()> {
            loop {
                let (f, span) = p.identifier()?;
                match f.as_str() {
                    "bypass" => q.bypass = true,
                    "fanout" => q.fanout = true,
                    _ => return Err(p.err(span, "unknown queue flag")),
                }
                if !p.eat(Tok::Comma) {
                    return Ok(());
                }
            }
        };
        if self.eat_word("flags") {
            flags(self, &mut q)?;
        }
        if self.eat_word("to") {
            q.to = self.value_expr(ctx, &[Dtype::Integer(16)])?;
        } else if self.eat_word("num") {
            // the old form takes numbers and ranges only
            q.to = ValExpr::Const(Dtype::Integer(16), self.part(Dtype::Integer(16))?);
        }
        while self.is_word("bypass") || self.is_word("fanout") {
            flags(self, &mut q)?;
        }
        if matches!(
            q.to,
            ValExpr::Sel(_) | ValExpr::Binop(..) | ValExpr::Concat(_)
        ) {
            self.sem_err(start.span, "queue number must be a constant or a hash");
        }
        let is_range = matches!(q.to, ValExpr::Const(_, Part::Range(..)));
        if q.fanout && !is_range {
            self.sem_err(start.span, "fanout requires a range of queues");
        }
        if !matches!(q.to, ValExpr::Const(..)) {
            if let ValExpr::Symhash { offset, .. } | ValExpr::Jhash { offset, .. } = q.to {
                if offset != 0 {
                    self.sem_err(start.span, "queue number out of range");
                }
            }
            if let ValExpr::Symhash { modulus, .. }
            | ValExpr::Jhash { modulus, .. }
            | ValExpr::Numgen { modulus, .. } = q.to
            {
                if modulus > 65536 {
                    self.sem_err(start.span, "queue number out of range");
                }
            }
        }
        ctx.dep = None;
        Ok(super::Stmt::Queue(Box::new(q)))
    }
}
