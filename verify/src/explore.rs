//! The exhaustive explorer: breadth-first search over every reachable state
//! of a (tiny) model configuration, with state hashing and parent pointers,
//! so that the first violation found comes with a shortest step sequence.
//!
//! Visited states are stored as 128-bit fingerprints (hash compaction), not
//! as whole states: memory stays small, at the price of a tiny probability
//! that two distinct states collide and one is not expanded (about n²/2¹²⁹
//! for ideal hashing; our two-lane hash is not ideal but far from 2⁻⁶⁴).

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

use model::{Config, Invariant, State, Step, Violation};

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
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_states: 20_000_000,
            stop_at_first: true,
            max_depth: usize::MAX,
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
    let mut seen: HashMap<u128, u32> = HashMap::new();
    seen.insert(fingerprint(&init), 0);
    let mut queue: VecDeque<(u32, State)> = VecDeque::new();
    let mut out = Outcome {
        states: 1,
        transitions: 0,
        violations: 0,
        first: None,
        complete: false,
        depth: 0,
        elapsed: Duration::ZERO,
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
    'bfs: while let Some((id, state)) = queue.pop_front() {
        if parents[id as usize].2 as usize >= opts.max_depth {
            cut = true;
            continue;
        }
        for (step, next) in state.successors() {
            out.transitions += 1;
            let fp = fingerprint(&next);
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
