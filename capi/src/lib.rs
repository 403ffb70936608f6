//! `libhakmem.so`: hakmem's C allocation API, for linking (`-lhakmem`) or
//! for `LD_PRELOAD`. A thin shim that only exports symbols: every function
//! forwards to [`hakmem::libc_api`], where the C semantics live (errno,
//! glibc's conventions, invalid-pointer reports, record mode).
//!
//! No function here can unwind: `hakmem::libc_api` does not panic, and an
//! `extern "C"` function that did would abort (Rust ≥ 1.81), never unwind
//! into C.

#![allow(clippy::missing_safety_doc)] // C functions: the C standard is their contract.

use core::ffi::{c_int, c_void};
use hakmem::libc_api as c;

/// Rust code inside the library (if any allocates) uses hakmem directly,
/// not through the exported `malloc`.
#[global_allocator]
static ALLOC: hakmem::Hakmem = hakmem::Hakmem;

/// C `malloc`.
#[no_mangle]
pub extern "C" fn malloc(size: usize) -> *mut c_void {
    c::malloc(size).cast()
}

/// C `free`.
#[no_mangle]
pub unsafe extern "C" fn free(ptr: *mut c_void) {
    // SAFETY: the C contract of `free`.
    unsafe { c::free(ptr.cast()) }
}

/// Old name of `free` (SunOS, some glibc programs).
#[no_mangle]
pub unsafe extern "C" fn cfree(ptr: *mut c_void) {
    // SAFETY: the C contract of `free`.
    unsafe { c::free(ptr.cast()) }
}

/// C `calloc`.
#[no_mangle]
pub extern "C" fn calloc(n: usize, size: usize) -> *mut c_void {
    c::calloc(n, size).cast()
}

/// C `realloc`.
#[no_mangle]
pub unsafe extern "C" fn realloc(ptr: *mut c_void, size: usize) -> *mut c_void {
    // SAFETY: the C contract of `realloc`.
    unsafe { c::realloc(ptr.cast(), size).cast() }
}

/// `reallocarray` (BSD, glibc ≥ 2.26).
#[no_mangle]
pub unsafe extern "C" fn reallocarray(ptr: *mut c_void, n: usize, size: usize) -> *mut c_void {
    // SAFETY: the C contract of `reallocarray`.
    unsafe { c::reallocarray(ptr.cast(), n, size).cast() }
}

/// POSIX `posix_memalign`.
#[no_mangle]
pub unsafe extern "C" fn posix_memalign(out: *mut *mut c_void, align: usize, size: usize) -> c_int {
    // SAFETY: the C contract of `posix_memalign` (`out` is writable).
    unsafe { c::posix_memalign(out.cast(), align, size) }
}

/// C11 `aligned_alloc`.
#[no_mangle]
pub extern "C" fn aligned_alloc(align: usize, size: usize) -> *mut c_void {
    c::aligned_alloc(align, size).cast()
}

/// Obsolete `memalign`.
#[no_mangle]
pub extern "C" fn memalign(align: usize, size: usize) -> *mut c_void {
    c::memalign(align, size).cast()
}

/// Obsolete `valloc`.
#[no_mangle]
pub extern "C" fn valloc(size: usize) -> *mut c_void {
    c::valloc(size).cast()
}

/// Obsolete `pvalloc`.
#[no_mangle]
pub extern "C" fn pvalloc(size: usize) -> *mut c_void {
    c::pvalloc(size).cast()
}

/// glibc `malloc_usable_size`.
#[no_mangle]
pub unsafe extern "C" fn malloc_usable_size(ptr: *mut c_void) -> usize {
    // SAFETY: the C contract of `malloc_usable_size`.
    unsafe { c::malloc_usable_size(ptr.cast()) }
}
