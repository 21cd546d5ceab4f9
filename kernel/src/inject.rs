//! Running our code on a stopped thread of the target and getting the thread back exactly as
//! it was: shared by injected system calls and injected function calls.

use std::time::Instant;

use nix::errno::Errno;

use crate::arch::{build_sigframe, AltStack, FrameError, FrameState, Registers, Sys, XsaveLayout};
use crate::ptrace::{self, Stop};
use crate::tracer::{ThreadState, Tracee};
use crate::{test_hook, Error, Pid, Result};

/// Signals the kernel forces on a thread when it faults; blocking them would make the kernel
/// reset the target's handler to the default on a fault, so they are never blocked.
const SYNCHRONOUS: [i32; 6] = [
    libc::SIGSEGV,
    libc::SIGBUS,
    libc::SIGILL,
    libc::SIGFPE,
    libc::SIGTRAP,
    libc::SIGSYS,
];

fn sigbit(sig: i32) -> u64 {
    1u64 << (sig - 1)
}

/// A thread's state before we borrowed it.
#[derive(Clone, Copy)]
pub(crate) struct Saved {
    pub tid: Pid,
    pub regs: Registers,
    /// The original signal mask (we block asynchronous signals while our code runs).
    pub mask: u64,
}

/// Where a run of our code ends: at the system-call entry stop of the `syscall` instruction
/// that ends just before `pc`, making call `nr`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct End {
    pub pc: u64,
    pub nr: u64,
}

/// How the run ended (a short-lived value: its size does not matter).
#[allow(clippy::large_enum_variant)]
pub(crate) enum Outcome {
    /// The thread reached the end system call and went through it.
    Returned {
        /// Registers at the call's entry stop (before any change `at_entry` made).
        entry: Registers,
        /// Registers after the call, the thread stopped on its way back to user mode.
        exit: Registers,
        /// Whether our code made other system calls before it.
        made_syscalls: bool,
    },
    /// The thread stopped with a signal it raised itself (trap, fault).
    Trapped {
        sig: i32,
        /// The faulting address for a kernel-generated fault signal, else 0.
        addr: u64,
        regs: Registers,
    },
    /// The deadline passed; the thread was interrupted and is stopped.
    TimedOut,
}

impl Tracee {
    /// Save a stopped thread's registers and signal mask before we run code on it. Nothing is
    /// changed yet: [`Tracee::run_borrowed`] sets our registers, then blocks the asynchronous
    /// signals, last before the resume, so that if we die before that the thread carries on as
    /// it was.
    pub(crate) fn borrow_thread(&mut self, tid: Pid) -> Result<Saved> {
        self.require_stopped_thread(tid)?;
        let pid = self.pid;
        let regs = ptrace::getregs(tid, self.arch)
            .map_err(|e| ptrace::error(pid, tid, "PTRACE_GETREGS", e))?;
        // A thread inside rt_sigsuspend, ppoll, pselect6... runs with a temporary mask and
        // the real one saved for its return. Since Linux 5.2 GETSIGMASK returns the saved one
        // and SETSIGMASK drops the temporary one; the interrupted call is restarted on resume
        // and sets its temporary mask again. Older kernels read and write the temporary mask
        // and keep the saved one. Either way the thread ends up as it was.
        let mask = ptrace::get_sigmask(tid)
            .map_err(|e| ptrace::error(pid, tid, "PTRACE_GETSIGMASK", e))?;
        Ok(Saved { tid, regs, mask })
    }

    /// Writes on the borrowed thread's stack, entirely below `below`, the signal frame that
    /// gives the thread its saved state back through `rt_sigreturn` (registers, mask, `xstate`:
    /// its `NT_X86_XSTATE`; `altstack` as `uc_stack`; `restorer` as return address), growing
    /// the stack if needed; returns the frame's address. Below the red zone, where nothing of
    /// the thread lives: where the kernel would put a frame for a signal arriving now. A
    /// function entered with the stack pointer at the frame finds `args` where its calling
    /// convention wants them (see [`build_sigframe`]).
    pub(crate) fn place_frame(
        &mut self,
        saved: &Saved,
        (altstack, xstate): (AltStack, &[u8]),
        args: &[u64],
        restorer: u64,
        below: u64,
    ) -> Result<u64> {
        let (pid, tid) = (self.pid, saved.tid);
        let state = FrameState {
            regs: &saved.regs,
            mask: saved.mask,
            altstack,
            xstate,
            layout: XsaveLayout::host(),
        };
        let sp = saved.regs.sp();
        let frame = build_sigframe(&state, args, restorer, below).map_err(|e| match e {
            FrameError::Xstate => Error::InvalidArgument {
                what: format!(
                    "thread {tid} of process {pid}: XSAVE state of {} bytes does not match \
                     this CPU's XSAVE layout",
                    xstate.len()
                ),
            },
            // The frame itself is under 512 bytes besides the XSAVE image.
            FrameError::NoRoom => Error::NoStackRoom {
                pid,
                tid,
                sp,
                needed: sp.saturating_sub(below) + xstate.len() as u64 + 512,
            },
        })?;
        if let Err(error) = self.mem()?.write(frame.addr, &frame.bytes) {
            let Error::Memory { .. } = error else {
                return Err(error);
            };
            self.grow_stack(tid, saved.regs.sp(), frame.addr)?;
            self.mem()?.write(frame.addr, &frame.bytes)?;
        }
        Ok(frame.addr)
    }

