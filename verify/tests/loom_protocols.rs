//! loom, exhaustive up to a preemption bound set in code, on each protocol
//! of issue 4 item 1, with the real protocol code (`LoomBackend`). Every
//! scenario ends with the snapshot invariants and the live-set checks
//! (`verify::scenarios::check_final`).

use verify::backends::loom::{reset_links, LoomBackend};
use verify::scenarios::{self as sc, LoomSched};

/// Runs `f` under loom (preemption bound 2; 3 with `VERIFY_DEEP=1`).
fn model(f: fn()) {
    verify::loom_check(f);
}

macro_rules! loom_test {
    ($name:ident) => {
        #[test]
        fn $name() {
            model(|| {
                reset_links();
                sc::$name::<LoomBackend, LoomSched>()
            });
        }
    };
}

loom_test!(remote_free_vs_drain);
loom_test!(two_remote_frees);
loom_test!(remote_free_vs_empty_reuse);
loom_test!(remote_free_vs_owner_exit);
loom_test!(abandon_reclaim);
loom_test!(scan_vs_claim);
loom_test!(stage1_exhaustion);
loom_test!(flush_vs_remote);
loom_test!(release_vs_acquire);
loom_test!(arena_put_take);
loom_test!(page_full_vs_remote);
loom_test!(full_hint_vs_remote);
loom_test!(release_with_unflushed_page);

/// The ABA of a one-by-one abandoned-list pop needs three preemptions (see
/// `scenarios::reclaim_aba`): bound 3 (4 with `VERIFY_DEEP=1`).
#[test]
fn reclaim_aba() {
    verify::loom_check_at(
        || {
            reset_links();
            sc::reclaim_aba::<LoomBackend, LoomSched>()
        },
        verify::loom_bound_plus(1),
    );
}
