//! Unit tests of the large-block layer, on private instances (their own
//! cache and counters) so that they run in parallel and under Miri
//! (`cargo +nightly miri test -p hakmem --lib large`), where the OS layer is
//! served by `System` and big sizes are scaled down.

use super::policy::TAKE_SPAN;
use super::*;

/// The largest alignment and size exercised (Miri emulates every byte).
const MAX_ALIGN: usize = if cfg!(miri) { 1 << 20 } else { 64 << 20 };
const MAX_SIZE: usize = if cfg!(miri) { 1 << 20 } else { 64 << 20 };

/// Pattern bytes go on a grid of positions (every byte under Miri would be
/// slow) and at the last byte; `verify` checks the grid below `len`, so it
/// also checks a prefix of a longer fill.
const STEP: usize = if cfg!(miri) { 997 } else { 61 };

fn pattern(i: usize, seed: u8) -> u8 {
    seed.wrapping_add(i as u8) ^ (i >> 8) as u8
}

fn fill(p: *mut u8, len: usize, seed: u8) {
    for i in (0..len).step_by(STEP).chain(len.checked_sub(1)) {
        // SAFETY: `i < len` bytes of a live block.
        unsafe { p.add(i).write(pattern(i, seed)) };
    }
}

fn verify(p: *const u8, len: usize, seed: u8) {
    for i in (0..len).step_by(STEP) {
        // SAFETY: `i < len` bytes of a live block.
        assert_eq!(unsafe { p.add(i).read() }, pattern(i, seed), "byte {i}");
    }
}

fn all_zero(p: *const u8, len: usize) -> bool {
    // SAFETY: `len` bytes of a live block.
    unsafe { core::slice::from_raw_parts(p, len) }
        .iter()
        .all(|&b| b == 0)
}

/// An instance with an explicit cache budget and purge delay, and a manual
/// clock at 1000 ms.
fn instance(cache_bytes: usize, delay_ms: u64) -> Large {
    let l = Large::new(Some(cache_bytes), Some(delay_ms));
    l.manual_now.store(1000, Ordering::Relaxed);
    l
}

#[test]
fn class_table_is_increasing_with_bounded_steps() {
    for w in CLASS_PAGES.windows(2) {
        assert!(w[0] < w[1]);
        // At most 25% of rounding waste above 8 pages.
        assert!(w[1] - w[0] <= w[0].div_ceil(4).max(1), "{w:?}");
    }
    for pages in 1..=CACHE_MAX_PAGES {
        let c = class_ceil(pages).unwrap();
        assert!(CLASS_PAGES[c] >= pages);
        assert!(c == 0 || CLASS_PAGES[c - 1] < pages);
        let f = class_floor(pages).unwrap();
        assert!(CLASS_PAGES[f] <= pages);
        assert!(f + 1 == CACHE_CLASSES || CLASS_PAGES[f + 1] > pages);
    }
    assert_eq!(class_ceil(0), None);
    assert_eq!(class_ceil(CACHE_MAX_PAGES + 1), None);
    assert_eq!(class_floor(CACHE_MAX_PAGES + 1), None);
}

#[test]
fn plans() {
    let p = Plan::new(0, 1).unwrap();
    assert_eq!(
        (p.map_size, p.user_offset, p.class),
        (2 * OS_PAGE, OS_PAGE, Some(0))
    );
    // 9 pages round to the class of 10.
    let p = Plan::new(8 * OS_PAGE + 1, 16).unwrap();
    assert_eq!((p.map_size, p.class), (11 * OS_PAGE, Some(8)));
    // Above the cache: exact pages.
    let p = Plan::new((2 << 20) + 1, 4096).unwrap();
    assert_eq!((p.map_size, p.class), ((2 << 20) + 2 * OS_PAGE, None));
    // Over-aligned: the user pointer is `align` into the mapping.
    let p = Plan::new(100, 1 << 16).unwrap();
    assert_eq!(
        (p.map_size, p.map_align, p.user_offset, p.class),
        ((1 << 16) + OS_PAGE, 1 << 16, 1 << 16, None)
    );
    assert_eq!(Plan::new(usize::MAX, 1), None);
    assert_eq!(Plan::new(usize::MAX - OS_PAGE, 1), None);
    assert_eq!(
        Plan::new(1, 1 << 63),
        Some(Plan {
            map_size: (1 << 63) + OS_PAGE,
            map_align: 1 << 63,
            user_offset: 1 << 63,
            class: None
        })
    );
}

