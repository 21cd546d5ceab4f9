//! C++ exceptions through patched code (issue 21): a g++ target whose threads throw many
//! exceptions a second through replaced functions, a replaced function's handler, a
//! replaced frame owning an object with a destructor, and a new function that throws. Fixed
//! live, fixed again with a stacked package, reverted twice: exceptions keep being caught
//! where they should, every destructor runs once, `std::terminate` is never called.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use common::{Program, Run, Scratch};

/// Compiles `tests/targets/NAME` (C or C++ by `compiler`, with `flags`, also given to the
/// link) as versions 1 to
/// `versions` (`STEM1.o`..) and links version 1 into `STEM`, in `dir`; returns the program.
fn compile(dir: &Path, name: &str, compiler: &str, flags: &[&str], versions: u32) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/targets")
        .join(name);
    let stem = name.split('.').next().unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(compiler)
            .args(args)
            .output()
            .expect("run the compiler");
        assert!(
            out.status.success(),
            "{compiler} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    for v in 1..=versions {
        let obj = dir.join(format!("{stem}{v}.o"));
        let version = format!("-DVERSION={v}");
        let mut args = vec![
            "-O2",
            "-g",
            "-ffunction-sections",
            "-fdata-sections",
            "-fPIE",
        ];
        args.extend(flags);
        args.extend([
            version.as_str(),
            "-c",
            src.to_str().unwrap(),
            "-o",
            obj.to_str().unwrap(),
        ]);
        run(&args);
    }
    let exe = dir.join(stem);
    let first = dir.join(format!("{stem}1.o"));
    let mut args = flags.to_vec();
    args.extend([
        "-pie",
        "-pthread",
        first.to_str().unwrap(),
        "-o",
        exe.to_str().unwrap(),
    ]);
    run(&args);
    exe
}

fn ok(run: Run) -> Run {
    assert_eq!(
        run.code, 0,
        "stdout: {}\nstderr: {}",
        run.stdout, run.stderr
    );
    run
}

/// The running target; killed by its PID on drop.
struct Target {
    child: Child,
    lines: Receiver<String>,
}

impl Target {
    fn start(exe: &Path) -> Target {
        let mut child = Command::new(exe)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start target");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Target { child, lines }
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }

    /// The first status line (within 10 s) showing `compute`, `guarded` and `owner`, checking
    /// every line on the way; returns its `five` and `seven` counts.
    fn wait_for(&self, compute: i64, guarded: i64, owner: i64) -> (i64, i64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let want = format!("st compute={compute} guarded={guarded} owner={owner} ");
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|e| panic!("no status {want:?} within 10 s: {e}"));
            assert!(!line.starts_with("bad"), "target reports {line:?}");
            if let Some(counts) = line.strip_prefix(&want) {
                let count = |key: &str| -> i64 {
                    counts
                        .split_whitespace()
                        .find_map(|w| w.strip_prefix(key))
                        .and_then(|n| n.parse().ok())
                        .unwrap_or_else(|| panic!("no {key} in {line:?}"))
                };
                return (count("five="), count("seven="));
            }
        }
    }

    /// `wait_for`, then again half a second later: the exceptions kept flying and being
    /// caught, `five` always, `seven` when the fix is in; returns the later counts.
    fn keeps_catching(&self, values: (i64, i64, i64), seven_grows: bool) -> (i64, i64) {
        let (five, seven) = self.wait_for(values.0, values.1, values.2);
        std::thread::sleep(Duration::from_millis(500));
        let (five_later, seven_later) = self.wait_for(values.0, values.1, values.2);
        assert!(five_later > five, "five: {five} then {five_later}");
        assert_eq!(
            seven_later > seven,
            seven_grows,
            "seven: {seven} then {seven_later}"
        );
        (five_later, seven_later)
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        // SIGKILL to our own child's PID (not reaped before the wait).
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The package from version `from` to `to` of the target (stacked on `requires`).
fn package(s: &Scratch, exe: &Path, key: &Path, from: u32, to: u32, requires: &[&Path]) -> PathBuf {
    let (old, new) = (
        s.path(&format!("exceptions{from}.o")),
        s.path(&format!("exceptions{to}.o")),
    );
    let name = format!("exceptions-v{to}");
    let out = format!("fix-{from}-{to}.lpkg");
    s.build(exe, &old, &new, key, &out, (&name, "1"), requires)
}

/// Runs `lpkg ARGS` with `LPKG_TEST_PAUSE_AT=step`, kills it (its own PID, our child) once it
/// says it paused there, and waits for it.
fn kill_at(step: &str, args: &[&str]) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_lpkg"))
        .args(args)
        .env("LPKG_TEST_PAUSE_AT", step)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("lpkg: paused at") {
                let _ = tx.send(line);
            }
        }
    });
    let paused = rx.recv_timeout(Duration::from_secs(20));
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(
        paused.expect("lpkg reached the step"),
        format!("lpkg: paused at {step}")
    );
}

