//! Applies signed lpkg packages to live processes, lists them and reverts them.
//!
//! `apply` follows pannus's sequence, made safe: verify the package, find the target object by
//! build-id, check every function's pre-image, load and link the patch module next to the
//! target while the process runs, then stop every thread (none inside a function being
//! replaced), write the jumps, run the init routines and resume. What was applied is recorded
//! inside the target itself (`record`), so any later `lpkg` can list and revert it.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod apply;
#[doc(hidden)]
pub mod checkpoint;
mod claim;
pub mod daemon;
mod error;
pub mod host;
mod in_place;
mod link;
mod quiesce;
mod record;
mod records;
mod registration;
mod reloc;
mod revert;
mod shadows;
mod spans;
pub mod status;
mod target;
mod unwind;

pub use apply::{apply, apply_package, ApplyOptions, ApplyReport, SwitchProfile, VerifiedPackage};
pub use checkpoint::catch_interrupts;
pub use error::Error;
pub use in_place::Jump;
pub use record::{Entry, LlvmRegistration, RecordBody, Registration, State};
pub use records::{Live, LiveRecord, OrphanModule};
pub use revert::{revert, revert_process, RevertReport, Selection};

/// The packages lpkg applied to process `pid`, as their records in the process say, oldest
/// first (interrupted operations included, see [`State`]).
pub fn list(pid: lpkg_kernel::Pid) -> Result<Vec<LiveRecord>, Error> {
    records::read(pid)
}

/// The patch modules in process `pid` that no record claims (left by an apply killed before
/// its record existed, or still running); `lpkg revert` removes them.
pub fn unrecorded_modules(pid: lpkg_kernel::Pid) -> Result<Vec<OrphanModule>, Error> {
    records::orphaned_modules(pid)
}

/// Entry points of the parsers and the linker for fuzzing and tests: what a target or a
/// package controls goes through them.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::link::{Layout, Resolve};
    pub use crate::record::HEADER_LEN;
    pub use crate::reloc::FramedCode;
    pub use crate::target::{find as find_target, Resolver};
    pub use crate::unwind::{backtrace_from_bytes, vdso_frames_from_bytes};
}
