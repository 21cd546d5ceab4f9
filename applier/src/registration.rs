//! The patch code's CFI registered with the target's own unwinders, so that C++ exceptions,
//! thread cancellation and `backtrace()` unwind through new code as through the old.
//!
//! A process's unwinders find the CFI of loaded objects through the dynamic loader
//! (`dl_iterate_phdr`, `_dl_find_object`), which does not know the patch module: its
//! `.eh_frame` is registered instead, while the module loads, with every unwinder library the
//! process has mapped, since each finds frames only in its own tables:
//! - libgcc's (`libgcc_s.so.1`; libstdc++'s exceptions, and glibc's thread cancellation,
//!   `pthread_exit` and `backtrace()` in every process): `__register_frame_info(eh_frame,
//!   object)`, `object` being zeroed room in the module (`__lpkg_eh_object`: libgcc keeps its
//!   `struct object` there, which crtstuff allocates statically, so nothing is allocated);
//!   `__deregister_frame_info(eh_frame)` takes them out.
//!   A target object with libgcc's unwinder linked in (`-static-libgcc`) has its own copy,
//!   which its code and the new code throw through: that one is libgcc's here. The package
//!   says where it is (`target.unwinder`, found by the builder in the target's symbols or
//!   debug file, so a stripped target is covered); for a package that does not, the target's
//!   `.symtab` is looked in.
//! - LLVM's libunwind (libc++abi's exceptions; its `__register_frame_info` does nothing):
//!   `__unw_add_dynamic_fde(fde)` for each FDE and `__unw_remove_dynamic_fde(fde)`, which
//!   every version has. (`__unw_add_dynamic_eh_frame_section` would take the section in one
//!   call, but before LLVM 15 it reads past the section's zero terminator.) Removing FDEs it
//!   does not have changes nothing, so they are all removed, whatever was added.
//!
//! Registering frames of code that nothing runs yet changes nothing for the process. They
//! are taken out before the module is unmapped, in revert, rollback and recovery alike, once
//! nothing can reach the module any more, in the reverse order.
//!
//! A process with no unwinder library mapped is C without cleanups (a C++ runtime or a
//! `-fexceptions` cleanup maps libgcc_s); nothing is registered, and lpkg does not load one:
//! glibc loads libgcc_s when a thread is cancelled or calls `backtrace()`, and its
//! cancellation treats frames without CFI as plain C frames, while a `backtrace()` stops at
//! new code.
//!
//! The calls run with the other threads running, so a lock of an unwinder that one of them
//! holds is released as it goes on. libgcc aborts the process on deregistering frames it does
//! not know, so whether each registration happened must be known exactly, even after lpkg was
//! killed: each call returns through a trampoline that has the thread itself store a state
//! word in the room (`Tracee::call_marking`), and a call that lpkg dies in completes on its
//! own and stores it all the same.

use std::path::PathBuf;
use std::time::Duration;

use lpkg_format::LinkedUnwinder;
use lpkg_kernel::memory::Mem;
use lpkg_kernel::objects;
use lpkg_kernel::{Mark, Tracee};

use crate::record::{LlvmRegistration, Registration};
use crate::target::Resolver;
use crate::Error;

const REGISTER: &str = "__register_frame_info";
const DEREGISTER: &str = "__deregister_frame_info";
/// Exported by LLVM's libunwind only (every version), whose `__register_frame_info` does
/// nothing.
const LLVM_ADD: &str = "__unw_add_dynamic_fde";
const LLVM_REMOVE: &str = "__unw_remove_dynamic_fde";
/// At most this much of a module's `.eh_frame` is walked for its FDEs (the record that gives
/// its length is in the target).
const EH_FRAME_CAP: u64 = 1 << 20;

/// The unwinder libraries of a process, as found among its mapped objects.
#[derive(Debug, Clone, Default)]
pub struct Unwinders {
    /// libgcc's.
    pub libgcc: Option<Libgcc>,
    /// LLVM's libunwind.
    pub llvm: Option<Llvm>,
    /// Why an unwinder the process has is not registered with, for the report.
    pub unusable: Option<String>,
}

/// libgcc's unwinder in the process.
#[derive(Debug, Clone)]
pub struct Libgcc {
    /// `__register_frame_info`.
    pub register: u64,
    /// `__deregister_frame_info`.
    pub deregister: u64,
    /// The library's path.
    pub library: PathBuf,
}

/// LLVM's libunwind in the process.
#[derive(Debug, Clone)]
pub struct Llvm {
    /// `__unw_add_dynamic_fde`.
    pub add: u64,
    /// `__unw_remove_dynamic_fde`.
    pub remove: u64,
    /// The library's path.
    pub library: PathBuf,
}

