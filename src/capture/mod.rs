//! Capturing a finished image tree as a POSIX pax tar stream.
//!
//! After the last build phase dibr streams the tree out of its user
//! namespace as tar; that tarball is the one interface between the sandbox
//! and the assembler (`dibr mkfs` reads it back with [`crate::tarstream`]).
//! The capture runs inside the namespace, so it records the in-namespace
//! numeric owners, but it is plain userspace file reading: the tree is
//! walked with [`crate::source::dir::DirSource`] (sorted, hard links to the
//! first path, xattrs, SEEK_DATA/SEEK_HOLE) and written with
//! [`crate::tarstream::writer`]. Nothing is created on the host: devices
//! become headers.
//!
//! What goes into the archive:
//! - numeric uid/gid only (no user or group names), mode incl.
//!   setuid/setgid/sticky;
//! - mtime to the nanosecond in a PAX `mtime` record when it has a
//!   fraction or lies outside the ustar range (before 1970, after 2242);
//!   atime and ctime are not recorded;
//! - every xattr as `SCHILY.xattr.NAME` (binary values, sorted by name),
//!   including `security.capability` and the POSIX ACLs
//!   `system.posix_acl_access` / `system.posix_acl_default` in their VFS
//!   form, which GNU tar `--xattrs --xattrs-include='*'` restores, and
//!   the ACLs also as `SCHILY.acl.access`/`SCHILY.acl.default` text (as GNU
//!   tar writes them; its `--acls` extraction needs them);
//! - hard links as link members to the first path, symlinks, char/block
//!   devices, fifos; sockets are skipped (counted in [`CaptureStats`]);
//! - files with holes as GNU PAX sparse 1.0 (map at the start of the data);
//! - long names and link targets as PAX `path` / `linkpath`.
//!
//! Members appear in walk order: parents before children, names sorted
//! bytewise per directory. The root is the member `./`.

pub mod output;

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::source::dir::{DirError, DirSource};
use crate::source::{Source, SourceError};
use crate::tarstream::writer::{self as tar_writer, typeflag, Member, SparseInfo, TarWriter};
use crate::tree::{normalize_path, Entry, EntryKind, FileData, Timestamp};

pub use output::{write_output, write_output_with, OutputType};

/// Above this many data segments a file is written dense (holes as zeros)
/// instead of as a sparse member; keeps the map far below what readers
/// accept (dibr's reader: 4 Mi segments, 64 MiB of map).
const MAX_SPARSE_SEGMENTS: usize = 1 << 20;

#[derive(Clone, Debug, Default)]
pub struct CaptureOptions {
    /// Clamp every mtime to this (seconds since the epoch) and make the
    /// archive reproducible.
    pub source_date_epoch: Option<i64>,
    /// Replace whatever the tree's `dev/` contains (inside the sandbox
    /// `/dev` is a mount, not part of the image) with the standard device
    /// entries, as headers only: null, zero, full, random, urandom, tty,
    /// console, ptmx, the `pts` and `shm` directories and the
    /// `fd`/`stdin`/`stdout`/`stderr` symlinks into `/proc/self/fd`.
    pub synthesize_dev: bool,
    /// Paths relative to the source left out with everything below them
    /// (`proc`, `tmp/in_target.d`); `DIR/*` leaves out only the contents
    /// and keeps the directory itself (`proc/*`, `sys/*`).
    pub exclude: Vec<PathBuf>,
    /// Skip the output's final fsync (`DIBR_NO_FSYNC`, read by the CLI).
    pub no_fsync: bool,
}

