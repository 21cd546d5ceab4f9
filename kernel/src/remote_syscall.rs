//! mmap3 / munmap3 and friends: system calls run inside the target by one of its threads.
//!
//! The thread's registers, mask and FPU state are saved and a signal frame holding them is
//! written on its stack, as the kernel would for a signal handler. The thread is set to run
//! `rt_sigreturn` on that frame, through a restorer already in the target (glibc's or musl's
//! `__restore_rt`, `mov $15,%rax; syscall`); at the entry stop of that `rt_sigreturn` our call
//! takes its place, returning to the restorer. So at every instant the thread either has its
//! own registers or is about to run `rt_sigreturn` on its own context: if lpkg dies anywhere
//! in between, the kernel lets the thread go and it comes back exactly to where it was (a
//! system call it was inside made again). Alive, we stop the thread right after our call and
//! put its registers back exactly, `orig_rax` included, so that a thread stopped inside a
//! blocking system call has it restarted by the kernel on resume as if nothing had happened.
//! It is never single-stepped: see `inject`.
//!
//! A target with no restorer in its files (a program without libc; static glibc and musl
//! programs have one) gets the bare path: the registers are pointed at an existing `syscall` instruction
//! (found in the vdso, else libc's text) with the call's number and arguments, unprotected if
//! lpkg dies in between.

use std::time::{Duration, Instant};

use std::os::unix::ffi::OsStrExt;

use crate::arch::{AltStack, Registers, Sys};
use crate::inject::{End, Outcome, Saved};
use crate::maps::MapEntry;
use crate::{ptrace, test_hook, Error, Pid, Result, Tracee};

/// Longest time an injected system call may take (ours never block).
const SYSCALL_TIMEOUT: Duration = Duration::from_secs(10);

const PAGE: u64 = 4096;

/// Bytes kept free between the red zone and the signal frame of an injected system call, for
/// what the call itself writes on the stack there (`Tracee::altstack`'s `stack_t`): the frame
/// must stay intact until the thread is given back.
pub(crate) const OUTPUT_ROOM: u64 = 64;
const _: () = assert!(AltStack::MAX_SIZE as u64 + 15 <= OUTPUT_ROOM);

/// `MAP_FIXED_NOREPLACE` (Linux 4.17); older kernels ignore it and treat the address as a hint.
const MAP_FIXED_NOREPLACE: i32 = 0x10_0000;

/// `MFD_NOEXEC_SEAL` (Linux 6.3): the memfd can never be made executable as a file (execve),
/// which `vm.memfd_noexec` = 2 requires of every memfd; mapping it with `PROT_EXEC` stays
/// allowed, and that is all a module needs. Older kernels refuse the flag with EINVAL.
const MFD_NOEXEC_SEAL: u64 = 0x8;

/// Longest name memfd_create accepts (249 bytes plus the `memfd:` prefix fit in 255).
const MEMFD_NAME_MAX: usize = 249;

/// `vm.mmap_min_addr`, the lowest address a process may map (read once: a setting that
/// changes with the administrator's sysctl, and only a lower bound for choosing holes).
fn mmap_min_addr() -> u64 {
    static MIN_ADDR: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *MIN_ADDR.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/vm/mmap_min_addr")
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(65536)
            .max(PAGE)
    })
}

fn page_up(x: u64) -> u64 {
    x.div_ceil(PAGE) * PAGE
}

/// The protection of a mapping made in the target (mmap(2)'s `PROT_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prot(i32);

impl Prot {
    /// No access.
    pub const NONE: Prot = Prot(libc::PROT_NONE);
    /// Readable.
    pub const READ: Prot = Prot(libc::PROT_READ);
    /// Writable.
    pub const WRITE: Prot = Prot(libc::PROT_WRITE);
    /// Executable.
    pub const EXEC: Prot = Prot(libc::PROT_EXEC);
    /// Readable and writable.
    pub const RW: Prot = Prot(libc::PROT_READ | libc::PROT_WRITE);
    /// Readable and executable.
    pub const RX: Prot = Prot(libc::PROT_READ | libc::PROT_EXEC);

    /// The system call argument.
    fn bits(self) -> u64 {
        self.0 as u64
    }
}

