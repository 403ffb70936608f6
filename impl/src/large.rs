//! Large blocks: every request the small-object core does not serve (sizes
//! above its largest class, alignments its classes cannot give).
//!
//! # Layout
//!
//! Each large block is its own OS mapping. The *user pointer* is OS-page
//! aligned and the block's [`Header`] fills the OS page just below it:
//!
//! ```text
//! align ≤ 4 KiB:  base ─┬─ header page ─┬─ data pages ... ─┐ base + map_size
//!                       │               └ user = base + 4 KiB
//! align = A > 4 KiB: base (A-aligned) ── untouched ── header page ─┬─ data ... ─┐
//!                                                                  └ user = base + A
//! ```
//!
//! The pages before the header of an over-aligned block are never touched,
//! so they cost address space only. `usable_size = base + map_size - user`.
//!
//! # Paths
//!
//! - `alloc`: a *medium* request (alignment ≤ 4 KiB, at most
//!   [`CACHE_MAX_PAGES`] data pages = 1 MiB) has its data rounded up to a
//!   cache class (4 classes per doubling) and is served from the cache of
//!   freed mappings when it can (no syscall); anything else is a fresh
//!   `mmap`, which is zero, so `alloc_zeroed` is free there. A cached
//!   mapping is zeroed with `memset` over the requested size. A *huge*
//!   request (alignment ≤ 4 KiB, more than 1 MiB of data) takes the cached
//!   huge mapping that fits it best and fits it (`huge`: as it is, grown
//!   by `mremap`, or with its tail given back).
//! - `free`: validates the pointer (below), then caches a medium mapping
//!   (budget `HAKMEM_LARGE_CACHE`) or a huge one (budget: the bytes of the
//!   other live large blocks, at least `HAKMEM_LARGE_CACHE`), or unmaps
//!   it. Cached mappings older than the purge delay
//!   (`HAKMEM_PURGE_DELAY_MS`), or beyond their budget (oldest first),
//!   are unmapped: checked on every
//!   large alloc and free, on [`maybe_purge`] (cheap; for the core's slow
//!   paths) and all at once on [`collect`].
//! - `realloc`: in place when the mapping already holds the new size (a
//!   shrink below the last requested size that frees ≥ 64 KiB or half the
//!   block gives the tail back with `munmap`, in place; a growth keeps the
//!   tail); growth of a page-aligned block by `mremap(MAYMOVE)` (no copy);
//!   otherwise allocate, copy, free.
//!
//! The cache is guarded by a spin lock (test-and-test-and-set, then
//! `sched_yield`): it is held for a few list operations, never across a
//! syscall, and never allocates. [`before_fork`]/[`after_fork_parent`]/
//! [`after_fork_child`] are the `pthread_atfork` handlers.
//!
//! # What a bad free can be told from
//!
//! [`Large::check`] runs, in order, checks that never fault:
//! 1. the pointer is OS-page aligned (else: not a block start);
//! 2. the chunk map counts a live large block in its 2 MiB chunk (else: not
//!    hakmem's — or already freed and the chunk has no other large block);
//! 3. the pointer is in the set of live large blocks ([`live`]: a hash set
//!    under a spin lock, no syscall), so its header page is mapped. Only a
//!    pointer that is not there is examined further, to name the problem:
//!    its header page must be mapped (`mincore`; else: already freed and
//!    unmapped, or not hakmem's);
//! 4. the header's magic is `MAGIC ^ user` (else: not a block start, e.g. a
//!    page-aligned pointer into the middle of a block);
//! 5. the header state is `LIVE` (else: double free of a cached block).
//!
//! The state moves `LIVE → FREE` with a compare-exchange, so of two racing
//! frees exactly one wins. Not detectable: a second free after the mapping
//! was reused for a new block at the same address (it frees the new block —
//! as with every allocator), and a pointer whose page below is mapped but
//! `PROT_NONE` (e.g. a page-aligned pointer just above a thread-stack guard
//! page in a chunk that also holds a large block): reading the header faults
//! with SIGSEGV instead of the message.
//!
//! # Files
//!
//! This file: the header, validation, alloc/free and the OS side; `policy`:
//! size policy and cache classes; `cache`: the cache and its purge; `huge`:
//! huge requests from cached mappings; `live`:
//! the live set; `realloc`; `stats`: counters; `spin`: the lock.
//!
//! # Invariants
//! - A `LIVE` header at `user - 4 KiB` ⇔ `user` was returned by `alloc` or
//!   `realloc` and not freed since; each such `user` is counted once by
//!   `chunkmap::add_large` and is in the [`live`] set (both through
//!   [`register`]/[`unregister`]).
//! - A `FREE` header ⇔ its mapping is in the cache (nowhere else: a freed
//!   mapping that is not cached is unmapped at once), linked in the bucket
//!   of [`class_floor`] of its data pages, or in the huge bucket when they
//!   are more than [`CACHE_MAX_PAGES`]; only `OS_PAGE`-aligned mappings
//!   are cached.
//! - `Cache::bytes` (medium) and `Cache::huge_bytes` = sum of `map_size`
//!   over their cached mappings; each is at most its budget as of the last
//!   free into it.
//! - `stats.mapped_bytes` = sum of `map_size` over live and cached mappings.

