//! Borrowing a thread when things go wrong inside: a ptrace request failing at a system-call
//! stop of our code, a stack with no room left for a call's or a system call's frame. C targets compiled at test
//! time, each checking itself and saying `bad ...` when something differs.

mod util;

use std::time::Duration;

use lpkg_kernel::arch::{Arch, Sys};
use lpkg_kernel::{test_hook, Error, Tracee};
use util::{bin, bin_for, fields, with_timeout, Build, Proc};

/// `write(2)`'s number.
fn sys_write(arch: Arch) -> u64 {
    match arch {
        Arch::X86_64 => 1,
        Arch::I386 => 4,
    }
}

/// An injected getpid whose ptrace request at `point` fails (the test hook): the error must
/// be the hook's.
fn getpid_failing_at(t: &mut Tracee, point: &'static str) {
    test_hook::fail_at(point);
    match t.syscall(t.arch().nr(Sys::Getpid), [0; 6]) {
        Err(Error::Ptrace {
            op: "test hook", ..
        }) => {}
        other => panic!("expected the hook's failure at {point}, got {other:?}"),
    }
}

/// Stops the process until its main thread is caught on its way back from a `write` that
/// completed (`orig_rax` = write, `rax` = the 8 bytes written): the state in which a thread
/// given back at a system-call entry stop with its exact registers would write again.
fn stop_after_a_write(t: &mut Tracee, pid: i32) {
    for _ in 0..10_000 {
        t.stop().unwrap();
        let regs = t.registers(pid).unwrap();
        if regs.syscall_nr() == Some(sys_write(t.arch())) && regs.return_value() == 8 {
            return;
        }
        t.resume().unwrap();
    }
    panic!("main thread never caught right after a write");
}

#[test]
fn a_request_failing_at_a_syscall_entry_stop_does_not_repeat_the_threads_call() {
    a_request_failing_at_a_syscall_entry_stop_as(Build::X86_64);
}

/// Issue 18: a 32-bit thread's `write`, made through the vDSO (`sysenter` or `syscall`, which
/// the kernel restarts at the vDSO's `int $0x80`).
#[test]
fn a_request_failing_at_a_syscall_entry_stop_does_not_repeat_the_threads_call_i386() {
    a_request_failing_at_a_syscall_entry_stop_as(Build::I386);
}

fn a_request_failing_at_a_syscall_entry_stop_as(build: Build) {
    with_timeout(60, move || {
        let mut proc = Proc::spawn(&bin_for("writer", build), &[]);
        proc.expect("ready", Duration::from_secs(10));
        let pid = proc.pid();
        let mut t = Tracee::seize(pid).unwrap();
        for _ in 0..3 {
            stop_after_a_write(&mut t, pid);
            let before = t.registers(pid).unwrap();
            // The injected getpid stops at its entry; the request made there fails.
            getpid_failing_at(&mut t, test_hook::SYSCALL_STOP);
            // The registers the thread resumes with: as before, the finished write not to be
            // made again.
            let after = t.registers(pid).unwrap();
            assert_eq!(after.pc(), before.pc());
            assert_eq!(after.return_value(), 8);
            t.resume().unwrap();
            // A write made twice makes the next round's read return the old value: "bad".
            let first = fields(&ping(&mut proc))["round"];
            std::thread::sleep(Duration::from_millis(20));
            assert!(fields(&ping(&mut proc))["round"] > first, "no progress");
            // Nothing is left over: the same request goes through.
            t.stop().unwrap();
            let getpid = t.arch().nr(Sys::Getpid);
            assert_eq!(t.syscall(getpid, [0; 6]).unwrap(), pid as i64);
            t.resume().unwrap();
        }
        t.detach().unwrap();
        let first = fields(&ping(&mut proc))["round"];
        std::thread::sleep(Duration::from_millis(20));
        assert!(fields(&ping(&mut proc))["round"] > first);
    });
}

