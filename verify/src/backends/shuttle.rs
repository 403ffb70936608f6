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

macro_rules! shuttle_int {
    ($name:ident, $inner:ty, $t:ty) => {
        #[doc = concat!("shuttle's `", stringify!($inner), "`, boxed.")]
        #[derive(Debug)]
        pub struct $name(Box<$inner>);
        impl AtomicOps<$t> for $name {
            fn new(v: $t) -> Self {
                Self(Box::new(<$inner>::new(v)))
            }
            fn load(&self, o: Ordering) -> $t {
                self.0.load(o)
            }
            fn store(&self, v: $t, o: Ordering) {
                self.0.store(v, o)
            }
            fn swap(&self, v: $t, o: Ordering) -> $t {
                self.0.swap(v, o)
            }
            fn compare_exchange(&self, c: $t, n: $t, s: Ordering, f: Ordering) -> Result<$t, $t> {
                self.0.compare_exchange(c, n, s, f)
            }
            fn compare_exchange_weak(
                &self,
                c: $t,
                n: $t,
                s: Ordering,
                f: Ordering,
            ) -> Result<$t, $t> {
                self.0.compare_exchange_weak(c, n, s, f)
            }
        }
        impl AtomicIntOps<$t> for $name {
            fn fetch_add(&self, v: $t, o: Ordering) -> $t {
                self.0.fetch_add(v, o)
            }
            fn fetch_sub(&self, v: $t, o: Ordering) -> $t {
                self.0.fetch_sub(v, o)
            }
            fn fetch_or(&self, v: $t, o: Ordering) -> $t {
                self.0.fetch_or(v, o)
            }
            fn fetch_and(&self, v: $t, o: Ordering) -> $t {
                self.0.fetch_and(v, o)
            }
        }
    };
}

shuttle_int!(ShuttleUsize, sa::AtomicUsize, usize);
shuttle_int!(ShuttleU32, sa::AtomicU32, u32);
shuttle_int!(ShuttleU64, sa::AtomicU64, u64);

/// shuttle's `AtomicPtr`, boxed.
#[derive(Debug)]
pub struct ShuttlePtr<T>(Box<sa::AtomicPtr<T>>);

impl<T> AtomicOps<*mut T> for ShuttlePtr<T> {
    fn new(v: *mut T) -> Self {
        Self(Box::new(sa::AtomicPtr::new(v)))
    }
    fn load(&self, o: Ordering) -> *mut T {
        self.0.load(o)
    }
    fn store(&self, v: *mut T, o: Ordering) {
        self.0.store(v, o)
    }
    fn swap(&self, v: *mut T, o: Ordering) -> *mut T {
        self.0.swap(v, o)
    }
    fn compare_exchange(
        &self,
        c: *mut T,
        n: *mut T,
        s: Ordering,
        f: Ordering,
    ) -> Result<*mut T, *mut T> {
        self.0.compare_exchange(c, n, s, f)
    }
    fn compare_exchange_weak(
        &self,
        c: *mut T,
        n: *mut T,
        s: Ordering,
        f: Ordering,
    ) -> Result<*mut T, *mut T> {
        self.0.compare_exchange_weak(c, n, s, f)
    }
}

// SAFETY: an atomic word; the pointee is not accessed through it.
unsafe impl<T> Send for ShuttlePtr<T> {}
// SAFETY: as above.
unsafe impl<T> Sync for ShuttlePtr<T> {}

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
