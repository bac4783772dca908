//! `sluice run`: the appliance on real interfaces.
//!
//! Reads the namespace's interfaces and routes from the kernel, opens one port per (interface, RX queue),
//! starts one pinned poll-mode worker per queue, serves the control socket, and swaps rulesets atomically on
//! SIGHUP or `reload`: a file with an error is reported and the running ruleset stays.

use crate::{ctl, kernel, ruleset};
use anyhow::{bail, Context, Result};
use arc_swap::ArcSwap;
use dataplane::{
    Command, Fib, Pipeline, PipelineConfig, PortRole, Snapshot, Worker, WorkerConfig, WorkerStats,
};
use hw::Port;
use rules::{CompiledRuleset, CounterValue};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// AF_XDP sockets, one per RX queue, with sluice's XDP program (frames for the box pass to the kernel).
    Xdp,
    /// AF_PACKET sockets: no XDP needed; the kernel sees every frame too.
    Packet,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Attach {
    Native,
    Skb,
}

#[derive(Clone, Debug, clap::Args)]
pub struct RunArgs {
    /// Interface to take over (repeat for each).
    #[arg(long = "iface", required = true)]
    pub ifaces: Vec<String>,
    /// The nft ruleset to load (and reload on SIGHUP). Without it sluice starts with an empty ruleset, to be
    /// filled with `sluice nft`.
    #[arg(long)]
    pub ruleset: Option<PathBuf>,
    /// Control socket path.
    #[arg(long, default_value = ctl::DEFAULT_SOCKET)]
    pub control: PathBuf,
    #[arg(long, value_enum, default_value = "xdp")]
    pub backend: Backend,
    /// XDP attach mode.
    #[arg(long, value_enum, default_value = "native")]
    pub attach: Attach,
    /// At most this many workers (one per RX queue).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Frames per batch.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Maximum conntrack entries for the whole appliance (`net.netfilter.nf_conntrack_max`); each worker
    /// gets an equal share.
    #[arg(long)]
    pub conntrack_max: Option<u32>,
    /// A conntrack setting by its kernel sysctl name, e.g.
    /// `--sysctl net.netfilter.nf_conntrack_tcp_timeout_established=3600` (repeat for each).
    #[arg(long = "sysctl", value_name = "NAME=VALUE")]
    pub sysctls: Vec<String>,
    /// Run INPUT and OUTPUT for the box's own traffic too: frames for the box's addresses go through
    /// sluice's PREROUTING and INPUT to the kernel over this TUN device, and the kernel's own packets come
    /// back through it to OUTPUT and POSTROUTING (the exception path; needs the xdp backend). Without it,
    /// the kernel takes the box's own traffic directly and sluice's INPUT/OUTPUT chains do not see it.
    #[arg(long, value_name = "NAME")]
    pub host_tun: Option<String>,
}

/// The publishing record `stats` reports: how many generations have been stored and where the last applied
/// one spent its time (microseconds, the daemon's monotonic clock, from the request's arrival to the store).
#[derive(Default)]
struct Published {
    generation: u64,
    /// Waiting for the writer lock, and reading the live generation's counters (skipped when the text
    /// begins with `flush ruleset`).
    base_us: u64,
    /// Parsing and checking the commands against the base.
    parse_us: u64,
    compile_us: u64,
    /// Deriving the generation's [`rules::Properties`] (so that workers switch without walking the rules).
    prepare_us: u64,
    /// Steering ports and the store into the `ArcSwap`: from here the workers' next batch runs the new
    /// generation.
    publish_us: u64,
    total_us: u64,
}

/// Whether a base chain hooks input or output (the box's own traffic).
fn has_local_hooks(rs: &rules::Ruleset) -> bool {
    rs.tables.iter().flat_map(|t| &t.chains).any(|c| {
        c.base
            .as_ref()
            .is_some_and(|b| matches!(b.hook, rules::Hook::Input | rules::Hook::Output))
    })
}

/// Whether nft source text begins with `flush ruleset` (all families): then the running ruleset does not
/// matter to the result, so it need not be copied.
fn begins_with_flush_ruleset(text: &str) -> bool {
    let mut rest = text;
    loop {
        rest = rest.trim_start();
        if let Some(comment) = rest.strip_prefix('#') {
            rest = comment.split_once('\n').map_or("", |(_, r)| r);
        } else {
            break;
        }
    }
    let mut words = rest.split(|c: char| c == '\n' || c == ';' || c == '#');
    let first = words.next().unwrap_or("");
    first.split_whitespace().eq(["flush", "ruleset"])
}

