//! What a target gives lpkg to build signal frames from (its registers, stack pointer, XSAVE
//! state, alternate stack bytes, program header) must give a frame or a refusal, never a panic,
//! for both architectures.
#![no_main]
use libfuzzer_sys::fuzz_target;
use lpkg_kernel::arch::{build_sigframe, AltStack, Arch, FrameState, Registers, XsaveLayout};

fuzz_target!(|data: &[u8]| {
    let _ = Arch::of_elf_header(data);
    let word = |i: usize| {
        let mut b = [0u8; 8];
        for (j, byte) in b.iter_mut().enumerate() {
            *byte = data.get(8 * i + j).copied().unwrap_or(0);
        }
        u64::from_le_bytes(b)
    };
    let layout = XsaveLayout::from_parts(&[(2, 576, 256), (5, 832, 64), (6, 896, 512)]);
    let xstate = data.get(64..).unwrap_or(&[]);
    for arch in [Arch::X86_64, Arch::I386] {
        let _ = AltStack::from_bytes(arch, data.get(..AltStack::size(arch)).unwrap_or(&[]));
        let mut regs = Registers::zero_of(arch);
        (regs.0.rip, regs.0.rsp, regs.0.rax, regs.0.orig_rax) =
            (word(0), word(1), word(2), word(3));
        let state = FrameState {
            regs: &regs,
            mask: word(4),
            altstack: AltStack::UNCHANGED,
            xstate,
            layout: &layout,
        };
        let args = [word(5), word(6)];
        let _ = build_sigframe(&state, &args[..(word(7) % 3) as usize], word(6), word(7));
    }
});
