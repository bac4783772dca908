//! Flowtables: `flowtable f { hook ingress priority filter; devices = { "lo" }; }` and the `flow add @f`
//! statement.

use crate::ast::{priority_str, Family, Hook};
use crate::lex::Tok;
use crate::parse::{PResult, Parser};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Flowtable {
    pub name: String,
    pub handle: u64,
    pub hook: Option<Hook>,
    pub priority: i32,
    pub devices: Vec<String>,
    pub counter: bool,
    pub offload: bool,
}

impl Flowtable {
    pub fn print(&self, family: Family, handles: bool, numeric_prio: bool, out: &mut String) {
        out.push_str(&format!("\tflowtable {} {{", self.name));
        if handles {
            out.push_str(&format!(" # handle {}", self.handle));
        }
        out.push('\n');
        if let Some(h) = self.hook {
            out.push_str(&format!(
                "\t\thook {} priority {}\n",
                h.name(),
                priority_str(family, Hook::Forward, self.priority, numeric_prio)
            ));
        }
        if !self.devices.is_empty() {
            let d: Vec<String> = self.devices.iter().map(|d| format!("\"{d}\"")).collect();
            out.push_str(&format!("\t\tdevices = {{ {} }}\n", d.join(", ")));
        }
        if self.offload {
            out.push_str("\t\tflags offload\n");
        }
        if self.counter {
            out.push_str("\t\tcounter\n");
        }
        out.push_str("\t}\n");
    }
}

impl Parser<'_> {
    pub(crate) fn flowtable_decl(&mut self, family: Family, table: &str) -> PResult<()> {
        let (name, span) = self.name()?;
        let mut ft = Flowtable {
            name: name.clone(),
            handle: 0,
            hook: None,
            priority: 0,
            devices: Vec::new(),
            counter: false,
            offload: false,
        };
        if self.eat(Tok::LBrace) {
            loop {
                while matches!(self.peek().kind, Tok::Newline | Tok::Semi) {
                    self.next();
                }
                if self.eat(Tok::RBrace) {
                    break;
                }
                let t = self.peek();
                let w = self.peek_word().unwrap_or_default();
                self.next();
                match w {
                    "hook" => {
                        let (h, hs) = self.identifier()?;
                        if h != "ingress" {
                            return Err(self.err(hs, format!("unknown flowtable hook {h}")));
                        }
                        ft.hook = Some(Hook::Ingress);
                        self.expect_word("priority")?;
                        ft.priority = self.priority_value(family, Hook::Forward)?;
                    }
                    "devices" => {
                        self.expect(Tok::Eq, "'='")?;
                        ft.devices = self.device_list()?;
                    }
                    "counter" => ft.counter = true,
                    "flags" => {
                        self.expect_word("offload")?;
                        ft.offload = true;
                    }
                    _ => return Err(self.unexpected(t, None)),
                }
            }
        }
        if self.rs.table(family, table).is_none() {
            // nft's evaluation error, at the table's name when the command names it
            return Err(self.table_not_found(table, span));
        }
        let t = self.rs.table_mut(family, table).unwrap();
        if let Some(old) = t.flowtables.iter_mut().find(|f| f.name == name) {
            let h = old.handle;
            for d in ft.devices.drain(..) {
                if !old.devices.contains(&d) {
                    old.devices.push(d);
                }
            }
            old.devices.sort();
            old.handle = h;
        } else {
            ft.handle = t.alloc_handle();
            ft.devices.sort();
            t.flowtables.push(ft);
        }
        Ok(())
    }

    /// `{ "a", "b" }` or a single name.
    pub(crate) fn device_list(&mut self) -> PResult<Vec<String>> {
        let mut devices = Vec::new();
        if !self.eat(Tok::LBrace) {
            devices.push(self.identifier()?.0);
            return Ok(devices);
        }
        loop {
            self.skip_newlines();
            if self.eat(Tok::RBrace) {
                break;
            }
            let (d, _) = self.identifier()?;
            devices.push(d);
            self.skip_newlines();
            if !self.eat(Tok::Comma) {
                self.skip_newlines();
                self.expect(Tok::RBrace, "'}'")?;
                break;
            }
        }
        Ok(devices)
    }
}
