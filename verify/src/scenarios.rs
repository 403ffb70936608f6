//! Concurrent scenarios on the real protocol code, generic over the backend
//! (loom or shuttle, with or without an injected bug) and over the
//! checker's threads ([`Sched`]). Each scenario is one execution: it builds
//! an instance, runs its threads, joins them, and ends with [`check_final`]
//! (the impl snapshot's invariants plus the checks that need the live set),
//! then drops the instance (unmapping everything it mapped).
//!
//! Failures are panics whose message names the problem; `mutants` matches
//! those messages.

use hakmem::size_class::{block_size, slot_area_offset, slot_area_size};
use hakmem::superslab::SlotState;
use hakmem::{Backend, HeapId, Instance, InstanceConfig, Snapshot};
use std::collections::BTreeSet;
use std::sync::Arc;

/// Threads of a checker.
pub trait Sched: 'static {
    /// Spawns a checker thread; the returned closure joins it.
    fn spawn(f: impl FnOnce() + Send + 'static) -> Box<dyn FnOnce()>;
}

/// loom's threads.
#[derive(Debug)]
pub struct LoomSched;
impl Sched for LoomSched {
    fn spawn(f: impl FnOnce() + Send + 'static) -> Box<dyn FnOnce()> {
        let h = loom::thread::spawn(f);
        // Without a yield here loom's exploration never started the new
        // thread before the spawner's next operations (measured: one
        // execution for `remote_free_vs_drain`, which misses the
        // `RemotePushRelaxed` race); with it every schedule is explored.
        loom::thread::yield_now();
        Box::new(move || h.join().expect("loom thread panicked"))
    }
}

/// shuttle's threads.
#[derive(Debug)]
pub struct ShuttleSched;
impl Sched for ShuttleSched {
    fn spawn(f: impl FnOnce() + Send + 'static) -> Box<dyn FnOnce()> {
        let h = shuttle::thread::spawn(f);
        Box::new(move || h.join().expect("shuttle thread panicked"))
    }
}

/// Block sizes used by the scenarios: class X (1 KiB, carve batch 4) and
/// class Y (64 B).
pub const X: usize = 1024;
/// See [`X`].
pub const Y: usize = 64;

/// The small configuration of the scenarios (`keep_live` etc. adjusted per
/// scenario).
pub fn cfg() -> InstanceConfig {
    InstanceConfig::SMALL
}

fn new_inst<B: Backend>(cfg: InstanceConfig) -> Arc<Instance<B>> {
    Arc::from(Instance::<B>::new(cfg).expect("instance"))
}

fn alloc<B: Backend>(inst: &Instance<B>, h: HeapId<B>, size: usize) -> usize {
    // SAFETY: each heap is driven by one thread at a time (the scenario's
    // structure guarantees it).
    let p = unsafe { inst.heap(h) }.alloc(size, 8);
    assert!(!p.is_null(), "out of memory");
    p as usize
}

fn free<B: Backend>(inst: &Instance<B>, h: HeapId<B>, p: usize) {
    // SAFETY: `p` is a live block of the instance that the caller gives up;
    // one thread drives `h`.
    unsafe { inst.heap(h).free(p as *mut u8) }
}

fn exit<B: Backend>(inst: &Instance<B>, h: HeapId<B>) {
    // SAFETY: one thread drives `h` and gives it up.
    unsafe { inst.heap(h) }.exit()
}

fn heap<B: Backend>(inst: &Instance<B>) -> HeapId<B> {
    inst.new_heap().expect("heap").id()
}

/// The end of every scenario (quiescent instance): the snapshot's own
/// invariants (protocol.md 1, 3–6, 8–10), then those that need the set of
/// live blocks: every live block is in an `Active` slot, on no list;
/// `live + free + remote = carved` per page; `shared_used + delta = live +
/// remote`; every `Empty` slot has a stage-1 or fallback entry (9).
pub fn check_final<B: Backend>(inst: &Instance<B>, live: &[usize]) {
    let s = inst.snapshot();
    if let Err(e) = s.check() {
        panic!("invariant violated (snapshot check):\n{e}");
    }
    check_live(&s, live);
    check_hints(&s);
}

