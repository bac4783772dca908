//! Conformance against nftables' own test corpus (GPL test data in ../shared/nft-conformance, read at
//! test time only; nothing from it is copied here).
//!
//! * `py/<dir>/*.t`: single-rule tests. Each `RULE;ok[;OUTPUT]` line is added to every (table, chain)
//!   in scope and listed with `-s -p`; the text must equal OUTPUT (or RULE), with nft-test.py's
//!   leniency for the first `{...}`. `RULE;fail` lines must be rejected.
//! * `shell/testcases/*/dumps/*.nft` marked `yes`/`strip-count` in ROUNDTRIP.tsv: parse + print with
//!   default flags must reproduce the file byte for byte.
//! * `bogons/*`: must not panic.
//!
//! Rule lines are counted per file (`py.ok.ip/ct.t`), per family of the table they ran in
//! (`py.ok.family.ip`) and per corpus directory (`py.ok.dir.ip`: `any/*.t` run in every family).
//!
//! Ratchet: counts must not drop below the `ratchet KEY N` lines in docs/CONFORMANCE.md. Run with
//! `--nocapture` to see the table; set `CONFORMANCE_PRINT_RATCHET=1` to print fresh ratchet lines.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rules::{apply, print_rule, NoIncludes, PrintOptions, Ruleset};

fn corpus() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/nft-conformance");
    p.is_dir().then_some(p)
}

#[derive(Default, Clone, Copy)]
struct Count {
    pass: u64,
    total: u64,
}

impl Count {
    fn add(&mut self, ok: bool) {
        self.total += 1;
        if ok {
            self.pass += 1;
        }
    }
}

#[derive(Default)]
struct Tally {
    /// key → count; keys like `py.ok.ip/ip.t`, `py.fail.family.inet`, `dump.sets`
    counts: BTreeMap<String, Count>,
    failures: Vec<String>,
}

impl Tally {
    fn add(&mut self, keys: &[String], ok: bool) {
        for k in keys {
            self.counts.entry(k.clone()).or_default().add(ok);
        }
    }
}

/// nft-test.py's comparison: exact, or equal outside the first `{...}` and equal as multisets of
/// space-free members inside it. nft-test.py applies the set leniency when the rule has a `{`; here it
/// also applies when only the expected output has one (an implied dependency such as
/// `icmp type { echo-reply, echo-request}`, whose expected text no nft prints byte for byte: nft-test.py
/// reports any output mismatch as a warning only).
fn lenient_eq(rule: &str, got: &str, want: &str) -> bool {
    if got == want {
        return true;
    }
    if !rule.contains('{') && !want.contains('{') {
        return false;
    }
    let split = |s: &str| -> Option<(String, Vec<String>, String)> {
        let a = s.find('{')?;
        let b = s[a..].find('}')? + a;
        let mut members: Vec<String> = s[a + 1..b].split(',').map(|m| m.replace(' ', "")).collect();
        members.sort();
        Some((s[..a].to_string(), members, s[b..].to_string()))
    };
    match (split(got), split(want)) {
        (Some(g), Some(w)) => g == w,
        _ => false,
    }
}

struct PyFile {
    chains: BTreeMap<String, String>,
    /// (family, table, chains)
    tables: Vec<(String, String, Vec<String>)>,
    base: Ruleset,
}

fn run_cmd(rs: &mut Ruleset, cmd: &str) -> Result<(), String> {
    apply(rs, cmd, "<cmdline>", &NoIncludes).map_err(|d| d.to_string())
}

