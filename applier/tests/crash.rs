//! Crash consistency: lpkg is SIGKILLed at every step of apply and revert (it pauses there on
//! `LPKG_TEST_PAUSE_AT`), and the target must stay alive, never be half-patched without an
//! interrupted record saying so, and be brought back to a clean state by revert.
//!
//! The applier runs in a child process: this test binary re-executed on `crash_child`.

mod util;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use lpkg_applier::checkpoint::{APPLY_STEPS, PAUSE_VAR, REVERT_STEPS};
use lpkg_applier::{apply, list, revert, unrecorded_modules, ApplyOptions, Selection, State};
use util::{built, built_for, Bits, Target};

const OP: &str = "LPKG_CRASH_CHILD_OP";
const PID: &str = "LPKG_CRASH_CHILD_PID";
const PACKAGE: &str = "LPKG_CRASH_CHILD_PACKAGE";

fn options() -> ApplyOptions {
    ApplyOptions {
        timeout: Duration::from_secs(5),

        ..ApplyOptions::default()
    }
}

/// The applier process of the other tests; does nothing when run as a normal test.
#[test]
fn crash_child() {
    let Ok(op) = std::env::var(OP) else { return };
    let pid: i32 = std::env::var(PID).unwrap().parse().unwrap();
    lpkg_applier::catch_interrupts().unwrap();
    match op.as_str() {
        "apply" => {
            let package = std::fs::read(std::env::var(PACKAGE).unwrap()).unwrap();
            apply(pid, &package, &util::trust(), &options()).unwrap();
        }
        _ => {
            revert(pid, &Selection::All, Duration::from_secs(5)).unwrap();
        }
    }
}

/// Runs apply or revert on `pid` in a child that pauses at `step`, and SIGKILLs it there.
fn kill_at(op: &str, pid: i32, step: &str, package: &std::path::Path) {
    signal_at(op, pid, step, package, "KILL");
}

/// Runs apply or revert on `pid` in a child that pauses at `step`, and sends it `signal`
/// there (by PID), waiting until it exits.
fn signal_at(op: &str, pid: i32, step: &str, package: &std::path::Path, signal: &str) {
    let (mut child, paused) = pause_at(op, pid, step, package);
    signal_and_wait(&mut child.0, step, signal);
    assert_eq!(
        paused.expect("applier reached the step"),
        format!("lpkg: paused at {step}")
    );
}

/// Starts apply or revert on `pid` in a child that pauses at `step`; returns once it says it
/// paused (the line it said, or the wait's error after 20 s).
fn pause_at(
    op: &str,
    pid: i32,
    step: &str,
    package: &std::path::Path,
) -> (Applier, Result<String, mpsc::RecvTimeoutError>) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env(OP, op)
        .env(PID, pid.to_string())
        .env(PACKAGE, package)
        .env(PAUSE_VAR, step)
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
    (Applier(child), paused)
}

/// An applier child, SIGKILLed (by PID) and reaped on drop if it still runs: a paused one
/// left behind on a failed assertion would keep the target traced, and unreapable.
struct Applier(std::process::Child);

