//! Differential test: `sluice fmt FILE` must print what the real `nft -f FILE; nft list ruleset` prints, for
//! the example rulesets and for generated ones. The real nft runs in a throwaway network namespace.
//! Known differences between nft 1.0.6 (Debian's, the oracle here) and 1.1 (what sluice prints, like the
//! upstream corpus) are normalised away below and listed in docs/CONFORMANCE.md.

use std::path::{Path, PathBuf};
use std::process::Command;

const SLUICE: &str = env!("CARGO_BIN_EXE_sluice");

fn nft_available() -> bool {
    (unsafe { libc::geteuid() == 0 })
        && Command::new("nft")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
}

struct Ns(String);
impl Ns {
    fn new(tag: &str) -> Ns {
        let name = format!("sl-t{}-{tag}", std::process::id());
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .unwrap()
            .success();
        assert!(ok, "ip netns add {name}");
        Ns(name)
    }
}
impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// What the kernel's nft prints after loading `file` into an empty ruleset: `nft list ruleset` and
/// `nft -j list ruleset`.
fn real_nft(ns: &Ns, file: &Path) -> Result<(String, String), String> {
    let flush = Command::new("ip")
        .args(["netns", "exec", &ns.0, "nft", "flush", "ruleset"])
        .output()
        .unwrap();
    assert!(flush.status.success());
    let load = Command::new("ip")
        .args(["netns", "exec", &ns.0, "nft", "-f"])
        .arg(file)
        .output()
        .unwrap();
    if !load.status.success() {
        return Err(String::from_utf8_lossy(&load.stderr).to_string());
    }
    let list = |json: bool| {
        let out = Command::new("ip")
            .args(["netns", "exec", &ns.0, "nft"])
            .args(json.then_some("-j"))
            .args(["list", "ruleset"])
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    Ok((list(false), list(true)))
}

fn sluice_fmt(file: &Path) -> Result<String, String> {
    sluice_fmt_args(&[], file)
}

fn sluice_fmt_args(args: &[&str], file: &Path) -> Result<String, String> {
    let out = Command::new(SLUICE)
        .arg("fmt")
        .args(args)
        .arg(file)
        .output()
        .unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).to_string())
    }
}

/// nft 1.0.6 packs map elements two to a line where 1.1 puts one per line: join continuation lines of
/// element lists on both sides before comparing.
fn normalise(s: &str) -> String {
    let mut out = String::new();
    for line in s.lines() {
        // nft 1.0.6 spells out the dependency of an inet `reject with icmp(v6)`; 1.1 leaves it implicit.
        let unspelled;
        let line = if line.contains("meta nfproto ipv4 ") && line.contains("reject with icmp ")
            || line.contains("meta nfproto ipv6 ") && line.contains("reject with icmpv6 ")
        {
            unspelled =
                line.replacen("meta nfproto ipv4 ", "", 1)
                    .replacen("meta nfproto ipv6 ", "", 1);
            unspelled.as_str()
        } else {
            line
        };
        let t = line.trim_start();
        if !out.is_empty() && line.starts_with("\t\t\t") && !out.ends_with('\n') {
            out.push(' ');
            out.push_str(t);
        } else {
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(line);
        }
        if !line.trim_end().ends_with(',') {
            out.push('\n');
        }
    }
    out.replace("\n\n\n", "\n\n")
}

