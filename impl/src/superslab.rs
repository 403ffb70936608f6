//! The SuperSlab: a 2 MiB, 2 MiB-aligned region whose header (at the start of
//! slot 0) holds the metadata of its 32 slots, so that `ptr & !(2 MiB - 1)`
//! finds the metadata of any block.
//!
//! Memory layout of one SuperSlab (see `docs/architecture.md`):
//!
//! ```text
//! base + 0       SsHeader { slots: [SlotMeta; 32], masks, counters, registry links }   ≤ 8 KiB
//! base + 8 KiB   slot 0 block area (56 KiB)
//! base + 64 KiB  slot 1 block area (64 KiB)
//! ...
//! base + 31*64K  slot 31 block area
//! ```
//!
//! A slot's shared state is one atomic word ([`SlotState`]): `Unused`,
//! `Active{class}`, `Empty{class}` (plus the transient `Purging`, an `Empty`
//! slot whose memory is being decommitted: it cannot be claimed meanwhile).
//! Claims are CASes on this word.

use crate::size_class::{HEADER_SIZE, NUM_CLASSES, SLOTS, SLOT_SHIFT};
use crate::sync::{AtomicIntOps, AtomicOps, Backend, CellOps, Ordering};
use core::ptr::{self, null_mut};

/// Kind bits of the slot state word.
const KIND_MASK: u32 = 0b11;
const KIND_UNUSED: u32 = 0;
const KIND_ACTIVE: u32 = 1;
const KIND_EMPTY: u32 = 2;
const KIND_PURGING: u32 = 3;
const CLASS_SHIFT: u32 = 2;

/// The decoded state of a slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SlotState {
    /// Never assigned, or returned by a release; claimable by stage 2.
    Unused,
    /// A page of `class`, owned by a heap (or abandoned).
    Active(u8),
    /// All blocks free; claimable by stages 0.5 and 1, for any class.
    Empty(u8),
    /// An `Empty` slot being decommitted (not claimable meanwhile).
    Purging(u8),
}

impl SlotState {
    /// The state word of this state.
    #[inline(always)]
    pub const fn word(self) -> u32 {
        match self {
            SlotState::Unused => KIND_UNUSED,
            SlotState::Active(c) => KIND_ACTIVE | (c as u32) << CLASS_SHIFT,
            SlotState::Empty(c) => KIND_EMPTY | (c as u32) << CLASS_SHIFT,
            SlotState::Purging(c) => KIND_PURGING | (c as u32) << CLASS_SHIFT,
        }
    }

    /// Decodes a state word.
    #[inline(always)]
    pub const fn from_word(w: u32) -> Self {
        let c = (w >> CLASS_SHIFT) as u8;
        match w & KIND_MASK {
            KIND_UNUSED => SlotState::Unused,
            KIND_ACTIVE => SlotState::Active(c),
            KIND_EMPTY => SlotState::Empty(c),
            _ => SlotState::Purging(c),
        }
    }
}

/// The metadata of one slot: shared atomics plus the owner-local page state.
///
/// # Invariants
/// - `owner` is non-null only while `state` is `Active` and the page is not
///   abandoned; only the owner touches `local` (hand-overs: slot-state CAS
///   on claim, abandoned-list push/swap on abandon/reclaim).
/// - `used` (shared used) is written only by the owner, at flush points;
///   `used ≤ capacity`.
/// - The remote-free head word ([`SlotMeta::remote`], see `page.rs`: a
///   block address with the `FULL`/`BUSY` marks in its low bits and the
///   list length in its top bits) is not in this struct but in the header's
///   remote words, on lines of their own ([`SsHeader::remote`]).
///
/// Cache lines (production, 128 bytes): line 0 is `local`, written by the
/// owner on every malloc/free; line 1 (`state`, `used`, `owner`, …) is
/// read-mostly — the owner's free reads `owner`, a remote freer reads
/// `owner` and `state` — and written only at claims, flushes and hand-overs.
/// Remote freers write only the separate remote words, so a remote free no
/// longer invalidates the line the owner's fast path reads (it did when
/// `remote` shared line 1 with `owner`: Larson T=2).
#[repr(C, align(64))]
pub struct SlotMeta<B: Backend> {
    /// Owner-local page state (free list, counters, list links).
    pub(crate) local: B::Cell<PageLocal<B>>,
    /// The slot state word ([`SlotState`]).
    pub(crate) state: B::AtomicU32,
    /// Shared used: the owner's `used` at its last flush.
    pub(crate) used: B::AtomicU32,
    /// The owning heap, null when none (unused, empty or abandoned).
    pub(crate) owner: B::AtomicPtr<PageOwner<B>>,
    /// Link of the per-class abandoned list.
    pub(crate) next_abandoned: B::AtomicPtr<SlotMeta<B>>,
    /// When the slot became `Empty` (instance clock, ms), for purging;
    /// `u64::MAX` once decommitted.
    pub(crate) empty_since: B::AtomicU64,
    /// Link of the class's stage-1 fallback list (under its lock).
    pub(crate) fb: B::Cell<FbLink<B>>,
}

