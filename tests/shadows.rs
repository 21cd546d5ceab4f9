//! Fixes that change data, on live processes: shadow variables and check/init/exit routines.
//! The corpus is `tests/targets/vault.c` (its header says what each version changes), built
//! with gcc at test time; every package is built and applied with the `lpkg` binary, and the
//! target is judged from outside (its answers, its /proc/PID/maps).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::{gcc, Program, Run, Scratch};
use lpkg_format::Package;

/// vault.c compiled as versions 1 to 4 (`vault1.o`..`vault4.o`), version 1 linked into the
/// executable `vault`, in a temporary folder; once.
fn vault() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| compile_vault("-m64")).path()
}

/// vault.c compiled for `machine` (`-m64`, `-m32`) as [`vault`] describes.
fn compile_vault(machine: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let src = root.join("tests/targets/vault.c");
    let include = format!("-I{}", root.join("builder/include").display());
    for v in 1..=4 {
        let obj = dir.path().join(format!("vault{v}.o"));
        gcc(&[
            machine,
            "-O2",
            "-fPIE",
            "-g",
            "-ffunction-sections",
            "-fdata-sections",
            &format!("-DVERSION={v}"),
            &include,
            "-c",
            src.to_str().unwrap(),
            "-o",
            obj.to_str().unwrap(),
        ]);
    }
    let first = dir.path().join("vault1.o");
    let bin = dir.path().join("vault");
    gcc(&[
        machine,
        "-pie",
        "-pthread",
        first.to_str().unwrap(),
        "-o",
        bin.to_str().unwrap(),
    ]);
    dir
}

fn object(version: u32) -> PathBuf {
    vault().join(format!("vault{version}.o"))
}

/// A scratch folder with a key pair, and `vault` started in it.
struct Setup {
    s: Scratch,
    key: PathBuf,
    trust: PathBuf,
    /// The executable the target runs.
    program: PathBuf,
    /// The folder of the `vaultN.o` objects packages are built from.
    objects: PathBuf,
    target: Program,
}

impl Setup {
    fn new() -> Setup {
        Setup::running(vault().join("vault"))
    }

    /// A scratch folder with a key pair, and `program` (built from `vault1.o`) started.
    fn running(program: PathBuf) -> Setup {
        Setup::running_from(program, vault())
    }

    /// [`Setup::running`] with packages built from the objects in `objects`.
    fn running_from(program: PathBuf, objects: &Path) -> Setup {
        let s = Scratch::new();
        let (key, trust) = s.keygen("k");
        let target = Program::start(&mut Command::new(&program));
        Setup {
            s,
            key,
            program,
            objects: objects.to_path_buf(),
            trust,
            target,
        }
    }

    /// The package from version `old` to version `new`, stacked on `requires`.
    fn package(&self, old: u32, new: u32, requires: &[&Path]) -> PathBuf {
        let object = |v: u32| self.objects.join(format!("vault{v}.o"));
        self.s.build(
            &self.program,
            &object(old),
            &object(new),
            &self.key,
            &format!("vault{new}.lpkg"),
            (&format!("vault-fix-{new}"), "1"),
            requires,
        )
    }

    fn lpkg(&self, args: &[&str]) -> Run {
        let pid = self.target.pid();
        let mut all = args.to_vec();
        all.extend(["--pid", &pid]);
        if args[0] == "apply" {
            all.extend(["--trust", self.trust.to_str().unwrap()]);
        }
        self.s.run(&all)
    }

    fn apply(&self, package: &Path) -> Run {
        self.lpkg(&["apply", package.to_str().unwrap()])
    }

    fn ok(&self, run: Run) {
        assert_eq!(
            run.code, 0,
            "stdout: {}\nstderr: {}",
            run.stdout, run.stderr
        );
    }

    /// The lines of the target's /proc/PID/maps that name lpkg's mappings.
    fn lpkg_mappings(&self) -> Vec<String> {
        let maps = std::fs::read_to_string(format!("/proc/{}/maps", self.target.pid())).unwrap();
        maps.lines()
            .filter(|l| l.contains("/memfd:lpkg"))
            .map(str::to_owned)
            .collect()
    }

    fn shadow_area(&self) -> bool {
        self.lpkg_mappings()
            .iter()
            .any(|l| l.contains("/memfd:lpkg-shadows"))
    }
}

