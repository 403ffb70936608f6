//! The hakmem model: a pure, deterministic, sequential state machine of the
//! allocator's abstract state. See `docs/protocol.md`.
#![forbid(unsafe_code)]
