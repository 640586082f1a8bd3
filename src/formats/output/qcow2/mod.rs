//! qcow2 writer (version 3, or version 2 for `compat=0.10`): converts a
//! raw, possibly sparse, disk image.
//!
//! Layout of the file we write (all offsets cluster aligned except packed
//! compressed data):
//!
//! ```text
//! cluster 0          header (version 3: 104 bytes + compression type,
//!                    header_length 112; version 2: the first 72 bytes)
//! 1..                L1 table, refcount table, refcount blocks (16-bit
//!                    entries, refcount_order 4), L2 tables (one cluster
//!                    each, for every 512 MiB a data extent touches)
//! then               data in guest order, allocated as qemu does: whole
//!                    clusters for uncompressed data, compressed data packed
//!                    at byte granularity into partly used clusters; the
//!                    file ends with the last data byte (sector aligned)
//! ```
//!
//! Compressed clusters use what qemu uses (block/qcow2-threads.c): raw
//! deflate with a 4 KiB window (`deflateInit2(..., -12, ...)`), or with
//! `compression_type=zstd` (qemu ≥ 5.1, version 3 only) one zstd frame at
//! zstd's default level as qemu's qcow2_zstd_compress, flagged by the
//! incompatible feature bit 3 and the header's compression_type byte; kept
//! only when the result is shorter than `cluster_size - 1`. The descriptor is
//! `1<<62 | (extra_sectors << (62 - (cluster_bits - 8))) | host_offset`.
//! A host cluster's refcount is the number of compressed clusters whose
//! 512-byte sector span touches it — exactly what `qemu-img check` counts.
//!
//! All-zero clusters stay unallocated. The raw input is read sparsely with
//! SEEK_DATA/SEEK_HOLE; clusters are read and compressed in parallel (rayon)
//! and appended in guest order, so the output is deterministic. Clusters
//! compressed while the disk was still being written ([`ahead`]) are taken
//! when their bytes are unchanged: the same bytes either way.
//!
//! The deflate engine (issue 18). qemu-img compresses with the C zlib at
//! its default level 6; the rule here is "never larger than `qemu-img
//! convert -c`" of the same raw disk, and as fast as that allows. Measured
//! one core, 2026-12-06, on the 13 740 non-zero 64 KiB clusters (858 MiB)
//! of a Debian efi disk (`benches/assemble.rs`'s tarball), sums of the
//! compressed clusters:
//!
//! | engine                                        | time    | bytes       |
//! |-----------------------------------------------|---------|-------------|
//! | C zlib 1.2.13, level 6 (what dibr used)       | 19.1–19.6 s | 315 321 029 |
//! | zlib-rs 0.6.9 level 9, tuned (8, 16, 128, 128) = zlib's level 6 | 16.1–16.3 s | 315 378 315 |
//! | zlib-rs level 9, tuned (6, 128, 128, 128) — **used** | 15.0–15.3 s | 315 124 672 |
//! | zlib-rs level 9, tuned (4, 128, 128, 128)     | 14.4 s  | 315 303 493 |
//! | zlib-rs level 9, tuned (6, 128, 128, 96)      | 14.0 s  | 315 320 702 |
//!
//! and `qemu-img convert -c` of that disk is 317 587 456 bytes against
//! dibr's 317 014 016. zlib-rs's own levels 6–8 are faster still but
//! 1.2–1.6 % larger than qemu's output (measured at an earlier stop: 321.9,
//! 320.8, 320.2 MB against 317.1 MB): its level 6 is zlib-ng's
//! deflate_medium, and levels 7–8 hash 4 bytes and miss 3-byte matches.
//! The tuning chosen keeps a margin (0.06 % under zlib) rather than take
//! the last 7 % of speed.
//!
//! The file system of dibr's own source tree comes out smaller than
//! qemu-img's too (`vendor-tests/output_formats.rs`), but one synthetic
//! case is larger: a single line pattern repeated for 4 MiB deflates
//! 0.16 % larger than with zlib (334 071 against 333 550 bytes, with any
//! tuning: zlib-rs splits its blocks differently), 0.06 % on that test's
//! whole disk. "Never larger than `qemu-img convert -c`" is thus measured
//! on real disks, not guaranteed for every input.
//!
//! zlib-rs's SIMD paths (`compare256`, `slide_hash`) compute the same
//! values as its scalar ones, so the bytes depend only on the zlib-rs
//! version, which `third_party/zlib-rs` pins (zlib-rs 0.6.9 with one safe
//! method added, `Deflate::tune`: upstream has `deflateTune` only in its
//! `unsafe` C API, and dibr keeps `unsafe` to `sandbox/sys.rs`).
//! `compression_type=zstd` is the fast path (the same disk in 2.8–4.8 s,
//! 308.5 MB).
//!
//! The reader (`read`, for `dibr get-kernel`/`check`) lives beside the
//! writer: the format's two directions in one place.

