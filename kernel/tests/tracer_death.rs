//! Calls and system calls injected into the target that outlive their tracer: a tracer process
//! is SIGKILLed (by PID) while the function it called runs, or at each point of an injected
//! system call, and the target must carry on exactly where it was, its registers, vector
//! registers, signal mask and alternate signal stack intact. Plus the unprivileged tracer's
//! error.
//!
//! The tracer is this test binary re-executed on `tracer_child`.

mod util;

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lpkg_kernel::arch::{Arch, Sys};
use lpkg_kernel::{test_hook, Error, Mark, Prot, Tracee};
use util::{bin, bin_for, fields, with_timeout, Build, Proc};

const OP: &str = "LPKG_TRACER_OP";
const PID: &str = "LPKG_TRACER_PID";
const FUNC: &str = "LPKG_TRACER_FUNC";
const POINT: &str = "LPKG_TRACER_POINT";

/// Every point of an injected system call where the thread is not its own: from our registers
/// set to the thread's own put back.
const SYSCALL_POINTS: [&str; 5] = [
    test_hook::SYSCALL_READY,
    test_hook::SYSCALL_STOP,
    test_hook::SYSCALL_ENTERED,
    test_hook::SYSCALL_DONE,
    test_hook::SYSCALL_NEXT,
];

/// The tracer process of the other tests; does nothing when run as a normal test.
#[test]
fn tracer_child() {
    let Ok(op) = std::env::var(OP) else { return };
    let pid: i32 = std::env::var(PID).unwrap().parse().unwrap();
    match op.as_str() {
        "call" | "pause" => {
            if op == "pause" {
                let point = std::env::var(POINT).unwrap();
                let point = [test_hook::CALL_FRAME_WRITTEN, test_hook::CALL_READY]
                    .into_iter()
                    .find(|p| *p == point)
                    .unwrap();
                test_hook::pause_at(point);
            }
            let func = u64::from_str_radix(&std::env::var(FUNC).unwrap(), 16).unwrap();
            let mut t = Tracee::seize(pid).unwrap();
            t.stop().unwrap();
            // The test kills us during this call (or at the pause inside it).
            let ret = t.call(func, &[1000], Duration::from_secs(30)).unwrap();
            println!("returned {ret}");
        }
        "mark" => {
            let func = u64::from_str_radix(&std::env::var(FUNC).unwrap(), 16).unwrap();
            let mut t = Tracee::seize(pid).unwrap();
            t.stop().unwrap();
            let rw = Prot::RW;
            let page = t
                .mmap(0, 4096, rw, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0)
                .unwrap();
            println!("page {page:x}");
            // The test kills us during this call.
            let mark = Mark {
                address: page + 8,
                value: MARK,
            };
            let ret = t.call_marking(func, &[1000], Duration::from_secs(30), mark);
            println!("returned {}", ret.unwrap());
        }
        "lead-out" => {
            test_hook::pause_at(test_hook::LEAD_OUT_READY);
            let (hot, slot) = caught_in_hash(
                pid,
                u64::from_str_radix(&std::env::var(FUNC).unwrap(), 16).unwrap(),
            );
            let mut t = Tracee::seize(pid).unwrap();
            t.stop().unwrap();
            // The test kills us at the pause.
            t.lead_out(hot, slot, Duration::from_secs(5)).unwrap();
        }
        "syscall" => {
            let point = std::env::var(POINT).unwrap();
            let point = SYSCALL_POINTS.into_iter().find(|p| *p == point).unwrap();
            test_hook::pause_at(point);
            let mut t = Tracee::seize(pid).unwrap();
            // The thread caught where the test wants it: in a system call or in user code.
            let in_syscall = std::env::var(FUNC).unwrap() == "1";
            for tries in 0.. {
                t.stop().unwrap();
                if t.registers(pid).unwrap().syscall_nr().is_some() == in_syscall {
                    break;
                }
                assert!(tries < 1000, "thread never caught there");
                t.resume().unwrap();
            }
            // The test kills us at the pause inside this system call (between two calls of
            // a batch: memfd_create, ftruncate, mmap and close).
            let addr = if point == test_hook::SYSCALL_NEXT {
                t.memfd_map("lpkg-test", 4096).unwrap()
            } else {
                let rw = Prot::RW;
                t.mmap(0, 4096, rw, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0)
                    .unwrap()
            };
            println!("mapped {addr:x}");
        }
        _ => match Tracee::seize(pid) {
            Err(e @ Error::PermissionDenied { .. }) => println!("denied: {e}"),
            Err(e) => panic!("expected PermissionDenied, got {e:?}"),
            Ok(_) => panic!("an unprivileged tracer seized process {pid}"),
        },
    }
}

