//! Test targets: C programs compiled at test time, started and killed by PID, and packages
//! built from them with the library.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use lpkg_format::{Package, SecretKey, TrustStore};

/// The old source: every patched function returns an "old" value.
pub const OLD: &str = include_str!("target_old.c");
/// The fixed source.
pub const NEW: &str = include_str!("target_new.c");

/// A compiled target and the package that fixes it.
pub struct Built {
    /// Keeps the files alive.
    pub _dir: tempfile::TempDir,
    /// The executable.
    pub exe: PathBuf,
    /// The signed package.
    pub package: Vec<u8>,
    /// Trust store holding the signer.
    pub trust: TrustStore,
}

/// Runs gcc and fails the test with its stderr if it fails (relative paths from the current
/// folder).
pub fn gcc(args: &[&str]) {
    gcc_in(Path::new("."), args)
}

/// [`gcc`] with relative paths from `cwd`.
pub fn gcc_in(cwd: &Path, args: &[&str]) {
    let out = Command::new("gcc")
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("gcc runs");
    assert!(
        out.status.success(),
        "gcc {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The architectures targets are compiled for: gcc's `-m64` (x86_64) and `-m32` (i386).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bits {
    /// x86_64.
    M64,
    /// i386, run by the kernel's IA32 emulation.
    M32,
}

impl Bits {
    /// gcc's flag.
    pub fn flag(self) -> &'static str {
        match self {
            Bits::M64 => "-m64",
            Bits::M32 => "-m32",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Compiles the x86_64 target once per test binary and builds its package.
pub fn built() -> &'static Built {
    built_for(Bits::M64)
}

/// Compiles the target for `bits` once per test binary and builds its package.
pub fn built_for(bits: Bits) -> &'static Built {
    static BUILT: [OnceLock<Built>; 2] = [OnceLock::new(), OnceLock::new()];
    BUILT[bits.index()].get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n);
        std::fs::write(p("old.c"), OLD).unwrap();
        std::fs::write(p("new.c"), NEW).unwrap();
        let flags = [
            bits.flag(),
            "-O2",
            "-g",
            "-ffunction-sections",
            "-fdata-sections",
            "-fPIE",
            "-c",
        ];
        for name in ["old", "new"] {
            let src = p(&format!("{name}.c"));
            let obj = p(&format!("{name}.o"));
            let mut args: Vec<&str> = flags.to_vec();
            args.extend(["-o", obj.to_str().unwrap(), src.to_str().unwrap()]);
            gcc(&args);
        }
        let exe = p("target");
        gcc(&[
            bits.flag(),
            "-pie",
            "-pthread",
            "-o",
            exe.to_str().unwrap(),
            p("old.o").to_str().unwrap(),
        ]);
        let built = lpkg_builder::build(&lpkg_builder::BuildOptions {
            target: exe.clone(),
            old: p("old.o"),
            new: p("new.o"),
            name: "safety".into(),
            version: "1".into(),
            description: String::new(),
            allow_line_changes: false,
            ..Default::default()
        })
        .expect("package builds");
        let key = SecretKey::from_seed(SEED);
        let mut package = Package::new(built.manifest, built.payloads).unwrap();
        package.sign(&key).unwrap();
        Built {
            exe,
            package: package.to_bytes(),
            trust: trust(),
            _dir: dir,
        }
    })
}

/// Init and exit routines appended to the fixed source: each says when it starts and ends
/// and sleeps a second in between, so a test can kill lpkg while one runs.
const ROUTINES: &str = r#"
#include <unistd.h>
#include "lpkg.h"
static int slow_init(void) {
    if (write(1, "in-init\n", 8) != 8) return 1;
    sleep(1);
    return write(1, "init-done\n", 10) != 10;
}
static int slow_exit(void) {
    if (write(1, "in-exit\n", 8) != 8) return 1;
    sleep(1);
    return write(1, "exit-done\n", 10) != 10;
}
LPKG_INIT(slow_init);
LPKG_EXIT(slow_exit);
"#;

/// A package for [`built`]'s target whose fix comes with slow init and exit routines.
#[allow(dead_code)] // used by crash.rs only
pub fn built_with_routines() -> &'static [u8] {
    built_with_routines_for(Bits::M64)
}

