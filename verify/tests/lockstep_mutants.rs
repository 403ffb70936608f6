//! Teeth: the lockstep check catches impl's injected bugs that a
//! sequential run can show. Each mutant backend runs the same scenario
//! mix (directed + random) and must diverge with the expected kind.

use hakmem::size_class::CLASS_SIZES;
use hakmem::sync::Backend;
use hakmem::InstanceConfig;
use verify::backends::record::mutants::*;
use verify::lockstep::{Divergence, Lockstep};

mod common;

#[global_allocator]
static GLOBAL: hakmem::Hakmem = hakmem::Hakmem;

const CFG: InstanceConfig = InstanceConfig {
    node_pool: 1,
    arena_cache: 1,
    scan_limit: 1,
    ..InstanceConfig::SMALL
};

/// A fixed scenario touching every protocol: fill pages of a large class
/// (PageFull), remote frees (to full pages too), local frees, empty pages
/// (stage-1 and fallback pushes), exit with live blocks (abandon), reclaim,
/// acquisition by every stage, release to the arena and back.
fn scenario<B: Backend>() -> Result<(), Divergence> {
    let mut l = Lockstep::<B>::new(CFG, 3);
    let t0 = l.new_thread()?;
    let t1 = l.new_thread()?;
    let big = CLASS_SIZES[31] as usize;
    let mid = CLASS_SIZES[28] as usize;
    let mut a = Vec::new();
    for _ in 0..20 {
        a.push(l.alloc(t0, big, 8)?);
    }
    // Remote frees to t0's full pages, then local frees.
    for p in a.drain(..10) {
        l.free(t1, p)?;
    }
    for _ in 0..6 {
        a.push(l.alloc(t0, big, 8)?);
    }
    let mut b = Vec::new();
    for _ in 0..12 {
        b.push(l.alloc(t1, mid, 8)?);
    }
    for p in b.drain(..) {
        l.free(t1, p)?;
    }
    for p in a.drain(..8) {
        l.free(t0, p)?;
    }
    // t1 exits with nothing live; t0 exits with live blocks (abandon).
    l.exit(t1)?;
    l.exit(t0)?;
    let t2 = l.new_thread()?;
    for _ in 0..4 {
        a.push(l.alloc(t2, big, 8)?);
    }
    for _ in 0..10 {
        a.push(l.alloc(t2, mid, 8)?);
    }
    for p in a.drain(..) {
        l.free(t2, p)?;
    }
    l.exit(t2)?;
    l.release_empty()?;

    Ok(())
}

fn caught<B: Backend>(name: &str, kinds: &[&str]) {
    match scenario::<B>() {
        Ok(()) => {
            // Not by the directed scenario: random sequences (fixed seed).
            let found = common::find_divergence::<B>(CFG, 0x7ee7, 256, 120)
                .unwrap_or_else(|| panic!("{name}: not caught by the lockstep"));
            eprintln!("{name}: caught by random sequences\n{found}");
            assert!(
                kinds.iter().any(|k| found.contains(&KIND_TEXT[*k])),
                "{name}: expected {kinds:?}:\n{found}"
            );
        }
        Err(e) => {
            eprintln!("{name}: caught ({})\n{e}", e.kind());
            assert!(
                kinds.contains(&e.kind()),
                "{name}: caught as {}, expected {kinds:?}:\n{e}",
                e.kind()
            );
        }
    }
}

/// How each divergence kind reads in a Divergence's text.
static KIND_TEXT: phf_like::Map = phf_like::Map;

mod phf_like {
    /// Kind name → a phrase of its `Display`.
    pub struct Map;
    impl std::ops::Index<&str> for Map {
        type Output = str;
        fn index(&self, k: &str) -> &str {
            match k {
                "rejected" => "rejected by the model",
                "differs" => "state differs at",
                "invariant" => "invariant violated",
                "unmappable" => "not a model step",
                "result" => "call result",
                _ => "impl snapshot check failed",
            }
        }
    }
}

#[test]
fn the_real_protocol_passes_the_scenario() {
    scenario::<verify::backends::record::Record>().unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn owner_from_current_thread() {
    caught::<OwnerFromCurrentThread>("OwnerFromCurrentThread", &["differs", "result"]);
}

#[test]
fn abandon_keeps_owner() {
    caught::<AbandonKeepsOwner>("AbandonKeepsOwner", &["differs", "rejected"]);
}

#[test]
fn release_by_total_active() {
    caught::<ReleaseByTotalActive>("ReleaseByTotalActive", &["rejected"]);
}

#[test]
fn pool_exhausted_drops_entry() {
    caught::<PoolExhaustedDropsEntry>("PoolExhaustedDropsEntry", &["differs", "invariant"]);
}

#[test]
fn stage1_leaks_node() {
    caught::<Stage1LeaksNode>("Stage1LeaksNode", &["differs"]);
}

#[test]
fn stage1_no_recheck() {
    caught::<Stage1NoRecheck>("Stage1NoRecheck", &["rejected"]);
}

#[test]
fn release_without_flush() {
    caught::<ReleaseWithoutFlush>("ReleaseWithoutFlush", &["differs"]);
}

/// Only observable under concurrency (loom/shuttle, branch `checkers`):
/// sequentially each behaves as the real protocol, and the lockstep says so.
#[test]
fn concurrency_only_mutants_pass_sequentially() {
    scenario::<PageFullNoRecheck>().unwrap_or_else(|e| panic!("PageFullNoRecheck: {e}"));
    scenario::<DoubleRelease>().unwrap_or_else(|e| panic!("DoubleRelease: {e}"));
    scenario::<EmptyCountCheckThenAct>().unwrap_or_else(|e| panic!("EmptyCountCheckThenAct: {e}"));
    scenario::<RemotePushRelaxed>().unwrap_or_else(|e| panic!("RemotePushRelaxed: {e}"));
}
