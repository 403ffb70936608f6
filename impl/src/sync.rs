//! The synchronization facade: every atomic, every owner-local cell and every
//! free-list link word of the protocol code goes through a [`Backend`].
//!
//! Production uses [`StdBackend`] (std atomics, `UnsafeCell`, plain pointer
//! reads and writes: zero cost). The `verify` crate instantiates the *same*
//! protocol code with loom and shuttle backends (local newtypes around their
//! types), with an observer that records every protocol step, and with one
//! backend per injected bug ([`Mutant`]). No cargo feature and no `cfg` swaps
//! atomics (see `docs/verification.md` and issue 4).
//!
//! Rule: outside leaf modules that are not protocol code (`os`, `chunkmap`,
//! `config`, the statistics counters of the global instance), nothing in the
//! crate names `core::sync::atomic` types; [`Ordering`] is re-exported here.

pub use core::sync::atomic::Ordering;

use crate::observe::Event;
use core::sync::atomic as std_atomic;

/// Operations of an atomic cell holding a `T` (an integer or a pointer).
pub trait AtomicOps<T: Copy>: Send + Sync {
    /// A new atomic holding `v`.
    fn new(v: T) -> Self;
    /// Atomic load.
    fn load(&self, order: Ordering) -> T;
    /// Atomic store.
    fn store(&self, v: T, order: Ordering);
    /// Atomic swap; returns the previous value.
    fn swap(&self, v: T, order: Ordering) -> T;
    /// Strong compare-and-exchange.
    fn compare_exchange(
        &self,
        current: T,
        new: T,
        success: Ordering,
        failure: Ordering,
    ) -> Result<T, T>;
    /// Weak compare-and-exchange (may fail spuriously).
    fn compare_exchange_weak(
        &self,
        current: T,
        new: T,
        success: Ordering,
        failure: Ordering,
    ) -> Result<T, T>;
}

/// Read-modify-write operations of an atomic integer.
pub trait AtomicIntOps<T: Copy>: AtomicOps<T> {
    /// Wrapping add; returns the previous value.
    fn fetch_add(&self, v: T, order: Ordering) -> T;
    /// Wrapping subtract; returns the previous value.
    fn fetch_sub(&self, v: T, order: Ordering) -> T;
    /// Bitwise or; returns the previous value.
    fn fetch_or(&self, v: T, order: Ordering) -> T;
    /// Bitwise and; returns the previous value.
    fn fetch_and(&self, v: T, order: Ordering) -> T;
}

/// A cell for owner-local state (a page's free list and counters, a heap's
/// page lists): only the owner touches it, so it needs no atomics, but a
/// checker backend can track each access (like loom's `UnsafeCell`).
pub trait CellOps<T>: Send + Sync {
    /// A new cell holding `v`.
    fn new(v: T) -> Self;
    /// Shared access to the value.
    fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R;
    /// Exclusive access to the value. The protocol guarantees that no other
    /// access to this cell overlaps this one (only the owner touches it).
    fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R;
}

