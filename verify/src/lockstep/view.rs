//! Comparison: both states as normalised [`View`]s (part name →
//! description; equal states give equal views), the [`Scope`] of a call
//! (which parts it touched) and [`first_difference`].

use super::ids::IdMap;
use std::collections::{BTreeMap, BTreeSet};

use hakmem::observe::Event;
use hakmem::size_class::NUM_CLASSES;
use hakmem::snapshot::Snapshot;
use hakmem::superslab::{SlotState as ImplSlot, SsStatus as ImplStatus};
use model::{ClassId, PageId, SlotIdx, SlotState, SsId, SsStatus, State, ThreadId};

/// A normalised view of a state: part name → description. Both sides
/// produce the same part names for equal states.
pub type View = BTreeMap<String, String>;

fn slot_key(ss: SsId, slot: usize) -> String {
    format!("ss{:03}/{slot:02}", ss.0)
}

fn pages_str(v: &[PageId]) -> String {
    let v: Vec<String> = v.iter().map(|p| p.to_string()).collect();
    format!("[{}]", v.join(", "))
}

/// The model's state as a [`View`] (heaps `0..heaps` only: the lockstep
/// creates model threads as the implementation creates heaps).
pub fn view_of_model(m: &State, heaps: usize) -> View {
    view_of_model_in(m, heaps, None)
}

/// The parts of the model's view in `scope` (`None`: all), as
/// [`view_of_model`].
pub fn view_of_model_in(m: &State, heaps: usize, scope: Option<&Scope>) -> View {
    let mut v = View::new();
    for (i, s) in m.superslabs.iter().enumerate() {
        let id = SsId(i as u16);
        if s.status == SsStatus::Released || scope.is_some_and(|sc| !sc.superslabs.contains(&id)) {
            continue;
        }
        v.insert(
            format!("ss{:03} header", id.0),
            format!(
                "{:?} mask {:#x} count {} total_active {}",
                s.status, s.empty_mask, s.empty_count, s.total_active
            ),
        );
        for (j, sl) in s.slots.iter().enumerate() {
            let st = match sl.state {
                SlotState::Unused => "Unused".to_string(),
                SlotState::Empty { class } => format!("Empty {class}"),
                SlotState::Active { class, owner } => format!(
                    "Active {class} owner {}",
                    owner.map_or("none".into(), |o| o.to_string())
                ),
            };
            v.insert(format!("{} state", slot_key(id, j)), st);
            let page = PageId {
                ss: id,
                slot: SlotIdx(j as u8),
            };
            if scope.is_some_and(|sc| !sc.pages.contains(&page)) {
                continue;
            }
            if let SlotState::Active { .. } = sl.state {
                let free: Vec<u32> = sl.free.iter().rev().copied().collect();
                let remote: Vec<u32> = sl.remote.iter().rev().copied().collect();
                v.insert(
                    format!("{} page", slot_key(id, j)),
                    format!(
                        "carved {} free {free:?} remote {remote:?} shared_used {} delta {} in_full {}",
                        sl.carved, sl.shared_used, sl.delta, sl.in_full
                    ),
                );
            }
        }
    }
    for c in 0..m.registry.len() {
        if scope.is_some_and(|sc| !sc.classes.contains(&c)) {
            continue;
        }
        if !m.registry[c].is_empty() {
            let r: Vec<u16> = m.registry[c].iter().map(|s| s.0).collect();
            v.insert(format!("registry[c{c}]"), format!("{r:?}"));
        }
        let s1: Vec<PageId> = m.stage1[c].iter().rev().map(|e| e.page).collect();
        if !s1.is_empty() {
            v.insert(format!("stage1[c{c}]"), pages_str(&s1));
        }
        let fb: Vec<PageId> = m.fallback[c].iter().rev().copied().collect();
        if !fb.is_empty() {
            v.insert(format!("fallback[c{c}]"), pages_str(&fb));
        }
        let ab: Vec<PageId> = m.abandoned[c].iter().copied().collect();
        if !ab.is_empty() {
            v.insert(format!("abandoned[c{c}]"), pages_str(&ab));
        }
    }
    if scope.is_none_or(|sc| sc.nodes) {
        v.insert("node pool".into(), format!("{} free", m.node_pool.len()));
    }
    for (t, h) in m.heaps.iter().enumerate().take(heaps) {
        if scope.is_some_and(|sc| !sc.heaps.contains(&t)) {
            continue;
        }
        // The effective hint: set and a full page has remote frees (impl
        // clears a stale hint lazily in its slow path, with no step).
        let pending = h.classes.iter().any(|hc| {
            hc.full
                .iter()
                .any(|p| m.slot(*p).is_some_and(|s| !s.remote.is_empty()))
        });
        v.insert(
            format!("heap t{t}"),
            format!("alive {} full_hint {}", h.alive, h.full_hint && pending),
        );
        for (c, hc) in h.classes.iter().enumerate() {
            if hc.current.is_none() && hc.partial.is_empty() && hc.full.is_empty() {
                continue;
            }
            let partial: Vec<PageId> = hc.partial.iter().copied().collect();
            let full: Vec<PageId> = hc.full.iter().copied().collect();
            v.insert(
                format!("heap t{t} c{c}"),
                format!(
                    "current {} partial {} full {}",
                    hc.current.map_or("none".into(), |p| p.to_string()),
                    pages_str(&partial),
                    pages_str(&full)
                ),
            );
        }
    }
    v
}

