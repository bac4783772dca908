//! `limit`, `quota` and named counter/quota/limit objects on the packet path: the kernel's token
//! bucket and byte counts, shared by the rules that name an object, and their state in listings.

use rules::{
    compile, parse_ruleset, print_ruleset, CounterValue, Hook, NfProto, PacketCtx, Verdict,
};

/// A UDP packet of `len` IP bytes from 192.0.2.`src` to 198.51.100.2 port `dport`.
fn frame(src: u8, dport: u16, len: u16) -> Vec<u8> {
    let mut f = vec![0u8; 14 + len as usize];
    f[12] = 0x08;
    let ip = &mut f[14..];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&len.to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&[192, 0, 2, src]);
    ip[16..20].copy_from_slice(&[198, 51, 100, 2]);
    ip[22..24].copy_from_slice(&dport.to_be_bytes());
    f
}

fn run(rs: &rules::CompiledRuleset, f: &[u8], now: u64, counters: &mut [CounterValue]) -> Verdict {
    let mut f = f.to_vec();
    let len = (f.len() - 14) as u32;
    let mut pkt = PacketCtx {
        frame: &mut f,
        nh_off: 14,
        th_off: Some(34),
        nfproto: NfProto::Ipv4,
        l4proto: 17,
        len,
        iif: 2,
        iifname: "in0",
        oif: 3,
        oifname: "out0",
        mark: 0,
        ct_state: 8,
        ct_mark: 0,
        ct_label: 0,
        ct_view: None,
        conncount: None,
        ct_counted: 0,
        hook: Hook::Forward,
        nftrace: false,
        now,
        fib: None,
        payload_writes: 0,
    };
    let chain = rs.hook_chains(NfProto::Ipv4, Hook::Forward)[0];
    rs.eval_chain(chain, &mut pkt, counters)
}

const SEC: u64 = 1_000_000_000;

#[test]
fn limit_accepts_the_burst_then_refills_at_the_rate() {
    let rs = parse_ruleset(
        "table ip t {
	chain forward {
		type filter hook forward priority filter; policy drop;
		udp dport 53 limit rate 10/second burst 2 packets accept
		udp dport 54 limit rate over 1 kbytes/second drop
		udp dport 54 accept
	}
}
",
        "t.nft",
    )
    .unwrap();
    let rs = compile(rs).unwrap();
    let mut c = vec![CounterValue::default(); rs.counter_slots()];
    let f = frame(1, 53, 100);
    let t0 = 1000 * SEC;
    // a bucket of `burst` packets: 2 at once; it refills at one per 100 ms up to the burst
    let burst = (0..50)
        .filter(|_| run(&rs, &f, t0, &mut c) == Verdict::Accept)
        .count();
    assert_eq!(burst, 2);
    let later = (0..50)
        .filter(|_| run(&rs, &f, t0 + SEC / 2, &mut c) == Verdict::Accept)
        .count();
    assert_eq!(later, 2);
    let soon = (0..50)
        .filter(|_| run(&rs, &f, t0 + SEC / 2 + SEC / 10, &mut c) == Verdict::Accept)
        .count();
    assert_eq!(soon, 1);
    // byte rate with `over` (no burst): 1024 bytes per second pass the limit, the rest is dropped
    let g = frame(1, 54, 500);
    let got: Vec<Verdict> = (0..4).map(|_| run(&rs, &g, t0, &mut c)).collect();
    assert_eq!(
        got,
        [
            Verdict::Accept,
            Verdict::Accept,
            Verdict::Drop,
            Verdict::Drop
        ]
    );
    assert_eq!(run(&rs, &g, t0 + SEC, &mut c), Verdict::Accept);
}

