//! Evaluation never panics, whatever the frame and offsets: random frames through rulesets that use
//! every kind of load (payload at all bases, extension headers, TCP options, SCTP chunks, raw
//! payload, meta, ct, sets, maps, binding chains).

use rules::*;

const RULESET: &str = r#"
table inet f {
	set s4 { type ipv4_addr . inet_service; flags interval; elements = { 10.0.0.0/8 . 1-1000, 192.0.2.1 . 53 } }
	map m { type mark : verdict; elements = { 0x1 : accept, 0x2 : drop } }
	chain c {
		type filter hook input priority 0; policy accept;
		ip saddr . tcp dport @s4 counter
		ip6 saddr fe80::/10 udp dport 53 counter
		frag frag-off 0 hbh nexthdr 6 counter
		rt seg-left 1 counter
		tcp option maxseg size 1460 counter
		tcp option sack left 1 counter
		tcp option timestamp exists counter
		sctp chunk init num-inbound-streams 2 counter
		@th,16,16 80 counter
		@nh,96,32 0x0a000001 counter
		@ll,0,48 0xffffffffffff counter
		ether saddr 00:11:22:33:44:55 vlan id 10 counter
		ip dscp cs1 ip ecn ce ip frag-off & 0x1fff != 0 counter
		icmp type echo-request icmp id 1 counter
		icmpv6 type echo-request counter
		meta l4proto { tcp, udp } th dport 22 counter
		meta mark set ip saddr map { 10.0.0.1 : 0x1 }
		meta mark vmap @m
		ct state established,related counter
		pkttype broadcast counter
		tcp flags & (syn | ack) == syn jump { tcp dport 22 accept; udp sport 1 return }
		meta length 100-200 counter drop
	}
}
"#;

struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

#[test]
fn random_frames_never_panic() {
    let rs = parse_ruleset(RULESET, "fuzz.nft").unwrap();
    let c = compile(&rs).unwrap();
    let mut counters = c.initial_counters();
    let mut rng = Lcg(0x5eed);
    let mut frame = vec![0u8; 256];
    for i in 0..20_000u32 {
        let len = (rng.next() % 200) as usize;
        for b in frame.iter_mut().take(len) {
            *b = rng.next() as u8;
        }
        // make plausible headers often
        if i % 2 == 0 && len > 40 {
            frame[12] = 0x08;
            frame[13] = 0;
            frame[14] = 0x45;
            frame[23] = [6u8, 17, 1, 132][(rng.next() % 4) as usize];
        } else if i % 3 == 0 && len > 60 {
            frame[12] = 0x86;
            frame[13] = 0xdd;
            frame[14] = 0x60;
            frame[20] = [0u8, 43, 44, 60, 6, 17, 58][(rng.next() % 7) as usize];
        }
        let f = &mut frame[..len];
        let weird = |r: u64| match r % 6 {
            0 => usize::MAX,
            1 => usize::MAX - 3,
            2 => len + 1,
            _ => (r % 80) as usize,
        };
        let nh = if rng.next().is_multiple_of(10) {
            weird(rng.next())
        } else {
            14
        };
        let th = match rng.next() % 8 {
            0 => None,
            1 => Some(weird(rng.next())),
            _ => Some(34 + (rng.next() % 60) as usize),
        };
        let mut p = PacketCtx {
            frame: f,
            nh_off: nh,
            th_off: th,
            nfproto: if rng.next().is_multiple_of(2) {
                NfProto::Ipv4
            } else {
                NfProto::Ipv6
            },
            l4proto: [6u8, 17, 1, 58, 132, 0][(rng.next() % 6) as usize],
            len: len as u32,
            iif: 1,
            iifname: "eth0",
            oif: 2,
            oifname: "eth1",
            mark: (rng.next() % 3) as u32,
            ct_state: 1 << (rng.next() % 7),
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
        };
        for &chain in c.hook_chains(p.nfproto, Hook::Input) {
            let _ = c.eval_chain(chain, &mut p, &mut counters);
        }
    }
}
