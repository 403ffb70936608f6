//! Checker backends for the protocol code of `hakmem` (see `sync::Backend`):
//! loom and shuttle, each generic over a [`MutantTag`] so that every injected
//! bug ([`Mutant`]) gets its own backend type from one definition; and the
//! recording backends of the lockstep refinement check (`record`).

pub mod loom;
pub mod record;
pub mod shuttle;

use hakmem::Mutant;

/// Storage of an atomic held inline (loom's are small; see
/// [`checker_atomics!`]).
pub type Inline<T> = T;

/// Defines the atomic newtypes of a checker backend (orphan rule: the
/// backend traits of `hakmem` cannot be implemented on loom's or shuttle's
/// types directly). `$store` is the storage of the inner atomic (`Inline`,
/// or `Box` for shuttle's, too large to let a SuperSlab header fit its
/// 8 KiB) and `$mk` builds it; then the integer newtypes and the pointer
/// newtype.
macro_rules! checker_atomics {
    (
        $store:ident, $mk:path;
        $(($name:ident, $inner:ty, $t:ty)),* $(,)?;
        $pname:ident, $($pinner:ident)::+
    ) => {
        $(
            #[doc = concat!("`", stringify!($inner), "` (newtype).")]
            #[derive(Debug)]
            pub struct $name($store<$inner>);
            impl AtomicOps<$t> for $name {
                fn new(v: $t) -> Self {
                    Self($mk(<$inner>::new(v)))
                }
                $crate::backends::checker_atomics!(@ops $t);
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
        )*

        #[doc = concat!("`", stringify!($($pinner)::+), "` (newtype).")]
        #[derive(Debug)]
        pub struct $pname<T>($store<$($pinner)::+<T>>);
        impl<T> AtomicOps<*mut T> for $pname<T> {
            fn new(v: *mut T) -> Self {
                Self($mk($($pinner)::+::new(v)))
            }
            $crate::backends::checker_atomics!(@ops *mut T);
        }
        // SAFETY: an atomic word; the pointee is not accessed through it.
        unsafe impl<T> Send for $pname<T> {}
        // SAFETY: as above.
        unsafe impl<T> Sync for $pname<T> {}
    };
    (@ops $t:ty) => {
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
        fn compare_exchange_weak(&self, c: $t, n: $t, s: Ordering, f: Ordering) -> Result<$t, $t> {
            self.0.compare_exchange_weak(c, n, s, f)
        }
    };
}
pub(crate) use checker_atomics;

/// Selects the injected bug of a checker backend at compile time.
pub trait MutantTag: 'static + Send + Sync {
    /// The bug.
    const MUTANT: Mutant;
}

macro_rules! mutant_tags {
    ($($name:ident),* $(,)?) => {
        /// One zero-sized tag type per [`Mutant`] variant.
        pub mod tags {
            $(
                #[doc = concat!("Tag of `Mutant::", stringify!($name), "`.")]
                #[derive(Debug)]
                pub struct $name;
                impl super::MutantTag for $name {
                    const MUTANT: hakmem::Mutant = hakmem::Mutant::$name;
                }
            )*
        }
    };
}

mutant_tags!(
    None,
    RemotePushRelaxed,
    CountBeforePush,
    AbandonedPopOneByOne,
    DrainBeforeOwnershipChange,
    AbandonKeepsOwner,
    DoubleRelease,
    EmptyCountCheckThenAct,
    OwnerFromCurrentThread,
    ReleaseWithoutFlush,
    PoolExhaustedDropsEntry,
    Stage1LeaksNode,
    Stage1NoRecheck,
    PageFullNoRecheck,
    ReleaseByTotalActive,
);

/// Calls `$m!(Tag)` with the tag type of the runtime value `$mutant`
/// (monomorphises one instantiation per bug).
#[macro_export]
macro_rules! with_mutant_tag {
    ($mutant:expr, $body:ident) => {{
        use $crate::backends::tags as t;
        match $mutant {
            hakmem::Mutant::None => $body!(t::None),
            hakmem::Mutant::RemotePushRelaxed => $body!(t::RemotePushRelaxed),
            hakmem::Mutant::CountBeforePush => $body!(t::CountBeforePush),
            hakmem::Mutant::AbandonedPopOneByOne => $body!(t::AbandonedPopOneByOne),
            hakmem::Mutant::DrainBeforeOwnershipChange => $body!(t::DrainBeforeOwnershipChange),
            hakmem::Mutant::AbandonKeepsOwner => $body!(t::AbandonKeepsOwner),
            hakmem::Mutant::DoubleRelease => $body!(t::DoubleRelease),
            hakmem::Mutant::EmptyCountCheckThenAct => $body!(t::EmptyCountCheckThenAct),
            hakmem::Mutant::OwnerFromCurrentThread => $body!(t::OwnerFromCurrentThread),
            hakmem::Mutant::ReleaseWithoutFlush => $body!(t::ReleaseWithoutFlush),
            hakmem::Mutant::PoolExhaustedDropsEntry => $body!(t::PoolExhaustedDropsEntry),
            hakmem::Mutant::Stage1LeaksNode => $body!(t::Stage1LeaksNode),
            hakmem::Mutant::Stage1NoRecheck => $body!(t::Stage1NoRecheck),
            hakmem::Mutant::PageFullNoRecheck => $body!(t::PageFullNoRecheck),
            hakmem::Mutant::ReleaseByTotalActive => $body!(t::ReleaseByTotalActive),
        }
    }};
}
