//! `sluice conntrack`: conntrack-tools' command line and output, against the running daemon.
//!
//! `-L` (list), `-D` (delete), `-F` (flush), `-C` (count), `-S` (per-worker statistics), `-E` (events),
//! with the filters `-p`, `--state`, `-s/--orig-src`, `-d/--orig-dst`, `-r/--reply-src`,
//! `-q/--reply-dst`, `--sport/--orig-port-src`, `--dport/--orig-port-dst`, `--reply-port-src`,
//! `--reply-port-dst`, `-m/--mark`, `-w/--zone`, `-u/--status`, `-n/--src-nat`, `-g/--dst-nat`,
//! `-f/--family` and `-o extended`. Lines look exactly like libnetfilter_conntrack's default format; the
//! summary goes to stderr as conntrack-tools prints it.
//!
//! The client sends its arguments to the daemon (`conntrack ARGS...` on the control socket); the daemon
//! filters and formats, so both ends parse the same way.

use crate::ctl;
use anyhow::{bail, Context, Result};
use dataplane::conntrack::{status, Dir, Entry, Event, EventKind, TcpState, Tuple};
use dataplane::{Command, WorkerStats};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What conntrack-tools calls itself in its summaries (the version Debian bookworm ships).
pub const BANNER: &str = "conntrack v1.4.7 (conntrack-tools)";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    List,
    Delete,
    Flush,
    Count,
    Stats,
    Events,
}

/// A parsed command line.
#[derive(Clone, Debug, Default)]
pub struct Args {
    pub verb: Option<Verb>,
    pub filter: Filter,
    pub extended: bool,
}

#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub proto: Option<u8>,
    pub states: Vec<TcpState>,
    pub orig_src: Option<Ipv4Addr>,
    pub orig_dst: Option<Ipv4Addr>,
    pub reply_src: Option<Ipv4Addr>,
    pub reply_dst: Option<Ipv4Addr>,
    pub orig_sport: Option<u16>,
    pub orig_dport: Option<u16>,
    pub reply_sport: Option<u16>,
    pub reply_dport: Option<u16>,
    pub mark: Option<(u32, u32)>,
    pub zone: Option<u16>,
    pub status: Option<u16>,
    pub src_nat: bool,
    pub dst_nat: bool,
    /// `-f ipv6`: the IPv6 table (not forwarded by sluice yet: always empty).
    pub ipv6: bool,
}

fn proto_number(s: &str) -> Result<u8> {
    Ok(match s.to_ascii_lowercase().as_str() {
        "tcp" => 6,
        "udp" => 17,
        "icmp" => 1,
        "icmpv6" | "ipv6-icmp" => 58,
        "sctp" => 132,
        "dccp" => 33,
        "udplite" => 136,
        "gre" => 47,
        n => n.parse().with_context(|| format!("unknown protocol {s}"))?,
    })
}

fn proto_name(p: u8) -> &'static str {
    match p {
        6 => "tcp",
        17 => "udp",
        1 => "icmp",
        58 => "icmpv6",
        132 => "sctp",
        33 => "dccp",
        136 => "udplite",
        47 => "gre",
        _ => "unknown",
    }
}

fn status_bit(s: &str) -> Result<u16> {
    Ok(match s.to_ascii_uppercase().as_str() {
        "EXPECTED" => status::EXPECTED,
        "SEEN_REPLY" => status::SEEN_REPLY,
        "ASSURED" => status::ASSURED,
        "CONFIRMED" => status::CONFIRMED,
        "SRC_NAT" | "SNAT" => status::SRC_NAT,
        "DST_NAT" | "DNAT" => status::DST_NAT,
        "SEQ_ADJUST" => status::SEQ_ADJUST,
        "SRC_NAT_DONE" => status::SRC_NAT_DONE,
        "DST_NAT_DONE" => status::DST_NAT_DONE,
        "DYING" => status::DYING,
        "FIXED_TIMEOUT" => status::FIXED_TIMEOUT,
        _ => bail!("unknown status {s}"),
    })
}

