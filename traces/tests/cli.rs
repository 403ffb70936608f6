//! The `hktrace` command as a user meets it: exit codes, `file:line: reason`
//! messages, JSON output, conversions, and no panics on bad input.

/// The tests run on hakmem (the product runs on itself).
#[global_allocator]
static GLOBAL: hakmem::Hakmem = hakmem::Hakmem;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn hktrace(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hktrace"))
        .args(args)
        .output()
        .expect("run hktrace")
}

fn dir() -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli");
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn bad_input_gives_file_line_reason_and_exit_1() {
    let p = dir().join("bad.hkt");
    std::fs::write(&p, "hktrace 1\na 0 1 16 16\nf 0 9\n").unwrap();
    for cmd in ["validate", "stats"] {
        let o = hktrace(&[cmd, s(&p)]);
        assert_eq!(o.status.code(), Some(1), "{cmd}");
        assert_eq!(
            stderr(&o),
            format!(
                "{}:3: free of id 9, which is not live (never allocated)\n",
                s(&p)
            ),
            "{cmd}"
        );
    }
}

#[test]
fn validate_json_reports_the_error_line() {
    let p = dir().join("bad_json.hkt");
    std::fs::write(&p, "hktrace 1\na 0 1 16 16\na 2 2 16 16\n").unwrap();
    let o = hktrace(&["validate", "--json", s(&p)]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["valid"], false);
    assert_eq!(v["line"], 3);
    assert_eq!(
        v["reason"],
        "tid 2 skips ahead of the next unused thread number 1"
    );
    assert_eq!(v["events"], 1);
}

