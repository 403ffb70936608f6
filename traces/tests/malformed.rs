//! One test per malformed-input rule of hktrace v1 (and of the strictness
//! decisions of `docs/traces.md`): each asserts the line number and the
//! reason, and the `path:LINE: reason` rendering.

/// The tests run on hakmem (the product runs on itself).
#[global_allocator]
static GLOBAL: hakmem::Hakmem = hakmem::Hakmem;

mod common;

use common::{first_error, read_all, write_all};
use traces::compress::Compression;
use traces::{EventKind, Format, Reason, Record};

/// Asserts that `text` is rejected at `line` for a reason matching `want`,
/// and that the message reads `t.hkt:LINE: <contains…>`.
fn rejects(text: &str, line: u64, want: impl Fn(&Reason) -> bool, contains: &str) {
    let e = first_error(text.as_bytes());
    assert_eq!(e.line, Some(line), "line of {e} in {text:?}");
    assert!(want(&e.reason), "reason {:?} in {text:?}", e.reason);
    let msg = e.to_string();
    assert!(
        msg.starts_with(&format!("t.hkt:{line}: ")) && msg.contains(contains),
        "message {msg:?} should contain {contains:?}"
    );
}

const H: &str = "hktrace 1\n";

// --- header -----------------------------------------------------------------

#[test]
fn empty_file_has_no_header() {
    rejects(
        "",
        1,
        |r| matches!(r, Reason::MissingHeader),
        "missing header",
    );
}

#[test]
fn event_before_header_is_missing_header() {
    rejects(
        "a 0 1 16 16\n",
        1,
        |r| matches!(r, Reason::MissingHeader),
        "missing header",
    );
}

#[test]
fn comment_before_header_is_missing_header() {
    rejects(
        "# hi\nhktrace 1\n",
        1,
        |r| matches!(r, Reason::MissingHeader),
        "missing header",
    );
}

#[test]
fn unknown_header_version() {
    rejects(
        "hktrace 2\n",
        1,
        |r| matches!(r, Reason::UnknownHeader(h) if h == "hktrace 2"),
        "unknown header `hktrace 2`",
    );
}

#[test]
fn header_not_exactly() {
    rejects(
        "hktrace  1\n",
        1,
        |r| matches!(r, Reason::UnknownHeader(_)),
        "unknown header",
    );
    rejects(
        "hktrace 1 \n",
        1,
        |r| matches!(r, Reason::UnknownHeader(_)),
        "unknown header",
    );
    rejects(
        "hktrace1\n",
        1,
        |r| matches!(r, Reason::UnknownHeader(_)),
        "unknown header",
    );
}

#[test]
fn header_only_file_is_a_valid_empty_trace() {
    assert_eq!(
        read_all(H.as_bytes(), "t.hkt").unwrap(),
        Vec::<Record>::new()
    );
}

// --- letters and field counts -------------------------------------------------

#[test]
fn unknown_event_letter() {
    let t = format!("{H}a 0 1 16 16\nm 0 2 16 16\n");
    rejects(
        &t,
        3,
        |r| matches!(r, Reason::UnknownLetter(l) if l == "m"),
        "unknown event letter `m`",
    );
    let t = format!("{H}alloc 0 2 16 16\n");
    rejects(
        &t,
        2,
        |r| matches!(r, Reason::UnknownLetter(l) if l == "alloc"),
        "unknown event letter `alloc`",
    );
    let t = format!("{H}A 0 2 16 16\n");
    rejects(
        &t,
        2,
        |r| matches!(r, Reason::UnknownLetter(_)),
        "unknown event letter `A`",
    );
}

#[test]
fn wrong_field_count_for_each_kind() {
    let fc = |kind: EventKind, exp: usize, got: usize| move |r: &Reason| matches!(r, Reason::FieldCount { kind: k, expected, found } if *k == kind && *expected == exp && *found == got);
    rejects(
        &format!("{H}a 0 1 16\n"),
        2,
        fc(EventKind::Alloc, 5, 4),
        "`a` takes 5 fields, found 4",
    );
    rejects(
        &format!("{H}z 0 1 16 16 9\n"),
        2,
        fc(EventKind::Zeroed, 5, 6),
        "`z` takes 5 fields, found 6",
    );
    rejects(
        &format!("{H}a 0 1 16 16\nr 0 1 2 16\n"),
        3,
        fc(EventKind::Realloc, 6, 5),
        "`r` takes 6 fields, found 5",
    );
    rejects(
        &format!("{H}a 0 1 16 16\nf 0 1 16\n"),
        3,
        fc(EventKind::Free, 3, 4),
        "`f` takes 3 fields, found 4",
    );
    rejects(&format!("{H}f\n"), 2, fc(EventKind::Free, 3, 1), "found 1");
}

