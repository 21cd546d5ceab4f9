//! The tracer's CPU priority while threads of the target are stopped.
//!
//! A stopped thread waits for the tracer, so any time the tracer waits for a CPU (another
//! process's slice, or a target thread it just resumed taking the tracer's own core) is added
//! to the stop. For that span only, the tracing thread runs as `SCHED_FIFO` at the lowest
//! real-time priority (1): ahead of every ordinary task, behind any real-time one (kernel
//! threads, audio, the system's own RT work). It is raised once every thread of the process is
//! stopped (not before: threads sharing the tracer's core must run to reach their stop) and
//! restored at the resume or the last detach, so it lasts as long as the pause, never longer. The
//! tracer never spins while boosted (it sleeps between polls), and `SCHED_RESET_ON_FORK` keeps
//! the policy from leaking into a child. Raising it needs `CAP_SYS_NICE` (root) or an
//! `RLIMIT_RTPRIO` of at least 1; without either it stays as it was, silently: only the pause
//! may then stretch under CPU contention.

/// The calling thread's own scheduling, read once and raised from (and restored to) at every
/// stop: two system calls per stop rather than four.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scheduling {
    policy: i32,
    param: libc::sched_param,
}

/// The calling thread raised to `SCHED_FIFO` 1; its [`Scheduling`] is restored on drop.
#[derive(Debug)]
pub(crate) struct Boost(Scheduling);

impl Scheduling {
    /// The calling thread's scheduling. `None` when it cannot be read, or when it is
    /// real-time already (it is then left alone).
    pub(crate) fn current() -> Option<Scheduling> {
        // SAFETY: sched_getscheduler(0) only reads the calling thread's policy.
        let policy = unsafe { libc::sched_getscheduler(0) };
        let realtime = [libc::SCHED_FIFO, libc::SCHED_RR];
        if policy < 0 || realtime.contains(&(policy & !libc::SCHED_RESET_ON_FORK)) {
            return None;
        }
        let mut param = libc::sched_param { sched_priority: 0 };
        // SAFETY: `param` is a valid sched_param the kernel writes into.
        if unsafe { libc::sched_getparam(0, &mut param) } != 0 {
            return None;
        }
        Some(Scheduling { policy, param })
    }

    /// Raises the calling thread, which must be the one `self` was read on, to
    /// `SCHED_FIFO` 1. `None` when not permitted.
    pub(crate) fn raise(self) -> Option<Boost> {
        let fifo = libc::sched_param { sched_priority: 1 };
        // SAFETY: `fifo` is a valid sched_param, read by the kernel; 0 is the calling thread.
        let raised = unsafe {
            libc::sched_setscheduler(0, libc::SCHED_FIFO | libc::SCHED_RESET_ON_FORK, &fifo)
        };
        (raised == 0).then_some(Boost(self))
    }
}

impl Drop for Boost {
    fn drop(&mut self) {
        // The legacy call keeps the thread's nice value when going back to a normal policy.
        // SAFETY: `param` is the valid sched_param read in `current`; 0 is the calling thread,
        // the one that raised it (a `Tracee` is not `Send`).
        unsafe { libc::sched_setscheduler(0, self.0.policy, &self.0.param) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> i32 {
        // SAFETY: reads the calling thread's policy.
        unsafe { libc::sched_getscheduler(0) }
    }

    fn nice(tid: libc::id_t) -> i32 {
        // SAFETY: reads a thread's nice value (PRIO_PROCESS with a thread id: that thread).
        unsafe { libc::getpriority(libc::PRIO_PROCESS, tid) }
    }

    #[test]
    fn raises_to_fifo_and_restores_the_policy_and_nice() {
        // A thread of its own: its nice value changes.
        std::thread::spawn(|| {
            let tid = nix::unistd::gettid().as_raw() as libc::id_t;
            // SAFETY: sets the nice value of this test's own thread.
            assert_eq!(unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, 5) }, 0);
            let before = policy();
            let boost = Scheduling::current().and_then(Scheduling::raise);
            // Root may raise; without the right nothing changes, which is the fallback.
            if boost.is_some() {
                assert_eq!(policy() & !libc::SCHED_RESET_ON_FORK, libc::SCHED_FIFO);
                // Already real-time: left alone.
                assert!(Scheduling::current().is_none());
            } else {
                assert_eq!(policy(), before);
            }
            drop(boost);
            assert_eq!(policy(), before);
            assert_eq!(nice(tid), 5);
        })
        .join()
        .unwrap();
    }
}
