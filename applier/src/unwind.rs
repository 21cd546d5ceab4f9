//! Stack unwinding of a stopped thread with the `.eh_frame` CFI of every object it runs in.
//!
//! Production code has no frame pointers, so return addresses are found the way a C++
//! exception finds them: the call frame information of each object. The CFI is parsed and
//! indexed (`CfiCache::load`) while the process still runs; when the world is stopped each
//! thread's stack is copied with one `process_vm_readv` and unwound locally.
//!
//! The objects are the ELF files mapped in the process, its vDSO, and the patch module of
//! every lpkg package applied to it (the builder puts the patch code's `.eh_frame` in the
//! module and the record says where it is), so a thread sleeping in patch code is unwound like
//! any other. Everything read from the target (CFI, stack, records) is untrusted: a walk ends
//! as "incomplete", never with a panic; [`backtrace_from_bytes`] is the fuzzing entry point.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use gimli::{
    BaseAddresses, CfaRule, CieOrFde, EhFrame, EhFrameHdr, EndianArcSlice, FrameDescriptionEntry,
    LittleEndian, ParsedEhFrameHdr, Register, RegisterRule, UnwindContext, UnwindExpression,
    UnwindSection,
};
use lpkg_kernel::arch::current::DWARF_TRACKED;
use lpkg_kernel::arch::{Arch, Registers, SignalFrameFacts, UnwindFacts};
use lpkg_kernel::memory::Mem;
use lpkg_kernel::{maps, objects, stack, Pid};
use object::{Object, ObjectSection, ObjectSegment, ObjectSymbol};

use crate::records;
use crate::reloc::{FramedCode, Machine};

type Reader = EndianArcSlice<LittleEndian>;

/// How much of a thread's stack is copied at most.
pub const STACK_WINDOW: usize = 256 * 1024;
/// Frames past this many are not followed (a corrupt or cyclic stack).
const MAX_FRAMES: usize = 4096;
/// Largest `.eh_frame` read from a patch module in the target.
const MAX_MODULE_EH_FRAME: u64 = 16 << 20;
/// Largest vDSO read from the target (the kernel's are two pages).
const MAX_VDSO: u64 = 1 << 20;
/// Most vDSO functions looked at for a frame pointer (the kernel's have about ten).
const MAX_VDSO_FUNCTIONS: usize = 256;

/// The CFI of one object mapped in the target, indexed by address.
struct ObjectCfi {
    /// Runtime address range of its code.
    ranges: Vec<Range<u64>>,
    /// Runtime address minus link-time address.
    bias: u64,
    /// Code of this object written elsewhere (a patch module's new code written in place of
    /// the old): each runtime range, and the bias that applies there instead of `bias`.
    moved: Vec<(Range<u64>, u64)>,
    /// The vDSO: its code without CFI is never taken for a leaf (below).
    vdso: bool,
    /// Where its code without CFI is walked by frame pointer (the 32-bit vDSO's functions).
    framed: FramedCode,
    eh_frame: EhFrame<Reader>,
    bases: BaseAddresses,
    index: FdeIndex,
}

/// How an object's FDEs are found by address.
enum FdeIndex {
    /// The linker's binary search table (`.eh_frame_hdr`): nothing parsed before it is needed,
    /// each FDE parsed once when a walk first needs it (by `.eh_frame` offset).
    Table {
        hdr: ParsedEhFrameHdr<Reader>,
        parsed: RefCell<HashMap<usize, Option<FrameDescriptionEntry<Reader>>>>,
    },
    /// Every FDE, sorted by link-time start address (patch modules have no table).
    Sorted(Vec<FrameDescriptionEntry<Reader>>),
}

/// The CFI sections of an ELF file, as linked: shared by every process that maps the file.
struct CfiSections {
    /// Link-time address of the first segment (page-aligned).
    first_load: u64,
    /// Bytes of an address: 8 in an ELF64 file, 4 in an ELF32 one.
    address_size: u8,
    eh_frame: Arc<[u8]>,
    eh_frame_address: u64,
    /// `.eh_frame_hdr` and its link-time address.
    eh_frame_hdr: Option<(Arc<[u8]>, u64)>,
}

impl CfiSections {
    /// Reads the headers and the CFI sections of `data`, nothing else.
    fn read<'data>(data: impl object::ReadRef<'data>) -> Option<CfiSections> {
        let file = object::File::parse(data).ok()?;
        let first_load = file.segments().map(|s| s.address()).min().unwrap_or(0) & !0xfff;
        let address_size = if file.is_64() { 8 } else { 4 };
        let section = file.section_by_name(".eh_frame")?;
        let eh_frame_hdr = file
            .section_by_name(".eh_frame_hdr")
            .and_then(|hdr| Some((hdr.data().ok()?.into(), hdr.address())));
        Some(CfiSections {
            first_load,
            address_size,
            eh_frame: section.data().ok()?.into(),
            eh_frame_address: section.address(),
            eh_frame_hdr,
        })
    }

    /// The CFI sections of the file mapped as `object`, read once per file (through a read
    /// cache: only the headers and the CFI, not the whole file).
    fn of(object: &objects::MappedObject) -> Option<Arc<CfiSections>> {
        static SEEN: objects::FileCache<Option<Arc<CfiSections>>> =
            objects::FileCache::new(|_| 1, 256);
        let key = objects::file_key(object).ok()?;
        SEEN.get(key, || -> Result<_, ()> {
            let Ok(file) = std::fs::File::open(&object.map_file) else {
                // Not kept: the file may be readable next time.
                return Err(());
            };
            // At most `Capped::BUDGET` read: the target chooses what its files claim.
            let cache = object::ReadCache::new(file);
            let left = std::cell::Cell::new(objects::Capped::BUDGET);
            Ok(CfiSections::read(objects::Capped::new(&cache, &left)).map(Arc::new))
        })
        .ok()
        .flatten()
    }
}

impl ObjectCfi {
    /// The CFI of an ELF file (or vDSO image) whose `sections` were read, its first segment
    /// mapped at `base`.
    fn from_sections(sections: &CfiSections, base: u64, ranges: Vec<Range<u64>>) -> ObjectCfi {
        let bias = base.wrapping_sub(sections.first_load);
        let mut cfi = ObjectCfi::unindexed(
            sections.eh_frame.clone(),
            sections.eh_frame_address,
            sections.address_size,
            bias,
            ranges,
        );
        let table = sections.eh_frame_hdr.as_ref().and_then(|(bytes, address)| {
            cfi.bases = cfi.bases.clone().set_eh_frame_hdr(*address);
            let parsed = EhFrameHdr::from(Reader::new(bytes.clone(), LittleEndian))
                .parse(&cfi.bases, sections.address_size)
                .ok()?;
            parsed.table().is_some().then_some(parsed)
        });
        cfi.index = match table {
            Some(hdr) => FdeIndex::Table {
                hdr,
                parsed: RefCell::default(),
            },
            None => FdeIndex::Sorted(cfi.all_fdes()),
        };
        cfi
    }

    /// The CFI in `bytes`, an `.eh_frame` section at link-time address `address` whose
    /// addresses are `address_size` bytes, every FDE indexed.
    fn from_eh_frame(
        bytes: Vec<u8>,
        address: u64,
        address_size: u8,
        bias: u64,
        ranges: Vec<Range<u64>>,
    ) -> Self {
        let mut cfi = ObjectCfi::unindexed(bytes.into(), address, address_size, bias, ranges);
        cfi.index = FdeIndex::Sorted(cfi.all_fdes());
        cfi
    }

    fn unindexed(
        bytes: Arc<[u8]>,
        address: u64,
        address_size: u8,
        bias: u64,
        ranges: Vec<Range<u64>>,
    ) -> Self {
        let mut eh_frame = EhFrame::from(Reader::new(bytes, LittleEndian));
        eh_frame.set_address_size(address_size);
        ObjectCfi {
            ranges,
            bias,
            moved: Vec::new(),
            vdso: false,
            framed: FramedCode::default(),
            eh_frame,
            bases: BaseAddresses::default().set_eh_frame(address),
            index: FdeIndex::Sorted(Vec::new()),
        }
    }

