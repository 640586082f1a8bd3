//! A tree (tar or directory) as a Linux initramfs: cpio "newc" archive,
//! gzip or zstd compressed.
//!
//! Format (kernel `Documentation/driver-api/early-userspace/buffer-format.rst`,
//! unpacked by `init/initramfs.c`): per entry a 110-byte ASCII header
//! `070701` + 13 eight-digit hex fields (ino, mode, uid, gid, nlink, mtime,
//! filesize, devmajor, devminor, rdevmajor, rdevminor, namesize incl. NUL,
//! check=0), the name and NUL padded to 4 bytes, then the data padded to 4;
//! the archive ends with the entry `TRAILER!!!`.
//!
//! Hard links: the kernel links an entry to an earlier one with the same
//! (dev, ino) when nlink ≥ 2 and skips its data, so every regular file is
//! written with nlink 2 (it only costs a hash entry at unpack time), the
//! first name carries the data and later names point at its ino with size 0.
//! Device nodes are written with their numbers: the kernel creates them
//! while unpacking (no mknod here). xattrs have no place in newc and are
//! dropped, as with every initramfs.

use std::collections::HashMap;
use std::io::{self, Write};
use std::path::Path;

use crate::source::{Source, SourceError};
use crate::tree::EntryKind;

#[derive(Debug, thiserror::Error)]
pub enum CpioError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("entry '{path}': {source}")]
    Data {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error(
        "entry '{path}' is a hard link to '{target}', which is not an earlier file in the tree"
    )]
    DanglingLink { path: String, target: String },
    #[error("writing the initramfs: {0}")]
    Write(#[source] io::Error),
}

/// Which members to leave out (e.g. the kernel itself under /boot).
pub type Exclude<'a> = &'a dyn Fn(&[u8]) -> bool;

#[derive(Debug, Default, PartialEq, Eq)]
pub struct CpioStats {
    pub entries: u64,
    pub data_bytes: u64,
}

struct Writer<W: Write> {
    out: W,
    pos: u64,
}

impl<W: Write> Writer<W> {
    fn put(&mut self, b: &[u8]) -> Result<(), CpioError> {
        self.out.write_all(b).map_err(CpioError::Write)?;
        self.pos += b.len() as u64;
        Ok(())
    }

    fn pad(&mut self) -> Result<(), CpioError> {
        let n = (4 - (self.pos % 4) as usize) % 4;
        self.put(&[0u8; 3][..n])
    }

    /// One header: the 13 fields as eight hex digits each, the name and
    /// its NUL, padded to 4 bytes.
    fn header(
        &mut self,
        name: &[u8],
        h: &Header,
        uid: u32,
        gid: u32,
        mtime: i64,
    ) -> Result<(), CpioError> {
        let f = [
            h.ino as u32,
            h.mode,
            uid,
            gid,
            h.nlink,
            mtime.clamp(0, u32::MAX as i64) as u32,
            h.size as u32,
            0,
            0,
            h.rdev.0,
            h.rdev.1,
            name.len() as u32 + 1,
            0,
        ];
        let mut text = String::with_capacity(110);
        text.push_str("070701");
        for v in f {
            text.push_str(&format!("{v:08X}"));
        }
        self.put(text.as_bytes())?;
        self.put(name)?;
        self.put(&[0])?;
        self.pad()
    }
}

/// The header fields that depend on the entry's kind.
struct Header {
    ino: u64,
    mode: u32,
    nlink: u32,
    size: u64,
    rdev: (u32, u32),
}

// newc's c_mode carries POSIX st_mode, whose file-type bits are libc's
// (mode_t is u32 on Linux).
use libc::{S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFREG};

/// Write `src` as a newc archive to `out` (compression is the caller's).
pub fn write_newc<W: Write>(
    src: &Path,
    out: W,
    exclude: Exclude<'_>,
) -> Result<CpioStats, CpioError> {
    let mut s = Source::open(src)?;
    let mut w = Writer { out, pos: 0 };
    let mut inos: HashMap<Vec<u8>, u64> = HashMap::new();
    let mut next_ino = 1u64;
    let mut stats = CpioStats::default();
    let mut buf = vec![0u8; 1 << 16];
    while let Some(e) = s.next_entry()? {
        if e.path.is_empty() || exclude(&e.path) {
            continue;
        }
        if (e.size >> 32) != 0 {
            return Err(CpioError::Data {
                path: e.display_path(),
                source: io::Error::other("newc holds files below 4 GiB only"),
            });
        }
        let Some(h) = header_of(&e, next_ino, &inos)? else {
            continue;
        };
        next_ino += 1;
        w.header(&e.path, &h, e.uid, e.gid, e.mtime.secs)?;
        match &e.kind {
            EntryKind::Symlink(t) => {
                w.put(t)?;
                w.pad()?;
            }
            EntryKind::File => {
                inos.insert(e.path.clone(), h.ino);
                copy_data(&mut w, &e, s.data(), &mut buf)?;
                stats.data_bytes += e.size;
            }
            _ => {}
        }
        stats.entries += 1;
    }
    let trailer = Header {
        ino: 0,
        mode: 0,
        nlink: 1,
        size: 0,
        rdev: (0, 0),
    };
    w.header(b"TRAILER!!!", &trailer, 0, 0, 0)?;
    w.out.flush().map_err(CpioError::Write)?;
    Ok(stats)
}

