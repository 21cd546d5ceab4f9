//! Corpus tests: every `tests/corpus/<case>/{old.c,new.c,expect.toml}` is compiled with gcc
//! into a PIE executable (harness + case, shape `pie`), a non-PIE executable (`nopie`) and a
//! `-fPIC` shared library (`pic`, the harness is then the executable), the builder runs
//! against the linked old build, and the result must match `expect.toml` exactly (a table
//! named after a shape replaces it for that shape). Probes are checked against the old and new
//! builds run for real.
//!
//! Every case runs for x86_64 (`-m64`, the tests named after the case) and for i386 (`-m32`,
//! the same tests in `m32::`). A case's `[m32]` table replaces the keys it names for i386,
//! where the other instruction set gives another answer.

mod util;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use util::gcc;

use lpkg_builder::{build, BuildOptions, Built};
use lpkg_format::{Action, SymbolBinding, SymbolMap};
use object::{Object, ObjectSymbol};

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

fn include() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("include")
}

/// The machine a case is compiled for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Machine {
    /// x86_64, gcc's default.
    M64,
    /// i386, `gcc -m32`.
    M32,
}

impl Machine {
    /// The compiler and linker flag that selects the machine.
    pub fn flag(self) -> &'static str {
        match self {
            Machine::M64 => "-m64",
            Machine::M32 => "-m32",
        }
    }

    /// The manifest's name of the machine.
    pub fn manifest_name(self) -> &'static str {
        match self {
            Machine::M64 => "x86_64",
            Machine::M32 => "i386",
        }
    }
}

/// The harness object, compiled once per test binary and machine.
fn harness(machine: Machine) -> &'static Path {
    static DIRS: [OnceLock<tempfile::TempDir>; 2] = [OnceLock::new(), OnceLock::new()];
    let dir = DIRS[machine as usize].get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let src = corpus().join("harness.c");
        gcc(
            &[
                machine.flag(),
                "-O2",
                "-g",
                "-fPIE",
                "-c",
                src.to_str().unwrap(),
                "-o",
                "harness.o",
            ],
            dir.path(),
        );
        dir
    });
    dir.path()
}

/// A compiled case: object folders and linked targets.
pub struct Compiled {
    pub dir: tempfile::TempDir,
    pub machine: Machine,
}

const CFLAGS: &[&str] = &["-O2", "-g", "-ffunction-sections", "-fdata-sections"];

/// The shapes every case is compiled in: PIE and non-PIE executables, a shared library.
const SHAPES: [&str; 3] = ["pie", "nopie", "pic"];

/// Compiles `old.c` and `new.c` of a case (with `extra` compiler flags) (as `old/case.c` and `new/case.c`, so both record
/// the same file name) in both shapes; `old.cpp` and `new.cpp` as C++ where the case has them.
pub fn compile(case: &str, extra: &[String], machine: Machine) -> Compiled {
    let dir = tempfile::tempdir().unwrap();
    let cxx = corpus().join(case).join("old.cpp").exists();
    let (ext, runtime): (&str, &[&str]) = if cxx {
        ("cpp", &["-lstdc++"])
    } else {
        ("c", &[])
    };
    let source = format!("case.{ext}");
    let inc = format!("-I{}", include().display());
    let harness_o = harness(machine).join("harness.o");
    for side in ["old", "new"] {
        for shape in SHAPES {
            let d = dir.path().join(format!("{side}-{shape}"));
            std::fs::create_dir_all(&d).unwrap();
            std::fs::copy(
                corpus().join(case).join(format!("{side}.{ext}")),
                d.join(&source),
            )
            .unwrap();
            // Headers and included files of the case, next to the source.
            for entry in std::fs::read_dir(corpus().join(case)).unwrap() {
                let path = entry.unwrap().path();
                let name = path.file_name().unwrap().to_str().unwrap().to_owned();
                let own = name.starts_with("old.") || name.starts_with("new.");
                if !own && name != "expect.toml" {
                    std::fs::copy(&path, d.join(name)).unwrap();
                }
            }
            let pic = match shape {
                "pie" => "-fPIE",
                "nopie" => "-fno-pie",
                _ => "-fPIC",
            };
            let mut args: Vec<&str> = vec![machine.flag()];
            args.extend(CFLAGS);
            args.extend(extra.iter().map(String::as_str));
            args.extend([pic, inc.as_str(), "-c", source.as_str(), "-o", "case.o"]);
            gcc(&args, &d);
            if shape != "pic" {
                let mut link = vec![
                    machine.flag(),
                    if shape == "pie" { "-pie" } else { "-no-pie" },
                    harness_o.to_str().unwrap(),
                    "case.o",
                    "-o",
                    "prog",
                ];
                link.extend(runtime);
                gcc(&link, &d);
            } else {
                let mut link = vec![machine.flag(), "-shared", "case.o", "-o", "libcase.so"];
                link.extend(runtime);
                gcc(&link, &d);
                gcc(
                    &[
                        machine.flag(),
                        harness_o.to_str().unwrap(),
                        "-L.",
                        "-lcase",
                        "-Wl,-rpath,$ORIGIN",
                        "-o",
                        "prog",
                    ],
                    &d,
                );
            }
        }
    }
    Compiled { dir, machine }
}

