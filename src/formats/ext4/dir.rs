//! Directory blocks: linear blocks, and hashed b-trees (`dir_index`) for
//! directories larger than one block.
//!
//! Layout: Documentation/filesystems/ext4/directory.rst ("Linear (Classic)
//! Directories", "Hash Tree Directories"); checksums per checksums.rst and
//! the kernel's fs/ext4/namei.c (`ext4_dirblock_csum`, `ext4_dx_csum`).
//!
//! FORMAT NOTE: a `dx_node` is an 8-byte fake dirent followed by
//! `limit`/`count`/`block`, so `count` sits at offset 8 (not 0xE/0x12 as one
//! revision of directory.rst says); the root's count is at 0x20. The
//! `dx_tail` follows the `limit` entries, which is why `limit` is one entry
//! short of filling the block when metadata_csum is on.

use super::csum;
use super::dirhash;
use crate::le::{put_u16, put_u32};

const BS: usize = 4096;
/// Room for entries in a leaf block before the 12-byte checksum tail.
const LEAF_SPACE: usize = BS - 12;
const ROOT_LIMIT: usize = (BS - 0x20 - 8) / 8; // 507
const NODE_LIMIT: usize = (BS - 8 - 8) / 8; // 510
pub const FT_DIR: u8 = 2;

/// One name in a directory.
#[derive(Clone, Debug)]
pub struct DirEntry<'a> {
    pub name: &'a [u8],
    pub ino: u32,
    pub file_type: u8,
}

#[inline]
fn rec_len(name_len: usize) -> usize {
    (8 + name_len + 3) & !3
}

#[derive(Debug, thiserror::Error)]
#[error("directory has too many entries for a two-level hash tree (large_dir is not enabled)")]
pub struct DirTooLarge;

/// Hash parameters of the filesystem.
#[derive(Clone, Copy, Debug)]
pub struct HashInfo {
    pub seed: [u32; 4],
    pub signed: bool,
}

/// Encoded directory: its blocks in logical order and whether it is indexed.
pub struct EncodedDir {
    pub blocks: Vec<Vec<u8>>,
    pub indexed: bool,
}

/// Number of blocks a directory with these entries needs (must agree with
/// [`encode`]).
fn put_dirent(buf: &mut [u8], off: usize, ino: u32, rlen: usize, name: &[u8], ft: u8) {
    put_u32(buf, off, ino);
    put_u16(buf, off + 4, rlen as u16);
    buf[off + 6] = name.len() as u8;
    buf[off + 7] = ft;
    buf[off + 8..off + 8 + name.len()].copy_from_slice(name);
}

fn seal_leaf(buf: &mut [u8], iseed: u32) {
    // ext4_dir_entry_tail: inode 0, rec_len 12, name_len 0, type 0xDE, csum.
    put_u32(buf, LEAF_SPACE, 0);
    put_u16(buf, LEAF_SPACE + 4, 12);
    buf[LEAF_SPACE + 6] = 0;
    buf[LEAF_SPACE + 7] = 0xDE;
    let c = csum::raw(iseed, &buf[..LEAF_SPACE]);
    put_u32(buf, LEAF_SPACE + 8, c);
}

/// Pack entries into leaf blocks in order; `reserve_dots` keeps room for
/// "." and ".." at the start of the first block. Returns the entry ranges.
fn pack(entries: &[DirEntry], first_used: usize) -> Vec<std::ops::Range<usize>> {
    let mut ranges = Vec::new();
    let mut start = 0;
    let mut used = first_used;
    for (i, e) in entries.iter().enumerate() {
        let l = rec_len(e.name.len());
        if used + l > LEAF_SPACE {
            ranges.push(start..i);
            start = i;
            used = 0;
        }
        used += l;
    }
    ranges.push(start..entries.len());
    ranges
}