/// Model invariant 8's hint clause: a full page with remote frees has its
/// owner's `full_hint` set (else the owner never takes those blocks back
/// while it lives: they are stranded). The converse need not hold: impl
/// clears a stale hint lazily.
fn check_hints(s: &Snapshot) {
    for h in s.heaps.iter().filter(|h| h.alive && !h.full_hint) {
        for &(base, i) in h.full.iter().flatten() {
            let page = s
                .superslabs
                .iter()
                .find(|ss| ss.base == base)
                .and_then(|ss| ss.slots[i as usize].page.as_ref());
            if page.is_some_and(|p| !p.remote.is_empty()) {
                panic!(
                    "stranded free: full page {base:#x}/{i} has remote frees but heap {}'s full_hint is clear",
                    h.index
                );
            }
        }
    }
}

fn check_live(s: &Snapshot, live: &[usize]) {
    let mut set = BTreeSet::new();
    for &p in live {
        assert!(set.insert(p), "block {p:#x} handed out twice");
    }
    let mut placed = 0;
    for ss in &s.superslabs {
        for (i, sl) in ss.slots.iter().enumerate() {
            let area = ss.base + slot_area_offset(i);
            let here: Vec<usize> = set
                .iter()
                .copied()
                .filter(|&a| a >= area && a < area + slot_area_size(i))
                .collect();
            let (SlotState::Active(c), Some(p)) = (sl.state, &sl.page) else {
                assert!(
                    here.is_empty(),
                    "live block in a {:?} slot ({:#x}/{i}): safe reuse violated",
                    sl.state,
                    ss.base
                );
                if let SlotState::Empty(c) = sl.state {
                    let me = (ss.base, i as u8);
                    assert!(
                        s.stage1[c as usize].contains(&me) || s.fallback[c as usize].contains(&me),
                        "Empty slot {:#x}/{i} has no stage-1 or fallback entry (lost entry)",
                        ss.base
                    );
                }
                continue;
            };
            placed += here.len();
            let bs = block_size(c as usize);
            let idx: BTreeSet<u32> = here.iter().map(|&a| ((a - area) / bs) as u32).collect();
            for b in p.free.iter().chain(&p.remote) {
                assert!(
                    !idx.contains(b),
                    "live block {b} of {:#x}/{i} on a free/remote list (double hand-out)",
                    ss.base
                );
            }
            assert_eq!(
                idx.len() + p.free.len() + p.remote.len(),
                p.carved as usize,
                "conservation violated on {:#x}/{i}",
                ss.base
            );
            assert_eq!(
                p.shared_used as i64 + p.delta,
                (idx.len() + p.remote.len()) as i64,
                "accounting violated on {:#x}/{i}",
                ss.base
            );
        }
    }
    assert_eq!(placed, set.len(), "live block outside every SuperSlab");
}

/// Remote free racing the owner's drain, both ways. A and B each hold
/// their whole carve batch (4 blocks of X). Each frees three of the other's
/// blocks remotely (pushes, each onto a list its owner may have drained
/// meanwhile) and then allocates five blocks: every time its free list
/// runs dry the slow path flushes, drains whatever the other has pushed so
/// far (the pops that follow may empty the list again) or carves; then
/// each frees two of its blocks locally.
pub fn remote_free_vs_drain<B: Backend, S: Sched>() {
    let inst = new_inst::<B>(cfg());
    let (a, b) = (heap(&inst), heap(&inst));
    let of_a: Vec<usize> = (0..4).map(|_| alloc(&inst, a, X)).collect();
    let of_b: Vec<usize> = (0..4).map(|_| alloc(&inst, b, X)).collect();
    fn side<B: Backend>(inst: &Instance<B>, me: HeapId<B>, theirs: &[usize]) -> Vec<usize> {
        for &p in theirs {
            free(inst, me, p);
        }
        let mut mine: Vec<usize> = (0..5).map(|_| alloc(inst, me, X)).collect();
        free(inst, me, mine.remove(0));
        free(inst, me, mine.remove(2));
        mine
    }
    let (i2, v) = (inst.clone(), of_a[..3].to_vec());
    let got = Arc::new(std::sync::Mutex::new(Vec::new()));
    let g2 = got.clone();
    let j = S::spawn(move || *g2.lock().unwrap() = side(&i2, b, &v));
    let mut live = side(&inst, a, &of_b[..3]);
    j();
    live.extend(got.lock().unwrap().iter());
    live.extend([of_a[3], of_b[3]]);
    check_final(&inst, &live);
    // Every freed block comes back exactly once.
    for h in [a, b] {
        let more: Vec<usize> = (0..6).map(|_| alloc(&inst, h, X)).collect();
        live.extend(&more);
    }
    check_final(&inst, &live);
}

