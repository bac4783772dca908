//! Error messages, byte for byte as `nft -c -f` (nft 1.0.6) prints them for the same files.

#[rustfmt::skip]
const CASES: &[(&str, &str, &str)] = &[
    ("e1.nft", "table ip t {\n\tchain c {\n\t\ttcp dport 70000 accept\n\t}\n}\n", "e1.nft:3:13-17: Error: Service out of range\n\t\ttcp dport 70000 accept\n\t\t          ^^^^^"),
    ("e2.nft", "table ip t {\n\tchain c {\n\t\tip saddr 1.2.3.300 accept\n\t}\n}\n", "e2.nft:3:12-20: Error: Could not resolve hostname: Name or service not known\n\t\tip saddr 1.2.3.300 accept\n\t\t         ^^^^^^^^^"),
    ("e3.nft", "table ip t {\n\tchain c {\n\t\tct state bogus accept\n\t}\n}\n", "e3.nft:3:12-16: Error: Could not parse conntrack state\n\t\tct state bogus accept\n\t\t         ^^^^^"),
    ("e4.nft", "table ip t {\n\tchain c {\n\t\ttype filter hook input priority 0; policy maybe;\n\t}\n}\n", "e4.nft:3:45-49: Error: syntax error, unexpected string, expecting accept or drop or '$'\n\t\ttype filter hook input priority 0; policy maybe;\n\t\t                                          ^^^^^"),
    ("e5.nft", "table ip t {\n\tchain c {\n\t\ttype filter hook sideways priority 0;\n\t}\n}\n", "e5.nft:3:20-27: Error: unknown chain hook\n\t\ttype filter hook sideways priority 0;\n\t\t                 ^^^^^^^^"),
    ("e6.nft", "table ip t {\n\tchain c {\n\t\tjump nowhere\n\t}\n}\n", "e6.nft:3:8-14: Error: Could not process rule: No such file or directory\n\t\tjump nowhere\n\t\t     ^^^^^^^"),
    ("e7.nft", "table ip t {\n\tchain c {\n\t\tip saddr @nosuchset accept\n\t}\n}\n", "e7.nft:3:12-21: Error: No such file or directory\n\t\tip saddr @nosuchset accept\n\t\t         ^^^^^^^^^^"),
    ("e8.nft", "table ip t {\n\tchain c {\n\t\tip6 saddr ::1 accept\n\t}\n}\n", "e8.nft:3:3-11: Error: conflicting protocols specified: ip vs. ip6\n\t\tip6 saddr ::1 accept\n\t\t^^^^^^^^^"),
    ("e9.nft", "table ip t {\n\tchain c {\n\t\ticmp type echo-request tcp dport 22\n\t}\n}\n", "e9.nft:3:26-34: Error: conflicting protocols specified: icmp vs. tcp\n\t\ticmp type echo-request tcp dport 22\n\t\t                       ^^^^^^^^^"),
    ("e10.nft", "table ip t {\n\tchain c {\n\t\ttcp dport { 22, 80 accept\n\t}\n}\n", "e10.nft:3:22-27: Error: syntax error, unexpected accept, expecting comma or '}'\n\t\ttcp dport { 22, 80 accept\n\t\t                   ^^^^^^"),
    ("e13.nft", "table ip t {\n\tchain c {\n\t\tiifname eth0 oifname accept\n\t}\n}\n", "e13.nft:3:24-29: Error: syntax error, unexpected accept\n\t\tiifname eth0 oifname accept\n\t\t                     ^^^^^^"),
    ("e14.nft", "table ip t {\n\tset s {\n\t\ttype ipv4_addr\n\t\telements = { 10.0.0.0/8 }\n\t}\n}\n", "e14.nft:4:16-25: Error: You must add 'flags interval' to your set declaration if you want to add prefix elements\n\t\telements = { 10.0.0.0/8 }\n\t\t             ^^^^^^^^^^"),
    ("e15.nft", "table ip t {\n\tchain c {\n\t\taccept drop\n\t}\n}\n", "e15.nft:3:10-13: Error: Statement after terminal statement has no effect\n\t\taccept drop\n\t\t~~~~~~ ^^^^"),
    ("e16.nft", "flush rulesett\n", "e16.nft:1:7-14: Error: syntax error, unexpected string\nflush rulesett\n      ^^^^^^^^"),
    ("e17.nft", "table ip t {\n\tchain c {\n\t\ttcp dport ssh-http accept\n\t}\n}\n", "e17.nft:3:13-20: Error: Could not resolve service: Servname not supported for ai_socktype\n\t\ttcp dport ssh-http accept\n\t\t          ^^^^^^^^"),
    ("e18.nft", "table ip t {\n\tchain c {\n\t\tip protocol foo\n\t}\n}\n", "e18.nft:3:15-17: Error: Could not resolve protocol name\n\t\tip protocol foo\n\t\t            ^^^"),
];