impl<B: Backend> SlotMeta<B> {
    /// A slot in state `Unused`.
    pub fn new() -> Self {
        Self {
            local: B::Cell::new(PageLocal::new()),
            state: B::AtomicU32::new(SlotState::Unused.word()),
            used: B::AtomicU32::new(0),
            owner: B::AtomicPtr::new(null_mut()),
            next_abandoned: B::AtomicPtr::new(null_mut()),
            empty_since: B::AtomicU64::new(0),
            fb: B::Cell::new(FbLink::new()),
        }
    }

    /// The current state (Acquire).
    #[inline]
    pub fn state(&self) -> SlotState {
        SlotState::from_word(self.state.load(Ordering::Acquire))
    }

    /// Whether the slot is `Active(class)`: one load and one compare of the
    /// state word (the C `realloc` fast path).
    #[inline(always)]
    pub fn is_active(&self, class: u8) -> bool {
        self.state.load(Ordering::Acquire) == SlotState::Active(class).word()
    }

    /// The SuperSlab header this slot belongs to.
    ///
    /// Built from the address with the SuperSlab mapping's exposed
    /// provenance (exposed in `Pool::map_superslab`): a reference to one
    /// slot's metadata does not cover the rest of the SuperSlab.
    #[inline(always)]
    pub fn header(&self) -> *mut SsHeader<B> {
        let addr = self as *const Self as usize & !crate::chunkmap::CHUNK_MASK;
        ptr::with_exposed_provenance_mut(addr)
    }

    /// This slot's index in its SuperSlab.
    #[inline(always)]
    pub fn index(&self) -> usize {
        let addr = self as *const Self as usize;
        (addr & crate::chunkmap::CHUNK_MASK) / core::mem::size_of::<Self>()
    }

    /// The slot's remote-free head word (in the header's remote words, away
    /// from every slot's metadata lines). Only for slots inside a SuperSlab
    /// (never the dummy pages).
    #[inline(always)]
    pub fn remote(&self) -> &B::AtomicPtr<u8> {
        // SAFETY: every slot the protocols touch (never a dummy page) lives
        // in a SuperSlab header, mapped while its slots are used, which
        // holds one remote word per slot.
        unsafe { &(*self.header()).remote.0[self.index()] }
    }

    /// Start of this slot's block area.
    #[inline(always)]
    pub fn area(&self) -> *mut u8 {
        let idx = self.index();
        self.header()
            .cast::<u8>()
            .wrapping_add(crate::size_class::slot_area_offset(idx))
    }
}

impl<B: Backend> Default for SlotMeta<B> {
    fn default() -> Self {
        Self::new()
    }
}

/// Which owner list a page is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageList {
    /// On no list (abandoned, empty, or being moved).
    None,
    /// The heap's current page of its class.
    Current,
    /// The heap's partial list.
    Partial,
    /// The heap's full list (`in_full`).
    Full,
}

impl PageList {
    /// What a page on this list carries in `PageLocal::used` on top of its
    /// live count (see [`PageLocal::set_list`]).
    #[inline]
    pub(crate) const fn used_bias(self) -> u32 {
        match self {
            PageList::Current => CURRENT_BIAS,
            PageList::Full => IN_FULL_BIAS,
            PageList::None | PageList::Partial => 0,
        }
    }
}

