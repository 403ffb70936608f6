//! A page: the owner's view of an `Active` slot. Owner-local free list with
//! bump carving, the remote-free list (lock-free LIFO, drained whole by the
//! owner), the full-page mark, and the deferred accounting (delta flush).
//!
//! # The remote head word
//!
//! `SlotMeta::remote` holds the address of the newest remote-freed block,
//! with two marks in its low bits (blocks are 16-aligned) and the list's
//! length in its top bits (below):
//!
//! - `FULL`: the page is on its owner's full list and wants a hint. Set by
//!   the owner with `CAS(empty → FULL)` (this CAS is the `PageFull`
//!   linearization point: it succeeds only if the remote list is empty, the
//!   "re-check" of protocol.md done atomically).
//! - `BUSY`: a remote freer saw `FULL` and reserved the word to hint the
//!   owner. While `BUSY` the freer still holds its block (so the page cannot
//!   be emptied or released and its metadata stays valid), reads `owner`,
//!   sets the owner heap's `full_hint` (heaps are never freed), then
//!   publishes its block with a plain `store`, which clears both marks. The
//!   owner waits (spins) for `BUSY` to clear before it unfulls or abandons
//!   the page; `owner` cannot change while `FULL` or `BUSY` is set.
//!
//! A freer that sees no mark pushes with one CAS (Release). This is
//! mimalloc's "delayed free" state machine, folded into the remote head so
//! that the freer never reads the page after its block is published.
//!
//! The word's top 16 bits ([`COUNT_SHIFT`]) hold the number of blocks on
//! the list: each push writes its block's address with the count it read
//! plus one, in the same CAS (blocks lie in SuperSlabs, which the chunk
//! map only takes below 2^[`ADDR_BITS`](crate::chunkmap::ADDR_BITS) = 2^48). So the owner's drain learns `n` from the word it
//! swapped out and does not walk the list to count it — a walk is a chain of
//! dependent loads, each a line the freeing core wrote last. When the free
//! list is empty (the refill path, always) the drained list simply becomes
//! the free list; only a drain onto a non-empty free list (abandon) walks
//! to the tail.

use crate::observe::{Event, FlushReason};
use crate::size_class::{block_size, capacity};
pub use crate::superslab::{PageList, PageLocal};
use crate::superslab::{PageOwner, SlotMeta, SsHeader};
use crate::sync::{AtomicIntOps, AtomicOps, Backend, CellOps, Mutant, Ordering};
use core::ptr::{self, null_mut};

/// Remote head mark: the page is on its owner's full list.
pub const FULL: usize = 1;
/// Remote head mark: a freer is hinting the owner.
pub const BUSY: usize = 2;
const MARKS: usize = FULL | BUSY;
/// The remote head word's list length lives in its bits `COUNT_SHIFT..`.
pub const COUNT_SHIFT: u32 = 48;
/// One block in the remote head word's count.
const COUNT_ONE: usize = 1 << COUNT_SHIFT;
/// The remote head word's address bits.
const ADDR_MASK: usize = (COUNT_ONE - 1) & !MARKS;

const _: () = assert!(usize::BITS == 64, "hakmem needs 64-bit addresses");
const _: () = assert!(crate::chunkmap::ADDR_BITS <= COUNT_SHIFT);
// The longest list (every block of a 64 KiB slot, 16 bytes each) fits.
const _: () = assert!(crate::size_class::SLOT_SIZE / 16 < 1 << (64 - COUNT_SHIFT));

/// The first block of the list a remote head word holds (marks and count
/// stripped), null when the list is empty.
#[inline(always)]
pub fn remote_list_head(word: *mut u8) -> *mut u8 {
    word.map_addr(|a| a & ADDR_MASK)
}

/// The number of blocks on the list a remote head word holds.
#[inline(always)]
pub fn remote_list_len(word: *mut u8) -> u32 {
    (word.addr() >> COUNT_SHIFT) as u32
}

/// Follows the links from `head` (non-null) to the last block of the list;
/// returns it and the list's length.
///
/// # Safety
/// The caller owns the list (swapped out of a remote word, or the
/// owner's free list) and every link on it is visible to it.
unsafe fn walk_to_tail<B: Backend>(head: *mut u8) -> (*mut u8, u32) {
    let mut n = 1u32;
    let mut tail = head;
    loop {
        // SAFETY: forwarded contract.
        let nx = unsafe { B::load_link(tail.cast()) };
        if nx.is_null() {
            return (tail, n);
        }
        tail = nx;
        n += 1;
    }
}

