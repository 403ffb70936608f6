//! A snapshot of an instance's abstract state in the model's terms
//! (protocol.md "Abstract state"), and [`Snapshot::check`], which checks
//! protocol.md's invariants 1, 3, 4, 5, 6, 8, 9 and 10 on it.
//!
//! Take snapshots only when the instance is quiescent (no heap of it is in
//! the middle of an operation): they read owner-local state. They are plain
//! data built by test code on the global allocator of the test binary.

use crate::heap::Heap;
use crate::instance::Instance;
use crate::page::{local, PageList, FULL};
use crate::size_class::{NUM_CLASSES, SLOTS};
use crate::superslab::{SlotMeta, SlotState, SsHeader, SsStatus};
use crate::sync::{AtomicOps, Backend, Ordering};
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::string::String;
use std::vec::Vec;

/// A page, named by its SuperSlab base and slot.
pub type PageRef = (usize, u8);

/// One `Active` slot's page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageSnap {
    /// Blocks that fit.
    pub capacity: u32,
    /// Blocks carved so far.
    pub carved: u32,
    /// Owner-local used (without the full-list bias).
    pub used: u32,
    /// Free list (block indices, head first).
    pub free: Vec<u32>,
    /// Remote list (block indices, newest first).
    pub remote: Vec<u32>,
    /// Shared used.
    pub shared_used: u32,
    /// `used - shared_used`.
    pub delta: i64,
    /// On its owner's full list.
    pub in_full: bool,
    /// The remote word carries the `FULL` mark.
    pub marked_full: bool,
    /// Which heap list holds it.
    pub list: PageList,
}

/// One slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotSnap {
    /// The slot state.
    pub state: SlotState,
    /// The owning heap's index (`None`: no owner / abandoned).
    pub owner: Option<u32>,
    /// The page, for `Active` slots.
    pub page: Option<PageSnap>,
    /// A non-`Active` slot whose remote word is not empty (a free that
    /// landed after the page was emptied: invariant 6).
    pub stray_remote: bool,
}

/// One SuperSlab.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SsSnap {
    /// Base address (the impl's identity).
    pub base: usize,
    /// Mapping order (the model's SuperSlab number, modulo OS releases).
    pub map_seq: u64,
    /// Live or Cached.
    pub status: SsStatus,
    /// Bit i ⇔ slot i `Empty`.
    pub empty_mask: u32,
    /// popcount of the mask.
    pub empty_count: u32,
    /// Σ shared used.
    pub total_active: u32,
    /// `Active` slots counted by the header.
    pub active_slots: u32,
    /// The slots.
    pub slots: Vec<SlotSnap>,
}

/// One heap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeapSnap {
    /// Index (thread id).
    pub index: u32,
    /// Alive.
    pub alive: bool,
    /// `full_hint`.
    pub full_hint: bool,
    /// Per class: the current page.
    pub current: Vec<Option<PageRef>>,
    /// Per class: the partial list in order.
    pub partial: Vec<Vec<PageRef>>,
    /// Per class: the full list in order.
    pub full: Vec<Vec<PageRef>>,
}

/// The abstract state of an instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// SuperSlabs still mapped, in mapping order.
    pub superslabs: Vec<SsSnap>,
    /// Per class: the registry (SuperSlab bases, in order).
    pub registry: Vec<Vec<usize>>,
    /// Per class: stage-1 entries, head first.
    pub stage1: Vec<Vec<PageRef>>,
    /// Per class: fallback entries, head first.
    pub fallback: Vec<Vec<PageRef>>,
    /// Nodes free in the pool.
    pub free_nodes: usize,
    /// Pool size.
    pub node_pool: usize,
    /// The arena cache (bases, top first).
    pub arena: Vec<usize>,
    /// Heaps in creation order.
    pub heaps: Vec<HeapSnap>,
    /// Per class: abandoned pages, head first.
    pub abandoned: Vec<Vec<PageRef>>,
}