use core::fmt;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::chunkmap::{self, ChunkKind};
use crate::config;
use crate::os::{self, OS_PAGE};

mod cache;
mod huge;
mod live;
mod policy;
mod realloc;
mod spin;
mod stats;

use cache::{Cache, Evicted};
use policy::Plan;
pub use policy::{class_ceil, class_floor, CACHE_CLASSES, CACHE_MAX_PAGES, CLASS_PAGES};
use spin::SpinLock;
pub use stats::LargeStats;
use stats::{bump, Counters};

/// `MAGIC ^ user` marks a header; the xor ties it to its block, so a header
/// left behind by a move, or a copy of one in user data, does not match.
const MAGIC: usize = 0x4841_4b4d_4c41_5247; // "HAKMLARG"
/// Header state of a handed-out block.
const LIVE: usize = 0x4c49_5645; // "LIVE"
/// Header state of a freed block whose mapping sits in the cache.
const FREE: usize = 0x4652_4545; // "FREE"

/// The metadata of one large block, in the OS page below its user pointer.
#[repr(C)]
struct Header {
    /// `MAGIC ^ user`.
    magic: usize,
    /// `LIVE` or `FREE`.
    state: AtomicUsize,
    /// Start of the mapping.
    base: *mut u8,
    /// Length of the mapping (header page and any alignment pad included).
    map_size: usize,
    /// The alignment the mapping was made with (`os::unmap` needs it);
    /// `OS_PAGE` ⇔ `user == base + OS_PAGE`, and only then may it be cached
    /// or remapped.
    map_align: usize,
    /// The size last requested (diagnostics).
    size: usize,
    /// Cache links and time of the free; meaningful while `FREE` (under the
    /// cache lock). `next` also chains eviction lists.
    prev: *mut Header,
    next: *mut Header,
    freed_at: u64,
}
const _: () = assert!(core::mem::size_of::<Header>() <= OS_PAGE);

/// Records a new live large block at `user`: counted in the chunk map and
/// put in the [`live`] set. `false` (nothing recorded) when its chunk counts
/// [`chunkmap::LARGE_MAX`] blocks already or the set cannot grow.
fn register(user: usize) -> bool {
    if !chunkmap::add_large(user) {
        return false;
    }
    if !live::insert(user) {
        chunkmap::remove_large(user);
        return false;
    }
    true
}

/// Forgets the live large block at `user` (the inverse of [`register`]).
fn unregister(user: usize) {
    let was = live::remove(user);
    debug_assert!(was, "large block {user:#x} was not registered");
    chunkmap::remove_large(user);
}

/// The header one OS page below `user`. It is reached through the mapping's
/// provenance (exposed by `os::map`/`os::remap`), not the caller's pointer,
/// whose provenance covers only the user's object (Miri checks this; in
/// machine code both are the same address).
#[inline]
fn header_of(user: *mut u8) -> *mut Header {
    ptr::with_exposed_provenance_mut((user as usize).wrapping_sub(OS_PAGE))
}