/// Parses conntrack-tools' arguments (getopt style: `-L`, `-p tcp`, `--state=ESTABLISHED`).
pub fn parse(args: &[String]) -> Result<Args> {
    let mut a = Args::default();
    let mut i = 0;
    let set = |a: &mut Args, v: Verb| -> Result<()> {
        if a.verb.is_some_and(|x| x != v) {
            bail!("only one command at a time (-L, -D, -F, -C, -S, -E)");
        }
        a.verb = Some(v);
        Ok(())
    };
    while i < args.len() {
        let (opt, inline) = match args[i].split_once('=') {
            Some((o, v)) if o.starts_with("--") => (o.to_string(), Some(v.to_string())),
            _ => (args[i].clone(), None),
        };
        i += 1;
        let mut value = || -> Result<String> {
            if let Some(v) = &inline {
                return Ok(v.clone());
            }
            let v = args
                .get(i)
                .cloned()
                .with_context(|| format!("option {opt} needs a value"))?;
            i += 1;
            Ok(v)
        };
        let ip = |v: String| -> Result<Ipv4Addr> {
            v.parse().with_context(|| format!("bad address {v}"))
        };
        let port =
            |v: String| -> Result<u16> { v.parse().with_context(|| format!("bad port {v}")) };
        match opt.as_str() {
            "-L" | "--dump" => set(&mut a, Verb::List)?,
            "-D" | "--delete" => set(&mut a, Verb::Delete)?,
            "-F" | "--flush" => set(&mut a, Verb::Flush)?,
            "-C" | "--count" => set(&mut a, Verb::Count)?,
            "-S" | "--stats" => set(&mut a, Verb::Stats)?,
            "-E" | "--event" => set(&mut a, Verb::Events)?,
            "-p" | "--proto" | "--protonum" => a.filter.proto = Some(proto_number(&value()?)?),
            "--state" => {
                for s in value()?.split(',') {
                    a.filter.states.push(
                        TcpState::from_name(s).with_context(|| format!("unknown TCP state {s}"))?,
                    );
                }
            }
            "-s" | "--src" | "--orig-src" => a.filter.orig_src = Some(ip(value()?)?),
            "-d" | "--dst" | "--orig-dst" => a.filter.orig_dst = Some(ip(value()?)?),
            "-r" | "--reply-src" => a.filter.reply_src = Some(ip(value()?)?),
            "-q" | "--reply-dst" => a.filter.reply_dst = Some(ip(value()?)?),
            "--sport" | "--orig-port-src" => a.filter.orig_sport = Some(port(value()?)?),
            "--dport" | "--orig-port-dst" => a.filter.orig_dport = Some(port(value()?)?),
            "--reply-port-src" => a.filter.reply_sport = Some(port(value()?)?),
            "--reply-port-dst" => a.filter.reply_dport = Some(port(value()?)?),
            "-m" | "--mark" => {
                let v = value()?;
                let (m, mask) = v.split_once('/').unwrap_or((&v, "0xffffffff"));
                let num = |s: &str| -> Result<u32> {
                    match s.strip_prefix("0x") {
                        Some(h) => u32::from_str_radix(h, 16),
                        None => s.parse(),
                    }
                    .with_context(|| format!("bad mark {s}"))
                };
                a.filter.mark = Some((num(m)?, num(mask)?));
            }
            "-w" | "--zone" | "--orig-zone" => {
                a.filter.zone = Some(value()?.parse().context("bad zone")?)
            }
            "-u" | "--status" => {
                let mut bits = 0;
                for s in value()?.split(',') {
                    bits |= status_bit(s)?;
                }
                a.filter.status = Some(bits);
            }
            "-n" | "--src-nat" => a.filter.src_nat = true,
            "-g" | "--dst-nat" => a.filter.dst_nat = true,
            "-f" | "--family" => match value()?.as_str() {
                "ipv4" => a.filter.ipv6 = false,
                "ipv6" => a.filter.ipv6 = true,
                f => bail!("unknown family {f}"),
            },
            "-o" | "--output" => {
                for o in value()?.split(',') {
                    match o {
                        "extended" => a.extended = true,
                        "id" | "timestamp" | "ktimestamp" | "labels" | "userspace" | "xml" => {}
                        _ => bail!("unknown output format {o}"),
                    }
                }
            }
            "-e" | "--event-mask" | "-b" | "--buffer-size" => {
                value()?;
            }
            "-z" | "--zero" => {}
            _ => bail!("unknown option {opt}"),
        }
    }
    Ok(a)
}

