//! The ten invariants of `docs/protocol.md`, each named and checked by
//! [`State::check_invariants`] (first violation) and [`State::violations`]
//! (all of them). Each check's rationale is on its variant.

use std::collections::BTreeMap;

use crate::ids::{PageId, ThreadId};
use crate::invariant::{Invariant, Violation};
use crate::state::{SlotState, SsStatus, State};

/// Collects violations.
struct Report(Vec<Violation>);

impl Report {
    fn fail(&mut self, invariant: Invariant, detail: String) {
        self.0.push(Violation { invariant, detail });
    }
}

impl State {
    /// The first violated invariant (in number order), if any.
    pub fn check_invariants(&self) -> Result<(), Violation> {
        match self.violations().into_iter().next() {
            Some(v) => Err(v),
            None => Ok(()),
        }
    }

    /// Every violation, in invariant order.
    pub fn violations(&self) -> Vec<Violation> {
        let mut r = Report(Vec::new());
        self.check_blocks(&mut r);
        self.check_counters(&mut r);
        self.check_slots_at_rest(&mut r);
        self.check_heaps(&mut r);
        self.check_stage1(&mut r);
        self.check_abandoned(&mut r);
        r.0.sort_by_key(|v| v.invariant);
        r.0
    }

    /// Invariants 1 and 2, per `Active` page.
    fn check_blocks(&self, r: &mut Report) {
        use Invariant::*;
        for (page, slot) in self.pages() {
            if !matches!(slot.state, SlotState::Active { .. }) {
                continue;
            }
            // index -> (live, listed)
            let mut seen: BTreeMap<u32, (bool, u32)> = BTreeMap::new();
            for (b, _) in self.live_blocks_of(page) {
                seen.entry(b.index).or_default().0 = true;
            }
            let flight = self.in_flight.iter().filter(|b| b.page() == page);
            for i in slot
                .free
                .iter()
                .chain(&slot.remote)
                .chain(flight.map(|b| &b.index))
            {
                seen.entry(*i).or_default().1 += 1;
            }
            for (&i, &(live, listed)) in &seen {
                if i >= slot.carved {
                    r.fail(
                        Conservation,
                        format!(
                            "{} appears but only {} are carved",
                            page.block(i),
                            slot.carved
                        ),
                    );
                } else if listed > 1 {
                    r.fail(
                        Conservation,
                        format!("{} is on free/remote lists {listed} times", page.block(i)),
                    );
                } else if live && listed == 1 {
                    r.fail(
                        NoDoubleHandOut,
                        format!("{} is live and on a free or remote list", page.block(i)),
                    );
                }
            }
            for i in 0..slot.carved {
                if !seen.contains_key(&i) {
                    r.fail(
                        Conservation,
                        format!("{} is lost: neither live nor listed", page.block(i)),
                    );
                }
            }
        }
    }

    /// Invariants 3, 4, 5 and 7.
    fn check_counters(&self, r: &mut Report) {
        use Invariant::*;
        for (si, ss) in self.superslabs.iter().enumerate() {
            let mut sum = 0i64;
            let mut mask = 0u32;
            for (i, slot) in ss.slots.iter().enumerate() {
                let page = PageId::new(si as u16, i as u8);
                sum += slot.shared_used;
                if slot.shared_used + slot.delta != slot.used() {
                    r.fail(
                        Accounting,
                        format!(
                            "{page}: shared_used {} + delta {} != used {}",
                            slot.shared_used,
                            slot.delta,
                            slot.used()
                        ),
                    );
                }
                if let SlotState::Active { class, owner } = slot.state {
                    let cap = i64::from(self.cfg.capacity(class, page.slot));
                    let truth =
                        (self.live_in(page) + slot.remote.len() + self.in_flight_to(page)) as i64;
                    if slot.used() != truth {
                        r.fail(
                            Accounting,
                            format!("{page}: used {} but {truth} live or remote", slot.used()),
                        );
                    }
                    if !(0..=cap).contains(&slot.shared_used) {
                        r.fail(
                            Accounting,
                            format!("{page}: shared_used {} outside 0..={cap}", slot.shared_used),
                        );
                    }
                    let limit = i64::from(self.cfg.threshold(class, page.slot));
                    if owner.is_some() && slot.delta.abs() > limit {
                        r.fail(
                            BoundedDelta,
                            format!("{page}: |delta| = {} > threshold {limit}", slot.delta.abs()),
                        );
                    }
                    if owner.is_none() && slot.delta != 0 {
                        r.fail(
                            BoundedDelta,
                            format!("abandoned {page} has delta {}", slot.delta),
                        );
                    }
                } else if slot.delta != 0 {
                    r.fail(
                        BoundedDelta,
                        format!("{page} is {:?} with delta {}", slot.state, slot.delta),
                    );
                }
                if matches!(slot.state, SlotState::Empty { .. }) {
                    mask |= 1 << i;
                }
            }
            if sum != ss.total_active {
                r.fail(
                    TotalActive,
                    format!(
                        "ss{si}: total_active {} != Σ shared_used {sum}",
                        ss.total_active
                    ),
                );
            }
            if ss.empty_mask != mask {
                r.fail(
                    Masks,
                    format!(
                        "ss{si}: empty_mask {:#b} but Empty slots {mask:#b}",
                        ss.empty_mask
                    ),
                );
            }
            if ss.empty_count != ss.empty_mask.count_ones() {
                r.fail(
                    Masks,
                    format!(
                        "ss{si}: empty_count {} != popcount {}",
                        ss.empty_count,
                        ss.empty_mask.count_ones()
                    ),
                );
            }
        }
    }

