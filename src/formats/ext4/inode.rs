//! Inode records (Documentation/filesystems/ext4/inodes.rst), 256 bytes
//! with `i_extra_isize = 32` and the in-inode xattr area after it.

use super::csum;
use super::xattr::IBODY_SPACE;
use crate::le::{get_u16, put_u16, put_u32};
use crate::tree::Timestamp;

/// The file-type bits of `i_mode` (POSIX `st_mode`'s, in 16 bits); the
/// reader and the checker use these too.
pub const S_IFMT: u16 = 0o170000;
pub const S_IFIFO: u16 = 0o010000;
pub const S_IFCHR: u16 = 0o020000;
pub const S_IFDIR: u16 = 0o040000;
pub const S_IFBLK: u16 = 0o060000;
pub const S_IFREG: u16 = 0o100000;
pub const S_IFLNK: u16 = 0o120000;
pub const S_IFSOCK: u16 = 0o140000;

pub const EXT4_INDEX_FL: u32 = 0x1000;
pub const EXT4_EXTENTS_FL: u32 = 0x80000;
pub const EXTRA_ISIZE: u16 = 32;

/// Everything that goes into one inode record.
#[derive(Clone, Debug)]
pub struct InodeRecord {
    pub mode: u16,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub atime: Timestamp,
    pub ctime: Timestamp,
    pub mtime: Timestamp,
    pub crtime: Timestamp,
    pub links: u16,
    /// In 512-byte sectors.
    pub blocks_512: u64,
    pub flags: u32,
    pub i_block: [u8; 60],
    pub file_acl: u64,
    pub ibody_xattrs: Option<[u8; IBODY_SPACE]>,
}

impl Default for InodeRecord {
    fn default() -> Self {
        InodeRecord {
            mode: 0,
            uid: 0,
            gid: 0,
            size: 0,
            atime: Timestamp::default(),
            ctime: Timestamp::default(),
            mtime: Timestamp::default(),
            crtime: Timestamp::default(),
            links: 0,
            blocks_512: 0,
            flags: 0,
            i_block: [0; 60],
            file_acl: 0,
            ibody_xattrs: None,
        }
    }
}

/// `(seconds low 32 bits, extra)`: extra holds 2 epoch bits (bits 32-33 of
/// the seconds, offset so that signed 32-bit values keep their meaning)
/// and 30 bits of nanoseconds (inodes.rst, "Inode Timestamps").
pub fn encode_time(t: Timestamp) -> (u32, u32) {
    let lo = t.secs as i32;
    let epoch = ((t.secs - lo as i64) >> 32) as u32 & 3;
    (lo as u32, epoch | (t.nsec << 2))
}

/// Largest and smallest seconds the 34-bit encoding can represent.
pub const TIME_MIN: i64 = i32::MIN as i64;
pub const TIME_MAX: i64 = i32::MAX as i64 + (3i64 << 32);

/// Encode `rec` as inode number `ino`, with its checksum.
pub fn encode(rec: &InodeRecord, ino: u32, fs_seed: u32) -> [u8; 256] {
    let mut b = [0u8; 256];
    put_u16(&mut b, 0x00, rec.mode); // i_mode
    put_u16(&mut b, 0x02, rec.uid as u16); // i_uid
    put_u32(&mut b, 0x04, rec.size as u32); // i_size_lo
    let (a, ax) = encode_time(rec.atime);
    let (c, cx) = encode_time(rec.ctime);
    let (m, mx) = encode_time(rec.mtime);
    let (cr, crx) = encode_time(rec.crtime);
    put_u32(&mut b, 0x08, a); // i_atime
    put_u32(&mut b, 0x0C, c); // i_ctime
    put_u32(&mut b, 0x10, m); // i_mtime
    put_u16(&mut b, 0x18, rec.gid as u16); // i_gid
    put_u16(&mut b, 0x1A, rec.links); // i_links_count
    put_u32(&mut b, 0x1C, rec.blocks_512 as u32); // i_blocks_lo
    put_u32(&mut b, 0x20, rec.flags); // i_flags
    b[0x28..0x28 + 60].copy_from_slice(&rec.i_block); // i_block
    put_u32(&mut b, 0x64, 0); // i_generation
    put_u32(&mut b, 0x68, rec.file_acl as u32); // i_file_acl_lo
    put_u32(&mut b, 0x6C, (rec.size >> 32) as u32); // i_size_high
    put_u16(&mut b, 0x74, (rec.blocks_512 >> 32) as u16); // l_i_blocks_high
    put_u16(&mut b, 0x76, (rec.file_acl >> 32) as u16); // l_i_file_acl_high
    put_u16(&mut b, 0x78, (rec.uid >> 16) as u16); // l_i_uid_high
    put_u16(&mut b, 0x7A, (rec.gid >> 16) as u16); // l_i_gid_high
    put_u16(&mut b, 0x80, EXTRA_ISIZE); // i_extra_isize
    put_u32(&mut b, 0x84, cx); // i_ctime_extra
    put_u32(&mut b, 0x88, mx); // i_mtime_extra
    put_u32(&mut b, 0x8C, ax); // i_atime_extra
    put_u32(&mut b, 0x90, cr); // i_crtime
    put_u32(&mut b, 0x94, crx); // i_crtime_extra
    if let Some(x) = &rec.ibody_xattrs {
        b[128 + EXTRA_ISIZE as usize..].copy_from_slice(x);
    }
    seal(&mut b, ino, fs_seed);
    b
}

/// Inode checksum: crc32c(inode seed, inode with both checksum fields
/// zeroed); low half at 0x7C, high half at 0x82.
pub fn seal(b: &mut [u8; 256], ino: u32, fs_seed: u32) {
    put_u16(b, 0x7C, 0);
    put_u16(b, 0x82, 0);
    let gen = u32::from_le_bytes([b[0x64], b[0x65], b[0x66], b[0x67]]);
    let c = csum::raw(csum::inode_seed(fs_seed, ino, gen), &b[..]);
    put_u16(b, 0x7C, c as u16);
    put_u16(b, 0x82, (c >> 16) as u16);
    debug_assert_eq!(get_u16(b, 0x80), EXTRA_ISIZE);
}

/// Device number in `i_block` as the kernel's `ext4_set_inode`: the old
/// 16-bit encoding when it fits, else the new one in the second word.
pub fn encode_rdev(major: u32, minor: u32) -> [u8; 60] {
    let mut ib = [0u8; 60];
    if major < 256 && minor < 256 {
        put_u32(&mut ib, 0, (major << 8) | minor);
    } else {
        let v = (minor & 0xff) | ((major & 0xfff) << 8) | ((minor & !0xff) << 12);
        put_u32(&mut ib, 4, v);
    }
    ib
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        // 1965-01-01: negative, epoch bits 0.
        let (lo, x) = encode_time(Timestamp::new(-157766400, 123456789));
        assert_eq!(lo as i32, -157766400);
        assert_eq!(x & 3, 0);
        assert_eq!(x >> 2, 123456789);
        // 2100-01-01: needs epoch 1.
        let (lo, x) = encode_time(Timestamp::new(4102444800, 500_000_000));
        assert_eq!((lo as i32 as i64) + (((x & 3) as i64) << 32), 4102444800);
    }
}
