//! Building and starting the worker binaries.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::suite::Column;
use crate::worker::{Sample, STAND_IN_TAG};
use crate::workloads::ReplayParams;

/// The workspace root, as it was when the driver was built.
pub fn workspace_root() -> PathBuf {
    let bench = Path::new(env!("CARGO_MANIFEST_DIR"));
    bench.parent().unwrap_or(bench).to_path_buf()
}

/// Writes `text` to `path`, creating its directory first.
pub fn write_file(path: &Path, text: &str) -> Result<(), String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

/// The directory holding the driver, and so the worker binaries.
pub fn bin_dir() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    exe.parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| format!("{} has no parent directory", exe.display()))
}

/// Builds every worker binary (`cargo build --release -p bench --bins`)
/// into the driver's own target directory; cargo does nothing if they are up
/// to date. Uses the `CARGO` that started the driver, else `cargo`.
pub fn build_workers(bin_dir: &Path) -> Result<(), String> {
    if cfg!(debug_assertions) {
        return Err(
            "the driver was built without --release; run `cargo run --release -p bench`".into(),
        );
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    // <target>/release/bench → <target>
    let target_dir = bin_dir
        .parent()
        .ok_or("the driver is not in a cargo target directory")?;
    eprintln!(
        "building the per-allocator binaries (cargo build --release -p bench -p traces --bins)…"
    );
    let status = Command::new(&cargo)
        .args([
            "build",
            "--release",
            "-p",
            "bench",
            "-p",
            "traces",
            "--bins",
            "--target-dir",
        ])
        .arg(target_dir)
        .current_dir(workspace_root())
        .status()
        .map_err(|e| format!("starting {cargo:?}: {e}"))?;
    if !status.success() {
        return Err(format!("cargo build failed: {status}"));
    }
    Ok(())
}

/// Builds `bench-hakmem` with the candidate class table `table` (the
/// build-time variable `HAKMEM_CLASS_TABLE`, see `hakmem::size_class`) in
/// the driver's target directory and copies it to
/// `<target>/class-tables/bench-hakmem-<table>`. Only hakmem, the bench
/// library and this worker are rebuilt. `table = ""` builds it with the
/// variable unset (the production table) and copies nothing.
pub fn build_class_variant(bin_dir: &Path, table: &str) -> Result<PathBuf, String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let target_dir = bin_dir
        .parent()
        .ok_or("the driver is not in a cargo target directory")?;
    eprintln!("building bench-hakmem with HAKMEM_CLASS_TABLE={table:?}…");
    let mut cmd = Command::new(&cargo);
    cmd.args(["build", "--release", "-p", "bench", "--bin", "bench-hakmem"])
        .arg("--target-dir")
        .arg(target_dir)
        .current_dir(workspace_root());
    if table.is_empty() {
        cmd.env_remove("HAKMEM_CLASS_TABLE");
    } else {
        cmd.env("HAKMEM_CLASS_TABLE", table);
    }
    let status = cmd
        .status()
        .map_err(|e| format!("starting {cargo:?}: {e}"))?;
    if !status.success() {
        return Err(format!(
            "cargo build (class table {table}) failed: {status}"
        ));
    }
    if table.is_empty() {
        return Ok(bin_dir.join("bench-hakmem"));
    }
    let dir = target_dir.join("class-tables");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let to = dir.join(format!("bench-hakmem-{table}"));
    std::fs::copy(bin_dir.join("bench-hakmem"), &to)
        .map_err(|e| format!("copy to {}: {e}", to.display()))?;
    Ok(to)
}

/// The worker binary of `column` in `bin_dir`, checked to exist.
pub fn worker_path(bin_dir: &Path, column: &Column) -> Result<PathBuf, String> {
    let p = match column {
        Column::Worker { path, .. } => path.clone(),
        _ => bin_dir.join(column.binary()),
    };
    if p.is_file() {
        Ok(p)
    } else {
        Err(format!(
            "{} not found (build with `cargo build --release -p bench --bins`)",
            p.display()
        ))
    }
}

/// A command for `column`'s worker with `args`, `LD_PRELOAD` set for a
/// preload column and removed otherwise.
pub fn worker_command(bin: &Path, column: &Column, args: &[String]) -> Command {
    let mut cmd = Command::new(bin);
    cmd.args(args);
    match column {
        Column::Preload { path, .. } => cmd.env("LD_PRELOAD", path),
        _ => cmd.env_remove("LD_PRELOAD"),
    };
    cmd
}

