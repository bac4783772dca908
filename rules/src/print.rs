//! The canonical printer: byte-identical to `nft list ruleset`.

use crate::ast::*;
use crate::stmt::Stmt;
use crate::types::ValFmt;
use crate::CounterValue;

/// Output flags, mirroring nft's command line options.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PrintOptions {
    /// `-s`: omit stateful values (`counter` instead of `counter packets N bytes M`)
    pub stateless: bool,
    /// `-a`: print `# handle N`
    pub handles: bool,
    /// `-n`: everything numeric (protocols, priorities, symbolic constants)
    pub numeric: bool,
    /// `-p`: layer-4 protocols as numbers
    pub numeric_proto: bool,
    /// `-y`: chain priorities as numbers
    pub numeric_prio: bool,
    /// list the sets `meter` statements made (`list meters`); the ruleset's listing leaves them out
    pub meters: bool,
    /// an object listing (`list sets`, `list counters`): nft puts no blank line between the blocks
    pub compact: bool,
}

impl PrintOptions {
    pub(crate) fn val_fmt(&self) -> ValFmt {
        ValFmt {
            numeric_proto: self.numeric_proto || self.numeric,
            numeric_symbols: self.numeric,
        }
    }
}

pub(crate) struct Printer<'a> {
    pub opts: &'a PrintOptions,
    pub counters: Option<&'a [CounterValue]>,
    pub slot: usize,
    pub out: String,
    /// indentation (tabs) of the current rule; binding chains nest one deeper
    pub depth: usize,
}

