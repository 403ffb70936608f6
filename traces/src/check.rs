//! `hktrace check`: a trace replayed deterministically on a hakmem instance
//! with the model in lockstep ([`verify::lockstep`]), one logical thread
//! (heap) per trace thread, all driven from one OS thread.
//!
//! # Two passes
//! 1. The whole trace is read and validated (a bad line is reported with its
//!    number and reason before anything runs) and measured: events,
//!    threads, peak live bytes and blocks, and each thread's last event.
//! 2. The first `limit` events (all by default) are replayed through a
//!    [`Lockstep`]: `a`/`z` → `alloc(t, size, align)`, `r` → `realloc`, `f`
//!    → `free`. A trace thread's logical thread exits right after its last
//!    event (the trace has no exit lines: this is the latest point a program
//!    could have exited it, and it makes frees of blocks of exited threads
//!    happen as in the program: remote frees to abandoned pages).
//!
//! # Threads
//! The model numbers threads with a `u8` and never revives one, so at most
//! [`MAX_LOGICAL`] logical threads exist in a run. A trace with more threads
//! (recorders give every OS thread a fresh tid) reuses the heaps of finished
//! trace threads, as hakmem's pooled heaps do: a finished thread's heap is
//! parked instead of exited while the threads still to start outnumber the
//! logical threads left, and the next new trace thread takes a parked heap.
//! Only more than [`MAX_LOGICAL`] trace threads live at once is refused.
//!
//! # What is checked (see [`CheckMode::Touched`])
//! Every protocol step the implementation reports is accepted by the model;
//! every returned pointer is the block the model handed out (small classes),
//! aligned as asked and overlapping no live block (every size, large blocks
//! included: above the largest class (8 KiB) the model has no step, so a
//! large block is checked only for alignment, distinctness, writability and
//! keeping its contents); after each event the parts of the state its steps
//! touched are compared; every `full_every` events, at rare steps and at
//! the end the whole state, the live-block sets, the model's invariants and
//! the implementation's snapshot check. Each block gets a tag written at its
//! first and last byte on allocation, checked at its realloc and free (a
//! block that overlapped another or was not copied by realloc shows there).
//! `z` is replayed as `a`: zero-filling is the C layer's job (`calloc`), not
//! part of the protocol.

use crate::error::TraceError;
use crate::event::Event;
use crate::file::TraceReader;
use crate::text::{format_event, MAX_EVENT_LINE};
use hakmem::sync::Backend;
use hakmem::InstanceConfig;
use serde::Serialize;
use std::collections::HashMap;
use std::fmt;
use verify::lockstep::{CheckMode, Divergence, Lockstep};

/// The most logical threads of one run (the model's thread ids are `u8`).
pub const MAX_LOGICAL: usize = 255;

/// How to check.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Replay only the first `limit` events (the whole trace is still read
    /// and measured).
    pub limit: Option<u64>,
    /// Events between two full comparisons (1: every event is compared in
    /// full).
    pub full_every: u64,
    /// The instance's configuration (`reuse_heaps` is forced off).
    pub instance: InstanceConfig,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            limit: None,
            full_every: 65_536,
            instance: InstanceConfig::DEFAULT,
        }
    }
}

/// The figures of a successful check.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    /// Events in the trace.
    pub events: u64,
    /// Events replayed and checked (`events` unless limited).
    pub checked: u64,
    /// Trace threads.
    pub threads: u64,
    /// Logical threads (heaps) created.
    pub logical_threads: u64,
    /// Trace threads that took a parked heap.
    pub reused_heaps: u64,
    /// Peak live bytes of the trace (requested sizes).
    pub peak_live_bytes: u64,
    /// Peak live blocks of the trace.
    pub peak_live_blocks: u64,
    /// Allocations (and reallocs) above the largest small class.
    pub large_allocs: u64,
    /// Reallocs that stayed in their class (in place).
    pub realloc_in_place: u64,
    /// Reallocs that moved (alloc, copy, free).
    pub realloc_moved: u64,
    /// Frees by another thread than the block's allocating thread.
    pub remote_frees: u64,
    /// Frees of blocks whose allocating trace thread had ended.
    pub frees_after_exit: u64,
    /// Protocol steps applied to the model.
    pub steps: u64,
    /// Whole-state comparisons.
    pub full_checks: u64,
    /// Touched-parts comparisons.
    pub touched_checks: u64,
}

/// Why a check failed.
#[derive(Debug)]
pub enum CheckError {
    /// The trace is malformed (file, line, reason).
    Trace(TraceError),
    /// The implementation and the model diverged at an event.
    Divergence {
        /// The file.
        path: String,
        /// The event's line (text) or record number (binary; the header
        /// is 1).
        line: u64,
        /// The event's index among the events (0-based).
        index: u64,
        /// The event as a trace line.
        event: String,
        /// What diverged, with both views.
        divergence: Box<Divergence>,
    },
    /// A block's memory did not behave: its tag changed before its free or
    /// realloc (another block overlapped it), or a realloc lost it.
    Memory {
        /// The file.
        path: String,
        /// The event's line.
        line: u64,
        /// What happened.
        reason: String,
    },
    /// The replay cannot go on (too many threads at once, a size that
    /// does not fit this machine).
    Unsupported {
        /// The file.
        path: String,
        /// The event's line.
        line: u64,
        /// Why.
        reason: String,
    },
}