    /// Every FDE that parses, sorted by start address.
    fn all_fdes(&self) -> Vec<FrameDescriptionEntry<Reader>> {
        let mut fdes = Vec::new();
        let mut entries = self.eh_frame.entries(&self.bases);
        while let Ok(Some(entry)) = entries.next() {
            if let CieOrFde::Fde(partial) = entry {
                if let Ok(fde) = partial.parse(EhFrame::cie_from_offset) {
                    fdes.push(fde);
                }
            }
        }
        fdes.sort_by_key(|f| f.initial_address());
        fdes
    }

    fn covers(&self, pc: u64) -> bool {
        self.ranges.iter().any(|r| r.contains(&pc))
            || self.moved.iter().any(|(r, _)| r.contains(&pc))
    }

    /// Runtime address minus link-time address at `pc`.
    fn bias_at(&self, pc: u64) -> u64 {
        self.moved
            .iter()
            .find(|(r, _)| r.contains(&pc))
            .map_or(self.bias, |&(_, bias)| bias)
    }

    fn fde(&self, pc: u64) -> Option<FrameDescriptionEntry<Reader>> {
        let at = pc.wrapping_sub(self.bias_at(pc));
        let fde = match &self.index {
            FdeIndex::Sorted(fdes) => {
                let i = fdes.partition_point(|f| f.initial_address() <= at);
                fdes.get(i.checked_sub(1)?)?.clone()
            }
            FdeIndex::Table { hdr, parsed } => {
                let table = hdr.table()?;
                let offset = table
                    .pointer_to_offset(table.lookup(at, &self.bases).ok()?)
                    .ok()?;
                parsed
                    .borrow_mut()
                    .entry(offset.0)
                    .or_insert_with(|| {
                        self.eh_frame
                            .fde_from_offset(&self.bases, offset, EhFrame::cie_from_offset)
                            .ok()
                    })
                    .clone()?
            }
        };
        fde.contains(at).then_some(fde)
    }
}

/// How to find the caller's frame from `start` (bytes from the function's start) on: one row
/// of a function's CFI, registers sorted by number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameRow {
    /// Offset of the first byte the row covers.
    pub start: u64,
    cfa: CfaRule<usize>,
    registers: Vec<(Register, RegisterRule<usize>)>,
}

/// The CFI of one function: its rows, in address order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionFrames {
    /// Bytes its FDE covers from the function's start.
    pub len: u64,
    /// Never empty; the first starts at 0.
    pub rows: Vec<FrameRow>,
    return_address: Register,
}

impl FunctionFrames {
    /// The row for `offset`, if the FDE covers it.
    fn row_at(&self, offset: u64) -> Option<&FrameRow> {
        if offset >= self.len {
            return None;
        }
        self.rows.iter().rev().find(|r| r.start <= offset)
    }

    /// Whether an unwinder that uses `self` for the code at offsets `0..len` unwinds `other`
    /// there correctly: at every offset, the same rules. Past `self.len` (code in padding,
    /// which no FDE of ours covers) `other` must have its entry rules, which is what an
    /// unwinder without CFI assumes for a frame it finds there.
    pub fn describe_alike(&self, other: &FunctionFrames, len: u64) -> bool {
        if self.return_address != other.return_address || other.len < len {
            return false;
        }
        let mut offsets: Vec<u64> = self
            .rows
            .iter()
            .chain(&other.rows)
            .map(|r| r.start)
            .chain([self.len])
            .filter(|&o| o < len)
            .collect();
        offsets.sort_unstable();
        offsets.dedup();
        offsets.into_iter().all(|offset| {
            let ours = self.row_at(offset).or_else(|| other.rows.first());
            match (ours, other.row_at(offset)) {
                (Some(a), Some(b)) => a.cfa == b.cfa && a.registers == b.registers,
                _ => false,
            }
        })
    }
}

/// The CFI of one object, parsed once, to read functions' [`FunctionFrames`] from.
pub struct ObjectFrames(ObjectCfi);

impl ObjectFrames {
    /// The CFI of the ELF file `data` whose first segment is mapped at `base`.
    pub fn of_elf(data: &[u8], base: u64) -> Option<ObjectFrames> {
        let sections = CfiSections::read(data)?;
        Some(ObjectFrames(ObjectCfi::from_sections(
            &sections,
            base,
            Vec::new(),
        )))
    }

    /// The CFI in an `.eh_frame` section (`bytes`) at `address`, as linked into a patch
    /// module whose addresses are `address_size` bytes.
    pub fn of_eh_frame(bytes: &[u8], address: u64, address_size: u8) -> ObjectFrames {
        ObjectFrames(ObjectCfi::from_eh_frame(
            bytes.to_vec(),
            address,
            address_size,
            0,
            Vec::new(),
        ))
    }

    /// The CFI of the function that starts at runtime address `start`: `None` if no FDE
    /// starts there or it cannot be compared (a personality routine or LSDA, a signal frame,
    /// DWARF expressions).
    pub fn function(&self, start: u64) -> Option<FunctionFrames> {
        self.0.function_frames(start)
    }
}

impl ObjectCfi {
    fn function_frames(&self, start: u64) -> Option<FunctionFrames> {
        let fde = self.fde(start)?;
        let first = fde.initial_address();
        let plain = fde.lsda().is_none()
            && fde.personality().is_none()
            && !fde.is_signal_trampoline()
            && first == start.wrapping_sub(self.bias_at(start));
        if !plain {
            return None;
        }
        let mut ctx = UnwindContext::new();
        let mut table = fde.rows(&self.eh_frame, &self.bases, &mut ctx).ok()?;
        let mut rows = Vec::new();
        while let Some(row) = table.next_row().ok()? {
            let mut registers: Vec<_> = row.registers().cloned().collect();
            let expression = matches!(row.cfa(), CfaRule::Expression(_))
                || registers.iter().any(|(_, rule)| {
                    matches!(
                        rule,
                        RegisterRule::Expression(_) | RegisterRule::ValExpression(_)
                    )
                });
            if expression {
                return None;
            }
            registers.sort_by_key(|(register, _)| register.0);
            rows.push(FrameRow {
                start: row.start_address().wrapping_sub(first),
                cfa: row.cfa().clone(),
                registers,
            });
        }
        (rows.first()?.start == 0).then_some(FunctionFrames {
            len: fde.len(),
            rows,
            return_address: fde.cie().return_address_register(),
        })
    }
}

/// Where a walk reads the memory of the stopped thread.
trait Memory {
    /// The little-endian word of `size` bytes (at most 8) at `address`, if readable.
    fn word(&mut self, address: u64, size: u8) -> Option<u64>;
    /// The signal frame whose restorer's code is at `pc` (a signal handler returns there), of
    /// the `frames` of the thread's architecture.
    fn signal_frame(
        &mut self,
        pc: u64,
        frames: &'static [SignalFrameFacts],
    ) -> Option<&'static SignalFrameFacts>;
}

/// `bytes` (at most 8) as a little-endian word.
fn le_word(bytes: &[u8]) -> u64 {
    bytes.iter().rev().fold(0, |v, &b| v << 8 | u64::from(b))
}

/// A copy of the stack from `sp`, and the target itself for anything outside it.
struct TargetMemory<'a> {
    mem: &'a Mem,
    sp: u64,
    window: &'a [u8],
    trampolines: &'a mut HashMap<u64, Option<&'static SignalFrameFacts>>,
}

impl Memory for TargetMemory<'_> {
    fn word(&mut self, address: u64, size: u8) -> Option<u64> {
        match slice_word(self.window, self.sp, address, size) {
            Some(value) => Some(value),
            // Outside the copy (a sigaltstack, a frame past the window): ask the target.
            None => self
                .mem
                .read(address, usize::from(size.min(8)))
                .ok()
                .map(|b| le_word(&b)),
        }
    }

    fn signal_frame(
        &mut self,
        pc: u64,
        frames: &'static [SignalFrameFacts],
    ) -> Option<&'static SignalFrameFacts> {
        let mem = self.mem;
        *self.trampolines.entry(pc).or_insert_with(|| {
            frames
                .iter()
                .find(|f| mem.read(pc, f.restorer.len()).ok().as_deref() == Some(f.restorer))
        })
    }
}

/// Only the bytes given, at `base`: nothing is read from any process.
struct SliceMemory<'a> {
    base: u64,
    bytes: &'a [u8],
}