#[test]
fn sizes_and_alignments() {
    let l = instance(0, 0);
    let mut sizes = vec![0, 1, 4095, 4096, 4097, 9 * 4096 + 5, 1 << 20, (1 << 20) + 1];
    let mut s = 3 << 20;
    while s <= MAX_SIZE {
        sizes.push(s);
        s *= 4;
    }
    for (i, &size) in sizes.iter().enumerate() {
        let mut align = 1;
        while align <= MAX_ALIGN {
            // Big sizes with every alignment would map gigabytes: pair them
            // with a few alignments only.
            if size <= (1 << 20) || align == 1 || align == MAX_ALIGN {
                let zeroed = (i + align.trailing_zeros() as usize) % 2 == 0;
                let p = l.alloc(size, align, zeroed);
                assert!(!p.is_null(), "size {size} align {align}");
                assert_eq!(p as usize % align.max(OS_PAGE), 0);
                // SAFETY: a live block of `l`.
                let usable = unsafe { l.usable_size(p) };
                assert!(usable >= size.max(1), "size {size} usable {usable}");
                // Fresh mappings are zero whether asked or not.
                assert!(all_zero(
                    p,
                    size.min(if cfg!(miri) { 4096 } else { 1 << 16 })
                ));
                fill(p, size, i as u8);
                verify(p, size, i as u8);
                assert_eq!(l.check(p), Ok(()));
                // SAFETY: a live block of `l`, dropped here.
                unsafe { l.free(p, "free") };
            }
            // Miri emulates each byte and its chunk-map twin is a small
            // table: every fourth alignment there.
            align *= if cfg!(miri) { 16 } else { 2 };
        }
    }
    let st = l.stats();
    assert_eq!(st.allocs, st.frees);
    assert_eq!(st.mapped_bytes, 0);
    assert_eq!(st.mmap_calls, st.munmap_calls);
    assert_eq!(st.cache_hits, 0);
}

#[test]
fn bad_requests_give_null() {
    let l = instance(1 << 20, 100);
    assert!(l.alloc(100, 3, false).is_null());
    assert!(l.alloc(usize::MAX, 1, false).is_null());
    assert!(l.alloc(usize::MAX / 2, 4096, true).is_null());
    // An alignment the address space cannot give.
    assert!(l.alloc(1, 1 << 62, false).is_null());
    assert_eq!(l.stats().mapped_bytes, 0);
}

#[test]
fn cache_reuses_and_zeroes() {
    let l = instance(1 << 20, 100);
    let p = l.alloc(10_000, 8, false);
    fill(p, 10_000, 7);
    // SAFETY: live block of `l`.
    unsafe { l.free(p, "free") };
    let st = l.stats();
    assert_eq!(
        (st.cached_bytes, st.mmap_calls, st.munmap_calls),
        (4 * OS_PAGE as u64, 1, 0)
    );

    // Same class: the cached mapping comes back, zeroed on request.
    let q = l.alloc(9_000, 16, true);
    assert_eq!(q, p);
    assert!(all_zero(q, 9_000));
    fill(q, 9_000, 9);
    // SAFETY: live block of `l`.
    unsafe { l.free(q, "dealloc") };

    // Not zeroed on request: contents are whatever they were (not checked),
    // but the block is whole.
    let r = l.alloc(12_288, 1, false);
    assert_eq!(r, p);
    fill(r, 12_288, 1);
    verify(r, 12_288, 1);
    // SAFETY: live block of `l`.
    unsafe { l.free(r, "free") };

    let st = l.stats();
    assert_eq!(
        (st.allocs, st.cache_hits, st.mmap_calls, st.munmap_calls),
        (3, 2, 1, 0)
    );
    l.collect();
    let st = l.stats();
    assert_eq!(
        (st.cached_bytes, st.mapped_bytes, st.munmap_calls, st.purged),
        (0, 0, 1, 1)
    );
}

