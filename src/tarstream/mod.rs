//! Reading tar streams (ustar, GNU, PAX; gzip/zstd detected by magic) into
//! [`crate::tree::Entry`] values, streaming file data through
//! [`crate::tree::FileData`].
//!
//! STUB: being written (see tarstream README in the issue). API contract:
//!
//! ```ignore
//! let input = TarInput::open(path_or_stdin)?;          // detects gzip / zstd / plain by magic
//! let mut rd = TarReader::new(input);
//! while let Some(entry) = rd.next_entry()? {           // skips unread data of the previous entry
//!     if entry.kind == EntryKind::File { let data: &mut dyn FileData = &mut rd; ... }
//! }
//! ```
