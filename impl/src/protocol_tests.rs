//! Deterministic multi-heap scenarios on small instances, driven from one OS
//! thread (plus a std-thread smoke test): each protocol path is exercised,
//! asserted through the observer's events and statistics, and every
//! scenario ends with `Snapshot::check()` and a conservation check against
//! the blocks the test knows to be live.

use crate::observe::{Event, Stage};
use crate::page::{PageList, PageLocal};
use crate::size_class::{block_size, capacity, class_of, NUM_CLASSES};
use crate::snapshot::Snapshot;
use crate::stage1::Source;
use crate::superslab::{slot_of, SlotState};
use crate::sync::{Backend, StdBackend, StdCell};
use crate::{HeapRef, Instance, InstanceConfig};
use core::sync::atomic;
use std::cell::RefCell;
use std::collections::BTreeSet;
use std::vec::Vec;

/// std atomics plus an observer that records events in a thread-local log.
struct Obs;

thread_local! {
    static LOG: RefCell<Vec<Event>> = const { RefCell::new(Vec::new()) };
}

impl Backend for Obs {
    type AtomicUsize = atomic::AtomicUsize;
    type AtomicU32 = atomic::AtomicU32;
    type AtomicU64 = atomic::AtomicU64;
    type AtomicPtr<T: 'static> = atomic::AtomicPtr<T>;
    type Cell<T: 'static> = StdCell<T>;
    const OBSERVE: bool = true;

    fn observe(ev: &Event) {
        LOG.with(|l| l.borrow_mut().push(*ev));
    }
    fn spin_hint() {
        std::thread::yield_now()
    }
    unsafe fn load_link(slot: *const *mut u8) -> *mut u8 {
        // SAFETY: forwarded contract.
        unsafe { <StdBackend as Backend>::load_link(slot) }
    }
    unsafe fn store_link(slot: *mut *mut u8, v: *mut u8) {
        // SAFETY: forwarded contract.
        unsafe { <StdBackend as Backend>::store_link(slot, v) }
    }
}

fn take_log() -> Vec<Event> {
    LOG.with(|l| std::mem::take(&mut *l.borrow_mut()))
}

fn acquired(log: &[Event]) -> Vec<(u32, Stage)> {
    log.iter()
        .filter_map(|e| match *e {
            Event::Acquire { t, stage, .. } => Some((t, stage)),
            _ => None,
        })
        .collect()
}

/// Live blocks known to the test, with the checks that need them.
#[derive(Default)]
struct Live(BTreeSet<usize>);

impl Live {
    fn alloc<B: Backend>(&mut self, h: HeapRef<'_, B>, size: usize) -> *mut u8 {
        let p = h.alloc(size, 8);
        assert!(!p.is_null());
        assert!(self.0.insert(p as usize), "block {p:p} handed out twice");
        // SAFETY: a fresh block of `size` bytes.
        unsafe { p.write_bytes(0xA5, size) };
        p
    }
    fn free<B: Backend>(&mut self, h: HeapRef<'_, B>, p: *mut u8) {
        assert!(self.0.remove(&(p as usize)));
        // SAFETY: a live block of the instance.
        unsafe { h.free(p) };
    }
    /// Invariant 1 and 3 with the live set: live ∪ free ∪ remote = carved,
    /// disjoint; shared_used + delta = live + |remote|.
    fn check(&self, s: &Snapshot) {
        if let Err(e) = s.check() {
            panic!("invariants violated:\n{e}");
        }
        for ss in &s.superslabs {
            for (i, sl) in ss.slots.iter().enumerate() {
                let Some(p) = &sl.page else { continue };
                let SlotState::Active(c) = sl.state else {
                    unreachable!()
                };
                let bs = block_size(c as usize);
                let area = ss.base + crate::size_class::slot_area_offset(i);
                let live: BTreeSet<u32> = self
                    .0
                    .iter()
                    .filter(|&&a| a >= area && a < area + crate::size_class::slot_area_size(i))
                    .map(|&a| ((a - area) / bs) as u32)
                    .collect();
                for b in p.free.iter().chain(&p.remote) {
                    assert!(
                        !live.contains(b),
                        "live block {b} of {:#x}/{i} on a list",
                        ss.base
                    );
                }
                assert_eq!(
                    live.len() + p.free.len() + p.remote.len(),
                    p.carved as usize,
                    "conservation on {:#x}/{i}",
                    ss.base
                );
                assert_eq!(
                    p.shared_used as i64 + p.delta,
                    (live.len() + p.remote.len()) as i64,
                    "accounting on {:#x}/{i}",
                    ss.base
                );
            }
        }
    }
}

