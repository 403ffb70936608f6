//! The preload suite's report (`docs/benchmarks-preload.md`): throughput
//! with ratios to the best peer, peak RSS with ratios to the leanest, page
//! faults, the geometric mean of hakmem's ratios, and how to rerun a cell.
//! The numbers come from [`Table::of`], the same definitions as the Rust
//! suite's report.

use std::fmt::Write as _;

use super::build::Allocator;
use super::programs::{Program, Source};
use crate::machine::Machine;
use crate::report::{Cell, Table};
use crate::suite::Column;

/// Everything one `bench preload` run measured.
#[derive(Clone, Debug)]
pub struct PreloadRun {
    /// The rows run.
    pub programs: Vec<Program>,
    /// The columns run.
    pub allocators: Vec<Allocator>,
    /// Peers not installed, as "label (package)".
    pub missing: Vec<String>,
    /// `cells[program][allocator]`.
    pub cells: Vec<Vec<Cell>>,
    /// `--quick`.
    pub quick: bool,
    /// Rounds.
    pub rounds: usize,
}

/// What the report says besides the measurements.
#[derive(Clone, Debug)]
pub struct Context {
    /// The machine.
    pub machine: Machine,
    /// When the run started.
    pub date: String,
    /// The checkout (`git describe`-like: commit, `+changes` if dirty).
    pub commit: String,
    /// The exact command.
    pub command: String,
    /// Wall-clock minutes.
    pub minutes: f64,
    /// Installed versions of the peers' Debian packages, as "package version".
    pub peer_versions: Vec<String>,
    /// The chart's file name, beside the report.
    pub chart_file: String,
}

/// The columns of `r`, for [`Table::of`].
pub fn columns(r: &PreloadRun) -> Vec<Column> {
    r.allocators.iter().map(|a| a.column.clone()).collect()
}

/// hakmem's "× best peer" on each row where both ran.
pub fn hakmem_ratios(r: &PreloadRun, t: &Table) -> Vec<f64> {
    let Some(j) = r.allocators.iter().position(|a| a.column == Column::Hakmem) else {
        return Vec::new();
    };
    t.stats.iter().filter_map(|row| row[j]?.vs_best).collect()
}

/// The geometric mean of `ratios`, `None` when empty.
pub fn geomean(ratios: &[f64]) -> Option<f64> {
    (!ratios.is_empty())
        .then(|| (ratios.iter().map(|x| x.ln()).sum::<f64>() / ratios.len() as f64).exp())
}

/// `x` with three significant digits (throughputs span 0.0005 to 300).
pub fn significant(x: f64) -> String {
    if !(x.is_finite() && x > 0.0) {
        return format!("{x}");
    }
    let decimals = (2 - x.log10().floor() as i32).max(0) as usize;
    format!("{x:.decimals$}")
}

fn cell_text(
    c: &Cell,
    s: Option<crate::report::Stat>,
    f: impl Fn(crate::report::Stat) -> String,
) -> String {
    match s {
        Some(s) => f(s),
        None if !c.failures.is_empty() => format!("failed: {}", c.failures[0].replace('|', "/")),
        None => "–".into(),
    }
}

