//! Stripped targets and their separate debug files, as distributions ship them: the package is
//! built against the stripped file with the debug file given, found by build-id under a debug
//! directory, or found through `.gnu_debuglink`; a debug file of another build, a missing one,
//! and a deployed build whose struct layouts or data differ from the objects' are refused. A
//! package built so is applied to the running stripped program.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::{Program, Run, Scratch};

fn tool(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `tests/targets/ledger.c` built as a distribution would ship it, in one folder:
/// `ledger1.o`, `ledger2.o` (VERSION 1 and 2), `ledger` (linked from `ledger1.o`, unstripped),
/// `stripped/ledger` (stripped, with a `.gnu_debuglink` to `ledger.debug`) and `ledger.debug`
/// (its debug file); `other.debug` is the debug file of another link of the same object; and
/// `audit/ledger` + `audit/ledger.debug`, `limits/...`, `fee/...`: deployed builds of VERSION 1
/// with `-DAUDIT` (struct account has one more member), `-DLIMITS=8` (a larger table) and
/// `-DFEE=1` (other code in fee(), which deposit() calls).
struct Ledger {
    dir: tempfile::TempDir,
}

impl Ledger {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The build-id of the ledger binaries (stripped and not: the same).
    fn build_id(&self) -> String {
        use object::Object;
        let data = std::fs::read(self.path("ledger")).unwrap();
        let file = object::File::parse(&*data).unwrap();
        let id = file.build_id().unwrap().unwrap();
        id.iter().map(|b| format!("{b:02x}")).collect()
    }
}

fn compile(dir: &Path, object: &str, flags: &[&str]) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/targets/ledger.c");
    let mut args = vec![
        "-O2",
        "-g",
        "-ffunction-sections",
        "-fdata-sections",
        "-fPIE",
    ];
    args.extend(flags);
    let out = dir.join(object);
    args.extend(["-c", src.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    tool("gcc", &args);
}

/// Links `object` into `dir/name` and splits it as dh_strip does: `name.debug` holds the
/// symbols and DWARF, `name` is stripped with a debuglink to it. Returns the unstripped copy.
fn link_and_split(dir: &Path, object: &Path, name: &str, extra: &[&str]) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let full = dir.join(format!("{name}.full"));
    let mut args = vec![
        "-pie",
        object.to_str().unwrap(),
        "-o",
        full.to_str().unwrap(),
    ];
    args.extend(extra);
    tool("gcc", &args);
    let debug = dir.join(format!("{name}.debug"));
    let stripped = dir.join(name);
    let s = |p: &Path| p.to_str().unwrap().to_owned();
    tool("objcopy", &["--only-keep-debug", &s(&full), &s(&debug)]);
    tool("strip", &["--strip-all", "-o", &s(&stripped), &s(&full)]);
    tool(
        "objcopy",
        &[&format!("--add-gnu-debuglink={}", s(&debug)), &s(&stripped)],
    );
    full
}

fn ledger() -> &'static Ledger {
    static LEDGER: OnceLock<Ledger> = OnceLock::new();
    LEDGER.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        compile(d, "ledger1.o", &["-DVERSION=1"]);
        compile(d, "ledger2.o", &["-DVERSION=2"]);
        compile(d, "ledger-audit.o", &["-DVERSION=1", "-DAUDIT"]);
        compile(d, "ledger-limits.o", &["-DVERSION=1", "-DLIMITS=8"]);
        compile(d, "ledger-fee.o", &["-DVERSION=1", "-DFEE=1"]);
        let full = link_and_split(&d.join("stripped"), &d.join("ledger1.o"), "ledger", &[]);
        std::fs::rename(full, d.join("ledger")).unwrap();
        std::fs::rename(d.join("stripped/ledger.debug"), d.join("ledger.debug")).unwrap();
        // Another link of the same object: another build-id.
        link_and_split(
            &d.join("other"),
            &d.join("ledger1.o"),
            "ledger",
            &["-Wl,-z,max-page-size=8192"],
        );
        std::fs::rename(d.join("other/ledger.debug"), d.join("other.debug")).unwrap();
        link_and_split(&d.join("audit"), &d.join("ledger-audit.o"), "ledger", &[]);
        link_and_split(&d.join("limits"), &d.join("ledger-limits.o"), "ledger", &[]);
        link_and_split(&d.join("fee"), &d.join("ledger-fee.o"), "ledger", &[]);
        Ledger { dir }
    })
}

