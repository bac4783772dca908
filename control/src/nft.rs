//! `sluice nft …`: nft's own command line, answered by the running daemon over its control socket.
//!
//! `-f FILE` and command words (`add rule inet t c tcp dport 22 accept`) are sent as nft source text and applied
//! by the daemon as one transaction: the whole text applies or nothing does, and the dataplane switches with one
//! store. `list …` is answered from the live generation with live counters.

use crate::ctl;
use anyhow::{bail, Context, Result};
use rules::{Family, Loader, PrintOptions, Ruleset};
use std::path::{Path, PathBuf};

/// Resolves `include` from the file system: relative paths against the including file's directory, then
/// nft's default include directory `/etc`; `*` and `?` in the last component are globbed, sorted.
pub struct FsLoader;

impl Loader for FsLoader {
    fn load(&self, path: &str, from: &str) -> Result<Vec<(String, String)>, String> {
        let p = Path::new(path);
        let candidates: Vec<PathBuf> = if p.is_absolute() {
            vec![p.to_path_buf()]
        } else {
            // a file in the current directory includes by the name as written (`./x.nft`, as nft
            // names it in messages, not `././x.nft`)
            let here = Path::new(from).parent().map(|d| {
                if d.as_os_str().is_empty() || d == Path::new(".") {
                    p.to_path_buf()
                } else {
                    d.join(p)
                }
            });
            here.into_iter()
                .chain([Path::new("/etc").join(p)])
                .collect()
        };
        for c in candidates {
            let name = c.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.contains(['*', '?']) {
                let dir = c.parent().unwrap_or(Path::new("."));
                let Ok(rd) = std::fs::read_dir(dir) else {
                    continue;
                };
                let mut files: Vec<PathBuf> = rd
                    .flatten()
                    .map(|e| e.path())
                    .filter(|f| {
                        f.file_name()
                            .and_then(|n| n.to_str())
                            .is_some_and(|n| glob_match(name, n))
                    })
                    .collect();
                files.sort();
                return files
                    .into_iter()
                    .map(|f| {
                        std::fs::read_to_string(&f)
                            .map(|t| (f.display().to_string(), t))
                            .map_err(|e| format!("{}: {e}", f.display()))
                    })
                    .collect();
            }
            if let Ok(text) = std::fs::read_to_string(&c) {
                return Ok(vec![(c.display().to_string(), text)]);
            }
        }
        Err(format!("File not found: {path}"))
    }
}

fn glob_match(pat: &str, name: &str) -> bool {
    fn go(p: &[u8], n: &[u8]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], n) || (!n.is_empty() && go(p, &n[1..])),
            (Some(b'?'), Some(_)) => go(&p[1..], &n[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &n[1..]),
            _ => false,
        }
    }
    go(pat.as_bytes(), name.as_bytes())
}

/// Parsed `nft` flags.
#[derive(Default, Debug)]
pub struct NftArgs {
    pub file: Option<PathBuf>,
    pub check: bool,
    /// `-j`: JSON in (`-f`) and out (`list`)
    pub json: bool,
    pub print: PrintOptions,
    pub control: PathBuf,
    pub words: Vec<String>,
}