/// What the tracer's marking call stores.
const MARK: u64 = 0x6d61_726b_6564_2121;

/// The C target of these tests, with the addresses it printed.
struct Fpu {
    proc: Proc,
    slow: u64,
    answer: u64,
}

impl Fpu {
    fn start() -> Fpu {
        Fpu::start_with(&[])
    }

    /// `["spin"]`: rounds in user code rather than in a system call.
    fn start_with(args: &[&str]) -> Fpu {
        Fpu::start_program("fpu", args)
    }

    /// `fpu` as `build`: for i386 its counterpart `fpu32`, which keeps x87 registers too.
    fn start_as(build: Build, args: &[&str]) -> Fpu {
        match build {
            Build::X86_64 => Fpu::start_with(args),
            _ => Fpu::start_at(&bin_for("fpu32", build), args),
        }
    }

    /// A target of the same protocol: `fpu`, or `xstate` with its mode.
    fn start_program(name: &str, args: &[&str]) -> Fpu {
        Fpu::start_at(&bin(name), args)
    }

    fn start_at(program: &std::path::Path, args: &[&str]) -> Fpu {
        let mut proc = Proc::spawn(program, args);
        let ready = fields(&proc.expect("ready", Duration::from_secs(10)));
        let mut fpu = Fpu {
            proc,
            slow: ready["slow"] as u64,
            answer: ready["answer"] as u64,
        };
        fpu.rounds_ok(3);
        fpu
    }

    fn pid(&self) -> i32 {
        self.proc.pid()
    }

    /// `n` more rounds whose checks all passed.
    fn rounds_ok(&mut self, n: usize) {
        for _ in 0..n {
            self.proc.wait_line("ok", Duration::from_secs(10));
        }
    }
}

/// A child process killed by PID and reaped on drop.
struct Tracer(Child);

impl Tracer {
    fn spawn(op: &str, pid: i32, func: u64, wrap: &[&str]) -> Tracer {
        Tracer::spawn_at(op, pid, func, wrap, "")
    }

    fn spawn_at(op: &str, pid: i32, func: u64, wrap: &[&str], point: &str) -> Tracer {
        let exe = std::env::current_exe().unwrap();
        let mut cmd = match wrap.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(exe);
                c
            }
            None => Command::new(exe),
        };
        cmd.args(["--exact", "tracer_child", "--nocapture", "--test-threads=1"])
            .env(OP, op)
            .env(PID, pid.to_string())
            .env(FUNC, format!("{func:x}"))
            .env(POINT, point)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        Tracer(cmd.spawn().unwrap())
    }

    /// Wait (at most `secs`) until it says on stderr that it paused.
    fn wait_paused(&mut self, secs: u64) {
        let stderr = self.0.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if line.starts_with("lpkg-kernel: paused at") && tx.send(()).is_err() {
                    break;
                }
            }
        });
        rx.recv_timeout(Duration::from_secs(secs))
            .expect("tracer did not pause");
    }

    fn kill(&mut self) {
        // SAFETY: kill(2) on the PID of our own child, not yet reaped.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGKILL) };
        self.0.wait().unwrap();
    }

    /// Wait (at most `secs`) for it to exit successfully; its stdout (a few lines: the pipe
    /// holds them while it runs).
    fn output(mut self, secs: u64) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let status = loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "tracer did not exit");
            std::thread::sleep(Duration::from_millis(10));
        };
        let (mut out, mut err) = (String::new(), String::new());
        self.0
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        self.0
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        assert!(status.success(), "tracer failed: {err}");
        out
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        if self.0.try_wait().is_ok_and(|s| s.is_none()) {
            // SAFETY: kill(2) on the PID of our own child, which has not been reaped.
            unsafe { libc::kill(self.0.id() as i32, libc::SIGKILL) };
            let _ = self.0.wait();
        }
    }
}

