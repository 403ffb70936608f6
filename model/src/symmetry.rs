//! Symmetry reduction for exhaustive exploration: a canonical encoding of a
//! state under the permutations of ids that the protocol cannot tell apart.
//!
//! A permutation π of ids is a *symmetry* when (a) every invariant holds in
//! π·s iff it holds in s, and (b) s →σ s' iff π·s →π·σ π·s' (the step
//! relation commutes with π). Then s and π·s reach the same states up to π
//! and violate the same invariants, so an explorer may visit one state per
//! orbit. The initial state is fixed by every symmetry below except the node
//! relabelling (which only renames pool nodes), so every state of an orbit
//! is at the same BFS depth: shortest traces stay shortest.
//!
//! The symmetries (each checked against `apply`, `enabled`, `invariants`):
//!
//! - **Threads**: heaps have no per-thread configuration; a `ThreadId` is
//!   only compared for equality (owner = acting thread) and used as an
//!   index. Any permutation of the heaps.
//! - **Classes with equal [`ClassSpec`](crate::ClassSpec)**: a class is used
//!   for equality (page serves class, `Realloc` needs another class), as an
//!   index (registry, stage-1, fallback, abandoned, heap lists) and through
//!   its capacity; permutations that keep every capacity are symmetries.
//! - **SuperSlabs**: ids `0..len` of the mapped SuperSlabs are compared for
//!   equality and used as indices; `Acquire{Fresh}` maps the next id `len`,
//!   which no permutation of `0..len` changes. The registry keeps its order
//!   (it is data: stage 0.5 scans a prefix), with its ids renamed.
//! - **Slots 1..** of one SuperSlab: they have the same capacity for every
//!   class (slot 0 loses the header and is fixed, unless its capacities
//!   equal the others'); a slot index is only a page name and a bit of
//!   `empty_mask` (renamed with it).
//! - **Blocks `0..carved` of one page**: `Carve` creates the indices
//!   `carved..carved+n` (fixed), invariants compare indices with `carved`
//!   and for equality; free and remote lists keep their order (the pop order
//!   is protocol, not a choice), with the indices renamed.
//! - **Stage-1 pool nodes**: a node id is only compared for equality; each
//!   node is in one place (pool or one entry).
//!
//! The encoding (`canonical_key`) tries every thread × class × SuperSlab
//! permutation (each group when it has at most [`MAX_ENUMERATED`] members;
//! otherwise only the identity, which is still sound) and keeps the least
//! byte string. Slots, blocks and nodes are renamed by a deterministic
//! function of the content under that permutation (sort by content and role;
//! order of appearance), which is itself a symmetry. Soundness needs only
//! that the key names a state of the orbit (always true: every renaming is a
//! symmetry applied to the whole state) and that the encoding is injective
//! (lengths precede sequences; every field is written). Where the renaming
//! of slots or blocks ties on content that differs elsewhere, two states of
//! one orbit may get different keys: the explorer then visits both, which
//! costs time, never soundness.

use crate::ids::{BlockId, PageId};
use crate::state::{SlotState, SsStatus, State};

/// Groups (threads, classes, mapped SuperSlabs) larger than this are not
/// permuted (n! keys would cost more than the states they save).
pub const MAX_ENUMERATED: usize = 4;

/// One candidate relabelling: old id → new id and its inverse.
struct Relabel {
    thread: Vec<u8>,
    thread_inv: Vec<u8>,
    class: Vec<u8>,
    class_inv: Vec<u8>,
    ss: Vec<u16>,
    ss_inv: Vec<u16>,
    /// Per old SuperSlab: old slot → new slot, and new → old.
    slot: Vec<Vec<u8>>,
    slot_inv: Vec<Vec<u8>>,
    /// Old node → new node (by order of appearance).
    node: Vec<u16>,
}