/// Two remote frees racing on the same page (pushes onto one list from two
/// threads) and the owner's drains: A holds its whole carve batch; B frees
/// two of its blocks and C one, while A allocates three blocks (each time
/// the free list is dry: flush, then a drain of 0–3 blocks or a carve) and
/// frees one locally.
pub fn two_remote_frees<B: Backend, S: Sched>() {
    let inst = new_inst::<B>(cfg());
    let (a, b, c) = (heap(&inst), heap(&inst), heap(&inst));
    let blocks: Vec<usize> = (0..4).map(|_| alloc(&inst, a, X)).collect();
    let (i1, v1) = (inst.clone(), [blocks[0], blocks[1]]);
    let j1 = S::spawn(move || {
        free(&i1, b, v1[0]);
        free(&i1, b, v1[1]);
    });
    let (i2, v2) = (inst.clone(), blocks[2]);
    let j2 = S::spawn(move || free(&i2, c, v2));
    let mut mine: Vec<usize> = (0..3).map(|_| alloc(&inst, a, X)).collect();
    free(&inst, a, mine.remove(1));
    j1();
    j2();
    let mut live = mine;
    live.push(blocks[3]);
    check_final(&inst, &live);
    // The freed blocks come back exactly once.
    let more: Vec<usize> = (0..6).map(|_| alloc(&inst, a, X)).collect();
    live.extend(&more);
    check_final(&inst, &live);
}

/// A remote free racing the page becoming empty and the reuse of its slot
/// for another class. A holds two blocks of X; C's page of class Y
/// registers the SuperSlab for Y. B frees A's first block remotely, then
/// allocates (class Y, stage 0.5) and frees that block locally; meanwhile A
/// frees its second block locally, takes it back, frees it again and exits
/// (drain, then page-empty or abandon), and D allocates class Y: B and D
/// race for the emptied slot by stage 0.5 (or take `Unused` slots).
pub fn remote_free_vs_empty_reuse<B: Backend, S: Sched>() {
    let inst = new_inst::<B>(InstanceConfig {
        keep_live: 1,
        ..cfg()
    });
    let (a, b, c, d) = (heap(&inst), heap(&inst), heap(&inst), heap(&inst));
    let (b0, b1) = (alloc(&inst, a, X), alloc(&inst, a, X));
    let c0 = alloc(&inst, c, Y);
    let i2 = inst.clone();
    let j = S::spawn(move || {
        free(&i2, b, b0);
        let y = alloc(&i2, b, Y);
        free(&i2, b, y);
    });
    free(&inst, a, b1);
    let b1 = alloc(&inst, a, X);
    free(&inst, a, b1);
    exit(&inst, a);
    let d0 = alloc(&inst, d, Y);
    j();
    check_final(&inst, &[c0, d0]);
}

/// The last remote frees to a page racing its owner's exit (the page is
/// emptied or abandoned) and another heap taking the class: B frees A's two
/// blocks one after the other; A allocates and frees a third block locally,
/// then exits (drain, then page-empty or abandon); C allocates class X
/// meanwhile (reclaiming the abandoned page, reusing the emptied slot, or
/// taking another) and frees its block.
pub fn remote_free_vs_owner_exit<B: Backend, S: Sched>() {
    let inst = new_inst::<B>(cfg());
    let (a, b, c) = (heap(&inst), heap(&inst), heap(&inst));
    let (b0, b1) = (alloc(&inst, a, X), alloc(&inst, a, X));
    let i2 = inst.clone();
    let j = S::spawn(move || {
        free(&i2, b, b0);
        free(&i2, b, b1);
    });
    let i3 = inst.clone();
    let j3 = S::spawn(move || {
        let c0 = alloc(&i3, c, X);
        free(&i3, c, c0);
    });
    let b2 = alloc(&inst, a, X);
    free(&inst, a, b2);
    exit(&inst, a);
    j();
    j3();
    check_final(&inst, &[]);
    let d = heap(&inst);
    let d0 = alloc(&inst, d, X);
    check_final(&inst, &[d0]);
}

