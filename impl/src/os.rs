//! The OS layer: every request for address space goes through here.
//!
//! Besides the C ABI shim this is the only module that calls libc. Under Miri,
//! which does not emulate `mmap`, `madvise` or `mremap`, the same contract is
//! served by `std::alloc::System` so that the unit tests above this layer run
//! under Miri unchanged.
//!
//! Contract: [`map`] returns zeroed, readable and writable memory aligned to
//! `align`, or `None`; a mapping is given back with [`unmap`] with the same
//! `size` and `align`; [`decommit`] returns the physical memory of a range while
//! keeping the range mapped (it reads as zero afterwards).

use core::ptr::NonNull;

/// The OS page size assumed by the allocator (4 KiB on Linux x86-64 and on the
/// common aarch64 kernels; checked at start-up by [`page_size_ok`]).
pub const OS_PAGE_SHIFT: u32 = 12;
/// `1 << OS_PAGE_SHIFT` = 4 KiB.
pub const OS_PAGE: usize = 1 << OS_PAGE_SHIFT;

/// Rounds `n` up to a multiple of `align` (a power of two); `None` on overflow.
#[inline]
pub const fn round_up(n: usize, align: usize) -> Option<usize> {
    debug_assert!(align.is_power_of_two());
    match n.checked_add(align - 1) {
        Some(v) => Some(v & !(align - 1)),
        None => None,
    }
}

/// The running kernel's page size (`sysconf(_SC_PAGESIZE)`; [`OS_PAGE`]
/// under Miri). hakmem needs it to be at most [`OS_PAGE`]: the large-block
/// header page, `madvise` of slot 0's area and `mincore` checks are 4 KiB
/// granular. aarch64 kernels built for 16 or 64 KiB pages are refused at
/// start-up with a message (`global::init_slow`), never run wrong.
pub fn page_size() -> usize {
    #[cfg(not(miri))]
    {
        // SAFETY: sysconf has no memory-safety preconditions.
        let ps = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        if ps > 0 {
            ps as usize
        } else {
            0
        }
    }
    #[cfg(miri)]
    {
        OS_PAGE
    }
}

/// Whether [`page_size`] is one hakmem supports (non-zero, at most [`OS_PAGE`]).
pub fn page_size_ok() -> bool {
    let ps = page_size();
    ps > 0 && ps <= OS_PAGE
}

/// Maps `size` bytes (a multiple of [`OS_PAGE`]) of zeroed memory aligned to
/// `align` (a power of two, at least [`OS_PAGE`]). `None` when the OS refuses.
pub fn map(size: usize, align: usize) -> Option<NonNull<u8>> {
    debug_assert!(size > 0 && size % OS_PAGE == 0);
    debug_assert!(align.is_power_of_two() && align >= OS_PAGE);
    let p = imp::map(size, align)?;
    // Metadata inside a mapping (SuperSlab and large-block headers) is later
    // reached from user pointers through this provenance (no-op in code).
    let _ = p.as_ptr().expose_provenance();
    Some(p)
}

/// Gives a mapping back to the OS.
///
/// # Safety
/// `ptr`, `size` and `align` are exactly those of one live [`map`] (or of the
/// result of [`remap`]), and nothing uses the memory afterwards.
pub unsafe fn unmap(ptr: NonNull<u8>, size: usize, align: usize) {
    // SAFETY: forwarded contract.
    unsafe { imp::unmap(ptr, size, align) }
}

/// Returns the physical memory behind `[ptr, ptr + size)` to the OS; the range
/// stays mapped and reads as zero afterwards.
///
/// # Safety
/// The range is page-aligned, inside one live mapping, and no one reads or
/// writes it concurrently.
pub unsafe fn decommit(ptr: NonNull<u8>, size: usize) {
    debug_assert!(ptr.as_ptr() as usize % OS_PAGE == 0 && size % OS_PAGE == 0);
    // SAFETY: forwarded contract.
    unsafe { imp::decommit(ptr, size) }
}

