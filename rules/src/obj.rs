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
    CtHelper {
        helper: String,
        proto: String,
        l3: &'static str,
    },
    CtTimeout {
        proto: String,
        l3: &'static str,
        policy: Vec<(String, u64)>,
    },
    CtExpectation {
        proto: String,
        dport: u64,
        timeout: u64,
        size: u64,
        l3: &'static str,
    },
    Synproxy {
        mss: u64,
        wscale: u64,
        timestamp: bool,
        sack_perm: bool,
    },
    /// The security context a `meta secmark set "NAME"` gives a packet (an LSM's label, such as
    /// SELinux's `system_u:object_r:ssh_server_packet_t:s0`).
    Secmark(String),
}

pub(crate) const TCP_STATES: &[&str] = &[
    "syn_sent",
    "syn_recv",
    "established",
    "fin_wait",
    "close_wait",
    "last_ack",
    "time_wait",
    "close",
    "syn_sent2",
    "retrans",
    "unacknowledged",
];
pub(crate) const UDP_STATES: &[&str] = &["unreplied", "replied"];

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
            ObjBody::CtHelper { .. } => ObjKind::CtHelper,
            ObjBody::CtTimeout { .. } => ObjKind::CtTimeout,
            ObjBody::CtExpectation { .. } => ObjKind::CtExpectation,
            ObjBody::Synproxy { .. } => ObjKind::Synproxy,
            ObjBody::Secmark(_) => ObjKind::Secmark,
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
            ObjBody::CtHelper { helper, proto, l3 } => {
                out.push_str(&format!(
                    "\t\ttype \"{helper}\" protocol {proto}\n\t\tl3proto {l3}\n"
                ));
            }
            ObjBody::CtTimeout { proto, l3, policy } => {
                out.push_str(&format!("\t\tprotocol {proto}\n\t\tl3proto {l3}\n"));
                if !policy.is_empty() {
                    let items: Vec<String> = policy
                        .iter()
                        .map(|(st, ms)| {
                            let mut t = String::new();
                            crate::types::print_time(*ms, &mut t);
                            format!("{st} : {t}")
                        })
                        .collect();
                    out.push_str(&format!("\t\tpolicy = {{ {} }}\n", items.join(", ")));
                }
            }
            ObjBody::CtExpectation {
                proto,
                dport,
                timeout,
                size,
                l3,
            } => {
                let mut t = String::new();
                crate::types::print_time(*timeout, &mut t);
                out.push_str(&format!(
                    "\t\tprotocol {proto}\n\t\tdport {dport}\n\t\ttimeout {t}\n\t\tsize {size}\n\t\tl3proto {l3}\n"
                ));
            }
            ObjBody::Synproxy {
                mss,
                wscale,
                timestamp,
                sack_perm,
            } => {
                out.push_str(&format!("\t\tmss {mss}\n\t\twscale {wscale}\n"));
                let mut f = Vec::new();
                if *timestamp {
                    f.push("timestamp");
                }
                if *sack_perm {
                    f.push("sack-perm");
                }
                if !f.is_empty() {
                    out.push_str(&format!("\t\t{}\n", f.join(" ")));
                }
            }
            ObjBody::Secmark(ctx) => out.push_str(&format!("\t\t\"{ctx}\"\n")),
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
        if self.kind == ObjKind::Secmark {
            out.push_str("meta secmark set ");
            self.target.print(fmt, out);
            return;
        }
        out.push_str(self.kind.name());
        out.push_str(" name ");
        self.target.print(fmt, out);
    }
}

