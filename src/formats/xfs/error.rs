//! Errors of the XFS writer. Each names the entry at fault (and the byte
//! offset of its tar header where the source is an archive).

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("entry '{path}' (source offset {offset}): {problem}")]
    Entry {
        path: String,
        offset: u64,
        problem: String,
    },
    #[error("hard link '{path}' (source offset {offset}) points to '{target}', which is missing from the tree (hard links must follow their target; is the archive complete?)")]
    HardLinkMissing {
        path: String,
        target: String,
        offset: u64,
    },
    #[error("the tree does not fit in an XFS filesystem of {size_bytes} bytes: it needs at least {needed_bytes} bytes ({detail})")]
    DoesNotFit {
        size_bytes: u64,
        /// A lower bound of the size that holds the tree.
        needed_bytes: u64,
        detail: String,
    },
    #[error("writing the image {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("reading data of '{path}' (source offset {offset}): {source}")]
    ReadData {
        path: String,
        offset: u64,
        #[source]
        source: io::Error,
    },
    #[error("invalid XFS option: {0}")]
    Option(String),
}

pub type Result<T> = std::result::Result<T, Error>;
