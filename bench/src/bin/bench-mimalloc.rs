//! The `mimalloc` column: the `mimalloc` crate (mimalloc built from source).
#[global_allocator]
static A: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    bench::worker::main("mimalloc", bench::worker::Mode::Allocator, None);
}
