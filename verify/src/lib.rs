//! Checks of hakmem: the model explorer and mutants, loom and shuttle on the
//! real protocol code, and refinement of the implementation against the model.

pub mod explore;
