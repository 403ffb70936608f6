//! Ownership across threads: thread exit drains every page and empties or
//! abandons it (`Abandon`), and a later refill of the class adopts the
//! abandoned pages (`Reclaim`).

use super::free_slow::page_empty;
use super::refill::unfull;
use super::{flush_page, Heap};
use crate::observe::Event;
use crate::page::{self, local, PageList};
use crate::size_class::{NUM_CLASSES, SLOTS};
use crate::superslab::{SlotMeta, SlotState};
use crate::sync::{AtomicOps, Backend, Mutant, Ordering};
use core::ptr::null_mut;

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
                local(&*cur, |p| p.set_list(PageList::None));
                abandon_page(h, cur);
            }
            while let Some(m) = h.hl(|l| l.partial[class].pop_front()) {
                local(&*m, |p| p.set_list(PageList::None));
                abandon_page(h, m);
            }
            while let Some(m) = h.hl(|l| l.full[class].pop_front()) {
                page::clear_full_mark(&*m);
                local(&*m, |p| p.set_list(PageList::None));
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

/// `Reclaim`: swaps out the whole abandoned list of `class` and adopts each
/// page into the partial list.
///
/// # Safety
/// The caller is `h`'s thread.
pub(super) unsafe fn reclaim<B: Backend>(h: &Heap<B>, class: usize) {
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
            local(mm, |p| p.set_list(PageList::Partial));
            h.hl(|l| l.partial[class].push_back(m));
            m = next;
        }
    }
}
