//! Building the tree: entries arrive one by one (archive order); regular
//! file data is streamed straight to its final blocks, everything else is
//! kept in memory until [`Builder::finish`] (`finish.rs`) numbers the
//! inodes and writes the metadata.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use super::alloc::Alloc;
use super::error::{Error, Result};
use super::geometry::{Geometry, BLOCK};
use super::inode::{clamp, data_room, Extent};
use super::xattr::{self, XattrError};
use crate::tree::{display_path, Entry, EntryKind, FileData, Timestamp};

const CHUNK: usize = 1 << 20;

/// Options fixed before the first entry.
#[derive(Clone, Debug)]
pub struct Options {
    /// Filesystem size in bytes (rounded down to 4 KiB blocks).
    pub size_bytes: u64,
    /// The filesystem UUID (the caller derives it reproducibly).
    pub uuid: [u8; 16],
    /// Volume label, at most 12 bytes.
    pub label: Vec<u8>,
    /// SOURCE_DATE_EPOCH: the time of the metadata inodes and of
    /// directories the archive implies but does not list.
    pub source_date_epoch: Option<i64>,
}

pub type NodeId = usize;
pub const ROOT: NodeId = 0;

#[derive(Clone, Debug)]
pub enum Kind {
    File {
        exts: Vec<Extent>,
        size: u64,
    },
    Dir {
        children: Vec<(Vec<u8>, NodeId)>,
    },
    Symlink(Vec<u8>),
    /// Device, fifo or socket: `S_IF*` type bits and the XFS-encoded
    /// device number (major in the bits above 18).
    Special {
        ftype: u16,
        rdev: u32,
    },
}

#[derive(Clone, Debug)]
pub struct Node {
    pub kind: Kind,
    /// Permission bits (0o7777).
    pub perm: u16,
    pub uid: u32,
    pub gid: u32,
    pub atime: Timestamp,
    pub mtime: Timestamp,
    pub ctime: Timestamp,
    /// The shortform attribute fork (empty for none).
    pub attr: Vec<u8>,
}

/// Figures for the caller's summary.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub entries: u64,
    pub data_bytes: u64,
    /// Attributes in namespaces XFS does not store, dropped; the first as
    /// "'name' on 'path'".
    pub foreign_xattrs: u64,
    pub first_foreign_xattr: Option<String>,
}

pub struct Builder {
    pub(super) file: File,
    pub(super) path: PathBuf,
    pub(super) base: u64,
    pub(super) alloc: Alloc,
    pub(super) uuid: [u8; 16],
    pub(super) label: [u8; 12],
    pub(super) now: Timestamp,
    pub(super) nodes: Vec<Node>,
    paths: HashMap<Vec<u8>, NodeId>,
    /// Data blocks that found no room (the filesystem is too small).
    pub(super) missing_blocks: u64,
    pub(super) first_missing: Option<String>,
    pub stats: Stats,
    buf: Vec<u8>,
}

impl Builder {
    /// Write the filesystem at byte `base` of `file`, a region that reads
    /// as zeros (a fresh sparse file): holes and unused blocks are never
    /// written.
    pub fn new_at(file: File, path: PathBuf, opts: Options, base: u64) -> Result<Builder> {
        let geo = Geometry::new(opts.size_bytes).map_err(Error::Option)?;
        if opts.label.len() > 12 {
            return Err(Error::Option(format!(
                "label {:?} is longer than XFS's 12 bytes",
                String::from_utf8_lossy(&opts.label)
            )));
        }
        let mut label = [0u8; 12];
        label[..opts.label.len()].copy_from_slice(&opts.label);
        let now = Timestamp::new(opts.source_date_epoch.unwrap_or(0), 0);
        let root = Node {
            kind: Kind::Dir {
                children: Vec::new(),
            },
            perm: 0o755,
            uid: 0,
            gid: 0,
            atime: now,
            mtime: now,
            ctime: now,
            attr: Vec::new(),
        };
        let mut paths = HashMap::new();
        paths.insert(Vec::new(), ROOT);
        Ok(Builder {
            file,
            path,
            base,
            alloc: Alloc::new(geo),
            uuid: opts.uuid,
            label,
            now,
            nodes: vec![root],
            paths,
            missing_blocks: 0,
            first_missing: None,
            stats: Stats::default(),
            buf: vec![0u8; CHUNK],
        })
    }

    /// The filesystem UUID.
    pub fn uuid(&self) -> [u8; 16] {
        self.uuid
    }

    pub fn geometry(&self) -> &Geometry {
        &self.alloc.geo
    }

    fn entry_err(e: &Entry, problem: impl Into<String>) -> Error {
        Error::Entry {
            path: e.display_path(),
            offset: e.source_offset,
            problem: problem.into(),
        }
    }