/// The `hktrace` binary in `bin_dir`, checked to exist.
pub fn hktrace_path(bin_dir: &Path) -> Result<PathBuf, String> {
    let p = bin_dir.join("hktrace");
    if p.is_file() {
        Ok(p)
    } else {
        Err(format!(
            "{} not found (build with `cargo build --release -p traces --bins`)",
            p.display()
        ))
    }
}

/// `hktrace replay <corpus trace> --alloc <column's> --json --no-baseline
/// --repeat N --min-events M` (the floor column is `--alloc noop`), with
/// `LD_PRELOAD` as for a worker.
pub fn replay_command(hktrace: &Path, column: &Column, p: &ReplayParams) -> Command {
    let trace = workspace_root().join("traces/corpus").join(p.trace);
    let mut args: Vec<String> = vec!["replay".into(), trace.display().to_string()];
    for a in ["--alloc", column.replay_alloc(), "--json", "--no-baseline"] {
        args.push(a.into());
    }
    args.push("--repeat".into());
    args.push(p.repeat.to_string());
    args.push("--min-events".into());
    args.push(p.min_events.to_string());
    worker_command(hktrace, column, &args)
}

/// A [`Sample`] from `hktrace replay --json`'s output: the timed (warm)
/// passes' events and time; the page faults of every pass, the first (cold)
/// included, so that first-touch costs stay visible in the report.
pub fn parse_replay(stdout: &str) -> Result<Sample, String> {
    let v: serde_json::Value =
        serde_json::from_str(stdout).map_err(|e| format!("hktrace replay --json: {e}"))?;
    let int = |k: &str| v[k].as_u64().ok_or(format!("hktrace replay: no {k}"));
    let s = Sample {
        ops: int("timed_events")?,
        secs: v["wall_secs"]
            .as_f64()
            .ok_or("hktrace replay: no wall_secs")?,
        maxrss_kib: int("peak_rss_kib")?,
        minflt: int("minflt")? + int("first_pass_minflt")?,
    };
    if s.ops == 0 || !(s.secs > 0.0 && s.secs.is_finite()) {
        return Err(format!("empty replay measurement: {stdout}"));
    }
    Ok(s)
}

/// What one worker run gave.
#[derive(Clone, Debug)]
pub struct RunOutput {
    /// The measurement.
    pub sample: Sample,
    /// The worker's stand-in line, if it printed one.
    pub stand_in: Option<String>,
}

/// Runs `cmd` to completion (killing it after `timeout`) and parses its
/// result line.
pub fn run_worker(cmd: Command, timeout: Duration) -> Result<RunOutput, String> {
    run_parsed(cmd, timeout, Sample::parse)
}

/// Runs `hktrace replay … --json` like a worker and parses its JSON.
pub fn run_replay(cmd: Command, timeout: Duration) -> Result<RunOutput, String> {
    run_parsed(cmd, timeout, parse_replay)
}

fn run_parsed(
    mut cmd: Command,
    timeout: Duration,
    parse: fn(&str) -> Result<Sample, String>,
) -> Result<RunOutput, String> {
    cmd.stdin(Stdio::null());
    let done = run_child(cmd, timeout)?;
    done.check()?;
    let sample = parse(&done.stdout)?;
    let stand_in = done
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix(STAND_IN_TAG))
        .map(|s| s.trim().to_string());
    Ok(RunOutput { sample, stand_in })
}

/// How a child process ended, with what it printed and used.
#[derive(Clone, Debug)]
pub struct Finished {
    /// The `wait4` status word.
    pub status: i32,
    /// Its stdout.
    pub stdout: String,
    /// Its stderr.
    pub stderr: String,
    /// Peak resident set of the child, KiB (`ru_maxrss`).
    pub maxrss_kib: u64,
    /// Minor page faults of the child (`ru_minflt`).
    pub minflt: u64,
    /// From spawn to exit.
    pub wall: Duration,
}

impl Finished {
    /// `Ok` for exit status 0; else how it ended and its last stderr line.
    pub fn check(&self) -> Result<(), String> {
        let s = self.status;
        if libc::WIFEXITED(s) && libc::WEXITSTATUS(s) == 0 {
            return Ok(());
        }
        let how = if libc::WIFSIGNALED(s) {
            format!("killed by signal {}", libc::WTERMSIG(s))
        } else {
            format!("exit status {}", libc::WEXITSTATUS(s))
        };
        let last = self.stderr.lines().last().unwrap_or("").trim();
        Err(format!("{how}: {last}"))
    }
}

