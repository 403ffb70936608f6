//! Directed per-stage lockstep tests: short sequences, run through
//! [`Lockstep`] (every reported step accepted by the model, the snapshot
//! equal to the model's state after every call), that force each way a
//! slot is acquired (stage 0.5 scan, stage 1 list, stage 1 fallback after
//! node-pool exhaustion, stage 2 unused slot, stage 3 from the OS and from
//! the arena) and each flush kind (threshold, page boundary), and assert
//! that the targeted stage or flush really occurred.
//!
//! `Lockstep::step_counts` counts steps by name only, so the backend here
//! (`Tally<K>`) records every event for the lockstep (as `Record` does)
//! and also tallies it by name *and* kind (`Acquire/Scan`,
//! `Flush/Threshold`, `PageEmpty/Fallback`, `Release/arena`, ...) in a
//! thread-local map read by [`tally`].

use std::cell::RefCell;
use std::collections::BTreeMap;

use hakmem::{Event, InstanceConfig};
use model::ThreadId;
use verify::lockstep::Lockstep;

thread_local! {
    static TALLY: RefCell<BTreeMap<String, u64>> = const { RefCell::new(BTreeMap::new()) };
}

/// The tally key of an event: its name, and for the events that come in
/// kinds, the kind.
fn key(ev: &Event) -> String {
    match ev {
        Event::Acquire { stage, .. } => format!("Acquire/{stage:?}"),
        Event::Flush { reason, .. } => format!("Flush/{reason:?}"),
        Event::PageEmpty { entry, .. } => format!("PageEmpty/{entry:?}"),
        Event::Stage1Discard { source, .. } => format!("Stage1Discard/{source:?}"),
        Event::Release { to_os: true, .. } => "Release/os".into(),
        Event::Release { to_os: false, .. } => "Release/arena".into(),
        e => e.name().into(),
    }
}

/// How many events with tally key `k` this OS thread has reported.
fn tally(k: &str) -> u64 {
    TALLY.with(|t| t.borrow().get(k).copied().unwrap_or(0))
}

/// This OS thread's whole tally (for failure messages).
fn tallies() -> BTreeMap<String, u64> {
    TALLY.with(|t| t.borrow().clone())
}

/// The real protocol, recorded for the lockstep and tallied by kind;
/// `K = 0`: threshold = page capacity (production), else
/// `FLUSH_THRESHOLD = Some(K)`.
#[derive(Debug)]
struct Tally<const K: u32>;

impl<const K: u32> hakmem::sync::Backend for Tally<K> {
    type AtomicUsize = core::sync::atomic::AtomicUsize;
    type AtomicU32 = core::sync::atomic::AtomicU32;
    type AtomicU64 = core::sync::atomic::AtomicU64;
    type AtomicPtr<T: 'static> = core::sync::atomic::AtomicPtr<T>;
    type Cell<T: 'static> = hakmem::sync::StdCell<T>;
    const OBSERVE: bool = true;
    const FLUSH_THRESHOLD: Option<u32> = if K == 0 { None } else { Some(K) };
    fn observe(ev: &Event) {
        verify::backends::record::push(ev);
        TALLY.with(|t| *t.borrow_mut().entry(key(ev)).or_default() += 1);
    }
    fn spin_hint() {
        core::hint::spin_loop()
    }
    unsafe fn load_link(slot: *const *mut u8) -> *mut u8 {
        // SAFETY: forwarded contract (a readable, aligned block word).
        unsafe { slot.read() }
    }
    unsafe fn store_link(slot: *mut *mut u8, v: *mut u8) {
        // SAFETY: forwarded contract (a writable, aligned block word).
        unsafe { slot.write(v) }
    }
}

/// Production threshold (page capacity).
type Prod = Tally<0>;

/// Class 64 B and class 128 B (two distinct small classes).
const A: usize = 64;
const B: usize = 128;

/// No release while a SuperSlab is live (keeps Empty slots around), a
/// stage-1 pool of 2, arena of 1, scan of 2.
const KEEP: InstanceConfig = InstanceConfig {
    keep_live: 8,
    ..InstanceConfig::SMALL
};

