//! Shared helpers for the vendor tests: they judge `dibr mkfs` output with
//! the real tools (e2fsck, dumpe2fs, debugfs, resize2fs, the kernel through
//! a loop mount, getfattr/getfacl, GNU tar).
//!
//! Every way of running the mkfs under test goes through [`mkfs_argv`]; the
//! environment variable `DIBR_TEST_MKFS=mke2fs` swaps in a stand-in built on
//! `mke2fs -d` so the harness itself can be validated (and seen to fail on
//! what mke2fs gets wrong: whole-second timestamps, tar xattrs, debris).
//!
//! One file a concern (below); everything is re-exported here, so a test
//! says `use common::*`. `build` and `vm` (the rootless builds and their
//! boots) both stand on `user` (the CI user), not on each other.

#![allow(dead_code)]

mod commands;
mod e2fs;
mod fixtures;
mod host;
mod loop_mount;
mod manifest;
mod under_test;

pub mod build;
pub mod glance;
pub mod leak;
pub mod squash;
pub mod user;
pub mod vm;

// Each test binary uses some of these, none all of them.
#[allow(unused_imports)]
pub use commands::*;
#[allow(unused_imports)]
pub use e2fs::*;
#[allow(unused_imports)]
pub use fixtures::*;
#[allow(unused_imports)]
pub use host::*;
#[allow(unused_imports)]
pub use loop_mount::*;
#[allow(unused_imports)]
pub use manifest::*;
#[allow(unused_imports)]
pub use under_test::*;
