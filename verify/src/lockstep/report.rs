//! What a lockstep run reports when the implementation and the model part:
//! the [`Reason`] and the [`Divergence`] that carries it with the call.

use std::fmt;

use hakmem::observe::Event;
use model::{Step, Violation};

/// Why a lockstep call failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    /// The model rejected the step an event maps to.
    Rejected {
        /// The implementation's event.
        event: Event,
        /// The model step it maps to.
        step: Step,
        /// The model's reason.
        reason: String,
    },
    /// An event that cannot be mapped to a model step (unknown SuperSlab,
    /// a discarded entry that is not the model's head, …).
    Unmappable {
        /// The implementation's event.
        event: Event,
        /// Why.
        reason: String,
    },
    /// A part of the state differs between the model and the implementation.
    Differs {
        /// Which part (e.g. `ss0/3 page`, `stage1[c2]`, `heap t1 c0`).
        part: String,
        /// The model's view of it.
        model: String,
        /// The implementation's view of it.
        implementation: String,
    },
    /// The model's state (equal to the implementation's) breaks an invariant.
    Invariant(Violation),
    /// The implementation's own snapshot check failed.
    ImplCheck(String),
    /// The call's result disagrees with the steps it reported.
    Result(String),
    /// The caller used the lockstep wrongly (dead thread, unknown pointer).
    Usage(String),
}

/// A refinement failure: which call, which event, both views.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Divergence {
    /// Number of the call (0-based) in this lockstep's life.
    pub call_index: u64,
    /// The call, e.g. `alloc(t1, 24, align 8)`.
    pub call: String,
    /// The events of the call applied before the failure, as `event => step`.
    pub applied: Vec<String>,
    /// What went wrong.
    pub reason: Box<Reason>,
}

impl Divergence {
    /// A short name of the failure kind: `rejected`, `unmappable`,
    /// `differs`, `invariant`, `impl-check`, `result`, `usage`.
    pub fn kind(&self) -> &'static str {
        match *self.reason {
            Reason::Rejected { .. } => "rejected",
            Reason::Unmappable { .. } => "unmappable",
            Reason::Differs { .. } => "differs",
            Reason::Invariant(_) => "invariant",
            Reason::ImplCheck(_) => "impl-check",
            Reason::Result(_) => "result",
            Reason::Usage(_) => "usage",
        }
    }
}

impl fmt::Display for Divergence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "call #{} {}:", self.call_index, self.call)?;
        for a in &self.applied {
            writeln!(f, "  ok  {a}")?;
        }
        match &*self.reason {
            Reason::Rejected {
                event,
                step,
                reason,
            } => write!(
                f,
                "  impl reported {event:?}\n  = model step {step}\n  rejected by the model: {reason}"
            ),
            Reason::Unmappable { event, reason } => {
                write!(f, "  impl reported {event:?}\n  not a model step: {reason}")
            }
            Reason::Differs {
                part,
                model,
                implementation,
            } => write!(
                f,
                "  state differs at {part}\n    model: {model}\n    impl:  {implementation}"
            ),
            Reason::Invariant(v) => write!(f, "  invariant violated: {v}"),
            Reason::ImplCheck(e) => write!(f, "  impl snapshot check failed:\n{e}"),
            Reason::Result(e) => write!(f, "  call result: {e}"),
            Reason::Usage(e) => write!(f, "  misuse: {e}"),
        }
    }
}

impl std::error::Error for Divergence {}
