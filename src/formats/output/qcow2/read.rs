//! A read-only qcow2 reader (versions 2 and 3), so images can be inspected
//! without converting them first.
//!
//! The format is qemu's docs/interop/qcow2.txt:
//!
//! - header: magic `QFI\xfb`, version, backing_file_offset (8), cluster_bits
//!   (20), size (24), crypt_method (32), l1_size (36), l1_table_offset (40);
//!   version 3 adds incompatible_features (72), header_length (100) and,
//!   when header_length > 104, compression_type (104: 0 zlib, 1 zstd);
//! - guest offset → L1 index `off >> (cluster_bits + l2_bits)`, L2 index
//!   `(off >> cluster_bits) & (l2_entries - 1)`, l2_bits = cluster_bits - 3;
//! - L1 entry bits 9–55: the L2 table's offset (0: unallocated);
//! - L2 entry bit 62 set: compressed, `x = 62 - (cluster_bits - 8)`, bits
//!   0..x-1 the host offset, bits x..61 the number of additional 512-byte
//!   sectors; the data is raw deflate (zlib type) or a zstd stream, padded;
//! - otherwise bits 9–55 the host offset, bit 0 (v3) "reads as zeros";
//!   offset 0 without bit 0: unallocated, reads as zeros (no backing file).
//!
//! Refused with the reason: encryption, a backing file, an external data
//! file and extended L2 entries (subclusters). Clusters are decoded on
//! demand; L2 tables and the last decompressed clusters are cached.

use std::cell::RefCell;
use std::collections::HashMap;

use crate::image_io::ImageSource;
use crate::le::{get_be32 as be32, get_be64 as be64};

pub const MAGIC: &[u8; 4] = b"QFI\xfb";

const INCOMPAT_DIRTY: u64 = 1 << 0;
const INCOMPAT_CORRUPT: u64 = 1 << 1;
const INCOMPAT_DATA_FILE: u64 = 1 << 2;
const INCOMPAT_COMPRESSION: u64 = 1 << 3;
const INCOMPAT_EXTL2: u64 = 1 << 4;

const OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
const COMPRESSED: u64 = 1 << 62;

const CACHE_CLUSTERS: usize = 64;
const CACHE_L2: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum Qcow2Error {
    #[error("not a qcow2 image (no QFI\\xfb magic)")]
    NotQcow2,
    #[error("qcow2 version {0} is not supported (only 2 and 3)")]
    Version(u32),
    #[error("the image is encrypted (crypt_method {0}); decrypt it first: qemu-img convert --object secret,... -O qcow2")]
    Encrypted(u32),
    #[error("the image has a backing file ({0}); flatten it first: qemu-img convert -O qcow2 IMAGE FLAT.qcow2")]
    BackingFile(String),
    #[error(
        "the image keeps its data in an external data file; convert it: qemu-img convert -O raw"
    )]
    DataFile,
    #[error(
        "the image uses extended L2 entries (subclusters); convert it: qemu-img convert -O qcow2"
    )]
    ExtendedL2,
    #[error("unknown incompatible features 0x{0:x}; convert it: qemu-img convert -O raw")]
    Incompatible(u64),
    #[error("unknown compression type {0}; convert it: qemu-img convert -O raw")]
    CompressionType(u8),
    #[error("corrupt qcow2: {0}")]
    Corrupt(String),
    /// A compressed cluster that raw deflate refuses.
    #[error("corrupt qcow2: guest cluster {cluster}: compressed data: {source}")]
    Deflate {
        cluster: u64,
        #[source]
        source: flate2::DecompressError,
    },
    /// A compressed cluster that zstd refuses (or a decoder not made).
    #[error("corrupt qcow2: guest cluster {cluster}: compressed data: {source}")]
    Zstd {
        cluster: u64,
        #[source]
        source: std::io::Error,
    },
    #[error("reading qcow2 {what} at byte {offset}: {source}")]
    Io {
        what: &'static str,
        offset: u64,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    Zlib,
    Zstd,
}

