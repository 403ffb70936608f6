//! A heap: one logical thread's allocation state — per class a current page,
//! a partial list and a full list — and the paths that use it: the malloc
//! and free fast paths, the refill slow path, local/remote frees, page
//! empty, abandon (thread exit) and reclaim.
//!
//! Path overview:
//!
//! ```text
//! alloc ─ current[class].free non-empty? ── pop (AllocFast) ────────────── done
//!          └ no (cold) → refill: flush(Boundary) → drain → carve → PageFull
//!                        → full_hint → partial (SetCurrent) → reclaim
//!                        → Pool::acquire (stages 0.5, 1, 2, 3)
//! free  ─ chunk is a SuperSlab? ─ owner == heap? ─ push free list (FreeLocal)
//!          │                        │              └ used ≤ 0 (cold): empty/unfull/double free
//!          │                        └ no (cold): validate, push remote (FreeRemote)
//!          └ no (cold): large, or invalid pointer
//! ```
//!
//! This file holds the types and the fast paths; `refill` the malloc slow
//! path, `free_slow` the free slow paths and `PageEmpty`, `abandon` thread
//! exit and reclaim.
//!
//! Heaps are never freed: an exited heap is kept (and, for the global
//! instance, reused by a later thread), so a remote freer may always set a
//! heap's `full_hint`.

mod abandon;
mod free_slow;
mod refill;

pub(crate) use abandon::exit;
use free_slow::{free_local_cold, free_not_small, free_remote};
pub(crate) use refill::alloc_slow;

use crate::chunkmap;
use crate::observe::{Event, FlushReason};
use crate::page::{self, local};
use crate::pool::Pool;
use crate::size_class::{block_size, NUM_CLASSES};
use crate::stats::HeapCounters;
use crate::superslab::{slot_of, PageOwner, SlotMeta};
use crate::sync::{AtomicOps, Backend, CellOps, Ordering};
use core::ptr::null_mut;

/// A doubly linked list of pages (links in their owner-local state).
pub struct List<B: Backend> {
    /// First page.
    pub head: *mut SlotMeta<B>,
    /// Last page.
    pub tail: *mut SlotMeta<B>,
}

impl<B: Backend> Clone for List<B> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<B: Backend> Copy for List<B> {}

impl<B: Backend> List<B> {
    pub(crate) const EMPTY: Self = Self {
        head: null_mut(),
        tail: null_mut(),
    };

    /// # Safety
    /// The caller owns `m` and every page on the list.
    unsafe fn push_back(&mut self, m: *mut SlotMeta<B>) {
        let tail = self.tail;
        // SAFETY: forwarded contract.
        unsafe {
            local(&*m, |p| {
                p.prev = tail;
                p.next = null_mut();
            });
            if tail.is_null() {
                self.head = m;
            } else {
                local(&*tail, |p| p.next = m);
            }
        }
        self.tail = m;
    }

    /// # Safety
    /// The caller owns `m` (which is on this list) and its neighbours.
    unsafe fn remove(&mut self, m: *mut SlotMeta<B>) {
        // SAFETY: forwarded contract.
        unsafe {
            let (prev, next) = local(&*m, |p| {
                let r = (p.prev, p.next);
                p.prev = null_mut();
                p.next = null_mut();
                r
            });
            if prev.is_null() {
                self.head = next;
            } else {
                local(&*prev, |p| p.next = next);
            }
            if next.is_null() {
                self.tail = prev;
            } else {
                local(&*next, |p| p.prev = prev);
            }
        }
    }

    /// # Safety
    /// The caller owns every page on the list.
    unsafe fn pop_front(&mut self) -> Option<*mut SlotMeta<B>> {
        let m = self.head;
        if m.is_null() {
            return None;
        }
        // SAFETY: forwarded contract.
        unsafe { self.remove(m) };
        Some(m)
    }

