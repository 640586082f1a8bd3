//! Writing a capture to a file, plain or compressed, atomically.
//!
//! Compression is deterministic: gzip with header mtime 0 and no file
//! name, zstd single-threaded (multithreaded zstd output depends on the
//! worker count), so with `source_date_epoch` set two captures of the same
//! tree are byte-identical in every format.

use std::fs::File;
use std::io::{self, BufWriter};
use std::path::Path;

use std::io::Write;

use super::{write_tar, CaptureError, CaptureOptions, CaptureStats};
use crate::output::atomic::AtomicFile;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputType {
    /// Uncompressed tar.
    Tar,
    /// gzip (level 6).
    Tgz,
    /// zstd (level 3, with a content checksum).
    TarZst,
}

impl OutputType {
    /// Guess from the file name: `.tgz`/`.tar.gz`, `.tar.zst`/`.tzst`,
    /// `.tar`; None otherwise.
    pub fn from_path(p: &Path) -> Option<Self> {
        let n = p.file_name()?.to_string_lossy().to_ascii_lowercase();
        if n.ends_with(".tgz") || n.ends_with(".tar.gz") {
            Some(OutputType::Tgz)
        } else if n.ends_with(".tar.zst") || n.ends_with(".tzst") {
            Some(OutputType::TarZst)
        } else if n.ends_with(".tar") {
            Some(OutputType::Tar)
        } else {
            None
        }
    }
}

const ZSTD_LEVEL: i32 = 3;

/// What fills an archive: the tree under a directory, or a caller's
/// entries.
type Fill<'a> = &'a mut dyn FnMut(&mut dyn Write) -> Result<CaptureStats, CaptureError>;

fn encode(file: File, ty: OutputType, fill: Fill) -> Result<(CaptureStats, File), Failure> {
    let mut bw = BufWriter::with_capacity(1 << 20, file);
    let stats = match ty {
        OutputType::Tar => fill(&mut bw)?,
        OutputType::Tgz => {
            let mut gz = flate2::GzBuilder::new()
                .mtime(0)
                .write(&mut bw, flate2::Compression::default());
            let s = fill(&mut gz)?;
            gz.finish().map_err(Failure::Io)?;
            s
        }
        OutputType::TarZst => {
            let mut z = zstd::Encoder::new(&mut bw, ZSTD_LEVEL).map_err(Failure::Io)?;
            z.include_checksum(true).map_err(Failure::Io)?;
            let s = fill(&mut z)?;
            z.finish().map_err(Failure::Io)?;
            s
        }
    };
    let file = bw.into_inner().map_err(|e| Failure::Io(e.into_error()))?;
    Ok((stats, file))
}

enum Failure {
    Capture(CaptureError),
    Io(io::Error),
}

impl From<CaptureError> for Failure {
    fn from(e: CaptureError) -> Self {
        Failure::Capture(e)
    }
}

/// Capture `src` into the file `path` as `ty`. The file appears only when
/// complete (see [`crate::output::atomic`]); on error nothing is left.
pub fn write_output(
    src: &Path,
    path: &Path,
    ty: OutputType,
    opts: &CaptureOptions,
) -> Result<CaptureStats, CaptureError> {
    write_output_with(path, ty, opts.no_fsync, &mut |w| write_tar(src, w, opts))
}

/// Like [`write_output`], with the archive written by `fill` (e.g. through
/// [`super::EntryTar`]).
pub fn write_output_with(
    path: &Path,
    ty: OutputType,
    no_fsync: bool,
    fill: Fill,
) -> Result<CaptureStats, CaptureError> {
    let io_err = |source: io::Error| CaptureError::Output {
        path: path.to_path_buf(),
        source,
    };
    let out = AtomicFile::create(path).map_err(io_err)?;
    let file = out.file().try_clone().map_err(io_err)?;
    let (stats, file) = match encode(file, ty, fill) {
        Ok(v) => v,
        Err(Failure::Capture(e)) => return Err(e),
        Err(Failure::Io(e)) => return Err(io_err(e)),
    };
    if !no_fsync {
        file.sync_all().map_err(io_err)?;
    }
    drop(file);
    out.commit().map_err(io_err)?;
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_from_names() {
        assert_eq!(
            OutputType::from_path(Path::new("a.tgz")),
            Some(OutputType::Tgz)
        );
        assert_eq!(
            OutputType::from_path(Path::new("a.tar.gz")),
            Some(OutputType::Tgz)
        );
        assert_eq!(
            OutputType::from_path(Path::new("a.tar.zst")),
            Some(OutputType::TarZst)
        );
        assert_eq!(
            OutputType::from_path(Path::new("a.tar")),
            Some(OutputType::Tar)
        );
        assert_eq!(OutputType::from_path(Path::new("a.qcow2")), None);
    }

    #[test]
    fn writes_each_type_atomically() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        std::fs::create_dir_all(src.join("etc")).unwrap();
        std::fs::write(src.join("etc/hostname"), b"dibr\n").unwrap();
        let opts = CaptureOptions {
            source_date_epoch: Some(1_700_000_000),
            ..Default::default()
        };
        for (ty, name) in [
            (OutputType::Tar, "o.tar"),
            (OutputType::Tgz, "o.tgz"),
            (OutputType::TarZst, "o.tar.zst"),
        ] {
            let p = t.path().join(name);
            let s = write_output(&src, &p, ty, &opts).unwrap();
            assert_eq!(s.files, 1);
            assert_eq!(s.dirs, 2);
            let mut rd =
                crate::tarstream::TarReader::new(crate::tarstream::open_input(&p).unwrap());
            let mut paths = Vec::new();
            while let Some(e) = rd.next_entry().unwrap() {
                paths.push(e.display_path());
            }
            assert_eq!(paths, ["/", "etc", "etc/hostname"], "{name}");
        }
        // A failed capture leaves nothing behind.
        let p = t.path().join("fail.tar");
        assert!(write_output(&t.path().join("missing"), &p, OutputType::Tar, &opts).is_err());
        assert!(!p.exists());
        let left: Vec<_> = std::fs::read_dir(t.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }
}
