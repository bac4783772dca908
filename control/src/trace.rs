//! `meta nftrace set 1` on the live daemon: `sluice nft monitor trace` prints what `nft monitor trace`
//! prints.
//!
//! Workers format the events of traced packets (dataplane::trace::format_nft_monitor) once per batch and
//! send the lines here; the daemon keeps the last [`KEEP`] lines with sequence numbers, and the CLI polls
//! `trace-events SEQ` over the control socket, printing lines as they come until interrupted.

use crate::ctl;
use anyhow::Result;
use dataplane::Command;
use std::collections::VecDeque;
use std::path::Path;
use std::sync::mpsc::channel;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Lines kept for slow readers.
pub const KEEP: usize = 10_000;

#[derive(Default)]
struct Log {
    started: bool,
    next: u64,
    lines: VecDeque<(u64, String)>,
}

/// The daemon's side.
#[derive(Default, Clone)]
pub struct TraceServer {
    log: Arc<Mutex<Log>>,
}

impl TraceServer {
    /// `trace-events SEQ`: the next sequence number, then the lines numbered `SEQ` and later.
    pub fn since(&self, workers: &[Mutex<std::sync::mpsc::Sender<Command>>], seq: u64) -> String {
        self.start(workers);
        let log = self.log.lock().unwrap();
        let mut out = format!("{}\n", log.next);
        for (n, l) in &log.lines {
            if *n >= seq {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }

    /// Asks every worker for trace lines (once; they keep sending while the daemon runs).
    fn start(&self, workers: &[Mutex<std::sync::mpsc::Sender<Command>>]) {
        let mut log = self.log.lock().unwrap();
        if log.started {
            return;
        }
        log.started = true;
        let (tx, rx) = channel::<Vec<String>>();
        for w in workers {
            let _ = w
                .lock()
                .unwrap()
                .send(Command::WatchTrace(Some(tx.clone())));
        }
        let shared = self.log.clone();
        let _ = std::thread::Builder::new()
            .name("sluice-trace".into())
            .spawn(move || {
                for lines in rx {
                    let mut log = shared.lock().unwrap();
                    for l in lines {
                        let n = log.next;
                        log.next += 1;
                        log.lines.push_back((n, l));
                        if log.lines.len() > KEEP {
                            log.lines.pop_front();
                        }
                    }
                }
            });
    }
}

/// `sluice nft monitor trace`: prints trace lines until Ctrl-C.
pub fn monitor(control: &Path) -> Result<()> {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGINT, stop.clone())?;
    signal_hook::flag::register(signal_hook::consts::SIGTERM, stop.clone())?;
    // Start from now: the first answer says where the log is.
    let first = ctl::request(control, &format!("trace-events {}", u64::MAX), "")?;
    let mut seq: u64 = first.lines().next().unwrap_or("0").parse().unwrap_or(0);
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        let Ok(answer) = ctl::request(control, &format!("trace-events {seq}"), "") else {
            break;
        };
        let mut lines = answer.lines();
        let next: u64 = lines.next().unwrap_or("0").parse().unwrap_or(seq);
        for l in lines {
            println!("{l}");
        }
        use std::io::Write;
        std::io::stdout().flush().ok();
        seq = next;
    }
    Ok(())
}
