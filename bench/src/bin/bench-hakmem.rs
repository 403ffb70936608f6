//! The `hakmem` column.

// TEMPORARY: `hakmem::Hakmem` has not landed on the `bench` branch yet, so
// glibc stands in for it while the harness is developed, and the driver
// flags the column as a stand-in in every table. When merging, replace the
// two items below with
//     #[global_allocator]
//     static A: hakmem::Hakmem = hakmem::Hakmem;
// and pass `None` instead of `STAND_IN`.
#[global_allocator]
static A: std::alloc::System = std::alloc::System;
const STAND_IN: Option<&str> = Some("glibc malloc (std::alloc::System) stands in for hakmem");

fn main() {
    bench::worker::main("hakmem", bench::worker::Mode::Allocator, STAND_IN);
}
