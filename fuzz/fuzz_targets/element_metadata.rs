//! Arbitrary bytes through the element metadata parsers.
//!
//! The body is `dibr::fuzz_harness::element_metadata`, which the stable test suite
//! also runs on every file of `fuzz/corpus/element_metadata/` and
//! `fuzz/regressions/element_metadata/` (`vendor-tests/fuzz_regressions.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dibr::fuzz_harness::element_metadata(data));
