//! Stack unwinding of a stopped thread with the `.eh_frame` CFI of every object it runs in.
//!
//! Production code has no frame pointers, so return addresses are found the way a C++
//! exception finds them: the call frame information of each object. The CFI is parsed and
//! indexed (`CfiCache::load`) while the process still runs; when the world is stopped each
//! thread's stack is copied with one `process_vm_readv` and unwound locally.

use std::rc::Rc;

use gimli::{
    BaseAddresses, CfaRule, CieOrFde, EhFrame, EndianRcSlice, FrameDescriptionEntry, LittleEndian,
    Register, RegisterRule, UnwindContext, UnwindSection,
};
use lpkg_kernel::arch::current::Registers;
use lpkg_kernel::{maps, memory, objects, stack, Pid};
use object::{Object, ObjectSection, ObjectSegment};

type Reader = EndianRcSlice<LittleEndian>;

/// How much of a thread's stack is copied at most.
pub const STACK_WINDOW: usize = 256 * 1024;
/// Frames past this many are not followed (a corrupt or cyclic stack).
const MAX_FRAMES: usize = 4096;

/// DWARF register numbers of x86_64 (System V psABI).
const RSP: u16 = 7;
const RA: u16 = 16;
const TRACKED: usize = 17;

/// System call numbers of clone and clone3.
const CLONE_SYSCALLS: [i64; 2] = [56, 435];
/// `mov $15,%rax; syscall`: glibc's `__restore_rt`, where a signal handler returns to.
const RESTORE_RT: [u8; 9] = [0x48, 0xc7, 0xc0, 0x0f, 0x00, 0x00, 0x00, 0x0f, 0x05];
/// Offset of `uc_mcontext.gregs` in the `ucontext_t` that `__restore_rt` finds at its sp.
const UC_GREGS: u64 = 40;
/// DWARF register number of each `gregs` slot (REG_R8 .. REG_RIP).
const GREGS_DWARF: [(u64, u16); 17] = [
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
    (15, RSP),
    (16, RA),
];

/// The CFI of one object mapped in the target, indexed by address.
struct ObjectCfi {
    /// Runtime address range of its executable mappings.
    ranges: Vec<std::ops::Range<u64>>,
    /// Runtime address minus link-time address.
    bias: u64,
    eh_frame: EhFrame<Reader>,
    bases: BaseAddresses,
    /// FDEs sorted by link-time start address.
    fdes: Vec<FrameDescriptionEntry<Reader>>,
}

impl ObjectCfi {
    fn parse(data: &[u8], base: u64, ranges: Vec<std::ops::Range<u64>>) -> Option<ObjectCfi> {
        let file = object::File::parse(data).ok()?;
        let first_load = file.segments().map(|s| s.address()).min().unwrap_or(0) & !0xfff;
        let bias = base.wrapping_sub(first_load);
        let section = file.section_by_name(".eh_frame")?;
        let bytes: Rc<[u8]> = section.data().ok()?.into();
        let eh_frame = EhFrame::from(Reader::new(bytes, LittleEndian));
        let bases = BaseAddresses::default().set_eh_frame(section.address());
        let mut fdes = Vec::new();
        let mut entries = eh_frame.entries(&bases);
        while let Ok(Some(entry)) = entries.next() {
            if let CieOrFde::Fde(partial) = entry {
                if let Ok(fde) = partial.parse(EhFrame::cie_from_offset) {
                    fdes.push(fde);
                }
            }
        }
        fdes.sort_by_key(|f| f.initial_address());
        Some(ObjectCfi {
            ranges,
            bias,
            eh_frame,
            bases,
            fdes,
        })
    }

    fn fde(&self, pc: u64) -> Option<&FrameDescriptionEntry<Reader>> {
        let at = pc.wrapping_sub(self.bias);
        let i = self.fdes.partition_point(|f| f.initial_address() <= at);
        let fde = self.fdes.get(i.checked_sub(1)?)?;
        fde.contains(at).then_some(fde)
    }
}