    /// Iterates the pages (the caller owns them).
    pub(crate) fn for_each(&self, mut f: impl FnMut(*mut SlotMeta<B>)) {
        let mut m = self.head;
        while !m.is_null() {
            // SAFETY: pages on a heap list are owned by that heap; callers are
            // the owner or a quiescent snapshot.
            let next = unsafe { local(&*m, |p| p.next) };
            f(m);
            m = next;
        }
    }
}

/// Owner-local heap state.
pub struct HeapLocal<B: Backend> {
    /// Per class: the current page, or the instance's dummy page (no free
    /// block) when there is none.
    pub current: [*mut SlotMeta<B>; NUM_CLASSES],
    /// Per class: pages with (possibly) free blocks.
    pub partial: [List<B>; NUM_CLASSES],
    /// Per class: pages with no free block (`in_full`).
    pub full: [List<B>; NUM_CLASSES],
}

/// One logical thread's heap.
///
/// # Invariants
/// - Pages on `current`/`partial`/`full` are `Active`, owned by this heap,
///   each in exactly one place (`PageLocal::list` says which).
/// - A page on `full` has no free block, `carved == capacity`, and carries
///   [`IN_FULL_BIAS`](crate::superslab::IN_FULL_BIAS) in its `used`; a current page carries
///   [`CURRENT_BIAS`](crate::superslab::CURRENT_BIAS) (`PageLocal::set_list`).
/// - A dead heap (`alive == 0`) owns no page.
#[repr(C)]
pub struct Heap<B: Backend> {
    /// What the page layers see of the heap (first: a slot's owner pointer
    /// is the heap's address, see [`Heap::as_owner`]).
    pub(crate) owner: PageOwner<B>,
    /// Owner-local state.
    pub(crate) local: B::Cell<HeapLocal<B>>,
    /// Fast-path counters.
    pub(crate) counters: HeapCounters,
    /// 1 while the heap's thread lives.
    pub(crate) alive: B::AtomicU32,
    /// Index in the instance (creation order).
    pub(crate) index: u32,
    /// The owning instance's SuperSlab pool.
    pub(crate) pool: *const Pool<B>,
    /// Next heap of the instance (creation order; written once, under the
    /// pool lock; atomic because the owner holds `&Heap` meanwhile).
    pub(crate) next_all: B::AtomicPtr<Heap<B>>,
    /// Next exited heap available for reuse (under the pool lock).
    pub(crate) next_free: B::Cell<*mut Heap<B>>,
}

// SAFETY: the owner-local parts are only touched by the heap's thread; the
// rest is atomics or immutable after creation.
unsafe impl<B: Backend> Send for Heap<B> {}
// SAFETY: as above.
unsafe impl<B: Backend> Sync for Heap<B> {}

impl<B: Backend> Heap<B> {
    /// The heap as a slot's owner (the same address: `owner` is the first
    /// field of this `repr(C)` struct).
    #[inline(always)]
    pub(crate) fn as_owner(heap: *const Self) -> *mut PageOwner<B> {
        heap.cast_mut().cast()
    }

    /// The heap that is the slot owner `owner` (see [`Heap::as_owner`]).
    #[inline(always)]
    pub(crate) fn from_owner(owner: *mut PageOwner<B>) -> *mut Self {
        owner.cast()
    }

    /// A heap whose current pages are all `dummy`.
    pub(crate) fn new(index: u32, pool: *const Pool<B>, dummy: *mut SlotMeta<B>) -> Self {
        Self {
            local: B::Cell::new(HeapLocal {
                current: [dummy; NUM_CLASSES],
                partial: [List::EMPTY; NUM_CLASSES],
                full: [List::EMPTY; NUM_CLASSES],
            }),
            owner: PageOwner::new(),
            counters: HeapCounters::new(),
            alive: B::AtomicU32::new(1),
            index,
            pool,
            next_all: B::AtomicPtr::new(null_mut()),
            next_free: B::Cell::new(null_mut()),
        }
    }

    /// The heap's index in its instance (the model's thread id).
    pub fn index(&self) -> u32 {
        self.index
    }

