//! The FAT32 boot sector (with its BPB), the FSInfo sector, and their
//! backups at sector 6.

use super::layout::{Layout, NUM_FATS};
use crate::le::{put_u16, put_u32, put_u8};

/// Sector of the backup boot sector (and, after it, backup FSInfo).
pub const BACKUP_BOOT_SECTOR: u16 = 6;
/// Sector of the FSInfo structure.
pub const FSINFO_SECTOR: u16 = 1;
/// First cluster of the root directory.
pub const ROOT_CLUSTER: u32 = 2;

/// Everything the boot sector says beyond the layout.
pub struct BootParams<'a> {
    pub layout: &'a Layout,
    /// Sectors before the volume on its disk (the partition's LBA).
    pub hidden_sectors: u32,
    pub volume_id: u32,
    /// 11 bytes, space padded (`NO NAME    ` when there is no label).
    pub label: [u8; 11],
}

/// Sector 0: jump, OEM name, BPB, FAT32 extended BPB, a tiny boot stub that
/// prints nothing and hangs, and the 0x55AA signature.
pub fn boot_sector(p: &BootParams) -> [u8; 512] {
    let l = p.layout;
    let mut s = [0u8; 512];
    s[0..3].copy_from_slice(&[0xEB, 0x58, 0x90]);
    s[3..11].copy_from_slice(b"MSWIN4.1");
    put_u16(&mut s, 11, 512); // bytes per sector
    put_u8(&mut s, 13, l.sectors_per_cluster as u8);
    put_u16(&mut s, 14, l.reserved_sectors as u16);
    put_u8(&mut s, 16, NUM_FATS as u8);
    put_u16(&mut s, 17, 0); // root entries: 0 on FAT32
    put_u16(&mut s, 19, 0); // total sectors (16-bit): 0 on FAT32
    put_u8(&mut s, 21, 0xF8); // media: fixed disk
    put_u16(&mut s, 22, 0); // FAT size (16-bit): 0 on FAT32
    put_u16(&mut s, 24, 32); // sectors per track
    put_u16(&mut s, 26, 64); // heads
    put_u32(&mut s, 28, p.hidden_sectors);
    put_u32(&mut s, 32, l.total_sectors);
    put_u32(&mut s, 36, l.fat_sectors);
    put_u16(&mut s, 40, 0); // ext flags: FAT mirroring on
    put_u16(&mut s, 42, 0); // version 0.0
    put_u32(&mut s, 44, ROOT_CLUSTER);
    put_u16(&mut s, 48, FSINFO_SECTOR);
    put_u16(&mut s, 50, BACKUP_BOOT_SECTOR);
    // 52..64 reserved, zero.
    put_u8(&mut s, 64, 0x80); // drive number
    put_u8(&mut s, 65, 0); // reserved (Windows NT dirty flags): clean
    put_u8(&mut s, 66, 0x29); // extended boot signature
    put_u32(&mut s, 67, p.volume_id);
    s[71..82].copy_from_slice(&p.label);
    s[82..90].copy_from_slice(b"FAT32   ");
    // Boot code at 90: `int 0x18` (no bootable disk, try next) then hang.
    s[90..94].copy_from_slice(&[0xCD, 0x18, 0xEB, 0xFE]);
    s[510] = 0x55;
    s[511] = 0xAA;
    s
}

/// Sector 1: FSInfo with the free cluster count and next-free hint.
pub fn fsinfo_sector(free_clusters: u32, next_free: u32) -> [u8; 512] {
    let mut s = [0u8; 512];
    put_u32(&mut s, 0, 0x4161_5252);
    put_u32(&mut s, 484, 0x6141_7272);
    put_u32(&mut s, 488, free_clusters);
    put_u32(&mut s, 492, next_free);
    put_u32(&mut s, 508, 0xAA55_0000);
    s
}

/// Sector 2: mkfs.fat and Windows put a bare boot signature there (third
/// sector of the boot record); keeping it makes the backup a full copy.
pub fn third_sector() -> [u8; 512] {
    let mut s = [0u8; 512];
    s[510] = 0x55;
    s[511] = 0xAA;
    s
}
