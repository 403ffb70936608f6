//! The global allocator: [`Hakmem`] on one process-wide
//! `Instance<StdBackend>` that lives in static memory and is initialised
//! lazily by an atomic state machine (no allocation, no std `Once`/`Mutex`).
//!
//! Fast paths (see `heap.rs`): `alloc` = TLS heap → class table → current
//! page → pop; `dealloc` = chunk-map byte → slot metadata → owner == this
//! heap → push. Everything else is `#[cold]`.

use crate::heap::{self, Heap};
use crate::instance::{Instance, InstanceConfig};
use crate::size_class::{class_for, class_of, SMALL_MAX};
use crate::stats::Stats;
use crate::sync::StdBackend;
use crate::tls::{self, EMPTY_HEAP};
use crate::{chunkmap, config, large};
use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::mem::MaybeUninit;
use core::ptr::{self, null_mut};
use core::sync::atomic::{AtomicU32, AtomicU8, Ordering};

/// hakmem as Rust's global allocator:
/// `#[global_allocator] static GLOBAL: hakmem::Hakmem = hakmem::Hakmem;`
#[derive(Clone, Copy, Debug, Default)]
pub struct Hakmem;

const UNINIT: u8 = 0;
const BUSY: u8 = 1;
const READY: u8 = 2;

struct GlobalInstance {
    state: AtomicU8,
    inst: UnsafeCell<MaybeUninit<Instance<StdBackend>>>,
}

// SAFETY: `inst` is written once by the thread that moved `state` from
// UNINIT to BUSY and read only after `state == READY` (Acquire).
unsafe impl Sync for GlobalInstance {}

static GLOBAL: GlobalInstance = GlobalInstance {
    state: AtomicU8::new(UNINIT),
    inst: UnsafeCell::new(MaybeUninit::uninit()),
};

/// The process-wide instance, initialised on first use; `None` if the OS
/// refuses the memory it needs.
pub(crate) fn instance() -> Option<&'static Instance<StdBackend>> {
    if GLOBAL.state.load(Ordering::Acquire) == READY {
        // SAFETY: READY observed with Acquire: initialised, never written again.
        return Some(unsafe { (*GLOBAL.inst.get()).assume_init_ref() });
    }
    init_slow()
}

#[cold]
#[inline(never)]
fn init_slow() -> Option<&'static Instance<StdBackend>> {
    loop {
        match GLOBAL
            .state
            .compare_exchange(UNINIT, BUSY, Ordering::Acquire, Ordering::Acquire)
        {
            Ok(_) => {
                if !crate::os::page_size_ok() {
                    crate::fatal!(
                        "unsupported OS page size {} (hakmem needs 4 KiB pages; a 16 or 64 KiB page kernel is not supported)",
                        crate::os::page_size()
                    );
                }
                let c = config::get();
                let cfg = InstanceConfig {
                    arena_cache: c.arena_cache,
                    purge_delay_ms: c.purge_delay_ms,
                    purge_threshold: c.purge_threshold_bytes / crate::size_class::SLOT_SIZE,
                    ..InstanceConfig::DEFAULT
                };
                let Some(inst) = Instance::build(cfg) else {
                    GLOBAL.state.store(UNINIT, Ordering::Release);
                    return None;
                };
                // SAFETY: we won UNINIT → BUSY: no one else reads or writes.
                unsafe { (*GLOBAL.inst.get()).write(inst) };
                GLOBAL.state.store(READY, Ordering::Release);
                // Registered once the instance is READY: both calls may
                // allocate (glibc grows its handler lists with malloc).
                // SAFETY: plain `extern "C"` functions that never unwind.
                unsafe {
                    libc::pthread_atfork(Some(fork_prepare), Some(fork_parent), Some(fork_child))
                };
                if c.stats {
                    // SAFETY: registering a plain `extern "C"` function.
                    unsafe { libc::atexit(print_stats_at_exit) };
                }
                // SAFETY: just initialised.
                return Some(unsafe { (*GLOBAL.inst.get()).assume_init_ref() });
            }
            Err(READY) => {
                // SAFETY: READY observed with Acquire.
                return Some(unsafe { (*GLOBAL.inst.get()).assume_init_ref() });
            }
            Err(_) => core::hint::spin_loop(),
        }
    }
}

