//! random_mixed on the system allocator (compare with `mixed_hakmem`).
include!("common/mixed.rs");
fn main() {
    run()
}
