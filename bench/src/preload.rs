//! The preload suite (`cargo run --release -p bench -- preload`, issue 23):
//! C and C++ programs that this project writes (`bench/preload/`) and
//! Debian's `sqlite3`, each run as its own process under glibc and under
//! `LD_PRELOAD` of libhakmem.so and of the Debian peers, alternating within
//! each round; the report is `docs/benchmarks-preload.md` with its chart
//! beside it, and the Rust suite's report embeds it.
//!
//! - [`programs`]: the rows, their arguments, the sqlite script;
//! - [`build`]: compiling the programs, libhakmem.so, the columns;
//! - [`exec`]: one run (preload, wait4 rusage, timeout);
//! - [`server`]: the redis row (a server under the preload, its client,
//!   always stopped);
//! - [`report`]: the Markdown.

pub mod build;
pub mod exec;
pub mod programs;
pub mod report;
pub mod server;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::machine::{self, Machine};
use crate::report::{Cell, Table};
use crate::runner::{workspace_root, write_file};
use programs::Source;
use report::{Context, PreloadRun};

/// What `bench preload` was asked for.
#[derive(Clone, Debug)]
pub struct Options {
    /// `--programs` (names or prefixes; empty = all).
    pub programs: Vec<String>,
    /// `--allocators` (labels; empty = all installed).
    pub allocators: Vec<String>,
    /// Rounds (≥ 1).
    pub rounds: usize,
    /// Small sizes.
    pub quick: bool,
    /// The report; the chart beside it as `.svg`.
    pub out: PathBuf,
    /// Per-run timeout.
    pub timeout: Duration,
    /// Do not run cargo for libhakmem.so.
    pub no_build: bool,
    /// The exact command line, for the report.
    pub command: String,
}

/// Runs the suite and writes the report and chart.
pub fn run(o: &Options, bin_dir: &Path) -> Result<(), String> {
    if o.rounds == 0 {
        return Err("--rounds must be at least 1".into());
    }
    let programs = programs::select(&programs::all(), &o.programs)?;
    let hakmem_so = build::build_hakmem(bin_dir, o.no_build)?;
    let (all, missing) = build::allocators(&hakmem_so, Path::new(build::LIBDIR));
    if let Some(bad) = o
        .allocators
        .iter()
        .find(|l| !all.iter().any(|a| a.column.label() == l.as_str()))
    {
        let known: Vec<&str> = all.iter().map(|a| a.column.label()).collect();
        return Err(format!(
            "unknown or not installed allocator {bad:?}; here: {}",
            known.join(", ")
        ));
    }
    let allocators: Vec<_> = all
        .into_iter()
        .filter(|a| o.allocators.is_empty() || o.allocators.iter().any(|l| l == a.column.label()))
        .collect();
    for m in &missing {
        eprintln!("preload: skipping {m}: not installed");
    }
    let scratch = bin_dir.join("preload");
    let exes = build::build_programs(&programs, &scratch)?;
    let rows = if o.quick {
        programs::SQLITE_ROWS.1
    } else {
        programs::SQLITE_ROWS.0
    };
    let script = scratch.join("sqlite-script.sql");
    std::fs::write(&script, programs::sqlite_script(rows))
        .map_err(|e| format!("{}: {e}", script.display()))?;

    let redis_client = programs
        .iter()
        .any(|p| p.source == Source::Redis)
        .then(build::redis_client)
        .transpose()?;

    let date = machine::now_utc();
    let started = Instant::now();
    let total = programs.len() * allocators.len() * o.rounds;
    let pb = ProgressBar::new(total as u64);
    pb.set_style(
        ProgressStyle::with_template(
            "{elapsed_precise} [{bar:40}] {pos}/{len} runs, eta {eta} · {msg}",
        )
        .map_err(|e| e.to_string())?
        .progress_chars("=> "),
    );
    let mut cells = vec![vec![Cell::default(); allocators.len()]; programs.len()];
    for round in 1..=o.rounds {
        for (i, p) in programs.iter().enumerate() {
            // Alternate: each round starts the row at another column, so
            // no allocator always runs first (or right after the same one).
            for k in 0..allocators.len() {
                let j = (k + round + i) % allocators.len();
                let a = &allocators[j];
                pb.set_message(format!(
                    "round {round}/{} · {} · {}",
                    o.rounds,
                    p.name,
                    a.column.label()
                ));
                let sqlite = p.source == Source::Sqlite;
                let args: Vec<&str> = if sqlite {
                    vec![":memory:"]
                } else {
                    p.args(o.quick).to_vec()
                };
                let result = match &redis_client {
                    Some(client) if p.source == Source::Redis => server::run(
                        &server::RedisRun {
                            server: &exes[i],
                            client,
                            client_args: &args,
                            preload: a.preload.as_deref(),
                            dir: &scratch,
                        },
                        o.timeout,
                    ),
                    _ => exec::run(
                        &exec::Run {
                            exe: &exes[i],
                            args: &args,
                            preload: a.preload.as_deref(),
                            stdin: sqlite.then(|| script.clone()),
                            wall_ops: sqlite.then_some(rows),
                        },
                        o.timeout,
                    ),
                };
                match result {
                    Ok(s) => cells[i][j].samples.push(s),
                    Err(e) => {
                        pb.println(format!("{} on {} failed: {e}", p.name, a.column.label()));
                        cells[i][j].failures.push(e);
                    }
                }
                pb.inc(1);
            }
        }
    }
    pb.finish_and_clear();
    let run = PreloadRun {
        programs,
        allocators,
        missing,
        cells,
        quick: o.quick,
        rounds: o.rounds,
    };
    let t = Table::of(&report::columns(&run), &run.cells);
    print_summary(&run, &t);
    let chart = o.out.with_extension("svg");
    let cx = Context {
        machine: Machine::probe(),
        date,
        commit: commit(),
        command: o.command.clone(),
        minutes: started.elapsed().as_secs_f64() / 60.0,
        peer_versions: peer_versions(),
        chart_file: chart
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default(),
    };
    write_file(&o.out, &report::markdown(&run, &t, &cx))?;
    let names: Vec<&str> = run.programs.iter().map(|p| p.name).collect();
    let title = format!(
        "C/C++ programs under LD_PRELOAD: throughput relative to the best peer{}",
        if o.quick { " — quick run" } else { "" }
    );
    write_file(
        &chart,
        &crate::chart::ratio_bars(&title, &names, &report::columns(&run), &t, false)?,
    )?;
    eprintln!("wrote {} and {}", o.out.display(), chart.display());
    let failed: usize = run.cells.iter().flatten().map(|c| c.failures.len()).sum();
    if failed > 0 {
        return Err(format!(
            "{failed} run(s) failed (each is in the report and was printed above)"
        ));
    }
    Ok(())
}