/// The CFI of every object of a process, loaded before the process is stopped.
pub struct CfiCache {
    pid: Pid,
    objects: Vec<ObjectCfi>,
    stacks: Vec<maps::MapEntry>,
    ctx: UnwindContext<usize>,
    /// Whether the code at an address is `__restore_rt`, asked of the target once each.
    trampolines: std::collections::HashMap<u64, bool>,
}

/// One frame of a thread: where it executes (frame 0) or will return to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// The address.
    pub pc: u64,
    /// Frame 0 or the frame interrupted by a signal: `pc` is being executed, not returned to.
    pub executing: bool,
}

/// A thread's frames, and whether the walk reached the thread's root.
#[derive(Debug, Clone)]
pub struct Backtrace {
    /// Innermost first.
    pub frames: Vec<Frame>,
    /// False when the walk stopped before the thread's root: frames further out are unknown.
    pub complete: bool,
    /// Why an incomplete walk stopped.
    pub stopped: &'static str,
}

fn incomplete(frames: Vec<Frame>, stopped: &'static str) -> Backtrace {
    Backtrace {
        frames,
        complete: false,
        stopped,
    }
}

impl CfiCache {
    /// Parses the `.eh_frame` of every ELF object and of the vDSO mapped in `pid`.
    pub fn load(pid: Pid) -> Result<CfiCache, crate::Error> {
        let mut found = Vec::new();
        for object in objects::mapped_objects(pid)? {
            let ranges: Vec<_> = object
                .ranges
                .iter()
                .filter(|r| r.exec)
                .map(|r| r.start..r.end)
                .collect();
            if ranges.is_empty() {
                continue;
            }
            let Ok(data) = objects::read_file(&object) else {
                continue;
            };
            if let Some(cfi) = ObjectCfi::parse(&data, object.base, ranges) {
                found.push(cfi);
            }
        }
        let all = maps::read(pid)?;
        for vdso in all
            .iter()
            .filter(|m| m.path.as_deref() == Some(std::path::Path::new("[vdso]")))
        {
            if let Ok(data) = memory::read(pid, vdso.start, vdso.len() as usize) {
                if let Some(cfi) = ObjectCfi::parse(&data, vdso.start, vec![vdso.start..vdso.end]) {
                    found.push(cfi);
                }
            }
        }
        Ok(CfiCache {
            pid,
            objects: found,
            stacks: all.into_iter().filter(|m| m.read && m.write).collect(),
            ctx: UnwindContext::new(),
            trampolines: Default::default(),
        })
    }

