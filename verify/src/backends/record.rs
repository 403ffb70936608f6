//! Recording backends: `impl`'s production atomics (std) with
//! `OBSERVE = true`; every reported [`Event`] is pushed on a thread-local
//! buffer that [`take_events`] drains. Used by [`crate::lockstep`] (and by
//! anyone who wants the protocol steps of a sequential run).
//!
//! - [`Record`]: the real protocol, threshold = page capacity (production).
//! - [`RecordThreshold<K>`]: the real protocol with `FLUSH_THRESHOLD =
//!   Some(K)` (small-threshold runs).
//! - [`record_backend!`](crate::record_backend): one backend type per
//!   injected bug (`Mutant`), e.g.
//!   `record_backend!(MyBug, mutant = hakmem::Mutant::DoubleRelease, threshold = None);`
//!   ([`mutants`] holds one per wired mutant).
//!
//! The buffer is per OS thread: a sequential driver (one OS thread running
//! several logical threads) sees every event in order.

use hakmem::Event;
use std::cell::RefCell;
use std::vec::Vec;

thread_local! {
    static EVENTS: RefCell<Vec<Event>> = const { RefCell::new(Vec::new()) };
}

/// Appends `ev` to this OS thread's buffer (the backends' `observe`).
pub fn push(ev: &Event) {
    EVENTS.with(|e| e.borrow_mut().push(*ev));
}

/// Drains this OS thread's buffer, oldest event first.
pub fn take_events() -> Vec<Event> {
    EVENTS.with(|e| std::mem::take(&mut *e.borrow_mut()))
}

/// Defines a recording backend type `$name`: std atomics, `StdCell`,
/// `OBSERVE = true` (events go to [`take_events`]), the given `MUTANT` and
/// `FLUSH_THRESHOLD`.
#[macro_export]
macro_rules! record_backend {
    ($(#[$meta:meta])* $name:ident, mutant = $mutant:expr, threshold = $threshold:expr) => {
        $(#[$meta])*
        #[derive(Debug)]
        pub struct $name;
        impl ::hakmem::sync::Backend for $name {
            type AtomicUsize = ::core::sync::atomic::AtomicUsize;
            type AtomicU32 = ::core::sync::atomic::AtomicU32;
            type AtomicU64 = ::core::sync::atomic::AtomicU64;
            type AtomicPtr<T: 'static> = ::core::sync::atomic::AtomicPtr<T>;
            type Cell<T: 'static> = ::hakmem::sync::StdCell<T>;
            const MUTANT: ::hakmem::Mutant = $mutant;
            const OBSERVE: bool = true;
            const FLUSH_THRESHOLD: Option<u32> = $threshold;
            fn observe(ev: &::hakmem::Event) {
                $crate::backends::record::push(ev)
            }
            fn spin_hint() {
                ::core::hint::spin_loop()
            }
            unsafe fn load_link(slot: *const *mut u8) -> *mut u8 {
                // SAFETY: forwarded contract (a readable, aligned block word).
                unsafe { slot.read() }
            }
            unsafe fn store_link(slot: *mut *mut u8, v: *mut u8) {
                // SAFETY: forwarded contract (a writable, aligned block word).
                unsafe { slot.write(v) }
            }
        }
    };
}

record_backend!(
    /// The real protocol, recorded; threshold = page capacity (production).
    Record,
    mutant = ::hakmem::Mutant::None,
    threshold = None
);

/// The real protocol, recorded, with the threshold flush at `K`
/// (`FLUSH_THRESHOLD = Some(K)`).
#[derive(Debug)]
pub struct RecordThreshold<const K: u32>;

impl<const K: u32> hakmem::sync::Backend for RecordThreshold<K> {
    type AtomicUsize = core::sync::atomic::AtomicUsize;
    type AtomicU32 = core::sync::atomic::AtomicU32;
    type AtomicU64 = core::sync::atomic::AtomicU64;
    type AtomicPtr<T: 'static> = core::sync::atomic::AtomicPtr<T>;
    type Cell<T: 'static> = hakmem::sync::StdCell<T>;
    const OBSERVE: bool = true;
    const FLUSH_THRESHOLD: Option<u32> = Some(K);
    fn observe(ev: &Event) {
        push(ev)
    }
    fn spin_hint() {
        core::hint::spin_loop()
    }
    unsafe fn load_link(slot: *const *mut u8) -> *mut u8 {
        // SAFETY: forwarded contract (a readable, aligned block word).
        unsafe { slot.read() }
    }
    unsafe fn store_link(slot: *mut *mut u8, v: *mut u8) {
        // SAFETY: forwarded contract (a writable, aligned block word).
        unsafe { slot.write(v) }
    }
}

/// One recording backend per wired `hakmem::Mutant` (threshold = capacity).
pub mod mutants {
    use hakmem::Mutant;

    crate::record_backend!(
        /// `Mutant::RemotePushRelaxed` (only loom can see it).
        RemotePushRelaxed, mutant = Mutant::RemotePushRelaxed, threshold = None);
    crate::record_backend!(
        /// `Mutant::PageFullNoRecheck`.
        PageFullNoRecheck, mutant = Mutant::PageFullNoRecheck, threshold = None);
    crate::record_backend!(
        /// `Mutant::EmptyCountCheckThenAct`.
        EmptyCountCheckThenAct, mutant = Mutant::EmptyCountCheckThenAct, threshold = None);
    crate::record_backend!(
        /// `Mutant::AbandonKeepsOwner`.
        AbandonKeepsOwner, mutant = Mutant::AbandonKeepsOwner, threshold = None);
    crate::record_backend!(
        /// `Mutant::DoubleRelease`.
        DoubleRelease, mutant = Mutant::DoubleRelease, threshold = None);
    crate::record_backend!(
        /// `Mutant::ReleaseByTotalActive`.
        ReleaseByTotalActive, mutant = Mutant::ReleaseByTotalActive, threshold = None);
    crate::record_backend!(
        /// `Mutant::PoolExhaustedDropsEntry`.
        PoolExhaustedDropsEntry, mutant = Mutant::PoolExhaustedDropsEntry, threshold = None);
    crate::record_backend!(
        /// `Mutant::Stage1LeaksNode`.
        Stage1LeaksNode, mutant = Mutant::Stage1LeaksNode, threshold = None);
    crate::record_backend!(
        /// `Mutant::Stage1NoRecheck`.
        Stage1NoRecheck, mutant = Mutant::Stage1NoRecheck, threshold = None);
    crate::record_backend!(
        /// `Mutant::OwnerFromCurrentThread`.
        OwnerFromCurrentThread, mutant = Mutant::OwnerFromCurrentThread, threshold = None);
    crate::record_backend!(
        /// `Mutant::ReleaseWithoutFlush`.
        ReleaseWithoutFlush, mutant = Mutant::ReleaseWithoutFlush, threshold = None);
}
