//! Bad inputs and refusals that do not fit the corpus shape: clear errors, never panics.

mod util;

use util::run;

use lpkg_builder::{build, BuildOptions, Error};

const FLAGS: &[&str] = &[
    "-O2",
    "-g",
    "-ffunction-sections",
    "-fdata-sections",
    "-fPIC",
    "-c",
];

/// old.c/new.c compiled to old/x.o and new/x.o, old linked as libx.so with `link` flags.
fn setup(
    compiler: &str,
    ext: &str,
    old: &str,
    new: &str,
    link: &[&str],
) -> (tempfile::TempDir, BuildOptions) {
    let dir = tempfile::tempdir().unwrap();
    for (side, text) in [("old", old), ("new", new)] {
        let d = dir.path().join(side);
        std::fs::create_dir_all(&d).unwrap();
        let src = format!("x.{ext}");
        std::fs::write(d.join(&src), text).unwrap();
        let mut args = FLAGS.to_vec();
        args.extend([src.as_str(), "-o", "x.o"]);
        run(compiler, &args, &d);
    }
    let mut args = vec!["-shared", "old/x.o", "-o", "libx.so"];
    args.extend(link);
    run(compiler, &args, dir.path());
    let opts = BuildOptions {
        target: dir.path().join("libx.so"),
        old: dir.path().join("old/x.o"),
        new: dir.path().join("new/x.o"),
        name: "x".into(),
        version: "1".into(),
        description: String::new(),
        allow_line_changes: false,
        ..Default::default()
    };
    (dir, opts)
}

const OLD: &str = "long f(long x) { return x * 3 + 1; }\n";
const NEW: &str = "long f(long x) { return x * 5 + 1; }\n";

#[test]
fn stripped_target_is_refused() {
    let (_dir, opts) = setup("gcc", "c", OLD, NEW, &["-s"]);
    let err = build(&opts).unwrap_err();
    assert!(matches!(err, Error::StrippedTarget { .. }), "{err}");
    assert!(err.to_string().contains("stripped"), "{err}");
}

#[test]
fn target_without_build_id_is_refused() {
    let (_dir, opts) = setup("gcc", "c", OLD, NEW, &["-Wl,--build-id=none"]);
    let err = build(&opts).unwrap_err();
    assert!(matches!(err, Error::NoBuildId { .. }), "{err}");
}

#[test]
fn shared_library_build_records_target_identity() {
    let (_dir, opts) = setup("gcc", "c", OLD, NEW, &[]);
    let built = build(&opts).unwrap();
    let t = &built.manifest.target;
    assert_eq!(t.file_name, "libx.so");
    assert_eq!(t.machine, "x86_64");
    assert_eq!(t.build_id.len(), 40, "sha1 build-id in hex: {}", t.build_id);
    assert_eq!(t.sha256.len(), 64);
    assert!(
        built.manifest.payloads.is_empty(),
        "payload digests are the package writer's job"
    );
    assert_eq!(built.payloads[0].0, "module.o");
    assert_eq!(built.payloads[1].0, "symbols.toml");
    let f = &built.manifest.functions[0];
    assert_eq!(f.name, "f");
    assert_eq!(f.source.as_deref(), Some("x.c:1"));
    let size = f.old_size.unwrap() as usize;
    let bytes = std::fs::read(&opts.target).unwrap();
    // In a shared library the text's virtual addresses equal its file offsets.
    let off = f.old_offset.unwrap() as usize;
    let digest = {
        use sha2::Digest;
        sha2::Sha256::digest(&bytes[off..off + size])
    };
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(f.old_sha256.as_deref(), Some(hex.as_str()));
}

#[test]
fn not_an_object_is_a_clear_error() {
    let (dir, mut opts) = setup("gcc", "c", OLD, NEW, &[]);
    let new = opts.new.clone();
    std::fs::write(dir.path().join("junk.o"), b"not elf at all").unwrap();
    opts.new = dir.path().join("junk.o");
    let err = build(&opts).unwrap_err();
    assert!(matches!(err, Error::BadInput { .. }), "{err}");
    opts.new = dir.path().join("missing.o");
    assert!(matches!(build(&opts).unwrap_err(), Error::Io { .. }));
    opts.new = dir.path().join("new");
    assert!(build(&opts)
        .unwrap_err()
        .to_string()
        .contains("both be folders"));
    // An executable where an object is expected.
    opts.new = opts.target.clone();
    assert!(build(&opts)
        .unwrap_err()
        .to_string()
        .contains("not a relocatable object"));
    // A source file where the target is expected: said so, whatever its bytes.
    opts.new = new;
    opts.target = dir.path().join("junk.o");
    let err = build(&opts).unwrap_err().to_string();
    assert!(err.contains("target: not an ELF file"), "{err}");
}

