//! Block allocation: one cursor per AG, filled in order. Everything is
//! placed front to back, so an AG's free space is the alignment gaps it
//! recorded plus the tail from its cursor to its end — which is exactly
//! what the free-space btrees list at the end.

use super::geometry::{Geometry, CHUNK_BLOCKS, FIRST_FREE, INO_ALIGN};

/// Longest extent an extent record holds (21-bit length).
pub const MAX_EXTENT: u64 = (1 << 21) - 1;

/// A run of blocks in one AG.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Piece {
    pub ag: u32,
    pub agbno: u64,
    pub len: u64,
}

pub struct Alloc {
    pub geo: Geometry,
    /// Next free block in each AG.
    cursor: Vec<u64>,
    /// Free holes left behind by alignment, per AG.
    gaps: Vec<Vec<(u64, u64)>>,
    /// AG that general allocations come from.
    cur: u32,
    /// Blocks each AG must keep free for its inode btree beyond the root.
    reserve: Vec<u64>,
    /// Inode chunks per AG (first block of each).
    pub chunks: Vec<Vec<u64>>,
}

impl Alloc {
    /// The empty filesystem: headers, the log and the root inode chunk.
    pub fn new(geo: Geometry) -> Alloc {
        let n = geo.agcount as usize;
        let mut a = Alloc {
            cursor: vec![FIRST_FREE; n],
            gaps: vec![Vec::new(); n],
            cur: 0,
            reserve: vec![0; n],
            chunks: vec![Vec::new(); n],
            geo,
        };
        let lag = a.geo.log_ag as usize;
        a.cursor[lag] = a.geo.log_agbno + a.geo.logblocks;
        a.pad(0, a.geo.root_agbno);
        a.chunks[0].push(a.geo.root_agbno);
        a.cursor[0] = a.geo.root_agbno + CHUNK_BLOCKS;
        a
    }

    fn pad(&mut self, ag: u32, to: u64) {
        let c = self.cursor[ag as usize];
        if to > c {
            self.gaps[ag as usize].push((c, to - c));
            self.cursor[ag as usize] = to;
        }
    }

    fn room(&self, ag: u32) -> u64 {
        let end = self.geo.ag_len(ag) - self.reserve[ag as usize];
        end.saturating_sub(self.cursor[ag as usize])
    }

    /// `n` blocks, split across AGs (and at the longest extent) when they
    /// must be; None when the filesystem is full.
    pub fn blocks(&mut self, mut n: u64) -> Option<Vec<Piece>> {
        let mut out = Vec::new();
        if n > self.free_total() {
            return None;
        }
        while n > 0 {
            let room = self.room(self.cur).min(MAX_EXTENT);
            if room == 0 {
                self.cur += 1;
                continue;
            }
            let take = room.min(n);
            let ag = self.cur;
            out.push(Piece {
                ag,
                agbno: self.cursor[ag as usize],
                len: take,
            });
            self.cursor[ag as usize] += take;
            n -= take;
        }
        Some(out)
    }

    /// `n` contiguous blocks (n ≤ an AG), moving to the next AG when the
    /// current one cannot hold them.
    pub fn contiguous(&mut self, n: u64) -> Option<Piece> {
        while self.cur < self.geo.agcount {
            let ag = self.cur;
            if self.room(ag) >= n {
                let agbno = self.cursor[ag as usize];
                self.cursor[ag as usize] += n;
                return Some(Piece { ag, agbno, len: n });
            }
            self.cur += 1;
        }
        None
    }

    /// An inode chunk, aligned, in an AG that can also hold the inode
    /// btree blocks its chunks need.
    pub fn chunk(&mut self, inobt_blocks: impl Fn(usize) -> u64) -> Option<Piece> {
        while self.cur < self.geo.agcount {
            let ag = self.cur;
            let i = ag as usize;
            let start = self.cursor[i].next_multiple_of(INO_ALIGN);
            let reserve = inobt_blocks(self.chunks[i].len() + 1) - 1;
            if start + CHUNK_BLOCKS + reserve <= self.geo.ag_len(ag) {
                self.pad(ag, start);
                self.cursor[i] = start + CHUNK_BLOCKS;
                self.reserve[i] = reserve;
                self.chunks[i].push(start);
                return Some(Piece {
                    ag,
                    agbno: start,
                    len: CHUNK_BLOCKS,
                });
            }
            self.cur += 1;
        }
        None
    }

    /// Take the blocks reserved in `ag` for its inode btree.
    pub fn take_reserve(&mut self, ag: u32) -> Vec<u64> {
        let i = ag as usize;
        let n = std::mem::take(&mut self.reserve[i]);
        let first = self.cursor[i];
        self.cursor[i] += n;
        (first..first + n).collect()
    }

    /// Free blocks left for general allocation.
    pub fn free_total(&self) -> u64 {
        (self.cur..self.geo.agcount).map(|ag| self.room(ag)).sum()
    }

    /// Free extents of `ag` (after every allocation), sorted by block.
    pub fn free_extents(&self, ag: u32) -> Vec<(u64, u64)> {
        let i = ag as usize;
        let mut v = self.gaps[i].clone();
        let end = self.geo.ag_len(ag);
        if self.cursor[i] < end {
            v.push((self.cursor[i], end - self.cursor[i]));
        }
        v.sort_unstable();
        v
    }
}
