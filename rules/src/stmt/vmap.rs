//! Verdict maps: `tcp dport vmap { 22 : accept, 80 : jump web }`, `ip saddr vmap @blocklist`.

use crate::expr::{print_anon_map, Elem, Lhs};
use crate::types::{Dtype, ValFmt};

/// A map given inline or by name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MapRef {
    Anon(Vec<Elem>),
    Named(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vmap {
    pub key: Lhs,
    pub map: MapRef,
}

impl Vmap {
    pub fn print(&self, out: &mut String, fmt: ValFmt) {
        self.key.print(out, fmt);
        out.push_str(" vmap ");
        match &self.map {
            MapRef::Anon(elems) => {
                let types = self.key.dtypes();
                print_anon_map(elems, &types, Some(&[Dtype::Verdict]), fmt, out);
            }
            MapRef::Named(n) => {
                out.push('@');
                out.push_str(n);
            }
        }
    }
}