fn is_traced(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .any(|l| l.starts_with("TracerPid:") && l.split_whitespace().nth(1) != Some("0"))
}

#[test]
fn target_survives_the_tracer_killed_during_a_call() {
    target_survives_the_tracer_killed_during_a_call_as(Build::X86_64);
}

/// Issue 18: the ia32 frame of a call in a 32-bit process, loaded by the kernel's ia32
/// `rt_sigreturn` once the function returns: registers, x87 and SSE registers, mask and
/// alternate stack as they were.
#[test]
fn target_survives_the_tracer_killed_during_a_call_i386() {
    target_survives_the_tracer_killed_during_a_call_as(Build::I386);
}

fn target_survives_the_tracer_killed_during_a_call_as(build: Build) {
    with_timeout(60, move || {
        let mut fpu = Fpu::start_as(build, &[]);
        let mut tracer = Tracer::spawn("call", fpu.pid(), fpu.slow, &[]);
        fpu.proc.wait_line("in-call", Duration::from_secs(20));
        tracer.kill();
        assert!(!is_traced(fpu.pid()));
        // The call finishes by itself, rt_sigreturn puts the thread back in its nanosleep.
        fpu.rounds_ok(20);
        // A clean state: it can be traced and called into again.
        let mut t = Tracee::seize(fpu.pid()).unwrap();
        t.stop().unwrap();
        assert_eq!(t.call(fpu.answer, &[], Duration::from_secs(5)).unwrap(), 42);
        t.detach().unwrap();
        fpu.rounds_ok(5);
    });
}

/// lpkg killed inside a call before the thread ran anything of ours, and once everything is
/// set for it: the thread carries on with its own mask (blocked only last before the resume,
/// and covered by the frame from then on), registers and vector registers.
#[test]
fn target_survives_the_tracer_killed_while_a_call_is_set_up() {
    target_survives_the_tracer_killed_while_a_call_is_set_up_as(Build::X86_64);
}

#[test]
fn target_survives_the_tracer_killed_while_a_call_is_set_up_i386() {
    target_survives_the_tracer_killed_while_a_call_is_set_up_as(Build::I386NoPie);
}

fn target_survives_the_tracer_killed_while_a_call_is_set_up_as(build: Build) {
    with_timeout(60, move || {
        let mut fpu = Fpu::start_as(build, &[]);
        for point in [test_hook::CALL_FRAME_WRITTEN, test_hook::CALL_READY] {
            let mut tracer = Tracer::spawn_at("pause", fpu.pid(), fpu.slow, &[], point);
            tracer.wait_paused(20);
            tracer.kill();
            assert!(!is_traced(fpu.pid()));
            if point == test_hook::CALL_READY {
                // The function runs by itself and returns through its frame.
                fpu.proc.wait_line("in-call", Duration::from_secs(10));
            }
            fpu.rounds_ok(5);
        }
        let mut t = Tracee::seize(fpu.pid()).unwrap();
        t.stop().unwrap();
        assert_eq!(t.call(fpu.answer, &[], Duration::from_secs(5)).unwrap(), 42);
        t.detach().unwrap();
        fpu.rounds_ok(3);
    });
}

/// lpkg killed at every point of an injected system call (here the first, an `mmap`, before
/// any page of lpkg exists in the target), on a thread stopped inside a system call of its own
/// (`nanosleep`) and on one stopped in user code: the thread carries on exactly as it was, its
/// general and vector registers, mask and alternate stack intact (the target checks them after
/// every round), and it can be traced again.
#[test]
fn target_survives_the_tracer_killed_inside_an_injected_syscall() {
    target_survives_the_tracer_killed_inside_an_injected_syscall_as(Build::X86_64);
}

