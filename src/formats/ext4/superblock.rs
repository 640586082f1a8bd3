//! Superblock and group descriptors (Documentation/filesystems/ext4/super.rst,
//! group_descr.rst).

use super::csum;
use crate::le::{put_u16, put_u32, put_u64};

pub const EXT4_MAGIC: u16 = 0xEF53;

// Feature bits (super.rst, s_feature_*).
pub const COMPAT_HAS_JOURNAL: u32 = 0x4;
pub const COMPAT_EXT_ATTR: u32 = 0x8;
pub const COMPAT_DIR_INDEX: u32 = 0x20;
pub const INCOMPAT_FILETYPE: u32 = 0x2;
pub const INCOMPAT_META_BG: u32 = 0x10;
pub const INCOMPAT_EXTENTS: u32 = 0x40;
pub const INCOMPAT_64BIT: u32 = 0x80;
pub const INCOMPAT_FLEX_BG: u32 = 0x200;
pub const RO_COMPAT_SPARSE_SUPER: u32 = 0x1;
pub const RO_COMPAT_LARGE_FILE: u32 = 0x2;
pub const RO_COMPAT_HUGE_FILE: u32 = 0x8;
pub const RO_COMPAT_DIR_NLINK: u32 = 0x20;
pub const RO_COMPAT_EXTRA_ISIZE: u32 = 0x40;
pub const RO_COMPAT_METADATA_CSUM: u32 = 0x400;

pub const FEATURE_COMPAT: u32 = COMPAT_HAS_JOURNAL | COMPAT_EXT_ATTR | COMPAT_DIR_INDEX;
pub const FEATURE_INCOMPAT: u32 =
    INCOMPAT_FILETYPE | INCOMPAT_META_BG | INCOMPAT_EXTENTS | INCOMPAT_64BIT | INCOMPAT_FLEX_BG;
pub const FEATURE_RO_COMPAT: u32 = RO_COMPAT_SPARSE_SUPER
    | RO_COMPAT_LARGE_FILE
    | RO_COMPAT_HUGE_FILE
    | RO_COMPAT_DIR_NLINK
    | RO_COMPAT_EXTRA_ISIZE
    | RO_COMPAT_METADATA_CSUM;

/// s_flags: EXT2_FLAGS_UNSIGNED_HASH — names hash with unsigned chars on
/// every architecture.
pub const FLAGS_UNSIGNED_HASH: u32 = 0x2;

/// Values that go into the superblock.
#[derive(Clone, Debug, Default)]
pub struct SuperParams {
    pub inodes_count: u32,
    pub blocks_count: u64,
    pub r_blocks_count: u64,
    pub free_blocks: u64,
    pub free_inodes: u32,
    pub inodes_per_group: u32,
    pub time: u32,
    pub uuid: [u8; 16],
    pub label: [u8; 16],
    pub hash_seed: [u8; 16],
    pub jnl_blocks: [u32; 17],
    pub overhead_clusters: u32,
}