struct Daemon {
    ruleset_path: Option<PathBuf>,
    live: Arc<ArcSwap<CompiledRuleset>>,
    workers: Vec<Mutex<Sender<Command>>>,
    /// Serialises writers: each builds the next generation from the live one.
    writer: Mutex<()>,
    /// Generations published so far (the first ruleset is generation 1), and what the last `nft-apply` cost.
    published: Mutex<Published>,
    conntrack: crate::conntrack::Server,
    /// AF_XDP backend: local traffic goes to the kernel unless steered.
    xdp: bool,
    /// The exception path (`--host-tun`): the box's own traffic crosses sluice's INPUT and OUTPUT.
    host_path: bool,
    /// The interfaces sluice runs on, in port order.
    ifaces: Vec<String>,
    /// Their XDP programs (xdp backend), whose local-address maps follow the namespace.
    programs: Vec<Arc<hw::xdp::XdpProgram>>,
    /// The exception path's TUN.
    host_tun: Option<String>,
    /// Conntrack settings by sysctl name (`sluice ctl sysctl [NAME=VALUE…]`).
    sysctls: Mutex<dataplane::conntrack::Sysctls>,
    trace: crate::trace::TraceServer,
    /// the workers' clock origin (their `now` is nanoseconds since it)
    start: Instant,
}

impl Daemon {
    /// The workers' clock.
    fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    /// With AF_XDP, port forwards to the box's own addresses must reach sluice, not the kernel.
    fn steer_ports(&self, rs: &CompiledRuleset) {
        if !self.host_path && has_local_hooks(rs.ruleset()) {
            tracing::warn!(
                "the ruleset has input or output chains, but without --host-tun the box's own traffic \
                 reaches the kernel directly and those chains do not see it"
            );
        }
        if self.xdp {
            if let Err(e) = hw::xdp::steer_local_ports(&crate::steer::forwarded_ports(rs.ruleset()))
            {
                tracing::warn!("cannot steer port forwards to sluice: {e}");
            }
        }
    }

    /// Reads the namespace's addresses and routes again and gives the workers the new FIB; the XDP
    /// programs' local addresses (or the exception path's routes) follow.
    fn refresh_kernel_view(&self) -> Result<()> {
        let (fib, _, _) = read_fib(&self.ifaces)?;
        match &self.host_tun {
            Some(tun) => {
                crate::host::mirror_routes(tun, &fib.interfaces)?;
                let link_local = link_local_ipv6()?;
                for p in &self.programs {
                    p.set_local_addresses6(&link_local)?;
                }
            }
            None if self.xdp => {
                let local = kernel::all_local_ipv4()?;
                let local6 = hw::iface::local_ipv6_addrs()?;
                for p in &self.programs {
                    p.set_local_addresses(&local)?;
                    p.set_local_addresses6(&local6)?;
                }
            }
            None => {}
        }
        let fib = Arc::new(fib);
        let (done, acks) = channel();
        let mut asked = 0;
        for w in &self.workers {
            if w.lock()
                .unwrap()
                .send(Command::SetFib(fib.clone(), done.clone()))
                .is_ok()
            {
                asked += 1;
            }
        }
        // the reload is done when every worker routes with the new FIB (a sleeping worker answers
        // within its poll timeout)
        for _ in 0..asked {
            if acks.recv_timeout(Duration::from_secs(2)).is_err() {
                tracing::warn!("a worker did not take the new addresses and routes in 2 s");
                break;
            }
        }
        Ok(())
    }

    fn reload(&self) -> std::result::Result<String, String> {
        // addresses and routes first: a reload is how an operator says the namespace changed
        if let Err(e) = self.refresh_kernel_view() {
            tracing::warn!("cannot re-read addresses and routes: {e:#}");
        }
        let Some(path) = &self.ruleset_path else {
            return Err(
                "no ruleset file was given to `sluice run`; use `sluice nft -f FILE`".into(),
            );
        };
        let _w = self.writer.lock().unwrap();
        let next = ruleset::load(path).map_err(|e| e.to_string())?;
        next.properties();
        self.steer_ports(&next);
        self.publish(next);
        self.published.lock().unwrap().generation += 1;
        Ok(format!("loaded {}\n", path.display()))
    }

