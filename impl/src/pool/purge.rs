//! Purge: `Empty` slots that stay empty for the purge delay (or all of
//! them past the dirty threshold) give their memory back (`decommit`),
//! guarded by the `Purging` state so that no one claims them meanwhile.

use super::Pool;
use crate::os;
use crate::size_class::{slot_area_offset, slot_area_size};
use crate::superslab::{SlotState, SsStatus};
use crate::sync::{AtomicIntOps, AtomicOps, Backend, Ordering};
use core::ptr::NonNull;

impl<B: Backend> Pool<B> {
    /// Decommits `Empty` slots that have stayed empty for the purge delay
    /// (only if the pool lock is free and a purge is due).
    pub(super) fn maybe_purge(&self) {
        if self.dirty_empty.load(Ordering::Relaxed) > self.cfg.purge_threshold {
            if let Some(_g) = self.pool_lock.try_lock() {
                self.purge_locked(u64::MAX, 0);
            }
            return;
        }
        let delay = self.cfg.purge_delay_ms;
        if delay == u64::MAX {
            return;
        }
        let now = self.now_ms();
        if delay > 0 && now < self.next_purge.load(Ordering::Relaxed) {
            return;
        }
        let Some(_g) = self.pool_lock.try_lock() else {
            return;
        };
        self.next_purge
            .store(now + (delay / 2).max(1), Ordering::Relaxed);
        self.purge_locked(now, delay);
    }

    /// Decommits every `Empty` slot now, whatever its age. Returns how many.
    pub(crate) fn purge_now(&self) -> usize {
        let _g = self.pool_lock.lock();
        self.purge_locked(u64::MAX, 0)
    }

    fn purge_locked(&self, now: u64, delay: u64) -> usize {
        let mut n = 0;
        // SAFETY: pool lock held.
        let mut ss = unsafe { self.ps(|ps| ps.all_head) };
        while !ss.is_null() {
            // SAFETY: all-list members are mapped; pool lock held.
            let s = unsafe { &*ss };
            // SAFETY: pool lock held.
            let (status, next) = unsafe { s.pooled(|p| (p.status, p.next_all)) };
            if status == SsStatus::Live {
                let mut mask = s.empty_mask.load(Ordering::Acquire);
                while mask != 0 {
                    let i = mask.trailing_zeros() as usize;
                    mask &= mask - 1;
                    let m = s.slot(i);
                    let since = m.empty_since.load(Ordering::Relaxed);
                    if since == u64::MAX || now.saturating_sub(since) < delay {
                        continue;
                    }
                    let w = m.state.load(Ordering::Acquire);
                    let SlotState::Empty(c) = SlotState::from_word(w) else {
                        continue;
                    };
                    if m.state
                        .compare_exchange(
                            w,
                            SlotState::Purging(c).word(),
                            Ordering::SeqCst,
                            Ordering::Relaxed,
                        )
                        .is_err()
                    {
                        continue;
                    }
                    // SAFETY: the slot is Purging: no one may claim or touch
                    // its block area until we store Empty back.
                    unsafe {
                        let area = ss.cast::<u8>().add(slot_area_offset(i));
                        os::decommit(NonNull::new_unchecked(area), slot_area_size(i));
                    }
                    m.empty_since.store(u64::MAX, Ordering::Relaxed);
                    m.state.store(w, Ordering::Release);
                    self.dirty_empty.fetch_sub(1, Ordering::Relaxed);
                    self.counters.purged_slots.add(1);
                    n += 1;
                }
            }
            ss = next;
        }
        n
    }
}
