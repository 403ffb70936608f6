//! Larson-like cross-thread churn on the system allocator.
include!("common/larson.rs");
fn main() {
    run()
}
