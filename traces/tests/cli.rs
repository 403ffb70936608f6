//! The `hktrace` command as a user meets it: exit codes, `file:line: reason`
//! messages, JSON output, conversions, and no panics on bad input.

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
fn check_and_replay_say_not_available_yet() {
    let p = dir().join("any.hkt");
    std::fs::write(&p, "hktrace 1\n").unwrap();
    for args in [
        vec!["check", s(&p)],
        vec!["replay", s(&p), "--alloc", "system"],
    ] {
        let o = hktrace(&args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        assert!(stderr(&o).contains("not available yet"), "{}", stderr(&o));
    }
}
