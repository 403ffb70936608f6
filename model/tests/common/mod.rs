//! Shared proptest machinery: a state-machine strategy over the model's
//! enabled steps (proptest-state-machine's `Sequential`), and a runner that
//! replays a generated sequence, checking every invariant after each step.

#![allow(dead_code)]

use std::sync::Arc;

use model::{Config, Invariant, State, Step};
use proptest::prelude::*;
use proptest::test_runner::{
    Config as PtConfig, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner,
};
use proptest_state_machine::strategy::Sequential;

/// The proptest suites' tiny configuration: `Config::tiny()` without the
/// explorer's state-space bounds (one page, one live SuperSlab at a time)
/// and with the smaller slot 0, so that random sequences reach several
/// pages, `Realloc` and two live SuperSlabs, which the exhaustive default
/// run excludes.
pub fn tiny() -> Config {
    let mut cfg = Config::tiny();
    cfg.max_pages = usize::MAX;
    cfg.max_live_superslabs = usize::MAX;
    for c in &mut cfg.classes {
        c.capacity_slot0 = 1;
    }
    cfg
}

/// Step kinds, so that the generator first picks a kind uniformly (rare
/// steps such as Release are not drowned by the many frees), then one of
/// the enabled steps of that kind.
fn by_kind(steps: Vec<Step>) -> Vec<Vec<Step>> {
    let mut groups: Vec<Vec<Step>> = Vec::new();
    for s in steps {
        match groups.iter_mut().find(|g| g[0].name() == s.name()) {
            Some(g) => g.push(s),
            None => groups.push(vec![s]),
        }
    }
    groups
}

/// The transitions strategy: an enabled step, kind first.
pub fn transitions(state: &State) -> BoxedStrategy<Step> {
    // Keep one thread alive: with a live heap some step is always enabled
    // (free, flush, abandon, reclaim or acquire), so generation never sticks.
    let alive = state.heaps.iter().filter(|h| h.alive).count();
    let steps = state
        .enabled_steps()
        .into_iter()
        .filter(|s| alive > 1 || !matches!(s, Step::ThreadExit { .. }))
        .collect();
    let groups = by_kind(steps);
    if groups.is_empty() {
        // No step enabled (every thread exited): a step that is rejected,
        // which the preconditions filter out during shrinking.
        return Just(Step::ThreadExit {
            t: model::ThreadId(0),
        })
        .boxed();
    }
    proptest::sample::select(groups)
        .prop_flat_map(proptest::sample::select)
        .boxed()
}

/// The state-machine strategy for `cfg`: sequences of 1..`len` steps.
pub fn strategy(
    cfg: Config,
    len: usize,
) -> Sequential<State, Step, BoxedStrategy<State>, BoxedStrategy<Step>> {
    let cfg = Arc::new(cfg);
    Sequential::new(
        (1..len).into(),
        move || Just(State::with_config(cfg.clone())).boxed(),
        |s: &State, t: &Step| s.allows(t),
        transitions,
        |mut s: State, t: &Step| {
            // Preconditions hold (checked by the strategy); a rejection
            // here would leave the state as it was.
            let _ = s.apply(t);
            s
        },
    )
}

/// Replays one generated case: every step must be accepted and every
/// invariant must hold after it.
pub fn run_case(init: State, steps: &[Step]) -> Result<(), TestCaseError> {
    let mut s = init;
    if let Err(v) = s.check_invariants() {
        return Err(TestCaseError::fail(format!("initial state: {v}")));
    }
    for (i, step) in steps.iter().enumerate() {
        if let Err(e) = s.apply(step) {
            return Err(TestCaseError::fail(format!(
                "step {} ({step}) rejected: {e}",
                i + 1
            )));
        }
        let bad = s.violations();
        if !bad.is_empty() {
            let names: Vec<String> = bad.iter().map(|v| format!("{:?}", v.invariant)).collect();
            return Err(TestCaseError::fail(format!(
                "after step {} ({step}): [{}] {}",
                i + 1,
                names.join(", "),
                bad[0]
            )));
        }
    }
    Ok(())
}

/// A deterministic runner: fixed seed, no persistence, `cases` cases.
pub fn runner(cases: u32, seed: u8) -> TestRunner {
    let config = PtConfig {
        cases,
        failure_persistence: None,
        max_shrink_iters: 4096,
        ..PtConfig::default()
    };
    TestRunner::new_with_rng(
        config,
        TestRng::from_seed(RngAlgorithm::ChaCha, &[seed; 32]),
    )
}

/// Runs the state-machine test of `cfg`; on failure returns the message
/// and the minimal (shrunk) step sequence.
pub fn check(cfg: Config, cases: u32, len: usize, seed: u8) -> Result<(), (String, Vec<Step>)> {
    let strat = strategy(cfg, len);
    let result = runner(cases, seed).run(&strat, |(init, steps, _seen)| run_case(init, &steps));
    match result {
        Ok(()) => Ok(()),
        Err(TestError::Fail(msg, (_, steps, _))) => Err((msg.to_string(), steps)),
        Err(TestError::Abort(msg)) => Err((format!("aborted: {msg}"), Vec::new())),
    }
}

/// Whether a failure message names `inv`.
pub fn names(msg: &str, inv: Invariant) -> bool {
    msg.contains(&format!("{inv:?}"))
}
