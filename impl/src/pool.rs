//! The SuperSlab pool of an instance: its SuperSlabs (the all-list, a
//! registry per class, the arena cache), the stage-1 lists, the abandoned
//! lists and the dummy page, with the paths that move slots between owners
//! and the OS: acquisition (`acquire`), release (`release`) and purge
//! (`purge`). It knows a page's owner only as a `PageOwner`; heaps, the
//! layer above, call it from their slow paths.
//!
//! Lock discipline: the *pool lock* (a spin lock) serialises stages 2 and 3,
//! release, purge, registry writes and the arena. Stages 0.5 and 1 are
//! lock-free; they count themselves in `readers` so that a release to the OS
//! waits until no one can still hold a pointer into the SuperSlab.

mod acquire;
mod purge;
mod release;

pub(crate) use acquire::Claimant;

use crate::chunkmap;
use crate::os;
use crate::size_class::{NUM_CLASSES, SS_SIZE};
use crate::stage1::Stage1;
use crate::stats::{InstanceCounters, Stats};
use crate::superslab::{SlotMeta, SsHeader, SsStatus};
use crate::sync::{AtomicOps, Backend, CachePadded, CellOps, Ordering, SpinLock};
use core::ptr::{null_mut, NonNull};

/// Tunables of one instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InstanceConfig {
    /// Nodes in the stage-1 node pool (shared by all classes).
    pub node_pool: usize,
    /// `Cached` SuperSlabs kept at most; beyond, released ones are unmapped.
    pub arena_cache: usize,
    /// Stage 0.5 scans the first `scan_limit` SuperSlabs of a registry.
    pub scan_limit: usize,
    /// An `Empty` slot that stays empty this long is decommitted
    /// (`u64::MAX`: never; `0`: at once).
    pub purge_delay_ms: u64,
    /// More than this many `Empty` slots still committed triggers a purge of
    /// all of them at once, whatever their age (`usize::MAX`: never).
    pub purge_threshold: usize,
    /// A SuperSlab whose last slot empties is released only if more than
    /// `keep_live` SuperSlabs are live (keeps one warm against churn).
    pub keep_live: usize,
    /// Exited heaps are reused by `new_heap` (the global instance); with
    /// `false` every heap gets a new index (trace replay).
    pub reuse_heaps: bool,
}

impl InstanceConfig {
    /// Production defaults.
    pub const DEFAULT: Self = Self {
        node_pool: 4096,
        arena_cache: 4,
        scan_limit: 16,
        purge_delay_ms: 100,
        purge_threshold: 64,
        keep_live: 1,
        reuse_heaps: true,
    };

    /// Small limits so that tests reach fallbacks, releases and purges.
    pub const SMALL: Self = Self {
        node_pool: 2,
        arena_cache: 1,
        scan_limit: 2,
        purge_delay_ms: u64::MAX,
        purge_threshold: usize::MAX,
        keep_live: 0,
        reuse_heaps: false,
    };
}

impl Default for InstanceConfig {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Pool-lock protected state.
struct PoolState<B: Backend> {
    all_head: *mut SsHeader<B>,
    all_tail: *mut SsHeader<B>,
    arena: *mut SsHeader<B>,
    arena_len: usize,
    live: usize,
    reg_tail: [*mut SsHeader<B>; NUM_CLASSES],
    next_seq: u64,
}

/// The SuperSlab pool of an instance.
///
/// # Invariants
/// - Every SuperSlab of the pool is on the all-list (mapping order);
///   `Cached` ones also on the arena list (`arena_len ≤ arena_cache`).
/// - `registry[c]` holds exactly the Live SuperSlabs with `registered` bit c.
/// - No stage-1 or fallback entry names a SuperSlab that is not Live.
pub(crate) struct Pool<B: Backend> {
    cfg: InstanceConfig,
    pool_lock: SpinLock<B>,
    pool: B::Cell<PoolState<B>>,
    /// Lock-free readers (stage 0.5 scans, stage-1 pops, stage-1 pushes of
    /// `PageEmpty`) in progress.
    pub(crate) readers: CachePadded<B::AtomicUsize>,
    reg_head: [B::AtomicPtr<SsHeader<B>>; NUM_CLASSES],
    pub(crate) stage1: Stage1<B>,
    pub(crate) abandoned: [B::AtomicPtr<SlotMeta<B>>; NUM_CLASSES],
    next_purge: B::AtomicU64,
    /// `Empty` slots whose memory is still committed (approximate while
    /// operations are in flight; exact at quiescence).
    pub(crate) dirty_empty: B::AtomicUsize,
    pub(crate) counters: InstanceCounters,
    /// The page every "no current page" slot of a heap points at: never
    /// owned, never has a free block.
    dummy: SlotMeta<B>,
}

// SAFETY: the raw pointers in the pool state are guarded by the pool lock;
// everything else is atomics or immutable.
unsafe impl<B: Backend> Send for Pool<B> {}
// SAFETY: as above.
unsafe impl<B: Backend> Sync for Pool<B> {}

impl<B: Backend> Pool<B> {
    /// A pool by value. It must be placed where it stays before its first
    /// heap is created (heaps point at it and at its dummy page).
    pub(crate) fn build(cfg: InstanceConfig) -> Option<Self> {
        Some(Self {
            cfg,
            pool_lock: SpinLock::new(),
            pool: B::Cell::new(PoolState {
                all_head: null_mut(),
                all_tail: null_mut(),
                arena: null_mut(),
                arena_len: 0,
                live: 0,
                reg_tail: [null_mut(); NUM_CLASSES],
                next_seq: 0,
            }),
            readers: CachePadded(B::AtomicUsize::new(0)),
            reg_head: core::array::from_fn(|_| B::AtomicPtr::new(null_mut())),
            stage1: Stage1::new(cfg.node_pool)?,
            abandoned: core::array::from_fn(|_| B::AtomicPtr::new(null_mut())),
            next_purge: B::AtomicU64::new(0),
            dirty_empty: B::AtomicUsize::new(0),
            counters: InstanceCounters::new(),
            dummy: SlotMeta::new(),
        })
    }

