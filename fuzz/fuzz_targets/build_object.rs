//! The builder's ELF, relocation, DWARF and line-program readers on a damaged object: build a
//! package from a real target and old object (`LPKG_FUZZ_PAIR=DIR` holding `app` and `old.o`)
//! with the input as the new object. It may fail with an error, never panic.
#![no_main]
use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

struct Pair {
    dir: PathBuf,
    new: PathBuf,
}

fn pair() -> &'static Pair {
    static PAIR: OnceLock<Pair> = OnceLock::new();
    PAIR.get_or_init(|| {
        let dir = PathBuf::from(
            std::env::var_os("LPKG_FUZZ_PAIR").expect("LPKG_FUZZ_PAIR=DIR with app and old.o"),
        );
        let new = std::env::temp_dir().join(format!("lpkg-fuzz-new-{}.o", std::process::id()));
        Pair { dir, new }
    })
}

fuzz_target!(|data: &[u8]| {
    let pair = pair();
    if std::fs::write(&pair.new, data).is_err() {
        return;
    }
    let _ = lpkg_builder::build(&lpkg_builder::BuildOptions {
        target: pair.dir.join("app"),
        old: pair.dir.join("old.o"),
        new: pair.new.clone(),
        name: "fuzz".into(),
        version: "1".into(),
        ..Default::default()
    });
});
