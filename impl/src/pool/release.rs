//! Release: a SuperSlab with no `Active` slot left retires its `Empty`
//! slots, leaves the registries and the stage-1 lists, and goes to the arena
//! (decommitted) or back to the OS once no lock-free reader can hold it.

use super::Pool;
use crate::chunkmap;
use crate::observe::Event;
use crate::os;
use crate::size_class::{slot_area_offset, SLOTS, SS_SIZE};
use crate::superslab::{SlotState, SsHeader, SsStatus};
use crate::sync::{AtomicIntOps, AtomicOps, Backend, Mutant, Ordering};
use core::ptr::{null_mut, NonNull};

impl<B: Backend> Pool<B> {
    /// Called after a `PageEmpty` of a slot of `ss`: release the SuperSlab
    /// if it has no `Active` slot left, and purge if due.
    pub(crate) fn after_page_empty(&self, ssp: *mut SsHeader<B>) {
        // SAFETY: the caller's slot just became Empty; the SuperSlab is
        // mapped until a release below (and `ss` is not used after it).
        let ss = unsafe { &*ssp };
        let no_active = if B::MUTANT == Mutant::ReleaseByTotalActive {
            ss.total_active.load(Ordering::Acquire) == 0
        } else {
            ss.active_slots.load(Ordering::Acquire) == 0
        };
        if no_active {
            let _g = self.pool_lock.lock();
            // SAFETY: pool lock held.
            if unsafe { self.ps(|ps| ps.live) } > self.cfg.keep_live {
                self.try_release(ssp);
            }
        }
        self.maybe_purge();
    }

    /// Releases every Live SuperSlab with no `Active` slot (whatever
    /// `keep_live` says). Returns how many were released.
    pub(crate) fn release_empty(&self) -> usize {
        let _g = self.pool_lock.lock();
        let mut n = 0;
        // SAFETY: pool lock held.
        let mut ss = unsafe { self.ps(|ps| ps.all_head) };
        while !ss.is_null() {
            // SAFETY: all-list members are mapped; `next` read before a
            // possible unmap.
            unsafe {
                let next = (*ss).pooled(|p| p.next_all);
                if self.try_release(ss) {
                    n += 1;
                }
                ss = next;
            }
        }
        n
    }

