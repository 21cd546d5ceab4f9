//! Folder builds: objects paired by relative path, identical pairs skipped, new files carried,
//! same-named static functions and variables in several files kept apart.

mod util;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use util::gcc;

use lpkg_builder::{build, BuildOptions};
use lpkg_format::{Action, SymbolBinding, SymbolMap};
use object::read::elf::{ElfFile64, Sym as _};
use object::{Endianness, Object, ObjectSection, ObjectSymbol, RelocationTarget};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/folder")
}

/// Local symbols of the target by (STT_FILE, name); later same-named blocks overwrite
/// earlier ones, so `util.c` means the last one linked (y/util.c).
fn target_locals(path: &Path) -> BTreeMap<(String, String), u64> {
    let data = std::fs::read(path).unwrap();
    let file = ElfFile64::<Endianness>::parse(&data[..]).unwrap();
    let table = file.elf_symbol_table();
    let mut current = String::new();
    let mut out = BTreeMap::new();
    for sym in table.iter() {
        let name = String::from_utf8_lossy(table.symbol_name(Endianness::Little, sym).unwrap())
            .into_owned();
        if sym.st_type() == object::elf::STT_FILE {
            current = name;
        } else if sym.st_bind() == object::elf::STB_LOCAL {
            out.insert((current.clone(), name), sym.st_value(Endianness::Little));
        }
    }
    out
}

/// Value of the first symbol named `name`, whatever its binding.
fn any_symbol(path: &Path, name: &str) -> u64 {
    let data = std::fs::read(path).unwrap();
    let file = object::File::parse(&data[..]).unwrap();
    file.symbols()
        .find(|s| s.name() == Ok(name))
        .map(|s| s.address())
        .unwrap()
}

#[test]
fn folder_pairs_keep_same_named_locals_apart() {
    let dir = tempfile::tempdir().unwrap();
    let flags = [
        "-O2",
        "-g",
        "-ffunction-sections",
        "-fdata-sections",
        "-fPIE",
        "-c",
    ];
    for side in ["old", "new"] {
        let root = dir.path().join(side);
        for rel in ["a.c", "b.c", "c.c", "d.c", "x/util.c", "y/util.c"] {
            let from = src().join(side).join(rel);
            if !from.exists() {
                continue;
            }
            let to = root.join("sub").join(rel);
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(&from, &to).unwrap();
            let rel_src = format!("sub/{rel}");
            let rel_obj = rel_src.replace(".c", ".o");
            let mut args = flags.to_vec();
            args.extend([rel_src.as_str(), "-o", rel_obj.as_str()]);
            gcc(&args, &root);
            std::fs::remove_file(&to).unwrap();
        }
    }
    let harness = dir.path().join("harness.o");
    let harness_src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/harness.c");
    gcc(
        &[
            "-O2",
            "-fPIE",
            "-c",
            harness_src.to_str().unwrap(),
            "-o",
            harness.to_str().unwrap(),
        ],
        dir.path(),
    );
    gcc(
        &[
            "-pie",
            "harness.o",
            "old/sub/a.o",
            "old/sub/b.o",
            "old/sub/c.o",
            "old/sub/x/util.o",
            "old/sub/y/util.o",
            "-o",
            "prog",
        ],
        dir.path(),
    );
    let opts = BuildOptions {
        target: dir.path().join("prog"),
        old: dir.path().join("old"),
        new: dir.path().join("new"),
        name: "folders".into(),
        version: "1".into(),
        description: String::new(),
        allow_line_changes: false,
        ..Default::default()
    };
    let built = build(&opts).unwrap();
    let mut got: Vec<(String, Action, String)> = built
        .manifest
        .functions
        .iter()
        .map(|f| (f.name.clone(), f.action, f.module_symbol.clone()))
        .collect();
    got.sort_by(|a, b| a.2.cmp(&b.2));
    assert_eq!(
        got,
        vec![
            ("b_api".to_string(), Action::Replace, "b_api".to_string()),
            (
                "case_entry".to_string(),
                Action::Replace,
                "case_entry".to_string()
            ),
            ("d_api".to_string(), Action::New, "d_api".to_string()),
            ("helper".to_string(), Action::Replace, "helper".to_string()),
            (
                "helper".to_string(),
                Action::Replace,
                "helper@b.c".to_string()
            ),
            ("y_bump".to_string(), Action::Replace, "y_bump".to_string()),
        ],
        "c.o is identical and x/util.o differs only in DWARF: neither contributes"
    );
    // Each helper replaces its own file's copy.
    let locals = target_locals(&opts.target);
    for f in &built.manifest.functions {
        if f.name == "helper" {
            let file = if f.module_symbol == "helper" {
                "a.c"
            } else {
                "b.c"
            };
            assert_eq!(
                f.old_offset,
                Some(locals[&(file.to_string(), "helper".to_string())])
            );
        }
    }
    // Each count is bound to its own file's variable.
    let map: SymbolMap =
        toml::from_str(std::str::from_utf8(&built.payloads[1].1).unwrap()).unwrap();
    let mut counts: Vec<(String, u64)> = map
        .symbols
        .iter()
        .filter_map(|b| match b {
            SymbolBinding::Target { name, offset } if name.starts_with("count") => {
                Some((name.clone(), *offset))
            }
            _ => None,
        })
        .collect();
    counts.sort();
    assert_eq!(
        counts,
        vec![
            (
                "count".to_string(),
                locals[&("a.c".to_string(), "count".to_string())]
            ),
            (
                "count@b.c".to_string(),
                locals[&("b.c".to_string(), "count".to_string())]
            ),
            // Two files are named util.c: the compile unit path picks y/util.c's block
            // (the last one linked, which target_locals keeps).
            (
                "count@util.c".to_string(),
                locals[&("util.c".to_string(), "count".to_string())]
            ),
        ]
    );
    // A hidden function of another file (ld may turn it into a local of the linked target).
    let hidden = any_symbol(&opts.target, "b_hidden");
    assert!(
        map.symbols.iter().any(|b| matches!(b,
            SymbolBinding::Target { name, offset } if name == "b_hidden" && *offset == hidden)),
        "{map:?}"
    );
    // case_entry's calls to b_api and d_api go to the module's new versions: no binding.
    assert!(
        !map.symbols
            .iter()
            .any(|b| b.name() == "b_api" || b.name() == "d_api"),
        "{map:?}"
    );
    let module = object::File::parse(&built.payloads[0].1[..]).unwrap();
    let text = module.section_by_name(".text.case_entry").unwrap();
    let mut targets = Vec::new();
    for (_, rel) in text.relocations() {
        if let RelocationTarget::Symbol(i) = rel.target() {
            let s = module.symbol_by_index(i).unwrap();
            targets.push((s.name().unwrap().to_string(), s.is_undefined()));
        }
    }
    targets.sort();
    assert_eq!(
        targets,
        vec![
            ("b_api".into(), false),
            ("b_hidden".into(), true),
            ("d_api".into(), false),
            ("helper".into(), false)
        ]
    );
}

