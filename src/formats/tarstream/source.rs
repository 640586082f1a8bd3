//! What the reader needs from its input beyond `Read`: skipping (by seek
//! when possible, so unread file data of an uncompressed archive is never
//! read) and, for a plain file, where the bytes are (for the
//! `copy_file_range` fast path of [`crate::tree::FileData::raw_location`]).
//! Plus the reader's own read buffer, which tracks the stream offset.

use std::fs::File;
use std::io::{self, Cursor, Read, Seek, SeekFrom};

/// Size of the reader's buffer: large enough that per-read overhead is
/// negligible at memory speed, small enough not to matter.
pub const BUF_SIZE: usize = 256 * 1024;

/// An input the tar reader can consume.
///
/// Implemented for [`super::TarInput`], [`File`], [`Cursor`], `&[u8]`,
/// boxed readers and [`Streaming`] (wrap any other reader in it).
pub trait TarSource: Read {
    /// Skip up to `n` bytes; returns how many were skipped (fewer only at
    /// end of input). The default reads and discards.
    fn skip(&mut self, n: u64) -> io::Result<u64> {
        let mut this: &mut Self = self;
        io::copy(&mut Read::take(&mut this, n), &mut io::sink())
    }

    /// For a plain regular file: the file and the file offset of the next
    /// byte `read` returns. `None` for streams.
    fn raw_position(&self) -> Option<(&File, u64)> {
        None
    }
}

/// Adapter for any reader without seek/raw support (pipes, decoders).
pub struct Streaming<R>(pub R);

impl<R: Read> Read for Streaming<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}
impl<R: Read> TarSource for Streaming<R> {}
impl TarSource for &[u8] {}
impl TarSource for Box<dyn Read> {}
impl TarSource for Box<dyn Read + Send> {}

impl<T: AsRef<[u8]>> TarSource for Cursor<T> {
    fn skip(&mut self, n: u64) -> io::Result<u64> {
        let len = self.get_ref().as_ref().len() as u64;
        let pos = self.position().min(len);
        let k = n.min(len - pos);
        self.set_position(pos + k);
        Ok(k)
    }
}

/// Skip in a seekable regular file without reading, clamped to its length
/// so that truncation is still detected.
pub(crate) fn seek_skip(file: &File, n: u64) -> io::Result<u64> {
    let mut f = file;
    let pos = f.stream_position()?;
    let len = file.metadata()?.len();
    let k = n.min(len.saturating_sub(pos));
    f.seek(SeekFrom::Start(pos + k))?;
    Ok(k)
}

impl TarSource for File {
    fn skip(&mut self, n: u64) -> io::Result<u64> {
        if self.metadata()?.is_file() {
            seek_skip(self, n)
        } else {
            io::copy(&mut self.by_ref().take(n), &mut io::sink())
        }
    }

    fn raw_position(&self) -> Option<(&File, u64)> {
        if !self.metadata().ok()?.is_file() {
            return None;
        }
        let mut f = self;
        f.stream_position().ok().map(|p| (self, p))
    }
}

/// The reader's buffer over a [`TarSource`], tracking the stream offset.
pub struct Buffered<R> {
    pub src: R,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    /// Stream offset of `buf[start]`.
    pos: u64,
}

impl<R: TarSource> Buffered<R> {
    pub fn new(src: R) -> Self {
        Buffered {
            src,
            buf: vec![0u8; BUF_SIZE].into_boxed_slice(),
            start: 0,
            end: 0,
            pos: 0,
        }
    }

    /// Stream offset of the next byte to be returned.
    pub fn pos(&self) -> u64 {
        self.pos
    }

    fn fill(&mut self) -> io::Result<usize> {
        if self.start == self.end {
            self.start = 0;
            self.end = loop {
                match self.src.read(&mut self.buf) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    r => break r?,
                }
            };
        }
        Ok(self.end - self.start)
    }

    /// Read up to `out.len()` bytes; 0 only at end of input. Large reads
    /// with an empty buffer go straight to the source (no extra copy).
    pub fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.start == self.end && out.len() >= self.buf.len() / 2 {
            let n = loop {
                match self.src.read(out) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    r => break r?,
                }
            };
            self.pos += n as u64;
            return Ok(n);
        }
        let avail = self.fill()?;
        let n = avail.min(out.len());
        out[..n].copy_from_slice(&self.buf[self.start..self.start + n]);
        self.start += n;
        self.pos += n as u64;
        Ok(n)
    }

    /// Fill `out` completely; returns how many bytes were read (fewer only
    /// at end of input).
    pub fn read_full(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let mut got = 0;
        while got < out.len() {
            let n = self.read(&mut out[got..])?;
            if n == 0 {
                break;
            }
            got += n;
        }
        Ok(got)
    }

    /// Skip `n` bytes; returns how many were skipped (fewer only at end of
    /// input). Beyond the buffered bytes the source skips (seeks).
    pub fn skip(&mut self, n: u64) -> io::Result<u64> {
        let buffered = (self.end - self.start) as u64;
        if n <= buffered {
            self.start += n as usize;
            self.pos += n;
            return Ok(n);
        }
        self.start = 0;
        self.end = 0;
        self.pos += buffered;
        let k = self.src.skip(n - buffered)?;
        self.pos += k;
        Ok(buffered + k)
    }

    /// File and file offset holding stream offset `at` (which must not be
    /// before the buffered bytes), for a plain-file source.
    pub fn raw_offset(&self, at: u64) -> Option<(&File, u64)> {
        let (file, next) = self.src.raw_position()?;
        // Stream offset of the source's next byte:
        let src_pos = self.pos + (self.end - self.start) as u64;
        let back = src_pos.checked_sub(at)?;
        Some((file, next.checked_sub(back)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffered_read_skip() {
        let data: Vec<u8> = (0..BUF_SIZE * 3).map(|i| (i % 251) as u8).collect();
        let mut b = Buffered::new(Cursor::new(&data[..]));
        let mut x = [0u8; 10];
        assert_eq!(b.read_full(&mut x).unwrap(), 10);
        assert_eq!(x[9], 9);
        assert_eq!(b.skip(5).unwrap(), 5);
        assert_eq!(b.skip(BUF_SIZE as u64).unwrap(), BUF_SIZE as u64);
        assert_eq!(b.pos(), BUF_SIZE as u64 + 15);
        b.read_full(&mut x).unwrap();
        assert_eq!(x[0], ((BUF_SIZE + 15) % 251) as u8);
        let mut big = vec![0u8; BUF_SIZE * 2];
        let n = b.read_full(&mut big).unwrap();
        assert_eq!(n, BUF_SIZE * 2 - 25);
        assert_eq!(b.skip(100).unwrap(), 0);
        assert_eq!(b.pos(), data.len() as u64);
    }
}
