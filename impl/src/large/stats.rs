//! Statistics of the large-block layer: the public snapshot and the relaxed
//! counters behind it.

use super::Large;
use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};

/// Statistics of the large-block layer (a snapshot; counters are relaxed).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LargeStats {
    /// Blocks handed out (by `alloc`, and by a `realloc` that moves by copy).
    /// `allocs - frees` = live blocks.
    pub allocs: u64,
    /// Of these, served from the cache.
    pub cache_hits: u64,
    /// Blocks released (by `free`, and the old block of a `realloc` that
    /// moves by copy).
    pub frees: u64,
    /// `realloc`s that kept the user pointer (including tail shrinks).
    pub reallocs_in_place: u64,
    /// `realloc`s that moved the block (by `mremap` or by copy).
    pub reallocs_moved: u64,
    /// Bytes of large mappings now (live and cached).
    pub mapped_bytes: u64,
    /// Highest `mapped_bytes` seen.
    pub peak_mapped_bytes: u64,
    /// Bytes of mappings in the cache now.
    pub cached_bytes: u64,
    /// Mappings unmapped by the purge (delay or budget) or `collect`.
    pub purged: u64,
    /// `mmap` calls (`os::map`).
    pub mmap_calls: u64,
    /// `munmap` calls (`os::unmap`).
    pub munmap_calls: u64,
    /// `mremap` calls (`os::remap`).
    pub mremap_calls: u64,
}

impl LargeStats {
    /// Writes the statistics as a few lines (for `HAKMEM_STATS=1`).
    pub fn report(&self, w: &mut dyn fmt::Write) -> fmt::Result {
        writeln!(
            w,
            "large: allocs {} (cache hits {}), frees {}, reallocs in place {} / moved {}",
            self.allocs, self.cache_hits, self.frees, self.reallocs_in_place, self.reallocs_moved
        )?;
        writeln!(
            w,
            "large: mapped {} B (peak {} B), cached {} B, purged {}; mmap {}, munmap {}, mremap {}",
            self.mapped_bytes,
            self.peak_mapped_bytes,
            self.cached_bytes,
            self.purged,
            self.mmap_calls,
            self.munmap_calls,
            self.mremap_calls
        )
    }
}

#[derive(Default)]
pub(super) struct Counters {
    pub(super) allocs: AtomicU64,
    pub(super) cache_hits: AtomicU64,
    pub(super) frees: AtomicU64,
    pub(super) reallocs_in_place: AtomicU64,
    pub(super) reallocs_moved: AtomicU64,
    pub(super) mapped_bytes: AtomicU64,
    pub(super) peak_mapped_bytes: AtomicU64,
    pub(super) cached_bytes: AtomicU64,
    pub(super) purged: AtomicU64,
    pub(super) mmap_calls: AtomicU64,
    pub(super) munmap_calls: AtomicU64,
    pub(super) mremap_calls: AtomicU64,
}

#[inline]
pub(super) fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl Large {
    /// A snapshot of the counters.
    pub fn stats(&self) -> LargeStats {
        let c = &self.counters;
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        LargeStats {
            allocs: r(&c.allocs),
            cache_hits: r(&c.cache_hits),
            frees: r(&c.frees),
            reallocs_in_place: r(&c.reallocs_in_place),
            reallocs_moved: r(&c.reallocs_moved),
            mapped_bytes: r(&c.mapped_bytes),
            peak_mapped_bytes: r(&c.peak_mapped_bytes),
            cached_bytes: r(&c.cached_bytes),
            purged: r(&c.purged),
            mmap_calls: r(&c.mmap_calls),
            munmap_calls: r(&c.munmap_calls),
            mremap_calls: r(&c.mremap_calls),
        }
    }
}
