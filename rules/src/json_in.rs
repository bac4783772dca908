//! `nft -j -f FILE`: reading libnftables' JSON schema (`libnftables-json(5)`), as `nft -j list ruleset`
//! writes it and as scripts hand it to nft.
//!
//! The reader turns each command of the `{"nftables": [...]}` array into one line of nft source (`add
//! table …`, `add chain … { type …; }`, `add rule … EXPR`, `add element … { … }`, `delete …`, `flush …`)
//! and hands the whole text to the text parser, so a JSON ruleset goes through exactly the checks,
//! protocol-dependency handling and printing that the same ruleset written in nft's language does, and
//! yields the same [`Ruleset`].
//!
//! Commands: `metainfo` (ignored), objects without a verb (= `add`), and `add`, `create`, `insert`,
//! `replace`, `delete`, `destroy`, `flush`, `rename` wrapping `table`, `chain`, `rule`, `set`, `map`,
//! `element`, `flowtable`, `counter`, `quota`, `limit`, `ct helper`, `ct timeout`, `ct expectation`,
//! `synproxy` (and `ruleset` for `flush`); `list` and `reset` (as `list …`/`reset …` lines, see [`list`]);
//! `monitor` is refused as nft refuses it. Handles in added objects are ignored, as nft ignores them;
//! `delete`/`replace` use them.
//!
//! Expressions: numbers, strings (symbols, addresses, names; `@set`, `*`), booleans (`exists`/`missing`),
//! lists (flag lists), `payload` (named and raw), `meta`, `ct`, `fib`, `rt`, `socket`, `osf`, `tcp option`
//! and the other option spaces, `exthdr`, `numgen`, `jhash`, `symhash`, `&` `|` `^` `<<` `>>`, `prefix`,
//! `range`, `concat`, `set`, `map`, `elem` (timeout, expires, comment, counter), verdicts; `{"KEY": "text"}`
//! for selectors sluice's writer has no schema form for. Statements: `match`, `counter`, verdicts, `vmap`,
//! `mangle`, `log`, `limit`, `quota`, `reject`, `snat`/`dnat`/`masquerade`/`redirect`, `queue`, `notrack`,
//! named object references, `set`/`map` updates, `flow`, and sluice's anonymous-chain form
//! `{"jump": {"chain": [[…], …]}}`.
//!
//! Errors read like nft's: the innermost message (`Unknown statement object 'foo'.`, `Object item not found:
//! name`), then `Parsing expr array at index N failed.` and `Parsing command array at index N failed.`.
//! Errors of the checks point into the generated nft text, one line per JSON command, so the line number is
//! the command's index plus one.

use serde_json::{Map, Value};

use crate::ast::Ruleset;
use crate::diag::Diagnostic;
use crate::parse::{Loader, NoIncludes};

type Obj = Map<String, Value>;

/// Why a JSON document could not be read: the messages, innermost first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError(pub Vec<String>);

impl JsonError {
    fn new(m: impl Into<String>) -> JsonError {
        JsonError(vec![m.into()])
    }
    fn then(mut self, m: impl Into<String>) -> JsonError {
        self.0.push(m.into());
        self
    }
}

impl std::fmt::Display for JsonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, m) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "Error: {m}")?;
        }
        Ok(())
    }
}

impl std::error::Error for JsonError {}

type R<T> = Result<T, JsonError>;

/// The nft source equivalent to the JSON document `src`: one line per command of its `nftables` array
/// (`metainfo` gives an empty line, so line N is command N - 1).
pub fn to_nft(src: &str) -> R<String> {
    let doc: Value = serde_json::from_str(src).map_err(|e| JsonError::new(e.to_string()))?;
    value_to_nft(&doc)
}

fn value_to_nft(doc: &Value) -> R<String> {
    let cmds = doc
        .as_object()
        .and_then(|o| o.get("nftables"))
        .and_then(Value::as_array)
        .ok_or_else(|| JsonError::new("Input does not contain an 'nftables' array."))?;
    let mut out = String::new();
    for (i, c) in cmds.iter().enumerate() {
        command(c, &mut out)
            .map_err(|e| e.then(format!("Parsing command array at index {i} failed.")))?;
        out.push('\n');
    }
    Ok(out)
}

/// Parses and checks a JSON ruleset (see the module documentation): the ruleset that results from
/// applying its commands to an empty ruleset, like [`crate::parse_ruleset`] for nft source.
pub fn parse_json_ruleset(src: &str, filename: &str) -> Result<Ruleset, Diagnostic> {
    apply_json_owned(Ruleset::default(), src, filename, &NoIncludes)
}

/// Applies the commands of a JSON document to `rs` (one transaction, like [`crate::apply_owned`]). Like
/// nft 1.0.6, a document that is not JSON at all is read as nft source instead (so its errors are nft
/// syntax errors located in `filename`).
pub fn apply_json_owned(
    rs: Ruleset,
    src: &str,
    filename: &str,
    loader: &dyn Loader,
) -> Result<Ruleset, Diagnostic> {
    let Ok(doc) = serde_json::from_str::<Value>(src) else {
        return crate::apply_owned(rs, src, filename, loader);
    };
    let text = value_to_nft(&doc).map_err(|e| {
        let msg = e.to_string();
        Diagnostic::bare(msg.strip_prefix("Error: ").unwrap_or(&msg).to_string())
    })?;
    crate::apply_owned(rs, &text, &format!("{filename} (as nft)"), loader)
}

fn get<'a>(o: &'a Obj, k: &str) -> R<&'a Value> {
    o.get(k)
        .ok_or_else(|| JsonError::new(format!("Object item not found: {k}")))
}

fn get_str<'a>(o: &'a Obj, k: &str) -> R<&'a str> {
    get(o, k)?
        .as_str()
        .ok_or_else(|| JsonError::new(format!("Invalid type for item '{k}': expected a string.")))
}

fn opt_str<'a>(o: &'a Obj, k: &str) -> Option<&'a str> {
    o.get(k).and_then(Value::as_str)
}

fn opt_u64(o: &Obj, k: &str) -> Option<u64> {
    o.get(k).and_then(Value::as_u64)
}

fn as_obj<'a>(v: &'a Value, what: &str) -> R<&'a Obj> {
    v.as_object()
        .ok_or_else(|| JsonError::new(format!("Malformed {what}: expected an object.")))
}

/// The single key of `{"key": value}`.
fn single(v: &Value) -> R<(&str, &Value)> {
    match v.as_object() {
        Some(o) if o.len() == 1 => {
            let (k, v) = o.iter().next().expect("one entry");
            Ok((k.as_str(), v))
        }
        _ => Err(JsonError::new(format!(
            "Malformed object (too many properties or not an object): {v}"
        ))),
    }
}

