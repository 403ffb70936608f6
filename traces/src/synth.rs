//! Deterministic synthetic traces: `random_mixed` (the benchmark of issue 7,
//! as a trace) and a Larson-like workload with cross-thread frees.
//!
//! Both stream their records to a callback in constant memory (besides the
//! working set), start with a comment line naming the generator and its
//! parameters, and number block ids 1, 2, 3, … in order.

use crate::event::{Event, Record};

/// Marsaglia's xorshift32 (13, 17, 5), the generator of the C benchmarks.
#[derive(Clone, Copy, Debug)]
pub struct XorShift32(u32);

impl XorShift32 {
    /// A generator seeded with `seed`; `None` for 0, xorshift's fixed point.
    pub fn new(seed: u32) -> Option<XorShift32> {
        (seed != 0).then_some(XorShift32(seed))
    }

    /// The next draw (the new state).
    #[inline]
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u32 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.0 = x;
        x
    }
}

/// Parameters of `random_mixed`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RandomMixed {
    /// Iterations (each one event).
    pub cycles: u64,
    /// Working-set slots.
    pub ws: u32,
    /// xorshift32 seed, not 0.
    pub seed: u32,
    /// Smallest size.
    pub min: u64,
    /// Largest size.
    pub max: u64,
}

impl Default for RandomMixed {
    fn default() -> RandomMixed {
        RandomMixed {
            cycles: 10_000_000,
            ws: 256,
            seed: 42,
            min: 16,
            max: 1040,
        }
    }
}

/// The alignment `malloc` writes (the glibc x86-64 guarantee).
pub const MALLOC_ALIGN: u64 = 16;

/// Generates `random_mixed`: one thread; per iteration one xorshift32 draw
/// `r`, slot `r % ws`; an occupied slot is freed, an empty one gets a block
/// of `16 + (r & 0x3FF)` bytes clamped to `[min, max]`. No warm-up (that is
/// the benchmark's, untimed), and blocks live at the end stay live.
pub struct RandomMixedGen {
    p: RandomMixed,
    rng: XorShift32,
    slots: Vec<u64>,
    done: u64,
    next_id: u64,
    started: bool,
}

impl RandomMixedGen {
    /// The generator; an error for a 0 seed, `ws` = 0 or `min > max`.
    pub fn new(p: RandomMixed) -> Result<RandomMixedGen, String> {
        let rng = XorShift32::new(p.seed).ok_or("seed must not be 0 (xorshift32's fixed point)")?;
        if p.ws == 0 || p.min > p.max {
            return Err("need ws ≥ 1 and min ≤ max".into());
        }
        Ok(RandomMixedGen {
            p,
            rng,
            slots: vec![0; p.ws as usize],
            done: 0,
            next_id: 1,
            started: false,
        })
    }
}

impl Iterator for RandomMixedGen {
    type Item = Record;

    fn next(&mut self) -> Option<Record> {
        let p = &self.p;
        if !self.started {
            self.started = true;
            return Some(Record::Comment(
                format!(
                    " synth random_mixed cycles={} ws={} seed={} min={} max={}",
                    p.cycles, p.ws, p.seed, p.min, p.max
                )
                .into_bytes(),
            ));
        }
        if self.done == p.cycles {
            return None;
        }
        self.done += 1;
        let r = self.rng.next();
        let slot = &mut self.slots[(r % p.ws) as usize];
        if *slot != 0 {
            let id = std::mem::take(slot);
            Some(Record::Event(Event::Free { tid: 0, id }))
        } else {
            let size = (16 + u64::from(r & 0x3ff)).clamp(p.min, p.max);
            *slot = self.next_id;
            self.next_id += 1;
            Some(Record::Event(Event::Alloc {
                tid: 0,
                id: *slot,
                size,
                align: MALLOC_ALIGN,
            }))
        }
    }
}

