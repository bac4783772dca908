//! Connection tracking and NAT on one core, in memory.
//!
//! - `ct_new_flows`: lookup miss + pending entry + NAT binding (masquerade, port preserved or searched) +
//!   confirm, per new UDP flow, on a table that keeps growing up to its maximum (then early drop).
//! - `ct_established`: the per-packet work of an established, masqueraded TCP flow: tuple, lookup,
//!   TCP state machine and window check, accounting, and the NAT rewrite with incremental checksums —
//!   over 64k flows, so lookups miss the cache as they would on a busy gateway.
//! - `ct_bytes_per_entry` (printed, not timed): memory held per entry at 1M and 10M entries.
//!
//! `cargo bench -p bench --bench conntrack`

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use dataplane::conntrack::{Confirm, Conntrack, CtPkt, CtResult, Dir, Sysctls};
use dataplane::nat::{self, Manip, Nat, Range};
use dataplane::stats::WorkerStats;
use dataplane::testkit::{ipv4_frame, tcp_header, udp_datagram};
use dataplane::wire::{parse_ipv4, ETH_HLEN};
use std::net::Ipv4Addr;

const NAT_ADDR: [u8; 4] = [203, 0, 113, 1];

fn masq() -> Range<Ipv4Addr> {
    let a = Ipv4Addr::from(NAT_ADDR);
    Range {
        addr: Some((a, a)),
        ports: None,
        flags: 0,
    }
}

/// Client `i` of 2^24: 10.x.y.z with a source port.
fn client(i: u32) -> ([u8; 4], u16) {
    let a = 0x0a00_0000 | (i & 0x00ff_ffff);
    (a.to_be_bytes(), 1024 + (i % 60000) as u16)
}

fn new_flows(c: &mut Criterion) {
    let mut g = c.benchmark_group("ct_new_flows");
    g.throughput(Throughput::Elements(1));
    let server = [198, 51, 100, 2];
    // Frames prepared up front: the bench measures the tracker, not frame building.
    let frames: Vec<Vec<u8>> = (0..1u32 << 16)
        .map(|i| {
            let (src, sport) = client(i);
            ipv4_frame(src, server, 17, &udp_datagram(sport, 53, 16), 64)
        })
        .collect();
    let range = masq();
    g.bench_function("udp_masquerade_confirm", |b| {
        let mut ct: Conntrack<Ipv4Addr> = Conntrack::new(Sysctls::default(), 1 << 20, 7);
        let mut natter = Nat::new(3);
        let mut st = WorkerStats::default();
        let mut i = 0usize;
        let mut now = 1_000_000_000u64;
        let mut f = frames[0].clone();
        b.iter(|| {
            // A different flow each time: vary the destination port on top of the frame set.
            f.copy_from_slice(&frames[i & 0xffff]);
            i += 1;
            let dport = (i >> 16) as u16;
            f[ETH_HLEN + 22..ETH_HLEN + 24].copy_from_slice(&dport.to_be_bytes());
            let ip = parse_ipv4(&f, ETH_HLEN).unwrap();
            now += 100;
            let r = ct.track(&CtPkt::from_ipv4(&ip, &f), 0, now, &mut st);
            if r == CtResult::New {
                let _ = natter.setup(&mut ct, Some(&range), Manip::Src, (now / 1_000_000) as u32);
                black_box(ct.confirm(r, now, &mut st));
            }
        });
    });
    g.finish();
}

