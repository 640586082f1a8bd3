//! Arbitrary bytes as a root filesystem archive unpacked into a scratch tree.
//!
//! The body is `dibr::fuzz_harness::rootfs_unpack`, which the stable test suite
//! also runs on every file of `fuzz/corpus/rootfs_unpack/` and
//! `fuzz/regressions/rootfs_unpack/` (`vendor-tests/fuzz_regressions.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dibr::fuzz_harness::rootfs_unpack(data));
