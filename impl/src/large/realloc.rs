//! `realloc` of a large block: in place (shrink by `munmap` of the tail,
//! growth into the mapping's slack), by `mremap`, or by allocate, copy and
//! free.

use super::policy::{class_ceil, Plan, CLASS_PAGES, SHRINK_MIN_BYTES};
use super::stats::bump;
use super::{check, header_of, init_header, invalid, register, unregister, Header, Large, FREE};
use crate::os::{self, OS_PAGE};
use core::ptr::{self, NonNull};
use core::sync::atomic::Ordering;

impl Large {
    /// Resizes the block at `ptr` to `new_size` bytes aligned to `align`,
    /// keeping the contents up to the smaller of the old usable size and
    /// `new_size`. Null on failure, with the old block intact.
    ///
    /// # Safety
    /// `ptr` is a live block of this instance, not used afterwards unless
    /// null is returned.
    pub unsafe fn realloc(&self, ptr: *mut u8, new_size: usize, align: usize) -> *mut u8 {
        let h = match check(ptr) {
            Ok(h) => h,
            Err(e) => invalid("realloc", ptr, e),
        };
        let align = align.max(1);
        if !align.is_power_of_two() {
            return ptr::null_mut();
        }
        let user = ptr as usize;
        // SAFETY: a live header, ours (contract).
        let (base, map_size, map_align) = unsafe { ((*h).base, (*h).map_size, (*h).map_align) };
        let usable = base as usize + map_size - user;
        let Some(new_data) = os::round_up(new_size.max(1), OS_PAGE) else {
            return ptr::null_mut();
        };
        let aligned = user % align == 0;
        let remappable = map_align == OS_PAGE && align <= OS_PAGE;

        if aligned && new_size <= usable {
            // What a fresh block of `new_size` would hold.
            let data = if remappable {
                class_ceil(new_data / OS_PAGE).map_or(new_data, |c| CLASS_PAGES[c] * OS_PAGE)
            } else {
                new_data
            }
            .min(usable);
            let tail = usable - data;
            // SAFETY: a live header, ours.
            let shrink = new_size < unsafe { (*h).size };
            if shrink && (tail >= SHRINK_MIN_BYTES || (tail > 0 && tail * 2 >= usable)) {
                if remappable {
                    // Give the tail back in place; where the OS layer cannot
                    // (Miri's twin), by `mremap`, which may move. A refusal
                    // keeps the block as it is.
                    // SAFETY: the block is live and ours; `data + OS_PAGE`
                    // is a page multiple below its mapping size.
                    if unsafe { self.trim(h, data + OS_PAGE, new_size) } {
                        return ptr;
                    }
                    // SAFETY: as above; `trim` left the block untouched.
                    if let Some(p) = unsafe { self.remap(h, data + OS_PAGE, new_size) } {
                        return p;
                    }
                } else if let Some(p) = self.move_block(h, ptr, usable, new_size, align) {
                    return p;
                }
            }
            // SAFETY: a live header, ours.
            unsafe { (*h).size = new_size };
            bump(&self.counters.reallocs_in_place);
            return ptr;
        }
        if aligned && remappable {
            let class = class_ceil(new_data / OS_PAGE);
            // A cached mapping is resident: moving into it by copy touches
            // no fresh page, where growth by `mremap` hands out zero pages
            // that fault on first touch (a program growing buffers of
            // 8 KiB–1 MiB, like python3, paid ~2,000 faults per replay).
            if let Some(q) = class.and_then(|c| self.alloc_cached(c, new_size, false)) {
                return self.move_into(h, ptr, usable, new_size, q);
            }
            let data = class.map_or(new_data, |c| CLASS_PAGES[c] * OS_PAGE);
            if let Some(new_map) = data.checked_add(OS_PAGE) {
                // SAFETY: the block is live and ours.
                if let Some(p) = unsafe { self.remap(h, new_map, new_size) } {
                    return p;
                }
            }
        }
        self.move_block(h, ptr, usable, new_size, align)
            .unwrap_or(ptr::null_mut())
    }

