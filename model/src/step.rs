//! The protocol steps of `docs/protocol.md`, one variant each, with every
//! nondeterministic choice (which slot, which block, how many) an explicit
//! field, so that a generator can enumerate the choices and an
//! implementation's actual choice can be checked against the model.

use std::fmt;

use crate::ids::{BlockId, ClassId, PageId, SsId, ThreadId};

/// Why a delta is flushed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FlushReason {
    /// `|delta|` reached the threshold.
    Threshold,
    /// A page boundary (any time the owner chooses).
    Boundary,
}

/// How `Acquire` finds its slot (the slow path's stages).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    /// Stage 0.5: an `Empty` slot of a SuperSlab among the first
    /// `scan_limit` of the class's registry.
    Scan,
    /// Stage 1: the head entry of the class's lock-free stage-1 list.
    List,
    /// Stage 1: the head entry of the class's mutex fallback list.
    Fallback,
    /// Stage 2: an `Unused` slot of a registered, live SuperSlab.
    Unused,
    /// Stage 3: a SuperSlab just taken from the arena, or a new one.
    Fresh,
}

/// Which stage-1 list an entry comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage1Source {
    /// The lock-free list (node pool).
    List,
    /// The mutex fallback list.
    Fallback,
}

/// One atomic step of the protocol (a linearization point of impl).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Step {
    /// Pop `block`, the head of the free list of `t`'s current page of `class`.
    AllocFast {
        /// Acting heap.
        t: ThreadId,
        /// Size class.
        class: ClassId,
        /// `t`'s current page of `class`.
        page: PageId,
        /// The head of the page's free list.
        block: BlockId,
    },
    /// Carve `n` fresh blocks onto the free list of an owned page.
    Carve {
        /// Acting heap (the owner).
        t: ThreadId,
        /// The page.
        page: PageId,
        /// Blocks carved, `1 ≤ n ≤ capacity - carved`.
        n: u32,
    },
    /// Take the whole remote list (`n` blocks) onto the free list.
    Drain {
        /// Acting heap (the owner).
        t: ThreadId,
        /// The page.
        page: PageId,
        /// The remote list's length.
        n: u32,
    },
    /// Make a partial page current.
    SetCurrent {
        /// Acting heap.
        t: ThreadId,
        /// Size class.
        class: ClassId,
        /// A page of `t`'s partial list.
        page: PageId,
    },
    /// Move the exhausted current page to the full list.
    PageFull {
        /// Acting heap (the owner).
        t: ThreadId,
        /// The current page.
        page: PageId,
    },
    /// Move a full page with remote frees back to the partial list.
    Unfull {
        /// Acting heap (the owner).
        t: ThreadId,
        /// A page of the full list.
        page: PageId,
    },
    /// Claim a slot for `class` by `stage` and make it `t`'s current page.
    Acquire {
        /// Acting heap.
        t: ThreadId,
        /// Size class.
        class: ClassId,
        /// How the slot is found.
        stage: Stage,
        /// The SuperSlab (for `Fresh`, possibly the next new id).
        ss: SsId,
        /// The slot.
        slot: crate::ids::SlotIdx,
    },
    /// Free a live block of a page `t` owns.
    FreeLocal {
        /// Acting heap (the owner).
        t: ThreadId,
        /// The block.
        block: BlockId,
    },
    /// Free a live block of a page `t` does not own: push on its remote list.
    FreeRemote {
        /// Acting heap.
        t: ThreadId,
        /// The block.
        block: BlockId,
    },
    /// Publish a counted remote free (only the `CountBeforePush` mutant
    /// splits a remote free in two; always rejected in the specification).
    PublishRemote {
        /// The block in flight.
        block: BlockId,
    },
    /// Apply the page's delta to the shared counters.
    Flush {
        /// Acting heap (the owner).
        t: ThreadId,
        /// The page.
        page: PageId,
        /// Why.
        reason: FlushReason,
    },
    /// The page has no block in use: it leaves the heap and becomes `Empty`.
    PageEmpty {
        /// Acting heap (the owner).
        t: ThreadId,
        /// The page.
        page: PageId,
    },
    /// Give up a page that still has blocks in use.
    Abandon {
        /// Acting heap (the owner).
        t: ThreadId,
        /// The page.
        page: PageId,
    },
    /// The thread exits (owns nothing any more).
    ThreadExit {
        /// The exiting heap.
        t: ThreadId,
    },
    /// Take over every abandoned page of `class`.
    Reclaim {
        /// Acting heap.
        t: ThreadId,
        /// Size class.
        class: ClassId,
    },
    /// One `Empty` slot CAS'd to `Unused` under the pool lock (a release in
    /// progress; an aborted release leaves its retired slots `Unused`).
    Retire {
        /// The SuperSlab.
        ss: SsId,
        /// The slot.
        slot: crate::ids::SlotIdx,
    },
    /// Release a SuperSlab with no `Active` slot to the arena or the OS.
    Release {
        /// The SuperSlab.
        ss: SsId,
    },
    /// Take a `Cached` SuperSlab from the arena (part of stage 3).
    ArenaTake {
        /// The SuperSlab.
        ss: SsId,
    },
    /// Pop a stale head entry of a stage-1 list.
    Stage1Discard {
        /// Acting heap.
        t: ThreadId,
        /// Size class.
        class: ClassId,
        /// Which list.
        source: Stage1Source,
    },
    /// Composite (for generators): `AllocFast` of `class` then the free of
    /// `block` (local or remote); impl reports the two steps.
    Realloc {
        /// Acting heap.
        t: ThreadId,
        /// The block being reallocated.
        block: BlockId,
        /// The new class (different from the block's).
        class: ClassId,
    },
}

