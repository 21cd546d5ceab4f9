//! Compiles the shadow-variable runtime (`runtime/lpkg-shadow.c`) that the builder links into a
//! patch module whose code calls it: compiled here, once, so that every package carries the
//! same runtime whatever compiler the patch was built with.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=runtime/lpkg-shadow.c");
    println!("cargo:rerun-if-env-changed=LPKG_RUNTIME_CC");
    // One per machine a package may be for: x86_64, and i386 (gcc-multilib).
    compile("-m64", "lpkg-shadow.o");
    compile("-m32", "lpkg-shadow-i386.o");
}

/// Compiles the runtime with gcc's machine flag `machine` into `OUT_DIR/output`.
fn compile(machine: &str, output: &str) {
    let source = "lpkg-shadow.c";
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"))
        .join("runtime");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets it")).join(output);
    let cc = std::env::var("LPKG_RUNTIME_CC").unwrap_or_else(|_| "gcc".into());
    // Freestanding, no stack protector, no calls the compiler invents (memset): the module
    // carries no reference to libc. -ffunction-sections: the builder copies only the functions
    // a patch reaches. Run in the source's folder: the object names the file, not a path.
    let status = Command::new(&cc)
        .current_dir(&dir)
        .args([
            machine,
            "-O2",
            "-fPIE",
            "-ffreestanding",
            "-fno-builtin",
            "-fno-stack-protector",
            "-fno-tree-loop-distribute-patterns",
            "-fcf-protection=none",
            "-ffunction-sections",
            "-fdata-sections",
            "-c",
            source,
            "-o",
        ])
        .arg(&out)
        .status()
        .unwrap_or_else(|e| {
            panic!("cannot run {cc} to compile runtime/{source}: {e} (set LPKG_RUNTIME_CC)")
        });
    assert!(
        status.success(),
        "{cc} {machine} failed to compile runtime/{source} (for -m32: gcc-multilib)"
    );
}
