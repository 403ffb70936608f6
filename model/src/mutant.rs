//! Deliberately wrong variants of the model ("mutants"), selected at run
//! time through [`crate::Config::mutant`]. Each one re-creates a bug that a
//! real allocator had or could have; the explorer and the proptest suite
//! must catch every one of them (they prove that the checks have teeth).

use crate::invariant::Invariant;

/// An injected bug. `Mutant::None` is the specification.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mutant {
    /// The specification: no bug.
    #[default]
    None,
    /// `PageEmpty` releases the slot without its boundary flush.
    ReleaseWithoutFlush,
    /// `AllocFast`/`FreeLocal` run past a due threshold flush (the C
    /// version's unbounded delta drift).
    SkipThresholdFlush,
    /// Reusing an `Empty` slot clears its mask bit but not `empty_count`.
    ForgetEmptyCountOnReuse,
    /// `PageEmpty` checks only for live blocks, not for undrained remote
    /// frees, so the slot is reused while a remote free is in flight.
    ReuseWithRemoteInFlight,
    /// `Drain` loses the last block of the remote list (the oldest push).
    DrainLosesLast,
    /// `Drain` moves the blocks but forgets `used -= n`.
    DrainUncounted,
    /// `Flush` adds the delta to the slot's `shared_used` only, not to the
    /// SuperSlab's `total_active`.
    FlushSkipsTotal,
    /// With the node pool exhausted, the stage-1 push drops the entry
    /// instead of using the mutex fallback (the C crash, made silent).
    PoolExhaustedDropsEntry,
    /// A stage-1 claim does not give its node back to the pool.
    Stage1LeaksNode,
    /// A stage-1 claim does not re-check that the slot is still `Empty`.
    Stage1NoRecheck,
    /// `Reclaim` copies the abandoned list instead of swapping it out, so
    /// a page can be reclaimed twice (mimalloc #1320 / 683d8998).
    ReclaimTwice,
    /// `PageFull` accepts a page that still has a free block.
    FullWithFreeBlock,
    /// `PageFull` skips the re-check of the remote list after setting
    /// `in_full`, so a remote free is stranded on a full page.
    PageFullNoRecheck,
    /// `Abandon` leaves the owner set (mimalloc 12257e5b).
    AbandonKeepsOwner,
    /// A thread exits while it still owns pages.
    ExitWithPages,
    /// `Release` decides "nothing in use" from `total_active == 0` instead
    /// of the slot states, and so releases under pending deltas.
    ReleaseByTotalActive,
    /// `Release` leaves the stage-1/fallback entries naming the SuperSlab
    /// (a dangling pointer in the lock-free list once it is unmapped).
    ReleaseWithEntries,
    /// `AllocFast` hands out the head of the free list without popping it
    /// (a lost pop, as in a racy non-atomic pop).
    AllocWithoutPop,
    /// The remote free is counted before its push is published (rpmalloc
    /// #281): the owner empties and recycles the slot under a late push.
    CountBeforePush,
}

impl Mutant {
    /// Every mutant, the specification (`None`) first.
    pub const ALL: [Mutant; 20] = [
        Mutant::None,
        Mutant::ReleaseWithoutFlush,
        Mutant::SkipThresholdFlush,
        Mutant::ForgetEmptyCountOnReuse,
        Mutant::ReuseWithRemoteInFlight,
        Mutant::DrainLosesLast,
        Mutant::DrainUncounted,
        Mutant::FlushSkipsTotal,
        Mutant::PoolExhaustedDropsEntry,
        Mutant::Stage1LeaksNode,
        Mutant::Stage1NoRecheck,
        Mutant::ReclaimTwice,
        Mutant::FullWithFreeBlock,
        Mutant::PageFullNoRecheck,
        Mutant::AbandonKeepsOwner,
        Mutant::ExitWithPages,
        Mutant::ReleaseByTotalActive,
        Mutant::ReleaseWithEntries,
        Mutant::AllocWithoutPop,
        Mutant::CountBeforePush,
    ];

    /// The wrong variants only (every mutant but `None`).
    pub fn wrong() -> impl Iterator<Item = Mutant> {
        Self::ALL.into_iter().filter(|m| *m != Mutant::None)
    }

