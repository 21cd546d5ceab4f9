//! The `.deb` (`scripts/build-deb.sh`): built from this test build's binaries, installed with
//! `dpkg -i` on this machine, used (`lpkg --version`, `man -w`, a bash completion), removed with
//! `dpkg -r` and purged. Skipped, touching nothing, where lpkg is already installed otherwise.

use std::path::Path;
use std::process::{Command, Output};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"))
}

fn ok(program: &str, args: &[&str]) -> String {
    let out = run(program, args);
    assert!(
        out.status.success(),
        "{program} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// dpkg with `args`, waiting while another dpkg or apt holds dpkg's lock.
fn dpkg(args: &[&str]) -> String {
    for _ in 0..60 {
        let out = run("dpkg", args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.success() {
            return String::from_utf8(out.stdout).unwrap();
        }
        assert!(stderr.contains("lock"), "dpkg {args:?}: {stderr}");
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
    panic!("dpkg {args:?}: its lock stayed held for a minute");
}

/// Purges the package when dropped, so that a failing test leaves nothing installed.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = run("dpkg", &["--purge", "lpkg"]);
    }
}

fn mode(path: &str) -> u32 {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    assert_eq!((meta.uid(), meta.gid()), (0, 0), "{path} is not root's");
    meta.mode() & 0o7777
}

/// Held (machine-wide) while a test installs lpkg's .deb: tests of other work trees running at
/// the same time would install and remove the same package.
fn deb_lock() -> std::fs::File {
    let lock = std::fs::File::create("/run/lock/lpkg-tests-deb.lock").unwrap();
    lock.lock().unwrap();
    lock
}

#[test]
fn deb_installs_with_man_pages_completions_and_unit_and_removes_cleanly() {
    let _lock = deb_lock();
    let known = run("dpkg-query", &["-W", "-f", "${Status}", "lpkg"]);
    if String::from_utf8_lossy(&known.stdout).contains("installed")
        || Path::new("/usr/bin/lpkg").exists()
    {
        eprintln!("skipped: lpkg is installed on this machine already; not touching it");
        return;
    }
    // Folders that were there before (a store used without the package) stay.
    let before: Vec<&str> = ["/etc/lpkg", "/var/lib/lpkg"]
        .into_iter()
        .filter(|p| Path::new(p).exists())
        .collect();
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_lpkg")).parent().unwrap();
    let out_dir = tempfile::tempdir().unwrap();
    let deb = ok(
        repo().join("scripts/build-deb.sh").to_str().unwrap(),
        &[
            "-o",
            out_dir.path().to_str().unwrap(),
            "--bin-dir",
            bin_dir.to_str().unwrap(),
        ],
    );
    let deb = deb.trim();
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        deb.ends_with(&format!("lpkg_{version}_amd64.deb"))
            || deb.ends_with(&format!("lpkg_{version}_i386.deb")),
        "{deb}"
    );

    // What it holds, owned by root, with the modes lpkg needs.
    let contents = ok("dpkg-deb", &["--contents", deb]);
    for (mode, path) in [
        ("-rwxr-xr-x", "./usr/bin/lpkg"),
        ("drwxr-xr-x", "./etc/lpkg/trusted/"),
        ("drwxr-xr-x", "./var/lib/lpkg/"),
        ("-rw-r--r--", "./lib/systemd/system/lpkg.service"),
        ("-rw-r--r--", "./usr/include/lpkg.h"),
        ("-rw-r--r--", "./usr/share/doc/lpkg/patch-author-guide.md"),
        ("-rw-r--r--", "./usr/share/man/man1/lpkg.1.gz"),
        ("-rw-r--r--", "./usr/share/man/man1/lpkg-apply.1.gz"),
        ("-rw-r--r--", "./usr/share/man/man1/lpkg-daemon.1.gz"),
        ("-rw-r--r--", "./usr/share/bash-completion/completions/lpkg"),
        ("-rw-r--r--", "./usr/share/zsh/vendor-completions/_lpkg"),
        (
            "-rw-r--r--",
            "./usr/share/fish/vendor_completions.d/lpkg.fish",
        ),
    ] {
        assert!(
            contents
                .lines()
                .any(|l| l.starts_with(mode) && l.contains(" root/root ") && l.ends_with(path)),
            "{path} ({mode} root/root) missing:\n{contents}"
        );
    }

    dpkg(&["-i", deb]);
    let installed = Installed;
    assert_eq!(
        ok("/usr/bin/lpkg", &["--version"]).trim(),
        format!("lpkg {version}")
    );
    assert_eq!(
        ok("man", &["-w", "lpkg"]).trim(),
        "/usr/share/man/man1/lpkg.1.gz"
    );
    assert_eq!(
        ok("man", &["-w", "lpkg-revert"]).trim(),
        "/usr/share/man/man1/lpkg-revert.1.gz"
    );
    // Bash completes `lpkg ap` to `apply`, and `lpkg apply --ju` to `--jump-only`.
    let complete = |line: &str| {
        let words: Vec<&str> = line.split(' ').collect();
        let script = format!(
            "source /usr/share/bash-completion/completions/lpkg; COMP_WORDS=({line}); \
             COMP_CWORD={cword}; COMP_LINE='{line}'; COMP_POINT=${{#COMP_LINE}}; \
             _lpkg lpkg '{current}' '{previous}'; echo \"${{COMPREPLY[@]}}\"",
            cword = words.len() - 1,
            current = words[words.len() - 1],
            previous = words[words.len() - 2],
        );
        ok("bash", &["-c", &script])
    };
    assert_eq!(complete("lpkg ap").trim(), "apply");
    assert!(complete("lpkg apply --ju").contains("--jump-only"));
    assert_eq!(mode("/etc/lpkg/trusted"), 0o755);
    assert_eq!(mode("/var/lib/lpkg"), 0o755);
    assert_eq!(mode("/usr/bin/lpkg"), 0o755);

    dpkg(&["-r", "lpkg"]);
    for path in [
        "/usr/bin/lpkg",
        "/usr/share/man/man1/lpkg.1.gz",
        "/usr/share/bash-completion/completions/lpkg",
        "/lib/systemd/system/lpkg.service",
        "/etc/lpkg",
        "/var/lib/lpkg",
    ] {
        let left = Path::new(path).exists() && !before.contains(&path);
        assert!(!left, "{path} left after dpkg -r");
    }
    dpkg(&["--purge", "lpkg"]);
    let status = run("dpkg-query", &["-W", "-f", "${Status}", "lpkg"]);
    assert!(
        !String::from_utf8_lossy(&status.stdout).contains("installed"),
        "{}",
        String::from_utf8_lossy(&status.stdout)
    );
    drop(installed);
}
