//! From measurements to the report: the per-row numbers (medians, ratios,
//! cost above the floor, peak RSS), hakmem's standing against issue 7's
//! targets, and the Markdown of `docs/benchmarks.md`.
//!
//! Definitions used throughout:
//! - throughput = ops / seconds of one run; the table shows its median over
//!   the rounds, and min–max;
//! - "× best peer" = median throughput ÷ the highest median throughput among
//!   the peers (system, mimalloc, jemalloc and any preloaded library) of the
//!   same row in the same run;
//! - "ns/op above floor" = median ns/op − the floor's median ns/op (rows of
//!   the random_mixed family only);
//! - peak RSS = the worker's `getrusage` `ru_maxrss`, median over rounds;
//!   "× leanest" divides by the smallest peer median of the row.

use std::fmt::Write as _;

use crate::machine::Machine;
use crate::stats::{self, Summary};
use crate::suite::{Column, Row};
use crate::worker::Sample;

/// The runs of one (row, column): samples and failure messages.
#[derive(Clone, Debug, Default)]
pub struct Cell {
    /// One per successful run.
    pub samples: Vec<Sample>,
    /// One per failed run (crash, timeout, unparsable output).
    pub failures: Vec<String>,
}

/// Everything one driver run measured.
#[derive(Clone, Debug)]
pub struct Measurements {
    /// The rows run.
    pub rows: Vec<Row>,
    /// The columns run (not every column runs every row: the floor only
    /// runs the random_mixed family).
    pub columns: Vec<Column>,
    /// `cells[row][column]`.
    pub cells: Vec<Vec<Cell>>,
    /// Whether the `--quick` parameters were used.
    pub quick: bool,
    /// Rounds asked for.
    pub rounds: usize,
    /// What stood in for hakmem, if its binary said it is a stand-in.
    pub stand_in: Option<String>,
}

/// The numbers of one (row, column).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stat {
    /// Throughput, ops/s.
    pub tput: Summary,
    /// ns per op (median over runs).
    pub ns_per_op: f64,
    /// Peak RSS, MiB.
    pub rss_mib: Summary,
    /// Minor page faults of the whole worker (median).
    pub minflt: f64,
    /// Throughput ÷ the best peer's (medians).
    pub vs_best: Option<f64>,
    /// ns/op above the floor's.
    pub above_floor_ns: Option<f64>,
    /// RSS ÷ the leanest peer's (medians).
    pub vs_leanest: Option<f64>,
}

/// The computed table: `stats[row][column]`, `None` where nothing ran.
#[derive(Clone, Debug)]
pub struct Table {
    /// Per row and column.
    pub stats: Vec<Vec<Option<Stat>>>,
    /// Per row: the best peer's label and median throughput.
    pub best_peer: Vec<Option<(String, f64)>>,
    /// Per row: the leanest peer's label and median RSS (MiB).
    pub leanest_peer: Vec<Option<(String, f64)>>,
}

impl Table {
    /// Computes every number of the report from the samples.
    pub fn compute(m: &Measurements) -> Self {
        Self::of(&m.columns, &m.cells)
    }

