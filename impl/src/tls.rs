//! Thread-local glue of the global allocator: the calling thread's heap
//! words, and the static empty heap they start at. (The thread-exit hook
//! that abandons a heap's pages is `global`'s, which owns the instance.)
//!
//! # Two words per thread
//! - The *fast word* ([`heap`]) is what the malloc/free fast paths read. It
//!   starts at the static empty heap, whose current pages have no free block
//!   and which owns nothing, so the fast paths need no "initialised?" test:
//!   the first malloc falls into the slow path, which creates the real heap;
//!   a free by a thread without heap is a remote free.
//! - The *own word* ([`own_heap`]) is the heap the thread owns, read on slow
//!   paths only. The two differ while the fast paths are *diverted*
//!   ([`divert_fast_paths`]): the C API's record mode keeps every fast word
//!   at the empty heap, so that each request reaches a slow path, where the
//!   recorder sees it, and the fast paths carry no record-mode test at all.
//!
//! # The fast word's TLS model
//! With the `initial-exec-tls` feature (on for `libhakmem.so`, through
//! `hakmem-capi`) on x86-64 and aarch64 Linux, the fast word is a `.tdata`
//! symbol defined in assembly and read with the initial-exec model: its
//! offset from the thread pointer from a GOT slot (`@GOTTPOFF`, aarch64
//! `:gottprel:`), then a load relative to the thread pointer (`%fs`,
//! `tpidr_el0`): two instructions on x86-64, four on aarch64, and no call. A Rust `thread_local!` in a shared object
//! uses the general-dynamic model instead: a call of `__tls_get_addr` per
//! access. The price of initial-exec is a place in the static TLS block: a
//! library loaded at start-up (linked, or `LD_PRELOAD`) always has one; one
//! loaded late with `dlopen` takes 8 bytes of glibc's static TLS surplus,
//! and `dlopen` fails with "cannot allocate memory in static TLS block"
//! once that is used up (docs/architecture.md, "Thread-local state").
//! Without the feature (Rust executables, which get the local-exec model for
//! a `thread_local!`, one `%fs` load), on other targets, and under Miri, the
//! fast word is a `const`-initialised `thread_local!` without destructor.
//! Either way it is usable at any time, also while TLS destructors run.

use crate::heap::{Heap, HeapLocal, List};
use crate::page::PageLocal;
use crate::size_class::NUM_CLASSES;
use crate::stage1::FbLink;
use crate::stats::HeapCounters;
use crate::superslab::{PageOwner, SlotMeta};
use crate::sync::{StdBackend, StdCell};
use core::cell::{Cell, UnsafeCell};
use core::ptr::{self, null_mut};
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, Ordering};

type HeapPtr = *mut Heap<StdBackend>;

/// A static that holds a value with raw pointers (the empty page/heap).
/// Transparent: its address is the value's (`tls` names the empty heap by
/// its symbol).
#[repr(transparent)]
pub(crate) struct StaticCell<T>(UnsafeCell<T>);
// SAFETY: the empty page and heap are never written: the empty page has no
// free block (so nothing pops from it) and is never owned; the empty heap
// is never an owner and its slow path switches to a real heap first.
unsafe impl<T> Sync for StaticCell<T> {}

impl<T> StaticCell<T> {
    pub(crate) const fn get(&self) -> *mut T {
        self.0.get()
    }
}

static EMPTY_PAGE: StaticCell<SlotMeta<StdBackend>> = StaticCell(UnsafeCell::new(SlotMeta {
    local: StdCell::new_const(PageLocal::new()),
    state: AtomicU32::new(0),
    used: AtomicU32::new(0),
    owner: AtomicPtr::new(null_mut()),
    next_abandoned: AtomicPtr::new(null_mut()),
    empty_since: AtomicU64::new(0),
    fb: StdCell::new_const(FbLink::new()),
}));

/// The heap every thread starts with (and returns to at exit).
pub(crate) static EMPTY_HEAP: StaticCell<Heap<StdBackend>> = StaticCell(UnsafeCell::new(Heap {
    owner: PageOwner {
        full_hint: AtomicU32::new(0),
    },
    local: StdCell::new_const(HeapLocal {
        current: [EMPTY_PAGE.get(); NUM_CLASSES],
        partial: [List::EMPTY; NUM_CLASSES],
        full: [List::EMPTY; NUM_CLASSES],
    }),
    counters: HeapCounters::new(),
    alive: AtomicU32::new(0),
    index: u32::MAX,
    pool: ptr::null(),
    next_all: AtomicPtr::new(null_mut()),
    next_free: StdCell::new_const(null_mut()),
}));

#[cfg(all(
    feature = "initial-exec-tls",
    any(target_arch = "x86_64", target_arch = "aarch64"),
    target_os = "linux",
    not(miri)
))]
mod fast_word {
    //! The fast word as an initial-exec `.tdata` symbol (see the module
    //! above), local to its object (no `.globl`).

    use super::HeapPtr;
    use super::EMPTY_HEAP;

