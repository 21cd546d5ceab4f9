//! End-to-end tests on live processes: C targets compiled at test time, packages built and
//! applied with the `lpkg` binary, behaviour checked from outside through the target's pipes.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::OnceLock;

use common::{Bits, Run, Scratch};

/// The calc target compiled in three versions (compute = x * (V+1), scale = x + 100 V), once.
struct Calc {
    dir: tempfile::TempDir,
}

fn gcc(args: &[&str]) {
    let out = Command::new("gcc").args(args).output().expect("run gcc");
    assert!(
        out.status.success(),
        "gcc {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Compiles `tests/targets/NAME.c` for `bits` into `NAME1.o`.. `NAMEn.o` (VERSION 1 to n)
/// and links `NAME1.o` into the PIE executable `NAME`, in a new temporary folder.
fn compile_versions_for(bits: Bits, name: &str, versions: u32) -> tempfile::TempDir {
    compile_versions_with(
        name,
        versions,
        &[bits.flag(), "-O2", "-fPIE"],
        &[bits.flag(), "-pie"],
    )
}

/// [`compile_versions_for`] with the compiler flags `compile` (optimisation, code model) and the
/// link flags `link`.
fn compile_versions_with(
    name: &str,
    versions: u32,
    compile: &[&str],
    link: &[&str],
) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/targets/{name}.c"));
    for v in 1..=versions {
        let obj = dir.path().join(format!("{name}{v}.o"));
        let version = format!("-DVERSION={v}");
        let mut args = compile.to_vec();
        args.extend([
            "-g",
            "-ffunction-sections",
            "-fdata-sections",
            &version,
            "-c",
            src.to_str().unwrap(),
            "-o",
            obj.to_str().unwrap(),
        ]);
        gcc(&args);
    }
    let bin = dir.path().join(name);
    let first = dir.path().join(format!("{name}1.o"));
    let mut args = link.to_vec();
    args.extend([
        "-pthread",
        first.to_str().unwrap(),
        "-o",
        bin.to_str().unwrap(),
    ]);
    gcc(&args);
    dir
}

fn calc() -> &'static Calc {
    calc_for(Bits::M64)
}

/// The calc target compiled for `bits`, once per architecture.
fn calc_for(bits: Bits) -> &'static Calc {
    static CALC: [OnceLock<Calc>; 2] = [OnceLock::new(), OnceLock::new()];
    CALC[bits.index()].get_or_init(|| {
        let dir = compile_versions_for(bits, "calc", 3);
        // A second build of the same program: another build-id, for the wrong-target test.
        let other = dir.path().join("calc-other");
        gcc(&[
            bits.flag(),
            "-pie",
            "-pthread",
            "-Wl,--build-id=sha1",
            "-Wl,-z,max-page-size=8192",
            dir.path().join("calc1.o").to_str().unwrap(),
            "-o",
            other.to_str().unwrap(),
        ]);
        Calc { dir }
    })
}

impl Calc {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// A running target; killed (by its PID) when dropped.
struct Target {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Target {
    fn start(program: &Path) -> Target {
        let mut child = Command::new(program)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start target");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Target {
            child,
            stdin,
            stdout,
        }
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }

    fn ask(&mut self, line: &str) -> String {
        writeln!(self.stdin, "{line}").unwrap();
        let mut answer = String::new();
        self.stdout.read_line(&mut answer).unwrap();
        assert!(!answer.is_empty(), "target died answering {line:?}");
        answer.trim_end().to_owned()
    }

    /// Everything an apply may change: the mappings and the bytes of the patched functions.
    fn snapshot(&self, functions: &[(u64, usize)]) -> (String, Vec<Vec<u8>>) {
        let pid = self.child.id() as i32;
        let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
        let code = functions
            .iter()
            .map(|&(a, n)| lpkg_kernel::memory::read(pid, a, n).unwrap())
            .collect();
        (maps, code)
    }