impl Unwinders {
    /// The unwinders of the process whose objects `resolver` reads: the first libgcc and the
    /// first LLVM libunwind among the objects exporting `__register_frame_info`. A target
    /// object with libgcc's unwinder linked in (`-static-libgcc`: its own
    /// `__register_frame_info` and `__deregister_frame_info`, not exported) unwinds its own
    /// exceptions, and the new code's, with that copy: it is libgcc's here, ahead of a
    /// `libgcc_s` the process may also have. `linked` is where the package says that copy is;
    /// without, the target's `.symtab` is looked in.
    pub fn find(resolver: &Resolver, linked: Option<&LinkedUnwinder>) -> Unwinders {
        static LINKED_IN: objects::FileCache<Vec<Option<u64>>> = objects::FileCache::new(|_| 1, 64);
        let mut found = Unwinders::default();
        let linked = match linked {
            Some(offsets) => {
                let bias = resolver.target().bias;
                vec![
                    Some(bias.wrapping_add(offsets.register_frame_info)),
                    Some(bias.wrapping_add(offsets.deregister_frame_info)),
                ]
            }
            None => resolver.target_functions(&[REGISTER, DEREGISTER], &LINKED_IN),
        };
        if let [Some(register), Some(deregister)] = linked[..] {
            found.libgcc = Some(Libgcc {
                register,
                deregister,
                library: resolver.target().path.clone(),
            });
        }
        for (object, register) in resolver.objects_defining(REGISTER) {
            let library = resolver.object_path(object);
            let in_object = |symbol| {
                resolver
                    .definition_address(object, symbol)
                    .filter(|&address| address != 0)
            };
            if let Some(add) = in_object(LLVM_ADD) {
                match in_object(LLVM_REMOVE) {
                    Some(remove) if found.llvm.is_none() => {
                        found.llvm = Some(Llvm {
                            add,
                            remove,
                            library,
                        })
                    }
                    Some(_) => {}
                    None => {
                        found.unusable = Some(format!("{} has no {LLVM_REMOVE}", library.display()))
                    }
                }
            } else if found.libgcc.is_none() {
                match in_object(DEREGISTER) {
                    Some(deregister) => {
                        found.libgcc = Some(Libgcc {
                            register,
                            deregister,
                            library,
                        })
                    }
                    None => {
                        found.unusable = Some(format!("{} has no {DEREGISTER}", library.display()))
                    }
                }
            }
        }
        found
    }

    /// Whether the module's CFI gets registered with at least one unwinder.
    pub fn any(&self) -> bool {
        self.libgcc.is_some() || self.llvm.is_some()
    }

    /// For the report: the libraries registered with, or why none.
    pub fn describe(&self) -> Result<String, String> {
        let libraries: Vec<String> = [
            self.libgcc.as_ref().map(|u| &u.library),
            self.llvm.as_ref().map(|u| &u.library),
        ]
        .into_iter()
        .flatten()
        .map(|l| l.display().to_string())
        .collect();
        match (&self.unusable, libraries.is_empty()) {
            (_, false) => Ok(libraries.join(" and ")),
            (Some(why), true) => Err(why.clone()),
            (None, true) => Err(
                "no unwinder library (libgcc_s or LLVM libunwind) is loaded \
                                 in the process"
                    .to_owned(),
            ),
        }
    }

    /// What the record says of the registrations about to be made, the state words in the
    /// module's room at `room` (`__lpkg_eh_object`).
    pub fn records(&self, room: u64) -> (Option<Registration>, Option<LlvmRegistration>) {
        (
            self.libgcc.as_ref().map(|u| Registration {
                library: u.library.display().to_string(),
                deregister: u.deregister,
                object: room,
            }),
            self.llvm.as_ref().map(|u| LlvmRegistration {
                library: u.library.display().to_string(),
                remove: u.remove,
            }),
        )
    }
}

/// Offset in the room of lpkg's state word for libgcc, after libgcc's part (crtstuff's static
/// `struct object` is at most 8 pointers).
const STATE_AT: u64 = 64;
/// The state word once the registration returned.
const REGISTERED: u64 = 0x5245_4749_5354_4552;
/// The state word once the deregistration returned.
const DEREGISTERED: u64 = 0x4445_5245_4749_5354;

/// The registrations of one module, as its record lists them.
#[derive(Debug, Clone, Copy)]
pub struct Registrations<'a> {
    /// With libgcc.
    pub libgcc: Option<&'a Registration>,
    /// With LLVM's libunwind.
    pub llvm: Option<&'a LlvmRegistration>,
    /// The module's `.eh_frame`.
    pub eh_frame: u64,
    /// Its length.
    pub eh_frame_len: u64,
}

