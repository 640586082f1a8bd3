//! Arbitrary bytes as a sparse raw disk through dibr's qcow2 (zlib, zstd,
//! version 2), vhd and vmdk writers; the qcow2 files read back equal.
//!
//! The body is `dibr::fuzz_harness::output_writers`, which the stable test suite
//! also runs on every file of `fuzz/corpus/output_writers/` and
//! `fuzz/regressions/output_writers/` (`vendor-tests/fuzz_regressions.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dibr::fuzz_harness::output_writers(data));
