//! The hktrace binary form (`.hkb`): the same records as the text form,
//! varint-encoded with delta-coded ids and tids, converting both ways without
//! loss (comments included).
//!
//! # Layout (version 1)
//! ```text
//! file   = magic version record* end
//! magic  = 00 68 6b 62                 ("\0hkb"; text can never start with NUL)
//! version= 01
//! record = tag fields
//! tag    = kind (bits 0-2) | SAME_TID (bit 3) | NEXT_ID (bit 4) | SAME_ALIGN (bit 5)
//!          bits 6-7 are zero; flags a kind does not use are zero
//! kind   = 0 a | 1 z | 2 r | 3 f | 4 comment | 7 end
//! a, z   = [tid]  [id∆]          size [alog]
//! r      = [tid]  old∆   [id∆]   size [alog]
//! f      = [tid]  old∆
//! comment= len bytes                  (the bytes after '#', no newline)
//! end    = count                      (records before it, events + comments)
//! ```
//! All numbers are unsigned LEB128 varints except `alog`, one byte
//! (log2 of the alignment, < 64). With `last` = the id of the last block
//! created (0 at the start), `prev_tid` = the tid of the previous event (0 at
//! the start) and `prev_align` the alignment of the previous a/z/r (16 at the
//! start):
//! - `[tid]` is present unless SAME_TID (tid = `prev_tid`);
//! - `[id∆]` is present unless NEXT_ID (new id = `last + 1`), and is
//!   `zigzag(id − (last + 1))`;
//! - `old∆` = `zigzag(last − old_id)`: recently created blocks die first, so
//!   it is small;
//! - `[alog]` is present unless SAME_ALIGN.
//!
//! Subtractions wrap modulo 2⁶⁴ and zigzag maps the result read as `i64`, so
//! every `u64` is representable. The end record makes truncation detectable.
//! Records are numbered like text lines (header = 1), so errors point at the
//! same line number in both forms.

use crate::error::{Reason, TraceError};
use crate::event::MAX_LINE;
use crate::event::{Event, Record};
use crate::validate::{LiveBlock, Validator};
use std::io::{self, Read, Write};

/// The first four bytes of a binary trace.
pub const MAGIC: [u8; 4] = [0x00, b'h', b'k', b'b'];
/// The binary format version this module reads and writes.
pub const VERSION: u8 = 1;

const KIND_MASK: u8 = 0b111;
const SAME_TID: u8 = 1 << 3;
const NEXT_ID: u8 = 1 << 4;
const SAME_ALIGN: u8 = 1 << 5;
const K_ALLOC: u8 = 0;
const K_ZEROED: u8 = 1;
const K_REALLOC: u8 = 2;
const K_FREE: u8 = 3;
const K_COMMENT: u8 = 4;
const K_END: u8 = 7;

/// The longest encoded event: tag, five 10-byte varints, an align byte.
const MAX_EVENT_BYTES: usize = 1 + 5 * 10 + 1;

#[inline]
fn zigzag(d: u64) -> u64 {
    let d = d as i64;
    ((d << 1) ^ (d >> 63)) as u64
}

#[inline]
fn unzigzag(z: u64) -> u64 {
    (z >> 1) ^ (z & 1).wrapping_neg()
}

/// Appends `v` as LEB128 to `out` at `pos`; returns the new position.
#[inline]
fn put_varint(out: &mut [u8], mut pos: usize, mut v: u64) -> usize {
    while v >= 0x80 {
        out[pos] = (v as u8) | 0x80;
        v >>= 7;
        pos += 1;
    }
    out[pos] = v as u8;
    pos + 1
}

/// The delta state both directions share.
#[derive(Clone, Copy, Debug)]
struct Deltas {
    last: u64,
    prev_tid: u64,
    prev_align: u64,
}

impl Default for Deltas {
    fn default() -> Deltas {
        Deltas {
            last: 0,
            prev_tid: 0,
            prev_align: 16,
        }
    }
}

