//! Where hakmem's resident memory is at peak RSS: runs one bench workload
//! (same arguments as a `bench-*` worker) or `replay FILE [REPEAT]` on
//! hakmem, while a sampler thread reads the process's RSS and, at every new
//! maximum, takes `hakmem::residency()` (a `mincore` split by region). Prints
//! the breakdown at the peak, next to the peak itself and the process's
//! resident pages that hakmem does not own (binary, libc, stack, the loaded
//! trace is in hakmem's own blocks).
//!
//! ```text
//! cargo run --release -p bench --example rss_probe -- random_mixed 1000000 256 42 16 16
//! cargo run --release -p bench --example rss_probe -- replay traces/corpus/sqlite3.hkt.zst 3
//! ```
//! A diagnostic, not a benchmark: the sampler costs a little time, and a
//! peak shorter than its period (≈ 0.2 ms) may be missed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

#[global_allocator]
static A: hakmem::Hakmem = hakmem::Hakmem;

fn rss_kib() -> u64 {
    traces::replay::current_rss_kib()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let stop = AtomicBool::new(false);
    let best: Mutex<Option<(u64, hakmem::Residency)>> = Mutex::new(None);
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut max = 0;
            while !stop.load(Ordering::Relaxed) {
                let rss = rss_kib();
                if rss > max {
                    max = rss;
                    if let Some(r) = hakmem::residency() {
                        *best.lock().unwrap() = Some((rss, r));
                    }
                }
                std::thread::sleep(Duration::from_micros(200));
            }
        });
        if args.first().map(String::as_str) == Some("replay") {
            let path = std::path::Path::new(&args[1]);
            let repeat: usize = args.get(2).map_or(1, |r| r.parse().expect("REPEAT"));
            let mut r = traces::TraceReader::open(path).expect("open trace");
            let trace = traces::replay::load(&mut r, &args[1], |_| {}).expect("load trace");
            for _ in 0..repeat {
                traces::replay::run_on(&trace, traces::replay::AllocName::Hakmem, None)
                    .expect("replay");
            }
        } else {
            bench::worker::main("hakmem", bench::worker::Mode::Allocator, None);
        }
        stop.store(true, Ordering::Relaxed);
    });
    let hwm = traces::replay::vm_hwm_kib().unwrap_or(0);
    println!("VmHWM {hwm} KiB; faults {}", traces::replay::usage().minflt);
    let peak = *best.lock().unwrap();
    if let Some((rss, r)) = peak {
        let other = (rss as usize * 1024).saturating_sub(r.total()) / 1024;
        println!("at sampled peak RSS {rss} KiB: not hakmem-owned (binary, libc, stacks, large blocks) {other} KiB");
        print!("{r}");
    }
}
