//! An independent consistency checker for the images this writer produces.
//!
//! It decodes every structure with its own small readers (it shares only
//! CRC32C, the half-MD4 name hash, the layout rules, the POSIX file-type
//! bits and the rule for which xattr names are valid (`xattr::full_name`)
//! with the writer), so a bug in one of the writer's encoders shows up as a
//! mismatch here instead of being reproduced. It is deliberately strict: it
//! accepts exactly the on-disk choices documented in
//! `mod.rs`/`layout.rs`/`superblock.rs` (4 KiB blocks, 256-byte inodes,
//! 64-byte descriptors, meta_bg with `s_first_meta_bg = 0`, flex_bg,
//! metadata_csum, htree, unsigned half-MD4), not every valid ext4
//! filesystem.
//!
//! Used by the fuzz target (every image the writer produces must pass) and by
//! unit tests; `e2fsck -fn` is the second, external oracle.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::fs::File;

use super::csum::raw;
use super::dirhash::half_md4;
use super::inode::{S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFMT, S_IFREG, S_IFSOCK};
use super::layout::{group_overhead, has_super, meta_gdt_block, BLOCKS_PER_GROUP};
use super::superblock::{FEATURE_COMPAT, FEATURE_INCOMPAT, FEATURE_RO_COMPAT};
use super::xattr::full_name;
use crate::image_io::{FileSource, ImageSource};

const BS: usize = 4096;
const BSU: u64 = 4096;
const BPG: u64 = BLOCKS_PER_GROUP;
const INODE_SIZE: usize = 256;
const FIRST_INO: u32 = 11;
const JOURNAL_INO: u32 = 8;
const ROOT_INO: u32 = 2;

const EXTENTS_FL: u32 = 0x80000;
const INDEX_FL: u32 = 0x1000;

const XATTR_MAGIC: u32 = 0xEA02_0000;
const JBD2_MAGIC: u32 = 0xC03B_3998;

// Block owners in the claim map; anything else is an inode number.
const O_FREE: u32 = 0;
const O_FIXED: u32 = u32::MAX;
const O_BBM: u32 = u32::MAX - 1;
const O_IBM: u32 = u32::MAX - 2;
const O_ITABLE: u32 = u32::MAX - 3;
const O_XATTR: u32 = u32::MAX - 4;

/// Which structure a check failed in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Structure {
    /// The image as a whole (too short, unreadable).
    Image,
    Superblock,
    BackupSuperblock {
        group: u64,
    },
    GroupDesc {
        group: u64,
    },
    BlockBitmap {
        group: u64,
    },
    InodeBitmap {
        group: u64,
    },
    Inode {
        ino: u32,
    },
    ExtentTree {
        ino: u32,
    },
    /// In-inode extended attributes.
    Xattr {
        ino: u32,
    },
    XattrBlock {
        block: u64,
    },
    /// A directory's entries (linear or leaf blocks), link counts.
    Dir {
        ino: u32,
    },
    /// A directory's hash-tree index (dx_root, dx_node).
    Htree {
        ino: u32,
    },
    Journal,
    /// Block ownership: a block used but unclaimed, or claimed twice.
    Block {
        block: u64,
    },
}

impl fmt::Display for Structure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Structure::Image => write!(f, "image"),
            Structure::Superblock => write!(f, "superblock"),
            Structure::BackupSuperblock { group } => {
                write!(f, "backup superblock in group {group}")
            }
            Structure::GroupDesc { group } => write!(f, "group descriptor {group}"),
            Structure::BlockBitmap { group } => write!(f, "block bitmap of group {group}"),
            Structure::InodeBitmap { group } => write!(f, "inode bitmap of group {group}"),
            Structure::Inode { ino } => write!(f, "inode {ino}"),
            Structure::ExtentTree { ino } => write!(f, "extent tree of inode {ino}"),
            Structure::Xattr { ino } => write!(f, "in-inode xattrs of inode {ino}"),
            Structure::XattrBlock { block } => write!(f, "xattr block {block}"),
            Structure::Dir { ino } => write!(f, "directory inode {ino}"),
            Structure::Htree { ino } => write!(f, "htree index of directory inode {ino}"),
            Structure::Journal => write!(f, "journal"),
            Structure::Block { block } => write!(f, "block {block}"),
        }
    }
}

/// A failed check: where, and what differs.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{what}: {detail}")]
pub struct VerifyError {
    pub what: Structure,
    pub detail: String,
}

/// Counts of what the image holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub groups: u64,
    pub blocks_count: u64,
    /// Blocks marked used in the block bitmaps (inside the filesystem).
    pub blocks_used: u64,
    /// Inodes marked used in the inode bitmaps (reserved ones included).
    pub inodes: u64,
    pub dirs: u64,
    /// Regular files, the journal not included.
    pub files: u64,
    pub symlinks: u64,
    /// Device nodes, FIFOs and sockets.
    pub special: u64,
    pub xattr_blocks: u64,
    /// Directories with a hash-tree index, and their dx_node blocks.
    pub indexed_dirs: u64,
    pub dx_nodes: u64,
}

type R<T> = Result<T, VerifyError>;
/// A directory entry: name, inode, file type.
type DirEnt = (Vec<u8>, u32, u8);

fn err<T>(what: Structure, detail: impl Into<String>) -> R<T> {
    Err(VerifyError {
        what,
        detail: detail.into(),
    })
}

macro_rules! ensure {
    ($cond:expr, $what:expr, $($fmt:tt)+) => {
        if !$cond {
            return err($what, format!($($fmt)+));
        }
    };
}

