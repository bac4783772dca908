//! Stateful objects (`counter c { packets 0 bytes 0 }`, `quota q { over 25 mbytes }`,
//! `limit l { rate 10/second }`) and the statements that refer to them (`counter name "c"`,
//! `quota name ip saddr map @m`).

use crate::ast::Family;
use crate::diag::Span;
use crate::expr::value::ValExpr;
use crate::lex::Tok;
use crate::parse::{PResult, Parser, RuleCtx};
use crate::stmt::counter::Counter;
use crate::stmt::limit::{Limit, Quota};
use crate::types::{Dtype, ObjKind, ValFmt};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ObjBody {
    Counter(Counter),
    Quota(Quota),
    Limit(Limit),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Obj {
    pub name: String,
    pub handle: u64,
    pub comment: Option<String>,
    pub body: ObjBody,
}

impl Obj {
    pub fn kind(&self) -> ObjKind {
        match self.body {
            ObjBody::Counter(_) => ObjKind::Counter,
            ObjBody::Quota(_) => ObjKind::Quota,
            ObjBody::Limit(_) => ObjKind::Limit,
        }
    }

    pub fn print(&self, handles: bool, stateless: bool, out: &mut String) {
        out.push_str(&format!("\t{} {} {{", self.kind().name(), self.name));
        if handles {
            out.push_str(&format!(" # handle {}", self.handle));
        }
        out.push('\n');
        if let Some(c) = &self.comment {
            out.push_str(&format!("\t\tcomment \"{c}\"\n"));
        }
        match &self.body {
            ObjBody::Counter(c) => {
                if !stateless {
                    out.push_str(&format!("\t\tpackets {} bytes {}\n", c.packets, c.bytes));
                }
            }
            ObjBody::Quota(q) => {
                let mut s = String::new();
                q.print(stateless, &mut s);
                out.push_str("\t\t");
                out.push_str(s.strip_prefix("quota ").unwrap_or(&s));
                out.push('\n');
            }
            ObjBody::Limit(l) => {
                let mut s = String::new();
                l.print(&mut s);
                out.push_str("\t\t");
                out.push_str(s.strip_prefix("limit ").unwrap_or(&s));
                out.push('\n');
            }
        }
        out.push_str("\t}\n");
    }
}

/// `counter name "c"` / `counter name EXPR map { ... }`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjRef {
    pub kind: ObjKind,
    pub target: ValExpr,
}

impl ObjRef {
    pub fn print(&self, out: &mut String, fmt: ValFmt) {
        out.push_str(self.kind.name());
        out.push_str(" name ");
        self.target.print(fmt, out);
    }
}

impl Parser<'_> {
    /// An object declaration (`counter NAME { ... }`), after the kind word; the name is next.
    pub(crate) fn obj_decl(&mut self, family: Family, table: &str, kind: ObjKind) -> PResult<()> {
        let (name, span) = self.identifier()?;
        let mut comment = None;
        let braced = self.eat(Tok::LBrace);
        let mut body = None;
        loop {
            if braced {
                while matches!(self.peek().kind, Tok::Newline | Tok::Semi) {
                    self.next();
                }
                if self.eat(Tok::RBrace) {
                    break;
                }
            } else if matches!(
                self.peek().kind,
                Tok::Newline | Tok::Semi | Tok::Eof | Tok::RBrace
            ) {
                break;
            }
            if self.eat_word("comment") {
                comment = Some(self.quoted()?);
                continue;
            }
            let t = self.peek();
            body = Some(match kind {
                ObjKind::Counter => {
                    let mut c = Counter::default();
                    self.expect_word("packets")?;
                    c.packets = self.number()?.0;
                    self.expect_word("bytes")?;
                    c.bytes = self.number()?.0;
                    ObjBody::Counter(c)
                }
                ObjKind::Quota => ObjBody::Quota(self.quota_body()?),
                ObjKind::Limit => {
                    self.expect_word("rate")?;
                    ObjBody::Limit(self.limit_body(0)?)
                }
                _ => return Err(self.unexpected(t, None)),
            });
            if !braced {
                break;
            }
        }
        let body = match (body, kind) {
            (Some(b), _) => b,
            (None, ObjKind::Counter) => ObjBody::Counter(Counter::default()),
            (None, _) => {
                return Err(self.err(span, format!("{} {name} needs a value", kind.name())))
            }
        };
        let Some(t) = self.rs.table_mut(family, table) else {
            return Err(self.err(span, "Could not process rule: No such file or directory"));
        };
        if let Some(o) = t
            .objs
            .iter_mut()
            .find(|o| o.name == name && o.kind() == kind)
        {
            o.body = body;
            if comment.is_some() {
                o.comment = comment;
            }
        } else {
            let handle = t.alloc_handle();
            t.objs.push(Obj {
                name,
                handle,
                comment,
                body,
            });
        }
        Ok(())
    }

    /// `counter|quota|limit name EXPR` in a rule (the kind word is consumed).
    pub(crate) fn obj_ref_stmt(
        &mut self,
        ctx: &mut RuleCtx,
        kind: ObjKind,
        span: Span,
    ) -> PResult<crate::stmt::Stmt> {
        self.expect_word("name")?;
        let t = self.peek();
        let target = if matches!(t.kind, Tok::Quoted)
            || (t.kind == Tok::Word && !self.starts_selector(self.text(t)))
        {
            self.next();
            let name = self.string_of(t);
            if let Some((f, tb)) = self.cur_table.clone() {
                let ok = self
                    .rs
                    .table(f, &tb)
                    .is_some_and(|tt| tt.objs.iter().any(|o| o.name == name && o.kind() == kind));
                if !ok {
                    self.sem_err(t.span, "Could not process rule: No such file or directory");
                }
            }
            ValExpr::Const(
                Dtype::Obj(kind),
                crate::expr::Part::Val(
                    Dtype::Obj(kind)
                        .parse(&name, true)
                        .map_err(|m| self.err(t.span, m))?,
                ),
            )
        } else {
            self.value_expr(ctx, &[Dtype::Obj(kind)])?
        };
        let _ = span;
        ctx.dep = None;
        Ok(crate::stmt::Stmt::ObjRef(ObjRef { kind, target }))
    }
}
