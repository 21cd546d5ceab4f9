//! Leading a thread out of the function it is executing: it runs on until that function
//! returns, and stops right there, outside it.
//!
//! Stopping a thread at random moments rarely finds it outside a function it spends nearly all
//! its time in (a hash or checksum called in a loop: interrupts land on a few instructions of
//! the inner loop). Instead the function's return address, on the thread's stack, is made to
//! lead through a few instructions of ours in the page calls return through: they keep the
//! return value, make `getpid`, and jump to the real return address. The thread runs with
//! `PTRACE_SYSCALL` until that `getpid`; there it is given the state of a plain return (the
//! call skipped) and stopped. No code of the target is changed and no trap flag is armed: if
//! lpkg dies at any point, the thread makes a `getpid` and returns where it would have.

use std::time::{Duration, Instant};

use crate::arch::{Registers, Sys};
use crate::inject::{End, Outcome};
use crate::{ptrace, test_hook, Error, Pid, Result, Tracee};

/// Offset of the lead-out code in the page calls return through (after the return trampolines).
const LEAD_OUT_AT: u64 = 64;

impl Tracee {
    /// Lets stopped thread `tid`, executing a function whose return address is stored at
    /// `slot` on its stack, run until that function returns; true when it did within `timeout`:
    /// the thread is then stopped just past the return, with the state a plain return gives.
    /// False when it did not (it is stopped wherever it was, the return address put back), or
    /// when it raised a signal on its way (handed back to it on resume).
    pub fn lead_out(&mut self, tid: Pid, slot: u64, timeout: Duration) -> Result<bool> {
        self.require_stopped_thread(tid)?;
        let pid = self.pid;
        let page = self.call_trampoline(tid)?;
        let code = page + LEAD_OUT_AT;
        // A return address is as wide as a pointer: 4 bytes in an i386 process.
        let width = self.arch.pointer_size();
        let mut ret_bytes = [0u8; 8];
        ret_bytes[..width].copy_from_slice(&self.mem()?.read(slot, width)?);
        let ret = u64::from_le_bytes(ret_bytes);
        let (trampoline, syscall_end) =
            self.arch
                .lead_out_trampoline(code, ret)
                .ok_or_else(|| Error::InvalidArgument {
                    what: format!("return address {ret:#x} at {slot:#x} out of reach"),
                })?;
        self.mem()?.write(code, &trampoline)?;
        let regs = ptrace::getregs(tid, self.arch)
            .map_err(|e| ptrace::error(pid, tid, "PTRACE_GETREGS", e))?;
        // From this write on, the function returns through our code, with or without us.
        self.mem()?.write(slot, &code.to_le_bytes()[..width])?;
        let end = End {
            pc: code + syscall_end,
            nr: self.arch.nr(Sys::Getpid),
        };
        let at_entry = |entry: &Registers, _: bool| -> Result<()> {
            let mut returned = *entry;
            returned.returned_to(ret);
            ptrace::setregs(tid, &returned)
                .map_err(|e| ptrace::error(pid, tid, "PTRACE_SETREGS", e))
        };
        let deadline = Instant::now() + timeout.min(crate::MAX_TIMEOUT);
        let outcome = self.run_borrowed(
            tid,
            Some(&regs),
            end,
            at_entry,
            deadline,
            test_hook::LEAD_OUT_READY,
            false,
        );
        if let Ok(Outcome::Returned { .. }) = outcome {
            // The stack as a plain return leaves it: the return address where `ret` took it.
            self.mem()?.write(slot, &ret.to_le_bytes()[..width])?;
            return Ok(true);
        }
        // Still inside, or gone elsewhere (a longjmp): the return address back where our code
        // still stands in for it. A slot that no longer holds our address belongs to another
        // frame now.
        if self.mem()?.read(slot, width)? == code.to_le_bytes()[..width] {
            self.mem()?.write(slot, &ret.to_le_bytes()[..width])?;
        }
        match outcome? {
            Outcome::Trapped { sig, .. } => {
                // The thread's own signal (a fault, an abort): it gets it when resumed.
                if let Ok(info) = ptrace::getsiginfo(tid) {
                    self.deferred.push((tid, sig, info));
                }
                Ok(false)
            }
            _ => Ok(false),
        }
    }
}