impl Memory for SliceMemory<'_> {
    fn word(&mut self, address: u64, size: u8) -> Option<u64> {
        slice_word(self.bytes, self.base, address, size)
    }

    fn signal_frame(
        &mut self,
        pc: u64,
        frames: &'static [SignalFrameFacts],
    ) -> Option<&'static SignalFrameFacts> {
        (frames.iter())
            .find(|f| slice_at(self.bytes, self.base, pc, f.restorer.len()) == Some(f.restorer))
    }
}

fn slice_at(bytes: &[u8], base: u64, address: u64, len: usize) -> Option<&[u8]> {
    let start = usize::try_from(address.checked_sub(base)?).ok()?;
    bytes.get(start..start.checked_add(len)?)
}

fn slice_word(bytes: &[u8], base: u64, address: u64, size: u8) -> Option<u64> {
    Some(le_word(slice_at(
        bytes,
        base,
        address,
        usize::from(size.min(8)),
    )?))
}

/// [`vdso_framed_code`], found once for every process whose vDSO holds the same bytes (every
/// 32-bit process of one kernel: `apply --pid all` would decode it again for each), kept
/// relative to the image and moved to where each process maps it.
fn cached_vdso_framed_code(image: &[u8], base: u64, bias: u64) -> FramedCode {
    /// The image, its link-time addresses' offset from its start, its frames from there.
    type Known = (Vec<u8>, u64, FramedCode);
    static KNOWN: std::sync::Mutex<Option<Known>> = std::sync::Mutex::new(None);
    let link_offset = bias.wrapping_sub(base);
    let known = KNOWN.lock().ok().and_then(|known| {
        let (bytes, offset, framed) = known.as_ref()?;
        (bytes[..] == *image && *offset == link_offset).then(|| framed.clone())
    });
    let relative = known.unwrap_or_else(|| {
        let relative = vdso_framed_code(image, 0, link_offset);
        if let Ok(mut known) = KNOWN.lock() {
            *known = Some((image.to_vec(), link_offset, relative.clone()));
        }
        relative
    });
    relative.moved(base)
}

/// Where the functions of the vDSO `image` (mapped at `base`, its link-time addresses plus
/// `bias`) are walked by frame pointer: its dynamic symbols give their starts and sizes.
fn vdso_framed_code(image: &[u8], base: u64, bias: u64) -> FramedCode {
    let Ok(file) = object::File::parse(image) else {
        return FramedCode::default();
    };
    let Some(machine) = Machine::of_object(file.architecture()) else {
        return FramedCode::default();
    };
    let functions: Vec<Range<u64>> = file
        .dynamic_symbols()
        .filter(|s| s.kind() == object::SymbolKind::Text && s.size() > 0)
        .take(MAX_VDSO_FUNCTIONS)
        .filter_map(|s| {
            let start = s.address().checked_add(bias)?;
            Some(start..start.checked_add(s.size())?)
        })
        .collect();
    machine.framed_code(image, base, &functions)
}

/// Where the functions of the vDSO `image`, mapped at `base`, are walked by frame pointer (see
/// [`FramedCode`]), as the stack check finds it in a target's memory. Entry point for fuzzing
/// with untrusted bytes.
pub fn vdso_frames_from_bytes(image: &[u8], base: u64) -> FramedCode {
    let first_load = object::File::parse(image)
        .ok()
        .and_then(|file| file.segments().map(|s| s.address()).min())
        .unwrap_or(0)
        & !0xfff;
    vdso_framed_code(image, base, base.wrapping_sub(first_load))
}

/// The CFI of every object of a process, loaded before the process is stopped.
pub struct CfiCache<'m> {
    pid: Pid,
    /// Opened once (the applier's): a read outside the stack copy is one system call, not
    /// three.
    mem: &'m Mem,
    objects: Vec<ObjectCfi>,
    stacks: Vec<maps::MapEntry>,
    ctx: UnwindContext<usize>,
    /// The signal frame whose restorer's code is at an address (`__restore_rt`...), if any,
    /// asked of the target once each.
    trampolines: HashMap<u64, Option<&'static SignalFrameFacts>>,
}

/// One frame of a thread: where it executes (frame 0) or will return to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// The address; never 0 for a frame that is returned to.
    pub pc: u64,
    /// Frame 0 or the frame interrupted by a signal: `pc` is being executed, not returned to.
    pub executing: bool,
}

/// A thread's frames, and whether the walk reached the thread's root.
#[derive(Debug, Clone)]
pub struct Backtrace {
    /// Innermost first.
    pub frames: Vec<Frame>,
    /// Why the walk stopped before the thread's root (frames further out are unknown);
    /// `None` when it reached it.
    pub stopped: Option<Stuck>,
}

impl Backtrace {
    /// Whether the walk reached the thread's root.
    pub fn complete(&self) -> bool {
        self.stopped.is_none()
    }
}

/// Why a walk stopped before the thread's root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stuck {
    /// A signal frame whose saved context cannot be read.
    BadSignalFrame,
    /// An address in no object, the vDSO or an applied module.
    OutsideObjects,
    /// Code no FDE describes, below the innermost frame.
    NoCfi,
    /// The FDE's rows do not parse.
    CfiUnreadable,
    /// The CFA is computed from a register whose value is unknown here.
    CfaRegisterUnknown,
    /// The CFA is a DWARF expression (not evaluated).
    CfaExpression,
    /// The return address or the caller's stack pointer is unknown.
    ReturnAddressUnknown,
    /// The caller's stack pointer is not above this frame's.
    StackDoesNotGrow,
    /// More frames than a sane stack holds.
    TooManyFrames,
}

impl std::fmt::Display for Stuck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stuck::BadSignalFrame => "bad signal frame",
            Stuck::OutsideObjects => "code outside any object",
            Stuck::NoCfi => "no CFI for this code",
            Stuck::CfiUnreadable => "CFI unreadable",
            Stuck::CfaRegisterUnknown => "CFA register unknown",
            Stuck::CfaExpression => "CFA expression",
            Stuck::ReturnAddressUnknown => "return address unknown",
            Stuck::StackDoesNotGrow => "stack does not grow",
            Stuck::TooManyFrames => "too many frames",
        })
    }
}

fn incomplete(frames: Vec<Frame>, stopped: Stuck) -> Backtrace {
    Backtrace {
        frames,
        stopped: Some(stopped),
    }
}

fn complete(frames: Vec<Frame>) -> Backtrace {
    Backtrace {
        frames,
        stopped: None,
    }
}

