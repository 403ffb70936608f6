//! `hktrace`: validate, measure, convert, generate, replay and record
//! hktrace allocation traces. See `docs/traces.md`.
//!
//! Exit status: 0 on success, 1 on bad input or any other failure (the
//! message `file:line: reason` on stderr), 2 on a usage error.
//!
//! This file dispatches and holds the shared helpers (progress bars, opening
//! a trace, failures); `cli` is the command line, and each other module is
//! one command or a pair of related ones.

mod check;
mod cli;
mod convert;
mod inspect;
mod record;
mod replay;

use check::cmd_check;
use clap::Parser;
use cli::{Cli, Cmd};
use convert::{cmd_convert, cmd_synth};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use inspect::{cmd_stats, cmd_validate};
use record::cmd_record;
use replay::cmd_replay;
use std::fs::File;
use std::io::{self, IsTerminal, Read, Write};
use std::path::Path;
use std::process::ExitCode;
use traces::file::TraceReader;

/// The command runs on hakmem itself (its job is not to compare allocators:
/// `replay` calls the compared allocators directly, whatever this is).
#[global_allocator]
static GLOBAL: hakmem::Hakmem = hakmem::Hakmem;

/// A failure, already formatted for stderr.
pub(crate) struct Failure(String);

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Failure {
        Failure(e.to_string())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Stats { file, json } => cmd_stats(&file, json),
        Cmd::Validate { file, json } => cmd_validate(&file, json),
        Cmd::Convert {
            input,
            output,
            to,
            compress,
        } => cmd_convert(&input, &output, to, compress),
        Cmd::Synth { kind } => cmd_synth(kind),
        Cmd::Check {
            file,
            json,
            limit,
            full_every,
        } => cmd_check(&file, json, limit, full_every),
        Cmd::Replay {
            file,
            alloc,
            json,
            no_baseline,
            repeat,
            min_events,
        } => cmd_replay(&file, alloc.name(), json, !no_baseline, repeat, min_events),
        Cmd::Record {
            lib,
            output,
            json,
            cmd,
        } => cmd_record(lib, &output, json, &cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(msg)) => {
            let _ = writeln!(io::stderr().lock(), "{msg}");
            ExitCode::FAILURE
        }
    }
}

/// A progress bar on stderr, drawn only when stderr is a terminal.
pub(crate) fn progress(len: Option<u64>, what: &str) -> ProgressBar {
    let target = if io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let pb = match len {
        Some(n) => ProgressBar::with_draw_target(Some(n), target).with_style(
            ProgressStyle::with_template(
                "{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        ),
        None => ProgressBar::with_draw_target(None, target).with_style(
            ProgressStyle::with_template("{msg} {spinner} {pos} {per_sec}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        ),
    };
    pb.with_message(what.to_owned())
}

/// Opens a trace with a progress bar over its bytes (`-` = stdin).
pub(crate) fn open(path: &Path, what: &str) -> Result<(TraceReader, ProgressBar), Failure> {
    let name = path.display().to_string();
    if name == "-" {
        let pb = progress(None, what);
        let r = TraceReader::from_reader(pb.wrap_read(io::stdin()), "-")?;
        return Ok((r, pb));
    }
    let f = File::open(path).map_err(|e| Failure(format!("{name}: {e}")))?;
    let len = f.metadata().map(|m| m.len()).ok();
    let pb = progress(len, what);
    let r: Box<dyn Read + Send> = Box::new(pb.wrap_read(f));
    Ok((TraceReader::from_reader(r, &name)?, pb))
}

pub(crate) fn out_ok(r: io::Result<()>) -> Result<(), Failure> {
    match r {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}
