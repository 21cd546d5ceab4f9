//! Attach to a process and stop the world: every thread seized, stopped, and resumed exactly
//! as it was.
//!
//! How signals are kept intact: a signal that reaches a thread while we stop it shows up as a
//! signal-delivery-stop; we let the kernel deliver it right there (`PTRACE_CONT` with the
//! signal, siginfo untouched), so the thread's handler frame is set up as it would have been,
//! and the thread then stops for our `PTRACE_INTERRUPT`. While we run code in a thread we block
//! its asynchronous signals (see `remote_syscall`), so they stay pending in the kernel and are
//! delivered after we resume it. Nothing is held in this process except signals sent by
//! someone else that could not be blocked (synchronous signal numbers sent with kill), which
//! are re-sent with tgkill when the thread is resumed.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::time::{Duration, Instant};

use nix::errno::Errno;

use crate::arch::{AltStack, Arch, Registers};
use crate::priority::{Boost, Scheduling};
use crate::ptrace::{self, Backoff, Stop};
use crate::{procfs, Error, Pid, Result};

/// How long `stop` waits for every thread to stop.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// What we know about one seized thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ThreadState {
    /// Running (or in a stop we have not waited for yet).
    Running,
    /// Auto-attached at clone: it will report its first stop by itself, no interrupt needed.
    Starting,
    /// Interrupted; its stop has not been reported yet.
    Stopping,
    /// In a ptrace-stop we waited for. `group_stop`: the process is stopped by SIGSTOP & co.
    Stopped { group_stop: bool },
}

/// A seized process: every thread is traced by the calling thread.
///
/// All ptrace requests must come from the thread that seized the process, so a `Tracee` is
/// neither `Send` nor `Sync`. Dropping it resumes every thread and detaches.
///
/// While seized but not stopped, the process runs; a thread that receives a signal or creates
/// a thread waits in a ptrace-stop until the next [`Tracee::stop`], [`Tracee::resume`] or
/// [`Tracee::detach`], so do not leave a process seized and running for long.
pub struct Tracee {
    pub(crate) pid: Pid,
    /// The architecture of the process's program, read once at seize: how its system calls,
    /// calls and signal frames are made.
    pub(crate) arch: Arch,
    pub(crate) threads: BTreeMap<Pid, ThreadState>,
    /// Address of a `syscall` instruction in the target, found on first use.
    pub(crate) syscall_insn: Option<u64>,
    /// Address of an `rt_sigreturn` restorer in the target (`Some(None)`: it has none), found
    /// on first use (see `remote_syscall`).
    pub(crate) restorer: Option<Option<u64>>,
    /// The process's mappings as read during this stop (see [`Tracee::maps`]).
    pub(crate) maps: Option<Vec<crate::maps::MapEntry>>,
    /// Signals (thread, signal, siginfo) to re-send when the thread is resumed.
    pub(crate) deferred: Vec<(Pid, i32, libc::siginfo_t)>,
    /// The page holding the `rt_sigreturn` trampoline of remote calls, mapped by the first
    /// call and unmapped on detach (see `remote_call`).
    pub(crate) call_trampoline: Option<u64>,
    /// Alternate signal stacks read for remote calls, valid until the thread runs its own code
    /// (dropped on resume) or its registers are overwritten.
    pub(crate) altstacks: BTreeMap<Pid, AltStack>,
    /// /proc/PID/mem held open for the frames and reads of injected code: opening it costs a
    /// read of /proc/PID/stat, an open and a close per access otherwise.
    pub(crate) mem: Option<crate::memory::Mem>,
    /// The borrowed thread, when a run of our code left it at a system-call stop (see
    /// `inject::give_back_registers`).
    pub(crate) syscall_stop: Option<Pid>,
    /// ptrace requests and waitpid calls made here (not by injected code), for profiles.
    ptrace_requests: Cell<u64>,
    waits: Cell<u64>,
    /// System calls injected so far, for profiles.
    pub(crate) injected: Cell<u64>,
    /// This thread's real-time priority while the whole process is stopped (see `priority`):
    /// from the end of [`Tracee::stop`] to the resume or the last detach.
    boost: Option<Boost>,
    /// False once raising it failed (not permitted, or real-time already): not tried again.
    may_boost: bool,
    /// This thread's own scheduling, read at the first boost.
    scheduling: Option<Option<Scheduling>>,
    /// /proc/PID/stat, held open: each stop counts the process's threads with one read.
    stat: Option<std::fs::File>,
    detached: bool,
    /// Threads whose seccomp filters were found to allow every system call lpkg injects.
    pub(crate) sandbox_checked: std::collections::BTreeSet<Pid>,
    /// Inside [`Tracee::batched`]: injected system calls share one borrow of their thread.
    pub(crate) batching: bool,
    /// The borrow they share, once the first of them is made (see `remote_syscall`).
    pub(crate) batch: Option<crate::remote_syscall::Batch>,
    /// When the operation in progress must end: no stop waits past it (see
    /// [`Tracee::set_deadline`]).
    deadline: Option<Instant>,
    _not_send: PhantomData<*const ()>,
}

