//! dibr: a rootless disk-image builder.
//!
//! Two tiers (issue 12; the folders are not regrouped into them yet):
//! - Formats and writers at the bottom, driven by typed options and never
//!   by the environment: `source`/`tree` (the entry stream from a tar or a
//!   directory), `tarstream` (tar reading), `ext4`, `fat`, `disk`
//!   (partition tables, DIB's block-device YAML), `boot` (GRUB and EFI
//!   pieces), `output` (qcow2, vhd, cpio, atomic files), `rootfs`, and the
//!   leaves `le`, `uuid`, `units`.
//! - Pipeline stages above them: `cli` (the command line) with `settings`
//!   (the environment, read once), `build` (the disk-image-create
//!   pipeline), `elements`, `sandbox`, `capture`, `assemble`, and `inspect`
//!   beside them. Settings flow down as option structs.
#![deny(unsafe_code)]

pub mod assemble;
pub mod boot;
pub mod build;
pub mod capture;
pub mod cli;
pub mod disk;
pub mod elements;
pub mod ext4;
pub mod fat;
#[doc(hidden)]
pub mod fuzz_harness;
pub mod inspect;
pub mod le;
pub mod output;
pub mod progress;
pub mod rootfs;
pub mod sandbox;
pub mod settings;
pub mod source;
pub mod tarstream;
pub mod tree;
pub mod units;
pub mod uuid;
