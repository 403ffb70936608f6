//! Statistics counters. A leaf module (not protocol code): the counters are
//! plain std atomics whatever the backend, updated with `Relaxed` loads and
//! stores by their single writer (the per-heap fast-path counters: one `add`
//! to memory, no locked instruction) or `fetch_add` on slow paths.

use core::sync::atomic::{AtomicU64, Ordering};

use crate::size_class::NUM_CLASSES;

/// Remote frees by threads that have no heap yet (the global allocator's
/// empty heap, which has no instance to count them in); folded into the
/// global allocator's `stats()`.
static HEAPLESS_REMOTE: [AtomicU64; NUM_CLASSES] = [const { AtomicU64::new(0) }; NUM_CLASSES];

/// Counts a remote free of a `class` block by a thread without a heap.
pub(crate) fn count_heapless_remote_free(class: usize) {
    HEAPLESS_REMOTE[class].fetch_add(1, Ordering::Relaxed);
}

/// Remote frees of `class` blocks by threads without a heap so far.
pub(crate) fn heapless_remote_frees(class: usize) -> u64 {
    HEAPLESS_REMOTE[class].load(Ordering::Relaxed)
}

/// A counter with one writer at a time (a heap's owner): increment is a
/// relaxed load + store, i.e. a plain `add` to memory.
#[derive(Default)]
pub struct LocalCounter(AtomicU64);

impl LocalCounter {
    /// Zero.
    pub const fn new() -> Self {
        Self(AtomicU64::new(0))
    }
    /// `+= 1` by the single writer.
    #[inline(always)]
    pub fn inc(&self) {
        self.0.store(
            self.0.load(Ordering::Relaxed).wrapping_add(1),
            Ordering::Relaxed,
        )
    }
    /// `+= n` by the single writer.
    #[inline]
    pub fn add_local(&self, n: u64) {
        self.0.store(
            self.0.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        )
    }
    /// The value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A counter shared by all threads (slow paths only).
#[derive(Default)]
pub struct SharedCounter(AtomicU64);

impl SharedCounter {
    /// Zero.
    pub const fn new() -> Self {
        Self(AtomicU64::new(0))
    }
    /// `+= n`.
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    /// `-= n`.
    #[inline]
    pub fn sub(&self, n: u64) {
        self.0.fetch_sub(n, Ordering::Relaxed);
    }
    /// Raises the counter to at least `v`.
    pub fn max(&self, v: u64) {
        self.0.fetch_max(v, Ordering::Relaxed);
    }
    /// The value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Per-heap fast-path counters.
pub struct HeapCounters {
    /// Allocations per class (folded in from the pages at page boundaries).
    pub allocs: [LocalCounter; NUM_CLASSES],
    /// Local frees per class (folded in from the pages at page boundaries:
    /// page empty, abandon, slow-path entry).
    pub frees: [LocalCounter; NUM_CLASSES],
    /// Remote frees done by this heap, per class.
    pub remote_frees: [LocalCounter; NUM_CLASSES],
    /// Slow-path entries per class.
    pub slow: [LocalCounter; NUM_CLASSES],
    /// Flush steps (boundary/threshold) with a non-zero delta.
    pub flushes: LocalCounter,
    /// Remote lists drained.
    pub drains: LocalCounter,
    /// Blocks drained.
    pub drained_blocks: LocalCounter,
}

impl HeapCounters {
    /// All zero.
    pub const fn new() -> Self {
        Self {
            allocs: [const { LocalCounter::new() }; NUM_CLASSES],
            frees: [const { LocalCounter::new() }; NUM_CLASSES],
            remote_frees: [const { LocalCounter::new() }; NUM_CLASSES],
            slow: [const { LocalCounter::new() }; NUM_CLASSES],
            flushes: LocalCounter::new(),
            drains: LocalCounter::new(),
            drained_blocks: LocalCounter::new(),
        }
    }
}

impl Default for HeapCounters {
    fn default() -> Self {
        Self::new()
    }
}

/// Instance-wide counters (slow paths).
pub struct InstanceCounters {
    /// Acquisitions per class and stage (0.5, 1, 2, 3).
    pub stage: [[SharedCounter; 4]; NUM_CLASSES],
    /// Reclaim operations.
    pub reclaims: SharedCounter,
    /// Pages abandoned.
    pub abandoned: SharedCounter,
    /// Pages that became empty.
    pub pages_emptied: SharedCounter,
    /// Stale stage-1 entries discarded.
    pub stage1_discards: SharedCounter,
    /// Stage-1 pushes that went to the fallback list.
    pub fallback_pushes: SharedCounter,
    /// SuperSlabs mapped from the OS.
    pub ss_mapped: SharedCounter,
    /// SuperSlabs released to the arena.
    pub ss_cached: SharedCounter,
    /// SuperSlabs taken back from the arena.
    pub ss_arena_taken: SharedCounter,
    /// SuperSlabs unmapped.
    pub ss_unmapped: SharedCounter,
    /// Bytes mapped now (SuperSlabs).
    pub mapped_bytes: SharedCounter,
    /// Peak of `mapped_bytes`.
    pub peak_mapped_bytes: SharedCounter,
    /// Slots decommitted by the purge.
    pub purged_slots: SharedCounter,
}

impl InstanceCounters {
    /// All zero.
    pub const fn new() -> Self {
        Self {
            stage: [const { [const { SharedCounter::new() }; 4] }; NUM_CLASSES],
            reclaims: SharedCounter::new(),
            abandoned: SharedCounter::new(),
            pages_emptied: SharedCounter::new(),
            stage1_discards: SharedCounter::new(),
            fallback_pushes: SharedCounter::new(),
            ss_mapped: SharedCounter::new(),
            ss_cached: SharedCounter::new(),
            ss_arena_taken: SharedCounter::new(),
            ss_unmapped: SharedCounter::new(),
            mapped_bytes: SharedCounter::new(),
            peak_mapped_bytes: SharedCounter::new(),
            purged_slots: SharedCounter::new(),
        }
    }
}

impl Default for InstanceCounters {
    fn default() -> Self {
        Self::new()
    }
}

/// Per-class statistics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClassStats {
    /// Block size of the class.
    pub block_size: u32,
    /// Blocks handed out.
    pub allocs: u64,
    /// Blocks freed by their owner (local frees).
    pub frees: u64,
    /// Blocks freed by another heap (remote frees).
    pub remote_frees: u64,
    /// Slow-path entries (the current page had no free block).
    pub slow: u64,
    /// Slots acquired per stage: [0.5, 1, 2, 3].
    pub acquired: [u64; 4],
}

/// Per-class statistics, one per size class (a newtype: `Default` is not
/// derived for arrays longer than 32, and candidate class tables are).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PerClass(pub [ClassStats; NUM_CLASSES]);

impl Default for PerClass {
    fn default() -> Self {
        Self([ClassStats::default(); NUM_CLASSES])
    }
}

impl core::ops::Deref for PerClass {
    type Target = [ClassStats; NUM_CLASSES];
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl<'a> IntoIterator for &'a PerClass {
    type Item = &'a ClassStats;
    type IntoIter = core::slice::Iter<'a, ClassStats>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl core::ops::DerefMut for PerClass {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

/// A statistics snapshot of an instance (see [`crate::stats()`] for the
/// process-wide one).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Per size class.
    pub classes: PerClass,
    /// Delta flushes that were steps of their own (boundary/threshold).
    pub flushes: u64,
    /// Remote lists drained.
    pub drains: u64,
    /// Blocks taken from remote lists.
    pub drained_blocks: u64,
    /// Reclaims of abandoned lists.
    pub reclaims: u64,
    /// Pages abandoned by exiting heaps.
    pub abandoned_pages: u64,
    /// Pages that became empty (slot → Empty).
    pub pages_emptied: u64,
    /// Stale stage-1 entries discarded.
    pub stage1_discards: u64,
    /// Stage-1 entries that went to the fallback list.
    pub fallback_pushes: u64,
    /// SuperSlabs mapped from the OS (cumulative).
    pub superslabs_mapped: u64,
    /// SuperSlabs put in the arena cache (cumulative).
    pub superslabs_cached: u64,
    /// SuperSlabs taken from the arena cache (cumulative).
    pub superslabs_from_arena: u64,
    /// SuperSlabs unmapped (cumulative).
    pub superslabs_unmapped: u64,
    /// SuperSlab bytes mapped now.
    pub mapped_bytes: u64,
    /// Peak of `mapped_bytes`.
    pub peak_mapped_bytes: u64,
    /// Empty slots decommitted by the purge (cumulative).
    pub purged_slots: u64,
    /// Heaps created (exited heaps are reused, so this stays near the peak
    /// number of threads alive at once).
    pub heaps: u64,
    /// Large blocks allocated (filled by `large` when it reports them).
    pub large_allocs: u64,
    /// Large blocks freed.
    pub large_frees: u64,
}

impl Stats {
    /// Sum of per-class allocations.
    pub fn total_allocs(&self) -> u64 {
        self.classes.iter().map(|c| c.allocs).sum()
    }
    /// Sum of per-class local + remote frees.
    pub fn total_frees(&self) -> u64 {
        self.classes.iter().map(|c| c.frees + c.remote_frees).sum()
    }
    /// Acquisitions per stage summed over classes.
    pub fn acquired(&self) -> [u64; 4] {
        let mut a = [0; 4];
        for c in &self.classes {
            for (s, v) in a.iter_mut().zip(c.acquired) {
                *s += v;
            }
        }
        a
    }

