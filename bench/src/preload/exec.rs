//! One run of one program under one allocator: `LD_PRELOAD` on its own
//! command line only, its result line parsed, its peak RSS and page faults
//! from `wait4(2)`'s rusage of the child, killed at the timeout.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::worker::Sample;

/// The first word of a program's result line (`bench/preload/common.h`).
pub const RESULT_TAG: &str = "preload-result";

/// What to run.
#[derive(Clone, Debug)]
pub struct Run<'a> {
    /// The executable.
    pub exe: &'a Path,
    /// Its arguments.
    pub args: &'a [&'a str],
    /// `LD_PRELOAD` (`None`: glibc, with any inherited `LD_PRELOAD` removed).
    pub preload: Option<&'a Path>,
    /// A file for its stdin (the sqlite script); else `/dev/null`.
    pub stdin: Option<PathBuf>,
    /// `Some(ops)`: the program prints no result line; the sample is `ops`
    /// over the process's wall time.
    pub wall_ops: Option<u64>,
}

/// Runs `r` to completion, killing it after `timeout`.
pub fn run(r: &Run, timeout: Duration) -> Result<Sample, String> {
    let mut cmd = Command::new(r.exe);
    cmd.args(r.args);
    match r.preload {
        Some(p) => cmd.env("LD_PRELOAD", p),
        None => cmd.env_remove("LD_PRELOAD"),
    };
    let stdin = match &r.stdin {
        Some(f) => {
            Stdio::from(std::fs::File::open(f).map_err(|e| format!("{}: {e}", f.display()))?)
        }
        None => Stdio::null(),
    };
    cmd.stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("{}: {e}", r.exe.display()))?;
    let pid = child.id() as libc::pid_t;
    let reader = |mut h: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = h.read_to_end(&mut v);
            String::from_utf8_lossy(&v).into_owned()
        })
    };
    let out = reader(Box::new(child.stdout.take().ok_or("no stdout pipe")?));
    let err = reader(Box::new(child.stderr.take().ok_or("no stderr pipe")?));
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
    drop(child); // reaped by wait4 above; dropping a Child neither waits nor kills
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    if got != pid {
        return Err(format!("wait4: {}", std::io::Error::last_os_error()));
    }
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        let how = if libc::WIFSIGNALED(status) {
            format!("killed by signal {}", libc::WTERMSIG(status))
        } else {
            format!("exit status {}", libc::WEXITSTATUS(status))
        };
        let last = stderr.lines().last().unwrap_or("").trim();
        return Err(format!("{how}: {last}"));
    }
    let maxrss_kib = ru.ru_maxrss as u64; // KiB on Linux
    let minflt = ru.ru_minflt as u64;
    let (ops, secs) = match r.wall_ops {
        Some(ops) => (ops, wall.as_secs_f64()),
        None => parse_result(&stdout)?,
    };
    if ops == 0 || !(secs > 0.0 && secs.is_finite()) {
        return Err(format!("empty measurement: ops={ops} secs={secs}"));
    }
    Ok(Sample {
        ops,
        secs,
        maxrss_kib,
        minflt,
    })
}

/// `(ops, secs)` of the `preload-result ops=N secs=S` line.
pub fn parse_result(stdout: &str) -> Result<(u64, f64), String> {
    let line = stdout
        .lines()
        .find(|l| l.starts_with(RESULT_TAG))
        .ok_or("no preload-result line on stdout")?;
    let field = |k: &str| {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(k)?.strip_prefix('='))
            .ok_or(format!("no {k} in {line:?}"))
    };
    let ops = field("ops")?
        .parse()
        .map_err(|e| format!("ops in {line:?}: {e}"))?;
    let secs = field("secs")?
        .parse()
        .map_err(|e| format!("secs in {line:?}: {e}"))?;
    Ok((ops, secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Result<Sample, String> {
        let args = ["-c", script];
        run(
            &Run {
                exe: Path::new("/bin/sh"),
                args: &args,
                preload: None,
                stdin: None,
                wall_ops: None,
            },
            Duration::from_secs(30),
        )
    }

    #[test]
    fn the_result_line_and_the_childs_rusage_make_the_sample() {
        let s = sh("echo noise; echo preload-result ops=42 secs=0.5").unwrap();
        assert_eq!((s.ops, s.secs), (42, 0.5));
        assert!(s.maxrss_kib > 0, "{s:?}");
    }

    #[test]
    fn failures_say_how_the_program_ended() {
        let e = sh("echo boom >&2; exit 3").unwrap_err();
        assert!(e.contains("exit status 3") && e.contains("boom"), "{e}");
        let e = sh("kill -SEGV $$").unwrap_err();
        assert!(e.contains("signal 11"), "{e}");
        let e = sh("echo preload-result ops=0 secs=1").unwrap_err();
        assert!(e.contains("empty"), "{e}");
        assert!(sh("echo nothing")
            .unwrap_err()
            .contains("no preload-result"));
        assert!(parse_result("preload-result ops=x secs=1").is_err());
    }

    #[test]
    fn the_preload_is_set_for_the_child_only() {
        let args = [
            "-c",
            "echo preload-result ops=1 secs=1; test \"$LD_PRELOAD\" = /nonexistent.so",
        ];
        // The dynamic linker warns about a missing preload and goes on.
        let ok = run(
            &Run {
                exe: Path::new("/bin/sh"),
                args: &args,
                preload: Some(Path::new("/nonexistent.so")),
                stdin: None,
                wall_ops: None,
            },
            Duration::from_secs(30),
        );
        assert!(ok.is_ok(), "{ok:?}");
        assert!(std::env::var_os("LD_PRELOAD").is_none_or(|v| v != "/nonexistent.so"));
    }

    #[test]
    fn a_hung_program_is_killed_at_the_timeout() {
        // `read` blocks on a fifo that never delivers: a hang without sleeping.
        let fifo = std::env::temp_dir().join(format!("preload-hang-{}", std::process::id()));
        let script = format!("mkfifo {0} && read x < {0}", fifo.display());
        let args = ["-c", script.as_str()];
        let e = run(
            &Run {
                exe: Path::new("/bin/sh"),
                args: &args,
                preload: None,
                stdin: None,
                wall_ops: None,
            },
            Duration::from_millis(300),
        )
        .unwrap_err();
        let _ = std::fs::remove_file(&fifo);
        assert!(e.contains("timed out"), "{e}");
    }
}
