//! hakmem: a general-purpose memory allocator whose concurrent protocols are
//! modelled and machine-checked. See `docs/architecture.md` for the map and
//! `docs/protocol.md` for the protocol the model specifies.
//!
//! Layers, bottom up (docs/architecture.md's table, checked by
//! `tests/layers.rs`): [`chunkmap`] → constants ([`size_class`]) → events
//! and counters ([`observe`], [`stats`]) → [`sync`] → [`os`] → [`diag`] →
//! [`config`] → [`large`] → [`superslab`] → [`page`] → [`stage1`] →
//! [`instance`] (pool, arena, stages) → [`heap`] (fast paths, remote frees,
//! abandon) → [`snapshot`] → `tls` glue → [`Hakmem`] (`GlobalAlloc`) →
//! [`residency`] → [`libc_api`] (the C API's semantics, for
//! the `hakmem-capi` shim). All protocol code is generic over
//! [`sync::Backend`]; production uses [`sync::StdBackend`].

pub mod chunkmap;
pub mod config;
pub mod diag;
mod global;
pub mod heap;
pub mod instance;
pub mod large;
pub mod libc_api;
pub mod observe;
pub mod os;
pub mod page;
mod pool;
pub mod residency;
pub mod size_class;
pub mod snapshot;
pub mod stage1;
pub mod stats;
pub mod superslab;
pub mod sync;
mod tls;

pub use global::{stats, Hakmem};
pub use instance::{HeapId, HeapRef, Instance, InstanceConfig};
pub use observe::{Event, FlushReason, Stage};
pub use residency::{residency, Residency};
pub use snapshot::Snapshot;
pub use stats::Stats;
pub use sync::{Backend, Mutant, StdBackend};

#[cfg(test)]
mod protocol_tests;

/// The unit tests run on hakmem itself (the product runs on itself).
#[cfg(test)]
#[global_allocator]
static TEST_ALLOCATOR: Hakmem = Hakmem;
