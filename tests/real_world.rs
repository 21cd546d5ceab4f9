//! Real software, real security fixes, end to end: `examples/real-world/run.sh --ci` builds one
//! memcached CVE fix and one libxml2 CVE fix from Debian's source packages with
//! `lpkg build-source`, applies each to the running release under load, checks the load, the
//! fix's reproducer (bug before apply, fixed after, bug again after revert) and the revert.
//!
//! Needs what `scripts/install-deps.sh` installs (deb-src lines, memcached's build dependencies)
//! and root (ptrace, memcached's `-u nobody`). `LPKG_SKIP_REAL_WORLD=1` skips it on a machine
//! without them.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Far above the ~2-4 minutes the run takes on 2 busy cores; only a hang gets here.
const TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// The run's process group, killed (with memcached, the load and the worker) if the test ends
/// before it does.
struct Group(u32);

impl Drop for Group {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0)])
            .stderr(Stdio::null())
            .status();
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[test]
fn ci_fixes_of_memcached_and_libxml2_apply_live_and_revert() {
    if std::env::var_os("LPKG_SKIP_REAL_WORLD").is_some() {
        eprintln!("LPKG_SKIP_REAL_WORLD set: real-world run skipped");
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let scratch = tempfile::tempdir().unwrap();
    // memcached runs as nobody and reads its SASL password database from the run's folder.
    std::fs::set_permissions(
        scratch.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o711),
    )
    .unwrap();
    let log_path = scratch.path().join("run.log");
    let results = scratch.path().join("results.tsv");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = {
        use std::os::unix::process::CommandExt;
        Command::new(root.join("examples/real-world/run.sh"))
            .arg("--ci")
            .env("LPKG", env!("CARGO_BIN_EXE_lpkg"))
            .env("RW_RESULTS", &results)
            .env("TMPDIR", scratch.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("start examples/real-world/run.sh")
    };
    let group = Group(child.id());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > TIMEOUT {
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    drop(group);
    let mut output = String::new();
    std::fs::File::open(&log_path)
        .unwrap()
        .read_to_string(&mut output)
        .unwrap();
    let Some(status) = status else {
        panic!(
            "run.sh --ci still running after {TIMEOUT:?}; last lines:\n{}",
            tail(&output, 60)
        );
    };
    assert!(
        status.success(),
        "run.sh --ci failed ({status}); last lines:\n{}",
        tail(&output, 60)
    );
    // The script checks this too; the test does not trust a script that may have changed.
    let table = std::fs::read_to_string(&results).unwrap();
    for package in ["memcached", "libxml2"] {
        let row = table
            .lines()
            .find(|l| l.starts_with(&format!("{package}\t")))
            .unwrap_or_else(|| panic!("no {package} row in the results:\n{table}"));
        let cols: Vec<&str> = row.split('\t').collect();
        assert!(
            cols[2].starts_with("applied") && cols[6].starts_with("bug before apply, fixed"),
            "{package}: {row}\nlast lines:\n{}",
            tail(&output, 60)
        );
    }
    eprintln!(
        "real-world CI run: {:.0}s\n{table}",
        started.elapsed().as_secs_f64()
    );
}
