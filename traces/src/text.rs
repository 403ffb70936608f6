//! The hktrace v1 text form: a streaming [`TextReader`] and a [`TextWriter`].
//!
//! The reader holds one line buffer (lines are parsed in place from the
//! `BufRead` buffer when they do not straddle it) and a [`Validator`]; its
//! memory does not grow with the trace except for the validator's live set.
//!
//! # Strictness (see `docs/traces.md`)
//! The reader accepts exactly the canonical text the writer produces, so that
//! every accepted file converts to binary and back byte for byte:
//! - lines end with `\n`, the last one included; `\r\n` is rejected;
//! - fields are separated by exactly one space: no leading, trailing or double
//!   spaces, no tabs; no empty lines;
//! - numbers are plain decimal digits, no sign, no leading zero (`0` itself is
//!   fine);
//! - a comment is any line whose first byte is `#`, after the header; its
//!   bytes are kept verbatim;
//! - lines are at most [`MAX_LINE`] bytes, so a corrupt file cannot make the
//!   reader buffer without bound.

use crate::error::{Reason, TraceError};
use crate::event::{Event, EventKind, Record};
use crate::validate::{LiveBlock, Validator};
use std::io::{self, BufRead, Write};

/// The header line, without its newline.
pub const HEADER: &[u8] = b"hktrace 1";

pub use crate::event::MAX_LINE;

/// The longest event line, newline included: `r` and five 20-digit numbers.
pub const MAX_EVENT_LINE: usize = 1 + 5 * 21 + 1;

/// Writes `n` in decimal at the start of `out`; returns the digits written.
#[inline]
fn put_u64(out: &mut [u8], mut n: u64) -> usize {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let len = tmp.len() - i;
    out[..len].copy_from_slice(&tmp[i..]);
    len
}

/// Formats `ev` as one text line, newline included, into `out`; returns its
/// length. Used by [`TextWriter`] and by the recorder, which must format
/// without allocating.
pub fn format_event(ev: &Event, out: &mut [u8; MAX_EVENT_LINE]) -> usize {
    let mut fields = [0u64; 5];
    let n = match *ev {
        Event::Alloc {
            tid,
            id,
            size,
            align,
        }
        | Event::Zeroed {
            tid,
            id,
            size,
            align,
        } => {
            fields[..4].copy_from_slice(&[tid, id, size, align]);
            4
        }
        Event::Realloc {
            tid,
            old_id,
            new_id,
            size,
            align,
        } => {
            fields = [tid, old_id, new_id, size, align];
            5
        }
        Event::Free { tid, id } => {
            fields[..2].copy_from_slice(&[tid, id]);
            2
        }
    };
    out[0] = ev.kind().letter();
    let mut pos = 1;
    for &v in &fields[..n] {
        out[pos] = b' ';
        pos += 1;
        pos += put_u64(&mut out[pos..], v);
    }
    out[pos] = b'\n';
    pos + 1
}

/// Field names per kind, for error messages.
fn field_names(kind: EventKind) -> &'static [&'static str] {
    match kind {
        EventKind::Alloc | EventKind::Zeroed => &["tid", "id", "size", "align"],
        EventKind::Realloc => &["tid", "old_id", "new_id", "size", "align"],
        EventKind::Free => &["tid", "id"],
    }
}

/// Parses one canonical unsigned decimal field.
#[inline]
fn parse_u64(field: &'static str, t: &[u8]) -> Result<u64, Reason> {
    let mut v: u64 = 0;
    let mut overflow = false;
    for &b in t {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            if b.is_ascii_whitespace() {
                return Err(Reason::Whitespace);
            }
            return Err(Reason::BadNumber {
                field,
                text: lossy(t),
            });
        }
        match v.checked_mul(10).and_then(|x| x.checked_add(u64::from(d))) {
            Some(x) => v = x,
            None => overflow = true,
        }
    }
    if t.is_empty() {
        return Err(Reason::Whitespace);
    }
    if t.len() > 1 && t[0] == b'0' {
        return Err(Reason::LeadingZero {
            field,
            text: lossy(t),
        });
    }
    if overflow {
        return Err(Reason::Overflow {
            field,
            text: lossy(t),
        });
    }
    Ok(v)
}

/// Text for an error message: lossy UTF-8, cut at 40 bytes.
fn lossy(t: &[u8]) -> String {
    let cut = &t[..t.len().min(40)];
    let mut s = String::from_utf8_lossy(cut).into_owned();
    if t.len() > cut.len() {
        s.push('…');
    }
    s
}