/// Why a pointer cannot be freed (or sized) as a large block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Invalid {
    /// Not OS-page aligned: not the start of a large block.
    Misaligned,
    /// No live large block starts in its 2 MiB chunk.
    NotLarge,
    /// The page below is not mapped.
    NotMapped,
    /// The page below holds no header for this pointer.
    BadMagic,
    /// The block was freed already (its mapping is cached).
    DoubleFree,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Invalid::Misaligned => "not the start of a hakmem block: misaligned",
            Invalid::NotLarge => "not allocated by hakmem, or already freed",
            Invalid::NotMapped => "already freed, or not allocated by hakmem: no mapped header",
            Invalid::BadMagic => "not the start of a hakmem block: no block header",
            Invalid::DoubleFree => "double free",
        })
    }
}

/// One instance of the large-block layer: its cache, limits and
/// statistics. The process uses the global one behind the free functions of
/// this module; tests make their own.
pub struct Large {
    cache: SpinLock<Cache>,
    /// When the oldest cached mapping may be due (ms); `u64::MAX` when the
    /// cache is empty. May be early (then a purge finds nothing and
    /// recomputes it), never late.
    next_purge: AtomicU64,
    counters: Counters,
    /// Cache budget in bytes; `usize::MAX` = `config::get()`.
    cache_bytes: usize,
    /// Purge delay; `u64::MAX` = `config::get()`.
    purge_delay_ms: u64,
    /// A manual clock for tests; `u64::MAX` = the OS clock.
    manual_now: AtomicU64,
}

const FROM_CONFIG_BYTES: usize = usize::MAX;
const FROM_CONFIG_MS: u64 = u64::MAX;

impl Large {
    /// An instance with its own cache. `None` limits are read from
    /// [`config::get`] when first needed.
    pub const fn new(cache_bytes: Option<usize>, purge_delay_ms: Option<u64>) -> Large {
        Large {
            cache: SpinLock::new(Cache::new()),
            next_purge: AtomicU64::new(u64::MAX),
            counters: Counters {
                allocs: AtomicU64::new(0),
                cache_hits: AtomicU64::new(0),
                frees: AtomicU64::new(0),
                reallocs_in_place: AtomicU64::new(0),
                reallocs_moved: AtomicU64::new(0),
                mapped_bytes: AtomicU64::new(0),
                peak_mapped_bytes: AtomicU64::new(0),
                cached_bytes: AtomicU64::new(0),
                purged: AtomicU64::new(0),
                mmap_calls: AtomicU64::new(0),
                munmap_calls: AtomicU64::new(0),
                mremap_calls: AtomicU64::new(0),
            },
            cache_bytes: match cache_bytes {
                Some(b) if b < FROM_CONFIG_BYTES => b,
                Some(_) => FROM_CONFIG_BYTES - 1,
                None => FROM_CONFIG_BYTES,
            },
            purge_delay_ms: match purge_delay_ms {
                Some(ms) if ms < FROM_CONFIG_MS => ms,
                Some(_) => FROM_CONFIG_MS - 1,
                None => FROM_CONFIG_MS,
            },
            manual_now: AtomicU64::new(u64::MAX),
        }
    }

    fn cache_limit(&self) -> usize {
        if self.cache_bytes == FROM_CONFIG_BYTES {
            config::get().large_cache_bytes
        } else {
            self.cache_bytes
        }
    }

    fn delay(&self) -> u64 {
        if self.purge_delay_ms == FROM_CONFIG_MS {
            config::get().purge_delay_ms
        } else {
            self.purge_delay_ms
        }
    }

    fn now(&self) -> u64 {
        match self.manual_now.load(Ordering::Relaxed) {
            u64::MAX => os::monotonic_ms(),
            t => t,
        }
    }

    // ---- mapping bookkeeping ----

    fn map(&self, size: usize, align: usize) -> Option<NonNull<u8>> {
        let p = os::map(size, align)?;
        bump(&self.counters.mmap_calls);
        self.add_mapped(size);
        Some(p)
    }

    fn add_mapped(&self, size: usize) {
        let now = self
            .counters
            .mapped_bytes
            .fetch_add(size as u64, Ordering::Relaxed)
            + size as u64;
        self.counters
            .peak_mapped_bytes
            .fetch_max(now, Ordering::Relaxed);
    }

