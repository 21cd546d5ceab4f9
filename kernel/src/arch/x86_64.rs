//! x86_64: registers, the system call numbers lpkg injects, and instruction encodings.

pub(crate) mod xsave;

pub use xsave::XsaveLayout;

/// The register set and alternate stack of every architecture, under the names code written
/// for x86_64 alone knew them by.
pub use super::{AltStack, Registers};
use super::{FrameError, FrameState, Raw, SigFrame, SignalFrameFacts, Sys, UnwindFacts};

/// The `syscall` instruction.
pub const SYSCALL_INSN: [u8; 2] = [0x0f, 0x05];
/// The `int3` breakpoint instruction.
pub const INT3: u8 = 0xcc;
pub use super::JMP_REL32_LEN;

/// `mmap(2)`.
pub const SYS_MMAP: u64 = 9;
/// `mprotect(2)`.
pub const SYS_MPROTECT: u64 = 10;
/// `munmap(2)`.
pub const SYS_MUNMAP: u64 = 11;
/// `close(2)`.
pub const SYS_CLOSE: u64 = 3;
/// `ftruncate(2)`.
pub const SYS_FTRUNCATE: u64 = 77;
/// `prctl(2)`.
pub const SYS_PRCTL: u64 = 157;
/// `memfd_create(2)`.
pub const SYS_MEMFD_CREATE: u64 = 319;
/// `rt_sigreturn(2)`.
pub const SYS_RT_SIGRETURN: u64 = 15;
/// `sigaltstack(2)`.
pub const SYS_SIGALTSTACK: u64 = 131;
/// `AUDIT_ARCH_X86_64`: the architecture a seccomp filter sees in `seccomp_data.arch`.
pub const AUDIT_ARCH: u32 = 0xc000_003e;

/// Every system call lpkg makes in a target (injected, or run by its trampolines), with the
/// arguments it typically passes, for checking them against the target's seccomp filters
/// (`seccomp.rs`): mappings near the target's code, a memfd (name on a scratch page), the
/// protections a module gets, the signal frames of injected calls and remote calls.
pub const INJECTED_CALLS: &[(&str, u64, [u64; 6])] = &[
    ("mmap", SYS_MMAP, [0, 0x1000, 0x3, 0x22, u64::MAX, 0]),
    (
        "mmap",
        SYS_MMAP,
        [0x7f00_0000_0000, 0x10000, 0x3, 0x10_0002, 3, 0],
    ),
    (
        "mmap",
        SYS_MMAP,
        [0x7f00_0000_0000, 0x10000, 0x3, 0x10_0001, 3, 0],
    ),
    (
        "mprotect",
        SYS_MPROTECT,
        [0x7f00_0000_0000, 0x1000, 0x5, 0, 0, 0],
    ),
    (
        "mprotect",
        SYS_MPROTECT,
        [0x7f00_0000_0000, 0x1000, 0x1, 0, 0, 0],
    ),
    (
        "mprotect",
        SYS_MPROTECT,
        [0x7f00_0000_0000, 0x1000, 0x3, 0, 0, 0],
    ),
    (
        "munmap",
        SYS_MUNMAP,
        [0x7f00_0000_0000, 0x10000, 0, 0, 0, 0],
    ),
    (
        "memfd_create",
        SYS_MEMFD_CREATE,
        [0x7f00_0000_0000, 0x9, 0, 0, 0, 0],
    ),
    (
        "memfd_create",
        SYS_MEMFD_CREATE,
        [0x7f00_0000_0000, 0x1, 0, 0, 0, 0],
    ),
    ("ftruncate", SYS_FTRUNCATE, [3, 0x10000, 0, 0, 0, 0]),
    ("close", SYS_CLOSE, [3, 0, 0, 0, 0, 0]),
    (
        "sigaltstack",
        SYS_SIGALTSTACK,
        [0, 0x7ffc_0000_0000, 0, 0, 0, 0],
    ),
    ("rt_sigreturn", SYS_RT_SIGRETURN, [0; 6]),
    ("getpid", SYS_GETPID, [0; 6]),
];

/// `restart_syscall(2)`: continues a call interrupted with `-ERESTART_RESTARTBLOCK`.
pub const SYS_RESTART_SYSCALL: u64 = 219;

