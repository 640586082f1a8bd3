//! Userspace ext4 writer ("mkfs in userspace").
//!
//! Entries stream in through [`Builder::add`]; file data goes straight to
//! its final blocks; [`Builder::finish`] lays out and writes the metadata.
//! Features: has_journal ext_attr dir_index filetype extent 64bit flex_bg
//! meta_bg sparse_super large_file huge_file dir_nlink extra_isize
//! metadata_csum — no resize_inode, so growth to 1 PiB needs no moves.

pub mod builder;
pub mod csum;
pub mod dir;
pub mod dirhash;
pub mod error;
pub mod extent;
pub mod finish;
pub mod groups;
pub mod inode;
pub mod journal;
pub mod layout;
pub mod nodes;
pub mod read;
pub mod superblock;
pub mod verify;
pub mod xattr;

pub use builder::{Builder, IoOptions, Options};
pub use error::{Error, Result};
pub use finish::Summary;
pub use groups::Density;
