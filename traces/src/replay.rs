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

use crate::error::TraceError;
use crate::event::{Event, Record};
use crate::file::TraceReader;
use std::alloc::{GlobalAlloc, Layout};
use std::collections::HashMap;
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

/// What an [`Op`] does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum OpKind {
    /// `a`: allocate `size` into `slot`.
    Alloc,
    /// `z`: allocate zero-filled.
    Zeroed,
    /// `r`: reallocate `old_slot` (of `old_size`) into `slot` of `size`.
    Realloc,
    /// `f`: free `slot` (of `size`).
    Free,
}

/// One event of one thread, ready to run: sizes already non-zero, layouts
/// already checked.
#[derive(Clone, Copy, Debug)]
pub struct Op {
    /// The event's line in the trace (for error messages).
    pub line: u64,
    /// The created block's size (`a`, `z`, `r`) or the freed one's (`f`).
    pub size: u64,
    /// `r`: the old block's size.
    pub old_size: u64,
    /// The created block's slot (`a`, `z`, `r`) or the freed one's (`f`).
    pub slot: u64,
    /// `r`: the old block's slot.
    pub old_slot: u64,
    /// What to do.
    pub kind: OpKind,
    /// log2 of the alignment of `size`'s block.
    pub align_log: u8,
    /// `r`: log2 of the old block's alignment.
    pub old_align_log: u8,
}

impl Op {
    fn layout(&self) -> Layout {
        // SAFETY: `load` checked `Layout::from_size_align` on exactly these
        // numbers before storing them.
        unsafe { Layout::from_size_align_unchecked(self.size as usize, 1 << self.align_log) }
    }

    fn old_layout(&self) -> Layout {
        // SAFETY: as in `layout`: checked by `load` when the old block was
        // created.
        unsafe {
            Layout::from_size_align_unchecked(self.old_size as usize, 1 << self.old_align_log)
        }
    }
}

/// A block still live at the end of the trace; freed after the timed part
/// by the thread that created it.
#[derive(Clone, Copy, Debug)]
struct Leftover {
    tid: usize,
    slot: u64,
    size: u64,
    align_log: u8,
}

/// A trace loaded for replay: one op list per trace thread.
#[derive(Debug)]
pub struct Trace {
    /// The trace's name (for messages).
    pub name: String,
    /// Per trace thread, its events in trace order.
    pub threads: Vec<Vec<Op>>,
    /// Events in all.
    pub events: u64,
    /// Blocks created (= slots).
    pub blocks: u64,
    /// Per thread: the largest block it creates and the largest alignment.
    largest: Vec<(u64, u64)>,
    leftover: Vec<Leftover>,
}

impl Trace {
    /// Bytes the loaded form takes (op lists and, during a run, the slots).
    pub fn memory_bytes(&self) -> u64 {
        let ops: u64 = self.threads.iter().map(|t| t.capacity() as u64).sum();
        ops * std::mem::size_of::<Op>() as u64 + self.blocks * 8
    }
}