#[test]
fn cache_serves_from_up_to_take_span_classes_above() {
    let l = instance(4 << 20, 100);
    let small = l.alloc(OS_PAGE, 1, false); // class 0 (1 page)
    let huge = l.alloc(64 * OS_PAGE, 1, false); // class 19 (64 pages)
                                                // SAFETY: live blocks of `l`.
    unsafe {
        l.free(small, "free");
        l.free(huge, "free");
    }
    // 6 pages: class 5; classes 5..=13 (up to 24 pages) -> none cached (the
    // 1-page one is too small, the 64-page one too far above).
    let q = l.alloc(6 * OS_PAGE, 1, false);
    assert_ne!(q, small);
    assert_ne!(q, huge);
    // 20 pages: class 12; classes 12..=20 hold the 64-page mapping.
    let p = l.alloc(20 * OS_PAGE, 1, false);
    assert_eq!(p, huge);
    assert_eq!(TAKE_SPAN, 9, "the classes above are counted in this test");
    // Growth inside the mapping stays in place and keeps its pages (no
    // trim, although the 32-page tail beyond 30 pages is ≥ 64 KiB): the
    // mapping was resident in the cache already.
    let before = l.stats();
    // SAFETY: live block of `l`.
    let g = unsafe { l.realloc(p, 30 * OS_PAGE, 1) };
    assert_eq!(g, p);
    let after = l.stats();
    assert_eq!(after.mapped_bytes, before.mapped_bytes, "no trim on growth");
    assert_eq!(after.mremap_calls, before.mremap_calls);
    // A real shrink still gives the tail back.
    // SAFETY: live block of `l`.
    let s = unsafe { l.realloc(g, OS_PAGE, 1) };
    // (Miri's OS twin cannot unmap a tail; it reallocates, which may move.)
    assert!(s == g || cfg!(miri));
    assert!(l.stats().mapped_bytes < before.mapped_bytes);
    // SAFETY: live blocks of `l`.
    unsafe {
        l.free(s, "free");
        l.free(q, "free");
    }
}

#[test]
fn budget_evicts_the_oldest() {
    // Budget: three 2-page mappings (1 header + 1 data page each).
    let l = instance(6 * OS_PAGE, 100);
    let blocks: Vec<*mut u8> = (0..5).map(|_| l.alloc(100, 1, false)).collect();
    for (t, &p) in blocks.iter().enumerate() {
        l.manual_now.store(1000 + t as u64, Ordering::Relaxed);
        // SAFETY: live blocks of `l`.
        unsafe { l.free(p, "free") };
    }
    let st = l.stats();
    assert_eq!(st.cached_bytes, 6 * OS_PAGE as u64);
    assert_eq!(st.purged, 2);
    assert_eq!(st.mapped_bytes, st.cached_bytes);
    // The newest free comes back first.
    let p = l.alloc(1, 1, false);
    assert_eq!(p, blocks[4]);
    // SAFETY: live block of `l`.
    unsafe { l.free(p, "free") };
}

#[test]
fn blocks_above_the_budget_or_the_cache_are_unmapped() {
    let l = instance(4 * OS_PAGE, 100);
    let p = l.alloc(4 * OS_PAGE, 1, false); // 5-page mapping > budget
                                            // SAFETY: live block of `l`.
    unsafe { l.free(p, "free") };
    assert_eq!(l.stats().mapped_bytes, 0);

    // Over-aligned: never cached. Huge (above CACHE_MAX_PAGES), freed with
    // no other large block live and above the budget: unmapped at once.
    let l = instance(1 << 20, 100);
    let p = l.alloc((1 << 20) + 1, 1, false);
    let q = l.alloc(100, 1 << 16, false);
    // SAFETY: live blocks of `l`.
    unsafe {
        l.free(q, "free");
        l.free(p, "free");
    }
    assert_eq!(l.stats().mapped_bytes, 0);
    assert_eq!(l.stats().cached_bytes, 0);
}

const MIB: usize = 1 << 20;

