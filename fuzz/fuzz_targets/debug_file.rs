//! The builder's reading of a stripped target's debug file (its build-id, `.symtab`, and the
//! DWARF unit paths and struct layouts, dwz's partial units included): build a package for a
//! real stripped target (`LPKG_FUZZ_DEBUG=DIR` holding `app` stripped, `old.o` and `new.o`)
//! with the input as its debug file. It may fail with an error, never panic.
#![no_main]
use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

struct Inputs {
    dir: PathBuf,
    debug: PathBuf,
}

fn inputs() -> &'static Inputs {
    static INPUTS: OnceLock<Inputs> = OnceLock::new();
    INPUTS.get_or_init(|| {
        let dir = PathBuf::from(
            std::env::var_os("LPKG_FUZZ_DEBUG")
                .expect("LPKG_FUZZ_DEBUG=DIR with app (stripped), old.o and new.o"),
        );
        let debug = std::env::temp_dir().join(format!("lpkg-fuzz-{}.debug", std::process::id()));
        Inputs { dir, debug }
    })
}

fuzz_target!(|data: &[u8]| {
    let inputs = inputs();
    if std::fs::write(&inputs.debug, data).is_err() {
        return;
    }
    let _ = lpkg_builder::build(&lpkg_builder::BuildOptions {
        target: inputs.dir.join("app"),
        old: inputs.dir.join("old.o"),
        new: inputs.dir.join("new.o"),
        name: "fuzz".into(),
        version: "1".into(),
        debug: lpkg_builder::DebugOptions {
            file: Some(inputs.debug.clone()),
            dir: None,
        },
        ..Default::default()
    });
});
