//! Microsoft VHD ("vpc") writer, dynamic disk, as `qemu-img convert -O vpc`
//! writes by default.
//!
//! File layout: footer copy (512) | dynamic disk header (1024) | BAT (4
//! bytes per 2 MiB block, padded to 512) | blocks | footer. A block is a
//! 512-byte sector bitmap (all ones: every sector present) followed by
//! 2 MiB of data; only blocks holding non-zero data are allocated, and
//! all-zero 64 KiB pieces inside them stay holes in the output file.
//!
//! Size: qemu (block/vpc.c) takes the disk size from the CHS geometry for
//! creator apps other than "win ", "qem2", "d2v ", "CTXS", "tap\0", and
//! `vpc_create` without `force_size` rounds the requested size *up* to the
//! first CHS geometry that holds it (calculate_geometry on total_sectors,
//! total_sectors+1, ... until cyls*heads*secs >= total_sectors), writing that
//! product as both original and current size with creator app "qemu". We
//! do the same, so `qemu-img info` shows the same virtual size for our
//! image as for qemu's; the bytes past the raw size read as zeros. At the
//! maximum geometry (65535/16/255, ~127 GiB) qemu uses current_size
//! instead, which we then set to the exact raw size (rounded up to a
//! sector).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::atomic::AtomicFile;
pub use super::qcow2::OutputError;
use super::qcow2::{chunks_touched, data_extents, is_zero};

pub const BLOCK_SIZE: u64 = 2 << 20;
const SECTOR: u64 = 512;
const BITMAP_SIZE: u64 = (BLOCK_SIZE / SECTOR / 8).next_multiple_of(SECTOR);
pub const VHD_MAX_GEOMETRY: u64 = 65535 * 16 * 255;
/// qemu's VHD_MAX_SECTORS: 2040 GiB.
pub const VHD_MAX_SECTORS: u64 = 0xff00_0000;
/// Seconds between the Unix epoch and 2000-01-01 00:00:00 UTC.
const VHD_EPOCH: u64 = 946_684_800;

/// qemu's calculate_geometry (the VHD spec's algorithm): (cyls, heads, secs).
pub fn calculate_geometry(total_sectors: u64) -> (u16, u8, u8) {
    let total = total_sectors.min(VHD_MAX_GEOMETRY);
    let (secs, heads, cth);
    if total >= 65535 * 16 * 63 {
        secs = 255u64;
        heads = 16u64;
        cth = total / secs;
    } else {
        let mut s = 17u64;
        let mut c = total / s;
        let mut h = c.div_ceil(1024).max(4);
        if c >= h * 1024 || h > 16 {
            s = 31;
            h = 16;
            c = total / s;
        }
        if c >= h * 1024 {
            s = 63;
            h = 16;
            c = total / s;
        }
        (secs, heads, cth) = (s, h, c);
    }
    ((cth / heads) as u16, heads as u8, secs as u8)
}

/// Geometry and disk size in sectors that qemu's vpc_create picks for a
/// raw image of `size` bytes.
pub fn vpc_size(size: u64) -> (u16, u8, u8, u64) {
    let total = size.div_ceil(SECTOR);
    let (mut c, mut h, mut s) = (0u16, 0u8, 0u8);
    let mut i = 0;
    while total > c as u64 * h as u64 * s as u64 {
        (c, h, s) = calculate_geometry(total + i);
        i += 1;
        if c as u64 * h as u64 * s as u64 == VHD_MAX_GEOMETRY {
            break;
        }
    }
    let product = c as u64 * h as u64 * s as u64;
    let sectors = if product == VHD_MAX_GEOMETRY {
        total
    } else {
        product
    };
    (c, h, s, sectors)
}

fn checksum(b: &[u8]) -> u32 {
    !b.iter().fold(0u32, |a, &x| a.wrapping_add(x as u32))
}

/// Convert the raw image `raw` to a dynamic VHD at `out` (written under a
/// temporary name and renamed into place), stamped with the raw image's
/// mtime: [`write_vhd_at`] without a `SOURCE_DATE_EPOCH`.
pub fn write_vhd(raw: &Path, out: &Path) -> Result<(), OutputError> {
    write_vhd_at(raw, out, None)
}

