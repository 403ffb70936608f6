//! The floor: the random_mixed loop on pre-allocated slots (no allocator
//! calls in the timed loop), i.e. the cost of the harness itself.
//! Its global allocator only serves the harness's own set-up.
#[global_allocator]
static A: std::alloc::System = std::alloc::System;

fn main() {
    bench::worker::main("noop", bench::worker::Mode::Floor, None);
}
