//! Is there a UEFI loader on a FAT volume? The removable-media path
//! `\EFI\BOOT\BOOT<ARCH>.EFI` is what firmware with empty NVRAM (a new
//! Nova instance's OVMF/AAVMF) starts. A small FAT12/16/32 directory
//! walk: short names only, a bounded number of clusters.

use crate::image_io::ImageSource;

/// Directory clusters followed per directory (a loader directory holds
/// a few entries; this bounds a looping FAT chain).
const MAX_DIR_CLUSTERS: usize = 256;
/// Bytes of one directory read at most (clusters can be 32 KiB or more).
const MAX_DIR_BYTES: u64 = 4 << 20;

struct Fat<'a> {
    src: &'a dyn ImageSource,
    start: u64,
    cluster: u64,
    fat_at: u64,
    fat32: bool,
    data_at: u64,
    /// FAT12/16: the fixed root directory (offset, bytes).
    root: Option<(u64, u64)>,
    root_cluster: u32,
}

fn le16(b: &[u8], o: usize) -> u64 {
    u16::from_le_bytes([b[o], b[o + 1]]) as u64
}
fn le32(b: &[u8], o: usize) -> u64 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]) as u64
}

impl<'a> Fat<'a> {
    fn open(src: &'a dyn ImageSource, start: u64) -> Option<Fat<'a>> {
        let mut bs = [0u8; 512];
        src.read_at(start, &mut bs).ok()?;
        let sector = le16(&bs, 11);
        let per_cluster = bs[13] as u64;
        let reserved = le16(&bs, 14);
        let fats = bs[16] as u64;
        let root_entries = le16(&bs, 17);
        let fat16_size = le16(&bs, 22);
        let fat_size = if fat16_size != 0 {
            fat16_size
        } else {
            le32(&bs, 36)
        };
        if !matches!(sector, 512 | 1024 | 2048 | 4096) || per_cluster == 0 || fats == 0 {
            return None;
        }
        let root_at = (reserved + fats * fat_size) * sector;
        let root_bytes = root_entries * 32;
        let data_at = root_at + root_bytes.div_ceil(sector) * sector;
        let fat32 = fat16_size == 0;
        // FAT12 and FAT16 differ by the cluster count; a loader's ESP is
        // FAT16 or FAT32 (FAT12 is refused: its entries straddle bytes).
        Some(Fat {
            src,
            start,
            cluster: sector * per_cluster,
            fat_at: reserved * sector,
            fat32,
            data_at,
            root: (!fat32).then_some((root_at, root_bytes)),
            root_cluster: le32(&bs, 44) as u32,
        })
    }

    fn next(&self, c: u32) -> Option<u32> {
        let (off, width) = if self.fat32 {
            (self.fat_at + c as u64 * 4, 4)
        } else {
            (self.fat_at + c as u64 * 2, 2)
        };
        let mut b = [0u8; 4];
        self.src.read_at(self.start + off, &mut b[..width]).ok()?;
        let v = if self.fat32 {
            le32(&b, 0) as u32 & 0x0FFF_FFFF
        } else {
            le16(&b, 0) as u32
        };
        let end = if self.fat32 { 0x0FFF_FFF8 } else { 0xFFF8 };
        (v >= 2 && v < end).then_some(v)
    }

    /// The raw 32-byte entries of a directory (None: the root).
    fn entries(&self, first: Option<u32>) -> Vec<[u8; 32]> {
        let mut chunks = Vec::new();
        match (first, self.root) {
            (None, Some((at, len))) => chunks.push((at, len.min(1 << 20))),
            (first, _) => {
                let mut c = first.unwrap_or(self.root_cluster);
                for i in 0..MAX_DIR_CLUSTERS {
                    if c < 2 || (i as u64 + 1) * self.cluster > MAX_DIR_BYTES {
                        break;
                    }
                    chunks.push((self.data_at + (c as u64 - 2) * self.cluster, self.cluster));
                    match self.next(c) {
                        Some(n) => c = n,
                        None => break,
                    }
                }
            }
        }
        let mut out = Vec::new();
        for (at, len) in chunks {
            let mut buf = vec![0u8; len as usize];
            if self.src.read_at(self.start + at, &mut buf).is_err() {
                break;
            }
            for e in buf.chunks_exact(32) {
                if e[0] == 0 {
                    return out;
                }
                let mut a = [0u8; 32];
                a.copy_from_slice(e);
                out.push(a);
            }
        }
        out
    }

    /// The first cluster of subdirectory `name` (short name, 11 bytes).
    fn subdir(&self, dir: Option<u32>, name: &[u8; 11]) -> Option<u32> {
        self.entries(dir).into_iter().find_map(|e| {
            let cluster = (le16(&e, 20) << 16 | le16(&e, 26)) as u32;
            (e[0] != 0xE5 && e[11] & 0x18 == 0x10 && &e[..11] == name).then_some(cluster)
        })
    }
}

/// The loader names `\EFI\BOOT\BOOT*.EFI` on the FAT volume at `start`
/// (e.g. `BOOTX64.EFI`), sorted; empty when none (or not FAT).
pub fn loaders(src: &dyn ImageSource, start: u64) -> Vec<String> {
    let Some(fat) = Fat::open(src, start) else {
        return Vec::new();
    };
    let Some(efi) = fat.subdir(None, b"EFI        ") else {
        return Vec::new();
    };
    let Some(boot) = fat.subdir(Some(efi), b"BOOT       ") else {
        return Vec::new();
    };
    let mut out: Vec<String> = fat
        .entries(Some(boot))
        .into_iter()
        .filter(|e| e[0] != 0xE5 && e[11] & 0x18 == 0 && e[11] != 0x0F)
        .filter(|e| e[..4] == *b"BOOT" && e[8..11] == *b"EFI")
        .map(|e| {
            let base = String::from_utf8_lossy(&e[..8]).trim_end().to_string();
            format!("{base}.EFI")
        })
        .collect();
    out.sort();
    out.dedup();
    out
}
