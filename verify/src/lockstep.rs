//! Refinement of the implementation against the model, in lockstep.
//!
//! A [`Lockstep`] drives an `impl` [`Instance`] with a recording backend
//! (see [`crate::backends::record`]) and a [`model::State`] whose
//! [`Config`] mirrors the instance's. After every call it
//!
//! 1. drains the protocol steps the implementation reported
//!    ([`hakmem::Event`]), maps each to a [`Step`] ([`IdMap`]: SuperSlab
//!    base → model id in mapping order, heap index → thread, block index as
//!    is) and applies it to the model: a step the model rejects is a
//!    [`Divergence`] naming the event, the step and the model's reason;
//! 2. checks the call's result against the steps (the pointer returned is
//!    the block the model handed out, a free freed it);
//! 3. compares the implementation's snapshot, mapped into the model's
//!    terms, with the model state part by part ([`view_of_model`] /
//!    [`view_of_impl`]): the first differing part is reported with both
//!    views;
//! 4. checks the model's invariants on that (equal) state, and the
//!    implementation's own snapshot check.
//!
//! `hktrace check` (issue 5) replays a trace through the same calls.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use hakmem::instance::{HeapId, Instance, InstanceConfig};
use hakmem::observe::{Event, Stage1Source as ImplSource};
use hakmem::page::PageList;
use hakmem::size_class::{class_for, CLASS_SIZES, NUM_CLASSES, SLOTS};
use hakmem::snapshot::Snapshot;
use hakmem::superslab::{SlotState as ImplSlot, SsStatus as ImplStatus};
use hakmem::sync::Backend;
use model::{
    BlockId, ClassId, ClassSpec, Config, FlushReason, PageId, SlotIdx, SlotState, SsId, SsStatus,
    Stage, Stage1Source, State, Step, ThreadId, Violation,
};

/// Why a lockstep call failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    /// The model rejected the step an event maps to.
    Rejected {
        /// The implementation's event.
        event: Event,
        /// The model step it maps to.
        step: Step,
        /// The model's reason.
        reason: String,
    },
    /// An event that cannot be mapped to a model step (unknown SuperSlab,
    /// a discarded entry that is not the model's head, …).
    Unmappable {
        /// The implementation's event.
        event: Event,
        /// Why.
        reason: String,
    },
    /// A part of the state differs between the model and the implementation.
    Differs {
        /// Which part (e.g. `ss0/3 page`, `stage1[c2]`, `heap t1 c0`).
        part: String,
        /// The model's view of it.
        model: String,
        /// The implementation's view of it.
        implementation: String,
    },
    /// The model's state (equal to the implementation's) breaks an invariant.
    Invariant(Violation),
    /// The implementation's own snapshot check failed.
    ImplCheck(String),
    /// The call's result disagrees with the steps it reported.
    Result(String),
    /// The caller used the lockstep wrongly (dead thread, unknown pointer).
    Usage(String),
}

/// A refinement failure: which call, which event, both views.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Divergence {
    /// Number of the call (0-based) in this lockstep's life.
    pub call_index: u64,
    /// The call, e.g. `alloc(t1, 24, align 8)`.
    pub call: String,
    /// The events of the call applied before the failure, as `event => step`.
    pub applied: Vec<String>,
    /// What went wrong.
    pub reason: Box<Reason>,
}

impl Divergence {
    /// A short name of the failure kind: `rejected`, `unmappable`,
    /// `differs`, `invariant`, `impl-check`, `result`, `usage`.
    pub fn kind(&self) -> &'static str {
        match *self.reason {
            Reason::Rejected { .. } => "rejected",
            Reason::Unmappable { .. } => "unmappable",
            Reason::Differs { .. } => "differs",
            Reason::Invariant(_) => "invariant",
            Reason::ImplCheck(_) => "impl-check",
            Reason::Result(_) => "result",
            Reason::Usage(_) => "usage",
        }
    }
}

impl fmt::Display for Divergence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "call #{} {}:", self.call_index, self.call)?;
        for a in &self.applied {
            writeln!(f, "  ok  {a}")?;
        }
        match &*self.reason {
            Reason::Rejected {
                event,
                step,
                reason,
            } => write!(
                f,
                "  impl reported {event:?}\n  = model step {step}\n  rejected by the model: {reason}"
            ),
            Reason::Unmappable { event, reason } => {
                write!(f, "  impl reported {event:?}\n  not a model step: {reason}")
            }
            Reason::Differs {
                part,
                model,
                implementation,
            } => write!(
                f,
                "  state differs at {part}\n    model: {model}\n    impl:  {implementation}"
            ),
            Reason::Invariant(v) => write!(f, "  invariant violated: {v}"),
            Reason::ImplCheck(e) => write!(f, "  impl snapshot check failed:\n{e}"),
            Reason::Result(e) => write!(f, "  call result: {e}"),
            Reason::Usage(e) => write!(f, "  misuse: {e}"),
        }
    }
}