fn page_ref<B: Backend>(m: *const SlotMeta<B>) -> PageRef {
    let a = m as usize;
    let base = a & !crate::chunkmap::CHUNK_MASK;
    (
        base,
        ((a - base) / core::mem::size_of::<SlotMeta<B>>()) as u8,
    )
}

fn list_indices<B: Backend>(
    m: &SlotMeta<B>,
    mut b: *mut u8,
    bs: u32,
    out: &mut Vec<u32>,
    max: usize,
) {
    let mut guard = 0;
    while !b.is_null() && guard <= 1 << 20 && out.len() < max {
        out.push(crate::page::block_index(m, b, bs));
        // SAFETY: quiescent instance: the block is on a list of this page.
        b = unsafe { B::load_link(b.cast()) };
        guard += 1;
    }
}

/// Which parts of the state [`Instance::snapshot_parts`] reads: `None` is
/// every part. Parts left out are absent from the snapshot (SuperSlabs and
/// heaps) or empty (per-class lists; `free_nodes` is 0 unless `nodes`).
/// A SuperSlab in the scope has every slot's state and owner; its pages are
/// read only for slots in `pages`. A heap in the scope has its lists, and
/// the pages of its full lists are read too (their remote lists decide the
/// effective `full_hint`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Scope<'a> {
    /// SuperSlab bases.
    pub superslabs: Option<&'a [usize]>,
    /// Pages to read.
    pub pages: Option<&'a [PageRef]>,
    /// Classes whose registry, stage-1, fallback and abandoned lists to read.
    pub classes: Option<&'a [usize]>,
    /// Heap indices.
    pub heaps: Option<&'a [u32]>,
    /// Count the node pool's free nodes (a walk of the pool).
    pub nodes: bool,
    /// Read only the head of each page's free and remote lists (O(1) per
    /// page; `PageSnap::used` still says how many blocks are not free).
    pub heads_only: bool,
}

impl Scope<'_> {
    /// Every part.
    pub const ALL: Scope<'static> = Scope {
        superslabs: None,
        pages: None,
        classes: None,
        heaps: None,
        nodes: true,
        heads_only: false,
    };
}

fn wants<T: PartialEq>(set: Option<&[T]>, x: &T) -> bool {
    set.is_none_or(|s| s.contains(x))
}

impl<B: Backend> Instance<B> {
    /// The abstract state (call when quiescent).
    pub fn snapshot(&self) -> Snapshot {
        self.snapshot_parts(&Scope::ALL)
    }