impl Filter {
    pub fn matches(&self, e: &Entry<Ipv4Addr>) -> bool {
        if self.ipv6 {
            return false;
        }
        let (o, r) = (e.orig(), e.reply());
        let eq = |want: Option<Ipv4Addr>, have: Ipv4Addr| want.is_none_or(|w| w == have);
        let peq = |want: Option<u16>, have: u16| want.is_none_or(|w| w == have);
        let ports = !o.is_icmp();
        self.proto.is_none_or(|p| p == e.proto)
            && (self.states.is_empty() || e.tcp_state().is_some_and(|s| self.states.contains(&s)))
            && eq(self.orig_src, o.src)
            && eq(self.orig_dst, o.dst)
            && eq(self.reply_src, r.src)
            && eq(self.reply_dst, r.dst)
            && (!ports || peq(self.orig_sport, o.sport))
            && (!ports || peq(self.orig_dport, o.dport))
            && (!ports || peq(self.reply_sport, r.sport))
            && (!ports || peq(self.reply_dport, r.dport))
            && self.mark.is_none_or(|(m, mask)| e.mark & mask == m)
            && self.zone.is_none_or(|z| z == e.zone)
            && self.status.is_none_or(|s| e.status & s == s)
            && (!self.src_nat || e.has(status::SRC_NAT))
            && (!self.dst_nat || e.has(status::DST_NAT))
    }
}

fn tuple_text(t: &Tuple<Ipv4Addr>, out: &mut String) {
    out.push_str(&format!("src={} dst={} ", t.src, t.dst));
    match t.proto {
        6 | 17 | 136 | 132 | 33 => out.push_str(&format!("sport={} dport={} ", t.sport, t.dport)),
        47 => out.push_str(&format!("srckey=0x{:x} dstkey=0x{:x} ", t.sport, t.dport)),
        1 | 58 => out.push_str(&format!(
            "type={} code={} id={} ",
            t.dport >> 8,
            t.dport & 0xff,
            t.sport
        )),
        _ => {}
    }
}

/// One entry (or event) in libnetfilter_conntrack's default format. `timeout`: seconds left (absent in
/// DESTROY events); `acct`: print packet/byte counters (`nf_conntrack_acct=1`).
pub fn format_entry(
    e: &Entry<Ipv4Addr>,
    timeout: Option<u64>,
    acct: bool,
    extended: bool,
    event: Option<EventKind>,
) -> String {
    let mut s = String::new();
    if let Some(k) = event {
        let tag = match k {
            EventKind::New => "[NEW]",
            EventKind::Update => "[UPDATE]",
            EventKind::Destroy => "[DESTROY]",
        };
        s.push_str(&format!("{tag:>9} "));
    }
    if extended {
        s.push_str(&format!("{:<8} {} ", "ipv4", 2));
    }
    s.push_str(&format!("{:<8} {} ", proto_name(e.proto), e.proto));
    let destroy = event == Some(EventKind::Destroy);
    if let (Some(t), false) = (timeout, destroy) {
        s.push_str(&format!("{t} "));
    }
    if let (Some(st), false) = (e.tcp_state(), destroy) {
        s.push_str(st.name());
        s.push(' ');
    }
    tuple_text(&e.tuple(Dir::Original), &mut s);
    if acct {
        s.push_str(&format!("packets={} bytes={} ", e.packets[0], e.bytes[0]));
    }
    if !e.has(status::SEEN_REPLY) {
        s.push_str("[UNREPLIED] ");
    }
    tuple_text(&e.tuple(Dir::Reply), &mut s);
    if acct {
        s.push_str(&format!("packets={} bytes={} ", e.packets[1], e.bytes[1]));
    }
    if e.has(status::ASSURED) {
        s.push_str("[ASSURED] ");
    }
    // Events carry the mark only when set, and no reference count.
    if event.is_none() || e.mark != 0 {
        s.push_str(&format!("mark={} ", e.mark));
    }
    if e.zone != 0 {
        s.push_str(&format!("zone={} ", e.zone));
    }
    if event.is_none() {
        s.push_str("use=1 ");
    }
    s.pop();
    s
}

/// The statistics line of one worker, as `conntrack -S` prints one per CPU.
pub fn stats_line(worker: usize, st: &WorkerStats) -> String {
    format!(
        "cpu={worker:<4}\tfound=0 invalid={} insert={} insert_failed={} drop={} early_drop={} error={} search_restart=0 clash_resolve=0 chaintoolong=0 ",
        st.ct_invalid, st.ct_new, st.ct_insert_failed, st.ct_table_full, st.ct_early_drop, st.ct_error
    )
}

