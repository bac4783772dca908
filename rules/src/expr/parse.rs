//! Parsing and checking of matches: `SELECTOR [binop VALUE] [op] RHS`.

use super::value::ValExpr;
use super::*;
use crate::ast::Family;
use crate::diag::Span;
use crate::lex::Tok;
use crate::parse::{DepFact, PResult, Parser, RuleCtx};
use crate::stmt::Stmt;
use crate::types::{self, Dtype, Val};

impl Parser<'_> {
    pub(crate) fn starts_selector(&self, w: &str) -> bool {
        // the usual first: a protocol (`ip`, `tcp`)
        payload::proto(w).is_some()
            || w == "fib"
            || matches!(
                w,
                "socket" | "osf" | "exthdr" | "numgen" | "jhash" | "symhash"
            )
            || w == "meta"
            || w == "ct"
            || meta::key(w).is_some_and(|k| k.unqualified_parse)
    }

    /// A selector (`ip saddr`, `meta mark`, `ct state`, `iifname`), with dependency/conflict checks.
    pub(crate) fn selector(&mut self, ctx: &mut RuleCtx) -> PResult<(Selector, Span)> {
        if matches!(self.peek_word(), Some("numgen" | "jhash" | "symhash")) {
            let start = self.peek().span;
            let v = self.vx_primary(ctx, crate::types::Dtype::Integer(32))?;
            return Ok((Selector::Computed(Box::new(v)), start.to(self.prev)));
        }
        let t = self.next();
        if t.kind == Tok::At {
            let base = match &self.text(t)[1..] {
                "ll" => payload::Base::Link,
                "nh" => payload::Base::Network,
                "th" => payload::Base::Transport,
                "ih" => payload::Base::Inner,
                _ => return Err(self.unexpected(t, None)),
            };
            self.expect(Tok::Comma, "comma")?;
            let (off, _) = self.number()?;
            self.expect(Tok::Comma, "comma")?;
            let (len, ls) = self.number()?;
            if len == 0 || len > 128 || off > 0xffff {
                self.sem_err(t.span.to(ls), "raw payload offset/length out of range");
            }
            return Ok((
                Selector::Raw {
                    base,
                    off: off as u16,
                    len: len.clamp(1, 128) as u16,
                },
                t.span.to(ls),
            ));
        }
        if t.kind != Tok::Word {
            return Err(self.unexpected(t, None));
        }
        let w = self.text(t);
        if other::STARTS.contains(&w) {
            // `t` is consumed: look at what follows it
            let n = self.peek();
            let n = if n.kind == Tok::Word {
                self.text(n)
            } else {
                ""
            };
            let fits = match w {
                "socket" | "osf" | "exthdr" => true,
                "ipsec" => matches!(n, "in" | "out"),
                "rt" => matches!(n, "nexthop" | "ip" | "ip6" | "mtu" | "ipsec"),
                "srh" => n == "sid",
                _ => false,
            };
            if fits {
                return self.other_selector(ctx, w, t.span);
            }
        }
        if w == "fib" {
            let mut flags = 0u8;
            loop {
                let (f, fs) = self.identifier()?;
                let bit = match f.as_str() {
                    "saddr" => 1,
                    "daddr" => 2,
                    "mark" => 4,
                    "iif" => 8,
                    "oif" => 16,
                    _ => return Err(self.err(fs, format!("unknown fib flag {f}"))),
                };
                flags |= bit;
                if !self.eat(Tok::Dot) {
                    break;
                }
            }
            let (r, rs) = self.identifier()?;
            let mut result = match r.as_str() {
                "oif" => FibResult::Oif,
                "oifname" => FibResult::Oifname,
                "type" => FibResult::Type,
                "check" => FibResult::Check,
                _ => return Err(self.err(rs, format!("unknown fib result {r}"))),
            };
            if result == FibResult::Oif && matches!(self.peek_word(), Some("exists" | "missing")) {
                result = FibResult::Check;
            }
            let span = t.span.to(rs);
            let addr = flags & 3;
            if addr == 0 || addr == 3 {
                self.sem_err(span, "fib: need either saddr or daddr");
            }
            if flags & 8 != 0 && flags & 16 != 0 {
                self.sem_err(span, "fib: iif and oif are mutually exclusive");
            }
            if flags & 16 != 0 && result != FibResult::Oif {
                self.sem_err(span, "fib: oif flag is only valid with oif result");
            }
            return Ok((Selector::Fib { flags, result }, span));
        }
        // (the next word looked at for these two only)
        let space = match w {
            "tcp" if self.peek_word() == Some("option") => Some(opt::Space::TcpOption),
            "sctp" if self.peek_word() == Some("chunk") => Some(opt::Space::SctpChunk),
            _ => None,
        };
        if let Some(space) = space {
            self.next();
            let n = self.peek();
            let name = if matches!(n.kind, Tok::Word | Tok::Num) {
                self.text(n)
            } else {
                ""
            };
            let (kind, o) = if let Some(k) = types::parse_number(name) {
                if k > 255 {
                    self.sem_err(n.span, format!("value {k} exceeds valid range 0-255"));
                }
                (
                    k as u8,
                    space
                        .by_kind(k as u8)
                        .filter(|o| !o.name.ends_with(|c: char| c.is_ascii_digit())),
                )
            } else {
                match space.lookup(name) {
                    Some(o) => (o.kind, Some(o)),
                    None => return Err(self.unexpected(n, None)),
                }
            };
            self.next();
            let mut span = t.span.to(n.span);
            let mut field = None;
            if let (Some(o), Some(fw)) = (o, self.peek_word()) {
                if let Some(f) = o.fields.iter().find(|f| f.name == fw) {
                    let ft = self.next();
                    span = span.to(ft.span);
                    field = Some(f);
                } else if !matches!(fw, "exists" | "missing" | "set")
                    && !self.starts_selector(fw)
                    && crate::stmt::verdict::VerdictExpr::keyword(fw).is_none()
                    && fw != "counter"
                {
                    let ft = self.peek();
                    return Err(self.unexpected(ft, None));
                }
            }
            let proto = payload::proto(if space == opt::Space::TcpOption {
                "tcp"
            } else {
                "sctp"
            })
            .unwrap();
            self.payload_deps(ctx, proto, "", span)?;
            return Ok((
                Selector::Opt {
                    space,
                    kind,
                    opt: o,
                    field,
                },
                span,
            ));
        }
        // tunnels: `vxlan vni 10`, `vxlan ip saddr ...`, `gre tcp dport ...`, `gretap ether saddr ...`
        if matches!(w, "vxlan" | "geneve" | "gre" | "gretap") {
            let n = self.peek_word().unwrap_or_default();
            let own_field = payload::proto(w).is_some_and(|p| p.field(n).is_some());
            let udp_port = match w {
                "vxlan" => Some(4789),
                "geneve" => Some(6081),
                _ => None,
            };
            if let Some(_port) = udp_port {
                if ctx.l4.map(|(_, p)| p) != Some(17) {
                    self.sem_err(
                        t.span,
                        format!("{w}: missing udp dport match for the tunnel"),
                    );
                }
            }
            if !own_field {
                let mut inner = RuleCtx::new(Family::Netdev);
                let first = self.peek();
                let (sel, span) = self.selector(&mut inner)?;
                if w == "gre"
                    && matches!(&sel, Selector::Payload { proto, .. } if proto.base == payload::Base::Link)
                {
                    self.sem_err(
                        first.span.to(span),
                        "gre carries no link layer header; use gretap",
                    );
                }
                if w == "gre" || w == "gretap" {
                    let gre = payload::proto("gre").unwrap();
                    self.payload_deps(ctx, gre, "", t.span)?;
                }
                return Ok((
                    Selector::Inner {
                        tunnel: payload::proto(w).unwrap(),
                        sel: Box::new(sel),
                    },
                    t.span.to(span),
                ));
            }
        }
        if let Some(p) = payload::proto(w) {
            let f = self.peek();
            let fname = if f.kind == Tok::Word {
                self.text(f)
            } else {
                ""
            };
            let (field, span) = match p.field(fname) {
                Some(field) => {
                    self.next();
                    (field, t.span.to(f.span))
                }
                None => {
                    // two-word fields: `arp saddr ip`
                    let f2 = self.peek2();
                    let two = if f2.kind == Tok::Word {
                        format!("{fname} {}", self.text(f2))
                    } else {
                        String::new()
                    };
                    match p.field(&two) {
                        Some(field) => {
                            self.next();
                            self.next();
                            (field, t.span.to(f2.span))
                        }
                        None => return Err(self.unexpected(f, None)),
                    }
                }
            };
            self.payload_deps(ctx, p, field.name, span)?;
            return Ok((Selector::Payload { proto: p, field }, span));
        }
        if w == "meta" {
            let k = self.peek();
            let kname = if k.kind == Tok::Word {
                self.text(k)
            } else {
                ""
            };
            let Some(key) = meta::key(kname) else {
                return Err(self.unexpected(k, None));
            };
            self.next();
            return Ok((
                Selector::Meta {
                    key,
                    qualified: true,
                },
                t.span.to(k.span),
            ));
        }
        if w == "ct" {
            let mut dir = None;
            if self.eat_word("original") {
                dir = Some(ct::Dir::Original);
            } else if self.eat_word("reply") {
                dir = Some(ct::Dir::Reply);
            }
            // `ct original ip saddr`: the address family, written
            let mut fam = None;
            let k0 = self.peek();
            if k0.kind == Tok::Word && matches!(self.text(k0), "ip" | "ip6") {
                let n = self.peek2();
                if n.kind == Tok::Word && matches!(self.text(n), "saddr" | "daddr") {
                    fam = Some(self.text(k0));
                    self.next();
                }
            }
            let k = self.peek();
            let kname = if k.kind == Tok::Word {
                self.text(k)
            } else {
                ""
            };
            let Some(key) = ct::key(kname) else {
                return Err(self.unexpected(k, None));
            };
            self.next();
            let span = t.span.to(k.span);
            if key.dir == ct::DirRule::Required && dir.is_none() {
                return Err(self.err(
                    span,
                    format!("ct {kname} requires a direction (original or reply)"),
                ));
            }
            if key.dir == ct::DirRule::Never && dir.is_some() {
                return Err(self.err(span, format!("ct {kname} does not take a direction")));
            }
            let mut dtype = key.dtype;
            if dtype == Dtype::Ipv4Addr {
                let l3 = ctx.l3.filter(|l| matches!(*l, "ip" | "ip6"));
                let f = match (fam, l3) {
                    (Some(f), Some(l3)) if f != l3 => {
                        return Err(self.err(
                            span,
                            format!("conflicting protocols specified: {l3} vs. {f}"),
                        ))
                    }
                    (Some(f), _) => f,
                    (None, Some(l3)) => {
                        // only a lone address compared with a value may leave the family implied
                        let before = self.srcs[t.span.src as usize].text[..t.span.lo as usize]
                            .trim_end();
                        if before.ends_with('.') || self.peek().kind == Tok::Dot || self.is_word("map")
                        {
                            return Err(self.err(
                                span,
                                format!("specify the address family: ct {} {l3} {kname}", dir.map(|d| d.name()).unwrap_or("original")),
                            ));
                        }
                        // `meta nfproto ipv4 ct original saddr ...` lists as `ct original ip saddr ...`
                        if ctx.family == Family::Inet {
                            let nf = if l3 == "ip" { 2 } else { 10 };
                            self.kill_dep(ctx, DepFact::NfProto(nf));
                        }
                        l3
                    }
                    (None, None) => {
                        return Err(self.err(
                            span,
                            "missing l3 protocol: use `ct original ip saddr` or a `meta nfproto` match first",
                        ))
                    }
                };
                dtype = if f == "ip6" {
                    Dtype::Ipv6Addr
                } else {
                    Dtype::Ipv4Addr
                };
            }
            return Ok((Selector::Ct { key, dir, dtype }, span));
        }
        if let Some(key) = meta::key(w).filter(|k| k.unqualified_parse) {
            return Ok((
                Selector::Meta {
                    key,
                    qualified: false,
                },
                t.span,
            ));
        }
        Err(self.unexpected(t, None))
    }

    fn payload_deps(
        &mut self,
        ctx: &mut RuleCtx,
        p: &'static payload::Proto,
        field_name: &str,
        span: Span,
    ) -> PResult<()> {
        let conflict = |me: &Self, a: &str| {
            me.err(
                span,
                format!("conflicting protocols specified: {a} vs. {}", p.name),
            )
        };
        match p.layer {
            payload::Layer::Link => {
                if matches!(ctx.family, Family::Ip | Family::Ip6 | Family::Inet) {
                    self.kill_dep(ctx, DepFact::IifType(1));
                }
                if p.name == "ether" {
                    ctx.ll_ether = true;
                }
                if p.name == "vlan" {
                    // nft: the ether header is followed by something known not to be vlan
                    if ctx.ll_ether && !ctx.vlan_seen && ctx.ll_next_vlan == Some(false) {
                        return Err(conflict(self, "ether"));
                    }
                    ctx.vlan_seen = true;
                    self.kill_dep(ctx, DepFact::EtherType(0x8100));
                }
            }
            payload::Layer::Exthdr => {
                if let Some(l3) = ctx.l3 {
                    if l3 != "ip6" {
                        return Err(conflict(self, l3));
                    }
                }
                self.kill_dep(ctx, DepFact::NfProto(10));
            }
            payload::Layer::AnyTransport => {}
            payload::Layer::Network { ethertype, nfproto } => {
                ctx.ll_next_vlan = Some(false);
                if let Some(l3) = ctx.l3 {
                    if l3 != p.name {
                        return Err(conflict(self, l3));
                    }
                    self.kill_dep(ctx, DepFact::NfProto(nfproto));
                    self.kill_dep(ctx, DepFact::EtherType(ethertype));
                } else {
                    if ctx.family == Family::Inet && p.name == "arp" {
                        return Err(conflict(self, "inet"));
                    }
                    let fact = if ctx.family == Family::Inet {
                        DepFact::NfProto(nfproto)
                    } else {
                        DepFact::EtherType(ethertype)
                    };
                    self.kill_dep(ctx, fact);
                    ctx.l3 = Some(p.name);
                }
            }
            payload::Layer::Transport { ipproto, l3 } => {
                if let Some((name, n)) = ctx.l4 {
                    if n == 255 && name == "{set}" {
                        // a set of protocols: only the generic `th` header is unambiguous
                        if p.name != "th" {
                            return Err(self.err(
                                span,
                                format!("conflicting protocols specified: {{set}} vs. {}", p.name),
                            ));
                        }
                    } else if n != ipproto {
                        return Err(conflict(self, name));
                    }
                }
                if let (Some(need), Some(have)) = (l3, ctx.l3) {
                    if need != have && ctx.family == Family::Inet {
                        return Err(conflict(self, have));
                    }
                }
                self.kill_dep(ctx, DepFact::L4Meta(ipproto));
                if matches!(ctx.family, Family::Ip | Family::Ip6) {
                    self.kill_dep(ctx, DepFact::L4Header(ipproto));
                }
                match (l3, ctx.family) {
                    (Some("ip"), Family::Inet) => self.kill_dep(ctx, DepFact::NfProto(2)),
                    (Some("ip6"), Family::Inet) => self.kill_dep(ctx, DepFact::NfProto(10)),
                    _ => {}
                }
                match ctx.family {
                    Family::Ip => self.kill_dep(ctx, DepFact::EtherType(0x0800)),
                    Family::Ip6 => self.kill_dep(ctx, DepFact::EtherType(0x86dd)),
                    _ => {}
                }
                if let Some(need) = icmp_field_type(p.name, field_name) {
                    if let Some(has) = ctx.icmp_type {
                        if !icmp_type_has_field(need, has) {
                            return Err(self.err(
                                span,
                                format!("incompatible icmp match: rule has {has}, need {need}"),
                            ));
                        }
                    }
                    ctx.icmp_type = Some(need);
                    // `icmp type redirect icmp gateway 22` lists as `icmp gateway 22` (the match is
                    // the field's dependency); not the echo fields', whose dependency is a set
                    if !matches!(need, 8 | 128) {
                        self.kill_dep(ctx, DepFact::IcmpType(need));
                    }
                }
                if matches!(field_name, "id" | "sequence")
                    && matches!(p.name, "icmp" | "icmpv6")
                    && !ctx.icmp_type_seen
                {
                    let t = if p.name == "icmp" {
                        Dtype::IcmpType
                    } else {
                        Dtype::Icmpv6Type
                    };
                    let (a, b) = if p.name == "icmp" { (0, 8) } else { (128, 129) };
                    let field = p.field("type").unwrap();
                    ctx.pre.push(Stmt::Match(Match {
                        left: Lhs {
                            sels: Sels::one(Selector::Payload { proto: p, field }),
                            binop: None,
                        },
                        op: RelOp::Implicit,
                        right: Rhs::Set(vec![
                            Elem::single(Part::Val(Val::from_u128(a, t.bytes()))),
                            Elem::single(Part::Val(Val::from_u128(b, t.bytes()))),
                        ]),
                    }));
                    ctx.icmp_type_seen = true;
                }
                if field_name == "type" && matches!(p.name, "icmp" | "icmpv6") {
                    ctx.icmp_type_seen = true;
                }
                ctx.l4 = Some((p.name, ipproto));
                ctx.l4_span.get_or_insert(span);
            }
        }
        Ok(())
    }

    fn kill_dep(&mut self, ctx: &mut RuleCtx, fact: DepFact) {
        if let Some((idx, f)) = ctx.dep {
            if f == fact && idx + 1 == ctx.nstmts {
                ctx.kill.push(idx);
                ctx.dep = None;
            }
        }
    }

    fn binop(&mut self) -> Option<BinOp> {
        let t = self.peek();
        let op = match t.kind {
            Tok::Amp => BinOp::And,
            Tok::Pipe => BinOp::Or,
            Tok::Caret => BinOp::Xor,
            Tok::Shl => BinOp::Shl,
            Tok::Shr => BinOp::Shr,
            Tok::Word => match self.text(t) {
                "and" => BinOp::And,
                "or" => BinOp::Or,
                "xor" => BinOp::Xor,
                "lshift" => BinOp::Shl,
                "rshift" => BinOp::Shr,
                _ => return None,
            },
            _ => return None,
        };
        self.next();
        Some(op)
    }

    fn relop(&mut self) -> RelOp {
        let t = self.peek();
        let op = match t.kind {
            Tok::EqEq => RelOp::Eq,
            Tok::Ne => RelOp::Ne,
            Tok::Lt => RelOp::Lt,
            Tok::Gt => RelOp::Gt,
            Tok::Le => RelOp::Le,
            Tok::Ge => RelOp::Ge,
            Tok::Bang => RelOp::Bang,
            Tok::Word => match self.text(t) {
                "eq" => RelOp::Eq,
                "ne" => RelOp::Ne,
                "lt" => RelOp::Lt,
                "gt" => RelOp::Gt,
                "le" => RelOp::Le,
                "ge" => RelOp::Ge,
                _ => return RelOp::Implicit,
            },
            _ => return RelOp::Implicit,
        };
        self.next();
        op
    }

    /// `SELECTOR[. SELECTOR...] [binop V] [op] RHS`
    pub(crate) fn match_stmt(&mut self, ctx: &mut RuleCtx) -> PResult<Stmt> {
        let (sel, start) = self.selector(ctx)?;
        // the kernel has the bridge port's names in bridge tables only
        if matches!(&sel, Selector::Meta { key, .. } if matches!(key.name, "ibrname" | "obrname"))
            && ctx.family != Family::Bridge
        {
            return Err(self.err(start, "Could not process rule: Operation not supported"));
        }
        let mut sels = Sels::one(sel);
        while self.peek().kind == Tok::Dot {
            self.next();
            let (s, _) = self.selector(ctx)?;
            sels.push(s);
        }
        let mut left = Lhs { sels, binop: None };
        if let Some(op) = self.binop() {
            if left.sels.len() > 1 {
                let t = self.peek();
                return Err(self.err(t.span, "Binary operation on concatenation is not supported"));
            }
            let t = left.sels[0].dtype();
            let (part, span) = match op {
                BinOp::Shl | BinOp::Shr => {
                    let (n, span) = self.number()?;
                    (Part::Val(Val::from_u128(n as u128, t.bytes())), span)
                }
                _ if self.peek().kind == Tok::LParen => {
                    let open = self.next();
                    let v = self.flag_list(t)?;
                    let close = self.expect(Tok::RParen, "')'")?;
                    (Part::Val(v), open.span.to(close.span))
                }
                _ if t.is_bitmask() => {
                    let sp = self.peek().span;
                    (Part::Val(self.flag_list(t)?), sp)
                }
                _ => self.value(t)?,
            };
            let Part::Val(v) = part else {
                return Err(self.err(span, "Binary operation needs a value"));
            };
            left.binop = Some(Box::new((op, v)));
        }
        // one selector (most matches): its type in an array, no SmallVec built
        let (one, many);
        let types: &[Dtype] = if let [s] = &left.sels[..] {
            one = [s.dtype()];
            &one
        } else {
            many = left.dtypes();
            &many
        };
        if self.is_word("set") && left.sels.len() == 1 && left.binop.is_none() {
            let set_tok = self.next();
            let target = left.sels.pop().unwrap();
            // nft's grammar sets no ct key that takes a direction but `zone`; of the others the
            // kernel refuses those it only reads
            let ct_key = match &target {
                Selector::Ct { key, dir, .. } => Some((key.name, dir.is_some())),
                _ => None,
            };
            if let Some((k, _)) = ct_key.filter(|(k, dir)| *dir && *k != "zone") {
                if matches!(k, "saddr" | "daddr" | "proto-src" | "proto-dst") {
                    return Err(self.unexpected(set_tok, None));
                }
            }
            if matches!(
                target,
                Selector::Inner { .. } | Selector::Fib { .. } | Selector::Other { .. }
            ) {
                let t = self.peek();
                self.sem_err(t.span, "this expression cannot be set");
            }
            let value = self.value_expr(ctx, types)?;
            if let Some((k, _)) = ct_key {
                if matches!(
                    k,
                    "state"
                        | "direction"
                        | "status"
                        | "expiration"
                        | "l3proto"
                        | "protocol"
                        | "id"
                        | "bytes"
                        | "packets"
                        | "avgpkt"
                ) {
                    return Err(self.err(
                        start.to(self.prev),
                        "Could not process rule: Operation not supported",
                    ));
                }
            }
            if matches!(value, ValExpr::Const(_, Part::Range(..) | Part::Prefix(..))) {
                let t = self.peek();
                self.sem_err(t.span, "a set statement needs a single value");
            }
            ctx.dep = None;
            return Ok(Stmt::SetField(Box::new(crate::stmt::set_field::SetField {
                target,
                value,
            })));
        }
        if self.eat_word("vmap") {
            self.invalid_value = (matches!(
                &left.sels[..],
                [Selector::Ct { key, .. }] if matches!(key.name, "proto-src" | "proto-dst")
            ) && ctx.l4.is_none()
                && !ctx.ct_l4)
                .then_some(start);
            let t = self.peek();
            let map = if t.kind == Tok::At {
                self.invalid_value = None;
                self.next();
                let name = self.at_name(t)?;
                self.check_set_ref(&name, types, t.span, true)?;
                crate::stmt::vmap::MapRef::Named(name)
            } else {
                let start = self.peek().span;
                let elems = self.set_elems(types, Some(&[Dtype::Verdict]));
                self.invalid_value = None;
                let elems = elems?;
                if types.len() == 1 {
                    let mut iv: Vec<(u128, u128)> = elems
                        .iter()
                        .filter(|e| !e.parts.is_empty())
                        .map(|e| {
                            let (lo, hi) = e.parts[0].bounds();
                            (lo.to_u128(), hi.to_u128())
                        })
                        .collect();
                    iv.sort();
                    if iv.windows(2).any(|w| w[1].0 <= w[0].1) {
                        self.sem_err(start, "conflicting intervals specified");
                    }
                }
                crate::stmt::vmap::MapRef::Anon(normalize_anon_set(elems, types))
            };
            ctx.dep = None;
            return Ok(Stmt::Vmap(Box::new(crate::stmt::vmap::Vmap {
                key: left,
                map,
            })));
        }
        // `ct original proto-src 22` needs a transport protocol earlier in the rule: without one
        // the key's type is nft's "invalid" and no value parses
        self.invalid_value = (matches!(
            &left.sels[..],
            [Selector::Ct { key, .. }] if matches!(key.name, "proto-src" | "proto-dst")
        ) && ctx.l4.is_none()
            && !ctx.ct_l4)
            .then_some(start);
        let op = self.relop();
        let right = self.rhs(types);
        self.invalid_value = None;
        let right = right?;
        if matches!(op, RelOp::Lt | RelOp::Gt | RelOp::Le | RelOp::Ge)
            && !matches!(right, Rhs::Elem(_))
        {
            let t = self.peek();
            return Err(self.err(t.span, "Relational expression requires a single value"));
        }
        if op == RelOp::Bang && left.binop.is_some() {
            let t = self.peek();
            self.sem_err(t.span, "`!` cannot be combined with a mask");
        }
        if let Some(mask) = self.pending_mask.take() {
            left.binop = Some(Box::new((BinOp::And, mask)));
        }
        let op = if left.binop.is_some() && op == RelOp::Implicit {
            RelOp::Eq
        } else {
            op
        };
        let mut m = Match { left, op, right };
        simplify(&mut m);
        self.record_facts(ctx, &m);
        if ctx.l4.is_some() && ctx.l4_span.is_none() {
            ctx.l4_span = Some(start.to(self.prev));
        }
        Ok(Stmt::Match(m))
    }

    /// Remembers protocol facts an explicit match establishes (`meta l4proto tcp`, ...).
    fn record_facts(&mut self, ctx: &mut RuleCtx, m: &Match) {
        if m.left.sels.len() != 1
            || m.left.binop.is_some()
            || !matches!(m.op, RelOp::Implicit | RelOp::Eq)
        {
            return;
        }
        // the protocol after the ether header (see `RuleCtx::ll_next_vlan`)
        let ethertype = match &m.left.sels[0] {
            Selector::Meta { key, .. } => key.name == "protocol",
            Selector::Payload { proto, field } => (proto.name, field.name) == ("ether", "type"),
            _ => false,
        };
        if ethertype {
            let is_vlan =
                |e: &[Part]| matches!(e, [Part::Val(v)] if matches!(v.to_u64(), 0x8100 | 0x88a8));
            ctx.ll_next_vlan = match &m.right {
                Rhs::Elem(e) => Some(is_vlan(e)),
                Rhs::Set(elems) => Some(elems.iter().any(|e| is_vlan(&e.parts))),
                Rhs::SetRef(_) => ctx.ll_next_vlan,
            };
        }
        if let Rhs::Set(_) = &m.right {
            // `meta l4proto { tcp, udp }`: some transport protocol, not one in particular
            let is_l4 = match &m.left.sels[0] {
                Selector::Meta { key, .. } => key.name == "l4proto",
                Selector::Payload { proto, field } => {
                    matches!(
                        (proto.name, field.name),
                        ("ip", "protocol") | ("ip6", "nexthdr")
                    )
                }
                _ => false,
            };
            if is_l4 && ctx.l4.is_none() {
                ctx.l4 = Some(("{set}", 255));
            }
            if matches!(&m.left.sels[0], Selector::Ct { key, .. } if key.name == "protocol")
                && matches!(ctx.l3, Some("ip" | "ip6"))
            {
                ctx.ct_l4 = true;
            }
            return;
        }
        let Rhs::Elem(parts) = &m.right else {
            return;
        };
        let [Part::Val(v)] = parts.as_slice() else {
            return;
        };
        let n = v.to_u64();
        // (nft's `ct protocol` gives the context only where the network protocol is known)
        if matches!(&m.left.sels[0], Selector::Ct { key, .. } if key.name == "protocol")
            && matches!(ctx.l3, Some("ip" | "ip6"))
            && types::rlookup(types::PROTOCOLS, n).is_some()
        {
            ctx.ct_l4 = true;
            // nft's context now has the transport protocol: later headers must agree with it
            if ctx.l4.is_none() {
                ctx.l4 = Some((
                    types::rlookup(types::PROTOCOLS, n).unwrap_or("unknown"),
                    n as u8,
                ));
            }
        }
        let fact = match &m.left.sels[0] {
            Selector::Meta { key, .. } => match key.name {
                "l4proto" => {
                    ctx.l4 = Some((
                        types::rlookup(types::PROTOCOLS, n).unwrap_or("unknown"),
                        n as u8,
                    ));
                    DepFact::L4Meta(n as u8)
                }
                "nfproto" => {
                    if matches!(n, 2 | 10) {
                        ctx.ll_next_vlan = Some(false);
                    }
                    ctx.l3 = match n {
                        2 => Some("ip"),
                        10 => Some("ip6"),
                        _ => ctx.l3,
                    };
                    DepFact::NfProto(n as u8)
                }
                "protocol" => {
                    set_l3_from_ethertype(ctx, n);
                    DepFact::EtherType(n as u16)
                }
                "iiftype" => DepFact::IifType(n as u16),
                _ => return,
            },
            Selector::Payload { proto, field } => match (proto.name, field.name) {
                ("ip", "protocol") | ("ip6", "nexthdr") => {
                    ctx.l4 = Some((
                        types::rlookup(types::PROTOCOLS, n).unwrap_or("unknown"),
                        n as u8,
                    ));
                    DepFact::L4Header(n as u8)
                }
                ("icmp" | "icmpv6", "type") => {
                    ctx.icmp_type = Some(n as u8);
                    DepFact::IcmpType(n as u8)
                }
                ("ether", "type") => {
                    set_l3_from_ethertype(ctx, n);
                    DepFact::EtherType(n as u16)
                }
                _ => return,
            },
            _ => return,
        };
        ctx.dep = Some((ctx.nstmts, fact));
    }

    /// The right-hand side of a match, typed by the left-hand side.
    pub(crate) fn rhs(&mut self, types: &[Dtype]) -> PResult<Rhs> {
        // `== fin | syn`: flags may be joined with `|` here too
        let saved = self.in_set_elem;
        self.in_set_elem = types.len() == 1 && types[0].is_bitmask();
        let r = self.rhs_inner(types);
        self.in_set_elem = saved;
        r
    }

    fn rhs_inner(&mut self, types: &[Dtype]) -> PResult<Rhs> {
        let t = self.peek();
        match t.kind {
            Tok::LBrace => {
                let elems = self.set_elems(types, None)?;
                // nft >= 1.1 keeps single-element anonymous sets as sets in listings
                Ok(Rhs::Set(normalize_anon_set(elems, types)))
            }
            Tok::At => {
                let invalid = self.invalid_value.take();
                self.next();
                let name = self.at_name(t)?;
                let keys = self.cur_table.as_ref().and_then(|(f, tb)| {
                    let set = self.rs.table(*f, tb)?.set(&name)?;
                    Some(set.key_types())
                });
                if let (Some(sel), Some(keys)) = (invalid, keys) {
                    let has: Vec<_> = keys.iter().map(|d| d.describe()).collect();
                    let src = self.srcs[t.span.src as usize].text;
                    let msg = format!(
                        "datatype mismatch, expected invalid, expression has type {}",
                        has.join(" . ")
                    );
                    let d =
                        self.err(t.span, msg)
                            .with_secondary(src, sel.lo as usize, sel.hi as usize);
                    self.sem_errors.push(d);
                    return Ok(Rhs::SetRef(name));
                }
                self.check_set_ref(&name, types, t.span, false)?;
                Ok(Rhs::SetRef(name))
            }
            _ => {
                let e = self.elem(types)?;
                if types.len() == 1 && types[0].is_bitmask() && self.peek().kind == Tok::Comma {
                    let Part::Val(mut acc) = e.parts[0] else {
                        return Ok(Rhs::Elem(e.parts));
                    };
                    while self.eat(Tok::Comma) {
                        let (p, span) = self.value(types[0])?;
                        let Part::Val(v) = p else {
                            return Err(self.err(span, "expected a flag value"));
                        };
                        acc = acc.or(&v);
                    }
                    if self.peek().kind == Tok::Slash {
                        self.next();
                        self.pending_mask = Some(self.flag_list(types[0])?);
                    }
                    return Ok(Rhs::Elem(Parts::one(Part::Val(acc))));
                }
                if types.len() == 1 && types[0].is_bitmask() && self.peek().kind == Tok::Slash {
                    self.next();
                    self.pending_mask = Some(self.flag_list(types[0])?);
                }
                Ok(Rhs::Elem(e.parts))
            }
        }
    }

    /// `@name` must name a set (or, for vmaps, a verdict map) of the current table with a matching key.
    pub(crate) fn check_set_ref(
        &mut self,
        name: &str,
        types: &[Dtype],
        span: Span,
        vmap: bool,
    ) -> PResult<()> {
        let Some((f, t)) = self.cur_table.clone() else {
            return Ok(());
        };
        let Some(set) = self.rs.table(f, &t).and_then(|t| t.set(name)) else {
            let d = self.not_found(crate::misspell::What::Set, name, span);
            self.sem_errors.push(d);
            return Ok(());
        };
        let want = set.key_types();
        let widths = |v: &[Dtype]| v.iter().map(|d| d.bytes()).collect::<Vec<_>>();
        if widths(&want) != widths(types) {
            let names = |v: &[Dtype]| {
                v.iter()
                    .map(|d| d.describe())
                    .collect::<Vec<_>>()
                    .join(" . ")
            };
            self.sem_err(
                span,
                format!(
                    "datatype mismatch, expected {}, expression has type {}",
                    names(&want),
                    names(types)
                ),
            );
        } else if vmap && set.data.is_none() {
            self.sem_err(span, "Expression is not a map".to_string());
        } else if vmap && !set.is_vmap() {
            self.sem_err(span, "Expression is not a verdict map".to_string());
        }
        Ok(())
    }

    /// `a,b,c` or `a | b | c` of a bitmask type, OR-ed together.
    fn flag_list(&mut self, t: Dtype) -> PResult<Val> {
        let (p, span) = self.value(t)?;
        let Part::Val(mut acc) = p else {
            return Err(self.err(span, "expected a flag value"));
        };
        while matches!(self.peek().kind, Tok::Comma | Tok::Pipe) {
            self.next();
            let (p, span) = self.value(t)?;
            let Part::Val(v) = p else {
                return Err(self.err(span, "expected a flag value"));
            };
            acc = acc.or(&v);
        }
        Ok(acc)
    }

    /// `{ e, e, ... }` (the opening brace is next). Nested braces are flattened.
    pub(crate) fn set_elems(
        &mut self,
        types: &[Dtype],
        data: Option<&[Dtype]>,
    ) -> PResult<Vec<Elem>> {
        self.expect(Tok::LBrace, "'{'")?;
        let mut out = Vec::new();
        loop {
            self.skip_newlines();
            if self.eat(Tok::RBrace) {
                break;
            }
            if self.peek().kind == Tok::LBrace {
                out.extend(self.set_elems(types, data)?);
            } else {
                let start = self.peek().span;
                let e = self.set_elem(types, data)?;
                let end = self.prev;
                self.elem_spans
                    .push(if end.src == start.src && end.hi >= start.lo {
                        start.to(end)
                    } else {
                        start
                    });
                out.push(e);
            }
            self.skip_newlines();
            if !self.eat(Tok::Comma) {
                self.skip_newlines();
                let t = self.peek();
                if t.kind != Tok::RBrace {
                    return Err(self.unexpected(t, Some("comma or '}'")));
                }
            }
        }
        Ok(out)
    }

    /// One set element: key (or `*`), options, and `: data` for maps.
    pub(crate) fn set_elem(&mut self, types: &[Dtype], data: Option<&[Dtype]>) -> PResult<Elem> {
        self.in_set_elem = true;
        let r = self.set_elem_inner(types, data);
        self.in_set_elem = false;
        r
    }

    fn set_elem_inner(&mut self, types: &[Dtype], data: Option<&[Dtype]>) -> PResult<Elem> {
        let key_start = self.peek().span;
        let mut e = if self.eat(Tok::Star) {
            Elem {
                parts: Parts::new(),
                data: None,
                opts: None,
            }
        } else {
            self.elem(types)?
        };
        loop {
            let w = self.peek_word().unwrap_or_default();
            match w {
                "timeout" | "expires" => {
                    self.next();
                    let (ms, _) = self.time_value()?;
                    let o = e.opts.get_or_insert_with(Default::default);
                    if w == "timeout" {
                        o.timeout = Some(ms);
                    } else {
                        o.expires = Some(ms);
                    }
                }
                "comment" => {
                    self.next();
                    let c = self.quoted()?;
                    e.opts.get_or_insert_with(Default::default).comment = Some(c);
                }
                "counter" => {
                    let crate::stmt::Stmt::Counter(c) = self.counter_stmt()? else {
                        unreachable!()
                    };
                    e.opts.get_or_insert_with(Default::default).counter = Some(c);
                }
                "limit" => {
                    let st = self.limit_stmt()?;
                    e.opts.get_or_insert_with(Default::default).stmts.push(st);
                }
                "quota" => {
                    let st = self.quota_stmt()?;
                    e.opts.get_or_insert_with(Default::default).stmts.push(st);
                }
                _ => break,
            }
        }
        if let Some(dt) = data {
            let key = key_start.to(self.prev);
            self.expect(Tok::Colon, "colon")?;
            if dt == [Dtype::Verdict] {
                let t = self.peek();
                let w = self.peek_word().unwrap_or_default();
                let Some(make) = crate::stmt::verdict::VerdictExpr::keyword(w) else {
                    return Err(self.unexpected(t, None));
                };
                self.next();
                let v = if crate::stmt::verdict::VerdictExpr::needs_target(w) {
                    let (target, span) = self.identifier()?;
                    self.push_jump(&target, span);
                    make(target)
                } else {
                    make(String::new())
                };
                e.data = Some(Box::new(Data::Verdict(v)));
            } else {
                let mut parts = Vec::new();
                for (i, &t) in dt.iter().enumerate() {
                    if i > 0 {
                        self.expect(Tok::Dot, "dot")?;
                    }
                    parts.push(self.part(t)?);
                }
                if let [Dtype::Obj(kind)] = dt {
                    self.check_obj_named(*kind, &parts, key);
                }
                e.data = Some(Box::new(Data::Val(parts)));
            }
        }
        Ok(e)
    }

    /// A duration: `1h30m`, `30s`, or a number of seconds.
    pub(crate) fn time_value(&mut self) -> PResult<(u64, Span)> {
        let t = self.peek();
        if !matches!(t.kind, Tok::Word | Tok::Num) {
            return Err(self.unexpected(t, None));
        }
        self.next();
        let text = self.text(t);
        let ms = match types::parse_number(text) {
            Some(n) => n as u64 * 1000,
            None => match types::parse_time(text) {
                Some(ms) => ms,
                None => {
                    self.sem_err(t.span, "Could not parse time");
                    0
                }
            },
        };
        Ok((ms, t.span))
    }

    /// One constant: parts joined by `.`.
    pub(crate) fn elem(&mut self, types: &[Dtype]) -> PResult<Elem> {
        let mut parts = Parts::with_capacity(types.len());
        for (i, &t) in types.iter().enumerate() {
            if i > 0 {
                self.expect(Tok::Dot, "dot")?;
            }
            parts.push(self.part(t)?);
        }
        Ok(Elem {
            parts,
            data: None,
            opts: None,
        })
    }

    /// A value, prefix or range of type `t`.
    pub(crate) fn part(&mut self, t: Dtype) -> PResult<Part> {
        let (p, span) = self.value(t)?;
        let Part::Val(mut v) = p else { return Ok(p) };
        // `syn | ack` inside sets
        while t.is_bitmask() && self.in_set_elem && self.peek().kind == Tok::Pipe {
            self.next();
            let (p2, s2) = self.value(t)?;
            let Part::Val(v2) = p2 else {
                return Err(self.err(s2, "expected a flag value"));
            };
            v = v.or(&v2);
        }
        match self.peek().kind {
            // for bitmask types `/` introduces a mask (`tcp flags syn / syn,ack`), handled by rhs()
            Tok::Slash if !t.is_bitmask() => {
                self.next();
                let (plen, pspan) = self.number()?;
                let width = t.bits() as u64;
                if matches!(
                    t,
                    Dtype::Ifname | Dtype::Str16 | Dtype::Obj(_) | Dtype::Iface
                ) {
                    return Err(self.err(
                        span.to(pspan),
                        format!("{} does not support prefixes", t.describe()),
                    ));
                }
                if plen > width {
                    self.sem_err(
                        span.to(pspan),
                        format!("Prefix length {plen} is invalid for type of {width} bits width"),
                    );
                    return Ok(Part::Val(v));
                }
                if plen == width && (t.is_addr() || self.in_set_elem) {
                    return Ok(Part::Val(v));
                }
                let m = t.prefix_mask(v.len as usize, plen as u32);
                Ok(Part::Prefix(v.and(&m), plen as u32))
            }
            Tok::Dash => {
                self.next();
                let (hi, hspan) = self.value(t)?;
                let Part::Val(hi) = hi else {
                    return Err(self.err(hspan, "Range bounds must be values"));
                };
                if v.bytes() >= hi.bytes() && !matches!(t, Dtype::Hour | Dtype::Day) {
                    self.sem_err(span.to(hspan), "Range has zero or negative size");
                }
                Ok(Part::Range(v, hi))
            }
            _ => Ok(Part::Val(v)),
        }
    }

    /// One literal of type `t` (symbol, number, address, string; `eth*` for interface names).
    pub(crate) fn value(&mut self, t: Dtype) -> PResult<(Part, Span)> {
        let tok = self.peek();
        if !matches!(tok.kind, Tok::Word | Tok::Num | Tok::Addr | Tok::Quoted) {
            return Err(self.unexpected(tok, None));
        }
        // statement keywords are never values (`oifname accept` is a syntax error in nft)
        if tok.kind == Tok::Word
            && RESERVED.contains(&self.text(tok))
            && (matches!(
                t,
                Dtype::Ifname | Dtype::Iface | Dtype::Str16 | Dtype::Obj(_)
            ) || t.parse(self.text(tok), false).is_err())
        {
            return Err(self.unexpected(tok, None));
        }
        if self.invalid_value.take().is_some() {
            return Err(self.err(tok.span, "Can't parse symbolic invalid expressions"));
        }
        self.next();
        let quoted = tok.kind == Tok::Quoted;
        let mut text = std::borrow::Cow::Borrowed(self.unquoted(tok));
        let mut tok = tok;
        if t == Dtype::Classid && self.peek().kind == Tok::Colon {
            // `major:minor` arrives as three tokens; `a:b-c:d` as five (`b-c` is one word)
            self.next();
            let minor = self.next();
            let m = self.text(minor);
            if let (Some((b, c)), Tok::Colon) = (m.split_once('-'), self.peek().kind) {
                self.next();
                let d = self.next();
                let lo = format!("{text}:{b}");
                let hi = format!("{c}:{}", self.text(d));
                let span = tok.span.to(d.span);
                let lo = self.resolve(t, &lo, false, span);
                let hi = self.resolve(t, &hi, false, span);
                return Ok((Part::Range(lo, hi), span));
            }
            text = format!("{text}:{m}").into();
            tok.span = tok.span.to(minor.span);
        }
        if matches!(t, Dtype::Ifname) {
            if let Some(stem) = text.strip_suffix('*').filter(|s| !s.ends_with('\\')) {
                let v = self.resolve(t, stem, quoted, tok.span);
                return Ok((Part::Prefix(v, 8 * stem.len() as u32), tok.span));
            }
        }
        if !quoted && matches!(t, Dtype::Ifname | Dtype::Iface) && tok.kind == Tok::Num {
            // interface names may be numeric-looking only when quoted; accept anyway
        }
        let v = self.resolve(t, &text, quoted, tok.span);
        Ok((Part::Val(v), tok.span))
    }

    /// Resolves a symbol; on failure records the error and yields a zero value so parsing goes on.
    fn resolve(&mut self, t: Dtype, text: &str, quoted: bool, span: Span) -> Val {
        if let Some(v) = t.parse_fast(text) {
            return v;
        }
        match t.parse(text, quoted) {
            Ok(v) => v,
            Err(m) => {
                self.sem_err(span, m);
                Val::from_u128(0, t.bytes())
            }
        }
    }
}

