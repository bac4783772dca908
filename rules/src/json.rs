//! `nft -j list ruleset`: the ruleset in libnftables' JSON schema (`libnftables-json(5)`), as nft 1.0.6
//! prints it: one line, jansson's default separators (`", "`, `": "`), tables each followed by their
//! objects, sets and maps, chains, then the chains' rules.
//!
//! Covered: tables, base and regular chains, rules (with comments), named sets and maps with their
//! elements (and `auto-merge`, set statements), flowtables, counter/quota/limit objects, and the statements gateways use: matches on payload, meta and
//! ct fields (values, prefixes, ranges, anonymous sets, `@set` references, concatenations, masks),
//! counters, verdicts, `vmap`, `meta|ct mark set`, `log`, `limit`, `quota`, `reject`, NAT. Anything
//! else is written in the same shape with its nft text where the schema has no better form.

use crate::ast::*;
use crate::expr::value::ValExpr;
use crate::expr::{BinOp, Data, Elem, Lhs, Match, Part, RelOp, Rhs, Selector};
use crate::stmt::verdict::VerdictExpr;
use crate::stmt::Stmt;
use crate::types::{Dtype, Val, ValFmt};
use crate::{CounterValue, PrintOptions};

/// A JSON value.
#[derive(Clone, Debug, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Num(i128),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

fn obj<const N: usize>(kv: [(&str, Json); N]) -> Json {
    Json::Obj(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

fn one(k: &str, v: Json) -> Json {
    Json::Obj(vec![(k.to_string(), v)])
}

fn s(v: &str) -> Json {
    Json::Str(v.to_string())
}

impl Json {
    /// Serialized like jansson's `json_dumps(.., 0)`.
    pub fn write(&self, out: &mut String) {
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Num(n) => out.push_str(&n.to_string()),
            Json::Str(v) => write_str(v, out),
            Json::Arr(a) => {
                out.push('[');
                for (i, v) in a.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    v.write(out);
                }
                out.push(']');
            }
            Json::Obj(o) => {
                out.push('{');
                for (i, (k, v)) in o.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    write_str(k, out);
                    out.push_str(": ");
                    v.write(out);
                }
                out.push('}');
            }
        }
    }
}

fn write_str(v: &str, out: &mut String) {
    out.push('"');
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The ruleset as `nft -j list ruleset` prints it (see the module documentation). With `counters`,
/// slot i's value is written for the i-th counter statement, as in [`crate::print_ruleset`].
pub fn ruleset_json(
    rs: &Ruleset,
    opts: &PrintOptions,
    counters: Option<&[CounterValue]>,
) -> String {
    let mut w = Writer {
        family: Family::Ip,
        fmt: opts.val_fmt(),
        stateless: opts.stateless,
        counters,
        slot: 0,
    };
    let mut items = vec![one(
        "metainfo",
        obj([
            ("version", s("1.0.6")),
            ("release_name", s("Lester Gooch #5")),
            ("json_schema_version", Json::Num(1)),
        ]),
    )];
    for t in &rs.tables {
        w.table(t, &mut items);
    }
    let mut out = String::new();
    one("nftables", Json::Arr(items)).write(&mut out);
    out.push('\n');
    out
}

struct Writer<'a> {
    /// of the table being written
    family: Family,
    fmt: ValFmt,
    stateless: bool,
    counters: Option<&'a [CounterValue]>,
    slot: usize,
}

