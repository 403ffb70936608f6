//! Thread-local glue of the global allocator: the calling thread's heap
//! pointer, and the thread-exit hook that abandons its pages.
//!
//! The pointer is a `const`-initialised `thread_local!` without destructor
//! (a plain `#[thread_local]` access, usable at any time, also while other
//! TLS destructors run). It starts at the static empty heap, whose current
//! pages have no free block and which owns nothing, so the fast paths need
//! no "initialised?" test: the first malloc falls into the slow path, which
//! creates the real heap; a free by a thread without heap is a remote free.
//!
//! Thread exit is observed with a `pthread_key_create` destructor (it runs
//! after Rust's own TLS destructors have been registered, and again if a
//! later destructor allocates: the key is re-armed by the next heap).

use crate::global::{self, EMPTY_HEAP};
use crate::heap::Heap;
use crate::sync::StdBackend;
use core::cell::Cell;
use core::sync::atomic::{AtomicU32, Ordering};

thread_local! {
    static HEAP: Cell<*mut Heap<StdBackend>> =
        const { Cell::new(EMPTY_HEAP.get()) };
}

/// The calling thread's heap (the static empty heap before its first
/// allocation and after its exit).
#[inline(always)]
pub(crate) fn heap() -> *mut Heap<StdBackend> {
    HEAP.with(|h| h.get())
}

/// Installs `h` as the calling thread's heap and arms the exit hook.
pub(crate) fn set_heap(h: *mut Heap<StdBackend>) {
    HEAP.with(|c| c.set(h));
    let key = exit_key();
    if key != u32::MAX {
        // SAFETY: `key` was created by `pthread_key_create`; the value is an
        // opaque pointer handed back to `on_thread_exit`.
        unsafe { libc::pthread_setspecific(key as libc::pthread_key_t, h.cast()) };
    }
}

const KEY_UNINIT: u32 = u32::MAX - 1;
static KEY: AtomicU32 = AtomicU32::new(KEY_UNINIT);

/// The pthread key whose destructor abandons a heap (`u32::MAX` if none
/// could be created: heaps of exiting threads then leak, nothing breaks).
fn exit_key() -> u32 {
    let k = KEY.load(Ordering::Acquire);
    if k != KEY_UNINIT {
        return k;
    }
    let mut key: libc::pthread_key_t = 0;
    // SAFETY: `key` is a valid out-parameter; the destructor is an
    // `extern "C"` function that never unwinds.
    let rc = unsafe { libc::pthread_key_create(&mut key, Some(on_thread_exit)) };
    let new = if rc == 0 { key as u32 } else { u32::MAX };
    match KEY.compare_exchange(KEY_UNINIT, new, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => new,
        Err(winner) => {
            if rc == 0 {
                // SAFETY: the key we created and nobody uses.
                unsafe { libc::pthread_key_delete(key) };
            }
            winner
        }
    }
}

extern "C" fn on_thread_exit(p: *mut libc::c_void) {
    let h = p.cast::<Heap<StdBackend>>();
    if h.is_null() {
        return;
    }
    HEAP.with(|c| c.set(EMPTY_HEAP.get()));
    global::exit_thread_heap(h);
}