/// Parameters of the Larson-like workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Larson {
    /// Threads (and arrays).
    pub threads: u32,
    /// Slots per array.
    pub slots: u32,
    /// Rounds; arrays change hands after each.
    pub rounds: u32,
    /// Replacements per thread per round.
    pub ops: u32,
    /// Seed, not 0; thread `t` draws from its own xorshift32.
    pub seed: u32,
    /// Smallest size.
    pub min: u64,
    /// Largest size.
    pub max: u64,
}

impl Default for Larson {
    fn default() -> Larson {
        Larson {
            threads: 2,
            slots: 1000,
            rounds: 10,
            ops: 1000,
            seed: 42,
            min: 8,
            max: 1000,
        }
    }
}

/// Generates the Larson-like workload: `threads` threads, each with an array
/// of `slots` blocks. In round `k` thread `t` works on array `(t + k) %
/// threads`, so from the second round on it frees blocks another thread
/// allocated. One replacement: a draw `r` picks slot `r % slots`; a block
/// there is freed; a new block of `min + r2 % (max − min + 1)` bytes (a second
/// draw `r2`) takes its place. Threads take turns one replacement at a time.
pub struct LarsonGen {
    p: Larson,
    rngs: Vec<XorShift32>,
    arrays: Vec<Vec<u64>>,
    round: u32,
    op: u32,
    t: u32,
    next_id: u64,
    started: bool,
    pending: Option<Record>,
}

impl LarsonGen {
    /// The generator; an error for a 0 seed, no threads or slots, `min > max`.
    pub fn new(p: Larson) -> Result<LarsonGen, String> {
        if p.seed == 0 || p.threads == 0 || p.slots == 0 || p.min > p.max {
            return Err("need seed ≠ 0, threads ≥ 1, slots ≥ 1 and min ≤ max".into());
        }
        let rngs = (0..p.threads)
            .map(|t| {
                let s = p.seed.wrapping_add(t.wrapping_mul(0x9e37_79b9));
                XorShift32::new(s).unwrap_or(XorShift32(1))
            })
            .collect();
        Ok(LarsonGen {
            p,
            rngs,
            arrays: vec![vec![0; p.slots as usize]; p.threads as usize],
            round: 0,
            op: 0,
            t: 0,
            next_id: 1,
            started: false,
            pending: None,
        })
    }
}

impl Iterator for LarsonGen {
    type Item = Record;

    fn next(&mut self) -> Option<Record> {
        let p = self.p;
        if !self.started {
            self.started = true;
            return Some(Record::Comment(
                format!(
                    " synth larson threads={} slots={} rounds={} ops={} seed={} min={} max={}",
                    p.threads, p.slots, p.rounds, p.ops, p.seed, p.min, p.max
                )
                .into_bytes(),
            ));
        }
        if let Some(rec) = self.pending.take() {
            return Some(rec);
        }
        if self.round == p.rounds || p.ops == 0 {
            return None;
        }
        let t = self.t as usize;
        let tid = u64::from(self.t);
        let rng = &mut self.rngs[t];
        let array = (t + self.round as usize) % p.threads as usize;
        let slot = &mut self.arrays[array][(rng.next() % p.slots) as usize];
        let span = (p.max - p.min).saturating_add(1);
        let size = p.min + u64::from(rng.next()) % span;
        let old = std::mem::replace(slot, self.next_id);
        let alloc = Record::Event(Event::Alloc {
            tid,
            id: self.next_id,
            size,
            align: MALLOC_ALIGN,
        });
        self.next_id += 1;
        // Advance (t, op, round).
        self.t += 1;
        if self.t == p.threads {
            self.t = 0;
            self.op += 1;
            if self.op == p.ops {
                self.op = 0;
                self.round += 1;
            }
        }
        if old != 0 {
            self.pending = Some(alloc);
            Some(Record::Event(Event::Free { tid, id: old }))
        } else {
            Some(alloc)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xorshift32_known_values() {
        // x = 1: 1 ^ (1 << 13) = 0x2001; ^ (>> 17) = 0x2001; ^ (<< 5) = 0x42021.
        let mut r = XorShift32::new(1).unwrap();
        assert_eq!(r.next(), 0x0004_2021);
        assert!(XorShift32::new(0).is_none());
    }
}
