//! Errors of the ext4 writer. Each names the entry at fault (and the byte
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
    #[error("the tree does not fit in {size_bytes} bytes: it needs {}{needed_bytes} bytes ({detail}); raise --size or drop it to size the image automatically", if *.exact { "" } else { "at least " })]
    DoesNotFit {
        size_bytes: u64,
        /// The smallest size that holds the tree when `exact`, else a
        /// lower bound (the writer ran out of room before it had seen
        /// everything the tree needs).
        needed_bytes: u64,
        exact: bool,
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
    #[error("invalid option: {0}")]
    Option(String),
    /// A directory with more entries than a two-level hash tree indexes.
    #[error("directory inode {ino}: {source}")]
    DirTooLarge {
        ino: u32,
        #[source]
        source: super::dir::DirTooLarge,
    },
    /// An inode's extended attributes that fit neither in the inode nor in
    /// one block.
    #[error("inode {ino}: {source}")]
    Xattrs {
        ino: u32,
        #[source]
        source: super::xattr::XattrError,
    },
}

pub type Result<T> = std::result::Result<T, Error>;