    /// Unmaps the tail of the page-aligned block of `h` beyond `new_map`
    /// bytes, in place; `false` (block untouched) when the OS layer cannot.
    ///
    /// # Safety
    /// `h` is a live block of this instance with `map_align == OS_PAGE`, and
    /// `new_map` is a multiple of `OS_PAGE` in `OS_PAGE * 2..=map_size`.
    unsafe fn trim(&self, h: *mut Header, new_map: usize, new_size: usize) -> bool {
        // SAFETY: live header (contract).
        let (base, map_size) = unsafe { ((*h).base, (*h).map_size) };
        debug_assert!(new_map > OS_PAGE && new_map <= map_size);
        // SAFETY: a mapping's base is not null; `os::trim`'s contract holds
        // (a live `OS_PAGE`-aligned mapping, ours; the user's data ends
        // below `base + new_map`).
        if !unsafe { os::trim(NonNull::new_unchecked(base), map_size, new_map) } {
            return false;
        }
        bump(&self.counters.munmap_calls);
        self.sub_mapped(map_size - new_map);
        // SAFETY: live header, ours.
        unsafe {
            (*h).map_size = new_map;
            (*h).size = new_size;
        }
        bump(&self.counters.reallocs_in_place);
        true
    }

    /// `mremap`s the page-aligned block of `h` to `new_map` bytes and fixes
    /// header and chunk map; `None` (block untouched) when the OS refuses.
    ///
    /// # Safety
    /// `h` is a live block of this instance with `map_align == OS_PAGE`.
    unsafe fn remap(&self, h: *mut Header, new_map: usize, new_size: usize) -> Option<*mut u8> {
        // SAFETY: live header (contract).
        let (base, map_size) = unsafe { ((*h).base, (*h).map_size) };
        let old_user = base.wrapping_add(OS_PAGE);
        // SAFETY: a mapping's base is not null; `os::remap`'s contract holds
        // (a live mapping made with `OS_PAGE` alignment, ours).
        let nb = unsafe { os::remap(NonNull::new_unchecked(base), map_size, new_map) }?;
        bump(&self.counters.mremap_calls);
        if new_map >= map_size {
            self.add_mapped(new_map - map_size);
        } else {
            self.sub_mapped(map_size - new_map);
        }
        let new_user = nb.as_ptr().wrapping_add(OS_PAGE);
        if new_user != old_user {
            bump(&self.counters.reallocs_moved);
            if !register(new_user as usize) {
                // The new chunk is full of large blocks: copy once more, into
                // a mapping the chunk map can count.
                let plan = Plan {
                    map_size: new_map,
                    map_align: OS_PAGE,
                    user_offset: OS_PAGE,
                    class: None,
                };
                let Some(user) = self.map_fresh(&plan) else {
                    // The old mapping is gone and the new one cannot be
                    // registered: nothing correct is left to return.
                    crate::fatal!("realloc(): out of memory while moving block {:p}", old_user);
                };
                // SAFETY: both mappings are ours; `new_map` bytes each; the
                // header page travels with the data.
                unsafe {
                    ptr::copy_nonoverlapping(nb.as_ptr(), user.wrapping_sub(OS_PAGE), new_map);
                    self.unmap(nb, new_map, OS_PAGE);
                }
                unregister(old_user as usize);
                // SAFETY: the copied header is ours.
                unsafe {
                    init_header(
                        header_of(user),
                        user,
                        user.wrapping_sub(OS_PAGE),
                        new_map,
                        OS_PAGE,
                        new_size,
                    )
                };
                return Some(user);
            }
            unregister(old_user as usize);
        } else {
            bump(&self.counters.reallocs_in_place);
        }
        // SAFETY: the header moved with the mapping and is ours.
        unsafe {
            init_header(
                header_of(new_user),
                new_user,
                nb.as_ptr(),
                new_map,
                OS_PAGE,
                new_size,
            )
        };
        Some(new_user)
    }

    /// Allocates `new_size` bytes at `align`, copies, frees the old block.
    fn move_block(
        &self,
        h: *mut Header,
        user: *mut u8,
        usable: usize,
        new_size: usize,
        align: usize,
    ) -> Option<*mut u8> {
        let q = self.alloc(new_size, align, false);
        if q.is_null() {
            return None;
        }
        Some(self.move_into(h, user, usable, new_size, q))
    }

    /// Copies the old block (`h`, `user`, `usable` bytes) into the new live
    /// block `q` of `new_size` bytes and frees the old one; returns `q`.
    fn move_into(
        &self,
        h: *mut Header,
        user: *mut u8,
        usable: usize,
        new_size: usize,
        q: *mut u8,
    ) -> *mut u8 {
        // SAFETY: both blocks are live and distinct; `usable` and `new_size`
        // bound their lengths.
        unsafe { ptr::copy_nonoverlapping(user, q, usable.min(new_size)) };
        // SAFETY: `h` is the live header of the old block (checked by the
        // caller); claim it, uncount it and let it go.
        unsafe {
            (*h).state.store(FREE, Ordering::Release);
            unregister(user as usize);
            self.retire(h, self.now());
        }
        // The old block is released: `allocs - frees` stays the live count.
        bump(&self.counters.frees);
        bump(&self.counters.reallocs_moved);
        q
    }
}