    /// Run-time address and size of a function symbol of the main executable.
    fn function(&self, binary: &Path, name: &str) -> (u64, usize) {
        use object::{Object, ObjectSegment, ObjectSymbol};
        let data = std::fs::read(binary).unwrap();
        let file = object::File::parse(&*data).unwrap();
        let symbol = file.symbols().find(|s| s.name() == Ok(name)).unwrap();
        let pid = self.child.id() as i32;
        let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
        // The binary's first mapping: a patch module may lie below it (anywhere in an i386
        // process's 4 GiB).
        let path = binary.canonicalize().unwrap();
        let first = maps
            .lines()
            .find(|l| l.ends_with(path.to_str().unwrap()))
            .unwrap();
        let start = u64::from_str_radix(first.split('-').next().unwrap(), 16).unwrap();
        // The load bias: 0 for an ET_EXEC file, mapped at its link-time addresses.
        let first_load = file.segments().map(|s| s.address()).min().unwrap() & !0xfff;
        (
            start - first_load + symbol.address(),
            symbol.size() as usize,
        )
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ok(run: Run) -> Run {
    assert_eq!(
        run.code, 0,
        "stdout: {}\nstderr: {}",
        run.stdout, run.stderr
    );
    run
}

/// Builds a package for the calc binary from version `from` to version `to`, stacked on the
/// packages in `requires`.
fn calc_package_on(s: &Scratch, key: &Path, from: u32, to: u32, requires: &[&Path]) -> PathBuf {
    calc_package_for(Bits::M64, s, key, (from, to), requires)
}

/// [`calc_package_on`] for the calc binary compiled for `bits`.
fn calc_package_for(
    bits: Bits,
    s: &Scratch,
    key: &Path,
    (from, to): (u32, u32),
    requires: &[&Path],
) -> PathBuf {
    calc_package_in(calc_for(bits), s, key, (from, to), requires)
}

/// [`calc_package_on`] for the calc binary compiled in `c`.
fn calc_package_in(
    c: &Calc,
    s: &Scratch,
    key: &Path,
    (from, to): (u32, u32),
    requires: &[&Path],
) -> PathBuf {
    let (target, old, new) = (
        c.path("calc"),
        c.path(&format!("calc{from}.o")),
        c.path(&format!("calc{to}.o")),
    );
    let (name, version) = (format!("calc-v{to}"), to.to_string());
    let out = format!("calc-{from}-{to}.lpkg");
    s.build(&target, &old, &new, key, &out, (&name, &version), requires)
}

fn calc_package(s: &Scratch, key: &Path, from: u32, to: u32) -> PathBuf {
    calc_package_on(s, key, from, to, &[])
}

fn apply(s: &Scratch, package: &Path, trust: &Path, target: &Target, extra: &[&str]) -> Run {
    let pid = target.pid();
    let mut args = vec![
        "apply",
        package.to_str().unwrap(),
        "--pid",
        &pid,
        "--trust",
        trust.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    s.run(&args)
}

#[test]
fn apply_changes_behaviour_and_revert_restores_it() {
    apply_changes_behaviour_and_revert_restores_it_for(Bits::M64);
}

#[test]
fn apply_changes_behaviour_and_revert_restores_it_in_i386() {
    apply_changes_behaviour_and_revert_restores_it_for(Bits::M32);
}

fn apply_changes_behaviour_and_revert_restores_it_for(bits: Bits) {
    let s = Scratch::new();
    let (key, public) = s.keygen("release");
    let package = calc_package_for(bits, &s, &key, (1, 2), &[]);
    let mut target = Target::start(&calc_for(bits).path("calc"));
    assert_eq!(target.ask("5"), "10 105");
    let functions = [
        target.function(&calc_for(bits).path("calc"), "compute"),
        target.function(&calc_for(bits).path("calc"), "scale"),
    ];
    let before = target.snapshot(&functions);

    let run = ok(apply(&s, &package, &public, &target, &["--json"]));
    let report = run.json();
    assert_eq!(report["functions"].as_array().unwrap().len(), 2);
    assert_eq!(target.ask("5"), "15 205");

    let list = ok(s.run(&["list", "--pid", &target.pid(), "--json"])).json();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["state"], "applied");
    assert_eq!(list[0]["name"], "calc-v2");

    // The same package twice is refused as a mismatch (exit 4), and changes nothing.
    let again = apply(&s, &package, &public, &target, &[]);
    assert_eq!(again.code, 4, "{}", again.stderr);
    assert!(again.stderr.contains("already applied"), "{}", again.stderr);

    ok(s.run(&["revert", "--pid", &target.pid()]));
    assert_eq!(target.ask("5"), "10 105");
    assert_eq!(
        target.snapshot(&functions),
        before,
        "revert must leave no byte and no mapping behind"
    );
    let list = ok(s.run(&["list", "--pid", &target.pid(), "--json"])).json();
    assert!(list.as_array().unwrap().is_empty());
}

#[test]
fn refusals_leave_the_target_exactly_as_it_was() {
    refusals_leave_the_target_exactly_as_it_was_for(Bits::M64);
}

#[test]
fn refusals_leave_an_i386_target_exactly_as_it_was() {
    refusals_leave_the_target_exactly_as_it_was_for(Bits::M32);
}

fn refusals_leave_the_target_exactly_as_it_was_for(bits: Bits) {
    let s = Scratch::new();
    let (key, public) = s.keygen("release");
    let (_, stranger) = s.keygen("stranger");
    let package = calc_package_for(bits, &s, &key, (1, 2), &[]);
    let mut target = Target::start(&calc_for(bits).path("calc"));
    assert_eq!(target.ask("3"), "6 103");
    let compute = target.function(&calc_for(bits).path("calc"), "compute");
    let functions = [
        compute,
        target.function(&calc_for(bits).path("calc"), "scale"),
    ];
    let before = target.snapshot(&functions);
    let check_untouched = |target: &mut Target, what: &str| {
        assert_eq!(
            target.snapshot(&functions),
            before,
            "{what} changed the target"
        );
        assert_eq!(target.ask("3"), "6 103", "{what} changed the behaviour");
    };

    // Signed by a key the field engineer does not trust.
    let run = apply(&s, &package, &stranger, &target, &[]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(
        run.stderr.contains("unknown signer") || run.stderr.contains("trusted"),
        "{}",
        run.stderr
    );
    check_untouched(&mut target, "an untrusted package");

    // Tampered with after signing.
    let mut bytes = std::fs::read(&package).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    let tampered = s.path("tampered.lpkg");
    std::fs::write(&tampered, &bytes).unwrap();
    let run = apply(&s, &tampered, &public, &target, &[]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    check_untouched(&mut target, "a tampered package");

    // Built for another binary (another build-id).
    let mut other = Target::start(&calc_for(bits).path("calc-other"));
    assert_eq!(other.ask("3"), "6 103");
    let run = apply(&s, &package, &public, &other, &[]);
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert!(run.stderr.contains("build-id"), "{}", run.stderr);

    // Built for another machine: the same package, its manifest saying aarch64, signed anew.
    let foreign_path = s.resigned(&package, &key, "aarch64.lpkg", |m| {
        m.target.machine = "aarch64".into()
    });
    let run = apply(&s, &foreign_path, &public, &target, &[]);
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert!(run.stderr.contains("for aarch64"), "{}", run.stderr);
    check_untouched(&mut target, "a package for another machine");

    // Someone else changed compute(): the pre-image no longer matches.
    let pid = target.child.id() as i32;
    let (address, size) = compute;
    let original = lpkg_kernel::memory::read(pid, address + size as u64 - 1, 1).unwrap();
    lpkg_kernel::memory::write(pid, address + size as u64 - 1, &[0xcc]).unwrap();
    let run = apply(&s, &package, &public, &target, &[]);
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert!(
        run.stderr.contains("someone else changed"),
        "{}",
        run.stderr
    );
    lpkg_kernel::memory::write(pid, address + size as u64 - 1, &original).unwrap();
    check_untouched(&mut target, "a changed pre-image");

    // A thread never leaves compute(): apply gives up after --timeout, naming the thread.
    assert_eq!(target.ask("park"), "parked");
    let before_parked = target.snapshot(&functions);
    let run = apply(&s, &package, &public, &target, &["--timeout", "1"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("compute"), "{}", run.stderr);
    assert!(
        run.stderr.contains("calc"),
        "the busy thread's name should be given: {}",
        run.stderr
    );
    assert_eq!(
        target.snapshot(&functions),
        before_parked,
        "a timed-out apply changed the target"
    );
    assert_eq!(target.ask("3"), "6 103");

    // A process that does not exist.
    let run = s.run(&[
        "apply",
        package.to_str().unwrap(),
        "--pid",
        "2147483647",
        "--trust",
        public.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("2147483647"), "{}", run.stderr);
}

#[test]
fn stacked_packages_revert_newest_first() {
    stacked_packages_revert_newest_first_for(Bits::M64);
}

#[test]
fn stacked_packages_revert_newest_first_in_i386() {
    stacked_packages_revert_newest_first_for(Bits::M32);
}

fn stacked_packages_revert_newest_first_for(bits: Bits) {
    let s = Scratch::new();
    let (key, public) = s.keygen("release");
    let first = calc_package_for(bits, &s, &key, (1, 2), &[]);
    let second = calc_package_for(bits, &s, &key, (2, 3), &[&first]);
    let mut target = Target::start(&calc_for(bits).path("calc"));
    assert_eq!(target.ask("5"), "10 105");
    // The second package needs the first one in place.
    let run = apply(&s, &second, &public, &target, &[]);
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert!(run.stderr.contains("requires calc-v2"), "{}", run.stderr);
    assert_eq!(target.ask("5"), "10 105");
    ok(apply(&s, &first, &public, &target, &[]));
    assert_eq!(target.ask("5"), "15 205");
    ok(apply(&s, &second, &public, &target, &[]));
    assert_eq!(target.ask("5"), "20 305");

    let list = ok(s.run(&["list", "--pid", &target.pid(), "--json"])).json();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["calc-v2", "calc-v3"]);

    // The older package cannot go while the newer one patches the same functions.
    let older = list[0]["id"].as_str().unwrap();
    let run = s.run(&["revert", "--pid", &target.pid(), "--id", older]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("first"), "{}", run.stderr);
    assert_eq!(target.ask("5"), "20 305");

    ok(s.run(&["revert", "--pid", &target.pid()]));
    assert_eq!(
        target.ask("5"),
        "15 205",
        "reverting the newest restores the previous version"
    );
    ok(s.run(&["revert", "--pid", &target.pid()]));
    assert_eq!(target.ask("5"), "10 105");
}

#[test]
fn apply_and_revert_a_hundred_times_on_a_busy_multithreaded_target() {
    apply_and_revert_a_hundred_times_on_a_busy_multithreaded_target_for(Bits::M64);
}

#[test]
fn apply_and_revert_a_hundred_times_on_a_busy_multithreaded_i386_target() {
    apply_and_revert_a_hundred_times_on_a_busy_multithreaded_target_for(Bits::M32);
}

fn apply_and_revert_a_hundred_times_on_a_busy_multithreaded_target_for(bits: Bits) {
    let s = Scratch::new();
    let (key, public) = s.keygen("release");
    let package = std::fs::read(calc_package_for(bits, &s, &key, (1, 2), &[])).unwrap();
    let trust = lpkg_format::TrustStore::from_path(&public).unwrap();
    let mut target = Target::start(&calc_for(bits).path("calc"));
    assert_eq!(target.ask("threads 8"), "started 8");
    let pid = target.child.id() as i32;
    let maps_before = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let options = lpkg_applier::ApplyOptions::default();
    for round in 0..100 {
        lpkg_applier::apply(pid, &package, &trust, &options)
            .unwrap_or_else(|e| panic!("apply {round}: {e}"));
        assert_eq!(target.ask("4"), "12 204", "round {round}");
        lpkg_applier::revert(pid, &lpkg_applier::Selection::Latest, options.timeout)
            .unwrap_or_else(|e| panic!("revert {round}: {e}"));
        assert_eq!(target.ask("4"), "8 104", "round {round}");
    }
    let maps_after = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    assert_eq!(
        maps_before, maps_after,
        "leftover mappings after 100 rounds"
    );
}

/// The in_place list of `lpkg apply --json`: the functions whose new code went in place.
fn in_place(report: &serde_json::Value) -> Vec<&str> {
    report["functions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["in_place"] == true)
        .map(|f| f["name"].as_str().unwrap())
        .collect()
}

#[test]
fn new_code_goes_in_place_only_where_nothing_else_can_lead_into_it() {
    new_code_goes_in_place_only_where_nothing_else_can_lead_into_it_for(Bits::M64);
}

#[test]
fn new_code_goes_in_place_only_where_nothing_else_can_lead_into_it_in_i386() {
    new_code_goes_in_place_only_where_nothing_else_can_lead_into_it_for(Bits::M32);
}

fn new_code_goes_in_place_only_where_nothing_else_can_lead_into_it_for(bits: Bits) {
    let s = Scratch::new();
    let (key, public) = s.keygen("release");
    let shapes = compile_versions_for(bits, "shapes", 2);
    let path = |name: &str| shapes.path().join(name);
    let package = s.path("shapes.lpkg");
    ok(s.run(&[
        "build",
        "--target",
        path("shapes").to_str().unwrap(),
        "--old",
        path("shapes1.o").to_str().unwrap(),
        "--new",
        path("shapes2.o").to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
        "-o",
        package.to_str().unwrap(),
    ]));
    let mut target = Target::start(&path("shapes"));
    // same(x) = 3x + V, grow(x) = x + 1 then a loop, calls(x) = (x ^ 0x55) + V,
    // framed(x) = a loop + 1 then (x ^ 0x55) + 2.
    assert_eq!(target.ask("4"), "13 5 82 5");
    let functions: Vec<_> = ["same", "grow", "calls", "framed"]
        .iter()
        .map(|f| target.function(&path("shapes"), f))
        .collect();
    let before = target.snapshot(&functions);

    let report = ok(apply(&s, &package, &public, &target, &["--json"])).json();
    // grow's fix does not fit, calls calls, framed's fix needs a stack frame the old had not.
    assert_eq!(in_place(&report), ["same"], "{report}");
    let because = |name: &str| {
        let functions = report["functions"].as_array().unwrap();
        let function = functions.iter().find(|f| f["name"] == name).unwrap();
        function["jump_because"].as_str().unwrap_or("").to_owned()
    };
    assert!(because("same").is_empty(), "{report}");
    assert!(because("grow").contains("does not fit"), "{report}");
    assert!(because("calls").contains("calls or jumps out"), "{report}");
    assert!(
        because("framed").contains("stack frame differs"),
        "{report}"
    );
    assert_eq!(target.ask("4"), "14 3698190 83 83");
    let (same, _) = functions[0];
    let pid = target.child.id() as i32;
    let entry = lpkg_kernel::memory::read(pid, same, 1).unwrap();
    assert_ne!(entry[0], 0xe9, "same() starts with a jump");
    let list = ok(s.run(&["list", "--pid", &target.pid()]));
    assert!(list.stdout.contains("same at"), "{}", list.stdout);
    assert!(list.stdout.contains("(in place)"), "{}", list.stdout);
    assert!(list.stdout.contains("(jump)"), "{}", list.stdout);

    ok(s.run(&["revert", "--pid", &target.pid()]));
    assert_eq!(target.ask("4"), "13 5 82 5");
    assert_eq!(target.snapshot(&functions), before);

    // --jump-only: a jump for every function.
    let report = ok(apply(
        &s,
        &package,
        &public,
        &target,
        &["--json", "--jump-only"],
    ))
    .json();
    assert!(in_place(&report).is_empty(), "{report}");
    let jumps = report["functions"].as_array().unwrap();
    assert!(
        jumps.iter().all(|f| f["jump_because"] == "--jump-only"),
        "{report}"
    );
    assert_eq!(lpkg_kernel::memory::read(pid, same, 1).unwrap(), [0xe9]);
    assert_eq!(target.ask("4"), "14 3698190 83 83");
    ok(s.run(&["revert", "--pid", &target.pid()]));
    assert_eq!(target.snapshot(&functions), before);
}

#[test]
fn revert_waits_for_a_thread_inside_new_code_written_in_place() {
    revert_waits_for_a_thread_inside_new_code_written_in_place_of(calc());
}

/// A non-PIE i386 calc: its PIE compute() reaches `parked` through `__x86.get_pc_thunk.*`, a
/// call out of itself that keeps its new code from going in place; here it is an absolute
/// address.
#[test]
fn revert_waits_for_an_i386_thread_inside_new_code_written_in_place() {
    let calc = Calc {
        dir: compile_versions_with(
            "calc",
            2,
            &["-m32", "-O2", "-fno-pie"],
            &["-m32", "-no-pie"],
        ),
    };
    revert_waits_for_a_thread_inside_new_code_written_in_place_of(&calc);
}

fn revert_waits_for_a_thread_inside_new_code_written_in_place_of(calc: &Calc) {
    let s = Scratch::new();
    let (key, public) = s.keygen("release");
    let package = calc_package_in(calc, &s, &key, (1, 2), &[]);
    let mut target = Target::start(&calc.path("calc"));
    let report = ok(apply(&s, &package, &public, &target, &["--json"])).json();
    assert_eq!(in_place(&report), ["compute", "scale"], "{report}");
    // A thread spins inside the new compute(), written where the old one was.
    assert_eq!(target.ask("park"), "parked");
    let functions = [
        target.function(&calc.path("calc"), "compute"),
        target.function(&calc.path("calc"), "scale"),
    ];
    let patched = target.snapshot(&functions);
    let run = s.run(&["revert", "--pid", &target.pid(), "--timeout", "1"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("compute"), "{}", run.stderr);
    assert!(run.stderr.contains("in place"), "{}", run.stderr);
    assert_eq!(
        target.snapshot(&functions),
        patched,
        "a refused revert changed code"
    );
    assert_eq!(target.ask("5"), "15 205");
}

#[test]
fn examples_run_end_to_end() {
    examples_run_end_to_end_for(Bits::M64);
}

#[test]
fn examples_run_end_to_end_for_i386() {
    examples_run_end_to_end_for(Bits::M32);
}

fn examples_run_end_to_end_for(bits: Bits) {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    for example in [
        "table-server",
        "worker-pool",
        "shared-library",
        "cxx-exceptions",
    ] {
        let out = Command::new("bash")
            .arg(examples.join(example).join("run.sh"))
            .env("LPKG", env!("CARGO_BIN_EXE_lpkg"))
            .env("LPKG_EXAMPLE_M", bits.flag())
            .output()
            .expect("run example");
        assert!(
            out.status.success(),
            "{example} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn inspect_disasm_shows_old_and_new_code_side_by_side() {
    let s = Scratch::new();
    let (key, public) = s.keygen("release");
    let package = calc_package(&s, &key, 1, 2);
    let (pkg, trust, bin) = (
        package.to_str().unwrap(),
        public.to_str().unwrap(),
        calc().path("calc"),
    );
    let run = ok(s.run(&[
        "inspect",
        pkg,
        "--trust",
        trust,
        "--disasm",
        "--target",
        bin.to_str().unwrap(),
        "--json",
    ]));
    let listings = run.json()["disasm"].as_array().unwrap().clone();
    let compute = listings
        .iter()
        .find(|l| l["name"] == "compute")
        .expect("compute listed");
    let old: Vec<&str> = compute["old"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    let new: Vec<&str> = compute["new"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert!(
        old.iter().any(|l| l.ends_with("ret")) && new.iter().any(|l| l.ends_with("ret")),
        "{old:?} {new:?}"
    );
    assert_ne!(old, new, "version 1 and 2 of compute differ");

    let run = ok(s.run(&["inspect", pkg, "--trust", trust, "--disasm"]));
    assert!(
        run.stdout.contains("old (target)") && run.stdout.contains("give --target"),
        "{}",
        run.stdout
    );
    // A binary that is not the package's target: said so, not shown as if it were.
    let other = calc().path("calc-other");
    let run = ok(s.run(&[
        "inspect",
        pkg,
        "--trust",
        trust,
        "--disasm",
        "--target",
        other.to_str().unwrap(),
    ]));
    assert!(
        run.stdout.contains("does not hold the old code"),
        "{}",
        run.stdout
    );
}

/// `lpkg apply` killed after mapping its module and before recording it leaves an unrecorded
/// module: `lpkg list` shows it (text and JSON), and `lpkg revert` removes it.
#[test]
fn list_shows_a_module_left_by_a_killed_apply_and_revert_removes_it() {
    list_shows_a_module_left_by_a_killed_apply_and_revert_removes_it_for(Bits::M64);
}

#[test]
fn list_shows_a_module_left_by_a_killed_apply_in_i386_and_revert_removes_it() {
    list_shows_a_module_left_by_a_killed_apply_and_revert_removes_it_for(Bits::M32);
}

fn list_shows_a_module_left_by_a_killed_apply_and_revert_removes_it_for(bits: Bits) {
    let s = Scratch::new();
    let (key, public) = s.keygen("release");
    let package = calc_package_for(bits, &s, &key, (1, 2), &[]);
    let mut target = Target::start(&calc_for(bits).path("calc"));
    assert_eq!(target.ask("5"), "10 105");

    let mut applier = Command::new(env!("CARGO_BIN_EXE_lpkg"))
        .args(["apply", package.to_str().unwrap(), "--pid", &target.pid()])
        .arg("--trust")
        .arg(&public)
        .env(lpkg_applier::checkpoint::PAUSE_VAR, "apply:mapped")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(applier.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert_eq!(line.trim_end(), "lpkg: paused at apply:mapped");
    applier.kill().unwrap(); // by PID: our own child
    applier.wait().unwrap();
    assert_eq!(target.ask("5"), "10 105", "nothing switched yet");

    let list = ok(s.run(&["list", "--pid", &target.pid(), "--json"])).json();
    let list = list.as_array().unwrap();
    // The module, then the record mapped with it and not written yet.
    assert_eq!(list.len(), 2, "{list:?}");
    for (entry, unwritten_record) in list.iter().zip([false, true]) {
        assert_eq!(entry["state"], "unrecorded module");
        assert_eq!(entry["interrupted"], true);
        assert_eq!(entry["unwritten_record"], unwritten_record);
        assert!(entry["module_len"].as_u64().unwrap() > 0);
    }
    let text = ok(s.run(&["list", "--pid", &target.pid()]));
    assert!(text.stdout.contains("unrecorded module"), "{}", text.stdout);

    ok(s.run(&["revert", "--pid", &target.pid()]));
    let list = ok(s.run(&["list", "--pid", &target.pid(), "--json"])).json();
    assert!(list.as_array().unwrap().is_empty(), "{list:?}");
    assert_eq!(target.ask("5"), "10 105");
    // The package applies cleanly afterwards.
    ok(apply(&s, &package, &public, &target, &[]));
    assert_eq!(target.ask("5"), "15 205");
}

/// Starts `lpkg apply` of `package` with `LPKG_TEST_PAUSE_AT=apply:recorded` and SIGKILLs it
/// (by its PID: our own child) once it says it paused there: the record is written in state
/// `loading` and nothing is switched, as when lpkg is killed while it waits for a busy thread.
fn kill_apply_while_loading(package: &Path, trust: &Path, target: &Target) {
    let mut applier = Command::new(env!("CARGO_BIN_EXE_lpkg"))
        .args(["apply", package.to_str().unwrap(), "--pid", &target.pid()])
        .arg("--trust")
        .arg(trust)
        .env(lpkg_applier::checkpoint::PAUSE_VAR, "apply:recorded")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(applier.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert_eq!(line.trim_end(), "lpkg: paused at apply:recorded");
    applier.kill().unwrap();
    applier.wait().unwrap();
}

/// The lines of `/proc/PID/maps` naming an lpkg mapping (a record or a module).
fn lpkg_mappings(target: &Target) -> Vec<String> {
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", target.pid())).unwrap();
    maps.lines()
        .filter(|l| l.contains("lpkg"))
        .map(str::to_owned)
        .collect()
}

/// A user trial: lpkg killed while its record is `loading`, with a thread spinning in the old
/// compute(), which the package replaces in place. Nothing was written, so cleaning up needs
/// every thread clear of the module only; revert and the next apply used to wait for the
/// thread to leave compute() as if it ran the new code in place, and failed at their timeout
/// leaving the record and the module in the process. `lpkg list` said `(in place)` of
/// functions it never wrote.
#[test]
fn a_loading_record_is_cleaned_up_while_a_thread_runs_the_old_code() {
    a_loading_record_is_cleaned_up_while_a_thread_runs_the_old_code_of(calc());
}

/// The same in an i386 process: a non-PIE calc, whose compute() goes in place (see
/// `revert_waits_for_an_i386_thread_inside_new_code_written_in_place`).
#[test]
fn a_loading_record_is_cleaned_up_while_an_i386_thread_runs_the_old_code() {
    let calc = Calc {
        dir: compile_versions_with(
            "calc",
            2,
            &["-m32", "-O2", "-fno-pie"],
            &["-m32", "-no-pie"],
        ),
    };
    a_loading_record_is_cleaned_up_while_a_thread_runs_the_old_code_of(&calc);
}

fn a_loading_record_is_cleaned_up_while_a_thread_runs_the_old_code_of(calc: &Calc) {
    let s = Scratch::new();
    let (key, public) = s.keygen("release");
    let package = calc_package_in(calc, &s, &key, (1, 2), &[]);
    let mut target = Target::start(&calc.path("calc"));
    // compute() is what the package puts in place; the thread never leaves the old one.
    assert_eq!(target.ask("park"), "parked");
    assert_eq!(target.ask("5"), "10 105");
    let functions = [
        target.function(&calc.path("calc"), "compute"),
        target.function(&calc.path("calc"), "scale"),
    ];
    let before = target.snapshot(&functions);

    kill_apply_while_loading(&package, &public, &target);
    assert_eq!(target.ask("5"), "10 105", "nothing switched");
    // What revert must leave: the maps without lpkg's (a killed apply may leave the page its
    // calls return through, anonymous).
    let (maps, code) = target.snapshot(&functions);
    assert_eq!(code, before.1, "nothing written");
    let cleaned: String = (maps.lines())
        .filter(|l| !l.contains("lpkg"))
        .map(|l| format!("{l}\n"))
        .collect();
    let list = ok(s.run(&["list", "--pid", &target.pid(), "--json"])).json();
    let record = &list.as_array().unwrap()[..];
    assert_eq!(record.len(), 1, "{list}");
    assert_eq!(record[0]["state"], "interrupted (loading)", "{list}");
    assert_eq!(record[0]["interrupted"], true, "{list}");
    // Nothing of it was written: no function is said to be in place.
    assert_eq!(record[0]["in_place"], serde_json::json!([]), "{list}");
    for entry in record[0]["entries"].as_array().unwrap() {
        assert_eq!(entry["how"], "not switched", "{list}");
    }
    let text = ok(s.run(&["list", "--pid", &target.pid()]));
    assert!(
        text.stdout.contains("interrupted (loading)"),
        "{}",
        text.stdout
    );
    assert!(text.stdout.contains("compute at"), "{}", text.stdout);
    assert!(text.stdout.contains("(not switched)"), "{}", text.stdout);
    assert!(!text.stdout.contains("in place"), "{}", text.stdout);
    // Revert cleans it up at once, the thread still spinning in the old compute().
    let run = ok(s.run(&["revert", "--pid", &target.pid(), "--timeout", "5"]));
    assert!(
        run.stdout.contains("interrupted (loading)"),
        "{}",
        run.stdout
    );
    assert_eq!(lpkg_mappings(&target), Vec::<String>::new());
    assert_eq!(
        target.snapshot(&functions),
        (cleaned, before.1.clone()),
        "the revert of a loading record must leave no byte and no mapping of lpkg behind"
    );
    assert_eq!(target.ask("5"), "10 105");

    // So does the recovery at the start of a new apply; the apply itself then waits for the
    // thread in the old compute() (not "the new code"), and gives up at its timeout.
    kill_apply_while_loading(&package, &public, &target);
    let run = apply(&s, &package, &public, &target, &["--timeout", "1"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("executing compute"), "{}", run.stderr);
    assert!(!run.stderr.contains("new code"), "{}", run.stderr);
    assert_eq!(lpkg_mappings(&target), Vec::<String>::new());
    let list = ok(s.run(&["list", "--pid", &target.pid(), "--json"])).json();
    assert_eq!(list, serde_json::json!([]));
    assert_eq!(target.snapshot(&functions).1, before.1, "code changed");
    assert_eq!(target.ask("5"), "10 105");

    // Once the thread leaves compute(), the package applies.
    let (parked, _) = target.function(&calc.path("calc"), "parked");
    let pid = target.child.id() as i32;
    lpkg_kernel::memory::write(pid, parked, &0i32.to_le_bytes()).unwrap();
    kill_apply_while_loading(&package, &public, &target);
    let run = ok(apply(&s, &package, &public, &target, &["--json"]));
    let report = run.json();
    assert_eq!(report["recovered"].as_array().unwrap().len(), 1, "{report}");
    assert_eq!(in_place(&report), ["compute", "scale"], "{report}");
    assert_eq!(target.ask("5"), "15 205");
    ok(s.run(&["revert", "--pid", &target.pid()]));
    assert_eq!(target.ask("5"), "10 105");
    assert_eq!(lpkg_mappings(&target), Vec::<String>::new());
}

/// Issue 19 (3): names and records an unprivileged target makes itself are printed escaped
/// and never make lpkg panic: a module memfd whose id is one character (apply's report of
/// what it cleaned up sliced it), a record whose id has a multibyte character across byte 16
/// and whose name carries a newline and a terminal escape (list and revert sliced and printed
/// them raw).
#[test]
fn target_made_names_and_records_never_panic_and_print_escaped() {
    let s = Scratch::new();
    let (key, public) = s.keygen("release");
    let package = calc_package(&s, &key, 1, 2);
    let mut target = Target::start(&calc().path("calc"));
    assert_eq!(target.ask("3"), "6 103");
    let pid = target.child.id() as i32;
    // What the target could do itself: a memfd mapping named like an lpkg module.
    let mut t = lpkg_kernel::Tracee::seize(pid).unwrap();
    t.stop().unwrap();
    t.memfd_map_private("lpkg-module:x", 4096).unwrap();
    t.detach().unwrap();
    let run = apply(&s, &package, &public, &target, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout
            .contains("rolled back an interrupted operation of package x\n"),
        "{}",
        run.stdout
    );
    assert_eq!(target.ask("3"), "9 203");
    ok(s.run(&["revert", "--pid", &target.pid()]));

    // A forged record: its id has `€` (3 bytes) across byte 16, its name a newline and ESC.
    let body = lpkg_applier::RecordBody {
        id: format!("{}€{}", "a".repeat(15), "b".repeat(46)),
        name: "evil\nname\u{1b}[31m".into(),
        version: "1".into(),
        signers: vec!["0011223344556677".into()],
        applied_at: 0,
        sequence: 1,
        target_path: "/x".into(),
        module_address: 0,
        module_len: 0,
        eh_frame_address: 0,
        eh_frame_len: 0,
        unwind_registration: None,
        llvm_registration: None,
        exit_routines: vec![],
        shadows: false,
        requires: vec![],
        entries: vec![],
    };
    let record = body.encode(lpkg_applier::State::Applied);
    let mut t = lpkg_kernel::Tracee::seize(pid).unwrap();
    t.stop().unwrap();
    let at = t.memfd_map_private("lpkg:aaaaaaaaaaaaaaaa", 4096).unwrap();
    lpkg_kernel::memory::write(pid, at, &record).unwrap();
    t.detach().unwrap();
    let run = s.run(&["list", "--pid", &target.pid()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains("evil\\nname\\u{1b}[31m"),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains('\u{1b}'), "{}", run.stdout);
    let run = s.run(&["revert", "--pid", &target.pid(), "--all"]);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    assert_eq!(target.ask("3"), "6 103");
}

/// Issue 19 (9): a `--timeout` too large for the clock waits as long as anything can, instead
/// of panicking half-way through the apply.
#[test]
fn a_huge_timeout_saturates() {
    let s = Scratch::new();
    let (key, public) = s.keygen("release");
    let package = calc_package(&s, &key, 1, 2);
    let mut target = Target::start(&calc().path("calc"));
    let huge = u64::MAX.to_string();
    let run = apply(&s, &package, &public, &target, &["--timeout", &huge]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(target.ask("3"), "9 203");
    ok(s.run(&["revert", "--pid", &target.pid(), "--timeout", &huge]));
    assert_eq!(target.ask("3"), "6 103");
}

/// The first function a manifest replaces.
fn replaced(m: &mut lpkg_format::Manifest) -> &mut lpkg_format::Function {
    m.functions
        .iter_mut()
        .find(|f| f.action == lpkg_format::Action::Replace)
        .unwrap()
}

/// Issue 19 (12): a trusted signer's manifest is not trusted for sizes. An old size of 2^62
/// aborted apply on allocation; a new size of i64::MAX applied and could never be reverted
/// (its guarded range covered everything). Both are refused (exit 4), the target untouched.
#[test]
fn absurd_sizes_in_a_signed_manifest_are_refused() {
    let s = Scratch::new();
    let (key, public) = s.keygen("release");
    let package = calc_package(&s, &key, 1, 2);
    let mut target = Target::start(&calc().path("calc"));
    assert_eq!(target.ask("3"), "6 103");
    let huge_old = s.resigned(&package, &key, "old.lpkg", |m| {
        let f = replaced(m);
        f.old_size = Some(1 << 62);
        f.old_room = f.old_room.map(|_| 1 << 62);
    });
    let huge_new = s.resigned(&package, &key, "new.lpkg", |m| {
        replaced(m).new_size = i64::MAX as u64
    });
    // The padding a jump or new code may use lies in the target's code too.
    let huge_room = s.resigned(&package, &key, "room.lpkg", |m| {
        replaced(m).old_room = Some(1 << 40)
    });
    let cases = [
        (&huge_old, "old code"),
        (&huge_new, "new code"),
        (&huge_room, "old code"),
    ];
    for (bad, what) in cases {
        let run = apply(&s, bad, &public, &target, &[]);
        assert_eq!(run.code, 4, "{}", run.stderr);
        assert!(
            run.stderr.contains(what) && run.stderr.contains("not inside"),
            "{}",
            run.stderr
        );
        assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
        assert_eq!(target.ask("3"), "6 103");
        let list = s.run(&["list", "--pid", &target.pid()]);
        assert!(list.stdout.contains("no lpkg package"), "{}", list.stdout);
    }
}

/// Issue 19 (11): a lower version of a package applied over a higher one of the same name is
/// refused (it would make older code live again), unless `--allow-downgrade`.
#[test]
fn a_lower_version_over_a_higher_one_is_refused_unless_asked() {
    let s = Scratch::new();
    let (key, public) = s.keygen("release");
    let package = calc_package(&s, &key, 1, 2);
    let older = s.resigned(&package, &key, "older.lpkg", |m| {
        m.package.version = "1.9".into()
    });
    let mut target = Target::start(&calc().path("calc"));
    ok(apply(&s, &package, &public, &target, &[]));
    let run = apply(&s, &older, &public, &target, &[]);
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert!(run.stderr.contains("lower version 1.9"), "{}", run.stderr);
    assert_eq!(target.ask("3"), "9 203");
    ok(apply(&s, &older, &public, &target, &["--allow-downgrade"]));
    ok(s.run(&["revert", "--pid", &target.pid(), "--all"]));
    assert_eq!(target.ask("3"), "6 103");
}

/// Issue 19 (4): a record the target forged, naming the genuine package as applied, is shown
/// as not borne out by the live code, and never blocks the genuine package's apply.
#[test]
fn a_forged_record_is_shown_not_live_and_blocks_nothing() {
    let s = Scratch::new();
    let (key, public) = s.keygen("release");
    let package = calc_package(&s, &key, 1, 2);
    let id = s
        .run(&["inspect", package.to_str().unwrap(), "--json"])
        .json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut target = Target::start(&calc().path("calc"));
    assert_eq!(target.ask("3"), "6 103");
    let pid = target.child.id() as i32;
    let (compute, size) = target.function(&calc().path("calc"), "compute");
    let body = lpkg_applier::RecordBody {
        id: id.clone(),
        name: "calc-v2".into(),
        version: "2".into(),
        signers: vec!["0011223344556677".into()],
        applied_at: 0,
        sequence: 1,
        target_path: "/x".into(),
        module_address: 0,
        module_len: 0,
        eh_frame_address: 0,
        eh_frame_len: 0,
        unwind_registration: None,
        llvm_registration: None,
        exit_routines: vec![],
        shadows: false,
        requires: vec![],
        entries: vec![lpkg_applier::Entry {
            function: "compute".into(),
            address: compute,
            size: size as u64,
            original: "0000000000".into(),
            new_address: compute + 0x1000,
            new_size: 16,
            in_place: None,
            call_sites: vec![],
        }],
    };
    let record = body.encode(lpkg_applier::State::Applied);
    let mut t = lpkg_kernel::Tracee::seize(pid).unwrap();
    t.stop().unwrap();
    let at = t
        .memfd_map_private(&format!("lpkg:{}", &id[..16]), 4096)
        .unwrap();
    lpkg_kernel::memory::write(pid, at, &record).unwrap();
    t.detach().unwrap();

    let run = ok(s.run(&["list", "--pid", &target.pid()]));
    assert!(
        run.stdout
            .contains("applied but NOT LIVE: the code of compute"),
        "{}",
        run.stdout
    );
    let listed = ok(s.run(&["list", "--pid", &target.pid(), "--json"])).json();
    assert_eq!(listed[0]["live"], "drifted");
    assert_eq!(listed[0]["drifted"], serde_json::json!(["compute"]));

    let run = ok(apply(&s, &package, &public, &target, &[]));
    assert!(run.stdout.contains("applied calc-v2 2"), "{}", run.stdout);
    assert_eq!(target.ask("3"), "9 203");
    let listed = ok(s.run(&["list", "--pid", &target.pid(), "--json"])).json();
    let live: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["live"].as_str().unwrap())
        .collect();
    assert_eq!(live, ["drifted", "intact"]);
    // `revert --id` finds both records of the id: the one the code bears out is reverted.
    let run = ok(s.run(&["revert", "--pid", &target.pid(), "--id", &id]));
    assert!(run.stdout.contains("reverted calc-v2 2"), "{}", run.stdout);
    assert_eq!(target.ask("3"), "6 103");
    // The forged record is left: reverting it is refused, saying why.
    let pid = target.pid();
    for args in [&["--id", &id][..], &[], &["--all"]] {
        let mut command = vec!["revert", "--pid", &pid];
        command.extend(args);
        let run = s.run(&command);
        assert_ne!(run.code, 0, "{}", run.stdout);
        assert!(run.stderr.contains("disagree"), "{}", run.stderr);
    }
    assert_eq!(target.ask("3"), "6 103");
}

/// The short target (tests/targets/short.c) built with `compile` and `link` flags, and packages of its fixes
/// from version 1 to each of `to`.
fn short_target(
    s: &Scratch,
    key: &Path,
    (compile, link): (&[&str], &[&str]),
    to: &[u32],
) -> (tempfile::TempDir, Vec<PathBuf>) {
    let dir = compile_versions_with("short", 5, compile, link);
    let path = |name: &str| dir.path().join(name);
    let packages = to
        .iter()
        .map(|v| {
            let (new, out) = (format!("short{v}.o"), format!("short-{v}.lpkg"));
            let name = (format!("short-v{v}"), v.to_string());
            s.build(
                &path("short"),
                &path("short1.o"),
                &path(&new),
                key,
                &out,
                (&name.0, &name.1),
                &[],
            )
        })
        .collect();
    (dir, packages)
}

/// The functions of 1, 2, 3 and 4 bytes of the short target, by name.
const SHORT: [(&str, u64); 4] = [("one", 1), ("two", 2), ("three", 3), ("four", 4)];

/// Checks that `inspect --json` of a short-target package lists each of [`SHORT`] with its
/// size and `entry`.
fn check_short_sizes(inspect: &serde_json::Value, entry: &str) {
    let functions = inspect["functions"].as_array().unwrap();
    for (name, size) in SHORT {
        let f = functions.iter().find(|f| f["name"] == name).unwrap();
        assert_eq!(f["old_size"], size, "{name}: {inspect}");
        assert_eq!(f["entry"], entry, "{name}: {inspect}");
    }
}

/// Applies `package` (with `extra` flags) to a fresh short target while a thread calls every
/// function in a tight loop; checks how each function was patched (`how`), the answers
/// before (`old`) and after (`new`), then reverts and checks that every byte it may have
/// written (the functions with what follows them, their callers) and every mapping is back.
fn patch_short_functions_live(
    s: &Scratch,
    (binary, package, public): (&Path, &Path, &Path),
    extra: &[&str],
    how: &[(&str, &str)],
    (old, new): (&str, &str),
) {
    let mut target = Target::start(binary);
    assert_eq!(target.ask("busy"), "busy");
    assert_eq!(target.ask("5"), old);
    let mut code: Vec<(u64, usize)> = ["one", "two", "three", "four", "hook"]
        .iter()
        .map(|f| (target.function(binary, f).0, 16))
        .collect();
    code.extend(["main", "busy"].iter().map(|f| target.function(binary, f)));
    let before = target.snapshot(&code);

    let mut args = vec!["--json"];
    args.extend_from_slice(extra);
    let report = ok(apply(s, package, public, &target, &args)).json();
    for (function, expected) in how {
        let entries = report["functions"].as_array().unwrap();
        let entry = entries.iter().find(|e| e["name"] == *function).unwrap();
        assert_eq!(entry["how"], *expected, "{function}: {report}");
    }
    for _ in 0..3 {
        assert_eq!(target.ask("5"), new);
    }
    let list = ok(s.run(&["list", "--pid", &target.pid()]));
    for (function, expected) in how {
        let line = format!("{function} at ");
        let line = list.stdout.lines().find(|l| l.contains(&line)).unwrap();
        assert!(line.contains(expected), "{}", list.stdout);
    }

    ok(s.run(&["revert", "--pid", &target.pid()]));
    assert_eq!(target.ask("5"), old);
    assert_eq!(
        target.snapshot(&code),
        before,
        "revert must leave no byte and no mapping behind"
    );
}

#[test]
fn functions_shorter_than_a_jump_are_patched_live_through_their_padding() {
    let s = Scratch::new();
    let (key, public) = s.keygen("release");
    let flags: (&[&str], &[&str]) = (&["-O2", "-fPIE"], &["-pie"]);
    let (dir, packages) = short_target(&s, &key, flags, &[2, 3]);
    let binary = dir.path().join("short");
    let package = packages[0].to_str().unwrap();
    let trust = public.to_str().unwrap();
    let inspect = ok(s.run(&["inspect", package, "--json", "--trust", trust])).json();
    check_short_sizes(&inspect, "jump in padding");
    for f in inspect["functions"].as_array().unwrap() {
        assert!(f["old_room"].as_u64().unwrap() >= 5, "{inspect}");
        assert_eq!(f["call_sites"], serde_json::json!([]), "{inspect}");
    }
    let (old, new) = ("0 1 0 5 5", "1 2 0 35 45");
    // one, three, four are closed leaves whose new code fits in their padding; two ends with
    // an indirect jump: its jump runs into the padding.
    let how = [
        ("one", "in place"),
        ("two", "jump in padding"),
        ("three", "in place"),
        ("four", "in place"),
    ];
    let files = (binary.as_path(), packages[0].as_path(), public.as_path());
    patch_short_functions_live(&s, files, &[], &how, (old, new));
    let jumps = how.map(|(f, _)| (f, "jump in padding"));
    patch_short_functions_live(&s, files, &["--jump-only"], &jumps, (old, new));
    // hook's address is stored in a pointer: a jump at its entry catches those calls too.
    let files = (binary.as_path(), packages[1].as_path(), public.as_path());
    let hook = [("hook", "jump in padding")];
    patch_short_functions_live(&s, files, &["--jump-only"], &hook, (old, "1 2 1 35 45"));

    // Padding that is not the file's any more (someone else's code?) is never overwritten.
    let mut target = Target::start(&binary);
    // Running its main: loaded, its address space settled.
    assert_eq!(target.ask("5"), old);
    let (one, _) = target.function(&binary, "one");
    let pid = target.child.id() as i32;
    // A byte the padding does not hold (a linker may fill it with int3 already).
    let padding = lpkg_kernel::memory::read(pid, one + 2, 1).unwrap()[0];
    lpkg_kernel::memory::write(pid, one + 2, &[!padding]).unwrap();
    let before = target.snapshot(&[(one, 16)]);
    let run = apply(&s, &packages[0], &public, &target, &["--jump-only"]);
    assert_eq!(run.code, 4, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("function one: the padding at"),
        "{}",
        run.stderr
    );
    assert_eq!(target.snapshot(&[(one, 16)]), before);
    assert_eq!(target.ask("5"), old);
}

#[test]
fn packed_functions_shorter_than_a_jump_are_patched_live_at_their_call_sites() {
    patch_packed_short_functions(Bits::M64, &["-fPIE"], &["-pie"]);
}

#[test]
fn packed_functions_shorter_than_a_jump_are_patched_live_at_fixed_addresses_too() {
    // ET_EXEC: absolute addresses may sit in code and data without a dynamic relocation.
    patch_packed_short_functions(Bits::M64, &["-fno-pie"], &["-no-pie"]);
}

#[test]
fn packed_functions_shorter_than_a_jump_are_patched_live_at_their_call_sites_in_i386() {
    patch_packed_short_functions(Bits::M32, &["-fPIE"], &["-pie"]);
}

#[test]
fn packed_functions_shorter_than_a_jump_are_patched_live_at_fixed_addresses_too_in_i386() {
    patch_packed_short_functions(Bits::M32, &["-fno-pie"], &["-no-pie"]);
}

/// How a package reaches new code through the call sites of a function.
const CALL_SITES: &str = "call sites rewritten: 2";

/// The short target's one, two, three and four built packed for `bits`: each one's size and
/// how a package reaches its new code.
fn packed_short_functions(bits: Bits) -> [(&'static str, u64, &'static str); 4] {
    match bits {
        Bits::M64 => SHORT.map(|(name, size)| (name, size, CALL_SITES)),
        // Arguments on the stack: `jmp *0x4(%esp)`; `mov 0x4(%esp),%eax; ret` is as long as
        // a jump, which goes at the entry.
        Bits::M32 => [
            ("one", 1, CALL_SITES),
            ("two", 4, CALL_SITES),
            ("three", 5, "jump"),
            ("four", 5, "jump"),
        ],
    }
}

/// The short target built packed (no padding after any function) for `bits` with the code
/// model of `compile` and `link`: each short function's call sites are rewritten live, and
/// hook, whose address is stored in a pointer, is refused.
fn patch_packed_short_functions(bits: Bits, compile: &[&str], link: &[&str]) {
    let s = Scratch::new();
    let (key, public) = s.keygen("release");
    // Without a frame pointer (gcc keeps one on i386 at -Os): the shortest code.
    let mut packed = vec![
        bits.flag(),
        "-Os",
        "-falign-functions=1",
        "-fomit-frame-pointer",
    ];
    packed.extend_from_slice(compile);
    let mut link = link.to_vec();
    link.push(bits.flag());
    let (dir, packages) = short_target(&s, &key, (&packed, &link), &[2]);
    let binary = dir.path().join("short");
    let package = packages[0].to_str().unwrap();
    let trust = public.to_str().unwrap();
    let inspect = ok(s.run(&["inspect", package, "--trust", trust]));
    assert!(
        inspect
            .stdout
            .contains("entry: call sites rewritten: 2 (at 0x"),
        "{}",
        inspect.stdout
    );
    let json = ok(s.run(&["inspect", package, "--trust", trust, "--json"])).json();
    let expected = packed_short_functions(bits);
    let functions = json["functions"].as_array().unwrap();
    for (name, size, entry) in expected {
        let f = functions.iter().find(|f| f["name"] == name).unwrap();
        assert_eq!(f["old_size"], size, "{name}: {json}");
        assert_eq!(f["entry"], entry, "{name}: {json}");
        if entry == CALL_SITES {
            assert_eq!(f["call_sites"].as_array().unwrap().len(), 2, "{json}");
            assert_eq!(f["old_room"], f["old_size"], "{json}");
        }
    }
    let how = expected.map(|(name, _, entry)| (name, entry));
    let files = (binary.as_path(), packages[0].as_path(), public.as_path());
    patch_short_functions_live(&s, files, &[], &how, ("0 1 0 5 5", "1 2 0 35 45"));

    // A second package replacing them again would not change where the calls lead: refused,
    // and the first stays as it was.
    let path = |name: &str| dir.path().join(name);
    let again = s.build(
        &binary,
        &path("short1.o"),
        &path("short2.o"),
        &key,
        "again.lpkg",
        ("short-again", "1"),
        &[],
    );
    let mut target = Target::start(&binary);
    ok(apply(&s, &packages[0], &public, &target, &[]));
    let run = apply(&s, &again, &public, &target, &[]);
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("leads its call sites to its own new code"),
        "{}",
        run.stderr
    );
    assert_eq!(target.ask("5"), "1 2 0 35 45");
    // A package stacked on it calls them too (count calls one): bound to the new code, which
    // the first package's revert must then wait for.
    let calls = s.build(
        &binary,
        &path("short2.o"),
        &path("short4.o"),
        &key,
        "calls.lpkg",
        ("short-calls", "1"),
        &[&packages[0]],
    );
    ok(apply(&s, &calls, &public, &target, &[]));
    // one() once, then count() twice (two calls it twice), each calling one().
    assert_eq!(target.ask("5"), "3 2 0 35 45");
    let list = ok(s.run(&["list", "--pid", &target.pid(), "--json"])).json();
    let first = list[0]["id"].as_str().unwrap().to_owned();
    let run = s.run(&["revert", "--pid", &target.pid(), "--id", &first]);
    assert_ne!(run.code, 0, "{}", run.stdout);
    assert!(
        run.stderr
            .contains("may call the new code of one in package short-v2"),
        "{}",
        run.stderr
    );
    assert_eq!(target.ask("5"), "3 2 0 35 45");
    ok(s.run(&["revert", "--pid", &target.pid()]));
    assert_eq!(target.ask("5"), "1 2 0 35 45");
    // One replacing a caller whose call of four was redirected: its bytes are the file's but
    // for that call.
    let wrap = s.build(
        &binary,
        &path("short2.o"),
        &path("short5.o"),
        &key,
        "wrap.lpkg",
        ("short-wrap", "1"),
        &[&packages[0]],
    );
    ok(apply(&s, &wrap, &public, &target, &[]));
    assert_eq!(target.ask("5"), "1 2 0 35 145");
    let run = s.run(&["revert", "--pid", &target.pid(), "--id", &first]);
    let four_at_call_sites = expected
        .iter()
        .any(|&(f, _, how)| f == "four" && how == CALL_SITES);
    if four_at_call_sites {
        assert!(
            run.stderr.contains("may call the new code of four"),
            "{}",
            run.stderr
        );
        ok(s.run(&["revert", "--pid", &target.pid()]));
        assert_eq!(target.ask("5"), "1 2 0 35 45");
    } else {
        // four keeps its entry, where the first package put a jump: the new wrap calls it
        // there, so nothing of it would run unmapped code, but it was built for that
        // package's four: it goes first.
        assert!(
            run.stderr
                .contains("package short-wrap 1 requires package short-v2"),
            "{}",
            run.stderr
        );
        assert_eq!(target.ask("5"), "1 2 0 35 145");
        ok(s.run(&["revert", "--pid", &target.pid()]));
        assert_eq!(target.ask("5"), "1 2 0 35 45");
    }
    ok(s.run(&["revert", "--pid", &target.pid()]));
    assert_eq!(target.ask("5"), "0 1 0 5 5");

    // hook is called through a pointer: no call site to rewrite catches those calls.
    let path = |name: &str| path(name).to_str().unwrap().to_owned();
    let out = s.path("hook.lpkg");
    let run = s.run(&[
        "build",
        "--target",
        &path("short"),
        "--old",
        &path("short1.o"),
        "--new",
        &path("short3.o"),
        "--key",
        key.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_ne!(run.code, 0, "{}", run.stdout);
    let error = run.error_line();
    for part in [
        "refused: hook: ",
        "function is 1 bytes long",
        "with 1 bytes of room up to the next symbol",
        "its address is stored in data at 0x",
    ] {
        assert!(error.contains(part), "{error}");
    }
    assert!(!out.exists());
}

/// A build whose objects do not differ writes no package (signed, it would pass a release
/// pipeline as a fix), and an empty name or version is a usage error.
#[test]
fn a_build_that_changes_nothing_or_names_nothing_is_refused() {
    let s = Scratch::new();
    let (key, _) = s.keygen("release");
    let c = calc();
    let out = s.path("same.lpkg");
    let (target, new) = (c.path("calc"), c.path("calc1.o"));
    let build = |old: &str, extra: &[&str]| {
        let old = c.path(old);
        let mut args = vec![
            "build",
            "--target",
            target.to_str().unwrap(),
            "--old",
            old.to_str().unwrap(),
            "--new",
            new.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ];
        args.extend(extra);
        s.run(&args)
    };
    let run = build("calc1.o", &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.error_line().starts_with("no function differs between ")
            && run
                .error_line()
                .ends_with("a package would change nothing; none was written"),
        "{}",
        run.stderr
    );
    assert!(!out.exists());
    for empty in ["--name", "--version"] {
        let run = build("calc2.o", &[empty, ""]);
        assert_eq!(run.code, 2, "{empty}: {}", run.stderr);
        assert!(!out.exists());
    }
}
