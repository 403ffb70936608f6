//! Errors of trace reading: [`TraceError`] names the file, the line and the
//! [`Reason`], and prints as `path:LINE: reason`.
//!
//! Line numbers are those of the text form, 1-based, the header being line 1.
//! The binary form numbers its records the same way (header = 1, then one per
//! event or comment), so an error in a converted file points at the same line
//! as in its text original.

use crate::event::{BlockId, EventKind, Tid};
use std::fmt;
use std::io;

/// Why a trace was rejected.
#[derive(Debug)]
#[non_exhaustive]
pub enum Reason {
    /// The file is empty, or its first line is not a header at all.
    MissingHeader,
    /// The first line starts like a header but is not exactly `hktrace 1`.
    UnknownHeader(String),
    /// A line starts with a letter that is not `a`, `z`, `r`, `f` or `#`.
    UnknownLetter(String),
    /// A line has the wrong number of space-separated fields.
    FieldCount {
        /// The line's kind.
        kind: EventKind,
        /// Fields it must have, letter included.
        expected: usize,
        /// Fields it has.
        found: usize,
    },
    /// A field is not a decimal number (empty, sign, other characters).
    BadNumber {
        /// The field's name (`tid`, `id`, `size`, …).
        field: &'static str,
        /// The field's text.
        text: String,
    },
    /// A field is a decimal number that does not fit in 64 bits.
    Overflow {
        /// The field's name.
        field: &'static str,
        /// The field's text.
        text: String,
    },
    /// A number is written with a leading zero (only `0` itself may start
    /// with `0`): non-canonical, rejected so that every accepted file is
    /// canonical (see `docs/traces.md`).
    LeadingZero {
        /// The field's name.
        field: &'static str,
        /// The field's text.
        text: String,
    },
    /// `align` is not a power of two.
    AlignNotPowerOfTwo(u64),
    /// Block id 0 (ids start at 1).
    ZeroId,
    /// A block id that this trace has already used.
    ReusedId(BlockId),
    /// A free or realloc of an id that is not live.
    NotLive {
        /// `Free` or `Realloc`.
        kind: EventKind,
        /// The id named.
        id: BlockId,
        /// True when the id was never allocated; false when it is dead already.
        never_allocated: bool,
    },
    /// A thread number larger than the next unused one.
    TidSkipsAhead {
        /// The tid on the line.
        tid: Tid,
        /// The next unused thread number.
        next: Tid,
    },
    /// An empty line.
    EmptyLine,
    /// A space where none may be: two spaces in a row, or a leading or
    /// trailing space, or a tab.
    Whitespace,
    /// A `\r` before the newline (CRLF line endings are not hktrace v1).
    CarriageReturn,
    /// The last line has no terminating newline (a truncated file?).
    MissingNewline,
    /// A line longer than [`crate::event::MAX_LINE`] bytes.
    LineTooLong,
    /// Binary form: the file is not an hktrace binary file.
    BadMagic,
    /// Binary form: an unsupported version.
    UnsupportedVersion(u8),
    /// Binary form: a record tag that means nothing.
    BadTag(u8),
    /// Binary form: an alignment exponent of 64 or more.
    BadAlignLog(u8),
    /// Binary form: a varint longer than 64 bits.
    BadVarint,
    /// Binary form: the file ends inside a record or before the end record.
    Truncated,
    /// Binary form: bytes after the end record.
    TrailingData,
    /// Binary form: the end record's count disagrees with the records read.
    CountMismatch {
        /// Records the end record announces.
        announced: u64,
        /// Records read.
        read: u64,
    },
    /// A comment that contains a newline (writers) or is too long (binary).
    BadComment,
    /// Reading (or decompressing) failed.
    Io(io::Error),
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::MissingHeader => write!(f, "missing header: the first line must be `hktrace 1`"),
            Reason::UnknownHeader(h) => write!(f, "unknown header `{h}` (expected `hktrace 1`)"),
            Reason::UnknownLetter(l) => write!(f, "unknown event letter `{l}`"),
            Reason::FieldCount {
                kind,
                expected,
                found,
            } => write!(
                f,
                "wrong field count: `{}` takes {expected} fields, found {found}",
                kind.letter() as char
            ),
            Reason::BadNumber { field, text } => {
                write!(f, "{field}: `{text}` is not an unsigned decimal number")
            }
            Reason::Overflow { field, text } => write!(f, "{field}: `{text}` overflows 64 bits"),
            Reason::LeadingZero { field, text } => {
                write!(f, "{field}: `{text}` has a leading zero")
            }
            Reason::AlignNotPowerOfTwo(a) => write!(f, "align {a} is not a power of two"),
            Reason::ZeroId => write!(f, "id 0 is not a block id (ids start at 1)"),
            Reason::ReusedId(id) => write!(f, "reused id {id}"),
            Reason::NotLive {
                kind,
                id,
                never_allocated,
            } => {
                let what = match kind {
                    EventKind::Realloc => "realloc",
                    _ => "free",
                };
                let why = if *never_allocated {
                    "never allocated"
                } else {
                    "already dead"
                };
                write!(f, "{what} of id {id}, which is not live ({why})")
            }
            Reason::TidSkipsAhead { tid, next } => {
                write!(f, "tid {tid} skips ahead of the next unused thread number {next}")
            }
            Reason::EmptyLine => write!(f, "empty line"),
            Reason::Whitespace => write!(
                f,
                "fields must be separated by exactly one space (no leading, trailing or double spaces, no tabs)"
            ),
            Reason::CarriageReturn => write!(f, "carriage return before the newline (CRLF line endings are not allowed)"),
            Reason::MissingNewline => write!(f, "last line has no newline (truncated file?)"),
            Reason::LineTooLong => {
                write!(f, "line longer than {} bytes", crate::event::MAX_LINE)
            }
            Reason::BadMagic => write!(f, "not an hktrace file (bad magic bytes)"),
            Reason::UnsupportedVersion(v) => write!(f, "unsupported binary version {v}"),
            Reason::BadTag(t) => write!(f, "bad record tag 0x{t:02x}"),
            Reason::BadAlignLog(l) => write!(f, "alignment exponent {l} is not below 64"),
            Reason::BadVarint => write!(f, "varint longer than 64 bits"),
            Reason::Truncated => write!(f, "truncated binary trace (no end record)"),
            Reason::TrailingData => write!(f, "data after the end record"),
            Reason::CountMismatch { announced, read } => write!(
                f,
                "end record announces {announced} records, {read} were read"
            ),
            Reason::BadComment => write!(f, "comment contains a newline or is too long"),
            Reason::Io(e) => write!(f, "read error: {e}"),
        }
    }
}

/// A rejected trace: where and why.
#[derive(Debug)]
pub struct TraceError {
    /// The file's name as given to the reader (`-` or a label for streams).
    pub path: String,
    /// 1-based line (or binary record) number; `None` when the error is not
    /// tied to a line (the file could not be opened).
    pub line: Option<u64>,
    /// What is wrong.
    pub reason: Reason,
}

impl TraceError {
    /// An error at `line` of `path`.
    pub fn new(path: &str, line: u64, reason: Reason) -> TraceError {
        TraceError {
            path: path.to_owned(),
            line: Some(line),
            reason,
        }
    }

    /// An error about `path` as a whole (opening it, for example).
    pub fn whole_file(path: &str, reason: Reason) -> TraceError {
        TraceError {
            path: path.to_owned(),
            line: None,
            reason,
        }
    }
}

impl fmt::Display for TraceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.path, line, self.reason),
            None => write!(f, "{}: {}", self.path, self.reason),
        }
    }
}

impl std::error::Error for TraceError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.reason {
            Reason::Io(e) => Some(e),
            _ => None,
        }
    }
}