    /// Writes the report (one line per used class, then totals) without
    /// allocating.
    pub fn write_report(&self, w: &mut dyn core::fmt::Write) -> core::fmt::Result {
        writeln!(w, "hakmem statistics")?;
        writeln!(
            w,
            "{:>6} {:>12} {:>12} {:>10} {:>9} {:>8} {:>8} {:>6} {:>6}",
            "class", "allocs", "frees", "remote", "slow", "st0.5", "st1", "st2", "st3"
        )?;
        for c in self.classes.iter().filter(|c| c.allocs > 0) {
            writeln!(
                w,
                "{:>6} {:>12} {:>12} {:>10} {:>9} {:>8} {:>8} {:>6} {:>6}",
                c.block_size,
                c.allocs,
                c.frees,
                c.remote_frees,
                c.slow,
                c.acquired[0],
                c.acquired[1],
                c.acquired[2],
                c.acquired[3]
            )?;
        }
        writeln!(
            w,
            "flushes {} drains {} ({} blocks) reclaims {} abandoned {} emptied {} discards {} fallback {}",
            self.flushes,
            self.drains,
            self.drained_blocks,
            self.reclaims,
            self.abandoned_pages,
            self.pages_emptied,
            self.stage1_discards,
            self.fallback_pushes
        )?;
        writeln!(
            w,
            "superslabs mapped {} cached {} from-arena {} unmapped {} purged-slots {}; mapped {} KiB (peak {} KiB)",
            self.superslabs_mapped,
            self.superslabs_cached,
            self.superslabs_from_arena,
            self.superslabs_unmapped,
            self.purged_slots,
            self.mapped_bytes >> 10,
            self.peak_mapped_bytes >> 10
        )?;
        writeln!(
            w,
            "large allocs {} frees {}",
            self.large_allocs, self.large_frees
        )
    }
}
