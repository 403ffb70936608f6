//! Backends of `impl`'s protocol code for the checkers.

pub mod record;