/// Every permutation of `0..n` (identity only when `n` is too large).
fn permutations(n: usize) -> Vec<Vec<usize>> {
    if n > MAX_ENUMERATED {
        return vec![(0..n).collect()];
    }
    let mut out = Vec::new();
    let mut p: Vec<usize> = (0..n).collect();
    heap_permute(n, &mut p, &mut out);
    out.sort();
    out
}

fn heap_permute(k: usize, p: &mut Vec<usize>, out: &mut Vec<Vec<usize>>) {
    if k <= 1 {
        out.push(p.clone());
        return;
    }
    for i in 0..k {
        heap_permute(k - 1, p, out);
        let j = if k % 2 == 0 { i } else { 0 };
        p.swap(j, k - 1);
    }
}

fn inverse<T: Copy + TryFrom<usize> + Default>(p: &[usize]) -> (Vec<T>, Vec<T>) {
    let conv = |x: usize| T::try_from(x).unwrap_or_default();
    let fwd: Vec<T> = p.iter().map(|&x| conv(x)).collect();
    let mut inv = vec![T::default(); p.len()];
    for (old, &new) in p.iter().enumerate() {
        inv[new] = conv(old);
    }
    (fwd, inv)
}

/// A little byte writer: unsigned LEB128 varints, zigzag for signed.
struct Out<'a>(&'a mut Vec<u8>);

impl Out<'_> {
    fn u(&mut self, mut x: u64) {
        loop {
            let b = (x & 0x7f) as u8;
            x >>= 7;
            if x == 0 {
                self.0.push(b);
                return;
            }
            self.0.push(b | 0x80);
        }
    }
    fn i(&mut self, x: i64) {
        self.u(((x << 1) ^ (x >> 63)) as u64);
    }
    fn b(&mut self, x: u8) {
        self.0.push(x);
    }
}

/// Per old page: old block index → new index, for indices `< carved` (the
/// others keep theirs). Free list (bottom to top), remote list, in-flight
/// blocks, then live blocks by class: the order of appearance.
fn block_maps(s: &State) -> Vec<Vec<Vec<u32>>> {
    s.superslabs
        .iter()
        .enumerate()
        .map(|(si, ss)| {
            ss.slots
                .iter()
                .enumerate()
                .map(|(i, slot)| {
                    let page = PageId::new(si as u16, i as u8);
                    let n = slot.carved as usize;
                    let mut map = vec![u32::MAX; n];
                    let mut next = 0u32;
                    let mut see = |x: u32| {
                        if let Some(m) = map.get_mut(x as usize) {
                            if *m == u32::MAX {
                                *m = next;
                                next += 1;
                            }
                        }
                    };
                    slot.free.iter().for_each(|&x| see(x));
                    slot.remote.iter().for_each(|&x| see(x));
                    s.in_flight
                        .iter()
                        .filter(|b| b.page() == page)
                        .for_each(|b| see(b.index));
                    let mut live: Vec<(u8, u32)> = s
                        .live_blocks_of(page)
                        .map(|(b, c)| (c.0, b.index))
                        .collect();
                    live.sort_unstable();
                    live.iter().for_each(|&(_, x)| see(x));
                    for x in 0..n as u32 {
                        see(x);
                    }
                    map
                })
                .collect()
        })
        .collect()
}

