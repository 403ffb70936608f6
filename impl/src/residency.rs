//! Where the resident memory is: a diagnostic that splits hakmem's resident
//! bytes by region (SuperSlab headers, block areas per class and slot state,
//! stage-1 node pool, heaps, chunk map, large blocks) with `mincore`.
//!
//! For measuring, not for the allocator's own decisions: it takes the pool
//! lock (so no SuperSlab is unmapped under it) and makes one `mincore` call
//! per 2 MiB. Used by `bench`'s `rss_probe` example (breakdown at peak RSS)
//! and by the RSS tests. It does not allocate.

use core::fmt;

use crate::chunkmap;
use crate::instance::Instance;
use crate::os;
use crate::size_class::{CLASS_SIZES, HEADER_SIZE, NUM_CLASSES, SLOTS, SLOT_SIZE};
use crate::superslab::SlotState;
use crate::sync::{AtomicOps, Backend};

/// One size class's `Active` slots.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClassResidency {
    /// `Active` slots of the class.
    pub slots: usize,
    /// Resident bytes of their block areas.
    pub resident: usize,
    /// Bytes of blocks in use at the owners' last flush (shared `used` ×
    /// block size; lags the owners' current counts).
    pub used_bytes: usize,
}

/// Resident bytes of an instance by region (see the module doc).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Residency {
    /// SuperSlabs mapped (live and cached).
    pub superslabs: usize,
    /// Resident bytes of SuperSlab headers (the first 8 KiB of each).
    pub headers: usize,
    /// Per class: `Active` slots.
    pub classes: [ClassResidency; NUM_CLASSES],
    /// Resident bytes of `Empty` (and `Purging`) slots not yet purged.
    pub empty: usize,
    /// Resident bytes of `Unused` slots (e.g. of a cached SuperSlab).
    pub unused: usize,
    /// Resident bytes of the stage-1 node pool / its mapping's size.
    pub node_pool: usize,
    /// Bytes of the node pool's mapping.
    pub node_pool_mapped: usize,
    /// Resident bytes of the heap chunks / their mappings' size.
    pub heaps: usize,
    /// Bytes of the heap chunks' mappings.
    pub heaps_mapped: usize,
    /// Resident bytes of the chunk map (process-wide).
    pub chunk_map: usize,
    /// Bytes of large mappings, live and cached (process-wide; `large`'s
    /// counter, not a residency: large blocks are not walked).
    pub large_mapped: u64,
    /// Of these, bytes of freed mappings in the large cache (resident).
    pub large_cached: u64,
}

impl Residency {
    /// Σ resident bytes of the `Active` slots.
    pub fn active(&self) -> usize {
        self.classes.iter().map(|c| c.resident).sum()
    }

    /// Σ resident bytes of every region measured by `mincore`.
    pub fn total(&self) -> usize {
        self.headers
            + self.active()
            + self.empty
            + self.unused
            + self.node_pool
            + self.heaps
            + self.chunk_map
    }
}

impl fmt::Display for Residency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let k = |b: usize| b as f64 / 1024.0;
        writeln!(
            f,
            "residency: {:.0} KiB in {} SuperSlabs + pools (headers {:.0}, active slots {:.0}, empty {:.0}, unused {:.0}, node pool {:.0} of {:.0}, heaps {:.0} of {:.0}, chunk map {:.0}); large mapped {:.0} KiB, of which cached {:.0}",
            k(self.total()),
            self.superslabs,
            k(self.headers),
            k(self.active()),
            k(self.empty),
            k(self.unused),
            k(self.node_pool),
            k(self.node_pool_mapped),
            k(self.heaps),
            k(self.heaps_mapped),
            k(self.chunk_map),
            self.large_mapped as f64 / 1024.0,
            self.large_cached as f64 / 1024.0
        )?;
        for (c, r) in self.classes.iter().enumerate() {
            if r.slots > 0 {
                writeln!(
                    f,
                    "  class {:>2} ({:>4} B): {:>3} slots, {:>7.1} KiB resident, {:>7.1} KiB used ({:.0}%)",
                    c,
                    CLASS_SIZES[c],
                    r.slots,
                    k(r.resident),
                    k(r.used_bytes),
                    100.0 * r.used_bytes as f64 / r.resident.max(1) as f64
                )?;
            }
        }
        Ok(())
    }
}

impl<B: Backend> Instance<B> {
    /// Where this instance's memory is resident (see the module doc). The
    /// chunk map and `large_mapped` are process-wide.
    pub fn residency(&self) -> Residency {
        let mut r = Residency::default();
        let (pool, pool_bytes) = self.pool.stage1.pool_mapping();
        r.node_pool = os::resident_bytes(pool, pool_bytes);
        r.node_pool_mapped = pool_bytes;
        let (map, map_len) = chunkmap::storage();
        let start = map & !(os::OS_PAGE - 1);
        r.chunk_map = os::resident_bytes(start, map + map_len - start);
        let large = crate::large::stats();
        r.large_mapped = large.mapped_bytes;
        r.large_cached = large.cached_bytes;
        self.for_each_mapping(|kind, base, bytes| match kind {
            Mapping::SuperSlab => {
                debug_assert_eq!(bytes, crate::size_class::SS_SIZE);
                r.superslabs += 1;
                r.headers += os::resident_bytes(base, HEADER_SIZE);
                // SAFETY: `for_each_mapping` holds the pool lock: the
                // SuperSlab stays mapped; its header was initialised.
                let ss = unsafe { &*(base as *const crate::superslab::SsHeader<B>) };
                for i in 0..SLOTS {
                    let (lo, hi) = (if i == 0 { HEADER_SIZE } else { 0 }, SLOT_SIZE);
                    let res = os::resident_bytes(base + i * SLOT_SIZE + lo, hi - lo);
                    let m = ss.slot(i);
                    match m.state() {
                        SlotState::Active(c) => {
                            let bs = CLASS_SIZES[c as usize] as usize;
                            let c = &mut r.classes[c as usize];
                            c.slots += 1;
                            c.resident += res;
                            c.used_bytes +=
                                m.used.load(crate::sync::Ordering::Relaxed) as usize * bs;
                        }
                        SlotState::Unused => r.unused += res,
                        _ => r.empty += res,
                    }
                }
            }
            Mapping::Heaps => {
                r.heaps += os::resident_bytes(base, bytes);
                r.heaps_mapped += bytes;
            }
        });
        r
    }
}

pub(crate) use crate::instance::Mapping;

/// The residency of the process-wide instance (`None` before its first use).
pub fn residency() -> Option<Residency> {
    Some(crate::global::instance()?.residency())
}