impl Writer<'_> {
    fn table(&mut self, t: &Table, items: &mut Vec<Json>) {
        self.family = t.family;
        let fam = t.family.name();
        let mut o = vec![
            ("family".to_string(), s(fam)),
            ("name".to_string(), s(&t.name)),
            ("handle".to_string(), Json::Num(t.handle as i128)),
        ];
        if !t.flags.is_empty() {
            o.push((
                "flags".into(),
                Json::Arr(t.flags.iter().map(|f| s(f)).collect()),
            ));
        }
        if let Some(c) = &t.comment {
            o.push(("comment".into(), s(c)));
        }
        items.push(one("table", Json::Obj(o)));
        for ob in &t.objs {
            if let Some(j) = self.object(t, ob) {
                items.push(j);
            }
        }
        for set in t.sets.iter().filter(|s| !s.meter) {
            items.push(self.set(t, set));
        }
        for ft in &t.flowtables {
            let mut o = vec![
                ("family".to_string(), s(fam)),
                ("name".to_string(), s(&ft.name)),
                ("table".to_string(), s(&t.name)),
                ("handle".to_string(), Json::Num(ft.handle as i128)),
            ];
            if let Some(h) = ft.hook {
                o.push(("hook".into(), s(h.name())));
                o.push(("prio".into(), Json::Num(ft.priority as i128)));
            }
            match ft.devices.as_slice() {
                [] => {}
                [d] => o.push(("dev".into(), s(d))),
                ds => o.push(("dev".into(), Json::Arr(ds.iter().map(|d| s(d)).collect()))),
            }
            let flags: Vec<Json> = [(ft.offload, "offload"), (ft.counter, "counter")]
                .iter()
                .filter(|(on, _)| *on)
                .map(|(_, n)| s(n))
                .collect();
            if !flags.is_empty() {
                o.push(("flags".into(), Json::Arr(flags)));
            }
            items.push(one("flowtable", Json::Obj(o)));
        }
        for c in &t.chains {
            let mut o = vec![
                ("family".to_string(), s(fam)),
                ("table".to_string(), s(&t.name)),
                ("name".to_string(), s(&c.name)),
                ("handle".to_string(), Json::Num(c.handle as i128)),
            ];
            if let Some(b) = &c.base {
                o.push(("type".into(), s(b.ty.name())));
                o.push(("hook".into(), s(b.hook.name())));
                match b.devices.as_slice() {
                    [] => {}
                    [d] => o.push(("dev".into(), s(d))),
                    ds => o.push(("dev".into(), Json::Arr(ds.iter().map(|d| s(d)).collect()))),
                }
                o.push(("prio".into(), Json::Num(b.priority as i128)));
                o.push((
                    "policy".into(),
                    s(match b.policy {
                        Policy::Accept => "accept",
                        Policy::Drop => "drop",
                    }),
                ));
            }
            if let Some(cm) = &c.comment {
                o.push(("comment".into(), s(cm)));
            }
            items.push(one("chain", Json::Obj(o)));
        }
        for c in &t.chains {
            for r in &c.rules {
                let mut o = vec![
                    ("family".to_string(), s(fam)),
                    ("table".to_string(), s(&t.name)),
                    ("chain".to_string(), s(&c.name)),
                    ("handle".to_string(), Json::Num(r.handle as i128)),
                ];
                if let Some(cm) = &r.comment {
                    o.push(("comment".into(), s(cm)));
                }
                let expr = self.stmts(&r.stmts);
                o.push(("expr".into(), Json::Arr(expr)));
                items.push(one("rule", Json::Obj(o)));
            }
        }
    }

    fn object(&mut self, t: &Table, ob: &crate::obj::Obj) -> Option<Json> {
        use crate::obj::ObjBody;
        let mut o = vec![
            ("family".to_string(), s(t.family.name())),
            ("name".to_string(), s(&ob.name)),
            ("table".to_string(), s(&t.name)),
            ("handle".to_string(), Json::Num(ob.handle as i128)),
        ];
        if let Some(c) = &ob.comment {
            o.push(("comment".into(), s(c)));
        }
        let kind = match &ob.body {
            ObjBody::Counter(c) => {
                o.push(("packets".into(), Json::Num(c.packets as i128)));
                o.push(("bytes".into(), Json::Num(c.bytes as i128)));
                "counter"
            }
            ObjBody::Quota(q) => {
                o.push(("bytes".into(), Json::Num(q.bytes as i128)));
                o.push(("used".into(), Json::Num(q.used as i128)));
                if q.over {
                    o.push(("inv".into(), Json::Bool(true)));
                }
                "quota"
            }
            ObjBody::Limit(l) => {
                // objects list `per` before `burst`
                let mut f = limit_fields(l);
                if let Some(i) = f.iter().position(|(k, _)| k == "per") {
                    let per = f.remove(i);
                    let at = f.iter().position(|(k, _)| k == "burst").unwrap_or(f.len());
                    f.insert(at, per);
                }
                o.extend(f);
                "limit"
            }
            ObjBody::Secmark(ctx) => {
                o.push(("context".into(), s(ctx)));
                "secmark"
            }
            _ => return None,
        };
        Some(one(kind, Json::Obj(o)))
    }

    fn set(&mut self, t: &Table, set: &crate::set::Set) -> Json {
        let types = set.key_types();
        let mut o = vec![
            ("family".to_string(), s(t.family.name())),
            ("name".to_string(), s(&set.name)),
            ("table".to_string(), s(&t.name)),
            ("type".to_string(), type_json(&types)),
            ("handle".to_string(), Json::Num(set.handle as i128)),
        ];
        let data = set.data_types();
        if let Some(d) = &data {
            o.push(("map".into(), type_json(d)));
        }
        if let Some(p) = &set.policy {
            o.push(("policy".into(), s(p)));
        }
        if let Some(n) = set.size {
            o.push(("size".into(), Json::Num(n as i128)));
        }
        let f = &set.flags;
        let flags: Vec<Json> = [
            (f.constant, "constant"),
            (f.dynamic, "dynamic"),
            (f.interval, "interval"),
            (f.timeout, "timeout"),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, n)| s(n))
        .collect();
        if !flags.is_empty() {
            o.push(("flags".into(), Json::Arr(flags)));
        }
        if let Some(ms) = set.timeout {
            o.push(("timeout".into(), Json::Num((ms / 1000) as i128)));
        }
        if let Some(ms) = set.gc_interval {
            o.push(("gc-interval".into(), Json::Num((ms / 1000) as i128)));
        }
        if set.auto_merge {
            o.push(("auto-merge".into(), Json::Bool(true)));
        }
        if let Some(c) = &set.comment {
            o.push(("comment".into(), s(c)));
        }
        if !set.stmts.is_empty() {
            let stmts = self.stmts(&set.stmts);
            o.push(("stmt".into(), Json::Arr(stmts)));
        }
        if !set.elems.is_empty() {
            let elems = set
                .elems
                .iter()
                .map(|e| self.elem(e, &types, data.as_deref()))
                .collect();
            o.push(("elem".into(), Json::Arr(elems)));
        }
        one(if set.is_map { "map" } else { "set" }, Json::Obj(o))
    }

    /// A set element: key (`*` for the catch-all), with options and, in maps, `[key, data]`.
    fn elem(&mut self, e: &Elem, types: &[Dtype], data: Option<&[Dtype]>) -> Json {
        let mut key = if e.parts.is_empty() {
            s("*")
        } else {
            self.parts(&e.parts, types)
        };
        if let Some(op) = &e.opts {
            let mut o = vec![("val".to_string(), key)];
            if let Some(ms) = op.timeout {
                o.push(("timeout".into(), Json::Num((ms / 1000) as i128)));
            }
            if let Some(ms) = op.expires {
                o.push(("expires".into(), Json::Num((ms / 1000) as i128)));
            }
            if let Some(c) = &op.comment {
                o.push(("comment".into(), s(c)));
            }
            if let Some(c) = &op.counter {
                o.push((
                    "counter".into(),
                    obj([
                        ("packets", Json::Num(c.packets as i128)),
                        ("bytes", Json::Num(c.bytes as i128)),
                    ]),
                ));
            }
            key = one("elem", Json::Obj(o));
        }
        match e.data.as_deref() {
            None => key,
            Some(Data::Verdict(v)) => Json::Arr(vec![key, self.verdict(v)]),
            Some(Data::Val(parts)) => {
                let dt = data.unwrap_or(&[]);
                Json::Arr(vec![key, self.parts(parts, dt)])
            }
        }
    }

    /// A constant of one or more (concatenated) parts.
    fn parts(&self, parts: &[Part], types: &[Dtype]) -> Json {
        let one_part = |i: usize, p: &Part| {
            let t = types.get(i).copied().unwrap_or(Dtype::Integer(32));
            self.part(t, p)
        };
        if parts.len() == 1 {
            one_part(0, &parts[0])
        } else {
            one(
                "concat",
                Json::Arr(
                    parts
                        .iter()
                        .enumerate()
                        .map(|(i, p)| one_part(i, p))
                        .collect(),
                ),
            )
        }
    }

    fn part(&self, t: Dtype, p: &Part) -> Json {
        match p {
            Part::Val(v) => self.val(t, v),
            // `iifname "wan*"`: nft writes the wildcard as a string
            Part::Prefix(v, _) if t == Dtype::Ifname => s(&format!("{}*", v.as_str())),
            Part::Prefix(v, plen) if t.is_addr() => one(
                "prefix",
                obj([("addr", self.val(t, v)), ("len", Json::Num(*plen as i128))]),
            ),
            Part::Prefix(v, plen) => {
                let (lo, hi) = Part::Prefix(*v, *plen).bounds();
                one("range", Json::Arr(vec![self.val(t, &lo), self.val(t, &hi)]))
            }
            Part::Range(a, b) => one("range", Json::Arr(vec![self.val(t, a), self.val(t, b)])),
        }
    }

    /// A value as nft writes it: a number for integer types, a string for addresses, names and
    /// symbols, a list of names for several flags.
    fn val(&self, t: Dtype, v: &Val) -> Json {
        let n = v.to_u128();
        match t {
            Dtype::Mark
            | Dtype::Hex(_)
            | Dtype::Integer(_)
            | Dtype::InetService
            | Dtype::ProtoNum
            | Dtype::Uid
            | Dtype::Gid
            | Dtype::CtLabel
            | Dtype::Time => return Json::Num(n as i128),
            // `fib daddr oif missing`, `tcp option sack exists`
            Dtype::Boolean => return Json::Bool(n != 0),
            t if t.is_bitmask() && n.count_ones() > 1 && !self.fmt.numeric_symbols => {
                let names: Vec<Json> = (0..64)
                    .filter(|b| n & (1 << b) != 0)
                    .map(|b| self.val(t, &Val::from_u128(1 << b, v.len as usize)))
                    .collect();
                return Json::Arr(names);
            }
            _ => {}
        }
        let mut out = String::new();
        t.print(v, self.fmt, &mut out);
        let text = out
            .strip_prefix('"')
            .and_then(|x| x.strip_suffix('"'))
            .unwrap_or(&out);
        if let Ok(n) = text.parse::<i128>() {
            return Json::Num(n);
        }
        if let Some(h) = text.strip_prefix("0x") {
            if let Ok(n) = i128::from_str_radix(h, 16) {
                return Json::Num(n);
            }
        }
        s(text)
    }

    fn stmts(&mut self, stmts: &[Stmt]) -> Vec<Json> {
        stmts.iter().map(|st| self.stmt(st)).collect()
    }

    fn stmt(&mut self, st: &Stmt) -> Json {
        match st {
            Stmt::Match(m) => self.matching(m),
            Stmt::Counter(c) => {
                let v = match self.counters {
                    Some(cs) => cs.get(self.slot).copied().unwrap_or_default(),
                    None => CounterValue {
                        packets: c.packets,
                        bytes: c.bytes,
                    },
                };
                self.slot += 1;
                if self.stateless {
                    one("counter", Json::Null)
                } else {
                    one(
                        "counter",
                        obj([
                            ("packets", Json::Num(v.packets as i128)),
                            ("bytes", Json::Num(v.bytes as i128)),
                        ]),
                    )
                }
            }
            Stmt::Verdict(v) => self.verdict(v),
            Stmt::Vmap(v) => {
                let types = v.key.dtypes();
                let data = match &v.map {
                    crate::stmt::vmap::MapRef::Named(n) => s(&format!("@{n}")),
                    crate::stmt::vmap::MapRef::Anon(elems) => {
                        let items = elems
                            .iter()
                            .map(|e| self.elem(e, &types, Some(&[Dtype::Verdict])))
                            .collect();
                        one("set", Json::Arr(items))
                    }
                };
                one("vmap", obj([("key", self.lhs(&v.key)), ("data", data)]))
            }
            Stmt::SetField(sf) => {
                let t = sf.target.dtype();
                let key = selector(&sf.target);
                let value = self.value_expr(&sf.value, t);
                one("mangle", obj([("key", key), ("value", value)]))
            }
            Stmt::Log(l) => {
                let mut o = Vec::new();
                if let Some(p) = &l.prefix {
                    o.push(("prefix".to_string(), s(p)));
                }
                if let Some(g) = l.group {
                    o.push(("group".into(), Json::Num(g as i128)));
                }
                if let Some(n) = l.snaplen {
                    o.push(("snaplen".into(), Json::Num(n as i128)));
                }
                if let Some(n) = l.qthreshold {
                    o.push(("queue-threshold".into(), Json::Num(n as i128)));
                }
                if let Some(lv) = &l.level {
                    o.push(("level".into(), s(lv)));
                }
                if o.is_empty() {
                    one("log", Json::Null)
                } else {
                    one("log", Json::Obj(o))
                }
            }
            Stmt::Limit(l) => one("limit", Json::Obj(limit_fields(l))),
            Stmt::Quota(q) => {
                let (v, u) = bytes_unit(q.bytes);
                let mut o = vec![
                    ("val".to_string(), Json::Num(v as i128)),
                    ("val_unit".to_string(), s(u)),
                ];
                if !self.stateless && q.used != 0 {
                    let (v, u) = bytes_unit(q.used);
                    o.push(("used".into(), Json::Num(v as i128)));
                    o.push(("used_unit".into(), s(u)));
                }
                if q.over {
                    o.push(("inv".into(), Json::Bool(true)));
                }
                one("quota", Json::Obj(o))
            }
            Stmt::Reject(r) => {
                use crate::stmt::reject::Reject;
                let mut text = String::new();
                r.print(&mut text);
                // `reject with icmp host-unreachable` -> type "icmp", expr "host-unreachable"
                let rest = text.strip_prefix("reject with ").unwrap_or("");
                match r {
                    // the family's default, written out
                    Reject::Default => {
                        let (ty, code) = match self.family {
                            Family::Ip => ("icmp", "port-unreachable"),
                            Family::Ip6 => ("icmpv6", "port-unreachable"),
                            _ => ("icmpx", "port-unreachable"),
                        };
                        one("reject", obj([("type", s(ty)), ("expr", s(code))]))
                    }
                    Reject::TcpReset => one("reject", obj([("type", s("tcp reset"))])),
                    _ => {
                        let (ty, code) = rest.split_once(' ').unwrap_or((rest, ""));
                        one("reject", obj([("type", s(ty)), ("expr", s(code))]))
                    }
                }
            }
            Stmt::Nat(n) => self.nat(n),
            Stmt::Dup(d) => {
                let to_type = match d.fwd_family.unwrap_or(self.family) {
                    Family::Ip if d.fwd_family.is_some() || !d.fwd => Dtype::Ipv4Addr,
                    Family::Ip6 if d.fwd_family.is_some() || !d.fwd => Dtype::Ipv6Addr,
                    _ => Dtype::Ifname,
                };
                let to = self.value_expr(&d.to, to_type);
                let dev = d.device.as_ref().map(|x| self.value_expr(x, Dtype::Ifname));
                if d.fwd {
                    let mut o = Vec::new();
                    match (d.fwd_family, dev) {
                        (Some(f), Some(dev)) => {
                            o.push(("dev".to_string(), dev));
                            o.push(("family".to_string(), s(f.name())));
                            o.push(("addr".to_string(), to));
                        }
                        _ => o.push(("dev".to_string(), to)),
                    }
                    one("fwd", Json::Obj(o))
                } else {
                    let mut o = vec![("addr".to_string(), to)];
                    if let Some(dev) = dev {
                        o.push(("dev".to_string(), dev));
                    }
                    one("dup", Json::Obj(o))
                }
            }
            Stmt::Queue(q) => {
                let mut o = vec![(
                    "num".to_string(),
                    self.value_expr(&q.to, Dtype::Integer(16)),
                )];
                let mut flags = Vec::new();
                if q.bypass {
                    flags.push(s("bypass"));
                }
                if q.fanout {
                    flags.push(s("fanout"));
                }
                match flags.len() {
                    0 => {}
                    1 => o.push(("flags".into(), flags.pop().unwrap())),
                    _ => o.push(("flags".into(), Json::Arr(flags))),
                }
                one("queue", Json::Obj(o))
            }
            Stmt::Notrack => one("notrack", Json::Null),
            Stmt::Connlimit { count, over } => {
                let mut o = vec![("val".into(), Json::Num(*count as i128))];
                if *over {
                    o.push(("inv".into(), Json::Bool(true)));
                }
                one("ct count", Json::Obj(o))
            }
            Stmt::ObjRef(o) => {
                let name = match &o.target {
                    ValExpr::Const(t, Part::Val(v)) => self.val(*t, v),
                    other => self.value_expr(other, Dtype::Str16),
                };
                one(o.kind.name(), name)
            }
            Stmt::SetUpdate(u) if u.meter.is_some() => {
                let types = u.key.dtypes();
                let t = types.first().copied().unwrap_or(Dtype::Integer(32));
                let mut key = self.value_expr(&u.key, t);
                if let Some(ms) = u.timeout {
                    key = one(
                        "elem",
                        obj([("val", key), ("timeout", Json::Num((ms / 1000) as i128))]),
                    );
                }
                // per-element counters are templates: nft writes them without values
                let mut ss: Vec<Json> = (u.stmts.iter())
                    .map(|st| match st {
                        Stmt::Counter(_) => one("counter", Json::Null),
                        other => self.stmts(std::slice::from_ref(other)).remove(0),
                    })
                    .collect();
                let stmt = if ss.len() == 1 {
                    ss.pop().unwrap()
                } else {
                    Json::Arr(ss)
                };
                one(
                    "meter",
                    obj([
                        ("key", key),
                        ("stmt", stmt),
                        ("size", Json::Num(u.meter.unwrap_or(65535) as i128)),
                        ("name", s(&u.set)),
                    ]),
                )
            }
            Stmt::SetUpdate(u) => {
                let types = u.key.dtypes();
                let t = types.first().copied().unwrap_or(Dtype::Integer(32));
                let mut o = vec![
                    ("op".to_string(), s(u.op)),
                    ("elem".to_string(), self.value_expr(&u.key, t)),
                    ("set".to_string(), s(&format!("@{}", u.set))),
                ];
                if !u.stmts.is_empty() {
                    o.push(("stmt".into(), Json::Arr(self.stmts(&u.stmts))));
                }
                one("set", Json::Obj(o))
            }
            Stmt::FlowAdd(n) => one(
                "flow",
                obj([("op", s("add")), ("flowtable", s(&format!("@{n}")))]),
            ),
        }
    }

    fn verdict(&mut self, v: &VerdictExpr) -> Json {
        match v {
            VerdictExpr::Accept => one("accept", Json::Null),
            VerdictExpr::Drop => one("drop", Json::Null),
            VerdictExpr::Continue => one("continue", Json::Null),
            VerdictExpr::Return => one("return", Json::Null),
            VerdictExpr::Jump(c) => one("jump", obj([("target", s(c))])),
            VerdictExpr::Goto(c) => one("goto", obj([("target", s(c))])),
            VerdictExpr::JumpBlock(rules) | VerdictExpr::GotoBlock(rules) => {
                // anonymous chains have no JSON form in nft 1.0.6: their rules, inline
                let kw = if matches!(v, VerdictExpr::JumpBlock(_)) {
                    "jump"
                } else {
                    "goto"
                };
                let rules = rules
                    .iter()
                    .map(|r| Json::Arr(self.stmts(&r.stmts)))
                    .collect();
                one(kw, obj([("chain", Json::Arr(rules))]))
            }
        }
    }

    fn lhs(&self, l: &Lhs) -> Json {
        let base = if l.sels.len() == 1 {
            selector(&l.sels[0])
        } else {
            one("concat", Json::Arr(l.sels.iter().map(selector).collect()))
        };
        match l.binop.as_deref() {
            None => base,
            Some((op, v)) => {
                let t = l.sels[0].dtype();
                let rhs = if matches!(op, BinOp::Shl | BinOp::Shr) {
                    Json::Num(v.to_u128() as i128)
                } else {
                    self.val(t, v)
                };
                one(op.symbol(), Json::Arr(vec![base, rhs]))
            }
        }
    }

    fn matching(&mut self, m: &Match) -> Json {
        let types = m.left.dtypes();
        let bitmask = types.len() == 1 && types[0].is_bitmask();
        let op = match m.op {
            RelOp::Implicit if bitmask && m.left.binop.is_none() => "in",
            RelOp::Implicit => "==",
            RelOp::Bang => "==",
            o => o.symbol(),
        };
        let right = match &m.right {
            Rhs::Elem(e) => self.parts(e, &types),
            Rhs::Set(elems) => one(
                "set",
                Json::Arr(elems.iter().map(|e| self.elem(e, &types, None)).collect()),
            ),
            Rhs::SetRef(n) => s(&format!("@{n}")),
        };
        let (left, right) = if m.op == RelOp::Bang {
            // `tcp flags ! syn`: (flags & syn) == 0
            (
                one("&", Json::Arr(vec![self.lhs(&m.left), right])),
                Json::Num(0),
            )
        } else {
            (self.lhs(&m.left), right)
        };
        one(
            "match",
            obj([("op", s(op)), ("left", left), ("right", right)]),
        )
    }

    /// A value expression (statement arguments); `t` types its constants.
    fn value_expr(&self, v: &ValExpr, t: Dtype) -> Json {
        match v {
            ValExpr::Const(ct, p) => self.part(*ct, p),
            ValExpr::Sel(sel) => selector(sel),
            ValExpr::Binop(l, op, r) => {
                let lt = l.dtypes().first().copied().unwrap_or(t);
                let rj = match &**r {
                    ValExpr::Const(_, Part::Val(x)) if matches!(op, BinOp::Shl | BinOp::Shr) => {
                        Json::Num(x.to_u128() as i128)
                    }
                    other => self.value_expr(other, lt),
                };
                one(op.symbol(), Json::Arr(vec![self.value_expr(l, t), rj]))
            }
            ValExpr::Concat(parts) => one(
                "concat",
                Json::Arr(parts.iter().map(|p| self.value_expr(p, t)).collect()),
            ),
            ValExpr::Map(k, m, data) => {
                let kt = k.dtypes();
                let map = match m {
                    crate::stmt::vmap::MapRef::Named(n) => s(&format!("@{n}")),
                    crate::stmt::vmap::MapRef::Anon(elems) => {
                        let mut w = Writer {
                            family: self.family,
                            fmt: self.fmt,
                            stateless: self.stateless,
                            counters: None,
                            slot: 0,
                        };
                        one(
                            "set",
                            Json::Arr(elems.iter().map(|e| w.elem(e, &kt, Some(data))).collect()),
                        )
                    }
                };
                one("map", obj([("key", self.value_expr(k, t)), ("data", map)]))
            }
            ValExpr::Numgen { .. } | ValExpr::Symhash { .. } => computed(v),
            ValExpr::Jhash {
                key,
                modulus,
                seed,
                offset,
            } => {
                let mut o = vec![
                    ("mod".to_string(), Json::Num(*modulus as i128)),
                    ("expr".to_string(), self.value_expr(key, t)),
                ];
                if let Some(sd) = seed {
                    o.push(("seed".into(), Json::Num(*sd as i128)));
                }
                if *offset != 0 {
                    o.push(("offset".into(), Json::Num(*offset as i128)));
                }
                one("jhash", Json::Obj(o))
            }
        }
    }

    fn nat(&self, n: &crate::stmt::nat::Nat) -> Json {
        use crate::stmt::nat::NatKind;
        let kind = match n.kind {
            NatKind::Snat => "snat",
            NatKind::Dnat => "dnat",
            NatKind::Masquerade => "masquerade",
            NatKind::Redirect => "redirect",
        };
        let at = if n.family == Some("ip6") {
            Dtype::Ipv6Addr
        } else {
            Dtype::Ipv4Addr
        };
        let mut o = Vec::new();
        if n.print_family {
            if let Some(f) = n.family {
                o.push(("family".to_string(), s(f)));
            }
        }
        if let Some(a) = &n.addr {
            o.push(("addr".into(), self.value_expr(a, at)));
        }
        if let Some(p) = &n.port {
            o.push(("port".into(), self.value_expr(p, Dtype::InetService)));
        }
        let mut text = String::new();
        n.print(&mut text, self.fmt);
        let flags: Vec<Json> = ["random", "fully-random", "persistent", "netmap"]
            .iter()
            .filter(|f| {
                text.rsplit(' ')
                    .next()
                    .is_some_and(|last| last.split(',').any(|x| x == **f))
            })
            .map(|f| s(f))
            .collect();
        if n.prefix {
            o.push(("type_flags".into(), s("prefix")));
        }
        match flags.len() {
            0 => {}
            1 => o.push(("flags".into(), flags[0].clone())),
            _ => o.push(("flags".into(), Json::Arr(flags))),
        }
        if o.is_empty() {
            one(kind, Json::Null)
        } else {
            one(kind, Json::Obj(o))
        }
    }
}

