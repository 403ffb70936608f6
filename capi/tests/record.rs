//! Record mode (`HAKMEM_TRACE=path`) on real programs: the program's output
//! is unchanged, and every trace file written (the root's `path` and the
//! `path.<pid>` of every child process) is a valid hktrace v1 file according
//! to `hktrace validate` (ids, live blocks, thread numbering, alignments)
//! and passes `hktrace check` (replayed on a hakmem instance in lockstep
//! with the model, one logical thread per recorded thread).

// The product runs on itself.
#[global_allocator]
static GLOBAL: hakmem::Hakmem = hakmem::Hakmem;

mod common;

use common::{have, lib, scratch};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The `hktrace` binary, built once with the same cargo and target dir.
fn hktrace() -> &'static Path {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let target = lib().parent().unwrap().parent().unwrap();
        let st = Command::new(cargo)
            .args([
                "build",
                "-q",
                "--release",
                "-p",
                "traces",
                "--bin",
                "hktrace",
            ])
            .arg("--target-dir")
            .arg(target)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env_remove("LD_PRELOAD")
            .status()
            .expect("run cargo build");
        assert!(st.success(), "cargo build -p traces --bin hktrace failed");
        lib().parent().unwrap().join("hktrace")
    })
}

/// Runs `hktrace SUBCOMMAND file`; returns its stdout (panics unless it
/// exits 0).
fn hktrace_ok(subcommand: &str, file: &Path) -> String {
    let o = Command::new(hktrace())
        .arg(subcommand)
        .arg(file)
        .env_remove("LD_PRELOAD")
        .output()
        .expect("run hktrace");
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "hktrace {subcommand} {}: {out}{}",
        file.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

/// Runs `hktrace validate` on `file`; returns its stdout (panics if invalid).
fn validate(file: &Path) -> String {
    hktrace_ok("validate", file)
}

/// Runs `cmd` preloaded with `HAKMEM_TRACE=<dir>/run.hkt`; returns its stdout
/// and the trace files written, root first.
fn record(dir: &Path, mut cmd: Command) -> (Vec<u8>, Vec<PathBuf>) {
    let root = dir.join("run.hkt");
    let o = cmd
        .env("LD_PRELOAD", lib())
        .env("HAKMEM_TRACE", &root)
        .env_remove("HAKMEM_TRACE_PID")
        .output()
        .expect("spawn");
    assert!(
        o.status.success(),
        "{:?}: {}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p != &root && p.to_string_lossy().contains("run.hkt."))
        .collect();
    files.sort();
    files.insert(0, root);
    (o.stdout, files)
}

/// Runs `hktrace check` on `file`: exit 0 and the summary line, whose
/// event count must be validate's.
fn check(file: &Path, events: u64) {
    let out = hktrace_ok("check", file);
    assert_eq!(
        out.lines().last(),
        Some(format!("checked {events} events, 0 divergences").as_str()),
        "{out}"
    );
}

/// Parses `... N events, ... K threads ...` from validate's summary.
fn figure(summary: &str, what: &str) -> u64 {
    let words: Vec<&str> = summary
        .split([' ', ','])
        .filter(|w| !w.is_empty())
        .collect();
    let i = words
        .iter()
        .position(|w| *w == what)
        .unwrap_or_else(|| panic!("no {what:?} in {summary:?}"));
    words[i - 1].parse().unwrap()
}

#[test]
fn python3_thread_pool_recorded_and_valid() {
    assert!(
        have("python3"),
        "python3 not found (apt-get install -y python3)"
    );
    let dir = scratch("record_python");
    let script = r#"
import concurrent.futures, json, subprocess
def work(i):
    return len(json.dumps([str(j) * (j % 30) for j in range(i * 13 % 700)]))
with concurrent.futures.ThreadPoolExecutor(max_workers=3) as ex:
    total = sum(ex.map(work, range(200)))
subprocess.run(["true"], check=True)
print(total)
"#;
    let mut plain = Command::new("python3");
    plain.args(["-c", script]).env_remove("LD_PRELOAD");
    let want = plain.output().unwrap().stdout;
    let mut c = Command::new("python3");
    c.args(["-c", script]);
    let (out, files) = record(&dir, c);
    assert_eq!(out, want, "recording changed the output");
    assert!(
        files.len() >= 2,
        "expected the subprocess's trace too: {files:?}"
    );
    let mut most_threads = 0;
    for f in &files {
        let s = validate(f);
        check(f, figure(&s, "events"));
        assert!(
            figure(&s, "events") > 0 || f != &files[0],
            "{}: {s}",
            f.display()
        );
        most_threads = most_threads.max(figure(&s, "threads"));
    }
    // The root file is the python process (the pyenv shim, if any, execs it
    // with the same pid): thousands of events, the pool's threads.
    let s = validate(&files[0]);
    assert!(figure(&s, "events") > 10_000, "{s}");
    assert!(most_threads >= 2, "no multi-threaded trace");
}

#[test]
fn sqlite3_recorded_and_valid() {
    assert!(
        have("sqlite3"),
        "sqlite3 not found (apt-get install -y sqlite3)"
    );
    let dir = scratch("record_sqlite");
    let mut sql = String::from("CREATE TABLE t(a INTEGER, b TEXT);\nBEGIN;\n");
    for i in 0..2000 {
        sql += &format!("INSERT INTO t VALUES({i}, '{}');\n", "x".repeat(i % 300));
    }
    sql += "COMMIT;\nSELECT count(*), sum(length(b)) FROM t;\n";
    let script = dir.join("s.sql");
    std::fs::write(&script, sql).unwrap();
    let mut c = Command::new("sqlite3");
    c.arg(dir.join("db"))
        .stdin(std::fs::File::open(&script).unwrap());
    let (out, files) = record(&dir, c);
    assert_eq!(String::from_utf8_lossy(&out).trim(), "2000|289000");
    let s = validate(&files[0]);
    assert!(figure(&s, "events") > 2000, "{s}");
    check(&files[0], figure(&s, "events"));
    assert_eq!(figure(&s, "threads"), 1, "{s}");
    let text = std::fs::read_to_string(&files[0]).unwrap();
    assert!(text.starts_with("hktrace 1\n") && text.ends_with('\n'));
    // malloc writes align 16; every line is one of the four kinds.
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split(' ').collect();
        match f[0] {
            "a" | "z" => assert!(f.len() == 5 && f[4].parse::<u64>().unwrap() >= 16, "{line}"),
            "r" => assert_eq!(f.len(), 6, "{line}"),
            "f" => assert_eq!(f.len(), 3, "{line}"),
            _ => panic!("unexpected line {line:?}"),
        }
    }
}

/// A fork child that leaves through `_exit` runs no exit flush: its file must
/// still be a valid trace (the header is written when the file is opened).
#[test]
fn fork_child_leaving_through_exit_leaves_a_valid_trace() {
    assert!(
        have("python3"),
        "python3 not found (apt-get install -y python3)"
    );
    let dir = scratch("record_fork_exit");
    let script = r#"
import os
pid = os.fork()
if pid == 0:
    b = [bytes(100) for _ in range(10)]
    os._exit(0)
os.waitpid(pid, 0)
print("parent done")
"#;
    let mut c = Command::new("python3");
    c.args(["-c", script]);
    let (out, files) = record(&dir, c);
    assert_eq!(String::from_utf8_lossy(&out).trim(), "parent done");
    // At least the root and the child (a pyenv shim adds its own processes).
    assert!(
        files.len() >= 2,
        "expected the child's trace too: {files:?}"
    );
    // Every file is a whole trace; the `_exit` child's holds at least the
    // header (events still buffered at `_exit` are lost, by design).
    for f in &files {
        let s = validate(f);
        check(f, figure(&s, "events"));
    }
}

/// Every request is recorded, also those hakmem's fast paths would serve
/// (while recording, the fast paths are diverted to the slow paths, where
/// the recorder is): a C program with a known count of each request, from
/// four threads.
#[test]
fn every_request_recorded_including_fast_path_ones() {
    let dir = scratch("record_count");
    let exe = dir.join("record_count");
    common::compile_c("record_count.c", &exe, &[]);
    let (out, files) = record(&dir, Command::new(&exe));
    let mallocs: usize = String::from_utf8_lossy(&out).trim().parse().unwrap();
    assert_eq!(files.len(), 1, "{files:?}");
    let s = validate(&files[0]);
    check(&files[0], figure(&s, "events"));
    assert_eq!(figure(&s, "threads"), 4, "{s}");
    let text = std::fs::read_to_string(&files[0]).unwrap();
    let mut ids_777 = std::collections::HashSet::new();
    let (mut frees_777, mut callocs, mut reallocs, mut realloc_nulls) = (0, 0, 0, 0);
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split(' ').collect();
        match (f[0], f.get(3).copied()) {
            ("a", Some("777")) => assert!(ids_777.insert(f[2].to_string()), "{line}"),
            ("z", Some("999")) => callocs += 1,
            ("a", Some("555")) => realloc_nulls += 1,
            ("r", _) if f[4] == "999" => reallocs += 1,
            ("f", _) if ids_777.contains(f[2]) => frees_777 += 1,
            _ => {}
        }
    }
    let rounds = mallocs / 50;
    assert_eq!(ids_777.len(), mallocs, "malloc(777) lines");
    assert_eq!(frees_777, mallocs, "free lines of those blocks");
    assert_eq!(callocs, rounds, "calloc(3, 333) lines");
    assert_eq!(reallocs, rounds, "realloc(_, 999) lines");
    assert_eq!(realloc_nulls, rounds, "realloc(NULL, 555) lines");
}
