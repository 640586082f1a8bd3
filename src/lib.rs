//! dibr: a rootless disk-image builder.
//!
//! The crate is laid out by pipeline stage: `tarstream` reads the captured tree,
//! `ext4` writes filesystems in userspace.
#![deny(unsafe_code)]

pub mod ext4;
pub mod tarstream;
pub mod tree;
