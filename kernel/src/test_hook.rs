//! Named points inside the operations that run code in a target, where a test can make the
//! operation fail or pause, to see what the target is left with when a ptrace request fails
//! there or when lpkg dies there (the test SIGKILLs the paused process).
//!
//! The hook belongs to the calling thread (a `Tracee` is used from one thread only), so tests
//! running side by side do not see each other's. Without a hook a point costs one
//! thread-local read.

use std::cell::Cell;

use crate::{Error, Pid, Result};

/// A point inside the thread borrowing of `inject`: the borrowed thread sits at a system-call
/// stop (entry or exit) of the code we run.
pub const SYSCALL_STOP: &str = "syscall-stop";
/// A point inside a call: the signal frame is written on the thread's stack, the thread still
/// has its own registers and mask.
pub const CALL_FRAME_WRITTEN: &str = "call:frame-written";
/// A point inside a call: registers and mask are set, the thread is about to be resumed into
/// the function.
pub const CALL_READY: &str = "call:ready";
/// A point inside an injected system call: registers and mask are set, the thread is about to
/// be resumed into the call (into the `rt_sigreturn` our call replaces at its entry).
pub const SYSCALL_READY: &str = "syscall:ready";
/// A point inside an injected system call: the thread sits at the entry stop of the
/// `rt_sigreturn` it was set to make, with our call put in its place.
pub const SYSCALL_ENTERED: &str = "syscall:entered";
/// A point inside an injected system call: the call was made, the thread stopped right after
/// it, its own registers and mask not put back yet.
pub const SYSCALL_DONE: &str = "syscall:done";
/// A point between two system calls of a batch (`Tracee::batched`): the thread stopped back
/// at the restorer after the last one, its signals blocked, about to enter `rt_sigreturn`
/// for the next one to take its place.
pub const SYSCALL_NEXT: &str = "syscall:next";
/// A point inside a lead-out: the function's return address leads through our code, the thread
/// is about to be resumed.
pub const LEAD_OUT_READY: &str = "lead-out:ready";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Action {
    /// The next time the point is reached, fail as if a ptrace request failed there.
    Fail,
    /// Print `lpkg-kernel: paused at POINT` on stderr and sleep until killed.
    Pause,
}

thread_local! {
    static HOOK: Cell<Option<(&'static str, Action)>> = const { Cell::new(None) };
}

/// Makes the next operation of this thread that reaches `point` fail there with
/// [`Error::Ptrace`] (`op` = `"test hook"`, `EIO`), once.
pub fn fail_at(point: &'static str) {
    HOOK.set(Some((point, Action::Fail)));
}

/// Makes this thread print `lpkg-kernel: paused at POINT` on stderr and sleep forever when it
/// reaches `point`.
pub fn pause_at(point: &'static str) {
    HOOK.set(Some((point, Action::Pause)));
}

/// Passes `point` with thread `tid` of process `pid` borrowed.
pub(crate) fn reached(pid: Pid, tid: Pid, point: &'static str) -> Result<()> {
    match HOOK.get() {
        Some((p, Action::Fail)) if p == point => {
            HOOK.set(None);
            Err(Error::Ptrace {
                pid,
                tid,
                op: "test hook",
                errno: nix::errno::Errno::EIO,
            })
        }
        Some((p, Action::Pause)) if p == point => {
            eprintln!("lpkg-kernel: paused at {point}");
            loop {
                std::thread::sleep(std::time::Duration::from_secs(1));
            }
        }
        _ => Ok(()),
    }
}
