//! The chunk map: which 2 MiB chunks of the address space hold hakmem memory.
//!
//! The free path must learn whether a pointer is hakmem's before it reads any
//! metadata through it: reading the header of a chunk that is not mapped would
//! crash instead of reporting an invalid free. One byte per 2 MiB chunk of the
//! 48-bit address space (128 MiB of zero-initialised, lazily backed `.bss`;
//! only the pages of chunks in use ever become resident) answers that with a
//! single load.
//!
//! # Invariants
//! - `entry(c) == SUPERSLAB` ⇔ chunk `c` is the start of a live SuperSlab
//!   (whose header is at the chunk's base).
//! - `1 ..= LARGE_MAX` = the number of live large blocks whose *user pointer*
//!   lies in chunk `c` (their header is one OS page below the pointer).
//! - `0`: no hakmem memory is handed out from this chunk.

use core::sync::atomic::Ordering;

/// log2 of the chunk size.
pub const CHUNK_SHIFT: u32 = 21;
/// 2 MiB.
pub const CHUNK_SIZE: usize = 1 << CHUNK_SHIFT;
/// Mask of the offset inside a chunk.
pub const CHUNK_MASK: usize = CHUNK_SIZE - 1;
/// User-space addresses hakmem can be handed (Linux x86-64: 47 bits; aarch64:
/// 48 bits). Anything above is never hakmem's.
pub const ADDR_BITS: u32 = 48;

/// Entry of a chunk that starts a SuperSlab.
pub const SUPERSLAB: u8 = u8::MAX;
/// The largest count of large blocks one chunk can record. A large block is
/// more than 32 KiB plus a header page, so at most 56 fit in one chunk.
pub const LARGE_MAX: u8 = SUPERSLAB - 1;

/// What a pointer's chunk is, as far as the map knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChunkKind {
    /// Not hakmem memory.
    Foreign,
    /// Inside a SuperSlab; its header is at `addr & !CHUNK_MASK`.
    SuperSlab,
    /// Possibly the user pointer of a large block (header one OS page below).
    Large,
}

/// The entry for `addr`, as raw byte (see the module invariants).
#[inline(always)]
pub fn entry(addr: usize) -> u8 {
    imp::entry(addr)
}

/// Whether `addr` lies in a live SuperSlab (the free fast path's test: one
/// shift, one bounds compare, one byte compare).
#[inline(always)]
pub fn is_superslab(addr: usize) -> bool {
    imp::is_superslab(addr)
}

/// The kind of the chunk holding `addr`.
#[inline]
pub fn kind(addr: usize) -> ChunkKind {
    match entry(addr) {
        0 => ChunkKind::Foreign,
        SUPERSLAB => ChunkKind::SuperSlab,
        _ => ChunkKind::Large,
    }
}

/// Records that a SuperSlab starts at `base` (2 MiB-aligned). Release: the
/// header is initialised before anyone can find it through the map.
pub fn register_superslab(base: usize) {
    debug_assert_eq!(base & CHUNK_MASK, 0);
    let prev = imp::slot(base).swap(SUPERSLAB, Ordering::Release);
    debug_assert_eq!(prev, 0, "chunk already registered");
}

/// Forgets the SuperSlab at `base`; call before its memory is unmapped.
pub fn unregister_superslab(base: usize) {
    let prev = imp::slot(base).swap(0, Ordering::AcqRel);
    debug_assert_eq!(prev, SUPERSLAB, "chunk was not a SuperSlab");
}

/// Counts one more large block whose user pointer is `user`. Returns `false`
/// (and records nothing) if the chunk cannot take another.
pub fn add_large(user: usize) -> bool {
    let slot = imp::slot(user);
    slot.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
        (v < LARGE_MAX).then_some(v + 1)
    })
    .is_ok()
}

/// Counts one large block fewer for the chunk of `user`.
pub fn remove_large(user: usize) {
    let prev = imp::slot(user).fetch_sub(1, Ordering::AcqRel);
    debug_assert!((1..=LARGE_MAX).contains(&prev), "large count underflow");
}

/// The address and length of the map's storage (for the residency
/// diagnostic: how much of it is resident).
pub fn storage() -> (usize, usize) {
    imp::storage()
}

#[cfg(not(miri))]
mod imp {
    use super::{ADDR_BITS, CHUNK_SHIFT};
    use core::cell::UnsafeCell;
    use core::sync::atomic::{AtomicU8, Ordering};

    const LEN: usize = 1 << (ADDR_BITS - CHUNK_SHIFT);

    /// Plain bytes so that the array is zero-initialised `.bss` (an array of
    /// `AtomicU8` takes rustc seconds to const-evaluate); every access goes
    /// through `AtomicU8::from_ptr`.
    struct Map(UnsafeCell<[u8; LEN]>);
    // SAFETY: all accesses are atomic (through `AtomicU8::from_ptr`).
    unsafe impl Sync for Map {}
    static MAP: Map = Map(UnsafeCell::new([0; LEN]));

