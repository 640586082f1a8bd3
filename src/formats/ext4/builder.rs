//! Building the tree: entries arrive one by one (archive order); regular
//! file data is streamed straight to its final blocks in the image, and
//! everything else is kept as a compact in-memory tree until
//! [`Builder::finish`] (see `finish.rs`) lays out and writes the metadata.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use super::error::{Error, Result};
use super::extent::{self, Extent};
use super::inode::{TIME_MAX, TIME_MIN};
use super::layout::{Allocator, Run, BLOCK_SIZE};
use super::nodes::{ExtentRange, Full};
use super::xattr::{self, Attr};
use crate::tree::{display_path, Entry, EntryKind, FileData, Timestamp};

pub use super::nodes::{Kind, Meta, Node, NodeId, Tree, ROOT};

/// Largest file the 32-bit logical block numbers of extents can address.
const MAX_FILE_SIZE: u64 = (1u64 << 32) * BLOCK_SIZE - BLOCK_SIZE;
/// Read/write chunk for streaming file data.
const CHUNK: usize = 1 << 20;
/// Pieces at least this large go through copy_file_range (when enabled).
const CFR_MIN: u64 = 1 << 20;
/// Small files' blocks are gathered into one write of up to this size:
/// one pwrite per file made the kernel's per-call work (and zeroing the
/// rest of each partly written page) most of `dibr mkfs`'s time on a tree
/// of small files.
const GATHER: usize = 1 << 20;

/// Options fixed before the first entry.
#[derive(Clone, Debug)]
pub struct Options {
    pub label: [u8; 16],
    pub uuid: Option<[u8; 16]>,
    /// Fixed image size in blocks, or automatic.
    pub size_blocks: Option<u64>,
    pub extra_blocks: u64,
    /// Growth ceiling in bytes; sets the largest inodes-per-group.
    pub max_resize_bytes: u64,
    /// `max_resize_bytes` is a default, not a demand: a fixed size too
    /// small for its inode density lowers it (see `groups.rs`).
    pub fit_ceiling: bool,
    /// Inode density: the ceiling's (dibr's default) or mke2fs's -i/-N.
    pub density: super::groups::Density,
    /// Blocks reserved for root in tenths of a percent (mke2fs -m; 50 = 5 %).
    pub reserved_per_mille: u16,
    pub journal_blocks: Option<u64>,
    /// SOURCE_DATE_EPOCH: fs timestamps, UUID and hash seed derive from it.
    pub source_date_epoch: Option<i64>,
}

/// `dibr mkfs` without options: no label, the size and UUID from the
/// tree, the 1 PiB growth ceiling as a wish, mke2fs's 5 % reserve, the
/// journal size for the filesystem's size, the current time.
impl Default for Options {
    fn default() -> Options {
        Options {
            label: [0; 16],
            uuid: None,
            size_blocks: None,
            extra_blocks: 0,
            max_resize_bytes: 1 << 50,
            fit_ceiling: true,
            density: Default::default(),
            reserved_per_mille: 50,
            journal_blocks: None,
            source_date_epoch: None,
        }
    }
}

/// How the writer uses the kernel: no effect on the image's bytes, only
/// on speed and durability. Resolved from the environment by the caller
/// (`crate::settings::ext4_io`); the default is what a user gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoOptions {
    /// fsync the image at the end of [`Builder::finish`]
    /// (`DIBR_NO_FSYNC=1` turns it off, for benchmarks).
    pub fsync: bool,
    /// Copy large pieces of file data with copy_file_range
    /// (`DIBR_NO_COPY_FILE_RANGE=1` turns it off: pread/pwrite only).
    pub copy_file_range: bool,
}

impl Default for IoOptions {
    fn default() -> Self {
        IoOptions {
            fsync: true,
            copy_file_range: true,
        }
    }
}

/// Statistics for the summary line.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub entries: u64,
    pub data_bytes: u64,
    /// Xattrs dropped as [`xattr::Name::Foreign`], and the first one as
    /// "'name' on 'path'" for the warning.
    pub foreign_xattrs: u64,
    pub first_foreign_xattr: Option<String>,
}

