//! The outer tar of an image archive: members from memory or from the
//! layer file, owned by root, mode 0644 (0755 for directories), all with
//! the image's `created` time.

use std::fs::File;
use std::io::{self, BufWriter};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::ContainerError;
use crate::output::atomic::AtomicFile;
use crate::tarstream::writer::{typeflag, Member, TarWriter};
use crate::tree::Timestamp;

pub(super) enum Blob<'a> {
    Bytes(&'a [u8]),
    File(&'a File),
}

pub(super) struct Archive {
    dst: AtomicFile,
    tar: TarWriter<BufWriter<File>>,
    path: PathBuf,
    mtime: Timestamp,
}

impl Archive {
    pub(super) fn create(path: &Path, created: i64) -> Result<Archive, ContainerError> {
        let err = out_err(path);
        let dst = AtomicFile::create(path).map_err(err)?;
        let file = dst.file().try_clone().map_err(out_err(path))?;
        Ok(Archive {
            dst,
            tar: TarWriter::new(BufWriter::with_capacity(1 << 20, file)),
            path: path.to_path_buf(),
            mtime: Timestamp {
                secs: created.max(0),
                nsec: 0,
            },
        })
    }

    fn member<'a>(&self, name: &'a [u8], typeflag: u8, mode: u32, size: u64) -> Member<'a> {
        Member {
            name,
            typeflag,
            mode,
            uid: 0,
            gid: 0,
            mtime: self.mtime,
            size,
            linkname: b"",
            dev: (0, 0),
            xattrs: &[],
            sparse: None,
        }
    }

    pub(super) fn dir(&mut self, name: &str) -> Result<(), ContainerError> {
        let m = self.member(name.as_bytes(), typeflag::DIR, 0o755, 0);
        self.tar.header(&m).map_err(out_err(&self.path))
    }

    pub(super) fn blob(&mut self, name: &str, blob: Blob) -> Result<(), ContainerError> {
        let size = match blob {
            Blob::Bytes(b) => b.len() as u64,
            Blob::File(f) => f.metadata().map_err(out_err(&self.path))?.len(),
        };
        let m = self.member(name.as_bytes(), typeflag::FILE, 0o644, size);
        let r = (|| -> io::Result<()> {
            self.tar.header(&m)?;
            match blob {
                Blob::Bytes(b) => self.tar.write_data(b)?,
                Blob::File(f) => copy_file(f, size, &mut self.tar)?,
            }
            self.tar.pad(size)
        })();
        r.map_err(out_err(&self.path))
    }

    /// The end-of-archive blocks, then the file takes its name.
    pub(super) fn commit(mut self) -> Result<(), ContainerError> {
        let err = out_err(&self.path);
        self.tar.finish().map_err(err)?;
        let w = self.tar.into_inner();
        let file = w.into_inner().map_err(|e| e.into_error());
        let file = file.map_err(out_err(&self.path))?;
        file.sync_all().map_err(out_err(&self.path))?;
        self.dst.commit().map_err(out_err(&self.path))
    }
}

/// `size` bytes of `f` from its start; a file that shrank is an error.
fn copy_file(f: &File, size: u64, tar: &mut TarWriter<BufWriter<File>>) -> io::Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    let mut off = 0u64;
    while off < size {
        let want = (size - off).min(buf.len() as u64) as usize;
        let n = f.read_at(&mut buf[..want], off)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the layer shrank while it was copied",
            ));
        }
        tar.write_data(&buf[..n])?;
        off += n as u64;
    }
    Ok(())
}

fn out_err(path: &Path) -> impl FnOnce(io::Error) -> ContainerError + '_ {
    move |source| ContainerError::Output {
        path: path.to_path_buf(),
        source,
    }
}
