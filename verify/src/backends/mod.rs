//! Checker backends for the protocol code of `hakmem` (see `sync::Backend`):
//! loom and shuttle, each generic over a [`MutantTag`] so that every injected
//! bug ([`Mutant`]) gets its own backend type from one definition; and the
//! recording backends of the lockstep refinement check (`record`).

pub mod loom;
pub mod record;
pub mod shuttle;

use hakmem::Mutant;

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
