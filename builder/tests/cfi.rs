//! The patch module carries the CFI (`.eh_frame`) of its code, so the applier can unwind a
//! thread that sleeps inside a patch.

mod util;

use std::collections::BTreeMap;
use util::gcc;

use gimli::{BaseAddresses, CieOrFde, EhFrame, LittleEndian, UnwindSection};
use lpkg_builder::{build, BuildOptions};
use lpkg_format::{EH_FRAME_END_SYMBOL, EH_FRAME_SYMBOL};
use object::{Object, ObjectSection, ObjectSymbol, RelocationTarget};

const OLD: &str = r#"
#include <stdio.h>
#include <stdlib.h>
int counter;
void __attribute__((cold, noinline)) report(long x) { fprintf(stderr, "bad %ld\n", x); }
long __attribute__((noinline)) checked(long x) {
    if (x == 987654) { report(x); abort(); }
    return x * 2;
}
long __attribute__((noinline)) plain(long x) { return x + counter; }
int main(int argc, char **argv) { return (int)checked(argc) + (int)plain(argc); }
"#;

const NEW: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
int counter;
void __attribute__((cold, noinline)) report(long x) { fprintf(stderr, "bad %ld\n", x); }
long __attribute__((noinline)) helper(long x) { sleep(1); return x * 5; }
long __attribute__((noinline)) checked(long x) {
    if (x == 987654) { report(x); fprintf(stderr, "really bad %ld\n", x); abort(); }
    return helper(x) * 3;
}
long __attribute__((noinline)) plain(long x) { return x + counter; }
int main(int argc, char **argv) { return (int)checked(argc) + (int)plain(argc); }
"#;

/// For x86_64 (`-m64`) and i386 (`-m32`: REL relocations, 4-byte addresses).
#[test]
fn module_carries_one_relocated_fde_per_function_and_marks_its_eh_frame() {
    module_carries_its_cfi("-m64");
    module_carries_its_cfi("-m32");
}

fn module_carries_its_cfi(flag: &str) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("old.c"), OLD).unwrap();
    std::fs::write(d.join("new.c"), NEW).unwrap();
    for side in ["old", "new"] {
        let src = format!("{side}.c");
        let obj = format!("{side}.o");
        gcc(
            &[
                flag,
                "-O2",
                "-g",
                "-ffunction-sections",
                "-fdata-sections",
                "-fPIE",
                "-c",
                &src,
                "-o",
                &obj,
            ],
            d,
        );
    }
    gcc(&[flag, "-pie", "old.o", "-o", "prog"], d);
    let built = build(&BuildOptions {
        target: d.join("prog"),
        old: d.join("old.o"),
        new: d.join("new.o"),
        name: "cfi".into(),
        version: "1".into(),
        ..Default::default()
    })
    .unwrap();
    let module = &built
        .payloads
        .iter()
        .find(|(n, _)| n == "module.o")
        .unwrap()
        .1;
    let file = object::File::parse(&module[..]).unwrap();

    let eh_frame = file.section_by_name(".eh_frame").expect("module has CFI");
    let data = eh_frame.data().unwrap();
    let symbol = |name: &str| {
        file.symbols()
            .find(|s| s.name() == Ok(name))
            .unwrap_or_else(|| panic!("no symbol {name}"))
    };
    let (start, end) = (symbol(EH_FRAME_SYMBOL), symbol(EH_FRAME_END_SYMBOL));
    assert!(start.is_global() && end.is_global());
    assert_eq!(start.section_index(), Some(eh_frame.index()));
    assert_eq!(start.address(), 0);
    assert_eq!(
        end.address(),
        data.len() as u64 - 4,
        "records, then a terminator"
    );
    assert_eq!(&data[data.len() - 4..], &[0; 4]);

    // Every FDE's pc_begin (8 bytes in) is relocated against the section of one module
    // function, and every function of the module has exactly one FDE.
    let mut fdes = Vec::new();
    let mut section = EhFrame::new(data, LittleEndian);
    section.set_address_size(if flag == "-m32" { 4 } else { 8 });
    let bases = BaseAddresses::default().set_eh_frame(0);
    let mut entries = section.entries(&bases);
    while let Some(entry) = entries.next().expect("well-formed .eh_frame") {
        if let CieOrFde::Fde(partial) = entry {
            let fde = partial.parse(EhFrame::cie_from_offset).unwrap();
            fdes.push((fde.offset() as u64, fde.len()));
        }
    }
    let relocations: BTreeMap<u64, String> = eh_frame
        .relocations()
        .map(|(offset, r)| {
            let RelocationTarget::Symbol(s) = r.target() else {
                panic!("relocation without symbol")
            };
            let target = file.symbol_by_index(s).unwrap();
            let section = file
                .section_by_index(target.section_index().unwrap())
                .unwrap();
            (offset, section.name().unwrap().to_string())
        })
        .collect();
    assert_eq!(relocations.len(), fdes.len());
    let mut covered: Vec<String> = fdes
        .iter()
        .map(|(offset, len)| {
            let section = &relocations[&(offset + 8)];
            let text = file.section_by_name(section).unwrap();
            assert_eq!(
                *len,
                text.size(),
                "{flag} {section}: FDE covers the whole function"
            );
            section.clone()
        })
        .collect();
    covered.sort();
    let mut functions: Vec<String> = built
        .manifest
        .functions
        .iter()
        .map(|f| format!(".text.{}", f.module_symbol))
        .collect();
    functions.sort();
    assert_eq!(covered, functions, "{flag}");
    assert!(
        functions.iter().any(|f| f == ".text.helper"),
        "{functions:?}"
    );
    assert!(
        functions.iter().any(|f| f.contains("cold")),
        "{functions:?}"
    );
}
