//! The poll-mode worker: batch RX from every port it owns → pipeline → batch TX, the ruleset generation
//! loaded once per batch, timers, and commands from the control plane answered between batches.

use crate::pipeline::{Action, Pipeline};
use crate::stats::WorkerStats;
use arc_swap::ArcSwap;
use hw::{Batch, Port};
use rules::{CompiledRuleset, CounterValue};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;

/// A conntrack entry as reported to the control plane.
#[derive(Clone, Debug)]
pub struct ConnSnapshot {
    pub entry: crate::conntrack::Entry<std::net::Ipv4Addr>,
    /// Seconds until it expires.
    pub expires_in_s: u64,
}

/// What a worker reports when asked.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub worker: usize,
    pub stats: WorkerStats,
    /// Rule counters of the generation the worker runs, with that generation's id.
    pub generation: usize,
    pub counters: Vec<CounterValue>,
    pub conntrack: Vec<ConnSnapshot>,
    pub conntrack_len: usize,
    pub conntrack_info: crate::conntrack::TableInfo,
}

pub enum Command {
    Snapshot {
        conntrack: bool,
        reply: Sender<Snapshot>,
    },
    FlushConntrack,
    /// Removes the entries whose original tuple (and zone) is listed; answers how many went.
    DeleteConntrack {
        tuples: Vec<(u16, crate::conntrack::Tuple<std::net::Ipv4Addr>)>,
        reply: Sender<usize>,
    },
    /// New conntrack settings (`sysctl -w net.netfilter.…`), with this worker's share of the maximum.
    SetSysctls(crate::conntrack::Sysctls, u32),
    /// Starts (`Some`) or stops (`None`) sending conntrack events (`conntrack -E`), in batches.
    WatchConntrack(Option<Sender<Vec<crate::conntrack::Event<std::net::Ipv4Addr>>>>),
    /// Send `nft monitor trace` lines of packets with `meta nftrace` set here (`None`: stop).
    WatchTrace(Option<Sender<Vec<String>>>),
    /// The namespace's addresses and routes as they are now (the interfaces in the same order); answered
    /// once the worker uses them.
    SetFib(Arc<crate::Fib>, Sender<()>),
}

/// Settings of the loop.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    pub batch_size: usize,
    /// Empty polls in a row after which the worker sleeps in `poll(2)` instead of spinning.
    pub spin_before_sleep: u32,
    pub sleep_ms: i32,
    /// How often timers run.
    pub timer_interval_ns: u64,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            batch_size: 64,
            spin_before_sleep: 2000,
            sleep_ms: 10,
            timer_interval_ns: 100_000_000,
        }
    }
}

pub struct Worker {
    pub id: usize,
    ports: Vec<Box<dyn Port>>,
    pipeline: Pipeline,
    ruleset: Arc<ArcSwap<CompiledRuleset>>,
    commands: Receiver<Command>,
    config: WorkerConfig,
    /// The clock at the last batch (for answers given between batches).
    last_now: u64,
    handoff: Option<crate::handoff::HandoffEnd>,
    /// Where conntrack events go while someone watches.
    events: Option<Sender<Vec<crate::conntrack::Event<std::net::Ipv4Addr>>>>,
    trace: Option<Sender<Vec<String>>>,
    /// This worker's queue of the host TUN (the exception path to the kernel stack).
    host: Option<hw::tun::TunQueue>,
}

/// The `port` of a handed-off frame that came from the host TUN, not from a port.
const HOST_PORT: u16 = u16::MAX;

impl Worker {
    /// `ports[i]` must drive the interface `i` of the pipeline's FIB.
    pub fn new(
        id: usize,
        ports: Vec<Box<dyn Port>>,
        pipeline: Pipeline,
        ruleset: Arc<ArcSwap<CompiledRuleset>>,
        commands: Receiver<Command>,
        config: WorkerConfig,
    ) -> Worker {
        Worker {
            id,
            ports,
            pipeline,
            ruleset,
            commands,
            config,
            last_now: 0,
            events: None,
            trace: None,
            handoff: None,
            host: None,
        }
    }