    /// The numbers of `cells[row][column]` measured on `columns` (any rows:
    /// the preload suite's programs as well as the workloads).
    pub fn of(columns: &[Column], cells: &[Vec<Cell>]) -> Self {
        let mut stats = Vec::new();
        let mut best_peer = Vec::new();
        let mut leanest_peer = Vec::new();
        for cells in cells {
            let mut row: Vec<Option<Stat>> = cells
                .iter()
                .map(|c| {
                    let tput: Vec<f64> = c.samples.iter().map(|s| s.ops as f64 / s.secs).collect();
                    let ns: Vec<f64> = c
                        .samples
                        .iter()
                        .map(|s| stats::ns_per_op(s.secs, s.ops))
                        .collect();
                    let rss: Vec<f64> = c
                        .samples
                        .iter()
                        .map(|s| s.maxrss_kib as f64 / 1024.0)
                        .collect();
                    let faults: Vec<f64> = c.samples.iter().map(|s| s.minflt as f64).collect();
                    Some(Stat {
                        tput: Summary::of(&tput)?,
                        ns_per_op: Summary::of(&ns)?.median,
                        rss_mib: Summary::of(&rss)?,
                        minflt: Summary::of(&faults)?.median,
                        vs_best: None,
                        above_floor_ns: None,
                        vs_leanest: None,
                    })
                })
                .collect();
            let peers = || {
                columns
                    .iter()
                    .zip(&row)
                    .filter(|(c, _)| c.is_peer())
                    .filter_map(|(c, s)| s.map(|s| (c.label().to_string(), s)))
            };
            let best = peers()
                .max_by(|a, b| a.1.tput.median.total_cmp(&b.1.tput.median))
                .map(|(l, s)| (l, s.tput.median));
            let lean = peers()
                .min_by(|a, b| a.1.rss_mib.median.total_cmp(&b.1.rss_mib.median))
                .map(|(l, s)| (l, s.rss_mib.median));
            let floor_ns = columns
                .iter()
                .zip(&row)
                .find(|(c, _)| **c == Column::Floor)
                .and_then(|(_, s)| s.map(|s| s.ns_per_op));
            for (c, s) in columns.iter().zip(row.iter_mut()) {
                if let Some(s) = s {
                    s.vs_best = best.as_ref().and_then(|b| stats::ratio(s.tput.median, b.1));
                    s.vs_leanest = lean
                        .as_ref()
                        .and_then(|l| stats::ratio(s.rss_mib.median, l.1));
                    if *c != Column::Floor {
                        s.above_floor_ns = floor_ns.map(|f| s.ns_per_op - f);
                    }
                }
            }
            stats.push(row);
            best_peer.push(best);
            leanest_peer.push(lean);
        }
        Self {
            stats,
            best_peer,
            leanest_peer,
        }
    }

    fn get(&self, m: &Measurements, row: &str, col: &Column) -> Option<Stat> {
        let r = m.rows.iter().position(|r| r.name == row)?;
        let c = m.columns.iter().position(|c| c == col)?;
        self.stats[r][c]
    }
}

/// Verdict of one target check.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// Reached.
    Met,
    /// Not reached.
    Missed,
    /// Not measurable in this run (rows not run, or failures).
    NotMeasured,
}

impl Verdict {
    fn mark(&self) -> &'static str {
        match self {
            Verdict::Met => "✓",
            Verdict::Missed => "✗",
            Verdict::NotMeasured => "–",
        }
    }

    fn of(ok: Option<bool>) -> Self {
        match ok {
            Some(true) => Verdict::Met,
            Some(false) => Verdict::Missed,
            None => Verdict::NotMeasured,
        }
    }
}

/// One target of issue 7 with hakmem's standing: an overall verdict and one
/// line per row it covers.
#[derive(Clone, Debug)]
pub struct Target {
    /// Short name: the `## key` section of the analysis file
    /// (`docs/benchmarks-analysis.md`) that explains a miss.
    pub key: &'static str,
    /// The target as issue 7 states it.
    pub title: String,
    /// All rows met → Met; any missed → Missed; else NotMeasured.
    pub verdict: Verdict,
    /// (verdict, "row: numbers") per covered row.
    pub lines: Vec<(Verdict, String)>,
}

fn overall(lines: &[(Verdict, String)]) -> Verdict {
    if lines.iter().any(|l| l.0 == Verdict::Missed) {
        Verdict::Missed
    } else if !lines.is_empty() && lines.iter().all(|l| l.0 == Verdict::Met) {
        Verdict::Met
    } else {
        Verdict::NotMeasured
    }
}