impl State {
    /// A canonical byte encoding of this state's orbit under the symmetries
    /// of the module documentation: equal for states that differ only by a
    /// renaming of threads, interchangeable classes, SuperSlabs, slots
    /// 1.., blocks of a page and pool nodes (exactly so for states that keep
    /// the invariants; perhaps not for violating states, which is harmless),
    /// and different for states in different orbits.
    pub fn canonical_key(&self) -> Vec<u8> {
        let blocks = block_maps(self);
        let threads = permutations(self.heaps.len());
        let cfg = &self.cfg;
        let classes: Vec<Vec<usize>> = permutations(cfg.class_count())
            .into_iter()
            .filter(|p| {
                p.iter()
                    .enumerate()
                    .all(|(o, &n)| cfg.classes[o] == cfg.classes[n])
            })
            .collect();
        let sss = permutations(self.superslabs.len());
        let mut best: Option<Vec<u8>> = None;
        let mut buf = Vec::with_capacity(256);
        for pt in &threads {
            for pc in &classes {
                // Slot renaming depends on threads and classes only.
                let slots: Vec<(Vec<u8>, Vec<u8>)> = (0..self.superslabs.len())
                    .map(|si| self.slot_order(si, pt, pc, &blocks))
                    .collect();
                for ps in &sss {
                    let (thread, thread_inv) = inverse::<u8>(pt);
                    let (class, class_inv) = inverse::<u8>(pc);
                    let (ss, ss_inv) = inverse::<u16>(ps);
                    let mut g = Relabel {
                        thread,
                        thread_inv,
                        class,
                        class_inv,
                        ss,
                        ss_inv,
                        slot: slots.iter().map(|s| s.0.clone()).collect(),
                        slot_inv: slots.iter().map(|s| s.1.clone()).collect(),
                        node: Vec::new(),
                    };
                    g.node = self.node_order(&g);
                    buf.clear();
                    self.encode(&g, &blocks, &mut Out(&mut buf));
                    if best.as_ref().is_none_or(|b| buf < *b) {
                        best = Some(buf.clone());
                    }
                }
            }
        }
        best.unwrap_or_default()
    }

    /// The interchangeable slots of SuperSlab `si` sorted by content and
    /// role under the thread and class permutations; returns (old → new,
    /// new → old).
    fn slot_order(
        &self,
        si: usize,
        pt: &[usize],
        pc: &[usize],
        blocks: &[Vec<Vec<u32>>],
    ) -> (Vec<u8>, Vec<u8>) {
        let n = self.superslabs[si].slots.len();
        // Slot 0 joins the others when it loses no capacity to the header.
        let first = usize::from(
            self.cfg
                .classes
                .iter()
                .any(|c| c.capacity_slot0 != c.capacity),
        );
        let mut keyed: Vec<(Vec<u8>, usize)> = (first..n)
            .map(|i| {
                let mut k = Vec::new();
                let page = PageId::new(si as u16, i as u8);
                self.slot_key(page, pt, pc, blocks, &mut Out(&mut k));
                (k, i)
            })
            .collect();
        keyed.sort();
        let mut order: Vec<usize> = (0..first).collect();
        order.extend(keyed.into_iter().map(|(_, i)| i));
        // order[new] = old
        let mut fwd = vec![0u8; n];
        for (new, &old) in order.iter().enumerate() {
            fwd[old] = new as u8;
        }
        (fwd, order.iter().map(|&o| o as u8).collect())
    }

    /// A slot's content and role, with threads and classes renamed and
    /// blocks in canonical order (but no other page named).
    fn slot_key(
        &self,
        page: PageId,
        pt: &[usize],
        pc: &[usize],
        blocks: &[Vec<Vec<u32>>],
        o: &mut Out<'_>,
    ) {
        let map = &blocks[usize::from(page.ss.0)][usize::from(page.slot.0)];
        self.encode_slot(page, &|t| pt[t] as u8, &|c| pc[c] as u8, map, o);
        let Some(slot) = self.slot(page) else { return };
        // Role: where the owner keeps it, abandoned, stage-1/fallback positions.
        if let (Some(t), Some(c)) = (slot.owner(), slot.class()) {
            let hc = &self.heaps[usize::from(t.0)].classes[usize::from(c.0)];
            o.b(if hc.current == Some(page) {
                1
            } else if hc.partial.contains(&page) {
                2
            } else if hc.full.contains(&page) {
                3
            } else {
                0
            });
        }
        let mut roles: Vec<(u8, u8, usize)> = Vec::new();
        for (c, list) in self.abandoned.iter().enumerate() {
            if list.contains(&page) {
                roles.push((0, pc[c] as u8, 0));
            }
        }
        for (c, list) in self.stage1.iter().enumerate() {
            for (pos, e) in list.iter().enumerate() {
                if e.page == page {
                    roles.push((1, pc[c] as u8, pos));
                }
            }
        }
        for (c, list) in self.fallback.iter().enumerate() {
            for (pos, p) in list.iter().enumerate() {
                if *p == page {
                    roles.push((2, pc[c] as u8, pos));
                }
            }
        }
        roles.sort_unstable();
        o.u(roles.len() as u64);
        for (k, c, pos) in roles {
            o.b(k);
            o.b(c);
            o.u(pos as u64);
        }
    }