/// Reads the whole trace from `reader` (validated) into per-thread op lists;
/// `progress` is called with the line number every 64 Ki lines.
pub fn load(
    reader: &mut TraceReader,
    name: &str,
    mut progress: impl FnMut(u64),
) -> Result<Trace, ReplayError> {
    let mut threads: Vec<Vec<Op>> = Vec::new();
    let mut largest: Vec<(u64, u64)> = Vec::new();
    // Live id → (slot, size, align_log, creating tid), sizes as replayed
    // (never 0).
    let mut live: HashMap<u64, (u64, u64, u8, usize)> = HashMap::new();
    let mut blocks = 0u64;
    let mut events = 0u64;
    while let Some(rec) = reader.next_record() {
        let ev = match rec? {
            Record::Event(ev) => ev,
            Record::Comment(_) => continue,
        };
        let line = reader.line();
        if line % (64 << 10) == 0 {
            progress(line);
        }
        events += 1;
        let bad = |reason: String| ReplayError {
            path: name.to_owned(),
            line: Some(line),
            reason,
        };
        let tid = ev.tid() as usize;
        if tid >= threads.len() {
            // The validator guarantees tids never skip ahead.
            threads.resize_with(tid + 1, Vec::new);
            largest.resize(tid + 1, (0, 1));
        }
        let mut op = Op {
            line,
            size: 0,
            old_size: 0,
            slot: 0,
            old_slot: 0,
            kind: match ev {
                Event::Alloc { .. } => OpKind::Alloc,
                Event::Zeroed { .. } => OpKind::Zeroed,
                Event::Realloc { .. } => OpKind::Realloc,
                Event::Free { .. } => OpKind::Free,
            },
            align_log: 0,
            old_align_log: 0,
        };
        if let Some(dead) = ev.dead_id() {
            // The validator checked that `dead` is live.
            let Some((slot, size, align_log, _)) = live.remove(&dead) else {
                return Err(bad(format!("block {dead} is not live")));
            };
            if let Event::Free { .. } = ev {
                op.slot = slot;
                op.size = size;
                op.align_log = align_log;
            } else {
                op.old_slot = slot;
                op.old_size = size;
                op.old_align_log = align_log;
            }
        }
        if let (Some(id), Some((size, align))) = (ev.new_id(), ev.layout()) {
            let size = size.max(1);
            let ok = usize::try_from(size)
                .ok()
                .zip(usize::try_from(align).ok())
                .is_some_and(|(s, a)| Layout::from_size_align(s, a).is_ok());
            if !ok {
                return Err(bad(format!(
                    "size {size} with align {align} is not a valid layout on this machine"
                )));
            }
            op.size = size;
            op.align_log = align.trailing_zeros() as u8;
            op.slot = blocks;
            live.insert(id, (blocks, size, op.align_log, tid));
            blocks += 1;
            let l = &mut largest[tid];
            *l = (l.0.max(size), l.1.max(align));
        }
        threads[tid].push(op);
    }
    let mut leftover: Vec<Leftover> = live
        .into_values()
        .map(|(slot, size, align_log, tid)| Leftover {
            tid,
            slot,
            size,
            align_log,
        })
        .collect();
    leftover.sort_by_key(|l| l.slot);
    Ok(Trace {
        name: name.to_owned(),
        threads,
        events,
        blocks,
        largest,
        leftover,
    })
}

/// One thread's handle on an allocator.
pub trait Local {
    /// Allocates `layout` (zero-filled if `zeroed`); null on failure.
    ///
    /// # Safety
    /// `layout.size()` is not 0.
    unsafe fn alloc(&mut self, layout: Layout, zeroed: bool) -> *mut u8;
    /// Reallocates `ptr` (of layout `old`) to `new`; null on failure (then
    /// `ptr` is still live).
    ///
    /// # Safety
    /// `ptr` is live, was allocated by this backend with layout `old`;
    /// `new.size()` is not 0.
    unsafe fn realloc(&mut self, ptr: *mut u8, old: Layout, new: Layout) -> *mut u8;
    /// Frees `ptr`.
    ///
    /// # Safety
    /// `ptr` is live, was allocated by this backend with `layout`.
    unsafe fn dealloc(&mut self, ptr: *mut u8, layout: Layout);
}

/// An allocator to replay on.
pub trait Backend: Sync {
    /// A thread's handle.
    type Local<'a>: Local
    where
        Self: 'a;
    /// The handle for trace thread `tid`, called on the thread that uses it.
    fn local(&self, tid: usize) -> Self::Local<'_>;
    /// Whether `z` blocks must read back as zero (checked while touching).
    fn zero_filled(&self) -> bool;
}

/// Any `GlobalAlloc`, called directly (not through the process's global
/// allocator).
#[derive(Debug, Default)]
pub struct Global<A>(pub A);

impl<A: GlobalAlloc + Sync> Backend for Global<A> {
    type Local<'a>
        = &'a A
    where
        A: 'a;

    fn local(&self, _tid: usize) -> &A {
        &self.0
    }

    fn zero_filled(&self) -> bool {
        true
    }
}

impl<A: GlobalAlloc> Local for &A {
    unsafe fn alloc(&mut self, layout: Layout, zeroed: bool) -> *mut u8 {
        if zeroed {
            // SAFETY: the caller guarantees a non-zero size.
            unsafe { (**self).alloc_zeroed(layout) }
        } else {
            // SAFETY: the caller guarantees a non-zero size.
            unsafe { (**self).alloc(layout) }
        }
    }

