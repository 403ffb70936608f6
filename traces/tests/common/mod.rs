//! Helpers shared by the integration tests: in-memory conversions and a
//! generator of random valid traces.
#![allow(dead_code)]

use std::collections::HashSet;
use std::io::Cursor;
use traces::compress::Compression;
use traces::{Event, Format, Record, TraceError, TraceReader, TraceWriter};

/// Reads every record of `bytes` (any form), or the first error.
pub fn read_all(bytes: &[u8], name: &str) -> Result<Vec<Record>, TraceError> {
    let mut r = TraceReader::from_reader(Cursor::new(bytes.to_vec()), name)?;
    let mut out = Vec::new();
    while let Some(rec) = r.next_record() {
        out.push(rec?);
    }
    Ok(out)
}

/// The first error reading `bytes`; panics (the test fails) if there is none.
pub fn first_error(bytes: &[u8]) -> TraceError {
    match read_all(bytes, "t.hkt") {
        Ok(recs) => panic!("accepted {} records of a bad trace", recs.len()),
        Err(e) => e,
    }
}

/// Writes `records` in `format` with `compression`.
pub fn write_all(records: &[Record], format: Format, compression: Compression) -> Vec<u8> {
    let mut w = TraceWriter::new(Vec::new(), format, compression).unwrap();
    for r in records {
        w.write_record(r).unwrap();
    }
    w.finish().unwrap()
}

/// Text → records → binary → records → text.
pub fn text_via_binary(text: &[u8]) -> Vec<u8> {
    let recs = read_all(text, "in.hkt").unwrap();
    let bin = write_all(&recs, Format::Binary, Compression::None);
    let back = read_all(&bin, "in.hkb").unwrap();
    assert_eq!(back, recs, "binary decoding changed the records");
    write_all(&back, Format::Text, Compression::None)
}

/// One step of a random trace, interpreted by [`build`] so that the result
/// is always valid.
#[derive(Clone, Debug)]
pub struct Step {
    pub kind: u8,
    pub pick: u64,
    pub size: u64,
    pub align_log: u8,
    pub thread: u8,
    pub comment: Vec<u8>,
}

/// Builds a valid trace from arbitrary steps: kinds 0-3 = a, z, r, f (r and
/// f only when something is live), 4 = a comment; ids from `pick` made fresh;
/// tids never skip ahead.
pub fn build(steps: &[Step]) -> Vec<Record> {
    let mut used = HashSet::new();
    let mut live: Vec<u64> = Vec::new();
    let mut threads = 0u64;
    let mut out = Vec::new();
    for s in steps {
        let tid = u64::from(s.thread) % (threads + 1);
        let fresh = |used: &mut HashSet<u64>, mut id: u64| {
            while id == 0 || used.contains(&id) {
                id = id.wrapping_add(1);
            }
            used.insert(id);
            id
        };
        let align = 1u64 << (s.align_log % 64);
        let ev = match s.kind % 5 {
            4 => {
                let mut c: Vec<u8> = s.comment.iter().copied().filter(|&b| b != b'\n').collect();
                while c.last() == Some(&b'\r') {
                    c.pop();
                }
                out.push(Record::Comment(c));
                continue;
            }
            k @ (2 | 3) if !live.is_empty() => {
                let i = (s.pick % live.len() as u64) as usize;
                let old = live.swap_remove(i);
                if k == 3 {
                    Event::Free { tid, id: old }
                } else {
                    let new_id = fresh(&mut used, s.pick.rotate_left(7));
                    live.push(new_id);
                    Event::Realloc {
                        tid,
                        old_id: old,
                        new_id,
                        size: s.size,
                        align,
                    }
                }
            }
            k => {
                // Mostly dense ids, sometimes anywhere in u64.
                let want = if s.pick % 4 == 0 {
                    s.pick
                } else {
                    used.len() as u64 + 1
                };
                let id = fresh(&mut used, want);
                live.push(id);
                if k == 1 {
                    Event::Zeroed {
                        tid,
                        id,
                        size: s.size,
                        align,
                    }
                } else {
                    Event::Alloc {
                        tid,
                        id,
                        size: s.size,
                        align,
                    }
                }
            }
        };
        if tid == threads {
            threads += 1;
        }
        out.push(Record::Event(ev));
    }
    out
}
