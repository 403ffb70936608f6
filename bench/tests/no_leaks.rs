//! Every workload gives back everything it allocates, and makes at least
//! the allocator calls its op count implies. Runs under a counting global
//! allocator; `harness = false` so that no test-runner thread allocates
//! meanwhile (the counts are process-wide).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

use bench::workloads::{ChurnParams, LarsonParams, MixedParams, SharingParams, Workload};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static FREES: AtomicU64 = AtomicU64::new(0);
static LIVE_BYTES: AtomicI64 = AtomicI64::new(0);

// SAFETY: forwards every call to `System` unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        LIVE_BYTES.fetch_add(layout.size() as i64, Relaxed);
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        FREES.fetch_add(1, Relaxed);
        LIVE_BYTES.fetch_sub(layout.size() as i64, Relaxed);
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        FREES.fetch_add(1, Relaxed);
        LIVE_BYTES.fetch_add(new_size as i64 - layout.size() as i64, Relaxed);
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static A: Counting = Counting;

/// Runs `f`, returning (its ops, allocator calls made, live bytes left over).
fn counted(f: impl FnOnce() -> u64) -> (u64, u64, i64) {
    let (a0, f0, l0) = (
        ALLOCS.load(Relaxed),
        FREES.load(Relaxed),
        LIVE_BYTES.load(Relaxed),
    );
    let ops = f();
    let calls = ALLOCS.load(Relaxed) - a0 + FREES.load(Relaxed) - f0;
    (ops, calls, LIVE_BYTES.load(Relaxed) - l0)
}

/// A case: name, the run (returning its ops), and the fewest allocator calls
/// its ops imply.
type Case = (&'static str, Box<dyn Fn() -> u64>, fn(u64) -> u64);

fn main() {
    let mixed = MixedParams {
        cycles: 50_000,
        ws: 256,
        seed: 42,
        min: 16,
        max: 1040,
    };
    let sharing = SharingParams {
        threads: 2,
        iterations: 1000,
        size: 8,
        writes: 4,
    };
    let cases: Vec<Case> = vec![
        (
            "random_mixed",
            Box::new(move || Workload::RandomMixed(mixed).run().unwrap().ops),
            |ops| ops, // one call per op (plus warm-up and clean-up)
        ),
        (
            "random_mixed_indep",
            Box::new(move || Workload::RandomMixedIndep(mixed).run().unwrap().ops),
            |ops| ops,
        ),
        (
            "floor",
            Box::new(move || Workload::RandomMixed(mixed).run_floor().unwrap().ops),
            |_| 2, // only its own set-up: the slot arrays and the lines
        ),
        (
            "larson T=2",
            Box::new(|| {
                Workload::Larson(LarsonParams {
                    threads: 2,
                    rounds: 20,
                    per_round: 500,
                    blocks: 64,
                    min: 8,
                    max: 1000,
                    seed: 1,
                })
                .run()
                .unwrap()
                .ops
            }),
            |ops| ops,
        ),
        (
            "cache_thrash",
            Box::new(move || Workload::CacheThrash(sharing).run().unwrap().ops),
            |ops| 2 * ops,
        ),
        (
            "cache_scratch",
            Box::new(move || Workload::CacheScratch(sharing).run().unwrap().ops),
            |ops| 2 * ops,
        ),
        (
            "churn",
            Box::new(|| {
                Workload::Churn(ChurnParams {
                    rounds: 5,
                    entries: 300,
                    seed: 3,
                })
                .run()
                .unwrap()
                .ops
            }),
            |ops| 2 * ops, // at least a key and its drop per insertion
        ),
    ];
    let (mut passed, mut failed) = (0, 0);
    for (name, run, min_calls) in cases {
        // Call through a reference: dropping the boxed closure inside the
        // window would count as a free of memory allocated before it.
        let (ops, calls, live) = counted(&run);
        let ok = live == 0 && calls >= min_calls(ops) && ops > 0;
        println!(
            "{} {name}: {ops} ops, {calls} allocator calls, {live} bytes left live",
            if ok { "ok  " } else { "FAIL" }
        );
        if ok {
            passed += 1;
        } else {
            failed += 1;
        }
    }
    println!("{passed} passed, {failed} failed");
    if failed > 0 {
        std::process::exit(1);
    }
}