    /// Whether the heap's thread is alive.
    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Acquire) != 0
    }

    /// # Safety
    /// The caller is the heap's thread (or holds the heap quiescent).
    #[inline(always)]
    pub(crate) unsafe fn hl<R>(&self, f: impl FnOnce(&mut HeapLocal<B>) -> R) -> R {
        // SAFETY: forwarded contract: only the owner touches `local`.
        self.local.with_mut(|h| f(unsafe { &mut *h }))
    }

    #[inline(always)]
    fn pool(&self) -> &Pool<B> {
        // SAFETY: a heap never outlives its instance (and its pool).
        unsafe { &*self.pool }
    }
}

// ---------------------------------------------------------------- malloc --

/// Allocates a block of `class`: the fast path.
///
/// # Safety
/// `heap` is a live heap of its instance driven by the calling thread.
#[inline(always)]
pub(crate) unsafe fn alloc<B: Backend>(heap: *mut Heap<B>, class: usize) -> *mut u8 {
    // SAFETY: forwarded contract.
    unsafe { alloc_or(heap, class, || alloc_slow(heap, class)) }
}

/// The fast path of [`alloc`], with `slow` in place of [`alloc_slow`] when
/// the current page has no free block: the C API puts its record-mode test
/// there, so the fast path itself carries none.
///
/// # Safety
/// As [`alloc`]; `slow` is called in tail position with nothing changed.
#[inline(always)]
pub(crate) unsafe fn alloc_or<B: Backend>(
    heap: *mut Heap<B>,
    class: usize,
    slow: impl FnOnce() -> *mut u8,
) -> *mut u8 {
    // SAFETY: forwarded contract; the current page (or the dummy page) is
    // valid for the heap's owner.
    unsafe {
        let h = &*heap;
        let page = h.local.with(|l| (*l).current[class]);
        let m = &*page;
        let block = m.local.with(|p| (*p).free);
        if block.is_null() {
            return slow();
        }
        pop(h, m, class, block)
    }
}

/// The fast path of a zeroed allocation: a block of `class` from the
/// current page with its first `size` bytes cleared, or null when the page
/// has no free block (the caller's slow path hands out zeroed memory).
///
/// # Safety
/// As [`alloc`]; `size` ≤ the block size of `class`.
#[inline(always)]
pub(crate) unsafe fn alloc_zeroed_fast<B: Backend>(
    heap: *mut Heap<B>,
    class: usize,
    size: usize,
) -> *mut u8 {
    // SAFETY: forwarded contract; null goes back to the caller untouched.
    let p = unsafe { alloc_or(heap, class, null_mut) };
    if !p.is_null() {
        // SAFETY: a fresh block of at least `size` bytes.
        unsafe { p.write_bytes(0, size) };
    }
    p
}

/// Pops `block`, the head of `m`'s free list (`AllocFast`).
///
/// # Safety
/// `h` owns `m` and `block` is its free-list head.
#[inline(always)]
unsafe fn pop<B: Backend>(h: &Heap<B>, m: &SlotMeta<B>, class: usize, block: *mut u8) -> *mut u8 {
    // SAFETY: forwarded contract: the block is on the owner's free list.
    unsafe {
        m.local.with_mut(|p| {
            (*p).free = B::load_link(block.cast());
            (*p).used += 1;
        })
    };
    if B::OBSERVE {
        B::observe(&Event::AllocFast {
            t: h.index,
            class: class as u8,
            ss: m.header() as usize,
            slot: m.index() as u8,
            block: page::block_index(m, block, block_size(class) as u32),
        });
    }
    if let Some(k) = B::FLUSH_THRESHOLD {
        // SAFETY: owner.
        unsafe { threshold_flush(h, m, k) };
    }
    block
}

/// # Safety
/// `h` owns `m`.
#[inline(never)]
unsafe fn threshold_flush<B: Backend>(h: &Heap<B>, m: &SlotMeta<B>, k: u32) {
    // SAFETY: owner (forwarded).
    unsafe {
        let cap = local(m, |p| p.capacity);
        if page::delta(m).unsigned_abs() >= k.min(cap) {
            flush_page(h, m, Some(FlushReason::Threshold));
        }
    }
}