/// Runs `cmd` (its stdin as the caller set it; stdout and stderr captured)
/// to its end, reaping it with `wait4(2)` for its rusage; kills it after
/// `timeout` (an error).
pub fn run_child(mut cmd: Command, timeout: Duration) -> Result<Finished, String> {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = cmd.spawn().map_err(|e| format!("spawn: {e}"))?;
    let pid = child.id() as libc::pid_t;
    let reader = |h: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            if let Some(mut h) = h {
                let _ = h.read_to_end(&mut v);
            }
            String::from_utf8_lossy(&v).into_owned()
        })
    };
    let out = reader(
        child
            .stdout
            .take()
            .map(|h| Box::new(h) as Box<dyn Read + Send>),
    );
    let err = reader(
        child
            .stderr
            .take()
            .map(|h| Box::new(h) as Box<dyn Read + Send>),
    );
    // Reaped by wait4 below: dropping a `Child` neither waits nor kills.
    drop(child);
    let (tx, rx) = mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let mut status = 0;
        // SAFETY: an all-zero rusage is a valid value of the plain C struct.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: `pid` is our child, not yet reaped (only this thread reaps
        // it); `status` and `ru` are valid for writes.
        let got = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
        let _ = tx.send((got, status, ru, started.elapsed()));
    });
    let (got, status, ru, wall) = match rx.recv_timeout(timeout) {
        Ok(v) => v,
        Err(_) => {
            // Not reaped yet (the waiter has not sent), so `pid` is still
            // the child: kill it and let the waiter reap it.
            // SAFETY: kill(2) has no memory-safety preconditions.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            let _ = waiter.join();
            let _ = (out.join(), err.join());
            return Err(format!("timed out after {} s (killed)", timeout.as_secs()));
        }
    };
    let _ = waiter.join();
    let (stdout, stderr) = (
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    );
    if got != pid {
        return Err(format!("wait4: {}", std::io::Error::last_os_error()));
    }
    Ok(Finished {
        status,
        stdout,
        stderr,
        maxrss_kib: ru.ru_maxrss as u64, // KiB on Linux
        minflt: ru.ru_minflt as u64,
        wall,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_is_reaped_with_its_rusage() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo out; echo err >&2"]);
        let f = run_child(cmd, Duration::from_secs(60)).unwrap();
        assert!(f.check().is_ok());
        assert_eq!((f.stdout.as_str(), f.stderr.as_str()), ("out\n", "err\n"));
        assert!(f.maxrss_kib > 0, "{f:?}");
    }

    #[test]
    fn a_worker_result_is_parsed_from_stdout() {
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            "echo bench-stand-in glibc; echo bench-result ops=10 secs=0.5 maxrss_kib=7 minflt=1",
        ]);
        let out = run_worker(cmd, Duration::from_secs(60)).unwrap();
        assert_eq!(out.sample.ops, 10);
        assert_eq!(out.stand_in.as_deref(), Some("glibc"));
    }

    #[test]
    fn a_replay_result_is_parsed_from_json() {
        let s = parse_replay(
            r#"{"events": 100, "repeat": 3, "timed_events": 200, "wall_secs": 0.5, "peak_rss_kib": 9, "minflt": 4, "first_pass_minflt": 6}"#,
        )
        .unwrap();
        assert_eq!((s.ops, s.maxrss_kib, s.minflt), (200, 9, 10));
        assert!(parse_replay(r#"{"events": 100}"#).is_err());
        assert!(parse_replay("not json").is_err());
    }

    #[test]
    fn failures_are_reported_not_hidden() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo boom >&2; exit 3"]);
        let e = run_worker(cmd, Duration::from_secs(60)).unwrap_err();
        assert!(e.contains("boom") && e.contains("exit status 3"), "{e}");
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "kill -SEGV $$"]);
        let e = run_worker(cmd, Duration::from_secs(60)).unwrap_err();
        assert!(e.contains("signal 11"), "{e}");
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo nothing"]);
        assert!(run_worker(cmd, Duration::from_secs(60)).is_err());
    }

    #[test]
    fn a_hung_worker_is_killed_at_the_timeout() {
        // `read` blocks on a pipe that never delivers: a hang without sleeping.
        let fifo = std::env::temp_dir().join(format!("bench-hang-{}", std::process::id()));
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "mkfifo \"$0\" && read x < \"$0\""])
            .arg(&fifo);
        let e = run_worker(cmd, Duration::from_millis(300)).unwrap_err();
        let _ = std::fs::remove_file(&fifo);
        assert!(e.contains("timed out"), "{e}");
    }
}
