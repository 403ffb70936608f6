//! The C allocation API with C semantics, for the `hakmem-capi` shim
//! (`capi/`), which only exports these functions under their C names.
//!
//! What C asks beyond [`crate::Hakmem`]'s `GlobalAlloc`:
//! - no `Layout`: `free`, `realloc` and `malloc_usable_size` find a block's
//!   class (small) or header (large) from its address, as `heap::free`
//!   already does;
//! - failure = null with `errno = ENOMEM` (`posix_memalign` returns the
//!   code instead and leaves `errno` alone); `EINVAL` for a bad alignment;
//!   overflow checks in `calloc` and `reallocarray`;
//! - glibc's conventions: `malloc(0)` is a unique (16-byte) block,
//!   `free(NULL)` does nothing, `realloc(p, 0)` frees `p` and returns null,
//!   `realloc(NULL, n)` is `malloc(n)`, `memalign` rounds a non-power-of-two
//!   alignment up, `aligned_alloc` rejects one (glibc ≥ 2.38);
//! - every block is at least 16-byte aligned (classes are multiples of 16,
//!   block areas 8 KiB-aligned; large blocks are page-aligned).
//!
//! Invalid pointers (not hakmem's, misaligned, freed twice where it can
//! tell) abort with one line on stderr naming the C function, the pointer
//! and the problem (`diag::fatal`).
//!
//! Nothing here panics: every size computation is checked, and the only
//! aborts are the deliberate `fatal!` reports. Record mode (`HAKMEM_TRACE`)
//! is [`record`]. `malloc` and `free` test for it on their slow paths only:
//! while recording, every thread's fast word is the empty heap (`tls`, "two
//! words per thread"), so each request reaches a slow path; when record
//! mode is off their fast paths are `Hakmem::alloc`'s and `dealloc`'s.
//! `calloc` and `realloc` do the same (`realloc` in place only for a block
//! owned by the fast word's heap). The other entries test it first (one
//! relaxed load and branch).

pub mod cxx;
pub mod record;

use crate::global::alloc_general;
use crate::size_class::{block_size, class_of, SMALL_MAX};
use crate::superslab::{slot_of, SlotState};
use crate::sync::StdBackend;
use crate::{chunkmap, heap, large, tls};
use core::ptr::{self, null_mut};
use core::sync::atomic::Ordering;

/// The minimum alignment of every block (glibc's guarantee on x86-64 and aarch64).
pub const MIN_ALIGN: usize = 16;
/// The page size `valloc`/`pvalloc` align to (hakmem assumes 4 KiB pages).
pub const PAGE: usize = 4096;

fn set_errno(e: i32) {
    // SAFETY: `__errno_location` returns the calling thread's errno slot.
    unsafe { *libc::__errno_location() = e };
}

/// Null with `errno = ENOMEM` when `p` is null; `p` otherwise.
#[inline]
fn enomem_if_null(p: *mut u8) -> *mut u8 {
    if p.is_null() {
        set_errno(libc::ENOMEM);
    }
    p
}

// ---------------------------------------------------------------- plain --
// The requests themselves, without record mode.

/// `malloc` on the calling thread's heap (its fast word, or its own heap
/// while the fast paths are diverted: both work, the first may be slower).
#[inline]
fn malloc_plain(size: usize) -> *mut u8 {
    if size <= SMALL_MAX {
        let p = crate::global::alloc_small(class_of(size));
        if !p.is_null() {
            return p;
        }
    }
    enomem_if_null(alloc_general(size, MIN_ALIGN, false))
}

/// `align`: a power of two.
fn aligned_plain(size: usize, align: usize, zeroed: bool) -> *mut u8 {
    alloc_general(size, align.max(MIN_ALIGN), zeroed)
}

