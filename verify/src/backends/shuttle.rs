//! The shuttle backend: shuttle's atomics (boxed: 72 bytes each would not
//! let a SuperSlab header fit its 8 KiB), plain cells and link words
//! (shuttle explores schedules, not memory orderings or data races: every
//! atomic is SeqCst for it).

use super::MutantTag;
use core::marker::PhantomData;
use hakmem::sync::{AtomicIntOps, AtomicOps, Backend, CellOps, Ordering, StdCell};
use shuttle::sync::atomic as sa;

/// The shuttle backend with injected bug `M`.
#[derive(Debug)]
pub struct Shuttle<M: MutantTag>(PhantomData<M>);

/// The shuttle backend of the real protocol.
pub type ShuttleBackend = Shuttle<super::tags::None>;

super::checker_atomics!(
    Box, Box::new;
    (ShuttleUsize, sa::AtomicUsize, usize),
    (ShuttleU32, sa::AtomicU32, u32),
    (ShuttleU64, sa::AtomicU64, u64);
    ShuttlePtr, sa::AtomicPtr
);

impl<M: MutantTag> Backend for Shuttle<M> {
    type AtomicUsize = ShuttleUsize;
    type AtomicU32 = ShuttleU32;
    type AtomicU64 = ShuttleU64;
    type AtomicPtr<T: 'static> = ShuttlePtr<T>;
    type Cell<T: 'static> = StdCell<T>;

    const MUTANT: hakmem::Mutant = M::MUTANT;

    fn spin_hint() {
        shuttle::thread::yield_now();
    }

    unsafe fn load_link(slot: *const *mut u8) -> *mut u8 {
        // SAFETY: forwarded contract.
        unsafe { slot.read() }
    }

    unsafe fn store_link(slot: *mut *mut u8, v: *mut u8) {
        // SAFETY: forwarded contract.
        unsafe { slot.write(v) }
    }
}

// Keep `CellOps` in scope for the type's bound (StdCell implements it).
const _: fn() = || {
    fn is_cell<C: CellOps<u8>>() {}
    is_cell::<StdCell<u8>>();
};
