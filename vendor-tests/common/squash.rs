//! Squashfs outputs (issue 17) judged against the tar of the same build:
//! the tar's entries read by dibr's own tar reader (data skipped), as
//! `unsquashfs -lln`-style rows (`squashfs_output`), and compared with a
//! squashfs the kernel mounted (`debian_image`): each entry's `lstat`
//! (type, mode with setuid/setgid/sticky, owner, size, mtime, device
//! numbers, symlink target), hard-link groups by inode and link count, and
//! every extended attribute (`security.capability` of a Debian tree) as
//! getfattr reads it through the kernel's squashfs xattr code.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use dibr::tarstream::TarReader;
use dibr::tree::{Entry, EntryKind, FileData};

use super::*;

/// (type char, mode bits, owner "u/g", size or "maj,min" or "" for
/// directories, "YYYY-MM-DD HH:MM", symlink target).
pub type Row = (char, u32, String, String, String, String);

/// A time as `unsquashfs -lln` prints it (UTC, to the minute).
pub fn minute(secs: i64) -> String {
    let (d, r) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, day) = dibr::units::civil_from_days(d);
    format!(
        "{y:04}-{m:02}-{day:02} {:02}:{:02}",
        r / 3600,
        r % 3600 / 60
    )
}

/// Every entry of a tar, in archive order, its data skipped.
pub fn tar_entries(p: &Path) -> Vec<Entry> {
    let mut r = TarReader::new(fs::File::open(p).unwrap_or_else(|e| panic!("{p:?}: {e}")));
    let mut all = Vec::new();
    let mut sink = vec![0u8; 1 << 16];
    while let Some(e) = r.next_entry().unwrap() {
        while r.read(&mut sink).unwrap() > 0 {}
        all.push(e);
    }
    all
}

/// The tar's entries as rows; hard links take their target's row.
pub fn tar_rows(p: &Path) -> BTreeMap<String, Row> {
    let mut m: BTreeMap<String, Row> = BTreeMap::new();
    for e in tar_entries(p) {
        let path = String::from_utf8_lossy(&e.path).into_owned();
        let owner = format!("{}/{}", e.uid, e.gid);
        let t = minute(e.mtime.secs);
        let row = match &e.kind {
            EntryKind::File => ('-', e.mode, owner, e.size.to_string(), t, String::new()),
            EntryKind::Dir => ('d', e.mode, owner, String::new(), t, String::new()),
            EntryKind::Symlink(to) => {
                let to = String::from_utf8_lossy(to).into_owned();
                ('l', 0o777, owner, to.len().to_string(), t, to)
            }
            EntryKind::HardLink(to) => m[&String::from_utf8_lossy(to).into_owned()].clone(),
            EntryKind::CharDev { major, minor } => (
                'c',
                e.mode,
                owner,
                format!("{major},{minor}"),
                t,
                String::new(),
            ),
            EntryKind::BlockDev { major, minor } => (
                'b',
                e.mode,
                owner,
                format!("{major},{minor}"),
                t,
                String::new(),
            ),
            EntryKind::Fifo => ('p', e.mode, owner, "0".into(), t, String::new()),
            EntryKind::Socket => continue,
        };
        m.insert(path, row);
    }
    m
}

/// An entry as one line: "TYPE MODE UID/GID SIZE MTIME -> TARGET" (mode
/// and size left out where squashfs has none of its own: a symlink's mode,
/// a directory's size).
fn entry_line(e: &Entry) -> String {
    let (t, size, to) = match &e.kind {
        EntryKind::File => ('-', e.size.to_string(), String::new()),
        EntryKind::Dir => ('d', String::new(), String::new()),
        EntryKind::Symlink(to) => ('l', String::new(), String::from_utf8_lossy(to).into()),
        EntryKind::CharDev { major, minor } => ('c', format!("{major},{minor}"), String::new()),
        EntryKind::BlockDev { major, minor } => ('b', format!("{major},{minor}"), String::new()),
        EntryKind::Fifo => ('p', String::new(), String::new()),
        EntryKind::Socket | EntryKind::HardLink(_) => ('?', String::new(), String::new()),
    };
    let mode = if t == 'l' { 0 } else { e.mode & 0o7777 };
    format!(
        "{t} {mode:04o} {}/{} {size} {} -> {to}",
        e.uid, e.gid, e.mtime.secs
    )
}