impl Tracee {
    /// Seize every thread of process `pid`. The process keeps running.
    ///
    /// Threads that appear while we attach are caught: either they are created by a thread
    /// already seized (and so traced automatically, `PTRACE_O_TRACECLONE`), or a rescan of
    /// /proc/PID/task finds them. The scan repeats until it finds nothing new or the thread
    /// count says there is nothing more ([`Tracee::stop`] makes sure of it).
    pub fn seize(pid: Pid) -> Result<Tracee> {
        if pid <= 0 {
            return Err(Error::NoSuchProcess { pid });
        }
        check_seizable(pid)?;
        let mut tracee = Tracee {
            pid,
            // Read once the process is seized: only then may this process read its program
            // (a tracer that may not gets the seize's own error).
            arch: Arch::X86_64,
            threads: BTreeMap::new(),
            syscall_insn: None,
            restorer: None,
            mem: None,
            deferred: Vec::new(),
            call_trampoline: None,
            altstacks: BTreeMap::new(),
            maps: None,
            syscall_stop: None,
            ptrace_requests: Cell::new(0),
            waits: Cell::new(0),
            injected: Cell::new(0),
            boost: None,
            may_boost: true,
            scheduling: None,
            stat: procfs::open_stat(pid),
            detached: false,
            deadline: None,
            sandbox_checked: std::collections::BTreeSet::new(),
            batching: false,
            batch: None,
            _not_send: PhantomData,
        };
        let mut gone = std::collections::BTreeSet::new();
        loop {
            let mut found_new = false;
            for tid in procfs::tasks(pid)? {
                if tracee.threads.contains_key(&tid) || gone.contains(&tid) {
                    continue;
                }
                found_new = true;
                tracee.count_ptrace();
                match ptrace::seize(tid) {
                    Ok(()) => {
                        tracee.threads.insert(tid, ThreadState::Running);
                    }
                    // Exited between the listing and the seize.
                    Err(Errno::ESRCH) if tid != pid => {
                        gone.insert(tid);
                    }
                    // Already ours: auto-attached when a seized thread created it.
                    Err(Errno::EPERM) if tid != pid && traced_by_us(pid, tid) => {
                        tracee.threads.insert(tid, ThreadState::Starting);
                    }
                    // The kernel refuses to attach to an exiting thread; that includes a leader
                    // that called pthread_exit and waits as a zombie for the other threads.
                    Err(Errno::EPERM) if thread_exiting(pid, tid) => {
                        gone.insert(tid);
                    }
                    // Traced by someone else (only the leader was checked up front).
                    Err(Errno::EPERM) if tid != pid && procfs::tracer_of(pid, tid) != 0 => {
                        return Err(already_traced(pid, procfs::tracer_of(pid, tid)));
                    }
                    Err(errno) if tid == pid => {
                        // Drop detaches whatever was seized; report why the leader failed.
                        return Err(seize_error(pid, errno));
                    }
                    Err(errno) => return Err(ptrace::error(pid, tid, "PTRACE_SEIZE", errno)),
                }
            }
            // As many threads as we hold means most likely none was missed; a listing is four
            // system calls, a count one. Only a hint (a seized thread may have exited and an
            // unseen one appeared meanwhile): `stop` counts them all stopped, which proves it.
            let all_held =
                tracee.stat.as_ref().and_then(procfs::thread_count) == Some(tracee.threads.len());
            if !found_new || all_held {
                break;
            }
        }
        if tracee.threads.is_empty() {
            return Err(Error::ProcessExited { pid });
        }
        tracee.arch = Arch::of_process(pid)?;
        Ok(tracee)
    }

