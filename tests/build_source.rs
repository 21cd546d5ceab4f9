//! `lpkg build-source` on a small C project with a Makefile (tests/fixtures/mini-project): the
//! package applies to the running release and changes its behaviour; the source tree is never
//! modified; a failing build shows the compiler's output; a release built without
//! `-ffunction-sections` can be patched; `--reuse-original` rebuilds only what the fix touches;
//! the project packaged for Debian (tests/fixtures/mini-debian) is built by `dpkg-buildpackage`
//! and the package patches the stripped binary of its `.deb`, with the `-dbgsym` debug file.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn patch(name: &str) -> PathBuf {
    fixtures().join("mini-project-patches").join(name)
}

fn lpkg(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lpkg"))
        .args(args)
        .current_dir(dir)
        .env_remove("LPKG_TRUST")
        .output()
        .expect("run lpkg")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "lpkg failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A scratch folder holding a copy of the fixture project (`src/`) and a key pair.
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Scratch {
        let dir = tempfile::tempdir().unwrap();
        copy(&fixtures().join("mini-project"), &dir.path().join("src"));
        ok(&lpkg(dir.path(), &["keygen", "-o", "k"]));
        Scratch { dir }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn lpkg(&self, args: &[&str]) -> Output {
        lpkg(self.dir.path(), args)
    }
}

fn copy(from: &Path, to: &Path) {
    let status = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success());
}

fn digest(dir: &Path) -> String {
    lpkg_builder::source::tree_digest(dir).unwrap()
}

/// A started program whose stdout goes to a file; killed on drop.
struct Running {
    child: Child,
    log: PathBuf,
}

impl Running {
    fn start(bin: &Path, log: PathBuf) -> Running {
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(bin)
            .stdout(out)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let running = Running { child, log };
        running.wait_for_line("price 14");
        running
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }

    /// Waits (at most 10 s) until the last printed line is `want`.
    fn wait_for_line(&self, want: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            let last = text.lines().last().unwrap_or("");
            if last == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "last line {last:?}, want {want:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn apply_and_check(s: &Scratch, package: &str, running: &Running) {
    let pid = running.pid();
    ok(&s.lpkg(&[
        "apply",
        package,
        "--pid",
        &pid,
        "--trust",
        "k.pub",
        "--timeout",
        "10",
    ]));
    running.wait_for_line("price 21");
    ok(&s.lpkg(&["revert", "--pid", &pid, "--timeout", "10"]));
    running.wait_for_line("price 14");
}

fn has_section(object: &Path, name: &str) -> bool {
    let out = Command::new("readelf")
        .arg("-SW")
        .arg(object)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).contains(name)
}

#[test]
fn patches_a_release_built_without_function_sections_and_leaves_the_tree_alone() {
    let s = Scratch::new();
    let before = digest(&s.path("src"));
    // The release as deployed: the project's own Makefile, no lpkg flags.
    copy(&s.path("src"), &s.path("release"));
    let make = Command::new("make")
        .arg("-s")
        .current_dir(s.path("release"))
        .status()
        .unwrap();
    assert!(make.success());
    assert!(!has_section(&s.path("release/src/calc.o"), ".text.price"));
    let running = Running::start(&s.path("release/app"), s.path("out.log"));

    let fix = patch("fix.patch");
    let out = s.lpkg(&[
        "build-source",
        "--src",
        "src",
        "--patch",
        fix.to_str().unwrap(),
        "--target",
        "app",
        "--deployed",
        "release/app",
        "--key",
        "k.key",
        "-o",
        "fix.lpkg",
        "--work",
        "work",
        "--quiet",
    ]);
    let stdout = ok(&out);
    assert!(stdout.contains("Replace price"), "{stdout}");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "",
        "--quiet prints nothing"
    );
    // The wrapper added the flags to the project's own (`CC = gcc`, `-Wall`) build.
    assert!(has_section(
        &s.path("work/original/src/calc.o"),
        ".text.price"
    ));
    assert_eq!(
        digest(&s.path("src")),
        before,
        "the source tree was modified"
    );
    apply_and_check(&s, "fix.lpkg", &running);
}

