//! Architecture-specific facts: registers, system call numbers, instruction encodings, signal
//! frames. One module per architecture a target process can have ([`x86_64`], [`i386`]); the
//! rest of the crate asks the [`Arch`] of its target and never names either.
//!
//! A 64-bit lpkg drives a 32-bit process (IA32 emulation) through the x86_64 view of its
//! threads: `PTRACE_GETREGS` from a 64-bit tracer always gives the x86_64 `user_regs_struct`
//! (the i386 registers in the low halves: `eax` in `rax`, `eip` in `rip`), whatever the
//! tracee. `PTRACE_GETREGSET NT_PRSTATUS` gives the tracee's own layout instead (the ia32
//! `user_regs_struct` for a compat task); lpkg uses `PTRACE_GETREGS`, so one layout serves
//! both kinds of target and no register of a thread that runs 64-bit code inside a 32-bit
//! process (or the reverse) is lost.

pub mod i386;
pub mod x86_64;

/// The x86_64 facts under the name older code used for them.
pub use self::x86_64 as current;
pub use self::x86_64::XsaveLayout;

use crate::{Error, Pid, Result};

/// The architecture of a target process: the ABI its program was built for, which the kernel
/// fixed at exec from its ELF header (address space, vDSO, system call and signal frame
/// conventions). It is the program's, not what a thread happens to execute now: a 64-bit
/// process may far-jump to 32-bit code, and is still driven as 64-bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Arch {
    /// 64-bit x86 (`EM_X86_64`, `ELFCLASS64`).
    X86_64,
    /// 32-bit x86 (`EM_386`, `ELFCLASS32`), run by a 64-bit kernel's IA32 emulation.
    I386,
}

/// The system calls lpkg makes in a target, by name: their numbers differ between
/// architectures ([`Arch::nr`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sys {
    /// `mmap(2)` (on i386 `mmap2`, whose offset is in pages: see [`Arch::mmap_offset`]).
    Mmap,
    /// `mprotect(2)`.
    Mprotect,
    /// `munmap(2)`.
    Munmap,
    /// `close(2)`.
    Close,
    /// `ftruncate(2)`.
    Ftruncate,
    /// `prctl(2)`.
    Prctl,
    /// `memfd_create(2)`.
    MemfdCreate,
    /// `rt_sigreturn(2)`.
    RtSigreturn,
    /// `sigaltstack(2)`.
    Sigaltstack,
    /// `getpid(2)`.
    Getpid,
    /// `restart_syscall(2)`.
    RestartSyscall,
}

/// The `-errno` with which the kernel asks for `restart_syscall` rather than the call again.
const ERESTART_RESTARTBLOCK: i64 = 516;
/// The `-errno` with which the kernel makes the call again, whatever the signal disposition.
const ERESTARTNOINTR: i64 = 513;

/// Kernel-internal "restart me" return values a thread stopped inside a system call may show
/// in `rax` (never seen by user space: the kernel turns them into a restart or `EINTR`).
pub const RESTART_ERRNOS: [i64; 4] = [
    512, // ERESTARTSYS
    513, // ERESTARTNOINTR
    514, // ERESTARTNOHAND
    516, // ERESTART_RESTARTBLOCK
];

/// `e_machine` values of the ELF header.
const EM_386: u16 = 3;
const EM_X86_64: u16 = 62;

/// Length of a `jmp rel32` (opcode `e9` and a 32-bit displacement), on both architectures.
pub const JMP_REL32_LEN: usize = 5;

impl Arch {
    /// The architecture of the program an ELF header (its first 20 bytes at least) describes,
    /// `None` for anything but an x86_64 or i386 ELF file (x32, another machine, not ELF).
    pub fn of_elf_header(header: &[u8]) -> Option<Arch> {
        if header.get(..4)? != b"\x7fELF" {
            return None;
        }
        let machine = u16::from_le_bytes([*header.get(18)?, *header.get(19)?]);
        match (header[4], machine) {
            (2, EM_X86_64) => Some(Arch::X86_64),
            (1, EM_386) => Some(Arch::I386),
            _ => None,
        }
    }

