//! The loom backend: loom's atomics and `UnsafeCell` behind local newtypes
//! (orphan rule), and free-list link words tracked by loom.
//!
//! # Link words
//!
//! A free block's "next" link lives in the block itself, in memory the
//! protocol hands from thread to thread (a remote freer writes it, the
//! draining owner reads it). The word stays in the block (the snapshot and
//! the other paths read it there); each access additionally goes through a
//! loom `UnsafeCell<()>` keyed by the word's address, created lazily by the
//! first access of an execution (loom counts creation as a write by the
//! creating thread). loom then reports a read of a link that does not
//! happen-after its write, e.g. a remote push published with `Relaxed`.
//! The table lives in a thread-local of the OS thread that runs the model
//! (loom runs every model thread on it) and is cleared by [`reset_links`]
//! at the start of each execution.

use super::{Inline, MutantTag};
use core::marker::PhantomData;
use hakmem::sync::{AtomicIntOps, AtomicOps, Backend, CellOps, Ordering};
use loom::sync::atomic as la;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// The loom backend with injected bug `M` ([`super::tags::None`]: the real
/// protocol).
#[derive(Debug)]
pub struct Loom<M: MutantTag>(PhantomData<M>);

/// The loom backend of the real protocol.
pub type LoomBackend = Loom<super::tags::None>;

super::checker_atomics!(
    Inline, core::convert::identity;
    (LoomUsize, la::AtomicUsize, usize),
    (LoomU32, la::AtomicU32, u32),
    (LoomU64, la::AtomicU64, u64);
    LoomPtr, la::AtomicPtr
);

/// loom's `UnsafeCell` (every access is checked for causality).
#[derive(Debug)]
pub struct LoomCell<T>(loom::cell::UnsafeCell<T>);

// SAFETY: as `StdCell`: the protocol gives each cell one owner at a time,
// and loom checks exactly that.
unsafe impl<T> Send for LoomCell<T> {}
// SAFETY: as above.
unsafe impl<T> Sync for LoomCell<T> {}

impl<T> CellOps<T> for LoomCell<T> {
    fn new(v: T) -> Self {
        Self(loom::cell::UnsafeCell::new(v))
    }
    fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        self.0.with(f)
    }
    fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        self.0.with_mut(f)
    }
}

type LinkCell = Rc<loom::cell::UnsafeCell<()>>;

thread_local! {
    static LINKS: RefCell<HashMap<usize, LinkCell>> = RefCell::new(HashMap::new());
}

/// Forgets every link cell (call at the start of each loom execution: the
/// cells of the previous one belong to it).
pub fn reset_links() {
    LINKS.with(|l| l.borrow_mut().clear());
}

fn link_cell(addr: usize) -> LinkCell {
    LINKS.with(|l| {
        l.borrow_mut()
            .entry(addr)
            .or_insert_with(|| Rc::new(loom::cell::UnsafeCell::new(())))
            .clone()
    })
}

impl<M: MutantTag> Backend for Loom<M> {
    type AtomicUsize = LoomUsize;
    type AtomicU32 = LoomU32;
    type AtomicU64 = LoomU64;
    type AtomicPtr<T: 'static> = LoomPtr<T>;
    type Cell<T: 'static> = LoomCell<T>;

    const MUTANT: hakmem::Mutant = M::MUTANT;

    fn spin_hint() {
        loom::thread::yield_now();
    }

    unsafe fn load_link(slot: *const *mut u8) -> *mut u8 {
        let c = link_cell(slot as usize);
        // SAFETY: forwarded contract (a readable, aligned block word); loom
        // checks that the last write of the word happens-before this read.
        c.with(|_| unsafe { slot.read() })
    }

    unsafe fn store_link(slot: *mut *mut u8, v: *mut u8) {
        let c = link_cell(slot as usize);
        // SAFETY: forwarded contract (a writable, aligned block word); loom
        // checks that every other access happens-before this write.
        c.with_mut(|_| unsafe { slot.write(v) })
    }
}