    /// Invariant 6.
    fn check_slots_at_rest(&self, r: &mut Report) {
        use Invariant::SafeReuse;
        for (page, slot) in self.pages() {
            let active_class = match slot.state {
                SlotState::Active { class, .. } => Some(class),
                _ => None,
            };
            for (b, c) in self.live_blocks_of(page) {
                if active_class != Some(*c) {
                    r.fail(
                        SafeReuse,
                        format!("live {b} of {c} but its slot is {:?}", slot.state),
                    );
                }
            }
            if active_class.is_none() {
                if !slot.remote.is_empty() || self.in_flight_to(page) > 0 {
                    r.fail(
                        SafeReuse,
                        format!("{page} is {:?} with remote frees pending", slot.state),
                    );
                }
                if slot.carved != 0 || !slot.free.is_empty() || slot.in_full {
                    r.fail(
                        SafeReuse,
                        format!("{page} is {:?} but still holds a page", slot.state),
                    );
                }
            }
        }
        for (si, ss) in self.superslabs.iter().enumerate() {
            if ss.status != SsStatus::Live
                && (ss.total_active != 0 || ss.slots.iter().any(|s| s.state != SlotState::Unused))
            {
                r.fail(
                    SafeReuse,
                    format!(
                        "ss{si} is {:?} but not all Unused / total_active {}",
                        ss.status, ss.total_active
                    ),
                );
            }
        }
    }

    /// Invariant 8 (and the dead-heap part of 10).
    fn check_heaps(&self, r: &mut Report) {
        use Invariant::*;
        let mut placed: BTreeMap<PageId, u32> = BTreeMap::new();
        for (ti, heap) in self.heaps.iter().enumerate() {
            let t = ThreadId(ti as u8);
            for (ci, hc) in heap.classes.iter().enumerate() {
                let lists = hc
                    .current
                    .iter()
                    .map(|p| (p, false))
                    .chain(hc.partial.iter().map(|p| (p, false)))
                    .chain(hc.full.iter().map(|p| (p, true)));
                for (&page, on_full) in lists {
                    *placed.entry(page).or_default() += 1;
                    let Some(slot) = self.slot(page) else {
                        r.fail(HeapLists, format!("{t} lists {page}, which does not exist"));
                        continue;
                    };
                    match slot.state {
                        SlotState::Active { class, owner }
                            if usize::from(class.0) == ci && owner == Some(t) => {}
                        s => r.fail(
                            HeapLists,
                            format!("{t} lists {page} under class {ci} but it is {s:?}"),
                        ),
                    }
                    if slot.in_full != on_full {
                        r.fail(
                            HeapLists,
                            format!("{page}: in_full = {} but on_full = {on_full}", slot.in_full),
                        );
                    }
                    if on_full {
                        let cap = slot.class().map_or(0, |c| self.cfg.capacity(c, page.slot));
                        if !slot.free.is_empty() || slot.carved != cap {
                            r.fail(
                                HeapLists,
                                format!("full page {page} has free blocks or room to carve"),
                            );
                        }
                        if !slot.remote.is_empty() && !heap.full_hint {
                            r.fail(HeapLists, format!("full page {page} has remote frees but {t}'s full_hint is clear"));
                        }
                    }
                }
            }
        }
        for (&page, &n) in &placed {
            if n > 1 {
                r.fail(HeapLists, format!("{page} is in heap lists {n} times"));
            }
        }
        for (page, slot) in self.pages() {
            if let Some(o) = slot.owner() {
                let alive = self.heaps.get(usize::from(o.0)).is_some_and(|h| h.alive);
                if !alive {
                    r.fail(Abandonment, format!("dead heap {o} owns {page}"));
                } else if !placed.contains_key(&page) {
                    r.fail(HeapLists, format!("{o} owns {page} but does not list it"));
                }
            } else if slot.in_full && !placed.contains_key(&page) {
                r.fail(HeapLists, format!("{page} is in_full but on no full list"));
            }
        }
        for (ti, heap) in self.heaps.iter().enumerate() {
            let listed = heap
                .classes
                .iter()
                .any(|hc| hc.current.is_some() || !hc.partial.is_empty() || !hc.full.is_empty());
            if !heap.alive && listed {
                r.fail(Abandonment, format!("dead heap t{ti} still lists pages"));
            }
        }
    }