use std::cell::RefCell;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::atomic::AtomicFile;

pub mod ahead;
pub mod read;

/// Errors from the image converters; every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{}: {msg}", path.display())]
    Invalid { path: PathBuf, msg: String },
}

impl OutputError {
    pub(crate) fn io(path: &Path) -> impl FnOnce(io::Error) -> OutputError + '_ {
        move |source| OutputError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Qcow2Options {
    /// Compress clusters (DIB's default; `-u` turns it off).
    pub compress: bool,
    /// The format version qemu-img's `compat` option names.
    pub compat: Qcow2Compat,
    /// How compressed clusters are compressed (`compression_type`).
    pub compression: Qcow2Compression,
}

/// qemu-img's `-o compression_type=`: `zlib` (raw deflate, every reader) or
/// `zstd` (qemu ≥ 5.1: faster to write and to read, usually smaller;
/// version 3 only, as qemu-img insists).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Qcow2Compression {
    #[default]
    Zlib,
    Zstd,
}

impl Qcow2Compression {
    /// The `compression_type` value as qemu-img accepts it.
    pub fn from_qemu_img(v: &str) -> Option<Qcow2Compression> {
        match v {
            "zlib" => Some(Qcow2Compression::Zlib),
            "zstd" => Some(Qcow2Compression::Zstd),
            _ => None,
        }
    }
}

/// What `--qemu-img-options` chose: the file's version and compression,
/// resolved once at the top and handed down to the writer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Qcow2Format {
    pub compat: Qcow2Compat,
    pub compression: Qcow2Compression,
}

/// qemu-img's `-o compat=`: `1.1` is version 3 (qemu ≥ 1.1), `0.10` version
/// 2, which older readers need (nodepool passes `compat=0.10` for every
/// qcow2). Everything dibr writes fits version 2: no feature bits, 16-bit
/// refcounts, zero clusters left unallocated, deflate compression
/// (docs/interop/qcow2.txt in qemu's sources).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Qcow2Compat {
    #[default]
    V3,
    V2,
}

impl Qcow2Compat {
    /// The `compat` value as qemu-img accepts it (`0.10`/`v2`, `1.1`/`v3`).
    pub fn from_qemu_img(v: &str) -> Option<Qcow2Compat> {
        match v {
            "0.10" | "v2" => Some(Qcow2Compat::V2),
            "1.1" | "v3" => Some(Qcow2Compat::V3),
            _ => None,
        }
    }
}

