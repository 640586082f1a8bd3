//! Tar, both directions: reading tar streams (ustar, GNU, PAX; gzip/zstd
//! detected by magic) into [`crate::tree::Entry`] values, streaming file
//! data through [`crate::tree::FileData`]; and `writer`, the deterministic
//! pax writer the capture uses.
//!
//! ```ignore
//! let input = open_input(path_or_stdin)?;              // detects gzip / zstd / plain by magic
//! let mut rd = TarReader::new(input);
//! while let Some(entry) = rd.next_entry()? {           // skips unread data of the previous entry
//!     if entry.kind == EntryKind::File { let data: &mut dyn FileData = &mut rd; ... }
//! }
//! ```
//!
//! `TarReader<R>` takes any [`TarSource`]: a `Read` that may also skip by
//! seeking and expose its plain file for the `copy_file_range` fast path
//! ([`crate::tree::FileData::raw_location`]). It is implemented for
//! [`TarInput`], `File`, `Cursor`, `&[u8]` and boxed readers; wrap any other
//! reader in [`Streaming`]. (A plain `R: Read` bound cannot tell a seekable
//! file from a pipe without specialization.)
//!
//! Unread data of the previous entry is skipped on `next_entry`: within the
//! 256 KiB buffer by moving the cursor, beyond it by seeking (plain files) or
//! reading and discarding (streams). Data sizes of non-file members (links,
//! devices, directories) are skipped the same way, so a writer that puts
//! data there (pax allows it for hard links) does not derail us.
//!
//! Modules, one job each: `header` (one 512-byte block), `pax` (extended
//! header records), `sparse` (GNU sparse maps), `xattrs` (an entry's
//! xattrs by name), `acl` (text ACL to VFS xattr and back), `source`
//! (input abstraction and buffer), `input` (opening files and
//! decompression), `reader` (the archive state machine), `writer` (pax
//! members out).

mod acl;
mod error;
mod header;
mod input;
mod pax;
mod reader;
mod source;
mod sparse;
pub mod writer;
mod xattrs;

#[cfg(test)]
mod tests;

pub use error::TarError;
pub use input::{open_input, Compression, TarInput};
pub use reader::TarReader;
pub use source::{Streaming, TarSource};
