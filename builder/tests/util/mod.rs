//! What the builder's test binaries share: running the C toolchain.

use std::path::Path;
use std::process::Command;

/// Runs `cmd args` in `cwd` and fails the test with its stderr if it fails.
pub fn run(cmd: &str, args: &[&str], cwd: &Path) {
    let out = Command::new(cmd)
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs gcc with `args` in `cwd`.
#[allow(dead_code)] // not every test binary compiles C itself
pub fn gcc(args: &[&str], cwd: &Path) {
    run("gcc", args, cwd)
}