    unsafe fn realloc(&mut self, ptr: *mut u8, old: Layout, new: Layout) -> *mut u8 {
        if old.align() == new.align() {
            // SAFETY: the caller's contract is `GlobalAlloc::realloc`'s; the
            // alignment is unchanged and `new` is a valid layout.
            return unsafe { (**self).realloc(ptr, old, new.size()) };
        }
        // A realloc that changes the alignment (possible in a trace, not
        // through `GlobalAlloc::realloc`): allocate, copy, free.
        // SAFETY: `new.size()` is not 0.
        let q = unsafe { (**self).alloc(new) };
        if !q.is_null() {
            // SAFETY: both blocks are live, distinct and at least this long.
            unsafe { std::ptr::copy_nonoverlapping(ptr, q, old.size().min(new.size())) };
            // SAFETY: `ptr` is live with layout `old` (the caller's contract).
            unsafe { (**self).dealloc(ptr, old) };
        }
        q
    }

    unsafe fn dealloc(&mut self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract is `GlobalAlloc::dealloc`'s.
        unsafe { (**self).dealloc(ptr, layout) }
    }
}

/// The no-op allocator: per thread, a bump pointer through a ring reserved
/// and pre-faulted up front (see the module documentation).
#[derive(Debug)]
pub struct Noop {
    rings: Vec<(usize, usize)>,
}

/// The smallest ring (per thread).
pub const NOOP_MIN_RING: usize = 1 << 20;

impl Noop {
    /// Reserves one ring per thread of `trace`: at least [`NOOP_MIN_RING`]
    /// and at least the thread's largest block plus its largest alignment.
    pub fn new(trace: &Trace) -> Result<Noop, ReplayError> {
        let mut n = Noop { rings: Vec::new() };
        for (tid, &(size, align)) in trace.largest.iter().enumerate() {
            let len = (size as usize)
                .checked_add(align as usize)
                .and_then(|l| l.max(NOOP_MIN_RING).checked_next_multiple_of(PAGE));
            let fail = |what: String| ReplayError {
                path: trace.name.clone(),
                line: None,
                reason: format!("noop allocator: thread {tid}: {what}"),
            };
            let len = len.ok_or_else(|| fail("ring size overflows".into()))?;
            // SAFETY: an anonymous private mapping at an address of the
            // kernel's choice touches no existing memory.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE
                        | libc::MAP_ANONYMOUS
                        | libc::MAP_NORESERVE
                        | libc::MAP_POPULATE,
                    -1,
                    0,
                )
            };
            if p == libc::MAP_FAILED {
                return Err(fail(format!(
                    "cannot reserve {len} bytes: {}",
                    std::io::Error::last_os_error()
                )));
            }
            n.rings.push((p as usize, len));
        }
        Ok(n)
    }
}

impl Drop for Noop {
    fn drop(&mut self) {
        for &(base, len) in &self.rings {
            // SAFETY: the ring was mapped by `new` with this length and no
            // handle outlives the `Noop` (handles borrow it).
            unsafe { libc::munmap(base as *mut libc::c_void, len) };
        }
    }
}

/// A thread's cursor in its [`Noop`] ring.
#[derive(Debug)]
pub struct NoopLocal {
    base: usize,
    len: usize,
    off: usize,
}

impl Backend for Noop {
    type Local<'a> = NoopLocal;

    fn local(&self, tid: usize) -> NoopLocal {
        let (base, len) = self.rings.get(tid).copied().unwrap_or((0, 0));
        NoopLocal { base, len, off: 0 }
    }

    fn zero_filled(&self) -> bool {
        false
    }
}

impl Local for NoopLocal {
    unsafe fn alloc(&mut self, layout: Layout, _zeroed: bool) -> *mut u8 {
        let (size, align) = (layout.size(), layout.align());
        if size.saturating_add(align) > self.len {
            return std::ptr::null_mut();
        }
        let mut start = (self.base + self.off).next_multiple_of(align);
        if start + size > self.base + self.len {
            start = self.base.next_multiple_of(align);
        }
        self.off = start + size - self.base;
        start as *mut u8
    }

    unsafe fn realloc(&mut self, _ptr: *mut u8, _old: Layout, new: Layout) -> *mut u8 {
        // SAFETY: forwarded contract (`new.size()` is not 0).
        unsafe { self.alloc(new, false) }
    }