/// The icmp/icmpv6 type a field needs, for fields only some types have (nft's `icmp_dep_to_type`):
/// echo for `id` and `sequence`, destination-unreachable for `mtu`, redirect for `gateway`;
/// packet-too-big, mld-listener-query and parameter-problem for icmpv6's.
fn icmp_field_type(proto: &str, field: &str) -> Option<u8> {
    Some(match (proto, field) {
        ("icmp", "id" | "sequence") => 8,
        ("icmp", "gateway") => 5,
        ("icmp", "mtu") => 3,
        ("icmpv6", "id" | "sequence") => 128,
        ("icmpv6", "mtu") => 2,
        ("icmpv6", "max-delay") => 130,
        ("icmpv6", "parameter-problem") => 4,
        _ => return None,
    })
}

/// Whether packets of icmp type `has` have the field that needs type `need` (nft's
/// `icmp_dep_type_match`): the echo fields are in echo requests and replies both.
fn icmp_type_has_field(need: u8, has: u8) -> bool {
    match need {
        8 => matches!(has, 0 | 8),
        128 => matches!(has, 128 | 129),
        _ => need == has,
    }
}

fn set_l3_from_ethertype(ctx: &mut RuleCtx, n: u64) {
    if ctx.l3.is_none() {
        ctx.l3 = match n {
            0x0800 => Some("ip"),
            0x86dd => Some("ip6"),
            0x0806 => Some("arp"),
            _ => None,
        };
    }
}

