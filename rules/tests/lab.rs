//! The walking skeleton: docs/examples/lab.nft parses, prints like nft, compiles and evaluates.

use rules::eval::ct_state;
use rules::*;

/// docs/examples/lab.nft
const LAB: &str = "#!/usr/sbin/nft -f
# The sluice lab gateway: clients on 192.0.2.0/24, servers on 198.51.100.0/24.
# Replies to allowed connections pass; clients may reach the web server and ping;
# everything else is counted and dropped.

flush ruleset

table inet filter {
\tchain forward {
\t\ttype filter hook forward priority filter; policy drop;
\t\tct state established,related accept
\t\tct state invalid counter drop
\t\tip saddr 192.0.2.0/24 ip daddr 198.51.100.2 tcp dport 80 counter accept
\t\tip saddr 192.0.2.0/24 icmp type echo-request counter accept
\t\tcounter drop
\t}
}
";

/// What `nft list ruleset` prints after `nft -f lab.nft` (nft 1.0.6).
const LAB_LISTED: &str = "table inet filter {
\tchain forward {
\t\ttype filter hook forward priority filter; policy drop;
\t\tct state established,related accept
\t\tct state invalid counter packets 0 bytes 0 drop
\t\tip saddr 192.0.2.0/24 ip daddr 198.51.100.2 tcp dport 80 counter packets 0 bytes 0 accept
\t\tip saddr 192.0.2.0/24 icmp type echo-request counter packets 0 bytes 0 accept
\t\tcounter packets 0 bytes 0 drop
\t}
}
";

#[test]
fn lab_prints_like_nft() {
    let rs = parse_ruleset(LAB, "lab.nft").unwrap();
    assert_eq!(
        print_ruleset(&rs, &PrintOptions::default(), None),
        LAB_LISTED
    );
    // the listing is a fixed point
    let again = parse_ruleset(LAB_LISTED, "listed.nft").unwrap();
    assert_eq!(
        print_ruleset(&again, &PrintOptions::default(), None),
        LAB_LISTED
    );
    let stateless = print_ruleset(
        &rs,
        &PrintOptions {
            stateless: true,
            ..Default::default()
        },
        None,
    );
    assert!(stateless.contains("\t\tct state invalid counter drop\n"));
}

#[test]
fn handles_like_the_kernel() {
    let rs = parse_ruleset(LAB, "lab.nft").unwrap();
    let out = print_ruleset(
        &rs,
        &PrintOptions {
            handles: true,
            ..Default::default()
        },
        None,
    );
    assert!(
        out.starts_with("table inet filter { # handle 1\n\tchain forward { # handle 1\n"),
        "{out}"
    );
    assert!(
        out.contains("\t\tct state established,related accept # handle 2\n"),
        "{out}"
    );
}

// ------------------------------------------------------------------ packets

fn ipv4(proto: u8, src: [u8; 4], dst: [u8; 4], l4: &[u8]) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00];
    let total = 20 + l4.len() as u16;
    f.extend_from_slice(&[
        0x45,
        0,
        (total >> 8) as u8,
        total as u8,
        0,
        1,
        0x40,
        0,
        64,
        proto,
        0,
        0,
    ]);
    f.extend_from_slice(&src);
    f.extend_from_slice(&dst);
    f.extend_from_slice(l4);
    f
}

fn tcp(sport: u16, dport: u16) -> Vec<u8> {
    let mut t = vec![0u8; 20];
    t[0..2].copy_from_slice(&sport.to_be_bytes());
    t[2..4].copy_from_slice(&dport.to_be_bytes());
    t[12] = 5 << 4;
    t[13] = 0x02; // SYN
    t
}

fn udp(sport: u16, dport: u16) -> Vec<u8> {
    let mut u = vec![0u8; 8];
    u[0..2].copy_from_slice(&sport.to_be_bytes());
    u[2..4].copy_from_slice(&dport.to_be_bytes());
    u[4..6].copy_from_slice(&8u16.to_be_bytes());
    u
}

fn icmp(ty: u8) -> Vec<u8> {
    vec![ty, 0, 0, 0, 0, 1, 0, 1]
}