impl Registrations<'_> {
    /// Whether there is any.
    pub fn any(&self) -> bool {
        self.libgcc.is_some() || self.llvm.is_some()
    }

    /// Registers the module's CFI with every unwinder of `unwinders` the registrations name.
    /// The thread that runs each call marks its return in the room's state word.
    pub fn register(
        &self,
        tracee: &mut Tracee,
        mem: &Mem,
        unwinders: &Unwinders,
        timeout: Duration,
    ) -> Result<(), Error> {
        if let (Some(registration), Some(libgcc)) = (self.libgcc, &unwinders.libgcc) {
            let mark = Mark {
                address: registration.object + STATE_AT,
                value: REGISTERED,
            };
            let args = [self.eh_frame, registration.object];
            tracee.call_marking(libgcc.register, &args, timeout, mark)?;
        }
        if let (Some(_), Some(llvm)) = (self.llvm, &unwinders.llvm) {
            for fde in self.fdes(mem)? {
                tracee.call(llvm.add, &[fde], timeout)?;
            }
        }
        Ok(())
    }

    /// Takes the module's CFI out of each unwinder that may have it (for libgcc: its state
    /// word says the registration returned and the deregistration did not), in the reverse
    /// order; returns whether it called any.
    pub fn deregister(
        &self,
        tracee: &mut Tracee,
        mem: &Mem,
        timeout: Duration,
    ) -> Result<bool, Error> {
        let mut called = false;
        let registered = |address| -> Result<bool, Error> {
            Ok(mem.read(address, 8)? == REGISTERED.to_le_bytes())
        };
        if let Some(registration) = self.llvm {
            for fde in self.fdes(mem)? {
                tracee.call(registration.remove, &[fde], timeout)?;
                called = true;
            }
        }
        if let Some(registration) = self.libgcc {
            let state = registration.object + STATE_AT;
            if registered(state)? {
                let mark = Mark {
                    address: state,
                    value: DEREGISTERED,
                };
                tracee.call_marking(registration.deregister, &[self.eh_frame], timeout, mark)?;
                called = true;
            }
        }
        Ok(called)
    }

    /// The addresses of the FDEs in the module's `.eh_frame`, as the target has it.
    fn fdes(&self, mem: &Mem) -> Result<Vec<u64>, Error> {
        let bytes = mem.read(self.eh_frame, self.eh_frame_len.min(EH_FRAME_CAP) as usize)?;
        Ok(fde_offsets(&bytes)
            .into_iter()
            .map(|offset| self.eh_frame + offset)
            .collect())
    }
}

/// The offsets of the FDEs among the records of an `.eh_frame` (up to its zero terminator,
/// or to the end of `bytes`): each record is a 32-bit length, then a 32-bit CIE id, 0 for a
/// CIE and the distance back to its CIE for an FDE. The module's records have 32-bit lengths.
fn fde_offsets(bytes: &[u8]) -> Vec<u64> {
    let mut fdes = Vec::new();
    let mut at = 0usize;
    let word = |at: usize| -> Option<u32> {
        Some(u32::from_le_bytes(
            bytes.get(at..at.checked_add(4)?)?.try_into().ok()?,
        ))
    };
    while let Some(len) = word(at).filter(|&len| len != 0 && len != u32::MAX) {
        let Some(end) = (at + 4)
            .checked_add(len as usize)
            .filter(|&end| end <= bytes.len())
        else {
            break;
        };
        if word(at + 4).is_some_and(|id| id != 0) {
            fdes.push(at as u64);
        }
        at = end;
    }
    fdes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fdes_are_found_up_to_the_terminator_or_the_end() {
        let mut section = Vec::new();
        for (len, id) in [(12u32, 0u32), (8, 16), (8, 28)] {
            section.extend_from_slice(&len.to_le_bytes());
            section.extend_from_slice(&id.to_le_bytes());
            section.resize(section.len() + len as usize - 4, 0xaa);
        }
        assert_eq!(fde_offsets(&section), [16, 28]);
        section.extend_from_slice(&[0; 4]);
        section.extend_from_slice(&[8, 0, 0, 0, 1, 0, 0, 0]);
        assert_eq!(fde_offsets(&section), [16, 28]);
        // A record running past the end is not one.
        assert_eq!(fde_offsets(&section[..30]), [16]);
        assert_eq!(fde_offsets(&[0xff; 3]), Vec::<u64>::new());
    }
}