#[test]
fn target_not_built_from_old_objects_is_refused() {
    let (dir, mut opts) = setup("gcc", "c", OLD, NEW, &[]);
    let other = dir.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("y.c"), "long g(long x) { return x; }\n").unwrap();
    run("gcc", &["-shared", "-fPIC", "y.c", "-o", "liby.so"], &other);
    opts.target = other.join("liby.so");
    let err = build(&opts).unwrap_err();
    assert!(matches!(err, Error::NotInTarget { .. }), "{err}");
    assert!(err.to_string().contains("f"), "{err}");
}

#[test]
fn cxx_comdat_function_new_to_the_object_is_carried() {
    let old = "long __attribute__((noinline)) entry(long x) { return x + 1; }\n";
    let new = "inline long __attribute__((noinline)) twice(long x) { return 2 * x; }\n\
               long __attribute__((noinline)) entry(long x) { return twice(x) + 1; }\n";
    let (_dir, opts) = setup("g++", "cc", old, new, &[]);
    let built = build(&opts).unwrap();
    let actions: Vec<(&str, lpkg_format::Action)> = built
        .manifest
        .functions
        .iter()
        .map(|f| (f.name.as_str(), f.action))
        .collect();
    assert_eq!(
        actions,
        [
            ("_Z5entryl", lpkg_format::Action::Replace),
            ("_Z5twicel", lpkg_format::Action::New)
        ]
    );
}

#[test]
fn changed_cxx_comdat_function_is_refused() {
    let old = "inline long __attribute__((noinline)) twice(long x) { return 2 * x; }\n\
               long entry(long x) { return twice(x) + 1; }\n";
    let new = "inline long __attribute__((noinline)) twice(long x) { return 3 * x; }\n\
               long entry(long x) { return twice(x) + 1; }\n";
    let (_dir, opts) = setup("g++", "cc", old, new, &[]);
    let err = build(&opts).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("_Z5twicel") && text.contains("COMDAT"),
        "{text}"
    );
}

#[test]
fn target_from_other_objects_is_refused() {
    let (dir, mut opts) = setup("gcc", "c", OLD, NEW, &[]);
    // Link the NEW object as if it were production: f's bytes differ from the old object's.
    run(
        "gcc",
        &["-shared", "new/x.o", "-o", "libnew.so"],
        dir.path(),
    );
    opts.target = dir.path().join("libnew.so");
    let err = build(&opts).unwrap_err().to_string();
    assert!(err.contains("refused: f: the target's copy"), "{err}");
}

#[test]
fn renumbered_static_without_dwarf_is_refused() {
    let old = "long f(long x) { static long n; n += x; return n; }\n";
    let new =
        "static long __attribute__((noinline)) g(long x) { static long n; n -= x; return n; }\n\
               long f(long x) { static long n; n += x; return n + g(x); }\n";
    let dir = tempfile::tempdir().unwrap();
    for (side, text) in [("old", old), ("new", new)] {
        let d = dir.path().join(side);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("x.c"), text).unwrap();
        // No -g: static locals can only be matched by name.
        run(
            "gcc",
            &[
                "-O2",
                "-ffunction-sections",
                "-fdata-sections",
                "-fPIC",
                "-c",
                "x.c",
                "-o",
                "x.o",
            ],
            &d,
        );
    }
    run("gcc", &["-shared", "old/x.o", "-o", "libx.so"], dir.path());
    let opts = BuildOptions {
        target: dir.path().join("libx.so"),
        old: dir.path().join("old/x.o"),
        new: dir.path().join("new/x.o"),
        name: "x".into(),
        version: "1".into(),
        description: String::new(),
        allow_line_changes: false,
        ..Default::default()
    };
    let err = build(&opts).unwrap_err().to_string();
    assert!(err.contains("without DWARF"), "{err}");
}

#[test]
fn new_data_without_data_sections_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let old = "long kept = 1;\nlong f(long x) { return x + kept; }\n";
    let new = "long kept = 1;\nlong added = 2;\nlong f(long x) { return x + kept + added; }\n";
    for (side, text) in [("old", old), ("new", new)] {
        let d = dir.path().join(side);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("x.c"), text).unwrap();
        run(
            "gcc",
            &[
                "-O2",
                "-g",
                "-ffunction-sections",
                "-fPIC",
                "-c",
                "x.c",
                "-o",
                "x.o",
            ],
            &d,
        );
    }
    run("gcc", &["-shared", "old/x.o", "-o", "libx.so"], dir.path());
    let opts = BuildOptions {
        target: dir.path().join("libx.so"),
        old: dir.path().join("old/x.o"),
        new: dir.path().join("new/x.o"),
        name: "x".into(),
        version: "1".into(),
        description: String::new(),
        allow_line_changes: false,
        ..Default::default()
    };
    let err = build(&opts).unwrap_err().to_string();
    assert!(
        err.contains("added: new data shares section .data"),
        "{err}"
    );
}

