//! `hktrace check` (lockstep replay against the model): every corpus trace
//! passes with the manifest's figures, and the checker catches wrong
//! programs: a corrupted trace (clear error, line and reason, exit 1) and an
//! injected implementation bug (a mutant backend of `verify`), reported at
//! the first divergent line.
//!
//! CI budget: the largest corpus traces are checked on a prefix of
//! [`PREFIX`] events (their figures, which pass 1 measures over the whole
//! file, are still compared with the manifest in full); docs/traces.md says
//! which.

/// The tests run on hakmem (the product runs on itself).
#[global_allocator]
static GLOBAL: hakmem::Hakmem = hakmem::Hakmem;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use traces::check::{self, CheckError, Options};
use traces::TraceReader;
use verify::backends::record::{mutants, Record};

/// Events replayed per corpus trace at most (the rest is validated and
/// measured only): keeps this test within CI's budget on a loaded 2-core
/// machine. Traces with more events are checked on this prefix.
const PREFIX: u64 = 400_000;

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus")
}

fn manifest() -> Vec<Value> {
    let text = std::fs::read_to_string(corpus().join("manifest.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    v["traces"].as_array().unwrap().clone()
}

fn dir() -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("check");
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn hktrace(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hktrace"))
        .args(args)
        .output()
        .expect("run hktrace")
}

fn opts(limit: Option<u64>) -> Options {
    Options {
        limit,
        instance: hakmem::InstanceConfig {
            purge_delay_ms: u64::MAX,
            ..hakmem::InstanceConfig::DEFAULT
        },
        ..Options::default()
    }
}

fn check_file<B: hakmem::sync::Backend>(
    path: &Path,
    o: &Options,
) -> Result<check::Report, CheckError> {
    check::check::<B>(
        &path.display().to_string(),
        || TraceReader::open(path),
        o,
        |_, _| {},
    )
}

#[test]
fn every_corpus_trace_checks_with_the_manifest_figures() {
    for e in manifest() {
        let file = e["file"].as_str().unwrap();
        let start = std::time::Instant::now();
        let rep = check_file::<Record>(&corpus().join(file), &opts(Some(PREFIX)))
            .unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(e["events"], rep.events, "{file}: events");
        assert_eq!(e["threads"], rep.threads, "{file}: threads");
        assert_eq!(
            e["peak_live_bytes"], rep.peak_live_bytes,
            "{file}: peak live bytes"
        );
        assert_eq!(
            e["peak_live_blocks"], rep.peak_live_blocks,
            "{file}: peak live blocks"
        );
        assert_eq!(rep.checked, rep.events.min(PREFIX), "{file}: checked");
        assert!(rep.full_checks >= 1 && rep.steps > 0, "{file}: {rep:?}");
        eprintln!(
            "{file}: checked {} of {} events in {:.2?}",
            rep.checked,
            rep.events,
            start.elapsed()
        );
    }
}

#[test]
fn cli_success_ends_with_the_summary_line_and_json_parses() {
    let p = dir().join("small.hkt");
    // Thread 1 frees thread 0's blocks after thread 0's last event (an
    // exited thread's blocks), a large block, an aligned one, reallocs in
    // place and moved.
    std::fs::write(
        &p,
        "hktrace 1\na 0 1 24 16\na 0 2 100000 16\nz 0 3 64 4096\nr 0 1 4 30 16\na 0 5 16 16\na 1 6 40 16\nr 1 4 7 5000 16\nf 1 2\nf 1 3\nf 1 7\nf 1 5\n",
    )
    .unwrap();
    let o = hktrace(&["check", p.to_str().unwrap()]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        out.lines().last(),
        Some("checked 11 events, 0 divergences"),
        "{out}"
    );
    let o = hktrace(&["check", "--json", "--full-every", "1", p.to_str().unwrap()]);
    assert!(o.status.success());
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["divergences"], 0);
    assert_eq!(v["checked"], 11);
    assert_eq!(v["threads"], 2);
    assert_eq!(v["large_allocs"], 1);
    assert_eq!(v["realloc_in_place"], 1);
    assert_eq!(v["realloc_moved"], 1);
    assert_eq!(v["frees_after_exit"], 3);
    // --full-every 1: every event compared in full.
    assert_eq!(v["touched_checks"], 0);
}

#[test]
fn corrupted_trace_is_a_clear_error_with_line_and_reason() {
    let p = dir().join("corrupt.hkt");
    std::fs::write(&p, "hktrace 1\na 0 1 16 16\na 0 2 32 16\nf 0 9\nf 0 1\n").unwrap();
    let o = hktrace(&["check", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        format!(
            "{}:4: free of id 9, which is not live (never allocated)\n",
            p.display()
        )
    );
    // Garbage and truncation: errors, never a panic (exit 101).
    for (name, body) in [
        ("garbage.hkt", &b"\x00\x01\x02hello"[..]),
        ("trunc.hkt", &b"hktrace 1\na 0 1 16"[..]),
        ("empty.hkt", &b""[..]),
    ] {
        let p = dir().join(name);
        std::fs::write(&p, body).unwrap();
        let o = hktrace(&["check", p.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(1), "{name}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.starts_with(&p.display().to_string()), "{name}: {err}");
    }
}

/// A trace that fills pages of one class, frees some remotely and exits
/// threads with live blocks: enough protocol for the mutants below.
fn mutant_trace() -> PathBuf {
    let p = dir().join("mutant.hkt");
    let mut s = String::from("hktrace 1\n");
    let mut id = 0u64;
    let mut alloc = |s: &mut String, t: u32| {
        id += 1;
        // 8 KiB blocks: 7 or 8 to a 64 KiB page, so pages fill quickly.
        *s += &format!("a {t} {id} 8192 16\n");
        id
    };
    let free = |s: &mut String, t: u32, b: u64| *s += &format!("f {t} {b}\n");
    // Thread 0 fills several pages; thread 1 frees every other block
    // (remote frees to full pages).
    let mut a: Vec<u64> = (0..40).map(|_| alloc(&mut s, 0)).collect();
    alloc(&mut s, 1);
    let remote: Vec<u64> = a.iter().copied().step_by(2).collect();
    a.retain(|b| !remote.contains(b));
    for b in remote {
        free(&mut s, 1, b);
    }
    // Thread 0 allocates again (drains the remote frees), frees some locally.
    a.extend((0..30).map(|_| alloc(&mut s, 0)));
    for b in a.drain(..15) {
        free(&mut s, 0, b);
    }
    // Thread 0 ends here with live blocks (abandoned pages); thread 2
    // allocates (reclaims) and frees the rest.
    for _ in 0..20 {
        alloc(&mut s, 2);
    }
    for b in a.drain(..) {
        free(&mut s, 2, b);
    }
    std::fs::write(&p, s).unwrap();
    p
}

/// The line and index a mutant diverges at; the prefix before it checks
/// clean with the same mutant (so the line is the first divergent one).
fn first_divergence<B: hakmem::sync::Backend>(p: &Path, full_every: u64) -> Option<(u64, u64)> {
    let o = Options {
        full_every,
        ..opts(None)
    };
    match check_file::<B>(p, &o) {
        Ok(_) => None,
        Err(CheckError::Divergence {
            line,
            index,
            event,
            divergence,
            ..
        }) => {
            let msg = divergence.to_string();
            assert!(!msg.is_empty() && !event.is_empty());
            let before = Options {
                limit: Some(index),
                ..o
            };
            check_file::<B>(p, &before)
                .unwrap_or_else(|e| panic!("the prefix before line {line} diverges too: {e}"));
            Some((line, index))
        }
        Err(e) => panic!("not a divergence: {e}"),
    }
}

#[test]
fn injected_bugs_are_reported_at_the_first_divergent_line() {
    let p = mutant_trace();
    check_file::<Record>(&p, &opts(None)).unwrap_or_else(|e| panic!("{e}"));
    let mut caught = Vec::new();
    macro_rules! run {
        ($($m:ident),*) => {$(
            // Touched-parts mode (the default) and whole-state mode must
            // both catch it, at the same line.
            let a = first_divergence::<mutants::$m>(&p, 65_536);
            let b = first_divergence::<mutants::$m>(&p, 1);
            if let (Some(a), Some(b)) = (a, b) {
                assert_eq!(a, b, "{}: touched vs full", stringify!($m));
                caught.push((stringify!($m), a.0));
            } else {
                assert_eq!(a.is_some(), b.is_some(), "{}", stringify!($m));
            }
        )*};
    }
    run!(
        PageFullNoRecheck,
        AbandonKeepsOwner,
        OwnerFromCurrentThread,
        EmptyCountCheckThenAct,
        ReleaseByTotalActive
    );
    eprintln!("caught: {caught:?}");
    assert!(caught.len() >= 2, "only {caught:?} diverged");
}

#[test]
fn a_divergence_message_names_file_line_event_and_both_views() {
    let p = mutant_trace();
    let o = Options {
        full_every: 1,
        ..opts(None)
    };
    let err = check_file::<mutants::AbandonKeepsOwner>(&p, &o)
        .err()
        .or_else(|| check_file::<mutants::PageFullNoRecheck>(&p, &o).err())
        .expect("a mutant diverges");
    let msg = err.to_string();
    let head = format!("{}:", p.display());
    assert!(msg.starts_with(&head), "{msg}");
    assert!(msg.contains("divergence at event #"), "{msg}");
    if let CheckError::Divergence { divergence, .. } = &err {
        if divergence.kind() == "differs" {
            assert!(msg.contains("model:") && msg.contains("impl:"), "{msg}");
        }
    }
}

/// More trace threads than the model's 255 logical threads, one after the
/// other (as a recorder numbers short-lived threads): finished threads'
/// heaps are reused; each thread frees a block of the previous one (a free
/// of a block of an ended thread).
#[test]
fn many_sequential_threads_reuse_heaps() {
    let p = dir().join("threads.hkt");
    let mut s = String::from("hktrace 1\n");
    let mut id = 0u64;
    for t in 0..400u64 {
        id += 1;
        s += &format!("a {t} {id} {} 16\n", 16 + (t % 50) * 16);
        if t > 0 {
            s += &format!("f {t} {}\n", id - 1);
        }
    }
    std::fs::write(&p, s).unwrap();
    let rep = check_file::<Record>(&p, &opts(None)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(rep.threads, 400);
    assert_eq!(rep.checked, 799);
    assert!(
        rep.logical_threads <= 255 && rep.reused_heaps > 0,
        "{rep:?}"
    );
    assert_eq!(rep.frees_after_exit, 399);
}

/// More than 255 trace threads live at once cannot be replayed: a clear
/// error at the line of the first thread too many, not a panic.
#[test]
fn too_many_live_threads_is_a_clear_error() {
    let p = dir().join("live_threads.hkt");
    let mut s = String::from("hktrace 1\n");
    for t in 0..300u64 {
        s += &format!("a {t} {} 16 16\n", t + 1);
    }
    for t in 0..300u64 {
        s += &format!("f {t} {}\n", t + 1);
    }
    std::fs::write(&p, s).unwrap();
    match check_file::<Record>(&p, &opts(None)) {
        Err(CheckError::Unsupported { line, reason, .. }) => {
            assert_eq!(line, 257, "{reason}");
            assert!(reason.contains("255"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

/// A request the replay cannot make (an alignment above 1 GiB) is a clear
/// error at its line, not a panic or a bogus divergence.
#[test]
fn unreplayable_request_is_a_clear_error() {
    let p = dir().join("huge_align.hkt");
    std::fs::write(&p, "hktrace 1\na 0 1 16 16\na 0 2 16 2147483648\n").unwrap();
    let o = hktrace(&["check", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.starts_with(&format!("{}:3: cannot replay: alignment", p.display())),
        "{err}"
    );
}
