//! streamOptimized VMDK writer (VMware "Virtual Disk Format 5.0"), what
//! `qemu-img convert -O vmdk -o subformat=streamOptimized` writes and
//! vSphere / VirtualBox import.
//!
//! File layout, in 512-byte sectors: the sparse extent header (sector 0;
//! its grain directory offset says "at the end") | the embedded descriptor
//! (sectors 1..=20) | padding to the first grain boundary (`OVERHEAD`) |
//! for each grain table's 32 MiB of the disk, its non-zero 64 KiB grains,
//! each a grain marker (disk sector, compressed length) followed by the
//! zlib-compressed grain, padded to a sector, and then — if any grain was
//! written — a GT marker and the grain table | a GD marker and the grain
//! directory | a footer marker and the footer (the header again, with the
//! grain directory's real offset) | the end-of-stream marker. All-zero
//! grains are not stored (their GT entry is 0), nor are grain tables
//! without grains (their GD entry is 0).
//!
//! Reproducible: nothing depends on the clock; the descriptor's content ID
//! is a hash of the disk size and the grain tables (which follow from the
//! data), so the same raw image gives the same file.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use flate2::{Compress, Compression, FlushCompress, Status};
use rayon::prelude::*;
use sha2::{Digest, Sha256};

use super::atomic::AtomicFile;
pub use super::qcow2::OutputError;
use super::qcow2::{data_extents, is_zero};

const SECTOR: u64 = 512;
/// Grain size in sectors (64 KiB), as VMware's and qemu's.
pub const GRAIN_SECTORS: u64 = 128;
const GRAIN: u64 = GRAIN_SECTORS * SECTOR;
/// Grain table entries per table (each table maps 32 MiB).
const GTES_PER_GT: u64 = 512;
const DESCRIPTOR_OFFSET: u64 = 1;
const DESCRIPTOR_SECTORS: u64 = 20;
/// Where the first grain goes: the header and descriptor, rounded up to a grain.
const OVERHEAD: u64 = GRAIN_SECTORS;
const MAGIC: &[u8; 4] = b"KDMV";
/// Header flags: valid newline test (bit 0), compressed grains (bit 16),
/// markers (bit 17).
const FLAGS: u32 = 1 | (1 << 16) | (1 << 17);
const GD_AT_END: u64 = u64::MAX;
const COMPRESSION_DEFLATE: u16 = 1;
const MARKER_EOS: u32 = 0;
const MARKER_GT: u32 = 1;
const MARKER_GD: u32 = 2;
const MARKER_FOOTER: u32 = 3;

