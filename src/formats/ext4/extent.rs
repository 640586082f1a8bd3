//! Extent trees (Documentation/filesystems/ext4/ifork.rst, "Extent Tree").
//!
//! Up to four extents live in the inode's `i_block`; more go into leaf
//! blocks of 340 entries under index nodes, as many levels as needed.
//! Every tree block ends with `ext4_extent_tail`: crc32c(inode seed,
//! block[0..12 + 12 * eh_max]).

use super::csum;
use crate::le::{put_u16, put_u32};

pub const EH_MAGIC: u16 = 0xF30A;
/// Longest initialised extent.
pub const MAX_EXTENT_LEN: u64 = 32768;
const ENTRIES_PER_BLOCK: usize = (4096 - 12) / 12; // 340
const ENTRIES_IN_INODE: usize = 4;

/// One mapping of logical file blocks to physical blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    pub lblk: u32,
    pub pblk: u64,
    pub len: u16,
}

/// Append a mapping, merging with the previous extent when contiguous.
pub fn push(extents: &mut Vec<Extent>, lblk: u64, pblk: u64, mut len: u64) {
    let mut lblk = lblk;
    let mut pblk = pblk;
    if let Some(last) = extents.last_mut() {
        let l_end = last.lblk as u64 + last.len as u64;
        if l_end == lblk && last.pblk + last.len as u64 == pblk {
            let add = len.min(MAX_EXTENT_LEN - last.len as u64);
            last.len += add as u16;
            lblk += add;
            pblk += add;
            len -= add;
        }
    }
    while len > 0 {
        let l = len.min(MAX_EXTENT_LEN);
        extents.push(Extent {
            lblk: lblk as u32,
            pblk,
            len: l as u16,
        });
        lblk += l;
        pblk += l;
        len -= l;
    }
}

/// Number of tree blocks (leaves and index nodes) `n` extents need.
pub fn tree_blocks(n: usize) -> u64 {
    if n <= ENTRIES_IN_INODE {
        return 0;
    }
    let mut total = 0;
    let mut level = n;
    while level > ENTRIES_IN_INODE {
        level = level.div_ceil(ENTRIES_PER_BLOCK);
        total += level as u64;
    }
    total
}

fn header(buf: &mut [u8], entries: usize, max: usize, depth: u16) {
    put_u16(buf, 0, EH_MAGIC);
    put_u16(buf, 2, entries as u16);
    put_u16(buf, 4, max as u16);
    put_u16(buf, 6, depth);
    put_u32(buf, 8, 0);
}

fn leaf_entry(buf: &mut [u8], off: usize, e: &Extent) {
    put_u32(buf, off, e.lblk);
    put_u16(buf, off + 4, e.len);
    put_u16(buf, off + 6, (e.pblk >> 32) as u16);
    put_u32(buf, off + 8, e.pblk as u32);
}

fn index_entry(buf: &mut [u8], off: usize, lblk: u32, child: u64) {
    put_u32(buf, off, lblk);
    put_u32(buf, off + 4, child as u32);
    put_u16(buf, off + 8, (child >> 32) as u16);
    put_u16(buf, off + 10, 0);
}

/// The finished tree: the 60-byte `i_block` and the blocks to write.
pub struct Tree {
    pub i_block: [u8; 60],
    pub blocks: Vec<(u64, Vec<u8>)>,
}

/// Build the tree for `extents`, placing tree blocks at `tree_pblks`
/// (exactly [`tree_blocks`] of them).
pub fn build(extents: &[Extent], tree_pblks: &[u64], inode_seed: u32) -> Tree {
    debug_assert_eq!(tree_pblks.len() as u64, tree_blocks(extents.len()));
    let mut i_block = [0u8; 60];
    let mut blocks = Vec::new();
    if extents.len() <= ENTRIES_IN_INODE {
        header(&mut i_block, extents.len(), ENTRIES_IN_INODE, 0);
        for (i, e) in extents.iter().enumerate() {
            leaf_entry(&mut i_block, 12 + 12 * i, e);
        }
        return Tree { i_block, blocks };
    }
    let mut next_pblk = tree_pblks.iter().copied();
    let seal = |buf: &mut Vec<u8>| {
        let off = 12 + 12 * ENTRIES_PER_BLOCK;
        let c = csum::raw(inode_seed, &buf[..off]);
        put_u32(buf, off, c);
    };
    // Leaves.
    let mut level: Vec<(u32, u64)> = Vec::new();
    for chunk in extents.chunks(ENTRIES_PER_BLOCK) {
        let mut buf = vec![0u8; 4096];
        header(&mut buf, chunk.len(), ENTRIES_PER_BLOCK, 0);
        for (i, e) in chunk.iter().enumerate() {
            leaf_entry(&mut buf, 12 + 12 * i, e);
        }
        seal(&mut buf);
        let p = next_pblk.next().expect("tree_blocks() counted the leaves");
        level.push((chunk[0].lblk, p));
        blocks.push((p, buf));
    }
    let mut depth = 1u16;
    while level.len() > ENTRIES_IN_INODE {
        let mut up = Vec::new();
        for chunk in level.chunks(ENTRIES_PER_BLOCK) {
            let mut buf = vec![0u8; 4096];
            header(&mut buf, chunk.len(), ENTRIES_PER_BLOCK, depth);
            for (i, &(l, c)) in chunk.iter().enumerate() {
                index_entry(&mut buf, 12 + 12 * i, l, c);
            }
            seal(&mut buf);
            let p = next_pblk
                .next()
                .expect("tree_blocks() counted the index nodes");
            up.push((chunk[0].0, p));
            blocks.push((p, buf));
        }
        level = up;
        depth += 1;
    }
    header(&mut i_block, level.len(), ENTRIES_IN_INODE, depth);
    for (i, &(l, c)) in level.iter().enumerate() {
        index_entry(&mut i_block, 12 + 12 * i, l, c);
    }
    Tree { i_block, blocks }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts() {
        assert_eq!(tree_blocks(4), 0);
        assert_eq!(tree_blocks(5), 1);
        assert_eq!(tree_blocks(340 * 4), 4);
        assert_eq!(tree_blocks(340 * 4 + 1), 5 + 1);
    }

    #[test]
    fn merge() {
        let mut v = Vec::new();
        push(&mut v, 0, 100, 10);
        push(&mut v, 10, 110, 5);
        push(&mut v, 15, 200, 1);
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].len, 15);
        push(&mut v, 16, 201, 40000);
        assert_eq!(v.len(), 3);
        assert_eq!(v[1].len as u64, MAX_EXTENT_LEN);
        assert_eq!(v[2].len as u64, 40001 - MAX_EXTENT_LEN);
    }
}
