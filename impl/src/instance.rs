//! An allocator instance: its SuperSlabs (registry per class, arena cache),
//! the stage-1 lists, the abandoned lists, its heaps, and the acquisition
//! stages 0.5/1/2/3, release, purge. Several instances can coexist (tests
//! build small ones; the global allocator has one in static memory).
//!
//! Lock discipline: the *pool lock* (a spin lock) serialises stages 2 and 3,
//! release, purge, registry writes, the arena, and heap creation. Stages 0.5
//! and 1 are lock-free; they count themselves in `readers` so that a release
//! to the OS waits until no one can still hold a pointer into the SuperSlab.

use crate::chunkmap;
use crate::heap::{self, Heap};
use crate::observe::{Event, Stage};
use crate::os;
use crate::page;
use crate::size_class::{class_for, slot_area_offset, slot_area_size, NUM_CLASSES, SLOTS, SS_SIZE};
use crate::stage1::{Source, Stage1};
use crate::stats::{InstanceCounters, Stats};
use crate::superslab::{SlotMeta, SlotState, SsHeader, SsStatus};
use crate::sync::{
    AtomicIntOps, AtomicOps, Backend, CachePadded, CellOps, Mutant, Ordering, SpinLock,
};
use core::ptr::{null_mut, NonNull};

/// What [`Instance::for_each_mapping`] reports (to the residency
/// diagnostic).
pub(crate) enum Mapping {
    /// A SuperSlab (2 MiB at `base`).
    SuperSlab,
    /// A chunk of heap memory.
    Heaps,
}

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
    heaps_head: *mut Heap<B>,
    heaps_tail: *mut Heap<B>,
    heap_count: u32,
    free_heaps: *mut Heap<B>,
    heap_chunk: *mut u8,
    heap_chunk_left: usize,
    /// Chunks of heap memory (linked through their first word).
    heap_chunks: *mut u8,
}

/// Bytes of one mapping that heaps are carved from.
const HEAP_CHUNK: usize = 1 << 16;

/// An allocator instance.
///
/// # Invariants
/// - Every SuperSlab of the instance is on the all-list (mapping order);
///   `Cached` ones also on the arena list (`arena_len ≤ arena_cache`).
/// - `registry[c]` holds exactly the Live SuperSlabs with `registered` bit c.
/// - No stage-1 or fallback entry names a SuperSlab that is not Live.
/// - Heaps are never freed while the instance lives.
pub struct Instance<B: Backend> {
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
unsafe impl<B: Backend> Send for Instance<B> {}
// SAFETY: as above.
unsafe impl<B: Backend> Sync for Instance<B> {}

/// A logical thread's handle: a heap of an instance. One OS thread may drive
/// several handles (deterministic multi-heap scenarios); a handle must not
/// be used by two threads at once.
pub struct HeapRef<'a, B: Backend> {
    heap: *mut Heap<B>,
    inst: &'a Instance<B>,
}

impl<B: Backend> Clone for HeapRef<'_, B> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<B: Backend> Copy for HeapRef<'_, B> {}

// SAFETY: a handle may move to another thread (one user at a time).
unsafe impl<B: Backend> Send for HeapRef<'_, B> {}

impl<'a, B: Backend> HeapRef<'a, B> {
    /// Allocates `size` bytes aligned to `align` (a power of two); null when
    /// out of memory.
    pub fn alloc(self, size: usize, align: usize) -> *mut u8 {
        self.inst.alloc(self, size, align)
    }

    /// Frees `ptr` (any block of any heap of this instance, or a large
    /// block); aborts with a message on an invalid pointer.
    ///
    /// # Safety
    /// `ptr` is not used afterwards; it is a block handed out by this
    /// instance (or `large`), or an invalid pointer to be reported.
    pub unsafe fn free(self, ptr: *mut u8) {
        // SAFETY: forwarded contract.
        unsafe { self.inst.free(self, ptr) }
    }

    /// Thread exit: abandons or empties every page; the handle is dead.
    pub fn exit(self) {
        self.inst.exit_heap(self)
    }

    /// The heap's index (the model's thread id).
    pub fn index(self) -> u32 {
        // SAFETY: heaps live as long as their instance.
        unsafe { (*self.heap).index }
    }

    /// The raw heap.
    pub fn raw(self) -> *mut Heap<B> {
        self.heap
    }

    /// A `'static`, `Send` token for this heap, to move it to another thread
    /// (loom/shuttle threads need `'static` closures); turn it back into a
    /// handle with [`Instance::heap`].
    pub fn id(self) -> HeapId<B> {
        HeapId(self.heap)
    }
}