/// Where a live block is and how many bytes it has: `Some(class)` for a
/// small block, `None` for a large one; aborts naming `func` for anything
/// else.
fn block_info(ptr: *mut u8, func: &str) -> (usize, Option<usize>) {
    if chunkmap::entry(ptr as usize) == chunkmap::SUPERSLAB {
        // SAFETY: the chunk is a live SuperSlab: its header is mapped.
        let m = unsafe { &*slot_of::<StdBackend>(ptr) };
        let class = match m.state() {
            SlotState::Active(c) => c as usize,
            SlotState::Empty(_) | SlotState::Purging(_) => {
                crate::fatal!("{func}(): invalid pointer {ptr:p} (double free: its page is empty)")
            }
            SlotState::Unused => {
                crate::fatal!("{func}(): invalid pointer {ptr:p} (not allocated by hakmem)")
            }
        };
        let size = block_size(class);
        let area = m.area() as usize;
        let addr = ptr as usize;
        if addr < area || (addr - area) % size != 0 {
            crate::fatal!(
                "{func}(): invalid pointer {ptr:p} (not the start of a {size}-byte block)"
            );
        }
        return (size, Some(class));
    }
    if chunkmap::kind(ptr as usize) != chunkmap::ChunkKind::Large {
        crate::fatal!(
            "{func}(): invalid pointer {ptr:p} (not allocated by hakmem, or already freed)"
        );
    }
    match large::check_ptr(ptr) {
        // SAFETY: a live large block.
        Ok(()) => (unsafe { large::usable_size(ptr) }, None),
        Err(e) => crate::fatal!("{func}(): invalid pointer {ptr:p} ({e})"),
    }
}

/// # Safety
/// `ptr` is null or a live block (invalid ones are reported).
unsafe fn free_plain(ptr: *mut u8) {
    // SAFETY: forwarded; `heap::free` ignores null and validates the rest.
    unsafe { heap::free(tls::heap(), ptr) }
}

/// `realloc` for a non-null `ptr` and `size > 0`.
///
/// # Safety
/// `ptr` is a live block (invalid ones are reported).
unsafe fn realloc_plain(ptr: *mut u8, size: usize) -> *mut u8 {
    let (usable, class) = block_info(ptr, "realloc");
    match class {
        Some(c) if size <= SMALL_MAX && class_of(size) == c => return ptr,
        None if size > SMALL_MAX => {
            // SAFETY: a live large block (checked above).
            return enomem_if_null(unsafe { large::realloc(ptr, size, MIN_ALIGN) });
        }
        _ => {}
    }
    let q = malloc_plain(size);
    if !q.is_null() {
        // SAFETY: both live; `min` bytes are valid in both; distinct blocks.
        unsafe {
            ptr::copy_nonoverlapping(ptr, q, usable.min(size));
            free_plain(ptr);
        }
    }
    q
}

// ------------------------------------------------------------ C entries --

/// `malloc`: `size` bytes, 16-byte aligned; `malloc(0)` is a unique block.
#[inline(always)]
pub fn malloc(size: usize) -> *mut u8 {
    malloc_or(size, || malloc_slow(size))
}

/// The fast path of `malloc` (and of C++ `new`), with `slow` for every
/// request it does not serve (a large size, no free block on the page, and
/// record mode, which keeps the fast paths diverted).
#[inline(always)]
fn malloc_or(size: usize, slow: impl FnOnce() -> *mut u8) -> *mut u8 {
    if size <= SMALL_MAX {
        // SAFETY: the calling thread's fast word; `slow` is a tail call
        // with nothing changed.
        return unsafe { heap::alloc_or(tls::heap(), class_of(size), slow) };
    }
    slow()
}

/// `malloc` past its fast path: record mode, then the allocator's slow
/// paths. `extern "C"` (cannot unwind): the exported `malloc` reaches it by
/// a tail jump, with no landing pad and no stack frame.
#[cold]
#[inline(never)]
pub(super) extern "C" fn malloc_slow(size: usize) -> *mut u8 {
    let g = record::begin();
    let p = malloc_plain(size);
    if let Some(g) = g {
        g.alloc(p, size, MIN_ALIGN, false);
    }
    p
}

/// `free`: `free(NULL)` does nothing.
///
/// # Safety
/// `ptr` is null or a live block, not used afterwards (invalid pointers and
/// the double frees hakmem can see abort with a message).
#[inline(always)]
pub unsafe fn free(ptr: *mut u8) {
    // SAFETY: forwarded contract; `free_slow` is a tail call.
    unsafe { heap::free_or(tls::heap(), ptr, |_| free_slow(ptr)) }
}