/// Convert the raw image `raw` to a streamOptimized VMDK at `out` (written
/// under a temporary name and renamed into place, or staged in the open
/// output set).
pub fn write_vmdk(raw: &Path, out: &Path) -> Result<(), OutputError> {
    let src = File::open(raw).map_err(OutputError::io(raw))?;
    let size = src.metadata().map_err(OutputError::io(raw))?.len();
    let capacity = size.div_ceil(SECTOR);
    let grains = capacity.div_ceil(GRAIN_SECTORS);
    let tables = grains.div_ceil(GTES_PER_GT);
    let extents = data_extents(&src, size).map_err(OutputError::io(raw))?;
    let dst = AtomicFile::create(out).map_err(OutputError::io(out))?;
    let mut w = Stream {
        f: dst.file(),
        out,
        pos: OVERHEAD * SECTOR,
    };
    let mut gd = vec![0u8; (tables * 4) as usize];
    let mut ids = Sha256::new();
    ids.update(b"dibr-vmdk");
    ids.update(capacity.to_le_bytes());
    for t in 0..tables {
        let first = t * GTES_PER_GT;
        let last = (first + GTES_PER_GT).min(grains);
        let wanted: Vec<u64> = (first..last)
            .filter(|&g| touches(&extents, g * GRAIN, GRAIN))
            .collect();
        let packed = wanted
            .par_iter()
            .map(|&g| read_grain(&src, size, g))
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(OutputError::io(raw))?;
        let mut gt = vec![0u8; (GTES_PER_GT * 4) as usize];
        let mut any = false;
        for (&g, data) in wanted.iter().zip(packed) {
            let Some(data) = data else { continue };
            let at = w.grain(g * GRAIN_SECTORS, &data)?;
            let i = ((g - first) * 4) as usize;
            gt[i..i + 4].copy_from_slice(&at.to_le_bytes());
            any = true;
        }
        if any {
            let at = w.metadata(MARKER_GT, &gt)?;
            gd[(t * 4) as usize..(t * 4 + 4) as usize].copy_from_slice(&at.to_le_bytes());
            ids.update(t.to_le_bytes());
            ids.update(&gt);
        }
    }
    let gd_at = w.metadata(MARKER_GD, &gd)?;
    let footer = header(capacity, gd_at as u64);
    w.metadata(MARKER_FOOTER, &footer)?;
    w.marker(0, MARKER_EOS)?;
    let name = out.file_name().map(|n| n.to_string_lossy().into_owned());
    let desc = descriptor(
        capacity,
        content_id(ids),
        name.as_deref().unwrap_or("disk.vmdk"),
    );
    let mut head = header(capacity, GD_AT_END).to_vec();
    head.extend_from_slice(desc.as_bytes());
    w.f.write_all_at(&head, 0).map_err(OutputError::io(out))?;
    w.f.set_len(w.pos).map_err(OutputError::io(out))?;
    dst.commit().map_err(OutputError::io(out))?;
    Ok(())
}

/// Whether any data extent overlaps `[off, off + len)`.
fn touches(extents: &[(u64, u64)], off: u64, len: u64) -> bool {
    let i = extents.partition_point(|&(_, e)| e <= off);
    extents.get(i).is_some_and(|&(s, _)| s < off + len)
}

/// Grain `g` compressed (zlib, as qemu's `compress()`), or None when it
/// is all zeros. The last grain is padded with zeros: readers inflate
/// whole grains.
fn read_grain(src: &File, size: u64, g: u64) -> std::io::Result<Option<Vec<u8>>> {
    let off = g * GRAIN;
    let len = (size - off).min(GRAIN) as usize;
    let mut buf = vec![0u8; GRAIN as usize];
    src.read_exact_at(&mut buf[..len], off)?;
    if is_zero(&buf) {
        return Ok(None);
    }
    Ok(Some(deflate(&buf)?))
}

fn deflate(data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut c = Compress::new(Compression::default(), true);
    // zlib's bound for incompressible input: a little over the input.
    let mut out = Vec::with_capacity(data.len() + data.len() / 1000 + 64);
    match c.compress_vec(data, &mut out, FlushCompress::Finish) {
        Ok(Status::StreamEnd) => Ok(out),
        Ok(_) => Err(std::io::Error::other("deflate: output buffer too small")),
        Err(e) => Err(std::io::Error::other(e)),
    }
}

/// The output file, written front to back from `pos` (a byte offset, on
/// a sector boundary).
struct Stream<'a> {
    f: &'a File,
    out: &'a Path,
    pos: u64,
}