/// A heap of some instance, as a plain token (see [`HeapRef::id`]).
pub struct HeapId<B: Backend>(*mut Heap<B>);

impl<B: Backend> Clone for HeapId<B> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<B: Backend> Copy for HeapId<B> {}
// SAFETY: a token; using it requires `Instance::heap`'s contract.
unsafe impl<B: Backend> Send for HeapId<B> {}
// SAFETY: as above.
unsafe impl<B: Backend> Sync for HeapId<B> {}

impl<B: Backend> core::fmt::Debug for HeapId<B> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "HeapId({:p})", self.0)
    }
}

impl<B: Backend> Instance<B> {
    /// A new instance (boxed: heaps point into it, so it must not move).
    /// `None` when the OS refuses the node pool's memory.
    pub fn new(cfg: InstanceConfig) -> Option<Box<Self>> {
        Some(Box::new(Self::build(cfg)?))
    }

    /// Builds an instance by value. It must be placed where it stays before
    /// its first heap is created (the global instance lives in a static).
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
                heaps_head: null_mut(),
                heaps_tail: null_mut(),
                heap_count: 0,
                free_heaps: null_mut(),
                heap_chunk: null_mut(),
                heap_chunk_left: 0,
                heap_chunks: null_mut(),
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
    pub fn config(&self) -> &InstanceConfig {
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

    // ------------------------------------------------------------ heaps --

    /// A new logical thread (or a reused exited one, with `reuse_heaps`).
    /// `None` when the OS refuses memory.
    pub fn new_heap(&self) -> Option<HeapRef<'_, B>> {
        let heap = self.new_heap_raw()?;
        Some(HeapRef { heap, inst: self })
    }