fn ctx(frame: &mut [u8], proto: u8, ct: u32) -> PacketCtx<'_> {
    let len = (frame.len() - 14) as u32;
    PacketCtx {
        frame,
        nh_off: 14,
        th_off: Some(34),
        nfproto: NfProto::Ipv4,
        l4proto: proto,
        len,
        iif: 2,
        iifname: "eth0",
        oif: 3,
        oifname: "eth1",
        mark: 0,
        ct_state: ct,
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

const CLIENT: [u8; 4] = [192, 0, 2, 10];
const WEB: [u8; 4] = [198, 51, 100, 2];

#[test]
fn lab_evaluates() {
    let rs = parse_ruleset(LAB, "lab.nft").unwrap();
    let c = compile(&rs).unwrap();
    assert_eq!(c.counter_slots(), 4);
    assert_eq!(c.initial_counters(), vec![CounterValue::default(); 4]);
    let chains = c.hook_chains(NfProto::Ipv4, Hook::Forward).to_vec();
    assert_eq!(chains.len(), 1);
    assert_eq!(c.hook_chains(NfProto::Ipv6, Hook::Forward).len(), 1);
    assert!(c.hook_chains(NfProto::Ipv4, Hook::Input).is_empty());
    let fwd = chains[0];
    assert_eq!(c.chain_name(fwd), ("inet", "filter", "forward"));
    let mut counters = c.initial_counters();

    // new web connection from a client: rule 3
    let f = ipv4(6, CLIENT, WEB, &tcp(40000, 80));
    assert_eq!(
        c.eval_chain(
            fwd,
            &mut ctx(&mut f.clone(), 6, ct_state::NEW),
            &mut counters
        ),
        Verdict::Accept
    );
    assert_eq!(
        counters[1],
        CounterValue {
            packets: 1,
            bytes: 40
        }
    );
    // wrong port: counted and dropped by the last rule
    let f2 = ipv4(6, CLIENT, WEB, &tcp(40000, 81));
    assert_eq!(
        c.eval_chain(
            fwd,
            &mut ctx(&mut f2.clone(), 6, ct_state::NEW),
            &mut counters
        ),
        Verdict::Drop
    );
    assert_eq!(
        counters[3],
        CounterValue {
            packets: 1,
            bytes: 40
        }
    );
    // replies pass on state
    let r = ipv4(6, WEB, CLIENT, &tcp(80, 40000));
    assert_eq!(
        c.eval_chain(
            fwd,
            &mut ctx(&mut r.clone(), 6, ct_state::ESTABLISHED),
            &mut counters
        ),
        Verdict::Accept
    );
    assert_eq!(
        c.eval_chain(
            fwd,
            &mut ctx(&mut r.clone(), 6, ct_state::RELATED),
            &mut counters
        ),
        Verdict::Accept
    );
    // invalid: rule 2
    assert_eq!(
        c.eval_chain(
            fwd,
            &mut ctx(&mut f.clone(), 6, ct_state::INVALID),
            &mut counters
        ),
        Verdict::Drop
    );
    assert_eq!(counters[0].packets, 1);
    // ping from a client: rule 4; pong-shaped but new: dropped
    let p = ipv4(1, CLIENT, [203, 0, 113, 1], &icmp(8));
    assert_eq!(
        c.eval_chain(
            fwd,
            &mut ctx(&mut p.clone(), 1, ct_state::NEW),
            &mut counters
        ),
        Verdict::Accept
    );
    assert_eq!(
        counters[2],
        CounterValue {
            packets: 1,
            bytes: 28
        }
    );
    let p0 = ipv4(1, CLIENT, [203, 0, 113, 1], &icmp(0));
    assert_eq!(
        c.eval_chain(
            fwd,
            &mut ctx(&mut p0.clone(), 1, ct_state::NEW),
            &mut counters
        ),
        Verdict::Drop
    );
    // other source network
    let o = ipv4(6, [10, 0, 0, 1], WEB, &tcp(1, 80));
    assert_eq!(
        c.eval_chain(
            fwd,
            &mut ctx(&mut o.clone(), 6, ct_state::NEW),
            &mut counters
        ),
        Verdict::Drop
    );
    // UDP to port 80 is not TCP
    let u = ipv4(17, CLIENT, WEB, &udp(1, 80));
    assert_eq!(
        c.eval_chain(
            fwd,
            &mut ctx(&mut u.clone(), 17, ct_state::NEW),
            &mut counters
        ),
        Verdict::Drop
    );
    // truncated frame: the payload loads fail, nothing panics
    let t = &mut f.clone()[..36];
    assert_eq!(
        c.eval_chain(fwd, &mut ctx(t, 6, ct_state::NEW), &mut counters),
        Verdict::Drop
    );
    // counters print by slot
    let out = print_ruleset(c.ruleset(), &PrintOptions::default(), Some(&counters));
    assert!(
        out.contains("tcp dport 80 counter packets 1 bytes 40 accept"),
        "{out}"
    );
}

#[test]
fn jumps_gotos_and_returns() {
    let src = "table ip t {
	chain in { type filter hook input priority 0; policy drop;
		tcp dport 22 jump ssh
		udp dport domain goto dns
		counter
	}
	chain ssh { ip saddr 10.0.0.0/8 accept; ip saddr 192.0.2.1 return; drop }
	chain dns { udp sport { 1024-65535 } accept }
}
table inet late {
	chain in { type filter hook input priority -5; counter; }
}";
    let rs = parse_ruleset(src, "t.nft").unwrap();
    let c = compile(&rs).unwrap();
    let chains = c.hook_chains(NfProto::Ipv4, Hook::Input).to_vec();
    assert_eq!(chains.len(), 2);
    assert_eq!(c.chain_name(chains[0]), ("inet", "late", "in"));
    let input = chains[1];
    let mut counters = c.initial_counters();
    let run = |src: [u8; 4], proto: u8, l4: Vec<u8>, counters: &mut Vec<CounterValue>| {
        let mut f = ipv4(proto, src, [10, 9, 9, 9], &l4);
        let mut p = ctx(&mut f, proto, ct_state::NEW);
        p.hook = Hook::Input;
        c.eval_chain(input, &mut p, counters)
    };
    assert_eq!(
        run([10, 1, 1, 1], 6, tcp(5, 22), &mut counters),
        Verdict::Accept
    );
    // return from ssh: back in `in`, falls to counter, then policy drop
    assert_eq!(
        run([192, 0, 2, 1], 6, tcp(5, 22), &mut counters),
        Verdict::Drop
    );
    assert_eq!(counters[0].packets, 1);
    assert_eq!(
        run([192, 0, 2, 2], 6, tcp(5, 22), &mut counters),
        Verdict::Drop
    );
    assert_eq!(
        run([192, 0, 2, 2], 17, udp(5000, 53), &mut counters),
        Verdict::Accept
    );
    // goto: dns does not decide, no return to `in`: base chain policy
    assert_eq!(
        run([192, 0, 2, 2], 17, udp(53, 53), &mut counters),
        Verdict::Drop
    );
    assert_eq!(counters[0].packets, 1);
}