#[test]
fn errors_match_nft() {
    for (file, src, want) in CASES {
        let got = rules::parse_ruleset(src, file)
            .and_then(|rs| rules::compile(&rs).map(|_| rs))
            .expect_err(file)
            .to_string();
        assert_eq!(&got, want, "{file}");
    }
}

// ------------------------------------------------------------------ every error of a file
//
// `tests/errors/NAME.nft` with `NAME.err`: what `nft -c -f NAME.nft` (nft 1.0.6, run in that
// directory) prints on stderr. nft reports every error of a file, up to 10: syntax errors first (its
// parser recovers at the next newline or `;`), then the evaluation errors of the commands that
// parsed, then (only if there were none) the kernel's refusals. `*.inc` are included files.

use std::path::{Path, PathBuf};

fn error_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/errors")
}

/// Includes relative to the data directory, named as written (like nft's `./x` includes run there).
struct DirLoader(PathBuf);

impl rules::Loader for DirLoader {
    fn load(&self, path: &str, _from: &str) -> Result<Vec<(String, String)>, String> {
        std::fs::read_to_string(self.0.join(path))
            .map(|t| vec![(path.to_string(), t)])
            .map_err(|_| format!("File not found: {path}"))
    }
}

fn error_cases() -> Vec<(String, String, String)> {
    let dir = error_dir();
    let mut cases: Vec<(String, String, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "nft"))
        .map(|p| {
            let name = p.file_name().unwrap().to_str().unwrap().to_string();
            let src = std::fs::read_to_string(&p).unwrap();
            let want = std::fs::read_to_string(p.with_extension("err")).unwrap();
            (name, src, want)
        })
        .collect();
    cases.sort();
    assert!(cases.len() >= 20, "error cases in {}", dir.display());
    cases
}

#[test]
fn every_error_of_a_file_like_nft() {
    let loader = DirLoader(error_dir());
    let mut failures = Vec::new();
    for (name, src, want) in error_cases() {
        let got = match rules::parse_ruleset_with(&src, &name, &loader)
            .and_then(|rs| rules::compile(&rs).map(|_| rs))
        {
            Ok(_) => "(accepted)\n".to_string(),
            Err(d) => format!("{d}\n"),
        };
        if got != want {
            failures.push(format!("{name}:\n--- nft\n{want}--- sluice\n{got}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The expected files are what the real nft prints (when it can run here: root, nft installed).
#[test]
fn expected_error_files_are_what_nft_prints() {
    use std::process::Command;
    let root = std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
    });
    if !root || Command::new("nft").arg("--version").output().is_err() {
        eprintln!("skipped: needs root and nft");
        return;
    }
    let mut failures = Vec::new();
    for (name, _, want) in error_cases() {
        // `-c`: checked by the kernel, nothing applied
        let out = Command::new("nft")
            .args(["-c", "-f", &name])
            .current_dir(error_dir())
            .output()
            .unwrap();
        let got = String::from_utf8_lossy(&out.stderr);
        if out.status.success() || got != want {
            failures.push(format!("{name}:\n--- expected\n{want}--- nft\n{got}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
