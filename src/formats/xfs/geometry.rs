//! Filesystem geometry: how many allocation groups (AGs), how large, where
//! the log and the root inode go, and how block and inode numbers encode
//! their AG ("XFS Algorithms & Data Structures", *Allocation Groups*;
//! xfsprogs mkfs/xfs_mkfs.c `calc_default_ag_geometry`; the kernel's
//! `xfs_ialloc_calc_rootino` for where xfs_repair expects the root).

/// Filesystem block size (mkfs's default).
pub const BLOCK: u64 = 4096;
/// Sector size: the AG headers are one sector each.
pub const SECT: u64 = 512;
/// v3 inode size (mkfs's default for v5 filesystems).
pub const INODE_SIZE: usize = 512;
/// Inodes per block, as a log2.
pub const INOPB_LOG: u32 = 3;
/// Inodes per chunk (the inobt record's reach) and blocks per chunk.
pub const CHUNK_INODES: u64 = 64;
pub const CHUNK_BLOCKS: u64 = 8;
/// `sb_inoalignmt`: chunks start on multiples of this many blocks (16 KiB,
/// mkfs's value for 512-byte inodes).
pub const INO_ALIGN: u64 = 4;
/// AG block 0 holds the superblock, AGF, AGI and AGFL sectors; blocks 1,
/// 2 and 3 the roots of the by-block and by-size free-space btrees and the
/// inode btree; blocks 4..8 the four blocks on the AG free list.
pub const BNO_ROOT: u32 = 1;
pub const CNT_ROOT: u32 = 2;
pub const INO_ROOT: u32 = 3;
pub const AGFL_FIRST: u32 = 4;
pub const AGFL_COUNT: u32 = 4;
/// First block after the fixed headers.
pub const FIRST_FREE: u64 = 8;
/// The inode's literal area (after the 176-byte v3 core).
pub const LITINO: usize = INODE_SIZE - 176;
/// mkfs's smallest AG (16 MiB) and its log for filesystems of 300 MiB
/// and more (64 MiB); smaller filesystems get xfsprogs' floor,
/// XFS_MIN_LOG_BYTES (10 MiB).
const MIN_AG_BLOCKS: u64 = (16 << 20) / BLOCK;
const BIG_LOG_BLOCKS: u64 = (64 << 20) / BLOCK;
const SMALL_LOG_BLOCKS: u64 = (10 << 20) / BLOCK;
const MAX_AG_BLOCKS: u64 = (1 << 40) / BLOCK;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub dblocks: u64,
    pub agblocks: u64,
    pub agcount: u32,
    pub agblklog: u32,
    pub logblocks: u64,
    /// The AG holding the internal log (the middle one, as mkfs does) and
    /// the log's first block in it.
    pub log_ag: u32,
    pub log_agbno: u64,
    /// AG 0 block of the first inode chunk; its first inode is the root.
    pub root_agbno: u64,
}

