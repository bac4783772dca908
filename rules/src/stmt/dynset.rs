//! Updating sets from the packet path: `add @s { ip saddr timeout 10s }`,
//! `update @m { ip saddr counter : 0x1 }`, `delete @s { ip saddr }`; and `flow add @ft`.

use crate::expr::value::ValExpr;
use crate::lex::Tok;
use crate::parse::{PResult, Parser, RuleCtx};
use crate::types::{Dtype, ValFmt};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetUpdate {
    /// `add`, `update` or `delete`
    pub op: &'static str,
    pub set: String,
    pub key: ValExpr,
    pub timeout: Option<u64>,
    pub stmts: Vec<super::Stmt>,
    pub data: Option<ValExpr>,
    /// written as `meter NAME size N { … }` (the meter's size)
    pub meter: Option<u64>,
}

impl SetUpdate {
    pub fn print(&self, out: &mut String, fmt: ValFmt, stateless: bool) {
        match self.meter {
            Some(size) => out.push_str(&format!("meter {} size {size} {{ ", self.set)),
            None => out.push_str(&format!("{} @{} {{ ", self.op, self.set)),
        }
        self.key.print(fmt, out);
        if let Some(t) = self.timeout {
            out.push_str(" timeout ");
            crate::types::print_time(t, out);
        }
        for s in &self.stmts {
            out.push(' ');
            match s {
                super::Stmt::Counter(c) => {
                    // per-element state lives in the set: the statement is only a template
                    super::counter::Counter::print(c.packets, c.bytes, true, out)
                }
                super::Stmt::Limit(l) => l.print(out),
                super::Stmt::Quota(q) => q.print(stateless, out),
                super::Stmt::Connlimit { count, over } => out.push_str(&format!(
                    "ct count {}{count}",
                    if *over { "over " } else { "" }
                )),
                _ => {}
            }
        }
        if let Some(d) = &self.data {
            out.push_str(" : ");
            d.print(fmt, out);
        }
        out.push_str(" }");
    }
}

