//! Geometry and size classes: the constants every other layer builds on.
//!
//! A SuperSlab is one 2 MiB chunk ([`chunkmap::CHUNK_SIZE`]) cut into
//! [`SLOTS`] slots of 64 KiB. Its header (slot metadata) sits at the start of
//! slot 0, which therefore loses [`HEADER_SIZE`] = 8 KiB; every slot's block
//! area starts 8 KiB-aligned, so a class whose block size is a multiple of a
//! power of two `a ≤ 8 KiB` hands out `a`-aligned blocks.
//!
//! Classes: 16..128 by 16, then 4 classes per doubling up to 8 KiB
//! (160, 192, 224, 256, 320, …, 7168, 8192): worst-case internal waste 20%
//! above 128 B (25% for 16→32 at the bottom: sizes 17..32 round to 32).
//! Power-of-two classes would waste up to 50%. Sizes up to [`SMALL_MAX`] =
//! 8 KiB stay in slabs (the C version sent 8–32 KiB through a separate pool);
//! larger sizes go to `large` (OS mappings). The table is the model's
//! production table (`model::config::PRODUCTION_CLASS_SIZES`), checked equal
//! by `verify`'s refinement tests.

use crate::chunkmap;

/// log2 of the slot (page) size.
pub const SLOT_SHIFT: u32 = 16;
/// 64 KiB.
pub const SLOT_SIZE: usize = 1 << SLOT_SHIFT;
/// Slots per SuperSlab: 2 MiB / 64 KiB = 32.
pub const SLOTS: usize = chunkmap::CHUNK_SIZE / SLOT_SIZE;
/// Bytes of slot 0 taken by the SuperSlab header: 8 KiB.
pub const HEADER_SIZE: usize = 1 << 13;
/// Size of a SuperSlab: 2 MiB.
pub const SS_SIZE: usize = chunkmap::CHUNK_SIZE;

/// The production table: 16..128 by 16, then 4 classes per doubling.
/// Chosen by measurement against the other [`CANDIDATES`]
/// (docs/class-table.md). Equal to `model::config::PRODUCTION_CLASS_SIZES`.
pub const PRODUCTION_CLASSES: [u32; 32] = [
    16, 32, 48, 64, 80, 96, 112, 128, // by 16
    160, 192, 224, 256, 320, 384, 448, 512, 640, 768, 896, 1024, // 4 per doubling
    1280, 1536, 1792, 2048, 2560, 3072, 3584, 4096, 5120, 6144, 7168, 8192,
];
const _: () = assert!(eq(&PRODUCTION_CLASSES, table(true, 4)));

/// Candidate class tables, by name, for the measured comparison
/// (`cargo run --release -p bench -- classes`). Every one ends at 8 KiB and
/// has 16-byte multiples only (the 16-byte minimum alignment of `malloc`).
pub const CANDIDATES: [(&str, &[u32]); 4] = [
    ("pow2", table(false, 1)),
    ("2per", table(true, 2)),
    ("4per", &PRODUCTION_CLASSES),
    ("8per", table(true, 8)),
];

/// The table this build uses: the production one, unless the *build-time*
/// variable `HAKMEM_CLASS_TABLE` names another candidate (the bench builds
/// its `bench-hakmem` worker that way in a separate target directory; an
/// unknown name is a compile error). A `const`: the fast paths compile to the
/// same code whatever the table.
const SELECTED: &[u32] = match option_env!("HAKMEM_CLASS_TABLE") {
    None => &PRODUCTION_CLASSES,
    Some(name) => candidate(name),
};

/// The name of the table this build uses.
pub const TABLE_NAME: &str = match option_env!("HAKMEM_CLASS_TABLE") {
    None => "4per",
    Some(name) => name,
};

/// Number of size classes.
pub const NUM_CLASSES: usize = SELECTED.len();
/// Block sizes, ascending.
pub const CLASS_SIZES: [u32; NUM_CLASSES] = {
    let mut t = [0u32; NUM_CLASSES];
    let mut i = 0;
    while i < NUM_CLASSES {
        t[i] = SELECTED[i];
        i += 1;
    }
    t
};
/// The largest size served from slabs: 8 KiB.
pub const SMALL_MAX: usize = CLASS_SIZES[NUM_CLASSES - 1] as usize;

