//! The tree model shared by every source (tar stream, host directory) and every
//! writer (ext4, later FAT and tar output).
//!
//! A source yields [`Entry`] values one at a time, in archive order. Regular
//! file data is *not* part of the entry: the writer pulls it through
//! [`FileData`] while the entry is current, so file contents stream straight
//! to their final place and are never held in memory.

use std::fs::File;
use std::io;

/// A point in time with nanoseconds, allowing dates before 1970 (negative
/// `secs`) and after 2038 (beyond 32 bits).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    pub secs: i64,
    /// Always `< 1_000_000_000`.
    pub nsec: u32,
}

impl Timestamp {
    pub const fn new(secs: i64, nsec: u32) -> Self {
        Timestamp { secs, nsec }
    }
}

/// What kind of filesystem object an entry describes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Dir,
    /// Symlink with its target, bytes as stored.
    Symlink(Vec<u8>),
    /// Hard link to an earlier entry, by normalised path (see [`normalize_path`]).
    HardLink(Vec<u8>),
    CharDev {
        major: u32,
        minor: u32,
    },
    BlockDev {
        major: u32,
        minor: u32,
    },
    Fifo,
    Socket,
}

/// One run of real data in a (possibly sparse) file: `len` bytes at logical
/// byte `offset`. A file's segments are sorted and do not overlap; the bytes
/// between them are holes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub offset: u64,
    pub len: u64,
}

/// One filesystem object as a source describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Normalised relative path: components joined by `/`, no leading `/` or
    /// `./`, no trailing `/`, no `.` or `..` components, no empty components.
    /// The root directory itself is the empty path.
    pub path: Vec<u8>,
    pub kind: EntryKind,
    /// Permission bits including setuid/setgid/sticky (`0o7777` mask); the
    /// file type is in `kind`.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: Timestamp,
    /// Defaults to `mtime` when the source has none.
    pub atime: Option<Timestamp>,
    pub ctime: Option<Timestamp>,
    /// Extended attributes, Linux names (`user.x`, `security.capability`,
    /// `system.posix_acl_access` in the VFS v2 format), in source order.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// Logical size in bytes of a regular file (including holes); 0 otherwise.
    pub size: u64,
    /// Data segments of a regular file; a non-sparse file of size N > 0 has
    /// exactly one segment `{0, N}`, an empty file none.
    pub segments: Vec<Segment>,
    /// Where the entry came from, for error messages: the byte offset of its
    /// first header in the archive (0 for directory sources).
    pub source_offset: u64,
}

impl Entry {
    /// An entry made rather than read (a synthesized /dev node, a test's
    /// tree): owned by root, only an mtime, no xattrs and no data; callers
    /// set the rest with struct update syntax.
    pub fn new(path: Vec<u8>, kind: EntryKind, mode: u32, mtime: Timestamp) -> Entry {
        Entry {
            path,
            kind,
            mode,
            uid: 0,
            gid: 0,
            mtime,
            atime: None,
            ctime: None,
            xattrs: Vec::new(),
            size: 0,
            segments: Vec::new(),
            source_offset: 0,
        }
    }

    /// The path as text for messages (lossy for non-UTF-8 names).
    pub fn display_path(&self) -> String {
        display_path(&self.path)
    }
}

/// The path bytes as text for messages, `/` for the root.
pub fn display_path(path: &[u8]) -> String {
    if path.is_empty() {
        "/".to_string()
    } else {
        String::from_utf8_lossy(path).into_owned()
    }
}

/// Where the bytes of the current file's segments can be copied from directly
/// (with `copy_file_range`), instead of being read through [`FileData::read`].
pub struct RawLocation<'a> {
    pub file: &'a File,
    /// File offset of each segment's first byte, one per segment.
    pub offsets: Vec<u64>,
}

/// Access to the data of the current regular-file entry.
pub trait FileData {
    /// Read the next bytes of the file's segments, concatenated in segment
    /// order (holes are not returned). Returns 0 at the end.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize>;

    /// If the data can be copied in-kernel from a plain file, where it is.
    /// After using it the caller must call [`FileData::mark_consumed`].
    fn raw_location(&self) -> Option<RawLocation<'_>> {
        None
    }

    /// Tell the source that the caller copied all the data itself.
    fn mark_consumed(&mut self) {}
}

/// Errors in path normalisation.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PathError {
    #[error("path {path:?} escapes the tree with '..'")]
    Escapes { path: String },
    #[error("path {path:?} has a component longer than 255 bytes ({len} bytes)")]
    NameTooLong { path: String, len: usize },
    #[error("path {path:?} contains a NUL byte")]
    Nul { path: String },
}

/// Normalise an archive path: strip leading `/` and `./`, drop `.` and empty
/// components, resolve `..` lexically, refuse `..` that climbs above the root
/// and names longer than 255 bytes (ext4's limit).
pub fn normalize_path(raw: &[u8]) -> Result<Vec<u8>, PathError> {
    let shown = || String::from_utf8_lossy(raw).into_owned();
    if raw.contains(&0) {
        return Err(PathError::Nul { path: shown() });
    }
    let mut parts: Vec<&[u8]> = Vec::new();
    for comp in raw.split(|&b| b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => {
                if parts.pop().is_none() {
                    return Err(PathError::Escapes { path: shown() });
                }
            }
            name => {
                if name.len() > 255 {
                    return Err(PathError::NameTooLong {
                        path: shown(),
                        len: name.len(),
                    });
                }
                parts.push(name);
            }
        }
    }
    Ok(parts.join(&b'/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes() {
        assert_eq!(normalize_path(b"./a//b/./c/").unwrap(), b"a/b/c");
        assert_eq!(normalize_path(b"/").unwrap(), b"");
        assert_eq!(normalize_path(b"./").unwrap(), b"");
        assert_eq!(normalize_path(b"a/../b").unwrap(), b"b");
        assert!(matches!(
            normalize_path(b"a/../../etc"),
            Err(PathError::Escapes { .. })
        ));
        let long = vec![b'x'; 256];
        assert!(matches!(
            normalize_path(&long),
            Err(PathError::NameTooLong { len: 256, .. })
        ));
        assert_eq!(normalize_path(&[b'y'; 255]).unwrap().len(), 255);
    }
}
