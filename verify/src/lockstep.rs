//! Refinement of the implementation against the model, in lockstep.
//!
//! A [`Lockstep`] drives an `impl` [`Instance`] with a recording backend
//! (see [`crate::backends::record`]) and a [`model::State`] whose
//! [`Config`] mirrors the instance's. After every call it
//!
//! 1. drains the protocol steps the implementation reported
//!    ([`hakmem::Event`]), maps each to a [`Step`](model::Step) ([`IdMap`]: SuperSlab
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
//!
//! This file is the driver ([`Lockstep`]); `ids` names the implementation's
//! things in the model's terms, `view` compares the two states, `report`
//! says how they parted.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use hakmem::instance::{HeapId, Instance, InstanceConfig};
use hakmem::observe::Event;
use hakmem::page::PageList;
use hakmem::size_class::{class_for, CLASS_SIZES, NUM_CLASSES, SLOTS};
use hakmem::sync::Backend;
use model::{BlockId, ClassId, Config, PageId, SlotIdx, State, ThreadId};

mod ids;
mod report;
mod view;

pub use ids::{model_config, IdMap};
pub use report::{Divergence, Reason};
pub use view::{
    first_difference, view_of_impl, view_of_impl_in, view_of_model, view_of_model_in, CheckMode,
    Scope, View,
};
use view::{is_rare, touched_by, touched_equal};

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
