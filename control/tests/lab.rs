//! End to end: the lab on real namespaces, veths and AF_XDP, with kernel TCP on both ends.
//! Needs root (CI is root); elsewhere each test says why it skips.

use std::path::Path;
use std::process::{Command, Output};

const SLUICE: &str = env!("CARGO_BIN_EXE_sluice");

fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

fn skip_unless_root(test: &str) -> bool {
    if !is_root() {
        eprintln!("{test}: skipped, needs root");
        return true;
    }
    false
}

/// A lab prefix unique to this process and test, removed again when dropped (also on panic).
struct LabGuard {
    prefix: String,
}

impl LabGuard {
    fn new(tag: &str) -> LabGuard {
        LabGuard {
            prefix: format!("sl-t{}{tag}", std::process::id()),
        }
    }
    fn ns(&self, role: &str) -> String {
        format!("{}-{role}", self.prefix)
    }
    fn sluice(&self, args: &[&str]) -> Output {
        let mut c = Command::new(SLUICE);
        c.args(args).args(["--prefix", &self.prefix]);
        c.output().expect("run sluice")
    }
    fn in_ns(&self, role: &str, argv: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.ns(role)])
            .args(argv)
            .output()
            .expect("ip netns exec")
    }
    /// Runs `sluice internal ARGS` in namespace `role` on a thread.
    fn in_ns_background(&self, role: &str, args: &[&str]) -> std::thread::JoinHandle<Output> {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns(role), SLUICE, "internal"])
            .args(args);
        std::thread::spawn(move || c.output().expect("ip netns exec"))
    }
    fn leftovers(&self) -> Vec<String> {
        ["cli", "fw", "srv"]
            .iter()
            .map(|r| self.ns(r))
            .filter(|n| Path::new("/run/netns").join(n).exists())
            .collect()
    }
}