    fn sub_mapped(&self, size: usize) {
        self.counters
            .mapped_bytes
            .fetch_sub(size as u64, Ordering::Relaxed);
    }

    /// # Safety
    /// `base`/`size`/`align` are one live mapping of this instance, unused
    /// afterwards.
    unsafe fn unmap(&self, base: NonNull<u8>, size: usize, align: usize) {
        // SAFETY: contract.
        unsafe { os::unmap(base, size, align) };
        bump(&self.counters.munmap_calls);
        self.sub_mapped(size);
    }

    /// # Safety
    /// `h` is the header of a mapping this instance owns and nobody uses.
    unsafe fn unmap_header(&self, h: *mut Header) {
        // SAFETY: the header is mapped (contract); read it before unmapping.
        let (base, size, align) = unsafe { ((*h).base, (*h).map_size, (*h).map_align) };
        // SAFETY: a mapping's base is never null; contract.
        unsafe { self.unmap(NonNull::new_unchecked(base), size, align) };
    }

    /// # Safety
    /// The list's mappings are owned by the caller.
    unsafe fn unmap_all(&self, mut list: Evicted) {
        while !list.0.is_null() {
            let h = list.0;
            // SAFETY: `h` is a mapped header of the list.
            list.0 = unsafe { (*h).next };
            // SAFETY: evicted mappings belong to the caller.
            unsafe { self.unmap_header(h) };
            bump(&self.counters.purged);
        }
    }

    // ---- the API ----

    /// A block of at least `size` bytes aligned to `align` (a power of two;
    /// anything else gives null), zeroed when `zeroed`. Null when the OS
    /// refuses or the sizes overflow; never panics.
    pub fn alloc(&self, size: usize, align: usize, zeroed: bool) -> *mut u8 {
        if !align.is_power_of_two() {
            return ptr::null_mut();
        }
        self.maybe_purge();
        let Some(plan) = Plan::new(size, align) else {
            return ptr::null_mut();
        };
        if let Some(user) = plan.class.and_then(|c| self.alloc_cached(c, size, zeroed)) {
            return user;
        }
        if plan.class.is_none() && plan.map_align == OS_PAGE {
            if let Some(user) = self.alloc_huge(plan.map_size, size, zeroed) {
                return user;
            }
        }
        match self.map_fresh(&plan) {
            Some(user) => {
                // SAFETY: `map_fresh` made the mapping for `plan`.
                unsafe {
                    init_header(
                        header_of(user),
                        user,
                        user.wrapping_sub(plan.user_offset),
                        plan.map_size,
                        plan.map_align,
                        size,
                    )
                };
                bump(&self.counters.allocs);
                user
            }
            None => ptr::null_mut(),
        }
    }

    /// A block of `size` bytes from a cached mapping of `class` or a few
    /// classes above; `None` when the cache has none.
    fn alloc_cached(&self, class: usize, size: usize, zeroed: bool) -> Option<*mut u8> {
        let h = self.cache_take(class)?;
        // SAFETY: a cached mapping is mapped and now ours alone.
        let (base, map_size) = unsafe { ((*h).base, (*h).map_size) };
        let user = base.wrapping_add(OS_PAGE);
        if !register(user as usize) {
            // Its chunk is full of large blocks: let it go.
            // SAFETY: ours alone, not counted in the chunk map.
            unsafe { self.unmap_header(h) };
            return None;
        }
        // SAFETY: the header page and the data are ours; the data holds at
        // least `size` bytes (class of the bucket).
        unsafe {
            init_header(h, user, base, map_size, OS_PAGE, size);
            if zeroed {
                ptr::write_bytes(user, 0, size);
            }
        }
        bump(&self.counters.allocs);
        bump(&self.counters.cache_hits);
        Some(user)
    }