    /// The configuration.
    pub(crate) fn config(&self) -> &InstanceConfig {
        &self.cfg
    }

    /// The dummy page.
    #[inline(always)]
    pub(crate) fn dummy(&self) -> *mut SlotMeta<B> {
        &self.dummy as *const _ as *mut _
    }

    /// The clock of the purge.
    pub(crate) fn now_ms(&self) -> u64 {
        os::monotonic_ms()
    }

    /// # Safety
    /// The caller holds the pool lock.
    #[inline]
    unsafe fn ps<R>(&self, f: impl FnOnce(&mut PoolState<B>) -> R) -> R {
        // SAFETY: forwarded contract.
        self.pool.with_mut(|p| f(unsafe { &mut *p }))
    }

    /// Adds the pool's counters (acquisitions by stage, slow-path and
    /// SuperSlab counts) to `s`.
    pub(crate) fn add_stats(&self, s: &mut Stats) {
        for (c, cs) in s.classes.iter_mut().enumerate() {
            for k in 0..4 {
                cs.acquired[k] = self.counters.stage[c][k].get();
            }
        }
        let k = &self.counters;
        s.reclaims = k.reclaims.get();
        s.abandoned_pages = k.abandoned.get();
        s.pages_emptied = k.pages_emptied.get();
        s.stage1_discards = k.stage1_discards.get();
        s.fallback_pushes = k.fallback_pushes.get();
        s.superslabs_mapped = k.ss_mapped.get();
        s.superslabs_cached = k.ss_cached.get();
        s.superslabs_from_arena = k.ss_arena_taken.get();
        s.superslabs_unmapped = k.ss_unmapped.get();
        s.mapped_bytes = k.mapped_bytes.get();
        s.peak_mapped_bytes = k.peak_mapped_bytes.get();
        s.purged_slots = k.purged_slots.get();
    }

    /// Runs `f` with the pool lock held over every SuperSlab (mapping order)
    /// with its status and mapping sequence number.
    pub(crate) fn for_each_superslab(&self, mut f: impl FnMut(&SsHeader<B>, SsStatus, u64)) {
        let _g = self.pool_lock.lock();
        // SAFETY: pool lock held; all-list members are mapped.
        unsafe {
            let mut ss = self.ps(|ps| ps.all_head);
            while !ss.is_null() {
                let (st, seq, next) = (*ss).pooled(|p| (p.status, p.map_seq, p.next_all));
                f(&*ss, st, seq);
                ss = next;
            }
        }
    }

    /// `fork` prepare: takes the pool lock, then the stage-1 fallback lock
    /// (the order every path nests them in), so that the child inherits
    /// consistent pool and fallback state. Release with
    /// [`Pool::fork_parent`] or [`Pool::fork_child`].
    pub(crate) fn fork_prepare(&self) {
        self.pool_lock.lock_raw();
        self.stage1.fallback_lock().lock_raw();
    }

    /// `fork` in the parent: releases what [`Pool::fork_prepare`] took.
    pub(crate) fn fork_parent(&self) {
        self.stage1.fallback_lock().force_unlock();
        self.pool_lock.force_unlock();
    }

    /// `fork` in the child: releases the locks and resets `readers`. The
    /// child's one thread called `fork`, so it is in no lock-free section;
    /// sections of threads that do not exist in the child will never end,
    /// and a release would wait for them forever.
    pub(crate) fn fork_child(&self) {
        self.readers.store(0, Ordering::SeqCst);
        self.fork_parent();
    }

    /// The bases of `registry[class]`, in order.
    pub(crate) fn registry(&self, class: usize, out: &mut Vec<usize>) {
        let mut ss = self.reg_head[class].load(Ordering::Acquire);
        while !ss.is_null() {
            out.push(ss as usize);
            // SAFETY: registry members are mapped (quiescent caller).
            ss = unsafe { (*ss).reg_next[class].load(Ordering::Acquire) };
        }
    }

    /// The arena's SuperSlabs (bases, top first).
    pub(crate) fn arena(&self, out: &mut Vec<usize>) {
        let _g = self.pool_lock.lock();
        // SAFETY: pool lock held.
        unsafe {
            let mut ss = self.ps(|ps| ps.arena);
            while !ss.is_null() {
                out.push(ss as usize);
                ss = (*ss).pooled(|p| p.next_cached);
            }
        }
    }
}

impl<B: Backend> Drop for Pool<B> {
    fn drop(&mut self) {
        // SAFETY: `&mut self`: no heap is in use any more; every SuperSlab
        // on the all-list is one mapping of ours.
        unsafe {
            let mut ss = self.ps(|ps| ps.all_head);
            while !ss.is_null() {
                let next = (*ss).pooled(|p| p.next_all);
                chunkmap::unregister_superslab(ss as usize);
                // Checker backends' atomics own resources (folded away for
                // `StdBackend`, whose header needs no drop).
                if core::mem::needs_drop::<SsHeader<B>>() {
                    core::ptr::drop_in_place(ss);
                }
                os::unmap(NonNull::new_unchecked(ss.cast()), SS_SIZE, SS_SIZE);
                ss = next;
            }
        }
    }
}
