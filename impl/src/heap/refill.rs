//! The malloc slow path: `refill` finds the current page of a class a free
//! block, from the page itself (flush, drain, carve), the full hint, the
//! partial list, the abandoned list (`abandon::reclaim`) and last the pool's
//! acquisition stages.

use super::abandon::reclaim;
use super::{flush_page, pop, Heap};
use crate::observe::{Event, FlushReason};
use crate::page::{self, local, PageList};
use crate::pool::Claimant;
use crate::size_class::NUM_CLASSES;
use crate::superslab::SlotMeta;
use crate::sync::{AtomicOps, Backend, CellOps, Mutant, Ordering};
use core::ptr::null_mut;

/// The slow path of [`alloc`](super::alloc): refill the current page. (The global
/// allocator's static empty heap, which has no instance, never gets here:
/// its slow path is `global`'s, which creates the thread's heap.)
///
/// # Safety
/// As [`alloc`](super::alloc); `heap` belongs to an instance.
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
                    local(m, |p| p.set_list(PageList::Full));
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
        local(&*m, |p| p.set_list(PageList::Current));
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
        local(m, |p| p.set_list(PageList::Current));
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
pub(super) unsafe fn unfull<B: Backend>(
    h: &Heap<B>,
    class: usize,
    m: *mut SlotMeta<B>,
    report: bool,
) {
    // SAFETY: forwarded contract.
    unsafe {
        page::clear_full_mark(&*m);
        h.hl(|l| {
            l.full[class].remove(m);
            l.partial[class].push_back(m);
        });
        local(&*m, |p| p.set_list(PageList::Partial));
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
