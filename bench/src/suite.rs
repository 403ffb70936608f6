//! The rows of the report (the workloads with their parameters, full and
//! quick) and its columns (the allocators and the floor).

use std::path::PathBuf;

use crate::workloads::{
    ChurnParams, LarsonParams, MixedParams, ReplayParams, SharingParams, Workload,
};

/// The seed of every row (xorshift32; the warm-up derives its own).
pub const SEED: u32 = 42;

/// One row of the report.
#[derive(Clone, Debug)]
pub struct Row {
    /// The row's name, as given to `--workloads`.
    pub name: &'static str,
    /// The workload with its full-run parameters.
    pub full: Workload,
    /// The same with the smaller `--quick` parameters.
    pub quick: Workload,
    /// Whether issue 7's per-operation targets apply: allocator cost above
    /// the floor ≤ 1.5 ns/op and ≥ 1.0× the best peer (random_mixed WS 256
    /// and the fixed sizes).
    pub cost_target: bool,
}

impl Row {
    /// The workload for a full or a quick run.
    pub fn workload(&self, quick: bool) -> &Workload {
        if quick {
            &self.quick
        } else {
            &self.full
        }
    }
}

/// random_mixed iterations of a full run (issue 7's default) and a quick one.
pub const MIXED_CYCLES: u64 = 10_000_000;
/// random_mixed iterations of a `--quick` run.
pub const MIXED_CYCLES_QUICK: u64 = 1_000_000;

fn mixed(indep: bool, cycles: u64, ws: u32, min: u32, max: u32) -> Workload {
    let p = MixedParams {
        cycles,
        ws,
        seed: SEED,
        min,
        max,
    };
    if indep {
        Workload::RandomMixedIndep(p)
    } else {
        Workload::RandomMixed(p)
    }
}

fn mixed_row(
    name: &'static str,
    indep: bool,
    ws: u32,
    min: u32,
    max: u32,
    cost_target: bool,
) -> Row {
    Row {
        name,
        full: mixed(indep, MIXED_CYCLES, ws, min, max),
        quick: mixed(indep, MIXED_CYCLES_QUICK, ws, min, max),
        cost_target,
    }
}

/// Larson: two arrays of 512 blocks per thread and 8192 replacements per
/// round, so each round first frees about 512 × (1 − e^−16) ≈ all blocks
/// the previous holder left, i.e. about 6% of the frees are remote; each
/// thread keeps ~1024 blocks live and makes 16.4 M calls in the full run.
fn larson_row(name: &'static str, threads: u32) -> Row {
    let p = |rounds| {
        Workload::Larson(LarsonParams {
            threads,
            rounds,
            per_round: 8192,
            blocks: 512,
            min: 8,
            max: 1000,
            seed: SEED,
        })
    };
    Row {
        name,
        full: p(1000),
        quick: p(100),
        cost_target: false,
    }
}

fn sharing_row(name: &'static str, scratch: bool) -> Row {
    let w = |iterations| {
        let p = SharingParams {
            threads: 2,
            iterations,
            size: 8,
            writes: 50,
        };
        if scratch {
            Workload::CacheScratch(p)
        } else {
            Workload::CacheThrash(p)
        }
    };
    Row {
        name,
        full: w(1_000_000),
        quick: w(100_000),
        cost_target: false,
    }
}

/// Events the warm passes of a replay row hold per run (`--min-events`),
/// full and quick: the corpus traces hold 300 to 250,000 events, so a
/// short trace runs thousands of passes on the same threads.
pub const REPLAY_MIN_EVENTS: u64 = 1_000_000;
/// The same for `--quick`.
pub const REPLAY_MIN_EVENTS_QUICK: u64 = 100_000;

/// A corpus trace replayed by `hktrace replay`: a cold first pass, then
/// warm passes on the same threads until they hold
/// [`REPLAY_MIN_EVENTS`]; the row's figures are the warm passes'.
fn replay_row(name: &'static str, trace: &'static str) -> Row {
    let w = |min_events| {
        Workload::Replay(ReplayParams {
            trace,
            repeat: 2,
            min_events,
        })
    };
    Row {
        name,
        full: w(REPLAY_MIN_EVENTS),
        quick: w(REPLAY_MIN_EVENTS_QUICK),
        cost_target: false,
    }
}