impl Compiled {
    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    pub fn options(&self, shape: &str) -> BuildOptions {
        let target = if shape == "pic" { "libcase.so" } else { "prog" };
        BuildOptions {
            target: self.path(&format!("old-{shape}/{target}")),
            old: self.path(&format!("old-{shape}/case.o")),
            new: self.path(&format!("new-{shape}/case.o")),
            name: "case".into(),
            version: "1".into(),
            description: String::new(),
            allow_line_changes: false,
            ..Default::default()
        }
    }
}

/// A child process killed on drop.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs a program with the inputs and returns its output lines (with a timeout).
fn run_probes(prog: &Path, inputs: &[i64]) -> Vec<i64> {
    let mut child = Child(
        Command::new(prog)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start case program"),
    );
    let mut stdin = child.0.stdin.take().unwrap();
    for x in inputs {
        writeln!(stdin, "{x}").unwrap();
    }
    drop(stdin);
    let start = Instant::now();
    loop {
        if child.0.try_wait().unwrap().is_some() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{} timed out",
            prog.display()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut out = String::new();
    std::io::Read::read_to_string(&mut child.0.stdout.take().unwrap(), &mut out).unwrap();
    out.lines().map(|l| l.trim().parse().unwrap()).collect()
}

fn strings(v: Option<&toml::Value>) -> BTreeSet<String> {
    v.and_then(|v| v.as_array())
        .map(|a| a.iter().map(|s| s.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

/// Checks the module's shape against the manifest and the symbol map.
pub fn check_module(built: &Built) {
    let module = &built.payloads[0].1;
    let map: SymbolMap =
        toml::from_str(std::str::from_utf8(&built.payloads[1].1).unwrap()).unwrap();
    let file = object::File::parse(&module[..]).expect("module.o parses");
    assert_eq!(file.kind(), object::ObjectKind::Relocatable);
    let names: BTreeSet<String> = map.symbols.iter().map(|b| b.name().to_string()).collect();
    for sym in file.symbols() {
        if sym.is_undefined() && !sym.name().unwrap().is_empty() {
            assert!(
                names.contains(sym.name().unwrap()),
                "undefined {} not in symbols.toml",
                sym.name().unwrap()
            );
        }
    }
    for f in &built.manifest.functions {
        let s = file
            .symbol_by_name(&f.module_symbol)
            .unwrap_or_else(|| panic!("module symbol {} missing", f.module_symbol));
        assert!(
            s.is_global() && !s.is_undefined(),
            "{} must be a global definition",
            f.module_symbol
        );
    }
}

/// Runs one case in one shape and checks `expect.toml`.
fn check_shape(case: &str, c: &Compiled, shape: &str, expect: &toml::Value) {
    let mut opts = c.options(shape);
    opts.allow_line_changes = expect
        .get("allow_line_changes")
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    let result = build(&opts);
    if let Some(refusal) = expect.get("refuse").and_then(|v| v.as_str()) {
        match result {
            Err(e) => assert!(
                e.to_string().contains(refusal),
                "{case}/{shape}: refusal {e} does not mention {refusal:?}"
            ),
            Ok(b) => panic!(
                "{case}/{shape}: expected refusal {refusal:?}, got {:#?}",
                b.manifest.functions
            ),
        }
        return;
    }
    let built = result.unwrap_or_else(|e| panic!("{case}/{shape}: build failed: {e}"));
    assert_eq!(
        built.manifest.target.machine,
        c.machine.manifest_name(),
        "{case}/{shape}: the manifest's machine"
    );
    let got = |a: Action| -> BTreeSet<String> {
        built
            .manifest
            .functions
            .iter()
            .filter(|f| f.action == a)
            .map(|f| f.name.clone())
            .collect()
    };
    assert_eq!(
        got(Action::Replace),
        strings(expect.get("replace")),
        "{case}/{shape}: replaced functions; manifest {:#?}",
        built.manifest.functions
    );
    assert_eq!(
        got(Action::New),
        strings(expect.get("new")),
        "{case}/{shape}: new functions; manifest {:#?}",
        built.manifest.functions
    );
    let data: BTreeSet<String> = built.manifest.data.iter().map(|d| d.name.clone()).collect();
    assert_eq!(
        data,
        strings(expect.get("data")),
        "{case}/{shape}: new data"
    );
    if let Some(reasons) = expect.get("reasons").and_then(|v| v.as_table()) {
        for (name, want) in reasons {
            let f = built
                .manifest
                .functions
                .iter()
                .find(|f| &f.name == name)
                .unwrap();
            assert!(
                f.reason.contains(want.as_str().unwrap()),
                "{case}/{shape}: reason of {name} is {:?}",
                f.reason
            );
        }
    }
    if let Some(counts) = expect.get("call_sites").and_then(|v| v.as_table()) {
        for (name, want) in counts {
            let f = built.manifest.functions.iter().find(|f| &f.name == name);
            assert_eq!(
                f.map(|f| f.call_sites.len() as i64),
                want.as_integer(),
                "{case}/{shape}: call sites of {name}"
            );
        }
    }
    for note in strings(expect.get("notes")) {
        assert!(
            built.notes.iter().any(|n| n.contains(&note)),
            "{case}/{shape}: no note with {note:?} in {:?}",
            built.notes
        );
    }
    let map: SymbolMap =
        toml::from_str(std::str::from_utf8(&built.payloads[1].1).unwrap()).unwrap();
    for want in strings(expect.get("target_symbols")) {
        assert!(
            map.symbols
                .iter()
                .any(|b| matches!(b, SymbolBinding::Target { name, .. } if name == &want)),
            "{case}/{shape}: {want} not bound to the target in {map:?}"
        );
    }
    for want in strings(expect.get("external_symbols")) {
        assert!(
            map.symbols
                .iter()
                .any(|b| matches!(b, SymbolBinding::External { symbol, .. } if symbol == &want)),
            "{case}/{shape}: {want} not external in {map:?}"
        );
    }
    for f in &built.manifest.functions {
        // What the compiler generates without DWARF (i386's PC thunks), carried unchanged,
        // has no source line.
        let carried = f.reason == "unchanged, not in target: carried";
        assert!(
            f.source.is_some() || carried,
            "{case}/{shape}: {} has no source",
            f.name
        );
    }
    check_module(&built);
    // Same inputs, same bytes.
    let again = build(&opts).unwrap();
    assert_eq!(
        again.payloads, built.payloads,
        "{case}/{shape}: not deterministic"
    );
    assert_eq!(
        again.manifest, built.manifest,
        "{case}/{shape}: not deterministic"
    );
    check_live(case, c, shape, expect, built);
}

/// A running case program that answers one line per input line; killed on drop.
struct LiveProgram {
    child: Child,
    stdin: std::process::ChildStdin,
    stdout: std::io::BufReader<std::process::ChildStdout>,
}

impl LiveProgram {
    fn start(prog: &Path) -> LiveProgram {
        let mut child = Child(
            Command::new(prog)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("start case program"),
        );
        let stdin = child.0.stdin.take().unwrap();
        let stdout = std::io::BufReader::new(child.0.stdout.take().unwrap());
        LiveProgram {
            child,
            stdin,
            stdout,
        }
    }

    fn ask(&mut self, x: i64) -> i64 {
        use std::io::BufRead;
        writeln!(self.stdin, "{x}").unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        line.trim()
            .parse()
            .unwrap_or_else(|_| panic!("case program answered {line:?} to {x}"))
    }
}

/// Applies the package to the OLD build while it runs, checks that the probes now give the new
/// answers (or `live_probes`, where an init routine changes live state), then reverts it and
/// checks that the process still runs and every patched entry holds its original bytes.
fn check_live(case: &str, c: &Compiled, shape: &str, expect: &toml::Value, built: Built) {
    let Some(probes) = expect
        .get("live_probes")
        .or_else(|| expect.get("probes"))
        .and_then(|v| v.as_array())
    else {
        return;
    };
    let key = lpkg_format::SecretKey::from_seed([7; 32]);
    let trust = lpkg_format::TrustStore::from_keys([key.public()]).unwrap();
    let mut package = lpkg_format::Package::new(built.manifest, built.payloads).unwrap();
    package.sign(&key).unwrap();
    let bytes = package.to_bytes();

    let mut program = LiveProgram::start(&c.path(&format!("old-{shape}/prog")));
    let pid = program.child.0.id() as i32;
    // spawn returns before exec and before ld.so maps the libraries: wait until the program
    // waits for its first line (blocked in read(0, ...) on fd 0: system call 0 on x86_64, 3
    // in an i386 process).
    let reading = match c.machine {
        Machine::M64 => "0 0x0 ",
        Machine::M32 => "3 0x0 ",
    };
    let started = Instant::now();
    while !std::fs::read_to_string(format!("/proc/{pid}/syscall"))
        .unwrap_or_default()
        .starts_with(reading)
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{case}/{shape}: program never read its input"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    let options = lpkg_applier::ApplyOptions::default();
    let report = lpkg_applier::apply(pid, &bytes, &trust, &options)
        .unwrap_or_else(|e| panic!("{case}/{shape}: live apply failed: {e}"));
    for probe in probes {
        let row: Vec<i64> = probe
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_integer().unwrap())
            .collect();
        assert_eq!(
            program.ask(row[0]),
            row[2],
            "{case}/{shape}: patched process answers {} wrongly",
            row[0]
        );
    }
    let originals: Vec<(u64, Vec<u8>)> = report
        .entries
        .iter()
        .map(|e| {
            (
                e.address,
                (0..e.original.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&e.original[i..i + 2], 16).unwrap())
                    .collect(),
            )
        })
        .collect();
    lpkg_applier::revert(pid, &lpkg_applier::Selection::Latest, options.timeout)
        .unwrap_or_else(|e| panic!("{case}/{shape}: live revert failed: {e}"));
    for (address, original) in originals {
        let live = lpkg_kernel_read(pid, address, original.len());
        assert_eq!(
            live, original,
            "{case}/{shape}: entry {address:#x} not restored"
        );
    }
    let first = probes[0].as_array().unwrap()[0].as_integer().unwrap();
    program.ask(first);
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    for line in maps.lines() {
        let (start, end) = line.split(' ').next().unwrap().split_once('-').unwrap();
        let range = u64::from_str_radix(start, 16).unwrap()..u64::from_str_radix(end, 16).unwrap();
        assert!(
            !line.contains("lpkg") && !range.contains(&report.module_address),
            "{case}/{shape}: revert left a mapping behind: {line}"
        );
    }
}

/// Reads the target's memory through /proc/PID/mem (we are its parent and root).
fn lpkg_kernel_read(pid: i32, address: u64, len: usize) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::open(format!("/proc/{pid}/mem")).unwrap();
    let mut buf = vec![0; len];
    file.read_exact_at(&mut buf, address).unwrap();
    buf
}

/// The expectations of `case` for `machine`: `expect.toml`, with its `[m32]` table's keys
/// replacing the others for i386.
fn expectations(case: &str, machine: Machine) -> toml::Value {
    let text = std::fs::read_to_string(corpus().join(case).join("expect.toml")).unwrap();
    let mut expect: toml::Value = toml::from_str(&text).unwrap();
    let table = expect.as_table_mut().unwrap();
    let m32 = table.remove("m32");
    if let (Machine::M32, Some(toml::Value::Table(m32))) = (machine, m32) {
        table.extend(m32);
    }
    expect
}

pub fn run_case(case: &str, machine: Machine) {
    let expect = expectations(case, machine);
    let cflags: Vec<String> = expect
        .get("cflags")
        .and_then(|v| v.as_array())
        .map(|a| a.iter().map(|s| s.as_str().unwrap().to_string()).collect())
        .unwrap_or_default();
    let c = compile(case, &cflags, machine);
    if let Some(probes) = expect.get("probes").and_then(|v| v.as_array()) {
        let rows: Vec<Vec<i64>> = probes
            .iter()
            .map(|p| {
                p.as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_integer().unwrap())
                    .collect()
            })
            .collect();
        let inputs: Vec<i64> = rows.iter().map(|r| r[0]).collect();
        for (side, col) in [("old", 1), ("new", 2)] {
            for shape in SHAPES {
                let got = run_probes(&c.path(&format!("{side}-{shape}/prog")), &inputs);
                let want: Vec<i64> = rows.iter().map(|r| r[col]).collect();
                assert_eq!(
                    got, want,
                    "{case}: {side} {shape} build disagrees with the probes"
                );
            }
        }
    }
    let shapes: Vec<String> = match expect.get("shapes") {
        Some(v) => strings(Some(v)).into_iter().collect(),
        None => SHAPES.iter().map(|s| s.to_string()).collect(),
    };
    for shape in shapes {
        let per_shape = expect
            .get(shape.as_str())
            .cloned()
            .unwrap_or_else(|| expect.clone());
        check_shape(case, &c, &shape, &per_shape);
    }
}

