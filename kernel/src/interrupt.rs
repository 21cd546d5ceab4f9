//! Ctrl-C and SIGTERM turned into a flag, so a long operation can stop between two steps and
//! undo what it did instead of dying half-way.

use std::sync::atomic::{AtomicBool, Ordering};

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

static REQUESTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    REQUESTED.store(true, Ordering::SeqCst);
}

/// From now on SIGINT and SIGTERM set the flag [`requested`] reads instead of killing us.
pub fn catch() -> crate::Result<()> {
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for signal in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { sigaction(signal, &action) }.map_err(|errno| crate::Error::Proc {
            path: "sigaction".into(),
            source: std::io::Error::from_raw_os_error(errno as i32),
        })?;
    }
    Ok(())
}

/// True once SIGINT or SIGTERM arrived after [`catch`].
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}

static HANGUP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_hangup(_: libc::c_int) {
    HANGUP.store(true, Ordering::SeqCst);
}

/// From now on SIGHUP sets the flag [`hangup`] reads (a service's "look again") instead of
/// killing us.
pub fn catch_hangup() -> crate::Result<()> {
    let action = SigAction::new(
        SigHandler::Handler(on_hangup),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe { sigaction(Signal::SIGHUP, &action) }.map_err(|errno| crate::Error::Proc {
        path: "sigaction".into(),
        source: std::io::Error::from_raw_os_error(errno as i32),
    })?;
    Ok(())
}

/// True if SIGHUP arrived since the last call (after [`catch_hangup`]).
pub fn hangup() -> bool {
    HANGUP.swap(false, Ordering::SeqCst)
}

/// SIGPIPE back to its default action, as for any Unix filter: `lpkg list | head -1` then ends
/// quietly instead of failing on the closed pipe. Commands print only after their work is done,
/// so this never interrupts an operation on a target.
pub fn default_sigpipe() -> crate::Result<()> {
    let action = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    // SAFETY: installs the default action; no handler code runs in our process.
    unsafe { sigaction(Signal::SIGPIPE, &action) }.map_err(|errno| crate::Error::Proc {
        path: "sigaction".into(),
        source: std::io::Error::from_raw_os_error(errno as i32),
    })?;
    Ok(())
}