impl<'m> CfiCache<'m> {
    /// Parses the `.eh_frame` of every ELF object, of the vDSO and of every lpkg patch module
    /// mapped in the process whose memory is `mem`, of architecture `arch` (its patch
    /// modules' addresses are that size). `known`: its objects as listed moments ago (see
    /// `target::mapped_objects`), or none.
    pub fn load(
        mem: &'m Mem,
        arch: Arch,
        known: &[objects::MappedObject],
    ) -> Result<CfiCache<'m>, crate::Error> {
        let pid = mem.pid();
        let mut found = Vec::new();
        let all = maps::read(pid)?;
        for object in crate::target::mapped_objects(pid, &all, known)? {
            let ranges: Vec<_> = object
                .ranges
                .iter()
                .filter(|r| r.exec)
                .map(|r| r.start..r.end)
                .collect();
            if ranges.is_empty() {
                continue;
            }
            if let Some(sections) = CfiSections::of(&object) {
                found.push(ObjectCfi::from_sections(&sections, object.base, ranges));
            }
        }
        for vdso in all
            .iter()
            .filter(|m| m.path.as_deref() == Some(std::path::Path::new("[vdso]")))
        {
            let code = vdso.start..vdso.end;
            if vdso.len() > MAX_VDSO {
                continue;
            }
            if let Ok(data) = mem.read(vdso.start, vdso.len() as usize) {
                if let Some(sections) = CfiSections::read(&data[..]) {
                    let mut cfi = ObjectCfi::from_sections(&sections, vdso.start, vec![code]);
                    cfi.vdso = true;
                    cfi.framed = cached_vdso_framed_code(&data, vdso.start, cfi.bias);
                    found.push(cfi);
                }
            }
        }
        // Unreadable records only cost the CFI of patch code: its threads stay "busy".
        for record in records::read_with(mem, &all).unwrap_or_default() {
            let body = &record.body;
            let module = body.module_address..body.module_address.saturating_add(body.module_len);
            let (address, len) = (body.eh_frame_address, body.eh_frame_len);
            let inside = module.contains(&address)
                && address
                    .checked_add(len)
                    .is_some_and(|end| end <= module.end);
            if len == 0 || len > MAX_MODULE_EH_FRAME || !inside {
                continue;
            }
            if let Ok(bytes) = mem.read(address, len as usize) {
                let address_size = arch.unwind().address_size;
                let mut cfi =
                    ObjectCfi::from_eh_frame(bytes, address, address_size, 0, vec![module]);
                // New code written in place is described by its FDE in the module; a record
                // still `loading` wrote none: the old code there has the target's own CFI.
                cfi.moved = body
                    .entries
                    .iter()
                    .filter(|e| e.in_place.is_some() && record.may_have_written())
                    .map(|e| (e.guarded_range(), e.address.wrapping_sub(e.new_address)))
                    .collect();
                // Before the objects: its moved ranges are inside the target's code.
                found.insert(0, cfi);
            }
        }
        Ok(CfiCache {
            pid,
            mem,
            objects: found,
            stacks: all.into_iter().filter(|m| m.read && m.write).collect(),
            ctx: UnwindContext::new(),
            trampolines: HashMap::new(),
        })
    }

    /// Unwinds a stopped thread whose registers are `regs`.
    /// Where the return address of the function executing at `regs` lies on the stack, as its
    /// CFI says (`None` where it has none, or keeps the address in a register); for leading the
    /// thread out of it (`Tracee::lead_out`).
    pub fn return_slot(&mut self, regs: &Registers) -> Option<u64> {
        let pc = regs.pc();
        let object = self.objects.iter().find(|o| o.covers(pc))?;
        let fde = object.fde(pc)?;
        if fde.is_signal_trampoline() {
            return None;
        }
        let row = fde
            .unwind_info_for_address(
                &object.eh_frame,
                &object.bases,
                &mut self.ctx,
                pc.wrapping_sub(object.bias_at(pc)),
            )
            .ok()?;
        let cfa = match row.cfa() {
            CfaRule::RegisterAndOffset { register, offset } => regs
                .dwarf()
                .get(register.0 as usize)?
                .wrapping_add(*offset as u64),
            CfaRule::Expression(_) => return None,
        };
        match row.register(Register(regs.1.unwind().ra)) {
            RegisterRule::Offset(o) => Some(cfa.wrapping_add(o as u64)),
            _ => None,
        }
    }

    pub fn backtrace(&mut self, regs: &Registers) -> Backtrace {
        let sp = regs.sp();
        let end = self
            .stacks
            .iter()
            .find(|m| m.contains(sp))
            .map_or(sp.saturating_add(STACK_WINDOW as u64), |m| m.end);
        let len = end.saturating_sub(sp).min(STACK_WINDOW as u64) as usize;
        let window = stack::read_upto(self.pid, sp, len).unwrap_or_default();
        let mut memory = TargetMemory {
            mem: self.mem,
            sp,
            window: &window,
            trampolines: &mut self.trampolines,
        };
        walk(&self.objects, &mut self.ctx, regs, &mut memory)
    }
}

/// Unwinds from `regs` with one object's CFI and a copy of the stack, reading nothing from any
/// process: `eh_frame` is an `.eh_frame` section at `eh_frame_address` describing the code in
/// `code` (runtime addresses), `stack` holds the bytes from `regs.sp()` up. Entry point for
/// fuzzing the unwinder with untrusted bytes.
pub fn backtrace_from_bytes(
    eh_frame: &[u8],
    eh_frame_address: u64,
    code: Range<u64>,
    regs: &Registers,
    stack: &[u8],
) -> Backtrace {
    let objects = [ObjectCfi::from_eh_frame(
        eh_frame.to_vec(),
        eh_frame_address,
        regs.1.unwind().address_size,
        0,
        vec![code],
    )];
    let mut memory = SliceMemory {
        base: regs.sp(),
        bytes: stack,
    };
    walk(&objects, &mut UnwindContext::new(), regs, &mut memory)
}

/// The walk itself: frame by frame, with the CFI of the object each address is in.
fn walk(
    objects: &[ObjectCfi],
    ctx: &mut UnwindContext<usize>,
    regs: &Registers,
    memory: &mut dyn Memory,
) -> Backtrace {
    let facts = regs.1.unwind();
    let mut reg: Regs = regs.dwarf().map(Some);
    let mut frames = vec![Frame {
        pc: regs.pc(),
        executing: true,
    }];
    for _ in 0..MAX_FRAMES {
        let frame = *frames.last().expect("never empty");
        let pc = frame.pc;
        // A return address points after the call: look up the call itself.
        let mut lookup = if frame.executing {
            pc
        } else {
            pc.wrapping_sub(1)
        };
        let mut object = objects.iter().find(|o| o.covers(lookup));
        let mut fde = object.and_then(|o| o.fde(lookup));
        // glibc's clone and clone3 end their CFI before the instruction that enters the
        // kernel; the parent, stopped as the call returns (right past that instruction), has
        // the frame of the instruction before it, which loads the call's number (i386's has
        // pushed two registers there: it is no leaf).
        let parent = in_clone(regs, facts) && regs.return_value() != 0;
        if frames.len() == 1 && fde.is_none() && parent {
            let syscall_len = regs.1.syscall_insn().len() as u64;
            lookup = pc.wrapping_sub(syscall_len + 1);
            object = objects.iter().find(|o| o.covers(lookup));
            fde = object.and_then(|o| o.fde(lookup));
        }
        // A return address whose call is in the same ordinary function (one FDE without the
        // 'S' signal-frame augmentation) is not a signal trampoline: glibc's is covered by an
        // 'S' FDE that starts one byte before it, one without CFI starts where no FDE of
        // another function goes on. So the target's code is read only where a trampoline can
        // be, not at every frame of every thread, in the pause.
        let ordinary = match (object, &fde) {
            (Some(o), Some(f)) => {
                !f.is_signal_trampoline() && f.contains(pc.wrapping_sub(o.bias_at(lookup)))
            }
            _ => false,
        };
        let signal = match !frame.executing && !ordinary {
            true => memory.signal_frame(pc, facts.signal_frames),
            false => None,
        };
        let step = match (signal, object, fde) {
            (Some(signal), _, _) => signal_frame(facts, signal, &reg, memory),
            (None, None, _) => Step::Stuck(Stuck::OutsideObjects),
            // The 32-bit vDSO has CFI only for its system call and sigreturn entries: its time
            // functions push registers and keep a frame pointer, so the word at the stack
            // pointer is no return address there. Walked by frame pointer where their frame
            // is certain to be set; elsewhere not walked: the thread is retried.
            (None, Some(object), None) if object.vdso => {
                frame_by_pointer(facts, &object.framed, frame, &reg, memory)
            }
            (None, Some(_), None) => frame_without_cfi(frames.len(), regs, &reg, memory),
            (None, Some(object), Some(fde)) => {
                frame_with_cfi(facts, object, &fde, ctx, lookup, &reg, memory)
            }
        };
        match step {
            Step::Caller(next, frame) => {
                reg = next;
                frames.push(frame);
            }
            Step::Root => return complete(frames),
            Step::Stuck(why) => return incomplete(frames, why),
        }
    }
    incomplete(frames, Stuck::TooManyFrames)
}

/// The registers by DWARF number, where known.
type Regs = [Option<u64>; DWARF_TRACKED];

/// What one frame of the walk leads to (a short-lived value: its size does not matter).
#[allow(clippy::large_enum_variant)]
enum Step {
    /// The caller's frame, with the registers there.
    Caller(Regs, Frame),
    /// Nothing called this frame: the thread's root.
    Root,
    /// The walk cannot go on.
    Stuck(Stuck),
}

/// A signal frame of kind `signal`: the interrupted registers are saved above sp.
fn signal_frame(
    facts: &UnwindFacts,
    signal: &SignalFrameFacts,
    reg: &Regs,
    memory: &mut dyn Memory,
) -> Step {
    let Some(sp) = reg[usize::from(facts.sp)] else {
        return Step::Stuck(Stuck::BadSignalFrame);
    };
    let mut next = *reg;
    let saved = sp.wrapping_add(signal.regs_at);
    let size = signal.slot_size;
    for &(slot, dwarf) in signal.slots {
        let at = saved.wrapping_add(slot.wrapping_mul(u64::from(size)));
        if let Some(register) = next.get_mut(usize::from(dwarf)) {
            *register = memory.word(at, size);
        }
    }
    match next[usize::from(facts.ra)] {
        Some(pc) if pc != 0 => Step::Caller(
            next,
            Frame {
                pc,
                executing: true,
            },
        ),
        _ => Step::Stuck(Stuck::BadSignalFrame),
    }
}