    /// One slot's own fields and its live blocks.
    fn encode_slot(
        &self,
        page: PageId,
        thread: &dyn Fn(usize) -> u8,
        class: &dyn Fn(usize) -> u8,
        map: &[u32],
        o: &mut Out<'_>,
    ) {
        let Some(slot) = self.slot(page) else { return };
        let blk = |x: u32| map.get(x as usize).copied().unwrap_or(x);
        match slot.state {
            SlotState::Unused => o.b(0),
            SlotState::Active { class: c, owner } => {
                o.b(1);
                o.b(class(usize::from(c.0)));
                o.b(owner.map_or(0, |t| thread(usize::from(t.0)) + 1));
            }
            SlotState::Empty { class: c } => {
                o.b(2);
                o.b(class(usize::from(c.0)));
            }
        }
        o.i(slot.shared_used);
        o.i(slot.delta);
        o.u(u64::from(slot.carved));
        o.u(slot.free.len() as u64);
        slot.free.iter().for_each(|&x| o.u(u64::from(blk(x))));
        o.u(slot.remote.len() as u64);
        slot.remote.iter().for_each(|&x| o.u(u64::from(blk(x))));
        o.b(u8::from(slot.in_full) | u8::from(slot.listed) << 1);
        let mut live: Vec<(u32, u8)> = self
            .live_blocks_of(page)
            .map(|(b, c)| (blk(b.index), class(usize::from(c.0))))
            .collect();
        live.sort_unstable();
        o.u(live.len() as u64);
        for (x, c) in live {
            o.u(u64::from(x));
            o.b(c);
        }
    }

    /// Pool nodes renamed by order of appearance: the pool bottom to top,
    /// then the stage-1 lists in renamed class order.
    fn node_order(&self, g: &Relabel) -> Vec<u16> {
        let n = usize::from(self.cfg.node_pool);
        let mut map = vec![u16::MAX; n];
        let mut next = 0u16;
        let mut see = |x: u16| {
            if let Some(m) = map.get_mut(usize::from(x)) {
                if *m == u16::MAX {
                    *m = next;
                    next += 1;
                }
            }
        };
        self.node_pool.iter().for_each(|x| see(x.0));
        for &old in &g.class_inv {
            self.stage1[usize::from(old)]
                .iter()
                .for_each(|e| see(e.node.0));
        }
        for x in 0..n as u16 {
            see(x);
        }
        map
    }