/// Parses one line after the header (newline removed): syntax only; the
/// semantic rules are the [`Validator`]'s.
pub fn parse_line(line: &[u8]) -> Result<Record, Reason> {
    let Some(&first) = line.first() else {
        return Err(Reason::EmptyLine);
    };
    if line.last() == Some(&b'\r') {
        return Err(Reason::CarriageReturn);
    }
    if first == b'#' {
        return Ok(Record::Comment(line[1..].to_vec()));
    }
    let mut parts: [&[u8]; 6] = [&[]; 6];
    let mut count = 0;
    for part in line.split(|&b| b == b' ') {
        if part.is_empty() {
            return Err(Reason::Whitespace);
        }
        if count < parts.len() {
            parts[count] = part;
        }
        count += 1;
    }
    let letter = parts[0];
    let kind = match letter {
        [l] => EventKind::from_letter(*l),
        _ => None,
    };
    let Some(kind) = kind else {
        if letter.iter().any(|b| b.is_ascii_whitespace()) {
            return Err(Reason::Whitespace);
        }
        return Err(Reason::UnknownLetter(lossy(letter)));
    };
    if count != kind.field_count() {
        // A tab where a space belongs miscounts the fields: name the tab.
        if line.iter().any(|&b| b != b' ' && b.is_ascii_whitespace()) {
            return Err(Reason::Whitespace);
        }
        return Err(Reason::FieldCount {
            kind,
            expected: kind.field_count(),
            found: count,
        });
    }
    let names = field_names(kind);
    let mut v = [0u64; 5];
    for (i, name) in names.iter().enumerate() {
        v[i] = parse_u64(name, parts[i + 1])?;
    }
    let ev = match kind {
        EventKind::Alloc => Event::Alloc {
            tid: v[0],
            id: v[1],
            size: v[2],
            align: v[3],
        },
        EventKind::Zeroed => Event::Zeroed {
            tid: v[0],
            id: v[1],
            size: v[2],
            align: v[3],
        },
        EventKind::Realloc => Event::Realloc {
            tid: v[0],
            old_id: v[1],
            new_id: v[2],
            size: v[3],
            align: v[4],
        },
        EventKind::Free => Event::Free {
            tid: v[0],
            id: v[1],
        },
    };
    Ok(Record::Event(ev))
}

/// Checks the header line (newline removed).
fn parse_header(line: &[u8]) -> Result<(), Reason> {
    if line == HEADER {
        return Ok(());
    }
    if line.strip_suffix(b"\r") == Some(HEADER) {
        return Err(Reason::CarriageReturn);
    }
    if line.starts_with(b"hktrace") {
        return Err(Reason::UnknownHeader(lossy(line)));
    }
    Err(Reason::MissingHeader)
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    Header,
    Body,
    Done,
}

/// A streaming, validating reader of hktrace v1 text.
///
/// [`TextReader::next_record`] yields events and comments; as an
/// [`Iterator`] it yields events only. After the first error it yields
/// nothing more. Decompression is the caller's (see [`crate::file`]).
pub struct TextReader<R> {
    inner: R,
    name: String,
    line: u64,
    buf: Vec<u8>,
    state: State,
    validator: Validator,
    last_freed: Option<LiveBlock>,
}

impl<R: BufRead> TextReader<R> {
    /// A reader of `inner`, whose errors name the file `name`.
    pub fn new(inner: R, name: impl Into<String>) -> TextReader<R> {
        TextReader {
            inner,
            name: name.into(),
            line: 0,
            buf: Vec::new(),
            state: State::Header,
            validator: Validator::new(),
            last_freed: None,
        }
    }

    /// The number of the last line read (the header is line 1).
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

    /// Reads the header now (it is otherwise read with the first record).
    pub fn read_header(&mut self) -> Result<(), TraceError> {
        if self.state != State::Header {
            return Ok(());
        }
        self.line = 1;
        let r = match self.read_line(parse_header) {
            Ok(Some(r)) => r,
            Ok(None) => Err(Reason::MissingHeader),
            Err(e) => Err(e),
        };
        match r {
            Ok(()) => {
                self.state = State::Body;
                Ok(())
            }
            Err(reason) => Err(self.fail(reason)),
        }
    }

