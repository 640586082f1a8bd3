//! A write-once FAT32 writer for the EFI System Partition.
//!
//! [`write_fat32`] lays out a complete FAT32 volume (boot sector, FSInfo,
//! backups at sector 6, two FATs, directories with 8.3 + VFAT long names,
//! file data in contiguous cluster runs) directly into a byte region of an
//! image file: no mount, no mkfs.fat, no root. The whole volume is planned
//! before a byte is written, so "does not fit" and bad names are reported
//! up front, naming the file at fault.
//!
//! Why not the `fatfs` crate: its only crates.io release (0.3.6) writes
//! LFN entries for `.`/`..` and leaves the FSInfo free count uninitialised;
//! `fsck.fat -n` rejects its output (measured: "Expected a valid '.' entry",
//! "Bad short file name (..)", "Free cluster summary uninitialized"). The
//! fixes are only on its unreleased git master.
//!
//! Output is deterministic: the same entries and [`FatOptions`] give the
//! same bytes (volume id from a seed, all timestamps from one time, the
//! region's free space zeroed).

mod boot_sector;
mod dir;
mod layout;
mod writer;

pub use layout::Layout;
pub use writer::write_fat32;

use std::io;
use std::path::Path;

/// Where a file's content comes from.
#[derive(Clone, Copy, Debug)]
pub enum FatSource<'a> {
    /// A file on the host, read when the volume is written.
    Path(&'a Path),
    /// Bytes in memory.
    Bytes(&'a [u8]),
}

/// What an entry is.
#[derive(Clone, Copy, Debug)]
pub enum FatKind<'a> {
    Dir,
    File(FatSource<'a>),
}

/// One file or directory of the volume. `path` is relative and
/// `/`-separated (`EFI/BOOT/BOOTX64.EFI`); missing parent directories are
/// created implicitly.
#[derive(Clone, Copy, Debug)]
pub struct FatEntry<'a> {
    pub path: &'a str,
    pub kind: FatKind<'a>,
}

impl<'a> FatEntry<'a> {
    pub fn dir(path: &'a str) -> Self {
        FatEntry {
            path,
            kind: FatKind::Dir,
        }
    }
    pub fn file(path: &'a str, src: &'a Path) -> Self {
        FatEntry {
            path,
            kind: FatKind::File(FatSource::Path(src)),
        }
    }
    pub fn bytes(path: &'a str, data: &'a [u8]) -> Self {
        FatEntry {
            path,
            kind: FatKind::File(FatSource::Bytes(data)),
        }
    }
}

/// Volume-wide settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FatOptions {
    /// Volume label, at most 11 characters of the 8.3 set; stored upper-case.
    /// Empty means none (`NO NAME`).
    pub label: String,
    /// Seed the 32-bit volume id (serial number) is derived from.
    pub volume_id_seed: u64,
    /// Unix time used for every timestamp on the volume.
    pub timestamp: i64,
}

impl Default for FatOptions {
    fn default() -> Self {
        FatOptions {
            label: "ESP".into(),
            volume_id_seed: 0,
            timestamp: 315_532_800,
        }
    }
}

impl FatOptions {
    /// The volume id this seed gives.
    pub fn volume_id(&self) -> u32 {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(b"dibr fat32 volume id\0");
        h.update(self.volume_id_seed.to_le_bytes());
        let d = h.finalize();
        u32::from_le_bytes([d[0], d[1], d[2], d[3]])
    }
}

/// What was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FatStats {
    pub layout: Layout,
    pub cluster_bytes: u64,
    pub clusters_used: u32,
    pub clusters_free: u32,
    pub files: u64,
    pub dirs: u64,
    pub data_bytes: u64,
    pub volume_id: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum FatError {
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
    #[error("FAT32 region of {size} bytes is too small: at least {min} bytes are needed")]
    TooSmall { size: u64, min: u64 },
    #[error("FAT32 region of {size} bytes is too large")]
    TooLarge { size: u64 },
    #[error("FAT32 region offset {offset} is not a multiple of 512")]
    Misaligned { offset: u64 },
    #[error("{path}: name invalid for FAT: {reason}")]
    InvalidName { path: String, reason: &'static str },
    #[error("{path}: collides with {other} (FAT names are case-insensitive)")]
    Collision { path: String, other: String },
    #[error("{path}: a parent is a file, not a directory")]
    NotADirectory { path: String },
    #[error("{path}: does not fit: the volume needs {needed} clusters of {cluster_bytes} bytes, it has {available}")]
    DoesNotFit {
        path: String,
        needed: u64,
        available: u32,
        cluster_bytes: u64,
    },
    #[error("{path}: {size} bytes is over the FAT limit of 4 GiB - 1")]
    FileTooLarge { path: String, size: u64 },
    #[error("{path}: directory needs {entries} entries, FAT allows 65536")]
    DirTooLarge { path: String, entries: usize },
    #[error("{path}: source changed size while it was being written")]
    SourceChanged { path: String },
    #[error("volume label {label:?}: {reason}")]
    InvalidLabel { label: String, reason: &'static str },
}