fn small(cfg: impl FnOnce(&mut InstanceConfig)) -> Box<Instance<Obs>> {
    let mut c = InstanceConfig::SMALL;
    cfg(&mut c);
    Instance::new(c).expect("instance")
}

const C1K: usize = 19; // class of 1024 B: 64 blocks per page, 56 in slot 0

#[test]
fn alloc_free_every_class_single_heap() {
    let inst = small(|_| {});
    let h = inst.new_heap().unwrap();
    let mut live = Live::default();
    take_log();
    let mut blocks = Vec::new();
    for c in 0..NUM_CLASSES {
        for _ in 0..3 {
            blocks.push(live.alloc(h, block_size(c)));
        }
    }
    let log = take_log();
    assert_eq!(acquired(&log)[0], (0, Stage::Fresh));
    // Every AllocFast event names the block `locate` finds.
    let fast: Vec<_> = log
        .iter()
        .filter_map(|e| match *e {
            Event::AllocFast {
                ss,
                slot,
                block,
                class,
                ..
            } => Some((ss, slot, block, class)),
            _ => None,
        })
        .collect();
    assert_eq!(fast.len(), blocks.len());
    for (p, f) in blocks.iter().zip(&fast) {
        assert_eq!(inst.locate(*p), Some(*f));
    }
    assert!(acquired(&log)[1..].iter().all(|&(_, s)| s == Stage::Unused));
    assert!(log.iter().any(|e| matches!(e, Event::Carve { .. })));
    live.check(&inst.snapshot());
    for p in blocks {
        live.free(h, p);
    }
    let log = take_log();
    assert_eq!(
        log.iter()
            .filter(|e| matches!(e, Event::FreeLocal { .. }))
            .count(),
        3 * NUM_CLASSES
    );
    live.check(&inst.snapshot());
    h.exit();
    live.check(&inst.snapshot());
    // Local frees are counted per page and folded in at page boundaries
    // (all of them by the exit).
    let st = inst.stats();
    assert_eq!(st.total_allocs(), 3 * NUM_CLASSES as u64);
    assert_eq!(st.total_frees(), 3 * NUM_CLASSES as u64);
    assert_eq!(st.acquired()[3], 1);
}

#[test]
fn alignment_and_class_fit() {
    let inst = small(|_| {});
    let h = inst.new_heap().unwrap();
    for shift in 4..=13 {
        let align = 1usize << shift;
        for size in [1, 24, 100, 700, 3000] {
            let p = h.alloc(size, align);
            assert_eq!(p as usize % align, 0, "size {size} align {align}");
            // SAFETY: live block of ours.
            assert!(unsafe { inst.usable_size(p) } >= size);
            // SAFETY: as above.
            unsafe { h.free(p) };
        }
    }
    h.exit();
    inst.snapshot().check().unwrap();
}

#[test]
fn remote_free_to_full_page_unfulls_it() {
    let inst = small(|_| {});
    let a = inst.new_heap().unwrap();
    let b = inst.new_heap().unwrap();
    let mut live = Live::default();
    // Fill A's first page of class 1 KiB (slot 0: 56 blocks), and one more
    // so that the first page goes to the full list.
    let cap = capacity(C1K, 0) as usize;
    let mut blocks: Vec<_> = (0..=cap).map(|_| live.alloc(a, 1024)).collect();
    let log = take_log();
    assert!(log
        .iter()
        .any(|e| matches!(e, Event::PageFull { t: 0, slot: 0, .. })));
    live.check(&inst.snapshot());
    let snap = inst.snapshot();
    let base = snap.superslabs[0].base;
    assert_eq!(snap.heaps[0].full[C1K], vec![(base, 0)]);
    // B frees a block of the full page: remote, hints A.
    let victim = blocks.remove(3);
    live.free(b, victim);
    let log = take_log();
    assert!(matches!(
        log.as_slice(),
        [Event::FreeRemote {
            t: 1,
            slot: 0,
            hinted: Some(0),
            ..
        }]
    ));
    let snap = inst.snapshot();
    live.check(&snap);
    assert!(snap.heaps[0].full_hint);
    assert_eq!(snap.page((base, 0)).unwrap().remote, vec![3]);
    // A drains its second page's fresh blocks first... force the slow path
    // by exhausting the current page, then the hint moves page 0 back.
    let cap1 = capacity(C1K, 1) as usize;
    for _ in 1..cap1 {
        blocks.push(live.alloc(a, 1024));
    }
    take_log();
    let p = live.alloc(a, 1024);
    let log = take_log();
    assert!(log
        .iter()
        .any(|e| matches!(e, Event::Unfull { t: 0, slot: 0, .. })));
    assert!(log.iter().any(|e| matches!(
        e,
        Event::Drain {
            t: 0,
            slot: 0,
            n: 1,
            ..
        }
    )));
    assert_eq!(p, victim, "the drained block is reused");
    blocks.push(p);
    live.check(&inst.snapshot());
    for p in blocks {
        live.free(a, p);
    }
    a.exit();
    b.exit();
    live.check(&inst.snapshot());
}