/// `all_zero` natively; on the pattern grid and the last byte under Miri,
/// where a byte-by-byte check of megabytes takes minutes.
fn zero(p: *const u8, len: usize) -> bool {
    if !cfg!(miri) {
        return all_zero(p, len);
    }
    (0..len).step_by(STEP).chain(len.checked_sub(1)).all(|i| {
        // SAFETY: `i < len` bytes of a live block.
        unsafe { p.add(i).read() == 0 }
    })
}

#[test]
fn huge_mappings_are_cached_up_to_the_live_large_bytes() {
    // No medium budget at all: the huge bucket's budget is what else is
    // live.
    let l = instance(0, 100);
    let keep = l.alloc(3 * MIB, 1, false);
    let a = l.alloc(2 * MIB, 1, false);
    fill(a, 2 * MIB, 3);
    // SAFETY: live block of `l`.
    unsafe { l.free(a, "free") };
    let st = l.stats();
    assert_eq!(st.cached_bytes, (2 * MIB + OS_PAGE) as u64, "{st:?}");
    // The same size comes back from the cache: no mmap, zeroed on request.
    let b = l.alloc(2 * MIB - 100, 1, true);
    assert_eq!(b, a);
    assert!(zero(b, 2 * MIB - 100));
    let st2 = l.stats();
    assert_eq!(st2.mmap_calls, st.mmap_calls);
    assert_eq!(st2.cache_hits, st.cache_hits + 1);
    // SAFETY: live block of `l`.
    unsafe { l.free(b, "free") }; // cached: `keep` is live
    let st = l.stats();
    assert_eq!(st.cached_bytes, (2 * MIB + OS_PAGE) as u64, "{st:?}");
    // The cached one goes after the purge delay, `keep` still live.
    l.manual_now.store(1100, Ordering::Relaxed);
    l.maybe_purge();
    let st = l.stats();
    assert_eq!(st.cached_bytes, 0, "{st:?}");
    assert_eq!(st.mapped_bytes, (3 * MIB + OS_PAGE) as u64);
    // SAFETY: live block of `l`.
    unsafe { l.free(keep, "free") }; // nothing else live: unmapped
    assert_eq!(l.stats().mapped_bytes, 0);
}

#[test]
fn freeing_every_huge_block_leaves_nothing_cached_beyond_the_budget() {
    let l = instance(0, 100);
    let blocks: Vec<*mut u8> = (0..4).map(|_| l.alloc(2 * MIB, 1, false)).collect();
    let one = (2 * MIB + OS_PAGE) as u64;
    for (i, &p) in blocks.iter().enumerate() {
        // SAFETY: live blocks of `l`.
        unsafe { l.free(p, "free") };
        // What is cached is at most what is still live.
        let live = (blocks.len() - 1 - i) as u64 * one;
        let st = l.stats();
        assert!(st.cached_bytes <= live, "after free {i}: {st:?}");
        assert_eq!(st.mapped_bytes, live + st.cached_bytes);
    }
    // The last free found nothing live: the bucket is empty at once, with
    // no purge delay and no later call.
    assert_eq!(l.stats().mapped_bytes, 0);
}