/// Issue 18: the same for `int $0x80` system calls in a 32-bit process, whose frames the ia32
/// `rt_sigreturn` loads through the vDSO's `__kernel_rt_sigreturn`.
#[test]
fn target_survives_the_tracer_killed_inside_an_injected_syscall_i386() {
    target_survives_the_tracer_killed_inside_an_injected_syscall_as(Build::I386);
}

fn target_survives_the_tracer_killed_inside_an_injected_syscall_as(build: Build) {
    with_timeout(120, move || {
        for mode in [&[][..], &["spin"][..]] {
            let mut fpu = Fpu::start_as(build, mode);
            for point in SYSCALL_POINTS {
                // FUNC: where the thread must be, 1 = in its nanosleep, 0 = in user code.
                let in_syscall = mode.is_empty() as u64;
                let mut tracer = Tracer::spawn_at("syscall", fpu.pid(), in_syscall, &[], point);
                tracer.wait_paused(20);
                tracer.kill();
                assert!(!is_traced(fpu.pid()), "{mode:?} {point}");
                fpu.rounds_ok(5);
            }
            let mut t = Tracee::seize(fpu.pid()).unwrap();
            t.stop().unwrap();
            let getpid = t.arch().nr(Sys::Getpid);
            assert_eq!(t.syscall(getpid, [0; 6]).unwrap(), fpu.pid() as i64);
            assert_eq!(t.call(fpu.answer, &[], Duration::from_secs(5)).unwrap(), 42);
            t.detach().unwrap();
            fpu.rounds_ok(3);
        }
    });
}

/// Why this CPU cannot run `xstate`'s `mode`, if it cannot.
fn missing_cpu_feature(mode: &str) -> Option<String> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap();
    let flags: Vec<&str> = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("flags"))
        .map(|l| {
            l.trim_start_matches([' ', '\t', ':'])
                .split_whitespace()
                .collect()
        })
        .unwrap_or_default();
    let needed: &[&str] = match mode {
        "zmm" => &["avx512f"],
        _ => &["avx512f", "amx_tile"],
    };
    let missing: Vec<&str> = needed
        .iter()
        .copied()
        .filter(|f| !flags.contains(f))
        .collect();
    (!missing.is_empty()).then(|| format!("the CPU has no {}", missing.join(", ")))
}

/// The `xstate` target in `mode`, killed at every point where a frame of ours is all that
/// gives its thread back: inside an injected system call (thread in its nanosleep), during a
/// call and while a call is set up. Its registers are checked after every round.
fn wide_state_survives_every_kill(mode: &str) {
    if let Some(why) = missing_cpu_feature(mode) {
        eprintln!("skipped: {mode} state not tested: {why}");
        return;
    }
    let mut xs = Fpu::start_program("xstate", &[mode]);
    for point in SYSCALL_POINTS {
        let mut tracer = Tracer::spawn_at("syscall", xs.pid(), 1, &[], point);
        tracer.wait_paused(20);
        tracer.kill();
        assert!(!is_traced(xs.pid()), "{mode} {point}");
        xs.rounds_ok(3);
    }
    let mut tracer = Tracer::spawn("call", xs.pid(), xs.slow, &[]);
    xs.proc.wait_line("in-call", Duration::from_secs(20));
    tracer.kill();
    xs.rounds_ok(5);
    for point in [test_hook::CALL_FRAME_WRITTEN, test_hook::CALL_READY] {
        let mut tracer = Tracer::spawn_at("pause", xs.pid(), xs.slow, &[], point);
        tracer.wait_paused(20);
        tracer.kill();
        if point == test_hook::CALL_READY {
            xs.proc.wait_line("in-call", Duration::from_secs(10));
        }
        xs.rounds_ok(3);
    }
    // And with lpkg alive to the end: put back through ptrace.
    let mut t = Tracee::seize(xs.pid()).unwrap();
    t.stop().unwrap();
    assert_eq!(t.call(xs.slow, &[10], Duration::from_secs(5)).unwrap(), 7);
    t.detach().unwrap();
    xs.rounds_ok(3);
}