/// [`write_vhd`] with the footer's timestamp (and so its UUID) taken from
/// `source_date_epoch` when it is set and not before 1970 (reproducible
/// builds), else from the raw image's mtime.
pub fn write_vhd_at(
    raw: &Path,
    out: &Path,
    source_date_epoch: Option<i64>,
) -> Result<(), OutputError> {
    let src = File::open(raw).map_err(OutputError::io(raw))?;
    let meta = src.metadata().map_err(OutputError::io(raw))?;
    let size = meta.len();
    let (cyls, heads, secs, sectors) = vpc_size(size);
    if sectors > VHD_MAX_SECTORS {
        return Err(OutputError::Invalid {
            path: out.to_path_buf(),
            msg: format!("{size} bytes is larger than VHD's 2040 GiB maximum"),
        });
    }
    let geometry = Geometry {
        disk_size: sectors * SECTOR,
        cyls,
        heads,
        secs,
    };
    let blocks = geometry.disk_size.div_ceil(BLOCK_SIZE);
    let extents = data_extents(&src, size).map_err(OutputError::io(raw))?;
    let dst = AtomicFile::create(out).map_err(OutputError::io(out))?;
    let f = dst.file();
    let werr = OutputError::io;
    let (bat, end) = write_blocks(&src, raw, f, out, size, blocks, &extents)?;
    let stamp = timestamp(source_date_epoch, &meta);
    let footer = footer(&geometry, stamp, identity(size, stamp, &bat));
    let mut head = Vec::with_capacity(BAT_OFFSET as usize + bat.len());
    head.extend_from_slice(&footer);
    head.extend_from_slice(&dynamic_header(blocks));
    head.extend_from_slice(&bat);
    f.write_all_at(&head, 0).map_err(werr(out))?;
    f.write_all_at(&footer, end).map_err(werr(out))?;
    f.set_len(end + SECTOR).map_err(werr(out))?;
    dst.commit().map_err(werr(out))?;
    Ok(())
}

/// The disk's size as the footer states it (from CHS, as qemu's) and its
/// CHS geometry.
struct Geometry {
    disk_size: u64,
    cyls: u16,
    heads: u8,
    secs: u8,
}

/// The block allocation table starts after the footer copy (sector 0) and
/// the 1 KiB dynamic header (sectors 1–2).
const BAT_OFFSET: u64 = 3 * SECTOR;

/// Every block with data, as sector bitmap + data, after the BAT; returns
/// the BAT and where the file's data ends (the footer goes there).
fn write_blocks(
    src: &File,
    raw: &Path,
    f: &File,
    out: &Path,
    size: u64,
    blocks: u64,
    extents: &[(u64, u64)],
) -> Result<(Vec<u8>, u64), OutputError> {
    let werr = OutputError::io;
    let bat_bytes = (blocks * 4).next_multiple_of(SECTOR);
    let mut bat = vec![0xffu8; bat_bytes as usize];
    let mut pos = BAT_OFFSET + bat_bytes;
    let mut buf = vec![0u8; (BITMAP_SIZE + BLOCK_SIZE) as usize];
    for b in chunks_touched(extents, BLOCK_SIZE) {
        let off = b * BLOCK_SIZE;
        let len = (size - off).min(BLOCK_SIZE) as usize;
        let data = &mut buf[BITMAP_SIZE as usize..];
        data.fill(0);
        src.read_exact_at(&mut data[..len], off)
            .map_err(OutputError::io(raw))?;
        if is_zero(&data[..len]) {
            continue;
        }
        buf[..BITMAP_SIZE as usize].fill(0xff);
        // The output is a fresh file: leave all-zero 64 KiB pieces as holes.
        f.write_all_at(&buf[..BITMAP_SIZE as usize], pos)
            .map_err(werr(out))?;
        let piece = 64 << 10;
        for (k, chunk) in buf[BITMAP_SIZE as usize..].chunks(piece).enumerate() {
            if !is_zero(chunk) {
                let at = pos + BITMAP_SIZE + (k * piece) as u64;
                f.write_all_at(chunk, at).map_err(werr(out))?;
            }
        }
        let entry = u32::try_from(pos / SECTOR).map_err(|_| OutputError::Invalid {
            path: out.to_path_buf(),
            msg: "block offset beyond VHD's 32-bit sector BAT".into(),
        })?;
        bat[b as usize * 4..b as usize * 4 + 4].copy_from_slice(&entry.to_be_bytes());
        pos += BITMAP_SIZE + BLOCK_SIZE;
    }
    Ok((bat, pos))
}

/// Seconds since 2000-01-01 (the VHD epoch): `SOURCE_DATE_EPOCH`, else
/// the raw image's mtime.
fn timestamp(source_date_epoch: Option<i64>, meta: &std::fs::Metadata) -> u32 {
    let unix = source_date_epoch
        .and_then(|s| u64::try_from(s).ok())
        .unwrap_or_else(|| {
            meta.modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_secs())
        });
    unix.saturating_sub(VHD_EPOCH) as u32
}

/// A deterministic version-4 UUID: a hash of the size, time and BAT.
fn identity(size: u64, stamp: u32, bat: &[u8]) -> [u8; 16] {
    let mut h = Sha256::new();
    h.update(b"dibr-vhd");
    h.update(size.to_be_bytes());
    h.update(stamp.to_be_bytes());
    h.update(bat);
    let mut uuid = [0u8; 16];
    uuid.copy_from_slice(&h.finalize()[..16]);
    uuid[6] = (uuid[6] & 0x0f) | 0x40;
    uuid[8] = (uuid[8] & 0x3f) | 0x80;
    uuid
}