fn no_lpkg_mapping(pid: &str) {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    assert!(!maps.contains("lpkg"), "{maps}");
}

#[test]
fn exceptions_pass_through_replaced_and_new_functions_applied_stacked_and_reverted() {
    exceptions_applied_stacked_and_reverted("g++", &[], "libgcc_s.so.1");
}

/// The same with clang's libc++, whose exceptions LLVM's libunwind raises (libgcc_s is
/// mapped too: glibc's cancellation and `backtrace()` use it).
#[test]
fn exceptions_through_new_code_with_llvm_libunwind() {
    exceptions_applied_stacked_and_reverted("clang++-14", &["-stdlib=libc++"], "libunwind.so.1");
}

/// A program with libgcc's unwinder and libstdc++ linked in (`-static-libgcc
/// -static-libstdc++`: neither exports `__register_frame_info`, and no libgcc_s is loaded)
/// unwinds the new code's exceptions with its own copy: the frames are registered there.
/// A package written before the manifest said where that copy is (no `[target.unwinder]`)
/// has it found in the target's `.symtab`; one that names a place outside the target's code
/// is refused.
#[test]
fn exceptions_pass_through_new_code_with_the_unwinder_linked_in() {
    let s = Scratch::new();
    let flags = ["-static-libgcc", "-static-libstdc++"];
    let exe = compile(s.dir.path(), "exceptions.cpp", "g++", &flags, 3);
    applied_stacked_and_reverted(&s, &exe, "/exceptions");

    let (key, public) = s.keygen("older");
    let fix = package(&s, &exe, &key, 1, 2, &[]);
    let older = s.resigned(&fix, &key, "older.lpkg", |m| m.target.unwinder = None);
    let outside = s.resigned(&fix, &key, "outside.lpkg", |m| {
        m.target.unwinder.as_mut().unwrap().deregister_frame_info = 1 << 40;
    });
    let target = Target::start(&exe);
    let pid = target.pid();
    let trust = public.to_str().unwrap();
    target.keeps_catching((2, -1, 101), false);
    let refused = s.run(&[
        "apply",
        outside.to_str().unwrap(),
        "--pid",
        &pid,
        "--trust",
        trust,
    ]);
    assert_eq!(refused.code, 4, "{}", refused.stderr);
    assert!(
        refused.stderr.contains(
            "__deregister_frame_info: the target's unwinder (target.unwinder, offset 0x10000000000) is not inside the target's code"
        ),
        "{}",
        refused.stderr
    );
    target.keeps_catching((2, -1, 101), false);
    no_lpkg_mapping(&pid);
    let run = ok(s.run(&[
        "apply",
        older.to_str().unwrap(),
        "--pid",
        &pid,
        "--trust",
        trust,
        "--json",
    ]));
    assert!(
        run.json()["unwind"]
            .as_str()
            .is_some_and(|u| u.contains("/exceptions")),
        "{}",
        run.stdout
    );
    target.keeps_catching((1002, -2, 201), true);
    ok(s.run(&["revert", "--pid", &pid]));
    target.keeps_catching((2, -1, 101), false);
}

/// A stripped program with libgcc's unwinder linked in, its symbols in a debug file, as a
/// distribution ships it: the builder finds the unwinder's functions in the debug file and
/// the package says where they are (`[target.unwinder]`), so the new code's frames are
/// registered with the copy the stripped process throws through (without, the first
/// exception through new code would end in `std::terminate`).
#[test]
fn exceptions_pass_through_new_code_in_a_stripped_program_with_the_unwinder_linked_in() {
    stripped_with_the_unwinder_linked_in(&[]);
}

#[test]
fn exceptions_pass_through_new_code_in_a_stripped_i386_program_with_the_unwinder_linked_in() {
    stripped_with_the_unwinder_linked_in(&["-m32"]);
}

