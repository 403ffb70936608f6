//! Size policy of large blocks: which requests go through the cache (the
//! medium ones), the cache classes (4 per doubling), and where a new
//! block's mapping and user pointer go (`Plan`).

use crate::os::{self, OS_PAGE};

/// Largest data size, in OS pages, that goes through the cache (1 MiB).
pub const CACHE_MAX_PAGES: usize = 256;
/// Number of cache classes: 1..=8 pages one by one, then 4 per doubling up
/// to [`CACHE_MAX_PAGES`].
pub const CACHE_CLASSES: usize = 28;
/// The data pages of each cache class.
pub const CLASS_PAGES: [usize; CACHE_CLASSES] = class_table();
const _: () = assert!(CLASS_PAGES[CACHE_CLASSES - 1] == CACHE_MAX_PAGES);

/// A cache hit may take a mapping of the request's class or of the next
/// `TAKE_SPAN - 1` classes (two doublings: up to about 4× the data pages).
pub(super) const TAKE_SPAN: usize = 9;

/// A cached huge mapping serves a request as it is when its slack (what it
/// holds beyond the request) is at most the request or this, whichever is
/// more; a bigger one gives its tail back first (`munmap`, no page fault
/// for what stays). The slack may stay resident while the block lives: a
/// bounded price for not faulting the pages in again (the preload suite's
/// 1–32 MiB blocks: 40 thousand faults instead of 420 thousand with a
/// factor of 4, and a lower peak RSS than every peer).
pub(super) const HUGE_SLACK_MAX: usize = 32 << 20;

/// Whether a cached mapping of `size ≥ want` bytes serves a request of
/// `want` mapped bytes without giving a tail back.
pub(super) fn huge_keeps(want: usize, size: usize) -> bool {
    size - want <= want.max(HUGE_SLACK_MAX)
}

/// How well a cached huge mapping of `size` bytes serves a request of
/// `want` mapped bytes; lower is better. First the mappings that serve it
/// as they are ([`huge_keeps`], least slack first), then those that grow by
/// `mremap` (fewest new pages, which fault), then those that give a tail
/// back (least tail first).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct HugeFit(u8, usize);

pub(super) fn huge_fit(want: usize, size: usize) -> HugeFit {
    if size < want {
        HugeFit(1, want - size)
    } else if huge_keeps(want, size) {
        HugeFit(0, size - want)
    } else {
        HugeFit(2, size - want)
    }
}

/// A shrink in place gives the tail back when it is at least this big (or
/// half the block).
pub(super) const SHRINK_MIN_BYTES: usize = 64 << 10;

pub(super) const fn class_table() -> [usize; CACHE_CLASSES] {
    let mut t = [0; CACHE_CLASSES];
    let mut i = 0;
    while i < 8 {
        t[i] = i + 1;
        i += 1;
    }
    let mut base = 8;
    while i < CACHE_CLASSES {
        let mut k = 1;
        while k <= 4 {
            t[i] = base + k * (base / 4);
            i += 1;
            k += 1;
        }
        base *= 2;
    }
    t
}

/// The smallest class holding `pages` data pages; `None` above the cache.
pub fn class_ceil(pages: usize) -> Option<usize> {
    (1..=CACHE_MAX_PAGES)
        .contains(&pages)
        .then(|| CLASS_PAGES.partition_point(|&c| c < pages))
}

/// The largest class a mapping of `pages` data pages can serve; `None` when
/// it is empty or above the cache.
pub fn class_floor(pages: usize) -> Option<usize> {
    (1..=CACHE_MAX_PAGES)
        .contains(&pages)
        .then(|| CLASS_PAGES.partition_point(|&c| c <= pages) - 1)
}

/// Where a new block's mapping goes: computed from size and alignment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Plan {
    pub(super) map_size: usize,
    pub(super) map_align: usize,
    /// `user - base`.
    pub(super) user_offset: usize,
    /// The cache class, for a medium block.
    pub(super) class: Option<usize>,
}

impl Plan {
    /// `None` when the sizes overflow (the request cannot be met).
    pub(super) fn new(size: usize, align: usize) -> Option<Plan> {
        let data = os::round_up(size.max(1), OS_PAGE)?;
        if align <= OS_PAGE {
            let class = class_ceil(data / OS_PAGE);
            let data = class.map_or(data, |c| CLASS_PAGES[c] * OS_PAGE);
            Some(Plan {
                map_size: data.checked_add(OS_PAGE)?,
                map_align: OS_PAGE,
                user_offset: OS_PAGE,
                class,
            })
        } else {
            Some(Plan {
                map_size: data.checked_add(align)?,
                map_align: align,
                user_offset: align,
                class: None,
            })
        }
    }
}