    /// Maps a fresh block for `plan` and counts its user pointer in the chunk
    /// map; returns the user pointer. A chunk can count only
    /// `chunkmap::LARGE_MAX` blocks: when the kernel places the mapping in a
    /// full chunk, the mapping is held (so the next one lands elsewhere) and
    /// the map is tried again, a few times.
    fn map_fresh(&self, plan: &Plan) -> Option<*mut u8> {
        const TRIES: usize = 4;
        let mut held: [Option<NonNull<u8>>; TRIES] = [None; TRIES];
        let mut result = None;
        for slot in held.iter_mut() {
            let Some(base) = self.map(plan.map_size, plan.map_align) else {
                break;
            };
            let user = base.as_ptr().wrapping_add(plan.user_offset);
            if register(user as usize) {
                result = Some(user);
                break;
            }
            *slot = Some(base);
        }
        for base in held.into_iter().flatten() {
            // SAFETY: held mappings are ours and unused.
            unsafe { self.unmap(base, plan.map_size, plan.map_align) };
        }
        result
    }

    /// Checks that `ptr` is a live large block of this layer (see the module
    /// docs for the checks and what they cannot tell); never faults except
    /// on a `PROT_NONE` page below a page-aligned pointer.
    pub fn check(&self, ptr: *mut u8) -> Result<(), Invalid> {
        check(ptr).map(|_| ())
    }