#[test]
fn garbage_and_missing_files_do_not_panic() {
    let p = dir().join("garbage.bin");
    let junk: Vec<u8> = (0..5000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(&p, junk).unwrap();
    for args in [
        vec!["validate", s(&p)],
        vec!["stats", "--json", s(&p)],
        vec!["validate", "/nonexistent/x.hkt"],
    ] {
        let o = hktrace(&args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        let e = stderr(&o);
        assert!(!e.contains("panicked"), "{e}");
        assert!(
            e.contains(args[args.len() - 1]),
            "message names the file: {e}"
        );
    }
}

#[test]
fn validate_and_stats_json_on_a_good_trace() {
    let p = dir().join("good.hkt");
    std::fs::write(
        &p,
        "hktrace 1\n# c\na 0 1 24 16\na 0 2 1024 16\nz 0 3 96 16\nr 0 1 4 48 16\nf 0 2\na 1 5 32 16\nf 1 4\n",
    )
    .unwrap();
    let o = hktrace(&["validate", s(&p)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("valid: 9 lines, 7 events, 1 comments, 2 threads"),
        "{out}"
    );

    let o = hktrace(&["stats", "--json", s(&p)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["events"], 7);
    assert_eq!(v["threads"], 2);
    assert_eq!(v["allocs"], 3);
    assert_eq!(v["zeroed"], 1);
    assert_eq!(v["reallocs"], 1);
    assert_eq!(v["frees"], 2);
    assert_eq!(v["remote_frees"], 1); // line 9: block 4 from thread 0 freed by 1
    assert_eq!(v["realloc_grow"], 1);
    // Peak: 24 + 1024 + 96 = 1144 before the realloc shrinks nothing away:
    // after r: 1024 + 96 + 48 = 1168.
    assert_eq!(v["peak_live_bytes"], 1168);
    assert_eq!(v["peak_live_blocks"], 3);
    assert_eq!(v["format"], "text");

    let o = hktrace(&["stats", s(&p)]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("peak live bytes   1168"));
}

#[test]
fn convert_round_trip_is_byte_identical_and_failures_leave_no_output() {
    let d = dir();
    let text = d.join("l.hkt");
    let o = hktrace(&[
        "synth",
        "larson",
        "--threads",
        "3",
        "--rounds",
        "3",
        "--ops",
        "300",
        "-o",
        s(&text),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let bin = d.join("l.hkb.zst");
    let back = d.join("l.back.hkt.gz");
    let plain = d.join("l.back.hkt");
    for (a, b) in [(&text, &bin), (&bin, &back), (&back, &plain)] {
        let o = hktrace(&["convert", s(a), s(b)]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    assert_eq!(
        std::fs::read(&text).unwrap(),
        std::fs::read(&plain).unwrap()
    );

    // --to overrides an unknown extension; an unknown one without it fails.
    let o = hktrace(&["convert", s(&text), s(&d.join("l.out"))]);
    assert_eq!(o.status.code(), Some(1));
    let o = hktrace(&["convert", "--to", "binary", s(&text), s(&d.join("l.out"))]);
    assert!(o.status.success(), "{}", stderr(&o));

    // Bad input: error with a line, and neither output nor temp file left.
    let bad = d.join("bad2.hkt");
    std::fs::write(&bad, "hktrace 1\na 0 1 16 16\na 0 1 16 16\n").unwrap();
    let out = d.join("bad2.hkb");
    let _ = std::fs::remove_file(&out);
    let o = hktrace(&["convert", s(&bad), s(&out)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).ends_with(":3: reused id 1\n"), "{}", stderr(&o));
    assert!(!out.exists());
    assert!(!d.join("bad2.hkb.tmp").exists());
}

#[test]
fn synth_is_deterministic() {
    let d = dir();
    let a = d.join("rm1.hkt");
    let b = d.join("rm2.hkt");
    for p in [&a, &b] {
        let o = hktrace(&[
            "synth",
            "random_mixed",
            "--cycles",
            "5000",
            "--ws",
            "64",
            "--seed",
            "9",
            "-o",
            s(p),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    let o = hktrace(&["synth", "random_mixed", "--seed", "0", "-o", s(&a)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("seed"));
}

#[test]
fn check_of_an_empty_trace_checks_nothing() {
    let p = dir().join("any.hkt");
    std::fs::write(&p, "hktrace 1\n").unwrap();
    let o = hktrace(&["check", s(&p)]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(out.lines().last(), Some("checked 0 events, 0 divergences"));
}

#[test]
fn replay_reports_every_allocator_with_the_noop_baseline() {
    let p = dir().join("replay.hkt");
    // Thread 1 frees and reallocs blocks of thread 0: cross-thread waits.
    std::fs::write(
        &p,
        "hktrace 1\na 0 1 24 16\nz 0 2 10000 4096\na 1 3 0 16\nr 1 1 4 5000 16\nf 1 2\nf 0 3\n",
    )
    .unwrap();
    for alloc in ["hakmem", "system", "mimalloc", "jemalloc", "noop"] {
        let o = hktrace(&["replay", s(&p), "--alloc", alloc, "--json"]);
        assert_eq!(o.status.code(), Some(0), "{alloc}: {}", stderr(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["alloc"], alloc);
        assert_eq!(v["events"], 6);
        assert_eq!(v["threads"], 2);
        assert!(v["peak_rss_kib"].as_u64().unwrap() > 0);
        assert!(v["ops_per_sec"].as_f64().unwrap() > 0.0);
        assert_eq!(v["baseline"].is_object(), alloc != "noop", "{v}");
        let text = hktrace(&["replay", s(&p), "--alloc", alloc]);
        assert_eq!(text.status.code(), Some(0));
        let out = String::from_utf8_lossy(&text.stdout);
        assert!(out.contains("noop"), "{out}");
    }
}

#[test]
fn replay_passes_time_the_warm_passes_and_report_the_first_apart() {
    let p = dir().join("replay_passes.hkt");
    std::fs::write(
        &p,
        "hktrace 1\na 0 1 24 16\nz 0 2 10000 4096\na 1 3 0 16\nr 1 1 4 5000 16\nf 1 2\nf 0 3\n",
    )
    .unwrap();
    let json = |args: &[&str]| -> serde_json::Value {
        let mut all = vec!["replay", s(&p), "--alloc", "hakmem", "--json"];
        all.extend_from_slice(args);
        let o = hktrace(&all);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        serde_json::from_slice(&o.stdout).unwrap()
    };
    // One pass: it is the figure.
    let v = json(&[]);
    assert_eq!(
        (v["repeat"].as_u64(), v["timed_events"].as_u64()),
        (Some(1), Some(6))
    );
    assert!(v["first_pass"]["ns_per_op"].as_f64().unwrap() > 0.0);
    // Three passes: the two after the first are timed.
    let v = json(&["--repeat", "3"]);
    assert_eq!(
        (v["repeat"].as_u64(), v["timed_events"].as_u64()),
        (Some(3), Some(12))
    );
    // 100 events after the first pass of 6: 17 warm passes, 18 in all.
    let v = json(&["--min-events", "100"]);
    assert_eq!(
        (v["repeat"].as_u64(), v["timed_events"].as_u64()),
        (Some(18), Some(102))
    );
    assert!(
        v["first_pass_minflt"].is_u64() && v["minflt"].is_u64(),
        "{v}"
    );
}

#[test]
fn replay_of_bad_input_gives_file_line_reason() {
    let p = dir().join("replay_bad.hkt");
    std::fs::write(&p, "hktrace 1\na 0 1 16 16\nf 0 9\n").unwrap();
    let o = hktrace(&["replay", s(&p), "--alloc", "hakmem"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        format!(
            "{}:3: free of id 9, which is not live (never allocated)\n",
            s(&p)
        )
    );
    let huge = dir().join("replay_huge.hkt");
    std::fs::write(&huge, format!("hktrace 1\na 0 1 {} 16\n", u64::MAX)).unwrap();
    let o = hktrace(&["replay", s(&huge), "--alloc", "system"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).starts_with(&format!("{}:2: size", s(&huge))),
        "{}",
        stderr(&o)
    );
    let o = hktrace(&["replay", s(&p), "--alloc", "tcmalloc"]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "unknown allocator is a usage error"
    );
}

#[test]
fn record_without_the_library_says_where_it_looked() {
    let out = dir().join("rec.hkt");
    let o = hktrace(&[
        "record",
        "--lib",
        "/nonexistent/libhakmem.so",
        "-o",
        s(&out),
        "--",
        "true",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("/nonexistent/libhakmem.so: the preload library is missing"),
        "{}",
        stderr(&o)
    );
    assert!(!out.exists());
}

#[test]
fn record_runs_the_command_under_the_contract_and_summarises_every_file() {
    // A stand-in for the preload library (an empty file: the dynamic
    // loader reports it and goes on) and a command that writes what the
    // library would: the root's trace at $HAKMEM_TRACE, a child's at
    // $HAKMEM_TRACE.<pid>.
    let d = dir().join("record");
    std::fs::create_dir_all(&d).unwrap();
    let lib = d.join("libfake.so");
    std::fs::write(&lib, b"").unwrap();
    let out = d.join("run.hkt");
    std::fs::write(d.join("run.hkt.99"), "stale").unwrap();
    let script = r#"test -z "$HAKMEM_TRACE_PID" || exit 9
case "$LD_PRELOAD" in */libfake.so*) ;; *) exit 8;; esac
printf 'hktrace 1\na 0 1 8 16\na 1 2 8 16\nf 1 1\n' > "$HAKMEM_TRACE"
printf 'hktrace 1\nz 0 1 64 16\n' > "$HAKMEM_TRACE.4242""#;
    let o = Command::new(env!("CARGO_BIN_EXE_hktrace"))
        .args(["record", "--json", "--lib", s(&lib), "-o", s(&out), "--"])
        .args(["sh", "-c", script])
        .env("HAKMEM_TRACE_PID", "1")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let files: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["file"].as_str().unwrap())
        .collect();
    assert_eq!(
        files,
        [s(&out).to_string(), format!("{}.4242", s(&out))],
        "the stale .99 file is removed first"
    );
    assert_eq!(v[0]["events"], 3);
    assert_eq!(v[0]["threads"], 2);
    assert_eq!(v[1]["events"], 1);

    // A command that fails: the trace is still summarised, the exit is 1.
    let o = Command::new(env!("CARGO_BIN_EXE_hktrace"))
        .args(["record", "--lib", s(&lib), "-o", s(&out), "--"])
        .args([
            "sh",
            "-c",
            "printf 'hktrace 1\\n' > \"$HAKMEM_TRACE\"; exit 3",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stdout).contains("run.hkt"));
    assert!(stderr(&o).contains("exit status: 3"), "{}", stderr(&o));

    // A bad trace is reported as file:line: reason.
    let o = Command::new(env!("CARGO_BIN_EXE_hktrace"))
        .args(["record", "--lib", s(&lib), "-o", s(&out), "--"])
        .args([
            "sh",
            "-c",
            "printf 'hktrace 1\\nf 0 1\\n' > \"$HAKMEM_TRACE\"",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains(&format!("{}:2: free of id 1", s(&out))),
        "{}",
        stderr(&o)
    );
}