/// A writer of the binary form. Call [`BinaryWriter::finish`]: without its
/// end record the file reads as truncated.
pub struct BinaryWriter<W: Write> {
    out: W,
    d: Deltas,
    count: u64,
}

impl<W: Write> BinaryWriter<W> {
    /// Writes the magic and version to `out`.
    pub fn new(mut out: W) -> io::Result<BinaryWriter<W>> {
        out.write_all(&MAGIC)?;
        out.write_all(&[VERSION])?;
        Ok(BinaryWriter {
            out,
            d: Deltas::default(),
            count: 0,
        })
    }

    /// Encodes one event. Alignments must be powers of two (as in any valid
    /// trace); others are refused with `InvalidInput`.
    pub fn write_event(&mut self, ev: &Event) -> io::Result<()> {
        let mut b = [0u8; MAX_EVENT_BYTES];
        let (kind, new, old, layout) = match *ev {
            Event::Alloc {
                id, size, align, ..
            } => (K_ALLOC, Some(id), None, Some((size, align))),
            Event::Zeroed {
                id, size, align, ..
            } => (K_ZEROED, Some(id), None, Some((size, align))),
            Event::Realloc {
                old_id,
                new_id,
                size,
                align,
                ..
            } => (K_REALLOC, Some(new_id), Some(old_id), Some((size, align))),
            Event::Free { id, .. } => (K_FREE, None, Some(id), None),
        };
        if let Some((_, align)) = layout {
            if !align.is_power_of_two() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "alignment is not a power of two",
                ));
            }
        }
        let tid = ev.tid();
        let mut tag = kind;
        let mut pos = 1;
        if tid == self.d.prev_tid {
            tag |= SAME_TID;
        } else {
            pos = put_varint(&mut b, pos, tid);
        }
        if let Some(old) = old {
            pos = put_varint(&mut b, pos, zigzag(self.d.last.wrapping_sub(old)));
        }
        if let Some(new) = new {
            let expect = self.d.last.wrapping_add(1);
            if new == expect {
                tag |= NEXT_ID;
            } else {
                pos = put_varint(&mut b, pos, zigzag(new.wrapping_sub(expect)));
            }
            self.d.last = new;
        }
        if let Some((size, align)) = layout {
            pos = put_varint(&mut b, pos, size);
            if align == self.d.prev_align {
                tag |= SAME_ALIGN;
            } else {
                b[pos] = align.trailing_zeros() as u8;
                pos += 1;
            }
            self.d.prev_align = align;
        }
        self.d.prev_tid = tid;
        b[0] = tag;
        self.count += 1;
        self.out.write_all(&b[..pos])
    }

    /// Encodes a comment (the bytes after `#`; no newline, no trailing `\r`).
    pub fn write_comment(&mut self, text: &[u8]) -> io::Result<()> {
        if text.contains(&b'\n') || text.len() + 1 > MAX_LINE || text.last() == Some(&b'\r') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a comment may not contain a newline, end with \\r, or exceed the line limit",
            ));
        }
        let mut b = [0u8; 11];
        b[0] = K_COMMENT;
        let pos = put_varint(&mut b, 1, text.len() as u64);
        self.out.write_all(&b[..pos])?;
        self.out.write_all(text)?;
        self.count += 1;
        Ok(())
    }

    /// Encodes an event or a comment.
    pub fn write_record(&mut self, rec: &Record) -> io::Result<()> {
        match rec {
            Record::Event(ev) => self.write_event(ev),
            Record::Comment(c) => self.write_comment(c),
        }
    }

    /// Writes the end record, flushes, and returns the underlying writer.
    pub fn finish(mut self) -> io::Result<W> {
        let mut b = [0u8; 11];
        b[0] = K_END;
        let pos = put_varint(&mut b, 1, self.count);
        self.out.write_all(&b[..pos])?;
        self.out.flush()?;
        Ok(self.out)
    }
}

/// Read buffer size of [`BinaryReader`].
const BUF: usize = 64 << 10;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    Header,
    Body,
    Done,
}