// --- numbers -----------------------------------------------------------------

#[test]
fn number_that_does_not_parse() {
    for (bad, field) in [
        ("x16", "size"),
        ("-5", "size"),
        ("+5", "size"),
        ("1.5", "size"),
        ("0x10", "size"),
    ] {
        let t = format!("{H}a 0 1 {bad} 16\n");
        rejects(
            &t,
            2,
            |r| matches!(r, Reason::BadNumber { field: f, text } if *f == field && text == bad),
            "size: `",
        );
    }
    rejects(
        &format!("{H}a zero 1 16 16\n"),
        2,
        |r| matches!(r, Reason::BadNumber { field: "tid", .. }),
        "tid: `zero`",
    );
    rejects(
        &format!("{H}a 0 1 16 16\nr 0 1 two 16 16\n"),
        3,
        |r| {
            matches!(
                r,
                Reason::BadNumber {
                    field: "new_id",
                    ..
                }
            )
        },
        "new_id",
    );
}

#[test]
fn number_that_overflows() {
    // u64::MAX itself is fine …
    let ok = format!("{H}a 0 18446744073709551615 18446744073709551615 16\n");
    assert_eq!(read_all(ok.as_bytes(), "t.hkt").unwrap().len(), 1);
    // … one more is not.
    let t = format!("{H}a 0 1 18446744073709551616 16\n");
    rejects(
        &t,
        2,
        |r| matches!(r, Reason::Overflow { field: "size", .. }),
        "size: `18446744073709551616` overflows 64 bits",
    );
    let t = format!("{H}a 0 99999999999999999999999 16 16\n");
    rejects(
        &t,
        2,
        |r| matches!(r, Reason::Overflow { field: "id", .. }),
        "overflows",
    );
}

#[test]
fn number_with_leading_zero() {
    rejects(
        &format!("{H}a 0 01 16 16\n"),
        2,
        |r| matches!(r, Reason::LeadingZero { field: "id", .. }),
        "id: `01` has a leading zero",
    );
    rejects(
        &format!("{H}a 00 1 16 16\n"),
        2,
        |r| matches!(r, Reason::LeadingZero { field: "tid", .. }),
        "leading zero",
    );
}

#[test]
fn align_not_a_power_of_two() {
    for a in [0u64, 3, 24, 48, 1000] {
        let t = format!("{H}a 0 1 16 16\nz 0 2 8 {a}\n");
        rejects(
            &t,
            3,
            |r| matches!(r, Reason::AlignNotPowerOfTwo(x) if *x == a),
            &format!("align {a} is not a power of two"),
        );
    }
    let t = format!("{H}a 0 1 16 16\nr 0 1 2 32 12\n");
    rejects(
        &t,
        3,
        |r| matches!(r, Reason::AlignNotPowerOfTwo(12)),
        "align 12",
    );
}

// --- ids ---------------------------------------------------------------------

#[test]
fn reused_id_while_live() {
    rejects(
        &format!("{H}a 0 1 16 16\na 0 1 16 16\n"),
        3,
        |r| matches!(r, Reason::ReusedId(1)),
        "reused id 1",
    );
}

#[test]
fn reused_id_after_free() {
    rejects(
        &format!("{H}a 0 1 16 16\nf 0 1\nz 0 1 16 16\n"),
        4,
        |r| matches!(r, Reason::ReusedId(1)),
        "reused id 1",
    );
}

#[test]
fn reused_id_as_realloc_target() {
    rejects(
        &format!("{H}a 0 1 16 16\na 0 2 16 16\nr 0 1 2 32 16\n"),
        4,
        |r| matches!(r, Reason::ReusedId(2)),
        "reused id 2",
    );
    // A realloc's old id is dead afterwards, so it cannot come back either.
    rejects(
        &format!("{H}a 0 5 16 16\nr 0 5 6 32 16\na 0 5 8 16\n"),
        4,
        |r| matches!(r, Reason::ReusedId(5)),
        "reused id 5",
    );
}

#[test]
fn reused_id_with_gaps_far_apart() {
    // Ids need not be dense: 10, 3, 1000, then 3 again.
    let t = format!("{H}a 0 10 1 16\na 0 3 1 16\nf 0 3\na 0 1000 1 16\na 0 3 1 16\n");
    rejects(&t, 6, |r| matches!(r, Reason::ReusedId(3)), "reused id 3");
}

#[test]
fn id_zero_is_not_a_block() {
    rejects(
        &format!("{H}a 0 0 16 16\n"),
        2,
        |r| matches!(r, Reason::ZeroId),
        "id 0",
    );
}

