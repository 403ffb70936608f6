//! The semantic rules of hktrace v1, shared by the text and binary readers:
//! fresh ids, frees and reallocs of live blocks only, threads numbered in
//! order, power-of-two alignments.
//!
//! [`Validator`] is the only state a reader keeps besides its buffers: the
//! live set (id → [`LiveBlock`]) and the set of ids ever used ([`IdSet`],
//! stored as intervals, so a recorder's dense ids 1, 2, 3, … cost one
//! interval however long the trace).
//!
//! # Invariants
//! - every key of `live` is in `used`;
//! - `live_bytes` = Σ size over `live` (saturating);
//! - `next_tid` = 1 + the largest tid seen (0 before any event).

use crate::error::Reason;
use crate::event::{BlockId, Event, Tid};
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

/// What the validator remembers of a live block: enough to free it with a
/// `Layout` (size, align) and to tell a remote free (tid).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LiveBlock {
    /// The thread that allocated it (or reallocated it last).
    pub tid: Tid,
    /// Its size in bytes.
    pub size: u64,
    /// Its alignment.
    pub align: u64,
}

/// A multiplicative hasher for `u64` keys (ids are not attacker-chosen in a
/// way that matters here: a bad trace can only slow its own reading).
#[derive(Default, Clone, Copy)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }
    fn write_u64(&mut self, n: u64) {
        // Fibonacci hashing; the high bits are the well-mixed ones, hashbrown
        // uses the top 7 for its tags and the low ones for the bucket, so fold.
        let h = n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.0 = h ^ (h >> 32);
    }
}

/// Map keyed by block id.
pub type IdMap<V> = HashMap<BlockId, V, BuildHasherDefault<IdHasher>>;

/// The set of block ids used so far, as disjoint inclusive intervals.
///
/// Memory is proportional to the number of gaps, not of ids: a trace whose
/// ids are allocated in increasing order without holes is one interval.
/// The topmost interval is kept outside the map so that the common case
/// (the next id is one more than the largest) touches no tree.
#[derive(Default, Debug, Clone)]
pub struct IdSet {
    /// Intervals below `top`: start → last (inclusive), disjoint, not adjacent.
    lower: BTreeMap<u64, u64>,
    /// The interval holding the largest id, if any.
    top: Option<(u64, u64)>,
}

impl IdSet {
    /// Whether `id` was inserted.
    pub fn contains(&self, id: u64) -> bool {
        if let Some((s, l)) = self.top {
            if id >= s {
                return id <= l;
            }
        }
        match self.lower.range(..=id).next_back() {
            Some((_, &last)) => id <= last,
            None => false,
        }
    }

    /// Inserts `id`; returns false (and changes nothing) if it was present.
    pub fn insert(&mut self, id: u64) -> bool {
        let Some((s, l)) = self.top else {
            self.top = Some((id, id));
            return true;
        };
        if id > l {
            if id == l + 1 {
                self.top = Some((s, id));
            } else {
                self.lower.insert(s, l);
                self.top = Some((id, id));
            }
            return true;
        }
        if id >= s {
            return false;
        }
        // Below the top interval: find the neighbours in the tree.
        let below = self.lower.range(..=id).next_back().map(|(&a, &b)| (a, b));
        if let Some((_, last)) = below {
            if id <= last {
                return false;
            }
        }
        let joins_below = matches!(below, Some((_, last)) if last + 1 == id);
        // The next interval above: in the tree, or the top one.
        let above = self
            .lower
            .range(id + 1..)
            .next()
            .map(|(&a, &b)| (a, b, false))
            .unwrap_or((s, l, true));
        let joins_above = above.0 == id + 1;
        match (joins_below, joins_above) {
            (true, true) => {
                let (bs, _) = below.unwrap_or((id, id));
                if above.2 {
                    self.lower.remove(&bs);
                    self.top = Some((bs, above.1));
                } else {
                    self.lower.remove(&above.0);
                    self.lower.insert(bs, above.1);
                }
            }
            (true, false) => {
                let (bs, _) = below.unwrap_or((id, id));
                self.lower.insert(bs, id);
            }
            (false, true) => {
                if above.2 {
                    self.top = Some((id, above.1));
                } else {
                    self.lower.remove(&above.0);
                    self.lower.insert(id, above.1);
                }
            }
            (false, false) => {
                self.lower.insert(id, id);
            }
        }
        true
    }

