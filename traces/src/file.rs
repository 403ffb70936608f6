//! Trace files of any form: [`TraceReader`] detects compression and text or
//! binary from the first bytes; [`TraceWriter`] picks them from the name.
//!
//! Names: `<name>.hkt` is text, `<name>.hkb` binary, either optionally
//! followed by `.gz` or `.zst`.

use crate::binary::{BinaryReader, BinaryWriter, MAGIC};
use crate::compress::{decompress, peek, Compression, Compressor};
use crate::error::{Reason, TraceError};
use crate::event::{Event, Record};
use crate::text::{TextReader, TextWriter};
use crate::validate::{LiveBlock, Validator};
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::Path;

/// Text or binary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// hktrace v1 text (`.hkt`).
    Text,
    /// The binary form (`.hkb`), see [`crate::binary`].
    Binary,
}

impl Format {
    /// The format a file name asks for: `.hkt` or `.hkb`, before an optional
    /// `.gz` or `.zst`. `None` for other names.
    pub fn from_path(path: &Path) -> Option<Format> {
        let name = path.file_name()?.to_str()?;
        let name = name
            .strip_suffix(".gz")
            .or_else(|| name.strip_suffix(".zst"))
            .unwrap_or(name);
        if name.ends_with(".hkt") {
            Some(Format::Text)
        } else if name.ends_with(".hkb") {
            Some(Format::Binary)
        } else {
            None
        }
    }
}

/// The reader's input after decompression.
pub type Input = Box<dyn BufRead + Send>;

/// A validating reader of a trace in any form.
pub enum TraceReader {
    /// hktrace v1 text.
    Text(TextReader<Input>),
    /// The binary form.
    Binary(BinaryReader<Input>),
}

impl TraceReader {
    /// Opens `path` (compressed or not, text or binary).
    pub fn open(path: &Path) -> Result<TraceReader, TraceError> {
        let name = path.display().to_string();
        let f = File::open(path).map_err(|e| TraceError::whole_file(&name, Reason::Io(e)))?;
        TraceReader::from_reader(f, &name)
    }

    /// Reads the trace in `r` (compressed or not, text or binary); errors
    /// name the file `name`.
    pub fn from_reader<R: Read + Send + 'static>(
        r: R,
        name: &str,
    ) -> Result<TraceReader, TraceError> {
        let (_, format, input) = detect(r).map_err(|e| TraceError::new(name, 1, Reason::Io(e)))?;
        Ok(match format {
            Format::Text => TraceReader::Text(TextReader::new(input, name)),
            Format::Binary => TraceReader::Binary(BinaryReader::new(input, name)),
        })
    }

    /// Which form the input is.
    pub fn format(&self) -> Format {
        match self {
            TraceReader::Text(_) => Format::Text,
            TraceReader::Binary(_) => Format::Binary,
        }
    }

    /// The next event or comment, validated; `None` at the end or after an
    /// error.
    pub fn next_record(&mut self) -> Option<Result<Record, TraceError>> {
        match self {
            TraceReader::Text(r) => r.next_record(),
            TraceReader::Binary(r) => r.next_record(),
        }
    }

    /// The number of the last line (record) read; the header is 1.
    pub fn line(&self) -> u64 {
        match self {
            TraceReader::Text(r) => r.line(),
            TraceReader::Binary(r) => r.line(),
        }
    }

    /// The validator's state: live blocks, threads.
    pub fn validator(&self) -> &Validator {
        match self {
            TraceReader::Text(r) => r.validator(),
            TraceReader::Binary(r) => r.validator(),
        }
    }

    /// The block ended by the last event returned (`f`, or `r`'s old block).
    pub fn last_freed(&self) -> Option<LiveBlock> {
        match self {
            TraceReader::Text(r) => r.last_freed(),
            TraceReader::Binary(r) => r.last_freed(),
        }
    }
}

impl Iterator for TraceReader {
    type Item = Result<Event, TraceError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            TraceReader::Text(r) => r.next(),
            TraceReader::Binary(r) => r.next(),
        }
    }
}

/// Removes compression and tells text from binary, from the first bytes.
pub fn detect<R: Read + Send + 'static>(r: R) -> io::Result<(Compression, Format, Input)> {
    let (compression, r) = decompress(r)?;
    let (prefix, r) = peek(r, MAGIC.len())?;
    let format = if prefix == MAGIC {
        Format::Binary
    } else {
        Format::Text
    };
    Ok((
        compression,
        format,
        Box::new(BufReader::with_capacity(64 << 10, r)),
    ))
}

