//! The filesystem calls the unpacker makes, all relative to an open
//! directory of the target tree, never through host paths.
//!
//! Parent directories are opened with `openat2(…, RESOLVE_IN_ROOT)`
//! (openat2(2), Linux 5.6): a symlink in the tree — `/lib -> usr/lib`, or a
//! hostile `/etc -> /etc` — resolves as it would inside a chroot of the
//! target, so no archive entry can write outside the tree. The entry itself
//! is created with the `*at` calls and `O_NOFOLLOW`/`AT_SYMLINK_NOFOLLOW`.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};

use rustix::fs::{
    self as rfs, AtFlags, FileType, Mode, OFlags, ResolveFlags, Timespec, Timestamps, XattrFlags,
};

use crate::tree::Timestamp;

/// An open directory of the target tree.
pub type Dir = OwnedFd;

fn ioe(e: rustix::io::Errno) -> io::Error {
    io::Error::from_raw_os_error(e.raw_os_error())
}

fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC
}

/// Open `root` itself.
pub fn open_root(root: &std::path::Path) -> io::Result<Dir> {
    rfs::open(root, dir_flags(), Mode::empty()).map_err(ioe)
}

/// Open directory `rel` (normalised, `/`-separated, empty = the root) of the
/// tree as if `root` were `/`. With `create`, missing components are made
/// (mode 0755, owned by the caller) the way `tar` makes them.
pub fn open_dir_in(root: &Dir, rel: &[u8], create: bool) -> io::Result<Dir> {
    if rel.is_empty() {
        return rfs::openat(root, c".", dir_flags(), Mode::empty()).map_err(ioe);
    }
    let resolve = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
    match rfs::openat2(root, rel, dir_flags(), Mode::empty(), resolve) {
        Ok(fd) => return Ok(fd),
        Err(e) if e == rustix::io::Errno::NOENT && create => {}
        Err(e) => return Err(ioe(e)),
    }
    // Walk down, making what is missing.
    let mut cur = rfs::openat(root, c".", dir_flags(), Mode::empty()).map_err(ioe)?;
    let mut prefix: Vec<u8> = Vec::new();
    for comp in rel.split(|&b| b == b'/') {
        if !prefix.is_empty() {
            prefix.push(b'/');
        }
        prefix.extend_from_slice(comp);
        cur = match rfs::openat2(root, &prefix[..], dir_flags(), Mode::empty(), resolve) {
            Ok(fd) => fd,
            Err(e) if e == rustix::io::Errno::NOENT => {
                match rfs::mkdirat(&cur, comp, Mode::from_raw_mode(0o755)) {
                    Ok(()) => {}
                    Err(e) if e == rustix::io::Errno::EXIST => {}
                    Err(e) => return Err(ioe(e)),
                }
                rfs::openat2(root, &prefix[..], dir_flags(), Mode::empty(), resolve).map_err(ioe)?
            }
            Err(e) => return Err(ioe(e)),
        };
    }
    Ok(cur)
}

/// What is at `name` in `dir`, without following a symlink.
pub fn kind_at(dir: &Dir, name: &[u8]) -> io::Result<Option<FileType>> {
    match rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(FileType::from_raw_mode(st.st_mode))),
        Err(e) if e == rustix::io::Errno::NOENT => Ok(None),
        Err(e) => Err(ioe(e)),
    }
}

/// Remove `name` in `dir`, recursively if it is a directory (symlinks are
/// removed, never followed).
pub fn remove_at(dir: &Dir, name: &[u8]) -> io::Result<()> {
    match kind_at(dir, name)? {
        None => Ok(()),
        Some(FileType::Directory) => {
            let sub = rfs::openat(dir, name, dir_flags() | OFlags::NOFOLLOW, Mode::empty())
                .map_err(ioe)?;
            clear_dir(&sub, |_| false)?;
            rfs::unlinkat(dir, name, AtFlags::REMOVEDIR).map_err(ioe)
        }
        Some(_) => rfs::unlinkat(dir, name, AtFlags::empty()).map_err(ioe),
    }
}