/// [`built_with_routines`] for the target compiled for `bits`.
#[allow(dead_code)] // used by crash.rs only
pub fn built_with_routines_for(bits: Bits) -> &'static [u8] {
    static PACKAGE: [OnceLock<(tempfile::TempDir, Vec<u8>)>; 2] =
        [OnceLock::new(), OnceLock::new()];
    let (_, package) = PACKAGE[bits.index()].get_or_init(|| {
        let b = built_for(bits);
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("new.c");
        let obj = dir.path().join("new.o");
        std::fs::write(&src, format!("{NEW}{ROUTINES}")).unwrap();
        let include = concat!(env!("CARGO_MANIFEST_DIR"), "/../builder/include");
        gcc(&[
            bits.flag(),
            "-O2",
            "-g",
            "-ffunction-sections",
            "-fdata-sections",
            "-fPIE",
            "-I",
            include,
            "-c",
            "-o",
            obj.to_str().unwrap(),
            src.to_str().unwrap(),
        ]);
        let built = lpkg_builder::build(&lpkg_builder::BuildOptions {
            target: b.exe.clone(),
            old: b.exe.with_file_name("old.o"),
            new: obj,
            name: "routines".into(),
            version: "1".into(),
            description: String::new(),
            allow_line_changes: false,
            ..Default::default()
        })
        .expect("package with routines builds");
        let mut package = Package::new(built.manifest, built.payloads).unwrap();
        package.sign(&SecretKey::from_seed(SEED)).unwrap();
        (dir, package.to_bytes())
    });
    package
}

/// The seed of the key that signs the test packages ([`trust`] trusts it).
pub const SEED: [u8; 32] = [7; 32];

/// The trust store holding the test signer (the same in every process).
pub fn trust() -> TrustStore {
    TrustStore::from_keys([SecretKey::from_seed(SEED).public()]).unwrap()
}

/// A running target; killed on drop.
pub struct Target {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Target {
    /// Starts the target in `mode` (see target_old.c).
    pub fn start(exe: &Path, mode: &str) -> Target {
        let mut command = Command::new(exe);
        command.arg(mode);
        Target::spawn(command)
    }

    fn spawn(mut command: Command) -> Target {
        let mut child = command
            .stdout(Stdio::piped())
            .spawn()
            .expect("target starts");
        let stdout = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let target = Target { child, lines };
        target.wait_for(|_| true, "first output");
        target
    }

    /// Starts the target in `mode` with address-space randomization off (`setarch -R`), so
    /// two such processes have the same layout; as process `pid` if given, a pid just freed:
    /// the kernel is asked to give it out next (`ns_last_pid`, root only), again until it does
    /// (other processes may take it first). Panics after 200 tries.
    #[allow(dead_code)] // used by crash.rs only
    pub fn start_fixed(exe: &Path, mode: &str, pid: Option<i32>) -> Target {
        for _ in 0..200 {
            if let Some(pid) = pid {
                std::fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string())
                    .expect("ns_last_pid is writable (root)");
            }
            let mut command = Command::new("setarch");
            command.args(["x86_64", "-R"]).arg(exe).arg(mode);
            let target = Target::spawn(command);
            if pid.is_none_or(|pid| target.pid() == pid) {
                return target;
            }
        }
        panic!("could not start a process as pid {pid:?}");
    }

    /// The process id.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Waits (5 s at most) for an output line after now that satisfies `ok`, returning it.
    pub fn wait_for(&self, ok: impl Fn(&str) -> bool, what: &str) -> String {
        let skip = self.lines.lock().unwrap().len();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Some(line) = self.lines.lock().unwrap()[skip..].iter().find(|l| ok(l)) {
                return line.clone();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("target {} never printed {what}", self.pid());
    }

    /// The next line printed from now on ("A B": the two patched values).
    pub fn next_line(&self) -> String {
        self.wait_for(|_| true, "a line")
    }

    /// True when any line printed so far satisfies `ok`.
    pub fn printed(&self, ok: impl Fn(&str) -> bool) -> bool {
        self.lines.lock().unwrap().iter().any(|l| ok(l))
    }

    /// True when the process still exists and is not a zombie.
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