/// A directory's line with its time replaced by `when` (the root's,
/// see [`mounted_matches_tar`]).
fn with_time(line: &str, when: &str) -> String {
    let mut f: Vec<&str> = line.split(' ').collect();
    // "d MODE U/G <empty size> TIME -> "
    if f.len() > 4 {
        f[4] = when;
    }
    f.join(" ")
}

/// The same line from the kernel's `lstat` (and `readlink`) of `p`.
fn lstat_line(p: &Path, m: &fs::Metadata) -> String {
    let ft = m.file_type();
    let dev = || {
        let r = m.rdev();
        let major = ((r >> 8) & 0xfff) | ((r >> 32) & !0xfff);
        let minor = (r & 0xff) | ((r >> 12) & !0xff);
        format!("{major},{minor}")
    };
    let (t, size, to) = if ft.is_file() {
        ('-', m.size().to_string(), String::new())
    } else if ft.is_dir() {
        ('d', String::new(), String::new())
    } else if ft.is_symlink() {
        let to = fs::read_link(p).unwrap();
        ('l', String::new(), to.to_string_lossy().into_owned())
    } else if ft.is_char_device() {
        ('c', dev(), String::new())
    } else if ft.is_block_device() {
        ('b', dev(), String::new())
    } else if ft.is_fifo() {
        ('p', String::new(), String::new())
    } else {
        ('?', String::new(), String::new())
    };
    let mode = if t == 'l' { 0 } else { m.mode() & 0o7777 };
    format!(
        "{t} {mode:04o} {}/{} {size} {} -> {to}",
        m.uid(),
        m.gid(),
        m.mtime()
    )
}

/// Every path under `root` (relative, as bytes; the root itself is "").
fn walk(root: &Path, rel: &[u8], out: &mut BTreeSet<Vec<u8>>) {
    out.insert(rel.to_vec());
    let here = root.join(OsStr::from_bytes(rel));
    if !fs::symlink_metadata(&here).unwrap().is_dir() {
        return;
    }
    for d in fs::read_dir(&here).unwrap() {
        let name = d.unwrap().file_name();
        let mut child = rel.to_vec();
        if !child.is_empty() {
            child.push(b'/');
        }
        child.extend_from_slice(name.as_bytes());
        walk(root, &child, out);
    }
}

/// The tar's xattrs in `xattrs_of_tree`'s form ("name=0xHEX;…", sorted)
/// by path; hard links carry their target's. `system.*` (POSIX ACLs) are
/// left out: squashfs stores only the user., trusted. and security.
/// namespaces (mksquashfs drops the rest; [`acl_entries`] counts them).
fn tar_xattrs(entries: &[Entry], by_path: &BTreeMap<&[u8], &Entry>) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for e in entries {
        let src = match &e.kind {
            EntryKind::HardLink(to) => by_path[to.as_slice()],
            _ => e,
        };
        if e.path.is_empty() {
            continue;
        }
        let mut v: Vec<String> = src
            .xattrs
            .iter()
            .filter(|(k, _)| !k.starts_with(b"system."))
            .map(|(k, v)| {
                let hex: String = v.iter().map(|b| format!("{b:02x}")).collect();
                format!("{}=0x{hex}", String::from_utf8_lossy(k))
            })
            .collect();
        if v.is_empty() {
            continue;
        }
        v.sort();
        m.insert(String::from_utf8_lossy(&e.path).into_owned(), v.join(";"));
    }
    m
}

/// The tar's entries with POSIX ACLs (`system.posix_acl_*`), which a
/// squashfs cannot hold.
fn acl_entries(entries: &[Entry]) -> Vec<String> {
    entries
        .iter()
        .filter(|e| e.xattrs.iter().any(|(k, _)| k.starts_with(b"system.")))
        .map(|e| format!("/{}", e.display_path()))
        .collect()
}

/// Every xattr under `root` as `xattrs_of_tree` gives them. A squashfs
/// made from a tar without xattrs stores no xattr table, and the kernel
/// answers listxattr with EOPNOTSUPP there: read as "none" (a tar with
/// xattrs then differs from the mount, as it should).
fn mounted_xattrs(root: &Path) -> BTreeMap<String, String> {
    let o = getfattr_tree(root);
    let err = String::from_utf8_lossy(&o.stderr);
    let other: Vec<&str> = err
        .lines()
        .filter(|l| !l.ends_with(": Operation not supported"))
        .collect();
    assert!(
        other.is_empty(),
        "getfattr on {root:?}:\n{}",
        other.join("\n")
    );
    xattr_map(root, &o.stdout)
}