    /// The architecture of process `pid`: the ELF header of the program it runs
    /// (`/proc/PID/exe` opens the file really executed, even replaced on disk), which fixed
    /// its ABI at exec. A thread's code segment is no proof of it (see [`Arch`]). A program
    /// this process may not read (execute-only, and no `CAP_DAC_OVERRIDE`) is told by the
    /// vDSO the kernel mapped for that ABI, read from the process's memory (a tracer may).
    pub fn of_process(pid: Pid) -> Result<Arch> {
        use std::io::Read;
        let path = crate::procfs::mm_dir(pid).join("exe");
        let mut header = [0u8; 20];
        let read = std::fs::File::open(&path).and_then(|mut f| f.read_exact(&mut header));
        let header = match read {
            Ok(()) => header,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NoSuchProcess { pid })
            }
            Err(e) => match Arch::vdso_header(pid) {
                Some(header) => header,
                None if e.kind() == std::io::ErrorKind::PermissionDenied => {
                    return Err(Error::PermissionDenied { pid })
                }
                None => return Err(Error::Proc { path, source: e }),
            },
        };
        Arch::of_elf_header(&header).ok_or(Error::UnsupportedArch {
            pid,
            class: header[4],
            machine: u16::from_le_bytes([header[18], header[19]]),
        })
    }

    /// The first bytes of the vDSO of process `pid`, if it has one and they can be read.
    fn vdso_header(pid: Pid) -> Option<[u8; 20]> {
        let maps = crate::maps::read(pid).ok()?;
        let vdso = maps
            .iter()
            .find(|m| m.path.as_deref() == Some(std::path::Path::new("[vdso]")))?;
        crate::memory::read(pid, vdso.start, 20)
            .ok()?
            .try_into()
            .ok()
    }

    /// How people call it: `x86_64` or `i386`.
    pub fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::I386 => "i386",
        }
    }

    /// Bytes of an address (and of a stack slot).
    pub fn pointer_size(self) -> usize {
        match self {
            Arch::X86_64 => 8,
            Arch::I386 => 4,
        }
    }

    /// The largest value of a register (and of a system call or call argument).
    pub fn word_max(self) -> u64 {
        u64::MAX >> (64 - 8 * self.pointer_size())
    }

    /// The number of system call `sys`.
    pub fn nr(self, sys: Sys) -> u64 {
        match self {
            Arch::X86_64 => x86_64::nr(sys),
            Arch::I386 => i386::nr(sys),
        }
    }

    /// The last argument of [`Sys::Mmap`] for file offset `offset`: bytes on x86_64, pages on
    /// i386 (`mmap2`); `None` for an offset `mmap2` cannot express (not page-aligned).
    pub fn mmap_offset(self, offset: u64) -> Option<u64> {
        match self {
            Arch::X86_64 => Some(offset),
            Arch::I386 => offset
                .is_multiple_of(i386::MMAP2_UNIT)
                .then_some(offset / i386::MMAP2_UNIT),
        }
    }

    /// The instruction that enters the kernel: `syscall` on x86_64, `int $0x80` on i386 (the
    /// only entry every x86 CPU has from 32-bit code). Both are two bytes long, which the
    /// kernel's restart logic (`ip -= 2`) relies on.
    pub fn syscall_insn(self) -> &'static [u8; 2] {
        match self {
            Arch::X86_64 => &x86_64::SYSCALL_INSN,
            Arch::I386 => &i386::INT80_INSN,
        }
    }

    /// Code doing `rt_sigreturn` as the C libraries' restorers and the i386 vDSO's
    /// `__kernel_rt_sigreturn` do, ending with [`Arch::syscall_insn`].
    pub fn restore_rt(self) -> &'static [u8] {
        match self {
            Arch::X86_64 => &x86_64::RESTORE_RT,
            Arch::I386 => &i386::RESTORE_RT,
        }
    }

    /// The vDSO symbol of the kernel's own `rt_sigreturn` restorer, where the vDSO has one.
    pub fn vdso_restorer(self) -> Option<&'static str> {
        match self {
            Arch::X86_64 => None,
            Arch::I386 => Some(i386::VDSO_RT_SIGRETURN),
        }
    }

    /// Bytes below the stack pointer a leaf function may use without moving it (the System V
    /// x86_64 red zone; the i386 ABI has none).
    pub fn red_zone(self) -> u64 {
        match self {
            Arch::X86_64 => x86_64::RED_ZONE,
            Arch::I386 => 0,
        }
    }

    /// One past the highest address a mapping of the process can have.
    pub fn user_top(self) -> u64 {
        match self {
            Arch::X86_64 => x86_64::USER_TOP,
            Arch::I386 => i386::USER_TOP,
        }
    }

    /// `AUDIT_ARCH_*`: the architecture a seccomp filter sees in `seccomp_data.arch` for a
    /// system call made the way lpkg makes them in this process.
    pub fn audit_arch(self) -> u32 {
        match self {
            Arch::X86_64 => x86_64::AUDIT_ARCH,
            Arch::I386 => i386::AUDIT_ARCH,
        }
    }

    /// Every system call lpkg makes in a target, with the arguments it typically passes, for
    /// the seccomp check (`seccomp.rs`).
    pub fn injected_calls(self) -> &'static [(&'static str, u64, [u64; 6])] {
        match self {
            Arch::X86_64 => x86_64::INJECTED_CALLS,
            Arch::I386 => i386::INJECTED_CALLS,
        }
    }

    /// Encode `jmp rel32` placed at `from` jumping to `to`, or `None` when `to` is out of its
    /// reach: ±2 GiB on x86_64; anywhere in the 4 GiB address space on i386, where the
    /// instruction pointer wraps around (and `None` for an address outside that space).
    pub fn encode_jmp_rel32(self, from: u64, to: u64) -> Option<[u8; JMP_REL32_LEN]> {
        match self {
            Arch::X86_64 => x86_64::encode_jmp_rel32(from, to),
            Arch::I386 => i386::encode_jmp_rel32(from, to),
        }
    }

    /// How far a `jmp rel32` reaches from where it is, either way (the whole address space
    /// on i386).
    pub fn jump_reach(self) -> u64 {
        match self {
            Arch::X86_64 => x86_64::JUMP_REACH,
            Arch::I386 => 1 << 32,
        }
    }

    /// Code a called function returns into ([`Registers::prepare_call`]): moves the return
    /// value to the first system call argument register ([`Registers::first_arg`]) and makes
    /// `rt_sigreturn`; with the offset just past its system call instruction.
    pub(crate) fn sigreturn_trampoline(self) -> (&'static [u8], u64) {
        match self {
            Arch::X86_64 => (
                &x86_64::SIGRETURN_TRAMPOLINE,
                x86_64::SIGRETURN_TRAMPOLINE_SYSCALL_END,
            ),
            Arch::I386 => (
                &i386::SIGRETURN_TRAMPOLINE,
                i386::SIGRETURN_TRAMPOLINE_SYSCALL_END,
            ),
        }
    }

    /// [`Arch::sigreturn_trampoline`] that first stores the mark set by
    /// [`Registers::set_mark`].
    pub(crate) fn marking_trampoline(self) -> (&'static [u8], u64) {
        match self {
            Arch::X86_64 => (
                &x86_64::MARKING_TRAMPOLINE,
                x86_64::MARKING_TRAMPOLINE_SYSCALL_END,
            ),
            Arch::I386 => (
                &i386::MARKING_TRAMPOLINE,
                i386::MARKING_TRAMPOLINE_SYSCALL_END,
            ),
        }
    }

    /// Code at `at` a function returns into instead of `ret` when a thread is led out of it
    /// (`lead_out.rs`): keeps the return value, makes `getpid` (where the tracer stops the
    /// thread), puts the value back and goes on to `ret`; with the offset just past its system
    /// call instruction. `None` when `ret` is out of the code's reach.
    pub(crate) fn lead_out_trampoline(self, at: u64, ret: u64) -> Option<(Vec<u8>, u64)> {
        match self {
            Arch::X86_64 => Some((
                x86_64::lead_out_trampoline(ret).to_vec(),
                x86_64::LEAD_OUT_SYSCALL_END,
            )),
            Arch::I386 => Some((
                i386::lead_out_trampoline(at, ret)?.to_vec(),
                i386::LEAD_OUT_SYSCALL_END,
            )),
        }
    }

    /// Facts the stack unwinder needs about this architecture.
    pub fn unwind(self) -> &'static UnwindFacts {
        match self {
            Arch::X86_64 => &x86_64::UNWIND,
            Arch::I386 => &i386::UNWIND,
        }
    }
}

