//! Steps on a heap's own pages: the malloc fast path, carve, drain, the
//! current/partial/full moves, local and remote frees and their publish,
//! the deferred-count flush, and `Realloc` (composed of the others).

use super::{Place, Rejected};
use crate::ids::{BlockId, ClassId, PageId, ThreadId};
use crate::mutant::Mutant;
use crate::state::{SlotState, State};
use crate::step::{FlushReason, Step};

impl State {
    pub(super) fn alloc_fast(
        &mut self,
        t: ThreadId,
        class: ClassId,
        page: PageId,
        block: BlockId,
    ) -> Result<(), Rejected> {
        self.alive(t)?;
        self.class_ok(class)?;
        if self.heaps[usize::from(t.0)].classes[usize::from(class.0)].current != Some(page) {
            reject!("{page} is not {t}'s current page of {class}");
        }
        if self.owned(t, page)? != class {
            reject!("{page} does not serve {class}");
        }
        let head = self.slot(page).and_then(|s| s.free.last().copied());
        match head {
            None => reject!("{page} has an empty free list"),
            Some(i) if block != page.block(i) => reject!(
                "{block} is not the head of {page}'s free list ({})",
                page.block(i)
            ),
            Some(_) => {}
        }
        if self.live.len() >= self.cfg.max_live {
            reject!("{} blocks live: the configuration's bound", self.live.len());
        }
        self.within_threshold(page, class, 1)?;
        let no_pop = self.mutant() == Mutant::AllocWithoutPop;
        let slot = self.slot_mut(page);
        if !no_pop {
            slot.free.pop();
        }
        slot.delta += 1;
        self.live.insert(block, class);
        Ok(())
    }

    pub(super) fn carve(&mut self, t: ThreadId, page: PageId, n: u32) -> Result<(), Rejected> {
        let class = self.owned(t, page)?;
        let cap = self.cfg.capacity(class, page.slot);
        let slot = self.slot(page).ok_or_else(|| Rejected("no page".into()))?;
        if slot.in_full {
            reject!("{page} is on the full list");
        }
        if n == 0 || n > cap.saturating_sub(slot.carved) {
            reject!("cannot carve {n}: carved {} of {cap}", slot.carved);
        }
        let slot = self.slot_mut(page);
        // Lowest new index on top: the next AllocFast takes it first.
        slot.free.extend((slot.carved..slot.carved + n).rev());
        slot.carved += n;
        Ok(())
    }

    pub(super) fn drain(&mut self, t: ThreadId, page: PageId, n: u32) -> Result<(), Rejected> {
        let class = self.owned(t, page)?;
        let slot = self.slot(page).ok_or_else(|| Rejected("no page".into()))?;
        if slot.in_full {
            reject!("{page} is on the full list (Unfull first)");
        }
        if slot.remote.is_empty() || slot.remote.len() != n as usize {
            reject!(
                "remote list of {page} has {} blocks, not {n}",
                slot.remote.len()
            );
        }
        let limit = i64::from(self.cfg.threshold(class, page.slot));
        let mutant = self.mutant();
        let slot = self.slot_mut(page);
        let mut taken = std::mem::take(&mut slot.remote);
        if mutant == Mutant::DrainLosesLast {
            taken.remove(0);
        }
        // The list goes on top in its LIFO order: the latest push is popped first.
        slot.free.extend(taken);
        if mutant != Mutant::DrainUncounted {
            slot.delta -= i64::from(n);
        }
        if slot.delta.abs() > limit {
            self.flush(page);
        }
        Ok(())
    }

    pub(super) fn set_current(
        &mut self,
        t: ThreadId,
        class: ClassId,
        page: PageId,
    ) -> Result<(), Rejected> {
        self.alive(t)?;
        self.class_ok(class)?;
        if self.place(t, class, page) != Some(Place::Partial) {
            reject!("{page} is not on {t}'s partial list of {class}");
        }
        let cur = self.heaps[usize::from(t.0)].classes[usize::from(class.0)].current;
        if let Some(cur) = cur {
            if self.slot(cur).is_some_and(|s| !s.free.is_empty()) {
                reject!("the current page {cur} still has free blocks");
            }
        }
        self.hc_mut(t, class).partial.remove(&page);
        self.make_current(t, class, page);
        Ok(())
    }

    pub(super) fn page_full(&mut self, t: ThreadId, page: PageId) -> Result<(), Rejected> {
        let class = self.owned(t, page)?;
        if self.place(t, class, page) != Some(Place::Current) {
            reject!("{page} is not {t}'s current page");
        }
        let cap = self.cfg.capacity(class, page.slot);
        let slot = self.slot(page).ok_or_else(|| Rejected("no page".into()))?;
        if !slot.free.is_empty() && self.mutant() != Mutant::FullWithFreeBlock {
            reject!("{page} still has free blocks");
        }
        if slot.carved != cap {
            reject!("{page} can still carve ({} of {cap})", slot.carved);
        }
        if !slot.remote.is_empty() && self.mutant() != Mutant::PageFullNoRecheck {
            reject!("{page} has remote frees (the re-check undoes the move)");
        }
        self.flush(page);
        let hc = self.hc_mut(t, class);
        hc.current = None;
        hc.full.insert(page);
        self.slot_mut(page).in_full = true;
        Ok(())
    }

