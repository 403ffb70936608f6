//! The cache of freed mappings: the medium ones in buckets by class under
//! the byte budget, the huge ones (data above 1 MiB) in one list under a
//! budget that follows the live large bytes; and the purge of mappings
//! older than the delay.

use super::policy::{class_floor, huge_fit, CACHE_CLASSES, CACHE_MAX_PAGES, TAKE_SPAN};
use super::{Header, Large};
use crate::os::OS_PAGE;
use core::ptr;
use core::sync::atomic::Ordering;

#[derive(Clone, Copy)]
pub(super) struct Bucket {
    /// Most recently freed.
    pub(super) head: *mut Header,
    /// Least recently freed.
    pub(super) tail: *mut Header,
}

/// The bucket of huge mappings (data above [`CACHE_MAX_PAGES`]), after the
/// medium classes.
pub(super) const HUGE: usize = CACHE_CLASSES;

/// How many huge mappings a take looks at, newest first (the list is short
/// in practice: its budget is the live large bytes).
const HUGE_SCAN: usize = 32;

/// The cache of freed mappings: per medium class, and for the huge ones
/// ([`HUGE`]), a doubly linked list through the headers, newest at the head
/// (reused first: its pages are the warmest), oldest at the tail (purged
/// first).
///
/// # Invariants
/// - `bytes` = sum of `map_size` over the medium buckets, `huge_bytes` over
///   [`HUGE`].
pub(super) struct Cache {
    pub(super) buckets: [Bucket; CACHE_CLASSES + 1],
    pub(super) bytes: usize,
    pub(super) huge_bytes: usize,
}

// SAFETY: the raw pointers are headers of mappings the cache owns; the cache
// is only reached under its lock.
unsafe impl Send for Cache {}

impl Cache {
    pub(super) const fn new() -> Self {
        Self {
            buckets: [Bucket {
                head: ptr::null_mut(),
                tail: ptr::null_mut(),
            }; CACHE_CLASSES + 1],
            bytes: 0,
            huge_bytes: 0,
        }
    }

    /// Bytes of all cached mappings.
    pub(super) fn total(&self) -> usize {
        self.bytes + self.huge_bytes
    }

    fn bytes_of(&mut self, class: usize) -> &mut usize {
        if class == HUGE {
            &mut self.huge_bytes
        } else {
            &mut self.bytes
        }
    }

    /// # Safety
    /// `h` is the header of a `FREE` mapping owned by the caller, not in the
    /// cache.
    pub(super) unsafe fn push(&mut self, class: usize, h: *mut Header) {
        let b = &mut self.buckets[class];
        // SAFETY: `h` and the bucket's headers are mapped headers owned by
        // the cache (contract).
        unsafe {
            (*h).prev = ptr::null_mut();
            (*h).next = b.head;
            if b.head.is_null() {
                b.tail = h;
            } else {
                (*b.head).prev = h;
            }
            b.head = h;
            *self.bytes_of(class) += (*h).map_size;
        }
    }

    /// # Safety
    /// `h` is in bucket `class`.
    pub(super) unsafe fn unlink(&mut self, class: usize, h: *mut Header) {
        let b = &mut self.buckets[class];
        // SAFETY: `h` and its neighbours are cached headers (contract).
        unsafe {
            if (*h).prev.is_null() {
                b.head = (*h).next;
            } else {
                (*(*h).prev).next = (*h).next;
            }
            if (*h).next.is_null() {
                b.tail = (*h).prev;
            } else {
                (*(*h).next).prev = (*h).prev;
            }
            *self.bytes_of(class) -= (*h).map_size;
            (*h).next = ptr::null_mut();
            (*h).prev = ptr::null_mut();
        }
    }

    /// Takes the newest mapping of `class`.
    pub(super) fn pop(&mut self, class: usize) -> Option<*mut Header> {
        let h = self.buckets[class].head;
        if h.is_null() {
            return None;
        }
        // SAFETY: `h` is the head of bucket `class`.
        unsafe { self.unlink(class, h) };
        Some(h)
    }