    /// Metadata of `e` as a node of `kind`.
    fn node(&mut self, e: &Entry, kind: Kind) -> Result<Node> {
        let mut kept = Vec::new();
        for (name, value) in &e.xattrs {
            match xattr::shortform(&[(name.clone(), value.clone())]) {
                Err(XattrError::Foreign(n)) => {
                    self.stats.foreign_xattrs += 1;
                    if self.stats.first_foreign_xattr.is_none() {
                        self.stats.first_foreign_xattr =
                            Some(format!("'{n}' on '{}'", e.display_path()));
                    }
                }
                _ => kept.push((name.clone(), value.clone())),
            }
        }
        let attr = xattr::shortform(&kept).map_err(|x| Self::entry_err(e, x.to_string()))?;
        let mtime = clamp(e.mtime);
        Ok(Node {
            kind,
            perm: (e.mode & 0o7777) as u16,
            uid: e.uid,
            gid: e.gid,
            atime: clamp(e.atime.unwrap_or(e.mtime)),
            mtime,
            ctime: clamp(e.ctime.unwrap_or(e.mtime)),
            attr,
        })
    }

    /// The directory at `path`, made (root-owned, 0755, the epoch's
    /// time) with its parents when the archive has not listed it.
    fn dir(&mut self, path: &[u8], e: &Entry) -> Result<NodeId> {
        if let Some(&id) = self.paths.get(path) {
            return match self.nodes[id].kind {
                Kind::Dir { .. } => Ok(id),
                _ => Err(Self::entry_err(
                    e,
                    format!("its parent '{}' is not a directory", display_path(path)),
                )),
            };
        }
        let (ppath, name) = split(path);
        let parent = self.dir(ppath, e)?;
        let mut n = self.nodes[ROOT].clone();
        n.kind = Kind::Dir {
            children: Vec::new(),
        };
        (n.perm, n.uid, n.gid, n.attr) = (0o755, 0, 0, Vec::new());
        (n.atime, n.mtime, n.ctime) = (self.now, self.now, self.now);
        let id = self.push(n);
        self.link(parent, name, id, false);
        self.paths.insert(path.to_vec(), id);
        Ok(id)
    }

    fn push(&mut self, n: Node) -> NodeId {
        self.nodes.push(n);
        self.nodes.len() - 1
    }

    /// Add `name` to directory `dir`, or point it at `id` when the name
    /// is there already (`exists`: a later entry for the same path; only
    /// then is the directory searched, so big directories stay linear).
    fn link(&mut self, dir: NodeId, name: &[u8], id: NodeId, exists: bool) {
        if let Kind::Dir { children } = &mut self.nodes[dir].kind {
            match children.iter_mut().rev().find(|c| exists && c.0 == name) {
                Some(c) => c.1 = id,
                None => children.push((name.to_vec(), id)),
            }
        }
    }

    /// Add one entry. For a regular file its data is read from `data` now.
    pub fn add(&mut self, e: &Entry, data: &mut dyn FileData) -> Result<()> {
        self.stats.entries += 1;
        if e.path.is_empty() {
            if e.kind != EntryKind::Dir {
                return Err(Self::entry_err(
                    e,
                    "the root of the tree must be a directory",
                ));
            }
            return self.update_dir(ROOT, e);
        }
        let (ppath, name) = split(&e.path);
        let parent = self.dir(ppath, e)?;
        let existing = self.paths.get(&e.path).copied();
        let kind = match &e.kind {
            EntryKind::Dir => {
                if let Some(id) = existing {
                    if matches!(self.nodes[id].kind, Kind::Dir { .. }) {
                        return self.update_dir(id, e);
                    }
                }
                Kind::Dir {
                    children: Vec::new(),
                }
            }
            EntryKind::HardLink(target) => {
                let Some(&t) = self.paths.get(target.as_slice()) else {
                    return Err(Error::HardLinkMissing {
                        path: e.display_path(),
                        target: display_path(target),
                        offset: e.source_offset,
                    });
                };
                if matches!(self.nodes[t].kind, Kind::Dir { .. }) {
                    return Err(Self::entry_err(e, "hard link to a directory"));
                }
                self.link(parent, name, t, existing.is_some());
                self.paths.insert(e.path.clone(), t);
                return Ok(());
            }
            EntryKind::File => Kind::File {
                exts: Vec::new(),
                size: e.size,
            },
            EntryKind::Symlink(t) => {
                if t.is_empty() || t.len() > 1023 {
                    return Err(Self::entry_err(
                        e,
                        format!("symlink target of {} bytes (XFS holds 1 to 1023)", t.len()),
                    ));
                }
                Kind::Symlink(t.clone())
            }
            EntryKind::CharDev { major, minor } => special(e, 0o020000, *major, *minor)?,
            EntryKind::BlockDev { major, minor } => special(e, 0o060000, *major, *minor)?,
            EntryKind::Fifo => special(e, 0o010000, 0, 0)?,
            EntryKind::Socket => special(e, 0o140000, 0, 0)?,
        };
        let mut node = self.node(e, kind)?;
        if let Kind::File { exts, .. } = &mut node.kind {
            *exts = self.write_data(e, data, node.attr.len())?;
        }
        let id = self.push(node);
        self.link(parent, name, id, existing.is_some());
        self.paths.insert(e.path.clone(), id);
        Ok(())
    }

