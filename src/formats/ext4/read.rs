//! A small, read-only ext2/3/4 reader for any filesystem, not only the ones
//! dibr writes (`verify.rs` is deliberately strict to dibr's own choices).
//! `dibr get-kernel` and `dibr check` use it to look inside images made by
//! other tools, without mounting.
//!
//! What it decodes, with the on-disk format from the kernel's
//! Documentation/filesystems/ext4 (`super.rst`, `group_descr.rst`,
//! `inodes.rst`, `ifork.rst`, `directory.rst`, `blockmap.rst`):
//!
//! - the superblock at byte 1024 (magic 0xEF53 at 0x38), any block size from
//!   1 KiB to 64 KiB, 128-byte or larger inodes;
//! - group descriptors, 32-byte or (64bit) `s_desc_size`, in the classic
//!   table after the superblock or, with meta_bg, in the first block of each
//!   meta group (after its backup superblock when that group has one);
//! - inode data by extent tree (0xF30A headers, uninitialized extents read
//!   as zeros), by the old direct/indirect block map, or inline (i_block plus
//!   the `system.data` in-inode xattr);
//! - directories by scanning every block linearly: an htree's interior
//!   blocks look like one empty entry spanning the block and its root block
//!   starts with ordinary "." and ".." entries, so a linear scan sees every
//!   name exactly once (this is how e2fsprogs' `ext2fs_dir_iterate` reads
//!   them too); the metadata_csum tail (inode 0) is skipped likewise;
//! - fast symlinks (target in i_block) and slow ones (target in a block).
//!
//! Every number read from disk is checked before it is used: a hostile
//! image gives an error, never a panic, a loop or a huge allocation.

use std::io::Write;

use crate::image_io::ImageSource;

const SB_OFFSET: u64 = 1024;
const EXT4_MAGIC: u16 = 0xEF53;
pub const ROOT_INO: u32 = 2;

const INCOMPAT_COMPRESSION: u32 = 0x1;
const INCOMPAT_FILETYPE: u32 = 0x2;
const INCOMPAT_RECOVER: u32 = 0x4;
const INCOMPAT_JOURNAL_DEV: u32 = 0x8;
const INCOMPAT_META_BG: u32 = 0x10;
const INCOMPAT_EXTENTS: u32 = 0x40;
const INCOMPAT_64BIT: u32 = 0x80;
const INCOMPAT_MMP: u32 = 0x100;
const INCOMPAT_FLEX_BG: u32 = 0x200;
const INCOMPAT_EA_INODE: u32 = 0x400;
const INCOMPAT_CSUM_SEED: u32 = 0x2000;
const INCOMPAT_LARGEDIR: u32 = 0x4000;
const INCOMPAT_INLINE_DATA: u32 = 0x8000;
const INCOMPAT_ENCRYPT: u32 = 0x10000;
const INCOMPAT_CASEFOLD: u32 = 0x20000;
/// Everything this reader understands (dirdata and compression are not).
const INCOMPAT_KNOWN: u32 = INCOMPAT_FILETYPE
    | INCOMPAT_RECOVER
    | INCOMPAT_META_BG
    | INCOMPAT_EXTENTS
    | INCOMPAT_64BIT
    | INCOMPAT_MMP
    | INCOMPAT_FLEX_BG
    | INCOMPAT_EA_INODE
    | INCOMPAT_CSUM_SEED
    | INCOMPAT_LARGEDIR
    | INCOMPAT_INLINE_DATA
    | INCOMPAT_ENCRYPT
    | INCOMPAT_CASEFOLD;
const RO_COMPAT_SPARSE_SUPER: u32 = 0x1;
const RO_COMPAT_HUGE_FILE: u32 = 0x8;

const EXTENTS_FL: u32 = 0x80000;
const INLINE_DATA_FL: u32 = 0x1000_0000;
const HUGE_FILE_FL: u32 = 0x40000;

use super::inode::S_IFMT;
pub use super::inode::{S_IFDIR, S_IFLNK, S_IFREG};

