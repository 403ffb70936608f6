//! The Rust twin of `bench/capi/pair_loop.c` for `bench/callgrind-capi`:
//! the same loop on hakmem's `GlobalAlloc` path, as a Rust program reaches
//! it through `#[global_allocator]` (one call into the allocator per
//! operation, as `__rust_alloc` is without LTO), counted by callgrind
//! inside the `measured` functions only.
//!
//! `pair_loop mixed|fixed|calloc|realloc N [floor]`: `floor` runs the same
//! loop on non-inlined functions that do nothing useful (the loop and call
//! cost). `calloc` allocates with `alloc_zeroed`; `realloc` resizes in
//! place with `realloc` where the C loop does (its `realloc(NULL, 64)` is
//! an `alloc` here). Prints `mallocs M frees F` for the measured pass.

#![allow(missing_docs)]

use std::alloc::{GlobalAlloc, Layout};

#[global_allocator]
static GLOBAL: hakmem::Hakmem = hakmem::Hakmem;

const SLOTS: usize = 256;

trait Ops {
    fn malloc(size: usize) -> *mut u8;
    fn calloc(size: usize) -> *mut u8;
    fn realloc(p: *mut u8, size: usize, new_size: usize) -> *mut u8;
    fn free(p: *mut u8, size: usize);
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Mixed,
    Fixed,
    Calloc,
    Realloc,
}

/// `v`, unknown to the optimiser, at no instruction (as the C floor's empty
/// `asm volatile`; `black_box` would store it to the stack).
#[inline(always)]
fn opaque(mut v: usize) -> usize {
    // SAFETY: an empty template: no instruction, no memory access.
    unsafe { std::arch::asm!("/* {0} */", inout(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

struct HakmemOps;
impl Ops for HakmemOps {
    #[inline(never)]
    fn malloc(size: usize) -> *mut u8 {
        // Any size, as `__rust_alloc` sees: the compiler must not learn the
        // loop's bound on it across the call (it would drop the size test).
        let size = opaque(size);
        // SAFETY: size > 0, alignment 16 (a power of two, as C's malloc).
        unsafe { GLOBAL.alloc(Layout::from_size_align_unchecked(size, 16)) }
    }
    #[inline(never)]
    fn calloc(size: usize) -> *mut u8 {
        let size = opaque(size);
        // SAFETY: as `malloc`.
        unsafe { GLOBAL.alloc_zeroed(Layout::from_size_align_unchecked(size, 16)) }
    }
    #[inline(never)]
    fn realloc(p: *mut u8, size: usize, new_size: usize) -> *mut u8 {
        let (p, size, new_size) = (
            opaque(p as usize) as *mut u8,
            opaque(size),
            opaque(new_size),
        );
        // SAFETY: `p` came from `malloc(size)`; `new_size` > 0.
        unsafe { GLOBAL.realloc(p, Layout::from_size_align_unchecked(size, 16), new_size) }
    }
    #[inline(never)]
    fn free(p: *mut u8, size: usize) {
        let (p, size) = (opaque(p as usize) as *mut u8, opaque(size));
        // SAFETY: `p` came from `malloc(size)` above and is freed once.
        unsafe { GLOBAL.dealloc(p, Layout::from_size_align_unchecked(size, 16)) }
    }
}

struct FloorOps;
static mut FLOOR_BLOCK: [u8; 64] = [0; 64];
impl Ops for FloorOps {
    #[inline(never)]
    fn malloc(size: usize) -> *mut u8 {
        opaque(size);
        std::ptr::addr_of_mut!(FLOOR_BLOCK).cast()
    }
    #[inline(never)]
    fn calloc(size: usize) -> *mut u8 {
        opaque(size);
        std::ptr::addr_of_mut!(FLOOR_BLOCK).cast()
    }
    #[inline(never)]
    fn realloc(p: *mut u8, size: usize, new_size: usize) -> *mut u8 {
        opaque(p as usize);
        opaque(size);
        opaque(new_size);
        std::ptr::addr_of_mut!(FLOOR_BLOCK).cast()
    }
    #[inline(never)]
    fn free(p: *mut u8, size: usize) {
        opaque(p as usize);
        opaque(size);
    }
}

struct Loop {
    slots: [(*mut u8, usize); SLOTS],
    x: u64,
    mallocs: u64,
    frees: u64,
}

impl Loop {
    #[inline(always)]
    fn body<O: Ops>(&mut self, n: u64, mode: Mode) {
        let mut x = self.x;
        for _ in 0..n {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let s = &mut self.slots[(x as usize) & (SLOTS - 1)];
            if !s.0.is_null() {
                if mode == Mode::Realloc && (x >> 8) & 1 == 1 {
                    let size = 49 + ((x >> 9) & 15) as usize;
                    *s = (O::realloc(s.0, s.1, size), size);
                    self.mallocs += 1;
                    continue;
                }
                O::free(s.0, s.1);
                s.0 = std::ptr::null_mut();
                self.frees += 1;
            } else {
                *s = match mode {
                    Mode::Mixed => {
                        let size = 16 + ((x >> 8) & 1023) as usize;
                        (O::malloc(size), size)
                    }
                    Mode::Fixed | Mode::Realloc => (O::malloc(64), 64),
                    Mode::Calloc => (O::calloc(64), 64),
                };
                self.mallocs += 1;
            }
        }
        self.x = x;
    }
}

#[inline(never)]
fn warm<O: Ops>(l: &mut Loop, n: u64, mode: Mode) {
    l.body::<O>(n, mode);
}

#[inline(never)]
fn measured<O: Ops>(l: &mut Loop, n: u64, mode: Mode) {
    // Not folded into `warm` (identical code would be merged).
    std::hint::black_box(&mut *l);
    l.body::<O>(n, mode);
}

fn run<O: Ops>(n: u64, mode: Mode) {
    let mut l = Loop {
        slots: [(std::ptr::null_mut(), 0); SLOTS],
        x: 0x9e37_79b9_7f4a_7c15,
        mallocs: 0,
        frees: 0,
    };
    warm::<O>(&mut l, n, mode);
    l.mallocs = 0;
    l.frees = 0;
    measured::<O>(&mut l, n, mode);
    println!("mallocs {} frees {}", l.mallocs, l.frees);
    for s in l.slots {
        if !s.0.is_null() {
            O::free(s.0, s.1);
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = || -> ! {
        eprintln!("usage: pair_loop mixed|fixed|calloc|realloc ITERATIONS [floor]");
        std::process::exit(2)
    };
    if args.len() < 3 || args.len() > 4 {
        usage();
    }
    let mode = match args[1].as_str() {
        "mixed" => Mode::Mixed,
        "fixed" => Mode::Fixed,
        "calloc" => Mode::Calloc,
        "realloc" => Mode::Realloc,
        _ => usage(),
    };
    let Ok(n) = args[2].parse::<u64>() else {
        usage()
    };
    match args.get(3).map(String::as_str) {
        None => run::<HakmemOps>(n, mode),
        Some("floor") => run::<FloorOps>(n, mode),
        Some(_) => usage(),
    }
}