/// Owner-local state of a page.
///
/// # Invariants
/// - `used = carved - |free| + list.used_bias()`: the blocks not on the free
///   list (live or remote, [`PageLocal::live`]) plus the bias of the list
///   the page is on (only [`PageLocal::set_list`] changes `list`).
/// - `carved ≤ capacity`; `flushed` = the shared `used` as last written.
/// - `list == Full` ⇔ `in_full` (protocol.md) and then `free` is empty and
///   `carved == capacity`.
///
/// `repr(C)` with `used` first: the local free's `dec [used]` (see
/// `heap::dec_used`) then addresses the page's metadata itself, with no
/// offset to add (the fields do not depend on `B` in size).
#[repr(C)]
pub struct PageLocal<B: Backend> {
    /// Blocks not on the free list, plus `list.used_bias()`.
    pub used: u32,
    /// Local frees not yet folded into the owner's statistics.
    pub frees: u32,
    /// Head of the free list (links stored in the blocks), null when empty.
    pub free: *mut u8,
    /// Blocks carved from the fresh area so far.
    pub carved: u32,
    /// Blocks that fit.
    pub capacity: u32,
    /// Block size in bytes.
    pub block_size: u32,
    /// The shared `used` as of the last flush (so delta = used - flushed).
    pub flushed: u32,
    /// Blocks drained since the last flush (statistics, see
    /// `heap::flush_page`).
    pub drained: u32,
    /// `used` at the last statistics fold.
    pub stat_used: u32,
    /// Size class.
    pub class: u8,
    /// Which heap list holds the page.
    pub list: PageList,
    /// Previous page on the heap list.
    pub prev: *mut SlotMeta<B>,
    /// Next page on the heap list.
    pub next: *mut SlotMeta<B>,
}

impl<B: Backend> PageLocal<B> {
    /// The state of a page that has never been claimed (and of the dummy
    /// page: no free block, so the fast path always falls to the slow path).
    pub const fn new() -> Self {
        Self {
            free: null_mut(),
            used: 0,
            carved: 0,
            capacity: 0,
            block_size: 0,
            flushed: 0,
            frees: 0,
            drained: 0,
            stat_used: 0,
            class: 0,
            list: PageList::None,
            prev: null_mut(),
            next: null_mut(),
        }
    }
}

impl<B: Backend> PageLocal<B> {
    /// Blocks not on the free list (live, or freed remotely and not drained
    /// yet): `used` without its list bias.
    #[inline]
    pub fn live(&self) -> u32 {
        self.used.wrapping_sub(self.list.used_bias())
    }

    /// Puts the page on `list` (the caller links it there), moving `used`
    /// from the old list's bias to the new one's.
    ///
    /// The free paths report a live count going below zero when it
    /// happens; this checks it once more on every move (live > capacity is
    /// an underflow that got past them) rather than carrying a wrapped
    /// count onto the new list.
    #[inline]
    pub(crate) fn set_list(&mut self, list: PageList) {
        let live = self.live();
        if live > self.capacity {
            crate::fatal!(
                "free(): a double free emptied a page below zero blocks \
                 (class {}, {} blocks in use after the frees)",
                self.class,
                live as i32
            );
        }
        self.list = list;
        self.used = live + list.used_bias();
    }
}

impl<B: Backend> Default for PageLocal<B> {
    fn default() -> Self {
        Self::new()
    }
}

/// `PageLocal::used` carries this bias while the page is on the full list,
/// so the local free fast path's single `used ≤ 0` test also catches "free
/// to a full page" (which must move the page off the full list).
pub(crate) const IN_FULL_BIAS: u32 = 1 << 31;

/// `PageLocal::used` carries this bias while the page is its class's
/// current page: one block that is never freed, so the local free fast
/// path's `used ≤ 0` test does not fire when the current page empties (it
/// stays current either way: the next malloc of its class wants it), and
/// still fires when a double free takes the count below zero.
pub(crate) const CURRENT_BIAS: u32 = 1;

/// A slot's link in its class's fallback list (guarded by the fallback lock).
pub struct FbLink<B: Backend> {
    /// Next slot on the fallback list.
    pub(crate) next: *mut SlotMeta<B>,
    /// Whether the slot is on a fallback list.
    pub(crate) queued: bool,
}

impl<B: Backend> FbLink<B> {
    /// Not queued.
    pub const fn new() -> Self {
        Self {
            next: null_mut(),
            queued: false,
        }
    }
}

impl<B: Backend> Default for FbLink<B> {
    fn default() -> Self {
        Self::new()
    }
}

