//! The hktrace allocation-trace format (`../shared/docs/trace-format.md`,
//! notes in `docs/traces.md`): reading, writing, converting, measuring and
//! recording the sequence of requests a program makes to its allocator.
//!
//! # Map
//! - [`event`]: the vocabulary, [`Event`] and [`Record`];
//! - [`text`]: hktrace v1 text, [`TextReader`] and [`TextWriter`];
//! - [`binary`]: the compact binary form, [`BinaryReader`] and [`BinaryWriter`];
//! - [`validate`]: the semantic rules both readers apply, [`Validator`];
//! - [`error`]: [`TraceError`] (`path:LINE: reason`);
//! - [`compress`]: gzip and zstd, detected from the first bytes;
//! - [`file`](mod@file): [`TraceReader`] and [`TraceWriter`] for files of any form;
//! - [`stats`]: the figures of a trace;
//! - [`synth`]: deterministic synthetic traces;
//! - [`record`]: [`RecordingAlloc`], a `GlobalAlloc` wrapper that records;
//! - [`replay`]: replaying with real threads against an allocator;
//! - [`check`]: replaying on hakmem in lockstep with the model.
//!
//! Architecture invariant: readers never panic on input and keep no memory
//! proportional to the trace except the validator's live set (and its set of
//! used ids, one interval per gap).

pub mod binary;
pub mod check;
pub mod compress;
pub mod error;
pub mod event;
pub mod file;
pub mod record;
pub mod replay;
pub mod stats;
pub mod synth;
pub mod text;
pub mod validate;

pub use binary::{BinaryReader, BinaryWriter};
pub use error::{Reason, TraceError};
pub use event::{BlockId, Event, EventKind, Record, Tid};
pub use file::{Format, TraceReader, TraceWriter};
pub use record::RecordingAlloc;
pub use text::{TextReader, TextWriter};
pub use validate::{LiveBlock, Validator};
