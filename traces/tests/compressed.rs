//! Compressed traces: gzip and zstd are detected from the bytes, not from
//! the name, and the writer compresses by extension.

/// The tests run on hakmem (the product runs on itself).
#[global_allocator]
static GLOBAL: hakmem::Hakmem = hakmem::Hakmem;

mod common;

use common::{read_all, write_all};
use std::io::Write;
use traces::compress::{Compression, GZIP_MAGIC, ZSTD_MAGIC};
use traces::synth::{RandomMixed, RandomMixedGen};
use traces::{Format, Record, TraceReader, TraceWriter};

fn sample() -> Vec<Record> {
    RandomMixedGen::new(RandomMixed {
        cycles: 5_000,
        ..RandomMixed::default()
    })
    .unwrap()
    .collect()
}

fn tmp(name: &str) -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("compressed");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn gzip_detected_from_bytes_under_a_misleading_name() {
    let recs = sample();
    let gz = write_all(&recs, Format::Text, Compression::Gzip);
    assert_eq!(gz[..2], GZIP_MAGIC);
    // Named as if plain, or as zstd: the bytes decide.
    for name in ["plain.hkt", "wrong.hkt.zst", "noext"] {
        let p = tmp(name);
        std::fs::write(&p, &gz).unwrap();
        let mut r = TraceReader::open(&p).unwrap();
        let mut got = Vec::new();
        while let Some(rec) = r.next_record() {
            got.push(rec.unwrap());
        }
        assert_eq!(got, recs, "{name}");
    }
}

#[test]
fn zstd_detected_from_bytes_under_a_misleading_name() {
    let recs = sample();
    let z = write_all(&recs, Format::Text, Compression::Zstd);
    assert_eq!(z[..4], ZSTD_MAGIC);
    let p = tmp("misnamed.hkt.gz");
    std::fs::write(&p, &z).unwrap();
    let mut r = TraceReader::open(&p).unwrap();
    let mut got = Vec::new();
    while let Some(rec) = r.next_record() {
        got.push(rec.unwrap());
    }
    assert_eq!(got, recs);
}

#[test]
fn compressed_binary_is_detected_as_binary() {
    let recs = sample();
    for c in [Compression::Gzip, Compression::Zstd] {
        let b = write_all(&recs, Format::Binary, c);
        let r = TraceReader::from_reader(std::io::Cursor::new(b.clone()), "x").unwrap();
        assert_eq!(r.format(), Format::Binary);
        assert_eq!(read_all(&b, "x").unwrap(), recs);
    }
}

#[test]
fn concatenated_gzip_members_read_as_one_stream() {
    let text = b"hktrace 1\na 0 1 16 16\nf 0 1\n";
    let mut out = Vec::new();
    for part in [&text[..15], &text[15..]] {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(part).unwrap();
        out.extend(e.finish().unwrap());
    }
    assert_eq!(read_all(&out, "cat.gz").unwrap().len(), 2);
}

#[test]
fn corrupt_compressed_stream_is_an_error_with_a_line_not_a_panic() {
    let recs = sample();
    let mut gz = write_all(&recs, Format::Text, Compression::Gzip);
    let n = gz.len();
    gz.truncate(n / 2);
    let e = read_all(&gz, "cut.hkt.gz").unwrap_err();
    assert!(e.line.unwrap() > 1, "{e}");
    assert!(e.to_string().starts_with("cut.hkt.gz:"), "{e}");
}

#[test]
fn writer_compresses_by_extension() {
    let recs = sample();
    let cases = [
        ("w.hkt", None),
        ("w.hkt.gz", Some(&GZIP_MAGIC[..])),
        ("w.hkb.zst", Some(&ZSTD_MAGIC[..])),
        ("w.hkb", Some(&traces::binary::MAGIC[..])),
    ];
    for (name, magic) in cases {
        let p = tmp(name);
        let mut w = TraceWriter::create(&p, None, None).unwrap();
        for r in &recs {
            w.write_record(r).unwrap();
        }
        w.finish().unwrap();
        let bytes = std::fs::read(&p).unwrap();
        match magic {
            Some(m) => assert_eq!(&bytes[..m.len()], m, "{name}"),
            None => assert!(bytes.starts_with(b"hktrace 1\n"), "{name}"),
        }
        assert_eq!(read_all(&bytes, name).unwrap(), recs, "{name}");
    }
    assert!(TraceWriter::create(&tmp("w.txt"), None, None).is_err());
}
