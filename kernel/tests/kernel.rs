//! lpkg-kernel against real processes: C targets compiled at test time, traced with ptrace.

mod util;

use std::time::{Duration, Instant};

use lpkg_kernel::arch::Arch;
use lpkg_kernel::{maps, memory, objects, Error, Prot, Tracee};
use util::{bin, fields, with_timeout, Build, Proc, Target};

const CALL_TIMEOUT: Duration = Duration::from_secs(5);
const RW: Prot = Prot::RW;
const RX: Prot = Prot::RX;

/// The pannus cycle on a stopped target: map code near a function, call it, patch the
/// function's entry with a jmp to it, call through the patch, undo, unmap. Returns how many
/// times `bump` incremented the target's counter.
fn exercise(t: &mut Tracee, target: &Target) -> i64 {
    let pid = t.pid();
    let arch = t.arch();
    let encode_jmp_rel32 = |from, to| arch.encode_jmp_rel32(from, to);
    let answer = target.a("answer");
    let code = t.map_near(answer, 4096, RW).expect("map_near");
    assert!(
        encode_jmp_rel32(answer, code).is_some(),
        "{code:#x} out of reach of {answer:#x}"
    );
    memory::write(pid, code, &[0xb8, 43, 0, 0, 0, 0xc3]).unwrap(); // mov eax, 43; ret
    t.mprotect(code, 4096, RX).unwrap();
    assert_eq!(t.call(code, &[], CALL_TIMEOUT).unwrap() as u32, 43);
    assert_eq!(
        t.call(target.a("add6"), &[1, 2, 3, 4, 5, 6], CALL_TIMEOUT)
            .unwrap(),
        91
    );
    assert_eq!(
        t.call(target.a("stack_mod16"), &[], CALL_TIMEOUT).unwrap(),
        0,
        "misaligned stack"
    );
    let before = read_long(pid, arch, target.a("counter"));
    assert_eq!(
        t.call(target.a("bump"), &[1], CALL_TIMEOUT).unwrap(),
        before + 1
    );

    let original = memory::read(pid, answer, 5).unwrap();
    memory::write(pid, answer, &encode_jmp_rel32(answer, code).unwrap()).unwrap();
    assert_eq!(
        t.call(answer, &[], CALL_TIMEOUT).unwrap(),
        43,
        "call through the patched entry"
    );
    memory::write(pid, answer, &original).unwrap();
    assert_eq!(t.call(answer, &[], CALL_TIMEOUT).unwrap(), 42);

    t.munmap(code, 4096).unwrap();
    assert!(
        maps::read(pid).unwrap().iter().all(|m| !m.contains(code)),
        "mapping still there"
    );
    1
}

/// A C `long` of the target (4 bytes on i386).
fn read_long(pid: i32, arch: Arch, addr: u64) -> u64 {
    let mut bytes = [0u8; 8];
    let width = arch.pointer_size();
    bytes[..width].copy_from_slice(&memory::read(pid, addr, width).unwrap());
    u64::from_le_bytes(bytes)
}

fn seize_stopped(pid: i32) -> Tracee {
    let mut t = Tracee::seize(pid).expect("seize");
    if let Err(e) = t.stop() {
        // Say where the threads that did not stop are, to make a failure diagnosable.
        if let Error::StopTimedOut { tids, .. } = &e {
            for tid in tids {
                let wchan = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/wchan"));
                eprintln!("thread {tid} did not stop; waiting in {wchan:?}");
            }
        }
        panic!("stop: {e}");
    }
    t
}

#[test]
fn single_thread_in_nanosleep_and_read() {
    single_thread_in_nanosleep_and_read_as(Build::X86_64);
}

/// Issue 18: the same on a 32-bit process, which lpkg drives with `int $0x80`, i386 system call
/// numbers (`mmap2`) and cdecl calls; its `nanosleep` restarted through `orig_eax`.
#[test]
fn single_thread_in_nanosleep_and_read_i386() {
    single_thread_in_nanosleep_and_read_as(Build::I386);
}

/// Issue 18: a 32-bit program at its fixed link-time address (no PIE).
#[test]
fn single_thread_in_nanosleep_and_read_i386_no_pie() {
    single_thread_in_nanosleep_and_read_as(Build::I386NoPie);
}

fn single_thread_in_nanosleep_and_read_as(build: Build) {
    with_timeout(60, move || {
        let mut target = Target::start_as(build, &[]);
        // Blocked in nanosleep: the sleep must still last its full second, without EINTR.
        target.proc.send("sleep 1000");
        // Late enough that a sleep restarted from scratch (instead of for the time left)
        // would last 1.4 s or more.
        std::thread::sleep(Duration::from_millis(400));
        let mut t = seize_stopped(target.pid());
        assert_eq!(t.arch(), build.arch());
        assert_eq!(t.threads(), vec![target.pid()]);
        let regs = t.registers(target.pid()).unwrap();
        assert!(
            regs.in_restartable_syscall(),
            "stopped in nanosleep: {regs:?}"
        );
        let mut bumps = exercise(&mut t, &target);
        t.detach().unwrap();
        let slept = fields(&target.proc.expect("slept", Duration::from_secs(5)));
        assert!((1000..1380).contains(&slept["ms"]), "{slept:?}");
        assert_eq!((slept["rc"], slept["errno"]), (0, 0));

        // Blocked in read(stdin): data written while it is stopped must arrive intact.
        let mut t = seize_stopped(target.pid());
        bumps += exercise(&mut t, &target);
        target.proc.send("ping");
        bumps += exercise(&mut t, &target);
        t.resume().unwrap();
        let pong = fields(&target.proc.expect("pong", Duration::from_secs(5)));
        assert_eq!(pong["counter"], bumps);
        assert_eq!(pong["errors"], 0);
        t.stop().unwrap();
        bumps += exercise(&mut t, &target);
        drop(t);
        let pong = target.ping();
        assert_eq!(
            (pong["counter"], pong["errors"], pong["sig"]),
            (bumps, 0, 0)
        );
    });
}

#[test]
fn sixty_four_threads_blocked_in_syscalls() {
    sixty_four_threads_blocked_in_syscalls_as(Build::X86_64);
}