impl Default for Qcow2Options {
    fn default() -> Self {
        Qcow2Options {
            compress: true,
            compat: Qcow2Compat::V3,
            compression: Qcow2Compression::Zlib,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Qcow2Stats {
    /// Guest-visible size in bytes (the raw file's length).
    pub virtual_size: u64,
    /// Guest clusters that overlapped a data extent and were read.
    pub clusters_read: u64,
    /// Of those, all-zero clusters left unallocated.
    pub clusters_zero: u64,
    /// Clusters stored compressed.
    pub clusters_compressed: u64,
    /// Clusters stored uncompressed.
    pub clusters_raw: u64,
    /// Clusters whose compression [`ahead`] had done (their bytes
    /// unchanged since).
    pub clusters_ahead: u64,
    /// Final size of the qcow2 file.
    pub file_size: u64,
}

pub const CLUSTER_BITS: u32 = 16;
pub const CLUSTER_SIZE: u64 = 1 << CLUSTER_BITS;
const L2_ENTRIES: u64 = CLUSTER_SIZE / 8;
const REFCOUNT_ORDER: u32 = 4;
const REFCOUNTS_PER_BLOCK: u64 = CLUSTER_SIZE * 8 / (1 << REFCOUNT_ORDER);
const QCOW_OFLAG_COPIED: u64 = 1 << 63;
const QCOW_OFLAG_COMPRESSED: u64 = 1 << 62;
const CSIZE_SHIFT: u32 = 62 - (CLUSTER_BITS - 8);
const HEADER_LENGTH: u32 = 112;
/// Guest clusters handed to rayon at a time (8 MiB).
const BATCH: usize = 128;

/// Byte ranges `[start, end)` of `file` that may hold data, via
/// SEEK_DATA/SEEK_HOLE; the whole file when the filesystem cannot tell.
pub fn data_extents(file: &File, size: u64) -> io::Result<Vec<(u64, u64)>> {
    use rustix::fs::{seek, SeekFrom};
    let mut out = Vec::new();
    let mut off = 0u64;
    while off < size {
        let start = match seek(file, SeekFrom::Data(off)) {
            Ok(s) => s,
            Err(rustix::io::Errno::NXIO) => break,
            Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::OPNOTSUPP) if off == 0 => {
                return Ok(vec![(0, size)]);
            }
            Err(e) => return Err(e.into()),
        };
        if start >= size {
            break;
        }
        let end = match seek(file, SeekFrom::Hole(start)) {
            Ok(e) => e.min(size),
            Err(e) => return Err(e.into()),
        };
        if end <= start {
            break;
        }
        out.push((start, end));
        off = end;
    }
    Ok(out)
}

/// Indices of the `unit`-sized chunks that overlap any extent, ascending,
/// without duplicates.
pub fn chunks_touched(extents: &[(u64, u64)], unit: u64) -> impl Iterator<Item = u64> + '_ {
    let mut last: Option<u64> = None;
    extents
        .iter()
        .flat_map(move |&(s, e)| s / unit..e.div_ceil(unit))
        .filter(move |&c| {
            let keep = last.is_none_or(|l| c > l);
            if keep {
                last = Some(c);
            }
            keep
        })
}

pub(crate) fn is_zero(buf: &[u8]) -> bool {
    buf.chunks(512)
        .all(|c| c.iter().fold(0u8, |a, &b| a | b) == 0)
}

enum Cluster {
    Zero,
    Raw(Vec<u8>),
    Compressed(Vec<u8>),
}

/// zstd's default level (ZSTD_CLEVEL_DEFAULT), which qemu's
/// qcow2_zstd_compress uses.
const ZSTD_LEVEL: i32 = 3;
/// Incompatible feature bit 3: the compression_type field is not zlib.
const INCOMPAT_COMPRESSION: u64 = 1 << 3;
thread_local! {
    static DEFLATE: RefCell<Option<zlib_rs::Deflate>> = const { RefCell::new(None) };
    static ZSTD: RefCell<Option<zstd::bulk::Compressor<'static>>> = const { RefCell::new(None) };
}

/// The match search after each reset, as zlib's `deflateTune(good_length,
/// max_lazy, nice_length, max_chain)`: zlib's level-6 chain and nice
/// lengths (128, 128; deflate.c's configuration_table), lazy matching kept
/// up to 128-byte matches (level 6: 16) and the chain quartered past 6-byte
/// matches (level 6: 8). Of the tunings measured (module doc) the fastest
/// that stayed clearly smaller than zlib at qemu's level.
const SEARCH: (u16, u16, u16, u16) = (6, 128, 128, 128);

/// Raw deflate with a 4 KiB window, as qemu's qcow2_zlib_compress. None
/// when the result would not be shorter than `cluster_size - 1` bytes.
///
/// zlib-rs's level 9 is zlib's lazy-matching deflate_slow with zlib's
/// 3-byte rolling hash (its levels 7 and 8 hash 4 bytes and miss 3-byte
/// matches, which is why they come out larger than zlib); with the search
/// tuned down to [`SEARCH`] after every reset (a reset restores the
/// level's own values) it is faster than zlib at qemu's level and no
/// larger. The module doc has the measurements.
fn deflate_cluster(data: &[u8]) -> Option<Vec<u8>> {
    DEFLATE.with(|cell| {
        let mut slot = cell.borrow_mut();
        let c = match slot.as_mut() {
            Some(c) => {
                c.reset();
                c
            }
            None => slot.insert(zlib_rs::Deflate::new_with_config(zlib_rs::DeflateConfig {
                level: 9,
                method: zlib_rs::Method::Deflated,
                window_bits: -12,
                mem_level: 8,
                strategy: zlib_rs::Strategy::Default,
            })),
        };
        let (good, lazy, nice, chain) = SEARCH;
        c.tune(good, lazy, nice, chain);
        let limit = CLUSTER_SIZE as usize - 1;
        let mut out = vec![0u8; limit];
        match c.compress(data, &mut out, zlib_rs::DeflateFlush::Finish) {
            Ok(zlib_rs::Status::StreamEnd) if c.total_out() < limit as u64 => {
                out.truncate(c.total_out() as usize);
                Some(out)
            }
            _ => None,
        }
    })
}

/// One zstd frame at zstd's default level, as qemu's qcow2_zstd_compress.
/// None when it would not be shorter than `cluster_size - 1` bytes (qemu
/// then stores the cluster uncompressed too).
fn zstd_cluster(data: &[u8]) -> io::Result<Option<Vec<u8>>> {
    ZSTD.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(zstd::bulk::Compressor::new(ZSTD_LEVEL)?);
        }
        let Some(c) = slot.as_mut() else {
            return Ok(None);
        };
        let mut out = Vec::with_capacity(CLUSTER_SIZE as usize - 1);
        // An error here is "destination buffer too small": not compressible.
        Ok(c.compress_to_buffer(data, &mut out).ok().map(|_| out))
    })
}

