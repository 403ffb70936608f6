//! Unit tests of individual steps: pre-conditions (rejections with a
//! reason), post-conditions, and that no input makes `apply` panic.

mod common;

// The product runs on itself: the test harness allocates through hakmem.
#[global_allocator]
static GLOBAL: hakmem::Hakmem = hakmem::Hakmem;

use model::*;
use proptest::prelude::*;

const T0: ThreadId = ThreadId(0);
const T1: ThreadId = ThreadId(1);
const C0: ClassId = ClassId(0);

fn page(ss: u16, slot: u8) -> PageId {
    PageId::new(ss, slot)
}

/// t0 owns a fresh page ss0/1 (capacity 2) of class 0 with both blocks carved.
fn with_page() -> State {
    let mut s = State::new(common::tiny());
    let p = page(0, 1);
    s.apply(&Step::Acquire {
        t: T0,
        class: C0,
        stage: Stage::Fresh,
        ss: p.ss,
        slot: p.slot,
    })
    .unwrap();
    s.apply(&Step::Carve {
        t: T0,
        page: p,
        n: 2,
    })
    .unwrap();
    s
}

fn ok(s: &mut State, step: Step) {
    s.apply(&step)
        .unwrap_or_else(|e| panic!("{step} rejected: {e}"));
    s.check_invariants().unwrap();
}

#[test]
fn acquire_fresh_maps_a_superslab_and_makes_the_page_current() {
    let s = with_page();
    assert_eq!(s.superslabs.len(), 1);
    assert_eq!(s.heaps[0].classes[0].current, Some(page(0, 1)));
    assert_eq!(s.registry[0], vec![SsId(0)]);
    let slot = s.slot(page(0, 1)).unwrap();
    assert_eq!(
        slot.state,
        SlotState::Active {
            class: C0,
            owner: Some(T0)
        }
    );
    // Lowest carved index on top.
    assert_eq!(slot.free, vec![1, 0]);
    s.check_invariants().unwrap();
}

#[test]
fn alloc_fast_pops_the_head_and_counts_in_delta() {
    let mut s = with_page();
    let p = page(0, 1);
    let wrong = Step::AllocFast {
        t: T0,
        class: C0,
        page: p,
        block: p.block(1),
    };
    assert!(s.apply(&wrong).is_err(), "only the head may be popped");
    ok(
        &mut s,
        Step::AllocFast {
            t: T0,
            class: C0,
            page: p,
            block: p.block(0),
        },
    );
    assert_eq!(s.slot(p).unwrap().delta, 1);
    // Threshold 1: the next allocation waits for the threshold flush.
    let next = Step::AllocFast {
        t: T0,
        class: C0,
        page: p,
        block: p.block(1),
    };
    let e = s.apply(&next).unwrap_err();
    assert!(e.0.contains("threshold"), "{e}");
    ok(
        &mut s,
        Step::Flush {
            t: T0,
            page: p,
            reason: FlushReason::Threshold,
        },
    );
    assert_eq!(
        (s.slot(p).unwrap().shared_used, s.superslabs[0].total_active),
        (1, 1)
    );
    ok(&mut s, next);
}

#[test]
fn remote_free_then_drain_returns_the_block_and_flushes_past_the_threshold() {
    let mut s = with_page();
    let p = page(0, 1);
    ok(
        &mut s,
        Step::AllocFast {
            t: T0,
            class: C0,
            page: p,
            block: p.block(0),
        },
    );
    assert!(
        s.apply(&Step::FreeRemote {
            t: T0,
            block: p.block(0)
        })
        .is_err(),
        "owner frees locally"
    );
    ok(
        &mut s,
        Step::FreeRemote {
            t: T1,
            block: p.block(0),
        },
    );
    assert_eq!(s.slot(p).unwrap().remote, vec![0]);
    assert!(
        s.apply(&Step::Drain {
            t: T1,
            page: p,
            n: 1
        })
        .is_err(),
        "only the owner drains"
    );
    assert!(
        s.apply(&Step::Drain {
            t: T0,
            page: p,
            n: 2
        })
        .is_err(),
        "n is the list length"
    );
    ok(
        &mut s,
        Step::Drain {
            t: T0,
            page: p,
            n: 1,
        },
    );
    let slot = s.slot(p).unwrap();
    assert_eq!((slot.free.clone(), slot.delta), (vec![1, 0], 0));
}

#[test]
fn page_empty_needs_nothing_in_use_and_pushes_a_stage1_entry() {
    let mut s = with_page();
    let p = page(0, 1);
    ok(
        &mut s,
        Step::AllocFast {
            t: T0,
            class: C0,
            page: p,
            block: p.block(0),
        },
    );
    assert!(s.apply(&Step::PageEmpty { t: T0, page: p }).is_err());
    ok(
        &mut s,
        Step::FreeLocal {
            t: T0,
            block: p.block(0),
        },
    );
    ok(&mut s, Step::PageEmpty { t: T0, page: p });
    assert_eq!(s.slot(p).unwrap().state, SlotState::Empty { class: C0 });
    assert_eq!(
        (s.superslabs[0].empty_mask, s.superslabs[0].empty_count),
        (0b10, 1)
    );
    assert_eq!(s.stage1[0].len(), 1);
    assert!(s.node_pool.is_empty());
    assert_eq!(s.heaps[0].classes[0].current, None);
    // Reuse by another heap through stage 1.
    ok(
        &mut s,
        Step::Acquire {
            t: T1,
            class: C0,
            stage: Stage::List,
            ss: p.ss,
            slot: p.slot,
        },
    );
    assert_eq!(s.node_pool.len(), 1);
    assert_eq!(s.superslabs[0].empty_count, 0);
}

