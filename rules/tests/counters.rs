//! Counter slots: compile numbers the counter statements, the dataplane counts per slot, and
//! `Ruleset::set_counter_values` / `print_ruleset(.., Some(values))` must put each slot's value back on
//! the statement it belongs to — also with sets (element counters), named counter objects, and
//! anonymous chains (`jump { ... }`, nested), whose counters are not in the chain's own rules.

use rules::{compile, parse_ruleset, print_ruleset, CounterValue, Hook, NfProto, PacketCtx};

/// A UDP packet to 198.51.100.2 port `dport` from 192.0.2.`src`.
fn frame(src: u8, dport: u16) -> Vec<u8> {
    let mut f = vec![0u8; 14 + 20 + 8];
    f[12] = 0x08;
    let ip = &mut f[14..];
    ip[0] = 0x45;
    ip[3] = 28;
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&[192, 0, 2, src]);
    ip[16..20].copy_from_slice(&[198, 51, 100, 2]);
    ip[22..24].copy_from_slice(&dport.to_be_bytes());
    f
}

fn ctx(frame: &mut [u8]) -> PacketCtx<'_> {
    PacketCtx {
        frame,
        nh_off: 14,
        th_off: Some(34),
        nfproto: NfProto::Ipv4,
        l4proto: 17,
        len: 28,
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
        hook: Hook::Forward,
        nftrace: false,
        now: 0,
        fib: None,
        payload_writes: 0,
    }
}

/// Every counter statement's rule names the port (`udp dport P`) whose packets reach it; each port `P`
/// gets `P % 100` packets, so the listing must show `counter packets P%100` on the line of port P.
const SRC: &str = "table ip t {
	counter named { packets 7 bytes 70 }
	set s {
		type ipv4_addr
		counter
		elements = { 192.0.2.1 counter packets 3 bytes 30, 192.0.2.2 counter packets 4 bytes 40 }
	}
	chain forward {
		type filter hook forward priority filter; policy accept;
		udp dport 1001 counter
		ip saddr @s udp dport 1002 counter counter name \"named\"
		udp dport { 1003, 1004 } jump {
			udp dport 1003 counter
			udp dport 1004 jump {
				udp dport 1004 counter
			}
			counter comment \"1003 and 1004\"
		}
		udp dport 1005 counter jump sub
		udp dport 1006 goto {
			udp dport 1006 counter
		}
		udp dport 1007 counter
	}
	chain sub {
		udp dport 1005 counter
	}
}
table ip u {
	chain forward {
		type filter hook forward priority filter; policy accept;
		udp dport 1008 counter
		udp dport 1009 jump {
			udp dport 1009 counter
		}
	}
}
";

#[test]
fn slots_follow_the_statements_they_count() {
    let rs = parse_ruleset(SRC, "c.nft").unwrap();
    let c = compile(&rs).unwrap();
    let mut counters = vec![CounterValue::default(); c.counter_slots()];
    for dport in 1001..=1009u16 {
        for _ in 0..dport % 100 {
            let f = frame(1, dport);
            for &chain in c.hook_chains(NfProto::Ipv4, Hook::Forward) {
                c.eval_chain(chain, &mut ctx(&mut f.clone()), &mut counters);
            }
        }
    }
    // what each counter statement must show, in listing order: (port, packets)
    let want: &[(u16, u64)] = &[
        (1001, 1),
        (1002, 2),
        (1003, 3),
        (1004, 4),
        (1003, 7), // the binding chain's last rule counts what reaches it: 1003 and 1004 packets
        (1005, 5),
        (1006, 6),
        (1007, 7),
        (1005, 5), // chain sub
        (1008, 8),
        (1009, 9),
    ];
    assert_eq!(c.counter_slots(), want.len());

    let check = |listing: &str| {
        let got: Vec<u64> = listing
            .lines()
            .filter(|l| l.contains("counter packets") && !l.contains("192.0.2."))
            .map(|l| {
                let n = l.split("counter packets ").nth(1).unwrap();
                n.split_whitespace().next().unwrap().parse().unwrap()
            })
            .collect();
        let want: Vec<u64> = want.iter().map(|w| w.1).collect();
        assert_eq!(got, want, "{listing}");
        // untouched: the named counter object and the set elements' counters
        assert!(listing.contains("packets 7 bytes 70"), "{listing}");
        assert!(
            listing.contains("192.0.2.1 counter packets 3 bytes 30"),
            "{listing}"
        );
    };
    let mut next = rs.clone();
    next.set_counter_values(&counters);
    check(&print_ruleset(&next, &Default::default(), None));
    check(&print_ruleset(&rs, &Default::default(), Some(&counters)));
    // the values survive the next generation: its initial counters are the ones carried over
    let c2 = compile(next).unwrap();
    assert_eq!(c2.initial_counters(), counters);
}

#[test]
fn rulesets_counters_visits_slots_in_order() {
    let mut rs = parse_ruleset(SRC, "c.nft").unwrap();
    let n = compile(&rs).unwrap().counter_slots();
    let values: Vec<CounterValue> = (0..n as u64)
        .map(|i| CounterValue {
            packets: i,
            bytes: 100 + i,
        })
        .collect();
    rs.set_counter_values(&values);
    let got: Vec<(u64, u64)> = rs.counters().map(|c| (c.packets, c.bytes)).collect();
    let want: Vec<(u64, u64)> = values.iter().map(|v| (v.packets, v.bytes)).collect();
    assert_eq!(got, want);
    assert_eq!(compile(&rs).unwrap().initial_counters(), values);
}
