//! proptest state-machine tests of the specification: random sequences of
//! enabled steps (every choice), all invariants checked after each step, at
//! tiny, medium and production scale.

mod common;

// The product runs on itself: the test harness allocates through hakmem.
#[global_allocator]
static GLOBAL: hakmem::Hakmem = hakmem::Hakmem;

use model::Config;

fn assert_holds(cfg: Config, cases: u32, len: usize) {
    if let Err((msg, steps)) = common::check(cfg, cases, len, 7) {
        let trace: Vec<String> = steps.iter().map(|s| s.to_string()).collect();
        panic!(
            "{msg}\nminimal sequence ({} steps):\n{}",
            steps.len(),
            trace.join("\n")
        );
    }
}

#[test]
fn tiny_configuration_keeps_every_invariant() {
    assert_holds(common::tiny(), 400, 80);
}

#[test]
fn medium_configuration_keeps_every_invariant() {
    assert_holds(Config::medium(), 40, 100);
}

#[test]
fn production_configuration_keeps_every_invariant() {
    let mut cfg = Config::production();
    // Fewer SuperSlabs keep the per-step enumeration small; the geometry
    // (32 slots, 32 classes, slot-0 capacities) is production's.
    cfg.max_superslabs = 3;
    cfg.threads = 3;
    assert_holds(cfg, 24, 60);
}