    fn fail(&mut self, reason: Reason) -> TraceError {
        self.state = State::Done;
        TraceError::new(&self.name, self.line, reason)
    }

    /// The next event or comment, validated; `None` at the end of the trace
    /// or after an error.
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
        let rec = match self.read_line(parse_line) {
            Ok(Some(Ok(rec))) => rec,
            Ok(None) => {
                // No line (or only the end record): `line` stays the last line read.
                self.line -= 1;
                self.state = State::Done;
                return None;
            }
            Ok(Some(Err(reason))) | Err(reason) => return Some(Err(self.fail(reason))),
        };
        if let Record::Event(ev) = &rec {
            match self.validator.apply(ev) {
                Ok(freed) => self.last_freed = freed,
                Err(reason) => return Some(Err(self.fail(reason))),
            }
        }
        Some(Ok(rec))
    }

    /// Reads one line and hands it (newline removed) to `f`; `Ok(None)` at a
    /// clean end of file. Lines inside the `BufRead` buffer are not copied.
    fn read_line<T>(&mut self, f: impl FnOnce(&[u8]) -> T) -> Result<Option<T>, Reason> {
        self.buf.clear();
        loop {
            let avail = match self.inner.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Reason::Io(e)),
            };
            if avail.is_empty() {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                return Err(Reason::MissingNewline);
            }
            match avail.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    if self.buf.len() + i > MAX_LINE {
                        return Err(Reason::LineTooLong);
                    }
                    let t = if self.buf.is_empty() {
                        f(&avail[..i])
                    } else {
                        self.buf.extend_from_slice(&avail[..i]);
                        f(&self.buf)
                    };
                    self.inner.consume(i + 1);
                    return Ok(Some(t));
                }
                None => {
                    let n = avail.len();
                    if self.buf.len() + n > MAX_LINE {
                        return Err(Reason::LineTooLong);
                    }
                    self.buf.extend_from_slice(avail);
                    self.inner.consume(n);
                }
            }
        }
    }
}

impl<R: BufRead> Iterator for TextReader<R> {
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

/// A writer of hktrace v1 text. It does not buffer: give it a `BufWriter`
/// (or a compressor, which buffers). It does not validate either: what it is
/// given is what it writes, so give it valid traces.
pub struct TextWriter<W: Write> {
    out: W,
}

impl<W: Write> TextWriter<W> {
    /// Writes the header to `out`.
    pub fn new(mut out: W) -> io::Result<TextWriter<W>> {
        out.write_all(HEADER)?;
        out.write_all(b"\n")?;
        Ok(TextWriter { out })
    }

    /// Writes one event line.
    pub fn write_event(&mut self, ev: &Event) -> io::Result<()> {
        let mut line = [0u8; MAX_EVENT_LINE];
        let n = format_event(ev, &mut line);
        self.out.write_all(&line[..n])
    }

    /// Writes a comment line `#` + `text`; `text` must not contain a newline
    /// and must keep the line within [`MAX_LINE`].
    pub fn write_comment(&mut self, text: &[u8]) -> io::Result<()> {
        if text.contains(&b'\n') || text.len() + 1 > MAX_LINE || text.last() == Some(&b'\r') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a comment may not contain a newline, end with \\r, or exceed the line limit",
            ));
        }
        self.out.write_all(b"#")?;
        self.out.write_all(text)?;
        self.out.write_all(b"\n")
    }

    /// Writes an event or a comment.
    pub fn write_record(&mut self, rec: &Record) -> io::Result<()> {
        match rec {
            Record::Event(ev) => self.write_event(ev),
            Record::Comment(c) => self.write_comment(c),
        }
    }

    /// Flushes and returns the underlying writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }

    /// The underlying writer.
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_then_parse_is_identity_at_the_extremes() {
        let m = u64::MAX;
        for ev in [
            Event::Realloc {
                tid: m,
                old_id: m,
                new_id: m,
                size: m,
                align: 1 << 63,
            },
            Event::Free { tid: 0, id: 1 },
            Event::Zeroed {
                tid: 0,
                id: 10,
                size: 0,
                align: 1,
            },
        ] {
            let mut b = [0u8; MAX_EVENT_LINE];
            let n = format_event(&ev, &mut b);
            assert_eq!(b[n - 1], b'\n');
            assert_eq!(parse_line(&b[..n - 1]).unwrap(), Record::Event(ev));
        }
    }
}
