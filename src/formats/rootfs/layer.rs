//! Applying one tar stream (a whole root filesystem, or one layer of a
//! container image) to the target tree.
//!
//! Layer semantics follow the OCI image spec (image-spec `layer.md`,
//! "Whiteouts"): in a layer, `DIR/.wh.NAME` deletes `DIR/NAME` of the layers
//! below and `DIR/.wh..wh..opq` empties `DIR` of everything the layers below
//! put there; both apply to lower layers only, so entries of the same layer
//! are kept whatever their order in the tar. An entry replaces whatever is at
//! its path, except that a directory over a directory only updates its
//! metadata (tar's and the container runtimes' behaviour).
//!
//! Ownership and modes are applied as stored (numeric ids: the archive's own
//! view, which inside dibr's namespace is the image's), extended attributes
//! too, except `security.selinux` (a label of the build host's policy, which
//! DIB also drops with `--xattrs-exclude=security.selinux`). Character and
//! block devices are skipped: an unprivileged build cannot make them, and
//! dibr synthesises `/dev` when it captures the tree.

use std::collections::HashSet;
use std::io::{self, Seek, SeekFrom, Write};

use super::fsops::{self, Dir};
use super::{Report, UnpackError};
use crate::tarstream::{TarReader, TarSource};
use crate::tree::{display_path, Entry, EntryKind, FileData, Timestamp};

const WHITEOUT: &[u8] = b".wh.";
const OPAQUE: &[u8] = b".wh..wh..opq";

/// Options of one application.
pub struct Apply<'a> {
    pub root: &'a Dir,
    /// Interpret `.wh.` entries (container layers); off for plain tarballs,
    /// where such a name is just a file.
    pub whiteouts: bool,
    /// Set owners as stored (off only when the caller cannot, in tests run
    /// by an ordinary user outside a namespace).
    pub owners: bool,
    /// For messages: "rootfs.tar.xz" or "layer 2 (sha256:…)".
    pub what: String,
}

/// Split a normalised path into parent and last component.
fn split(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&[][..], path),
    }
}

struct State<'a> {
    opts: &'a Apply<'a>,
    /// Paths this layer created (whiteouts spare them).
    created: HashSet<Vec<u8>>,
    /// Directories whose times are set once the layer is complete (adding
    /// children changes a directory's mtime).
    dir_times: Vec<(Vec<u8>, Timestamp, Timestamp)>,
    cache: ParentCache,
    buf: Vec<u8>,
}

/// The last parent directory opened, reused for its siblings.
struct ParentCache(Option<(Vec<u8>, Dir)>);

impl ParentCache {
    fn get(&mut self, opts: &Apply<'_>, e: &Entry, parent: &[u8]) -> Result<&Dir, UnpackError> {
        let hit = matches!(&self.0, Some((p, _)) if p == parent);
        if !hit {
            let fd = fsops::open_dir_in(opts.root, parent, true)
                .map_err(|s| err(opts, e, "opening its parent directory", s))?;
            self.0 = Some((parent.to_vec(), fd));
        }
        Ok(&self.0.as_ref().expect("just set").1)
    }
}

fn err(opts: &Apply<'_>, e: &Entry, action: &str, source: io::Error) -> UnpackError {
    UnpackError::Entry {
        what: opts.what.clone(),
        path: e.display_path(),
        action: action.to_string(),
        source,
    }
}

fn owner_err(opts: &Apply<'_>, e: &Entry, source: io::Error) -> UnpackError {
    if source.raw_os_error() == Some(libc::EINVAL) {
        UnpackError::Unmapped {
            what: opts.what.clone(),
            path: e.display_path(),
            uid: e.uid,
            gid: e.gid,
        }
    } else {
        err(opts, e, "setting its owner", source)
    }
}

/// Apply every entry of `rd` to the tree.
pub fn apply<R: TarSource>(
    rd: &mut TarReader<R>,
    opts: &Apply<'_>,
    report: &mut Report,
) -> Result<(), UnpackError> {
    apply_entries(rd, opts, report, Vec::new())
}

/// As [`apply`], with entries already taken from `rd` applied first.
pub fn apply_entries<R: TarSource>(
    rd: &mut TarReader<R>,
    opts: &Apply<'_>,
    report: &mut Report,
    first: Vec<Entry>,
) -> Result<(), UnpackError> {
    let mut st = State {
        opts,
        created: HashSet::new(),
        dir_times: Vec::new(),
        cache: ParentCache(None),
        buf: vec![0; 256 * 1024],
    };
    for e in first {
        one(&mut st, rd, &e, report)?;
    }
    loop {
        let e = rd.next_entry().map_err(|source| UnpackError::Tar {
            what: opts.what.clone(),
            source,
        })?;
        let Some(e) = e else { break };
        one(&mut st, rd, &e, report)?;
    }
    // Directory times last, deepest first.
    st.cache.0 = None;
    for (path, atime, mtime) in st.dir_times.iter().rev() {
        let (parent, name) = split(path);
        let r = if name.is_empty() {
            fsops::set_times(opts.root, *atime, *mtime)
        } else {
            fsops::open_dir_in(opts.root, parent, false)
                .and_then(|d| fsops::set_times_at(&d, name, *atime, *mtime))
        };
        r.map_err(|source| UnpackError::Entry {
            what: opts.what.clone(),
            path: display_path(path),
            action: "setting its times".into(),
            source,
        })?;
    }
    Ok(())
}

