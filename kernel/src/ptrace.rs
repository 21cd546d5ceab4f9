//! Thin wrappers over the ptrace requests and waitpid, all per thread.
//!
//! nix is used where it covers the request. Restarting requests and waitpid go through libc
//! because nix's `Signal` has no real-time signals, and a tracer must be able to see and
//! re-deliver any signal number.

use nix::errno::Errno;
use nix::sys::ptrace;
use nix::unistd::Pid as NixPid;

use crate::arch::{Arch, Registers};
use crate::{Error, Pid};

/// Map a failed ptrace request to the crate error. ESRCH (the thread is gone or not stopped as
/// expected because it exited) becomes [`Error::ProcessExited`] here and only here.
pub(crate) fn error(pid: Pid, tid: Pid, op: &'static str, errno: Errno) -> Error {
    match errno {
        Errno::ESRCH => Error::ProcessExited { pid },
        errno => Error::Ptrace {
            pid,
            tid,
            op,
            errno,
        },
    }
}

fn npid(tid: Pid) -> NixPid {
    NixPid::from_raw(tid)
}

/// Seize with clone tracing, and system-call stops marked (`SIGTRAP | 0x80`) so they are never
/// mistaken for a real SIGTRAP.
pub(crate) fn seize(tid: Pid) -> Result<(), Errno> {
    ptrace::seize(
        npid(tid),
        ptrace::Options::PTRACE_O_TRACECLONE | ptrace::Options::PTRACE_O_TRACESYSGOOD,
    )
}

pub(crate) fn interrupt(tid: Pid) -> Result<(), Errno> {
    ptrace::interrupt(npid(tid))
}

fn request(req: libc::c_uint, tid: Pid, addr: usize, data: usize) -> Result<libc::c_long, Errno> {
    // SAFETY: the requests passed here (CONT, LISTEN, SYSCALL, DETACH) take integers, not
    // pointers, in `addr` and `data`: the kernel reads no memory of ours.
    let ret = unsafe { libc::ptrace(req, tid, addr, data) };
    Errno::result(ret)
}

/// Resume, delivering signal `sig` (0 for none) if the thread is in a signal-delivery-stop.
pub(crate) fn cont(tid: Pid, sig: i32) -> Result<(), Errno> {
    request(libc::PTRACE_CONT, tid, 0, sig as usize).map(drop)
}

/// Resume from a group-stop without ending the group-stop.
pub(crate) fn listen(tid: Pid) -> Result<(), Errno> {
    request(libc::PTRACE_LISTEN, tid, 0, 0).map(drop)
}

/// Resume until the next system-call entry or exit (or any other stop). Unlike a single step
/// this arms nothing that outlives the tracer: the kernel clears syscall tracing when the tracer
/// dies, while a trap flag would stay set and kill the thread with SIGTRAP.
pub(crate) fn syscall(tid: Pid) -> Result<(), Errno> {
    request(libc::PTRACE_SYSCALL, tid, 0, 0).map(drop)
}

pub(crate) fn detach(tid: Pid, sig: i32) -> Result<(), Errno> {
    request(libc::PTRACE_DETACH, tid, 0, sig as usize).map(drop)
}

/// The thread's registers, in the x86_64 layout whatever its architecture (see `arch`): a
/// thread of an `arch` process.
pub(crate) fn getregs(tid: Pid, arch: Arch) -> Result<Registers, Errno> {
    ptrace::getregs(npid(tid)).map(|regs| Registers(regs, arch))
}

pub(crate) fn setregs(tid: Pid, regs: &Registers) -> Result<(), Errno> {
    ptrace::setregs(npid(tid), regs.0)
}

pub(crate) fn getsiginfo(tid: Pid) -> Result<libc::siginfo_t, Errno> {
    ptrace::getsiginfo(npid(tid))
}

/// `NT_X86_XSTATE`: the thread's FPU/SSE/AVX state in the XSAVE layout signal frames use.
const NT_X86_XSTATE: libc::c_int = 0x202;

/// Room for every XSAVE component user space can have (AVX-512 needs 2.7 KiB, AMX 11 KiB).
const XSTATE_MAX: usize = 16 * 1024;

