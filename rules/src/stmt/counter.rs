//! `counter [packets N bytes M]`.

/// The literal values of a counter statement (what the source said; 0 when not given).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}

impl Counter {
    pub fn print(packets: u64, bytes: u64, stateless: bool, out: &mut String) {
        out.push_str("counter");
        if !stateless {
            out.push_str(&format!(" packets {packets} bytes {bytes}"));
        }
    }
}

use crate::parse::{PResult, Parser};

impl Parser<'_> {
    /// `counter [packets N bytes M]`
    pub(crate) fn counter_stmt(&mut self) -> PResult<super::Stmt> {
        self.next();
        let mut c = Counter::default();
        if self.eat_word("packets") {
            c.packets = self.number()?.0;
            self.expect_word("bytes")?;
            c.bytes = self.number()?.0;
        }
        Ok(super::Stmt::Counter(c))
    }
}
