//! i386 (IA32 emulation of a 64-bit kernel): the system call numbers lpkg injects and how
//! they are made, the cdecl calling convention, the ia32 signal frame, instruction encodings,
//! and the mapping of the i386 registers onto the x86_64 `user_regs_struct` a 64-bit tracer
//! reads (`eax` = low half of `rax`, `eip` of `rip`, and so on; see `arch`'s doc).
//!
//! A compat thread enters the kernel with `int $0x80` (`syscall` is undefined in 32-bit mode
//! on Intel CPUs), the number in `eax`, the arguments in `ebx ecx edx esi edi ebp`. Its signal
//! frames are the kernel's `struct rt_sigframe_ia32`, loaded by the ia32 `rt_sigreturn`
//! (number 173) from the stack pointer minus 4.

use super::x86_64::xsave;
use super::{Arch, FrameError, FrameState, Raw, SigFrame, SignalFrameFacts, Sys, UnwindFacts};

/// `int $0x80`.
pub const INT80_INSN: [u8; 2] = [0xcd, 0x80];

/// `restart_syscall(2)`.
pub const SYS_RESTART_SYSCALL: u64 = 0;
/// `close(2)`.
pub const SYS_CLOSE: u64 = 6;
/// `getpid(2)`.
pub const SYS_GETPID: u64 = 20;
/// `munmap(2)`.
pub const SYS_MUNMAP: u64 = 91;
/// `ftruncate(2)` (a 32-bit length).
pub const SYS_FTRUNCATE: u64 = 93;
/// `sigreturn(2)`: the frame of a handler without `SA_SIGINFO`.
pub const SYS_SIGRETURN: u64 = 119;
/// `clone(2)`.
pub const SYS_CLONE: u64 = 120;
/// `mprotect(2)`.
pub const SYS_MPROTECT: u64 = 125;
/// `prctl(2)`.
pub const SYS_PRCTL: u64 = 172;
/// `rt_sigreturn(2)`.
pub const SYS_RT_SIGRETURN: u64 = 173;
/// `sigaltstack(2)`.
pub const SYS_SIGALTSTACK: u64 = 186;
/// `mmap2(2)`: `mmap` with the file offset in 4096-byte units. (i386's `mmap`, number 90,
/// takes its six arguments in a structure in memory.)
pub const SYS_MMAP2: u64 = 192;
/// `memfd_create(2)`.
pub const SYS_MEMFD_CREATE: u64 = 356;
/// `clone3(2)`.
pub const SYS_CLONE3: u64 = 435;

/// The unit of `mmap2`'s offset (4096 whatever the page size).
pub const MMAP2_UNIT: u64 = 4096;

/// `AUDIT_ARCH_I386`: `seccomp_data.arch` of a system call made with `int $0x80`.
pub const AUDIT_ARCH: u32 = 0x4000_0003;

/// One past the highest address of a compat process (`IA32_PAGE_OFFSET`, the top page
/// excepted).
pub const USER_TOP: u64 = 0xffff_e000;

/// The 32-bit user code and data segment selectors (`__USER32_CS`, `__USER_DS`).
const USER32_CS: u64 = 0x23;
const USER_DS: u64 = 0x2b;

/// The direction and trap flags of `eflags`.
const EFLAGS_DF: u64 = 1 << 10;
const EFLAGS_TF: u64 = 1 << 8;

/// The number of system call `sys`.
pub(super) fn nr(sys: Sys) -> u64 {
    match sys {
        Sys::Mmap => SYS_MMAP2,
        Sys::Mprotect => SYS_MPROTECT,
        Sys::Munmap => SYS_MUNMAP,
        Sys::Close => SYS_CLOSE,
        Sys::Ftruncate => SYS_FTRUNCATE,
        Sys::Prctl => SYS_PRCTL,
        Sys::MemfdCreate => SYS_MEMFD_CREATE,
        Sys::RtSigreturn => SYS_RT_SIGRETURN,
        Sys::Sigaltstack => SYS_SIGALTSTACK,
        Sys::Getpid => SYS_GETPID,
        Sys::RestartSyscall => SYS_RESTART_SYSCALL,
    }
}

