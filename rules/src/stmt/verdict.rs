//! Verdict statements: `accept`, `drop`, `continue`, `return`, `jump C`, `goto C`.

/// A verdict as written in a rule or map element.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VerdictExpr {
    Accept,
    Drop,
    Continue,
    Return,
    Jump(String),
    Goto(String),
    /// `jump { rules }`: an anonymous chain bound to this rule
    JumpBlock(Vec<crate::ast::Rule>),
    GotoBlock(Vec<crate::ast::Rule>),
}

impl VerdictExpr {
    /// Parses the keyword (and chain name for jump/goto via `target`).
    pub fn keyword(word: &str) -> Option<fn(String) -> VerdictExpr> {
        Some(match word {
            "accept" => |_| VerdictExpr::Accept,
            "drop" => |_| VerdictExpr::Drop,
            "continue" => |_| VerdictExpr::Continue,
            "return" => |_| VerdictExpr::Return,
            "jump" => VerdictExpr::Jump,
            "goto" => VerdictExpr::Goto,
            _ => return None,
        })
    }
    pub fn needs_target(word: &str) -> bool {
        matches!(word, "jump" | "goto")
    }
    pub fn print(&self, out: &mut String) {
        match self {
            VerdictExpr::Accept => out.push_str("accept"),
            VerdictExpr::Drop => out.push_str("drop"),
            VerdictExpr::Continue => out.push_str("continue"),
            VerdictExpr::Return => out.push_str("return"),
            VerdictExpr::Jump(c) => {
                out.push_str("jump ");
                out.push_str(c);
            }
            VerdictExpr::Goto(c) => {
                out.push_str("goto ");
                out.push_str(c);
            }
            // printed by the ruleset printer, which knows the indentation
            VerdictExpr::JumpBlock(_) => out.push_str("jump { }"),
            VerdictExpr::GotoBlock(_) => out.push_str("goto { }"),
        }
    }
    pub fn target(&self) -> Option<&str> {
        match self {
            VerdictExpr::Jump(c) | VerdictExpr::Goto(c) => Some(c),
            _ => None,
        }
    }
}

use crate::lex::Tok;
use crate::parse::{PResult, Parser, RuleCtx};

impl Parser<'_> {
    /// `accept`, `drop`, `continue`, `return`, `jump C`, `goto C`; `None` if the word is none of these.
    pub(crate) fn verdict_stmt(
        &mut self,
        ctx: &mut RuleCtx,
        table: &str,
        w: &str,
    ) -> PResult<Option<super::Stmt>> {
        let Some(make) = VerdictExpr::keyword(w) else {
            return Ok(None);
        };
        self.next();
        let v = if VerdictExpr::needs_target(w) && self.peek().kind == Tok::LBrace {
            self.next();
            let mut rules = Vec::new();
            loop {
                while matches!(self.peek().kind, Tok::Newline | Tok::Semi) {
                    self.next();
                }
                if self.eat(Tok::RBrace) {
                    break;
                }
                let saved = self.cur_table.clone();
                let r = self.rule(ctx.family, table)?;
                self.cur_table = saved;
                rules.push(r);
                let t = self.peek();
                if !matches!(t.kind, Tok::Newline | Tok::Semi | Tok::RBrace) {
                    return Err(self.unexpected(t, Some("newline or semicolon")));
                }
            }
            if w == "jump" {
                VerdictExpr::JumpBlock(rules)
            } else {
                VerdictExpr::GotoBlock(rules)
            }
        } else if VerdictExpr::needs_target(w) {
            let (target, span) = self.name_expecting("'{'")?;
            self.pending_jumps
                .push((ctx.family, table.to_string(), target.clone(), span));
            make(target)
        } else {
            make(String::new())
        };
        Ok(Some(super::Stmt::Verdict(v)))
    }
}