/// Injected bugs. `Mutant::None` in production; `verify` defines one backend
/// per other variant and expects a checker to catch it (issue 4). The
/// protocol code tests `B::MUTANT == Mutant::X` where it implements variant
/// `X`; each test folds away at compile time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mutant {
    /// The real protocol.
    None,
    /// The remote-free push is published with `Relaxed` instead of `Release`.
    RemotePushRelaxed,
    /// A counter describing a remote free is bumped before the push it
    /// describes (rpmalloc #281).
    CountBeforePush,
    /// The abandoned list is popped one page at a time with CAS (ABA) instead
    /// of being swapped out whole (mimalloc 683d8998).
    AbandonedPopOneByOne,
    /// The full-page notification (`full_hint`, hakmem's form of the
    /// "delayed free" state) consumed after the owner collected the pages
    /// it announces instead of before: a remote free that lands in between
    /// is stranded on a full page (mimalloc #204's window; in hakmem a
    /// block never leaves its page, so abandon and reclaim have no such
    /// window: the notification hand-off is where it remains).
    DrainBeforeOwnershipChange,
    /// The owner id is left on an abandoned page (mimalloc 12257e5b).
    AbandonKeepsOwner,
    /// Two threads may both release the same empty slot (claimed with a
    /// load + store instead of a CAS; mimalloc #1320).
    DoubleRelease,
    /// Check-then-increment of `empty_count` instead of an atomic RMW
    /// (jemalloc be9548f2).
    EmptyCountCheckThenAct,
    /// The owner (or lock) chosen from the current thread instead of from
    /// the slab (jemalloc #1258).
    OwnerFromCurrentThread,
    /// A delta not flushed before the slot is released.
    ReleaseWithoutFlush,
    /// A stage-1 node lost when the pool is exhausted (the entry is dropped
    /// instead of going to the fallback).
    PoolExhaustedDropsEntry,
    /// A stage-1 claim does not give its node back to the pool.
    Stage1LeaksNode,
    /// A stage-1 claim does not re-check that the slot is still `Empty`.
    Stage1NoRecheck,
    /// `PageFull` skips the re-check of the remote list.
    PageFullNoRecheck,
    /// `Release` judged by `total_active == 0` instead of the slot states.
    ReleaseByTotalActive,
}

/// The synchronization backend the protocols are generic over.
pub trait Backend: 'static + Send + Sync + Sized {
    /// Atomic `usize`.
    type AtomicUsize: AtomicIntOps<usize>;
    /// Atomic `u32`.
    type AtomicU32: AtomicIntOps<u32>;
    /// Atomic `u64`.
    type AtomicU64: AtomicIntOps<u64>;
    /// Atomic pointer.
    type AtomicPtr<T: 'static>: AtomicOps<*mut T>;
    /// Owner-local cell.
    type Cell<T: 'static>: CellOps<T>;

    /// The injected bug; `Mutant::None` in production.
    const MUTANT: Mutant = Mutant::None;
    /// Whether [`Backend::observe`] is called at all (`false` folds every
    /// observer call away).
    const OBSERVE: bool = false;
    /// The threshold flush bound (protocol.md invariant 7): `None` means the
    /// page capacity, which bounds `|delta|` structurally, so production
    /// has no threshold test on the fast paths. `Some(k)` adds a threshold
    /// flush after each `AllocFast`/`FreeLocal` whose `|delta| ≥ k`.
    const FLUSH_THRESHOLD: Option<u32> = None;

    /// Reports a protocol step (see `docs/protocol.md`).
    #[inline(always)]
    fn observe(_ev: &Event) {}

    /// Called in every spin loop (std: `spin_loop`; checkers: yield).
    fn spin_hint();

    /// Reads the "next" link stored in the first word of a free block.
    ///
    /// # Safety
    /// `slot` is the first word of a block of a live SuperSlab that is on a
    /// free list or remote list that the caller may read (owner-local, or
    /// acquired through the remote head).
    unsafe fn load_link(slot: *const *mut u8) -> *mut u8;

    /// Writes the "next" link of a free block.
    ///
    /// # Safety
    /// `slot` is the first word of a block the caller owns exclusively (it
    /// is being freed, or carved, by the caller).
    unsafe fn store_link(slot: *mut *mut u8, v: *mut u8);
}

/// The production backend: std atomics, `UnsafeCell`, plain link accesses.
#[derive(Debug)]
pub struct StdBackend;

/// [`StdBackend`]'s cell: an `UnsafeCell` whose accesses are guarded by the
/// ownership protocol.
#[repr(transparent)]
pub struct StdCell<T>(core::cell::UnsafeCell<T>);

impl<T> StdCell<T> {
    /// A cell in a `const` context (statics of the global instance).
    pub const fn new_const(v: T) -> Self {
        Self(core::cell::UnsafeCell::new(v))
    }
}

// SAFETY: the protocol gives each cell one owner at a time; hand-overs go
// through Release/Acquire atomics (remote/abandoned lists, slot state CAS).
unsafe impl<T> Sync for StdCell<T> {}
// SAFETY: as above; the value moves with its owner.
unsafe impl<T> Send for StdCell<T> {}

