//! Arbitrary bytes as the header area of an LVM2 physical volume.
//!
//! The body is `dibr::fuzz_harness::lvm_pv`, which the stable test suite
//! also runs on every file of `fuzz/corpus/lvm_pv/` and
//! `fuzz/regressions/lvm_pv/` (`vendor-tests/fuzz_regressions.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dibr::fuzz_harness::lvm_pv(data));
