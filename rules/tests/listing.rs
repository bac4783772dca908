//! Listings, byte for byte as nft 1.0.6 prints them after loading a file into an empty ruleset.
//!
//! `tests/listing/NAME.nft` with `NAME.list`: what `nft -f NAME.nft; nft list ruleset` prints
//! (`nft -a list ruleset` when NAME ends in `-a`). The cases are command files (flush, delete,
//! destroy, …) whose result is the point, not declarations. `destroy` is not in nft 1.0.6 (it came
//! with 1.0.7): files using it are checked here but not against the live nft (`# not-live` on
//! their first line).

use std::path::{Path, PathBuf};
use std::process::Command;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/listing")
}

struct Case {
    name: String,
    src: String,
    want: String,
    handles: bool,
    live: bool,
}

fn cases() -> Vec<Case> {
    let mut cases: Vec<Case> = std::fs::read_dir(dir())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "nft"))
        .map(|p| {
            let name = p.file_stem().unwrap().to_str().unwrap().to_string();
            let src = std::fs::read_to_string(&p).unwrap();
            let want = std::fs::read_to_string(p.with_extension("list")).unwrap();
            Case {
                handles: name.ends_with("-a"),
                live: !src.starts_with("# not-live"),
                name,
                src,
                want,
            }
        })
        .collect();
    cases.sort_by(|a, b| a.name.cmp(&b.name));
    assert!(cases.len() >= 4, "listing cases in {}", dir().display());
    cases
}

#[test]
fn listing_after_commands_like_nft() {
    let mut failures = Vec::new();
    for c in cases() {
        let file = format!("{}.nft", c.name);
        let got = match rules::parse_ruleset(&c.src, &file) {
            Ok(rs) => {
                let opts = rules::PrintOptions {
                    handles: c.handles,
                    ..Default::default()
                };
                rules::print_ruleset(&rs, &opts, None)
            }
            Err(d) => format!("(refused)\n{d}\n"),
        };
        if got != c.want {
            failures.push(format!("{}:\n--- nft\n{}--- sluice\n{got}", c.name, c.want));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn root_and_nft() -> bool {
    let root = std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
    });
    root && Command::new("nft").arg("--version").output().is_ok()
}

/// A throwaway network namespace (deleted on drop, also when a check panics).
struct Ns(String);

impl Ns {
    fn new() -> Ns {
        static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("sl-listing-{}-{seq}", std::process::id());
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .unwrap()
            .success();
        assert!(ok, "ip netns add {name}");
        Ns(name)
    }
    fn nft(&self, args: &[&str]) -> std::process::Output {
        Command::new("ip")
            .args(["netns", "exec", &self.0, "nft"])
            .args(args)
            .current_dir(dir())
            .output()
            .unwrap()
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// The expected listings are what the real nft prints (when it can run here: root, nft installed).
#[test]
fn expected_listings_are_what_nft_prints() {
    if !root_and_nft() {
        eprintln!("skipped: needs root and nft");
        return;
    }
    let mut failures = Vec::new();
    let mut live = 0;
    for c in cases().into_iter().filter(|c| c.live) {
        live += 1;
        // a fresh namespace each: table handles count on after `flush ruleset`
        let ns = Ns::new();
        let load = ns.nft(&["-f", &format!("{}.nft", c.name)]);
        let got = if load.status.success() {
            let list = ns.nft(if c.handles {
                &["-a", "list", "ruleset"]
            } else {
                &["list", "ruleset"]
            });
            String::from_utf8_lossy(&list.stdout).to_string()
        } else {
            format!("(refused)\n{}", String::from_utf8_lossy(&load.stderr))
        };
        if got != c.want {
            failures.push(format!(
                "{}:\n--- expected\n{}--- nft\n{got}",
                c.name, c.want
            ));
        }
    }
    assert!(live >= 3, "live listing cases");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
