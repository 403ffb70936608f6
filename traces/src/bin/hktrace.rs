//! `hktrace`: validate, measure, convert, generate, replay and record
//! hktrace allocation traces. See `docs/traces.md`.
//!
//! Exit status: 0 on success, 1 on bad input or any other failure (the
//! message `file:line: reason` on stderr), 2 on a usage error.

use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use traces::compress::Compression;
use traces::file::{copy, CopyError, Format, TraceReader, TraceWriter};
use traces::replay::{self, AllocName, Outcome, Trace};
use traces::stats::{self, Stats};
use traces::synth::{Larson, LarsonGen, RandomMixed, RandomMixedGen};
use traces::Record;

/// The command runs on hakmem itself (its job is not to compare allocators:
/// `replay` calls the compared allocators directly, whatever this is).
#[global_allocator]
static GLOBAL: hakmem::Hakmem = hakmem::Hakmem;

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
    /// Replay on a hakmem instance in lockstep with the model (one logical
    /// thread per trace thread); exit 1 at the first divergence.
    Check {
        /// The trace (a file: it is read twice).
        file: PathBuf,
        /// Print the report (or the divergence) as JSON on stdout.
        #[arg(long)]
        json: bool,
        /// Replay only the first N events (the whole trace is still
        /// validated and measured).
        #[arg(long)]
        limit: Option<u64>,
        /// Events between two whole-state comparisons (1: compare the whole
        /// state after every event).
        #[arg(long, default_value_t = 65_536)]
        full_every: u64,
    },
    /// Replay with real OS threads (one per trace thread) against a built-in
    /// allocator; reports ops/s, wall time, peak RSS and the harness's own
    /// cost (the same trace on the no-op allocator).
    Replay {
        /// The trace (any form; `-` for stdin). Loaded into memory first.
        file: PathBuf,
        /// The allocator to replay on.
        #[arg(long, value_enum)]
        alloc: AllocArg,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Skip the second replay on the no-op allocator (the harness cost).
        #[arg(long)]
        no_baseline: bool,
        /// Replay at least this many passes on the same threads (each pass
        /// the whole trace, its leftovers freed after it). With two or more,
        /// the figures are those of the passes after the first (warm); the
        /// first pass (cold: heap set-up, first-touch faults) is reported
        /// apart.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
        repeat: u32,
        /// Add passes until the passes after the first hold at least this
        /// many events (short traces take microseconds a pass).
        #[arg(long, default_value_t = 0)]
        min_events: u64,
    },
    /// Run a command under the LD_PRELOAD library's record mode
    /// (`HAKMEM_TRACE`), then validate and summarise the trace(s) written:
    /// OUT for the command, OUT.<pid> for processes it starts.
    Record {
        /// The preload library [default: libhakmem.so beside this binary].
        #[arg(long)]
        lib: Option<PathBuf>,
        /// The trace to write (hktrace text).
        #[arg(short, long, default_value = "trace.hkt")]
        output: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// The command and its arguments (after `--`).
        #[arg(last = true, required = true)]
        cmd: Vec<OsString>,
    },
}

/// `--alloc` of `replay`.
#[derive(Clone, Copy, ValueEnum)]
enum AllocArg {
    Hakmem,
    System,
    Mimalloc,
    Jemalloc,
    Noop,
}

impl AllocArg {
    fn name(self) -> AllocName {
        match self {
            AllocArg::Hakmem => AllocName::Hakmem,
            AllocArg::System => AllocName::System,
            AllocArg::Mimalloc => AllocName::Mimalloc,
            AllocArg::Jemalloc => AllocName::Jemalloc,
            AllocArg::Noop => AllocName::Noop,
        }
    }
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

/// A progress bar over events, on stderr only when it is a terminal.
fn progress_events(len: u64, what: &str) -> Option<ProgressBar> {
    if !io::stderr().is_terminal() {
        return None;
    }
    let pb = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr()).with_style(
        ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} events {per_sec}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    Some(pb.with_message(what.to_owned()))
}

