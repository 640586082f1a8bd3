//! Looking inside finished images without mounting them: `dibr get-kernel`
//! (DIB's `disk-image-get-kernel`, the `baremetal` element's outputs) and
//! `dibr check` (OpenStack's image requirements).
//!
//! `disk` opens raw or qcow2 (`qcow2`) and finds the partitions, `view`
//! mounts the ext4 filesystems in userspace (`crate::ext4::read`), `grub`
//! and `kernel` decide what the boot loader starts, `check` judges the
//! tree.

pub mod check;
pub mod disk;
pub mod grub;
pub mod kernel;
pub mod qcow2;
pub mod view;

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error(transparent)]
    Disk(#[from] disk::DiskError),
    #[error("{}: {volume}: {source}", image.display())]
    Fs {
        image: PathBuf,
        volume: String,
        source: crate::ext4::read::ReadError,
    },
    #[error("{}: no ext4 filesystem found ({found}); dibr reads ext2/3/4 only (xfs, btrfs and LVM are not supported)", image.display())]
    NoExt4 { image: PathBuf, found: String },
    #[error("{}: no ext4 filesystem looks like a root (labelled cloudimg-rootfs, or with /etc): {found}", image.display())]
    NoRoot { image: PathBuf, found: String },
    #[error("{}: resolving {path}: more than 40 symbolic links (a loop?)", image.display())]
    SymlinkLoop { image: PathBuf, path: String },
    #[error("{}: no kernel found: {detail}; is a kernel package (linux-image-*) installed in the image?", image.display())]
    NoKernel { image: PathBuf, detail: String },
    #[error("writing {}: {source}", path.display())]
    Output {
        path: PathBuf,
        source: std::io::Error,
    },
}
