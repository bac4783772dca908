//! Expressions: things that load a value from a packet (selectors) and the constants they are
//! compared with.

pub mod ct;
pub mod hash;
pub mod meta;
pub mod opt;
pub mod other;
pub mod parse;
pub mod payload;
pub mod value;

use crate::types::{Dtype, Val};

/// The names of a static table grouped by first byte: a lookup compares only the few names that
/// share it (selector names are looked up for every match of a ruleset). Within a group table order
/// is kept, so the first of equal names is found, as a linear search would.
pub(crate) struct NameIndex {
    /// names starting with byte `b` are `order[start[b]..start[b + 1]]`
    start: [u16; 257],
    order: Box<[u16]>,
}

impl NameIndex {
    pub(crate) fn new<'a>(names: impl Iterator<Item = &'a str>) -> NameIndex {
        let firsts: Vec<u8> = names
            .map(|n| n.as_bytes().first().copied().unwrap_or(0))
            .collect();
        let mut order: Vec<u16> = (0..firsts.len() as u16).collect();
        // stable: table order within a group
        order.sort_by_key(|&i| firsts[i as usize]);
        let mut start = [0u16; 257];
        for &f in &firsts {
            start[f as usize + 1] += 1;
        }
        for b in 0..256 {
            start[b + 1] += start[b];
        }
        NameIndex {
            start,
            order: order.into(),
        }
    }

    /// The index of the first entry named `name` (`name_of` gives an entry's name).
    #[inline]
    pub(crate) fn find<'a>(&self, name: &str, name_of: impl Fn(usize) -> &'a str) -> Option<usize> {
        // no table has an empty name
        let b = *name.as_bytes().first()? as usize;
        let group = &self.order[self.start[b] as usize..self.start[b + 1] as usize];
        // names are short: bytes compared in line (no call to memcmp)
        let same =
            |a: &str| a.len() == name.len() && a.bytes().zip(name.bytes()).all(|(x, y)| x == y);
        group
            .iter()
            .map(|&i| i as usize)
            .find(|&i| same(name_of(i)))
    }
}

/// Something that loads a value from the packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selector {
    /// a header inside a tunnel: `vxlan ip saddr`, `gre tcp dport` (not evaluated in rules)
    Inner {
        /// the tunnel protocol (its name is printed)
        tunnel: &'static payload::Proto,
        sel: Box<Selector>,
    },
    /// `fib saddr . iif oif`: a routing lookup (evaluated by the dataplane; here it never matches)
    Fib { flags: u8, result: FibResult },
    /// `@th,16,16`: raw payload bits
    Raw {
        base: payload::Base,
        off: u16,
        len: u16,
    },
    /// `tcp option NAME [FIELD]`, `sctp chunk NAME [FIELD]`; no field = presence (boolean)
    Opt {
        space: opt::Space,
        kind: u8,
        opt: Option<&'static opt::Opt>,
        field: Option<&'static opt::OptField>,
    },
    Payload {
        proto: &'static payload::Proto,
        field: &'static payload::Field,
    },
    Meta {
        key: &'static meta::Key,
        qualified: bool,
    },
    Ct {
        key: &'static ct::Key,
        dir: Option<ct::Dir>,
        dtype: Dtype,
    },
    /// parsed and printed, not evaluated here (`socket mark`, `osf name`, `ipsec in reqid`, ...: see
    /// [`other`]): the printed text and the datatype
    Other { text: Box<str>, dtype: Dtype },
    /// a number computed from the packet: `numgen inc mod 2`, `jhash ip saddr mod 4 seed 0x1`,
    /// `symhash mod 2` (a 32-bit integer)
    Computed(Box<value::ValExpr>),
}

impl Selector {
    pub fn dtype(&self) -> Dtype {
        match self {
            Selector::Opt { field, .. } => field.map(|f| f.dtype).unwrap_or(Dtype::Boolean),
            Selector::Inner { sel, .. } => sel.dtype(),
            Selector::Fib { result, .. } => match result {
                FibResult::Oif => Dtype::Integer(32),
                FibResult::Oifname => Dtype::Ifname,
                FibResult::Type => Dtype::FibAddrType,
                FibResult::Check => Dtype::Boolean,
            },
            Selector::Raw { len, .. } => Dtype::Hex((*len).min(128) as u8),
            Selector::Payload { field, .. } => field.dtype,
            Selector::Meta { key, .. } => key.dtype,
            Selector::Ct { dtype, .. } => *dtype,
            Selector::Other { dtype, .. } => *dtype,
            Selector::Computed(_) => Dtype::Integer(32),
        }
    }