/// What a capture wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CaptureStats {
    /// Members written (not counting PAX extension headers).
    pub entries: u64,
    pub files: u64,
    /// Of `files`, written as sparse members.
    pub sparse_files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub hardlinks: u64,
    pub devices: u64,
    pub fifos: u64,
    /// Sockets found in the tree and left out (tar cannot hold them).
    pub sockets_skipped: u64,
    /// Of `entries`, synthesized `/dev` members.
    pub synthesized_dev: u64,
    /// File data bytes stored (holes excluded).
    pub data_bytes: u64,
    /// Size of the uncompressed archive.
    pub archive_bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error(transparent)]
    Walk(#[from] DirError),
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: {detail}")]
    Changed { path: PathBuf, detail: String },
    #[error("writing the archive (at member {member}): {source}")]
    Write {
        member: String,
        #[source]
        source: io::Error,
    },
    #[error("exclude path {pattern:?}: {detail}")]
    BadExclude { pattern: PathBuf, detail: String },
    /// The input archive (a tar being captured instead of a directory).
    #[error(transparent)]
    Tar(#[from] crate::tarstream::TarError),
    #[error("{path}: {source}")]
    Output {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// One parsed exclusion: a normalised path, and whether only what is below
/// it is left out.
#[derive(Clone, Debug)]
struct Exclude {
    path: Vec<u8>,
    contents_only: bool,
}

impl Exclude {
    fn matches(&self, p: &[u8]) -> bool {
        if self.path.is_empty() {
            // "*": everything below the root.
            return !p.is_empty();
        }
        let below =
            p.len() > self.path.len() && p.starts_with(&self.path) && p[self.path.len()] == b'/';
        below || (!self.contents_only && p == self.path.as_slice())
    }
}

fn parse_excludes(opts: &CaptureOptions) -> Result<Vec<Exclude>, CaptureError> {
    use std::os::unix::ffi::OsStrExt;
    let mut out = Vec::new();
    for pat in &opts.exclude {
        let raw = pat.as_os_str().as_bytes();
        let (body, contents_only) = match raw.strip_suffix(b"/*") {
            Some(b) => (b, true),
            None if raw == b"*" => (&b""[..], true),
            None => (raw, false),
        };
        let bad = |detail: String| CaptureError::BadExclude {
            pattern: pat.clone(),
            detail,
        };
        let path = normalize_path(body).map_err(|e| bad(e.to_string()))?;
        if path.is_empty() && !contents_only {
            return Err(bad("excludes the whole tree".into()));
        }
        out.push(Exclude {
            path,
            contents_only,
        });
    }
    if opts.synthesize_dev {
        out.push(Exclude {
            path: b"dev".to_vec(),
            contents_only: true,
        });
    }
    Ok(out)
}

/// Display form of a member path for messages.
fn shown(p: &[u8]) -> String {
    crate::tree::display_path(p)
}

struct Capture<'o, W: Write> {
    tw: TarWriter<W>,
    opts: &'o CaptureOptions,
    stats: CaptureStats,
    buf: Vec<u8>,
    root: PathBuf,
}

impl<W: Write> Capture<'_, W> {
    fn clamp(&self, t: Timestamp) -> Timestamp {
        match self.opts.source_date_epoch {
            Some(sde) if t.secs >= sde => Timestamp::new(sde, 0),
            _ => t,
        }
    }

    fn wr<T>(&self, path: &[u8], r: io::Result<T>) -> Result<T, CaptureError> {
        r.map_err(|source| CaptureError::Write {
            member: shown(path),
            source,
        })
    }

    fn abs(&self, rel: &[u8]) -> PathBuf {
        use std::os::unix::ffi::OsStrExt;
        self.root.join(std::ffi::OsStr::from_bytes(rel))
    }

    /// Write one header-only member (no data).
    #[allow(clippy::too_many_arguments)]
    fn simple(
        &mut self,
        path: &[u8],
        typeflag: u8,
        mode: u32,
        owner: (u32, u32),
        mtime: Timestamp,
        linkname: &[u8],
        dev: (u32, u32),
        xattrs: &[(Vec<u8>, Vec<u8>)],
    ) -> Result<(), CaptureError> {
        let name = member_name(path, typeflag == typeflag::DIR);
        let m = Member {
            name: &name,
            typeflag,
            mode,
            uid: owner.0,
            gid: owner.1,
            mtime: self.clamp(mtime),
            size: 0,
            linkname,
            dev,
            xattrs,
            sparse: None,
        };
        let r = self.tw.header(&m);
        self.wr(path, r)?;
        self.stats.entries += 1;
        Ok(())
    }

    fn entry(&mut self, e: &Entry, data: &mut dyn FileData) -> Result<(), CaptureError> {
        // Every non-file member is one header: its type flag, link target,
        // device numbers, and the counter it adds to.
        let (tf, link, dev): (u8, &[u8], (u32, u32)) = match &e.kind {
            EntryKind::File => return self.file(e, data),
            EntryKind::Socket => {
                self.stats.sockets_skipped += 1;
                return Ok(());
            }
            EntryKind::Dir => (typeflag::DIR, b"", (0, 0)),
            EntryKind::Symlink(t) => (typeflag::SYMLINK, t, (0, 0)),
            EntryKind::HardLink(t) => (typeflag::HARDLINK, t, (0, 0)),
            EntryKind::CharDev { major, minor } => (typeflag::CHAR, b"", (*major, *minor)),
            EntryKind::BlockDev { major, minor } => (typeflag::BLOCK, b"", (*major, *minor)),
            EntryKind::Fifo => (typeflag::FIFO, b"", (0, 0)),
        };
        self.simple(
            &e.path,
            tf,
            e.mode,
            (e.uid, e.gid),
            e.mtime,
            link,
            dev,
            &e.xattrs,
        )?;
        let counter = match &e.kind {
            EntryKind::Dir => &mut self.stats.dirs,
            EntryKind::Symlink(_) => &mut self.stats.symlinks,
            EntryKind::HardLink(_) => &mut self.stats.hardlinks,
            EntryKind::Fifo => &mut self.stats.fifos,
            _ => &mut self.stats.devices,
        };
        *counter += 1;
        Ok(())
    }

    fn file(&mut self, e: &Entry, data: &mut dyn FileData) -> Result<(), CaptureError> {
        let dense = e.segments.is_empty() && e.size == 0
            || e.segments.len() == 1 && e.segments[0].offset == 0 && e.segments[0].len == e.size;
        let sparse = !dense && e.segments.len() <= MAX_SPARSE_SEGMENTS;
        let data_total: u64 = e.segments.iter().map(|s| s.len).sum();
        let name = member_name(&e.path, false);
        let stand_in;
        let map;
        let (hdr_name, stored, sparse_info): (&[u8], u64, Option<SparseInfo>) = if sparse {
            let mut pairs: Vec<(u64, u64)> = e.segments.iter().map(|s| (s.offset, s.len)).collect();
            // A trailing hole is marked with an empty segment at the end (as
            // GNU tar does; its extractor sets the size from it).
            if e.segments.last().is_none_or(|s| s.offset + s.len < e.size) {
                pairs.push((e.size, 0));
            }
            map = tar_writer::sparse_map_block(&pairs);
            stand_in = tar_writer::sparse_stand_in(&name);
            (
                &stand_in,
                map.len() as u64 + data_total,
                Some(SparseInfo {
                    real_name: &name,
                    realsize: e.size,
                }),
            )
        } else {
            map = Vec::new();
            (&name, e.size, None)
        };
        let m = Member {
            name: hdr_name,
            typeflag: typeflag::FILE,
            mode: e.mode,
            uid: e.uid,
            gid: e.gid,
            mtime: self.clamp(e.mtime),
            size: stored,
            linkname: b"",
            dev: (0, 0),
            xattrs: &e.xattrs,
            sparse: sparse_info,
        };
        let r = self.tw.header(&m);
        self.wr(&e.path, r)?;
        let r = self.tw.write_data(&map);
        self.wr(&e.path, r)?;
        // Data: segments in order; when written dense, holes as zeros.
        let mut pos = 0u64;
        for s in &e.segments {
            if !sparse {
                self.zeros(&e.path, s.offset - pos)?;
            }
            self.copy(e, data, s.len)?;
            pos = s.offset + s.len;
        }
        if !sparse {
            self.zeros(&e.path, e.size - pos)?;
        }
        let r = self.tw.pad(stored);
        self.wr(&e.path, r)?;
        self.stats.entries += 1;
        self.stats.files += 1;
        self.stats.sparse_files += sparse as u64;
        self.stats.data_bytes += data_total;
        Ok(())
    }

    fn zeros(&mut self, path: &[u8], mut n: u64) -> Result<(), CaptureError> {
        let z = [0u8; 64 << 10];
        while n > 0 {
            let k = n.min(z.len() as u64) as usize;
            let r = self.tw.write_data(&z[..k]);
            self.wr(path, r)?;
            n -= k as u64;
        }
        Ok(())
    }

    /// Copy exactly `len` bytes of the current file's data.
    fn copy(&mut self, e: &Entry, data: &mut dyn FileData, len: u64) -> Result<(), CaptureError> {
        let mut left = len;
        let mut buf = std::mem::take(&mut self.buf);
        let res = (|| {
            while left > 0 {
                let want = left.min(buf.len() as u64) as usize;
                let got = data
                    .read(&mut buf[..want])
                    .map_err(|source| CaptureError::Read {
                        path: self.abs(&e.path),
                        source,
                    })?;
                if got == 0 {
                    return Err(CaptureError::Changed {
                        path: self.abs(&e.path),
                        detail: format!(
                            "file shrank while being captured ({left} bytes of a data segment missing)"
                        ),
                    });
                }
                let r = self.tw.write_data(&buf[..got]);
                self.wr(&e.path, r)?;
                left -= got as u64;
            }
            Ok(())
        })();
        self.buf = buf;
        res
    }

    /// The standard `/dev` members; `dir` is the tree's own `dev` directory
    /// (written by the caller) or None, then a `dev/` member is made.
    fn synth_dev(&mut self, dir: Option<&Entry>) -> Result<(), CaptureError> {
        let mtime = match dir {
            Some(d) => self.clamp(d.mtime),
            None => Timestamp::new(self.opts.source_date_epoch.unwrap_or(0), 0),
        };
        let root = (0, 0);
        let before = self.stats.entries;
        if dir.is_none() {
            self.simple(b"dev", typeflag::DIR, 0o755, root, mtime, b"", (0, 0), &[])?;
        }
        for (name, kind) in DEV_ENTRIES {
            let mut path = b"dev/".to_vec();
            path.extend_from_slice(name.as_bytes());
            match *kind {
                Dev::Char(mode, major, minor) => self.simple(
                    &path,
                    typeflag::CHAR,
                    mode,
                    root,
                    mtime,
                    b"",
                    (major, minor),
                    &[],
                )?,
                Dev::Dir(mode) => {
                    self.simple(&path, typeflag::DIR, mode, root, mtime, b"", (0, 0), &[])?
                }
                Dev::Link(target) => self.simple(
                    &path,
                    typeflag::SYMLINK,
                    0o777,
                    root,
                    mtime,
                    target.as_bytes(),
                    (0, 0),
                    &[],
                )?,
            }
        }
        self.stats.synthesized_dev += self.stats.entries - before;
        Ok(())
    }
}

enum Dev {
    Char(u32, u32, u32),
    Dir(u32),
    Link(&'static str),
}

/// The synthesized `/dev`, sorted bytewise like the walk.
const DEV_ENTRIES: &[(&str, Dev)] = &[
    ("console", Dev::Char(0o600, 5, 1)),
    ("fd", Dev::Link("/proc/self/fd")),
    ("full", Dev::Char(0o666, 1, 7)),
    ("null", Dev::Char(0o666, 1, 3)),
    ("ptmx", Dev::Char(0o666, 5, 2)),
    ("pts", Dev::Dir(0o755)),
    ("random", Dev::Char(0o666, 1, 8)),
    ("shm", Dev::Dir(0o1777)),
    ("stderr", Dev::Link("/proc/self/fd/2")),
    ("stdin", Dev::Link("/proc/self/fd/0")),
    ("stdout", Dev::Link("/proc/self/fd/1")),
    ("tty", Dev::Char(0o666, 5, 0)),
    ("urandom", Dev::Char(0o666, 1, 9)),
    ("zero", Dev::Char(0o666, 1, 5)),
];

/// Archive name of a member: `./` for the root, a trailing `/` for
/// directories.
fn member_name(path: &[u8], dir: bool) -> Vec<u8> {
    if path.is_empty() {
        return b"./".to_vec();
    }
    let mut n = path.to_vec();
    if dir {
        n.push(b'/');
    }
    n
}

/// Write the tree under `src` to `out` as a pax tar stream (see the module
/// documentation for what is recorded).
pub fn write_tar(
    src: &Path,
    out: impl Write,
    opts: &CaptureOptions,
) -> Result<CaptureStats, CaptureError> {
    let excludes = parse_excludes(opts)?;
    let walk = DirSource::new(src)?.with_skip(Box::new(move |p: &[u8]| {
        excludes.iter().any(|x| x.matches(p))
    }));
    write_entries(&mut Source::Dir(walk), src, out, opts, None)
}

/// Re-encode a tar stream made by another archiver (GNU tar, reading the
/// tree through fakeroot in the sandbox's fakeroot mode) exactly as
/// [`write_tar`] would have written the tree: same excludes, /dev, member
/// encoding and clamped times. `real_owner` is the building user's
/// (uid, gid): fakeroot reports files it never saw chowned with their real
/// owner (or root), and in the faked world the real user owns nothing, so
/// those ids become 0 as the files would be in a build as root.
pub fn write_tar_from_stream(
    input: &Path,
    name: &Path,
    out: impl Write,
    opts: &CaptureOptions,
    real_owner: Option<(u32, u32)>,
) -> Result<CaptureStats, CaptureError> {
    let mut src = Source::open(input)?;
    write_entries(&mut src, name, out, opts, real_owner)
}

/// A source's error as the capture's own: the walk's or the archive's,
/// each with its source kept.
impl From<SourceError> for CaptureError {
    fn from(e: SourceError) -> CaptureError {
        match e {
            SourceError::Dir(d) => CaptureError::Walk(d),
            SourceError::Tar(t) => CaptureError::Tar(t),
        }
    }
}

/// The capture loop over any entry source: excluded entries dropped
/// (the directory walk never yields them), /dev synthesised in its sorted
/// place, owners remapped.
fn write_entries(
    src: &mut Source,
    root: &Path,
    out: impl Write,
    opts: &CaptureOptions,
    real_owner: Option<(u32, u32)>,
) -> Result<CaptureStats, CaptureError> {
    let excludes = parse_excludes(opts)?;
    let mut c = Capture {
        tw: TarWriter::new(out),
        opts,
        stats: CaptureStats::default(),
        buf: vec![0u8; 256 << 10],
        root: root.to_path_buf(),
    };
    let mut dev_pending = opts.synthesize_dev;
    while let Some(mut e) = src.next_entry()? {
        if excludes.iter().any(|x| x.matches(&e.path)) {
            continue;
        }
        if let Some((uid, gid)) = real_owner {
            if e.uid == uid {
                e.uid = 0;
            }
            if e.gid == gid {
                e.gid = 0;
            }
        }
        if dev_pending && !e.path.is_empty() {
            let top = e.path.split(|&b| b == b'/').next().unwrap_or(b"");
            if top == b"dev" {
                dev_pending = false;
                if e.kind == EntryKind::Dir {
                    c.entry(&e, src.data())?;
                    c.synth_dev(Some(&e))?;
                } else {
                    // A dev that is not a directory gives way to the real one.
                    c.synth_dev(None)?;
                }
                continue;
            }
            if top > &b"dev"[..] {
                dev_pending = false;
                c.synth_dev(None)?;
            }
        }
        c.entry(&e, src.data())?;
    }
    if dev_pending {
        c.synth_dev(None)?;
    }
    let r = c.tw.finish();
    c.wr(b"(end of archive)", r)?;
    c.stats.archive_bytes = c.tw.written();
    Ok(c.stats)
}

/// A tar stream fed entry by entry (the assembler's tar outputs: the tree
/// as it went into the filesystems, from any [`crate::source::Source`]),
/// with the same member encoding as [`write_tar`].
pub struct EntryTar<'o, W: Write> {
    c: Capture<'o, W>,
}

impl<'o, W: Write> EntryTar<'o, W> {
    /// `source` names the input in error messages.
    pub fn new(out: W, opts: &'o CaptureOptions, source: &Path) -> Self {
        EntryTar {
            c: Capture {
                tw: TarWriter::new(out),
                opts,
                stats: CaptureStats::default(),
                buf: vec![0u8; 256 << 10],
                root: source.to_path_buf(),
            },
        }
    }

    /// One member; a regular file's data is read from `data` now.
    pub fn add(&mut self, e: &Entry, data: &mut dyn FileData) -> Result<(), CaptureError> {
        self.c.entry(e, data)
    }

    /// The end-of-archive blocks.
    pub fn finish(mut self) -> Result<CaptureStats, CaptureError> {
        let r = self.c.tw.finish();
        self.c.wr(b"(end of archive)", r)?;
        self.c.stats.archive_bytes = self.c.tw.written();
        Ok(self.c.stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(p: &str, contents_only: bool) -> Exclude {
        Exclude {
            path: p.as_bytes().to_vec(),
            contents_only,
        }
    }

    #[test]
    fn exclude_matching() {
        let proc_ = ex("proc", false);
        assert!(proc_.matches(b"proc"));
        assert!(proc_.matches(b"proc/1/fd"));
        assert!(!proc_.matches(b"procfs"));
        assert!(!proc_.matches(b""));
        let dev = ex("dev", true);
        assert!(!dev.matches(b"dev"));
        assert!(dev.matches(b"dev/null"));
        let all = ex("", true);
        assert!(all.matches(b"x") && !all.matches(b""));
    }

    #[test]
    fn exclude_parsing() {
        let o = CaptureOptions {
            exclude: vec!["/proc".into(), "./sys/*".into(), "tmp/in_target.d/".into()],
            ..Default::default()
        };
        let x = parse_excludes(&o).unwrap();
        assert_eq!(x[0].path, b"proc");
        assert!(!x[0].contents_only);
        assert_eq!(x[1].path, b"sys");
        assert!(x[1].contents_only);
        assert_eq!(x[2].path, b"tmp/in_target.d");
        let bad = CaptureOptions {
            exclude: vec![".".into()],
            ..Default::default()
        };
        assert!(matches!(
            parse_excludes(&bad),
            Err(CaptureError::BadExclude { .. })
        ));
    }

    /// Names and link targets around the 100-byte ustar limit, a 0-byte
    /// file and a file that is all hole round-trip through dibr's reader.
    #[test]
    fn boundaries_round_trip() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("t");
        let mut want: Vec<(Vec<u8>, EntryKind, u64)> = Vec::new();
        for n in [98usize, 99, 100, 101] {
            let name = "f".repeat(n);
            std::fs::create_dir_all(&root).unwrap();
            std::fs::write(root.join(&name), b"x").unwrap();
            let dname = "d".repeat(n);
            std::fs::create_dir_all(root.join(&dname)).unwrap();
            let target = "t".repeat(n);
            let lname = format!("l{n}");
            std::os::unix::fs::symlink(&target, root.join(&lname)).unwrap();
            want.push((name.into_bytes(), EntryKind::File, 1));
            want.push((dname.into_bytes(), EntryKind::Dir, 0));
            want.push((
                lname.into_bytes(),
                EntryKind::Symlink(target.into_bytes()),
                0,
            ));
        }
        std::fs::write(root.join("empty"), b"").unwrap();
        want.push((b"empty".to_vec(), EntryKind::File, 0));
        let hole = std::fs::File::create(root.join("hole")).unwrap();
        hole.set_len(10 << 20).unwrap();
        want.push((b"hole".to_vec(), EntryKind::File, 10 << 20));
        want.sort_by(|a, b| a.0.cmp(&b.0));
        let mut tar = Vec::new();
        let stats = write_tar(&root, &mut tar, &CaptureOptions::default()).unwrap();
        assert_eq!(stats.archive_bytes, tar.len() as u64);
        assert_eq!(tar.len() % 512, 0);
        let mut rd = crate::tarstream::TarReader::new(&tar[..]);
        let mut got = Vec::new();
        while let Some(e) = rd.next_entry().unwrap() {
            if !e.path.is_empty() {
                if e.path == b"hole" {
                    assert!(e.segments.is_empty(), "{e:?}");
                }
                got.push((e.path, e.kind, e.size));
            }
        }
        assert_eq!(got, want);
    }

    #[test]
    fn dev_entries_sorted() {
        let names: Vec<&str> = DEV_ENTRIES.iter().map(|(n, _)| *n).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
    }
}
