//! STAND-IN for the `large` module (branch `large` writes the real one):
//! every size above `SMALL_MAX`, and alignments the classes cannot give, as
//! one OS mapping each with a header one OS page below the user pointer.
//! Same signatures as the real module; to be replaced at merge.

use crate::chunkmap;
use crate::os::{self, OS_PAGE};
use core::ptr::{null_mut, NonNull};

#[repr(C)]
struct Header {
    base: *mut u8,
    total: usize,
    align: usize,
    size: usize,
}

fn header(user: *mut u8) -> *mut Header {
    core::ptr::with_exposed_provenance_mut(user.addr() - OS_PAGE)
}

/// Allocates `size` bytes aligned to `align` from the OS; null on failure.
pub fn alloc(size: usize, align: usize, zeroed: bool) -> *mut u8 {
    let _ = zeroed; // fresh mappings are zero
    let lead = align.max(OS_PAGE);
    let Some(body) = os::round_up(size.max(1), OS_PAGE) else {
        return null_mut();
    };
    let Some(total) = body.checked_add(lead) else {
        return null_mut();
    };
    let Some(base) = os::map(total, lead) else {
        return null_mut();
    };
    // The header is read back through the user's pointer's address (whose
    // own provenance may cover the user's object only).
    let _ = base.as_ptr().expose_provenance();
    // SAFETY: `lead` bytes into a fresh mapping of `total > lead` bytes.
    let user = unsafe { base.as_ptr().add(lead) };
    if !chunkmap::add_large(user as usize) {
        // SAFETY: the mapping just made.
        unsafe { os::unmap(base, total, lead) };
        return null_mut();
    }
    // SAFETY: the header page lies inside the mapping, below `user`.
    unsafe {
        user.sub(OS_PAGE).cast::<Header>().write(Header {
            base: base.as_ptr(),
            total,
            align: lead,
            size,
        })
    };
    user
}

/// The last freed mapping, unmapped at the next free: the caller's `Box`
/// may still be protected while `free` runs (Miri's Stacked Borrows), so a
/// block's memory is not given back during its own `dealloc` call.
static RETIRED: core::sync::atomic::AtomicPtr<Header> =
    core::sync::atomic::AtomicPtr::new(core::ptr::null_mut());

/// Frees a large block.
///
/// # Safety
/// `ptr` is a live large block.
pub unsafe fn free(ptr: *mut u8, func: &str) {
    let _ = func;
    chunkmap::remove_large(ptr as usize);
    // SAFETY: forwarded contract: the header is one page below.
    let h = unsafe { header(ptr).read() };
    let retire = h.base.wrapping_add(h.align - OS_PAGE).cast::<Header>();
    let prev = RETIRED.swap(retire, core::sync::atomic::Ordering::AcqRel);
    if !prev.is_null() {
        // SAFETY: the previous retired block's header and mapping, no longer
        // referenced by anyone.
        unsafe {
            let p = prev.read();
            os::unmap(NonNull::new_unchecked(p.base), p.total, p.align);
        }
    }
}

/// Reallocates a large block (by copy in this stand-in).
///
/// # Safety
/// `ptr` is a live large block.
pub unsafe fn realloc(ptr: *mut u8, new_size: usize, align: usize) -> *mut u8 {
    // SAFETY: forwarded contract.
    let old = unsafe { usable_size(ptr) };
    let q = alloc(new_size, align, false);
    if !q.is_null() {
        // SAFETY: both blocks are live and at least `min` bytes.
        unsafe {
            core::ptr::copy_nonoverlapping(ptr, q, old.min(new_size));
            free(ptr, "realloc");
        }
    }
    q
}

/// Usable size of a large block.
///
/// # Safety
/// `ptr` is a live large block.
pub unsafe fn usable_size(ptr: *mut u8) -> usize {
    // SAFETY: forwarded contract.
    let h = unsafe { header(ptr).read() };
    h.total - h.align
}
