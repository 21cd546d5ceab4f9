//! Host-wide commands (`--pid all`, the store, status) on real processes. Every test builds its
//! own library and programs with a token of its own in them: a host-wide apply finds a process
//! by the build-id of what it maps, so only this test's processes match, and `list`/`revert
//! --pid all` are narrowed to this test's command names with `--comm`.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::{gcc, Program, Run, Scratch};

/// One test's library, its fix, the programs that use it, and a package of the fix.
struct Fleet {
    s: Scratch,
    token: String,
    package: PathBuf,
    trust: PathBuf,
}

impl Fleet {
    /// Builds `librate.so` (rate = x + 1) and its fix (rate = 1000 x + 1) with a token of
    /// this test, two programs using it (`hu<token>`, `hv<token>`) and one that does not
    /// (`hw<token>`, a copy of cat), and a signed package of the fix.
    fn build() -> Fleet {
        let s = Scratch::new();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let token = format!("{:06x}", (nanos ^ std::process::id()) & 0xff_ffff);
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/targets/host");
        let path = |name: &str| s.path(name).to_str().unwrap().to_owned();
        let define = format!("-DTOKEN=\"{token}\"");
        for (object, rate) in [("rate-old.o", "1"), ("rate-new.o", "1000")] {
            gcc(&[
                "-O2",
                "-g",
                "-ffunction-sections",
                "-fdata-sections",
                "-fPIC",
                &define,
                &format!("-DRATE={rate}"),
                "-c",
                src.join("rate.c").to_str().unwrap(),
                "-o",
                &path(object),
            ]);
        }
        gcc(&["-shared", "-o", &path("librate.so"), &path("rate-old.o")]);
        for program in ["hu", "hv"] {
            gcc(&[
                "-O2",
                src.join("user.c").to_str().unwrap(),
                "-o",
                &path(&format!("{program}{token}")),
                "-L",
                s.dir.path().to_str().unwrap(),
                "-lrate",
                &format!("-Wl,-rpath,{}", s.dir.path().display()),
            ]);
        }
        std::fs::copy("/bin/cat", s.path(&format!("hw{token}"))).unwrap();
        let (key, trust) = s.keygen("release");
        let package = s.build(
            &s.path("librate.so"),
            &s.path("rate-old.o"),
            &s.path("rate-new.o"),
            &key,
            "rate.lpkg",
            ("rate-fix", "1"),
            &[],
        );
        Fleet {
            s,
            token,
            package,
            trust,
        }
    }

    /// Starts `program` and waits for its first answer: by then the loader has mapped
    /// librate.so, so an lpkg command that follows finds it.
    fn start(&self, program: &str) -> Target {
        let mut target = Program::start(&mut Command::new(
            self.s.path(&format!("{program}{}", self.token)),
        ));
        target.ask("0");
        target
    }

    /// `lpkg ARGS` with `--trust` where it applies, and `--comm` narrowing `--pid all` to this
    /// test's programs.
    fn lpkg(&self, args: &[&str]) -> Run {
        let mut all: Vec<&str> = args.to_vec();
        let comm = format!("^h[uvw]{}$", self.token);
        all.extend(["--comm", &comm]);
        let trust = self.trust.to_str().unwrap();
        if args[0] == "apply" {
            all.extend(["--trust", trust]);
        }
        self.s.run(&all)
    }
}

/// A program of the fleet: answers N with rate(N) (cat, the bystander, echoes).
type Target = Program;

fn ok(run: Run) -> Run {
    assert_eq!(
        run.code, 0,
        "stdout: {}\nstderr: {}",
        run.stdout, run.stderr
    );
    run
}