/// The number of system call `sys`.
pub(super) fn nr(sys: Sys) -> u64 {
    match sys {
        Sys::Mmap => SYS_MMAP,
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

/// Highest user-space address with 4-level page tables.
pub const USER_TOP: u64 = 0x7fff_ffff_f000;

/// How far a mapping may be from the address it must be near: a little under 2 GiB, so a
/// `jmp rel32` from `near` reaches every byte of it.
pub const JUMP_REACH: u64 = 0x7fff_0000;

/// The 64-bit user code and data segment selectors (`__USER_CS`, `__USER_DS`).
const USER_CS: u64 = 0x33;
const USER_DS: u64 = 0x2b;

/// Bytes of the System V ABI red zone below the stack pointer that a leaf function may use.
pub const RED_ZONE: u64 = 128;

/// The direction flag of `rflags` (must be clear at a function call), and the trap flag.
const RFLAGS_DF: u64 = 1 << 10;
const RFLAGS_TF: u64 = 1 << 8;

/// The system call a thread stopped in one is inside (`orig_rax` >= 0).
pub(super) fn syscall_nr(r: &Raw) -> Option<u64> {
    (r.orig_rax as i64 >= 0).then_some(r.orig_rax)
}

/// What a system call returned, or the kernel's restart code while it is inside one.
pub(super) fn syscall_result(r: &Raw) -> i64 {
    r.rax as i64
}

/// Registers for executing `syscall` at `insn` with number `nr` and `args`, in 64-bit mode.
pub(super) fn prepare_syscall(r: &mut Raw, insn: u64, nr: u64, args: [u64; 6]) {
    r.rip = insn;
    r.rax = nr;
    r.orig_rax = u64::MAX;
    r.eflags &= !RFLAGS_TF;
    set_code_segment(r);
    set_syscall_args(r, args);
}

/// The six arguments of a system call, in the registers the kernel takes them from.
pub(super) fn set_syscall_args(r: &mut Raw, args: [u64; 6]) {
    [r.rdi, r.rsi, r.rdx, r.r10, r.r8, r.r9] = args;
}

/// 64-bit code: a thread of a 64-bit process that runs 32-bit code of its own (a far jump
/// to a 32-bit segment) runs ours in 64-bit mode all the same; its own `cs` comes back from
/// the saved registers or the signal frame.
fn set_code_segment(r: &mut Raw) {
    r.cs = USER_CS;
    r.ss = USER_DS;
}

/// Registers that make the thread run `rt_sigreturn` with the signal frame at `frame`,
/// through `restorer` ([`RESTORE_RT`]). The stack pointer is `frame + 8`, as after a
/// handler's `ret` popped the frame's return address, which is where `rt_sigreturn` looks for
/// the frame.
pub(super) fn prepare_sigreturn(r: &mut Raw, restorer: u64, frame: u64) {
    r.rip = restorer;
    r.rsp = frame + 8;
    r.rax = SYS_RT_SIGRETURN;
    r.orig_rax = u64::MAX;
    r.eflags &= !RFLAGS_TF;
    set_code_segment(r);
}

/// Registers for entering `func` as if called with `args` and return address already pushed
/// at `sp` (which must be 16-byte aligned plus 8).
pub(super) fn prepare_call(r: &mut Raw, func: u64, sp: u64, args: &[u64]) {
    let slots = [
        &mut r.rdi, &mut r.rsi, &mut r.rdx, &mut r.rcx, &mut r.r8, &mut r.r9,
    ];
    for (slot, value) in slots
        .into_iter()
        .zip(args.iter().copied().chain(std::iter::repeat(0)))
    {
        *slot = value;
    }
    r.rip = func;
    r.rsp = sp;
    r.rax = 0; // no vector registers used by a variadic callee
    r.orig_rax = u64::MAX;
    r.eflags &= !(RFLAGS_DF | RFLAGS_TF);
    set_code_segment(r);
}

/// At the `getpid` entry stop of [`lead_out_trampoline`]: the state right after the function
/// returned to `ret` (its return value back in `rax`), the system call skipped.
pub(super) fn returned_to(r: &mut Raw, ret: u64) {
    r.rip = ret;
    r.rax = r.r10;
    r.orig_rax = u64::MAX;
}

/// For a call returning through [`MARKING_TRAMPOLINE`]: it stores `value` at `address`.
pub(super) fn set_mark(r: &mut Raw, address: u64, value: u64) {
    r.rbx = address;
    r.r12 = value;
}

/// The first argument register of a system call (`rdi`): where the return trampolines keep
/// the called function's return value.
pub(super) fn first_arg(r: &Raw) -> u64 {
    r.rdi
}

/// Maximum number of integer arguments passed in registers.
pub const MAX_CALL_ARGS: usize = 6;

/// Where a called function returns to: keeps its return value in `rdi` (we read it at the
/// entry stop of the system call), then `rt_sigreturn`, which reloads the interrupted context
/// from the signal frame if nobody intervenes.
/// `mov %rax,%rdi; mov $15,%eax; syscall; ud2`.
pub const SIGRETURN_TRAMPOLINE: [u8; 12] = [
    0x48, 0x89, 0xc7, 0xb8, 0x0f, 0x00, 0x00, 0x00, 0x0f, 0x05, 0x0f, 0x0b,
];
/// Offset just past the trampoline's `syscall` instruction.
pub const SIGRETURN_TRAMPOLINE_SYSCALL_END: u64 = 10;

/// Where a called function returns to when its return is to be marked in memory by the thread
/// itself (`Registers::set_mark`): stores `r12` at `(%rbx)` (both callee-saved, so as the
/// caller set them), then does what [`SIGRETURN_TRAMPOLINE`] does.
/// `mov %r12,(%rbx); mov %rax,%rdi; mov $15,%eax; syscall; ud2`.
pub const MARKING_TRAMPOLINE: [u8; 15] = [
    0x4c, 0x89, 0x23, 0x48, 0x89, 0xc7, 0xb8, 0x0f, 0x00, 0x00, 0x00, 0x0f, 0x05, 0x0f, 0x0b,
];
/// Offset just past the marking trampoline's `syscall` instruction.
pub const MARKING_TRAMPOLINE_SYSCALL_END: u64 = 13;

/// `getpid(2)`: the system call a thread led out of a function stops at.
pub const SYS_GETPID: u64 = 39;

/// Code a function returns into when a thread is led out of it ([`lead_out_trampoline`]).
pub const LEAD_OUT_LEN: usize = 26;
/// Offset just past the `syscall` instruction of [`lead_out_trampoline`].
pub const LEAD_OUT_SYSCALL_END: u64 = 10;

/// Code a function returns into instead of `ret`, its caller: keeps the return value (`rax`)
/// in `r10`, makes `getpid` (where a tracer stops the thread), puts the value back and jumps
/// to `ret`. At a return `r10` and `r11` hold nothing (caller-saved, not return registers), so
/// the caller sees what a plain return would have given it.
/// `mov %rax,%r10; mov $39,%eax; syscall; mov %r10,%rax; movabs $ret,%r11; jmp *%r11`.
pub fn lead_out_trampoline(ret: u64) -> [u8; LEAD_OUT_LEN] {
    let mut code = [0u8; LEAD_OUT_LEN];
    code[..13].copy_from_slice(&[
        0x49, 0x89, 0xc2, 0xb8, 0x27, 0x00, 0x00, 0x00, 0x0f, 0x05, 0x4c, 0x89, 0xd0,
    ]);
    code[13..15].copy_from_slice(&[0x49, 0xbb]);
    code[15..23].copy_from_slice(&ret.to_le_bytes());
    code[23..].copy_from_slice(&[0x41, 0xff, 0xe3]);
    code
}

/// The kernel's x86_64 `struct rt_sigframe`: the return address (`pretcode`), a `ucontext`
/// (flags, link, `uc_stack`, `uc_mcontext` = `struct sigcontext`, `uc_sigmask`) and a siginfo.
/// The XSAVE area follows it, 64-byte aligned, pointed to by `sigcontext.fpstate`.
mod sigframe {
    pub const SIZE: usize = 440;
    pub const UC_FLAGS: usize = 8;
    pub const UC_STACK: usize = 24;
    pub const MCONTEXT: usize = 48;
    /// `cs gs fs ss` (16 bits each) after the 18 64-bit registers.
    pub const CS: usize = MCONTEXT + 18 * 8;
    pub const SS: usize = CS + 6;
    pub const FPSTATE: usize = MCONTEXT + 184;
    pub const SIGMASK: usize = 304;
    /// `UC_FP_XSTATE | UC_SIGCONTEXT_SS | UC_STRICT_RESTORE_SS`, as the kernel sets them.
    pub const FLAGS: u64 = 0x1 | 0x2 | 0x4;
    pub const XSTATE_ALIGN: u64 = 64;
}

/// Build the frame the kernel would build to run a handler on a thread whose state is `regs`,
/// `mask`, `altstack` and `xstate` (the thread's `NT_X86_XSTATE`, in the CPU's XSAVE `layout`),
/// entirely below `below` (at most the red zone's bottom under `regs`' stack pointer),
/// returning to `restorer`. Loaded by `rt_sigreturn`, it gives back that state, with a system
/// call the thread was inside set up to be made again from the start (`rt_sigreturn` resets
/// the restart block, see `Registers::without_restart_block`). `None` when `xstate` is not an
/// XSAVE image of `layout`.
pub(super) fn build_sigframe(
    state: &FrameState,
    restorer: u64,
    below: u64,
) -> Result<SigFrame, FrameError> {
    use sigframe::*;
    let regs = state.regs;
    let image = xsave::sigframe_image(state.xstate, state.layout).ok_or(FrameError::Xstate)?;
    let room = |v: Option<u64>| v.ok_or(FrameError::NoRoom);
    let below = below.min(room(regs.sp().checked_sub(RED_ZONE))?);
    let fp_addr = room(below.checked_sub(image.len() as u64))? & !(XSTATE_ALIGN - 1);
    let addr = room((room(fp_addr.checked_sub(SIZE as u64))? & !15).checked_sub(8))?;
    let mut bytes = vec![0u8; (fp_addr - addr) as usize + image.len()];
    let mut put = |o: usize, v: &[u8]| bytes[o..o + v.len()].copy_from_slice(v);
    put(0, &restorer.to_le_bytes());
    put(UC_FLAGS, &FLAGS.to_le_bytes());
    put(UC_STACK, &state.altstack.to_bytes(super::Arch::X86_64));
    let r = regs.without_restart_block().resumed().0;
    let gprs = [
        r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15, r.rdi, r.rsi, r.rbp, r.rbx, r.rdx,
        r.rax, r.rcx, r.rsp, r.rip, r.eflags,
    ];
    for (i, v) in gprs.iter().enumerate() {
        put(MCONTEXT + 8 * i, &v.to_le_bytes());
    }
    put(CS, &(r.cs as u16).to_le_bytes());
    put(SS, &(r.ss as u16).to_le_bytes());
    put(FPSTATE, &fp_addr.to_le_bytes());
    put(SIGMASK, &state.mask.to_le_bytes());
    put((fp_addr - addr) as usize, &image);
    Ok(SigFrame { addr, bytes })
}

/// Encode `jmp rel32` placed at `from` jumping to `to`, or `None` when `to` is out of the
/// ±2 GiB reach of a 32-bit displacement.
pub fn encode_jmp_rel32(from: u64, to: u64) -> Option<[u8; JMP_REL32_LEN]> {
    let next = from.checked_add(JMP_REL32_LEN as u64)?;
    let disp = (to as i128) - (next as i128);
    let disp = i32::try_from(disp).ok()?;
    let d = disp.to_le_bytes();
    Some([0xe9, d[0], d[1], d[2], d[3]])
}

#[cfg(test)]
mod sigframe_tests {
    use super::*;
    use crate::arch::{AltStack, Arch, Registers};

    fn frame(
        regs: &Registers,
        alt: AltStack,
        xstate: &[u8],
        layout: &XsaveLayout,
        below: u64,
    ) -> Result<SigFrame, FrameError> {
        let state = FrameState {
            regs,
            mask: 0x4000,
            altstack: alt,
            xstate,
            layout,
        };
        build_sigframe(&state, 0xabc000, below)
    }

    fn regs_in_syscall(nr: u64, rax: i64) -> Registers {
        // SAFETY: user_regs_struct is plain integers; all zeroes is a valid value.
        let mut r: libc::user_regs_struct = unsafe { std::mem::zeroed() };
        r.orig_rax = nr;
        r.rax = rax as u64;
        r.rip = 0x1002;
        r.rsp = 0x7fff_0000_1238;
        r.cs = 0x33;
        r.ss = 0x2b;
        r.rbx = 0xb;
        Registers(r, Arch::X86_64)
    }

    #[test]
    fn restart_rewriting() {
        let sleeping = regs_in_syscall(35, -516);
        let r = sleeping.resumed();
        assert_eq!((r.0.rax, r.0.rip, r.0.orig_rax), (219, 0x1000, u64::MAX));
        let r = sleeping.without_restart_block();
        assert_eq!((r.0.rax as i64, r.0.rip, r.0.orig_rax), (-513, 0x1002, 35));
        let r = r.resumed();
        assert_eq!((r.0.rax, r.0.rip, r.0.orig_rax), (35, 0x1000, u64::MAX));
        // A call that completed (or no call): only orig_rax changes.
        let done = regs_in_syscall(0, 5);
        let r = done.resumed();
        assert_eq!((r.0.rax, r.0.rip, r.0.orig_rax), (5, 0x1002, u64::MAX));
        assert!(done.without_restart_block() == done);
    }

    #[test]
    fn frame_layout() {
        let regs = regs_in_syscall(0, -512); // read(2) interrupted
                                             // An AVX-512 CPU without MPX room (CPUID 0xD), and an image as ptrace gives it.
        let layout =
            XsaveLayout::from_parts(&[(2, 576, 256), (5, 832, 64), (6, 896, 512), (7, 1408, 1024)]);
        let mut xstate = vec![0u8; 2432];
        xstate[464] = 0xe7; // XCR0
        xstate[512] = 0xe7; // every feature in use
        let alt = AltStack {
            sp: 0x5000,
            flags: 0,
            size: 0x1000,
        };
        let f = frame(&regs, alt, &xstate, &layout, u64::MAX).unwrap();
        let u64_at = |o: usize| u64::from_le_bytes(f.bytes[o..o + 8].try_into().unwrap());
        let u32_at = |o: usize| u32::from_le_bytes(f.bytes[o..o + 4].try_into().unwrap());
        assert_eq!(f.addr % 16, 8, "rsp % 16 == 8 at entry");
        let top = f.addr + f.bytes.len() as u64;
        assert!(top <= regs.sp() - RED_ZONE, "below the red zone");
        assert_eq!(u64_at(0), 0xabc000, "pretcode");
        assert_eq!(u64_at(8), 7, "uc_flags");
        assert_eq!(u64_at(24), 0x5000, "uc_stack.ss_sp");
        assert_eq!(u64_at(40), 0x1000, "uc_stack.ss_size");
        assert_eq!(u64_at(48 + 11 * 8), 0xb, "rbx");
        assert_eq!(u64_at(48 + 13 * 8), 0, "rax = the read to make again");
        assert_eq!(
            u64_at(48 + 16 * 8),
            0x1000,
            "rip on the syscall instruction"
        );
        assert_eq!(u64_at(48 + 15 * 8), regs.sp(), "rsp");
        assert_eq!(u32_at(192) & 0xffff, 0x33, "cs");
        assert_eq!(u32_at(196) >> 16, 0x2b, "ss");
        assert_eq!(u64_at(304), 0x4000, "uc_sigmask");
        let fp = u64_at(232);
        assert_eq!(fp % 64, 0, "XSAVE image aligned");
        let fp = (fp - f.addr) as usize;
        assert!(fp >= 440, "image above the frame");
        assert_eq!(u32_at(fp + 464), xsave::MAGIC1);
        assert_eq!(u32_at(fp + 468), 2436, "extended_size");
        assert_eq!(u64_at(fp + 472), 0xe7, "xfeatures");
        assert_eq!(u32_at(fp + 480), 2432, "xstate_size");
        assert_eq!(u32_at(fp + 2432), xsave::MAGIC2);
        assert_eq!(
            frame(&regs, alt, &xstate[..500], &layout, u64::MAX).err(),
            Some(FrameError::Xstate)
        );
        let mut low = regs;
        low.0.rsp = 0x800;
        assert_eq!(
            frame(&low, alt, &xstate, &layout, u64::MAX).err(),
            Some(FrameError::NoRoom)
        );
        // Lower when asked.
        let below = regs.sp() - RED_ZONE - 64;
        let g = frame(&regs, alt, &xstate, &layout, below).unwrap();
        assert!(g.addr + g.bytes.len() as u64 <= below && g.addr % 16 == 8);
        assert!(g.addr < f.addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jmp_forward_and_backward() {
        assert_eq!(encode_jmp_rel32(0x1000, 0x1005), Some([0xe9, 0, 0, 0, 0]));
        assert_eq!(
            encode_jmp_rel32(0x1000, 0x1010),
            Some([0xe9, 0x0b, 0, 0, 0])
        );
        assert_eq!(
            encode_jmp_rel32(0x1000, 0x1000),
            Some([0xe9, 0xfb, 0xff, 0xff, 0xff])
        );
    }

    #[test]
    fn jmp_reach_limits() {
        let from = 0x7f00_0000_0000u64;
        let next = from + 5;
        assert!(encode_jmp_rel32(from, next + i32::MAX as u64).is_some());
        assert!(encode_jmp_rel32(from, next + i32::MAX as u64 + 1).is_none());
        assert!(encode_jmp_rel32(from, next - (1u64 << 31)).is_some());
        assert!(encode_jmp_rel32(from, next - (1u64 << 31) - 1).is_none());
        assert!(encode_jmp_rel32(0x1000, 0x7f00_0000_0000).is_none());
        assert!(encode_jmp_rel32(u64::MAX - 2, 0).is_none());
    }
}

// ---- Stack unwinding (owned by the safety work: applier/src/unwind.rs) ----------------------

/// DWARF register number of the stack pointer (`rsp`) in the System V x86_64 psABI.
pub const DWARF_SP: u16 = 7;
/// DWARF register number of the return address column (`rip`).
pub const DWARF_RA: u16 = 16;
/// How many DWARF registers the unwinder tracks: 0 (`rax`) to 16 (the return address).
pub const DWARF_TRACKED: usize = 17;

/// System call numbers of `clone` and `clone3`: glibc ends their CFI before the `syscall`.
pub const CLONE_SYSCALLS: [u64; 2] = [56, 435];
/// `mov $15,%rax; syscall` (`rt_sigreturn`): glibc's `__restore_rt`, where a handler returns to.
pub const RESTORE_RT: [u8; 9] = [0x48, 0xc7, 0xc0, 0x0f, 0x00, 0x00, 0x00, 0x0f, 0x05];
/// Offset of `uc_mcontext.gregs` in the `ucontext_t` that `__restore_rt` finds at its sp.
pub const UC_GREGS: u64 = 40;
/// DWARF register number of each `gregs` slot (`REG_R8` .. `REG_RIP`) of a signal frame.
pub const GREGS_DWARF: [(u64, u16); 17] = [
    (0, 8),
    (1, 9),
    (2, 10),
    (3, 11),
    (4, 12),
    (5, 13),
    (6, 14),
    (7, 15),
    (8, 5),
    (9, 4),
    (10, 6),
    (11, 3),
    (12, 1),
    (13, 0),
    (14, 2),
    (15, DWARF_SP),
    (16, DWARF_RA),
];

/// The x86_64 facts of the unwinder.
pub(super) const UNWIND: UnwindFacts = UnwindFacts {
    sp: DWARF_SP,
    ra: DWARF_RA,
    tracked: DWARF_TRACKED,
    address_size: 8,
    clone_syscalls: &CLONE_SYSCALLS,
    signal_frames: &[SignalFrameFacts {
        restorer: &RESTORE_RT,
        regs_at: UC_GREGS,
        slot_size: 8,
        slots: &GREGS_DWARF,
    }],
    vdso_frame_pointer: None,
};

/// The registers by DWARF number (0 to [`DWARF_TRACKED`] - 1; the last is `rip`).
pub(super) fn dwarf(r: &Raw) -> [u64; DWARF_TRACKED] {
    [
        r.rax, r.rdx, r.rcx, r.rbx, r.rsi, r.rdi, r.rbp, r.rsp, r.r8, r.r9, r.r10, r.r11, r.r12,
        r.r13, r.r14, r.r15, r.rip,
    ]
}
