//! Configuration of the model: the sizes that make the same model run at
//! production scale (32 slots, 32 classes) and at tiny scale for exhaustive
//! exploration, plus the exploration bounds and the injected mutant.

use crate::ids::{ClassId, SlotIdx};
use crate::mutant::Mutant;

/// Bytes in one slot (slab) of a SuperSlab: 64 KiB.
pub const SLOT_BYTES: u32 = 1 << 16; // 64 KiB
/// Bytes of slot 0 taken by the SuperSlab header: 8 KiB.
pub const HEADER_BYTES: u32 = 1 << 13; // 8 KiB
/// Slots in a production SuperSlab: 2 MiB / 64 KiB.
pub const PRODUCTION_SLOTS: u8 = 32;
/// Block sizes of the production class table, in bytes: exactly impl's
/// `size_class::CLASS_SIZES` (16..128 by 16, then 4 classes per doubling up
/// to 8 KiB).
pub const PRODUCTION_CLASS_SIZES: [u32; 32] = [
    16, 32, 48, 64, 80, 96, 112, 128, // by 16
    160, 192, 224, 256, 320, 384, 448, 512, 640, 768, 896, 1024, // 4 per doubling
    1280, 1536, 1792, 2048, 2560, 3072, 3584, 4096, 5120, 6144, 7168, 8192,
];

/// One size class.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ClassSpec {
    /// Block size in bytes (informative; the model counts blocks).
    pub size: u32,
    /// Blocks per page in slots 1.. .
    pub capacity: u32,
    /// Blocks per page in slot 0, which loses the SuperSlab header's space.
    pub capacity_slot0: u32,
}

impl ClassSpec {
    /// A class of `size`-byte blocks with the production geometry.
    pub fn from_size(size: u32) -> Self {
        ClassSpec {
            size,
            capacity: SLOT_BYTES / size,
            capacity_slot0: (SLOT_BYTES - HEADER_BYTES) / size,
        }
    }

    /// A class with explicit capacities (tiny configurations).
    pub fn with_capacity(capacity: u32, capacity_slot0: u32) -> Self {
        ClassSpec {
            size: 0,
            capacity,
            capacity_slot0,
        }
    }
}

/// The model's configuration.
///
/// # Invariants
///
/// `validate()` holds: at least one slot, class and thread; every capacity
/// ≥ 1; `flush_threshold ≥ 1`; ids fit their types.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Config {
    /// Slots per SuperSlab (32 in production; at most 32, one mask bit each).
    pub slots: u8,
    /// The class table.
    pub classes: Vec<ClassSpec>,
    /// Logical threads (heaps).
    pub threads: u8,
    /// SuperSlabs that may ever be mapped (ids `0..max_superslabs`): a model
    /// bound that makes exploration finite, not an allocator limit.
    pub max_superslabs: u16,
    /// Stage 0.5 scans the first `scan_limit` SuperSlabs of a class's registry.
    pub scan_limit: usize,
    /// Nodes in the stage-1 node pool, shared by all classes.
    pub node_pool: u16,
    /// `Cached` SuperSlabs the arena keeps at most.
    pub arena_cache: usize,
    /// The threshold flush bound; the effective threshold of a page is
    /// `min(flush_threshold, capacity)` (production: `u32::MAX`, i.e. the
    /// capacity, which bounds the delta structurally).
    pub flush_threshold: u32,
    /// Exploration bound: at most this many blocks live at once
    /// (`usize::MAX` in production).
    pub max_live: usize,
    /// Exploration bound: at most this many slots `Active` at once (owned or
    /// abandoned); an `Acquire` beyond it is rejected (`usize::MAX` in
    /// production).
    pub max_pages: usize,
    /// Exploration bound: at most this many SuperSlabs `Live` at once; a
    /// stage-3 mapping or `ArenaTake` beyond it is rejected (`usize::MAX` in
    /// production). With 1, a second SuperSlab is mapped only after the
    /// first went to the arena, which still lets one go to the arena and
    /// the other to the OS.
    pub max_live_superslabs: usize,
    /// The injected mutant; `Mutant::None` is the specification.
    pub mutant: Mutant,
}