/// One timed replay.
#[derive(Serialize, Clone, Copy)]
struct Timing {
    wall_secs: f64,
    ops_per_sec: f64,
    ns_per_op: f64,
}

impl Timing {
    fn new(o: &Outcome) -> Timing {
        let secs = o.wall.as_secs_f64().max(1e-9);
        Timing {
            wall_secs: secs,
            ops_per_sec: o.events as f64 / secs,
            ns_per_op: secs * 1e9 / o.events.max(1) as f64,
        }
    }
}

#[derive(Serialize)]
struct ReplayReport {
    file: String,
    alloc: &'static str,
    /// Events in the trace (each pass runs them all).
    events: u64,
    /// Passes on the same threads (`--repeat`, raised by `--min-events`).
    repeat: u32,
    /// Events the figures below are over: the passes after the first, or
    /// the only pass.
    timed_events: u64,
    threads: usize,
    blocks: u64,
    /// Seconds to read and load the trace (untimed in the figures).
    load_secs: f64,
    /// Bytes of the loaded form (op lists and slot table).
    trace_memory_bytes: u64,
    /// Resident set after loading, before replaying (KiB).
    rss_loaded_kib: u64,
    /// The replay on `alloc`: the passes after the first (the only one
    /// if `repeat` is 1).
    #[serde(flatten)]
    run: Timing,
    /// The first pass alone (cold: the threads' heap set-up and first-touch
    /// page faults) and its minor faults.
    first_pass: Timing,
    first_pass_minflt: u64,
    /// Peak resident set of the process after the replay on `alloc`
    /// (getrusage; includes the loaded trace, see `rss_loaded_kib`).
    peak_rss_kib: u64,
    /// Minor page faults during the timed passes on `alloc` (as `run`).
    minflt: u64,
    /// The same trace on the no-op allocator (`noop`): the harness's own cost.
    baseline: Option<Timing>,
    /// `wall_secs − baseline.wall_secs`: the allocator's own time.
    above_baseline_secs: Option<f64>,
    /// The same per event.
    above_baseline_ns_per_op: Option<f64>,
}

/// Replays `passes` times on `name` on the same threads, with a progress
/// bar when stderr is a terminal; one outcome per pass.
fn replay_passes(trace: &Trace, name: AllocName, passes: u32) -> Result<Vec<Outcome>, Failure> {
    let pb = progress_events(
        trace.events * u64::from(passes),
        &format!("replay on {}", name.as_str()),
    );
    let inc = |n: u64| {
        if let Some(pb) = &pb {
            pb.inc(n);
        }
    };
    let progress: Option<&(dyn Fn(u64) + Sync)> = if pb.is_some() { Some(&inc) } else { None };
    let result = replay::run_on_passes(trace, name, passes, progress);
    if let Some(pb) = &pb {
        pb.finish_and_clear();
    }
    Ok(result?)
}

/// The passes for `--repeat` and `--min-events`: at least `repeat`, and
/// enough that the passes after the first hold `min_events` events.
fn passes_for(events: u64, repeat: u32, min_events: u64) -> u32 {
    let warm = min_events.div_ceil(events.max(1));
    let want = if min_events == 0 {
        1
    } else {
        warm.saturating_add(1)
    };
    u32::try_from(want).unwrap_or(u32::MAX).max(repeat)
}

/// The sum of `passes` (the timed ones: all but the first when there are
/// two or more).
fn timed(passes: &[Outcome]) -> Outcome {
    let warm = if passes.len() > 1 {
        &passes[1..]
    } else {
        passes
    };
    Outcome {
        wall: warm.iter().map(|o| o.wall).sum(),
        events: warm.iter().map(|o| o.events).sum(),
        minflt: warm.iter().map(|o| o.minflt).sum(),
    }
}