/// A fresh lockstep with `threads` logical threads and a cleared tally.
fn start<Bk: hakmem::sync::Backend>(cfg: InstanceConfig, threads: u8) -> Lockstep<Bk> {
    TALLY.with(|t| t.borrow_mut().clear());
    Lockstep::<Bk>::new(cfg, threads)
}

/// Asserts `tally(k) >= 1`, then frees everything, exits every thread
/// and checks the final state.
fn expect_and_finish<Bk: hakmem::sync::Backend>(ls: &mut Lockstep<Bk>, k: &str, t: ThreadId) {
    assert!(tally(k) >= 1, "no {k} step: tally {:?}", tallies());
    ls.finish(t).unwrap();
    ls.check().unwrap();
}

/// Thread `t` allocates one block of `size` and frees it, then exits:
/// its page (current, so kept until exit) becomes `Empty` at the exit.
fn empty_one_page<Bk: hakmem::sync::Backend>(ls: &mut Lockstep<Bk>, t: ThreadId, sizes: &[usize]) {
    let ps: Vec<*mut u8> = sizes.iter().map(|&s| ls.alloc(t, s, 8).unwrap()).collect();
    for p in ps {
        ls.free(t, p).unwrap();
    }
    ls.exit(t).unwrap();
}

/// Stage 0.5: t0's emptied page of class A sits in a SuperSlab registered
/// for A (kept live); t1's first A allocation scans and claims it.
#[test]
fn stage_scan() {
    let mut ls = start::<Prod>(KEEP, 2);
    let t0 = ls.new_thread().unwrap();
    empty_one_page(&mut ls, t0, &[A]);
    assert_eq!(tally("PageEmpty/List"), 1, "{:?}", tallies());
    let t1 = ls.new_thread().unwrap();
    ls.alloc(t1, A, 8).unwrap();
    ls.check().unwrap();
    assert_eq!(tally("Acquire/List"), 0, "{:?}", tallies());
    expect_and_finish(&mut ls, "Acquire/Scan", t1);
}

/// Stage 1 (lock-free list): as [`stage_scan`] with `scan_limit = 0`, so
/// stage 0.5 looks at nothing and the slot is found through its stage-1
/// entry.
#[test]
fn stage_list() {
    let cfg = InstanceConfig {
        scan_limit: 0,
        ..KEEP
    };
    let mut ls = start::<Prod>(cfg, 2);
    let t0 = ls.new_thread().unwrap();
    empty_one_page(&mut ls, t0, &[A]);
    assert_eq!(tally("PageEmpty/List"), 1, "{:?}", tallies());
    let t1 = ls.new_thread().unwrap();
    ls.alloc(t1, A, 8).unwrap();
    ls.check().unwrap();
    assert_eq!(tally("Acquire/Scan"), 0, "{:?}", tallies());
    expect_and_finish(&mut ls, "Acquire/List", t1);
}

/// Stage 1 with the node pool exhausted: a one-node pool and two pages
/// (classes A and B) emptied at t0's exit, so the second push goes to the
/// mutex-protected fallback list; t1 then acquires both classes (scan
/// disabled): one through the list, the other through the fallback.
#[test]
fn stage_fallback() {
    let cfg = InstanceConfig {
        scan_limit: 0,
        node_pool: 1,
        ..KEEP
    };
    let mut ls = start::<Prod>(cfg, 2);
    let t0 = ls.new_thread().unwrap();
    empty_one_page(&mut ls, t0, &[A, B]);
    assert_eq!(tally("PageEmpty/List"), 1, "{:?}", tallies());
    assert_eq!(tally("PageEmpty/Fallback"), 1, "{:?}", tallies());
    let t1 = ls.new_thread().unwrap();
    ls.alloc(t1, A, 8).unwrap();
    ls.alloc(t1, B, 8).unwrap();
    ls.check().unwrap();
    assert_eq!(tally("Acquire/List"), 1, "{:?}", tallies());
    expect_and_finish(&mut ls, "Acquire/Fallback", t1);
}