    pub fn print(&self, out: &mut String) {
        match self {
            Selector::Computed(v) => v.print(crate::types::ValFmt::default(), out),
            Selector::Inner { tunnel, sel } => {
                out.push_str(tunnel.name);
                out.push(' ');
                sel.print(out);
            }
            Selector::Fib { flags, result } => {
                out.push_str("fib ");
                let names = ["saddr", "daddr", "mark", "iif", "oif"];
                let mut first = true;
                for (i, n) in names.iter().enumerate() {
                    if flags & (1 << i) != 0 {
                        if !first {
                            out.push_str(" . ");
                        }
                        out.push_str(n);
                        first = false;
                    }
                }
                out.push(' ');
                out.push_str(match result {
                    FibResult::Oif => "oif",
                    FibResult::Oifname => "oifname",
                    FibResult::Type => "type",
                    FibResult::Check => "check",
                });
            }
            Selector::Raw { base, off, len } => {
                let b = match base {
                    payload::Base::Link => "ll",
                    payload::Base::Network => "nh",
                    payload::Base::Transport => "th",
                    _ => "ih",
                };
                out.push_str(&format!("@{b},{off},{len}"));
            }
            Selector::Opt {
                space,
                kind,
                opt,
                field,
            } => {
                out.push_str(space.prefix());
                out.push(' ');
                match opt {
                    Some(o) => out.push_str(o.name),
                    None => out.push_str(&kind.to_string()),
                }
                if let Some(f) = field {
                    out.push(' ');
                    out.push_str(f.name);
                }
            }
            Selector::Payload { proto, field } => {
                out.push_str(proto.name);
                out.push(' ');
                out.push_str(field.name);
            }
            Selector::Meta { key, .. } => {
                if !key.unqualified_print {
                    out.push_str("meta ");
                }
                out.push_str(key.name);
            }
            Selector::Other { text, .. } => out.push_str(text),
            Selector::Ct { key, dir, dtype } => {
                out.push_str("ct ");
                if let Some(d) = dir {
                    out.push_str(d.name());
                    out.push(' ');
                }
                if key.dtype == Dtype::Ipv4Addr {
                    // nft >= 1.1 names the family of conntrack addresses
                    out.push_str(if *dtype == Dtype::Ipv6Addr {
                        "ip6 "
                    } else {
                        "ip "
                    });
                }
                out.push_str(key.name);
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FibResult {
    Oif,
    Oifname,
    Type,
    /// presence (`exists` / `missing`)
    Check,
}

/// Selectors of a match (one, or several concatenated): inline when there is one (24 bytes).
pub type Sels = Few<Selector>;

/// Parts of a constant (one, or one per concatenated component): inline when there is one (40 bytes).
pub type Parts = Few<Part>;

/// One value inline, or none or several in a boxed slice: no capacity word, and no room for more than
/// one inline (a match's selector and value are stored in every match of a 100k-rule ruleset, and are
/// nearly always one each). Derefs to `[T]`.
#[derive(Clone)]
pub struct Few<T>(FewRepr<T>);

#[derive(Clone)]
enum FewRepr<T> {
    One(T),
    /// none or several; never exactly one
    Many(Box<[T]>),
}

impl<T> Few<T> {
    pub const fn one(p: T) -> Few<T> {
        Few(FewRepr::One(p))
    }
    pub fn new() -> Few<T> {
        Few(FewRepr::Many(Box::new([])))
    }
    /// Like [`Few::new`]: the room is not kept (concatenations grow one part at a time, rarely).
    pub fn with_capacity(_n: usize) -> Few<T> {
        Few::new()
    }
    pub fn push(&mut self, p: T) {
        *self = match std::mem::replace(self, Few::new()) {
            Few(FewRepr::Many(b)) if b.is_empty() => Few::one(p),
            Few(FewRepr::One(a)) => Few(FewRepr::Many(Box::new([a, p]))),
            Few(FewRepr::Many(b)) => {
                let mut v = b.into_vec();
                v.push(p);
                Few(FewRepr::Many(v.into_boxed_slice()))
            }
        }
    }
    pub fn pop(&mut self) -> Option<T> {
        let (rest, last) = match std::mem::replace(self, Few::new()) {
            Few(FewRepr::One(a)) => (Few::new(), Some(a)),
            Few(FewRepr::Many(b)) => {
                let mut v = b.into_vec();
                let last = v.pop();
                (v.into_iter().collect(), last)
            }
        };
        *self = rest;
        last
    }
    pub fn as_slice(&self) -> &[T] {
        match &self.0 {
            FewRepr::One(p) => std::slice::from_ref(p),
            FewRepr::Many(b) => b,
        }
    }
    pub fn as_mut_slice(&mut self) -> &mut [T] {
        match &mut self.0 {
            FewRepr::One(p) => std::slice::from_mut(p),
            FewRepr::Many(b) => b,
        }
    }
}

impl<T> Default for Few<T> {
    fn default() -> Few<T> {
        Few::new()
    }
}

impl<T> std::ops::Deref for Few<T> {
    type Target = [T];
    #[inline]
    fn deref(&self) -> &[T] {
        self.as_slice()
    }
}

impl<T> std::ops::DerefMut for Few<T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut [T] {
        self.as_mut_slice()
    }
}

impl<T: PartialEq> PartialEq for Few<T> {
    fn eq(&self, o: &Few<T>) -> bool {
        self.as_slice() == o.as_slice()
    }
}

impl<T: Eq> Eq for Few<T> {}

impl<T: std::fmt::Debug> std::fmt::Debug for Few<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

impl<T> From<T> for Few<T> {
    fn from(p: T) -> Few<T> {
        Few::one(p)
    }
}

impl<T> FromIterator<T> for Few<T> {
    fn from_iter<I: IntoIterator<Item = T>>(it: I) -> Few<T> {
        let mut it = it.into_iter();
        let Some(a) = it.next() else {
            return Few::new();
        };
        match it.next() {
            None => Few::one(a),
            Some(b) => {
                let mut v = vec![a, b];
                v.extend(it);
                Few(FewRepr::Many(v.into_boxed_slice()))
            }
        }
    }
}

impl<'a, T> IntoIterator for &'a Few<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.as_slice().iter()
    }
}

impl Parts {
    /// `or_flags`: print multi-bit flag values as `a | b` (set elements, explicit `==`/`!=`)
    /// rather than `a,b` (implicit flag tests).
    pub fn print_ex(
        &self,
        types: &[Dtype],
        fmt: crate::types::ValFmt,
        or_flags: bool,
        out: &mut String,
    ) {
        for (i, p) in self.iter().enumerate() {
            if i > 0 {
                out.push_str(" . ");
            }
            let t = types.get(i).copied().unwrap_or(Dtype::Integer(32));
            match p {
                Part::Val(v) if or_flags && t.is_bitmask() => print_flags_or(t, v, fmt, out),
                _ => p.print(t, fmt, out),
            }
        }
    }
}

/// The left side of a match: one selector or a concatenation, optionally masked (`ct mark & 0xff`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lhs {
    pub sels: Sels,
    pub binop: Option<Box<(BinOp, Val)>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    And,
    Or,
    Xor,
    Shl,
    Shr,
}

