//! Replaying a trace with real OS threads against a real allocator
//! (`hktrace replay FILE --alloc NAME`, issue 5; design in `docs/traces.md`).
//!
//! # Two phases
//!
//! 1. [`load`] reads and validates the whole trace first, so that no I/O or
//!    parsing is timed, into a compact per-thread list of [`Op`]s (48 bytes
//!    an event) and gives every block a dense *slot* (8 bytes a block), so the
//!    memory cost is about `48 × events + 8 × blocks` bytes (plus the
//!    validator's live set while loading): 5 GB for 100 M events. Sizes of 0
//!    become 1 (a `GlobalAlloc` must not be asked for 0 bytes; `malloc(0)`
//!    returns a unique pointer anyway).
//! 2. [`run_passes`] starts one OS thread per trace thread; each runs its
//!    own list in order against a [`Backend`], once per pass (the threads
//!    meet at a barrier between passes, where each frees the blocks it
//!    created that the trace leaves live and resets its slots). A block's pointer is published in
//!    its slot (`Vec<AtomicPtr<u8>>`) with `Release` after the block was
//!    created and touched; a free or realloc loads its slot with `Acquire`
//!    and waits (spins, then yields — never sleeps) while it is null, so a
//!    remote free cannot overtake the allocation it frees and sees every
//!    write made to the block before it was published.
//!
//! # Deadlock freedom
//!
//! Every wait is for an event *earlier in the trace* than the waiting one:
//! a free or realloc of block `b` waits only for the event that created `b`,
//! which precedes it in the trace because the trace order is a valid
//! linearization (hktrace v1; the validator rejects a free of a block not
//! yet live). Suppose some threads are unfinished and all of them are
//! blocked. Let `e` be the earliest (in trace order) of the events they are
//! blocked at, in thread `t`, waiting for the creating event `c < e` of
//! thread `u`. Thread `u` runs its events in trace order and has not run
//! `c`, so it is unfinished and its current event `e_u` satisfies
//! `e_u ≤ c < e`. Were `u` blocked, it would be blocked at `e_u`, earlier
//! than `e`, contradicting the choice of `e`; so `u` can proceed: some
//! thread always makes progress and every wait ends. A slot is written once
//! (ids are never
//! reused, so slots are not either): there is no ABA.
//!
//! # Touching
//!
//! Like a program, the replayer writes into what it allocates: after every
//! `a`, `z` and `r` it writes one byte at the block's start and at the first
//! byte of every further page the block spans (so every page of the block is
//! made resident, and nothing more). For `z`, on allocators that promise
//! zeroed memory, it first reads those bytes and fails if one is not zero.
//! A realloc's copy is the allocator's business (`GlobalAlloc::realloc`).
//!
//! # The no-op allocator ([`Noop`])
//!
//! The harness's own cost (walking the op lists, the slot table, waiting,
//! touching) is measured by replaying on [`Noop`]: each thread bumps a
//! pointer through its own ring of memory reserved and pre-faulted up front,
//! wrapping to the start when the ring is full; frees do nothing and a
//! realloc is a fresh bump without a copy. Wrapping over blocks that may
//! still be live is harmless because the replayer never reads a block's
//! contents back except for the zero check, which [`Noop`] disables; a ring
//! is used by one thread only. The time on [`Noop`] is subtracted from an
//! allocator's time to get the allocator's own cost.
//!
//! # Files
//!
//! This file runs the passes (phase 2); `load` is phase 1, `backend` the
//! allocators replayed on, `usage` the process's resource use.

mod backend;
mod load;
mod usage;

pub use backend::{
    run_on, run_on_passes, AllocName, Backend, Global, Local, Noop, NoopLocal, NOOP_MIN_RING,
};
use load::Leftover;
pub use load::{load, Op, OpKind, Trace};
use usage::minflt;
pub use usage::{current_rss_kib, usage, vm_hwm_kib, Usage};

use crate::error::TraceError;
use std::alloc::Layout;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

/// The page size assumed for touching (x86-64 and aarch64 base pages; a
/// larger real page only means more than one write per page).
pub const PAGE: usize = 4096;

/// A replay failure: where (file, line) and why; prints `path:LINE: reason`.
#[derive(Debug)]
pub struct ReplayError {
    /// The trace's name.
    pub path: String,
    /// The line of the event concerned, if any.
    pub line: Option<u64>,
    /// What went wrong.
    pub reason: String,
}