/// A deterministic generator of small rulesets built from constructs both nft versions print alike.
fn generated(seed: u64) -> String {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut next = |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    const MATCHES: &[&str] = &[
        "ip saddr 192.0.2.0/24",
        "ip daddr 198.51.100.7",
        "ip saddr != 203.0.113.0/25",
        "tcp dport 22",
        "tcp dport { 80, 443 }",
        "udp dport 53",
        "tcp sport 1024-65535",
        "ct state established,related",
        "ct state new",
        "meta l4proto tcp",
        "iifname \"veth0\"",
        "oifname \"eth1\"",
        "icmp type echo-request",
        "ip protocol udp",
        "meta mark 0x00000001",
        "ip6 saddr 2001:db8::/32",
        "ip6 daddr 2001:db8::1",
        "tcp dport ssh",
        "udp sport 67 udp dport 68",
        "ip ttl 1",
    ];
    const STMTS: &[&str] = &[
        "accept",
        "drop",
        "counter accept",
        "counter drop",
        "counter",
        "jump sub",
        "return",
    ];
    let families = ["ip", "inet", "ip6"];
    let mut s = String::new();
    let family = families[next(3) as usize];
    s.push_str(&format!("table {family} t{seed} {{\n"));
    s.push_str("\tchain sub {\n\t\tcounter\n\t}\n\n");
    let hooks = ["input", "forward", "output"];
    for (i, hook) in hooks.iter().enumerate().take(1 + next(3) as usize) {
        let policy = if next(2) == 0 { "accept" } else { "drop" };
        let prio = ["filter", "filter - 5", "raw", "mangle + 3", "0", "-42"][next(6) as usize];
        s.push_str(&format!(
            "\tchain c{i} {{\n\t\ttype filter hook {hook} priority {prio}; policy {policy};\n"
        ));
        for _ in 0..1 + next(6) {
            let mut rule = Vec::new();
            for _ in 0..next(3) {
                let m = MATCHES[next(MATCHES.len() as u64) as usize];
                let v6 = m.starts_with("ip6");
                let v4 = m.starts_with("ip ") || m.starts_with("icmp");
                // Repeating a match makes nft merge the payload loads and print them in another order.
                if (family == "ip" && v6) || (family == "ip6" && v4) || rule.contains(&m) {
                    continue;
                }
                rule.push(m);
            }
            let st = STMTS[next(STMTS.len() as u64) as usize];
            if st == "return" && rule.is_empty() {
                continue;
            }
            rule.push(st);
            s.push_str(&format!("\t\t{}\n", rule.join(" ")));
        }
        s.push_str("\t}\n");
        if i + 1 < hooks.len() {
            s.push('\n');
        }
    }
    s.push_str("}\n");
    s
}

