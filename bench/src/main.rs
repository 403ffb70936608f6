//! The driver (placeholder while the library comes together).
fn main() {}