impl fmt::Display for ReplayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{l}: {}", self.path, self.reason),
            None => write!(f, "{}: {}", self.path, self.reason),
        }
    }
}

impl std::error::Error for ReplayError {}

impl From<TraceError> for ReplayError {
    fn from(e: TraceError) -> ReplayError {
        ReplayError {
            path: e.path.clone(),
            line: e.line,
            reason: e.reason.to_string(),
        }
    }
}

/// What one pass of [`run_passes`] measured.
#[derive(Clone, Copy, Debug)]
pub struct Outcome {
    /// From the first thread's start to the end of the last thread's last
    /// event (zero for a trace without threads).
    pub wall: Duration,
    /// Events replayed.
    pub events: u64,
    /// Minor page faults of the whole process during the pass (the
    /// threads' ops and waits; not the clean-up between passes).
    pub minflt: u64,
}

/// Why a thread stopped early.
enum Stop {
    /// Another thread failed; this one gave up waiting.
    Aborted,
    /// This thread failed at `line`.
    Failed { line: u64, reason: String },
}

/// Writes one byte at the start of the block and at the start of every
/// further page it spans; with `check_zero`, first checks each such byte
/// is 0. Returns false if a checked byte was not 0.
///
/// # Safety
/// `p` is valid for writes (and reads, if `check_zero`) of `size` bytes.
#[inline]
unsafe fn touch(p: *mut u8, size: usize, byte: u8, check_zero: bool) -> bool {
    let end = p as usize + size;
    let mut at = p as usize;
    let mut zero = true;
    while at < end {
        let q = at as *mut u8;
        if check_zero {
            // SAFETY: `at` is inside the block (the caller's contract).
            zero &= unsafe { q.read_volatile() } == 0;
        }
        // SAFETY: as above.
        unsafe { q.write_volatile(byte) };
        at = (at + 1).next_multiple_of(PAGE);
    }
    zero
}