/// A remote free to a page whose owner exits, reclaim by another thread,
/// and a free by a new thread that reuses the exited heap's structure.
/// B frees two of A's blocks remotely while A exits (abandoning its page);
/// C allocates class X (reclaiming the abandoned page or taking a new
/// slot), frees locally, allocates again and keeps that block; main, on a
/// new heap that may reuse A's structure, frees A's last block (a remote
/// free to a page that C may own by then).
pub fn abandon_reclaim<B: Backend, S: Sched>() {
    let inst = new_inst::<B>(InstanceConfig {
        reuse_heaps: true,
        ..cfg()
    });
    let (a, b, c) = (heap(&inst), heap(&inst), heap(&inst));
    let v: Vec<usize> = (0..3).map(|_| alloc(&inst, a, X)).collect();
    let (i1, v1) = (inst.clone(), [v[0], v[1]]);
    let j1 = S::spawn(move || {
        free(&i1, b, v1[0]);
        free(&i1, b, v1[1]);
    });
    exit(&inst, a);
    let (i2, got) = (inst.clone(), Arc::new(std::sync::Mutex::new(0usize)));
    let g2 = got.clone();
    let j2 = S::spawn(move || {
        let c0 = alloc(&i2, c, X);
        free(&i2, c, c0);
        *g2.lock().unwrap() = alloc(&i2, c, X);
    });
    let a2 = heap(&inst);
    free(&inst, a2, v[2]);
    j1();
    j2();
    let c1 = *got.lock().unwrap();
    check_final(&inst, &[c1]);
}

/// Two reclaimers racing a third that re-abandons (the ABA of a one-by-one
/// pop): pages P (head) and Q are abandoned; R1 and R2 are spawned, main is
/// R3. A schedule that breaks a CAS pop: R1 reads head P and `next` Q and
/// is preempted; R2 takes P, R3 takes Q, R2 exits and abandons P again
/// (now alone: `next` null); R1's CAS P → Q succeeds and republishes Q,
/// which R3 owns (a page in two places). The real whole-list swap has no
/// such window.
pub fn reclaim_aba<B: Backend, S: Sched>() {
    let inst = new_inst::<B>(cfg());
    let (p1, p2) = (heap(&inst), heap(&inst));
    let (bp, bq) = (alloc(&inst, p1, X), alloc(&inst, p2, X));
    // Q first, P last: the list is P → Q.
    exit(&inst, p2);
    exit(&inst, p1);
    let (r1, r2, r3) = (heap(&inst), heap(&inst), heap(&inst));
    let got = Arc::new(std::sync::Mutex::new(0usize));
    let (i1, g1) = (inst.clone(), got.clone());
    let j1 = S::spawn(move || {
        let p = alloc(&i1, r1, X);
        *g1.lock().unwrap() = p;
    });
    let i2 = inst.clone();
    let j2 = S::spawn(move || {
        let p = alloc(&i2, r2, X);
        free(&i2, r2, p);
        exit(&i2, r2);
    });
    let c = alloc(&inst, r3, X);
    j1();
    j2();
    let a = *got.lock().unwrap();
    check_final(&inst, &[bp, bq, a, c]);
}

/// Stage 0.5 of class X racing two other heaps' stage-0.5 claims (class Y)
/// of the same `Empty` slot (one wins; the others take `Unused` slots);
/// each heap then frees its block (page kept as current) and allocates
/// again.
pub fn scan_vs_claim<B: Backend, S: Sched>() {
    let inst = new_inst::<B>(InstanceConfig {
        keep_live: 1,
        ..cfg()
    });
    let (a, c, d, e, g) = (
        heap(&inst),
        heap(&inst),
        heap(&inst),
        heap(&inst),
        heap(&inst),
    );
    let a0 = alloc(&inst, a, X);
    let c0 = alloc(&inst, c, Y);
    free(&inst, a, a0);
    exit(&inst, a);
    let mut joins = Vec::new();
    for h in [d, g] {
        let i2 = inst.clone();
        joins.push(S::spawn(move || {
            let d0 = alloc(&i2, h, Y);
            free(&i2, h, d0);
        }));
    }
    let e0 = alloc(&inst, e, X);
    free(&inst, e, e0);
    let e1 = alloc(&inst, e, X);
    for j in joins {
        j();
    }
    check_final(&inst, &[c0, e1]);
}

