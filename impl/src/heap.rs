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
//! Heaps are never freed: an exited heap is kept (and, for the global
//! instance, reused by a later thread), so a remote freer may always set a
//! heap's `full_hint`.

use crate::chunkmap;
use crate::observe::{Event, FlushReason};
use crate::page::{self, local, PageList};
use crate::pool::{Claimant, Pool};
use crate::size_class::{block_size, NUM_CLASSES, SLOTS};
use crate::stats::HeapCounters;
pub(crate) use crate::superslab::IN_FULL_BIAS;
use crate::superslab::{slot_of, PageOwner, SlotMeta, SlotState, SsHeader};
use crate::sync::{AtomicIntOps, AtomicOps, Backend, CellOps, Mutant, Ordering};
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
///   [`IN_FULL_BIAS`] in its `used`.
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

/// The slow path of [`alloc`]: refill the current page. (The global
/// allocator's static empty heap, which has no instance, never gets here:
/// its slow path is `global`'s, which creates the thread's heap.)
///
/// # Safety
/// As [`alloc`]; `heap` belongs to an instance.
#[cold]
#[inline(never)]
pub(crate) unsafe fn alloc_slow<B: Backend>(heap: *mut Heap<B>, class: usize) -> *mut u8 {
    // SAFETY: forwarded contract.
    unsafe {
        let h = &*heap;
        debug_assert!(!h.pool.is_null(), "alloc_slow on the empty heap");
        h.counters.slow[class].inc();
        match refill(h, class) {
            Some(m) => {
                let block = m.local.with(|p| (*p).free);
                pop(h, m, class, block)
            }
            None => null_mut(),
        }
    }
}

/// Makes the current page of `class` have a free block; `None` when the OS
/// refuses memory.
///
/// # Safety
/// The caller is `h`'s thread.
unsafe fn refill<B: Backend>(h: &Heap<B>, class: usize) -> Option<&SlotMeta<B>> {
    let pool = h.pool();
    let dummy = pool.dummy();
    let t = h.index;
    // SAFETY: the caller is the owner of every page on `h`'s lists.
    unsafe {
        loop {
            let cur = h.hl(|l| l.current[class]);
            if cur != dummy {
                let m = &*cur;
                if !local(m, |p| p.free).is_null() {
                    return Some(m);
                }
                // Slow-path entry for this page: boundary flush.
                flush_page(h, m, Some(FlushReason::Boundary));
                let n = page::drain(m, t);
                if n > 0 {
                    h.counters.drains.inc();
                    h.counters.drained_blocks.add_local(n as u64);
                    return Some(m);
                }
                let bs = local(m, |p| p.block_size);
                if page::carve(m, t, page::carve_batch(bs)) > 0 {
                    return Some(m);
                }
                // Exhausted: PageFull, unless remote frees arrived.
                if page::try_mark_full(m) {
                    local(m, |p| {
                        p.list = PageList::Full;
                        p.used |= IN_FULL_BIAS;
                    });
                    h.hl(|l| {
                        l.current[class] = dummy;
                        l.full[class].push_back(cur);
                    });
                    if B::OBSERVE {
                        B::observe(&Event::PageFull {
                            t,
                            ss: m.header() as usize,
                            slot: m.index() as u8,
                        });
                    }
                }
                continue;
            }
            if h.owner.full_hint.load(Ordering::Relaxed) != 0 {
                process_full_hint(h);
            }
            if let Some(p) = h.hl(|l| l.partial[class].pop_front()) {
                set_current(
                    h,
                    class,
                    p,
                    Event::SetCurrent {
                        t,
                        class: class as u8,
                        ss: (*p).header() as usize,
                        slot: (*p).index() as u8,
                    },
                );
                continue;
            }
            if !pool.abandoned[class].load(Ordering::Relaxed).is_null() {
                reclaim(h, class);
                continue;
            }
            let claimant = Claimant {
                owner: Heap::as_owner(h),
                t,
            };
            let m = pool.acquire(claimant, class)?;
            take_claimed(h, class, m);
        }
    }
}

/// Makes `m` the current page of `class` and reports `ev`.
///
/// # Safety
/// `h` owns `m`; the current slot of `class` is the dummy page.
unsafe fn set_current<B: Backend>(h: &Heap<B>, class: usize, m: *mut SlotMeta<B>, ev: Event) {
    // SAFETY: forwarded contract.
    unsafe {
        local(&*m, |p| p.list = PageList::Current);
        h.hl(|l| {
            debug_assert_eq!(l.current[class], h.pool().dummy());
            l.current[class] = m;
        });
    }
    if B::OBSERVE {
        B::observe(&ev);
    }
}