/// Waits until `slot` holds a pointer (spin, then yield); `None` if the
/// replay is aborted meanwhile.
#[inline]
fn wait(slot: &AtomicPtr<u8>, abort: &AtomicBool) -> Option<*mut u8> {
    let mut spins = 0u32;
    loop {
        let p = slot.load(Ordering::Acquire);
        if !p.is_null() {
            return Some(p);
        }
        if abort.load(Ordering::Relaxed) {
            return None;
        }
        if spins < 64 {
            spins += 1;
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
}

/// Runs one thread's ops.
fn run_thread<L: Local>(
    h: &mut L,
    ops: &[Op],
    slots: &[AtomicPtr<u8>],
    abort: &AtomicBool,
    check_zero: bool,
    byte: u8,
    progress: Option<&(dyn Fn(u64) + Sync)>,
) -> Result<(), Stop> {
    let failed = |op: &Op, what: &str| Stop::Failed {
        line: op.line,
        reason: format!("{what} ({} bytes, align {})", op.size, 1u64 << op.align_log),
    };
    for (i, op) in ops.iter().enumerate() {
        match op.kind {
            OpKind::Alloc | OpKind::Zeroed => {
                let zeroed = op.kind == OpKind::Zeroed;
                // SAFETY: `load` made every size non-zero.
                let p = unsafe { h.alloc(op.layout(), zeroed) };
                if p.is_null() {
                    abort.store(true, Ordering::Relaxed);
                    return Err(failed(op, "the allocator returned null"));
                }
                // SAFETY: `p` is a fresh block of `op.size` bytes.
                let zero = unsafe { touch(p, op.size as usize, byte, zeroed && check_zero) };
                if !zero {
                    abort.store(true, Ordering::Relaxed);
                    return Err(failed(op, "a zeroed block is not zero-filled"));
                }
                slots[op.slot as usize].store(p, Ordering::Release);
            }
            OpKind::Realloc => {
                let old = wait(&slots[op.old_slot as usize], abort).ok_or(Stop::Aborted)?;
                // SAFETY: `old` is the live block of the old slot, allocated
                // by this backend with `old_layout` (published once, never
                // freed before: its only dead event is this one).
                let p = unsafe { h.realloc(old, op.old_layout(), op.layout()) };
                if p.is_null() {
                    abort.store(true, Ordering::Relaxed);
                    return Err(failed(op, "the allocator's realloc returned null"));
                }
                // SAFETY: `p` is a live block of `op.size` bytes.
                unsafe { touch(p, op.size as usize, byte, false) };
                slots[op.slot as usize].store(p, Ordering::Release);
            }
            OpKind::Free => {
                let p = wait(&slots[op.slot as usize], abort).ok_or(Stop::Aborted)?;
                // SAFETY: `p` is the live block of this slot with this layout;
                // this is its only dead event.
                unsafe { h.dealloc(p, op.layout()) };
            }
        }
        if let Some(f) = progress {
            if (i + 1) % (64 << 10) == 0 {
                f(64 << 10);
            }
        }
    }
    Ok(())
}

/// Replays `trace` once on `backend` ([`run_passes`] with one pass).
pub fn run<B: Backend>(
    trace: &Trace,
    backend: &B,
    progress: Option<&(dyn Fn(u64) + Sync)>,
) -> Result<Outcome, ReplayError> {
    run_passes(trace, backend, 1, progress).map(|v| v[0])
}

/// Replays `trace` `passes` times (at least once) on `backend`, one OS
/// thread per trace thread, started once for all passes. In each pass every
/// thread runs its ops (timed), then frees the blocks it created that are
/// still live at the trace's end (untimed), so the next pass starts with
/// everything freed and the same threads: the first pass pays the threads'
/// heap set-up and the first-touch page faults, later passes measure the
/// allocator warm, as in a program that repeats the same work. `progress`
/// (if any) is called with a number of events done, every 64 Ki events of a
/// thread. One [`Outcome`] per pass.
pub fn run_passes<B: Backend>(
    trace: &Trace,
    backend: &B,
    passes: u32,
    progress: Option<&(dyn Fn(u64) + Sync)>,
) -> Result<Vec<Outcome>, ReplayError> {
    let passes = passes.max(1) as usize;
    let slots: Vec<AtomicPtr<u8>> = (0..trace.blocks)
        .map(|_| AtomicPtr::new(std::ptr::null_mut()))
        .collect();
    let abort = AtomicBool::new(false);
    let n = trace.threads.len();
    // The threads and the main thread meet three times a pass: before it
    // (A), after every thread's ops (B: the main thread reads the faults),
    // after the clean-up (C: every slot is null again).
    let barrier = Barrier::new(n + 1);
    let check_zero = backend.zero_filled();
    let mut own: Vec<Vec<Leftover>> = vec![Vec::new(); n];
    for l in &trace.leftover {
        own[l.tid].push(*l);
    }
    let mut faults = Vec::with_capacity(passes);
    let results = std::thread::scope(|s| {
        let handles: Vec<_> = trace
            .threads
            .iter()
            .zip(&own)
            .enumerate()
            .map(|(tid, (ops, own))| {
                let (slots, abort, barrier) = (&slots, &abort, &barrier);
                s.spawn(move || {
                    let mut h = backend.local(tid);
                    let byte = (tid as u8) | 1;
                    let mut times = Vec::with_capacity(passes);
                    let mut result = Ok(());
                    for _ in 0..passes {
                        barrier.wait();
                        if result.is_ok() && !abort.load(Ordering::Relaxed) {
                            let start = Instant::now();
                            result =
                                run_thread(&mut h, ops, slots, abort, check_zero, byte, progress);
                            times.push((start, Instant::now()));
                        }
                        barrier.wait();
                        if result.is_ok() && !abort.load(Ordering::Relaxed) {
                            free_leftovers(&mut h, own, slots);
                            for op in ops.iter().filter(|op| op.kind != OpKind::Free) {
                                slots[op.slot as usize]
                                    .store(std::ptr::null_mut(), Ordering::Relaxed);
                            }
                        }
                        barrier.wait();
                    }
                    (times, result)
                })
            })
            .collect();
        let mut before = minflt();
        for _ in 0..passes {
            barrier.wait();
            barrier.wait();
            faults.push(minflt().saturating_sub(before));
            barrier.wait();
            before = minflt();
        }
        handles.into_iter().map(|h| h.join()).collect::<Vec<_>>()
    });
    // A pass's wall time runs from the first thread's start (each takes the
    // time right after the barrier: the main thread may be descheduled
    // there) to the last thread's last event, so thread exits, set-up and
    // clean-up are not counted.
    let mut walls: Vec<(Option<Instant>, Option<Instant>)> = vec![(None, None); passes];
    let mut first: Option<(u64, String)> = None;
    for r in results {
        match r {
            Ok((times, Ok(()))) => {
                for (w, (s, e)) in walls.iter_mut().zip(times) {
                    w.0 = Some(w.0.map_or(s, |x| x.min(s)));
                    w.1 = Some(w.1.map_or(e, |x| x.max(e)));
                }
            }
            Ok((_, Err(Stop::Aborted))) => {}
            Ok((_, Err(Stop::Failed { line, reason }))) => {
                if first.as_ref().is_none_or(|(l, _)| line < *l) {
                    first = Some((line, reason));
                }
            }
            Err(_) => {
                first.get_or_insert((0, "a replay thread panicked".into()));
            }
        }
    }
    if let Some((line, reason)) = first {
        return Err(ReplayError {
            path: trace.name.clone(),
            line: (line > 0).then_some(line),
            reason,
        });
    }
    Ok(walls
        .into_iter()
        .zip(faults)
        .map(|(w, minflt)| Outcome {
            wall: match w {
                (Some(s), Some(e)) => e.saturating_duration_since(s),
                _ => Duration::ZERO,
            },
            events: trace.events,
            minflt,
        })
        .collect())
}

/// Frees the blocks of `own` (still live at the trace's end, created by
/// this thread).
fn free_leftovers<L: Local>(h: &mut L, own: &[Leftover], slots: &[AtomicPtr<u8>]) {
    for l in own {
        let p = slots[l.slot as usize].load(Ordering::Acquire);
        if !p.is_null() {
            // SAFETY: every thread has finished the pass (barrier); `p` is
            // live (never freed in the trace) with this layout, checked by
            // `load`, and this thread created it.
            unsafe {
                h.dealloc(
                    p,
                    Layout::from_size_align_unchecked(l.size as usize, 1 << l.align_log),
                )
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::file::TraceReader;
    use std::alloc::GlobalAlloc;
    use std::io::Cursor;

    fn trace(text: &str) -> Trace {
        let mut r = TraceReader::from_reader(Cursor::new(text.as_bytes().to_vec()), "t.hkt")
            .expect("reader");
        load(&mut r, "t.hkt", |_| {}).expect("load")
    }

    const REMOTE: &str = "hktrace 1\na 0 1 24 16\nz 0 2 10000 16\na 1 3 0 16\nr 1 1 4 5000 64\nf 1 2\nf 0 3\nr 0 4 5 8 16\n";

    #[test]
    fn load_splits_per_thread_and_numbers_slots() {
        let t = trace(REMOTE);
        assert_eq!(t.events, 7);
        assert_eq!(t.blocks, 5);
        assert_eq!(t.threads.len(), 2);
        assert_eq!(t.threads[0].len(), 4);
        assert_eq!(t.threads[1].len(), 3);
        let r = t.threads[1][1];
        assert_eq!(r.kind, OpKind::Realloc);
        assert_eq!((r.old_slot, r.old_size, r.old_align_log), (0, 24, 4));
        assert_eq!((r.slot, r.size, r.align_log, r.line), (3, 5000, 6, 5));
        // Size 0 is replayed as 1.
        assert_eq!(t.threads[1][0].size, 1);
        assert_eq!(t.leftover.len(), 1);
    }

    #[test]
    fn every_backend_replays_remote_frees_and_reallocs() {
        let t = trace(REMOTE);
        for name in AllocName::ALL {
            let o = run_on(&t, name, None).unwrap_or_else(|e| panic!("{name:?}: {e}"));
            assert_eq!(o.events, 7);
        }
    }

    /// Counts the blocks live in a `System` heap.
    struct Counting(std::sync::atomic::AtomicI64);
    // SAFETY: forwards to `System`, counting.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, l: Layout) -> *mut u8 {
            self.0.fetch_add(1, Ordering::Relaxed);
            // SAFETY: forwarded contract.
            unsafe { std::alloc::System.alloc(l) }
        }
        unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
            self.0.fetch_sub(1, Ordering::Relaxed);
            // SAFETY: forwarded contract.
            unsafe { std::alloc::System.dealloc(p, l) }
        }
    }

    #[test]
    fn passes_rerun_the_whole_trace_and_free_its_leftovers_each_time() {
        let t = trace(REMOTE);
        let g = Global(Counting(std::sync::atomic::AtomicI64::new(0)));
        let passes = run_passes(&t, &g, 4, None).unwrap();
        assert_eq!(passes.len(), 4);
        assert!(passes.iter().all(|o| o.events == 7));
        // Every pass freed what it left live: nothing is live at the end
        // (a slot not reset between passes would free a stale pointer).
        assert_eq!(g.0 .0.load(Ordering::Relaxed), 0);
        for name in AllocName::ALL {
            let v = run_on_passes(&t, name, 3, None).unwrap_or_else(|e| panic!("{name:?}: {e}"));
            assert_eq!(v.len(), 3);
        }
    }

    #[test]
    fn an_impossible_layout_is_a_line_error() {
        let text = format!("hktrace 1\na 0 1 1 16\na 0 2 {} 16\n", u64::MAX - 3);
        let mut r = TraceReader::from_reader(Cursor::new(text.into_bytes()), "t.hkt").unwrap();
        let e = load(&mut r, "t.hkt", |_| {}).unwrap_err();
        assert_eq!(e.line, Some(3));
        assert!(e.to_string().starts_with("t.hkt:3: size"), "{e}");
    }

    /// A backend whose allocations fail from the `n`-th on.
    struct FailAfter(std::sync::atomic::AtomicU64);
    // SAFETY: forwards to `System` until the counter runs out, then fails.
    unsafe impl GlobalAlloc for FailAfter {
        unsafe fn alloc(&self, l: Layout) -> *mut u8 {
            if self.0.fetch_sub(1, Ordering::Relaxed) == 0 {
                self.0.store(0, Ordering::Relaxed);
                return std::ptr::null_mut();
            }
            // SAFETY: forwarded contract.
            unsafe { std::alloc::System.alloc(l) }
        }
        unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
            // SAFETY: forwarded contract.
            unsafe { std::alloc::System.dealloc(p, l) }
        }
    }

    #[test]
    fn a_null_allocation_is_reported_with_its_line_and_waiters_give_up() {
        // Thread 1 waits for block 3, which thread 0 fails to allocate (its
        // third allocation).
        let t = trace("hktrace 1\na 0 1 8 16\na 0 2 8 16\na 0 3 8 16\nf 1 3\n");
        let e = run(&t, &Global(FailAfter(2.into())), None).unwrap_err();
        assert_eq!(e.line, Some(4), "{e}");
        assert!(e.reason.contains("null"), "{e}");
    }

    /// An allocator whose zeroed blocks are not zero.
    struct Dirty;
    // SAFETY: forwards to `System`, filling zeroed blocks with 0xff.
    unsafe impl GlobalAlloc for Dirty {
        unsafe fn alloc(&self, l: Layout) -> *mut u8 {
            // SAFETY: forwarded contract.
            let p = unsafe { std::alloc::System.alloc(l) };
            if !p.is_null() {
                // SAFETY: `p` is a fresh block of `l.size()` bytes.
                unsafe { p.write_bytes(0xff, l.size()) };
            }
            p
        }
        unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
            // SAFETY: forwarded contract.
            unsafe { self.alloc(l) }
        }
        unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
            // SAFETY: forwarded contract.
            unsafe { std::alloc::System.dealloc(p, l) }
        }
    }

    #[test]
    fn a_dirty_zeroed_block_is_caught() {
        let t = trace("hktrace 1\na 0 1 8 16\nz 0 2 100 16\n");
        let e = run(&t, &Global(Dirty), None).unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");
        assert!(e.reason.contains("zero"), "{e}");
    }

    #[test]
    fn touch_writes_the_first_byte_of_every_page() {
        let l = Layout::from_size_align(3 * PAGE, PAGE).unwrap();
        // SAFETY: non-zero size.
        let p = unsafe { std::alloc::System.alloc_zeroed(l) };
        assert!(!p.is_null());
        // SAFETY: the block is 3 pages long.
        unsafe {
            assert!(touch(p.add(10), 2 * PAGE, 7, true));
            let b = std::slice::from_raw_parts(p, 3 * PAGE);
            let written: Vec<usize> = (0..b.len()).filter(|&i| b[i] == 7).collect();
            assert_eq!(written, vec![10, PAGE, 2 * PAGE]);
            assert!(!touch(p.add(10), 1, 7, true));
            std::alloc::System.dealloc(p, l);
        }
    }
}