#[test]
fn quotas_count_bytes_and_listings_show_what_was_used() {
    let src = "table ip t {
	quota q {
		over 1000 bytes
	}

	counter hits {
		packets 0 bytes 0
	}

	chain forward {
		type filter hook forward priority filter; policy accept;
		udp dport 80 quota name \"q\" drop
		udp dport 81 quota name \"q\" drop
		udp dport 82 counter name \"hits\" quota 300 bytes accept
		udp dport 82 jump {
			quota over 50 bytes drop
		}
	}
}
";
    let rs = compile(parse_ruleset(src, "t.nft").unwrap()).unwrap();
    let mut c = vec![CounterValue::default(); rs.counter_slots()];
    // one quota object for two rules: the bytes of both count against it
    assert_eq!(run(&rs, &frame(1, 80, 400), 0, &mut c), Verdict::Accept);
    assert_eq!(run(&rs, &frame(1, 81, 400), 0, &mut c), Verdict::Accept);
    assert_eq!(run(&rs, &frame(1, 80, 400), 0, &mut c), Verdict::Drop);
    assert_eq!(run(&rs, &frame(1, 81, 28), 0, &mut c), Verdict::Drop);
    // 100 + 100 bytes within the 300-byte quota; the third packet reaches it and falls to the block
    let p = frame(1, 82, 100);
    assert_eq!(run(&rs, &p, 0, &mut c), Verdict::Accept);
    assert_eq!(run(&rs, &p, 0, &mut c), Verdict::Accept);
    assert_eq!(run(&rs, &p, 0, &mut c), Verdict::Drop);
    let mut view = rs.ruleset().clone();
    rs.write_state(&mut view, 0);
    let listing = print_ruleset(&view, &Default::default(), None);
    assert!(
        listing.contains("\tquota q {\n\t\tover 1000 bytes used 1228 bytes\n"),
        "{listing}"
    );
    assert!(
        listing.contains("\tcounter hits {\n\t\tpackets 3 bytes 300\n"),
        "{listing}"
    );
    assert!(
        listing
            .contains("udp dport 82 counter name \"hits\" quota 300 bytes used 300 bytes accept"),
        "{listing}"
    );
    assert!(
        listing.contains("quota over 50 bytes used 100 bytes drop"),
        "{listing}"
    );
    // the listing is a ruleset that resumes where the counts are
    let again = compile(parse_ruleset(&listing, "l.nft").unwrap()).unwrap();
    assert_eq!(run(&again, &frame(1, 80, 28), 0, &mut c), Verdict::Drop);
}

#[test]
fn sets_written_from_the_packet_path_match_expire_and_are_listed() {
    let src = "table ip t {
	set seen {
		type ipv4_addr
		size 2
		flags dynamic,timeout
		timeout 10s
	}

	set perport {
		type ipv4_addr . inet_service
		flags dynamic
	}

	chain forward {
		type filter hook forward priority filter; policy accept;
		ip saddr @seen udp dport 7 drop
		udp dport 9 add @seen { ip saddr }
		udp dport 53 update @perport { ip saddr . udp dport counter limit rate 1/minute burst 2 packets } accept
		udp dport 53 drop
	}
}
";
    let rs = compile(parse_ruleset(src, "t.nft").unwrap()).unwrap();
    let mut c = vec![CounterValue::default(); rs.counter_slots()];
    let t0 = 100 * SEC;
    assert_eq!(run(&rs, &frame(1, 7, 28), t0, &mut c), Verdict::Accept);
    assert_eq!(run(&rs, &frame(1, 9, 28), t0, &mut c), Verdict::Accept);
    assert_eq!(run(&rs, &frame(1, 7, 28), t0 + SEC, &mut c), Verdict::Drop);
    // others are not in it; the set holds 2: the third address is refused (the rule does not match)
    assert_eq!(
        run(&rs, &frame(2, 7, 28), t0 + SEC, &mut c),
        Verdict::Accept
    );
    run(&rs, &frame(2, 9, 28), t0 + SEC, &mut c);
    run(&rs, &frame(3, 9, 28), t0 + SEC, &mut c);
    assert_eq!(
        run(&rs, &frame(3, 7, 28), t0 + SEC, &mut c),
        Verdict::Accept
    );
    // a meter: 2 packets per source and port, then the rule stops matching
    let got: Vec<Verdict> = (0..3)
        .map(|_| run(&rs, &frame(1, 53, 28), t0, &mut c))
        .collect();
    assert_eq!(got, [Verdict::Accept, Verdict::Accept, Verdict::Drop]);
    assert_eq!(run(&rs, &frame(2, 53, 28), t0, &mut c), Verdict::Accept);
    // listed with what is left of their timeouts, and the meter's per-element state
    let mut view = rs.ruleset().clone();
    rs.write_state(&mut view, t0 + 4 * SEC);
    let listing = print_ruleset(&view, &Default::default(), None);
    assert!(
        listing.contains("elements = { 192.0.2.1 expires 6s,\n\t\t\t     192.0.2.2 expires 7s }"),
        "{listing}"
    );
    assert!(
        listing.contains(
            "192.0.2.1 . 53 counter packets 3 bytes 84 limit rate 1/minute burst 2 packets,"
        ),
        "{listing}"
    );
    // the listing, compiled again (the next transaction), goes on from there
    let next =
        compile(parse_ruleset(&listing, "l.nft").unwrap_or_else(|e| panic!("{e}\n{listing}")))
            .unwrap();
    let t1 = t0 + 5 * SEC;
    assert_eq!(run(&next, &frame(1, 7, 28), t1, &mut c), Verdict::Drop);
    assert_eq!(
        run(&next, &frame(1, 7, 28), t1 + 6 * SEC, &mut c),
        Verdict::Accept
    );
    assert_eq!(
        run(&next, &frame(2, 7, 28), t1 + 6 * SEC, &mut c),
        Verdict::Drop
    );
    // the meter's bucket carried over is a fresh one; its counter goes on
    let mut view = next.ruleset().clone();
    next.write_state(&mut view, t1);
    let listing = print_ruleset(&view, &Default::default(), None);
    assert!(
        listing.contains("counter packets 3 bytes 84 limit"),
        "{listing}"
    );
}

