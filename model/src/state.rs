//! The abstract state of the allocator (see "Abstract state" in
//! `docs/protocol.md`): SuperSlabs with their slots, the per-class registry,
//! the stage-1 lists and node pool, the heaps, the abandoned pages and the
//! live blocks. Every collection has a deterministic order (Vec, BTreeMap,
//! BTreeSet), so that equal states hash equally.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use crate::config::Config;
use crate::ids::{BlockId, ClassId, NodeId, PageId, SsId, ThreadId};

/// The state of one slot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum SlotState {
    /// Never assigned, or returned by a release: any class may claim it.
    #[default]
    Unused,
    /// A page of `class`, owned by `owner` (`None`: abandoned).
    Active {
        /// The page's size class.
        class: ClassId,
        /// The owning heap; `None` while the page is abandoned.
        owner: Option<ThreadId>,
    },
    /// All blocks free; may be claimed again, for any class.
    Empty {
        /// The class the page served last.
        class: ClassId,
    },
}

/// One slot: its state word, its shared counter, and the page fields.
///
/// # Invariants
///
/// - The page fields (`carved`, `free`, `in_full`) describe a page only
///   while the slot is `Active`; otherwise `carved = 0`, `free` is empty and
///   `in_full` is false.
/// - `shared_used + delta = carved - |free|` (invariant 3), and for an
///   `Active` page that also equals its live blocks plus its remote list.
/// - `delta = 0` unless the slot is `Active` with an owner (invariant 7).
/// - `listed` ⇔ one fallback entry names the slot (invariant 9).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Slot {
    /// The slot state word.
    pub state: SlotState,
    /// `SlotMeta.used`: the page's `used` at its last flush.
    pub shared_used: i64,
    /// The owner's pending accounting: `used - shared_used`.
    pub delta: i64,
    /// Blocks carved so far (bump pointer).
    pub carved: u32,
    /// The owner-local free list, head last.
    pub free: Vec<u32>,
    /// The remote free list (an atomic LIFO in impl), head last.
    pub remote: Vec<u32>,
    /// The page is on its owner's full list.
    pub in_full: bool,
    /// A fallback entry names this slot (impl's intrusive `queued` flag):
    /// a slot is on at most one fallback list, once, which bounds the
    /// fallback lists by the number of slots. Node entries are bounded by
    /// the node pool and may repeat a slot (the older ones are stale).
    pub listed: bool,
}

impl Slot {
    /// The owner-local `used`: blocks carved and not on the free list.
    pub fn used(&self) -> i64 {
        i64::from(self.carved) - self.free.len() as i64
    }

    /// The class of an `Active` or `Empty` slot.
    pub fn class(&self) -> Option<ClassId> {
        match self.state {
            SlotState::Active { class, .. } | SlotState::Empty { class } => Some(class),
            SlotState::Unused => None,
        }
    }

    /// The owner of an `Active` slot.
    pub fn owner(&self) -> Option<ThreadId> {
        match self.state {
            SlotState::Active { owner, .. } => owner,
            _ => None,
        }
    }

    /// Clears the page fields (not the remote list, which is the shared
    /// atomic head: impl never clears it, so neither does the model).
    pub(crate) fn reset_page(&mut self) {
        self.carved = 0;
        self.free.clear();
        self.in_full = false;
    }
}

/// Where a SuperSlab is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SsStatus {
    /// Mapped and in use by the pool.
    Live,
    /// In the arena cache, every slot `Unused`.
    Cached,
    /// Given back to the OS.
    Released,
}

/// A SuperSlab.
///
/// # Invariants
///
/// `empty_mask` bit i ⇔ slot i is `Empty`; `empty_count = popcount`
/// (invariant 5); `total_active = Σ shared_used` (invariant 4).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SuperSlab {
    /// Live, Cached or Released.
    pub status: SsStatus,
    /// The slots.
    pub slots: Vec<Slot>,
    /// Bit i ⇔ slot i is `Empty`.
    pub empty_mask: u32,
    /// Number of `Empty` slots.
    pub empty_count: u32,
    /// Sum of the slots' `shared_used`.
    pub total_active: i64,
}

impl SuperSlab {
    /// A freshly mapped SuperSlab: `Live`, every slot `Unused`.
    pub fn new(slots: u8) -> Self {
        SuperSlab {
            status: SsStatus::Live,
            slots: vec![Slot::default(); usize::from(slots)],
            empty_mask: 0,
            empty_count: 0,
            total_active: 0,
        }
    }
}

/// A stage-1 list entry: a node of the pool naming an `Empty` slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Stage1Entry {
    /// The pool node holding the entry.
    pub node: NodeId,
    /// The slot it names.
    pub page: PageId,
}

/// One heap's pages of one class.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct HeapClass {
    /// The page allocations come from.
    pub current: Option<PageId>,
    /// Pages that may have free blocks (order is irrelevant: a set).
    pub partial: BTreeSet<PageId>,
    /// Pages with no free block and nothing left to carve.
    pub full: BTreeSet<PageId>,
}

