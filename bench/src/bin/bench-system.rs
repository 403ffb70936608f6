//! The `system` column: glibc malloc through `std::alloc::System`.
#[global_allocator]
static A: std::alloc::System = std::alloc::System;

fn main() {
    bench::worker::main("system", bench::worker::Mode::Allocator, None);
}
