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
    let disk_size = sectors * SECTOR;
    let blocks = disk_size.div_ceil(BLOCK_SIZE);
    let extents = data_extents(&src, size).map_err(OutputError::io(raw))?;
    let dst = AtomicFile::create(out).map_err(OutputError::io(out))?;
    let f = dst.file();
    let werr = OutputError::io;

    let bat_off = 3 * SECTOR;
    let bat_bytes = (blocks * 4).next_multiple_of(SECTOR);
    let mut bat = vec![0xffu8; bat_bytes as usize];
    let mut pos = bat_off + bat_bytes;
    let mut buf = vec![0u8; (BITMAP_SIZE + BLOCK_SIZE) as usize];
    for b in chunks_touched(&extents, BLOCK_SIZE) {
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

    // Deterministic timestamp and UUID: SOURCE_DATE_EPOCH or the raw
    // image's mtime; the UUID hashes the size, time and BAT.
    let unix = source_date_epoch
        .and_then(|s| u64::try_from(s).ok())
        .unwrap_or_else(|| {
            meta.modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_secs())
        });
    let stamp = unix.saturating_sub(VHD_EPOCH) as u32;
    let mut h = Sha256::new();
    h.update(b"dibr-vhd");
    h.update(size.to_be_bytes());
    h.update(stamp.to_be_bytes());
    h.update(&bat);
    let mut uuid = [0u8; 16];
    uuid.copy_from_slice(&h.finalize()[..16]);
    uuid[6] = (uuid[6] & 0x0f) | 0x40;
    uuid[8] = (uuid[8] & 0x3f) | 0x80;

    let mut footer = [0u8; 512];
    footer[0..8].copy_from_slice(b"conectix");
    footer[8..12].copy_from_slice(&2u32.to_be_bytes());
    footer[12..16].copy_from_slice(&0x0001_0000u32.to_be_bytes());
    footer[16..24].copy_from_slice(&SECTOR.to_be_bytes()); // dynamic header
    footer[24..28].copy_from_slice(&stamp.to_be_bytes());
    footer[28..32].copy_from_slice(b"qemu"); // size from CHS, as qemu's
    footer[32..36].copy_from_slice(&0x0005_0003u32.to_be_bytes());
    footer[36..40].copy_from_slice(b"Wi2k");
    footer[40..48].copy_from_slice(&disk_size.to_be_bytes());
    footer[48..56].copy_from_slice(&disk_size.to_be_bytes());
    footer[56..58].copy_from_slice(&cyls.to_be_bytes());
    footer[58] = heads;
    footer[59] = secs;
    footer[60..64].copy_from_slice(&3u32.to_be_bytes()); // dynamic
    footer[68..84].copy_from_slice(&uuid);
    let ck = checksum(&footer);
    footer[64..68].copy_from_slice(&ck.to_be_bytes());

    let mut dyn_h = [0u8; 1024];
    dyn_h[0..8].copy_from_slice(b"cxsparse");
    dyn_h[8..16].copy_from_slice(&u64::MAX.to_be_bytes());
    dyn_h[16..24].copy_from_slice(&bat_off.to_be_bytes());
    dyn_h[24..28].copy_from_slice(&0x0001_0000u32.to_be_bytes());
    dyn_h[28..32].copy_from_slice(&(blocks as u32).to_be_bytes());
    dyn_h[32..36].copy_from_slice(&(BLOCK_SIZE as u32).to_be_bytes());
    let ck = checksum(&dyn_h);
    dyn_h[36..40].copy_from_slice(&ck.to_be_bytes());

    let mut head = Vec::with_capacity((bat_off + bat_bytes) as usize);
    head.extend_from_slice(&footer);
    head.extend_from_slice(&dyn_h);
    head.extend_from_slice(&bat);
    f.write_all_at(&head, 0).map_err(werr(out))?;
    f.write_all_at(&footer, pos).map_err(werr(out))?;
    f.set_len(pos + SECTOR).map_err(werr(out))?;
    dst.commit().map_err(werr(out))?;
    Ok(())
}
