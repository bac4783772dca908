//! Verdicts beyond accept/drop: reject and its printing, queue refused, meta set, jump depth, hook order
//! for equal priorities, tracing events.

use rules::eval::{RejectKind as Reject, TraceEvent, TraceVerdict, Tracer};
use rules::{compile, parse_ruleset, print_ruleset, Hook, NfProto, PacketCtx, Verdict};

fn frame_tcp(dport: u16) -> Vec<u8> {
    let mut f = vec![0u8; 14 + 20 + 20];
    f[12] = 0x08;
    let ip = &mut f[14..];
    ip[0] = 0x45;
    ip[3] = 40;
    ip[8] = 64;
    ip[9] = 6;
    ip[12..16].copy_from_slice(&[192, 0, 2, 2]);
    ip[16..20].copy_from_slice(&[198, 51, 100, 2]);
    ip[22..24].copy_from_slice(&dport.to_be_bytes());
    f
}

fn ctx(frame: &mut [u8], hook: Hook) -> PacketCtx<'_> {
    PacketCtx {
        frame,
        nh_off: 14,
        th_off: Some(34),
        nfproto: NfProto::Ipv4,
        l4proto: 6,
        len: 40,
        iif: 2,
        iifname: "eth0",
        oif: 3,
        oifname: "eth1",
        mark: 0,
        ct_state: 8,
        ct_mark: 0,
        ct_label: 0,
        ct_view: None,
        conncount: None,
        ct_counted: 0,
        hook,
        nftrace: false,
        now: 0,
        fib: None,
        payload_writes: 0,
    }
}

fn load(src: &str) -> rules::CompiledRuleset {
    compile(parse_ruleset(src, "t.nft").unwrap()).unwrap()
}

#[test]
fn reject_kinds_parse_print_and_evaluate() {
    let src = "table inet t {\n\tchain c {\n\t\ttype filter hook forward priority filter; policy accept;\n\t\ttcp dport 1 reject\n\t\ttcp dport 2 reject with icmp host-unreachable\n\t\ttcp dport 3 reject with icmpx admin-prohibited\n\t\ttcp dport 4 reject with tcp reset\n\t\ttcp dport 5 reject with icmpv6 no-route\n\t}\n}\n";
    let rs = parse_ruleset(src, "t.nft").unwrap();
    let printed = print_ruleset(&rs, &Default::default(), None);
    assert!(printed.contains("tcp dport 1 reject\n"), "{printed}");
    assert!(
        printed.contains("reject with icmp host-unreachable"),
        "{printed}"
    );
    assert!(
        printed.contains("reject with icmpx admin-prohibited"),
        "{printed}"
    );
    assert!(printed.contains("reject with tcp reset"), "{printed}");
    assert!(printed.contains("reject with icmpv6 no-route"), "{printed}");
    let c = compile(&rs).unwrap();
    let chain = c.hook_chains(NfProto::Ipv4, Hook::Forward)[0];
    let mut counters = vec![];
    let want = [
        (1, Verdict::Reject(Reject::Icmpx(1))),
        (2, Verdict::Reject(Reject::Icmp(1))),
        (3, Verdict::Reject(Reject::Icmpx(3))),
        (4, Verdict::Reject(Reject::TcpReset)),
        // `with icmpv6` applies to IPv6 only: an IPv4 packet goes on to the policy.
        (5, Verdict::Accept),
        (6, Verdict::Accept),
    ];
    for (port, v) in want {
        let f = frame_tcp(port);
        assert_eq!(
            c.eval_chain(
                chain,
                &mut ctx(&mut f.clone(), Hook::Forward),
                &mut counters
            ),
            v,
            "dport {port}"
        );
    }
    // ip family default: icmp port-unreachable, printed bare.
    let ip = parse_ruleset("table ip t { chain c { type filter hook input priority 0; reject with icmp port-unreachable; } }", "t").unwrap();
    assert!(print_ruleset(&ip, &Default::default(), None).contains("\t\treject\n"));
    // conflicts are errors
    assert!(parse_ruleset(
        "table ip t { chain c { reject with icmpv6 no-route; } }",
        "t"
    )
    .is_err());
    assert!(parse_ruleset(
        "table inet t { chain c { meta l4proto udp reject with tcp reset; } }",
        "t"
    )
    .is_err());
    assert!(parse_ruleset("table ip t { chain c { reject with icmp no-route; } }", "t").is_err());
}

