//! Directories in the four v2 forms ("XFS Algorithms & Data Structures",
//! *Directories*; `xfs_dir2_*` structures in the kernel's
//! libxfs/xfs_da_format.h): shortform in the inode, a single block (data,
//! leaf and tail in one block), leaf form (data blocks and one leaf block
//! with the best-free table) and node form (data blocks, leaf blocks under
//! a one-level dabtree node, and free-index blocks). Blocks come out with
//! their disk address still to be filled in ([`DirBlock::seal`]), as the
//! allocator places them after their size is known.

use super::crc::{be16, be32, be64, set};
use super::dahash::hash;
use super::geometry::BLOCK;

const BS: usize = BLOCK as usize;
/// v5 data/block/free block header (`xfs_dir3_data_hdr`): 48-byte
/// `xfs_dir3_blk_hdr` plus three best-free slots and padding.
const DATA_HDR: usize = 64;
/// v5 leaf/node header (`xfs_dir3_leaf_hdr`, `xfs_da3_node_hdr`).
const LEAF_HDR: usize = 64;
const XDB3: u32 = 0x5844_4233;
const XDD3: u32 = 0x5844_4433;
const XDF3: u32 = 0x5844_4633;
const LEAF1_MAGIC: u16 = 0x3df1;
const LEAFN_MAGIC: u16 = 0x3dff;
const NODE_MAGIC: u16 = 0x3ebe;
/// Logical block of the leaf (and dabtree) segment: 32 GiB in.
pub const LEAF_DB: u64 = (32 << 30) / BLOCK;
/// Logical block of the free-index segment: 64 GiB in.
pub const FREE_DB: u64 = (64 << 30) / BLOCK;
const LEAF_MAX: usize = (BS - LEAF_HDR) / 8;
const FREE_MAX: usize = (BS - DATA_HDR) / 2;
const NODE_MAX: usize = (BS - LEAF_HDR) / 8;
/// First entry offset of a shortform directory: where it would be in a
/// data block after the header and the "." and ".." entries.
const SF_FIRST_OFFSET: usize = DATA_HDR + 16 + 16;

/// `xfs_dir2_data_entsize`: inumber, namelen, name, ftype, tag, 8-aligned.
fn entsize(namelen: usize) -> usize {
    (8 + 1 + namelen + 1 + 2).next_multiple_of(8)
}

/// A directory entry to write.
pub struct Ent<'a> {
    pub name: &'a [u8],
    pub ino: u64,
    /// `XFS_DIR3_FT_*`.
    pub ftype: u8,
}

/// Which header a block has, to fill in its address and checksum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hdr {
    /// `xfs_dir3_blk_hdr`: blkno at 8, crc at 4.
    Blk,
    /// `xfs_da3_blkinfo`: blkno at 16, crc at 12.
    Da,
}

pub struct DirBlock {
    /// Logical directory block.
    pub db: u64,
    pub data: Vec<u8>,
    hdr: Hdr,
}

impl DirBlock {
    /// Fill in the block's disk address and checksum.
    pub fn seal(&mut self, daddr: u64) {
        match self.hdr {
            Hdr::Blk => {
                be64(&mut self.data, 8, daddr);
                set(&mut self.data, 4);
            }
            Hdr::Da => {
                be64(&mut self.data, 16, daddr);
                set(&mut self.data, 12);
            }
        }
    }
}

/// The shortform directory, if it fits in `room` bytes (4-byte inode
/// numbers: the writer keeps every inode number below 2^32).
pub fn shortform(parent: u64, ents: &[Ent], room: usize) -> Option<Vec<u8>> {
    let size = 6 + ents.iter().map(|e| 3 + e.name.len() + 1 + 4).sum::<usize>();
    if size > room || ents.len() > 255 {
        return None;
    }
    let mut v = Vec::with_capacity(size);
    v.push(ents.len() as u8);
    v.push(0);
    v.extend_from_slice(&(parent as u32).to_be_bytes());
    let mut off = SF_FIRST_OFFSET;
    for e in ents {
        v.push(e.name.len() as u8);
        v.extend_from_slice(&(off as u16).to_be_bytes());
        v.extend_from_slice(e.name);
        v.push(e.ftype);
        v.extend_from_slice(&(e.ino as u32).to_be_bytes());
        off += entsize(e.name.len());
    }
    Some(v)
}

/// A v5 block header for data/free blocks.
fn blk_hdr(b: &mut [u8], magic: u32, uuid: &[u8; 16], owner: u64) {
    be32(b, 0, magic);
    b[24..40].copy_from_slice(uuid);
    be64(b, 40, owner);
}

/// A v5 dabtree block header (leaf and node blocks).
fn da_hdr(b: &mut [u8], magic: u16, uuid: &[u8; 16], owner: u64, forw: u32, back: u32) {
    be32(b, 0, forw);
    be32(b, 4, back);
    be16(b, 8, magic);
    b[32..48].copy_from_slice(uuid);
    be64(b, 48, owner);
}