/// The pids of `value["processes"]` whose `result` is `result`, sorted.
fn pids_with(value: &serde_json::Value, result: &str) -> Vec<i64> {
    let mut pids: Vec<i64> = value["processes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["result"] == result)
        .map(|p| p["pid"].as_i64().unwrap())
        .collect();
    pids.sort_unstable();
    pids
}

#[test]
fn apply_list_and_revert_reach_every_process_that_maps_the_object() {
    let fleet = Fleet::build();
    let mut users: Vec<Target> = (0..50).map(|_| fleet.start("hu")).collect();
    users.extend((0..3).map(|_| fleet.start("hv")));
    let mut bystander = fleet.start("hw");
    for user in &mut users {
        assert_eq!(user.ask("2"), "3");
    }
    let mut all: Vec<i64> = users.iter().map(|u| i64::from(u.child.id())).collect();
    all.sort_unstable();
    let package = fleet.package.to_str().unwrap();

    // A dry run names every process and changes none.
    let dry = ok(fleet.lpkg(&["apply", package, "--pid", "all", "--dry-run", "--json"])).json();
    assert_eq!(pids_with(&dry, "would apply"), all);
    assert_eq!(users[0].ask("2"), "3");

    // One left out by pid; every other one patched, each said on its line.
    let excluded = users[7].pid();
    let run = ok(fleet.lpkg(&["apply", package, "--pid", "all", "--exclude-pid", &excluded]));
    assert!(
        run.stdout
            .ends_with("applied 52, already 0, refused 0, failed 0, gone 0\n"),
        "{}",
        run.stdout
    );
    assert_eq!(
        run.stdout
            .lines()
            .filter(|l| l.contains(": applied:"))
            .count(),
        52
    );
    for (i, user) in users.iter_mut().enumerate() {
        let expected = if i == 7 { "3" } else { "2001" };
        assert_eq!(user.ask("2"), expected, "process {i}");
    }
    assert_eq!(bystander.ask("7"), "7");

    // Again: the 52 already have it, the one left out gets it now.
    let again = ok(fleet.lpkg(&["apply", package, "--pid", "all", "--json"])).json();
    assert_eq!(
        pids_with(&again, "applied"),
        vec![i64::from(users[7].child.id())]
    );
    assert_eq!(again["summary"]["already"], 52);
    assert_eq!(users[7].ask("2"), "2001");

    // list --pid all shows the package in each, its code live.
    let listed = ok(fleet.lpkg(&["list", "--pid", "all", "--json"])).json();
    let listed = listed.as_array().unwrap();
    let mut listed_pids: Vec<i64> = listed.iter().map(|p| p["pid"].as_i64().unwrap()).collect();
    listed_pids.sort_unstable();
    assert_eq!(listed_pids, all);
    for process in listed {
        let packages = process["packages"].as_array().unwrap();
        assert_eq!(packages.len(), 1, "{process}");
        assert_eq!(packages[0]["name"], "rate-fix");
        assert_eq!(packages[0]["live"], "intact");
    }

    // revert --pid all takes it out of every one.
    let reverted = ok(fleet.lpkg(&["revert", "--pid", "all", "--all", "--json"])).json();
    assert_eq!(pids_with(&reverted, "reverted"), all);
    for user in &mut users {
        assert_eq!(user.ask("2"), "3");
    }
    let listed = ok(fleet.lpkg(&["list", "--pid", "all", "--json"])).json();
    assert_eq!(listed, serde_json::json!([]));
}

#[test]
fn revert_pid_all_needs_a_package_named_and_pid_takes_all_or_a_number() {
    let s = Scratch::new();
    let run = s.run(&["revert", "--pid", "all"]);
    assert_eq!(run.code, 2);
    assert!(
        run.error_line().contains("needs --id ID or --all"),
        "{}",
        run.stderr
    );
    let run = s.run(&["list", "--pid", "everything"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("neither a process id nor `all`"),
        "{}",
        run.stderr
    );
}

/// The options that choose among the host's processes, and `--dry-run`, are usage errors with
/// one process named (ignored, a dry run patched it); so is an empty id, which every package's
/// id starts with. Nothing is touched: the process is a child of the test, never attached.
#[test]
fn host_wide_options_with_one_pid_and_empty_ids_are_usage_errors() {
    let s = Scratch::new();
    let mut child = Command::new("sleep").arg("60").spawn().unwrap();
    let pid = child.id().to_string();
    let package = s.path("never-read.lpkg");
    let package = package.to_str().unwrap();
    for (args, says) in [
        (
            vec!["apply", package, "--pid", &pid, "--dry-run"],
            "--dry-run only with --pid all",
        ),
        (
            vec![
                "apply",
                package,
                "--pid",
                &pid,
                "--comm",
                "x",
                "--workers",
                "2",
            ],
            "--comm, --workers only with --pid all",
        ),
        (
            vec!["revert", "--pid", &pid, "--all", "--exclude-pid", "1"],
            "--exclude-pid only with --pid all",
        ),
        (
            vec!["list", "--pid", &pid, "--comm", "x"],
            "--comm only with",
        ),
        (
            vec!["revert", "--pid", &pid, "--id", ""],
            "is not a package id",
        ),
        (
            vec!["revert", "--pid", "all", "--id", "xyz"],
            "is not a package id",
        ),
        (
            vec!["uninstall", "", "--store", "/nonexistent-lpkg"],
            "is not a package id",
        ),
    ] {
        let run = s.run(&args);
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert!(run.stderr.contains(says), "{args:?}: {}", run.stderr);
    }
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(status.contains("TracerPid:\t0"), "{status}");
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn the_store_keeps_verified_packages_and_status_tells_exposed_patched_and_drifted() {
    let fleet = Fleet::build();
    let s = &fleet.s;
    let store = s.path("store");
    let store_arg = store.to_str().unwrap();
    let trust = fleet.trust.to_str().unwrap();
    let package = fleet.package.to_str().unwrap();
    let mut users: Vec<Target> = (0..3).map(|_| fleet.start("hu")).collect();
    for user in &mut users {
        assert_eq!(user.ask("2"), "3");
    }

    // A package signed by a key the store's users do not trust is never stored.
    let (other_key, _) = s.keygen("other");
    let untrusted = s.package("untrusted.lpkg", &other_key);
    let run = s.run(&[
        "install",
        untrusted.to_str().unwrap(),
        "--trust",
        trust,
        "--store",
        store_arg,
    ]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(!store.exists() || std::fs::read_dir(&store).unwrap().count() == 0);

    let run = ok(s.run(&[
        "install", package, "--trust", trust, "--store", store_arg, "--json",
    ]));
    let id = run.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(run.json()["installed"], true);
    assert!(store.join(format!("{id}.lpkg")).is_file());
    let again = ok(s.run(&["install", package, "--trust", trust, "--store", store_arg]));
    assert!(
        again.stdout.starts_with("already installed rate-fix 1"),
        "{}",
        again.stdout
    );
    // Something else in the store is skipped, said on stderr.
    std::fs::write(store.join("deadbeef.lpkg"), b"not a package").unwrap();
    let installed = ok(s.run(&[
        "installed",
        "--trust",
        trust,
        "--store",
        store_arg,
        "--json",
    ]));
    assert_eq!(installed.json().as_array().unwrap().len(), 1);
    assert!(installed.stderr.contains("skipped"), "{}", installed.stderr);
    std::fs::remove_file(store.join("deadbeef.lpkg")).unwrap();

    // Nothing applied yet: every process is exposed (exit code 5).
    let status = |extra: &[&str]| {
        let mut args = vec!["status", "--trust", trust, "--store", store_arg, "--json"];
        args.extend_from_slice(extra);
        fleet.lpkg(&args)
    };
    let run = status(&[]);
    assert_eq!(run.code, 5, "{}", run.stderr);
    let value = run.json();
    assert_eq!(value["summary"]["exposed"], 3, "{value}");
    assert_eq!(value["processes"][0]["exposed"][0]["id"], id.as_str());
    assert!(value["processes"][0]["objects"][0]["path"]
        .as_str()
        .unwrap()
        .ends_with("librate.so"));

    ok(fleet.lpkg(&["apply", package, "--pid", "all"]));
    let value = ok(status(&[])).json();
    assert_eq!(value["summary"]["exposed"], 0, "{value}");
    for process in value["processes"].as_array().unwrap() {
        assert_eq!(process["applied"][0]["live"], "intact", "{process}");
    }

    // The code of one process changed behind lpkg's back: status says so.
    let pid = users[1].child.id() as i32;
    let record = &lpkg_applier::list(pid).unwrap()[0];
    let entry = &record.body.entries[0];
    let original = entry.original_bytes().unwrap();
    lpkg_kernel::memory::write(pid, entry.address, &original).unwrap();
    assert_eq!(users[1].ask("2"), "3");
    let run = status(&[]);
    assert_eq!(run.code, 5, "{}", run.stderr);
    let value = run.json();
    assert_eq!(value["summary"]["drifted"], 1, "{value}");
    assert_eq!(value["summary"]["exposed"], 1, "{value}");
    let drifted = value["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["pid"] == pid)
        .unwrap();
    assert_eq!(drifted["applied"][0]["live"], "drifted");
    assert_eq!(
        drifted["applied"][0]["drifted"],
        serde_json::json!(["rate"])
    );
    // The record is lpkg's all the same (its module is): revert takes the package out.
    let run = ok(s.run(&["revert", "--pid", &pid.to_string()]));
    assert!(
        run.stdout.contains("0 function(s) restored"),
        "{}",
        run.stdout
    );
    assert!(lpkg_applier::list(pid).unwrap().is_empty());

    let run = ok(s.run(&["uninstall", &id[..12], "--store", store_arg]));
    assert!(run.stdout.contains("keep it"), "{}", run.stdout);
    let installed = ok(s.run(&[
        "installed",
        "--trust",
        trust,
        "--store",
        store_arg,
        "--json",
    ]));
    assert_eq!(installed.json(), serde_json::json!([]));
}

/// `lpkg daemon` in the foreground, its log lines collected; SIGKILLed (by PID) if still
/// running when dropped.
struct Daemon {
    child: Child,
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Daemon {
    fn start(fleet: &Fleet, store: &Path, extra: &[&str]) -> Daemon {
        Daemon::start_with(fleet, store, extra, &[])
    }

    /// [`Daemon::start`] with `env` added to its environment.
    fn start_with(fleet: &Fleet, store: &Path, extra: &[&str], env: &[(&str, &str)]) -> Daemon {
        let mut child = Command::new(env!("CARGO_BIN_EXE_lpkg"))
            .args(["daemon", "--store", store.to_str().unwrap()])
            .args(["--trust", fleet.trust.to_str().unwrap()])
            .args(extra)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let daemon = Daemon { child, lines };
        daemon.wait_for(|l| l.contains(" ready: "), "ready");
        daemon
    }

    /// Waits (10 s at most) for a log line that satisfies `ok`.
    fn wait_for(&self, ok: impl Fn(&str) -> bool, what: &str) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if let Some(line) = self.lines.lock().unwrap().iter().find(|l| ok(l)) {
                return line.clone();
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!(
            "the daemon never logged {what}: {:?}",
            self.lines.lock().unwrap()
        );
    }

    fn signal(&self, signal: &str) {
        let sent = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Asks `target` until it answers `expected` (10 s at most).
fn answers(target: &mut Target, expected: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let answer = target.ask("2");
        if answer == expected {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "process {} still answers {answer}, not {expected}",
            target.pid()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn the_daemon_patches_processes_as_they_start_and_stops_cleanly() {
    let fleet = Fleet::build();
    let store = fleet.s.path("store");
    let trust = fleet.trust.to_str().unwrap();
    ok(fleet.s.run(&[
        "install",
        fleet.package.to_str().unwrap(),
        "--trust",
        trust,
        "--store",
        store.to_str().unwrap(),
    ]));
    let mut running_before = fleet.start("hu");
    let daemon = Daemon::start(&fleet, &store, &["--rescan", "3600"]);
    // Already running at start: patched by the first scan.
    answers(&mut running_before, "2001");
    let mut started: Vec<Target> = (0..5).map(|_| fleet.start("hu")).collect();
    for target in &mut started {
        answers(target, "2001");
        let pid = target.pid();
        daemon.wait_for(
            |l| l.contains(&format!("exec {pid} ")) && l.contains(": applied rate-fix 1"),
            "the exec apply",
        );
    }
    daemon.signal("HUP");
    daemon.wait_for(
        |l| l.contains("rescan (SIGHUP): 0 apply(ies)"),
        "the SIGHUP rescan",
    );
    daemon.signal("TERM");
    let mut daemon = daemon;
    assert!(daemon.child.wait().unwrap().success(), "exit 0 on SIGTERM");
    // Stopping the daemon reverts nothing.
    for target in &mut started {
        assert_eq!(target.ask("2"), "2001");
    }
}

#[test]
fn without_exec_events_rescans_find_processes_and_an_install_applies_at_once() {
    let fleet = Fleet::build();
    let store = fleet.s.path("store");
    std::fs::create_dir(&store).unwrap();
    let trust = fleet.trust.to_str().unwrap();
    let daemon = Daemon::start(&fleet, &store, &["--no-exec-events", "--rescan", "0.3"]);
    let mut targets: Vec<Target> = (0..3).map(|_| fleet.start("hu")).collect();
    std::thread::sleep(std::time::Duration::from_millis(500));
    for target in &mut targets {
        assert_eq!(target.ask("2"), "3", "nothing installed yet");
    }
    // Something that is not a package in the store: skipped, said, never applied.
    std::fs::write(store.join("junk.lpkg"), b"junk").unwrap();
    daemon.wait_for(
        |l| l.contains("store: skipped") && l.contains("junk.lpkg"),
        "the skip",
    );
    ok(fleet.s.run(&[
        "install",
        fleet.package.to_str().unwrap(),
        "--trust",
        trust,
        "--store",
        store.to_str().unwrap(),
    ]));
    daemon.wait_for(|l| l.contains("store: installed rate-fix 1"), "the install");
    for target in &mut targets {
        answers(target, "2001");
    }
    // Started later, found by a periodic rescan.
    let mut later = fleet.start("hv");
    answers(&mut later, "2001");
}

/// A daemon SIGKILLed in the middle of an apply leaves the process as any killed apply does
/// (a `loading` record, old code), and its next start recovers it and applies the package.
#[test]
fn a_daemon_killed_mid_apply_leaves_what_its_next_start_recovers() {
    let fleet = Fleet::build();
    let store = fleet.s.path("store");
    ok(fleet.s.run(&[
        "install",
        fleet.package.to_str().unwrap(),
        "--trust",
        fleet.trust.to_str().unwrap(),
        "--store",
        store.to_str().unwrap(),
    ]));
    let mut target = fleet.start("hu");
    assert_eq!(target.ask("2"), "3");
    let pause = [("LPKG_TEST_PAUSE_AT", "apply:recorded")];
    let mut daemon = Daemon::start_with(&fleet, &store, &["--rescan", "3600"], &pause);
    let pid = target.pid();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let listed = ok(fleet.s.run(&["list", "--pid", &pid, "--json"])).json();
        if listed[0]["state"] == "interrupted (loading)" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the daemon never paused: {listed}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    daemon.signal("KILL");
    let killed = daemon.child.id();
    let _ = daemon.child.wait();
    assert_eq!(target.ask("2"), "3", "killed before the switch: old code");
    // Its state file stays, and says nothing: status shows no such daemon; nor does it show
    // one whose file names a running process that is not it (a pid reused).
    let run_dir = std::env::var("LPKG_RUN_DIR").unwrap_or_else(|_| "/run/lpkg".into());
    let left = Path::new(&run_dir).join(format!("daemon-{killed}.json"));
    assert!(left.exists(), "{}", left.display());
    let reused = Path::new(&run_dir).join(format!("daemon-{pid}.json"));
    let forged = format!(r#"{{"daemon": {pid}, "start_time": 1, "failures": []}}"#);
    std::fs::write(&reused, forged).unwrap();
    let daemons = |fleet: &Fleet| -> Vec<String> {
        let trust = fleet.trust.to_str().unwrap();
        let args = [
            "status",
            "--store",
            store.to_str().unwrap(),
            "--trust",
            trust,
            "--json",
        ];
        let run = fleet.lpkg(&args);
        assert!(run.code == 0 || run.code == 5, "{}", run.stderr);
        (run.json()["daemons"].as_array().unwrap().iter())
            .map(|d| d["daemon"].to_string())
            .collect()
    };
    let listed = daemons(&fleet);
    assert!(!listed.contains(&killed.to_string()), "{listed:?}");
    assert!(!listed.contains(&pid), "{listed:?}");
    std::fs::remove_file(&reused).unwrap();
    let next = Daemon::start(&fleet, &store, &["--rescan", "3600"]);
    answers(&mut target, "2001");
    let listed = ok(fleet.s.run(&["list", "--pid", &pid, "--json"])).json();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["state"], "applied");
    // Its start removed the dead daemon's file; status shows it running.
    assert!(!left.exists(), "{}", left.display());
    assert!(daemons(&fleet).contains(&next.child.id().to_string()));
}

/// An apply the daemon cannot make (another lpkg command holds the process) is retried with
/// backoff and shown by `lpkg status` with the process until it succeeds.
#[test]
fn the_daemon_retries_what_failed_and_status_shows_it_meanwhile() {
    let fleet = Fleet::build();
    let store = fleet.s.path("store");
    let (package, trust) = (
        fleet.package.to_str().unwrap(),
        fleet.trust.to_str().unwrap(),
    );
    ok(fleet.s.run(&[
        "install",
        package,
        "--trust",
        trust,
        "--store",
        store.to_str().unwrap(),
    ]));
    let mut target = fleet.start("hu");
    let pid = target.pid();
    // Another apply, paused half-way, holds the process's lock.
    let mut holder = Holder(
        Command::new(env!("CARGO_BIN_EXE_lpkg"))
            .args(["apply", package, "--pid", &pid, "--trust", trust])
            .env("LPKG_TEST_PAUSE_AT", "apply:recorded")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut paused = String::new();
    BufReader::new(holder.0.stderr.take().unwrap())
        .read_line(&mut paused)
        .unwrap();
    assert!(paused.contains("paused at apply:recorded"), "{paused}");
    let daemon = Daemon::start(&fleet, &store, &["--rescan", "3600", "--timeout", "1"]);
    daemon.wait_for(
        |l| {
            l.contains(&format!(" {pid} "))
                && l.contains("failed rate-fix 1")
                && l.contains("(attempt 1,")
        },
        "the failure",
    );
    let status = fleet.lpkg(&[
        "status",
        "--trust",
        trust,
        "--store",
        store.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(status.code, 5, "{}", status.stderr);
    let value = status.json();
    let process = value["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["pid"].as_u64().map(|p| p.to_string()) == Some(pid.clone()))
        .unwrap();
    let failure = &process["daemon_failures"][0];
    assert!(
        failure["error"]
            .as_str()
            .unwrap()
            .contains("being changed by another lpkg command"),
        "{failure}"
    );
    // The holder dies; a retry recovers what it left and applies.
    drop(holder);
    answers(&mut target, "2001");
    // By the retry, or by a rescan if the kernel dropped exec events meanwhile (a busy host).
    daemon.wait_for(
        |l| l.contains(&format!(" {pid} ")) && l.contains(": applied rate-fix 1"),
        "the apply after the failure",
    );
}

/// An lpkg command of a test, SIGKILLed (by PID) and reaped when dropped: one left paused would
/// keep its target traced, and the target unreapable.
struct Holder(Child);

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
