//! An allocator instance: its SuperSlab pool (`pool`) and its heaps (the
//! registry of every heap created, the exited ones kept for reuse, the
//! memory they are carved from), with the public handle `HeapRef`. Several
//! instances can coexist (tests build small ones; the global allocator has
//! one in static memory).
//!
//! Lock discipline: the *heaps lock* serialises heap creation, reuse and the
//! walks over heaps; it is never held while taking the pool lock, except by
//! `fork_prepare`, which takes it first.

use crate::chunkmap;
use crate::heap::{self, Heap};
use crate::os;
use crate::page;
pub use crate::pool::InstanceConfig;
use crate::pool::Pool;
use crate::size_class::{class_for, SS_SIZE};
use crate::stats::Stats;
use crate::superslab::SlotState;
use crate::sync::{AtomicOps, Backend, CellOps, Ordering, SpinLock};
use core::ptr::{null_mut, NonNull};

/// What [`Instance::for_each_mapping`] reports (to the residency
/// diagnostic).
pub(crate) enum Mapping {
    /// A SuperSlab (2 MiB at `base`).
    SuperSlab,
    /// A chunk of heap memory.
    Heaps,
}

/// Heaps-lock protected state.
struct HeapsState<B: Backend> {
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
/// - The pool's invariants (see `pool::Pool`).
/// - Every heap ever created is on the heaps list (creation order) and
///   points at `pool`; heaps are never freed while the instance lives.
pub struct Instance<B: Backend> {
    pub(crate) pool: Pool<B>,
    heaps_lock: SpinLock<B>,
    heaps: B::Cell<HeapsState<B>>,
}

// SAFETY: the raw pointers in the heaps state are guarded by the heaps lock;
// the pool is `Sync`.
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
            pool: Pool::build(cfg)?,
            heaps_lock: SpinLock::new(),
            heaps: B::Cell::new(HeapsState {
                heaps_head: null_mut(),
                heaps_tail: null_mut(),
                heap_count: 0,
                free_heaps: null_mut(),
                heap_chunk: null_mut(),
                heap_chunk_left: 0,
                heap_chunks: null_mut(),
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &InstanceConfig {
        self.pool.config()
    }

    /// # Safety
    /// The caller holds the heaps lock.
    #[inline]
    unsafe fn hs<R>(&self, f: impl FnOnce(&mut HeapsState<B>) -> R) -> R {
        // SAFETY: forwarded contract.
        self.heaps.with_mut(|p| f(unsafe { &mut *p }))
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
        let _g = self.heaps_lock.lock();
        // SAFETY: heaps lock held.
        unsafe {
            self.hs(|ps| {
                if self.config().reuse_heaps && !ps.free_heaps.is_null() {
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
                h.write(Heap::new(ps.heap_count, &self.pool, self.pool.dummy()));
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
        let _g = self.heaps_lock.lock();
        // SAFETY: heaps lock held; heaps are never freed.
        let mut h = unsafe { self.hs(|ps| ps.heaps_head) };
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
        if self.config().reuse_heaps {
            let _g = self.heaps_lock.lock();
            // SAFETY: heaps lock held.
            unsafe {
                self.hs(|ps| {
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

    // ------------------------------------------------------------- pool --

    /// Releases every Live SuperSlab with no `Active` slot (whatever
    /// `keep_live` says). Returns how many were released.
    pub fn release_empty(&self) -> usize {
        self.pool.release_empty()
    }

    /// Decommits every `Empty` slot now, whatever its age. Returns how many.
    pub fn purge_now(&self) -> usize {
        self.pool.purge_now()
    }

    /// Calls `f` for every SuperSlab (under the pool lock) and every heap
    /// chunk (under the heaps lock): the residency diagnostic.
    pub(crate) fn for_each_mapping(&self, mut f: impl FnMut(Mapping, usize, usize)) {
        self.pool
            .for_each_superslab(|s, _, _| f(Mapping::SuperSlab, s as *const _ as usize, SS_SIZE));
        let _g = self.heaps_lock.lock();
        // SAFETY: heaps lock held: the chunk list does not change; chunks
        // are unmapped only by `drop`.
        unsafe {
            let mut chunk = self.hs(|hs| hs.heap_chunks);
            while !chunk.is_null() {
                let bytes = chunk.add(8).cast::<usize>().read();
                f(Mapping::Heaps, chunk as usize, bytes);
                chunk = chunk.cast::<*mut u8>().read();
            }
        }
    }

    /// Statistics of this instance.
    pub fn stats(&self) -> Stats {
        let mut s = Stats::default();
        for (c, cs) in s.classes.iter_mut().enumerate() {
            cs.block_size = crate::size_class::block_size(c) as u32;
        }
        self.pool.add_stats(&mut s);
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
        s
    }

    /// `fork` prepare: takes the heaps lock, then the pool lock and the
    /// stage-1 fallback lock (the order every path nests them in), so that
    /// the child inherits consistent heaps, pool and fallback state. Release
    /// with [`Instance::fork_parent`] or [`Instance::fork_child`].
    pub fn fork_prepare(&self) {
        self.heaps_lock.lock_raw();
        self.pool.fork_prepare();
    }

    /// `fork` in the parent: releases what [`Instance::fork_prepare`] took.
    pub fn fork_parent(&self) {
        self.pool.fork_parent();
        self.heaps_lock.force_unlock();
    }

    /// `fork` in the child: releases the locks and resets the pool's
    /// `readers` (see `Pool::fork_child`).
    pub fn fork_child(&self) {
        self.pool.fork_child();
        self.heaps_lock.force_unlock();
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
        // SAFETY: `&mut self`: no heap is in use any more; every chunk on
        // the list is one mapping of ours. The pool (SuperSlabs) is dropped
        // after this, as a field.
        unsafe {
            if core::mem::needs_drop::<Heap<B>>() {
                let mut h = self.hs(|hs| hs.heaps_head);
                while !h.is_null() {
                    let next = (*h).next_all.load(Ordering::Relaxed);
                    core::ptr::drop_in_place(h);
                    h = next;
                }
            }
            let mut chunk = self.hs(|hs| hs.heap_chunks);
            while !chunk.is_null() {
                let next = chunk.cast::<*mut u8>().read();
                let bytes = chunk.add(8).cast::<usize>().read();
                os::unmap(NonNull::new_unchecked(chunk), bytes, os::OS_PAGE);
                chunk = next;
            }
        }
    }
}