#[test]
fn a_smaller_cached_huge_mapping_grows_and_a_much_bigger_one_is_trimmed() {
    let l = instance(0, 100);
    // (Under Miri only the first half runs, with smaller blocks.)
    let (keep_size, other_size) = if cfg!(miri) {
        (4 * MIB, 4 * MIB)
    } else {
        (64 * MIB, 70 * MIB)
    };
    let keep = l.alloc(keep_size, 1, false);
    // Live throughout, so that what is freed stays cached.
    let other = l.alloc(other_size, 1, false);
    let a = l.alloc(2 * MIB, 1, false);
    fill(a, 2 * MIB, 5);
    // SAFETY: live block of `l`.
    unsafe { l.free(a, "free") };
    let before = l.stats();
    // Bigger than the cached mapping: it grows (mremap), no fresh mmap;
    // the old contents are zeroed, the new pages are zero already.
    let b = l.alloc(3 * MIB, 1, true);
    assert!(zero(b, 3 * MIB));
    fill(b, 3 * MIB, 6);
    verify(b, 3 * MIB, 6);
    let after = l.stats();
    assert_eq!(after.mmap_calls, before.mmap_calls);
    assert_eq!(after.mremap_calls, before.mremap_calls + 1);
    assert_eq!(after.mapped_bytes, before.mapped_bytes + MIB as u64);
    // SAFETY: live block of `l`.
    unsafe { l.free(b, "free") };

    // The rest needs 134 MiB of blocks and a tail unmapped apart, which
    // Miri's OS twin cannot do.
    if cfg!(miri) {
        // SAFETY: live blocks of `l`.
        unsafe {
            l.free(keep, "free");
            l.free(other, "free");
        }
        return;
    }
    // Free the 64 MiB one too: both are cached.
    // SAFETY: live block of `l`.
    unsafe { l.free(keep, "free") };
    assert_eq!(l.stats().cached_bytes, (67 * MIB + 2 * OS_PAGE) as u64);
    // 1.5 MiB: the 3 MiB mapping serves it as it is (least slack).
    let c = l.alloc(3 * MIB / 2, 1, false);
    assert_eq!(c, b);
    // 16 MiB: only the 64 MiB mapping is big enough, and its slack (48
    // MiB) is above the 32 MiB bound: its tail goes back first.
    let before = l.stats();
    let d = l.alloc(16 * MIB, 1, false);
    assert_eq!(d, keep);
    fill(d, 16 * MIB, 8);
    verify(d, 16 * MIB, 8);
    let after = l.stats();
    assert_eq!(after.mmap_calls, before.mmap_calls);
    assert_eq!(after.munmap_calls, before.munmap_calls + 1);
    assert_eq!(after.mapped_bytes, before.mapped_bytes - 48 * MIB as u64);
    // SAFETY: live blocks of `l`.
    unsafe {
        l.free(c, "free");
        l.free(d, "free");
        l.free(other, "free");
    }
    l.collect();
    assert_eq!(l.stats().mapped_bytes, 0);
}

#[test]
fn purge_after_the_delay() {
    let l = instance(1 << 20, 100);
    let a = l.alloc(100, 1, false);
    let b = l.alloc(100_000, 1, false);
    // SAFETY: live blocks of `l`.
    unsafe { l.free(a, "free") }; // at 1000
    l.manual_now.store(1050, Ordering::Relaxed);
    // SAFETY: live block of `l`.
    unsafe { l.free(b, "free") }; // at 1050
    let both = l.stats().cached_bytes;
    l.manual_now.store(1099, Ordering::Relaxed);
    l.maybe_purge();
    assert_eq!(l.stats().cached_bytes, both);
    l.manual_now.store(1100, Ordering::Relaxed);
    l.maybe_purge();
    let st = l.stats();
    assert_eq!((st.cached_bytes, st.purged), (both - 2 * OS_PAGE as u64, 1));
    // An alloc also purges what is due.
    l.manual_now.store(1150, Ordering::Relaxed);
    let c = l.alloc(1 << 20, 1 << 16, false);
    let st = l.stats();
    assert_eq!((st.cached_bytes, st.purged), (0, 2));
    // SAFETY: live block of `l`.
    unsafe { l.free(c, "free") };
}

#[test]
fn zero_delay_or_budget_disables_the_cache() {
    for l in [instance(1 << 20, 0), instance(0, 100)] {
        let p = l.alloc(5000, 1, false);
        // SAFETY: live block of `l`.
        unsafe { l.free(p, "free") };
        let st = l.stats();
        assert_eq!(
            (st.mapped_bytes, st.cached_bytes, st.munmap_calls),
            (0, 0, 1)
        );
    }
}