/// Grows or shrinks a mapping made with `align == OS_PAGE`, moving it if
/// needed; the contents up to the smaller size are kept. `None` when the OS
/// refuses (the old mapping is then untouched).
///
/// # Safety
/// `ptr`/`old_size` are one live [`map`] with `align == OS_PAGE`; on `Some`
/// the old mapping is gone.
pub unsafe fn remap(ptr: NonNull<u8>, old_size: usize, new_size: usize) -> Option<NonNull<u8>> {
    debug_assert!(old_size % OS_PAGE == 0 && new_size % OS_PAGE == 0 && new_size > 0);
    // SAFETY: forwarded contract.
    let p = unsafe { imp::remap(ptr, old_size, new_size) }?;
    let _ = p.as_ptr().expose_provenance();
    Some(p)
}

/// Gives the tail `[ptr + new_size, ptr + old_size)` of a mapping made with
/// `align == OS_PAGE` back to the OS, keeping the head where it is (a shrink
/// never moves, unlike `mremap`, which may under emulators). `false` when
/// the tail cannot be given back separately (Miri's twin); the mapping is
/// then untouched.
///
/// # Safety
/// `ptr`/`old_size` are one live [`map`] with `align == OS_PAGE` (or the
/// result of [`remap`]) and nothing uses the tail afterwards; on `true` the
/// mapping is `ptr`/`new_size` from then on.
pub unsafe fn trim(ptr: NonNull<u8>, old_size: usize, new_size: usize) -> bool {
    debug_assert!(old_size % OS_PAGE == 0 && new_size % OS_PAGE == 0);
    debug_assert!(0 < new_size && new_size <= old_size);
    // SAFETY: forwarded contract.
    unsafe { imp::trim(ptr, old_size, new_size) }
}

/// Whether the OS page holding `addr` is mapped (readable or not: a
/// `PROT_NONE` page counts as mapped). One `mincore` call; used to check a
/// pointer that is not a live large block before its header is read, so
/// that a double free of an unmapped large block reports instead of
/// faulting (a live block needs no call: `large`'s live set). Always `true`
/// under Miri.
pub fn is_mapped(addr: usize) -> bool {
    imp::is_mapped(addr & !(OS_PAGE - 1))
}

/// How many of the OS pages of `[addr, addr + len)` are resident (one
/// `mincore` per 2 MiB; `addr` page-aligned, the range mapped). For the
/// residency diagnostic only. Always 0 under Miri.
pub fn resident_bytes(addr: usize, len: usize) -> usize {
    debug_assert_eq!(addr % OS_PAGE, 0);
    imp::resident_pages(addr, len) * OS_PAGE
}

/// Milliseconds of a monotonic clock (`CLOCK_MONOTONIC`), for purge delays.
pub fn monotonic_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    debug_assert_eq!(rc, 0);
    (ts.tv_sec as u64)
        .wrapping_mul(1000)
        .wrapping_add(ts.tv_nsec as u64 / 1_000_000)
}

#[cfg(not(miri))]
mod imp {
    use super::OS_PAGE;
    use core::ptr::{null_mut, NonNull};