/// A streaming, validating reader of the binary form; the same interface as
/// [`crate::text::TextReader`].
pub struct BinaryReader<R> {
    inner: R,
    name: String,
    buf: Box<[u8]>,
    pos: usize,
    end: usize,
    line: u64,
    state: State,
    d: Deltas,
    validator: Validator,
    last_freed: Option<LiveBlock>,
}

impl<R: Read> BinaryReader<R> {
    /// A reader of `inner`, whose errors name the file `name`.
    pub fn new(inner: R, name: impl Into<String>) -> BinaryReader<R> {
        BinaryReader {
            inner,
            name: name.into(),
            buf: vec![0u8; BUF].into_boxed_slice(),
            pos: 0,
            end: 0,
            line: 0,
            state: State::Header,
            d: Deltas::default(),
            validator: Validator::new(),
            last_freed: None,
        }
    }

    /// The number of the last record read (the header is 1, as in text).
    pub fn line(&self) -> u64 {
        self.line
    }

    /// The file name used in errors.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The validator's state: live blocks, threads seen.
    pub fn validator(&self) -> &Validator {
        &self.validator
    }

    /// The block ended by the last event returned (`f`, or `r`'s old block).
    pub fn last_freed(&self) -> Option<LiveBlock> {
        self.last_freed
    }

    fn fail(&mut self, reason: Reason) -> TraceError {
        self.state = State::Done;
        TraceError::new(&self.name, self.line, reason)
    }