fn print_summary(r: &PreloadRun, t: &Table) {
    let mut head = format!("{:<24}", "program (× best peer)");
    for a in &r.allocators {
        head.push_str(&format!(" {:>10}", a.column.label()));
    }
    println!("{head}");
    for (i, p) in r.programs.iter().enumerate() {
        let mut line = format!("{:<24}", p.name);
        for j in 0..r.allocators.len() {
            let cell = match t.stats[i][j] {
                Some(s) => s.vs_best.map_or("–".into(), |v| format!("{v:.2}×")),
                None if !r.cells[i][j].failures.is_empty() => "failed".into(),
                None => "–".into(),
            };
            line.push_str(&format!(" {cell:>10}"));
        }
        println!("{line}");
    }
    let ratios = report::hakmem_ratios(r, t);
    if let Some(g) = report::geomean(&ratios) {
        let n = ratios.len();
        println!("hakmem × best peer, geometric mean over {n} programs: {g:.2}");
    }
}

/// The checkout's short commit, `+changes` when the tree is dirty.
fn commit() -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(workspace_root())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match git(&["rev-parse", "--short", "HEAD"]) {
        Some(c) if git(&["status", "--porcelain"]).is_some_and(|s| !s.is_empty()) => {
            format!("{c}+changes")
        }
        Some(c) => c,
        None => "an unknown commit".into(),
    }
}

/// "package version" of each installed peer package.
fn peer_versions() -> Vec<String> {
    build::PEERS
        .iter()
        .filter_map(|(_, pkg)| {
            let o = Command::new("dpkg-query")
                .args(["-W", "-f", "${Version}", pkg])
                .output()
                .ok()
                .filter(|o| o.status.success())?;
            let v = String::from_utf8_lossy(&o.stdout).trim().to_string();
            (!v.is_empty()).then(|| format!("{pkg} {v}"))
        })
        .collect()
}