/// The thread's extended FPU state (`PTRACE_GETREGSET NT_X86_XSTATE`), as long as the kernel
/// made it.
pub(crate) fn get_xstate(tid: Pid) -> Result<Vec<u8>, Errno> {
    let mut buf = vec![0u8; XSTATE_MAX];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: GETREGSET writes at most `iov_len` bytes to `iov_base`, our buffer of that size,
    // and updates `iov_len`; both live across the call.
    let ret = unsafe {
        libc::ptrace(
            libc::PTRACE_GETREGSET,
            tid,
            NT_X86_XSTATE as usize,
            &mut iov as *mut libc::iovec,
        )
    };
    Errno::result(ret)?;
    buf.truncate(iov.iov_len);
    Ok(buf)
}

/// Put back a state read by [`get_xstate`].
pub(crate) fn set_xstate(tid: Pid, xstate: &[u8]) -> Result<(), Errno> {
    let mut iov = libc::iovec {
        iov_base: xstate.as_ptr() as *mut libc::c_void,
        iov_len: xstate.len(),
    };
    // SAFETY: SETREGSET only reads `iov_len` bytes from `iov_base`, the caller's slice.
    let ret = unsafe {
        libc::ptrace(
            libc::PTRACE_SETREGSET,
            tid,
            NT_X86_XSTATE as usize,
            &mut iov as *mut libc::iovec,
        )
    };
    Errno::result(ret).map(drop)
}

/// The new thread's id at a PTRACE_EVENT_CLONE stop.
pub(crate) fn event_msg(tid: Pid) -> Result<Pid, Errno> {
    ptrace::getevent(npid(tid)).map(|msg| msg as Pid)
}

/// The thread's blocked-signal mask (a 64-bit set: bit n-1 for signal n).
pub(crate) fn get_sigmask(tid: Pid) -> Result<u64, Errno> {
    let mut mask = 0u64;
    // SAFETY: PTRACE_GETSIGMASK writes `addr` (= 8) bytes to `data`, a valid, exclusive u64.
    let ret = unsafe {
        libc::ptrace(
            libc::PTRACE_GETSIGMASK,
            tid,
            std::mem::size_of::<u64>(),
            &mut mask as *mut u64,
        )
    };
    Errno::result(ret).map(|_| mask)
}

pub(crate) fn set_sigmask(tid: Pid, mask: u64) -> Result<(), Errno> {
    // SAFETY: PTRACE_SETSIGMASK reads `addr` (= 8) bytes from `data`, a valid u64.
    let ret = unsafe {
        libc::ptrace(
            libc::PTRACE_SETSIGMASK,
            tid,
            std::mem::size_of::<u64>(),
            &mask as *const u64,
        )
    };
    Errno::result(ret).map(drop)
}

/// Send signal `sig` to thread `tid` of process `pid`.
pub(crate) fn tgkill(pid: Pid, tid: Pid, sig: i32) -> Result<(), Errno> {
    // SAFETY: tgkill takes three integers and touches no memory of ours.
    let ret = unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, sig) };
    Errno::result(ret).map(drop)
}

/// Send `sig` to thread `tid` again with its original siginfo where the kernel allows it
/// (sigqueue, timers, mq: negative si_code other than SI_TKILL), else with tgkill.
pub(crate) fn requeue(pid: Pid, tid: Pid, sig: i32, info: &libc::siginfo_t) -> Result<(), Errno> {
    const SI_TKILL: i32 = -6;
    if info.si_code < 0 && info.si_code != SI_TKILL {
        // SAFETY: rt_tgsigqueueinfo reads one siginfo_t from `info`, a valid reference.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_rt_tgsigqueueinfo,
                pid,
                tid,
                sig,
                info as *const libc::siginfo_t,
            )
        };
        if Errno::result(ret).is_ok() {
            return Ok(());
        }
    }
    tgkill(pid, tid, sig)
}

/// What waitpid reported about one traced thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// The thread exited or was killed (no longer traced).
    Gone,
    /// A PTRACE_EVENT_* stop: `event` is the event number, `sig` the stop signal.
    Event { event: i32, sig: i32 },
    /// Signal-delivery-stop: the thread is about to receive `sig`.
    Signal(i32),
    /// System-call entry or exit stop (only after [`syscall`]).
    Syscall,
}