/// A heap (logical thread).
///
/// # Invariants
///
/// Every page in its lists is `Active` and owned by it, each in exactly one
/// place; a dead heap owns nothing (invariants 8 and 10).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Heap {
    /// The thread has not exited.
    pub alive: bool,
    /// A remote free hit one of its full pages.
    pub full_hint: bool,
    /// Per class.
    pub classes: Vec<HeapClass>,
}

/// The whole abstract state.
///
/// # Invariants
///
/// The ten invariants of `docs/protocol.md`, checked by
/// [`State::check_invariants`].
#[derive(Clone, Debug)]
pub struct State {
    /// The configuration (shared, not part of equality or hashing).
    pub cfg: Arc<Config>,
    /// SuperSlabs by id, in mapping order.
    pub superslabs: Vec<SuperSlab>,
    /// Per class: SuperSlabs that host the class, in registration order.
    pub registry: Vec<Vec<SsId>>,
    /// Per class: the stage-1 LIFO, head last.
    pub stage1: Vec<Vec<Stage1Entry>>,
    /// Per class: the mutex-protected fallback list, head last.
    pub fallback: Vec<Vec<PageId>>,
    /// Free nodes of the node pool, head last.
    pub node_pool: Vec<NodeId>,
    /// The heaps, by thread id.
    pub heaps: Vec<Heap>,
    /// Per class: abandoned pages.
    pub abandoned: Vec<BTreeSet<PageId>>,
    /// Live blocks with the class they were handed out as.
    pub live: BTreeMap<BlockId, ClassId>,
    /// Remote frees counted but not yet pushed; only the `CountBeforePush`
    /// mutant fills it (in the specification a remote free is one step).
    pub in_flight: Vec<BlockId>,
}

impl State {
    /// The initial state of `cfg`: nothing mapped, every heap alive.
    pub fn new(cfg: Config) -> Self {
        Self::with_config(Arc::new(cfg))
    }

    /// The initial state of a shared configuration.
    pub fn with_config(cfg: Arc<Config>) -> Self {
        let classes = cfg.class_count();
        let heap = Heap {
            alive: true,
            full_hint: false,
            classes: vec![HeapClass::default(); classes],
        };
        State {
            superslabs: Vec::new(),
            registry: vec![Vec::new(); classes],
            stage1: vec![Vec::new(); classes],
            fallback: vec![Vec::new(); classes],
            // Head last: node 0 is taken first.
            node_pool: (0..cfg.node_pool).rev().map(NodeId).collect(),
            heaps: vec![heap; usize::from(cfg.threads)],
            abandoned: vec![BTreeSet::new(); classes],
            live: BTreeMap::new(),
            in_flight: Vec::new(),
            cfg,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The slot of `page`, if it exists.
    pub fn slot(&self, page: PageId) -> Option<&Slot> {
        self.superslabs
            .get(usize::from(page.ss.0))?
            .slots
            .get(usize::from(page.slot.0))
    }

    /// Every page id of every mapped SuperSlab, in order.
    pub fn pages(&self) -> impl Iterator<Item = (PageId, &Slot)> + '_ {
        self.superslabs.iter().enumerate().flat_map(|(s, ss)| {
            ss.slots
                .iter()
                .enumerate()
                .map(move |(i, slot)| (PageId::new(s as u16, i as u8), slot))
        })
    }

    /// Number of `Cached` SuperSlabs (the arena's fill).
    pub fn arena_len(&self) -> usize {
        self.superslabs
            .iter()
            .filter(|s| s.status == SsStatus::Cached)
            .count()
    }

    /// Whether any stage-1 or fallback entry names a slot of `ss`.
    pub fn entries_name(&self, ss: SsId) -> bool {
        self.stage1.iter().flatten().any(|e| e.page.ss == ss)
            || self.fallback.iter().flatten().any(|p| p.ss == ss)
    }

    /// Live blocks of `page`.
    pub fn live_in(&self, page: PageId) -> usize {
        self.live_blocks_of(page).count()
    }

    /// Live blocks of `page`, in order.
    pub fn live_blocks_of(&self, page: PageId) -> impl Iterator<Item = (&BlockId, &ClassId)> + '_ {
        self.live.range(page.block(0)..=page.block(u32::MAX))
    }

    /// Remote frees in flight (counted, not pushed) to `page`.
    pub fn in_flight_to(&self, page: PageId) -> usize {
        self.in_flight.iter().filter(|b| b.page() == page).count()
    }
}

impl PartialEq for State {
    fn eq(&self, other: &Self) -> bool {
        self.superslabs == other.superslabs
            && self.registry == other.registry
            && self.stage1 == other.stage1
            && self.fallback == other.fallback
            && self.node_pool == other.node_pool
            && self.heaps == other.heaps
            && self.abandoned == other.abandoned
            && self.live == other.live
            && self.in_flight == other.in_flight
    }
}

impl Eq for State {}

impl Hash for State {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.superslabs.hash(h);
        self.registry.hash(h);
        self.stage1.hash(h);
        self.fallback.hash(h);
        self.node_pool.hash(h);
        self.heaps.hash(h);
        self.abandoned.hash(h);
        self.live.hash(h);
        self.in_flight.hash(h);
    }
}
