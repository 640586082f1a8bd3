//! `Builder::finish`: number the inodes, write every inode chunk, then
//! each AG's btrees and headers, the log, and the image's final length.

use super::btree::{self, Kind as BtKind};
use super::builder::{Builder, Kind, ROOT};
use super::error::{Error, Result};
use super::finish::Summary;
use super::geometry::{
    BLOCK, BNO_ROOT, CHUNK_BLOCKS, CHUNK_INODES, CNT_ROOT, INODE_SIZE, INO_ROOT, SECT,
};
use super::headers::{self, AgfInfo, AgiInfo, SbInfo};
use super::inode::{self, Core, DIFLAG_NEWRTBM, FMT_EXTENTS};
use super::log;

pub(super) const INOBT: BtKind = BtKind {
    magic: btree::IBT_MAGIC,
    rec: 16,
    key: 4,
};
const BNOBT: BtKind = BtKind {
    magic: btree::ABTB_MAGIC,
    rec: 8,
    key: 8,
};
const CNTBT: BtKind = BtKind {
    magic: btree::ABTC_MAGIC,
    rec: 8,
    key: 8,
};

impl Builder {
    /// Lay out and write all metadata; the image is complete afterwards.
    pub fn finish(mut self) -> Result<Summary> {
        let g = self.alloc.geo.clone();
        let (order, nlink, parent) = self.order();
        // Slot 0 is the root, 1 and 2 the realtime bitmap and summary.
        let count = order.len() as u64 + 2;
        if self.missing_blocks > 0 {
            let more = self.missing_blocks + count.div_ceil(CHUNK_INODES) * CHUNK_BLOCKS;
            let first = self.first_missing.clone().unwrap_or_default();
            return Err(self.too_small(&format!("file data from '{first}' on has no room"), more));
        }
        let slots = self.chunks(count)?;
        let mut inos = vec![0u64; self.nodes.len()];
        let mut slot_of = vec![0u64; self.nodes.len()];
        for (i, &id) in order.iter().enumerate() {
            let s = if i == 0 { 0 } else { i as u64 + 2 };
            slot_of[id] = s;
            inos[id] = slots.ino(&g, s);
        }
        let nchunks = slots.chunks.len();
        let mut table = vec![0u8; nchunks * CHUNK_INODES as usize * INODE_SIZE];
        for s in 0..nchunks as u64 * CHUNK_INODES {
            let at = s as usize * INODE_SIZE;
            inode::encode_free(&mut table[at..], slots.ino(&g, s), &self.uuid);
        }
        for &id in &order {
            let ino = inos[id];
            let p = inos[parent[id]];
            let (core, fork) = self.inode_of(id, ino, nlink[id], &inos, p)?;
            let attr = std::mem::take(&mut self.nodes[id].attr);
            let dev = matches!(self.nodes[id].kind, Kind::Special { .. });
            let off = inode::forkoff(attr.len(), dev);
            let at = slot_of[id] as usize * INODE_SIZE;
            inode::encode(&mut table[at..], ino, &self.uuid, &core, &fork, &attr, off);
            if let Kind::Dir { children } = &mut self.nodes[id].kind {
                children.clear();
                children.shrink_to_fit();
            }
        }
        for (s, flags) in [(1u64, DIFLAG_NEWRTBM), (2, 0)] {
            let c = Core {
                mode: 0o100000,
                format: FMT_EXTENTS,
                nlink: 1,
                atime: self.now,
                mtime: self.now,
                ctime: self.now,
                flags,
                ..Core::default()
            };
            let at = s as usize * INODE_SIZE;
            inode::encode(
                &mut table[at..],
                slots.ino(&g, s),
                &self.uuid,
                &c,
                &[],
                &[],
                0,
            );
        }
        let chunk_bytes = CHUNK_INODES as usize * INODE_SIZE;
        for (i, c) in slots.chunks.iter().enumerate() {
            let bytes = &table[i * chunk_bytes..(i + 1) * chunk_bytes];
            self.write(self.base + g.byte(c.ag, c.agbno), bytes)?;
        }
        let used = count;
        let icount = nchunks as u64 * CHUNK_INODES;
        let fdblocks = self.write_ags(&slots.chunks, used)?;
        let sb = headers::superblock(&SbInfo {
            geo: &g,
            uuid: self.uuid,
            label: self.label,
            icount,
            ifree: icount - used,
            fdblocks,
        });
        for ag in 0..g.agcount {
            self.write(self.base + g.byte(ag, 0), &sb)?;
        }
        let logstart = g.byte(g.log_ag, g.log_agbno);
        self.write(self.base + logstart, &log::clean(&self.uuid))?;
        let end = self.base + g.dblocks * BLOCK;
        let len = self.file.metadata().map(|m| m.len()).unwrap_or(0);
        if len < end {
            self.file.set_len(end).map_err(|source| Error::Write {
                path: self.path.clone(),
                source,
            })?;
        }
        // No fsync here: the caller syncs the whole disk image when it is
        // an output (the assembler's `disk_io`).
        let _ = ROOT;
        Ok(Summary {
            inodes: used,
            blocks_used: g.dblocks - fdblocks,
            size_bytes: g.dblocks * BLOCK,
        })
    }