fn established(c: &mut Criterion) {
    let mut g = c.benchmark_group("ct_established");
    g.throughput(Throughput::Elements(1));
    let server = [198, 51, 100, 2];
    let n = 1usize
        << std::env::var("CT_FLOWS_LOG2")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(15);
    let mut ct: Conntrack<Ipv4Addr> = Conntrack::new(Sysctls::default(), 1 << 20, 7);
    let mut natter = Nat::new(3);
    let mut st = WorkerStats::default();
    let now = 1_000_000_000u64;
    let range = masq();
    let mut data = Vec::with_capacity(n);
    for i in 0..n as u32 {
        let (src, sport) = client(i);
        let mut seq = 1000u32;
        let syn = ipv4_frame(src, server, 6, &tcp_header(sport, 80, 0x02), 64);
        let ip = parse_ipv4(&syn, ETH_HLEN).unwrap();
        let r = ct.track(&CtPkt::from_ipv4(&ip, &syn), 0, now, &mut st);
        natter
            .setup(&mut ct, Some(&range), Manip::Src, (now / 1_000_000) as u32)
            .unwrap();
        let Confirm::Inserted(idx) = ct.confirm(r, now, &mut st) else {
            panic!("insert");
        };
        let e = ct.get(idx).unwrap().clone();
        // SYN/ACK (as the server sends it, to the NAT address) and the client's ACK.
        let mut sa = tcp_header(80, e.reply().dport, 0x12);
        sa[4..8].copy_from_slice(&5000u32.to_be_bytes());
        sa[8..12].copy_from_slice(&(seq + 1).to_be_bytes());
        sa[14..16].copy_from_slice(&65535u16.to_be_bytes());
        let synack = ipv4_frame(server, NAT_ADDR, 6, &sa, 64);
        let ip = parse_ipv4(&synack, ETH_HLEN).unwrap();
        ct.track(&CtPkt::from_ipv4(&ip, &synack), 0, now, &mut st);
        seq += 1;
        let mut a = tcp_header(sport, 80, 0x10);
        a[4..8].copy_from_slice(&seq.to_be_bytes());
        a[8..12].copy_from_slice(&5001u32.to_be_bytes());
        a[14..16].copy_from_slice(&65535u16.to_be_bytes());
        let ack = ipv4_frame(src, server, 6, &a, 64);
        let ip = parse_ipv4(&ack, ETH_HLEN).unwrap();
        ct.track(&CtPkt::from_ipv4(&ip, &ack), 0, now, &mut st);
        data.push(ack);
    }
    assert_eq!(ct.len(), n);
    g.bench_function("tcp_masqueraded_ack_track_and_rewrite", |b| {
        let mut i = 0usize;
        let mut frame = vec![0u8; 64];
        b.iter(|| {
            let src = &data[i & (n - 1)];
            i = i.wrapping_add(40503); // stride through the flows
            frame[..src.len()].copy_from_slice(src);
            let f = &mut frame[..src.len()];
            let ip = parse_ipv4(f, ETH_HLEN).unwrap();
            let r = ct.track(&CtPkt::from_ipv4(&ip, f), 0, now, &mut st);
            if let CtResult::Existing { idx, dir, .. } = r {
                let e = ct.get(idx).unwrap();
                nat::apply_ipv4(&mut f[ETH_HLEN..], e, dir, Manip::Src);
                debug_assert_eq!(dir, Dir::Original);
            }
            black_box(&f[ETH_HLEN + 12..ETH_HLEN + 16]);
        });
    });
    // The same work in batches of 32 as a worker sees them: the index buckets of the whole batch are
    // prefetched, then their entries, then each packet is tracked and rewritten.
    g.bench_function("tcp_masqueraded_ack_track_and_rewrite_batch32", |b| {
        let mut i = 0usize;
        let mut frames = vec![[0u8; 64]; 32];
        let mut lens = [0usize; 32];
        b.iter_custom(|iters| {
            let start = std::time::Instant::now();
            let mut done = 0u64;
            while done < iters {
                let k = (iters - done).min(32) as usize;
                for j in 0..k {
                    let src = &data[i & (n - 1)];
                    i = i.wrapping_add(40503);
                    frames[j][..src.len()].copy_from_slice(src);
                    lens[j] = src.len();
                }
                for stage in 0..2 {
                    for j in 0..k {
                        let f = &frames[j][..lens[j]];
                        let ip = parse_ipv4(f, ETH_HLEN).unwrap();
                        ct.prefetch(&CtPkt::from_ipv4(&ip, f), 0, stage);
                    }
                }
                for j in 0..k {
                    let f = &mut frames[j][..lens[j]];
                    let ip = parse_ipv4(f, ETH_HLEN).unwrap();
                    let r = ct.track(&CtPkt::from_ipv4(&ip, f), 0, now, &mut st);
                    if let CtResult::Existing { idx, dir, .. } = r {
                        let e = ct.get(idx).unwrap();
                        nat::apply_ipv4(&mut f[ETH_HLEN..], e, dir, Manip::Src);
                    }
                    black_box(&f[ETH_HLEN + 12..ETH_HLEN + 16]);
                }
                done += k as u64;
            }
            start.elapsed()
        });
    });
    g.finish();
}

fn bytes_per_entry(_c: &mut Criterion) {
    for n in [1u32 << 20, 10 << 20] {
        let mut ct: Conntrack<Ipv4Addr> = Conntrack::new(Sysctls::default(), n, 7);
        let mut st = WorkerStats::default();
        let server = [198, 51, 100, 2];
        let mut f = ipv4_frame([10, 0, 0, 1], server, 17, &udp_datagram(1, 53, 0), 64);
        for i in 0..n {
            // Distinct flows by ports (the IP header and its checksum stay as built).
            f[ETH_HLEN + 20..ETH_HLEN + 22].copy_from_slice(&((i & 0xffff) as u16).to_be_bytes());
            f[ETH_HLEN + 22..ETH_HLEN + 24].copy_from_slice(&((i >> 16) as u16 + 1).to_be_bytes());
            let ip = parse_ipv4(&f, ETH_HLEN).unwrap();
            let r = ct.track(&CtPkt::from_ipv4(&ip, &f), 0, 1_000_000_000, &mut st);
            ct.confirm(r, 1_000_000_000, &mut st);
        }
        let info = ct.info();
        println!(
            "ct_bytes_per_entry/{n}: {} entries, {:.1} MB, {:.1} bytes per entry (entry {} B + index + wheel)",
            info.entries,
            info.bytes as f64 / 1e6,
            info.bytes as f64 / info.entries as f64,
            std::mem::size_of::<Option<dataplane::conntrack::Entry<Ipv4Addr>>>()
        );
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(3));
    targets = new_flows, established, bytes_per_entry
}
criterion_main!(benches);
