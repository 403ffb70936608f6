//! Runs every injected bug ([`hakmem::Mutant`]) against the check that must
//! catch it and prints a table: bug, check, verdict, time; ends with
//! `caught K of K` (exit status 1 if any bug is missed).
//!
//! Each bug runs in a child process (`mutants --child NAME`): an injected
//! bug may make the allocator abort (`fatal!`), and loom/shuttle failures
//! are panics; the parent matches the child's stderr against the expected
//! reason. `mutants --only NAME` runs one row.

// The product runs on itself.
#[global_allocator]
static GLOBAL: hakmem::Hakmem = hakmem::Hakmem;

use hakmem::Mutant;
use std::process::Command;
use std::time::Instant;
use verify::backends::loom::{reset_links, Loom};
use verify::backends::shuttle::Shuttle;
use verify::scenarios::{self as sc, LoomSched, ShuttleSched};

/// One row: the bug, its checker and scenario, and the reasons that count
/// as "caught" (any of them in the failure output).
struct Row {
    bug: Mutant,
    check: &'static str,
    reasons: &'static [&'static str],
}

const ROWS: &[Row] = &[
    Row {
        bug: Mutant::RemotePushRelaxed,
        check: "loom remote_free_vs_drain",
        reasons: &["Causality violation"],
    },
    Row {
        bug: Mutant::CountBeforePush,
        check: "loom remote_free_vs_owner_exit",
        reasons: &[
            "slot has remote frees",
            "beyond carved",
            "conservation violated",
            "remote.load",
        ],
    },
    Row {
        bug: Mutant::OwnerFromCurrentThread,
        check: "loom remote_free_vs_drain",
        reasons: &[
            "Causality violation",
            "currently writing",
            "currently reading",
        ],
    },
    Row {
        bug: Mutant::AbandonKeepsOwner,
        check: "loom abandon_reclaim",
        reasons: &[
            "Causality violation",
            "currently writing",
            "has an owner",
            "accounting violated",
            "conservation violated",
        ],
    },
    Row {
        bug: Mutant::DoubleRelease,
        check: "loom release_vs_acquire",
        reasons: &[
            "Unused slot has an owner",
            "not Active",
            "live block in a Unused slot",
            "Cached with a slot in use",
            // debug builds: the second release clears the mask bit twice
            "not in empty_mask",
        ],
    },
    Row {
        bug: Mutant::EmptyCountCheckThenAct,
        check: "loom release_vs_page_empty",
        reasons: &["empty_count"],
    },
    Row {
        bug: Mutant::ReleaseByTotalActive,
        check: "loom release_with_unflushed_page",
        reasons: &["Cached with a slot in use", "live block in a Unused slot"],
    },
    Row {
        bug: Mutant::PoolExhaustedDropsEntry,
        check: "loom stage1_exhaustion",
        reasons: &["no stage-1 or fallback entry"],
    },
    Row {
        bug: Mutant::Stage1LeaksNode,
        check: "loom stage1_exhaustion",
        reasons: &["stage-1 nodes"],
    },
    Row {
        bug: Mutant::Stage1NoRecheck,
        check: "loom scan_vs_claim",
        reasons: &[
            "Causality violation",
            "has an owner",
            "double hand-out",
            "handed out twice",
            "accounting violated",
            "conservation violated",
            "heap",
        ],
    },
    Row {
        bug: Mutant::PageFullNoRecheck,
        check: "loom page_full_vs_remote",
        reasons: &[
            "conservation violated",
            "accounting violated",
            "stranded free",
        ],
    },
    Row {
        bug: Mutant::ReleaseWithoutFlush,
        check: "loom flush_vs_remote",
        reasons: &["total_active"],
    },
    Row {
        bug: Mutant::AbandonedPopOneByOne,
        check: "loom reclaim_aba",
        reasons: &["in two places (abandoned)"],
    },
    Row {
        bug: Mutant::DrainBeforeOwnershipChange,
        check: "loom full_hint_vs_remote",
        reasons: &["stranded free"],
    },
];

fn name(m: Mutant) -> String {
    format!("{m:?}")
}

fn parse(s: &str) -> Option<Mutant> {
    ROWS.iter()
        .map(|r| r.bug)
        .chain([Mutant::None])
        .find(|&m| name(m) == s)
}

/// The loom scenario named `$name` with bug `$tag`, as a `fn()`.
macro_rules! pick {
    ($tag:ty, $name:expr; $($s:ident),* $(,)?) => {
        match $name {
            $(stringify!($s) => (|| {
                reset_links();
                sc::$s::<Loom<$tag>, LoomSched>()
            }) as fn(),)*
            other => panic!("unknown loom scenario {other}"),
        }
    };
}

/// Runs `check` with bug `m` in this process (panics when caught).
fn run_child(m: Mutant, check: &str) {
    let scenario = check.split_whitespace().nth(1).expect("check name");
    macro_rules! go {
        ($tag:ty) => {{
            if check.starts_with("loom") {
                let f = pick!($tag, scenario;
                    remote_free_vs_drain,
                    two_remote_frees,
                    remote_free_vs_empty_reuse,
                    remote_free_vs_owner_exit,
                    abandon_reclaim,
                    reclaim_aba,
                    release_vs_acquire,
                    release_vs_page_empty,
                    acquire_vs_page_empty,
                    release_acquire_empty,
                    release_with_unflushed_page,
                    stage1_exhaustion,
                    scan_vs_claim,
                    page_full_vs_remote,
                    flush_vs_remote,
                    full_hint_vs_remote,
                    arena_put_take,
                );
                verify::loom_check_at(f, verify::loom_bound_for(scenario));
            } else {
                verify::shuttle_pct(|| sc::churn::<Shuttle<$tag>, ShuttleSched>(4, 40), 7, 2000);
            }
        }};
    }
    verify::with_mutant_tag!(m, go);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() == 3 && args[1] == "--child" {
        let m = parse(&args[2]).expect("unknown mutant");
        let row = ROWS.iter().find(|r| r.bug == m).expect("row");
        run_child(m, row.check);
        return;
    }
    let only = (args.len() == 3 && args[1] == "--only").then(|| args[2].clone());
    let me = std::env::current_exe().expect("own path");
    let rows: Vec<&Row> = ROWS
        .iter()
        .filter(|r| only.as_ref().is_none_or(|o| *o == name(r.bug)))
        .collect();
    assert!(!rows.is_empty(), "no such mutant");
    println!("| bug | check | caught by | time |");
    println!("| --- | --- | --- | --- |");
    let mut caught = 0;
    for r in &rows {
        let t = Instant::now();
        let out = Command::new(&me)
            .args(["--child", &name(r.bug)])
            .env("RUST_BACKTRACE", "0")
            .output()
            .expect("run child");
        let el = t.elapsed();
        let err = String::from_utf8_lossy(&out.stderr);
        let hit = r.reasons.iter().find(|s| err.contains(**s));
        let verdict = match (out.status.success(), hit) {
            (false, Some(reason)) => {
                caught += 1;
                format!("caught: \"{reason}\"")
            }
            (false, None) => {
                let last = err
                    .lines()
                    .find(|l| l.contains("panicked") || l.contains("hakmem:"));
                format!(
                    "MISSED (failed for another reason: {})",
                    last.unwrap_or("?")
                )
            }
            (true, _) => "MISSED (check passed)".to_string(),
        };
        println!("| {:?} | {} | {} | {:.2?} |", r.bug, r.check, verdict, el);
    }
    println!("caught {caught} of {}", rows.len());
    if caught != rows.len() {
        std::process::exit(1);
    }
}
