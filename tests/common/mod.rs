//! Helpers for the CLI tests: run the built `lpkg`, make keys and packages in a temp dir.
// Shared by several test binaries; each uses only some of these helpers.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Output, Stdio};

use lpkg_format::{Manifest, Package, SecretKey, MODULE_PAYLOAD, SYMBOLS_PAYLOAD};

/// What one run of `lpkg` produced.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The single error line, without its `error: ` prefix; fails unless stderr is exactly one line.
    pub fn error_line(&self) -> &str {
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "stderr is not one line: {:?}", self.stderr);
        lines[0]
            .strip_prefix("error: ")
            .unwrap_or_else(|| panic!("no error prefix: {:?}", lines[0]))
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: {:?}", self.stdout))
    }
}

/// A scratch folder with helpers; everything is removed on drop.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Scratch {
        Scratch {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs `lpkg` with `args`; `LPKG_TRUST` is removed unless `trust_env` is given.
    pub fn run_env(&self, args: &[&str], trust_env: Option<&Path>) -> Run {
        let mut command = Command::new(env!("CARGO_BIN_EXE_lpkg"));
        command.args(args).current_dir(self.dir.path());
        match trust_env {
            Some(path) => command.env("LPKG_TRUST", path),
            None => command.env_remove("LPKG_TRUST"),
        };
        let Output {
            status,
            stdout,
            stderr,
        } = command.output().expect("run lpkg");
        Run {
            code: status.code().expect("lpkg exited by signal"),
            stdout: String::from_utf8(stdout).unwrap(),
            stderr: String::from_utf8(stderr).unwrap(),
        }
    }

    pub fn run(&self, args: &[&str]) -> Run {
        self.run_env(args, None)
    }

    /// `lpkg keygen -o NAME`, returning (NAME.key, NAME.pub).
    pub fn keygen(&self, name: &str) -> (PathBuf, PathBuf) {
        let run = self.run(&["keygen", "-o", self.path(name).to_str().unwrap()]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        (
            self.path(&format!("{name}.key")),
            self.path(&format!("{name}.pub")),
        )
    }

    /// The test-vector package content, signed by `key`, written to NAME; returns its path.
    pub fn package(&self, name: &str, key: &Path) -> PathBuf {
        let package = signed_package(&SecretKey::read(key).unwrap());
        let path = self.path(name);
        std::fs::write(&path, package.to_bytes()).unwrap();
        path
    }

    /// `lpkg build` of `target` from `old` to `new` objects, signed with `key`, named `name`
    /// `version`, stacked on `requires`; the package file is `out` in the scratch folder.
    /// Fails the test if the build fails.
    #[allow(clippy::too_many_arguments)]
    pub fn build(
        &self,
        target: &Path,
        old: &Path,
        new: &Path,
        key: &Path,
        out: &str,
        (name, version): (&str, &str),
        requires: &[&Path],
    ) -> PathBuf {
        let path = self.path(out);
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
            path.to_str().unwrap(),
            "--name",
            name,
            "--version",
            version,
        ];
        for r in requires {
            args.extend(["--requires", r.to_str().unwrap()]);
        }
        let run = self.run(&args);
        assert_eq!(
            run.code, 0,
            "stdout: {}\nstderr: {}",
            run.stdout, run.stderr
        );
        path
    }

    /// `package` with its manifest changed by `edit` and signed again by `key`, as `name`.
    pub fn resigned(
        &self,
        package: &Path,
        key: &Path,
        name: &str,
        edit: impl FnOnce(&mut Manifest),
    ) -> PathBuf {
        let original = Package::from_bytes(&std::fs::read(package).unwrap()).unwrap();
        let mut manifest = original.manifest().clone();
        edit(&mut manifest);
        let payloads = original
            .payloads()
            .map(|(name, bytes)| (name.to_owned(), bytes.to_vec()))
            .collect();
        let mut changed = Package::new(manifest, payloads).unwrap();
        changed.sign(&SecretKey::read(key).unwrap()).unwrap();
        let path = self.path(name);
        std::fs::write(&path, changed.to_bytes()).unwrap();
        path
    }
}

fn vectors() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("spec/vectors")
}

/// The payloads of the test-vector package.
pub fn payloads() -> Vec<(String, Vec<u8>)> {
    [MODULE_PAYLOAD, SYMBOLS_PAYLOAD]
        .iter()
        .map(|name| {
            (
                name.to_string(),
                std::fs::read(vectors().join(name)).unwrap(),
            )
        })
        .collect()
}

/// The test-vector manifest and payloads signed by `key`.
pub fn signed_package(key: &SecretKey) -> Package {
    let text = std::fs::read_to_string(vectors().join("manifest.toml")).unwrap();
    let mut package = Package::new(Manifest::from_toml(&text).unwrap(), payloads()).unwrap();
    package.sign(key).unwrap();
    package
}

/// Offset of the first byte of the `module.o` payload in `package`'s bytes.
pub fn module_offset(package: &Package) -> usize {
    16 + package.manifest_bytes().len() + 4 + 2 + MODULE_PAYLOAD.len() + 8
}

/// The architectures live targets are compiled for: gcc's `-m64` (x86_64) and `-m32` (i386,
/// run by the kernel's IA32 emulation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bits {
    /// x86_64.
    M64,
    /// i386.
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

    /// An index for per-architecture statics.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Runs gcc; fails the test if it fails.
pub fn gcc(args: &[&str]) {
    let out = Command::new("gcc").args(args).output().expect("run gcc");
    assert!(
        out.status.success(),
        "gcc {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A running program that answers each line written to its stdin with one line; killed (by
/// its PID) when dropped.
pub struct Program {
    pub child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Program {
    /// Starts `command` with piped stdin and stdout.
    pub fn start(command: &mut Command) -> Program {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start target");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Program {
            child,
            stdin,
            stdout,
        }
    }

    /// Its answer to `line`; fails the test if it died.
    pub fn ask(&mut self, line: &str) -> String {
        writeln!(self.stdin, "{line}").unwrap();
        let mut answer = String::new();
        self.stdout.read_line(&mut answer).unwrap();
        assert!(!answer.is_empty(), "target {} died", self.child.id());
        answer.trim_end().to_owned()
    }

    /// Writes `line` without waiting for the answer ([`Program::answer`] reads it later).
    pub fn send(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").unwrap();
    }

    /// Its next answer; fails the test if it died.
    pub fn answer(&mut self) -> String {
        let mut answer = String::new();
        self.stdout.read_line(&mut answer).unwrap();
        assert!(!answer.is_empty(), "target {} died", self.child.id());
        answer.trim_end().to_owned()
    }

    /// Its pid, as the command line takes it.
    pub fn pid(&self) -> String {
        self.child.id().to_string()
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
