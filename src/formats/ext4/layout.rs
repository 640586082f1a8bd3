//! Pure geometry: block groups, where backup superblocks and meta_bg
//! descriptor blocks sit, and a sequential allocator that steps around them.
//!
//! Layout: Documentation/filesystems/ext4/blockgroup.rst ("Layout",
//! "Flexible Block Groups", "Meta Block Groups"); e2fsprogs
//! `ext2fs_super_and_bgd_loc2()` for the exact rule.
//!
//! With `sparse_super` a group holds a superblock copy when it is 0, 1 or a
//! power of 3, 5 or 7. With `meta_bg` (and `s_first_meta_bg = 0`) the
//! descriptor block of meta group *m* (64 groups with 64-byte descriptors in
//! 4 KiB blocks) is stored in groups 64m, 64m+1 and 64m+63, right after the
//! superblock copy if the group has one. None of these positions depends on
//! the total size of the filesystem, which is what lets the writer stream
//! file data to its final blocks before it knows how large the image will be.

/// Block size: always 4 KiB (GRUB, the kernel and growth to 1 PiB all want it).
pub const BLOCK_SIZE: u64 = 4096;
pub const BLOCKS_PER_GROUP: u64 = 32768;
pub const INODE_SIZE: u64 = 256;
pub const INODES_PER_BLOCK: u64 = BLOCK_SIZE / INODE_SIZE;
pub const DESC_SIZE: u64 = 64;
/// Groups per meta group: descriptors per block.
pub const META_BG_SIZE: u64 = BLOCK_SIZE / DESC_SIZE;
/// Inode table blocks per group for a given inodes-per-group.
pub fn itable_blocks(ipg: u32) -> u64 {
    (ipg as u64).div_ceil(INODES_PER_BLOCK)
}

fn is_power_of(mut n: u64, base: u64) -> bool {
    while n > 1 && n.is_multiple_of(base) {
        n /= base;
    }
    n == 1
}

/// Does group `g` hold a superblock copy (sparse_super)?
pub fn has_super(g: u64) -> bool {
    g <= 1 || is_power_of(g, 3) || is_power_of(g, 5) || is_power_of(g, 7)
}

/// Does group `g` hold a copy of its meta group's descriptor block?
pub fn has_meta_gdt(g: u64) -> bool {
    let r = g % META_BG_SIZE;
    r == 0 || r == 1 || r == META_BG_SIZE - 1
}

/// Number of fixed metadata blocks at the start of group `g`.
pub fn group_overhead(g: u64) -> u64 {
    has_super(g) as u64 + has_meta_gdt(g) as u64
}

/// Block number of the descriptor copy in group `g`, if it has one.
pub fn meta_gdt_block(g: u64) -> Option<u64> {
    has_meta_gdt(g).then(|| g * BLOCKS_PER_GROUP + has_super(g) as u64)
}

/// Is block `b` one of the fixed metadata positions?
pub fn is_fixed_metadata(b: u64) -> bool {
    b % BLOCKS_PER_GROUP < group_overhead(b / BLOCKS_PER_GROUP)
}

/// A bump allocator over block numbers that never hands out a fixed
/// metadata position. Blocks are handed out in increasing order, so a
/// sequential writer produces long contiguous extents.
#[derive(Clone, Debug)]
pub struct Allocator {
    next: u64,
    /// Hard upper bound (exclusive), when the image size is fixed.
    limit: Option<u64>,
}

/// A contiguous run of blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    pub start: u64,
    pub len: u64,
}

impl Allocator {
    pub fn new(limit: Option<u64>) -> Self {
        let mut a = Allocator { next: 0, limit };
        a.skip_fixed();
        a
    }

    /// First block not yet handed out.
    pub fn next(&self) -> u64 {
        self.next
    }

    pub fn limit(&self) -> Option<u64> {
        self.limit
    }

    /// A copy at the same position without the size limit (to find the
    /// size a layout would need).
    pub fn unbounded(&self) -> Allocator {
        Allocator {
            next: self.next,
            limit: None,
        }
    }

    fn skip_fixed(&mut self) {
        let g = self.next / BLOCKS_PER_GROUP;
        let first_free = g * BLOCKS_PER_GROUP + group_overhead(g);
        if self.next < first_free {
            self.next = first_free;
        }
    }

    fn check(&self, end: u64) -> Option<()> {
        match self.limit {
            Some(l) if end > l => None,
            _ => Some(()),
        }
    }

    /// Up to `max` blocks, contiguous, possibly fewer (stops before the next
    /// fixed metadata position). `None` when the size limit is reached.
    pub fn alloc_some(&mut self, max: u64) -> Option<Run> {
        self.skip_fixed();
        let group_end = (self.next / BLOCKS_PER_GROUP + 1) * BLOCKS_PER_GROUP;
        let len = max.min(group_end - self.next);
        self.check(self.next + len)?;
        let run = Run {
            start: self.next,
            len,
        };
        self.next += len;
        Some(run)
    }

    /// Exactly `n` contiguous blocks (`n <= BLOCKS_PER_GROUP - 2`), skipping
    /// ahead to the next group when they would cross fixed metadata.
    pub fn alloc_contig(&mut self, n: u64) -> Option<Run> {
        self.skip_fixed();
        let group_end = (self.next / BLOCKS_PER_GROUP + 1) * BLOCKS_PER_GROUP;
        if self.next + n > group_end && group_overhead(group_end / BLOCKS_PER_GROUP) > 0 {
            self.next = group_end;
            self.skip_fixed();
        }
        self.check(self.next + n)?;
        let run = Run {
            start: self.next,
            len: n,
        };
        self.next += n;
        Some(run)
    }

    /// `n` blocks as a list of runs (for data that may be split).
    pub fn alloc_runs(&mut self, mut n: u64) -> Option<Vec<Run>> {
        let mut runs = Vec::new();
        while n > 0 {
            let r = self.alloc_some(n)?;
            n -= r.len;
            runs.push(r);
        }
        Some(runs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn super_groups() {
        let got: Vec<u64> = (0..100).filter(|&g| has_super(g)).collect();
        assert_eq!(got, vec![0, 1, 3, 5, 7, 9, 25, 27, 49, 81]);
    }

    #[test]
    fn meta_gdt_positions() {
        assert_eq!(meta_gdt_block(0), Some(1));
        assert_eq!(meta_gdt_block(1), Some(BLOCKS_PER_GROUP + 1));
        assert_eq!(meta_gdt_block(2), None);
        assert_eq!(meta_gdt_block(63), Some(63 * BLOCKS_PER_GROUP));
        assert_eq!(meta_gdt_block(64), Some(64 * BLOCKS_PER_GROUP));
        assert_eq!(group_overhead(3), 1);
        assert_eq!(group_overhead(2), 0);
    }

    #[test]
    fn allocator_skips_fixed_blocks() {
        let mut a = Allocator::new(None);
        assert_eq!(a.next(), 2);
        let runs = a.alloc_runs(BLOCKS_PER_GROUP).unwrap();
        assert_eq!(
            runs[0],
            Run {
                start: 2,
                len: BLOCKS_PER_GROUP - 2
            }
        );
        // Group 1 starts with a superblock copy and a descriptor copy.
        assert_eq!(runs[1].start, BLOCKS_PER_GROUP + 2);
        for r in runs {
            for b in r.start..r.start + r.len {
                assert!(!is_fixed_metadata(b));
            }
        }
        let mut a = Allocator::new(Some(10));
        assert!(a.alloc_contig(9).is_none());
        assert_eq!(a.alloc_contig(8), Some(Run { start: 2, len: 8 }));
    }
}