/// Code without CFI in the vDSO, at `frame`: where `framed` says its function's frame is set,
/// the caller's return address is right above the saved frame pointer the frame pointer
/// points at, and its stack pointer above that. The other registers the function may have
/// changed and saved somewhere in its frame: unknown in the caller.
fn frame_by_pointer(
    facts: &UnwindFacts,
    framed: &FramedCode,
    frame: Frame,
    reg: &Regs,
    memory: &mut dyn Memory,
) -> Step {
    let Some(fp) = facts.vdso_frame_pointer.map(usize::from) else {
        return Step::Stuck(Stuck::NoCfi);
    };
    if !framed.is_set_at(frame.pc, frame.executing) {
        return Step::Stuck(Stuck::NoCfi);
    }
    let (sp, ra, size) = (
        usize::from(facts.sp),
        usize::from(facts.ra),
        facts.address_size,
    );
    let Some(frame_address) = reg.get(fp).copied().flatten() else {
        return Step::Stuck(Stuck::CfaRegisterUnknown);
    };
    let word = u64::from(size);
    let return_address = frame_address.checked_add(word);
    let caller_sp = frame_address.checked_add(2 * word);
    let (Some(address), Some(caller_fp), Some(caller_sp)) = (
        return_address.and_then(|at| memory.word(at, size)),
        memory.word(frame_address, size),
        caller_sp,
    ) else {
        return Step::Stuck(Stuck::ReturnAddressUnknown);
    };
    if address == 0 {
        return Step::Stuck(Stuck::ReturnAddressUnknown);
    }
    if caller_sp <= reg[sp].unwrap_or(0) {
        return Step::Stuck(Stuck::StackDoesNotGrow);
    }
    let mut next: Regs = [None; DWARF_TRACKED];
    next[sp] = Some(caller_sp);
    next[fp] = Some(caller_fp);
    next[ra] = Some(address);
    returns_to(next, address)
}

/// The caller's frame, with registers `next`, where the frame unwound returns to `address`.
fn returns_to(next: Regs, address: u64) -> Step {
    Step::Caller(
        next,
        Frame {
            pc: address,
            executing: false,
        },
    )
}

/// Whether the thread is stopped as a `clone` or `clone3` system call returns.
fn in_clone(regs: &Registers, facts: &UnwindFacts) -> bool {
    (regs.syscall_nr()).is_some_and(|nr| facts.clone_syscalls.contains(&nr))
}

/// Code without CFI: only the innermost frame (`depth` 1) can be gone through, as a leaf that
/// has pushed nothing.
fn frame_without_cfi(depth: usize, regs: &Registers, reg: &Regs, memory: &mut dyn Memory) -> Step {
    if depth > 1 {
        return Step::Stuck(Stuck::NoCfi);
    }
    let facts = regs.1.unwind();
    let (sp, ra) = (usize::from(facts.sp), usize::from(facts.ra));
    // glibc's clone/clone3 end their CFI before the `syscall`: a newborn thread there
    // (return value 0) is at its root. (The parent is unwound with the CFI before the call.)
    if in_clone(regs, facts) && regs.return_value() == 0 {
        return Step::Root;
    }
    let size = facts.address_size;
    let Some(address) = reg[sp]
        .and_then(|sp| memory.word(sp, size))
        .filter(|&a| a != 0)
    else {
        return Step::Stuck(Stuck::NoCfi);
    };
    let mut next = *reg;
    next[sp] = reg[sp].map(|sp| sp.wrapping_add(u64::from(size)));
    next[ra] = Some(address);
    returns_to(next, address)
}

/// Steps of a DWARF expression evaluated at most (the target's CFI may loop).
const MAX_EXPRESSION_STEPS: u32 = 1000;

/// The address DWARF expression `expression` computes with the registers `reg` (and `cfa`
/// pushed first, for a register rule); `None` when it needs anything else, fails, or runs
/// too long.
fn evaluate(
    expression: gimli::Expression<Reader>,
    encoding: gimli::Encoding,
    cfa: Option<u64>,
    reg: &Regs,
    memory: &mut dyn Memory,
) -> Option<u64> {
    use gimli::{EvaluationResult, Location, Value};
    let mut evaluation = expression.evaluation(encoding);
    evaluation.set_max_iterations(MAX_EXPRESSION_STEPS);
    if let Some(cfa) = cfa {
        evaluation.set_initial_value(cfa);
    }
    let mut state = evaluation.evaluate().ok()?;
    for _ in 0..MAX_EXPRESSION_STEPS {
        let value = match state {
            EvaluationResult::Complete => break,
            EvaluationResult::RequiresMemory { address, size, .. } => {
                Value::Generic(memory.word(address, size)?)
            }
            EvaluationResult::RequiresRegister { register, .. } => {
                Value::Generic(reg.get(usize::from(register.0)).copied().flatten()?)
            }
            _ => return None,
        };
        state = match state {
            EvaluationResult::RequiresMemory { .. } => evaluation.resume_with_memory(value),
            _ => evaluation.resume_with_register(value),
        }
        .ok()?;
    }
    if !matches!(state, EvaluationResult::Complete) {
        return None;
    }
    match evaluation.result().as_slice() {
        [piece] => match piece.location {
            Location::Address { address } => Some(address),
            _ => None,
        },
        _ => None,
    }
}

