//! The patch code's CFI registered with the target's own unwinder, so that C++ exceptions,
//! thread cancellation and `backtrace()` unwind through new code as through the old.
//!
//! The target's unwinder (libgcc's, in `libgcc_s.so.1`) finds the CFI of loaded objects
//! through `dl_iterate_phdr`, which does not know the patch module: its `.eh_frame` is
//! registered instead with `__register_frame_info(eh_frame, object)`, called inside the target
//! while the module loads, `object` being zeroed room in the module (`__lpkg_eh_object`: libgcc
//! keeps its `struct object` there, which crtstuff allocates statically, so nothing is
//! allocated). Registering frames of code that nothing runs yet changes nothing for the
//! process. `__deregister_frame_info(eh_frame)` takes them out before the module is unmapped,
//! in revert, rollback and recovery alike, once nothing can reach the module any more.
//!
//! Both calls run with the other threads running, so a lock of the unwinder that one of them
//! holds is released as it goes on. libgcc aborts the process on deregistering frames it does
//! not know, so whether the registration happened must be known exactly, even after lpkg was
//! killed: each call returns through a trampoline that has the thread itself store a state
//! word in the room (`Tracee::call_marking`), and a call that lpkg dies in completes on its
//! own and stores it all the same.

use std::path::PathBuf;
use std::time::Duration;

use lpkg_kernel::memory::Mem;
use lpkg_kernel::{Mark, Tracee};

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

/// Offset in the room of lpkg's state word, after libgcc's part (crtstuff's static
/// `struct object` is at most 8 pointers).
const STATE_AT: u64 = 64;
/// The state word once `__register_frame_info` returned.
const REGISTERED: u64 = 0x5245_4749_5354_4552;
/// The state word once `__deregister_frame_info` returned.
const DEREGISTERED: u64 = 0x4445_5245_4749_5354;

/// Registers the module's CFI at `eh_frame` with the unwinder whose `__register_frame_info` is
/// at `register`. The thread that runs it marks its return in the room's state word.
pub fn register(
    tracee: &mut Tracee,
    register: u64,
    registration: &Registration,
    eh_frame: u64,
    timeout: Duration,
) -> Result<(), Error> {
    let mark = Mark {
        address: registration.object + STATE_AT,
        value: REGISTERED,
    };
    tracee.call_marking(register, &[eh_frame, registration.object], timeout, mark)?;
    Ok(())
}

/// Takes the module's CFI at `eh_frame` out of the target's unwinder if it is registered
/// (the room's state word says the registration returned and the deregistration did not);
/// returns whether it called the unwinder.
pub fn deregister(
    tracee: &mut Tracee,
    mem: &Mem,
    registration: &Registration,
    eh_frame: u64,
    timeout: Duration,
) -> Result<bool, Error> {
    let word = mem.read(registration.object + STATE_AT, 8)?;
    if word != REGISTERED.to_le_bytes() {
        return Ok(false);
    }
    let mark = Mark {
        address: registration.object + STATE_AT,
        value: DEREGISTERED,
    };
    tracee.call_marking(registration.deregister, &[eh_frame], timeout, mark)?;
    Ok(true)
}