fn py_file(path: &Path, rel: &str, tally: &mut Tally) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut st = PyFile {
        chains: BTreeMap::new(),
        tables: Vec::new(),
        base: Ruleset::default(),
    };
    let opts = PrintOptions {
        stateless: true,
        numeric_proto: true,
        ..Default::default()
    };
    for line in text.lines() {
        let line = line.trim_end();
        if line.is_empty() || line.starts_with('#') || line.starts_with('-') {
            continue;
        }
        let first = line.as_bytes()[0];
        match first {
            b':' => {
                if let Some((name, spec)) = line[1..].split_once(';') {
                    st.chains.insert(name.to_string(), spec.to_string());
                }
            }
            b'*' => {
                let parts: Vec<&str> = line[1..].split(';').collect();
                if parts.len() < 3 {
                    continue;
                }
                let (fam, table) = (parts[0], parts[1]);
                let chains: Vec<String> = parts[2].split(',').map(|s| s.to_string()).collect();
                let _ = run_cmd(&mut st.base, &format!("add table {fam} {table}"));
                for c in &chains {
                    let spec = st.chains.get(c).cloned().unwrap_or_default();
                    let _ = run_cmd(
                        &mut st.base,
                        &format!("add chain {fam} {table} {c} {{ {spec}; }}"),
                    );
                }
                st.tables.push((fam.to_string(), table.to_string(), chains));
            }
            b'!' | b'?' | b'%' => {
                let Some((body, status)) = line[1..].rsplit_once(';') else {
                    continue;
                };
                for (fam, table, _) in st.tables.clone() {
                    let cmd = match first {
                        b'!' => {
                            let (name, rest) = body.split_once(' ').unwrap_or((body, ""));
                            let kind = if rest.contains(" : ") { "map" } else { "set" };
                            let mut spec = String::new();
                            // `type T [: D] [timeout X] [flags F]` → `{ type T; timeout X; flags F; }`
                            let mut cur = String::new();
                            for w in rest.split(' ') {
                                if matches!(w, "timeout" | "flags" | "size" | "policy")
                                    && !cur.is_empty()
                                {
                                    spec.push_str(&cur);
                                    spec.push_str("; ");
                                    cur.clear();
                                }
                                if !cur.is_empty() {
                                    cur.push(' ');
                                }
                                cur.push_str(w);
                            }
                            spec.push_str(&cur);
                            format!("add {kind} {fam} {table} {name} {{ {spec}; }}")
                        }
                        b'?' => {
                            let (name, elems) = body.split_once(' ').unwrap_or((body, ""));
                            format!("add element {fam} {table} {name} {{ {elems} }}")
                        }
                        _ => {
                            let (name, rest) = body.split_once(' ').unwrap_or((body, ""));
                            let rest = rest.strip_prefix("type ").unwrap_or(rest);
                            let (ty, spec) = rest.split_once(' ').unwrap_or((rest, ""));
                            if ty == "ct" {
                                let (sub, spec2) = spec.split_once(' ').unwrap_or((spec, ""));
                                format!("add ct {sub} {fam} {table} {name} {spec2}")
                            } else {
                                format!("add {ty} {fam} {table} {name} {spec}")
                            }
                        }
                    };
                    let r = run_cmd(&mut st.base, &cmd);
                    let ok = r.is_ok() == (status == "ok");
                    let kind = match first {
                        b'!' => "set",
                        b'?' => "elem",
                        _ => "obj",
                    };
                    tally.add(&[format!("py.{kind}"), format!("py.{kind}.{rel}")], ok);
                    if !ok {
                        tally.failures.push(format!("{rel}: {cmd} => {r:?}"));
                    }
                }
            }
            _ => {
                let fields: Vec<&str> = line.split(';').collect();
                if fields.len() < 2 || fields.len() > 3 || !matches!(fields[1], "ok" | "fail") {
                    continue;
                }
                let rule = fields[0];
                let want_ok = fields[1] == "ok";
                let expected = if fields.len() == 3 { fields[2] } else { rule };
                for (fam, table, chains) in &st.tables {
                    for chain in chains {
                        let mut rs = st.base.clone();
                        let r = run_cmd(&mut rs, &format!("add rule {fam} {table} {chain} {rule}"));
                        let (ok, detail) = match (&r, want_ok) {
                            (Ok(()), true) => {
                                let got = rs
                                    .tables
                                    .iter()
                                    .find(|t| t.family.name() == fam && t.name == *table)
                                    .and_then(|t| t.chain(chain))
                                    .and_then(|c| c.rules.last())
                                    .map(|r| print_rule(r, &opts))
                                    .unwrap_or_default();
                                let got = got.trim_end().to_string();
                                let ok = lenient_eq(rule, &got, expected.trim_end());
                                (ok, format!("got `{got}` want `{expected}`"))
                            }
                            (Err(e), true) => (
                                false,
                                format!("rejected: {}", e.lines().next().unwrap_or("")),
                            ),
                            (Ok(()), false) => (false, "accepted a fail line".to_string()),
                            (Err(_), false) => (true, String::new()),
                        };
                        let kind = if want_ok { "ok" } else { "fail" };
                        let dir = rel.split('/').next().unwrap_or("");
                        tally.add(
                            &[
                                format!("py.{kind}"),
                                format!("py.{kind}.{rel}"),
                                format!("py.{kind}.family.{fam}"),
                                format!("py.{kind}.dir.{dir}"),
                            ],
                            ok,
                        );
                        if !ok {
                            tally
                                .failures
                                .push(format!("{rel} [{fam} {chain}] {rule} :: {detail}"));
                        }
                    }
                }
            }
        }
    }
}

fn strip_count(s: &str) -> String {
    s.lines()
        .map(|l| match l.find("\t# count ") {
            Some(i) => &l[..i],
            None => l,
        })
        .fold(String::new(), |mut a, l| {
            a.push_str(l);
            a.push('\n');
            a
        })
}