    /// Makes the thread's stack reach down to `bottom`, below its stack pointer `sp`.
    ///
    /// Since Linux 6.5 accesses through /proc/PID/mem no longer grow a stack (the main
    /// thread's `[stack]` mapping, which grows down on faults), so a frame written below the
    /// mapping's current bottom fails. A system call made by the thread itself that writes
    /// there does grow it, as the thread's own accesses would: `sigaltstack(NULL, bottom)`
    /// stores the (unchanged) alternate-stack settings at `bottom`, in stack the frame covers
    /// next. That call runs without a frame (there is no room for one yet): if lpkg dies
    /// inside it, the thread is not protected. If it fails, the stack is at its size limit or
    /// is not growable.
    fn grow_stack(&mut self, tid: Pid, sp: u64, bottom: u64) -> Result<()> {
        let nr = self.arch.nr(Sys::Sigaltstack);
        let ret = self.unframed_syscall_on(tid, nr, [0, bottom, 0, 0, 0, 0])?;
        match ret {
            0.. => Ok(()),
            ret if ret == -(libc::EFAULT as i64) => Err(Error::NoStackRoom {
                pid: self.pid,
                tid,
                sp,
                needed: sp - bottom,
            }),
            ret => Err(Error::SyscallFailed {
                pid: self.pid,
                nr,
                errno: -ret as i32,
            }),
        }
    }

    /// Put back the signal mask, then the FPU state if given, then the registers, in that
    /// order: until the registers are back the thread would run our code, which is harmless
    /// with its own mask (a called function returns through its frame), while its own code
    /// with our mask would run with its signals blocked if we died in between.
    pub(crate) fn give_back(&mut self, saved: &Saved, xstate: Option<&[u8]>) -> Result<()> {
        let (pid, tid) = (self.pid, saved.tid);
        ptrace::set_sigmask(tid, saved.mask)
            .map_err(|e| ptrace::error(pid, tid, "PTRACE_SETSIGMASK", e))?;
        if let Some(xstate) = xstate {
            ptrace::set_xstate(tid, xstate)
                .map_err(|e| ptrace::error(pid, tid, "PTRACE_SETREGSET NT_X86_XSTATE", e))?;
        }
        self.give_back_registers(saved)
    }

    /// Put back the registers, orig_rax included, so a system call the thread was inside is
    /// restarted by the kernel on resume.
    ///
    /// Exactly as they were, except when a failed request left the thread at a system-call
    /// stop of our code. At an entry stop the kernel would take `orig_rax` as the call to make
    /// on resume and run the thread's original call once more (a `write` that had completed
    /// writes again); at an exit stop it returns to user mode without its restart logic (a
    /// thread that was inside `read` would see `-ERESTARTSYS`). There the registers are put
    /// back in the form the kernel's restart logic gives them (`Registers::resumed`: the call
    /// to be restarted made again from its `syscall` instruction, `orig_rax` = -1, which skips
    /// the pending entry): the thread is whole without another ptrace stop, and so without
    /// another request that could fail. Elsewhere the exact registers are better: a thread
    /// in `nanosleep` keeps its remaining time, and a signal arriving later gets the kernel's
    /// own `EINTR`/restart decision.
    pub(crate) fn give_back_registers(&mut self, saved: &Saved) -> Result<()> {
        let (pid, tid) = (self.pid, saved.tid);
        let regs = if self.syscall_stop.take() == Some(tid) {
            saved.regs.resumed()
        } else {
            saved.regs
        };
        ptrace::setregs(tid, &regs).map_err(|e| ptrace::error(pid, tid, "PTRACE_SETREGS", e))
    }