/// A block of `class` from the calling thread's heap: the fast path, then
/// the heap's slow path, or, for the empty heap (no heap yet, or fast paths
/// diverted), [`alloc_on_fresh_heap`]. Null when out of memory.
#[inline(always)]
pub(crate) fn alloc_small(class: usize) -> *mut u8 {
    let h = tls::heap();
    // SAFETY: the calling thread's fast word; the slow path is a tail call
    // with nothing changed.
    unsafe { heap::alloc_or(h, class, || alloc_small_slow(h, class)) }
}

/// The slow path of [`alloc_small`].
#[cold]
#[inline(never)]
fn alloc_small_slow(h: *mut Heap<StdBackend>, class: usize) -> *mut u8 {
    if h == EMPTY_HEAP.get() {
        return alloc_on_fresh_heap(class);
    }
    // SAFETY: the calling thread's own heap, of the global instance.
    unsafe { heap::alloc_slow(h, class) }
}

/// The slow path of a thread whose fast word is the empty heap: allocate
/// on the heap it owns (the fast paths are diverted), or create that heap.
#[cold]
#[inline(never)]
pub(crate) fn alloc_on_fresh_heap(class: usize) -> *mut u8 {
    let Some(inst) = instance() else {
        return null_mut();
    };
    // Set when the fast paths are diverted (record mode), or when the
    // instance's initialisation allocated (its `pthread_atfork`) and so
    // created this thread's heap already.
    let own = tls::own_heap();
    if own != EMPTY_HEAP.get() {
        // SAFETY: the calling thread's own heap.
        return unsafe { heap::alloc(own, class) };
    }
    let Some(h) = inst.new_heap_raw() else {
        return null_mut();
    };
    tls::set_heap(h);
    arm_exit_hook(h);
    // SAFETY: `h` is now this thread's heap.
    unsafe { heap::alloc(h, class) }
}

/// The thread-exit hook: abandon `h`'s pages, keep `h` for reuse.
pub(crate) fn exit_thread_heap(h: *mut Heap<StdBackend>) {
    if let Some(inst) = instance() {
        // SAFETY: `h` is the exiting thread's heap, created by `inst`.
        let r = unsafe { inst.heap_ref(h) };
        r.exit();
    }
}

// Thread exit is observed with a `pthread_key_create` destructor (it runs
// after Rust's own TLS destructors have been registered, and again if a
// later destructor allocates: the key is re-armed by the next heap).

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
    tls::clear_heap();
    exit_thread_heap(h);
}

/// Arms the exit hook for `h`, the calling thread's new heap.
fn arm_exit_hook(h: *mut Heap<StdBackend>) {
    let key = exit_key();
    if key != u32::MAX {
        // SAFETY: `key` was created by `pthread_key_create`; the value is an
        // opaque pointer handed back to `on_thread_exit`.
        unsafe { libc::pthread_setspecific(key as libc::pthread_key_t, h.cast()) };
    }
}

/// `pthread_atfork` prepare handler: takes every lock of the allocator
/// (pool, fallback, large cache), so that no other thread is inside a
/// critical section when the address space is copied.
extern "C" fn fork_prepare() {
    if let Some(inst) = ready_instance() {
        inst.fork_prepare();
    }
    large::before_fork();
}

/// `pthread_atfork` parent handler: releases the locks.
extern "C" fn fork_parent() {
    large::after_fork_parent();
    if let Some(inst) = ready_instance() {
        inst.fork_parent();
    }
}

/// `pthread_atfork` child handler: resets the locks (and the lock-free
/// readers count) for the child's single thread. Heaps of the parent's
/// other threads stay as they are: their pages are never reclaimed in the
/// child, frees to them are remote frees.
extern "C" fn fork_child() {
    large::after_fork_child();
    if let Some(inst) = ready_instance() {
        inst.fork_child();
    }
}

/// The instance if it is initialised (never initialises it).
fn ready_instance() -> Option<&'static Instance<StdBackend>> {
    (GLOBAL.state.load(Ordering::Acquire) == READY)
        .then(instance)
        .flatten()
}

extern "C" fn print_stats_at_exit() {
    // Count this thread's pages too (the fast paths count per page).
    let h = tls::own_heap();
    // SAFETY: the calling thread's own heap (or the empty heap, skipped).
    if unsafe { !(*h).pool.is_null() } {
        // SAFETY: as above.
        unsafe { heap::fold_all_stats(&*h) };
    }
    let s = stats();
    let mut w = crate::diag::StackWriter::<8192>::new();
    let _ = s.write_report(&mut w);
    w.flush_to(2);
}