    /// The whole state under `g`, in new-id order.
    fn encode(&self, g: &Relabel, blocks: &[Vec<Vec<u32>>], o: &mut Out<'_>) {
        let page = |p: PageId| -> (u64, u8) {
            let si = usize::from(p.ss.0);
            match (g.ss.get(si), g.slot.get(si)) {
                (Some(&s), Some(sl)) => (
                    u64::from(s),
                    sl.get(usize::from(p.slot.0)).copied().unwrap_or(p.slot.0),
                ),
                _ => (u64::from(p.ss.0), p.slot.0),
            }
        };
        let put_page = |o: &mut Out<'_>, p: PageId| {
            let (s, i) = page(p);
            o.u(s);
            o.b(i);
        };
        let block = |b: BlockId| -> (u64, u8, u32) {
            let (s, i) = page(b.page());
            let idx = blocks
                .get(usize::from(b.ss.0))
                .and_then(|v| v.get(usize::from(b.slot.0)))
                .and_then(|m| m.get(b.index as usize))
                .copied()
                .unwrap_or(b.index);
            (s, i, idx)
        };
        let thread = |t: usize| g.thread.get(t).copied().unwrap_or(t as u8);
        let class = |c: usize| g.class.get(c).copied().unwrap_or(c as u8);
        let node = |n: u16| g.node.get(usize::from(n)).copied().unwrap_or(n);
        let sorted_pages = |o: &mut Out<'_>, it: &mut dyn Iterator<Item = PageId>| {
            let mut v: Vec<(u64, u8)> = it.map(page).collect();
            v.sort_unstable();
            o.u(v.len() as u64);
            for (s, i) in v {
                o.u(s);
                o.b(i);
            }
        };

        o.u(self.superslabs.len() as u64);
        for &old in &g.ss_inv {
            let si = usize::from(old);
            let ss = &self.superslabs[si];
            o.b(match ss.status {
                SsStatus::Live => 0,
                SsStatus::Cached => 1,
                SsStatus::Released => 2,
            });
            let mut mask = 0u64;
            for bit in 0..32u8 {
                if ss.empty_mask & (1 << bit) != 0 {
                    let nb = g.slot[si].get(usize::from(bit)).copied().unwrap_or(bit);
                    mask |= 1 << nb;
                }
            }
            o.u(mask);
            o.u(u64::from(ss.empty_count));
            o.i(ss.total_active);
            o.u(ss.slots.len() as u64);
            for &os in &g.slot_inv[si] {
                let p = PageId::new(old, os);
                let map = &blocks[si][usize::from(os)];
                self.encode_slot(p, &thread, &class, map, o);
            }
        }
        for &c in &g.class_inv {
            let c = usize::from(c);
            let reg = &self.registry[c];
            o.u(reg.len() as u64);
            for s in reg {
                o.u(g
                    .ss
                    .get(usize::from(s.0))
                    .map_or(u64::from(s.0), |&x| u64::from(x)));
            }
            o.u(self.stage1[c].len() as u64);
            for e in &self.stage1[c] {
                o.u(u64::from(node(e.node.0)));
                put_page(o, e.page);
            }
            o.u(self.fallback[c].len() as u64);
            for &p in &self.fallback[c] {
                put_page(o, p);
            }
            sorted_pages(o, &mut self.abandoned[c].iter().copied());
        }
        o.u(self.node_pool.len() as u64);
        for n in &self.node_pool {
            o.u(u64::from(node(n.0)));
        }
        for &t in &g.thread_inv {
            let h = &self.heaps[usize::from(t)];
            o.b(u8::from(h.alive) | u8::from(h.full_hint) << 1);
            for &c in &g.class_inv {
                let hc = &h.classes[usize::from(c)];
                match hc.current {
                    None => o.b(0),
                    Some(p) => {
                        o.b(1);
                        put_page(o, p);
                    }
                }
                sorted_pages(o, &mut hc.partial.iter().copied());
                sorted_pages(o, &mut hc.full.iter().copied());
            }
        }
        o.u(self.in_flight.len() as u64);
        for &b in &self.in_flight {
            let (s, i, x) = block(b);
            o.u(s);
            o.b(i);
            o.u(u64::from(x));
        }
        // Live blocks are written with their pages; a live block whose page
        // does not exist (no step makes one) is written here.
        let orphans: Vec<(&BlockId, &crate::ids::ClassId)> = self
            .live
            .iter()
            .filter(|(b, _)| self.slot(b.page()).is_none())
            .collect();
        o.u(orphans.len() as u64);
        for (b, c) in orphans {
            o.u(u64::from(b.ss.0));
            o.b(b.slot.0);
            o.u(u64::from(b.index));
            o.b(class(usize::from(c.0)));
        }
    }
}
