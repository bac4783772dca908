//! `meta mark set EXPR`, `ct mark set EXPR`, `ip dscp set EXPR`, ...

use crate::expr::value::ValExpr;
use crate::expr::Selector;
use crate::types::ValFmt;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetField {
    pub target: Selector,
    pub value: ValExpr,
}

impl SetField {
    pub fn print(&self, out: &mut String, fmt: ValFmt) {
        self.target.print(out);
        out.push_str(" set ");
        self.value.print(fmt, out);
    }
}
