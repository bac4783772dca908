//! The parser never panics, whatever the input: the conformance corpus' bogons (inputs that crashed
//! nft), its dumps and rule lines, and deterministic mutations of all of them (bytes deleted,
//! duplicated, swapped, truncated; nft punctuation and keywords inserted) go through parse, print
//! (text and JSON) and compile. Skipped (with a message) when the corpus is absent; the hand-written
//! cases below always run. `rules/fuzz` is the open-ended version of this test.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

/// Inputs that once panicked here (found by the fuzzer or this test).
const CASES: &[&str] = &[
    // definitions that double each other (once out of memory)
    "define hrge =ij ne hr =j ge\u{1}\0 rsetpG\0 t{\n;\tURC2}\n\tdefine s = efine hne hr iste2 $s\u{1}\0  $s\u{1}re ipG\0 t{\n;\tURC2}\n\tdefine s = efine hr iste2 $s\u{1}\0 re  $s\n\t}\n\t}\n\n",
    "table ip t {\n\tchain c2 {\n\t\tjump c2\n\t}\n\n\tchain\"\"\n}\n",
    "table ip test {\n\tct helper cthelp {\n\t\tl3proto ip\n\t}\n}\n",
    "table inet x {\n\tchain y {\n\t\tcounter name ip # s024\n\t}\n}\n",
    "table ip t {\n\tchain c {\n\t\toifname set secmarkip7dscp << 26 | 0x10\n\t}\n}\n",
    "table ip filter {\n\tct timeout cttime {\n\t\tprotocol tcp\n\t\tl3proto ip\n\t}\n\tchain c {\n\t\tct timeout set \"\0cttime\"\n\t}\n}\n",
    "table ip t {\n\tset s4 {\n\t\ttype ipv4_addr . iface_index\n\t\tflags interval\n\t\telements = { 127.0.0.1 . \"lo\" }\n\t}\n\n\tset s4 {\n\t\ttype iface_index\n\t\tflags interval\n\t\telements = { \"lo\" }\n\t}\n}\n",
    "define A = $A\nadd rule ip t c $A\n",
    "table ip t { chain c { ip saddr 1.2.3.4/99 tcp dport 0-0 ip dscp 1/6 meta mark set ip dscp | 1 << 200 } }",
    "table ip t { chain c { ct original ip6 saddr . meta mark { ::1 . 1 } ip saddr & 255.255.0.0 == 1.2.0.0 } }",
    "table ip6 t { chain c { ip6 saddr vmap {1:2:3:4:5:6:7:::accept, ::1:drop} srh sid[99999999999] ::1 } }",
    "table inet t { chain c { ipsec in spnum 99999999999999999999 reqid 1 osf ttl skip version \"\" } }",
    "table inet t { chain c { jump { jump { jump { counter } } } } }",
    "table ip x {\n\tmap m {\n\t\ttype ipv4_addr : counter\n\t\telements = { 192.168.2.2 :\"\"a\" eth*}\n\t}\n}\n",
];

/// xorshift64*: the same mutations on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

const INSERTS: &[&str] = &[
    "{",
    "}",
    "(",
    ")",
    "[",
    "]",
    ";",
    "\n",
    ",",
    ".",
    ":",
    "::",
    "-",
    "/",
    "*",
    "!",
    "!=",
    "&",
    "|",
    "^",
    "<<",
    ">>",
    "\"",
    "$x",
    "@s",
    "@th,0,128",
    "0x",
    "0",
    "255",
    "65536",
    "4294967296",
    "340282366920938463463374607431768211456",
    "-1",
    "1.2.3.4",
    "::1",
    "ff:ff:ff:ff:ff:ff",
    "eth*",
    "jump {",
    "goto {",
    "map",
    "vmap",
    "set",
    "define x = 1\n",
    "include \"x\"\n",
    "elements = {",
    "type ipv4_addr",
    "typeof ip saddr",
    "flags interval",
    "timeout 1s",
    "counter",
    "limit rate 1/second",
    "quota 1 bytes",
    "log prefix \"x\"",
    "reject with tcp reset",
    "snat to",
    "dnat ip to",
    "masquerade",
    "ct state",
    "ct original ip saddr",
    "meta mark set",
    "ip dscp",
    "tcp option maxseg size",
    "osf name",
    "socket mark",
    "ipsec in",
    "exthdr hbh",
    "rt nexthop",
    "fib saddr . iif oif",
    "table",
    "chain",
    "add rule ip t c",
    "delete",
    "flush ruleset",
    "priority",
    "hook input",
    " ",
    "\t",
];

