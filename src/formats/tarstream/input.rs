//! Opening the archive: a path or "-" for stdin, with compression detected
//! from the magic bytes (gzip RFC 1952: 1f 8b; zstd RFC 8878: 28 b5 2f fd;
//! xz: fd 37 7a 58 5a 00; bzip2: "BZh") rather than the file name, so `dibr`
//! accepts whatever it is handed. gzip and zstd are decoded in-process; xz
//! and bzip2 (the formats distributions publish root filesystems in) by the
//! host's `xz -dc` / `bzip2 -dc`, which every base system has.

use std::fs::File;
use std::io::{self, BufReader, Cursor, Read};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};

use super::source::{seek_skip, TarSource, BUF_SIZE};
use super::TarError;

/// Compression detected by [`open_input`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
    Xz,
    Bzip2,
}

enum Inner {
    /// An uncompressed regular file: read directly (the reader buffers),
    /// skip by seeking, expose for `copy_file_range`.
    Plain { file: File, pos: u64 },
    /// Anything else: decompressor or non-seekable input.
    Stream(Box<dyn Read + Send>),
}

/// An opened archive input; see [`open_input`].
pub struct TarInput {
    inner: Inner,
    compression: Compression,
}

/// Open `path` ("-" = stdin) and detect compression by magic bytes: gzip
/// (1f 8b), zstd (28 b5 2f fd), else plain tar.
pub fn open_input(path: &Path) -> Result<TarInput, TarError> {
    TarInput::open(path)
}

/// Read up to 4 bytes for magic detection (fewer only at end of input).
fn peek(r: &mut dyn Read) -> io::Result<Vec<u8>> {
    let mut magic = Vec::with_capacity(4);
    r.take(4).read_to_end(&mut magic)?;
    Ok(magic)
}

fn detect(magic: &[u8]) -> Compression {
    if magic.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else if magic.starts_with(&[0xfd, 0x37, 0x7a, 0x58]) {
        Compression::Xz
    } else if magic.starts_with(b"BZh") {
        Compression::Bzip2
    } else {
        Compression::None
    }
}

impl TarInput {
    /// See [`open_input`].
    pub fn open(path: &Path) -> Result<TarInput, TarError> {
        let io_err = |source| TarError::Io { offset: 0, source };
        if path.as_os_str() == "-" {
            let mut stdin = io::stdin();
            let magic = peek(&mut stdin).map_err(io_err)?;
            return TarInput::stream(Box::new(Cursor::new(magic.clone()).chain(stdin)), &magic);
        }
        let open_err = |source| TarError::Open {
            path: path.to_path_buf(),
            source,
        };
        let mut file = File::open(path).map_err(open_err)?;
        let meta = file.metadata().map_err(open_err)?;
        let magic = peek(&mut file).map_err(io_err)?;
        if meta.is_file() {
            let compression = detect(&magic);
            if matches!(compression, Compression::Xz | Compression::Bzip2) {
                use std::io::{Seek, SeekFrom};
                file.seek(SeekFrom::Start(0)).map_err(io_err)?;
                let tool = if compression == Compression::Xz {
                    "xz"
                } else {
                    "bzip2"
                };
                let child = Command::new(tool)
                    .arg("-dc")
                    .stdin(file)
                    .stdout(Stdio::piped())
                    .spawn()
                    .map_err(|e| TarError::Open {
                        path: path.to_path_buf(),
                        source: io::Error::new(
                            e.kind(),
                            format!("{tool} -dc (install {tool} to read this archive): {e}"),
                        ),
                    })?;
                return Ok(TarInput {
                    inner: Inner::Stream(Box::new(ToolReader::new(child, tool))),
                    compression,
                });
            }
            if compression == Compression::None {
                // Rewind past the peeked bytes instead of replaying them.
                use std::io::{Seek, SeekFrom};
                file.seek(SeekFrom::Start(0)).map_err(io_err)?;
                return Ok(TarInput {
                    inner: Inner::Plain { file, pos: 0 },
                    compression,
                });
            }
        }
        TarInput::stream(Box::new(Cursor::new(magic.clone()).chain(file)), &magic)
    }

    /// Wrap a non-seekable raw stream whose first bytes are `magic`
    /// (already included in `raw`).
    fn stream(raw: Box<dyn Read + Send>, magic: &[u8]) -> Result<TarInput, TarError> {
        let compression = detect(magic);
        let inner: Box<dyn Read + Send> = match compression {
            Compression::None => raw,
            // Multi-member, like gzip(1) and GNU tar: concatenated .gz files
            // decompress to the concatenation.
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(
                BufReader::with_capacity(BUF_SIZE, raw),
            )),
            Compression::Zstd => Box::new(
                zstd::stream::read::Decoder::with_buffer(BufReader::with_capacity(BUF_SIZE, raw))
                    .map_err(|source| TarError::Io { offset: 0, source })?,
            ),
            Compression::Xz | Compression::Bzip2 => {
                return Err(TarError::Io {
                    offset: 0,
                    source: io::Error::new(
                        io::ErrorKind::Unsupported,
                        "xz and bzip2 archives are read from files only, not from standard input",
                    ),
                })
            }
        };
        Ok(TarInput {
            inner: Inner::Stream(inner),
            compression,
        })
    }

    pub fn compression(&self) -> Compression {
        self.compression
    }

    /// For an uncompressed regular file: the file and the current offset
    /// (of the next byte `read` returns).
    pub fn raw_file(&self) -> Option<(&File, u64)> {
        match &self.inner {
            Inner::Plain { file, pos } => Some((file, *pos)),
            Inner::Stream(_) => None,
        }
    }
}

impl Read for TarInput {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.inner {
            Inner::Plain { file, pos } => {
                let n = file.read(buf)?;
                *pos += n as u64;
                Ok(n)
            }
            Inner::Stream(r) => r.read(buf),
        }
    }
}

/// The decompressed output of `xz -dc` / `bzip2 -dc`: at end of stream the
/// tool's exit status is checked, so a corrupt archive is an error rather
/// than a short read.
struct ToolReader {
    child: Child,
    out: ChildStdout,
    tool: &'static str,
    done: bool,
}

impl ToolReader {
    fn new(mut child: Child, tool: &'static str) -> Self {
        let out = child.stdout.take().expect("stdout was piped");
        ToolReader {
            child,
            out,
            tool,
            done: false,
        }
    }
}

impl Read for ToolReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done {
            return Ok(0);
        }
        let n = self.out.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.done = true;
            let status = self.child.wait()?;
            if !status.success() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{} -dc failed ({status}): corrupt archive?", self.tool),
                ));
            }
        }
        Ok(n)
    }
}

impl Drop for ToolReader {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl TarSource for TarInput {
    fn skip(&mut self, n: u64) -> io::Result<u64> {
        match &mut self.inner {
            Inner::Plain { file, pos } => {
                let k = seek_skip(file, n)?;
                *pos += k;
                Ok(k)
            }
            Inner::Stream(r) => io::copy(&mut r.by_ref().take(n), &mut io::sink()),
        }
    }

    fn raw_position(&self) -> Option<(&File, u64)> {
        self.raw_file()
    }
}