#[test]
fn realloc_grow_shrink_keep_contents() {
    let l = instance(1 << 20, 100);
    // SAFETY: every pointer is a live block of `l` when used.
    unsafe {
        let p = l.alloc(5000, 8, false);
        fill(p, 5000, 3);
        // Within the usable size (2 data pages): in place.
        let q = l.realloc(p, 8000, 8);
        assert_eq!(q, p);
        verify(q, 5000, 3);
        fill(q, 8000, 4);
        // Grow past the mapping: mremap (contents kept, maybe moved).
        let big = if cfg!(miri) { 1 << 20 } else { 8 << 20 };
        let r = l.realloc(q, big, 8);
        assert!(!r.is_null());
        verify(r, 8000, 4);
        assert!(l.usable_size(r) >= big);
        fill(r, big, 5);
        // Shrink a lot: the tail goes back, the pointer stays.
        let mapped = l.stats().mapped_bytes;
        let s = l.realloc(r, 10_000, 8);
        // (Miri's OS twin cannot unmap a tail; it reallocates, which may move.)
        assert!(s == r || cfg!(miri));
        verify(s, 10_000, 5);
        assert!(l.stats().mapped_bytes < mapped);
        assert!(l.usable_size(s) >= 10_000 && l.usable_size(s) < 64 << 10);
        // A small shrink keeps everything.
        let t = l.realloc(s, 9_000, 8);
        assert_eq!(t, s);
        verify(t, 9_000, 5);
        l.free(t, "free");
        assert_eq!(l.stats().reallocs_in_place + l.stats().reallocs_moved, 4);
    }
    l.collect();
    assert_eq!(l.stats().mapped_bytes, 0);
}

#[test]
fn growth_moves_into_a_cached_mapping_instead_of_remapping() {
    let l = instance(8 << 20, 100);
    // SAFETY: every pointer is a live block of `l` when used.
    unsafe {
        let cached = l.alloc(150_000, 8, false);
        fill(cached, 150_000, 1);
        l.free(cached, "free");
        let p = l.alloc(20_000, 8, false);
        fill(p, 20_000, 2);
        let before = l.stats();
        // Too big for `p`'s mapping; the cache holds one of the right class.
        let q = l.realloc(p, 150_000, 8);
        let after = l.stats();
        assert_eq!(q, cached, "the cached (resident) mapping is reused");
        assert_eq!(after.mremap_calls, before.mremap_calls);
        assert_eq!(after.cache_hits, before.cache_hits + 1);
        assert_eq!(after.reallocs_moved, before.reallocs_moved + 1);
        verify(q, 20_000, 2);
        l.free(q, "free");
    }
    l.collect();
    assert_eq!(l.stats().mapped_bytes, 0);
}

#[test]
fn realloc_over_aligned_moves_by_copy() {
    let l = instance(1 << 20, 100);
    // SAFETY: every pointer is a live block of `l` when used.
    unsafe {
        let p = l.alloc(3000, 1 << 16, false);
        fill(p, 3000, 8);
        let q = l.realloc(p, 200_000, 1 << 16);
        assert!(!q.is_null());
        assert_eq!(q as usize % (1 << 16), 0);
        verify(q, 3000, 8);
        fill(q, 200_000, 9);
        // Shrinking by more than half moves to a smaller mapping.
        let r = l.realloc(q, 1000, 1 << 16);
        assert_eq!(r as usize % (1 << 16), 0);
        verify(r, 1000, 9);
        assert!(l.usable_size(r) < 200_000);
        // A page-aligned block asked for a bigger alignment moves.
        let s = l.alloc(OS_PAGE, 1, false);
        fill(s, OS_PAGE, 10);
        let t = l.realloc(s, 2 * OS_PAGE, 1 << 20);
        assert_eq!(t as usize % (1 << 20), 0);
        verify(t, OS_PAGE, 10);
        l.free(r, "free");
        l.free(t, "free");
        assert!(l.stats().reallocs_moved >= 3);
    }
    l.collect();
    assert_eq!(l.stats().mapped_bytes, 0);
}

#[test]
fn realloc_failure_keeps_the_block() {
    let l = instance(1 << 20, 100);
    // SAFETY: live block of `l`.
    unsafe {
        let p = l.alloc(5000, 8, false);
        fill(p, 5000, 1);
        assert!(l.realloc(p, usize::MAX - 100, 8).is_null());
        assert!(l.realloc(p, 1 << 40, 1 << 62).is_null());
        verify(p, 5000, 1);
        assert_eq!(l.check(p), Ok(()));
        l.free(p, "free");
    }
}

