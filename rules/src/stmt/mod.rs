//! Statements: the things a rule is made of.

pub mod counter;
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

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stmt {
    Match(Match),
    Counter(counter::Counter),
    Verdict(verdict::VerdictExpr),
    Vmap(vmap::Vmap),
    SetField(set_field::SetField),
    Log(log::Log),
    Limit(limit::Limit),
    Quota(limit::Quota),
    Reject(reject::Reject),
    Nat(nat::Nat),
    Queue(queue::Queue),
    Notrack,
    ObjRef(crate::obj::ObjRef),
    SetUpdate(dynset::SetUpdate),
    FlowAdd(String),
}