/// The hard disk footer (Virtual Hard Disk Image Format Specification,
/// "Hard Disk Footer Format"), written at the start and the end.
fn footer(g: &Geometry, stamp: u32, uuid: [u8; 16]) -> [u8; 512] {
    let mut footer = [0u8; 512];
    footer[0..8].copy_from_slice(b"conectix");
    footer[8..12].copy_from_slice(&2u32.to_be_bytes());
    footer[12..16].copy_from_slice(&0x0001_0000u32.to_be_bytes());
    footer[16..24].copy_from_slice(&SECTOR.to_be_bytes()); // dynamic header
    footer[24..28].copy_from_slice(&stamp.to_be_bytes());
    footer[28..32].copy_from_slice(b"qemu"); // size from CHS, as qemu's
    footer[32..36].copy_from_slice(&0x0005_0003u32.to_be_bytes());
    footer[36..40].copy_from_slice(b"Wi2k");
    footer[40..48].copy_from_slice(&g.disk_size.to_be_bytes());
    footer[48..56].copy_from_slice(&g.disk_size.to_be_bytes());
    footer[56..58].copy_from_slice(&g.cyls.to_be_bytes());
    footer[58] = g.heads;
    footer[59] = g.secs;
    footer[60..64].copy_from_slice(&3u32.to_be_bytes()); // dynamic
    footer[68..84].copy_from_slice(&uuid);
    let ck = checksum(&footer);
    footer[64..68].copy_from_slice(&ck.to_be_bytes());
    footer
}

/// The dynamic disk header ("Dynamic Disk Header Format").
fn dynamic_header(blocks: u64) -> [u8; 1024] {
    let mut dyn_h = [0u8; 1024];
    dyn_h[0..8].copy_from_slice(b"cxsparse");
    dyn_h[8..16].copy_from_slice(&u64::MAX.to_be_bytes());
    dyn_h[16..24].copy_from_slice(&BAT_OFFSET.to_be_bytes());
    dyn_h[24..28].copy_from_slice(&0x0001_0000u32.to_be_bytes());
    dyn_h[28..32].copy_from_slice(&(blocks as u32).to_be_bytes());
    dyn_h[32..36].copy_from_slice(&(BLOCK_SIZE as u32).to_be_bytes());
    let ck = checksum(&dyn_h);
    dyn_h[36..40].copy_from_slice(&ck.to_be_bytes());
    dyn_h
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::le::{get_be32 as be32, get_be64 as be64};

    /// The footer's fields at the specification's offsets, and its
    /// checksum: the one's complement of the byte sum with the checksum
    /// field zero.
    #[test]
    fn footer_fields_and_checksum() {
        let (cyls, heads, secs, sectors) = vpc_size(1 << 30);
        let g = Geometry {
            disk_size: sectors * SECTOR,
            cyls,
            heads,
            secs,
        };
        let f = footer(&g, 12345, [7; 16]);
        assert_eq!(&f[0..8], b"conectix");
        assert_eq!(be32(&f, 8), 2, "features: reserved bit");
        assert_eq!(be32(&f, 12), 0x0001_0000, "format version 1.0");
        assert_eq!(be64(&f, 16), 512, "dynamic header offset");
        assert_eq!(be32(&f, 24), 12345);
        assert_eq!(be64(&f, 40), g.disk_size);
        assert_eq!(be64(&f, 48), g.disk_size);
        assert_eq!(u16::from_be_bytes([f[56], f[57]]), cyls);
        assert_eq!((f[58], f[59]), (heads, secs));
        assert_eq!(be32(&f, 60), 3, "dynamic disk");
        assert_eq!(&f[68..84], &[7; 16]);
        let mut z = f;
        z[64..68].fill(0);
        let sum: u32 = z.iter().map(|&b| b as u32).sum();
        assert_eq!(be32(&f, 64), !sum);
    }

    /// The dynamic header: no parent, the BAT right after it, 2 MiB blocks.
    #[test]
    fn dynamic_header_fields() {
        let h = dynamic_header(512);
        assert_eq!(&h[0..8], b"cxsparse");
        assert_eq!(be64(&h, 8), u64::MAX, "data offset: unused");
        assert_eq!(be64(&h, 16), 1536, "BAT after footer + this header");
        assert_eq!(be32(&h, 24), 0x0001_0000);
        assert_eq!(be32(&h, 28), 512, "max table entries");
        assert_eq!(be32(&h, 32), 2 << 20, "block size");
        let mut z = h;
        z[36..40].fill(0);
        let sum: u32 = z.iter().map(|&b| b as u32).sum();
        assert_eq!(be32(&h, 36), !sum);
    }
}