#[test]
fn check_tells_what_is_wrong() {
    let l = instance(1 << 20, 100);
    let on_stack = 0u64;
    let stack = &on_stack as *const u64 as *mut u8;
    let r = l.check(stack);
    assert!(
        matches!(r, Err(Invalid::Misaligned | Invalid::NotLarge)),
        "{r:?}"
    );
    assert_eq!(l.check(ptr::null_mut()), Err(Invalid::NotLarge));

    let p = l.alloc(3 * OS_PAGE, 1, false);
    // SAFETY: pointers inside a live block of `l`.
    unsafe {
        assert_eq!(l.check(p.add(8)), Err(Invalid::Misaligned));
        // Page-aligned but inside: the page below is user data.
        assert_eq!(l.check(p.add(OS_PAGE)), Err(Invalid::BadMagic));
        // Even with the magic value planted in user data for another pointer.
        (p as *mut usize).write(MAGIC ^ p as usize);
        assert_eq!(l.check(p.add(OS_PAGE)), Err(Invalid::BadMagic));
        l.free(p, "free");
    }
    // The block is cached now; its chunk may have no other large block
    // (NotLarge), so pretend it has one to reach the header check.
    let r = l.check(p);
    assert!(
        matches!(r, Err(Invalid::NotLarge | Invalid::DoubleFree)),
        "{r:?}"
    );
    assert!(chunkmap::add_large(p as usize));
    assert_eq!(l.check(p), Err(Invalid::DoubleFree));
    chunkmap::remove_large(p as usize);
    l.collect();
}

#[test]
fn messages() {
    assert_eq!(Invalid::DoubleFree.to_string(), "double free");
    let mut w = crate::diag::StackWriter::<128>::new();
    let p = ptr::without_provenance_mut::<u8>(0x7f00_0000_1000);
    let _ = fmt::write(
        &mut w,
        format_args!(
            "{}(): invalid pointer {p:p} ({})",
            "dealloc",
            Invalid::NotLarge
        ),
    );
    assert_eq!(
        w.as_bytes(),
        b"dealloc(): invalid pointer 0x7f0000001000 (not allocated by hakmem, or already freed)"
    );
}

#[test]
fn threads_share_one_instance() {
    let l = instance(256 << 10, 100);
    let threads = if cfg!(miri) { 2 } else { 8 };
    let rounds = if cfg!(miri) { 6 } else { 2000 };
    std::thread::scope(|s| {
        for t in 0..threads {
            let l = &l;
            s.spawn(move || {
                for i in 0..rounds {
                    let size = 1
                        + (i * 7919 + t * 104_729) % if cfg!(miri) { 40 << 10 } else { 300 << 10 };
                    let p = l.alloc(size, 8, i % 3 == 0);
                    assert!(!p.is_null());
                    if i % 3 == 0 {
                        assert!(all_zero(p, size));
                    }
                    fill(p, size, (t + i) as u8);
                    verify(p, size, (t + i) as u8);
                    // SAFETY: live block of `l`.
                    unsafe { l.free(p, "free") };
                }
            });
        }
    });
    let st = l.stats();
    assert_eq!(st.allocs, (threads * rounds) as u64);
    assert_eq!(st.frees, st.allocs);
    assert!(st.cached_bytes <= 256 << 10);
    assert_eq!(st.mapped_bytes, st.cached_bytes);
    assert!(st.cache_hits > 0);
}

#[test]
fn global_instance_and_fork_handlers() {
    let p = alloc(100_000, 16, true);
    assert!(!p.is_null() && all_zero(p, 100_000));
    assert_eq!(check_ptr(p), Ok(()));
    // SAFETY: a live global block.
    unsafe {
        assert!(usable_size(p) >= 100_000);
        let q = realloc(p, 300_000, 16);
        assert!(!q.is_null());
        free(q, "free");
    }
    before_fork();
    after_fork_parent();
    before_fork();
    after_fork_child();
    let p = alloc(5000, 1, false);
    // SAFETY: a live global block.
    unsafe { free(p, "free") };
    assert!(stats().allocs >= 2);
}