/// hakmem against each target of issue 7 (and its acceptance floor).
pub fn targets(m: &Measurements, t: &Table) -> Vec<Target> {
    let hk = |row: &str| t.get(m, row, &Column::Hakmem);
    let mut out = Vec::new();
    let mut push = |key: &'static str, title: &str, lines: Vec<(Verdict, String)>| {
        out.push(Target {
            key,
            title: title.to_string(),
            verdict: overall(&lines),
            lines,
        })
    };
    let ratio_line = |r: &Row, min: f64| {
        let s = hk(r.name);
        let v = s.and_then(|s| s.vs_best);
        let best = t.best_peer[m.rows.iter().position(|x| x.name == r.name).unwrap_or(0)]
            .as_ref()
            .map_or("no peer".to_string(), |b| b.0.clone());
        (
            Verdict::of(v.map(|v| v >= min)),
            match v {
                Some(v) => format!("{}: {v:.2}× {best}", r.name),
                None => format!("{}: not measured", r.name),
            },
        )
    };
    push(
        "throughput",
        "Throughput ≥ 1.15× the best peer on every row",
        m.rows.iter().map(|r| ratio_line(r, 1.15)).collect(),
    );
    let cost_rows: Vec<&Row> = m.rows.iter().filter(|r| r.cost_target).collect();
    push(
        "cost",
        "Allocator cost above the floor ≤ 1.5 ns/op on random_mixed WS 256 and the fixed sizes",
        cost_rows
            .iter()
            .map(|r| {
                let c = hk(r.name).and_then(|s| s.above_floor_ns);
                (
                    Verdict::of(c.map(|c| c <= 1.5)),
                    match c {
                        Some(c) => format!("{}: {c:.2} ns/op above the floor", r.name),
                        None => format!("{}: not measured", r.name),
                    },
                )
            })
            .collect(),
    );
    push(
        "rss",
        "Peak RSS ≤ 1.1× the leanest peer on every row",
        m.rows
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let s = hk(r.name);
                let v = s.and_then(|s| s.vs_leanest);
                let lean = t.leanest_peer[i]
                    .as_ref()
                    .map_or(String::new(), |l| format!(" ({} {:.1} MiB)", l.0, l.1));
                (
                    Verdict::of(v.map(|v| v <= 1.1)),
                    match (s, v) {
                        (Some(s), Some(v)) => format!(
                            "{}: {:.1} MiB, {v:.2}× the leanest{lean}",
                            r.name, s.rss_mib.median
                        ),
                        _ => format!("{}: not measured", r.name),
                    },
                )
            })
            .collect(),
    );
    // The peers' own scaling, for context: what two cores gave in this run.
    let peer_scaling: Vec<String> = m
        .columns
        .iter()
        .filter(|c| c.is_peer())
        .filter_map(|c| {
            let a = t.get(m, "larson_t1", c)?;
            let b = t.get(m, "larson_t2", c)?;
            Some(format!(
                "{} {:.2}×",
                c.label(),
                b.tput.median / a.tput.median
            ))
        })
        .collect();
    let larson = match (hk("larson_t1"), hk("larson_t2")) {
        (Some(a), Some(b)) => {
            let s = b.tput.median / a.tput.median;
            vec![(
                Verdict::of(Some(s >= 1.8)),
                format!(
                    "larson_t2 / larson_t1 = {:.1} / {:.1} Mops/s = {s:.2}× (peers in the same run: {})",
                    b.tput.median / 1e6,
                    a.tput.median / 1e6,
                    peer_scaling.join(", ")
                ),
            )]
        }
        _ => vec![(
            Verdict::NotMeasured,
            "larson_t1 and larson_t2 not both measured".to_string(),
        )],
    };
    push("larson", "Larson T=2 total ≥ 1.8× its T=1", larson);
    push(
        "acceptance",
        "Acceptance: ≥ 1.0× the best peer on random_mixed WS 256 and the fixed sizes",
        cost_rows.iter().map(|r| ratio_line(r, 1.0)).collect(),
    );
    out
}

/// Everything the Markdown needs besides the measurements.
#[derive(Clone, Debug)]
pub struct Context {
    /// The machine and build.
    pub machine: Machine,
    /// When the run started.
    pub date: String,
    /// The exact command of this run.
    pub command: String,
    /// Load averages at start and end.
    pub load: (String, String),
    /// Wall-clock minutes of the whole run.
    pub minutes: f64,
    /// The file name of the chart, beside the report.
    pub chart_file: String,
    /// The hand-maintained analysis (`docs/benchmarks-analysis.md`): the
    /// profile and the reason for each target, in `## key` sections (see
    /// [`Target::key`]); `None` if the file is missing.
    pub analysis: Option<String>,
    /// The instruction-count tables beside the report, as (file name,
    /// text), those present only: `benchmarks-callgrind.md` (the Rust
    /// path) and `benchmarks-callgrind-capi.md` (the C ABI,
    /// `bench/callgrind-capi`). Embedded so that the report holds the
    /// profiles it cites.
    pub callgrind: Vec<(String, String)>,
}