#[test]
fn function_moved_to_another_file_replaces_the_old_copy() {
    let dir = tempfile::tempdir().unwrap();
    let files: [(&str, &str, &str); 3] = [
        (
            "old",
            "a.c",
            "long moved_total;\n\
             long __attribute__((noinline)) mover(long x) { moved_total += x; return x + 1; }\n\
             long case_entry(long x) { return mover(x); }\n",
        ),
        (
            "new",
            "a.c",
            "long mover(long x);\nlong case_entry(long x) { return mover(x); }\n",
        ),
        (
            "new",
            "b.c",
            "long moved_total;\n\
             long __attribute__((noinline)) mover(long x) { moved_total += x; return x + 2; }\n",
        ),
    ];
    for (side, name, text) in files {
        let d = dir.path().join(side);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(name), text).unwrap();
        let obj = name.replace(".c", ".o");
        gcc(
            &[
                "-O2",
                "-g",
                "-ffunction-sections",
                "-fdata-sections",
                "-fPIC",
                "-c",
                name,
                "-o",
                &obj,
            ],
            &d,
        );
    }
    gcc(&["-shared", "old/a.o", "-o", "liba.so"], dir.path());
    let opts = BuildOptions {
        target: dir.path().join("liba.so"),
        old: dir.path().join("old"),
        new: dir.path().join("new"),
        name: "moved".into(),
        version: "1".into(),
        description: String::new(),
        allow_line_changes: false,
        ..Default::default()
    };
    let built = build(&opts).unwrap();
    let f: Vec<_> = built.manifest.functions.iter().collect();
    assert_eq!(f.len(), 1, "{f:#?}");
    assert_eq!(f[0].name, "mover");
    assert_eq!(f[0].action, Action::Replace);
    assert_eq!(f[0].reason, "moved from a.c");
    assert_eq!(f[0].old_offset, Some(any_symbol(&opts.target, "mover")));
    // The data moved along but keeps living in the target.
    assert!(built.manifest.data.is_empty(), "{:?}", built.manifest.data);
    let map: SymbolMap =
        toml::from_str(std::str::from_utf8(&built.payloads[1].1).unwrap()).unwrap();
    assert!(
        map.symbols.iter().any(|b| matches!(b,
            SymbolBinding::Target { name, offset } if name == "moved_total"
                && *offset == any_symbol(&opts.target, "moved_total"))),
        "{map:?}"
    );
}

#[test]
fn a_folder_of_one_pair_builds_as_the_pair_does_and_identical_files_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let sources = [
        (
            "old",
            "long f(long x) { return x + 1; }\nlong g(long x) { return x * 3; }\n",
        ),
        (
            "new",
            "long f(long x) { return x + 2; }\nlong g(long x) { return x * 3; }\n",
        ),
    ];
    for (side, text) in sources {
        let d = dir.path().join(side);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("u.c"), text).unwrap();
        let flags = [
            "-O2",
            "-g",
            "-ffunction-sections",
            "-fdata-sections",
            "-fPIC",
        ];
        let mut args = flags.to_vec();
        args.extend(["-c", "u.c", "-o", "u.o"]);
        gcc(&args, &d);
    }
    let same = dir.path().join("same");
    std::fs::create_dir_all(&same).unwrap();
    std::fs::copy(dir.path().join("old/u.o"), same.join("u.o")).unwrap();
    gcc(&["-shared", "old/u.o", "-o", "libu.so"], dir.path());
    let opts = |old: &str, new: &str| BuildOptions {
        target: dir.path().join("libu.so"),
        old: dir.path().join(old),
        new: dir.path().join(new),
        name: "one".into(),
        version: "1".into(),
        ..Default::default()
    };
    let folder = build(&opts("old", "new")).unwrap();
    let names: Vec<_> = folder.manifest.functions.iter().map(|f| &f.name).collect();
    assert_eq!(names, ["f"], "{:#?}", folder.manifest.functions);
    let pair = build(&opts("old/u.o", "new/u.o")).unwrap();
    assert_eq!(folder.manifest.functions, pair.manifest.functions);
    assert_eq!(folder.payloads, pair.payloads);
    let unchanged = build(&opts("old", "same")).unwrap();
    assert!(unchanged.manifest.functions.is_empty());
    assert!(
        unchanged
            .notes
            .iter()
            .any(|n| n.contains("no function changed")),
        "{:?}",
        unchanged.notes
    );
}