impl BinOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::And => "&",
            BinOp::Or => "|",
            BinOp::Xor => "^",
            BinOp::Shl => "<<",
            BinOp::Shr => ">>",
        }
    }
}

impl Lhs {
    pub fn dtypes(&self) -> smallvec::SmallVec<[Dtype; 2]> {
        self.sels.iter().map(|s| s.dtype()).collect()
    }
    pub fn print(&self, out: &mut String, fmt: crate::types::ValFmt) {
        for (i, s) in self.sels.iter().enumerate() {
            if i > 0 {
                out.push_str(" . ");
            }
            s.print(out);
        }
        if let Some((op, v)) = self.binop.as_deref() {
            out.push(' ');
            out.push_str(op.symbol());
            out.push(' ');
            let t = self.sels[0].dtype();
            if t.is_bitmask() && *op == BinOp::And {
                let n = v.to_u64().count_ones();
                if n > 1 {
                    out.push('(');
                }
                print_flags_or(t, v, fmt, out);
                if n > 1 {
                    out.push(')');
                }
                return;
            }
            if matches!(op, BinOp::Shl | BinOp::Shr) {
                out.push_str(&v.to_u128().to_string());
            } else {
                t.print(v, fmt, out);
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelOp {
    /// no operator written: equality, or "any of these bits" for bitmask types
    Implicit,
    Eq,
    Ne,
    Lt,
    Gt,
    Le,
    Ge,
    /// `tcp flags ! syn,ack`: none of these bits set
    Bang,
}

impl RelOp {
    pub fn symbol(self) -> &'static str {
        match self {
            RelOp::Implicit => "",
            RelOp::Eq => "==",
            RelOp::Ne => "!=",
            RelOp::Lt => "<",
            RelOp::Gt => ">",
            RelOp::Le => "<=",
            RelOp::Ge => ">=",
            RelOp::Bang => "!",
        }
    }
}

/// One component of a constant: a value, a prefix or a range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    Val(Val),
    Prefix(Val, u32),
    Range(Val, Val),
}

impl Part {
    /// Lowest and highest value covered.
    pub fn bounds(&self) -> (Val, Val) {
        match *self {
            Part::Val(v) => (v, v),
            Part::Prefix(v, plen) => v.prefix_bounds(plen),
            Part::Range(a, b) => (a, b),
        }
    }
    pub fn is_single(&self) -> bool {
        matches!(self, Part::Val(_))
    }
    pub fn print(&self, t: Dtype, fmt: crate::types::ValFmt, out: &mut String) {
        match self {
            Part::Val(v) => t.print(v, fmt, out),
            Part::Prefix(v, _) if matches!(t, Dtype::Ifname) => {
                out.push('"');
                out.push_str(&v.as_str());
                out.push_str("*\"");
            }
            Part::Prefix(v, plen) => {
                t.print(v, fmt, out);
                out.push('/');
                out.push_str(&plen.to_string());
            }
            Part::Range(a, b) if t == Dtype::Time => {
                out.push_str(&format!("{}s-{}s", a.to_u64() / 1000, b.to_u64() / 1000));
            }
            Part::Range(a, b) => {
                // ranges print numerically for symbolic types
                let f = crate::types::ValFmt {
                    numeric_symbols: true,
                    numeric_proto: true,
                };
                t.print(a, if t.is_addr() { fmt } else { f }, out);
                out.push('-');
                t.print(b, if t.is_addr() { fmt } else { f }, out);
            }
        }
    }
}

/// A constant element (one part per concatenated component), possibly mapping to data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Elem {
    pub parts: Parts,
    pub data: Option<Box<Data>>,
    pub opts: Option<Box<ElemOpts>>,
}

/// What a map element maps to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Data {
    Verdict(crate::stmt::verdict::VerdictExpr),
    Val(Vec<Part>),
}