#[test]
fn reuse_original_rebuilds_only_the_patched_file() {
    let s = Scratch::new();
    let fix = patch("fix.patch");
    let fix = fix.to_str().unwrap();
    let first = s.lpkg(&[
        "build-source",
        "--src",
        "src",
        "--patch",
        fix,
        "--target",
        "app",
        "--key",
        "k.key",
        "-o",
        "first.lpkg",
        "--work",
        "w1",
        "--jobs",
        "2",
    ]);
    ok(&first);
    let progress = String::from_utf8_lossy(&first.stderr);
    for step in [
        "build original: done in",
        "build patched: done in",
        "diff: done in",
        "sign: done in",
    ] {
        assert!(progress.contains(step), "no {step:?} in {progress}");
    }
    let second = s.lpkg(&[
        "build-source",
        "--src",
        "src",
        "--patch",
        fix,
        "--target",
        "app",
        "--key",
        "k.key",
        "-o",
        "second.lpkg",
        "--work",
        "w2",
        "--reuse-original",
        "w1/original",
    ]);
    ok(&second);
    let progress = String::from_utf8_lossy(&second.stderr);
    assert!(!progress.contains("build original"), "{progress}");
    let log = std::fs::read_to_string(s.path("w2/shim-patched/build.log")).unwrap();
    assert!(log.contains("src/calc.c"), "{log}");
    assert!(!log.contains("src/main.c"), "main.c was rebuilt: {log}");
    assert!(!s.path("w2/original").exists());
    let running = Running::start(&s.path("w1/original/app"), s.path("out.log"));
    apply_and_check(&s, "second.lpkg", &running);
}