/// Installs a freshly claimed slot as the current page (right after
/// `Pool::acquire` returns it).
///
/// # Safety
/// `h`'s thread just claimed `m`.
unsafe fn take_claimed<B: Backend>(h: &Heap<B>, class: usize, m: &SlotMeta<B>) {
    // SAFETY: forwarded contract.
    unsafe {
        page::init_claimed(m, class);
        local(m, |p| p.list = PageList::Current);
        h.hl(|l| {
            debug_assert_eq!(l.current[class], h.pool().dummy());
            l.current[class] = m as *const _ as *mut _;
        });
    }
}

/// Moves every full page with remote frees to the partial list (`Unfull`).
///
/// # Safety
/// The caller is `h`'s thread.
unsafe fn process_full_hint<B: Backend>(h: &Heap<B>) {
    // The notification is consumed *before* the pages it announces are
    // looked at: a free that lands on a full page after the scan passed it
    // sets the hint again, so it is seen next time.
    let late = B::MUTANT == Mutant::DrainBeforeOwnershipChange;
    if late {
        // Wrong: only read here, cleared after the scan (below).
        if h.owner.full_hint.load(Ordering::SeqCst) == 0 {
            return;
        }
    } else if h.owner.full_hint.swap(0, Ordering::SeqCst) == 0 {
        return;
    }
    for class in 0..NUM_CLASSES {
        // SAFETY: owner of the pages on its lists.
        unsafe {
            let mut m = h.hl(|l| l.full[class].head);
            while !m.is_null() {
                let next = local(&*m, |p| p.next);
                if page::full_page_has_remote(&*m) {
                    unfull(h, class, m, true);
                }
                m = next;
            }
        }
    }
    if late {
        // A free that hinted after its page was scanned is forgotten: its
        // block is stranded on a full page the owner never looks at again.
        h.owner.full_hint.store(0, Ordering::SeqCst);
    }
}

/// Moves full page `m` to the partial list (`Unfull`; `report = false`
/// when the move is part of a local free, which reports `FreeLocal` only).
///
/// # Safety
/// `h` owns `m`, which is on its full list.
unsafe fn unfull<B: Backend>(h: &Heap<B>, class: usize, m: *mut SlotMeta<B>, report: bool) {
    // SAFETY: forwarded contract.
    unsafe {
        page::clear_full_mark(&*m);
        h.hl(|l| {
            l.full[class].remove(m);
            l.partial[class].push_back(m);
        });
        local(&*m, |p| {
            p.list = PageList::Partial;
            p.used &= !IN_FULL_BIAS;
        });
    }
    if B::OBSERVE && report {
        // SAFETY: `m` is owned and live.
        let mm = unsafe { &*m };
        B::observe(&Event::Unfull {
            t: h.index,
            ss: mm.header() as usize,
            slot: mm.index() as u8,
        });
    }
}

