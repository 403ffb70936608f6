//! Identities shared by model, impl and verify (see "Identities across model
//! and impl" in `docs/protocol.md`): threads (heaps), SuperSlabs, slots,
//! classes, pages and blocks.

use std::fmt;

/// A logical thread, i.e. one heap: its index in creation order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ThreadId(pub u8);

/// A SuperSlab, numbered 0, 1, 2… in the order it was first mapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SsId(pub u16);

/// A slot (64 KiB slab) inside a SuperSlab: the same index in model and impl.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SlotIdx(pub u8);

/// A size class: an index into [`crate::Config::classes`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClassId(pub u8);

/// A page: the owner's view of an `Active` slot, named by its slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PageId {
    /// The SuperSlab holding the page.
    pub ss: SsId,
    /// The slot of the page in its SuperSlab.
    pub slot: SlotIdx,
}

/// A block: `(ss, slot, index)` with `index = (addr - page_start) / block_size`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BlockId {
    /// The SuperSlab holding the block.
    pub ss: SsId,
    /// The slot of the block's page.
    pub slot: SlotIdx,
    /// The block's index in its page.
    pub index: u32,
}

/// A node of the stage-1 node pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub u16);

impl PageId {
    /// The page at `slot` of `ss`.
    pub fn new(ss: u16, slot: u8) -> Self {
        PageId {
            ss: SsId(ss),
            slot: SlotIdx(slot),
        }
    }

    /// Block `index` of this page.
    pub fn block(self, index: u32) -> BlockId {
        BlockId {
            ss: self.ss,
            slot: self.slot,
            index,
        }
    }
}

impl BlockId {
    /// The page the block belongs to.
    pub fn page(self) -> PageId {
        PageId {
            ss: self.ss,
            slot: self.slot,
        }
    }
}

impl fmt::Display for ThreadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "t{}", self.0)
    }
}

impl fmt::Display for ClassId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "c{}", self.0)
    }
}

impl fmt::Display for PageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ss{}/{}", self.ss.0, self.slot.0)
    }
}

impl fmt::Display for BlockId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ss{}/{}#{}", self.ss.0, self.slot.0, self.index)
    }
}
