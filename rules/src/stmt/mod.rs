//! Statements: the things a rule is made of.

pub mod counter;
pub mod verdict;
pub mod vmap;

use crate::expr::Match;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stmt {
    Match(Match),
    Counter(counter::Counter),
    Verdict(verdict::VerdictExpr),
    Vmap(vmap::Vmap),
}