/// Stage 2: class A takes slot 0 of a new SuperSlab; class B then finds
/// no Empty slot and no stage-1 entry, and takes an Unused slot of that
/// live SuperSlab.
#[test]
fn stage_unused() {
    let mut ls = start::<Prod>(KEEP, 1);
    let t0 = ls.new_thread().unwrap();
    ls.alloc(t0, A, 8).unwrap();
    assert_eq!(tally("Acquire/Fresh"), 1, "{:?}", tallies());
    ls.alloc(t0, B, 8).unwrap();
    ls.check().unwrap();
    assert_eq!(tally("Acquire/Fresh"), 1, "{:?}", tallies());
    expect_and_finish(&mut ls, "Acquire/Unused", t0);
}

/// Stage 3 from the OS: the first allocation maps a SuperSlab; and after
/// a release to the OS (no arena), the next one maps another.
#[test]
fn stage_fresh_os() {
    let cfg = InstanceConfig {
        arena_cache: 0,
        keep_live: 0,
        ..InstanceConfig::SMALL
    };
    let mut ls = start::<Prod>(cfg, 2);
    let t0 = ls.new_thread().unwrap();
    empty_one_page(&mut ls, t0, &[A]);
    assert_eq!(tally("Acquire/Fresh"), 1, "{:?}", tallies());
    assert_eq!(tally("Release/os"), 1, "{:?}", tallies());
    let t1 = ls.new_thread().unwrap();
    ls.alloc(t1, A, 8).unwrap();
    ls.check().unwrap();
    assert_eq!(tally("Acquire/Fresh"), 2, "{:?}", tallies());
    assert_eq!(tally("ArenaTake"), 0, "{:?}", tallies());
    expect_and_finish(&mut ls, "Acquire/Fresh", t1);
}

/// Stage 3 from the arena: t0's SuperSlab is released into the arena
/// (`keep_live = 0`, arena of 1) when its only page empties; t1's first
/// allocation takes it back (`ArenaTake`, then `Acquire` by `Fresh`).
#[test]
fn stage_fresh_arena() {
    let cfg = InstanceConfig {
        arena_cache: 1,
        keep_live: 0,
        ..InstanceConfig::SMALL
    };
    let mut ls = start::<Prod>(cfg, 2);
    let t0 = ls.new_thread().unwrap();
    empty_one_page(&mut ls, t0, &[A]);
    assert_eq!(tally("Release/arena"), 1, "{:?}", tallies());
    let t1 = ls.new_thread().unwrap();
    ls.alloc(t1, A, 8).unwrap();
    ls.check().unwrap();
    assert_eq!(tally("Acquire/Fresh"), 2, "{:?}", tallies());
    expect_and_finish(&mut ls, "ArenaTake", t1);
}

/// Threshold flush: with `FLUSH_THRESHOLD = Some(2)`, the second
/// allocation on a page brings `|delta|` to 2.
#[test]
fn flush_threshold() {
    let mut ls = start::<Tally<2>>(KEEP, 1);
    let t0 = ls.new_thread().unwrap();
    for _ in 0..3 {
        ls.alloc(t0, A, 8).unwrap();
    }
    ls.check().unwrap();
    expect_and_finish(&mut ls, "Flush/Threshold", t0);
}

/// Page-boundary flush: 1 KiB blocks are carved 4 at a time, so the
/// fifth allocation enters the slow path on the current page, which
/// flushes its delta (4) before draining or carving.
#[test]
fn flush_boundary() {
    let mut ls = start::<Prod>(KEEP, 1);
    let t0 = ls.new_thread().unwrap();
    for _ in 0..6 {
        ls.alloc(t0, 1024, 8).unwrap();
    }
    ls.check().unwrap();
    assert_eq!(tally("Flush/Threshold"), 0, "{:?}", tallies());
    expect_and_finish(&mut ls, "Flush/Boundary", t0);
}
