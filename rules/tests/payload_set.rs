//! Payload statements (`ip ttl set 5`, `tcp dport set 8080`, `ip6 daddr set …`): the bytes written, the
//! bits kept around sub-byte fields, and checksums that are right afterwards — recomputed from scratch
//! here, not incrementally as the evaluator does — including the kernel's exceptions (a UDP checksum of
//! zero stays zero for address rewrites, raw writes fix nothing).

use rules::{compile, parse_ruleset, CompiledRuleset, Hook, NfProto, PacketCtx, Verdict};

fn sum16(data: &[u8]) -> u32 {
    let mut s = 0u32;
    let mut it = data.chunks_exact(2);
    for w in &mut it {
        s += u16::from_be_bytes([w[0], w[1]]) as u32;
    }
    if let [b] = it.remainder() {
        s += (*b as u32) << 8;
    }
    s
}

fn fold(mut s: u32) -> u16 {
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// The transport checksum over the pseudo-header and `l4`, with the checksum field (at `at`) zeroed.
fn l4_csum(src: &[u8], dst: &[u8], proto: u8, l4: &[u8], at: usize) -> u16 {
    let mut seg = l4.to_vec();
    seg[at..at + 2].fill(0);
    let mut s = sum16(src) + sum16(dst) + proto as u32 + l4.len() as u32;
    s += sum16(&seg);
    fold(s)
}

const IP4_SRC: [u8; 4] = [192, 0, 2, 2];
const IP4_DST: [u8; 4] = [198, 51, 100, 2];

/// An Ethernet + IPv4 frame with `l4` (whose checksum field, at `csum_at`, is filled in unless `None`).
fn v4(proto: u8, tos: u8, l4: &[u8], csum_at: Option<usize>) -> Vec<u8> {
    let mut f = vec![0u8; 14];
    f[12] = 0x08;
    let len = (20 + l4.len()) as u16;
    f.extend_from_slice(&[0x45, tos]);
    f.extend_from_slice(&len.to_be_bytes());
    f.extend_from_slice(&[0x12, 0x34, 0x40, 0, 64, proto, 0, 0]);
    f.extend_from_slice(&IP4_SRC);
    f.extend_from_slice(&IP4_DST);
    let c = fold(sum16(&f[14..34]));
    f[24..26].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(l4);
    if let Some(at) = csum_at {
        let c = l4_csum(&IP4_SRC, &IP4_DST, proto, &f[34..], at);
        f[34 + at..36 + at].copy_from_slice(&c.to_be_bytes());
    }
    f
}

const IP6_SRC: [u8; 16] = [0x20, 1, 0xd, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
const IP6_DST: [u8; 16] = [0x20, 1, 0xd, 0xb8, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

fn v6(proto: u8, l4: &[u8], csum_at: usize) -> Vec<u8> {
    let mut f = vec![0u8; 14];
    f[12] = 0x86;
    f[13] = 0xdd;
    f.extend_from_slice(&[0x60, 0, 0, 0]);
    f.extend_from_slice(&(l4.len() as u16).to_be_bytes());
    f.extend_from_slice(&[proto, 64]);
    f.extend_from_slice(&IP6_SRC);
    f.extend_from_slice(&IP6_DST);
    f.extend_from_slice(l4);
    let c = l4_csum(&IP6_SRC, &IP6_DST, proto, &f[54..], csum_at);
    f[54 + csum_at..56 + csum_at].copy_from_slice(&c.to_be_bytes());
    f
}

fn tcp() -> Vec<u8> {
    let mut t = vec![0u8; 20];
    t[0..2].copy_from_slice(&40000u16.to_be_bytes());
    t[2..4].copy_from_slice(&80u16.to_be_bytes());
    t[12] = 0x50;
    t[13] = 0x12;
    t.extend_from_slice(b"hello");
    t
}

fn udp() -> Vec<u8> {
    let mut u = vec![0u8; 8];
    u[0..2].copy_from_slice(&40000u16.to_be_bytes());
    u[2..4].copy_from_slice(&53u16.to_be_bytes());
    u[4..6].copy_from_slice(&11u16.to_be_bytes());
    u.extend_from_slice(b"abc");
    u
}

fn ruleset(family: &str, rule: &str) -> CompiledRuleset {
    let src = format!(
        "table {family} t {{\n chain c {{\n type filter hook forward priority 0; policy accept;\n {rule}\n }}\n}}\n"
    );
    compile(parse_ruleset(&src, "t").unwrap()).unwrap()
}

/// Runs `rule` (in a forward chain of `family`) over `frame`; the frame afterwards and the verdict.
fn run(family: &str, rule: &str, frame: &[u8]) -> (Vec<u8>, Verdict, u32) {
    let rs = ruleset(family, rule);
    let mut f = frame.to_vec();
    let mut p = PacketCtx::new(&mut f, Hook::Forward, 0);
    let fam = p.nfproto;
    let mut counters = rs.initial_counters();
    let mut v = Verdict::Accept;
    for &c in rs.hook_chains(fam, Hook::Forward) {
        v = rs.eval_chain(c, &mut p, &mut counters);
    }
    let writes = p.payload_writes;
    (f, v, writes)
}

fn ip4_ok(f: &[u8]) -> bool {
    fold(sum16(&f[14..34])) == 0
}

fn tcp4_ok(f: &[u8]) -> bool {
    l4_csum(&f[26..30], &f[30..34], 6, &f[34..], 16) == u16::from_be_bytes([f[50], f[51]])
}

#[test]
fn ttl_and_dscp_keep_the_header_checksum_right() {
    let f = v4(6, 0x02, &tcp(), Some(16));
    let (g, _, n) = run("ip", "ip ttl set 5", &f);
    assert_eq!(n, 1);
    assert_eq!(g[22], 5);
    assert_eq!(g[23], 6, "the protocol byte beside the TTL is kept");
    assert!(ip4_ok(&g));
    assert!(tcp4_ok(&g), "the TTL is not in the pseudo-header");
    // dscp: the top six bits of the TOS byte; the ECN bits (0x02) stay
    let (g, _, _) = run("ip", "ip dscp set cs1", &f);
    assert_eq!(g[15], 0x20 | 0x02);
    assert!(ip4_ok(&g));
    let (g, _, _) = run("ip", "ip ecn set ce", &f);
    assert_eq!(g[15], 0x03);
    assert!(ip4_ok(&g));
}

#[test]
fn address_rewrites_fix_the_header_and_transport_checksums() {
    let f = v4(6, 0, &tcp(), Some(16));
    let (g, _, _) = run("ip", "ip daddr set 203.0.113.9", &f);
    assert_eq!(&g[30..34], &[203, 0, 113, 9]);
    assert!(ip4_ok(&g));
    assert!(tcp4_ok(&g));
    let (g, _, _) = run("inet", "ip saddr set 10.1.2.3 tcp sport set 1234", &f);
    assert_eq!(&g[26..30], &[10, 1, 2, 3]);
    assert_eq!(&g[34..36], &1234u16.to_be_bytes());
    assert!(ip4_ok(&g));
    assert!(tcp4_ok(&g));
    // UDP
    let f = v4(17, 0, &udp(), Some(6));
    let (g, _, _) = run("ip", "ip daddr set 203.0.113.9 udp dport set 5353", &f);
    assert_eq!(&g[36..38], &5353u16.to_be_bytes());
    assert_eq!(
        l4_csum(&g[26..30], &g[30..34], 17, &g[34..], 6),
        u16::from_be_bytes([g[40], g[41]])
    );
    // a UDP datagram without a checksum keeps none when its address changes (nft_payload_l4csum_offset)
    let f = v4(17, 0, &udp(), None);
    let (g, _, _) = run("ip", "ip daddr set 203.0.113.9", &f);
    assert_eq!(&g[40..42], &[0, 0]);
    assert!(ip4_ok(&g));
    // ICMP has no pseudo-header: only its own checksum, for its own fields
    let mut icmp = vec![8u8, 0, 0, 0, 0, 7, 0, 1];
    icmp.extend_from_slice(b"ping");
    let c = fold(sum16(&icmp));
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let f = v4(1, 0, &icmp, None);
    let (g, _, _) = run("ip", "ip daddr set 203.0.113.9 icmp id set 99", &f);
    assert_eq!(&g[38..40], &99u16.to_be_bytes());
    assert!(ip4_ok(&g));
    assert_eq!(fold(sum16(&g[34..])), 0);
}

#[test]
fn ipv6_rewrites_fix_the_transport_checksum() {
    let f = v6(6, &tcp(), 16);
    let (g, _, _) = run("ip6", "ip6 daddr set 2001:db8:9::1 tcp dport set 8080", &f);
    assert_eq!(
        &g[38..54],
        &"2001:db8:9::1"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets()
    );
    assert_eq!(&g[56..58], &8080u16.to_be_bytes());
    assert_eq!(
        l4_csum(&g[22..38], &g[38..54], 6, &g[54..], 16),
        u16::from_be_bytes([g[70], g[71]])
    );
    // the flow label: 20 bits across three bytes, the traffic class beside it kept
    let mut f = v6(17, &udp(), 6);
    f[15] = 0xa0; // the traffic class's low nibble
    let (g, _, _) = run("ip6", "ip6 flowlabel set 0x12345", &f);
    assert_eq!(&g[15..18], &[0xa0 | 0x01, 0x23, 0x45]);
    assert_eq!(g[14], 0x60);
    let (g, _, _) = run("ip6", "ip6 hoplimit set 1", &f);
    assert_eq!(g[21], 1);
}

#[test]
fn sctp_ports_recompute_the_crc32c() {
    let mut s = vec![0u8; 12];
    s[0..2].copy_from_slice(&5000u16.to_be_bytes());
    s[2..4].copy_from_slice(&5001u16.to_be_bytes());
    s.extend_from_slice(&[
        1, 0, 0, 20, 0, 0, 0, 1, 0, 0, 0xff, 0xff, 0, 1, 0, 1, 0, 0, 0, 1,
    ]);
    let f = v4(132, 0, &s, None);
    let (g, _, _) = run("ip", "sctp dport set 9", &f);
    let mut pkt = g[34..].to_vec();
    assert_eq!(&pkt[2..4], &9u16.to_be_bytes());
    let got = u32::from_le_bytes([pkt[8], pkt[9], pkt[10], pkt[11]]);
    pkt[8..12].fill(0);
    assert_eq!(got, crc32c_reference(&pkt));
}

/// CRC32c bit by bit (RFC 3309), independent of the crate the evaluator uses.
fn crc32c_reference(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82f6_3b78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn raw_writes_fix_no_checksum_and_missing_headers_end_the_rule() {
    let f = v4(6, 0, &tcp(), Some(16));
    // `@nh,64,8`: the TTL byte, raw; nft asks for no checksum fix-up, so the header checksum is stale
    let (g, _, _) = run("ip", "@nh,64,8 set 9", &f);
    assert_eq!(g[22], 9);
    assert!(!ip4_ok(&g));
    // a non-first fragment has no transport header: the write fails and the rule ends before `drop`
    let mut frag = f.clone();
    frag[20..22].copy_from_slice(&0x0010u16.to_be_bytes());
    let c = {
        frag[24..26].fill(0);
        fold(sum16(&frag[14..34]))
    };
    frag[24..26].copy_from_slice(&c.to_be_bytes());
    let (g, v, n) = run("ip", "tcp dport set 1 drop", &frag);
    assert_eq!((v, n), (Verdict::Accept, 0));
    assert_eq!(g, frag);
    // an IPv6 packet in an inet chain: `ip ttl set` does not apply (its nfproto dependency)
    let f6 = v6(6, &tcp(), 16);
    let (g, _, n) = run("inet", "ip ttl set 1", &f6);
    assert_eq!((g, n), (f6, 0));
}

#[test]
fn later_rules_match_what_earlier_rules_wrote() {
    let f = v4(6, 0, &tcp(), Some(16));
    let rs = ruleset(
        "ip",
        "tcp dport set 8080\n tcp dport 80 drop\n tcp dport 8080 meta mark set 7",
    );
    let mut g = f.clone();
    let mut p = PacketCtx::new(&mut g, Hook::Forward, 0);
    let mut counters = rs.initial_counters();
    let chain = rs.hook_chains(NfProto::Ipv4, Hook::Forward)[0];
    assert_eq!(rs.eval_chain(chain, &mut p, &mut counters), Verdict::Accept);
    assert_eq!(p.mark, 7);
    // the value may come from the packet itself or a map
    let (g, _, _) = run("ip", "ip daddr set ip saddr", &f);
    assert_eq!(&g[30..34], &IP4_SRC);
    assert!(ip4_ok(&g) && tcp4_ok(&g));
    let (g, _, _) = run(
        "ip",
        "tcp dport set tcp dport map { 80 : 8080, 443 : 8443 }",
        &f,
    );
    assert_eq!(&g[36..38], &8080u16.to_be_bytes());
    assert!(tcp4_ok(&g));
}
