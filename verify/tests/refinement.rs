//! Refinement of impl against the model: random multi-logical-thread
//! operation sequences (proptest, fixed seeds, shrinking) and directed
//! scenarios run through [`Lockstep`]: every reported step is accepted by
//! the model, the snapshot equals the model's state after every call, and
//! every invariant holds. See `docs/verification-refinement.md`.

use std::cell::RefCell;
use std::collections::BTreeMap;

use hakmem::size_class::CLASS_SIZES;
use hakmem::sync::Backend;
use hakmem::InstanceConfig;
use model::ThreadId;
use proptest::prelude::*;
use proptest::test_runner::{Config as PtConfig, RngSeed, TestRunner};
use verify::backends::record::{Record, RecordThreshold};
use verify::lockstep::{class_tables_agree, Divergence, Lockstep};

#[global_allocator]
static GLOBAL: hakmem::Hakmem = hakmem::Hakmem;

/// One operation of a generated sequence; indices are taken modulo what
/// exists when the operation runs (so shrinking keeps sequences valid).
#[derive(Clone, Debug)]
enum Op {
    NewThread,
    /// `n` allocations of one class (fills pages: PageFull, Unfull).
    Burst {
        t: u8,
        class: u8,
        n: u8,
    },
    Alloc {
        t: u8,
        class: u8,
        under: u16,
        align: u8,
    },
    /// Free live block `i`; `by_owner` or by thread `t`.
    Free {
        i: u16,
        t: u8,
        by_owner: bool,
    },
    Realloc {
        i: u16,
        t: u8,
        class: u8,
    },
    Exit {
        t: u8,
    },
    ReleaseEmpty,
    PurgeNow,
}

fn op() -> impl Strategy<Value = Op> {
    // Large classes (8 to 16 blocks a page) fill pages, empty them, force
    // PageFull and acquisitions; any class is exercised too.
    let class = prop_oneof![3 => 24u8..32, 1 => 0u8..32];
    prop_oneof![
        1 => Just(Op::NewThread),
        12 => (any::<u8>(), class.clone(), 0u16..16, 0u8..4)
            .prop_map(|(t, class, under, align)| Op::Alloc { t, class, under, align }),
        10 => (any::<u16>(), any::<u8>(), any::<bool>())
            .prop_map(|(i, t, by_owner)| Op::Free { i, t, by_owner }),
        2 => (any::<u8>(), 24u8..32, 1u8..24).prop_map(|(t, class, n)| Op::Burst { t, class, n }),
        2 => (any::<u16>(), any::<u8>(), class).prop_map(|(i, t, class)| Op::Realloc { i, t, class }),
        1 => any::<u8>().prop_map(|t| Op::Exit { t }),
        1 => Just(Op::ReleaseEmpty),
        1 => Just(Op::PurgeNow),
    ]
}

const MAX_THREADS: u8 = 4;

/// Runs `ops` through a lockstep of backend `B` and configuration `cfg`,
/// then frees everything and exits every thread.
fn run<B: Backend>(
    cfg: InstanceConfig,
    ops: &[Op],
    seen: &RefCell<BTreeMap<&'static str, u64>>,
) -> Result<(), Divergence> {
    let mut l = Lockstep::<B>::new(cfg, MAX_THREADS);
    l.new_thread()?;
    let alive = |l: &Lockstep<B>, t: u8| -> Option<ThreadId> {
        let n = l.threads() as u8;
        (0..n)
            .map(|k| ThreadId((t % n + k) % n))
            .find(|&t| l.is_alive(t))
    };
    for op in ops {
        match *op {
            Op::NewThread => {
                if l.threads() < usize::from(MAX_THREADS) {
                    l.new_thread()?;
                }
            }
            Op::Alloc {
                t,
                class,
                under,
                align,
            } => {
                let Some(t) = alive(&l, t) else { continue };
                let size = (CLASS_SIZES[usize::from(class)] as usize)
                    .saturating_sub(usize::from(under))
                    .max(1);
                l.alloc(t, size, 8 << align)?;
            }
            Op::Burst { t, class, n } => {
                let Some(t) = alive(&l, t) else { continue };
                for _ in 0..n {
                    l.alloc(t, CLASS_SIZES[usize::from(class)] as usize, 8)?;
                }
            }
            Op::Free { i, t, by_owner } => {
                let live = l.live();
                let Some(t) = alive(&l, t) else { continue };
                if live.is_empty() {
                    continue;
                }
                let p = live[usize::from(i) % live.len()].0;
                let by = if by_owner {
                    l.owner_of(p).filter(|&o| l.is_alive(o)).unwrap_or(t)
                } else {
                    t
                };
                l.free(by, p)?;
            }
            Op::Realloc { i, t, class } => {
                let live = l.live();
                let Some(t) = alive(&l, t) else { continue };
                if live.is_empty() {
                    continue;
                }
                let p = live[usize::from(i) % live.len()].0;
                l.realloc(t, p, CLASS_SIZES[usize::from(class)] as usize, 8)?;
            }
            Op::Exit { t } => {
                // Keep one thread alive to free the rest.
                if l.threads() > 1 {
                    if let Some(t) = alive(&l, t) {
                        if (0..l.threads())
                            .filter(|&k| l.is_alive(ThreadId(k as u8)))
                            .count()
                            > 1
                        {
                            l.exit(t)?;
                        }
                    }
                }
            }
            Op::ReleaseEmpty => {
                l.release_empty()?;
            }
            Op::PurgeNow => {
                l.purge_now()?;
            }
        }
    }
    let t = alive(&l, 0).expect("one thread stays alive");
    l.finish(t)?;
    l.release_empty()?;
    for (k, v) in l.step_counts() {
        *seen.borrow_mut().entry(k).or_default() += v;
    }
    Ok(())
}

