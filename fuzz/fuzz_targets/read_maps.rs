//! /proc/PID/maps text (paths may hold any bytes) must parse or be refused, never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = lpkg_kernel::maps::parse(1, data);
    for line in data.split(|&b| b == b'\n') {
        let _ = lpkg_kernel::maps::parse_line(line);
    }
});