    /// Frees a block from [`Large::alloc`]/[`Large::realloc`]; an invalid
    /// pointer or a double free aborts with one line on stderr naming `func`,
    /// the pointer and the problem.
    ///
    /// # Safety
    /// `ptr` is not used afterwards; if it is a block of this layer, of this
    /// instance.
    pub unsafe fn free(&self, ptr: *mut u8, func: &str) {
        let user = ptr as usize;
        // Taking the block out of the live set claims it: of two racing
        // frees exactly one gets here. Anything else is examined by `check`
        // for the message (a racing double free it finds still `LIVE`).
        if user % OS_PAGE != 0 || !live::remove(user) {
            invalid(func, ptr, check(ptr).err().unwrap_or(Invalid::DoubleFree));
        }
        let h = header_of(ptr);
        // SAFETY: `user` was a live block (in the set), so its header page
        // is mapped and holds its header, and nobody else frees it now.
        let claimed = unsafe {
            ptr::addr_of!((*h).magic).read() == MAGIC ^ user
                && (*h)
                    .state
                    .compare_exchange(LIVE, FREE, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
        };
        debug_assert!(claimed, "live large block {ptr:p} with a bad header");
        if !claimed {
            invalid(func, ptr, Invalid::BadMagic);
        }
        chunkmap::remove_large(user);
        bump(&self.counters.frees);
        let now = self.now();
        // SAFETY: the block is ours (contract), FREE, uncounted.
        unsafe { self.retire(h, now) };
        if now >= self.next_purge.load(Ordering::Relaxed) {
            self.purge(now, false);
        }
    }

    /// The bytes usable at `ptr` (≥ the size requested).
    ///
    /// # Safety
    /// `ptr` is a live block of this instance (anything else aborts with a
    /// message, as far as [`Large::check`] can tell).
    pub unsafe fn usable_size(&self, ptr: *mut u8) -> usize {
        match check(ptr) {
            // SAFETY: a live header.
            Ok(h) => unsafe { (*h).base as usize + (*h).map_size - ptr as usize },
            Err(e) => invalid("malloc_usable_size", ptr, e),
        }
    }
}

impl Drop for Large {
    fn drop(&mut self) {
        self.collect();
    }
}

/// # Safety
/// `h` is the header page of a mapping owned by the caller.
unsafe fn init_header(
    h: *mut Header,
    user: *mut u8,
    base: *mut u8,
    map_size: usize,
    map_align: usize,
    size: usize,
) {
    // SAFETY: contract: the page is mapped, writable and ours.
    unsafe {
        h.write(Header {
            magic: MAGIC ^ user as usize,
            state: AtomicUsize::new(LIVE),
            base,
            map_size,
            map_align,
            size,
            prev: ptr::null_mut(),
            next: ptr::null_mut(),
            freed_at: 0,
        })
    };
}

/// The checks of the module docs; the header of a live block on success.
fn check(ptr: *mut u8) -> Result<*mut Header, Invalid> {
    let user = ptr as usize;
    if user % OS_PAGE != 0 {
        return Err(Invalid::Misaligned);
    }
    if user < OS_PAGE || chunkmap::kind(user) != ChunkKind::Large {
        return Err(Invalid::NotLarge);
    }
    let h = header_of(ptr);
    // A live block's header is mapped; for anything else ask the kernel
    // before reading (slow, but only on the way to an error message).
    if !live::contains(user) && !os::is_mapped(h as usize) {
        return Err(Invalid::NotMapped);
    }
    // Another thread may be writing the header only if the caller's pointer
    // is not its own live block (a racing double free), hence the volatile
    // read of the magic and the atomic read of the state.
    // SAFETY: the page is mapped (and, unless it is a PROT_NONE page, which
    // the module docs exclude, readable); `Header` is plain integers and an
    // atomic, valid for any bits.
    let (magic, state) = unsafe {
        (
            ptr::addr_of!((*h).magic).read_volatile(),
            (*h).state.load(Ordering::Acquire),
        )
    };
    if magic != MAGIC ^ user {
        return Err(Invalid::BadMagic);
    }
    match state {
        LIVE => Ok(h),
        FREE => Err(Invalid::DoubleFree),
        _ => Err(Invalid::BadMagic),
    }
}

#[cold]
#[inline(never)]
fn invalid(func: &str, ptr: *mut u8, e: Invalid) -> ! {
    crate::fatal!("{func}(): invalid pointer {ptr:p} ({e})")
}

// ---- the process-wide instance ----

static LARGE: Large = Large::new(None, None);

/// A large block of at least `size` bytes aligned to `align` (any power of
/// two), zeroed if `zeroed`; null when the OS refuses or `align` is not a
/// power of two. Never panics or aborts.
pub fn alloc(size: usize, align: usize, zeroed: bool) -> *mut u8 {
    LARGE.alloc(size, align, zeroed)
}

/// Frees a large block. An invalid pointer or a detectable double free
/// aborts with `hakmem: {func}(): invalid pointer 0x… (problem)` on stderr.
///
/// # Safety
/// `ptr` is not used afterwards.
pub unsafe fn free(ptr: *mut u8, func: &str) {
    // SAFETY: forwarded contract.
    unsafe { LARGE.free(ptr, func) }
}

/// Resizes a large block (see [`Large::realloc`]); null on failure with the
/// old block intact.
///
/// # Safety
/// `ptr` is a live large block; not used afterwards unless null is returned.
pub unsafe fn realloc(ptr: *mut u8, new_size: usize, align: usize) -> *mut u8 {
    // SAFETY: forwarded contract.
    unsafe { LARGE.realloc(ptr, new_size, align) }
}

/// The usable size of a large block (≥ its requested size).
///
/// # Safety
/// `ptr` is a live large block.
pub unsafe fn usable_size(ptr: *mut u8) -> usize {
    // SAFETY: forwarded contract.
    unsafe { LARGE.usable_size(ptr) }
}

/// Whether `ptr` is a live large block (`Err` says why not), without
/// aborting. For diagnostics and tests; `free` runs the same checks.
pub fn check_ptr(ptr: *mut u8) -> Result<(), Invalid> {
    LARGE.check(ptr)
}

/// Statistics of the process's large-block layer.
pub fn stats() -> LargeStats {
    LARGE.stats()
}

/// Unmaps the cached mappings whose purge delay has passed (cheap when none
/// is: one relaxed load). For the core's slow paths, so that an idle large
/// cache drains even when no large call comes.
pub fn maybe_purge() {
    LARGE.maybe_purge()
}

/// Unmaps every cached large mapping now (for `hakmem::collect`-style calls
/// and tests that measure RSS).
pub fn collect() {
    LARGE.collect()
}

/// `pthread_atfork` prepare handler: holds the cache lock across `fork`, so
/// that the child inherits a consistent cache.
pub fn before_fork() {
    LARGE.cache.acquire();
    live::before_fork();
}

/// `pthread_atfork` parent handler: releases the lock taken by
/// [`before_fork`].
pub fn after_fork_parent() {
    live::after_fork();
    LARGE.cache.release();
}

/// `pthread_atfork` child handler: the child has one thread, so the lock is
/// reset to free whoever held it in the parent.
pub fn after_fork_child() {
    live::after_fork();
    LARGE.cache.release();
}

#[cfg(test)]
mod tests;