impl<T> CellOps<T> for StdCell<T> {
    #[inline(always)]
    fn new(v: T) -> Self {
        Self::new_const(v)
    }
    #[inline(always)]
    fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.0.get())
    }
    #[inline(always)]
    fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}

macro_rules! std_atomic_ops {
    ($atomic:ty, $t:ty) => {
        impl AtomicOps<$t> for $atomic {
            #[inline(always)]
            fn new(v: $t) -> Self {
                <$atomic>::new(v)
            }
            #[inline(always)]
            fn load(&self, order: Ordering) -> $t {
                <$atomic>::load(self, order)
            }
            #[inline(always)]
            fn store(&self, v: $t, order: Ordering) {
                <$atomic>::store(self, v, order)
            }
            #[inline(always)]
            fn swap(&self, v: $t, order: Ordering) -> $t {
                <$atomic>::swap(self, v, order)
            }
            #[inline(always)]
            fn compare_exchange(
                &self,
                current: $t,
                new: $t,
                success: Ordering,
                failure: Ordering,
            ) -> Result<$t, $t> {
                <$atomic>::compare_exchange(self, current, new, success, failure)
            }
            #[inline(always)]
            fn compare_exchange_weak(
                &self,
                current: $t,
                new: $t,
                success: Ordering,
                failure: Ordering,
            ) -> Result<$t, $t> {
                <$atomic>::compare_exchange_weak(self, current, new, success, failure)
            }
        }
    };
}

macro_rules! std_atomic_int_ops {
    ($atomic:ty, $t:ty) => {
        std_atomic_ops!($atomic, $t);
        impl AtomicIntOps<$t> for $atomic {
            #[inline(always)]
            fn fetch_add(&self, v: $t, order: Ordering) -> $t {
                <$atomic>::fetch_add(self, v, order)
            }
            #[inline(always)]
            fn fetch_sub(&self, v: $t, order: Ordering) -> $t {
                <$atomic>::fetch_sub(self, v, order)
            }
            #[inline(always)]
            fn fetch_or(&self, v: $t, order: Ordering) -> $t {
                <$atomic>::fetch_or(self, v, order)
            }
            #[inline(always)]
            fn fetch_and(&self, v: $t, order: Ordering) -> $t {
                <$atomic>::fetch_and(self, v, order)
            }
        }
    };
}

std_atomic_int_ops!(std_atomic::AtomicUsize, usize);
std_atomic_int_ops!(std_atomic::AtomicU32, u32);
std_atomic_int_ops!(std_atomic::AtomicU64, u64);

impl<T> AtomicOps<*mut T> for std_atomic::AtomicPtr<T> {
    #[inline(always)]
    fn new(v: *mut T) -> Self {
        std_atomic::AtomicPtr::new(v)
    }
    #[inline(always)]
    fn load(&self, order: Ordering) -> *mut T {
        std_atomic::AtomicPtr::load(self, order)
    }
    #[inline(always)]
    fn store(&self, v: *mut T, order: Ordering) {
        std_atomic::AtomicPtr::store(self, v, order)
    }
    #[inline(always)]
    fn swap(&self, v: *mut T, order: Ordering) -> *mut T {
        std_atomic::AtomicPtr::swap(self, v, order)
    }
    #[inline(always)]
    fn compare_exchange(
        &self,
        current: *mut T,
        new: *mut T,
        success: Ordering,
        failure: Ordering,
    ) -> Result<*mut T, *mut T> {
        std_atomic::AtomicPtr::compare_exchange(self, current, new, success, failure)
    }
    #[inline(always)]
    fn compare_exchange_weak(
        &self,
        current: *mut T,
        new: *mut T,
        success: Ordering,
        failure: Ordering,
    ) -> Result<*mut T, *mut T> {
        std_atomic::AtomicPtr::compare_exchange_weak(self, current, new, success, failure)
    }
}

impl Backend for StdBackend {
    type AtomicUsize = std_atomic::AtomicUsize;
    type AtomicU32 = std_atomic::AtomicU32;
    type AtomicU64 = std_atomic::AtomicU64;
    type AtomicPtr<T: 'static> = std_atomic::AtomicPtr<T>;
    type Cell<T: 'static> = StdCell<T>;

