//! Arbitrary bytes through the tar reader, every entry and its data.
//!
//! The body is `dibr::fuzz_harness::tar_reader`, which the stable test suite
//! also runs on every file of `fuzz/corpus/tar_reader/` and
//! `fuzz/regressions/tar_reader/` (`vendor-tests/fuzz_regressions.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dibr::fuzz_harness::tar_reader(data));