/// Process-wide statistics of the global allocator.
pub fn stats() -> Stats {
    let Some(inst) = ready_instance() else {
        return Stats::default();
    };
    let mut s = inst.stats();
    for (c, cs) in s.classes.iter_mut().enumerate() {
        cs.remote_frees += crate::stats::heapless_remote_frees(c);
    }
    s
}

/// Any request: a small class if one fits `size` at `align`, else `large`;
/// null when out of memory (or `align` is not a power of two). Never panics.
#[cold]
#[inline(never)]
pub(crate) fn alloc_general(size: usize, align: usize, zeroed: bool) -> *mut u8 {
    match class_for(size, align) {
        Some(c) => {
            let p = alloc_small(c);
            if zeroed && !p.is_null() {
                // SAFETY: a fresh block of at least `size` bytes.
                unsafe { p.write_bytes(0, size) };
            }
            p
        }
        None => large::alloc(size, align, zeroed),
    }
}

/// The class of a live small block, `None` for a large one.
#[inline]
fn small_class_of(ptr: *mut u8) -> Option<usize> {
    if chunkmap::entry(ptr as usize) != chunkmap::SUPERSLAB {
        return None;
    }
    // SAFETY: a live SuperSlab's header.
    let m = unsafe { &*crate::superslab::slot_of::<StdBackend>(ptr) };
    match m.state() {
        crate::superslab::SlotState::Active(c) => Some(c as usize),
        _ => crate::fatal!(
            "realloc(): invalid pointer {:p} (its page is not in use)",
            ptr
        ),
    }
}

// SAFETY: blocks are `layout.size()` bytes at `layout.align()`: small ones
// from a class whose block size is ≥ size and a multiple of the alignment,
// large ones from `large`; memory is never handed out twice while live.
unsafe impl GlobalAlloc for Hakmem {
    #[inline(always)]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let size = layout.size();
        if size <= SMALL_MAX && layout.align() <= 16 {
            return alloc_small(class_of(size));
        }
        alloc_general(size, layout.align(), false)
    }

    #[inline(always)]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // The free-list link (one word) is written through the caller's
        // pointer. Under Miri's Stacked Borrows a pointer to an object
        // smaller than a word does not cover that word: use the SuperSlab's
        // exposed provenance instead (compiled away outside Miri).
        let ptr = if cfg!(miri) && layout.size() < core::mem::size_of::<usize>() {
            ptr::with_exposed_provenance_mut(ptr.addr())
        } else {
            ptr
        };
        // SAFETY: the caller hands back a live block of ours.
        unsafe { heap::free(tls::heap(), ptr) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let size = layout.size();
        if size <= SMALL_MAX && layout.align() <= 16 {
            // SAFETY: the calling thread's heap; `size` fits its class.
            let p = unsafe { heap::alloc_zeroed_fast(tls::heap(), class_of(size), size) };
            if !p.is_null() {
                return p;
            }
        }
        alloc_general(size, layout.align(), true)
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // A block of at most SMALL_MAX bytes and alignment ≤ 16 is a small
        // block of `class_of(size)` (`alloc`): when the new size has the same
        // class it stays, decided from the sizes alone.
        if layout.size() <= SMALL_MAX
            && new_size <= SMALL_MAX
            && layout.align() <= 16
            && class_of(layout.size()) == class_of(new_size)
        {
            // The caller's pointer may carry provenance for the old size
            // only: hand back one from the SuperSlab's.
            return ptr::with_exposed_provenance_mut(ptr.addr());
        }
        // SAFETY: forwarded contract.
        unsafe { realloc_moving(ptr, layout, new_size) }
    }
}

