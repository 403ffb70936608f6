//! The set of live large blocks (their user pointers), process-wide like the
//! chunk map.
//!
//! Why: before reading a block's header, `free` must know the header page is
//! mapped. The chunk map only counts live blocks per 2 MiB chunk, so it
//! cannot tell a live block from one freed and unmapped beside a live one;
//! asking the kernel (`mincore`) costs a syscall per free, which the replays
//! of git's traces measured at 39 % of their time (docs/benchmarks-analysis.md).
//! A pointer found here is a live block, so its header is mapped; the
//! `mincore` checks run only for a pointer that is not here, to name what is
//! wrong with it.
//!
//! An open-addressing hash set (linear probing, backward-shift deletion) of
//! page-aligned addresses, in memory from [`os::map`] (never from an
//! allocator), kept at most half full, doubled when needed. Guarded by a
//! spin lock held for a probe sequence, never across a syscall: a table
//! that must grow is mapped with the lock released, then swapped in.
//!
//! # Invariants
//! - `user` is in the set ⇔ it is counted by `chunkmap::add_large` (a live
//!   large block), except between the two calls of `large::register` and
//!   `large::unregister`, which keep them in step.
//! - `len ≤ cap / 2`; `cap` is 0 (no table yet) or a power of two ≥ [`MIN_CAP`];
//!   every key sits in the probe run starting at its home slot (no empty
//!   slot between home and key).

use core::ptr::{self, NonNull};

use super::SpinLock;
use crate::os::{self, OS_PAGE};

/// Slots of the first table (one OS page of `usize`s).
const MIN_CAP: usize = OS_PAGE / core::mem::size_of::<usize>();

/// The table: `cap` slots of keys, 0 = empty.
struct Table {
    slots: *mut usize,
    cap: usize,
    len: usize,
}

// SAFETY: the table is only reached under its lock.
unsafe impl Send for Table {}

impl Table {
    const fn empty() -> Table {
        Table {
            slots: ptr::null_mut(),
            cap: 0,
            len: 0,
        }
    }

    #[inline]
    fn home(&self, key: usize) -> usize {
        // Fibonacci hashing of the page number; the top bits index the table.
        let h = (key >> OS_PAGE.trailing_zeros()).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        h >> (usize::BITS - self.cap.trailing_zeros())
    }

    /// The key in slot `i` (0: empty).
    #[inline]
    fn get(&self, i: usize) -> usize {
        assert!(i < self.cap);
        // SAFETY: `i < cap`, the table's length; the table is only reached
        // under its lock (or owned by a test).
        unsafe { *self.slots.add(i) }
    }

    /// Writes `key` to slot `i`.
    #[inline]
    fn set(&mut self, i: usize, key: usize) {
        assert!(i < self.cap);
        // SAFETY: as in `get`; `&mut self` makes this the only access.
        unsafe { *self.slots.add(i) = key };
    }

    /// The slot holding `key`, if any.
    fn find(&self, key: usize) -> Option<usize> {
        if self.cap == 0 {
            return None;
        }
        let mask = self.cap - 1;
        let mut i = self.home(key);
        loop {
            match self.get(i) {
                0 => return None,
                k if k == key => return Some(i),
                _ => i = (i + 1) & mask,
            }
        }
    }

    /// Inserts `key` (not present); the table has room (`len < cap / 2`).
    fn put(&mut self, key: usize) {
        debug_assert!(self.len < self.cap / 2 && key != 0);
        let mask = self.cap - 1;
        let mut i = self.home(key);
        while self.get(i) != 0 {
            debug_assert_ne!(self.get(i), key, "large block registered twice");
            i = (i + 1) & mask;
        }
        self.set(i, key);
        self.len += 1;
    }

    /// Removes the key in slot `i`, shifting later keys of the run back so
    /// that no probe run has a hole.
    fn take(&mut self, mut i: usize) {
        let mask = self.cap - 1;
        let mut j = i;
        loop {
            j = (j + 1) & mask;
            let k = self.get(j);
            if k == 0 {
                break;
            }
            // `k` may move to `i` unless its home lies cyclically in (i, j].
            let home = self.home(k);
            let stays = if i <= j {
                i < home && home <= j
            } else {
                i < home || home <= j
            };
            if !stays {
                self.set(i, k);
                i = j;
            }
        }
        self.set(i, 0);
        self.len -= 1;
    }
}