/// The tree the kernel mounted at `root` against the tar it was made from:
/// the same paths, each with the tar's type, mode, owner, size, mtime,
/// device numbers and symlink target (a hard link: its target's, the same
/// inode, and the group's size as the link count), and the same xattrs
/// (but POSIX ACLs, which squashfs cannot store).
///
/// The root directory's time is mksquashfs's: 4.5.1 ignores `-root-time`
/// with `-tar` and gives the root the time it ran, or `SOURCE_DATE_EPOCH`
/// when that is set (which the capture gave the tar's root too). So
/// `epoch` `Some`: the mounted root's time must be the epoch; `None` leaves
/// the root's time out. Panics listing the differences; returns the number of
/// entries.
pub fn mounted_matches_tar(test: &str, tar: &Path, root: &Path, epoch: Option<i64>) -> usize {
    let entries: Vec<Entry> = tar_entries(tar)
        .into_iter()
        .filter(|e| e.kind != EntryKind::Socket)
        .collect();
    let by_path: BTreeMap<&[u8], &Entry> = entries.iter().map(|e| (&e.path[..], e)).collect();
    let mut names: BTreeMap<&[u8], u64> = BTreeMap::new();
    for e in &entries {
        let target = match &e.kind {
            EntryKind::HardLink(to) => to.as_slice(),
            _ => &e.path[..],
        };
        *names.entry(target).or_default() += 1;
    }
    let mut diffs = Vec::new();
    for e in &entries {
        let shown = String::from_utf8_lossy(&e.path).into_owned();
        let p = root.join(OsStr::from_bytes(&e.path));
        let Ok(m) = fs::symlink_metadata(&p) else {
            diffs.push(format!("/{shown}: not in the mounted squashfs"));
            continue;
        };
        let (src, target) = match &e.kind {
            EntryKind::HardLink(to) => (by_path[to.as_slice()], to.as_slice()),
            _ => (e, &e.path[..]),
        };
        let (mut want, mut got) = (entry_line(src), lstat_line(&p, &m));
        if e.path.is_empty() {
            // The root: the epoch, or any time (see above).
            match epoch {
                Some(t) => want = with_time(&want, &t.to_string()),
                None => (want, got) = (with_time(&want, "*"), with_time(&got, "*")),
            }
        }
        if want != got {
            diffs.push(format!("/{shown}: tar {want:?}, kernel {got:?}"));
        }
        if src.kind == EntryKind::File && m.nlink() != names[target] {
            diffs.push(format!(
                "/{shown}: {} names in the tar, link count {}",
                names[target],
                m.nlink()
            ));
        }
        if target != &e.path[..] {
            let t = fs::symlink_metadata(root.join(OsStr::from_bytes(target)));
            if t.map(|t| t.ino()).ok() != Some(m.ino()) {
                diffs.push(format!("/{shown}: not the inode of its hard-link target"));
            }
        }
    }
    let mut seen = BTreeSet::new();
    walk(root, b"", &mut seen);
    for p in seen.iter().filter(|p| !by_path.contains_key(p.as_slice())) {
        diffs.push(format!(
            "/{}: only in the squashfs",
            String::from_utf8_lossy(p)
        ));
    }
    let want_x = tar_xattrs(&entries, &by_path);
    let got_x = mounted_xattrs(root);
    for p in want_x.keys().chain(got_x.keys()).collect::<BTreeSet<_>>() {
        if want_x.get(p) != got_x.get(p) {
            diffs.push(format!(
                "/{p}: xattrs tar {:?}, kernel {:?}",
                want_x.get(p),
                got_x.get(p)
            ));
        }
    }
    assert!(
        diffs.is_empty(),
        "{test}: the mounted squashfs differs from the tar ({} of {} entries):\n{}",
        diffs.len(),
        entries.len(),
        diffs.join("\n")
    );
    let caps = want_x
        .values()
        .filter(|v| v.contains("security.capability"))
        .count();
    println!(
        "{test}: the kernel's squashfs equals the tar: {} entries, {caps} with security.capability; POSIX ACLs not in the squashfs: {:?}",
        entries.len(),
        acl_entries(&entries)
    );
    entries.len()
}
