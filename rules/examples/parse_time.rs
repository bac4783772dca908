//! Dev tool: `cargo run --release -p rules --example parse_time -- FILE` parses, checks and compiles
//! FILE once and prints the time of each phase and the peak RSS (VmHWM) of the process.
//! (File reading happens here, in the example, never in the library.)

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

/// Counts allocations (calls and bytes), to see what each phase costs.
struct Counting;
static ALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);
/// live heap bytes now, and the most there were
static LIVE: AtomicU64 = AtomicU64::new(0);
static PEAK: AtomicU64 = AtomicU64::new(0);

fn grow(n: u64) {
    let now = LIVE.fetch_add(n, Relaxed) + n;
    PEAK.fetch_max(now, Relaxed);
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        BYTES.fetch_add(l.size() as u64, Relaxed);
        grow(l.size() as u64);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as u64, Relaxed);
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        BYTES.fetch_add(n as u64, Relaxed);
        LIVE.fetch_sub(l.size() as u64, Relaxed);
        grow(n as u64);
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// (live, peak live) heap MB
fn live() -> (u64, u64) {
    (LIVE.load(Relaxed) >> 20, PEAK.load(Relaxed) >> 20)
}

fn allocs() -> (u64, u64) {
    (ALLOCS.load(Relaxed), BYTES.load(Relaxed) >> 20)
}

fn vm_hwm_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// CPU time of this thread so far (ns), from the scheduler's accounting: what the phases cost even
/// when other processes share the cores.
fn cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let file = std::env::args().nth(1).expect("usage: parse_time FILE");
    let text = std::fs::read_to_string(&file).expect("read");
    let base = vm_hwm_kb();
    let a0 = allocs();
    let l0 = live();
    let (t0, c0) = (Instant::now(), cpu_ns());
    let rs = match rules::parse_ruleset(&text, &file) {
        Ok(rs) => rs,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    let (t1, c1) = (Instant::now(), cpu_ns());
    let after_parse = vm_hwm_kb();
    let a1 = allocs();
    let l1 = live();
    let c = match rules::compile(rs) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    let (t2, c2) = (Instant::now(), cpu_ns());
    let a2 = allocs();
    let l2 = live();
    let peak = vm_hwm_kb();
    std::mem::forget(c);
    println!(
        "heap: {} MB live before parsing, {} MB after parsing (peak {}), {} MB after compiling (peak {})",
        l0.0, l1.0, l1.1, l2.0, l2.1
    );
    let ms = |ns: u64| ns as f64 / 1e6;
    println!(
        "parse+check {:.1} ms CPU ({:.1} ms wall), compile {:.1} ms CPU ({:.1} ms wall), total {:.1} ms CPU",
        ms(c1 - c0),
        (t1 - t0).as_secs_f64() * 1e3,
        ms(c2 - c1),
        (t2 - t1).as_secs_f64() * 1e3,
        ms(c2 - c0)
    );
    println!(
        "VmHWM {} MB (before parsing {} MB, after parsing {} MB); allocations: parse {} ({} MB), compile {} ({} MB)",
        peak / 1024,
        base / 1024,
        after_parse / 1024,
        a1.0 - a0.0,
        a1.1 - a0.1,
        a2.0 - a1.0,
        a2.1 - a1.1
    );
}
