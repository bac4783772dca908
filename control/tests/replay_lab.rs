//! `sluice replay` on a capture of the lab's traffic reproduces what the live appliance did: the frames
//! the client and the server sent are captured on their own veths, replayed offline with the lab's
//! topology, and what the replay sends out of each interface must be what the other end received live
//! (ARP aside: the replay resolves neighbours from the captured ARP answers). Needs root and tcpdump.

use std::process::{Child, Command, Stdio};
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

fn tcpdump(ns: &str, iface: &str, dir: &str, file: &std::path::Path) -> Child {
    Command::new("ip")
        .args([
            "netns", "exec", ns, "tcpdump", "-U", "-n", "-i", iface, "-Q", dir, "-w",
        ])
        .arg(file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("tcpdump")
}

fn frames(path: &std::path::Path) -> Vec<Vec<u8>> {
    let f = std::fs::File::open(path).unwrap();
    let mut r = pcap_file::pcap::PcapReader::new(f).unwrap();
    let mut out = Vec::new();
    while let Some(p) = r.next_packet() {
        let d = p.unwrap().data.into_owned();
        // IPv4 only (ARP is resolved differently offline); Ethernet padding trimmed.
        if d.len() >= 34 && d[12..14] == [0x08, 0x00] {
            let total = u16::from_be_bytes([d[16], d[17]]) as usize;
            out.push(d[..(14 + total).min(d.len())].to_vec());
        }
    }
    out
}

fn mac_of(ns: &str, iface: &str) -> String {
    let o = Command::new("ip")
        .args(["-n", ns, "-j", "link", "show", iface])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v[0]["address"].as_str().unwrap().to_string()
}

#[test]
fn replay_of_the_lab_capture_reproduces_the_live_verdicts() {
    if unsafe { libc::geteuid() } != 0 || Command::new("tcpdump").arg("--version").output().is_err()
    {
        eprintln!("replay_of_the_lab_capture_reproduces_the_live_verdicts: skipped, needs root and tcpdump");
        return;
    }
    let lab = Lab(format!("sl-t{}rp", std::process::id()));
    let up = Command::new(SLUICE)
        .args(["lab", "up", "--prefix", &lab.0])
        .output()
        .unwrap();
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    let (cli, fw, srv) = (
        format!("{}-cli", lab.0),
        format!("{}-fw", lab.0),
        format!("{}-srv", lab.0),
    );
    let dir = std::env::temp_dir().join(format!("sluice-replay-lab-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut dumps = vec![
        tcpdump(&cli, "cli0", "out", &dir.join("cli-out.pcap")),
        tcpdump(&cli, "cli0", "in", &dir.join("cli-in.pcap")),
        tcpdump(&srv, "srv0", "out", &dir.join("srv-out.pcap")),
        tcpdump(&srv, "srv0", "in", &dir.join("srv-in.pcap")),
    ];
    std::thread::sleep(Duration::from_millis(1500));
    let internal = |args: &[&str]| {
        Command::new("ip")
            .args(["netns", "exec", &cli, SLUICE, "internal"])
            .args(args)
            .output()
            .unwrap()
    };
    assert!(internal(&["http-get", "198.51.100.2:80", "/"])
        .status
        .success());
    assert!(!internal(&["tcp-connect", "198.51.100.2:8080"])
        .status
        .success());
    let ping = Command::new("ip")
        .args([
            "netns",
            "exec",
            &cli,
            "ping",
            "-c",
            "3",
            "-i",
            "0.2",
            "-W",
            "1",
            "198.51.100.2",
        ])
        .output();
    let pinged = ping.is_ok_and(|o| o.status.success());
    std::thread::sleep(Duration::from_millis(1000));
    for d in &mut dumps {
        unsafe { libc::kill(d.id() as i32, libc::SIGINT) };
        let _ = d.wait();
    }
    let topo = format!(
        "[[interface]]\nname = \"fw-cli\"\nmac = \"{}\"\naddresses = [\"192.0.2.1/24\"]\n\
         [[interface]]\nname = \"fw-srv\"\nmac = \"{}\"\naddresses = [\"198.51.100.1/24\"]\n",
        mac_of(&fw, "fw-cli"),
        mac_of(&fw, "fw-srv")
    );
    std::fs::write(dir.join("topology.toml"), topo).unwrap();
    let out = dir.join("out");
    let o = Command::new(SLUICE)
        .args([
            "replay",
            "--ruleset",
            concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/examples/lab.nft"),
        ])
        .arg("--topology")
        .arg(dir.join("topology.toml"))
        .arg("--in")
        .arg(format!("fw-cli={}", dir.join("cli-out.pcap").display()))
        .arg("--in")
        .arg(format!("fw-srv={}", dir.join("srv-out.pcap").display()))
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let live_to_srv = frames(&dir.join("srv-in.pcap"));
    let live_to_cli = frames(&dir.join("cli-in.pcap"));
    assert!(
        live_to_srv.len() >= 6,
        "the capture saw too little: {}",
        live_to_srv.len()
    );
    if pinged {
        assert!(
            live_to_srv.iter().any(|f| f[23] == 1),
            "no echo request reached srv"
        );
    }
    assert_eq!(
        frames(&out.join("fw-srv.pcap")),
        live_to_srv,
        "frames out of fw-srv differ"
    );
    assert_eq!(
        frames(&out.join("fw-cli.pcap")),
        live_to_cli,
        "frames out of fw-cli differ"
    );
    // The denied connect's SYNs were dropped by the rule in both.
    let trace = std::fs::read_to_string(out.join("trace.jsonl")).unwrap();
    assert!(trace.contains("\"verdict\":\"drop\""), "{trace}");
    let _ = std::fs::remove_dir_all(&dir);
}
