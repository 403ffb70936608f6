//! One run of one program under one allocator: `LD_PRELOAD` on its own
//! command line only, its result line parsed, its peak RSS and page faults
//! from the child's `wait4(2)` rusage ([`runner::run_child`]).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::runner;
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
    cmd.stdin(match &r.stdin {
        Some(f) => {
            Stdio::from(std::fs::File::open(f).map_err(|e| format!("{}: {e}", f.display()))?)
        }
        None => Stdio::null(),
    });
    let done = runner::run_child(cmd, timeout).map_err(|e| format!("{}: {e}", r.exe.display()))?;
    done.check()?;
    let (ops, secs) = match r.wall_ops {
        Some(ops) => (ops, done.wall.as_secs_f64()),
        None => parse_result(&done.stdout)?,
    };
    if ops == 0 || !(secs > 0.0 && secs.is_finite()) {
        return Err(format!("empty measurement: ops={ops} secs={secs}"));
    }
    Ok(Sample {
        ops,
        secs,
        maxrss_kib: done.maxrss_kib,
        minflt: done.minflt,
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

    fn sh(script: &str, preload: Option<&Path>) -> Result<Sample, String> {
        let args = ["-c", script];
        let r = Run {
            exe: Path::new("/bin/sh"),
            args: &args,
            preload,
            stdin: None,
            wall_ops: None,
        };
        run(&r, Duration::from_secs(30))
    }

    #[test]
    fn the_result_line_and_the_childs_rusage_make_the_sample() {
        let s = sh("echo noise; echo preload-result ops=42 secs=0.5", None).unwrap();
        assert_eq!((s.ops, s.secs), (42, 0.5));
        assert!(s.maxrss_kib > 0, "{s:?}");
    }

    #[test]
    fn bad_results_are_errors() {
        let e = sh("echo boom >&2; exit 3", None).unwrap_err();
        assert!(e.contains("exit status 3") && e.contains("boom"), "{e}");
        let e = sh("echo preload-result ops=0 secs=1", None).unwrap_err();
        assert!(e.contains("empty"), "{e}");
        assert!(sh("echo nothing", None)
            .unwrap_err()
            .contains("no preload-result"));
        assert!(parse_result("preload-result ops=x secs=1").is_err());
    }

    #[test]
    fn the_preload_is_the_childs_and_only_the_given_one() {
        // The dynamic linker warns about a missing preload and goes on.
        let check = "echo preload-result ops=1 secs=1; test \"$LD_PRELOAD\" = /nonexistent.so";
        assert!(sh(check, Some(Path::new("/nonexistent.so"))).is_ok());
        assert!(sh(check, Some(Path::new("/other.so"))).is_err());
        let none = "echo preload-result ops=1 secs=1; test -z \"$LD_PRELOAD\"";
        assert!(sh(none, None).is_ok());
    }

    #[test]
    fn wall_time_rows_need_no_result_line() {
        let args = ["-c", "true"];
        let r = Run {
            exe: Path::new("/bin/sh"),
            args: &args,
            preload: None,
            stdin: None,
            wall_ops: Some(7),
        };
        let s = run(&r, Duration::from_secs(30)).unwrap();
        assert_eq!(s.ops, 7);
        assert!(s.secs > 0.0);
    }
}
