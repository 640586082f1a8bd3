//! Laying out the metadata once every entry is in: number the inodes
//! (the root first, as xfs_repair expects, then the realtime bitmap and
//! summary inodes mkfs always makes, then the tree depth-first), write
//! directories and long symlinks, then the inodes, the btrees, the AG
//! headers, the superblocks and the log.

use super::alloc::Piece;
use super::btree::Kind as BtKind;
use super::builder::{Builder, Kind, NodeId, ROOT};
use super::dir::{self, Ent};
use super::error::{Error, Result};
use super::geometry::{Geometry, BLOCK, CHUNK_BLOCKS, CHUNK_INODES};
use super::inode::{self, Core, Extent, FMT_DEV, FMT_EXTENTS, FMT_LOCAL};

const S_IFDIR: u16 = 0o040000;
const S_IFREG: u16 = 0o100000;
const S_IFLNK: u16 = 0o120000;
const SYMLINK_HDR: usize = 56;
const INOBT: BtKind = super::commit::INOBT;

/// What `finish` reports.
#[derive(Clone, Debug)]
pub struct Summary {
    pub inodes: u64,
    pub blocks_used: u64,
    pub size_bytes: u64,
}

/// Inode slots: the chunks in allocation order, 64 inodes each.
pub(super) struct Slots {
    pub(super) chunks: Vec<Piece>,
}

impl Slots {
    pub(super) fn ino(&self, geo: &Geometry, slot: u64) -> u64 {
        let c = self.chunks[(slot / CHUNK_INODES) as usize];
        geo.ino(c.ag, c.agbno, slot % CHUNK_INODES)
    }
}

impl Builder {
    pub(super) fn too_small(&self, what: &str, more_blocks: u64) -> Error {
        let g = &self.alloc.geo;
        Error::DoesNotFit {
            size_bytes: g.dblocks * BLOCK,
            needed_bytes: (g.dblocks + more_blocks) * BLOCK,
            detail: what.to_string(),
        }
    }

    /// Depth-first order of the reachable nodes, each once, and link counts.
    pub(super) fn order(&self) -> (Vec<NodeId>, Vec<u32>, Vec<NodeId>) {
        let n = self.nodes.len();
        let mut nlink = vec![0u32; n];
        let mut parent = vec![ROOT; n];
        let mut seen = vec![false; n];
        let mut out = Vec::with_capacity(n);
        let mut stack = vec![ROOT];
        seen[ROOT] = true;
        nlink[ROOT] = 2;
        while let Some(id) = stack.pop() {
            out.push(id);
            if let Kind::Dir { children } = &self.nodes[id].kind {
                for (_, c) in children.iter().rev() {
                    let c = *c;
                    if matches!(self.nodes[c].kind, Kind::Dir { .. }) {
                        nlink[id] += 1;
                        nlink[c] = 2;
                        parent[c] = id;
                    } else {
                        nlink[c] += 1;
                    }
                    if !seen[c] {
                        seen[c] = true;
                        stack.push(c);
                    }
                }
            }
        }
        (out, nlink, parent)
    }

    /// Allocate the inode chunks for `count` inodes (the root chunk is
    /// already there).
    pub(super) fn chunks(&mut self, count: u64) -> Result<Slots> {
        let g = self.alloc.geo.clone();
        let mut chunks = vec![Piece {
            ag: 0,
            agbno: g.root_agbno,
            len: CHUNK_BLOCKS,
        }];
        let need = count.div_ceil(CHUNK_INODES).max(1);
        while (chunks.len() as u64) < need {
            let Some(p) = self.alloc.chunk(|n| INOBT.blocks(n)) else {
                let more = (need - chunks.len() as u64) * CHUNK_BLOCKS;
                return Err(self.too_small("inode chunks", more));
            };
            chunks.push(p);
        }
        Ok(Slots { chunks })
    }

    /// Place `blocks` (sorted by logical block) and write them; their
    /// extents.
    fn place(&mut self, mut blocks: Vec<dir::DirBlock>, what: &str) -> Result<Vec<Extent>> {
        let g = self.alloc.geo.clone();
        let Some(pieces) = self.alloc.blocks(blocks.len() as u64) else {
            return Err(self.too_small(what, blocks.len() as u64));
        };
        let mut phys = pieces
            .iter()
            .flat_map(|p| (p.agbno..p.agbno + p.len).map(move |b| (p.ag, b)));
        let mut exts: Vec<Extent> = Vec::new();
        for b in blocks.iter_mut() {
            let Some((ag, agbno)) = phys.next() else {
                break;
            };
            b.seal(g.daddr(ag, agbno));
            self.write(self.base + g.byte(ag, agbno), &b.data)?;
            let fsb = g.fsb(ag, agbno);
            match exts.last_mut() {
                Some(l) if l.off + l.len == b.db && l.fsb + l.len == fsb => l.len += 1,
                _ => exts.push(Extent {
                    off: b.db,
                    fsb,
                    len: 1,
                }),
            }
        }
        Ok(exts)
    }