/// Per-element attributes (`timeout`, `expires`, `comment`, counters).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ElemOpts {
    pub timeout: Option<u64>,
    pub expires: Option<u64>,
    pub comment: Option<String>,
    pub counter: Option<crate::stmt::counter::Counter>,
    /// other per-element stateful statements (`limit rate ...`, `quota ...`), printed before the counter
    pub stmts: Vec<crate::stmt::Stmt>,
}

impl Elem {
    pub fn single(p: Part) -> Elem {
        Elem {
            parts: Parts::one(p),
            data: None,
            opts: None,
        }
    }
    /// Key, element options and mapped data: `1.2.3.4 counter packets 0 bytes 0 timeout 1h comment "x" : accept`.
    pub fn print_full(&self, f: &ElemFmt<'_>, out: &mut String) {
        if self.parts.is_empty() {
            out.push('*');
        } else {
            self.parts.print_ex(f.key, f.val, true, out);
        }
        if let Some(o) = &self.opts {
            // nft's set_elem_expr_print: statements, then timeout, expires and comment
            for st in &o.stmts {
                out.push(' ');
                match st {
                    crate::stmt::Stmt::Limit(l) => l.print(out),
                    crate::stmt::Stmt::Quota(q) => q.print(f.stateless, out),
                    crate::stmt::Stmt::Counter(c) => {
                        crate::stmt::counter::Counter::print(c.packets, c.bytes, f.stateless, out)
                    }
                    _ => {}
                }
            }
            if let Some(c) = &o.counter {
                out.push(' ');
                crate::stmt::counter::Counter::print(c.packets, c.bytes, f.stateless, out);
            }
            if let Some(t) = o.timeout {
                out.push_str(" timeout ");
                crate::types::print_time(t, out);
            }
            if let Some(t) = o.expires {
                out.push_str(" expires ");
                crate::types::print_time(t, out);
            }
            if let Some(c) = &o.comment {
                out.push_str(&format!(" comment \"{c}\""));
            }
        }
        if let Some(d) = &self.data {
            out.push_str(" : ");
            match &**d {
                Data::Verdict(v) => v.print(out),
                Data::Val(parts) => {
                    let types = f.data.unwrap_or(&[]);
                    for (j, p) in parts.iter().enumerate() {
                        if j > 0 {
                            out.push_str(" . ");
                        }
                        p.print(
                            types.get(j).copied().unwrap_or(Dtype::Integer(32)),
                            f.val,
                            out,
                        );
                    }
                }
            }
        }
    }

    /// Sort key: big-endian bytes of the lower bounds (inline up to 32 bytes: sorting compares keys
    /// without allocating).
    pub fn sort_key(&self) -> smallvec::SmallVec<[u8; 32]> {
        let mut k = smallvec::SmallVec::new();
        for p in &self.parts {
            k.extend_from_slice(p.bounds().0.bytes());
        }
        k
    }
}