/// `free` of a block that is not a local small one (also `free(NULL)`):
/// record mode, then the allocator's slow paths.
///
/// `extern "C"` (cannot unwind): reached by a tail jump, as `malloc_slow`.
///
/// # Safety
/// As [`free`].
#[cold]
#[inline(never)]
unsafe extern "C" fn free_slow(ptr: *mut u8) {
    if let Some(g) = record::begin() {
        // Recorded before the block can be handed out again.
        g.free(ptr);
        // SAFETY: forwarded contract; while recording, the fast word is the
        // empty heap, the owner of the thread's own pages is its own heap.
        return unsafe { heap::free(tls::own_heap(), ptr) };
    }
    // SAFETY: forwarded contract.
    unsafe { heap::free_not_local(tls::heap(), ptr) }
}

/// `calloc`: `n * size` zeroed bytes; `ENOMEM` if the product overflows.
///
/// The fast path is `malloc`'s and a `memset` of the block; record mode
/// and everything else are on [`calloc_slow`].
#[inline(always)]
pub fn calloc(n: usize, size: usize) -> *mut u8 {
    let Some(total) = n.checked_mul(size) else {
        return calloc_overflow();
    };
    if total <= SMALL_MAX {
        // SAFETY: the calling thread's fast word; `total` fits its class.
        let p = unsafe { heap::alloc_zeroed_fast(tls::heap(), class_of(total), total) };
        if !p.is_null() {
            return p;
        }
    }
    calloc_slow(total)
}

#[cold]
#[inline(never)]
fn calloc_overflow() -> *mut u8 {
    set_errno(libc::ENOMEM);
    null_mut()
}

/// `calloc` of `total` bytes past its fast path: record mode, then the
/// allocator's slow paths (which hand out zeroed memory).
#[cold]
#[inline(never)]
extern "C" fn calloc_slow(total: usize) -> *mut u8 {
    let g = record::begin();
    let p = enomem_if_null(alloc_general(total, MIN_ALIGN, true));
    if let Some(g) = g {
        g.alloc(p, total, MIN_ALIGN, true);
    }
    p
}

/// `realloc`, as glibc: `realloc(NULL, n)` = `malloc(n)`; `realloc(p, 0)`
/// frees `p` and returns null; on failure null, `ENOMEM`, `p` intact.
///
/// The fast path keeps a small block of the calling thread's in place when
/// the new size has its class (as `Hakmem::realloc`) and serves
/// `realloc(NULL, n)` as `malloc`'s does; record mode and everything else are on
/// [`realloc_slow`].
///
/// # Safety
/// `ptr` is null or a live block; not used afterwards unless null is
/// returned for a non-zero size.
#[inline(always)]
pub unsafe fn realloc(ptr: *mut u8, size: usize) -> *mut u8 {
    if size.wrapping_sub(1) < SMALL_MAX {
        if chunkmap::is_superslab(ptr.addr()) {
            // SAFETY: the chunk is a live SuperSlab, so its header is mapped.
            let m = unsafe { &*slot_of::<StdBackend>(ptr) };
            // Owned by the fast word's heap: never while recording (the fast
            // word is then the empty heap, which owns no page), so a
            // recorded `realloc` always reaches the slow path. As `free`'s
            // local fast path, it looks at block boundaries no further than
            // glibc's alignment test; the slow path does.
            if m.owner.load(Ordering::Relaxed) == heap::Heap::as_owner(tls::heap())
                && m.is_active(class_of(size) as u8)
                && ptr.addr() % MIN_ALIGN == 0
            {
                return ptr;
            }
        } else if ptr.is_null() {
            // `realloc(NULL, n)` is `malloc(n)`, with its fast path.
            // SAFETY: (of the slow path) `ptr` is null.
            return malloc_or(size, || unsafe { realloc_slow(ptr, size) });
        }
    }
    // SAFETY: forwarded contract.
    unsafe { realloc_slow(ptr, size) }
}