    /// Takes the huge mapping that best serves a request of `want` mapped
    /// bytes (header page included), among the newest [`HUGE_SCAN`]: see
    /// [`huge_fit`].
    pub(super) fn take_huge(&mut self, want: usize) -> Option<*mut Header> {
        let mut best: Option<(*mut Header, usize)> = None;
        let mut h = self.buckets[HUGE].head;
        for _ in 0..HUGE_SCAN {
            if h.is_null() {
                break;
            }
            // SAFETY: cached headers are mapped and owned by the cache.
            let (size, next) = unsafe { ((*h).map_size, (*h).next) };
            if best.is_none_or(|(_, b)| huge_fit(want, size) < huge_fit(want, b)) {
                best = Some((h, size));
            }
            h = next;
        }
        let (h, _) = best?;
        // SAFETY: `h` is in bucket `HUGE`.
        unsafe { self.unlink(HUGE, h) };
        Some(h)
    }

    /// The least recently freed mapping over all buckets.
    pub(super) fn oldest(&self) -> Option<(usize, *mut Header)> {
        self.oldest_in(0..CACHE_CLASSES + 1)
    }

    /// The least recently freed mapping of the buckets `classes`.
    fn oldest_in(&self, classes: core::ops::Range<usize>) -> Option<(usize, *mut Header)> {
        let mut best: Option<(usize, *mut Header)> = None;
        for (c, b) in self
            .buckets
            .iter()
            .enumerate()
            .skip(classes.start)
            .take(classes.len())
        {
            if b.tail.is_null() {
                continue;
            }
            // SAFETY: cached headers are mapped and owned by the cache.
            let older = best.is_none_or(|(_, o)| unsafe { (*b.tail).freed_at < (*o).freed_at });
            if older {
                best = Some((c, b.tail));
            }
        }
        best
    }
}

/// A list of evicted mappings (chained through `next`), unmapped after the
/// lock is released.
pub(super) struct Evicted(pub(super) *mut Header);

impl Evicted {
    /// # Safety
    /// `h` was just unlinked from the cache; the list now owns its mapping.
    pub(super) unsafe fn push(&mut self, h: *mut Header) {
        // SAFETY: contract: `h` is a mapped header nobody else reaches.
        unsafe { (*h).next = self.0 };
        self.0 = h;
    }
}

impl Large {
    /// Takes a cached mapping of class `class` or one of the next
    /// `TAKE_SPAN - 1` (up to about 4× the size): its pages are resident
    /// anyway, a fresh mapping would cost a syscall and page faults, and a
    /// block that grows by `realloc` then grows in place (python's lists and
    /// dicts: the mapping freed by the last growth chain serves the next).
    pub(super) fn cache_take(&self, class: usize) -> Option<*mut Header> {
        self.take_with(|cache| {
            (class..CACHE_CLASSES.min(class + TAKE_SPAN)).find_map(|c| cache.pop(c))
        })
    }

    /// Takes the cached huge mapping that best serves `want` mapped bytes
    /// (`huge_fit`); the caller fits it to `want`.
    pub(super) fn cache_take_huge(&self, want: usize) -> Option<*mut Header> {
        self.take_with(|cache| cache.take_huge(want))
    }

    /// Runs `take` under the cache lock (not at all when the cache is
    /// empty) and republishes `cached_bytes`.
    fn take_with(
        &self,
        take: impl FnOnce(&mut Cache) -> Option<*mut Header>,
    ) -> Option<*mut Header> {
        if self.counters.cached_bytes.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let mut cache = self.cache.lock();
        let h = take(&mut cache)?;
        self.counters
            .cached_bytes
            .store(cache.total() as u64, Ordering::Relaxed);
        Some(h)
    }

    /// The budget of the huge bucket when a mapping of `freeing` bytes is
    /// freed: the bytes of the other live large blocks (at least the medium
    /// budget). A program that keeps a working set of large blocks reuses
    /// their mappings, resident, instead of mapping and faulting new ones;
    /// what it keeps cached is at most what it has live (or the medium
    /// budget), for at most the purge delay, so a huge block freed with
    /// nothing else live is unmapped at once unless it fits that budget.
    fn huge_limit(&self, freeing: usize) -> usize {
        let mapped = self.counters.mapped_bytes.load(Ordering::Relaxed) as usize;
        let cached = self.counters.cached_bytes.load(Ordering::Relaxed) as usize;
        let live_others = mapped.saturating_sub(cached).saturating_sub(freeing);
        live_others.max(self.cache_limit())
    }