// Own little-endian readers (bounds are the caller's job: all buffers are
// fixed-size and offsets constant or checked).
fn u16le(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
fn u32le(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}
fn u32be(b: &[u8], o: usize) -> u32 {
    u32::from_be_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

/// Check an in-memory image.
pub fn verify(img: &[u8]) -> Result<Report, VerifyError> {
    verify_source(&img)
}

/// Check an image file.
pub fn verify_file(file: &File) -> Result<Report, VerifyError> {
    let len = file.metadata().map_err(|e| VerifyError {
        what: Structure::Image,
        detail: format!("cannot stat: {e}"),
    })?;
    verify_source(&FileSource {
        file,
        len: len.len(),
    })
}

/// Check an image behind any [`ImageSource`].
pub fn verify_source(src: &dyn ImageSource) -> Result<Report, VerifyError> {
    let mut ck = Checker::open(src)?;
    ck.run()
}

#[derive(Clone, Debug, Default)]
struct Desc {
    block_bitmap: u64,
    inode_bitmap: u64,
    inode_table: u64,
    free_blocks: u32,
    free_inodes: u32,
    used_dirs: u32,
    flags: u16,
    itable_unused: u32,
    bbm_csum: u32,
    ibm_csum: u32,
}

/// One extent as decoded: logical start, physical start, length.
#[derive(Clone, Copy, Debug)]
struct Ext {
    lblk: u64,
    pblk: u64,
    len: u64,
}

/// What later passes need to know about a used inode.
#[derive(Clone, Debug, Default)]
struct InodeInfo {
    mode: u16,
    links: u16,
    flags: u32,
    size: u64,
    iseed: u32,
    /// Physical block per logical block, for directories and the journal.
    map: Vec<u64>,
}

struct Checker<'a> {
    src: &'a dyn ImageSource,
    sb: Vec<u8>,
    fs_seed: u32,
    blocks: u64,
    groups: u64,
    ipg: u32,
    inodes_count: u32,
    hash_seed: [u32; 4],
    owner: Vec<u32>,
    descs: Vec<Desc>,
    /// Block bitmap bits for every block of every group.
    bbm: Vec<u8>,
    /// Inode bitmap bits (ipg per group).
    ibm: Vec<u8>,
    inodes: HashMap<u32, InodeInfo>,
    /// Xattr block → (inodes referencing it, h_refcount).
    xattr_refs: HashMap<u64, (u32, u32)>,
    report: Report,
}

fn group_of_block(b: u64) -> u64 {
    b / BPG
}

impl<'a> Checker<'a> {
    fn read(&self, what: Structure, off: u64, buf: &mut [u8]) -> R<()> {
        self.src.read_at(off, buf).map_err(|e| VerifyError {
            what,
            detail: format!("cannot read {} bytes at offset {off}: {e}", buf.len()),
        })
    }

    fn block(&self, what: Structure, b: u64) -> R<Vec<u8>> {
        ensure!(
            b < self.blocks,
            what,
            "block {b} is outside the filesystem ({} blocks)",
            self.blocks
        );
        let mut buf = vec![0u8; BS];
        self.read(what, b * BSU, &mut buf)?;
        Ok(buf)
    }

    /// The superblock read and judged, as a table of contents: magic and
    /// checksum, the fields this writer always sets the same way, then the
    /// geometry (blocks, groups, inodes) against the image's size.
    fn open(src: &'a dyn ImageSource) -> R<Self> {
        let sb = read_superblock(src)?;
        check_fixed_fields(&sb)?;
        let g = check_geometry(&sb, src.size())?;
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(&sb[0x68..0x78]);
        let fs_seed = raw(!0, &uuid);
        let hash_seed = [
            u32le(&sb, 0xEC),
            u32le(&sb, 0xF0),
            u32le(&sb, 0xF4),
            u32le(&sb, 0xF8),
        ];
        Ok(Checker {
            src,
            sb,
            fs_seed,
            blocks: g.blocks,
            groups: g.groups,
            ipg: g.ipg,
            inodes_count: g.inodes_count,
            hash_seed,
            owner: vec![O_FREE; g.blocks as usize],
            descs: Vec::new(),
            bbm: Vec::new(),
            ibm: Vec::new(),
            inodes: HashMap::new(),
            xattr_refs: HashMap::new(),
            report: Report {
                groups: g.groups,
                blocks_count: g.blocks,
                ..Default::default()
            },
        })
    }

    fn describe_owner(o: u32) -> String {
        match o {
            O_FIXED => "fixed metadata (superblock/descriptor copy)".into(),
            O_BBM => "a block bitmap".into(),
            O_IBM => "an inode bitmap".into(),
            O_ITABLE => "an inode table".into(),
            O_XATTR => "an xattr block".into(),
            ino => format!("inode {ino}"),
        }
    }

    /// Record that `owner` uses blocks `start..start+len`.
    fn claim(&mut self, what: &Structure, start: u64, len: u64, owner: u32) -> R<()> {
        let end = start.checked_add(len);
        ensure!(
            end.is_some_and(|e| e <= self.blocks),
            what.clone(),
            "blocks {start}+{len} reach past the end of the filesystem ({} blocks)",
            self.blocks
        );
        for b in start..start + len {
            let o = self.owner[b as usize];
            ensure!(
                o == O_FREE,
                what.clone(),
                "block {b} is claimed by {} and already by {}",
                Self::describe_owner(owner),
                Self::describe_owner(o)
            );
            self.owner[b as usize] = owner;
        }
        Ok(())
    }

    fn run(&mut self) -> R<Report> {
        self.check_backup_superblocks()?;
        for g in 0..self.groups {
            let n = group_overhead(g);
            self.claim(&Structure::GroupDesc { group: g }, g * BPG, n, O_FIXED)?;
        }
        self.check_descriptors()?;
        self.check_bitmaps()?;
        self.check_inodes()?;
        self.check_journal()?;
        self.check_tree()?;
        self.check_accounting()?;
        Ok(self.report.clone())
    }

    fn check_backup_superblocks(&self) -> R<()> {
        for g in 1..self.groups {
            if !has_super(g) {
                continue;
            }
            let w = Structure::BackupSuperblock { group: g };
            let mut b = vec![0u8; 1024];
            self.read(w.clone(), g * BPG * BSU, &mut b)?;
            let c = raw(!0, &b[..0x3FC]);
            ensure!(
                c == u32le(&b, 0x3FC),
                w,
                "checksum {:#010x} stored, {c:#010x} computed",
                u32le(&b, 0x3FC)
            );
            ensure!(
                u16le(&b, 0x5A) as u64 == g & 0xFFFF,
                w,
                "s_block_group_nr is {}",
                u16le(&b, 0x5A)
            );
            if let Some(i) = (0..0x3FC).find(|&i| !(0x5A..0x5C).contains(&i) && b[i] != self.sb[i])
            {
                return err(
                    w,
                    format!(
                        "differs from the primary at offset {i:#x} ({:#04x} vs {:#04x})",
                        b[i], self.sb[i]
                    ),
                );
            }
        }
        Ok(())
    }

    fn check_descriptors(&mut self) -> R<()> {
        let itb = (self.ipg as u64).div_ceil(16);
        for m in 0..self.groups.div_ceil(64) {
            let first = m * 64;
            let mut copies = Vec::new();
            for g in [first, first + 1, first + 63] {
                if g < self.groups {
                    let b = meta_gdt_block(g).expect("meta_bg group has a descriptor copy");
                    copies.push((g, self.block(Structure::GroupDesc { group: first }, b)?));
                }
            }
            let primary = copies[0].1.clone();
            for g in first..(first + 64).min(self.groups) {
                let w = Structure::GroupDesc { group: g };
                let o = ((g - first) * 64) as usize;
                let d = &primary[o..o + 64];
                let mut z = d.to_vec();
                z[0x1E] = 0;
                z[0x1F] = 0;
                let c = raw(raw(self.fs_seed, &(g as u32).to_le_bytes()), &z) & 0xFFFF;
                ensure!(
                    c == u16le(d, 0x1E) as u32,
                    w,
                    "checksum {:#06x} stored, {c:#06x} computed",
                    u16le(d, 0x1E)
                );
                let lohi16 =
                    |lo: usize, hi: usize| u16le(d, lo) as u32 | (u16le(d, hi) as u32) << 16;
                let lohi32 =
                    |lo: usize, hi: usize| u32le(d, lo) as u64 | (u32le(d, hi) as u64) << 32;
                let desc = Desc {
                    block_bitmap: lohi32(0x00, 0x20),
                    inode_bitmap: lohi32(0x04, 0x24),
                    inode_table: lohi32(0x08, 0x28),
                    free_blocks: lohi16(0x0C, 0x2C),
                    free_inodes: lohi16(0x0E, 0x2E),
                    used_dirs: lohi16(0x10, 0x30),
                    flags: u16le(d, 0x12),
                    itable_unused: lohi16(0x1C, 0x32),
                    bbm_csum: lohi16(0x18, 0x38),
                    ibm_csum: lohi16(0x1A, 0x3A),
                };
                ensure!(
                    desc.flags & !0x5 == 0,
                    w,
                    "bg_flags {:#x}: only INODE_UNINIT|INODE_ZEROED are expected",
                    desc.flags
                );
                ensure!(
                    desc.flags & 0x4 != 0,
                    w,
                    "bg_flags {:#x} lacks INODE_ZEROED",
                    desc.flags
                );
                ensure!(
                    u32le(d, 0x14) == 0 && u32le(d, 0x34) == 0 && u32le(d, 0x3C) == 0,
                    w,
                    "exclude bitmap or reserved fields are not zero"
                );
                ensure!(
                    desc.itable_unused <= self.ipg && desc.free_inodes <= self.ipg,
                    w,
                    "free inodes {} / itable_unused {} exceed inodes per group {}",
                    desc.free_inodes,
                    desc.itable_unused,
                    self.ipg
                );
                self.claim(&w, desc.block_bitmap, 1, O_BBM)?;
                self.claim(&w, desc.inode_bitmap, 1, O_IBM)?;
                self.claim(&w, desc.inode_table, itb, O_ITABLE)?;
                self.descs.push(desc);
            }
            for (g, c) in &copies[1..] {
                if let Some(i) = (0..BS).find(|&i| c[i] != primary[i]) {
                    return err(
                        Structure::GroupDesc {
                            group: first + i as u64 / 64,
                        },
                        format!("the copy in group {g} differs from the one in group {first} at byte {}", i % 64),
                    );
                }
            }
        }
        Ok(())
    }

    fn check_bitmaps(&mut self) -> R<()> {
        let ib_bytes = (self.ipg / 8) as usize;
        let mut free_blocks = 0u64;
        let mut free_inodes = 0u64;
        self.bbm = Vec::with_capacity((self.groups * BPG / 8) as usize);
        self.ibm = Vec::with_capacity(self.groups as usize * ib_bytes);
        for g in 0..self.groups {
            let d = self.descs[g as usize].clone();
            // Block bitmap.
            let w = Structure::BlockBitmap { group: g };
            let bb = self.block(w.clone(), d.block_bitmap)?;
            let c = raw(self.fs_seed, &bb);
            ensure!(
                c == d.bbm_csum,
                w,
                "checksum {:#010x} in the descriptor, {c:#010x} computed",
                d.bbm_csum
            );
            let in_group = (self.blocks - g * BPG).min(BPG);
            for i in in_group..BPG {
                ensure!(
                    bb[(i / 8) as usize] & (1 << (i % 8)) != 0,
                    w,
                    "padding bit {i} (past the end of the filesystem) is clear"
                );
            }
            let used: u64 =
                bb.iter().map(|x| x.count_ones() as u64).sum::<u64>() - (BPG - in_group);
            let free = in_group - used;
            ensure!(
                free == d.free_blocks as u64,
                w,
                "{free} blocks free in the bitmap, descriptor says {}",
                d.free_blocks
            );
            free_blocks += free;
            self.report.blocks_used += used;
            self.bbm.extend_from_slice(&bb);
            // Inode bitmap.
            let w = Structure::InodeBitmap { group: g };
            let ib = self.block(w.clone(), d.inode_bitmap)?;
            let c = raw(self.fs_seed, &ib[..ib_bytes]);
            ensure!(
                c == d.ibm_csum,
                w,
                "checksum {:#010x} in the descriptor, {c:#010x} computed",
                d.ibm_csum
            );
            if let Some(i) = ib[ib_bytes..].iter().position(|&x| x != 0xFF) {
                return err(
                    w,
                    format!(
                        "padding byte {} (past inodes_per_group) is not 0xFF",
                        ib_bytes + i
                    ),
                );
            }
            let used: u32 = ib[..ib_bytes].iter().map(|x| x.count_ones()).sum();
            ensure!(
                self.ipg - used == d.free_inodes,
                w,
                "{} inodes free in the bitmap, descriptor says {}",
                self.ipg - used,
                d.free_inodes
            );
            let limit = self.ipg - d.itable_unused;
            for i in limit..self.ipg {
                ensure!(
                    ib[(i / 8) as usize] & (1 << (i % 8)) == 0,
                    w,
                    "inode {} is used but past bg_itable_unused ({})",
                    g * self.ipg as u64 + i as u64 + 1,
                    d.itable_unused
                );
            }
            if d.flags & 0x1 != 0 {
                ensure!(
                    used == 0,
                    w,
                    "group is INODE_UNINIT but {used} inodes are used"
                );
            }
            free_inodes += (self.ipg - used) as u64;
            self.report.inodes += used as u64;
            self.ibm.extend_from_slice(&ib[..ib_bytes]);
        }
        let sb_free = u32le(&self.sb, 0x0C) as u64 | (u32le(&self.sb, 0x158) as u64) << 32;
        ensure!(
            sb_free == free_blocks,
            Structure::Superblock,
            "s_free_blocks_count {sb_free}, groups sum to {free_blocks}"
        );
        let sb_free_i = u32le(&self.sb, 0x10) as u64;
        ensure!(
            sb_free_i == free_inodes,
            Structure::Superblock,
            "s_free_inodes_count {sb_free_i}, groups sum to {free_inodes}"
        );
        // Reserved inodes 1..first_ino-1 are always marked in use.
        for ino in 1..FIRST_INO.min(self.ipg + 1) {
            ensure!(
                self.inode_used(ino),
                Structure::InodeBitmap { group: 0 },
                "reserved inode {ino} is not marked in use"
            );
        }
        Ok(())
    }

    fn inode_used(&self, ino: u32) -> bool {
        if ino == 0 || ino > self.inodes_count {
            return false;
        }
        let i = (ino - 1) as usize;
        self.ibm[i / 8] & (1 << (i % 8)) != 0
    }

    fn block_used(&self, b: u64) -> bool {
        self.bbm[(b / 8) as usize] & (1 << (b % 8)) != 0
    }

    fn check_inodes(&mut self) -> R<()> {
        let itb = (self.ipg as usize).div_ceil(16);
        let mut dirs_in_group = vec![0u32; self.groups as usize];
        for g in 0..self.groups {
            let base = (g * self.ipg as u64) as usize;
            let any = (0..self.ipg as usize)
                .any(|i| self.ibm[(base + i) / 8] & (1 << ((base + i) % 8)) != 0);
            if !any {
                continue;
            }
            let d = self.descs[g as usize].clone();
            let mut table = vec![0u8; itb * BS];
            self.read(
                Structure::GroupDesc { group: g },
                d.inode_table * BSU,
                &mut table,
            )?;
            for i in 0..self.ipg as usize {
                let ino = (base + i + 1) as u32;
                let rec: &[u8] = &table[i * INODE_SIZE..(i + 1) * INODE_SIZE];
                if !self.inode_used(ino) {
                    ensure!(
                        rec.iter().all(|&x| x == 0),
                        Structure::Inode { ino },
                        "unused inode in a zeroed inode table is not zero"
                    );
                    continue;
                }
                if ino != ROOT_INO && ino != JOURNAL_INO && ino < FIRST_INO {
                    continue;
                }
                let info = self.check_inode(ino, rec)?;
                if info.mode & S_IFMT == S_IFDIR {
                    dirs_in_group[g as usize] += 1;
                }
                self.inodes.insert(ino, info);
            }
        }
        for g in 0..self.groups {
            let d = &self.descs[g as usize];
            ensure!(
                d.used_dirs == dirs_in_group[g as usize],
                Structure::GroupDesc { group: g },
                "bg_used_dirs_count {} but {} directories in the group",
                d.used_dirs,
                dirs_in_group[g as usize]
            );
        }
        for (&b, &(refs, stored)) in &self.xattr_refs {
            ensure!(
                refs == stored,
                Structure::XattrBlock { block: b },
                "h_refcount {stored} but {refs} inodes point at it"
            );
        }
        Ok(())
    }

    /// One in-use inode, as a table of contents: the record's checksum, its
    /// type and flags, its xattrs, its blocks (an extent tree or the inline
    /// i_block), then i_blocks against what was found. The order of the
    /// checks is the order of the error an image gets reported with.
    fn check_inode(&mut self, ino: u32, rec: &[u8]) -> R<InodeInfo> {
        let iseed = self.check_inode_csum(ino, rec)?;
        let f = InodeFields::decode(rec);
        check_inode_type(ino, &f)?;
        let xattr_blocks = self.check_xattrs(ino, rec, f.file_acl)?;
        let mut info = InodeInfo {
            mode: f.mode,
            links: f.links,
            flags: f.flags,
            size: f.size,
            iseed,
            map: Vec::new(),
        };
        let uses_extents = match f.fmt() {
            S_IFREG | S_IFDIR => true,
            S_IFLNK => f.size >= 60,
            _ => false,
        };
        let (data_blocks, tree_blocks) = if uses_extents {
            self.check_mapped_inode(ino, &f, &mut info)?
        } else {
            check_inline_inode(ino, &f)?;
            (0, 0)
        };
        let (blocks512, want) = (f.blocks512, (data_blocks + tree_blocks + xattr_blocks) * 8);
        ensure!(
            blocks512 == want,
            Structure::Inode { ino },
            "i_blocks {blocks512}, expected {want} ({data_blocks} data + {tree_blocks} tree + {xattr_blocks} xattr blocks)"
        );
        match f.fmt() {
            S_IFDIR => self.report.dirs += 1,
            S_IFREG if ino != JOURNAL_INO => self.report.files += 1,
            S_IFLNK => self.report.symlinks += 1,
            S_IFREG => {}
            _ => self.report.special += 1,
        }
        Ok(info)
    }

    /// i_extra_isize and the record's CRC32C (seeded per inode by number
    /// and generation); returns that seed, which the inode's extent and
    /// directory blocks are checksummed with.
    fn check_inode_csum(&self, ino: u32, rec: &[u8]) -> R<u32> {
        let w = Structure::Inode { ino };
        let extra = u16le(rec, 0x80) as usize;
        ensure!(
            extra == 32,
            w.clone(),
            "i_extra_isize is {extra}, expected 32"
        );
        let gen = u32le(rec, 0x64);
        let iseed = raw(raw(self.fs_seed, &ino.to_le_bytes()), &gen.to_le_bytes());
        let mut z = rec.to_vec();
        z[0x7C..0x7E].fill(0);
        z[0x82..0x84].fill(0);
        let c = raw(iseed, &z);
        let stored = u16le(rec, 0x7C) as u32 | (u16le(rec, 0x82) as u32) << 16;
        ensure!(
            c == stored,
            w,
            "checksum {stored:#010x} stored, {c:#010x} computed"
        );
        Ok(iseed)
    }

    /// A file, directory, journal or slow symlink: its extent tree walked
    /// (every block claimed), dense where the checker later reads it by
    /// logical block (`info.map`), and the mapped end against i_size.
    /// Returns (data blocks, extent tree blocks).
    fn check_mapped_inode(
        &mut self,
        ino: u32,
        f: &InodeFields<'_>,
        info: &mut InodeInfo,
    ) -> R<(u64, u64)> {
        let w = Structure::Inode { ino };
        let (mode, size, fmt) = (f.mode, f.size, f.fmt());
        ensure!(
            f.flags & EXTENTS_FL != 0,
            w.clone(),
            "mode {mode:#o} without EXTENTS_FL"
        );
        let mut exts = Vec::new();
        let mut tree_blocks = 0u64;
        self.walk_extents(ino, info.iseed, f.ib, &mut exts, &mut tree_blocks)?;
        let mut data_blocks = 0u64;
        let mut end = 0u64;
        for e in &exts {
            data_blocks += e.len;
            end = e.lblk + e.len;
        }
        let keep_map = fmt == S_IFDIR || ino == JOURNAL_INO || fmt == S_IFLNK;
        if keep_map {
            // Dense: no holes from block 0 on.
            let mut next = 0;
            for e in &exts {
                ensure!(
                    e.lblk == next,
                    Structure::ExtentTree { ino },
                    "hole before logical block {} (mode {mode:#o} must be dense)",
                    e.lblk
                );
                next = e.lblk + e.len;
                info.map.extend(e.pblk..e.pblk + e.len);
            }
        }
        match fmt {
            S_IFREG => {
                ensure!(
                    end <= size.div_ceil(BSU),
                    w.clone(),
                    "extents reach logical block {end}, past i_size {size}"
                );
                ensure!(size < (1u64 << 32) * BSU, w, "i_size {size} too large");
            }
            S_IFDIR => {
                ensure!(end > 0, w.clone(), "directory without blocks");
                ensure!(
                    size == end * BSU,
                    w,
                    "directory i_size {size}, blocks mapped {end}"
                );
            }
            _ => {
                // Slow symlink: one block holding the target, NUL after it.
                ensure!(
                    size < BSU && end == 1,
                    w.clone(),
                    "slow symlink of size {size} maps {end} blocks"
                );
                let b = self.block(w.clone(), info.map[0])?;
                ensure!(
                    !b[..size as usize].contains(&0) && b[size as usize] == 0,
                    w,
                    "symlink target is not {size} non-NUL bytes followed by NUL"
                );
            }
        }
        Ok((data_blocks, tree_blocks))
    }

    /// Walk an extent tree rooted at `root` (60 bytes), appending leaf
    /// extents in order and counting tree blocks; claims every block.
    fn walk_extents(
        &mut self,
        ino: u32,
        iseed: u32,
        root: &[u8],
        out: &mut Vec<Ext>,
        tree_blocks: &mut u64,
    ) -> R<()> {
        let w = Structure::ExtentTree { ino };
        self.extent_node(ino, iseed, root, 4, None, 0, u64::MAX, out, tree_blocks)?;
        // Sorted, non-overlapping.
        for p in out.windows(2) {
            ensure!(
                p[0].lblk + p[0].len <= p[1].lblk,
                w,
                "extents at logical {} (+{}) and {} overlap or are out of order",
                p[0].lblk,
                p[0].len,
                p[1].lblk
            );
        }
        Ok(())
    }

    /// Check one extent node; `want_depth` is None for the root.
    #[allow(clippy::too_many_arguments)]
    fn extent_node(
        &mut self,
        ino: u32,
        iseed: u32,
        buf: &[u8],
        max: u16,
        want_depth: Option<u16>,
        lo: u64,
        hi: u64,
        out: &mut Vec<Ext>,
        tree_blocks: &mut u64,
    ) -> R<u16> {
        let w = Structure::ExtentTree { ino };
        ensure!(
            u16le(buf, 0) == 0xF30A,
            w.clone(),
            "bad extent header magic {:#06x}",
            u16le(buf, 0)
        );
        let entries = u16le(buf, 2);
        let emax = u16le(buf, 4);
        let depth = u16le(buf, 6);
        ensure!(emax == max, w.clone(), "eh_max {emax}, expected {max}");
        ensure!(
            entries <= emax,
            w.clone(),
            "eh_entries {entries} > eh_max {emax}"
        );
        ensure!(depth <= 5, w.clone(), "depth {depth} > 5");
        if let Some(d) = want_depth {
            ensure!(
                depth == d,
                w.clone(),
                "node depth {depth}, parent expects {d}"
            );
            ensure!(entries > 0, w.clone(), "empty non-root node");
        }
        let mut prev: Option<u64> = None;
        for i in 0..entries as usize {
            let e = &buf[12 + 12 * i..24 + 12 * i];
            let lblk = u32le(e, 0) as u64;
            ensure!(
                prev.is_none_or(|p| lblk > p),
                w.clone(),
                "entry {i} logical block {lblk} not after the previous one"
            );
            ensure!(
                lblk >= lo && lblk < hi,
                w.clone(),
                "entry {i} logical block {lblk} outside its parent's range [{lo}, {hi})"
            );
            prev = Some(lblk);
            if depth == 0 {
                let len = u16le(e, 4) as u64;
                ensure!(
                    len > 0 && len <= 32768,
                    w.clone(),
                    "extent length {len} (0 or unwritten)"
                );
                let pblk = u32le(e, 8) as u64 | (u16le(e, 6) as u64) << 32;
                ensure!(
                    lblk + len <= 1u64 << 32,
                    w.clone(),
                    "extent past logical block 2^32"
                );
                self.claim_extent(ino, pblk, len)?;
                out.push(Ext { lblk, pblk, len });
            } else {
                let child = u32le(e, 4) as u64 | (u16le(e, 8) as u64) << 32;
                ensure!(u16le(e, 10) == 0, w.clone(), "ei_unused is not zero");
                let next = if i + 1 < entries as usize {
                    u32le(buf, 12 + 12 * (i + 1)) as u64
                } else {
                    hi
                };
                ensure!(
                    child < self.blocks,
                    w.clone(),
                    "index points at block {child} outside the filesystem"
                );
                self.claim_extent(ino, child, 1)?;
                *tree_blocks += 1;
                let cb = self.block(w.clone(), child)?;
                let t = 12 + 12 * 340;
                let c = raw(iseed, &cb[..t]);
                ensure!(
                    c == u32le(&cb, t),
                    w.clone(),
                    "tree block {child}: checksum {:#010x} stored, {c:#010x} computed",
                    u32le(&cb, t)
                );
                let n_before = out.len();
                self.extent_node(
                    ino,
                    iseed,
                    &cb,
                    340,
                    Some(depth - 1),
                    lblk,
                    next,
                    out,
                    tree_blocks,
                )?;
                ensure!(
                    out.get(n_before).is_some_and(|x| x.lblk == lblk),
                    w.clone(),
                    "index entry for logical {lblk} does not match its subtree's first extent"
                );
            }
        }
        Ok(depth)
    }

    fn claim_extent(&mut self, ino: u32, pblk: u64, len: u64) -> R<()> {
        let w = Structure::ExtentTree { ino };
        self.claim(&w, pblk, len, ino)
    }

    /// Check in-inode xattrs and the xattr block; returns the number of
    /// xattr blocks (0 or 1).
    fn check_xattrs(&mut self, ino: u32, rec: &[u8], file_acl: u64) -> R<u64> {
        let w = Structure::Xattr { ino };
        let area = &rec[160..];
        let mut names = Vec::new();
        if u32le(area, 0) == XATTR_MAGIC {
            parse_xattr_entries(w.clone(), area, 4, 4, false, &mut names)?;
        } else {
            ensure!(
                area.iter().all(|&x| x == 0),
                w.clone(),
                "no xattr magic but the in-inode area is not zero"
            );
        }
        let mut nblocks = 0;
        if file_acl != 0 {
            nblocks = 1;
            let bw = Structure::XattrBlock { block: file_acl };
            ensure!(
                file_acl < self.blocks,
                w.clone(),
                "i_file_acl {file_acl} outside the filesystem"
            );
            if let Some(e) = self.xattr_refs.get_mut(&file_acl) {
                e.0 += 1;
            } else {
                self.claim(&w, file_acl, 1, O_XATTR)?;
                let b = self.block(bw.clone(), file_acl)?;
                ensure!(
                    u32le(&b, 0) == XATTR_MAGIC,
                    bw.clone(),
                    "bad magic {:#x}",
                    u32le(&b, 0)
                );
                ensure!(
                    u32le(&b, 8) == 1,
                    bw.clone(),
                    "h_blocks {} != 1",
                    u32le(&b, 8)
                );
                let mut z = b.clone();
                z[16..20].fill(0);
                let c = raw(raw(self.fs_seed, &file_acl.to_le_bytes()), &z);
                ensure!(
                    c == u32le(&b, 16),
                    bw.clone(),
                    "checksum {:#010x} stored, {c:#010x} computed",
                    u32le(&b, 16)
                );
                let mut bnames = Vec::new();
                let hashes = parse_xattr_entries(bw.clone(), &b, 32, 0, true, &mut bnames)?;
                let mut bh = 0u32;
                for h in hashes {
                    if h == 0 {
                        bh = 0;
                        break;
                    }
                    bh = (bh << 16) ^ (bh >> 16) ^ h;
                }
                ensure!(
                    bh == u32le(&b, 12),
                    bw.clone(),
                    "h_hash {:#x}, entries hash to {bh:#x}",
                    u32le(&b, 12)
                );
                self.xattr_refs.insert(file_acl, (1, u32le(&b, 4)));
                self.report.xattr_blocks += 1;
            }
            // Block names for the duplicate check.
            let b = self.block(bw.clone(), file_acl)?;
            let mut bnames = Vec::new();
            parse_xattr_entries(bw, &b, 32, 0, true, &mut bnames)?;
            names.extend(bnames);
        }
        let mut seen = HashSet::new();
        for n in &names {
            ensure!(
                seen.insert(n.clone()),
                w.clone(),
                "attribute (index {}, {:?}) stored twice",
                n.0,
                String::from_utf8_lossy(&n.1)
            );
        }
        Ok(nblocks)
    }

    fn check_journal(&mut self) -> R<()> {
        let w = Structure::Journal;
        let Some(j) = self.inodes.get(&JOURNAL_INO).cloned() else {
            return err(w, "journal inode 8 is not in use");
        };
        ensure!(j.links == 1, w.clone(), "i_links_count {}", j.links);
        let n = j.map.len() as u64;
        ensure!(
            n >= 1024,
            w.clone(),
            "{n} blocks, the kernel needs at least 1024"
        );
        ensure!(
            j.size == n * BSU,
            w.clone(),
            "i_size {} for {n} blocks",
            j.size
        );
        // s_jnl_blocks: i_block copy, then i_size high and low.
        let mut rec = vec![0u8; INODE_SIZE];
        let idx = (JOURNAL_INO - 1) as u64;
        let d = &self.descs[(idx / self.ipg as u64) as usize];
        let off = d.inode_table * BSU + (idx % self.ipg as u64) * INODE_SIZE as u64;
        self.read(w.clone(), off, &mut rec)?;
        for i in 0..15 {
            ensure!(
                u32le(&self.sb, 0x10C + 4 * i) == u32le(&rec, 0x28 + 4 * i),
                w.clone(),
                "s_jnl_blocks[{i}] differs from the inode's i_block"
            );
        }
        ensure!(
            u32le(&self.sb, 0x10C + 60) as u64 == j.size >> 32
                && u32le(&self.sb, 0x10C + 64) as u64 == j.size & 0xFFFF_FFFF,
            w.clone(),
            "s_jnl_blocks size words differ from i_size {}",
            j.size
        );
        let b = self.block(w.clone(), j.map[0])?;
        ensure!(
            u32be(&b, 0) == JBD2_MAGIC,
            w.clone(),
            "bad jbd2 magic {:#x}",
            u32be(&b, 0)
        );
        ensure!(
            u32be(&b, 4) == 4,
            w.clone(),
            "h_blocktype {} (want v2 superblock)",
            u32be(&b, 4)
        );
        ensure!(
            u32be(&b, 0xC) == 4096,
            w.clone(),
            "s_blocksize {}",
            u32be(&b, 0xC)
        );
        ensure!(
            u32be(&b, 0x10) as u64 == n,
            w.clone(),
            "s_maxlen {} for {n} blocks",
            u32be(&b, 0x10)
        );
        ensure!(
            u32be(&b, 0x14) == 1,
            w.clone(),
            "s_first {}",
            u32be(&b, 0x14)
        );
        ensure!(
            u32be(&b, 0x1C) == 0,
            w.clone(),
            "s_start {}: journal needs recovery",
            u32be(&b, 0x1C)
        );
        ensure!(
            b[0x30..0x40] == self.sb[0x68..0x78],
            w,
            "journal UUID differs from the filesystem's"
        );
        Ok(())
    }

    /// Walk the directory tree from the root: entries, htree, link counts,
    /// reachability.
    fn check_tree(&mut self) -> R<()> {
        ensure!(
            self.inodes.contains_key(&ROOT_INO),
            Structure::Inode { ino: ROOT_INO },
            "root inode is not in use"
        );
        let mut names: HashMap<u32, u32> = HashMap::new();
        let mut parent_of: HashMap<u32, u32> = HashMap::new();
        parent_of.insert(ROOT_INO, ROOT_INO);
        let mut stack = vec![ROOT_INO];
        let mut lpf = false;
        while let Some(d) = stack.pop() {
            let parent = parent_of[&d];
            let (entries, dx_nodes) = self.read_dir(d, parent)?;
            if self.inodes[&d].flags & INDEX_FL != 0 {
                self.report.indexed_dirs += 1;
                self.report.dx_nodes += dx_nodes;
            }
            let mut subdirs = 0u64;
            for (name, ino, _) in &entries {
                *names.entry(*ino).or_default() += 1;
                let t = &self.inodes[ino];
                if t.mode & S_IFMT == S_IFDIR {
                    subdirs += 1;
                    ensure!(
                        parent_of.insert(*ino, d).is_none(),
                        Structure::Dir { ino: d },
                        "directory inode {ino} ({:?}) has a second name",
                        String::from_utf8_lossy(name)
                    );
                    stack.push(*ino);
                }
                // lost+found: the writer makes a directory unless the tree
                // itself holds a non-directory of that name (kept as is;
                // e2fsck -fn accepts that too).
                if d == ROOT_INO && name == b"lost+found" {
                    lpf = true;
                }
            }
            let links = self.inodes[&d].links as u64;
            let want = 2 + subdirs;
            ensure!(
                links == want || (want > 65000 && links == 1),
                Structure::Dir { ino: d },
                "i_links_count {links}, expected {want} (2 + {subdirs} subdirectories)"
            );
        }
        ensure!(lpf, Structure::Dir { ino: ROOT_INO }, "no lost+found entry");
        let mut inos: Vec<u32> = self.inodes.keys().copied().collect();
        inos.sort_unstable();
        for ino in inos {
            if ino < FIRST_INO {
                continue;
            }
            let i = &self.inodes[&ino];
            let n = names.get(&ino).copied().unwrap_or(0);
            ensure!(
                n > 0,
                Structure::Inode { ino },
                "in use but not reachable from the root"
            );
            if i.mode & S_IFMT != S_IFDIR {
                ensure!(
                    i.links as u32 == n,
                    Structure::Inode { ino },
                    "i_links_count {}, but {n} directory entries name it",
                    i.links
                );
            }
        }
        Ok(())
    }

    /// Entries of directory `d` (without "." and ".."), fully checked.
    /// Also returns the number of dx_node blocks.
    fn read_dir(&self, d: u32, parent: u32) -> R<(Vec<DirEnt>, u64)> {
        let info = &self.inodes[&d];
        let w = Structure::Dir { ino: d };
        let mut out = Vec::new();
        let mut dx_nodes = 0;
        if info.flags & INDEX_FL == 0 {
            for (l, &p) in info.map.iter().enumerate() {
                let b = self.block(w.clone(), p)?;
                let dots = if l == 0 { Some(parent) } else { None };
                self.parse_leaf(d, l, &b, info.iseed, dots, None, &mut out)?;
            }
        } else {
            let leaves;
            (leaves, dx_nodes) = self.read_index(d, parent, info)?;
            for (i, &(key, l)) in leaves.iter().enumerate() {
                let next = leaves.get(i + 1).map(|x| x.0);
                let b = self.block(w.clone(), info.map[l])?;
                self.parse_leaf(d, l, &b, info.iseed, None, Some((key, next)), &mut out)?;
            }
        }
        let mut seen = HashSet::new();
        for (name, _, _) in &out {
            ensure!(
                seen.insert(name.as_slice()),
                w.clone(),
                "name {:?} appears twice",
                String::from_utf8_lossy(name)
            );
        }
        Ok((out, dx_nodes))
    }

    /// An indexed directory's hash tree: the dx_root header, then every
    /// block referenced once (root, dx_nodes, leaves) and the keys in
    /// order. Returns the leaves as (key, logical block) in hash order and
    /// the number of dx_node blocks.
    fn read_index(&self, d: u32, parent: u32, info: &InodeInfo) -> R<(Vec<(u32, usize)>, u64)> {
        let w = Structure::Dir { ino: d };
        let hw = Structure::Htree { ino: d };
        ensure!(
            info.map.len() >= 2,
            hw.clone(),
            "indexed directory of {} block(s)",
            info.map.len()
        );
        let root = self.block(w.clone(), info.map[0])?;
        let levels = check_dx_root_header(&w, &hw, &root, d, parent)?;
        let n = info.map.len();
        let mut role = vec![0u8; n]; // 1 root, 2 node, 3 leaf
        role[0] = 1;
        let root_entries = dx_entries(
            &hw,
            &root,
            0x20,
            (BS - 0x20 - 8) / 8,
            info.iseed,
            0,
            "dx_root",
        )?;
        // Global (key, leaf lblk) list in hash order.
        let mut leaves: Vec<(u32, usize)> = Vec::new();
        let mut dx_nodes = 0;
        for (k, &(key, blk)) in root_entries.iter().enumerate() {
            let blk = blk as usize;
            ensure!(
                blk > 0 && blk < n,
                hw.clone(),
                "dx_root entry {k} points at block {blk} of {n}"
            );
            ensure!(role[blk] == 0, hw.clone(), "block {blk} referenced twice");
            if levels == 0 {
                role[blk] = 3;
                leaves.push((key, blk));
            } else {
                role[blk] = 2;
                dx_nodes += 1;
                let next_key = root_entries
                    .get(k + 1)
                    .map(|x| x.0 as u64)
                    .unwrap_or(1 << 32);
                self.read_dx_node(d, info, blk, key, next_key, &mut role, &mut leaves)?;
            }
        }
        if let Some(l) = role.iter().position(|&r| r == 0) {
            return err(hw, format!("block {l} is not referenced by the index"));
        }
        for p in leaves.windows(2) {
            ensure!(
                p[0].0 <= p[1].0,
                hw.clone(),
                "index hashes {:#x} then {:#x} out of order",
                p[0].0,
                p[1].0
            );
        }
        Ok((leaves, dx_nodes))
    }

    /// One dx_node (logical block `blk`, under root key `key`): its fake
    /// dirent, its entries below `next_key`, each leaf marked in `role`
    /// and appended to `leaves`.
    #[allow(clippy::too_many_arguments)]
    fn read_dx_node(
        &self,
        d: u32,
        info: &InodeInfo,
        blk: usize,
        key: u32,
        next_key: u64,
        role: &mut [u8],
        leaves: &mut Vec<(u32, usize)>,
    ) -> R<()> {
        let hw = Structure::Htree { ino: d };
        let n = info.map.len();
        let nb = self.block(hw.clone(), info.map[blk])?;
        ensure!(
            u32le(&nb, 0) == 0 && u16le(&nb, 4) as usize == BS && nb[6] == 0 && nb[7] == 0,
            hw.clone(),
            "dx_node at block {blk}: bad fake dirent"
        );
        let ents = dx_entries(&hw, &nb, 8, (BS - 16) / 8, info.iseed, key, "dx_node")?;
        for &(nk, nblk) in &ents {
            ensure!(
                (nk as u64) <= next_key,
                hw.clone(),
                "dx_node at block {blk}: hash {nk:#x} beyond the next root key {next_key:#x}"
            );
            let nblk = nblk as usize;
            ensure!(
                nblk > 0 && nblk < n,
                hw.clone(),
                "dx_node entry points at block {nblk} of {n}"
            );
            ensure!(role[nblk] == 0, hw.clone(), "block {nblk} referenced twice");
            role[nblk] = 3;
            leaves.push((nk, nblk));
        }
        Ok(())
    }

    /// Check a leaf block; `range` is (index key, next key) for htree leaves.
    #[allow(clippy::too_many_arguments)]
    fn parse_leaf(
        &self,
        d: u32,
        lblk: usize,
        b: &[u8],
        iseed: u32,
        dots: Option<u32>,
        range: Option<(u32, Option<u32>)>,
        out: &mut Vec<DirEnt>,
    ) -> R<()> {
        let w = Structure::Dir { ino: d };
        let t = BS - 12;
        check_leaf_tail(&w, lblk, b, iseed)?;
        let mut off = 0usize;
        if let Some(parent) = dots {
            check_dot(&w, b, 0, d, ".", 12)?;
            let l = u16le(b, 16);
            ensure!(l >= 12, w.clone(), "'..' rec_len {l}");
            check_dot(&w, b, 12, parent, "..", l)?;
            off = 12 + l as usize;
        }
        while off < t {
            ensure!(
                off + 8 <= t,
                w.clone(),
                "block {lblk}: entry at {off} overruns the tail"
            );
            let ino = u32le(b, off);
            let rl = u16le(b, off + 4) as usize;
            let nl = b[off + 6] as usize;
            let ft = b[off + 7];
            ensure!(
                rl >= 8 && rl.is_multiple_of(4) && off + rl <= t,
                w.clone(),
                "block {lblk}: entry at {off} has rec_len {rl}"
            );
            ensure!(
                8 + nl <= rl,
                w.clone(),
                "block {lblk}: entry at {off} name_len {nl} > rec_len {rl}"
            );
            if ino != 0 {
                let name = &b[off + 8..off + 8 + nl];
                self.check_entry(d, lblk, name, ino, ft, range)?;
                out.push((name.to_vec(), ino, ft));
            } else {
                ensure!(
                    off == 0 && rl == t && dots.is_none() && range.is_none(),
                    w.clone(),
                    "block {lblk}: unused entry at {off} (only a wholly empty linear block may have one)"
                );
            }
            off += rl;
        }
        ensure!(
            off == t,
            w,
            "block {lblk}: rec_len chain ends at {off}, not {t}"
        );
        Ok(())
    }

    /// One in-use entry of directory `d`'s leaf block `lblk`: a valid name
    /// naming an in-use inode with the matching file type, and for htree
    /// leaves (`range`) a name hash inside the leaf's key range.
    fn check_entry(
        &self,
        d: u32,
        lblk: usize,
        name: &[u8],
        ino: u32,
        ft: u8,
        range: Option<(u32, Option<u32>)>,
    ) -> R<()> {
        let w = Structure::Dir { ino: d };
        let shown = String::from_utf8_lossy(name);
        ensure!(
            !name.is_empty()
                && !name.contains(&b'/')
                && !name.contains(&0)
                && name != b"."
                && name != b"..",
            w.clone(),
            "block {lblk}: invalid name {shown:?}"
        );
        ensure!(
            ino == ROOT_INO || ino >= FIRST_INO,
            w.clone(),
            "entry {shown:?} names reserved inode {ino}"
        );
        let Some(t_info) = self.inodes.get(&ino).filter(|_| self.inode_used(ino)) else {
            return err(
                w,
                format!("entry {shown:?} names inode {ino}, which is not in use"),
            );
        };
        let want_ft = match t_info.mode & S_IFMT {
            S_IFREG => 1,
            S_IFDIR => 2,
            S_IFCHR => 3,
            S_IFBLK => 4,
            S_IFIFO => 5,
            S_IFSOCK => 6,
            _ => 7,
        };
        ensure!(
            ft == want_ft,
            w,
            "entry {shown:?}: file_type {ft}, inode {ino} has mode {:#o}",
            t_info.mode
        );
        if let Some((key, next)) = range {
            let (h, _) = half_md4(name, &self.hash_seed, false);
            ensure!(
                h >= key & !1,
                Structure::Htree { ino: d },
                "entry {shown:?} hash {h:#x} below its leaf's key {key:#x} (block {lblk})"
            );
            if let Some(nk) = next {
                ensure!(
                    h < nk & !1 || (h == nk & !1 && nk & 1 == 1),
                    Structure::Htree { ino: d },
                    "entry {shown:?} hash {h:#x} not below the next leaf's key {nk:#x} (block {lblk})"
                );
            }
        }
        Ok(())
    }

    fn check_accounting(&self) -> R<()> {
        for b in 0..self.blocks {
            let o = self.owner[b as usize];
            let used = self.block_used(b);
            if used && o == O_FREE {
                return err(
                    Structure::Block { block: b },
                    format!(
                        "marked used in the bitmap of group {} but nothing claims it",
                        group_of_block(b)
                    ),
                );
            }
            if !used && o != O_FREE {
                return err(
                    Structure::Block { block: b },
                    format!(
                        "used by {} but free in the bitmap of group {}",
                        Self::describe_owner(o),
                        group_of_block(b)
                    ),
                );
            }
        }
        Ok(())
    }
}

/// dx_root's "." and ".." and its dx_root_info (half_md4, at most one
/// level of dx_nodes); returns indirect_levels.
fn check_dx_root_header(w: &Structure, hw: &Structure, root: &[u8], d: u32, parent: u32) -> R<u8> {
    check_dot(w, root, 0, d, ".", 12)?;
    check_dot(w, root, 12, parent, "..", (BS - 12) as u16)?;
    ensure!(
        u32le(root, 0x18) == 0,
        hw.clone(),
        "dx_root reserved_zero is not zero"
    );
    ensure!(
        root[0x1C] == 1,
        hw.clone(),
        "hash version {} (want half_md4)",
        root[0x1C]
    );
    ensure!(root[0x1D] == 8, hw.clone(), "info_length {}", root[0x1D]);
    let levels = root[0x1E];
    ensure!(
        levels <= 1,
        hw.clone(),
        "indirect_levels {levels} needs large_dir"
    );
    ensure!(root[0x1F] == 0, hw.clone(), "unused_flags {}", root[0x1F]);
    Ok(levels)
}

/// A directory leaf block's 12-byte checksum tail: the fake dirent and the
/// CRC32C of everything before it, seeded with the inode's seed.
fn check_leaf_tail(w: &Structure, lblk: usize, b: &[u8], iseed: u32) -> R<()> {
    let t = BS - 12;
    ensure!(
        u32le(b, t) == 0 && u16le(b, t + 4) == 12 && b[t + 6] == 0 && b[t + 7] == 0xDE,
        w.clone(),
        "block {lblk}: malformed checksum tail"
    );
    let c = raw(iseed, &b[..t]);
    ensure!(
        c == u32le(b, t + 8),
        w.clone(),
        "block {lblk}: checksum {:#010x} stored, {c:#010x} computed",
        u32le(b, t + 8)
    );
    Ok(())
}

/// The primary superblock at byte 1024, with its magic and CRC32C checked.
fn read_superblock(src: &dyn ImageSource) -> R<Vec<u8>> {
    let sbw = Structure::Superblock;
    let mut sb = vec![0u8; 1024];
    src.read_at(1024, &mut sb).map_err(|e| VerifyError {
        what: sbw.clone(),
        detail: format!("cannot read: {e}"),
    })?;
    ensure!(
        u16le(&sb, 0x38) == 0xEF53,
        sbw,
        "bad magic {:#06x}",
        u16le(&sb, 0x38)
    );
    let c = raw(!0, &sb[..0x3FC]);
    ensure!(
        c == u32le(&sb, 0x3FC),
        sbw,
        "checksum {:#010x} stored, {c:#010x} computed",
        u32le(&sb, 0x3FC)
    );
    Ok(sb)
}

/// Superblock fields the writer always sets to one value: (name, offset,
/// width in bytes, the value). A table, checked in this order.
const FIXED_FIELDS: &[(&str, usize, usize, u32)] = &[
    ("s_feature_compat", 0x5C, 4, FEATURE_COMPAT),
    ("s_feature_incompat", 0x60, 4, FEATURE_INCOMPAT),
    ("s_feature_ro_compat", 0x64, 4, FEATURE_RO_COMPAT),
    ("s_first_data_block", 0x14, 4, 0),
    ("s_log_block_size", 0x18, 4, 2),
    ("s_log_cluster_size", 0x1C, 4, 2),
    ("s_blocks_per_group", 0x20, 4, BPG as u32),
    ("s_clusters_per_group", 0x24, 4, BPG as u32),
    ("s_rev_level", 0x4C, 4, 1),
    ("s_first_ino", 0x54, 4, FIRST_INO),
    ("s_inode_size", 0x58, 2, INODE_SIZE as u32),
    ("s_block_group_nr", 0x5A, 2, 0),
    ("s_reserved_gdt_blocks", 0xCE, 2, 0),
    ("s_journal_inum", 0xE0, 4, JOURNAL_INO),
    ("s_def_hash_version", 0xFC, 1, 1),
    ("s_jnl_backup_type", 0xFD, 1, 1),
    ("s_desc_size", 0xFE, 2, 64),
    ("s_first_meta_bg", 0x104, 4, 0),
    ("s_min_extra_isize", 0x15C, 2, 32),
    ("s_checksum_type", 0x175, 1, 1),
    ("s_state", 0x3A, 2, 1),
];

/// Every [`FIXED_FIELDS`] entry, then s_flags (the unsigned hash flag).
fn check_fixed_fields(sb: &[u8]) -> R<()> {
    for &(name, off, width, want) in FIXED_FIELDS {
        let got = match width {
            1 => sb[off] as u32,
            2 => u16le(sb, off) as u32,
            _ => u32le(sb, off),
        };
        ensure!(
            got == want,
            Structure::Superblock,
            "{name} (at {off:#x}) is {got:#x}, expected {want:#x}"
        );
    }
    ensure!(
        u32le(sb, 0x160) & 0x3 == 0x2,
        Structure::Superblock,
        "s_flags {:#x}: expected the unsigned directory hash flag (0x2) only",
        u32le(sb, 0x160)
    );
    Ok(())
}

/// The filesystem's size and shape as the superblock gives them.
struct Geometry {
    blocks: u64,
    groups: u64,
    ipg: u32,
    inodes_count: u32,
}

/// Block and inode counts consistent with each other, with the image's
/// size (`image_size` bytes) and with a last group big enough for its own
/// metadata.
fn check_geometry(sb: &[u8], image_size: u64) -> R<Geometry> {
    let sbw = Structure::Superblock;
    let blocks = u32le(sb, 0x04) as u64 | (u32le(sb, 0x150) as u64) << 32;
    let r_blocks = u32le(sb, 0x08) as u64 | (u32le(sb, 0x154) as u64) << 32;
    ensure!(blocks > 0, sbw, "s_blocks_count is 0");
    ensure!(
        r_blocks <= blocks,
        sbw,
        "s_r_blocks_count {r_blocks} > s_blocks_count {blocks}"
    );
    let need = blocks.checked_mul(BSU);
    ensure!(
        need.is_some_and(|n| n <= image_size),
        Structure::Image,
        "image is {image_size} bytes, the superblock claims {blocks} blocks"
    );
    let groups = blocks.div_ceil(BPG);
    let ipg = u32le(sb, 0x28);
    ensure!(
        ipg > 0 && ipg <= BPG as u32 && ipg.is_multiple_of(16),
        sbw,
        "s_inodes_per_group {ipg} is not a positive multiple of 16 up to {BPG}"
    );
    let inodes_count = u32le(sb, 0x00);
    ensure!(
        inodes_count as u64 == ipg as u64 * groups,
        sbw,
        "s_inodes_count {inodes_count} != inodes_per_group {ipg} * {groups} groups"
    );
    let last = groups - 1;
    ensure!(
        blocks - last * BPG > group_overhead(last),
        sbw,
        "last group ({} blocks) is too small for its own metadata",
        blocks - last * BPG
    );
    Ok(Geometry {
        blocks,
        groups,
        ipg,
        inodes_count,
    })
}

/// The fields of an inode record the checks read, decoded once.
struct InodeFields<'a> {
    mode: u16,
    links: u16,
    size: u64,
    flags: u32,
    blocks512: u64,
    file_acl: u64,
    /// i_block: the extent tree root, a fast symlink's target or a device
    /// number.
    ib: &'a [u8],
}

