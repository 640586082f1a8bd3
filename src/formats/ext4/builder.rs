//! Building the tree: entries arrive one by one (archive order); regular
//! file data is streamed straight to its final blocks in the image, and
//! everything else is kept as a compact in-memory tree until
//! [`Builder::finish`] (see `finish.rs`) lays out and writes the metadata.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use super::error::{Error, Result};
use super::extent::{self, Extent};
use super::inode::{TIME_MAX, TIME_MIN};
use super::layout::{Allocator, Run, BLOCK_SIZE};
use super::xattr::{self, Attr};
use crate::tree::{display_path, Entry, EntryKind, FileData, Timestamp};

pub type NodeId = u32;
pub const ROOT: NodeId = 0;
/// A removed child slot in a directory.
const TOMBSTONE: NodeId = NodeId::MAX;

/// Largest file the 32-bit logical block numbers of extents can address.
const MAX_FILE_SIZE: u64 = (1u64 << 32) * BLOCK_SIZE - BLOCK_SIZE;
/// Read/write chunk for streaming file data.
const CHUNK: usize = 1 << 20;
/// Pieces at least this large go through copy_file_range (when enabled).
const CFR_MIN: u64 = 1 << 20;

#[derive(Debug)]
pub enum Kind {
    File {
        size: u64,
        extents: Vec<Extent>,
        data_blocks: u64,
    },
    Dir(Dir),
    Symlink {
        target: Vec<u8>,
        /// Block holding a slow symlink's target.
        block: Option<u64>,
    },
    Chr(u32, u32),
    Blk(u32, u32),
    Fifo,
    Sock,
    /// Unlinked by a later duplicate entry.
    Removed,
}

#[derive(Debug, Default)]
pub struct Dir {
    pub children: Vec<(Box<[u8]>, NodeId)>,
    index: HashMap<Box<[u8]>, usize>,
    pub parent: NodeId,
}

impl Dir {
    fn get(&self, name: &[u8]) -> Option<NodeId> {
        self.index.get(name).map(|&i| self.children[i].1)
    }
    fn insert(&mut self, name: &[u8], id: NodeId) {
        match self.index.get(name) {
            Some(&i) => self.children[i].1 = id,
            None => {
                self.index.insert(name.into(), self.children.len());
                self.children.push((name.into(), id));
            }
        }
    }
    /// Live children in insertion order.
    pub fn live(&self) -> impl Iterator<Item = (&[u8], NodeId)> {
        self.children
            .iter()
            .filter(|c| c.1 != TOMBSTONE)
            .map(|(n, id)| (&n[..], *id))
    }
}

#[derive(Debug)]
pub struct Node {
    pub kind: Kind,
    pub perm: u16,
    pub uid: u32,
    pub gid: u32,
    pub atime: Timestamp,
    pub mtime: Timestamp,
    pub ctime: Timestamp,
    pub xattrs: Vec<Attr>,
    pub nlink: u32,
}

