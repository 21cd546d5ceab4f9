//! Compiles the shadow-variable runtime (`runtime/lpkg-shadow.c`) that the builder links into a
//! patch module whose code calls it, once per architecture (`-m64`, `-m32`): compiled here, so
//! that every package carries the same runtime whatever compiler the patch was built with.

use std::path::{Path, PathBuf};
use std::process::Command;

const SOURCE: &str = "lpkg-shadow.c";

fn main() {
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"))
        .join("runtime");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets it"));
    println!("cargo:rerun-if-changed=runtime/{SOURCE}");
    println!("cargo:rerun-if-env-changed=LPKG_RUNTIME_CC");
    let cc = std::env::var("LPKG_RUNTIME_CC").unwrap_or_else(|_| "gcc".into());
    let x86_64 = out.join("lpkg-shadow-x86_64.o");
    if let Err(why) = compile(&cc, &dir, "-m64", &x86_64) {
        panic!("{why} (set LPKG_RUNTIME_CC to a gcc that targets x86_64)");
    }
    // A compiler without 32-bit support leaves the i386 runtime empty: the builder then
    // refuses i386 patches that use shadow variables, saying why.
    let i386 = out.join("lpkg-shadow-i386.o");
    if let Err(why) = compile(&cc, &dir, "-m32", &i386) {
        println!("cargo:warning=no i386 shadow runtime: {why}");
        std::fs::write(&i386, b"").expect("write to OUT_DIR");
    }
}

/// `cc` compiles the runtime for `machine` (`-m64`, `-m32`) into `out`.
fn compile(cc: &str, dir: &Path, machine: &str, out: &Path) -> Result<(), String> {
    // Freestanding, no stack protector, no calls the compiler invents (memset): the module
    // carries no reference to libc. -ffunction-sections: the builder copies only the functions
    // a patch reaches. Run in the source's folder: the object names the file, not a path.
    let status = Command::new(cc)
        .current_dir(dir)
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
            SOURCE,
            "-o",
        ])
        .arg(out)
        .status()
        .map_err(|e| format!("cannot run {cc} to compile runtime/{SOURCE}: {e}"))?;
    match status.success() {
        true => Ok(()),
        false => Err(format!("{cc} {machine} failed to compile runtime/{SOURCE}")),
    }
}