/// The header of `e` with the next free inode number `ino`; `None` for
/// what newc does not hold (sockets). Regular files get nlink 2 so that a
/// later hard link can point at them (see the module's doc).
fn header_of(
    e: &crate::tree::Entry,
    ino: u64,
    inos: &HashMap<Vec<u8>, u64>,
) -> Result<Option<Header>, CpioError> {
    let perm = e.mode & 0o7777;
    let plain = |mode: u32, nlink: u32, size: u64, rdev: (u32, u32)| Header {
        ino,
        mode,
        nlink,
        size,
        rdev,
    };
    Ok(Some(match &e.kind {
        EntryKind::Dir => plain(S_IFDIR | perm, 2, 0, (0, 0)),
        EntryKind::Symlink(t) => plain(S_IFLNK | 0o777, 1, t.len() as u64, (0, 0)),
        EntryKind::CharDev { major, minor } => plain(S_IFCHR | perm, 1, 0, (*major, *minor)),
        EntryKind::BlockDev { major, minor } => plain(S_IFBLK | perm, 1, 0, (*major, *minor)),
        EntryKind::Fifo => plain(S_IFIFO | perm, 1, 0, (0, 0)),
        EntryKind::Socket => return Ok(None),
        EntryKind::HardLink(t) => {
            let Some(&target) = inos.get(t) else {
                return Err(CpioError::DanglingLink {
                    path: e.display_path(),
                    target: String::from_utf8_lossy(t).into_owned(),
                });
            };
            Header {
                ino: target,
                ..plain(S_IFREG | perm, 2, 0, (0, 0))
            }
        }
        EntryKind::File => plain(S_IFREG | perm, 2, e.size, (0, 0)),
    }))
}

/// A regular file's data: its segments as the source concatenates them,
/// holes as zeros, padded to 4 bytes.
fn copy_data<W: Write>(
    w: &mut Writer<W>,
    e: &crate::tree::Entry,
    data: &mut dyn crate::tree::FileData,
    buf: &mut [u8],
) -> Result<(), CpioError> {
    let mut at = 0u64;
    for seg in e.segments.clone() {
        zeros(w, seg.offset - at)?;
        let mut left = seg.len;
        while left > 0 {
            let n = (left as usize).min(buf.len());
            let got = data.read(&mut buf[..n]).map_err(|source| CpioError::Data {
                path: e.display_path(),
                source,
            })?;
            if got == 0 {
                return Err(CpioError::Data {
                    path: e.display_path(),
                    source: io::Error::from(io::ErrorKind::UnexpectedEof),
                });
            }
            w.put(&buf[..got])?;
            left -= got as u64;
        }
        at = seg.offset + seg.len;
    }
    zeros(w, e.size - at)?;
    w.pad()
}

fn zeros<W: Write>(w: &mut Writer<W>, mut n: u64) -> Result<(), CpioError> {
    let z = [0u8; 4096];
    while n > 0 {
        let k = n.min(z.len() as u64) as usize;
        w.put(&z[..k])?;
        n -= k as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The archive unpacks with GNU cpio to the same tree (names, links,
    /// symlink, content), which is also what the kernel's unpacker reads.
    #[test]
    fn newc_round_trip_with_cpio() {
        if std::process::Command::new("cpio")
            .arg("--version")
            .output()
            .is_err()
        {
            eprintln!("skipped: cpio not installed");
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let t = d.path().join("t");
        std::fs::create_dir_all(t.join("a/b")).unwrap();
        std::fs::write(t.join("a/b/f"), b"hello").unwrap();
        std::fs::write(t.join("odd"), vec![7u8; 4097]).unwrap();
        std::fs::hard_link(t.join("a/b/f"), t.join("link")).unwrap();
        std::os::unix::fs::symlink("a/b/f", t.join("sym")).unwrap();
        let mut out = Vec::new();
        write_newc(&t, &mut out, &|_| false).unwrap();
        let x = d.path().join("x");
        std::fs::create_dir(&x).unwrap();
        let mut c = std::process::Command::new("cpio")
            .args(["-idm", "--quiet", "--no-absolute-filenames"])
            .current_dir(&x)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin.take().unwrap().write_all(&out).unwrap();
        assert!(c.wait().unwrap().success());
        assert_eq!(std::fs::read(x.join("a/b/f")).unwrap(), b"hello");
        assert_eq!(std::fs::read(x.join("link")).unwrap(), b"hello");
        assert_eq!(std::fs::read(x.join("odd")).unwrap(), vec![7u8; 4097]);
        assert_eq!(
            std::fs::read_link(x.join("sym")).unwrap(),
            Path::new("a/b/f")
        );
        use std::os::unix::fs::MetadataExt;
        assert_eq!(
            std::fs::metadata(x.join("link")).unwrap().ino(),
            std::fs::metadata(x.join("a/b/f")).unwrap().ino()
        );
    }
}
