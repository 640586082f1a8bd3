//! dibr: a rootless disk-image builder.
//!
//! Two tiers, one folder each for the bottom one:
//! - `src/formats/`: formats and writers, driven by typed options and never
//!   by the environment: `source`/`tree` (the entry stream from a tar or a
//!   directory), `tarstream` (tar reading and writing), `ext4`, `fat`,
//!   `disk` (partition tables, DIB's block-device YAML), `boot` (GRUB and
//!   EFI pieces), `output` (qcow2 written and read, vhd, cpio, atomic
//!   files, output sets), `rootfs` (root tarballs and OCI images into a
//!   tree), `image_io` (random access to image bytes), and the leaves
//!   `le`, `uuid`, `units`. Re-exported here, so `dibr::ext4` names it.
//! - Pipeline stages above them: `cli` (the command line) with `settings`
//!   (the environment, read once), `build` (the disk-image-create
//!   pipeline), `elements`, `sandbox`, `capture`, `assemble`, and `inspect`
//!   beside them. Settings flow down as option structs.
#![deny(unsafe_code)]

pub mod formats;
pub use formats::{
    boot, disk, ext4, fat, image_io, iso, le, lvm, output, rootfs, source, tarstream, tree, units,
    uuid, xfs,
};

pub mod assemble;
pub mod build;
pub mod capture;
pub mod cli;
pub mod console;
pub mod elements;
#[doc(hidden)]
pub mod fuzz_harness;
pub mod inspect;
pub mod progress;
pub mod sandbox;
pub mod settings;
#[cfg(test)]
mod test_rng;
pub mod vm;
