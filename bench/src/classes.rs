//! `bench classes`: the candidate size-class tables compared on memory.
//!
//! Each trace is replayed through each candidate table of
//! `hakmem::size_class::CANDIDATES` (no allocator runs; the table decides
//! block sizes). Per table it reports, at the moment the live *block* bytes
//! peak:
//!
//! - **waste**: block bytes minus requested bytes, as a share of the block
//!   bytes (internal fragmentation);
//! - **slots**: the 64 KiB slots the live blocks need when each (allocating
//!   thread, class) pair packs its blocks perfectly into its own slots — the
//!   least footprint hakmem's per-thread, per-class pages can have, and the
//!   part of it that grows with the number of classes;
//! - **pages**: 4 KiB pages touched, Σ over (thread, class) of the high-water
//!   live blocks × block size rounded up to pages (bump carving touches a
//!   page when a block is first carved from it, and LIFO free lists reuse
//!   the lowest blocks first).
//!
//! Requests above 8 KiB (or with an alignment no class gives) go to large
//! mappings whatever the table and are left out. The speed side and the
//! RSS of real runs come from the suite run with a worker binary built per
//! table (`bench classes --speed`, see `main.rs`).

use std::collections::HashMap;
use std::path::Path;

use traces::{Event, TraceReader};

/// OS page for the "pages touched" model.
const PAGE: u64 = 4096;
/// Slot (page) size of hakmem's slabs.
const SLOT: u64 = 64 << 10;

/// A class table: the smallest class of each request, O(log n).
struct Table<'a> {
    sizes: &'a [u32],
}

impl Table<'_> {
    /// The class of `size` at `align`, `None` when the request is large.
    fn class(&self, size: u64, align: u64) -> Option<usize> {
        let size = size.max(1);
        let first = self.sizes.partition_point(|&s| u64::from(s) < size);
        (first..self.sizes.len()).find(|&c| u64::from(self.sizes[c]) % align.max(16) == 0)
    }
}

/// One table on one trace.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Footprint {
    /// Peak live bytes in blocks (block sizes).
    pub peak_block_bytes: u64,
    /// Requested bytes live at that moment.
    pub requested_at_peak: u64,
    /// Peak 64 KiB slots needed (perfect packing per thread and class).
    pub peak_slots: u64,
    /// 4 KiB pages touched (high-water per thread and class).
    pub pages_touched: u64,
    /// Classes used by the trace.
    pub classes_used: usize,
}

impl Footprint {
    /// Internal fragmentation at the peak, as a share of block bytes.
    pub fn waste(&self) -> f64 {
        if self.peak_block_bytes == 0 {
            0.0
        } else {
            (self.peak_block_bytes - self.requested_at_peak) as f64 / self.peak_block_bytes as f64
        }
    }
}