/// `Reclaim`: swaps out the whole abandoned list of `class` and adopts each
/// page into the partial list.
///
/// # Safety
/// The caller is `h`'s thread.
unsafe fn reclaim<B: Backend>(h: &Heap<B>, class: usize) {
    let pool = h.pool();
    let mut m = if B::MUTANT == Mutant::AbandonedPopOneByOne {
        // Wrong (mimalloc 683d8998): one page popped with a CAS on the head
        // it read `next` from, which another reclaimer may have popped and
        // a later abandon pushed back meanwhile (ABA).
        let head = &pool.abandoned[class];
        let mut top = head.load(Ordering::Acquire);
        loop {
            if top.is_null() {
                return;
            }
            // SAFETY: abandoned pages are Active, so mapped (mutant only).
            let next = unsafe { (*top).next_abandoned.load(Ordering::Relaxed) };
            match head.compare_exchange(top, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => break,
                Err(x) => top = x,
            }
        }
        // SAFETY: as above.
        unsafe { (*top).next_abandoned.store(null_mut(), Ordering::Relaxed) };
        top
    } else {
        pool.abandoned[class].swap(null_mut(), Ordering::AcqRel)
    };
    if m.is_null() {
        return;
    }
    let mut n = 0u32;
    if B::OBSERVE {
        let mut c = m;
        while !c.is_null() {
            n += 1;
            // SAFETY: the swap made the list ours; its pages are live
            // (abandoned pages are Active).
            c = unsafe { (*c).next_abandoned.load(Ordering::Relaxed) };
        }
        B::observe(&Event::Reclaim {
            t: h.index,
            class: class as u8,
            n,
        });
    }
    pool.counters.reclaims.add(1);
    while !m.is_null() {
        // SAFETY: as above; the Acquire swap ordered the previous owner's
        // accesses to the page's owner-local state before ours.
        unsafe {
            let mm = &*m;
            let next = mm.next_abandoned.load(Ordering::Relaxed);
            mm.next_abandoned.store(null_mut(), Ordering::Relaxed);
            mm.owner.store(Heap::as_owner(h), Ordering::Release);
            local(mm, |p| p.list = PageList::Partial);
            h.hl(|l| l.partial[class].push_back(m));
            m = next;
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
    // full-list bias.
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
/// is ≤ 0, or the old one carried [`IN_FULL_BIAS`]).
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
            let used = p.used & !IN_FULL_BIAS;
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

#[cold]
#[inline(never)]
fn double_free(ptr: *mut u8) -> ! {
    crate::fatal!(
        "free(): invalid pointer {:p} (double free: already free)",
        ptr
    )
}

#[cold]
#[inline(never)]
unsafe fn free_not_small(ptr: *mut u8) {
    if ptr.is_null() {
        return;
    }
    match chunkmap::kind(ptr as usize) {
        // SAFETY: forwarded contract (large validates its own header).
        chunkmap::ChunkKind::Large => unsafe { crate::large::free(ptr, "free") },
        _ => crate::fatal!(
            "free(): invalid pointer {:p} (not allocated by hakmem, or already freed)",
            ptr
        ),
    }
}

/// Validates a free of `ptr` into slot `m` by a non-owner and returns the
/// class: the slot must be `Active` and `ptr` on a block boundary.
fn validate_foreign<B: Backend>(m: &SlotMeta<B>, ptr: *mut u8) -> usize {
    let class = match m.state() {
        SlotState::Active(c) => c as usize,
        SlotState::Empty(_) | SlotState::Purging(_) => crate::fatal!(
            "free(): invalid pointer {:p} (double free: its page is empty)",
            ptr
        ),
        SlotState::Unused => {
            crate::fatal!(
                "free(): invalid pointer {:p} (not allocated by hakmem)",
                ptr
            )
        }
    };
    let area = m.area() as usize;
    let addr = ptr as usize;
    if addr < area || (addr - area) % block_size(class) != 0 {
        crate::fatal!(
            "free(): invalid pointer {:p} (not the start of a {}-byte block)",
            ptr,
            block_size(class)
        );
    }
    class
}

/// The free of a block whose page `mp` the caller's heap does not own.
///
/// Arguments in this order so that `ptr` stays in the first argument
/// register from the fast path's entry (no moves before the tail call).
///
/// # Safety
/// `mp` is the slot metadata of `ptr`'s chunk, a live SuperSlab.
#[cold]
#[inline(never)]
unsafe fn free_remote<B: Backend>(ptr: *mut u8, heap: *mut Heap<B>, mp: *mut SlotMeta<B>) {
    let block_value: *mut u8 = core::ptr::with_exposed_provenance_mut(ptr.addr());
    // SAFETY: the block is live, so its slot is Active and mapped until the
    // push below; `m` is not used after it (a raw pointer argument, so the
    // page may be emptied and its SuperSlab unmapped right after the push).
    let m = unsafe { &*mp };
    let class = validate_foreign(m, ptr);
    // SAFETY: the caller's heap pointer is live or the static empty heap.
    let h = unsafe { &*heap };
    if B::MUTANT == Mutant::OwnerFromCurrentThread && !h.pool.is_null() {
        // Wrong: treats the block as the current heap's own.
        // SAFETY: deliberately broken (mutant only).
        unsafe {
            m.local.with_mut(|p| {
                B::store_link(ptr.cast(), (*p).free);
                (*p).free = block_value;
                (*p).used = (*p).used.wrapping_sub(1);
            })
        };
        return;
    }
    let block = if B::OBSERVE {
        page::block_index(m, ptr, block_size(class) as u32)
    } else {
        0
    };
    let (ss, slot) = (m.header() as usize, m.index() as u8);
    if !h.pool.is_null() {
        h.counters.remote_frees[class].inc();
    } else {
        crate::stats::count_heapless_remote_free(class);
    }
    // SAFETY: `ptr` is a live block of the Active page (validated), given up
    // by the caller.
    let hinted = unsafe { page::push_remote(mp, ptr, block_value) };
    if B::OBSERVE {
        B::observe(&Event::FreeRemote {
            t: h.index,
            ss,
            slot,
            block,
            // SAFETY: heaps are never freed.
            hinted: (!hinted.is_null()).then(|| unsafe { (*Heap::from_owner(hinted)).index }),
        });
    }
}

/// The local free's cold part: `used` (after the decrement) is 0, carries
/// the full-list bias, or underflowed.
///
/// `pushed = false`: `ptr` is already its page's free-list head (a double
/// free, reported).
///
/// # Safety
/// `heap` owns `ptr`'s page; `ptr` was just pushed on its free list.
///
/// `extern "C"`: a function that cannot unwind, so the C API's exported
/// `free` calls it without a landing pad, as a tail call.
#[cold]
#[inline(never)]
unsafe extern "C" fn free_local_cold<B: Backend>(ptr: *mut u8, heap: *mut Heap<B>, pushed: bool) {
    if !pushed {
        double_free(ptr);
    }
    let mp = slot_of::<B>(ptr);
    // SAFETY: owner (forwarded). `mp` stays a raw pointer: `page_empty` may
    // release (unmap) its SuperSlab.
    unsafe {
        let h = &*heap;
        let m = &*mp;
        let used = local(m, |p| p.used);
        let (list, class) = local(m, |p| (p.list, p.class as usize));
        if used & IN_FULL_BIAS != 0 && list == PageList::Full {
            // A local free to a full page: back to the partial list, as part
            // of the `FreeLocal` step (no `Unfull` of its own: protocol.md).
            unfull(h, class, mp, false);
            if used & !IN_FULL_BIAS != 0 {
                if let Some(k) = B::FLUSH_THRESHOLD {
                    threshold_flush(h, m, k);
                }
                return;
            }
        } else if used != 0 {
            local(m, |p| p.used = p.used.wrapping_add(1));
            crate::fatal!(
                "free(): invalid pointer {:p} (double free: its page has no block in use)",
                ptr
            );
        }
        // used == 0: the page is empty. Keep it if it is the current page
        // (the next malloc of the class will want it); else give it back.
        if local(m, |p| p.list) == PageList::Current {
            if let Some(k) = B::FLUSH_THRESHOLD {
                threshold_flush(h, m, k);
            }
            return;
        }
        page_empty(h, mp);
    }
}

/// `PageEmpty`: the page (used == 0) leaves the heap and its slot becomes
/// `Empty`, with an entry on stage 1.
///
/// # Safety
/// `h` owns `m` and `used == 0`.
///
/// `mp` is a raw pointer (not a reference argument): the SuperSlab may be
/// released and unmapped before this function returns.
pub(crate) unsafe fn page_empty<B: Backend>(h: &Heap<B>, mp: *mut SlotMeta<B>) {
    let pool = h.pool();
    // SAFETY: owner (forwarded); `m` is not used after the release below.
    let m = unsafe { &*mp };
    // SAFETY: owner (forwarded).
    let class = unsafe {
        let (list, class) = local(m, |p| (p.list, p.class as usize));
        match list {
            PageList::Current => h.hl(|l| l.current[class] = pool.dummy()),
            PageList::Partial => h.hl(|l| l.partial[class].remove(mp)),
            PageList::Full => {
                page::clear_full_mark(m);
                h.hl(|l| l.full[class].remove(mp))
            }
            PageList::None => {}
        }
        local(m, |p| {
            p.list = PageList::None;
            p.used &= !IN_FULL_BIAS;
            debug_assert_eq!(p.used, 0);
            p.free = null_mut();
        });
        flush_page(h, m, None);
        class
    };
    debug_assert_eq!(m.used.load(Ordering::Relaxed), 0);
    debug_assert!(m.remote().load(Ordering::Relaxed).is_null());
    // SAFETY: the slot is still Active, so the SuperSlab is live.
    let ss: &SsHeader<B> = unsafe { &*m.header() };
    let slot = m.index();
    m.owner.store(null_mut(), Ordering::Relaxed);
    // Hold off a release to the OS until the stage-1 entry is pushed.
    pool.readers.fetch_add(1, Ordering::SeqCst);
    ss.mark_empty(slot);
    ss.active_slots.fetch_sub(1, Ordering::AcqRel);
    m.empty_since.store(pool.now_ms(), Ordering::Relaxed);
    pool.dirty_empty.fetch_add(1, Ordering::Relaxed);
    m.state
        .store(SlotState::Empty(class as u8).word(), Ordering::SeqCst);
    // SAFETY: `mp` is the slot we just made Empty; `readers` holds off a
    // release of its SuperSlab until the push is done.
    let source = unsafe { pool.stage1.push(class, mp) };
    pool.readers.fetch_sub(1, Ordering::SeqCst);
    pool.counters.pages_emptied.add(1);
    if source == crate::stage1::Source::Fallback {
        pool.counters.fallback_pushes.add(1);
    }
    if B::OBSERVE {
        B::observe(&Event::PageEmpty {
            t: h.index,
            ss: ss.base(),
            slot: slot as u8,
            entry: source,
        });
    }
    let ssp = m.header();
    pool.after_page_empty(ssp);
}

// ------------------------------------------------------------- thread exit --

/// Thread exit: every page is drained and either emptied or abandoned;
/// then `ThreadExit`.
///
/// # Safety
/// The caller is `h`'s thread, and never uses `h` again.
pub(crate) unsafe fn exit<B: Backend>(h: &Heap<B>) {
    let dummy = h.pool().dummy();
    for class in 0..NUM_CLASSES {
        // SAFETY: owner of its pages.
        unsafe {
            // Full pages with remote frees go back to partial first
            // (`Unfull`): they are drained below, and only a page off the
            // full list may be drained.
            let mut m = h.hl(|l| l.full[class].head);
            while !m.is_null() {
                let next = local(&*m, |p| p.next);
                if page::full_page_has_remote(&*m) {
                    unfull(h, class, m, true);
                }
                m = next;
            }
            let cur = h.hl(|l| core::mem::replace(&mut l.current[class], dummy));
            if cur != dummy {
                local(&*cur, |p| p.list = PageList::None);
                abandon_page(h, cur);
            }
            while let Some(m) = h.hl(|l| l.partial[class].pop_front()) {
                local(&*m, |p| p.list = PageList::None);
                abandon_page(h, m);
            }
            while let Some(m) = h.hl(|l| l.full[class].pop_front()) {
                page::clear_full_mark(&*m);
                local(&*m, |p| {
                    p.list = PageList::None;
                    p.used &= !IN_FULL_BIAS;
                });
                abandon_page(h, m);
            }
        }
    }
    h.owner.full_hint.store(0, Ordering::Relaxed);
    if B::OBSERVE {
        B::observe(&Event::ThreadExit { t: h.index });
    }
    h.alive.store(0, Ordering::Release);
}

/// Drains `m`, then empties it (used == 0) or abandons it (`Abandon`).
///
/// # Safety
/// `h` owns `m`, which is on no list and carries no full mark.
unsafe fn abandon_page<B: Backend>(h: &Heap<B>, mp: *mut SlotMeta<B>) {
    let pool = h.pool();
    // SAFETY: owner (forwarded); `m` is not used after `page_empty`.
    let m = unsafe { &*mp };
    // SAFETY: owner (forwarded).
    unsafe {
        let n = page::drain(m, h.index);
        if n > 0 {
            h.counters.drains.inc();
            h.counters.drained_blocks.add_local(n as u64);
        }
        if local(m, |p| p.used) == 0 {
            page_empty(h, mp);
            return;
        }
        flush_page(h, m, None);
    }
    let class = match m.state() {
        SlotState::Active(c) => c as usize,
        s => unreachable!("abandoning a slot in state {s:?}"),
    };
    if B::MUTANT != Mutant::AbandonKeepsOwner {
        m.owner.store(null_mut(), Ordering::Release);
    }
    let head = &pool.abandoned[class];
    let mut top = head.load(Ordering::Relaxed);
    loop {
        m.next_abandoned.store(top, Ordering::Relaxed);
        match head.compare_exchange_weak(top, mp, Ordering::Release, Ordering::Relaxed) {
            Ok(_) => break,
            Err(x) => top = x,
        }
    }
    pool.counters.abandoned.add(1);
    if B::OBSERVE {
        B::observe(&Event::Abandon {
            t: h.index,
            ss: m.header() as usize,
            slot: m.index() as u8,
        });
    }
}

const _: () = assert!(SLOTS <= 32);