/// The Markdown of `docs/benchmarks-preload.md`.
pub fn markdown(r: &PreloadRun, t: &Table, cx: &Context) -> String {
    let mut s = String::new();
    let w = &mut s;
    let _ = writeln!(w, "# C and C++ programs under LD_PRELOAD\n");
    let _ = writeln!(
        w,
        "Written by `{}` on {} at {}; do not edit by hand.",
        cx.command, cx.date, cx.commit
    );
    let mc = &cx.machine;
    let _ = writeln!(
        w,
        "Machine: {}, {} cores, {}, glibc {}. Peers: {}. {} round(s), {:.1} min.\n",
        mc.cpu,
        mc.cores,
        mc.kernel,
        mc.glibc,
        if cx.peer_versions.is_empty() {
            "none installed".to_string()
        } else {
            cx.peer_versions.join(", ")
        },
        r.rounds,
        cx.minutes
    );
    if r.quick {
        let _ = writeln!(
            w,
            "> **Quick run** (`--quick`: about a tenth of the work, for smoke tests). \
             The numbers are not the benchmark's.\n"
        );
    }
    if !r.missing.is_empty() {
        let _ = writeln!(
            w,
            "> Skipped columns (library not installed): {}.\n",
            r.missing.join(", ")
        );
    }
    let _ = writeln!(
        w,
        "Each cell is one program run as its own process, `LD_PRELOAD` set to the column's \
         library on that command line only (`system` is glibc, no preload; `hakmem` is \
         `target/release/libhakmem.so`). The allocators alternate within each round. \
         Throughput is the program's own count of operations over the seconds of its \
         measured part (it prints them), median over the rounds; `sqlite3` counts the \
         rows of its script over the process's wall time, `redis` the client's requests \
         over its tests' times (the server is the process under the preload). \"× best\" divides by the highest \
         peer median of the row (peers: every column but hakmem); above 1 is faster than \
         every peer. Peak RSS and minor page faults are the child's `wait4` rusage \
         (`ru_maxrss`, `ru_minflt`) of the whole process.\n"
    );
    let _ = writeln!(
        w,
        "![hakmem and the peers relative to the best peer]({})\n",
        cx.chart_file
    );
    let ratios = hakmem_ratios(r, t);
    if let Some(g) = geomean(&ratios) {
        let n = ratios.len();
        let wins = ratios.iter().filter(|v| **v >= 1.0).count();
        let _ = writeln!(
            w,
            "hakmem against the best peer of each program: geometric mean **{g:.2}×** over {n} \
             programs; at or above the best peer on {wins} of {n}.\n"
        );
    }

    let _ = writeln!(w, "## Throughput (M ops/s, median; × best peer)\n");
    let head: Vec<&str> = r.allocators.iter().map(|a| a.column.label()).collect();
    let _ = writeln!(w, "| program | {} | best peer |", head.join(" | "));
    let _ = writeln!(w, "| --- |{} --- |", " ---: |".repeat(head.len()));
    for (i, p) in r.programs.iter().enumerate() {
        let mut line = format!("| {} |", p.name);
        for (j, c) in r.cells[i].iter().enumerate() {
            let text = cell_text(c, t.stats[i][j], |s| {
                let tput = significant(s.tput.median / 1e6);
                match s.vs_best {
                    Some(v) => format!("{tput} ({v:.2}×)"),
                    None => tput,
                }
            });
            let _ = write!(line, " {text} |");
        }
        let best = t.best_peer[i]
            .as_ref()
            .map_or("–".into(), |(l, _)| l.clone());
        let _ = writeln!(w, "{line} {best} |");
    }

    let _ = writeln!(
        w,
        "\n## Peak RSS (MiB, median; × leanest peer) and minor page faults (median)\n"
    );
    let _ = writeln!(w, "| program | {} |", head.join(" | "));
    let _ = writeln!(w, "| --- |{}", " ---: |".repeat(head.len()));
    for (i, p) in r.programs.iter().enumerate() {
        let mut line = format!("| {} |", p.name);
        for (j, c) in r.cells[i].iter().enumerate() {
            let text = cell_text(c, t.stats[i][j], |s| {
                let rss = s.rss_mib.median;
                let faults = s.minflt;
                match s.vs_leanest {
                    Some(v) => format!("{rss:.1} ({v:.2}×), {faults:.0} flt"),
                    None => format!("{rss:.1}, {faults:.0} flt"),
                }
            });
            let _ = write!(line, " {text} |");
        }
        let _ = writeln!(w, "{line}");
    }

    let _ = writeln!(w, "\n## Programs\n");
    let _ = writeln!(
        w,
        "The sources are in `bench/preload/` (each one's opening comment says what it does \
         and counts); the driver compiles them with `cc -O2 -pthread` (C) and `c++ -O2 \
         -pthread` (C++) into `target/release/preload/`. To rerun a cell by hand: \
         `LD_PRELOAD=<library> target/release/preload/<program> <arguments>`.\n"
    );
    let _ = writeln!(w, "| row | program and arguments |\n| --- | --- |");
    for p in &r.programs {
        let cmd = match p.source {
            Source::Built(f) => format!("`{}` ({f}) `{}`", p.binary(), p.args(r.quick).join(" ")),
            Source::Sqlite => {
                "`sqlite3 :memory: < script` (the script of `bench/src/preload/programs.rs`: \
                 bulk insert, two indexes, update, queries, delete, VACUUM)"
                    .to_string()
            }
            Source::Redis => format!(
                "`redis-server --save \"\" --appendonly no` on a free 127.0.0.1 port under the \
                 column's preload, driven by `redis-benchmark {} --csv` (glibc): requests over \
                 the sum of each test's requests/s; peak RSS and faults are the server's",
                p.args(r.quick).join(" ")
            ),
        };
        let _ = writeln!(w, "| {} | {cmd} |", p.name);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker::Sample;
    use std::path::PathBuf;

    fn run_of(tput: &[f64]) -> PreloadRun {
        let programs = super::super::programs::all()[..2].to_vec();
        let allocators: Vec<Allocator> = [
            Column::System,
            Column::preload(PathBuf::from("/l/libmimalloc.so.2")),
            Column::Hakmem,
        ]
        .into_iter()
        .map(|column| Allocator {
            column,
            preload: None,
        })
        .collect();
        let cells = programs
            .iter()
            .map(|_| {
                tput.iter()
                    .map(|&t| Cell {
                        samples: vec![Sample {
                            ops: (t * 1e6) as u64,
                            secs: 1.0,
                            maxrss_kib: 2048,
                            minflt: 10,
                        }],
                        failures: vec![],
                    })
                    .collect()
            })
            .collect();
        PreloadRun {
            programs,
            allocators,
            missing: vec!["tcmalloc (libtcmalloc-minimal4)".into()],
            cells,
            quick: true,
            rounds: 1,
        }
    }

    #[test]
    fn ratios_are_to_the_best_peer_and_the_geomean_is_hakmems() {
        let r = run_of(&[1.0, 2.0, 3.0]);
        let t = Table::of(&columns(&r), &r.cells);
        let ratios = hakmem_ratios(&r, &t);
        assert_eq!(ratios, [1.5, 1.5]);
        assert!((geomean(&[2.0, 0.5]).unwrap() - 1.0).abs() < 1e-12);
        assert_eq!(geomean(&[]), None);
        let cx = Context {
            machine: Machine::default(),
            date: "d".into(),
            commit: "c".into(),
            command: "cargo run --release -p bench -- preload".into(),
            minutes: 0.1,
            peer_versions: vec![],
            chart_file: "benchmarks-preload.svg".into(),
        };
        let md = markdown(&r, &t, &cx);
        for want in [
            "| random_t1 | 1.00 (0.50×) | 2.00 (1.00×) | 3.00 (1.50×) | mimalloc |",
            "geometric mean **1.50×** over 2",
            "Skipped columns (library not installed): tcmalloc (libtcmalloc-minimal4)",
            "Quick run",
        ] {
            assert!(md.contains(want), "{want} missing in\n{md}");
        }
    }

    #[test]
    fn throughputs_keep_three_significant_digits() {
        assert_eq!(significant(153.938), "154");
        assert_eq!(significant(18.93), "18.9");
        assert_eq!(significant(1.787), "1.79");
        assert_eq!(significant(0.000312), "0.000312");
    }

    #[test]
    fn a_failed_cell_says_why() {
        let mut r = run_of(&[1.0, 2.0, 3.0]);
        r.cells[0][2] = Cell {
            samples: vec![],
            failures: vec!["killed by signal 11: ".into()],
        };
        let t = Table::of(&columns(&r), &r.cells);
        let md = markdown(
            &r,
            &t,
            &Context {
                machine: Machine::default(),
                date: String::new(),
                commit: String::new(),
                command: String::new(),
                minutes: 0.0,
                peer_versions: vec![],
                chart_file: String::new(),
            },
        );
        assert!(md.contains("failed: killed by signal 11"), "{md}");
        assert_eq!(hakmem_ratios(&r, &t).len(), 1);
    }
}