/// A corpus trace replayed `repeat` passes per run (2 quick) whatever its
/// length: xz_t2 touches 191 MiB a pass, so an events minimum would take
/// minutes.
fn replay_row_passes(name: &'static str, trace: &'static str, repeat: u32) -> Row {
    let w = |repeat| {
        Workload::Replay(ReplayParams {
            trace,
            repeat,
            min_events: 0,
        })
    };
    Row {
        name,
        full: w(repeat),
        quick: w(2),
        cost_target: false,
    }
}

/// Every row, in report order.
pub fn rows() -> Vec<Row> {
    let churn = |rounds| {
        Workload::Churn(ChurnParams {
            rounds,
            entries: 1000,
            seed: SEED,
        })
    };
    vec![
        mixed_row("random_mixed_ws256", false, 256, 16, 1040, true),
        mixed_row("random_mixed_ws8192", false, 8192, 16, 1040, false),
        mixed_row("random_mixed_indep_ws256", true, 256, 16, 1040, false),
        mixed_row("random_mixed_indep_ws8192", true, 8192, 16, 1040, false),
        mixed_row("fixed_16", false, 256, 16, 16, true),
        mixed_row("fixed_256", false, 256, 256, 256, true),
        mixed_row("fixed_1024", false, 256, 1024, 1024, true),
        mixed_row("c7_only", false, 64, 1024, 1024, false),
        mixed_row("c6_heavy", false, 256, 257, 768, false),
        larson_row("larson_t1", 1),
        larson_row("larson_t2", 2),
        larson_row("larson_t4", 4),
        sharing_row("cache_thrash_t2", false),
        sharing_row("cache_scratch_t2", true),
        Row {
            name: "churn",
            full: churn(1000),
            quick: churn(100),
            cost_target: false,
        },
        replay_row("replay_random_mixed_ws256", "random_mixed_ws256.hkt.zst"),
        replay_row("replay_random_mixed_ws8192", "random_mixed_ws8192.hkt.zst"),
        replay_row("replay_c7_only", "c7_only.hkt.gz"),
        replay_row("replay_larson_t2", "larson_t2.hkt.zst"),
        replay_row("replay_larson_t4", "larson_t4.hkt"),
        // Real programs recorded by traces/corpus/record.sh.
        replay_row("replay_python3_single", "python3_single.hkt.zst"),
        replay_row("replay_python3_pool", "python3_pool.hkt.zst"),
        replay_row("replay_cc1", "cc1.hkt.zst"),
        replay_row("replay_cc_driver", "cc_driver.hkt.zst"),
        replay_row("replay_git_init", "git_init.hkt.zst"),
        replay_row("replay_git_add", "git_add.hkt.zst"),
        replay_row("replay_git_commit", "git_commit.hkt.zst"),
        replay_row("replay_git_log", "git_log.hkt.zst"),
        replay_row("replay_sqlite3", "sqlite3.hkt.zst"),
        replay_row_passes("replay_xz_t2", "xz_t2.hkt.zst", 5),
    ]
}

/// The rows picked by `--workloads`: each name selects the row of that name
/// or, as a group, every row whose name starts with `name_` (`fixed`,
/// `larson`, `random_mixed`). Unknown names are an error.
pub fn select(all: &[Row], names: &[String]) -> Result<Vec<Row>, String> {
    if names.is_empty() {
        return Ok(all.to_vec());
    }
    let mut picked: Vec<Row> = Vec::new();
    for n in names {
        let hits: Vec<&Row> = all
            .iter()
            .filter(|r| r.name == n || r.name.starts_with(&format!("{n}_")))
            .collect();
        if hits.is_empty() {
            let known: Vec<&str> = all.iter().map(|r| r.name).collect();
            return Err(format!(
                "unknown workload {n:?}; known: {}",
                known.join(", ")
            ));
        }
        for r in hits {
            if !picked.iter().any(|p| p.name == r.name) {
                picked.push(r.clone());
            }
        }
    }
    // Keep report order.
    picked.sort_by_key(|p| all.iter().position(|r| r.name == p.name));
    Ok(picked)
}