fn leaf_block(entries: &[DirEntry], dots: Option<(u32, u32)>, iseed: u32) -> Vec<u8> {
    let mut buf = vec![0u8; BS];
    let mut off = 0;
    let mut last = None;
    if let Some((me, parent)) = dots {
        put_dirent(&mut buf, 0, me, 12, b".", FT_DIR);
        put_dirent(&mut buf, 12, parent, 12, b"..", FT_DIR);
        last = Some(12);
        off = 24;
    }
    for e in entries {
        let l = rec_len(e.name.len());
        put_dirent(&mut buf, off, e.ino, l, e.name, e.file_type);
        last = Some(off);
        off += l;
    }
    match last {
        // The last entry's rec_len reaches the checksum tail.
        Some(o) => {
            let l = LEAF_SPACE - o;
            put_u16(&mut buf, o + 4, l as u16);
        }
        // An empty leaf is one unused entry spanning the block.
        None => put_u16(&mut buf, 4, LEAF_SPACE as u16),
    }
    seal_leaf(&mut buf, iseed);
    buf
}

fn dx_seal(buf: &mut [u8], count_offset: usize, count: usize, limit: usize, iseed: u32) {
    let tail = count_offset + limit * 8;
    put_u32(buf, tail, 0);
    let mut c = csum::raw(iseed, &buf[..count_offset + count * 8]);
    c = csum::raw(c, &buf[tail..tail + 4]);
    c = csum::raw(c, &[0u8; 4]);
    put_u32(buf, tail + 4, c);
}

fn dx_entries(buf: &mut [u8], count_offset: usize, limit: usize, entries: &[(u32, u32)]) {
    put_u16(buf, count_offset, limit as u16);
    put_u16(buf, count_offset + 2, entries.len() as u16);
    for (i, &(hash, blk)) in entries.iter().enumerate() {
        let off = count_offset + i * 8;
        if i > 0 {
            put_u32(buf, off, hash);
        }
        put_u32(buf, off + 4, blk);
    }
}