/// Runs `cases` random sequences of up to `len` operations; fails on the
/// first divergence (shrunk), or if a step in `must_see` never occurred.
fn check<B: Backend>(
    name: &str,
    cfg: InstanceConfig,
    seed: u64,
    cases: u32,
    len: usize,
    must_see: &[&str],
) {
    let mut runner = TestRunner::new(PtConfig {
        cases,
        rng_seed: RngSeed::Fixed(seed),
        failure_persistence: None,
        ..PtConfig::default()
    });
    let seen = RefCell::new(BTreeMap::new());
    let r = runner.run(&prop::collection::vec(op(), 1..len), |ops| {
        run::<B>(cfg, &ops, &seen).map_err(|e| TestCaseError::fail(e.to_string()))
    });
    if let Err(e) = r {
        panic!("{name}: {e}");
    }
    let seen = seen.into_inner();
    eprintln!("{name}: {cases} cases, steps {seen:?}");
    for s in must_see {
        assert!(seen.contains_key(s), "{name}: no {s} step in {cases} cases");
    }
}

/// Tiny pools: a one-node stage-1 pool (fallback), no arena (every release
/// goes to the OS), stage 0.5 scans one SuperSlab, releases at once.
const TINY: InstanceConfig = InstanceConfig {
    node_pool: 1,
    arena_cache: 0,
    scan_limit: 1,
    ..InstanceConfig::SMALL
};

/// Small pools with an arena of one.
const SMALL: InstanceConfig = InstanceConfig {
    node_pool: 2,
    arena_cache: 1,
    scan_limit: 2,
    ..InstanceConfig::SMALL
};

/// Every step name impl reports.
const ALL_STEPS: &[&str] = &[
    "AllocFast",
    "Carve",
    "Drain",
    "SetCurrent",
    "PageFull",
    "Unfull",
    "Acquire",
    "FreeLocal",
    "FreeRemote",
    "Flush",
    "PageEmpty",
    "Abandon",
    "ThreadExit",
    "Reclaim",
    "Retire",
    "Release",
    "ArenaTake",
    "Stage1Discard",
];

/// Every step but `ArenaTake` (arena cache 0).
const NO_ARENA: &[&str] = &[
    "AllocFast",
    "Carve",
    "Drain",
    "SetCurrent",
    "PageFull",
    "Unfull",
    "Acquire",
    "FreeLocal",
    "FreeRemote",
    "Flush",
    "PageEmpty",
    "Abandon",
    "ThreadExit",
    "Reclaim",
    "Retire",
    "Release",
    "Stage1Discard",
];

#[test]
fn class_table_is_the_models() {
    class_tables_agree().unwrap();
}

#[test]
fn random_sequences_tiny_pools() {
    check::<Record>("tiny", TINY, 0x5eed_0001, 192, 160, NO_ARENA);
}

#[test]
fn random_sequences_small_pools_threshold_2() {
    check::<RecordThreshold<2>>("small/T=2", SMALL, 0x5eed_0002, 128, 160, ALL_STEPS);
}

#[test]
fn random_sequences_tiny_pools_threshold_1() {
    check::<RecordThreshold<1>>("tiny/T=1", TINY, 0x5eed_0003, 96, 160, NO_ARENA);
}

#[test]
fn random_sequences_production_configuration() {
    check::<Record>(
        "production",
        InstanceConfig::DEFAULT,
        0x5eed_0004,
        96,
        200,
        &["AllocFast", "FreeRemote", "PageEmpty", "Abandon", "Reclaim"],
    );
}