#[test]
fn local_free_to_full_page_moves_it_to_partial() {
    let inst = small(|_| {});
    let a = inst.new_heap().unwrap();
    let mut live = Live::default();
    let cap = capacity(C1K, 0) as usize;
    let mut blocks: Vec<_> = (0..=cap).map(|_| live.alloc(a, 1024)).collect();
    let p = blocks.remove(0);
    live.free(a, p);
    let snap = inst.snapshot();
    live.check(&snap);
    let base = snap.superslabs[0].base;
    assert!(snap.heaps[0].full[C1K].is_empty());
    assert_eq!(snap.heaps[0].partial[C1K], vec![(base, 0)]);
    for p in blocks {
        live.free(a, p);
    }
    live.check(&inst.snapshot());
    a.exit();
}

#[test]
fn abandon_and_reclaim() {
    let inst = small(|_| {});
    let a = inst.new_heap().unwrap();
    let b = inst.new_heap().unwrap();
    let mut live = Live::default();
    let blocks: Vec<_> = (0..10).map(|_| live.alloc(a, 100)).collect();
    // A remote free while A is alive, then A exits.
    live.free(b, blocks[0]);
    take_log();
    a.exit();
    let log = take_log();
    assert!(log
        .iter()
        .any(|e| matches!(e, Event::Drain { t: 0, n: 1, .. })));
    assert!(log.iter().any(|e| matches!(e, Event::Abandon { t: 0, .. })));
    assert!(matches!(log.last(), Some(Event::ThreadExit { t: 0 })));
    let snap = inst.snapshot();
    live.check(&snap);
    assert_eq!(snap.abandoned[class_of(100)].len(), 1);
    // A remote free to the abandoned page stays on its remote list.
    live.free(b, blocks[1]);
    let snap = inst.snapshot();
    live.check(&snap);
    let pg = snap.abandoned[class_of(100)][0];
    assert_eq!(snap.page(pg).unwrap().remote.len(), 1);
    // B's slow path reclaims the whole list; the page becomes B's.
    take_log();
    let p = live.alloc(b, 100);
    let log = take_log();
    assert!(log
        .iter()
        .any(|e| matches!(e, Event::Reclaim { t: 1, n: 1, .. })));
    assert!(acquired(&log).is_empty(), "reclaim instead of acquisition");
    let snap = inst.snapshot();
    live.check(&snap);
    assert!(snap.abandoned.iter().all(Vec::is_empty));
    assert_eq!(snap.superslabs[0].slots[pg.1 as usize].owner, Some(1));
    // The rest of A's blocks are now B's own: local frees.
    take_log();
    for &q in &blocks[2..] {
        live.free(b, q);
    }
    live.free(b, p);
    let log = take_log();
    assert!(log.iter().all(|e| !matches!(e, Event::FreeRemote { .. })));
    b.exit();
    live.check(&inst.snapshot());
    let st = inst.stats();
    assert_eq!(st.reclaims, 1);
    assert_eq!(st.abandoned_pages, 1);
    assert!(st.drains >= 2 && st.drained_blocks >= 2, "{st:?}");
    assert_eq!(st.total_frees(), 11);
    assert_eq!(st.classes[class_of(100)].remote_frees, 2);
}

