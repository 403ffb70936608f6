//! The corpus (`traces/corpus/`): every trace has a manifest entry whose
//! figures `hktrace stats` reproduces, converts text → binary → text byte for
//! byte, is replayed to the end on every built-in allocator, and — for
//! synthetic ones — is regenerated identically by its command.

/// The tests run on hakmem (the product runs on itself).
#[global_allocator]
static GLOBAL: hakmem::Hakmem = hakmem::Hakmem;

mod common;

use common::text_via_binary;
use serde_json::Value;
use std::io::Read;
use std::path::{Path, PathBuf};
use traces::replay::{self, AllocName};
use traces::{stats, TraceReader};

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus")
}

fn manifest() -> Vec<Value> {
    let text = std::fs::read_to_string(corpus().join("manifest.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    v["traces"].as_array().unwrap().clone()
}

/// The bytes of `path` after decompression.
fn decompressed(path: &Path) -> Vec<u8> {
    let f = std::fs::File::open(path).unwrap();
    let (_, mut r) = traces::compress::decompress(f).unwrap();
    let mut out = Vec::new();
    r.read_to_end(&mut out).unwrap();
    out
}

#[test]
fn every_corpus_file_has_a_manifest_entry() {
    let listed: Vec<String> = manifest()
        .iter()
        .map(|e| e["file"].as_str().unwrap().to_owned())
        .collect();
    assert!(!listed.is_empty());
    for entry in std::fs::read_dir(corpus()).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        // The manifest and the script that re-records the real programs.
        if name != "manifest.json" && name != "record.sh" {
            assert!(listed.contains(&name), "{name} has no manifest entry");
        }
    }
}

#[test]
fn manifest_figures_match_stats() {
    for e in manifest() {
        let file = e["file"].as_str().unwrap();
        let mut r = TraceReader::open(&corpus().join(file)).unwrap();
        let s = stats::collect(&mut r, |_| {}).unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(e["events"], s.events, "{file}: events");
        assert_eq!(e["threads"], s.threads, "{file}: threads");
        assert_eq!(
            e["peak_live_bytes"], s.peak_live_bytes,
            "{file}: peak live bytes"
        );
        assert_eq!(
            e["peak_live_blocks"], s.peak_live_blocks,
            "{file}: peak live blocks"
        );
    }
}

#[test]
fn corpus_text_binary_text_is_byte_identical() {
    for e in manifest() {
        let file = e["file"].as_str().unwrap();
        let text = decompressed(&corpus().join(file));
        assert!(text.starts_with(b"hktrace 1\n"), "{file} is stored as text");
        assert!(text_via_binary(&text) == text, "{file}: round trip differs");
    }
}

#[test]
fn synthetic_corpus_regenerates_identically() {
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("corpus-regen");
    std::fs::create_dir_all(&out).unwrap();
    for e in manifest() {
        if e["source"] != "synthetic" {
            continue;
        }
        let file = e["file"].as_str().unwrap();
        let cmd = e["command"].as_str().unwrap();
        let mut args: Vec<String> = cmd.split_whitespace().skip(1).map(String::from).collect();
        let o = args.iter().position(|a| a == "-o").unwrap();
        args[o + 1] = out.join(file).to_str().unwrap().to_owned();
        let st = std::process::Command::new(env!("CARGO_BIN_EXE_hktrace"))
            .args(&args)
            .output()
            .unwrap();
        assert!(
            st.status.success(),
            "{cmd}: {}",
            String::from_utf8_lossy(&st.stderr)
        );
        assert!(
            decompressed(&out.join(file)) == decompressed(&corpus().join(file)),
            "{file}: `{cmd}` no longer produces it"
        );
    }
}

/// `hktrace replay` on every allocator (issue 5's acceptance): every corpus
/// trace runs to the end with its manifest's event and thread counts.
#[test]
fn corpus_replays_on_every_allocator() {
    for e in manifest() {
        let file = e["file"].as_str().unwrap();
        let mut r = TraceReader::open(&corpus().join(file)).unwrap();
        let t = replay::load(&mut r, file, |_| {}).unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(e["events"], t.events, "{file}: events loaded");
        assert_eq!(e["threads"], t.threads.len() as u64, "{file}: threads");
        for alloc in AllocName::ALL {
            let o = replay::run_on(&t, alloc, None)
                .unwrap_or_else(|err| panic!("{file} on {}: {err}", alloc.as_str()));
            assert_eq!(e["events"], o.events, "{file} on {}", alloc.as_str());
            assert!(o.wall.as_nanos() > 0, "{file} on {}", alloc.as_str());
        }
    }
}