    /// Makes `next` the live generation. The generation it replaces is freed on a thread of the control plane,
    /// not by whichever worker happens to drop the last reference: freeing a 100k-rule generation takes tens
    /// of milliseconds, which a worker would take from packet processing (its RX ring overflows meanwhile).
    fn publish(&self, next: CompiledRuleset) {
        let old = self.live.swap(Arc::new(next));
        let reaper = std::thread::Builder::new()
            .name("sluice-reap".into())
            .spawn(move || {
                // Workers hold a generation for one batch (microseconds); other holders (a listing) briefly.
                let deadline = Instant::now() + Duration::from_secs(10);
                while Arc::strong_count(&old) > 1 && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_micros(500));
                }
                drop(old);
            });
        if let Err(e) = reaper {
            tracing::warn!("cannot start a thread to free the old generation: {e}");
        }
    }

    /// Applies nft commands to the live ruleset as one transaction and publishes the result (unless
    /// `check`). Rules that stay keep their counts.
    fn apply(&self, name: &str, text: &str, check: bool) -> std::result::Result<String, String> {
        let t0 = Instant::now();
        let _w = self.writer.lock().unwrap();
        let base = if begins_with_flush_ruleset(text) {
            self.live.load().ruleset().flushed()
        } else {
            let (live, counters) = self.counters();
            let mut base = live.ruleset().clone();
            base.set_counter_values(&counters);
            // quotas and named counters go on from where they are
            live.write_state(&mut base, self.now());
            base
        };
        let t1 = Instant::now();
        let next = rules::apply_owned(base, text, name, &crate::nft::FsLoader)
            .map_err(|d| d.to_string())?;
        let t2 = Instant::now();
        let compiled = rules::compile(next).map_err(|d| d.to_string())?;
        let t3 = Instant::now();
        if check {
            return Ok(String::new());
        }
        compiled.properties();
        let t4 = Instant::now();
        self.steer_ports(&compiled);
        self.publish(compiled);
        let t5 = Instant::now();
        let us = |a: Instant, b: Instant| (b - a).as_micros() as u64;
        let mut p = self.published.lock().unwrap();
        p.generation += 1;
        p.base_us = us(t0, t1);
        p.parse_us = us(t1, t2);
        p.compile_us = us(t2, t3);
        p.prepare_us = us(t3, t4);
        p.publish_us = us(t4, t5);
        p.total_us = us(t0, t5);
        Ok(String::new())
    }

    fn snapshots(&self, conntrack: bool) -> Vec<Snapshot> {
        let (tx, rx) = channel();
        let mut asked = 0;
        for w in &self.workers {
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
        (0..asked)
            .filter_map(|_| rx.recv_timeout(Duration::from_secs(2)).ok())
            .collect()
    }

    /// Rule counters of the live generation summed over workers.
    fn counters(&self) -> (Arc<CompiledRuleset>, Vec<CounterValue>) {
        let rs = self.live.load_full();
        let gen = dataplane::pipeline::generation_id(&rs);
        let mut sum = rs.initial_counters();
        let initial = sum.clone();
        for s in self.snapshots(false) {
            if s.generation == gen && s.counters.len() == sum.len() {
                for (i, c) in s.counters.iter().enumerate() {
                    // Each worker starts from the literal values; count them once.
                    sum[i].packets += c.packets - initial[i].packets;
                    sum[i].bytes += c.bytes - initial[i].bytes;
                }
            }
        }
        (rs, sum)
    }

    fn handle(&self, line: &str, body: &str) -> std::result::Result<String, String> {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["ping"] => Ok(String::new()),
            ["reload"] => self.reload(),
            ["list", "ruleset", flags @ ..] | ["nft-list", flags @ ..] => {
                let (rs, counters) = self.counters();
                let what = if words[0] == "list" {
                    "ruleset"
                } else {
                    body.trim()
                };
                let mut view = rs.ruleset().clone();
                rs.write_state(&mut view, self.now());
                crate::nft::list(view, flags, what, &counters)
            }
            ["nft-apply", name] => self.apply(name, body, false),
            ["nft-check", name] => self.apply(name, body, true),
            ["stats"] => {
                let mut total = WorkerStats::default();
                let snaps = self.snapshots(false);
                let mut ct = 0;
                for s in &snaps {
                    total.add(&s.stats);
                    ct += s.conntrack_len;
                }
                let mut out = format!("workers {}\nconntrack_entries {ct}\n", snaps.len());
                {
                    let p = self.published.lock().unwrap();
                    out.push_str(&format!(
                        "ruleset_generation {}\nlast_apply_base_us {}\nlast_apply_parse_us {}\n\
                         last_apply_compile_us {}\nlast_apply_prepare_us {}\nlast_apply_publish_us {}\n\
                         last_apply_total_us {}\n",
                        p.generation,
                        p.base_us,
                        p.parse_us,
                        p.compile_us,
                        p.prepare_us,
                        p.publish_us,
                        p.total_us
                    ));
                }
                for ((name, _), v) in WorkerStats::FIELDS.iter().zip(total.values()) {
                    out.push_str(&format!("{name} {v}\n"));
                }
                Ok(out)
            }
            ["conntrack", args @ ..] => self.conntrack.handle(&self.workers, args),
            ["sysctl"] => Ok(self.sysctls.lock().unwrap().dump()),
            ["sysctl", assignments @ ..] => {
                let mut cfg = self.sysctls.lock().unwrap();
                let mut next = cfg.clone();
                for a in assignments {
                    next.apply(a)?;
                }
                let share = next.max.div_ceil(self.workers.len().max(1) as u32);
                for w in &self.workers {
                    let _ = w
                        .lock()
                        .unwrap()
                        .send(Command::SetSysctls(next.clone(), share));
                }
                *cfg = next;
                Ok(assignments
                    .iter()
                    .map(|a| format!("{}\n", a.replace('=', " = ")))
                    .collect())
            }
            ["trace-events", seq] => {
                let seq = seq
                    .parse()
                    .map_err(|_| format!("bad sequence number {seq}"))?;
                Ok(self.trace.since(&self.workers, seq))
            }
            ["conntrack-events", seq] => {
                let seq = seq
                    .parse()
                    .map_err(|_| format!("bad sequence number {seq}"))?;
                Ok(self.conntrack.events_since(&self.workers, seq))
            }
            _ => Err(format!("unknown request: {line}")),
        }
    }
}