impl Drop for Applier {
    fn drop(&mut self) {
        if self.0.try_wait().is_ok_and(|s| s.is_none()) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Sends `signal` to the applier child (by PID) and waits until it exits.
fn signal_and_wait(child: &mut std::process::Child, step: &str, signal: &str) {
    let sent = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(sent.success());
    // A caught SIGINT lets the child roll back and exit; SIGKILL ends it at once.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("applier did not exit after SIG{signal} at {step}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// What the record should say after a kill at `step`: None for no record.
fn expected_state(step: &str) -> Option<State> {
    match step {
        "apply:mapped" => None,
        "apply:recorded" | "apply:stopped" => Some(State::Loading),
        "apply:switching" | "apply:jump-1" | "apply:jumps-written" => Some(State::Switching),
        "apply:applied" | "revert:stopped" => Some(State::Applied),
        _ => Some(State::Reverting),
    }
}

fn check_after_kill(target: &mut Target, step: &str, bits: Bits) {
    assert!(target.alive(), "target died after a kill at {step}");
    // Killed with the module and the record mapped, the record not written yet: both are
    // found by their memfd's name.
    let orphans = unrecorded_modules(target.pid()).unwrap();
    let expected = match step {
        "apply:mapped" => 2,
        _ => 0,
    };
    assert_eq!(
        orphans.len(),
        expected,
        "modules without a record after a kill at {step}: {orphans:?}"
    );
    let live = list(target.pid()).unwrap();
    assert_eq!(
        live.first().map(|r| r.state),
        expected_state(step),
        "record after a kill at {step}"
    );
    let line = target.next_line();
    match live.first().map(|r| r.state) {
        None => assert_eq!(line, "1 10", "after a kill at {step}"),
        Some(State::Applied) => assert_eq!(line, "2 20", "after a kill at {step}"),
        // Interrupted: the record says so; mixed values are allowed until revert.
        Some(_) => assert!(
            ["1 10", "2 20", "1 20", "2 10"].contains(&line.as_str()),
            "{line} after a kill at {step}"
        ),
    }
    if !live.is_empty() {
        revert(target.pid(), &Selection::All, Duration::from_secs(5)).unwrap();
    }
    assert!(list(target.pid()).unwrap().is_empty());
    target.wait_for(|l| l == "1 10", "old values after recovery");
    // Applying again after the interruption works, and so does a clean revert.
    let b = built_for(bits);
    apply(target.pid(), &b.package, &b.trust, &options()).unwrap();
    target.wait_for(|l| l == "2 20", "new values after re-apply");
    assert_eq!(unrecorded_modules(target.pid()).unwrap(), vec![]);
    assert_eq!(lpkg_modules(target.pid()), 1, "the new module only");
    revert(target.pid(), &Selection::All, Duration::from_secs(5)).unwrap();
    target.wait_for(|l| l == "1 10", "old values after final revert");
    assert_eq!(lpkg_modules(target.pid()), 0);
    assert!(target.alive());
}

/// Patch modules mapped in `pid`, found by name (one per memfd, whatever its parts).
fn lpkg_modules(pid: i32) -> usize {
    let inodes: std::collections::BTreeSet<u64> = lpkg_kernel::maps::read(pid)
        .unwrap()
        .iter()
        .filter(|m| {
            m.path
                .as_ref()
                .and_then(|p| p.to_str())
                .is_some_and(|p| p.starts_with("/memfd:lpkg-module:"))
                // A module shares its record's memfd, past offset 0.
                || m.offset != 0
                    && m.path
                        .as_ref()
                        .and_then(|p| p.to_str())
                        .is_some_and(|p| p.starts_with("/memfd:lpkg:"))
        })
        .map(|m| m.inode)
        .collect();
    inodes.len()
}

/// A module and its record mapped before the record is written are named after their
/// package: lpkg killed in that window leaves them findable, and the next revert (or apply)
/// removes them.
#[test]
fn a_module_left_without_a_record_is_found_and_removed() {
    let (_dir, package) = package_file();
    let b = built();
    let target = Target::start(&b.exe, "plain");
    let pid = target.pid();
    kill_at("apply", pid, "apply:mapped", &package);
    assert!(list(pid).unwrap().is_empty());
    let orphans = unrecorded_modules(pid).unwrap();
    let id = lpkg_format::open_verified(&b.package, &b.trust)
        .unwrap()
        .0
        .id();
    assert_eq!(orphans.len(), 2, "{orphans:?}");
    assert!(
        orphans.iter().all(|o| o.id_prefix == id[..16]),
        "{orphans:?}"
    );
    let records: Vec<bool> = orphans.iter().map(|o| o.record).collect();
    assert_eq!(
        records,
        [false, true],
        "the module, then the unwritten record"
    );
    let reports = revert(pid, &Selection::All, Duration::from_secs(5)).unwrap();
    assert_eq!(reports.len(), 2);
    for report in &reports {
        assert_eq!(
            (report.id.as_str(), report.state),
            (&id[..16], "unrecorded module")
        );
    }
    assert_eq!(unrecorded_modules(pid).unwrap(), vec![]);
    assert_eq!(lpkg_modules(pid), 0);
    assert!(lpkg_kernel::maps::read(pid)
        .unwrap()
        .iter()
        .all(|m| !(orphans[0].address..orphans[0].address + orphans[0].len).contains(&m.start)));
    target.wait_for(|l| l == "1 10", "old values");
    assert!(matches!(
        revert(pid, &Selection::All, Duration::from_secs(5)),
        Err(lpkg_applier::Error::NothingToRevert(_))
    ));
}

/// Steps right after an injected system call. lpkg-kernel once single-stepped over the
/// `syscall` instruction, and a kill there left the kernel's trap flag armed on the borrowed
/// thread (only PTRACE_CONT/DETACH clear it, which a dead tracer never issues): the target died
/// of SIGTRAP. Injected system calls now run with system-call stops, which the kernel disarms
/// when the tracer dies.
const AFTER_INJECTED_SYSCALL: &[&str] =
    &["apply:mapped", "apply:recorded", "revert:module-unmapped"];

/// Runs `check` at every step, going on after a failure so one run names every bad step.
fn every_step(steps: &[&'static str], check: impl Fn(&str)) -> Vec<&'static str> {
    steps
        .iter()
        .copied()
        .filter(|step| {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(step))).is_err()
        })
        .collect()
}

fn package_file() -> (tempfile::TempDir, std::path::PathBuf) {
    package_file_for(Bits::M64)
}

/// The package of the target compiled for `bits`, in a file.
fn package_file_for(bits: Bits) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fix.lpkg");
    std::fs::write(&path, &built_for(bits).package).unwrap();
    (dir, path)
}

#[test]
fn applier_killed_at_every_apply_step_leaves_a_recoverable_target() {
    killed_at_every_apply_step(Bits::M64);
}

#[test]
fn applier_killed_at_every_apply_step_leaves_a_recoverable_i386_target() {
    killed_at_every_apply_step(Bits::M32);
}

fn killed_at_every_apply_step(bits: Bits) {
    let (_dir, package) = package_file_for(bits);
    let failed = every_step(APPLY_STEPS, |step| {
        let mut target = Target::start(&built_for(bits).exe, "plain");
        kill_at("apply", target.pid(), step, &package);
        check_after_kill(&mut target, step, bits);
    });
    assert!(failed.is_empty(), "failed at {failed:?}");
}

#[test]
fn applier_killed_at_every_revert_step_leaves_a_recoverable_target() {
    killed_at_every_revert_step(Bits::M64);
}

#[test]
fn applier_killed_at_every_revert_step_leaves_a_recoverable_i386_target() {
    killed_at_every_revert_step(Bits::M32);
}

fn killed_at_every_revert_step(bits: Bits) {
    let (_dir, package) = package_file_for(bits);
    let b = built_for(bits);
    let failed = every_step(REVERT_STEPS, |step| {
        let mut target = Target::start(&b.exe, "plain");
        apply(target.pid(), &b.package, &b.trust, &options()).unwrap();
        target.wait_for(|l| l == "2 20", "new values");
        kill_at("revert", target.pid(), step, &package);
        check_after_kill(&mut target, step, bits);
    });
    assert!(failed.is_empty(), "failed at {failed:?}");
}

#[test]
fn kill_right_after_an_injected_syscall() {
    kill_after_injected_syscall(Bits::M64);
}

#[test]
fn kill_right_after_an_injected_syscall_in_an_i386_target() {
    kill_after_injected_syscall(Bits::M32);
}

fn kill_after_injected_syscall(bits: Bits) {
    let (_dir, package) = package_file_for(bits);
    let b = built_for(bits);
    let failed = every_step(AFTER_INJECTED_SYSCALL, |step| {
        let mut target = Target::start(&b.exe, "plain");
        if step.starts_with("revert") {
            apply(target.pid(), &b.package, &b.trust, &options()).unwrap();
        }
        let op = step.split(':').next().unwrap();
        kill_at(op, target.pid(), step, &package);
        check_after_kill(&mut target, step, bits);
    });
    assert!(failed.is_empty(), "failed at {failed:?}");
}

/// Starts apply or revert of `package` on `pid` in a child, without a pause.
fn start_child(op: &str, pid: i32, package: &std::path::Path) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env(OP, op)
        .env(PID, pid.to_string())
        .env(PACKAGE, package)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Waits (10 s at most) until the target has printed `line`.
fn printed(target: &Target, line: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !target.printed(|l| l == line) {
        assert!(
            std::time::Instant::now() < deadline,
            "target never printed {line}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// SIGKILLs the applier child by PID once the target prints `line` (a routine started).
fn kill_when(child: &mut std::process::Child, target: &Target, line: &str) {
    printed(target, line);
    let sent = Command::new("kill")
        .args(["-KILL", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    child.wait().unwrap();
}

/// After a kill during a routine: the routine finishes by itself and the thread goes back to
/// where it was; revert and re-apply bring the target to a clean state.
fn recover_after_routine_kill(target: &mut Target, done: &str, expected: State, bits: Bits) {
    printed(target, done);
    assert!(target.alive(), "target died");
    let live = list(target.pid()).unwrap();
    assert_eq!(live.first().map(|r| r.state), Some(expected));
    // The interrupted record says what is half done; the program still runs normally.
    assert!(["1 10", "2 20"].contains(&target.next_line().as_str()));
    revert(target.pid(), &Selection::All, Duration::from_secs(5)).unwrap();
    assert!(list(target.pid()).unwrap().is_empty());
    target.wait_for(|l| l == "1 10", "old values after recovery");
    let b = built_for(bits);
    apply(
        target.pid(),
        util::built_with_routines_for(bits),
        &b.trust,
        &options(),
    )
    .unwrap();
    target.wait_for(|l| l == "2 20", "new values after re-apply");
    revert(target.pid(), &Selection::All, Duration::from_secs(5)).unwrap();
    target.wait_for(|l| l == "1 10", "old values after final revert");
    assert!(target.alive());
}

fn routines_package_file(bits: Bits) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("routines.lpkg");
    std::fs::write(&path, util::built_with_routines_for(bits)).unwrap();
    (dir, path)
}

#[test]
fn applier_killed_while_an_init_routine_runs() {
    killed_in_init_routine(Bits::M64);
}

#[test]
fn applier_killed_while_an_init_routine_runs_in_an_i386_target() {
    killed_in_init_routine(Bits::M32);
}

fn killed_in_init_routine(bits: Bits) {
    let (_dir, package) = routines_package_file(bits);
    let mut target = Target::start(&built_for(bits).exe, "plain");
    let mut child = start_child("apply", target.pid(), &package);
    kill_when(&mut child, &target, "in-init");
    recover_after_routine_kill(&mut target, "init-done", State::Switching, bits);
}

#[test]
fn applier_killed_while_an_exit_routine_runs() {
    killed_in_exit_routine(Bits::M64);
}

#[test]
fn applier_killed_while_an_exit_routine_runs_in_an_i386_target() {
    killed_in_exit_routine(Bits::M32);
}

fn killed_in_exit_routine(bits: Bits) {
    let (_dir, package) = routines_package_file(bits);
    let b = built_for(bits);
    let mut target = Target::start(&b.exe, "plain");
    apply(
        target.pid(),
        util::built_with_routines_for(bits),
        &b.trust,
        &options(),
    )
    .unwrap();
    target.wait_for(|l| l == "2 20", "new values");
    let mut child = start_child("revert", target.pid(), &package);
    kill_when(&mut child, &target, "in-exit");
    recover_after_routine_kill(&mut target, "exit-done", State::Reverting, bits);
}

#[test]
fn ctrl_c_at_every_apply_step_rolls_back_before_exiting() {
    let (_dir, package) = package_file();
    let failed = every_step(APPLY_STEPS, |step| {
        let mut target = Target::start(&built().exe, "plain");
        signal_at("apply", target.pid(), step, &package, "INT");
        assert!(target.alive());
        assert!(
            list(target.pid()).unwrap().is_empty(),
            "record left at {step}"
        );
        target.wait_for(|l| l == "1 10", "old values after the rollback");
        let b = built();
        apply(target.pid(), &b.package, &b.trust, &options()).unwrap();
        target.wait_for(|l| l == "2 20", "new values after re-apply");
    });
    assert!(failed.is_empty(), "failed at {failed:?}");
}

/// Anonymous executable mappings of `pid` outside the modules of lpkg's records: the page
/// remote calls return through.
fn call_trampolines(pid: i32) -> usize {
    let modules: Vec<(u64, u64)> = list(pid)
        .unwrap()
        .iter()
        .map(|r| {
            (
                r.body.module_address,
                r.body.module_address + r.body.module_len,
            )
        })
        .collect();
    lpkg_kernel::maps::read(pid)
        .unwrap()
        .iter()
        .filter(|m| m.exec && m.path.is_none())
        .filter(|m| !modules.iter().any(|&(s, e)| m.start >= s && m.end <= e))
        .count()
}

/// Init and exit routines run in the pause of every thread; the page they return through is
/// mapped before it, while only one thread is stopped, and unmapped after the others resumed.
#[test]
fn the_routines_trampoline_is_mapped_before_the_pause() {
    let (_dir, package) = routines_package_file(Bits::M64);
    let b = built();
    let target = Target::start(&b.exe, "plain");
    let pid = target.pid();
    let before = call_trampolines(pid);
    // Paused with every thread stopped and clear, before the first jump and routine. Ctrl-C
    // ends the pause and rolls the apply back.
    let (mut child, paused) = pause_at("apply", pid, "apply:stopped", &package);
    paused.expect("apply paused");
    assert_eq!(
        call_trampolines(pid),
        before + 1,
        "mapped before the switch"
    );
    signal_and_wait(&mut child.0, "apply:stopped", "INT");
    assert!(list(pid).unwrap().is_empty());
    assert_eq!(call_trampolines(pid), before, "unmapped by the rollback");

    let report = apply(pid, util::built_with_routines(), &b.trust, &options()).unwrap();
    // In the pause: the alternate stack read for the first routine, nothing else.
    assert_eq!(report.switch.injected, 1, "{:?}", report.switch);
    target.wait_for(|l| l == "2 20", "new values");
    assert_eq!(call_trampolines(pid), before, "unmapped after the apply");
    // The same for revert and its exit routines; a revert caught by Ctrl-C completes.
    let (mut child, paused) = pause_at("revert", pid, "revert:stopped", &package);
    paused.expect("revert paused");
    assert_eq!(call_trampolines(pid), before + 1, "mapped before the stop");
    signal_and_wait(&mut child.0, "revert:stopped", "INT");
    printed(&target, "exit-done");
    assert!(list(pid).unwrap().is_empty());
    assert_eq!(call_trampolines(pid), before, "unmapped after the revert");
    target.wait_for(|l| l == "1 10", "old values");
}

/// Starts apply or revert on `pid` in a child paused at `step` and checks it got there.
fn paused_at(op: &str, pid: i32, step: &str, package: &std::path::Path) -> Applier {
    let (child, paused) = pause_at(op, pid, step, package);
    assert_eq!(
        paused.expect("applier reached the step"),
        format!("lpkg: paused at {step}")
    );
    child
}

fn quick() -> ApplyOptions {
    ApplyOptions {
        timeout: Duration::from_millis(300),
        ..ApplyOptions::default()
    }
}

/// Issue 19 (6): a command that finds another one working on the process waits for it (and,
/// past its timeout, refuses naming it) instead of taking its half-done record for an
/// interrupted one. Here a revert is stopped half-way, with its record `reverting`.
#[test]
fn a_second_command_waits_for_the_first_and_never_interleaves() {
    let (_dir, package) = package_file();
    let b = built();
    let target = Target::start(&b.exe, "plain");
    let pid = target.pid();
    apply(pid, &b.package, &b.trust, &options()).unwrap();
    target.wait_for(|l| l == "2 20", "new values");
    let mut reverting = paused_at("revert", pid, "revert:reverting", &package);
    assert_eq!(list(pid).unwrap()[0].state, State::Reverting);

    let refused = apply(pid, &b.package, &b.trust, &quick()).unwrap_err();
    let message = refused.to_string();
    assert!(
        matches!(refused, lpkg_applier::Error::Locked { .. }),
        "{message}"
    );
    assert!(
        message.contains(&format!("lpkg pid {}", reverting.0.id())),
        "{message}"
    );
    let refused = revert(pid, &Selection::All, Duration::from_millis(300)).unwrap_err();
    assert!(
        matches!(refused, lpkg_applier::Error::Locked { .. }),
        "{refused}"
    );
    assert_eq!(list(pid).unwrap()[0].state, State::Reverting);

    // The revert goes on (a caught SIGINT ends its pause; a revert completes) while an apply
    // waits: the apply starts after it, on a clean process, and recovers nothing.
    let waiting = std::thread::spawn(move || apply(pid, &b.package, &b.trust, &options()));
    std::thread::sleep(Duration::from_millis(200));
    assert!(!waiting.is_finished(), "the apply waits for the revert");
    signal_and_wait(&mut reverting.0, "revert:reverting", "INT");
    assert!(reverting.0.wait().unwrap().success(), "the revert finished");
    let report = waiting.join().unwrap().unwrap();
    assert_eq!(report.recovered, Vec::<String>::new());
    let records = list(pid).unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].state, State::Applied);
    target.wait_for(|l| l == "2 20", "new values");
    revert(pid, &Selection::All, Duration::from_secs(5)).unwrap();
}

/// Issue 19 (6): the lock of an lpkg killed while it held it is gone with it: the next command
/// goes on at once and recovers what the dead one left.
#[test]
fn the_lock_of_a_killed_lpkg_is_never_in_the_way() {
    let (_dir, package) = package_file();
    let b = built();
    let target = Target::start(&b.exe, "plain");
    let pid = target.pid();
    let mut applying = paused_at("apply", pid, "apply:recorded", &package);
    signal_and_wait(&mut applying.0, "apply:recorded", "KILL");
    let report = apply(pid, &b.package, &b.trust, &quick()).unwrap();
    assert_eq!(report.recovered.len(), 1);
    target.wait_for(|l| l == "2 20", "new values");
    revert(pid, &Selection::All, Duration::from_secs(5)).unwrap();
}

/// Issue 19 (5): a revert that read the records of a process which then exited, its pid given
/// to a new process, touches nothing of the new process and says why. Both processes have the
/// same layout and the same package applied, so a revert that went on would succeed: on the
/// wrong process.
#[test]
fn a_pid_reused_after_the_records_were_read_is_never_touched() {
    let (_dir, package) = package_file();
    let b = built();
    let first = Target::start_fixed(&b.exe, "plain", None);
    let pid = first.pid();
    apply(pid, &b.package, &b.trust, &options()).unwrap();
    let mut reverting = paused_at(
        "revert",
        pid,
        lpkg_applier::checkpoint::REVERT_READ,
        &package,
    );
    let first_records = list(pid).unwrap();
    drop(first);
    let second = Target::start_fixed(&b.exe, "plain", Some(pid));
    apply(pid, &b.package, &b.trust, &options()).unwrap();
    let second_records = list(pid).unwrap();
    assert_eq!(
        (
            first_records[0].address,
            first_records[0].body.module_address
        ),
        (
            second_records[0].address,
            second_records[0].body.module_address
        ),
        "the two processes have the same layout"
    );
    signal_and_wait(
        &mut reverting.0,
        lpkg_applier::checkpoint::REVERT_READ,
        "INT",
    );
    assert!(!reverting.0.wait().unwrap().success(), "the revert failed");
    assert_eq!(list(pid).unwrap()[0].state, State::Applied);
    second.wait_for(|l| l == "2 20", "new values");
    revert(pid, &Selection::All, Duration::from_secs(5)).unwrap();
}

/// Issue 19 (9): a target killed while lpkg has it stopped, and not reaped by its parent (this
/// test, which waits for it only at the end), costs lpkg no more than its timeout (5 s): it
/// used to wait 10 s per stop it tried, up to three times.
#[test]
fn a_target_killed_mid_apply_and_not_reaped_costs_no_more_than_the_timeout() {
    let (_dir, package) = package_file();
    let b = built();
    for step in ["apply:stopped", "apply:recorded"] {
        let target = Target::start(&b.exe, "plain");
        let pid = target.pid();
        let mut applying = paused_at("apply", pid, step, &package);
        let killed = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let started = std::time::Instant::now();
        signal_and_wait(&mut applying.0, step, "INT");
        let took = started.elapsed();
        assert!(took < Duration::from_secs(8), "{step}: lpkg took {took:?}");
        assert!(!applying.0.wait().unwrap().success());
        drop(target);
    }
}