fn compress_cluster(data: &[u8], opts: &Qcow2Options) -> io::Result<Option<Vec<u8>>> {
    match opts.compression {
        Qcow2Compression::Zlib => Ok(deflate_cluster(data)),
        Qcow2Compression::Zstd => zstd_cluster(data),
    }
}

/// A cluster as the conversion read it: what to store, and whether its
/// compression was done ahead.
type ClusterRead = io::Result<(Cluster, bool)>;

/// What a cluster is read from, shared by the conversion's threads (the
/// parts of [`Job`] that are `Sync`).
struct Reader<'a> {
    src: &'a File,
    vsize: u64,
    opts: &'a Qcow2Options,
    ahead: Option<&'a ahead::Compressed>,
}

impl Reader<'_> {
    /// Cluster `idx` as it will be stored, and whether its compression was
    /// done ahead ([`ahead`]).
    fn cluster(&self, idx: u64) -> ClusterRead {
        let off = idx * CLUSTER_SIZE;
        let len = (self.vsize - off).min(CLUSTER_SIZE) as usize;
        let mut buf = vec![0u8; CLUSTER_SIZE as usize];
        self.src.read_exact_at(&mut buf[..len], off)?;
        if is_zero(&buf[..len]) {
            return Ok((Cluster::Zero, false));
        }
        if !self.opts.compress {
            return Ok((Cluster::Raw(buf), false));
        }
        let (compressed, ahead) = match self.ahead.and_then(|a| a.lookup(idx, &buf)) {
            Some(c) => (c, true),
            None => (compress_cluster(&buf, self.opts)?, false),
        };
        Ok(match compressed {
            Some(c) => (Cluster::Compressed(c), ahead),
            None => (Cluster::Raw(buf), ahead),
        })
    }
}

/// Per-host-cluster refcounts, grown on demand.
#[derive(Default)]
struct Refcounts(Vec<u16>);

impl Refcounts {
    fn inc(&mut self, cluster: u64) -> io::Result<()> {
        let i = cluster as usize;
        if self.0.len() <= i {
            self.0.resize(i + 1, 0);
        }
        self.0[i] = self.0[i]
            .checked_add(1)
            .ok_or_else(|| io::Error::other("refcount overflow"))?;
        Ok(())
    }
}

/// Convert the raw image `raw` to qcow2 at `out` (written under a temporary
/// name and renamed into place).
pub fn write_qcow2(raw: &Path, out: &Path, opts: &Qcow2Options) -> Result<Qcow2Stats, OutputError> {
    write_qcow2_reporting(raw, out, opts, &|_, _| {})
}

/// [`write_qcow2`], calling `report(bytes_done, bytes_total)` as the data
/// clusters are read and compressed (the slow part: a progress display).
pub fn write_qcow2_reporting(
    raw: &Path,
    out: &Path,
    opts: &Qcow2Options,
    report: &dyn Fn(u64, u64),
) -> Result<Qcow2Stats, OutputError> {
    write_qcow2_ahead(raw, out, opts, None, report)
}

/// [`write_qcow2_reporting`], taking the clusters [`ahead::Ahead`]
/// compressed while `raw` was written wherever their bytes are unchanged
/// (the output is the same bytes with or without them).
pub fn write_qcow2_ahead(
    raw: &Path,
    out: &Path,
    opts: &Qcow2Options,
    ahead: Option<&ahead::Compressed>,
    report: &dyn Fn(u64, u64),
) -> Result<Qcow2Stats, OutputError> {
    let src = File::open(raw).map_err(OutputError::io(raw))?;
    let vsize = src.metadata().map_err(OutputError::io(raw))?.len();
    let extents = data_extents(&src, vsize).map_err(OutputError::io(raw))?;
    let dst = AtomicFile::create(out).map_err(OutputError::io(out))?;
    let job = Job {
        src: &src,
        raw,
        dst: dst.file(),
        out,
        vsize,
        extents: &extents,
        opts,
        report,
        ahead,
    };
    let stats = convert(&job)?;
    dst.commit().map_err(OutputError::io(out))?;
    Ok(stats)
}

/// Where the metadata goes: header cluster 0, then L1, the refcount table,
/// the refcount blocks and the L2 tables, so the file ends with data (no
/// padding).
struct Layout {
    l1_size: u64,
    l1_first: u64,
    rt_first: u64,
    rt: u64,
    rb_first: u64,
    rb: u64,
    l2_first: u64,
    /// The L1 index of each L2 table, ascending.
    l2_idx: Vec<u64>,
    /// First cluster after the metadata.
    meta_end: u64,
}