/// `lpkg build` of the ledger fix (VERSION 1 -> 2) for `target`, with `extra` flags.
fn build(s: &Scratch, key: &Path, target: &Path, extra: &[&str]) -> (Run, PathBuf) {
    let l = ledger();
    build_from(
        s,
        key,
        target,
        [&l.path("ledger1.o"), &l.path("ledger2.o")],
        extra,
    )
}

/// `lpkg build` from object `old` to `new` for `target`, with `extra` flags.
fn build_from(
    s: &Scratch,
    key: &Path,
    target: &Path,
    [old, new]: [&Path; 2],
    extra: &[&str],
) -> (Run, PathBuf) {
    let out = s.path("fix.lpkg");
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
        "--name",
        "ledger-fix",
    ];
    args.extend(extra);
    (s.run(&args), out)
}

fn ok(run: Run) -> Run {
    assert_eq!(
        run.code, 0,
        "stdout: {}\nstderr: {}",
        run.stdout, run.stderr
    );
    run
}

/// What the package says about the target's functions (name, offset, size, hash of the old
/// bytes, room) and the hashes of its module and symbol map: what must not depend on where the
/// symbols came from.
fn functions(s: &Scratch, package: &Path, public: &Path) -> serde_json::Value {
    let run = ok(s.run(&[
        "inspect",
        package.to_str().unwrap(),
        "--json",
        "--trust",
        public.to_str().unwrap(),
    ]));
    let json = run.json();
    serde_json::json!([json["functions"], json["payloads"]])
}

/// A debug directory holding `debug` at its build-id path.
fn debug_dir_with(s: &Scratch, debug: &Path, build_id: &str) -> PathBuf {
    let dir = s.path("debug-dir");
    let at = dir.join(".build-id").join(&build_id[..2]);
    std::fs::create_dir_all(&at).unwrap();
    std::fs::copy(debug, at.join(format!("{}.debug", &build_id[2..]))).unwrap();
    dir
}

/// A copy of the stripped ledger alone in its own folder (its debuglink finds nothing there).
fn lone_stripped(s: &Scratch) -> PathBuf {
    let dir = s.path("deployed");
    std::fs::create_dir_all(&dir).unwrap();
    let to = dir.join("ledger");
    std::fs::copy(ledger().path("stripped/ledger"), &to).unwrap();
    to
}

#[test]
fn a_stripped_target_builds_with_its_debug_file_as_the_unstripped_one_does() {
    let s = Scratch::new();
    let (key, public) = s.keygen("release");
    let l = ledger();
    let (run, reference) = build(&s, &key, &l.path("ledger"), &[]);
    ok(run);
    let expected = functions(&s, &reference, &public);
    assert_eq!(expected[0][0]["name"], "deposit", "{expected}");
    let stripped = lone_stripped(&s);
    let empty_debug_dir = s.path("empty");
    std::fs::create_dir_all(&empty_debug_dir).unwrap();

    // Given.
    let (run, package) = build(
        &s,
        &key,
        &stripped,
        &[
            "--debug-file",
            l.path("ledger.debug").to_str().unwrap(),
            "--debug-dir",
            empty_debug_dir.to_str().unwrap(),
        ],
    );
    let run = ok(run);
    assert!(run.stderr.contains("from its debug file"), "{}", run.stderr);
    assert!(run.stderr.contains("(given)"), "{}", run.stderr);
    assert_eq!(functions(&s, &package, &public), expected);

    // By build-id under the debug directory.
    let debug_dir = debug_dir_with(&s, &l.path("ledger.debug"), &l.build_id());
    let (run, package) = build(
        &s,
        &key,
        &stripped,
        &["--debug-dir", debug_dir.to_str().unwrap()],
    );
    let run = ok(run);
    assert!(run.stderr.contains("(by build-id)"), "{}", run.stderr);
    assert_eq!(functions(&s, &package, &public), expected);

    // By .gnu_debuglink, next to the target.
    std::fs::copy(
        l.path("ledger.debug"),
        stripped.with_file_name("ledger.debug"),
    )
    .unwrap();
    let (run, package) = build(
        &s,
        &key,
        &stripped,
        &["--debug-dir", empty_debug_dir.to_str().unwrap()],
    );
    let run = ok(run);
    assert!(run.stderr.contains("(by .gnu_debuglink)"), "{}", run.stderr);
    assert_eq!(functions(&s, &package, &public), expected);
}