/// A byte count in the largest unit that divides it (nft's `get_rate`).
fn bytes_unit(v: u64) -> (u64, &'static str) {
    if v != 0 && v.is_multiple_of(1024 * 1024) {
        (v / (1024 * 1024), "mbytes")
    } else if v != 0 && v.is_multiple_of(1024) {
        (v / 1024, "kbytes")
    } else {
        (v, "bytes")
    }
}

fn limit_fields(l: &crate::stmt::limit::Limit) -> Vec<(String, Json)> {
    let per = match l.unit {
        1 => "second",
        60 => "minute",
        3600 => "hour",
        86400 => "day",
        _ => "week",
    };
    let mut o = vec![("rate".to_string(), Json::Num(l.rate as i128))];
    if l.bytes {
        o.push(("rate_unit".into(), s("bytes")));
    }
    if l.burst != 0 {
        o.push(("burst".into(), Json::Num(l.burst as i128)));
        if l.bytes {
            o.push(("burst_unit".into(), s("bytes")));
        }
    }
    o.push(("per".into(), s(per)));
    if l.over {
        o.push(("inv".into(), Json::Bool(true)));
    }
    o
}

/// A set's (or map's) type: a name, or a list of names for concatenations.
fn type_json(types: &[Dtype]) -> Json {
    if types.len() == 1 {
        s(types[0].name())
    } else {
        Json::Arr(types.iter().map(|t| s(t.name())).collect())
    }
}