    /// The process id.
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// The architecture of the process's program (what its threads' registers, system calls
    /// and calls follow).
    pub fn arch(&self) -> Arch {
        self.arch
    }

    /// Thread ids currently known (the complete, stable set after [`Tracee::stop`]).
    pub fn threads(&self) -> Vec<Pid> {
        self.threads.keys().copied().collect()
    }

    /// True when every thread is stopped.
    pub fn is_stopped(&self) -> bool {
        self.threads
            .values()
            .all(|s| matches!(s, ThreadState::Stopped { .. }))
    }

    /// A thread's name (/proc/PID/task/TID/comm), `?` when unreadable.
    pub fn thread_name(&self, tid: Pid) -> String {
        procfs::comm(&format!("/proc/{}/task/{tid}/comm", self.pid))
    }

    /// A stopped thread's registers.
    pub fn registers(&self, tid: Pid) -> Result<Registers> {
        self.require_stopped_thread(tid)?;
        self.count_ptrace();
        ptrace::getregs(tid, self.arch)
            .map_err(|e| ptrace::error(self.pid, tid, "PTRACE_GETREGS", e))
    }

    /// Every thread's registers in one pass (the process must be stopped).
    pub fn all_registers(&self) -> Result<Vec<(Pid, Registers)>> {
        self.require_stopped()?;
        self.threads
            .keys()
            .map(|&tid| Ok((tid, self.registers(tid)?)))
            .collect()
    }

    /// The process's mappings (/proc/PID/maps), read once while the process stays stopped as
    /// we left it: kept until our own system calls change them, our calls run its code, or
    /// the threads we stopped run again. Its other threads may map meanwhile, as they may
    /// between any read of the file and its use: what is looked up in it (a hole, the code of
    /// a restorer, a module of ours) is checked where it is used (`MAP_FIXED_NOREPLACE`, the
    /// code's bytes, the name of the mapping unmapped).
    pub fn maps(&mut self) -> Result<Vec<crate::maps::MapEntry>> {
        if let Some(maps) = &self.maps {
            return Ok(maps.clone());
        }
        let maps = crate::maps::read(self.pid)?;
        let stopped = |state: &ThreadState| matches!(state, ThreadState::Stopped { .. });
        if self.threads.values().any(stopped) {
            self.maps = Some(maps.clone());
        }
        Ok(maps)
    }

    /// Overwrite a stopped thread's registers.
    pub fn write_registers(&mut self, tid: Pid, regs: &Registers) -> Result<()> {
        self.require_stopped_thread(tid)?;
        // Whether it runs on its alternate stack depends on its stack pointer: read it again.
        self.altstacks.remove(&tid);
        self.count_ptrace();
        ptrace::setregs(tid, regs).map_err(|e| ptrace::error(self.pid, tid, "PTRACE_SETREGS", e))
    }

    /// Makes every later wait for threads to stop end by `deadline` (`None`: each waits up to
    /// 10 s), so that an operation keeps its `--timeout` even on a thread no interrupt stops
    /// (one in `vfork()` waits for its child).
    pub fn set_deadline(&mut self, deadline: Option<Instant>) {
        self.deadline = deadline;
    }

    /// How long the next stop may wait.
    fn stop_deadline(&self) -> Instant {
        let fixed = Instant::now() + STOP_TIMEOUT;
        self.deadline.map_or(fixed, |d| d.min(fixed))
    }

    /// Stop the world: every thread in a ptrace-stop, threads created meanwhile included.
    pub fn stop(&mut self) -> Result<()> {
        let deadline = self.stop_deadline();
        loop {
            for tid in self.threads() {
                self.interrupt(tid)?;
            }
            self.wait_stopping(deadline)?;
            // Every clone event was seen (each creator reached its interrupt stop after it), so
            // there should be no thread we do not know of. A thread count guards against
            // anything we missed (a thread created by one seized mid-clone is not traced): the
            // known threads are alive and stopped, so as many threads as we know means none
            // else; one read, where a listing of /proc/PID/task is four system calls and grows
            // with the threads. Any other count (a zombie leader counts) lists them.
            if self.stat.as_ref().and_then(procfs::thread_count) == Some(self.threads.len()) {
                self.boost();
                return Ok(());
            }
            let mut new = false;
            for tid in procfs::tasks(self.pid)? {
                if self.threads.contains_key(&tid) {
                    continue;
                }
                self.count_ptrace();
                match ptrace::seize(tid) {
                    Ok(()) => {
                        self.threads.insert(tid, ThreadState::Running);
                        new = true;
                    }
                    Err(Errno::EPERM) if traced_by_us(self.pid, tid) => {
                        self.threads.insert(tid, ThreadState::Starting);
                        new = true;
                    }
                    Err(_) => {} // exited meanwhile
                }
            }
            if !new {
                // Not before: threads sharing this CPU must run to reach their stop.
                self.boost();
                return Ok(());
            }
        }
    }