#[test]
fn failing_build_shows_the_compiler_output_and_writes_no_package() {
    let s = Scratch::new();
    let broken = patch("broken.patch");
    let out = s.lpkg(&[
        "build-source",
        "--src",
        "src",
        "--patch",
        broken.to_str().unwrap(),
        "--target",
        "app",
        "--key",
        "k.key",
        "-o",
        "broken.lpkg",
        "--quiet",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("build of"), "{stderr}");
    assert!(stderr.contains("error: expected expression"), "{stderr}");
    assert!(stderr.contains("quantity * 3 +;"), "{stderr}");
    assert!(!s.path("broken.lpkg").exists());
}

#[test]
fn patch_that_does_not_apply_is_an_error() {
    let s = Scratch::new();
    let fix = patch("fix.patch");
    // Apply the fix to the source first: the same patch no longer applies.
    let status = Command::new("patch")
        .args(["-p1", "--batch", "-i"])
        .arg(&fix)
        .current_dir(s.path("src"))
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let out = s.lpkg(&[
        "build-source",
        "--src",
        "src",
        "--patch",
        fix.to_str().unwrap(),
        "--target",
        "app",
        "--key",
        "k.key",
        "-o",
        "x.lpkg",
        "--quiet",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("does not apply"), "{stderr}");
}

#[test]
fn patch_that_changes_nothing_compiled_names_the_files_it_changes() {
    let s = Scratch::new();
    let notes = s.path("notes.patch");
    std::fs::write(
        &notes,
        "--- /dev/null\n+++ b/docs/NEWS\n@@ -0,0 +1 @@\n+price rounding fixed\n",
    )
    .unwrap();
    let out = s.lpkg(&[
        "build-source",
        "--src",
        "src",
        "--patch",
        notes.to_str().unwrap(),
        "--target",
        "app",
        "--key",
        "k.key",
        "-o",
        "x.lpkg",
        "--quiet",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no object file differs")
            && stderr
                .contains("the patches change docs/NEWS, and no object built from them differs"),
        "{stderr}"
    );
    assert!(!s.path("x.lpkg").exists());
}

/// Runs `program args` in `dir`, failing the test with its output if it fails.
fn run_in(dir: &Path, program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_debian_package_built_by_dpkg_buildpackage_patches_its_stripped_binary() {
    let s = Scratch::new();
    copy(
        &fixtures().join("mini-debian/debian"),
        &s.path("src/debian"),
    );
    // The distribution's build: its .deb holds the stripped binary, its -dbgsym the debug file.
    copy(&s.path("src"), &s.path("dist"));
    run_in(&s.path("dist"), "dpkg-buildpackage", &["-b", "-uc", "-us"]);
    let root = s.path("");
    run_in(&root, "dpkg-deb", &["-x", "mini_1.0_amd64.deb", "deployed"]);
    run_in(
        &root,
        "dpkg-deb",
        &["-x", "mini-dbgsym_1.0_amd64.deb", "dbgsym"],
    );
    let deployed = s.path("deployed/usr/bin/mini");
    assert!(
        !has_section(&deployed, ".symtab"),
        "the .deb's binary is stripped"
    );

    let fix = patch("fix.patch");
    let out = s.lpkg(&[
        "build-source",
        "--src",
        "src",
        "--patch",
        fix.to_str().unwrap(),
        "--target",
        "app",
        "--deployed",
        deployed.to_str().unwrap(),
        "--debug-dir",
        "dbgsym/usr/lib/debug",
        "--objects",
        "src",
        "--key",
        "k.key",
        "-o",
        "fix.lpkg",
        "--work",
        "work",
        "--",
        "dpkg-buildpackage",
        "-b",
        "-uc",
        "-us",
    ]);
    let stdout = ok(&out);
    assert!(stdout.contains("Replace price"), "{stdout}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("(by build-id)"), "{stderr}");
    // The wrapper's flags were added to dpkg-buildflags' (the Makefile's own have no
    // -fstack-protector-strong): the original build is configured as the distribution's.
    let info = Command::new("readelf")
        .args(["--debug-dump=info"])
        .arg(s.path("work/original/src/calc.o"))
        .output()
        .unwrap();
    let info = String::from_utf8_lossy(&info.stdout);
    let producer = info
        .lines()
        .find(|l| l.contains("DW_AT_producer"))
        .unwrap_or_default();
    for flag in ["-fstack-protector-strong", "-ffunction-sections"] {
        assert!(producer.contains(flag), "{flag} not in {producer}");
    }
    let running = Running::start(&deployed, s.path("out.log"));
    apply_and_check(&s, "fix.lpkg", &running);
}

/// `--work` must be a new folder outside the source tree: an existing one (whose files would
/// mix with the build's) and one inside `--src` (never modified, and copied into itself) are
/// refused before anything is built; so is `--jobs 0`.
#[test]
fn a_work_folder_that_exists_or_lies_in_the_source_tree_is_refused() {
    let s = Scratch::new();
    let before = digest(&s.path("src"));
    let fix = patch("fix.patch");
    std::fs::create_dir(s.path("used")).unwrap();
    std::fs::write(s.path("used/note"), "mine").unwrap();
    for (work, jobs, says, code) in [
        ("used", "1", "--work used: already exists", 1),
        ("src", "1", "--work src: already exists", 1),
        (
            "src/work",
            "1",
            "--work src/work: inside the source tree",
            1,
        ),
        ("fresh", "0", "--jobs", 2),
    ] {
        let out = s.lpkg(&[
            "build-source",
            "--src",
            "src",
            "--patch",
            fix.to_str().unwrap(),
            "--target",
            "app",
            "--key",
            "k.key",
            "-o",
            "fix.lpkg",
            "--work",
            work,
            "--jobs",
            jobs,
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{work}: {stderr}");
        assert!(stderr.contains(says), "{work}: {stderr}");
    }
    assert_eq!(
        digest(&s.path("src")),
        before,
        "the source tree was modified"
    );
    assert_eq!(
        std::fs::read_to_string(s.path("used/note")).unwrap(),
        "mine"
    );
    assert!(!s.path("fix.lpkg").exists() && !s.path("fresh").exists());
}