/// One entry, as a table of contents: a whiteout applied, a device
/// skipped, the root's metadata set, or whatever is at the path replaced
/// by the entry.
fn one<R: TarSource>(
    st: &mut State<'_>,
    rd: &mut TarReader<R>,
    e: &Entry,
    report: &mut Report,
) -> Result<(), UnpackError> {
    let (parent, name) = split(&e.path);
    let opts = st.opts;
    if opts.whiteouts && name.starts_with(WHITEOUT) {
        whiteout(st, e, parent, name)?;
        report.whiteouts += 1;
        return Ok(());
    }
    match &e.kind {
        EntryKind::CharDev { .. } | EntryKind::BlockDev { .. } | EntryKind::Socket => {
            report.skipped.push(e.display_path());
            return Ok(());
        }
        _ => {}
    }
    report.entries += 1;
    let atime = e.atime.unwrap_or(e.mtime);
    if e.path.is_empty() {
        // The root directory itself: metadata only.
        if opts.owners {
            fsops::fchown(opts.root, e.uid, e.gid).map_err(|s| owner_err(opts, e, s))?;
        }
        fsops::fchmod(opts.root, e.mode).map_err(|s| err(opts, e, "setting its mode", s))?;
        st.dir_times.push((Vec::new(), atime, e.mtime));
        return Ok(());
    }
    let dir_over_dir = make_room(st, e, parent, name)?;
    st.created.insert(e.path.clone());
    let at = At {
        e,
        parent,
        name,
        atime,
    };
    match &e.kind {
        EntryKind::Dir => create_dir(st, &at, dir_over_dir, report),
        EntryKind::File => create_file(st, rd, &at, report),
        EntryKind::Symlink(target) => {
            let dir = st.cache.get(opts, e, parent)?;
            fsops::symlink_at(target, dir, name).map_err(|s| err(opts, e, "creating it", s))?;
            let dir = st.cache.get(opts, e, parent)?;
            if opts.owners {
                fsops::chown_at(dir, name, e.uid, e.gid).map_err(|s| owner_err(opts, e, s))?;
            }
            let dir = st.cache.get(opts, e, parent)?;
            fsops::set_times_at(dir, name, atime, e.mtime)
                .map_err(|s| err(opts, e, "setting its times", s))
        }
        EntryKind::HardLink(target) => {
            let (tp, tn) = split(target);
            let from = fsops::open_dir_in(opts.root, tp, false).map_err(|s| {
                err(
                    opts,
                    e,
                    &format!("linking to {} (not in the tree)", display_path(target)),
                    s,
                )
            })?;
            let dir = st.cache.get(opts, e, parent)?;
            fsops::link_at(&from, tn, dir, name)
                .map_err(|s| err(opts, e, &format!("linking to {}", display_path(target)), s))
        }
        EntryKind::Fifo => {
            let dir = st.cache.get(opts, e, parent)?;
            fsops::mkfifo_at(dir, name).map_err(|s| err(opts, e, "creating it", s))?;
            let dir = st.cache.get(opts, e, parent)?;
            if opts.owners {
                fsops::chown_at(dir, name, e.uid, e.gid).map_err(|s| owner_err(opts, e, s))?;
            }
            let dir = st.cache.get(opts, e, parent)?;
            fsops::chmod_at(dir, name, e.mode).map_err(|s| err(opts, e, "setting its mode", s))
        }
        EntryKind::CharDev { .. } | EntryKind::BlockDev { .. } | EntryKind::Socket => {
            unreachable!("skipped above")
        }
    }
}

/// Where an entry goes: its parent directory and name, and the atime it
/// gets (its mtime when the tar has none).
struct At<'e> {
    e: &'e Entry,
    parent: &'e [u8],
    name: &'e [u8],
    atime: Timestamp,
}

/// A whiteout entry `parent/name`: the opaque one empties `parent` of what
/// lower layers put there, `.wh.NAME` removes `NAME` unless this layer
/// made it.
fn whiteout(st: &mut State<'_>, e: &Entry, parent: &[u8], name: &[u8]) -> Result<(), UnpackError> {
    let opts = st.opts;
    let dir = st.cache.get(opts, e, parent)?;
    if name == OPAQUE {
        let created = &st.created;
        let mut prefix = parent.to_vec();
        if !prefix.is_empty() {
            prefix.push(b'/');
        }
        let keep = |child: &[u8]| {
            let mut p = prefix.clone();
            p.extend_from_slice(child);
            created.contains(&p)
        };
        fsops::clear_dir(dir, keep).map_err(|s| err(opts, e, "emptying (opaque whiteout)", s))?;
    } else {
        let victim = &name[WHITEOUT.len()..];
        let mut p = parent.to_vec();
        if !p.is_empty() {
            p.push(b'/');
        }
        p.extend_from_slice(victim);
        if !st.created.contains(&p) {
            fsops::remove_at(dir, victim).map_err(|s| err(opts, e, "removing (whiteout)", s))?;
        }
    }
    st.cache.0 = None;
    Ok(())
}

