//! Instruction counts of the malloc/free fast paths: run under
//! `valgrind --tool=callgrind --toggle-collect='*hk_malloc*' --toggle-collect='*hk_free*'`
//! (see docs/architecture.md, "Measured"), or time it: `fastpath [N] [SIZE]`.

use std::alloc::{GlobalAlloc, Layout};
use std::hint::black_box;

#[global_allocator]
static GLOBAL: hakmem::Hakmem = hakmem::Hakmem;

#[inline(never)]
#[no_mangle]
fn hk_malloc(l: Layout) -> *mut u8 {
    // SAFETY: non-zero size.
    unsafe { GLOBAL.alloc(l) }
}

#[inline(never)]
#[no_mangle]
fn hk_free(p: *mut u8, l: Layout) {
    // SAFETY: a live block with its layout.
    unsafe { GLOBAL.dealloc(p, l) }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let size: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(64);
    let l = Layout::from_size_align(size, 8).unwrap();
    // Keep one block live so that the page never becomes empty.
    let keep = hk_malloc(l);
    let t = std::time::Instant::now();
    for _ in 0..n {
        let p = black_box(hk_malloc(black_box(l)));
        hk_free(p, l);
    }
    let el = t.elapsed();
    hk_free(keep, l);
    println!(
        "{n} malloc+free pairs of {size} B: {:.2} ns/pair",
        el.as_nanos() as f64 / n as f64
    );
}