impl std::error::Error for Divergence {}

/// The model configuration mirroring an instance configuration and a
/// backend: production geometry (32 slots, impl's 32 classes with their
/// slot-0 capacities), the instance's node pool, arena cache and scan
/// limit, the backend's flush threshold; `threads` heaps; no bound on
/// SuperSlabs or live blocks.
pub fn model_config<B: Backend>(cfg: &InstanceConfig, threads: u8) -> Config {
    let mut c = Config::production();
    c.classes = CLASS_SIZES
        .iter()
        .map(|&s| ClassSpec::from_size(s))
        .collect();
    c.threads = threads;
    c.max_superslabs = u16::MAX;
    c.scan_limit = cfg.scan_limit;
    c.node_pool = u16::try_from(cfg.node_pool).expect("node pool fits the model's u16");
    c.arena_cache = cfg.arena_cache;
    c.flush_threshold = B::FLUSH_THRESHOLD.unwrap_or(u32::MAX);
    c.max_live = usize::MAX;
    c
}

/// Maps impl identities to the model's: SuperSlab base addresses to model
/// ids in mapping order (a base unmapped and mapped again gets a new id).
#[derive(Clone, Debug, Default)]
pub struct IdMap {
    ids: HashMap<usize, SsId>,
}

impl IdMap {
    /// The model id of SuperSlab `base`, if known.
    pub fn id(&self, base: usize) -> Option<SsId> {
        self.ids.get(&base).copied()
    }

    fn page(&self, ev: &Event, base: usize, slot: u8) -> Result<PageId, Reason> {
        match self.id(base) {
            Some(ss) => Ok(PageId {
                ss,
                slot: SlotIdx(slot),
            }),
            None => Err(Reason::Unmappable {
                event: *ev,
                reason: format!("unknown SuperSlab {base:#x}"),
            }),
        }
    }

