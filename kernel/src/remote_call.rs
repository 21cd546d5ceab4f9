//! init_pend / rt_handlereturn / check_init: call a function inside the target on one of its
//! own threads the way the kernel runs a signal handler, and get its return value back.
//!
//! The function runs on the thread's stack below a real `rt_sigframe` holding the thread's
//! context (registers, with a system call it was inside set up to be made again; signal mask;
//! FPU/AVX state; alternate signal stack), and returns into a small trampoline of ours that
//! does `rt_sigreturn`. We follow it with system-call stops: at the `rt_sigreturn` entry stop
//! we read the return value, load the original context ourselves and skip the call (one ptrace
//! round trip less than letting it run, and the thread is exactly as before, not as after a
//! handler).
//! If lpkg dies while the function runs, nobody stops it: `rt_sigreturn` runs and puts the
//! thread back where it was, as after any signal handler.

use std::time::{Duration, Instant};

use crate::arch::{AltStack, Registers, Sys};
use crate::inject::{End, Outcome, Saved};
use crate::{memory, ptrace, test_hook, Error, Pid, Prot, Result, Tracee};

/// The most arguments a call takes: in registers on x86_64, on the stack on i386.
const MAX_CALL_ARGS: usize = 6;

const PAGE: u64 = 4096;
/// Offset of [`MARKING_TRAMPOLINE`] in the trampoline page.
const MARKING_AT: u64 = 16;

/// A store the called thread makes itself once the function returned: `value` (8 bytes,
/// little-endian) at `address`, writable memory of the target. It shows whether the function
/// returned even if lpkg died during the call (the thread then carries on by itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    /// Where the thread stores `value`.
    pub address: u64,
    /// What it stores there.
    pub value: u64,
}

impl Tracee {
    /// Call `func(args...)` (at most six integer arguments) in the stopped target on its main
    /// thread and return its `rax`. In an i386 process the call follows cdecl: the arguments
    /// (32 bits each) on the stack, `esp + 4` 16-byte aligned at entry, and the value returned
    /// is `eax`, zero-extended. Fails with [`Error::CallTimedOut`] when it does not return
    /// within `timeout` (the call is abandoned: whatever locks it held stay held) and with
    /// [`Error::CallFaulted`] when it faults; either way the thread is restored.
    pub fn call(&mut self, func: u64, args: &[u64], timeout: Duration) -> Result<u64> {
        let tid = self.worker_thread()?;
        self.call_on(tid, func, args, timeout)
    }

    /// [`Tracee::call`], and when `func` returns the thread itself stores the mark.
    pub fn call_marking(
        &mut self,
        func: u64,
        args: &[u64],
        timeout: Duration,
        mark: Mark,
    ) -> Result<u64> {
        let tid = self.worker_thread()?;
        self.call_with(tid, func, args, timeout, Some(mark))
    }

    /// [`Tracee::call`] on a given stopped thread.
    pub fn call_on(&mut self, tid: Pid, func: u64, args: &[u64], timeout: Duration) -> Result<u64> {
        self.call_with(tid, func, args, timeout, None)
    }

    fn call_with(
        &mut self,
        tid: Pid,
        func: u64,
        args: &[u64],
        timeout: Duration,
        mark: Option<Mark>,
    ) -> Result<u64> {
        // The called code may map anything.
        self.maps = None;
        let timeout = timeout.min(crate::MAX_TIMEOUT);
        if args.len() > MAX_CALL_ARGS {
            return Err(Error::TooManyArgs {
                count: args.len(),
                max: MAX_CALL_ARGS,
            });
        }
        if let Some(wide) = args.iter().find(|&&a| a > self.arch.word_max()) {
            return Err(Error::InvalidArgument {
                what: format!(
                    "call argument {wide:#x} is wider than a register of an {} process",
                    self.arch.name()
                ),
            });
        }
        self.require_stopped_thread(tid)?;
        let pid = self.pid;
        let sp = ptrace::getregs(tid, self.arch)
            .map_err(|e| ptrace::error(pid, tid, "PTRACE_GETREGS", e))?
            .sp();
        let altstack = self.altstack(tid, sp)?;
        if altstack.flags & libc::SS_ONSTACK != 0 {
            return Err(Error::OnAltStack { pid, tid });
        }
        let xstate = ptrace::get_xstate(tid)
            .map_err(|e| ptrace::error(pid, tid, "PTRACE_GETREGSET NT_X86_XSTATE", e))?;
        let trampoline = self.call_trampoline(tid)?;
        let call = Call {
            tid,
            func,
            args,
            timeout,
            altstack,
            xstate: &xstate,
            trampoline,
            mark,
        };
        // The alternate stack read stays valid for the next call on this thread, whatever this
        // one did: only the thread's own code counts, which has not run since (the cache is
        // dropped when the process is resumed). The frame's `uc_stack` is what `rt_sigreturn`
        // puts back if we die; a function that changed its thread's alternate stack would
        // see that undone then, as a signal handler does, so it is not a function to call.
        self.call_borrowing(&call).map(|(value, _)| value)
    }

