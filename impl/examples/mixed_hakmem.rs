//! random_mixed on hakmem (compare with `mixed_system`).
#[global_allocator]
static GLOBAL: hakmem::Hakmem = hakmem::Hakmem;
include!("common/mixed.rs");
fn main() {
    run()
}