/// What a CFI unwinder needs to know of an architecture (the applier's `unwind.rs`).
#[derive(Debug)]
pub struct UnwindFacts {
    /// DWARF register number of the stack pointer.
    pub sp: u16,
    /// DWARF register number of the return address column.
    pub ra: u16,
    /// How many DWARF registers [`Registers::dwarf`] fills (0 to `ra`).
    pub tracked: usize,
    /// Bytes of a return address on the stack.
    pub address_size: u8,
    /// System call numbers of `clone` and `clone3`: glibc ends their CFI before the
    /// instruction that enters the kernel.
    pub clone_syscalls: &'static [u64],
    /// Signal frames a handler returns through, by the restorer's code.
    pub signal_frames: &'static [SignalFrameFacts],
    /// DWARF register number of the frame pointer by which the vDSO's code without CFI is
    /// walked where its function's frame is set up (i386's `ebp`: the 32-bit vDSO's time
    /// functions keep one and have no CFI); `None` where the vDSO has CFI for all its code.
    pub vdso_frame_pointer: Option<u16>,
}

/// Where a signal frame keeps the interrupted registers, seen from the restorer it returns
/// into (glibc's `__restore_rt`, the vDSO's `__kernel_rt_sigreturn`...).
#[derive(Debug)]
pub struct SignalFrameFacts {
    /// The restorer's code, at the handler's return address.
    pub restorer: &'static [u8],
    /// Offset from the stack pointer at the restorer (the handler's return address popped) to
    /// the saved registers (`uc_mcontext.gregs` of a `ucontext_t`, or a `sigcontext`).
    pub regs_at: u64,
    /// Bytes of one saved register.
    pub slot_size: u8,
    /// DWARF register number of each saved register, by slot index.
    pub slots: &'static [(u64, u16)],
}