    /// Refills the buffer; `Ok(false)` at end of input.
    #[cold]
    fn refill(&mut self) -> Result<bool, Reason> {
        self.buf.copy_within(self.pos..self.end, 0);
        self.end -= self.pos;
        self.pos = 0;
        loop {
            match self.inner.read(&mut self.buf[self.end..]) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    self.end += n;
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Reason::Io(e)),
            }
        }
    }

    #[inline]
    fn byte(&mut self) -> Result<u8, Reason> {
        if self.pos == self.end && !self.refill()? {
            return Err(Reason::Truncated);
        }
        let b = self.buf[self.pos];
        self.pos += 1;
        Ok(b)
    }

    #[inline]
    fn varint(&mut self) -> Result<u64, Reason> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let b = self.byte()?;
            if i == 9 && b > 1 {
                return Err(Reason::BadVarint);
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(Reason::BadVarint)
    }

    /// Reads the magic and the version now (otherwise read with the first
    /// record).
    pub fn read_header(&mut self) -> Result<(), TraceError> {
        if self.state != State::Header {
            return Ok(());
        }
        self.line = 1;
        let mut magic = [0u8; 5];
        for m in magic.iter_mut() {
            match self.byte() {
                Ok(b) => *m = b,
                Err(Reason::Truncated) => return Err(self.fail(Reason::BadMagic)),
                Err(r) => return Err(self.fail(r)),
            }
        }
        if magic[..4] != MAGIC {
            return Err(self.fail(Reason::BadMagic));
        }
        if magic[4] != VERSION {
            return Err(self.fail(Reason::UnsupportedVersion(magic[4])));
        }
        self.state = State::Body;
        Ok(())
    }

    /// Decodes one record; `Ok(None)` after the end record.
    fn decode(&mut self) -> Result<Option<Record>, Reason> {
        let tag = self.byte()?;
        let kind = tag & KIND_MASK;
        let flags = tag & !KIND_MASK;
        let allowed = match kind {
            K_ALLOC | K_ZEROED | K_REALLOC => SAME_TID | NEXT_ID | SAME_ALIGN,
            K_FREE => SAME_TID,
            K_COMMENT | K_END => 0,
            _ => return Err(Reason::BadTag(tag)),
        };
        if flags & !allowed != 0 {
            return Err(Reason::BadTag(tag));
        }
        match kind {
            K_COMMENT => {
                let len = self.varint()?;
                if len >= MAX_LINE as u64 {
                    return Err(Reason::BadComment);
                }
                let mut text = Vec::with_capacity(len as usize);
                for _ in 0..len {
                    text.push(self.byte()?);
                }
                if text.contains(&b'\n') || text.last() == Some(&b'\r') {
                    return Err(Reason::BadComment);
                }
                return Ok(Some(Record::Comment(text)));
            }
            K_END => {
                let announced = self.varint()?;
                let read = self.line - 2;
                if announced != read {
                    return Err(Reason::CountMismatch { announced, read });
                }
                if self.pos < self.end || self.refill()? {
                    return Err(Reason::TrailingData);
                }
                return Ok(None);
            }
            _ => {}
        }
        let tid = if flags & SAME_TID != 0 {
            self.d.prev_tid
        } else {
            self.varint()?
        };
        let old = if kind == K_REALLOC || kind == K_FREE {
            Some(self.d.last.wrapping_sub(unzigzag(self.varint()?)))
        } else {
            None
        };
        let new = if kind == K_FREE {
            None
        } else {
            let expect = self.d.last.wrapping_add(1);
            let id = if flags & NEXT_ID != 0 {
                expect
            } else {
                expect.wrapping_add(unzigzag(self.varint()?))
            };
            Some(id)
        };
        let layout = if kind == K_FREE {
            None
        } else {
            let size = self.varint()?;
            let align = if flags & SAME_ALIGN != 0 {
                self.d.prev_align
            } else {
                let l = self.byte()?;
                if l >= 64 {
                    return Err(Reason::BadAlignLog(l));
                }
                1u64 << l
            };
            Some((size, align))
        };
        let ev = match (kind, old, new, layout) {
            (K_ALLOC, _, Some(id), Some((size, align))) => Event::Alloc {
                tid,
                id,
                size,
                align,
            },
            (K_ZEROED, _, Some(id), Some((size, align))) => Event::Zeroed {
                tid,
                id,
                size,
                align,
            },
            (K_REALLOC, Some(old_id), Some(new_id), Some((size, align))) => Event::Realloc {
                tid,
                old_id,
                new_id,
                size,
                align,
            },
            (_, Some(id), _, _) => Event::Free { tid, id },
            _ => return Err(Reason::BadTag(tag)),
        };
        // Only now commit the delta state.
        self.d.prev_tid = tid;
        if let Some(id) = new {
            self.d.last = id;
        }
        if let Some((_, align)) = layout {
            self.d.prev_align = align;
        }
        Ok(Some(Record::Event(ev)))
    }

    /// The next event or comment, validated; `None` at the end record or
    /// after an error.
    pub fn next_record(&mut self) -> Option<Result<Record, TraceError>> {
        if self.state == State::Header {
            if let Err(e) = self.read_header() {
                return Some(Err(e));
            }
        }
        if self.state == State::Done {
            return None;
        }
        self.line += 1;
        self.last_freed = None;
        let rec = match self.decode() {
            Ok(Some(rec)) => rec,
            Ok(None) => {
                // No line (or only the end record): `line` stays the last line read.
                self.line -= 1;
                self.state = State::Done;
                return None;
            }
            Err(reason) => return Some(Err(self.fail(reason))),
        };
        if let Record::Event(ev) = &rec {
            match self.validator.apply(ev) {
                Ok(freed) => self.last_freed = freed,
                Err(reason) => return Some(Err(self.fail(reason))),
            }
        }
        Some(Ok(rec))
    }
}

impl<R: Read> Iterator for BinaryReader<R> {
    type Item = Result<Event, TraceError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            match self.next_record()? {
                Ok(Record::Event(ev)) => return Some(Ok(ev)),
                Ok(Record::Comment(_)) => continue,
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zigzag_is_a_bijection_on_the_edges() {
        for v in [0, 1, 2, u64::MAX, u64::MAX - 1, 1 << 63, (1 << 63) - 1] {
            assert_eq!(unzigzag(zigzag(v)), v);
        }
        assert_eq!(zigzag(1), 2);
        assert_eq!(zigzag(u64::MAX), 1); // -1
    }
}