/// The writer's output stack: records are buffered before the compressor so
/// that it sees large writes.
pub type Output<W> = BufWriter<Compressor<W>>;

/// A writer of a trace in any form. Call [`TraceWriter::finish`].
pub enum TraceWriter<W: Write> {
    /// hktrace v1 text.
    Text(TextWriter<Output<W>>),
    /// The binary form.
    Binary(BinaryWriter<Output<W>>),
}

impl TraceWriter<BufWriter<File>> {
    /// Creates `path`; the format and the compression come from its name
    /// unless given. An unknown name without an explicit format is an error.
    pub fn create(
        path: &Path,
        format: Option<Format>,
        compression: Option<Compression>,
    ) -> io::Result<TraceWriter<BufWriter<File>>> {
        let format = format.or_else(|| Format::from_path(path)).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{}: cannot tell text from binary by the name (use .hkt or .hkb, optionally + .gz/.zst)",
                    path.display()
                ),
            )
        })?;
        let compression = compression.unwrap_or_else(|| Compression::from_path(path));
        let f = File::create(path)?;
        TraceWriter::new(BufWriter::new(f), format, compression)
    }
}

impl<W: Write> TraceWriter<W> {
    /// A writer of `format` compressed with `compression` into `w`; writes
    /// the header.
    pub fn new(w: W, format: Format, compression: Compression) -> io::Result<TraceWriter<W>> {
        let out = BufWriter::with_capacity(64 << 10, Compressor::new(w, compression)?);
        Ok(match format {
            Format::Text => TraceWriter::Text(TextWriter::new(out)?),
            Format::Binary => TraceWriter::Binary(BinaryWriter::new(out)?),
        })
    }

    /// Writes an event or a comment.
    pub fn write_record(&mut self, rec: &Record) -> io::Result<()> {
        match self {
            TraceWriter::Text(w) => w.write_record(rec),
            TraceWriter::Binary(w) => w.write_record(rec),
        }
    }

    /// Writes an event.
    pub fn write_event(&mut self, ev: &Event) -> io::Result<()> {
        match self {
            TraceWriter::Text(w) => w.write_event(ev),
            TraceWriter::Binary(w) => w.write_event(ev),
        }
    }

    /// Writes a comment (the bytes after `#`).
    pub fn write_comment(&mut self, text: &[u8]) -> io::Result<()> {
        match self {
            TraceWriter::Text(w) => w.write_comment(text),
            TraceWriter::Binary(w) => w.write_comment(text),
        }
    }

    /// Ends the trace (binary end record, compressed stream end), flushes,
    /// and returns the inner writer.
    pub fn finish(self) -> io::Result<W> {
        let out = match self {
            TraceWriter::Text(w) => w.finish()?,
            TraceWriter::Binary(w) => w.finish()?,
        };
        let mut w = out.into_inner().map_err(|e| e.into_error())?.finish()?;
        w.flush()?;
        Ok(w)
    }
}

/// Why a [`copy`] stopped.
#[derive(Debug)]
pub enum CopyError {
    /// The input is bad or could not be read.
    Read(TraceError),
    /// The output could not be written.
    Write(io::Error),
}

impl std::fmt::Display for CopyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CopyError::Read(e) => write!(f, "{e}"),
            CopyError::Write(e) => write!(f, "write error: {e}"),
        }
    }
}

impl std::error::Error for CopyError {}

/// Copies every record of `reader` to `writer` (a conversion), calling
/// `progress` with the line number every 64 Ki records. Returns the records
/// copied. The writer is not finished.
pub fn copy<W: Write>(
    reader: &mut TraceReader,
    writer: &mut TraceWriter<W>,
    mut progress: impl FnMut(u64),
) -> Result<u64, CopyError> {
    let mut n = 0u64;
    while let Some(rec) = reader.next_record() {
        let rec = rec.map_err(CopyError::Read)?;
        writer.write_record(&rec).map_err(CopyError::Write)?;
        n += 1;
        if n % (64 << 10) == 0 {
            progress(reader.line());
        }
    }
    Ok(n)
}