/// A thread's general-purpose registers: the x86_64 `user_regs_struct` `PTRACE_GETREGS`
/// gives for every thread (see the module's doc), and the architecture of its process, which
/// says how to read them (system call numbers and results, argument registers).
#[derive(Clone, Copy)]
pub struct Registers(pub libc::user_regs_struct, pub Arch);

/// The raw register set, as the kernel lays it out for a 64-bit tracer.
pub(crate) type Raw = libc::user_regs_struct;

impl Registers {
    /// Program counter (`rip`, `eip`).
    pub fn pc(&self) -> u64 {
        self.0.rip
    }
    /// Set the program counter.
    pub fn set_pc(&mut self, pc: u64) {
        self.0.rip = pc;
    }
    /// Stack pointer (`rsp`, `esp`).
    pub fn sp(&self) -> u64 {
        self.0.rsp
    }
    /// Set the stack pointer.
    pub fn set_sp(&mut self, sp: u64) {
        self.0.rsp = sp;
    }
    /// What a system call returned: the value, or `-errno` (for i386 the 32-bit `eax`,
    /// zero-extended unless it is an error).
    pub fn return_value(&self) -> u64 {
        self.syscall_result() as u64
    }
    /// [`Registers::return_value`] as a signed value.
    pub(crate) fn syscall_result(&self) -> i64 {
        match self.1 {
            Arch::X86_64 => x86_64::syscall_result(&self.0),
            Arch::I386 => i386::syscall_result(&self.0),
        }
    }
    /// The system call the thread is inside, if it was stopped in one (`orig_rax` >= 0).
    pub fn syscall_nr(&self) -> Option<u64> {
        match self.1 {
            Arch::X86_64 => x86_64::syscall_nr(&self.0),
            Arch::I386 => i386::syscall_nr(&self.0),
        }
    }
    /// True when the thread was stopped in a system call the kernel will restart on resume.
    pub fn in_restartable_syscall(&self) -> bool {
        self.syscall_nr().is_some() && RESTART_ERRNOS.contains(&-self.syscall_result())
    }

    /// Registers for executing the system call instruction at `insn` with number `nr` and
    /// `args`.
    ///
    /// `orig_rax` is set to -1 so the kernel does not apply its syscall-restart logic to this
    /// state when the thread leaves its ptrace stop.
    pub(crate) fn prepare_syscall(&mut self, insn: u64, nr: u64, args: [u64; 6]) {
        match self.1 {
            Arch::X86_64 => x86_64::prepare_syscall(&mut self.0, insn, nr, args),
            Arch::I386 => i386::prepare_syscall(&mut self.0, insn, nr, args),
        }
    }

    /// Registers that make the thread run `rt_sigreturn` with the signal frame at `frame`
    /// (from [`build_sigframe`]) through `restorer` ([`Arch::restore_rt`]).
    pub(crate) fn prepare_sigreturn(&mut self, restorer: u64, frame: u64) {
        match self.1 {
            Arch::X86_64 => x86_64::prepare_sigreturn(&mut self.0, restorer, frame),
            Arch::I386 => i386::prepare_sigreturn(&mut self.0, restorer, frame),
        }
    }

