//! The `jemalloc` column: the `tikv-jemallocator` crate (jemalloc built from source).
#[global_allocator]
static A: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() {
    bench::worker::main("jemalloc", bench::worker::Mode::Allocator, None);
}
