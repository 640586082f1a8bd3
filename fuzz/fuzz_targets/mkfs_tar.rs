//! Arbitrary bytes as a tar archive through the ext4 writer; finished
//! images must pass `ext4::verify`.
//!
//! The body is `dibr::fuzz_harness::mkfs_tar`, which the stable test suite
//! also runs on every file of `fuzz/corpus/mkfs_tar/` and
//! `fuzz/regressions/mkfs_tar/` (`vendor-tests/fuzz_regressions.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dibr::fuzz_harness::mkfs_tar(data));
