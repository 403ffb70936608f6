//! The C++ allocation functions (`operator new`/`delete` in every form) with
//! C++ semantics, for the `hakmem-capi` shim, which exports them under their
//! Itanium-ABI names so that `new`/`delete` reach hakmem directly instead of
//! libstdc++'s versions, which call `malloc`/`free` one level down.
//!
//! - `new` of any size returns a unique block (`new(0)` too), 16-byte
//!   aligned, or the requested alignment for the `std::align_val_t` forms.
//! - On failure the throwing forms do what libstdc++ does: while
//!   `std::get_new_handler()` returns a handler, call it and retry; without
//!   one, throw `std::bad_alloc` (through libstdc++'s
//!   `std::__throw_bad_alloc`, so the exception is a real C++ one that the
//!   program can catch; the exported functions use the `C-unwind` ABI so it
//!   may pass through them). Both libstdc++ functions are looked up with
//!   `dlsym` on the first failure only; a process without libstdc++ (a C
//!   program calling `_Znwm` by hand) gets a one-line abort instead.
//! - The `std::nothrow_t` forms return null on failure. They do not call the
//!   new-handler: a handler may throw, and a C++ exception cannot be caught
//!   in Rust to turn it into null, as libstdc++ does.
//! - Every `delete` is `free`: hakmem finds a block's size class from its
//!   address, so the sized forms have nothing to skip, and the aligned
//!   forms free what the aligned `new` returned.
//!
//! Record mode records `new` as `malloc` (or as an aligned allocation) and
//! `delete` as `free`.

use super::{free, malloc, malloc_or, malloc_slow, memalign};
use core::ffi::c_void;
use core::sync::atomic::{AtomicPtr, Ordering};

/// A libstdc++ function found by name in the process (`dlsym`), cached.
struct Lazy {
    name: &'static [u8],
    addr: AtomicPtr<c_void>,
}

impl Lazy {
    const fn new(name: &'static [u8]) -> Self {
        Lazy {
            name,
            addr: AtomicPtr::new(core::ptr::null_mut()),
        }
    }

    /// The function's address, or null if the process has none.
    fn get(&self) -> *mut c_void {
        let a = self.addr.load(Ordering::Acquire);
        if !a.is_null() {
            return a;
        }
        // SAFETY: `name` is NUL-terminated; dlsym with RTLD_DEFAULT searches
        // the global scope (it allocates only to report errors).
        let a = unsafe { libc::dlsym(libc::RTLD_DEFAULT, self.name.as_ptr().cast()) };
        self.addr.store(a, Ordering::Release);
        a
    }
}

/// `std::get_new_handler()`.
static GET_NEW_HANDLER: Lazy = Lazy::new(b"_ZSt15get_new_handlerv\0");
/// `std::__throw_bad_alloc()`.
static THROW_BAD_ALLOC: Lazy = Lazy::new(b"_ZSt17__throw_bad_allocv\0");

/// After a failed allocation of a throwing `new`: calls the new-handler and
/// returns (the caller retries), or throws `std::bad_alloc`.
#[cold]
#[inline(never)]
fn handle_failure(size: usize) {
    let get = GET_NEW_HANDLER.get();
    if !get.is_null() {
        // SAFETY: `std::get_new_handler` has this signature and cannot throw.
        let get: extern "C" fn() -> Option<extern "C-unwind" fn()> =
            unsafe { core::mem::transmute(get) };
        if let Some(handler) = get() {
            // A user function: it frees memory and returns, or throws.
            handler();
            return;
        }
    }
    let throw = THROW_BAD_ALLOC.get();
    if throw.is_null() {
        crate::fatal!(
            "operator new: out of memory ({size} bytes) and no libstdc++ to throw std::bad_alloc"
        );
    }
    // SAFETY: `std::__throw_bad_alloc` has this signature and never returns
    // (it throws; the caller's frames are `C-unwind`).
    let throw: extern "C-unwind" fn() -> ! = unsafe { core::mem::transmute(throw) };
    throw()
}

/// `operator new(size_t)` and `operator new[](size_t)`: never null. The
/// fast path is `malloc`'s.
#[inline(always)]
pub fn new(size: usize) -> *mut u8 {
    malloc_or(size, || new_slow(size))
}

/// `new` past `malloc`'s fast path. `C-unwind`: it may throw, and the
/// exported `operator new` (`C-unwind` too) reaches it by a tail jump.
#[cold]
#[inline(never)]
extern "C-unwind" fn new_slow(size: usize) -> *mut u8 {
    let p = malloc_slow(size);
    if !p.is_null() {
        return p;
    }
    new_retry(size, 0)
}

/// `operator new(size_t, std::align_val_t)` and its `[]` form: never null.
#[inline]
pub fn new_aligned(size: usize, align: usize) -> *mut u8 {
    let p = memalign(align, size);
    if !p.is_null() {
        return p;
    }
    new_retry(size, align)
}

/// The throwing forms after a first failure: the new-handler loop.
#[cold]
#[inline(never)]
fn new_retry(size: usize, align: usize) -> *mut u8 {
    loop {
        handle_failure(size);
        let p = if align == 0 {
            malloc(size)
        } else {
            memalign(align, size)
        };
        if !p.is_null() {
            return p;
        }
    }
}

/// `operator new(size_t, const std::nothrow_t&)` and its `[]` form: null on
/// failure.
#[inline(always)]
pub fn new_nothrow(size: usize) -> *mut u8 {
    malloc(size)
}

/// `operator new(size_t, std::align_val_t, const std::nothrow_t&)` and its
/// `[]` form: null on failure.
#[inline]
pub fn new_aligned_nothrow(size: usize, align: usize) -> *mut u8 {
    memalign(align, size)
}

/// Every `operator delete` form (plain, `[]`, sized, aligned, nothrow).
///
/// # Safety
/// `ptr` is null or a live block of hakmem's, not used afterwards (invalid
/// ones are reported as by `free`).
#[inline(always)]
pub unsafe fn delete(ptr: *mut u8) {
    // SAFETY: forwarded contract.
    unsafe { free(ptr) }
}