/// Issue 18: threads of a 32-bit process blocked in pipe reads, accept, nanosleep and futex
/// waits (made through the vDSO's `__kernel_vsyscall`): each restarts as if nothing happened.
#[test]
fn sixty_four_threads_blocked_in_syscalls_i386() {
    sixty_four_threads_blocked_in_syscalls_as(Build::I386);
}

fn sixty_four_threads_blocked_in_syscalls_as(build: Build) {
    with_timeout(60, move || {
        let mut target = Target::start_as(build, &["--blockers", "16", "--sleep-ms", "1500"]);
        let start = Instant::now();
        // Sleepers started 1.5 s sleeps: one restarted from scratch would last 2 s or more.
        std::thread::sleep(Duration::from_millis(500));
        let mut t = seize_stopped(target.pid());
        let threads = t.threads();
        assert_eq!(threads.len(), 65, "{threads:?}");
        assert!(matches!(
            Tracee::seize(threads[1]),
            Err(Error::InvalidArgument { .. })
        ));
        let names: Vec<String> = threads.iter().map(|&tid| t.thread_name(tid)).collect();
        for kind in ["pipe-15", "accept-0", "sleep-7", "futex-3"] {
            assert!(
                names.iter().any(|n| n == kind),
                "{kind} missing from {names:?}"
            );
        }
        let regs = t.all_registers().unwrap();
        let in_syscall = regs
            .iter()
            .filter(|(_, r)| r.in_restartable_syscall())
            .count();
        assert_eq!(
            in_syscall, 65,
            "every thread waits in a restartable system call"
        );
        let bumps = exercise(&mut t, &target);
        assert!(
            t.all_registers().unwrap() == regs,
            "every thread's registers restored"
        );
        // Calls on another thread than the main one.
        let sleeper = threads[threads.len() / 2];
        assert_eq!(
            t.call_on(sleeper, target.a("add6"), &[6, 5, 4, 3, 2, 1], CALL_TIMEOUT)
                .unwrap(),
            56
        );
        t.detach().unwrap();
        assert!(
            start.elapsed() < Duration::from_millis(1450),
            "operations too slow for the sleep check"
        );
        target.proc.send("wake");
        let woke = fields(&target.proc.expect("woke", Duration::from_secs(10)));
        assert_eq!(woke["errors"], 0);
        assert!((1500..1950).contains(&woke["sleepmin"]), "{woke:?}");
        let pong = target.ping();
        assert_eq!((pong["counter"], pong["errors"]), (bumps, 0));
    });
}

#[test]
fn signal_stream_during_operations() {
    signal_stream_during_operations_as(Build::X86_64);
}

/// Issue 18: signals arriving while lpkg works in a 32-bit process.
#[test]
fn signal_stream_during_operations_i386() {
    signal_stream_during_operations_as(Build::I386);
}