pub struct Builder {
    pub(super) file: File,
    pub(super) path: PathBuf,
    pub(super) opts: Options,
    pub(super) tree: Tree,
    pub(super) alloc: Allocator,
    pub(super) now: Timestamp,
    pub(super) stats: Stats,
    /// Cache of the last parent directory looked up: (path, node).
    last_dir: Option<(Vec<u8>, NodeId)>,
    buf: Vec<u8>,
    /// Data waiting to be written at image byte `gather_at` (relative to
    /// `base`): consecutive small files' blocks, zero-padded to whole
    /// blocks, go out in one write ([`GATHER`]).
    gather: Vec<u8>,
    gather_at: u64,
    /// Scratch for a file's extents before they join the tree's arena.
    extents: Vec<Extent>,
    /// Copy pieces of at least CFR_MIN bytes with copy_file_range (in-kernel,
    /// one copy fewer). Per-call setup made it 2.5x slower than pread/pwrite
    /// for the many small files of a root tarball, hence the threshold.
    use_cfr: bool,
    /// fsync at the end of [`Builder::finish`] ([`IoOptions::fsync`]).
    pub(super) fsync: bool,
    /// Image bytes below this offset have been handed to writeback.
    kicked: u64,
    /// Byte offset of the filesystem in the file.
    pub(super) base: u64,
}

fn clamp_time(t: Timestamp) -> Timestamp {
    if t.secs < TIME_MIN {
        Timestamp::new(TIME_MIN, 0)
    } else if t.secs > TIME_MAX {
        Timestamp::new(TIME_MAX, 999_999_999)
    } else {
        t
    }
}

impl Builder {
    /// Start writing into `file` (a fresh, empty file at `path`).
    pub fn new(file: File, path: PathBuf, opts: Options) -> Result<Self> {
        Self::new_at(file, path, opts, 0)
    }

    /// Write the filesystem at byte `base_offset` of `file` (a partition of
    /// a disk image, written in place). The region must read as zeros (a
    /// fresh sparse file), since all-zero blocks are not written. With
    /// `size_blocks` set the file is never truncated, only extended.
    pub fn new_at(file: File, path: PathBuf, opts: Options, base_offset: u64) -> Result<Self> {
        if !base_offset.is_multiple_of(BLOCK_SIZE) {
            return Err(Error::Option(format!(
                "filesystem offset {base_offset} is not a multiple of 4096"
            )));
        }
        let now = match opts.source_date_epoch {
            Some(s) => Timestamp::new(s, 0),
            None => {
                let d = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default();
                Timestamp::new(d.as_secs() as i64, 0)
            }
        };
        Ok(Builder {
            file,
            path,
            alloc: Allocator::new(opts.size_blocks),
            opts,
            tree: Tree::new(now),
            now,
            stats: Stats::default(),
            last_dir: None,
            buf: vec![0u8; CHUNK],
            gather: Vec::with_capacity(GATHER),
            gather_at: 0,
            extents: Vec::new(),
            use_cfr: IoOptions::default().copy_file_range,
            fsync: IoOptions::default().fsync,
            kicked: 0,
            base: base_offset,
        })
    }

    /// Use `io` instead of [`IoOptions::default`]; call before the first
    /// [`Builder::add`].
    pub fn set_io(&mut self, io: IoOptions) {
        self.use_cfr = io.copy_file_range;
        self.fsync = io.fsync;
    }

    /// File data bytes copied so far (for progress reporting).
    pub fn data_bytes(&self) -> u64 {
        self.stats.data_bytes
    }

    fn entry_err(e: &Entry, problem: impl Into<String>) -> Error {
        Error::Entry {
            path: e.display_path(),
            offset: e.source_offset,
            problem: problem.into(),
        }
    }

    fn write_err(&self, source: io::Error) -> Error {
        Error::Write {
            path: self.path.clone(),
            source,
        }
    }

    fn out_of_space(&self) -> Error {
        let limit = self.alloc.limit().unwrap_or(0);
        Error::DoesNotFit {
            size_bytes: limit * BLOCK_SIZE,
            needed_bytes: (self.alloc.next() + 1) * BLOCK_SIZE,
            exact: false,
            detail: "file data alone exceeds the size".into(),
        }
    }