impl Geometry {
    /// The geometry for a filesystem of `bytes` (rounded down to blocks):
    /// four AGs from 64 MiB to 4 TiB like mkfs on one disk, two from
    /// 32 MiB (xfs_repair wants AGs of 16 MiB and more than one), 1 TiB
    /// AGs above; the log 64 MiB from 300 MiB on, else 10 MiB.
    pub fn new(bytes: u64) -> Result<Geometry, String> {
        let dblocks = bytes / BLOCK;
        let logblocks = if bytes >= 300 << 20 {
            BIG_LOG_BLOCKS
        } else {
            SMALL_LOG_BLOCKS
        };
        if dblocks < 2 * MIN_AG_BLOCKS {
            return Err(format!(
                "{bytes} bytes is below the smallest XFS filesystem dibr writes (32 MiB: two AGs of 16 MiB; xfs_repair checks one AG against nothing)"
            ));
        }
        let (agcount, agblocks) = if dblocks >= 4 * MAX_AG_BLOCKS {
            (dblocks.div_ceil(MAX_AG_BLOCKS), MAX_AG_BLOCKS)
        } else if dblocks >= 4 * MIN_AG_BLOCKS {
            (4, dblocks.div_ceil(4))
        } else {
            (2, dblocks.div_ceil(2))
        };
        // A last AG too small to hold its headers is dropped, as mkfs does.
        let last = dblocks - (agcount - 1) * agblocks;
        let (agcount, dblocks) = if agcount > 1 && last < MIN_AG_BLOCKS {
            (agcount - 1, (agcount - 1) * agblocks)
        } else {
            (agcount, dblocks)
        };
        let agblklog = 64 - (agblocks - 1).leading_zeros();
        let log_ag = (agcount / 2) as u32;
        let log_agbno = FIRST_FREE;
        // xfs_ialloc_calc_rootino: headers, two free-space roots, the inode
        // root, the initial free list, the log when it is in AG 0; aligned.
        let mut first = FIRST_FREE;
        if log_ag == 0 {
            first += logblocks;
        }
        let root_agbno = first.next_multiple_of(INO_ALIGN);
        let g = Geometry {
            dblocks,
            agblocks,
            agcount: agcount as u32,
            agblklog,
            logblocks,
            log_ag,
            log_agbno,
            root_agbno,
        };
        if g.ag_len(g.log_ag) < log_agbno + logblocks + CHUNK_BLOCKS + INO_ALIGN
            || g.ag_len(0) < root_agbno + CHUNK_BLOCKS
        {
            return Err(format!(
                "{bytes} bytes leave no room for the {} MiB log",
                (logblocks * BLOCK) >> 20
            ));
        }
        if g.ino(g.agcount - 1, g.ag_len(g.agcount - 1), 0) > u32::MAX as u64 {
            return Err(format!(
                "{bytes} bytes need inode numbers beyond 32 bits, which dibr's XFS writer does not write"
            ));
        }
        Ok(g)
    }

    /// Blocks in AG `ag` (the last may be shorter).
    pub fn ag_len(&self, ag: u32) -> u64 {
        if ag + 1 == self.agcount {
            self.dblocks - (self.agcount as u64 - 1) * self.agblocks
        } else {
            self.agblocks
        }
    }

    /// Filesystem block number: AG number in the bits above `agblklog`.
    pub fn fsb(&self, ag: u32, agbno: u64) -> u64 {
        ((ag as u64) << self.agblklog) | agbno
    }

    /// 512-byte disk address (linear, unlike `fsb`), as stored in v5
    /// block headers' `blkno`.
    pub fn daddr(&self, ag: u32, agbno: u64) -> u64 {
        (ag as u64 * self.agblocks + agbno) * (BLOCK / SECT)
    }

    /// Byte offset of an AG block in the filesystem.
    pub fn byte(&self, ag: u32, agbno: u64) -> u64 {
        (ag as u64 * self.agblocks + agbno) * BLOCK
    }

    /// Inode number of inode `idx` (0..64 within a chunk) counted from
    /// AG block `agbno`.
    pub fn ino(&self, ag: u32, agbno: u64, idx: u64) -> u64 {
        ((ag as u64) << (self.agblklog + INOPB_LOG)) | ((agbno << INOPB_LOG) + idx)
    }

    /// AG-relative inode number.
    pub fn agino(&self, agbno: u64, idx: u64) -> u32 {
        ((agbno << INOPB_LOG) + idx) as u32
    }

    pub fn rootino(&self) -> u64 {
        self.ino(0, self.root_agbno, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_mkfs_for_1800_mib() {
        // mkfs.xfs 6.1 -m finobt=0,rmapbt=0,reflink=0 -i sparse=0 on 1800 MiB:
        // agcount 4, agblocks 115200, agblklog 17, logblocks 16384, rootino 64.
        let g = Geometry::new(1800 << 20).unwrap();
        assert_eq!((g.agcount, g.agblocks, g.agblklog), (4, 115200, 17));
        assert_eq!((g.logblocks, g.rootino()), (16384, 64));
        assert_eq!(g.fsb(2, 4), 262148);
    }

    #[test]
    fn small_filesystems_get_two_ags_and_a_small_log() {
        let g = Geometry::new(40 << 20).unwrap();
        assert_eq!((g.agcount, g.log_ag, g.logblocks), (2, 1, 2560));
        assert_eq!(g.root_agbno, 8);
        assert!(Geometry::new(31 << 20).is_err());
    }
}