fn signal_stream_during_operations_as(build: Build) {
    with_timeout(90, move || {
        let mut target = Target::start_as(build, &[]);
        const COUNT: i64 = 3000;
        let pid = target.pid().to_string();
        let mut sender = Proc::spawn(&bin("sender"), &[&pid, &COUNT.to_string(), "100"]);
        let mut bumps = 0;
        let mut rounds = 0;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut t = seize_stopped(target.pid());
            bumps += exercise(&mut t, &target);
            t.detach().unwrap();
            rounds += 1;
            std::thread::sleep(Duration::from_millis(5));
            if sender.child.try_wait().unwrap().is_some() {
                break;
            }
            assert!(Instant::now() < deadline, "sender did not finish");
        }
        sender.expect("sent 3000", Duration::from_secs(5));
        assert!(
            rounds >= 3,
            "only {rounds} rounds overlapped the signal stream"
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        let pong = loop {
            let pong = target.ping();
            if pong["sig"] == COUNT || Instant::now() > deadline {
                break pong;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(
            (pong["sig"], pong["counter"], pong["errors"]),
            (COUNT, bumps, 0),
            "{pong:?}"
        );
    });
}

#[test]
fn threads_created_and_ended_while_attaching() {
    with_timeout(60, || {
        let mut target = Target::start(&["--churn", "4"]);
        std::thread::sleep(Duration::from_millis(50));
        let mut bumps = 0;
        for _ in 0..5 {
            let mut t = seize_stopped(target.pid());
            assert!(t.threads().len() >= 5, "{:?}", t.threads());
            // The set is complete: /proc lists no thread we do not hold.
            let mut listed: Vec<i32> = std::fs::read_dir(format!("/proc/{}/task", target.pid()))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_str().unwrap().parse().unwrap())
                .collect();
            listed.sort();
            assert_eq!(listed, t.threads());
            bumps += exercise(&mut t, &target);
            t.resume().unwrap();
            std::thread::sleep(Duration::from_millis(20));
            t.stop().unwrap();
            t.detach().unwrap();
        }
        let first = target.ping();
        std::thread::sleep(Duration::from_millis(100));
        let second = target.ping();
        assert!(
            second["churn"] > first["churn"],
            "churn stalled: {first:?} {second:?}"
        );
        assert_eq!((second["counter"], second["errors"]), (bumps, 0));
    });
}

#[test]
fn memfd_mapping_is_named() {
    memfd_mapping_is_named_as(Build::X86_64);
}

/// Issue 18: `memfd_create`, `ftruncate`, `mmap2` of the descriptor and `close` in a 32-bit
/// process.
#[test]
fn memfd_mapping_is_named_i386() {
    memfd_mapping_is_named_as(Build::I386);
}

fn memfd_mapping_is_named_as(build: Build) {
    with_timeout(30, move || {
        let mut target = Target::start_as(build, &[]);
        let mut t = seize_stopped(target.pid());
        let addr = t.memfd_map("lpkg:record test", 8192).unwrap();
        let entry = maps::read(target.pid())
            .unwrap()
            .into_iter()
            .find(|m| m.start == addr)
            .expect("mapped");
        assert_eq!(
            entry.path.as_deref(),
            Some(std::path::Path::new("/memfd:lpkg:record test"))
        );
        assert!(entry.deleted && entry.shared && entry.read && entry.write && entry.len() == 8192);
        memory::write(target.pid(), addr + 100, b"hello").unwrap();
        assert_eq!(memory::read(target.pid(), addr + 100, 5).unwrap(), b"hello");
        // The descriptor was closed: only the mapping keeps the memfd alive.
        let fds = std::fs::read_dir(format!("/proc/{}/fd", target.pid())).unwrap();
        for fd in fds {
            let link = std::fs::read_link(fd.unwrap().path()).unwrap();
            assert!(
                !link.to_string_lossy().contains("memfd"),
                "fd left open: {link:?}"
            );
        }
        assert!(matches!(
            t.memfd_map("bad\0name", 4096),
            Err(Error::InvalidArgument { .. })
        ));
        drop(t);
        assert_eq!(target.ping()["errors"], 0);
    });
}

#[test]
fn named_private_code_within_reach() {
    named_private_code_within_reach_as(Build::X86_64);
}

/// Issue 18: in a 32-bit process every address is within a `jmp rel32`'s reach.
#[test]
fn named_private_code_within_reach_i386_no_pie() {
    named_private_code_within_reach_as(Build::I386NoPie);
}

fn named_private_code_within_reach_as(build: Build) {
    with_timeout(30, move || {
        let mut target = Target::start_as(build, &[]);
        let pid = target.pid();
        let mut t = seize_stopped(pid);
        let answer = target.a("answer");
        let code = named_code_runs(&mut t, "lpkg-module:test", answer);
        let arch = t.arch();
        assert!(
            arch.encode_jmp_rel32(answer, code + 8191).is_some(),
            "{code:#x}"
        );
        assert!(code + 8192 <= arch.user_top(), "{code:#x}");
        t.munmap(code, 8192).unwrap();
        assert!(maps::read(pid).unwrap().iter().all(|m| !m.contains(code)));
        drop(t);
        assert_eq!(target.ping()["errors"], 0);
    });
}

/// Maps 8 KiB of private code named `name` near `near` in the stopped `t`, checks its
/// name in /proc/PID/maps, writes code there, makes it r-x and calls it; returns its address.
fn named_code_runs(t: &mut Tracee, name: &str, near: u64) -> u64 {
    let pid = t.pid();
    let code = t.memfd_map_near(name, near, 8192, RW).unwrap();
    let entry = maps::read(pid)
        .unwrap()
        .into_iter()
        .find(|m| m.start == code)
        .expect("mapped");
    let path = format!("/memfd:{name}");
    assert_eq!(entry.path.as_deref(), Some(std::path::Path::new(&path)));
    assert!(entry.deleted && !entry.shared && entry.len() == 8192);
    // Private code like an anonymous mapping: written, made r-x, called.
    memory::write(pid, code, &[0xb8, 43, 0, 0, 0, 0xc3]).unwrap(); // mov eax, 43; ret
    t.mprotect(code, 4096, RX).unwrap();
    // The protection splits the mapping; each part keeps the name and its file offset.
    let parts: Vec<_> = (maps::read(pid).unwrap().into_iter())
        .filter(|m| m.start >= code && m.end <= code + 8192)
        .map(|m| (m.start - code, m.offset, m.exec, m.path == entry.path))
        .collect();
    assert_eq!(parts, [(0, 0, true, true), (4096, 4096, false, true)]);
    assert_eq!(t.call(code, &[], CALL_TIMEOUT).unwrap() as u32, 43);
    code
}

/// The PID of the process running `exe` among the descendants of `pid`.
fn descendant_running(pid: i32, exe: &std::path::Path) -> Option<i32> {
    let exe = exe.canonicalize().ok()?;
    let mut queue = vec![pid];
    while let Some(p) = queue.pop() {
        if std::fs::read_link(format!("/proc/{p}/exe")).ok().as_deref() == Some(&exe) {
            return Some(p);
        }
        for task in std::fs::read_dir(format!("/proc/{p}/task")).ok()? {
            let children = std::fs::read_to_string(task.ok()?.path().join("children")).ok()?;
            queue.extend(
                children
                    .split_whitespace()
                    .filter_map(|c| c.parse::<i32>().ok()),
            );
        }
    }
    None
}

/// Where `vm.memfd_noexec` = 2 refuses executable memfds (set in a PID namespace of the
/// test's own, so the machine's setting is untouched), the module mapping is a named memfd
/// all the same (not an anonymous mapping an interrupted apply would leave unfound), and code
/// in it runs.
#[test]
fn named_code_where_executable_memfds_are_refused() {
    if !std::path::Path::new("/proc/sys/vm/memfd_noexec").exists() {
        eprintln!("skipped: this kernel (before 6.3) has no vm.memfd_noexec");
        return;
    }
    with_timeout(30, || {
        let target = bin("target");
        let script = "echo 2 > /proc/sys/vm/memfd_noexec && exec \"$0\"";
        let mut proc = Proc::spawn(
            std::path::Path::new("unshare"),
            &[
                "--pid",
                "--fork",
                "--kill-child",
                "sh",
                "-c",
                script,
                target.to_str().unwrap(),
            ],
        );
        let ready = proc.expect("ready", Duration::from_secs(10));
        let answer = fields(&ready)["answer"] as u64;
        let pid = descendant_running(proc.pid(), &target).expect("the target under unshare");
        let mut t = seize_stopped(pid);
        named_code_runs(&mut t, "lpkg-module:noexec", answer);
        drop(t);
        proc.send("ping");
        assert_eq!(
            fields(&proc.expect("pong", Duration::from_secs(10)))["errors"],
            0
        );
    });
}

#[test]
fn mapped_objects_identify_replaced_files() {
    with_timeout(30, || {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("my target");
        std::fs::copy(bin("target"), &exe).unwrap();
        let mut proc = Proc::spawn(&exe, &[]);
        proc.expect("ready", Duration::from_secs(10));
        let find = |pid| {
            objects::mapped_objects(pid)
                .unwrap()
                .into_iter()
                .find(|o| o.path == exe)
                .expect("target object listed")
        };
        let before = find(proc.pid());
        let id = before.build_id.clone().expect("gcc writes a build-id");
        assert_eq!(before.base % 4096, 0);
        assert!(before.ranges.iter().any(|r| r.exec));
        assert!(objects::mapped_objects(proc.pid())
            .unwrap()
            .iter()
            .any(|o| o.path.to_string_lossy().contains("libc.so")));
        // Replace the file on disk by another ELF: the mapping is still identified correctly.
        std::fs::remove_file(&exe).unwrap();
        std::fs::copy(bin("sender"), &exe).unwrap();
        let after = find(proc.pid());
        assert!(after.ranges[0].deleted);
        assert_eq!(after.build_id, Some(id));
    });
}

#[test]
fn call_that_faults_is_caught() {
    call_that_faults_is_caught_as(Build::X86_64);
}

/// Issue 18: a cdecl call that faults in a 32-bit process.
#[test]
fn call_that_faults_is_caught_i386() {
    call_that_faults_is_caught_as(Build::I386);
}

fn call_that_faults_is_caught_as(build: Build) {
    with_timeout(30, move || {
        let mut target = Target::start_as(build, &[]);
        let mut t = seize_stopped(target.pid());
        let before = t.registers(target.pid()).unwrap();
        match t.call(target.a("null_deref"), &[], CALL_TIMEOUT) {
            Err(Error::CallFaulted {
                signal: libc::SIGSEGV,
                addr: 0,
                pc,
                ..
            }) => {
                assert!(
                    pc >= target.a("null_deref") && pc < target.a("null_deref") + 16,
                    "pc {pc:#x}"
                )
            }
            other => panic!("expected a SIGSEGV fault, got {other:?}"),
        }
        let after = t.registers(target.pid()).unwrap();
        assert!(before == after, "registers restored: {before:?} {after:?}");
        assert_eq!(t.call(target.a("answer"), &[], CALL_TIMEOUT).unwrap(), 42);
        drop(t);
        assert_eq!(target.ping()["errors"], 0);
    });
}

#[test]
fn call_that_never_returns_times_out() {
    call_that_never_returns_times_out_as(Build::X86_64);
}

/// Issue 18: the same in a 32-bit process, and an argument wider than its registers.
#[test]
fn call_that_never_returns_times_out_i386() {
    call_that_never_returns_times_out_as(Build::I386);
}

fn call_that_never_returns_times_out_as(build: Build) {
    with_timeout(30, move || {
        let mut target = Target::start_as(build, &[]);
        let mut t = seize_stopped(target.pid());
        let started = Instant::now();
        match t.call(target.a("spin"), &[], Duration::from_millis(300)) {
            Err(Error::CallTimedOut { func, .. }) => assert_eq!(func, target.a("spin")),
            other => panic!("expected a timeout, got {other:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(t.call(target.a("answer"), &[], CALL_TIMEOUT).unwrap(), 42);
        assert!(matches!(
            t.call(target.a("answer"), &[0; 7], CALL_TIMEOUT),
            Err(Error::TooManyArgs { count: 7, .. })
        ));
        if t.arch() == Arch::I386 {
            let wide = t.call(target.a("answer"), &[1 << 32], CALL_TIMEOUT);
            assert!(
                matches!(wide, Err(Error::InvalidArgument { .. })),
                "{wide:?}"
            );
        }
        drop(t);
        let pong = target.ping();
        assert!(pong["counter"] > 0, "spin ran");
        assert_eq!(pong["errors"], 0);
    });
}

#[test]
fn operations_need_a_stopped_process() {
    with_timeout(30, || {
        let target = Target::start(&[]);
        let mut t = Tracee::seize(target.pid()).unwrap();
        assert!(matches!(
            t.call(target.a("answer"), &[], CALL_TIMEOUT),
            Err(Error::NotStopped { .. })
        ));
        assert!(matches!(
            t.mmap(0, 4096, RW, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0),
            Err(Error::NotStopped { .. })
        ));
        t.stop().unwrap();
        assert!(matches!(
            t.registers(1),
            Err(Error::NoSuchThread { tid: 1, .. })
        ));
        let err = t.munmap(1, 4096).unwrap_err();
        assert!(
            matches!(
                err,
                Error::SyscallFailed {
                    nr: 11,
                    errno: libc::EINVAL,
                    ..
                }
            ),
            "{err}"
        );
        t.detach().unwrap();
    });
}

#[test]
fn vanished_and_zombie_processes() {
    with_timeout(30, || {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        // Exited but not reaped: a zombie.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap()
            .contains(") Z")
        {
            assert!(Instant::now() < deadline, "child did not exit");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(matches!(Tracee::seize(pid), Err(Error::Zombie { pid: p }) if p == pid));
        child.wait().unwrap();
        assert!(matches!(Tracee::seize(pid), Err(Error::NoSuchProcess { pid: p }) if p == pid));
        assert!(matches!(
            memory::read(pid, 0x1000, 1),
            Err(Error::NoSuchProcess { .. })
        ));
        assert!(matches!(maps::read(pid), Err(Error::NoSuchProcess { .. })));
    });
}

#[test]
fn process_exiting_while_seized() {
    with_timeout(30, || {
        let mut target = Target::start(&[]);
        let mut t = seize_stopped(target.pid());
        t.resume().unwrap();
        target.proc.send("quit");
        std::thread::sleep(Duration::from_millis(100));
        match t.stop() {
            Err(Error::ProcessExited { pid }) => assert_eq!(pid, target.pid()),
            other => panic!("expected ProcessExited, got {other:?}"),
        }
        assert!(t.threads().is_empty());
    });
}

#[test]
fn second_tracer_is_named() {
    with_timeout(30, || {
        let mut holder = Proc::spawn(&bin("holder"), &[]);
        let line = holder.expect("traced", Duration::from_secs(10));
        let traced: i32 = line["traced ".len()..].parse().unwrap();
        // The held child dies with the holder (PR_SET_PDEATHSIG); kill it by PID as well.
        struct Kill(i32);
        impl Drop for Kill {
            fn drop(&mut self) {
                // SAFETY: kill(2) on the PID the holder printed, a process this test created.
                unsafe { libc::kill(self.0, libc::SIGKILL) };
            }
        }
        let _kill = Kill(traced);
        match Tracee::seize(traced) {
            Err(Error::AlreadyTraced {
                pid,
                tracer_pid,
                tracer_name,
            }) => {
                assert_eq!(
                    (pid, tracer_pid, tracer_name.as_str()),
                    (traced, holder.pid(), "holder")
                );
            }
            other => panic!("expected AlreadyTraced, got {:?}", other.map(|t| t.pid())),
        }
    });
}

#[test]
fn memory_errors_are_reported() {
    with_timeout(30, || {
        let target = Target::start(&[]);
        let pid = target.pid();
        let code = target.a("answer");
        assert_eq!(
            memory::read(pid, code, 6).unwrap(),
            [0xb8, 42, 0, 0, 0, 0xc3]
        );
        // Read-only code pages are writable through /proc/PID/mem.
        memory::write(pid, code + 1, &[42]).unwrap();
        assert!(matches!(
            memory::read(pid, 0x10, 8),
            Err(Error::Memory { addr: 0x10, .. })
        ));
        // A read running off the end of a mapping into unmapped memory is short, not truncated.
        let maps = maps::read(pid).unwrap();
        let last_before_gap = maps
            .windows(2)
            .find(|w| w[0].end < w[1].start && w[0].read)
            .map(|w| w[0].clone())
            .expect("a gap");
        let err = memory::read(pid, last_before_gap.end - 4, 8).unwrap_err();
        assert!(
            matches!(err, Error::ShortRead { len: 8, got: 4, .. }),
            "{err}"
        );
        let err = memory::write(pid, 0x10, b"x").unwrap_err();
        assert!(matches!(err, Error::Memory { addr: 0x10, .. }), "{err}");
    });
}

#[test]
fn thread_in_sigsuspend_keeps_its_mask() {
    thread_in_sigsuspend_keeps_its_mask_as(Build::X86_64);
}

#[test]
fn thread_in_sigsuspend_keeps_its_mask_i386() {
    thread_in_sigsuspend_keeps_its_mask_as(Build::I386);
}

fn thread_in_sigsuspend_keeps_its_mask_as(build: Build) {
    with_timeout(30, move || {
        let mut target = Target::start_as(build, &["--suspender", "1"]);
        std::thread::sleep(Duration::from_millis(100));
        let mut t = seize_stopped(target.pid());
        let tid = *t
            .threads()
            .iter()
            .find(|&&tid| t.thread_name(tid) == "suspend")
            .expect("suspend thread");
        let rt_sigsuspend = match t.arch() {
            Arch::X86_64 => 130,
            Arch::I386 => 179,
        };
        assert_eq!(
            t.registers(tid).unwrap().syscall_nr(),
            Some(rt_sigsuspend),
            "in rt_sigsuspend"
        );
        assert_eq!(
            t.call_on(tid, target.a("add6"), &[1, 1, 1, 1, 1, 1], CALL_TIMEOUT)
                .unwrap(),
            21
        );
        let bumps = exercise(&mut t, &target);
        t.detach().unwrap();
        // SAFETY: tgkill(2) to a thread of the target this test started.
        let rc = unsafe { libc::syscall(libc::SYS_tgkill, target.pid(), tid, libc::SIGUSR2) };
        assert_eq!(rc, 0);
        target.proc.expect("suspend ok", Duration::from_secs(5));
        let pong = target.ping();
        assert_eq!((pong["counter"], pong["errors"]), (bumps, 0));
    });
}

#[test]
fn stopped_process_stays_stopped() {
    with_timeout(30, || {
        let mut target = Target::start(&[]);
        let pid = target.pid();
        let state = || {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
            stat.rsplit_once(") ").unwrap().1.chars().next().unwrap()
        };
        // SAFETY: kill(2) to the target this test started.
        unsafe { libc::kill(pid, libc::SIGSTOP) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while state() != 'T' {
            assert!(Instant::now() < deadline, "target did not stop");
            std::thread::sleep(Duration::from_millis(5));
        }
        let mut t = seize_stopped(pid);
        assert_eq!(t.call(target.a("answer"), &[], CALL_TIMEOUT).unwrap(), 42);
        let bumps = exercise(&mut t, &target);
        t.resume().unwrap();
        std::thread::sleep(Duration::from_millis(50));
        t.stop().unwrap();
        t.detach().unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(state(), 'T', "job-control stop kept");
        target.proc.send("ping");
        target.proc.expect_silence(Duration::from_millis(100));
        // SAFETY: kill(2) to the target this test started.
        unsafe { libc::kill(pid, libc::SIGCONT) };
        let pong = fields(&target.proc.expect("pong", Duration::from_secs(5)));
        assert_eq!((pong["counter"], pong["errors"]), (bumps, 0));
    });
}

#[test]
fn process_whose_main_thread_exited() {
    process_whose_main_thread_exited_as(Build::X86_64);
}

/// Issue 18: the architecture read through a live thread's /proc directory.
#[test]
fn process_whose_main_thread_exited_i386() {
    process_whose_main_thread_exited_as(Build::I386);
}

fn process_whose_main_thread_exited_as(build: Build) {
    with_timeout(30, move || {
        let mut target = Target::start_as(build, &["--leader-exit", "1"]);
        let pid = target.pid();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap()
            .contains("State:\tZ")
        {
            assert!(Instant::now() < deadline, "leader did not exit");
            std::thread::sleep(Duration::from_millis(5));
        }
        // Issue 19 (10): the mapped objects, through a live thread's /proc directory
        // (/proc/PID/map_files is gone with the main thread).
        let objects = lpkg_kernel::objects::mapped_objects(pid).unwrap();
        assert!(objects.iter().any(|o| o.build_id.is_some()), "{objects:?}");
        let mut t = seize_stopped(pid);
        assert_eq!(t.arch(), build.arch());
        let threads = t.threads();
        assert_eq!(threads.len(), 1, "{threads:?}");
        assert_ne!(threads[0], pid);
        assert_eq!(t.thread_name(threads[0]), "commands");
        let bumps = exercise(&mut t, &target);
        t.detach().unwrap();
        let pong = target.ping();
        assert_eq!((pong["counter"], pong["errors"]), (bumps, 0));
    });
}

#[test]
fn unblockable_signal_during_call_is_redelivered() {
    with_timeout(30, || {
        let mut target = Target::start(&[]);
        let pid = target.pid();
        let mut t = seize_stopped(pid);
        // SIGSYS cannot be blocked while our code runs (a fault would reset its handler), so
        // one sent meanwhile is held back and re-sent when the thread is given back.
        let sender = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            let value = libc::sigval {
                sival_ptr: std::ptr::null_mut(),
            };
            // SAFETY: sigqueue(3) to the target this test started.
            assert_eq!(unsafe { libc::sigqueue(pid, libc::SIGSYS, value) }, 0);
        });
        let result = t.call(target.a("spin"), &[], Duration::from_millis(400));
        assert!(
            matches!(result, Err(Error::CallTimedOut { .. })),
            "{result:?}"
        );
        sender.join().unwrap();
        t.detach().unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let pong = target.ping();
            if pong["sig"] == 1 {
                assert_eq!(pong["errors"], 0);
                break;
            }
            assert!(
                Instant::now() < deadline,
                "SIGSYS not re-delivered: {pong:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    });
}

/// A thread's state letter in /proc (`t`: stopped by a tracer).
fn thread_state(pid: i32, tid: i32) -> char {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")).unwrap();
    let (_, rest) = stat.rsplit_once(") ").unwrap();
    rest.chars().next().unwrap()
}

#[test]
fn one_thread_stopped_while_the_others_run() {
    with_timeout(60, || {
        // The main thread is the one stopped, the others keep running.
        let target = Target::start(&["--blockers", "4"]);
        let pid = target.pid();
        let mut t = Tracee::seize(pid).unwrap();
        assert_eq!(t.stop_one().unwrap(), pid);
        assert!(!t.is_stopped());
        assert_eq!(thread_state(pid, pid), 't');
        let others: Vec<i32> = t.threads().into_iter().filter(|&tid| tid != pid).collect();
        assert!(!others.is_empty());
        for &tid in &others {
            assert_ne!(thread_state(pid, tid), 't', "thread {tid} was stopped too");
        }
        assert!(matches!(t.all_registers(), Err(Error::NotStopped { .. })));
        t.resume().unwrap();
        t.detach().unwrap();

        // Without a main thread, another one runs the injected code, and the thread reading
        // commands answers while it is held.
        let mut target = Target::start(&["--blockers", "4", "--leader-exit", "1"]);
        let pid = target.pid();
        let deadline = Instant::now() + Duration::from_secs(5);
        while thread_state(pid, pid) != 'Z' {
            assert!(Instant::now() < deadline, "leader did not exit");
            std::thread::sleep(Duration::from_millis(10));
        }
        let mut t = Tracee::seize(pid).unwrap();
        let worker = t.stop_one().unwrap();
        assert_ne!(worker, pid);
        assert_eq!(thread_state(pid, worker), 't');
        assert_eq!(target.ping()["errors"], 0);
        let bumps = exercise(&mut t, &target);
        assert_eq!(thread_state(pid, worker), 't');
        t.resume().unwrap();
        t.stop().unwrap();
        assert!(t.is_stopped());
        // Detaching the worker first, then the others: every one of them is left untraced.
        let threads = t.threads();
        t.detach_first(&[worker, 1]).unwrap();
        for tid in threads {
            let status = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status"));
            let tracer = status.unwrap_or_default();
            assert!(
                tracer.lines().any(|l| l == "TracerPid:\t0") || tracer.is_empty(),
                "thread {tid} still traced"
            );
        }
        let pong = target.ping();
        assert_eq!((pong["counter"], pong["errors"]), (bumps, 0));
    });
}

#[test]
fn one_open_mem_handle_reads_and_writes() {
    with_timeout(30, || {
        let target = Target::start(&[]);
        let pid = target.pid();
        let code = target.a("answer");
        let mem = memory::Mem::open(pid).unwrap();
        assert_eq!(mem.read(code, 6).unwrap(), [0xb8, 42, 0, 0, 0, 0xc3]);
        mem.write(code + 1, &[43]).unwrap();
        assert_eq!(memory::read(pid, code, 2).unwrap(), [0xb8, 43]);
        let err = mem.write(0x10, b"x").unwrap_err();
        assert!(matches!(err, Error::Memory { addr: 0x10, .. }), "{err}");
        assert_eq!(mem.accesses(), 3);
        assert!(matches!(
            memory::Mem::open(i32::MAX),
            Err(Error::NoSuchProcess { .. })
        ));
    });
}

/// Executable anonymous mappings: where the calls' trampoline page shows up.
fn anonymous_code(pid: i32) -> Vec<(u64, u64)> {
    maps::read(pid)
        .unwrap()
        .iter()
        .filter(|m| m.exec && m.path.is_none())
        .map(|m| (m.start, m.end))
        .collect()
}

#[test]
fn calls_share_one_trampoline_page_until_released_or_detached() {
    with_timeout(60, || {
        let mut target = Target::start(&[]);
        let pid = target.pid();
        let mut t = seize_stopped(pid);
        let before = anonymous_code(pid);
        let add6 = target.a("add6");
        assert_eq!(t.call(add6, &[1, 2, 3, 4, 5, 6], CALL_TIMEOUT).unwrap(), 91);
        let during = anonymous_code(pid);
        assert_eq!(during.len(), before.len() + 1, "one page: {during:x?}");
        for n in 0..3 {
            assert_eq!(t.call(add6, &[n, 0, 0, 0, 0, 0], CALL_TIMEOUT).unwrap(), n);
            assert_eq!(anonymous_code(pid), during, "a page per call");
        }
        t.release_call_trampoline().unwrap();
        assert_eq!(anonymous_code(pid), before, "released");
        // Mapped ahead of the calls, and then used by them.
        t.map_call_trampoline().unwrap();
        assert_eq!(anonymous_code(pid), during, "mapped ahead");
        assert_eq!(t.call(add6, &[1, 2, 3, 4, 5, 6], CALL_TIMEOUT).unwrap(), 91);
        assert_eq!(anonymous_code(pid), during, "a page for the call");
        t.release_call_trampoline().unwrap();
        // Mapped again by the next call (after a resume), and unmapped by the detach.
        t.resume().unwrap();
        t.stop().unwrap();
        assert_eq!(t.call(add6, &[1, 2, 3, 4, 5, 6], CALL_TIMEOUT).unwrap(), 91);
        assert_eq!(anonymous_code(pid).len(), before.len() + 1);
        t.detach().unwrap();
        assert_eq!(anonymous_code(pid), before, "left mapped by the detach");
        let pong = target.ping();
        assert_eq!(pong["errors"], 0);
    });
}

#[test]
fn calls_in_one_stop_read_the_alternate_stack_once() {
    with_timeout(60, || {
        let mut proc = Proc::spawn(&bin("fpu"), &[]);
        let slow = fields(&proc.expect("ready", Duration::from_secs(10)))["slow"] as u64;
        proc.wait_line("ok", Duration::from_secs(10));
        let mut t = seize_stopped(proc.pid());
        t.map_call_trampoline().unwrap();
        let mapped = t.injected_syscalls();
        // The first call reads the thread's alternate stack (one injected sigaltstack).
        assert_eq!(t.call(slow, &[1], CALL_TIMEOUT).unwrap(), 7);
        assert_eq!(t.injected_syscalls(), mapped + 1);
        // `slow` made system calls, but the thread's own code has not run: nothing is read
        // again.
        for _ in 0..3 {
            assert_eq!(t.call(slow, &[1], CALL_TIMEOUT).unwrap(), 7);
        }
        assert_eq!(t.injected_syscalls(), mapped + 1);
        // Once it has run, it is.
        t.resume().unwrap();
        proc.wait_line("ok", Duration::from_secs(10));
        t.stop().unwrap();
        assert_eq!(t.call(slow, &[1], CALL_TIMEOUT).unwrap(), 7);
        assert_eq!(t.injected_syscalls(), mapped + 2);
        t.detach().unwrap();
        // Its checks of registers, mask and alternate stack still pass.
        for _ in 0..3 {
            proc.wait_line("ok", Duration::from_secs(10));
        }
    });
}

/// A program with no `rt_sigreturn` restorer mapped (no libc): injected system calls go
/// without a signal frame (the point where our call replaces `rt_sigreturn` is never reached),
/// and work, the program untouched.
#[test]
fn a_program_without_a_restorer_gets_system_calls_without_a_frame() {
    with_timeout(60, || {
        let exe = bin("nolibc");
        let code = std::fs::read(&exe).unwrap();
        let restore_rt = lpkg_kernel::arch::x86_64::RESTORE_RT;
        assert!(!code.windows(restore_rt.len()).any(|w| w == restore_rt));
        let mut proc = Proc::spawn(&exe, &[]);
        proc.expect("ready", Duration::from_secs(10));
        let pid = proc.pid();
        let mut t = Tracee::seize(pid).unwrap();
        for _ in 0..3 {
            t.stop().unwrap();
            let before = t.registers(pid).unwrap();
            lpkg_kernel::test_hook::fail_at(lpkg_kernel::test_hook::SYSCALL_ENTERED);
            assert_eq!(
                t.syscall(libc::SYS_getpid as u64, [0; 6]).unwrap(),
                pid as i64
            );
            let rw = Prot::RW;
            let addr = t
                .mmap(0, 4096, rw, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0)
                .unwrap();
            t.munmap(addr, 4096).unwrap();
            assert_eq!(t.registers(pid).unwrap(), before);
            t.resume().unwrap();
            proc.wait_line("ok", Duration::from_secs(10));
        }
        t.detach().unwrap();
        proc.wait_line("ok", Duration::from_secs(10));
    });
}

/// Issue 18: the seccomp check of a 32-bit process runs its filter on the i386 numbers and
/// `AUDIT_ARCH_I386`: a filter that kills any call made with another architecture's
/// convention lets every call lpkg makes through (it would kill the process otherwise), and
/// one that kills `memfd_create` makes lpkg refuse before making any.
#[test]
fn seccomp_filters_of_a_32_bit_process() {
    seccomp_filters_as(Build::I386);
}

#[test]
fn seccomp_filters_of_a_64_bit_process() {
    seccomp_filters_as(Build::X86_64);
}

fn seccomp_filters_as(build: Build) {
    with_timeout(60, move || {
        let mut target = Target::start_as(build, &["--seccomp", "arch"]);
        let mut t = seize_stopped(target.pid());
        let bumps = exercise(&mut t, &target);
        let addr = t.memfd_map("lpkg:sandboxed", 4096).unwrap();
        t.munmap(addr, 4096).unwrap();
        drop(t);
        let pong = target.ping();
        assert_eq!((pong["counter"], pong["errors"]), (bumps, 0));

        let mut target = Target::start_as(build, &["--seccomp", "memfd"]);
        let mut t = seize_stopped(target.pid());
        match t.memfd_map("lpkg:sandboxed", 4096) {
            Err(Error::Sandboxed { reason, .. }) => assert!(reason.contains("memfd_create")),
            other => panic!("expected Sandboxed, got {other:?}"),
        }
        drop(t);
        assert_eq!(target.ping()["errors"], 0);
    });
}

/// Issue 18: a process is driven as its program's architecture, whatever its threads execute:
/// a 64-bit process whose main thread far-jumped to 32-bit code (code segment 0x23) gets 64-bit
/// system calls and calls all the same (run in 64-bit mode), and goes back to its 32-bit loop.
#[test]
fn a_64_bit_process_running_32_bit_code_is_driven_as_64_bit() {
    process_running_code_of_the_other_mode(Build::X86_64, &["low-stack"], true);
    // Its stack pointer cut to its low half by the mode switch: no stack for a call there.
    process_running_code_of_the_other_mode(Build::X86_64, &[], false);
}

/// Issue 18: the reverse, a 32-bit process whose main thread far-jumped to 64-bit code (code
/// segment 0x33): `int $0x80` system calls and cdecl calls in 32-bit mode.
#[test]
fn a_32_bit_process_running_64_bit_code_is_driven_as_32_bit() {
    process_running_code_of_the_other_mode(Build::I386, &[], true);
}

fn process_running_code_of_the_other_mode(
    build: Build,
    args: &'static [&'static str],
    has_stack: bool,
) {
    with_timeout(30, move || {
        let mut proc = Proc::spawn(&util::bin_for("farjump", build), args);
        let ready = fields(&proc.expect("ready", Duration::from_secs(10)));
        let (counter, answer) = (ready["counter"] as u64, ready["answer"] as u64);
        let pid = proc.pid();
        let count = || read_long(pid, Arch::I386, counter);
        let deadline = Instant::now() + Duration::from_secs(5);
        while count() == 0 {
            assert!(
                Instant::now() < deadline,
                "the other mode's loop does not run"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let mut t = seize_stopped(pid);
        assert_eq!(t.arch(), build.arch());
        let before = t.registers(pid).unwrap();
        let other_mode_cs = match build.arch() {
            Arch::X86_64 => 0x23,
            Arch::I386 => 0x33,
        };
        assert_eq!(
            before.0.cs, other_mode_cs,
            "in the other mode's code: {before:?}"
        );
        let anonymous = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;
        let page = t.mmap(0, 4096, RW, anonymous, -1, 0).unwrap();
        // A 64-bit mmap maps above 4 GiB, an i386 one below.
        let high = page > u64::from(u32::MAX);
        assert_eq!(high, build.arch() == Arch::X86_64, "{page:#x}");
        t.munmap(page, 4096).unwrap();
        let stack_mapped = maps::read(pid)
            .unwrap()
            .iter()
            .any(|m| m.contains(before.sp() - 8));
        assert_eq!(stack_mapped, has_stack, "{before:?}");
        if !has_stack {
            match t.call(answer, &[], CALL_TIMEOUT) {
                Err(Error::NoStackRoom { .. }) => {}
                other => panic!("expected NoStackRoom, got {other:?}"),
            }
        } else {
            assert_eq!(t.call(answer, &[], CALL_TIMEOUT).unwrap(), 42);
        }
        assert_eq!(t.registers(pid).unwrap(), before);
        t.detach().unwrap();
        let seen = count();
        std::thread::sleep(Duration::from_millis(50));
        assert!(count() > seen, "the other mode's loop goes on");
    });
}

/// Issue 18: a 32-bit process run with the 3 GiB address limit (`setarch -3`, a legacy
/// personality) ends at 0xc0000000: a hole above that, nearest to its stack, is skipped for
/// one below.
#[test]
fn a_32_bit_process_limited_to_3_gib_maps_below_its_limit() {
    with_timeout(30, || {
        let program = util::bin_for("target", Build::I386);
        let program = program.to_str().unwrap();
        let mut proc = Proc::spawn(std::path::Path::new("setarch"), &["i386", "-3", program]);
        proc.expect("ready", Duration::from_secs(10));
        let pid = proc.pid();
        let stack = maps::read(pid)
            .unwrap()
            .into_iter()
            .find(|m| m.path.as_deref() == Some(std::path::Path::new("[stack]")))
            .unwrap();
        assert!(stack.end <= 0xc000_0000, "{stack:x?}");
        let mut t = seize_stopped(pid);
        let len = 16 << 20; // crosses 3 GiB when put right above the stack
        let code = t.map_near(stack.end, len, RW).unwrap();
        assert!(code + len <= 0xc000_0000, "{code:#x}");
        t.munmap(code, len).unwrap();
        drop(t);
        proc.send("ping");
        assert_eq!(
            fields(&proc.expect("pong", Duration::from_secs(5)))["errors"],
            0
        );
    });
}

/// Issue 18: the unwinder's facts about signal frames (`Arch::unwind`) read the frames the
/// kernel itself builds: past the handler's return address (into a restorer whose code the
/// facts name), the interrupted pc, stack pointer and rbx/ebx are where the facts say; for rt
/// frames, and on i386 for the older frames of handlers without `SA_SIGINFO` too.
#[test]
fn unwind_facts_read_the_kernels_signal_frames() {
    for (build, sig, kind) in [
        (Build::X86_64, libc::SIGUSR1, 0),
        (Build::X86_64, libc::SIGUSR2, 0),
        (Build::I386, libc::SIGUSR1, 0),
        (Build::I386NoPie, libc::SIGUSR2, 1),
    ] {
        signal_frame_facts_as(build, sig, kind);
    }
}

fn signal_frame_facts_as(build: Build, sig: i32, kind: usize) {
    with_timeout(30, move || {
        let mut proc = Proc::spawn(&util::bin_for("sigframe", build), &[]);
        let ready = fields(&proc.expect("ready", Duration::from_secs(10)));
        let spin = ready["spin_start"] as u64..ready["spin_end"] as u64;
        let pid = proc.pid();
        std::thread::sleep(Duration::from_millis(20));
        // SAFETY: kill(2) to the target this test started.
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
        proc.expect("in-handler", Duration::from_secs(10));
        let t = seize_stopped(pid);
        let facts = t.arch().unwind();
        let sp = t.registers(pid).unwrap().sp();
        let width = usize::from(facts.address_size);
        let word = |bytes: &[u8]| {
            let mut b = [0u8; 8];
            b[..bytes.len()].copy_from_slice(bytes);
            u64::from_le_bytes(b)
        };
        let code: Vec<_> = maps::read(pid)
            .unwrap()
            .into_iter()
            .filter(|m| m.exec)
            .collect();
        let window = lpkg_kernel::stack::read_upto(pid, sp, 64 << 10).unwrap();
        let (slot, frame) = window
            .chunks_exact(width)
            .enumerate()
            .find_map(|(i, w)| {
                let ret = word(w);
                code.iter().find(|m| m.contains(ret))?;
                let frame = facts.signal_frames.iter().find(|f| {
                    memory::read(pid, ret, f.restorer.len()).is_ok_and(|b| b == f.restorer)
                })?;
                Some((sp + (i * width) as u64, frame))
            })
            .expect("a return address into a restorer on the handler's stack");
        assert_eq!(
            frame.restorer, facts.signal_frames[kind].restorer,
            "{build:?}"
        );
        let regs_at = slot + width as u64 + frame.regs_at;
        let saved = |dwarf: u16| {
            let (index, _) = frame.slots.iter().find(|&&(_, d)| d == dwarf).unwrap();
            let size = u64::from(frame.slot_size);
            word(&memory::read(pid, regs_at + index * size, size as usize).unwrap())
        };
        assert!(
            spin.contains(&saved(facts.ra)),
            "{build:?} pc {:#x}",
            saved(facts.ra)
        );
        assert_eq!(saved(3), 0x5eed_0003, "{build:?} rbx/ebx");
        assert!(
            saved(facts.sp) > slot,
            "{build:?} sp {:#x}",
            saved(facts.sp)
        );
        drop(t);
    });
}
