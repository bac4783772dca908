//! The parser: commands, table and chain blocks, rules. Statements and expressions parse themselves
//! in their own modules (`impl Parser` blocks in `stmt/*.rs`, `expr/*.rs`).
//!
//! Parsing and checking happen in one pass: the right-hand side of a match is resolved with the
//! datatype of its left-hand side, so every error is reported at its source location, nft-style.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use crate::ast::*;
use crate::diag::{Diagnostic, Span};
use crate::lex::{next_token, Tok, Token};
use crate::misspell::{self, What};
use crate::stmt::Stmt;

/// Supplies the text of `include`d files. The rules crate never touches the file system itself.
pub trait Loader {
    /// Resolves `include "path"` written in file `from`. Returns `(name, text)` for each file the path
    /// names (a glob may name several, in order), or an error message.
    fn load(&self, path: &str, from: &str) -> Result<Vec<(String, String)>, String>;
}

/// A loader that refuses every include.
pub struct NoIncludes;

impl Loader for NoIncludes {
    fn load(&self, path: &str, _from: &str) -> Result<Vec<(String, String)>, String> {
        Err(format!("File not found: {path}"))
    }
}

pub(crate) struct Source<'a> {
    pub name: String,
    pub text: &'a str,
    /// the `include` statement that read this file (in an earlier source)
    pub from: Option<Span>,
}

/// The texts of included files, alive as long as the parse that loaded them: the parser hands out
/// `&'a str` slices of every source (no per-token `String`s).
#[derive(Default)]
pub(crate) struct Texts {
    /// from `Box::into_raw`: never moved, freed on drop
    texts: RefCell<Vec<*mut str>>,
}

impl Texts {
    pub fn add(&self, text: String) -> &str {
        let p = Box::into_raw(text.into_boxed_str());
        self.texts.borrow_mut().push(p);
        // SAFETY: `p` points to a live allocation that is only freed when `self` is dropped, and
        // nothing writes to it.
        unsafe { &*p }
    }
}

impl Drop for Texts {
    fn drop(&mut self) {
        for p in self.texts.get_mut().drain(..) {
            // SAFETY: from `Box::into_raw` in `add`, freed exactly once; borrows of it ended with
            // the borrow of `self`.
            drop(unsafe { Box::from_raw(p) });
        }
    }
}

/// Where tokens come from: a source being lexed, or a token list (a `$variable`'s body, tokens put
/// back).
enum Frame {
    Lex { src: u16, pos: usize },
    Toks { toks: Rc<[Token]>, i: usize },
}

pub(crate) type PResult<T> = Result<T, Diagnostic>;

/// Statements that end rule evaluation: nothing may follow them.
fn is_terminal(s: &Stmt) -> bool {
    matches!(
        s,
        Stmt::Verdict(_) | Stmt::Reject(_) | Stmt::Nat(_) | Stmt::Queue(_)
    ) || matches!(s, Stmt::Dup(d) if d.fwd)
}

/// Words that are keywords in nft's scanner (for "unexpected X" messages: other words are "string").
const KEYWORDS: &[&str] = &[
    "table",
    "chain",
    "rule",
    "set",
    "map",
    "flush",
    "add",
    "create",
    "insert",
    "delete",
    "list",
    "ruleset",
    "ip",
    "ip6",
    "inet",
    "arp",
    "bridge",
    "netdev",
    "type",
    "hook",
    "priority",
    "policy",
    "accept",
    "drop",
    "jump",
    "goto",
    "return",
    "continue",
    "counter",
    "packets",
    "bytes",
    "ct",
    "meta",
    "tcp",
    "udp",
    "icmp",
    "icmpv6",
    "saddr",
    "daddr",
    "sport",
    "dport",
    "state",
    "mark",
    "iif",
    "oif",
    "iifname",
    "oifname",
    "l4proto",
    "protocol",
    "elements",
    "flags",
    "comment",
    "define",
    "include",
    "handle",
    "position",
    "index",
    "device",
    "devices",
    "filter",
    "nat",
    "route",
    "log",
    "limit",
    "reject",
    "masquerade",
    "snat",
    "dnat",
    "vmap",
    "quota",
    "ether",
    "vlan",
    "nexthdr",
];

/// Words nft 1.0.6's scanner makes keywords in every scanner state: nft's grammar takes a name
/// (table, chain, set, map, object, flowtable, variable) only as a plain string token, so these
/// are syntax errors there (`chain log { }`: "unexpected log, expecting string"). Found by trying
/// every word of nft's grammar as each kind of name against nft 1.0.6 (quoted names and numbers
/// are refused there too).
pub(crate) const NAME_KEYWORDS: &[&str] = &[
    "accept",
    "add",
    "ah",
    "all",
    "arp",
    "auto-merge",
    "bridge",
    "cgroup",
    "chain",
    "comment",
    "comp",
    "constant",
    "continue",
    "counter",
    "cpu",
    "create",
    "ct",
    "day",
    "dccp",
    "define",
    "delete",
    "describe",
    "device",
    "devices",
    "dnat",
    "drop",
    "dst",
    "dup",
    "dynamic",
    "ecn",
    "element",
    "elements",
    "esp",
    "ether",
    "exists",
    "expires",
    "export",
    "exthdr",
    "fib",
    "flags",
    "flow",
    "flowtable",
    "flush",
    "frag",
    "fwd",
    "gc-interval",
    "get",
    "goto",
    "handle",
    "hbh",
    "hook",
    "hour",
    "ibriport",
    "ibrname",
    "icmp",
    "icmpv6",
    "igmp",
    "iif",
    "iifgroup",
    "iifname",
    "iiftype",
    "import",
    "include",
    "index",
    "inet",
    "insert",
    "interval",
    "ip",
    "ip6",
    "ipsec",
    "jhash",
    "jump",
    "limit",
    "list",
    "log",
    "map",
    "mark",
    "masquerade",
    "meta",
    "meter",
    "mh",
    "missing",
    "monitor",
    "netdev",
    "nftrace",
    "notrack",
    "numgen",
    "obriport",
    "obrname",
    "offload",
    "oif",
    "oifgroup",
    "oifname",
    "oiftype",
    "osf",
    "pkttype",
    "policy",
    "position",
    "priority",
    "queue",
    "quota",
    "random",
    "redefine",
    "redirect",
    "reject",
    "rename",
    "replace",
    "reset",
    "return",
    "rt",
    "rt0",
    "rt2",
    "rtclassid",
    "rule",
    "ruleset",
    "sctp",
    "secmark",
    "set",
    "size",
    "skgid",
    "skuid",
    "snat",
    "socket",
    "srh",
    "symhash",
    "synproxy",
    "table",
    "tcp",
    "th",
    "time",
    "timeout",
    "tproxy",
    "type",
    "typeof",
    "udp",
    "udplite",
    "undefine",
    "update",
    "vlan",
    "vmap",
    "xt",
];

/// Keywords of the scanner states nft enters after an object's keyword (`counter`, `quota`,
/// `limit`, `ct`, `synproxy`): refused as that object's (and its table's) name as well.
pub(crate) const COUNTER_SCOPE: &[&str] = &["bytes", "name", "packets"];
pub(crate) const QUOTA_SCOPE: &[&str] = &["bytes", "name", "over", "until", "used"];
pub(crate) const LIMIT_SCOPE: &[&str] = &[
    "burst", "bytes", "minute", "name", "over", "packets", "rate", "second", "week",
];
pub(crate) const CT_SCOPE: &[&str] = &[
    "avgpkt",
    "bytes",
    "count",
    "daddr",
    "direction",
    "dport",
    "event",
    "expectation",
    "expiration",
    "helper",
    "helpers",
    "id",
    "l3proto",
    "label",
    "original",
    "over",
    "packets",
    "proto-dst",
    "proto-src",
    "protocol",
    "reply",
    "saddr",
    "state",
    "status",
    "zone",
];
pub(crate) const SYNPROXY_SCOPE: &[&str] =
    &["mss", "name", "sack-permitted", "timestamp", "wscale"];

/// nft's "expecting" text where a name or `handle N` may follow (`delete chain ip t handle 3`).
const HANDLE_OR_STRING: &str = "handle or string";

/// The keywords of nft's scanner state after an object kind's keyword.
pub(crate) fn obj_scope(kind: crate::types::ObjKind) -> &'static [&'static str] {
    use crate::types::ObjKind as K;
    match kind {
        K::Counter => COUNTER_SCOPE,
        K::Quota => QUOTA_SCOPE,
        K::Limit => LIMIT_SCOPE,
        K::CtHelper | K::CtTimeout | K::CtExpectation => CT_SCOPE,
        K::Synproxy => SYNPROXY_SCOPE,
        K::Secmark => &[],
    }
}

/// Per-rule protocol context: what the rule has established so far, for conflict checks and for
/// dropping explicit matches that merely restate an implied dependency (as nft's listing does).
pub(crate) struct RuleCtx {
    pub family: Family,
    /// network protocol named so far (`ip`, `ip6`, `arp`) and where
    pub l3: Option<&'static str>,
    /// transport protocol (name, number)
    pub l4: Option<(&'static str, u8)>,
    /// the previous statement, if it could be a dependency: (index, what it states)
    pub dep: Option<(usize, DepFact)>,
    /// statements to drop because they restate a dependency
    pub kill: Vec<usize>,
    pub nstmts: usize,
    /// statements implied by the current one, inserted before it (`icmp type { echo-reply, ... }`)
    pub pre: Vec<Stmt>,
    pub icmp_type_seen: bool,
    /// a `meta l4proto N` the rule needs at its start (inet `reject with tcp reset`)
    pub prepend_l4: Option<u8>,
    /// a `ct protocol` match named a transport protocol nft knows (a context for `ct original
    /// proto-src`, as `ctx.l4` is)
    pub ct_l4: bool,
    /// what established `l4` (for errors that show it, as nft does)
    pub l4_span: Option<Span>,
    /// the link layer header is known to be ether: from the start in bridge and netdev chains,
    /// after an `ether` field elsewhere (nft adds `meta iiftype ether` for it)
    pub ll_ether: bool,
    /// what is known of the protocol after the ether header, as far as `vlan` is concerned:
    /// `Some(false)` a protocol that is not vlan (ip and ip6 chains from the start; `ether type ip`,
    /// a network header field, `meta nfproto ipv4`; a set of types without vlan), `Some(true)`
    /// vlan (8021q or 8021ad) or a set with it, `None` nothing
    pub ll_next_vlan: Option<bool>,
    /// a vlan field was matched (later ones never conflict: nft keeps it on its link layer stack)
    pub vlan_seen: bool,
    /// the icmp/icmpv6 type the rule has established: matched (`icmp type 2`), or implied by a
    /// field only some types have (`icmp mtu`: 3); fields for other types are refused
    pub icmp_type: Option<u8>,
}

/// A fact an explicit protocol match establishes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DepFact {
    NfProto(u8),
    EtherType(u16),
    L4Meta(u8),
    L4Header(u8),
    IifType(u16),
    /// `icmp type N` / `icmpv6 type N`
    IcmpType(u8),
}

