//! The `hakmem` column.

#[global_allocator]
static A: hakmem::Hakmem = hakmem::Hakmem;

fn main() {
    bench::worker::main("hakmem", bench::worker::Mode::Allocator, None);
}
