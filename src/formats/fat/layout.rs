//! FAT32 geometry: how a region of `size` bytes is split into reserved
//! sectors, two FATs and the data area of clusters.

use super::FatError;

/// Logical sector size; the only one we write.
pub const SECTOR: u64 = 512;
/// Reserved sectors before the first FAT (mkfs.fat and Windows use 32).
pub const MIN_RESERVED: u32 = 32;
/// Number of FAT copies.
pub const NUM_FATS: u32 = 2;
/// Fewer clusters than this makes the volume FAT16 by definition.
pub const MIN_CLUSTERS: u32 = 65_525;
/// Largest valid cluster count for FAT32 (entries are 28 bits, minus reserved values).
pub const MAX_CLUSTERS: u32 = 0x0FFF_FFF5 - 2;

/// The computed layout of one FAT32 volume. All sector numbers are relative
/// to the start of the volume.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub total_sectors: u32,
    pub sectors_per_cluster: u32,
    pub reserved_sectors: u32,
    pub fat_sectors: u32,
    /// Number of data clusters (numbered 2 ..= cluster_count + 1).
    pub cluster_count: u32,
}

impl Layout {
    /// Picks the cluster size the way Microsoft's table (and mkfs.fat) do for
    /// FAT32, shrinking it when needed to reach the FAT32 minimum cluster
    /// count, and sizes the FATs. The data area starts on a cluster boundary.
    pub fn compute(size: u64) -> Result<Layout, FatError> {
        let sectors = size / SECTOR;
        let min = Self::min_size();
        if sectors > u64::from(u32::MAX) {
            return Err(FatError::TooLarge { size });
        }
        let total = sectors as u32;
        let preferred: u32 = match size {
            s if s <= 260 << 20 => 1,
            s if s <= 8 << 30 => 8,
            s if s <= 16 << 30 => 16,
            s if s <= 32 << 30 => 32,
            _ => 64,
        };
        let mut spc = preferred;
        loop {
            if let Some(l) = Self::with_cluster(total, spc) {
                if l.cluster_count >= MIN_CLUSTERS {
                    if l.cluster_count > MAX_CLUSTERS {
                        return Err(FatError::TooLarge { size });
                    }
                    return Ok(l);
                }
            }
            if spc == 1 {
                return Err(FatError::TooSmall { size, min });
            }
            spc /= 2;
        }
    }

    fn with_cluster(total: u32, spc: u32) -> Option<Layout> {
        let total64 = u64::from(total);
        let spc64 = u64::from(spc);
        // (reserved, clusters) for a FAT of `fat` sectors; the reserved area
        // is padded so the data area is cluster aligned.
        let place = |fat: u64| -> Option<(u64, u64)> {
            let meta = u64::from(MIN_RESERVED) + u64::from(NUM_FATS) * fat;
            let pad = (spc64 - meta % spc64) % spc64;
            let meta = meta + pad;
            (meta < total64).then(|| (u64::from(MIN_RESERVED) + pad, (total64 - meta) / spc64))
        };
        let need = |clusters: u64| ((clusters + 2) * 4).div_ceil(SECTOR);
        // The smallest FAT that covers the clusters it leaves room for:
        // need(clusters(fat)) is non-increasing in fat, so walk up, then back down.
        let mut fat: u64 = 1;
        loop {
            let (_, c) = place(fat)?;
            let n = need(c);
            if n <= fat {
                break;
            }
            fat = n;
        }
        while fat > 1 {
            match place(fat - 1) {
                Some((_, c)) if need(c) < fat => fat -= 1,
                _ => break,
            }
        }
        let (reserved, clusters) = place(fat)?;
        Some(Layout {
            total_sectors: total,
            sectors_per_cluster: spc,
            reserved_sectors: reserved as u32,
            fat_sectors: fat as u32,
            cluster_count: clusters.min(u64::from(u32::MAX)) as u32,
        })
    }

    /// The smallest region size (bytes) that holds a FAT32 volume.
    pub fn min_size() -> u64 {
        // 512-byte clusters: 65525 clusters + FATs + reserved.
        let fat = (u64::from(MIN_CLUSTERS) + 2) * 4;
        let fat_sectors = fat.div_ceil(SECTOR);
        (u64::from(MIN_RESERVED) + 2 * fat_sectors + u64::from(MIN_CLUSTERS)) * SECTOR
    }

    pub fn cluster_bytes(&self) -> u64 {
        u64::from(self.sectors_per_cluster) * SECTOR
    }

    /// Byte offset (within the volume) of FAT copy `n`.
    pub fn fat_offset(&self, n: u32) -> u64 {
        (u64::from(self.reserved_sectors) + u64::from(n) * u64::from(self.fat_sectors)) * SECTOR
    }

    /// Byte offset (within the volume) of data cluster `c` (c >= 2).
    pub fn cluster_offset(&self, c: u32) -> u64 {
        let data =
            u64::from(self.reserved_sectors) + u64::from(NUM_FATS) * u64::from(self.fat_sectors);
        data * SECTOR + u64::from(c - 2) * self.cluster_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn esp_550m_uses_4k_clusters() {
        let l = Layout::compute(550 << 20).unwrap();
        assert_eq!(l.sectors_per_cluster, 8);
        assert!(l.cluster_count >= MIN_CLUSTERS);
        assert_eq!(l.cluster_offset(2) % l.cluster_bytes(), 0);
        assert!((u64::from(l.cluster_count) + 2) * 4 <= u64::from(l.fat_sectors) * SECTOR);
    }

    #[test]
    fn smallest_fat32() {
        let min = Layout::min_size();
        let l = Layout::compute(min).unwrap();
        assert_eq!(l.sectors_per_cluster, 1);
        assert!(l.cluster_count >= MIN_CLUSTERS);
        assert!(matches!(
            Layout::compute(min - SECTOR),
            Err(FatError::TooSmall { .. })
        ));
        assert!(Layout::compute(33 << 20).is_ok());
    }
}