    core::arch::global_asm!(
        ".pushsection .tdata.__hakmem_fast_heap,\"awT\",@progbits",
        ".p2align 3",
        ".type __hakmem_fast_heap, @tls_object",
        ".size __hakmem_fast_heap, 8",
        "__hakmem_fast_heap:",
        // The initial value of every thread's word: the empty heap (a
        // relocation of the TLS image, applied before any thread copies it).
        ".quad {empty}",
        ".popsection",
        empty = sym EMPTY_HEAP,
    );

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    pub(super) fn get() -> HeapPtr {
        let h: HeapPtr;
        // The word's offset from the thread pointer comes from a GOT slot
        // the dynamic linker filled (or an immediate after the linker
        // relaxed it); no memory of the Rust abstract machine is touched.
        // SAFETY: reads the calling thread's own word at `%fs:offset`.
        unsafe {
            core::arch::asm!(
                "mov {h}, qword ptr [rip + __hakmem_fast_heap@GOTTPOFF]",
                "mov {h}, qword ptr fs:[{h}]",
                h = out(reg) h,
                options(nostack, readonly, preserves_flags, pure),
            );
        }
        h
    }

    #[cfg(target_arch = "x86_64")]
    #[inline]
    pub(super) fn set(h: HeapPtr) {
        // SAFETY: writes the calling thread's own word (as `get`).
        unsafe {
            core::arch::asm!(
                "mov {off}, qword ptr [rip + __hakmem_fast_heap@GOTTPOFF]",
                "mov qword ptr fs:[{off}], {h}",
                off = out(reg) _,
                h = in(reg) h,
                options(nostack, preserves_flags),
            );
        }
    }

    #[cfg(target_arch = "aarch64")]
    #[inline(always)]
    pub(super) fn get() -> HeapPtr {
        let h: HeapPtr;
        // As on x86-64: the offset from a GOT slot (`:gottprel:`), added to
        // the thread pointer (`tpidr_el0`).
        // SAFETY: reads the calling thread's own word at `tpidr_el0 + offset`.
        unsafe {
            core::arch::asm!(
                "adrp {h}, :gottprel:__hakmem_fast_heap",
                "ldr {h}, [{h}, #:gottprel_lo12:__hakmem_fast_heap]",
                "mrs {tp}, tpidr_el0",
                "ldr {h}, [{tp}, {h}]",
                h = out(reg) h,
                tp = out(reg) _,
                options(nostack, readonly, preserves_flags, pure),
            );
        }
        h
    }

    #[cfg(target_arch = "aarch64")]
    #[inline]
    pub(super) fn set(h: HeapPtr) {
        // SAFETY: writes the calling thread's own word (as `get`).
        unsafe {
            core::arch::asm!(
                "adrp {off}, :gottprel:__hakmem_fast_heap",
                "ldr {off}, [{off}, #:gottprel_lo12:__hakmem_fast_heap]",
                "mrs {tp}, tpidr_el0",
                "str {h}, [{tp}, {off}]",
                off = out(reg) _,
                tp = out(reg) _,
                h = in(reg) h,
                options(nostack, preserves_flags),
            );
        }
    }
}

#[cfg(not(all(
    feature = "initial-exec-tls",
    any(target_arch = "x86_64", target_arch = "aarch64"),
    target_os = "linux",
    not(miri)
)))]
mod fast_word {
    //! The fast word as a Rust `thread_local!` (see the module above).

    use super::HeapPtr;
    use super::EMPTY_HEAP;
    use core::cell::Cell;

    thread_local! {
        static FAST: Cell<HeapPtr> = const { Cell::new(EMPTY_HEAP.get()) };
    }

    #[inline(always)]
    pub(super) fn get() -> HeapPtr {
        FAST.with(|h| h.get())
    }

    #[inline]
    pub(super) fn set(h: HeapPtr) {
        FAST.with(|c| c.set(h));
    }
}

thread_local! {
    /// The heap this thread owns (the empty heap before its first
    /// allocation and after its exit). Slow paths only.
    static OWN: Cell<HeapPtr> = const { Cell::new(EMPTY_HEAP.get()) };
}

/// While set, [`set_heap`] leaves fast words at the empty heap.
static DIVERTED: AtomicBool = AtomicBool::new(false);

/// The heap the calling thread's fast paths use: its own heap, or the
/// static empty heap (before its first allocation, after its exit, and
/// while the fast paths are diverted).
#[inline(always)]
pub(crate) fn heap() -> HeapPtr {
    fast_word::get()
}

/// The heap the calling thread owns (the static empty heap if none).
#[inline]
pub(crate) fn own_heap() -> HeapPtr {
    OWN.with(|h| h.get())
}

/// Installs `h` as the calling thread's own heap (and as its fast word
/// unless the fast paths are diverted). The caller arms the exit hook.
pub(crate) fn set_heap(h: HeapPtr) {
    OWN.with(|c| c.set(h));
    let diverted = DIVERTED.load(Ordering::Acquire);
    fast_word::set(if diverted { EMPTY_HEAP.get() } else { h });
}

/// Puts both of the calling thread's words back at the empty heap (its
/// exit: later requests of the thread's TLS destructors find no heap).
pub(crate) fn clear_heap() {
    fast_word::set(EMPTY_HEAP.get());
    OWN.with(|c| c.set(EMPTY_HEAP.get()));
}

/// Diverts every thread's fast paths to the slow paths for the rest of the
/// process (fork children included): fast words stay at the empty heap.
///
/// Sets the calling thread's fast word at once. Other threads' words are
/// not reachable: the caller diverts before any other thread has a heap
/// (record mode decides at the process's first allocation, before a second
/// thread can exist: `pthread_create` itself allocates).
pub(crate) fn divert_fast_paths() {
    DIVERTED.store(true, Ordering::Release);
    fast_word::set(EMPTY_HEAP.get());
}