    /// Unwinds a stopped thread whose registers are `regs`.
    pub fn backtrace(&mut self, regs: &Registers) -> Backtrace {
        let r = &regs.0;
        let mut reg: [Option<u64>; TRACKED] = [
            Some(r.rax),
            Some(r.rdx),
            Some(r.rcx),
            Some(r.rbx),
            Some(r.rsi),
            Some(r.rdi),
            Some(r.rbp),
            Some(r.rsp),
            Some(r.r8),
            Some(r.r9),
            Some(r.r10),
            Some(r.r11),
            Some(r.r12),
            Some(r.r13),
            Some(r.r14),
            Some(r.r15),
            Some(r.rip),
        ];
        let sp = r.rsp;
        let end = self
            .stacks
            .iter()
            .find(|m| m.contains(sp))
            .map_or(sp + STACK_WINDOW as u64, |m| m.end);
        let len = (end - sp).min(STACK_WINDOW as u64) as usize;
        let window = stack::read_upto(self.pid, sp, len).unwrap_or_default();
        let pid = self.pid;
        let load = |addr: u64| -> Option<u64> {
            let off = addr.checked_sub(sp)? as usize;
            match window.get(off..off + 8) {
                Some(b) => Some(u64::from_le_bytes(b.try_into().ok()?)),
                // Outside the copy (a sigaltstack, a frame past the window): ask the target.
                None => memory::read_u64(pid, addr).ok(),
            }
        };

        let mut frames = vec![Frame {
            pc: r.rip,
            executing: true,
        }];
        for _ in 0..MAX_FRAMES {
            let frame = *frames.last().expect("never empty");
            let pc = frame.pc;
            if !frame.executing && self.is_restore_rt(pc) {
                // A signal frame: the interrupted context is saved in the ucontext at sp.
                let Some(sp) = reg[RSP as usize] else { break };
                let gregs = sp + UC_GREGS;
                for (slot, dwarf) in GREGS_DWARF {
                    reg[dwarf as usize] = load(gregs + slot * 8);
                }
                match reg[RA as usize] {
                    Some(pc) if pc != 0 => frames.push(Frame {
                        pc,
                        executing: true,
                    }),
                    _ => return incomplete(frames, "bad signal frame"),
                }
                continue;
            }
            // A return address points after the call: look up the call itself.
            let lookup = if frame.executing { pc } else { pc - 1 };
            let Some(object) = self
                .objects
                .iter()
                .find(|o| o.ranges.iter().any(|r| r.contains(&lookup)))
            else {
                return incomplete(frames, "code outside any object");
            };
            let Some(fde) = object.fde(lookup) else {
                if frames.len() > 1 {
                    return incomplete(frames, "no CFI for this code");
                }
                // glibc's clone/clone3 end their CFI before the `syscall`: a thread there is
                // either newborn (rax 0: its root) or the parent about to `ret` (a leaf).
                if CLONE_SYSCALLS.contains(&(r.orig_rax as i64)) && r.rax == 0 {
                    return Backtrace {
                        frames,
                        complete: true,
                        stopped: "",
                    };
                }
                let Some(ra) = reg[RSP as usize].and_then(&load) else {
                    return incomplete(frames, "no CFI for this code");
                };
                reg[RSP as usize] = reg[RSP as usize].map(|sp| sp + 8);
                reg[RA as usize] = Some(ra);
                frames.push(Frame {
                    pc: ra,
                    executing: false,
                });
                continue;
            };
            let Ok(row) = fde.unwind_info_for_address(
                &object.eh_frame,
                &object.bases,
                &mut self.ctx,
                lookup.wrapping_sub(object.bias),
            ) else {
                return incomplete(frames, "CFI unreadable");
            };
            let cfa = match row.cfa() {
                CfaRule::RegisterAndOffset { register, offset } => {
                    match reg.get(register.0 as usize).copied().flatten() {
                        Some(v) => v.wrapping_add((*offset) as u64),
                        None => return incomplete(frames, "CFA register unknown"),
                    }
                }
                CfaRule::Expression(_) => return incomplete(frames, "CFA expression"),
            };
            let mut next = reg;
            next[RSP as usize] = Some(cfa);
            for n in 0..TRACKED as u16 {
                if n == RSP {
                    continue;
                }
                next[n as usize] = match row.register(Register(n)) {
                    RegisterRule::Undefined if n == RA => {
                        // The thread's root (_start, clone): nothing called it.
                        return Backtrace {
                            frames,
                            complete: true,
                            stopped: "",
                        };
                    }
                    RegisterRule::Undefined => None,
                    RegisterRule::SameValue => reg[n as usize],
                    RegisterRule::Offset(o) => load(cfa.wrapping_add(o as u64)),
                    RegisterRule::ValOffset(o) => Some(cfa.wrapping_add(o as u64)),
                    RegisterRule::Register(other) => reg.get(other.0 as usize).copied().flatten(),
                    _ => None,
                };
            }
            let (Some(ra), Some(new_sp)) = (next[RA as usize], next[RSP as usize]) else {
                return incomplete(frames, "return address unknown");
            };
            if ra == 0 {
                return Backtrace {
                    frames,
                    complete: true,
                    stopped: "",
                };
            }
            if new_sp <= reg[RSP as usize].unwrap_or(0) {
                return incomplete(frames, "stack does not grow");
            }
            reg = next;
            frames.push(Frame {
                pc: ra,
                executing: false,
            });
        }
        incomplete(frames, "too many frames")
    }

    fn is_restore_rt(&mut self, pc: u64) -> bool {
        let pid = self.pid;
        *self.trampolines.entry(pc).or_insert_with(|| {
            memory::read(pid, pc, RESTORE_RT.len()).ok().as_deref() == Some(&RESTORE_RT[..])
        })
    }
}