    fn full(&self) -> Error {
        Error::Option("the tree has more entries, extents or name bytes than dibr's in-memory tree holds (2^32 each)".into())
    }

    /// Resolve the directory that will hold `path`, creating missing
    /// parents as tar extraction does (mode 0755, root-owned). Returns the
    /// parent's node and directory record and the entry's own name.
    fn parent_dir<'e>(&mut self, e: &'e Entry) -> Result<(NodeId, u32, &'e [u8])> {
        let path = &e.path;
        let (dir_path, name) = match path.iter().rposition(|&b| b == b'/') {
            Some(i) => (&path[..i], &path[i + 1..]),
            None => (&path[..0], &path[..]),
        };
        if name.len() > 255 {
            return Err(Self::entry_err(
                e,
                format!("name of {} bytes (ext4 allows at most 255)", name.len()),
            ));
        }
        if let Some((p, id)) = &self.last_dir {
            if p == dir_path {
                if let Some(d) = self.tree.dir_of(*id) {
                    return Ok((*id, d, name));
                }
            }
        }
        let mut cur = ROOT;
        if !dir_path.is_empty() {
            for comp in dir_path.split(|&b| b == b'/') {
                let d = self.tree.dir_of(cur).expect("cur is always a directory");
                cur = match self.tree.get(d, comp) {
                    Some(id) if self.tree.is_dir(id) => id,
                    Some(_) => {
                        return Err(Self::entry_err(
                            e,
                            format!(
                                "a parent, '{}', is not a directory in the tree",
                                String::from_utf8_lossy(comp)
                            ),
                        ))
                    }
                    None => {
                        if comp.len() > 255 {
                            return Err(Self::entry_err(
                                e,
                                "a parent's name is longer than 255 bytes (ext4's limit)",
                            ));
                        }
                        let id = self
                            .tree
                            .new_dir(0o755, cur, self.now)
                            .map_err(|Full| self.full())?;
                        self.tree.insert(d, comp, id).map_err(|Full| self.full())?;
                        id
                    }
                };
            }
        }
        self.last_dir = Some((dir_path.to_vec(), cur));
        let d = self.tree.dir_of(cur).expect("cur is always a directory");
        Ok((cur, d, name))
    }

    /// Drop one name of `id`; release the node (and a directory's subtree)
    /// when no name is left. Its data blocks simply stay unallocated.
    fn unlink(&mut self, id: NodeId) {
        if self.tree.unlink_one(id) > 0 {
            return;
        }
        let kind = std::mem::replace(&mut self.tree.nodes[id as usize].kind, Kind::Removed);
        if let Kind::Dir(d) = kind {
            let kids: Vec<NodeId> = self.tree.live(d).map(|(_, c)| c).collect();
            for c in kids {
                self.unlink(c);
            }
        }
        self.last_dir = None;
    }

    fn lookup(&self, path: &[u8]) -> Option<NodeId> {
        let mut cur = ROOT;
        if path.is_empty() {
            return Some(ROOT);
        }
        for comp in path.split(|&b| b == b'/') {
            cur = self.tree.get(self.tree.dir_of(cur)?, comp)?;
        }
        Some(cur)
    }

    /// Count the entry's xattrs of namespaces ext4 cannot hold (dropped
    /// in [`Self::meta`]); malformed names are errors there.
    fn note_foreign_xattrs(&mut self, e: &Entry) {
        for (n, _) in &e.xattrs {
            if xattr::classify(n) == Ok(xattr::Name::Foreign) {
                self.stats.foreign_xattrs += 1;
                self.stats.first_foreign_xattr.get_or_insert_with(|| {
                    format!("'{}' on '{}'", String::from_utf8_lossy(n), e.display_path())
                });
            }
        }
    }

    fn meta(&self, e: &Entry) -> Result<Meta> {
        let mut xattrs: Vec<Attr> = Vec::with_capacity(e.xattrs.len());
        for (n, v) in &e.xattrs {
            // A minimal access ACL (owner, group, other only) says no more
            // than the mode bits; the kernel drops it on setxattr
            // (posix_acl_update_mode), so tar extraction never stores it.
            if n == b"system.posix_acl_access" && v.len() == 4 + 3 * 8 {
                continue;
            }
            let attr = xattr::to_attr(n, v).map_err(|err| Self::entry_err(e, err.to_string()))?;
            xattrs.extend(attr); // None: foreign, counted by note_foreign_xattrs
        }
        // Check the attributes fit now, so the error names this entry.
        if !xattrs.is_empty() {
            xattr::place(xattrs.clone()).map_err(|err| Self::entry_err(e, err.to_string()))?;
        }
        let mtime = clamp_time(e.mtime);
        Ok(Meta {
            perm: (e.mode & 0o7777) as u16,
            uid: e.uid,
            gid: e.gid,
            atime: clamp_time(e.atime.unwrap_or(mtime)),
            mtime,
            ctime: clamp_time(e.ctime.unwrap_or(mtime)),
            xattrs,
        })
    }

    /// Give an existing directory (the root, an implicit parent, or a
    /// duplicate entry) the metadata of entry `e`, keeping its children,
    /// as tar extraction does.
    fn update_dir_meta(&mut self, id: NodeId, e: &Entry) -> Result<()> {
        let m = self.meta(e)?;
        self.tree.set_meta(id, m).map_err(|Full| self.full())
    }

    /// Add one entry. For a regular file its data is read from `data` now.
    pub fn add(&mut self, e: &Entry, data: &mut dyn FileData) -> Result<()> {
        self.stats.entries += 1;
        self.note_foreign_xattrs(e);
        if e.path.is_empty() {
            // The archive's own "./": metadata for the root directory.
            if e.kind != EntryKind::Dir {
                return Err(Self::entry_err(
                    e,
                    "the root of the tree must be a directory",
                ));
            }
            return self.update_dir_meta(ROOT, e);
        }
        let (parent, pdir, name) = self.parent_dir(e)?;
        let existing = self.tree.get(pdir, name);
        let kind = match &e.kind {
            EntryKind::Dir => {
                if let Some(id) = existing {
                    if self.tree.is_dir(id) {
                        // A directory entry for a directory that exists
                        // (made implicitly, or a duplicate): update it.
                        return self.update_dir_meta(id, e);
                    }
                }
                let m = self.meta(e)?;
                if let Some(old) = existing {
                    self.unlink(old);
                }
                let id = self
                    .tree
                    .new_dir_with(parent, m)
                    .map_err(|Full| self.full())?;
                return self.tree.insert(pdir, name, id).map_err(|Full| self.full());
            }
            EntryKind::HardLink(target) => {
                let Some(t) = self.lookup(target) else {
                    return Err(Error::HardLinkMissing {
                        path: e.display_path(),
                        target: display_path(target),
                        offset: e.source_offset,
                    });
                };
                if self.tree.is_dir(t) {
                    return Err(Self::entry_err(e, "hard link to a directory"));
                }
                if existing == Some(t) {
                    return Ok(());
                }
                if let Some(old) = existing {
                    self.unlink(old);
                }
                self.tree.link(t);
                return self.tree.insert(pdir, name, t).map_err(|Full| self.full());
            }
            EntryKind::File => {
                if e.size > MAX_FILE_SIZE {
                    return Err(Self::entry_err(
                        e,
                        format!("file of {} bytes exceeds ext4's 16 TiB file limit", e.size),
                    ));
                }
                // Validate before writing data, so no blocks are wasted.
                let m = self.meta(e)?;
                let extents = self.write_file(e, data)?;
                return self.link_new(
                    pdir,
                    name,
                    existing,
                    Kind::File {
                        size: e.size,
                        extents,
                    },
                    m,
                );
            }
            EntryKind::Symlink(target) => self.symlink(e, target)?,
            EntryKind::CharDev { major, minor } => Kind::Chr(*major, *minor),
            EntryKind::BlockDev { major, minor } => Kind::Blk(*major, *minor),
            EntryKind::Fifo => Kind::Fifo,
            EntryKind::Socket => Kind::Sock,
        };
        let m = self.meta(e)?;
        self.link_new(pdir, name, existing, kind, m)
    }

    /// A new node named `name` in directory record `pdir`, replacing the
    /// node that had the name.
    fn link_new(
        &mut self,
        pdir: u32,
        name: &[u8],
        existing: Option<NodeId>,
        kind: Kind,
        m: Meta,
    ) -> Result<()> {
        if let Some(old) = existing {
            self.unlink(old);
        }
        let id = self.tree.add_node(kind, m).map_err(|Full| self.full())?;
        self.tree.insert(pdir, name, id).map_err(|Full| self.full())
    }

    /// A symlink's kind; a slow symlink's target is written to a block now.
    fn symlink(&mut self, e: &Entry, target: &[u8]) -> Result<Kind> {
        if target.is_empty() || target.len() >= BLOCK_SIZE as usize {
            return Err(Self::entry_err(
                e,
                format!(
                    "symlink target of {} bytes (ext4 allows 1 to 4095)",
                    target.len()
                ),
            ));
        }
        let block = if target.len() >= 60 {
            let run = self
                .alloc
                .alloc_some(1)
                .ok_or_else(|| self.out_of_space())?;
            self.gather_write(run.start * BLOCK_SIZE, target, true)?;
            run.start
        } else {
            0
        };
        let target = self.tree.push_bytes(target).map_err(|Full| self.full())?;
        Ok(Kind::Symlink { target, block })
    }

    /// Stream a regular file's segments to freshly allocated blocks.
    fn write_file(&mut self, e: &Entry, data: &mut dyn FileData) -> Result<ExtentRange> {
        let mut extents = std::mem::take(&mut self.extents);
        extents.clear();
        let r = self.write_segments(e, data, &mut extents);
        let r = r.and_then(|()| self.tree.push_extents(&extents).map_err(|Full| self.full()));
        self.extents = extents;
        r
    }

    /// Allocate blocks for the entry's data segments (extents into
    /// `extents`) and copy the data there.
    fn write_segments(
        &mut self,
        e: &Entry,
        data: &mut dyn FileData,
        extents: &mut Vec<Extent>,
    ) -> Result<()> {
        // Logical block → physical mapping of the current segment's blocks.
        let mut seg_runs: Vec<(u64, Run)> = Vec::new();
        // The source's own file when it has one and copy_file_range can pay
        // off, else its stream: borrowed, not dup'ed — a dup and a close per
        // file were half the syscalls of a small file. A small file in a tar
        // archive on disk is then served from the reader's buffer, with no
        // pread of its own.
        let raw = self.use_cfr && e.size >= CFR_MIN && data.raw_location().is_some();
        let mut src = match raw {
            true => match data.raw_location() {
                Some(r) => CopySource::Raw {
                    file: r.file,
                    offsets: r.offsets,
                },
                None => return Err(Self::read_err(e, io::ErrorKind::NotFound.into())),
            },
            false => CopySource::Stream(&mut *data),
        };
        for (si, seg) in e.segments.iter().enumerate() {
            if seg.len == 0 {
                continue;
            }
            let first = seg.offset / BLOCK_SIZE;
            let last = (seg.offset + seg.len - 1) / BLOCK_SIZE;
            seg_runs.clear();
            let mut lblk = first;
            // The previous segment may have ended inside this first block.
            if let Some(ext) = extents.last() {
                let end = ext.lblk as u64 + ext.len as u64;
                if end > first {
                    let pblk = ext.pblk + (first - ext.lblk as u64);
                    seg_runs.push((
                        first,
                        Run {
                            start: pblk,
                            len: 1,
                        },
                    ));
                    lblk = first + 1;
                }
            }
            if lblk <= last {
                let runs = self
                    .alloc
                    .alloc_runs(last - lblk + 1)
                    .ok_or_else(|| self.out_of_space())?;
                for r in runs {
                    extent::push(extents, lblk, r.start, r.len);
                    seg_runs.push((lblk, r));
                    lblk += r.len;
                }
            }
            // Copy the segment's bytes into the runs: piece by piece, where a
            // piece is the part of the segment that falls in one run.
            let mut pos = seg.offset;
            let end = seg.offset + seg.len;
            for &(rl, run) in &seg_runs {
                let run_end = (rl + run.len) * BLOCK_SIZE;
                if pos >= end || pos >= run_end {
                    continue;
                }
                let n = run_end.min(end) - pos;
                let phys = (run.start + (pos / BLOCK_SIZE - rl)) * BLOCK_SIZE + pos % BLOCK_SIZE;
                match &mut src {
                    CopySource::Raw { file, offsets } => {
                        let at = offsets[si] + (pos - seg.offset);
                        self.copy_raw(file, at, phys, n, e)?;
                    }
                    CopySource::Stream(d) => self.copy_stream(&mut **d, phys, n, e)?,
                }
                pos += n;
                self.stats.data_bytes += n;
            }
        }
        if matches!(src, CopySource::Raw { .. }) {
            data.mark_consumed();
        }
        Ok(())
    }
}