impl Layout {
    /// An L2 table for every L1 index a data extent touches, and refcount
    /// blocks for an upper bound of the host clusters (each data cluster
    /// takes at most one host cluster, plus one for a compressed run's tail).
    fn plan(vsize: u64, extents: &[(u64, u64)], out: &Path) -> Result<Layout, OutputError> {
        let guest_clusters = vsize.div_ceil(CLUSTER_SIZE);
        let l1_size = guest_clusters.div_ceil(L2_ENTRIES);
        if l1_size > u32::MAX as u64 / 8 {
            return Err(OutputError::Invalid {
                path: out.to_path_buf(),
                msg: format!("virtual size {vsize} too large for qcow2"),
            });
        }
        let touched = chunks_touched(extents, CLUSTER_SIZE).count() as u64;
        let mut l2_idx: Vec<u64> = chunks_touched(extents, CLUSTER_SIZE * L2_ENTRIES).collect();
        l2_idx.retain(|&i| i < l1_size);
        let l1_clusters = (l1_size * 8).div_ceil(CLUSTER_SIZE).max(1);
        let l1_first = 1;
        let rt_first = l1_first + l1_clusters;
        let (mut rt, mut rb) = (1u64, 1u64);
        loop {
            let total = rt_first + rt + rb + l2_idx.len() as u64 + touched + 1;
            let need_rb = total.div_ceil(REFCOUNTS_PER_BLOCK);
            let need_rt = (need_rb * 8).div_ceil(CLUSTER_SIZE);
            if (need_rb, need_rt) == (rb, rt) {
                break;
            }
            (rb, rt) = (need_rb, need_rt);
        }
        let rb_first = rt_first + rt;
        let l2_first = rb_first + rb;
        let meta_end = l2_first + l2_idx.len() as u64;
        Ok(Layout {
            l1_size,
            l1_first,
            rt_first,
            rt,
            rb_first,
            rb,
            l2_first,
            l2_idx,
            meta_end,
        })
    }
}

/// Host clusters handed out as qemu does: whole clusters from `next_free`;
/// compressed data packed from the byte cursor `cpos`, continuing into the
/// following cluster only when that one is still free.
struct Allocator {
    refs: Refcounts,
    next_free: u64,
    cpos: Option<u64>,
    file_end: u64,
}

impl Allocator {
    fn new(layout: &Layout) -> io::Result<Allocator> {
        let mut refs = Refcounts::default();
        for c in 0..layout.meta_end {
            refs.inc(c)?;
        }
        Ok(Allocator {
            refs,
            next_free: layout.meta_end,
            cpos: None,
            file_end: layout.meta_end * CLUSTER_SIZE,
        })
    }

    /// A whole cluster: (L2 entry, host offset).
    fn raw(&mut self) -> io::Result<(u64, u64)> {
        let off = self.next_free * CLUSTER_SIZE;
        self.refs.inc(self.next_free)?;
        self.next_free += 1;
        Ok((off | QCOW_OFLAG_COPIED, off))
    }

    /// `len` bytes of compressed data: (L2 entry, host offset).
    fn compressed(&mut self, len: u64) -> io::Result<(u64, u64)> {
        let off = match self.cpos {
            Some(p)
                if (p + len - 1) / CLUSTER_SIZE == p / CLUSTER_SIZE
                    || self.next_free == p / CLUSTER_SIZE + 1 =>
            {
                p
            }
            _ => self.next_free * CLUSTER_SIZE,
        };
        let end = off + len;
        self.next_free = self.next_free.max(end.div_ceil(CLUSTER_SIZE));
        self.cpos = (!end.is_multiple_of(CLUSTER_SIZE)).then_some(end);
        let first = off & !511;
        let last = (end - 1) | 511;
        for hc in first / CLUSTER_SIZE..=last / CLUSTER_SIZE {
            self.refs.inc(hc)?;
        }
        let extra = ((end - 1) >> 9) - (off >> 9);
        Ok((QCOW_OFLAG_COMPRESSED | (extra << CSIZE_SHIFT) | off, off))
    }
}

/// One conversion: the raw image (open, and its path for messages), the
/// output, and what is known of the input.
struct Job<'a> {
    src: &'a File,
    raw: &'a Path,
    dst: &'a File,
    out: &'a Path,
    vsize: u64,
    /// (start, end) byte ranges that may hold data.
    extents: &'a [(u64, u64)],
    opts: &'a Qcow2Options,
    /// Progress: (bytes read, bytes to read).
    report: &'a dyn Fn(u64, u64),
    /// Clusters compressed while the disk was written.
    ahead: Option<&'a ahead::Compressed>,
}

