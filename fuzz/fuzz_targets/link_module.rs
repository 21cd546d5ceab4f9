//! The patch module is signed, but the linker must still refuse a malformed one with an error:
//! lay it out and link it at a fixed base with every undefined symbol resolved far away.
#![no_main]
use libfuzzer_sys::fuzz_target;
use lpkg_applier::fuzzing::{Layout, Resolve};
use lpkg_applier::Error;

struct Anywhere;

impl Resolve for Anywhere {
    fn address(&self, name: &str) -> Result<u64, Error> {
        Ok(0x7f00_0000_0000 + name.len() as u64)
    }
    fn tls_offset(&self, _name: &str) -> Result<i64, Error> {
        Ok(-64)
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(layout) = Layout::new(data) {
        if layout.len() < 64 << 20 {
            let _ = layout.link(data, 0x5555_0000_0000, &Anywhere);
            // As for new code written in place: each lone function linked elsewhere.
            if let Ok(lone) = layout.lone_functions(data) {
                let placed = lone
                    .values()
                    .map(|&(section, _)| (section, 0x5555_1000_0000))
                    .collect();
                let _ = layout.link_placed(data, 0x5555_0000_0000, &Anywhere, &placed);
            }
        }
    }
});