    #[inline(always)]
    fn at(index: usize) -> &'static AtomicU8 {
        debug_assert!(index < LEN);
        // SAFETY: `index < LEN`; the byte lives for the whole program and is
        // only ever accessed atomically.
        unsafe { AtomicU8::from_ptr(MAP.0.get().cast::<u8>().add(index)) }
    }

    #[inline(always)]
    pub fn entry(addr: usize) -> u8 {
        let index = addr >> CHUNK_SHIFT;
        if index >= LEN {
            return 0;
        }
        at(index).load(Ordering::Acquire)
    }

    /// On x86-64 the test is written in assembly: LLVM never folds an
    /// atomic load into a compare (`movzx` + `cmp` instead of one `cmp`),
    /// and it turns `index < LEN` into a second shift of the address
    /// (`addr >> 48`) instead of comparing the index it already has:
    /// 6 instructions here (`mov`, `shr`, `cmp`, `jae`, `cmp byte`, `jne`)
    /// against 9. A plain x86-64 load is an Acquire load, and an aligned
    /// byte load is single-copy atomic, as the atomic stores that write the
    /// map need.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    pub fn is_superslab(addr: usize) -> bool {
        // SAFETY: reads the byte `MAP[addr >> CHUNK_SHIFT]` only after
        // checking the index is below `LEN`; no write, no stack use.
        unsafe {
            core::arch::asm!(
                "mov {index}, {addr}",
                "shr {index}, {shift}",
                "cmp {index}, {len}",
                "jae {no}",
                "cmp byte ptr [{map} + {index}], {ss}",
                "jne {no}",
                addr = in(reg) addr,
                index = out(reg) _,
                map = in(reg) MAP.0.get().cast::<u8>(),
                shift = const CHUNK_SHIFT,
                len = const LEN,
                ss = const super::SUPERSLAB,
                no = label { return false; },
                options(nostack, readonly),
            );
        }
        true
    }

    #[cfg(not(target_arch = "x86_64"))]
    #[inline(always)]
    pub fn is_superslab(addr: usize) -> bool {
        let index = addr >> CHUNK_SHIFT;
        index < LEN && at(index).load(Ordering::Acquire) == super::SUPERSLAB
    }

    pub fn slot(addr: usize) -> &'static AtomicU8 {
        let index = addr >> CHUNK_SHIFT;
        assert!(index < LEN, "address beyond the chunk map");
        at(index)
    }

    pub fn storage() -> (usize, usize) {
        (MAP.0.get() as usize, LEN)
    }
}

/// Under Miri a 128 MiB static is too slow to emulate; a small table of
/// `(chunk index + 1, entry)` pairs serves the few chunks a unit test uses.
#[cfg(miri)]
mod imp {
    use super::CHUNK_SHIFT;
    use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

    const SLOTS: usize = 256;
    static KEYS: [AtomicUsize; SLOTS] = [const { AtomicUsize::new(0) }; SLOTS];
    static VALUES: [AtomicU8; SLOTS] = [const { AtomicU8::new(0) }; SLOTS];

    pub fn entry(addr: usize) -> u8 {
        let key = (addr >> CHUNK_SHIFT) + 1;
        for i in 0..SLOTS {
            if KEYS[i].load(Ordering::Acquire) == key {
                return VALUES[i].load(Ordering::Acquire);
            }
        }
        0
    }

    pub fn is_superslab(addr: usize) -> bool {
        entry(addr) == super::SUPERSLAB
    }

    pub fn slot(addr: usize) -> &'static AtomicU8 {
        let key = (addr >> CHUNK_SHIFT) + 1;
        for i in 0..SLOTS {
            if KEYS[i].load(Ordering::Acquire) == key {
                return &VALUES[i];
            }
        }
        // Slots are claimed in order and never released, so two threads
        // racing for the same chunk meet at the same first free slot: the
        // loser of the exchange sees the winner's key there and shares it.
        for i in 0..SLOTS {
            match KEYS[i].compare_exchange(0, key, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return &VALUES[i],
                Err(k) if k == key => return &VALUES[i],
                Err(_) => {}
            }
        }
        panic!("miri chunk table full");
    }

    pub fn storage() -> (usize, usize) {
        (VALUES.as_ptr() as usize, SLOTS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn superslab_and_large_entries() {
        let base = 0x5555_0000_0000usize & !CHUNK_MASK;
        assert_eq!(kind(base + 100), ChunkKind::Foreign);
        register_superslab(base);
        assert_eq!(kind(base), ChunkKind::SuperSlab);
        assert_eq!(kind(base + CHUNK_MASK), ChunkKind::SuperSlab);
        assert_eq!(kind(base + CHUNK_SIZE), ChunkKind::Foreign);
        unregister_superslab(base);
        assert_eq!(kind(base), ChunkKind::Foreign);

        let user = base + 3 * CHUNK_SIZE + 4096;
        assert!(add_large(user));
        assert!(add_large(user + 65536));
        assert_eq!(kind(user), ChunkKind::Large);
        remove_large(user);
        assert_eq!(kind(user + 65536), ChunkKind::Large);
        remove_large(user + 65536);
        assert_eq!(kind(user), ChunkKind::Foreign);
    }

    #[test]
    fn addresses_beyond_the_map_are_foreign() {
        assert_eq!(kind(usize::MAX), ChunkKind::Foreign);
        assert_eq!(kind(1 << ADDR_BITS), ChunkKind::Foreign);
    }
}