#[test]
fn free_of_a_never_allocated_id() {
    rejects(
        &format!("{H}a 0 1 16 16\nf 0 2\n"),
        3,
        |r| {
            matches!(
                r,
                Reason::NotLive {
                    kind: EventKind::Free,
                    id: 2,
                    never_allocated: true
                }
            )
        },
        "free of id 2, which is not live (never allocated)",
    );
}

#[test]
fn free_of_a_dead_id() {
    rejects(
        &format!("{H}a 0 1 16 16\nf 0 1\nf 0 1\n"),
        4,
        |r| {
            matches!(
                r,
                Reason::NotLive {
                    kind: EventKind::Free,
                    id: 1,
                    never_allocated: false
                }
            )
        },
        "free of id 1, which is not live (already dead)",
    );
    // The old id of a realloc is dead too.
    rejects(
        &format!("{H}a 0 1 16 16\nr 0 1 2 32 16\nf 0 1\n"),
        4,
        |r| {
            matches!(
                r,
                Reason::NotLive {
                    kind: EventKind::Free,
                    id: 1,
                    never_allocated: false
                }
            )
        },
        "already dead",
    );
}

#[test]
fn realloc_of_an_id_that_is_not_live() {
    rejects(
        &format!("{H}r 0 7 8 32 16\n"),
        2,
        |r| {
            matches!(
                r,
                Reason::NotLive {
                    kind: EventKind::Realloc,
                    id: 7,
                    never_allocated: true
                }
            )
        },
        "realloc of id 7, which is not live (never allocated)",
    );
    rejects(
        &format!("{H}a 0 1 16 16\nf 0 1\nr 0 1 2 32 16\n"),
        4,
        |r| {
            matches!(
                r,
                Reason::NotLive {
                    kind: EventKind::Realloc,
                    id: 1,
                    never_allocated: false
                }
            )
        },
        "realloc of id 1",
    );
}

// --- threads -----------------------------------------------------------------

#[test]
fn tid_skipping_ahead_at_the_start() {
    rejects(
        &format!("{H}a 1 1 16 16\n"),
        2,
        |r| matches!(r, Reason::TidSkipsAhead { tid: 1, next: 0 }),
        "tid 1 skips ahead of the next unused thread number 0",
    );
}

#[test]
fn tid_skipping_ahead_later() {
    let t = format!("{H}a 0 1 16 16\na 1 2 16 16\nf 0 2\na 3 3 16 16\n");
    rejects(
        &t,
        5,
        |r| matches!(r, Reason::TidSkipsAhead { tid: 3, next: 2 }),
        "tid 3 skips ahead",
    );
    // A free's tid counts as a thread's first event too.
    let t = format!("{H}a 0 1 16 16\nf 2 1\n");
    rejects(
        &t,
        3,
        |r| matches!(r, Reason::TidSkipsAhead { tid: 2, next: 1 }),
        "tid 2",
    );
}

// --- strictness decisions (docs/traces.md) -------------------------------------

#[test]
fn crlf_line_endings() {
    rejects(
        "hktrace 1\r\na 0 1 16 16\r\n",
        1,
        |r| matches!(r, Reason::CarriageReturn),
        "CRLF",
    );
    rejects(
        &format!("{H}a 0 1 16 16\r\n"),
        2,
        |r| matches!(r, Reason::CarriageReturn),
        "CRLF",
    );
    rejects(
        &format!("{H}# note\r\n"),
        2,
        |r| matches!(r, Reason::CarriageReturn),
        "CRLF",
    );
}

#[test]
fn spaces_other_than_one_between_fields() {
    for bad in [
        "a 0 1 16 16 ",
        "a  0 1 16 16",
        " a 0 1 16 16",
        "a 0 1\t16 16",
        "a\t0 1 16 16",
        "a 0 1 16 16\t",
    ] {
        rejects(
            &format!("{H}{bad}\n"),
            2,
            |r| matches!(r, Reason::Whitespace),
            "exactly one space",
        );
    }
}

#[test]
fn empty_line() {
    rejects(
        &format!("{H}a 0 1 16 16\n\nf 0 1\n"),
        3,
        |r| matches!(r, Reason::EmptyLine),
        "empty line",
    );
}

#[test]
fn missing_final_newline() {
    rejects(
        &format!("{H}a 0 1 16 16\nf 0 1"),
        3,
        |r| matches!(r, Reason::MissingNewline),
        "no newline",
    );
    rejects(
        "hktrace 1",
        1,
        |r| matches!(r, Reason::MissingNewline),
        "no newline",
    );
}

