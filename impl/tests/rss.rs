//! Memory goes back to the OS: a burst of 200 MiB of small and medium
//! blocks, freed, leaves the process near its baseline RSS.
//!
//! Each burst runs in a child process (RSS is per process). Nothing waits on
//! a clock: every bound below holds at any moment after the frees, however
//! much or little time passed.
//!
//! - `burst`: `HAKMEM_PURGE_DELAY_MS=0` returns empty slabs and freed medium
//!   mappings as soon as they are free; `hakmem::large::collect()` then
//!   empties the large cache.
//! - `idle`: the default configuration, and the program goes idle right
//!   after the frees (no collect, no later allocator call). What it keeps is
//!   bounded by `HAKMEM_PURGE_THRESHOLD` (empty slabs) and
//!   `HAKMEM_LARGE_CACHE` (freed medium mappings), whatever the delay.
//! - `idle_strict`: both bounds set to 0: idle right after the frees, the
//!   process is back near its baseline.

mod common;

use common::{fill, rss_bytes, Rng};
use std::alloc::{alloc, dealloc, Layout};

#[global_allocator]
static GLOBAL: hakmem::Hakmem = hakmem::Hakmem;

const MIB: usize = 1 << 20;
/// Bytes of small blocks (16..=1024 bytes each) in the burst.
const SMALL_BYTES: usize = 100 * MIB;
/// Bytes of medium blocks (64 KiB..=1 MiB each) in the burst.
const MEDIUM_BYTES: usize = 100 * MIB;
/// How far above its baseline the process may stay after the burst is freed:
/// the arena may keep `HAKMEM_ARENA_CACHE` (default 4) SuperSlabs of 2 MiB
/// committed (8 MiB), plus 8 MiB for the allocator's metadata, partially
/// used pages and the test harness's own allocations. 16 MiB is 8% of the
/// burst: a leak of a tenth of the burst fails.
const BOUND: usize = 16 * MIB;
/// The defaults of `HAKMEM_PURGE_THRESHOLD` and `HAKMEM_LARGE_CACHE`.
const DEFAULT_KEPT: usize = 4 * MIB + 6 * MIB;

fn burst(collect: bool, bound: usize) {
    let baseline = rss_bytes();
    let mut rng = Rng(0x5EED);
    // The list of blocks is allocated once, before the burst.
    let mut blocks: Vec<(usize, usize)> =
        Vec::with_capacity(SMALL_BYTES / 16 + MEDIUM_BYTES / (64 << 10));
    let mut take = |total: usize, lo: usize, hi: usize, rng: &mut Rng| {
        let mut sum = 0;
        while sum < total {
            let size = lo + rng.below((hi - lo + 1) as u64) as usize;
            let layout = Layout::from_size_align(size, 8).unwrap();
            // SAFETY: non-zero size.
            let p = unsafe { alloc(layout) };
            assert!(!p.is_null());
            // SAFETY: `size` bytes at `p`; the pattern touches every page.
            unsafe { fill(p, size, blocks.len() as u64) };
            blocks.push((p as usize, size));
            sum += size;
        }
    };
    take(SMALL_BYTES, 16, 1024, &mut rng);
    take(MEDIUM_BYTES, 64 << 10, MIB, &mut rng);
    let peak = rss_bytes();
    // Free in random order.
    for i in (1..blocks.len()).rev() {
        blocks.swap(i, rng.below(i as u64 + 1) as usize);
    }
    for &(p, size) in &blocks {
        // SAFETY: each block once, with the layout it was made with.
        unsafe { dealloc(p as *mut u8, Layout::from_size_align(size, 8).unwrap()) };
    }
    drop(blocks);
    if collect {
        hakmem::large::collect();
    }
    let after = rss_bytes();
    println!(
        "RSS baseline {} KiB, peak {} KiB, after free {} KiB",
        baseline >> 10,
        peak >> 10,
        after >> 10
    );
    assert!(
        peak >= baseline + (SMALL_BYTES + MEDIUM_BYTES) * 9 / 10,
        "the burst did not show in RSS: {} -> {} KiB",
        baseline >> 10,
        peak >> 10
    );
    assert!(
        after <= baseline + bound,
        "RSS stayed {} KiB above the baseline after the burst was freed (bound {} KiB)",
        (after - baseline) >> 10,
        bound >> 10
    );
}

/// Runs scenario `name` of test `test` in a child with `env`, or, in the
/// child, the burst itself.
fn child(test: &str, name: &str, env: &[(&str, &str)], collect: bool, bound: usize) {
    if common::scenario().as_deref() == Some(name) {
        burst(collect, bound);
        return;
    }
    let out = common::run_child(test, name, env);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stdout
        .find("RSS baseline")
        .map(|i| stdout[i..].lines().next().unwrap());
    eprintln!("child: {}", line.unwrap_or("?"));
    assert!(
        out.status.success(),
        "child failed: {}\n{stdout}\n{stderr}",
        out.status
    );
    assert!(stdout.contains("RSS baseline"), "{stdout}");
}

#[test]
fn idle_after_burst_keeps_at_most_the_configured_caches() {
    // The defaults, stated (a developer's environment must not change them).
    child(
        "idle_after_burst_keeps_at_most_the_configured_caches",
        "idle",
        &[
            ("HAKMEM_PURGE_DELAY_MS", "100"),
            ("HAKMEM_PURGE_THRESHOLD", "4m"),
            ("HAKMEM_LARGE_CACHE", "6m"),
        ],
        false,
        BOUND + DEFAULT_KEPT,
    );
}

#[test]
fn idle_after_burst_with_zero_caches_is_back_at_baseline() {
    child(
        "idle_after_burst_with_zero_caches_is_back_at_baseline",
        "idle_strict",
        &[
            ("HAKMEM_PURGE_DELAY_MS", "100"),
            ("HAKMEM_PURGE_THRESHOLD", "0"),
            ("HAKMEM_LARGE_CACHE", "0"),
        ],
        false,
        BOUND,
    );
}

#[test]
fn burst_is_returned_to_the_os() {
    child(
        "burst_is_returned_to_the_os",
        "burst",
        &[("HAKMEM_PURGE_DELAY_MS", "0")],
        true,
        BOUND,
    );
}