pub fn parse_args(args: &[String]) -> Result<NftArgs> {
    let mut a = NftArgs {
        control: PathBuf::from(ctl::DEFAULT_SOCKET),
        ..Default::default()
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        if !a.words.is_empty() {
            a.words.push(arg.clone());
            continue;
        }
        match arg.as_str() {
            "-f" | "--file" => a.file = Some(it.next().context("-f needs a file")?.into()),
            "-c" | "--check" => a.check = true,
            "-j" | "--json" => a.json = true,
            "-a" | "--handle" => a.print.handles = true,
            "-s" | "--stateless" => a.print.stateless = true,
            "-n" | "--numeric" => a.print.numeric = true,
            "-p" | "--numeric-protocol" => a.print.numeric_proto = true,
            "-y" | "--numeric-priority" => a.print.numeric_prio = true,
            "-N" | "-S" | "--reversedns" | "--service" => {}
            "--control" => a.control = it.next().context("--control needs a path")?.into(),
            s if s.starts_with('-') && s.len() > 2 && !s.starts_with("--") => {
                // Combined short flags, as nft takes them: -nn, -as, -cf FILE.
                let mut rest = Vec::new();
                for ch in s[1..].chars() {
                    rest.push(format!("-{ch}"));
                }
                let expanded: Vec<String> = rest.into_iter().chain(it.cloned()).collect();
                let mut more = parse_args(&expanded)?;
                more.control = if more.control == Path::new(ctl::DEFAULT_SOCKET) {
                    a.control
                } else {
                    more.control
                };
                more.file = more.file.or(a.file);
                more.check |= a.check;
                more.json |= a.json;
                return Ok(more);
            }
            s if s.starts_with('-') => bail!("unknown option {s}"),
            _ => a.words.push(arg.clone()),
        }
    }
    Ok(a)
}

/// `sluice nft monitor trace`: the control socket to poll (it streams, so it is not answered by [`run`]).
pub fn monitor_trace_args(args: &[String]) -> Result<Option<PathBuf>> {
    let a = parse_args(args)?;
    Ok((a.words.first().map(String::as_str) == Some("monitor")
        && a.words.get(1).map(String::as_str) == Some("trace"))
    .then_some(a.control))
}

/// Runs `sluice nft ARGS`; returns the text to print.
pub fn run(args: &[String]) -> Result<String> {
    let a = parse_args(args)?;
    if let Some(file) = &a.file {
        let abs = std::path::absolute(file).unwrap_or(file.clone());
        let mut text = std::fs::read_to_string(&abs)
            .with_context(|| format!("Could not open file \"{}\"", file.display()))?;
        // like nft 1.0.6, a `-j -f` file that is not JSON is read as nft source
        if a.json && serde_json::from_str::<serde_json::Value>(&text).is_ok() {
            // translated here; the daemon applies (and checks) the equivalent nft source
            text = match rules::json_in::to_nft(&text) {
                Ok(t) => t,
                Err(e) => bail!("{e}"),
            };
        }
        let verb = if a.check { "nft-check" } else { "nft-apply" };
        return ctl::request(&a.control, &format!("{verb} {}", abs.display()), &text);
    }
    if a.words.is_empty() {
        bail!("no command given (try `sluice nft list ruleset`)");
    }
    if a.words[0] == "list" {
        let mut flags = Vec::new();
        for (on, f) in [
            (a.print.handles, "-a"),
            (a.print.stateless, "-s"),
            (a.print.numeric, "-n"),
            (a.print.numeric_proto, "-p"),
            (a.print.numeric_prio, "-y"),
            (a.json, "-j"),
        ] {
            if on {
                flags.push(f);
            }
        }
        return ctl::request(
            &a.control,
            &format!("nft-list {}", flags.join(" ")),
            &a.words[1..].join(" "),
        );
    }
    let verb = if a.check { "nft-check" } else { "nft-apply" };
    ctl::request(
        &a.control,
        &format!("{verb} <cmdline>"),
        &(a.words.join(" ") + "\n"),
    )
}

