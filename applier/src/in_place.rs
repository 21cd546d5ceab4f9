//! New code written over the old, instead of a jump to it.
//!
//! A jump at a replaced function's entry costs every call one more instruction: on a function
//! of a few nanoseconds that is a share one can measure (BENCHMARKS.md). When the new code fits
//! where the old was, and nothing but the old function's start can lead into it, the applier
//! writes the new code itself there, relinked to run at that address: calls run it directly.
//! The module keeps its own copy, which code in the module may still call.
//!
//! A function is written in place only when all of these hold (spec/apply-protocol.md, "In
//! place"); otherwise its entry gets a jump, as always:
//! 1. its entry holds the target file's bytes (not another package's jump or code);
//! 2. the builder gave its `old_room` (no other symbol starts inside it) and the new code fits
//!    in it; any padding used still holds the file's bytes;
//! 3. the old code is a closed leaf ([`crate::reloc::Machine::is_closed_leaf`]): nothing but a thread
//!    executing it can be in its middle, and the switch's stack check sees that thread;
//! 4. the new function is alone in its section of the module, so it can be linked elsewhere,
//!    and is the manifest's `new_size`;
//! 5. at every offset of the new code its CFI rules are the old code's there (past the old
//!    code, its entry rules), without personality or LSDA: unwinders in the target that still
//!    use the target's `.eh_frame` for these addresses (exceptions, `backtrace()`, debuggers,
//!    profilers) unwind the new code correctly. lpkg's own unwinder uses the module's FDE.

use std::collections::BTreeMap;

use lpkg_format::Function;
use lpkg_kernel::memory::Mem;
use object::{Object, ObjectSection};

use crate::link::{Image, Layout, Resolve};
use crate::record::eh_frame_of;
use crate::reloc::Machine;
use crate::target::TargetObject;
use crate::unwind::{FunctionFrames, ObjectFrames};
use crate::Error;

/// Why an entry gets a jump rather than its new code in place (the check that failed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jump {
    /// `--jump-only`.
    Asked,
    /// The target's file or its `.eh_frame` could not be read.
    NoTargetCfi,
    /// Check 1: the entry holds another package's jump or code.
    Stacked,
    /// Check 2: the builder gave no `old_room` (a symbol starts inside the old function).
    NoRoom,
    /// Check 2: the new code is longer than the old function and the filler after it.
    TooLong,
    /// Check 2: the filler after the old function is not the file's any more.
    PaddingChanged,
    /// Check 3: the old code calls, jumps indirectly or jumps out of itself.
    NotClosedLeaf,
    /// Check 4: the new function shares its module section or is not the manifest's size.
    NotAlone,
    /// Check 5: no comparable CFI for the old or the new code.
    NoCfi,
    /// Check 5: the new code's frame differs from the old code's at some offset.
    FramesDiffer,
    /// The module did not link with the new code at the old addresses.
    Unlinkable,
}

impl Jump {
    /// For `lpkg apply`'s output: why this function got a jump.
    pub fn reason(self) -> &'static str {
        match self {
            Jump::Asked => "--jump-only",
            Jump::NoTargetCfi => "the target's CFI could not be read",
            Jump::Stacked => "it replaces code of an applied package",
            Jump::NoRoom => "a symbol starts inside the old function",
            Jump::TooLong => "the new code does not fit where the old was",
            Jump::PaddingChanged => "the padding after the old function changed",
            Jump::NotClosedLeaf => "the old code calls or jumps out of itself",
            Jump::NotAlone => "the new function is not alone in its module section",
            Jump::NoCfi => "no comparable CFI for the old or new code",
            Jump::FramesDiffer => "the new code's stack frame differs from the old code's",
            Jump::Unlinkable => "the new code cannot be linked at the old address",
        }
    }
}

/// A replaced function whose new code may be written over its old code, as far as can be
/// told before the module is linked.
pub struct Candidate {
    /// Index of the function among the package's replaced functions.
    pub index: usize,
    address: u64,
    new_size: u64,
    /// Section of the module holding the new function alone.
    section: usize,
    /// The bytes the new code will overwrite, as they are now.
    original: Vec<u8>,
    old_frames: FunctionFrames,
}

impl Candidate {
    /// How many bytes its new code overwrites, if it goes in place.
    pub fn original_len(&self) -> usize {
        self.original.len()
    }
}

/// New code to write at an entry, relinked to run there.
pub struct Body {
    /// Index of the function among the package's replaced functions.
    pub index: usize,
    /// The new code.
    pub code: Vec<u8>,
    /// The bytes it overwrites.
    pub original: Vec<u8>,
}

/// What the checks before the link read once for all functions: the target file and its CFI,
/// the module's functions that can be linked alone.
pub struct Finder<'a> {
    mem: &'a Mem,
    target: &'a TargetObject,
    file: object::File<'a>,
    /// The target's machine: its code is decoded in that mode.
    machine: Machine,
    frames: ObjectFrames,
    lone_functions: BTreeMap<String, (usize, u64)>,
}

