//! What a table's rules and maps refer to by name: sets and maps (`@s`, `vmap @m`, `map @m`,
//! `add @s …`), chains (`jump c`, verdict map elements), stateful objects (`counter name c`,
//! `ct helper set "h"`, object maps) and flowtables (`flow add @f`). The kernel refuses to delete
//! what is referred to (EBUSY).

use std::collections::HashSet;

use crate::ast::{Rule, Table};
use crate::expr::value::ValExpr;
use crate::expr::{Data, Elem, Part, Rhs, Selector};
use crate::stmt::verdict::VerdictExpr;
use crate::stmt::vmap::MapRef;
use crate::stmt::Stmt;
use crate::types::{Dtype, ObjKind};

/// The names a table's rules and maps use.
#[derive(Default, Debug)]
pub(crate) struct Uses {
    pub sets: HashSet<String>,
    pub chains: HashSet<String>,
    pub objs: HashSet<(ObjKind, String)>,
    pub flowtables: HashSet<String>,
}

/// Everything of `t` that its rules (but those of the chain `skip`) and its maps' elements refer
/// to.
pub(crate) fn table_uses(t: &Table, skip: Option<&str>) -> Uses {
    let mut u = Uses::default();
    for c in t.chains.iter().filter(|c| Some(&*c.name) != skip) {
        u.rules(&c.rules);
    }
    for s in &t.sets {
        let obj_kind = match s.data_types().as_deref() {
            Some([Dtype::Obj(k)]) => Some(*k),
            _ => None,
        };
        for e in &s.elems {
            u.elem_data(e, obj_kind);
        }
    }
    u
}

fn string_of(p: &Part) -> Option<String> {
    match p {
        Part::Val(v) => Some(v.as_str()),
        _ => None,
    }
}

impl Uses {
    fn rules(&mut self, rules: &[Rule]) {
        for r in rules {
            for s in &r.stmts {
                self.stmt(s);
            }
        }
    }

    fn verdict(&mut self, v: &VerdictExpr) {
        match v {
            VerdictExpr::Jump(c) | VerdictExpr::Goto(c) => {
                self.chains.insert(c.clone());
            }
            VerdictExpr::JumpBlock(rules) | VerdictExpr::GotoBlock(rules) => self.rules(rules),
            _ => {}
        }
    }

    /// A map element's data: a verdict's chain, or (in an object map) an object's name.
    fn elem_data(&mut self, e: &Elem, obj_kind: Option<ObjKind>) {
        match e.data.as_deref() {
            Some(Data::Verdict(v)) => self.verdict(v),
            Some(Data::Val(parts)) => {
                if let (Some(k), Some(name)) = (obj_kind, parts.first().and_then(string_of)) {
                    self.objs.insert((k, name));
                }
            }
            None => {}
        }
    }

    fn map_ref(&mut self, m: &MapRef, obj_kind: Option<ObjKind>) {
        match m {
            MapRef::Named(n) => {
                self.sets.insert(n.clone());
            }
            MapRef::Anon(elems) => {
                for e in elems {
                    self.elem_data(e, obj_kind);
                }
            }
        }
    }

    fn val(&mut self, v: &ValExpr) {
        match v {
            ValExpr::Map(k, m, _) => {
                self.val(k);
                self.map_ref(m, None);
            }
            ValExpr::Binop(a, _, b) => {
                self.val(a);
                self.val(b);
            }
            ValExpr::Concat(vs) => vs.iter().for_each(|v| self.val(v)),
            ValExpr::Jhash { key, .. } => self.val(key),
            _ => {}
        }
    }

    fn stmt(&mut self, s: &Stmt) {
        match s {
            Stmt::Match(m) => match &m.right {
                Rhs::SetRef(n) => {
                    self.sets.insert(n.clone());
                }
                Rhs::Set(elems) => elems.iter().for_each(|e| self.elem_data(e, None)),
                Rhs::Elem(_) => {}
            },
            Stmt::Verdict(v) => self.verdict(v),
            Stmt::Vmap(v) => self.map_ref(&v.map, None),
            Stmt::SetField(f) => {
                self.val(&f.value);
                let kind = match &f.target {
                    Selector::Ct { key, .. } => match key.name {
                        "helper" => Some(ObjKind::CtHelper),
                        "timeout" => Some(ObjKind::CtTimeout),
                        "expectation" => Some(ObjKind::CtExpectation),
                        _ => None,
                    },
                    _ => None,
                };
                if let (Some(k), ValExpr::Const(_, p)) = (kind, &f.value) {
                    if let Some(name) = string_of(p) {
                        self.objs.insert((k, name));
                    }
                }
            }
            Stmt::Nat(n) => {
                n.addr.iter().chain(&n.port).for_each(|v| self.val(v));
            }
            Stmt::Dup(d) => {
                self.val(&d.to);
                d.device.iter().for_each(|v| self.val(v));
            }
            Stmt::Queue(q) => self.val(&q.to),
            Stmt::ObjRef(o) => match &o.target {
                ValExpr::Const(_, p) => {
                    if let Some(name) = string_of(p) {
                        self.objs.insert((o.kind, name));
                    }
                }
                ValExpr::Map(k, m, _) => {
                    self.val(k);
                    self.map_ref(m, Some(o.kind));
                }
                other => self.val(other),
            },
            Stmt::SetUpdate(u) => {
                self.sets.insert(u.set.clone());
                self.val(&u.key);
                u.data.iter().for_each(|v| self.val(v));
                u.stmts.iter().for_each(|s| self.stmt(s));
            }
            Stmt::FlowAdd(f) => {
                self.flowtables.insert(f.clone());
            }
            _ => {}
        }
    }
}