    /// The parts of the abstract state named by `scope` (call when
    /// quiescent): what a checker compares after a call that touched only
    /// those parts, at a cost proportional to them rather than to the state.
    pub fn snapshot_parts(&self, scope: &Scope<'_>) -> Snapshot {
        let mut heaps = Vec::new();
        let dummy = self.pool.dummy();
        self.for_each_heap(|h: &Heap<B>| {
            if !wants(scope.heaps, &h.index) {
                return;
            }
            // SAFETY: quiescent: the heap's thread is not running it.
            let hs = unsafe {
                h.hl(|l| {
                    let cur = |m: *mut SlotMeta<B>| (m != dummy).then(|| page_ref(m));
                    let list = |l: &crate::heap::List<B>| {
                        let mut v = Vec::new();
                        l.for_each(|m| v.push(page_ref(m)));
                        v
                    };
                    HeapSnap {
                        index: h.index,
                        alive: h.is_alive(),
                        full_hint: h.owner.full_hint.load(Ordering::Acquire) != 0,
                        current: l.current.iter().map(|&m| cur(m)).collect(),
                        partial: l.partial.iter().map(list).collect(),
                        full: l.full.iter().map(list).collect(),
                    }
                })
            };
            heaps.push(hs);
        });
        // Pages of the scope's heaps' full lists are read too.
        let mut extra: Vec<PageRef> = Vec::new();
        if scope.pages.is_some() {
            for h in &heaps {
                extra.extend(h.full.iter().flatten());
            }
        }
        let read_page = |p: &PageRef| wants(scope.pages, p) || extra.contains(p);
        let mut superslabs = Vec::new();
        self.pool
            .for_each_superslab(|s: &SsHeader<B>, status, map_seq| {
                if !wants(scope.superslabs, &s.base()) && !extra.iter().any(|p| p.0 == s.base()) {
                    return;
                }
                let mut slots = Vec::with_capacity(SLOTS);
                for i in 0..SLOTS {
                    let m = s.slot(i);
                    let state = m.state();
                    let owner = m.owner.load(Ordering::Acquire);
                    // SAFETY: heaps are never freed.
                    let owner =
                        (!owner.is_null()).then(|| unsafe { (*Heap::from_owner(owner)).index });
                    let page = match state {
                        _ if !read_page(&(s.base(), i as u8)) => None,
                        // SAFETY: quiescent: no owner touches the page meanwhile.
                        SlotState::Active(_) => Some(unsafe { page_snap(m, scope.heads_only) }),
                        _ => None,
                    };
                    let stray_remote = !matches!(state, SlotState::Active(_))
                        && !m.remote().load(Ordering::Acquire).is_null();
                    slots.push(SlotSnap {
                        state,
                        owner,
                        page,
                        stray_remote,
                    });
                }
                superslabs.push(SsSnap {
                    base: s.base(),
                    map_seq,
                    status,
                    empty_mask: s.empty_mask.load(Ordering::Acquire),
                    empty_count: s.empty_count.load(Ordering::Acquire),
                    total_active: s.total_active.load(Ordering::Acquire),
                    active_slots: s.active_slots.load(Ordering::Acquire),
                    slots,
                });
            });
        let mut registry = vec![Vec::new(); NUM_CLASSES];
        let mut stage1 = vec![Vec::new(); NUM_CLASSES];
        let mut fallback = vec![Vec::new(); NUM_CLASSES];
        let mut abandoned = vec![Vec::new(); NUM_CLASSES];
        for c in 0..NUM_CLASSES {
            if !wants(scope.classes, &c) {
                continue;
            }
            self.pool.registry(c, &mut registry[c]);
            self.pool
                .stage1
                .entries(c, &mut |m| stage1[c].push(page_ref(m)));
            self.pool
                .stage1
                .fallback_entries(c, &mut |m| fallback[c].push(page_ref(m)));
            let mut m = self.pool.abandoned[c].load(Ordering::Acquire);
            while !m.is_null() {
                abandoned[c].push(page_ref(m));
                // SAFETY: abandoned pages are Active, so mapped.
                m = unsafe { (*m).next_abandoned.load(Ordering::Acquire) };
            }
        }
        let mut arena = Vec::new();
        self.pool.arena(&mut arena);
        Snapshot {
            superslabs,
            registry,
            stage1,
            fallback,
            free_nodes: if scope.nodes {
                self.pool.stage1.free_nodes()
            } else {
                0
            },
            node_pool: self.pool.stage1.node_pool(),
            arena,
            heaps,
            abandoned,
        }
    }
}

/// # Safety
/// The page's owner is not running (quiescent instance).
/// `heads_only`: the free and remote lists hold their head only (at most
/// one index); `used` still counts the whole free list.
unsafe fn page_snap<B: Backend>(m: &SlotMeta<B>, heads_only: bool) -> PageSnap {
    let max = if heads_only { 1 } else { usize::MAX };
    let shared_used = m.used.load(Ordering::Acquire);
    let rw = m.remote().load(Ordering::Acquire);
    // SAFETY: forwarded contract.
    unsafe {
        local(m, |p| {
            let mut free = Vec::new();
            list_indices(m, p.free, p.block_size, &mut free, max);
            let mut remote = Vec::new();
            let head = crate::page::remote_list_head(rw);
            list_indices(m, head, p.block_size, &mut remote, max);
            let used = p.live();
            PageSnap {
                capacity: p.capacity,
                carved: p.carved,
                used,
                free,
                remote,
                shared_used,
                delta: used as i64 - shared_used as i64,
                in_full: p.list == PageList::Full,
                marked_full: rw as usize & FULL != 0,
                list: p.list,
            }
        })
    }
}

