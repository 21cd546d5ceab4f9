//! Test helpers: C targets compiled once per test binary, processes killed by PID on drop,
//! line-based talk with a target, and a watchdog for every test.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::OnceLock;
use std::time::Duration;

/// How a C target is built: for x86_64, or for i386 (`-m32`, IA32 emulation), position
/// independent (gcc's default) or not. Tests that hold for both architectures run once per
/// build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Build {
    /// `-m64`.
    X86_64,
    /// `-m32`, PIE.
    I386,
    /// `-m32 -no-pie`: the program at its link-time address, 0x8048000.
    I386NoPie,
}

impl Build {
    fn flags(self) -> &'static [&'static str] {
        match self {
            Build::X86_64 => &["-m64"],
            Build::I386 => &["-m32"],
            Build::I386NoPie => &["-m32", "-no-pie", "-fno-pie"],
        }
    }

    /// The architecture lpkg must see in a process of this build.
    pub fn arch(self) -> lpkg_kernel::arch::Arch {
        match self {
            Build::X86_64 => lpkg_kernel::arch::Arch::X86_64,
            Build::I386 | Build::I386NoPie => lpkg_kernel::arch::Arch::I386,
        }
    }
}

/// The C programs of tests/targets built for i386 too.
const COMPAT_TARGETS: [&str; 6] = ["target", "fpu32", "leaf", "writer", "farjump", "sigframe"];

/// A C target of tests/targets built as `build` (the i386 builds exist for
/// [`COMPAT_TARGETS`]), compiled once per test binary and build.
pub fn bin_for(name: &str, build: Build) -> PathBuf {
    if build == Build::X86_64 {
        return bin(name);
    }
    static DIRS: OnceLock<std::sync::Mutex<HashMap<String, &'static tempfile::TempDir>>> =
        OnceLock::new();
    let dirs = DIRS.get_or_init(Default::default);
    let mut dirs = dirs.lock().unwrap_or_else(|e| e.into_inner());
    let dir = dirs.entry(format!("{build:?}")).or_insert_with(|| {
        let dir: &'static tempfile::TempDir = Box::leak(Box::new(tempfile::tempdir().unwrap()));
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/targets");
        for name in COMPAT_TARGETS {
            let mut flags = vec!["-pthread"];
            flags.extend_from_slice(build.flags());
            compile(
                &src.join(format!("{name}.c")),
                &dir.path().join(name),
                &flags,
            );
        }
        dir
    });
    dir.path().join(name)
}

/// Directory holding the compiled C programs of tests/targets.
pub fn bin(name: &str) -> PathBuf {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/targets");
        for name in [
            "target",
            "sender",
            "holder",
            "fpu",
            "onaltstack",
            "writer",
            "deepstack",
            "xstate",
            "leaf",
            "farjump",
            "sigframe",
        ] {
            compile(
                &src.join(format!("{name}.c")),
                &dir.path().join(name),
                &["-pthread"],
            );
        }
        // No libc at all, so no signal restorer in the program.
        compile(
            &src.join("nolibc.S"),
            &dir.path().join("nolibc"),
            &["-nostdlib", "-static"],
        );
        dir
    });
    dir.path().join(name)
}

fn compile(src: &Path, out: &Path, flags: &[&str]) {
    let result = Command::new("gcc")
        .args(["-O2", "-g", "-Wall"])
        .args(flags)
        .arg("-o")
        .arg(out)
        .arg(src)
        .output()
        .expect("run gcc");
    assert!(
        result.status.success(),
        "gcc {}: {}",
        src.display(),
        String::from_utf8_lossy(&result.stderr)
    );
}

/// A process started by the test; SIGKILLed by PID and reaped on drop.
pub struct Proc {
    pub child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
}

impl Proc {
    pub fn spawn(program: &Path, args: &[&str]) -> Proc {
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", program.display()));
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        Proc {
            child,
            stdin,
            lines,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").expect("write to target");
        stdin.flush().unwrap();
    }

    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Next output line; it must start with `prefix` (an `ERR` line fails the test).
    pub fn expect(&mut self, prefix: &str, timeout: Duration) -> String {
        let line = self
            .lines
            .recv_timeout(timeout)
            .unwrap_or_else(|e| panic!("no line starting with {prefix:?} within {timeout:?}: {e}"));
        assert!(
            line.starts_with(prefix),
            "expected {prefix:?}, got {line:?}"
        );
        line
    }

    /// Skip lines until one starts with `prefix`; a line starting with `bad` or `ERR` fails.
    pub fn wait_line(&mut self, prefix: &str, timeout: Duration) -> String {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = self.lines.recv_timeout(left).unwrap_or_else(|e| {
                panic!("no line starting with {prefix:?} within {timeout:?}: {e}")
            });
            assert!(
                !line.starts_with("bad") && !line.starts_with("ERR"),
                "target reports {line:?}"
            );
            if line.starts_with(prefix) {
                return line;
            }
        }
    }

    /// No output line arrives within `wait`.
    pub fn expect_silence(&mut self, wait: Duration) {
        if let Ok(line) = self.lines.recv_timeout(wait) {
            panic!("unexpected output {line:?}");
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the PID of our own child, which is not reaped before wait below.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// `key=value` fields of a line, values parsed as decimal or 0x-hex.
pub fn fields(line: &str) -> HashMap<String, i64> {
    line.split_whitespace()
        .filter_map(|w| w.split_once('='))
        .map(|(k, v)| {
            let n = match v.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16).expect("hex") as i64,
                None => v.parse().unwrap_or_else(|_| panic!("number in {line:?}")),
            };
            (k.to_owned(), n)
        })
        .collect()
}

/// A running C target with the addresses it printed at start.
pub struct Target {
    pub proc: Proc,
    pub addr: HashMap<String, u64>,
}

impl Target {
    pub fn start(args: &[&str]) -> Target {
        Target::start_as(Build::X86_64, args)
    }

    /// The target built as `build`.
    pub fn start_as(build: Build, args: &[&str]) -> Target {
        let mut proc = Proc::spawn(&bin_for("target", build), args);
        let ready = proc.expect("ready", Duration::from_secs(10));
        let addr = fields(&ready)
            .into_iter()
            .map(|(k, v)| (k, v as u64))
            .collect();
        Target { proc, addr }
    }

    pub fn pid(&self) -> i32 {
        self.proc.pid()
    }

    pub fn a(&self, name: &str) -> u64 {
        self.addr[name]
    }

    /// Ask for the target's counters.
    pub fn ping(&mut self) -> HashMap<String, i64> {
        self.proc.send("ping");
        fields(&self.proc.expect("pong", Duration::from_secs(10)))
    }
}

/// Run `body` on its own thread and fail the test when it takes longer than `secs`.
pub fn with_timeout<F: FnOnce() + Send + 'static>(secs: u64, body: F) {
    let (tx, rx) = mpsc::channel();
    let handle = std::thread::spawn(move || {
        body();
        let _ = tx.send(());
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(()) => handle.join().unwrap(),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            if let Err(panic) = handle.join() {
                std::panic::resume_unwind(panic);
            }
        }
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("test timed out after {secs} s"),
    }
}