/// Limits against hostile images.
const MAX_EXTENT_DEPTH: u16 = 5;
const MAX_EXTENTS: usize = 1 << 20;
const MAX_DIR_BYTES: u64 = 256 << 20;
const MAX_SYMLINK: u64 = 4096;

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("no ext2/3/4 superblock (magic 0xEF53 at byte 1080)")]
    NotExt4,
    #[error("superblock: {0}")]
    Superblock(String),
    #[error(
        "uses ext4 features this reader does not know (incompat 0x{0:x}); read it with debugfs"
    )]
    Unsupported(u32),
    #[error("inode {ino}: {detail}")]
    Inode { ino: u32, detail: String },
    #[error("inode {ino}: extent tree: {detail}")]
    Extent { ino: u32, detail: String },
    #[error("directory inode {ino}: {detail}")]
    Dir { ino: u32, detail: String },
    #[error("reading {what} at byte {offset}: {source}")]
    Io {
        what: &'static str,
        offset: u64,
        #[source]
        source: std::io::Error,
    },
    #[error("writing file data: {0}")]
    Write(#[source] std::io::Error),
}

type R<T> = Result<T, ReadError>;

fn u16le(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
fn u32le(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

/// One ext4 filesystem inside an image, at a byte offset (its partition).
pub struct Ext4<'a> {
    src: &'a dyn ImageSource,
    base: u64,
    bs: u64,
    blocks: u64,
    first_data_block: u64,
    blocks_per_group: u64,
    inodes_per_group: u32,
    inodes_count: u32,
    inode_size: u64,
    desc_size: u64,
    groups: u64,
    first_meta_bg: u64,
    incompat: u32,
    ro_compat: u32,
    label: String,
    uuid: [u8; 16],
}

/// The fields of an inode this reader needs.
#[derive(Clone, Debug)]
pub struct Inode {
    pub ino: u32,
    pub mode: u16,
    pub size: u64,
    flags: u32,
    /// Blocks in use (bytes / 512, or fs blocks with HUGE_FILE_FL).
    sectors: u64,
    file_acl: u64,
    i_block: [u8; 60],
    /// The in-inode extended attribute area (after i_extra_isize).
    ibody_xattr: Vec<u8>,
}

impl Inode {
    pub fn is_dir(&self) -> bool {
        self.mode & S_IFMT == S_IFDIR
    }
    pub fn is_file(&self) -> bool {
        self.mode & S_IFMT == S_IFREG
    }
    pub fn is_symlink(&self) -> bool {
        self.mode & S_IFMT == S_IFLNK
    }
}

/// A directory entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    pub name: Vec<u8>,
    pub ino: u32,
    /// dirent file type (1 file, 2 dir, 7 symlink …; 0 when the
    /// filesystem has no `filetype` feature).
    pub ftype: u8,
}

/// A run of file blocks: logical block, physical block, length; `zero`
/// for uninitialized extents (they read as zeros).
#[derive(Clone, Copy, Debug)]
struct Run {
    lblk: u64,
    pblk: u64,
    len: u64,
    zero: bool,
}

/// Whether group `g` holds a superblock backup (and so, with meta_bg, its
/// descriptor block comes after it): all groups without sparse_super, else
/// 0, 1 and powers of 3, 5 and 7 (ext4_bg_has_super).
fn has_super(g: u64, sparse: bool) -> bool {
    if !sparse || g <= 1 {
        return true;
    }
    for p in [3u64, 5, 7] {
        let mut x = p;
        while x < g {
            x = match x.checked_mul(p) {
                Some(v) => v,
                None => break,
            };
        }
        if x == g {
            return true;
        }
    }
    false
}

