//! Figures of a trace, in one streaming pass: events per kind, threads, peak
//! live bytes and blocks, a power-of-two size histogram, the share of remote
//! frees, and realloc directions.
//!
//! Whether a realloc stayed in place or moved is a property of an allocator,
//! not of a trace: `replay` reports it. Here reallocs are counted as grow,
//! shrink or same size.

use crate::error::TraceError;
use crate::event::{Event, Record};
use crate::file::TraceReader;
use crate::validate::{LiveBlock, Validator};
use serde::Serialize;
use std::fmt;

/// One bucket of the size histogram: requests of `min..=max` bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SizeBucket {
    /// Smallest size in the bucket (0, 1, 2, 4, 8, …).
    pub min: u64,
    /// Largest size in the bucket (0, 1, 3, 7, 15, …).
    pub max: u64,
    /// Requests (`a`, `z` and `r`) whose size is in the bucket.
    pub count: u64,
}

/// The figures of one trace.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Stats {
    /// Events (lines other than the header and comments).
    pub events: u64,
    /// Comment lines.
    pub comments: u64,
    /// `a` events.
    pub allocs: u64,
    /// `z` events.
    pub zeroed: u64,
    /// `r` events.
    pub reallocs: u64,
    /// `f` events.
    pub frees: u64,
    /// Threads (the largest tid + 1).
    pub threads: u64,
    /// Events per thread, indexed by tid.
    pub events_per_thread: Vec<u64>,
    /// The most bytes live at once (after any event).
    pub peak_live_bytes: u64,
    /// The most blocks live at once (may be reached at another moment than
    /// the byte peak).
    pub peak_live_blocks: u64,
    /// Bytes still live at the end.
    pub live_bytes_at_end: u64,
    /// Blocks still live at the end.
    pub live_blocks_at_end: u64,
    /// Sum of the sizes of all `a`, `z` and `r` requests (saturating).
    pub requested_bytes: u64,
    /// Non-empty buckets of the size histogram of `a`, `z`, `r` requests:
    /// bucket 0 holds size 0, bucket k ≥ 1 holds sizes in [2^(k−1), 2^k).
    pub size_histogram: Vec<SizeBucket>,
    /// `f` events whose block was (re)allocated by another thread.
    pub remote_frees: u64,
    /// `r` events whose old block was (re)allocated by another thread.
    pub remote_reallocs: u64,
    /// (remote_frees + remote_reallocs) / (frees + reallocs); 0 when neither.
    pub remote_share: f64,
    /// Reallocs to a larger size.
    pub realloc_grow: u64,
    /// Reallocs to a smaller size.
    pub realloc_shrink: u64,
    /// Reallocs to the same size.
    pub realloc_same: u64,
}

/// Builds [`Stats`] event by event; feed it what the reader returns.
#[derive(Clone, Debug)]
pub struct StatsBuilder {
    s: Stats,
    hist: [u64; 65],
}

impl Default for StatsBuilder {
    fn default() -> StatsBuilder {
        StatsBuilder::new()
    }
}

impl StatsBuilder {
    /// Empty figures.
    pub fn new() -> StatsBuilder {
        StatsBuilder {
            s: Stats {
                events: 0,
                comments: 0,
                allocs: 0,
                zeroed: 0,
                reallocs: 0,
                frees: 0,
                threads: 0,
                events_per_thread: Vec::new(),
                peak_live_bytes: 0,
                peak_live_blocks: 0,
                live_bytes_at_end: 0,
                live_blocks_at_end: 0,
                requested_bytes: 0,
                size_histogram: Vec::new(),
                remote_frees: 0,
                remote_reallocs: 0,
                remote_share: 0.0,
                realloc_grow: 0,
                realloc_shrink: 0,
                realloc_same: 0,
            },
            hist: [0; 65],
        }
    }

    /// Accounts for `rec`, which the reader has just validated: `freed` is
    /// the reader's `last_freed()`, `v` its validator (after the event).
    pub fn add(&mut self, rec: &Record, freed: Option<LiveBlock>, v: &Validator) {
        let ev = match rec {
            Record::Comment(_) => {
                self.s.comments += 1;
                return;
            }
            Record::Event(ev) => ev,
        };
        let s = &mut self.s;
        s.events += 1;
        let tid = ev.tid();
        // tid ≤ threads seen, so this grows by at most one per new thread.
        if let Ok(t) = usize::try_from(tid) {
            if t >= s.events_per_thread.len() {
                s.events_per_thread.resize(t + 1, 0);
            }
            s.events_per_thread[t] += 1;
        }
        let remote = matches!(freed, Some(b) if b.tid != tid);
        match *ev {
            Event::Alloc { .. } => s.allocs += 1,
            Event::Zeroed { .. } => s.zeroed += 1,
            Event::Realloc { size, .. } => {
                s.reallocs += 1;
                s.remote_reallocs += u64::from(remote);
                if let Some(old) = freed {
                    match size.cmp(&old.size) {
                        std::cmp::Ordering::Greater => s.realloc_grow += 1,
                        std::cmp::Ordering::Less => s.realloc_shrink += 1,
                        std::cmp::Ordering::Equal => s.realloc_same += 1,
                    }
                }
            }
            Event::Free { .. } => {
                s.frees += 1;
                s.remote_frees += u64::from(remote);
            }
        }
        if let Some((size, _)) = ev.layout() {
            s.requested_bytes = s.requested_bytes.saturating_add(size);
            let bucket = (64 - size.leading_zeros()) as usize;
            self.hist[bucket] += 1;
        }
        s.peak_live_bytes = s.peak_live_bytes.max(v.live_bytes());
        s.peak_live_blocks = s.peak_live_blocks.max(v.live_blocks());
        s.threads = v.threads();
    }