#[test]
fn exhausted_pool_uses_the_fallback() {
    let mut s = State::new(common::tiny());
    for slot in [1u8, 2] {
        let p = page(0, slot);
        let ss = SsId(0);
        let stage = if slot == 1 {
            Stage::Fresh
        } else {
            Stage::Unused
        };
        ok(
            &mut s,
            Step::Acquire {
                t: T0,
                class: C0,
                stage,
                ss,
                slot: p.slot,
            },
        );
        ok(&mut s, Step::PageEmpty { t: T0, page: p });
    }
    assert_eq!(s.stage1[0].len(), 1);
    assert_eq!(s.fallback[0], vec![page(0, 2)]);
}

#[test]
fn abandon_and_reclaim_move_a_page_to_exactly_one_heap() {
    let mut s = with_page();
    let p = page(0, 1);
    ok(
        &mut s,
        Step::AllocFast {
            t: T0,
            class: C0,
            page: p,
            block: p.block(0),
        },
    );
    assert!(
        s.apply(&Step::ThreadExit { t: T0 }).is_err(),
        "t0 still owns a page"
    );
    ok(&mut s, Step::Abandon { t: T0, page: p });
    ok(&mut s, Step::ThreadExit { t: T0 });
    // A remote free to the abandoned page waits on its remote list.
    ok(
        &mut s,
        Step::FreeRemote {
            t: T1,
            block: p.block(0),
        },
    );
    ok(&mut s, Step::Reclaim { t: T1, class: C0 });
    assert!(
        s.apply(&Step::Reclaim { t: T1, class: C0 }).is_err(),
        "the list was swapped out"
    );
    ok(
        &mut s,
        Step::Drain {
            t: T1,
            page: p,
            n: 1,
        },
    );
    ok(&mut s, Step::PageEmpty { t: T1, page: p });
}

#[test]
fn release_needs_no_active_slot_and_goes_to_the_arena_first() {
    let mut s = with_page();
    let p = page(0, 1);
    assert!(s.apply(&Step::Release { ss: SsId(0) }).is_err());
    ok(&mut s, Step::PageEmpty { t: T0, page: p });
    ok(&mut s, Step::Release { ss: SsId(0) });
    assert_eq!(s.superslabs[0].status, SsStatus::Cached);
    assert!(s.registry[0].is_empty());
    // Release removed its entry (node back to the pool): nothing to claim
    // or discard.
    assert!(s.stage1[0].is_empty() && s.fallback[0].is_empty());
    assert_eq!(s.node_pool.len(), usize::from(s.config().node_pool));
    assert!(!s.superslabs[0].slots[1].listed);
    assert!(s
        .apply(&Step::Stage1Discard {
            t: T0,
            class: C0,
            source: Stage1Source::List,
        })
        .is_err());
    ok(&mut s, Step::ArenaTake { ss: SsId(0) });
    ok(
        &mut s,
        Step::Acquire {
            t: T0,
            class: C0,
            stage: Stage::Fresh,
            ss: SsId(0),
            slot: SlotIdx(0),
        },
    );
}

#[test]
fn page_full_requires_an_exhausted_page_without_remote_frees() {
    let mut s = with_page();
    let p = page(0, 1);
    assert!(
        s.apply(&Step::PageFull { t: T0, page: p }).is_err(),
        "free blocks left"
    );
    ok(
        &mut s,
        Step::AllocFast {
            t: T0,
            class: C0,
            page: p,
            block: p.block(0),
        },
    );
    ok(
        &mut s,
        Step::Flush {
            t: T0,
            page: p,
            reason: FlushReason::Threshold,
        },
    );
    ok(
        &mut s,
        Step::AllocFast {
            t: T0,
            class: C0,
            page: p,
            block: p.block(1),
        },
    );
    ok(&mut s, Step::PageFull { t: T0, page: p });
    assert!(s.slot(p).unwrap().in_full);
    ok(
        &mut s,
        Step::FreeRemote {
            t: T1,
            block: p.block(0),
        },
    );
    assert!(s.heaps[0].full_hint);
    ok(&mut s, Step::Unfull { t: T0, page: p });
    assert!(!s.heaps[0].full_hint);
}