impl Config {
    /// The production geometry: 32 slots of 64 KiB, the 32-class table,
    /// threshold = capacity; 4 threads and generous pools.
    pub fn production() -> Self {
        Config {
            slots: PRODUCTION_SLOTS,
            classes: PRODUCTION_CLASS_SIZES
                .iter()
                .map(|&s| ClassSpec::from_size(s))
                .collect(),
            threads: 4,
            max_superslabs: 64,
            scan_limit: 16,
            node_pool: 64,
            arena_cache: 4,
            flush_threshold: u32::MAX,
            max_live: usize::MAX,
            max_pages: usize::MAX,
            max_live_superslabs: usize::MAX,
            mutant: Mutant::None,
        }
    }

    /// A medium configuration: production class sizes (first four classes),
    /// 8 slots, small pools so that fallbacks and releases happen.
    pub fn medium() -> Self {
        Config {
            slots: 8,
            classes: PRODUCTION_CLASS_SIZES[..4]
                .iter()
                .map(|&s| ClassSpec::from_size(s))
                .collect(),
            threads: 3,
            max_superslabs: 4,
            scan_limit: 2,
            node_pool: 2,
            arena_cache: 1,
            flush_threshold: 8,
            max_live: usize::MAX,
            max_pages: usize::MAX,
            max_live_superslabs: usize::MAX,
            mutant: Mutant::None,
        }
    }

    /// The explorer's default tiny configuration: 2 threads, 2 classes,
    /// 3 slots, capacity 2 (slot 0 too), 2 SuperSlabs (1 live at a time),
    /// 1 node, threshold 1, arena 1, at most 2 live blocks and 1 page
    /// `Active` at a time. Its whole reachable set is explored (≈ 1 M
    /// states up to symmetry); every step kind but `Realloc` (which needs
    /// two pages) is taken — see docs/model.md.
    pub fn tiny() -> Self {
        Config {
            slots: 3,
            // Slot 0 loses no capacity here, so that all three slots are
            // interchangeable (symmetry reduction); medium and production
            // have the smaller slot 0.
            classes: vec![
                ClassSpec::with_capacity(2, 2),
                ClassSpec::with_capacity(2, 2),
            ],
            threads: 2,
            max_superslabs: 2,
            scan_limit: 1,
            node_pool: 1,
            arena_cache: 1,
            flush_threshold: 1,
            max_live: 2,
            max_pages: 1,
            max_live_superslabs: 1,
            mutant: Mutant::None,
        }
    }

    /// This configuration with `mutant` injected.
    pub fn with_mutant(mut self, mutant: Mutant) -> Self {
        self.mutant = mutant;
        self
    }

    /// Blocks per page of `class` in `slot` (0 for an unknown class).
    pub fn capacity(&self, class: ClassId, slot: SlotIdx) -> u32 {
        match self.classes.get(usize::from(class.0)) {
            Some(c) if slot.0 == 0 => c.capacity_slot0,
            Some(c) => c.capacity,
            None => 0,
        }
    }

    /// The effective flush threshold of a page of `class` in `slot`.
    pub fn threshold(&self, class: ClassId, slot: SlotIdx) -> u32 {
        self.flush_threshold.min(self.capacity(class, slot)).max(1)
    }

    /// Number of classes.
    pub fn class_count(&self) -> usize {
        self.classes.len()
    }

    /// Checks the configuration's own invariants.
    pub fn validate(&self) -> Result<(), String> {
        if self.slots == 0 || self.slots > 32 {
            return Err(format!("slots must be in 1..=32, got {}", self.slots));
        }
        if self.classes.is_empty() || self.classes.len() > usize::from(u8::MAX) {
            return Err("classes must be in 1..=255".into());
        }
        if self.threads == 0 {
            return Err("at least one thread".into());
        }
        if self.flush_threshold == 0 {
            return Err("flush_threshold must be ≥ 1".into());
        }
        for (i, c) in self.classes.iter().enumerate() {
            if c.capacity == 0 || c.capacity_slot0 == 0 {
                return Err(format!("class {i} has a zero capacity"));
            }
        }
        Ok(())
    }
}