impl Drop for LabGuard {
    fn drop(&mut self) {
        let _ = Command::new(SLUICE)
            .args(["lab", "down", "--prefix", &self.prefix])
            .output();
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn counter(report: &str, name: &str) -> u64 {
    let line = report
        .lines()
        .find(|l| l.starts_with("sluice counters:"))
        .expect("counters line");
    line.split([':', ','])
        .filter_map(|kv| kv.trim().split_once(' '))
        .find(|(k, _)| *k == name)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {line}"))
}

/// `sluice ctl stats` of the daemon behind `sock`.
fn daemon_stats(sock: &str) -> String {
    let out = Command::new(SLUICE)
        .args(["ctl", "--control", sock, "stats"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// One counter of a `sluice ctl stats` answer.
fn stat(stats: &str, name: &str) -> u64 {
    stats
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {stats}"))
}

#[test]
fn lab_probes_pass_through_sluice_and_clean_up() {
    if skip_unless_root("lab_probes_pass_through_sluice_and_clean_up") {
        return;
    }
    let lab = LabGuard::new("r");
    let out = lab.sluice(&["lab"]);
    let report = text(&out);
    assert!(out.status.success(), "lab failed:\n{report}");
    assert!(report.contains("lab: all probes as expected"), "{report}");
    assert!(
        report.contains("-fw: 0"),
        "ip_forward must stay 0:\n{report}"
    );
    let get = report
        .lines()
        .find(|l| l.starts_with("HTTP GET"))
        .expect("HTTP probe line");
    assert!(get.contains("200 OK"), "{get}");
    let denied = report
        .lines()
        .find(|l| l.starts_with("TCP connect"))
        .expect("denied probe line");
    assert!(denied.contains("timed out"), "{denied}");
    // The HTTP exchange and pings went through sluice, not the kernel.
    assert!(counter(&report, "forwarded") >= 10, "{report}");
    assert!(counter(&report, "dropped_by_rule") >= 1, "{report}");
    // The ping to fw itself crossed sluice's INPUT to fw's kernel, and its reply sluice's OUTPUT.
    assert!(counter(&report, "local_to_host") >= 3, "{report}");
    assert!(counter(&report, "host_rx") >= 3, "{report}");
    assert_eq!(counter(&report, "local_to_kernel"), 0, "{report}");
    // The ruleset printed with live counters: the HTTP rule matched the SYN.
    let http_rule = report
        .lines()
        .find(|l| l.contains("tcp dport 80 counter packets"))
        .expect("http rule");
    assert!(!http_rule.contains("counter packets 0 "), "{http_rule}");
    assert!(
        lab.leftovers().is_empty(),
        "namespaces left: {:?}",
        lab.leftovers()
    );
}

#[test]
fn lab_up_serves_curl_blocks_denied_port_and_down_removes_everything() {
    if skip_unless_root("lab_up_serves_curl_blocks_denied_port_and_down_removes_everything") {
        return;
    }
    let lab = LabGuard::new("u");
    let up = lab.sluice(&["lab", "up"]);
    assert!(up.status.success(), "lab up failed:\n{}", text(&up));
    // A second `up` is refused and leaves the running lab alone.
    let again = lab.sluice(&["lab", "up"]);
    assert!(!again.status.success());
    assert!(text(&again).contains("already up"));

    let get = lab.in_ns(
        "cli",
        &[
            SLUICE,
            "internal",
            "http-get",
            "198.51.100.2:80",
            "/bytes/200000",
        ],
    );
    assert!(get.status.success(), "{}", text(&get));
    assert!(text(&get).contains("200000 bytes"), "{}", text(&get));
    if Path::new("/usr/bin/curl").exists() {
        let curl = lab.in_ns("cli", &["curl", "-s", "-m", "5", "http://198.51.100.2/"]);
        assert!(curl.status.success(), "{}", text(&curl));
        assert!(String::from_utf8_lossy(&curl.stdout).contains("hello from sluice-srv"));
    }
    let denied = lab.in_ns(
        "cli",
        &[SLUICE, "internal", "tcp-connect", "198.51.100.2:8080"],
    );
    assert!(!denied.status.success());
    assert!(text(&denied).contains("timed out"), "{}", text(&denied));
    let fwd = lab.in_ns("fw", &["cat", "/proc/sys/net/ipv4/ip_forward"]);
    assert_eq!(String::from_utf8_lossy(&fwd.stdout).trim(), "0");

    let down = lab.sluice(&["lab", "down"]);
    assert!(down.status.success(), "{}", text(&down));
    assert!(
        lab.leftovers().is_empty(),
        "namespaces left: {:?}",
        lab.leftovers()
    );
    assert!(!Path::new("/run/sluice").join(&lab.prefix).exists());
}

#[test]
fn lab_with_the_af_packet_backend_passes_too() {
    if skip_unless_root("lab_with_the_af_packet_backend_passes_too") {
        return;
    }
    let lab = LabGuard::new("p");
    let out = lab.sluice(&["lab", "--backend", "packet"]);
    let report = text(&out);
    assert!(out.status.success(), "lab failed:\n{report}");
    assert!(counter(&report, "forwarded") >= 10, "{report}");
    assert!(lab.leftovers().is_empty());
}

#[test]
fn malformed_ruleset_is_reported_with_its_location_and_nothing_is_left_behind() {
    if skip_unless_root(
        "malformed_ruleset_is_reported_with_its_location_and_nothing_is_left_behind",
    ) {
        return;
    }
    let dir = std::env::temp_dir().join(format!("sluice-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.nft");
    std::fs::write(&bad, "table inet filter {\n\tchain forward {\n\t\ttype filter hook forward priority filter; policy drop;\n\t\ttcp dport 80 acept\n\t}\n}\n").unwrap();
    let lab = LabGuard::new("b");
    let out = lab.sluice(&["lab", "up", "--ruleset", bad.to_str().unwrap()]);
    let msg = text(&out);
    assert!(!out.status.success());
    assert!(
        msg.contains("bad.nft:4:"),
        "error must name file:line:col:\n{msg}"
    );
    assert!(
        lab.leftovers().is_empty(),
        "half-configured lab left: {:?}",
        lab.leftovers()
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn missing_interface_is_a_clear_error() {
    if skip_unless_root("missing_interface_is_a_clear_error") {
        return;
    }
    let rs = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/examples/lab.nft");
    let sock = format!("/run/sluice/test-{}.sock", std::process::id());
    let out = Command::new(SLUICE)
        .args([
            "run",
            "--iface",
            "sluice-nosuch0",
            "--ruleset",
            rs,
            "--control",
            &sock,
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let msg = text(&out);
    assert!(
        msg.contains("sluice-nosuch0") && msg.contains("not found"),
        "{msg}"
    );
    assert!(!Path::new(&sock).exists());
}

#[test]
fn non_root_gets_one_line_and_exit_2() {
    if skip_unless_root("non_root_gets_one_line_and_exit_2") {
        return;
    }
    use std::os::unix::process::CommandExt;
    let mut c = Command::new(SLUICE);
    c.args(["lab", "--prefix", "sl-nonroot"]);
    unsafe {
        c.pre_exec(|| {
            if libc::setgid(65534) != 0 || libc::setuid(65534) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = c.output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let msg = text(&out);
    assert_eq!(msg.trim().lines().count(), 1, "{msg}");
    assert!(msg.contains("root"), "{msg}");
}

#[test]
fn nft_commands_change_the_live_ruleset_and_swaps_lose_no_packet() {
    if skip_unless_root("nft_commands_change_the_live_ruleset_and_swaps_lose_no_packet") {
        return;
    }
    let lab = LabGuard::new("n");
    let up = lab.sluice(&["lab", "up"]);
    assert!(up.status.success(), "lab up failed:\n{}", text(&up));
    let sock = format!("/run/sluice/{}/control.sock", lab.prefix);
    let nft = |args: &[&str]| {
        let mut c = Command::new(SLUICE);
        c.args(["nft", "--control", &sock]).args(args);
        c.output().expect("sluice nft")
    };
    // The denied port opens with one added rule, and the rule shows in the listing with its handle.
    let denied = |lab: &LabGuard| {
        lab.in_ns(
            "cli",
            &[SLUICE, "internal", "tcp-connect", "198.51.100.2:8080"],
        )
    };
    assert!(!denied(&lab).status.success());
    let add = nft(&[
        "insert", "rule", "inet", "filter", "forward", "tcp", "dport", "8080", "counter", "accept",
    ]);
    assert!(add.status.success(), "{}", text(&add));
    assert!(
        denied(&lab).status.success(),
        "8080 must pass after the insert"
    );
    let list = nft(&["-a", "list", "chain", "inet", "filter", "forward"]);
    let listing = String::from_utf8_lossy(&list.stdout).to_string();
    let rule = listing
        .lines()
        .find(|l| l.contains("tcp dport 8080 counter packets"))
        .expect("inserted rule");
    assert!(
        !rule.contains("packets 0 "),
        "the connect went through the new rule: {rule}"
    );
    // insert puts it first in the chain.
    assert!(
        listing.lines().nth(3).unwrap().contains("tcp dport 8080"),
        "{listing}"
    );
    assert!(listing.contains("# handle"), "{listing}");
    // Deleted by its handle, the rule stops letting 8080 through.
    let handle = rule.rsplit("# handle ").next().unwrap().trim().to_string();
    let del = nft(&[
        "delete", "rule", "inet", "filter", "forward", "handle", &handle,
    ]);
    assert!(del.status.success(), "{}", text(&del));
    assert!(!denied(&lab).status.success(), "8080 after the delete");
    // A set's elements let it through; `flush set` empties the set and closes it again.
    for cmd in [
        "add set inet filter open { type inet_service; elements = { 8080 }; }",
        "insert rule inet filter forward tcp dport @open accept",
    ] {
        let o = nft(&cmd.split(' ').collect::<Vec<_>>());
        assert!(o.status.success(), "{cmd}: {}", text(&o));
    }
    assert!(denied(&lab).status.success(), "8080 with the set");
    let flush = nft(&["flush", "set", "inet", "filter", "open"]);
    assert!(flush.status.success(), "{}", text(&flush));
    assert!(!denied(&lab).status.success(), "8080 after flush set");
    let set = String::from_utf8_lossy(&nft(&["list", "set", "inet", "filter", "open"]).stdout)
        .to_string();
    assert!(!set.contains("elements"), "{set}");
    // A map written from the packet path lists what the packets wrote, as the kernel lists it.
    for cmd in [
        "add map inet filter seen { type ipv4_addr : mark; flags dynamic; }",
        "insert rule inet filter forward tcp dport 8080 update @seen { ip saddr counter : 0x5 }",
    ] {
        let o = nft(&cmd.split(' ').collect::<Vec<_>>());
        assert!(o.status.success(), "{cmd}: {}", text(&o));
    }
    assert!(!denied(&lab).status.success(), "8080 with the map");
    let map = String::from_utf8_lossy(&nft(&["list", "map", "inet", "filter", "seen"]).stdout)
        .to_string();
    assert!(
        map.contains("elements = { 192.0.2.")
            && map.contains(" counter packets ")
            && map.contains(" : 0x00000005 }"),
        "{map}"
    );
    // Something missing is an error, as nft reports it, and changes nothing.
    let missing = nft(&["delete", "counter", "inet", "filter", "nope"]);
    assert!(!missing.status.success());
    assert!(
        text(&missing).contains("Error: Could not process rule: No such file or directory"),
        "{}",
        text(&missing)
    );
    // A bad command changes nothing and says where the error is.
    let bad = nft(&[
        "add", "rule", "inet", "filter", "forward", "tcp", "dport", "ssh", "acept",
    ]);
    assert!(!bad.status.success());
    assert!(text(&bad).contains("Error:"), "{}", text(&bad));
    let after = String::from_utf8_lossy(&nft(&["list", "ruleset"]).stdout).to_string();
    assert!(!after.contains("acept"));

    // Swap the whole ruleset 30 times while pings and a download flow: nothing may be lost.
    let rs = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/examples/lab.nft");
    let ping = lab.in_ns_background(
        "cli",
        &[
            "ping",
            "198.51.100.2",
            "--count",
            "600",
            "--interval-ms",
            "3",
        ],
    );
    let download = lab.in_ns_background("cli", &["http-get", "198.51.100.2:80", "/bytes/30000000"]);
    for _ in 0..30 {
        let swap = nft(&["-f", rs]);
        assert!(swap.status.success(), "{}", text(&swap));
        std::thread::sleep(std::time::Duration::from_millis(40));
    }
    let ping = ping.join().unwrap();
    assert!(
        text(&ping).contains("600/600 replies"),
        "pings lost across swaps: {}",
        text(&ping)
    );
    let download = download.join().unwrap();
    assert!(
        text(&download).contains("30000000 bytes"),
        "{}",
        text(&download)
    );
    // JSON: the live ruleset listed with -j loads back with -j -f and lists the same (stateless: the
    // counters keep counting); a broken JSON file is refused with nft's message and changes nothing.
    let before = String::from_utf8_lossy(&nft(&["-s", "list", "ruleset"]).stdout).to_string();
    let json = nft(&["-j", "list", "ruleset"]);
    assert!(json.status.success(), "{}", text(&json));
    let jdir = std::env::temp_dir().join(format!("sluice-labj-{}", std::process::id()));
    std::fs::create_dir_all(&jdir).unwrap();
    let jfile = jdir.join("live.json");
    let mut doc = String::from_utf8_lossy(&json.stdout).to_string();
    assert!(doc.starts_with("{\"nftables\": [{\"metainfo\""), "{doc}");
    // the listing has no `flush ruleset`: prepend one, as a saved ruleset would
    doc = doc.replacen("[", "[{\"flush\": {\"ruleset\": null}}, ", 1);
    std::fs::write(&jfile, &doc).unwrap();
    let load = nft(&["-j", "-f", jfile.to_str().unwrap()]);
    assert!(load.status.success(), "{}", text(&load));
    let after = String::from_utf8_lossy(&nft(&["-s", "list", "ruleset"]).stdout).to_string();
    assert_eq!(after, before);
    std::fs::write(
        &jfile,
        r#"{"nftables": [{"flush": {"ruleset": null}}, {"table": {"family": "inet"}}]}"#,
    )
    .unwrap();
    let bad = nft(&["-j", "-f", jfile.to_str().unwrap()]);
    assert!(!bad.status.success());
    assert!(
        text(&bad).contains("Error: Object item not found: name"),
        "{}",
        text(&bad)
    );
    let after_bad = String::from_utf8_lossy(&nft(&["-s", "list", "ruleset"]).stdout).to_string();
    assert_eq!(after_bad, before);
    // `list` and `reset` commands in a JSON file print what they name, in JSON, in order (as
    // `nft -j -f` does); a file of lists changes nothing; `reset` prints the values it zeroes.
    let out = |o: &Output| String::from_utf8_lossy(&o.stdout).to_string();
    std::fs::write(
        &jfile,
        r#"{"nftables": [{"add": {"counter": {"family": "inet", "table": "filter", "name": "cx", "packets": 7, "bytes": 70}}}]}"#,
    )
    .unwrap();
    let add = nft(&["-j", "-f", jfile.to_str().unwrap()]);
    assert!(add.status.success(), "{}", text(&add));
    std::fs::write(
        &jfile,
        r#"{"nftables": [{"list": {"counter": {"family": "inet", "table": "filter", "name": "cx"}}}, {"list": {"tables": null}}]}"#,
    )
    .unwrap();
    let lists = nft(&["-j", "-f", jfile.to_str().unwrap()]);
    assert!(lists.status.success(), "{}", text(&lists));
    let got = out(&lists);
    assert_eq!(
        got.matches("{\"nftables\": [{\"metainfo\"").count(),
        2,
        "{got}"
    );
    assert!(
        got.contains("\"name\": \"cx\", \"table\": \"filter\"")
            && got.contains("\"packets\": 7, \"bytes\": 70"),
        "{got}"
    );
    std::fs::write(
        &jfile,
        r#"{"nftables": [{"reset": {"counters": {"family": "inet", "table": "filter"}}}, {"list": {"counters": {"family": "inet"}}}]}"#,
    )
    .unwrap();
    let reset = nft(&["-j", "-f", jfile.to_str().unwrap()]);
    assert!(reset.status.success(), "{}", text(&reset));
    let got = out(&reset);
    let (first, second) = got.split_once('\n').unwrap();
    assert!(first.contains("\"packets\": 7, \"bytes\": 70"), "{got}");
    assert!(second.contains("\"packets\": 0, \"bytes\": 0"), "{got}");
    std::fs::write(
        &jfile,
        r#"{"nftables": [{"list": {"counter": {"family": "inet", "table": "filter", "name": "nope"}}}]}"#,
    )
    .unwrap();
    assert!(!nft(&["-j", "-f", jfile.to_str().unwrap()]).status.success());
    std::fs::remove_dir_all(&jdir).ok();

    let stats = Command::new(SLUICE)
        .args(["ctl", "--control", &sock, "stats"])
        .output()
        .unwrap();
    let stats = String::from_utf8_lossy(&stats.stdout).to_string();
    assert!(stats.contains("tx_ring_full 0"), "{stats}");
    assert!(
        stats
            .lines()
            .any(|l| l.starts_with("generation_switches") && l != "generation_switches 1"),
        "{stats}"
    );
}

#[test]
fn sighup_reloads_the_file_and_a_broken_file_keeps_the_running_ruleset() {
    if skip_unless_root("sighup_reloads_the_file_and_a_broken_file_keeps_the_running_ruleset") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("sluice-hup-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("gw.nft");
    let lab_rs = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/examples/lab.nft"
    ))
    .unwrap();
    std::fs::write(&file, &lab_rs).unwrap();
    let lab = LabGuard::new("h");
    let up = lab.sluice(&["lab", "up", "--ruleset", file.to_str().unwrap()]);
    assert!(up.status.success(), "{}", text(&up));
    let pid: i32 = std::fs::read_to_string(format!("/run/sluice/{}/sluice.pid", lab.prefix))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let connect = |lab: &LabGuard| {
        lab.in_ns(
            "cli",
            &[SLUICE, "internal", "tcp-connect", "198.51.100.2:8080"],
        )
        .status
        .success()
    };
    let hup_and_wait = || {
        unsafe { libc::kill(pid, libc::SIGHUP) };
        std::thread::sleep(std::time::Duration::from_millis(300));
    };
    assert!(!connect(&lab));
    std::fs::write(
        &file,
        lab_rs.replace(
            "tcp dport 80 counter accept",
            "tcp dport { 80, 8080 } counter accept",
        ),
    )
    .unwrap();
    hup_and_wait();
    assert!(connect(&lab), "8080 must pass after the reload");
    std::fs::write(
        &file,
        "table inet filter {\n\tchain forward {\n\t\tpolicy drop\n",
    )
    .unwrap();
    hup_and_wait();
    assert!(
        connect(&lab),
        "a broken file must not replace the running ruleset"
    );
    let log = std::fs::read_to_string(format!("/run/sluice/{}/sluice.log", lab.prefix)).unwrap();
    assert!(
        log.contains("reload failed") && log.contains("gw.nft:"),
        "{log}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn two_queue_lab_runs_two_workers_and_keeps_flows_whole() {
    if skip_unless_root("two_queue_lab_runs_two_workers_and_keeps_flows_whole") {
        return;
    }
    let lab = LabGuard::new("q");
    let up = lab.sluice(&["lab", "up", "--queues", "2"]);
    assert!(up.status.success(), "{}", text(&up));
    let get = lab.in_ns(
        "cli",
        &[
            SLUICE,
            "internal",
            "http-get",
            "198.51.100.2:80",
            "/bytes/3000000",
        ],
    );
    assert!(text(&get).contains("3000000 bytes"), "{}", text(&get));
    let sock = format!("/run/sluice/{}/control.sock", lab.prefix);
    let stats = daemon_stats(&sock);
    let value = |k: &str| stat(&stats, k);
    assert_eq!(value("workers"), 2, "{stats}");
    assert_eq!(
        value("dropped_by_rule"),
        0,
        "no packet of the download may look invalid: {stats}"
    );
    assert_eq!(value("handoff_full"), 0, "{stats}");
}

#[test]
fn host_path_lab_runs_input_and_output_on_the_boxs_own_traffic() {
    if skip_unless_root("host_path_lab_runs_input_and_output_on_the_boxs_own_traffic") {
        return;
    }
    let lab = LabGuard::new("h");
    // two workers: the kernel's packets may arrive at the worker that does not own their flow
    let up = lab.sluice(&["lab", "up", "--queues", "2"]);
    assert!(up.status.success(), "{}", text(&up));
    let sock = format!("/run/sluice/{}/control.sock", lab.prefix);
    let server = lab.in_ns_background("fw", &["http-serve", "192.0.2.1:9000", "192.0.2.1:9001"]);
    let rules = std::env::temp_dir().join(format!("{}-host.nft", lab.prefix));
    std::fs::write(
        &rules,
        "table inet host {
            chain input { type filter hook input priority filter; policy accept;
                tcp dport 9001 counter drop
                tcp dport 9000 ct state new counter accept
            }
            chain output { type filter hook output priority filter; policy accept;
                ip daddr 198.51.100.2 icmp type echo-request counter drop
                tcp sport 9000 ct state established counter accept
            }
        }",
    )
    .unwrap();
    let load = Command::new(SLUICE)
        .args(["nft", "--control", &sock, "-f", rules.to_str().unwrap()])
        .output()
        .unwrap();
    std::fs::remove_file(&rules).ok();
    assert!(load.status.success(), "{}", text(&load));
    std::thread::sleep(std::time::Duration::from_millis(300));

    // a download from the box's own server: in through INPUT, out through OUTPUT
    let get = lab.in_ns(
        "cli",
        &[
            SLUICE,
            "internal",
            "http-get",
            "192.0.2.1:9000",
            "/bytes/300000",
        ],
    );
    assert!(text(&get).contains("300000 bytes"), "{}", text(&get));
    // INPUT drops what it says
    let denied = lab.in_ns(
        "cli",
        &[SLUICE, "internal", "tcp-connect", "192.0.2.1:9001"],
    );
    assert!(!denied.status.success(), "{}", text(&denied));
    // OUTPUT too, for what the box sends itself
    let ping_srv = lab.in_ns("fw", &["ping", "-c", "1", "-W", "1", "198.51.100.2"]);
    assert!(!ping_srv.status.success(), "{}", text(&ping_srv));
    let ping_cli = lab.in_ns("fw", &["ping", "-c", "1", "-W", "2", "192.0.2.2"]);
    assert!(ping_cli.status.success(), "{}", text(&ping_cli));

    let listing = Command::new(SLUICE)
        .args(["ctl", "--control", &sock, "list ruleset"])
        .output()
        .unwrap();
    let listing = text(&listing);
    let count = |needle: &str| -> u64 {
        let line = listing
            .lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no {needle} in {listing}"));
        let rest = line.split("counter packets ").nth(1).unwrap();
        rest.split(' ').next().unwrap().parse().unwrap()
    };
    assert!(count("tcp dport 9001") >= 1, "{listing}");
    assert_eq!(count("tcp dport 9000 ct state new"), 1, "{listing}");
    assert!(
        count("ip daddr 198.51.100.2 icmp type echo-request") >= 1,
        "{listing}"
    );
    // the kernel's side of the download: established for OUTPUT
    assert!(
        count("tcp sport 9000 ct state established") >= 100,
        "{listing}"
    );

    let stats = daemon_stats(&sock);
    let value = |k: &str| stat(&stats, k);
    // link-local addresses are the kernel's own business (only on their link, which the TUN is not)
    let ll = lab.in_ns(
        "fw",
        &[
            "ip", "-6", "-br", "addr", "show", "dev", "fw-cli", "scope", "link",
        ],
    );
    let ll = String::from_utf8_lossy(&ll.stdout)
        .split_whitespace()
        .nth(2)
        .and_then(|a| a.split('/').next())
        .map(str::to_string);
    if let Some(ll) = ll {
        let ping6 = lab.in_ns(
            "cli",
            &["ping", "-6", "-c", "1", "-W", "3", &format!("{ll}%cli0")],
        );
        assert!(ping6.status.success(), "{}", text(&ping6));
    }
    assert!(value("local_to_host") >= 20, "{stats}");
    assert!(value("host_rx") >= 100, "{stats}");
    assert_eq!(value("local_to_kernel"), 0, "{stats}");
    assert_eq!(value("host_bad"), 0, "{stats}");
    assert_eq!(value("host_tx_failed"), 0, "{stats}");

    let down = lab.sluice(&["lab", "down"]);
    assert!(down.status.success(), "{}", text(&down));
    let _ = server.join();
    assert!(lab.leftovers().is_empty(), "{:?}", lab.leftovers());
}

#[test]
fn a_reload_reads_addresses_added_since_the_start() {
    if skip_unless_root("a_reload_reads_addresses_added_since_the_start") {
        return;
    }
    let lab = LabGuard::new("a");
    let up = lab.sluice(&["lab", "up"]);
    assert!(up.status.success(), "{}", text(&up));
    let sock = format!("/run/sluice/{}/control.sock", lab.prefix);
    let add = lab.in_ns(
        "fw",
        &["ip", "addr", "add", "192.0.2.100/24", "dev", "fw-cli"],
    );
    assert!(add.status.success(), "{}", text(&add));
    // sluice does not know the new address yet: it takes it for a neighbour on fw-cli's link
    let before = lab.in_ns("cli", &["ping", "-c", "1", "-W", "1", "192.0.2.100"]);
    assert!(!before.status.success(), "{}", text(&before));
    let reload = Command::new(SLUICE)
        .args(["ctl", "--control", &sock, "reload"])
        .output()
        .unwrap();
    assert!(reload.status.success(), "{}", text(&reload));
    let after = lab.in_ns("cli", &["ping", "-c", "3", "-W", "2", "192.0.2.100"]);
    assert!(after.status.success(), "{}", text(&after));
    assert!(stat(&daemon_stats(&sock), "local_to_host") >= 2);
    // an interface sluice does not run on keeps its routes for the box's own traffic, even under a
    // default route through sluice
    for cmd in [
        &[
            "ip", "link", "add", "m0", "type", "veth", "peer", "name", "m1",
        ][..],
        &["ip", "addr", "add", "10.99.0.1/24", "dev", "m0"],
        &["ip", "link", "set", "m0", "up"],
        &[
            "ip",
            "route",
            "add",
            "default",
            "via",
            "198.51.100.2",
            "dev",
            "fw-srv",
        ],
    ] {
        let o = lab.in_ns("fw", cmd);
        assert!(o.status.success(), "{cmd:?}: {}", text(&o));
    }
    let reload = Command::new(SLUICE)
        .args(["ctl", "--control", &sock, "reload"])
        .output()
        .unwrap();
    assert!(reload.status.success(), "{}", text(&reload));
    let other = text(&lab.in_ns("fw", &["ip", "route", "get", "10.99.0.5"]));
    assert!(other.contains("dev m0"), "{other}");
    let far = text(&lab.in_ns("fw", &["ip", "route", "get", "203.0.113.7"]));
    assert!(far.contains("dev sluice-host"), "{far}");
}