// ------------------------------------------------------------------ free --

/// Frees `ptr` on behalf of `heap`: the fast path.
///
/// # Safety
/// `heap` is a live heap driven by the calling thread (or the global empty
/// heap); `ptr` is any pointer (invalid ones are reported and abort).
#[inline(always)]
pub(crate) unsafe fn free<B: Backend>(heap: *mut Heap<B>, ptr: *mut u8) {
    // SAFETY: forwarded contract.
    unsafe {
        free_or(heap, ptr, |meta| match meta {
            None => free_not_small(ptr),
            Some(meta) => free_remote(ptr, heap, meta),
        })
    }
}

/// The slow paths of [`free`] for a block that is not a local small one:
/// a large or foreign pointer, or a small block of another heap.
///
/// # Safety
/// As [`free`].
#[inline]
pub(crate) unsafe fn free_not_local<B: Backend>(heap: *mut Heap<B>, ptr: *mut u8) {
    // SAFETY: forwarded contract.
    unsafe {
        if !chunkmap::is_superslab(ptr.addr()) {
            free_not_small(ptr)
        } else {
            free_remote(ptr, heap, slot_of::<B>(ptr))
        }
    }
}

/// The fast path of [`free`], with `not_local` in place of its slow paths
/// when `ptr` is not a small block owned by `heap`: `not_local(None)` when
/// it is not in a SuperSlab, `not_local(Some(meta))` when its page (`meta`)
/// has another owner. The C API puts its record-mode test there.
///
/// # Safety
/// As [`free`]; `not_local` is called in tail position with nothing
/// changed.
#[inline(always)]
pub(crate) unsafe fn free_or<B: Backend>(
    heap: *mut Heap<B>,
    ptr: *mut u8,
    not_local: impl FnOnce(Option<*mut SlotMeta<B>>),
) {
    if !chunkmap::is_superslab(ptr.addr()) {
        return not_local(None);
    }
    // The caller's pointer may carry provenance for its old object only: the
    // link is written through it, but the list keeps `block`, which has the
    // SuperSlab's exposed provenance (the block will be handed out again,
    // possibly for a larger size of the class). A no-op in machine code.
    let block: *mut u8 = core::ptr::with_exposed_provenance_mut(ptr.addr());
    let meta = slot_of::<B>(ptr);
    // SAFETY: the chunk is a live SuperSlab, so its header is mapped.
    let m = unsafe { &*meta };
    if m.owner.load(Ordering::Relaxed) != Heap::as_owner(heap) {
        return not_local(Some(meta));
    }
    // `cold` is taken when the decremented `used` is ≤ 0 (the page is now
    // empty, or `used` underflowed: a double free) or `used` carried the
    // full-list bias. A current page's bias keeps its `used` above 0 when
    // it empties: it stays current, with nothing to do.
    // SAFETY: `heap` owns the page, and the caller gives the block back.
    let cold = unsafe {
        m.local.with_mut(|p| {
            let head = (*p).free;
            if head == block {
                // Freed twice in a row: it is already the free-list head.
                return None;
            }
            B::store_link(ptr.cast(), head);
            (*p).free = block;
            (*p).frees += 1;
            Some(dec_used(core::ptr::addr_of_mut!((*p).used)))
        })
    };
    if B::OBSERVE {
        // SAFETY: heap is live (it owns the page); owner.
        let (h, class) = unsafe { (&*heap, local(m, |p| p.class)) };
        B::observe(&Event::FreeLocal {
            t: h.index,
            ss: m.header() as usize,
            slot: m.index() as u8,
            block: page::block_index(m, ptr, block_size(class as usize) as u32),
        });
    }
    if cold != Some(false) {
        // One cold function that can return (not `-> !`) for both: a tail
        // jump, so the fast path needs no stack frame (a call to a `-> !`
        // function made LLVM align the stack with a `push`/`pop` on every
        // free).
        // SAFETY: owner; `ptr` was pushed unless `cold` is `None`.
        return unsafe { free_local_cold(ptr, heap, cold.is_some()) };
    }
    if let Some(k) = B::FLUSH_THRESHOLD {
        // SAFETY: heap is live and owns the page.
        unsafe { threshold_flush(&*heap, m, k) };
    }
}