/// Issue 20: zmm0-31 and k0-7 (AVX-512), whose state is larger than the AVX frame's.
#[test]
fn avx512_registers_survive_the_tracer_killed() {
    with_timeout(120, || wide_state_survives_every_kill("zmm"));
}

/// Issue 20: a thread holding AMX tile data, whose signal frames are 11 KiB.
#[test]
fn amx_tiles_survive_the_tracer_killed() {
    with_timeout(120, || wide_state_survives_every_kill("amx"));
}

/// Issue 20: a thread of a process granted AMX whose tiles are released: its frames are
/// sized for tile data, its XSAVE image does not show it, and its vector registers must come
/// back all the same (and its tiles stay released).
#[test]
fn avx512_registers_survive_the_tracer_killed_with_amx_released() {
    with_timeout(120, || wide_state_survives_every_kill("amx-released"));
}

/// The leaf target's `hot` thread and the stack slot of `hash`'s return address, once a stop
/// finds it inside `hash` (called from `hot`, at `hot_at`, which is short). The thread is left
/// running; being inside `hash` nearly all the time, it still is when a tracer stops it next.
fn caught_in_hash(pid: i32, hot_at: u64) -> (i32, u64) {
    let in_hot = |a: u64| (hot_at..hot_at + 0x100).contains(&a);
    let tid: i32 = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_str().unwrap().parse().unwrap())
        .find(|&t| t != pid)
        .unwrap();
    let mut t = Tracee::seize(pid).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::time::Instant::now() < deadline {
        t.stop().unwrap();
        let regs = t.registers(tid).unwrap();
        let ra = read_word(pid, regs.sp());
        t.resume().unwrap();
        if !in_hot(regs.pc()) && in_hot(ra) {
            t.detach().unwrap();
            return (tid, regs.sp());
        }
        // On a busy machine the thread may not have run since the last stop: give it time.
        std::thread::sleep(std::time::Duration::from_micros(200));
    }
    panic!("thread never seen inside hash");
}

/// A return address on the stack of `pid`: as wide as its architecture's pointers.
fn read_word(pid: i32, address: u64) -> u64 {
    let width = Arch::of_process(pid).unwrap().pointer_size();
    read_u64(pid, address) & (u64::MAX >> (64 - 8 * width))
}

fn read_u64(pid: i32, address: u64) -> u64 {
    let mut bytes = [0u8; 8];
    let mem = std::fs::File::open(format!("/proc/{pid}/mem")).unwrap();
    std::os::unix::fs::FileExt::read_exact_at(&mem, &mut bytes, address).unwrap();
    u64::from_le_bytes(bytes)
}

/// A marking call stores its mark when the function returns, with lpkg alive or killed during
/// the call, and not before.
#[test]
fn the_thread_marks_a_call_that_returned_even_after_the_tracer_died() {
    the_thread_marks_a_call_that_returned_even_after_the_tracer_died_as(Build::X86_64);
}

#[test]
fn the_thread_marks_a_call_that_returned_even_after_the_tracer_died_i386() {
    the_thread_marks_a_call_that_returned_even_after_the_tracer_died_as(Build::I386);
}

