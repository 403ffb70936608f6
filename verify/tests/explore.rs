//! The explorer finds every mutant (a violation of the invariant the mutant
//! breaks, with a replayable shortest trace in the original ids), its
//! symmetry reduction is exact where the unreduced state space can be
//! enumerated, and the specification has no violation.

// The product runs on itself.
#[global_allocator]
static GLOBAL: hakmem::Hakmem = hakmem::Hakmem;

use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};

use model::{Config, Invariant, Mutant, State};
use verify::explore::{explore, replay, Options};

/// Configurations small enough to explore without the reduction: 2
/// threads, 2 slots of capacity 1, ≤ 1 live block, ≤ 1 page; one with 2
/// classes and 1 SuperSlab, one with 1 class and 2 SuperSlabs (1 Live), so
/// that every kind of renaming is exercised.
fn smalls() -> [Config; 2] {
    let mut cfg = Config::tiny();
    cfg.slots = 2;
    for c in &mut cfg.classes {
        c.capacity = 1;
        c.capacity_slot0 = 1;
    }
    cfg.max_live = 1;
    let mut one_ss = cfg.clone();
    one_ss.max_superslabs = 1;
    let mut one_class = cfg;
    one_class.classes.truncate(1);
    [one_ss, one_class]
}

/// Every reachable state of `cfg`, without reduction (exact states).
fn reachable(cfg: Config) -> HashSet<State> {
    let init = State::new(cfg);
    let mut seen = HashSet::from([init.clone()]);
    let mut queue = VecDeque::from([init]);
    while let Some(s) = queue.pop_front() {
        for (_, next) in s.successors() {
            if seen.insert(next.clone()) {
                queue.push_back(next);
            }
        }
    }
    seen
}

#[test]
fn the_symmetry_reduction_is_exact_on_small_configurations() {
    for cfg in smalls() {
        reduction_is_exact(cfg);
    }
}

/// What a state shows of itself: its violations and its successors' keys.
type Behaviour = (Vec<Invariant>, BTreeSet<Vec<u8>>);

/// Soundness of the reduction: states with one canonical key violate the
/// same invariants and have successors with the same keys (the key is a
/// bisimulation), so exploring one state per key loses nothing. Exactness
/// of the explorer: it visits one state per key of the reachable set, and
/// its coverage is the unreduced coverage.
fn reduction_is_exact(cfg: Config) {
    let all = reachable(cfg.clone());
    let mut by_key: HashMap<Vec<u8>, Behaviour> = HashMap::new();
    for s in &all {
        let bad: Vec<Invariant> = s.violations().iter().map(|v| v.invariant).collect();
        let next: BTreeSet<Vec<u8>> = s
            .successors()
            .iter()
            .map(|(_, n)| n.canonical_key())
            .collect();
        match by_key.entry(s.canonical_key()) {
            Entry::Vacant(e) => {
                e.insert((bad, next));
            }
            Entry::Occupied(e) => {
                assert_eq!(e.get().0, bad, "one key, different violations");
                assert_eq!(e.get().1, next, "one key, different successors");
            }
        }
    }
    let plain = explore(
        cfg.clone(),
        &Options {
            symmetry: false,
            ..Options::default()
        },
    );
    let reduced = explore(cfg, &Options::default());
    assert!(plain.complete && reduced.complete);
    assert_eq!(plain.violations + reduced.violations, 0);
    assert_eq!(plain.states, all.len());
    assert_eq!(reduced.states, by_key.len());
    assert!(
        reduced.states * 3 < plain.states,
        "the reduction saves little: {} of {}",
        reduced.states,
        plain.states
    );
    let kinds = |o: &verify::explore::Outcome| o.coverage.keys().copied().collect::<Vec<_>>();
    assert_eq!(kinds(&plain), kinds(&reduced));
    println!(
        "{} states, {} up to symmetry; kinds {:?}",
        plain.states,
        reduced.states,
        kinds(&reduced)
    );
}

#[test]
fn a_depth_bound_gives_an_incomplete_run_with_the_same_prefix() {
    let opts = Options {
        max_depth: 8,
        ..Options::default()
    };
    let out = explore(Config::tiny(), &opts);
    assert_eq!(out.violations, 0, "{:?}", out.first);
    assert!(!out.complete);
    assert_eq!(out.depth, 8);
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
        // Shortest: BFS without the reduction finds no shorter trace.
        let plain = explore(
            cfg.clone(),
            &Options {
                symmetry: false,
                ..Options::default()
            },
        );
        let plain_len = plain.first.map(|f| f.trace.len());
        if plain_len != Some(found.trace.len()) {
            missed.push(format!(
                "{}: {} steps reduced, {plain_len:?} without the reduction",
                m.name(),
                found.trace.len()
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
