//! Random access to an image's bytes, whatever holds them: a slice in
//! memory, a raw file, a qcow2 file read through its cluster tables. The
//! ext4 reader and checker, the partition-table readers and `inspect`
//! read images through [`ImageSource`] alone.

use std::fs::File;
use std::os::unix::fs::FileExt;

/// Random access to the image bytes.
pub trait ImageSource {
    fn size(&self) -> u64;
    fn read_at(&self, off: u64, buf: &mut [u8]) -> std::io::Result<()>;
}

impl ImageSource for &[u8] {
    fn size(&self) -> u64 {
        <[u8]>::len(self) as u64
    }
    fn read_at(&self, off: u64, buf: &mut [u8]) -> std::io::Result<()> {
        let end = off.checked_add(buf.len() as u64);
        match end {
            Some(e) if e <= <[u8]>::len(self) as u64 => {
                buf.copy_from_slice(&self[off as usize..e as usize]);
                Ok(())
            }
            _ => Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "read past the end of the image",
            )),
        }
    }
}

/// A borrowed open file of `len` bytes.
pub struct FileSource<'a> {
    pub file: &'a File,
    pub len: u64,
}

impl ImageSource for FileSource<'_> {
    fn size(&self) -> u64 {
        self.len
    }
    fn read_at(&self, off: u64, buf: &mut [u8]) -> std::io::Result<()> {
        self.file.read_exact_at(buf, off)
    }
}