/// The implementation's snapshot as a [`View`] in the model's terms.
pub fn view_of_impl(s: &Snapshot, ids: &IdMap) -> View {
    view_of_impl_in(s, ids, None)
}

/// The parts of the implementation's view in `scope` (`None`: all), as
/// [`view_of_impl`]; `s` must hold at least those parts
/// ([`hakmem::snapshot::Scope`]).
pub fn view_of_impl_in(s: &Snapshot, ids: &IdMap, scope: Option<&Scope>) -> View {
    let mut v = View::new();
    let unknown = |base: usize| format!("unknown SuperSlab {base:#x}");
    let page = |p: (usize, u8)| -> Result<PageId, String> {
        ids.id(p.0)
            .map(|ss| PageId {
                ss,
                slot: SlotIdx(p.1),
            })
            .ok_or_else(|| unknown(p.0))
    };
    let pages = |l: &[(usize, u8)]| -> String {
        let r: Result<Vec<PageId>, String> = l.iter().map(|&p| page(p)).collect();
        match r {
            Ok(v) => pages_str(&v),
            Err(e) => e,
        }
    };
    for ss in &s.superslabs {
        let Some(id) = ids.id(ss.base) else {
            v.insert(format!("unmapped {:#x}", ss.base), unknown(ss.base));
            continue;
        };
        if scope.is_some_and(|sc| !sc.superslabs.contains(&id)) {
            continue;
        }
        let status = match ss.status {
            ImplStatus::Live => SsStatus::Live,
            ImplStatus::Cached => SsStatus::Cached,
        };
        v.insert(
            format!("ss{:03} header", id.0),
            format!(
                "{status:?} mask {:#x} count {} total_active {}",
                ss.empty_mask, ss.empty_count, ss.total_active
            ),
        );
        for (j, sl) in ss.slots.iter().enumerate() {
            let st = match sl.state {
                ImplSlot::Unused => "Unused".to_string(),
                ImplSlot::Empty(c) | ImplSlot::Purging(c) => format!("Empty {}", ClassId(c)),
                ImplSlot::Active(c) => format!(
                    "Active {} owner {}",
                    ClassId(c),
                    sl.owner
                        .map_or("none".into(), |o| ThreadId(o as u8).to_string())
                ),
            };
            v.insert(format!("{} state", slot_key(id, j)), st);
            let page_id = PageId {
                ss: id,
                slot: SlotIdx(j as u8),
            };
            if scope.is_some_and(|sc| !sc.pages.contains(&page_id)) {
                continue;
            }
            if let Some(p) = &sl.page {
                v.insert(
                    format!("{} page", slot_key(id, j)),
                    format!(
                        "carved {} free {:?} remote {:?} shared_used {} delta {} in_full {}",
                        p.carved, p.free, p.remote, p.shared_used, p.delta, p.in_full
                    ),
                );
            }
        }
    }
    for c in 0..NUM_CLASSES {
        if scope.is_some_and(|sc| !sc.classes.contains(&c)) {
            continue;
        }
        if !s.registry[c].is_empty() {
            let r: Vec<String> = s.registry[c]
                .iter()
                .map(|b| ids.id(*b).map_or(unknown(*b), |i| i.0.to_string()))
                .collect();
            v.insert(format!("registry[c{c}]"), format!("[{}]", r.join(", ")));
        }
        if !s.stage1[c].is_empty() {
            v.insert(format!("stage1[c{c}]"), pages(&s.stage1[c]));
        }
        if !s.fallback[c].is_empty() {
            v.insert(format!("fallback[c{c}]"), pages(&s.fallback[c]));
        }
        if !s.abandoned[c].is_empty() {
            let mut ab = s.abandoned[c].clone();
            ab.sort_by_key(|&p| page(p).ok());
            v.insert(format!("abandoned[c{c}]"), pages(&ab));
        }
    }
    if scope.is_none_or(|sc| sc.nodes) {
        v.insert("node pool".into(), format!("{} free", s.free_nodes));
    }
    for h in &s.heaps {
        let t = h.index;
        if scope.is_some_and(|sc| !sc.heaps.contains(&(t as usize))) {
            continue;
        }
        let pending = h
            .full
            .iter()
            .flatten()
            .any(|&p| s.page(p).is_some_and(|pg| !pg.remote.is_empty()));
        v.insert(
            format!("heap t{t}"),
            format!("alive {} full_hint {}", h.alive, h.full_hint && pending),
        );
        for c in 0..NUM_CLASSES {
            if h.current[c].is_none() && h.partial[c].is_empty() && h.full[c].is_empty() {
                continue;
            }
            let mut partial = h.partial[c].clone();
            partial.sort_by_key(|&p| page(p).ok());
            let mut full = h.full[c].clone();
            full.sort_by_key(|&p| page(p).ok());
            v.insert(
                format!("heap t{t} c{c}"),
                format!(
                    "current {} partial {} full {}",
                    h.current[c].map_or("none".into(), |p| page(p)
                        .map_or_else(|e| e, |p| p.to_string())),
                    pages(&partial),
                    pages(&full)
                ),
            );
        }
    }
    v
}

