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

/// Pauses forever if the test asked to stop at `step`.
pub fn reached(step: &str) {
    if std::env::var(PAUSE_VAR).is_ok_and(|v| v == step) {
        eprintln!("lpkg: paused at {step}");
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
}
