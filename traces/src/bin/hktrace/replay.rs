//! `hktrace replay`: timed passes on an allocator, its no-op baseline, the
//! report.

use crate::{open, out_ok, Failure};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use std::io::{self, IsTerminal, Write};
use std::path::Path;
use traces::replay::{self, AllocName, Outcome, Trace};

/// A progress bar over events, on stderr only when it is a terminal.
pub(crate) fn progress_events(len: u64, what: &str) -> Option<ProgressBar> {
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
pub(crate) struct Timing {
    pub(crate) wall_secs: f64,
    pub(crate) ops_per_sec: f64,
    pub(crate) ns_per_op: f64,
}

impl Timing {
    pub(crate) fn new(o: &Outcome) -> Timing {
        let secs = o.wall.as_secs_f64().max(1e-9);
        Timing {
            wall_secs: secs,
            ops_per_sec: o.events as f64 / secs,
            ns_per_op: secs * 1e9 / o.events.max(1) as f64,
        }
    }
}

#[derive(Serialize)]
pub(crate) struct ReplayReport {
    pub(crate) file: String,
    pub(crate) alloc: &'static str,
    /// Events in the trace (each pass runs them all).
    pub(crate) events: u64,
    /// Passes on the same threads (`--repeat`, raised by `--min-events`).
    pub(crate) repeat: u32,
    /// Events the figures below are over: the passes after the first, or
    /// the only pass.
    pub(crate) timed_events: u64,
    pub(crate) threads: usize,
    pub(crate) blocks: u64,
    /// Seconds to read and load the trace (untimed in the figures).
    pub(crate) load_secs: f64,
    /// Bytes of the loaded form (op lists and slot table).
    pub(crate) trace_memory_bytes: u64,
    /// Resident set after loading, before replaying (KiB).
    pub(crate) rss_loaded_kib: u64,
    /// The replay on `alloc`: the passes after the first (the only one
    /// if `repeat` is 1).
    #[serde(flatten)]
    pub(crate) run: Timing,
    /// The first pass alone (cold: the threads' heap set-up and first-touch
    /// page faults) and its minor faults.
    pub(crate) first_pass: Timing,
    pub(crate) first_pass_minflt: u64,
    /// Peak resident set of the process after the replay on `alloc`
    /// (getrusage; includes the loaded trace, see `rss_loaded_kib`).
    pub(crate) peak_rss_kib: u64,
    /// Minor page faults during the timed passes on `alloc` (as `run`).
    pub(crate) minflt: u64,
    /// The same trace on the no-op allocator (`noop`): the harness's own cost.
    pub(crate) baseline: Option<Timing>,
    /// `wall_secs − baseline.wall_secs`: the allocator's own time.
    pub(crate) above_baseline_secs: Option<f64>,
    /// The same per event.
    pub(crate) above_baseline_ns_per_op: Option<f64>,
}

/// Replays `passes` times on `name` on the same threads, with a progress
/// bar when stderr is a terminal; one outcome per pass.
pub(crate) fn replay_passes(
    trace: &Trace,
    name: AllocName,
    passes: u32,
) -> Result<Vec<Outcome>, Failure> {
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
pub(crate) fn passes_for(events: u64, repeat: u32, min_events: u64) -> u32 {
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
pub(crate) fn timed(passes: &[Outcome]) -> Outcome {
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

pub(crate) fn cmd_replay(
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
