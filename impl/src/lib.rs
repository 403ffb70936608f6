//! hakmem: a general-purpose memory allocator whose concurrent protocols are
//! modelled and machine-checked. See `docs/architecture.md` for the map and
//! `docs/protocol.md` for the protocol the model specifies.

pub mod chunkmap;
pub mod config;
pub mod diag;
pub mod large;
pub mod os;
