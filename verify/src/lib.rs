//! Checks of hakmem: the model explorer, model mutants, loom and shuttle on the
//! real protocol code, and refinement of the implementation against the model.

pub mod backends;
pub mod explore;
pub mod lockstep;
