//! lpkg-kernel: every contact with a target process.
//!
//! The 2005 pannus patch gave the kernel six system calls for live patching (mmap3, accesspvm,
//! init_pend, rt_handlereturn, check_init, munmap3). This crate provides the same operations on
//! stock Linux with ptrace, `/proc/PID/mem` and system calls injected into the target; see
//! `spec/kernel-operations.md` for the mapping. It is the only crate of lpkg allowed `unsafe`.
//!
//! Targets are x86_64 processes and 32-bit (i386) ones run by the kernel's IA32 emulation:
//! a [`Tracee`] knows its process's [`arch::Arch`] and makes system calls, calls and signal
//! frames the way that architecture does; everything that differs lives in `arch/`.
#![deny(missing_docs)]

pub mod arch;
pub mod error;
mod inject;
pub mod interrupt;
mod lead_out;
pub mod maps;
pub mod memory;
pub mod objects;
mod priority;
pub mod proc_events;
mod process;
mod procfs;
mod ptrace;
mod remote_call;
mod remote_syscall;
mod seccomp;
pub mod stack;
#[doc(hidden)]
pub mod test_hook;
mod tracer;

pub use error::{Error, Result};
pub use process::{start_time, Pinned};
pub use remote_call::Mark;
pub use remote_syscall::Prot;
pub use tracer::Tracee;

/// The longest wait any operation takes: longer timeouts are cut to it (a deadline further
/// away would overflow the clock; none this far is ever reached).
pub const MAX_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10 * 365 * 86_400);

/// A process or thread id, as the kernel gives it.
pub type Pid = i32;
