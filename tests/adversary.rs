//! Issue 19 (1): what lpkg reads is bounded whatever a target claims. Each lpkg command runs
//! under GNU time, which reports its peak memory (getrusage's ru_maxrss): under 64 MB, with a
//! target that maps one page of a sparse fake ELF whose `.eh_frame` claims 1.5 GiB, and with
//! one whose 16 MiB record-named memfd is mapped 100 times.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{gcc, Program, Scratch};

/// The most memory an lpkg command may take (KiB), whatever the target does.
const MAX_RSS_KIB: u64 = 64 * 1024;

/// The hoard target built in two versions, and a package from the first to the second.
fn build(s: &Scratch) -> (PathBuf, PathBuf, PathBuf) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/targets/hoard.c");
    let path = |n: &str| s.path(n).to_str().unwrap().to_owned();
    for (object, rate) in [("old.o", "1"), ("new.o", "2")] {
        gcc(&[
            "-O2",
            "-g",
            "-ffunction-sections",
            "-fdata-sections",
            "-fPIE",
            &format!("-DRATE={rate}"),
            "-c",
            src.to_str().unwrap(),
            "-o",
            &path(object),
        ]);
    }
    gcc(&["-pie", &path("old.o"), "-o", &path("hoard")]);
    let (key, public) = s.keygen("release");
    let package = s.build(
        &s.path("hoard"),
        &s.path("old.o"),
        &s.path("new.o"),
        &key,
        "fix.lpkg",
        ("hoard-fix", "1"),
        &[],
    );
    (s.path("hoard"), package, public)
}

/// A sparse file of 1.5 GiB and more: an ELF header, one PT_LOAD, and section headers naming
/// an `.eh_frame` of 1.5 GiB that is all holes.
fn fake_elf(path: &Path) {
    let mut f = vec![0u8; 0x1200];
    let put =
        |f: &mut Vec<u8>, at: usize, bytes: &[u8]| f[at..at + bytes.len()].copy_from_slice(bytes);
    put(&mut f, 0, b"\x7fELF\x02\x01\x01");
    put(&mut f, 16, &3u16.to_le_bytes()); // ET_DYN
    put(&mut f, 18, &0x3eu16.to_le_bytes()); // x86_64
    put(&mut f, 20, &1u32.to_le_bytes());
    put(&mut f, 32, &64u64.to_le_bytes()); // e_phoff
    put(&mut f, 40, &0x1000u64.to_le_bytes()); // e_shoff
    put(&mut f, 52, &64u16.to_le_bytes());
    put(&mut f, 54, &56u16.to_le_bytes());
    put(&mut f, 56, &1u16.to_le_bytes()); // e_phnum
    put(&mut f, 58, &64u16.to_le_bytes());
    put(&mut f, 60, &3u16.to_le_bytes()); // e_shnum
    put(&mut f, 62, &2u16.to_le_bytes()); // e_shstrndx
                                          // PT_LOAD, R+X, the first 8 KiB.
    put(&mut f, 64, &1u32.to_le_bytes());
    put(&mut f, 68, &5u32.to_le_bytes());
    put(&mut f, 64 + 32, &0x2000u64.to_le_bytes());
    put(&mut f, 64 + 40, &0x2000u64.to_le_bytes());
    put(&mut f, 64 + 48, &0x1000u64.to_le_bytes());
    // Section 1: .eh_frame, 1.5 GiB at 1 MiB.
    let eh = 0x1000 + 64;
    put(&mut f, eh, &1u32.to_le_bytes());
    put(&mut f, eh + 4, &1u32.to_le_bytes());
    put(&mut f, eh + 8, &2u64.to_le_bytes());
    put(&mut f, eh + 16, &0x10_0000u64.to_le_bytes());
    put(&mut f, eh + 24, &0x10_0000u64.to_le_bytes());
    put(&mut f, eh + 32, &0x6000_0000u64.to_le_bytes());
    // Section 2: .shstrtab.
    let names = b"\0.eh_frame\0.shstrtab\0";
    let st = 0x1000 + 128;
    put(&mut f, st, &11u32.to_le_bytes());
    put(&mut f, st + 4, &3u32.to_le_bytes());
    put(&mut f, st + 24, &0x1100u64.to_le_bytes());
    put(&mut f, st + 32, &(names.len() as u64).to_le_bytes());
    put(&mut f, 0x1100, names);
    let mut file = std::fs::File::create(path).unwrap();
    file.write_all(&f).unwrap();
    file.set_len(0x10_0000 + 0x6000_0000).unwrap();
}

/// Starts the hoard with `args`, and checks it answers.
fn start(exe: &Path, args: &[&str]) -> Program {
    let mut target = Program::start(Command::new(exe).args(args));
    assert_eq!(target.ask("3"), "4");
    target
}

/// Runs `lpkg ARGS` under GNU time: its exit code, stderr, and peak memory in KiB.
fn measured(s: &Scratch, args: &[&str]) -> (i32, String, u64) {
    let report = s.path("rusage");
    let out = Command::new("/usr/bin/time")
        .args([
            "-f",
            "%M",
            "-o",
            report.to_str().unwrap(),
            env!("CARGO_BIN_EXE_lpkg"),
        ])
        .args(args)
        .env_remove("LPKG_TRUST")
        .output()
        .expect("GNU time (scripts/install-deps.sh installs it)");
    // After "Command exited with non-zero status N" when it failed.
    let report = std::fs::read_to_string(&report).unwrap();
    let kib = report.lines().last().unwrap_or("").trim().parse().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code().unwrap_or(-1), stderr, kib)
}

#[test]
fn a_fake_elf_claiming_huge_cfi_costs_no_memory() {
    let s = Scratch::new();
    let (exe, package, public) = build(&s);
    let fake = s.path("fake.so");
    fake_elf(&fake);
    let mut target = start(&exe, &[fake.to_str().unwrap()]);
    let pid = target.pid();
    let trust = public.to_str().unwrap();
    let (code, stderr, kib) = measured(
        &s,
        &[
            "apply",
            package.to_str().unwrap(),
            "--pid",
            &pid,
            "--trust",
            trust,
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(kib < MAX_RSS_KIB, "apply took {kib} KiB");
    assert_eq!(target.ask("3"), "7");
    let (code, stderr, kib) = measured(&s, &["revert", "--pid", &pid]);
    assert_eq!(code, 0, "{stderr}");
    assert!(kib < MAX_RSS_KIB, "revert took {kib} KiB");
    assert_eq!(target.ask("3"), "4");
}

#[test]
fn a_record_memfd_mapped_a_hundred_times_is_read_once() {
    let s = Scratch::new();
    let (exe, _, _) = build(&s);
    let target = start(&exe, &["-", "memfd"]);
    let pid = target.pid();
    for args in [
        vec!["list", "--pid", &pid],
        vec!["revert", "--pid", &pid, "--all"],
    ] {
        let (_, stderr, kib) = measured(&s, &args);
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(kib < MAX_RSS_KIB, "{args:?} took {kib} KiB: {stderr}");
    }
}