/// Every system call lpkg makes in a compat target, with typical arguments (see
/// `x86_64::INJECTED_CALLS`).
pub const INJECTED_CALLS: &[(&str, u64, [u64; 6])] = &[
    ("mmap2", SYS_MMAP2, [0, 0x1000, 0x3, 0x22, 0xffff_ffff, 0]),
    (
        "mmap2",
        SYS_MMAP2,
        [0x5000_0000, 0x10000, 0x3, 0x10_0002, 3, 0],
    ),
    (
        "mmap2",
        SYS_MMAP2,
        [0x5000_0000, 0x10000, 0x3, 0x10_0001, 3, 0],
    ),
    (
        "mprotect",
        SYS_MPROTECT,
        [0x5000_0000, 0x1000, 0x5, 0, 0, 0],
    ),
    (
        "mprotect",
        SYS_MPROTECT,
        [0x5000_0000, 0x1000, 0x1, 0, 0, 0],
    ),
    (
        "mprotect",
        SYS_MPROTECT,
        [0x5000_0000, 0x1000, 0x3, 0, 0, 0],
    ),
    ("munmap", SYS_MUNMAP, [0x5000_0000, 0x10000, 0, 0, 0, 0]),
    (
        "memfd_create",
        SYS_MEMFD_CREATE,
        [0x5000_0000, 0x9, 0, 0, 0, 0],
    ),
    (
        "memfd_create",
        SYS_MEMFD_CREATE,
        [0x5000_0000, 0x1, 0, 0, 0, 0],
    ),
    ("ftruncate", SYS_FTRUNCATE, [3, 0x10000, 0, 0, 0, 0]),
    ("close", SYS_CLOSE, [3, 0, 0, 0, 0, 0]),
    ("sigaltstack", SYS_SIGALTSTACK, [0, 0xff00_0000, 0, 0, 0, 0]),
    ("rt_sigreturn", SYS_RT_SIGRETURN, [0; 6]),
    ("getpid", SYS_GETPID, [0; 6]),
];

/// `mov $173,%eax; int $0x80` (`rt_sigreturn`): glibc's i386 `__restore_rt`, and the vDSO's
/// `__kernel_rt_sigreturn`.
pub const RESTORE_RT: [u8; 7] = [0xb8, 0xad, 0x00, 0x00, 0x00, 0xcd, 0x80];
/// `pop %eax; mov $119,%eax; int $0x80` (`sigreturn`): glibc's i386 `__restore` and the vDSO's
/// `__kernel_sigreturn`, where a handler without `SA_SIGINFO` returns to.
pub const RESTORE: [u8; 8] = [0x58, 0xb8, 0x77, 0x00, 0x00, 0x00, 0xcd, 0x80];
/// The compat vDSO's `rt_sigreturn` restorer, the one the kernel itself gives handlers
/// registered without one of their own.
pub const VDSO_RT_SIGRETURN: &str = "__kernel_rt_sigreturn";

/// The system call a thread stopped in one is inside: `orig_eax` >= 0 (the kernel stores it
/// zero-extended from 32 bits, and -1 for none either as 32 or 64 bits).
pub(super) fn syscall_nr(r: &Raw) -> Option<u64> {
    let nr = r.orig_rax as u32;
    (nr as i32 >= 0 && r.orig_rax >> 32 == 0).then_some(u64::from(nr))
}

/// What a system call returned in `eax`: `-errno`, or the value zero-extended (an address
/// above 2 GiB is a value, not an error).
pub(super) fn syscall_result(r: &Raw) -> i64 {
    let eax = r.rax as u32;
    if eax > (-4096i32) as u32 {
        i64::from(eax as i32)
    } else {
        i64::from(eax)
    }
}

/// 32-bit code: a thread of a 32-bit process that runs 64-bit code (a far jump to the
/// 64-bit segment) runs ours in 32-bit mode all the same; its own `cs` comes back from the
/// saved registers or the signal frame.
fn set_code_segment(r: &mut Raw) {
    r.cs = USER32_CS;
    r.ss = USER_DS;
}