#[test]
fn loops_are_rejected() {
    let src = "table ip t { chain a { jump b; }; chain b { jump a; } }";
    let rs = parse_ruleset(src, "t.nft").unwrap();
    assert!(compile(&rs).is_err());
}

#[test]
fn compiled_is_send_sync() {
    fn check<T: Send + Sync>() {}
    check::<CompiledRuleset>();
}

// ------------------------------------------------------------------ errors, as `nft -c -f` prints them

fn err(src: &str) -> String {
    parse_ruleset(src, "bad.nft").unwrap_err().to_string()
}

#[test]
fn error_messages_match_nft() {
    assert_eq!(
        err("table inet filter {\n\tchain forward {\n\t\ttype filter hook forward priority filter; policy drop;\n\t\tct state established,relatd accept\n\t}\n}\n"),
        "bad.nft:4:24-29: Error: Could not parse conntrack state\n\t\tct state established,relatd accept\n\t\t                     ^^^^^^"
    );
    assert_eq!(
        err("table inet filter {\n\tchain forward {\n\t\tip saddr 192.0.2.0/33 accept\n\t}\n}\n"),
        "bad.nft:3:12-23: Error: Prefix length 33 is invalid for type of 32 bits width\n\t\tip saddr 192.0.2.0/33 accept\n\t\t         ^^^^^^^^^^^^"
    );
    // syntax errors come first, then evaluation errors (nft 1.0.6 prints both)
    assert_eq!(
        err("table inet filter {\n\tchain forward {\n\t\tip saddr 192.0.2.0/24 tcp dport foo accept\n\t\tfrobnicate\n\t}\n}\n"),
        "bad.nft:4:13-13: Error: syntax error, unexpected newline\n\t\tfrobnicate\n\t\t          ^\n\
         bad.nft:3:35-37: Error: Could not resolve service: Servname not supported for ai_socktype\n\t\tip saddr 192.0.2.0/24 tcp dport foo accept\n\t\t                                ^^^"
    );
    assert_eq!(
        err("table inet filter {\n\tchain forward {\n\t\tip daddr 1.2.3.4 tcp dport 80-70 accept\n\t}\n}\n"),
        "bad.nft:3:30-34: Error: Range has zero or negative size\n\t\tip daddr 1.2.3.4 tcp dport 80-70 accept\n\t\t                           ^^^^^"
    );
    assert_eq!(
        err("table inet filter {\n  chain forward {\n    ip saddr 1.2.3.4 tcp dport { 22, 80 }"),
        "bad.nft:3:42-42: Error: syntax error, unexpected end of file, expecting newline or semicolon\n    ip saddr 1.2.3.4 tcp dport { 22, 80 }\n                                         ^"
    );
    assert_eq!(
        err("table inet x { chain y { tcp dport 22 jump; } }"),
        "bad.nft:1:43-43: Error: syntax error, unexpected semicolon, expecting '{'\ntable inet x { chain y { tcp dport 22 jump; } }\n                                          ^"
    );
    assert_eq!(
        err("table inet x { chain y { tcp dport 22 icmp type 8; } }"),
        "bad.nft:1:39-47: Error: conflicting protocols specified: tcp vs. icmp\ntable inet x { chain y { tcp dport 22 icmp type 8; } }\n                                      ^^^^^^^^^"
    );
    assert_eq!(
        err("table ip t {\n\tchain r {\n\t\tjump nonexist\n\t}\n}\n"),
        "bad.nft:3:8-15: Error: Could not process rule: No such file or directory\n\t\tjump nonexist\n\t\t     ^^^^^^^^"
    );
}