    /// The model step of `ev` in `model` (before the step), registering a
    /// SuperSlab that `ev` maps fresh. Extra fields of the event are checked
    /// against the model (a `Flush`'s delta, a `Reclaim`'s count, a
    /// `Stage1Discard`'s entry).
    pub fn step(&mut self, ev: &Event, model: &State) -> Result<Step, Reason> {
        let th = |t: u32| ThreadId(t as u8);
        let unmappable = |reason: String| Reason::Unmappable { event: *ev, reason };
        Ok(match *ev {
            Event::AllocFast {
                t,
                class,
                ss,
                slot,
                block,
            } => {
                let page = self.page(ev, ss, slot)?;
                Step::AllocFast {
                    t: th(t),
                    class: ClassId(class),
                    page,
                    block: page.block(block),
                }
            }
            Event::Carve { t, ss, slot, n } => Step::Carve {
                t: th(t),
                page: self.page(ev, ss, slot)?,
                n,
            },
            Event::Drain { t, ss, slot, n } => Step::Drain {
                t: th(t),
                page: self.page(ev, ss, slot)?,
                n,
            },
            Event::SetCurrent { t, class, ss, slot } => Step::SetCurrent {
                t: th(t),
                class: ClassId(class),
                page: self.page(ev, ss, slot)?,
            },
            Event::PageFull { t, ss, slot } => Step::PageFull {
                t: th(t),
                page: self.page(ev, ss, slot)?,
            },
            Event::Unfull { t, ss, slot } => Step::Unfull {
                t: th(t),
                page: self.page(ev, ss, slot)?,
            },
            Event::Acquire {
                t,
                class,
                stage,
                ss,
                slot,
            } => {
                let stage = match stage {
                    hakmem::Stage::Scan => Stage::Scan,
                    hakmem::Stage::List => Stage::List,
                    hakmem::Stage::Fallback => Stage::Fallback,
                    hakmem::Stage::Unused => Stage::Unused,
                    hakmem::Stage::Fresh => Stage::Fresh,
                };
                let id = match self.id(ss) {
                    Some(id) => id,
                    None if stage == Stage::Fresh => {
                        let id = SsId(model.superslabs.len() as u16);
                        self.ids.insert(ss, id);
                        id
                    }
                    None => return Err(unmappable(format!("unknown SuperSlab {ss:#x}"))),
                };
                Step::Acquire {
                    t: th(t),
                    class: ClassId(class),
                    stage,
                    ss: id,
                    slot: SlotIdx(slot),
                }
            }
            Event::FreeLocal { t, ss, slot, block } => Step::FreeLocal {
                t: th(t),
                block: self.page(ev, ss, slot)?.block(block),
            },
            Event::FreeRemote {
                t,
                ss,
                slot,
                block,
                hinted,
            } => {
                let page = self.page(ev, ss, slot)?;
                let expect = model
                    .slot(page)
                    .filter(|s| s.in_full)
                    .and_then(|s| s.owner())
                    .map(|o| u32::from(o.0));
                // impl hints on the first remote free to a full page (it
                // takes the page's FULL mark); later ones find the hint set.
                let already = expect.is_some_and(|o| {
                    model.heaps[o as usize].full_hint
                        && model.slot(page).is_some_and(|s| !s.remote.is_empty())
                });
                if hinted != expect && !(hinted.is_none() && already) {
                    return Err(unmappable(format!(
                        "hinted {hinted:?}, the model hints {expect:?}"
                    )));
                }
                Step::FreeRemote {
                    t: th(t),
                    block: page.block(block),
                }
            }
            Event::Flush {
                t,
                ss,
                slot,
                reason,
                delta,
            } => {
                let page = self.page(ev, ss, slot)?;
                let md = model.slot(page).map_or(0, |s| s.delta);
                if md != i64::from(delta) {
                    return Err(unmappable(format!(
                        "flushes delta {delta}, the model's delta is {md}"
                    )));
                }
                Step::Flush {
                    t: th(t),
                    page,
                    reason: match reason {
                        hakmem::FlushReason::Threshold => FlushReason::Threshold,
                        hakmem::FlushReason::Boundary => FlushReason::Boundary,
                    },
                }
            }
            Event::PageEmpty { t, ss, slot, .. } => Step::PageEmpty {
                t: th(t),
                page: self.page(ev, ss, slot)?,
            },
            Event::Abandon { t, ss, slot } => Step::Abandon {
                t: th(t),
                page: self.page(ev, ss, slot)?,
            },
            Event::ThreadExit { t } => Step::ThreadExit { t: th(t) },
            Event::Reclaim { t, class, n } => {
                let m = model
                    .abandoned
                    .get(usize::from(class))
                    .map_or(0, |a| a.len());
                if m != n as usize {
                    return Err(unmappable(format!(
                        "reclaims {n} pages, the model's abandoned list has {m}"
                    )));
                }
                Step::Reclaim {
                    t: th(t),
                    class: ClassId(class),
                }
            }
            Event::Retire { ss, slot } => {
                let page = self.page(ev, ss, slot)?;
                Step::Retire {
                    ss: page.ss,
                    slot: page.slot,
                }
            }
            Event::Release { ss, .. } => Step::Release {
                ss: self.page(ev, ss, 0)?.ss,
            },
            Event::ArenaTake { ss } => Step::ArenaTake {
                ss: self.page(ev, ss, 0)?.ss,
            },
            Event::Stage1Discard {
                t,
                class,
                source,
                ss,
                slot,
            } => {
                let page = self.page(ev, ss, slot)?;
                let c = usize::from(class);
                let (source, head) = match source {
                    ImplSource::List => (
                        Stage1Source::List,
                        model.stage1.get(c).and_then(|l| l.last()).map(|e| e.page),
                    ),
                    ImplSource::Fallback => (
                        Stage1Source::Fallback,
                        model.fallback.get(c).and_then(|l| l.last()).copied(),
                    ),
                };
                if head != Some(page) {
                    return Err(unmappable(format!(
                        "discards {page}, the model's head entry is {head:?}"
                    )));
                }
                Step::Stage1Discard {
                    t: th(t),
                    class: ClassId(class),
                    source,
                }
            }
        })
    }

    /// After `ev` was applied: forget a SuperSlab given back to the OS (its
    /// address may be mapped again, as a new id); check `Release::to_os`.
    pub fn after(&mut self, ev: &Event, model: &State) -> Result<(), Reason> {
        if let Event::Release { ss, to_os, .. } = *ev {
            let id = self.id(ss).expect("mapped before");
            let status = model.superslabs[usize::from(id.0)].status;
            if (status == SsStatus::Released) != to_os {
                return Err(Reason::Unmappable {
                    event: *ev,
                    reason: format!("impl to_os = {to_os}, the model's SuperSlab is {status:?}"),
                });
            }
            if to_os {
                self.ids.remove(&ss);
            }
        }
        Ok(())
    }
}

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
    /// `release_empty`, `purge_now`, and on [`Lockstep::check`].
    Touched {
        /// Calls between two full checks.
        full_every: u64,
    },
}

