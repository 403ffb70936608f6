//! Every mutant is caught by the proptest suite: the state-machine test
//! with a fixed seed fails, and the (shrunk) failure names the invariant the
//! mutant is expected to break.

mod common;

// The product runs on itself: the test harness allocates through hakmem.
#[global_allocator]
static GLOBAL: hakmem::Hakmem = hakmem::Hakmem;

use model::Mutant;

#[test]
fn the_specification_passes_with_the_mutant_seed() {
    assert!(common::check(common::tiny(), 300, 60, 3).is_ok());
}

#[test]
fn proptest_catches_every_mutant() {
    let mut missed = Vec::new();
    for m in Mutant::wrong() {
        let expected = m.breaks();
        assert!(!expected.is_empty(), "{} names no invariant", m.name());
        match common::check(common::tiny().with_mutant(m), 2000, 60, 3) {
            Ok(()) => missed.push(format!("{}: not caught", m.name())),
            Err((msg, _)) if !expected.iter().any(|i| common::names(&msg, *i)) => missed.push(
                format!("{}: caught, but not as {expected:?}: {msg}", m.name()),
            ),
            Err((msg, _)) => println!("{:<28} caught: {msg}", m.name()),
        }
    }
    assert!(missed.is_empty(), "{}", missed.join("\n"));
}
