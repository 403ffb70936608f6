//! Shared by the refinement tests: random operation sequences for
//! `Lockstep` (generator and runner).
#![allow(dead_code)]

use std::cell::RefCell;
use std::collections::BTreeMap;

use hakmem::size_class::CLASS_SIZES;
use hakmem::sync::Backend;
use hakmem::InstanceConfig;
use model::ThreadId;
use proptest::prelude::*;
use proptest::test_runner::{Config as PtConfig, RngSeed, TestRunner};
use verify::lockstep::{Divergence, Lockstep};

/// One operation of a generated sequence; indices are taken modulo what
/// exists when the operation runs (so shrinking keeps sequences valid).
#[derive(Clone, Debug)]
pub enum Op {
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

pub fn op() -> impl Strategy<Value = Op> {
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

pub const MAX_THREADS: u8 = 4;

/// Runs `ops` through a lockstep of backend `B` and configuration `cfg`,
/// then frees everything and exits every thread.
pub fn run<B: Backend>(
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

/// Runs up to `cases` random sequences (fixed `seed`) on backend `B`;
/// returns the first divergence found (shrunk), if any.
pub fn find_divergence<B: Backend>(
    cfg: InstanceConfig,
    seed: u64,
    cases: u32,
    len: usize,
) -> Option<String> {
    let mut runner = TestRunner::new(PtConfig {
        cases,
        rng_seed: RngSeed::Fixed(seed),
        failure_persistence: None,
        ..PtConfig::default()
    });
    let seen = RefCell::new(BTreeMap::new());
    runner
        .run(&prop::collection::vec(op(), 1..len), |ops| {
            run::<B>(cfg, &ops, &seen).map_err(|e| TestCaseError::fail(e.to_string()))
        })
        .err()
        .map(|e| e.to_string())
}
