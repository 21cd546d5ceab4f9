//! Applies signed lpkg packages to live processes, lists them and reverts them.
//!
//! `apply` follows pannus's sequence, made safe: verify the package, find the target object by
//! build-id, check every function's pre-image, load and link the patch module next to the
//! target while the process runs, then stop every thread (none inside a function being
//! replaced), write the jumps, run the init routines and resume. What was applied is recorded
//! inside the target itself (`record`), so any later `lpkg` can list and revert it.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod apply;
pub mod checkpoint;
mod error;
pub mod in_place;
pub mod link;
pub mod quiesce;
pub mod record;
pub mod records;
pub mod registration;
pub mod reloc;
pub mod revert;
pub mod target;
pub mod unwind;

pub use apply::{apply, ApplyOptions, ApplyReport};
pub use checkpoint::catch_interrupts;
pub use error::Error;
pub use records::LiveRecord;
pub use revert::{revert, RevertReport, Selection};