/// Encode a directory. `me`/`parent` are the inode numbers for "." and "..".
/// `entries` must not contain "." or "..".
pub fn encode(
    me: u32,
    parent: u32,
    entries: &[DirEntry],
    hash: &HashInfo,
    iseed: u32,
) -> Result<EncodedDir, DirTooLarge> {
    let ranges = pack(entries, 24);
    if ranges.len() == 1 {
        let b = leaf_block(entries, Some((me, parent)), iseed);
        return Ok(EncodedDir {
            blocks: vec![b],
            indexed: false,
        });
    }
    // Hash tree: sort by (hash, minor hash, name) and pack leaves.
    let mut hashed: Vec<(u32, u32, &DirEntry)> = entries
        .iter()
        .map(|e| {
            let (h, m) = dirhash::half_md4(e.name, &hash.seed, hash.signed);
            (h, m, e)
        })
        .collect();
    hashed.sort_by(|a, b| (a.0, a.1, a.2.name).cmp(&(b.0, b.1, b.2.name)));
    let sorted: Vec<DirEntry> = hashed.iter().map(|t| t.2.clone()).collect();
    let leaf_ranges = pack(&sorted, 0);
    let n_leaves = leaf_ranges.len();
    // Index hash of each leaf: its first entry's hash, with bit 0 set when
    // the previous leaf ends with the same hash (a collision continues).
    let mut leaf_hash = Vec::with_capacity(n_leaves);
    for (i, r) in leaf_ranges.iter().enumerate() {
        let h = hashed[r.start].0;
        let cont = i > 0 && hashed[r.start - 1].0 == h;
        leaf_hash.push(h | cont as u32);
    }
    let mut blocks = vec![vec![0u8; BS]];
    for r in &leaf_ranges {
        blocks.push(leaf_block(&sorted[r.clone()], None, iseed));
    }
    let root_entries: Vec<(u32, u32)>;
    let levels: u8;
    if n_leaves <= ROOT_LIMIT {
        levels = 0;
        root_entries = (0..n_leaves)
            .map(|i| (leaf_hash[i], (i + 1) as u32))
            .collect();
    } else {
        levels = 1;
        let n_nodes = n_leaves.div_ceil(NODE_LIMIT);
        if n_nodes > ROOT_LIMIT {
            return Err(DirTooLarge);
        }
        let mut re = Vec::new();
        for (k, chunk) in (0..n_leaves)
            .collect::<Vec<_>>()
            .chunks(NODE_LIMIT)
            .enumerate()
        {
            let node_blk = (1 + n_leaves + k) as u32;
            let ents: Vec<(u32, u32)> = chunk
                .iter()
                .map(|&i| (leaf_hash[i], (i + 1) as u32))
                .collect();
            let mut buf = vec![0u8; BS];
            // Fake empty dirent spanning the block.
            put_u32(&mut buf, 0, 0);
            put_u16(&mut buf, 4, BS as u16);
            dx_entries(&mut buf, 8, NODE_LIMIT, &ents);
            dx_seal(&mut buf, 8, ents.len(), NODE_LIMIT, iseed);
            blocks.push(buf);
            re.push((leaf_hash[chunk[0]], node_blk));
        }
        root_entries = re;
    }
    let root = &mut blocks[0];
    put_dirent(root, 0, me, 12, b".", FT_DIR);
    put_dirent(root, 12, parent, BS - 12, b"..", FT_DIR);
    // dx_root_info: reserved_zero, hash_version, info_length, indirect_levels, unused_flags.
    put_u32(root, 0x18, 0);
    root[0x1C] = 1; // DX_HASH_HALF_MD4 (signedness comes from s_flags)
    root[0x1D] = 8;
    root[0x1E] = levels;
    root[0x1F] = 0;
    dx_entries(root, 0x20, ROOT_LIMIT, &root_entries);
    dx_seal(root, 0x20, root_entries.len(), ROOT_LIMIT, iseed);
    Ok(EncodedDir {
        blocks,
        indexed: true,
    })
}

/// Blocks for an empty lost+found: mke2fs preallocates 16 KiB so e2fsck can
/// reconnect files without allocating.
pub fn lost_found(me: u32, parent: u32, nblocks: usize, iseed: u32) -> Vec<Vec<u8>> {
    let mut v = vec![leaf_block(&[], Some((me, parent)), iseed)];
    for _ in 1..nblocks {
        v.push(leaf_block(&[], None, iseed));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::le::get_u16;

    /// `entries` as the root directory (its own parent), unsigned hashes.
    fn encode_root(entries: &[DirEntry]) -> EncodedDir {
        let hash = HashInfo {
            seed: [1, 2, 3, 4],
            signed: false,
        };
        encode(2, 2, entries, &hash, 0).unwrap()
    }

    #[test]
    fn small_dir_is_linear() {
        let e = [DirEntry {
            name: b"a",
            ino: 12,
            file_type: 1,
        }];
        let d = encode_root(&e);
        assert!(!d.indexed);
        assert_eq!(d.blocks.len(), 1);
        // "." 12, ".." 12, "a" reaching the tail.
        assert_eq!(get_u16(&d.blocks[0], 28), (LEAF_SPACE - 24) as u16);
    }

    #[test]
    fn big_dir_is_indexed() {
        let names: Vec<Vec<u8>> = (0..5000)
            .map(|i| format!("file-{i:06}").into_bytes())
            .collect();
        let e: Vec<DirEntry> = names
            .iter()
            .enumerate()
            .map(|(i, n)| DirEntry {
                name: n,
                ino: 100 + i as u32,
                file_type: 1,
            })
            .collect();
        let d = encode_root(&e);
        assert!(d.indexed);
        let count = get_u16(&d.blocks[0], 0x22) as usize;
        assert_eq!(count, d.blocks.len() - 1);
    }
}
