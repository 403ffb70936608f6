//! The exhaustive explorer: breadth-first search over every reachable state
//! of a (tiny) model configuration, with state hashing and parent pointers,
//! so that the first violation found comes with a shortest step sequence.
//!
//! Visited states are stored as 128-bit fingerprints (hash compaction), not
//! as whole states: memory stays small, at the price of a tiny probability
//! that two distinct states collide and one is not expanded (about n²/2¹²⁹
//! for ideal hashing; our two-lane hash is not ideal but far from 2⁻⁶⁴).
//!
//! Symmetry reduction (on by default): the fingerprint is taken of
//! [`State::canonical_key`], so one state per orbit of the id renamings is
//! expanded (see `model/src/symmetry.rs` for why each renaming is sound).
//! The queue holds the states as reached — each one the result of its
//! recorded step applied to its parent as stored — so a trace is a real,
//! replayable sequence in the original ids; and every state of an orbit is
//! at the same distance from the (renaming-invariant) initial state, so BFS
//! still gives shortest traces.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

use model::{Config, FlushReason, Invariant, Mutant, SsStatus, Stage, State, Step, Violation};

/// What to explore and when to stop.
#[derive(Clone, Debug)]
pub struct Options {
    /// Stop after this many distinct states (the run is then incomplete).
    pub max_states: usize,
    /// Stop at the first violating state (its trace is shortest by BFS).
    pub stop_at_first: bool,
    /// Do not expand states at this depth (steps from the initial state):
    /// the run is then exhaustive up to that depth.
    pub max_depth: usize,
    /// Identify states that differ only by a renaming of ids (symmetry
    /// reduction).
    pub symmetry: bool,
    /// Print a line per BFS level to stderr.
    pub progress: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_states: 20_000_000,
            stop_at_first: true,
            max_depth: usize::MAX,
            symmetry: true,
            progress: false,
        }
    }
}

/// A violating state and how to reach it.
#[derive(Clone, Debug)]
pub struct Found {
    /// A shortest step sequence from the initial state.
    pub trace: Vec<Step>,
    /// Every invariant broken in the reached state, in number order.
    pub violations: Vec<Violation>,
}

impl Found {
    /// The invariants broken, without details.
    pub fn invariants(&self) -> Vec<Invariant> {
        self.violations.iter().map(|v| v.invariant).collect()
    }
}

/// The result of an exploration.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// Distinct states reached (including the initial one).
    pub states: usize,
    /// Transitions taken (enabled steps applied).
    pub transitions: u64,
    /// Violating states found (not expanded further).
    pub violations: usize,
    /// The first violation found (the shallowest).
    pub first: Option<Found>,
    /// Every reachable state was visited (no state, depth or early-stop
    /// bound hit).
    pub complete: bool,
    /// Depth of the deepest state (length of the longest shortest path).
    pub depth: usize,
    /// Wall time.
    pub elapsed: Duration,
    /// Transitions taken per step kind (see [`step_kind`]).
    pub coverage: BTreeMap<&'static str, u64>,
}

impl Outcome {
    /// The step kinds of [`expected_kinds`] never taken.
    pub fn missing_kinds(&self, mutant: Mutant) -> Vec<&'static str> {
        expected_kinds(mutant)
            .into_iter()
            .filter(|k| !self.coverage.contains_key(k))
            .collect()
    }
}

/// Every step kind the default run must take (with `PublishRemote` only
/// under the `count-before-push` mutant). `Realloc` is not required: it is
/// the composite of an `AllocFast` and a free (both required), and it needs
/// two pages `Active` at once, which the default configuration's page bound
/// excludes; it is reported when taken.
pub fn expected_kinds(mutant: Mutant) -> Vec<&'static str> {
    let mut v = vec![
        "AllocFast",
        "Carve",
        "Drain",
        "Drain+ThresholdFlush",
        "SetCurrent",
        "PageFull",
        "Unfull",
        "Acquire/Scan",
        "Acquire/List",
        "Acquire/Fallback",
        "Acquire/Unused",
        "Acquire/Fresh-new",
        "Acquire/Fresh-arena",
        "FreeLocal",
        "FreeLocal/full-page",
        "FreeRemote",
        "FreeRemote/full-page",
        "Flush/Threshold",
        "Flush/Boundary",
        "PageEmpty/node",
        "PageEmpty/fallback",
        "PageEmpty/relisted",
        "Abandon",
        "ThreadExit",
        "Reclaim",
        "Retire",
        "Release/arena",
        "Release/os",
        "ArenaTake",
        "Stage1Discard/List",
        "Stage1Discard/Fallback",
    ];
    if mutant == Mutant::CountBeforePush {
        v.push("PublishRemote");
    }
    v
}