#[test]
fn shadow_state_per_object_migrated_by_init_and_freed_on_revert() {
    shadow_state_per_object(Setup::new());
}

/// The same live in an i386 process: the i386 runtime in an i386 module, the area's address a
/// 4-byte pointer.
#[test]
fn shadow_state_per_object_migrated_by_init_and_freed_on_revert_in_i386() {
    let dir = compile_vault("-m32");
    shadow_state_per_object(Setup::running_from(dir.path().join("vault"), dir.path()));
}

fn shadow_state_per_object(mut v: Setup) {
    let fix = v.package(1, 2, &[]);
    // Version 1: one frozen account at a time, no deposit limit.
    assert_eq!(v.target.ask("freeze 2"), "ok");
    assert_eq!(v.target.ask("dep 2 5"), "frozen");
    assert!(!v.shadow_area());
    v.ok(v.apply(&fix));
    assert!(v.shadow_area(), "{:?}", v.lpkg_mappings());
    // The init routine moved frozen_id into account 2's shadow: still frozen, and now a
    // second account freezes without thawing the first.
    assert_eq!(v.target.ask("dep 2 5"), "frozen");
    assert_eq!(v.target.ask("freeze 3"), "ok");
    assert_eq!(v.target.ask("dep 3 1"), "frozen");
    assert_eq!(v.target.ask("dep 2 1"), "frozen");
    // Per-object state the fix added: at most 3 deposits per account, counted per account.
    let answers: Vec<String> = (0..5).map(|_| v.target.ask("dep 4 10")).collect();
    assert_eq!(answers, ["ok 10", "ok 20", "ok 30", "limit", "limit"]);
    assert_eq!(v.target.ask("dep 5 1"), "ok 1");
    // Revert: the exit routine puts the first frozen account back in frozen_id and frees
    // every shadow (2 frozen, 2 deposit counts), then the area goes with the last user.
    v.ok(v.lpkg(&["revert"]));
    assert_eq!(v.target.ask("freed"), "freed 4");
    assert!(v.lpkg_mappings().is_empty(), "{:?}", v.lpkg_mappings());
    assert_eq!(v.target.ask("dep 2 1"), "frozen");
    assert_eq!(v.target.ask("dep 3 1"), "ok 1");
    assert_eq!(v.target.ask("dep 4 1"), "ok 31");
    // Applied again: a new area, no shadow left from the first time (account 4 may deposit).
    assert_eq!(v.target.ask("freeze 6"), "ok");
    v.ok(v.apply(&fix));
    assert_eq!(v.target.ask("dep 4 1"), "ok 32");
    assert_eq!(v.target.ask("dep 6 1"), "frozen");
    assert_eq!(v.target.ask("dep 3 1"), "ok 2");
}

#[test]
fn shadows_created_lazily_by_many_threads_at_once_are_one_per_object() {
    let mut v = Setup::new();
    let fix = v.package(1, 2, &[]);
    assert_eq!(v.target.ask("touches 10"), "touches n/a");
    v.ok(v.apply(&fix));
    // 8 threads released together each touch the same 20000 cells in the same order: each
    // cell's shadow is made by whichever thread comes first, and counts every touch.
    assert_eq!(v.target.ask("storm 8 20000"), "done");
    assert_eq!(v.target.ask("touches 20000"), "touches 160000 20000 8 8");
    assert_eq!(v.target.ask("storm 8 20000"), "done");
    assert_eq!(v.target.ask("touches 20000"), "touches 320000 20000 16 16");
    v.ok(v.lpkg(&["revert"]));
    assert_eq!(v.target.ask("freed"), "freed 20000");
    assert!(!v.shadow_area());
}

/// `touches K`'s answer: (sum, cells counted, min, max).
fn touches(v: &mut Setup, k: u32) -> (i64, i64, i64, i64) {
    let answer = v.target.ask(&format!("touches {k}"));
    let n: Vec<i64> = answer
        .strip_prefix("touches ")
        .unwrap_or_else(|| panic!("{answer}"))
        .split(' ')
        .map(|x| x.parse().unwrap_or_else(|_| panic!("{answer}")))
        .collect();
    (n[0], n[1], n[2], n[3])
}