/// The daemon's side: events collected from the workers for `-E` pollers.
#[derive(Default)]
pub struct EventLog {
    started: bool,
    next: u64,
    lines: std::collections::VecDeque<(u64, String)>,
}

const EVENT_LOG: usize = 65536;

/// The daemon's answers to `conntrack ...` requests.
#[derive(Default)]
pub struct Server {
    pub acct: bool,
    pub events: Arc<Mutex<EventLog>>,
}

type Workers = [Mutex<Sender<Command>>];

impl Server {
    fn snapshots(&self, workers: &Workers, conntrack: bool) -> Vec<dataplane::Snapshot> {
        let (tx, rx) = channel();
        let mut asked = 0;
        for w in workers {
            if w.lock()
                .unwrap()
                .send(Command::Snapshot {
                    conntrack,
                    reply: tx.clone(),
                })
                .is_ok()
            {
                asked += 1;
            }
        }
        let mut v: Vec<_> = (0..asked)
            .filter_map(|_| rx.recv_timeout(Duration::from_secs(2)).ok())
            .collect();
        v.sort_by_key(|s| s.worker);
        v
    }

    /// Answers `conntrack ARGS...`: the first line of the answer is the summary for stderr (may be
    /// empty), the rest goes to stdout.
    pub fn handle(&self, workers: &Workers, words: &[&str]) -> std::result::Result<String, String> {
        let args: Vec<String> = words.iter().map(|s| s.to_string()).collect();
        let a = parse(&args).map_err(|e| format!("{e:#}"))?;
        match a.verb {
            None => Err("no command given: -L, -D, -F, -C, -S or -E".into()),
            Some(Verb::List) | Some(Verb::Delete) => {
                let mut lines = Vec::new();
                let mut victims: Vec<Vec<(u16, Tuple<Ipv4Addr>)>> = vec![Vec::new(); workers.len()];
                for snap in self.snapshots(workers, true) {
                    for c in &snap.conntrack {
                        if a.filter.matches(&c.entry) {
                            lines.push(format_entry(
                                &c.entry,
                                Some(c.expires_in_s),
                                self.acct,
                                a.extended,
                                None,
                            ));
                            if let Some(v) = victims.get_mut(snap.worker) {
                                v.push((c.entry.zone, c.entry.orig()));
                            }
                        }
                    }
                }
                let summary = if a.verb == Some(Verb::Delete) {
                    let mut n = 0;
                    for (w, tuples) in victims.into_iter().enumerate() {
                        if tuples.is_empty() {
                            continue;
                        }
                        let (tx, rx) = channel();
                        let sent = workers[w]
                            .lock()
                            .unwrap()
                            .send(Command::DeleteConntrack { tuples, reply: tx })
                            .is_ok();
                        if sent {
                            n += rx.recv_timeout(Duration::from_secs(2)).unwrap_or(0);
                        }
                    }
                    format!("{BANNER}: {n} flow entries have been deleted.")
                } else {
                    format!("{BANNER}: {} flow entries have been shown.", lines.len())
                };
                let mut out = summary;
                out.push('\n');
                for l in lines {
                    out.push_str(&l);
                    out.push('\n');
                }
                Ok(out)
            }
            Some(Verb::Flush) => {
                for w in workers {
                    let _ = w.lock().unwrap().send(Command::FlushConntrack);
                }
                Ok(format!(
                    "{BANNER}: connection tracking table has been emptied.\n"
                ))
            }
            Some(Verb::Count) => {
                let n: usize = self
                    .snapshots(workers, false)
                    .iter()
                    .map(|s| s.conntrack_len)
                    .sum();
                Ok(format!("\n{n}\n"))
            }
            Some(Verb::Stats) => {
                let mut out = String::from("\n");
                for s in self.snapshots(workers, false) {
                    out.push_str(&stats_line(s.worker, &s.stats));
                    out.push('\n');
                }
                Ok(out)
            }
            Some(Verb::Events) => Err("events are polled with `conntrack-events SEQ`".into()),
        }
    }

