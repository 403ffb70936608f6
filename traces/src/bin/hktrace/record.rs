//! `hktrace record`: a program run under the recording allocator, its trace
//! files collected.

use crate::inspect::StatsReport;
use crate::{open, out_ok, Failure};
use std::ffi::OsString;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use traces::stats;

/// The trace files a recording to `out` produced: `out` itself, then
/// `out.<pid>` in pid order.
pub(crate) fn recorded_files(out: &Path) -> Vec<PathBuf> {
    let mut found: Vec<(u64, PathBuf)> = Vec::new();
    if out.is_file() {
        found.push((0, out.to_path_buf()));
    }
    let (Some(dir), Some(stem)) = (out.parent(), out.file_name().and_then(|n| n.to_str())) else {
        return found.into_iter().map(|(_, p)| p).collect();
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            let name = e.file_name();
            let Some(pid) = name
                .to_str()
                .and_then(|n| n.strip_prefix(stem)?.strip_prefix('.'))
                .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|p| p.parse::<u64>().ok())
            else {
                continue;
            };
            found.push((pid.max(1), e.path()));
        }
    }
    found.sort();
    found.into_iter().map(|(_, p)| p).collect()
}

pub(crate) fn cmd_record(
    lib: Option<PathBuf>,
    output: &Path,
    json: bool,
    cmd: &[OsString],
) -> Result<(), Failure> {
    let lib = match lib {
        Some(l) => l,
        None => std::env::current_exe()?
            .parent()
            .map(|d| d.join("libhakmem.so"))
            .ok_or_else(|| Failure("cannot locate this binary's directory".into()))?,
    };
    if !lib.is_file() {
        return Err(Failure(format!(
            "{}: the preload library is missing: build it with `cargo build --release -p hakmem-capi`, or pass --lib PATH",
            lib.display()
        )));
    }
    // Absolute paths: the command may change directory, and LD_PRELOAD
    // searches names without a slash.
    let lib = lib.canonicalize()?;
    let output = if output.is_absolute() {
        output.to_path_buf()
    } else {
        std::env::current_dir()?.join(output)
    };
    // A new recording replaces the files of an earlier one.
    for stale in recorded_files(&output) {
        fs::remove_file(&stale).map_err(|e| Failure(format!("{}: {e}", stale.display())))?;
    }
    let (prog, args) = cmd
        .split_first()
        .ok_or_else(|| Failure("record: no command given".into()))?;
    let mut preload = lib.into_os_string();
    if let Some(old) = std::env::var_os("LD_PRELOAD").filter(|v| !v.is_empty()) {
        preload.push(":");
        preload.push(old);
    }
    let status = std::process::Command::new(prog)
        .args(args)
        .env("LD_PRELOAD", &preload)
        .env("HAKMEM_TRACE", &output)
        .env_remove("HAKMEM_TRACE_PID")
        .status()
        .map_err(|e| Failure(format!("{}: {e}", Path::new(prog).display())))?;
    let files = recorded_files(&output);
    if files.is_empty() {
        return Err(Failure(format!(
            "{}: no trace was written (is the program dynamically linked? setuid and static programs ignore LD_PRELOAD); the command {status}",
            output.display()
        )));
    }
    let mut reports = Vec::new();
    let mut first_error: Option<Failure> = None;
    let mut out = io::stdout().lock();
    for f in &files {
        let (mut r, pb) = open(f, "stats")?;
        let s = stats::collect(&mut r, |_| {});
        pb.finish_and_clear();
        match s {
            Ok(s) if json => reports.push(serde_json::to_value(StatsReport {
                file: f.display().to_string(),
                format: "text",
                stats: &s,
            })?),
            Ok(s) => out_ok(write!(out, "{}\n{s}\n", f.display()))?,
            Err(e) => {
                let _ = writeln!(io::stderr().lock(), "{e}");
                first_error.get_or_insert(Failure(format!(
                    "{}: the recorded trace is invalid",
                    f.display()
                )));
            }
        }
    }
    if json {
        out_ok(writeln!(out, "{}", serde_json::to_string_pretty(&reports)?))?;
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    if !status.success() {
        return Err(Failure(format!(
            "{}: {status} (the trace above is what it did)",
            Path::new(prog).display()
        )));
    }
    Ok(())
}
