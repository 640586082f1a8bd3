//! A host directory as an entry source (`dibr mkfs --from DIR`).
//!
//! Walks depth-first with names sorted bytewise (so the result does not
//! depend on readdir order), reports hard links as links to the first path
//! seen, reads xattrs with llistxattr/lgetxattr and finds holes with
//! SEEK_DATA/SEEK_HOLE, so sparse files stay sparse.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::tree::{Entry, EntryKind, FileData, RawLocation, Segment, Timestamp};

#[derive(Debug, thiserror::Error)]
#[error("reading {path}: {source}")]
pub struct DirError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

pub struct DirSource {
    root: PathBuf,
    /// Relative paths still to visit, last is next.
    stack: Vec<Vec<u8>>,
    links: HashMap<(u64, u64), Vec<u8>>,
    current: Option<Current>,
    /// Relative paths never visited (neither stat'ed nor descended into).
    skip: Option<SkipFn>,
}

/// Decides, by relative path, whether an entry is left out of the walk.
pub type SkipFn = Box<dyn Fn(&[u8]) -> bool + Send>;

struct Current {
    file: File,
    segments: Vec<Segment>,
    seg: usize,
    pos: u64,
}

fn err(path: &Path, source: io::Error) -> DirError {
    DirError {
        path: path.to_path_buf(),
        source,
    }
}

fn ts(secs: i64, nsec: i64) -> Timestamp {
    Timestamp::new(secs, nsec.clamp(0, 999_999_999) as u32)
}

/// Linux `dev_t` split (glibc's gnu_dev_major/minor).
fn split_dev(dev: u64) -> (u32, u32) {
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    (major as u32, minor as u32)
}

fn read_xattrs(path: &Path) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut names = vec![0u8; 4096];
    let n = loop {
        match rustix::fs::llistxattr(path, &mut names) {
            Ok(n) => break n,
            Err(rustix::io::Errno::RANGE) => names.resize(names.len() * 4, 0),
            Err(rustix::io::Errno::NOTSUP) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        }
    };
    let mut out = Vec::new();
    for name in names[..n].split(|&b| b == 0).filter(|s| !s.is_empty()) {
        let mut val = vec![0u8; 256];
        let len = loop {
            match rustix::fs::lgetxattr(path, OsStr::from_bytes(name), &mut val) {
                Ok(l) => break l,
                Err(rustix::io::Errno::RANGE) => val.resize(val.len() * 4, 0),
                Err(e) => return Err(e.into()),
            }
        };
        val.truncate(len);
        out.push((name.to_vec(), val));
    }
    out.sort();
    Ok(out)
}

/// Data segments of an open file via SEEK_DATA / SEEK_HOLE.
fn data_segments(file: &File, size: u64) -> Vec<Segment> {
    use rustix::fs::{seek, SeekFrom};
    let mut segs = Vec::new();
    let mut off = 0u64;
    while off < size {
        let start = match seek(file, SeekFrom::Data(off)) {
            Ok(s) => s,
            Err(rustix::io::Errno::NXIO) => break,
            // No SEEK_DATA support: treat the file as dense.
            Err(_) => {
                return vec![Segment {
                    offset: 0,
                    len: size,
                }]
            }
        };
        if start >= size {
            break;
        }
        let end = seek(file, SeekFrom::Hole(start)).unwrap_or(size).min(size);
        segs.push(Segment {
            offset: start,
            len: end - start,
        });
        off = end;
    }
    segs
}

impl DirSource {
    pub fn new(root: &Path) -> Result<Self, DirError> {
        let md = fs::metadata(root).map_err(|e| err(root, e))?;
        if !md.is_dir() {
            return Err(err(root, io::Error::other("not a directory")));
        }
        Ok(DirSource {
            root: root.to_path_buf(),
            stack: vec![Vec::new()],
            links: HashMap::new(),
            current: None,
            skip: None,
        })
    }

    /// Leave out every path (relative, `/`-separated) for which `skip`
    /// returns true, with everything below it; the root is never skipped.
    /// Skipped paths are not even stat'ed, so mount points such as `proc`
    /// can be left out without reading them.
    pub fn with_skip(mut self, skip: SkipFn) -> Self {
        self.skip = Some(skip);
        self
    }