/// Where lpkg puts its system call in place of the `rt_sigreturn` the thread was set to make
/// (see `remote_syscall`), a request failing gives the thread back whole: on a thread in its
/// own `nanosleep`, and on one in user code, which check their registers after every round.
#[test]
fn a_request_failing_where_our_call_replaces_rt_sigreturn_leaves_the_thread_whole() {
    a_request_failing_where_our_call_replaces_rt_sigreturn_as(&bin("fpu"));
}

/// Issue 18: the same where the ia32 `rt_sigreturn` is replaced, in a 32-bit process.
#[test]
fn a_request_failing_where_our_call_replaces_rt_sigreturn_leaves_the_thread_whole_i386() {
    a_request_failing_where_our_call_replaces_rt_sigreturn_as(&bin_for("fpu32", Build::I386));
}

fn a_request_failing_where_our_call_replaces_rt_sigreturn_as(program: &std::path::Path) {
    on_both_kinds_of_thread(
        program,
        |t, pid, mode| {
            let before = t.registers(pid).unwrap();
            getpid_failing_at(t, test_hook::SYSCALL_ENTERED);
            // In the form the kernel's restart logic gives them: a call to be restarted set up
            // to be made again.
            let after = t.registers(pid).unwrap();
            assert_eq!(after.sp(), before.sp(), "{mode}");
            assert!(after.syscall_nr().is_none(), "{mode} {after:?}");
        },
        |_| {},
    );
}

/// Three rounds of `round` on a stopped process of `program` whose thread is in its own
/// `nanosleep`, then on one whose thread is in user code; each checks its registers after
/// every round (two "ok" lines), and after `last` and the detach.
fn on_both_kinds_of_thread(
    program: &std::path::Path,
    round: fn(&mut Tracee, i32, &str),
    last: fn(&mut Tracee),
) {
    let program = program.to_owned();
    with_timeout(60, move || {
        for mode in [&[][..], &["spin"][..]] {
            let mut proc = Proc::spawn(&program, mode);
            proc.expect("ready", Duration::from_secs(10));
            let pid = proc.pid();
            let mut t = Tracee::seize(pid).unwrap();
            for _ in 0..3 {
                t.stop().unwrap();
                round(&mut t, pid, &format!("{mode:?}"));
                t.resume().unwrap();
                proc.wait_line("ok", Duration::from_secs(10));
                proc.wait_line("ok", Duration::from_secs(10));
            }
            t.stop().unwrap();
            last(&mut t);
            t.detach().unwrap();
            proc.wait_line("ok", Duration::from_secs(10));
        }
    });
}

/// Between two system calls of a batch (a memfd made and mapped: memfd_create, ftruncate,
/// mmap, close on one borrow), a request failing gives the thread back exactly as it was, on
/// a thread in its own `nanosleep` and on one in user code.
#[test]
fn a_request_failing_between_two_calls_of_a_batch_leaves_the_thread_whole() {
    a_request_failing_between_two_calls_of_a_batch_as(&bin("fpu"));
}

/// Issue 18: the same in a 32-bit process.
#[test]
fn a_request_failing_between_two_calls_of_a_batch_leaves_the_thread_whole_i386() {
    a_request_failing_between_two_calls_of_a_batch_as(&bin_for("fpu32", Build::I386));
}

fn a_request_failing_between_two_calls_of_a_batch_as(program: &std::path::Path) {
    on_both_kinds_of_thread(
        program,
        |t, pid, mode| {
            let before = t.registers(pid).unwrap();
            test_hook::fail_at(test_hook::SYSCALL_NEXT);
            match t.memfd_map("lpkg-test", 4096) {
                Err(Error::Ptrace {
                    op: "test hook", ..
                }) => {}
                other => panic!("expected the hook's failure, got {other:?}"),
            }
            let after = t.registers(pid).unwrap();
            assert_eq!(after.to_array(), before.to_array(), "{mode}");
        },
        // Nothing is left over: the whole batch goes through.
        |t| {
            t.memfd_map("lpkg-test", 4096).unwrap();
        },
    );
}

