//! The free slow paths: a remote free (validated, pushed on the page's
//! remote list), the local free whose page becomes empty or leaves the full
//! list, a double free, a large or foreign pointer, and `PageEmpty`.

use super::refill::unfull;
use super::{flush_page, threshold_flush, Heap};
use crate::chunkmap;
use crate::observe::Event;
use crate::page::{self, local, PageList};
use crate::size_class::block_size;
use crate::superslab::{slot_of, SlotMeta, SlotState, SsHeader, IN_FULL_BIAS};
use crate::sync::{AtomicIntOps, AtomicOps, Backend, CellOps, Mutant, Ordering};
use core::ptr::null_mut;

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
pub(super) unsafe fn free_not_small(ptr: *mut u8) {
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
pub(super) unsafe fn free_remote<B: Backend>(
    ptr: *mut u8,
    heap: *mut Heap<B>,
    mp: *mut SlotMeta<B>,
) {
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
pub(super) unsafe extern "C" fn free_local_cold<B: Backend>(
    ptr: *mut u8,
    heap: *mut Heap<B>,
    pushed: bool,
) {
    if !pushed {
        double_free(ptr);
    }
    let mp = slot_of::<B>(ptr);
    // SAFETY: owner (forwarded). `mp` stays a raw pointer: `page_empty` may
    // release (unmap) its SuperSlab.
    unsafe {
        let h = &*heap;
        let m = &*mp;
        let (used, list, class) = local(m, |p| (p.used, p.list, p.class as usize));
        match list {
            PageList::Full if used & IN_FULL_BIAS != 0 => {
                // A local free to a full page: back to the partial list, as
                // part of the `FreeLocal` step (no `Unfull` of its own:
                // protocol.md).
                unfull(h, class, mp, false);
                if used & !IN_FULL_BIAS != 0 {
                    if let Some(k) = B::FLUSH_THRESHOLD {
                        threshold_flush(h, m, k);
                    }
                    return;
                }
            }
            // The page is empty; it leaves the heap. (A current page never
            // gets here empty: its bias keeps `used` above 0.)
            PageList::Partial | PageList::None if used == 0 => {}
            _ => {
                // The count went below zero (a current page's below its
                // bias): more frees than blocks in use.
                local(m, |p| p.used = p.used.wrapping_add(1));
                crate::fatal!(
                    "free(): invalid pointer {:p} (double free: its page has no block in use)",
                    ptr
                );
            }
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
pub(super) unsafe fn page_empty<B: Backend>(h: &Heap<B>, mp: *mut SlotMeta<B>) {
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
            p.set_list(PageList::None);
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