/// The header fields the reader needs.
#[derive(Clone, Debug)]
pub struct Header {
    pub version: u32,
    pub cluster_bits: u32,
    pub size: u64,
    pub l1_size: u64,
    pub l1_offset: u64,
    pub compression: Compression,
    /// The image was not closed cleanly (refcounts may be stale; the data
    /// mapping is still valid).
    pub dirty: bool,
}

/// Parses and checks the header at the start of `src`.
pub fn read_header(src: &dyn ImageSource) -> Result<Header, Qcow2Error> {
    let mut h = [0u8; 112];
    let n = src.size().min(112) as usize;
    if n < 72 {
        return Err(Qcow2Error::NotQcow2);
    }
    src.read_at(0, &mut h[..n])
        .map_err(|source| Qcow2Error::Io {
            what: "header",
            offset: 0,
            source,
        })?;
    if &h[0..4] != MAGIC {
        return Err(Qcow2Error::NotQcow2);
    }
    let version = be32(&h, 4);
    if version != 2 && version != 3 {
        return Err(Qcow2Error::Version(version));
    }
    let backing = be64(&h, 8);
    let backing_len = be32(&h, 16) as usize;
    if backing != 0 {
        let mut name = vec![0u8; backing_len.min(1023)];
        let _ = src.read_at(backing, &mut name);
        return Err(Qcow2Error::BackingFile(
            String::from_utf8_lossy(&name).into_owned(),
        ));
    }
    let cluster_bits = be32(&h, 20);
    if !(9..=21).contains(&cluster_bits) {
        return Err(Qcow2Error::Corrupt(format!(
            "cluster_bits {cluster_bits} outside 9..21"
        )));
    }
    let size = be64(&h, 24);
    let crypt = be32(&h, 32);
    if crypt != 0 {
        return Err(Qcow2Error::Encrypted(crypt));
    }
    let l1_size = be32(&h, 36) as u64;
    let l1_offset = be64(&h, 40);
    let mut compression = Compression::Zlib;
    let mut dirty = false;
    if version == 3 {
        if n < 104 {
            return Err(Qcow2Error::Corrupt(
                "v3 header shorter than 104 bytes".into(),
            ));
        }
        let incompat = be64(&h, 72);
        dirty = incompat & INCOMPAT_DIRTY != 0;
        if incompat & INCOMPAT_DATA_FILE != 0 {
            return Err(Qcow2Error::DataFile);
        }
        if incompat & INCOMPAT_EXTL2 != 0 {
            return Err(Qcow2Error::ExtendedL2);
        }
        let known = INCOMPAT_DIRTY | INCOMPAT_CORRUPT | INCOMPAT_COMPRESSION;
        if incompat & !known & !INCOMPAT_DATA_FILE & !INCOMPAT_EXTL2 != 0 {
            return Err(Qcow2Error::Incompatible(incompat & !known));
        }
        let header_len = be32(&h, 100);
        if incompat & INCOMPAT_COMPRESSION != 0 {
            if header_len <= 104 || n <= 104 {
                return Err(Qcow2Error::Corrupt(
                    "compression type bit set but no compression_type field".into(),
                ));
            }
            compression = match h[104] {
                0 => Compression::Zlib,
                1 => Compression::Zstd,
                t => return Err(Qcow2Error::CompressionType(t)),
            };
        }
    }
    // The L1 table must cover the virtual size.
    let l2_bits = cluster_bits - 3;
    let per_l1 = 1u64 << (cluster_bits + l2_bits);
    if size.div_ceil(per_l1) > l1_size {
        return Err(Qcow2Error::Corrupt(format!(
            "L1 table of {l1_size} entries does not cover the virtual size {size}"
        )));
    }
    // The table lies inside the file (checked before allocating it).
    if l1_size > 32 << 20
        || l1_offset
            .checked_add(l1_size * 8)
            .is_none_or(|end| end > src.size())
    {
        return Err(Qcow2Error::Corrupt(format!(
            "L1 table ({l1_size} entries at {l1_offset}) is not inside the file"
        )));
    }
    Ok(Header {
        version,
        cluster_bits,
        size,
        l1_size,
        l1_offset,
        compression,
        dirty,
    })
}