impl Snapshot {
    /// The snapshot of SuperSlab `base`.
    pub fn ss(&self, base: usize) -> Option<&SsSnap> {
        self.superslabs.iter().find(|s| s.base == base)
    }

    /// The page at `(base, slot)`.
    pub fn page(&self, p: PageRef) -> Option<&PageSnap> {
        self.ss(p.0)?.slots[p.1 as usize].page.as_ref()
    }

    /// Checks protocol.md's invariants 1, 3, 4, 5, 6, 8, 9, 10 (those that
    /// do not need the set of live blocks, which only the caller knows).
    /// `Err` lists every violation found.
    pub fn check(&self) -> Result<(), String> {
        let mut err = String::new();
        macro_rules! fail {
            ($($a:tt)*) => {{ let _ = writeln!(err, $($a)*); }};
        }
        let live: BTreeSet<usize> = self
            .superslabs
            .iter()
            .filter(|s| s.status == SsStatus::Live)
            .map(|s| s.base)
            .collect();
        for s in &self.superslabs {
            let mut mask = 0u32;
            let mut total = 0u32;
            let mut active = 0u32;
            for (i, sl) in s.slots.iter().enumerate() {
                let at = format!("ss {:#x} slot {i}", s.base);
                match sl.state {
                    SlotState::Empty(_) | SlotState::Purging(_) => mask |= 1 << i,
                    SlotState::Active(_) => active += 1,
                    SlotState::Unused => {}
                }
                if let Some(p) = &sl.page {
                    total += p.shared_used;
                    // 1 + 3: every carved block in exactly one place; used
                    // = carved - |free| (so shared + delta = live + remote).
                    let mut seen = BTreeSet::new();
                    for &b in p.free.iter().chain(&p.remote) {
                        if b >= p.carved {
                            fail!("{at}: block {b} beyond carved {}", p.carved);
                        }
                        if !seen.insert(b) {
                            fail!("{at}: block {b} twice on the free/remote lists");
                        }
                    }
                    if p.carved > p.capacity {
                        fail!("{at}: carved {} > capacity {}", p.carved, p.capacity);
                    }
                    if p.used as usize + p.free.len() != p.carved as usize {
                        fail!(
                            "{at}: used {} + |free| {} != carved {}",
                            p.used,
                            p.free.len(),
                            p.carved
                        );
                    }
                    if (p.used as usize) < p.remote.len() {
                        fail!("{at}: used {} < |remote| {}", p.used, p.remote.len());
                    }
                    // 7 (production): |delta| ≤ capacity; none when unowned.
                    if sl.owner.is_none() && p.delta != 0 {
                        fail!("{at}: abandoned page with delta {}", p.delta);
                    }
                    // 8: full pages.
                    if p.in_full && (!p.free.is_empty() || p.carved != p.capacity) {
                        fail!("{at}: on the full list with free blocks or uncarved space");
                    }
                } else {
                    // 6: no accounting on non-Active slots.
                    if sl.owner.is_some() {
                        fail!("{at}: {:?} slot has an owner", sl.state);
                    }
                    if sl.stray_remote {
                        fail!("{at}: {:?} slot has remote frees", sl.state);
                    }
                }
            }
            // 4
            if total != s.total_active {
                fail!(
                    "ss {:#x}: total_active {} != Σ shared used {total}",
                    s.base,
                    s.total_active
                );
            }
            // 5
            if mask != s.empty_mask {
                fail!(
                    "ss {:#x}: empty_mask {:#x} != Empty slots {mask:#x}",
                    s.base,
                    s.empty_mask
                );
            }
            if s.empty_count != s.empty_mask.count_ones() {
                fail!(
                    "ss {:#x}: empty_count {} != popcount",
                    s.base,
                    s.empty_count
                );
            }
            if s.active_slots != active {
                fail!(
                    "ss {:#x}: active_slots {} != {active}",
                    s.base,
                    s.active_slots
                );
            }
            // 6: cached SuperSlabs.
            if s.status == SsStatus::Cached
                && (s.slots.iter().any(|sl| sl.state != SlotState::Unused) || s.total_active != 0)
            {
                fail!(
                    "ss {:#x}: Cached with a slot in use or total_active",
                    s.base
                );
            }
        }
        // 9: nodes and entries.
        let in_lists: usize = self.stage1.iter().map(Vec::len).sum();
        if in_lists + self.free_nodes != self.node_pool {
            fail!(
                "stage-1 nodes: {in_lists} in lists + {} free != pool {}",
                self.free_nodes,
                self.node_pool
            );
        }
        if self.fallback.iter().any(|f| !f.is_empty()) && self.free_nodes > 0 && in_lists == 0 {
            // Not a violation by itself (the pool may have refilled since);
            // entries on both are fine.
        }
        for (c, l) in self.stage1.iter().chain(self.fallback.iter()).enumerate() {
            for e in l {
                if !live.contains(&e.0) {
                    fail!(
                        "stage-1 list {c}: entry {:#x}/{} names a SuperSlab that is not Live",
                        e.0,
                        e.1
                    );
                }
            }
        }
        for (c, r) in self.registry.iter().enumerate() {
            for b in r {
                if !live.contains(b) {
                    fail!("registry[{c}] holds {b:#x}, not Live");
                }
            }
        }
        // 8 + 10: heap lists and abandoned lists.
        let mut placed: BTreeSet<PageRef> = BTreeSet::new();
        let mut place = |p: PageRef, what: &str, err: &mut String| {
            if !placed.insert(p) {
                let _ = writeln!(err, "page {:#x}/{} in two places ({what})", p.0, p.1);
            }
        };
        for h in &self.heaps {
            for c in 0..NUM_CLASSES {
                let lists = h.current[c]
                    .iter()
                    .map(|&p| (p, PageList::Current))
                    .chain(h.partial[c].iter().map(|&p| (p, PageList::Partial)))
                    .chain(h.full[c].iter().map(|&p| (p, PageList::Full)));
                for (p, kind) in lists {
                    if !h.alive {
                        fail!("dead heap {} holds page {:#x}/{}", h.index, p.0, p.1);
                    }
                    place(p, "heap list", &mut err);
                    let Some(ss) = self.ss(p.0) else {
                        fail!("heap {} page {:#x}/{} not mapped", h.index, p.0, p.1);
                        continue;
                    };
                    let sl = &ss.slots[p.1 as usize];
                    if sl.state != SlotState::Active(c as u8) || sl.owner != Some(h.index) {
                        fail!(
                            "heap {} class {c} page {:#x}/{}: {:?} owner {:?}",
                            h.index,
                            p.0,
                            p.1,
                            sl.state,
                            sl.owner
                        );
                    } else if sl.page.as_ref().map(|pg| pg.list) != Some(kind) {
                        fail!(
                            "heap {} page {:#x}/{}: list mark differs from {kind:?}",
                            h.index,
                            p.0,
                            p.1
                        );
                    }
                }
            }
        }
        for (c, l) in self.abandoned.iter().enumerate() {
            for &p in l {
                place(p, "abandoned", &mut err);
                match self.ss(p.0).map(|s| &s.slots[p.1 as usize]) {
                    Some(sl) if sl.state == SlotState::Active(c as u8) && sl.owner.is_none() => {}
                    other => fail!("abandoned[{c}] page {:#x}/{}: {other:?}", p.0, p.1),
                }
            }
        }
        // Every owned page is on its owner's lists; every Active unowned
        // page is abandoned.
        for s in &self.superslabs {
            for (i, sl) in s.slots.iter().enumerate() {
                if matches!(sl.state, SlotState::Active(_)) && !placed.contains(&(s.base, i as u8))
                {
                    fail!(
                        "active page {:#x}/{i} (owner {:?}) on no list",
                        s.base,
                        sl.owner
                    );
                }
            }
        }
        if err.is_empty() {
            Ok(())
        } else {
            Err(err)
        }
    }
}
