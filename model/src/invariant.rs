//! The names of the ten invariants of `docs/protocol.md` ([`Invariant`],
//! with each one's rationale) and a [`Violation`] of one. The checks are in
//! `invariants.rs`; the names sit below the state so that the mutants
//! (which say which invariant they break) need no more than them.

use std::fmt;

/// The named invariants, numbered as in `docs/protocol.md`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Invariant {
    /// 1. Every carved block of an `Active` page is in exactly one place —
    ///    live, the free list, the remote list (or, with the
    ///    `CountBeforePush` mutant, in flight); no uncarved block appears.
    ///    Rationale: a lost block is a leak, a duplicated one is handed out
    ///    twice later.
    Conservation,
    /// 2. No live block is also on a free or remote list, so it cannot be
    ///    handed out while live. Rationale: two owners of one block corrupt
    ///    each other's data.
    NoDoubleHandOut,
    /// 3. For every slot, `shared_used + delta = carved - |free|`, which for
    ///    an `Active` page equals its live blocks plus its remote list; and
    ///    `0 ≤ shared_used ≤ capacity`. Rationale: the shared counter plus
    ///    the owner's pending delta is the truth about what is in use.
    Accounting,
    /// 4. A SuperSlab's `total_active = Σ shared_used` of its slots.
    ///    Rationale: release and statistics read it.
    TotalActive,
    /// 5. `empty_mask` bit i ⇔ slot i is `Empty`; `empty_count` = popcount.
    ///    Rationale: stage 0.5 trusts both.
    Masks,
    /// 6. A slot that is `Empty` or `Unused` holds no live block, no remote
    ///    free (listed or in flight) and no page; a live block's slot serves
    ///    the class it was handed out as; a `Cached`/`Released` SuperSlab has
    ///    every slot `Unused` and `total_active = 0`. Rationale: reusing or
    ///    releasing memory under a block still in use is a use-after-free.
    SafeReuse,
    /// 7. `|delta| ≤ threshold` for an owned page; `delta = 0` for any slot
    ///    without an owner. Rationale: the C version's deltas drifted
    ///    without bound; an unowned delta can never be flushed.
    BoundedDelta,
    /// 8. A heap's current/partial/full pages are `Active`, of the list's
    ///    class, owned by it, each in exactly one place; every page a live
    ///    heap owns is in its lists; `in_full` ⇔ on the full list; a full
    ///    page has no free block, nothing to carve, and if it has remote
    ///    frees its heap's `full_hint` is set. Rationale: the owner only
    ///    finds (and drains) pages through its lists.
    HeapLists,
    /// 9. Stage-1: every pool node is free or in exactly one entry; every
    ///    `Empty` slot of a live SuperSlab is named by an entry (stage-1 or
    ///    fallback); a slot is named by at most one fallback entry, exactly
    ///    when its `listed` flag is set; no entry names a SuperSlab that is
    ///    not Live (release removes them). Rationale: a
    ///    lost node shrinks the pool for ever, a lost entry hides a slot, a
    ///    dangling entry reads unmapped memory.
    Stage1Nodes,
    /// 10. An abandoned page is on exactly one abandoned list (its class's),
    ///     `Active` and owned by nobody; every ownerless `Active` page is
    ///     abandoned; a dead heap owns nothing. Rationale: each abandoned
    ///     page is reclaimed by exactly one heap, and remote frees to it
    ///     wait on its remote list until then.
    Abandonment,
}

impl Invariant {
    /// All invariants, in number order.
    pub const ALL: [Invariant; 10] = [
        Invariant::Conservation,
        Invariant::NoDoubleHandOut,
        Invariant::Accounting,
        Invariant::TotalActive,
        Invariant::Masks,
        Invariant::SafeReuse,
        Invariant::BoundedDelta,
        Invariant::HeapLists,
        Invariant::Stage1Nodes,
        Invariant::Abandonment,
    ];

    /// The invariant's number in `docs/protocol.md`.
    pub fn number(self) -> u8 {
        self as u8 + 1
    }
}

impl fmt::Display for Invariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} (invariant {})", self, self.number())
    }
}

/// A broken invariant and what broke it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Which invariant.
    pub invariant: Invariant,
    /// What was found.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.invariant, self.detail)
    }
}

impl std::error::Error for Violation {}