    /// Caches or unmaps the mapping of a block that has just become `FREE`.
    ///
    /// # Safety
    /// `h` is the header of a block this instance owns, `FREE`, and no longer
    /// counted in the chunk map.
    pub(super) unsafe fn retire(&self, h: *mut Header, now: u64) {
        // SAFETY: `h` is a mapped header (contract).
        let (user, base, map_size, map_align) = unsafe {
            (
                h as usize + OS_PAGE,
                (*h).base,
                (*h).map_size,
                (*h).map_align,
            )
        };
        let data_pages = (base as usize + map_size - user) / OS_PAGE;
        let delay = self.delay();
        let (class, limit) = if map_align != OS_PAGE {
            (None, 0)
        } else if data_pages > CACHE_MAX_PAGES {
            (Some(HUGE), self.huge_limit(map_size))
        } else {
            (class_floor(data_pages), self.cache_limit())
        };
        let keep = class.is_some() && delay > 0 && map_size <= limit;
        if !keep {
            // SAFETY: the block is ours and freed (contract).
            unsafe { self.unmap_header(h) };
        }
        // The buckets that share the budget `limit`. The medium budget is
        // fixed: nothing to do when the block was not cached. The huge
        // bucket's follows the live bytes, which this free lowered: it is
        // brought within the new budget either way, so that a program that
        // frees all its large blocks keeps at most the medium budget.
        let (class, group) = match class {
            Some(HUGE) => (HUGE, HUGE..HUGE + 1),
            Some(c) if keep => (c, 0..CACHE_CLASSES),
            _ => return,
        };
        let mut evicted = Evicted(ptr::null_mut());
        {
            let mut cache = self.cache.lock();
            if keep {
                // SAFETY: `h` is FREE and owned by us; the cache takes it.
                unsafe {
                    (*h).freed_at = now;
                    cache.push(class, h);
                }
            }
            while *cache.bytes_of(class) > limit {
                // Oldest first; `h`, when cached, is the newest and fits the
                // budget alone, so it stays.
                let Some((c, o)) = cache.oldest_in(group.clone()) else {
                    break;
                };
                // SAFETY: `o` is in bucket `c`; once unlinked the list owns it.
                unsafe {
                    cache.unlink(c, o);
                    evicted.push(o);
                }
            }
            self.counters
                .cached_bytes
                .store(cache.total() as u64, Ordering::Relaxed);
            let due = now.saturating_add(delay);
            if keep && self.next_purge.load(Ordering::Relaxed) > due {
                self.next_purge.store(due, Ordering::Relaxed);
            }
        }
        // SAFETY: the evicted mappings are ours alone now.
        unsafe { self.unmap_all(evicted) };
    }

    /// Unmaps the cached mappings freed at least the purge delay ago (all of
    /// them with `force`).
    pub(super) fn purge(&self, now: u64, force: bool) {
        let delay = self.delay();
        let mut evicted = Evicted(ptr::null_mut());
        {
            let mut cache = self.cache.lock();
            let mut next = u64::MAX;
            while let Some((c, o)) = cache.oldest() {
                // SAFETY: cached headers are mapped.
                let due = unsafe { (*o).freed_at }.saturating_add(delay);
                if !force && due > now {
                    next = due;
                    break;
                }
                // SAFETY: `o` is in bucket `c`; once unlinked the list owns it.
                unsafe {
                    cache.unlink(c, o);
                    evicted.push(o);
                }
            }
            self.next_purge.store(next, Ordering::Relaxed);
            self.counters
                .cached_bytes
                .store(cache.total() as u64, Ordering::Relaxed);
        }
        // SAFETY: the evicted mappings are ours alone now.
        unsafe { self.unmap_all(evicted) };
    }

    /// Purges the cached mappings whose delay has passed; one clock read and
    /// one relaxed load when none is due.
    pub fn maybe_purge(&self) {
        if self.next_purge.load(Ordering::Relaxed) != u64::MAX {
            let now = self.now();
            if now >= self.next_purge.load(Ordering::Relaxed) {
                self.purge(now, false);
            }
        }
    }

    /// Unmaps every cached mapping now.
    pub fn collect(&self) {
        self.purge(self.now(), true);
    }
}