fn stripped_with_the_unwinder_linked_in(flags: &[&str]) {
    let s = Scratch::new();
    let mut flags = flags.to_vec();
    flags.extend(["-static-libgcc", "-static-libstdc++"]);
    let exe = compile(s.dir.path(), "exceptions.cpp", "g++", &flags, 3);
    // As dh_strip does: the symbols to exceptions.debug, found by the stripped program's
    // .gnu_debuglink next to it.
    let debug = s.path("exceptions.debug");
    let tool = |name: &str, args: &[&str]| {
        let out = Command::new(name).args(args).output().unwrap();
        assert!(out.status.success(), "{name} {args:?}: {out:?}");
    };
    let (exe_s, debug_s) = (exe.to_str().unwrap(), debug.to_str().unwrap());
    tool("objcopy", &["--only-keep-debug", exe_s, debug_s]);
    tool("strip", &["--strip-all", exe_s]);
    tool(
        "objcopy",
        &[&format!("--add-gnu-debuglink={debug_s}"), exe_s],
    );
    let sections = Command::new("readelf")
        .args(["-S", exe_s])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&sections.stdout).contains(".symtab"));
    applied_stacked_and_reverted(&s, &exe, "/exceptions");
}

#[test]
fn exceptions_pass_through_new_code_in_i386() {
    exceptions_applied_stacked_and_reverted("g++", &["-m32"], "libgcc_s.so.1");
}

#[test]
fn exceptions_pass_through_new_code_with_the_unwinder_linked_in_in_i386() {
    exceptions_applied_stacked_and_reverted(
        "g++",
        &["-m32", "-static-libgcc", "-static-libstdc++"],
        "/exceptions",
    );
}

/// A C++ target built with `compiler` and `flags` is fixed, fixed again with a stacked
/// package and reverted twice while exceptions fly; the apply says it registered the new
/// code's CFI with `unwinder` (among others).
fn exceptions_applied_stacked_and_reverted(compiler: &str, flags: &[&str], unwinder: &str) {
    let s = Scratch::new();
    let exe = compile(s.dir.path(), "exceptions.cpp", compiler, flags, 3);
    applied_stacked_and_reverted(&s, &exe, unwinder);
}

/// [`exceptions_applied_stacked_and_reverted`] on `exe`, compiled in `s`. The package names
/// the target's unwinder (`[target.unwinder]`) exactly when it is linked into the program
/// (`unwinder` is `/exceptions`).
fn applied_stacked_and_reverted(s: &Scratch, exe: &Path, unwinder: &str) {
    let (key, public) = s.keygen("release");
    let fix = package(s, exe, &key, 1, 2, &[]);
    let stacked = package(s, exe, &key, 2, 3, &[&fix]);
    let trust = public.to_str().unwrap();
    let inspected =
        ok(s.run(&["inspect", fix.to_str().unwrap(), "--trust", trust, "--json"])).json();
    let linked_in = &inspected["target"]["unwinder"];
    assert_eq!(
        linked_in.is_object(),
        unwinder == "/exceptions",
        "{inspected}"
    );
    let target = Target::start(exe);
    let pid = target.pid();
    target.keeps_catching((2, -1, 101), false);

    let run = ok(s.run(&[
        "apply",
        fix.to_str().unwrap(),
        "--pid",
        &pid,
        "--trust",
        trust,
        "--json",
    ]));
    assert_eq!(run.json()["unwind_registered"], true, "{}", run.stdout);
    let registered = run.json()["unwind"].as_str().unwrap_or_default().to_owned();
    assert!(registered.contains(unwinder), "{}", run.stdout);
    target.keeps_catching((1002, -2, 201), true);
    ok(s.run(&[
        "apply",
        stacked.to_str().unwrap(),
        "--pid",
        &pid,
        "--trust",
        trust,
    ]));
    target.keeps_catching((2002, -3, 301), true);

    ok(s.run(&["revert", "--pid", &pid]));
    target.keeps_catching((1002, -2, 201), true);
    ok(s.run(&["revert", "--pid", &pid]));
    target.keeps_catching((2, -1, 101), false);
    no_lpkg_mapping(&pid);
}

/// lpkg killed just before the registration, just after it, once the jumps are written, and
/// in a revert before and after the deregistration: the next revert takes the package out
/// (deregistering exactly when the unwinder has the frames: libgcc aborts on frames it does
/// not know) and exceptions keep flying through the old code.
#[test]
fn lpkg_killed_around_the_registration_leaves_the_target_whole() {
    let s = Scratch::new();
    let exe = compile(s.dir.path(), "exceptions.cpp", "g++", &[], 3);
    let (key, public) = s.keygen("release");
    let fix = package(&s, &exe, &key, 1, 2, &[]);
    let trust = public.to_str().unwrap();
    let fix = fix.to_str().unwrap();
    for (op, step) in [
        ("apply", "apply:switching"),
        ("apply", "apply:registered"),
        ("apply", "apply:jumps-written"),
        ("revert", "revert:restored-1"),
        ("revert", "revert:deregistered"),
    ] {
        let target = Target::start(&exe);
        let pid = target.pid();
        target.keeps_catching((2, -1, 101), false);
        if op == "apply" {
            kill_at(step, &["apply", fix, "--pid", &pid, "--trust", trust]);
        } else {
            ok(s.run(&["apply", fix, "--pid", &pid, "--trust", trust]));
            target.keeps_catching((1002, -2, 201), true);
            kill_at(step, &["revert", "--pid", &pid]);
        }
        ok(s.run(&["revert", "--pid", &pid]));
        target.keeps_catching((2, -1, 101), false);
        no_lpkg_mapping(&pid);
    }
}

