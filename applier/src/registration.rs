//! The patch code's CFI registered with the target's own unwinder, so that C++ exceptions,
//! thread cancellation and `backtrace()` unwind through new code as through the old.
//!
//! The target's unwinder (libgcc's, in `libgcc_s.so.1`) finds the CFI of loaded objects
//! through `dl_iterate_phdr`, which does not know the patch module: its `.eh_frame` is
//! registered instead with `__register_frame_info(eh_frame, object)`, called inside the target
//! in the switch's pause, `object` being zeroed room in the module (`__lpkg_eh_object`: libgcc
//! fills in its `struct object`, which crtstuff allocates statically, so no allocation is
//! made). `__deregister_frame_info(eh_frame)` takes it out before the module is unmapped, in
//! revert, rollback and recovery alike. libgcc aborts the process on deregistering a frame it
//! does not know, so that call is made only when the room is no longer zero (libgcc wrote it:
//! the registration happened; a registration call that lpkg dies in completes on its own) and
//! lpkg's word after libgcc's part does not say it was deregistered already.
//!
//! libgcc holds a lock while it searches its registered objects; a thread stopped holding it
//! would block the call. The unwinder's code is guarded like a replaced function: the switch
//! waits until no thread executes it or returns into it.

use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use lpkg_kernel::memory::Mem;
use lpkg_kernel::objects::MappedObject;
use lpkg_kernel::{Pid, Tracee};

use crate::quiesce::Guarded;
use crate::record::Registration;
use crate::target::Resolver;
use crate::Error;

const REGISTER: &str = "__register_frame_info";
const DEREGISTER: &str = "__deregister_frame_info";
/// Exported by LLVM's libunwind only, whose `__register_frame_info` does nothing.
const LLVM_LIBUNWIND: &str = "__unw_add_dynamic_fde";

/// The unwinder library of a process, as found among its mapped objects.
#[derive(Debug, Clone)]
pub enum Unwinder {
    /// libgcc's: `__register_frame_info` and `__deregister_frame_info` at these addresses.
    Libgcc {
        /// `__register_frame_info`.
        register: u64,
        /// `__deregister_frame_info`.
        deregister: u64,
        /// The library's path.
        library: PathBuf,
    },
    /// None loaded, or one lpkg cannot register with; why, for the report.
    Missing(String),
}

impl Unwinder {
    /// The unwinder of the process whose objects `resolver` reads.
    pub fn find(resolver: &Resolver) -> Unwinder {
        let Some((object, register)) = resolver.defining_object(REGISTER) else {
            return Unwinder::Missing(
                "no unwinder library (libgcc_s) is loaded in the process".to_owned(),
            );
        };
        let library = resolver.object_path(object);
        if resolver.defining_object(LLVM_LIBUNWIND).is_some() {
            return Unwinder::Missing(format!(
                "{} is LLVM's libunwind, which lpkg does not register with",
                library.display()
            ));
        }
        match resolver.defining_object(DEREGISTER) {
            Some((o, deregister)) if o == object => Unwinder::Libgcc {
                register,
                deregister,
                library,
            },
            _ => Unwinder::Missing(format!("{} has no {DEREGISTER}", library.display())),
        }
    }
}

/// Registers the module's CFI at `eh_frame` with `registration`'s unwinder.
pub fn register(
    tracee: &mut Tracee,
    register: u64,
    registration: &Registration,
    eh_frame: u64,
    timeout: Duration,
) -> Result<(), Error> {
    tracee.call(register, &[eh_frame, registration.object], timeout)?;
    Ok(())
}

/// The part of the room that libgcc's `struct object` may use (crtstuff's static object is at
/// most 8 pointers); the word after it is lpkg's, set once the frames were deregistered.
const LIBGCC_PART: usize = 64;
/// The value of that word once deregistered.
const DEREGISTERED: u64 = 0x4445_5245_4749_5354;

/// Takes the module's CFI at `eh_frame` out of the target's unwinder if it is registered: the
/// object room is no longer zero (libgcc wrote it) and does not say it was deregistered
/// already (libgcc leaves the room as it was; a revert that died after deregistering must
/// not deregister again). Returns whether it called the unwinder.
pub fn deregister(
    tracee: &mut Tracee,
    mem: &Mem,
    registration: &Registration,
    eh_frame: u64,
    timeout: Duration,
) -> Result<bool, Error> {
    let room = mem.read(registration.object, LIBGCC_PART + 8)?;
    let marker = u64::from_le_bytes(room[LIBGCC_PART..].try_into().expect("8 bytes"));
    if room[..LIBGCC_PART].iter().all(|&b| b == 0) || marker == DEREGISTERED {
        return Ok(false);
    }
    tracee.call(registration.deregister, &[eh_frame], timeout)?;
    mem.write(
        registration.object + LIBGCC_PART as u64,
        &DEREGISTERED.to_le_bytes(),
    )?;
    Ok(true)
}

/// The unwinder's code, guarded in the switch: a thread inside it may hold its lock.
pub fn guarded(mapped: &[MappedObject], registration: &Registration) -> Vec<Guarded> {
    let Some(object) = mapped.iter().find(|o| o.contains(registration.deregister)) else {
        return Vec::new();
    };
    let code: Vec<Range<u64>> = object
        .ranges
        .iter()
        .filter(|r| r.exec)
        .map(|r| r.start..r.end)
        .collect();
    code.into_iter()
        .map(|range| Guarded {
            range,
            function: format!("the unwinder ({})", registration.library),
        })
        .collect()
}

/// [`guarded`] for process `pid`, reading its mapped objects.
pub fn guarded_in(pid: Pid, registration: &Registration) -> Result<Vec<Guarded>, Error> {
    let mapped = lpkg_kernel::objects::mapped_objects(pid)?;
    Ok(guarded(&mapped, registration))
}