impl fmt::Display for CheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckError::Trace(e) => write!(f, "{e}"),
            CheckError::Divergence {
                path,
                line,
                index,
                event,
                divergence,
            } => write!(
                f,
                "{path}:{line}: divergence at event #{index} `{event}` ({}):\n{divergence}",
                divergence.kind()
            ),
            CheckError::Memory { path, line, reason } => {
                write!(f, "{path}:{line}: memory check failed: {reason}")
            }
            CheckError::Unsupported { path, line, reason } => {
                write!(f, "{path}:{line}: cannot replay: {reason}")
            }
        }
    }
}

impl std::error::Error for CheckError {}

impl From<TraceError> for CheckError {
    fn from(e: TraceError) -> Self {
        CheckError::Trace(e)
    }
}

/// Pass 1's figures.
#[derive(Debug, Default)]
struct Shape {
    events: u64,
    peak_live_bytes: u64,
    peak_live_blocks: u64,
    /// Per trace thread: the index of its last event.
    last: Vec<u64>,
}

fn tid_of(ev: &Event) -> u64 {
    match *ev {
        Event::Alloc { tid, .. }
        | Event::Zeroed { tid, .. }
        | Event::Realloc { tid, .. }
        | Event::Free { tid, .. } => tid,
    }
}

fn measure(
    mut r: TraceReader,
    progress: &mut dyn FnMut(u64, Option<u64>),
) -> Result<Shape, TraceError> {
    let mut s = Shape::default();
    while let Some(ev) = r.next() {
        let ev = ev?;
        let t = tid_of(&ev) as usize;
        if t == s.last.len() {
            s.last.push(0);
        }
        s.last[t] = s.events;
        s.events += 1;
        let v = r.validator();
        s.peak_live_bytes = s.peak_live_bytes.max(v.live_bytes());
        s.peak_live_blocks = s.peak_live_blocks.max(v.live_blocks());
        if s.events % 65_536 == 0 {
            progress(s.events, None);
        }
    }
    Ok(s)
}

/// A live block of the replay.
#[derive(Clone, Copy, Debug)]
struct Block {
    ptr: *mut u8,
    size: usize,
    tid: u64,
}

/// The tag of block `id` (never 0, so fresh zeroed memory does not pass).
fn tag(id: u64) -> u8 {
    (id % 251) as u8 + 1
}

/// Writes `id`'s tag at the first and last byte of `b`.
fn write_tag(b: &Block, id: u64) {
    if b.size > 0 {
        // SAFETY: `b.ptr` is a live block of at least `b.size` bytes that
        // this replay owns.
        unsafe {
            b.ptr.write(tag(id));
            b.ptr.add(b.size - 1).write(tag(id));
        }
    }
}

/// Whether `b` still carries `id`'s tag.
fn has_tag(b: &Block, id: u64) -> bool {
    // SAFETY: as in `write_tag`.
    b.size == 0 || unsafe { *b.ptr == tag(id) && *b.ptr.add(b.size - 1) == tag(id) }
}