    fn mmap_anon(size: usize) -> Option<NonNull<u8>> {
        // SAFETY: an anonymous private mapping at an address the kernel
        // chooses touches no existing memory.
        let p = unsafe {
            libc::mmap(
                null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            None
        } else {
            NonNull::new(p.cast())
        }
    }

    fn munmap_raw(addr: usize, size: usize) {
        if size == 0 {
            return;
        }
        // SAFETY: callers pass page-aligned sub-ranges of a mapping they own.
        let rc = unsafe { libc::munmap(addr as *mut libc::c_void, size) };
        debug_assert_eq!(rc, 0, "munmap failed");
    }

    pub fn map(size: usize, align: usize) -> Option<NonNull<u8>> {
        if align <= OS_PAGE {
            return mmap_anon(size);
        }
        // Ask for the size first: the kernel often returns an aligned range.
        let p = mmap_anon(size)?;
        if p.as_ptr() as usize % align == 0 {
            return Some(p);
        }
        munmap_raw(p.as_ptr() as usize, size);
        // Over-map by the alignment and trim both ends.
        let total = size.checked_add(align)?;
        let raw = mmap_anon(total)?.as_ptr() as usize;
        let aligned = (raw + align - 1) & !(align - 1);
        munmap_raw(raw, aligned - raw);
        munmap_raw(aligned + size, raw + total - (aligned + size));
        NonNull::new(aligned as *mut u8)
    }

    pub fn is_mapped(page: usize) -> bool {
        let mut vec = 0u8;
        // SAFETY: mincore only reads the page tables for one page and writes
        // one byte to `vec`; an unmapped page makes it fail with ENOMEM.
        let rc = unsafe { libc::mincore(page as *mut libc::c_void, OS_PAGE, &mut vec) };
        rc == 0
    }

    pub fn resident_pages(addr: usize, len: usize) -> usize {
        let mut vec = [0u8; 512];
        let mut n = 0;
        let mut a = addr;
        let end = addr + len;
        while a < end {
            let step = (end - a).min(vec.len() * OS_PAGE);
            // SAFETY: mincore only reads page tables and writes one byte per
            // page of `step` (≤ 512 pages) into `vec`; an unmapped range
            // makes it fail with ENOMEM (counted as not resident).
            let rc = unsafe { libc::mincore(a as *mut libc::c_void, step, vec.as_mut_ptr()) };
            if rc == 0 {
                let pages = step.div_ceil(OS_PAGE);
                n += vec[..pages].iter().filter(|&&b| b & 1 != 0).count();
            }
            a += step;
        }
        n
    }

    pub unsafe fn unmap(ptr: NonNull<u8>, size: usize, _align: usize) {
        munmap_raw(ptr.as_ptr() as usize, size);
    }

    pub unsafe fn trim(ptr: NonNull<u8>, old_size: usize, new_size: usize) -> bool {
        // A tail `munmap` of a private anonymous mapping splits nothing off
        // the head, so it cannot fail for lack of mapping slots.
        munmap_raw(ptr.as_ptr() as usize + new_size, old_size - new_size);
        true
    }

    pub unsafe fn decommit(ptr: NonNull<u8>, size: usize) {
        // SAFETY: the caller owns the range; MADV_DONTNEED on a private
        // anonymous mapping makes it read as zero afterwards.
        let rc = unsafe { libc::madvise(ptr.as_ptr().cast(), size, libc::MADV_DONTNEED) };
        debug_assert_eq!(rc, 0, "madvise failed");
    }

    pub unsafe fn remap(ptr: NonNull<u8>, old_size: usize, new_size: usize) -> Option<NonNull<u8>> {
        // SAFETY: the caller owns the mapping; MREMAP_MAYMOVE keeps the
        // contents and leaves the old mapping intact on failure.
        let p = unsafe {
            libc::mremap(
                ptr.as_ptr().cast(),
                old_size,
                new_size,
                libc::MREMAP_MAYMOVE,
            )
        };
        if p == libc::MAP_FAILED {
            None
        } else {
            NonNull::new(p.cast())
        }
    }
}

#[cfg(miri)]
mod imp {
    use core::ptr::NonNull;
    use std::alloc::{GlobalAlloc, Layout, System};

    pub fn map(size: usize, align: usize) -> Option<NonNull<u8>> {
        let layout = Layout::from_size_align(size, align).ok()?;
        // SAFETY: the layout has a non-zero size.
        NonNull::new(unsafe { System.alloc_zeroed(layout) })
    }

    pub fn is_mapped(_page: usize) -> bool {
        true
    }

    pub fn resident_pages(_addr: usize, _len: usize) -> usize {
        0
    }

    pub unsafe fn unmap(ptr: NonNull<u8>, size: usize, align: usize) {
        // SAFETY: same layout as the matching `map`.
        unsafe { System.dealloc(ptr.as_ptr(), Layout::from_size_align_unchecked(size, align)) }
    }

    pub unsafe fn trim(_ptr: NonNull<u8>, _old_size: usize, _new_size: usize) -> bool {
        // `System` cannot give back part of an allocation.
        false
    }

    pub unsafe fn decommit(ptr: NonNull<u8>, size: usize) {
        // SAFETY: the caller owns the range exclusively.
        unsafe { ptr.as_ptr().write_bytes(0, size) }
    }