impl<'a> InodeFields<'a> {
    fn decode(rec: &'a [u8]) -> Self {
        InodeFields {
            mode: u16le(rec, 0x00),
            links: u16le(rec, 0x1A),
            size: u32le(rec, 0x04) as u64 | (u32le(rec, 0x6C) as u64) << 32,
            flags: u32le(rec, 0x20),
            blocks512: u32le(rec, 0x1C) as u64 | (u16le(rec, 0x74) as u64) << 32,
            file_acl: u32le(rec, 0x68) as u64 | (u16le(rec, 0x76) as u64) << 32,
            ib: &rec[0x28..0x28 + 60],
        }
    }

    fn fmt(&self) -> u16 {
        self.mode & S_IFMT
    }
}

/// A valid file type, a link, only the flags the writer sets, and the root
/// and journal inodes of the type they must be.
fn check_inode_type(ino: u32, f: &InodeFields<'_>) -> R<()> {
    let w = Structure::Inode { ino };
    let (mode, fmt, flags) = (f.mode, f.fmt(), f.flags);
    ensure!(
        matches!(
            fmt,
            S_IFIFO | S_IFCHR | S_IFDIR | S_IFBLK | S_IFREG | S_IFLNK | S_IFSOCK
        ),
        w.clone(),
        "mode {mode:#o} has no valid file type"
    );
    ensure!(f.links > 0, w.clone(), "in use but i_links_count is 0");
    ensure!(
        flags & !(EXTENTS_FL | INDEX_FL) == 0,
        w.clone(),
        "unexpected i_flags {flags:#x}"
    );
    ensure!(
        flags & INDEX_FL == 0 || fmt == S_IFDIR,
        w.clone(),
        "INDEX_FL on a non-directory"
    );
    if ino == ROOT_INO {
        ensure!(
            fmt == S_IFDIR,
            w.clone(),
            "root is not a directory (mode {mode:#o})"
        );
    }
    if ino == JOURNAL_INO {
        ensure!(
            fmt == S_IFREG,
            w,
            "journal is not a regular file (mode {mode:#o})"
        );
    }
    Ok(())
}

