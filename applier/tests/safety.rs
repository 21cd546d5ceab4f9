//! Apply under every thread state: real targets, real ptrace, checked from outside.

mod util;

use std::time::{Duration, Instant};

use lpkg_applier::{apply, revert, ApplyOptions, Error, Selection};
use util::{built, Target};

fn options(timeout_ms: u64) -> ApplyOptions {
    ApplyOptions {
        timeout: Duration::from_millis(timeout_ms),
    }
}

fn busy_message(result: Result<lpkg_applier::ApplyReport, Error>) -> String {
    match result {
        Err(e @ Error::Busy { .. }) => e.to_string(),
        other => panic!("expected a busy error, got {other:?}"),
    }
}

/// Apply leaves the target untouched after a failure: it still prints all-old values and a
/// later revert finds nothing.
fn assert_untouched(target: &mut Target) {
    assert!(target.alive());
    assert_eq!(target.next_line(), "1 10");
    assert!(lpkg_applier::records::read(target.pid())
        .unwrap()
        .is_empty());
}

#[test]
fn plain_apply_switches_both_functions_and_revert_restores_them() {
    let b = built();
    let target = Target::start(&b.exe, "plain");
    assert_eq!(target.next_line(), "1 10");
    apply(target.pid(), &b.package, &b.trust, &options(5000)).unwrap();
    target.wait_for(|l| l == "2 20", "new values");
    revert(target.pid(), &Selection::Latest, Duration::from_secs(5)).unwrap();
    target.wait_for(|l| l == "1 10", "old values again");
}

#[test]
fn thread_blocked_in_syscall_inside_patched_function_times_out_naming_it() {
    let b = built();
    let mut target = Target::start(&b.exe, "park:3600");
    std::thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    let message = busy_message(apply(target.pid(), &b.package, &b.trust, &options(500)));
    assert!(started.elapsed() >= Duration::from_millis(500));
    assert!(
        message.contains("blocked in a system call inside parked")
            && message.contains("it will not leave until the call returns"),
        "{message}"
    );
    assert_untouched(&mut target);
}

#[test]
fn apply_waits_for_a_parked_thread_to_leave_then_succeeds() {
    let b = built();
    let target = Target::start(&b.exe, "park:2");
    std::thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    let report = apply(target.pid(), &b.package, &b.trust, &options(10_000)).unwrap();
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1500),
        "applied after {waited:?}"
    );
    // While the parked thread stayed busy, only it was stopped to look again: the whole
    // process was stopped twice (busy, then clear).
    assert_eq!(report.switch.stops, 2, "{:?}", report.switch);
    assert!(report.switch.single_stops >= 2, "{:?}", report.switch);
    target.wait_for(|l| l == "2 20", "new values");
}

#[test]
fn deep_recursion_through_a_patched_function_is_seen() {
    let b = built();
    let mut target = Target::start(&b.exe, "recurse");
    std::thread::sleep(Duration::from_millis(100));
    let message = busy_message(apply(target.pid(), &b.package, &b.trust, &options(300)));
    assert!(message.contains("inside recursive"), "{message}");
    assert_untouched(&mut target);
}

#[test]
fn code_interrupted_by_a_signal_handler_is_seen_through_the_signal_frame() {
    let b = built();
    let mut target = Target::start(&b.exe, "signal");
    // The alarm fires after 1 s; from then on spin() is only below the signal frame.
    std::thread::sleep(Duration::from_millis(1300));
    let message = busy_message(apply(target.pid(), &b.package, &b.trust, &options(300)));
    assert!(message.contains("spin"), "{message}");
    assert_untouched(&mut target);
}

#[test]
fn children_forked_during_apply_and_revert_are_never_half_patched_without_a_record() {
    let b = built();
    // The parked thread keeps apply waiting ~1 s with the record in `loading` while children
    // are forked; with a shared record mapping they would later see `applied` over old code.
    let target = Target::start(&b.exe, "fork");
    std::thread::sleep(Duration::from_millis(50));
    for _ in 0..3 {
        apply(target.pid(), &b.package, &b.trust, &options(5000)).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        revert(target.pid(), &Selection::All, Duration::from_secs(5)).unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    // Let the last children check themselves.
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        !target.printed(|l| l.starts_with("INCONSISTENT")),
        "a child saw a record that does not describe its code"
    );
}

#[test]
fn a_process_being_debugged_is_refused_clearly() {
    let b = built();
    let mut target = Target::start(&b.exe, "plain");
    // Another tracer (a child of ours, by PID) holds the target.
    let mut tracer = std::process::Command::new("gdb")
        .args(["-q", "-batch", "-ex", "shell sleep 30", "-p"])
        .arg(target.pid().to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    let Ok(gdb) = tracer.as_mut() else {
        panic!("gdb is needed for this test");
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(format!("/proc/{}/status", target.pid()))
        .unwrap()
        .lines()
        .any(|l| l.starts_with("TracerPid:") && l.split_whitespace().nth(1) != Some("0"))
    {
        assert!(Instant::now() < deadline, "gdb never attached");
        std::thread::sleep(Duration::from_millis(20));
    }
    let message = match apply(target.pid(), &b.package, &b.trust, &options(500)) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("applied to a process under a debugger"),
    };
    assert!(message.contains("already traced by"), "{message}");
    let _ = gdb.kill();
    let _ = gdb.wait();
    assert!(target.alive());
}

#[test]
fn threads_created_and_exiting_during_apply_and_revert() {
    let b = built();
    let mut target = Target::start(&b.exe, "churn");
    for _ in 0..3 {
        apply(target.pid(), &b.package, &b.trust, &options(5000)).unwrap();
        target.wait_for(|l| l == "2 20", "new values");
        revert(target.pid(), &Selection::All, Duration::from_secs(5)).unwrap();
        target.wait_for(|l| l == "1 10", "old values");
    }
    assert!(target.alive());
}
