//! The benchmark harness of issue 7: hakmem side by side with glibc,
//! mimalloc and jemalloc.
//!
//! One benchmark source ([`workloads`]) is compiled into one binary per
//! allocator (`src/bin/bench-*.rs`, each differing only in its
//! `#[global_allocator]`); the driver (`src/main.rs`, `cargo run --release
//! -p bench`) builds them, runs every workload as a separate process per
//! allocator in alternating rounds, and writes `docs/benchmarks.md` and
//! `docs/benchmarks.svg`. [`preload`] runs C and C++ programs under
//! `LD_PRELOAD` of hakmem and the Debian peers (`bench preload`).

pub mod callgrind;
pub mod chart;
pub mod classes;
pub mod machine;
pub mod preload;
pub mod report;
pub mod rng;
pub mod runner;
pub mod stats;
pub mod suite;
pub mod worker;
pub mod workloads;
