//! `log [prefix "p"] [level L] [group N] [snaplen N] [queue-threshold N] [flags ...]`

use crate::lex::Tok;
use crate::parse::{PResult, Parser};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Log {
    pub prefix: Option<String>,
    pub level: Option<String>,
    pub group: Option<u64>,
    pub snaplen: Option<u64>,
    pub qthreshold: Option<u64>,
    /// tcp sequence, tcp options, ip options, skuid, ether (bit order of the kernel's NF_LOG_*)
    pub flags: u8,
}

pub const TCPSEQ: u8 = 1;
pub const TCPOPT: u8 = 2;
pub const IPOPT: u8 = 4;
pub const UID: u8 = 8;
pub const MAC: u8 = 0x20;
const ALL: u8 = TCPSEQ | TCPOPT | IPOPT | UID | MAC;

const LEVELS: &[&str] = &[
    "emerg", "alert", "crit", "err", "warn", "notice", "info", "debug", "audit",
];

impl Log {
    pub fn print(&self, out: &mut String) {
        out.push_str("log");
        if let Some(p) = &self.prefix {
            out.push_str(&format!(" prefix \"{p}\""));
        }
        if let Some(l) = &self.level {
            if l != "warn" {
                out.push_str(&format!(" level {l}"));
            }
        }
        if let Some(g) = self.group {
            out.push_str(&format!(" group {g}"));
        }
        if let Some(s) = self.snaplen {
            out.push_str(&format!(" snaplen {s}"));
        }
        if let Some(q) = self.qthreshold {
            out.push_str(&format!(" queue-threshold {q}"));
        }
        if self.flags == ALL {
            out.push_str(" flags all");
        } else {
            match self.flags & (TCPSEQ | TCPOPT) {
                0 => {}
                TCPSEQ => out.push_str(" flags tcp sequence"),
                TCPOPT => out.push_str(" flags tcp options"),
                _ => out.push_str(" flags tcp sequence,options"),
            }
            if self.flags & IPOPT != 0 {
                out.push_str(" flags ip options");
            }
            if self.flags & UID != 0 {
                out.push_str(" flags skuid");
            }
            if self.flags & MAC != 0 {
                out.push_str(" flags ether");
            }
        }
    }
}

impl Parser<'_> {
    pub(crate) fn log_stmt(&mut self) -> PResult<super::Stmt> {
        let start = self.next();
        let mut l = Log::default();
        loop {
            let w = self.peek_word().unwrap_or_default();
            match w {
                "prefix" => {
                    self.next();
                    let t = self.peek();
                    if !matches!(t.kind, Tok::Quoted | Tok::Word | Tok::Num) {
                        return Err(self.unexpected(t, None));
                    }
                    self.next();
                    l.prefix = Some(self.string_of(t));
                }
                "level" => {
                    self.next();
                    let (lv, span) = self.identifier()?;
                    let lv = if lv == "warning" {
                        "warn".to_string()
                    } else {
                        lv
                    };
                    if !LEVELS.contains(&lv.as_str()) {
                        return Err(self.err(span, "invalid log level".to_string()));
                    }
                    l.level = Some(lv);
                }
                "group" => {
                    self.next();
                    l.group = Some(self.number()?.0);
                }
                "snaplen" => {
                    self.next();
                    l.snaplen = Some(self.number()?.0);
                }
                "queue-threshold" => {
                    self.next();
                    l.qthreshold = Some(self.number()?.0);
                }
                "flags" => {
                    self.next();
                    let (f, span) = self.identifier()?;
                    match f.as_str() {
                        "all" => l.flags |= ALL,
                        "skuid" => l.flags |= UID,
                        "ether" => l.flags |= MAC,
                        "ip" => {
                            self.expect_word("options")?;
                            l.flags |= IPOPT;
                        }
                        "tcp" => loop {
                            let (o, sp) = self.identifier()?;
                            match o.as_str() {
                                "sequence" => l.flags |= TCPSEQ,
                                "options" => l.flags |= TCPOPT,
                                _ => return Err(self.err(sp, "unknown log flag")),
                            }
                            if !self.eat(Tok::Comma) {
                                break;
                            }
                        },
                        _ => return Err(self.err(span, "unknown log flag")),
                    }
                }
                _ => break,
            }
        }
        let span = start.span;
        if l.level.as_deref() == Some("audit")
            && (l.prefix.is_some()
                || l.group.is_some()
                || l.snaplen.is_some()
                || l.qthreshold.is_some()
                || l.flags != 0)
        {
            self.sem_err(span, "log level audit doesn't support any further options");
        }
        if l.group.is_some() && (l.level.is_some() || l.flags != 0) {
            self.sem_err(span, "flags and level are not supported with group");
        }
        if l.group.is_none() && (l.snaplen.is_some() || l.qthreshold.is_some()) {
            self.sem_err(span, "snaplen and queue-threshold require a group");
        }
        Ok(super::Stmt::Log(Box::new(l)))
    }
}