fn convert(job: &Job) -> Result<Qcow2Stats, OutputError> {
    let (dst, out, vsize) = (job.dst, job.out, job.vsize);
    let werr = OutputError::io;
    let layout = Layout::plan(vsize, job.extents, out)?;
    let mut stats = Qcow2Stats {
        virtual_size: vsize,
        ..Default::default()
    };
    let mut alloc = Allocator::new(&layout).map_err(werr(out))?;
    let l2s = write_data(job, &layout, &mut alloc, &mut stats)?;
    if alloc.refs.0.len() as u64 > layout.rb * REFCOUNTS_PER_BLOCK {
        return Err(OutputError::Invalid {
            path: out.to_path_buf(),
            msg: "internal error: refcount blocks underestimated".into(),
        });
    }
    let meta = metadata(&layout, &l2s, &alloc.refs);
    dst.write_all_at(&meta, CLUSTER_SIZE).map_err(werr(out))?;
    dst.write_all_at(&header(&layout, vsize, job.opts), 0)
        .map_err(werr(out))?;
    // End on a sector boundary so a compressed cluster's last sector is
    // whole (qemu reads compressed data in sectors).
    let file_size = alloc.file_end.next_multiple_of(512);
    dst.set_len(file_size).map_err(werr(out))?;
    stats.file_size = file_size;
    Ok(stats)
}

/// Read, compress (in parallel, in batches) and place every touched
/// cluster; returns the L2 tables, one per `layout.l2_idx`. Batch n is
/// placed and written while batch n+1 is compressed (`rayon::join`), so
/// the cores do not wait for the writes; placement stays in guest order,
/// so the bytes are the same as one batch at a time.
fn write_data(
    job: &Job,
    layout: &Layout,
    alloc: &mut Allocator,
    stats: &mut Qcow2Stats,
) -> Result<Vec<Vec<u64>>, OutputError> {
    let Job {
        src,
        extents,
        opts,
        report,
        vsize,
        ..
    } = *job;
    let mut l2s: Vec<Vec<u64>> = vec![vec![0u64; L2_ENTRIES as usize]; layout.l2_idx.len()];
    let total = chunks_touched(extents, CLUSTER_SIZE).count() as u64 * CLUSTER_SIZE;
    let mut todo = chunks_touched(extents, CLUSTER_SIZE).peekable();
    let files = (job.raw, job.dst, job.out);
    let reader = Reader {
        src,
        vsize,
        opts,
        ahead: job.ahead,
    };
    let mut pending: Option<(Vec<u64>, Vec<ClusterRead>)> = None;
    while todo.peek().is_some() || pending.is_some() {
        report(stats.clusters_read * CLUSTER_SIZE, total);
        let batch: Vec<u64> = todo.by_ref().take(BATCH).collect();
        let (placed, done) = rayon::join(
            || match pending.take() {
                Some((idx, clusters)) => {
                    place_batch(files, layout, alloc, stats, &mut l2s, &idx, clusters)
                }
                None => Ok(()),
            },
            || -> Vec<ClusterRead> { batch.par_iter().map(|&i| reader.cluster(i)).collect() },
        );
        placed?;
        if !batch.is_empty() {
            pending = Some((batch, done));
        }
    }
    Ok(l2s)
}

/// Allocate host space for one batch of read (and compressed) clusters in
/// guest order, write them and fill in their L2 entries.
fn place_batch(
    (raw, dst, out): (&Path, &File, &Path),
    layout: &Layout,
    alloc: &mut Allocator,
    stats: &mut Qcow2Stats,
    l2s: &mut [Vec<u64>],
    batch: &[u64],
    done: Vec<ClusterRead>,
) -> Result<(), OutputError> {
    let werr = OutputError::io;
    for (&idx, c) in batch.iter().zip(done) {
        stats.clusters_read += 1;
        let (c, ahead) = c.map_err(OutputError::io(raw))?;
        stats.clusters_ahead += u64::from(ahead);
        let ((entry, off), data) = match c {
            Cluster::Zero => {
                stats.clusters_zero += 1;
                continue;
            }
            Cluster::Raw(data) => {
                stats.clusters_raw += 1;
                (alloc.raw().map_err(werr(out))?, data)
            }
            Cluster::Compressed(data) => {
                stats.clusters_compressed += 1;
                (
                    alloc.compressed(data.len() as u64).map_err(werr(out))?,
                    data,
                )
            }
        };
        dst.write_all_at(&data, off).map_err(werr(out))?;
        alloc.file_end = alloc.file_end.max(off + data.len() as u64);
        let n = layout
            .l2_idx
            .binary_search(&(idx / L2_ENTRIES))
            .expect("L2 table reserved for every touched L1 index");
        l2s[n][(idx % L2_ENTRIES) as usize] = entry;
    }
    Ok(())
}

