//! Every size up to 4 KiB, a geometric sweep to 64 MiB, every power-of-two
//! alignment up to 1 GiB (with small sizes too), through `alloc`,
//! `alloc_zeroed` and `realloc` across the small/large boundary: alignment,
//! zeroing and contents are checked on every block.

mod common;

use common::{all_zero, check, fill};
use std::alloc::{alloc, alloc_zeroed, dealloc, realloc, Layout};

#[global_allocator]
static GLOBAL: hakmem::Hakmem = hakmem::Hakmem;

/// Allocates `layout` (zeroed or not), checks alignment and zeroing, fills it
/// with the pattern of `id`, checks it; returns the block.
fn make(layout: Layout, zeroed: bool, id: u64) -> *mut u8 {
    // SAFETY: callers pass layouts of non-zero size.
    let p = unsafe {
        if zeroed {
            alloc_zeroed(layout)
        } else {
            alloc(layout)
        }
    };
    assert!(!p.is_null(), "{layout:?}");
    assert_eq!(p as usize % layout.align(), 0, "{layout:?} at {p:p}");
    // SAFETY: a live block of `layout.size()` bytes.
    unsafe {
        if zeroed {
            assert!(all_zero(p, layout.size()), "{layout:?} not zeroed");
        }
        fill(p, layout.size(), id);
        check(p, layout.size(), id);
    }
    p
}

#[test]
fn every_size_to_4k_with_small_alignments() {
    // Size 0 is not a valid `GlobalAlloc` request; zero-sized types never
    // reach the allocator.
    let v: Vec<u8> = Vec::with_capacity(0);
    assert_eq!(v.capacity(), 0);
    for size in 1..=4096usize {
        for align_log in 0..=6 {
            let layout = Layout::from_size_align(size, 1 << align_log).unwrap();
            let id = (size * 8 + align_log) as u64;
            // Dirty a block first so that a reused one must be zeroed again.
            let a = make(layout, false, id);
            // SAFETY: `a` is live with `layout`.
            unsafe { dealloc(a, layout) };
            let b = make(layout, true, id + 1);
            // SAFETY: `b` is live with `layout`.
            unsafe { dealloc(b, layout) };
        }
    }
}

#[test]
fn geometric_sweep_to_64_mib() {
    let mut size = 4097usize;
    let mut id = 1u64 << 32;
    while size <= 64 << 20 {
        // Above 1 MiB every block costs page faults: one size per step there.
        let near: &[usize] = if size <= 1 << 20 {
            &[size - 1, size, size + 1]
        } else {
            &[size]
        };
        for &align in &[1usize, 16, 4096, 1 << 16] {
            for &s in near {
                let layout = Layout::from_size_align(s, align).unwrap();
                id += 1;
                let a = make(layout, id % 2 == 0, id);
                let b = make(layout, true, id + 1000);
                // SAFETY: live blocks; the second must not overlap the first.
                unsafe {
                    check(a, s, id);
                    dealloc(a, layout);
                    dealloc(b, layout);
                }
            }
        }
        size += size / 2 + 123;
    }
}

#[test]
fn every_alignment_to_1_gib() {
    let mut id = 2u64 << 32;
    for align_log in 0..=30 {
        let align = 1usize << align_log;
        for &size in &[1usize, 8, 100, 4096, 5000, (1 << 20) + 1] {
            let layout = Layout::from_size_align(size, align).unwrap();
            id += 1;
            let a = make(layout, id % 2 == 1, id);
            // SAFETY: `a` is live with `layout`.
            unsafe { dealloc(a, layout) };
        }
        // Several at once, so that they are not all the same address.
        let layout = Layout::from_size_align(24, align).unwrap();
        let blocks: Vec<*mut u8> = (0..4).map(|k| make(layout, true, id + 10 + k)).collect();
        for (k, &p) in blocks.iter().enumerate() {
            // SAFETY: live blocks with `layout`.
            unsafe {
                check(p, 24, id + 10 + k as u64);
                dealloc(p, layout);
            }
        }
    }
}

#[test]
fn realloc_up_and_down_across_boundaries() {
    let mut steps = vec![1usize];
    while *steps.last().unwrap() < (16 << 20) {
        let s = *steps.last().unwrap();
        steps.push(s + s / 2 + 7);
    }
    let mut id = 3u64 << 32;
    for &align in &[1usize, 8, 16, 64, 4096, 1 << 16] {
        id += 1;
        let mut layout = Layout::from_size_align(steps[0], align).unwrap();
        let mut p = make(layout, false, id);
        // Grow step by step, then shrink back: the common prefix survives.
        for &s in steps[1..].iter().chain(steps.iter().rev().skip(1)) {
            // SAFETY: `p` is live with `layout`; `s` is non-zero and a valid
            // size at `align`.
            let q = unsafe { realloc(p, layout, s) };
            assert!(!q.is_null(), "realloc to {s} at align {align}");
            assert_eq!(q as usize % align, 0, "realloc to {s} at align {align}");
            let keep = layout.size().min(s);
            // SAFETY: `q` is live with at least `s` bytes.
            unsafe {
                check(q, keep, id);
                fill(q, s, id);
            }
            layout = Layout::from_size_align(s, align).unwrap();
            p = q;
        }
        // SAFETY: `p` is live with `layout`.
        unsafe { dealloc(p, layout) };
    }
}

#[test]
fn realloc_pairs_around_the_boundaries() {
    let edges = [
        1usize,
        15,
        16,
        17,
        255,
        1023,
        1024,
        1025,
        2048,
        4095,
        4096,
        4097,
        8191,
        8192,
        8193,
        32 << 10,
        (32 << 10) + 1,
        1 << 20,
        (1 << 20) + 1,
        3 << 20,
    ];
    let mut id = 4u64 << 32;
    for &from in &edges {
        for &to in &edges {
            for &align in &[8usize, 4096] {
                id += 1;
                let layout = Layout::from_size_align(from, align).unwrap();
                let p = make(layout, false, id);
                // SAFETY: `p` is live with `layout`.
                let q = unsafe { realloc(p, layout, to) };
                assert!(!q.is_null());
                assert_eq!(q as usize % align, 0);
                // SAFETY: `q` is live with `to` bytes.
                unsafe {
                    check(q, from.min(to), id);
                    fill(q, to, id);
                    dealloc(q, Layout::from_size_align(to, align).unwrap());
                }
            }
        }
    }
}

#[test]
fn vectors_and_boxes_of_every_kind() {
    // The ordinary users of the allocator: Vec growth by doubling, strings,
    // boxed over-aligned values.
    #[repr(align(4096))]
    struct Page([u8; 4096]);
    #[repr(align(65536))]
    struct Big(u8);
    let mut v: Vec<u64> = Vec::new();
    for i in 0..(1u64 << 21) {
        v.push(i * 3);
    }
    assert!(v.iter().enumerate().all(|(i, &x)| x == i as u64 * 3));
    v.truncate(10);
    v.shrink_to_fit();
    assert_eq!(v, (0..10).map(|i| i * 3).collect::<Vec<_>>());
    let s: String = (0..100_000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    assert_eq!(s.len(), 100_000);
    let pages: Vec<Box<Page>> = (0..16).map(|i| Box::new(Page([i as u8; 4096]))).collect();
    for (i, p) in pages.iter().enumerate() {
        assert_eq!(p.as_ref() as *const Page as usize % 4096, 0);
        assert!(p.0.iter().all(|&b| b == i as u8));
    }
    let big = Box::new(Big(7));
    assert_eq!(&*big as *const Big as usize % 65536, 0);
    assert_eq!(big.0, 7);
}