    /// Set `regs` on the borrowed thread (`None`: it has them) and run it until it enters the
    /// system call `end`, or
    /// traps, or `deadline` passes. `ready` names the test hook point between the last change
    /// and the resume. With `block_signals`, the asynchronous signals are blocked while it runs
    /// (code of ours, covered by a frame that restores the mask); without, the thread runs its
    /// own code with its own mask.
    ///
    /// It runs with `PTRACE_SYSCALL` (stopping at every system call it makes) and never with a
    /// trap flag, so nothing stays armed if we die. At the entry stop of `end`, `at_entry` runs
    /// with its registers and whether other system calls were made before (it may change the
    /// registers: `orig_rax` = -1 skips the call). Then we interrupt and let it go: it stops again for the interrupt on its way
    /// back to user mode, inside the kernel's signal check. That is where it must be when its
    /// original registers are put back: only there does the kernel, on resume, restart a
    /// system call the thread was inside (a syscall-exit stop returns to user mode directly).
    #[allow(clippy::too_many_arguments)] // the run's registers, end, hooks and signal policy
    pub(crate) fn run_borrowed(
        &mut self,
        tid: Pid,
        regs: Option<&Registers>,
        end: End,
        at_entry: impl FnOnce(&Registers, bool) -> Result<()>,
        deadline: Instant,
        ready: &'static str,
        block_signals: bool,
    ) -> Result<Outcome> {
        let pid = self.pid;
        if let Some(regs) = regs {
            ptrace::setregs(tid, regs).map_err(|e| ptrace::error(pid, tid, "PTRACE_SETREGS", e))?;
        }
        if block_signals {
            // Last before the resume (see `borrow_thread`). From here a called function is
            // covered by its frame, which holds the thread's own mask for rt_sigreturn.
            let allowed = SYNCHRONOUS.iter().fold(0, |m, &s| m | sigbit(s));
            ptrace::set_sigmask(tid, !allowed)
                .map_err(|e| ptrace::error(pid, tid, "PTRACE_SETSIGMASK", e))?;
        }
        test_hook::reached(pid, tid, ready)?;
        let mut at_entry = Some(at_entry);
        let mut entry: Option<Registers> = None;
        let mut made_syscalls = false;
        let mut created_threads = false;
        let mut backoff = self.backoff();
        let outcome = loop {
            let issued = match entry {
                None => ptrace::syscall(tid),
                // Any stop clears a pending interrupt: interrupt again before every resume.
                Some(_) => ptrace::interrupt(tid).and_then(|()| ptrace::cont(tid, 0)),
            };
            issued.map_err(|e| ptrace::error(pid, tid, "PTRACE_SYSCALL", e))?;
            self.syscall_stop = None;
            self.threads.insert(tid, ThreadState::Running);
            backoff.restart();
            let stop = match ptrace::wait_until(tid, deadline, &mut backoff) {
                Ok(Some(stop)) => stop,
                Ok(None) => {
                    self.interrupt_and_wait(tid)?;
                    break Outcome::TimedOut;
                }
                Err(Errno::ECHILD) => Stop::Gone,
                Err(e) => return Err(ptrace::error(pid, tid, "waitpid", e)),
            };
            self.threads
                .insert(tid, ThreadState::Stopped { group_stop: false });
            match stop {
                Stop::Gone => {
                    self.threads.remove(&tid);
                    return Err(Error::ProcessExited { pid });
                }
                Stop::Syscall if entry.is_none() => {
                    self.syscall_stop = Some(tid);
                    test_hook::reached(pid, tid, test_hook::SYSCALL_STOP)?;
                    let now = ptrace::getregs(tid, self.arch)
                        .map_err(|e| ptrace::error(pid, tid, "PTRACE_GETREGS", e))?;
                    // Any other stop is a system call our code makes on its way (entry or exit).
                    if now.pc() == end.pc && now.syscall_nr() == Some(end.nr) {
                        if let Some(f) = at_entry.take() {
                            f(&now, made_syscalls)?;
                        }
                        entry = Some(now);
                    } else {
                        made_syscalls = true;
                    }
                }
                // Not traced any more after PTRACE_CONT; nothing to do if one slips through.
                Stop::Syscall => self.syscall_stop = Some(tid),
                Stop::Event {
                    event: libc::PTRACE_EVENT_STOP,
                    ..
                } => {
                    if let Some(entry) = entry {
                        let exit = ptrace::getregs(tid, self.arch)
                            .map_err(|e| ptrace::error(pid, tid, "PTRACE_GETREGS", e))?;
                        break Outcome::Returned {
                            entry,
                            exit,
                            made_syscalls,
                        };
                    }
                    // Our own stale interrupt or a group stop, taken before any instruction
                    // ran: issue the same request again.
                }
                Stop::Event {
                    event: libc::PTRACE_EVENT_CLONE,
                    ..
                } => {
                    // The code we run created a thread: it joins the stopped world later.
                    let child = ptrace::event_msg(tid)
                        .map_err(|e| ptrace::error(pid, tid, "PTRACE_GETEVENTMSG", e))?;
                    self.threads.entry(child).or_insert(ThreadState::Stopping);
                    created_threads = true;
                }
                Stop::Event { event, sig } => {
                    return Err(Error::UnexpectedStop {
                        pid,
                        tid,
                        what: format!("ptrace event {event} (signal {sig})"),
                    })
                }
                Stop::Signal(sig) => {
                    let info = ptrace::getsiginfo(tid)
                        .map_err(|e| ptrace::error(pid, tid, "PTRACE_GETSIGINFO", e))?;
                    if raised_by_thread(pid, sig, &info) {
                        let regs = ptrace::getregs(tid, self.arch)
                            .map_err(|e| ptrace::error(pid, tid, "PTRACE_GETREGS", e))?;
                        let addr = fault_addr(sig, &info);
                        break Outcome::Trapped { sig, addr, regs };
                    }
                    // Sent by someone else and not blockable by us: hand it over later.
                    self.deferred.push((tid, sig, info));
                }
            }
        };
        if created_threads {
            self.wait_stopping(deadline.max(Instant::now() + std::time::Duration::from_secs(5)))?;
        }
        Ok(outcome)
    }