/// Makes a page of `class` empty on heap `h` (not its current page):
/// allocate a page and a half, free the first page. Returns the rest.
fn empty_one_page<B: Backend>(h: HeapRef<'_, B>, live: &mut Live, class: usize) -> Vec<*mut u8> {
    let snap_cap = capacity(class, 1) as usize;
    let first: Vec<_> = (0..snap_cap)
        .map(|_| live.alloc(h, block_size(class)))
        .collect();
    let rest: Vec<_> = (0..2).map(|_| live.alloc(h, block_size(class))).collect();
    // The first page is now full (or partial if it was slot 0): free it all.
    let first_slot = slot_of::<B>(first[0]);
    for p in first {
        if slot_of::<B>(p) == first_slot {
            live.free(h, p);
        } else {
            live.0.remove(&(p as usize));
            // SAFETY: live block.
            unsafe { h.free(p) };
        }
    }
    rest
}

#[test]
fn stage_scan_reuses_an_empty_slot_for_another_class() {
    let inst = small(|c| c.scan_limit = 16);
    let a = inst.new_heap().unwrap();
    let mut live = Live::default();
    let rest = empty_one_page(a, &mut live, C1K);
    let log = take_log();
    assert!(log
        .iter()
        .any(|e| matches!(e, Event::PageEmpty { t: 0, slot: 0, .. })));
    let snap = inst.snapshot();
    live.check(&snap);
    assert_eq!(snap.superslabs[0].empty_mask, 1);
    // Another class registered in the same SuperSlab: A takes slot 0 by
    // stage 0.5 (the class was registered by a stage-2 acquisition first).
    let b = inst.new_heap().unwrap();
    let q = live.alloc(b, 1024);
    let log = take_log();
    assert_eq!(acquired(&log), vec![(1, Stage::Scan)]);
    let snap = inst.snapshot();
    live.check(&snap);
    assert_eq!(snap.superslabs[0].empty_mask, 0);
    // The stage-1 entry of slot 0 is now stale.
    assert_eq!(snap.stage1[C1K].len(), 1);
    live.free(b, q);
    for p in rest {
        live.free(a, p);
    }
    a.exit();
    b.exit();
    live.check(&inst.snapshot());
    assert_eq!(inst.stats().acquired()[0], 1);
}

#[test]
fn stage_list_and_fallback_with_exhausted_node_pool() {
    // scan_limit 0: stage 0.5 never finds anything, stage 1 does.
    let inst = small(|c| {
        c.scan_limit = 0;
        c.node_pool = 1;
    });
    let a = inst.new_heap().unwrap();
    let mut live = Live::default();
    // Two empty pages: the first entry takes the only node, the second
    // goes to the fallback.
    let mut rest = empty_one_page(a, &mut live, C1K);
    rest.extend(empty_one_page(a, &mut live, C1K - 1));
    let log = take_log();
    let entries: Vec<_> = log
        .iter()
        .filter_map(|e| match *e {
            Event::PageEmpty { entry, .. } => Some(entry),
            _ => None,
        })
        .collect();
    assert_eq!(entries, vec![Source::List, Source::Fallback]);
    let snap = inst.snapshot();
    live.check(&snap);
    assert_eq!(snap.free_nodes, 0);
    assert_eq!(snap.fallback[C1K - 1].len(), 1);
    // A new heap takes them by stage 1: list first for C1K, fallback for
    // the other class.
    let b = inst.new_heap().unwrap();
    let p = live.alloc(b, 1024);
    let q = live.alloc(b, block_size(C1K - 1));
    let log = take_log();
    assert_eq!(acquired(&log), vec![(1, Stage::List), (1, Stage::Fallback)]);
    let snap = inst.snapshot();
    live.check(&snap);
    assert_eq!(snap.free_nodes, 1);
    live.free(b, p);
    live.free(b, q);
    for p in rest {
        live.free(a, p);
    }
    a.exit();
    b.exit();
    live.check(&inst.snapshot());
}