/// A seed for the conntrack hash, so flows cannot be crafted to collide.
fn random_seed() -> u64 {
    let mut b = [0u8; 8];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .is_err()
    {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        return t.as_nanos() as u64 ^ std::process::id() as u64;
    }
    u64::from_ne_bytes(b)
}

/// The ports of each queue, and the XDP program of each interface (xdp backend).
type OpenPorts = (Vec<Vec<Box<dyn Port>>>, Vec<Arc<hw::xdp::XdpProgram>>);

fn open_ports(args: &RunArgs, queues: u32) -> Result<OpenPorts> {
    let mut per_queue: Vec<Vec<Box<dyn Port>>> = (0..queues).map(|_| Vec::new()).collect();
    let mut programs = Vec::new();
    match args.backend {
        Backend::Packet => {
            for name in &args.ifaces {
                let port = hw::packet::PacketPort::open(name)
                    .with_context(|| format!("cannot open {name}"))?;
                per_queue[0].push(Box::new(port));
            }
        }
        Backend::Xdp => {
            // with the exception path, every frame for the box comes to sluice first
            let host = args.host_tun.is_some();
            let local = if host {
                Vec::new()
            } else {
                kernel::all_local_ipv4()?
            };
            let attach = match args.attach {
                Attach::Native => hw::xdp::AttachMode::Native,
                Attach::Skb => hw::xdp::AttachMode::Skb,
            };
            for name in &args.ifaces {
                for (q, ports) in per_queue.iter_mut().enumerate() {
                    let cfg = hw::xdp::XdpConfig {
                        attach_mode: attach,
                        ..Default::default()
                    }
                    .queue(q as u32);
                    let port = hw::xdp::XdpPort::open(name, &cfg).with_context(|| {
                        format!("cannot open AF_XDP socket on {name} queue {q}")
                    })?;
                    if q == 0 {
                        port.program().set_local_addresses(&local)?;
                        if host {
                            port.program().set_local_addresses6(&link_local_ipv6()?)?;
                        }
                        programs.push(port.program().clone());
                    }
                    ports.push(Box::new(port));
                }
            }
        }
    }
    Ok((per_queue, programs))
}

/// The box's IPv6 link-local addresses. With the exception path they still go to the kernel directly: a
/// link-local destination is only the box's on its own link, which the TUN is not (the kernel would not
/// take it from there).
fn link_local_ipv6() -> Result<Vec<std::net::Ipv6Addr>> {
    Ok(hw::iface::local_ipv6_addrs()?
        .into_iter()
        .filter(|a| a.segments()[0] & 0xffc0 == 0xfe80)
        .collect())
}