/// Stage-1 push/pop with a one-node pool: one empty slot's entry in the
/// node, the next on the fallback; two heaps pop concurrently while a third
/// empties another page (its entry goes to the pool or the fallback).
pub fn stage1_exhaustion<B: Backend, S: Sched>() {
    let inst = new_inst::<B>(InstanceConfig {
        node_pool: 1,
        scan_limit: 0,
        keep_live: 1,
        ..cfg()
    });
    let hs: Vec<HeapId<B>> = (0..3).map(|_| heap(&inst)).collect();
    let blocks: Vec<usize> = hs.iter().map(|&h| alloc(&inst, h, X)).collect();
    for k in 0..2 {
        free(&inst, hs[k], blocks[k]);
        exit(&inst, hs[k]);
    }
    let (b, c) = (heap(&inst), heap(&inst));
    let (i1, d, d0) = (inst.clone(), hs[2], blocks[2]);
    let j1 = S::spawn(move || {
        free(&i1, d, d0);
        exit(&i1, d);
    });
    let (i2, got) = (inst.clone(), Arc::new(std::sync::Mutex::new(0usize)));
    let g2 = got.clone();
    let j2 = S::spawn(move || {
        let p = alloc(&i2, b, X);
        *g2.lock().unwrap() = p;
    });
    let c0 = alloc(&inst, c, X);
    j1();
    j2();
    let b0 = *got.lock().unwrap();
    check_final(&inst, &[c0, b0]);
}

/// `PageFull` racing remote frees: the owner exhausts a page of 8 KiB
/// blocks (slot 0 holds 7) and allocates past it (`try_mark_full` racing
/// the pushes), allocates once more (a drain of the page, if it went back
/// to partial, or the new page) and frees one of its old blocks locally (a
/// local free to a full page, or to a partial one), while B frees three
/// of its blocks remotely.
pub fn page_full_vs_remote<B: Backend, S: Sched>() {
    let inst = new_inst::<B>(InstanceConfig {
        keep_live: 1,
        ..cfg()
    });
    let (a, b) = (heap(&inst), heap(&inst));
    let blocks: Vec<usize> = (0..7).map(|_| alloc(&inst, a, 8192)).collect();
    let (i2, v) = (inst.clone(), blocks[..3].to_vec());
    let j = S::spawn(move || {
        for p in v {
            free(&i2, b, p);
        }
    });
    let e1 = alloc(&inst, a, 8192);
    let e2 = alloc(&inst, a, 8192);
    free(&inst, a, blocks[6]);
    j();
    let mut live = blocks[3..6].to_vec();
    live.extend([e1, e2]);
    check_final(&inst, &live);
}

/// A remote free to a full page racing the owner's processing of its
/// full-page hint: heap A has two full pages of 8 KiB blocks (P1 with 7
/// blocks, P2 with 8) and a third current; B's free to P1 set A's hint;
/// then C frees two blocks of P2 while A allocates another class (the slow
/// path processes the hint), then allocates and frees an 8 KiB block.
/// Afterwards a full page with remote frees must have its owner's hint set
/// (model invariant 8), or the free is stranded.
pub fn full_hint_vs_remote<B: Backend, S: Sched>() {
    let inst = new_inst::<B>(cfg());
    let (a, b, c) = (heap(&inst), heap(&inst), heap(&inst));
    let mut blocks: Vec<usize> = (0..16).map(|_| alloc(&inst, a, 8192)).collect();
    free(&inst, b, blocks.remove(0));
    let (i2, v) = (inst.clone(), [blocks.remove(7), blocks.remove(7)]);
    let j = S::spawn(move || {
        free(&i2, c, v[0]);
        free(&i2, c, v[1]);
    });
    blocks.push(alloc(&inst, a, Y));
    let e = alloc(&inst, a, 8192);
    free(&inst, a, e);
    j();
    check_final(&inst, &blocks);
}

/// Delta flushes racing remote frees on the same slot: B frees three of
/// A's blocks remotely while A frees one locally, allocates past its carve
/// batch twice (each refill: boundary flush, then a drain or a carve),
/// frees two blocks and exits (the exit's flush, then page-empty or
/// abandon).
pub fn flush_vs_remote<B: Backend, S: Sched>() {
    let inst = new_inst::<B>(InstanceConfig {
        keep_live: 1,
        ..cfg()
    });
    let (a, b) = (heap(&inst), heap(&inst));
    let blocks: Vec<usize> = (0..4).map(|_| alloc(&inst, a, X)).collect();
    let (i2, v) = (inst.clone(), blocks[..3].to_vec());
    let j = S::spawn(move || {
        for p in v {
            free(&i2, b, p);
        }
    });
    let mut mine: Vec<usize> = (0..5).map(|_| alloc(&inst, a, X)).collect();
    free(&inst, a, mine.remove(0));
    free(&inst, a, mine.remove(0));
    exit(&inst, a);
    j();
    let mut live = mine;
    live.push(blocks[3]);
    check_final(&inst, &live);
}