fn the_thread_marks_a_call_that_returned_even_after_the_tracer_died_as(build: Build) {
    with_timeout(60, move || {
        let mut fpu = Fpu::start_as(build, &[]);
        let mut t = Tracee::seize(fpu.pid()).unwrap();
        t.stop().unwrap();
        let rw = Prot::RW;
        let page = t
            .mmap(0, 4096, rw, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0)
            .unwrap();
        let mark = Mark {
            address: page,
            value: MARK,
        };
        assert_eq!(
            t.call_marking(fpu.answer, &[], Duration::from_secs(5), mark)
                .unwrap(),
            42
        );
        assert_eq!(read_u64(fpu.pid(), page), MARK);
        t.detach().unwrap();
        fpu.rounds_ok(2);

        let mut tracer = Tracer::spawn("mark", fpu.pid(), fpu.slow, &[]);
        fpu.proc.wait_line("in-call", Duration::from_secs(20));
        tracer.kill();
        // The tracer printed the page before the call; the pipe kept it.
        let mut out = String::new();
        tracer
            .0
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        let page = out
            .lines()
            .find_map(|l| l.split("page ").nth(1))
            .map(|h| u64::from_str_radix(h, 16).unwrap())
            .unwrap_or_else(|| panic!("tracer printed no page: {out:?}"));
        assert_eq!(read_u64(fpu.pid(), page + 8), 0, "marked before returning");
        // slow() sleeps a second, returns, and the thread marks it and carries on.
        fpu.rounds_ok(60);
        assert_eq!(read_u64(fpu.pid(), page + 8), MARK);
    });
}

/// A thread looping on a leaf that takes nearly all its time is led out of it: it stops right
/// past the return, with the return value and stack of a plain return, and carries on unharmed
/// (the target checks every result); stopped at random it is almost never outside.
#[test]
fn a_thread_is_led_out_of_a_hot_leaf_function() {
    a_thread_is_led_out_of_a_hot_leaf_function_as(Build::X86_64);
}

/// Issue 18: through the i386 lead-out code (`int $0x80`, a `jmp rel32` back to the caller).
#[test]
fn a_thread_is_led_out_of_a_hot_leaf_function_i386() {
    a_thread_is_led_out_of_a_hot_leaf_function_as(Build::I386);
}

fn a_thread_is_led_out_of_a_hot_leaf_function_as(build: Build) {
    with_timeout(60, move || {
        let mut proc = Proc::spawn(&bin_for("leaf", build), &[]);
        let ready = fields(&proc.expect("ready", Duration::from_secs(10)));
        let hot_at = ready["hot"] as u64;
        proc.wait_line("ok", Duration::from_secs(10));
        let pid = proc.pid();
        let mut led_out = 0;
        for _ in 0..20 {
            let (tid, slot) = caught_in_hash(pid, hot_at);
            let mut t = Tracee::seize(pid).unwrap();
            t.stop().unwrap();
            let before = t.registers(tid).unwrap();
            // Still inside: the slot still holds the return address into `hot`.
            let ra = read_word(pid, slot);
            if before.sp() != slot || ra < hot_at || ra >= hot_at + 0x100 {
                t.detach().unwrap();
                continue;
            }
            assert!(t.lead_out(tid, slot, Duration::from_secs(5)).unwrap());
            led_out += 1;
            let after = t.registers(tid).unwrap();
            assert_eq!(after.pc(), ra, "stopped right past the return");
            let width = build.arch().pointer_size() as u64;
            assert_eq!(after.sp(), slot + width, "its return address popped");
            assert_eq!(
                read_word(pid, slot),
                ra,
                "the stack as a plain return leaves it"
            );
            t.detach().unwrap();
            proc.wait_line("ok", Duration::from_secs(5));
        }
        assert!(led_out > 0, "never caught still inside");
        // Rounds go on, every result checked by the target.
        proc.wait_line("ok", Duration::from_secs(5));
    });
}

/// lpkg killed with the return address leading through its code: the thread returns through
/// it on its own, with the right value, and carries on.
#[test]
fn a_thread_being_led_out_survives_the_tracer_killed() {
    a_thread_being_led_out_survives_the_tracer_killed_as(Build::X86_64);
}

#[test]
fn a_thread_being_led_out_survives_the_tracer_killed_i386() {
    a_thread_being_led_out_survives_the_tracer_killed_as(Build::I386NoPie);
}