/// Clusters 1..meta_end: the L1 table, the refcount table, the refcount
/// blocks and the L2 tables (big-endian, qcow2.txt).
fn metadata(layout: &Layout, l2s: &[Vec<u64>], refs: &Refcounts) -> Vec<u8> {
    let cs = CLUSTER_SIZE as usize;
    let mut meta = vec![0u8; ((layout.meta_end - 1) * CLUSTER_SIZE) as usize];
    let base = |c: u64| ((c - 1) * CLUSTER_SIZE) as usize;
    let mut l1 = vec![0u64; layout.l1_size as usize];
    for (n, (l1_idx, table)) in layout.l2_idx.iter().zip(l2s).enumerate() {
        let at = base(layout.l2_first) + n * cs;
        for (k, e) in table.iter().enumerate() {
            meta[at + k * 8..at + k * 8 + 8].copy_from_slice(&e.to_be_bytes());
        }
        l1[*l1_idx as usize] = ((layout.l2_first + n as u64) * CLUSTER_SIZE) | QCOW_OFLAG_COPIED;
    }
    let at = base(layout.l1_first);
    for (k, e) in l1.iter().enumerate() {
        meta[at + k * 8..at + k * 8 + 8].copy_from_slice(&e.to_be_bytes());
    }
    let at = base(layout.rt_first);
    for k in 0..layout.rb {
        let off = (layout.rb_first + k) * CLUSTER_SIZE;
        let p = at + k as usize * 8;
        meta[p..p + 8].copy_from_slice(&off.to_be_bytes());
    }
    let at = base(layout.rb_first);
    for (k, r) in refs.0.iter().enumerate() {
        meta[at + k * 2..at + k * 2 + 2].copy_from_slice(&r.to_be_bytes());
    }
    meta
}

