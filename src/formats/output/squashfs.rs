//! squashfs outputs: `mksquashfs -tar` fed with the captured tree's tar,
//! so owners, modes, device numbers, hard links and xattrs (capabilities)
//! come from the tar's headers, never from a host filesystem (nothing is
//! unpacked). xz, as DIB's `mksquashfs … -comp xz`.
//!
//! mksquashfs (4.5.1 as Debian ships it) skips the tar's `./` entry and
//! gives the root directory the running user's owner, the current time
//! and mode 0777 whatever `-root-uid`/`-root-time` say: so the mode is
//! taken from the tar's root entry (`-root-mode`), an ordinary user runs
//! mksquashfs as root of its own user namespace (`unshare -r`, util-linux)
//! so that the root directory is owned 0:0, and `SOURCE_DATE_EPOCH` is
//! passed in its environment, which sets the root directory's and the
//! filesystem's time (the file times are the tar's, which the capture
//! already clamped). mksquashfs's output is reproducible (its default):
//! the same tar and epoch give the same bytes, as root or not. Without
//! an epoch the root directory's time is when mksquashfs ran. POSIX ACLs
//! (`system.posix_acl_*`) do not survive: squashfs stores only the
//! `user.`, `trusted.` and `security.` xattr namespaces.
//!
//! mksquashfs writes a hidden scratch file beside the output (removed on
//! error or interrupt); it is then copied into an unnamed file that
//! appears only when complete ([`AtomicFile`]). (`/proc/PID/fd/N` of an
//! unnamed file cannot be opened from the other user namespace.)

use std::fs::File;
use std::io::{self, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::atomic::AtomicFile;
use crate::tarstream::{Streaming, TarReader};

#[derive(Debug, thiserror::Error)]
pub enum SquashfsError {
    #[error("reading the tree's tar {}: {source}", path.display())]
    Layer { path: PathBuf, source: io::Error },
    #[error("{}: {source}", path.display())]
    Output { path: PathBuf, source: io::Error },
    #[error("cannot run mksquashfs (install squashfs-tools 4.5.1 or later, and util-linux's unshare): {0}")]
    Spawn(io::Error),
    #[error("mksquashfs failed ({status}) writing {}: {stderr}", path.display())]
    Failed {
        path: PathBuf,
        status: String,
        stderr: String,
    },
}

/// The root directory's mode, from the tar's first entry (`./`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct RootAttrs {
    mode: u32,
}

impl Default for RootAttrs {
    fn default() -> Self {
        RootAttrs { mode: 0o755 }
    }
}

/// Write `out` from the uncompressed tar `layer` (`layer_path` names it in
/// messages); `source_date_epoch` fixes the creation time.
pub fn write_squashfs(
    layer: &File,
    layer_path: &Path,
    out: &Path,
    source_date_epoch: Option<i64>,
) -> Result<(), SquashfsError> {
    let lerr = |source| SquashfsError::Layer {
        path: layer_path.to_path_buf(),
        source,
    };
    let root = root_attrs(layer).map_err(lerr)?;
    let mut input = layer.try_clone().map_err(lerr)?;
    input.seek(SeekFrom::Start(0)).map_err(lerr)?;
    let oerr = |source| SquashfsError::Output {
        path: out.to_path_buf(),
        source,
    };
    let dst = AtomicFile::create(out).map_err(oerr)?;
    let scratch = Scratch::new(out);
    let mut c = if rustix::process::geteuid().is_root() {
        Command::new("mksquashfs")
    } else {
        let mut c = Command::new("unshare");
        c.args(["-r", "mksquashfs"]);
        c
    };
    c.arg("-")
        .arg(&scratch.0)
        .args(["-tar", "-noappend", "-no-recovery"])
        .args(["-comp", "xz", "-quiet", "-no-progress"])
        .args(["-root-mode", &format!("{:o}", root.mode & 0o7777)])
        .env_remove("SOURCE_DATE_EPOCH")
        .stdin(Stdio::from(input))
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(t) = source_date_epoch.and_then(|t| u32::try_from(t).ok()) {
        c.env("SOURCE_DATE_EPOCH", t.to_string());
    }
    let o = c.output().map_err(SquashfsError::Spawn)?;
    if !o.status.success() {
        return Err(SquashfsError::Failed {
            path: out.to_path_buf(),
            status: o.status.to_string(),
            stderr: String::from_utf8_lossy(&o.stderr).trim().to_string(),
        });
    }
    let mut made = File::open(&scratch.0).map_err(oerr)?;
    io::copy(&mut made, &mut dst.file()).map_err(oerr)?;
    drop(scratch);
    dst.commit().map_err(oerr)
}

/// A hidden name beside the output for mksquashfs to write, removed when
/// dropped (and by the interrupt handler meanwhile).
struct Scratch(PathBuf);

impl Scratch {
    fn new(out: &Path) -> Scratch {
        let p = super::set::hidden_name(out, "tmp");
        super::atomic::add_pending(&p);
        Scratch(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The first entry's attributes when it is the root (`./` or `/`).
fn root_attrs(layer: &File) -> io::Result<RootAttrs> {
    let mut f = layer.try_clone()?;
    f.seek(SeekFrom::Start(0))?;
    let mut r = TarReader::new(Streaming(io::BufReader::new(f)));
    let e = r.next_entry().map_err(io::Error::other)?;
    Ok(match e {
        Some(e) if matches!(e.path.as_slice(), b"" | b"." | b"./" | b"/") => {
            RootAttrs { mode: e.mode }
        }
        _ => RootAttrs::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_attrs_from_the_first_entry() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("t.tar");
        let mut b = tar::Builder::new(File::create(&p).unwrap());
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_path("./").unwrap();
        h.set_mode(0o700);
        h.set_uid(3);
        h.set_gid(4);
        h.set_mtime(99);
        h.set_size(0);
        h.set_cksum();
        b.append(&h, io::empty()).unwrap();
        b.finish().unwrap();
        drop(b);
        let a = root_attrs(&File::open(&p).unwrap()).unwrap();
        assert_eq!(a, RootAttrs { mode: 0o700 });
    }
}