    /// Invariant 9.
    fn check_stage1(&self, r: &mut Report) {
        use Invariant::Stage1Nodes;
        let mut nodes: BTreeMap<u16, u32> = BTreeMap::new();
        for n in self
            .node_pool
            .iter()
            .chain(self.stage1.iter().flatten().map(|e| &e.node))
        {
            *nodes.entry(n.0).or_default() += 1;
        }
        for n in 0..self.cfg.node_pool {
            match nodes.remove(&n).unwrap_or(0) {
                1 => {}
                0 => r.fail(Stage1Nodes, format!("node {n} is lost")),
                k => r.fail(Stage1Nodes, format!("node {n} is in {k} places")),
            }
        }
        for n in nodes.keys() {
            r.fail(Stage1Nodes, format!("node {n} is not a pool node"));
        }
        let named: Vec<PageId> = self
            .stage1
            .iter()
            .flatten()
            .map(|e| e.page)
            .chain(self.fallback.iter().flatten().copied())
            .collect();
        for p in &named {
            let status = self.superslabs.get(usize::from(p.ss.0)).map(|s| s.status);
            if status != Some(SsStatus::Live) {
                r.fail(
                    Stage1Nodes,
                    format!("an entry names {p} of a SuperSlab that is not Live ({status:?})"),
                );
            }
        }
        let mut on_fallback: BTreeMap<PageId, u32> = BTreeMap::new();
        for p in self.fallback.iter().flatten() {
            *on_fallback.entry(*p).or_default() += 1;
        }
        for (page, slot) in self.pages() {
            let n = on_fallback.get(&page).copied().unwrap_or(0);
            if n > 1 || (n == 1) != slot.listed {
                r.fail(
                    Stage1Nodes,
                    format!(
                        "{page} is on fallback lists {n} times, listed = {}",
                        slot.listed
                    ),
                );
            }
        }
        for (page, slot) in self.pages() {
            let live = self.superslabs[usize::from(page.ss.0)].status == SsStatus::Live;
            if live && matches!(slot.state, SlotState::Empty { .. }) && !named.contains(&page) {
                r.fail(
                    Stage1Nodes,
                    format!("Empty {page} is named by no stage-1 entry"),
                );
            }
        }
    }

    /// Invariant 10 (abandoned lists).
    fn check_abandoned(&self, r: &mut Report) {
        use Invariant::Abandonment;
        let mut on: BTreeMap<PageId, u32> = BTreeMap::new();
        for (ci, list) in self.abandoned.iter().enumerate() {
            for &page in list {
                *on.entry(page).or_default() += 1;
                match self.slot(page).map(|s| s.state) {
                    Some(SlotState::Active { class, owner: None })
                        if usize::from(class.0) == ci => {}
                    s => r.fail(
                        Abandonment,
                        format!("{page} on abandoned list of class {ci} is {s:?}"),
                    ),
                }
            }
        }
        for (&page, &n) in &on {
            if n > 1 {
                r.fail(Abandonment, format!("{page} is on {n} abandoned lists"));
            }
        }
        for (page, slot) in self.pages() {
            if matches!(slot.state, SlotState::Active { owner: None, .. })
                && !on.contains_key(&page)
            {
                r.fail(
                    Abandonment,
                    format!("ownerless {page} is on no abandoned list"),
                );
            }
        }
    }
}