/// The parts of the state a check compares, in the model's terms: a slot's
/// state for every slot of `superslabs` (and their headers), the page of
/// each of `pages`, the registry, stage-1, fallback and abandoned lists of
/// `classes`, the heaps of `heaps` (every class), and the node pool's free
/// count if `nodes`.
#[derive(Clone, Debug, Default)]
pub struct Scope {
    /// SuperSlabs (header and every slot's state).
    pub superslabs: BTreeSet<SsId>,
    /// Pages (carved, free and remote lists, accounting, full mark).
    pub pages: BTreeSet<PageId>,
    /// Per-class lists.
    pub classes: BTreeSet<usize>,
    /// Heaps.
    pub heaps: BTreeSet<usize>,
    /// The node pool's free count.
    pub nodes: bool,
}

/// How much of the state the lockstep compares after each call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckMode {
    /// After every call, everything: the whole snapshot against the whole
    /// model, the live-block sets, the model's invariants and the
    /// implementation's own snapshot check (cost O(state) per call).
    Full,
    /// After every call, only what its events touched ([`Scope`]: the
    /// SuperSlabs and pages they name, the classes of those pages and of the
    /// events, the heaps of the events and the pages' owners, the node pool
    /// if a step used it); everything ([`CheckMode::Full`]'s checks) every
    /// `full_every` calls, after any call with a rare step (thread exit,
    /// abandon, reclaim, release, arena take), after `new_thread`, `exit`,
    /// `release_empty`, `purge_now`, and on [`Lockstep::check`](super::Lockstep::check).
    Touched {
        /// Calls between two full checks.
        full_every: u64,
    },
}