/// Exclusive access to a page's owner-local state.
///
/// # Safety
/// The caller is the page's owner (or holds it exclusively: claim, reclaim,
/// abandon), so no other access to the cell overlaps.
#[inline(always)]
pub(crate) unsafe fn local<B: Backend, R>(
    meta: &SlotMeta<B>,
    f: impl FnOnce(&mut PageLocal<B>) -> R,
) -> R {
    // SAFETY: forwarded contract: only the owner reaches here.
    meta.local.with_mut(|p| f(unsafe { &mut *p }))
}

/// Block index of `block` in its page (observer and snapshot use).
pub fn block_index<B: Backend>(meta: &SlotMeta<B>, block: *mut u8, bs: u32) -> u32 {
    ((block as usize - meta.area() as usize) / bs as usize) as u32
}

/// Resets the owner-local state of a freshly claimed slot.
///
/// # Safety
/// The caller just claimed the slot (its CAS won), so it owns it.
pub(crate) unsafe fn init_claimed<B: Backend>(meta: &SlotMeta<B>, class: usize) {
    let slot = meta.index();
    // SAFETY: forwarded contract.
    unsafe {
        local(meta, |p| {
            *p = PageLocal::new();
            p.class = class as u8;
            p.block_size = block_size(class) as u32;
            p.capacity = capacity(class, slot);
        })
    };
    if B::MUTANT == Mutant::CountBeforePush {
        meta.empty_since.store(0, Ordering::Relaxed);
    }
    debug_assert_eq!(meta.used.load(Ordering::Relaxed), 0);
    debug_assert!(meta.remote().load(Ordering::Relaxed).is_null());
}

/// `Carve`: bumps up to `max` fresh blocks onto the free list (in address
/// order, lowest first). Returns the number carved.
///
/// # Safety
/// The caller owns the page.
pub(crate) unsafe fn carve<B: Backend>(meta: &SlotMeta<B>, t: u32, max: u32) -> u32 {
    let area = meta.area();
    // SAFETY: owner (forwarded); the carved blocks lie in this slot's block
    // area, untouched since the claim reset `carved`, owned by the page.
    let n = unsafe {
        local(meta, |p| {
            let n = (p.capacity - p.carved).min(max);
            if n == 0 {
                return 0;
            }
            let bs = p.block_size as usize;
            let first = area.add(p.carved as usize * bs);
            let mut b = first;
            for _ in 1..n {
                let nx = b.add(bs);
                B::store_link(b.cast(), nx);
                b = nx;
            }
            B::store_link(b.cast(), p.free);
            p.free = first;
            p.carved += n;
            n
        })
    };
    if B::OBSERVE && n > 0 {
        B::observe(&Event::Carve {
            t,
            ss: meta.header() as usize,
            slot: meta.index() as u8,
            n,
        });
    }
    n
}

/// How many blocks to carve at once: about 4 KiB worth, at least 4.
#[inline]
pub(crate) fn carve_batch(bs: u32) -> u32 {
    (4096 / bs).max(4)
}

/// `Drain`: takes the whole remote list (`swap(null, Acquire)`) and puts it
/// on top of the free list; `used -= n`, with `n` read from the swapped-out
/// word (no walk). Returns `n`.
///
/// # Safety
/// The caller owns the page and the remote word carries no `FULL`/`BUSY`
/// mark (the page is not marked full).
pub(crate) unsafe fn drain<B: Backend>(meta: &SlotMeta<B>, t: u32) -> u32 {
    if B::MUTANT == Mutant::CountBeforePush {
        // SAFETY: forwarded contract.
        return unsafe { drain_counted(meta, t) };
    }
    if meta.remote().load(Ordering::Relaxed).is_null() {
        return 0;
    }
    let word = meta.remote().swap(null_mut(), Ordering::Acquire);
    debug_assert_eq!(word.addr() & MARKS, 0, "drain of a marked remote word");
    let (head, n) = (remote_list_head(word), remote_list_len(word));
    debug_assert_eq!(head.is_null(), n == 0, "remote count and list disagree");
    if n == 0 {
        return 0;
    }
    // SAFETY: the swap made the list ours; every block on it was pushed with
    // Release (and its link written before), so its link is visible; the
    // owner-local state is ours.
    unsafe {
        #[cfg(debug_assertions)]
        debug_assert_eq!(walk_to_tail::<B>(head).1, n, "remote count is wrong");
        let free = local(meta, |p| p.free);
        if !free.is_null() {
            let (tail, _) = walk_to_tail::<B>(head);
            B::store_link(tail.cast(), free);
        }
        local(meta, |p| {
            p.free = head;
            debug_assert!(p.live() >= n, "drain of more blocks than used");
            p.used -= n;
            p.drained += n;
        });
    }
    // Part of `Drain` (protocol.md): a drain may move `delta` past the
    // threshold at once; flush it then (never with the production
    // threshold, the capacity, which bounds `|delta|` structurally).
    if let Some(k) = B::FLUSH_THRESHOLD {
        // SAFETY: the caller owns the page.
        unsafe {
            let cap = local(meta, |p| p.capacity);
            if delta(meta).unsigned_abs() > k.min(cap) {
                flush(meta, t, None);
            }
        }
    }
    if B::OBSERVE {
        B::observe(&Event::Drain {
            t,
            ss: meta.header() as usize,
            slot: meta.index() as u8,
            n,
        });
    }
    n
}