const fn candidate(name: &str) -> &'static [u32] {
    let mut i = 0;
    while i < CANDIDATES.len() {
        if str_eq(CANDIDATES[i].0, name) {
            return CANDIDATES[i].1;
        }
        i += 1;
    }
    panic!("HAKMEM_CLASS_TABLE: unknown class table (pow2, 2per, 4per, 8per)")
}

const fn str_eq(a: &str, b: &str) -> bool {
    eq_bytes(a.as_bytes(), b.as_bytes())
}

const fn eq_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

const fn eq(a: &[u32], b: &[u32]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// Room for the longest candidate (8 per doubling: 8 + 6 × 8 = 56).
const MAX_CANDIDATE: usize = 64;

/// The sizes of a table that starts 16..128 by 16 (`by16`) or with the
/// powers of two 16, 32, 64, 128, then has `per` classes per doubling up to
/// 8 KiB, each step `d / per` (a multiple of 16).
const fn table(by16: bool, per: u32) -> &'static [u32] {
    // Const promotion needs a `const` item per table: build all four and
    // pick (the arrays are tiny).
    const fn build(by16: bool, per: u32) -> ([u32; MAX_CANDIDATE], usize) {
        let mut t = [0u32; MAX_CANDIDATE];
        let mut n = 0;
        let mut s = 16;
        while s <= 128 {
            t[n] = s;
            n += 1;
            s = if by16 { s + 16 } else { s * 2 };
        }
        let mut d = 128;
        while d < 8192 {
            let step = d / per;
            let mut i = 1;
            while i <= per {
                t[n] = d + i * step;
                n += 1;
                i += 1;
            }
            d *= 2;
        }
        (t, n)
    }
    const POW2: ([u32; MAX_CANDIDATE], usize) = build(false, 1);
    const TWO: ([u32; MAX_CANDIDATE], usize) = build(true, 2);
    const FOUR: ([u32; MAX_CANDIDATE], usize) = build(true, 4);
    const EIGHT: ([u32; MAX_CANDIDATE], usize) = build(true, 8);
    match (by16, per) {
        (false, 1) => POW2.0.split_at(POW2.1).0,
        (true, 2) => TWO.0.split_at(TWO.1).0,
        (true, 4) => FOUR.0.split_at(FOUR.1).0,
        (true, 8) => EIGHT.0.split_at(EIGHT.1).0,
        _ => panic!("no such candidate table"),
    }
}

/// Granule of the size → class table.
pub const GRANULE_SHIFT: u32 = 4;

const _: () = assert!(SLOTS == 32, "one mask bit per slot in a u32");
const _: () = assert!(SLOT_SIZE % HEADER_SIZE == 0 && HEADER_SIZE < SLOT_SIZE);
const _: () = assert!(NUM_CLASSES <= 64, "classes fit the state word's 6 bits");
const _: () = {
    let mut i = 1;
    while i < NUM_CLASSES {
        assert!(CLASS_SIZES[i] > CLASS_SIZES[i - 1]);
        assert!(CLASS_SIZES[i] % 16 == 0);
        i += 1;
    }
    // Slot 0 still holds at least one block of the largest class.
    assert!((SLOT_SIZE - HEADER_SIZE) / SMALL_MAX >= 1);
};

const TABLE_LEN: usize = (SMALL_MAX >> GRANULE_SHIFT) + 1;

/// `CLASS_OF_GRANULE[(size + 15) >> 4]` = the smallest class holding `size`.
static CLASS_OF_GRANULE: [u8; TABLE_LEN] = {
    let mut t = [0u8; TABLE_LEN];
    let mut g = 0;
    let mut c = 0;
    while g < TABLE_LEN {
        while (CLASS_SIZES[c] as usize) < (g << GRANULE_SHIFT) {
            c += 1;
        }
        t[g] = c as u8;
        g += 1;
    }
    t
};

/// The class of `size` (`size ≤ SMALL_MAX`); O(1) by a byte table.
#[inline(always)]
pub fn class_of(size: usize) -> usize {
    debug_assert!(size <= SMALL_MAX);
    CLASS_OF_GRANULE[(size + 15) >> GRANULE_SHIFT] as usize
}

