//! The bodies of the cargo-fuzz targets in `fuzz/fuzz_targets/`, here so
//! the default test suite (stable Rust, no cargo-fuzz) runs the same code
//! on every checked-in input: `vendor-tests/fuzz_regressions.rs` feeds each
//! file of `fuzz/corpus/<target>/` (seed inputs) and
//! `fuzz/regressions/<target>/` (past crashes) to [`TARGETS`].
//!
//! Contract of every function: any input is fine; returning is a pass, a
//! panic is a bug (a crash, or a property the target checks failing).
//! Not part of dibr's API.

mod images;
mod metadata;
mod outputs;
mod tar;

pub use images::{block_device_yaml, inspect_image, lvm_pv, partition_tables};
pub use metadata::element_metadata;
pub use outputs::{describe_disk, output_writers, write_raw_disk};
pub use tar::{mkfs_tar, rootfs_unpack, tar_reader};

/// A fuzz body: returns on any input, panics on a bug.
pub type Body = fn(&[u8]);

/// Every fuzz target by its `fuzz/Cargo.toml` `[[bin]]` name.
pub const TARGETS: &[(&str, Body)] = &[
    ("block_device_yaml", block_device_yaml),
    ("element_metadata", element_metadata),
    ("inspect_image", inspect_image),
    ("lvm_pv", lvm_pv),
    ("mkfs_tar", mkfs_tar),
    ("output_writers", output_writers),
    ("partition_tables", partition_tables),
    ("rootfs_unpack", rootfs_unpack),
    ("tar_reader", tar_reader),
];

/// A fresh scratch path under the temp dir, distinct per process and call
/// (the regression test runs targets on several threads).
fn scratch_path(tag: &str) -> std::path::PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("dibr-fuzz-{tag}-{}-{n}", std::process::id()))
}