#[test]
fn sluice_fmt_prints_what_the_real_nft_prints() {
    if !nft_available() {
        eprintln!("sluice_fmt_prints_what_the_real_nft_prints: skipped, needs root and nft");
        return;
    }
    let ns = Ns::new("fmt");
    let dir = std::env::temp_dir().join(format!("sluice-fmt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/examples"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "nft"))
            .collect();
    files.sort();
    for seed in 0..120 {
        let p = dir.join(format!("gen{seed}.nft"));
        std::fs::write(&p, generated(seed)).unwrap();
        files.push(p);
    }
    let mut failures = Vec::new();
    let mut json_failures = Vec::new();
    let mut compared = 0;
    let mut json_compared = 0;
    for f in &files {
        compared += 1;
        let theirs = match real_nft(&ns, f) {
            Ok((t, json)) => {
                // nft's own JSON listing, read back by `sluice fmt -j`, lists like nft's text listing
                json_compared += 1;
                let jf = dir.join("nft.json");
                std::fs::write(&jf, &json).unwrap();
                match sluice_fmt_args(&["-j"], &jf) {
                    Ok(ours) if normalise(&ours) == normalise(&t) => {}
                    Ok(ours) => json_failures.push(format!(
                        "{} (nft -j list ruleset read back):\n--- nft\n{t}--- sluice fmt -j\n{ours}--- JSON\n{json}",
                        f.display()
                    )),
                    Err(e) => json_failures.push(format!(
                        "{} (nft -j list ruleset read back): sluice refused it:\n{e}--- JSON\n{json}",
                        f.display()
                    )),
                }
                t
            }
            Err(e) => {
                // nft refused it: sluice must refuse it too, pointing at the same place.
                let where_ = |m: &str| {
                    m.lines()
                        .next()
                        .and_then(|l| l.split(": Error").next())
                        .map(str::to_string)
                };
                match sluice_fmt(f) {
                    Err(ours) if where_(&ours) == where_(&e) => {}
                    Err(ours) => failures.push(format!(
                        "{}: errors differ:
--- nft\n{e}--- sluice\n{ours}",
                        f.display()
                    )),
                    Ok(_) => failures.push(format!(
                        "{}: nft refused it, sluice accepted it:\n{e}",
                        f.display()
                    )),
                }
                continue;
            }
        };
        match sluice_fmt(f) {
            Ok(ours) if normalise(&ours) == normalise(&theirs) => {}
            Ok(ours) => failures.push(format!(
                "{}:\n--- nft\n{theirs}--- sluice\n{ours}",
                f.display()
            )),
            Err(e) => failures.push(format!("{}: sluice refused it:\n{e}", f.display())),
        }
    }
    std::fs::remove_dir_all(&dir).ok();
    eprintln!(
        "fmt vs nft: {} of {compared} rulesets agree (same listing, or same error location)",
        compared - failures.len()
    );
    eprintln!(
        "fmt -j vs nft: {} of {json_compared} JSON listings of nft read back to nft's text listing",
        json_compared - json_failures.len()
    );
    failures.extend(json_failures);
    assert!(
        failures.is_empty(),
        "{} differences:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// nft's JSON of the corpus' shell dumps (those nft here loads), read back by `sluice fmt -j`, must list
/// like nft's own text listing for at least this many (measured 2026-11-25; raise it, never lower).
/// Lowered once, 239 -> 237 on 2026-11-26: jumps are now checked when their command is applied, as the
/// kernel does, and nft's JSON lists verdict maps before the chains their elements jump to, so nft
/// itself refuses to read those listings back (`Could not process rule: No such file or directory`).
const CORPUS_JSON_FLOOR: usize = 237;

#[test]
fn nft_json_of_corpus_dumps_reads_back_as_nft_lists_them() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/nft-conformance/shell");
    let Ok(tsv) = std::fs::read_to_string(root.join("ROUNDTRIP.tsv")) else {
        eprintln!("nft_json_of_corpus_dumps: corpus not found, skipped");
        return;
    };
    if !nft_available() {
        eprintln!("nft_json_of_corpus_dumps: skipped, needs root and nft");
        return;
    }
    let ns = Ns::new("cj");
    let dir = std::env::temp_dir().join(format!("sluice-fmtj-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (mut ok, mut total) = (0, 0);
    let mut failed = Vec::new();
    for line in tsv.lines().filter(|l| !l.starts_with('#')) {
        let cols: Vec<&str> = line.split('\t').collect();
        if cols.len() < 4 || cols[3] != "yes" {
            continue;
        }
        let file = root.join(cols[0]);
        let Ok((text, json)) = real_nft(&ns, &file) else {
            continue; // needs something this kernel or nft lacks
        };
        total += 1;
        let jf = dir.join("dump.json");
        std::fs::write(&jf, &json).unwrap();
        match sluice_fmt_args(&["-j"], &jf) {
            Ok(ours) if normalise(&ours) == normalise(&text) => ok += 1,
            Ok(ours) => {
                let diff = normalise(&text)
                    .lines()
                    .zip(normalise(&ours).lines())
                    .find(|(a, b)| a != b)
                    .map(|(a, b)| format!("nft `{a}` sluice `{b}`"))
                    .unwrap_or_else(|| "length differs".into());
                failed.push(format!("{}: {diff}", cols[0]));
            }
            Err(e) => failed.push(format!(
                "{}: refused: {}",
                cols[0],
                e.lines().next().unwrap_or("")
            )),
        }
    }
    std::fs::remove_dir_all(&dir).ok();
    eprintln!("nft -j of corpus dumps read back by sluice fmt -j: {ok} of {total} list like nft");
    for f in &failed {
        eprintln!("  {f}");
    }
    assert!(
        ok >= CORPUS_JSON_FLOOR,
        "{ok} of {total} corpus dumps read back from nft's JSON, fewer than the recorded {CORPUS_JSON_FLOOR}"
    );
}

/// `sluice fmt --check FILE` reports every error of a file as `nft -c -f FILE` does: the cases in
/// rules/tests/errors (expected stderr beside each), and the real nft's stderr when it can run here.
#[test]
fn fmt_check_reports_every_error_like_nft() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules/tests/errors");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|n| n.ends_with(".nft"))
        .collect();
    names.sort();
    assert!(names.len() >= 20);
    let live = nft_available();
    let mut failures = Vec::new();
    for name in &names {
        let want = std::fs::read_to_string(dir.join(name.replace(".nft", ".err"))).unwrap();
        let ours = Command::new(SLUICE)
            .args(["fmt", "--check", name])
            .current_dir(&dir)
            .output()
            .unwrap();
        let got = String::from_utf8_lossy(&ours.stderr).to_string();
        if ours.status.code() != Some(1) || got != want {
            failures.push(format!(
                "{name}:\n--- expected\n{want}--- sluice fmt --check\n{got}"
            ));
        }
        if live {
            let theirs = Command::new("nft")
                .args(["-c", "-f", name])
                .current_dir(&dir)
                .output()
                .unwrap();
            let nft = String::from_utf8_lossy(&theirs.stderr).to_string();
            if nft != got {
                failures.push(format!(
                    "{name}:\n--- nft -c -f\n{nft}--- sluice fmt --check\n{got}"
                ));
            }
        }
    }
    eprintln!(
        "error reports: {} of {} files as nft prints them{}",
        names.len() - failures.len().min(names.len()),
        names.len(),
        if live {
            " (compared with the live nft too)"
        } else {
            ""
        }
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// ct helper, ct timeout, ct expectation and synproxy objects: loaded into the real nft as text, listed
/// with `nft -j`, read back by `sluice fmt -j`: the same listing as nft's (ct timeout policies aside,
/// which nft 1.0.6 prints in seconds and sluice, like nft 1.1, as times).
#[test]
fn nft_json_of_ct_objects_reads_back_as_nft_lists_them() {
    if !nft_available() {
        eprintln!("skipped: needs root and nft");
        return;
    }
    let src =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules/tests/json_in/ct_objects.listing");
    let ns = Ns::new("ctobj");
    let (listing, json) = real_nft(&ns, &src).expect("nft loads its own listing");
    let dir = std::env::temp_dir().join(format!("sluice-ctobj-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let jf = dir.join("nft.json");
    std::fs::write(&jf, &json).unwrap();
    let ours = sluice_fmt_args(&["-j"], &jf).expect("sluice reads nft's JSON");
    std::fs::remove_dir_all(&dir).ok();
    let seconds = |l: &str| {
        // `1m40s` → `100` in policy lines
        if !l.contains("policy = {") {
            return l.to_string();
        }
        l.split(' ')
            .map(|w| {
                let b = w.trim_end_matches(',');
                if !b.ends_with('s') || !b.starts_with(|c: char| c.is_ascii_digit()) {
                    return w.to_string();
                }
                let (mut tot, mut n) = (0u64, 0u64);
                for c in b.chars() {
                    match c {
                        '0'..='9' => n = n * 10 + c.to_digit(10).unwrap() as u64,
                        'h' => (tot, n) = (tot + n * 3600, 0),
                        'm' => (tot, n) = (tot + n * 60, 0),
                        's' => (tot, n) = (tot + n, 0),
                        _ => {}
                    }
                }
                w.replacen(b, &tot.to_string(), 1)
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    let ours: String = ours.lines().map(|l| seconds(l) + "\n").collect();
    assert_eq!(ours, listing);
}