/// Registers for executing `int $0x80` at `insn` with number `nr` and `args`.
pub(super) fn prepare_syscall(r: &mut Raw, insn: u64, nr: u64, args: [u64; 6]) {
    r.rip = insn;
    r.rax = nr;
    r.orig_rax = u64::MAX;
    r.eflags &= !EFLAGS_TF;
    set_code_segment(r);
    set_syscall_args(r, args);
}

/// The six arguments of a system call, in `ebx ecx edx esi edi ebp` (32 bits each).
pub(super) fn set_syscall_args(r: &mut Raw, args: [u64; 6]) {
    let args = args.map(|a| a & 0xffff_ffff);
    [r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rbp] = args;
}

/// Registers that make the thread run `rt_sigreturn` with the signal frame at `frame`
/// through `restorer` ([`RESTORE_RT`]): the stack pointer is `frame + 4`, as after a
/// handler's `ret` popped the frame's return address; the ia32 `rt_sigreturn` finds the frame
/// 4 bytes below it.
pub(super) fn prepare_sigreturn(r: &mut Raw, restorer: u64, frame: u64) {
    r.rip = restorer;
    r.rsp = frame + 4;
    r.rax = SYS_RT_SIGRETURN;
    r.orig_rax = u64::MAX;
    r.eflags &= !EFLAGS_TF;
    set_code_segment(r);
}

/// Registers for entering `func` with the stack pointer at `sp`, where the return address is
/// and the arguments above it (written with the frame, [`build_sigframe`]); `sp + 4` is
/// 16-byte aligned, as the i386 System V ABI wants it at a call.
pub(super) fn prepare_call(r: &mut Raw, func: u64, sp: u64) {
    r.rip = func;
    r.rsp = sp;
    r.rax = 0;
    r.orig_rax = u64::MAX;
    r.eflags &= !(EFLAGS_DF | EFLAGS_TF);
    set_code_segment(r);
}

/// At the `getpid` entry stop of [`lead_out_trampoline`]: the state right after the function
/// returned to `ret`, its return value back in `eax` from `ecx`, the system call skipped.
pub(super) fn returned_to(r: &mut Raw, ret: u64) {
    r.rip = ret;
    r.rax = r.rcx & 0xffff_ffff;
    r.orig_rax = u64::MAX;
}

/// For a call returning through [`MARKING_TRAMPOLINE`]: it stores `value` at `address`, from
/// `esi`, `edi` and `ebp` (callee-saved, so as we set them when the function returns).
pub(super) fn set_mark(r: &mut Raw, address: u64, value: u64) {
    r.rsi = address & 0xffff_ffff;
    r.rdi = value & 0xffff_ffff;
    r.rbp = value >> 32;
}

/// `ebx`, the first argument of a system call: where the return trampolines keep the called
/// function's return value (`eax`).
pub(super) fn first_arg(r: &Raw) -> u64 {
    r.rbx & 0xffff_ffff
}

/// Where a called function returns to: keeps its return value in `ebx`, then `rt_sigreturn`.
/// `mov %eax,%ebx; mov $173,%eax; int $0x80; ud2`.
pub const SIGRETURN_TRAMPOLINE: [u8; 11] = [
    0x89, 0xc3, 0xb8, 0xad, 0x00, 0x00, 0x00, 0xcd, 0x80, 0x0f, 0x0b,
];
/// Offset just past the trampoline's `int $0x80`.
pub const SIGRETURN_TRAMPOLINE_SYSCALL_END: u64 = 9;

/// [`SIGRETURN_TRAMPOLINE`] that first stores `edi` and `ebp` at `(%esi)`.
/// `mov %edi,(%esi); mov %ebp,4(%esi); mov %eax,%ebx; mov $173,%eax; int $0x80; ud2`.
pub const MARKING_TRAMPOLINE: [u8; 16] = [
    0x89, 0x3e, 0x89, 0x6e, 0x04, 0x89, 0xc3, 0xb8, 0xad, 0x00, 0x00, 0x00, 0xcd, 0x80, 0x0f, 0x0b,
];
/// Offset just past the marking trampoline's `int $0x80`.
pub const MARKING_TRAMPOLINE_SYSCALL_END: u64 = 14;