/// nft's evaluation-time rewrites that show in listings: `x ^ c1 == c2` → `x == c1 ^ c2`; a prefix
/// on a non-address type → `x & mask == value`.
fn simplify(m: &mut Match) {
    if let (Some((BinOp::Xor, c)), Rhs::Elem(e)) = (m.left.binop.as_deref(), &mut m.right) {
        if let [Part::Val(v)] = e.as_mut_slice() {
            *v = v.xor(c);
            m.left.binop = None;
        }
    }
    if let (Some((BinOp::And, mask)), Rhs::Elem(e)) = (m.left.binop.as_deref(), &m.right) {
        let t = m.left.sels[0].dtype();
        if let [Part::Val(v)] = e.as_slice() {
            if t.is_bitmask() && v.is_zero() && matches!(m.op, RelOp::Eq | RelOp::Ne) {
                let mask = *mask;
                m.op = if m.op == RelOp::Eq {
                    RelOp::Bang
                } else {
                    RelOp::Implicit
                };
                m.left.binop = None;
                m.right = Rhs::Elem(Parts::one(Part::Val(mask)));
                return;
            }
        }
    }
    // `ip saddr & 255.255.0.0 == 1.2.0.0` is `ip saddr 1.2.0.0/16`
    if let (Some((BinOp::And, mask)), Rhs::Elem(e)) = (m.left.binop.as_deref(), &m.right) {
        let t = m.left.sels[0].dtype();
        if let [Part::Val(v)] = e.as_slice() {
            let n = mask.bytes().iter().map(|b| b.count_ones()).sum::<u32>();
            if t.is_addr()
                && m.left.sels.len() == 1
                && matches!(m.op, RelOp::Eq | RelOp::Ne | RelOp::Implicit)
                && *mask == Val::prefix_mask(mask.len as usize, n)
                && v.and(mask) == *v
            {
                let p = if n as usize == 8 * v.len as usize {
                    Part::Val(*v)
                } else {
                    Part::Prefix(*v, n)
                };
                m.left.binop = None;
                m.right = Rhs::Elem(Parts::one(p));
                if m.op == RelOp::Eq {
                    m.op = RelOp::Implicit;
                }
            }
        }
    }
    if m.left.sels.len() == 1 && m.left.binop.is_none() {
        let t = m.left.sels[0].dtype();
        if let Rhs::Elem(e) = &m.right {
            if let [Part::Prefix(v, plen)] = e.as_slice() {
                if !t.is_addr() && t != Dtype::Ifname {
                    let mask = t.prefix_mask(v.len as usize, *plen);
                    let v = *v;
                    m.left.binop = Some(Box::new((BinOp::And, mask)));
                    m.right = Rhs::Elem(Parts::one(Part::Val(v)));
                    if m.op == RelOp::Implicit {
                        m.op = RelOp::Eq;
                    }
                }
            }
        }
    }
}