#[test]
fn things_the_linker_dropped_are_carried() {
    let dir = tempfile::tempdir().unwrap();
    let old = "long spare_count;\n\
               long __attribute__((noinline)) spare(long x) { spare_count++; return x * 9; }\n\
               long entry(long x) { return x + 1; }\n";
    let new = "long spare_count;\n\
               long __attribute__((noinline)) spare(long x) { spare_count++; return x * 9; }\n\
               long entry(long x) { return spare(x) + 1; }\n";
    for (side, text) in [("old", old), ("new", new)] {
        let d = dir.path().join(side);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("x.c"), text).unwrap();
        run("gcc", &[FLAGS, &["x.c", "-o", "x.o"]].concat(), &d);
    }
    std::fs::write(
        dir.path().join("main.c"),
        "long entry(long);\nint main(void) { return (int)entry(1); }\n",
    )
    .unwrap();
    run("gcc", &["-O2", "-fPIE", "-c", "main.c"], dir.path());
    // --gc-sections drops spare and spare_count: nothing in the old program uses them.
    run(
        "gcc",
        &[
            "-pie",
            "-Wl,--gc-sections",
            "main.o",
            "old/x.o",
            "-o",
            "prog",
        ],
        dir.path(),
    );
    let opts = BuildOptions {
        target: dir.path().join("prog"),
        old: dir.path().join("old/x.o"),
        new: dir.path().join("new/x.o"),
        name: "x".into(),
        version: "1".into(),
        description: String::new(),
        allow_line_changes: false,
        ..Default::default()
    };
    let built = build(&opts).unwrap();
    let f: Vec<(&str, lpkg_format::Action)> = built
        .manifest
        .functions
        .iter()
        .map(|f| (f.name.as_str(), f.action))
        .collect();
    assert_eq!(
        f,
        vec![
            ("entry", lpkg_format::Action::Replace),
            ("spare", lpkg_format::Action::New)
        ]
    );
    let data: Vec<&str> = built
        .manifest
        .data
        .iter()
        .map(|d| d.name.as_str())
        .collect();
    assert_eq!(data, vec!["spare_count"]);
    assert!(
        built
            .notes
            .iter()
            .any(|n| n.contains("spare: not in the target")),
        "{:?}",
        built.notes
    );
}

#[test]
fn objects_of_another_machine_than_the_target_are_refused() {
    let (dir, mut opts) = setup("gcc", "c", OLD, NEW, &[]);
    // The same sources compiled for i386, against the x86_64 target: both ways round.
    for side in ["old", "new"] {
        let d = dir.path().join(side);
        let mut args = vec!["-m32"];
        args.extend(FLAGS);
        args.extend(["x.c", "-o", "x32.o"]);
        run("gcc", &args, &d);
    }
    opts.new = dir.path().join("new/x32.o");
    let err = build(&opts).unwrap_err();
    assert!(matches!(err, Error::BadInput { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("object is for i386, the target for x86_64"),
        "{err}"
    );
    run(
        "gcc",
        &["-m32", "-shared", "old/x32.o", "-o", "libx32.so"],
        dir.path(),
    );
    opts.target = dir.path().join("libx32.so");
    opts.old = dir.path().join("old/x32.o");
    opts.new = dir.path().join("new/x.o");
    let err = build(&opts).unwrap_err();
    assert!(
        err.to_string()
            .contains("object is for x86_64, the target for i386"),
        "{err}"
    );
    // All i386: built, for machine i386.
    opts.new = dir.path().join("new/x32.o");
    let built = build(&opts).unwrap();
    assert_eq!(built.manifest.target.machine, "i386");
}

#[test]
fn a_stripped_i386_target_is_read_with_its_debug_file() {
    let (dir, mut opts) = setup("gcc", "c", OLD, NEW, &[]);
    for side in ["old", "new"] {
        let d = dir.path().join(side);
        let mut args = vec!["-m32"];
        args.extend(FLAGS);
        args.extend(["x.c", "-o", "x32.o"]);
        run("gcc", &args, &d);
    }
    let d = dir.path();
    run(
        "gcc",
        &["-m32", "-shared", "old/x32.o", "-o", "libx32.so"],
        d,
    );
    run(
        "objcopy",
        &["--only-keep-debug", "libx32.so", "libx32.so.debug"],
        d,
    );
    run("strip", &["libx32.so"], d);
    run(
        "objcopy",
        &["--add-gnu-debuglink=libx32.so.debug", "libx32.so"],
        d,
    );
    opts.target = d.join("libx32.so");
    opts.old = d.join("old/x32.o");
    opts.new = d.join("new/x32.o");
    let built = build(&opts).unwrap();
    assert_eq!(built.manifest.target.machine, "i386");
    assert!(
        built.notes.iter().any(|n| n.contains("by .gnu_debuglink")),
        "{:?}",
        built.notes
    );
    assert_eq!(built.manifest.functions[0].name, "f");
}
