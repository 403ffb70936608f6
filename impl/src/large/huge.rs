//! Huge requests (data above [`CACHE_MAX_PAGES`](super::CACHE_MAX_PAGES),
//! alignment ≤ 4 KiB) served from a cached huge mapping: as it is, grown by
//! `mremap` (only the new pages are fresh) or with its tail given back
//! (see `policy::huge_fit`). The pages it keeps are resident, so a program
//! that cycles through a working set of big buffers does not fault them in
//! again on every allocation.

use core::ptr::{self, NonNull};

use super::policy::huge_keeps;
use super::stats::bump;
use super::{header_of, init_header, register, Large};
use crate::os::{self, OS_PAGE};

impl Large {
    /// A block of `size` bytes in a mapping of `want` bytes (header page
    /// included, a multiple of `OS_PAGE`) made from a cached huge mapping;
    /// `None` when the cache has none or the OS refuses the fit (the
    /// mapping is then unmapped and the caller maps a fresh one).
    pub(super) fn alloc_huge(&self, want: usize, size: usize, zeroed: bool) -> Option<*mut u8> {
        debug_assert!(want % OS_PAGE == 0 && size <= want - OS_PAGE);
        let h = self.cache_take_huge(want)?;
        // SAFETY: a cached mapping is mapped, made with `OS_PAGE` alignment
        // (only those are cached) and now ours alone.
        let (base, map_size) = unsafe { ((*h).base, (*h).map_size) };
        // SAFETY: a mapping's base is never null.
        let base = unsafe { NonNull::new_unchecked(base) };
        // Bytes of user data that may hold an earlier block's contents.
        let used_before = map_size - OS_PAGE;
        let (base, map_size) = if map_size < want {
            // SAFETY: the cached mapping is ours and unused; `os::remap`'s
            // contract (a live `OS_PAGE`-aligned mapping) holds.
            match unsafe { os::remap(base, map_size, want) } {
                Some(nb) => {
                    bump(&self.counters.mremap_calls);
                    self.add_mapped(want - map_size);
                    (nb, want)
                }
                None => {
                    // SAFETY: ours, unused, not counted in the chunk map.
                    unsafe { self.unmap(base, map_size, OS_PAGE) };
                    return None;
                }
            }
        } else if !huge_keeps(want, map_size)
            // SAFETY: ours and unused; nothing lives in the tail.
            && unsafe { os::trim(base, map_size, want) }
        {
            bump(&self.counters.munmap_calls);
            self.sub_mapped(map_size - want);
            (base, want)
        } else {
            (base, map_size)
        };
        let user = base.as_ptr().wrapping_add(OS_PAGE);
        if !register(user as usize) {
            // Its chunk is full of large blocks: let it go.
            // SAFETY: ours alone, not counted in the chunk map.
            unsafe { self.unmap(base, map_size, OS_PAGE) };
            return None;
        }
        // SAFETY: the header page and `map_size - OS_PAGE ≥ size` data bytes
        // are ours; pages past `used_before` came fresh from `mremap`, zero.
        unsafe {
            init_header(
                header_of(user),
                user,
                base.as_ptr(),
                map_size,
                OS_PAGE,
                size,
            );
            if zeroed {
                ptr::write_bytes(user, 0, size.min(used_before));
            }
        }
        bump(&self.counters.allocs);
        bump(&self.counters.cache_hits);
        Some(user)
    }
}