#[test]
fn threads_running_through_the_switch_create_shadows_and_lose_no_count() {
    let mut v = Setup::new();
    let fix = v.package(1, 2, &[]);
    // 8 threads touch cells 0..19999 over and over for 4 s, and the package replaces touch()
    // meanwhile: the switch waits for each thread to be outside it; from then on they make
    // the cells' shadows as they come to them.
    v.target.send("storm 8 20000 4000");
    std::thread::sleep(std::time::Duration::from_millis(100));
    v.ok(v.apply(&fix));
    let done = v.target.answer();
    let all: i64 = done
        .strip_prefix("done ")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{done}"));
    let (sum, counted, _, max) = touches(&mut v, 20000);
    assert!(sum > 0 && sum < all, "{sum} of {all} touches counted");
    assert!(counted > 0 && max > 0, "{counted} {max}");
    // Exactly 8 more per cell from now on: no shadow was made twice or lost.
    assert_eq!(v.target.ask("storm 8 20000"), "done");
    let (sum2, counted2, min2, max2) = touches(&mut v, 20000);
    assert_eq!((sum2, counted2, max2), (sum + 160000, 20000, max + 8));
    assert!(min2 >= 8, "{min2}");
}

#[test]
fn stacked_package_reads_the_shadows_of_the_one_it_requires() {
    let mut v = Setup::new();
    let first = v.package(1, 2, &[]);
    let second = v.package(2, 3, &[&first]);
    v.ok(v.apply(&first));
    for _ in 0..2 {
        assert!(v.target.ask("dep 7 1").starts_with("ok"));
    }
    assert_eq!(v.target.ask("report 7"), "deposits n/a");
    v.ok(v.apply(&second));
    // Version 3's report() reads the DEPOSITS shadows version 2's code keeps.
    assert_eq!(v.target.ask("report 7"), "deposits 2");
    assert!(v.target.ask("dep 7 1").starts_with("ok"));
    assert_eq!(v.target.ask("report 7"), "deposits 3");
    assert_eq!(v.target.ask("dep 7 1"), "limit");
    // The first cannot go while the second, built on it, is applied.
    let listed = v.lpkg(&["list", "--json"]).json();
    let first_id = listed[0]["id"].as_str().unwrap().to_owned();
    let refused = v.lpkg(&["revert", "--id", &first_id]);
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    assert!(
        refused.error_line().contains(
            "package vault-fix-3 1 requires package vault-fix-2 1: revert vault-fix-3 first"
        ),
        "{}",
        refused.stderr
    );
    assert_eq!(v.target.ask("report 7"), "deposits 3");
    // The second package gone, the first still uses the area: it stays, shadows and all.
    v.ok(v.lpkg(&["revert"]));
    assert!(v.shadow_area());
    assert_eq!(v.target.ask("report 7"), "deposits n/a");
    assert_eq!(v.target.ask("dep 7 1"), "limit");
    v.ok(v.lpkg(&["revert"]));
    assert!(v.lpkg_mappings().is_empty(), "{:?}", v.lpkg_mappings());
    assert_eq!(v.target.ask("freed"), "freed 1");
}

#[test]
fn check_routine_vetoes_the_apply_and_nothing_changes() {
    let mut v = Setup::new();
    let fix = v.package(1, 4, &[]);
    let inspected =
        v.s.run(&["inspect", "--json", fix.to_str().unwrap()])
            .json();
    assert_eq!(inspected["format_version"], 3, "{inspected}");
    let routines = inspected["routines"].to_string();
    assert!(
        routines.contains("check") && routines.contains("idle"),
        "{routines}"
    );
    assert_eq!(v.target.ask("freeze 2"), "ok");
    assert_eq!(v.target.ask("busy 1"), "ok");
    let maps_before = std::fs::read_to_string(format!("/proc/{}/maps", v.target.pid())).unwrap();
    let refused = v.apply(&fix);
    // Exit 1, not 4 (mismatch): the process may take the package later.
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    assert!(
        refused.error_line().ends_with(
            "check routine idle returned 7: the package was not applied, nothing changed"
        ),
        "{}",
        refused.stderr
    );
    // Nothing changed: no mapping left, no record, the old behaviour.
    let maps_after = std::fs::read_to_string(format!("/proc/{}/maps", v.target.pid())).unwrap();
    assert_eq!(maps_before, maps_after);
    let listed = v.lpkg(&["list"]);
    assert!(!listed.stdout.contains("vault-fix"), "{}", listed.stdout);
    assert_eq!(v.target.ask("freeze 3"), "ok");
    assert_eq!(v.target.ask("dep 2 1"), "ok 1");
    // Once the check passes, the same package applies.
    assert_eq!(v.target.ask("busy 0"), "ok");
    v.ok(v.apply(&fix));
    assert_eq!(v.target.ask("dep 3 1"), "frozen");
    assert_eq!(v.target.ask("freeze 2"), "ok");
    assert_eq!(v.target.ask("dep 3 1"), "frozen");
}

