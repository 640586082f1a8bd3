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

/// Remove every pending temporary file (called from the signal handler).
pub fn cleanup_pending() {
    if let Ok(mut v) = PENDING.lock() {
        for p in v.drain(..) {
            let _ = std::fs::remove_file(p);
        }
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
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "image".into());
    dest.with_file_name(format!(".{name}.dibr-{tag}-{}", std::process::id()))
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

    /// Give the finished file its name, replacing any existing file.
    pub fn commit(mut self) -> io::Result<()> {
        let temp = match &self.temp {
            Some(t) => t.clone(),
            None => {
                let t = temp_name(&self.dest, "link");
                let fd_path = format!("/proc/self/fd/{}", {
                    use std::os::fd::AsRawFd;
                    self.file.as_raw_fd()
                });
                rustix::fs::linkat(CWD, fd_path.as_str(), CWD, &t, AtFlags::SYMLINK_FOLLOW)?;
                t
            }
        };
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