/// Checks the trace `open()` opens (called twice: once to measure, once to
/// replay) with backend `B` (a recording backend of [`verify::backends`]).
/// `progress(done, total)` is called every 65,536 events of each pass:
/// `total` is `None` while measuring, the number of events to replay after.
pub fn check<B: Backend>(
    path: &str,
    open: impl Fn() -> Result<TraceReader, TraceError>,
    opts: &Options,
    mut progress: impl FnMut(u64, Option<u64>),
) -> Result<Report, CheckError> {
    let shape = measure(open()?, &mut progress)?;
    let threads = shape.last.len();
    let mut rep = Report {
        events: shape.events,
        threads: threads as u64,
        peak_live_bytes: shape.peak_live_bytes,
        peak_live_blocks: shape.peak_live_blocks,
        ..Report::default()
    };
    let limit = opts.limit.unwrap_or(u64::MAX).min(shape.events);
    let logical_max = threads.min(MAX_LOGICAL);
    let mut ls = Lockstep::<B>::new(opts.instance, logical_max as u8);
    ls.check_mode = if opts.full_every <= 1 {
        CheckMode::Full
    } else {
        CheckMode::Touched {
            full_every: opts.full_every,
        }
    };
    // Trace thread → logical thread; parked heaps of finished threads.
    let mut logical: Vec<Option<model::ThreadId>> = vec![None; threads];
    let mut ended = vec![false; threads];
    let mut parked: Vec<model::ThreadId> = Vec::new();
    let mut started = 0usize;
    let mut blocks: HashMap<u64, Block> = HashMap::new();
    let mut r = open()?;
    let mut index = 0u64;
    progress(0, Some(limit));
    while index < limit {
        let Some(ev) = r.next() else { break };
        let ev = ev?;
        let line = r.line();
        let diverged = |d: Divergence| {
            let mut line_buf = [0u8; MAX_EVENT_LINE];
            let n = format_event(&ev, &mut line_buf);
            CheckError::Divergence {
                path: path.to_owned(),
                line,
                index,
                event: String::from_utf8_lossy(&line_buf[..n])
                    .trim_end()
                    .to_owned(),
                divergence: Box::new(d),
            }
        };
        let unsupported = |reason: String| CheckError::Unsupported {
            path: path.to_owned(),
            line,
            reason,
        };
        let memory = |reason: String| CheckError::Memory {
            path: path.to_owned(),
            line,
            reason,
        };
        let tid = tid_of(&ev) as usize;
        if logical[tid].is_none() {
            let left = logical_max - ls.threads();
            let to_start = threads - started;
            let t = match parked.pop() {
                Some(t) if left < to_start => {
                    rep.reused_heaps += 1;
                    t
                }
                other => {
                    parked.extend(other);
                    if left == 0 {
                        return Err(unsupported(format!(
                            "more than {MAX_LOGICAL} trace threads are live at once (the model numbers threads with a u8)"
                        )));
                    }
                    ls.new_thread().map_err(diverged)?
                }
            };
            started += 1;
            logical[tid] = Some(t);
        }
        let t = logical[tid].expect("mapped above");
        let size_of = |size: u64| {
            usize::try_from(size)
                .ok()
                .filter(|&s| s <= isize::MAX as usize / 2)
                .ok_or_else(|| unsupported(format!("size {size} does not fit this machine")))
        };
        let align = match ev {
            Event::Alloc { align, .. }
            | Event::Zeroed { align, .. }
            | Event::Realloc { align, .. } => align,
            Event::Free { .. } => 16,
        };
        if align > 1 << 30 {
            return Err(unsupported(format!(
                "alignment {align} is above the replay's limit of 1 GiB"
            )));
        }
        match ev {
            Event::Alloc {
                id, size, align, ..
            }
            | Event::Zeroed {
                id, size, align, ..
            } => {
                let size = size_of(size)?;
                if size > hakmem::size_class::SMALL_MAX {
                    rep.large_allocs += 1;
                }
                let ptr = ls.alloc(t, size, align as usize).map_err(diverged)?;
                let b = Block {
                    ptr,
                    size,
                    tid: tid as u64,
                };
                write_tag(&b, id);
                blocks.insert(id, b);
            }
            Event::Realloc {
                old_id,
                new_id,
                size,
                align,
                ..
            } => {
                let size = size_of(size)?;
                let old = blocks
                    .remove(&old_id)
                    .expect("the validator checked liveness");
                if !has_tag(&old, old_id) {
                    return Err(memory(format!(
                        "block {old_id} ({:p}, {} bytes) lost its contents before this realloc",
                        old.ptr, old.size
                    )));
                }
                if size > hakmem::size_class::SMALL_MAX {
                    rep.large_allocs += 1;
                }
                let ptr = ls
                    .realloc(t, old.ptr, size, align as usize)
                    .map_err(diverged)?;
                if ptr == old.ptr {
                    rep.realloc_in_place += 1;
                } else {
                    rep.realloc_moved += 1;
                }
                let b = Block {
                    ptr,
                    size,
                    tid: tid as u64,
                };
                // The first byte moved with the contents.
                // SAFETY: a live block of `size` bytes of this replay.
                if size > 0 && old.size > 0 && unsafe { *ptr } != tag(old_id) {
                    return Err(memory(format!(
                        "realloc of block {old_id} to {ptr:p} did not keep its contents"
                    )));
                }
                write_tag(&b, new_id);
                blocks.insert(new_id, b);
            }
            Event::Free { id, .. } => {
                let b = blocks.remove(&id).expect("the validator checked liveness");
                if !has_tag(&b, id) {
                    return Err(memory(format!(
                        "block {id} ({:p}, {} bytes) lost its contents before its free",
                        b.ptr, b.size
                    )));
                }
                if b.tid != tid as u64 {
                    rep.remote_frees += 1;
                    if ended[b.tid as usize] {
                        rep.frees_after_exit += 1;
                    }
                }
                ls.free(t, b.ptr).map_err(diverged)?;
            }
        }
        // The thread's last event: exit its heap, or park it for reuse.
        if shape.last[tid] == index {
            ended[tid] = true;
            let left = logical_max - ls.threads();
            if threads - started > left {
                parked.push(t);
            } else {
                ls.exit(t).map_err(diverged)?;
            }
        }
        index += 1;
        if index % 65_536 == 0 {
            progress(index, Some(limit));
        }
    }
    ls.check().map_err(|d| CheckError::Divergence {
        path: path.to_owned(),
        line: r.line(),
        index,
        event: "(end of the replay: full check)".into(),
        divergence: Box::new(d),
    })?;
    rep.checked = index;
    rep.logical_threads = ls.threads() as u64;
    rep.steps = ls.steps();
    (rep.full_checks, rep.touched_checks) = ls.checks();
    Ok(rep)
}
