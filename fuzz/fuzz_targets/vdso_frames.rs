//! The 32-bit vDSO's functions have no CFI and are walked by frame pointer where their frame
//! is set (`FramedCode`), found from the vDSO image in the target's memory: any image (ELF
//! headers, dynamic symbols, code) must give frames or none, never a panic or a hang.
//!
//! Input: `[base: u64 little-endian]`, then the image mapped at `base`.
#![no_main]
use libfuzzer_sys::fuzz_target;
use lpkg_applier::fuzzing::vdso_frames_from_bytes;

fuzz_target!(|data: &[u8]| {
    let Some((base, image)) = data.split_first_chunk::<8>() else {
        return;
    };
    let base = u64::from_le_bytes(*base);
    let framed = vdso_frames_from_bytes(image, base);
    for pc in [base, base.wrapping_add(image.len() as u64 / 2)] {
        let _ = framed.is_set_at(pc, true);
        let _ = framed.is_set_at(pc, false);
    }
});