/// A frame that the CFI row for `lookup` in `fde` of `object` describes.
fn frame_with_cfi(
    facts: &UnwindFacts,
    object: &ObjectCfi,
    fde: &FrameDescriptionEntry<Reader>,
    ctx: &mut UnwindContext<usize>,
    lookup: u64,
    reg: &Regs,
    memory: &mut dyn Memory,
) -> Step {
    let Ok(row) = fde.unwind_info_for_address(
        &object.eh_frame,
        &object.bases,
        ctx,
        lookup.wrapping_sub(object.bias_at(lookup)),
    ) else {
        return Step::Stuck(Stuck::CfiUnreadable);
    };
    let (sp, ra, size) = (
        usize::from(facts.sp),
        usize::from(facts.ra),
        facts.address_size,
    );
    let encoding = fde.cie().encoding();
    let expression = |e: &UnwindExpression<usize>| e.get(&object.eh_frame).ok();
    let cfa = match row.cfa() {
        CfaRule::RegisterAndOffset { register, offset } => {
            match reg.get(register.0 as usize).copied().flatten() {
                Some(v) => v.wrapping_add(*offset as u64),
                None => return Step::Stuck(Stuck::CfaRegisterUnknown),
            }
        }
        // i386 `main` realigns its stack: its CFA is read from the frame (`ebp - 4`, deref).
        CfaRule::Expression(e) => {
            match expression(e).and_then(|e| evaluate(e, encoding, None, reg, memory)) {
                Some(cfa) => cfa,
                None => return Step::Stuck(Stuck::CfaExpression),
            }
        }
    };
    let mut next = *reg;
    next[sp] = Some(cfa);
    for n in 0..facts.tracked.min(DWARF_TRACKED) {
        if n == sp {
            continue;
        }
        next[n] = match row.register(Register(n as u16)) {
            // The thread's root (_start, clone): nothing called it.
            RegisterRule::Undefined if n == ra => return Step::Root,
            // A register the row does not name (gimli says undefined) keeps its value, as in
            // libgcc: the caller's CFA may be computed from it (i386 `main`: `ebp`).
            RegisterRule::Undefined => reg[n],
            RegisterRule::SameValue => reg[n],
            RegisterRule::Offset(o) => memory.word(cfa.wrapping_add(o as u64), size),
            RegisterRule::ValOffset(o) => Some(cfa.wrapping_add(o as u64)),
            RegisterRule::Register(other) => reg.get(other.0 as usize).copied().flatten(),
            RegisterRule::Expression(e) => expression(&e)
                .and_then(|e| evaluate(e, encoding, Some(cfa), reg, memory))
                .and_then(|at| memory.word(at, size)),
            RegisterRule::ValExpression(e) => {
                expression(&e).and_then(|e| evaluate(e, encoding, Some(cfa), reg, memory))
            }
            _ => None,
        };
    }
    let (Some(address), Some(new_sp)) = (next[ra], next[sp]) else {
        return Step::Stuck(Stuck::ReturnAddressUnknown);
    };
    if address == 0 {
        return Step::Root;
    }
    if new_sp <= reg[sp].unwrap_or(0) {
        return Step::Stuck(Stuck::StackDoesNotGrow);
    }
    returns_to(next, address)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lpkg_kernel::arch::current::{DWARF_RA, DWARF_SP, RESTORE_RT, UC_GREGS};

    /// A function's CFI: `(start, CFA offset from rsp)` rows, as gcc writes them for code that
    /// pushes and pops.
    fn frames(len: u64, rows: &[(u64, i64)]) -> FunctionFrames {
        FunctionFrames {
            len,
            rows: rows
                .iter()
                .map(|&(start, offset)| FrameRow {
                    start,
                    cfa: CfaRule::RegisterAndOffset {
                        register: Register(DWARF_SP),
                        offset,
                    },
                    registers: vec![(Register(DWARF_RA), RegisterRule::Offset(-8))],
                })
                .collect(),
            return_address: Register(DWARF_RA),
        }
    }

    #[test]
    fn frames_alike_at_every_offset_of_the_new_code() {
        let leaf = frames(16, &[(0, 8)]);
        // The same frameless leaf, longer: its entry rules in the old code's padding.
        assert!(leaf.describe_alike(&frames(20, &[(0, 8)]), 20));
        // A push at 4 the old code did not have.
        assert!(!leaf.describe_alike(&frames(20, &[(0, 8), (4, 16), (12, 8)]), 20));
        // A push past the old code's end, where no FDE of the target covers it.
        assert!(!leaf.describe_alike(&frames(20, &[(0, 8), (18, 16)]), 20));
        // The same push at the same offset: alike.
        let pushes = frames(16, &[(0, 8), (1, 16), (14, 8)]);
        assert!(pushes.describe_alike(&frames(16, &[(0, 8), (1, 16), (14, 8)]), 16));
        assert!(!pushes.describe_alike(&frames(16, &[(0, 8), (2, 16), (14, 8)]), 16));
        // New code longer than its FDE says.
        assert!(!leaf.describe_alike(&frames(12, &[(0, 8)]), 16));
    }

    const EH_FRAME_AT: u64 = 0x2000;
    const CODE: Range<u64> = 0x1000..0x1100;
    const SP0: u64 = 0x7000;

    /// One CIE (CFA = rsp + 8, return address at CFA - 8: every function is a leaf) and one
    /// FDE covering `CODE`, then the terminator.
    fn eh_frame() -> Vec<u8> {
        let mut cie = vec![0, 0, 0, 0, 1, b'z', b'R', 0, 1, 0x78, 16, 1, 0x1b];
        cie.extend([0x0c, 7, 8, 0x90, 1, 0, 0]); // def_cfa rsp+8; offset r16 cfa-8; nops
        let mut bytes = (cie.len() as u32).to_le_bytes().to_vec();
        bytes.extend(cie);
        let fde_at = bytes.len() as u64;
        let pc_begin = CODE.start.wrapping_sub(EH_FRAME_AT + fde_at + 8) as u32;
        let mut fde = ((fde_at + 4) as u32).to_le_bytes().to_vec();
        fde.extend(pc_begin.to_le_bytes());
        fde.extend(((CODE.end - CODE.start) as u32).to_le_bytes());
        fde.extend([0, 0, 0, 0]); // no augmentation data; nops
        bytes.extend((fde.len() as u32).to_le_bytes());
        bytes.extend(fde);
        bytes.extend([0; 4]);
        bytes
    }

    fn regs(pc: u64, sp: u64) -> Registers {
        let mut r = Registers::zero();
        r.set_pc(pc);
        r.set_sp(sp);
        r.0.orig_rax = u64::MAX;
        r
    }

    fn words(values: &[u64], len: usize) -> Vec<u8> {
        let mut bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        bytes.resize(len.max(bytes.len()), 0);
        bytes
    }

    fn pcs(trace: &Backtrace) -> Vec<(u64, bool)> {
        trace.frames.iter().map(|f| (f.pc, f.executing)).collect()
    }

    #[test]
    fn the_eh_frame_hdr_table_finds_what_the_full_index_finds() {
        // This test binary: linked with .eh_frame_hdr, thousands of FDEs; a PIE at 0.
        let exe = std::fs::read("/proc/self/exe").unwrap();
        let everywhere = Range {
            start: 0,
            end: u64::MAX,
        };
        let sections = CfiSections::read(&exe[..]).unwrap();
        let cfi = ObjectCfi::from_sections(&sections, 0, vec![everywhere]);
        assert!(matches!(cfi.index, FdeIndex::Table { .. }), "no table used");
        let all = cfi.all_fdes();
        assert!(all.len() > 1000, "{} FDEs", all.len());
        for fde in all.iter().step_by(5) {
            let (start, end) = (fde.initial_address(), fde.end_address());
            for at in [start, (start + end) / 2, end - 1] {
                let found = cfi.fde(at).map(|f| f.initial_address());
                assert_eq!(found, Some(start), "at {at:#x}");
            }
        }
        let last = all.iter().map(|f| f.end_address()).max().unwrap();
        assert!(cfi.fde(last + 0x10_0000).is_none());
    }

    #[test]
    fn walks_return_addresses_to_the_root() {
        let stack = words(&[0x1010, 0x1020, 0], 0);
        let trace =
            backtrace_from_bytes(&eh_frame(), EH_FRAME_AT, CODE, &regs(0x1000, SP0), &stack);
        assert_eq!(
            pcs(&trace),
            [(0x1000, true), (0x1010, false), (0x1020, false)]
        );
        assert!(trace.complete(), "{:?}", trace.stopped);
    }

    /// A stack copy that counts the signal-trampoline checks (each a read of the target's
    /// code, in the pause).
    struct Counting<'a> {
        memory: SliceMemory<'a>,
        code_reads: usize,
    }

    impl Memory for Counting<'_> {
        fn word(&mut self, address: u64, size: u8) -> Option<u64> {
            self.memory.word(address, size)
        }

        fn signal_frame(
            &mut self,
            pc: u64,
            frames: &'static [SignalFrameFacts],
        ) -> Option<&'static SignalFrameFacts> {
            self.code_reads += 1;
            self.memory.signal_frame(pc, frames)
        }
    }

    #[test]
    fn return_addresses_inside_ordinary_functions_read_no_code() {
        let stack = words(&[0x1010, 0x1020, 0], 0);
        let objects = [ObjectCfi::from_eh_frame(
            eh_frame(),
            EH_FRAME_AT,
            8,
            0,
            vec![CODE],
        )];
        let mut memory = Counting {
            memory: SliceMemory {
                base: SP0,
                bytes: &stack,
            },
            code_reads: 0,
        };
        let trace = walk(
            &objects,
            &mut UnwindContext::new(),
            &regs(0x1000, SP0),
            &mut memory,
        );
        assert!(trace.complete(), "{:?}", trace.stopped);
        assert_eq!(trace.frames.len(), 3);
        assert_eq!(memory.code_reads, 0);
    }

    #[test]
    fn stops_incomplete_outside_known_code_and_past_the_stack() {
        let stack = words(&[0x1010, 0x9999], 0);
        let trace =
            backtrace_from_bytes(&eh_frame(), EH_FRAME_AT, CODE, &regs(0x1000, SP0), &stack);
        assert_eq!(trace.frames.len(), 3);
        assert_eq!(trace.stopped, Some(Stuck::OutsideObjects));

        let trace = backtrace_from_bytes(&eh_frame(), EH_FRAME_AT, CODE, &regs(0x1000, SP0), &[]);
        assert_eq!(pcs(&trace), [(0x1000, true)]);
        assert_eq!(trace.stopped, Some(Stuck::ReturnAddressUnknown));
    }

    #[test]
    fn a_stack_of_one_return_address_repeated_stops_at_the_frame_limit() {
        let stack = words(&[0x1010; MAX_FRAMES + 10], 0);
        let trace =
            backtrace_from_bytes(&eh_frame(), EH_FRAME_AT, CODE, &regs(0x1000, SP0), &stack);
        assert_eq!(trace.stopped, Some(Stuck::TooManyFrames));
        assert_eq!(trace.frames.len(), MAX_FRAMES + 1);
    }

    #[test]
    fn a_signal_frame_resumes_at_the_interrupted_pc_and_stack() {
        // Frame 0 returns to __restore_rt (its bytes are at SP0 + 0x200); the ucontext
        // follows the return address, its gregs say rsp SP0 + 0x300 and rip 0x1050.
        let trampoline = SP0 + 0x200;
        let mut stack = words(&[trampoline], 0x400);
        let gregs = (8 + UC_GREGS) as usize;
        stack[gregs + 15 * 8..gregs + 16 * 8].copy_from_slice(&(SP0 + 0x300).to_le_bytes());
        stack[gregs + 16 * 8..gregs + 17 * 8].copy_from_slice(&0x1050u64.to_le_bytes());
        stack[0x200..0x200 + RESTORE_RT.len()].copy_from_slice(&RESTORE_RT);
        let trace =
            backtrace_from_bytes(&eh_frame(), EH_FRAME_AT, CODE, &regs(0x1000, SP0), &stack);
        assert_eq!(
            pcs(&trace),
            [(0x1000, true), (trampoline, false), (0x1050, true)]
        );
        assert!(trace.complete(), "{:?}", trace.stopped);
    }

    /// The i386 [`eh_frame`]: CFA = esp + 4, the return address (DWARF 8) at CFA - 4.
    fn eh_frame_i386() -> Vec<u8> {
        eh_frame_i386_with_cfa(4, 4)
    }

    /// [`eh_frame_i386`] with CFA = DWARF register `register` + `offset`.
    fn eh_frame_i386_with_cfa(register: u8, offset: u8) -> Vec<u8> {
        let mut cie = vec![0, 0, 0, 0, 1, b'z', b'R', 0, 1, 0x7c, 8, 1, 0x1b];
        // def_cfa register+offset; offset r8 cfa-4; nops
        cie.extend([0x0c, register, offset, 0x88, 1, 0, 0, 0]);
        let mut bytes = (cie.len() as u32).to_le_bytes().to_vec();
        bytes.extend(cie);
        let fde_at = bytes.len() as u64;
        let pc_begin = CODE.start.wrapping_sub(EH_FRAME_AT + fde_at + 8) as u32;
        let mut fde = ((fde_at + 4) as u32).to_le_bytes().to_vec();
        fde.extend(pc_begin.to_le_bytes());
        fde.extend(((CODE.end - CODE.start) as u32).to_le_bytes());
        fde.extend([0, 0, 0, 0]);
        bytes.extend((fde.len() as u32).to_le_bytes());
        bytes.extend(fde);
        bytes.extend([0; 4]);
        bytes
    }

    fn regs_i386(pc: u64, sp: u64) -> Registers {
        let mut r = Registers::zero_of(Arch::I386);
        r.set_pc(pc);
        r.set_sp(sp);
        r.0.orig_rax = u64::MAX;
        r
    }

    fn words32(values: &[u32], len: usize) -> Vec<u8> {
        let mut bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        bytes.resize(len.max(bytes.len()), 0);
        bytes
    }

    #[test]
    fn walks_32_bit_return_addresses_to_the_root() {
        // Read as 8-byte words, 0x1010 and 0x1020 would make one return address.
        let stack = words32(&[0x1010, 0x1020, 0], 0);
        let eh = eh_frame_i386();
        let trace = backtrace_from_bytes(&eh, EH_FRAME_AT, CODE, &regs_i386(0x1000, SP0), &stack);
        assert_eq!(
            pcs(&trace),
            [(0x1000, true), (0x1010, false), (0x1020, false)]
        );
        assert!(trace.complete(), "{:?}", trace.stopped);
    }

    #[test]
    fn a_32_bit_leaf_without_cfi_returns_4_bytes_up() {
        // Frame 0 outside the FDE but inside the object's code: a leaf that pushed nothing.
        let stack = words32(&[0x1010, 0x1020, 0], 0);
        let code = CODE.start..CODE.end + 0x100;
        let trace = backtrace_from_bytes(
            &eh_frame_i386(),
            EH_FRAME_AT,
            code,
            &regs_i386(0x1180, SP0),
            &stack,
        );
        assert_eq!(
            pcs(&trace),
            [(0x1180, true), (0x1010, false), (0x1020, false)]
        );
        assert!(trace.complete(), "{:?}", trace.stopped);
    }

    /// Both i386 signal frames (`rt_sigframe_ia32` and the older `sigframe_ia32`): frame 0
    /// returns to the restorer, the interrupted esp and eip are in the saved registers.
    #[test]
    fn i386_signal_frames_of_both_kinds_resume_at_the_interrupted_pc() {
        let facts = Arch::I386.unwind();
        assert_eq!(facts.signal_frames.len(), 2);
        for signal in facts.signal_frames {
            let trampoline = SP0 + 0x300;
            let mut stack = words32(&[trampoline as u32], 0x400);
            let saved = (4 + signal.regs_at) as usize;
            let mut put = |dwarf: u16, value: u32| {
                let &(slot, _) = signal.slots.iter().find(|&&(_, d)| d == dwarf).unwrap();
                let at = saved + slot as usize * 4;
                stack[at..at + 4].copy_from_slice(&value.to_le_bytes());
            };
            put(facts.sp, (SP0 + 0x380) as u32);
            put(facts.ra, 0x1050);
            stack[0x300..0x300 + signal.restorer.len()].copy_from_slice(signal.restorer);
            let trace = backtrace_from_bytes(
                &eh_frame_i386(),
                EH_FRAME_AT,
                CODE,
                &regs_i386(0x1000, SP0),
                &stack,
            );
            assert_eq!(
                pcs(&trace),
                [(0x1000, true), (trampoline, false), (0x1050, true)],
                "{:?}",
                signal.restorer
            );
            assert!(trace.complete(), "{:?}", trace.stopped);
        }
    }

    /// Code without CFI is a leaf at frame 0, except in the vDSO (the 32-bit one's time
    /// functions keep a frame pointer: the word at the stack pointer is a local there), which
    /// is not walked outside the functions whose frame is known.
    #[test]
    fn code_without_cfi_in_the_vdso_is_never_taken_for_a_leaf() {
        let stack = words32(&[0x1010, 0x1020, 0], 0);
        let code = CODE.start..CODE.end + 0x100;
        for vdso in [false, true] {
            let mut object =
                ObjectCfi::from_eh_frame(eh_frame_i386(), EH_FRAME_AT, 4, 0, vec![code.clone()]);
            object.vdso = vdso;
            let mut memory = SliceMemory {
                base: SP0,
                bytes: &stack,
            };
            let regs = regs_i386(0x1180, SP0);
            let trace = walk(&[object], &mut UnwindContext::new(), &regs, &mut memory);
            match vdso {
                false => assert!(trace.complete(), "{:?}", trace.stopped),
                true => {
                    assert_eq!(pcs(&trace), [(0x1180, true)]);
                    assert_eq!(trace.stopped, Some(Stuck::NoCfi));
                }
            }
        }
    }

    /// Where [`vdso_with_framed_function`] puts the function of `framed_example`.
    const FRAMED_AT: u64 = 0x1180;

    /// A vDSO object whose code (`CODE` and 0x100 bytes past it) has `eh_frame` for `CODE`
    /// and, at [`FRAMED_AT`], the function of `framed_example` without CFI.
    fn vdso_with_framed_function(eh_frame: Vec<u8>) -> ObjectCfi {
        let (code, len) = crate::reloc::i386::framed_example();
        let vdso = CODE.start..0x1200;
        let mut object = ObjectCfi::from_eh_frame(eh_frame, EH_FRAME_AT, 4, 0, vec![vdso]);
        object.vdso = true;
        let function = FRAMED_AT..FRAMED_AT + len;
        object.framed = FramedCode::of(&code, FRAMED_AT, std::slice::from_ref(&function));
        object
    }

    fn regs_i386_framed(pc: u64, sp: u64, ebp: u64) -> Registers {
        let mut r = regs_i386(pc, sp);
        r.0.rbp = ebp;
        r
    }

    #[test]
    fn a_32_bit_vdso_function_is_walked_by_its_frame_pointer_where_its_frame_is_set() {
        // Frame 0 in the body: `ebx` and 16 bytes of locals below the frame at SP0 + 0x14,
        // which holds the caller's ebp (SP0 + 0x30) and the return address 0x1010. The caller
        // has CFI whose CFA is ebp + 8: its return address, 0, is at SP0 + 0x34.
        let mut stack = words32(&[0, 0, 0, 0, 0, (SP0 + 0x30) as u32, 0x1010], 0x40);
        stack[0x34..0x38].copy_from_slice(&0u32.to_le_bytes());
        let objects = [vdso_with_framed_function(eh_frame_i386_with_cfa(5, 8))];
        let walk_from = |offset: u64| {
            let mut memory = SliceMemory {
                base: SP0,
                bytes: &stack,
            };
            let regs = regs_i386_framed(FRAMED_AT + offset, SP0, SP0 + 0x14);
            walk(&objects, &mut UnwindContext::new(), &regs, &mut memory)
        };
        // After `mov %esp,%ebp`, in the body, at the `leave` and past the `ret`.
        for offset in [0x0d, 0x11, 0x1a, 0x1d, 0x1f] {
            let trace = walk_from(offset);
            assert!(trace.complete(), "{offset:#x}: {:?}", trace.stopped);
            assert_eq!(pcs(&trace), [(FRAMED_AT + offset, true), (0x1010, false)]);
        }
        // Before the frame is set (the entry, the `push %ebp`, between it and the `mov`),
        // after `leave`, and in no instruction: not walked.
        for offset in [0x00, 0x0a, 0x0b, 0x1e, 0x16, 0x30] {
            let trace = walk_from(offset);
            assert_eq!(trace.stopped, Some(Stuck::NoCfi), "{offset:#x}");
            assert_eq!(pcs(&trace), [(FRAMED_AT + offset, true)]);
        }
    }

    #[test]
    fn a_return_address_into_a_32_bit_vdso_function_is_walked_by_its_frame_pointer() {
        // Frame 0 is a leaf with CFI, called from the vDSO function's `call` at 0x15; the
        // frame (caller's ebp 0, return address 0x1010) is above 20 bytes of the function's.
        let ret = FRAMED_AT + 0x1a;
        let stack = words32(&[ret as u32, 0, 0, 0, 0, 0, 0, 0x1010, 0x1020, 0], 0);
        let objects = [vdso_with_framed_function(eh_frame_i386())];
        let walk_with = |ret: u64| {
            let mut stack = stack.clone();
            stack[..4].copy_from_slice(&(ret as u32).to_le_bytes());
            let mut memory = SliceMemory {
                base: SP0,
                bytes: &stack,
            };
            let regs = regs_i386_framed(0x1000, SP0, SP0 + 0x18);
            walk(&objects, &mut UnwindContext::new(), &regs, &mut memory)
        };
        let trace = walk_with(ret);
        assert!(trace.complete(), "{:?}", trace.stopped);
        assert_eq!(
            pcs(&trace),
            [
                (0x1000, true),
                (ret, false),
                (0x1010, false),
                (0x1020, false)
            ]
        );
        // An address in the body that no call returns to is no return address of it.
        let trace = walk_with(FRAMED_AT + 0x11);
        assert_eq!(trace.stopped, Some(Stuck::NoCfi));
    }

    #[test]
    fn a_frame_pointer_that_leads_nowhere_stops_the_walk() {
        let objects = [vdso_with_framed_function(eh_frame_i386())];
        // 0x100 bytes below the stack pointer, a frame at their start, then the stack.
        let bytes = [words32(&[0, 0x1010], 0x100), words32(&[0; 8], 0)].concat();
        for (ebp, why) in [
            // Past the stack copy: nothing to read there.
            (SP0 + 0x1000, Stuck::ReturnAddressUnknown),
            // A return address of 0 read from the frame.
            (SP0, Stuck::ReturnAddressUnknown),
            // Below the stack pointer: the caller's would not be above this frame's.
            (SP0 - 0x100, Stuck::StackDoesNotGrow),
        ] {
            let mut memory = SliceMemory {
                base: SP0 - 0x100,
                bytes: &bytes,
            };
            let regs = regs_i386_framed(FRAMED_AT + 0x11, SP0, ebp);
            let trace = walk(&objects, &mut UnwindContext::new(), &regs, &mut memory);
            assert_eq!(trace.stopped, Some(why), "{ebp:#x}");
        }
    }

    /// A 32-bit process of this machine, killed (by its pid) when dropped, and the folder
    /// of its program.
    struct Process32(std::process::Child, #[allow(dead_code)] tempfile::TempDir);

    impl Drop for Process32 {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// The prologues this machine's 32-bit vDSO really has: every time function's frame is
    /// set from right past its `mov %esp,%ebp` on (whatever comes before it: the PC thunk's
    /// call, `push %ebp`, other instructions), and nowhere before it.
    #[test]
    fn the_frames_of_this_machines_32_bit_vdso_functions_are_found() {
        use iced_x86::{Code, Decoder, DecoderOptions, Register};
        use std::io::{BufRead, BufReader};
        use std::process::Stdio;
        let dir = tempfile::tempdir().unwrap();
        let (source, exe) = (dir.path().join("p.c"), dir.path().join("p"));
        let program = "#include <stdio.h>\n#include <unistd.h>\n\
                       int main(void) { puts(\"ready\"); fflush(stdout); pause(); }\n";
        std::fs::write(&source, program).unwrap();
        let gcc = std::process::Command::new("gcc")
            .args(["-m32", "-o"])
            .args([&exe, &source])
            .status()
            .unwrap();
        assert!(gcc.success(), "gcc -m32 (gcc-multilib) works");
        let mut command = std::process::Command::new(&exe);
        let mut process = Process32(command.stdout(Stdio::piped()).spawn().unwrap(), dir);
        // Its mappings are all there once it runs its own code (not when spawn returns).
        let mut ready = String::new();
        let stdout = process.0.stdout.take().unwrap();
        BufReader::new(stdout).read_line(&mut ready).unwrap();
        assert_eq!(ready, "ready\n");
        let pid = process.0.id() as Pid;
        let maps = maps::read(pid).unwrap();
        let vdso = maps
            .iter()
            .find(|m| m.path.as_deref() == Some(std::path::Path::new("[vdso]")))
            .expect("a vDSO");
        let image = lpkg_kernel::memory::read(pid, vdso.start, vdso.len() as usize).unwrap();
        drop(process);
        let framed = vdso_framed_code(&image, vdso.start, vdso.start);
        let file = object::File::parse(&image[..]).unwrap();
        let mut time_functions = 0;
        for symbol in file.dynamic_symbols() {
            let name = symbol.name().unwrap();
            if !name.starts_with("__vdso_") || symbol.size() == 0 {
                continue;
            }
            let start = vdso.start + symbol.address();
            let code = &image[symbol.address() as usize..][..symbol.size() as usize];
            let instructions: Vec<_> = Decoder::with_ip(32, code, start, DecoderOptions::NONE)
                .iter()
                .collect();
            let mov = instructions
                .iter()
                .position(|i| {
                    matches!(i.code(), Code::Mov_r32_rm32 | Code::Mov_rm32_r32)
                        && i.op0_register() == Register::EBP
                        && i.op1_register() == Register::ESP
                })
                .unwrap_or_else(|| panic!("{name}: no mov %esp,%ebp"));
            for before in &instructions[..=mov] {
                let at = before.ip();
                assert!(!framed.is_set_at(at, true), "{name}: set at {at:#x}");
            }
            let body = instructions[mov + 1].ip();
            assert!(framed.is_set_at(body, true), "{name}: not set at {body:#x}");
            time_functions += name.contains("time") as usize;
        }
        // clock_gettime, clock_gettime64, gettimeofday, time
        assert!(time_functions >= 4, "{time_functions} time functions");
        assert_eq!(vdso_frames_from_bytes(&image, vdso.start), framed);
        // Found once, then moved to wherever another process maps the same image.
        for base in [vdso.start, vdso.start + 0x20_0000, vdso.start, 0x1000] {
            let direct = vdso_framed_code(&image, base, base);
            assert_eq!(cached_vdso_framed_code(&image, base, base), direct);
        }

        // The image is the target's: changed anywhere (symbols, sizes, code), it gives frames
        // or none, never a panic.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..300 {
            let mut changed = image.clone();
            for _ in 0..8 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let at = (seed % changed.len() as u64) as usize;
                changed[at] = (seed >> 32) as u8;
            }
            let _ = vdso_frames_from_bytes(&changed, vdso.start);
        }
    }
}