/// SuperSlab release racing acquisition of its `Empty` slot: A's page of
/// class X was emptied (stage-1 entry, `Empty` slot) while F keeps a block
/// of class Y in slot 1; R runs `release_empty` twice (retire by CAS, or
/// give up on an `Active` slot) while main allocates class X on a new heap
/// (stage 0.5 claims the slot, or stage 1 pops its entry and re-checks, or
/// a stage 2/3 slot), frees it and exits (page-empty again: mark, count,
/// stage-1 push, a release judged) and allocates class X on another heap.
pub fn release_vs_acquire<B: Backend, S: Sched>() {
    let inst = new_inst::<B>(InstanceConfig {
        keep_live: 1,
        ..cfg()
    });
    let (a, c, f, g) = (heap(&inst), heap(&inst), heap(&inst), heap(&inst));
    let a0 = alloc(&inst, a, X);
    let f0 = alloc(&inst, f, Y);
    free(&inst, a, a0);
    exit(&inst, a);
    let i1 = inst.clone();
    let j1 = S::spawn(move || {
        i1.release_empty();
        i1.release_empty();
    });
    let c0 = alloc(&inst, c, X);
    free(&inst, c, c0);
    exit(&inst, c);
    let g0 = alloc(&inst, g, X);
    j1();
    check_final(&inst, &[g0, f0]);
}

/// SuperSlab release racing another slot becoming empty (the empty mask
/// and count updated from both sides): slot 0 (class X) is `Empty`; F
/// frees its last block of class Y and exits (page-empty of slot 1: mark,
/// count, stage-1 push, maybe a release of its own) while R runs
/// `release_empty` twice.
pub fn release_vs_page_empty<B: Backend, S: Sched>() {
    let inst = new_inst::<B>(InstanceConfig {
        keep_live: 1,
        ..cfg()
    });
    let (a, f) = (heap(&inst), heap(&inst));
    let a0 = alloc(&inst, a, X);
    let f0 = alloc(&inst, f, Y);
    free(&inst, a, a0);
    exit(&inst, a);
    let i1 = inst.clone();
    let j1 = S::spawn(move || {
        i1.release_empty();
        i1.release_empty();
    });
    free(&inst, f, f0);
    exit(&inst, f);
    j1();
    check_final(&inst, &[]);
}

/// Acquisition racing another slot becoming empty: slot 0 (class X) is
/// `Empty`; F frees its last block of class Y and exits (mark slot 1
/// empty, stage-1 push) while main, on a new heap, allocates class X
/// (stage 0.5 claims slot 0: unmark) and class Y (stage 0.5 may claim slot
/// 1 as soon as it is `Empty`, or stage 2 takes an `Unused` slot), and
/// frees the first.
pub fn acquire_vs_page_empty<B: Backend, S: Sched>() {
    let inst = new_inst::<B>(InstanceConfig {
        keep_live: 1,
        ..cfg()
    });
    let (a, c, f) = (heap(&inst), heap(&inst), heap(&inst));
    let a0 = alloc(&inst, a, X);
    let f0 = alloc(&inst, f, Y);
    free(&inst, a, a0);
    exit(&inst, a);
    let i2 = inst.clone();
    let j2 = S::spawn(move || {
        free(&i2, f, f0);
        exit(&i2, f);
    });
    let c0 = alloc(&inst, c, X);
    let c1 = alloc(&inst, c, Y);
    free(&inst, c, c0);
    j2();
    check_final(&inst, &[c1]);
}

/// The three-way form of [`release_vs_acquire`]: release, an acquisition
/// of the `Empty` slot and another slot becoming empty, all at once (deep
/// runs only: see docs/verification.md).
pub fn release_acquire_empty<B: Backend, S: Sched>() {
    let inst = new_inst::<B>(InstanceConfig {
        keep_live: 1,
        ..cfg()
    });
    let (a, c, f) = (heap(&inst), heap(&inst), heap(&inst));
    let a0 = alloc(&inst, a, X);
    let f0 = alloc(&inst, f, Y);
    free(&inst, a, a0);
    exit(&inst, a);
    let i1 = inst.clone();
    let j1 = S::spawn(move || {
        i1.release_empty();
    });
    let i2 = inst.clone();
    let j2 = S::spawn(move || {
        free(&i2, f, f0);
        exit(&i2, f);
    });
    let c0 = alloc(&inst, c, X);
    j1();
    j2();
    check_final(&inst, &[c0]);
}