    unsafe fn dealloc(&mut self, _ptr: *mut u8, _layout: Layout) {}
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

/// The allocators `hktrace replay` has built in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AllocName {
    /// `hakmem::Hakmem`.
    Hakmem,
    /// `std::alloc::System` (glibc malloc here).
    System,
    /// `mimalloc::MiMalloc`.
    Mimalloc,
    /// `tikv_jemallocator::Jemalloc`.
    Jemalloc,
    /// [`Noop`], the harness's own cost.
    Noop,
}

impl AllocName {
    /// Every name, in the order of the table.
    pub const ALL: [AllocName; 5] = [
        AllocName::Hakmem,
        AllocName::System,
        AllocName::Mimalloc,
        AllocName::Jemalloc,
        AllocName::Noop,
    ];

    /// The name as given to `--alloc`.
    pub fn as_str(self) -> &'static str {
        match self {
            AllocName::Hakmem => "hakmem",
            AllocName::System => "system",
            AllocName::Mimalloc => "mimalloc",
            AllocName::Jemalloc => "jemalloc",
            AllocName::Noop => "noop",
        }
    }

    /// The allocator called `s`.
    pub fn parse(s: &str) -> Option<AllocName> {
        AllocName::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

/// Replays `trace` once on the allocator called `name`.
pub fn run_on(
    trace: &Trace,
    name: AllocName,
    progress: Option<&(dyn Fn(u64) + Sync)>,
) -> Result<Outcome, ReplayError> {
    run_on_passes(trace, name, 1, progress).map(|v| v[0])
}

/// Replays `trace` `passes` times on the same threads ([`run_passes`]) on
/// the allocator called `name`.
pub fn run_on_passes(
    trace: &Trace,
    name: AllocName,
    passes: u32,
    progress: Option<&(dyn Fn(u64) + Sync)>,
) -> Result<Vec<Outcome>, ReplayError> {
    match name {
        AllocName::Hakmem => run_passes(trace, &Global(hakmem::Hakmem), passes, progress),
        AllocName::System => run_passes(trace, &Global(std::alloc::System), passes, progress),
        AllocName::Mimalloc => run_passes(trace, &Global(mimalloc::MiMalloc), passes, progress),
        AllocName::Jemalloc => run_passes(
            trace,
            &Global(tikv_jemallocator::Jemalloc),
            passes,
            progress,
        ),
        AllocName::Noop => run_passes(trace, &Noop::new(trace)?, passes, progress),
    }
}

/// Resource use of this process so far.
#[derive(Clone, Copy, Debug, Default)]
pub struct Usage {
    /// Peak resident set, KiB ([`vm_hwm_kib`], else `getrusage` `ru_maxrss`).
    pub peak_rss_kib: u64,
    /// Minor page faults.
    pub minflt: u64,
}

/// Minor page faults of this process so far (`getrusage`; 0 if unknown).
fn minflt() -> u64 {
    // SAFETY: an all-zero `rusage` is a valid value of this plain C struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable `rusage`.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return 0;
    }
    ru.ru_minflt.max(0) as u64
}

/// `getrusage(RUSAGE_SELF)`.
pub fn usage() -> Usage {
    // SAFETY: an all-zero `rusage` is a valid value of this plain C struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable `rusage`.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return Usage::default();
    }
    Usage {
        peak_rss_kib: vm_hwm_kib().unwrap_or(ru.ru_maxrss.max(0) as u64),
        minflt: ru.ru_minflt.max(0) as u64,
    }
}

/// The peak resident set of this process's own address space, KiB
/// (`VmHWM` of `/proc/self/status`). Preferred to `ru_maxrss`, which Linux
/// carries across `exec`: a process started by `posix_spawn` (vfork) gets
/// its *parent's* peak as its floor (a driver of 7 MiB made every worker
/// report at least 7 MiB). Read into a stack buffer: no allocation.
pub fn vm_hwm_kib() -> Option<u64> {
    use std::io::Read;
    let mut buf = [0u8; 4096];
    let mut f = std::fs::File::open("/proc/self/status").ok()?;
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(_) => return None,
        }
    }
    let text = std::str::from_utf8(&buf[..n]).ok()?;
    let line = text.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The current resident set in KiB (`/proc/self/statm`), 0 if unknown.
pub fn current_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * (PAGE as u64) / 1024)
}

#[cfg(test)]
mod tests {
    use super::*;
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
