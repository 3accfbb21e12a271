//! Kuma's, Go's and timeout durations on untrusted text. The property lives in meshplane-fuzz-checks,
//! which `cargo test` also replays over the seeds and past failures.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| meshplane_fuzz_checks::duration(data));