/// Words that start statements and can therefore not be unquoted values.
const RESERVED: &[&str] = &[
    "accept",
    "drop",
    "continue",
    "return",
    "jump",
    "goto",
    "counter",
    "log",
    "limit",
    "quota",
    "reject",
    "queue",
    "snat",
    "dnat",
    "masquerade",
    "redirect",
    "notrack",
    "comment",
    "vmap",
];

/// Anonymous set canonical form: interval sets are merged and sorted; others sorted and deduplicated.
pub(crate) fn normalize_anon_set(elems: Vec<Elem>, types: &[Dtype]) -> Vec<Elem> {
    let interval = types.len() == 1
        && !matches!(types[0], Dtype::Ifname)
        && elems
            .iter()
            .any(|e| e.parts.first().is_some_and(|p| !p.is_single()))
        && elems
            .iter()
            .all(|e| e.data.is_none() && !e.parts.is_empty());
    if !interval {
        let mut elems = elems;
        elems.sort_by_key(|a| (a.parts.is_empty(), a.sort_key()));
        elems.dedup_by(|a, b| a.parts == b.parts);
        return elems;
    }
    let t = types[0];
    let len = t.bytes();
    let mut iv: Vec<(u128, u128)> = elems
        .iter()
        .map(|e| {
            let (lo, hi) = e.parts[0].bounds();
            (lo.to_u128(), hi.to_u128())
        })
        .collect();
    iv.sort();
    let mut merged: Vec<(u128, u128)> = Vec::new();
    for (lo, hi) in iv {
        if let Some(last) = merged.last_mut() {
            if lo <= last.1.saturating_add(1) {
                last.1 = last.1.max(hi);
                continue;
            }
        }
        merged.push((lo, hi));
    }
    merged
        .into_iter()
        .map(|(lo, hi)| Elem::single(interval_part(t, len, lo, hi)))
        .collect()
}

/// How nft prints an interval: a value, a prefix (address types) or a range.
pub(crate) fn interval_part(t: Dtype, len: usize, lo: u128, hi: u128) -> Part {
    let v = Val::from_u128(lo, len);
    if lo == hi {
        return Part::Val(v);
    }
    if t.is_addr() {
        let size = hi.wrapping_sub(lo).wrapping_add(1);
        let bits = t.bits();
        if (size == 0 && lo == 0 && bits == 128) || (size.is_power_of_two() && lo & (size - 1) == 0)
        {
            let host_bits = if size == 0 {
                128
            } else {
                size.trailing_zeros()
            };
            return Part::Prefix(v, bits - host_bits);
        }
    }
    Part::Range(v, Val::from_u128(hi, len))
}