/// A page's owner as the layers below the heap see it: the part of a heap
/// that the page protocols touch. `heap::Heap` begins with it
/// (`#[repr(C)]`), so the owner pointer of a slot is the heap's address and
/// the free fast path's "owner == this heap" test is one compare.
#[repr(C)]
pub struct PageOwner<B: Backend> {
    /// Set by a remote freer that hit one of the heap's full pages
    /// (`page::push_remote`); the owner processes it on its slow path.
    pub(crate) full_hint: B::AtomicU32,
}

impl<B: Backend> PageOwner<B> {
    /// No hint.
    pub(crate) fn new() -> Self {
        Self {
            full_hint: B::AtomicU32::new(0),
        }
    }
}

/// Where a SuperSlab is in its life (protocol.md: `status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SsStatus {
    /// Serving slots.
    Live,
    /// In the arena cache; every slot `Unused`.
    Cached,
}

/// Header fields protected by the instance's pool lock.
pub(crate) struct SsPooled<B: Backend> {
    /// Live or Cached.
    pub status: SsStatus,
    /// Mapping order within the instance (the model's SuperSlab number).
    pub map_seq: u64,
    /// Bit i ⇔ slot i is `Unused`.
    pub unused_mask: u32,
    /// Bit c ⇔ registered in `registry[c]`.
    pub registered: u64,
    /// Next SuperSlab of the instance, in mapping order (all, live or cached).
    pub next_all: *mut SsHeader<B>,
    /// Next SuperSlab in the arena cache.
    pub next_cached: *mut SsHeader<B>,
}

/// The slots' remote-free head words, starting on a cache line of their own
/// (after the slot metadata): no line holds both a remote word and any
/// slot's metadata. Unpadded per word — one 64-byte line per word would not
/// fit the 8 KiB header with the checkers' (larger) atomics — so remote
/// freers of neighbouring slots may share a line with each other, never
/// with an owner's hot lines.
#[repr(C, align(64))]
pub(crate) struct RemoteWords<B: Backend>(pub(crate) [B::AtomicPtr<u8>; SLOTS]);

/// The SuperSlab header, at the base of the SuperSlab.
///
/// # Invariants
/// - `empty_mask` bit i ⇔ slot i is `Empty` (or `Purging`) and
///   `empty_count = popcount(empty_mask)` — at quiescence; transiently the
///   emptier sets the bit *before* storing `Empty` and a claimer clears it
///   *after* its CAS (see `docs/architecture.md`).
/// - `total_active = Σ slots[i].used`.
/// - `active_slots` = number of `Active` slots.
#[repr(C)]
pub struct SsHeader<B: Backend> {
    /// Slot metadata; first, so that slot `i`'s meta is at
    /// `base + i * size_of::<SlotMeta>()`.
    pub(crate) slots: [SlotMeta<B>; SLOTS],
    /// Slot i's remote-free head word (see [`SlotMeta::remote`]).
    pub(crate) remote: RemoteWords<B>,
    /// Bit i ⇔ slot i is `Empty`.
    pub(crate) empty_mask: B::AtomicU32,
    /// popcount(empty_mask).
    pub(crate) empty_count: B::AtomicU32,
    /// Σ shared used of the slots.
    pub(crate) total_active: B::AtomicU32,
    /// Number of `Active` slots.
    pub(crate) active_slots: B::AtomicU32,
    /// Per class: next SuperSlab in `registry[class]` (read lock-free by
    /// stage 0.5; written under the pool lock).
    pub(crate) reg_next: [B::AtomicPtr<SsHeader<B>>; NUM_CLASSES],
    /// Pool-lock protected fields.
    pub(crate) pooled: B::Cell<SsPooled<B>>,
}