    /// The handle of heap `id`, which this instance created.
    ///
    /// # Safety
    /// No other thread uses the same heap at the same time.
    pub unsafe fn heap(&self, id: HeapId<B>) -> HeapRef<'_, B> {
        HeapRef {
            heap: id.0,
            inst: self,
        }
    }

    /// A handle for a raw heap of this instance.
    ///
    /// # Safety
    /// `h` was created by this instance and is driven by the caller only.
    pub(crate) unsafe fn heap_ref(&self, h: *mut Heap<B>) -> HeapRef<'_, B> {
        HeapRef {
            heap: h,
            inst: self,
        }
    }

    pub(crate) fn new_heap_raw(&self) -> Option<*mut Heap<B>> {
        let _g = self.pool_lock.lock();
        // SAFETY: pool lock held.
        unsafe {
            self.ps(|ps| {
                if self.cfg.reuse_heaps && !ps.free_heaps.is_null() {
                    let h = ps.free_heaps;
                    ps.free_heaps = (*h).next_free.with(|n| *n);
                    (*h).alive.store(1, Ordering::Release);
                    return Some(h);
                }
                let size = core::mem::size_of::<Heap<B>>().next_multiple_of(64);
                if ps.heap_chunk_left < size {
                    let bytes = os::round_up(size + 64, os::OS_PAGE)?.max(HEAP_CHUNK);
                    let chunk = os::map(bytes, os::OS_PAGE)?.as_ptr();
                    chunk.cast::<*mut u8>().write(ps.heap_chunks);
                    chunk.add(8).cast::<usize>().write(bytes);
                    ps.heap_chunks = chunk;
                    ps.heap_chunk = chunk.add(64);
                    ps.heap_chunk_left = bytes - 64;
                }
                let h = ps.heap_chunk.cast::<Heap<B>>();
                ps.heap_chunk = ps.heap_chunk.add(size);
                ps.heap_chunk_left -= size;
                h.write(Heap::new(ps.heap_count, self, self.dummy()));
                ps.heap_count += 1;
                if ps.heaps_tail.is_null() {
                    ps.heaps_head = h;
                } else {
                    (*ps.heaps_tail).next_all.store(h, Ordering::Release);
                }
                ps.heaps_tail = h;
                Some(h)
            })
        }
    }

    /// Every heap ever created, in creation order.
    pub(crate) fn for_each_heap(&self, mut f: impl FnMut(&Heap<B>)) {
        let _g = self.pool_lock.lock();
        // SAFETY: pool lock held; heaps are never freed.
        let mut h = unsafe { self.ps(|ps| ps.heaps_head) };
        while !h.is_null() {
            // SAFETY: as above.
            unsafe {
                f(&*h);
                h = (*h).next_all.load(Ordering::Acquire);
            }
        }
    }

    pub(crate) fn exit_heap(&self, h: HeapRef<'_, B>) {
        // SAFETY: the handle's user is its only thread and gives it up.
        unsafe { heap::exit(&*h.heap) };
        if self.cfg.reuse_heaps {
            let _g = self.pool_lock.lock();
            // SAFETY: pool lock held.
            unsafe {
                self.ps(|ps| {
                    (*h.heap).next_free.with_mut(|n| *n = ps.free_heaps);
                    ps.free_heaps = h.heap;
                })
            };
        }
    }

    // ------------------------------------------------------ alloc / free --

    /// See [`HeapRef::alloc`].
    pub fn alloc(&self, h: HeapRef<'_, B>, size: usize, align: usize) -> *mut u8 {
        match class_for(size, align) {
            // SAFETY: the handle is driven by the calling thread.
            Some(c) => unsafe { heap::alloc(h.heap, c) },
            None => crate::large::alloc(size, align, false),
        }
    }

    /// See [`HeapRef::free`].
    ///
    /// # Safety
    /// As [`HeapRef::free`].
    pub unsafe fn free(&self, h: HeapRef<'_, B>, ptr: *mut u8) {
        // SAFETY: forwarded contract.
        unsafe { heap::free(h.heap, ptr) }
    }

    /// Usable size of a block of this instance (or of a large block).
    ///
    /// # Safety
    /// `ptr` is a live block.
    pub unsafe fn usable_size(&self, ptr: *mut u8) -> usize {
        // SAFETY: forwarded contract.
        unsafe { usable_size::<B>(ptr) }
    }

    /// Where a small block is, in the model's terms: `(ss base, slot, block
    /// index, class)`; `None` for a pointer that is not in an `Active` slot
    /// of a SuperSlab (large blocks, foreign pointers).
    pub fn locate(&self, ptr: *mut u8) -> Option<(usize, u8, u32, u8)> {
        if chunkmap::entry(ptr.addr()) != chunkmap::SUPERSLAB {
            return None;
        }
        // SAFETY: a live SuperSlab's header.
        let m = unsafe { &*crate::superslab::slot_of::<B>(ptr) };
        let SlotState::Active(c) = m.state() else {
            return None;
        };
        let bs = crate::size_class::block_size(c as usize) as u32;
        let area = m.area().addr();
        (ptr.addr() >= area).then(|| {
            (
                m.header().addr(),
                m.index() as u8,
                page::block_index(m, ptr, bs),
                c,
            )
        })
    }

    // ------------------------------------------------------- acquisition --

    /// Acquires a slot for `class` and makes it `h`'s current page: stages
    /// 0.5, 1, 2, 3 in turn. `None` when the OS refuses memory.
    pub(crate) fn acquire(&self, h: &Heap<B>, class: usize) -> Option<&SlotMeta<B>> {
        if let Some(m) = self.stage_scan(h, class) {
            return Some(m);
        }
        if let Some(m) = self.stage_list(h, class) {
            return Some(m);
        }
        let _g = self.pool_lock.lock();
        if let Some(m) = self.stage_unused(h, class) {
            return Some(m);
        }
        self.stage_fresh(h, class)
    }

    /// Claims slot `m` (state word `expected`) for `class` by CAS; on
    /// success installs it as `h`'s current page and reports `Acquire`.
    fn claim(
        &self,
        h: &Heap<B>,
        m: &SlotMeta<B>,
        expected: u32,
        class: usize,
        stage: Stage,
    ) -> bool {
        let new = SlotState::Active(class as u8).word();
        if B::MUTANT == Mutant::Stage1NoRecheck && matches!(stage, Stage::List | Stage::Fallback) {
            m.state.store(new, Ordering::SeqCst);
        } else if m
            .state
            .compare_exchange(expected, new, Ordering::SeqCst, Ordering::Acquire)
            .is_err()
        {
            return false;
        }
        // SAFETY: the slot is Active (ours), so its SuperSlab is live.
        let ss = unsafe { &*m.header() };
        let i = m.index();
        match SlotState::from_word(expected) {
            SlotState::Empty(_) => {
                ss.unmark_empty(i);
                if m.empty_since.load(Ordering::Relaxed) != u64::MAX {
                    self.dirty_empty.fetch_sub(1, Ordering::Relaxed);
                }
            }
            SlotState::Unused => {
                // SAFETY: Unused slots are claimed under the pool lock.
                unsafe { ss.pooled(|p| p.unused_mask &= !(1 << i)) }
            }
            _ => {}
        }
        ss.active_slots.fetch_add(1, Ordering::AcqRel);
        m.owner.store(Heap::as_owner(h), Ordering::Release);
        self.counters.stage[class][stage.stat_index()].add(1);
        if B::OBSERVE {
            B::observe(&Event::Acquire {
                t: h.index,
                class: class as u8,
                stage,
                ss: ss.base(),
                slot: i as u8,
            });
        }
        // SAFETY: we just claimed the slot for `h`.
        unsafe { heap::take_claimed(h, class, m) };
        true
    }

    /// Stage 0.5: an `Empty` slot among the first `scan_limit` SuperSlabs
    /// of `registry[class]`.
    fn stage_scan(&self, h: &Heap<B>, class: usize) -> Option<&SlotMeta<B>> {
        self.readers.fetch_add(1, Ordering::SeqCst);
        let mut found = None;
        let mut ss = self.reg_head[class].load(Ordering::SeqCst);
        let mut n = 0;
        'scan: while !ss.is_null() && n < self.cfg.scan_limit {
            // SAFETY: `readers` keeps every SuperSlab reachable from the
            // registry mapped.
            let s = unsafe { &*ss };
            if s.empty_count.load(Ordering::Acquire) > 0 {
                let mut mask = s.empty_mask.load(Ordering::Acquire);
                while mask != 0 {
                    let i = mask.trailing_zeros() as usize;
                    mask &= mask - 1;
                    let m = s.slot(i);
                    let w = m.state.load(Ordering::Acquire);
                    if matches!(SlotState::from_word(w), SlotState::Empty(_))
                        && self.claim(h, m, w, class, Stage::Scan)
                    {
                        found = Some(m);
                        break 'scan;
                    }
                }
            }
            ss = s.reg_next[class].load(Ordering::SeqCst);
            n += 1;
        }
        self.readers.fetch_sub(1, Ordering::SeqCst);
        found
    }

    /// Stage 1: pop entries of `class` (list, then fallback) until one names
    /// a slot that is still `Empty`; stale ones are discarded.
    fn stage_list(&self, h: &Heap<B>, class: usize) -> Option<&SlotMeta<B>> {
        self.readers.fetch_add(1, Ordering::SeqCst);
        let found = loop {
            let Some((mp, source)) = self.stage1.pop(class) else {
                break None;
            };
            // SAFETY: entries name slots of Live SuperSlabs (release removes
            // them), and `readers` keeps them mapped meanwhile.
            let m = unsafe { &*mp };
            let claimed = loop {
                let w = m.state.load(Ordering::Acquire);
                match SlotState::from_word(w) {
                    SlotState::Purging(_) => B::spin_hint(),
                    SlotState::Empty(_) | SlotState::Active(_) | SlotState::Unused
                        if B::MUTANT == Mutant::Stage1NoRecheck =>
                    {
                        break self.claim(h, m, w, class, stage_of(source));
                    }
                    SlotState::Empty(_) => {
                        if self.claim(h, m, w, class, stage_of(source)) {
                            break true;
                        }
                    }
                    _ => break false,
                }
            };
            if claimed {
                break Some(m);
            }
            self.counters.stage1_discards.add(1);
            if B::OBSERVE {
                B::observe(&Event::Stage1Discard {
                    t: h.index,
                    class: class as u8,
                    source,
                    ss: m.header() as usize,
                    slot: m.index() as u8,
                });
            }
        };
        self.readers.fetch_sub(1, Ordering::SeqCst);
        found
    }

    /// Stage 2 (pool lock held): an `Unused` slot of a Live SuperSlab.
    fn stage_unused(&self, h: &Heap<B>, class: usize) -> Option<&SlotMeta<B>> {
        // SAFETY: pool lock held by the caller.
        let mut ss = unsafe { self.ps(|ps| ps.all_head) };
        while !ss.is_null() {
            // SAFETY: SuperSlabs on the all-list are mapped; pool lock held.
            unsafe {
                let s = &*ss;
                let (status, unused, next) = s.pooled(|p| (p.status, p.unused_mask, p.next_all));
                if status == SsStatus::Live && unused != 0 {
                    let i = unused.trailing_zeros() as usize;
                    self.register(s, class);
                    let m = s.slot(i);
                    if self.claim(h, m, SlotState::Unused.word(), class, Stage::Unused) {
                        return Some(m);
                    }
                }
                ss = next;
            }
        }
        None
    }

    /// Stage 3 (pool lock held): a SuperSlab from the arena, or a new one.
    fn stage_fresh(&self, h: &Heap<B>, class: usize) -> Option<&SlotMeta<B>> {
        // SAFETY: pool lock held by the caller.
        let ss = unsafe {
            match self.ps(|ps| {
                let a = ps.arena;
                if !a.is_null() {
                    ps.arena = (*a).pooled(|p| core::mem::replace(&mut p.next_cached, null_mut()));
                    ps.arena_len -= 1;
                    ps.live += 1;
                }
                a
            }) {
                a if !a.is_null() => {
                    (*a).pooled(|p| p.status = SsStatus::Live);
                    self.counters.ss_arena_taken.add(1);
                    if B::OBSERVE {
                        B::observe(&Event::ArenaTake { ss: a as usize });
                    }
                    a
                }
                _ => self.map_superslab()?,
            }
        };
        // SAFETY: Live and ours (pool lock held).
        let s = unsafe { &*ss };
        self.register(s, class);
        // SAFETY: pool lock held.
        let unused = unsafe { s.pooled(|p| p.unused_mask) };
        debug_assert_eq!(unused, u32::MAX);
        let m = s.slot(unused.trailing_zeros() as usize);
        let ok = self.claim(h, m, SlotState::Unused.word(), class, Stage::Fresh);
        debug_assert!(ok, "a fresh SuperSlab's slot 0 is Unused");
        ok.then_some(m)
    }

    /// Maps and initialises a new SuperSlab (pool lock held).
    fn map_superslab(&self) -> Option<*mut SsHeader<B>> {
        let base = os::map(SS_SIZE, SS_SIZE)?.as_ptr();
        // Slot metadata finds its SuperSlab by address (`SlotMeta::header`).
        let _ = base.expose_provenance();
        // SAFETY: pool lock held; fresh mapping.
        unsafe {
            let seq = self.ps(|ps| {
                ps.next_seq += 1;
                ps.next_seq - 1
            });
            let ss = SsHeader::<B>::init(base, seq);
            chunkmap::register_superslab(base as usize);
            self.ps(|ps| {
                if ps.all_tail.is_null() {
                    ps.all_head = ss;
                } else {
                    (*ps.all_tail).pooled(|p| p.next_all = ss);
                }
                ps.all_tail = ss;
                ps.live += 1;
            });
            self.counters.ss_mapped.add(1);
            self.counters.mapped_bytes.add(SS_SIZE as u64);
            self.counters
                .peak_mapped_bytes
                .max(self.counters.mapped_bytes.get());
            Some(ss)
        }
    }

    /// Appends `s` to `registry[class]` unless it is there (pool lock held).
    fn register(&self, s: &SsHeader<B>, class: usize) {
        // SAFETY: pool lock held by the caller.
        unsafe {
            if s.pooled(|p| p.registered & (1 << class) != 0) {
                return;
            }
            s.pooled(|p| p.registered |= 1 << class);
            let sp = s as *const _ as *mut SsHeader<B>;
            s.reg_next[class].store(null_mut(), Ordering::SeqCst);
            let tail = self.ps(|ps| core::mem::replace(&mut ps.reg_tail[class], sp));
            if tail.is_null() {
                self.reg_head[class].store(sp, Ordering::SeqCst);
            } else {
                (*tail).reg_next[class].store(sp, Ordering::SeqCst);
            }
        }
    }

    /// Removes `s` from every registry (pool lock held). Its own `reg_next`
    /// links stay, so a scan standing on it continues.
    fn unregister(&self, s: &SsHeader<B>) {
        let sp = s as *const _ as *mut SsHeader<B>;
        // SAFETY: pool lock held by the caller.
        let mut mask = unsafe { s.pooled(|p| core::mem::replace(&mut p.registered, 0)) };
        while mask != 0 {
            let c = mask.trailing_zeros() as usize;
            mask &= mask - 1;
            let next = s.reg_next[c].load(Ordering::Relaxed);
            let mut prev: *mut SsHeader<B> = null_mut();
            let mut cur = self.reg_head[c].load(Ordering::Relaxed);
            while cur != sp {
                debug_assert!(!cur.is_null(), "registered SuperSlab not in its registry");
                prev = cur;
                // SAFETY: registry members are mapped.
                cur = unsafe { (*cur).reg_next[c].load(Ordering::Relaxed) };
            }
            if prev.is_null() {
                self.reg_head[c].store(next, Ordering::SeqCst);
            } else {
                // SAFETY: as above.
                unsafe { (*prev).reg_next[c].store(next, Ordering::SeqCst) };
            }
            // SAFETY: pool lock held.
            unsafe {
                self.ps(|ps| {
                    if ps.reg_tail[c] == sp {
                        ps.reg_tail[c] = prev;
                    }
                })
            };
        }
    }

    // ----------------------------------------------------------- release --

    /// Called after a `PageEmpty` of a slot of `ss`: release the SuperSlab
    /// if it has no `Active` slot left, and purge if due.
    pub(crate) fn after_page_empty(&self, ssp: *mut SsHeader<B>) {
        // SAFETY: the caller's slot just became Empty; the SuperSlab is
        // mapped until a release below (and `ss` is not used after it).
        let ss = unsafe { &*ssp };
        let no_active = if B::MUTANT == Mutant::ReleaseByTotalActive {
            ss.total_active.load(Ordering::Acquire) == 0
        } else {
            ss.active_slots.load(Ordering::Acquire) == 0
        };
        if no_active {
            let _g = self.pool_lock.lock();
            // SAFETY: pool lock held.
            if unsafe { self.ps(|ps| ps.live) } > self.cfg.keep_live {
                self.try_release(ssp);
            }
        }
        self.maybe_purge();
    }

    /// Releases every Live SuperSlab with no `Active` slot (whatever
    /// `keep_live` says). Returns how many were released.
    pub fn release_empty(&self) -> usize {
        let _g = self.pool_lock.lock();
        let mut n = 0;
        // SAFETY: pool lock held.
        let mut ss = unsafe { self.ps(|ps| ps.all_head) };
        while !ss.is_null() {
            // SAFETY: all-list members are mapped; `next` read before a
            // possible unmap.
            unsafe {
                let next = (*ss).pooled(|p| p.next_all);
                if self.try_release(ss) {
                    n += 1;
                }
                ss = next;
            }
        }
        n
    }

    /// `Release` (pool lock held): retires each `Empty` slot by CAS (a lost
    /// race aborts; retired slots stay `Unused`), unregisters, removes the
    /// SuperSlab's stage-1 entries, and caches or unmaps it.
    ///
    /// `sp` is a raw pointer: the SuperSlab may be unmapped here.
    fn try_release(&self, sp: *mut SsHeader<B>) -> bool {
        // SAFETY: the caller holds the pool lock and `sp` is on the
        // all-list, so mapped; `s` is not used after the unmap.
        let s = unsafe { &*sp };
        // SAFETY: pool lock held by the caller.
        if unsafe { s.pooled(|p| p.status) } != SsStatus::Live {
            return false;
        }
        for i in 0..SLOTS {
            let m = s.slot(i);
            loop {
                let w = m.state.load(Ordering::Acquire);
                match SlotState::from_word(w) {
                    SlotState::Unused => break,
                    SlotState::Active(_) | SlotState::Purging(_)
                        if B::MUTANT != Mutant::ReleaseByTotalActive =>
                    {
                        return false
                    }
                    SlotState::Active(_) | SlotState::Purging(_) => break,
                    SlotState::Empty(_) => {
                        let ok = if B::MUTANT == Mutant::DoubleRelease {
                            m.state.store(SlotState::Unused.word(), Ordering::SeqCst);
                            true
                        } else {
                            m.state
                                .compare_exchange(
                                    w,
                                    SlotState::Unused.word(),
                                    Ordering::SeqCst,
                                    Ordering::Acquire,
                                )
                                .is_ok()
                        };
                        if ok {
                            s.unmark_empty(i);
                            if m.empty_since.load(Ordering::Relaxed) != u64::MAX {
                                self.dirty_empty.fetch_sub(1, Ordering::Relaxed);
                            }
                            // SAFETY: pool lock held.
                            unsafe { s.pooled(|p| p.unused_mask |= 1 << i) };
                            if B::OBSERVE {
                                B::observe(&Event::Retire {
                                    ss: s.base(),
                                    slot: i as u8,
                                });
                            }
                            break;
                        }
                    }
                }
            }
        }
        // Every slot is Unused: no new entry can name `s` once the pushes
        // in flight (counted in `readers`) are done.
        self.unregister(s);
        self.wait_readers();
        let removed = self.stage1.remove_superslab(s.base());
        self.wait_readers();
        debug_assert_eq!(s.empty_mask.load(Ordering::Relaxed), 0);
        debug_assert!(
            B::MUTANT != Mutant::None || s.total_active.load(Ordering::Relaxed) == 0,
            "release with blocks in use"
        );
        // SAFETY: pool lock held.
        let to_os = unsafe {
            self.ps(|ps| {
                ps.live -= 1;
                if ps.arena_len < self.cfg.arena_cache {
                    s.pooled(|p| {
                        p.status = SsStatus::Cached;
                        p.next_cached = ps.arena;
                    });
                    ps.arena = sp;
                    ps.arena_len += 1;
                    false
                } else {
                    // Unlink from the all-list.
                    let next = s.pooled(|p| p.next_all);
                    let mut prev: *mut SsHeader<B> = null_mut();
                    let mut cur = ps.all_head;
                    while cur != sp {
                        prev = cur;
                        cur = (*cur).pooled(|p| p.next_all);
                    }
                    if prev.is_null() {
                        ps.all_head = next;
                    } else {
                        (*prev).pooled(|p| p.next_all = next);
                    }
                    if ps.all_tail == sp {
                        ps.all_tail = prev;
                    }
                    true
                }
            })
        };
        if B::OBSERVE {
            B::observe(&Event::Release {
                ss: s.base(),
                to_os,
                entries_removed: removed as u32,
            });
        }
        if to_os {
            chunkmap::unregister_superslab(s.base());
            self.wait_readers();
            self.counters.ss_unmapped.add(1);
            self.counters.mapped_bytes.sub(SS_SIZE as u64);
            // SAFETY: no slot is in use, no reader can reach `s` any more,
            // and the mapping is exactly one `map(SS_SIZE, SS_SIZE)`.
            unsafe {
                if core::mem::needs_drop::<SsHeader<B>>() {
                    core::ptr::drop_in_place(sp);
                }
                os::unmap(NonNull::new_unchecked(sp.cast()), SS_SIZE, SS_SIZE)
            };
        } else {
            self.counters.ss_cached.add(1);
            // Cached SuperSlabs keep no physical memory beyond the header.
            // SAFETY: every slot is Unused: no one touches the block areas.
            unsafe {
                let base = sp.cast::<u8>();
                os::decommit(
                    NonNull::new_unchecked(base.add(slot_area_offset(0))),
                    SS_SIZE - slot_area_offset(0),
                );
            }
        }
        true
    }

    fn wait_readers(&self) {
        while self.readers.load(Ordering::SeqCst) != 0 {
            B::spin_hint();
        }
    }

    /// Calls `f` for every SuperSlab and heap chunk, under the pool lock
    /// (the residency diagnostic).
    pub(crate) fn for_each_mapping(&self, mut f: impl FnMut(Mapping, usize, usize)) {
        let _g = self.pool_lock.lock();
        // SAFETY: pool lock held: the lists do not change and nothing on
        // them is unmapped meanwhile.
        unsafe {
            let mut ss = self.ps(|ps| ps.all_head);
            while !ss.is_null() {
                f(Mapping::SuperSlab, ss as usize, SS_SIZE);
                ss = (*ss).pooled(|p| p.next_all);
            }
            let mut chunk = self.ps(|ps| ps.heap_chunks);
            while !chunk.is_null() {
                let bytes = chunk.add(8).cast::<usize>().read();
                f(Mapping::Heaps, chunk as usize, bytes);
                chunk = chunk.cast::<*mut u8>().read();
            }
        }
    }

    // ------------------------------------------------------------- purge --

    /// Decommits `Empty` slots that have stayed empty for the purge delay
    /// (only if the pool lock is free and a purge is due).
    fn maybe_purge(&self) {
        if self.dirty_empty.load(Ordering::Relaxed) > self.cfg.purge_threshold {
            if let Some(_g) = self.pool_lock.try_lock() {
                self.purge_locked(u64::MAX, 0);
            }
            return;
        }
        let delay = self.cfg.purge_delay_ms;
        if delay == u64::MAX {
            return;
        }
        let now = self.now_ms();
        if delay > 0 && now < self.next_purge.load(Ordering::Relaxed) {
            return;
        }
        let Some(_g) = self.pool_lock.try_lock() else {
            return;
        };
        self.next_purge
            .store(now + (delay / 2).max(1), Ordering::Relaxed);
        self.purge_locked(now, delay);
    }

    /// Decommits every `Empty` slot now, whatever its age. Returns how many.
    pub fn purge_now(&self) -> usize {
        let _g = self.pool_lock.lock();
        self.purge_locked(u64::MAX, 0)
    }

    fn purge_locked(&self, now: u64, delay: u64) -> usize {
        let mut n = 0;
        // SAFETY: pool lock held.
        let mut ss = unsafe { self.ps(|ps| ps.all_head) };
        while !ss.is_null() {
            // SAFETY: all-list members are mapped; pool lock held.
            let s = unsafe { &*ss };
            // SAFETY: pool lock held.
            let (status, next) = unsafe { s.pooled(|p| (p.status, p.next_all)) };
            if status == SsStatus::Live {
                let mut mask = s.empty_mask.load(Ordering::Acquire);
                while mask != 0 {
                    let i = mask.trailing_zeros() as usize;
                    mask &= mask - 1;
                    let m = s.slot(i);
                    let since = m.empty_since.load(Ordering::Relaxed);
                    if since == u64::MAX || now.saturating_sub(since) < delay {
                        continue;
                    }
                    let w = m.state.load(Ordering::Acquire);
                    let SlotState::Empty(c) = SlotState::from_word(w) else {
                        continue;
                    };
                    if m.state
                        .compare_exchange(
                            w,
                            SlotState::Purging(c).word(),
                            Ordering::SeqCst,
                            Ordering::Relaxed,
                        )
                        .is_err()
                    {
                        continue;
                    }
                    // SAFETY: the slot is Purging: no one may claim or touch
                    // its block area until we store Empty back.
                    unsafe {
                        let area = ss.cast::<u8>().add(slot_area_offset(i));
                        os::decommit(NonNull::new_unchecked(area), slot_area_size(i));
                    }
                    m.empty_since.store(u64::MAX, Ordering::Relaxed);
                    m.state.store(w, Ordering::Release);
                    self.dirty_empty.fetch_sub(1, Ordering::Relaxed);
                    self.counters.purged_slots.add(1);
                    n += 1;
                }
            }
            ss = next;
        }
        n
    }

    // ------------------------------------------------------- statistics --

    /// Statistics of this instance.
    pub fn stats(&self) -> Stats {
        let mut s = Stats::default();
        for (c, cs) in s.classes.iter_mut().enumerate() {
            cs.block_size = crate::size_class::block_size(c) as u32;
            for k in 0..4 {
                cs.acquired[k] = self.counters.stage[c][k].get();
            }
        }
        self.for_each_heap(|h| {
            s.heaps += 1;
            for (c, cs) in s.classes.iter_mut().enumerate() {
                cs.allocs += h.counters.allocs[c].get();
                cs.frees += h.counters.frees[c].get();
                cs.remote_frees += h.counters.remote_frees[c].get();
                cs.slow += h.counters.slow[c].get();
            }
            s.flushes += h.counters.flushes.get();
            s.drains += h.counters.drains.get();
            s.drained_blocks += h.counters.drained_blocks.get();
        });
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
        s
    }

    // ------------------------------------------------ snapshot accessors --

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
    /// [`Instance::fork_parent`] or [`Instance::fork_child`].
    pub fn fork_prepare(&self) {
        self.pool_lock.lock_raw();
        self.stage1.fallback_lock().lock_raw();
    }

    /// `fork` in the parent: releases what [`Instance::fork_prepare`] took.
    pub fn fork_parent(&self) {
        self.stage1.fallback_lock().force_unlock();
        self.pool_lock.force_unlock();
    }

    /// `fork` in the child: releases the locks and resets `readers`. The
    /// child's one thread called `fork`, so it is in no lock-free section;
    /// sections of threads that do not exist in the child will never end,
    /// and a release would wait for them forever.
    pub fn fork_child(&self) {
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

fn stage_of(source: Source) -> Stage {
    match source {
        Source::List => Stage::List,
        Source::Fallback => Stage::Fallback,
    }
}

/// Usable size of a live block (small: its class's block size).
///
/// # Safety
/// `ptr` is a live block of hakmem.
pub(crate) unsafe fn usable_size<B: Backend>(ptr: *mut u8) -> usize {
    if chunkmap::entry(ptr as usize) == chunkmap::SUPERSLAB {
        // SAFETY: live SuperSlab.
        let m = unsafe { &*crate::superslab::slot_of::<B>(ptr) };
        match m.state() {
            SlotState::Active(c) => crate::size_class::block_size(c as usize),
            _ => crate::fatal!("usable_size(): invalid pointer {:p}", ptr),
        }
    } else {
        // SAFETY: forwarded contract.
        unsafe { crate::large::usable_size(ptr) }
    }
}

impl<B: Backend> Drop for Instance<B> {
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
            if core::mem::needs_drop::<Heap<B>>() {
                let mut h = self.ps(|ps| ps.heaps_head);
                while !h.is_null() {
                    let next = (*h).next_all.load(Ordering::Relaxed);
                    core::ptr::drop_in_place(h);
                    h = next;
                }
            }
            let mut chunk = self.ps(|ps| ps.heap_chunks);
            while !chunk.is_null() {
                let next = chunk.cast::<*mut u8>().read();
                let bytes = chunk.add(8).cast::<usize>().read();
                os::unmap(NonNull::new_unchecked(chunk), bytes, os::OS_PAGE);
                chunk = next;
            }
        }
        let _ = page::FULL;
    }
}