/// Length of [`lead_out_trampoline`].
pub const LEAD_OUT_LEN: usize = 16;
/// Offset just past the `int $0x80` of [`lead_out_trampoline`].
pub const LEAD_OUT_SYSCALL_END: u64 = 9;

/// Code at `at` a function returns into instead of `ret`: keeps the return value (`eax`) in
/// `ecx` (caller-saved, not a return register: `edx` may hold the high half of a 64-bit
/// value, and is left alone), makes `getpid`, puts the value back and jumps to `ret`.
/// `mov %eax,%ecx; mov $20,%eax; int $0x80; mov %ecx,%eax; jmp ret`.
pub fn lead_out_trampoline(at: u64, ret: u64) -> Option<[u8; LEAD_OUT_LEN]> {
    let mut code = [0u8; LEAD_OUT_LEN];
    code[..11].copy_from_slice(&[
        0x89, 0xc1, 0xb8, 0x14, 0x00, 0x00, 0x00, 0xcd, 0x80, 0x89, 0xc8,
    ]);
    code[11..].copy_from_slice(&encode_jmp_rel32(at + 11, ret)?);
    Some(code)
}

/// Encode `jmp rel32` at `from` to `to`: in 32-bit code the instruction pointer wraps
/// around, so every address of the 4 GiB space is in reach. `None` when either is outside it.
pub fn encode_jmp_rel32(from: u64, to: u64) -> Option<[u8; super::JMP_REL32_LEN]> {
    let from = u32::try_from(from).ok()?;
    let to = u32::try_from(to).ok()?;
    let d = to.wrapping_sub(from.wrapping_add(5)).to_le_bytes();
    Some([0xe9, d[0], d[1], d[2], d[3]])
}

/// DWARF register numbers of the i386 psABI: `eax ecx edx ebx esp ebp esi edi eip`.
pub const DWARF_SP: u16 = 4;
/// The frame pointer (`ebp`).
pub const DWARF_FP: u16 = 5;
/// The return address column (`eip`).
pub const DWARF_RA: u16 = 8;

/// The registers by DWARF number (`eax` .. `eip`, the rest zero).
pub(super) fn dwarf(r: &Raw) -> [u64; super::x86_64::DWARF_TRACKED] {
    let mut d = [0; super::x86_64::DWARF_TRACKED];
    let regs = [
        r.rax, r.rcx, r.rdx, r.rbx, r.rsp, r.rbp, r.rsi, r.rdi, r.rip,
    ];
    for (slot, value) in d.iter_mut().zip(regs) {
        *slot = value & 0xffff_ffff;
    }
    d
}

/// The kernel's `struct sigcontext_32`, by 32-bit word: `gs fs es ds edi esi ebp esp ebx edx
/// ecx eax trapno err eip cs eflags esp_at_signal ss fpstate oldmask cr2`. DWARF number of
/// the general registers, by word index.
const SIGCONTEXT_DWARF: [(u64, u16); 9] = [
    (4, 7),
    (5, 6),
    (6, 5),
    (7, DWARF_SP),
    (8, 3),
    (9, 2),
    (10, 1),
    (11, 0),
    (14, DWARF_RA),
];

/// The i386 facts of the unwinder. At the restorer the handler has returned: the stack
/// pointer is the frame's address plus 4.
pub(super) const UNWIND: UnwindFacts = UnwindFacts {
    sp: DWARF_SP,
    ra: DWARF_RA,
    tracked: DWARF_RA as usize + 1,
    address_size: 4,
    clone_syscalls: &[SYS_CLONE, SYS_CLONE3],
    signal_frames: &[
        SignalFrameFacts {
            restorer: &RESTORE_RT,
            regs_at: frame::MCONTEXT as u64 - 4,
            slot_size: 4,
            slots: &SIGCONTEXT_DWARF,
        },
        // `struct sigframe_ia32`: return address, signal number, sigcontext.
        SignalFrameFacts {
            restorer: &RESTORE,
            regs_at: 4,
            slot_size: 4,
            slots: &SIGCONTEXT_DWARF,
        },
    ],
    vdso_frame_pointer: Some(DWARF_FP),
};

