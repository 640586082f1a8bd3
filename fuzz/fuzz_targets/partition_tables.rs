//! Arbitrary bytes as a disk through the MBR/EBR and GPT readers.
//!
//! The body is `dibr::fuzz_harness::partition_tables`, which the stable test suite
//! also runs on every file of `fuzz/corpus/partition_tables/` and
//! `fuzz/regressions/partition_tables/` (`vendor-tests/fuzz_regressions.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dibr::fuzz_harness::partition_tables(data));
