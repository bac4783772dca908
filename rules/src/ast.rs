//! The ruleset: tables, chains, rules. This is what `nft list ruleset` shows.

use crate::stmt::verdict::VerdictExpr;
use crate::stmt::Stmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    Ip,
    Ip6,
    Inet,
    Arp,
    Bridge,
    Netdev,
}

impl Family {
    pub fn name(self) -> &'static str {
        match self {
            Family::Ip => "ip",
            Family::Ip6 => "ip6",
            Family::Inet => "inet",
            Family::Arp => "arp",
            Family::Bridge => "bridge",
            Family::Netdev => "netdev",
        }
    }
    pub fn from_name(s: &str) -> Option<Family> {
        Some(match s {
            "ip" => Family::Ip,
            "ip6" => Family::Ip6,
            "inet" => Family::Inet,
            "arp" => Family::Arp,
            "bridge" => Family::Bridge,
            "netdev" => Family::Netdev,
            _ => return None,
        })
    }
}

/// Netfilter hooks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Hook {
    Prerouting,
    Input,
    Forward,
    Output,
    Postrouting,
    Ingress,
    Egress,
}

impl Hook {
    pub fn name(self) -> &'static str {
        match self {
            Hook::Prerouting => "prerouting",
            Hook::Input => "input",
            Hook::Forward => "forward",
            Hook::Output => "output",
            Hook::Postrouting => "postrouting",
            Hook::Ingress => "ingress",
            Hook::Egress => "egress",
        }
    }
    pub fn from_name(s: &str) -> Option<Hook> {
        Some(match s {
            "prerouting" => Hook::Prerouting,
            "input" => Hook::Input,
            "forward" => Hook::Forward,
            "output" => Hook::Output,
            "postrouting" => Hook::Postrouting,
            "ingress" => Hook::Ingress,
            "egress" => Hook::Egress,
            _ => return None,
        })
    }
    /// Is the hook valid for base chains of this family?
    pub fn valid_for(self, f: Family) -> bool {
        use Hook::*;
        match f {
            Family::Ip | Family::Ip6 | Family::Bridge => {
                matches!(self, Prerouting | Input | Forward | Output | Postrouting)
            }
            Family::Inet => matches!(
                self,
                Prerouting | Input | Forward | Output | Postrouting | Ingress
            ),
            Family::Arp => matches!(self, Input | Output),
            Family::Netdev => matches!(self, Ingress | Egress),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChainType {
    Filter,
    Nat,
    Route,
}

impl ChainType {
    pub fn name(self) -> &'static str {
        match self {
            ChainType::Filter => "filter",
            ChainType::Nat => "nat",
            ChainType::Route => "route",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    Accept,
    Drop,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BaseChain {
    pub ty: ChainType,
    pub hook: Hook,
    pub priority: i32,
    pub policy: Policy,
    pub devices: Vec<String>,
}

/// A rule: 40 bytes (its statements in one exact allocation; 100k-rule chains are common).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub handle: u64,
    pub stmts: Box<[Stmt]>,
    pub comment: Option<Box<str>>,
}

#[cfg(target_pointer_width = "64")]
const _: () = assert!(std::mem::size_of::<Rule>() <= 40);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chain {
    pub name: String,
    pub handle: u64,
    pub base: Option<BaseChain>,
    pub rules: Vec<Rule>,
    pub comment: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Table {
    pub family: Family,
    pub name: String,
    pub handle: u64,
    pub flags: Vec<String>,
    pub comment: Option<String>,
    pub objs: Vec<crate::obj::Obj>,
    pub sets: Vec<crate::set::Set>,
    pub flowtables: Vec<crate::flowtable::Flowtable>,
    pub chains: Vec<Chain>,
    /// per-table handle generator (chains, rules, sets share it, like the kernel's)
    pub(crate) next_handle: u64,
}

impl Table {
    pub fn new(family: Family, name: &str, handle: u64) -> Table {
        Table {
            family,
            name: name.to_string(),
            handle,
            flags: Vec::new(),
            comment: None,
            objs: Vec::new(),
            sets: Vec::new(),
            flowtables: Vec::new(),
            chains: Vec::new(),
            next_handle: 1,
        }
    }
    pub fn chain(&self, name: &str) -> Option<&Chain> {
        self.chains.iter().find(|c| c.name == name)
    }
    pub fn set(&self, name: &str) -> Option<&crate::set::Set> {
        self.sets.iter().find(|s| s.name == name)
    }
    pub fn chain_mut(&mut self, name: &str) -> Option<&mut Chain> {
        self.chains.iter_mut().find(|c| c.name == name)
    }
    pub(crate) fn alloc_handle(&mut self) -> u64 {
        let h = self.next_handle;
        self.next_handle += 1;
        h
    }
}

/// A whole ruleset: the result of applying commands to an empty ruleset.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ruleset {
    pub tables: Vec<Table>,
    pub(crate) next_table_handle: u64,
}

impl Ruleset {
    /// What `flush ruleset` leaves of this ruleset (no tables; table handles continue), without copying the
    /// tables first.
    pub fn flushed(&self) -> Ruleset {
        Ruleset {
            tables: Vec::new(),
            next_table_handle: self.next_table_handle,
        }
    }
    pub fn table(&self, family: Family, name: &str) -> Option<&Table> {
        self.tables
            .iter()
            .find(|t| t.family == family && t.name == name)
    }
    pub fn table_mut(&mut self, family: Family, name: &str) -> Option<&mut Table> {
        self.tables
            .iter_mut()
            .find(|t| t.family == family && t.name == name)
    }
    pub(crate) fn alloc_table_handle(&mut self) -> u64 {
        self.next_table_handle += 1;
        self.next_table_handle
    }

    /// Writes `values` (by counter slot) into the counter statements, so that a ruleset built from this one
    /// keeps the counts of the rules it keeps — as the kernel keeps a rule's counter when other rules change.
    /// Slots are in [`Ruleset::counters`] order, which is how [`crate::compile`] numbers them.
    pub fn set_counter_values(&mut self, values: &[crate::CounterValue]) {
        fn visit<'a>(rules: &'a mut [Rule], out: &mut Vec<&'a mut crate::stmt::counter::Counter>) {
            for r in rules {
                for s in &mut r.stmts {
                    match s {
                        Stmt::Counter(c) => out.push(c),
                        Stmt::Verdict(VerdictExpr::JumpBlock(b) | VerdictExpr::GotoBlock(b)) => {
                            visit(b, out)
                        }
                        _ => {}
                    }
                }
            }
        }
        let mut slots = Vec::new();
        for c in self.tables.iter_mut().flat_map(|t| t.chains.iter_mut()) {
            visit(&mut c.rules, &mut slots);
        }
        for (c, v) in slots.into_iter().zip(values) {
            c.packets = v.packets;
            c.bytes = v.bytes;
        }
    }

    /// Visits every counter statement in counter-slot order: tables, chains, rules, statements, the rules
    /// of a binding chain (`jump { ... }`) where it is written. Element counters of sets and named
    /// counter objects are not counter statements.
    pub fn counters(&self) -> impl Iterator<Item = &crate::stmt::counter::Counter> {
        let mut out = Vec::new();
        for c in self.tables.iter().flat_map(|t| t.chains.iter()) {
            collect_counters(&c.rules, &mut out);
        }
        out.into_iter()
    }
}

fn collect_counters<'a>(rules: &'a [Rule], out: &mut Vec<&'a crate::stmt::counter::Counter>) {
    for r in rules {
        for s in &r.stmts {
            match s {
                Stmt::Counter(c) => out.push(c),
                Stmt::Verdict(VerdictExpr::JumpBlock(b) | VerdictExpr::GotoBlock(b)) => {
                    collect_counters(b, out)
                }
                _ => {}
            }
        }
    }
}

/// Counter statements in these rules and their binding chains.
pub(crate) fn count_counters(rules: &[Rule]) -> usize {
    let mut out = Vec::new();
    collect_counters(rules, &mut out);
    out.len()
}

/// Standard priority names (nft's `std_prios`).
pub fn std_prios(f: Family) -> &'static [(&'static str, i32)] {
    match f {
        Family::Bridge => &[
            ("dstnat", -300),
            ("filter", -200),
            ("out", 100),
            ("srcnat", 300),
        ],
        _ => &[
            ("raw", -300),
            ("mangle", -150),
            ("dstnat", -100),
            ("filter", 0),
            ("security", 50),
            ("srcnat", 100),
        ],
    }
}

/// May the named standard priority be used (and printed) for this family and hook?
pub fn std_prio_ok(f: Family, hook: Hook, name: &str) -> bool {
    match f {
        Family::Bridge => match name {
            "dstnat" => hook == Hook::Prerouting,
            "filter" => true,
            "out" => hook == Hook::Output,
            "srcnat" => hook == Hook::Postrouting,
            _ => false,
        },
        Family::Arp | Family::Netdev => name == "filter",
        _ => match name {
            "dstnat" => hook == Hook::Prerouting,
            "srcnat" => hook == Hook::Postrouting,
            _ => true,
        },
    }
}

/// `filter`, `filter + 5`, `raw - 10` or a number, like nft's `prio2str`.
pub fn priority_str(f: Family, hook: Hook, prio: i32, numeric: bool) -> String {
    if !numeric {
        for &(name, v) in std_prios(f) {
            if std_prio_ok(f, hook, name) && (prio - v).abs() <= 10 {
                let d = prio - v;
                return match d {
                    0 => name.to_string(),
                    d if d > 0 => format!("{name} + {d}"),
                    d => format!("{name} - {}", -d),
                };
            }
        }
    }
    prio.to_string()
}