impl Stream<'_> {
    fn sector(&self) -> Result<u32, OutputError> {
        u32::try_from(self.pos / SECTOR).map_err(|_| OutputError::Invalid {
            path: self.out.to_path_buf(),
            msg: "the image passes 2 TiB: beyond VMDK's 32-bit grain table entries".into(),
        })
    }

    fn put(&mut self, bytes: &[u8]) -> Result<(), OutputError> {
        self.f
            .write_all_at(bytes, self.pos)
            .map_err(OutputError::io(self.out))?;
        self.pos += (bytes.len() as u64).next_multiple_of(SECTOR);
        Ok(())
    }

    /// A grain marker (the grain's disk sector, the data's length) and the
    /// compressed grain; returns its sector.
    fn grain(&mut self, lba: u64, data: &[u8]) -> Result<u32, OutputError> {
        let at = self.sector()?;
        let mut b = Vec::with_capacity(12 + data.len());
        b.extend_from_slice(&lba.to_le_bytes());
        b.extend_from_slice(&(data.len() as u32).to_le_bytes());
        b.extend_from_slice(data);
        self.put(&b)?;
        Ok(at)
    }

    /// A metadata marker: a sector with the length (in sectors) of what
    /// follows, size 0 and the type.
    fn marker(&mut self, sectors: u64, kind: u32) -> Result<(), OutputError> {
        let mut m = [0u8; SECTOR as usize];
        m[0..8].copy_from_slice(&sectors.to_le_bytes());
        m[12..16].copy_from_slice(&kind.to_le_bytes());
        self.put(&m)
    }

    /// A marker and the metadata after it; returns the metadata's sector.
    fn metadata(&mut self, kind: u32, data: &[u8]) -> Result<u32, OutputError> {
        self.marker((data.len() as u64).div_ceil(SECTOR), kind)?;
        let at = self.sector()?;
        self.put(data)?;
        Ok(at)
    }
}

/// The sparse extent header ("SparseExtentHeader"), little-endian, 512
/// bytes; `gd_offset` is [`GD_AT_END`] at the start of the stream.
fn header(capacity: u64, gd_offset: u64) -> [u8; SECTOR as usize] {
    let mut h = [0u8; SECTOR as usize];
    h[0..4].copy_from_slice(MAGIC);
    h[4..8].copy_from_slice(&3u32.to_le_bytes()); // version 3: streamOptimized
    h[8..12].copy_from_slice(&FLAGS.to_le_bytes());
    h[12..20].copy_from_slice(&capacity.to_le_bytes());
    h[20..28].copy_from_slice(&GRAIN_SECTORS.to_le_bytes());
    h[28..36].copy_from_slice(&DESCRIPTOR_OFFSET.to_le_bytes());
    h[36..44].copy_from_slice(&DESCRIPTOR_SECTORS.to_le_bytes());
    h[44..48].copy_from_slice(&(GTES_PER_GT as u32).to_le_bytes());
    // 48..56: no redundant grain directory.
    h[56..64].copy_from_slice(&gd_offset.to_le_bytes());
    h[64..72].copy_from_slice(&OVERHEAD.to_le_bytes());
    h[72] = 0; // clean
    h[73..77].copy_from_slice(b"\n \r\n");
    h[77..79].copy_from_slice(&COMPRESSION_DEFLATE.to_le_bytes());
    h
}

/// The descriptor's CID: 32 bits of the content hash, never the values
/// that mean "no parent" (ffffffff) or "unset" (fffffffe).
fn content_id(h: Sha256) -> u32 {
    let d = h.finalize();
    let cid = u32::from_be_bytes([d[0], d[1], d[2], d[3]]);
    if cid >= 0xffff_fffe {
        cid - 2
    } else {
        cid
    }
}