    /// Stop only the thread injected code runs on (the main thread while it is there); the
    /// others keep running. Enough for system calls that do not depend on what the other
    /// threads do (mapping a fresh range, memfd_create, mprotect of our own mapping), and it
    /// does not pause them. Returns the stopped thread; [`Tracee::resume`] lets it go again.
    pub fn stop_one(&mut self) -> Result<Pid> {
        let tid = if self.threads.contains_key(&self.pid) {
            self.pid
        } else {
            *self
                .threads
                .keys()
                .next()
                .ok_or(Error::ProcessExited { pid: self.pid })?
        };
        if self.stop_thread(tid)? {
            return Ok(tid);
        }
        // It exited meanwhile: fall back to stopping everyone.
        self.stop()?;
        self.worker_thread()
    }

    /// Stop thread `tid` alone (the others stay as they are). False when it is gone.
    pub fn stop_thread(&mut self, tid: Pid) -> Result<bool> {
        let deadline = self.stop_deadline();
        self.interrupt(tid)?;
        self.wait_stopping(deadline)?;
        Ok(matches!(
            self.threads.get(&tid),
            Some(ThreadState::Stopped { .. })
        ))
    }

    /// Make a thread stop for us (no wait): interrupt it unless it is stopping already.
    fn interrupt(&mut self, tid: Pid) -> Result<()> {
        let Some(state) = self.threads.get(&tid).copied() else {
            return Ok(());
        };
        match state {
            ThreadState::Running => {
                self.count_ptrace();
                // ESRCH: the thread is exiting; waitpid will report it gone.
                match ptrace::interrupt(tid) {
                    Ok(()) | Err(Errno::ESRCH) => {}
                    Err(e) => return Err(ptrace::error(self.pid, tid, "PTRACE_INTERRUPT", e)),
                }
            }
            // Auto-attached at clone: it reports its first stop by itself.
            ThreadState::Starting => {}
            ThreadState::Stopping | ThreadState::Stopped { .. } => return Ok(()),
        }
        self.threads.insert(tid, ThreadState::Stopping);
        Ok(())
    }

    /// Wait until no thread is `Stopping`, handling whatever they report on the way.
    ///
    /// Threads are waited for one at a time, in the order they were interrupted: they stop
    /// concurrently, so by the time the first has reported most others have too, and each
    /// costs one waitpid. (A blocking `waitpid(-1)` would also reap children of the caller
    /// that are not ours, and a blocking wait for one thread could not time out.) Between
    /// polls we wait as [`Backoff`] says.
    pub(crate) fn wait_stopping(&mut self, deadline: Instant) -> Result<()> {
        let started = Instant::now();
        let mut backoff = self.backoff();
        loop {
            let Some(tid) = self
                .threads
                .iter()
                .find(|(_, s)| **s == ThreadState::Stopping)
                .map(|(&t, _)| t)
            else {
                return Ok(());
            };
            self.waits.set(self.waits.get() + 1);
            let stop = match ptrace::poll(tid) {
                Ok(Some(stop)) => Some(stop),
                Ok(None) => None,
                Err(Errno::ECHILD) => Some(Stop::Gone),
                Err(e) => return Err(ptrace::error(self.pid, tid, "waitpid", e)),
            };
            if let Some(stop) = stop {
                self.handle_stop_while_stopping(tid, stop)?;
                backoff.restart();
                continue;
            }
            if Instant::now() >= deadline {
                // Only the first thread was polled lately: name only those that really did
                // not stop.
                let stopping: Vec<Pid> = self
                    .threads
                    .iter()
                    .filter(|(_, s)| **s == ThreadState::Stopping)
                    .map(|(&t, _)| t)
                    .collect();
                for tid in stopping {
                    if let Ok(Some(stop)) = ptrace::poll(tid) {
                        self.handle_stop_while_stopping(tid, stop)?;
                    }
                }
                let tids = self
                    .threads
                    .iter()
                    .filter(|(_, s)| **s == ThreadState::Stopping)
                    .map(|(&t, _)| t);
                return Err(Error::StopTimedOut {
                    pid: self.pid,
                    tids: tids.collect(),
                    timeout: started.elapsed(),
                });
            }
            backoff.wait();
        }
    }