    /// At a system-call entry stop: the kernel makes call `nr` with `args` instead of the one
    /// being entered (it takes the number from `orig_rax` once the tracer lets it go), and
    /// returns to `back` after it.
    pub(crate) fn replace_syscall(&mut self, nr: u64, args: [u64; 6], back: u64) {
        self.0.orig_rax = nr;
        self.0.rip = back;
        match self.1 {
            Arch::X86_64 => x86_64::set_syscall_args(&mut self.0, args),
            Arch::I386 => i386::set_syscall_args(&mut self.0, args),
        }
    }

    /// Registers for entering `func` with the stack pointer at `sp`, the address of a frame
    /// from [`build_sigframe`] built with the same `args` (in registers on x86_64, on the
    /// stack in the frame on i386).
    pub(crate) fn prepare_call(&mut self, func: u64, sp: u64, args: &[u64]) {
        match self.1 {
            Arch::X86_64 => x86_64::prepare_call(&mut self.0, func, sp, args),
            Arch::I386 => i386::prepare_call(&mut self.0, func, sp),
        }
    }

    /// At the `getpid` entry stop of the lead-out trampoline: the state right after the
    /// function returned to `ret` (its return value back in place), the system call skipped.
    pub(crate) fn returned_to(&mut self, ret: u64) {
        match self.1 {
            Arch::X86_64 => x86_64::returned_to(&mut self.0, ret),
            Arch::I386 => i386::returned_to(&mut self.0, ret),
        }
    }

    /// For a call returning through [`Arch::marking_trampoline`]: it stores `value` at
    /// `address` (8 bytes, little-endian).
    pub(crate) fn set_mark(&mut self, address: u64, value: u64) {
        match self.1 {
            Arch::X86_64 => x86_64::set_mark(&mut self.0, address, value),
            Arch::I386 => i386::set_mark(&mut self.0, address, value),
        }
    }

    /// The first argument register of a system call (`rdi`; `ebx` on i386, zero-extended).
    pub fn first_arg(&self) -> u64 {
        match self.1 {
            Arch::X86_64 => x86_64::first_arg(&self.0),
            Arch::I386 => i386::first_arg(&self.0),
        }
    }

    /// The registers by DWARF number, up to the return address column
    /// ([`UnwindFacts::tracked`]; the rest zero).
    pub fn dwarf(&self) -> [u64; x86_64::DWARF_TRACKED] {
        match self.1 {
            Arch::X86_64 => x86_64::dwarf(&self.0),
            Arch::I386 => i386::dwarf(&self.0),
        }
    }

    /// The same state, except that a system call the thread was inside and that the kernel
    /// would continue through `restart_syscall` (`-ERESTART_RESTARTBLOCK`: the remaining time
    /// of a sleep, kept in the thread's restart block) is made again from the start instead
    /// (`-ERESTARTNOINTR`). Needed once the thread ran code of ours: any `nanosleep`, `poll` or
    /// `futex` it makes, and `rt_sigreturn`, reset the restart block, and `restart_syscall`
    /// would then fail with EINTR. A sleep starts over instead.
    pub(crate) fn without_restart_block(&self) -> Registers {
        let mut r = *self;
        if self.in_restartable_syscall() && -self.syscall_result() == ERESTART_RESTARTBLOCK {
            r.0.rax = -ERESTARTNOINTR as u64;
        }
        r
    }

    /// The registers with which the thread enters user mode after its stop when the kernel
    /// runs no signal handler, made explicit: a system call the thread was inside and that
    /// the kernel would restart is set up to be made again (`rax` = the call, or
    /// `restart_syscall` for `-ERESTART_RESTARTBLOCK`; `rip` back on the system call
    /// instruction), and `orig_rax` = -1 so the kernel does nothing more to them.
    pub(crate) fn resumed(&self) -> Registers {
        let mut r = *self;
        if let (true, Some(nr)) = (self.in_restartable_syscall(), self.syscall_nr()) {
            let block = -self.syscall_result() == ERESTART_RESTARTBLOCK;
            r.0.rax = if block {
                self.1.nr(Sys::RestartSyscall)
            } else {
                nr
            };
            // `syscall` and `int $0x80` are both two bytes long.
            r.0.rip = r.0.rip.wrapping_sub(2);
        }
        r.0.orig_rax = u64::MAX;
        r
    }

