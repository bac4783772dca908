//! `meta nftrace set 1` on the live daemon: `sluice nft monitor trace` prints the packet, the rules it
//! matched and the verdicts, in `nft monitor trace`'s format. Needs root (the lab).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const SLUICE: &str = env!("CARGO_BIN_EXE_sluice");

struct Lab(String);
impl Drop for Lab {
    fn drop(&mut self) {
        let _ = Command::new(SLUICE)
            .args(["lab", "down", "--prefix", &self.0])
            .output();
    }
}

#[test]
fn monitor_trace_prints_what_nft_monitor_trace_prints() {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("monitor_trace_prints_what_nft_monitor_trace_prints: skipped, needs root");
        return;
    }
    let lab = Lab(format!("sl-t{}tr", std::process::id()));
    let dir = std::env::temp_dir().join(format!("sluice-trace-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ruleset = dir.join("trace.nft");
    std::fs::write(
        &ruleset,
        "flush ruleset\n\
         table inet filter {\n\
         \tchain forward {\n\
         \t\ttype filter hook forward priority filter; policy drop;\n\
         \t\tct state established,related accept\n\
         \t\ttcp dport 80 meta nftrace set 1\n\
         \t\ttcp dport 80 accept\n\
         \t\ticmp type echo-request accept\n\
         \t}\n\
         }\n",
    )
    .unwrap();
    let up = Command::new(SLUICE)
        .args(["lab", "up", "--prefix", &lab.0, "--ruleset"])
        .arg(&ruleset)
        .output()
        .unwrap();
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    let sock = format!("/run/sluice/{}/control.sock", lab.0);
    assert!(Path::new(&sock).exists());
    let monitor = Command::new(SLUICE)
        .args(["nft", "--control", &sock, "monitor", "trace"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let cli = format!("{}-cli", lab.0);
    let get = Command::new("ip")
        .args([
            "netns",
            "exec",
            &cli,
            SLUICE,
            "internal",
            "http-get",
            "198.51.100.2:80",
            "/",
        ])
        .output()
        .unwrap();
    assert!(
        get.status.success(),
        "{}",
        String::from_utf8_lossy(&get.stdout)
    );
    // A ping is not traced.
    let _ = Command::new("ip")
        .args([
            "netns",
            "exec",
            &cli,
            SLUICE,
            "internal",
            "ping",
            "198.51.100.2",
        ])
        .output();
    std::thread::sleep(Duration::from_millis(600));
    unsafe { libc::kill(monitor.id() as i32, libc::SIGINT) };
    let out = monitor.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert!(!lines.is_empty(), "no trace lines");
    assert!(lines.iter().all(|l| l.starts_with("trace id ")), "{text}");
    // The SYN: packet line, the rule that set nftrace (continue), the accept.
    let packet = lines
        .iter()
        .find(|l| l.contains(" inet filter forward packet: iif ") && l.contains("tcp flags == syn"))
        .unwrap_or_else(|| panic!("no packet line for the SYN:\n{text}"));
    assert!(
        packet.contains("ip saddr 192.0.2.2 ip daddr 198.51.100.2"),
        "{packet}"
    );
    let id = &packet["trace id ".len().."trace id ".len() + 8];
    let of_syn: Vec<&&str> = lines.iter().filter(|l| l.contains(id)).collect();
    assert!(
        of_syn
            .iter()
            .any(|l| l.ends_with("rule tcp dport 80 meta nftrace set 1 (verdict continue)")),
        "{text}"
    );
    assert!(
        of_syn
            .iter()
            .any(|l| l.ends_with("rule tcp dport 80 accept (verdict accept)")),
        "{text}"
    );
    assert!(
        !text.contains("icmp type echo-request"),
        "untraced packets showed up:\n{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