impl<B: Backend> SsHeader<B> {
    /// Initialises a header in place at `base` (fresh, zeroed memory).
    ///
    /// # Safety
    /// `base` is the start of a fresh 2 MiB mapping owned by the caller.
    pub(crate) unsafe fn init(base: *mut u8, map_seq: u64) -> *mut SsHeader<B> {
        assert!(
            core::mem::size_of::<SsHeader<B>>() <= HEADER_SIZE,
            "SuperSlab header larger than 8 KiB for this backend"
        );
        let h = base.cast::<SsHeader<B>>();
        // SAFETY: the caller owns the fresh mapping; every field is written
        // once through raw pointers before any reference is formed.
        unsafe {
            let slots = ptr::addr_of_mut!((*h).slots).cast::<SlotMeta<B>>();
            for i in 0..SLOTS {
                slots.add(i).write(SlotMeta::new());
            }
            let remote = ptr::addr_of_mut!((*h).remote).cast::<B::AtomicPtr<u8>>();
            for i in 0..SLOTS {
                remote.add(i).write(B::AtomicPtr::new(null_mut()));
            }
            ptr::addr_of_mut!((*h).empty_mask).write(B::AtomicU32::new(0));
            ptr::addr_of_mut!((*h).empty_count).write(B::AtomicU32::new(0));
            ptr::addr_of_mut!((*h).total_active).write(B::AtomicU32::new(0));
            ptr::addr_of_mut!((*h).active_slots).write(B::AtomicU32::new(0));
            let reg = ptr::addr_of_mut!((*h).reg_next).cast::<B::AtomicPtr<SsHeader<B>>>();
            for c in 0..NUM_CLASSES {
                reg.add(c).write(B::AtomicPtr::new(null_mut()));
            }
            ptr::addr_of_mut!((*h).pooled).write(B::Cell::new(SsPooled {
                status: SsStatus::Live,
                map_seq,
                unused_mask: u32::MAX,
                registered: 0,
                next_all: null_mut(),
                next_cached: null_mut(),
            }));
        }
        h
    }

    /// The base address (the header's own address).
    #[inline(always)]
    pub fn base(&self) -> usize {
        self as *const Self as usize
    }

    /// Slot `i`'s metadata.
    #[inline(always)]
    pub fn slot(&self, i: usize) -> &SlotMeta<B> {
        &self.slots[i]
    }

    /// Sets slot `i`'s mask bit and bumps `empty_count` (the emptier, before
    /// it stores `Empty`).
    pub(crate) fn mark_empty(&self, i: usize) {
        let prev = self.empty_mask.fetch_or(1 << i, Ordering::AcqRel);
        debug_assert_eq!(prev & (1 << i), 0, "slot {i} already in empty_mask");
        if B::MUTANT == crate::sync::Mutant::EmptyCountCheckThenAct {
            let c = self.empty_count.load(Ordering::Acquire);
            self.empty_count.store(c + 1, Ordering::Release);
        } else {
            self.empty_count.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Clears slot `i`'s mask bit and decrements `empty_count` (the claimer
    /// after its CAS, or the releaser after retiring the slot).
    pub(crate) fn unmark_empty(&self, i: usize) {
        let prev = self.empty_mask.fetch_and(!(1 << i), Ordering::AcqRel);
        debug_assert_ne!(prev & (1 << i), 0, "slot {i} not in empty_mask");
        if B::MUTANT == crate::sync::Mutant::EmptyCountCheckThenAct {
            let c = self.empty_count.load(Ordering::Acquire);
            self.empty_count.store(c.wrapping_sub(1), Ordering::Release);
        } else {
            self.empty_count.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Access to the pool-locked fields.
    ///
    /// # Safety
    /// The caller holds the instance's pool lock (or the instance is
    /// quiescent / being built).
    #[inline]
    pub(crate) unsafe fn pooled<R>(&self, f: impl FnOnce(&mut SsPooled<B>) -> R) -> R {
        // SAFETY: the pool lock serialises every access to `pooled`.
        self.pooled.with_mut(|p| f(unsafe { &mut *p }))
    }
}

/// The slot metadata for a block address inside a SuperSlab (no checks).
#[inline(always)]
pub fn slot_of<B: Backend>(ptr: *mut u8) -> *mut SlotMeta<B> {
    let addr = ptr.addr();
    let slot = (addr >> SLOT_SHIFT) & (SLOTS - 1);
    // The user's pointer covers its block only: take the SuperSlab's
    // exposed provenance (see `SlotMeta::header`).
    let base: *mut SlotMeta<B> =
        ptr::with_exposed_provenance_mut(addr & !crate::chunkmap::CHUNK_MASK);
    base.wrapping_add(slot)
}

const _: () = assert!(
    core::mem::size_of::<SsHeader<crate::sync::StdBackend>>() <= HEADER_SIZE,
    "the production SuperSlab header must fit 8 KiB"
);
const _: () = assert!(core::mem::size_of::<SlotMeta<crate::sync::StdBackend>>() == 128);
