//! Arbitrary bytes as a block-device YAML config, laid out and read back.
//!
//! The body is `dibr::fuzz_harness::block_device_yaml`, which the stable test suite
//! also runs on every file of `fuzz/corpus/block_device_yaml/` and
//! `fuzz/regressions/block_device_yaml/` (`vendor-tests/fuzz_regressions.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dibr::fuzz_harness::block_device_yaml(data));
