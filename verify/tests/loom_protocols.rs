//! loom, exhaustive up to a preemption bound set in code, on each protocol
//! of issue 4 item 1, with the real protocol code (`LoomBackend`). Every
//! scenario ends with the snapshot invariants and the live-set checks
//! (`verify::scenarios::check_final`). Each test prints its number of
//! executions and its time (`--nocapture`) and fails if loom explored
//! fewer than a floor set per scenario (about a quarter of the count
//! measured at bound 3, docs/verification.md): a scenario whose threads
//! stop racing (e.g. a spawn that loom never preempts) explores a handful.

use verify::backends::loom::{reset_links, LoomBackend};
use verify::scenarios::{self as sc, LoomSched};

macro_rules! loom_test {
    ($name:ident, $floor:expr) => {
        #[test]
        fn $name() {
            let n = verify::loom_check_at(
                || {
                    reset_links();
                    sc::$name::<LoomBackend, LoomSched>()
                },
                verify::loom_bound_for(stringify!($name)),
            );
            assert!(
                n >= $floor,
                "{}: only {n} executions (floor {})",
                stringify!($name),
                $floor
            );
        }
    };
}

loom_test!(remote_free_vs_drain, 500);
loom_test!(two_remote_frees, 300);
loom_test!(remote_free_vs_empty_reuse, 200);
loom_test!(remote_free_vs_owner_exit, 1000);
loom_test!(abandon_reclaim, 400);
loom_test!(scan_vs_claim, 2000);
loom_test!(stage1_exhaustion, 3000);
loom_test!(flush_vs_remote, 30);
loom_test!(release_vs_acquire, 150);
loom_test!(release_vs_page_empty, 400);
loom_test!(acquire_vs_page_empty, 250);
loom_test!(arena_put_take, 350);
loom_test!(page_full_vs_remote, 60);
loom_test!(full_hint_vs_remote, 50);
// Sequential: one execution.
loom_test!(release_with_unflushed_page, 1);

// The three-way release/acquire/page-empty race: bound 2 at both
// settings (`loom_bound_for`).
loom_test!(release_acquire_empty, 500);

// The ABA of a one-by-one abandoned-list pop needs three preemptions (see
// `scenarios::reclaim_aba`): the default bound 3 is its minimum.
loom_test!(reclaim_aba, 1500);