/// The kernel's `struct rt_sigframe_ia32`: return address (`pretcode`), `sig`, `pinfo`, `puc`,
/// a 128-byte compat siginfo, a `ucontext_ia32` (flags, link, 12-byte `uc_stack`,
/// `sigcontext_32`, `uc_sigmask`) and 8 bytes of historical `retcode`. The FPU state follows:
/// a 112-byte `fregs_state` (the x87 registers in the `fsave` format, which the ia32
/// `rt_sigreturn` takes them from) right below the XSAVE image, which is 64-byte aligned.
mod frame {
    pub const SIZE: usize = 268;
    /// The words a handler's arguments are in (`sig`, `pinfo`, `puc`, then the siginfo):
    /// `rt_sigreturn` does not read them.
    pub const ARGS: usize = 4;
    pub const ARGS_END: usize = UC;
    pub const UC: usize = 144;
    pub const UC_STACK: usize = UC + 8;
    pub const MCONTEXT: usize = UC + 20;
    pub const SIGMASK: usize = MCONTEXT + 88;
    /// `UC_FP_XSTATE`, as the kernel sets it on a CPU with XSAVE.
    pub const FLAGS: u32 = 1;
    /// Bytes of `struct fregs_state` before the XSAVE image.
    pub const FSAVE_SIZE: u64 = 112;
    pub const XSTATE_ALIGN: u64 = 64;
}

/// Build the ia32 `rt_sigframe` for `state` (see `arch::build_sigframe`), `args` in the
/// words above the return address where a cdecl function finds them. `NoRoom` when the frame
/// does not fit below 4 GiB, or more arguments than fit in the frame's words, or wider ones
/// than 32 bits, are given.
pub(super) fn build_sigframe(
    state: &FrameState,
    args: &[u64],
    restorer: u64,
    below: u64,
) -> Result<SigFrame, FrameError> {
    use frame::*;
    if args.len() * 4 > ARGS_END - ARGS || args.iter().any(|&a| a > u64::from(u32::MAX)) {
        return Err(FrameError::NoRoom);
    }
    let regs = state.regs;
    let image = xsave::sigframe_image(state.xstate, state.layout).ok_or(FrameError::Xstate)?;
    let room = |v: Option<u64>| v.ok_or(FrameError::NoRoom);
    let below = below.min(regs.sp()).min(USER_TOP);
    let fx_addr = room(below.checked_sub(image.len() as u64))? & !(XSTATE_ALIGN - 1);
    let fp_addr = room(fx_addr.checked_sub(FSAVE_SIZE))?;
    let addr = room(((room(fp_addr.checked_sub(SIZE as u64))? + 4) & !15).checked_sub(4))?;
    let mut bytes = vec![0u8; (fx_addr - addr) as usize + image.len()];
    let mut put = |o: usize, v: &[u8]| bytes[o..o + v.len()].copy_from_slice(v);
    let word = |v: u64| (v as u32).to_le_bytes();
    put(0, &word(restorer));
    for (i, &arg) in args.iter().enumerate() {
        put(ARGS + 4 * i, &word(arg));
    }
    put(UC, &FLAGS.to_le_bytes());
    put(UC_STACK, &state.altstack.to_bytes(Arch::I386));
    let r = regs.without_restart_block().resumed().0;
    let sigcontext = [
        r.gs, r.fs, r.es, r.ds, r.rdi, r.rsi, r.rbp, r.rsp, r.rbx, r.rdx, r.rcx, r.rax, 0, 0,
        r.rip, r.cs, r.eflags, r.rsp, r.ss, fp_addr, state.mask, 0,
    ];
    for (i, &v) in sigcontext.iter().enumerate() {
        put(MCONTEXT + 4 * i, &word(v));
    }
    put(SIGMASK, &state.mask.to_le_bytes());
    put((fp_addr - addr) as usize, &fsave_header(&image, r.cs, r.ds));
    put((fx_addr - addr) as usize, &image);
    Ok(SigFrame { addr, bytes })
}