/// The class for `size` at alignment `align` (a power of two): the smallest
/// class ≥ `size` whose block size is a multiple of `align`; `None` when
/// none is (the request goes to `large`).
#[inline]
pub fn class_for(size: usize, align: usize) -> Option<usize> {
    if size > SMALL_MAX {
        return None;
    }
    let c = class_of(size);
    if align <= 16 {
        return Some(c);
    }
    class_aligned_slow(c, align)
}

#[cold]
fn class_aligned_slow(mut c: usize, align: usize) -> Option<usize> {
    if align > HEADER_SIZE {
        return None;
    }
    while c < NUM_CLASSES {
        if CLASS_SIZES[c] as usize % align == 0 {
            return Some(c);
        }
        c += 1;
    }
    None
}

/// Block size of class `c`.
#[inline(always)]
pub fn block_size(c: usize) -> usize {
    CLASS_SIZES[c] as usize
}

/// Offset of slot `slot`'s block area from the SuperSlab base.
#[inline(always)]
pub const fn slot_area_offset(slot: usize) -> usize {
    if slot == 0 {
        HEADER_SIZE
    } else {
        slot * SLOT_SIZE
    }
}

/// Bytes of slot `slot`'s block area.
#[inline(always)]
pub const fn slot_area_size(slot: usize) -> usize {
    if slot == 0 {
        SLOT_SIZE - HEADER_SIZE
    } else {
        SLOT_SIZE
    }
}

/// `capacity(class, slot)`: blocks of class `c` that fit in slot `slot`.
#[inline]
pub fn capacity(c: usize, slot: usize) -> u32 {
    (slot_area_size(slot) / block_size(c)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_table_is_tight() {
        for size in 1..=SMALL_MAX {
            let c = class_of(size);
            assert!(block_size(c) >= size, "size {size}");
            if c > 0 {
                assert!(
                    block_size(c - 1) < size,
                    "size {size} not in smallest class"
                );
            }
        }
        assert_eq!(class_of(0), 0);
        assert_eq!(class_of(16), 0);
        assert_eq!(class_of(17), 1);
        assert_eq!(class_of(1024), 19);
        assert_eq!(class_of(1025), 20);
    }

    #[test]
    fn aligned_classes() {
        for shift in 0..=13 {
            let align = 1usize << shift;
            for size in [1, 17, 100, 1000, 4097, SMALL_MAX] {
                match class_for(size, align) {
                    Some(c) => {
                        assert!(block_size(c) >= size);
                        assert_eq!(block_size(c) % align.max(16), 0);
                        assert_eq!(slot_area_offset(1) % align, 0);
                        assert_eq!(slot_area_offset(0) % align, 0);
                    }
                    None => panic!("size {size} align {align} has a class"),
                }
            }
        }
        assert_eq!(class_for(8, 1 << 14), None);
        assert_eq!(class_for(SMALL_MAX + 1, 8), None);
    }

    #[test]
    fn candidate_tables_are_well_formed() {
        let lens: Vec<usize> = CANDIDATES.iter().map(|(_, t)| t.len()).collect();
        assert_eq!(lens, [10, 20, 32, 56]);
        for (name, t) in CANDIDATES {
            assert_eq!(t[0], 16, "{name}");
            assert_eq!(*t.last().unwrap(), 8192, "{name}");
            assert!(t.windows(2).all(|w| w[0] < w[1]), "{name} ascending");
            assert!(t.iter().all(|s| s % 16 == 0), "{name} 16-byte multiples");
        }
        assert_eq!(candidate("4per"), &PRODUCTION_CLASSES[..]);
        assert_eq!(TABLE_NAME, "4per");
        assert_eq!(&CLASS_SIZES[..], &PRODUCTION_CLASSES[..]);
    }

    #[test]
    fn capacities() {
        assert_eq!(capacity(0, 1), 4096);
        assert_eq!(capacity(0, 0), 3584);
        assert_eq!(capacity(NUM_CLASSES - 1, 0), 7);
        assert_eq!(capacity(19, 3), 64);
    }
}