    /// `Release` (pool lock held): retires each `Empty` slot by CAS (a lost
    /// race aborts; retired slots stay `Unused`), unregisters, removes the
    /// SuperSlab's stage-1 entries, and caches or unmaps it.
    ///
    /// `sp` is a raw pointer: the SuperSlab may be unmapped here.
    fn try_release(&self, sp: *mut SsHeader<B>) -> bool {
        // SAFETY: the caller holds the pool lock and `sp` is on the
        // all-list, so mapped; `s` is not used after the unmap.
        let s = unsafe { &*sp };
        // SAFETY: pool lock held by the caller.
        if unsafe { s.pooled(|p| p.status) } != SsStatus::Live {
            return false;
        }
        for i in 0..SLOTS {
            let m = s.slot(i);
            loop {
                let w = m.state.load(Ordering::Acquire);
                match SlotState::from_word(w) {
                    SlotState::Unused => break,
                    SlotState::Active(_) | SlotState::Purging(_)
                        if B::MUTANT != Mutant::ReleaseByTotalActive =>
                    {
                        return false
                    }
                    SlotState::Active(_) | SlotState::Purging(_) => break,
                    SlotState::Empty(_) => {
                        let ok = if B::MUTANT == Mutant::DoubleRelease {
                            m.state.store(SlotState::Unused.word(), Ordering::SeqCst);
                            true
                        } else {
                            m.state
                                .compare_exchange(
                                    w,
                                    SlotState::Unused.word(),
                                    Ordering::SeqCst,
                                    Ordering::Acquire,
                                )
                                .is_ok()
                        };
                        if ok {
                            s.unmark_empty(i);
                            if m.empty_since.load(Ordering::Relaxed) != u64::MAX {
                                self.dirty_empty.fetch_sub(1, Ordering::Relaxed);
                            }
                            // SAFETY: pool lock held.
                            unsafe { s.pooled(|p| p.unused_mask |= 1 << i) };
                            if B::OBSERVE {
                                B::observe(&Event::Retire {
                                    ss: s.base(),
                                    slot: i as u8,
                                });
                            }
                            break;
                        }
                    }
                }
            }
        }
        // Every slot is Unused: no new entry can name `s` once the pushes
        // in flight (counted in `readers`) are done.
        self.unregister(s);
        self.wait_readers();
        let removed = self.stage1.remove_superslab(s.base());
        self.wait_readers();
        debug_assert_eq!(s.empty_mask.load(Ordering::Relaxed), 0);
        debug_assert!(
            B::MUTANT != Mutant::None || s.total_active.load(Ordering::Relaxed) == 0,
            "release with blocks in use"
        );
        // SAFETY: pool lock held.
        let to_os = unsafe {
            self.ps(|ps| {
                ps.live -= 1;
                if ps.arena_len < self.cfg.arena_cache {
                    s.pooled(|p| {
                        p.status = SsStatus::Cached;
                        p.next_cached = ps.arena;
                    });
                    ps.arena = sp;
                    ps.arena_len += 1;
                    false
                } else {
                    // Unlink from the all-list.
                    let next = s.pooled(|p| p.next_all);
                    let mut prev: *mut SsHeader<B> = null_mut();
                    let mut cur = ps.all_head;
                    while cur != sp {
                        prev = cur;
                        cur = (*cur).pooled(|p| p.next_all);
                    }
                    if prev.is_null() {
                        ps.all_head = next;
                    } else {
                        (*prev).pooled(|p| p.next_all = next);
                    }
                    if ps.all_tail == sp {
                        ps.all_tail = prev;
                    }
                    true
                }
            })
        };
        if B::OBSERVE {
            B::observe(&Event::Release {
                ss: s.base(),
                to_os,
                entries_removed: removed as u32,
            });
        }
        if to_os {
            chunkmap::unregister_superslab(s.base());
            self.wait_readers();
            self.counters.ss_unmapped.add(1);
            self.counters.mapped_bytes.sub(SS_SIZE as u64);
            // SAFETY: no slot is in use, no reader can reach `s` any more,
            // and the mapping is exactly one `map(SS_SIZE, SS_SIZE)`.
            unsafe {
                if core::mem::needs_drop::<SsHeader<B>>() {
                    core::ptr::drop_in_place(sp);
                }
                os::unmap(NonNull::new_unchecked(sp.cast()), SS_SIZE, SS_SIZE)
            };
        } else {
            self.counters.ss_cached.add(1);
            // Cached SuperSlabs keep no physical memory beyond the header.
            // SAFETY: every slot is Unused: no one touches the block areas.
            unsafe {
                let base = sp.cast::<u8>();
                os::decommit(
                    NonNull::new_unchecked(base.add(slot_area_offset(0))),
                    SS_SIZE - slot_area_offset(0),
                );
            }
        }
        true
    }

    fn wait_readers(&self) {
        while self.readers.load(Ordering::SeqCst) != 0 {
            B::spin_hint();
        }
    }

    /// Removes `s` from every registry (pool lock held). Its own `reg_next`
    /// links stay, so a scan standing on it continues.
    fn unregister(&self, s: &SsHeader<B>) {
        let sp = s as *const _ as *mut SsHeader<B>;
        // SAFETY: pool lock held by the caller.
        let mut mask = unsafe { s.pooled(|p| core::mem::replace(&mut p.registered, 0)) };
        while mask != 0 {
            let c = mask.trailing_zeros() as usize;
            mask &= mask - 1;
            let next = s.reg_next[c].load(Ordering::Relaxed);
            let mut prev: *mut SsHeader<B> = null_mut();
            let mut cur = self.reg_head[c].load(Ordering::Relaxed);
            while cur != sp {
                debug_assert!(!cur.is_null(), "registered SuperSlab not in its registry");
                prev = cur;
                // SAFETY: registry members are mapped.
                cur = unsafe { (*cur).reg_next[c].load(Ordering::Relaxed) };
            }
            if prev.is_null() {
                self.reg_head[c].store(next, Ordering::SeqCst);
            } else {
                // SAFETY: as above.
                unsafe { (*prev).reg_next[c].store(next, Ordering::SeqCst) };
            }
            // SAFETY: pool lock held.
            unsafe {
                self.ps(|ps| {
                    if ps.reg_tail[c] == sp {
                        ps.reg_tail[c] = prev;
                    }
                })
            };
        }
    }
}
