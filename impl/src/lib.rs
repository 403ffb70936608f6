//! hakmem: a general-purpose memory allocator whose concurrent protocols are
//! modelled and machine-checked. See `docs/architecture.md`.