    /// The figures, given the validator at the end of the trace.
    pub fn finish(mut self, v: &Validator) -> Stats {
        let s = &mut self.s;
        s.live_bytes_at_end = v.live_bytes();
        s.live_blocks_at_end = v.live_blocks();
        s.threads = v.threads();
        let dead = s.frees + s.reallocs;
        s.remote_share = if dead == 0 {
            0.0
        } else {
            (s.remote_frees + s.remote_reallocs) as f64 / dead as f64
        };
        s.size_histogram = self
            .hist
            .iter()
            .enumerate()
            .filter(|(_, &c)| c > 0)
            .map(|(k, &count)| {
                let (min, max) = if k == 0 {
                    (0, 0)
                } else {
                    (
                        1u64 << (k - 1),
                        (1u64 << (k - 1)).wrapping_mul(2).wrapping_sub(1),
                    )
                };
                SizeBucket { min, max, count }
            })
            .collect();
        self.s
    }
}

/// Reads the whole trace and returns its figures, calling `progress` with the
/// line number every 64 Ki lines.
pub fn collect(
    reader: &mut TraceReader,
    mut progress: impl FnMut(u64),
) -> Result<Stats, TraceError> {
    let mut b = StatsBuilder::new();
    while let Some(rec) = reader.next_record() {
        let rec = rec?;
        b.add(&rec, reader.last_freed(), reader.validator());
        let line = reader.line();
        if line % (64 << 10) == 0 {
            progress(line);
        }
    }
    Ok(b.finish(reader.validator()))
}

/// Formats a byte count with a binary unit.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{n} ({v:.1} {})", UNITS[u])
    }
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pct = |n: u64| {
            if self.events == 0 {
                0.0
            } else {
                100.0 * n as f64 / self.events as f64
            }
        };
        writeln!(f, "events            {}", self.events)?;
        writeln!(
            f,
            "  alloc   (a)     {} ({:.1}%)",
            self.allocs,
            pct(self.allocs)
        )?;
        writeln!(
            f,
            "  zeroed  (z)     {} ({:.1}%)",
            self.zeroed,
            pct(self.zeroed)
        )?;
        writeln!(
            f,
            "  realloc (r)     {} ({:.1}%)",
            self.reallocs,
            pct(self.reallocs)
        )?;
        writeln!(
            f,
            "  free    (f)     {} ({:.1}%)",
            self.frees,
            pct(self.frees)
        )?;
        writeln!(f, "comments          {}", self.comments)?;
        writeln!(f, "threads           {}", self.threads)?;
        writeln!(f, "peak live bytes   {}", bytes(self.peak_live_bytes))?;
        writeln!(f, "peak live blocks  {}", self.peak_live_blocks)?;
        writeln!(
            f,
            "live at end       {} in {} blocks",
            bytes(self.live_bytes_at_end),
            self.live_blocks_at_end
        )?;
        writeln!(f, "requested bytes   {}", bytes(self.requested_bytes))?;
        writeln!(
            f,
            "remote frees      {} of {} frees, {} of {} reallocs ({:.1}% of blocks ended)",
            self.remote_frees,
            self.frees,
            self.remote_reallocs,
            self.reallocs,
            100.0 * self.remote_share
        )?;
        writeln!(
            f,
            "reallocs          {} grow, {} shrink, {} same size (in place vs moved: see replay)",
            self.realloc_grow, self.realloc_shrink, self.realloc_same
        )?;
        writeln!(f, "size histogram (a, z, r requests)")?;
        let total: u64 = self.size_histogram.iter().map(|b| b.count).sum();
        for b in &self.size_histogram {
            let share = if total == 0 {
                0.0
            } else {
                b.count as f64 / total as f64
            };
            let bar = "#".repeat((share * 40.0).round() as usize);
            writeln!(
                f,
                "  {:>20} .. {:<20} {:>12} {:>5.1}% {}",
                b.min,
                b.max,
                b.count,
                100.0 * share,
                bar
            )?;
        }
        Ok(())
    }
}
