//! The lock of the large-block cache and live set: test-and-test-and-set,
//! then `sched_yield`; never allocates.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, Ordering};

/// A test-and-test-and-set lock that never allocates; waiters spin briefly,
/// then yield the CPU (2 cores, 8+ threads: spinning alone would starve the
/// holder).
pub(super) struct SpinLock<T> {
    pub(super) locked: AtomicBool,
    pub(super) value: UnsafeCell<T>,
}

// SAFETY: `value` is only reached through a `SpinGuard`, of which at most one
// exists at a time (the lock's acquire/release order the accesses).
unsafe impl<T: Send> Sync for SpinLock<T> {}

pub(super) struct SpinGuard<'a, T> {
    pub(super) lock: &'a SpinLock<T>,
}

impl<T> SpinLock<T> {
    pub(super) const fn new(value: T) -> Self {
        Self {
            locked: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    pub(super) fn acquire(&self) {
        let mut spins = 0u32;
        loop {
            if !self.locked.load(Ordering::Relaxed)
                && self
                    .locked
                    .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                return;
            }
            if spins < 32 {
                for _ in 0..(1u32 << spins.min(5)) {
                    core::hint::spin_loop();
                }
                spins += 1;
            } else {
                std::thread::yield_now();
            }
        }
    }

    pub(super) fn lock(&self) -> SpinGuard<'_, T> {
        self.acquire();
        SpinGuard { lock: self }
    }

    pub(super) fn release(&self) {
        self.locked.store(false, Ordering::Release);
    }
}

impl<T> core::ops::Deref for SpinGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard holds the lock.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> core::ops::DerefMut for SpinGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard holds the lock, so this is the only reference.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for SpinGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.release();
    }
}