    /// Maps the page calls return through now, on the thread calls run on (which must be
    /// stopped), if it is not mapped yet, so that a later call, in a stop of the whole
    /// process, does not pay for the `mmap`. [`Tracee::release_call_trampoline`] or the
    /// detach unmaps it.
    pub fn map_call_trampoline(&mut self) -> Result<()> {
        let tid = self.worker_thread()?;
        self.call_trampoline(tid).map(drop)
    }

    /// The page of the `rt_sigreturn` trampoline, mapped on first use (an injected `mmap` on
    /// `tid`) and kept for the next calls until [`Tracee::release_call_trampoline`] or the
    /// detach. Its own page: it must stay mapped for as long as a called function may return
    /// to it, which is forever if we die during the call.
    pub(crate) fn call_trampoline(&mut self, tid: Pid) -> Result<u64> {
        if let Some(page) = self.call_trampoline {
            return Ok(page);
        }
        let anonymous = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;
        let page = self.mmap_on(tid, 0, PAGE, Prot::RX, anonymous, -1, 0)?;
        let (sigreturn, _) = self.arch.sigreturn_trampoline();
        let (marking, _) = self.arch.marking_trampoline();
        let mut code = [0x0f, 0x0b].repeat(MARKING_AT as usize / 2); // ud2
        code[..sigreturn.len()].copy_from_slice(sigreturn);
        code.extend_from_slice(marking);
        if let Err(error) = memory::write(self.pid, page, &code) {
            let nr = self.arch.nr(Sys::Munmap);
            let _ = self.checked_syscall_on(tid, nr, [page, PAGE, 0, 0, 0, 0]);
            return Err(error);
        }
        self.call_trampoline = Some(page);
        Ok(page)
    }

    /// Unmaps the page that [`Tracee::call`] keeps for its calls, if one is mapped (an
    /// injected `munmap` on the thread calls run on, which must be stopped). Detaching does it
    /// too; calling it earlier keeps that system call out of a later stop of the process.
    pub fn release_call_trampoline(&mut self) -> Result<()> {
        let Some(page) = self.call_trampoline else {
            return Ok(());
        };
        let tid = self.worker_thread()?;
        let nr = self.arch.nr(Sys::Munmap);
        self.checked_syscall_on(tid, nr, [page, PAGE, 0, 0, 0, 0])?;
        self.call_trampoline = None;
        Ok(())
    }

    /// The thread's alternate signal stack, read with an injected `sigaltstack(NULL, &old)`
    /// into the unused stack below its red zone, once per stop of the thread.
    fn altstack(&mut self, tid: Pid, sp: u64) -> Result<AltStack> {
        if let Some(&altstack) = self.altstacks.get(&tid) {
            return Ok(altstack);
        }
        // In the room the frame of this injected system call leaves free above it
        // (`remote_syscall::OUTPUT_ROOM`): the frame must stay intact.
        let size = AltStack::size(self.arch);
        let scratch =
            sp.checked_sub(self.arch.red_zone() + size as u64)
                .ok_or(Error::NoStackRoom {
                    pid: self.pid,
                    tid,
                    sp,
                    needed: self.arch.red_zone() + size as u64,
                })?
                & !15;
        let nr = self.arch.nr(Sys::Sigaltstack);
        match self.checked_syscall_on(tid, nr, [0, scratch, 0, 0, 0, 0]) {
            // Nothing writable below the stack pointer (a thread that far-jumped to code of
            // another mode with a stack pointer of the other width, say): no room for a call.
            Err(Error::SyscallFailed {
                errno: libc::EFAULT,
                ..
            }) => {
                return Err(Error::NoStackRoom {
                    pid: self.pid,
                    tid,
                    sp,
                    needed: sp - scratch,
                })
            }
            other => other?,
        };
        let bytes = self.mem()?.read(scratch, size)?;
        let altstack = AltStack::from_bytes(self.arch, &bytes).expect("read returns all bytes");
        self.altstacks.insert(tid, altstack);
        Ok(altstack)
    }