/// Encode the 1024-byte superblock as stored in group `group`.
pub fn encode(p: &SuperParams, group: u16) -> [u8; 1024] {
    let mut s = [0u8; 1024];
    put_u32(&mut s, 0x00, p.inodes_count); // s_inodes_count
    put_u32(&mut s, 0x04, p.blocks_count as u32); // s_blocks_count_lo
    put_u32(&mut s, 0x08, p.r_blocks_count as u32); // s_r_blocks_count_lo
    put_u32(&mut s, 0x0C, p.free_blocks as u32); // s_free_blocks_count_lo
    put_u32(&mut s, 0x10, p.free_inodes); // s_free_inodes_count
    put_u32(&mut s, 0x14, 0); // s_first_data_block
    put_u32(&mut s, 0x18, 2); // s_log_block_size: 1024 << 2
    put_u32(&mut s, 0x1C, 2); // s_log_cluster_size
    put_u32(&mut s, 0x20, super::layout::BLOCKS_PER_GROUP as u32); // s_blocks_per_group
    put_u32(&mut s, 0x24, super::layout::BLOCKS_PER_GROUP as u32); // s_clusters_per_group
    put_u32(&mut s, 0x28, p.inodes_per_group); // s_inodes_per_group
    put_u32(&mut s, 0x2C, 0); // s_mtime
    put_u32(&mut s, 0x30, p.time); // s_wtime
    put_u16(&mut s, 0x34, 0); // s_mnt_count
    put_u16(&mut s, 0x36, 0xFFFF); // s_max_mnt_count: -1, no forced checks
    put_u16(&mut s, 0x38, EXT4_MAGIC); // s_magic
    put_u16(&mut s, 0x3A, 1); // s_state: cleanly unmounted
    put_u16(&mut s, 0x3C, 1); // s_errors: continue
    put_u32(&mut s, 0x40, p.time); // s_lastcheck
    put_u32(&mut s, 0x4C, 1); // s_rev_level: dynamic
    put_u32(&mut s, 0x54, 11); // s_first_ino
    put_u16(&mut s, 0x58, super::layout::INODE_SIZE as u16); // s_inode_size
    put_u16(&mut s, 0x5A, group); // s_block_group_nr
    put_u32(&mut s, 0x5C, FEATURE_COMPAT); // s_feature_compat
    put_u32(&mut s, 0x60, FEATURE_INCOMPAT); // s_feature_incompat
    put_u32(&mut s, 0x64, FEATURE_RO_COMPAT); // s_feature_ro_compat
    s[0x68..0x78].copy_from_slice(&p.uuid); // s_uuid
    s[0x78..0x88].copy_from_slice(&p.label); // s_volume_name
    put_u16(&mut s, 0xCE, 0); // s_reserved_gdt_blocks: none with meta_bg
    put_u32(&mut s, 0xE0, 8); // s_journal_inum
    s[0xEC..0xFC].copy_from_slice(&p.hash_seed); // s_hash_seed
    s[0xFC] = 1; // s_def_hash_version: half_md4
    s[0xFD] = 1; // s_jnl_backup_type: EXT3_JNL_BACKUP_BLOCKS
    put_u16(&mut s, 0xFE, super::layout::DESC_SIZE as u16); // s_desc_size
    put_u32(&mut s, 0x100, 0x0C); // s_default_mount_opts: user_xattr, acl
    put_u32(&mut s, 0x104, 0); // s_first_meta_bg
    put_u32(&mut s, 0x108, p.time); // s_mkfs_time
    for (i, w) in p.jnl_blocks.iter().enumerate() {
        put_u32(&mut s, 0x10C + 4 * i, *w); // s_jnl_blocks
    }
    put_u32(&mut s, 0x150, (p.blocks_count >> 32) as u32); // s_blocks_count_hi
    put_u32(&mut s, 0x154, (p.r_blocks_count >> 32) as u32); // s_r_blocks_count_hi
    put_u32(&mut s, 0x158, (p.free_blocks >> 32) as u32); // s_free_blocks_count_hi
    put_u16(&mut s, 0x15C, 32); // s_min_extra_isize
    put_u16(&mut s, 0x15E, 32); // s_want_extra_isize
    put_u32(&mut s, 0x160, FLAGS_UNSIGNED_HASH); // s_flags
    s[0x174] = 4; // s_log_groups_per_flex: 16, as mke2fs
    s[0x175] = 1; // s_checksum_type: crc32c
    put_u64(&mut s, 0x178, 0); // s_kbytes_written
    put_u32(&mut s, 0x248, p.overhead_clusters); // s_overhead_clusters
    let c = csum::raw(!0, &s[..0x3FC]);
    put_u32(&mut s, 0x3FC, c); // s_checksum
    s
}

/// One group's descriptor contents.
#[derive(Clone, Debug, Default)]
pub struct GroupDesc {
    pub block_bitmap: u64,
    pub inode_bitmap: u64,
    pub inode_table: u64,
    pub free_blocks: u32,
    pub free_inodes: u32,
    pub used_dirs: u32,
    pub flags: u16,
    pub block_bitmap_csum: u32,
    pub inode_bitmap_csum: u32,
    pub itable_unused: u32,
}

pub const BG_INODE_UNINIT: u16 = 0x1;
pub const BG_INODE_ZEROED: u16 = 0x4;