fn dumps(root: &Path, tally: &mut Tally) {
    let Ok(tsv) = std::fs::read_to_string(root.join("shell/ROUNDTRIP.tsv")) else {
        return;
    };
    for line in tsv.lines() {
        if line.starts_with('#') {
            continue;
        }
        let cols: Vec<&str> = line.split('\t').collect();
        if cols.len() < 4 || !matches!(cols[3], "yes" | "strip-count") {
            continue;
        }
        let path = root.join("shell").join(cols[0]);
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let text = if cols[3] == "strip-count" {
            strip_count(&text)
        } else {
            text
        };
        let group = cols[0].split('/').nth(1).unwrap_or("?").to_string();
        let r = std::panic::catch_unwind(|| {
            rules::parse_ruleset(&text, cols[0])
                .map(|rs| rules::print_ruleset(&rs, &PrintOptions::default(), None))
                .map_err(|d| d.to_string())
        });
        let (ok, detail) = match r {
            Ok(Ok(out)) if out == text => (true, String::new()),
            Ok(Ok(out)) => {
                let diff = text
                    .lines()
                    .zip(out.lines())
                    .find(|(a, b)| a != b)
                    .map(|(a, b)| format!("want `{a}` got `{b}`"))
                    .unwrap_or_else(|| "length differs".into());
                (false, diff)
            }
            Ok(Err(e)) => (false, e.lines().next().unwrap_or("").to_string()),
            Err(_) => (false, "PANIC".into()),
        };
        tally.add(&["dump".to_string(), format!("dump.{group}")], ok);
        if !ok {
            tally.failures.push(format!("dump {}: {detail}", cols[0]));
        }
    }
}

fn bogons(root: &Path, tally: &mut Tally) {
    let Ok(rd) = std::fs::read_dir(root.join("bogons")) else {
        return;
    };
    let mut files: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    files.sort();
    for f in files {
        let Ok(bytes) = std::fs::read(&f) else {
            continue;
        };
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let r = std::panic::catch_unwind(|| {
            if let Ok(rs) = rules::parse_ruleset(&text, "bogon") {
                let _ = rules::print_ruleset(&rs, &PrintOptions::default(), None);
                let _ = rules::compile(&rs);
            }
        });
        tally.add(&["bogons.nopanic".to_string()], r.is_ok());
        if r.is_err() {
            tally
                .failures
                .push(format!("bogon {} panicked", f.display()));
        }
    }
}

fn ratchet_lines(doc: &str) -> Vec<(String, u64)> {
    doc.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next()? == "ratchet").then_some(())?;
            let k = w.next()?.to_string();
            let n = w.next()?.parse().ok()?;
            Some((k, n))
        })
        .collect()
}

#[test]
fn conformance() {
    let Some(root) = corpus() else {
        println!("nft conformance corpus not found (../shared/nft-conformance): skipping");
        return;
    };
    let mut tally = Tally::default();
    if std::env::var("CONFORMANCE_PANICS").is_err() {
        std::panic::set_hook(Box::new(|_| {}));
    }
    let mut files = Vec::new();
    for dir in std::fs::read_dir(root.join("py")).unwrap().flatten() {
        for f in std::fs::read_dir(dir.path()).unwrap().flatten() {
            if f.path().extension().is_some_and(|e| e == "t") {
                files.push(f.path());
            }
        }
    }
    files.sort();
    for f in &files {
        let rel = f
            .strip_prefix(root.join("py"))
            .unwrap()
            .display()
            .to_string();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut t = Tally::default();
            py_file(f, &rel, &mut t);
            t
        }));
        match r {
            Ok(t) => {
                for (k, c) in t.counts {
                    let e = tally.counts.entry(k).or_default();
                    e.pass += c.pass;
                    e.total += c.total;
                }
                tally.failures.extend(t.failures);
            }
            Err(_) => tally.failures.push(format!("{rel}: PANIC")),
        }
    }
    dumps(&root, &mut tally);
    bogons(&root, &mut tally);
    let _ = std::panic::take_hook();

    println!("{:<44} {:>6} {:>6}", "key", "pass", "total");
    for (k, c) in &tally.counts {
        if !k.contains(".t") || std::env::var("CONFORMANCE_VERBOSE").is_ok() {
            println!("{k:<44} {:>6} {:>6}", c.pass, c.total);
        }
    }
    if let Ok(filter) = std::env::var("CONFORMANCE_FAILURES") {
        for f in &tally.failures {
            if f.contains(&filter) {
                println!("FAIL {f}");
            }
        }
    }
    if std::env::var("CONFORMANCE_PRINT_RATCHET").is_ok() {
        for (k, c) in &tally.counts {
            println!("ratchet {k} {}", c.pass);
        }
    }
    let doc = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/CONFORMANCE.md"),
    )
    .unwrap_or_default();
    let mut regressions = Vec::new();
    for (k, n) in ratchet_lines(&doc) {
        let got = tally.counts.get(&k).map(|c| c.pass).unwrap_or(0);
        if got < n {
            regressions.push(format!("{k}: {got} < {n}"));
        }
    }
    assert!(
        regressions.is_empty(),
        "conformance regressed:\n{}",
        regressions.join("\n")
    );
}
