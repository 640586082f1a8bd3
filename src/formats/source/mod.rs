//! Entry sources: a tar stream (file, stdin; plain, gzip or zstd) or a
//! host directory. Both yield [`crate::tree::Entry`] values and stream file
//! data through [`crate::tree::FileData`].

pub mod dir;

use std::path::Path;

use crate::tarstream::{open_input, TarError, TarInput, TarReader};
use crate::tree::{Entry, FileData};

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    Dir(#[from] dir::DirError),
    #[error(transparent)]
    Tar(#[from] TarError),
}

pub enum Source {
    Dir(dir::DirSource),
    Tar(Box<TarReader<TarInput>>),
}

impl Source {
    /// A directory, or a tar archive (`-` is standard input).
    pub fn open(spec: &Path) -> Result<Self, SourceError> {
        if spec.as_os_str() != "-" && spec.is_dir() {
            return Ok(Source::Dir(dir::DirSource::new(spec)?));
        }
        Ok(Source::Tar(Box::new(TarReader::new(open_input(spec)?))))
    }

    /// Total bytes to read, when known: the size of an uncompressed tarball
    /// file (a fair bound for the file data inside it).
    pub fn size_hint(&self) -> Option<u64> {
        match self {
            Source::Tar(t) => t
                .get_ref()
                .raw_file()
                .and_then(|(f, _)| f.metadata().ok())
                .map(|m| m.len()),
            Source::Dir(_) => None,
        }
    }

    pub fn next_entry(&mut self) -> Result<Option<Entry>, SourceError> {
        match self {
            Source::Dir(d) => Ok(d.next_entry()?),
            Source::Tar(t) => Ok(t.next_entry()?),
        }
    }

    pub fn data(&mut self) -> &mut dyn FileData {
        match self {
            Source::Dir(d) => d,
            Source::Tar(t) => t.as_mut(),
        }
    }
}
