//! Conversions without loss: text → binary → text is byte-identical on
//! generated traces and on random valid traces (proptest), and readers
//! never panic on arbitrary bytes.

/// The tests run on hakmem (the product runs on itself).
#[global_allocator]
static GLOBAL: hakmem::Hakmem = hakmem::Hakmem;

mod common;

use common::{build, read_all, text_via_binary, write_all, Step};
use proptest::prelude::*;
use traces::compress::Compression;
use traces::synth::{Larson, LarsonGen, RandomMixed, RandomMixedGen};
use traces::{Format, Record};

fn text_of(records: &[Record]) -> Vec<u8> {
    write_all(records, Format::Text, Compression::None)
}

#[test]
fn random_mixed_text_binary_text_is_byte_identical() {
    let gen = RandomMixedGen::new(RandomMixed {
        cycles: 50_000,
        ws: 256,
        seed: 7,
        min: 16,
        max: 1040,
    })
    .unwrap();
    let text = text_of(&gen.collect::<Vec<_>>());
    assert_eq!(text_via_binary(&text), text);
}

#[test]
fn larson_text_binary_text_is_byte_identical() {
    let gen = LarsonGen::new(Larson {
        threads: 4,
        slots: 500,
        rounds: 6,
        ops: 500,
        ..Larson::default()
    })
    .unwrap();
    let text = text_of(&gen.collect::<Vec<_>>());
    assert_eq!(text_via_binary(&text), text);
}

#[test]
fn spec_example_round_trips_byte_identical() {
    let text = b"hktrace 1\n# python3 -c 'print(1)' (excerpt)\na 0 1 24 16\na 0 2 1024 16\nz 0 3 96 16\nr 0 1 4 48 16\nf 0 2\na 1 5 32 16\nf 1 4\n";
    let recs = read_all(text, "ex.hkt").unwrap();
    assert_eq!(recs.len(), 8);
    assert_eq!(text_via_binary(text), text.to_vec());
}

#[test]
fn extreme_values_round_trip() {
    let text = b"hktrace 1\na 0 18446744073709551615 18446744073709551615 9223372036854775808\nz 1 1 0 1\nr 1 18446744073709551615 9223372036854775807 0 1\nf 0 1\nf 1 9223372036854775807\n";
    assert_eq!(text_via_binary(text), text.to_vec());
}

#[test]
fn binary_is_much_smaller_than_text() {
    let gen = RandomMixedGen::new(RandomMixed {
        cycles: 20_000,
        ..RandomMixed::default()
    })
    .unwrap();
    let recs: Vec<Record> = gen.collect();
    let text = text_of(&recs);
    let bin = write_all(&recs, Format::Binary, Compression::None);
    assert!(
        bin.len() * 3 < text.len(),
        "binary {} vs text {}",
        bin.len(),
        text.len()
    );
}

fn step() -> impl Strategy<Value = Step> {
    (
        0u8..5,
        any::<u64>(),
        prop_oneof![0u64..2048, any::<u64>()],
        prop_oneof![Just(4u8), 0u8..64],
        0u8..6,
        proptest::collection::vec(any::<u8>(), 0..20),
    )
        .prop_map(|(kind, pick, size, align_log, thread, comment)| Step {
            kind,
            pick,
            size,
            align_log,
            thread,
            comment,
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_valid_traces_round_trip(steps in proptest::collection::vec(step(), 0..200)) {
        let recs = build(&steps);
        let text = text_of(&recs);
        // The reader accepts what the writer writes …
        prop_assert_eq!(&read_all(&text, "p.hkt").unwrap(), &recs);
        // … and text → binary → text gives the same bytes.
        prop_assert_eq!(text_via_binary(&text), text);
        // Compressed binary reads back the same records.
        let zb = write_all(&recs, Format::Binary, Compression::Zstd);
        prop_assert_eq!(&read_all(&zb, "p.hkb.zst").unwrap(), &recs);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = read_all(&bytes, "junk");
        let mut t = b"hktrace 1\n".to_vec();
        t.extend_from_slice(&bytes);
        let _ = read_all(&t, "junk.hkt");
        let mut b = vec![0, b'h', b'k', b'b', 1];
        b.extend_from_slice(&bytes);
        let _ = read_all(&b, "junk.hkb");
    }

    #[test]
    fn mutated_binary_never_panics(steps in proptest::collection::vec(step(), 1..50), at in any::<usize>(), byte in any::<u8>()) {
        let recs = build(&steps);
        let mut b = write_all(&recs, Format::Binary, Compression::None);
        let i = at % b.len();
        b[i] = byte;
        let _ = read_all(&b, "m.hkb");
        b.truncate(i);
        prop_assert!(read_all(&b, "m.hkb").is_err());
    }

    /// Every text the reader accepts is canonical: a mutated valid trace is
    /// either rejected (with a line, no panic) or converts back to exactly
    /// its own bytes.
    #[test]
    fn accepted_text_is_canonical(
        steps in proptest::collection::vec(step(), 1..40),
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4),
    ) {
        let mut text = text_of(&build(&steps));
        for (at, byte) in edits {
            let i = at % text.len();
            // Favour the bytes that matter to the syntax.
            text[i] = match byte % 8 {
                0 => b' ',
                1 => b'\n',
                2 => b'0',
                3 => b'\r',
                4 => b'#',
                _ => byte,
            };
        }
        match read_all(&text, "m.hkt") {
            Ok(_) => prop_assert_eq!(text_via_binary(&text), text),
            Err(e) => prop_assert!(e.line.is_some()),
        }
    }
}