/// Guest view of a qcow2 file: an [`ImageSource`] of the virtual disk.
pub struct Qcow2<'a> {
    file: Box<dyn ImageSource + 'a>,
    pub header: Header,
    l1: Vec<u64>,
    cache: RefCell<Cache>,
}

#[derive(Default)]
struct Cache {
    l2: HashMap<u64, Vec<u64>>,
    clusters: HashMap<u64, Vec<u8>>,
    order: Vec<u64>,
}

impl<'a> Qcow2<'a> {
    pub fn open(file: Box<dyn ImageSource + 'a>) -> Result<Self, Qcow2Error> {
        let header = read_header(&*file)?;
        let mut raw = vec![0u8; header.l1_size as usize * 8];
        file.read_at(header.l1_offset, &mut raw)
            .map_err(|source| Qcow2Error::Io {
                what: "L1 table",
                offset: header.l1_offset,
                source,
            })?;
        let l1 = raw.chunks_exact(8).map(|c| be64(c, 0)).collect();
        Ok(Qcow2 {
            file,
            header,
            l1,
            cache: RefCell::new(Cache::default()),
        })
    }

    fn cluster_size(&self) -> u64 {
        1 << self.header.cluster_bits
    }

    fn io(&self, what: &'static str, offset: u64, buf: &mut [u8]) -> Result<(), Qcow2Error> {
        self.file
            .read_at(offset, buf)
            .map_err(|source| Qcow2Error::Io {
                what,
                offset,
                source,
            })
    }

    /// The L2 entry for guest cluster `gc` (0 when unallocated).
    fn l2_entry(&self, gc: u64) -> Result<u64, Qcow2Error> {
        let l2_bits = self.header.cluster_bits - 3;
        let l1i = (gc >> l2_bits) as usize;
        let l1e = *self.l1.get(l1i).unwrap_or(&0);
        let l2_off = l1e & OFFSET_MASK;
        if l2_off == 0 {
            return Ok(0);
        }
        if l2_off & (self.cluster_size() - 1) != 0 {
            return Err(Qcow2Error::Corrupt(format!(
                "L1 entry {l1i}: L2 table offset {l2_off} is not cluster aligned"
            )));
        }
        let idx = (gc & ((1 << l2_bits) - 1)) as usize;
        let mut c = self.cache.borrow_mut();
        if !c.l2.contains_key(&l2_off) {
            let mut raw = vec![0u8; self.cluster_size() as usize];
            self.io("L2 table", l2_off, &mut raw)?;
            if c.l2.len() >= CACHE_L2 {
                c.l2.clear();
            }
            c.l2.insert(l2_off, raw.chunks_exact(8).map(|x| be64(x, 0)).collect());
        }
        Ok(c.l2
            .get(&l2_off)
            .and_then(|t| t.get(idx).copied())
            .unwrap_or(0))
    }

    /// Decodes guest cluster `gc` into `out` (cluster_size bytes).
    fn cluster(&self, gc: u64, out: &mut [u8]) -> Result<(), Qcow2Error> {
        if let Some(d) = self.cache.borrow().clusters.get(&gc) {
            out.copy_from_slice(d);
            return Ok(());
        }
        let e = self.l2_entry(gc)?;
        let cs = self.cluster_size();
        if e & COMPRESSED != 0 {
            let x = 62 - (self.header.cluster_bits - 8);
            let host = e & ((1u64 << x) - 1);
            let extra = (e >> x) & ((1u64 << (62 - x)) - 1);
            // Compressed size: up to the end of the last sector it spans.
            let len = ((extra + 1) * 512).saturating_sub(host & 511);
            let len = len.min(self.file.size().saturating_sub(host));
            let mut raw = vec![0u8; len as usize];
            self.io("compressed cluster", host, &mut raw)?;
            self.decompress(gc, &raw, out)?;
            let mut c = self.cache.borrow_mut();
            if c.order.len() >= CACHE_CLUSTERS {
                let old = c.order.remove(0);
                c.clusters.remove(&old);
            }
            c.order.push(gc);
            c.clusters.insert(gc, out.to_vec());
            return Ok(());
        }
        let host = e & OFFSET_MASK;
        if e & 1 != 0 || host == 0 {
            out.fill(0);
            return Ok(());
        }
        if host & (cs - 1) != 0 {
            return Err(Qcow2Error::Corrupt(format!(
                "guest cluster {gc}: host offset {host} is not cluster aligned"
            )));
        }
        self.io("data cluster", host, out)
    }