    /// Every field, in `user_regs_struct` order.
    pub fn to_array(&self) -> [u64; 27] {
        let r = &self.0;
        [
            r.r15, r.r14, r.r13, r.r12, r.rbp, r.rbx, r.r11, r.r10, r.r9, r.r8, r.rax, r.rcx,
            r.rdx, r.rsi, r.rdi, r.orig_rax, r.rip, r.cs, r.eflags, r.rsp, r.ss, r.fs_base,
            r.gs_base, r.ds, r.es, r.fs, r.gs,
        ]
    }

    /// Every register zero, of an x86_64 thread: a starting point for registers built by
    /// hand (tests, fuzzing).
    pub fn zero() -> Registers {
        Registers::zero_of(Arch::X86_64)
    }

    /// Every register zero, of a thread of `arch`.
    pub fn zero_of(arch: Arch) -> Registers {
        // SAFETY: user_regs_struct is plain integers; all zeroes is a valid value.
        Registers(unsafe { std::mem::zeroed() }, arch)
    }
}

impl PartialEq for Registers {
    fn eq(&self, other: &Self) -> bool {
        self.1 == other.1 && self.to_array() == other.to_array()
    }
}

impl Eq for Registers {}

impl std::fmt::Debug for Registers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let r = &self.0;
        f.debug_struct("Registers")
            .field("arch", &self.1)
            .field("rip", &format_args!("{:#x}", r.rip))
            .field("rsp", &format_args!("{:#x}", r.rsp))
            .field("rax", &format_args!("{:#x}", r.rax))
            .field("orig_rax", &(r.orig_rax as i64))
            .field("rdi", &format_args!("{:#x}", r.rdi))
            .field("rsi", &format_args!("{:#x}", r.rsi))
            .field("rdx", &format_args!("{:#x}", r.rdx))
            .field("rbx", &format_args!("{:#x}", r.rbx))
            .field("cs", &format_args!("{:#x}", r.cs))
            .finish_non_exhaustive()
    }
}

/// A thread's alternate signal stack (`stack_t`), as `sigaltstack(2)` reads and writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AltStack {
    /// Base address.
    pub sp: u64,
    /// `SS_ONSTACK`, `SS_DISABLE`, `SS_AUTODISARM`.
    pub flags: i32,
    /// Size in bytes.
    pub size: u64,
}

impl AltStack {
    /// Room for a `stack_t` of any architecture (x86_64's 24 bytes, i386's 12).
    pub const MAX_SIZE: usize = 24;

    /// A `uc_stack` for a signal frame that leaves the thread's alternate stack as it is, for
    /// frames built without reading it. `rt_sigreturn` applies `uc_stack` with `sigaltstack`
    /// and ignores every failure but a fault (kernel `restore_altstack`: "squash all but
    /// EFAULT"); `SS_ONSTACK | SS_DISABLE` is a mode `sigaltstack` refuses with EINVAL before
    /// changing anything (since Linux 4.7, and with EPERM first when on the alternate stack).
    pub const UNCHANGED: AltStack = AltStack {
        sp: 0,
        flags: libc::SS_ONSTACK | libc::SS_DISABLE,
        size: 0,
    };

    /// Size of a `stack_t` in memory.
    pub fn size(arch: Arch) -> usize {
        match arch {
            Arch::X86_64 => 24,
            Arch::I386 => 12,
        }
    }

    /// Parse a `stack_t` from memory; `None` when `b` is not [`AltStack::size`] long.
    pub fn from_bytes(arch: Arch, b: &[u8]) -> Option<AltStack> {
        if b.len() != AltStack::size(arch) {
            return None;
        }
        let word = |o: usize| match arch {
            Arch::X86_64 => u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes")),
            Arch::I386 => u64::from(u32::from_le_bytes(b[o..o + 4].try_into().expect("4"))),
        };
        let flags = i32::from_le_bytes(b[arch.pointer_size()..][..4].try_into().expect("4"));
        let size_at = AltStack::size(arch) - arch.pointer_size();
        Some(AltStack {
            sp: word(0),
            flags,
            size: word(size_at),
        })
    }

    /// The `stack_t` in memory.
    pub fn to_bytes(self, arch: Arch) -> Vec<u8> {
        let mut b = vec![0u8; AltStack::size(arch)];
        let p = arch.pointer_size();
        b[..p].copy_from_slice(&self.sp.to_le_bytes()[..p]);
        b[p..p + 4].copy_from_slice(&self.flags.to_le_bytes());
        let size_at = b.len() - p;
        b[size_at..].copy_from_slice(&self.size.to_le_bytes()[..p]);
        b
    }
}