#[test]
fn stale_stage1_entry_is_discarded() {
    let inst = small(|c| c.scan_limit = 16);
    let a = inst.new_heap().unwrap();
    let mut live = Live::default();
    let rest = empty_one_page(a, &mut live, C1K);
    // Claimed by stage 0.5 for C1K: its stage-1 entry goes stale.
    let b = inst.new_heap().unwrap();
    let q = live.alloc(b, 1024);
    take_log();
    // Another heap, scan disabled by having no Empty slot: pops the stale
    // entry, discards it, then takes an Unused slot.
    let c = inst.new_heap().unwrap();
    let r = live.alloc(c, 1024);
    let log = take_log();
    assert!(log
        .iter()
        .any(|e| matches!(e, Event::Stage1Discard { t: 2, .. })));
    assert_eq!(acquired(&log), vec![(2, Stage::Unused)]);
    let snap = inst.snapshot();
    live.check(&snap);
    assert_eq!(snap.free_nodes, snap.node_pool);
    live.free(b, q);
    live.free(c, r);
    for p in rest {
        live.free(a, p);
    }
    for h in [a, b, c] {
        h.exit();
    }
    live.check(&inst.snapshot());
}

#[test]
fn release_to_arena_and_to_os() {
    let inst = small(|c| {
        c.arena_cache = 1;
        c.keep_live = 0;
    });
    let a = inst.new_heap().unwrap();
    let mut live = Live::default();
    // 8 KiB blocks: 7 in slot 0, 8 per other slot; 33 pages = 2 SuperSlabs.
    let big = block_size(NUM_CLASSES - 1);
    let n = 7 + 31 * 8 + 8;
    let blocks: Vec<_> = (0..n).map(|_| live.alloc(a, big)).collect();
    let snap = inst.snapshot();
    live.check(&snap);
    assert_eq!(snap.superslabs.len(), 2);
    assert_eq!(
        acquired(&take_log())
            .iter()
            .filter(|(_, s)| *s == Stage::Fresh)
            .count(),
        2
    );
    for p in blocks {
        live.free(a, p);
    }
    a.exit();
    let log = take_log();
    let rel: Vec<_> = log
        .iter()
        .filter_map(|e| match *e {
            Event::Release { to_os, .. } => Some(to_os),
            _ => None,
        })
        .collect();
    assert_eq!(rel, vec![false, true], "first to the arena, then to the OS");
    assert_eq!(
        log.iter()
            .filter(|e| matches!(e, Event::Retire { .. }))
            .count(),
        32 + 2
    );
    let snap = inst.snapshot();
    live.check(&snap);
    assert_eq!(snap.superslabs.len(), 1);
    assert_eq!(snap.arena.len(), 1);
    assert!(snap.stage1.iter().all(Vec::is_empty) && snap.free_nodes == snap.node_pool);
    let st = inst.stats();
    assert_eq!(
        (
            st.superslabs_mapped,
            st.superslabs_cached,
            st.superslabs_unmapped
        ),
        (2, 1, 1)
    );
    assert_eq!(st.mapped_bytes, 2 << 20);
    assert_eq!(st.peak_mapped_bytes, 4 << 20);
    // The next acquisition takes the cached SuperSlab back (stage 3).
    let b = inst.new_heap().unwrap();
    let p = live.alloc(b, 64);
    let log = take_log();
    assert!(log.iter().any(|e| matches!(e, Event::ArenaTake { .. })));
    assert_eq!(acquired(&log), vec![(1, Stage::Fresh)]);
    live.free(b, p);
    b.exit();
    live.check(&inst.snapshot());
}

#[test]
fn purge_decommits_empty_slots() {
    let inst = small(|c| {
        c.purge_delay_ms = 0;
        c.scan_limit = 16;
    });
    let a = inst.new_heap().unwrap();
    let mut live = Live::default();
    let rest = empty_one_page(a, &mut live, C1K);
    assert!(inst.stats().purged_slots >= 1);
    // The purged slot is still claimable and its memory usable.
    let b = inst.new_heap().unwrap();
    let blocks: Vec<_> = (0..20).map(|_| live.alloc(b, 1024)).collect();
    live.check(&inst.snapshot());
    for p in blocks {
        live.free(b, p);
    }
    for p in rest {
        live.free(a, p);
    }
    a.exit();
    b.exit();
    live.check(&inst.snapshot());
    assert!(inst.purge_now() <= 32);
}