    fn handle_stop_while_stopping(&mut self, tid: Pid, stop: Stop) -> Result<()> {
        let pid = self.pid;
        match stop {
            Stop::Gone => {
                self.threads.remove(&tid);
                if tid == pid {
                    // With __WALL the leader is reported only once the whole group is gone.
                    return Err(Error::ProcessExited { pid });
                }
            }
            Stop::Event {
                event: libc::PTRACE_EVENT_STOP,
                sig,
            } => {
                let group_stop = matches!(
                    sig,
                    libc::SIGSTOP | libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU
                );
                self.threads
                    .insert(tid, ThreadState::Stopped { group_stop });
            }
            Stop::Event {
                event: libc::PTRACE_EVENT_CLONE,
                ..
            } => {
                self.count_ptrace();
                let child = ptrace::event_msg(tid)
                    .map_err(|e| ptrace::error(pid, tid, "PTRACE_GETEVENTMSG", e))?;
                // The child reports its first stop by itself.
                self.threads.entry(child).or_insert(ThreadState::Stopping);
                self.reinterrupt_and_cont(tid, 0)?;
            }
            Stop::Event { .. } | Stop::Syscall => self.reinterrupt_and_cont(tid, 0)?,
            // Deliver the signal as the kernel would have; the thread stops for our interrupt
            // right after its handler frame is set up.
            Stop::Signal(sig) => self.reinterrupt_and_cont(tid, sig)?,
        }
        Ok(())
    }

    /// Resume a thread we want stopped from some other ptrace-stop so that it stops for our
    /// interrupt next. Any ptrace-stop clears a pending PTRACE_INTERRUPT, so whether ours is
    /// still pending depends on which came first: interrupt again while it is stopped (the
    /// two merge into one trap), then resume. A thread that vanished is reported later.
    fn reinterrupt_and_cont(&mut self, tid: Pid, sig: i32) -> Result<()> {
        self.count_ptrace();
        self.count_ptrace();
        match ptrace::interrupt(tid) {
            Ok(()) | Err(Errno::ESRCH) => {}
            Err(e) => return Err(ptrace::error(self.pid, tid, "PTRACE_INTERRUPT", e)),
        }
        match ptrace::cont(tid, sig) {
            Ok(()) | Err(Errno::ESRCH) => Ok(()),
            Err(e) => Err(ptrace::error(self.pid, tid, "PTRACE_CONT", e)),
        }
    }

    /// Let every thread run again (still seized). Threads stopped inside a system call go back
    /// into it: the kernel restarts it from the registers we restored.
    pub fn resume(&mut self) -> Result<()> {
        self.altstacks.clear();
        self.maps = None;
        for (&tid, state) in self.threads.iter_mut() {
            if let ThreadState::Stopped { group_stop } = *state {
                self.ptrace_requests.set(self.ptrace_requests.get() + 1);
                let result = if group_stop {
                    ptrace::listen(tid)
                } else {
                    ptrace::cont(tid, 0)
                };
                match result {
                    Ok(()) | Err(Errno::ESRCH) => {}
                    Err(e) => return Err(ptrace::error(self.pid, tid, "PTRACE_CONT", e)),
                }
                *state = ThreadState::Running;
            }
        }
        self.send_deferred();
        self.boost = None;
        Ok(())
    }

    /// Stop (if needed) and detach from every thread, leaving each as it was. Detaching
    /// resumes a stopped thread, so detach straight from a stop rather than resume first:
    /// a running process has to be stopped again before it can be detached.
    pub fn detach(mut self) -> Result<()> {
        self.detach_all(&[]).map(|_| ())
    }

    /// [`Tracee::detach`], detaching the threads of `first` before the others. From a stop,
    /// threads resume in the order they are detached: the ones that were running (not blocked
    /// in a system call) are the ones the wait delays for sure. Returns when the last thread
    /// was detached: the end of the pause. (This thread's priority is restored after that, and
    /// a target thread waiting for this CPU may then take it before the call returns.)
    pub fn detach_first(mut self, first: &[Pid]) -> Result<Instant> {
        self.detach_all(first)
    }