    fn decompress(&self, gc: u64, raw: &[u8], out: &mut [u8]) -> Result<(), Qcow2Error> {
        let bad = |why: String| {
            Qcow2Error::Corrupt(format!("guest cluster {gc}: compressed data: {why}"))
        };
        match self.header.compression {
            Compression::Zlib => {
                // Raw deflate (qemu's qcow2_zlib_decompress: window bits
                // -12); the input may carry sector padding after the end.
                let mut d = flate2::Decompress::new(false);
                match d.decompress(raw, out, flate2::FlushDecompress::Finish) {
                    Ok(_) if d.total_out() == out.len() as u64 => Ok(()),
                    Ok(s) => Err(bad(format!(
                        "{s:?} after {} of {} bytes",
                        d.total_out(),
                        out.len()
                    ))),
                    Err(source) => Err(Qcow2Error::Deflate {
                        cluster: gc,
                        source,
                    }),
                }
            }
            Compression::Zstd => {
                // qemu's qcow2_zstd_decompress: stream until the cluster is
                // full; trailing padding is ignored.
                use zstd::stream::raw::{Decoder, InBuffer, Operation, OutBuffer};
                let zstd = |source| Qcow2Error::Zstd {
                    cluster: gc,
                    source,
                };
                let mut d = Decoder::new().map_err(zstd)?;
                let mut input = InBuffer::around(raw);
                let mut output = OutBuffer::around(out);
                while output.pos() < output.capacity() {
                    let before = (input.pos(), output.pos());
                    d.run(&mut input, &mut output).map_err(zstd)?;
                    if (input.pos(), output.pos()) == before {
                        return Err(bad("zstd stream ended early".into()));
                    }
                }
                Ok(())
            }
        }
    }
}

impl ImageSource for Qcow2<'_> {
    fn size(&self) -> u64 {
        self.header.size
    }

    fn read_at(&self, off: u64, buf: &mut [u8]) -> std::io::Result<()> {
        let end = off
            .checked_add(buf.len() as u64)
            .filter(|&e| e <= self.header.size)
            .ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "read past the end of the qcow2 virtual disk",
                )
            })?;
        let cs = self.cluster_size();
        let mut tmp = Vec::new();
        let mut pos = off;
        while pos < end {
            let gc = pos / cs;
            let within = (pos % cs) as usize;
            let n = ((cs - within as u64).min(end - pos)) as usize;
            let o = (pos - off) as usize;
            let full = within == 0 && n as u64 == cs;
            if full {
                self.cluster(gc, &mut buf[o..o + n])
            } else {
                tmp.resize(cs as usize, 0);
                self.cluster(gc, &mut tmp)
            }
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
            if !full {
                buf[o..o + n].copy_from_slice(&tmp[within..within + n]);
            }
            pos += n as u64;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_not_qcow2() {
        let z = vec![0u8; 4096];
        assert!(matches!(read_header(&&z[..]), Err(Qcow2Error::NotQcow2)));
    }

    #[test]
    fn backing_file_is_refused_by_name() {
        let mut h = vec![0u8; 4096];
        h[0..4].copy_from_slice(MAGIC);
        h[4..8].copy_from_slice(&3u32.to_be_bytes());
        h[8..16].copy_from_slice(&512u64.to_be_bytes());
        h[16..20].copy_from_slice(&8u32.to_be_bytes());
        h[512..520].copy_from_slice(b"base.img");
        match read_header(&&h[..]) {
            Err(Qcow2Error::BackingFile(n)) => assert_eq!(n, "base.img"),
            other => panic!("{other:?}"),
        }
    }
}