fn cmd_replay(
    path: &Path,
    alloc: AllocName,
    json: bool,
    baseline: bool,
    repeat: u32,
    min_events: u64,
) -> Result<(), Failure> {
    let started = std::time::Instant::now();
    let (mut r, pb) = open(path, "load")?;
    let name = path.display().to_string();
    let trace = replay::load(&mut r, &name, |_| {});
    pb.finish_and_clear();
    drop(r);
    let trace = trace?;
    let load_secs = started.elapsed().as_secs_f64();
    let rss_loaded_kib = replay::current_rss_kib();
    let repeat = passes_for(trace.events, repeat, min_events);
    let passes = replay_passes(&trace, alloc, repeat)?;
    let after = replay::usage();
    let base = if baseline && alloc != AllocName::Noop {
        Some(timed(&replay_passes(&trace, AllocName::Noop, repeat)?))
    } else {
        None
    };
    let warm = timed(&passes);
    let run = Timing::new(&warm);
    let base = base.map(|b| Timing::new(&b));
    let above = base.map(|b| run.wall_secs - b.wall_secs);
    let report = ReplayReport {
        file: name,
        alloc: alloc.as_str(),
        events: trace.events,
        repeat,
        timed_events: warm.events,
        threads: trace.threads.len(),
        blocks: trace.blocks,
        load_secs,
        trace_memory_bytes: trace.memory_bytes(),
        rss_loaded_kib,
        run,
        first_pass: Timing::new(&passes[0]),
        first_pass_minflt: passes[0].minflt,
        peak_rss_kib: after.peak_rss_kib,
        minflt: warm.minflt,
        baseline: base,
        above_baseline_secs: above,
        above_baseline_ns_per_op: above.map(|a| a * 1e9 / warm.events.max(1) as f64),
    };
    let mut out = io::stdout().lock();
    if json {
        return out_ok(writeln!(out, "{}", serde_json::to_string_pretty(&report)?));
    }
    let line = |t: &Timing| {
        format!(
            "{:>9.6} s  {:>8.3} M events/s  {:>8.1} ns/event",
            t.wall_secs,
            t.ops_per_sec / 1e6,
            t.ns_per_op
        )
    };
    let mut text = format!(
        "{}: {} events{}, {} threads, {} blocks (loaded in {:.2} s, {} KiB in memory)\n",
        report.file,
        report.events,
        if repeat > 1 {
            format!(" × {repeat} passes (figures: passes 2–{repeat}, warm)")
        } else {
            String::new()
        },
        report.threads,
        report.blocks,
        report.load_secs,
        report.trace_memory_bytes / 1024
    );
    text += &format!(
        "  {:<16} {}  peak RSS {} KiB ({} KiB after loading), {} minor faults\n",
        report.alloc,
        line(&report.run),
        report.peak_rss_kib,
        report.rss_loaded_kib,
        report.minflt
    );
    if repeat > 1 {
        text += &format!(
            "  {:<16} {}  first pass (cold), {} minor faults\n",
            "",
            line(&report.first_pass),
            report.first_pass_minflt
        );
    }
    match (&report.baseline, report.above_baseline_secs) {
        (Some(b), Some(a)) => {
            text += &format!("  {:<16} {}  (the replayer's own cost)\n", "noop", line(b));
            text += &format!(
                "  {:<16} {:>9.6} s  {:>35.1} ns/event  (the allocator's own cost)\n",
                format!("{} − noop", report.alloc),
                a,
                report.above_baseline_ns_per_op.unwrap_or(0.0)
            );
        }
        _ if alloc == AllocName::Noop => {
            text += "  (noop is the replayer's own cost: subtract it from an allocator's time)\n";
        }
        _ => {}
    }
    out_ok(write!(out, "{text}"))
}

#[derive(Serialize)]
struct CheckJson<'a> {
    file: String,
    #[serde(flatten)]
    report: &'a traces::check::Report,
    divergences: u64,
    seconds: f64,
    events_per_second: f64,
}

