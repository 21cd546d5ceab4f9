//! x86_64: registers, the system call numbers lpkg injects, and instruction encodings.

/// The `syscall` instruction.
pub const SYSCALL_INSN: [u8; 2] = [0x0f, 0x05];
/// The `int3` breakpoint instruction.
pub const INT3: u8 = 0xcc;
/// Length of a `jmp rel32` (opcode `e9` and a 32-bit displacement).
pub const JMP_REL32_LEN: usize = 5;

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

/// Kernel-internal "restart me" return values a thread stopped inside a system call may show
/// in `rax` (never seen by user space: the kernel turns them into a restart or `EINTR`).
pub const RESTART_ERRNOS: [i64; 4] = [
    512, // ERESTARTSYS
    513, // ERESTARTNOINTR
    514, // ERESTARTNOHAND
    516, // ERESTART_RESTARTBLOCK
];

/// Bytes of the System V ABI red zone below the stack pointer that a leaf function may use.
pub const RED_ZONE: u64 = 128;

/// The direction flag of `rflags` (must be clear at a function call), and the trap flag.
const RFLAGS_DF: u64 = 1 << 10;
const RFLAGS_TF: u64 = 1 << 8;

/// A thread's general-purpose registers (as `PTRACE_GETREGS` gives them).
#[derive(Clone, Copy)]
pub struct Registers(pub libc::user_regs_struct);

impl Registers {
    /// Program counter (`rip`).
    pub fn pc(&self) -> u64 {
        self.0.rip
    }
    /// Set the program counter.
    pub fn set_pc(&mut self, pc: u64) {
        self.0.rip = pc;
    }
    /// Stack pointer (`rsp`).
    pub fn sp(&self) -> u64 {
        self.0.rsp
    }
    /// Set the stack pointer.
    pub fn set_sp(&mut self, sp: u64) {
        self.0.rsp = sp;
    }
    /// Return value register (`rax`).
    pub fn return_value(&self) -> u64 {
        self.0.rax
    }
    /// The system call the thread is inside, if it was stopped in one (`orig_rax` >= 0).
    pub fn syscall_nr(&self) -> Option<u64> {
        (self.0.orig_rax as i64 >= 0).then_some(self.0.orig_rax)
    }
    /// True when the thread was stopped in a system call the kernel will restart on resume.
    pub fn in_restartable_syscall(&self) -> bool {
        self.syscall_nr().is_some() && RESTART_ERRNOS.contains(&-(self.0.rax as i64))
    }

    /// Registers for executing `syscall` at `insn` with number `nr` and `args`.
    ///
    /// `orig_rax` is set to -1 so the kernel does not apply its syscall-restart logic to this
    /// state when the thread leaves its ptrace stop.
    pub(crate) fn prepare_syscall(&mut self, insn: u64, nr: u64, args: [u64; 6]) {
        let r = &mut self.0;
        r.rip = insn;
        r.rax = nr;
        r.orig_rax = u64::MAX;
        r.rdi = args[0];
        r.rsi = args[1];
        r.rdx = args[2];
        r.r10 = args[3];
        r.r8 = args[4];
        r.r9 = args[5];
        r.eflags &= !RFLAGS_TF;
    }

    /// Registers for entering `func` as if called with `args` and return address already pushed
    /// at `sp` (which must be 16-byte aligned plus 8).
    pub(crate) fn prepare_call(&mut self, func: u64, sp: u64, args: &[u64]) {
        let r = &mut self.0;
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
    }
}

impl Registers {
    /// Every field, in `user_regs_struct` order.
    pub fn to_array(&self) -> [u64; 27] {
        let r = &self.0;
        [
            r.r15, r.r14, r.r13, r.r12, r.rbp, r.rbx, r.r11, r.r10, r.r9, r.r8, r.rax, r.rcx,
            r.rdx, r.rsi, r.rdi, r.orig_rax, r.rip, r.cs, r.eflags, r.rsp, r.ss, r.fs_base,
            r.gs_base, r.ds, r.es, r.fs, r.gs,
        ]
    }
}

impl PartialEq for Registers {
    fn eq(&self, other: &Self) -> bool {
        self.to_array() == other.to_array()
    }
}

impl Eq for Registers {}

impl std::fmt::Debug for Registers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let r = &self.0;
        f.debug_struct("Registers")
            .field("rip", &format_args!("{:#x}", r.rip))
            .field("rsp", &format_args!("{:#x}", r.rsp))
            .field("rax", &format_args!("{:#x}", r.rax))
            .field("orig_rax", &(r.orig_rax as i64))
            .field("rdi", &format_args!("{:#x}", r.rdi))
            .field("rsi", &format_args!("{:#x}", r.rsi))
            .field("rdx", &format_args!("{:#x}", r.rdx))
            .finish_non_exhaustive()
    }
}

/// Maximum number of integer arguments passed in registers.
pub const MAX_CALL_ARGS: usize = 6;

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

impl Registers {
    /// Every register zero: a starting point for registers built by hand (tests, fuzzing).
    pub fn zero() -> Registers {
        Registers(libc::user_regs_struct {
            r15: 0,
            r14: 0,
            r13: 0,
            r12: 0,
            rbp: 0,
            rbx: 0,
            r11: 0,
            r10: 0,
            r9: 0,
            r8: 0,
            rax: 0,
            rcx: 0,
            rdx: 0,
            rsi: 0,
            rdi: 0,
            orig_rax: 0,
            rip: 0,
            cs: 0,
            eflags: 0,
            rsp: 0,
            ss: 0,
            fs_base: 0,
            gs_base: 0,
            ds: 0,
            es: 0,
            fs: 0,
            gs: 0,
        })
    }

    /// The registers by DWARF number (0 to [`DWARF_TRACKED`] - 1; the last is `rip`).
    pub fn dwarf(&self) -> [u64; DWARF_TRACKED] {
        let r = &self.0;
        [
            r.rax, r.rdx, r.rcx, r.rbx, r.rsi, r.rdi, r.rbp, r.rsp, r.r8, r.r9, r.r10, r.r11,
            r.r12, r.r13, r.r14, r.r15, r.rip,
        ]
    }
}
