//! Statements: the things a rule is made of.

pub mod counter;
pub mod dup;
pub mod dynset;
pub mod limit;
pub mod log;
pub mod nat;
pub mod queue;
pub mod reject;
pub mod set_field;
pub mod verdict;
pub mod vmap;

use crate::expr::Match;

/// A statement. Large variants are boxed: a rule's statements are stored inline, and most are small
/// (counters, verdicts) — 100,000-rule rulesets are common.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stmt {
    Match(Box<Match>),
    Counter(counter::Counter),
    Verdict(verdict::VerdictExpr),
    Vmap(Box<vmap::Vmap>),
    SetField(Box<set_field::SetField>),
    Log(Box<log::Log>),
    Limit(Box<limit::Limit>),
    Quota(limit::Quota),
    Reject(reject::Reject),
    Nat(Box<nat::Nat>),
    Queue(Box<queue::Queue>),
    Dup(Box<dup::Dup>),
    Notrack,
    ObjRef(Box<crate::obj::ObjRef>),
    SetUpdate(Box<dynset::SetUpdate>),
    FlowAdd(String),
    /// `ct count [over] N` (connlimit): matches while the connections counted by this statement,
    /// this one included, are at most N (`over`: more than N).
    Connlimit {
        count: u32,
        over: bool,
    },
}

// a rule's statements are stored inline: 100k-rule rulesets hold ~4 a rule (docs/BENCHMARKS.md)
#[cfg(target_pointer_width = "64")]
const _: () = assert!(std::mem::size_of::<Stmt>() <= 32);
// a boxed match fits a 96-byte allocation (with the allocator's 8-byte header): 2 a rule in 100k-rule
// rulesets, a third of the memory the parser touches
#[cfg(target_pointer_width = "64")]
const _: () = assert!(std::mem::size_of::<Match>() <= 88);