    fn update_dir(&mut self, id: NodeId, e: &Entry) -> Result<()> {
        let kind = std::mem::replace(
            &mut self.nodes[id].kind,
            Kind::Dir {
                children: Vec::new(),
            },
        );
        let mut n = self.node(e, kind)?;
        std::mem::swap(&mut self.nodes[id], &mut n);
        Ok(())
    }

    /// Allocate and write a regular file's data; its extents.
    fn write_data(
        &mut self,
        e: &Entry,
        data: &mut dyn FileData,
        attr_len: usize,
    ) -> Result<Vec<Extent>> {
        let max_ext = data_room(attr_len, false) / 16;
        let mut runs: Vec<(u64, u64)> = Vec::new();
        for s in e.segments.iter().filter(|s| s.len > 0) {
            let first = s.offset / BLOCK;
            let end = (s.offset + s.len).div_ceil(BLOCK);
            match runs.last_mut() {
                Some(l) if first <= l.0 + l.1 => l.1 = l.1.max(end - l.0),
                _ => runs.push((first, end - first)),
            }
        }
        if runs.len() + 2 > max_ext {
            // Too many holes for the inode's extent list: write the file
            // dense (the holes read as zeros all the same).
            runs = vec![(0, e.size.div_ceil(BLOCK))];
        }
        let mut exts = Vec::new();
        for &(first, len) in &runs {
            let Some(pieces) = self.alloc.blocks(len) else {
                self.missing_blocks += len;
                self.first_missing.get_or_insert_with(|| e.display_path());
                continue;
            };
            let mut off = first;
            for p in pieces {
                exts.push(Extent {
                    off,
                    fsb: self.alloc.geo.fsb(p.ag, p.agbno),
                    len: p.len,
                });
                off += p.len;
            }
        }
        if exts.len() > max_ext {
            return Err(Self::entry_err(
                e,
                format!(
                    "the file's data takes {} extents, more than the {max_ext} an inode holds",
                    exts.len()
                ),
            ));
        }
        let complete = self.missing_blocks == 0;
        for s in &e.segments {
            let mut pos = s.offset;
            let end = s.offset + s.len;
            while pos < end {
                let want = ((end - pos) as usize).min(CHUNK);
                let n = data
                    .read(&mut self.buf[..want])
                    .map_err(|source| Error::ReadData {
                        path: e.display_path(),
                        offset: e.source_offset,
                        source,
                    })?;
                if n == 0 {
                    return Err(Self::entry_err(e, "file data ends early"));
                }
                if complete {
                    self.write_logical(&exts, pos, n)?;
                }
                pos += n as u64;
            }
        }
        self.stats.data_bytes += e.segments.iter().map(|s| s.len).sum::<u64>();
        Ok(exts)
    }

    /// Write `self.buf[..n]` at logical byte `pos` of a file mapped by `exts`.
    fn write_logical(&mut self, exts: &[Extent], mut pos: u64, n: usize) -> Result<()> {
        let mut done = 0;
        let mask = (1u64 << self.alloc.geo.agblklog) - 1;
        while done < n {
            let lb = pos / BLOCK;
            let Some(x) = exts.iter().find(|x| x.off <= lb && lb < x.off + x.len) else {
                return Ok(());
            };
            let ag = (x.fsb >> self.alloc.geo.agblklog) as u32;
            let at = self.alloc.geo.byte(ag, x.fsb & mask) + (pos - x.off * BLOCK);
            let room = ((x.off + x.len) * BLOCK - pos) as usize;
            let k = room.min(n - done);
            self.write(self.base + at, &self.buf[done..done + k])?;
            done += k;
            pos += k as u64;
        }
        Ok(())
    }

    pub(super) fn write(&self, at: u64, bytes: &[u8]) -> Result<()> {
        self.file
            .write_all_at(bytes, at)
            .map_err(|source| Error::Write {
                path: self.path.clone(),
                source,
            })
    }
}

fn special(e: &Entry, ftype: u16, major: u32, minor: u32) -> Result<Kind> {
    if major > 0x3fff || minor > 0x3ffff {
        return Err(Builder::entry_err(
            e,
            format!("device number {major}:{minor} is beyond XFS's 14-bit major, 18-bit minor"),
        ));
    }
    Ok(Kind::Special {
        ftype,
        rdev: (major << 18) | minor,
    })
}

/// (parent path, last component) of a normalised path.
fn split(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&[], path),
    }
}
