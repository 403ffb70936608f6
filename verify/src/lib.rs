//! Checks of hakmem: the model explorer, model mutants, loom and shuttle on the
//! real protocol code, and refinement of the implementation against the model.

pub mod backends;
pub mod explore;
pub mod lockstep;
pub mod scenarios;

/// The preemption bound of the loom checks: 3, or 4 with `VERIFY_DEEP=1`.
pub fn loom_bound() -> usize {
    if deep() {
        4
    } else {
        3
    }
}

/// Whether `VERIFY_DEEP=1` asks for the deeper settings.
pub fn deep() -> bool {
    std::env::var("VERIFY_DEEP").is_ok_and(|v| v == "1")
}

/// The preemption bound of loom scenario `name`: [`loom_bound`], except
/// `release_acquire_empty` (three threads, one of them releasing under the
/// pool lock while the others spin on it: bound 2 at both settings, as
/// bound 3 did not finish in 15 minutes; each of its two-thread races has
/// its own scenario at the full bound).
pub fn loom_bound_for(name: &str) -> usize {
    match name {
        "release_acquire_empty" => 2,
        _ => loom_bound(),
    }
}

/// Runs `f` under loom with preemption bound `bound` (exhaustive up to that
/// bound); prints the number of executions and the time on stderr and
/// returns the number of executions.
pub fn loom_check_at(f: fn(), bound: usize) -> usize {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(bound);
    b.max_branches = 100_000;
    let start = std::time::Instant::now();
    let n = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let n2 = n.clone();
    b.check(move || {
        n2.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        f()
    });
    let n = n.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!(
        "loom: {n} executions, preemption bound {bound}, {:.2?}",
        start.elapsed()
    );
    n
}

/// Runs `f` under shuttle's PCT scheduler (seeded: reproducible) for
/// `iterations` schedules of bug depth `depth` (×10 with `VERIFY_DEEP=1`).
pub fn shuttle_pct(f: fn(), depth: usize, iterations: usize) {
    let n = if deep() { iterations * 10 } else { iterations };
    let s = shuttle::scheduler::PctScheduler::new_from_seed(0x6861_6b6d, depth, n);
    shuttle::Runner::new(s, Default::default()).run(f);
}

/// Runs `f` under shuttle's random scheduler (seeded) for `iterations`
/// schedules (×10 with `VERIFY_DEEP=1`).
pub fn shuttle_random(f: fn(), iterations: usize) {
    let n = if deep() { iterations * 10 } else { iterations };
    let s = shuttle::scheduler::RandomScheduler::new_from_seed(0x6861_6b6d, n);
    shuttle::Runner::new(s, Default::default()).run(f);
}
