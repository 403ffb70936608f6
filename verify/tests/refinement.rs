//! Refinement of impl against the model: random multi-logical-thread
//! operation sequences (proptest, fixed seeds, shrinking) and directed
//! scenarios run through [`Lockstep`]: every reported step is accepted by
//! the model, the snapshot equals the model's state after every call, and
//! every invariant holds. See `docs/verification-refinement.md`.

use std::cell::RefCell;
use std::collections::BTreeMap;

use hakmem::sync::Backend;
use hakmem::InstanceConfig;
use proptest::prelude::*;
use proptest::test_runner::{Config as PtConfig, RngSeed, TestRunner};
use verify::backends::record::{Record, RecordThreshold};
use verify::lockstep::class_tables_agree;

mod common;
use common::{op, run};

#[global_allocator]
static GLOBAL: hakmem::Hakmem = hakmem::Hakmem;

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