    pub unsafe fn remap(ptr: NonNull<u8>, old_size: usize, new_size: usize) -> Option<NonNull<u8>> {
        // SAFETY: same layout as the matching `map` (page alignment).
        let p = unsafe {
            System.realloc(
                ptr.as_ptr(),
                Layout::from_size_align_unchecked(old_size, super::OS_PAGE),
                new_size,
            )
        };
        let p = NonNull::new(p)?;
        if new_size > old_size {
            // SAFETY: the grown tail belongs to the new allocation.
            unsafe { p.as_ptr().add(old_size).write_bytes(0, new_size - old_size) }
        }
        Some(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_is_aligned_zeroed_and_writable() {
        for &(size, align) in &[
            (OS_PAGE, OS_PAGE),
            (8 * OS_PAGE, 1 << 16),
            (1 << 21, 1 << 21),
        ] {
            let p = map(size, align).expect("map");
            assert_eq!(p.as_ptr() as usize % align, 0);
            // SAFETY: fresh mapping of `size` bytes.
            let s = unsafe { core::slice::from_raw_parts_mut(p.as_ptr(), size) };
            assert!(s.iter().step_by(977).all(|&b| b == 0));
            s[size - 1] = 7;
            // SAFETY: the mapping made above.
            unsafe { unmap(p, size, align) };
        }
    }

    #[test]
    fn decommit_reads_zero() {
        let p = map(4 * OS_PAGE, OS_PAGE).unwrap();
        // SAFETY: fresh mapping, owned here.
        unsafe {
            p.as_ptr().write_bytes(0xAB, 4 * OS_PAGE);
            decommit(NonNull::new_unchecked(p.as_ptr().add(OS_PAGE)), 2 * OS_PAGE);
            assert_eq!(*p.as_ptr(), 0xAB);
            assert_eq!(*p.as_ptr().add(OS_PAGE), 0);
            assert_eq!(*p.as_ptr().add(3 * OS_PAGE - 1), 0);
            assert_eq!(*p.as_ptr().add(3 * OS_PAGE), 0xAB);
            unmap(p, 4 * OS_PAGE, OS_PAGE);
        }
    }

    #[test]
    fn remap_keeps_contents() {
        let p = map(2 * OS_PAGE, OS_PAGE).unwrap();
        // SAFETY: the mapping is owned here; sizes match the mappings.
        unsafe {
            p.as_ptr().write_bytes(5, 2 * OS_PAGE);
            let q = remap(p, 2 * OS_PAGE, 16 * OS_PAGE).unwrap();
            assert_eq!(*q.as_ptr().add(2 * OS_PAGE - 1), 5);
            assert_eq!(*q.as_ptr().add(16 * OS_PAGE - 1), 0);
            let r = remap(q, 16 * OS_PAGE, OS_PAGE).unwrap();
            assert_eq!(*r.as_ptr(), 5);
            unmap(r, OS_PAGE, OS_PAGE);
        }
    }

    /// (Miri has no mincore: `is_mapped` is always true there.) Checking a
    /// page after `unmap` would race with other tests' mappings; the null
    /// page is never mapped (`vm.mmap_min_addr`).
    #[test]
    #[cfg(not(miri))]
    fn is_mapped_tells_mapped_from_unmapped() {
        let p = map(2 * OS_PAGE, OS_PAGE).unwrap();
        let a = p.as_ptr() as usize;
        assert!(is_mapped(a) && is_mapped(a + OS_PAGE + 5));
        assert!(!is_mapped(0) && !is_mapped(OS_PAGE - 1));
        // SAFETY: the mapping made above, unused afterwards.
        unsafe { unmap(p, 2 * OS_PAGE, OS_PAGE) };
    }

    #[test]
    fn monotonic_ms_does_not_go_back() {
        let a = monotonic_ms();
        assert!(monotonic_ms() >= a);
    }

    #[test]
    fn round_up_overflow() {
        assert_eq!(round_up(1, 16), Some(16));
        assert_eq!(round_up(usize::MAX, 16), None);
    }
}
