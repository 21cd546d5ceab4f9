//! Packages record their machine (`x86_64` or `i386`): `inspect` and `verify` show it, and
//! `apply` refuses a package for another machine than the process runs, with exit code 4,
//! before anything in the process changes. Real processes of both machines, started here.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{gcc, Program, Scratch};

/// A program that answers each number `x` on its stdin with `compute(x)`: `x * 2`, or
/// `x * 3` in the fixed version.
const SOURCE: &str = r#"
#include <stdio.h>
__attribute__((noinline)) long compute(long x) { return x * FACTOR; }
int main(void) {
    char line[64];
    while (fgets(line, sizeof line, stdin)) {
        long x = 0;
        sscanf(line, "%ld", &x);
        printf("%ld\n", compute(x));
        fflush(stdout);
    }
    return 0;
}
"#;

/// The program compiled with `flag` (`-m64` or `-m32`) as a PIE, and its package (signed
/// with `key`) from the old to the fixed object: `(executable, package)`.
fn program_and_package(s: &Scratch, flag: &str, key: &Path) -> (PathBuf, PathBuf) {
    let source = s.path("compute.c");
    std::fs::write(&source, SOURCE).unwrap();
    let object = |factor: u32| {
        let out = s.path(&format!("compute{flag}-{factor}.o"));
        let define = format!("-DFACTOR={factor}");
        gcc(&[
            flag,
            "-O2",
            "-g",
            "-fPIE",
            "-ffunction-sections",
            "-fdata-sections",
            &define,
            "-c",
            source.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ]);
        out
    };
    let (old, new) = (object(2), object(3));
    let program = s.path(&format!("compute{flag}"));
    gcc(&[
        flag,
        "-pie",
        old.to_str().unwrap(),
        "-o",
        program.to_str().unwrap(),
    ]);
    let package = s.build(
        &program,
        &old,
        &new,
        key,
        &format!("compute{flag}.lpkg"),
        ("compute", "1"),
        &[],
    );
    (program, package)
}

#[test]
fn a_package_for_another_machine_is_refused_both_ways() {
    let s = Scratch::new();
    let (key, public) = s.keygen("release");
    let (program64, package64) = program_and_package(&s, "-m64", &key);
    let (program32, package32) = program_and_package(&s, "-m32", &key);

    // The manifest records the machine; inspect and verify show it.
    for (package, machine) in [(&package64, "x86_64"), (&package32, "i386")] {
        let package = package.to_str().unwrap();
        let run = s.run(&["inspect", "--json", package]);
        assert_eq!(run.json()["target"]["machine"], machine, "{}", run.stdout);
        let run = s.run(&["inspect", package]);
        assert!(
            run.stdout.contains(&format!("({machine})")),
            "{}",
            run.stdout
        );
        let run = s.run(&["verify", "--trust", public.to_str().unwrap(), package]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert!(
            run.stdout.contains(&format!(" {machine} signed by")),
            "{}",
            run.stdout
        );
        let run = s.run(&[
            "verify",
            "--json",
            "--trust",
            public.to_str().unwrap(),
            package,
        ]);
        assert_eq!(run.json()["machine"], machine, "{}", run.stdout);
    }

    // The old and new code are disassembled in 32-bit mode: `mov eax,[esp+4]` reads the
    // argument from the stack (in 64-bit mode the same bytes would not decode so).
    let run = s.run(&[
        "inspect",
        "--disasm",
        "--target",
        program32.to_str().unwrap(),
        package32.to_str().unwrap(),
    ]);
    assert!(run.stdout.contains("mov eax,[esp+4]"), "{}", run.stdout);
    assert!(run.stdout.contains("lea eax,[eax+eax*2]"), "{}", run.stdout);

    let mut process64 = Program::start(&mut Command::new(&program64));
    let mut process32 = Program::start(&mut Command::new(&program32));
    assert_eq!(process64.ask("7"), "14");
    assert_eq!(process32.ask("7"), "14");
    for (package, process, package_machine, process_machine) in [
        (&package32, &mut process64, "i386", "x86_64"),
        (&package64, &mut process32, "x86_64", "i386"),
    ] {
        let run = s.run(&[
            "apply",
            "--pid",
            &process.pid(),
            "--trust",
            public.to_str().unwrap(),
            package.to_str().unwrap(),
        ]);
        assert_eq!(run.code, 4, "{}", run.stderr);
        let expected = format!(
            "package is for {package_machine}, but process {} runs {process_machine} code: this package is for another machine",
            process.pid()
        );
        assert!(run.error_line().ends_with(&expected), "{}", run.stderr);
        // Nothing changed: the process answers as before and carries no lpkg mapping.
        assert_eq!(
            process.ask("7"),
            "14",
            "the refused apply changed the process"
        );
        let maps = std::fs::read_to_string(format!("/proc/{}/maps", process.pid())).unwrap();
        assert!(!maps.contains("lpkg"), "{maps}");
    }
    // Each package applies to its own machine's process.
    for (package, process) in [(&package64, &mut process64), (&package32, &mut process32)] {
        let run = s.run(&[
            "apply",
            "--pid",
            &process.pid(),
            "--trust",
            public.to_str().unwrap(),
            package.to_str().unwrap(),
        ]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert_eq!(process.ask("7"), "21");
    }
}
