//! Any frame, on any port, at any time, through the whole pipeline: never a panic.
//!
//! `cargo fuzz run pipeline` from dataplane/ (needs cargo-fuzz and a nightly toolchain). Input layout:
//! byte 0 picks the port and whether timers run first; the rest is the frame. A ruleset with reject,
//! ICMP errors, conntrack, NAT (dnat, redirect, masquerade, a two-port snat range), limit, quota, sets, jumps
//! and an OUTPUT chain makes every path reachable.

#![no_main]

use dataplane::testkit::lab_fib;
use dataplane::{Pipeline, PipelineConfig, PortRole};
use libfuzzer_sys::fuzz_target;
use std::sync::{Arc, OnceLock};

const RULESET: &str = r#"
table inet f {
	set ports { type inet_service; elements = { 22, 53, 80 } }
	chain pre { type filter hook prerouting priority raw; policy accept; ip ttl 3 drop; ip6 hoplimit 3 drop; udp dport 7 notrack; fib saddr . iif oif missing drop; }
	chain forward {
		type filter hook forward priority filter; policy accept;
		ct state invalid counter
		tcp dport 22 reject with tcp reset
		udp dport 53 reject
		tcp dport 23 reject with icmpx admin-prohibited
		meta l4proto icmp jump icmpc
		th dport @ports counter accept
	}
	chain icmpc { icmp type echo-request meta mark set 1 return; }
	chain out { type filter hook output priority filter; policy accept; ip protocol icmp counter; }
	chain lim { type filter hook forward priority 10; policy accept; udp dport 9 limit rate 10/second accept; udp dport 8 quota over 1000 bytes drop; }
}
table ip nat {
	chain pre { type nat hook prerouting priority dstnat; policy accept; tcp dport 8080 dnat to 198.51.100.2:80; udp dport 5353 redirect to :53; }
	chain post { type nat hook postrouting priority srcnat; policy accept; oifname "fw-srv" masquerade random; udp sport 1000-2000 snat to 198.51.100.1:3000-3001; }
}
"#;

fn ruleset() -> &'static Arc<rules::CompiledRuleset> {
    static RS: OnceLock<Arc<rules::CompiledRuleset>> = OnceLock::new();
    RS.get_or_init(|| Arc::new(rules::compile(&rules::parse_ruleset(RULESET, "f").unwrap()).unwrap()))
}

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, frame)) = data.split_first() else {
        return;
    };
    let rs = ruleset();
    let roles = vec![PortRole { kernel_shares: ctl & 4 != 0 }; 2];
    // a small table: each input builds its own pipeline (and full-table paths come sooner)
    let mut config = PipelineConfig::default();
    config.conntrack.max = 64;
    let mut p = Pipeline::new(lab_fib(), roles, &config);
    p.use_generation(rs);
    let port = (ctl & 1) as usize;
    let mut slot = frame.to_vec();
    slot.resize(frame.len().max(2048), 0);
    let _ = p.process(&mut slot, frame.len(), port, ctl & 8 != 0, rs, 1_000_000_000);
    if ctl & 2 != 0 {
        for t in 1..5u64 {
            p.on_timer(1_000_000_000 + t * 1_000_000_000, rs);
        }
    }
    let mut slot = frame.to_vec();
    slot.resize(frame.len().max(2048), 0);
    let _ = p.process(&mut slot, frame.len(), port ^ 1, false, rs, 6_000_000_000);
    for (out, f) in p.take_emitted() {
        assert!(out < 2 && f.len() >= 14);
    }
});
