//! `symhash` and unseeded `jhash`: properties the kernel's random seeds leave checkable (seeded `jhash`
//! is compared with the kernel bucket for bucket in control/tests/differential/jhash-buckets.toml).

use rules::{compile, parse_ruleset, Hook, NfProto, PacketCtx};

fn udp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
    let mut f = vec![0u8; 14];
    f[12] = 0x08;
    f.extend_from_slice(&[0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0]);
    f.extend_from_slice(&src);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&[0, 8, 0, 0]);
    f
}

fn marks(rule: &str, frames: &[Vec<u8>]) -> Vec<u32> {
    let src = format!(
        "table ip t {{\n chain c {{\n type filter hook forward priority 0; policy accept;\n {rule}\n }}\n}}\n"
    );
    let rs = compile(parse_ruleset(&src, "t").unwrap()).unwrap();
    let chain = rs.hook_chains(NfProto::Ipv4, Hook::Forward)[0];
    let mut counters = rs.initial_counters();
    frames
        .iter()
        .map(|f| {
            let mut f = f.clone();
            let mut p = PacketCtx::new(&mut f, Hook::Forward, 0);
            rs.eval_chain(chain, &mut p, &mut counters);
            p.mark
        })
        .collect()
}

#[test]
fn symhash_is_the_same_both_ways_and_spreads_flows() {
    let a = [192, 0, 2, 2];
    let b = [198, 51, 100, 2];
    let mut frames = Vec::new();
    for port in 1000..1200u16 {
        frames.push(udp(a, b, port, 53));
        frames.push(udp(b, a, 53, port));
    }
    let m = marks("meta mark set symhash mod 4 offset 10", &frames);
    let mut seen = [0u32; 4];
    for pair in m.chunks(2) {
        assert_eq!(pair[0], pair[1], "both directions of a flow share a bucket");
        assert!((10..14).contains(&pair[0]));
        seen[(pair[0] - 10) as usize] += 1;
    }
    // 200 flows over 4 buckets: each gets some (a uniform hash misses one with p ≈ 4·0.75^200)
    assert!(seen.iter().all(|&n| n > 20), "{seen:?}");
}

#[test]
fn unseeded_jhash_is_stable_within_a_ruleset() {
    let frames: Vec<Vec<u8>> = (1..100u16)
        .map(|p| udp([192, 0, 2, 2], [198, 51, 100, 2], p, 9))
        .collect();
    let twice: Vec<Vec<u8>> = frames.iter().chain(frames.iter()).cloned().collect();
    let m = marks("meta mark set jhash ip saddr . udp sport mod 8", &twice);
    assert_eq!(m[..99], m[99..]);
    assert!(m.iter().all(|&x| x < 8));
    assert!(m.iter().any(|&x| x != m[0]));
    // as a match: the bucket compared like any integer
    let m = marks("jhash udp sport mod 2 seed 0x1 1 meta mark set 7", &frames);
    assert!(m.contains(&7) && m.contains(&0));
}
