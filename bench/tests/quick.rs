//! `sluice-bench --quick` end to end: the rig comes up, traffic of every kind flows through the kernel and
//! through sluice, the report, CSV files and plots are written, and nothing is left behind.
//!
//! Needs root, the tools of the rig (iproute2, nftables, netsniff-ng, iperf3, wrk) and the `sluice` binary in
//! the same target directory (`cargo test --workspace` builds it for control's tests; otherwise
//! `cargo build -p control` first). Skips with a message when one is missing. No speed is asserted.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const TOOLS: &[(&str, &str)] = &[
    ("ip", "iproute2"),
    ("ss", "iproute2"),
    ("nft", "nftables"),
    ("trafgen", "netsniff-ng"),
    ("iperf3", "iperf3"),
    ("wrk", "wrk"),
    ("taskset", "util-linux"),
];

fn which(prog: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(prog).is_file()))
        .unwrap_or(false)
}

fn sluice_binary(bench: &Path) -> Option<PathBuf> {
    let p = bench.parent()?.join("sluice");
    p.is_file().then_some(p)
}

fn field<'a>(header: &[&str], row: &'a [&'a str], name: &str) -> &'a str {
    let i = header
        .iter()
        .position(|h| *h == name)
        .unwrap_or_else(|| panic!("no column {name}"));
    row[i]
}

#[test]
fn quick_run_brings_the_rig_up_and_measures_both_paths() {
    if !bench::rig::is_root() {
        eprintln!("skipped: sluice-bench needs root (network namespaces, AF_XDP)");
        return;
    }
    let missing: Vec<String> = TOOLS
        .iter()
        .filter(|(t, _)| !which(t))
        .map(|(t, p)| format!("{t} (Debian package {p})"))
        .collect();
    if !missing.is_empty() {
        eprintln!("skipped: missing {}", missing.join(", "));
        return;
    }
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_sluice-bench"));
    let Some(sluice) = sluice_binary(&exe) else {
        eprintln!(
            "skipped: no sluice binary next to {} (build it: cargo build -p control)",
            exe.display()
        );
        return;
    };
    let out = std::env::temp_dir().join(format!("sluice-bench-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);

    let t = Instant::now();
    let mut child = Command::new(&exe)
        .args(["--quick", "--out"])
        .arg(&out)
        .arg("--sluice")
        .arg(&sluice)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start sluice-bench");
    let pid = child.id();
    // Generous: the quick run takes ~20 s on a quiet 2-core machine.
    let deadline = t + Duration::from_secs(150);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            // SIGINT: the bench removes its rig on the way out.
            unsafe { libc::kill(pid as i32, libc::SIGINT) };
            std::thread::sleep(Duration::from_secs(10));
            let _ = child.kill();
            panic!("sluice-bench --quick did not finish in 150 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("{stderr}");
    assert!(status.success(), "sluice-bench failed: {status}\n{stderr}");
    eprintln!("quick run took {:?}", t.elapsed());

    // Nothing left behind.
    let prefix = format!("sluice-bench-{pid}-");
    let left: Vec<String> = std::fs::read_dir("/run/netns")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&prefix))
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
    assert!(!Path::new("/run/sluice-bench")
        .join(&prefix[..prefix.len() - 1])
        .exists());

    // The report: every scenario × traffic, both paths measured, traffic flowed.
    assert!(stdout.contains("sluice/kernel"), "no table in:\n{stdout}");
    let summary = std::fs::read_to_string(out.join("summary.csv")).expect("summary.csv");
    let mut lines = summary.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    for scenario in ["none", "lab"] {
        for traffic in ["udp64", "tcp", "conn"] {
            let row = rows
                .iter()
                .find(|r| r[0] == scenario && r[1] == traffic)
                .unwrap_or_else(|| panic!("no row {scenario}/{traffic} in\n{summary}"));
            for side in ["kernel", "sluice"] {
                let n = field(&header, row, &format!("{side}_n"));
                let v: f64 = field(&header, row, &format!("{side}_median"))
                    .parse()
                    .unwrap_or(0.0);
                assert_eq!(
                    n, "1",
                    "{scenario}/{traffic}/{side} not measured:\n{summary}"
                );
                assert!(
                    v > 0.0,
                    "{scenario}/{traffic}: nothing went through {side}:\n{summary}"
                );
            }
            assert!(!field(&header, row, "ratio").is_empty());
        }
    }
    let runs = std::fs::read_to_string(out.join("runs.csv")).expect("runs.csv");
    assert_eq!(runs.lines().count(), 1 + 2 * 3 * 2, "{runs}");
    assert!(std::fs::read_to_string(out.join("results.md"))
        .unwrap()
        .contains("| none |"));
    // The short swap test: 3 swaps of 1,000 rules on each path under UDP and TCP traffic, every swap timed,
    // every TCP stream alive at the end (a swap must not break connections; loss and latency are reported in
    // swap.md, not asserted).
    let swaps = std::fs::read_to_string(out.join("swap.csv")).expect("swap.csv");
    let mut lines = swaps.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    for side in ["kernel", "sluice"] {
        let mine: Vec<&Vec<&str>> = rows.iter().filter(|r| r[0] == side).collect();
        assert_eq!(mine.len(), 3, "{side}: not 3 swaps timed:\n{swaps}");
        for r in mine {
            let ms: f64 = field(&header, r, "latency_ms").parse().unwrap();
            assert!(ms > 0.0, "{swaps}");
            // sluice's rows carry the daemon's own account of the apply
            let daemon = field(&header, r, "daemon_total_ms");
            assert_eq!(daemon.is_empty(), side == "kernel", "{swaps}");
        }
    }
    let swap_md = std::fs::read_to_string(out.join("swap.md")).expect("swap.md");
    for side in ["kernel", "sluice"] {
        let row = swap_md
            .lines()
            .find(|l| l.starts_with(&format!("| {side} | 1,000 | 3 / 3 |")))
            .unwrap_or_else(|| panic!("no complete swap row for {side} in\n{swap_md}"));
        assert!(
            row.contains("| all 2 (over 3 swaps) |"),
            "TCP through {side} did not survive the swaps:\n{swap_md}"
        );
    }
    if !stderr.contains("plots skipped") {
        for f in ["udp64.png", "tcp.png", "conn.png"] {
            let bytes = std::fs::read(out.join(f)).expect(f);
            assert_eq!(&bytes[1..4], b"PNG", "{f} is not a PNG");
        }
    }
    let _ = std::fs::remove_dir_all(&out);
}