    /// Each AG's inode btree, free-space btrees and header sectors; the
    /// filesystem's free block count.
    fn write_ags(&mut self, chunks: &[super::alloc::Piece], used: u64) -> Result<u64> {
        let g = self.alloc.geo.clone();
        let mut fdblocks = 0;
        for ag in 0..g.agcount {
            // Inode btree: one record per chunk, free bits for the slots
            // after the last used inode.
            let mut recs = Vec::new();
            let mut count = 0u32;
            let mut free = 0u32;
            let mut newino = inode::NULL_AGINO;
            for (i, c) in chunks.iter().enumerate().filter(|(_, c)| c.ag == ag) {
                let first = i as u64 * CHUNK_INODES;
                let nused = used.saturating_sub(first).min(CHUNK_INODES);
                let nfree = CHUNK_INODES - nused;
                let mask = if nused == 64 { 0 } else { !0u64 << nused };
                let start = g.agino(c.agbno, 0);
                let mut r = Vec::with_capacity(16);
                r.extend_from_slice(&start.to_be_bytes());
                r.extend_from_slice(&(nfree as u32).to_be_bytes());
                r.extend_from_slice(&mask.to_be_bytes());
                recs.push((start, r));
                count += CHUNK_INODES as u32;
                free += nfree as u32;
                newino = start;
            }
            recs.sort_by_key(|r| r.0);
            let recs: Vec<Vec<u8>> = recs.into_iter().map(|r| r.1).collect();
            let extra = self.alloc.take_reserve(ag);
            let extra: Vec<u64> = extra
                .into_iter()
                .take(INOBT.blocks(recs.len()) as usize - 1)
                .collect();
            let ibt = btree::build(&g, &self.uuid, ag, &INOBT, &recs, INO_ROOT as u64, &extra);
            for (b, data) in &ibt.blocks {
                self.write(self.base + g.byte(ag, *b), data)?;
            }
            // Free space, after every allocation.
            let free_ext = self.alloc.free_extents(ag);
            if BNOBT.blocks(free_ext.len()) > 1 {
                return Err(Error::Option(format!(
                    "AG {ag} has {} free extents, more than one btree block holds",
                    free_ext.len()
                )));
            }
            let rec = |a: u64, b: u64| {
                let mut r = (a as u32).to_be_bytes().to_vec();
                r.extend_from_slice(&(b as u32).to_be_bytes());
                r
            };
            let by_bno: Vec<Vec<u8>> = free_ext.iter().map(|&(s, l)| rec(s, l)).collect();
            let mut by_cnt: Vec<(u64, u64)> = free_ext.iter().map(|&(s, l)| (l, s)).collect();
            by_cnt.sort_unstable();
            // Same record layout (start, length), sorted by length.
            let by_cnt: Vec<Vec<u8>> = by_cnt.iter().map(|&(l, s)| rec(s, l)).collect();
            for (kind, recs, root) in [(&BNOBT, &by_bno, BNO_ROOT), (&CNTBT, &by_cnt, CNT_ROOT)] {
                let t = btree::build(&g, &self.uuid, ag, kind, recs, root as u64, &[]);
                for (b, data) in &t.blocks {
                    self.write(self.base + g.byte(ag, *b), data)?;
                }
            }
            let freeblks: u64 = free_ext.iter().map(|e| e.1).sum();
            let longest = free_ext.iter().map(|e| e.1).max().unwrap_or(0);
            let agf = headers::agf(
                &g,
                &self.uuid,
                ag,
                &AgfInfo {
                    levels: [1, 1],
                    freeblks: freeblks as u32,
                    longest: longest as u32,
                    btreeblks: 0,
                },
            );
            let agi = headers::agi(
                &g,
                &self.uuid,
                ag,
                &AgiInfo {
                    count,
                    level: ibt.levels,
                    freecount: free,
                    newino,
                },
            );
            let at = self.base + g.byte(ag, 0);
            self.write(at + SECT, &agf)?;
            self.write(at + 2 * SECT, &agi)?;
            self.write(at + 3 * SECT, &headers::agfl(&self.uuid, ag))?;
            fdblocks += freeblks + headers_flcount();
        }
        Ok(fdblocks)
    }
}

fn headers_flcount() -> u64 {
    super::geometry::AGFL_COUNT as u64
}