/// Arena put (a release to the cache on the last page's exit) racing a take
/// (stage 3 of another heap): A frees its only block and exits (page-empty,
/// release into the arena) while C allocates class Y (stage 2 on the live
/// SuperSlab, or stage 3 from the arena or the OS), frees it and allocates
/// class X.
pub fn arena_put_take<B: Backend, S: Sched>() {
    let inst = new_inst::<B>(cfg());
    let (a, c) = (heap(&inst), heap(&inst));
    let a0 = alloc(&inst, a, X);
    let i1 = inst.clone();
    let j = S::spawn(move || {
        free(&i1, a, a0);
        exit(&i1, a);
    });
    let c0 = alloc(&inst, c, Y);
    free(&inst, c, c0);
    let c1 = alloc(&inst, c, X);
    j();
    check_final(&inst, &[c1]);
    let s = inst.snapshot();
    assert!(s.arena.len() <= 1, "arena over its cache bound");
}

/// `Release` judged while another slot's page has an unflushed delta (a
/// sequential multi-heap scenario: C's fresh page has `shared_used = 0`).
pub fn release_with_unflushed_page<B: Backend, S: Sched>() {
    let inst = new_inst::<B>(cfg());
    let (c, f) = (heap(&inst), heap(&inst));
    let c0 = alloc(&inst, c, X);
    let f0 = alloc(&inst, f, Y);
    free(&inst, f, f0);
    exit(&inst, f);
    check_final(&inst, &[c0]);
}

/// A larger random-schedule scenario for shuttle: `threads` heaps each run
/// `ops` operations over three classes, handing blocks to each other
/// through a shared mailbox (remote frees), one heap exits half-way, and a
/// late heap reclaims; ends with the invariants and the live set.
pub fn churn<B: Backend, S: Sched>(threads: usize, ops: usize) {
    let inst = new_inst::<B>(InstanceConfig {
        node_pool: 2,
        ..cfg()
    });
    let sizes = [Y, 256, X];
    let mailbox: Arc<shuttle::sync::Mutex<Vec<usize>>> =
        Arc::new(shuttle::sync::Mutex::new(Vec::new()));
    let kept: Arc<shuttle::sync::Mutex<Vec<usize>>> =
        Arc::new(shuttle::sync::Mutex::new(Vec::new()));
    let mut joins = Vec::new();
    for t in 0..threads {
        let h = heap(&inst);
        let (i, mb, kp) = (inst.clone(), mailbox.clone(), kept.clone());
        joins.push(S::spawn(move || {
            let mut mine: Vec<usize> = Vec::new();
            let stop = if t == 0 { ops / 2 } else { ops };
            for k in 0..stop {
                match (k + t) % 4 {
                    0 | 1 => mine.push(alloc(&i, h, sizes[(k * 7 + t) % 3])),
                    2 => {
                        if let Some(p) = mine.pop() {
                            mb.lock().unwrap().push(p);
                        }
                    }
                    _ => {
                        let p = mb.lock().unwrap().pop();
                        if let Some(p) = p {
                            free(&i, h, p);
                        } else if let Some(p) = mine.pop() {
                            free(&i, h, p);
                        }
                    }
                }
            }
            if t == 0 {
                // Exit in the middle: the rest of its blocks are freed by
                // others (remote frees to abandoned pages).
                mb.lock().unwrap().extend(mine.drain(..));
                exit(&i, h);
            } else {
                kp.lock().unwrap().extend(mine);
            }
        }));
    }
    for j in joins {
        j();
    }
    let mut live: Vec<usize> = kept.lock().unwrap().clone();
    live.extend(mailbox.lock().unwrap().iter());
    check_final(&inst, &live);
    // A late heap frees everything: reclaim, drains, page empties, releases.
    let z = heap(&inst);
    for _ in 0..3 {
        let p = alloc(&inst, z, X);
        live.push(p);
    }
    for p in live.drain(..) {
        free(&inst, z, p);
    }
    exit(&inst, z);
    check_final(&inst, &[]);
}
