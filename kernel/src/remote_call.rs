//! init_pend / rt_handlereturn / check_init: call a function inside the target on one of its
//! own threads, the way a signal handler runs, and get its return value back.
//!
//! The thread's state is saved; its stack pointer goes below the 128-byte red zone, aligned so
//! that `rsp % 16 == 8` at entry (as right after a `call`), with a return address of 0 pushed:
//! when the function returns, the jump to address 0 faults, the kernel stops the thread with
//! SIGSEGV for us, and we read `rax`. Then everything is restored and the fault never reaches
//! the target. Any other signal the function raises is reported as [`Error::CallFaulted`].

use std::time::{Duration, Instant};

use crate::arch::current::{MAX_CALL_ARGS, RED_ZONE};
use crate::inject::{End, Outcome};
use crate::{maps, memory, Error, Pid, Result, Tracee};

/// The return address we push: page 0 is never mapped (mmap_min_addr), so returning there
/// faults with pc 0 and the stack pointer just above the slot we wrote.
const RETURN_TRAP: u64 = 0;

impl Tracee {
    /// Call `func(args...)` (at most six integer arguments) in the stopped target on its main
    /// thread and return its `rax`. Fails with [`Error::CallTimedOut`] when it does not return
    /// within `timeout` (the call is abandoned: whatever locks it held stay held) and with
    /// [`Error::CallFaulted`] when it faults; either way the thread is restored.
    pub fn call(&mut self, func: u64, args: &[u64], timeout: Duration) -> Result<u64> {
        let tid = self.worker_thread()?;
        self.call_on(tid, func, args, timeout)
    }

    /// [`Tracee::call`] on a given stopped thread.
    pub fn call_on(&mut self, tid: Pid, func: u64, args: &[u64], timeout: Duration) -> Result<u64> {
        if args.len() > MAX_CALL_ARGS {
            return Err(Error::TooManyArgs {
                count: args.len(),
                max: MAX_CALL_ARGS,
            });
        }
        self.require_stopped_thread(tid)?;
        if maps::read(self.pid)?
            .iter()
            .any(|m| m.contains(RETURN_TRAP))
        {
            return Err(Error::InvalidArgument {
                what: format!("process {} maps page 0: no return trap", self.pid),
            });
        }
        let saved = self.borrow_thread(tid)?;
        let result = self.call_borrowed(tid, saved.regs, func, args, timeout);
        let restored = self.give_back(&saved);
        let value = result?;
        restored?;
        Ok(value)
    }

    fn call_borrowed(
        &mut self,
        tid: Pid,
        mut regs: crate::arch::current::Registers,
        func: u64,
        args: &[u64],
        timeout: Duration,
    ) -> Result<u64> {
        let pid = self.pid;
        let sp = ((regs.sp() - RED_ZONE) & !15) - 8;
        memory::write_u64(pid, sp, RETURN_TRAP)?;
        regs.prepare_call(func, sp, args);
        // Never reached: the call ends with the fault at the return trap.
        let end = End {
            pc: RETURN_TRAP,
            nr: u64::MAX,
        };
        match self.run_borrowed(tid, &regs, end, |_| None, Instant::now() + timeout)? {
            Outcome::Returned { exit, .. } => Err(Error::UnexpectedStop {
                pid,
                tid,
                what: format!("returned at pc {:#x}", exit.pc()),
            }),
            Outcome::Trapped {
                sig: libc::SIGSEGV,
                regs,
                ..
            } if regs.pc() == RETURN_TRAP && regs.sp() == sp + 8 => Ok(regs.return_value()),
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
                func,
                timeout,
            }),
        }
    }
}
