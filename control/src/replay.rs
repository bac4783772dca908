//! `sluice replay`: captured frames through the same pipeline, offline and without root.
//!
//! The topology file (TOML) gives the appliance's interfaces, routes and static neighbours; each `--in
//! IFACE=FILE.pcap` makes the frames of that capture arrive on that interface, all captures merged by
//! timestamp. Out come one pcap per egress interface (`DIR/IFACE.pcap`, frames stamped with the time of
//! the packet that caused them) and `DIR/trace.jsonl`: one JSON object per input frame with every hook,
//! table, chain and rule it touched, the verdicts, what left where, and why it was dropped.

use anyhow::{anyhow, bail, Context, Result};
use dataplane::trace::{Event, TraceRecord};
use dataplane::wire::{self, ETH_HLEN};
use dataplane::{Action, Fib, InterfaceConfig, Pipeline, PipelineConfig, PortRole, Route};
use pcap_file::pcap::{PcapPacket, PcapReader, PcapWriter};
use rules::eval::{TraceEvent, TraceVerdict};
use rules::{CompiledRuleset, Verdict};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Debug, clap::Args)]
pub struct ReplayArgs {
    /// The nft ruleset.
    #[arg(long)]
    pub ruleset: PathBuf,
    /// The appliance's interfaces, addresses, routes and static neighbours (TOML).
    #[arg(long)]
    pub topology: PathBuf,
    /// IFACE=FILE.pcap: frames arriving on IFACE (repeat for each interface).
    #[arg(long = "in", value_name = "IFACE=PCAP", required = true)]
    pub inputs: Vec<String>,
    /// Where to write IFACE.pcap per egress interface and trace.jsonl.
    #[arg(long)]
    pub out: PathBuf,
    /// Keep the kernel's ICMP error rate limits (on by default; `--no-icmp-ratelimit` to lift them, as
    /// `sysctl net.ipv4.icmp_ratelimit=0 net.ipv4.icmp_msgs_per_sec=0` does).
    #[arg(long)]
    pub no_icmp_ratelimit: bool,
}

/// The topology file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    #[serde(default, rename = "interface")]
    pub interfaces: Vec<TopoIface>,
    #[serde(default, rename = "route")]
    pub routes: Vec<TopoRoute>,
    #[serde(default, rename = "neighbour")]
    pub neighbours: Vec<TopoNeigh>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopoIface {
    pub name: String,
    pub mac: String,
    #[serde(default)]
    pub ifindex: Option<u32>,
    #[serde(default = "default_mtu")]
    pub mtu: u32,
    /// `192.0.2.1/24`, `2001:db8::1/64`
    #[serde(default)]
    pub addresses: Vec<String>,
    /// `net.ipv4.conf.IF.send_redirects` (on, as the kernel's default).
    #[serde(default = "default_true")]
    pub send_redirects: bool,
}