/// Poll thread `tid` once without blocking. `Ok(None)`: nothing to report yet.
pub(crate) fn poll(tid: Pid) -> Result<Option<Stop>, Errno> {
    let mut status = 0;
    // SAFETY: waitpid writes one int to `status`, a valid local.
    let ret = unsafe { libc::waitpid(tid, &mut status, libc::WNOHANG | libc::__WALL) };
    match Errno::result(ret)? {
        0 => Ok(None),
        _ if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) => Ok(Some(Stop::Gone)),
        _ if libc::WIFSTOPPED(status) => {
            let sig = libc::WSTOPSIG(status);
            let event = status >> 16;
            Ok(Some(if sig == libc::SIGTRAP | 0x80 {
                Stop::Syscall
            } else if event != 0 {
                Stop::Event { event, sig }
            } else {
                Stop::Signal(sig)
            }))
        }
        // WIFCONTINUED is not asked for; treat anything else as "nothing yet".
        _ => Ok(None),
    }
}

/// Poll `tid` until it reports or `deadline` passes (`Ok(None)`), waiting between polls as
/// `backoff` says.
pub(crate) fn wait_until(
    tid: Pid,
    deadline: std::time::Instant,
    backoff: &mut Backoff,
) -> Result<Option<Stop>, Errno> {
    loop {
        if let Some(stop) = poll(tid)? {
            return Ok(Some(stop));
        }
        if std::time::Instant::now() >= deadline {
            return Ok(None);
        }
        backoff.wait();
    }
}

/// How a tracer waits between two polls of a thread it expects to stop.
///
/// First it only yields the CPU, for up to [`Backoff::YIELDING`]: an injected system call or
/// an interrupted thread stops within microseconds once it has a CPU, and a sleep costs a
/// timer and a wake-up (tens of µs on a VM, and the core idles meanwhile). Yielding lets a
/// target thread that shares our core run first. Then it sleeps, from 5 µs doubling to 1 ms,
/// so that a slow thread (one waiting for a CPU or a page) does not cost a core. A tracer
/// with real-time priority never yields (see `priority`): a yield gives the CPU only to other
/// real-time tasks, so it would spin ahead of the very thread it waits for.
pub(crate) struct Backoff {
    started: std::time::Instant,
    pause: std::time::Duration,
    may_yield: bool,
    /// Lowered at the first sleep, restored when the backoff goes.
    slack: FineSlack,
}

impl Backoff {
    /// Polls in a row that measured the gain (BENCHMARKS.md, host-wide): a thousand
    /// processes patched by one worker per core; a shorter span sleeps more often and left
    /// both cores idle 14 % of the time.
    const YIELDING: std::time::Duration = std::time::Duration::from_millis(1);
    const FIRST_PAUSE: std::time::Duration = std::time::Duration::from_micros(5);
    const LONGEST_PAUSE: std::time::Duration = std::time::Duration::from_millis(1);

    /// A backoff starting now; `boosted`: the caller runs with real-time priority.
    pub(crate) fn new(boosted: bool) -> Backoff {
        Backoff {
            started: std::time::Instant::now(),
            pause: Self::FIRST_PAUSE,
            may_yield: !boosted,
            slack: FineSlack::default(),
        }
    }

    /// Start again, as after a stop seen: the next thread to wait for is likely close.
    pub(crate) fn restart(&mut self) {
        self.started = std::time::Instant::now();
        self.pause = Self::FIRST_PAUSE;
    }

    /// Wait before the next poll.
    pub(crate) fn wait(&mut self) {
        if self.may_yield && self.started.elapsed() < Self::YIELDING {
            std::thread::yield_now();
            return;
        }
        self.slack.set();
        std::thread::sleep(self.pause);
        self.pause = (self.pause * 2).min(Self::LONGEST_PAUSE);
    }
}

/// Timer slack while a tracer sleeps between polls ([`Backoff`]): the default (50 µs) would
/// round each of its short sleeps up.
const SLACK_NS: u64 = 1_000;

/// The calling thread's timer slack lowered to [`SLACK_NS`] on demand, restored on drop.
#[derive(Default)]
struct FineSlack {
    previous: Option<u64>,
}

impl FineSlack {
    fn set(&mut self) {
        if self.previous.is_none() {
            if let Ok(previous) = nix::sys::prctl::get_timerslack() {
                if nix::sys::prctl::set_timerslack(SLACK_NS).is_ok() {
                    self.previous = Some(previous as u64);
                }
            }
        }
    }
}

impl Drop for FineSlack {
    fn drop(&mut self) {
        if let Some(previous) = self.previous {
            let _ = nix::sys::prctl::set_timerslack(previous);
        }
    }
}
