//! Pages and SuperSlabs going back: `PageEmpty` (with its stage-1 entry),
//! `Retire` and `Release`.

use super::Rejected;
use crate::ids::{ClassId, PageId, SsId, ThreadId};
use crate::mutant::Mutant;
use crate::state::{SlotState, SsStatus, Stage1Entry, State};

impl State {
    pub(super) fn page_empty(&mut self, t: ThreadId, page: PageId) -> Result<(), Rejected> {
        let class = self.owned(t, page)?;
        let mutant = self.mutant();
        let slot = self.slot(page).ok_or_else(|| Rejected("no page".into()))?;
        // What the owner believes is still in use.
        let believed = match mutant {
            Mutant::ReuseWithRemoteInFlight => slot.used() - slot.remote.len() as i64,
            Mutant::CountBeforePush => slot.used() - self.in_flight_to(page) as i64,
            _ => slot.used(),
        };
        if believed != 0 {
            reject!("{page} has {} blocks in use", slot.used());
        }
        let written_off = slot.used();
        self.unlink(t, class, page);
        if mutant != Mutant::ReleaseWithoutFlush {
            // Boundary flush of the owner's view, in which used = 0.
            self.slot_mut(page).delta -= written_off;
            self.flush(page);
        }
        let slot = self.slot_mut(page);
        slot.state = SlotState::Empty { class };
        slot.reset_page();
        self.set_mask(page, true);
        self.push_stage1(class, page);
        Ok(())
    }

    /// Pushes an entry for an `Empty` slot: a pool node, or the fallback
    /// when the pool is exhausted.
    pub(super) fn push_stage1(&mut self, class: ClassId, page: PageId) {
        match self.node_pool.pop() {
            // A node entry is pushed even if older (stale) entries name the
            // slot: the node pool bounds the lists.
            Some(node) => self.stage1[usize::from(class.0)].push(Stage1Entry { node, page }),
            None if self.mutant() == Mutant::PoolExhaustedDropsEntry => {}
            // The fallback list is intrusive: a slot already on a fallback
            // list (`listed`) stays where it is (its entry is valid again).
            None if self.slot(page).is_some_and(|s| s.listed) => {}
            None => {
                self.slot_mut(page).listed = true;
                self.fallback[usize::from(class.0)].push(page);
            }
        }
    }

    pub(super) fn retire(&mut self, page: PageId) -> Result<(), Rejected> {
        self.live_ss(page.ss)?;
        match self.slot(page).map(|s| s.state) {
            Some(SlotState::Empty { .. }) => {}
            other => reject!("{page} is {other:?}, not Empty"),
        }
        self.slot_mut(page).state = SlotState::Unused;
        self.set_mask(page, false);
        Ok(())
    }

    pub(super) fn release(&mut self, ss: SsId) -> Result<(), Rejected> {
        let s = self.live_ss(ss)?;
        let mutant = self.mutant();
        if mutant == Mutant::ReleaseByTotalActive {
            if s.total_active != 0 {
                reject!("ss{} has total_active {}", ss.0, s.total_active);
            }
        } else if s
            .slots
            .iter()
            .any(|sl| matches!(sl.state, SlotState::Active { .. }))
        {
            reject!("ss{} has Active slots", ss.0);
        }
        let to_arena = self.arena_len() < self.cfg.arena_cache;
        if mutant != Mutant::ReleaseWithEntries {
            // Every entry naming `ss` goes (nodes back to the pool), so that
            // no entry names a SuperSlab that is not Live.
            for list in &mut self.stage1 {
                let mut kept = Vec::with_capacity(list.len());
                for e in list.drain(..) {
                    if e.page.ss == ss {
                        self.node_pool.push(e.node);
                    } else {
                        kept.push(e);
                    }
                }
                *list = kept;
            }
            for list in &mut self.fallback {
                list.retain(|p| p.ss != ss);
            }
        }
        let keep_listed = mutant == Mutant::ReleaseWithEntries;
        let s = &mut self.superslabs[usize::from(ss.0)];
        for slot in &mut s.slots {
            slot.state = SlotState::Unused;
            slot.reset_page();
            slot.listed &= keep_listed;
        }
        s.empty_mask = 0;
        s.empty_count = 0;
        s.status = if to_arena {
            SsStatus::Cached
        } else {
            SsStatus::Released
        };
        for reg in &mut self.registry {
            reg.retain(|x| *x != ss);
        }
        Ok(())
    }
}