/// `"text"` with nft's quoting (nft strings have no escapes: an embedded quote cannot be written).
fn quoted(s: &str, out: &mut String) -> R<()> {
    if s.contains('"') || s.contains('\n') {
        return Err(JsonError::new(format!(
            "String {s:?} cannot be written in nft syntax."
        )));
    }
    out.push('"');
    out.push_str(s);
    out.push('"');
    Ok(())
}

/// Can `s` be written as a bare word (a symbol, number, address, time)?
fn bare_ok(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':' | b'/'))
        && !s.starts_with(['-', '/', '.'])
}

fn family(o: &Obj) -> &str {
    opt_str(o, "family").unwrap_or("ip")
}

fn command(c: &Value, out: &mut String) -> R<()> {
    let (k, v) = single(c)?;
    match k {
        "metainfo" => Ok(()),
        "add" | "create" | "insert" | "replace" | "delete" | "destroy" | "flush" | "rename" => {
            let (what, body) = single(v)?;
            verb(k, what, body, out)
        }
        "list" | "reset" => {
            let (what, body) = single(v)?;
            list(k, what, body, out)
        }
        // nft's JSON parser has no `monitor` (it is commented out of its command table): the key is
        // taken for an object to add
        "monitor" => Err(JsonError::new("Unknown object passed to add command.")),
        _ => verb("add", k, v, out),
    }
}

/// `{"list": {"table": {"family": "ip", "name": "t"}}}`, `{"list": {"counters": {"family": "ip"}}}`,
/// `{"reset": {"quota": {…}}}`: the same command in nft source (`list table ip t`, `list counters ip`,
/// `reset quota ip t q`). The ruleset reader checks that what they name exists; `reset` zeroes counter
/// and quota objects. Their output is the caller's (`sluice nft -j -f` lists).
fn list(verb: &str, what: &str, v: &Value, out: &mut String) -> R<()> {
    const SINGLE: &[&str] = &[
        "table",
        "chain",
        "set",
        "map",
        "meter",
        "counter",
        "quota",
        "limit",
        "flowtable",
        "ct helper",
        "ct timeout",
        "ct expectation",
        "synproxy",
        "secmark",
    ];
    const PLURAL: &[&str] = &[
        "tables",
        "chains",
        "sets",
        "maps",
        "meters",
        "counters",
        "quotas",
        "limits",
        "flowtables",
        "ct helpers",
        "ct timeouts",
        "ct expectations",
        "synproxys",
        "secmarks",
    ];
    let resettable = matches!(what, "counter" | "counters" | "quota" | "quotas");
    if verb == "reset" && !resettable
        || what != "ruleset" && !SINGLE.contains(&what) && !PLURAL.contains(&what)
    {
        return Err(JsonError::new(format!(
            "Unknown object '{what}' for command '{verb}'."
        )));
    }
    out.push_str(&format!("{verb} {what}"));
    let o = v.as_object();
    if what == "ruleset" {
        if let Some(f) = o.and_then(|o| opt_str(o, "family")) {
            out.push_str(&format!(" {f}"));
        }
        return Ok(());
    }
    if SINGLE.contains(&what) {
        let o = as_obj(v, what)?;
        out.push_str(&format!(" {} ", family(o)));
        if what == "table" {
            out.push_str(get_str(o, "name")?);
        } else {
            out.push_str(&format!("{} {}", get_str(o, "table")?, get_str(o, "name")?));
        }
        return Ok(());
    }
    match o.map(|o| (opt_str(o, "family"), opt_str(o, "table"))) {
        Some((f, Some(t))) => out.push_str(&format!(" table {} {t}", f.unwrap_or("ip"))),
        Some((Some(f), None)) => out.push_str(&format!(" {f}")),
        _ => {}
    }
    Ok(())
}

fn verb(verb: &str, what: &str, v: &Value, out: &mut String) -> R<()> {
    if verb == "flush" && what == "ruleset" {
        out.push_str("flush ruleset");
        if let Some(f) = v.as_object().and_then(|o| opt_str(o, "family")) {
            out.push(' ');
            out.push_str(f);
        }
        return Ok(());
    }
    let o = as_obj(v, what)?;
    match (verb, what) {
        ("add" | "create", "table") => table(verb, o, out),
        ("add" | "create", "chain") => chain(verb, o, out),
        ("add" | "insert" | "replace" | "create", "rule") => rule(verb, o, out),
        ("add" | "create", "set" | "map") => set(verb, what == "map", o, out),
        ("add" | "create" | "delete" | "destroy", "element") => {
            out.push_str(&format!(
                "{verb} element {} {} {} ",
                family(o),
                get_str(o, "table")?,
                get_str(o, "name")?
            ));
            let elems = get(o, "elem")?;
            let elems: Vec<Value> = match elems {
                Value::Array(a) => a.clone(),
                e => vec![e.clone()],
            };
            set_elems(&elems, &[], out)
        }
        ("add" | "create", "counter" | "quota" | "limit") => object(verb, what, o, out),
        ("add" | "create", "ct helper" | "ct timeout" | "ct expectation" | "synproxy") => {
            ct_object(verb, what, o, out)
        }
        // `{"secmark": {"family": "inet", "table": "t", "name": "s", "context": "…"}}`
        ("add" | "create", "secmark") => {
            out.push_str(&format!(
                "{verb} secmark {} {} {} {{ ",
                family(o),
                get_str(o, "table")?,
                get_str(o, "name")?
            ));
            quoted(get_str(o, "context")?, out)?;
            out.push_str(" }");
            Ok(())
        }
        ("add" | "create", "flowtable") => flowtable(verb, o, out),
        ("delete" | "destroy" | "flush", "table") => {
            out.push_str(&format!("{verb} table {} ", family(o)));
            match (opt_str(o, "name"), opt_u64(o, "handle")) {
                (Some(n), _) => out.push_str(n),
                (None, Some(h)) => out.push_str(&format!("handle {h}")),
                _ => return Err(JsonError::new("Object item not found: name")),
            }
            Ok(())
        }
        (
            "delete" | "destroy" | "flush",
            "chain" | "set" | "map" | "counter" | "quota" | "limit",
        )
        | (
            "delete" | "destroy",
            "ct helper" | "ct timeout" | "ct expectation" | "synproxy" | "secmark",
        ) => {
            out.push_str(&format!(
                "{verb} {what} {} {} ",
                family(o),
                get_str(o, "table")?
            ));
            match (opt_str(o, "name"), opt_u64(o, "handle")) {
                (Some(n), _) => out.push_str(n),
                (None, Some(h)) => out.push_str(&format!("handle {h}")),
                _ => return Err(JsonError::new("Object item not found: name")),
            }
            Ok(())
        }
        ("delete" | "destroy", "rule") => {
            out.push_str(&format!(
                "{verb} rule {} {} {} handle {}",
                family(o),
                get_str(o, "table")?,
                get_str(o, "chain")?,
                get(o, "handle")?
                    .as_u64()
                    .ok_or_else(|| JsonError::new("Invalid handle."))?
            ));
            Ok(())
        }
        ("rename", "chain") => {
            out.push_str(&format!(
                "rename chain {} {} {} {}",
                family(o),
                get_str(o, "table")?,
                get_str(o, "name")?,
                get_str(o, "newname")?
            ));
            Ok(())
        }
        _ => Err(JsonError::new(format!(
            "Unknown object '{what}' for command '{verb}'."
        ))),
    }
}