/// The body of section `## key` of the analysis file (up to the next `## `).
pub fn analysis_section<'a>(analysis: &'a str, key: &str) -> Option<&'a str> {
    let heading = format!("## {key}");
    let mut start = None;
    let mut off = 0;
    for l in analysis.split_inclusive('\n') {
        let at = off;
        off += l.len();
        match start {
            None if l.trim_end() == heading => start = Some(off),
            Some(s) if l.starts_with("## ") => return Some(analysis[s..at].trim()),
            _ => {}
        }
    }
    start.map(|s| analysis[s..].trim())
}

fn fmt_opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map_or("–".to_string(), f)
}

/// The text of `docs/benchmarks.md`.
pub fn markdown(m: &Measurements, t: &Table, cx: &Context) -> String {
    let mut s = String::new();
    let w = &mut s;
    let _ = writeln!(w, "# Benchmarks\n");
    let _ = writeln!(
        w,
        "Written by the benchmark driver (`bench/`, issue 7) on {}; do not edit by hand.\n",
        cx.date
    );
    if let Some(what) = &m.stand_in {
        let _ = writeln!(
            w,
            "> **Warning: the hakmem column is not hakmem.** {what}: `hakmem::Hakmem` had not \
             landed when this report was written, so every hakmem number below is a stand-in's \
             and the target verdicts say nothing about hakmem.\n"
        );
    }
    if m.quick {
        let _ = writeln!(
            w,
            "> **Quick run** (`--quick`: sizes cut about tenfold, for smoke tests). \
             The numbers are not the benchmark's.\n"
        );
    }
    if m.rounds < 5 {
        let _ = writeln!(
            w,
            "> Only {} round(s): issue 7 asks for at least 5.\n",
            m.rounds
        );
    }
    let _ = writeln!(
        w,
        "![throughput relative to the best peer]({})\n",
        cx.chart_file
    );

    let _ = writeln!(w, "## Machine and run\n");
    let mc = &cx.machine;
    let _ = writeln!(w, "| | |\n| --- | --- |");
    let _ = writeln!(w, "| CPU | {} |", mc.cpu);
    let _ = writeln!(w, "| logical cores | {} |", mc.cores);
    let _ = writeln!(w, "| kernel | {} |", mc.kernel);
    let _ = writeln!(w, "| rustc | {} |", mc.rustc);
    let _ = writeln!(w, "| glibc | {} |", mc.glibc);
    let _ = writeln!(w, "| peer crates | {} |", mc.crates.join(", "));
    let _ = writeln!(w, "| date | {} |", cx.date);
    let _ = writeln!(w, "| command | `{}` |", cx.command);
    let _ = writeln!(
        w,
        "| rounds | {} ({} parameters) |",
        m.rounds,
        if m.quick { "quick" } else { "full" }
    );
    let _ = writeln!(
        w,
        "| load average (1, 5, 15 min) | start {}, end {} |",
        cx.load.0, cx.load.1
    );
    let _ = writeln!(w, "| duration | {:.1} min |\n", cx.minutes);

    let _ = writeln!(w, "## Throughput relative to the best peer\n");
    let _ = writeln!(
        w,
        "Median throughput ÷ the best peer's median in the same run (higher is better; \
         the best peer is 1.00).\n"
    );
    let alloc_cols: Vec<(usize, &Column)> = m
        .columns
        .iter()
        .enumerate()
        .filter(|(_, c)| **c != Column::Floor)
        .collect();
    let _ = write!(w, "| row |");
    for (_, c) in &alloc_cols {
        let _ = write!(w, " {} |", c.label());
    }
    let _ = writeln!(w, " best peer (Mops/s) |");
    let _ = writeln!(w, "|{}", " --- |".repeat(alloc_cols.len() + 2));
    for (i, r) in m.rows.iter().enumerate() {
        let _ = write!(w, "| {} |", r.name);
        for (j, _) in &alloc_cols {
            let cell = fmt_opt(t.stats[i][*j].and_then(|s| s.vs_best), |v| {
                format!("{v:.2}")
            });
            let _ = write!(w, " {cell} |");
        }
        let best = t.best_peer[i]
            .as_ref()
            .map_or("–".to_string(), |b| format!("{} {:.1}", b.0, b.1 / 1e6));
        let _ = writeln!(w, " {best} |");
    }

    let _ = writeln!(w, "\n## Results\n");
    let _ = writeln!(
        w,
        "Medians over the rounds, min–max in the same unit. ns/op above floor: the allocator's \
         own cost per op (random_mixed family only). Peak RSS and minor page faults: the whole worker \
         process (`getrusage`).\n"
    );
    let _ = writeln!(
        w,
        "| row | allocator | Mops/s | min–max | × best peer | ns/op | ns/op above floor | \
         peak RSS MiB | min–max | × leanest peer | page faults | runs |"
    );
    let _ = writeln!(w, "|{}", " --- |".repeat(12));
    for (i, r) in m.rows.iter().enumerate() {
        for (j, c) in m.columns.iter().enumerate() {
            let cell = &m.cells[i][j];
            if cell.samples.is_empty() && cell.failures.is_empty() {
                continue;
            }
            let runs = if cell.failures.is_empty() {
                format!("{}", cell.samples.len())
            } else {
                format!(
                    "{} ok, {} failed: {}",
                    cell.samples.len(),
                    cell.failures.len(),
                    cell.failures[0].replace('|', "/")
                )
            };
            match t.stats[i][j] {
                Some(s) => {
                    let _ = writeln!(
                        w,
                        "| {} | {} | {:.2} | {:.2}–{:.2} | {} | {:.2} | {} | {:.1} | {:.1}–{:.1} | {} | {:.0} | {} |",
                        r.name,
                        c.label(),
                        s.tput.median / 1e6,
                        s.tput.min / 1e6,
                        s.tput.max / 1e6,
                        fmt_opt(s.vs_best, |v| format!("{v:.2}")),
                        s.ns_per_op,
                        fmt_opt(s.above_floor_ns, |v| format!("{v:.2}")),
                        s.rss_mib.median,
                        s.rss_mib.min,
                        s.rss_mib.max,
                        fmt_opt(s.vs_leanest, |v| format!("{v:.2}")),
                        s.minflt,
                        runs
                    );
                }
                None => {
                    let _ = writeln!(
                        w,
                        "| {} | {} | – | – | – | – | – | – | – | – | – | {} |",
                        r.name,
                        c.label(),
                        runs
                    );
                }
            }
        }
    }

    let _ = writeln!(w, "\n## hakmem against the targets of issue 7\n");
    if m.stand_in.is_some() {
        let _ = writeln!(
            w,
            "(The hakmem column was a stand-in: these verdicts are the stand-in's.)\n"
        );
    }
    let _ = writeln!(w, "✓ reached, ✗ not reached, – not measured in this run.\n");
    let _ = writeln!(w, "| target | standing |\n| --- | --- |");
    let all = targets(m, t);
    for tg in &all {
        let _ = writeln!(w, "| {} | {} |", tg.title, tg.verdict.mark());
    }
    let _ = writeln!(w);
    for tg in &all {
        let _ = writeln!(w, "- {} **{}**", tg.verdict.mark(), tg.title);
        for (v, line) in &tg.lines {
            let _ = writeln!(w, "  - {} {line}", v.mark());
        }
    }
    let missed: Vec<&Target> = all
        .iter()
        .filter(|t| t.verdict == Verdict::Missed)
        .collect();
    if !missed.is_empty() {
        let _ = writeln!(w, "\n## Why the targets not reached are missed\n");
        let _ = writeln!(
            w,
            "Profiles and reasons, maintained by hand in \
             [`docs/benchmarks-analysis.md`](benchmarks-analysis.md) (one `## key` section per \
             target) and included here for each target this run missed; the numbers they quote \
             come from the run or profile they name.\n"
        );
        for tg in missed {
            let _ = writeln!(w, "### {} ({})\n", tg.title, tg.key);
            match cx
                .analysis
                .as_deref()
                .and_then(|a| analysis_section(a, tg.key))
            {
                Some(text) if !text.is_empty() => {
                    let _ = writeln!(w, "{text}\n");
                }
                _ => {
                    let _ = writeln!(
                        w,
                        "*No analysis recorded: add a `## {}` section to \
                         docs/benchmarks-analysis.md.*\n",
                        tg.key
                    );
                }
            }
        }
    }
    let _ = writeln!(
        w,
        "\nTrace replays (`replay_*` rows) run `hktrace replay <corpus trace> --alloc <allocator> \
         --json --no-baseline --repeat N --min-events M`: one OS thread per trace thread, started \
         once; the whole trace is replayed in passes on those threads (the blocks live at its end \
         freed after each pass, untimed). The first pass is cold (the threads' heap set-up, \
         first-touch page faults) and not in the throughput, which is that of the warm passes \
         after it, added until they hold M events (N passes at least); the page-fault column \
         counts every pass, the first included. Their floor column is `--alloc noop` (the \
         replayer's own cost), and their peak RSS includes the loaded trace (the same for every \
         allocator)."
    );
    for (file, cg) in &cx.callgrind {
        // The included file's title becomes the section's; its date line stays.
        let title = cg
            .lines()
            .find_map(|l| l.strip_prefix("# "))
            .unwrap_or("Instructions per operation");
        let _ = writeln!(w, "\n## {title} (from docs/{file})\n");
        for l in cg
            .lines()
            .skip_while(|l| l.starts_with("# ") || l.trim().is_empty())
        {
            // Its sections become subsections of this one.
            match l.strip_prefix("## ") {
                Some(h) => {
                    let _ = writeln!(w, "### {h}");
                }
                None => {
                    let _ = writeln!(w, "{l}");
                }
            }
        }
    }

    let _ = writeln!(w, "\n## Workloads\n");
    let _ = writeln!(
        w,
        "Each run is one process: `target/release/bench-<allocator> <workload>` with the \
         arguments below (run one by hand to reproduce a cell). Blocks are requested through \
         `std::alloc::{{alloc, dealloc}}` with alignment 8, which glibc's and jemalloc's Rust \
         wrappers pass straight to `malloc`/`free` (the mimalloc crate calls `mi_malloc_aligned`).\n"
    );
    let _ = writeln!(w, "| row | worker arguments |\n| --- | --- |");
    for r in &m.rows {
        let _ = writeln!(
            w,
            "| {} | `{}` |",
            r.name,
            r.workload(m.quick).to_args().join(" ")
        );
    }
    let _ = writeln!(w, "\n{WORKLOAD_NOTES}");
    let _ = writeln!(w, "{METHOD_NOTES}");
    s
}

