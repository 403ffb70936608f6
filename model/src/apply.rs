//! `State::apply`: the pre-conditions and effects of every step. A step the
//! protocol does not allow is rejected with a reason and leaves the state
//! unchanged; no input, however out of range, makes `apply` panic.
//!
//! Each step first checks everything, then mutates; the only composite step
//! (`Realloc`) works on a copy.

use std::fmt;

use crate::ids::{ClassId, PageId, SsId, ThreadId};
use crate::mutant::Mutant;
use crate::state::{SlotState, SsStatus, State, SuperSlab};
use crate::step::Step;

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

mod acquire;
mod ownership;
mod page;
mod release;

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
}
