//! v3 on-disk inodes: the 176-byte core, then the data fork and the
//! attribute fork in the literal area ("XFS Algorithms & Data
//! Structures", *On-disk Inode*; `struct xfs_dinode` in the kernel's
//! libxfs/xfs_format.h). Timestamps are the classic 32-bit seconds (no
//! bigtime, so GRUB and older kernels read them).

use super::crc::{be16, be32, be64, set};
use super::geometry::{INODE_SIZE, LITINO};
use crate::tree::Timestamp;

const MAGIC: u16 = 0x494e; // "IN"
const CRC_AT: usize = 100;
pub const CORE: usize = 176;
pub const NULL_AGINO: u32 = u32::MAX;

/// Data fork formats (`xfs_dinode_fmt`).
pub const FMT_DEV: u8 = 0;
pub const FMT_LOCAL: u8 = 1;
pub const FMT_EXTENTS: u8 = 2;

/// `di_flags`: the realtime bitmap inode carries XFS_DIFLAG_NEWRTBM.
pub const DIFLAG_NEWRTBM: u16 = 0x0004;

/// One extent: `len` blocks at logical block `off` and filesystem block
/// `fsb`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    pub off: u64,
    pub fsb: u64,
    pub len: u64,
}

/// The 16-byte packed extent record (`xfs_bmbt_rec`): flag:1,
/// startoff:54, startblock:52, blockcount:21.
pub fn pack_extents(exts: &[Extent]) -> Vec<u8> {
    let mut v = Vec::with_capacity(exts.len() * 16);
    for e in exts {
        let l0 = (e.off << 9) | (e.fsb >> 43);
        let l1 = (e.fsb << 21) | e.len;
        v.extend_from_slice(&l0.to_be_bytes());
        v.extend_from_slice(&l1.to_be_bytes());
    }
    v
}

/// Everything of an inode but its forks' contents.
#[derive(Clone, Debug, Default)]
pub struct Core {
    /// File type and permission bits (`S_IF*` | 0o7777).
    pub mode: u16,
    pub format: u8,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u32,
    pub atime: Timestamp,
    pub mtime: Timestamp,
    pub ctime: Timestamp,
    pub size: u64,
    pub nblocks: u64,
    pub nextents: u32,
    pub flags: u16,
}

fn time(buf: &mut [u8], at: usize, t: Timestamp) {
    let s = t.secs.clamp(i32::MIN as i64, i32::MAX as i64) as i32;
    be32(buf, at, s as u32);
    be32(buf, at + 4, t.nsec);
}

/// Clamp to what a non-bigtime inode holds.
pub fn clamp(t: Timestamp) -> Timestamp {
    if t.secs < i32::MIN as i64 {
        Timestamp::new(i32::MIN as i64, 0)
    } else if t.secs > i32::MAX as i64 {
        Timestamp::new(i32::MAX as i64, 999_999_999)
    } else {
        t
    }
}

/// Encode a used inode. `attr` is the local attribute fork (empty for
/// none); `forkoff` is in 8-byte units (0 without an attribute fork).
pub fn encode(
    out: &mut [u8],
    ino: u64,
    uuid: &[u8; 16],
    c: &Core,
    data: &[u8],
    attr: &[u8],
    forkoff: u8,
) {
    out[..INODE_SIZE].fill(0);
    be16(out, 0, MAGIC);
    be16(out, 2, c.mode);
    out[4] = 3;
    out[5] = c.format;
    be32(out, 8, c.uid);
    be32(out, 12, c.gid);
    be32(out, 16, c.nlink);
    time(out, 32, c.atime);
    time(out, 40, c.mtime);
    time(out, 48, c.ctime);
    be64(out, 56, c.size);
    be64(out, 64, c.nblocks);
    be32(out, 76, c.nextents);
    out[82] = forkoff;
    // Attribute fork format: local when present, "extents" (empty) when
    // not — what mkfs and the kernel write.
    out[83] = if attr.is_empty() {
        FMT_EXTENTS
    } else {
        FMT_LOCAL
    };
    be16(out, 90, c.flags);
    be32(out, 96, NULL_AGINO);
    time(out, 144, c.ctime);
    be64(out, 152, ino);
    out[160..176].copy_from_slice(uuid);
    out[CORE..CORE + data.len()].copy_from_slice(data);
    if !attr.is_empty() {
        let at = CORE + forkoff as usize * 8;
        out[at..at + attr.len()].copy_from_slice(attr);
    }
    set(&mut out[..INODE_SIZE], CRC_AT);
}

/// Encode a free inode of an allocated chunk (mode 0, no forks).
pub fn encode_free(out: &mut [u8], ino: u64, uuid: &[u8; 16]) {
    out[..INODE_SIZE].fill(0);
    be16(out, 0, MAGIC);
    out[4] = 3;
    out[5] = FMT_EXTENTS;
    out[83] = FMT_EXTENTS;
    be32(out, 96, NULL_AGINO);
    be64(out, 152, ino);
    out[160..176].copy_from_slice(uuid);
    set(&mut out[..INODE_SIZE], CRC_AT);
}

/// Bytes of the data fork: the whole literal area without an attribute
/// fork, else up to it.
pub fn data_room(attr_len: usize, dev: bool) -> usize {
    if attr_len == 0 {
        LITINO
    } else if dev {
        8
    } else {
        LITINO - attr_len.next_multiple_of(8)
    }
}

/// `di_forkoff` for an attribute fork of `attr_len` bytes at the end of
/// the literal area; device inodes must put it right after the 4-byte
/// device number (`xfs_dinode_verify_forkoff`).
pub fn forkoff(attr_len: usize, dev: bool) -> u8 {
    if attr_len == 0 {
        0
    } else {
        (data_room(attr_len, dev) / 8) as u8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extent_records_pack_like_xfs_bmbt_rec() {
        let v = pack_extents(&[Extent {
            off: 1,
            fsb: (1 << 43) | 5,
            len: 7,
        }]);
        assert_eq!(u64::from_be_bytes(v[..8].try_into().unwrap()), (1 << 9) | 1);
        assert_eq!(
            u64::from_be_bytes(v[8..].try_into().unwrap()),
            (5 << 21) | 7
        );
    }
}