/// Remove every child of `dir` for which `keep(name)` is false.
pub fn clear_dir(dir: &Dir, keep: impl Fn(&[u8]) -> bool) -> io::Result<()> {
    let dup = rfs::openat(dir, c".", dir_flags(), Mode::empty()).map_err(ioe)?;
    let mut names = Vec::new();
    let it = rfs::Dir::new(dup).map_err(ioe)?;
    for ent in it {
        let ent = ent.map_err(ioe)?;
        let n = ent.file_name().to_bytes();
        if n == b"." || n == b".." || keep(n) {
            continue;
        }
        names.push(n.to_vec());
    }
    for n in names {
        remove_at(dir, &n)?;
    }
    Ok(())
}

pub fn mkdir_at(dir: &Dir, name: &[u8]) -> io::Result<()> {
    rfs::mkdirat(dir, name, Mode::from_raw_mode(0o700)).map_err(ioe)
}

pub fn open_subdir(dir: &Dir, name: &[u8]) -> io::Result<Dir> {
    rfs::openat(dir, name, dir_flags() | OFlags::NOFOLLOW, Mode::empty()).map_err(ioe)
}

/// A new regular file (fails if anything is at `name`).
pub fn create_file(dir: &Dir, name: &[u8]) -> io::Result<File> {
    let fd = rfs::openat(
        dir,
        name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
    .map_err(ioe)?;
    Ok(File::from(fd))
}

pub fn symlink_at(target: &[u8], dir: &Dir, name: &[u8]) -> io::Result<()> {
    rfs::symlinkat(target, dir, name).map_err(ioe)
}

pub fn link_at(from_dir: &Dir, from: &[u8], dir: &Dir, name: &[u8]) -> io::Result<()> {
    rfs::linkat(from_dir, from, dir, name, AtFlags::empty()).map_err(ioe)
}

pub fn mkfifo_at(dir: &Dir, name: &[u8]) -> io::Result<()> {
    rfs::mknodat(dir, name, FileType::Fifo, Mode::from_raw_mode(0o600), 0).map_err(ioe)
}

/// Owner of `name` in `dir` (a symlink itself, not its target).
pub fn chown_at(dir: &Dir, name: &[u8], uid: u32, gid: u32) -> io::Result<()> {
    // SAFETY-free: ids are plain numbers; -1 is never passed (u32::MAX would
    // mean "unchanged" to the kernel, so refuse it).
    if uid == u32::MAX || gid == u32::MAX {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    rfs::chownat(
        dir,
        name,
        Some(rfs::Uid::from_raw(uid)),
        Some(rfs::Gid::from_raw(gid)),
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(ioe)
}

pub fn fchown(fd: impl AsFd, uid: u32, gid: u32) -> io::Result<()> {
    if uid == u32::MAX || gid == u32::MAX {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    rfs::fchown(
        fd,
        Some(rfs::Uid::from_raw(uid)),
        Some(rfs::Gid::from_raw(gid)),
    )
    .map_err(ioe)
}

pub fn fchmod(fd: impl AsFd, mode: u32) -> io::Result<()> {
    rfs::fchmod(fd, Mode::from_raw_mode(mode & 0o7777)).map_err(ioe)
}

pub fn chmod_at(dir: &Dir, name: &[u8], mode: u32) -> io::Result<()> {
    rfs::chmodat(
        dir,
        name,
        Mode::from_raw_mode(mode & 0o7777),
        AtFlags::empty(),
    )
    .map_err(ioe)
}

pub fn fsetxattr(fd: impl AsFd, name: &[u8], value: &[u8]) -> io::Result<()> {
    rfs::fsetxattr(fd, name, value, XattrFlags::empty()).map_err(ioe)
}

fn ts(t: Timestamp) -> Timespec {
    Timespec {
        tv_sec: t.secs,
        tv_nsec: t.nsec.into(),
    }
}

/// Access and modification time of `name` in `dir` (symlinks themselves).
pub fn set_times_at(dir: &Dir, name: &[u8], atime: Timestamp, mtime: Timestamp) -> io::Result<()> {
    let t = Timestamps {
        last_access: ts(atime),
        last_modification: ts(mtime),
    };
    rfs::utimensat(dir, name, &t, AtFlags::SYMLINK_NOFOLLOW).map_err(ioe)
}

pub fn set_times(fd: impl AsFd, atime: Timestamp, mtime: Timestamp) -> io::Result<()> {
    let t = Timestamps {
        last_access: ts(atime),
        last_modification: ts(mtime),
    };
    rfs::futimens(fd, &t).map_err(ioe)
}