#[test]
fn tcp_reset_only_for_tcp() {
    let c = load(
        "table ip t { chain c { type filter hook input priority 0; reject with tcp reset; } }",
    );
    let chain = c.hook_chains(NfProto::Ipv4, Hook::Input)[0];
    let f = frame_tcp(9);
    let mut fb = f.clone();
    let mut p = ctx(&mut fb, Hook::Input);
    assert_eq!(
        c.eval_chain(chain, &mut p, &mut []),
        Verdict::Reject(Reject::TcpReset)
    );
    p.l4proto = 17;
    assert_eq!(c.eval_chain(chain, &mut p, &mut []), Verdict::Accept);
}

#[test]
fn queue_is_refused_at_load() {
    // `sluice fmt` prints it; loading it into the dataplane is refused.
    let rs = parse_ruleset("table ip t {\n chain c {\n  queue num 3\n }\n}\n", "q.nft").unwrap();
    let m = compile(&rs)
        .err()
        .expect("queue must be refused")
        .to_string();
    assert!(m.contains("queue in table ip t"), "{m}");
    assert!(m.contains("no user-space queue"), "{m}");
}

#[test]
fn reject_reachable_from_postrouting_is_refused() {
    let rs = parse_ruleset("table ip t { chain p { type filter hook postrouting priority 0; jump x; }; chain x { reject; } }", "t").unwrap();
    let e = compile(&rs).err().expect("must fail").to_string();
    assert!(e.contains("Operation not supported"), "{e}");
}

#[test]
fn jumps_deeper_than_the_kernel_stack_are_refused() {
    let mk = |n: usize| {
        let mut s = String::from(
            "table ip t {\n chain b { type filter hook input priority 0; jump c0; }\n",
        );
        for i in 0..n {
            s.push_str(&format!(" chain c{i} {{ jump c{}; }}\n", i + 1));
        }
        s.push_str(&format!(" chain c{n} {{ accept; }}\n}}\n"));
        s
    };
    // b → c0 → … → c15: 16 jumps deep is the limit.
    assert!(compile(parse_ruleset(&mk(15), "t").unwrap()).is_ok());
    let e = compile(parse_ruleset(&mk(16), "t").unwrap())
        .err()
        .expect("too deep");
    assert!(e.to_string().contains("Too many links"), "{e}");
}

#[test]
fn equal_priorities_run_the_later_chain_first() {
    let c = load("table ip a { chain c { type filter hook input priority 0; } }\ntable ip b { chain c { type filter hook input priority 0; }; chain d { type filter hook input priority -5; } }");
    let names: Vec<_> = c
        .hook_chains(NfProto::Ipv4, Hook::Input)
        .iter()
        .map(|&id| {
            let (_, t, ch) = c.chain_name(id);
            format!("{t}/{ch}")
        })
        .collect();
    assert_eq!(names, ["b/d", "b/c", "a/c"]);
    let id = c.hook_chains(NfProto::Ipv4, Hook::Input)[0];
    assert_eq!(c.chain_priority(id), Some(-5));
}

#[test]
fn meta_set_and_trace_events() {
    let c = load("table ip t {\n chain c { type filter hook input priority 0; policy drop; tcp dport 1 accept; meta nftrace set 1 mark set 7; jump x; }\n chain x { tcp dport 2 accept; }\n}");
    let print = print_ruleset(c.ruleset(), &Default::default(), None);
    assert!(
        print.contains("meta nftrace set 1 meta mark set 0x00000007"),
        "{print}"
    );
    struct Rec(Vec<(TraceEvent, bool)>);
    impl Tracer for Rec {
        fn event(&mut self, pkt: &PacketCtx<'_>, ev: TraceEvent) {
            self.0.push((ev, pkt.nftrace));
        }
    }
    let f = frame_tcp(9);
    let mut fb = f.clone();
    let mut p = ctx(&mut fb, Hook::Input);
    let mut rec = Rec(vec![]);
    let chain = c.hook_chains(NfProto::Ipv4, Hook::Input)[0];
    let x = c.chain_id(rules::Family::Ip, "t", "x").unwrap();
    assert_eq!(
        c.eval_chain_traced(chain, &mut p, &mut [], &mut rec),
        Verdict::Drop
    );
    assert_eq!(p.mark, 7);
    assert!(p.nftrace);
    assert_eq!(
        rec.0,
        vec![
            (TraceEvent::NoMatch { chain, rule: 0 }, false),
            (
                TraceEvent::Rule {
                    chain,
                    rule: 1,
                    verdict: TraceVerdict::Continue
                },
                true
            ),
            (
                TraceEvent::Rule {
                    chain,
                    rule: 2,
                    verdict: TraceVerdict::Jump(x)
                },
                true
            ),
            (TraceEvent::NoMatch { chain: x, rule: 0 }, true),
            (TraceEvent::Return { chain: x }, true),
            (TraceEvent::Return { chain }, true),
            (
                TraceEvent::Policy {
                    chain,
                    verdict: Verdict::Drop
                },
                true
            ),
        ]
    );
}
