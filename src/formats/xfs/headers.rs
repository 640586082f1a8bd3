//! The per-AG header sectors: superblock, AGF (free space), AGI (inodes),
//! AGFL (free list) ("XFS Algorithms & Data Structures", *Allocation
//! Groups*; `struct xfs_dsb`, `xfs_agf`, `xfs_agi`, `xfs_agfl` in the
//! kernel's libxfs/xfs_format.h). Feature bits are the v5 baseline that
//! GRUB's xfs reader knows: CRCs, ftype, no finobt, sparse inodes,
//! reflink, rmapbt, bigtime or inobtcount.

use super::crc::{be16, be32, be64, set};
use super::geometry::{
    Geometry, AGFL_COUNT, AGFL_FIRST, BLOCK, BNO_ROOT, CNT_ROOT, INODE_SIZE, INOPB_LOG, INO_ALIGN,
    INO_ROOT, SECT,
};
use super::inode::NULL_AGINO;

const S: usize = SECT as usize;
/// `sb_versionnum` of mkfs's v5 filesystems: version 5 with the NLINK,
/// ALIGN, LOGV2, EXTFLG, DIRV2 and MOREBITS bits.
const VERSIONNUM: u16 = 0xb4a5;
/// `sb_features2`: LAZYSBCOUNT, ATTR2, PROJID32, CRC.
const FEATURES2: u32 = 0x18a;
/// `sb_features_incompat`: FTYPE.
const INCOMPAT_FTYPE: u32 = 1;
const AGFL_SIZE: usize = (S - 36) / 4;

/// Whole-filesystem figures for the superblock.
pub struct SbInfo<'a> {
    pub geo: &'a Geometry,
    pub uuid: [u8; 16],
    pub label: [u8; 12],
    pub icount: u64,
    pub ifree: u64,
    pub fdblocks: u64,
}

pub fn superblock(s: &SbInfo) -> Vec<u8> {
    let g = s.geo;
    let mut b = vec![0u8; S];
    be32(&mut b, 0, 0x5846_5342); // "XFSB"
    be32(&mut b, 4, BLOCK as u32);
    be64(&mut b, 8, g.dblocks);
    b[32..48].copy_from_slice(&s.uuid);
    be64(&mut b, 48, g.fsb(g.log_ag, g.log_agbno));
    let root = g.rootino();
    be64(&mut b, 56, root);
    be64(&mut b, 64, root + 1);
    be64(&mut b, 72, root + 2);
    be32(&mut b, 80, 1); // rextsize
    be32(&mut b, 84, g.agblocks as u32);
    be32(&mut b, 88, g.agcount);
    be32(&mut b, 96, g.logblocks as u32);
    be16(&mut b, 100, VERSIONNUM);
    be16(&mut b, 102, SECT as u16);
    be16(&mut b, 104, INODE_SIZE as u16);
    be16(&mut b, 106, 1 << INOPB_LOG);
    b[108..120].copy_from_slice(&s.label);
    b[120] = 12; // blocklog
    b[121] = 9; // sectlog
    b[122] = 9; // inodelog
    b[123] = INOPB_LOG as u8;
    b[124] = g.agblklog as u8;
    b[127] = 25; // imax_pct
    be64(&mut b, 128, s.icount);
    be64(&mut b, 136, s.ifree);
    be64(&mut b, 144, s.fdblocks);
    be32(&mut b, 180, INO_ALIGN as u32);
    be32(&mut b, 196, 1); // logsunit
    be32(&mut b, 200, FEATURES2);
    be32(&mut b, 204, FEATURES2);
    be32(&mut b, 216, INCOMPAT_FTYPE);
    set(&mut b, 224);
    b
}

/// Free space of one AG, for its AGF.
pub struct AgfInfo {
    pub levels: [u32; 2],
    pub freeblks: u32,
    pub longest: u32,
    pub btreeblks: u32,
}

pub fn agf(g: &Geometry, uuid: &[u8; 16], ag: u32, a: &AgfInfo) -> Vec<u8> {
    let mut b = vec![0u8; S];
    be32(&mut b, 0, 0x5841_4746); // "XAGF"
    be32(&mut b, 4, 1);
    be32(&mut b, 8, ag);
    be32(&mut b, 12, g.ag_len(ag) as u32);
    be32(&mut b, 16, BNO_ROOT);
    be32(&mut b, 20, CNT_ROOT);
    be32(&mut b, 28, a.levels[0]);
    be32(&mut b, 32, a.levels[1]);
    be32(&mut b, 40, 0); // flfirst
    be32(&mut b, 44, AGFL_COUNT - 1); // fllast
    be32(&mut b, 48, AGFL_COUNT);
    be32(&mut b, 52, a.freeblks);
    be32(&mut b, 56, a.longest);
    be32(&mut b, 60, a.btreeblks);
    b[64..80].copy_from_slice(uuid);
    set(&mut b, 216);
    b
}

/// Inodes of one AG, for its AGI.
pub struct AgiInfo {
    pub count: u32,
    pub level: u32,
    pub freecount: u32,
    pub newino: u32,
}

pub fn agi(g: &Geometry, uuid: &[u8; 16], ag: u32, a: &AgiInfo) -> Vec<u8> {
    let mut b = vec![0u8; S];
    be32(&mut b, 0, 0x5841_4749); // "XAGI"
    be32(&mut b, 4, 1);
    be32(&mut b, 8, ag);
    be32(&mut b, 12, g.ag_len(ag) as u32);
    be32(&mut b, 16, a.count);
    be32(&mut b, 20, INO_ROOT);
    be32(&mut b, 24, a.level);
    be32(&mut b, 28, a.freecount);
    be32(&mut b, 32, a.newino);
    be32(&mut b, 36, NULL_AGINO);
    b[40..296].fill(0xff);
    b[296..312].copy_from_slice(uuid);
    set(&mut b, 312);
    b
}

/// The free list: the four blocks after the btree roots, as mkfs keeps
/// them for the first btree splits.
pub fn agfl(uuid: &[u8; 16], ag: u32) -> Vec<u8> {
    let mut b = vec![0u8; S];
    be32(&mut b, 0, 0x5841_464c); // "XAFL"
    be32(&mut b, 4, ag);
    b[8..24].copy_from_slice(uuid);
    b[36..].fill(0xff);
    for i in 0..AGFL_COUNT as usize {
        be32(&mut b, 36 + 4 * i, AGFL_FIRST + i as u32);
    }
    debug_assert!(AGFL_COUNT as usize <= AGFL_SIZE);
    set(&mut b, 32);
    b
}