impl RuleCtx {
    pub fn new(family: Family) -> RuleCtx {
        let l3 = match family {
            Family::Ip => Some("ip"),
            Family::Ip6 => Some("ip6"),
            Family::Arp => Some("arp"),
            _ => None,
        };
        RuleCtx {
            family,
            l3,
            l4: None,
            dep: None,
            kill: Vec::new(),
            nstmts: 0,
            pre: Vec::new(),
            icmp_type_seen: false,
            prepend_l4: None,
            ct_l4: false,
            l4_span: None,
            ll_ether: matches!(family, Family::Bridge | Family::Netdev),
            ll_next_vlan: matches!(family, Family::Ip | Family::Ip6).then_some(false),
            vlan_seen: false,
            icmp_type: None,
        }
    }
}

pub(crate) struct Parser<'a> {
    /// a rule's statements while it is parsed (reused: each rule gets an exactly sized copy)
    stmt_buf: Vec<Stmt>,
    pub srcs: Vec<Source<'a>>,
    texts: &'a Texts,
    /// token sources, innermost last (the main file is at the bottom)
    frames: Vec<Frame>,
    /// tokens peeked at, variables expanded: `la[la_at..]` (the ones before are consumed; a Vec
    /// with an index, emptied whenever all are consumed, is the cheapest queue for a look-ahead
    /// that is mostly one token)
    la: Vec<Token>,
    la_at: usize,
    /// span of the last token consumed
    pub prev: Span,
    pub rs: &'a mut Ruleset,
    pub defines: HashMap<String, Rc<[Token]>>,
    pub loader: &'a dyn Loader,
    /// jump/goto targets to verify once the whole input is applied
    pub pending_jumps: Vec<(Family, String, String, Span)>,
    /// the table commands currently refer to (for jump targets in map elements)
    pub cur_table: Option<(Family, String)>,
    /// evaluation errors: reported only if the whole input parses (nft reports syntax errors first)
    pub sem_errors: Vec<Diagnostic>,
    /// `tcp flags syn / syn,ack`: the mask after the value, for the match being parsed
    pub pending_mask: Option<crate::types::Val>,
    /// span of the `priority` keyword while its value is parsed (for error locations)
    pub prio_kw: Option<Span>,
    /// the chain being defined (for errors located at its name)
    pub chain_name_span: Option<Span>,
    /// spans of the set elements parsed by the last `set_elems` calls
    pub elem_spans: Vec<Span>,
    /// parsing a set element (where `a | b` joins flags)
    pub in_set_elem: bool,
    /// tokens produced by variable expansion so far (bounded: definitions can double each other)
    expanded: usize,
    /// braces open (`{` consumed and not yet closed), to skip the rest of a rule after an error
    depth: u32,
    /// the error report being collected (see [`Errors`])
    errors: Errors,
    /// keywords of the scanner state nft is in besides [`NAME_KEYWORDS`] (after `counter`, ...)
    pub scope_kw: &'static [&'static str],
    /// the next value parsed has nft's type "invalid" (`ct original proto-src` without a
    /// transport protocol before it in the rule): nft cannot parse it
    /// (the key's span)
    pub invalid_value: Option<Span>,
    /// kernel refusals whose message is not `Could not process rule: …` (nft's suggestions for a
    /// missing name): classed as kernel errors when recorded
    kernel_refusals: Vec<Diagnostic>,
    /// the table's name in the `add set|map|counter|…|flowtable` command being parsed (where nft
    /// reports a missing table)
    pub cmd_table_span: Option<Span>,
    /// the table whose block is being parsed: nft adds a block's objects before its sets and rules,
    /// so a reference to an object of that table is checked at the block's end
    pub(crate) block_table: Option<(Family, String)>,
    /// objects referred to in the block being parsed and not declared yet (kind, name, where)
    pub(crate) pending_objs: Vec<(crate::types::ObjKind, String, Span)>,
    /// meters this input made: nft 1.0.6 does not find them by name in the same input (`list meter`,
    /// `flush meter`), as its cache of the input's sets leaves anonymous sets out
    pub(crate) new_meters: Vec<(Family, String, String)>,
}

/// nft's limit on the errors of one input (`nft --max-errors`, 10 by default).
const MAX_ERRORS: usize = 10;

/// How nft reports an error, which decides where it appears in the report.
/// What a `delete` command names: an object's name or its handle.
enum NameOrHandle {
    Name(String),
    Handle(u64),
}

impl NameOrHandle {
    fn is(&self, name: &str, handle: u64) -> bool {
        match self {
            NameOrHandle::Name(n) => n == name,
            NameOrHandle::Handle(h) => *h == handle,
        }
    }
    fn name(&self) -> Option<&str> {
        match self {
            NameOrHandle::Name(n) => Some(n),
            NameOrHandle::Handle(_) => None,
        }
    }
}

/// Gives what a table block added (the handles from `first` on) the handles the kernel gives them:
/// nft sends a block as its chains, then its objects, sets, flowtables and last its rules
/// (`nft_cmd_expand`), and the kernel numbers them in that order.
fn renumber_block(t: &mut Table, first: u64) {
    let mut next = first;
    let mut give = |h: &mut u64| {
        if *h >= first {
            *h = next;
            next += 1;
        }
    };
    t.chains.iter_mut().for_each(|c| give(&mut c.handle));
    t.objs.iter_mut().for_each(|o| give(&mut o.handle));
    t.sets.iter_mut().for_each(|s| give(&mut s.handle));
    t.flowtables.iter_mut().for_each(|f| give(&mut f.handle));
    for c in t.chains.iter_mut() {
        c.rules.iter_mut().for_each(|r| give(&mut r.handle));
    }
}