/// In C built with `-fexceptions` (issue 21): a thread blocked in `read()` inside a patched
/// function is cancelled, and the new code's cleanup handler runs, then its caller's; and
/// `backtrace()` taken inside new code reaches the caller. Both are the target's own
/// unwinder going through the module's frames.
#[test]
fn cancellation_and_backtrace_unwind_through_new_c_code() {
    let s = Scratch::new();
    let exe = compile(s.dir.path(), "cancel.c", "gcc", &["-fexceptions"], 2);
    let (key, public) = s.keygen("release");
    let (old, new) = (s.path("cancel1.o"), s.path("cancel2.o"));
    let fix = s.build(&exe, &old, &new, &key, "fix.lpkg", ("cancel", "2"), &[]);
    let mut target = Program::start(&mut Command::new(&exe));
    let pid = target.child.id().to_string();
    let mut ask = |command: &str| target.ask(command);
    assert_eq!(ask("trace"), "trace v=1 found=1");
    let trust = public.to_str().unwrap();
    let run = ok(s.run(&[
        "apply",
        fix.to_str().unwrap(),
        "--pid",
        &pid,
        "--trust",
        trust,
        "--json",
    ]));
    assert_eq!(run.json()["unwind_registered"], true, "{}", run.stdout);
    assert_eq!(ask("trace"), "trace v=2 found=1");
    for _ in 0..3 {
        assert_eq!(ask("start"), "started");
        assert_eq!(ask("cancel"), "joined canceled=1 inner=2 outer=1");
    }
    ok(s.run(&["revert", "--pid", &pid]));
    assert_eq!(ask("trace"), "trace v=1 found=1");
    assert_eq!(ask("start"), "started");
    assert_eq!(ask("cancel"), "joined canceled=1 inner=1 outer=1");
}

/// A C process without an unwinder library at apply (built without `-fexceptions`: nothing
/// maps libgcc_s): nothing is registered, and lpkg loads nothing into it. The thread
/// cancelled later inside the patched function unwinds all the same: glibc loads libgcc_s
/// then, and its cancellation takes the module's frame, which that libgcc_s does not know, as
/// a plain C frame and runs every cleanup handler.
#[test]
fn cancellation_through_new_code_when_libgcc_s_is_loaded_after_the_apply() {
    let s = Scratch::new();
    let exe = compile(s.dir.path(), "cancel.c", "gcc", &[], 2);
    let (key, public) = s.keygen("release");
    let (old, new) = (s.path("cancel1.o"), s.path("cancel2.o"));
    let fix = s.build(&exe, &old, &new, &key, "fix.lpkg", ("cancel", "2"), &[]);
    let mut target = Program::start(&mut Command::new(&exe));
    let pid = target.child.id().to_string();
    let mut ask = |command: &str| target.ask(command);
    let maps_libgcc = || {
        std::fs::read_to_string(format!("/proc/{pid}/maps"))
            .unwrap()
            .contains("libgcc_s")
    };
    assert!(!maps_libgcc(), "the target maps libgcc_s from the start");
    let run = ok(s.run(&[
        "apply",
        fix.to_str().unwrap(),
        "--pid",
        &pid,
        "--trust",
        public.to_str().unwrap(),
        "--json",
    ]));
    assert_eq!(run.json()["unwind_registered"], false, "{}", run.stdout);
    assert!(!maps_libgcc(), "lpkg loaded libgcc_s");
    assert_eq!(ask("start"), "started");
    assert_eq!(ask("cancel"), "joined canceled=1 inner=2 outer=1");
    assert!(maps_libgcc(), "glibc loads libgcc_s to cancel");
    for _ in 0..3 {
        assert_eq!(ask("start"), "started");
        assert_eq!(ask("cancel"), "joined canceled=1 inner=2 outer=1");
    }
    ok(s.run(&["revert", "--pid", &pid]));
    assert_eq!(ask("start"), "started");
    assert_eq!(ask("cancel"), "joined canceled=1 inner=1 outer=1");
}