/// `numgen`, `jhash` and `symhash` as a match's left side.
fn computed(v: &crate::expr::value::ValExpr) -> Json {
    use crate::expr::value::ValExpr;
    let num = |n: u32| Json::Num(n as i128);
    match v {
        ValExpr::Numgen {
            random,
            modulus,
            offset,
        } => one(
            "numgen",
            obj([
                ("mode", s(if *random { "random" } else { "inc" })),
                ("mod", num(*modulus)),
                ("offset", num(*offset)),
            ]),
        ),
        ValExpr::Jhash {
            key,
            modulus,
            seed,
            offset,
        } => {
            let key = match &**key {
                ValExpr::Sel(x) => selector(x),
                ValExpr::Concat(parts) => {
                    one("concat", Json::Arr(parts.iter().map(computed).collect()))
                }
                other => computed(other),
            };
            let mut o = vec![
                ("mod".to_string(), num(*modulus)),
                ("expr".to_string(), key),
            ];
            if let Some(sd) = seed {
                o.push(("seed".into(), num(*sd)));
            }
            if *offset != 0 {
                o.push(("offset".into(), num(*offset)));
            }
            one("jhash", Json::Obj(o))
        }
        ValExpr::Symhash { modulus, offset } => {
            let mut o = vec![("mod".to_string(), num(*modulus))];
            if *offset != 0 {
                o.push(("offset".into(), num(*offset)));
            }
            one("symhash", Json::Obj(o))
        }
        ValExpr::Sel(x) => selector(x),
        _ => Json::Null,
    }
}

