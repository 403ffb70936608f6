//! Transparent compression: gzip and zstd detected from the first bytes when
//! reading (never from the name), chosen by the file name's extension when
//! writing.

use flate2::bufread::MultiGzDecoder;
use flate2::write::GzEncoder;
use std::io::{self, BufRead, BufReader, Cursor, Read, Write};
use std::path::Path;

/// gzip's magic bytes (RFC 1952).
pub const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
/// zstd's frame magic, little-endian 0xFD2FB528 (RFC 8878).
pub const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// The zstd level used when writing (a good ratio at several hundred MB/s).
pub const ZSTD_LEVEL: i32 = 9;

/// A compression of a trace file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// Not compressed.
    None,
    /// gzip (`.gz`); several concatenated members read as one stream.
    Gzip,
    /// zstd (`.zst`); several concatenated frames read as one stream.
    Zstd,
}

impl Compression {
    /// The compression whose magic bytes start `prefix`.
    pub fn detect(prefix: &[u8]) -> Compression {
        if prefix.starts_with(&ZSTD_MAGIC) {
            Compression::Zstd
        } else if prefix.starts_with(&GZIP_MAGIC) {
            Compression::Gzip
        } else {
            Compression::None
        }
    }

    /// The compression a file name asks for by its last extension.
    pub fn from_path(path: &Path) -> Compression {
        match path.extension().and_then(|e| e.to_str()) {
            Some("gz") => Compression::Gzip,
            Some("zst") => Compression::Zstd,
            _ => Compression::None,
        }
    }
}

/// A reader that starts with bytes already taken from `rest`.
pub type Peeked<R> = io::Chain<Cursor<Vec<u8>>, R>;

/// Reads up to `n` bytes from `r` (fewer only at end of input) and returns
/// them with a reader that yields them again, followed by the rest.
pub fn peek<R: Read>(mut r: R, n: usize) -> io::Result<(Vec<u8>, Peeked<R>)> {
    let mut prefix = vec![0u8; n];
    let mut got = 0;
    while got < n {
        match r.read(&mut prefix[got..]) {
            Ok(0) => break,
            Ok(k) => got += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    prefix.truncate(got);
    Ok((prefix.clone(), Cursor::new(prefix).chain(r)))
}

/// Detects the compression of `r` from its first bytes and returns the
/// decompressed stream.
pub fn decompress<R: Read + Send + 'static>(
    r: R,
) -> io::Result<(Compression, Box<dyn Read + Send>)> {
    let (prefix, r) = peek(r, ZSTD_MAGIC.len())?;
    let c = Compression::detect(&prefix);
    let out: Box<dyn Read + Send> = match c {
        Compression::None => Box::new(r),
        Compression::Gzip => Box::new(MultiGzDecoder::new(BufReader::new(r))),
        Compression::Zstd => Box::new(zstd::Decoder::new(r)?),
    };
    Ok((c, out))
}

/// Detects and removes compression, buffered.
pub fn decompress_buffered<R: Read + Send + 'static>(
    r: R,
) -> io::Result<(Compression, Box<dyn BufRead + Send>)> {
    let (c, r) = decompress(r)?;
    Ok((c, Box::new(BufReader::with_capacity(64 << 10, r))))
}

/// A writer that compresses (or not) into `W`. Call
/// [`Compressor::finish`]: the compressed stream is complete only then.
pub enum Compressor<W: Write> {
    /// Pass-through.
    Plain(W),
    /// gzip at the default level.
    Gzip(GzEncoder<W>),
    /// zstd at [`ZSTD_LEVEL`].
    Zstd(zstd::Encoder<'static, W>),
}

impl<W: Write> Compressor<W> {
    /// A compressor of kind `c` writing into `w`.
    pub fn new(w: W, c: Compression) -> io::Result<Compressor<W>> {
        Ok(match c {
            Compression::None => Compressor::Plain(w),
            Compression::Gzip => {
                Compressor::Gzip(GzEncoder::new(w, flate2::Compression::default()))
            }
            Compression::Zstd => Compressor::Zstd(zstd::Encoder::new(w, ZSTD_LEVEL)?),
        })
    }

    /// Ends the compressed stream, flushes, and returns the inner writer.
    pub fn finish(self) -> io::Result<W> {
        let mut w = match self {
            Compressor::Plain(w) => w,
            Compressor::Gzip(e) => e.finish()?,
            Compressor::Zstd(e) => e.finish()?,
        };
        w.flush()?;
        Ok(w)
    }
}

impl<W: Write> Write for Compressor<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Compressor::Plain(w) => w.write(buf),
            Compressor::Gzip(e) => e.write(buf),
            Compressor::Zstd(e) => e.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Compressor::Plain(w) => w.write_all(buf),
            Compressor::Gzip(e) => e.write_all(buf),
            Compressor::Zstd(e) => e.write_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Compressor::Plain(w) => w.flush(),
            Compressor::Gzip(e) => e.flush(),
            Compressor::Zstd(e) => e.flush(),
        }
    }
}
