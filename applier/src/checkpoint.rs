//! Named points between the steps of apply and revert, where a test can stop the applier.
//!
//! Crash consistency is tested by killing lpkg at each of these points: with
//! `LPKG_TEST_PAUSE_AT=<step>` in its environment, lpkg prints `lpkg: paused at <step>` on
//! stderr when it gets there and sleeps until killed. Without the variable a checkpoint costs
//! one environment lookup.

/// The environment variable naming the step to pause at.
pub const PAUSE_VAR: &str = "LPKG_TEST_PAUSE_AT";

/// Every step apply passes, in order.
pub const APPLY_STEPS: &[&str] = &[
    "apply:mapped",
    "apply:recorded",
    "apply:stopped",
    "apply:switching",
    "apply:jump-1",
    "apply:jumps-written",
    "apply:applied",
];

/// Every step revert passes, in order.
pub const REVERT_STEPS: &[&str] = &[
    "revert:stopped",
    "revert:reverting",
    "revert:restored-1",
    "revert:module-unmapped",
];

/// Where revert has read the records and not yet seized the process: nothing changed yet.
pub const REVERT_READ: &str = "revert:read";

/// The steps passed only when the module's CFI is registered with the target's unwinder: right
/// after registering (apply, state `switching`) and after deregistering (revert).
pub const REGISTRATION_STEPS: &[&str] = &["apply:registered", "revert:deregistered"];

/// Pauses forever if the test asked to stop at `step`.
pub fn reached(step: &str) {
    if std::env::var(PAUSE_VAR).is_ok_and(|v| v == step) {
        eprintln!("lpkg: paused at {step}");
        // A Ctrl-C (when caught, see `catch_interrupts`) ends the pause, so it can be tested.
        while !lpkg_kernel::interrupt::requested() {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}

/// Passes `step` of apply: pauses there if a test asked, then stops the apply (to be rolled
/// back) if SIGINT or SIGTERM arrived since [`catch_interrupts`].
pub fn apply_step(step: &'static str) -> Result<(), crate::Error> {
    reached(step);
    if lpkg_kernel::interrupt::requested() {
        return Err(crate::Error::Interrupted { step });
    }
    Ok(())
}

/// Makes SIGINT and SIGTERM stop an apply between two steps and roll it back (a revert in
/// progress completes) instead of killing the process. For the CLI, once at start.
pub fn catch_interrupts() -> Result<(), crate::Error> {
    Ok(lpkg_kernel::interrupt::catch()?)
}