impl std::ops::BitOr for Prot {
    type Output = Prot;
    fn bitor(self, other: Prot) -> Prot {
        Prot(self.0 | other.0)
    }
}

/// The borrow that the system calls of a [`Tracee::batched`] run share.
pub(crate) struct Batch {
    /// The thread and its own state.
    pub(crate) saved: Saved,
    /// Where the thread runs `rt_sigreturn`, and where each call returns.
    restorer: u64,
    /// The registers the next call starts from: the frame's `rt_sigreturn` about to run.
    /// `None` when the thread has them already: back from a call of ours whose result the
    /// kernel's restart logic leaves alone, it runs on from its stop exactly as they would
    /// have it (only `orig_rax` differs, which matters to nothing but that logic).
    at: Option<Registers>,
    /// Whether the thread's asynchronous signals are blocked already (after the first call).
    masked: bool,
    /// [`OUTPUT_ROOM`] bytes between the red zone and the frame, free for the calls' input.
    room: u64,
}

/// The thread's registers after system call `nr`, which was to return to `back`; an error
/// for any other ending.
fn call_result(pid: Pid, tid: Pid, nr: u64, back: u64, outcome: Outcome) -> Result<Registers> {
    match outcome {
        Outcome::Returned { exit, .. } if exit.pc() == back && exit.syscall_nr() == Some(nr) => {
            Ok(exit)
        }
        Outcome::Returned { exit: regs, .. } => Err(Error::UnexpectedStop {
            pid,
            tid,
            what: format!(
                "pc {:#x}, system call {:?} after system call {nr}",
                regs.pc(),
                regs.syscall_nr()
            ),
        }),
        Outcome::Trapped { sig, regs, .. } => Err(Error::UnexpectedStop {
            pid,
            tid,
            what: format!(
                "signal {sig} at pc {:#x} while running system call {nr}",
                regs.pc()
            ),
        }),
        Outcome::TimedOut => Err(Error::UnexpectedStop {
            pid,
            tid,
            what: format!("system call {nr} did not complete within {SYSCALL_TIMEOUT:?}"),
        }),
    }
}

impl Tracee {
    /// Run system call `nr` with `args` in the target (which must be stopped) on its main
    /// thread, the way its architecture makes them ([`Tracee::arch`]: `nr` is that
    /// architecture's number, `crate::arch::Arch::nr`; on i386 the arguments are cut to 32
    /// bits). Returns the raw result: a negative value is `-errno`.
    ///
    /// The thread's own context waits in a signal frame below its red zone (about 1 KiB plus
    /// its XSAVE state) that `rt_sigreturn` loads if lpkg dies before putting the thread back:
    /// it then comes back to where it was, the call made or not (see the module's doc for the
    /// programs where that cannot be done).
    pub fn syscall(&mut self, nr: u64, args: [u64; 6]) -> Result<i64> {
        let tid = self.worker_thread()?;
        self.syscall_on(tid, nr, args)
    }

    /// [`Tracee::syscall`] on a given stopped thread.
    pub(crate) fn syscall_on(&mut self, tid: Pid, nr: u64, args: [u64; 6]) -> Result<i64> {
        self.inject_syscall(tid, nr, args, true)
    }

    /// [`Tracee::syscall`] on a given stopped thread without a signal frame: for the one call
    /// that makes room for frames on the stack (see `inject::place_frame`).
    pub(crate) fn unframed_syscall_on(&mut self, tid: Pid, nr: u64, args: [u64; 6]) -> Result<i64> {
        self.inject_syscall(tid, nr, args, false)
    }

    fn inject_syscall(&mut self, tid: Pid, nr: u64, args: [u64; 6], framed: bool) -> Result<i64> {
        self.require_stopped_thread(tid)?;
        if !self.sandbox_checked.contains(&tid) {
            // Before the first call on this thread: one its seccomp filter kills would kill
            // the process.
            // The instruction pointer a filter sees: looked for only when there is a filter.
            let (pid, arch) = (self.pid, self.arch);
            crate::seccomp::check(pid, tid, || self.syscall_insn(), arch)?;
            self.sandbox_checked.insert(tid);
        }
        self.injected.set(self.injected.get() + 1);
        // What the process maps changes with every call but these.
        let keeps_maps = [Sys::MemfdCreate, Sys::Ftruncate, Sys::Close];
        if !keeps_maps.iter().any(|&call| self.arch.nr(call) == nr) {
            self.maps = None;
        }
        if framed && self.open_batch(tid)? {
            // A call on its own is a batch of one.
            let result = self.batched_syscall(nr, args);
            if self.batching {
                return result;
            }
            let ended = self.end_batch();
            let value = result?;
            ended?;
            return Ok(value);
        }
        self.bare_syscall(tid, nr, args)
    }