/// The kind of a transition `before →step after`: the step's name refined
/// by the path it takes (stage, flush reason, where an entry or a released
/// SuperSlab goes), so that coverage shows every stage and fallback taken.
pub fn step_kind(before: &State, step: &Step, after: &State) -> &'static str {
    let full = |b: model::BlockId| before.slot(b.page()).is_some_and(|s| s.in_full);
    match *step {
        Step::Acquire { stage, ss, .. } => match stage {
            Stage::Scan => "Acquire/Scan",
            Stage::List => "Acquire/List",
            Stage::Fallback => "Acquire/Fallback",
            Stage::Unused => "Acquire/Unused",
            Stage::Fresh if usize::from(ss.0) == before.superslabs.len() => "Acquire/Fresh-new",
            Stage::Fresh => "Acquire/Fresh-arena",
        },
        Step::Drain { page, .. } => {
            let flushed =
                before.slot(page).map(|s| s.shared_used) != after.slot(page).map(|s| s.shared_used);
            if flushed {
                "Drain+ThresholdFlush"
            } else {
                "Drain"
            }
        }
        Step::FreeLocal { block, .. } if full(block) => "FreeLocal/full-page",
        Step::FreeRemote { block, .. } if full(block) => "FreeRemote/full-page",
        Step::Flush { reason, .. } => match reason {
            FlushReason::Threshold => "Flush/Threshold",
            FlushReason::Boundary => "Flush/Boundary",
        },
        Step::PageEmpty { .. } => {
            let count = |s: &State| {
                (
                    s.stage1.iter().map(Vec::len).sum::<usize>(),
                    s.fallback.iter().map(Vec::len).sum::<usize>(),
                )
            };
            let (n0, f0) = count(before);
            let (n1, f1) = count(after);
            if n1 > n0 {
                "PageEmpty/node"
            } else if f1 > f0 {
                "PageEmpty/fallback"
            } else {
                "PageEmpty/relisted"
            }
        }
        Step::Release { ss } => match after.superslabs.get(usize::from(ss.0)).map(|s| s.status) {
            Some(SsStatus::Cached) => "Release/arena",
            _ => "Release/os",
        },
        Step::Stage1Discard { source, .. } => match source {
            model::Stage1Source::List => "Stage1Discard/List",
            model::Stage1Source::Fallback => "Stage1Discard/Fallback",
        },
        _ => step.name(),
    }
}

/// A two-lane multiply-rotate hasher (FxHash-style mixing with two
/// different constants): one pass over the state gives 128 bits.
#[derive(Default)]
struct Fp128(u64, u64);

impl Hasher for Fp128 {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.write_u64(u64::from_le_bytes(w));
        }
        for &b in chunks.remainder() {
            self.write_u64(u64::from(b) | 0x100);
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.write_u64(u64::from(i));
    }
    fn write_u16(&mut self, i: u16) {
        self.write_u64(u64::from(i));
    }
    fn write_u32(&mut self, i: u32) {
        self.write_u64(u64::from(i));
    }
    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }
    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(5) ^ i).wrapping_mul(0x517c_c1b7_2722_0a95);
        self.1 = (self.1.rotate_left(23) ^ i ^ 0x9e37_79b9_7f4a_7c15)
            .wrapping_mul(0xff51_afd7_ed55_8ccd);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// The 128-bit fingerprint of a state.