/// A fast symlink, device, fifo or socket: no blocks, everything in
/// i_block, and i_size saying exactly what is there.
fn check_inline_inode(ino: u32, f: &InodeFields<'_>) -> R<()> {
    let w = Structure::Inode { ino };
    let (mode, size, ib) = (f.mode, f.size, f.ib);
    ensure!(
        f.flags & EXTENTS_FL == 0,
        w.clone(),
        "EXTENTS_FL on mode {mode:#o}"
    );
    match f.fmt() {
        S_IFLNK => {
            ensure!(size > 0, w.clone(), "empty symlink");
            let n = ib.iter().position(|&x| x == 0).unwrap_or(60) as u64;
            ensure!(
                n == size && ib[size as usize..].iter().all(|&x| x == 0),
                w,
                "fast symlink: i_size {size} but target is {n} bytes"
            );
        }
        S_IFCHR | S_IFBLK => {
            ensure!(size == 0, w.clone(), "device with i_size {size}");
            ensure!(
                ib[8..].iter().all(|&x| x == 0) && (u32le(ib, 0) == 0 || u32le(ib, 4) == 0),
                w,
                "device number words malformed"
            );
        }
        _ => {
            ensure!(size == 0, w.clone(), "fifo/socket with i_size {size}");
            ensure!(
                ib.iter().all(|&x| x == 0),
                w,
                "fifo/socket with non-zero i_block"
            );
        }
    }
    Ok(())
}