    /// Makes this worker one of several: frames of flows another worker owns are passed to it, and frames
    /// passed here are processed as if received. `ports[i]` of every worker must drive interface `i`.
    pub fn with_handoff(mut self, end: crate::handoff::HandoffEnd) -> Worker {
        self.pipeline.set_nat_owner(self.id, end.workers);
        self.handoff = Some(end);
        self
    }

    /// Gives this worker a queue of the host TUN: it hands what INPUT accepted to the kernel there, and
    /// runs what the kernel sends there through OUTPUT/POSTROUTING. The pipeline must have
    /// [`crate::PipelineConfig::host_path`] set.
    pub fn with_host(mut self, queue: hw::tun::TunQueue) -> Worker {
        self.host = Some(queue);
        self
    }

    /// Runs until `stop` is set. `clock` gives monotonic nanoseconds; it is read once per batch.
    pub fn run(mut self, stop: &AtomicBool, clock: &dyn Fn() -> u64) {
        let mut batch = Batch::with_capacity(self.config.batch_size);
        let mut fds: Vec<i32> = self.ports.iter().filter_map(|p| p.poll_fd()).collect();
        fds.extend(self.host.as_ref().map(|h| h.poll_fd()));
        let mut idle = 0u32;
        let mut next_timer = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let now = clock();
            let received = self.poll_once(&mut batch, now);
            if now >= next_timer {
                let rs = self.ruleset.load_full();
                self.pipeline.on_timer(now, &rs);
                self.apply_steering();
                self.send_emitted();
                self.flush();
                next_timer = now + self.config.timer_interval_ns;
            }
            self.answer_commands();
            self.send_events();
            if received == 0 {
                idle += 1;
                if idle >= self.config.spin_before_sleep {
                    hw::wait::wait_readable(&fds, self.config.sleep_ms);
                }
            } else {
                idle = 0;
            }
        }
    }

    /// One round over every port: receive a batch, decide, transmit. Returns frames received.
    pub fn poll_once(&mut self, batch: &mut Batch, now: u64) -> usize {
        self.last_now = now;
        let rs = self.ruleset.load_full();
        self.pipeline.use_generation(&rs);
        let mut total = 0;
        for p in 0..self.ports.len() {
            batch.clear();
            if let Err(e) = self.ports[p].recv(batch, p as u16) {
                tracing::warn!(port = %self.ports[p].info().name, "receive failed: {e}");
                continue;
            }
            total += batch.len();
            // Bring the batch's conntrack buckets, then entries, toward the cache before the lookups.
            if batch.len() > 1 {
                for stage in 0..2 {
                    for i in 0..batch.len() {
                        self.pipeline.prefetch_ct(batch.frame(i), stage);
                    }
                }
            }
            for i in 0..batch.len() {
                let meta = batch.meta(i);
                if let Some(h) = &self.handoff {
                    match crate::handoff::flow_owner(batch.frame(i), h.workers) {
                        Some(owner) if owner != h.id => {
                            if h.send(owner, batch.frame(i), meta.port, meta.kernel_has_copy) {
                                self.pipeline.stats.handoff_sent += 1;
                            } else {
                                self.pipeline.stats.handoff_full += 1;
                            }
                            continue;
                        }
                        _ => {}
                    }
                }
                let action = self.pipeline.process(
                    batch.slot_mut(i),
                    meta.len as usize,
                    p,
                    meta.kernel_has_copy,
                    &rs,
                    now,
                );
                if let Action::Forward(out) = action {
                    self.transmit(out, batch.frame(i));
                }
            }
        }
        total += self.drain_handoff(&rs, now);
        total += self.receive_from_host(&rs, now);
        self.send_to_host();
        self.apply_steering();
        self.send_emitted();
        self.flush();
        self.send_trace(&rs);
        self.write_logs();
        total
    }

    /// Points connections bound to the box's own addresses at the dataplane (before the frames that
    /// opened them are kicked out, so the first answer already comes here).
    fn apply_steering(&mut self) {
        for (flow, add) in self.pipeline.take_steering() {
            if let Some(p) = self.ports.first() {
                if let Err(e) = p.steer_local_flow(&flow, add) {
                    self.pipeline.stats.steer_failed += 1;
                    tracing::warn!("cannot steer {flow:?}: {e}");
                }
            }
        }
    }

    /// Writes the batch's `log` lines to the daemon's log, at their statement's level (the kernel
    /// writes them to its own log).
    fn write_logs(&mut self) {
        let t = &mut self.pipeline.trace;
        for (level, line) in t.logs.drain(..) {
            match level {
                0..=3 => tracing::error!(target: "nft_log", "{line}"),
                4 | 5 => tracing::warn!(target: "nft_log", "{line}"),
                6 => tracing::info!(target: "nft_log", "{line}"),
                _ => tracing::debug!(target: "nft_log", "{line}"),
            }
        }
        if t.logs_lost != 0 {
            tracing::warn!(target: "nft_log", "{} log lines lost", t.logs_lost);
            self.pipeline.stats.log_lines_lost += std::mem::take(&mut t.logs_lost);
        }
    }

    /// Hands traced packets' events to the control plane (formatted off the packet loop, once per batch).
    fn send_trace(&mut self, rs: &CompiledRuleset) {
        let records = &mut self.pipeline.trace.records;
        if records.is_empty() || self.pipeline.trace.all {
            return;
        }
        if let Some(tx) = &self.trace {
            let lines = crate::trace::format_nft_monitor(rs, records);
            if !lines.is_empty() && tx.send(lines).is_err() {
                self.trace = None;
            }
        }
        records.clear();
    }

    /// Runs what the kernel sent through the host TUN; packets of flows another worker owns go to it.
    fn receive_from_host(&mut self, rs: &CompiledRuleset, now: u64) -> usize {
        let Some(mut host) = self.host.take() else {
            return 0;
        };
        let got = host.recv(self.config.batch_size, |packet| {
            let frame = crate::pipeline::host_frame(packet);
            if let Some(h) = &self.handoff {
                match crate::handoff::flow_owner(&frame, h.workers) {
                    Some(owner) if owner != h.id && frame.len() <= hw::FRAME_CAPACITY => {
                        if h.send(owner, &frame, HOST_PORT, false) {
                            self.pipeline.stats.handoff_sent += 1;
                        } else {
                            self.pipeline.stats.handoff_full += 1;
                        }
                        return;
                    }
                    _ => {}
                }
            }
            self.pipeline.from_host_frame(frame, rs, now);
        });
        let got = match got {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(tun = %host.name(), "receive failed: {e}");
                0
            }
        };
        self.host = Some(host);
        got
    }

    /// Gives the kernel what INPUT accepted for it.
    fn send_to_host(&mut self) {
        let Some(host) = &mut self.host else {
            return;
        };
        let mut failed = 0;
        for packet in self.pipeline.take_to_host() {
            if !host.send(&packet) {
                failed += 1;
            }
        }
        self.pipeline.stats.host_tx_failed += failed;
    }

    fn drain_handoff(&mut self, rs: &CompiledRuleset, now: u64) -> usize {
        let Some(h) = self.handoff.take() else {
            return 0;
        };
        let n = h.drain(self.config.batch_size, |f| {
            self.pipeline.stats.handoff_received += 1;
            if f.port == HOST_PORT {
                let len = f.len as usize;
                self.pipeline
                    .from_host_frame(f.data[..len].to_vec(), rs, now);
                return;
            }
            let (len, port) = (f.len as usize, f.port as usize);
            let action = self
                .pipeline
                .process(&mut f.data, len, port, f.kernel_has_copy, rs, now);
            if let Action::Forward(out) = action {
                let len = f.len as usize;
                match self.ports[out].send(&f.data[..len]) {
                    Ok(true) => self.pipeline.stats.tx_frames += 1,
                    _ => self.pipeline.stats.tx_ring_full += 1,
                }
            }
        });
        self.handoff = Some(h);
        n
    }

    fn transmit(&mut self, port: usize, frame: &[u8]) {
        match self.ports[port].send(frame) {
            Ok(true) => self.pipeline.stats.tx_frames += 1,
            Ok(false) => self.pipeline.stats.tx_ring_full += 1,
            Err(e) => {
                self.pipeline.stats.tx_ring_full += 1;
                tracing::warn!(port = %self.ports[port].info().name, "send failed: {e}");
            }
        }
    }

    fn send_emitted(&mut self) {
        let emitted: Vec<(usize, Vec<u8>)> = self.pipeline.take_emitted().collect();
        for (port, frame) in emitted {
            self.transmit(port, &frame);
        }
    }

    fn flush(&mut self) {
        for p in &mut self.ports {
            if let Err(e) = p.flush() {
                tracing::warn!(port = %p.info().name, "flush failed: {e}");
            }
        }
    }

    fn answer_commands(&mut self) {
        while let Ok(cmd) = self.commands.try_recv() {
            match cmd {
                Command::Snapshot { conntrack, reply } => {
                    let _ = reply.send(self.snapshot(conntrack));
                }
                Command::FlushConntrack => self.pipeline.conntrack.flush(),
                Command::DeleteConntrack { tuples, reply } => {
                    let ct = &mut self.pipeline.conntrack;
                    let now = crate::conntrack::ms(self.last_now);
                    let mut n = 0;
                    for (zone, t) in tuples {
                        let mut st = crate::stats::WorkerStats::default();
                        if let Some((idx, crate::conntrack::Dir::Original)) =
                            ct.lookup(zone, &t, now, &mut st)
                        {
                            ct.remove(idx);
                            n += 1;
                        }
                    }
                    let _ = reply.send(n);
                }
                Command::SetSysctls(cfg, share) => self.pipeline.conntrack.set_sysctls(cfg, share),
                Command::WatchTrace(tx) => self.trace = tx,
                Command::SetFib(fib, done) => {
                    self.pipeline.set_fib(fib);
                    let _ = done.send(());
                }
                Command::WatchConntrack(tx) => {
                    self.pipeline.conntrack.events_enabled = tx.is_some();
                    self.pipeline.conntrack.events.clear();
                    self.events = tx;
                }
            }
        }
    }

    /// Hands the conntrack events collected since the last call to the watcher.
    fn send_events(&mut self) {
        if let Some(tx) = &self.events {
            if !self.pipeline.conntrack.events.is_empty() {
                let batch = std::mem::take(&mut self.pipeline.conntrack.events);
                if tx.send(batch).is_err() {
                    self.events = None;
                    self.pipeline.conntrack.events_enabled = false;
                }
            }
        }
    }

    pub fn snapshot(&self, with_conntrack: bool) -> Snapshot {
        let rs = self.ruleset.load_full();
        let current = crate::pipeline::generation_id(&rs);
        Snapshot {
            worker: self.id,
            stats: self.pipeline.stats.clone(),
            generation: current,
            counters: self.pipeline.counters.clone(),
            conntrack: if with_conntrack {
                self.pipeline
                    .conntrack
                    .entries()
                    .map(|(_, e)| ConnSnapshot {
                        entry: e.clone(),
                        expires_in_s: (e.expires_in_ms(crate::conntrack::ms(self.last_now)) / 1000)
                            as u64,
                    })
                    .collect()
            } else {
                Vec::new()
            },
            conntrack_len: self.pipeline.conntrack.len(),
            conntrack_info: self.pipeline.conntrack.info(),
        }
    }
}
