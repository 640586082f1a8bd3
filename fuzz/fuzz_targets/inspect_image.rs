//! Arbitrary bytes as a disk image (raw and qcow2) through `dibr inspect`'s readers.
//!
//! The body is `dibr::fuzz_harness::inspect_image`, which the stable test suite
//! also runs on every file of `fuzz/corpus/inspect_image/` and
//! `fuzz/regressions/inspect_image/` (`vendor-tests/fuzz_regressions.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dibr::fuzz_harness::inspect_image(data));