/// The header (qemu's docs/interop/qcow2.txt, "Header").
fn header(layout: &Layout, vsize: u64, opts: &Qcow2Options) -> [u8; HEADER_LENGTH as usize + 8] {
    let compat = opts.compat;
    let mut h = [0u8; HEADER_LENGTH as usize + 8];
    h[0..4].copy_from_slice(b"QFI\xfb");
    let version: u32 = match compat {
        Qcow2Compat::V3 => 3,
        Qcow2Compat::V2 => 2,
    };
    h[4..8].copy_from_slice(&version.to_be_bytes());
    // backing_file_offset 8..16, backing_file_size 16..20: none
    h[20..24].copy_from_slice(&CLUSTER_BITS.to_be_bytes());
    h[24..32].copy_from_slice(&vsize.to_be_bytes());
    // crypt_method 32..36: none
    h[36..40].copy_from_slice(&(layout.l1_size as u32).to_be_bytes());
    h[40..48].copy_from_slice(&(layout.l1_first * CLUSTER_SIZE).to_be_bytes());
    h[48..56].copy_from_slice(&(layout.rt_first * CLUSTER_SIZE).to_be_bytes());
    h[56..60].copy_from_slice(&(layout.rt as u32).to_be_bytes());
    // nb_snapshots 60..64, snapshots_offset 64..72, features 72..96: zero
    if compat == Qcow2Compat::V3 {
        h[96..100].copy_from_slice(&REFCOUNT_ORDER.to_be_bytes());
        h[100..104].copy_from_slice(&HEADER_LENGTH.to_be_bytes());
        if opts.compression == Qcow2Compression::Zstd {
            h[72..80].copy_from_slice(&INCOMPAT_COMPRESSION.to_be_bytes());
            h[104] = 1;
        }
    }
    // Version 2 ends at byte 72: the zeros there are the end-of-extensions
    // marker, and refcount_order 4 is implied.
    // 104: compression_type (0 deflate, 1 zstd) + padding; then the
    // end-of-extensions marker (type 0, length 0).
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::le::{get_be32 as be32, get_be64 as be64};

    /// The header fields at the offsets of qemu's docs/interop/qcow2.txt,
    /// for a 3 GiB disk with data in its first and last MiB.
    #[test]
    fn header_fields_at_their_offsets() {
        let vsize = 3u64 << 30;
        // (start, end) byte ranges.
        let extents = [(0, 1 << 20), (vsize - (1 << 20), vsize)];
        let l = Layout::plan(vsize, &extents, Path::new("t.qcow2")).unwrap();
        // 3 GiB / (64 KiB × 8192 entries per L2) = 6 L1 entries; two L2
        // tables (first and last 512 MiB).
        assert_eq!(l.l1_size, 6);
        assert_eq!(l.l2_idx, vec![0, 5]);
        for (compat, version) in [(Qcow2Compat::V3, 3), (Qcow2Compat::V2, 2)] {
            let opts = Qcow2Options {
                compat,
                ..Default::default()
            };
            let h = header(&l, vsize, &opts);
            assert_eq!(&h[0..4], b"QFI\xfb");
            assert_eq!(be32(&h, 4), version);
            assert_eq!(be64(&h, 8), 0, "no backing file");
            assert_eq!(be32(&h, 20), 16, "cluster_bits");
            assert_eq!(be64(&h, 24), vsize);
            assert_eq!(be32(&h, 32), 0, "no encryption");
            assert_eq!(be32(&h, 36), 6, "l1_size");
            assert_eq!(be64(&h, 40), CLUSTER_SIZE, "L1 right after the header");
            assert_eq!(be64(&h, 48), l.rt_first * CLUSTER_SIZE);
            assert_eq!(be32(&h, 56), l.rt as u32);
            assert_eq!(be32(&h, 60), 0, "no snapshots");
            assert_eq!(be64(&h, 72), 0, "no incompatible features");
            let (order, len) = (be32(&h, 96), be32(&h, 100));
            match compat {
                Qcow2Compat::V3 => assert_eq!((order, len), (4, HEADER_LENGTH)),
                // Version 2's header ends at 72; nothing after it.
                Qcow2Compat::V2 => assert_eq!((order, len), (0, 0)),
            }
        }
    }

    /// Compressed data is packed across cluster boundaries only into a
    /// cluster that is still free, and its L2 entry counts the extra
    /// sectors, as qemu's allocator does.
    #[test]
    fn compressed_allocation_packs_like_qemu() {
        let l = Layout::plan(1 << 30, &[(0, 1 << 20)], Path::new("t.qcow2")).unwrap();
        let mut a = Allocator::new(&l).unwrap();
        let start = l.meta_end * CLUSTER_SIZE;
        let (e1, o1) = a.compressed(1000).unwrap();
        assert_eq!(o1, start);
        assert_eq!(e1 & QCOW_OFLAG_COMPRESSED, QCOW_OFLAG_COMPRESSED);
        assert_eq!((e1 >> CSIZE_SHIFT) & 0xff, 1, "1000 bytes span two sectors");
        let (_, o2) = a.compressed(CLUSTER_SIZE - 500).unwrap();
        assert_eq!(
            o2,
            start + 1000,
            "continues in the same cluster and the next, still free"
        );
        let (_, o3) = a.raw().unwrap();
        assert_eq!(o3 % CLUSTER_SIZE, 0);
        // Small enough for the rest of the partly used cluster: packed there,
        // never into the raw cluster that followed.
        let (_, o4) = a.compressed(100).unwrap();
        assert_eq!(o4, o2 + CLUSTER_SIZE - 500);
        assert_ne!(o4 / CLUSTER_SIZE, o3 / CLUSTER_SIZE);
    }

    /// zstd clusters: the header says so (bit 3, compression_type 1) and
    /// dibr's reader gets the raw bytes back; zlib keeps both at zero.
    #[test]
    fn zstd_clusters_read_back() {
        let t = tempfile::tempdir().unwrap();
        let raw = t.path().join("d.raw");
        let mut data = vec![0u8; 3 << 20];
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for (i, b) in data.iter_mut().enumerate() {
            // Compressible text in the first MiB, noise in the second, zeros after.
            *b = if i < 1 << 20 {
                b"dibr qcow2 "[i % 11]
            } else if i < 2 << 20 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            } else {
                0
            };
        }
        std::fs::write(&raw, &data).unwrap();
        for compression in [Qcow2Compression::Zstd, Qcow2Compression::Zlib] {
            let out = t.path().join(format!("{compression:?}.qcow2"));
            let opts = Qcow2Options {
                compression,
                ..Default::default()
            };
            let st = write_qcow2(&raw, &out, &opts).unwrap();
            assert_eq!(st.clusters_compressed, 16, "{compression:?}: the text MiB");
            assert_eq!(st.clusters_raw, 16, "{compression:?}: the noise MiB");
            let f = File::open(&out).unwrap();
            let src = crate::formats::image_io::FileSource {
                file: &f,
                len: f.metadata().unwrap().len(),
            };
            let mut h = [0u8; 112];
            crate::formats::image_io::ImageSource::read_at(&src, 0, &mut h).unwrap();
            let zstd = compression == Qcow2Compression::Zstd;
            assert_eq!(be64(&h, 72), if zstd { 1 << 3 } else { 0 });
            assert_eq!(h[104], zstd as u8);
            let q = read::Qcow2::open(Box::new(src)).unwrap();
            let mut back = vec![0u8; data.len()];
            crate::formats::image_io::ImageSource::read_at(&q, 0, &mut back).unwrap();
            assert!(back == data, "{compression:?}: read back differs");
        }
    }
}
