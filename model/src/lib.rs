//! The hakmem model: a pure, deterministic, sequential state machine of the
//! allocator's abstract state. See `docs/protocol.md` (the contract) and
//! `docs/model.md` (this crate's reading of it).
//!
//! - [`State`] is the abstract state, [`Step`] one atomic protocol step;
//!   [`State::apply`] checks a step's pre-condition and applies it, or
//!   rejects it with a reason ([`Rejected`]).
//! - [`State::enabled_steps`] enumerates every step (every choice) allowed
//!   in a state, for the explorer and the generators.
//! - [`State::check_invariants`] checks the ten named [`Invariant`]s.
//! - [`Mutant`] selects a deliberately wrong variant at run time.
//! - [`State::canonical_key`] encodes a state up to the renamings of ids
//!   the protocol cannot tell apart (symmetry reduction for the explorer).
#![forbid(unsafe_code)]

mod apply;
mod config;
mod enabled;
mod ids;
mod invariant;
mod invariants;
mod mutant;
mod state;
mod step;
mod symmetry;

pub use apply::Rejected;
pub use config::{
    ClassSpec, Config, HEADER_BYTES, PRODUCTION_CLASS_SIZES, PRODUCTION_SLOTS, SLOT_BYTES,
};
pub use ids::{BlockId, ClassId, NodeId, PageId, SlotIdx, SsId, ThreadId};
pub use invariant::{Invariant, Violation};
pub use mutant::Mutant;
pub use state::{Heap, HeapClass, Slot, SlotState, SsStatus, Stage1Entry, State, SuperSlab};
pub use step::{FlushReason, Stage, Stage1Source, Step};