/// Whatever is at `parent/name` goes, unless directory meets directory
/// (then the entry only updates its metadata); returns whether it did.
fn make_room(
    st: &mut State<'_>,
    e: &Entry,
    parent: &[u8],
    name: &[u8],
) -> Result<bool, UnpackError> {
    let opts = st.opts;
    let existing = {
        let dir = st.cache.get(opts, e, parent)?;
        fsops::kind_at(dir, name).map_err(|s| err(opts, e, "looking at what is there", s))?
    };
    let dir_over_dir =
        e.kind == EntryKind::Dir && existing == Some(rustix::fs::FileType::Directory);
    if existing.is_some() && !dir_over_dir {
        let dir = st.cache.get(opts, e, parent)?;
        fsops::remove_at(dir, name).map_err(|s| err(opts, e, "replacing what is there", s))?;
        // A removed directory may be the cached parent of later entries.
        st.cache.0 = None;
    }
    Ok(dir_over_dir)
}

/// A directory entry: made (unless one is there), owner, mode and xattrs
/// set; its times wait until the layer is complete.
fn create_dir(
    st: &mut State<'_>,
    at: &At<'_>,
    dir_over_dir: bool,
    report: &mut Report,
) -> Result<(), UnpackError> {
    let (opts, e, name) = (st.opts, at.e, at.name);
    let dir = st.cache.get(opts, e, at.parent)?;
    if !dir_over_dir {
        fsops::mkdir_at(dir, name).map_err(|s| err(opts, e, "creating it", s))?;
    }
    let fd = fsops::open_subdir(dir, name).map_err(|s| err(opts, e, "opening it", s))?;
    if opts.owners {
        fsops::fchown(&fd, e.uid, e.gid).map_err(|s| owner_err(opts, e, s))?;
    }
    fsops::fchmod(&fd, e.mode).map_err(|s| err(opts, e, "setting its mode", s))?;
    set_xattrs(opts, e, &fd, report)?;
    st.dir_times.push((e.path.clone(), at.atime, e.mtime));
    Ok(())
}

/// A regular file: created, its data written from `rd`, then owner, mode,
/// xattrs and times.
fn create_file<R: TarSource>(
    st: &mut State<'_>,
    rd: &mut TarReader<R>,
    at: &At<'_>,
    report: &mut Report,
) -> Result<(), UnpackError> {
    let (opts, e) = (st.opts, at.e);
    let dir = st.cache.get(opts, e, at.parent)?;
    let mut f = fsops::create_file(dir, at.name).map_err(|s| err(opts, e, "creating it", s))?;
    let mut buf = std::mem::take(&mut st.buf);
    let r = write_data(rd, e, &mut f, &mut buf);
    st.buf = buf;
    r.map_err(|s| err(opts, e, "writing its data", s))?;
    if opts.owners {
        fsops::fchown(&f, e.uid, e.gid).map_err(|s| owner_err(opts, e, s))?;
    }
    // After chown, which clears setuid/setgid.
    fsops::fchmod(&f, e.mode).map_err(|s| err(opts, e, "setting its mode", s))?;
    set_xattrs(opts, e, &f, report)?;
    fsops::set_times(&f, at.atime, e.mtime).map_err(|s| err(opts, e, "setting its times", s))?;
    report.bytes += e.size;
    Ok(())
}

fn set_xattrs(
    opts: &Apply<'_>,
    e: &Entry,
    fd: &impl std::os::fd::AsFd,
    report: &mut Report,
) -> Result<(), UnpackError> {
    for (k, v) in &e.xattrs {
        if k == b"security.selinux" {
            continue;
        }
        if let Err(s) = fsops::fsetxattr(fd, k, v) {
            // Filesystems without user xattrs (tmpfs before 6.6) or a
            // namespace that may not set trusted.*: say so, keep going.
            if matches!(s.raw_os_error(), Some(libc::EOPNOTSUPP) | Some(libc::EPERM))
                && !k.starts_with(b"security.capability")
            {
                report.xattrs_skipped += 1;
                continue;
            }
            return Err(err(
                opts,
                e,
                &format!("setting extended attribute {}", String::from_utf8_lossy(k)),
                s,
            ));
        }
    }
    Ok(())
}

/// Copy the entry's data segments to their offsets; holes stay holes.
fn write_data<R: TarSource>(
    rd: &mut TarReader<R>,
    e: &Entry,
    f: &mut std::fs::File,
    buf: &mut [u8],
) -> io::Result<()> {
    for seg in &e.segments {
        f.seek(SeekFrom::Start(seg.offset))?;
        let mut left = seg.len;
        while left > 0 {
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = FileData::read(rd, &mut buf[..want])?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "archive ended inside the file's data",
                ));
            }
            f.write_all(&buf[..n])?;
            left -= n as u64;
        }
    }
    f.set_len(e.size)?;
    Ok(())
}