    fn abs(&self, rel: &[u8]) -> PathBuf {
        if rel.is_empty() {
            self.root.clone()
        } else {
            self.root.join(OsStr::from_bytes(rel))
        }
    }

    pub fn next_entry(&mut self) -> Result<Option<Entry>, DirError> {
        self.current = None;
        let Some(rel) = self.stack.pop() else {
            return Ok(None);
        };
        let path = self.abs(&rel);
        let md = fs::symlink_metadata(&path).map_err(|e| err(&path, e))?;
        let ft = md.file_type();
        let mut entry = Entry {
            path: rel.clone(),
            kind: EntryKind::File,
            mode: md.mode() & 0o7777,
            uid: md.uid(),
            gid: md.gid(),
            mtime: ts(md.mtime(), md.mtime_nsec()),
            atime: Some(ts(md.atime(), md.atime_nsec())),
            ctime: Some(ts(md.ctime(), md.ctime_nsec())),
            xattrs: read_xattrs(&path).map_err(|e| err(&path, e))?,
            size: 0,
            segments: Vec::new(),
            source_offset: 0,
        };
        if !ft.is_dir() && md.nlink() > 1 {
            let key = (md.dev(), md.ino());
            if let Some(first) = self.links.get(&key) {
                entry.kind = EntryKind::HardLink(first.clone());
                entry.xattrs.clear();
                return Ok(Some(entry));
            }
            self.links.insert(key, rel.clone());
        }
        if ft.is_dir() {
            entry.kind = EntryKind::Dir;
            let mut names: Vec<Vec<u8>> = fs::read_dir(&path)
                .map_err(|e| err(&path, e))?
                .map(|d| d.map(|d| d.file_name().as_bytes().to_vec()))
                .collect::<io::Result<_>>()
                .map_err(|e| err(&path, e))?;
            names.sort();
            for n in names.into_iter().rev() {
                let mut child = rel.clone();
                if !child.is_empty() {
                    child.push(b'/');
                }
                child.extend_from_slice(&n);
                if self.skip.as_ref().is_some_and(|f| f(&child)) {
                    continue;
                }
                self.stack.push(child);
            }
        } else if ft.is_symlink() {
            let t = fs::read_link(&path).map_err(|e| err(&path, e))?;
            entry.kind = EntryKind::Symlink(t.as_os_str().as_bytes().to_vec());
        } else if ft.is_file() {
            let file = File::open(&path).map_err(|e| err(&path, e))?;
            entry.size = md.size();
            entry.segments = data_segments(&file, md.size());
            self.current = Some(Current {
                file,
                segments: entry.segments.clone(),
                seg: 0,
                pos: 0,
            });
        } else if ft.is_char_device() || ft.is_block_device() {
            let (major, minor) = split_dev(md.rdev());
            entry.kind = if ft.is_char_device() {
                EntryKind::CharDev { major, minor }
            } else {
                EntryKind::BlockDev { major, minor }
            };
        } else if ft.is_fifo() {
            entry.kind = EntryKind::Fifo;
        } else if ft.is_socket() {
            entry.kind = EntryKind::Socket;
        }
        Ok(Some(entry))
    }
}

impl FileData for DirSource {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(c) = &mut self.current else {
            return Ok(0);
        };
        while c.seg < c.segments.len() {
            let s = c.segments[c.seg];
            if c.pos >= s.len {
                c.seg += 1;
                c.pos = 0;
                continue;
            }
            let n = ((s.len - c.pos) as usize).min(buf.len());
            let got = c.file.read_at(&mut buf[..n], s.offset + c.pos)?;
            if got == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "file shrank while being read",
                ));
            }
            c.pos += got as u64;
            return Ok(got);
        }
        Ok(0)
    }

    fn raw_location(&self) -> Option<RawLocation<'_>> {
        let c = self.current.as_ref()?;
        Some(RawLocation {
            file: &c.file,
            offsets: c.segments.iter().map(|s| s.offset).collect(),
        })
    }

    fn mark_consumed(&mut self) {
        self.current = None;
    }
}
