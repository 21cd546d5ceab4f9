//! The one error type of lpkg-kernel.

use std::path::PathBuf;
use std::time::Duration;

use crate::Pid;

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong when touching a target process.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No process has this id.
    #[error("no process with pid {pid}")]
    NoSuchProcess {
        /// The pid asked for.
        pid: Pid,
    },
    /// The process has exited but was not reaped by its parent yet.
    #[error("process {pid} is a zombie (it has exited)")]
    Zombie {
        /// The zombie's pid.
        pid: Pid,
    },
    /// The kernel refused access (other user, Yama ptrace_scope, missing CAP_SYS_PTRACE...).
    #[error(
        "permission denied to trace process {pid}: run lpkg as root, or with CAP_SYS_PTRACE \
         (a process of another user, or with kernel.yama.ptrace_scope above 1 for any \
         tracer but root, cannot be traced otherwise)"
    )]
    PermissionDenied {
        /// The pid asked for.
        pid: Pid,
    },
    /// Another process already traces the target (a debugger, another lpkg).
    #[error("process {pid} is already traced by {tracer_name} (pid {tracer_pid})")]
    AlreadyTraced {
        /// The target.
        pid: Pid,
        /// `TracerPid` from `/proc/PID/status`.
        tracer_pid: Pid,
        /// The tracer's `comm`, or `?` when it could not be read.
        tracer_name: String,
    },
    /// The process exited while we were working on it (ptrace's ESRCH ends up here).
    #[error("process {pid} exited")]
    ProcessExited {
        /// The process that went away.
        pid: Pid,
    },
    /// The process's sandbox would not let a system call lpkg needs run (or would kill it).
    #[error("process {pid}: {reason}: refused, nothing was changed")]
    Sandboxed {
        /// The target.
        pid: Pid,
        /// What the sandbox would do.
        reason: String,
    },
    /// The pid named another process than the one first seen (it exited and its pid was
    /// given to a new process): nothing was done to either.
    #[error("process {pid} exited and its pid was reused by another process: nothing was changed")]
    ProcessReplaced {
        /// The pid.
        pid: Pid,
    },
    /// The operation needs every thread stopped ([`crate::Tracee::stop`]) first.
    #[error("process {pid} is not stopped")]
    NotStopped {
        /// The target.
        pid: Pid,
    },
    /// The thread is not one of the seized threads of the process.
    #[error("thread {tid} is not a stopped thread of process {pid}")]
    NoSuchThread {
        /// The target.
        pid: Pid,
        /// The thread asked for.
        tid: Pid,
    },
    /// Fewer bytes than asked could be read.
    #[error("short read of process {pid} memory at {addr:#x}: {got} of {len} bytes")]
    ShortRead {
        /// The target.
        pid: Pid,
        /// First address read.
        addr: u64,
        /// Bytes asked for.
        len: usize,
        /// Bytes actually read.
        got: usize,
    },
    /// Fewer bytes than asked could be written.
    #[error("short write to process {pid} memory at {addr:#x}: {written} of {len} bytes")]
    ShortWrite {
        /// The target.
        pid: Pid,
        /// First address written.
        addr: u64,
        /// Bytes to write.
        len: usize,
        /// Bytes actually written.
        written: usize,
    },
    /// Reading or writing target memory failed outright (unmapped address: EIO).
    #[error("cannot access process {pid} memory at {addr:#x} ({len} bytes): {source}")]
    Memory {
        /// The target.
        pid: Pid,
        /// Address accessed.
        addr: u64,
        /// Bytes asked for.
        len: usize,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A file under /proc could not be read.
    #[error("cannot read {path}: {source}")]
    Proc {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A line of /proc/PID/maps could not be parsed.
    #[error("cannot parse line {line} of /proc/{pid}/maps: {text:?}")]
    MapsParse {
        /// The target.
        pid: Pid,
        /// 1-based line number.
        line: usize,
        /// The line as text (lossy).
        text: String,
    },
    /// A mapped object's ELF headers could not be parsed.
    #[error("cannot parse ELF object {path}: {source}")]
    Elf {
        /// The map_files path read.
        path: PathBuf,
        /// The parser's error.
        source: object::Error,
    },
    /// A ptrace request failed for another reason than the process being gone.
    #[error("ptrace {op} on thread {tid} of process {pid} failed: {errno}")]
    Ptrace {
        /// The target.
        pid: Pid,
        /// The thread.
        tid: Pid,
        /// The request, e.g. `PTRACE_SEIZE`.
        op: &'static str,
        /// The error number.
        errno: nix::errno::Errno,
    },
    /// A system call injected into the target returned an error.
    #[error("system call {nr} in process {pid} failed: {}", nix::errno::Errno::from_raw(*errno))]
    SyscallFailed {
        /// The target.
        pid: Pid,
        /// System call number.
        nr: u64,
        /// The errno it returned.
        errno: i32,
    },
    /// No `syscall` instruction was found in the vdso or libc to borrow.
    #[error("no syscall instruction found in the executable mappings of process {pid}")]
    NoSyscallInsn {
        /// The target.
        pid: Pid,
    },
    /// A function called in the target raised a signal (a fault).
    #[error("call in thread {tid} of process {pid} faulted: signal {signal} at address {addr:#x} (pc {pc:#x})")]
    CallFaulted {
        /// The target.
        pid: Pid,
        /// The thread the function ran on.
        tid: Pid,
        /// Signal number (SIGSEGV = 11...).
        signal: i32,
        /// Faulting address from the siginfo (0 when the signal has none).
        addr: u64,
        /// Program counter at the fault.
        pc: u64,
    },
    /// A function called in the target did not return in time; it was abandoned.
    #[error(
        "call of {func:#x} in thread {tid} of process {pid} did not return within {timeout:?}"
    )]
    CallTimedOut {
        /// The target.
        pid: Pid,
        /// The thread the function ran on.
        tid: Pid,
        /// The function's address.
        func: u64,
        /// The time allowed.
        timeout: Duration,
    },
    #[error(
        "thread {tid} of process {pid} is running a signal handler on its alternate signal \
         stack, too small to call a function on; try again once the handler has returned"
    )]
    /// The thread to call on runs on its alternate signal stack: a call's frame (up to
    /// several KiB of XSAVE state) and the function's own stack could overflow it.
    OnAltStack {
        /// Process.
        pid: Pid,
        /// Thread.
        tid: Pid,
    },
    /// The thread's stack has no room for a call's signal frame: the frame goes below the
    /// stack pointer and its red zone, lower than the stack mapping reaches, and the stack
    /// cannot grow there (its size limit, a guard page, not a growable stack).
    #[error(
        "thread {tid} of process {pid} has no room on its stack for a call: {needed} bytes \
         needed below its stack pointer {sp:#x}, and the stack cannot grow that far"
    )]
    NoStackRoom {
        /// Process.
        pid: Pid,
        /// Thread.
        tid: Pid,
        /// Its stack pointer.
        sp: u64,
        /// Bytes of stack the frame needs below `sp` (red zone included).
        needed: u64,
    },
    /// More arguments than fit in registers.
    #[error("{count} call arguments given, at most {max} supported")]
    TooManyArgs {
        /// Arguments given.
        count: usize,
        /// The maximum.
        max: usize,
    },
    /// No free address range of this length exists within ±2 GiB of `addr`.
    #[error("no free {len:#x}-byte range within ±2 GiB of {addr:#x} in process {pid}")]
    NoHoleNear {
        /// The target.
        pid: Pid,
        /// The address the mapping must be near.
        addr: u64,
        /// Length wanted.
        len: u64,
    },
    /// Some threads did not stop in time (e.g. stuck in uninterruptible sleep).
    #[error("threads {tids:?} of process {pid} did not stop within {timeout:?}")]
    StopTimedOut {
        /// The target.
        pid: Pid,
        /// Threads still running.
        tids: Vec<Pid>,
        /// The time allowed.
        timeout: Duration,
    },
    /// A thread stopped in a way this crate did not expect.
    #[error("thread {tid} of process {pid}: unexpected stop: {what}")]
    UnexpectedStop {
        /// The target.
        pid: Pid,
        /// The thread.
        tid: Pid,
        /// What was seen.
        what: String,
    },
    /// The process runs a program for another architecture than x86_64 or i386 (x32, or
    /// not an ELF file lpkg knows).
    #[error(
        "process {pid} runs a program lpkg cannot patch: ELF class {class}, machine {machine} \
         (only x86_64 and i386 programs are supported)"
    )]
    UnsupportedArch {
        /// The target.
        pid: Pid,
        /// `EI_CLASS` of its program's ELF header (1: 32-bit, 2: 64-bit).
        class: u8,
        /// `e_machine` of its program's ELF header.
        machine: u16,
    },
    /// An argument was unusable (e.g. a memfd name with a NUL byte).
    #[error("invalid argument: {what}")]
    InvalidArgument {
        /// What is wrong.
        what: String,
    },
}