impl Parser<'_> {
    /// `add|update|delete @set { KEY [timeout T] [stmts] [: DATA] }` (the verb is next).
    pub(crate) fn set_update_stmt(&mut self, ctx: &mut RuleCtx) -> PResult<super::Stmt> {
        let verb = self.next();
        let op = match self.text(verb) {
            "add" => "add",
            "update" => "update",
            _ => "delete",
        };
        let t = self.peek();
        if t.kind != Tok::At {
            return Err(self.unexpected(t, None));
        }
        self.next();
        let set = self.at_name(t)?;
        let (key_types, data_types) = match self.cur_table.clone().and_then(|(f, tb)| {
            self.rs
                .table(f, &tb)
                .and_then(|tt| tt.set(&set))
                .map(|s| (s.key_types(), s.data_types()))
        }) {
            Some(x) => x,
            None => {
                let d = self.not_found(crate::misspell::What::Set, &set, t.span);
                self.sem_errors.push(d);
                (vec![Dtype::Integer(32)], None)
            }
        };
        self.expect(Tok::LBrace, "'{'")?;
        let key = self.value_expr(ctx, &key_types)?;
        let mut u = self.set_update_items(op, set, key)?;
        if self.eat(Tok::Colon) {
            let dt = data_types.unwrap_or_else(|| vec![Dtype::Integer(32)]);
            // nft's grammar has no verdict here: the packet path cannot write a verdict map
            if dt == [Dtype::Verdict] {
                let t = self.peek();
                return Err(self.unexpected(t, None));
            }
            u.data = Some(self.value_expr(ctx, &dt)?);
        }
        self.skip_newlines();
        let end = self.expect(Tok::RBrace, "'}'")?;
        ctx.dep = None;
        // as nft does, a set written by the packet path becomes `dynamic` (maps do not show it), and
        // both get the kernel's default size; a per-element timeout needs a set that has timeouts
        // (the kernel's EOPNOTSUPP)
        if let Some((f, tb)) = self.cur_table.clone() {
            let set = self
                .rs
                .table_mut(f, &tb)
                .and_then(|tt| tt.sets.iter_mut().find(|s| s.name == u.set));
            if let Some(set) = set {
                set.flags.dynamic |= !set.is_map;
                if set.size.is_none() {
                    set.size = Some(65535);
                }
                let mut span = verb.span;
                span.hi = end.span.hi;
                if u.timeout.is_some() && !set.flags.timeout && set.timeout.is_none() {
                    self.sem_err(span, "Could not process rule: Operation not supported");
                } else if !u.stmts.is_empty() && !set.flags.dynamic {
                    // per-element statements need a set the kernel evaluates (NFT_SET_EVAL): a
                    // map is not made `dynamic` for them
                    self.sem_err(span, "Could not process rule: Invalid argument");
                }
            }
        }
        Ok(super::Stmt::SetUpdate(Box::new(u)))
    }

    /// After an update's key: `timeout T` and the per-element statements.
    fn set_update_items(
        &mut self,
        op: &'static str,
        set: String,
        key: ValExpr,
    ) -> PResult<SetUpdate> {
        let mut u = SetUpdate {
            op,
            set,
            key,
            timeout: None,
            stmts: Vec::new(),
            data: None,
            meter: None,
        };
        loop {
            let w = self.peek_word().unwrap_or_default();
            match w {
                "timeout" => {
                    self.next();
                    u.timeout = Some(self.time_value()?.0);
                }
                "counter" => u.stmts.push(self.counter_stmt()?),
                "limit" => u.stmts.push(self.limit_stmt()?),
                "quota" => u.stmts.push(self.quota_stmt()?),
                "ct" if {
                    let n2 = self.peek2();
                    n2.kind == Tok::Word && self.text(n2) == "count"
                } =>
                {
                    u.stmts.push(self.connlimit_stmt()?)
                }
                _ => break,
            }
        }
        Ok(u)
    }

    /// `meter NAME [size N] { KEY [timeout T] STMTS }` (`meter` is next): nft's older form of a set
    /// the packet path updates. The set is made (anonymous, dynamic, listed by `list meters`) the
    /// first time its name is used in the table.
    pub(crate) fn meter_stmt(&mut self, ctx: &mut RuleCtx) -> PResult<super::Stmt> {
        self.next();
        let (name, _) = self.name()?;
        let size = if self.eat_word("size") {
            Some(self.number()?.0)
        } else {
            None
        };
        self.expect(Tok::LBrace, "'{'")?;
        let key_start = self.peek().span;
        let key = self.value_expr(ctx, &[])?;
        let key_span = key_start.to(self.prev);
        let mut u = self.set_update_items("update", name, key)?;
        self.skip_newlines();
        self.expect(Tok::RBrace, "'}'")?;
        ctx.dep = None;
        let types = u.key.dtypes();
        let size = size.unwrap_or(65535);
        u.meter = Some(size);
        let Some((f, tb)) = self.cur_table.clone() else {
            return Ok(super::Stmt::SetUpdate(Box::new(u)));
        };
        let Some(t) = self.rs.table_mut(f, &tb) else {
            return Ok(super::Stmt::SetUpdate(Box::new(u)));
        };
        match t.sets.iter_mut().find(|s| s.name == u.set) {
            Some(s) if s.meter && s.key_types() == types => {
                s.flags.timeout |= u.timeout.is_some();
            }
            // the kernel's answers (nft 1.0.6 also reports the statement as refused after them)
            Some(s) if s.meter => {
                self.sem_err(key_span, "Could not process rule: Operation not supported")
            }
            Some(_) => self.sem_err(key_span, "Could not process rule: File exists"),
            None => {
                self.new_meters.push((f, tb.clone(), u.set.clone()));
                let handle = t.alloc_handle();
                t.sets.push(crate::set::Set {
                    name: u.set.clone(),
                    handle,
                    is_map: false,
                    key: crate::set::KeySpec::Types(types),
                    data: None,
                    flags: crate::set::SetFlags {
                        dynamic: true,
                        timeout: u.timeout.is_some(),
                        ..Default::default()
                    },
                    data_interval: false,
                    timeout: None,
                    gc_interval: None,
                    size: Some(size),
                    policy: None,
                    auto_merge: false,
                    comment: None,
                    stmts: Vec::new(),
                    elems: Vec::new(),
                    meter: true,
                });
            }
        }
        Ok(super::Stmt::SetUpdate(Box::new(u)))
    }

    /// `flow add @ft` / `flow offload @ft`
    pub(crate) fn flow_stmt(&mut self) -> PResult<super::Stmt> {
        self.next();
        let (w, span) = self.identifier()?;
        if w != "add" && w != "offload" {
            return Err(self.err(span, "expected add"));
        }
        let t = self.peek();
        if t.kind != Tok::At {
            return Err(self.unexpected(t, None));
        }
        self.next();
        Ok(super::Stmt::FlowAdd(self.at_name(t)?))
    }
}