    /// Number of disjoint intervals (1 for a dense trace).
    pub fn intervals(&self) -> usize {
        self.lower.len() + usize::from(self.top.is_some())
    }
}

/// Checks the semantic rules of hktrace v1 event by event.
#[derive(Default, Debug, Clone)]
pub struct Validator {
    live: IdMap<LiveBlock>,
    used: IdSet,
    next_tid: Tid,
    live_bytes: u64,
}

impl Validator {
    /// A validator at the start of a trace.
    pub fn new() -> Validator {
        Validator::default()
    }

    /// Checks `ev` against the rules and, if it passes, applies it. Returns
    /// the block the event ended (`f`, and `r`'s old block). On error nothing
    /// changes.
    pub fn apply(&mut self, ev: &Event) -> Result<Option<LiveBlock>, Reason> {
        let tid = ev.tid();
        if tid > self.next_tid {
            return Err(Reason::TidSkipsAhead {
                tid,
                next: self.next_tid,
            });
        }
        if let Some((_, align)) = ev.layout() {
            if !align.is_power_of_two() {
                return Err(Reason::AlignNotPowerOfTwo(align));
            }
        }
        // One lookup for the dead block: take it out, put it back on error.
        let freed = match ev.dead_id() {
            Some(dead) => match self.live.remove(&dead) {
                Some(b) => Some((dead, b)),
                None => {
                    return Err(Reason::NotLive {
                        kind: ev.kind(),
                        id: dead,
                        never_allocated: !self.used.contains(dead),
                    })
                }
            },
            None => None,
        };
        if let Some(new) = ev.new_id() {
            let err = if new == 0 {
                Some(Reason::ZeroId)
            } else if !self.used.insert(new) {
                Some(Reason::ReusedId(new))
            } else {
                None
            };
            if let Some(err) = err {
                if let Some((dead, b)) = freed {
                    self.live.insert(dead, b);
                }
                return Err(err);
            }
        }
        // Every check passed: apply.
        if tid == self.next_tid {
            self.next_tid += 1;
        }
        let freed = freed.map(|(_, b)| b);
        if let Some(b) = freed {
            self.live_bytes = self.live_bytes.saturating_sub(b.size);
        }
        if let (Some(id), Some((size, align))) = (ev.new_id(), ev.layout()) {
            self.live.insert(id, LiveBlock { tid, size, align });
            self.live_bytes = self.live_bytes.saturating_add(size);
        }
        Ok(freed)
    }

    /// The live block `id`, if live.
    pub fn get(&self, id: BlockId) -> Option<&LiveBlock> {
        self.live.get(&id)
    }

    /// Number of live blocks.
    pub fn live_blocks(&self) -> u64 {
        self.live.len() as u64
    }

    /// Bytes in live blocks (saturating at `u64::MAX`).
    pub fn live_bytes(&self) -> u64 {
        self.live_bytes
    }

    /// Threads seen so far (= the next unused tid).
    pub fn threads(&self) -> u64 {
        self.next_tid
    }

    /// The set of ids used so far.
    pub fn used_ids(&self) -> &IdSet {
        &self.used
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idset_matches_a_plain_set() {
        let mut s = IdSet::default();
        let mut plain = std::collections::BTreeSet::new();
        let mut x: u32 = 12345;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let id = u64::from(x % 30_000);
            assert_eq!(s.insert(id), plain.insert(id), "id {id}");
        }
        for id in 0..30_100 {
            assert_eq!(s.contains(id), plain.contains(&id), "id {id}");
        }
        let runs = plain
            .iter()
            .filter(|&&id| id == 0 || !plain.contains(&(id - 1)))
            .count();
        assert_eq!(s.intervals(), runs);
    }

    #[test]
    fn idset_dense_is_one_interval() {
        let mut s = IdSet::default();
        for id in 1..100_000 {
            assert!(s.insert(id));
        }
        assert_eq!(s.intervals(), 1);
        assert!(!s.insert(5));
        assert!(s.insert(u64::MAX));
        assert!(s.contains(u64::MAX) && !s.contains(u64::MAX - 1));
    }
}
