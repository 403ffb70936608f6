//! The command line: subcommands, their arguments and value enums (clap).

use clap::{Parser, Subcommand, ValueEnum};
use std::ffi::OsString;
use std::path::PathBuf;
use traces::replay::AllocName;

#[derive(Parser)]
#[command(
    name = "hktrace",
    version,
    about = "Tools for hktrace allocation traces"
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) cmd: Cmd,
}

#[derive(Subcommand)]
pub(crate) enum Cmd {
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
pub(crate) enum AllocArg {
    Hakmem,
    System,
    Mimalloc,
    Jemalloc,
    Noop,
}

impl AllocArg {
    pub(crate) fn name(self) -> AllocName {
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
pub(crate) enum SynthCmd {
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
pub(crate) enum FormatArg {
    Text,
    Binary,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum CompressArg {
    None,
    Gzip,
    Zstd,
}