/// Write one data entry at `off` of `b`.
fn put_ent(b: &mut [u8], off: usize, name: &[u8], ino: u64, ftype: u8) {
    let n = entsize(name.len());
    be64(b, off, ino);
    b[off + 8] = name.len() as u8;
    b[off + 9..off + 9 + name.len()].copy_from_slice(name);
    b[off + 9 + name.len()] = ftype;
    be16(b, off + n - 2, off as u16);
}

/// Mark `[off, end)` unused and record it as the block's best free
/// region (the only free region the writer leaves in a data block).
fn put_free(b: &mut [u8], off: usize, end: usize) -> u16 {
    if end > off {
        let len = end - off;
        be16(b, off, 0xffff);
        be16(b, off + 2, len as u16);
        be16(b, end - 2, off as u16);
        be16(b, 48, off as u16);
        be16(b, 50, len as u16);
        len as u16
    } else {
        0
    }
}

/// The directory in block, leaf or node form, and its size in bytes
/// (the data segment).
pub fn blocks(dir: u64, parent: u64, ents: &[Ent], uuid: &[u8; 16]) -> (Vec<DirBlock>, u64) {
    let dot = [
        Ent {
            name: b".",
            ino: dir,
            ftype: 2,
        },
        Ent {
            name: b"..",
            ino: parent,
            ftype: 2,
        },
    ];
    let all: Vec<&Ent> = dot.iter().chain(ents.iter()).collect();
    let bytes: usize = all.iter().map(|e| entsize(e.name.len())).sum();
    if DATA_HDR + bytes + all.len() * 8 + 8 <= BS {
        return (vec![single_block(dir, &all, uuid)], BLOCK);
    }
    // Pack the entries into data blocks in order.
    let mut out = Vec::new();
    let mut leaf: Vec<(u32, u32)> = Vec::with_capacity(all.len());
    let mut bests: Vec<u16> = Vec::new();
    let mut b = vec![0u8; BS];
    let mut off = DATA_HDR;
    let mut db = 0u64;
    for e in &all {
        let n = entsize(e.name.len());
        if off + n > BS {
            bests.push(put_free(&mut b, off, BS));
            out.push(data_block(db, b, dir, uuid));
            b = vec![0u8; BS];
            off = DATA_HDR;
            db += 1;
        }
        put_ent(&mut b, off, e.name, e.ino, e.ftype);
        let addr = ((db * BLOCK + off as u64) / 8) as u32;
        leaf.push((hash(e.name), addr));
        off += n;
    }
    bests.push(put_free(&mut b, off, BS));
    out.push(data_block(db, b, dir, uuid));
    leaf.sort_unstable();
    let ndata = bests.len();
    if LEAF_HDR + leaf.len() * 8 + 2 * ndata + 4 <= BS {
        out.push(leaf1(dir, &leaf, &bests, uuid));
    } else {
        out.extend(node_form(dir, &leaf, &bests, uuid));
    }
    (out, ndata as u64 * BLOCK)
}

fn data_block(db: u64, mut b: Vec<u8>, dir: u64, uuid: &[u8; 16]) -> DirBlock {
    blk_hdr(&mut b, XDD3, uuid, dir);
    DirBlock {
        db,
        data: b,
        hdr: Hdr::Blk,
    }
}

/// Block form: entries from the front, the sorted leaf and its tail at
/// the end, the free space between them.
fn single_block(dir: u64, all: &[&Ent], uuid: &[u8; 16]) -> DirBlock {
    let mut b = vec![0u8; BS];
    blk_hdr(&mut b, XDB3, uuid, dir);
    let mut off = DATA_HDR;
    let mut leaf = Vec::with_capacity(all.len());
    for e in all {
        put_ent(&mut b, off, e.name, e.ino, e.ftype);
        leaf.push((hash(e.name), (off / 8) as u32));
        off += entsize(e.name.len());
    }
    leaf.sort_unstable();
    let leaf_at = BS - 8 - leaf.len() * 8;
    put_free(&mut b, off, leaf_at);
    for (i, (h, a)) in leaf.iter().enumerate() {
        be32(&mut b, leaf_at + i * 8, *h);
        be32(&mut b, leaf_at + i * 8 + 4, *a);
    }
    be32(&mut b, BS - 8, leaf.len() as u32);
    DirBlock {
        db: 0,
        data: b,
        hdr: Hdr::Blk,
    }
}

fn put_leaf_ents(b: &mut [u8], ents: &[(u32, u32)]) {
    be16(b, 56, ents.len() as u16);
    for (i, (h, a)) in ents.iter().enumerate() {
        be32(b, LEAF_HDR + i * 8, *h);
        be32(b, LEAF_HDR + i * 8 + 4, *a);
    }
}

