//! Every parser of bytes that come from outside (a process's maps, an in-target record that
//! the target may have scribbled over, a patch module) refuses mutated input with an error,
//! never a panic. The same parsers have coverage-guided fuzz targets in `fuzz/`; this runs a
//! few thousand deterministic mutations in CI, without nightly.

use std::process::Command;

use lpkg_applier::fuzzing::{Layout, Resolve, HEADER_LEN};
use lpkg_applier::{Entry, RecordBody, Registration, State};

/// xorshift64*: deterministic, so a failure reproduces.
struct Mutator(u64);

impl Mutator {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn mutate(&mut self, seed: &[u8]) -> Vec<u8> {
        let mut bytes = seed.to_vec();
        for _ in 0..1 + self.next() % 8 {
            if bytes.is_empty() {
                break;
            }
            let at = (self.next() % bytes.len() as u64) as usize;
            match self.next() % 4 {
                0 => bytes[at] ^= 1 << (self.next() % 8),
                1 => bytes[at] = self.next() as u8,
                2 => bytes.truncate(at),
                _ => bytes[at] = [0, 0xff, 0x7f, 0x80][(self.next() % 4) as usize],
            }
        }
        bytes
    }
}

/// Runs gcc with `args` in `dir`, asserting success.
fn gcc(dir: &std::path::Path, args: &[&str]) {
    let out = Command::new("gcc")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "gcc {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Resolves every name near `.0`.
struct Anywhere(u64);

impl Resolve for Anywhere {
    fn address(&self, name: &str) -> Result<u64, lpkg_applier::Error> {
        Ok(self.0 + name.len() as u64)
    }
    fn tls_offset(&self, _name: &str) -> Result<i64, lpkg_applier::Error> {
        Ok(-64)
    }
}

/// For x86_64 (`-m64`) and i386 (`-m32`, REL relocations with their addends in the code): a
/// real module links, and mutated copies of it are refused or linked, never panicked on.
#[test]
fn mutated_patch_modules_are_refused_not_panicked_on() {
    for (flag, base, libraries) in [
        ("-m64", 0x5555_0000_0000u64, 0x7f00_0000_0000u64),
        ("-m32", 0x3000_0000, 0xf7f0_0000),
    ] {
        mutated_modules(flag, base, &Anywhere(libraries));
    }
}

fn mutated_modules(flag: &str, base: u64, resolve: &Anywhere) {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("m.c");
    std::fs::write(
        &src,
        "#include <string.h>\nstatic const char *t[] = {\"a\", \"bc\"};\nlong f(long x) { return strlen(t[x & 1]) + x; }\n",
    )
    .unwrap();
    let obj = dir.path().join("m.o");
    gcc(
        dir.path(),
        &[
            flag,
            "-O2",
            "-fPIC",
            "-ffunction-sections",
            "-fdata-sections",
            "-c",
            "m.c",
            "-o",
            "m.o",
        ],
    );
    let module = std::fs::read(&obj).unwrap();
    let layout = Layout::new(&module).expect("the real module lays out");
    layout
        .link(&module, base, resolve)
        .expect("the real module links");
    assert!(
        layout.lone_functions(&module).unwrap().contains_key("f"),
        "f is alone in .text.f"
    );
    let mut m = Mutator(0x9e37_79b9_7f4a_7c15);
    for _ in 0..3000 {
        let bytes = m.mutate(&module);
        if let Ok(layout) = Layout::new(&bytes) {
            let _ = layout.link(&bytes, base, resolve);
            // As for new code written in place: each lone function linked at another address.
            if let Ok(lone) = layout.lone_functions(&bytes) {
                let placed = lone
                    .values()
                    .map(|&(section, _)| (section, base + 0x1000_0000))
                    .collect();
                let _ = layout.link_placed(&bytes, base, resolve, &placed);
            }
        }
    }
}

#[test]
fn mutated_records_and_maps_are_refused_not_panicked_on() {
    let body = RecordBody {
        id: "ab".repeat(32),
        name: "fix".into(),
        version: "1".into(),
        signers: vec!["0011223344556677".into()],
        applied_at: 1,
        sequence: 1,
        target_path: "/srv/app".into(),
        module_address: 0x5555_0000_0000,
        module_len: 8192,
        eh_frame_address: 0x5555_0000_1000,
        eh_frame_len: 0x68,
        unwind_registration: Some(Registration {
            library: "/lib/x86_64-linux-gnu/libgcc_s.so.1".into(),
            deregister: 0x7f00_0000_1000,
            object: 0x5555_0000_1800,
        }),
        llvm_registration: None,
        exit_routines: vec![],
        shadows: false,
        requires: vec![],
        entries: vec![
            Entry {
                function: "f".into(),
                address: 0x1000,
                size: 20,
                original: "f30f1efa55".into(),
                new_address: 0x2000,
                new_size: 30,
                in_place: Some(vec![0x31, 0xc0, 0xc3, 0x90, 0xc3]),
                call_sites: vec![],
            },
            Entry {
                function: "one".into(),
                address: 0x1100,
                size: 1,
                original: String::new(),
                new_address: 0x2100,
                new_size: 10,
                in_place: None,
                call_sites: vec![0x1201, 0x1341, 0x7fff_ffff_fffe],
            },
        ],
    };
    let record = body.encode(State::Applied);
    let maps = std::fs::read("/proc/self/maps").unwrap();
    let mut m = Mutator(42);
    for _ in 0..3000 {
        let bytes = m.mutate(&record);
        if let Ok((_, len)) = RecordBody::decode_header(&bytes) {
            let rest = &bytes[HEADER_LEN.min(bytes.len())..];
            if let Ok(body) = RecordBody::decode_body(&rest[..len.min(rest.len())]) {
                for entry in &body.entries {
                    let _ = (entry.writes(), entry.how(), entry.guarded_range());
                }
            }
        }
        let _ = lpkg_kernel::maps::parse(1, &m.mutate(&maps));
    }
}

/// The builder's inputs (old and new objects, the target binary) are the release engineer's
/// files, but a damaged or foreign one must still end in an error, not a panic: the ELF,
/// relocation, DWARF and line-program readers all see the mutations. For x86_64 (ELF64, RELA)
/// and i386 (ELF32, REL: addends read out of the code).
#[test]
fn mutated_objects_and_targets_are_refused_not_panicked_on() {
    mutated_builds("-m64");
    mutated_builds("-m32");
}

fn mutated_builds(flag: &str) {
    let dir = tempfile::tempdir().unwrap();
    let source = |version: u32| {
        format!(
            "#include <stdio.h>\n#include <string.h>\n\
             static const char *names[] = {{\"a\", \"bc\", \"def\"}};\n\
             struct point {{ long x, y; }};\n\
             static __thread long calls;\n\
             __attribute__((noinline)) long measure(struct point *p, long k) {{\n\
               calls++;\n  return p->x * {version} + p->y + (long)strlen(names[k % 3]);\n}}\n\
             __attribute__((noinline)) long twice(long x) {{ return x * 2; }}\n\
             __attribute__((noinline)) long ident(long x) {{ return x * {version}; }}\n\
             int main(int argc, char **argv) {{\n\
               struct point p = {{argc, 2}};\n  (void)argv;\n\
               printf(\"%ld %ld %ld\\n\", measure(&p, argc), twice(argc), ident(argc));\n\
               return 0;\n}}\n"
        )
    };
    let compile = |version: u32| {
        std::fs::write(dir.path().join(format!("v{version}.c")), source(version)).unwrap();
        let (src, obj) = (format!("v{version}.c"), format!("v{version}.o"));
        // The same bytes in every temporary folder, so the mutations reproduce.
        let prefix_map = format!("-ffile-prefix-map={}=.", dir.path().display());
        gcc(
            dir.path(),
            &[
                flag,
                &prefix_map,
                // Packed: ident, 3 bytes long in v1, has its call sites rewritten, so the
                // target's code and data are searched for what leads to it.
                "-Os",
                "-falign-functions=1",
                "-g",
                "-fPIE",
                "-ffunction-sections",
                "-fdata-sections",
                "-c",
                &src,
                "-o",
                &obj,
            ],
        );
        dir.path().join(obj)
    };
    let (old, new) = (compile(1), compile(2));
    gcc(
        dir.path(),
        &[flag, "-pie", "-Wl,--build-id", "v1.o", "-o", "app"],
    );
    let target = dir.path().join("app");
    let options = |target: &std::path::Path, old: &std::path::Path, new: &std::path::Path| {
        lpkg_builder::BuildOptions {
            target: target.to_owned(),
            old: old.to_owned(),
            new: new.to_owned(),
            name: "fix".into(),
            version: "1".into(),
            ..Default::default()
        }
    };
    let built = lpkg_builder::build(&options(&target, &old, &new)).expect("the real pair builds");
    assert!(built.manifest.functions.iter().any(|f| f.name == "measure"));
    let ident = built.manifest.functions.iter().find(|f| f.name == "ident");
    // (i386 code keeps ident long enough for a jump.)
    assert!(
        flag == "-m32" || ident.is_some_and(|f| !f.call_sites.is_empty()),
        "{:?}",
        built.manifest.functions
    );

    let seeds = [
        std::fs::read(&old).unwrap(),
        std::fs::read(&new).unwrap(),
        std::fs::read(&target).unwrap(),
    ];
    let mutated = dir.path().join("mutated");
    let mut m = Mutator(0x5151_2026_1127);
    for i in 0..6000 {
        let which = i % 3;
        std::fs::write(&mutated, m.mutate(&seeds[which])).unwrap();
        let opts = match which {
            0 => options(&target, &mutated, &new),
            1 => options(&target, &old, &mutated),
            _ => options(&mutated, &old, &new),
        };
        let _ = lpkg_builder::build(&opts);
    }
    // Symbol values at the end of the address space (the fuzzer's find: a DWARF relocation
    // against such a symbol overflowed): every symbol of one side at once.
    for (side, seed) in seeds[..2].iter().enumerate() {
        let mut bytes = seed.clone();
        let (offset, size) = {
            use object::{Object, ObjectSection};
            let file = object::File::parse(&bytes[..]).unwrap();
            file.section_by_name(".symtab")
                .unwrap()
                .file_range()
                .unwrap()
        };
        // (entry size, st_value's offset and width): Elf64_Sym, Elf32_Sym.
        let (entry_size, value_at, width) = match flag {
            "-m32" => (16, 4, 4),
            _ => (24, 8, 8),
        };
        for entry in (offset..offset + size).step_by(entry_size).skip(1) {
            let at = entry as usize + value_at;
            bytes[at..at + width].copy_from_slice(&(u64::MAX - 7).to_le_bytes()[..width]);
        }
        std::fs::write(&mutated, &bytes).unwrap();
        let opts = match side {
            0 => options(&target, &mutated, &new),
            _ => options(&target, &old, &mutated),
        };
        let _ = lpkg_builder::build(&opts);
    }
}
