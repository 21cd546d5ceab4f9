//! Borrowing a thread when things go wrong inside: a ptrace request failing at a system-call
//! stop of our code, a stack with no room left for a call's frame. C targets compiled at test
//! time, each checking itself and saying `bad ...` when something differs.

mod util;

use std::time::Duration;

use lpkg_kernel::{test_hook, Error, Tracee};
use util::{bin, fields, with_timeout, Proc};

const SYS_WRITE: u64 = 1;

/// Stops the process until its main thread is caught on its way back from a `write` that
/// completed (`orig_rax` = write, `rax` = the 8 bytes written): the state in which a thread
/// given back at a system-call entry stop with its exact registers would write again.
fn stop_after_a_write(t: &mut Tracee, pid: i32) {
    for _ in 0..10_000 {
        t.stop().unwrap();
        let regs = t.registers(pid).unwrap();
        if regs.syscall_nr() == Some(SYS_WRITE) && regs.return_value() == 8 {
            return;
        }
        t.resume().unwrap();
    }
    panic!("main thread never caught right after a write");
}

#[test]
fn a_request_failing_at_a_syscall_entry_stop_does_not_repeat_the_threads_call() {
    with_timeout(60, || {
        let mut proc = Proc::spawn(&bin("writer"), &[]);
        proc.expect("ready", Duration::from_secs(10));
        let pid = proc.pid();
        let mut t = Tracee::seize(pid).unwrap();
        for _ in 0..3 {
            stop_after_a_write(&mut t, pid);
            let before = t.registers(pid).unwrap();
            // The injected getpid stops at its entry; the request made there fails.
            test_hook::fail_at(test_hook::SYSCALL_STOP);
            match t.syscall(libc::SYS_getpid as u64, [0; 6]) {
                Err(Error::Ptrace {
                    op: "test hook", ..
                }) => {}
                other => panic!("expected the hook's failure, got {other:?}"),
            }
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
            assert_eq!(
                t.syscall(libc::SYS_getpid as u64, [0; 6]).unwrap(),
                pid as i64
            );
            t.resume().unwrap();
        }
        t.detach().unwrap();
        let first = fields(&ping(&mut proc))["round"];
        std::thread::sleep(Duration::from_millis(20));
        assert!(fields(&ping(&mut proc))["round"] > first);
    });
}

fn ping(proc: &mut Proc) -> String {
    proc.send("ping");
    proc.wait_line("pong", Duration::from_secs(10))
}
