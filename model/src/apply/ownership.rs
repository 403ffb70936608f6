//! Ownership across threads: `Abandon`, `ThreadExit` and `Reclaim`.

use super::Rejected;
use crate::ids::{ClassId, PageId, ThreadId};
use crate::mutant::Mutant;
use crate::state::{SlotState, State};

impl State {
    pub(super) fn abandon(&mut self, t: ThreadId, page: PageId) -> Result<(), Rejected> {
        let class = self.owned(t, page)?;
        if self.slot(page).is_none_or(|s| s.used() <= 0) {
            reject!("{page} has no block in use: PageEmpty, not Abandon");
        }
        let keep_owner = self.mutant() == Mutant::AbandonKeepsOwner;
        self.flush(page);
        self.unlink(t, class, page);
        let slot = self.slot_mut(page);
        slot.in_full = false;
        if !keep_owner {
            slot.state = SlotState::Active { class, owner: None };
        }
        self.abandoned[usize::from(class.0)].insert(page);
        Ok(())
    }

    pub(super) fn thread_exit(&mut self, t: ThreadId) -> Result<(), Rejected> {
        self.alive(t)?;
        let owns = self.pages().any(|(_, s)| s.owner() == Some(t));
        if owns && self.mutant() != Mutant::ExitWithPages {
            reject!("{t} still owns pages");
        }
        let heap = &mut self.heaps[usize::from(t.0)];
        heap.alive = false;
        heap.full_hint = false;
        Ok(())
    }

    pub(super) fn reclaim(&mut self, t: ThreadId, class: ClassId) -> Result<(), Rejected> {
        self.alive(t)?;
        self.class_ok(class)?;
        let pages: Vec<PageId> = self.abandoned[usize::from(class.0)]
            .iter()
            .copied()
            .collect();
        if pages.is_empty() {
            reject!("no abandoned page of {class}");
        }
        for p in &pages {
            if self.slot(*p).map(|s| s.class()) != Some(Some(class)) {
                reject!("abandoned {p} does not serve {class}");
            }
        }
        if self.mutant() != Mutant::ReclaimTwice {
            self.abandoned[usize::from(class.0)].clear();
        }
        for p in pages {
            self.slot_mut(p).state = SlotState::Active {
                class,
                owner: Some(t),
            };
            self.hc_mut(t, class).partial.insert(p);
        }
        Ok(())
    }
}