#[test]
fn overlong_line() {
    let long = "#".repeat(traces::text::MAX_LINE + 1);
    rejects(
        &format!("{H}a 0 1 16 16\n{long}\n"),
        3,
        |r| matches!(r, Reason::LineTooLong),
        "line longer than",
    );
    // Garbage without any newline is caught the same way, without buffering it all.
    let garbage = "x".repeat(4 * traces::text::MAX_LINE);
    rejects(
        &format!("{H}{garbage}"),
        2,
        |r| matches!(r, Reason::LineTooLong),
        "line longer than",
    );
}

#[test]
fn comments_anywhere_after_the_header_are_kept() {
    let t = format!("{H}#\n# a comment\na 0 1 16 16\n#no space, any bytes: \u{e9} \t x\n");
    let recs = read_all(t.as_bytes(), "t.hkt").unwrap();
    assert_eq!(recs.len(), 4);
    assert_eq!(recs[0], Record::Comment(Vec::new()));
    assert_eq!(recs[1], Record::Comment(b" a comment".to_vec()));
}

#[test]
fn reading_stops_at_the_first_error() {
    let t = format!("{H}a 0 1 16 16\nf 0 9\nf 0 1\n");
    let mut r =
        traces::TraceReader::from_reader(std::io::Cursor::new(t.into_bytes()), "t.hkt").unwrap();
    assert!(matches!(r.next_record(), Some(Ok(_))));
    assert!(matches!(r.next_record(), Some(Err(_))));
    assert!(r.next_record().is_none());
}

// --- the binary form ---------------------------------------------------------

fn bin_of(text: &str) -> Vec<u8> {
    let recs = read_all(text.as_bytes(), "t.hkt").unwrap();
    write_all(&recs, Format::Binary, Compression::None)
}

fn bin_error(bytes: &[u8]) -> traces::TraceError {
    match read_all(bytes, "t.hkb") {
        Ok(r) => panic!("accepted {} records of a bad binary trace", r.len()),
        Err(e) => e,
    }
}

#[test]
fn binary_bad_version() {
    let mut b = bin_of(H);
    b[4] = 9;
    let e = bin_error(&b);
    assert_eq!(e.line, Some(1));
    assert!(matches!(e.reason, Reason::UnsupportedVersion(9)), "{e}");
}

#[test]
fn binary_truncated() {
    let b = bin_of(&format!("{H}a 0 1 16 16\na 0 2 16 16\n"));
    // Without the end record (2 bytes: tag, count = 2).
    let e = bin_error(&b[..b.len() - 2]);
    assert_eq!(e.line, Some(4));
    assert!(matches!(e.reason, Reason::Truncated), "{e}");
    assert_eq!(
        e.to_string(),
        "t.hkb:4: truncated binary trace (no end record)"
    );
}

#[test]
fn binary_trailing_data() {
    let mut b = bin_of(&format!("{H}a 0 1 16 16\n"));
    b.push(0);
    let e = bin_error(&b);
    assert!(matches!(e.reason, Reason::TrailingData), "{e}");
    assert_eq!(e.line, Some(3));
}

#[test]
fn binary_bad_tag() {
    let mut b = bin_of(H);
    let end = b.len() - 2;
    b[end] = 0x06; // kind 6 is unassigned
    let e = bin_error(&b);
    assert!(matches!(e.reason, Reason::BadTag(6)), "{e}");
    assert_eq!(e.line, Some(2));
}

#[test]
fn binary_end_count_mismatch() {
    let mut b = bin_of(&format!("{H}a 0 1 16 16\n"));
    let n = b.len();
    b[n - 1] = 5;
    let e = bin_error(&b);
    assert!(
        matches!(
            e.reason,
            Reason::CountMismatch {
                announced: 5,
                read: 1
            }
        ),
        "{e}"
    );
}

#[test]
fn binary_errors_point_at_the_text_line() {
    // A valid binary file of "a 1; a 2", then patch the second record into a
    // reuse of id 1: the validator rejects it at line 3, as it would in text.
    let b = bin_of(&format!("{H}a 0 1 16 16\na 0 2 16 16\n"));
    // Records: [tag=a|SAME_TID|NEXT_ID|SAME_ALIGN, size] twice, then end.
    let mut patched = b[..5 + 2].to_vec();
    // a, SAME_TID|SAME_ALIGN, explicit id delta zigzag(1 - 2) = 1, size 16.
    patched.extend_from_slice(&[0b0010_1000, 1, 16, 0x07, 2]);
    let e = bin_error(&patched);
    assert_eq!(e.line, Some(3));
    assert!(matches!(e.reason, Reason::ReusedId(1)), "{e}");
}

#[test]
fn text_that_looks_binary_but_is_not() {
    // A NUL first byte without the rest of the magic is read as text.
    rejects(
        "\0hkx\n",
        1,
        |r| matches!(r, Reason::MissingHeader),
        "missing header",
    );
}
