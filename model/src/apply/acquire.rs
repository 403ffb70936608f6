//! Acquisition: a slot claimed at stage 0.5, 1, 2 or 3, the arena take,
//! and the discard of a stale stage-1 entry.

use super::Rejected;
use crate::ids::{ClassId, PageId, SsId, ThreadId};
use crate::mutant::Mutant;
use crate::state::{SlotState, SsStatus, State, SuperSlab};
use crate::step::{Stage, Stage1Source};

impl State {
    pub(super) fn acquire(
        &mut self,
        t: ThreadId,
        class: ClassId,
        stage: Stage,
        page: PageId,
    ) -> Result<(), Rejected> {
        self.alive(t)?;
        self.class_ok(class)?;
        if page.slot.0 >= self.cfg.slots {
            reject!("no slot {}", page.slot.0);
        }
        let mutant = self.mutant();
        let ssi = usize::from(page.ss.0);
        let is_new = stage == Stage::Fresh && ssi == self.superslabs.len();
        if is_new {
            if ssi >= usize::from(self.cfg.max_superslabs) {
                reject!(
                    "the configuration maps at most {} SuperSlabs",
                    self.cfg.max_superslabs
                );
            }
            self.room_for_live_ss()?;
        } else {
            self.live_ss(page.ss)?;
        }
        let state = self.slot(page).map_or(SlotState::Unused, |s| s.state);
        if !matches!(state, SlotState::Active { .. }) {
            let active = self
                .pages()
                .filter(|(_, s)| matches!(s.state, SlotState::Active { .. }))
                .count();
            if active >= self.cfg.max_pages {
                reject!("{active} pages active: the configuration's bound");
            }
        }
        match stage {
            Stage::Scan => {
                let pos = self.registry[usize::from(class.0)]
                    .iter()
                    .position(|s| *s == page.ss);
                if pos.is_none_or(|p| p >= self.cfg.scan_limit) {
                    reject!(
                        "ss{} is not among the first {} of {class}'s registry",
                        page.ss.0,
                        self.cfg.scan_limit
                    );
                }
                if !matches!(state, SlotState::Empty { .. }) {
                    reject!("{page} is {state:?}, not Empty");
                }
            }
            Stage::List => {
                match self.stage1[usize::from(class.0)].last() {
                    Some(e) if e.page == page => {}
                    _ => reject!("{page} is not the head of {class}'s stage-1 list"),
                }
                if !matches!(state, SlotState::Empty { .. }) && mutant != Mutant::Stage1NoRecheck {
                    reject!("{page} is {state:?}: the entry is stale");
                }
            }
            Stage::Fallback => {
                if self.fallback[usize::from(class.0)].last() != Some(&page) {
                    reject!("{page} is not the head of {class}'s fallback list");
                }
                if !matches!(state, SlotState::Empty { .. }) && mutant != Mutant::Stage1NoRecheck {
                    reject!("{page} is {state:?}: the entry is stale");
                }
            }
            Stage::Unused => {
                if !self.registry.iter().any(|r| r.contains(&page.ss)) {
                    reject!("ss{} is not registered", page.ss.0);
                }
                if state != SlotState::Unused {
                    reject!("{page} is {state:?}, not Unused");
                }
            }
            Stage::Fresh => {
                if !is_new {
                    if self.registry.iter().any(|r| r.contains(&page.ss)) {
                        reject!("ss{} is registered: not fresh from the arena", page.ss.0);
                    }
                    let ss = &self.superslabs[ssi];
                    if ss.slots.iter().any(|s| s.state != SlotState::Unused) {
                        reject!("ss{} has slots in use: not fresh", page.ss.0);
                    }
                }
            }
        }
        // All checked: claim.
        if is_new {
            self.superslabs.push(SuperSlab::new(self.cfg.slots));
        }
        match stage {
            Stage::List => {
                let e = self.stage1[usize::from(class.0)].pop();
                if let (Some(e), false) = (e, mutant == Mutant::Stage1LeaksNode) {
                    self.node_pool.push(e.node);
                }
            }
            Stage::Fallback => {
                self.fallback[usize::from(class.0)].pop();
                self.slot_mut(page).listed = false;
            }
            _ => {}
        }
        if let SlotState::Empty { .. } = state {
            if mutant == Mutant::ForgetEmptyCountOnReuse {
                self.superslabs[ssi].empty_mask &= !(1u32 << page.slot.0);
            } else {
                self.set_mask(page, false);
            }
        }
        // A claim through a stale entry (mutant only) steals the page.
        if let SlotState::Active {
            class: c,
            owner: Some(o),
        } = state
        {
            self.unlink(o, c, page);
        }
        let slot = self.slot_mut(page);
        slot.state = SlotState::Active {
            class,
            owner: Some(t),
        };
        slot.reset_page();
        slot.shared_used = 0;
        slot.delta = 0;
        let reg = &mut self.registry[usize::from(class.0)];
        if !reg.contains(&page.ss) {
            reg.push(page.ss);
        }
        self.make_current(t, class, page);
        Ok(())
    }

