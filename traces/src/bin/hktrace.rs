//! `hktrace`: validate, measure, convert and generate hktrace allocation
//! traces. See `docs/traces.md`.
//!
//! Exit status: 0 on success, 1 on bad input or any other failure (the
//! message `file:line: reason` on stderr), 2 on a usage error.

use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use std::fs::{self, File};
use std::io::{self, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use traces::compress::Compression;
use traces::file::{copy, CopyError, Format, TraceReader, TraceWriter};
use traces::stats::{self, Stats};
use traces::synth::{Larson, LarsonGen, RandomMixed, RandomMixedGen};
use traces::Record;

#[derive(Parser)]
#[command(
    name = "hktrace",
    version,
    about = "Tools for hktrace allocation traces"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Figures of a trace: events per kind, threads, peak live bytes and
    /// blocks, size histogram, remote frees, realloc directions.
    Stats {
        /// The trace (text or binary, optionally gzip/zstd; `-` for stdin).
        file: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Read the whole trace and report the first error with its line.
    Validate {
        /// The trace (`-` for stdin).
        file: PathBuf,
        /// Print the verdict as JSON on stdout (still exit 1 when invalid).
        #[arg(long)]
        json: bool,
    },
    /// Convert between text and binary, compressed or not.
    Convert {
        /// The input trace (any form, detected from its bytes; `-` for stdin).
        input: PathBuf,
        /// The output: `.hkt` text or `.hkb` binary, then optionally `.gz` or `.zst`.
        output: PathBuf,
        /// The output format, overriding the name.
        #[arg(long, value_enum)]
        to: Option<FormatArg>,
        /// The output compression, overriding the name.
        #[arg(long, value_enum)]
        compress: Option<CompressArg>,
    },
    /// Generate a deterministic synthetic trace.
    Synth {
        #[command(subcommand)]
        kind: SynthCmd,
    },
    /// (not available yet) Replay on hakmem in lockstep with the model.
    Check {
        /// The trace.
        file: PathBuf,
    },
    /// (not available yet) Replay with real threads against an allocator.
    Replay {
        /// The trace.
        file: PathBuf,
        /// hakmem, system, mimalloc or jemalloc.
        #[arg(long)]
        alloc: String,
    },
}

#[derive(Subcommand)]
enum SynthCmd {
    /// random_mixed (issue 7): one thread, xorshift32, WS slots.
    #[command(name = "random_mixed")]
    RandomMixed {
        /// Iterations (events).
        #[arg(long, default_value_t = 100_000)]
        cycles: u64,
        /// Working-set slots.
        #[arg(long, default_value_t = 256)]
        ws: u32,
        /// xorshift32 seed (not 0).
        #[arg(long, default_value_t = 42)]
        seed: u32,
        /// Smallest size.
        #[arg(long, default_value_t = 16)]
        min: u64,
        /// Largest size.
        #[arg(long, default_value_t = 1040)]
        max: u64,
        /// Output file (`.hkt`/`.hkb`, optionally `.gz`/`.zst`).
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Larson-like: threads replacing blocks in arrays that change hands.
    Larson {
        /// Threads.
        #[arg(long, default_value_t = 2)]
        threads: u32,
        /// Slots per thread's array.
        #[arg(long, default_value_t = 1000)]
        slots: u32,
        /// Rounds (arrays change hands after each).
        #[arg(long, default_value_t = 10)]
        rounds: u32,
        /// Replacements per thread per round.
        #[arg(long, default_value_t = 1000)]
        ops: u32,
        /// Seed (not 0).
        #[arg(long, default_value_t = 42)]
        seed: u32,
        /// Smallest size.
        #[arg(long, default_value_t = 8)]
        min: u64,
        /// Largest size.
        #[arg(long, default_value_t = 1000)]
        max: u64,
        /// Output file (`.hkt`/`.hkb`, optionally `.gz`/`.zst`).
        #[arg(short, long)]
        output: PathBuf,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum FormatArg {
    Text,
    Binary,
}

#[derive(Clone, Copy, ValueEnum)]
enum CompressArg {
    None,
    Gzip,
    Zstd,
}

/// A failure, already formatted for stderr.
struct Failure(String);

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
        Cmd::Check { .. } => Err(Failure(
            "hktrace check: not available yet: it needs the hakmem instance and model APIs, which have not landed"
                .into(),
        )),
        Cmd::Replay { .. } => Err(Failure(
            "hktrace replay: not available yet: it needs the allocator back-ends, which have not landed"
                .into(),
        )),
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
fn progress(len: Option<u64>, what: &str) -> ProgressBar {
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
fn open(path: &Path, what: &str) -> Result<(TraceReader, ProgressBar), Failure> {
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

fn out_ok(r: io::Result<()>) -> Result<(), Failure> {
    match r {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

#[derive(Serialize)]
struct StatsReport<'a> {
    file: String,
    format: &'static str,
    #[serde(flatten)]
    stats: &'a Stats,
}

fn cmd_stats(path: &Path, json: bool) -> Result<(), Failure> {
    let (mut r, pb) = open(path, "stats")?;
    let s = stats::collect(&mut r, |_| {});
    pb.finish_and_clear();
    let s = s?;
    let mut out = io::stdout().lock();
    if json {
        let report = StatsReport {
            file: path.display().to_string(),
            format: match r.format() {
                Format::Text => "text",
                Format::Binary => "binary",
            },
            stats: &s,
        };
        let text = serde_json::to_string_pretty(&report)?;
        out_ok(writeln!(out, "{text}"))
    } else {
        out_ok(write!(out, "{}\n{s}", path.display()))
    }
}

#[derive(Serialize)]
struct ValidateReport {
    file: String,
    valid: bool,
    /// Last line read (valid), or the line of the error.
    line: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    events: u64,
    comments: u64,
    threads: u64,
    live_blocks_at_end: u64,
}

fn cmd_validate(path: &Path, json: bool) -> Result<(), Failure> {
    let (mut r, pb) = open(path, "validate")?;
    let mut events = 0u64;
    let mut comments = 0u64;
    let result = loop {
        match r.next_record() {
            None => break Ok(()),
            Some(Ok(Record::Event(_))) => events += 1,
            Some(Ok(Record::Comment(_))) => comments += 1,
            Some(Err(e)) => break Err(e),
        }
    };
    pb.finish_and_clear();
    let v = r.validator();
    if json {
        let report = ValidateReport {
            file: path.display().to_string(),
            valid: result.is_ok(),
            line: match &result {
                Ok(()) => Some(r.line()),
                Err(e) => e.line,
            },
            reason: result.as_ref().err().map(|e| e.reason.to_string()),
            events,
            comments,
            threads: v.threads(),
            live_blocks_at_end: v.live_blocks(),
        };
        out_ok(writeln!(
            io::stdout().lock(),
            "{}",
            serde_json::to_string_pretty(&report)?
        ))?;
        return result.map_err(Failure::from);
    }
    result?;
    out_ok(writeln!(
        io::stdout().lock(),
        "{}: valid: {} lines, {} events, {} comments, {} threads, {} blocks live at end",
        path.display(),
        r.line(),
        events,
        comments,
        v.threads(),
        v.live_blocks()
    ))
}

/// Writes a trace to `output` through a temporary file renamed on success,
/// so that a failure leaves no half-written output.
fn write_trace(
    output: &Path,
    format: Option<Format>,
    compression: Option<Compression>,
    body: impl FnOnce(&mut TraceWriter<io::BufWriter<File>>) -> Result<u64, Failure>,
) -> Result<u64, Failure> {
    let format = format.or_else(|| Format::from_path(output)).ok_or_else(|| {
        Failure(format!(
            "{}: cannot tell text from binary by the name: use .hkt or .hkb (then optionally .gz or .zst), or --to",
            output.display()
        ))
    })?;
    let compression = compression.unwrap_or_else(|| Compression::from_path(output));
    let mut tmp = output.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let result = (|| {
        let mut w = TraceWriter::create(&tmp, Some(format), Some(compression))
            .map_err(|e| Failure(format!("{}: {e}", tmp.display())))?;
        let n = body(&mut w)?;
        w.finish()
            .map_err(|e| Failure(format!("{}: {e}", tmp.display())))?;
        fs::rename(&tmp, output).map_err(|e| Failure(format!("{}: {e}", output.display())))?;
        Ok(n)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn cmd_convert(
    input: &Path,
    output: &Path,
    to: Option<FormatArg>,
    compress: Option<CompressArg>,
) -> Result<(), Failure> {
    let (mut r, pb) = open(input, "convert")?;
    let format = to.map(|t| match t {
        FormatArg::Text => Format::Text,
        FormatArg::Binary => Format::Binary,
    });
    let compression = compress.map(|c| match c {
        CompressArg::None => Compression::None,
        CompressArg::Gzip => Compression::Gzip,
        CompressArg::Zstd => Compression::Zstd,
    });
    let n = write_trace(output, format, compression, |w| {
        copy(&mut r, w, |_| {}).map_err(|e| match e {
            CopyError::Read(e) => Failure(e.to_string()),
            CopyError::Write(e) => Failure(format!("{}: {e}", output.display())),
        })
    });
    pb.finish_and_clear();
    let n = n?;
    out_ok(writeln!(
        io::stdout().lock(),
        "{} -> {}: {n} records",
        input.display(),
        output.display()
    ))
}

fn emit_all(
    gen: impl Iterator<Item = Record>,
    w: &mut TraceWriter<io::BufWriter<File>>,
    pb: &ProgressBar,
    output: &Path,
) -> Result<u64, Failure> {
    let mut n = 0u64;
    for rec in gen {
        w.write_record(&rec)
            .map_err(|e| Failure(format!("{}: {e}", output.display())))?;
        n += 1;
        if n % (64 << 10) == 0 {
            pb.set_position(n);
        }
    }
    Ok(n)
}

fn cmd_synth(kind: SynthCmd) -> Result<(), Failure> {
    let (n, output) = match kind {
        SynthCmd::RandomMixed {
            cycles,
            ws,
            seed,
            min,
            max,
            output,
        } => {
            let gen = RandomMixedGen::new(RandomMixed {
                cycles,
                ws,
                seed,
                min,
                max,
            })
            .map_err(|e| Failure(format!("random_mixed: {e}")))?;
            let pb = progress(None, "synth");
            let n = write_trace(&output, None, None, |w| emit_all(gen, w, &pb, &output));
            pb.finish_and_clear();
            (n?, output)
        }
        SynthCmd::Larson {
            threads,
            slots,
            rounds,
            ops,
            seed,
            min,
            max,
            output,
        } => {
            let gen = LarsonGen::new(Larson {
                threads,
                slots,
                rounds,
                ops,
                seed,
                min,
                max,
            })
            .map_err(|e| Failure(format!("larson: {e}")))?;
            let pb = progress(None, "synth");
            let n = write_trace(&output, None, None, |w| emit_all(gen, w, &pb, &output));
            pb.finish_and_clear();
            (n?, output)
        }
    };
    out_ok(writeln!(
        io::stdout().lock(),
        "{}: {n} records",
        output.display()
    ))
}
