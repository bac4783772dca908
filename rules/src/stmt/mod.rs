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

/// A statement. A rule's statements are stored inline, in one allocation: matches (most statements, at
/// least one in nearly every rule) too, so that a rule is one allocation, not one plus one per match;
/// the other large variants are boxed — 100,000-rule rulesets are common.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stmt {
    Match(Match),
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

// a rule's statements are stored inline: 100k-rule rulesets hold ~3.25 a rule, ~2 of them matches
// (docs/BENCHMARKS.md)
#[cfg(target_pointer_width = "64")]
const _: () = assert!(std::mem::size_of::<Stmt>() <= 80);
#[cfg(target_pointer_width = "64")]
const _: () = assert!(std::mem::size_of::<Match>() <= 80);