#[test]
fn maps_written_from_the_packet_path_are_looked_up_expire_and_are_listed() {
    let src = "table ip t {
	map m {
		type ipv4_addr : mark
		flags dynamic,timeout
		timeout 10s
	}

	map pd {
		typeof ip saddr . udp dport : ip daddr
		flags dynamic
	}

	map vm {
		type ipv4_addr : verdict
		flags timeout
		elements = { 192.0.2.9 timeout 3s : drop }
	}

	chain forward {
		type filter hook forward priority filter; policy accept;
		ip saddr vmap @vm
		udp dport 9 meta mark set 5
		udp dport 10 meta mark set 7
		udp dport != 7 update @m { ip saddr counter : meta mark }
		udp dport 11 add @pd { ip saddr . udp dport : 1.2.3.4 }
		meta mark set ip saddr map @m
		meta mark 5 udp dport 7 drop
	}
}
";
    let rs = compile(parse_ruleset(src, "t.nft").unwrap()).unwrap();
    let mut c = vec![CounterValue::default(); rs.counter_slots()];
    let t0 = 100 * SEC;
    // nothing in @m yet: the lookup misses and the rule ends
    assert_eq!(run(&rs, &frame(1, 7, 28), t0, &mut c), Verdict::Accept);
    // .1 maps to mark 5, .2 to 7; an element's data is written once (update keeps it)
    run(&rs, &frame(1, 9, 28), t0, &mut c);
    run(&rs, &frame(2, 10, 28), t0, &mut c);
    run(&rs, &frame(2, 9, 28), t0 + SEC, &mut c);
    run(&rs, &frame(3, 11, 28), t0 + SEC, &mut c);
    assert_eq!(run(&rs, &frame(1, 7, 28), t0 + SEC, &mut c), Verdict::Drop);
    assert_eq!(
        run(&rs, &frame(2, 7, 28), t0 + SEC, &mut c),
        Verdict::Accept
    );
    // a timed verdict-map element decides until it expires
    assert_eq!(run(&rs, &frame(9, 7, 28), t0, &mut c), Verdict::Drop);
    let mut view = rs.ruleset().clone();
    rs.write_state(&mut view, t0 + SEC);
    let listing = print_ruleset(&view, &Default::default(), None);
    assert!(
        listing.contains("elements = { 192.0.2.9 timeout 3s expires 2s : drop }"),
        "{listing}"
    );
    assert_eq!(
        run(&rs, &frame(9, 7, 28), t0 + 3 * SEC, &mut c),
        Verdict::Accept
    );
    // elements expire with the map's timeout (the lookup then misses)
    assert_eq!(
        run(&rs, &frame(1, 7, 28), t0 + 10 * SEC, &mut c),
        Verdict::Accept
    );
    // listed as the kernel lists them: statements, expiry, then the data
    let mut view = rs.ruleset().clone();
    rs.write_state(&mut view, t0 + 4 * SEC);
    let listing = print_ruleset(&view, &Default::default(), None);
    assert!(
        listing.contains(
            "elements = { 192.0.2.1 counter packets 1 bytes 28 expires 6s : 0x00000005,\n\t\t\t     192.0.2.2 counter packets 2 bytes 56 expires 7s : 0x00000007,\n\t\t\t     192.0.2.3 counter packets 1 bytes 28 expires 7s : 0x00000000 }"
        ),
        "{listing}"
    );
    assert!(
        listing.contains("elements = { 192.0.2.3 . 11 : 1.2.3.4 }"),
        "{listing}"
    );
    // the first write (t0) is gone from the vmap listing once it expired; before, it shows
    assert!(!listing.contains("192.0.2.9"), "{listing}");
    // the listing, compiled again (the next transaction), keeps the data
    let next =
        compile(parse_ruleset(&listing, "l.nft").unwrap_or_else(|e| panic!("{e}\n{listing}")))
            .unwrap();
    let t1 = t0 + 5 * SEC;
    assert_eq!(run(&next, &frame(1, 7, 28), t1, &mut c), Verdict::Drop);
    assert_eq!(run(&next, &frame(2, 7, 28), t1, &mut c), Verdict::Accept);
    assert_eq!(
        run(&next, &frame(1, 7, 28), t1 + 6 * SEC, &mut c),
        Verdict::Accept
    );
}