#[test]
fn a_debug_file_of_another_build_is_refused_naming_both_build_ids() {
    let s = Scratch::new();
    let (key, _) = s.keygen("release");
    let l = ledger();
    let other = l.path("other.debug");
    let (run, package) = build(
        &s,
        &key,
        &lone_stripped(&s),
        &["--debug-file", other.to_str().unwrap()],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    let line = run.error_line();
    assert!(line.contains("not the debug file of"), "{line}");
    assert!(line.contains(&l.build_id()), "{line}");
    assert!(!package.exists());

    // Found by build-id path but of another build (a stale file): refused too.
    let debug_dir = debug_dir_with(&s, &other, &l.build_id());
    let (run, _) = build(
        &s,
        &key,
        &lone_stripped(&s),
        &["--debug-dir", debug_dir.to_str().unwrap()],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.error_line().contains("not the debug file of"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_stripped_target_without_a_debug_file_is_refused_saying_what_to_do() {
    let s = Scratch::new();
    let (key, _) = s.keygen("release");
    let empty = s.path("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let (run, package) = build(
        &s,
        &key,
        &lone_stripped(&s),
        &["--debug-dir", empty.to_str().unwrap()],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    let line = run.error_line();
    let id = ledger().build_id();
    for wanted in [
        "target is stripped (no .symtab)",
        "--debug-file",
        &id,
        &format!(
            "{}/.build-id/{}/{}.debug",
            empty.display(),
            &id[..2],
            &id[2..]
        ),
        "ledger.debug",
    ] {
        assert!(line.contains(wanted), "{wanted:?} not in {line}");
    }
    assert!(!package.exists());
}

#[test]
fn a_deployed_build_with_another_struct_layout_is_refused_naming_the_struct() {
    let s = Scratch::new();
    let (key, _) = s.keygen("release");
    let l = ledger();
    let (run, package) = build(
        &s,
        &key,
        &l.path("audit/ledger"),
        &[
            "--debug-file",
            l.path("audit/ledger.debug").to_str().unwrap(),
        ],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    let line = run.error_line();
    assert!(line.contains("struct account"), "{line}");
    assert!(line.contains("deployed"), "{line}");
    assert!(!package.exists());
}

#[test]
fn a_deployed_build_with_other_data_sizes_is_refused_naming_the_data() {
    let s = Scratch::new();
    let (key, _) = s.keygen("release");
    let l = ledger();
    let (run, package) = build(
        &s,
        &key,
        &l.path("limits/ledger"),
        &[
            "--debug-file",
            l.path("limits/ledger.debug").to_str().unwrap(),
        ],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    let line = run.error_line();
    assert!(line.contains("limits"), "{line}");
    assert!(line.contains("deployed"), "{line}");
    assert!(!package.exists());
}

#[test]
fn a_deployed_build_with_other_code_in_a_function_the_fix_calls_is_refused_naming_it() {
    let s = Scratch::new();
    let (key, _) = s.keygen("release");
    let l = ledger();
    let (run, package) = build(
        &s,
        &key,
        &l.path("fee/ledger"),
        &["--debug-file", l.path("fee/ledger.debug").to_str().unwrap()],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    let line = run.error_line();
    assert!(
        line.starts_with("refused: fee: called by the patch"),
        "{line}"
    );
    assert!(!package.exists());
}

#[test]
fn damaged_debug_files_are_refused_or_read_never_panic() {
    let l = ledger();
    let s = Scratch::new();
    let original = std::fs::read(l.path("ledger.debug")).unwrap();
    let damaged = s.path("damaged.debug");
    let options = lpkg_builder::BuildOptions {
        target: lone_stripped(&s),
        old: l.path("ledger1.o"),
        new: l.path("ledger2.o"),
        name: "x".into(),
        version: "1".into(),
        debug: lpkg_builder::DebugOptions {
            file: Some(damaged.clone()),
            dir: None,
        },
        ..Default::default()
    };
    // A fixed xorshift: the same damage on every run.
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let (mut built, mut refused) = (0, 0);
    for round in 0..300 {
        let mut bytes = original.clone();
        if round % 50 == 49 {
            bytes.truncate(next() as usize % bytes.len());
        }
        for _ in 0..1 + next() % 8 {
            let at = next() as usize % bytes.len().max(1);
            if let Some(b) = bytes.get_mut(at) {
                *b ^= 1 << (next() % 8);
            }
        }
        std::fs::write(&damaged, &bytes).unwrap();
        match lpkg_builder::build(&options) {
            Ok(_) => built += 1,
            Err(_) => refused += 1,
        }
    }
    // Most damage lands in DWARF or padding the build does not depend on.
    assert!(built > 0 && refused > 0, "built {built}, refused {refused}");
}

#[test]
fn a_package_built_with_a_debug_file_patches_the_running_stripped_program() {
    let s = Scratch::new();
    let (key, public) = s.keygen("release");
    let l = ledger();
    let stripped = lone_stripped(&s);
    let debug_dir = debug_dir_with(&s, &l.path("ledger.debug"), &l.build_id());
    let (run, package) = build(
        &s,
        &key,
        &stripped,
        &["--debug-dir", debug_dir.to_str().unwrap()],
    );
    ok(run);
    let mut target = Program::start(&mut Command::new(&stripped));
    // Account 0 (multiples of 4): +x before, +2x after apply, +x after revert.
    assert_eq!(target.ask("4"), "4");
    let pid = target.pid();
    ok(s.run(&[
        "apply",
        package.to_str().unwrap(),
        "--pid",
        &pid,
        "--trust",
        public.to_str().unwrap(),
    ]));
    assert_eq!(target.ask("8"), "20");
    assert_eq!(
        target.ask("t"),
        "1",
        "the new code counts in the program's TLS"
    );
    ok(s.run(&["revert", "--pid", &pid, "--all"]));
    assert_eq!(target.ask("8"), "28");
}

/// Statically linked programs (`-static`, `-static-pie`: no dynamic loader, no other object
/// in the process; x86_64 and i386), stripped as shipped, are patched live with a package
/// built from the debug file found next to them. A fix calling a libc function the program
/// was not linked with (`getppid`) is refused by the builder, naming it: no process of that
/// program could run it. The fix counts deposits in the program's TLS, which a static-pie
/// program has at the offset an executable's has.
#[test]
fn a_stripped_static_program_is_patched_live_and_a_fix_calling_what_it_lacks_is_refused() {
    let s = Scratch::new();
    let (key, public) = s.keygen("release");
    // The objects of each machine (`ledgerV.o`, `ledgerV-m32.o`), compiled with `machine`.
    let machines: [&[&str]; 2] = [&[], &["-m32"]];
    let object =
        |version: u32, machine: &[&str]| s.path(&format!("ledger{version}{}.o", machine.concat()));
    for machine in machines {
        for version in 1..=3 {
            let define = format!("-DVERSION={version}");
            let flags = [&[define.as_str()][..], machine].concat();
            compile(
                s.dir.path(),
                object(version, machine).to_str().unwrap(),
                &flags,
            );
        }
    }
    for machine in machines {
        for link in ["-static", "-static-pie"] {
            let name = format!("{link}{}", machine.concat());
            let dir = s.path(&name);
            let flags = [&[link][..], machine].concat();
            link_and_split(&dir, &object(1, machine), "ledger", &flags);
            let objects = [1, 2, 3].map(|version| object(version, machine));
            static_program_patched_and_refused(&s, &key, &public, &dir.join("ledger"), &objects);
        }
    }
}

/// [`a_stripped_static_program_is_patched_live_and_a_fix_calling_what_it_lacks_is_refused`]
/// for `stripped` and its `objects` (VERSION 1 to 3).
fn static_program_patched_and_refused(
    s: &Scratch,
    key: &Path,
    public: &Path,
    stripped: &Path,
    [one, two, three]: &[PathBuf; 3],
) {
    let what = stripped.display();
    let (run, package) = build_from(s, key, stripped, [one, three], &[]);
    assert_eq!(run.code, 1, "{what}: {}", run.stderr);
    let line = run.error_line();
    assert!(
        line.starts_with("refused: getppid: ")
            && line.contains("statically linked program that does not contain it"),
        "{what}: {line}"
    );
    assert!(!package.exists());

    let (run, package) = build_from(s, key, stripped, [one, two], &[]);
    ok(run);
    let mut target = Program::start(&mut Command::new(stripped));
    assert_eq!(target.ask("4"), "4", "{what}");
    let pid = target.pid();
    ok(s.run(&[
        "apply",
        package.to_str().unwrap(),
        "--pid",
        &pid,
        "--trust",
        public.to_str().unwrap(),
    ]));
    assert_eq!(target.ask("8"), "20", "{what}");
    // The new code counted that deposit in the program's TLS, where the program reads it.
    assert_eq!(target.ask("t"), "1", "{what}");
    ok(s.run(&["revert", "--pid", &pid, "--all"]));
    assert_eq!(target.ask("8"), "28", "{what}");
    std::fs::remove_file(&package).unwrap();
}