/// A column of the report: an allocator, or the floor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Column {
    /// glibc malloc (`std::alloc::System`), binary `bench-system`.
    System,
    /// The `mimalloc` crate, binary `bench-mimalloc`.
    Mimalloc,
    /// The `tikv-jemallocator` crate, binary `bench-jemalloc`.
    Jemalloc,
    /// The `bench-system` binary run with `LD_PRELOAD` set to `path`.
    Preload {
        /// Column label (from the library's file name, e.g. `tcmalloc`).
        label: String,
        /// The shared library.
        path: PathBuf,
    },
    /// hakmem, binary `bench-hakmem`.
    Hakmem,
    /// A hakmem worker binary built another way (`bench classes --speed`:
    /// one per candidate class table). Not a peer.
    Worker {
        /// Column label (e.g. `hakmem-pow2`).
        label: String,
        /// The worker binary.
        path: PathBuf,
    },
    /// The no-op floor, binary `bench-noop`.
    Floor,
}

impl Column {
    /// The label in tables.
    pub fn label(&self) -> &str {
        match self {
            Column::System => "system",
            Column::Mimalloc => "mimalloc",
            Column::Jemalloc => "jemalloc",
            Column::Preload { label, .. } => label,
            Column::Hakmem => "hakmem",
            Column::Worker { label, .. } => label,
            Column::Floor => "floor",
        }
    }

    /// The `hktrace replay --alloc` name of this column (a preload column
    /// replays on `system`, i.e. malloc, which the preloaded library serves).
    pub fn replay_alloc(&self) -> &'static str {
        match self {
            Column::System | Column::Preload { .. } => "system",
            Column::Mimalloc => "mimalloc",
            Column::Jemalloc => "jemalloc",
            Column::Hakmem | Column::Worker { .. } => "hakmem",
            Column::Floor => "noop",
        }
    }

    /// Whether this column is one of the peers hakmem is compared with.
    pub fn is_peer(&self) -> bool {
        !matches!(self, Column::Hakmem | Column::Floor | Column::Worker { .. })
    }

    /// The worker binary's file name.
    pub fn binary(&self) -> &'static str {
        match self {
            Column::System | Column::Preload { .. } => "bench-system",
            Column::Mimalloc => "bench-mimalloc",
            Column::Jemalloc => "bench-jemalloc",
            Column::Hakmem | Column::Worker { .. } => "bench-hakmem",
            Column::Floor => "bench-noop",
        }
    }

    /// A preload column for `path`: labelled `tcmalloc` for
    /// `libtcmalloc_minimal.so.4`, else by the file name without `lib` and
    /// the extension.
    pub fn preload(path: PathBuf) -> Self {
        let file = path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let stem = file.split('.').next().unwrap_or("");
        let stem = stem.strip_prefix("lib").unwrap_or(stem);
        let label = if stem.starts_with("tcmalloc") {
            "tcmalloc".to_string()
        } else if stem.is_empty() {
            "preload".to_string()
        } else {
            stem.to_string()
        };
        Column::Preload { label, path }
    }
}

/// The columns in run order (A B C D …): the peers, hakmem, the floor.
pub fn columns(preload: Option<PathBuf>) -> Vec<Column> {
    let mut c = vec![Column::System, Column::Mimalloc, Column::Jemalloc];
    c.extend(preload.map(Column::preload));
    c.push(Column::Hakmem);
    c.push(Column::Floor);
    c
}