pub fn fingerprint(s: &State) -> u128 {
    let mut h = Fp128::default();
    s.hash(&mut h);
    finish(h)
}

/// The 128-bit fingerprint of a state's orbit: of its canonical key.
pub fn canonical_fingerprint(s: &State) -> u128 {
    let mut h = Fp128::default();
    h.write(&s.canonical_key());
    finish(h)
}

fn finish(h: Fp128) -> u128 {
    // Final avalanche of each lane (splitmix64's finaliser).
    let mix = |mut z: u64| {
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    (u128::from(mix(h.0)) << 64) | u128::from(mix(h.1))
}

/// Explores `cfg` breadth-first from its initial state.
pub fn explore(cfg: Config, opts: &Options) -> Outcome {
    let start = Instant::now();
    let init = State::new(cfg);
    // Per state id: (parent id, step from the parent, depth).
    let mut parents: Vec<(u32, Option<Step>, u32)> = vec![(0, None, 0)];
    let fp_of = |s: &State| {
        if opts.symmetry {
            canonical_fingerprint(s)
        } else {
            fingerprint(s)
        }
    };
    let mut seen: HashMap<u128, u32> = HashMap::new();
    seen.insert(fp_of(&init), 0);
    let mut queue: VecDeque<(u32, State)> = VecDeque::new();
    let mut out = Outcome {
        states: 1,
        transitions: 0,
        violations: 0,
        first: None,
        complete: false,
        depth: 0,
        elapsed: Duration::ZERO,
        coverage: BTreeMap::new(),
    };
    let init_bad = init.violations();
    if !init_bad.is_empty() {
        out.violations = 1;
        out.first = Some(Found {
            trace: Vec::new(),
            violations: init_bad,
        });
        out.elapsed = start.elapsed();
        return out;
    }
    queue.push_back((0, init));
    let mut stopped = false;
    let mut cut = false;
    let mut level = 0;
    'bfs: while let Some((id, state)) = queue.pop_front() {
        let d = parents[id as usize].2;
        if opts.progress && d != level {
            level = d;
            eprintln!(
                "depth {d}: {} states, {} queued, {:.1?}",
                out.states,
                queue.len() + 1,
                start.elapsed()
            );
        }
        if d as usize >= opts.max_depth {
            cut = true;
            continue;
        }
        for (step, next) in state.successors() {
            out.transitions += 1;
            *out.coverage
                .entry(step_kind(&state, &step, &next))
                .or_default() += 1;
            let fp = fp_of(&next);
            if seen.contains_key(&fp) {
                continue;
            }
            let nid = parents.len() as u32;
            let depth = parents[id as usize].2 + 1;
            seen.insert(fp, nid);
            parents.push((id, Some(step), depth));
            out.states += 1;
            out.depth = out.depth.max(depth as usize);
            let bad = next.violations();
            if !bad.is_empty() {
                out.violations += 1;
                if out.first.is_none() {
                    out.first = Some(Found {
                        trace: trace_to(&parents, nid),
                        violations: bad,
                    });
                }
                if opts.stop_at_first {
                    stopped = true;
                    break 'bfs;
                }
                continue;
            }
            if out.states >= opts.max_states {
                stopped = true;
                break 'bfs;
            }
            queue.push_back((nid, next));
        }
    }
    out.complete = !stopped && !cut && queue.is_empty();
    out.elapsed = start.elapsed();
    out
}

fn trace_to(parents: &[(u32, Option<Step>, u32)], mut id: u32) -> Vec<Step> {
    let mut steps = Vec::new();
    while let (parent, Some(step), _) = parents[id as usize] {
        steps.push(step);
        id = parent;
    }
    steps.reverse();
    steps
}

/// Replays `trace` from the initial state of `cfg`: every step must be
/// accepted; returns the final state (used to double-check traces).
pub fn replay(cfg: Config, trace: &[Step]) -> Result<State, String> {
    let mut s = State::new(cfg);
    for (i, step) in trace.iter().enumerate() {
        s.apply(step)
            .map_err(|e| format!("step {} ({step}) rejected: {e}", i + 1))?;
    }
    Ok(s)
}