    /// The `max_live_superslabs` exploration bound.
    pub(super) fn room_for_live_ss(&self) -> Result<(), Rejected> {
        let live = self
            .superslabs
            .iter()
            .filter(|s| s.status == SsStatus::Live)
            .count();
        if live >= self.cfg.max_live_superslabs {
            reject!("{live} SuperSlabs live: the configuration's bound");
        }
        Ok(())
    }

    pub(super) fn arena_take(&mut self, ss: SsId) -> Result<(), Rejected> {
        if self
            .superslabs
            .get(usize::from(ss.0))
            .is_some_and(|s| s.status == SsStatus::Cached)
        {
            self.room_for_live_ss()?;
        }
        match self.superslabs.get_mut(usize::from(ss.0)) {
            Some(s) if s.status == SsStatus::Cached => {
                s.status = SsStatus::Live;
                Ok(())
            }
            Some(s) => reject!("ss{} is {:?}, not Cached", ss.0, s.status),
            None => reject!("no ss{}", ss.0),
        }
    }

    /// Whether an entry naming `page` is stale (the slot is not `Empty`).
    pub fn is_stale(&self, page: PageId) -> bool {
        let live = self
            .superslabs
            .get(usize::from(page.ss.0))
            .is_some_and(|s| s.status == SsStatus::Live);
        !live
            || !matches!(
                self.slot(page).map(|s| s.state),
                Some(SlotState::Empty { .. })
            )
    }

    pub(super) fn stage1_discard(
        &mut self,
        t: ThreadId,
        class: ClassId,
        source: Stage1Source,
    ) -> Result<(), Rejected> {
        self.alive(t)?;
        self.class_ok(class)?;
        let head = match source {
            Stage1Source::List => self.stage1[usize::from(class.0)].last().map(|e| e.page),
            Stage1Source::Fallback => self.fallback[usize::from(class.0)].last().copied(),
        };
        let page = match head {
            None => reject!("{class}'s {source:?} list is empty"),
            Some(p) if !self.is_stale(p) => reject!("head entry {p} is not stale"),
            Some(p) => p,
        };
        if let (Some(slot), Stage1Source::Fallback) = (
            self.superslabs
                .get_mut(usize::from(page.ss.0))
                .and_then(|s| s.slots.get_mut(usize::from(page.slot.0))),
            source,
        ) {
            slot.listed = false;
        }
        match source {
            Stage1Source::List => {
                if let Some(e) = self.stage1[usize::from(class.0)].pop() {
                    self.node_pool.push(e.node);
                }
            }
            Stage1Source::Fallback => {
                self.fallback[usize::from(class.0)].pop();
            }
        }
        Ok(())
    }
}