#[test]
fn meter_statement_makes_an_anonymous_dynamic_set_with_per_source_state() {
    let src = "table ip t {
	chain forward {
		type filter hook forward priority filter; policy accept;
		udp dport 53 meter dns { ip saddr limit rate 1/minute burst 2 packets } accept
		udp dport 53 drop
		meter pairs size 1024 { ip saddr . udp dport timeout 10s counter }
	}
}
";
    let rs = compile(parse_ruleset(src, "t.nft").unwrap()).unwrap();
    let mut c = vec![CounterValue::default(); rs.counter_slots()];
    let t0 = 100 * SEC;
    let got: Vec<Verdict> = (0..3)
        .map(|_| run(&rs, &frame(1, 53, 28), t0, &mut c))
        .collect();
    assert_eq!(got, [Verdict::Accept, Verdict::Accept, Verdict::Drop]);
    // another source has a bucket of its own
    assert_eq!(run(&rs, &frame(2, 53, 28), t0, &mut c), Verdict::Accept);
    // the rules list as nft lists them (the size the kernel gives); the sets are not in the listing
    let listing = print_ruleset(rs.ruleset(), &Default::default(), None);
    assert_eq!(
        listing,
        "table ip t {
	chain forward {
		type filter hook forward priority filter; policy accept;
		udp dport 53 meter dns size 65535 { ip saddr limit rate 1/minute burst 2 packets } accept
		udp dport 53 drop
		meter pairs size 1024 { ip saddr . udp dport timeout 10s counter }
	}
}
"
    );
    // `list meters` shows them, as nft does
    let opts = rules::PrintOptions {
        meters: true,
        ..Default::default()
    };
    let mut view = rs.ruleset().clone();
    for t in &mut view.tables {
        t.chains.clear();
    }
    assert_eq!(
        print_ruleset(&view, &opts, None),
        "table ip t {
	meter dns {
		type ipv4_addr
		size 65535
		flags dynamic
	}

	meter pairs {
		type ipv4_addr . inet_service
		size 1024
		flags dynamic,timeout
	}
}
"
    );
    // the listing reads back to the same ruleset
    let again = parse_ruleset(&listing, "l.nft").unwrap();
    assert_eq!(print_ruleset(&again, &Default::default(), None), listing);
}

#[test]
fn a_meter_name_taken_by_a_set_or_another_key_is_refused_as_the_kernel_does() {
    // nft 1.0.6's first error for each (it then also reports the statement refused)
    let taken = "table ip t {\n\tset ssh { type ipv4_addr; }\n\tchain c {\n\t\ttcp dport 22 meter ssh { ip saddr limit rate 10/second } accept\n\t}\n}\n";
    let e = parse_ruleset(taken, "mc.nft").unwrap_err().to_string();
    assert!(
        e.starts_with("mc.nft:4:28-35: Error: Could not process rule: File exists"),
        "{e}"
    );
    let rekeyed = "table ip t {\n\tchain c {\n\t\tmeter m { ip saddr counter }\n\t\tmeter m { tcp dport counter }\n\t}\n}\n";
    let e = parse_ruleset(rekeyed, "mc2.nft").unwrap_err().to_string();
    assert!(
        e.starts_with("mc2.nft:4:13-21: Error: Could not process rule: Operation not supported"),
        "{e}"
    );
}