fn cmd_check(path: &Path, json: bool, limit: Option<u64>, full_every: u64) -> Result<(), Failure> {
    use traces::check::{self, CheckError, Options};
    let name = path.display().to_string();
    if name == "-" {
        return Err(Failure(
            "check: needs a file, not stdin (the trace is read twice)".into(),
        ));
    }
    let opts = Options {
        limit,
        full_every: full_every.max(1),
        instance: hakmem::InstanceConfig {
            // Deterministic: no purge by age (the threshold purge stays).
            purge_delay_ms: u64::MAX,
            ..hakmem::InstanceConfig::DEFAULT
        },
    };
    let pb = progress(None, "check: reading");
    let start = std::time::Instant::now();
    let mut replaying = false;
    let bar =
        ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} events {per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
    let r = check::check::<verify::backends::record::Record>(
        &name,
        || TraceReader::open(path),
        &opts,
        |done, total| {
            if let (Some(total), false) = (total, replaying) {
                replaying = true;
                pb.set_style(bar.clone());
                pb.set_length(total);
                pb.set_message("check: replaying");
                pb.reset();
            }
            pb.set_position(done);
        },
    );
    pb.finish_and_clear();
    let secs = start.elapsed().as_secs_f64();
    let mut out = io::stdout().lock();
    match r {
        Ok(rep) => {
            if json {
                let j = CheckJson {
                    file: name,
                    report: &rep,
                    divergences: 0,
                    seconds: secs,
                    events_per_second: rep.checked as f64 / secs.max(1e-9),
                };
                out_ok(writeln!(out, "{}", serde_json::to_string_pretty(&j)?))?;
            } else {
                let mut text = format!(
                    "{name}: {} events, {} threads ({} logical, {} heaps reused), peak live {} bytes in {} blocks\n",
                    rep.events,
                    rep.threads,
                    rep.logical_threads,
                    rep.reused_heaps,
                    rep.peak_live_bytes,
                    rep.peak_live_blocks
                );
                if rep.checked < rep.events {
                    text += &format!(
                        "  prefix: the first {} of {} events replayed\n",
                        rep.checked, rep.events
                    );
                }
                text += &format!(
                    "  {} large allocations, reallocs {} in place / {} moved, {} remote frees ({} after the allocating thread ended)\n",
                    rep.large_allocs, rep.realloc_in_place, rep.realloc_moved, rep.remote_frees, rep.frees_after_exit
                );
                text += &format!(
                    "  {} model steps; {} whole-state and {} touched-parts comparisons; {:.2} s, {:.0} events/s\n",
                    rep.steps,
                    rep.full_checks,
                    rep.touched_checks,
                    secs,
                    rep.checked as f64 / secs.max(1e-9)
                );
                text += &format!("checked {} events, 0 divergences\n", rep.checked);
                out_ok(write!(out, "{text}"))?;
            }
            Ok(())
        }
        Err(CheckError::Trace(e)) => Err(Failure(e.to_string())),
        Err(e) => {
            if json {
                let (line, index, event, kind) = match &e {
                    CheckError::Divergence {
                        line,
                        index,
                        event,
                        divergence,
                        ..
                    } => (*line, Some(*index), Some(event.clone()), divergence.kind()),
                    CheckError::Memory { line, .. } => (*line, None, None, "memory"),
                    CheckError::Unsupported { line, .. } => (*line, None, None, "unsupported"),
                    CheckError::Trace(_) => unreachable!("handled above"),
                };
                let j = serde_json::json!({
                    "file": name,
                    "divergences": 1,
                    "line": line,
                    "index": index,
                    "event": event,
                    "kind": kind,
                    "message": e.to_string(),
                });
                out_ok(writeln!(out, "{}", serde_json::to_string_pretty(&j)?))?;
            }
            Err(Failure(e.to_string()))
        }
    }
}

/// The trace files a recording to `out` produced: `out` itself, then
/// `out.<pid>` in pid order.
fn recorded_files(out: &Path) -> Vec<PathBuf> {
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

fn cmd_record(
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
