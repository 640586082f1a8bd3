//! Short-form (AG-relative) B+trees, built bottom-up from sorted records:
//! the free-space btrees (by block, by size) and the inode btree
//! ("XFS Algorithms & Data Structures", *B+trees*, *Short Format B+trees*;
//! `struct xfs_btree_block` in the kernel's libxfs/xfs_format.h).

use super::crc::{be16, be32, be64, set};
use super::geometry::{Geometry, BLOCK};

/// Size of the v5 short-form block header; the checksum is at 52.
pub const HDR: usize = 56;
const CRC_AT: usize = 52;
const NULL_AGBLOCK: u32 = u32::MAX;

pub const ABTB_MAGIC: u32 = 0x4142_3342; // "AB3B"
pub const ABTC_MAGIC: u32 = 0x4142_3343; // "AB3C"
pub const IBT_MAGIC: u32 = 0x4941_4233; // "IAB3"

/// One kind of tree: record and key sizes.
pub struct Kind {
    pub magic: u32,
    pub rec: usize,
    pub key: usize,
}

impl Kind {
    fn leaf_max(&self) -> usize {
        (BLOCK as usize - HDR) / self.rec
    }
    fn node_max(&self) -> usize {
        (BLOCK as usize - HDR) / (self.key + 4)
    }

    /// Blocks a tree of `n` records takes (at least the root leaf).
    pub fn blocks(&self, n: usize) -> u64 {
        let mut level = n.div_ceil(self.leaf_max()).max(1);
        let mut total = level;
        while level > 1 {
            level = level.div_ceil(self.node_max());
            total += level;
        }
        total as u64
    }
}

/// A built tree: its blocks (AG block, contents) and height.
pub struct Built {
    pub blocks: Vec<(u64, Vec<u8>)>,
    pub levels: u32,
}

/// Build the tree of `recs` (each `kind.rec` bytes, sorted; a record's
/// key is its first `kind.key` bytes) in AG `ag`. The root goes to `root`,
/// the other blocks to `extra` (exactly `kind.blocks(n) - 1` of them).
pub fn build(
    geo: &Geometry,
    uuid: &[u8; 16],
    ag: u32,
    kind: &Kind,
    recs: &[Vec<u8>],
    root: u64,
    extra: &[u64],
) -> Built {
    let mut spare = extra.iter().copied();
    let mut out = Vec::new();
    // Items of the current level: (first key, contents).
    let mut items: Vec<(Vec<u8>, Vec<u8>)> = recs
        .iter()
        .map(|r| (r[..kind.key].to_vec(), r.clone()))
        .collect();
    let mut level = 0u16;
    loop {
        let max = if level == 0 {
            kind.leaf_max()
        } else {
            kind.node_max()
        };
        let nblocks = items.len().div_ceil(max).max(1);
        let is_root = nblocks == 1;
        let addrs: Vec<u64> = (0..nblocks)
            .map(|_| {
                if is_root {
                    root
                } else {
                    spare.next().unwrap_or(root)
                }
            })
            .collect();
        let mut next = Vec::new();
        let per = items.len() / nblocks;
        let mut extra_one = items.len() % nblocks;
        let mut it = items.into_iter();
        for (i, &addr) in addrs.iter().enumerate() {
            let take = per + usize::from(extra_one > 0);
            extra_one = extra_one.saturating_sub(1);
            let chunk: Vec<_> = it.by_ref().take(take).collect();
            let mut b = vec![0u8; BLOCK as usize];
            be32(&mut b, 0, kind.magic);
            be16(&mut b, 4, level);
            be16(&mut b, 6, chunk.len() as u16);
            let left = if i == 0 {
                NULL_AGBLOCK
            } else {
                addrs[i - 1] as u32
            };
            let right = addrs.get(i + 1).map_or(NULL_AGBLOCK, |&a| a as u32);
            be32(&mut b, 8, left);
            be32(&mut b, 12, right);
            be64(&mut b, 16, geo.daddr(ag, addr));
            b[32..48].copy_from_slice(uuid);
            be32(&mut b, 48, ag);
            if level == 0 {
                for (j, (_, rec)) in chunk.iter().enumerate() {
                    b[HDR + j * kind.rec..][..kind.rec].copy_from_slice(rec);
                }
            } else {
                let ptrs = HDR + kind.node_max() * kind.key;
                for (j, (key, child)) in chunk.iter().enumerate() {
                    b[HDR + j * kind.key..][..kind.key].copy_from_slice(key);
                    b[ptrs + j * 4..][..4].copy_from_slice(&child[..4]);
                }
            }
            set(&mut b, CRC_AT);
            let first_key = chunk.first().map(|c| c.0.clone()).unwrap_or_default();
            next.push((first_key, (addr as u32).to_be_bytes().to_vec()));
            out.push((addr, b));
        }
        if is_root {
            return Built {
                blocks: out,
                levels: level as u32 + 1,
            };
        }
        items = next;
        level += 1;
    }
}