#[test]
fn an_i386_package_carries_the_i386_runtime() {
    let dir = compile_vault("-m32");
    let s = Scratch::new();
    let (key, _) = s.keygen("k");
    let object = |v: u32| dir.path().join(format!("vault{v}.o"));
    let target = dir.path().join("vault");
    let package = s.build(
        &target,
        &object(1),
        &object(2),
        &key,
        "v.lpkg",
        ("v", "1"),
        &[],
    );
    let m = s
        .run(&["inspect", "--json", package.to_str().unwrap()])
        .json();
    assert_eq!(m["format_version"], 3, "{m}");
    assert_eq!(m["target"]["machine"], "i386", "{m}");
    let data = m["data"].to_string();
    assert!(
        data.contains("__lpkg_shadow_table") && data.contains("\"size\":4"),
        "{data}"
    );
    let functions = m["functions"].to_string();
    assert!(
        functions.contains("lpkg runtime: shadow variables"),
        "{functions}"
    );
    // The module is ELF32 i386 throughout: the runtime's code is the 32-bit one.
    let module = Package::from_bytes(&std::fs::read(&package).unwrap())
        .unwrap()
        .module()
        .unwrap()
        .to_vec();
    assert_eq!(&module[..5], b"\x7fELF\x01", "ELF32");
}

#[test]
fn the_daemon_retries_an_apply_a_check_routine_refused_until_it_passes() {
    // A build of its own (another build-id): the daemon patches every process that runs the
    // program it is installed for, and the other tests' targets must stay theirs.
    let dir = tempfile::tempdir().unwrap();
    let program = dir.path().join("vault-daemon");
    let build_id = format!(
        "-Wl,--build-id=0x{}{:08x}",
        "17".repeat(16),
        std::process::id()
    );
    gcc(&[
        "-pie",
        "-pthread",
        &build_id,
        object(1).to_str().unwrap(),
        "-o",
        program.to_str().unwrap(),
    ]);
    let mut v = Setup::running(program);
    let fix = v.package(1, 4, &[]);
    let store = v.s.path("store");
    let trust = v.trust.to_str().unwrap();
    v.ok(v.s.run(&[
        "install",
        fix.to_str().unwrap(),
        "--trust",
        trust,
        "--store",
        store.to_str().unwrap(),
    ]));
    assert_eq!(v.target.ask("freeze 2"), "ok");
    assert_eq!(v.target.ask("busy 1"), "ok");
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_lpkg"))
        .args([
            "daemon",
            "--store",
            store.to_str().unwrap(),
            "--trust",
            trust,
        ])
        .args(["--rescan", "3600"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let log = std::io::BufReader::new(daemon.stdout.take().unwrap());
    let daemon = Killed(daemon);
    let (lines, seen) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(log).map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let pid = format!(" {} ", v.target.pid());
    let wait_for = |what: &str| -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = seen
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("the daemon never logged {what}"));
            if line.contains(&pid) && line.contains(what) {
                return line;
            }
        }
    };
    // Refused by the check, not given up on: retried with backoff while it refuses.
    let failed = wait_for("(attempt 2,");
    assert!(failed.contains("check routine idle returned 7"), "{failed}");
    assert_eq!(v.target.ask("dep 2 1"), "frozen");
    assert_eq!(v.target.ask("freeze 3"), "ok");
    assert_eq!(
        v.target.ask("dep 2 1"),
        "ok 1",
        "still version 1: one frozen account"
    );
    assert_eq!(v.target.ask("busy 0"), "ok");
    wait_for(": applied vault-fix-4 1");
    assert_eq!(v.target.ask("freeze 2"), "ok");
    assert_eq!(v.target.ask("dep 3 1"), "frozen");
    assert_eq!(v.target.ask("dep 2 1"), "frozen");
    drop(daemon);
}

/// A child process SIGKILLed (by PID) and reaped when dropped.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