    /// Detach every thread but the worker (the one injected system calls run on), the threads
    /// of `first` first, straight from a stop of the whole process; the worker stays stopped,
    /// as after [`Tracee::stop_one`]. For system calls that must follow a switch but need not
    /// hold up the other threads (unmapping what nothing can reach any more); a later
    /// [`Tracee::detach`] lets the worker go. Returns when the last of them was detached.
    pub fn detach_others_first(&mut self, first: &[Pid]) -> Result<Instant> {
        self.require_stopped()?;
        let worker = self.worker_thread()?;
        let mut order: Vec<Pid> = first
            .iter()
            .copied()
            .filter(|&tid| self.threads.contains_key(&tid) && tid != worker)
            .collect();
        order.extend(
            self.threads
                .keys()
                .filter(|&&tid| !first.contains(&tid) && tid != worker),
        );
        let mut first_error = None;
        for &tid in &order {
            self.detach_thread(tid, &mut first_error);
        }
        let detached = Instant::now();
        self.altstacks.retain(|&tid, _| tid == worker);
        // The worker's signals wait for its own resume: sent now, they would stop it.
        let (worker_signals, others) = std::mem::take(&mut self.deferred)
            .into_iter()
            .partition(|&(tid, _, _)| tid == worker);
        self.deferred = others;
        self.send_deferred();
        self.deferred = worker_signals;
        first_error.map_or(Ok(detached), Err)
    }

    fn detach_all(&mut self, first: &[Pid]) -> Result<Instant> {
        self.detached = true;
        if !self.is_stopped() {
            self.stop()?;
        }
        self.altstacks.clear();
        // The call trampoline is unmapped on the worker thread after every other thread is
        // detached, so that system call does not lengthen the others' stop.
        let worker = self.call_trampoline.and_then(|_| self.worker_thread().ok());
        let mut order: Vec<Pid> = first
            .iter()
            .copied()
            .filter(|tid| self.threads.contains_key(tid))
            .collect();
        order.extend(self.threads.keys().filter(|tid| !first.contains(tid)));
        order.retain(|&tid| Some(tid) != worker);
        let mut first_error = None;
        for tid in order {
            self.detach_thread(tid, &mut first_error);
        }
        if let Some(worker) = worker {
            // Best effort: a page left behind costs the target 4 KiB, nothing else.
            let _ = self.release_call_trampoline();
            self.detach_thread(worker, &mut first_error);
        }
        let detached = Instant::now();
        self.threads.clear();
        self.send_deferred();
        self.boost = None;
        first_error.map_or(Ok(detached), Err)
    }

    fn detach_thread(&mut self, tid: Pid, first_error: &mut Option<Error>) {
        self.ptrace_requests.set(self.ptrace_requests.get() + 1);
        match ptrace::detach(tid, 0) {
            Ok(()) | Err(Errno::ESRCH) => {}
            Err(e) => {
                first_error.get_or_insert(ptrace::error(self.pid, tid, "PTRACE_DETACH", e));
            }
        }
        self.threads.remove(&tid);
    }

    fn send_deferred(&mut self) {
        for (tid, sig, info) in std::mem::take(&mut self.deferred) {
            // The thread may have exited meanwhile; then the signal has nobody to go to.
            let _ = ptrace::requeue(self.pid, tid, sig, &info);
        }
    }

    /// ptrace requests this `Tracee` made so far (seize, interrupt, registers, resume, detach),
    /// not counting those of injected system calls and calls. For profiles.
    pub fn ptrace_requests(&self) -> u64 {
        self.ptrace_requests.get()
    }

    /// System calls this `Tracee` injected into the target so far (`mmap`, `sigaltstack`...,
    /// those that calls need included), each a borrowing of a thread. For profiles.
    pub fn injected_syscalls(&self) -> u64 {
        self.injected.get()
    }

    /// waitpid calls this `Tracee` made so far while stopping threads. For profiles.
    pub fn waits(&self) -> u64 {
        self.waits.get()
    }

    /// How to wait for a thread to stop: without yielding while boosted.
    pub(crate) fn backoff(&self) -> Backoff {
        Backoff::new(self.boost.is_some())
    }

    /// Raise this thread's priority for as long as the whole process is stopped.
    fn boost(&mut self) {
        if self.boost.is_none() && self.may_boost {
            let scheduling = *self.scheduling.get_or_insert_with(Scheduling::current);
            self.boost = scheduling.and_then(Scheduling::raise);
            self.may_boost = self.boost.is_some();
        }
    }

