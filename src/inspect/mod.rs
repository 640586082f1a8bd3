//! Looking inside finished images without mounting them: `dibr get-kernel`
//! (DIB's `disk-image-get-kernel`, the `baremetal` element's outputs) and
//! `dibr check` (OpenStack's image requirements).
//!
//! `disk` opens raw or qcow2 (`crate::output::qcow2::read`) and finds the
//! partitions, `view` mounts the ext4 filesystems in userspace
//! (`crate::ext4::read`), `grub` and `kernel` decide what the boot loader
//! starts, `check` judges the tree. `limits` bounds what a hostile image
//! can make them do.

pub mod check;
pub mod disk;
pub mod glance;
pub mod grub;
pub mod kernel;
pub mod kernel_image;
pub mod limits;
pub mod view;

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error(transparent)]
    Disk(#[from] disk::DiskError),
    #[error("{}: the ext4 filesystem cannot be read: {found}", image.display())]
    BadExt4 { image: PathBuf, found: String },
    #[error("{}: no ext4 filesystem found ({found}); dibr reads ext2/3/4 only (xfs, btrfs and LVM are not supported)", image.display())]
    NoExt4 { image: PathBuf, found: String },
    #[error("{}: {volume}: {path}: {source}", image.display())]
    File {
        image: PathBuf,
        volume: String,
        path: String,
        source: crate::ext4::read::ReadError,
    },
    #[error("{}: no ext4 filesystem looks like a root (labelled cloudimg-rootfs, or with /etc): {found}", image.display())]
    NoRoot { image: PathBuf, found: String },
    #[error("{}: resolving {path}: more than {} symbolic links (a loop?)", image.display(), limits::MAX_LINKS)]
    SymlinkLoop { image: PathBuf, path: String },
    #[error("{}: resolving {path}: more than {} path components, symlink targets included", image.display(), limits::MAX_COMPONENTS)]
    PathTooLong { image: PathBuf, path: String },
    #[error("{}: {path}: {} more would pass the limit of {} for {} ({} used so far; every read counts, of hard links too): the image holds more than a system image would", image.display(), limits::bytes(over.wanted), limits::bytes(over.limit), over.what, limits::bytes(over.used))]
    Budget {
        image: PathBuf,
        path: String,
        over: limits::Exhausted,
    },
    #[error("{}: {path}: {} is more than the {} limit for {what}", image.display(), limits::bytes(*size), limits::bytes(*limit))]
    TooLarge {
        image: PathBuf,
        path: String,
        what: &'static str,
        size: u64,
        limit: u64,
    },
    #[error("{}: {path}: {} long but only {} of it is allocated: refused as sparse (more than {} of holes; a kernel or initrd has none)", image.display(), limits::bytes(*size), limits::bytes(*allocated), limits::bytes(limits::HOLE_SLACK))]
    Sparse {
        image: PathBuf,
        path: String,
        size: u64,
        allocated: u64,
    },
    #[error("{}: {cfg}: the boot entry names {count} initrds, more than the limit of {}", image.display(), limits::MAX_INITRDS)]
    TooManyInitrds {
        image: PathBuf,
        cfg: String,
        count: usize,
    },
    #[error("{}: {path}: {source}", image.display())]
    Grub {
        image: PathBuf,
        path: String,
        source: grub::GrubError,
    },
    /// Something several checks rely on could not be read (its error, as
    /// text: each check that needs it fails with it).
    #[error("{what}: {detail}")]
    Fact { what: &'static str, detail: String },
    #[error("{}: no kernel found: {detail}; is a kernel package (linux-image-*) installed in the image?", image.display())]
    NoKernel { image: PathBuf, detail: String },
    #[error("writing {}: {source}", path.display())]
    Output {
        path: PathBuf,
        source: std::io::Error,
    },
}