/// The `fregs_state` of an ia32 frame from the legacy area of its XSAVE `image`, as the
/// kernel's `convert_from_fxsr` makes it (the ia32 `rt_sigreturn` folds it back with
/// `convert_to_fxsr`): control and status words, the full tag word (only "empty" or not
/// matters on the way back), instruction and operand pointers, the eight 80-bit registers,
/// then the status word again and the `X86_FXSR_MAGIC` (0) that says an FXSAVE image follows.
/// The last opcode, which the kernel keeps in the high half of the code selector, is kept.
fn fsave_header(image: &[u8], cs: u64, ds: u64) -> [u8; frame::FSAVE_SIZE as usize] {
    let u16_at = |o: usize| u16::from_le_bytes([image[o], image[o + 1]]);
    let u32_at = |o: usize| u32::from_le_bytes(image[o..o + 4].try_into().expect("4 bytes"));
    let (fcw, fsw, ftw, fop) = (u16_at(0), u16_at(2), image[4], u16_at(6));
    let tags = (0..8).fold(0u32, |tags, i| {
        let empty = ftw & 1 << i == 0;
        tags | if empty { 3 << (2 * i) } else { 0 }
    });
    let mut env = [0u8; frame::FSAVE_SIZE as usize];
    let words = [
        0xffff_0000 | u32::from(fcw),
        0xffff_0000 | u32::from(fsw),
        0xffff_0000 | tags,
        u32_at(8),
        (cs as u32 & 0xffff) | u32::from(fop) << 16,
        u32_at(16),
        0xffff_0000 | (ds as u32 & 0xffff),
    ];
    for (i, w) in words.iter().enumerate() {
        env[4 * i..4 * i + 4].copy_from_slice(&w.to_le_bytes());
    }
    for i in 0..8 {
        env[28 + 10 * i..38 + 10 * i].copy_from_slice(&image[32 + 16 * i..42 + 16 * i]);
    }
    env[108..110].copy_from_slice(&fsw.to_le_bytes());
    env
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::{AltStack, Registers, XsaveLayout};

    #[test]
    fn jumps_wrap_around_the_address_space() {
        assert_eq!(encode_jmp_rel32(0x1000, 0x1005), Some([0xe9, 0, 0, 0, 0]));
        assert_eq!(
            encode_jmp_rel32(0x1000, 0x1000),
            Some([0xe9, 0xfb, 0xff, 0xff, 0xff])
        );
        // From low to high memory, 3.5 GiB away: backwards through zero.
        let j = encode_jmp_rel32(0x0804_8000, 0xf7f0_0000).unwrap();
        let disp = i32::from_le_bytes(j[1..].try_into().unwrap());
        assert_eq!(
            (0x0804_8005u32).wrapping_add(disp as u32),
            0xf7f0_0000,
            "{disp:#x}"
        );
        assert_eq!(encode_jmp_rel32(0x1000, 1 << 32), None);
        assert_eq!(encode_jmp_rel32(0x1_0000_0000, 0x1000), None);
        let code = lead_out_trampoline(0x1000, 0x2000).unwrap();
        assert_eq!(code[11], 0xe9);
        assert_eq!(
            i32::from_le_bytes(code[12..].try_into().unwrap()),
            0x2000 - 0x1010
        );
    }

    #[test]
    fn results_and_numbers_in_32_bits() {
        let mut r = Registers::zero_of(Arch::I386);
        r.0.rax = 0xf7f0_0000;
        assert_eq!(r.syscall_result(), 0xf7f0_0000, "an address, not an error");
        r.0.rax = (-22i64) as u64;
        assert_eq!(r.syscall_result(), -22);
        r.0.rax = u64::from((-22i32) as u32);
        assert_eq!(r.syscall_result(), -22);
        r.prepare_syscall(0x5000, SYS_MMAP2, [0, 4096, 3, 0x22, u64::MAX, 0]);
        let r = r.0;
        assert_eq!(
            (r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rbp),
            (0, 4096, 3, 0x22, 0xffff_ffff, 0)
        );
        assert_eq!((r.rax, r.rip, r.cs), (192, 0x5000, 0x23));
    }

    #[test]
    fn frame_layout() {
        let mut regs = Registers::zero_of(Arch::I386);
        let r = &mut regs.0;
        (r.orig_rax, r.rax, r.rip, r.rsp) = (3, -512i64 as u64, 0x0804_9002, 0xffd0_1238);
        (r.rbx, r.cs, r.ss, r.gs, r.ds) = (0xb, 0x23, 0x2b, 0x63, 0x2b);
        let layout = XsaveLayout::from_parts(&[(2, 576, 256)]);
        let mut xstate = vec![0u8; 832];
        xstate[0..2].copy_from_slice(&0x37fu16.to_le_bytes()); // fcw
        xstate[4] = 0b1000_0001; // st registers 0 and 7 in use
        xstate[6..8].copy_from_slice(&0x1d9u16.to_le_bytes()); // fop
        xstate[32..42].copy_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
        xstate[464] = 0x7; // XCR0
        xstate[512] = 0x7;
        let alt = AltStack {
            sp: 0x5000,
            flags: 2,
            size: 0x1000,
        };
        let state = FrameState {
            regs: &regs,
            mask: 0x1_0000_4000,
            altstack: alt,
            xstate: &xstate,
            layout: &layout,
        };
        let f = build_sigframe(&state, &[7, 0xffff_ffff], 0xf7f0_1234, u64::MAX).unwrap();
        let u32_at = |o: usize| u32::from_le_bytes(f.bytes[o..o + 4].try_into().unwrap());
        assert_eq!((f.addr + 4) % 16, 0, "esp + 4 aligned at entry");
        assert!(f.addr + f.bytes.len() as u64 <= regs.sp());
        assert_eq!(u32_at(0), 0xf7f0_1234, "pretcode");
        assert_eq!((u32_at(4), u32_at(8)), (7, 0xffff_ffff), "arguments");
        assert_eq!(u32_at(144), 1, "uc_flags");
        assert_eq!((u32_at(152), u32_at(156), u32_at(160)), (0x5000, 2, 0x1000));
        let sc = 164;
        assert_eq!(u32_at(sc), 0x63, "gs");
        assert_eq!(u32_at(sc + 4 * 8), 0xb, "ebx");
        assert_eq!(u32_at(sc + 4 * 11), 3, "eax = the read to make again");
        assert_eq!(u32_at(sc + 4 * 14), 0x0804_9000, "eip on int $0x80");
        assert_eq!(u32_at(sc + 4 * 7), 0xffd0_1238, "esp");
        assert_eq!(u32_at(sc + 4 * 15), 0x23, "cs");
        assert_eq!((u32_at(252), u32_at(256)), (0x4000, 1), "uc_sigmask");
        let fp = u32_at(sc + 4 * 19) as u64;
        assert_eq!((fp + 112) % 64, 0, "XSAVE image aligned");
        let fp = (fp - f.addr) as usize;
        assert!(fp >= 268);
        assert_eq!(u32_at(fp), 0xffff_037f, "cwd");
        assert_eq!(
            u32_at(fp + 8),
            0xffff_3ffc,
            "twd: 0 and 7 valid, the rest empty"
        );
        assert_eq!(u32_at(fp + 16), 0x01d9_0023, "fop above cs");
        assert_eq!(f.bytes[fp + 28..fp + 38], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
        assert_eq!(u32_at(fp + 108), 0, "status and FXSR magic");
        assert_eq!(u32_at(fp + 112 + 464), xsave::MAGIC1);
        // Too many arguments, or ones wider than 32 bits.
        assert!(build_sigframe(&state, &[1 << 32], 0, u64::MAX).is_err());
        assert!(build_sigframe(&state, &[0; 36], 0, u64::MAX).is_err());
        assert_eq!(
            build_sigframe(&state, &[], 0, 0x400).err(),
            Some(FrameError::NoRoom)
        );
    }
}