    fn count_ptrace(&self) {
        self.ptrace_requests.set(self.ptrace_requests.get() + 1);
    }

    pub(crate) fn require_stopped(&self) -> Result<()> {
        if self.threads.is_empty() || !self.is_stopped() {
            return Err(Error::NotStopped { pid: self.pid });
        }
        Ok(())
    }

    pub(crate) fn require_stopped_thread(&self, tid: Pid) -> Result<()> {
        match self.threads.get(&tid) {
            Some(ThreadState::Stopped { .. }) => Ok(()),
            Some(_) => Err(Error::NotStopped { pid: self.pid }),
            None => Err(Error::NoSuchThread { pid: self.pid, tid }),
        }
    }

    /// The target's memory, opened on first use and kept open.
    pub(crate) fn mem(&mut self) -> Result<&crate::memory::Mem> {
        if self.mem.is_none() {
            self.mem = Some(crate::memory::Mem::open(self.pid)?);
        }
        Ok(self.mem.as_ref().expect("opened above"))
    }

    /// The thread injected code runs on: the main thread if it is still there. Either the
    /// whole process is stopped, or just that thread ([`Tracee::stop_one`]).
    pub(crate) fn worker_thread(&self) -> Result<Pid> {
        let stopped =
            |tid: &Pid| matches!(self.threads.get(tid), Some(ThreadState::Stopped { .. }));
        let worker = if self.threads.contains_key(&self.pid) {
            Some(self.pid)
        } else {
            self.threads.keys().next().copied()
        };
        worker
            .filter(stopped)
            .ok_or(Error::NotStopped { pid: self.pid })
    }
}

impl Drop for Tracee {
    fn drop(&mut self) {
        if !self.detached {
            let _ = self.detach_all(&[]);
        }
    }
}

/// Refuse early, with a precise error, what PTRACE_SEIZE would refuse with a vague one.
fn check_seizable(pid: Pid) -> Result<()> {
    let status = procfs::status(pid)?;
    if status.tgid != pid {
        return Err(Error::InvalidArgument {
            what: format!(
                "{pid} is a thread of process {}, not a process id",
                status.tgid
            ),
        });
    }
    // A zombie leader with live threads is a running process whose main thread exited.
    let zombie = status.state == 'Z' || status.state == 'X';
    if zombie && procfs::tasks(pid).map_or(true, |tids| tids.len() <= 1) {
        return Err(Error::Zombie { pid });
    }
    if status.tracer_pid != 0 {
        return Err(already_traced(pid, status.tracer_pid));
    }
    Ok(())
}

fn already_traced(pid: Pid, tracer_pid: Pid) -> Error {
    Error::AlreadyTraced {
        pid,
        tracer_pid,
        tracer_name: procfs::comm(&format!("/proc/{tracer_pid}/comm")),
    }
}

fn seize_error(pid: Pid, errno: Errno) -> Error {
    match errno {
        Errno::ESRCH => match procfs::status(pid) {
            Ok(s) if s.state == 'Z' => Error::Zombie { pid },
            Ok(_) => Error::ProcessExited { pid },
            Err(e) => e,
        },
        Errno::EPERM => match procfs::status(pid) {
            Ok(s) if s.tracer_pid != 0 => already_traced(pid, s.tracer_pid),
            Ok(s) if s.state == 'Z' => Error::Zombie { pid },
            Ok(_) => Error::PermissionDenied { pid },
            Err(e) => e,
        },
        errno => ptrace::error(pid, pid, "PTRACE_SEIZE", errno),
    }
}

/// True when the calling thread traces `tid` (TracerPid names the tracing thread, not its
/// process).
fn traced_by_us(pid: Pid, tid: Pid) -> bool {
    procfs::tracer_of(pid, tid) == nix::unistd::gettid().as_raw() as Pid
}

/// True when the thread is gone or a zombie (exited, not yet reaped).
fn thread_exiting(pid: Pid, tid: Pid) -> bool {
    match crate::procfs::read_text(std::path::Path::new(&format!(
        "/proc/{pid}/task/{tid}/stat"
    ))) {
        // The state follows the parenthesised command name, which may itself hold ')'.
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_none_or(|(_, rest)| rest.starts_with(['Z', 'X'])),
        Err(_) => true,
    }
}
