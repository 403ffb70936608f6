//! `libhakmem.so`: hakmem's C allocation API and the C++ `operator new`/
//! `delete` family, for linking (`-lhakmem`) or for `LD_PRELOAD`. A thin
//! shim that only exports symbols: every function
//! forwards to [`hakmem::libc_api`], where the C semantics live (errno,
//! glibc's conventions, invalid-pointer reports, record mode).
//!
//! No C function here can unwind: `hakmem::libc_api` does not panic, and an
//! `extern "C"` function that did would abort (Rust ≥ 1.81), never unwind
//! into C. The throwing C++ `operator new` forms are `extern "C-unwind"`:
//! the one unwind through them is the `std::bad_alloc` that libstdc++
//! throws for them on failure.

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

// ------------------------------------------------------- glibc aliases --
// glibc's own names for its allocator, which some programs and libraries
// call directly (to reach "the real malloc" under an interposer).

/// glibc `__libc_malloc`.
#[no_mangle]
pub extern "C" fn __libc_malloc(size: usize) -> *mut c_void {
    c::malloc(size).cast()
}

/// glibc `__libc_free`.
#[no_mangle]
pub unsafe extern "C" fn __libc_free(ptr: *mut c_void) {
    // SAFETY: the C contract of `free`.
    unsafe { c::free(ptr.cast()) }
}

/// glibc `__libc_calloc`.
#[no_mangle]
pub extern "C" fn __libc_calloc(n: usize, size: usize) -> *mut c_void {
    c::calloc(n, size).cast()
}

/// glibc `__libc_realloc`.
#[no_mangle]
pub unsafe extern "C" fn __libc_realloc(ptr: *mut c_void, size: usize) -> *mut c_void {
    // SAFETY: the C contract of `realloc`.
    unsafe { c::realloc(ptr.cast(), size).cast() }
}

/// glibc `__libc_memalign`.
#[no_mangle]
pub extern "C" fn __libc_memalign(align: usize, size: usize) -> *mut c_void {
    c::memalign(align, size).cast()
}

/// glibc `__posix_memalign`.
#[no_mangle]
pub unsafe extern "C" fn __posix_memalign(
    out: *mut *mut c_void,
    align: usize,
    size: usize,
) -> c_int {
    // SAFETY: the C contract of `posix_memalign` (`out` is writable).
    unsafe { c::posix_memalign(out.cast(), align, size) }
}

// ----------------------------------------------------------------- C++ --
// Every `operator new`/`delete` of the Itanium C++ ABI (x86-64 and aarch64
// Linux: `size_t` is `m`, `std::align_val_t` is a `size_t` enum, a
// `const std::nothrow_t&` is a pointer), with C++ semantics
// (`hakmem::libc_api::cxx`). The throwing forms are `C-unwind`: a
// `std::bad_alloc` thrown on failure passes through them to the caller.

/// Exports `operator new` forms: `name(size[, align]) -> cxx::f(...)`.
macro_rules! new_fns {
    ($($(#[$m:meta])* $name:ident ($($arg:ident : $t:ty),*) $abi:literal => $f:ident ($($call:expr),*);)*) => {$(
        $(#[$m])*
        #[no_mangle]
        pub extern $abi fn $name($($arg: $t),*) -> *mut c_void {
            c::cxx::$f($($call),*).cast()
        }
    )*};
}

/// `const std::nothrow_t&`: never read.
type NoThrow = *const c_void;

new_fns! {
    /// `operator new(size_t)`.
    _Znwm(size: usize) "C-unwind" => new(size);
    /// `operator new[](size_t)`.
    _Znam(size: usize) "C-unwind" => new(size);
    /// `operator new(size_t, std::align_val_t)`.
    _ZnwmSt11align_val_t(size: usize, align: usize) "C-unwind" => new_aligned(size, align);
    /// `operator new[](size_t, std::align_val_t)`.
    _ZnamSt11align_val_t(size: usize, align: usize) "C-unwind" => new_aligned(size, align);
    /// `operator new(size_t, const std::nothrow_t&)`.
    _ZnwmRKSt9nothrow_t(size: usize, _nt: NoThrow) "C" => new_nothrow(size);
    /// `operator new[](size_t, const std::nothrow_t&)`.
    _ZnamRKSt9nothrow_t(size: usize, _nt: NoThrow) "C" => new_nothrow(size);
    /// `operator new(size_t, std::align_val_t, const std::nothrow_t&)`.
    _ZnwmSt11align_val_tRKSt9nothrow_t(size: usize, align: usize, _nt: NoThrow) "C"
        => new_aligned_nothrow(size, align);
    /// `operator new[](size_t, std::align_val_t, const std::nothrow_t&)`.
    _ZnamSt11align_val_tRKSt9nothrow_t(size: usize, align: usize, _nt: NoThrow) "C"
        => new_aligned_nothrow(size, align);
}

/// Exports `operator delete` forms: every one frees its first argument.
macro_rules! delete_fns {
    ($($(#[$m:meta])* $name:ident ($($arg:ident : $t:ty),*);)*) => {$(
        $(#[$m])*
        #[no_mangle]
        pub unsafe extern "C" fn $name(ptr: *mut c_void $(, $arg: $t)*) {
            // SAFETY: the C++ contract of `operator delete`: null or a block
            // of the matching `new`, not used afterwards.
            unsafe { c::cxx::delete(ptr.cast()) }
        }
    )*};
}

delete_fns! {
    /// `operator delete(void*)`.
    _ZdlPv();
    /// `operator delete[](void*)`.
    _ZdaPv();
    /// `operator delete(void*, size_t)`.
    _ZdlPvm(_size: usize);
    /// `operator delete[](void*, size_t)`.
    _ZdaPvm(_size: usize);
    /// `operator delete(void*, std::align_val_t)`.
    _ZdlPvSt11align_val_t(_align: usize);
    /// `operator delete[](void*, std::align_val_t)`.
    _ZdaPvSt11align_val_t(_align: usize);
    /// `operator delete(void*, size_t, std::align_val_t)`.
    _ZdlPvmSt11align_val_t(_size: usize, _align: usize);
    /// `operator delete[](void*, size_t, std::align_val_t)`.
    _ZdaPvmSt11align_val_t(_size: usize, _align: usize);
    /// `operator delete(void*, const std::nothrow_t&)`.
    _ZdlPvRKSt9nothrow_t(_nt: NoThrow);
    /// `operator delete[](void*, const std::nothrow_t&)`.
    _ZdaPvRKSt9nothrow_t(_nt: NoThrow);
    /// `operator delete(void*, std::align_val_t, const std::nothrow_t&)`.
    _ZdlPvSt11align_val_tRKSt9nothrow_t(_align: usize, _nt: NoThrow);
    /// `operator delete[](void*, std::align_val_t, const std::nothrow_t&)`.
    _ZdaPvSt11align_val_tRKSt9nothrow_t(_align: usize, _nt: NoThrow);
}