    /// The forks and core of node `id` (inode `ino`), writing any blocks
    /// it owns.
    pub(super) fn inode_of(
        &mut self,
        id: NodeId,
        ino: u64,
        nlink: u32,
        inos: &[u64],
        parent: u64,
    ) -> Result<(Core, Vec<u8>)> {
        let g = self.alloc.geo.clone();
        let n = &self.nodes[id];
        let attr_len = n.attr.len();
        let mut c = Core {
            uid: n.uid,
            gid: n.gid,
            nlink,
            atime: n.atime,
            mtime: n.mtime,
            ctime: n.ctime,
            ..Core::default()
        };
        let room = inode::data_room(attr_len, matches!(n.kind, Kind::Special { .. }));
        let (mode, fork) = match n.kind.clone() {
            Kind::File { exts, size } => {
                c.format = FMT_EXTENTS;
                c.size = size;
                c.nblocks = exts.iter().map(|x| x.len).sum();
                c.nextents = exts.len() as u32;
                (S_IFREG, inode::pack_extents(&exts))
            }
            Kind::Special { ftype, rdev } => {
                c.format = FMT_DEV;
                (ftype, rdev.to_be_bytes().to_vec())
            }
            Kind::Symlink(t) => {
                c.size = t.len() as u64;
                if t.len() <= room {
                    c.format = FMT_LOCAL;
                    (S_IFLNK, t)
                } else {
                    let mut b = vec![0u8; BLOCK as usize];
                    super::crc::be32(&mut b, 0, 0x5853_4c4d); // "XSLM"
                    super::crc::be32(&mut b, 8, t.len() as u32);
                    b[16..32].copy_from_slice(&self.uuid);
                    super::crc::be64(&mut b, 32, ino);
                    b[SYMLINK_HDR..SYMLINK_HDR + t.len()].copy_from_slice(&t);
                    let exts = self.place_symlink(b)?;
                    c.format = FMT_EXTENTS;
                    c.nblocks = 1;
                    c.nextents = 1;
                    (S_IFLNK, inode::pack_extents(&exts))
                }
            }
            Kind::Dir { children } => {
                let ents: Vec<Ent> = children
                    .iter()
                    .map(|(name, cid)| Ent {
                        name,
                        ino: inos[*cid],
                        ftype: self.ftype(*cid),
                    })
                    .collect();
                if let Some(sf) = dir::shortform(parent, &ents, room) {
                    c.format = FMT_LOCAL;
                    c.size = sf.len() as u64;
                    (S_IFDIR, sf)
                } else {
                    if !dir::fits_node_form(ents.len()) {
                        return Err(Error::Option(format!(
                            "a directory with {} entries is beyond dibr's XFS writer (one dabtree level)",
                            ents.len()
                        )));
                    }
                    let (blocks, size) = dir::blocks(ino, parent, &ents, &self.uuid);
                    drop(ents);
                    let exts = self.place(blocks, "directory blocks")?;
                    c.format = FMT_EXTENTS;
                    c.size = size;
                    c.nblocks = exts.iter().map(|x| x.len).sum();
                    c.nextents = exts.len() as u32;
                    (S_IFDIR, inode::pack_extents(&exts))
                }
            }
        };
        if fork.len() > room {
            let path = format!("inode {ino}");
            return Err(Error::Entry {
                path,
                offset: 0,
                problem: format!(
                    "its data fork takes {} bytes, more than the {room} left beside its extended attributes",
                    fork.len()
                ),
            });
        }
        c.mode = mode | self.nodes[id].perm;
        let _ = g;
        Ok((c, fork))
    }

    fn place_symlink(&mut self, mut b: Vec<u8>) -> Result<Vec<Extent>> {
        let g = self.alloc.geo.clone();
        let Some(p) = self.alloc.contiguous(1) else {
            return Err(self.too_small("a symlink block", 1));
        };
        super::crc::be64(&mut b, 40, g.daddr(p.ag, p.agbno));
        super::crc::set(&mut b, 12);
        self.write(self.base + g.byte(p.ag, p.agbno), &b)?;
        Ok(vec![Extent {
            off: 0,
            fsb: g.fsb(p.ag, p.agbno),
            len: 1,
        }])
    }

    /// `XFS_DIR3_FT_*` of a node.
    fn ftype(&self, id: NodeId) -> u8 {
        match &self.nodes[id].kind {
            Kind::File { .. } => 1,
            Kind::Dir { .. } => 2,
            Kind::Symlink(_) => 7,
            Kind::Special { ftype, .. } => match *ftype {
                0o020000 => 3,
                0o060000 => 4,
                0o010000 => 5,
                _ => 6,
            },
        }
    }
}