    /// Interrupt a running borrowed thread and wait until it is in a ptrace-stop.
    fn interrupt_and_wait(&mut self, tid: Pid) -> Result<()> {
        let pid = self.pid;
        ptrace::interrupt(tid).map_err(|e| ptrace::error(pid, tid, "PTRACE_INTERRUPT", e))?;
        let deadline = Instant::now() + std::time::Duration::from_secs(10);
        let mut backoff = self.backoff();
        loop {
            match ptrace::wait_until(tid, deadline, &mut backoff) {
                Ok(Some(Stop::Event {
                    event: libc::PTRACE_EVENT_STOP,
                    ..
                })) => {
                    self.threads
                        .insert(tid, ThreadState::Stopped { group_stop: false });
                    return Ok(());
                }
                Ok(Some(Stop::Gone)) | Err(Errno::ECHILD) => {
                    self.threads.remove(&tid);
                    return Err(Error::ProcessExited { pid });
                }
                Ok(Some(Stop::Event {
                    event: libc::PTRACE_EVENT_CLONE,
                    ..
                })) => {
                    if let Ok(child) = ptrace::event_msg(tid) {
                        self.threads.entry(child).or_insert(ThreadState::Stopping);
                    }
                    reinterrupt_and_cont(pid, tid)?;
                }
                // Whatever the runaway code raises now is dropped: we abandon it.
                Ok(Some(_)) => reinterrupt_and_cont(pid, tid)?,
                Ok(None) => {
                    return Err(Error::StopTimedOut {
                        pid,
                        tids: vec![tid],
                        timeout: std::time::Duration::from_secs(10),
                    })
                }
                Err(e) => return Err(ptrace::error(pid, tid, "waitpid", e)),
            }
        }
    }
}

/// True when the thread raised `sig` itself: a fault or trap from the kernel, or a signal it
/// sent to itself (abort, raise). Anything else was sent from outside while our code ran.
fn raised_by_thread(pid: Pid, sig: i32, info: &libc::siginfo_t) -> bool {
    if SYNCHRONOUS.contains(&sig) && info.si_code > 0 {
        return true;
    }
    // SAFETY: the kernel fills the whole siginfo union; for si_code <= 0 (SI_USER, SI_TKILL,
    // SI_QUEUE...) the sender's pid is at this offset, and reading it is a plain integer read.
    info.si_code <= 0 && unsafe { info.si_pid() } == pid
}

/// Resume a thread from a ptrace-stop that is not our interrupt's: that stop consumed the
/// pending interrupt, so interrupt again (while stopped, to avoid a race) before resuming.
fn reinterrupt_and_cont(pid: Pid, tid: Pid) -> Result<()> {
    ptrace::interrupt(tid).map_err(|e| ptrace::error(pid, tid, "PTRACE_INTERRUPT", e))?;
    ptrace::cont(tid, 0).map_err(|e| ptrace::error(pid, tid, "PTRACE_CONT", e))
}

/// The faulting address of a kernel-generated fault signal, 0 for anything else.
fn fault_addr(sig: i32, info: &libc::siginfo_t) -> u64 {
    if SYNCHRONOUS.contains(&sig) && info.si_code > 0 {
        // SAFETY: for a kernel-generated fault signal (si_code > 0) the siginfo union holds
        // the faulting address; reading it is a plain pointer-sized integer read.
        unsafe { info.si_addr() as u64 }
    } else {
        0
    }
}