impl Node {
    /// A directory made by the writer itself (root, implicit parents,
    /// lost+found): root-owned, all times `now`.
    pub fn synthetic_dir(perm: u16, parent: NodeId, now: Timestamp) -> Node {
        Node {
            kind: Kind::Dir(Dir {
                parent,
                ..Default::default()
            }),
            perm,
            uid: 0,
            gid: 0,
            atime: now,
            mtime: now,
            ctime: now,
            xattrs: Vec::new(),
            nlink: 1,
        }
    }
}

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
    pub(super) nodes: Vec<Node>,
    pub(super) alloc: Allocator,
    pub(super) now: Timestamp,
    pub(super) stats: Stats,
    /// Cache of the last parent directory looked up: (path, node).
    last_dir: Option<(Vec<u8>, NodeId)>,
    buf: Vec<u8>,
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
        let root = Node::synthetic_dir(0o755, ROOT, now);
        Ok(Builder {
            file,
            path,
            alloc: Allocator::new(opts.size_blocks),
            opts,
            nodes: vec![root],
            now,
            stats: Stats::default(),
            last_dir: None,
            buf: vec![0u8; CHUNK],
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

    /// Resolve the directory that will hold `path`, creating missing
    /// parents as tar extraction does (mode 0755, root-owned).
    fn parent_dir(&mut self, e: &Entry) -> Result<(NodeId, Vec<u8>)> {
        let path = &e.path;
        let (dir_path, name) = match path.iter().rposition(|&b| b == b'/') {
            Some(i) => (&path[..i], &path[i + 1..]),
            None => (&path[..0], &path[..]),
        };
        if let Some((p, id)) = &self.last_dir {
            if p == dir_path && matches!(self.nodes[*id as usize].kind, Kind::Dir(_)) {
                return Ok((*id, name.to_vec()));
            }
        }
        let mut cur = ROOT;
        if !dir_path.is_empty() {
            for comp in dir_path.split(|&b| b == b'/') {
                let next = match &self.nodes[cur as usize].kind {
                    Kind::Dir(d) => d.get(comp),
                    _ => unreachable!("cur is always a directory"),
                };
                cur = match next {
                    Some(id) if matches!(self.nodes[id as usize].kind, Kind::Dir(_)) => id,
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
                        let id = self.new_node(Node::synthetic_dir(0o755, cur, self.now));
                        self.dir_mut(cur).insert(comp, id);
                        id
                    }
                };
            }
        }
        self.last_dir = Some((dir_path.to_vec(), cur));
        Ok((cur, name.to_vec()))
    }

    fn dir_mut(&mut self, id: NodeId) -> &mut Dir {
        match &mut self.nodes[id as usize].kind {
            Kind::Dir(d) => d,
            _ => unreachable!("node {id} is a directory"),
        }
    }

    fn new_node(&mut self, n: Node) -> NodeId {
        self.nodes.push(n);
        (self.nodes.len() - 1) as NodeId
    }

    /// Drop one name of `id`; release the node (and a directory's subtree)
    /// when no name is left. Its data blocks simply stay unallocated.
    fn unlink(&mut self, id: NodeId) {
        let node = &mut self.nodes[id as usize];
        node.nlink = node.nlink.saturating_sub(1);
        if node.nlink > 0 {
            return;
        }
        let kind = std::mem::replace(&mut node.kind, Kind::Removed);
        if let Kind::Dir(d) = kind {
            let kids: Vec<NodeId> = d.live().map(|(_, c)| c).collect();
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
            cur = match &self.nodes[cur as usize].kind {
                Kind::Dir(d) => d.get(comp)?,
                _ => return None,
            };
        }
        Some(cur)
    }

    /// Count the entry's xattrs of namespaces ext4 cannot hold (dropped
    /// in [`Self::meta_node`]); malformed names are errors there.
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

    fn meta_node(&self, e: &Entry, kind: Kind) -> Result<Node> {
        let mut xattrs = Vec::with_capacity(e.xattrs.len());
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
        xattr::place(xattrs.clone()).map_err(|err| Self::entry_err(e, err.to_string()))?;
        let mtime = clamp_time(e.mtime);
        Ok(Node {
            kind,
            perm: (e.mode & 0o7777) as u16,
            uid: e.uid,
            gid: e.gid,
            atime: clamp_time(e.atime.unwrap_or(mtime)),
            mtime,
            ctime: clamp_time(e.ctime.unwrap_or(mtime)),
            xattrs,
            nlink: 1,
        })
    }

    /// Give an existing directory (the root, an implicit parent, or a
    /// duplicate entry) the metadata of entry `e`, keeping its children,
    /// as tar extraction does.
    fn update_dir_meta(&mut self, id: NodeId, e: &Entry) -> Result<()> {
        let n = self.meta_node(e, Kind::Removed)?;
        let d = &mut self.nodes[id as usize];
        d.perm = n.perm;
        d.uid = n.uid;
        d.gid = n.gid;
        d.atime = n.atime;
        d.mtime = n.mtime;
        d.ctime = n.ctime;
        d.xattrs = n.xattrs;
        Ok(())
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
        let (parent, name) = self.parent_dir(e)?;
        let existing = match &self.nodes[parent as usize].kind {
            Kind::Dir(d) => d.get(&name),
            _ => None,
        };
        let kind = match &e.kind {
            EntryKind::Dir => {
                if let Some(id) = existing {
                    if matches!(self.nodes[id as usize].kind, Kind::Dir(_)) {
                        // A directory entry for a directory that exists
                        // (made implicitly, or a duplicate): update it.
                        return self.update_dir_meta(id, e);
                    }
                }
                Kind::Dir(Dir {
                    parent,
                    ..Default::default()
                })
            }
            EntryKind::HardLink(target) => {
                let Some(t) = self.lookup(target) else {
                    return Err(Error::HardLinkMissing {
                        path: e.display_path(),
                        target: display_path(target),
                        offset: e.source_offset,
                    });
                };
                if matches!(self.nodes[t as usize].kind, Kind::Dir(_)) {
                    return Err(Self::entry_err(e, "hard link to a directory"));
                }
                if existing == Some(t) {
                    return Ok(());
                }
                if let Some(old) = existing {
                    self.unlink(old);
                }
                self.nodes[t as usize].nlink += 1;
                self.dir_mut(parent).insert(&name, t);
                return Ok(());
            }
            EntryKind::File => {
                if e.size > MAX_FILE_SIZE {
                    return Err(Self::entry_err(
                        e,
                        format!("file of {} bytes exceeds ext4's 16 TiB file limit", e.size),
                    ));
                }
                // Validate before writing data, so no blocks are wasted.
                let _ = self.meta_node(e, Kind::Removed)?;
                let (extents, data_blocks) = self.write_file(e, data)?;
                Kind::File {
                    size: e.size,
                    extents,
                    data_blocks,
                }
            }
            EntryKind::Symlink(target) => {
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
                    self.file
                        .write_all_at(target, self.base + run.start * BLOCK_SIZE)
                        .map_err(|err| self.write_err(err))?;
                    Some(run.start)
                } else {
                    None
                };
                Kind::Symlink {
                    target: target.clone(),
                    block,
                }
            }
            EntryKind::CharDev { major, minor } => Kind::Chr(*major, *minor),
            EntryKind::BlockDev { major, minor } => Kind::Blk(*major, *minor),
            EntryKind::Fifo => Kind::Fifo,
            EntryKind::Socket => Kind::Sock,
        };
        let node = self.meta_node(e, kind)?;
        if let Some(old) = existing {
            self.unlink(old);
        }
        let id = self.new_node(node);
        self.dir_mut(parent).insert(&name, id);
        Ok(())
    }

    /// Stream a regular file's segments to freshly allocated blocks.
    fn write_file(&mut self, e: &Entry, data: &mut dyn FileData) -> Result<(Vec<Extent>, u64)> {
        let mut extents: Vec<Extent> = Vec::new();
        let mut data_blocks = 0u64;
        // Logical block → physical mapping of the current segment's blocks.
        let mut seg_runs: Vec<(u64, Run)> = Vec::new();
        // The source's own file when it has one (copy_file_range-able), else
        // its stream: borrowed, not dup'ed — a dup and a close per file were
        // half the syscalls of a small file.
        let mut src = match data.raw_location().is_some() {
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
                    extent::push(&mut extents, lblk, r.start, r.len);
                    data_blocks += r.len;
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
        Ok((extents, data_blocks))
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
        self.kick_writeback(dst);
        let mut i = 0;
        while i < len {
            // Stretch [i, j) over blocks that are all zero or all not.
            let blk_end = |k: usize| {
                ((((dst + k as u64) / BLOCK_SIZE + 1) * BLOCK_SIZE - dst) as usize).min(len)
            };
            let zero = is_zero(&self.buf[i..blk_end(i)]);
            let mut j = blk_end(i);
            while j < len && is_zero(&self.buf[j..blk_end(j)]) == zero {
                j = blk_end(j);
            }
            if !zero {
                self.file
                    .write_all_at(&self.buf[i..j], self.base + dst + i as u64)
                    .map_err(|err| Error::Write {
                        path: self.path.clone(),
                        source: err,
                    })?;
            }
            i = j;
        }
        Ok(())
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