/// The process-wide set.
static LIVE: SpinLock<Table> = SpinLock::new(Table::empty());

/// Adds `user` (a new live large block). `false` if no table large enough
/// could be mapped (nothing recorded: the caller lets the block go).
pub(super) fn insert(user: usize) -> bool {
    debug_assert!(user != 0 && user % OS_PAGE == 0);
    loop {
        let want = {
            let mut t = LIVE.lock();
            if t.len < t.cap / 2 {
                t.put(user);
                return true;
            }
            (t.cap * 2).max(MIN_CAP)
        };
        let Some(new) = os::map(want * core::mem::size_of::<usize>(), OS_PAGE) else {
            return false;
        };
        let old = {
            let mut t = LIVE.lock();
            if t.cap < want {
                let mut grown = Table {
                    slots: new.as_ptr().cast(),
                    cap: want,
                    len: 0,
                };
                for i in 0..t.cap {
                    let k = t.get(i);
                    if k != 0 {
                        grown.put(k);
                    }
                }
                let old = (t.slots, t.cap);
                *t = grown;
                old
            } else {
                // Another thread grew it meanwhile: ours goes back.
                (new.as_ptr().cast(), want)
            }
        };
        if let Some(p) = NonNull::new(old.0.cast::<u8>()) {
            // SAFETY: a table mapping of `old.1` slots that nobody uses any
            // more (swapped out, or never installed), mapped with `OS_PAGE`.
            unsafe { os::unmap(p, old.1 * core::mem::size_of::<usize>(), OS_PAGE) };
        }
    }
}

/// Removes `user`; `false` if it was not there (not a live large block, or
/// another free of it got here first).
pub(super) fn remove(user: usize) -> bool {
    let mut t = LIVE.lock();
    match t.find(user) {
        Some(i) => {
            t.take(i);
            true
        }
        None => false,
    }
}

/// Whether `user` is a live large block.
pub(super) fn contains(user: usize) -> bool {
    LIVE.lock().find(user).is_some()
}

/// `pthread_atfork` prepare: holds the lock across `fork`.
pub(super) fn before_fork() {
    LIVE.acquire();
}

/// `pthread_atfork` parent and child: releases the lock (the child has one
/// thread, so whoever held it in the parent is gone).
pub(super) fn after_fork() {
    LIVE.release();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A private table (the global one is shared by the other tests).
    fn table(cap: usize) -> (Table, Vec<usize>) {
        let mut mem = vec![0usize; cap];
        let t = Table {
            slots: mem.as_mut_ptr(),
            cap,
            len: 0,
        };
        (t, mem)
    }

    #[test]
    fn put_find_take_keep_every_run_reachable() {
        let (mut t, _mem) = table(64);
        // Keys colliding in a few home slots, so that runs wrap and overlap.
        let keys: Vec<usize> = (1..=31).map(|i| i * OS_PAGE * 64).collect();
        for &k in &keys {
            t.put(k);
        }
        for &k in &keys {
            assert!(t.find(k).is_some(), "{k:#x}");
        }
        for (n, &k) in keys.iter().enumerate().step_by(2) {
            let i = t.find(k).unwrap();
            t.take(i);
            assert!(t.find(k).is_none());
            // Every key not yet removed is still found.
            for (m, &other) in keys.iter().enumerate() {
                let removed = m % 2 == 0 && m <= n;
                assert_eq!(t.find(other).is_some(), !removed, "{other:#x} after {n}");
            }
        }
        assert_eq!(t.len, 15);
    }

    #[test]
    fn the_global_set_grows_and_forgets() {
        // Addresses no real mapping has (above 2^47), unique to this test.
        let base = 0x9000_0000_0000usize;
        let keys: Vec<usize> = (0..3 * MIN_CAP).map(|i| base + i * OS_PAGE).collect();
        for &k in &keys {
            assert!(insert(k));
        }
        assert!(keys.iter().all(|&k| contains(k)));
        for &k in &keys {
            assert!(remove(k));
            assert!(!remove(k), "a second remove of {k:#x} must fail");
        }
        assert!(!keys.iter().any(|&k| contains(k)));
    }
}