/// The columns picked by `--allocators` (labels; empty = all), in run order.
pub fn select_columns(all: Vec<Column>, labels: &[String]) -> Result<Vec<Column>, String> {
    if let Some(bad) = labels.iter().find(|l| !all.iter().any(|c| c.label() == *l)) {
        let known: Vec<&str> = all.iter().map(Column::label).collect();
        return Err(format!(
            "unknown allocator {bad:?}; known: {}",
            known.join(", ")
        ));
    }
    Ok(all
        .into_iter()
        .filter(|c| labels.is_empty() || labels.iter().any(|l| l == c.label()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_names_are_unique_and_rows_parse_back() {
        let all = rows();
        for (i, r) in all.iter().enumerate() {
            assert!(
                all[..i].iter().all(|o| o.name != r.name),
                "{} twice",
                r.name
            );
            for w in [&r.full, &r.quick] {
                assert_eq!(Workload::parse(&w.to_args()).as_ref(), Ok(w));
            }
            assert_eq!(r.full.name(), r.quick.name());
        }
    }

    #[test]
    fn every_corpus_trace_has_a_replay_row() {
        let manifest: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(
                crate::runner::workspace_root().join("traces/corpus/manifest.json"),
            )
            .unwrap(),
        )
        .unwrap();
        let mut files: Vec<&str> = manifest["traces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["file"].as_str().unwrap())
            .collect();
        let mut replayed: Vec<&str> = rows()
            .iter()
            .filter_map(|r| match r.full {
                Workload::Replay(p) => Some(p.trace),
                _ => None,
            })
            .collect();
        files.sort();
        replayed.sort();
        assert_eq!(files, replayed);
        let mut corpus = crate::workloads::CORPUS.to_vec();
        corpus.sort();
        assert_eq!(corpus, replayed);
    }

    #[test]
    fn issue_7_definitions() {
        let all = rows();
        let get = |n: &str| all.iter().find(|r| r.name == n).unwrap().full.clone();
        let m = |n: &str| match get(n) {
            Workload::RandomMixed(p) => (p.cycles, p.ws, p.min, p.max),
            w => panic!("{n} is {w:?}"),
        };
        assert_eq!(m("random_mixed_ws256"), (10_000_000, 256, 16, 1040));
        assert_eq!(m("random_mixed_ws8192"), (10_000_000, 8192, 16, 1040));
        assert_eq!(m("fixed_16"), (10_000_000, 256, 16, 16));
        assert_eq!(m("fixed_256"), (10_000_000, 256, 256, 256));
        assert_eq!(m("fixed_1024"), (10_000_000, 256, 1024, 1024));
        assert_eq!(m("c7_only"), (10_000_000, 64, 1024, 1024));
        assert_eq!(m("c6_heavy"), (10_000_000, 256, 257, 768));
        assert!(matches!(
            get("random_mixed_indep_ws256"),
            Workload::RandomMixedIndep(_)
        ));
        for (n, t) in [("larson_t1", 1), ("larson_t2", 2), ("larson_t4", 4)] {
            match get(n) {
                Workload::Larson(p) => assert_eq!((p.threads, p.min, p.max), (t, 8, 1000)),
                w => panic!("{n} is {w:?}"),
            }
        }
    }

    #[test]
    fn selection_by_name_and_group_keeps_report_order() {
        let all = rows();
        let names = |v: &[&str]| {
            let s: Vec<String> = v.iter().map(|s| s.to_string()).collect();
            select(&all, &s).map(|rs| rs.iter().map(|r| r.name).collect::<Vec<_>>())
        };
        assert_eq!(
            names(&["churn", "fixed"]).unwrap(),
            vec!["fixed_16", "fixed_256", "fixed_1024", "churn"]
        );
        assert_eq!(names(&["larson_t2"]).unwrap(), vec!["larson_t2"]);
        assert_eq!(names(&["fixed_16", "fixed"]).unwrap().len(), 3);
        assert!(names(&["nope"]).is_err());
        assert_eq!(select(&all, &[]).unwrap().len(), all.len());
    }

    #[test]
    fn columns_alternate_peers_then_hakmem_then_floor() {
        let c = columns(Some(PathBuf::from("/usr/lib/libtcmalloc_minimal.so.4")));
        let labels: Vec<&str> = c.iter().map(Column::label).collect();
        assert_eq!(
            labels,
            ["system", "mimalloc", "jemalloc", "tcmalloc", "hakmem", "floor"]
        );
        assert_eq!(c.iter().filter(|c| c.is_peer()).count(), 4);
        assert_eq!(c[3].binary(), "bench-system");
        assert_eq!(
            Column::preload(PathBuf::from("/x/libfoo.so")).label(),
            "foo"
        );
    }

    #[test]
    fn allocator_selection_keeps_run_order_and_rejects_unknown_labels() {
        let pick = |v: &[&str]| {
            let l: Vec<String> = v.iter().map(|s| s.to_string()).collect();
            select_columns(columns(None), &l)
        };
        let got: Vec<String> = pick(&["floor", "hakmem", "jemalloc"])
            .unwrap()
            .iter()
            .map(|c| c.label().to_string())
            .collect();
        assert_eq!(got, ["jemalloc", "hakmem", "floor"]);
        assert_eq!(pick(&[]).unwrap().len(), 5);
        assert!(pick(&["tcmalloc"]).is_err());
    }
}