/// Leaf form's single leaf: entries, then the best-free table and its
/// count at the end of the block.
fn leaf1(dir: u64, leaf: &[(u32, u32)], bests: &[u16], uuid: &[u8; 16]) -> DirBlock {
    let mut b = vec![0u8; BS];
    da_hdr(&mut b, LEAF1_MAGIC, uuid, dir, 0, 0);
    put_leaf_ents(&mut b, leaf);
    be32(&mut b, BS - 4, bests.len() as u32);
    let at = BS - 4 - 2 * bests.len();
    for (i, v) in bests.iter().enumerate() {
        be16(&mut b, at + 2 * i, *v);
    }
    DirBlock {
        db: LEAF_DB,
        data: b,
        hdr: Hdr::Da,
    }
}

/// Node form: the dabtree root at the leaf segment's start, leaves after
/// it (chained forw/back), free-index blocks in the free segment. A
/// directory needing a second node level (over ~250 000 entries) is
/// beyond this writer; the caller checks [`fits_node_form`].
fn node_form(dir: u64, leaf: &[(u32, u32)], bests: &[u16], uuid: &[u8; 16]) -> Vec<DirBlock> {
    let mut out = Vec::new();
    let nleaves = leaf.len().div_ceil(LEAF_MAX);
    let per = leaf.len() / nleaves;
    let mut extra = leaf.len() % nleaves;
    let mut node = vec![0u8; BS];
    da_hdr(&mut node, NODE_MAGIC, uuid, dir, 0, 0);
    be16(&mut node, 56, nleaves as u16);
    be16(&mut node, 58, 1);
    let mut start = 0;
    for i in 0..nleaves {
        let take = per + usize::from(extra > 0);
        extra = extra.saturating_sub(1);
        let part = &leaf[start..start + take];
        start += take;
        let db = LEAF_DB + 1 + i as u64;
        let back = if i == 0 { 0 } else { (db - 1) as u32 };
        let forw = if i + 1 == nleaves { 0 } else { (db + 1) as u32 };
        let mut b = vec![0u8; BS];
        da_hdr(&mut b, LEAFN_MAGIC, uuid, dir, forw, back);
        put_leaf_ents(&mut b, part);
        let last_hash = part.last().map_or(0, |p| p.0);
        be32(&mut node, LEAF_HDR + i * 8, last_hash);
        be32(&mut node, LEAF_HDR + i * 8 + 4, db as u32);
        out.push(DirBlock {
            db,
            data: b,
            hdr: Hdr::Da,
        });
    }
    out.insert(
        0,
        DirBlock {
            db: LEAF_DB,
            data: node,
            hdr: Hdr::Da,
        },
    );
    for (i, part) in bests.chunks(FREE_MAX).enumerate() {
        let mut b = vec![0u8; BS];
        blk_hdr(&mut b, XDF3, uuid, dir);
        be32(&mut b, 48, (i * FREE_MAX) as u32);
        be32(&mut b, 52, part.len() as u32);
        be32(&mut b, 56, part.len() as u32);
        for (j, v) in part.iter().enumerate() {
            be16(&mut b, DATA_HDR + 2 * j, *v);
        }
        out.push(DirBlock {
            db: FREE_DB + i as u64,
            data: b,
            hdr: Hdr::Blk,
        });
    }
    out
}

/// Whether a directory of `n` entries (besides "." and "..") fits under
/// a one-level dabtree node.
pub fn fits_node_form(n: usize) -> bool {
    (n + 2).div_ceil(LEAF_MAX) <= NODE_MAX
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortform_offsets_follow_data_block_layout() {
        let e = [
            Ent {
                name: b"a",
                ino: 70,
                ftype: 1,
            },
            Ent {
                name: b"bcdefghij",
                ino: 71,
                ftype: 2,
            },
        ];
        let v = shortform(64, &e, 336).unwrap();
        assert_eq!(&v[..6], &[2, 0, 0, 0, 0, 64]);
        assert_eq!(&v[7..9], &96u16.to_be_bytes());
        assert_eq!(&v[16..18], &(96u16 + 16).to_be_bytes());
    }

    #[test]
    fn big_directories_take_node_form() {
        let names: Vec<Vec<u8>> = (0..3000).map(|i| format!("file{i}").into_bytes()).collect();
        let ents: Vec<Ent> = names
            .iter()
            .map(|n| Ent {
                name: n,
                ino: 100,
                ftype: 1,
            })
            .collect();
        let (blocks, size) = blocks(64, 64, &ents, &[0; 16]);
        assert!(blocks.iter().any(|b| b.db == FREE_DB));
        assert!(blocks.iter().any(|b| b.db == LEAF_DB + 1));
        assert_eq!(size % BLOCK, 0);
    }
}