fn comment(o: &Obj, out: &mut String, sep: &str) -> R<()> {
    if let Some(c) = opt_str(o, "comment") {
        out.push_str(" comment ");
        quoted(c, out)?;
        out.push_str(sep);
    }
    Ok(())
}

fn table(verb: &str, o: &Obj, out: &mut String) -> R<()> {
    out.push_str(&format!(
        "{verb} table {} {}",
        family(o),
        get_str(o, "name")?
    ));
    let flags: Vec<&str> = match o.get("flags") {
        Some(Value::String(f)) => vec![f.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    if !flags.is_empty() || o.contains_key("comment") {
        out.push_str(" {");
        if !flags.is_empty() {
            out.push_str(&format!(" flags {};", flags.join(",")));
        }
        comment(o, out, ";")?;
        out.push_str(" }");
    }
    Ok(())
}

fn chain(verb: &str, o: &Obj, out: &mut String) -> R<()> {
    out.push_str(&format!(
        "{verb} chain {} {} {}",
        family(o),
        get_str(o, "table")?,
        get_str(o, "name")?
    ));
    let base = o.contains_key("hook");
    if !base && !o.contains_key("comment") {
        return Ok(());
    }
    out.push_str(" {");
    if base {
        out.push_str(&format!(
            " type {} hook {}",
            get_str(o, "type")?,
            get_str(o, "hook")?
        ));
        match o.get("dev") {
            Some(Value::String(d)) => {
                out.push_str(" device ");
                quoted(d, out)?;
            }
            Some(Value::Array(ds)) => {
                out.push_str(" devices = { ");
                for (i, d) in ds.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    quoted(d.as_str().unwrap_or_default(), out)?;
                }
                out.push_str(" }");
            }
            _ => {}
        }
        out.push_str(" priority ");
        match get(o, "prio")? {
            Value::Number(n) => out.push_str(&n.to_string()),
            Value::String(s) => out.push_str(s),
            _ => return Err(JsonError::new("Invalid chain priority.")),
        }
        out.push(';');
        if let Some(p) = opt_str(o, "policy") {
            out.push_str(&format!(" policy {p};"));
        }
    }
    comment(o, out, ";")?;
    out.push_str(" }");
    Ok(())
}

fn rule(verb: &str, o: &Obj, out: &mut String) -> R<()> {
    out.push_str(&format!(
        "{verb} rule {} {} {}",
        family(o),
        get_str(o, "table")?,
        get_str(o, "chain")?
    ));
    match verb {
        "replace" => out.push_str(&format!(
            " handle {}",
            get(o, "handle")?
                .as_u64()
                .ok_or_else(|| JsonError::new("Invalid handle."))?
        )),
        _ => {
            if let Some(h) = opt_u64(o, "position") {
                out.push_str(&format!(" position {h}"));
            } else if let Some(h) = opt_u64(o, "index") {
                out.push_str(&format!(" index {h}"));
            }
        }
    }
    let exprs = get(o, "expr")?
        .as_array()
        .ok_or_else(|| JsonError::new("Value of property \"expr\" must be an array."))?;
    stmts(exprs, out)?;
    comment(o, out, "")
}

fn stmts(exprs: &[Value], out: &mut String) -> R<()> {
    for (i, e) in exprs.iter().enumerate() {
        out.push(' ');
        stmt(e, out).map_err(|e| e.then(format!("Parsing expr array at index {i} failed.")))?;
    }
    Ok(())
}

/// Set key/data type names: `ipv4_addr . inet_service`.
fn type_names(v: &Value) -> R<Vec<String>> {
    match v {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(a) => a
            .iter()
            .map(|t| {
                t.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| JsonError::new("Invalid set type."))
            })
            .collect(),
        _ => Err(JsonError::new("Invalid set type.")),
    }
}