fn ping(proc: &mut Proc) -> String {
    proc.send("ping");
    proc.wait_line("pong", Duration::from_secs(10))
}

/// The start and end of the mapping holding `addr` in process `pid`.
fn mapping_of(pid: i32, addr: u64) -> (u64, u64) {
    let map = lpkg_kernel::maps::read(pid)
        .unwrap()
        .into_iter()
        .find(|m| m.contains(addr))
        .expect("a mapping holds the address");
    (map.start, map.end)
}

fn set_stack_limit(pid: i32, limit: libc::rlimit) -> libc::rlimit {
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: prlimit reads one rlimit and writes one, both valid locals; `pid` is our child.
    let rc = unsafe { libc::prlimit(pid, libc::RLIMIT_STACK, &limit, &mut old) };
    assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
    old
}

/// This process's stack limit, lowered to 8 MiB if it was higher: the limit the kernel applies
/// when an access through /proc/PID/mem grows the target's stack.
fn own_stack_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit to a valid local.
    assert_eq!(
        unsafe { libc::getrlimit(libc::RLIMIT_STACK, &mut limit) },
        0
    );
    if limit.rlim_cur > 8 << 20 {
        limit.rlim_cur = 8 << 20;
        // SAFETY: setrlimit reads one rlimit from a valid local. Only the growth of this
        // process's main thread stack is limited by it, and the test harness's is small.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_STACK, &limit) }, 0);
    }
    limit.rlim_cur
}

#[test]
fn a_call_on_a_stack_used_up_to_its_bottom_grows_it_or_says_why_not() {
    with_timeout(60, || {
        // Deeper than our own stack limit: /proc/PID/mem cannot grow the target's stack then.
        let depth_kib = own_stack_limit() / 1024 + 1024;
        let mut proc = Proc::spawn(&bin("deepstack"), &[&depth_kib.to_string()]);
        let answer = fields(&proc.expect("ready", Duration::from_secs(10)))["answer"] as u64;
        proc.expect("deep", Duration::from_secs(10));
        let pid = proc.pid();
        let mut t = Tracee::seize(pid).unwrap();
        t.stop().unwrap();
        let sp = t.registers(pid).unwrap().sp();
        let (start, end) = mapping_of(pid, sp);
        assert!(
            sp - start < 1024,
            "{:#x} bytes left: nothing to test",
            sp - start
        );

        // The stack may not grow (the target at its own limit): a clear error, and the thread
        // untouched.
        let limit = libc::rlimit {
            rlim_cur: end - start,
            rlim_max: libc::RLIM_INFINITY,
        };
        let old = set_stack_limit(pid, limit);
        let before = t.registers(pid).unwrap();
        match t.call(answer, &[], Duration::from_secs(5)) {
            Err(Error::NoStackRoom {
                tid,
                sp: at,
                needed,
                ..
            }) => {
                assert_eq!((tid, at), (pid, sp));
                assert!(needed > sp - start && needed < 64 * 1024, "{needed}");
            }
            other => panic!("expected NoStackRoom, got {other:?}"),
        }
        assert_eq!(mapping_of(pid, sp), (start, end));
        assert_eq!(t.registers(pid).unwrap(), before);
        // An injected system call goes without its frame there (unprotected against our
        // death, as before frames), and leaves the thread as it was too.
        assert_eq!(
            t.syscall(libc::SYS_getpid as u64, [0; 6]).unwrap(),
            pid as i64
        );
        assert_eq!(mapping_of(pid, sp), (start, end));
        assert_eq!(t.registers(pid).unwrap(), before);

        // It may: the stack grows and the call works.
        set_stack_limit(pid, old);
        assert_eq!(t.call(answer, &[], Duration::from_secs(5)).unwrap(), 42);
        assert!(mapping_of(pid, sp).0 < start, "the stack grew");
        t.detach().unwrap();
        proc.send("up");
        let back = fields(&proc.expect("back", Duration::from_secs(10)));
        assert!(back["depth"] > 1000, "{back:?}");
    });
}