fn selector(sel: &Selector) -> Json {
    match sel {
        Selector::Computed(v) => computed(v),
        Selector::Payload { proto, field } => one(
            "payload",
            obj([("protocol", s(proto.name)), ("field", s(field.name))]),
        ),
        Selector::Raw { base, off, len } => {
            let b = match base {
                crate::expr::payload::Base::Link => "ll",
                crate::expr::payload::Base::Network => "nh",
                crate::expr::payload::Base::Transport => "th",
                _ => "ih",
            };
            one(
                "payload",
                obj([
                    ("base", s(b)),
                    ("offset", Json::Num(*off as i128)),
                    ("len", Json::Num(*len as i128)),
                ]),
            )
        }
        Selector::Meta { key, .. } => one("meta", obj([("key", s(key.name))])),
        Selector::Ct { key, dir, dtype } => {
            let mut o = vec![("key".to_string(), s(key.name))];
            if key.dtype == Dtype::Ipv4Addr {
                let f = if *dtype == Dtype::Ipv6Addr {
                    "ip6"
                } else {
                    "ip"
                };
                o.push(("family".into(), s(f)));
            }
            if let Some(d) = dir {
                o.push(("dir".into(), s(d.name())));
            }
            one("ct", Json::Obj(o))
        }
        Selector::Fib { flags, result } => {
            use crate::expr::FibResult;
            let r = match result {
                FibResult::Oif | FibResult::Check => "oif",
                FibResult::Oifname => "oifname",
                FibResult::Type => "type",
            };
            let names: Vec<Json> = ["saddr", "daddr", "mark", "iif", "oif"]
                .iter()
                .enumerate()
                .filter(|(i, _)| flags & (1 << i) != 0)
                .map(|(_, n)| s(n))
                .collect();
            one("fib", obj([("result", s(r)), ("flags", Json::Arr(names))]))
        }
        Selector::Opt {
            space,
            kind,
            opt,
            field,
        } => {
            let name = match opt {
                Some(o) => s(o.name),
                None => Json::Num(*kind as i128),
            };
            let mut o = vec![("name".to_string(), name)];
            if let Some(f) = field {
                o.push(("field".into(), s(f.name)));
            }
            one(space.prefix(), Json::Obj(o))
        }
        Selector::Inner { .. } | Selector::Other { .. } => {
            // no dedicated form here: the nft text of the expression
            let mut text = String::new();
            sel.print(&mut text);
            let (head, rest) = text.split_once(' ').unwrap_or((&text, ""));
            one(head, s(rest))
        }
    }
}
