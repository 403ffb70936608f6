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
//!   mapping is zeroed with `memset` over the requested size.
//! - `free`: validates the pointer (below), then caches a medium mapping or
//!   unmaps it. Cached mappings older than the purge delay
//!   (`HAKMEM_PURGE_DELAY_MS`), or beyond the cache budget
//!   (`HAKMEM_LARGE_CACHE`, oldest first), are unmapped: checked on every
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
//! # Invariants
//! - A `LIVE` header at `user - 4 KiB` ⇔ `user` was returned by `alloc` or
//!   `realloc` and not freed since; each such `user` is counted once by
//!   `chunkmap::add_large` and is in the [`live`] set (both through
//!   [`register`]/[`unregister`]).
//! - A `FREE` header ⇔ its mapping is in the cache (nowhere else: a freed
//!   mapping that is not cached is unmapped at once), linked in the bucket
//!   of [`class_floor`] of its data pages.
//! - `Cache::bytes` = sum of `map_size` over cached mappings ≤ the budget.
//! - `stats.mapped_bytes` = sum of `map_size` over live and cached mappings.

use core::cell::UnsafeCell;
use core::fmt;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use crate::chunkmap::{self, ChunkKind};
use crate::config;
use crate::os::{self, OS_PAGE};

mod live;

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
const TAKE_SPAN: usize = 9;

/// A shrink in place gives the tail back when it is at least this big (or
/// half the block).
const SHRINK_MIN_BYTES: usize = 64 << 10;

/// `MAGIC ^ user` marks a header; the xor ties it to its block, so a header
/// left behind by a move, or a copy of one in user data, does not match.
const MAGIC: usize = 0x4841_4b4d_4c41_5247; // "HAKMLARG"
/// Header state of a handed-out block.
const LIVE: usize = 0x4c49_5645; // "LIVE"
/// Header state of a freed block whose mapping sits in the cache.
const FREE: usize = 0x4652_4545; // "FREE"

const fn class_table() -> [usize; CACHE_CLASSES] {
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
struct Counters {
    allocs: AtomicU64,
    cache_hits: AtomicU64,
    frees: AtomicU64,
    reallocs_in_place: AtomicU64,
    reallocs_moved: AtomicU64,
    mapped_bytes: AtomicU64,
    peak_mapped_bytes: AtomicU64,
    cached_bytes: AtomicU64,
    purged: AtomicU64,
    mmap_calls: AtomicU64,
    munmap_calls: AtomicU64,
    mremap_calls: AtomicU64,
}

#[inline]
fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// A test-and-test-and-set lock that never allocates; waiters spin briefly,
/// then yield the CPU (2 cores, 8+ threads: spinning alone would starve the
/// holder).
struct SpinLock<T> {
    locked: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: `value` is only reached through a `SpinGuard`, of which at most one
// exists at a time (the lock's acquire/release order the accesses).
unsafe impl<T: Send> Sync for SpinLock<T> {}

struct SpinGuard<'a, T> {
    lock: &'a SpinLock<T>,
}

impl<T> SpinLock<T> {
    const fn new(value: T) -> Self {
        Self {
            locked: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    fn acquire(&self) {
        let mut spins = 0u32;
        loop {
            if !self.locked.load(Ordering::Relaxed)
                && self
                    .locked
                    .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                return;
            }
            if spins < 32 {
                for _ in 0..(1u32 << spins.min(5)) {
                    core::hint::spin_loop();
                }
                spins += 1;
            } else {
                std::thread::yield_now();
            }
        }
    }

    fn lock(&self) -> SpinGuard<'_, T> {
        self.acquire();
        SpinGuard { lock: self }
    }

    fn release(&self) {
        self.locked.store(false, Ordering::Release);
    }
}

impl<T> core::ops::Deref for SpinGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard holds the lock.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> core::ops::DerefMut for SpinGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard holds the lock, so this is the only reference.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for SpinGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.release();
    }
}

#[derive(Clone, Copy)]
struct Bucket {
    /// Most recently freed.
    head: *mut Header,
    /// Least recently freed.
    tail: *mut Header,
}

/// The cache of freed medium mappings: per class a doubly linked list
/// through the headers, newest at the head (reused first: its pages are the
/// warmest), oldest at the tail (purged first).
struct Cache {
    buckets: [Bucket; CACHE_CLASSES],
    bytes: usize,
}

// SAFETY: the raw pointers are headers of mappings the cache owns; the cache
// is only reached under its lock.
unsafe impl Send for Cache {}

impl Cache {
    const fn new() -> Self {
        Self {
            buckets: [Bucket {
                head: ptr::null_mut(),
                tail: ptr::null_mut(),
            }; CACHE_CLASSES],
            bytes: 0,
        }
    }