    /// The mutant's command-line name (kebab-case).
    pub fn name(self) -> &'static str {
        match self {
            Mutant::None => "none",
            Mutant::ReleaseWithoutFlush => "release-without-flush",
            Mutant::SkipThresholdFlush => "skip-threshold-flush",
            Mutant::ForgetEmptyCountOnReuse => "forget-empty-count-on-reuse",
            Mutant::ReuseWithRemoteInFlight => "reuse-with-remote-in-flight",
            Mutant::DrainLosesLast => "drain-loses-last",
            Mutant::DrainUncounted => "drain-uncounted",
            Mutant::FlushSkipsTotal => "flush-skips-total",
            Mutant::PoolExhaustedDropsEntry => "pool-exhausted-drops-entry",
            Mutant::Stage1LeaksNode => "stage1-leaks-node",
            Mutant::Stage1NoRecheck => "stage1-no-recheck",
            Mutant::ReclaimTwice => "reclaim-twice",
            Mutant::FullWithFreeBlock => "full-with-free-block",
            Mutant::PageFullNoRecheck => "page-full-no-recheck",
            Mutant::AbandonKeepsOwner => "abandon-keeps-owner",
            Mutant::ExitWithPages => "exit-with-pages",
            Mutant::ReleaseByTotalActive => "release-by-total-active",
            Mutant::ReleaseWithEntries => "release-with-entries",
            Mutant::AllocWithoutPop => "alloc-without-pop",
            Mutant::CountBeforePush => "count-before-push",
        }
    }

    /// The mutant called `name`, if any.
    pub fn from_name(name: &str) -> Option<Mutant> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }

    /// The invariant this mutant is expected to break first (`None` for the
    /// specification). The tests check that the checkers report this one.
    pub fn expected(self) -> Option<Invariant> {
        use Invariant as I;
        Some(match self {
            Mutant::None => return None,
            Mutant::ReleaseWithoutFlush => I::BoundedDelta,
            Mutant::SkipThresholdFlush => I::BoundedDelta,
            Mutant::ForgetEmptyCountOnReuse => I::Masks,
            Mutant::ReuseWithRemoteInFlight => I::SafeReuse,
            Mutant::DrainLosesLast => I::Conservation,
            Mutant::DrainUncounted => I::Accounting,
            Mutant::FlushSkipsTotal => I::TotalActive,
            Mutant::PoolExhaustedDropsEntry => I::Stage1Nodes,
            Mutant::Stage1LeaksNode => I::Stage1Nodes,
            Mutant::Stage1NoRecheck => I::Conservation,
            Mutant::ReclaimTwice => I::Abandonment,
            Mutant::FullWithFreeBlock => I::HeapLists,
            Mutant::PageFullNoRecheck => I::HeapLists,
            Mutant::AbandonKeepsOwner => I::HeapLists,
            Mutant::ExitWithPages => I::Abandonment,
            Mutant::ReleaseByTotalActive => I::HeapLists,
            Mutant::ReleaseWithEntries => I::Stage1Nodes,
            Mutant::AllocWithoutPop => I::NoDoubleHandOut,
            Mutant::CountBeforePush => I::SafeReuse,
        })
    }

    /// The invariants this mutant may break first, depending on the path
    /// a checker takes to it (`expected()` first).
    pub fn breaks(self) -> Vec<Invariant> {
        let mut v: Vec<Invariant> = self.expected().into_iter().collect();
        if self == Mutant::Stage1NoRecheck {
            // Stealing a page resets its counters and empties its lists.
            v.extend([Invariant::TotalActive, Invariant::HeapLists]);
        }
        v
    }

    /// One line on what the mutant gets wrong.
    pub fn describe(self) -> &'static str {
        match self {
            Mutant::None => "the specification",
            Mutant::ReleaseWithoutFlush => "PageEmpty without the boundary flush",
            Mutant::SkipThresholdFlush => "owner steps run past a due threshold flush",
            Mutant::ForgetEmptyCountOnReuse => "reuse of an Empty slot forgets empty_count",
            Mutant::ReuseWithRemoteInFlight => "PageEmpty with undrained remote frees",
            Mutant::DrainLosesLast => "Drain loses the last block of the remote list",
            Mutant::DrainUncounted => "Drain forgets used -= n",
            Mutant::FlushSkipsTotal => "Flush forgets total_active",
            Mutant::PoolExhaustedDropsEntry => "exhausted node pool drops the stage-1 entry",
            Mutant::Stage1LeaksNode => "stage-1 claim keeps its node",
            Mutant::Stage1NoRecheck => "stage-1 claim without re-checking Empty",
            Mutant::ReclaimTwice => "Reclaim copies the abandoned list (double reclaim)",
            Mutant::FullWithFreeBlock => "PageFull with a free block",
            Mutant::PageFullNoRecheck => "PageFull without the remote re-check",
            Mutant::AbandonKeepsOwner => "Abandon keeps the owner id",
            Mutant::ExitWithPages => "thread exit while owning pages",
            Mutant::ReleaseByTotalActive => "Release judged by total_active == 0",
            Mutant::ReleaseWithEntries => "Release leaves stage-1 entries naming it",
            Mutant::AllocWithoutPop => "AllocFast hands out without popping",
            Mutant::CountBeforePush => "remote free counted before its push (rpmalloc #281)",
        }
    }
}
