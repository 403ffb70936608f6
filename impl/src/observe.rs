//! The observer: one [`Event`] per protocol step of `docs/protocol.md`,
//! reported at the step's linearization point through
//! [`Backend::observe`](crate::sync::Backend::observe). Production
//! (`OBSERVE = false`) compiles every report away.
//!
//! Identities: `t` is the heap's index in its instance; `ss` the SuperSlab's
//! base address (verify numbers SuperSlabs in the order they first appear
//! in `Acquire{stage: Fresh}` / snapshots, i.e. mapping order); `slot` the
//! slot index; `block` the index of the block in its page.

/// Where a stage-1 entry came from (`stage1::Source`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stage1Source {
    /// The lock-free list.
    List,
    /// The fallback list.
    Fallback,
}

/// Why a delta is flushed (the model's `FlushReason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FlushReason {
    /// `|delta|` reached the threshold (only with `Backend::FLUSH_THRESHOLD`).
    Threshold,
    /// A page boundary: the slow path entered for this page.
    Boundary,
}

/// How `Acquire` found its slot (the model's `Stage`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stage {
    /// Stage 0.5: an `Empty` slot among the first `scan_limit` SuperSlabs of
    /// the class's registry.
    Scan,
    /// Stage 1: the head entry of the lock-free list.
    List,
    /// Stage 1: the head entry of the fallback list.
    Fallback,
    /// Stage 2: an `Unused` slot of a live SuperSlab.
    Unused,
    /// Stage 3: a SuperSlab just taken from the arena or mapped.
    Fresh,
}

impl Stage {
    /// Index in per-stage statistics arrays (`Fallback` counts as stage 1).
    pub fn stat_index(self) -> usize {
        match self {
            Stage::Scan => 0,
            Stage::List | Stage::Fallback => 1,
            Stage::Unused => 2,
            Stage::Fresh => 3,
        }
    }
}

/// One protocol step (names and fields as in protocol.md / the model).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Event {
    /// Pop of the head of `t`'s current page of `class`.
    AllocFast {
        /// Heap.
        t: u32,
        /// Class.
        class: u8,
        /// SuperSlab base.
        ss: usize,
        /// Slot.
        slot: u8,
        /// Block index.
        block: u32,
    },
    /// `n` fresh blocks carved onto the free list.
    Carve {
        /// Heap.
        t: u32,
        /// SuperSlab base.
        ss: usize,
        /// Slot.
        slot: u8,
        /// Blocks carved.
        n: u32,
    },
    /// The whole remote list appended to the free list.
    Drain {
        /// Heap.
        t: u32,
        /// SuperSlab base.
        ss: usize,
        /// Slot.
        slot: u8,
        /// Blocks drained.
        n: u32,
    },
    /// A partial page became the current page of `class`.
    SetCurrent {
        /// Heap.
        t: u32,
        /// Class.
        class: u8,
        /// SuperSlab base.
        ss: usize,
        /// Slot.
        slot: u8,
    },
    /// The current page moved to the full list (boundary flush included).
    PageFull {
        /// Heap.
        t: u32,
        /// SuperSlab base.
        ss: usize,
        /// Slot.
        slot: u8,
    },
    /// A full page with remote frees moved to the partial list.
    Unfull {
        /// Heap.
        t: u32,
        /// SuperSlab base.
        ss: usize,
        /// Slot.
        slot: u8,
    },
    /// A slot claimed for `class` by `stage`.
    Acquire {
        /// Heap.
        t: u32,
        /// Class.
        class: u8,
        /// How.
        stage: Stage,
        /// SuperSlab base.
        ss: usize,
        /// Slot.
        slot: u8,
    },
    /// A block freed onto its owner's free list.
    FreeLocal {
        /// Heap.
        t: u32,
        /// SuperSlab base.
        ss: usize,
        /// Slot.
        slot: u8,
        /// Block index.
        block: u32,
    },
    /// A block pushed on its page's remote list by a non-owner.
    FreeRemote {
        /// Heap.
        t: u32,
        /// SuperSlab base.
        ss: usize,
        /// Slot.
        slot: u8,
        /// Block index.
        block: u32,
        /// The heap whose `full_hint` was set, if any (its index).
        hinted: Option<u32>,
    },
    /// The owner's delta published (a step of its own).
    Flush {
        /// Heap.
        t: u32,
        /// SuperSlab base.
        ss: usize,
        /// Slot.
        slot: u8,
        /// Why.
        reason: FlushReason,
        /// The delta flushed.
        delta: i32,
    },
    /// A page with no used block left its heap: slot → `Empty`.
    PageEmpty {
        /// Heap.
        t: u32,
        /// SuperSlab base.
        ss: usize,
        /// Slot.
        slot: u8,
        /// Where its stage-1 entry went.
        entry: Stage1Source,
    },
    /// A page of an exiting heap given up (owner = none).
    Abandon {
        /// Heap.
        t: u32,
        /// SuperSlab base.
        ss: usize,
        /// Slot.
        slot: u8,
    },
    /// Heap `t` exited.
    ThreadExit {
        /// Heap.
        t: u32,
    },
    /// The whole abandoned list of `class` taken by `t` (`n` pages).
    Reclaim {
        /// Heap.
        t: u32,
        /// Class.
        class: u8,
        /// Pages reclaimed.
        n: u32,
    },
    /// One `Empty` slot CAS'd to `Unused` by a release in progress.
    Retire {
        /// SuperSlab base.
        ss: usize,
        /// Slot.
        slot: u8,
    },
    /// A SuperSlab with no `Active` slot released (its stage-1 and fallback
    /// entries removed first) to the arena or to the OS.
    Release {
        /// SuperSlab base.
        ss: usize,
        /// `true`: unmapped; `false`: cached in the arena.
        to_os: bool,
        /// Stage-1/fallback entries removed with it.
        entries_removed: u32,
    },
    /// A SuperSlab taken from the arena (part of stage 3).
    ArenaTake {
        /// SuperSlab base.
        ss: usize,
    },
    /// A stale stage-1 entry popped and discarded.
    Stage1Discard {
        /// Heap.
        t: u32,
        /// Class.
        class: u8,
        /// Which list.
        source: Stage1Source,
        /// SuperSlab base of the stale entry.
        ss: usize,
        /// Slot of the stale entry.
        slot: u8,
    },
}

impl Event {
    /// The step's name in protocol.md.
    pub fn name(&self) -> &'static str {
        match self {
            Event::AllocFast { .. } => "AllocFast",
            Event::Carve { .. } => "Carve",
            Event::Drain { .. } => "Drain",
            Event::SetCurrent { .. } => "SetCurrent",
            Event::PageFull { .. } => "PageFull",
            Event::Unfull { .. } => "Unfull",
            Event::Acquire { .. } => "Acquire",
            Event::FreeLocal { .. } => "FreeLocal",
            Event::FreeRemote { .. } => "FreeRemote",
            Event::Flush { .. } => "Flush",
            Event::PageEmpty { .. } => "PageEmpty",
            Event::Abandon { .. } => "Abandon",
            Event::ThreadExit { .. } => "ThreadExit",
            Event::Reclaim { .. } => "Reclaim",
            Event::Retire { .. } => "Retire",
            Event::Release { .. } => "Release",
            Event::ArenaTake { .. } => "ArenaTake",
            Event::Stage1Discard { .. } => "Stage1Discard",
        }
    }
}