/// `GlobalAlloc::realloc` past its in-place test by sizes.
///
/// # Safety
/// As `GlobalAlloc::realloc`.
#[inline(never)]
unsafe fn realloc_moving(ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
    let align = layout.align();
    let old_class = small_class_of(ptr);
    let new_class = class_for(new_size, align);
    if let (Some(o), Some(n)) = (old_class, new_class) {
        if o == n {
            // In place. The caller's pointer may carry provenance for
            // the old size only: hand back one from the SuperSlab's.
            return ptr::with_exposed_provenance_mut(ptr.addr());
        }
    }
    if old_class.is_none() && new_class.is_none() {
        // SAFETY: a live large block of ours.
        return unsafe { large::realloc(ptr, new_size, align) };
    }
    let q = alloc_general(new_size, align, false);
    if !q.is_null() {
        // SAFETY: both blocks are live; `min` bytes are valid in both.
        unsafe {
            ptr::copy_nonoverlapping(ptr, q, layout.size().min(new_size));
            Hakmem.dealloc(ptr, layout);
        }
    }
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_pattern(p: *mut u8, n: usize, v: u8) {
        for i in (0..n).step_by(61).chain(n.checked_sub(1)) {
            // SAFETY: `p` holds `n` initialised bytes.
            assert_eq!(unsafe { *p.add(i) }, v, "byte {i} of {n}");
        }
    }

    #[test]
    fn global_alloc_sizes_alignments_realloc() {
        let a = Hakmem;
        let mut blocks = Vec::new();
        for shift in 0..=16 {
            let align = 1usize << shift;
            for size in [1usize, 8, 16, 17, 100, 1024, 1025, 4000, 8192, 8193, 70_000] {
                let l = Layout::from_size_align(size, align).unwrap();
                // SAFETY: non-zero size.
                let p = unsafe { a.alloc(l) };
                assert!(!p.is_null());
                assert_eq!(p as usize % align, 0);
                // SAFETY: fresh block of `size` bytes.
                unsafe { p.write_bytes(shift as u8, size) };
                blocks.push((p, l, shift as u8));
            }
        }
        for (p, l, v) in blocks {
            check_pattern(p, l.size(), v);
            // SAFETY: ours, with its layout.
            unsafe { a.dealloc(p, l) };
        }
        // Zeroed memory and realloc growth/shrink keep contents.
        let l = Layout::from_size_align(48, 8).unwrap();
        // SAFETY: non-zero size.
        let mut p = unsafe { a.alloc_zeroed(l) };
        check_pattern(p, 48, 0);
        // SAFETY: ours.
        unsafe { p.write_bytes(7, 48) };
        let mut cur = l;
        for new in [64, 200, 5000, 20_000, 300, 40, 16] {
            // SAFETY: ours with its current layout.
            p = unsafe { a.realloc(p, cur, new) };
            check_pattern(p, cur.size().min(new).min(16), 7);
            cur = Layout::from_size_align(new, 8).unwrap();
        }
        // SAFETY: ours.
        unsafe { a.dealloc(p, cur) };
        assert!(stats().mapped_bytes > 0);
    }

    #[test]
    fn global_cross_thread_frees_and_thread_exit() {
        let a = Hakmem;
        let l = Layout::from_size_align(256, 16).unwrap();
        let n = if cfg!(miri) { 20 } else { 2000 };
        for _ in 0..3 {
            let ptrs: Vec<usize> = std::thread::spawn(move || {
                (0..n)
                    .map(|i| {
                        // SAFETY: non-zero size.
                        let p = unsafe { a.alloc(l) };
                        // SAFETY: fresh block.
                        unsafe { p.write_bytes(i as u8, 256) };
                        p as usize
                    })
                    .collect()
            })
            .join()
            .unwrap();
            // The allocating thread has exited: its pages are abandoned;
            // these frees are remote.
            std::thread::spawn(move || {
                for (i, p) in ptrs.into_iter().enumerate() {
                    check_pattern(p as *mut u8, 256, i as u8);
                    // SAFETY: live block with its layout.
                    unsafe { a.dealloc(p as *mut u8, l) };
                }
            })
            .join()
            .unwrap();
        }
        assert!(stats().abandoned_pages > 0);
    }

    #[test]
    #[cfg_attr(miri, ignore = "a thousand threads: far too slow under Miri")]
    fn thread_churn_reuses_heaps_and_keeps_memory_bounded() {
        let a = Hakmem;
        let l = Layout::from_size_align(200, 8).unwrap();
        let mut leftovers: Vec<usize> = Vec::new();
        for _batch in 0..125 {
            let handles: Vec<_> = (0..8)
                .map(|t| {
                    std::thread::spawn(move || {
                        let mut keep = Vec::new();
                        for i in 0..64 {
                            // SAFETY: non-zero size.
                            let p = unsafe { a.alloc(l) };
                            // SAFETY: fresh block.
                            unsafe { p.write_bytes((t + i) as u8, 200) };
                            if i % 2 == 0 {
                                keep.push(p as usize);
                            } else {
                                // SAFETY: ours.
                                unsafe { a.dealloc(p, l) };
                            }
                        }
                        keep
                    })
                })
                .collect();
            for h in handles {
                leftovers.extend(h.join().unwrap());
            }
            // Free the previous batches' blocks from this thread (remote).
            for p in leftovers.drain(..) {
                // SAFETY: live blocks of exited threads.
                unsafe { a.dealloc(p as *mut u8, l) };
            }
        }
        let s = stats();
        assert!(s.heaps < 200, "{} heaps for 1000 short threads", s.heaps);
        assert!(
            s.peak_mapped_bytes < 256 << 20,
            "peak {} bytes",
            s.peak_mapped_bytes
        );
        assert!(s.reclaims > 0);
    }

    /// Runs `case` in a child process (this test binary, filtered to this
    /// test) and returns its stderr; the child must abort.
    fn child_stderr(test: &str, case: &str) -> String {
        // Through `HAKMEM_TEST_RUNNER` (e.g. `qemu-aarch64`) when set, as
        // impl/tests/common does.
        let exe = std::env::current_exe().unwrap();
        let runner = std::env::var("HAKMEM_TEST_RUNNER").unwrap_or_default();
        let mut words = runner.split_whitespace();
        let mut cmd = match words.next() {
            Some(program) => {
                let mut cmd = std::process::Command::new(program);
                cmd.args(words).arg(exe);
                cmd
            }
            None => std::process::Command::new(exe),
        };
        let out = cmd
            .args([test, "--exact", "--nocapture", "--test-threads=1"])
            .env("HAKMEM_TEST_CHILD", case)
            .output()
            .unwrap();
        assert!(!out.status.success(), "the child did not abort");
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    #[test]
    #[cfg_attr(miri, ignore = "spawns a child process")]
    fn bad_frees_abort_with_a_message() {
        let a = Hakmem;
        let l = Layout::from_size_align(64, 8).unwrap();
        match std::env::var("HAKMEM_TEST_CHILD").as_deref() {
            Ok("foreign") => {
                let mut x = [0u8; 64];
                // SAFETY: deliberately invalid (the child aborts).
                unsafe { a.dealloc(x.as_mut_ptr(), l) };
                unreachable!();
            }
            Ok("double") => {
                // SAFETY: deliberately invalid (the child aborts).
                unsafe {
                    let p = a.alloc(l);
                    a.dealloc(p, l);
                    a.dealloc(p, l);
                }
                unreachable!();
            }
            Ok("misaligned") => {
                // A block of another thread's page, freed at a wrong offset.
                let p = std::thread::spawn(move || {
                    // SAFETY: non-zero size.
                    unsafe { a.alloc(l) as usize }
                })
                .join()
                .unwrap();
                // SAFETY: deliberately invalid (the child aborts).
                unsafe { a.dealloc((p + 8) as *mut u8, l) };
                unreachable!();
            }
            _ => {}
        }
        let name = "global::tests::bad_frees_abort_with_a_message";
        let e = child_stderr(name, "foreign");
        assert!(
            e.contains("hakmem: free(): invalid pointer 0x")
                && e.contains("not allocated by hakmem"),
            "{e}"
        );
        let e = child_stderr(name, "double");
        assert!(e.contains("double free"), "{e}");
        let e = child_stderr(name, "misaligned");
        assert!(e.contains("not the start of a 64-byte block"), "{e}");
    }

    #[test]
    fn allocation_in_tls_destructors_after_thread_exit() {
        struct AllocOnDrop;
        impl Drop for AllocOnDrop {
            fn drop(&mut self) {
                // Runs during thread teardown, possibly after hakmem's own
                // exit hook: must allocate and free without trouble.
                let v: Vec<u64> = (0..100).collect();
                assert_eq!(v.iter().sum::<u64>(), 4950);
                let s = format!("{v:?}");
                assert!(s.len() > 100);
            }
        }
        thread_local! {
            static D: AllocOnDrop = const { AllocOnDrop };
        }
        let n = if cfg!(miri) { 2 } else { 50 };
        for _ in 0..n {
            std::thread::spawn(|| {
                D.with(|_| {});
                let b = Box::new([7u8; 100]);
                assert_eq!(b[99], 7);
            })
            .join()
            .unwrap();
        }
    }
}