fn set(verb: &str, is_map: bool, o: &Obj, out: &mut String) -> R<()> {
    out.push_str(&format!(
        "{verb} {} {} {} {} {{",
        if is_map { "map" } else { "set" },
        family(o),
        get_str(o, "table")?,
        get_str(o, "name")?
    ));
    let key = type_names(get(o, "type")?)?;
    out.push_str(&format!(" type {}", key.join(" . ")));
    if is_map {
        let data = type_names(get(o, "map")?)?;
        out.push_str(&format!(" : {}", data.join(" . ")));
    }
    out.push(';');
    let mut flags: Vec<&str> = match o.get("flags") {
        Some(Value::String(f)) => vec![f.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    if o.contains_key("timeout") {
        // a timeout value implies the flag; written out, it would be listed too
        flags.retain(|f| *f != "timeout");
    }
    if !flags.is_empty() {
        out.push_str(&format!(" flags {};", flags.join(",")));
    }
    if let Some(t) = opt_u64(o, "timeout") {
        out.push_str(&format!(" timeout {t}s;"));
    }
    if let Some(t) = opt_u64(o, "gc-interval") {
        out.push_str(&format!(" gc-interval {t}s;"));
    }
    if let Some(n) = opt_u64(o, "size") {
        out.push_str(&format!(" size {n};"));
    }
    if let Some(p) = opt_str(o, "policy") {
        out.push_str(&format!(" policy {p};"));
    }
    if o.get("auto-merge").and_then(Value::as_bool) == Some(true) {
        out.push_str(" auto-merge;");
    }
    comment(o, out, ";")?;
    if let Some(Value::Array(ss)) = o.get("stmt") {
        if !ss.is_empty() {
            stmts(ss, out)?;
            out.push(';');
        }
    }
    if let Some(Value::Array(elems)) = o.get("elem") {
        if !elems.is_empty() {
            out.push_str(" elements = ");
            let quote: Vec<bool> = key.iter().map(|t| string_type(t)).collect();
            set_elems(elems, &quote, out)?;
            out.push(';');
        }
    }
    out.push_str(" }");
    Ok(())
}

/// Types whose values are strings (written quoted).
fn string_type(t: &str) -> bool {
    matches!(t, "ifname" | "string")
}

/// `{ e1, e2 }`; `quote[i]`: component i is a string type.
fn set_elems(elems: &[Value], quote: &[bool], out: &mut String) -> R<()> {
    out.push_str("{ ");
    for (i, e) in elems.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        set_elem(e, quote, out)?;
    }
    out.push_str(" }");
    Ok(())
}

/// A set element: a value, `[key, data]` in maps, `{"elem": {...}}` with options.
fn set_elem(e: &Value, quote: &[bool], out: &mut String) -> R<()> {
    if let Value::Array(kv) = e {
        if kv.len() == 2 {
            set_elem(&kv[0], quote, out)?;
            out.push_str(" : ");
            return expr(&kv[1], Ctx::default(), out);
        }
    }
    let ctx = Ctx {
        quote: quote.first().copied().unwrap_or(false),
        quote_parts: quote,
        ..Ctx::default()
    };
    expr(e, ctx, out)
}

fn flowtable(verb: &str, o: &Obj, out: &mut String) -> R<()> {
    out.push_str(&format!(
        "{verb} flowtable {} {} {} {{",
        family(o),
        get_str(o, "table")?,
        get_str(o, "name")?
    ));
    if let Some(h) = opt_str(o, "hook") {
        out.push_str(&format!(" hook {h} priority "));
        match o.get("prio") {
            Some(Value::Number(n)) => out.push_str(&n.to_string()),
            Some(Value::String(p)) => out.push_str(p),
            _ => out.push('0'),
        }
        out.push(';');
    }
    let devs: Vec<&str> = match o.get("dev") {
        Some(Value::String(d)) => vec![d.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    if !devs.is_empty() {
        out.push_str(" devices = { ");
        for (i, d) in devs.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            quoted(d, out)?;
        }
        out.push_str(" };");
    }
    let flags: Vec<&str> = match o.get("flags") {
        Some(Value::String(f)) => vec![f.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    if flags.contains(&"offload") {
        out.push_str(" flags offload;");
    }
    if flags.contains(&"counter") {
        out.push_str(" counter;");
    }
    out.push_str(" }");
    Ok(())
}

fn object(verb: &str, what: &str, o: &Obj, out: &mut String) -> R<()> {
    out.push_str(&format!(
        "{verb} {what} {} {} {} {{ ",
        family(o),
        get_str(o, "table")?,
        get_str(o, "name")?
    ));
    let inv = o.get("inv").and_then(Value::as_bool) == Some(true);
    match what {
        "counter" => out.push_str(&format!(
            "packets {} bytes {}",
            opt_u64(o, "packets").unwrap_or(0),
            opt_u64(o, "bytes").unwrap_or(0)
        )),
        "quota" => {
            if inv {
                out.push_str("over ");
            }
            out.push_str(&format!("{} bytes", opt_u64(o, "bytes").unwrap_or(0)));
            if let Some(u) = opt_u64(o, "used").filter(|&u| u != 0) {
                out.push_str(&format!(" used {u} bytes"));
            }
        }
        _ => {
            out.push_str("rate ");
            limit_body(o, out)?;
        }
    }
    out.push(';');
    comment(o, out, ";")?;
    out.push_str(" }");
    Ok(())
}

/// `ct helper`, `ct timeout`, `ct expectation` and `synproxy` objects, as nft 1.0.6 lists them:
/// `{"ct helper": {"type": "ftp", "protocol": "tcp", "l3proto": "inet"}}`,
/// `{"ct timeout": {"protocol": "tcp", "l3proto": "ip", "policy": {"established": 100}}}` (seconds),
/// `{"ct expectation": {"protocol": "tcp", "dport": 22, "timeout": 1000, "size": 12}}` (milliseconds),
/// `{"synproxy": {"mss": 1460, "wscale": 7, "flags": ["timestamp", "sack-perm"]}}`.
fn ct_object(verb: &str, what: &str, o: &Obj, out: &mut String) -> R<()> {
    out.push_str(&format!(
        "{verb} {what} {} {} {} {{ ",
        family(o),
        get_str(o, "table")?,
        get_str(o, "name")?
    ));
    let num = |k: &str| -> R<u64> {
        get(o, k)?.as_u64().ok_or_else(|| {
            JsonError::new(format!("Invalid type for item '{k}': expected a number."))
        })
    };
    let l3 = |out: &mut String| {
        if let Some(l) = opt_str(o, "l3proto") {
            out.push_str(&format!("l3proto {l}; "));
        }
    };
    match what {
        "ct helper" => {
            out.push_str("type ");
            quoted(get_str(o, "type")?, out)?;
            out.push_str(&format!(
                " protocol {}; ",
                opt_str(o, "protocol").unwrap_or("tcp")
            ));
            l3(out);
        }
        "ct timeout" => {
            out.push_str(&format!(
                "protocol {}; ",
                opt_str(o, "protocol").unwrap_or("tcp")
            ));
            l3(out);
            if let Some(p) = o.get("policy") {
                let p = as_obj(p, "policy")?;
                // in the order of the protocol's states, as nft lists them (a JSON object has none)
                let states = match opt_str(o, "protocol") {
                    Some("udp") => crate::obj::UDP_STATES,
                    _ => crate::obj::TCP_STATES,
                };
                let mut p: Vec<(&String, &Value)> = p.iter().collect();
                p.sort_by_key(|(st, _)| states.iter().position(|x| x == st));
                let items: Vec<String> = p
                    .into_iter()
                    .map(|(state, v)| {
                        v.as_u64().map(|n| format!("{state} : {n}")).ok_or_else(|| {
                            JsonError::new(format!(
                                "Invalid ct timeout policy value for '{state}'."
                            ))
                        })
                    })
                    .collect::<R<_>>()?;
                out.push_str(&format!("policy = {{ {} }}; ", items.join(", ")));
            }
        }
        "ct expectation" => {
            out.push_str(&format!(
                "protocol {}; ",
                opt_str(o, "protocol").unwrap_or("tcp")
            ));
            out.push_str(&format!("dport {}; ", num("dport")?));
            out.push_str(&format!("timeout {}ms; ", num("timeout")?));
            out.push_str(&format!("size {}; ", num("size")?));
            l3(out);
        }
        _ => {
            if let Some(m) = opt_u64(o, "mss") {
                out.push_str(&format!("mss {m}; "));
            }
            if let Some(w) = opt_u64(o, "wscale") {
                out.push_str(&format!("wscale {w}; "));
            }
            let flags: Vec<&str> = match o.get("flags") {
                None => Vec::new(),
                Some(Value::String(f)) => vec![f.as_str()],
                Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
                Some(_) => return Err(JsonError::new("Invalid synproxy flags.")),
            };
            if !flags.is_empty() {
                out.push_str(&flags.join(" "));
                out.push_str("; ");
            }
        }
    }
    comment(o, out, ";")?;
    out.push_str(" }");
    Ok(())
}

/// `[over] N[ UNIT]/PER [burst B UNIT]` of a limit statement or object.
fn limit_body(o: &Obj, out: &mut String) -> R<()> {
    if o.get("inv").and_then(Value::as_bool) == Some(true) {
        out.push_str("over ");
    }
    let rate = get(o, "rate")?
        .as_u64()
        .ok_or_else(|| JsonError::new("Invalid limit rate."))?;
    let unit = opt_str(o, "rate_unit");
    out.push_str(&rate.to_string());
    if let Some(u) = unit.filter(|u| *u != "packets") {
        out.push(' ');
        out.push_str(u);
    }
    out.push('/');
    out.push_str(opt_str(o, "per").unwrap_or("second"));
    if let Some(b) = opt_u64(o, "burst").filter(|&b| b != 0) {
        out.push_str(&format!(" burst {b} "));
        match (opt_str(o, "burst_unit"), unit) {
            (Some(u), _) => out.push_str(u),
            (None, Some(u)) if u != "packets" => out.push_str("bytes"),
            _ => out.push_str("packets"),
        }
    }
    Ok(())
}

fn stmt(v: &Value, out: &mut String) -> R<()> {
    if let Value::String(text) = v {
        // nft 1.0.6 writes statements its schema has no form for (anonymous chains, map updates) as
        // their nft text; an anonymous chain's rules, one a line there, are separated by `;` here
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        for (i, l) in lines.iter().enumerate() {
            if i > 0 {
                let open = lines[i - 1].ends_with('{');
                out.push_str(if open || *l == "}" { " " } else { " ; " });
            }
            out.push_str(l);
        }
        return Ok(());
    }
    let (k, body) = single(v)?;
    match k {
        "match" => {
            let o = as_obj(body, "match")?;
            let op = get_str(o, "op")?;
            let left = get(o, "left")?;
            let ctx = Ctx {
                quote: quotes_strings(left),
                ..Ctx::default()
            };
            expr(left, Ctx::default(), out)?;
            let right = get(o, "right")?;
            match op {
                // `fib daddr oif missing`: presence tests take no operator
                "in" => {}
                "==" if right.is_boolean()
                    || matches!(right.as_str(), Some("exists" | "missing")) => {}
                "==" | "!=" | "<" | ">" | "<=" | ">=" => {
                    out.push(' ');
                    out.push_str(op);
                }
                _ => return Err(JsonError::new(format!("Unknown relational op '{op}'."))),
            }
            out.push(' ');
            expr(right, ctx, out)
        }
        "counter" | "quota" | "limit" if body.get("map").is_some() => {
            // a named object chosen by a map lookup: `counter name ip saddr map { … }`
            out.push_str(k);
            out.push_str(" name ");
            expr(body, Ctx::default(), out)
        }
        "counter" => {
            match body {
                Value::Null => out.push_str("counter"),
                Value::String(n) => {
                    out.push_str("counter name ");
                    quoted(n, out)?;
                }
                Value::Object(o) => out.push_str(&format!(
                    "counter packets {} bytes {}",
                    opt_u64(o, "packets").unwrap_or(0),
                    opt_u64(o, "bytes").unwrap_or(0)
                )),
                _ => return Err(JsonError::new("Invalid counter statement.")),
            }
            Ok(())
        }
        "accept" | "drop" | "continue" | "return" | "jump" | "goto" => verdict(k, body, out),
        "vmap" => {
            let o = as_obj(body, "vmap")?;
            expr(get(o, "key")?, Ctx::default(), out)?;
            out.push_str(" vmap ");
            expr(get(o, "data")?, Ctx::default(), out)
        }
        "mangle" => {
            let o = as_obj(body, "mangle")?;
            let key = get(o, "key")?;
            expr(key, Ctx::default(), out)?;
            out.push_str(" set ");
            let ctx = Ctx {
                quote: quotes_strings(key),
                ..Ctx::default()
            };
            expr(get(o, "value")?, ctx, out)
        }
        "log" => {
            out.push_str("log");
            let Some(o) = body.as_object() else {
                return Ok(());
            };
            if let Some(p) = opt_str(o, "prefix") {
                out.push_str(" prefix ");
                quoted(p, out)?;
            }
            if let Some(l) = opt_str(o, "level") {
                out.push_str(&format!(" level {l}"));
            }
            for (key, word) in [
                ("group", "group"),
                ("snaplen", "snaplen"),
                ("queue-threshold", "queue-threshold"),
            ] {
                if let Some(n) = opt_u64(o, key) {
                    out.push_str(&format!(" {word} {n}"));
                }
            }
            let flags: Vec<&str> = match o.get("flags") {
                Some(Value::String(f)) => vec![f.as_str()],
                Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
                _ => vec![],
            };
            if flags.contains(&"all") {
                out.push_str(" flags all");
            } else {
                let tcp: Vec<&str> = flags
                    .iter()
                    .filter_map(|f| f.strip_prefix("tcp "))
                    .collect();
                if !tcp.is_empty() {
                    out.push_str(&format!(" flags tcp {}", tcp.join(",")));
                }
                for f in flags.iter().filter(|f| !f.starts_with("tcp ")) {
                    out.push_str(&format!(" flags {f}"));
                }
            }
            Ok(())
        }
        "limit" => match body {
            Value::String(n) => {
                out.push_str("limit name ");
                quoted(n, out)
            }
            _ => {
                out.push_str("limit rate ");
                limit_body(as_obj(body, "limit")?, out)
            }
        },
        "quota" => match body {
            Value::String(n) => {
                out.push_str("quota name ");
                quoted(n, out)
            }
            _ => {
                let o = as_obj(body, "quota")?;
                out.push_str("quota ");
                if o.get("inv").and_then(Value::as_bool) == Some(true) {
                    out.push_str("over ");
                }
                out.push_str(&format!(
                    "{} {}",
                    opt_u64(o, "val").unwrap_or(0),
                    opt_str(o, "val_unit").unwrap_or("bytes")
                ));
                if let Some(u) = opt_u64(o, "used").filter(|&u| u != 0) {
                    out.push_str(&format!(
                        " used {u} {}",
                        opt_str(o, "used_unit").unwrap_or("bytes")
                    ));
                }
                Ok(())
            }
        },
        "reject" => {
            out.push_str("reject");
            if let Some(o) = body.as_object() {
                match opt_str(o, "type") {
                    Some("tcp reset") => out.push_str(" with tcp reset"),
                    Some(t) => {
                        out.push_str(&format!(" with {t}"));
                        if let Some(e) = o.get("expr") {
                            out.push(' ');
                            expr(e, Ctx::default(), out)?;
                        }
                    }
                    None => {}
                }
            }
            Ok(())
        }
        "snat" | "dnat" | "masquerade" | "redirect" => nat(k, body, out),
        "queue" => {
            out.push_str("queue");
            if let Some(o) = body.as_object() {
                let flags: Vec<&str> = match o.get("flags") {
                    Some(Value::String(f)) => vec![f.as_str()],
                    Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
                    _ => vec![],
                };
                if !flags.is_empty() {
                    out.push_str(&format!(" flags {}", flags.join(",")));
                }
                if let Some(n) = o.get("num") {
                    out.push_str(" to ");
                    expr(n, Ctx::default(), out)?;
                }
            }
            Ok(())
        }
        "notrack" => {
            out.push_str("notrack");
            Ok(())
        }
        "dup" | "fwd" => {
            // `{"fwd": {"dev": D}}`, `{"fwd": {"dev": D, "family": F, "addr": A}}`,
            // `{"dup": {"addr": A|D, "dev": D}}`: device names are strings (quoted here), or maps
            let o = as_obj(body, k)?;
            let dev = |v: &Value, out: &mut String| -> R<()> {
                match v {
                    Value::String(d) => {
                        out.push_str(&format!("\"{d}\""));
                        Ok(())
                    }
                    _ => expr(v, Ctx::default(), out),
                }
            };
            out.push_str(k);
            if k == "fwd" {
                match (o.get("family"), o.get("addr")) {
                    (Some(Value::String(f)), Some(a)) => {
                        out.push_str(&format!(" {f} to "));
                        expr(a, Ctx::default(), out)?;
                        out.push_str(" device ");
                        dev(get(o, "dev")?, out)?;
                    }
                    _ => {
                        out.push_str(" to ");
                        dev(get(o, "dev")?, out)?;
                    }
                }
            } else {
                out.push_str(" to ");
                let addr = get(o, "addr")?;
                match (addr, o.get("dev")) {
                    // an address is written bare; a lone device name is quoted
                    (Value::String(a), None) if a.parse::<std::net::IpAddr>().is_err() => {
                        dev(addr, out)?
                    }
                    _ => expr(addr, Ctx::default(), out)?,
                }
                if let Some(d) = o.get("dev") {
                    out.push_str(" device ");
                    dev(d, out)?;
                }
            }
            Ok(())
        }
        "ct helper" | "ct timeout" | "ct expectation" => {
            out.push_str(k);
            out.push_str(" set ");
            obj_ref_target(body, out)
        }
        "synproxy" if body.is_string() => {
            out.push_str("synproxy name ");
            obj_ref_target(body, out)
        }
        "secmark" => {
            out.push_str("meta secmark set ");
            obj_ref_target(body, out)
        }
        "set" | "map" => {
            let o = as_obj(body, k)?;
            let op = get_str(o, "op")?;
            let name = get_str(o, k)?;
            out.push_str(&format!("{op} {} {{ ", name));
            expr(get(o, "elem")?, Ctx::default(), out)?;
            if let Some(d) = o.get("data") {
                out.push_str(" : ");
                expr(d, Ctx::default(), out)?;
            }
            if let Some(Value::Array(ss)) = o.get("stmt") {
                stmts(ss, out)?;
            }
            out.push_str(" }");
            Ok(())
        }
        // `{"meter": {"key": K, "stmt": S, "size": N, "name": "m"}}` (a timeout: `"key": {"elem":
        // {"val": K, "timeout": T}}`)
        "meter" => {
            let o = as_obj(body, k)?;
            out.push_str(&format!("meter {}", get_str(o, "name")?));
            if let Some(n) = opt_u64(o, "size") {
                out.push_str(&format!(" size {n}"));
            }
            out.push_str(" { ");
            expr(get(o, "key")?, Ctx::default(), out)?;
            match o.get("stmt") {
                Some(Value::Array(ss)) => stmts(ss, out)?,
                Some(s) => stmts(std::slice::from_ref(s), out)?,
                None => {}
            }
            out.push_str(" }");
            Ok(())
        }
        "flow" => {
            let o = as_obj(body, "flow")?;
            out.push_str(&format!(
                "flow {} {}",
                opt_str(o, "op").unwrap_or("add"),
                get_str(o, "flowtable")?
            ));
            Ok(())
        }
        // sluice's writer: selectors it has no schema form for, as `{"KEY": "rest of the text"}`
        _ => Err(JsonError::new(format!("Unknown statement object '{k}'."))),
    }
}

/// The name of a referenced object: a string, or a map lookup.
fn obj_ref_target(v: &Value, out: &mut String) -> R<()> {
    match v {
        Value::String(n) => quoted(n, out),
        _ => expr(v, Ctx::default(), out),
    }
}

fn verdict(k: &str, body: &Value, out: &mut String) -> R<()> {
    out.push_str(k);
    if matches!(k, "jump" | "goto") {
        let o = as_obj(body, k)?;
        if let Some(Value::Array(rules)) = o.get("chain") {
            // sluice's form of an anonymous chain: its rules, each a statement list
            out.push_str(" {");
            for (i, r) in rules.iter().enumerate() {
                if i > 0 {
                    out.push_str(" ;");
                }
                let r = r
                    .as_array()
                    .ok_or_else(|| JsonError::new("Malformed anonymous chain."))?;
                stmts(r, out)?;
            }
            out.push_str(" }");
        } else {
            out.push(' ');
            out.push_str(get_str(o, "target")?);
        }
    }
    Ok(())
}

fn nat(k: &str, body: &Value, out: &mut String) -> R<()> {
    out.push_str(k);
    let Some(o) = body.as_object() else {
        return Ok(());
    };
    let fam = opt_str(o, "family");
    if let Some(f) = fam {
        out.push(' ');
        out.push_str(f);
    }
    let flag_list = |key: &str| -> Vec<&str> {
        match o.get(key) {
            Some(Value::String(f)) => vec![f.as_str()],
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        }
    };
    if flag_list("type_flags").contains(&"prefix") {
        out.push_str(" prefix");
    }
    let addr = o.get("addr");
    let port = o.get("port");
    if addr.is_some() || port.is_some() {
        out.push_str(" to ");
        if let Some(a) = addr {
            let mut text = String::new();
            expr(a, Ctx::default(), &mut text)?;
            let v6 = fam == Some("ip6") || (a.is_string() && text.contains(':'));
            if v6 && port.is_some() {
                out.push('[');
                out.push_str(&text);
                out.push(']');
            } else {
                out.push_str(&text);
            }
        }
        if let Some(p) = port {
            out.push(':');
            expr(p, Ctx::default(), out)?;
        }
    }
    let flags = flag_list("flags");
    if !flags.is_empty() {
        out.push(' ');
        out.push_str(&flags.join(","));
    }
    Ok(())
}

/// How to write constants: strings quoted (interface names, other string types).
#[derive(Clone, Copy, Default)]
struct Ctx<'a> {
    quote: bool,
    /// per concatenated component
    quote_parts: &'a [bool],
    /// inside a binary operation: flag lists as `(a | b)`
    binop: bool,
}

/// Does the selector `left` have a string type (its constants are written quoted)?
fn quotes_strings(left: &Value) -> bool {
    let Ok((k, v)) = single(left) else {
        return false;
    };
    let key = v.as_object().and_then(|o| opt_str(o, "key"));
    match (k, key) {
        ("meta", Some(k)) => matches!(
            k,
            "iifname"
                | "oifname"
                | "ibrname"
                | "obrname"
                | "ibriport"
                | "obriport"
                | "iifkind"
                | "oifkind"
                | "sdifname"
        ),
        ("ct", Some("helper")) | ("osf", Some("name")) => true,
        ("fib", _) => v.as_object().and_then(|o| opt_str(o, "result")) == Some("oifname"),
        _ => false,
    }
}

fn expr(v: &Value, ctx: Ctx<'_>, out: &mut String) -> R<()> {
    match v {
        Value::Null => Err(JsonError::new("Unexpected null value.")),
        Value::Bool(b) => {
            out.push_str(if *b { "exists" } else { "missing" });
            Ok(())
        }
        Value::Number(n) => {
            out.push_str(&n.to_string());
            Ok(())
        }
        Value::String(s) => {
            // `*` (catch-all), `@set`, symbols, numbers and addresses bare; names of string types quoted
            let bare = (s == "*" && !ctx.quote)
                || s.strip_prefix('@').is_some_and(bare_ok)
                || (!ctx.quote && bare_ok(s));
            if bare {
                out.push_str(s);
            } else {
                quoted(s, out)?;
            }
            Ok(())
        }
        Value::Array(items) => {
            // a flag list
            if ctx.binop && items.len() > 1 {
                out.push('(');
            }
            for (i, it) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(if ctx.binop { " | " } else { "," });
                }
                expr(it, ctx, out)?;
            }
            if ctx.binop && items.len() > 1 {
                out.push(')');
            }
            Ok(())
        }
        Value::Object(_) => {
            let (k, body) = single(v)?;
            expr_obj(k, body, ctx, out)
        }
    }
}

fn expr_obj(k: &str, body: &Value, ctx: Ctx<'_>, out: &mut String) -> R<()> {
    let o = body.as_object();
    let field = |name: &str| -> R<&str> { get_str(as_obj(body, k)?, name) };
    match k {
        "payload" => {
            let o = as_obj(body, k)?;
            if let Some(p) = opt_str(o, "protocol") {
                out.push_str(&format!("{p} {}", get_str(o, "field")?));
            } else {
                out.push_str(&format!(
                    "@{},{},{}",
                    get_str(o, "base")?,
                    get(o, "offset")?,
                    get(o, "len")?
                ));
            }
            Ok(())
        }
        "meta" => {
            out.push_str(&format!("meta {}", field("key")?));
            Ok(())
        }
        "ct" => {
            let o = as_obj(body, k)?;
            out.push_str("ct");
            if let Some(d) = opt_str(o, "dir") {
                out.push_str(&format!(" {d}"));
            }
            if let Some(f) = opt_str(o, "family") {
                out.push_str(&format!(" {f}"));
            }
            out.push_str(&format!(" {}", get_str(o, "key")?));
            Ok(())
        }
        "rt" => {
            let o = as_obj(body, k)?;
            out.push_str("rt");
            if let Some(f) = opt_str(o, "family") {
                out.push_str(&format!(" {f}"));
            }
            out.push_str(&format!(" {}", get_str(o, "key")?));
            Ok(())
        }
        "socket" if o.is_some() => {
            out.push_str(&format!("socket {}", field("key")?));
            Ok(())
        }
        "osf" if o.is_some() => {
            let o = as_obj(body, k)?;
            out.push_str("osf");
            if let Some(t) = opt_str(o, "ttl") {
                out.push_str(&format!(" ttl {t}"));
            }
            out.push_str(&format!(" {}", get_str(o, "key")?));
            Ok(())
        }
        "fib" => {
            let o = as_obj(body, k)?;
            let flags: Vec<&str> = match o.get("flags") {
                Some(Value::String(f)) => vec![f.as_str()],
                Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
                _ => vec![],
            };
            out.push_str(&format!(
                "fib {} {}",
                flags.join(" . "),
                get_str(o, "result")?
            ));
            Ok(())
        }
        "tcp option" | "ip option" | "sctp chunk" | "dccp option" => {
            let o = as_obj(body, k)?;
            out.push_str(k);
            out.push(' ');
            match get(o, "name")? {
                Value::String(n) => out.push_str(n),
                Value::Number(n) => out.push_str(&n.to_string()),
                _ => return Err(JsonError::new("Invalid option name.")),
            }
            if let Some(f) = opt_str(o, "field") {
                out.push_str(&format!(" {f}"));
            }
            Ok(())
        }
        "exthdr" => {
            let o = as_obj(body, k)?;
            let name = get_str(o, "name")?;
            match opt_str(o, "field") {
                Some(f) => out.push_str(&format!("{name} {f}")),
                None => out.push_str(&format!("exthdr {name}")),
            }
            Ok(())
        }
        "numgen" => {
            let o = as_obj(body, k)?;
            out.push_str(&format!(
                "numgen {} mod {}",
                opt_str(o, "mode").unwrap_or("inc"),
                get(o, "mod")?
            ));
            if let Some(off) = opt_u64(o, "offset").filter(|&x| x != 0) {
                out.push_str(&format!(" offset {off}"));
            }
            Ok(())
        }
        "jhash" => {
            let o = as_obj(body, k)?;
            out.push_str("jhash ");
            expr(get(o, "expr")?, Ctx::default(), out)?;
            out.push_str(&format!(" mod {}", get(o, "mod")?));
            if let Some(s) = opt_u64(o, "seed") {
                out.push_str(&format!(" seed {s:#x}"));
            }
            if let Some(off) = opt_u64(o, "offset").filter(|&x| x != 0) {
                out.push_str(&format!(" offset {off}"));
            }
            Ok(())
        }
        "symhash" => {
            let o = as_obj(body, k)?;
            out.push_str(&format!("symhash mod {}", get(o, "mod")?));
            if let Some(off) = opt_u64(o, "offset").filter(|&x| x != 0) {
                out.push_str(&format!(" offset {off}"));
            }
            Ok(())
        }
        "&" | "|" | "^" | "<<" | ">>" => {
            let a = body
                .as_array()
                .filter(|a| a.len() == 2)
                .ok_or_else(|| JsonError::new(format!("Malformed binary expression '{k}'.")))?;
            let inner = Ctx { binop: true, ..ctx };
            // nft's precedence, tightest first: shifts, `&`, `^`, `|`; written left-associative, so
            // an operand needs parentheses when it binds looser than `k` (right: or as loose)
            let prec = |op: &str| match op {
                "<<" | ">>" => 4,
                "&" => 3,
                "^" => 2,
                "|" => 1,
                _ => 9,
            };
            let operand = |v: &Value, right: bool, out: &mut String| -> R<()> {
                let nested = single(v).is_ok_and(|(op, _)| {
                    prec(op) < prec(k) || (right && prec(op) == prec(k) && prec(op) != 9)
                });
                if nested {
                    out.push('(');
                }
                expr(v, inner, out)?;
                if nested {
                    out.push(')');
                }
                Ok(())
            };
            operand(&a[0], false, out)?;
            out.push_str(&format!(" {k} "));
            operand(&a[1], true, out)
        }
        "prefix" => {
            let o = as_obj(body, k)?;
            expr(get(o, "addr")?, ctx, out)?;
            out.push_str(&format!("/{}", get(o, "len")?));
            Ok(())
        }
        "range" => {
            let a = body
                .as_array()
                .filter(|a| a.len() == 2)
                .ok_or_else(|| JsonError::new("Malformed range expression."))?;
            expr(&a[0], ctx, out)?;
            out.push('-');
            expr(&a[1], ctx, out)
        }
        "concat" => {
            let a = body
                .as_array()
                .ok_or_else(|| JsonError::new("Malformed concat expression."))?;
            for (i, p) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(" . ");
                }
                let c = Ctx {
                    quote: ctx.quote_parts.get(i).copied().unwrap_or(ctx.quote),
                    quote_parts: &[],
                    binop: false,
                };
                expr(p, c, out)?;
            }
            Ok(())
        }
        "set" => match body {
            Value::String(n) => {
                out.push_str(n);
                Ok(())
            }
            Value::Array(elems) => {
                let q: Vec<bool>;
                let quote = if ctx.quote_parts.is_empty() {
                    q = vec![ctx.quote];
                    &q[..]
                } else {
                    ctx.quote_parts
                };
                set_elems(elems, quote, out)
            }
            other => {
                out.push_str("{ ");
                set_elem(other, &[ctx.quote], out)?;
                out.push_str(" }");
                Ok(())
            }
        },
        "map" => {
            let o = as_obj(body, k)?;
            expr(get(o, "key")?, Ctx::default(), out)?;
            out.push_str(" map ");
            expr(get(o, "data")?, Ctx::default(), out)
        }
        "elem" => {
            let o = as_obj(body, k)?;
            expr(get(o, "val")?, ctx, out)?;
            if let Some(t) = opt_u64(o, "timeout") {
                out.push_str(&format!(" timeout {t}s"));
            }
            if let Some(t) = opt_u64(o, "expires") {
                out.push_str(&format!(" expires {t}s"));
            }
            comment(o, out, "")?;
            if let Some(c) = o.get("counter") {
                let c = c.as_object();
                out.push_str(&format!(
                    " counter packets {} bytes {}",
                    c.and_then(|c| opt_u64(c, "packets")).unwrap_or(0),
                    c.and_then(|c| opt_u64(c, "bytes")).unwrap_or(0)
                ));
            }
            Ok(())
        }
        "accept" | "drop" | "continue" | "return" | "jump" | "goto" => verdict(k, body, out),
        // sluice's writer: a selector without a schema form, as its nft text
        _ if body.is_string() => {
            out.push_str(&format!("{k} {}", body.as_str().unwrap_or_default()));
            Ok(())
        }
        _ => Err(JsonError::new(format!("Unknown expression type '{k}'."))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_become_nft_lines() {
        let j = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}},
            {"table": {"family": "inet", "name": "t", "handle": 1}},
            {"chain": {"family": "inet", "table": "t", "name": "c", "handle": 1, "type": "filter",
                       "hook": "input", "prio": 0, "policy": "drop"}},
            {"rule": {"family": "inet", "table": "t", "chain": "c", "handle": 2, "expr": [
                {"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": ["established", "related"]}},
                {"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "eth*"}},
                {"counter": {"packets": 3, "bytes": 4}}, {"accept": null}]}}]}"#;
        assert_eq!(
            to_nft(j).unwrap(),
            "\nadd table inet t\n\
             add chain inet t c { type filter hook input priority 0; policy drop; }\n\
             add rule inet t c ct state established,related meta iifname == \"eth*\" counter packets 3 bytes 4 accept\n"
        );
    }

    #[test]
    fn errors_name_the_command_and_the_expression() {
        let j = r#"{"nftables": [{"table": {"family": "inet", "name": "t"}},
            {"rule": {"family": "inet", "table": "t", "chain": "c", "expr": [{"accept": null}, {"bogus": 1}]}}]}"#;
        assert_eq!(
            to_nft(j).unwrap_err().to_string(),
            "Error: Unknown statement object 'bogus'.\n\
             Error: Parsing expr array at index 1 failed.\n\
             Error: Parsing command array at index 1 failed."
        );
        let j = r#"{"nftables": [{"table": {"family": "inet"}}]}"#;
        assert_eq!(
            to_nft(j).unwrap_err().to_string(),
            "Error: Object item not found: name\nError: Parsing command array at index 0 failed."
        );
    }
}