#[test]
fn realloc_is_an_allocation_then_a_free() {
    let mut s = with_page();
    let p = page(0, 1);
    ok(
        &mut s,
        Step::AllocFast {
            t: T0,
            class: C0,
            page: p,
            block: p.block(0),
        },
    );
    assert!(
        s.apply(&Step::Realloc {
            t: T0,
            block: p.block(0),
            class: C0
        })
        .is_err(),
        "same class"
    );
    let q = page(0, 2);
    ok(
        &mut s,
        Step::Acquire {
            t: T0,
            class: ClassId(1),
            stage: Stage::Unused,
            ss: q.ss,
            slot: q.slot,
        },
    );
    ok(
        &mut s,
        Step::Carve {
            t: T0,
            page: q,
            n: 1,
        },
    );
    ok(
        &mut s,
        Step::Realloc {
            t: T0,
            block: p.block(0),
            class: ClassId(1),
        },
    );
    assert!(s.live.contains_key(&q.block(0)) && !s.live.contains_key(&p.block(0)));
}

#[test]
fn publish_remote_is_rejected_in_the_specification() {
    let mut s = with_page();
    let p = page(0, 1);
    assert!(s.apply(&Step::PublishRemote { block: p.block(0) }).is_err());
}

fn any_step() -> impl Strategy<Value = Step> {
    let t = (0u8..4).prop_map(ThreadId);
    let c = (0u8..4).prop_map(ClassId);
    let p = (0u16..4, 0u8..5).prop_map(|(a, b)| PageId::new(a, b));
    let b = (p.clone(), 0u32..4).prop_map(|(p, i)| p.block(i));
    let stage = prop_oneof![
        Just(Stage::Scan),
        Just(Stage::List),
        Just(Stage::Fallback),
        Just(Stage::Unused),
        Just(Stage::Fresh)
    ];
    prop_oneof![
        (t.clone(), c.clone(), p.clone(), b.clone()).prop_map(|(t, class, page, block)| {
            Step::AllocFast {
                t,
                class,
                page,
                block,
            }
        }),
        (t.clone(), p.clone(), 0u32..5).prop_map(|(t, page, n)| Step::Carve { t, page, n }),
        (t.clone(), p.clone(), 0u32..5).prop_map(|(t, page, n)| Step::Drain { t, page, n }),
        (t.clone(), c.clone(), p.clone()).prop_map(|(t, class, page)| Step::SetCurrent {
            t,
            class,
            page
        }),
        (t.clone(), p.clone()).prop_map(|(t, page)| Step::PageFull { t, page }),
        (t.clone(), p.clone()).prop_map(|(t, page)| Step::Unfull { t, page }),
        (t.clone(), c.clone(), stage, p.clone()).prop_map(|(t, class, stage, p)| Step::Acquire {
            t,
            class,
            stage,
            ss: p.ss,
            slot: p.slot
        }),
        (t.clone(), b.clone()).prop_map(|(t, block)| Step::FreeLocal { t, block }),
        (t.clone(), b.clone()).prop_map(|(t, block)| Step::FreeRemote { t, block }),
        b.clone().prop_map(|block| Step::PublishRemote { block }),
        (t.clone(), p.clone(), any::<bool>()).prop_map(|(t, page, th)| Step::Flush {
            t,
            page,
            reason: if th {
                FlushReason::Threshold
            } else {
                FlushReason::Boundary
            }
        }),
        (t.clone(), p.clone()).prop_map(|(t, page)| Step::PageEmpty { t, page }),
        (t.clone(), p.clone()).prop_map(|(t, page)| Step::Abandon { t, page }),
        t.clone().prop_map(|t| Step::ThreadExit { t }),
        (t.clone(), c.clone()).prop_map(|(t, class)| Step::Reclaim { t, class }),
        p.clone().prop_map(|p| Step::Retire {
            ss: p.ss,
            slot: p.slot
        }),
        (0u16..4).prop_map(|s| Step::Release { ss: SsId(s) }),
        (0u16..4).prop_map(|s| Step::ArenaTake { ss: SsId(s) }),
        (t.clone(), c.clone(), any::<bool>()).prop_map(|(t, class, l)| Step::Stage1Discard {
            t,
            class,
            source: if l {
                Stage1Source::List
            } else {
                Stage1Source::Fallback
            }
        }),
        (t, b, c).prop_map(|(t, block, class)| Step::Realloc { t, block, class }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    /// Arbitrary (mostly invalid, often out-of-range) steps never panic; a
    /// rejected step leaves the state unchanged; an accepted one is among
    /// the enabled steps (the enumeration is complete) and keeps every
    /// invariant.
    #[test]
    fn apply_never_panics_and_enabled_steps_are_complete(steps in proptest::collection::vec(any_step(), 1..150)) {
        let mut s = State::new(common::tiny());
        for step in steps {
            let before = s.clone();
            match s.apply(&step) {
                Ok(()) => {
                    prop_assert!(before.enabled_steps().contains(&step), "{step} accepted but not enumerated");
                    prop_assert!(s.check_invariants().is_ok(), "{step}: {:?}", s.check_invariants());
                }
                Err(e) => {
                    prop_assert!(!e.0.is_empty());
                    prop_assert!(s == before, "{step} rejected but changed the state");
                }
            }
        }
    }
}