/// The `CountBeforePush` mutant's drain (rpmalloc #281): the owner trusts
/// a remote-free counter (here `empty_since`, unused while the slot is
/// `Active`) that freers bump *before* their push, instead of the count
/// the push itself carries, so it may count a block that is not on the
/// list yet and see the page empty under a late free.
///
/// # Safety
/// As [`drain`].
#[cold]
unsafe fn drain_counted<B: Backend>(meta: &SlotMeta<B>, t: u32) -> u32 {
    let counted = meta.empty_since.swap(0, Ordering::AcqRel) as u32;
    let head = remote_list_head(meta.remote().swap(null_mut(), Ordering::Acquire));
    // SAFETY: as in `drain`.
    let n = unsafe {
        let mut n = 0u32;
        if !head.is_null() {
            let (tail, len) = walk_to_tail::<B>(head);
            n = len;
            local(meta, |p| {
                B::store_link(tail.cast(), p.free);
                p.free = head;
            });
        }
        local(meta, |p| {
            p.used = p.used.wrapping_sub(counted);
            p.drained += counted;
        });
        n
    };
    if B::OBSERVE && n > 0 {
        B::observe(&Event::Drain {
            t,
            ss: meta.header() as usize,
            slot: meta.index() as u8,
            n,
        });
    }
    n
}

/// `Flush`: publishes the owner's pending delta to the slot's shared used
/// and the SuperSlab's `total_active`. `reason: None` = the flush that is
/// part of another step (PageFull, PageEmpty, Abandon): no event of its own.
///
/// # Safety
/// The caller owns the page.
pub(crate) unsafe fn flush<B: Backend>(meta: &SlotMeta<B>, t: u32, reason: Option<FlushReason>) {
    // SAFETY: owner (forwarded).
    let delta = unsafe {
        local(meta, |p| {
            let used = p.live();
            let d = used.wrapping_sub(p.flushed);
            p.flushed = used;
            d
        })
    };
    if delta == 0 {
        return;
    }
    meta.used.fetch_add(delta, Ordering::Release);
    if B::MUTANT != Mutant::ReleaseWithoutFlush || reason.is_some() {
        // SAFETY: the slot is Active, so its SuperSlab is live.
        let h: &SsHeader<B> = unsafe { &*meta.header() };
        h.total_active.fetch_add(delta, Ordering::Release);
    }
    if B::OBSERVE {
        if let Some(reason) = reason {
            B::observe(&Event::Flush {
                t,
                ss: meta.header() as usize,
                slot: meta.index() as u8,
                reason,
                delta: delta as i32,
            });
        }
    }
}

/// The page's pending delta (`used - shared used`).
///
/// # Safety
/// The caller owns the page.
#[inline]
pub(crate) unsafe fn delta<B: Backend>(meta: &SlotMeta<B>) -> i32 {
    // SAFETY: owner (forwarded).
    unsafe { local(meta, |p| p.live().wrapping_sub(p.flushed) as i32) }
}

/// `PageFull`'s atomic part: marks the remote word `FULL` if and only if the
/// remote list is empty. `false` = remote frees arrived (drain instead).
pub(crate) fn try_mark_full<B: Backend>(meta: &SlotMeta<B>) -> bool {
    let full = ptr::without_provenance_mut::<u8>(FULL);
    if B::MUTANT == Mutant::PageFullNoRecheck {
        // Wrong: overwrites (and so loses) any remote frees pushed meanwhile.
        meta.remote().store(full, Ordering::SeqCst);
        return true;
    }
    meta.remote()
        .compare_exchange(null_mut(), full, Ordering::SeqCst, Ordering::Acquire)
        .is_ok()
}