/// `*used -= 1`; true when the old value, as `i32`, was ≤ 1 (the new one
/// is ≤ 0, or the old one carried [`IN_FULL_BIAS`](crate::superslab::IN_FULL_BIAS)).
///
/// On x86-64 one `dec [used]; jle`: LLVM rewrites the test on the new value
/// into a compare of the old one and so keeps load, `lea`, store, `cmp`, jump
/// (5 instructions; measured with the test written on the old value, on the
/// new one, and with the decrement as `unchecked_sub`).
/// Elsewhere, and under Miri, the same in plain Rust.
///
/// # Safety
/// `used` is valid for reads and writes and no other access overlaps.
#[inline(always)]
unsafe fn dec_used(used: *mut u32) -> bool {
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    {
        // SAFETY: forwarded contract; `dec` with a memory operand on an
        // aligned u32, flags only otherwise (`jle`: ZF = 1 or SF ≠ OF, i.e.
        // old − 1 ≤ 0 computed without wrapping).
        unsafe {
            core::arch::asm!(
                "dec dword ptr [{used}]",
                "jle {cold}",
                used = in(reg) used,
                cold = label { return true; },
                options(nostack),
            );
        }
        false
    }
    #[cfg(not(all(target_arch = "x86_64", not(miri))))]
    {
        // SAFETY: forwarded contract.
        unsafe {
            let old = *used;
            *used = old.wrapping_sub(1);
            old as i32 <= 1
        }
    }
}

/// Folds a page's counts into its owner's statistics.
///
/// The fast paths count at page granularity: a free bumps the page's
/// `frees`, an allocation nothing at all; here, allocations since the last
/// fold = `(used − stat_used) + frees + drained` (each pop raised `used`,
/// each local free and each drained block lowered it).
///
/// # Safety
/// `h` owns `m`.
pub(crate) unsafe fn fold_stats<B: Backend>(h: &Heap<B>, m: &SlotMeta<B>) {
    // SAFETY: owner (forwarded).
    let (allocs, frees, class) = unsafe {
        local(m, |p| {
            let used = p.live();
            let allocs = used
                .wrapping_sub(p.stat_used)
                .wrapping_add(p.frees)
                .wrapping_add(p.drained);
            p.stat_used = used;
            let frees = core::mem::take(&mut p.frees);
            p.drained = 0;
            (allocs, frees, p.class as usize)
        })
    };
    h.counters.allocs[class].add_local(allocs as u64);
    h.counters.frees[class].add_local(frees as u64);
}

/// A page boundary: folds the page's statistics, then `Flush`es its delta.
///
/// # Safety
/// `h` owns `m`.
pub(crate) unsafe fn flush_page<B: Backend>(
    h: &Heap<B>,
    m: &SlotMeta<B>,
    reason: Option<FlushReason>,
) {
    // SAFETY: owner (forwarded).
    unsafe {
        fold_stats(h, m);
        if reason.is_some() && page::delta(m) != 0 {
            h.counters.flushes.inc();
        }
        page::flush(m, h.index, reason);
    }
}

/// Folds the statistics of every page `h` holds (e.g. before a report).
///
/// # Safety
/// The caller is `h`'s thread.
pub(crate) unsafe fn fold_all_stats<B: Backend>(h: &Heap<B>) {
    let dummy = h.pool().dummy();
    for class in 0..NUM_CLASSES {
        // SAFETY: owner of its pages.
        unsafe {
            let (cur, partial, full) =
                h.hl(|l| (l.current[class], l.partial[class], l.full[class]));
            if cur != dummy {
                fold_stats(h, &*cur);
            }
            partial.for_each(|m| fold_stats(h, &*m));
            full.for_each(|m| fold_stats(h, &*m));
        }
    }
}