impl Step {
    /// The step's name, as impl's events spell it.
    pub fn name(&self) -> &'static str {
        match self {
            Step::AllocFast { .. } => "AllocFast",
            Step::Carve { .. } => "Carve",
            Step::Drain { .. } => "Drain",
            Step::SetCurrent { .. } => "SetCurrent",
            Step::PageFull { .. } => "PageFull",
            Step::Unfull { .. } => "Unfull",
            Step::Acquire { .. } => "Acquire",
            Step::FreeLocal { .. } => "FreeLocal",
            Step::FreeRemote { .. } => "FreeRemote",
            Step::PublishRemote { .. } => "PublishRemote",
            Step::Flush { .. } => "Flush",
            Step::PageEmpty { .. } => "PageEmpty",
            Step::Abandon { .. } => "Abandon",
            Step::ThreadExit { .. } => "ThreadExit",
            Step::Reclaim { .. } => "Reclaim",
            Step::Retire { .. } => "Retire",
            Step::Release { .. } => "Release",
            Step::ArenaTake { .. } => "ArenaTake",
            Step::Stage1Discard { .. } => "Stage1Discard",
            Step::Realloc { .. } => "Realloc",
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Step::AllocFast {
                t,
                class,
                page,
                block,
            } => {
                write!(f, "AllocFast {t} {class} page {page} -> {block}")
            }
            Step::Carve { t, page, n } => write!(f, "Carve {t} {page} n={n}"),
            Step::Drain { t, page, n } => write!(f, "Drain {t} {page} n={n}"),
            Step::SetCurrent { t, class, page } => write!(f, "SetCurrent {t} {class} {page}"),
            Step::PageFull { t, page } => write!(f, "PageFull {t} {page}"),
            Step::Unfull { t, page } => write!(f, "Unfull {t} {page}"),
            Step::Acquire {
                t,
                class,
                stage,
                ss,
                slot,
            } => {
                write!(f, "Acquire {t} {class} {stage:?} ss{}/{}", ss.0, slot.0)
            }
            Step::FreeLocal { t, block } => write!(f, "FreeLocal {t} {block}"),
            Step::FreeRemote { t, block } => write!(f, "FreeRemote {t} {block}"),
            Step::PublishRemote { block } => write!(f, "PublishRemote {block}"),
            Step::Flush { t, page, reason } => write!(f, "Flush {t} {page} {reason:?}"),
            Step::PageEmpty { t, page } => write!(f, "PageEmpty {t} {page}"),
            Step::Abandon { t, page } => write!(f, "Abandon {t} {page}"),
            Step::ThreadExit { t } => write!(f, "ThreadExit {t}"),
            Step::Reclaim { t, class } => write!(f, "Reclaim {t} {class}"),
            Step::Retire { ss, slot } => write!(f, "Retire ss{}/{}", ss.0, slot.0),
            Step::Release { ss } => write!(f, "Release ss{}", ss.0),
            Step::ArenaTake { ss } => write!(f, "ArenaTake ss{}", ss.0),
            Step::Stage1Discard { t, class, source } => {
                write!(f, "Stage1Discard {t} {class} {source:?}")
            }
            Step::Realloc { t, block, class } => write!(f, "Realloc {t} {block} -> {class}"),
        }
    }
}
