//! The one error type of the tar reader. Every variant says *where* (byte
//! offset in the decompressed stream, entry path when known) so a user can
//! find the broken spot with `tar -tvR` or a hex dump.

use std::io;
use std::path::PathBuf;

use crate::tree::PathError;

/// "tar entry 'x' at byte N" or "tar archive at byte N" when the entry's name
/// is not known (yet).
fn at(path: &str, offset: u64) -> String {
    if path.is_empty() {
        format!("tar archive at byte {offset}")
    } else {
        format!("tar entry '{path}' at byte {offset}")
    }
}

fn first_hint(offset: &u64) -> &'static str {
    if *offset == 0 {
        " (not a tar archive?)"
    } else {
        ""
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TarError {
    /// Opening the input failed.
    #[error("cannot open tar input {path:?}: {source}")]
    Open { path: PathBuf, source: io::Error },

    /// The archive ended in the middle of something. `offset` is where the
    /// entry (or header) being read starts.
    #[error("{}: truncated {what}", at(path, *offset))]
    Truncated {
        what: String,
        path: String,
        offset: u64,
    },

    /// A header block whose checksum does not match its contents.
    #[error("tar archive at byte {offset}: header checksum mismatch (stored {stored:?}, computed {computed}){}", first_hint(offset))]
    BadChecksum {
        offset: u64,
        /// The checksum field as stored (text), for diagnosis.
        stored: String,
        computed: u32,
    },

    /// A numeric header field that is not octal / base-256, or out of range.
    #[error("{}: bad {field} field {value:?}", at(path, *offset))]
    BadNumber {
        field: &'static str,
        value: String,
        path: String,
        offset: u64,
    },

    /// A malformed PAX extended header (POSIX pax(1) "pax Extended Header").
    #[error("{}: bad PAX extended header: {detail}", at(path, *offset))]
    BadPax {
        path: String,
        offset: u64,
        detail: String,
    },

    /// A malformed GNU sparse map (GNU tar manual, "Sparse Formats").
    #[error("{}: bad sparse file map: {detail}", at(path, *offset))]
    BadSparse {
        path: String,
        offset: u64,
        detail: String,
    },

    /// A text ACL (`SCHILY.acl.*`) we cannot convert.
    #[error("{}: bad ACL {text:?}: {detail}", at(path, *offset))]
    BadAcl {
        path: String,
        offset: u64,
        text: String,
        detail: String,
    },

    /// Any other structurally invalid header (oversized extension header,
    /// empty name, ...).
    #[error("{}: {detail}", at(path, *offset))]
    BadHeader {
        path: String,
        offset: u64,
        detail: String,
    },

    /// An entry type we cannot represent (multi-volume continuation, unknown
    /// typeflag letters).
    #[error("{}: unsupported entry type {typeflag:?}{}", at(path, *offset), type_hint(*typeflag))]
    UnsupportedType {
        typeflag: char,
        path: String,
        offset: u64,
    },

    /// An entry (or link target) path that cannot be normalised.
    #[error("tar entry at byte {offset}: {source}")]
    Path { offset: u64, source: PathError },

    /// Reading (or seeking in) the input failed.
    #[error("tar archive at byte {offset}: read error: {source}")]
    Io { offset: u64, source: io::Error },
}

fn type_hint(t: char) -> &'static str {
    match t {
        'M' => " (GNU multi-volume continuation; multi-volume archives are not supported)",
        'N' => " (obsolete GNU long-name list; not supported)",
        _ => "",
    }
}