/// The SuperSlab page, heap and class an event names (impl terms).
fn touched_by(ev: &Event) -> (Option<(usize, u8)>, Option<u32>, Option<u8>) {
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
fn is_rare(ev: &Event) -> bool {
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
fn touched_equal(m: &State, snap: &Snapshot, ids: &IdMap, scope: &Scope) -> bool {
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

/// A live block handed out through the lockstep.
#[derive(Clone, Copy, Debug)]
struct LiveBlock {
    /// The model block (`None`: a large block, outside the protocol).
    block: Option<BlockId>,
    /// Requested size.
    size: usize,
}

/// An implementation instance and the model, run in lockstep (see the
/// module documentation). Single OS thread; logical threads are heaps.
pub struct Lockstep<B: Backend> {
    inst: Box<Instance<B>>,
    heaps: Vec<HeapId<B>>,
    model: State,
    ids: IdMap,
    live: BTreeMap<usize, LiveBlock>,
    calls: u64,
    steps: u64,
    step_counts: BTreeMap<&'static str, u64>,
    /// Check the model's invariants after every step (not only every call).
    pub check_every_step: bool,
    /// What to compare after each call (default [`CheckMode::Full`]).
    pub check_mode: CheckMode,
    since_full: u64,
    full_checks: u64,
    touched_checks: u64,
}

impl<B: Backend> Lockstep<B> {
    /// A lockstep run of an instance with `cfg` (with `reuse_heaps` forced
    /// off: a model thread never comes back) and a model with
    /// [`model_config`]`(cfg, max_threads)`. Panics if the OS refuses the
    /// instance's memory.
    pub fn new(cfg: InstanceConfig, max_threads: u8) -> Self {
        Self::with_model(cfg, |c| c, max_threads)
    }

    /// As [`Lockstep::new`], with the model's configuration adjusted by
    /// `adjust` (e.g. a model mutant, for tests of the checker itself).
    pub fn with_model(
        cfg: InstanceConfig,
        adjust: impl FnOnce(Config) -> Config,
        max_threads: u8,
    ) -> Self {
        let cfg = InstanceConfig {
            reuse_heaps: false,
            ..cfg
        };
        let inst = Instance::<B>::new(cfg).expect("the OS refused the instance's memory");
        let _ = crate::backends::record::take_events();
        Lockstep {
            inst,
            heaps: Vec::new(),
            model: State::new(adjust(model_config::<B>(&cfg, max_threads))),
            ids: IdMap::default(),
            live: BTreeMap::new(),
            calls: 0,
            steps: 0,
            step_counts: BTreeMap::new(),
            check_every_step: false,
            check_mode: CheckMode::Full,
            since_full: 0,
            full_checks: 0,
            touched_checks: 0,
        }
    }

    /// The model state.
    pub fn model(&self) -> &State {
        &self.model
    }

    /// The implementation instance.
    pub fn instance(&self) -> &Instance<B> {
        &self.inst
    }

    /// The SuperSlab id map.
    pub fn ids(&self) -> &IdMap {
        &self.ids
    }

    /// Logical threads created so far.
    pub fn threads(&self) -> usize {
        self.heaps.len()
    }

    /// Whether thread `t` exists and has not exited.
    pub fn is_alive(&self, t: ThreadId) -> bool {
        usize::from(t.0) < self.heaps.len() && self.model.heaps[usize::from(t.0)].alive
    }

    /// Live blocks (pointer, requested size), in address order.
    pub fn live(&self) -> Vec<(*mut u8, usize)> {
        self.live
            .iter()
            .map(|(&a, b)| (std::ptr::with_exposed_provenance_mut(a), b.size))
            .collect()
    }

    /// The owner (model thread) of a live block's page (`None`: abandoned
    /// or large).
    pub fn owner_of(&self, ptr: *mut u8) -> Option<ThreadId> {
        let b = self.live.get(&ptr.addr())?.block?;
        self.model.slot(b.page())?.owner()
    }

    /// Protocol steps applied so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Steps applied so far, by name (coverage).
    pub fn step_counts(&self) -> &BTreeMap<&'static str, u64> {
        &self.step_counts
    }

    /// Calls made so far.
    pub fn calls(&self) -> u64 {
        self.calls
    }

    /// Checks done so far: `(full, touched-parts-only)`.
    pub fn checks(&self) -> (u64, u64) {
        (self.full_checks, self.touched_checks)
    }

    fn fail(&self, call: &str, applied: Vec<String>, reason: Reason) -> Divergence {
        Divergence {
            call_index: self.calls,
            call: call.to_string(),
            applied,
            reason: Box::new(reason),
        }
    }

    fn heap(&self, t: ThreadId, call: &str) -> Result<HeapId<B>, Divergence> {
        if !self.is_alive(t) {
            return Err(self.fail(
                call,
                vec![],
                Reason::Usage(format!("thread {t} does not exist or has exited")),
            ));
        }
        Ok(self.heaps[usize::from(t.0)])
    }

    /// Applies this call's recorded events to the model, then checks the
    /// snapshot and the invariants. Returns the applied events.
    fn sync(&mut self, call: &str) -> Result<Vec<Event>, Divergence> {
        self.sync_with(call, false)
    }

    /// As [`Self::sync`]; `full` forces a full check.
    fn sync_with(&mut self, call: &str, full: bool) -> Result<Vec<Event>, Divergence> {
        let (events, applied) = self.apply_events(call)?;
        self.after_call(call, &applied, &events, full)?;
        Ok(events)
    }

    /// The check after a call, by [`CheckMode`].
    fn after_call(
        &mut self,
        call: &str,
        applied: &[String],
        events: &[Event],
        force_full: bool,
    ) -> Result<(), Divergence> {
        let full = match self.check_mode {
            CheckMode::Full => true,
            CheckMode::Touched { full_every } => {
                self.since_full += 1;
                force_full || self.since_full >= full_every || events.iter().any(is_rare)
            }
        };
        if full {
            self.since_full = 0;
            self.full_checks += 1;
            self.check_with(call, applied)
        } else {
            self.touched_checks += 1;
            self.check_touched(call, applied, events)
        }
    }

    /// Compares the parts of the state `events` touched ([`CheckMode::Touched`]).
    fn check_touched(
        &self,
        call: &str,
        applied: &[String],
        events: &[Event],
    ) -> Result<(), Divergence> {
        let mut pages: Vec<(usize, u8)> = Vec::new();
        let mut classes: Vec<usize> = Vec::new();
        let mut heaps: Vec<u32> = Vec::new();
        let mut nodes = false;
        for ev in events {
            let (page, t, class) = touched_by(ev);
            if let Some(p) = page {
                if !pages.contains(&p) {
                    pages.push(p);
                }
            }
            heaps.extend(t);
            classes.extend(class.map(usize::from));
            nodes |= matches!(
                ev,
                Event::Acquire { .. }
                    | Event::PageEmpty { .. }
                    | Event::Stage1Discard { .. }
                    | Event::Retire { .. }
            );
        }
        let mut scope = Scope {
            nodes,
            ..Scope::default()
        };
        for &(base, slot) in &pages {
            let Some(ss) = self.ids.id(base) else {
                continue;
            };
            let page = PageId {
                ss,
                slot: SlotIdx(slot),
            };
            scope.superslabs.insert(ss);
            scope.pages.insert(page);
            if let Some(sl) = self.model.slot(page) {
                classes.extend(sl.class().map(|c| usize::from(c.0)));
                heaps.extend(sl.owner().map(|o| u32::from(o.0)));
            }
        }
        heaps.retain(|&h| (h as usize) < self.heaps.len());
        classes.sort_unstable();
        classes.dedup();
        heaps.sort_unstable();
        heaps.dedup();
        scope.classes = classes.iter().copied().collect();
        scope.heaps = heaps.iter().map(|&h| h as usize).collect();
        let bases: Vec<usize> = pages.iter().map(|p| p.0).collect();
        let snap = self.inst.snapshot_parts(&hakmem::snapshot::Scope {
            superslabs: Some(&bases),
            pages: Some(&pages),
            classes: Some(&classes),
            heaps: Some(&heaps),
            nodes,
            heads_only: true,
        });
        if touched_equal(&self.model, &snap, &self.ids, &scope) {
            return Ok(());
        }
        // Something differs: name it with the (slower) views of the scope,
        // from a snapshot with whole lists.
        let snap = self.inst.snapshot_parts(&hakmem::snapshot::Scope {
            superslabs: Some(&bases),
            pages: Some(&pages),
            classes: Some(&classes),
            heaps: Some(&heaps),
            nodes,
            heads_only: false,
        });
        let mv = view_of_model_in(&self.model, self.heaps.len(), Some(&scope));
        let iv = view_of_impl_in(&snap, &self.ids, Some(&scope));
        let (part, model, implementation) = first_difference(&mv, &iv).unwrap_or_else(|| {
            (
                "touched parts".into(),
                "differs from the implementation's (no single part named)".into(),
                "differs from the model's".into(),
            )
        });
        Err(self.fail(
            call,
            applied.to_vec(),
            Reason::Differs {
                part,
                model,
                implementation,
            },
        ))
    }

    /// Applies this call's recorded events to the model (no state check).
    fn apply_events(&mut self, call: &str) -> Result<(Vec<Event>, Vec<String>), Divergence> {
        let events = crate::backends::record::take_events();
        let mut applied = Vec::new();
        for ev in &events {
            let step = self
                .ids
                .step(ev, &self.model)
                .map_err(|r| self.fail(call, applied.clone(), r))?;
            if let Err(e) = self.model.apply(&step) {
                return Err(self.fail(
                    call,
                    applied,
                    Reason::Rejected {
                        event: *ev,
                        step,
                        reason: e.0,
                    },
                ));
            }
            self.steps += 1;
            *self.step_counts.entry(ev.name()).or_default() += 1;
            self.ids
                .after(ev, &self.model)
                .map_err(|r| self.fail(call, applied.clone(), r))?;
            applied.push(format!("{} => {step}", ev.name()));
            if self.check_every_step {
                if let Err(v) = self.model.check_invariants() {
                    return Err(self.fail(call, applied, Reason::Invariant(v)));
                }
            }
        }
        Ok((events, applied))
    }

    /// Compares the snapshot with the model and checks the invariants.
    pub fn check(&self) -> Result<(), Divergence> {
        self.check_with("check()", &[])
    }

    fn check_with(&self, call: &str, applied: &[String]) -> Result<(), Divergence> {
        let snap = self.inst.snapshot();
        let mv = view_of_model(&self.model, self.heaps.len());
        let iv = view_of_impl(&snap, &self.ids);
        if let Some((part, model, implementation)) = first_difference(&mv, &iv) {
            return Err(self.fail(
                call,
                applied.to_vec(),
                Reason::Differs {
                    part,
                    model,
                    implementation,
                },
            ));
        }
        // Live blocks: the model's set is the lockstep's.
        let ours: BTreeSet<BlockId> = self.live.values().filter_map(|b| b.block).collect();
        let theirs: BTreeSet<BlockId> = self.model.live.keys().copied().collect();
        if ours != theirs {
            let only_m: Vec<String> = theirs.difference(&ours).map(|b| b.to_string()).collect();
            let only_i: Vec<String> = ours.difference(&theirs).map(|b| b.to_string()).collect();
            return Err(self.fail(
                call,
                applied.to_vec(),
                Reason::Differs {
                    part: "live blocks".into(),
                    model: format!("{} live, also {only_m:?}", theirs.len()),
                    implementation: format!("{} live, also {only_i:?}", ours.len()),
                },
            ));
        }
        if let Err(v) = self.model.check_invariants() {
            return Err(self.fail(call, applied.to_vec(), Reason::Invariant(v)));
        }
        if let Err(e) = snap.check() {
            return Err(self.fail(call, applied.to_vec(), Reason::ImplCheck(e)));
        }
        // Heap list marks: a page's list mark agrees with where it is.
        for ss in &snap.superslabs {
            for sl in &ss.slots {
                if let Some(p) = &sl.page {
                    if p.in_full != (p.list == PageList::Full) {
                        return Err(self.fail(
                            call,
                            applied.to_vec(),
                            Reason::ImplCheck(format!("page list mark {:?}", p.list)),
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// A new logical thread (heap); its id is the model thread.
    pub fn new_thread(&mut self) -> Result<ThreadId, Divergence> {
        let call = format!("new_thread() = t{}", self.heaps.len());
        if self.heaps.len() >= usize::from(self.model.config().threads) {
            return Err(self.fail(
                &call,
                vec![],
                Reason::Usage("more threads than the model's configuration".into()),
            ));
        }
        let h = self.inst.new_heap().expect("the OS refused a heap");
        let t = ThreadId(h.index() as u8);
        self.heaps.push(h.id());
        if usize::from(t.0) + 1 != self.heaps.len() {
            return Err(self.fail(
                &call,
                vec![],
                Reason::Result(format!("the new heap's index is {}", t.0)),
            ));
        }
        let r = self.sync_with(&call, true).map(|_| t);
        self.calls += 1;
        r
    }

    /// `malloc` on thread `t`: returns the block (or a large block for
    /// sizes above 8 KiB). A null result is a divergence (the model never
    /// runs out of memory).
    pub fn alloc(&mut self, t: ThreadId, size: usize, align: usize) -> Result<*mut u8, Divergence> {
        let call = format!("alloc({t}, {size}, align {align})");
        let r = self.alloc_inner(t, size, align, &call);
        self.calls += 1;
        r
    }

    fn alloc_inner(
        &mut self,
        t: ThreadId,
        size: usize,
        align: usize,
        call: &str,
    ) -> Result<*mut u8, Divergence> {
        let id = self.heap(t, call)?;
        // SAFETY: the lockstep drives every heap from this one thread.
        let p = unsafe { self.inst.heap(id) }.alloc(size, align);
        let (events, applied) = self.apply_events(call)?;
        if p.is_null() {
            return Err(self.fail(call, vec![], Reason::Result("null".into())));
        }
        if p.addr() % align.max(1) != 0 {
            return Err(self.fail(
                call,
                vec![],
                Reason::Result(format!("{p:p} is not aligned to {align}")),
            ));
        }
        // Distinct memory: [p, p + size) overlaps no live block (checked for
        // every block: the model covers only the small classes' identity).
        let end = p.addr() + size;
        let below = self.live.range(..=p.addr()).next_back();
        let above = self.live.range(p.addr()..).next();
        let overlap = below
            .filter(|(&a, b)| a + b.size.max(1) > p.addr())
            .or_else(|| above.filter(|(&a, _)| a < end.max(p.addr() + 1)));
        if let Some((&a, b)) = overlap {
            return Err(self.fail(
                call,
                vec![],
                Reason::Result(format!(
                    "{p:p}..+{size} overlaps the live block {a:#x}..+{}",
                    b.size
                )),
            ));
        }
        let block = match class_for(size, align) {
            None => None,
            Some(class) => {
                let Some((base, slot, index, c)) = self.inst.locate(p) else {
                    return Err(self.fail(
                        call,
                        vec![],
                        Reason::Result(format!("{p:p} is in no Active slot")),
                    ));
                };
                let page = self.ids.id(base).map(|ss| PageId {
                    ss,
                    slot: SlotIdx(slot),
                });
                let got = page.map(|pg| pg.block(index));
                let handed = events.iter().rev().find_map(|e| match *e {
                    Event::AllocFast {
                        ss, slot, block, ..
                    } => self.ids.id(ss).map(|s| {
                        PageId {
                            ss: s,
                            slot: SlotIdx(slot),
                        }
                        .block(block)
                    }),
                    _ => None,
                });
                if got.is_none() || got != handed || usize::from(c) != class {
                    return Err(self.fail(
                        call,
                        vec![],
                        Reason::Result(format!(
                            "returned {p:p} = {got:?} of class {c}, the steps handed out {handed:?} of class {class}"
                        )),
                    ));
                }
                got
            }
        };
        if self
            .live
            .insert(p.addr(), LiveBlock { block, size })
            .is_some()
        {
            return Err(self.fail(
                call,
                vec![],
                Reason::Result(format!("{p:p} is already live")),
            ));
        }
        self.after_call(call, &applied, &events, false)?;
        Ok(p)
    }

    /// `free` on thread `t` of a block this lockstep handed out.
    pub fn free(&mut self, t: ThreadId, ptr: *mut u8) -> Result<(), Divergence> {
        let call = format!("free({t}, {ptr:p})");
        let r = self.free_inner(t, ptr, &call);
        self.calls += 1;
        r
    }

    fn free_inner(&mut self, t: ThreadId, ptr: *mut u8, call: &str) -> Result<(), Divergence> {
        let id = self.heap(t, call)?;
        let Some(lb) = self.live.remove(&ptr.addr()) else {
            return Err(self.fail(call, vec![], Reason::Usage("not a live block".into())));
        };
        // SAFETY: one thread drives every heap; a live block of this
        // instance, not used afterwards.
        unsafe { self.inst.heap(id).free(ptr) };
        self.sync(call)?;
        if let Some(b) = lb.block {
            if self.model.live.contains_key(&b) {
                return Err(self.fail(
                    call,
                    vec![],
                    Reason::Result(format!("{b} is still live: no free step reported")),
                ));
            }
        }
        Ok(())
    }

    /// `realloc` on thread `t`: in place within the same class (no step),
    /// else alloc + copy + free (the model's `Realloc` as two steps).
    /// `ptr` is checked to be a live block this lockstep handed out (else a
    /// `Usage` divergence), so the copy reads only memory it owns.
    #[allow(clippy::not_unsafe_ptr_arg_deref)]
    pub fn realloc(
        &mut self,
        t: ThreadId,
        ptr: *mut u8,
        new_size: usize,
        align: usize,
    ) -> Result<*mut u8, Divergence> {
        let call = format!("realloc({t}, {ptr:p}, {new_size}, align {align})");
        let Some(lb) = self.live.get(&ptr.addr()).copied() else {
            self.calls += 1;
            return Err(self.fail(&call, vec![], Reason::Usage("not a live block".into())));
        };
        let old = class_for(lb.size, align);
        if old.is_some() && old == class_for(new_size, align) {
            self.live.get_mut(&ptr.addr()).expect("live").size = new_size;
            let r = self.sync(&call).map(|_| ptr);
            self.calls += 1;
            return r;
        }
        let q = self.alloc_inner(t, new_size, align, &call);
        let q = match q {
            Ok(q) => q,
            Err(e) => {
                self.calls += 1;
                return Err(e);
            }
        };
        // SAFETY: both blocks are live and at least min(sizes) bytes long.
        unsafe { std::ptr::copy_nonoverlapping(ptr, q, lb.size.min(new_size)) };
        let r = self.free_inner(t, ptr, &call).map(|_| q);
        self.calls += 1;
        r
    }

    /// Thread exit: the heap abandons or empties every page.
    pub fn exit(&mut self, t: ThreadId) -> Result<(), Divergence> {
        let call = format!("exit({t})");
        let r = match self.heap(t, &call) {
            Ok(id) => {
                // SAFETY: the lockstep drives every heap from this one thread.
                unsafe { self.inst.heap(id) }.exit();
                self.sync_with(&call, true).map(|_| ())
            }
            Err(e) => Err(e),
        };
        self.calls += 1;
        r
    }

    /// `Instance::release_empty`: releases every SuperSlab with no
    /// `Active` slot. Returns how many.
    pub fn release_empty(&mut self) -> Result<usize, Divergence> {
        let n = self.inst.release_empty();
        let r = self.sync_with("release_empty()", true).map(|_| n);
        self.calls += 1;
        r
    }

    /// `Instance::purge_now`: decommits every `Empty` slot (no protocol
    /// step; the state must not change). Returns how many.
    pub fn purge_now(&mut self) -> Result<usize, Divergence> {
        let n = self.inst.purge_now();
        let r = self.sync_with("purge_now()", true).map(|_| n);
        self.calls += 1;
        r
    }

    /// Frees every live block (by its page's owner when it has one, else by
    /// thread `t`) and exits every live thread; checks after each call.
    pub fn finish(&mut self, t: ThreadId) -> Result<(), Divergence> {
        for (p, _) in self.live() {
            let by = self.owner_of(p).filter(|o| self.is_alive(*o)).unwrap_or(t);
            self.free(by, p)?;
        }
        for i in 0..self.heaps.len() {
            let t = ThreadId(i as u8);
            if self.is_alive(t) {
                self.exit(t)?;
            }
        }
        Ok(())
    }
}

impl<B: Backend> fmt::Debug for Lockstep<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lockstep")
            .field("threads", &self.heaps.len())
            .field("calls", &self.calls)
            .field("steps", &self.steps)
            .field("live", &self.live.len())
            .finish()
    }
}

/// Asserts that impl's class table is the model's production table, with
/// the same capacities (a test helper; `SLOTS` slots).
pub fn class_tables_agree() -> Result<(), String> {
    let m = Config::production();
    if m.classes.len() != NUM_CLASSES || usize::from(m.slots) != SLOTS {
        return Err(format!(
            "model: {} classes, {} slots; impl: {NUM_CLASSES}, {SLOTS}",
            m.classes.len(),
            m.slots
        ));
    }
    for (c, spec) in m.classes.iter().enumerate() {
        for slot in [0usize, 1] {
            let ic = hakmem::size_class::capacity(c, slot);
            let mc = m.capacity(ClassId(c as u8), SlotIdx(slot as u8));
            if spec.size != CLASS_SIZES[c] || ic != mc {
                return Err(format!(
                    "class {c}: model size {} cap {mc}, impl size {} cap {ic} (slot {slot})",
                    spec.size, CLASS_SIZES[c]
                ));
            }
        }
    }
    Ok(())
}