/// The FIB of the interfaces `names` (in that order) from the namespace's addresses and routes, with
/// the permanent neighbours of both families.
#[allow(clippy::type_complexity)]
fn read_fib(
    names: &[String],
) -> Result<(
    Fib,
    Vec<(usize, std::net::Ipv4Addr, [u8; 6])>,
    Vec<(usize, std::net::Ipv6Addr, [u8; 6])>,
)> {
    let ifaces = kernel::interfaces(names)?;
    let routes = kernel::routes(&ifaces)?;
    let static_neighbours = kernel::permanent_neighbours(&ifaces)?;
    let static_neighbours6 = kernel::permanent_neighbours6(&ifaces)?;
    let addrs6 = kernel::ipv6_addresses(&ifaces)?;
    let routes6 = kernel::routes6(&ifaces)?;
    let mut fib = Fib::new(ifaces, &routes);
    for &(iface, addr, prefix) in &addrs6 {
        fib.add_ipv6(iface, addr, prefix);
    }
    for r in routes6 {
        fib.add_route6(r);
    }
    Ok((fib, static_neighbours, static_neighbours6))
}

pub fn run(args: RunArgs) -> Result<()> {
    if args.host_tun.is_some() && args.backend != Backend::Xdp {
        bail!("--host-tun needs the xdp backend (with AF_PACKET the kernel receives every frame itself)");
    }
    let first = match &args.ruleset {
        Some(path) => ruleset::load(path)?,
        None => rules::compile(&rules::Ruleset::default()).map_err(|d| anyhow::anyhow!("{d}"))?,
    };
    let (fib, static_neighbours, static_neighbours6) = read_fib(&args.ifaces)?;
    let icmp_limits = kernel::icmp_rate_limit();
    let send_redirects = kernel::send_redirects(&fib.interfaces);
    let fib = Arc::new(fib);

    let mut queues = match args.backend {
        Backend::Packet => 1,
        Backend::Xdp => {
            let mut q = u32::MAX;
            for name in &args.ifaces {
                q = q.min(
                    hw::iface::lookup(name)
                        .with_context(|| format!("interface {name}"))?
                        .rx_queues,
                );
            }
            q.max(1)
        }
    };
    if let Some(w) = args.workers {
        queues = queues.min(w.max(1) as u32);
    }
    let (per_queue, programs) = open_ports(&args, queues)?;
    let (host, mut host_queues) = match &args.host_tun {
        Some(name) => {
            let (h, qs) = crate::host::HostPath::setup(name, &fib.interfaces, per_queue.len())?;
            (Some(h), qs.into_iter().map(Some).collect())
        }
        None => (None, Vec::new()),
    };

    let mut sysctls = dataplane::conntrack::Sysctls::default();
    for a in &args.sysctls {
        sysctls.apply(a).map_err(anyhow::Error::msg)?;
    }
    if let Some(m) = args.conntrack_max {
        sysctls.max = m;
    }
    let nworkers = per_queue.len() as u32;
    let hash_seed = random_seed();

    let live = Arc::new(ArcSwap::from_pointee(first));
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let mut senders = Vec::new();
    let mut threads = Vec::new();
    let ncores = core_affinity::get_core_ids().map(|c| c.len()).unwrap_or(1);
    let mut handoff = dataplane::handoff::mesh(per_queue.len(), 1024).into_iter();
    // `ct count`s are global: one set of counts for every worker
    let conncount: Arc<rules::eval::ConnCounts> = Default::default();
    for (id, ports) in per_queue.into_iter().enumerate() {
        let roles = ports
            .iter()
            .map(|p| PortRole {
                kernel_shares: p.kernel_shares_interface() && host.is_none(),
            })
            .collect();
        let mut pipeline = Pipeline::new(
            fib.clone(),
            roles,
            &PipelineConfig {
                conntrack: sysctls.clone(),
                workers: nworkers,
                hash_seed,
                icmp: icmp_limits.clone(),
                conncount: conncount.clone(),
                host_path: host.is_some(),
                send_redirects: send_redirects.clone(),
            },
        );
        for &(iface, ip, mac) in &static_neighbours6 {
            pipeline.add_static_neighbour6(iface, ip, mac);
        }
        for &(iface, ip, mac) in &static_neighbours {
            pipeline.add_static_neighbour(iface, ip, mac);
        }
        let (tx, rx) = channel();
        senders.push(Mutex::new(tx));
        let worker = Worker::new(
            id,
            ports,
            pipeline,
            live.clone(),
            rx,
            WorkerConfig {
                batch_size: args.batch,
                ..Default::default()
            },
        );
        let worker = match handoff.next() {
            Some(end) if nworkers > 1 => worker.with_handoff(end),
            _ => worker,
        };
        let worker = match host_queues.get_mut(id).and_then(Option::take) {
            Some(q) => worker.with_host(q),
            None => worker,
        };
        let stop = stop.clone();
        let core = (id + 1) % ncores;
        threads.push(
            std::thread::Builder::new()
                .name(format!("sluice-w{id}"))
                .spawn(move || {
                    if !hw::pin_current_thread(core) {
                        tracing::warn!("worker {id}: could not pin to core {core}");
                    }
                    let clock = move || start.elapsed().as_nanos() as u64;
                    worker.run(&stop, &clock);
                })?,
        );
    }

    let daemon = Arc::new(Daemon {
        ruleset_path: args.ruleset.clone(),
        live,
        workers: senders,
        writer: Mutex::new(()),
        start,
        published: Mutex::new(Published {
            generation: 1,
            ..Default::default()
        }),
        trace: Default::default(),
        conntrack: crate::conntrack::Server {
            acct: sysctls.acct,
            ..Default::default()
        },
        xdp: args.backend == Backend::Xdp,
        host_path: host.is_some(),
        sysctls: Mutex::new(sysctls.clone()),
        ifaces: args.ifaces.clone(),
        programs,
        host_tun: host.as_ref().map(|h| h.tun().to_string()),
    });
    let first = daemon.live.load_full();
    daemon.steer_ports(&first);
    let d = daemon.clone();
    // The control thread parses and compiles new generations: keep it off the workers' cores when there are
    // cores left over, so that a ruleset swap takes no CPU time from packet processing.
    let spare: Vec<usize> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .iter()
        .enumerate()
        .filter(|(i, _)| !(0..nworkers as usize).any(|w| (w + 1) % ncores == *i))
        .map(|(_, c)| c.id)
        .collect();
    ctl::serve(
        &args.control,
        Box::new(move |line, body| d.handle(line, body)),
        spare,
    )?;

    let hup = Arc::new(AtomicBool::new(false));
    let term = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, hup.clone())?;
    signal_hook::flag::register(signal_hook::consts::SIGTERM, term.clone())?;
    signal_hook::flag::register(signal_hook::consts::SIGINT, term.clone())?;
    eprintln!(
        "sluice: running on {} ({:?} backend{}, {} worker{}), control socket {}",
        args.ifaces.join(", "),
        args.backend,
        match &host {
            Some(h) => format!(", the box's own traffic through {}", h.tun()),
            None => String::new(),
        },
        threads.len(),
        if threads.len() == 1 { "" } else { "s" },
        args.control.display()
    );
    while !term.load(Ordering::Relaxed) {
        if hup.swap(false, Ordering::Relaxed) {
            match daemon.reload() {
                Ok(msg) => eprint!("sluice: {msg}"),
                Err(e) => eprintln!("sluice: reload failed, the running ruleset stays:\n{e}"),
            }
        }
        if threads.iter().any(|t| t.is_finished()) {
            stop.store(true, Ordering::Relaxed);
            bail!("a worker stopped unexpectedly");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    drop(host);
    std::fs::remove_file(&args.control).ok();
    eprintln!("sluice: stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::begins_with_flush_ruleset as flush;

    #[test]
    fn recognises_a_leading_flush_ruleset() {
        assert!(flush("flush ruleset\ntable inet t {\n}\n"));
        assert!(flush(
            "  # a comment\n\n# another\nflush   ruleset ; table ip t { }"
        ));
        assert!(flush("flush ruleset # all of it\n"));
        assert!(flush("flush ruleset"));
        // only one family, or something else first: the running ruleset matters
        assert!(!flush("flush ruleset ip\ntable inet t {\n}\n"));
        assert!(!flush("table inet t {\n}\nflush ruleset\n"));
        assert!(!flush("add rule inet t c accept\n"));
        assert!(!flush("flush table inet t\n"));
        assert!(!flush(""));
    }
}