/// Removes the first item `f` selects; whether there was one.
fn remove_where<T>(v: &mut Vec<T>, f: impl Fn(&T) -> bool) -> bool {
    match v.iter().position(f) {
        Some(i) => {
            v.remove(i);
            true
        }
        None => false,
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum ErrClass {
    /// found by the parser (bison): reported first, in input order, and the parser recovers at the
    /// next newline or `;`
    Syntax,
    /// found when the commands are evaluated: reported after the syntax errors, command by command
    Eval,
    /// refused by the kernel (`Could not process rule: …`): reported only if nothing else was
    Kernel,
}

/// Messages nft's parser itself reports (an action of the grammar fails): they count as syntax
/// errors.
const PARSER_MESSAGES: &[&str] = &[
    "unknown chain type",
    "unknown chain hook",
    "invalid log level",
];

fn class_of(d: &Diagnostic) -> ErrClass {
    if d.message.starts_with("syntax error") || PARSER_MESSAGES.contains(&d.message.as_str()) {
        ErrClass::Syntax
    } else if d.message.starts_with("Could not process rule") {
        ErrClass::Kernel
    } else {
        ErrClass::Eval
    }
}

/// Where an evaluation error appears in nft's report: nft evaluates command by command, a table
/// block expanded into its chains, objects, sets, flowtables and then rules (`nft_cmd_expand`).
type ErrKey = (u32, u8, u32);

/// Phases of an expanded table block, in nft's order.
pub(crate) const PHASE_CMD: u8 = 0;
pub(crate) const PHASE_CHAIN: u8 = 1;
pub(crate) const PHASE_OBJ: u8 = 2;
pub(crate) const PHASE_SET: u8 = 3;
pub(crate) const PHASE_FLOWTABLE: u8 = 4;
pub(crate) const PHASE_RULE: u8 = 5;

/// Every error of an input, collected as nft collects them: syntax errors as they are found (the
/// parser recovers like bison's `error stmt_separator` rule), evaluation and kernel errors per
/// command (dropped with the command if a syntax error discards it).
#[derive(Default)]
struct Errors {
    syntax: Vec<Diagnostic>,
    eval: Vec<(ErrKey, Diagnostic)>,
    kernel: Vec<Diagnostic>,
    /// errors of the command being parsed
    cmd: Vec<(ErrClass, ErrKey, Diagnostic)>,
    /// the parse stopped (end of file after an error, or too many errors)
    aborted: bool,
    cmd_seq: u32,
    seq: u32,
}

/// Most tokens `$variables` may expand to in one input, and in one definition.
const MAX_EXPANDED: usize = 1 << 24;
const MAX_DEFINE: usize = 1 << 16;

impl<'a> Parser<'a> {
    pub fn new(
        rs: &'a mut Ruleset,
        loader: &'a dyn Loader,
        texts: &'a Texts,
        text: &'a str,
        name: &str,
    ) -> Parser<'a> {
        Parser {
            stmt_buf: Vec::new(),
            srcs: vec![Source {
                name: name.to_string(),
                text,
                from: None,
            }],
            texts,
            frames: vec![Frame::Lex { src: 0, pos: 0 }],
            la: Vec::with_capacity(8),
            la_at: 0,
            prev: Span::default(),
            rs,
            defines: HashMap::new(),
            loader,
            pending_jumps: Vec::new(),
            cur_table: None,
            sem_errors: Vec::new(),
            pending_mask: None,
            prio_kw: None,
            chain_name_span: None,
            elem_spans: Vec::new(),
            in_set_elem: false,
            expanded: 0,
            depth: 0,
            errors: Errors::default(),
            scope_kw: &[],
            invalid_value: None,
            kernel_refusals: Vec::new(),
            cmd_table_span: None,
            block_table: None,
            pending_objs: Vec::new(),
            new_meters: Vec::new(),
        }
    }

    // ---------------------------------------------------------------- tokens

    /// The next token, expanding `$variables`.
    #[inline]
    pub fn peek(&mut self) -> Token {
        match self.la.get(self.la_at) {
            Some(&t) => t,
            None => self.peek_new(),
        }
    }

    /// [`Parser::peek`] when no token is buffered: most often the next token of the file being read.
    #[inline(never)]
    fn peek_new(&mut self) -> Token {
        if self.la_at == self.la.len() {
            if let Some(Frame::Lex { src, pos }) = self.frames.last_mut() {
                let at = *pos;
                let t = crate::lex::scan(self.srcs[*src as usize].text, *src, pos);
                if !matches!(t.kind, Tok::Var | Tok::Eof) {
                    self.la.push(t);
                    return t;
                }
                // `fill` expands it, or ends the included file
                *pos = at;
            }
        }
        self.fill(1);
        self.la[self.la_at]
    }

    /// The token after the next one.
    pub fn peek2(&mut self) -> Token {
        self.fill(2);
        self.la[self.la_at + 1]
    }

    /// The `i`-th token ahead (0 = `peek()`).
    pub fn peek_nth(&mut self, i: usize) -> Token {
        self.fill(i + 1);
        self.la[self.la_at + i]
    }

    /// Makes `la` hold at least `n` tokens not consumed, expanding variables.
    #[inline]
    fn fill(&mut self, n: usize) {
        if self.la_at >= 64 {
            // a look-ahead that never runs empty (`peek2` after every `next`): drop the consumed ones
            self.la.drain(..self.la_at);
            self.la_at = 0;
        }
        // expansions in a row without a token (`define A = $A`) stop at a depth nft would not reach
        let mut nested = 0;
        while self.la.len() - self.la_at < n {
            let t = self.pull();
            if t.kind == Tok::Var && self.expand(t, &mut nested) {
                continue;
            }
            self.la.push(t);
        }
    }

    /// Replaces the variable `t` with its value (makes it the next tokens), unless it is not
    /// defined or expansions went too deep or too far.
    #[inline(never)]
    fn expand(&mut self, t: Token, nested: &mut u32) -> bool {
        if *nested < 256 && self.frames.len() < 256 && self.expanded < MAX_EXPANDED {
            *nested += 1;
            let src = self.srcs[t.span.src as usize].text;
            let name = &src[t.span.lo as usize + 1..t.span.hi as usize];
            if let Some(body) = self.defines.get(name) {
                self.expanded += body.len();
                let toks = body.clone();
                self.frames.push(Frame::Toks { toks, i: 0 });
                return true;
            }
        }
        false
    }

    /// The next raw token (variables not expanded).
    #[inline]
    fn pull(&mut self) -> Token {
        if let Some(Frame::Lex { src, pos }) = self.frames.last_mut() {
            let t = crate::lex::scan(self.srcs[*src as usize].text, *src, pos);
            if t.kind != Tok::Eof || self.frames.len() == 1 {
                return t;
            }
        }
        self.pull_frames()
    }

    /// [`Parser::pull`] from tokens (variables, tokens put back) or at the end of an included file.
    #[inline(never)]
    fn pull_frames(&mut self) -> Token {
        loop {
            let nframes = self.frames.len();
            match self.frames.last_mut() {
                Some(Frame::Toks { toks, i }) => {
                    if let Some(&t) = toks.get(*i) {
                        *i += 1;
                        if *i == toks.len() && nframes > 1 {
                            // done with it: a variable at the end of a body nests no deeper
                            self.frames.pop();
                        }
                        return t;
                    }
                }
                Some(Frame::Lex { src, pos }) => {
                    let t = next_token(self.srcs[*src as usize].text, *src, pos);
                    // an included file ends quietly; the main file's end is the end
                    if t.kind != Tok::Eof || nframes == 1 {
                        return t;
                    }
                }
                None => {
                    let n = self.srcs[0].text.len();
                    return Token {
                        kind: Tok::Eof,
                        span: Span::new(0, n, n),
                    };
                }
            }
            self.frames.pop();
        }
    }

    /// Makes `toks` the next tokens, before anything peeked at.
    pub fn push_tokens(&mut self, toks: Vec<Token>) {
        if self.la_at < self.la.len() {
            self.frames.push(Frame::Toks {
                toks: self.la[self.la_at..].into(),
                i: 0,
            });
        }
        self.la.clear();
        self.la_at = 0;
        self.frames.push(Frame::Toks {
            toks: toks.into(),
            i: 0,
        });
    }

    #[inline]
    pub fn next(&mut self) -> Token {
        let t = self.peek();
        if t.kind != Tok::Eof {
            self.la_at += 1;
            if self.la_at == self.la.len() {
                self.la.clear();
                self.la_at = 0;
            }
            self.prev = t.span;
            match t.kind {
                Tok::LBrace => self.depth += 1,
                Tok::RBrace => self.depth = self.depth.saturating_sub(1),
                _ => {}
            }
        }
        t
    }

    #[inline]
    pub fn text(&self, t: Token) -> &'a str {
        &self.srcs[t.span.src as usize].text[t.span.lo as usize..t.span.hi as usize]
    }

    /// The token's text, without quotes for quoted strings.
    pub fn string_of(&self, t: Token) -> String {
        self.unquoted(t).to_string()
    }

    /// The token's text, without quotes for quoted strings.
    pub fn unquoted(&self, t: Token) -> &'a str {
        let s = self.text(t);
        if t.kind == Tok::Quoted {
            &s[1..s.len() - 1]
        } else {
            s
        }
    }

    pub fn peek_word(&mut self) -> Option<&'a str> {
        let t = self.peek();
        (t.kind == Tok::Word).then(|| self.text(t))
    }

    pub fn is_word(&mut self, w: &str) -> bool {
        let t = self.peek();
        self.word_is(t, w)
    }

    /// Is `t` the word `w`? (The length first: most words asked about are not the next one.)
    #[inline]
    fn word_is(&self, t: Token, w: &str) -> bool {
        t.kind == Tok::Word
            && (t.span.hi - t.span.lo) as usize == w.len()
            && self.srcs[t.span.src as usize]
                .text
                .as_bytes()
                .get(t.span.lo as usize..t.span.hi as usize)
                == Some(w.as_bytes())
    }

    pub fn eat_word(&mut self, w: &str) -> bool {
        if self.is_word(w) {
            self.next();
            true
        } else {
            false
        }
    }

    pub fn eat(&mut self, k: Tok) -> bool {
        if self.peek().kind == k {
            self.next();
            true
        } else {
            false
        }
    }

    pub fn err(&self, span: Span, msg: impl Into<String>) -> Diagnostic {
        let s = &self.srcs[span.src as usize];
        let mut d = Diagnostic::at(&s.name, s.text, span.lo as usize, span.hi as usize, msg);
        let mut from = s.from;
        while let Some(inc) = from {
            let p = &self.srcs[inc.src as usize];
            let at = Diagnostic::at(&p.name, p.text, inc.lo as usize, inc.hi as usize, "");
            let end = at.col_start + (inc.hi - inc.lo).saturating_sub(1);
            d.extra_mut()
                .included_from
                .push((at.file, at.line, at.col_start, end));
            from = p.from;
        }
        d
    }

    /// nft's name for a token in "unexpected X" messages.
    pub fn describe(&self, t: Token) -> String {
        match t.kind {
            Tok::Word => {
                let w = self.text(t);
                if KEYWORDS.contains(&w) || NAME_KEYWORDS.contains(&w) || self.scope_kw.contains(&w)
                {
                    w.to_string()
                } else {
                    "string".into()
                }
            }
            Tok::Num => "number".into(),
            Tok::Addr => "string".into(),
            Tok::Quoted => "quoted string".into(),
            Tok::Var => "variable".into(),
            Tok::At => "string".into(),
            Tok::Newline => "newline".into(),
            Tok::Semi => "semicolon".into(),
            Tok::Comma => "comma".into(),
            Tok::Eof => "end of file".into(),
            Tok::Slash => "slash".into(),
            Tok::Dash => "dash".into(),
            Tok::Dot => "dot".into(),
            Tok::Colon => "colon".into(),
            Tok::Star => "asterisk".into(),
            Tok::Junk => "junk".to_string(),
            _ => format!("'{}'", self.text(t)),
        }
    }

    /// Records an evaluation error and lets parsing go on.
    pub fn sem_err(&mut self, span: Span, msg: impl Into<String>) {
        let d = self.err(span, msg);
        self.sem_errors.push(d);
    }

    pub fn unexpected(&self, t: Token, expecting: Option<&str>) -> Diagnostic {
        let mut m = format!("syntax error, unexpected {}", self.describe(t));
        if let Some(e) = expecting {
            m.push_str(", expecting ");
            m.push_str(e);
        }
        let span = if t.kind == Tok::Newline {
            Span {
                hi: t.span.lo + 1,
                ..t.span
            }
        } else {
            t.span
        };
        self.err(span, m)
    }

    pub fn expect(&mut self, k: Tok, what: &str) -> PResult<Token> {
        let t = self.peek();
        if t.kind == k {
            Ok(self.next())
        } else {
            Err(self.unexpected(t, Some(what)))
        }
    }

    pub fn expect_word(&mut self, w: &str) -> PResult<Token> {
        let t = self.peek();
        if self.word_is(t, w) {
            Ok(self.next())
        } else {
            Err(self.unexpected(t, Some(w)))
        }
    }

    /// An identifier (table/chain/set name): word or quoted string.
    pub fn identifier(&mut self) -> PResult<(String, Span)> {
        let t = self.peek();
        match t.kind {
            Tok::Word | Tok::Quoted | Tok::Num => {
                self.next();
                let s = self.string_of(t);
                if s.is_empty() {
                    // the kernel refuses empty names
                    return Err(self.err(t.span, "Could not process rule: Invalid argument"));
                }
                Ok((s, t.span))
            }
            _ => Err(self.unexpected(t, Some("string"))),
        }
    }

    /// A name (table, chain, set, object, variable): a plain word that is no keyword in nft's
    /// scanner; nft 1.0.6 refuses keywords, quoted strings and numbers there.
    pub fn name(&mut self) -> PResult<(String, Span)> {
        self.name_expecting("string")
    }

    /// [`Parser::name`] where nft's grammar also takes something else (its "expecting" text).
    pub fn name_expecting(&mut self, expecting: &str) -> PResult<(String, Span)> {
        let t = self.peek();
        if t.kind == Tok::Word {
            let w = self.text(t);
            if !NAME_KEYWORDS.contains(&w) && !self.scope_kw.contains(&w) {
                return self.identifier();
            }
        }
        Err(self.unexpected(t, Some(expecting)))
    }

    /// The name in an `@name` token, refused as [`Parser::name`] refuses it (nft's scanner reads
    /// `@` and the name as two tokens).
    pub fn at_name(&self, t: Token) -> PResult<String> {
        let w = &self.text(t)[1..];
        if NAME_KEYWORDS.contains(&w) {
            let span = Span {
                lo: t.span.lo + 1,
                ..t.span
            };
            return Err(self.err(
                span,
                format!("syntax error, unexpected {w}, expecting string"),
            ));
        }
        Ok(w.to_string())
    }

    pub fn number(&mut self) -> PResult<(u64, Span)> {
        let t = self.peek();
        if t.kind == Tok::Num {
            self.next();
            match crate::types::parse_number(self.text(t)) {
                Some(v) if v <= u64::MAX as u128 => Ok((v as u64, t.span)),
                _ => Err(self.err(t.span, "Value out of range")),
            }
        } else {
            Err(self.unexpected(t, Some("number")))
        }
    }

    pub fn quoted(&mut self) -> PResult<String> {
        let t = self.peek();
        if t.kind == Tok::Quoted {
            self.next();
            Ok(self.string_of(t))
        } else {
            Err(self.unexpected(t, Some("quoted string")))
        }
    }

    fn skip_separators(&mut self) {
        while matches!(self.peek().kind, Tok::Newline | Tok::Semi) {
            self.next();
        }
    }

    fn end_of_command(&mut self) -> PResult<()> {
        let t = self.peek();
        match t.kind {
            Tok::Newline | Tok::Semi => {
                self.next();
                Ok(())
            }
            Tok::Eof => Ok(()),
            _ => Err(self.unexpected(t, Some("end of file or newline or semicolon"))),
        }
    }

    // ---------------------------------------------------------------- commands

    /// Parses and applies the whole input. Like nft, every error is reported (up to nft's limit):
    /// syntax errors first, then the evaluation errors of the commands that parsed; the kernel's
    /// refusals only if there were none of those.
    pub fn parse_file(&mut self) -> PResult<()> {
        loop {
            self.skip_separators();
            if self.peek().kind == Tok::Eof {
                break;
            }
            self.errors.cmd_seq += 1;
            self.cmd_table_span = None;
            let r = self.unit(PHASE_CMD, |p| {
                p.command()?;
                p.end_of_command()
            });
            match r {
                Ok(_) => {
                    self.commit_command();
                    // the kernel looks a jump's chain up when the rule is added: a chain added by a
                    // later command is not there yet (a table block adds its chains first)
                    let missing = self.check_jumps();
                    self.errors.kernel.extend(missing);
                }
                Err(d) => {
                    // bison drops the command the error is in
                    self.errors.cmd.clear();
                    self.pending_jumps.clear();
                    if self.recover(d).is_err() {
                        break;
                    }
                }
            }
        }
        self.errors.cmd.clear();
        for d in std::mem::take(&mut self.sem_errors) {
            self.errors.eval.push(((u32::MAX, 0, 0), d));
        }
        let e = &mut self.errors;
        if !e.syntax.is_empty() || !e.eval.is_empty() {
            let mut all = std::mem::take(&mut e.syntax);
            e.eval.sort_by_key(|(k, _)| *k);
            // nft counts both kinds together and stops evaluating at its limit, unless the parser
            // already gave up (then the count is past the limit and never meets it again)
            let room = if all.len() >= MAX_ERRORS {
                usize::MAX
            } else {
                MAX_ERRORS - all.len()
            };
            all.extend(e.eval.drain(..).map(|(_, d)| d).take(room));
            return Err(Diagnostic::join(all).unwrap());
        }
        let kernel = std::mem::take(&mut e.kernel);
        match Diagnostic::join(kernel) {
            Some(d) => Err(d),
            None => Ok(()),
        }
    }

    /// Parses one unit nft evaluates on its own (a command, or a rule, chain, set or object of a
    /// table block) and records its first evaluation error, as nft does. An evaluation error
    /// skips the rest of the unit; a syntax error is returned for the enclosing block to recover.
    pub(crate) fn unit<T>(
        &mut self,
        phase: u8,
        f: impl FnOnce(&mut Self) -> PResult<T>,
    ) -> PResult<Option<T>> {
        let mark = self.sem_errors.len();
        let depth = self.depth;
        let r = f(self);
        let errs = self.sem_errors.split_off(mark);
        match r {
            Ok(v) => {
                if let Some(d) = errs.into_iter().next() {
                    self.note(phase, d);
                }
                Ok(Some(v))
            }
            Err(d) if self.errors.aborted || class_of(&d) == ErrClass::Syntax => Err(d),
            Err(d) => {
                let first = errs.into_iter().next().unwrap_or(d);
                self.note(phase, first);
                self.skip_rest(depth);
                Ok(None)
            }
        }
    }

    /// Records an evaluation (or kernel) error of the command being parsed.
    fn note(&mut self, phase: u8, d: Diagnostic) {
        let kernel = match self.kernel_refusals.iter().position(|k| *k == d) {
            Some(i) => {
                self.kernel_refusals.swap_remove(i);
                true
            }
            None => false,
        };
        let e = &mut self.errors;
        e.seq += 1;
        let class = match class_of(&d) {
            _ if kernel => ErrClass::Kernel,
            ErrClass::Kernel => ErrClass::Kernel,
            _ => ErrClass::Eval,
        };
        e.cmd.push((class, (e.cmd_seq, phase, e.seq), d));
    }

    fn commit_command(&mut self) {
        for (class, key, d) in self.errors.cmd.drain(..) {
            match class {
                ErrClass::Kernel => self.errors.kernel.push(d),
                _ => self.errors.eval.push((key, d)),
            }
        }
    }

    /// Skips what is left of a unit after an evaluation error: up to its end (newline, `;` or the
    /// `}` of the block it is in), over any braces it opened.
    fn skip_rest(&mut self, depth: u32) {
        loop {
            match self.peek().kind {
                Tok::Eof => return,
                Tok::Newline | Tok::Semi | Tok::RBrace if self.depth <= depth => return,
                _ => {
                    self.next();
                }
            }
        }
    }

    /// In a block whose lines are not evaluated on their own (a set's), a syntax error is
    /// recovered from like in [`Parser::recover`]; other errors end the block.
    pub(crate) fn recover_in_block(&mut self, d: Diagnostic) -> PResult<()> {
        if self.errors.aborted || class_of(&d) != ErrClass::Syntax {
            return Err(d);
        }
        self.recover(d)
    }

    /// After a syntax error: records it and, like bison's `error stmt_separator` rule, skips to the
    /// next newline or `;` so that the block being parsed goes on. `Err` when parsing stops: at the
    /// end of the input, or at nft's error limit.
    pub(crate) fn recover(&mut self, d: Diagnostic) -> PResult<()> {
        if self.errors.aborted {
            return Err(d);
        }
        if class_of(&d) == ErrClass::Syntax {
            self.errors.syntax.push(d.clone());
        } else {
            self.note(PHASE_CMD, d.clone());
        }
        if self.errors.syntax.len() >= MAX_ERRORS {
            self.errors.aborted = true;
            return Err(d);
        }
        loop {
            match self.peek().kind {
                Tok::Newline | Tok::Semi => {
                    self.next();
                    return Ok(());
                }
                Tok::Eof => {
                    self.errors.aborted = true;
                    return Err(d);
                }
                _ => {
                    self.next();
                }
            }
        }
    }

    /// Records a jump/goto target in the current table, checked at the end of the command.
    pub fn push_jump(&mut self, target: &str, span: Span) {
        if let Some((f, t)) = self.cur_table.clone() {
            self.pending_jumps.push((f, t, target.to_string(), span));
        }
    }

    /// The jumps of the command just applied to chains that do not exist (the kernel refuses each
    /// rule).
    fn check_jumps(&mut self) -> Vec<Diagnostic> {
        let jumps = std::mem::take(&mut self.pending_jumps);
        if jumps.is_empty() {
            return Vec::new();
        }
        // a big block's many jumps: one index of the chains rather than a scan per jump
        let index: Option<std::collections::HashSet<(Family, &str, &str)>> = (jumps.len() > 16)
            .then(|| {
                (self.rs.tables.iter())
                    .flat_map(|t| t.chains.iter().map(move |c| (t.family, &*t.name, &*c.name)))
                    .collect()
            });
        let exists = |fam: Family, table: &str, target: &str| match &index {
            Some(ix) => ix.contains(&(fam, table, target)),
            None => (self.rs.table(fam, table))
                .is_some_and(|t| t.chains.iter().any(|c| c.name == target)),
        };
        let missing: Vec<Span> = (jumps.iter())
            .filter(|(fam, table, target, _)| !exists(*fam, table, target))
            .map(|j| j.3)
            .collect();
        missing
            .into_iter()
            .map(|span| self.err(span, "Could not process rule: No such file or directory"))
            .collect()
    }

    fn command(&mut self) -> PResult<()> {
        let t = self.peek();
        if t.kind != Tok::Word {
            return Err(self.unexpected(t, None));
        }
        let w = self.text(t);
        match w {
            "add" | "create" | "insert" | "replace" => {
                self.next();
                self.add_cmd(w)
            }
            "table" => {
                self.next();
                self.table_cmd(false)
            }
            // nft's grammar takes an `add` command without `add` (`set ip t s { ... }`)
            "set" | "map" | "element" | "counter" | "quota" | "limit" | "ct" | "synproxy"
            | "secmark" | "flowtable" => self.add_cmd("add"),
            "chain" => {
                self.next();
                self.chain_cmd(false)
            }
            "rule" => {
                self.next();
                self.rule_cmd("add")
            }
            "flush" => {
                self.next();
                self.flush_cmd()
            }
            "delete" | "destroy" => {
                self.next();
                self.delete_cmd(w == "destroy")
            }
            "define" | "redefine" => {
                self.next();
                self.define_cmd(w == "redefine")
            }
            "undefine" => {
                self.next();
                let (name, _) = self.name()?;
                self.defines.remove(&name);
                Ok(())
            }
            "include" => {
                self.next();
                self.include_cmd()
            }
            "list" | "reset" => {
                self.next();
                self.list_cmd(w == "reset")
            }
            // a rule without `add rule` (`ip t c accept`): nft's scanner makes keywords other than
            // family names tokens that cannot start a command
            _ if KEYWORDS.contains(&w) && Family::from_name(w).is_none() => {
                Err(self.unexpected(t, None))
            }
            _ => self.rule_cmd("add"),
        }
    }

    /// What follows `add`, `create`, `insert` or `replace` (`w`).
    fn add_cmd(&mut self, w: &str) -> PResult<()> {
        let obj = self.peek();
        let o = self.peek_word().unwrap_or_default();
        match o {
            "table" => {
                self.next();
                self.table_cmd(w == "create")
            }
            "chain" => {
                self.next();
                self.chain_cmd(w == "create")
            }
            "rule" => {
                self.next();
                self.rule_cmd(w)
            }
            "set" | "map" => {
                self.next();
                let (family, table, tspan) = self.table_spec()?;
                self.cmd_table_span = Some(tspan);
                let (name, span) = self.name()?;
                self.set_decl(family, &table, &name, span, o == "map", w == "create")
            }
            "element" => {
                self.next();
                self.element_cmd(w)
            }
            "ct" | "synproxy" | "secmark" => {
                self.next();
                let kind = if o == "synproxy" {
                    crate::types::ObjKind::Synproxy
                } else if o == "secmark" {
                    crate::types::ObjKind::Secmark
                } else {
                    let (sub, ss) = self.identifier()?;
                    match sub.as_str() {
                        "helper" => crate::types::ObjKind::CtHelper,
                        "timeout" => crate::types::ObjKind::CtTimeout,
                        "expectation" => crate::types::ObjKind::CtExpectation,
                        _ => return Err(self.err(ss, "unknown ct object")),
                    }
                };
                let (family, table, tspan) = self.obj_table_spec(kind)?;
                self.cmd_table_span = Some(tspan);
                self.cur_table = Some((family, table.clone()));
                self.obj_decl(family, &table, kind)
            }
            "counter" | "quota" | "limit" | "flowtable" => {
                self.next();
                let (family, table, tspan) = match o {
                    "counter" => self.obj_table_spec(crate::types::ObjKind::Counter)?,
                    "quota" => self.obj_table_spec(crate::types::ObjKind::Quota)?,
                    "limit" => self.obj_table_spec(crate::types::ObjKind::Limit)?,
                    _ => self.table_spec()?,
                };
                self.cmd_table_span = Some(tspan);
                self.cur_table = Some((family, table.clone()));
                match o {
                    "counter" => self.obj_decl(family, &table, crate::types::ObjKind::Counter),
                    "quota" => self.obj_decl(family, &table, crate::types::ObjKind::Quota),
                    "limit" => self.obj_decl(family, &table, crate::types::ObjKind::Limit),
                    _ => self.flowtable_decl(family, &table),
                }
            }
            _ if obj.kind == Tok::Word && w != "create" => self.rule_cmd(w),
            _ => Err(self.unexpected(obj, None)),
        }
    }

    /// `[family] name`
    pub fn table_spec(&mut self) -> PResult<(Family, String, Span)> {
        self.table_spec_expecting("string")
    }

    /// [`Parser::table_spec`] where nft's grammar also takes something else than the name
    /// (`delete table handle N`: "expecting handle or string").
    fn table_spec_expecting(&mut self, expecting: &str) -> PResult<(Family, String, Span)> {
        let t = self.peek();
        let mut family = Family::Ip;
        if t.kind == Tok::Word {
            if let Some(f) = Family::from_name(self.text(t)) {
                let n = self.peek2();
                if matches!(n.kind, Tok::Word | Tok::Quoted | Tok::Num) {
                    self.next();
                    family = f;
                }
            }
        }
        let (name, span) = self.name_expecting(expecting)?;
        Ok((family, name, span))
    }

    /// [`Parser::table_spec`] after an object's keyword (in nft's scanner state for it).
    fn obj_table_spec(&mut self, kind: crate::types::ObjKind) -> PResult<(Family, String, Span)> {
        // (left in that state after a syntax error, as nft's scanner is)
        let scope = std::mem::replace(&mut self.scope_kw, obj_scope(kind));
        let r = self.table_spec()?;
        self.scope_kw = scope;
        Ok(r)
    }

    fn ensure_table(&mut self, family: Family, name: &str) {
        if self.rs.table(family, name).is_none() {
            let h = self.rs.alloc_table_handle();
            self.rs.tables.push(Table::new(family, name, h));
        }
    }

    fn table_cmd(&mut self, create: bool) -> PResult<()> {
        let (family, name, span) = self.table_spec()?;
        if create && self.rs.table(family, &name).is_some() {
            return Err(self.err(span, "Could not process rule: File exists"));
        }
        self.ensure_table(family, &name);
        if self.eat(Tok::LBrace) {
            self.table_block(family, &name)?;
        }
        Ok(())
    }

    fn table_block(&mut self, family: Family, table: &str) -> PResult<()> {
        let first = self.rs.table(family, table).map(|t| t.next_handle);
        let outer = self.block_table.replace((family, table.to_string()));
        let outer_objs = std::mem::take(&mut self.pending_objs);
        let r = self.table_items(family, table);
        self.block_table = outer;
        let pending = std::mem::replace(&mut self.pending_objs, outer_objs);
        r?;
        for (kind, name, span) in pending {
            let found = (self.rs.table(family, table))
                .is_some_and(|t| t.objs.iter().any(|o| o.name == name && o.kind() == kind));
            if !found {
                let d = self.err(span, "Could not process rule: No such file or directory");
                self.note(PHASE_RULE, d);
            }
        }
        if let (Some(first), Some(t)) = (first, self.rs.table_mut(family, table)) {
            renumber_block(t, first);
        }
        Ok(())
    }

    fn table_items(&mut self, family: Family, table: &str) -> PResult<()> {
        loop {
            self.skip_separators();
            if self.peek().kind == Tok::RBrace {
                self.next();
                return Ok(());
            }
            if let Err(d) = self.table_item(family, table) {
                self.recover(d)?;
            }
        }
    }

    /// One declaration in a table block, evaluated on its own (see [`Parser::unit`]).
    fn table_item(&mut self, family: Family, table: &str) -> PResult<()> {
        let t = self.peek();
        if t.kind != Tok::Word {
            return Err(self.unexpected(t, None));
        }
        let w = self.text(t);
        let phase = match w {
            "chain" => PHASE_CHAIN,
            "set" | "map" => PHASE_SET,
            "flowtable" => PHASE_FLOWTABLE,
            "counter" | "quota" | "limit" | "synproxy" | "secmark" | "ct" => PHASE_OBJ,
            _ => PHASE_CMD,
        };
        self.unit(phase, |p| p.table_decl(family, table, t, w))?;
        Ok(())
    }

    fn table_decl(&mut self, family: Family, table: &str, t: Token, w: &str) -> PResult<()> {
        self.next();
        {
            match w {
                "chain" => {
                    let (cname, span) = self.name()?;
                    self.ensure_chain(family, table, &cname, span, false)?;
                    self.chain_name_span = Some(span);
                    self.expect(Tok::LBrace, "'{'")?;
                    self.chain_block(family, table, &cname)?;
                }
                "comment" => {
                    let c = self.quoted()?;
                    self.rs.table_mut(family, table).unwrap().comment = Some(c);
                }
                "set" | "map" => {
                    let (name, span) = self.name()?;
                    self.set_decl(family, table, &name, span, w == "map", false)?;
                }
                "counter" => self.obj_decl(family, table, crate::types::ObjKind::Counter)?,
                "quota" => self.obj_decl(family, table, crate::types::ObjKind::Quota)?,
                "limit" => self.obj_decl(family, table, crate::types::ObjKind::Limit)?,
                "flowtable" => self.flowtable_decl(family, table)?,
                "synproxy" => self.obj_decl(family, table, crate::types::ObjKind::Synproxy)?,
                "secmark" => self.obj_decl(family, table, crate::types::ObjKind::Secmark)?,
                "ct" => {
                    let (sub, ss) = self.identifier()?;
                    let kind = match sub.as_str() {
                        "helper" => crate::types::ObjKind::CtHelper,
                        "timeout" => crate::types::ObjKind::CtTimeout,
                        "expectation" => crate::types::ObjKind::CtExpectation,
                        _ => return Err(self.err(ss, "unknown ct object")),
                    };
                    self.obj_decl(family, table, kind)?
                }
                "flags" => {
                    let mut flags = Vec::new();
                    loop {
                        let (f, span) = self.identifier()?;
                        if !matches!(f.as_str(), "dormant" | "owner" | "persist") {
                            return Err(self.err(span, format!("unknown table flag '{f}'")));
                        }
                        flags.push(f);
                        if !self.eat(Tok::Comma) {
                            break;
                        }
                    }
                    self.rs.table_mut(family, table).unwrap().flags = flags;
                }
                _ => return Err(self.unexpected(t, None)),
            }
            let t = self.peek();
            if !matches!(t.kind, Tok::Newline | Tok::Semi | Tok::RBrace) {
                return Err(self.unexpected(t, Some("newline or semicolon")));
            }
            Ok(())
        }
    }

    fn ensure_chain(
        &mut self,
        family: Family,
        table: &str,
        name: &str,
        span: Span,
        create: bool,
    ) -> PResult<()> {
        let Some(t) = self.rs.table_mut(family, table) else {
            return Err(self.err(span, "Could not process rule: No such file or directory"));
        };
        if t.chain(name).is_some() {
            if create {
                return Err(self.err(span, "Could not process rule: File exists"));
            }
            return Ok(());
        }
        let handle = t.alloc_handle();
        t.chains.push(Chain {
            name: name.to_string(),
            handle,
            base: None,
            rules: Vec::new(),
            comment: None,
        });
        Ok(())
    }

    /// `[family] table chain`
    fn chain_cmd(&mut self, create: bool) -> PResult<()> {
        let (family, table, tspan) = self.table_spec()?;
        let (chain, span) = self.name()?;
        if self.rs.table(family, &table).is_none() {
            return Err(self.table_not_found(&table, tspan));
        }
        self.ensure_chain(family, &table, &chain, span, create)?;
        self.chain_name_span = Some(span);
        if self.eat(Tok::LBrace) {
            self.chain_block(family, &table, &chain)?;
        }
        Ok(())
    }

    fn chain_block(&mut self, family: Family, table: &str, chain: &str) -> PResult<()> {
        let mut at: Option<(usize, usize)> = None;
        loop {
            self.skip_separators();
            if self.peek().kind == Tok::RBrace {
                self.next();
                return Ok(());
            }
            if let Err(d) = self.chain_item(family, table, chain, &mut at) {
                self.recover(d)?;
            }
        }
    }

    /// One line of a chain block: a rule, or the chain's type, policy or comment.
    fn chain_item(
        &mut self,
        family: Family,
        table: &str,
        chain: &str,
        at: &mut Option<(usize, usize)>,
    ) -> PResult<()> {
        {
            let t = self.peek();
            if t.kind == Tok::Eof {
                return Err(self.unexpected(t, None));
            }
            let w = self.peek_word().unwrap_or_default();
            match w {
                "type" => {
                    let Some(base) = self.unit(PHASE_CHAIN, |p| p.base_chain_spec(family))? else {
                        return Ok(());
                    };
                    let c = self
                        .rs
                        .table_mut(family, table)
                        .unwrap()
                        .chain_mut(chain)
                        .unwrap();
                    let policy = c.base.as_ref().map(|b| b.policy).unwrap_or(Policy::Accept);
                    c.base = Some(BaseChain { policy, ..base });
                }
                "policy" => {
                    self.unit(PHASE_CHAIN, |p| {
                        p.next();
                        let (pol, span) = p.identifier()?;
                        let policy = match pol.as_str() {
                            "accept" => Policy::Accept,
                            "drop" => Policy::Drop,
                            _ => {
                                let t = crate::lex::Token {
                                    kind: Tok::Word,
                                    span,
                                };
                                return Err(p.unexpected(t, Some("accept or drop or '$'")));
                            }
                        };
                        let c =
                            p.rs.table_mut(family, table)
                                .unwrap()
                                .chain_mut(chain)
                                .unwrap();
                        match &mut c.base {
                            Some(b) => b.policy = policy,
                            None => {
                                return Err(
                                    p.err(span, "policy specified for a chain without a hook")
                                );
                            }
                        }
                        Ok(())
                    })?;
                }
                // keywords that cannot start a statement: nft's parser stops at them
                "table" | "chain" | "rule" | "ruleset" | "flush" | "insert" | "create" | "list"
                | "replace" => return Err(self.unexpected(t, None)),
                "comment" if matches!(self.peek2().kind, Tok::Quoted) => {
                    self.next();
                    let s = self.quoted()?;
                    self.rs
                        .table_mut(family, table)
                        .unwrap()
                        .chain_mut(chain)
                        .unwrap()
                        .comment = Some(s);
                }
                _ => {
                    let Some(rule) = self.unit(PHASE_RULE, |p| p.rule(family, table))? else {
                        return Ok(());
                    };
                    // where the rule goes, found once per block (tables and chains are searched by name)
                    let (ti, ci) = match *at {
                        Some((ti, ci))
                            if self.rs.tables.get(ti).is_some_and(|t| {
                                t.family == family
                                    && t.name == table
                                    && t.chains.get(ci).is_some_and(|c| c.name == chain)
                            }) =>
                        {
                            (ti, ci)
                        }
                        _ => {
                            let ti = (self.rs.tables.iter())
                                .position(|t| t.family == family && t.name == table)
                                .unwrap();
                            let ci = (self.rs.tables[ti].chains.iter())
                                .position(|c| c.name == chain)
                                .unwrap();
                            *at = Some((ti, ci));
                            (ti, ci)
                        }
                    };
                    let t = &mut self.rs.tables[ti];
                    let handle = t.alloc_handle();
                    t.chains[ci].rules.push(Rule { handle, ..rule });
                }
            }
            let t = self.peek();
            if !matches!(t.kind, Tok::Newline | Tok::Semi | Tok::RBrace) {
                return Err(self.unexpected(t, Some("newline or semicolon")));
            }
            Ok(())
        }
    }

    /// `type filter hook input [device "x"] priority P ;`
    fn base_chain_spec(&mut self, family: Family) -> PResult<BaseChain> {
        let type_kw = self.expect_word("type")?;
        let (ty, tspan) = self.identifier()?;
        let ty = match ty.as_str() {
            "filter" => ChainType::Filter,
            "nat" => ChainType::Nat,
            "route" => ChainType::Route,
            _ => return Err(self.err(tspan, "unknown chain type")),
        };
        self.expect_word("hook")?;
        let (h, hspan) = self.identifier()?;
        let hook = match Hook::from_name(&h) {
            Some(hk) if hk.valid_for(family) => hk,
            // nft knows the hook for arp; the kernel does not
            Some(Hook::Forward) if family == Family::Arp => {
                let span = self.chain_name_span.unwrap_or(hspan);
                return Err(self.err(span, "Could not process rule: Operation not supported"));
            }
            Some(_) => {
                let msg = format!("The {} family does not support this hook", family.name());
                return Err(self.err(hspan, msg));
            }
            None => return Err(self.err(hspan, "unknown chain hook")),
        };
        let mut devices = Vec::new();
        if self.eat_word("device") {
            let (d, _) = self.identifier()?;
            devices.push(d);
        } else if self.eat_word("devices") {
            self.expect(Tok::Eq, "'='")?;
            self.expect(Tok::LBrace, "'{'")?;
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
            devices.sort();
        }
        let pk = self.expect_word("priority")?;
        self.prio_kw = Some(pk.span);
        let priority = self.priority(family, hook)?;
        self.prio_kw = None;
        if devices.is_empty()
            && (family == Family::Netdev || (family == Family::Inet && hook == Hook::Ingress))
        {
            return Err(self.err(
                type_kw.span.to(self.prev),
                "Missing `device' in this chain definition",
            ));
        }
        let t = self.peek();
        if !matches!(t.kind, Tok::Semi | Tok::Newline) {
            return Err(self.unexpected(t, Some("semicolon")));
        }
        let compat = match ty {
            ChainType::Filter => true,
            ChainType::Nat => matches!(
                hook,
                Hook::Prerouting | Hook::Input | Hook::Output | Hook::Postrouting
            ),
            ChainType::Route => {
                hook == Hook::Output && matches!(family, Family::Ip | Family::Ip6 | Family::Inet)
            }
        };
        if !compat {
            let span = self.chain_name_span.unwrap_or(tspan);
            return Err(self.err(span, "Could not process rule: Operation not supported"));
        }
        if ty == ChainType::Nat && !matches!(family, Family::Ip | Family::Ip6 | Family::Inet) {
            return Err(self.err(
                tspan,
                format!(
                    "Chain type nat is not supported for {} family",
                    family.name()
                ),
            ));
        }
        Ok(BaseChain {
            ty,
            hook,
            priority,
            policy: Policy::Accept,
            devices,
        })
    }

    pub fn skip_newlines(&mut self) {
        while self.peek().kind == Tok::Newline {
            self.next();
        }
    }

    pub(crate) fn priority_value(&mut self, family: Family, hook: Hook) -> PResult<i32> {
        self.priority(family, hook)
    }

    fn priority(&mut self, family: Family, hook: Hook) -> PResult<i32> {
        let t = self.peek();
        let neg = |p: &mut Self| p.eat(Tok::Dash);
        match t.kind {
            Tok::Num | Tok::Dash => {
                let n = neg(self);
                let (v, span) = self.number()?;
                if v > i32::MAX as u64 {
                    return Err(self.err(span, "priority value out of range"));
                }
                Ok(if n { -(v as i32) } else { v as i32 })
            }
            Tok::Word => {
                self.next();
                let name = self.text(t);
                let kw = self.prio_kw.unwrap_or(t.span);
                let Some(&(_, base)) = std_prios(family).iter().find(|(n, _)| *n == name) else {
                    return Err(self.err(
                        kw.to(t.span),
                        "invalid priority expression value in this context.",
                    ));
                };
                if !std_prio_ok(family, hook, name) {
                    return Err(self.err(
                        kw.to(t.span),
                        "invalid priority expression value in this context.",
                    ));
                }
                let op = self.peek();
                let sign = match op.kind {
                    Tok::Plus => 1,
                    Tok::Dash => -1,
                    _ => return Ok(base),
                };
                self.next();
                let (v, _) = self.number()?;
                Ok(base + sign * v as i32)
            }
            _ => Err(self.unexpected(t, None)),
        }
    }

    /// `add|insert rule [family] table chain [handle N|position N|index N] RULE`
    fn rule_cmd(&mut self, verb: &str) -> PResult<()> {
        let (family, table, tspan) = self.table_spec()?;
        let (chain, span) = self.name()?;
        let mut position: Option<(String, u64, Span)> = None;
        for kw in ["handle", "position", "index"] {
            if self.is_word(kw) && self.peek2().kind == Tok::Num {
                self.next();
                let (n, sp) = self.number()?;
                position = Some((kw.to_string(), n, sp));
                break;
            }
        }
        // the kernel's refusal, with nft's suggestion (nft does not check the chain before)
        let has_table = self.rs.table(family, &table).is_some();
        if !self
            .rs
            .table(family, &table)
            .is_some_and(|t| t.chain(&chain).is_some())
        {
            let loc = if has_table { span } else { tspan };
            let c = Some(chain.as_str());
            return Err(self.enoent_in(Some(What::Chain), family, &table, tspan, c, loc, true));
        }
        let rule = self.rule(family, &table)?;
        let t = self.rs.table_mut(family, &table).unwrap();
        let handle = t.alloc_handle();
        let c = t.chain_mut(&chain).unwrap();
        let rule = Rule { handle, ..rule };
        let insert = verb == "insert";
        let idx = match position {
            None => {
                if insert {
                    0
                } else {
                    c.rules.len()
                }
            }
            Some((kw, n, sp)) => {
                let i = if kw == "index" {
                    if n as usize > c.rules.len() {
                        return Err(
                            self.err(sp, "Could not process rule: No such file or directory")
                        );
                    }
                    n as usize
                } else {
                    match c.rules.iter().position(|r| r.handle == n) {
                        Some(i) => i,
                        None => {
                            return Err(
                                self.err(sp, "Could not process rule: No such file or directory")
                            )
                        }
                    }
                };
                if verb == "replace" {
                    let old = c.rules[i].handle;
                    c.rules[i] = Rule {
                        handle: old,
                        ..rule
                    };
                    return Ok(());
                }
                if insert || kw == "index" {
                    i
                } else {
                    i + 1
                }
            }
        };
        c.rules.insert(idx, rule);
        Ok(())
    }

    fn flush_cmd(&mut self) -> PResult<()> {
        let flush_kw = self.prev;
        let t = self.peek();
        let w = self.peek_word().unwrap_or_default();
        match w {
            "ruleset" => {
                self.next();
                let fam = self.peek_word().and_then(Family::from_name);
                if let Some(f) = fam {
                    self.next();
                    self.rs.tables.retain(|t| t.family != f);
                } else {
                    self.rs.tables.clear();
                }
                Ok(())
            }
            "table" => {
                self.next();
                let (f, name, span) = self.table_spec()?;
                let Some(t) = self.rs.table_mut(f, &name) else {
                    return Err(self.enoent(None, f, &name, span, Some(&name), span));
                };
                for c in &mut t.chains {
                    c.rules.clear();
                }
                Ok(())
            }
            "chain" => {
                self.next();
                let (f, table, tspan) = self.table_spec()?;
                let (chain, span) = self.name()?;
                let Some(c) = self
                    .rs
                    .table_mut(f, &table)
                    .and_then(|t| t.chain_mut(&chain))
                else {
                    let loc = if self.rs.table(f, &table).is_some() {
                        span
                    } else {
                        tspan
                    };
                    return Err(self.enoent(
                        Some(What::Chain),
                        f,
                        &table,
                        tspan,
                        Some(&chain),
                        loc,
                    ));
                };
                c.rules.clear();
                Ok(())
            }
            // evaluation errors, as nft's `cmd_evaluate_flush` reports them
            "set" | "map" => {
                self.next();
                let (f, table, tspan) = self.table_spec()?;
                let (name, span) = self.name()?;
                let is_map = w == "map";
                let Some(t) = self.rs.table(f, &table) else {
                    return Err(self.table_not_found(&table, tspan));
                };
                match t.sets.iter().position(|s| s.name == name) {
                    None => Err(self.set_not_found(&name, span)),
                    Some(i) if t.sets[i].is_map != is_map => {
                        Err(self.err(span, "No such file or directory"))
                    }
                    Some(i) => {
                        self.rs.table_mut(f, &table).unwrap().sets[i].elems.clear();
                        Ok(())
                    }
                }
            }
            // the kernel cannot flush a meter (EOPNOTSUPP); nft 1.0.6 does not find one that its
            // own file made (anonymous sets are not in its cache of the file)
            "meter" => {
                self.next();
                let (f, table, tspan) = self.table_spec()?;
                let (name, span) = self.name()?;
                let Some(t) = self.rs.table(f, &table) else {
                    return Err(self.table_not_found(&table, tspan));
                };
                let made_here =
                    (self.new_meters.iter()).any(|m| m.0 == f && m.1 == table && m.2 == name);
                if !made_here && t.sets.iter().any(|s| s.meter && s.name == name) {
                    return Err(self.err(
                        flush_kw.to(span),
                        "Could not process rule: Operation not supported",
                    ));
                }
                Err(self.err(span, "No such file or directory"))
            }
            _ => Err(self.unexpected(t, None)),
        }
    }

    /// nft's `table_not_found`: an evaluation error at the table's name, with a suggestion.
    pub(crate) fn table_not_found(&self, name: &str, span: Span) -> Diagnostic {
        let span = self.cmd_table_span.unwrap_or(span);
        match misspell::table(self.rs, name) {
            Some(t) => self.err(span, misspell::table_suggestion(t)),
            None => self.err(span, "No such file or directory"),
        }
    }

    /// nft's `set_not_found`, `chain_not_found` and `obj_not_found`: an evaluation error at the
    /// name, with a suggestion.
    pub(crate) fn not_found(&self, what: What, name: &str, span: Span) -> Diagnostic {
        match misspell::lookup(self.rs, what, name) {
            Some(found) => self.err(span, misspell::suggestion(what, &found)),
            None => self.err(span, "No such file or directory"),
        }
    }

    fn set_not_found(&self, name: &str, span: Span) -> Diagnostic {
        self.not_found(What::Set, name, span)
    }

    /// The kernel's refusal (ENOENT) of a command on something missing, as nft 1.0.6 reports it
    /// (`nft_cmd_enoent`): `what` is missing (`None`: the table), in `family table` (at
    /// `tspan`), named `name` (`None` when named by handle); `loc` is where the kernel's complaint
    /// points (the table's name when the table is missing, else the name or handle). A similar
    /// name in the ruleset is suggested; when the table is missing, a similar table.
    fn enoent(
        &mut self,
        what: Option<What>,
        family: Family,
        table: &str,
        tspan: Span,
        name: Option<&str>,
        loc: Span,
    ) -> Diagnostic {
        self.enoent_in(what, family, table, tspan, name, loc, false)
    }

    #[allow(clippy::too_many_arguments)]
    fn enoent_in(
        &mut self,
        what: Option<What>,
        family: Family,
        table: &str,
        tspan: Span,
        name: Option<&str>,
        loc: Span,
        rule: bool,
    ) -> Diagnostic {
        let refused = || "Could not process rule: No such file or directory";
        let d = match (what, name) {
            (_, None) => self.err(loc, refused()),
            (None, Some(n)) => match misspell::table(self.rs, n) {
                Some(t) => self.err(loc, misspell::table_suggestion(t)),
                None => self.err(loc, refused()),
            },
            (Some(w), Some(n)) => match misspell::lookup(self.rs, w, n) {
                None => self.err(loc, refused()),
                Some(found) if !misspell::table_exists(self.rs, family, table) => {
                    self.err(tspan, misspell::table_suggestion(found.table))
                }
                Some(found) if rule && found.name == n => self.err(loc, refused()),
                Some(found) => self.err(loc, misspell::suggestion(w, &found)),
            },
        };
        if !d.message.starts_with("Could not process rule") {
            self.kernel_refusals.push(d.clone());
        }
        d
    }

    /// After `delete`/`destroy KIND [family] TABLE`: the name, or `handle N` where nft's grammar
    /// takes one (`expecting` names what it expects then).
    fn name_or_handle(
        &mut self,
        handle_ok: bool,
        expecting: &str,
    ) -> PResult<(NameOrHandle, Span)> {
        if handle_ok && self.is_word("handle") {
            self.next();
            let (h, span) = self.number()?;
            return Ok((NameOrHandle::Handle(h), span));
        }
        let (n, span) = self.name_expecting(expecting)?;
        Ok((NameOrHandle::Name(n), span))
    }

    fn delete_cmd(&mut self, destroy: bool) -> PResult<()> {
        use crate::types::ObjKind;
        let t = self.peek();
        let w = self.peek_word().unwrap_or_default();
        // `destroy` is `delete` that does not mind a missing object (nft 1.0.7 and later)
        let missing = |d: Diagnostic| if destroy { Ok(()) } else { Err(d) };
        match w {
            "table" => {
                self.next();
                let mut family = Family::Ip;
                if let Some(f) = self.peek_word().and_then(Family::from_name) {
                    let n = self.peek2();
                    if n.kind == Tok::Word && self.text(n) == "handle" {
                        self.next();
                        family = f;
                    }
                }
                let (f, key, span) = if self.is_word("handle") {
                    let (k, span) = self.name_or_handle(true, HANDLE_OR_STRING)?;
                    (family, k, span)
                } else {
                    let (f, name, span) = self.table_spec_expecting(HANDLE_OR_STRING)?;
                    (f, NameOrHandle::Name(name), span)
                };
                let before = self.rs.tables.len();
                self.rs
                    .tables
                    .retain(|t| !(t.family == f && key.is(&t.name, t.handle)));
                if before == self.rs.tables.len() {
                    let d = self.enoent(None, f, "", span, key.name(), span);
                    return missing(d);
                }
                Ok(())
            }
            "chain" | "set" | "map" | "flowtable" | "counter" | "quota" | "limit" | "synproxy"
            | "secmark" | "ct" => {
                self.next();
                let kind = match w {
                    "counter" => Some(ObjKind::Counter),
                    "quota" => Some(ObjKind::Quota),
                    "limit" => Some(ObjKind::Limit),
                    "synproxy" => Some(ObjKind::Synproxy),
                    "secmark" => Some(ObjKind::Secmark),
                    "ct" => {
                        let (sub, ss) = self.identifier()?;
                        Some(match sub.as_str() {
                            "helper" => ObjKind::CtHelper,
                            "timeout" => ObjKind::CtTimeout,
                            "expectation" => ObjKind::CtExpectation,
                            _ => return Err(self.err(ss, "unknown ct object")),
                        })
                    }
                    _ => None,
                };
                // nft's grammar takes a handle except for maps and ct objects (and does not say
                // so for maps: "expecting string")
                let handle_ok = !matches!(w, "map" | "ct");
                let expecting = if handle_ok {
                    HANDLE_OR_STRING
                } else {
                    "string"
                };
                let scope = match kind {
                    Some(k) => std::mem::replace(&mut self.scope_kw, obj_scope(k)),
                    None => self.scope_kw,
                };
                let (f, table, tspan) = self.table_spec()?;
                let (key, span) = self.name_or_handle(handle_ok, expecting)?;
                self.scope_kw = scope;
                let what = match w {
                    "chain" => What::Chain,
                    "set" | "map" => What::Set,
                    "flowtable" => What::Flowtable,
                    _ => What::Obj,
                };
                let Some(t) = self.rs.table(f, &table) else {
                    let d = self.enoent(Some(what), f, &table, tspan, key.name(), tspan);
                    return missing(d);
                };
                // the kernel refuses to delete what rules or maps still refer to
                let target = match what {
                    What::Chain => (t.chains.iter())
                        .find(|c| key.is(&c.name, c.handle))
                        .map(|c| &c.name),
                    What::Set => (t.sets.iter())
                        .find(|s| key.is(&s.name, s.handle))
                        .map(|s| &s.name),
                    What::Flowtable => (t.flowtables.iter())
                        .find(|x| key.is(&x.name, x.handle))
                        .map(|x| &x.name),
                    What::Obj => (t.objs.iter())
                        .find(|o| Some(o.kind()) == kind && key.is(&o.name, o.handle))
                        .map(|o| &o.name),
                };
                if let Some(name) = target {
                    let skip = (what == What::Chain).then_some(name.as_str());
                    let uses = crate::refs::table_uses(t, skip);
                    let busy = match what {
                        What::Chain => uses.chains.contains(name),
                        What::Set => uses.sets.contains(name),
                        What::Flowtable => uses.flowtables.contains(name),
                        What::Obj => kind.is_some_and(|k| uses.objs.contains(&(k, name.clone()))),
                    };
                    if busy {
                        return Err(
                            self.err(span, "Could not process rule: Device or resource busy")
                        );
                    }
                }
                let t = self.rs.table_mut(f, &table).unwrap();
                let removed = match what {
                    What::Chain => remove_where(&mut t.chains, |c| key.is(&c.name, c.handle)),
                    What::Set => remove_where(&mut t.sets, |s| key.is(&s.name, s.handle)),
                    What::Flowtable => {
                        remove_where(&mut t.flowtables, |x| key.is(&x.name, x.handle))
                    }
                    What::Obj => remove_where(&mut t.objs, |o| {
                        Some(o.kind()) == kind && key.is(&o.name, o.handle)
                    }),
                };
                if !removed {
                    let d = self.enoent(Some(what), f, &table, tspan, key.name(), span);
                    return missing(d);
                }
                Ok(())
            }
            "element" => {
                self.next();
                self.element_cmd(if destroy { "destroy" } else { "delete" })
            }
            "rule" => {
                self.next();
                let (f, table, tspan) = self.table_spec()?;
                let (chain, cspan) = self.name()?;
                self.expect_word("handle")?;
                let (h, hspan) = self.number()?;
                let Some(c) = self
                    .rs
                    .table_mut(f, &table)
                    .and_then(|t| t.chain_mut(&chain))
                else {
                    let loc = if self.rs.table(f, &table).is_some() {
                        cspan
                    } else {
                        tspan
                    };
                    let d = self.enoent_in(
                        Some(What::Chain),
                        f,
                        &table,
                        tspan,
                        Some(&chain),
                        loc,
                        true,
                    );
                    return missing(d);
                };
                let before = c.rules.len();
                c.rules.retain(|r| r.handle != h);
                if before == c.rules.len() {
                    let d = self.enoent_in(
                        Some(What::Chain),
                        f,
                        &table,
                        tspan,
                        Some(&chain),
                        hspan,
                        true,
                    );
                    return missing(d);
                }
                Ok(())
            }
            _ => Err(self.unexpected(t, None)),
        }
    }

    /// `list WHAT` / `reset WHAT` in a file: nothing to print here (the caller lists), but what they
    /// name must exist (an evaluation error otherwise, at the missing name, as nft reports it), and
    /// `reset` zeroes the named counters and the quotas' used bytes in the result.
    fn list_cmd(&mut self, reset: bool) -> PResult<()> {
        use crate::types::ObjKind;
        let t = self.peek();
        let (w, _) = self.identifier()?;
        let missing = "No such file or directory";
        // the object kind and whether it names one object (`counter`) or all of a scope (`counters`)
        let (kind, single): (&str, bool) = match w.as_str() {
            "ct" => {
                let (sub, ss) = self.identifier()?;
                let single = !sub.ends_with('s');
                match sub.trim_end_matches('s') {
                    "helper" => ("ct helper", single),
                    "timeout" => ("ct timeout", single),
                    "expectation" => ("ct expectation", single),
                    _ => return Err(self.err(ss, "unknown ct object")),
                }
            }
            "ruleset" => ("ruleset", false),
            "table" | "chain" | "set" | "map" | "meter" | "counter" | "quota" | "limit"
            | "flowtable" | "synproxy" | "secmark" | "element" => (w.as_str(), true),
            "tables" | "chains" | "sets" | "maps" | "meters" | "counters" | "quotas" | "limits"
            | "flowtables" | "synproxys" | "secmarks" | "hooks" => (&w[..w.len() - 1], false),
            _ => return Err(self.unexpected(t, None)),
        };
        let kind = kind.to_string();
        if reset && !matches!(kind.as_str(), "counter" | "quota") {
            return Err(self.unexpected(t, Some("counter or quota")));
        }
        let objkind = match kind.as_str() {
            "counter" => Some(ObjKind::Counter),
            "quota" => Some(ObjKind::Quota),
            "limit" => Some(ObjKind::Limit),
            "synproxy" => Some(ObjKind::Synproxy),
            "secmark" => Some(ObjKind::Secmark),
            "ct helper" => Some(ObjKind::CtHelper),
            "ct timeout" => Some(ObjKind::CtTimeout),
            "ct expectation" => Some(ObjKind::CtExpectation),
            _ => None,
        };
        // the scope: `[family]`, `[table] [family] NAME` for plurals; `[family] TABLE [NAME]`
        let mut family = None;
        let mut table = None;
        if single {
            let (f, tname, tspan) = self.table_spec()?;
            if self.rs.table(f, &tname).is_none() {
                return Err(self.table_not_found(&tname, tspan));
            }
            if kind != "table" {
                let (name, span) = self.identifier()?;
                let tb = self.rs.table(f, &tname).unwrap();
                let set = tb.sets.iter().find(|s| s.name == name);
                // what nft suggests a similar name of, if the name is missing
                let (found, what) = match kind.as_str() {
                    "chain" => (tb.chain(&name).is_some(), Some(What::Chain)),
                    "set" | "map" if set.is_some_and(|s| s.is_map != (kind == "map")) => {
                        return Err(self.err(span, missing));
                    }
                    "set" | "map" => (set.is_some_and(|s| !s.meter), Some(What::Set)),
                    "meter" => (
                        set.is_some_and(|s| s.meter)
                            && !(self.new_meters.iter())
                                .any(|m| m.0 == f && m.1 == tname && m.2 == name),
                        None,
                    ),
                    "element" => (set.is_some(), None),
                    "flowtable" => (tb.flowtables.iter().any(|x| x.name == name), None),
                    _ => (
                        (tb.objs.iter()).any(|o| Some(o.kind()) == objkind && o.name == name),
                        Some(What::Obj),
                    ),
                };
                if !found {
                    return Err(match what {
                        Some(w) => self.not_found(w, &name, span),
                        None => self.err(span, missing),
                    });
                }
                if reset {
                    self.reset_objs(f, &tname, Some(&name), objkind);
                }
                // `list element … { … }`: the elements are not checked here
                if kind == "element" {
                    while !matches!(self.peek().kind, Tok::Newline | Tok::Semi | Tok::Eof) {
                        self.next();
                    }
                }
            }
            return Ok(());
        }
        if self.eat_word("table") {
            let (f, tname, tspan) = self.table_spec()?;
            if self.rs.table(f, &tname).is_none() {
                return Err(self.table_not_found(&tname, tspan));
            }
            family = Some(f);
            table = Some(tname);
        } else if let Some(f) = self.peek_word().and_then(Family::from_name) {
            self.next();
            family = Some(f);
        }
        if reset {
            let targets: Vec<(Family, String)> = (self.rs.tables.iter())
                .filter(|t| family.is_none_or(|f| t.family == f))
                .filter(|t| table.as_ref().is_none_or(|n| &t.name == n))
                .map(|t| (t.family, t.name.clone()))
                .collect();
            for (f, tname) in targets {
                self.reset_objs(f, &tname, None, objkind);
            }
        }
        Ok(())
    }

    /// Zeroes counter objects' counts and quota objects' used bytes (one by name, or all of a kind).
    fn reset_objs(
        &mut self,
        family: Family,
        table: &str,
        name: Option<&str>,
        kind: Option<crate::types::ObjKind>,
    ) {
        use crate::obj::ObjBody;
        let Some(t) = self.rs.table_mut(family, table) else {
            return;
        };
        for o in &mut t.objs {
            if Some(o.kind()) != kind || name.is_some_and(|n| n != o.name) {
                continue;
            }
            match &mut o.body {
                ObjBody::Counter(c) => {
                    c.packets = 0;
                    c.bytes = 0;
                }
                ObjBody::Quota(q) => q.used = 0,
                _ => {}
            }
        }
    }

    /// `define name = tokens...` up to the end of the line.
    fn define_cmd(&mut self, redefine: bool) -> PResult<()> {
        let (name, span) = self.name()?;
        self.expect(Tok::Eq, "'='")?;
        let mut body = Vec::new();
        let mut depth = 0;
        loop {
            let t = self.peek();
            match t.kind {
                Tok::Eof => break,
                Tok::Newline | Tok::Semi if depth == 0 => break,
                Tok::LBrace => depth += 1,
                Tok::RBrace => {
                    if depth == 0 {
                        break;
                    }
                    depth -= 1
                }
                _ => {}
            }
            body.push(self.next());
            if body.len() > MAX_DEFINE {
                return Err(self.err(span, format!("definition of '{name}' is too long")));
            }
        }
        if body.is_empty() {
            let t = self.peek();
            return Err(self.unexpected(t, None));
        }
        if !redefine && self.defines.contains_key(&name) {
            return Err(self.err(span, format!("redefinition of symbol '{name}'")));
        }
        self.defines.insert(name, body.into());
        Ok(())
    }

    fn include_cmd(&mut self) -> PResult<()> {
        let kw = self.prev;
        let t = self.peek();
        let path = self.quoted()?;
        // nft's location of the include statement takes in the separator after it
        let inc = kw.to(t.span);
        let inc = Span {
            hi: inc.hi + 1,
            ..inc
        };
        let from = self.srcs[t.span.src as usize].name.clone();
        if self.srcs.len() > 64 {
            return Err(self.err(t.span, "Include nested too deeply"));
        }
        let files = self
            .loader
            .load(&path, &from)
            .map_err(|e| self.err(t.span, e))?;
        // the include command ends here: a separator, then each file's tokens and a separator
        let mut frames = Vec::new();
        for (name, text) in files {
            let id = self.srcs.len() as u16;
            let text = self.texts.add(text);
            frames.push(Frame::Lex { src: id, pos: 0 });
            frames.push(Frame::Toks {
                toks: Rc::new([Token {
                    kind: Tok::Newline,
                    span: Span::new(id, text.len(), text.len()),
                }]),
                i: 0,
            });
            self.srcs.push(Source {
                name,
                text,
                from: Some(inc),
            });
        }
        self.push_tokens(vec![]);
        self.frames.extend(frames.into_iter().rev());
        self.frames.push(Frame::Toks {
            toks: Rc::new([Token {
                kind: Tok::Newline,
                span: t.span,
            }]),
            i: 0,
        });
        Ok(())
    }

    // ---------------------------------------------------------------- rules

    /// One rule: statements up to newline, `;` or `}`.
    pub fn rule(&mut self, family: Family, table: &str) -> PResult<Rule> {
        if !matches!(&self.cur_table, Some((f, t)) if *f == family && t == table) {
            self.cur_table = Some((family, table.to_string()));
        }
        let mut ctx = RuleCtx::new(family);
        // a nested rule (`jump { ... }`) finds the buffer empty and uses its own
        let mut stmts: Vec<Stmt> = std::mem::take(&mut self.stmt_buf);
        stmts.clear();
        let mut comment = None;
        let mut prev_span = Span::default();
        loop {
            let t = self.peek();
            match t.kind {
                Tok::Newline | Tok::Semi | Tok::RBrace | Tok::Eof => break,
                _ => {}
            }
            if comment.is_some() {
                return Err(self.unexpected(t, Some("end of file or newline or semicolon")));
            }
            if self.is_word("comment") {
                self.next();
                comment = Some(self.quoted()?);
                continue;
            }
            ctx.nstmts = stmts.len();
            let terminal_before = stmts.last().is_some_and(is_terminal).then_some(prev_span);
            let start = self.peek().span;
            let s = self.stmt(&mut ctx, table)?;
            let end = self.prev;
            let this_span = if end.src == start.src && end.hi >= start.lo {
                start.to(end)
            } else {
                start
            };
            if let Some(prev) = terminal_before {
                let src = self.srcs[this_span.src as usize].text;
                let d = self
                    .err(
                        this_span,
                        "Statement after terminal statement has no effect",
                    )
                    .with_secondary(src, prev.lo as usize, prev.hi as usize);
                self.sem_errors.push(d);
            }
            prev_span = this_span;
            stmts.append(&mut ctx.pre);
            stmts.push(s);
        }
        if stmts.is_empty() {
            let t = self.peek();
            return Err(self.unexpected(t, None));
        }
        ctx.kill.sort_unstable();
        ctx.kill.dedup();
        for &k in ctx.kill.iter().rev() {
            stmts.remove(k);
        }
        if let Some(p) = ctx.prepend_l4 {
            use crate::expr::*;
            let key = meta::key("l4proto").unwrap();
            stmts.insert(
                0,
                Stmt::Match(Match {
                    left: Lhs {
                        sels: crate::expr::Sels::one(Selector::Meta {
                            key,
                            qualified: true,
                        }),
                        binop: None,
                    },
                    op: RelOp::Implicit,
                    right: Rhs::Elem(Parts::one(Part::Val(crate::types::Val::from_u128(
                        p as u128, 1,
                    )))),
                }),
            );
        }
        let mut exact = Vec::with_capacity(stmts.len());
        exact.append(&mut stmts);
        self.stmt_buf = stmts;
        Ok(Rule {
            handle: 0,
            stmts: exact.into_boxed_slice(),
            comment: comment.map(String::into_boxed_str),
        })
    }

    /// `ct count [over] N`
    pub(crate) fn connlimit_stmt(&mut self) -> PResult<Stmt> {
        self.next();
        self.next();
        let over = self.eat_word("over");
        let t = self.peek();
        if !over && t.kind != Tok::Num {
            return Err(self.unexpected(t, Some("number or over")));
        }
        let (n, span) = self.number()?;
        if n > u32::MAX as u64 {
            return Err(self.err(span, "value too large"));
        }
        Ok(Stmt::Connlimit {
            count: n as u32,
            over,
        })
    }

    fn stmt(&mut self, ctx: &mut RuleCtx, table: &str) -> PResult<Stmt> {
        let t = self.peek();
        if t.kind == Tok::At && matches!(&self.text(t)[1..], "ll" | "nh" | "th" | "ih") {
            return self.match_stmt(ctx);
        }
        if t.kind != Tok::Word {
            return Err(self.unexpected(t, None));
        }
        let w = self.text(t);
        if let Some(s) = self.verdict_stmt(ctx, table, w)? {
            ctx.dep = None;
            return Ok(s);
        }
        let n2 = self.peek2();
        let named = self.word_is(n2, "name");
        match w {
            "counter" | "quota" | "limit" | "synproxy" if named => {
                let kind = match w {
                    "counter" => crate::types::ObjKind::Counter,
                    "quota" => crate::types::ObjKind::Quota,
                    "synproxy" => crate::types::ObjKind::Synproxy,
                    _ => crate::types::ObjKind::Limit,
                };
                let t = self.next();
                return self.obj_ref_stmt(ctx, kind, t.span);
            }
            // a string or a map's data names a secmark object; other values are the 32-bit mark
            "meta"
                if n2.kind == Tok::Word
                    && self.text(n2) == "secmark"
                    && self.peek_nth(2).kind == Tok::Word
                    && {
                        let t3 = self.peek_nth(2);
                        self.text(t3) == "set"
                    }
                    && self.secmark_object_ahead() =>
            {
                let t = self.next();
                self.next();
                self.next();
                return self.obj_ref_stmt(ctx, crate::types::ObjKind::Secmark, t.span);
            }
            "add" | "update" | "delete" if n2.kind == Tok::At => return self.set_update_stmt(ctx),
            "meter" => return self.meter_stmt(ctx),
            "flow" => {
                ctx.dep = None;
                return self.flow_stmt();
            }
            "counter" => {
                ctx.dep = None;
                return self.counter_stmt();
            }
            "log" => {
                ctx.dep = None;
                return self.log_stmt();
            }
            "limit" => {
                ctx.dep = None;
                return self.limit_stmt();
            }
            "quota" => {
                ctx.dep = None;
                return self.quota_stmt();
            }
            "reject" => return self.reject_stmt(ctx),
            "snat" | "dnat" | "masquerade" | "redirect" => return self.nat_stmt(ctx),
            "queue" => return self.queue_stmt(ctx),
            "dup" | "fwd" => {
                ctx.dep = None;
                return self.dup_stmt(ctx);
            }
            "notrack" => {
                self.next();
                ctx.dep = None;
                return Ok(Stmt::Notrack);
            }
            "ct" if n2.kind == Tok::Word && self.text(n2) == "count" => {
                ctx.dep = None;
                return self.connlimit_stmt();
            }
            _ => {}
        }
        if self.starts_selector(w) {
            return self.match_stmt(ctx);
        }
        // nft reads an unknown word as the start of an expression and then fails on what follows
        self.next();
        let n = self.peek();
        Err(self.unexpected(n, None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The look-ahead gives the same tokens as the lexer, however far it looks and however the
    /// tokens looked at are consumed (also when the consumed ones are dropped from a queue that
    /// never runs empty).
    #[test]
    fn look_ahead_is_the_token_stream() {
        let src = (0..300).map(|i| format!("w{i} ")).collect::<String>();
        let toks = crate::lex::lex(&src, 0);
        let mut rs = Ruleset::default();
        let texts = Texts::default();
        let mut p = Parser::new(&mut rs, &crate::NoIncludes, &texts, &src, "t.nft");
        assert_eq!(p.peek_nth(150).span, toks[150].span);
        let mut at = 0;
        while at < toks.len() - 3 {
            assert_eq!(p.peek2().span, toks[at + 1].span, "{at}");
            assert_eq!(p.peek_nth(2).span, toks[at + 2].span, "{at}");
            assert_eq!(p.next().span, toks[at].span, "{at}");
            at += 1;
        }
        assert!(p.la.len() < 80, "{}", p.la.len());
    }
}
