//! Evaluation of phase-2 features over hand-built frames: named and anonymous sets, intervals,
//! concatenations, verdict maps, value maps, binding chains, mark statements, TCP options.

use rules::eval::ct_state;
use rules::*;

fn ipv4_tcp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, opts: &[u8]) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00];
    let thl = 20 + opts.len();
    let total = (20 + thl) as u16;
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
        6,
        0,
        0,
    ]);
    f.extend_from_slice(&src);
    f.extend_from_slice(&dst);
    let mut t = vec![0u8; 20];
    t[0..2].copy_from_slice(&sport.to_be_bytes());
    t[2..4].copy_from_slice(&dport.to_be_bytes());
    t[12] = ((thl / 4) as u8) << 4;
    t[13] = 0x02;
    f.extend_from_slice(&t);
    f.extend_from_slice(opts);
    f
}

fn ctx(frame: &mut [u8]) -> PacketCtx<'_> {
    let len = (frame.len() - 14) as u32;
    PacketCtx {
        frame,
        nh_off: 14,
        th_off: Some(34),
        nfproto: NfProto::Ipv4,
        l4proto: 6,
        len,
        iif: 2,
        iifname: "eth0",
        oif: 3,
        oifname: "eth1",
        mark: 0,
        ct_state: ct_state::NEW,
        ct_mark: 0,
        ct_label: 0,
        ct_view: None,
        conncount: None,
        ct_counted: 0,
        hook: Hook::Input,
        nftrace: false,
        now: 0,
        fib: None,
        payload_writes: 0,
    }
}

const RULESET: &str = r#"
define trusted = { 10.0.0.0/8, 192.168.1.1 }
table inet t {
	set allow {
		type ipv4_addr . inet_service
		flags interval
		elements = { 192.0.2.0/24 . 22, 198.51.100.7 . 80-90 }
	}

	map svc {
		type inet_service : verdict
		elements = { 443 : accept, 8443 : jump web }
	}

	map marks {
		type ipv4_addr : mark
		elements = { 203.0.113.5 : 0x00000042 }
	}

	chain input {
		type filter hook input priority filter; policy drop;
		meta mark set ip saddr map @marks
		ip saddr $trusted accept
		ip saddr . tcp dport @allow accept
		tcp dport vmap @svc
		tcp dport { 1000-1999, 3000 } jump {
			tcp option maxseg size 1000-1460 accept
			tcp sport 5 accept
		}
	}

	chain web {
		meta mark 0x00000042 accept
	}
}
"#;

fn run(c: &CompiledRuleset, f: &[u8]) -> (Verdict, u32) {
    let chain = c.hook_chains(NfProto::Ipv4, Hook::Input)[0];
    let mut f = f.to_vec();
    let mut p = ctx(&mut f);
    let mut counters = c.initial_counters();
    let v = c.eval_chain(chain, &mut p, &mut counters);
    (v, p.mark)
}

#[test]
fn sets_maps_and_binding_chains() {
    let rs = parse_ruleset(RULESET, "t.nft").unwrap();
    let c = compile(&rs).unwrap();
    let out = print_ruleset(&rs, &PrintOptions::default(), None);
    assert!(
        out.contains("\t\tip saddr { 10.0.0.0/8, 192.168.1.1 } accept\n"),
        "{out}"
    );
    assert!(out.contains("\t\ttcp dport { 1000-1999, 3000 } jump {\n\t\t\ttcp option maxseg size 1000-1460 accept\n"), "{out}");
    // the listing parses back to the same listing
    let again = parse_ruleset(&out, "listed.nft").unwrap();
    assert_eq!(print_ruleset(&again, &PrintOptions::default(), None), out);

    let other = [203, 0, 113, 9];
    assert_eq!(
        run(&c, &ipv4_tcp([10, 9, 9, 9], [1, 1, 1, 1], 1, 1, &[])).0,
        Verdict::Accept
    );
    assert_eq!(
        run(&c, &ipv4_tcp([192, 168, 1, 1], [1, 1, 1, 1], 1, 1, &[])).0,
        Verdict::Accept
    );
    assert_eq!(
        run(&c, &ipv4_tcp([192, 168, 1, 2], [1, 1, 1, 1], 1, 1, &[])).0,
        Verdict::Drop
    );
    // concatenated intervals
    assert_eq!(
        run(&c, &ipv4_tcp([192, 0, 2, 77], [1, 1, 1, 1], 1, 22, &[])).0,
        Verdict::Accept
    );
    assert_eq!(
        run(&c, &ipv4_tcp([192, 0, 2, 77], [1, 1, 1, 1], 1, 23, &[])).0,
        Verdict::Drop
    );
    assert_eq!(
        run(&c, &ipv4_tcp([198, 51, 100, 7], [1, 1, 1, 1], 1, 85, &[])).0,
        Verdict::Accept
    );
    assert_eq!(
        run(&c, &ipv4_tcp([198, 51, 100, 7], [1, 1, 1, 1], 1, 91, &[])).0,
        Verdict::Drop
    );
    // verdict map, and a jump from it that depends on the mark set from a value map
    assert_eq!(
        run(&c, &ipv4_tcp(other, [1, 1, 1, 1], 1, 443, &[])).0,
        Verdict::Accept
    );
    assert_eq!(
        run(&c, &ipv4_tcp(other, [1, 1, 1, 1], 1, 8443, &[])).0,
        Verdict::Drop
    );
    assert_eq!(
        run(&c, &ipv4_tcp([203, 0, 113, 5], [1, 1, 1, 1], 1, 8443, &[])),
        (Verdict::Accept, 0x42)
    );
    // binding chain with a TCP option match (MSS 1400) and without the option
    let mss = [2, 4, 0x05, 0x78];
    assert_eq!(
        run(&c, &ipv4_tcp(other, [1, 1, 1, 1], 1, 1500, &mss)).0,
        Verdict::Accept
    );
    assert_eq!(
        run(&c, &ipv4_tcp(other, [1, 1, 1, 1], 1, 1500, &[])).0,
        Verdict::Drop
    );
    assert_eq!(
        run(&c, &ipv4_tcp(other, [1, 1, 1, 1], 5, 3000, &[])).0,
        Verdict::Accept
    );
    // truncated options never panic
    let mut f = ipv4_tcp(other, [1, 1, 1, 1], 1, 1500, &[2, 4, 0x05, 0x78]);
    f.truncate(f.len() - 3);
    assert_eq!(run(&c, &f).0, Verdict::Drop);
}

#[test]
fn includes_come_from_the_loader() {
    struct Files;
    impl Loader for Files {
        fn load(&self, path: &str, _from: &str) -> Result<Vec<(String, String)>, String> {
            match path {
                "defs.nft" => Ok(vec![(
                    "defs.nft".into(),
                    "define web = { 80, 443 }\n".into(),
                )]),
                _ => Err(format!("File not found: {path}")),
            }
        }
    }
    let src =
        "include \"defs.nft\"\ntable ip t {\n\tchain c {\n\t\ttcp dport $web accept\n\t}\n}\n";
    let rs = parse_ruleset_with(src, "main.nft", &Files).unwrap();
    let out = print_ruleset(&rs, &PrintOptions::default(), None);
    assert!(out.contains("tcp dport { 80, 443 } accept"), "{out}");
    let e = parse_ruleset_with("include \"nope.nft\"\n", "main.nft", &Files).unwrap_err();
    assert_eq!(e.to_string(), "main.nft:1:9-18: Error: File not found: nope.nft\ninclude \"nope.nft\"\n        ^^^^^^^^^^");
}
