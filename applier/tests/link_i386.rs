//! The linker links i386 modules: a real `gcc -m32 -c` object (PIE, non-PIE and `-fPIC`
//! code), linked by lpkg against the symbols of a real 32-bit executable, must compute what
//! `ld` computes. The executable maps lpkg's image at the address it was linked for and calls
//! into it; its answers must equal those of the same object linked into it by `gcc`/`ld`.
//! Every relocation type the i386 linker supports is used: `R_386_32`, `PC32`, `PLT32`,
//! `GOTPC`, `GOTOFF`, `GOT32X`, `TLS_LE`, `TLS_IE` and `TLS_GOTIE`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use lpkg_applier::fuzzing::{Layout, Resolve};
use object::read::elf::{ElfFile32, ProgramHeader};
use object::{elf, Endianness, Object, ObjectSymbol};

/// The 32-bit executable: defines what the module uses, maps an image file at a fixed address
/// and calls its entry (`host X IMAGE BASE ENTRY`), or, built with `-DREFERENCE`, calls the
/// module linked into it by `ld` (`ref X`). Prints both calls' results and the state they
/// changed.
const HOST: &str = r#"
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif
int counter_in_target = 10;
__thread int tls_ie = 100;
__thread int tls_le = 200;
__attribute__((noinline)) int target_add(int a, int b) { return a + b; }
int module_entry(int x);
int main(int argc, char **argv) {
    int (*entry)(int) = 0;
    int x = atoi(argv[1]);
#ifdef REFERENCE
    entry = module_entry;
#else
    unsigned long base = strtoul(argv[3], 0, 0);
    FILE *f = fopen(argv[2], "rb");
    if (!f) {
        perror(argv[2]);
        return 2;
    }
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    rewind(f);
    void *p = mmap((void *)base, len, PROT_READ | PROT_WRITE | PROT_EXEC,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    if (p != (void *)base || fread(p, 1, len, f) != (size_t)len) {
        perror("map the image");
        return 2;
    }
    entry = (int (*)(int))strtoul(argv[4], 0, 0);
#endif
    int first = entry(x);
    int second = entry(x + 1);
    printf("%d %d %d %d %d\n", first, second, counter_in_target, tls_ie, tls_le);
    return 0;
}
"#;

/// The module: the host's data, function and TLS (initial-exec and local-exec), its own data
/// (zeroed, initialised, a table of pointers to literals) and a function of its own.
const MODULE: &str = r#"
extern int counter_in_target;
extern int target_add(int, int);
#ifndef NO_TLS
extern __thread int tls_ie;
extern __thread int tls_le __attribute__((tls_model("local-exec")));
#endif
static int module_static = 5;
static int zeroed;
static const char *const words[] = {"one", "three"};
__attribute__((noinline)) static int length(const char *s) {
    int n = 0;
    while (s[n])
        n++;
    return n;
}
int module_entry(int x) {
    counter_in_target += x;
    module_static += 1;
    zeroed += 2;
    int t = 0;
#ifndef NO_TLS
    tls_ie += 1;
    tls_le += 2;
    t = tls_ie + tls_le;
#endif
    return target_add(x, module_static) * 1000 + length(words[x & 1]) * 100 + zeroed + t;
}
"#;

/// Where the image is linked and mapped in the host: free in a 32-bit process (the
/// executable is at 0x0804_8000, libraries and the stack near 4 GiB).
const BASE: u64 = 0x3000_0000;

fn gcc(cwd: &Path, args: &[&str]) {
    let out = Command::new("gcc")
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("gcc runs");
    assert!(
        out.status.success(),
        "gcc {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn run(cwd: &Path, program: &str, args: &[&str]) -> String {
    let out = Command::new(cwd.join(program))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("the host runs");
    assert!(
        out.status.success(),
        "{program} {args:?}: {:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The host's symbols (every one, locals too: `_GLOBAL_OFFSET_TABLE_` is local) and the
/// thread-pointer offset of its TLS variables (variant II: the executable's block ends at
/// the thread pointer).
struct Host {
    symbols: BTreeMap<String, u64>,
    tls_block: u64,
}

impl Host {
    fn read(path: &Path) -> Host {
        let data = std::fs::read(path).unwrap();
        let file = ElfFile32::<Endianness>::parse(&data[..]).unwrap();
        let symbols = file
            .symbols()
            .filter(|s| !s.is_undefined())
            .filter_map(|s| Some((s.name().ok()?.to_owned(), s.address())))
            .collect();
        let endian = file.endian();
        let tls = file
            .elf_program_headers()
            .iter()
            .find(|p| p.p_type(endian) == elf::PT_TLS)
            .expect("the host has TLS");
        let (memsz, align) = (
            u64::from(tls.p_memsz(endian)),
            u64::from(tls.p_align(endian)).max(1),
        );
        Host {
            symbols,
            tls_block: memsz.div_ceil(align) * align,
        }
    }
}

impl Resolve for Host {
    fn address(&self, name: &str) -> Result<u64, lpkg_applier::Error> {
        Ok(*self
            .symbols
            .get(name)
            .unwrap_or_else(|| panic!("the host has no {name}")))
    }

    fn tls_offset(&self, name: &str) -> Result<i64, lpkg_applier::Error> {
        // A TLS symbol's value is its offset in the executable's TLS segment.
        Ok(self.address(name)? as i64 - self.tls_block as i64)
    }
}

/// The module compiled with `flags`, linked by lpkg into the host and by `ld` into the
/// reference: both print the same.
fn links_as_ld_does(flags: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("host.c"), HOST).unwrap();
    std::fs::write(d.join("module.c"), MODULE).unwrap();
    let mut compile = vec![
        "-m32",
        "-O2",
        // No library calls of gcc's making (the loop is not turned into strlen).
        "-fno-tree-loop-distribute-patterns",
        "-ffunction-sections",
        "-fdata-sections",
        "-c",
        "module.c",
        "-o",
        "module.o",
    ];
    compile.extend(flags);
    gcc(d, &compile);
    gcc(
        d,
        &[
            "-m32",
            "-O2",
            "-no-pie",
            "-DREFERENCE",
            "host.c",
            "module.o",
            "-o",
            "ref",
        ],
    );
    gcc(d, &["-m32", "-O2", "-no-pie", "host.c", "-o", "host"]);

    let module = std::fs::read(d.join("module.o")).unwrap();
    let host = Host::read(&d.join("host"));
    let layout = Layout::new(&module).expect("the module lays out");
    let image = layout.link(&module, BASE, &host).expect("the module links");
    std::fs::write(d.join("image"), &image.bytes).unwrap();
    let entry = image.symbols["module_entry"];
    assert!(entry >= BASE && entry < BASE + image.bytes.len() as u64);

    for x in ["3", "8"] {
        let expected = run(d, "ref", &[x]);
        let linked = run(
            d,
            "host",
            &[x, "image", &format!("{BASE:#x}"), &format!("{entry:#x}")],
        );
        assert_eq!(linked, expected, "{flags:?}: lpkg's link differs from ld's");
    }
}

#[test]
fn pie_code_links_as_ld_links_it() {
    // GOTPC through the PC thunk, GOTOFF, GOT32X, PLT32, TLS_GOTIE, TLS_LE, R_386_32.
    links_as_ld_does(&["-fPIE"]);
}

#[test]
fn non_pie_code_links_as_ld_links_it() {
    // R_386_32 for data, PC32 calls, TLS_IE, TLS_LE.
    links_as_ld_does(&["-fno-pie"]);
}

#[test]
fn pic_code_links_as_ld_links_it() {
    // A shared library's code: the host's data through GOT32X, calls through PLT32 (its TLS
    // would be general dynamic, which lpkg refuses: left out).
    links_as_ld_does(&["-fPIC", "-DNO_TLS"]);
}

#[test]
fn unsupported_i386_relocations_are_refused_by_name() {
    // General-dynamic TLS (a shared library's own TLS): R_386_TLS_GD and a call to
    // ___tls_get_addr.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("gd.c"),
        "extern __thread int t;\nint f(void) { return t; }\n",
    )
    .unwrap();
    gcc(d, &["-m32", "-O2", "-fPIC", "-c", "gd.c", "-o", "gd.o"]);
    let module = std::fs::read(d.join("gd.o")).unwrap();
    let err = Layout::new(&module).unwrap_err();
    assert!(
        err.to_string()
            .contains("unsupported i386 relocation type 18"),
        "{err}"
    );
}

/// A 32-bit PIE that answers each number with `compute(x)` (from its own code, or from the
/// image mapped by a `map IMAGE BASE ENTRY` line, whose `compute` it then calls instead).
/// `compute` counts its calls in a static and a thread-local variable of the executable.
const SERVER: &str = r#"
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif
static int calls;
__thread int tls_calls = 5;
#if VERSION == 1
__attribute__((noinline)) int compute(int x) {
    calls++;
    tls_calls++;
    return x * 2 + calls * 100 + tls_calls * 1000;
}
#else
static const char *const tens[] = {"10", "20"};
__attribute__((noinline)) int compute(int x) {
    calls++;
    tls_calls++;
    return x * 3 + atoi(tens[x & 1]) + calls * 100 + tls_calls * 1000;
}
#endif
int main(void) {
    char line[256], path[200];
    int (*entry)(int) = compute;
    while (fgets(line, sizeof line, stdin)) {
        unsigned long base, at;
        if (sscanf(line, "map %199s %lx %lx", path, &base, &at) == 3) {
            FILE *f = fopen(path, "rb");
            fseek(f, 0, SEEK_END);
            long len = ftell(f);
            rewind(f);
            void *p = mmap((void *)base, len, PROT_READ | PROT_WRITE | PROT_EXEC,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
            if (p != (void *)base || fread(p, 1, len, f) != (size_t)len)
                return 2;
            fclose(f);
            entry = (int (*)(int))at;
            printf("mapped\n");
        } else {
            printf("%d\n", entry(atoi(line)));
        }
        fflush(stdout);
    }
    return 0;
}
"#;

/// A running program answering one line per line; killed by its PID when dropped.
struct Server {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    stdout: std::io::BufReader<std::process::ChildStdout>,
}

impl Server {
    fn start(program: &Path) -> Server {
        use std::process::Stdio;
        let mut child = Command::new(program)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("the server starts");
        let stdin = child.stdin.take().unwrap();
        let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        Server {
            child,
            stdin,
            stdout,
        }
    }

    fn ask(&mut self, line: &str) -> String {
        use std::io::{BufRead, Write};
        writeln!(self.stdin, "{line}").unwrap();
        let mut answer = String::new();
        self.stdout.read_line(&mut answer).unwrap();
        assert!(!answer.is_empty(), "the server died on {line:?}");
        answer.trim_end().to_owned()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The builder's package for a 32-bit PIE, linked by the applier against the running
/// process (its object found by build-id, symbols resolved through the package's symbol map
/// and libc's `.dynsym`, TLS offsets from its PT_TLS): the patched function, called in the
/// process, uses the process's own static and thread-local variables, libc, and its new data.
/// Everything of an apply but the kernel's part (writing the image, the jump).
#[test]
fn a_built_i386_package_links_against_a_running_process() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("server.c"), SERVER).unwrap();
    for v in ["1", "2"] {
        let define = format!("-DVERSION={v}");
        let out = format!("server{v}.o");
        gcc(
            d,
            &[
                "-m32",
                "-O2",
                "-g",
                "-fPIE",
                "-ffunction-sections",
                "-fdata-sections",
                &define,
                "-c",
                "server.c",
                "-o",
                &out,
            ],
        );
    }
    gcc(d, &["-m32", "-pie", "server1.o", "-o", "server"]);
    let built = lpkg_builder::build(&lpkg_builder::BuildOptions {
        target: d.join("server"),
        old: d.join("server1.o"),
        new: d.join("server2.o"),
        name: "server-fix".into(),
        version: "1".into(),
        ..Default::default()
    })
    .expect("the package builds");
    assert_eq!(built.manifest.target.machine, "i386");
    let package = lpkg_format::Package::new(built.manifest, built.payloads).unwrap();
    let symbols = package.symbol_map().unwrap();
    let module = package.module().unwrap();

    let mut server = Server::start(&d.join("server"));
    // calls = 1, tls_calls = 6.
    assert_eq!(server.ask("1"), "6102");
    let pid = server.child.id() as i32;
    let (target, mapped, _file) = lpkg_applier::fuzzing::find_target(
        pid,
        &lpkg_kernel::maps::read(pid).unwrap(),
        &package.manifest().target,
    )
    .unwrap();
    let resolver = lpkg_applier::fuzzing::Resolver::new(pid, &target, &symbols, &mapped);
    let layout = Layout::new(module).unwrap();
    let image = layout
        .link(module, BASE, &resolver)
        .expect("the module links");
    std::fs::write(d.join("image"), &image.bytes).unwrap();
    let compute = package
        .manifest()
        .functions
        .iter()
        .find(|f| f.name == "compute")
        .unwrap();
    let entry = image.symbols[&compute.module_symbol];
    let map = format!("map {} {BASE:#x} {entry:#x}", d.join("image").display());
    assert_eq!(server.ask(&map), "mapped");
    // The new code: x * 3 + atoi(tens[x & 1]), on the process's own counters.
    assert_eq!(server.ask("1"), format!("{}", 3 + 20 + 200 + 7000));
    assert_eq!(server.ask("2"), format!("{}", 6 + 10 + 300 + 8000));
}
