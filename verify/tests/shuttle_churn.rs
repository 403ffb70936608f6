//! shuttle on a larger scenario (`verify::scenarios::churn`): 4 heaps, 40
//! operations each over three classes, remote frees through a mailbox, one
//! heap exiting half-way, a late heap freeing everything; random and PCT
//! schedulers with fixed seeds. Every schedule ends with the snapshot
//! invariants and the live-set checks.

use verify::backends::shuttle::ShuttleBackend;
use verify::scenarios::{churn, ShuttleSched};

#[test]
fn churn_random() {
    verify::shuttle_random(|| churn::<ShuttleBackend, ShuttleSched>(4, 40), 5000);
}

#[test]
fn churn_pct() {
    verify::shuttle_pct(|| churn::<ShuttleBackend, ShuttleSched>(4, 40), 3, 5000);
}

#[test]
fn churn_three_threads_long() {
    verify::shuttle_random(|| churn::<ShuttleBackend, ShuttleSched>(3, 80), 300);
}
