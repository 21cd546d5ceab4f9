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
//! 3. the old code is a closed leaf ([`crate::reloc::is_closed_leaf`]): nothing but a thread
//!    executing it can be in its middle, and the switch's stack check sees that thread;
//! 4. the new function is alone in its section of the module, so it can be linked elsewhere;
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
use crate::reloc::is_closed_leaf;
use crate::target::TargetObject;
use crate::unwind::{FunctionFrames, ObjectFrames};
use crate::Error;

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
        Ok(Some(Finder {
            mem,
            target,
            file,
            frames,
            lone_functions,
        }))
    }

    /// Checks 1 to 4 for the replaced function `function` (the `index`th) at `address`,
    /// whose old code `live` (its `old_size` bytes) holds the target file's bytes (check 1 is
    /// the caller's).
    pub fn candidate(
        &self,
        index: usize,
        function: &Function,
        address: u64,
        live: &[u8],
    ) -> Option<Candidate> {
        let (old_size, new_size) = (live.len() as u64, function.new_size);
        let fits = function.old_room.is_some_and(|room| new_size <= room);
        if !fits || new_size == 0 || !is_closed_leaf(live, address) {
            return None;
        }
        let &(section, size) = self.lone_functions.get(&function.module_symbol)?;
        if size != new_size {
            return None;
        }
        let mut original = live[..new_size.min(old_size) as usize].to_vec();
        if new_size > old_size {
            let (from, len) = (address + old_size, (new_size - old_size) as usize);
            let padding = self.mem.read(from, len).ok()?;
            let in_file = file_bytes(&self.file, from.wrapping_sub(self.target.bias), len);
            if in_file != Some(&padding[..]) {
                return None;
            }
            original.extend_from_slice(&padding);
        }
        Some(Candidate {
            index,
            address,
            new_size,
            section,
            original,
            old_frames: self.frames.function(address)?,
        })
    }
}

/// Check 5 for each candidate, whose new function is at `new_addresses[index]` in `image`
/// (the module linked at `image.base`), then the new code of those that pass, relinked to run
/// at their entries. None at all when that link fails (a reach out of ±2 GiB): jumps for all.
pub fn bodies(
    candidates: Vec<Candidate>,
    new_addresses: &[u64],
    image: &Image,
    layout: &Layout,
    module: &[u8],
    resolve: &dyn Resolve,
) -> Vec<Body> {
    let (eh_frame, eh_frame_len) = eh_frame_of(&image.symbols);
    let eh_frame_bytes = eh_frame.checked_sub(image.base).and_then(|at| {
        image
            .bytes
            .get(at as usize..at.checked_add(eh_frame_len)? as usize)
    });
    let (Some(eh_frame_bytes), false) = (eh_frame_bytes, candidates.is_empty()) else {
        return Vec::new();
    };
    let frames = ObjectFrames::of_eh_frame(eh_frame_bytes, eh_frame);
    let alike: Vec<Candidate> = candidates
        .into_iter()
        .filter(|c| {
            frames
                .function(new_addresses[c.index])
                .is_some_and(|new| c.old_frames.describe_alike(&new, c.new_size))
        })
        .collect();
    if alike.is_empty() {
        return Vec::new();
    }
    let placed: BTreeMap<usize, u64> = alike.iter().map(|c| (c.section, c.address)).collect();
    let Ok(relinked) = layout.link_placed(module, image.base, resolve, &placed) else {
        return Vec::new();
    };
    alike
        .into_iter()
        .filter_map(|c| {
            let at = layout.section_offset(c.section)? as usize;
            Some(Body {
                index: c.index,
                code: relinked.bytes.get(at..at + c.new_size as usize)?.to_vec(),
                original: c.original,
            })
        })
        .collect()
}

/// The bytes of `file` at link-time address `address`, from its section holding them.
fn file_bytes<'a>(file: &object::File<'a>, address: u64, len: usize) -> Option<&'a [u8]> {
    file.sections()
        .find_map(|section| section.data_range(address, len as u64).ok()?)
}