impl Printer<'_> {
    pub fn ruleset(&mut self, rs: &Ruleset) {
        for t in &rs.tables {
            self.table(t);
        }
    }

    fn block_gap(&self) -> &'static str {
        if self.opts.compact {
            ""
        } else {
            "\n"
        }
    }

    fn handle(&mut self, h: u64) {
        if self.opts.handles {
            self.out.push_str(&format!(" # handle {h}"));
        }
    }

    pub fn table(&mut self, t: &Table) {
        self.out
            .push_str(&format!("table {} {} {{", t.family.name(), t.name));
        if self.opts.handles || t.flags.iter().any(|f| f == "owner") {
            self.out.push_str(&format!(" # handle {}", t.handle));
        }
        self.out.push('\n');
        let mut delim = "";
        if !t.flags.is_empty() {
            self.out
                .push_str(&format!("\tflags {}\n", t.flags.join(",")));
            delim = self.block_gap();
        }
        if let Some(c) = &t.comment {
            self.out.push_str(&format!("\tcomment \"{c}\"\n"));
        }
        for o in &t.objs {
            self.out.push_str(delim);
            o.print(self.opts.handles, self.opts.stateless, &mut self.out);
            delim = self.block_gap();
        }
        for s in t.sets.iter().filter(|s| !s.meter || self.opts.meters) {
            self.out.push_str(delim);
            s.print(
                self.opts.handles,
                self.opts.val_fmt(),
                self.opts.stateless,
                &mut self.out,
            );
            delim = self.block_gap();
        }
        for f in &t.flowtables {
            self.out.push_str(delim);
            f.print(
                t.family,
                self.opts.handles,
                self.opts.numeric || self.opts.numeric_prio,
                &mut self.out,
            );
            delim = self.block_gap();
        }
        for c in &t.chains {
            self.out.push_str(delim);
            self.chain(t, c);
            delim = self.block_gap();
        }
        self.out.push_str("}\n");
    }

    pub fn chain(&mut self, t: &Table, c: &Chain) {
        self.out.push_str(&format!("\tchain {} {{", c.name));
        self.handle(c.handle);
        if let Some(cm) = &c.comment {
            self.out.push_str(&format!("\n\t\tcomment \"{cm}\""));
        }
        self.out.push('\n');
        if let Some(b) = &c.base {
            self.out
                .push_str(&format!("\t\ttype {} hook {}", b.ty.name(), b.hook.name()));
            if b.devices.len() == 1 {
                self.out.push_str(&format!(" device \"{}\"", b.devices[0]));
            } else if b.devices.len() > 1 {
                let d: Vec<String> = b.devices.iter().map(|d| format!("\"{d}\"")).collect();
                self.out
                    .push_str(&format!(" devices = {{ {} }}", d.join(", ")));
            }
            let numeric = self.opts.numeric || self.opts.numeric_prio;
            self.out.push_str(&format!(
                " priority {};",
                priority_str(t.family, b.hook, b.priority, numeric)
            ));
            self.out.push_str(match b.policy {
                Policy::Accept => " policy accept;",
                Policy::Drop => " policy drop;",
            });
            self.out.push('\n');
        }
        for r in &c.rules {
            self.out.push_str("\t\t");
            self.rule(r);
            self.handle(r.handle);
            self.out.push('\n');
        }
        self.out.push_str("\t}\n");
    }

    pub fn rule(&mut self, r: &Rule) {
        for (i, s) in r.stmts.iter().enumerate() {
            if i > 0 {
                self.out.push(' ');
            }
            self.stmt(s);
        }
        if let Some(c) = &r.comment {
            self.out.push_str(&format!(" comment \"{c}\""));
        }
    }

    pub fn stmt(&mut self, s: &Stmt) {
        let fmt = self.opts.val_fmt();
        match s {
            Stmt::Match(m) => m.print(&mut self.out, fmt),
            Stmt::Counter(c) => {
                let v = match self.counters {
                    Some(cs) => cs.get(self.slot).copied().unwrap_or_default(),
                    None => CounterValue {
                        packets: c.packets,
                        bytes: c.bytes,
                    },
                };
                self.slot += 1;
                crate::stmt::counter::Counter::print(
                    v.packets,
                    v.bytes,
                    self.opts.stateless,
                    &mut self.out,
                );
            }
            Stmt::Verdict(
                crate::stmt::verdict::VerdictExpr::JumpBlock(rules)
                | crate::stmt::verdict::VerdictExpr::GotoBlock(rules),
            ) => {
                let kw = if matches!(
                    s,
                    Stmt::Verdict(crate::stmt::verdict::VerdictExpr::JumpBlock(_))
                ) {
                    "jump"
                } else {
                    "goto"
                };
                self.out.push_str(kw);
                self.out.push_str(" {\n");
                self.depth += 1;
                for r in rules {
                    for _ in 0..self.depth {
                        self.out.push('\t');
                    }
                    self.rule(r);
                    self.out.push('\n');
                }
                self.depth -= 1;
                for _ in 0..self.depth {
                    self.out.push('\t');
                }
                self.out.push('}');
            }
            Stmt::Verdict(v) => v.print(&mut self.out),
            Stmt::Vmap(v) => v.print(&mut self.out, fmt),
            Stmt::SetField(v) => v.print(&mut self.out, fmt),
            Stmt::Log(v) => v.print(&mut self.out),
            Stmt::Limit(v) => v.print(&mut self.out),
            Stmt::Quota(v) => v.print(self.opts.stateless, &mut self.out),
            Stmt::Reject(v) => v.print(&mut self.out),
            Stmt::Nat(v) => v.print(&mut self.out, fmt),
            Stmt::Queue(v) => v.print(&mut self.out, fmt),
            Stmt::Dup(v) => v.print(&mut self.out, fmt),
            Stmt::Notrack => self.out.push_str("notrack"),
            Stmt::ObjRef(o) => o.print(&mut self.out, fmt),
            Stmt::SetUpdate(u) => u.print(&mut self.out, fmt, self.opts.stateless),
            Stmt::FlowAdd(n) => self.out.push_str(&format!("flow add @{n}")),
            Stmt::Connlimit { count, over } => self.out.push_str(&format!(
                "ct count {}{count}",
                if *over { "over " } else { "" }
            )),
        }
    }
}
