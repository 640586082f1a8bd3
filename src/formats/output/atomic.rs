//! Output files that appear only when complete.
//!
//! The image is written to an unnamed `O_TMPFILE` in the output directory
//! and linked into place at the end, so a crash — even SIGKILL — leaves
//! nothing behind. Where the filesystem lacks O_TMPFILE, a hidden temporary
//! name is used instead and removed on error or on SIGINT/SIGTERM.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rustix::fs::{AtFlags, Mode, OFlags, CWD};

/// Temporary names to remove if the process is interrupted.
static PENDING: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Remove every pending temporary file or staged directory (called from
/// the signal handler).
pub fn cleanup_pending() {
    if let Ok(mut v) = PENDING.lock() {
        for p in v.drain(..) {
            if std::fs::remove_file(&p).is_err() {
                let _ = std::fs::remove_dir_all(&p);
            }
        }
    }
}

/// Remove `p` too if the process is interrupted.
pub(super) fn add_pending(p: &Path) {
    if let Ok(mut v) = PENDING.lock() {
        v.push(p.to_path_buf());
    }
}

pub struct AtomicFile {
    file: File,
    dest: PathBuf,
    /// Named temporary (fallback mode), or None for O_TMPFILE.
    temp: Option<PathBuf>,
    committed: bool,
}

fn temp_name(dest: &Path, tag: &str) -> PathBuf {
    super::set::hidden_name(dest, tag)
}

impl AtomicFile {
    pub fn create(dest: &Path) -> io::Result<Self> {
        let dir = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if dest.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::IsADirectory,
                format!("{} is a directory", dest.display()),
            ));
        }
        match rustix::fs::open(
            &dir,
            OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        ) {
            Ok(fd) => Ok(AtomicFile {
                file: File::from(fd),
                dest: dest.to_path_buf(),
                temp: None,
                committed: false,
            }),
            Err(_) => {
                let temp = temp_name(dest, "tmp");
                let file = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create_new(true)
                    .open(&temp)?;
                if let Ok(mut v) = PENDING.lock() {
                    v.push(temp.clone());
                }
                Ok(AtomicFile {
                    file,
                    dest: dest.to_path_buf(),
                    temp: Some(temp),
                    committed: false,
                })
            }
        }
    }

    pub fn file(&self) -> &File {
        &self.file
    }

    pub fn dest(&self) -> &Path {
        &self.dest
    }

    /// Where the content can be read before the file has its name.
    pub fn readable_path(&self) -> PathBuf {
        use std::os::fd::AsRawFd;
        match &self.temp {
            Some(t) => t.clone(),
            None => PathBuf::from(format!("/proc/self/fd/{}", self.file.as_raw_fd())),
        }
    }

    /// Give the finished file its name, replacing any existing file — or,
    /// while an output set is open on this thread, leave that to the set
    /// ([`super::set`]), which names all its outputs together.
    pub fn commit(self) -> io::Result<()> {
        match super::set::defer(self) {
            Ok(()) => Ok(()),
            Err(f) => f.name_now(),
        }
    }

    /// The finished file under a hidden name beside its destination (for
    /// the output set's journal); removed on interruption until renamed.
    pub(super) fn into_hidden(mut self) -> io::Result<PathBuf> {
        let hidden = self.hidden_name()?;
        add_pending(&hidden);
        self.committed = true;
        Ok(hidden)
    }

    /// The file under a name: its named temporary, or (O_TMPFILE) a fresh
    /// hidden link beside the destination.
    fn hidden_name(&self) -> io::Result<PathBuf> {
        if let Some(t) = &self.temp {
            return Ok(t.clone());
        }
        let t = temp_name(&self.dest, "link");
        let _ = std::fs::remove_file(&t);
        rustix::fs::linkat(
            CWD,
            self.readable_path().as_path(),
            CWD,
            &t,
            AtFlags::SYMLINK_FOLLOW,
        )?;
        Ok(t)
    }

    fn name_now(mut self) -> io::Result<()> {
        let temp = self.hidden_name()?;
        let r = std::fs::rename(&temp, &self.dest);
        if r.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
        r?;
        self.committed = true;
        if let Ok(mut v) = PENDING.lock() {
            v.retain(|p| p != &temp);
        }
        Ok(())
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if !self.committed {
            if let Some(t) = &self.temp {
                let _ = std::fs::remove_file(t);
                if let Ok(mut v) = PENDING.lock() {
                    v.retain(|p| p != t);
                }
            }
        }
    }
}