fn default_mtu() -> u32 {
    1500
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopoRoute {
    /// `203.0.113.0/24` or `default`
    pub dst: String,
    pub via: Option<String>,
    pub dev: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopoNeigh {
    pub dev: String,
    pub ip: String,
    pub mac: String,
}

pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut mac {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

fn fmt_mac(m: &[u8]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn parse_prefix(s: &str) -> Result<(IpAddr, u8)> {
    let (a, p) = s.split_once('/').unwrap_or((s, ""));
    let addr: IpAddr = a.parse().with_context(|| format!("bad address {s}"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = if p.is_empty() {
        max
    } else {
        p.parse()
            .with_context(|| format!("bad prefix length in {s}"))?
    };
    if prefix > max {
        bail!("prefix length {prefix} too long in {s}");
    }
    Ok((addr, prefix))
}

impl Topology {
    pub fn load(path: &Path) -> Result<Topology> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("{}", path.display()))
    }

    fn iface_index(&self, name: &str) -> Result<usize> {
        self.interfaces
            .iter()
            .position(|i| i.name == name)
            .ok_or_else(|| anyhow!("no interface {name} in the topology"))
    }

    /// The FIB and the static neighbours `(iface, ip, mac)`.
    pub fn build(&self) -> Result<(Fib, Vec<(usize, Ipv4Addr, [u8; 6])>)> {
        let mut ifaces = Vec::new();
        for (i, t) in self.interfaces.iter().enumerate() {
            let mac =
                parse_mac(&t.mac).ok_or_else(|| anyhow!("bad MAC {} of {}", t.mac, t.name))?;
            let mut ipv4 = Vec::new();
            for a in &t.addresses {
                if let (IpAddr::V4(v4), p) = parse_prefix(a)? {
                    ipv4.push((v4, p));
                }
            }
            ifaces.push(InterfaceConfig {
                name: t.name.clone(),
                ifindex: t.ifindex.unwrap_or(i as u32 + 2),
                mac,
                mtu: t.mtu,
                ipv4,
            });
        }
        let mut routes = Vec::new();
        for r in &self.routes {
            let (dst, prefix) = if r.dst == "default" {
                (IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0)
            } else {
                parse_prefix(&r.dst)?
            };
            let IpAddr::V4(dst) = dst else { continue };
            let gateway = match &r.via {
                Some(g) => Some(
                    g.parse::<Ipv4Addr>()
                        .with_context(|| format!("bad gateway {g}"))?,
                ),
                None => None,
            };
            routes.push(Route {
                dst,
                prefix,
                gateway,
                iface: self.iface_index(&r.dev)?,
            });
        }
        let mut neigh = Vec::new();
        for n in &self.neighbours {
            let mac = parse_mac(&n.mac).ok_or_else(|| anyhow!("bad MAC {}", n.mac))?;
            if let Ok(ip) = n.ip.parse::<Ipv4Addr>() {
                neigh.push((self.iface_index(&n.dev)?, ip, mac));
            }
        }
        Ok((Fib::new(ifaces, &routes), neigh))
    }

    /// Adds the topology's IPv6 addresses and routes to `fib` (built by [`Topology::build`]) and returns
    /// the static IPv6 neighbours. A route's `dst = "default"` is IPv6 when its `via` is.
    pub fn build6(&self, fib: &mut Fib) -> Result<Vec<(usize, Ipv6Addr, [u8; 6])>> {
        for (i, t) in self.interfaces.iter().enumerate() {
            for a in &t.addresses {
                if let (IpAddr::V6(v6), p) = parse_prefix(a)? {
                    fib.add_ipv6(i, v6, p);
                }
            }
        }
        for r in &self.routes {
            let via6 = match &r.via {
                Some(g) => g.parse::<Ipv6Addr>().ok(),
                None => None,
            };
            let (dst, prefix) = if r.dst == "default" {
                match via6 {
                    Some(_) => (Ipv6Addr::UNSPECIFIED, 0),
                    None => continue,
                }
            } else {
                match parse_prefix(&r.dst)? {
                    (IpAddr::V6(d), p) => (d, p),
                    _ => continue,
                }
            };
            fib.add_route6(dataplane::Route6 {
                dst,
                prefix,
                gateway: via6,
                iface: self.iface_index(&r.dev)?,
            });
        }
        let mut neigh = Vec::new();
        for n in &self.neighbours {
            let mac = parse_mac(&n.mac).ok_or_else(|| anyhow!("bad MAC {}", n.mac))?;
            if let Ok(ip) = n.ip.parse::<Ipv6Addr>() {
                neigh.push((self.iface_index(&n.dev)?, ip, mac));
            }
        }
        Ok(neigh)
    }
}

/// A short tcpdump-like line for a frame.
pub fn summary(frame: &[u8]) -> String {
    let Ok(eth) = wire::parse_eth(frame) else {
        return format!("truncated frame ({} bytes)", frame.len());
    };
    let ll = format!("{} > {}", fmt_mac(&eth.src), fmt_mac(&eth.dst));
    match eth.ethertype {
        wire::ETHERTYPE_ARP => match wire::ArpRepr::parse(&frame[ETH_HLEN..]) {
            Ok(a) if a.op == wire::ARP_REQUEST => {
                format!("{ll} arp who-has {} tell {}", a.target_ip, a.sender_ip)
            }
            Ok(a) => format!(
                "{ll} arp reply {} is-at {}",
                a.sender_ip,
                fmt_mac(&a.sender_mac)
            ),
            Err(_) => format!("{ll} arp (malformed)"),
        },
        wire::ETHERTYPE_IPV4 => match wire::parse_ipv4(frame, ETH_HLEN) {
            Ok(ip) => {
                let l4 = match ip.proto {
                    wire::IPPROTO_TCP => {
                        let f = ip.tcp_flags;
                        let flags: String = [
                            (wire::TCP_FIN, 'F'),
                            (wire::TCP_SYN, 'S'),
                            (wire::TCP_RST, 'R'),
                            (0x08, 'P'),
                            (wire::TCP_ACK, '.'),
                        ]
                        .iter()
                        .filter(|(b, _)| f & b != 0)
                        .map(|(_, c)| *c)
                        .collect();
                        format!("tcp {} > {} [{flags}]", ip.sport, ip.dport)
                    }
                    wire::IPPROTO_UDP => format!("udp {} > {}", ip.sport, ip.dport),
                    wire::IPPROTO_ICMP => match ip.icmp {
                        Some(i) => format!("icmp type {} code {}", i.ty, i.code),
                        None => "icmp".into(),
                    },
                    p => format!("proto {p}"),
                };
                format!(
                    "{ll} ip {} > {} ttl {} len {} {l4}",
                    ip.src, ip.dst, ip.ttl, ip.total_len
                )
            }
            Err(e) => format!("{ll} ip ({e})"),
        },
        wire::ETHERTYPE_IPV6 => match dataplane::ipv6::parse_ipv6(frame, ETH_HLEN) {
            Ok(ip) => {
                let l4 = match (ip.proto, ip.icmp) {
                    (wire::IPPROTO_TCP, _) => {
                        format!(
                            "tcp {} > {} flags {:#04x}",
                            ip.sport, ip.dport, ip.tcp_flags
                        )
                    }
                    (wire::IPPROTO_UDP, _) => format!("udp {} > {}", ip.sport, ip.dport),
                    (_, Some(i)) => format!("icmp6 type {} code {}", i.ty, i.code),
                    (p, _) => format!("proto {p}"),
                };
                format!(
                    "{ll} ip6 {} > {} hlim {} len {} {l4}",
                    ip.src, ip.dst, ip.hop_limit, ip.total_len
                )
            }
            Err(e) => format!("{ll} ip6 ({e})"),
        },
        t => format!("{ll} ethertype 0x{t:04x} len {}", frame.len()),
    }
}

fn verdict_str(v: Verdict) -> String {
    match v {
        Verdict::Accept => "accept".into(),
        Verdict::Drop => "drop".into(),
        Verdict::Reject(k) => format!("reject {k:?}").to_lowercase(),
        Verdict::Stolen => "stolen".into(),
    }
}

fn trace_verdict_str(rs: &CompiledRuleset, v: TraceVerdict) -> String {
    match v {
        TraceVerdict::Accept => "accept".into(),
        TraceVerdict::Drop => "drop".into(),
        TraceVerdict::Reject(k) => format!("reject {k:?}").to_lowercase(),
        TraceVerdict::Stolen => "stolen".into(),
        TraceVerdict::Continue => "continue".into(),
        TraceVerdict::Return => "return".into(),
        TraceVerdict::Jump(c) => format!("jump {}", rs.chain_name(c).2),
        TraceVerdict::Goto(c) => format!("goto {}", rs.chain_name(c).2),
    }
}

/// One trace record as JSON (`None` for records that only matter to `nft monitor trace`).
pub fn record_json(rs: &CompiledRuleset, r: &TraceRecord) -> Option<Value> {
    let chain_obj = |c: rules::ChainId| {
        let (f, t, n) = rs.chain_name(c);
        (f.to_string(), t.to_string(), n.to_string())
    };
    let mut v = match &r.event {
        Event::Packet { .. } => return None,
        Event::Conntrack { state } => json!({"event": "conntrack", "ct_state": state}),
        Event::Chain(ev) => match *ev {
            TraceEvent::Rule {
                chain,
                rule,
                verdict,
            } => {
                let (f, t, n) = chain_obj(chain);
                let ast = &rs.chain_ast(chain).rules[rule as usize];
                json!({"event": "rule", "family": f, "table": t, "chain": n, "rule": rule,
                       "handle": ast.handle, "text": rules::print_rule(ast, &Default::default()),
                       "verdict": trace_verdict_str(rs, verdict)})
            }
            TraceEvent::NoMatch { chain, rule } => {
                let (f, t, n) = chain_obj(chain);
                let ast = &rs.chain_ast(chain).rules[rule as usize];
                json!({"event": "nomatch", "family": f, "table": t, "chain": n, "rule": rule,
                       "handle": ast.handle, "text": rules::print_rule(ast, &Default::default())})
            }
            TraceEvent::Return { chain } => {
                let (f, t, n) = chain_obj(chain);
                json!({"event": "return", "family": f, "table": t, "chain": n})
            }
            TraceEvent::Policy { chain, verdict } => {
                let (f, t, n) = chain_obj(chain);
                json!({"event": "policy", "family": f, "table": t, "chain": n,
                       "verdict": verdict_str(verdict)})
            }
        },
    };
    let o = v.as_object_mut().unwrap();
    o.insert("id".into(), json!(r.id));
    o.insert("hook".into(), json!(r.hook.name()));
    if r.mark != 0 {
        o.insert("mark".into(), json!(r.mark));
    }
    Some(v)
}

struct Input {
    iface: usize,
    packets: Vec<(Duration, Vec<u8>)>,
}

fn read_pcap(path: &Path) -> Result<Vec<(Duration, Vec<u8>)>> {
    let f = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut r = PcapReader::new(f).with_context(|| format!("{} is not a pcap", path.display()))?;
    let mut out = Vec::new();
    while let Some(p) = r.next_packet() {
        let p = p.with_context(|| format!("reading {}", path.display()))?;
        out.push((p.timestamp, p.data.into_owned()));
    }
    Ok(out)
}

/// Runs the replay; returns how many input frames were processed.
pub fn run(args: &ReplayArgs) -> Result<usize> {
    let rs = Arc::new(crate::ruleset::load(&args.ruleset)?);
    let topo = Topology::load(&args.topology)?;
    let (mut fib, neigh) = topo.build()?;
    let neigh6 = topo.build6(&mut fib)?;
    let names: Vec<String> = fib.interfaces.iter().map(|i| i.name.clone()).collect();
    let mut inputs = Vec::new();
    for spec in &args.inputs {
        let (iface, file) = spec
            .split_once('=')
            .ok_or_else(|| anyhow!("--in wants IFACE=FILE.pcap, got {spec}"))?;
        inputs.push(Input {
            iface: topo.iface_index(iface)?,
            packets: read_pcap(Path::new(file))?,
        });
    }
    // Merge by timestamp; ties keep the order of the --in arguments, then of the file.
    let mut frames: Vec<(Duration, usize, usize, Vec<u8>)> = Vec::new();
    for (k, inp) in inputs.into_iter().enumerate() {
        for (ts, data) in inp.packets {
            frames.push((ts, k, inp.iface, data));
        }
    }
    frames.sort_by_key(|f| (f.0, f.1));

    let mut config = PipelineConfig {
        send_redirects: topo.interfaces.iter().map(|i| i.send_redirects).collect(),
        ..Default::default()
    };
    if args.no_icmp_ratelimit {
        config.icmp = dataplane::icmp::IcmpRateLimit {
            per_dest_ns: 0,
            msgs_per_sec: 0,
            msgs_burst: 0,
            per_dest6_ns: 0,
            ..Default::default()
        };
    }
    let roles = vec![
        PortRole {
            kernel_shares: false
        };
        names.len()
    ];
    let mut p = Pipeline::new(Arc::new(fib), roles, &config);
    for (i, ip, mac) in neigh {
        p.add_static_neighbour(i, ip, mac);
    }
    for (i, ip, mac) in neigh6 {
        p.add_static_neighbour6(i, ip, mac);
    }
    p.use_generation(&rs);
    p.trace.all = true;

    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let mut writers: BTreeMap<usize, PcapWriter<BufWriter<File>>> = BTreeMap::new();
    let mut trace = BufWriter::new(
        File::create(args.out.join("trace.jsonl")).context("cannot create trace.jsonl")?,
    );
    let mut write_out = |iface: usize, ts: Duration, frame: &[u8]| -> Result<()> {
        if !writers.contains_key(&iface) {
            let path = args.out.join(format!("{}.pcap", names[iface]));
            let f =
                File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
            writers.insert(iface, PcapWriter::new(BufWriter::new(f))?);
        }
        writers
            .get_mut(&iface)
            .unwrap()
            .write_packet(&PcapPacket::new(ts, frame.len() as u32, frame))?;
        Ok(())
    };

    let base = frames.first().map(|f| f.0).unwrap_or_default();
    let clock = |ts: Duration| (ts.saturating_sub(base)).as_nanos() as u64 + 1_000_000_000;
    let mut next_timer = 0u64;
    let n = frames.len();
    for (seq, (ts, _, iface, data)) in frames.into_iter().enumerate() {
        let now = clock(ts);
        let mut outputs = Vec::new();
        while next_timer <= now {
            p.on_timer(next_timer.max(1), &rs);
            next_timer += 100_000_000;
        }
        for (port, f) in p.take_emitted() {
            outputs.push((port, f));
        }
        p.trace.records.clear();
        let before = p.stats.values();
        let mut slot = data.clone();
        slot.resize(data.len().max(hw::FRAME_CAPACITY), 0);
        let action = p.process(&mut slot, data.len(), iface, false, &rs, now);
        let result = match action {
            Action::Forward(port) => {
                outputs.push((port, slot[..data.len()].to_vec()));
                format!("forward {}", names[port])
            }
            Action::Drop => "drop".into(),
            Action::Consumed => "consumed".into(),
        };
        outputs.extend(p.take_emitted());
        let reasons: Vec<&str> = dataplane::WorkerStats::FIELDS
            .iter()
            .zip(before.iter().zip(p.stats.values()))
            .filter(|(_, (a, b))| **a != *b)
            .map(|((name, _), _)| *name)
            .filter(|n| *n != "rx_frames")
            .collect();
        let events: Vec<Value> = p
            .trace
            .records
            .iter()
            .filter_map(|r| record_json(&rs, r))
            .collect();
        let mut sent = Vec::new();
        for (port, f) in &outputs {
            write_out(*port, ts, f)?;
            sent.push(json!({"out": names[*port], "frame": summary(f)}));
        }
        let line = json!({
            "n": seq + 1,
            "time": ts.as_secs_f64(),
            "in": names[iface],
            "frame": summary(&data),
            "events": events,
            "result": result,
            "counters": reasons,
            "sent": sent,
        });
        writeln!(trace, "{line}")?;
    }
    // Let pending neighbour resolutions run out, as a live appliance would after the capture ends.
    let end = next_timer + 5_000_000_000;
    while next_timer <= end {
        p.on_timer(next_timer, &rs);
        next_timer += 100_000_000;
    }
    let leftovers: Vec<_> = p.take_emitted().collect();
    let last_ts = base + Duration::from_nanos(next_timer.saturating_sub(1_000_000_000));
    for (port, f) in &leftovers {
        write_out(*port, last_ts, f)?;
    }
    trace.flush()?;
    for (_, w) in writers {
        w.into_writer().flush()?;
    }
    Ok(n)
}