    /// The return value, and whether the function made system calls.
    fn call_borrowing(&mut self, call: &Call) -> Result<(u64, bool)> {
        let saved = self.borrow_thread(call.tid)?;
        // Nothing of the thread changes before its registers are set in `call_borrowed`: a
        // failure up to there leaves nothing to give back (and its restart block intact).
        let frame = self.write_frame(call, &saved)?;
        test_hook::reached(self.pid, call.tid, test_hook::CALL_FRAME_WRITTEN)?;
        let result = self.call_borrowed(call, &saved, frame);
        // Code that made system calls may have reset the restart block: see
        // `without_restart_block`.
        let saved = match result {
            Ok((_, false)) => saved,
            _ => Saved {
                regs: saved.regs.without_restart_block(),
                ..saved
            },
        };
        // A call that returned had its mask and FPU state put back at the rt_sigreturn entry
        // already: only the registers' exact form is left to restore.
        let restored = match result {
            Ok(_) => self.give_back_registers(&saved),
            Err(_) => self.give_back(&saved, Some(call.xstate)),
        };
        let value = result?;
        restored?;
        Ok(value)
    }

    /// Writes the call's signal frame on the thread's stack (below its red zone, where nothing
    /// of the thread lives), growing the stack if needed; returns the frame's address.
    fn write_frame(&mut self, call: &Call, saved: &Saved) -> Result<u64> {
        let below = saved.regs.sp().saturating_sub(self.arch.red_zone());
        let state = (call.altstack, call.xstate);
        self.place_frame(saved, state, call.args, call.return_to(), below)
    }

    /// The return value, and whether the function made system calls.
    fn call_borrowed(&mut self, call: &Call, saved: &Saved, frame: u64) -> Result<(u64, bool)> {
        let (pid, tid) = (self.pid, call.tid);
        let mut regs = saved.regs;
        regs.prepare_call(call.func, frame, call.args);
        let syscall_end = match call.mark {
            Some(mark) => {
                regs.set_mark(mark.address, mark.value);
                self.arch.marking_trampoline().1
            }
            None => self.arch.sigreturn_trampoline().1,
        };
        let end = End {
            pc: call.return_to() + syscall_end,
            nr: self.arch.nr(Sys::RtSigreturn),
        };
        // At the rt_sigreturn entry: the thread's whole context back at once, the call skipped.
        // From here on the thread is whole even if we die before giving it back. The registers
        // go last: until they are set (orig_rax = -1), rt_sigreturn is still to run and would
        // put back the mask and FPU state from the frame if we died.
        let at_entry = |_: &Registers, made_syscalls: bool| -> Result<()> {
            ptrace::set_sigmask(tid, saved.mask)
                .map_err(|e| ptrace::error(pid, tid, "PTRACE_SETSIGMASK", e))?;
            ptrace::set_xstate(tid, call.xstate)
                .map_err(|e| ptrace::error(pid, tid, "PTRACE_SETREGSET NT_X86_XSTATE", e))?;
            let resumed = if made_syscalls {
                saved.regs.without_restart_block().resumed()
            } else {
                saved.regs.resumed()
            };
            ptrace::setregs(tid, &resumed).map_err(|e| ptrace::error(pid, tid, "PTRACE_SETREGS", e))
        };
        let deadline = Instant::now() + call.timeout;
        match self.run_borrowed(
            tid,
            Some(&regs),
            end,
            at_entry,
            deadline,
            test_hook::CALL_READY,
            true,
        )? {
            // The trampoline moved the return value to the first argument register.
            Outcome::Returned {
                entry,
                made_syscalls,
                ..
            } => Ok((entry.first_arg(), made_syscalls)),
            Outcome::Trapped { sig, addr, regs } => Err(Error::CallFaulted {
                pid,
                tid,
                signal: sig,
                addr,
                pc: regs.pc(),
            }),
            Outcome::TimedOut => Err(Error::CallTimedOut {
                pid,
                tid,
                func: call.func,
                timeout: call.timeout,
            }),
        }
    }
}

/// One call's parameters and the thread state read before it.
struct Call<'a> {
    tid: Pid,
    func: u64,
    args: &'a [u64],
    timeout: Duration,
    altstack: AltStack,
    xstate: &'a [u8],
    trampoline: u64,
    mark: Option<Mark>,
}

impl Call<'_> {
    /// Where the function returns to: the trampoline that marks its return, or the plain one.
    fn return_to(&self) -> u64 {
        match self.mark {
            Some(_) => self.trampoline + MARKING_AT,
            None => self.trampoline,
        }
    }
}