/// Encode a 64-byte descriptor with its checksum (low 16 bits of
/// crc32c(fs_seed, le32 group, desc with bg_checksum zeroed)).
pub fn encode_desc(d: &GroupDesc, group: u32, fs_seed: u32) -> [u8; 64] {
    let mut b = [0u8; 64];
    put_u32(&mut b, 0x00, d.block_bitmap as u32); // bg_block_bitmap_lo
    put_u32(&mut b, 0x04, d.inode_bitmap as u32); // bg_inode_bitmap_lo
    put_u32(&mut b, 0x08, d.inode_table as u32); // bg_inode_table_lo
    put_u16(&mut b, 0x0C, d.free_blocks as u16); // bg_free_blocks_count_lo
    put_u16(&mut b, 0x0E, d.free_inodes as u16); // bg_free_inodes_count_lo
    put_u16(&mut b, 0x10, d.used_dirs as u16); // bg_used_dirs_count_lo
    put_u16(&mut b, 0x12, d.flags); // bg_flags
    put_u16(&mut b, 0x18, d.block_bitmap_csum as u16); // bg_block_bitmap_csum_lo
    put_u16(&mut b, 0x1A, d.inode_bitmap_csum as u16); // bg_inode_bitmap_csum_lo
    put_u16(&mut b, 0x1C, d.itable_unused as u16); // bg_itable_unused_lo
    put_u32(&mut b, 0x20, (d.block_bitmap >> 32) as u32); // bg_block_bitmap_hi
    put_u32(&mut b, 0x24, (d.inode_bitmap >> 32) as u32); // bg_inode_bitmap_hi
    put_u32(&mut b, 0x28, (d.inode_table >> 32) as u32); // bg_inode_table_hi
    put_u16(&mut b, 0x2C, (d.free_blocks >> 16) as u16); // bg_free_blocks_count_hi
    put_u16(&mut b, 0x2E, (d.free_inodes >> 16) as u16); // bg_free_inodes_count_hi
    put_u16(&mut b, 0x30, (d.used_dirs >> 16) as u16); // bg_used_dirs_count_hi
    put_u16(&mut b, 0x32, (d.itable_unused >> 16) as u16); // bg_itable_unused_hi
    put_u16(&mut b, 0x38, (d.block_bitmap_csum >> 16) as u16); // bg_block_bitmap_csum_hi
    put_u16(&mut b, 0x3A, (d.inode_bitmap_csum >> 16) as u16); // bg_inode_bitmap_csum_hi
    let c = csum::raw(csum::raw(fs_seed, &group.to_le_bytes()), &b);
    put_u16(&mut b, 0x1E, c as u16); // bg_checksum
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_pinned() {
        let p = SuperParams {
            blocks_count: 0x1_0000_0002,
            ..Default::default()
        };
        let s = encode(&p, 3);
        assert_eq!(crate::le::get_u16(&s, 0x38), 0xEF53);
        assert_eq!(crate::le::get_u32(&s, 0x04), 2);
        assert_eq!(crate::le::get_u32(&s, 0x150), 1);
        assert_eq!(crate::le::get_u16(&s, 0x5A), 3);
        assert_eq!(csum::raw(!0, &s[..0x3FC]), crate::le::get_u32(&s, 0x3FC));
    }

    /// Every field of a 64-byte descriptor at the offset of
    /// Documentation/filesystems/ext4/group_descr.rst, each value with
    /// distinct high and low halves so a swapped or misplaced half shows;
    /// then bg_checksum: crc32c(fs seed, le32 group, descriptor with the
    /// checksum zero), low 16 bits.
    #[test]
    fn descriptor_offsets_pinned() {
        use crate::le::{get_u16, get_u32};
        let d = GroupDesc {
            block_bitmap: 0x0000_0011_2222_2221,
            inode_bitmap: 0x0000_0033_4444_4443,
            inode_table: 0x0000_0055_6666_6665,
            free_blocks: 0x0007_0008,
            free_inodes: 0x0009_000A,
            used_dirs: 0x000B_000C,
            flags: BG_INODE_UNINIT | BG_INODE_ZEROED,
            block_bitmap_csum: 0x0D0D_0E0E,
            inode_bitmap_csum: 0x0F0F_1010,
            itable_unused: 0x0011_0012,
        };
        let b = encode_desc(&d, 7, 0x1234_5678);
        let u32s = [
            (0x00, 0x2222_2221), // bg_block_bitmap_lo
            (0x04, 0x4444_4443), // bg_inode_bitmap_lo
            (0x08, 0x6666_6665), // bg_inode_table_lo
            (0x20, 0x11),        // bg_block_bitmap_hi
            (0x24, 0x33),        // bg_inode_bitmap_hi
            (0x28, 0x55),        // bg_inode_table_hi
        ];
        for (off, want) in u32s {
            assert_eq!(get_u32(&b, off), want, "u32 at {off:#x}");
        }
        let u16s = [
            (0x0C, 0x0008), // bg_free_blocks_count_lo
            (0x0E, 0x000A), // bg_free_inodes_count_lo
            (0x10, 0x000C), // bg_used_dirs_count_lo
            (0x12, 0x0005), // bg_flags
            (0x18, 0x0E0E), // bg_block_bitmap_csum_lo
            (0x1A, 0x1010), // bg_inode_bitmap_csum_lo
            (0x1C, 0x0012), // bg_itable_unused_lo
            (0x2C, 0x0007), // bg_free_blocks_count_hi
            (0x2E, 0x0009), // bg_free_inodes_count_hi
            (0x30, 0x000B), // bg_used_dirs_count_hi
            (0x32, 0x0011), // bg_itable_unused_hi
            (0x38, 0x0D0D), // bg_block_bitmap_csum_hi
            (0x3A, 0x0F0F), // bg_inode_bitmap_csum_hi
        ];
        for (off, want) in u16s {
            assert_eq!(get_u16(&b, off), want, "u16 at {off:#x}");
        }
        // bg_exclude_bitmap and the reserved word stay zero.
        assert!(b[0x14..0x18].iter().all(|&x| x == 0));
        assert!(b[0x34..0x38].iter().all(|&x| x == 0));
        assert!(b[0x3C..0x40].iter().all(|&x| x == 0));
        let mut z = b;
        z[0x1E..0x20].fill(0);
        let c = csum::raw(csum::raw(0x1234_5678, &7u32.to_le_bytes()), &z);
        assert_eq!(get_u16(&b, 0x1E), c as u16, "bg_checksum");
    }
}
