//! Acquisition: stages 0.5 (scan the class's registry for an `Empty`
//! slot), 1 (pop the stage-1 lists), 2 (an `Unused` slot of a Live
//! SuperSlab) and 3 (the arena, or a new mapping), each ending in the claim
//! CAS that makes the slot `Active` for its new owner.

use super::Pool;
use crate::chunkmap;
use crate::observe::{Event, Stage};
use crate::os;
use crate::size_class::SS_SIZE;
use crate::stage1::Source;
use crate::superslab::{PageOwner, SlotMeta, SlotState, SsHeader, SsStatus};
use crate::sync::{AtomicIntOps, AtomicOps, Backend, Mutant, Ordering};
use core::ptr::null_mut;

/// Who acquires a slot: the page owner to store in it and the thread id
/// that its events carry.
pub(crate) struct Claimant<B: Backend> {
    /// The new owner (a heap's `PageOwner`).
    pub owner: *mut PageOwner<B>,
    /// The owner's index (the model's thread id).
    pub t: u32,
}

impl<B: Backend> Clone for Claimant<B> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<B: Backend> Copy for Claimant<B> {}

impl<B: Backend> Pool<B> {
    /// 0.5, 1, 2, 3 in turn. `None` when the OS refuses memory.
    pub(crate) fn acquire(&self, h: Claimant<B>, class: usize) -> Option<&SlotMeta<B>> {
        if let Some(m) = self.stage_scan(h, class) {
            return Some(m);
        }
        if let Some(m) = self.stage_list(h, class) {
            return Some(m);
        }
        let _g = self.pool_lock.lock();
        if let Some(m) = self.stage_unused(h, class) {
            return Some(m);
        }
        self.stage_fresh(h, class)
    }

    /// Claims slot `m` (state word `expected`) for `class` by CAS; on
    /// success stores `h.owner` as its owner and reports `Acquire`.
    fn claim(
        &self,
        h: Claimant<B>,
        m: &SlotMeta<B>,
        expected: u32,
        class: usize,
        stage: Stage,
    ) -> bool {
        let new = SlotState::Active(class as u8).word();
        if B::MUTANT == Mutant::Stage1NoRecheck && matches!(stage, Stage::List | Stage::Fallback) {
            m.state.store(new, Ordering::SeqCst);
        } else if m
            .state
            .compare_exchange(expected, new, Ordering::SeqCst, Ordering::Acquire)
            .is_err()
        {
            return false;
        }
        // SAFETY: the slot is Active (ours), so its SuperSlab is live.
        let ss = unsafe { &*m.header() };
        let i = m.index();
        match SlotState::from_word(expected) {
            SlotState::Empty(_) => {
                ss.unmark_empty(i);
                if m.empty_since.load(Ordering::Relaxed) != u64::MAX {
                    self.dirty_empty.fetch_sub(1, Ordering::Relaxed);
                }
            }
            SlotState::Unused => {
                // SAFETY: Unused slots are claimed under the pool lock.
                unsafe { ss.pooled(|p| p.unused_mask &= !(1 << i)) }
            }
            _ => {}
        }
        ss.active_slots.fetch_add(1, Ordering::AcqRel);
        m.owner.store(h.owner, Ordering::Release);
        self.counters.stage[class][stage.stat_index()].add(1);
        if B::OBSERVE {
            B::observe(&Event::Acquire {
                t: h.t,
                class: class as u8,
                stage,
                ss: ss.base(),
                slot: i as u8,
            });
        }
        true
    }