/// Owner side of a full page: waits out a `BUSY` freer and clears `FULL`.
/// Afterwards the word is a plain list head (possibly empty).
pub(crate) fn clear_full_mark<B: Backend>(meta: &SlotMeta<B>) {
    let mut h = meta.remote().load(Ordering::Acquire);
    loop {
        if h as usize & BUSY != 0 {
            B::spin_hint();
            h = meta.remote().load(Ordering::Acquire);
            continue;
        }
        if h as usize & FULL == 0 {
            return;
        }
        let plain = h.map_addr(|a| a & !FULL);
        match meta
            .remote()
            .compare_exchange(h, plain, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => return,
            Err(x) => h = x,
        }
    }
}

/// Whether a full page has remote frees to take (waits out a `BUSY` freer).
pub(crate) fn full_page_has_remote<B: Backend>(meta: &SlotMeta<B>) -> bool {
    loop {
        let h = meta.remote().load(Ordering::Acquire);
        if h as usize & BUSY != 0 {
            B::spin_hint();
            continue;
        }
        return !remote_list_head(h).is_null();
    }
}

/// `FreeRemote`: pushes `block` on the page's remote list. Returns the
/// owner that was hinted (the page was marked full), null if none.
///
/// # Safety
/// `block` is a live block of the `Active` page `meta`, and the caller gives
/// it up (it must not touch it afterwards); `value` is the same address as
/// it goes on the list (with the SuperSlab's provenance; see `heap::free`).
pub(crate) unsafe fn push_remote<B: Backend>(
    meta: *const SlotMeta<B>,
    block: *mut u8,
    value: *mut u8,
) -> *mut PageOwner<B> {
    // SAFETY: the caller's block keeps the page Active (and mapped) until it
    // is published; `meta` is not used after the publishing store/CAS.
    let meta = unsafe { &*meta };
    debug_assert_eq!(block.addr(), value.addr());
    let publish = if B::MUTANT == Mutant::RemotePushRelaxed {
        Ordering::Relaxed
    } else {
        Ordering::Release
    };
    if B::MUTANT == Mutant::CountBeforePush {
        // Wrong: the counter the owner trusts is bumped before the push.
        meta.empty_since.fetch_add(1, Ordering::Release);
    }
    debug_assert!(value.addr() < COUNT_ONE, "block address above 2^48");
    // The word that publishes `block` on top of the list `h` holds.
    let top = |h: *mut u8| value.map_addr(|a| a | ((h.addr() & !(COUNT_ONE - 1)) + COUNT_ONE));
    let mut h = meta.remote().load(Ordering::Relaxed);
    loop {
        let marks = h as usize & MARKS;
        if marks & BUSY != 0 {
            B::spin_hint();
            h = meta.remote().load(Ordering::Relaxed);
            continue;
        }
        if marks == 0 {
            // SAFETY: the caller gave us the block.
            unsafe { B::store_link(block.cast(), remote_list_head(h)) };
            match meta
                .remote()
                .compare_exchange_weak(h, top(h), publish, Ordering::Relaxed)
            {
                Ok(_) => return null_mut(),
                Err(x) => h = x,
            }
        } else {
            // FULL: reserve the word, hint the owner, then publish.
            let busy = h.map_addr(|a| a | BUSY);
            match meta
                .remote()
                .compare_exchange(h, busy, Ordering::SeqCst, Ordering::Relaxed)
            {
                Ok(_) => {
                    let owner = meta.owner.load(Ordering::Acquire);
                    if !owner.is_null() {
                        // A swap, not a store: the same instruction as a
                        // SeqCst store on x86 (`xchg`), and loom orders
                        // read-modify-writes correctly, whereas it may place
                        // a plain store before the owner's earlier `swap(0)`
                        // in modification order (loom #282, #389: a false
                        // "stranded free" in `full_hint_vs_remote`).
                        // SAFETY: heaps are never freed (pooled per instance).
                        unsafe { (*owner).full_hint.swap(1, Ordering::SeqCst) };
                    }
                    // SAFETY: the caller gave us the block.
                    unsafe { B::store_link(block.cast(), remote_list_head(h)) };
                    meta.remote().store(top(h), publish);
                    return owner;
                }
                Err(x) => h = x,
            }
        }
    }
}