fn check_dot(w: &Structure, b: &[u8], off: usize, ino: u32, name: &str, rec_len: u16) -> R<()> {
    let nl = name.len();
    ensure!(
        u32le(b, off) == ino
            && u16le(b, off + 4) == rec_len
            && b[off + 6] as usize == nl
            && b[off + 7] == 2
            && &b[off + 8..off + 8 + nl] == name.as_bytes(),
        w.clone(),
        "'{name}' entry: inode {}, rec_len {}, name_len {}, type {} (expected inode {ino}, rec_len {rec_len})",
        u32le(b, off),
        u16le(b, off + 4),
        b[off + 6],
        b[off + 7]
    );
    Ok(())
}

/// dx entries at `co` (limit, count, block; then hash, block pairs) with the
/// dx_tail checksum; returns (key, block) with the first key = `first_key`.
fn dx_entries(
    w: &Structure,
    b: &[u8],
    co: usize,
    limit: usize,
    iseed: u32,
    first_key: u32,
    what: &str,
) -> R<Vec<(u32, u32)>> {
    let lim = u16le(b, co) as usize;
    let count = u16le(b, co + 2) as usize;
    ensure!(
        lim == limit,
        w.clone(),
        "{what} limit {lim}, expected {limit}"
    );
    ensure!(
        count >= 1 && count <= limit,
        w.clone(),
        "{what} count {count} (limit {limit})"
    );
    let tail = co + limit * 8;
    ensure!(
        u32le(b, tail) == 0,
        w.clone(),
        "{what} dx_tail reserved field not zero"
    );
    let mut c = raw(iseed, &b[..co + count * 8]);
    c = raw(c, &b[tail..tail + 4]);
    c = raw(c, &[0u8; 4]);
    ensure!(
        c == u32le(b, tail + 4),
        w.clone(),
        "{what} checksum {:#010x} stored, {c:#010x} computed",
        u32le(b, tail + 4)
    );
    let mut v = Vec::with_capacity(count);
    for i in 0..count {
        let key = if i == 0 {
            first_key
        } else {
            u32le(b, co + 8 * i)
        };
        v.push((key, u32le(b, co + 8 * i + 4)));
    }
    for p in v.windows(2) {
        ensure!(
            p[0].0 <= p[1].0,
            w.clone(),
            "{what} hashes {:#x} then {:#x} out of order",
            p[0].0,
            p[1].0
        );
    }
    Ok(v)
}

