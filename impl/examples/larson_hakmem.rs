//! Larson-like cross-thread churn on hakmem (compare with `larson_system`).
#[global_allocator]
static GLOBAL: hakmem::Hakmem = hakmem::Hakmem;
include!("common/larson.rs");
fn main() {
    run()
}