fn a_thread_being_led_out_survives_the_tracer_killed_as(build: Build) {
    with_timeout(60, move || {
        let mut proc = Proc::spawn(&bin_for("leaf", build), &[]);
        let ready = fields(&proc.expect("ready", Duration::from_secs(10)));
        let hot_at = ready["hot"] as u64;
        proc.wait_line("ok", Duration::from_secs(10));
        for _ in 0..3 {
            let mut tracer = Tracer::spawn_at(
                "lead-out",
                proc.pid(),
                hot_at,
                &[],
                test_hook::LEAD_OUT_READY,
            );
            tracer.wait_paused(20);
            tracer.kill();
            assert!(!is_traced(proc.pid()));
            for _ in 0..5 {
                proc.wait_line("ok", Duration::from_secs(5));
            }
        }
    });
}

#[test]
fn call_keeps_vector_registers_mask_and_altstack() {
    call_keeps_vector_registers_mask_and_altstack_as(Build::X86_64);
}

#[test]
fn call_keeps_vector_registers_mask_and_altstack_i386() {
    call_keeps_vector_registers_mask_and_altstack_as(Build::I386);
}

fn call_keeps_vector_registers_mask_and_altstack_as(build: Build) {
    with_timeout(60, move || {
        let mut fpu = Fpu::start_as(build, &[]);
        let mut t = Tracee::seize(fpu.pid()).unwrap();
        for _ in 0..3 {
            t.stop().unwrap();
            let before = t.registers(fpu.pid()).unwrap();
            assert_eq!(t.call(fpu.slow, &[10], Duration::from_secs(5)).unwrap(), 7);
            let (mut before, after) = (before.to_array(), t.registers(fpu.pid()).unwrap());
            // rax may say "make the call again" instead of "continue through restart_syscall".
            before[10] = after.to_array()[10];
            assert_eq!(before, after.to_array(), "registers restored");
            t.resume().unwrap();
            fpu.proc.wait_line("in-call", Duration::from_secs(5));
            fpu.rounds_ok(2);
        }
        // A call abandoned at its timeout leaves the thread whole too.
        t.stop().unwrap();
        match t.call(fpu.slow, &[5000], Duration::from_millis(300)) {
            Err(Error::CallTimedOut { .. }) => {}
            other => panic!("expected a timeout, got {other:?}"),
        }
        t.detach().unwrap();
        fpu.rounds_ok(5);
    });
}

#[test]
fn no_call_on_a_thread_running_on_its_alternate_signal_stack() {
    with_timeout(60, || {
        let mut proc = util::Proc::spawn(&bin("onaltstack"), &[]);
        let answer = fields(&proc.expect("ready", Duration::from_secs(10)))["answer"] as u64;
        proc.wait_line("in-handler", Duration::from_secs(10));
        let mut t = Tracee::seize(proc.pid()).unwrap();
        t.stop().unwrap();
        match t.call(answer, &[], Duration::from_secs(5)) {
            Err(Error::OnAltStack { tid, .. }) => assert_eq!(tid, proc.pid()),
            other => panic!("expected OnAltStack, got {other:?}"),
        }
        t.detach().unwrap();
        // The handler and the program carry on untouched.
        proc.wait_line("handler-done", Duration::from_secs(10));
        proc.wait_line("main-done", Duration::from_secs(10));
        // Off the alternate stack, the same call works.
        let mut t = Tracee::seize(proc.pid()).unwrap();
        t.stop().unwrap();
        assert_eq!(t.call(answer, &[], Duration::from_secs(5)).unwrap(), 42);
        t.detach().unwrap();
    });
}

#[test]
fn unprivileged_tracer_is_denied() {
    with_timeout(60, || {
        let fpu = Fpu::start();
        let wrap = [
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
        ];
        let out = Tracer::spawn("seize", fpu.pid(), 0, &wrap).output(30);
        assert!(
            out.contains(&format!(
                "denied: permission denied to trace process {}",
                fpu.pid()
            )),
            "{out}"
        );
        // The message says what would fix it.
        assert!(out.contains("CAP_SYS_PTRACE"), "{out}");
    });
}