/// `ext4_xattr_hash_entry`, unsigned or signed name characters.
fn xattr_entry_hash(name: &[u8], value: &[u8], signed: bool) -> u32 {
    let mut h: u32 = 0;
    for &c in name {
        let c = if signed {
            c as i8 as i32 as u32
        } else {
            c as u32
        };
        h = (h << 5) ^ (h >> 27) ^ c;
    }
    let mut i = 0;
    while i < value.len() {
        let mut wb = [0u8; 4];
        let n = (value.len() - i).min(4);
        wb[..n].copy_from_slice(&value[i..i + n]);
        h = (h << 16) ^ (h >> 16) ^ u32::from_le_bytes(wb);
        i += 4;
    }
    h
}

/// Parse xattr entries starting at `start` in `area`; value offsets are
/// relative to `vbase`. Checks bounds, overlaps, hashes and (for blocks)
/// order. Returns the entry hashes in order.
fn parse_xattr_entries(
    w: Structure,
    area: &[u8],
    start: usize,
    vbase: usize,
    sorted: bool,
    names: &mut Vec<(u8, Vec<u8>)>,
) -> R<Vec<u32>> {
    let mut off = start;
    let mut regions: Vec<(usize, usize)> = Vec::new();
    let mut hashes = Vec::new();
    let mut prev: Option<(u8, usize, Vec<u8>)> = None;
    loop {
        ensure!(
            off + 4 <= area.len(),
            w.clone(),
            "entry table runs off the end without a terminator"
        );
        if u32le(area, off) == 0 {
            break;
        }
        ensure!(
            off + 16 <= area.len(),
            w.clone(),
            "entry at {off} runs off the end"
        );
        let nl = area[off] as usize;
        let idx = area[off + 1];
        let voff = u16le(area, off + 2) as usize;
        let vinum = u32le(area, off + 4);
        let vsize = u32le(area, off + 8) as usize;
        let hash = u32le(area, off + 12);
        let elen = (16 + nl + 3) & !3;
        ensure!(
            off + elen + 4 <= area.len(),
            w.clone(),
            "entry at {off} (name {nl} bytes) runs off the end"
        );
        ensure!(
            vinum == 0,
            w.clone(),
            "entry at {off} uses e_value_inum {vinum}"
        );
        let name = area[off + 16..off + 16 + nl].to_vec();
        // The writer's own rule (xattr::full_name): only names Linux can
        // set, so every image mkfs finishes passes and nothing else does.
        ensure!(
            full_name(idx, &name).is_some(),
            w.clone(),
            "entry at {off}: name index {idx} with name {:?} is no xattr Linux can set",
            String::from_utf8_lossy(&name)
        );
        let vstart = vbase + voff;
        ensure!(
            vstart + vsize <= area.len(),
            w.clone(),
            "entry {:?}: value at {voff}+{vsize} outside the area",
            String::from_utf8_lossy(&name)
        );
        let value = &area[vstart..vstart + vsize];
        ensure!(
            hash == xattr_entry_hash(&name, value, false)
                || hash == xattr_entry_hash(&name, value, true),
            w.clone(),
            "entry {:?}: e_hash {hash:#x}, computed {:#x}",
            String::from_utf8_lossy(&name),
            xattr_entry_hash(&name, value, false)
        );
        if vsize > 0 {
            regions.push((vstart, vstart + ((vsize + 3) & !3)));
        }
        if sorted {
            let key = (idx, nl, name.clone());
            ensure!(
                prev.as_ref().is_none_or(|p| *p < key),
                w.clone(),
                "entry {:?} out of (index, length, name) order",
                String::from_utf8_lossy(&name)
            );
            prev = Some(key);
        }
        hashes.push(hash);
        names.push((idx, name));
        off += elen;
    }
    let table_end = off + 4;
    regions.sort_unstable();
    for (i, r) in regions.iter().enumerate() {
        ensure!(
            r.0 >= table_end,
            w.clone(),
            "a value at {} overlaps the entry table (ends at {table_end})",
            r.0
        );
        ensure!(
            r.1 <= area.len(),
            w.clone(),
            "a padded value at {} runs past the end",
            r.0
        );
        if i > 0 {
            ensure!(
                regions[i - 1].1 <= r.0,
                w.clone(),
                "values at {} and {} overlap",
                regions[i - 1].0,
                r.0
            );
        }
    }
    Ok(hashes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ext4::{Builder, Options};
    use crate::tree::{Entry, EntryKind, FileData, Segment, Timestamp};
    use std::io::Read;
    use std::os::unix::fs::FileExt;

    struct VecData(std::io::Cursor<Vec<u8>>);

    impl FileData for VecData {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.0.read(buf)
        }
    }

    fn entry(path: &str, kind: EntryKind) -> Entry {
        let mtime = Timestamp::new(1_700_000_000, 5);
        Entry {
            uid: 1000,
            gid: 1000,
            ..Entry::new(path.as_bytes().to_vec(), kind, 0o644, mtime)
        }
    }

    /// A tree item: the entry and the bytes of its segments, concatenated.
    type Item = (Entry, Vec<u8>);

    fn file(path: &str, data: &[u8]) -> Item {
        let mut e = entry(path, EntryKind::File);
        e.size = data.len() as u64;
        if !data.is_empty() {
            e.segments = vec![Segment {
                offset: 0,
                len: data.len() as u64,
            }];
        }
        (e, data.to_vec())
    }

    fn dir(path: &str) -> Item {
        let mut e = entry(path, EntryKind::Dir);
        e.mode = 0o755;
        (e, Vec::new())
    }

    fn other(path: &str, kind: EntryKind) -> Item {
        (entry(path, kind), Vec::new())
    }

    /// Build an image in a temp file; returns the file (for e2fsck) and bytes.
    fn build(items: &[Item]) -> (tempfile::NamedTempFile, Vec<u8>) {
        let tmp = build_file(items, 1 << 50);
        let bytes = std::fs::read(tmp.path()).unwrap();
        (tmp, bytes)
    }

    fn build_file(items: &[Item], max_resize_bytes: u64) -> tempfile::NamedTempFile {
        let tmp = tempfile::NamedTempFile::new().unwrap();
        let f = tmp.reopen().unwrap();
        let opts = Options {
            label: *b"verify-test\0\0\0\0\0",
            max_resize_bytes,
            fit_ceiling: false,
            source_date_epoch: Some(1_700_000_000),
            ..Default::default()
        };
        let mut b = Builder::new(f, tmp.path().to_path_buf(), opts).unwrap();
        for (e, d) in items {
            b.add(e, &mut VecData(std::io::Cursor::new(d.clone())))
                .unwrap();
        }
        b.finish().unwrap();
        tmp
    }

    fn e2fsck_agrees(tmp: &tempfile::NamedTempFile) {
        let e2fsck = std::path::Path::new("/usr/sbin/e2fsck");
        if !e2fsck.exists() {
            return;
        }
        let out = std::process::Command::new(e2fsck)
            .arg("-fn")
            .arg(tmp.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "e2fsck -fn disagrees:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn good(items: &[Item]) -> (Vec<u8>, Report) {
        let (tmp, bytes) = build(items);
        let r = match verify(&bytes) {
            Ok(r) => r,
            Err(e) => panic!("verify failed on a writer image: {e}"),
        };
        // The file path agrees with the in-memory one.
        assert_eq!(verify_file(tmp.as_file()).unwrap(), r);
        e2fsck_agrees(&tmp);
        (bytes, r)
    }

    fn sparse(path: &str, pieces: &[(u64, usize)], size: u64) -> Item {
        let mut e = entry(path, EntryKind::File);
        e.size = size;
        let mut data = Vec::new();
        for (i, &(off, len)) in pieces.iter().enumerate() {
            e.segments.push(Segment {
                offset: off,
                len: len as u64,
            });
            data.extend(std::iter::repeat_n(i as u8 + 1, len));
        }
        (e, data)
    }

    /// A varied tree: small files, a sparse file with an extent block, hard
    /// links, symlinks, devices, xattrs (one 3000-byte).
    fn varied() -> Vec<Item> {
        let mut v = vec![
            dir(""),
            dir("etc"),
            file("etc/hostname", b"box\n"),
            file("etc/empty", b""),
            file("big", &vec![0xAB; 3 * 4096 + 17]),
            other("etc/link", EntryKind::HardLink(b"etc/hostname".to_vec())),
            other("etc/link2", EntryKind::HardLink(b"etc/hostname".to_vec())),
            other("short", EntryKind::Symlink(b"etc/hostname".to_vec())),
            other("long", EntryKind::Symlink(vec![b'x'; 300])),
            other("dev/null", EntryKind::CharDev { major: 1, minor: 3 }),
            other(
                "dev/big",
                EntryKind::BlockDev {
                    major: 259,
                    minor: 70000,
                },
            ),
            other("run/fifo", EntryKind::Fifo),
            other("run/sock", EntryKind::Socket),
            // 10 separated pieces: 10 extents, so a leaf block.
            sparse(
                "sparse",
                &(0..10).map(|i| (i * 1_000_000, 5000)).collect::<Vec<_>>(),
                20_000_000,
            ),
        ];
        let mut x = file("xattrs", b"attrs");
        x.0.xattrs = vec![
            (b"user.small".to_vec(), b"v".to_vec()),
            (b"security.capability".to_vec(), vec![1; 20]),
            (b"user.big".to_vec(), vec![7; 3000]),
        ];
        v.push(x);
        // Two files with the same block xattrs share the block.
        for p in ["shared1", "shared2"] {
            let mut s = file(p, b"s");
            s.0.xattrs = vec![(b"user.big".to_vec(), vec![9; 2000])];
            v.push(s);
        }
        let mut d = dir("etc/withattr");
        d.0.xattrs = vec![(b"trusted.x".to_vec(), b"y".to_vec())];
        v.push(d);
        v
    }

    #[test]
    fn empty_tree() {
        let (_, r) = good(&[]);
        assert_eq!(r.dirs, 2); // root, lost+found
        assert_eq!(r.files, 0);
        assert!(r.blocks_used > 1024);
    }

    #[test]
    fn varied_tree() {
        let (_, r) = good(&varied());
        assert_eq!(r.symlinks, 2);
        assert_eq!(r.special, 4);
        assert_eq!(r.xattr_blocks, 2);
        // hostname, empty, big, sparse, xattrs, shared1, shared2.
        assert_eq!(r.files, 7);
    }

    #[test]
    fn many_files_and_htree() {
        let mut v = vec![dir("")];
        for i in 0..3000 {
            v.push(file(
                &format!("huge/entry-with-a-longish-name-{i:05}"),
                b"x",
            ));
        }
        for i in 0..200 {
            v.push(file(&format!("d{}/f{i}", i % 7), &[i as u8; 100]));
        }
        let (_, r) = good(&v);
        assert_eq!(r.files, 3200);
        assert_eq!(r.indexed_dirs, 1);
        assert_eq!(r.dx_nodes, 0);
        assert_eq!(r.dirs, 2 + 1 + 7);
    }

    /// 8000 long names: a two-level htree (dx_node blocks), and with 496
    /// inodes per group 17 groups, so backup superblocks and descriptor
    /// copies exist. Checked from the file (the image is sparse, ~2 GiB).
    #[test]
    fn multi_group_and_two_level_htree() {
        let mut v = vec![dir("")];
        for i in 0..8000 {
            v.push(file(&format!("deep/{i:05}-{}", "n".repeat(244)), b""));
        }
        let tmp = build_file(&v, 1 << 50);
        let r = verify_file(tmp.as_file()).unwrap_or_else(|e| panic!("{e}"));
        assert!(r.groups >= 17, "{r:?}");
        assert_eq!(r.files, 8000);
        assert_eq!(r.indexed_dirs, 1);
        assert!(r.dx_nodes >= 2, "{r:?}");
        e2fsck_agrees(&tmp);
        // Corrupt the backup superblock and the descriptor copy in group 1.
        let f = tmp.as_file();
        let flip = |off: u64| {
            let mut b = [0u8; 1];
            f.read_exact_at(&mut b, off).unwrap();
            b[0] ^= 0x10;
            f.write_all_at(&b, off).unwrap();
        };
        let g1 = BPG * BSU;
        flip(g1 + 0x78); // s_volume_name
        let e = verify_file(f).unwrap_err();
        assert_eq!(e.what, Structure::BackupSuperblock { group: 1 }, "{e}");
        flip(g1 + 0x78);
        flip(g1 + BSU + 64 * 3 + 0x0C); // group 3's free blocks, copy in group 1
        let e = verify_file(f).unwrap_err();
        assert_eq!(e.what, Structure::GroupDesc { group: 3 }, "{e}");
        flip(g1 + BSU + 64 * 3 + 0x0C);
        verify_file(f).unwrap();
    }

    #[test]
    fn lost_found_shadowed_by_a_file() {
        let (_, r) = good(&[file("lost+found", b"x")]);
        assert_eq!((r.dirs, r.files), (1, 1));
    }

    // ---- corruption: the checker must fail, naming the structure ----

    fn fails(img: &[u8], pred: impl Fn(&Structure) -> bool) -> VerifyError {
        match verify(img) {
            Ok(_) => panic!("verify accepted a corrupted image"),
            Err(e) => {
                assert!(pred(&e.what), "wrong structure blamed: {e}");
                e
            }
        }
    }

    /// Byte offset of inode `ino`'s record.
    fn inode_off(img: &[u8], ino: u32) -> usize {
        let ipg = u32le(img, 1024 + 0x28);
        let g = (ino - 1) / ipg;
        assert!(g < 64);
        let d = 4096 + 64 * g as usize;
        let table = u32le(img, d + 8) as usize;
        table * BS + ((ino - 1) % ipg) as usize * INODE_SIZE
    }

    fn reseal_inode(img: &mut [u8], ino: u32) {
        let o = inode_off(img, ino);
        let fseed = fs_seed(img);
        let rec = &mut img[o..o + INODE_SIZE];
        rec[0x7C..0x7E].fill(0);
        rec[0x82..0x84].fill(0);
        let seed = raw(raw(fseed, &ino.to_le_bytes()), &rec[0x64..0x68]);
        let c = raw(seed, rec);
        rec[0x7C..0x7E].copy_from_slice(&(c as u16).to_le_bytes());
        rec[0x82..0x84].copy_from_slice(&((c >> 16) as u16).to_le_bytes());
    }

    fn fs_seed(img: &[u8]) -> u32 {
        raw(!0, &img[1024 + 0x68..1024 + 0x78])
    }

    /// Physical block of the first extent in an inode with a depth-0 root.
    fn first_pblk(img: &[u8], ino: u32) -> usize {
        let o = inode_off(img, ino) + 0x28;
        u32le(img, o + 12 + 8) as usize
    }

    /// Inode number of `name` in the root (a linear scan of block 0 or
    /// the leaves of a small root).
    fn lookup_root(img: &[u8], name: &[u8]) -> u32 {
        let b = first_pblk(img, 2) * BS;
        let mut off = 0;
        while off < BS - 12 {
            let ino = u32le(img, b + off);
            let rl = u16le(img, b + off + 4) as usize;
            let nl = img[b + off + 6] as usize;
            if ino != 0 && &img[b + off + 8..b + off + 8 + nl] == name {
                return ino;
            }
            off += rl;
        }
        panic!("{name:?} not in root");
    }

    #[test]
    fn corrupt_superblock() {
        let (img, _) = good(&[file("a", b"a")]);
        let mut bad = img.clone();
        bad[1024 + 0x10] ^= 1; // s_free_inodes_count, checksum now wrong
        fails(&bad, |s| *s == Structure::Superblock);
        // Same change with the checksum fixed: the count check catches it.
        let c = raw(!0, &bad[1024..1024 + 0x3FC]);
        bad[1024 + 0x3FC..1024 + 0x400].copy_from_slice(&c.to_le_bytes());
        let e = fails(&bad, |s| *s == Structure::Superblock);
        assert!(e.detail.contains("s_free_inodes_count"), "{e}");
        // A feature bit.
        let mut bad = img.clone();
        bad[1024 + 0x5C] |= 0x1; // dir_prealloc
        let c = raw(!0, &bad[1024..1024 + 0x3FC]);
        bad[1024 + 0x3FC..1024 + 0x400].copy_from_slice(&c.to_le_bytes());
        let e = fails(&bad, |s| *s == Structure::Superblock);
        assert!(e.detail.contains("s_feature_compat"), "{e}");
    }

    #[test]
    fn corrupt_descriptor() {
        let (img, _) = good(&[file("a", b"a")]);
        let mut bad = img.clone();
        bad[4096 + 0x10] ^= 1; // group 0 bg_used_dirs_count
        fails(&bad, |s| *s == Structure::GroupDesc { group: 0 });
    }

    #[test]
    fn corrupt_inode_mode() {
        let (img, _) = good(&[file("a", b"a")]);
        let ino = lookup_root(&img, b"a");
        let o = inode_off(&img, ino);
        let mut bad = img.clone();
        bad[o + 1] ^= 0x40; // S_IFREG -> another type
        fails(&bad, |s| *s == Structure::Inode { ino });
        // With a valid checksum: a FIFO with extents, or a mismatching entry.
        reseal_inode(&mut bad, ino);
        fails(&bad, |s| {
            *s == Structure::Inode { ino } || *s == Structure::Dir { ino: 2 }
        });
        // Wrong link count, resealed.
        let mut bad = img.clone();
        bad[o + 0x1A] = 2;
        reseal_inode(&mut bad, ino);
        let e = fails(&bad, |s| *s == Structure::Inode { ino });
        assert!(e.detail.contains("i_links_count"), "{e}");
    }

    #[test]
    fn corrupt_dir_block() {
        let (img, _) = good(&[file("hello", b"a")]);
        let b = first_pblk(&img, 2) * BS;
        let mut bad = img.clone();
        bad[b + 24 + 8] = b'j'; // first name after "." and ".."
        fails(&bad, |s| *s == Structure::Dir { ino: 2 });
    }

    #[test]
    fn corrupt_htree() {
        let mut v = vec![dir("")];
        for i in 0..600 {
            v.push(file(&format!("d/name-{i:04}"), b""));
        }
        let (img, _) = good(&v);
        let ino = lookup_root(&img, b"d");
        assert!(u32le(&img, inode_off(&img, ino) + 0x20) & INDEX_FL != 0);
        let root = first_pblk(&img, ino) * BS;
        let mut bad = img.clone();
        bad[root + 0x28] ^= 0x80; // second dx entry's hash
        fails(&bad, |s| *s == Structure::Htree { ino });
    }

    #[test]
    fn corrupt_extent_block() {
        let (img, _) = good(&[sparse(
            "s",
            &(0..8).map(|i| (i * 100_000, 10)).collect::<Vec<_>>(),
            1_000_000,
        )]);
        let ino = lookup_root(&img, b"s");
        let o = inode_off(&img, ino) + 0x28;
        assert_eq!(u16le(&img, o + 6), 1, "expected a depth-1 tree");
        let leaf = u32le(&img, o + 12 + 4) as usize * BS;
        let mut bad = img.clone();
        bad[leaf + 12 + 12] ^= 1; // second extent's logical block
        fails(&bad, |s| *s == Structure::ExtentTree { ino });
    }

    #[test]
    fn corrupt_block_bitmap() {
        let (img, _) = good(&[file("a", b"a")]);
        let ino = lookup_root(&img, b"a");
        let bbm = u32le(&img, 4096) as usize * BS;
        // Clear the bit of the file's data block.
        let data = first_pblk(&img, ino);
        assert!(data < 32768);
        assert_ne!(img[bbm + data / 8] & (1 << (data % 8)), 0);
        let mut bad = img.clone();
        bad[bbm + data / 8] &= !(1 << (data % 8));
        fails(&bad, |s| *s == Structure::BlockBitmap { group: 0 });
        // Fix the bitmap checksum, free counts and descriptor checksum: the
        // ownership check still finds the block in use but marked free.
        let seed = fs_seed(&bad);
        let c = raw(seed, &bad[bbm..bbm + BS]);
        let d = 4096;
        bad[d + 0x18..d + 0x1A].copy_from_slice(&(c as u16).to_le_bytes());
        bad[d + 0x38..d + 0x3A].copy_from_slice(&((c >> 16) as u16).to_le_bytes());
        let fb = u16le(&bad, d + 0x0C) + 1;
        bad[d + 0x0C..d + 0x0E].copy_from_slice(&fb.to_le_bytes());
        bad[d + 0x1E..d + 0x20].fill(0);
        let dc = raw(raw(seed, &0u32.to_le_bytes()), &bad[d..d + 64]);
        bad[d + 0x1E..d + 0x20].copy_from_slice(&(dc as u16).to_le_bytes());
        // Copies of the descriptor block in groups 1 and 63 (if present).
        let blocks = u32le(&img, 1024 + 4) as usize;
        let groups = blocks.div_ceil(32768);
        for g in [1usize, 63] {
            if g < groups {
                let b = meta_gdt_block(g as u64).unwrap() as usize * BS;
                let copy = bad[d..d + 64].to_vec();
                bad[b..b + 64].copy_from_slice(&copy);
            }
        }
        let sfree = u32le(&bad, 1024 + 0x0C) + 1;
        bad[1024 + 0x0C..1024 + 0x10].copy_from_slice(&sfree.to_le_bytes());
        let c = raw(!0, &bad[1024..1024 + 0x3FC]);
        bad[1024 + 0x3FC..1024 + 0x400].copy_from_slice(&c.to_le_bytes());
        let e = fails(&bad, |s| *s == Structure::Block { block: data as u64 });
        assert!(e.detail.contains("free in the bitmap"), "{e}");
    }

    #[test]
    fn truncated_image() {
        let (img, _) = good(&[]);
        fails(&img[..img.len() - 4096], |s| *s == Structure::Image);
        fails(&img[..100], |s| *s == Structure::Superblock);
    }
}