/// The SuperSlab page, heap and class an event names (impl terms).
pub(super) fn touched_by(ev: &Event) -> (Option<(usize, u8)>, Option<u32>, Option<u8>) {
    match *ev {
        Event::AllocFast {
            t, class, ss, slot, ..
        }
        | Event::SetCurrent { t, class, ss, slot }
        | Event::Acquire {
            t, class, ss, slot, ..
        }
        | Event::Stage1Discard {
            t, class, ss, slot, ..
        } => (Some((ss, slot)), Some(t), Some(class)),
        Event::Carve { t, ss, slot, .. }
        | Event::Drain { t, ss, slot, .. }
        | Event::PageFull { t, ss, slot }
        | Event::Unfull { t, ss, slot }
        | Event::FreeLocal { t, ss, slot, .. }
        | Event::FreeRemote { t, ss, slot, .. }
        | Event::Flush { t, ss, slot, .. }
        | Event::PageEmpty { t, ss, slot, .. }
        | Event::Abandon { t, ss, slot } => (Some((ss, slot)), Some(t), None),
        Event::Retire { ss, slot } => (Some((ss, slot)), None, None),
        Event::ThreadExit { t } => (None, Some(t), None),
        Event::Reclaim { t, class, .. } => (None, Some(t), Some(class)),
        Event::Release { ss, .. } | Event::ArenaTake { ss } => (Some((ss, 0)), None, None),
    }
}

/// Steps after which [`CheckMode::Touched`] compares everything: they move
/// many pages at once, or SuperSlabs.
pub(super) fn is_rare(ev: &Event) -> bool {
    matches!(
        ev,
        Event::ThreadExit { .. }
            | Event::Abandon { .. }
            | Event::Reclaim { .. }
            | Event::Release { .. }
            | Event::ArenaTake { .. }
    )
}