/// Replays the small requests of `events` through `sizes`.
pub fn footprint(
    events: impl Iterator<Item = Result<Event, String>>,
    sizes: &[u32],
) -> Result<Footprint, String> {
    let t = Table { sizes };
    // Live block id → (allocating thread, class, requested size).
    let mut live: HashMap<u64, (u64, usize, u64)> = HashMap::new();
    // (thread, class) → (live blocks, high-water).
    let mut per: HashMap<(u64, usize), (u64, u64)> = HashMap::new();
    let cap = |c: usize| SLOT / u64::from(sizes[c]);
    let (mut block_bytes, mut requested, mut slots) = (0u64, 0u64, 0u64);
    let mut f = Footprint::default();
    let free = |id: u64,
                live: &mut HashMap<u64, (u64, usize, u64)>,
                per: &mut HashMap<(u64, usize), (u64, u64)>,
                block_bytes: &mut u64,
                requested: &mut u64,
                slots: &mut u64| {
        if let Some((tid, c, size)) = live.remove(&id) {
            let e = per.get_mut(&(tid, c)).expect("a live block's pair");
            *slots -= e.0.div_ceil(cap(c));
            e.0 -= 1;
            *slots += e.0.div_ceil(cap(c));
            *block_bytes -= u64::from(sizes[c]);
            *requested -= size;
        }
    };
    for ev in events {
        let (tid, id, size, align) = match ev? {
            Event::Alloc {
                tid,
                id,
                size,
                align,
            }
            | Event::Zeroed {
                tid,
                id,
                size,
                align,
            } => (tid, id, size, align),
            Event::Realloc {
                tid,
                old_id,
                new_id,
                size,
                align,
            } => {
                free(
                    old_id,
                    &mut live,
                    &mut per,
                    &mut block_bytes,
                    &mut requested,
                    &mut slots,
                );
                (tid, new_id, size, align)
            }
            Event::Free { id, .. } => {
                free(
                    id,
                    &mut live,
                    &mut per,
                    &mut block_bytes,
                    &mut requested,
                    &mut slots,
                );
                continue;
            }
        };
        let Some(c) = t.class(size, align) else {
            continue;
        };
        live.insert(id, (tid, c, size));
        let e = per.entry((tid, c)).or_default();
        slots -= e.0.div_ceil(cap(c));
        e.0 += 1;
        e.1 = e.1.max(e.0);
        slots += e.0.div_ceil(cap(c));
        block_bytes += u64::from(sizes[c]);
        requested += size;
        if block_bytes > f.peak_block_bytes {
            f.peak_block_bytes = block_bytes;
            f.requested_at_peak = requested;
        }
        f.peak_slots = f.peak_slots.max(slots);
    }
    f.pages_touched = per
        .iter()
        .map(|(&(_, c), &(_, hw))| (hw * u64::from(sizes[c])).div_ceil(PAGE))
        .sum();
    let mut used: Vec<usize> = per.keys().map(|&(_, c)| c).collect();
    used.sort_unstable();
    used.dedup();
    f.classes_used = used.len();
    Ok(f)
}

/// [`footprint`] of the trace file at `path`.
pub fn trace_footprint(path: &Path, sizes: &[u32]) -> Result<Footprint, String> {
    let r = TraceReader::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    footprint(r.map(|e| e.map_err(|e| e.to_string())), sizes)
}

/// The Markdown table of every candidate on every trace in `traces`.
pub fn report(traces: &[std::path::PathBuf]) -> Result<String, String> {
    let tables = hakmem::size_class::CANDIDATES;
    let mut s = String::from(
        "| trace | table | classes | peak block KiB | waste | peak slots (64 KiB) | pages touched (4 KiB) |\n\
         |---|---|---:|---:|---:|---:|---:|\n",
    );
    for p in traces {
        let name = p
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        for (tname, sizes) in tables {
            let f = trace_footprint(p, sizes)?;
            s.push_str(&format!(
                "| {name} | {tname} ({} classes) | {} | {:.1} | {:.1} % | {} | {} |\n",
                sizes.len(),
                f.classes_used,
                f.peak_block_bytes as f64 / 1024.0,
                100.0 * f.waste(),
                f.peak_slots,
                f.pages_touched
            ));
        }
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(tid: u64, id: u64, size: u64) -> Result<Event, String> {
        Ok(Event::Alloc {
            tid,
            id,
            size,
            align: 8,
        })
    }

    #[test]
    fn waste_slots_and_pages_of_a_small_trace() {
        let sizes = [16, 32, 64, 8192];
        // 33 rounds up to 64 (31 wasted); two threads use class 64 apart.
        let ev = vec![
            a(0, 1, 33),
            a(1, 2, 64),
            a(0, 3, 16),
            Ok(Event::Free { tid: 0, id: 3 }),
            a(0, 4, 20000), // large: left out
        ];
        let f = footprint(ev.into_iter(), &sizes).unwrap();
        assert_eq!(f.peak_block_bytes, 64 + 64 + 16);
        assert_eq!(f.requested_at_peak, 33 + 64 + 16);
        assert_eq!(f.peak_slots, 3);
        assert_eq!(f.pages_touched, 3);
        assert_eq!(f.classes_used, 2);
        assert!((f.waste() - 31.0 / 144.0).abs() < 1e-9);
    }

    #[test]
    fn alignment_picks_a_multiple() {
        let t = Table {
            sizes: &[16, 48, 64, 8192],
        };
        assert_eq!(t.class(40, 8), Some(1));
        assert_eq!(t.class(40, 32), Some(2));
        assert_eq!(t.class(9000, 8), None);
    }
}