/// Every case built backwards (new -> old, against the new build) must give a result or a
/// clear error, never a panic: the corpus doubles as a pool of odd inputs.
#[test]
fn reverse_builds_never_panic() {
    let mut names: Vec<String> = std::fs::read_dir(corpus())
        .unwrap()
        .filter_map(|e| {
            let e = e.unwrap();
            e.path()
                .is_dir()
                .then(|| e.file_name().to_string_lossy().into_owned())
        })
        .collect();
    names.sort();
    let mut panicked = Vec::new();
    for case in &names {
        let text = std::fs::read_to_string(corpus().join(case).join("expect.toml")).unwrap();
        let expect: toml::Value = toml::from_str(&text).unwrap();
        let cflags: Vec<String> = expect
            .get("cflags")
            .and_then(|v| v.as_array())
            .map(|a| a.iter().map(|s| s.as_str().unwrap().to_string()).collect())
            .unwrap_or_default();
        let c = compile(case, &cflags, Machine::M64);
        for (shape, target) in [("pie", "prog"), ("nopie", "prog"), ("pic", "libcase.so")] {
            let mut opts = c.options(shape);
            std::mem::swap(&mut opts.old, &mut opts.new);
            opts.target = c.path(&format!("new-{shape}/{target}"));
            if std::panic::catch_unwind(|| build(&opts)).is_err() {
                panicked.push(format!("{case}/{shape}"));
            }
        }
    }
    assert!(panicked.is_empty(), "builder panicked on: {panicked:?}");
}

macro_rules! cases {
    ($($name:ident),* $(,)?) => {
        $(#[test] fn $name() { run_case(stringify!($name), Machine::M64); })*

        /// The same cases compiled for i386.
        mod m32 {
            use super::{run_case, Machine};
            $(#[test] fn $name() { run_case(stringify!($name), Machine::M32); })*
        }
    };
}

cases!(
    branch_into_entry,
    changed_function,
    cxx_exception,
    changed_initializer,
    changed_size,
    cold_part,
    constprop_clone,
    cswtch,
    debian_flags,
    debug_only,
    existing_data,
    existing_tls,
    function_pointer,
    init_routine,
    inline_changed,
    isra_clone,
    jump_table,
    libc_data,
    libc_new_import,
    line_only,
    line_only_header,
    line_only_allowed,
    line_only_logger,
    moved_unchanged,
    multi_function_text,
    new_data,
    new_functions,
    new_tls,
    part_clone,
    pointer_table,
    several_statics,
    short_function,
    short_function_exported,
    short_function_packed,
    short_function_packed_caller,
    static_local,
    static_renumbered,
    string_literal,
    struct_global,
    struct_layout,
    struct_layout_only,
);