impl Parser<'_> {
    /// An object declaration (`counter NAME { ... }`), after the kind word; the name is next.
    pub(crate) fn obj_decl(&mut self, family: Family, table: &str, kind: ObjKind) -> PResult<()> {
        // after a syntax error in the name nft's scanner stays in the object's state (its later
        // "unexpected rate" messages name that state's keywords)
        let scope = std::mem::replace(&mut self.scope_kw, crate::parse::obj_scope(kind));
        let (name, span) = self.name()?;
        self.scope_kw = scope;
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
            if matches!(
                kind,
                ObjKind::CtHelper | ObjKind::CtTimeout | ObjKind::CtExpectation | ObjKind::Synproxy
            ) {
                let b = self.ct_obj_item(family, kind, body.take(), span)?;
                body = Some(b);
                if !braced
                    && matches!(
                        self.peek().kind,
                        Tok::Newline | Tok::Semi | Tok::Eof | Tok::RBrace
                    )
                {
                    break;
                }
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
                ObjKind::Secmark if t.kind == Tok::Quoted => {
                    self.next();
                    ObjBody::Secmark(self.unquoted(t).to_string())
                }
                _ => return Err(self.unexpected(t, None)),
            });
            if !braced {
                break;
            }
        }
        if let Some(b) = &body {
            self.check_ct_obj(b, family, span);
        }
        let body = match (body, kind) {
            (Some(b), _) => b,
            (None, ObjKind::Counter) => ObjBody::Counter(Counter::default()),
            (None, _) => {
                return Err(self.err(span, format!("{} {name} needs a value", kind.name())))
            }
        };
        if self.rs.table(family, table).is_none() {
            // nft's evaluation error, at the table's name when the command names it
            return Err(self.table_not_found(table, span));
        }
        let t = self.rs.table_mut(family, table).unwrap();
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

    /// One item of a ct helper / timeout / expectation or synproxy object, folded into `body`.
    fn ct_obj_item(
        &mut self,
        family: Family,
        kind: ObjKind,
        body: Option<ObjBody>,
        span: Span,
    ) -> PResult<ObjBody> {
        let l3 = match family {
            Family::Ip6 => "ip6",
            Family::Inet => "inet",
            _ => "ip",
        };
        let mut b = body.unwrap_or(match kind {
            ObjKind::CtHelper => ObjBody::CtHelper {
                helper: String::new(),
                proto: String::new(),
                l3,
            },
            ObjKind::CtTimeout => ObjBody::CtTimeout {
                proto: String::new(),
                l3,
                policy: Vec::new(),
            },
            ObjKind::CtExpectation => ObjBody::CtExpectation {
                proto: String::new(),
                dport: 0,
                timeout: 0,
                size: 0,
                l3,
            },
            _ => ObjBody::Synproxy {
                mss: 0,
                wscale: 0,
                timestamp: false,
                sack_perm: false,
            },
        });
        let t = self.peek();
        let (w, ws) = self.identifier()?;
        let l3_of = |p: &mut Self, v: &str, sp: Span| -> PResult<&'static str> {
            match v {
                "ip" => Ok("ip"),
                "ip6" => Ok("ip6"),
                "inet" => Ok("inet"),
                _ => Err(p.err(sp, "unknown l3proto")),
            }
        };
        match (&mut b, w.as_str()) {
            (ObjBody::CtHelper { helper, proto, .. }, "type") => {
                *helper = self.quoted()?;
                self.expect_word("protocol")?;
                *proto = self.identifier()?.0;
            }
            (
                ObjBody::CtTimeout { proto, .. } | ObjBody::CtExpectation { proto, .. },
                "protocol",
            ) => {
                *proto = self.identifier()?.0;
            }
            (
                ObjBody::CtHelper { l3, .. }
                | ObjBody::CtTimeout { l3, .. }
                | ObjBody::CtExpectation { l3, .. },
                "l3proto",
            ) => {
                let (v, sp) = self.identifier()?;
                *l3 = l3_of(self, &v, sp)?;
            }
            (ObjBody::CtTimeout { policy, .. }, "policy") => {
                self.expect(Tok::Eq, "'='")?;
                self.expect(Tok::LBrace, "'{'")?;
                loop {
                    self.skip_newlines();
                    if self.eat(Tok::RBrace) {
                        break;
                    }
                    let (st, _) = self.identifier()?;
                    self.expect(Tok::Colon, "colon")?;
                    let (ms, _) = self.time_value()?;
                    policy.push((st, ms));
                    self.skip_newlines();
                    if !self.eat(Tok::Comma) {
                        self.skip_newlines();
                        self.expect(Tok::RBrace, "'}'")?;
                        break;
                    }
                }
            }
            (ObjBody::CtExpectation { dport, .. }, "dport") => *dport = self.number()?.0,
            (ObjBody::CtExpectation { timeout, .. }, "timeout") => *timeout = self.time_value()?.0,
            (ObjBody::CtExpectation { size, .. }, "size") => *size = self.number()?.0,
            (ObjBody::Synproxy { mss, .. }, "mss") => *mss = self.number()?.0,
            (ObjBody::Synproxy { wscale, .. }, "wscale") => *wscale = self.number()?.0,
            (ObjBody::Synproxy { timestamp, .. }, "timestamp") => *timestamp = true,
            (ObjBody::Synproxy { sack_perm, .. }, "sack-perm") => *sack_perm = true,
            _ => {
                let _ = (ws, span);
                return Err(self.unexpected(t, None));
            }
        }
        Ok(b)
    }

    /// nft's checks on ct objects (which also come from the kernel's validation).
    fn check_ct_obj(&mut self, b: &ObjBody, family: Family, span: Span) {
        match b {
            ObjBody::CtHelper { l3, .. }
                if ((family == Family::Ip && *l3 == "ip6")
                    || (family == Family::Ip6 && *l3 == "ip")) =>
            {
                self.sem_err(span, "Could not process rule: Invalid argument");
            }
            ObjBody::CtHelper { helper, proto, .. } if helper.is_empty() || proto.is_empty() => {
                self.sem_err(
                    span,
                    "ct helper needs a type: type \"NAME\" protocol tcp|udp",
                );
            }
            ObjBody::CtTimeout { proto, policy, .. } => {
                let states = if proto == "udp" {
                    UDP_STATES
                } else {
                    TCP_STATES
                };
                for (st, _) in policy {
                    if !states.contains(&st.as_str()) {
                        self.sem_err(span, format!("Unknown state '{st}' for protocol {proto}"));
                    }
                }
            }
            ObjBody::CtExpectation {
                dport,
                timeout,
                size,
                ..
            } if (*dport == 0 || *timeout == 0 || *size == 0) => {
                self.sem_err(span, "ct expectation needs dport, timeout and size");
            }
            _ => {}
        }
    }

    /// A map element's object (`22 : "c1"` of a `type inet_service : counter` map) must exist in the
    /// table, as the kernel requires; its error points at the element's key, as nft's does.
    pub(crate) fn check_obj_named(
        &mut self,
        kind: ObjKind,
        parts: &[crate::expr::Part],
        key: Span,
    ) {
        let [crate::expr::Part::Val(v)] = parts else {
            return;
        };
        self.require_obj(kind, &v.as_str(), key);
    }

    /// The object `name` of `kind` must exist in the current table (the kernel refuses a reference
    /// to a missing one). In a table block it may still be declared later in the block.
    fn require_obj(&mut self, kind: ObjKind, name: &str, span: Span) {
        let Some((f, tb)) = self.cur_table.clone() else {
            return;
        };
        let ok = (self.rs.table(f, &tb))
            .is_some_and(|t| t.objs.iter().any(|o| o.name == name && o.kind() == kind));
        if ok {
            return;
        }
        if self.block_table.as_ref() == Some(&(f, tb)) {
            self.pending_objs.push((kind, name.to_string(), span));
        } else {
            self.sem_err(span, "Could not process rule: No such file or directory");
        }
    }

    /// After `meta secmark set`: does the value name a secmark object (a string, or a map lookup
    /// whose data are strings or secmark objects) rather than give the mark's number?
    pub(crate) fn secmark_object_ahead(&mut self) -> bool {
        let v = self.peek_nth(3);
        match v.kind {
            Tok::Quoted => return true,
            Tok::Word if !self.starts_selector(self.text(v)) => {
                return !self.text(v).starts_with(|c: char| c.is_ascii_digit())
            }
            Tok::Word => {}
            _ => return false,
        }
        let line_end = |k: Tok| matches!(k, Tok::Newline | Tok::Semi | Tok::Eof | Tok::RBrace);
        let mut i = 4;
        while i < 40 {
            let t = self.peek_nth(i);
            if line_end(t.kind) {
                return false;
            }
            if t.kind == Tok::Word && self.text(t) == "map" {
                let m = self.peek_nth(i + 1);
                if m.kind == Tok::At {
                    let name = &self.text(m)[1..];
                    let Some((f, tb)) = self.cur_table.clone() else {
                        return false;
                    };
                    return self
                        .rs
                        .table(f, &tb)
                        .and_then(|t| t.set(name))
                        .is_some_and(|s| {
                            s.data
                                .as_ref()
                                .is_some_and(|d| d.dtypes() == [Dtype::Obj(ObjKind::Secmark)])
                        });
                }
                let mut j = i + 2;
                while j < i + 200 {
                    let e = self.peek_nth(j);
                    match e.kind {
                        Tok::Quoted => return true,
                        Tok::RBrace | Tok::Eof => return false,
                        _ => j += 1,
                    }
                }
                return false;
            }
            i += 1;
        }
        false
    }

    /// `counter|quota|limit|synproxy name EXPR` in a rule (the kind word is consumed), or
    /// `meta secmark set EXPR` with a string or a map lookup (`meta secmark set` is consumed).
    pub(crate) fn obj_ref_stmt(
        &mut self,
        ctx: &mut RuleCtx,
        kind: ObjKind,
        span: Span,
    ) -> PResult<crate::stmt::Stmt> {
        if kind != ObjKind::Secmark {
            self.expect_word("name")?;
        }
        let t = self.peek();
        let target = if matches!(t.kind, Tok::Quoted)
            || (t.kind == Tok::Word && !self.starts_selector(self.text(t)))
        {
            self.next();
            let name = self.string_of(t);
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
        // a name (not a map lookup) must name an object of this kind in the table
        if let ValExpr::Const(_, crate::expr::Part::Val(v)) = &target {
            self.require_obj(kind, &v.as_str(), t.span);
        }
        let _ = span;
        ctx.dep = None;
        Ok(crate::stmt::Stmt::ObjRef(Box::new(ObjRef { kind, target })))
    }
}