/// How to print an element: key types, data types (maps), value format.
pub struct ElemFmt<'a> {
    pub key: &'a [Dtype],
    pub data: Option<&'a [Dtype]>,
    pub val: crate::types::ValFmt,
    pub stateless: bool,
}

/// The right side of a match.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rhs {
    /// a value (one part per concatenated component)
    Elem(Parts),
    /// anonymous set `{ a, b-c, d/e }`
    Set(Vec<Elem>),
    /// named set `@name`
    SetRef(String),
}

/// `LHS [op] RHS`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Match {
    pub left: Lhs,
    pub op: RelOp,
    pub right: Rhs,
}

impl Match {
    pub fn print(&self, out: &mut String, fmt: crate::types::ValFmt) {
        self.left.print(out, fmt);
        let types = self.left.dtypes();
        let bitmask = types.len() == 1 && types[0].is_bitmask();
        let show_eq = match self.op {
            RelOp::Implicit => false,
            RelOp::Eq => {
                (bitmask && matches!(self.right, Rhs::Elem(_))) || self.left.binop.is_some()
            }
            _ => true,
        };
        if show_eq {
            out.push(' ');
            out.push_str(self.op.symbol());
        }
        out.push(' ');
        match &self.right {
            Rhs::Elem(parts)
                if bitmask
                    && self.left.binop.is_some()
                    && matches!(parts.as_slice(), [Part::Val(_)]) =>
            {
                if let [Part::Val(v)] = parts.as_slice() {
                    print_flags_or(types[0], v, fmt, out);
                }
            }
            Rhs::Elem(parts) => {
                parts.print_ex(&types, fmt, matches!(self.op, RelOp::Eq | RelOp::Ne), out)
            }
            Rhs::Set(elems) => print_anon_set(elems, &types, fmt, out),
            Rhs::SetRef(n) => {
                out.push('@');
                out.push_str(n);
            }
        }
    }
}

/// `{ a, b }` on one line, sorted by value.
/// Flags joined with ` | ` (`fin | syn`), as nft prints bitmask operands of `&`.
pub fn print_flags_or(t: Dtype, v: &Val, fmt: crate::types::ValFmt, out: &mut String) {
    let n = v.to_u64();
    if n == 0 || n.count_ones() == 1 {
        t.print(v, fmt, out);
        return;
    }
    let mut first = true;
    for bit in 0..64 {
        if n & (1 << bit) != 0 {
            if !first {
                out.push_str(" | ");
            }
            first = false;
            t.print(&Val::from_u128(1 << bit, v.len as usize), fmt, out);
        }
    }
}

/// `{ a, b }` on one line (anonymous sets), elements in the order given.
pub fn print_anon_set(
    elems: &[Elem],
    types: &[Dtype],
    fmt: crate::types::ValFmt,
    out: &mut String,
) {
    print_anon_map(elems, types, None, fmt, out)
}

/// `{ a : x, b : y }` on one line.
pub fn print_anon_map(
    elems: &[Elem],
    types: &[Dtype],
    data: Option<&[Dtype]>,
    fmt: crate::types::ValFmt,
    out: &mut String,
) {
    let ef = ElemFmt {
        key: types,
        data,
        val: fmt,
        stateless: false,
    };
    out.push_str("{ ");
    for (i, e) in elems.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        e.print_full(&ef, out);
    }
    out.push_str(" }");
}

#[cfg(test)]
mod name_index_tests {
    /// The indexed lookups find what a linear search of the tables finds, names or not.
    #[test]
    fn lookups_agree_with_a_linear_search() {
        let mut probes: Vec<String> = Vec::new();
        for p in super::payload::PROTOS {
            probes.push(p.name.to_string());
        }
        for k in super::meta::KEYS {
            probes.push(k.name.to_string());
        }
        for n in probes.clone() {
            probes.push(format!("{n}x"));
            probes.push(n[..n.len() - 1].to_string());
            probes.push(n.to_uppercase());
        }
        probes.extend(["", "\u{e9}", "zz", "i", "ip6x"].map(String::from));
        for n in &probes {
            let lin = super::payload::PROTOS.iter().find(|p| p.name == n);
            let got = super::payload::proto(n);
            assert_eq!(
                lin.map(|p| p as *const _),
                got.map(|p| p as *const _),
                "proto {n:?}"
            );
            let lin = super::meta::KEYS.iter().find(|k| k.name == n);
            let got = super::meta::key(n);
            assert_eq!(
                lin.map(|k| k as *const _),
                got.map(|k| k as *const _),
                "meta key {n:?}"
            );
        }
    }
}
