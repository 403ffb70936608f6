//! The model's names for the implementation's things: [`model_config`]
//! mirrors an instance configuration, and [`IdMap`] maps SuperSlab bases,
//! heaps and blocks to model ids and each reported [`Event`] to a [`Step`].

use super::report::Reason;
use std::collections::HashMap;

use hakmem::instance::InstanceConfig;
use hakmem::observe::{Event, Stage1Source as ImplSource};
use hakmem::size_class::CLASS_SIZES;
use hakmem::sync::Backend;
use model::{
    ClassId, ClassSpec, Config, FlushReason, PageId, SlotIdx, SsId, SsStatus, Stage, Stage1Source,
    State, Step, ThreadId,
};

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
