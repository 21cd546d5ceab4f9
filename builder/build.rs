//! Compiles the shadow-variable runtime (`runtime/lpkg-shadow.c`) that the builder links into a
//! patch module whose code calls it: compiled here, once, so that every package carries the
//! same runtime whatever compiler the patch was built with.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let source = "lpkg-shadow.c";
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"))
        .join("runtime");
    let out =
        PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets it")).join("lpkg-shadow.o");
    println!("cargo:rerun-if-changed=runtime/{source}");
    println!("cargo:rerun-if-env-changed=LPKG_RUNTIME_CC");
    let cc = std::env::var("LPKG_RUNTIME_CC").unwrap_or_else(|_| "gcc".into());
    // Freestanding, no stack protector, no calls the compiler invents (memset): the module
    // carries no reference to libc. -ffunction-sections: the builder copies only the functions
    // a patch reaches. Run in the source's folder: the object names the file, not a path.
    let status = Command::new(&cc)
        .current_dir(&dir)
        .args([
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
    assert!(status.success(), "{cc} failed to compile runtime/{source}");
}