    /// Stage 0.5: an `Empty` slot among the first `scan_limit` SuperSlabs
    /// of `registry[class]`.
    fn stage_scan(&self, h: Claimant<B>, class: usize) -> Option<&SlotMeta<B>> {
        self.readers.fetch_add(1, Ordering::SeqCst);
        let mut found = None;
        let mut ss = self.reg_head[class].load(Ordering::SeqCst);
        let mut n = 0;
        'scan: while !ss.is_null() && n < self.cfg.scan_limit {
            // SAFETY: `readers` keeps every SuperSlab reachable from the
            // registry mapped.
            let s = unsafe { &*ss };
            if s.empty_count.load(Ordering::Acquire) > 0 {
                let mut mask = s.empty_mask.load(Ordering::Acquire);
                while mask != 0 {
                    let i = mask.trailing_zeros() as usize;
                    mask &= mask - 1;
                    let m = s.slot(i);
                    let w = m.state.load(Ordering::Acquire);
                    if matches!(SlotState::from_word(w), SlotState::Empty(_))
                        && self.claim(h, m, w, class, Stage::Scan)
                    {
                        found = Some(m);
                        break 'scan;
                    }
                }
            }
            ss = s.reg_next[class].load(Ordering::SeqCst);
            n += 1;
        }
        self.readers.fetch_sub(1, Ordering::SeqCst);
        found
    }

    /// Stage 1: pop entries of `class` (list, then fallback) until one names
    /// a slot that is still `Empty`; stale ones are discarded.
    fn stage_list(&self, h: Claimant<B>, class: usize) -> Option<&SlotMeta<B>> {
        self.readers.fetch_add(1, Ordering::SeqCst);
        let found = loop {
            let Some((mp, source)) = self.stage1.pop(class) else {
                break None;
            };
            // SAFETY: entries name slots of Live SuperSlabs (release removes
            // them), and `readers` keeps them mapped meanwhile.
            let m = unsafe { &*mp };
            let claimed = loop {
                let w = m.state.load(Ordering::Acquire);
                match SlotState::from_word(w) {
                    SlotState::Purging(_) => B::spin_hint(),
                    SlotState::Empty(_) | SlotState::Active(_) | SlotState::Unused
                        if B::MUTANT == Mutant::Stage1NoRecheck =>
                    {
                        break self.claim(h, m, w, class, stage_of(source));
                    }
                    SlotState::Empty(_) => {
                        if self.claim(h, m, w, class, stage_of(source)) {
                            break true;
                        }
                    }
                    _ => break false,
                }
            };
            if claimed {
                break Some(m);
            }
            self.counters.stage1_discards.add(1);
            if B::OBSERVE {
                B::observe(&Event::Stage1Discard {
                    t: h.t,
                    class: class as u8,
                    source,
                    ss: m.header() as usize,
                    slot: m.index() as u8,
                });
            }
        };
        self.readers.fetch_sub(1, Ordering::SeqCst);
        found
    }

    /// Stage 2 (pool lock held): an `Unused` slot of a Live SuperSlab.
    fn stage_unused(&self, h: Claimant<B>, class: usize) -> Option<&SlotMeta<B>> {
        // SAFETY: pool lock held by the caller.
        let mut ss = unsafe { self.ps(|ps| ps.all_head) };
        while !ss.is_null() {
            // SAFETY: SuperSlabs on the all-list are mapped; pool lock held.
            unsafe {
                let s = &*ss;
                let (status, unused, next) = s.pooled(|p| (p.status, p.unused_mask, p.next_all));
                if status == SsStatus::Live && unused != 0 {
                    let i = unused.trailing_zeros() as usize;
                    self.register(s, class);
                    let m = s.slot(i);
                    if self.claim(h, m, SlotState::Unused.word(), class, Stage::Unused) {
                        return Some(m);
                    }
                }
                ss = next;
            }
        }
        None
    }

    /// Stage 3 (pool lock held): a SuperSlab from the arena, or a new one.
    fn stage_fresh(&self, h: Claimant<B>, class: usize) -> Option<&SlotMeta<B>> {
        // SAFETY: pool lock held by the caller.
        let ss = unsafe {
            match self.ps(|ps| {
                let a = ps.arena;
                if !a.is_null() {
                    ps.arena = (*a).pooled(|p| core::mem::replace(&mut p.next_cached, null_mut()));
                    ps.arena_len -= 1;
                    ps.live += 1;
                }
                a
            }) {
                a if !a.is_null() => {
                    (*a).pooled(|p| p.status = SsStatus::Live);
                    self.counters.ss_arena_taken.add(1);
                    if B::OBSERVE {
                        B::observe(&Event::ArenaTake { ss: a as usize });
                    }
                    a
                }
                _ => self.map_superslab()?,
            }
        };
        // SAFETY: Live and ours (pool lock held).
        let s = unsafe { &*ss };
        self.register(s, class);
        // SAFETY: pool lock held.
        let unused = unsafe { s.pooled(|p| p.unused_mask) };
        debug_assert_eq!(unused, u32::MAX);
        let m = s.slot(unused.trailing_zeros() as usize);
        let ok = self.claim(h, m, SlotState::Unused.word(), class, Stage::Fresh);
        debug_assert!(ok, "a fresh SuperSlab's slot 0 is Unused");
        ok.then_some(m)
    }

    /// Maps and initialises a new SuperSlab (pool lock held).
    fn map_superslab(&self) -> Option<*mut SsHeader<B>> {
        let base = os::map(SS_SIZE, SS_SIZE)?.as_ptr();
        // Slot metadata finds its SuperSlab by address (`SlotMeta::header`).
        let _ = base.expose_provenance();
        // SAFETY: pool lock held; fresh mapping.
        unsafe {
            let seq = self.ps(|ps| {
                ps.next_seq += 1;
                ps.next_seq - 1
            });
            let ss = SsHeader::<B>::init(base, seq);
            chunkmap::register_superslab(base as usize);
            self.ps(|ps| {
                if ps.all_tail.is_null() {
                    ps.all_head = ss;
                } else {
                    (*ps.all_tail).pooled(|p| p.next_all = ss);
                }
                ps.all_tail = ss;
                ps.live += 1;
            });
            self.counters.ss_mapped.add(1);
            self.counters.mapped_bytes.add(SS_SIZE as u64);
            self.counters
                .peak_mapped_bytes
                .max(self.counters.mapped_bytes.get());
            Some(ss)
        }
    }

    /// Appends `s` to `registry[class]` unless it is there (pool lock held).
    fn register(&self, s: &SsHeader<B>, class: usize) {
        // SAFETY: pool lock held by the caller.
        unsafe {
            if s.pooled(|p| p.registered & (1 << class) != 0) {
                return;
            }
            s.pooled(|p| p.registered |= 1 << class);
            let sp = s as *const _ as *mut SsHeader<B>;
            s.reg_next[class].store(null_mut(), Ordering::SeqCst);
            let tail = self.ps(|ps| core::mem::replace(&mut ps.reg_tail[class], sp));
            if tail.is_null() {
                self.reg_head[class].store(sp, Ordering::SeqCst);
            } else {
                (*tail).reg_next[class].store(sp, Ordering::SeqCst);
            }
        }
    }
}

fn stage_of(source: Source) -> Stage {
    match source {
        Source::List => Stage::List,
        Source::Fallback => Stage::Fallback,
    }
}