/// Why no signal frame could be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// The thread's XSAVE state is not an image of this CPU's layout.
    Xstate,
    /// No room below the thread's stack pointer in its address space (or call arguments the
    /// architecture cannot pass).
    NoRoom,
}

/// A signal frame ready to be written into the target.
pub struct SigFrame {
    /// Its lowest address: where the return address is, the stack pointer at the function's
    /// entry.
    pub addr: u64,
    /// Its bytes from `addr` up.
    pub bytes: Vec<u8>,
}

/// The state a signal frame saves: what `rt_sigreturn` loads from it.
pub struct FrameState<'a> {
    /// The registers.
    pub regs: &'a Registers,
    /// The signal mask.
    pub mask: u64,
    /// The alternate signal stack.
    pub altstack: AltStack,
    /// The thread's `NT_X86_XSTATE`.
    pub xstate: &'a [u8],
    /// The CPU's XSAVE layout.
    pub layout: &'a XsaveLayout,
}

/// Build the frame the kernel would build to run a handler on a thread whose state is
/// `state`, entirely below `below` (at most the red zone's bottom under its stack pointer),
/// returning to `restorer`, in the format of the thread's architecture. A function entered
/// with the stack pointer at the frame (`Registers::prepare_call`) finds `args` where its
/// calling convention has them. Loaded by `rt_sigreturn`, the frame gives back that state,
/// with a system call the thread was inside set up to be made again from the start
/// (`rt_sigreturn` resets the restart block, see `Registers::without_restart_block`).
pub fn build_sigframe(
    state: &FrameState,
    args: &[u64],
    restorer: u64,
    below: u64,
) -> Result<SigFrame, FrameError> {
    match state.regs.1 {
        Arch::X86_64 => x86_64::build_sigframe(state, restorer, below),
        Arch::I386 => i386::build_sigframe(state, args, restorer, below),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elf_headers() {
        let mut h = [0u8; 20];
        h[..4].copy_from_slice(b"\x7fELF");
        h[4] = 2;
        h[18] = 62;
        assert_eq!(Arch::of_elf_header(&h), Some(Arch::X86_64));
        h[4] = 1;
        assert_eq!(Arch::of_elf_header(&h), None, "x32");
        h[18] = 3;
        assert_eq!(Arch::of_elf_header(&h), Some(Arch::I386));
        h[18] = 40; // ARM
        assert_eq!(Arch::of_elf_header(&h), None);
        assert_eq!(Arch::of_elf_header(&h[..10]), None);
        assert_eq!(Arch::of_elf_header(b"#!/bin/sh\n"), None);
    }

    #[test]
    fn own_process_is_x86_64() {
        let pid = std::process::id() as Pid;
        assert_eq!(Arch::of_process(pid).unwrap(), Arch::X86_64);
        // What a process whose program cannot be read is told by.
        let vdso = Arch::vdso_header(pid).expect("a vDSO");
        assert_eq!(Arch::of_elf_header(&vdso), Some(Arch::X86_64));
    }

    #[test]
    fn altstack_both_layouts() {
        let s = AltStack {
            sp: 0x5000,
            flags: 1,
            size: 0x2000,
        };
        for arch in [Arch::X86_64, Arch::I386] {
            let b = s.to_bytes(arch);
            assert_eq!(b.len(), AltStack::size(arch));
            assert_eq!(AltStack::from_bytes(arch, &b), Some(s));
        }
        assert_eq!(
            AltStack::from_bytes(Arch::I386, &s.to_bytes(Arch::I386)[..8]),
            None
        );
        let b = s.to_bytes(Arch::I386);
        assert_eq!(&b[..], &[0, 0x50, 0, 0, 1, 0, 0, 0, 0, 0x20, 0, 0]);
        assert_eq!(Arch::I386.word_max(), 0xffff_ffff);
        assert_eq!(Arch::X86_64.word_max(), u64::MAX);
    }

    /// The unwinder's signal-frame facts read the frames `build_sigframe` writes: from the
    /// stack pointer at the restorer (the frame's return address popped), the saved `pc`,
    /// `sp` and a general register are where the facts say.
    #[test]
    fn unwind_facts_match_the_frames() {
        for arch in [Arch::X86_64, Arch::I386] {
            let mut regs = Registers::zero_of(arch);
            (regs.0.rip, regs.0.rsp, regs.0.rbx) = (0x1234, 0xff00_0000, 0xb);
            regs.0.orig_rax = u64::MAX;
            let layout = XsaveLayout::from_parts(&[]);
            let mut xstate = vec![0u8; 576];
            xstate[464] = 3;
            let state = FrameState {
                regs: &regs,
                mask: 0,
                altstack: AltStack::UNCHANGED,
                xstate: &xstate,
                layout: &layout,
            };
            let frame = build_sigframe(&state, &[], 0x5000, u64::MAX).unwrap_or_else(|e| {
                panic!("{arch:?}: {e:?}");
            });
            let facts = arch.unwind();
            let rt = &facts.signal_frames[0];
            assert_eq!(rt.restorer, arch.restore_rt());
            let sp_at_restorer = frame.addr + u64::from(facts.address_size);
            let slot = |dwarf: u16| {
                let (index, _) = rt.slots.iter().find(|&&(_, d)| d == dwarf).unwrap();
                let at = (sp_at_restorer - frame.addr + rt.regs_at) as usize
                    + *index as usize * usize::from(rt.slot_size);
                let mut word = [0u8; 8];
                let width = usize::from(rt.slot_size);
                word[..width].copy_from_slice(&frame.bytes[at..at + width]);
                u64::from_le_bytes(word)
            };
            assert_eq!(slot(facts.ra), 0x1234, "{arch:?} pc");
            assert_eq!(slot(facts.sp), 0xff00_0000, "{arch:?} sp");
            assert_eq!(slot(3), 0xb, "{arch:?} rbx/ebx (DWARF 3)");
            assert_eq!(regs.dwarf()[usize::from(facts.ra)], 0x1234);
            assert_eq!(regs.dwarf()[usize::from(facts.sp)], 0xff00_0000);
            assert_eq!(regs.dwarf()[3], 0xb);
        }
    }

    /// Registers are the target's to choose: odd ones give a frame or a refusal, never a panic.
    #[test]
    fn frames_from_odd_registers_never_panic() {
        let layout = XsaveLayout::from_parts(&[(2, 576, 256)]);
        let mut xstate = vec![0u8; 832];
        xstate[464] = 7;
        let odd = [
            0,
            1,
            2,
            0x7f,
            0x1000,
            0xffff_ffff,
            0x1_0000_0000,
            u64::MAX - 1,
            u64::MAX,
        ];
        for arch in [Arch::X86_64, Arch::I386] {
            for (&sp, &pc) in odd.iter().zip(odd.iter().rev()) {
                for (rax, orig) in [(-516i64 as u64, 0), (-512i64 as u64, u64::MAX), (0, 35)] {
                    let mut regs = Registers::zero_of(arch);
                    (regs.0.rsp, regs.0.rip, regs.0.rax, regs.0.orig_rax) = (sp, pc, rax, orig);
                    let state = FrameState {
                        regs: &regs,
                        mask: u64::MAX,
                        altstack: AltStack::UNCHANGED,
                        xstate: &xstate,
                        layout: &layout,
                    };
                    for below in [0, sp, u64::MAX] {
                        let _ = build_sigframe(&state, &[u64::MAX, 1], pc, below);
                    }
                }
            }
        }
    }

    #[test]
    fn restart_rewriting_of_a_compat_thread() {
        // In nanosleep (i386 162), -ERESTART_RESTARTBLOCK as the kernel stores it.
        let mut sleeping = Registers::zero_of(Arch::I386);
        sleeping.0.orig_rax = 162;
        sleeping.0.rax = -516i64 as u64;
        sleeping.0.rip = 0x1002;
        assert!(sleeping.in_restartable_syscall());
        let r = sleeping.resumed();
        assert_eq!((r.0.rax, r.0.rip, r.0.orig_rax), (0, 0x1000, u64::MAX));
        let r = sleeping.without_restart_block().resumed();
        assert_eq!((r.0.rax, r.0.rip), (162, 0x1000));
        // The same with only 32 bits of -516 in eax.
        sleeping.0.rax = (-516i32) as u32 as u64;
        assert!(sleeping.in_restartable_syscall());
        assert_eq!(sleeping.resumed().0.rax, 0);
        // Not in a system call: orig_eax -1, in 32 or 64 bits.
        sleeping.0.orig_rax = u32::MAX as u64;
        assert_eq!(sleeping.syscall_nr(), None);
        sleeping.0.orig_rax = u64::MAX;
        assert_eq!(sleeping.syscall_nr(), None);
    }
}