    /// # Safety
    /// `h` is the header of a `FREE` mapping owned by the caller, not in the
    /// cache.
    unsafe fn push(&mut self, class: usize, h: *mut Header) {
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
            self.bytes += (*h).map_size;
        }
    }

    /// # Safety
    /// `h` is in bucket `class`.
    unsafe fn unlink(&mut self, class: usize, h: *mut Header) {
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
            self.bytes -= (*h).map_size;
            (*h).next = ptr::null_mut();
            (*h).prev = ptr::null_mut();
        }
    }

    /// Takes the newest mapping of `class`.
    fn pop(&mut self, class: usize) -> Option<*mut Header> {
        let h = self.buckets[class].head;
        if h.is_null() {
            return None;
        }
        // SAFETY: `h` is the head of bucket `class`.
        unsafe { self.unlink(class, h) };
        Some(h)
    }

    /// The least recently freed mapping over all classes.
    fn oldest(&self) -> Option<(usize, *mut Header)> {
        let mut best: Option<(usize, *mut Header)> = None;
        for (c, b) in self.buckets.iter().enumerate() {
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
struct Evicted(*mut Header);

impl Evicted {
    /// # Safety
    /// `h` was just unlinked from the cache; the list now owns its mapping.
    unsafe fn push(&mut self, h: *mut Header) {
        // SAFETY: contract: `h` is a mapped header nobody else reaches.
        unsafe { (*h).next = self.0 };
        self.0 = h;
    }
}

/// Where a new block's mapping goes: computed from size and alignment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Plan {
    map_size: usize,
    map_align: usize,
    /// `user - base`.
    user_offset: usize,
    /// The cache class, for a medium block.
    class: Option<usize>,
}

impl Plan {
    /// `None` when the sizes overflow (the request cannot be met).
    fn new(size: usize, align: usize) -> Option<Plan> {
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

    // ---- the cache ----

    /// Takes a cached mapping of class `class` or one of the next
    /// `TAKE_SPAN - 1` (up to about 4× the size): its pages are resident
    /// anyway, a fresh mapping would cost a syscall and page faults, and a
    /// block that grows by `realloc` then grows in place (python's lists and
    /// dicts: the mapping freed by the last growth chain serves the next).
    fn cache_take(&self, class: usize) -> Option<*mut Header> {
        if self.counters.cached_bytes.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let mut cache = self.cache.lock();
        let h = (class..CACHE_CLASSES.min(class + TAKE_SPAN)).find_map(|c| cache.pop(c))?;
        self.counters
            .cached_bytes
            .store(cache.bytes as u64, Ordering::Relaxed);
        Some(h)
    }

    /// Caches or unmaps the mapping of a block that has just become `FREE`.
    ///
    /// # Safety
    /// `h` is the header of a block this instance owns, `FREE`, and no longer
    /// counted in the chunk map.
    unsafe fn retire(&self, h: *mut Header, now: u64) {
        // SAFETY: `h` is a mapped header (contract).
        let (user, base, map_size, map_align) = unsafe {
            (
                h as usize + OS_PAGE,
                (*h).base,
                (*h).map_size,
                (*h).map_align,
            )
        };
        let class = if map_align == OS_PAGE {
            class_floor((base as usize + map_size - user) / OS_PAGE)
        } else {
            None
        };
        let limit = self.cache_limit();
        let delay = self.delay();
        let class = match class {
            Some(c) if delay > 0 && map_size <= limit => c,
            _ => {
                // SAFETY: the block is ours and freed (contract).
                unsafe { self.unmap_header(h) };
                return;
            }
        };
        let mut evicted = Evicted(ptr::null_mut());
        {
            let mut cache = self.cache.lock();
            // SAFETY: `h` is FREE and owned by us; the cache takes it.
            unsafe {
                (*h).freed_at = now;
                cache.push(class, h);
            }
            while cache.bytes > limit {
                // The cache holds `h` at least, so `oldest` is `Some`; `h` is
                // the newest and fits the budget alone, so it stays.
                let Some((c, o)) = cache.oldest() else { break };
                // SAFETY: `o` is in bucket `c`; once unlinked the list owns it.
                unsafe {
                    cache.unlink(c, o);
                    evicted.push(o);
                }
            }
            self.counters
                .cached_bytes
                .store(cache.bytes as u64, Ordering::Relaxed);
            let due = now.saturating_add(delay);
            if self.next_purge.load(Ordering::Relaxed) > due {
                self.next_purge.store(due, Ordering::Relaxed);
            }
        }
        // SAFETY: the evicted mappings are ours alone now.
        unsafe { self.unmap_all(evicted) };
    }

    /// Unmaps the cached mappings freed at least the purge delay ago (all of
    /// them with `force`).
    fn purge(&self, now: u64, force: bool) {
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
                .store(cache.bytes as u64, Ordering::Relaxed);
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