    pub(super) fn unfull(&mut self, t: ThreadId, page: PageId) -> Result<(), Rejected> {
        let class = self.owned(t, page)?;
        if self.place(t, class, page) != Some(Place::Full) {
            reject!("{page} is not on {t}'s full list");
        }
        if self.slot(page).is_some_and(|s| s.remote.is_empty()) {
            reject!("{page} has no remote free");
        }
        let hc = self.hc_mut(t, class);
        hc.full.remove(&page);
        hc.partial.insert(page);
        self.slot_mut(page).in_full = false;
        self.refresh_hint(t);
        Ok(())
    }

    /// After an `Unfull`, the hint stays set while another full page of
    /// `t` still has remote frees (impl clears it with a swap and moves
    /// every such page in the same scan).
    pub(super) fn refresh_hint(&mut self, t: ThreadId) {
        let pending = self.heaps[usize::from(t.0)].classes.iter().any(|hc| {
            hc.full
                .iter()
                .any(|p| self.slot(*p).is_some_and(|s| !s.remote.is_empty()))
        });
        self.heaps[usize::from(t.0)].full_hint = pending;
    }

    pub(super) fn free_local(&mut self, t: ThreadId, block: BlockId) -> Result<(), Rejected> {
        self.alive(t)?;
        if !self.live.contains_key(&block) {
            reject!("{block} is not live");
        }
        let page = block.page();
        let class = self.owned(t, page)?;
        self.within_threshold(page, class, -1)?;
        self.live.remove(&block);
        let slot = self.slot_mut(page);
        slot.free.push(block.index);
        slot.delta -= 1;
        if slot.in_full {
            // A local free to a full page moves it back to partial.
            slot.in_full = false;
            let hc = self.hc_mut(t, class);
            hc.full.remove(&page);
            hc.partial.insert(page);
        }
        Ok(())
    }

    pub(super) fn free_remote(&mut self, t: ThreadId, block: BlockId) -> Result<(), Rejected> {
        self.alive(t)?;
        if !self.live.contains_key(&block) {
            reject!("{block} is not live");
        }
        let page = block.page();
        match self.slot(page).map(|s| s.state) {
            Some(SlotState::Active { owner, .. }) if owner != Some(t) => {}
            Some(SlotState::Active { .. }) => reject!("{t} owns {page}: the free is local"),
            other => reject!("{block}'s slot is {other:?}"),
        }
        self.live.remove(&block);
        if self.mutant() == Mutant::CountBeforePush {
            self.in_flight.push(block);
            return Ok(());
        }
        self.push_remote(block);
        Ok(())
    }

    /// The remote push: onto the list, and the full hint when it lands on
    /// a full page that has an owner.
    pub(super) fn push_remote(&mut self, block: BlockId) {
        let page = block.page();
        let slot = self.slot_mut(page);
        slot.remote.push(block.index);
        let (in_full, owner) = (slot.in_full, slot.owner());
        if let (true, Some(o)) = (in_full, owner) {
            self.heaps[usize::from(o.0)].full_hint = true;
        }
    }

    pub(super) fn publish_remote(&mut self, block: BlockId) -> Result<(), Rejected> {
        let Some(pos) = self.in_flight.iter().position(|b| *b == block) else {
            reject!("{block} is not in flight");
        };
        if self.slot(block.page()).is_none() {
            reject!("no page {}", block.page());
        }
        self.in_flight.remove(pos);
        self.push_remote(block);
        Ok(())
    }

    pub(super) fn flush_step(
        &mut self,
        t: ThreadId,
        page: PageId,
        reason: FlushReason,
    ) -> Result<(), Rejected> {
        let class = self.owned(t, page)?;
        let delta = self.slot(page).map_or(0, |s| s.delta);
        if delta == 0 {
            reject!("{page} has nothing to flush");
        }
        let limit = i64::from(self.cfg.threshold(class, page.slot));
        if reason == FlushReason::Threshold && delta.abs() < limit {
            reject!("|delta| = {} is below the threshold {limit}", delta.abs());
        }
        self.flush(page);
        Ok(())
    }

    pub(super) fn realloc(
        &mut self,
        t: ThreadId,
        block: BlockId,
        class: ClassId,
    ) -> Result<(), Rejected> {
        let Some(&old_class) = self.live.get(&block) else {
            reject!("{block} is not live");
        };
        if old_class == class {
            reject!("same class: realloc in place is no step");
        }
        self.class_ok(class)?;
        self.alive(t)?;
        let page = self.heaps[usize::from(t.0)].classes[usize::from(class.0)]
            .current
            .ok_or_else(|| Rejected(format!("{t} has no current page of {class}")))?;
        let head = self
            .slot(page)
            .and_then(|s| s.free.last().copied())
            .ok_or_else(|| Rejected(format!("{page} has an empty free list")))?;
        let free = if self.slot(block.page()).and_then(|s| s.owner()) == Some(t) {
            Step::FreeLocal { t, block }
        } else {
            Step::FreeRemote { t, block }
        };
        let mut next = self.clone();
        next.apply(&Step::AllocFast {
            t,
            class,
            page,
            block: page.block(head),
        })?;
        next.apply(&free)?;
        *self = next;
        Ok(())
    }
}