    /// `conntrack-events SEQ`: event lines after sequence number `seq` (the first line is the next one).
    pub fn events_since(&self, workers: &Workers, seq: u64) -> String {
        self.start_events(workers);
        let log = self.events.lock().unwrap();
        let mut out = format!("{}\n", log.next);
        for (n, l) in log.lines.iter() {
            if *n >= seq {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }

    fn start_events(&self, workers: &Workers) {
        let mut log = self.events.lock().unwrap();
        if log.started {
            return;
        }
        log.started = true;
        let (tx, rx) = channel::<Vec<Event<Ipv4Addr>>>();
        for w in workers {
            let _ = w
                .lock()
                .unwrap()
                .send(Command::WatchConntrack(Some(tx.clone())));
        }
        let events = self.events.clone();
        let acct = self.acct;
        std::thread::Builder::new()
            .name("sluice-ct-events".into())
            .spawn(move || {
                while let Ok(batch) = rx.recv() {
                    let mut log = events.lock().unwrap();
                    for ev in batch {
                        let line = format_entry(
                            &ev.entry,
                            Some(ev.timeout as u64),
                            acct,
                            false,
                            Some(ev.kind),
                        );
                        let n = log.next;
                        log.next += 1;
                        log.lines.push_back((n, line));
                        if log.lines.len() > EVENT_LOG {
                            log.lines.pop_front();
                        }
                    }
                }
            })
            .ok();
    }
}

/// The client: `sluice conntrack [--control PATH] ARGS...`.
pub fn run(raw: &[String]) -> Result<ExitCode> {
    let mut control = PathBuf::from(ctl::DEFAULT_SOCKET);
    let mut args = Vec::new();
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == "--control" {
            control = PathBuf::from(raw.get(i + 1).context("--control needs a path")?);
            i += 2;
            continue;
        }
        if let Some(p) = raw[i].strip_prefix("--control=") {
            control = PathBuf::from(p);
            i += 1;
            continue;
        }
        args.push(raw[i].clone());
        i += 1;
    }
    let a = match parse(&args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{BANNER}: {e:#}");
            return Ok(ExitCode::from(2));
        }
    };
    if a.verb == Some(Verb::Events) {
        return events(&control, &a);
    }
    let answer = ctl::request(&control, &format!("conntrack {}", args.join(" ")), "")?;
    let (summary, body) = answer.split_once('\n').unwrap_or((&answer, ""));
    print!("{body}");
    if !summary.is_empty() {
        eprintln!("{summary}");
    }
    Ok(ExitCode::SUCCESS)
}

fn events(control: &Path, a: &Args) -> Result<ExitCode> {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGINT, stop.clone())?;
    signal_hook::flag::register(signal_hook::consts::SIGTERM, stop.clone())?;
    // Start from now: the first answer tells where the log is.
    let first = ctl::request(control, "conntrack-events 18446744073709551615", "")?;
    let mut seq: u64 = first.lines().next().unwrap_or("0").parse().unwrap_or(0);
    let mut shown = 0u64;
    let _ = a;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        let Ok(answer) = ctl::request(control, &format!("conntrack-events {seq}"), "") else {
            break;
        };
        let mut lines = answer.lines();
        let next: u64 = lines.next().unwrap_or("0").parse().unwrap_or(seq);
        for l in lines {
            println!("{l}");
            shown += 1;
        }
        use std::io::Write;
        std::io::stdout().flush().ok();
        seq = next;
    }
    eprintln!("{BANNER}: {shown} flow events have been shown.");
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn parses_conntrack_tools_options() {
        let a = parse(&args(
            "-L -p tcp --state ESTABLISHED,TIME_WAIT -s 192.0.2.2 --dport=80 -o extended",
        ))
        .unwrap();
        assert_eq!(a.verb, Some(Verb::List));
        assert_eq!(a.filter.proto, Some(6));
        assert_eq!(
            a.filter.states,
            vec![TcpState::Established, TcpState::TimeWait]
        );
        assert_eq!(a.filter.orig_src, Some(Ipv4Addr::new(192, 0, 2, 2)));
        assert_eq!(a.filter.orig_dport, Some(80));
        assert!(a.extended);
        assert!(parse(&args("-L -D")).is_err());
        assert!(parse(&args("-L --state BOGUS")).is_err());
        assert!(parse(&args("-L -p")).is_err());
        let m = parse(&args("-L -m 0x10/0xf0 -u ASSURED,SEEN_REPLY -n")).unwrap();
        assert_eq!(m.filter.mark, Some((0x10, 0xf0)));
        assert_eq!(m.filter.status, Some(status::ASSURED | status::SEEN_REPLY));
        assert!(m.filter.src_nat);
    }

    /// A table holding one TCP connection in SYN_SENT and one answered UDP flow.
    fn table() -> dataplane::conntrack::Conntrack<Ipv4Addr> {
        use dataplane::conntrack::{Conntrack, CtPkt, Sysctls};
        use dataplane::testkit::{ipv4_frame, tcp_header, udp_datagram};
        let mut ct = Conntrack::new(Sysctls::default(), 16, 1);
        let mut st = WorkerStats::default();
        let frames = [
            ipv4_frame(
                [192, 0, 2, 2],
                [198, 51, 100, 2],
                6,
                &tcp_header(40000, 80, 0x02),
                64,
            ),
            ipv4_frame(
                [192, 0, 2, 2],
                [198, 51, 100, 2],
                17,
                &udp_datagram(5353, 53, 4),
                64,
            ),
            ipv4_frame(
                [198, 51, 100, 2],
                [192, 0, 2, 2],
                17,
                &udp_datagram(53, 5353, 4),
                64,
            ),
        ];
        for f in &frames {
            let ip = dataplane::wire::parse_ipv4(f, 14).unwrap();
            let r = ct.track(&CtPkt::from_ipv4(&ip, f), 0, 1_000_000_000, &mut st);
            ct.confirm(r, 1_000_000_000, &mut st);
        }
        ct
    }

    #[test]
    fn lines_look_like_conntrack_tools() {
        let ct = table();
        let mut lines: Vec<String> = ct
            .entries()
            .map(|(_, e)| {
                format_entry(
                    e,
                    Some(e.expires_in_ms(1000) as u64 / 1000),
                    false,
                    false,
                    None,
                )
            })
            .collect();
        lines.sort();
        assert_eq!(
            lines,
            vec![
                "tcp      6 120 SYN_SENT src=192.0.2.2 dst=198.51.100.2 sport=40000 dport=80 [UNREPLIED] src=198.51.100.2 dst=192.0.2.2 sport=80 dport=40000 mark=0 use=1",
                "udp      17 30 src=192.0.2.2 dst=198.51.100.2 sport=5353 dport=53 src=198.51.100.2 dst=192.0.2.2 sport=53 dport=5353 mark=0 use=1",
            ]
        );
        let (_, e) = ct.entries().next().unwrap();
        assert_eq!(
            format_entry(e, Some(119), true, true, Some(EventKind::New)),
            "    [NEW] ipv4     2 tcp      6 119 SYN_SENT src=192.0.2.2 dst=198.51.100.2 sport=40000 dport=80 packets=1 bytes=40 [UNREPLIED] src=198.51.100.2 dst=192.0.2.2 sport=80 dport=40000 packets=0 bytes=0"
        );
        assert_eq!(
            format_entry(e, None, false, false, Some(EventKind::Destroy)),
            "[DESTROY] tcp      6 src=192.0.2.2 dst=198.51.100.2 sport=40000 dport=80 [UNREPLIED] src=198.51.100.2 dst=192.0.2.2 sport=80 dport=40000"
        );
        let f = parse(&args("-L -p udp")).unwrap().filter;
        assert_eq!(ct.entries().filter(|(_, e)| f.matches(e)).count(), 1);
        let f = parse(&args("-L --state SYN_SENT -r 198.51.100.2"))
            .unwrap()
            .filter;
        assert_eq!(ct.entries().filter(|(_, e)| f.matches(e)).count(), 1);
        let f = parse(&args("-L -u ASSURED")).unwrap().filter;
        assert_eq!(ct.entries().filter(|(_, e)| f.matches(e)).count(), 0);
    }

    #[test]
    fn stats_line_has_the_conntrack_tools_fields() {
        let st = WorkerStats {
            ct_invalid: 3,
            ct_new: 5,
            ct_early_drop: 2,
            ..Default::default()
        };
        assert_eq!(
            stats_line(0, &st),
            "cpu=0   \tfound=0 invalid=3 insert=5 insert_failed=0 drop=0 early_drop=2 error=0 search_restart=0 clash_resolve=0 chaintoolong=0 "
        );
    }
}