    #[inline(always)]
    fn spin_hint() {
        core::hint::spin_loop()
    }

    #[inline(always)]
    unsafe fn load_link(slot: *const *mut u8) -> *mut u8 {
        // SAFETY: forwarded contract (a readable, aligned block word).
        unsafe { slot.read() }
    }

    #[inline(always)]
    unsafe fn store_link(slot: *mut *mut u8, v: *mut u8) {
        // SAFETY: forwarded contract (a writable, aligned block word).
        unsafe { slot.write(v) }
    }
}

/// A value on its own cache line (for counters every thread writes): 64
/// bytes on x86-64; 128 on aarch64, where some cores have 128-byte lines or
/// fetch lines in pairs.
#[cfg_attr(target_arch = "aarch64", repr(align(128)))]
#[cfg_attr(not(target_arch = "aarch64"), repr(align(64)))]
#[derive(Default)]
pub struct CachePadded<T>(pub T);

impl<T> core::ops::Deref for CachePadded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// A test-and-test-and-set spin lock built from backend atomics (the pool
/// lock and the fallback lock). Never allocates; critical sections are
/// short and never call back into the allocator.
pub struct SpinLock<B: Backend> {
    locked: B::AtomicU32,
}

impl<B: Backend> SpinLock<B> {
    /// An unlocked lock.
    pub fn new() -> Self {
        Self {
            locked: B::AtomicU32::new(0),
        }
    }

    /// Takes the lock; the guard releases it.
    pub fn lock(&self) -> SpinGuard<'_, B> {
        loop {
            if self
                .locked
                .compare_exchange_weak(0, 1, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return SpinGuard { lock: self };
            }
            while self.locked.load(Ordering::Relaxed) != 0 {
                B::spin_hint();
            }
        }
    }

    /// Takes the lock if it is free.
    pub fn try_lock(&self) -> Option<SpinGuard<'_, B>> {
        self.locked
            .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(|_| SpinGuard { lock: self })
    }

    /// Takes the lock without a guard (a `fork` prepare handler holds it
    /// across the `fork` call); release it with [`SpinLock::force_unlock`].
    pub fn lock_raw(&self) {
        core::mem::forget(self.lock());
    }

    /// Releases the lock whoever holds it: after [`SpinLock::lock_raw`], or
    /// in a `fork` child, whose only thread is not in a critical section.
    pub fn force_unlock(&self) {
        self.locked.store(0, Ordering::Release);
    }

    /// Whether the lock is held (for assertions).
    pub fn is_locked(&self) -> bool {
        self.locked.load(Ordering::Relaxed) != 0
    }
}

impl<B: Backend> Default for SpinLock<B> {
    fn default() -> Self {
        Self::new()
    }
}

/// Holds a [`SpinLock`]; unlocks on drop.
pub struct SpinGuard<'a, B: Backend> {
    lock: &'a SpinLock<B>,
}

impl<B: Backend> Drop for SpinGuard<'_, B> {
    fn drop(&mut self) {
        self.lock.locked.store(0, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn std_backend_ops() {
        let a = <StdBackend as Backend>::AtomicU32::new(5);
        assert_eq!(AtomicIntOps::fetch_add(&a, 2, Ordering::Relaxed), 5);
        assert_eq!(AtomicOps::swap(&a, 1, Ordering::Relaxed), 7);
        assert!(
            AtomicOps::compare_exchange(&a, 2, 3, Ordering::Relaxed, Ordering::Relaxed).is_err()
        );
        let c = <StdBackend as Backend>::Cell::<u64>::new(3);
        // SAFETY: the cell is local to this test.
        c.with_mut(|p| unsafe { *p += 1 });
        // SAFETY: as above.
        assert_eq!(c.with(|p| unsafe { *p }), 4);
        let l = SpinLock::<StdBackend>::new();
        {
            let _g = l.lock();
            assert!(l.is_locked());
        }
        assert!(!l.is_locked());
    }
}
