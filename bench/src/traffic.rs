//! The three kinds of traffic: 64-byte UDP from trafgen, TCP throughput from iperf3, new connections per
//! second from wrk (every request on a new connection: `Connection: close`). Each runs from the gen
//! namespace pinned to the generator's CPU and reports the CPU time both CPUs spent during its window.

use crate::rig::{addr, run, stop_child, Rig};
use anyhow::{anyhow, bail, Context, Result};
use std::fs;
use std::process::{Child, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Jiffies of each CPU from /proc/stat: (busy, total, softirq), busy being everything but idle and iowait.
pub fn cpu_times() -> Vec<(u64, u64, u64)> {
    let text = fs::read_to_string("/proc/stat").unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .map(|l| {
            let v: Vec<u64> = l
                .split_whitespace()
                .skip(1)
                .filter_map(|w| w.parse().ok())
                .collect();
            let total: u64 = v.iter().take(8).sum();
            let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
            (total - idle, total, v.get(6).copied().unwrap_or(0))
        })
        .collect()
}

/// CPU ticks (user + system) a process has used, from /proc/PID/stat.
pub fn process_ticks(pid: u32) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let rest = &text[text.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// CPU accounting over a window: every CPU's busy and softirq fractions, and the forwarder's own CPU use.
#[derive(Clone, Debug)]
pub struct CpuMark {
    at: Instant,
    cpus: Vec<(u64, u64, u64)>,
    fw_proc: Option<u64>,
}

#[derive(Clone, Debug, Default)]
pub struct CpuUse {
    /// Busy fraction of each CPU (whole machine: includes anything else running).
    pub busy: Vec<f64>,
    /// Softirq fraction of each CPU.
    pub softirq: Vec<f64>,
    /// Cores' worth of CPU the forwarding used: softirq on the forwarding CPU (the kernel's forwarding path
    /// with RPS; the sink's receive processing on both paths) plus the sluice process's user and system time.
    pub forwarder: f64,
}

impl CpuMark {
    pub fn now(rig: &Rig) -> CpuMark {
        CpuMark {
            at: Instant::now(),
            cpus: cpu_times(),
            fw_proc: rig.sluice_pid().and_then(process_ticks),
        }
    }

    pub fn until(&self, end: &CpuMark, cpu_fw: usize) -> CpuUse {
        let frac = |f: &dyn Fn(&(u64, u64, u64)) -> u64| -> Vec<f64> {
            self.cpus
                .iter()
                .zip(&end.cpus)
                .map(|(a, b)| {
                    let total = b.1.saturating_sub(a.1);
                    if total == 0 {
                        0.0
                    } else {
                        f(b).saturating_sub(f(a)) as f64 / total as f64
                    }
                })
                .collect()
        };
        let busy = frac(&|x| x.0);
        let softirq = frac(&|x| x.2);
        let secs = (end.at - self.at).as_secs_f64().max(1e-9);
        let proc_cores = match (self.fw_proc, end.fw_proc) {
            (Some(a), Some(b)) => b.saturating_sub(a) as f64 / clock_ticks() / secs,
            _ => 0.0,
        };
        let forwarder = softirq.get(cpu_fw).copied().unwrap_or(0.0) + proc_cores;
        CpuUse {
            busy,
            softirq,
            forwarder,
        }
    }
}

/// Kills the child when dropped (an early return or an interruption must not leave a generator running).
pub(crate) struct Guard(pub(crate) Option<Child>);

impl Guard {
    pub(crate) fn child(&mut self) -> &mut Child {
        self.0.as_mut().expect("child present")
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            stop_child(&mut c, libc::SIGKILL, Duration::from_secs(1));
        }
    }
}

/// Waits for the child to exit, at most `limit`; kills it after that. Returns its stdout.
pub(crate) fn wait_output(rig: &Rig, g: &mut Guard, limit: Duration, what: &str) -> Result<String> {
    let deadline = Instant::now() + limit;
    loop {
        if rig.interrupted().load(Ordering::Relaxed) {
            bail!("interrupted");
        }
        if let Some(status) = g.child().try_wait()? {
            let mut out = String::new();
            if let Some(mut o) = g.child().stdout.take() {
                use std::io::Read;
                o.read_to_string(&mut out)?;
            }
            let mut err = String::new();
            if let Some(mut e) = g.child().stderr.take() {
                use std::io::Read;
                e.read_to_string(&mut err)?;
            }
            if !status.success() {
                bail!(
                    "{what} failed ({status}): {}",
                    format!("{err}\n{out}").trim()
                );
            }
            return Ok(out);
        }
        if Instant::now() > deadline {
            bail!("{what} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[derive(Clone, Debug, Default)]
pub struct UdpResult {
    /// Packets per second counted at the sink.
    pub delivered_pps: f64,
    /// Packets per second the generator put on gen0 (transmitted + dropped at the veth).
    pub offered_pps: f64,
    pub cpu: CpuUse,
}

/// 64-byte UDP frames (60 bytes + FCS) over 77 source ports, the trafgen config of RIG-NOTES.
pub fn trafgen_config(dst: [u8; 4]) -> String {
    let m = |m: [u8; 6]| {
        m.iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":")
    };
    format!(
        "{{\n  eth(da={}, sa={}),\n  ipv4(saddr={}, daddr={}, ttl=64),\n  udp(sp=dinc(1024, 1100), dp={}),\n  fill(0x41, 18)\n}}\n",
        m(crate::FW_IN),
        m(crate::GEN_MAC),
        addr(crate::GEN_ADDR),
        addr(dst),
        crate::UDP_PORT
    )
}

/// trafgen floods from gen for `warm + window`; the rate is what the sink counted within the window.
pub fn udp(rig: &Rig, dst: [u8; 4], warm: Duration, window: Duration) -> Result<UdpResult> {
    udp_with(rig, dst, warm, window, &mut |rig, w| {
        crate::rig::sleep_checked(w, rig.interrupted())
    })
}

/// [`udp`], running `during` (which must take about `window`) instead of sleeping through the window: a
/// profiler, for instance.
pub fn udp_with(
    rig: &Rig,
    dst: [u8; 4],
    warm: Duration,
    window: Duration,
    during: &mut dyn FnMut(&Rig, Duration) -> Result<()>,
) -> Result<UdpResult> {
    let cfg = rig.write_file(&format!("trafgen-{}.cfg", addr(dst)), &trafgen_config(dst))?;
    let log = fs::File::create(rig.state.join("trafgen.log"))?;
    let child = rig
        .pinned(
            "gen",
            rig.cfg.cpu_gen,
            // -P 1: one process; leave the machine's socket memory sysctls and IRQ affinities alone; no CPU
            // statistics. -t 0: the sendto() path, which blocks when the socket's send buffer is full. The
            // TX_RING path gives up ("Flushing TX_RING failed: EAGAIN") when the kernel forwards through RPS:
            // the frames waiting in the other CPU's backlog still count against the socket.
            &[
                "trafgen",
                "-i",
                cfg.to_str().unwrap(),
                "-o",
                "gen0",
                "-P",
                "1",
                "--no-sock-mem",
                "--notouch-irq",
                "--no-cpu-stats",
                "-t",
                "0",
            ],
        )
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("cannot start trafgen (package netsniff-ng)")?;
    let mut g = Guard(Some(child));
    crate::rig::sleep_checked(warm, rig.interrupted())?;
    if g.child().try_wait()?.is_some() {
        bail!(
            "trafgen exited early: {}",
            fs::read_to_string(rig.state.join("trafgen.log")).unwrap_or_default()
        );
    }
    let sample = || -> Result<(Instant, u64, (u64, u64), CpuMark)> {
        let t0 = Instant::now();
        let sink = rig.sink_packets()?;
        let tx = rig.gen_tx()?;
        let cpu = CpuMark::now(rig);
        // The middle of the reads stands for all of them.
        Ok((t0 + (Instant::now() - t0) / 2, sink, tx, cpu))
    };
    let a = sample()?;
    during(rig, window)?;
    let b = sample()?;
    stop_child(g.child(), libc::SIGINT, Duration::from_secs(2));
    rig.reap_gen();
    drain(rig)?;
    let secs = (b.0 - a.0).as_secs_f64();
    Ok(UdpResult {
        delivered_pps: (b.1 - a.1) as f64 / secs,
        offered_pps: ((b.2 .0 + b.2 .1) - (a.2 .0 + a.2 .1)) as f64 / secs,
        cpu: a.3.until(&b.3, rig.cfg.cpu_fw),
    })
}

/// Waits (at most 20 s) until the sink stops counting: a slow forwarder still has a ring full of the flood
/// to work through, which would delay the next measurement's packets.
fn drain(rig: &Rig) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = rig.sink_packets()?;
    let mut still = 0;
    while still < 2 && Instant::now() < deadline {
        crate::rig::sleep_checked(Duration::from_millis(200), rig.interrupted())?;
        let now = rig.sink_packets()?;
        if now == last {
            still += 1;
        } else {
            still = 0;
        }
        last = now;
    }
    Ok(())
}

#[derive(Clone, Debug, Default)]
pub struct TcpResult {
    pub gbit_s: f64,
    pub retransmits: u64,
    pub cpu: CpuUse,
}

/// One iperf3 TCP stream gen → srv for `secs` (after `omit` seconds not counted); the receiver's rate.
pub fn tcp(rig: &Rig, dst: [u8; 4], secs: u32, omit: u32) -> Result<TcpResult> {
    let port = crate::IPERF_PORT.to_string();
    let server = rig
        .pinned("srv", rig.cfg.cpu_gen, &["iperf3", "-s", "-1", "-p", &port])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start iperf3 (package iperf3)")?;
    let _server = Guard(Some(server));
    // Wait until it listens.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !run(&mut rig.cmd("srv", &["ss", "-Hltn"]))?.contains(&format!(":{port} ")) {
        if Instant::now() > deadline {
            bail!("iperf3 server did not start");
        }
        crate::rig::sleep_checked(Duration::from_millis(20), rig.interrupted())?;
    }
    let (t, o) = (secs.to_string(), omit.to_string());
    let target = addr(dst);
    let c0 = CpuMark::now(rig);
    let client = rig
        .pinned(
            "gen",
            rig.cfg.cpu_gen,
            &[
                "iperf3",
                "-c",
                &target,
                "-p",
                &port,
                "-t",
                &t,
                "-O",
                &o,
                "-J",
                "--connect-timeout",
                "3000",
            ],
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start iperf3")?;
    let mut g = Guard(Some(client));
    let out = wait_output(
        rig,
        &mut g,
        Duration::from_secs((secs + omit) as u64 + 20),
        "iperf3",
    )?;
    let cpu = c0.until(&CpuMark::now(rig), rig.cfg.cpu_fw);
    let v: serde_json::Value =
        serde_json::from_str(&out).map_err(|e| anyhow!("iperf3 printed no JSON ({e}): {out}"))?;
    if let Some(err) = v.get("error").and_then(|e| e.as_str()) {
        bail!("iperf3: {err}");
    }
    let end = &v["end"];
    let bps = end["sum_received"]["bits_per_second"]
        .as_f64()
        .ok_or_else(|| anyhow!("iperf3 JSON without end.sum_received"))?;
    Ok(TcpResult {
        gbit_s: bps / 1e9,
        retransmits: end["sum_sent"]["retransmits"].as_u64().unwrap_or(0),
        cpu,
    })
}

#[derive(Clone, Debug, Default)]
pub struct CpsResult {
    /// Completed requests per second, each on its own TCP connection.
    pub conn_s: f64,
    /// wrk's socket errors (connect, read, write, timeout) plus non-2xx answers.
    pub errors: u64,
    pub cpu: CpuUse,
}

/// Parses wrk's summary: `Requests/sec:` and the error lines.
pub fn parse_wrk(out: &str) -> Result<(f64, u64)> {
    let rps = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .ok_or_else(|| anyhow!("wrk printed no Requests/sec: {out}"))?;
    let mut errors = 0;
    for l in out.lines() {
        let l = l.trim();
        if let Some(rest) = l.strip_prefix("Socket errors:") {
            errors += rest
                .split(',')
                .filter_map(|p| p.split_whitespace().last()?.parse::<u64>().ok())
                .sum::<u64>();
        }
        if let Some(rest) = l.strip_prefix("Non-2xx or 3xx responses:") {
            errors += rest.trim().parse::<u64>().unwrap_or(0);
        }
    }
    Ok((rps, errors))
}

/// wrk from gen against the HTTP server in srv, one connection per request.
pub fn cps(rig: &Rig, dst: [u8; 4], secs: u32, connections: u32) -> Result<CpsResult> {
    let url = format!("http://{}:{}/", addr(dst), crate::HTTP_PORT);
    let (d, c) = (format!("{secs}s"), connections.to_string());
    let c0 = CpuMark::now(rig);
    let child = rig
        .pinned(
            "gen",
            rig.cfg.cpu_gen,
            &[
                "wrk",
                "-t",
                "1",
                "-c",
                &c,
                "-d",
                &d,
                "--timeout",
                "2s",
                "-H",
                "Connection: close",
                &url,
            ],
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start wrk (package wrk)")?;
    let mut g = Guard(Some(child));
    let out = wait_output(rig, &mut g, Duration::from_secs(secs as u64 + 20), "wrk")?;
    let cpu = c0.until(&CpuMark::now(rig), rig.cfg.cpu_fw);
    let (rps, errors) = parse_wrk(&out)?;
    Ok(CpsResult {
        conn_s: rps,
        errors,
        cpu,
    })
}

/// The HTTP server run in srv (`sluice-bench serve ADDR`): one thread, non-blocking sockets and poll(2),
/// answering every request with a tiny response and closing the connection (so the server holds TIME_WAIT,
/// not the client's ports). A connection that sends nothing for 2 s is dropped; none can hold up another
/// (connections left half-open by an earlier run, for instance).
pub fn serve(listen: std::net::SocketAddr) -> Result<()> {
    use std::io::{ErrorKind, Read, Write};
    use std::os::fd::AsRawFd;
    struct Conn {
        s: std::net::TcpStream,
        got: Vec<u8>,
        since: Instant,
    }
    let listener = std::net::TcpListener::bind(listen)?;
    listener.set_nonblocking(true)?;
    let mut conns: Vec<Conn> = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let mut fds = Vec::with_capacity(conns.len() + 1);
        fds.push(libc::pollfd {
            fd: listener.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        });
        fds.extend(conns.iter().map(|c| libc::pollfd {
            fd: c.s.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }));
        // SAFETY: `fds` is a valid array of pollfd of the given length.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 200) };
        if n < 0 && std::io::Error::last_os_error().kind() != ErrorKind::Interrupted {
            bail!("poll: {}", std::io::Error::last_os_error());
        }
        let mut done = vec![false; conns.len()];
        for (i, c) in conns.iter_mut().enumerate() {
            if fds[i + 1].revents == 0 {
                done[i] = c.since.elapsed() > Duration::from_secs(2);
                continue;
            }
            match c.s.read(&mut buf) {
                Ok(0) => done[i] = true,
                Ok(k) => {
                    c.got.extend_from_slice(&buf[..k]);
                    if c.got.windows(4).any(|w| w == b"\r\n\r\n") || c.got.len() > 65536 {
                        let _ = c.s.write_all(
                            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                        );
                        done[i] = true;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(_) => done[i] = true,
            }
        }
        let mut i = 0;
        conns.retain(|_| {
            i += 1;
            !done[i - 1]
        });
        if fds[0].revents != 0 {
            loop {
                match listener.accept() {
                    Ok((s, _)) => {
                        let _ = s.set_nonblocking(true);
                        let _ = s.set_nodelay(true);
                        conns.push(Conn {
                            s,
                            got: Vec::new(),
                            since: Instant::now(),
                        });
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(_) => break,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_output_parses() {
        let out = "Running 3s test @ http://198.51.100.2:80/\n  1 threads and 16 connections\n  Thread Stats   Avg      Stdev     Max   +/- Stdev\n    Latency     1.20ms  300.00us   5.00ms   80.00%\n  12000 requests in 3.00s, 1.00MB read\n  Socket errors: connect 0, read 3, write 0, timeout 2\n  Non-2xx or 3xx responses: 1\nRequests/sec:   4000.12\nTransfer/sec:    333.00KB\n";
        let (rps, err) = parse_wrk(out).unwrap();
        assert!((rps - 4000.12).abs() < 1e-9);
        assert_eq!(err, 6);
        assert!(parse_wrk("garbage").is_err());
    }

    #[test]
    fn trafgen_frame_is_64_bytes_on_the_wire() {
        let c = trafgen_config(crate::SRV_ADDR);
        assert!(c.contains("daddr=198.51.100.2"));
        assert!(c.contains("da=02:00:00:00:01:01"));
        // 14 (eth) + 20 (ipv4) + 8 (udp) + 18 (fill) = 60, + 4 FCS on a wire
        assert!(c.contains("fill(0x41, 18)"));
    }

    #[test]
    fn cpu_times_are_read() {
        let a = cpu_times();
        assert!(!a.is_empty());
        assert!(a.iter().all(|c| c.0 <= c.1 && c.2 <= c.0));
        let me = process_ticks(std::process::id());
        assert!(me.is_some());
    }
}
