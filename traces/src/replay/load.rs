//! Phase 1 of a replay: [`load`] reads and validates a whole trace into
//! per-thread lists of [`Op`]s with dense block slots (the [`Trace`]).

use super::ReplayError;
use crate::event::{Event, Record};
use crate::file::TraceReader;
use std::alloc::Layout;
use std::collections::HashMap;

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
    pub(super) fn layout(&self) -> Layout {
        // SAFETY: `load` checked `Layout::from_size_align` on exactly these
        // numbers before storing them.
        unsafe { Layout::from_size_align_unchecked(self.size as usize, 1 << self.align_log) }
    }

    pub(super) fn old_layout(&self) -> Layout {
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
pub(super) struct Leftover {
    pub(super) tid: usize,
    pub(super) slot: u64,
    pub(super) size: u64,
    pub(super) align_log: u8,
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
    pub(super) largest: Vec<(u64, u64)>,
    pub(super) leftover: Vec<Leftover>,
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