/// The daemon's side of `nft-list`: what `nft list ruleset|table|chain …` prints.
pub fn list(
    mut view: Ruleset,
    flags: &[&str],
    what: &str,
    counters: &[rules::CounterValue],
) -> Result<String, String> {
    let opts = PrintOptions {
        handles: flags.contains(&"-a"),
        stateless: flags.contains(&"-s"),
        numeric: flags.contains(&"-n"),
        numeric_proto: flags.contains(&"-p"),
        numeric_prio: flags.contains(&"-y"),
    };
    let words: Vec<&str> = what.split_whitespace().collect();
    // Keep counters aligned with the statements that remain after filtering.
    view.set_counter_values(counters);
    let family_of = |w: &str| match w {
        "ip" => Some(Family::Ip),
        "ip6" => Some(Family::Ip6),
        "inet" => Some(Family::Inet),
        "arp" => Some(Family::Arp),
        "bridge" => Some(Family::Bridge),
        "netdev" => Some(Family::Netdev),
        _ => None,
    };
    let (kind, rest) = words
        .split_first()
        .map(|(k, r)| (*k, r))
        .unwrap_or(("ruleset", &[]));
    let (family, rest) = match rest.first().and_then(|w| family_of(w)) {
        Some(f) => (Some(f), &rest[1..]),
        None => (None, rest),
    };
    match (kind, rest) {
        ("ruleset", []) => {
            if let Some(f) = family {
                view.tables.retain(|t| t.family == f);
            }
        }
        ("table", [table]) => {
            let f = family.unwrap_or(Family::Ip);
            view.tables.retain(|t| t.family == f && t.name == *table);
            if view.tables.is_empty() {
                return Err(format!(
                    "Error: No such file or directory\nlist table {} {table}",
                    f.name()
                ));
            }
        }
        ("chain", [table, chain]) => {
            let f = family.unwrap_or(Family::Ip);
            view.tables.retain(|t| t.family == f && t.name == *table);
            for t in &mut view.tables {
                t.chains.retain(|c| c.name == *chain);
            }
            if view.tables.first().is_none_or(|t| t.chains.is_empty()) {
                return Err(format!(
                    "Error: No such file or directory\nlist chain {} {table} {chain}",
                    f.name()
                ));
            }
        }
        _ => return Err(format!("Error: unsupported list command: list {what}")),
    }
    if flags.contains(&"-j") {
        return Ok(rules::print_ruleset_json(&view, &opts, None));
    }
    Ok(rules::print_ruleset(&view, &opts, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn flags_and_words_like_nft() {
        let a = parse_args(&s(&["-a", "list", "ruleset"])).unwrap();
        assert!(a.print.handles);
        assert_eq!(a.words, s(&["list", "ruleset"]));
        let a = parse_args(&s(&["-cf", "x.nft"])).unwrap();
        assert!(a.check);
        assert_eq!(a.file, Some(PathBuf::from("x.nft")));
        // Words after the command are the command's, even if they look like flags.
        let a = parse_args(&s(&["add", "rule", "inet", "t", "c", "meta", "mark", "-1"])).unwrap();
        assert_eq!(a.words.len(), 8);
        assert!(parse_args(&s(&["--bogus"])).is_err());
    }

    #[test]
    fn globs() {
        assert!(glob_match("*.nft", "a.nft"));
        assert!(!glob_match("*.nft", "a.conf"));
        assert!(glob_match("r?.nft", "r1.nft"));
    }

    #[test]
    fn list_table_and_chain_filter_the_ruleset() {
        let rs = rules::parse_ruleset(
            "table inet a {\n\tchain x {\n\t\tcounter\n\t}\n\tchain y {\n\t}\n}\ntable ip b {\n}\n",
            "t.nft",
        )
        .unwrap();
        let counters = [rules::CounterValue {
            packets: 5,
            bytes: 300,
        }];
        let out = list(rs.clone(), &[], "chain inet a x", &counters).unwrap();
        assert_eq!(
            out,
            "table inet a {\n\tchain x {\n\t\tcounter packets 5 bytes 300\n\t}\n}\n"
        );
        let out = list(rs.clone(), &[], "table b", &counters).unwrap();
        assert_eq!(out, "table ip b {\n}\n");
        assert!(list(rs.clone(), &[], "table inet nope", &counters).is_err());
        // -j: the JSON listing, with the live counters
        let out = list(rs.clone(), &["-j"], "chain inet a x", &counters).unwrap();
        assert!(out.starts_with("{\"nftables\": [{\"metainfo\""), "{out}");
        assert!(
            out.contains("\"expr\": [{\"counter\": {\"packets\": 5, \"bytes\": 300}}]"),
            "{out}"
        );
        assert!(!out.contains("\"name\": \"y\""), "{out}");
        let a = parse_args(&s(&["-j", "-f", "x.json"])).unwrap();
        assert!(a.json && a.file.is_some());
        assert!(parse_args(&s(&["-jf", "x.json"])).unwrap().json);
    }
}
