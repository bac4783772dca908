//! Named sets and maps: declarations (`set s { type ...; flags ...; elements = { ... } }`), element
//! commands, canonical element order and the listing format.

use crate::ast::Family;
use crate::diag::Span;
use crate::expr::{parse::interval_part, Data, Elem, ElemFmt, Part, Selector};
use crate::lex::{Tok, Token};
use crate::parse::{PResult, Parser, RuleCtx};
use crate::stmt::Stmt;
use crate::types::{Dtype, ValFmt};

/// `type a . b` or `typeof expr . expr`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeySpec {
    Types(Vec<Dtype>),
    Typeof(Vec<Selector>),
}

impl KeySpec {
    pub fn dtypes(&self) -> Vec<Dtype> {
        match self {
            KeySpec::Types(t) => t.clone(),
            KeySpec::Typeof(s) => s.iter().map(|s| s.dtype()).collect(),
        }
    }
    fn print_body(&self, out: &mut String) {
        match self {
            KeySpec::Types(t) => {
                let names: Vec<&str> = t.iter().map(|d| d.name()).collect();
                out.push_str(&names.join(" . "));
            }
            KeySpec::Typeof(s) => {
                for (i, sel) in s.iter().enumerate() {
                    if i > 0 {
                        out.push_str(" . ");
                    }
                    sel.print(out);
                }
            }
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SetFlags {
    pub constant: bool,
    pub dynamic: bool,
    pub interval: bool,
    pub timeout: bool,
    /// `timeout` was written in `flags` (printed even when a default timeout is set)
    pub timeout_explicit: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Set {
    pub name: String,
    pub handle: u64,
    pub is_map: bool,
    pub key: KeySpec,
    /// maps: the data type (`verdict` for verdict maps)
    pub data: Option<KeySpec>,
    pub flags: SetFlags,
    /// `type a : interval b` (maps whose data are ranges or prefixes)
    pub data_interval: bool,
    pub timeout: Option<u64>,
    pub gc_interval: Option<u64>,
    pub size: Option<u64>,
    pub policy: Option<String>,
    pub auto_merge: bool,
    pub comment: Option<String>,
    /// stateful statements every element gets (`counter`)
    pub stmts: Vec<Stmt>,
    pub elems: Vec<Elem>,
    /// made by a `meter NAME { … }` statement: an anonymous set with a name, listed by `list meters`
    /// and not in the ruleset's listing
    pub meter: bool,
}

impl Set {
    pub fn key_types(&self) -> Vec<Dtype> {
        self.key.dtypes()
    }
    pub fn data_types(&self) -> Option<Vec<Dtype>> {
        self.data.as_ref().map(|d| d.dtypes())
    }
    pub fn is_vmap(&self) -> bool {
        self.data_types().as_deref() == Some(&[Dtype::Verdict])
    }

    /// Adds elements (already typed), keeping nft's canonical order. Errors are messages for the
    /// caller to locate.
    pub fn add_elems(&mut self, new: Vec<Elem>) -> Result<(), (usize, String)> {
        let single = self.key_types().len() == 1;
        for (i, e) in new.iter().enumerate() {
            if !self.flags.interval {
                for p in &e.parts {
                    match p {
                        Part::Prefix(..) if self.key_types() != [Dtype::Ifname] => {
                            return Err((
                                i,
                                "You must add 'flags interval' to your set declaration if you want to add prefix elements".into(),
                            ))
                        }
                        Part::Range(..) => {
                            return Err((
                                i,
                                "You must add 'flags interval' to your set declaration if you want to add range elements".into(),
                            ))
                        }
                        _ => {}
                    }
                }
            }
        }
        for e in new {
            if let Some(i) = self.elems.iter().position(|x| x.parts == e.parts) {
                self.elems[i] = e;
            } else {
                self.elems.push(e);
            }
        }
        if self.flags.interval && single && self.auto_merge && self.data.is_none() {
            let t = self.key_types()[0];
            let (mut keyed, rest): (Vec<Elem>, Vec<Elem>) =
                self.elems.drain(..).partition(|e| !e.parts.is_empty());
            keyed = crate::expr::parse::normalize_anon_set(keyed, &[t]);
            self.elems = keyed;
            self.elems.extend(rest);
        } else if self.flags.interval && single {
            let t = self.key_types()[0];
            for e in &mut self.elems {
                if let Some(p) = e.parts.first_mut() {
                    if t == Dtype::Ifname {
                        continue;
                    }
                    let (lo, hi) = p.bounds();
                    *p = interval_part(t, t.bytes(), lo.to_u128(), hi.to_u128());
                }
            }
        }
        self.sort();
        Ok(())
    }

    fn sort(&mut self) {
        self.elems
            .sort_by(|a, b| match (a.parts.is_empty(), b.parts.is_empty()) {
                (true, false) => std::cmp::Ordering::Greater,
                (false, true) => std::cmp::Ordering::Less,
                _ => a.sort_key().cmp(&b.sort_key()),
            });
    }

    /// The listing block (`\tset NAME {` ... `\t}\n`).
    pub fn print(&self, handles: bool, fmt: ValFmt, stateless: bool, out: &mut String) {
        let kind = match (self.meter, self.is_map) {
            (true, _) => "meter",
            (_, true) => "map",
            _ => "set",
        };
        out.push_str(&format!("\t{kind} {} {{", self.name));
        if handles {
            out.push_str(&format!(" # handle {}", self.handle));
        }
        out.push('\n');
        out.push_str(match self.key {
            KeySpec::Types(_) => "\t\ttype ",
            KeySpec::Typeof(_) => "\t\ttypeof ",
        });
        self.key.print_body(out);
        if let Some(d) = &self.data {
            out.push_str(" : ");
            if self.data_interval {
                out.push_str("interval ");
            }
            d.print_body(out);
        }
        out.push('\n');
        if let Some(p) = &self.policy {
            if p != "performance" {
                out.push_str(&format!("\t\tpolicy {p}\n"));
            }
        }
        if let Some(s) = self.size {
            out.push_str(&format!("\t\tsize {s}\n"));
        }
        let mut flags = Vec::new();
        if self.flags.constant {
            flags.push("constant");
        }
        if self.flags.dynamic {
            flags.push("dynamic");
        }
        if self.flags.interval {
            flags.push("interval");
        }
        if self.flags.timeout
            && (self.timeout.is_none() || self.flags.timeout_explicit || self.flags.dynamic)
        {
            flags.push("timeout");
        }
        if !flags.is_empty() {
            out.push_str(&format!("\t\tflags {}\n", flags.join(",")));
        }
        if !self.stmts.is_empty() {
            let mut line = Vec::new();
            for s in &self.stmts {
                let mut t = String::new();
                match s {
                    Stmt::Counter(_) => t.push_str("counter"),
                    Stmt::Limit(l) => l.print(&mut t),
                    Stmt::Quota(q) => q.print(true, &mut t),
                    _ => continue,
                }
                line.push(t);
            }
            out.push_str(&format!("\t\t{}\n", line.join(" ")));
        }
        if self.auto_merge {
            out.push_str("\t\tauto-merge\n");
        }
        if let Some(t) = self.timeout {
            out.push_str("\t\ttimeout ");
            crate::types::print_time(t, out);
            out.push('\n');
        }
        if let Some(t) = self.gc_interval {
            out.push_str("\t\tgc-interval ");
            crate::types::print_time(t, out);
            out.push('\n');
        }
        if let Some(c) = &self.comment {
            out.push_str(&format!("\t\tcomment \"{c}\"\n"));
        }
        if !self.elems.is_empty() {
            let key = self.key_types();
            let data = self.data_types();
            let ef = ElemFmt {
                key: &key,
                data: data.as_deref(),
                val: fmt,
                stateless,
            };
            let per_line = if self.is_map
                || key.len() > 1
                || self.flags.timeout
                || self.elems.iter().any(|e| e.opts.is_some())
            {
                1
            } else {
                key[0].set_elems_per_line()
            };
            out.push_str("\t\telements = { ");
            let mut count = 0;
            for (i, e) in self.elems.iter().enumerate() {
                if i > 0 {
                    if count < per_line {
                        out.push_str(", ");
                    } else {
                        out.push_str(",\n\t\t\t     ");
                        count = 0;
                    }
                }
                e.print_full(&ef, out);
                count += 1;
            }
            out.push_str(" }\n");
        }
        out.push_str("\t}\n");
    }
}

impl Parser<'_> {
    /// `set NAME { ... }` / `map NAME { ... }` body (after the `{`), creating or updating the set.
    pub(crate) fn set_decl(
        &mut self,
        family: Family,
        table: &str,
        name: &str,
        name_span: Span,
        is_map: bool,
        create: bool,
    ) -> PResult<()> {
        self.cur_table = Some((family, table.to_string()));
        let Some(t) = self.rs.table(family, table) else {
            // nft's evaluation error, at the table's name when the command names it
            return Err(self.table_not_found(table, name_span));
        };
        let existing = t.sets.iter().position(|s| s.name == name);
        if existing.is_some() && create {
            return Err(self.err(name_span, "Could not process rule: File exists"));
        }
        let mut set = match existing {
            Some(i) => t.sets[i].clone(),
            None => Set {
                name: name.to_string(),
                handle: 0,
                is_map,
                key: KeySpec::Types(Vec::new()),
                data: None,
                flags: SetFlags::default(),
                data_interval: false,
                timeout: None,
                gc_interval: None,
                size: None,
                policy: None,
                auto_merge: false,
                comment: None,
                stmts: Vec::new(),
                elems: Vec::new(),
                meter: false,
            },
        };
        let mut pending_elems: Option<(Vec<Elem>, Span, Vec<Span>)> = None;
        let mut has_type = existing.is_some();
        self.expect(Tok::LBrace, "'{'")?;
        loop {
            while matches!(self.peek().kind, Tok::Newline | Tok::Semi) {
                self.next();
            }
            let t = self.peek();
            if t.kind == Tok::RBrace {
                self.next();
                break;
            }
            // one line of the block; a syntax error in it is skipped like nft's parser does
            let r = (|| -> PResult<()> {
                let w = self.peek_word().unwrap_or_default();
                match w {
                    "type" => {
                        self.next();
                        let key = self.type_list()?;
                        set.key = KeySpec::Types(key);
                        if is_map {
                            self.expect(Tok::Colon, "colon")?;
                            if self.eat_word("interval") {
                                set.data_interval = true;
                            }
                            set.data = Some(KeySpec::Types(self.type_list()?));
                        }
                        has_type = true;
                    }
                    "typeof" => {
                        self.next();
                        let mut ctx = RuleCtx::new(family);
                        let mut sels = vec![self.selector(&mut ctx)?.0];
                        while self.eat(Tok::Dot) {
                            sels.push(self.selector(&mut ctx)?.0);
                        }
                        set.key = KeySpec::Typeof(sels);
                        if is_map {
                            self.expect(Tok::Colon, "colon")?;
                            if self.eat_word("verdict") {
                                set.data = Some(KeySpec::Types(vec![Dtype::Verdict]));
                            } else {
                                let mut ctx = RuleCtx::new(family);
                                let mut sels = vec![self.selector(&mut ctx)?.0];
                                while self.eat(Tok::Dot) {
                                    sels.push(self.selector(&mut ctx)?.0);
                                }
                                set.data = Some(KeySpec::Typeof(sels));
                            }
                        }
                        has_type = true;
                    }
                    "flags" => {
                        self.next();
                        loop {
                            let (f, span) = self.identifier()?;
                            match f.as_str() {
                                "constant" => set.flags.constant = true,
                                "dynamic" => set.flags.dynamic = true,
                                "interval" => set.flags.interval = true,
                                "timeout" => {
                                    set.flags.timeout = true;
                                    set.flags.timeout_explicit = true;
                                }
                                _ => {
                                    // a syntax error for nft: its grammar lists the flags
                                    let t = Token {
                                        kind: Tok::Word,
                                        span,
                                    };
                                    return Err(self.unexpected(
                                        t,
                                        Some("constant or interval or dynamic or timeout"),
                                    ));
                                }
                            }
                            if !self.eat(Tok::Comma) {
                                break;
                            }
                        }
                    }
                    "timeout" => {
                        self.next();
                        set.timeout = Some(self.time_value()?.0);
                        set.flags.timeout = true;
                    }
                    "gc-interval" => {
                        self.next();
                        set.gc_interval = Some(self.time_value()?.0);
                    }
                    "size" => {
                        self.next();
                        set.size = Some(self.number()?.0);
                    }
                    "policy" => {
                        self.next();
                        let (p, span) = self.identifier()?;
                        if !matches!(p.as_str(), "performance" | "memory") {
                            return Err(self.err(span, format!("unknown set policy '{p}'")));
                        }
                        set.policy = Some(p);
                    }
                    "auto-merge" => {
                        self.next();
                        set.auto_merge = true;
                    }
                    "comment" => {
                        self.next();
                        set.comment = Some(self.quoted()?);
                    }
                    "counter" | "limit" | "quota" => {
                        // stateful templates, several may share a line: `limit rate 1/second counter`
                        while let Some(w) = self.peek_word() {
                            let s = match w {
                                "counter" => self.counter_stmt()?,
                                "limit" => self.limit_stmt()?,
                                "quota" => self.quota_stmt()?,
                                _ => break,
                            };
                            set.stmts.push(s);
                        }
                    }
                    "elements" => {
                        self.next();
                        self.expect(Tok::Eq, "'='")?;
                        if !has_type {
                            let t = self.peek();
                            return Err(self.err(t.span, "set definition does not specify key"));
                        }
                        let start = self.peek().span;
                        let key = set.key_types();
                        let data = set.data_types();
                        self.elem_spans.clear();
                        let elems = self.set_elems(&key, data.as_deref())?;
                        pending_elems = Some((elems, start, std::mem::take(&mut self.elem_spans)));
                    }
                    _ => return Err(self.unexpected(t, None)),
                }
                let t = self.peek();
                if !matches!(t.kind, Tok::Newline | Tok::Semi | Tok::RBrace) {
                    return Err(self.unexpected(t, Some("newline or semicolon")));
                }
                Ok(())
            })();
            if let Err(d) = r {
                self.recover_in_block(d)?;
            }
        }
        if !has_type {
            return Err(self.err(name_span, "set definition does not specify key".to_string()));
        }
        if let Some(i) = existing {
            // adding a set that exists with another key or data type: the kernel's EEXIST
            let old = &self.rs.table(family, table).unwrap().sets[i];
            if old.key_types() != set.key_types()
                || old.data_types() != set.data_types()
                || old.is_map != set.is_map
            {
                return Err(self.err(name_span, "Could not process rule: File exists"));
            }
        }
        if let Some((elems, span, spans)) = pending_elems {
            let stmts = set.stmts.clone();
            let elems = with_set_stmts(elems, &stmts);
            if let Err((i, m)) = set.add_elems(elems) {
                self.sem_err(spans.get(i).copied().unwrap_or(span), m);
            }
        }
        let t = self.rs.table_mut(family, table).unwrap();
        match existing {
            Some(i) => t.sets[i] = set,
            None => {
                set.handle = t.alloc_handle();
                t.sets.push(set);
            }
        }
        Ok(())
    }

    /// `ipv4_addr . inet_service`
    fn type_list(&mut self) -> PResult<Vec<Dtype>> {
        let mut out = Vec::new();
        loop {
            let (name, span) = self.identifier()?;
            match Dtype::by_name(&name) {
                Some(t) => out.push(t),
                None => return Err(self.err(span, format!("unknown datatype {name}"))),
            }
            if !self.eat(Tok::Dot) {
                return Ok(out);
            }
        }
    }

    /// `add|create|delete element [family] table set { elems }`
    pub(crate) fn element_cmd(&mut self, verb: &str) -> PResult<()> {
        let (family, table, tspan) = self.table_spec()?;
        let (name, span) = self.name()?;
        self.cur_table = Some((family, table.clone()));
        // nft's evaluation errors (`setelem_evaluate`), with its suggestions
        let Some(t) = self.rs.table(family, &table) else {
            return Err(self.table_not_found(&table, tspan));
        };
        let Some(set) = t.sets.iter().find(|s| s.name == name) else {
            return Err(self.not_found(crate::misspell::What::Set, &name, span));
        };
        let key = set.key_types();
        let data = if verb == "delete" || verb == "destroy" {
            None
        } else {
            set.data_types()
        };
        let stmts = set.stmts.clone();
        let start = self.peek().span;
        self.elem_spans.clear();
        let elems = self.set_elems(&key, data.as_deref())?;
        let spans = std::mem::take(&mut self.elem_spans);
        let set = self
            .rs
            .table_mut(family, &table)
            .unwrap()
            .sets
            .iter_mut()
            .find(|s| s.name == name)
            .unwrap();
        match verb {
            "delete" | "destroy" => {
                for e in elems {
                    let before = set.elems.len();
                    set.elems.retain(|x| x.parts != e.parts);
                    if before == set.elems.len() && verb == "delete" {
                        return Err(
                            self.err(start, "Could not process rule: No such file or directory")
                        );
                    }
                }
            }
            _ => {
                let elems = with_set_stmts(elems, &stmts);
                if let Err((i, m)) = set.add_elems(elems) {
                    self.sem_err(spans.get(i).copied().unwrap_or(start), m);
                }
            }
        }
        Ok(())
    }
}

/// Elements of a set with a `counter` template each carry a counter.
fn with_set_stmts(mut elems: Vec<Elem>, stmts: &[Stmt]) -> Vec<Elem> {
    if stmts.is_empty() {
        return elems;
    }
    for e in &mut elems {
        let o = e.opts.get_or_insert_with(Default::default);
        for s in stmts {
            match s {
                Stmt::Counter(_) if o.counter.is_none() => o.counter = Some(Default::default()),
                Stmt::Limit(_) if !o.stmts.iter().any(|x| matches!(x, Stmt::Limit(_))) => {
                    o.stmts.push(s.clone())
                }
                Stmt::Quota(_) if !o.stmts.iter().any(|x| matches!(x, Stmt::Quota(_))) => {
                    o.stmts.push(s.clone())
                }
                _ => {}
            }
        }
    }
    elems
}

#[allow(dead_code)]
fn _data_unused(_: &Data) {}