/// The embedded descriptor, as qemu writes it (IDE adapter, 16 heads, 63
/// sectors per track, hardware version 4).
fn descriptor(capacity: u64, cid: u32, file_name: &str) -> String {
    let cylinders = (capacity / (16 * 63)).min(16383);
    let name = file_name.replace('"', "_");
    format!(
        "# Disk DescriptorFile\n\
         version=1\n\
         CID={cid:08x}\n\
         parentCID=ffffffff\n\
         createType=\"streamOptimized\"\n\
         \n\
         # Extent description\n\
         RW {capacity} SPARSE \"{name}\"\n\
         \n\
         # The Disk Data Base\n\
         #DDB\n\
         \n\
         ddb.virtualHWVersion = \"4\"\n\
         ddb.geometry.cylinders = \"{cylinders}\"\n\
         ddb.geometry.heads = \"16\"\n\
         ddb.geometry.sectors = \"63\"\n\
         ddb.adapterType = \"ide\"\n\
         ddb.toolsVersion = \"2147483647\"\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::le::get_u32 as le32;

    fn le64(b: &[u8], off: usize) -> u64 {
        u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
    }

    #[test]
    fn header_fields() {
        let h = header(2048, GD_AT_END);
        assert_eq!(&h[0..4], b"KDMV");
        assert_eq!(le32(&h, 4), 3);
        assert_eq!(le32(&h, 8), 0x0003_0001);
        assert_eq!(le64(&h, 12), 2048);
        assert_eq!(le64(&h, 20), 128);
        assert_eq!(le64(&h, 28), 1);
        assert_eq!(le64(&h, 36), 20);
        assert_eq!(le32(&h, 44), 512);
        assert_eq!(le64(&h, 56), u64::MAX);
        assert_eq!(le64(&h, 64), 128);
        assert_eq!(&h[73..77], b"\n \r\n");
        assert_eq!(u16::from_le_bytes([h[77], h[78]]), 1);
    }

    #[test]
    fn descriptor_fits_and_names_the_extent() {
        let d = descriptor(1 << 31, 0x1234, "a\"b.vmdk");
        assert!(d.len() as u64 <= DESCRIPTOR_SECTORS * SECTOR);
        assert!(d.contains("CID=00001234\n"));
        assert!(d.contains("RW 2147483648 SPARSE \"a_b.vmdk\"\n"));
        assert!(d.contains("ddb.geometry.cylinders = \"16383\""));
    }

    #[test]
    fn touches_finds_overlaps() {
        let ext = [(0, 10), (100, 200)];
        assert!(touches(&ext, 0, 5));
        assert!(!touches(&ext, 10, 90));
        assert!(touches(&ext, 50, 51));
        assert!(!touches(&ext, 200, 10));
    }

    #[test]
    fn grains_round_trip_and_zero_grains_are_dropped() {
        let d = tempfile::tempdir().unwrap();
        let raw = d.path().join("r");
        let mut data = vec![0u8; (GRAIN * 3 + 512) as usize];
        data[GRAIN as usize + 7] = 9;
        data[(GRAIN * 3) as usize] = 1;
        std::fs::write(&raw, &data).unwrap();
        let src = File::open(&raw).unwrap();
        let size = data.len() as u64;
        assert!(read_grain(&src, size, 0).unwrap().is_none());
        let g = read_grain(&src, size, 1).unwrap().unwrap();
        let mut back = Vec::new();
        let mut z = flate2::Decompress::new(true);
        back.reserve(GRAIN as usize);
        z.decompress_vec(&g, &mut back, flate2::FlushDecompress::Finish)
            .unwrap();
        assert_eq!(back.len() as u64, GRAIN);
        assert_eq!(back[7], 9);
        let last = read_grain(&src, size, 3).unwrap().unwrap();
        assert!(!last.is_empty());
    }

    #[test]
    fn same_input_same_file() {
        let d = tempfile::tempdir().unwrap();
        let raw = d.path().join("r");
        let mut data = vec![0u8; 40 << 20];
        for (i, b) in data.iter_mut().enumerate().step_by(4099) {
            *b = (i % 251) as u8;
        }
        std::fs::write(&raw, &data).unwrap();
        write_vmdk(&raw, &d.path().join("a.vmdk")).unwrap();
        write_vmdk(&raw, &d.path().join("b.vmdk")).unwrap();
        let a = std::fs::read(d.path().join("a.vmdk")).unwrap();
        let b = std::fs::read(d.path().join("b.vmdk")).unwrap();
        // The descriptors differ only in the extent's file name.
        assert_eq!(a.len(), b.len());
        assert_eq!(a[..512], b[..512]);
        assert_eq!(a[OVERHEAD as usize * 512..], b[OVERHEAD as usize * 512..]);
        assert_eq!(&a[a.len() - 512 - 1024..a.len() - 1024 + 4], {
            let mut m = vec![0u8; 512];
            m[0] = 1;
            m[12] = 3;
            m.extend_from_slice(b"KDMV");
            m
        });
    }
}
