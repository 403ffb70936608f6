//! `State::apply`: the pre-conditions and effects of every step. A step the
//! protocol does not allow is rejected with a reason and leaves the state
//! unchanged; no input, however out of range, makes `apply` panic.
//!
//! Each step first checks everything, then mutates; the only composite step
//! (`Realloc`) works on a copy.

use std::fmt;

use crate::ids::{BlockId, ClassId, PageId, SsId, ThreadId};
use crate::mutant::Mutant;
use crate::state::{SlotState, SsStatus, Stage1Entry, State, SuperSlab};
use crate::step::{FlushReason, Stage, Stage1Source, Step};

/// Why a step was not allowed, for humans.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejected(pub String);

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Rejected {}

macro_rules! reject {
    ($($arg:tt)*) => { return Err(Rejected(format!($($arg)*))) };
}

/// Where an owned page sits in its heap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    Current,
    Partial,
    Full,
}

impl State {
    /// Applies `step` if the protocol allows it; otherwise returns why not
    /// and leaves the state unchanged.
    pub fn apply(&mut self, step: &Step) -> Result<(), Rejected> {
        match *step {
            Step::AllocFast {
                t,
                class,
                page,
                block,
            } => self.alloc_fast(t, class, page, block),
            Step::Carve { t, page, n } => self.carve(t, page, n),
            Step::Drain { t, page, n } => self.drain(t, page, n),
            Step::SetCurrent { t, class, page } => self.set_current(t, class, page),
            Step::PageFull { t, page } => self.page_full(t, page),
            Step::Unfull { t, page } => self.unfull(t, page),
            Step::Acquire {
                t,
                class,
                stage,
                ss,
                slot,
            } => self.acquire(t, class, stage, PageId { ss, slot }),
            Step::FreeLocal { t, block } => self.free_local(t, block),
            Step::FreeRemote { t, block } => self.free_remote(t, block),
            Step::PublishRemote { block } => self.publish_remote(block),
            Step::Flush { t, page, reason } => self.flush_step(t, page, reason),
            Step::PageEmpty { t, page } => self.page_empty(t, page),
            Step::Abandon { t, page } => self.abandon(t, page),
            Step::ThreadExit { t } => self.thread_exit(t),
            Step::Reclaim { t, class } => self.reclaim(t, class),
            Step::Retire { ss, slot } => self.retire(PageId { ss, slot }),
            Step::Release { ss } => self.release(ss),
            Step::ArenaTake { ss } => self.arena_take(ss),
            Step::Stage1Discard { t, class, source } => self.stage1_discard(t, class, source),
            Step::Realloc { t, block, class } => self.realloc(t, block, class),
        }
    }

    /// `apply` on a copy: whether `step` is allowed here.
    pub fn allows(&self, step: &Step) -> bool {
        self.clone().apply(step).is_ok()
    }

    // ----- shared checks -------------------------------------------------

    fn mutant(&self) -> Mutant {
        self.cfg.mutant
    }

    fn alive(&self, t: ThreadId) -> Result<(), Rejected> {
        match self.heaps.get(usize::from(t.0)) {
            Some(h) if h.alive => Ok(()),
            Some(_) => reject!("thread {t} has exited"),
            None => reject!("no thread {t}"),
        }
    }

    fn class_ok(&self, class: ClassId) -> Result<(), Rejected> {
        if usize::from(class.0) < self.cfg.class_count() {
            Ok(())
        } else {
            reject!("no class {class}")
        }
    }

    fn live_ss(&self, ss: SsId) -> Result<&SuperSlab, Rejected> {
        match self.superslabs.get(usize::from(ss.0)) {
            Some(s) if s.status == SsStatus::Live => Ok(s),
            Some(s) => reject!("ss{} is {:?}", ss.0, s.status),
            None => reject!("no ss{}", ss.0),
        }
    }

    /// `t` is alive and owns `page`; returns the page's class.
    fn owned(&self, t: ThreadId, page: PageId) -> Result<ClassId, Rejected> {
        self.alive(t)?;
        match self.slot(page).map(|s| s.state) {
            Some(SlotState::Active {
                class,
                owner: Some(o),
            }) if o == t => Ok(class),
            Some(state) => reject!("page {page} is {state:?}, not owned by {t}"),
            None => reject!("no page {page}"),
        }
    }

    fn place(&self, t: ThreadId, class: ClassId, page: PageId) -> Option<Place> {
        let hc = self
            .heaps
            .get(usize::from(t.0))?
            .classes
            .get(usize::from(class.0))?;
        if hc.current == Some(page) {
            Some(Place::Current)
        } else if hc.partial.contains(&page) {
            Some(Place::Partial)
        } else if hc.full.contains(&page) {
            Some(Place::Full)
        } else {
            None
        }
    }

    /// The delta after adding `d` stays within the threshold (unless the
    /// `SkipThresholdFlush` mutant ignores it).
    fn within_threshold(&self, page: PageId, class: ClassId, d: i64) -> Result<(), Rejected> {
        if self.mutant() == Mutant::SkipThresholdFlush {
            return Ok(());
        }
        let delta = self.slot(page).map_or(0, |s| s.delta) + d;
        let limit = i64::from(self.cfg.threshold(class, page.slot));
        if delta.abs() > limit {
            reject!(
                "|delta| would be {} > threshold {limit}: a threshold flush is due",
                delta.abs()
            )
        }
        Ok(())
    }

