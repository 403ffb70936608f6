//! The explorer finds every mutant (a violation of the invariant the mutant
//! breaks, with a replayable shortest trace) and no violation in the
//! specification.

// The product runs on itself.
#[global_allocator]
static GLOBAL: hakmem::Hakmem = hakmem::Hakmem;

use model::{Config, Mutant};
use verify::explore::{explore, replay, Options};

#[test]
fn the_specification_has_no_violation_up_to_depth_5() {
    let opts = Options {
        max_depth: 5,
        ..Options::default()
    };
    let out = explore(Config::tiny(), &opts);
    assert_eq!(out.violations, 0, "{:?}", out.first);
    assert!(out.states > 100_000, "only {} states", out.states);
}

#[test]
fn a_smaller_configuration_is_explored_completely() {
    let mut cfg = Config::tiny();
    cfg.threads = 1;
    cfg.slots = 2;
    cfg.max_superslabs = 1;
    cfg.max_live = 1;
    let out = explore(cfg, &Options::default());
    assert!(out.complete, "not complete after {} states", out.states);
    assert_eq!(out.violations, 0, "{:?}", out.first);
}

#[test]
fn the_explorer_catches_every_mutant_with_a_shortest_trace() {
    let mut missed = Vec::new();
    for m in Mutant::wrong() {
        let cfg = Config::tiny().with_mutant(m);
        let out = explore(cfg.clone(), &Options::default());
        let Some(found) = out.first else {
            missed.push(format!("{}: not caught in {} states", m.name(), out.states));
            continue;
        };
        let broke = found.invariants();
        if !m.breaks().iter().any(|i| broke.contains(i)) {
            missed.push(format!(
                "{}: broke {broke:?}, expected {:?}",
                m.name(),
                m.breaks()
            ));
        }
        // The trace is real: it replays, and ends in the violation.
        match replay(cfg, &found.trace) {
            Ok(s) => assert!(
                s.check_invariants().is_err(),
                "{}: good end state",
                m.name()
            ),
            Err(e) => missed.push(format!("{}: trace does not replay: {e}", m.name())),
        }
        println!(
            "{:<28} {:>2} steps, {:?}",
            m.name(),
            found.trace.len(),
            broke[0]
        );
    }
    assert!(missed.is_empty(), "{}", missed.join("\n"));
}