/// Definitions of the workloads, for the report.
const WORKLOAD_NOTES: &str = "\
- `random_mixed CYCLES WS SEED MIN MAX` (the C benchmark): xorshift32; per iteration one draw `r`, \
slot `r % WS`; an occupied slot is freed, an empty one gets `clamp(16 + (r & 0x3FF), MIN, MAX)` \
bytes and its first byte written. An untimed warm-up of CYCLES/10 iterations (seed `SEED ^ \
0x5bd1e995`) runs first on the same slots; ops = CYCLES (one malloc or free each). \
`fixed_N` is MIN = MAX = N; `c7_only` is 1024 B with WS 64; `c6_heavy` is MIN 257, MAX 768 (the \
clamp puts about half of the blocks at 257 or 768 B).
- `random_mixed_indep`: the same, with the size from a second draw (with WS a power of two, the C \
definition ties each slot to a few sizes: WS 8192 to exactly one).
- `larson THREADS ROUNDS PER_ROUND BLOCKS MIN MAX SEED`: each thread fills two arrays of BLOCKS \
blocks (untimed), holds one and puts the other in a pool of idle arrays; per round it replaces \
PER_ROUND random blocks (sizes MIN..=MAX) of the array it holds, puts it back in the pool and takes \
the oldest idle array another thread held last (no barrier: a thread waits, spinning, only when it is \
a whole round ahead of every other). From the first hand-over on, blocks are freed by a thread that \
did not allocate them (with the suite's 512 blocks and 8192 replacements per round, about 6% of all \
frees). Each thread times itself, thread exit excluded. ops = allocator calls = 2 × T × ROUNDS × \
PER_ROUND.
- `cache_thrash` / `cache_scratch THREADS ITERATIONS SIZE WRITES` (Hoard's false-sharing tests): \
each thread allocates a SIZE-byte object, writes and reads back each byte WRITES times, frees it; \
in cache_scratch the main thread first allocates one object per thread back to back and each \
thread starts by freeing the one it was handed. ops = malloc-write-free cycles.
- `churn ROUNDS ENTRIES SEED`: build a `HashMap<String, Vec<u64>>` (fixed-key hasher) of ENTRIES \
formatted keys with vectors grown by push to 0..63 elements, a growing log of cloned keys, every \
eighth entry removing one; drop it all; ops = insertions.
- The floor (`bench-noop`): the random_mixed loop with every slot's block pre-allocated — one \
cache line per slot, contiguous, as compact as possible so that the floor stays a lower bound — \
so malloc is an address computation and free nothing: the cost of the loop itself.";

/// How the numbers were made, for the report.
const METHOD_NOTES: &str = "
## Method

- One benchmark source (`bench/src/workloads.rs`) built once per allocator (`bench/src/bin/`), \
release profile with `lto = \"fat\"`, `codegen-units = 1`; each binary differs only in its \
`#[global_allocator]`.
- Every (row, allocator) run is a separate process. Rounds alternate the allocators (A B C D A B \
C D …) over every row, so slow drifts of the machine spread over all columns.
- Time: the workload's own timer around its timed part (`std::time::Instant`). Peak RSS: the \
worker's `getrusage(RUSAGE_SELF).ru_maxrss` at exit (the whole process: binary, harness and heap).
- Peers: system (glibc), mimalloc, jemalloc, and a `--preload` library if given. hakmem and the \
floor are not peers.
- Each allocator is used the way a Rust program gets it: the C peers are static libraries \
called through FFI (no cross-language LTO), while hakmem, being Rust, can be inlined into the \
benchmark loop by fat LTO.

## Instruction counts (callgrind)

`cargo run --release -p bench -- callgrind` runs every allocator's binary under \
`valgrind --tool=callgrind`, counting instructions only inside the timed loop \
(`--toggle-collect` on `mixed_timed_loop`), on random_mixed WS 256 and the fixed sizes with a \
small CYCLES (200,000 by default), and prints instructions per operation and the same minus the \
floor's (the allocator's own instructions per malloc/free beyond the benchmark loop). It writes \
[`docs/benchmarks-callgrind.md`](benchmarks-callgrind.md) (needs valgrind). Hardware counters (`perf stat -e instructions`) are not \
supported on this machine's virtual CPUs, hence callgrind.

## Commands

```sh
cargo run --release -p bench                       # the full suite (default 7 rounds)
cargo run --release -p bench -- --quick --rounds 2 # a smoke run
cargo run --release -p bench -- --workloads random_mixed_ws256,fixed --rounds 9
cargo run --release -p bench -- --preload /usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4
cargo run --release -p bench -- callgrind          # instructions per operation
cargo run --release -p bench -- --help
```";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suite;

    fn sample(ops: u64, secs: f64, rss_kib: u64) -> Sample {
        Sample {
            ops,
            secs,
            maxrss_kib: rss_kib,
            minflt: 0,
        }
    }

    /// Two rows (random_mixed_ws256 with a floor, larson_t1) and the five
    /// columns; numbers chosen so the ratios are easy to check.
    fn measurements() -> Measurements {
        let all = suite::rows();
        let rows = suite::select(&all, &["random_mixed_ws256".into(), "larson_t1".into()]).unwrap();
        let columns = suite::columns(None); // system mimalloc jemalloc hakmem floor
        let cell = |secs: &[f64], rss: u64| Cell {
            samples: secs.iter().map(|&s| sample(1_000_000, s, rss)).collect(),
            failures: vec![],
        };
        let rm = vec![
            cell(&[0.010, 0.011, 0.012], 2048), // system: 10 ns/op median 11 → 90.9 Mops/s
            cell(&[0.008, 0.009, 0.030], 4096), // mimalloc: median 9 ns/op → best peer
            cell(&[0.010, 0.010, 0.010], 3072), // jemalloc
            cell(&[0.006, 0.006, 0.007], 2150), // hakmem: 6 ns/op
            cell(&[0.004, 0.004, 0.004], 9000), // floor: 4 ns/op
        ];
        let la = vec![
            cell(&[0.02], 4096),
            cell(&[0.01], 8192),
            Cell {
                samples: vec![],
                failures: vec!["crashed".into()],
            },
            cell(&[0.02], 4096),
            Cell::default(),
        ];
        Measurements {
            rows,
            columns,
            cells: vec![rm, la],
            quick: true,
            rounds: 3,
            stand_in: None,
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9 * b.abs().max(1.0)
    }

    #[test]
    fn ratios_are_to_the_best_and_leanest_peer_of_the_row() {
        let m = measurements();
        let t = Table::compute(&m);
        let best = t.best_peer[0].clone().unwrap();
        assert_eq!(best.0, "mimalloc");
        assert!(close(best.1, 1e6 / 0.009));
        let hk = t.stats[0][3].unwrap();
        assert!(close(hk.vs_best.unwrap(), 9.0 / 6.0));
        assert!(close(hk.ns_per_op, 6.0));
        assert!(close(hk.above_floor_ns.unwrap(), 2.0));
        assert!(close(t.stats[0][1].unwrap().vs_best.unwrap(), 1.0));
        // The floor has no cost above itself and is no peer.
        assert_eq!(t.stats[0][4].unwrap().above_floor_ns, None);
        assert_eq!(t.leanest_peer[0].clone().unwrap().0, "system");
        assert!(close(hk.vs_leanest.unwrap(), 2150.0 / 2048.0));
        // Larson: jemalloc failed, no floor.
        assert!(t.stats[1][2].is_none() && t.stats[1][4].is_none());
        assert_eq!(t.stats[1][3].unwrap().above_floor_ns, None);
        assert!(close(t.stats[1][3].unwrap().vs_best.unwrap(), 0.5));
    }

    #[test]
    fn targets_give_verdicts_with_numbers() {
        let m = measurements();
        let t = Table::compute(&m);
        let tg = targets(&m, &t);
        let find = |p: &str| tg.iter().find(|x| x.title.starts_with(p)).unwrap();
        // 1.5× on random_mixed but 0.5× on larson_t1.
        let thr = find("Throughput");
        assert_eq!(thr.verdict, Verdict::Missed);
        assert_eq!(thr.lines[0].0, Verdict::Met);
        assert!(thr.lines[0].1.contains("1.50× mimalloc"), "{:?}", thr.lines);
        assert_eq!(thr.lines[1].0, Verdict::Missed);
        // 2.0 ns/op above the floor > 1.5.
        let cost = find("Allocator cost");
        assert_eq!(cost.verdict, Verdict::Missed);
        assert!(cost.lines[0].1.contains("2.00 ns/op"));
        // RSS 2150/2048 = 1.05 ≤ 1.1 on random_mixed, 1.0 on larson.
        assert_eq!(find("Peak RSS").verdict, Verdict::Met);
        assert_eq!(find("Larson").verdict, Verdict::NotMeasured);
        assert_eq!(find("Acceptance").verdict, Verdict::Met);
    }

    #[test]
    fn markdown_has_every_row_and_column_and_the_gaps() {
        let mut m = measurements();
        m.stand_in = Some("glibc stands in".into());
        let t = Table::compute(&m);
        let cx = Context {
            machine: Machine::default(),
            date: "2026-01-01 00:00 UTC".into(),
            command: "cargo run --release -p bench".into(),
            load: ("0 0 0".into(), "1 1 1".into()),
            minutes: 1.0,
            analysis: Some(
                "# Analysis\n\n## throughput\nLarson is slower because X.\n\n## rss\nY.\n".into(),
            ),
            callgrind: vec![(
                "benchmarks-callgrind.md".into(),
                "# Instructions\n\n| row | hakmem |\n".into(),
            )],
            chart_file: "benchmarks.svg".into(),
        };
        let md = markdown(&m, &t, &cx);
        for needle in [
            "| random_mixed_ws256 | hakmem | 166.67 |",
            "| random_mixed_ws256 | floor |",
            "| larson_t1 | jemalloc | – |",
            "0 ok, 1 failed: crashed",
            "the hakmem column is not hakmem",
            "Quick run",
            "trace replays (`replay_*` rows)",
            "benchmarks.svg",
            "| Throughput ≥ 1.15× the best peer on every row | ✗ |",
            "Larson is slower because X.",
            "No analysis recorded: add a `## cost` section",
            "| row | hakmem |",
        ] {
            assert!(
                md.to_lowercase().contains(&needle.to_lowercase()),
                "missing {needle:?} in\n{md}"
            );
        }
        // Only missed targets get their section; met ones do not.
        assert!(!md.contains("### Acceptance"), "{md}");
    }

    #[test]
    fn analysis_sections_are_cut_at_the_next_heading() {
        let a = "# T\nintro\n## cost\none\ntwo\n## rss\nthree\n";
        assert_eq!(analysis_section(a, "cost"), Some("one\ntwo"));
        assert_eq!(analysis_section(a, "rss"), Some("three"));
        assert_eq!(analysis_section(a, "larson"), None);
    }
}