    // ----- mutation helpers (callers have checked the ids) ---------------

    fn slot_mut(&mut self, page: PageId) -> &mut crate::state::Slot {
        &mut self.superslabs[usize::from(page.ss.0)].slots[usize::from(page.slot.0)]
    }

    fn hc_mut(&mut self, t: ThreadId, class: ClassId) -> &mut crate::state::HeapClass {
        &mut self.heaps[usize::from(t.0)].classes[usize::from(class.0)]
    }

    /// `shared_used += delta; total_active += delta; delta = 0`.
    fn flush(&mut self, page: PageId) {
        let skip_total = self.mutant() == Mutant::FlushSkipsTotal;
        let slot = self.slot_mut(page);
        let d = slot.delta;
        slot.shared_used += d;
        slot.delta = 0;
        if !skip_total {
            self.superslabs[usize::from(page.ss.0)].total_active += d;
        }
    }

    /// Removes `page` from wherever it sits in `t`'s lists of `class`.
    fn unlink(&mut self, t: ThreadId, class: ClassId, page: PageId) {
        let hc = self.hc_mut(t, class);
        if hc.current == Some(page) {
            hc.current = None;
        }
        hc.partial.remove(&page);
        hc.full.remove(&page);
    }

    /// Makes `page` current; the old current goes to `partial`.
    fn make_current(&mut self, t: ThreadId, class: ClassId, page: PageId) {
        let hc = self.hc_mut(t, class);
        if let Some(old) = hc.current.replace(page) {
            hc.partial.insert(old);
        }
    }

    fn set_mask(&mut self, page: PageId, empty: bool) {
        let ss = &mut self.superslabs[usize::from(page.ss.0)];
        let bit = 1u32 << page.slot.0;
        if empty {
            ss.empty_mask |= bit;
            ss.empty_count += 1;
        } else {
            ss.empty_mask &= !bit;
            ss.empty_count = ss.empty_count.saturating_sub(1);
        }
    }

    // ----- the steps -----------------------------------------------------

    fn alloc_fast(
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

    fn carve(&mut self, t: ThreadId, page: PageId, n: u32) -> Result<(), Rejected> {
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

    fn drain(&mut self, t: ThreadId, page: PageId, n: u32) -> Result<(), Rejected> {
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

    fn set_current(&mut self, t: ThreadId, class: ClassId, page: PageId) -> Result<(), Rejected> {
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

    fn page_full(&mut self, t: ThreadId, page: PageId) -> Result<(), Rejected> {
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

    fn unfull(&mut self, t: ThreadId, page: PageId) -> Result<(), Rejected> {
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
    fn refresh_hint(&mut self, t: ThreadId) {
        let pending = self.heaps[usize::from(t.0)].classes.iter().any(|hc| {
            hc.full
                .iter()
                .any(|p| self.slot(*p).is_some_and(|s| !s.remote.is_empty()))
        });
        self.heaps[usize::from(t.0)].full_hint = pending;
    }

    fn acquire(
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

    fn free_local(&mut self, t: ThreadId, block: BlockId) -> Result<(), Rejected> {
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

    fn free_remote(&mut self, t: ThreadId, block: BlockId) -> Result<(), Rejected> {
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
    fn push_remote(&mut self, block: BlockId) {
        let page = block.page();
        let slot = self.slot_mut(page);
        slot.remote.push(block.index);
        let (in_full, owner) = (slot.in_full, slot.owner());
        if let (true, Some(o)) = (in_full, owner) {
            self.heaps[usize::from(o.0)].full_hint = true;
        }
    }

    fn publish_remote(&mut self, block: BlockId) -> Result<(), Rejected> {
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

    fn flush_step(
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

    fn page_empty(&mut self, t: ThreadId, page: PageId) -> Result<(), Rejected> {
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
    fn push_stage1(&mut self, class: ClassId, page: PageId) {
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

    fn abandon(&mut self, t: ThreadId, page: PageId) -> Result<(), Rejected> {
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

    fn thread_exit(&mut self, t: ThreadId) -> Result<(), Rejected> {
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

    fn reclaim(&mut self, t: ThreadId, class: ClassId) -> Result<(), Rejected> {
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

    fn retire(&mut self, page: PageId) -> Result<(), Rejected> {
        self.live_ss(page.ss)?;
        match self.slot(page).map(|s| s.state) {
            Some(SlotState::Empty { .. }) => {}
            other => reject!("{page} is {other:?}, not Empty"),
        }
        self.slot_mut(page).state = SlotState::Unused;
        self.set_mask(page, false);
        Ok(())
    }

    fn release(&mut self, ss: SsId) -> Result<(), Rejected> {
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

    /// The `max_live_superslabs` exploration bound.
    fn room_for_live_ss(&self) -> Result<(), Rejected> {
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

    fn arena_take(&mut self, ss: SsId) -> Result<(), Rejected> {
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

    fn stage1_discard(
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

    fn realloc(&mut self, t: ThreadId, block: BlockId, class: ClassId) -> Result<(), Rejected> {
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