/// `realloc` past its fast path: record mode, then [`realloc_plain`].
///
/// # Safety
/// As [`realloc`].
#[cold]
#[inline(never)]
unsafe extern "C" fn realloc_slow(ptr: *mut u8, size: usize) -> *mut u8 {
    let g = record::begin();
    if ptr.is_null() {
        let p = malloc_plain(size);
        if let Some(g) = g {
            g.alloc(p, size, MIN_ALIGN, false);
        }
        return p;
    }
    if size == 0 {
        if let Some(g) = g {
            g.free(ptr);
        }
        // SAFETY: forwarded contract.
        unsafe { free_plain(ptr) };
        return null_mut();
    }
    let Some(g) = g else {
        // SAFETY: forwarded contract.
        return unsafe { realloc_plain(ptr, size) };
    };
    let old = g.take(ptr);
    // SAFETY: forwarded contract.
    let q = unsafe { realloc_plain(ptr, size) };
    g.realloc(old, ptr, q, size);
    q
}

/// `reallocarray`: `realloc(ptr, n * size)` with an overflow check
/// (`ENOMEM`, `ptr` intact).
///
/// # Safety
/// As [`realloc`].
pub unsafe fn reallocarray(ptr: *mut u8, n: usize, size: usize) -> *mut u8 {
    match n.checked_mul(size) {
        // SAFETY: forwarded contract.
        Some(total) => unsafe { realloc(ptr, total) },
        None => {
            set_errno(libc::ENOMEM);
            null_mut()
        }
    }
}

/// An aligned allocation for the memalign family (`align` a power of two).
fn aligned(size: usize, align: usize) -> *mut u8 {
    let g = record::begin();
    let align = align.max(MIN_ALIGN);
    let p = aligned_plain(size, align, false);
    if let Some(g) = g {
        g.alloc(p, size, align, false);
    }
    p
}

/// `posix_memalign`: 0, or `EINVAL` when `align` is not a power of two
/// multiple of `sizeof(void *)`, or `ENOMEM`; `errno` is left alone and
/// `*out` is written only on success.
///
/// # Safety
/// `out` is valid for a pointer write.
pub unsafe fn posix_memalign(out: *mut *mut u8, align: usize, size: usize) -> i32 {
    if !align.is_power_of_two() || align % core::mem::size_of::<usize>() != 0 {
        return libc::EINVAL;
    }
    let p = aligned(size, align);
    if p.is_null() {
        return libc::ENOMEM;
    }
    // SAFETY: the caller's out-parameter.
    unsafe { out.write(p) };
    0
}

/// `aligned_alloc`: `EINVAL` (null) unless `align` is a power of two.
pub fn aligned_alloc(align: usize, size: usize) -> *mut u8 {
    if !align.is_power_of_two() {
        set_errno(libc::EINVAL);
        return null_mut();
    }
    enomem_if_null(aligned(size, align))
}

/// `memalign`: a non-power-of-two `align` is rounded up (glibc); `EINVAL`
/// when that overflows.
pub fn memalign(align: usize, size: usize) -> *mut u8 {
    let Some(a) = align.checked_next_power_of_two() else {
        set_errno(libc::EINVAL);
        return null_mut();
    };
    enomem_if_null(aligned(size, a))
}

/// `valloc`: page-aligned.
pub fn valloc(size: usize) -> *mut u8 {
    enomem_if_null(aligned(size, PAGE))
}

/// `pvalloc`: page-aligned, size rounded up to whole pages (0 → one page).
pub fn pvalloc(size: usize) -> *mut u8 {
    let Some(rounded) = size.max(1).checked_next_multiple_of(PAGE) else {
        set_errno(libc::ENOMEM);
        return null_mut();
    };
    enomem_if_null(aligned(rounded, PAGE))
}

/// `malloc_usable_size`: the bytes usable at `ptr` (≥ the size requested;
/// the class size for a small block); 0 for null.
///
/// # Safety
/// `ptr` is null or a live block (invalid ones are reported).
pub unsafe fn malloc_usable_size(ptr: *mut u8) -> usize {
    if ptr.is_null() {
        return 0;
    }
    block_info(ptr, "malloc_usable_size").0
}