fn mutate(src: &str, rng: &mut Rng) -> String {
    let b = src.as_bytes();
    let mut out: Vec<u8> = b.to_vec();
    for _ in 0..1 + rng.below(3) {
        let n = out.len();
        let (i, j) = {
            let i = rng.below(n + 1);
            (i, (i + rng.below(16)).min(n))
        };
        match rng.below(6) {
            0 => {
                out.drain(i..j);
            }
            1 => {
                let ins = INSERTS[rng.below(INSERTS.len())].as_bytes();
                out.splice(i..i, ins.iter().copied());
            }
            2 => {
                let dup: Vec<u8> = out[i..j].to_vec();
                out.splice(j..j, dup);
            }
            3 => out.truncate(i),
            4 => {
                let k = rng.below(n + 1);
                let (a, b) = (i.min(k), i.max(k));
                if b + (j - i) <= n && a + (j - i) <= b {
                    let x: Vec<u8> = out[a..a + (j - i)].to_vec();
                    let y: Vec<u8> = out[b..b + (j - i)].to_vec();
                    out.splice(b..b + (j - i), x);
                    out.splice(a..a + (j - i), y);
                }
            }
            _ => {
                if let Some(c) = out.get_mut(i) {
                    *c = b" {};.:-/\"0a$@\n"[rng.below(14)];
                }
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses, prints and compiles; `Err` with the input when that panics.
fn exercise(src: &str) -> Result<(), String> {
    catch_unwind(AssertUnwindSafe(|| {
        if let Ok(rs) = rules::parse_ruleset(src, "input.nft") {
            let _ = rules::print_ruleset(&rs, &Default::default(), None);
            let _ = rules::print_ruleset_json(&rs, &Default::default(), None);
            let _ = rules::compile(&rs);
        }
    }))
    .map_err(|_| src.to_string())
}

fn corpus() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/nft-conformance");
    p.is_dir().then_some(p)
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            files(&p, out);
        } else {
            out.push(p);
        }
    }
}

#[test]
fn parser_never_panics() {
    std::panic::set_hook(Box::new(|_| {}));
    let mut inputs: Vec<(String, usize)> = CASES.iter().map(|c| (c.to_string(), 50)).collect();
    match corpus() {
        None => println!(
            "nft conformance corpus not found (../shared/nft-conformance): corpus part skipped"
        ),
        Some(root) => {
            let mut paths = Vec::new();
            files(&root.join("bogons"), &mut paths);
            files(&root.join("shell"), &mut paths);
            files(&root.join("py"), &mut paths);
            paths.sort();
            for p in paths {
                let Ok(bytes) = std::fs::read(&p) else {
                    continue;
                };
                let text = String::from_utf8_lossy(&bytes).into_owned();
                match p.extension().and_then(|e| e.to_str()) {
                    Some("t") => {
                        for line in text.lines() {
                            let rule = line.split(';').next().unwrap_or("");
                            if rule.is_empty()
                                || matches!(rule.as_bytes()[0], b'#' | b':' | b'*' | b'-')
                            {
                                continue;
                            }
                            for fam in ["ip", "inet"] {
                                inputs.push((
                                    format!(
                                        "table {fam} t {{\n\tchain c {{\n\t\t{rule}\n\t}}\n}}\n"
                                    ),
                                    2,
                                ));
                            }
                        }
                    }
                    Some("tsv" | "md") => {}
                    _ => inputs.push((text, 12)),
                }
            }
        }
    }
    let mut rng = Rng(0x5eed_5eed_1234_5678);
    let mut panics = Vec::new();
    let mut runs = 0;
    for (src, mutants) in &inputs {
        runs += 1;
        if let Err(s) = exercise(src) {
            panics.push(s);
        }
        for _ in 0..*mutants {
            runs += 1;
            let m = mutate(src, &mut rng);
            if let Err(s) = exercise(&m) {
                panics.push(s);
            }
        }
    }
    let _ = std::panic::take_hook();
    println!("{runs} inputs, {} panics", panics.len());
    assert!(
        panics.is_empty(),
        "{} of {runs} inputs panicked; the first:\n{:?}",
        panics.len(),
        panics[0]
    );
}