#[test]
fn purge_past_the_threshold_ignores_the_delay() {
    let inst = small(|c| {
        c.purge_threshold = 1;
        c.scan_limit = 0;
    });
    let a = inst.new_heap().unwrap();
    let mut live = Live::default();
    let mut rest = empty_one_page(a, &mut live, C1K);
    assert_eq!(
        inst.stats().purged_slots,
        0,
        "one dirty slot is under the threshold"
    );
    rest.extend(empty_one_page(a, &mut live, C1K - 1));
    assert_eq!(inst.stats().purged_slots, 2, "two are over it: both purged");
    live.check(&inst.snapshot());
    for p in rest {
        live.free(a, p);
    }
    a.exit();
    live.check(&inst.snapshot());
}

#[test]
fn heaps_are_reused_when_configured() {
    let inst = small(|c| c.reuse_heaps = true);
    let a = inst.new_heap().unwrap();
    let raw = a.raw();
    a.exit();
    let b = inst.new_heap().unwrap();
    assert_eq!(b.raw(), raw);
    assert_eq!(b.index(), 0);
    b.exit();
    let snap = inst.snapshot();
    assert_eq!(snap.heaps.len(), 1);
    snap.check().unwrap();
}

#[test]
fn dummy_page_has_no_free_block() {
    let p: PageLocal<StdBackend> = PageLocal::new();
    assert!(p.free.is_null() && p.list == PageList::None);
}

#[test]
#[cfg_attr(
    miri,
    ignore = "thousands of operations on 4 threads: too slow under Miri"
)]
fn threads_with_cross_frees_keep_invariants() {
    let inst = Instance::<StdBackend>::new(InstanceConfig {
        node_pool: 8,
        arena_cache: 1,
        keep_live: 0,
        purge_delay_ms: 0,
        ..InstanceConfig::DEFAULT
    })
    .unwrap();
    let inst = &*inst;
    let (tx, rx) = std::sync::mpsc::channel::<Vec<usize>>();
    let rx = std::sync::Mutex::new(rx);
    std::thread::scope(|s| {
        for t in 0..4usize {
            let tx = tx.clone();
            let rx = &rx;
            s.spawn(move || {
                let h = inst.new_heap().unwrap();
                let mut seed = 0x9E37_79B9u32 ^ t as u32;
                for round in 0..20 {
                    let mut mine = Vec::new();
                    for _ in 0..200 {
                        seed ^= seed << 13;
                        seed ^= seed >> 17;
                        seed ^= seed << 5;
                        let size = 1 + (seed as usize % 3000);
                        let p = h.alloc(size, 8);
                        assert!(!p.is_null());
                        // SAFETY: fresh block of `size` bytes.
                        unsafe { p.write_bytes(size as u8, size) };
                        mine.push(p as usize | (size << 48));
                    }
                    // Free half locally, send the other half to someone else.
                    let other = mine.split_off(mine.len() / 2);
                    for v in mine {
                        let (p, size) = ((v & ((1 << 48) - 1)) as *mut u8, v >> 48);
                        // SAFETY: our live block.
                        unsafe {
                            assert!(*p == size as u8 && *p.add(size - 1) == size as u8);
                            h.free(p);
                        }
                    }
                    tx.send(other).unwrap();
                    if round % 2 == 1 {
                        let got = rx.lock().unwrap().try_recv();
                        if let Ok(batch) = got {
                            for v in batch {
                                let (p, size) = ((v & ((1 << 48) - 1)) as *mut u8, v >> 48);
                                // SAFETY: a live block handed over.
                                unsafe {
                                    assert!(*p == size as u8 && *p.add(size - 1) == size as u8);
                                    h.free(p);
                                }
                            }
                        }
                    }
                }
                h.exit();
            });
        }
    });
    drop(tx);
    let h = inst.new_heap().unwrap();
    for batch in rx.into_inner().unwrap() {
        for v in batch {
            // SAFETY: the remaining live blocks.
            unsafe { h.free((v & ((1 << 48) - 1)) as *mut u8) };
        }
    }
    h.exit();
    let snap = inst.snapshot();
    snap.check().unwrap();
    for ss in &snap.superslabs {
        for sl in &ss.slots {
            assert!(sl
                .page
                .as_ref()
                .is_none_or(|p| p.used == 0 || sl.owner.is_none()));
        }
    }
    let st = inst.stats();
    assert_eq!(st.total_allocs(), 4 * 20 * 200);
    assert_eq!(st.total_frees(), 4 * 20 * 200);
}