/// Where a regular file's bytes come from: the source's underlying file
/// at known offsets (tar on disk, a directory's file), or its stream.
enum CopySource<'a> {
    Raw { file: &'a File, offsets: Vec<u64> },
    Stream(&'a mut dyn FileData),
}

impl Builder {
    fn read_err(e: &Entry, source: io::Error) -> Error {
        Error::ReadData {
            path: e.display_path(),
            offset: e.source_offset,
            source,
        }
    }

    /// Copy `n` bytes from `src` at `src_off` to the image at `dst` with
    /// copy_file_range (in-kernel, no userspace copy); fall back to
    /// pread/pwrite where the kernel or filesystem cannot.
    fn copy_raw(
        &mut self,
        src: &File,
        mut src_off: u64,
        mut dst: u64,
        mut n: u64,
        e: &Entry,
    ) -> Result<()> {
        if n >= CFR_MIN && self.use_cfr {
            // The buffer may hold the zero-padded tail of this file's
            // previous segment, in the block this piece starts in.
            self.flush_gather()?;
        }
        while n >= CFR_MIN && self.use_cfr {
            self.kick_writeback(dst);
            let mut so = src_off;
            let mut d = self.base + dst;
            match rustix::fs::copy_file_range(
                src,
                Some(&mut so),
                &self.file,
                Some(&mut d),
                n as usize,
            ) {
                Ok(0) => {
                    return Err(Self::read_err(
                        e,
                        io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!("truncated: the source ended {n} bytes before the end of this file's data"),
                        ),
                    ))
                }
                Ok(k) => {
                    src_off += k as u64;
                    dst += k as u64;
                    n -= k as u64;
                }
                Err(rustix::io::Errno::XDEV)
                | Err(rustix::io::Errno::INVAL)
                | Err(rustix::io::Errno::NOSYS)
                | Err(rustix::io::Errno::OPNOTSUPP) => self.use_cfr = false,
                Err(err) => return Err(self.write_err(err.into())),
            }
        }
        let mut off = src_off;
        self.copy_via_buffer(dst, n, e, |buf| {
            let got = read_exact_at(src, buf, off);
            off += buf.len() as u64;
            got
        })
    }

    /// File data is written in increasing block order, so everything well
    /// below `dst` is finished: start its writeback now (fadvise DONTNEED
    /// starts asynchronous writeback of dirty pages), so the final fsync
    /// waits for the tail only and disk I/O overlaps the copying.
    /// Without a final fsync (a scratch image that is read back at once)
    /// there is nothing to overlap: the pages stay cached for the reader.
    fn kick_writeback(&mut self, dst: u64) {
        const STEP: u64 = 64 << 20;
        if !self.fsync {
            return;
        }
        if dst >= self.kicked + 2 * STEP {
            let end = dst - STEP;
            let _ = rustix::fs::fadvise(
                &self.file,
                self.base + self.kicked,
                std::num::NonZeroU64::new(end - self.kicked),
                rustix::fs::Advice::DontNeed,
            );
            self.kicked = end;
        }
    }

    /// Copy `n` bytes from the streaming source to the image at `dst`.
    fn copy_stream(&mut self, data: &mut dyn FileData, dst: u64, n: u64, e: &Entry) -> Result<()> {
        self.copy_via_buffer(dst, n, e, |buf| read_full(data, buf))
    }

    /// Fill the buffer chunk by chunk with `fill` (which returns how many
    /// bytes it got, short only at the end of the source) and write each
    /// chunk at `dst`; a short fill is a truncated source.
    fn copy_via_buffer(
        &mut self,
        mut dst: u64,
        mut n: u64,
        e: &Entry,
        mut fill: impl FnMut(&mut [u8]) -> io::Result<usize>,
    ) -> Result<()> {
        while n > 0 {
            let want = (n as usize).min(CHUNK);
            let got = fill(&mut self.buf[..want]).map_err(|err| Self::read_err(e, err))?;
            if got < want {
                return Err(Self::read_err(
                    e,
                    io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!(
                            "truncated: the source ended {} bytes before the end of this file's data",
                            n - got as u64
                        ),
                    ),
                ));
            }
            self.write_data(dst, want)?;
            dst += want as u64;
            n -= want as u64;
        }
        Ok(())
    }

    /// Write `self.buf[..len]` at byte `dst`, skipping all-zero 4 KiB blocks:
    /// the image is a fresh sparse file, so they read back as zeros anyway.
    fn write_data(&mut self, dst: u64, len: usize) -> Result<()> {
        let buf = std::mem::take(&mut self.buf);
        let r = self.write_nonzero(&buf[..len], dst);
        self.buf = buf;
        r
    }

    fn write_nonzero(&mut self, data: &[u8], dst: u64) -> Result<()> {
        let len = data.len();
        let mut i = 0;
        while i < len {
            // Stretch [i, j) over blocks that are all zero or all not.
            let blk_end = |k: usize| {
                ((((dst + k as u64) / BLOCK_SIZE + 1) * BLOCK_SIZE - dst) as usize).min(len)
            };
            let zero = is_zero(&data[i..blk_end(i)]);
            let mut j = blk_end(i);
            while j < len && is_zero(&data[j..blk_end(j)]) == zero {
                j = blk_end(j);
            }
            if !zero {
                self.gather_write(dst + i as u64, &data[i..j], j == len)?;
            }
            i = j;
        }
        Ok(())
    }

    /// Write `data` at image byte `dst` through the gather buffer: appended
    /// when it continues the buffered bytes, else the buffer goes out
    /// first. `last` (the end of a piece): pad to the block's end with
    /// zeros, so the next file's block continues the buffer. Later writes
    /// to the same bytes go out later, so they win as direct writes would.
    pub(super) fn gather_write(&mut self, dst: u64, data: &[u8], last: bool) -> Result<()> {
        if !self.gather.is_empty() && self.gather_at + self.gather.len() as u64 != dst {
            self.flush_gather()?;
        }
        if self.gather.is_empty() {
            if data.len() >= GATHER {
                self.kick_writeback(dst);
                return self
                    .file
                    .write_all_at(data, self.base + dst)
                    .map_err(|err| self.write_err(err));
            }
            self.gather_at = dst;
        }
        self.gather.extend_from_slice(data);
        if last {
            let end = (dst + data.len() as u64).next_multiple_of(BLOCK_SIZE);
            let pad = end - (dst + data.len() as u64);
            self.gather.resize(self.gather.len() + pad as usize, 0);
        }
        if self.gather.len() >= GATHER {
            self.flush_gather()?;
        }
        Ok(())
    }

    /// Write out the gather buffer.
    pub(super) fn flush_gather(&mut self) -> Result<()> {
        if self.gather.is_empty() {
            return Ok(());
        }
        self.kick_writeback(self.gather_at);
        let r = self
            .file
            .write_all_at(&self.gather, self.base + self.gather_at);
        self.gather.clear();
        r.map_err(|err| self.write_err(err))
    }
}

/// All-zero check written so the compiler vectorises it (OR-fold per 64 bytes).
fn is_zero(b: &[u8]) -> bool {
    let mut chunks = b.chunks_exact(64);
    let body = chunks
        .by_ref()
        .all(|c| c.iter().fold(0u8, |a, &x| a | x) == 0);
    body && chunks.remainder().iter().all(|&x| x == 0)
}

fn read_full(data: &mut dyn FileData, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match data.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn read_exact_at(f: &File, buf: &mut [u8], off: u64) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read_at(&mut buf[n..], off + n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}
