//! dibr: a rootless disk-image builder.
//!
//! The crate is laid out by pipeline stage: `source` (tar stream or host
//! directory) yields entries, `ext4` writes filesystems in userspace,
//! `output` puts finished files in place atomically; `cli` is the glue.
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
pub mod uuid;
