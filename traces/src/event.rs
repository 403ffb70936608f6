//! The vocabulary of a trace: one [`Event`] per allocator request, and a
//! [`Record`] for each line of a trace file (an event or a comment).
//!
//! This is the one `Op` vocabulary of the `traces` package: the text and
//! binary readers produce it, the writers consume it, the recorder and the
//! synthetic generators emit it, and the replayers (later) drive allocators
//! with it. Numbers are `u64` throughout because hktrace v1 says "decimal,
//! unsigned, 64-bit" for every field.

use serde::Serialize;

/// The longest line a trace file may have, newline excluded (64 KiB): the
/// text reader's limit, which the errors and the binary format also name.
/// An event line is at most 107 bytes; the limit is for comments and for
/// garbage.
pub const MAX_LINE: usize = 1 << 16;

/// A trace thread number: 0, 1, 2, … in the order of each thread's first event.
pub type Tid = u64;

/// A block identifier: fresh for every block of a trace (never reused), ≥ 1.
pub type BlockId = u64;

/// One allocator request, without addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Event {
    /// `a tid id size align`: an allocation (malloc, memalign, Rust `alloc`).
    Alloc {
        /// The requesting thread.
        tid: Tid,
        /// The new block's fresh id.
        id: BlockId,
        /// Requested bytes (0 for `malloc(0)`).
        size: u64,
        /// Requested alignment, a power of two.
        align: u64,
    },
    /// `z tid id size align`: a zero-filled allocation (calloc, `alloc_zeroed`).
    Zeroed {
        /// The requesting thread.
        tid: Tid,
        /// The new block's fresh id.
        id: BlockId,
        /// Requested bytes (the product for calloc).
        size: u64,
        /// Requested alignment, a power of two.
        align: u64,
    },
    /// `r tid old_id new_id size align`: live block `old_id` becomes the fresh
    /// block `new_id` of `size` bytes; `old_id` is dead afterwards.
    Realloc {
        /// The requesting thread.
        tid: Tid,
        /// The live block given up.
        old_id: BlockId,
        /// The block's new, fresh id.
        new_id: BlockId,
        /// New size in bytes.
        size: u64,
        /// Alignment of the block, a power of two.
        align: u64,
    },
    /// `f tid id`: the free of live block `id`.
    Free {
        /// The freeing thread (not necessarily the allocating one).
        tid: Tid,
        /// The live block freed.
        id: BlockId,
    },
}

/// The four kinds of [`Event`], for counting and for error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    /// [`Event::Alloc`], letter `a`.
    Alloc,
    /// [`Event::Zeroed`], letter `z`.
    Zeroed,
    /// [`Event::Realloc`], letter `r`.
    Realloc,
    /// [`Event::Free`], letter `f`.
    Free,
}

impl EventKind {
    /// The line letter of this kind in the text form.
    pub const fn letter(self) -> u8 {
        match self {
            EventKind::Alloc => b'a',
            EventKind::Zeroed => b'z',
            EventKind::Realloc => b'r',
            EventKind::Free => b'f',
        }
    }

    /// The kind written with `letter`, if any.
    pub const fn from_letter(letter: u8) -> Option<EventKind> {
        match letter {
            b'a' => Some(EventKind::Alloc),
            b'z' => Some(EventKind::Zeroed),
            b'r' => Some(EventKind::Realloc),
            b'f' => Some(EventKind::Free),
            _ => None,
        }
    }

    /// Number of space-separated fields of a line of this kind, letter included.
    pub const fn field_count(self) -> usize {
        match self {
            EventKind::Alloc | EventKind::Zeroed => 5,
            EventKind::Realloc => 6,
            EventKind::Free => 3,
        }
    }
}

impl Event {
    /// The event's kind.
    pub const fn kind(&self) -> EventKind {
        match self {
            Event::Alloc { .. } => EventKind::Alloc,
            Event::Zeroed { .. } => EventKind::Zeroed,
            Event::Realloc { .. } => EventKind::Realloc,
            Event::Free { .. } => EventKind::Free,
        }
    }

    /// The thread that made the request.
    pub const fn tid(&self) -> Tid {
        match *self {
            Event::Alloc { tid, .. }
            | Event::Zeroed { tid, .. }
            | Event::Realloc { tid, .. }
            | Event::Free { tid, .. } => tid,
        }
    }

    /// The block this event creates, if any (`a`, `z`, and `r`'s new id).
    pub const fn new_id(&self) -> Option<BlockId> {
        match *self {
            Event::Alloc { id, .. } | Event::Zeroed { id, .. } => Some(id),
            Event::Realloc { new_id, .. } => Some(new_id),
            Event::Free { .. } => None,
        }
    }

    /// The block this event ends, if any (`f`, and `r`'s old id).
    pub const fn dead_id(&self) -> Option<BlockId> {
        match *self {
            Event::Free { id, .. } => Some(id),
            Event::Realloc { old_id, .. } => Some(old_id),
            Event::Alloc { .. } | Event::Zeroed { .. } => None,
        }
    }

    /// `(size, align)` of the block this event creates, if any.
    pub const fn layout(&self) -> Option<(u64, u64)> {
        match *self {
            Event::Alloc { size, align, .. }
            | Event::Zeroed { size, align, .. }
            | Event::Realloc { size, align, .. } => Some((size, align)),
            Event::Free { .. } => None,
        }
    }
}

/// One line of a trace after the header: an event or a comment.
///
/// Comments are kept (rather than skipped) so that conversions between the
/// text and binary forms are lossless, byte for byte.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Record {
    /// An allocator request.
    Event(Event),
    /// A comment line; the bytes after the leading `#`, without the newline
    /// (so `# hello` is stored as `" hello"`). Never contains `\n`.
    Comment(Vec<u8>),
}