impl<'a> Ext4<'a> {
    /// Opens the filesystem starting at byte `base` of `src`.
    pub fn open(src: &'a dyn ImageSource, base: u64) -> R<Self> {
        let mut sb = [0u8; 1024];
        let off = base.checked_add(SB_OFFSET).ok_or(ReadError::NotExt4)?;
        src.read_at(off, &mut sb).map_err(|_| ReadError::NotExt4)?;
        if u16le(&sb, 0x38) != EXT4_MAGIC {
            return Err(ReadError::NotExt4);
        }
        let bad = |s: &str| ReadError::Superblock(s.to_string());
        let log = u32le(&sb, 0x18);
        if log > 6 {
            return Err(bad("block size above 64 KiB"));
        }
        let bs = 1024u64 << log;
        let incompat = u32le(&sb, 0x60);
        let ro_compat = u32le(&sb, 0x64);
        if incompat & INCOMPAT_JOURNAL_DEV != 0 {
            return Err(bad("this is an external journal device, not a filesystem"));
        }
        if incompat & INCOMPAT_COMPRESSION != 0 || incompat & !INCOMPAT_KNOWN != 0 {
            return Err(ReadError::Unsupported(incompat & !INCOMPAT_KNOWN));
        }
        let rev = u32le(&sb, 0x4C);
        let inode_size = if rev == 0 {
            128
        } else {
            u16le(&sb, 0x58) as u64
        };
        if !(128..=bs).contains(&inode_size) || !inode_size.is_power_of_two() {
            return Err(bad("inode size"));
        }
        let is64 = incompat & INCOMPAT_64BIT != 0;
        let desc_size = if is64 { u16le(&sb, 0xFE) as u64 } else { 32 };
        if (is64 && desc_size < 64) || desc_size > bs || !desc_size.is_power_of_two() {
            return Err(bad("group descriptor size"));
        }
        let mut blocks = u32le(&sb, 0x4) as u64;
        if is64 {
            blocks |= (u32le(&sb, 0x150) as u64) << 32;
        }
        let first_data_block = u32le(&sb, 0x14) as u64;
        let blocks_per_group = u32le(&sb, 0x20) as u64;
        let inodes_per_group = u32le(&sb, 0x28);
        let inodes_count = u32le(&sb, 0x0);
        if blocks_per_group == 0 || blocks_per_group > 8 * bs {
            return Err(bad("blocks per group"));
        }
        if inodes_per_group == 0 || inodes_per_group as u64 > 8 * bs {
            return Err(bad("inodes per group"));
        }
        if blocks <= first_data_block {
            return Err(bad("block count"));
        }
        let groups = (blocks - first_data_block).div_ceil(blocks_per_group);
        if (inodes_count as u64).div_ceil(inodes_per_group as u64) > groups {
            return Err(bad("more inodes than groups can hold"));
        }
        let label_raw = &sb[0x78..0x88];
        let end = label_raw.iter().position(|&c| c == 0).unwrap_or(16);
        let label = String::from_utf8_lossy(&label_raw[..end]).into_owned();
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(&sb[0x68..0x78]);
        let first_meta_bg = if incompat & INCOMPAT_META_BG != 0 {
            u32le(&sb, 0x104) as u64
        } else {
            u64::MAX
        };
        Ok(Ext4 {
            src,
            base,
            bs,
            blocks,
            first_data_block,
            blocks_per_group,
            inodes_per_group,
            inodes_count,
            inode_size,
            desc_size,
            groups,
            first_meta_bg,
            incompat,
            ro_compat,
            label,
            uuid,
        })
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    /// The UUID in its usual text form (as blkid and fstab's `UUID=` show it).
    pub fn uuid(&self) -> String {
        crate::uuid::Uuid(self.uuid).to_string()
    }

    /// The filesystem's size in bytes.
    pub fn size_bytes(&self) -> u64 {
        self.blocks.saturating_mul(self.bs)
    }

    /// The journal was not replayed (unclean shutdown): recent changes may
    /// be missing from what this reader sees.
    pub fn needs_recovery(&self) -> bool {
        self.incompat & INCOMPAT_RECOVER != 0
    }

    fn read(&self, what: &'static str, off: u64, buf: &mut [u8]) -> R<()> {
        let abs = self
            .base
            .checked_add(off)
            .ok_or(ReadError::Superblock("offset overflow".into()))?;
        self.src.read_at(abs, buf).map_err(|source| ReadError::Io {
            what,
            offset: abs,
            source,
        })
    }

    fn block(&self, what: &'static str, b: u64) -> R<Vec<u8>> {
        if b >= self.blocks {
            return Err(ReadError::Superblock(format!(
                "{what}: block {b} is beyond the filesystem's {} blocks",
                self.blocks
            )));
        }
        let mut v = vec![0u8; self.bs as usize];
        self.read(what, b * self.bs, &mut v)?;
        Ok(v)
    }

    /// The byte offset of group `g`'s descriptor (group_descr.rst: the
    /// table follows the superblock's block; with meta_bg, groups from
    /// `s_first_meta_bg` on keep theirs in the first block of their meta
    /// group, after that group's superblock backup if it has one).
    fn desc_offset(&self, g: u64) -> u64 {
        let per_block = self.bs / self.desc_size;
        let meta = g / per_block;
        if meta >= self.first_meta_bg {
            let first = meta * per_block;
            let sparse = self.ro_compat & RO_COMPAT_SPARSE_SUPER != 0;
            let blk = self.first_data_block
                + first * self.blocks_per_group
                + u64::from(has_super(first, sparse));
            blk * self.bs + (g % per_block) * self.desc_size
        } else {
            (self.first_data_block + 1) * self.bs + g * self.desc_size
        }
    }

    /// Reads inode `ino`.
    pub fn inode(&self, ino: u32) -> R<Inode> {
        let bad = |d: &str| ReadError::Inode {
            ino,
            detail: d.to_string(),
        };
        if ino == 0 || ino > self.inodes_count {
            return Err(bad("inode number out of range"));
        }
        let g = ((ino - 1) / self.inodes_per_group) as u64;
        let idx = ((ino - 1) % self.inodes_per_group) as u64;
        if g >= self.groups {
            return Err(bad("group out of range"));
        }
        let mut d = vec![0u8; self.desc_size as usize];
        self.read("group descriptor", self.desc_offset(g), &mut d)?;
        let mut table = u32le(&d, 0x8) as u64;
        if self.desc_size >= 64 {
            table |= (u32le(&d, 0x28) as u64) << 32;
        }
        let end_blk = (idx + 1) * self.inode_size / self.bs;
        if table == 0 || table.saturating_add(end_blk) >= self.blocks {
            return Err(bad("inode table outside the filesystem"));
        }
        let mut rec = vec![0u8; self.inode_size as usize];
        self.read("inode", table * self.bs + idx * self.inode_size, &mut rec)?;
        let mode = u16le(&rec, 0x0);
        let flags = u32le(&rec, 0x20);
        let size = u32le(&rec, 0x4) as u64 | (u32le(&rec, 0x6C) as u64) << 32;
        let mut sectors = u32le(&rec, 0x1C) as u64;
        if self.ro_compat & RO_COMPAT_HUGE_FILE != 0 {
            sectors |= (u16le(&rec, 0x74) as u64) << 32;
            if flags & HUGE_FILE_FL != 0 {
                sectors = sectors.saturating_mul(self.bs / 512);
            }
        }
        let file_acl = u32le(&rec, 0x68) as u64 | (u16le(&rec, 0x76) as u64) << 32;
        let mut i_block = [0u8; 60];
        i_block.copy_from_slice(&rec[0x28..0x64]);
        let ibody_xattr = if self.inode_size > 128 {
            let extra = u16le(&rec, 0x80) as usize;
            let start = 128 + extra;
            if start + 4 <= rec.len() {
                rec[start..].to_vec()
            } else {
                Vec::new()
            }
        } else {
            Vec::new()
        };
        Ok(Inode {
            ino,
            mode,
            size,
            flags,
            sectors,
            file_acl,
            i_block,
            ibody_xattr,
        })
    }

    /// The value of in-inode xattr `system.data` (inline data beyond
    /// i_block; attributes.rst: magic 0xEA020000, then entries of
    /// name_len, name_index, value_offs, value_inum, value_size, hash,
    /// name, 4-byte aligned; value offsets count from the first entry).
    fn inline_tail(&self, i: &Inode) -> Vec<u8> {
        let x = &i.ibody_xattr;
        if x.len() < 8 || u32le(x, 0) != 0xEA02_0000 {
            return Vec::new();
        }
        let body = &x[4..];
        let mut o = 0usize;
        while o + 16 <= body.len() {
            let name_len = body[o] as usize;
            let index = body[o + 1];
            if name_len == 0 && index == 0 && u32le(body, o) == 0 {
                break;
            }
            let voff = u16le(body, o + 2) as usize;
            let vsize = u32le(body, o + 8) as usize;
            let name_end = o + 16 + name_len;
            if name_end > body.len() {
                break;
            }
            if index == 7 && &body[o + 16..name_end] == b"data" {
                return body
                    .get(voff..voff.saturating_add(vsize))
                    .map(<[u8]>::to_vec)
                    .unwrap_or_default();
            }
            o = (name_end + 3) & !3;
        }
        Vec::new()
    }

    /// The bytes of an inline-data inode.
    fn inline_data(&self, i: &Inode) -> Vec<u8> {
        let mut v = i.i_block.to_vec();
        v.extend(self.inline_tail(i));
        v.truncate(i.size.min(v.len() as u64) as usize);
        v
    }

    /// The inode's block runs, in logical order.
    fn runs(&self, i: &Inode) -> R<Vec<Run>> {
        let mut out = Vec::new();
        if i.flags & EXTENTS_FL != 0 {
            let mut budget = MAX_EXTENTS;
            self.extent_node(i.ino, &i.i_block, None, &mut out, &mut budget)?;
        } else {
            self.block_map(i, &mut out)?;
        }
        out.sort_by_key(|r| r.lblk);
        Ok(out)
    }

    /// Walks an extent node (ifork.rst: 12-byte header magic 0xF30A,
    /// entries, max, depth; leaves are ee_block, ee_len (> 32768 means
    /// uninitialized), ee_start_hi, ee_start_lo; index entries ei_block,
    /// ei_leaf_lo, ei_leaf_hi).
    fn extent_node(
        &self,
        ino: u32,
        node: &[u8],
        want_depth: Option<u16>,
        out: &mut Vec<Run>,
        budget: &mut usize,
    ) -> R<()> {
        let bad = |d: String| ReadError::Extent { ino, detail: d };
        if node.len() < 12 || u16le(node, 0) != 0xF30A {
            return Err(bad("bad extent header magic".into()));
        }
        let entries = u16le(node, 2) as usize;
        let depth = u16le(node, 6);
        if depth > MAX_EXTENT_DEPTH || want_depth.is_some_and(|w| w != depth) {
            return Err(bad(format!("depth {depth} is inconsistent")));
        }
        if 12 + entries * 12 > node.len() {
            return Err(bad(format!("{entries} entries do not fit in the node")));
        }
        for k in 0..entries {
            if *budget == 0 {
                return Err(bad("too many extents".into()));
            }
            *budget -= 1;
            let e = &node[12 + 12 * k..24 + 12 * k];
            if depth == 0 {
                let lblk = u32le(e, 0) as u64;
                let raw = u16le(e, 4) as u64;
                let (len, zero) = if raw > 32768 {
                    (raw - 32768, true)
                } else {
                    (raw, false)
                };
                let pblk = (u16le(e, 6) as u64) << 32 | u32le(e, 8) as u64;
                if len == 0 {
                    continue;
                }
                if pblk.saturating_add(len) > self.blocks {
                    return Err(bad(format!(
                        "extent at block {pblk} (+{len}) is beyond the filesystem"
                    )));
                }
                out.push(Run {
                    lblk,
                    pblk,
                    len,
                    zero,
                });
            } else {
                let child = (u16le(e, 8) as u64) << 32 | u32le(e, 4) as u64;
                let blk = self.block("extent tree block", child)?;
                self.extent_node(ino, &blk, Some(depth - 1), out, budget)?;
            }
        }
        Ok(())
    }

    /// The old ext2/3 block map (blockmap.rst): 12 direct blocks, then one
    /// indirect, one double and one triple indirect block.
    fn block_map(&self, i: &Inode, out: &mut Vec<Run>) -> R<()> {
        let nblocks = i.size.div_ceil(self.bs);
        let mut budget = MAX_EXTENTS;
        let push = |lblk: u64, pblk: u64, out: &mut Vec<Run>| {
            if let Some(last) = out.last_mut() {
                if last.lblk + last.len == lblk && last.pblk + last.len == pblk {
                    last.len += 1;
                    return;
                }
            }
            out.push(Run {
                lblk,
                pblk,
                len: 1,
                zero: false,
            });
        };
        for k in 0..12u64 {
            let p = u32le(&i.i_block, 4 * k as usize) as u64;
            if k < nblocks && p != 0 && p < self.blocks {
                push(k, p, out);
            }
        }
        let per = self.bs / 4;
        let mut lblk = 12u64;
        for (slot, level) in [(12usize, 1u32), (13, 2), (14, 3)] {
            let span = per.saturating_pow(level);
            let p = u32le(&i.i_block, 4 * slot) as u64;
            if p != 0 && lblk < nblocks {
                self.indirect(i.ino, p, level, lblk, nblocks, &mut budget, &mut |l, b| {
                    push(l, b, out)
                })?;
            }
            lblk = lblk.saturating_add(span);
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn indirect(
        &self,
        ino: u32,
        blk: u64,
        level: u32,
        first: u64,
        nblocks: u64,
        budget: &mut usize,
        push: &mut dyn FnMut(u64, u64),
    ) -> R<()> {
        if *budget == 0 {
            return Err(ReadError::Inode {
                ino,
                detail: "block map too large".into(),
            });
        }
        *budget -= 1;
        let b = self.block("indirect block", blk)?;
        let per = self.bs / 4;
        let span = per.saturating_pow(level - 1);
        for k in 0..per {
            let l = first.saturating_add(k.saturating_mul(span));
            if l >= nblocks {
                break;
            }
            let p = u32le(&b, 4 * k as usize) as u64;
            if p == 0 || p >= self.blocks {
                continue;
            }
            if level == 1 {
                push(l, p);
            } else {
                self.indirect(ino, p, level - 1, l, nblocks, budget, push)?;
            }
        }
        Ok(())
    }

    /// Streams the file's `size` bytes into `w` (holes as zeros).
    pub fn copy_to(&self, i: &Inode, w: &mut dyn Write) -> R<u64> {
        if i.flags & INLINE_DATA_FL != 0 {
            let d = self.inline_data(i);
            w.write_all(&d).map_err(ReadError::Write)?;
            return Ok(d.len() as u64);
        }
        let runs = self.runs(i)?;
        let mut pos = 0u64; // bytes written
        let zeros = vec![0u8; 1 << 16];
        let mut buf = vec![0u8; 1 << 20];
        let zero_fill = |w: &mut dyn Write, n: u64| -> R<()> {
            let mut left = n;
            while left > 0 {
                let k = left.min(zeros.len() as u64) as usize;
                w.write_all(&zeros[..k]).map_err(ReadError::Write)?;
                left -= k as u64;
            }
            Ok(())
        };
        for r in runs {
            let start = r.lblk.saturating_mul(self.bs);
            if start >= i.size {
                break;
            }
            if start > pos {
                zero_fill(w, start - pos)?;
                pos = start;
            }
            if start < pos {
                // Overlapping runs: a corrupt tree; skip what is covered.
                continue;
            }
            let run_bytes = r.len.saturating_mul(self.bs).min(i.size - start);
            if r.zero {
                zero_fill(w, run_bytes)?;
            } else {
                let mut done = 0u64;
                while done < run_bytes {
                    let k = (run_bytes - done).min(buf.len() as u64) as usize;
                    self.read("file data", r.pblk * self.bs + done, &mut buf[..k])?;
                    w.write_all(&buf[..k]).map_err(ReadError::Write)?;
                    done += k as u64;
                }
            }
            pos += run_bytes;
        }
        if pos < i.size {
            zero_fill(w, i.size - pos)?;
            pos = i.size;
        }
        Ok(pos)
    }

    /// The bytes of the file's data that have blocks, within its size:
    /// holes and unwritten extents are not counted (`get-kernel` refuses a
    /// file that is mostly holes before writing it out).
    pub fn allocated_bytes(&self, i: &Inode) -> R<u64> {
        if i.flags & INLINE_DATA_FL != 0 {
            return Ok(self.inline_data(i).len() as u64);
        }
        let mut n = 0u64;
        for r in self.runs(i)? {
            let start = r.lblk.saturating_mul(self.bs);
            if r.zero || start >= i.size {
                continue;
            }
            n = n.saturating_add(r.len.saturating_mul(self.bs).min(i.size - start));
        }
        Ok(n.min(i.size))
    }

    /// The whole file, refused above `limit` bytes.
    pub fn read_all(&self, i: &Inode, limit: u64) -> R<Vec<u8>> {
        if i.size > limit {
            return Err(ReadError::Inode {
                ino: i.ino,
                detail: format!("{} bytes is more than the {limit} expected", i.size),
            });
        }
        let mut v = Vec::with_capacity(i.size as usize);
        self.copy_to(i, &mut v)?;
        Ok(v)
    }

    /// A symlink's target: in i_block for a fast symlink (no data blocks
    /// besides an xattr block, as the kernel's ext4_inode_is_fast_symlink
    /// decides), else in its data.
    pub fn readlink(&self, i: &Inode) -> R<Vec<u8>> {
        if i.size > MAX_SYMLINK {
            return Err(ReadError::Inode {
                ino: i.ino,
                detail: "symlink target longer than 4096 bytes".into(),
            });
        }
        let xattr_sectors = if i.file_acl != 0 { self.bs / 512 } else { 0 };
        let fast = i.flags & (EXTENTS_FL | INLINE_DATA_FL) == 0
            && i.size < 60
            && i.sectors.saturating_sub(xattr_sectors) == 0;
        if fast {
            return Ok(i.i_block[..i.size as usize].to_vec());
        }
        self.read_all(i, MAX_SYMLINK)
    }

    /// A directory's entries ("." and ".." included).
    pub fn read_dir(&self, d: &Inode) -> R<Vec<DirEntry>> {
        let bad = |s: String| ReadError::Dir {
            ino: d.ino,
            detail: s,
        };
        if !d.is_dir() {
            return Err(bad("not a directory".into()));
        }
        if d.size > MAX_DIR_BYTES {
            return Err(bad(format!("{} bytes is implausibly large", d.size)));
        }
        let filetype = self.incompat & INCOMPAT_FILETYPE != 0;
        let mut out = Vec::new();
        if d.flags & INLINE_DATA_FL != 0 {
            // inline directory (inline_data.rst): 4-byte parent inode, then
            // ordinary entries in the rest of i_block and in system.data.
            let mut raw = d.i_block.to_vec();
            let parent = u32le(&raw, 0);
            out.push(DirEntry {
                name: b".".to_vec(),
                ino: d.ino,
                ftype: 2,
            });
            out.push(DirEntry {
                name: b"..".to_vec(),
                ino: parent,
                ftype: 2,
            });
            parse_entries(&raw[4..], filetype, &mut out);
            raw = self.inline_tail(d);
            parse_entries(&raw, filetype, &mut out);
            return Ok(out);
        }
        let mut data = Vec::new();
        self.copy_to(d, &mut data)?;
        for blk in data.chunks(self.bs as usize) {
            parse_entries(blk, filetype, &mut out);
        }
        Ok(out)
    }

    /// Looks `name` up in directory `d`.
    pub fn lookup(&self, d: &Inode, name: &[u8]) -> R<Option<u32>> {
        Ok(self
            .read_dir(d)?
            .into_iter()
            .find(|e| e.name == name)
            .map(|e| e.ino))
    }
}

/// Entries of one directory block (directory.rst: inode, rec_len, name_len
/// (u8 with `filetype`, else u16), file_type, name). A damaged rec_len
/// ends the block rather than the whole read.
fn parse_entries(b: &[u8], filetype: bool, out: &mut Vec<DirEntry>) {
    let mut o = 0usize;
    while o + 8 <= b.len() {
        let ino = u32le(b, o);
        let rec_len = u16le(b, o + 4) as usize;
        // rec_len 0 in a 64 KiB block means 65536 (ext4_rec_len_from_disk).
        let rec_len = if rec_len == 0 && b.len() == 65536 {
            65536
        } else {
            rec_len
        };
        if rec_len < 8 || o + rec_len > b.len() {
            break;
        }
        let (name_len, ftype) = if filetype {
            (b[o + 6] as usize, b[o + 7])
        } else {
            (u16le(b, o + 6) as usize, 0)
        };
        if ino != 0 && name_len > 0 && 8 + name_len <= rec_len {
            out.push(DirEntry {
                name: b[o + 8..o + 8 + name_len].to_vec(),
                ino,
                ftype,
            });
        }
        o += rec_len;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_super_groups() {
        let g: Vec<u64> = (0..100).filter(|&g| has_super(g, true)).collect();
        assert_eq!(g, vec![0, 1, 3, 5, 7, 9, 25, 27, 49, 81]);
        assert!(has_super(2, false));
    }

    #[test]
    fn garbage_is_not_ext4() {
        let z = vec![0u8; 8192];
        assert!(matches!(Ext4::open(&&z[..], 0), Err(ReadError::NotExt4)));
        assert!(matches!(Ext4::open(&&z[..100], 0), Err(ReadError::NotExt4)));
    }
}
