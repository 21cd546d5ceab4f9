//! The unwinder reads CFI and stack words out of a target process that may be corrupt or
//! hostile: any `.eh_frame` bytes, stack bytes and registers must give a backtrace (complete
//! or not), never a panic or a hang.
//!
//! Input: `[eh_frame length: u16][rip][rsp][rbp][rbx][rax][orig_rax][eh_frame address]
//! [code start][code length: u32]` (u64s little-endian unless said), then the `.eh_frame`
//! bytes, then the stack bytes (at `rsp`). Bit 15 of the length makes the thread an i386
//! one (4-byte words, the i386 signal frames and register numbers); the length is the other
//! 15 bits.
#![no_main]
use libfuzzer_sys::fuzz_target;
use lpkg_applier::fuzzing::backtrace_from_bytes;
use lpkg_kernel::arch::{Arch, Registers};

const HEADER: usize = 2 + 8 * 8 + 4;

fuzz_target!(|data: &[u8]| {
    if data.len() < HEADER {
        return;
    }
    let u64_at = |i: usize| u64::from_le_bytes(data[2 + 8 * i..10 + 8 * i].try_into().unwrap());
    let header = u16::from_le_bytes([data[0], data[1]]);
    let arch = match header & 0x8000 {
        0 => Arch::X86_64,
        _ => Arch::I386,
    };
    let eh_len = (header & 0x7fff) as usize;
    let code_len = u32::from_le_bytes(data[66..70].try_into().unwrap()) as u64;
    let rest = &data[HEADER..];
    let (eh_frame, stack) = rest.split_at(eh_len.min(rest.len()));
    let mut regs = Registers::zero_of(arch);
    regs.0.rip = u64_at(0);
    regs.0.rsp = u64_at(1);
    regs.0.rbp = u64_at(2);
    regs.0.rbx = u64_at(3);
    regs.0.rax = u64_at(4);
    regs.0.orig_rax = u64_at(5);
    let code = u64_at(7);
    let trace = backtrace_from_bytes(
        eh_frame,
        u64_at(6),
        code..code.saturating_add(code_len),
        &regs,
        stack,
    );
    assert!(!trace.frames.is_empty());
    assert!(trace.frames.len() <= 4097);
    assert_eq!(trace.frames[0].pc, regs.0.rip);
    assert!(trace.frames.iter().all(|f| f.executing || f.pc != 0));
});