    /// A system call without a frame (see the module's doc): the registers pointed at an
    /// existing `syscall` instruction.
    fn bare_syscall(&mut self, tid: Pid, nr: u64, args: [u64; 6]) -> Result<i64> {
        let pid = self.pid;
        let saved = self.borrow_thread(tid)?;
        let insn = self.syscall_insn()?;
        let mut regs = saved.regs;
        regs.prepare_syscall(insn, nr, args);
        let back = insn + self.arch.syscall_insn().len() as u64;
        let deadline = Instant::now() + SYSCALL_TIMEOUT;
        let outcome = self
            .run_borrowed(
                tid,
                Some(&regs),
                End { pc: back, nr },
                |_: &Registers, _: bool| Ok(()),
                deadline,
                test_hook::SYSCALL_READY,
                true,
            )
            .and_then(|outcome| {
                test_hook::reached(pid, tid, test_hook::SYSCALL_DONE)?;
                Ok(outcome)
            });
        let restored = self.give_back(&saved, None);
        let result = call_result(pid, tid, nr, back, outcome?).map(|exit| exit.syscall_result());
        restored?;
        result
    }

    /// Runs `f` with the system calls it injects (framed, on one thread) sharing one borrow
    /// of the thread: its registers, mask and XSAVE state are read and its signal frame
    /// written once, and each call after the first starts where the last one left the thread,
    /// back at the restorer, which then enters `rt_sigreturn` again for the next call to take
    /// its place. Between two calls the thread is as within one: about to run `rt_sigreturn`
    /// on its own context, so lpkg dying there gives it back all the same. It is given back
    /// when `f` returns (or a call fails). Only system calls (and memory accesses) may be made
    /// in `f`: its registers are ours until then.
    pub fn batched<T, E: From<Error>>(
        &mut self,
        f: impl FnOnce(&mut Tracee) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E> {
        if self.batching {
            return f(self);
        }
        self.batching = true;
        let result = f(self);
        self.batching = false;
        let ended = self.end_batch();
        let value = result?;
        ended?;
        Ok(value)
    }

    /// Makes sure the batch's borrow is of `tid` (giving back another thread's); false when
    /// the thread cannot be borrowed that way (no restorer, no room for a frame): its calls
    /// then go one by one.
    fn open_batch(&mut self, tid: Pid) -> Result<bool> {
        if self.batch.as_ref().is_some_and(|b| b.saved.tid == tid) {
            return Ok(true);
        }
        self.end_batch()?;
        let saved = self.borrow_thread(tid)?;
        let Some(restorer) = self.restorer()? else {
            return Ok(false);
        };
        let Some(frame) = self.syscall_frame(&saved, restorer)? else {
            return Ok(false);
        };
        let mut at = saved.regs;
        at.prepare_sigreturn(restorer, frame);
        let room = (saved.regs.sp())
            .saturating_sub(self.arch.red_zone())
            .saturating_sub(OUTPUT_ROOM);
        self.batch = Some(Batch {
            saved,
            restorer,
            at: Some(at),
            masked: false,
            room,
        });
        Ok(true)
    }

    /// Gives the batch's thread back, if one is borrowed.
    fn end_batch(&mut self) -> Result<()> {
        match self.batch.take() {
            Some(batch) => self.give_back(&batch.saved, None),
            None => Ok(()),
        }
    }

    /// One call of the open batch (see [`Tracee::batched`]): the thread, set to enter the
    /// frame's `rt_sigreturn`, makes our call in its place at its entry stop and returns to
    /// the restorer. Any failure gives the thread back.
    fn batched_syscall(&mut self, nr: u64, args: [u64; 6]) -> Result<i64> {
        let pid = self.pid;
        let Some(batch) = self.batch.as_ref() else {
            return Err(Error::InvalidArgument {
                what: "no batch of system calls is open".into(),
            });
        };
        let (tid, back, at, masked) = (batch.saved.tid, batch.restorer, batch.at, batch.masked);
        let end = End {
            pc: back + self.arch.restore_rt().len() as u64,
            nr: self.arch.nr(Sys::RtSigreturn),
        };
        let at_entry = |entry: &Registers, _: bool| -> Result<()> {
            let mut ours = *entry;
            ours.replace_syscall(nr, args, back);
            ptrace::setregs(tid, &ours)
                .map_err(|e| ptrace::error(pid, tid, "PTRACE_SETREGS", e))?;
            test_hook::reached(pid, tid, test_hook::SYSCALL_ENTERED)
        };
        let deadline = Instant::now() + SYSCALL_TIMEOUT;
        let between = match masked {
            true => test_hook::reached(pid, tid, test_hook::SYSCALL_NEXT),
            false => Ok(()),
        };
        let outcome = between
            .and_then(|()| {
                self.run_borrowed(
                    tid,
                    at.as_ref(),
                    end,
                    at_entry,
                    deadline,
                    test_hook::SYSCALL_READY,
                    !masked,
                )
            })
            .and_then(|outcome| {
                test_hook::reached(pid, tid, test_hook::SYSCALL_DONE)?;
                Ok(outcome)
            })
            .and_then(|outcome| call_result(pid, tid, nr, back, outcome));
        match outcome {
            Ok(exit) => {
                if let Some(batch) = self.batch.as_mut() {
                    // Back at the restorer, whose `rt_sigreturn` the next call replaces; no
                    // restart logic applies to a call of ours.
                    batch.at = exit.in_restartable_syscall().then(|| exit.resumed());
                    batch.masked = true;
                }
                Ok(exit.syscall_result())
            }
            Err(error) => {
                let _ = self.end_batch();
                Err(error)
            }
        }
    }

    /// Writes the frame of an injected system call on the borrowed thread's stack, below the
    /// room left for the call's output, and returns its address; None when the stack has no
    /// room for it and cannot grow (the call then goes without a frame, as it did before
    /// frames: the thread at its stack limit is not protected, but the call is made).
    fn syscall_frame(&mut self, saved: &Saved, restorer: u64) -> Result<Option<u64>> {
        let (pid, tid) = (self.pid, saved.tid);
        let xstate = ptrace::get_xstate(tid)
            .map_err(|e| ptrace::error(pid, tid, "PTRACE_GETREGSET NT_X86_XSTATE", e))?;
        let below = (saved.regs.sp())
            .saturating_sub(self.arch.red_zone())
            .saturating_sub(OUTPUT_ROOM);
        let state = (AltStack::UNCHANGED, xstate.as_slice());
        match self.place_frame(saved, state, &[], restorer, below) {
            Ok(frame) => Ok(Some(frame)),
            Err(Error::NoStackRoom { .. }) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Like [`Tracee::syscall`], turning `-errno` into [`Error::SyscallFailed`].
    fn checked_syscall(&mut self, nr: u64, args: [u64; 6]) -> Result<u64> {
        let tid = self.worker_thread()?;
        self.checked_syscall_on(tid, nr, args)
    }

    /// [`Tracee::checked_syscall`] on a given stopped thread.
    pub(crate) fn checked_syscall_on(&mut self, tid: Pid, nr: u64, args: [u64; 6]) -> Result<u64> {
        let ret = self.syscall_on(tid, nr, args)?;
        if (-4095..0).contains(&ret) {
            return Err(Error::SyscallFailed {
                pid: self.pid,
                nr,
                errno: -ret as i32,
            });
        }
        Ok(ret as u64)
    }

    /// mmap(2) in the target (`mmap2` in an i386 process, which takes only page-aligned
    /// offsets); returns the mapping's address.
    pub fn mmap(
        &mut self,
        addr: u64,
        len: u64,
        prot: Prot,
        flags: i32,
        fd: i32,
        off: u64,
    ) -> Result<u64> {
        let tid = self.worker_thread()?;
        self.mmap_on(tid, addr, len, prot, flags, fd, off)
    }

    /// [`Tracee::mmap`] on a given stopped thread.
    #[allow(clippy::too_many_arguments)] // mmap(2)'s six and the thread
    pub(crate) fn mmap_on(
        &mut self,
        tid: Pid,
        addr: u64,
        len: u64,
        prot: Prot,
        flags: i32,
        fd: i32,
        off: u64,
    ) -> Result<u64> {
        let Some(unit_off) = self.arch.mmap_offset(off) else {
            return Err(Error::InvalidArgument {
                what: format!(
                    "mmap offset {off:#x} is not page-aligned, as an {} process needs it",
                    self.arch.name()
                ),
            });
        };
        let nr = self.arch.nr(Sys::Mmap);
        let args = [
            addr,
            len,
            prot.bits(),
            flags as u64,
            fd as i64 as u64,
            unit_off,
        ];
        self.checked_syscall_on(tid, nr, args)
    }

    /// mprotect(2) in the target.
    pub fn mprotect(&mut self, addr: u64, len: u64, prot: Prot) -> Result<()> {
        let nr = self.arch.nr(Sys::Mprotect);
        self.checked_syscall(nr, [addr, len, prot.bits(), 0, 0, 0])
            .map(drop)
    }

    /// munmap(2) in the target.
    pub fn munmap(&mut self, addr: u64, len: u64) -> Result<()> {
        self.checked_syscall(self.arch.nr(Sys::Munmap), [addr, len, 0, 0, 0, 0])
            .map(drop)
    }

    /// Map `len` bytes of anonymous private memory with `prot` in a free range whose every byte
    /// is within ±2 GiB of `near` (reachable by a `jmp rel32` placed at `near`). Never replaces
    /// an existing mapping.
    pub fn map_near(&mut self, near: u64, len: u64, prot: Prot) -> Result<u64> {
        self.map_near_fd(near, len, prot, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1)
    }

    /// Like [`Tracee::map_near`], but a private mapping of a new memfd named `name`, made in
    /// one batch: the same private memory, except that it shows as `/memfd:NAME (deleted)` in
    /// /proc/PID/maps (and never merges with a neighbour), so it can be found again by name
    /// (and its parts by their file offsets once protections split it). It may be mapped
    /// executable whatever `vm.memfd_noexec` says: the memfd is sealed against execve
    /// (`MFD_NOEXEC_SEAL`), not against `PROT_EXEC`.
    pub fn memfd_map_near(&mut self, name: &str, near: u64, len: u64, prot: Prot) -> Result<u64> {
        let len = page_up(len.max(1));
        self.batched(|t| {
            let fd = t.memfd_create(name, MFD_NOEXEC_SEAL)?;
            let mapped = t
                .checked_syscall(t.arch.nr(Sys::Ftruncate), [fd, len, 0, 0, 0, 0])
                .and_then(|_| t.map_near_fd(near, len, prot, libc::MAP_PRIVATE, fd as i32));
            let closed = t.checked_syscall(t.arch.nr(Sys::Close), [fd, 0, 0, 0, 0, 0]);
            let addr = mapped?;
            closed?;
            Ok(addr)
        })
    }

    fn map_near_fd(&mut self, near: u64, len: u64, prot: Prot, flags: i32, fd: i32) -> Result<u64> {
        let len = page_up(len.max(1));
        let no_hole = Error::NoHoleNear {
            pid: self.pid,
            addr: near,
            len,
        };
        let min_addr = mmap_min_addr();
        let reach = self.arch.jump_reach();
        let low = near.saturating_sub(reach).max(min_addr);
        let high = near.saturating_add(reach).min(self.arch.user_top());
        let reachable = |a: u64| a >= low && a.checked_add(len).is_some_and(|e| e <= high);
        let candidates = holes(&self.maps()?, low, high, len, near);
        if candidates.is_empty() {
            return Err(no_hole);
        }
        let flags = flags | MAP_FIXED_NOREPLACE;
        let mut above_limit = None;
        for want in candidates {
            match self.mmap(want, len, prot, flags, fd, 0) {
                Ok(got) if got == want || reachable(got) => return Ok(got),
                // A kernel without MAP_FIXED_NOREPLACE took the address as a mere hint.
                Ok(got) => self.munmap(got, len)?,
                // Someone mapped there since we read the maps: try the next hole.
                Err(Error::SyscallFailed {
                    errno: libc::EEXIST,
                    ..
                }) => {}
                // Past the process's own top: an i386 process whose personality has
                // ADDR_LIMIT_3GB ends at 3 GiB, not at `Arch::user_top`. A lower hole may do.
                Err(
                    e @ Error::SyscallFailed {
                        errno: libc::ENOMEM,
                        ..
                    },
                ) => above_limit = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(above_limit.unwrap_or(no_hole))
    }

    /// Create a memfd named `name` in the target, size it to `len`, map it shared read-write,
    /// and close the descriptor. The mapping shows in /proc/PID/maps as
    /// `/memfd:NAME (deleted)`, which is how lpkg finds its records again.
    pub fn memfd_map(&mut self, name: &str, len: u64) -> Result<u64> {
        self.memfd_map_with(name, len, libc::MAP_SHARED)
    }

    /// Like [`Tracee::memfd_map`], but mapped private: a child that forks gets its own copy,
    /// so state written later in the parent is not seen by the child (lpkg's records).
    pub fn memfd_map_private(&mut self, name: &str, len: u64) -> Result<u64> {
        self.memfd_map_with(name, len, libc::MAP_PRIVATE)
    }

    fn memfd_map_with(&mut self, name: &str, len: u64, flags: i32) -> Result<u64> {
        self.batched(|t| {
            let fd = t.memfd_create(name, 0)?;
            let mapped = t
                .checked_syscall(t.arch.nr(Sys::Ftruncate), [fd, len, 0, 0, 0, 0])
                .and_then(|_| t.mmap(0, len, Prot::RW, flags, fd as i32, 0));
            let closed = t.checked_syscall(t.arch.nr(Sys::Close), [fd, 0, 0, 0, 0, 0]);
            let addr = mapped?;
            closed?;
            Ok(addr)
        })
    }

    /// `memfd_create(name, MFD_CLOEXEC | extra)` in the target; returns the descriptor. An
    /// `extra` flag the kernel does not know (EINVAL) is dropped and the call made again.
    fn memfd_create(&mut self, name: &str, extra: u64) -> Result<u64> {
        if name.len() > MEMFD_NAME_MAX || name.contains('\0') {
            return Err(Error::InvalidArgument {
                what: format!(
                    "memfd name {name:?} must be at most {MEMFD_NAME_MAX} bytes without NUL"
                ),
            });
        }
        let mut cname = name.as_bytes().to_vec();
        cname.push(0);
        // The name must be in the target's memory: in a batch, in the room above its frame
        // on the borrowed thread's stack.
        if self.batching && cname.len() <= OUTPUT_ROOM as usize {
            let worker = self.worker_thread()?;
            if self.open_batch(worker)? {
                let room = self.batch.as_ref().map_or(0, |b| b.room);
                self.mem()?.write(room, &cname)?;
                return self.memfd_create_at(room, extra);
            }
        }
        // Else on a scratch page.
        let scratch = self.mmap(
            0,
            PAGE,
            Prot::RW,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )?;
        let created = (self.mem()?.write(scratch, &cname))
            .and_then(|()| self.memfd_create_at(scratch, extra));
        let unmapped = self.munmap(scratch, PAGE);
        let fd = created?;
        if let Err(error) = unmapped {
            let _ = self.checked_syscall(self.arch.nr(Sys::Close), [fd, 0, 0, 0, 0, 0]);
            return Err(error);
        }
        Ok(fd)
    }

    /// `memfd_create` of the name at `name` in the target, with `extra` flags dropped where
    /// the kernel does not know them.
    fn memfd_create_at(&mut self, name: u64, extra: u64) -> Result<u64> {
        let flags = libc::MFD_CLOEXEC as u64;
        let nr = self.arch.nr(Sys::MemfdCreate);
        match self.checked_syscall(nr, [name, flags | extra, 0, 0, 0, 0]) {
            Err(Error::SyscallFailed {
                errno: libc::EINVAL,
                ..
            }) if extra != 0 => self.checked_syscall(nr, [name, flags, 0, 0, 0, 0]),
            other => other,
        }
    }

    /// Address of code doing `rt_sigreturn` exactly as glibc's and musl's `__restore_rt` do
    /// ([`crate::arch::Arch::restore_rt`]): in an i386 process the vDSO's own restorer, found by its
    /// symbol; else in an executable file the target maps, libc first; searched once. The
    /// bytes decode as that code wherever they are. None in a program without it (no libc).
    /// Never in lpkg's own mappings (memfds, anonymous), which it may unmap while the address
    /// is in use.
    fn restorer(&mut self) -> Result<Option<u64>> {
        if let Some(found) = self.restorer {
            return Ok(found);
        }
        let maps = self.maps()?;
        if let Some(name) = self.arch.vdso_restorer() {
            if let Some(at) = self.vdso_function(&maps, name, self.arch.restore_rt())? {
                self.restorer = Some(Some(at));
                return Ok(Some(at));
            }
        }
        let restore_rt = self.arch.restore_rt();
        let file = |m: &&MapEntry| {
            m.exec
                && m.read
                && m.path.as_ref().is_some_and(|p| {
                    let p = p.as_os_str().as_bytes();
                    p.starts_with(b"/") && !p.starts_with(b"/memfd:")
                })
        };
        let libc = |m: &&MapEntry| {
            m.path
                .as_ref()
                .is_some_and(|p| p.to_string_lossy().contains("libc"))
        };
        let candidates = maps
            .iter()
            .filter(file)
            .filter(libc)
            .chain(maps.iter().filter(file).filter(|m| !libc(m)));
        let mut found = None;
        for map in candidates {
            if let Some(at) = self.find_in_mapping(map, restore_rt)? {
                found = Some(at);
                break;
            }
        }
        self.restorer = Some(found);
        Ok(found)
    }

    /// The address of the vDSO's function `name`, from the vDSO's dynamic symbols, if the
    /// target has a vDSO that defines it and its code there is `code`.
    fn vdso_function(&mut self, maps: &[MapEntry], name: &str, code: &[u8]) -> Result<Option<u64>> {
        use object::{Object, ObjectSegment, ObjectSymbol};
        /// More than any vDSO (two pages); the target's to choose otherwise.
        const VDSO_MAX: u64 = 64 << 10;
        let Some(vdso) = maps.iter().find(|m| {
            m.exec && m.read && m.path.as_deref() == Some(std::path::Path::new("[vdso]"))
        }) else {
            return Ok(None);
        };
        let len = vdso.len().min(VDSO_MAX) as usize;
        let Ok(image) = self.mem()?.read(vdso.start, len) else {
            return Ok(None);
        };
        let Ok(elf) = object::File::parse(image.as_slice()) else {
            return Ok(None);
        };
        let base = elf.segments().map(|s| s.address()).min().unwrap_or(0);
        let found = elf
            .dynamic_symbols()
            .find(|s| s.name() == Ok(name))
            .and_then(|s| s.address().checked_sub(base));
        Ok(found.and_then(|offset| {
            let at = usize::try_from(offset).ok()?;
            let bytes = image.get(at..at.checked_add(code.len())?)?;
            (bytes == code).then_some(vdso.start + offset)
        }))
    }

    /// The first address of `bytes` in the mapping `map`. Where they were found in the same
    /// file (device, inode, file offset) before, in this or another process, that place is
    /// checked first; else the mapping is read a piece at a time, up to the first match: a
    /// libc's whole code is over a megabyte, its restorer near the start.
    fn find_in_mapping(&mut self, map: &MapEntry, bytes: &[u8]) -> Result<Option<u64>> {
        /// Where a byte pattern was found, by file and pattern: offset from the mapping start.
        type Seen = std::collections::HashMap<((u32, u32), u64, u64, Vec<u8>), u64>;
        static SEEN: std::sync::Mutex<Option<Seen>> = std::sync::Mutex::new(None);
        const PIECE: u64 = 64 << 10;
        let key = (map.dev, map.inode, map.offset, bytes.to_vec());
        let known = map.inode != 0;
        let hint = SEEN
            .lock()
            .ok()
            .and_then(|seen| seen.as_ref()?.get(&key).copied());
        if let Some(offset) = hint.filter(|_| known) {
            let at = map.start + offset;
            if self.mem()?.read(at, bytes.len()).is_ok_and(|b| b == bytes) {
                return Ok(Some(at));
            }
        }
        let mut start = map.start;
        while start < map.end {
            // Pieces overlap by the pattern's length less one, so no match falls between two.
            let end = start.saturating_add(PIECE).min(map.end);
            let Ok(code) = self.mem()?.read(start, (end - start) as usize) else {
                return Ok(None);
            };
            if let Some(i) = code.windows(bytes.len()).position(|w| w == bytes) {
                let at = start + i as u64;
                if let (true, Ok(mut seen)) = (known, SEEN.lock()) {
                    seen.get_or_insert_with(Default::default)
                        .insert(key, at - map.start);
                }
                return Ok(Some(at));
            }
            if end == map.end {
                break;
            }
            start = end - (bytes.len() as u64 - 1);
        }
        Ok(None)
    }

    /// Address of a system call instruction ([`crate::arch::Arch::syscall_insn`]: `syscall`, `int $0x80`)
    /// in the target: the vdso has one (its fallback paths, the i386 vDSO's
    /// `__kernel_vsyscall`), libc certainly does. The bytes decode as that instruction
    /// wherever they are.
    fn syscall_insn(&mut self) -> Result<u64> {
        if let Some(addr) = self.syscall_insn {
            return Ok(addr);
        }
        let maps = self.maps()?;
        let named = |m: &&MapEntry, what: &str| {
            m.exec
                && m.read
                && m.path
                    .as_ref()
                    .is_some_and(|p| p.to_string_lossy().contains(what))
        };
        let candidates = maps
            .iter()
            .filter(|m| named(m, "[vdso]"))
            .chain(maps.iter().filter(|m| named(m, "libc")))
            .chain(maps.iter().filter(|m| m.exec && m.read));
        for map in candidates {
            if let Some(at) = self.find_in_mapping(map, self.arch.syscall_insn())? {
                self.syscall_insn = Some(at);
                return Ok(at);
            }
        }
        Err(Error::NoSyscallInsn { pid: self.pid })
    }
}

/// Free, page-aligned start addresses for `len` bytes inside [`low`, `high`), one per hole,
/// each as close to `near` as its hole allows, nearest first.
fn holes(maps: &[MapEntry], low: u64, high: u64, len: u64, near: u64) -> Vec<u64> {
    let mut starts = Vec::new();
    let mut prev_end = 0u64;
    let bounds = maps
        .iter()
        .map(|m| (m.start, m.end))
        .chain(std::iter::once((u64::MAX, u64::MAX)));
    for (start, end) in bounds {
        // Keep one free page on each side so the mapping never touches a neighbour (stack
        // guard gaps, growsdown stacks).
        let hole_lo = page_up(prev_end.saturating_add(PAGE)).max(page_up(low));
        let hole_hi = (start.saturating_sub(PAGE) & !(PAGE - 1)).min(high & !(PAGE - 1));
        prev_end = prev_end.max(end);
        if hole_hi <= hole_lo || hole_hi - hole_lo < len {
            continue;
        }
        let ideal = (near & !(PAGE - 1)).clamp(hole_lo, hole_hi - len);
        starts.push(ideal);
    }
    starts.sort_by_key(|&a| a.abs_diff(near));
    starts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(start: u64, end: u64) -> MapEntry {
        MapEntry {
            start,
            end,
            read: true,
            write: false,
            exec: false,
            shared: false,
            offset: 0,
            dev: (0, 0),
            inode: 0,
            path: None,
            deleted: false,
        }
    }

    #[test]
    fn holes_prefer_nearest_and_keep_guard_pages() {
        let maps = [map(0x10_0000, 0x20_0000), map(0x40_0000, 0x50_0000)];
        let h = holes(&maps, 0x1_0000, 0x100_0000, 0x1000, 0x48_0000);
        assert_eq!(h[0], 0x50_1000); // just above the mapping holding `near`
        assert!(h.contains(&0x3f_e000)); // just below it, guard page kept
        let h = holes(&maps, 0x1_0000, 0x100_0000, 0x3f_0000, 0x48_0000);
        assert!(
            !h.contains(&0x20_1000),
            "hole between maps too small: {h:x?}"
        );
    }

    #[test]
    fn holes_respect_bounds() {
        let maps = [map(0x10_0000, 0x20_0000)];
        assert!(holes(&maps, 0x10_0000, 0x20_0000, 0x1000, 0x18_0000).is_empty());
    }
}
