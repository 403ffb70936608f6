//! `State::enabled_steps`: every step allowed in a state, with every choice
//! enumerated, in a deterministic order. The explorer walks these; the
//! proptest generators pick among them. Every step listed here is accepted
//! by `apply` (the explorer checks this on every transition).

use crate::ids::{ClassId, PageId, SlotIdx, SsId, ThreadId};
use crate::state::{SlotState, SsStatus, State};
use crate::step::{FlushReason, Stage, Stage1Source, Step};

impl State {
    /// Every step enabled here, choices enumerated, in a fixed order.
    pub fn enabled_steps(&self) -> Vec<Step> {
        let mut carve_ok: Option<(PageId, bool)> = None;
        self.candidates()
            .into_iter()
            .filter(|s| match *s {
                // Every `n` in 1..=capacity-carved has the same
                // pre-condition: check it once per page (capacities reach
                // 4096 in production).
                Step::Carve { t, page, .. } => match carve_ok {
                    Some((p, ok)) if p == page => ok,
                    _ => {
                        let ok = self.allows(&Step::Carve { t, page, n: 1 });
                        carve_ok = Some((page, ok));
                        ok
                    }
                },
                _ => self.allows(s),
            })
            .collect()
    }

    /// Every enabled step with the state it leads to.
    ///
    /// The same steps as `enabled_steps`, in the same order, each applied
    /// once. A rejected step leaves the state unchanged (`apply` checks
    /// before it mutates), so one scratch copy serves every rejected
    /// candidate and a new copy is made only after an accepted one.
    pub fn successors(&self) -> Vec<(Step, State)> {
        let mut out = Vec::new();
        let mut scratch = self.clone();
        for s in self.candidates() {
            match scratch.apply(&s) {
                Ok(()) => out.push((s, std::mem::replace(&mut scratch, self.clone()))),
                Err(_) => debug_assert!(scratch == *self, "rejected {s} changed the state"),
            }
        }
        out
    }

    /// A superset of the enabled steps, cheaply pre-filtered; `apply`
    /// decides.
    fn candidates(&self) -> Vec<Step> {
        let mut out = Vec::new();
        let mut push = |s: Step| out.push(s);
        for (ti, heap) in self.heaps.iter().enumerate() {
            if !heap.alive {
                continue;
            }
            let t = ThreadId(ti as u8);
            for (ci, hc) in heap.classes.iter().enumerate() {
                let class = ClassId(ci as u8);
                if let Some(page) = hc.current {
                    if let Some(&i) = self.slot(page).and_then(|s| s.free.last()) {
                        push(Step::AllocFast {
                            t,
                            class,
                            page,
                            block: page.block(i),
                        });
                    }
                    push(Step::PageFull { t, page });
                }
                let exhausted = hc
                    .current
                    .is_none_or(|c| self.slot(c).is_none_or(|s| s.free.is_empty()));
                if exhausted {
                    for &page in &hc.partial {
                        push(Step::SetCurrent { t, class, page });
                    }
                }
                for &page in &hc.full {
                    push(Step::Unfull { t, page });
                }
                self.acquire_choices(t, class, &mut push);
                if !self.abandoned[ci].is_empty() {
                    push(Step::Reclaim { t, class });
                }
                if self.stage1[ci]
                    .last()
                    .is_some_and(|e| self.is_stale(e.page))
                {
                    push(Step::Stage1Discard {
                        t,
                        class,
                        source: Stage1Source::List,
                    });
                }
                if self.fallback[ci].last().is_some_and(|p| self.is_stale(*p)) {
                    push(Step::Stage1Discard {
                        t,
                        class,
                        source: Stage1Source::Fallback,
                    });
                }
            }
            // Owner steps on every page t owns.
            for (page, slot) in self.pages() {
                if slot.owner() != Some(t) {
                    continue;
                }
                let cap = slot.class().map_or(0, |c| self.cfg.capacity(c, page.slot));
                for n in 1..=cap.saturating_sub(slot.carved) {
                    push(Step::Carve { t, page, n });
                }
                let n = slot.remote.len() as u32;
                if n > 0 {
                    push(Step::Drain { t, page, n });
                }
                if slot.delta != 0 {
                    for reason in [FlushReason::Threshold, FlushReason::Boundary] {
                        push(Step::Flush { t, page, reason });
                    }
                }
                push(Step::PageEmpty { t, page });
                if slot.used() > 0 {
                    push(Step::Abandon { t, page });
                }
            }
            for (&block, &bclass) in &self.live {
                if self.slot(block.page()).and_then(|s| s.owner()) == Some(t) {
                    push(Step::FreeLocal { t, block });
                } else {
                    push(Step::FreeRemote { t, block });
                }
                for (ci, hc) in heap.classes.iter().enumerate() {
                    let class = ClassId(ci as u8);
                    if class != bclass && hc.current.is_some() {
                        push(Step::Realloc { t, block, class });
                    }
                }
            }
            push(Step::ThreadExit { t });
        }
        for &block in &self.in_flight {
            push(Step::PublishRemote { block });
        }
        for (si, ss) in self.superslabs.iter().enumerate() {
            let id = SsId(si as u16);
            match ss.status {
                SsStatus::Live => {
                    for (i, slot) in ss.slots.iter().enumerate() {
                        if matches!(slot.state, SlotState::Empty { .. }) {
                            push(Step::Retire {
                                ss: id,
                                slot: SlotIdx(i as u8),
                            });
                        }
                    }
                    push(Step::Release { ss: id });
                }
                SsStatus::Cached => push(Step::ArenaTake { ss: id }),
                SsStatus::Released => {}
            }
        }
        out
    }

    /// Every `Acquire` choice of `t` for `class`, before filtering.
    fn acquire_choices(&self, t: ThreadId, class: ClassId, push: &mut impl FnMut(Step)) {
        let mut at = |stage: Stage, page: PageId| {
            push(Step::Acquire {
                t,
                class,
                stage,
                ss: page.ss,
                slot: page.slot,
            })
        };
        let ci = usize::from(class.0);
        for &ss in self.registry[ci].iter().take(self.cfg.scan_limit) {
            for i in 0..self.cfg.slots {
                let page = PageId {
                    ss,
                    slot: SlotIdx(i),
                };
                if matches!(
                    self.slot(page).map(|s| s.state),
                    Some(SlotState::Empty { .. })
                ) {
                    at(Stage::Scan, page);
                }
            }
        }
        if let Some(e) = self.stage1[ci].last() {
            at(Stage::List, e.page);
        }
        if let Some(&p) = self.fallback[ci].last() {
            at(Stage::Fallback, p);
        }
        // Stage 2 and 3 (including the next new SuperSlab).
        for si in 0..=self.superslabs.len() {
            let id = SsId(si as u16);
            let live = self
                .superslabs
                .get(si)
                .is_none_or(|s| s.status == SsStatus::Live);
            if !live {
                continue;
            }
            let registered = self.registry.iter().any(|r| r.contains(&id));
            for i in 0..self.cfg.slots {
                let page = PageId::new(si as u16, i);
                if self.slot(page).is_none_or(|s| s.state == SlotState::Unused) {
                    at(
                        if registered {
                            Stage::Unused
                        } else {
                            Stage::Fresh
                        },
                        page,
                    );
                }
            }
        }
    }
}