impl<'a> Finder<'a> {
    /// `None` when the target file or its CFI cannot be read: jumps for all.
    pub fn new(
        mem: &'a Mem,
        target: &'a TargetObject,
        target_file: &'a [u8],
        layout: &Layout,
        module: &[u8],
    ) -> Result<Option<Finder<'a>>, Error> {
        let lone_functions = layout.lone_functions(module)?;
        let (Ok(file), Some(frames)) = (
            object::File::parse(target_file),
            ObjectFrames::of_elf(target_file, target.base),
        ) else {
            return Ok(None);
        };
        let Some(machine) = Machine::of_object(file.architecture()) else {
            return Ok(None);
        };
        Ok(Some(Finder {
            mem,
            target,
            file,
            machine,
            frames,
            lone_functions,
        }))
    }

    /// Checks 2 to 4 for the replaced function `function` (the `index`th) at `address`, whose
    /// old code `live` (its `old_size` bytes) holds the target file's bytes (check 1 is the
    /// caller's), and the old code's CFI for check 5.
    pub fn candidate(
        &self,
        index: usize,
        function: &Function,
        address: u64,
        live: &[u8],
    ) -> Result<Candidate, Jump> {
        let (old_size, new_size) = (live.len() as u64, function.new_size);
        let room = function.old_room.ok_or(Jump::NoRoom)?;
        if new_size > room || new_size == 0 {
            return Err(Jump::TooLong);
        }
        if !self.machine.is_closed_leaf(live, address) {
            return Err(Jump::NotClosedLeaf);
        }
        let &(section, _) = (self.lone_functions.get(&function.module_symbol))
            .filter(|&&(_, size)| size == new_size)
            .ok_or(Jump::NotAlone)?;
        let mut original = live[..new_size.min(old_size) as usize].to_vec();
        if new_size > old_size {
            let (from, len) = (address + old_size, (new_size - old_size) as usize);
            let padding = self.mem.read(from, len).map_err(|_| Jump::PaddingChanged)?;
            let in_file = file_bytes(&self.file, from.wrapping_sub(self.target.bias), len);
            if in_file != Some(&padding[..]) {
                return Err(Jump::PaddingChanged);
            }
            original.extend_from_slice(&padding);
        }
        Ok(Candidate {
            index,
            address,
            new_size,
            section,
            original,
            old_frames: self.frames.function(address).ok_or(Jump::NoCfi)?,
        })
    }
}

/// Check 5 for each candidate, whose new function is at `new_addresses[index]` in `image`
/// (the module linked at `image.base`), then the new code of those that pass, relinked to run
/// at their entries; and why each of the others gets a jump. Jumps for all when that link
/// fails (a reach out of ±2 GiB).
pub fn bodies(
    candidates: Vec<Candidate>,
    new_addresses: &[u64],
    image: &Image,
    layout: &Layout,
    module: &[u8],
    resolve: &dyn Resolve,
) -> (Vec<Body>, Vec<(usize, Jump)>) {
    let mut jumps = Vec::new();
    let (eh_frame, eh_frame_len) = eh_frame_of(&image.symbols);
    let frames = eh_frame
        .checked_sub(image.base)
        .and_then(|at| {
            image
                .bytes
                .get(at as usize..at.checked_add(eh_frame_len)? as usize)
        })
        .map(|bytes| ObjectFrames::of_eh_frame(bytes, eh_frame, address_size(module)));
    let mut alike = Vec::new();
    for c in candidates {
        let new = frames
            .as_ref()
            .and_then(|f| f.function(new_addresses[c.index]));
        match new {
            Some(new) if c.old_frames.describe_alike(&new, c.new_size) => alike.push(c),
            Some(_) => jumps.push((c.index, Jump::FramesDiffer)),
            None => jumps.push((c.index, Jump::NoCfi)),
        }
    }
    let placed: BTreeMap<usize, u64> = alike.iter().map(|c| (c.section, c.address)).collect();
    let relinked = match alike.is_empty() {
        true => None,
        false => layout
            .link_placed(module, image.base, resolve, &placed)
            .ok(),
    };
    let mut bodies = Vec::new();
    for c in alike {
        let code = relinked.as_ref().and_then(|image| {
            let at = layout.section_offset(c.section)? as usize;
            image.bytes.get(at..at + c.new_size as usize)
        });
        match code {
            Some(code) => bodies.push(Body {
                index: c.index,
                code: code.to_vec(),
                original: c.original,
            }),
            None => jumps.push((c.index, Jump::Unlinkable)),
        }
    }
    (bodies, jumps)
}

/// Bytes of an address in the ELF file `module`: 4 in an ELF32 one, 8 otherwise.
fn address_size(module: &[u8]) -> u8 {
    match object::File::parse(module).map(|f| f.is_64()) {
        Ok(false) => 4,
        _ => 8,
    }
}

/// The bytes of the target file `target_file` at link-time address `address`.
pub fn file_bytes_at(target_file: &[u8], address: u64, len: usize) -> Option<&[u8]> {
    file_bytes(&object::File::parse(target_file).ok()?, address, len)
}

/// The bytes of `file` at link-time address `address`, from its section holding them.
fn file_bytes<'a>(file: &object::File<'a>, address: u64, len: usize) -> Option<&'a [u8]> {
    file.sections()
        .find_map(|section| section.data_range(address, len as u64).ok()?)
}
