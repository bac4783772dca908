//! The compiled classifier against the linear walk: random rulesets (addresses, prefixes, ranges,
//! sets, ports, protocols, interface names, marks set and tested, counters before and after matches,
//! jumps, gotos, returns, vmaps) and random packets must give the same verdict, the same counters,
//! the same marks and the same matched rules in the same order.

use rules::eval::{TraceEvent, Tracer};
use rules::{compile, parse_ruleset, ChainId, CompiledRuleset, Family, Hook, NfProto, PacketCtx};

/// xorshift64*: deterministic, seeded per case so a failure names its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len())]
    }
}

const PORTS: [u16; 10] = [0, 22, 53, 80, 443, 1000, 1001, 1005, 8080, 65535];
const IFNAMES: [&str; 5] = ["eth0", "eth1", "wan0", "wan1", "lo"];

fn v4(r: &mut Rng) -> [u8; 4] {
    [10, r.below(4) as u8, r.below(3) as u8, r.below(8) as u8]
}

fn v4s(a: [u8; 4]) -> String {
    format!("{}.{}.{}.{}", a[0], a[1], a[2], a[3])
}

fn a6(r: &mut Rng) -> [u8; 16] {
    let mut a = [0u8; 16];
    a[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
    a[7] = r.below(3) as u8;
    a[15] = r.below(4) as u8;
    a
}

fn v6s(a: [u8; 16]) -> String {
    format!("2001:db8:0:{:x}::{:x}", a[7], a[15])
}

fn port(r: &mut Rng) -> u16 {
    *r.pick(&PORTS)
}

fn addr_match(r: &mut Rng) -> String {
    let f = if r.chance(50) { "saddr" } else { "daddr" };
    let a = v4(r);
    let m = match r.below(9) {
        0..=2 => v4s(a),
        3 => format!("10.{}.0.0/16", a[1]),
        4 => format!("10.{}.{}.0/24", a[1], a[2]),
        5 => format!(
            "{}-{}",
            v4s(a),
            v4s([a[0], a[1], a[2], a[3] + r.below(5) as u8])
        ),
        6 => format!("{{ {}, {}, 10.{}.0.0/16 }}", v4s(a), v4s(v4(r)), r.below(4)),
        7 => format!("!= {}", v4s(a)),
        _ => "@s4".into(),
    };
    format!("ip {f} {m}")
}

fn port_match(r: &mut Rng) -> String {
    let l4 = if r.chance(60) { "tcp" } else { "udp" };
    let f = if r.chance(70) { "dport" } else { "sport" };
    let p = port(r);
    let m = match r.below(10) {
        0..=3 => p.to_string(),
        4 => format!("{}-{}", p.min(60000), p.min(60000) + r.below(1100) as u16),
        5 => format!("{{ {}, {}, 1000-1003 }}", p, port(r)),
        6 => format!("!= {p}"),
        7 => format!("< {}", p.max(1)),
        8 => format!(">= {p}"),
        _ => "@p".into(),
    };
    format!("{l4} {f} {m}")
}

fn ifname_match(r: &mut Rng) -> String {
    let f = if r.chance(50) { "iifname" } else { "oifname" };
    let m = match r.below(5) {
        0 | 1 => format!("\"{}\"", r.pick(&IFNAMES)),
        2 => "\"wan*\"".into(),
        3 => format!("{{ \"{}\", \"lo\" }}", r.pick(&IFNAMES)),
        _ => format!("!= \"{}\"", r.pick(&IFNAMES)),
    };
    format!("{f} {m}")
}

fn atom(r: &mut Rng, inet: bool) -> String {
    match r.below(22) {
        0..=5 => addr_match(r),
        6..=10 => port_match(r),
        11 | 12 => ifname_match(r),
        13 => r
            .pick(&[
                "meta l4proto tcp",
                "meta l4proto udp",
                "meta l4proto { tcp, udp }",
                "meta l4proto != udp",
                "meta l4proto icmp",
            ])
            .to_string(),
        14 => format!("meta mark {}", r.pick(&["0x1", "0x2", "!= 0x1"])),
        15 => r
            .pick(&[
                "ct state established",
                "ct state new",
                "ct state { new, established }",
            ])
            .to_string(),
        16 if inet => format!(
            "ip6 {} {}",
            r.pick(&["saddr", "daddr"]),
            if r.chance(50) {
                v6s(a6(r))
            } else {
                "2001:db8:0:1::/64".into()
            }
        ),
        17 => r
            .pick(&[
                "tcp flags syn",
                "tcp flags & (syn | ack) == syn",
                "ip ttl 64",
            ])
            .to_string(),
        18 => format!("meta length {}-{}", 40 + r.below(40), 80 + r.below(40)),
        19 => format!("th dport {}", port(r)),
        20 => format!(
            "ip saddr . tcp dport {{ {} . {}, {} . {} }}",
            v4s(v4(r)),
            port(r),
            v4s(v4(r)),
            port(r)
        ),
        _ if inet => r
            .pick(&["meta nfproto ipv4", "meta nfproto ipv6"])
            .to_string(),
        _ => addr_match(r),
    }
}

/// One rule; `jumps`: the chains it may jump/goto to.
fn rule(r: &mut Rng, inet: bool, jumps: &[&str], base: bool, nat: bool) -> String {
    let mut s = Vec::new();
    if r.chance(8) {
        s.push("counter".to_string());
    }
    for _ in 0..r.below(4) {
        s.push(atom(r, inet));
    }
    if r.chance(25) {
        s.push("counter".into());
    }
    if r.chance(6) {
        // a write the next rules' matches see: the classifier must ask again after it
        s.push(match r.below(6) {
            0 => format!("ip saddr set {}", v4s(v4(r))),
            1 => format!("ip daddr set {}", v4s(v4(r))),
            2 => format!("tcp dport set {}", port(r)),
            3 => format!("ip ttl set {}", r.pick(&[63, 64])),
            4 if inet => format!("ip6 daddr set {}", v6s(a6(r))),
            _ => format!("th dport set {}", port(r)),
        });
        if r.chance(30) {
            s.push(atom(r, inet));
        }
    }
    if r.chance(10) {
        s.push(format!("meta mark set 0x{}", r.below(3)));
        if r.chance(30) {
            s.push(atom(r, inet));
        }
    }
    let mut verdicts: Vec<String> = ["accept", "drop", "continue", "return"]
        .iter()
        .map(|v| v.to_string())
        .collect();
    for j in jumps {
        verdicts.push(format!("jump {j}"));
        verdicts.push(format!("goto {j}"));
    }
    if nat {
        let ip = if inet { "ip " } else { "" };
        for _ in 0..4 {
            verdicts.push(format!("dnat {ip}to 192.0.2.{}", 1 + r.below(3)));
        }
        verdicts.push(format!("dnat {ip}to 192.0.2.9:8080"));
    }
    match r.below(12) {
        0..=3 => {}
        4 => s.push(format!(
            "tcp dport vmap {{ {} : accept, {} : drop, 1000-1005 : {} }}",
            port(r),
            port(r),
            r.pick(&verdicts)
        )),
        5 => s.push(format!(
            "ip saddr vmap {{ {} : drop, 10.{}.0.0/16 : {} }}",
            v4s(v4(r)),
            r.below(4),
            r.pick(&verdicts)
        )),
        _ => {
            let v = r.pick(&verdicts);
            if !(base && v == "return" && r.chance(70)) {
                s.push(v.clone());
            }
        }
    }
    if s.is_empty() {
        s.push("counter".into());
    }
    s.join(" ")
}

fn ruleset(r: &mut Rng, inet: bool, n: usize, nat: bool) -> String {
    let fam = if inet { "inet" } else { "ip" };
    let mut elems: Vec<String> = (0..3).map(|_| v4s(v4(r))).collect();
    elems.push(format!("10.{}.0.0/16", r.below(4)));
    let mut out = format!(
        "table {fam} t {{\n set s4 {{ type ipv4_addr; flags interval; elements = {{ {} }} }}\n set p {{ type inet_service; flags interval; elements = {{ {}, {}, 1000-1002 }} }}\n",
        elems.join(", "),
        port(r),
        port(r)
    );
    let chains: [(&str, &[&str], usize); 3] = [
        ("leaf", &[], 4 + r.below(12)),
        ("sub", &["leaf"], 4 + r.below(20)),
        ("c", &["sub", "leaf"], n),
    ];
    for (name, jumps, len) in chains {
        out.push_str(&format!(" chain {name} {{\n"));
        let head = match (name, nat) {
            ("c", false) => format!(
                "type filter hook forward priority 0; policy {};",
                r.pick(&["accept", "drop"])
            ),
            ("c", true) => "type nat hook prerouting priority dstnat; policy accept;".to_string(),
            _ => String::new(),
        };
        out.push_str(&format!("  {head}\n"));
        for _ in 0..len {
            // the generator knows no protocol dependencies: redraw what the parser refuses
            let mut tries = 0;
            let line = loop {
                tries += 1;
                let line = rule(r, inet, jumps, name == "c", nat && name == "c");
                let probe = format!(
                    "table {fam} t {{ set s4 {{ type ipv4_addr; flags interval; }}\n set p {{ type inet_service; flags interval; }}\n chain leaf {{ }}\n chain sub {{ }}\n chain c {{ {head}\n {line}\n }}\n }}"
                );
                match parse_ruleset(&probe, "probe.nft") {
                    Ok(_) => break line,
                    Err(e) => assert!(tries < 1000, "{e:?}"),
                }
            };
            out.push_str(&format!("  {line}\n"));
        }
        out.push_str(" }\n");
    }
    out.push_str("}\n");
    out
}

/// A frame and the context the dataplane would give it.
struct Pkt {
    frame: Vec<u8>,
    v6: bool,
    l4: u8,
    th: Option<usize>,
    iif: &'static str,
    oif: &'static str,
    mark: u32,
    ct: u32,
}

fn packet(r: &mut Rng, inet: bool) -> Pkt {
    let v6 = inet && r.chance(25);
    let l4 = *r.pick(&[6u8, 6, 17, 17, if v6 { 58 } else { 1 }]);
    let l4len = if l4 == 6 { 20 } else { 8 };
    let nh = 14;
    let l3len = if v6 { 40 } else { 20 };
    let mut f = vec![0u8; nh + l3len + l4len + r.below(30)];
    let total = f.len() - nh;
    if v6 {
        f[12..14].copy_from_slice(&[0x86, 0xdd]);
        let ip = &mut f[nh..];
        ip[0] = 0x60;
        ip[4..6].copy_from_slice(&((total - 40) as u16).to_be_bytes());
        ip[6] = l4;
        ip[7] = 64;
        ip[8..24].copy_from_slice(&a6(r));
        ip[24..40].copy_from_slice(&a6(r));
    } else {
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        let ip = &mut f[nh..];
        ip[0] = 0x45;
        ip[1] = (r.below(64) as u8) << 2;
        ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        ip[8] = *r.pick(&[64u8, 63]);
        ip[9] = l4;
        ip[12..16].copy_from_slice(&v4(r));
        ip[16..20].copy_from_slice(&v4(r));
    }
    let th = nh + l3len;
    f[th..th + 2].copy_from_slice(&port(r).to_be_bytes());
    f[th + 2..th + 4].copy_from_slice(&port(r).to_be_bytes());
    if l4 == 6 {
        f[th + 13] = *r.pick(&[0x02u8, 0x12, 0x10, 0x11]);
    }
    // a non-first fragment or a truncated header: no transport header
    let th = if r.chance(8) { None } else { Some(th) };
    Pkt {
        frame: f,
        v6,
        l4,
        th,
        iif: IFNAMES[r.below(IFNAMES.len())],
        oif: IFNAMES[r.below(IFNAMES.len())],
        mark: r.below(3) as u32,
        ct: *r.pick(&[2u32, 8]),
    }
}

fn ctx<'a>(p: &'a Pkt, frame: &'a mut [u8]) -> PacketCtx<'a> {
    PacketCtx {
        frame,
        nh_off: 14,
        th_off: p.th,
        nfproto: if p.v6 { NfProto::Ipv6 } else { NfProto::Ipv4 },
        l4proto: p.l4,
        len: (p.frame.len() - 14) as u32,
        iif: 2,
        iifname: p.iif,
        oif: 3,
        oifname: p.oif,
        mark: p.mark,
        ct_state: p.ct,
        ct_mark: 0,
        ct_label: 0,
        ct_view: None,
        conncount: None,
        ct_counted: 0,
        hook: Hook::Forward,
        nftrace: false,
        now: 0,
        fib: None,
        payload_writes: 0,
    }
}

struct Rec {
    every: bool,
    ev: Vec<TraceEvent>,
}

impl Tracer for Rec {
    fn event(&mut self, _: &PacketCtx<'_>, ev: TraceEvent) {
        self.ev.push(ev);
    }
    fn every_rule(&self) -> bool {
        self.every
    }
}

/// Runs `p` linearly and through the classifier (traced and untraced) and compares everything; returns
/// (rules the linear walk evaluated, rules the classifier evaluated).
fn check(c: &CompiledRuleset, chain: ChainId, p: &Pkt, what: &str) -> (usize, usize) {
    let slots = c.counter_slots();
    let mut lin = Rec {
        every: true,
        ev: Vec::new(),
    };
    let mut lc = vec![Default::default(); slots];
    let mut lf = p.frame.clone();
    let mut lp = ctx(p, &mut lf);
    let lv = c.eval_chain_traced(chain, &mut lp, &mut lc, &mut lin);

    let mut ix = Rec {
        every: false,
        ev: Vec::new(),
    };
    let mut ic = vec![Default::default(); slots];
    let mut if_ = p.frame.clone();
    let mut ip = ctx(p, &mut if_);
    let iv = c.eval_chain_traced(chain, &mut ip, &mut ic, &mut ix);

    let mut nc = vec![Default::default(); slots];
    let mut nf = p.frame.clone();
    let mut np = ctx(p, &mut nf);
    let nv = c.eval_chain(chain, &mut np, &mut nc);

    assert_eq!(lv, iv, "verdict, {what}");
    assert_eq!(lv, nv, "verdict (untraced), {what}");
    assert_eq!(lc, ic, "counters, {what}");
    assert_eq!(lc, nc, "counters (untraced), {what}");
    assert_eq!(
        (lp.mark, lp.ct_mark, lp.nftrace),
        (ip.mark, ip.ct_mark, ip.nftrace),
        "marks, {what}"
    );
    assert_eq!(
        (lp.mark, lp.ct_mark),
        (np.mark, np.ct_mark),
        "marks (untraced), {what}"
    );
    assert_eq!(lf, if_, "packet written, {what}");
    assert_eq!(lf, nf, "packet written (untraced), {what}");
    // the classifier's events: the linear walk's, minus some `NoMatch`es, in the same order
    let mut it = lin.ev.iter();
    for e in &ix.ev {
        loop {
            let l = it
                .next()
                .unwrap_or_else(|| panic!("extra event {e:?}, {what}"));
            if l == e {
                break;
            }
            assert!(
                matches!(l, TraceEvent::NoMatch { .. }),
                "classifier missed {l:?} (next it reported {e:?}), {what}"
            );
        }
    }
    for l in it {
        assert!(
            matches!(l, TraceEvent::NoMatch { .. }),
            "classifier missed {l:?}, {what}"
        );
    }
    let visited = |ev: &[TraceEvent]| {
        ev.iter()
            .filter(|e| matches!(e, TraceEvent::NoMatch { .. } | TraceEvent::Rule { .. }))
            .count()
    };
    (visited(&lin.ev), visited(&ix.ev))
}

fn run_cases(
    seed0: u64,
    cases: u64,
    sizes: &[usize],
    packets: usize,
    nat: bool,
) -> (usize, usize, usize) {
    let (mut lin, mut idx, mut indexed) = (0, 0, 0);
    for case in 0..cases {
        let seed = seed0 + case;
        let mut r = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let inet = r.chance(50);
        let n = *r.pick(sizes);
        let src = ruleset(&mut r, inet, n, nat);
        let rs = parse_ruleset(&src, "gen.nft").unwrap_or_else(|e| panic!("{e:?}\n{src}"));
        let c = compile(&rs).unwrap_or_else(|e| panic!("{e:?}\n{src}"));
        let fam = if inet { Family::Inet } else { Family::Ip };
        let chain = c.chain_id(fam, "t", "c").unwrap();
        if let Some(st) = c.index_stats(chain) {
            if std::env::var("CLS_STATS").is_ok() {
                eprintln!("{st:?}");
            }
            indexed += 1;
        }
        for k in 0..packets {
            let p = packet(&mut r, inet);
            let what = format!("seed {seed} packet {k}\n{src}");
            let (a, b) = check(&c, chain, &p, &what);
            if nat {
                // the NAT entry point: the verdict of the walk (which rule did NAT is in the events)
                let mut counters = vec![Default::default(); c.counter_slots()];
                let (v, _) =
                    c.eval_chain_nat(chain, &mut ctx(&p, &mut p.frame.clone()), &mut counters);
                let mut lc = vec![Default::default(); c.counter_slots()];
                let lv = c.eval_chain_traced(
                    chain,
                    &mut ctx(&p, &mut p.frame.clone()),
                    &mut lc,
                    &mut Rec {
                        every: true,
                        ev: Vec::new(),
                    },
                );
                assert_eq!((v, &counters), (lv, &lc), "nat, {what}");
            }
            lin += a;
            idx += b;
        }
    }
    (lin, idx, indexed)
}

#[test]
fn classifier_equals_linear_walk_small_chains() {
    let (lin, idx, indexed) = run_cases(1, 300, &[8, 12, 20, 40], 150, false);
    assert!(indexed > 250, "only {indexed} of 300 chains indexed");
    assert!(
        idx < lin,
        "the classifier visited {idx} rules, linear {lin}"
    );
}

#[test]
fn classifier_equals_linear_walk_large_chains() {
    let (lin, idx, indexed) = run_cases(10_000, 30, &[300, 1000], 300, false);
    assert_eq!(indexed, 30);
    // about a third of the generated rules have no compare the index can use (no match, a counter
    // first, only marks or ct state): the rest must mostly be skipped
    assert!(
        idx * 10 < lin * 7,
        "the classifier visited {idx} rules, linear {lin}"
    );
}

#[test]
fn big_exact_chain_is_filed_and_skipped() {
    let mut src = String::from(
        "table ip t {\n chain c {\n  type filter hook forward priority 0; policy accept;\n",
    );
    for i in 0..5000u32 {
        src.push_str(&format!(
            "  ip saddr 10.{}.{}.{} drop\n",
            i >> 16,
            (i >> 8) & 255,
            i & 255
        ));
    }
    src.push_str("  counter\n }\n}\n");
    let c = compile(parse_ruleset(&src, "t").unwrap()).unwrap();
    let chain = c.chain_id(Family::Ip, "t", "c").unwrap();
    let st = c.index_stats(chain).unwrap();
    assert_eq!((st.rules, st.filed, st.always), (5001, 5000, 1));
    let mut r = Rng(7);
    for want_drop in [false, true] {
        let mut p = packet(&mut r, false);
        p.th = Some(34);
        let a: [u8; 4] = if want_drop {
            [10, 0, 19, 135]
        } else {
            [192, 0, 2, 1]
        };
        p.frame[26..30].copy_from_slice(&a);
        let (lin, idx) = check(&c, chain, &p, "big");
        assert_eq!(lin, if want_drop { 5000 } else { 5001 });
        assert_eq!(idx, 1, "rules visited");
    }
}

#[test]
fn classifier_equals_linear_walk_nat_chains() {
    let (lin, idx, indexed) = run_cases(20_000, 120, &[10, 40, 200], 150, true);
    assert!(indexed > 100, "only {indexed} of 120 chains indexed");
    assert!(
        idx < lin,
        "the classifier visited {idx} rules, linear {lin}"
    );
}

/// The benchmark's mix (addresses, prefixes, ports and port ranges, protocols, interface names): every
/// rule is filed, a packet matching none visits none, and packets that do match agree with the walk.
#[test]
fn mixed_chain_is_filed_and_agrees() {
    let n = 4000;
    let mut src = String::from(
        "table inet t {\n chain c {\n  type filter hook forward priority 0; policy drop;\n",
    );
    for i in 0..n {
        let (a, b, c) = ((i >> 16) & 255, (i >> 8) & 255, i & 255);
        let port = 1024 + (i % 60_000);
        src.push_str("  ");
        src.push_str(&match i % 8 {
            0 => format!("ip saddr 10.{a}.{b}.{c} drop"),
            1 => format!("ip daddr 172.{}.{b}.0/24 tcp dport {port} accept", 16 + a),
            2 => format!(
                "ip saddr 10.{}.{b}.0/24 udp dport 1000-2000 counter drop",
                100 + a
            ),
            3 => format!("tcp dport {port} iifname \"eth{}\" accept", i % 4),
            4 => format!("meta l4proto udp ip daddr 10.{a}.{b}.{c} counter drop"),
            5 => format!("oifname \"veth{i}\" ip saddr 10.{a}.{b}.{c} accept"),
            6 => format!(
                "iifname \"wan*\" ip6 saddr 2001:db8::{i:x} tcp dport {{ 22, 80, 443 }} drop"
            ),
            _ => format!("udp dport {port} ip saddr 10.{a}.{b}.{c} accept"),
        });
        src.push('\n');
    }
    src.push_str("  counter accept\n }\n}\n");
    let c = compile(parse_ruleset(&src, "t").unwrap()).unwrap();
    let chain = c.chain_id(Family::Inet, "t", "c").unwrap();
    let st = c.index_stats(chain).unwrap();
    assert_eq!((st.rules, st.filed, st.always), (n + 1, n, 1), "{st:?}");
    let mut r = Rng(99);
    let mut p = packet(&mut r, false);
    p.l4 = 6;
    p.th = Some(34);
    p.frame[23] = 6;
    p.frame[26..34].copy_from_slice(&[192, 0, 2, 1, 198, 51, 100, 1]);
    p.frame[36..38].copy_from_slice(&9u16.to_be_bytes());
    p.iif = "eth0";
    p.oif = "eth1";
    let (lin, idx) = check(&c, chain, &p, "no match");
    assert_eq!((lin, idx), (n + 1, 1));
    // packets built to hit rules of every kind
    for k in 0..3000usize {
        let i = r.below(n);
        let (a, b, cc) = ((i >> 16) as u8, (i >> 8) as u8, i as u8);
        let v6 = r.chance(20);
        let mut p = packet(&mut r, v6);
        if !p.v6 {
            let ip = &mut p.frame[14..];
            match r.below(4) {
                0 => ip[12..16].copy_from_slice(&[10, a, b, cc]),
                1 => ip[16..20].copy_from_slice(&[172, 16 + a, b, cc]),
                2 => ip[12..16].copy_from_slice(&[10, 100 + a, b, 7]),
                _ => ip[16..20].copy_from_slice(&[10, a, b, cc]),
            }
        }
        let port = 1024 + (i % 60_000) as u16;
        if let Some(th) = p.th {
            if r.chance(60) {
                p.frame[th + 2..th + 4].copy_from_slice(&port.to_be_bytes());
            }
        }
        p.iif = *r.pick(&["eth0", "eth1", "eth2", "eth3", "wan0"]);
        let (lin, idx) = check(&c, chain, &p, &format!("packet {k} rule {i}"));
        assert!(idx <= lin);
    }
}
