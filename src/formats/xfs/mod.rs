//! Userspace XFS writer ("mkfs in userspace"), so DIB layouts that format
//! XFS build rootless and reproducibly.
//!
//! What it writes (see "XFS Algorithms & Data Structures" in the kernel's
//! xfs-documentation for every structure named here): a v5 filesystem
//! (CRCs, ftype) with no optional features — no finobt, sparse inodes,
//! reflink, rmapbt, bigtime or inobtcount — so GRUB 2.06/2.12 and every
//! kernel since 3.16 read it; 4 KiB blocks, 512-byte sectors, 512-byte
//! v3 inodes, AGs as mkfs.xfs chooses on one disk (`geometry.rs`).
//! Each AG: block 0 holds the superblock, AGF, AGI and AGFL sectors;
//! blocks 1–3 the roots of the by-block, by-size and inode btrees; blocks
//! 4–7 the free list. The internal log sits in the middle AG from block
//! 8, written clean (`log.rs`); the first inode chunk (root, realtime
//! bitmap, realtime summary) where `xfs_ialloc_calc_rootino` puts it.
//! File data follows in tree order, contiguous (extents in the inode,
//! split only at AG ends; a sparse file with more holes than the inode's
//! extent list holds is written dense); then the other inode chunks,
//! directory blocks and long symlinks' blocks; the AG's free space is one
//! tail extent plus alignment gaps.
//!
//! Not written: btree-format data forks (a file needs at most 21 extents,
//! fewer beside attributes), attributes outside the inode (shortform
//! only: each value ≤ 255 bytes, ≤ 304 bytes in all), directories over
//! one dabtree level (~250 000 entries), inode numbers beyond 32 bits
//! (filesystems over 2 TiB are refused), timestamps outside 1901–2038 (clamped),
//! quotas, realtime devices.

pub mod alloc;
pub mod btree;
pub mod builder;
pub mod commit;
pub mod crc;
pub mod dahash;
pub mod dir;
pub mod error;
pub mod finish;
pub mod geometry;
pub mod headers;
pub mod inode;
pub mod log;
pub mod xattr;

pub use builder::{Builder, Options, Stats};
pub use error::{Error, Result};
pub use finish::Summary;