/// Whether the parts of `scope` are equal in the model and in `snap` (a
/// snapshot of at least those parts): the same relation as comparing
/// [`view_of_model_in`] with [`view_of_impl_in`], restricted to the pages of
/// the scope (not every slot of its SuperSlabs) and to the scope's classes
/// in its heaps, without building strings (the per-event fast path of
/// [`CheckMode::Touched`]).
pub(super) fn touched_equal(m: &State, snap: &Snapshot, ids: &IdMap, scope: &Scope) -> bool {
    let map = |p: &(usize, u8)| {
        ids.id(p.0).map(|ss| PageId {
            ss,
            slot: SlotIdx(p.1),
        })
    };
    let ss_of = |id: SsId| snap.superslabs.iter().find(|s| ids.id(s.base) == Some(id));
    for &id in &scope.superslabs {
        let ms = &m.superslabs[usize::from(id.0)];
        let Some(is) = ss_of(id) else {
            return ms.status == SsStatus::Released;
        };
        let status = match is.status {
            ImplStatus::Live => SsStatus::Live,
            ImplStatus::Cached => SsStatus::Cached,
        };
        if ms.status != status
            || ms.empty_mask != is.empty_mask
            || ms.empty_count != is.empty_count
            || ms.total_active != i64::from(is.total_active)
        {
            return false;
        }
    }
    for page in &scope.pages {
        let (Some(ms), Some(is)) = (m.slot(*page), ss_of(page.ss)) else {
            return false;
        };
        let isl = &is.slots[usize::from(page.slot.0)];
        let same_state = match (ms.state, isl.state) {
            (SlotState::Unused, ImplSlot::Unused) => true,
            (SlotState::Empty { class }, ImplSlot::Empty(c) | ImplSlot::Purging(c)) => class.0 == c,
            (SlotState::Active { class, owner }, ImplSlot::Active(c)) => {
                class.0 == c && owner.map(|o| u32::from(o.0)) == isl.owner
            }
            _ => false,
        };
        if !same_state {
            return false;
        }
        let page_ok = match (&ms.state, &isl.page) {
            (SlotState::Active { .. }, Some(p)) => {
                // Lists: length (free: through `used`) and head; the whole
                // lists are compared by the full checks.
                ms.carved == p.carved
                    && ms.used() == i64::from(p.used)
                    && ms.shared_used == i64::from(p.shared_used)
                    && ms.delta == p.delta
                    && ms.in_full == p.in_full
                    && ms.free.last() == p.free.first()
                    && ms.remote.last() == p.remote.first()
                    && ms.remote.is_empty() == p.remote.is_empty()
            }
            (SlotState::Active { .. }, None) => false,
            _ => true,
        };
        if !page_ok {
            return false;
        }
    }
    for &c in &scope.classes {
        let reg_ok = m.registry[c].len() == snap.registry[c].len()
            && m.registry[c]
                .iter()
                .zip(&snap.registry[c])
                .all(|(a, b)| ids.id(*b) == Some(*a));
        let s1_ok = m.stage1[c].len() == snap.stage1[c].len()
            && m.stage1[c]
                .iter()
                .rev()
                .zip(&snap.stage1[c])
                .all(|(a, b)| map(b) == Some(a.page));
        let fb_ok = m.fallback[c].len() == snap.fallback[c].len()
            && m.fallback[c]
                .iter()
                .rev()
                .zip(&snap.fallback[c])
                .all(|(a, b)| map(b) == Some(*a));
        let ab_ok = m.abandoned[c].len() == snap.abandoned[c].len() && {
            let mut ab: Vec<Option<PageId>> = snap.abandoned[c].iter().map(map).collect();
            ab.sort();
            m.abandoned[c].iter().zip(&ab).all(|(a, b)| Some(*a) == *b)
        };
        if !(reg_ok && s1_ok && fb_ok && ab_ok) {
            return false;
        }
    }
    if scope.nodes && m.node_pool.len() != snap.free_nodes {
        return false;
    }
    for &t in &scope.heaps {
        let (Some(mh), Some(ih)) = (
            m.heaps.get(t),
            snap.heaps.iter().find(|h| h.index as usize == t),
        ) else {
            return false;
        };
        let m_pending = mh.classes.iter().any(|hc| {
            hc.full
                .iter()
                .any(|p| m.slot(*p).is_some_and(|s| !s.remote.is_empty()))
        });
        let i_pending = ih
            .full
            .iter()
            .flatten()
            .any(|&p| snap.page(p).is_some_and(|pg| !pg.remote.is_empty()));
        if mh.alive != ih.alive || (mh.full_hint && m_pending) != (ih.full_hint && i_pending) {
            return false;
        }
        for &c in &scope.classes {
            let hc = &mh.classes[c];
            let sorted = |l: &[(usize, u8)]| {
                let mut v: Vec<Option<PageId>> = l.iter().map(map).collect();
                v.sort();
                v
            };
            let same = |set: &BTreeSet<PageId>, l: &[(usize, u8)]| {
                set.len() == l.len() && set.iter().zip(sorted(l)).all(|(a, b)| Some(*a) == b)
            };
            if hc.current != ih.current[c].and_then(|p| map(&p))
                || ih.current[c].is_some_and(|p| map(&p).is_none())
                || !same(&hc.partial, &ih.partial[c])
                || !same(&hc.full, &ih.full[c])
            {
                return false;
            }
        }
    }
    true
}

/// The first part where two views differ: `(part, model, impl)`.
pub fn first_difference(model: &View, imp: &View) -> Option<(String, String, String)> {
    let keys: BTreeSet<&String> = model.keys().chain(imp.keys()).collect();
    let absent = || "<absent>".to_string();
    keys.into_iter().find_map(|k| {
        let (a, b) = (model.get(k), imp.get(k));
        (a != b).then(|| {
            (
                k.clone(),
                a.cloned().unwrap_or_else(absent),
                b.cloned().unwrap_or_else(absent),
            )
        })
    })
}
