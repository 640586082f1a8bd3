//! A sparse in-memory disk: `Read + Write + Seek` over a nominal size with
//! only the written 4 KiB pages stored. Lets tests and fuzz targets write
//! partition tables for terabyte disks without allocating them.

use std::collections::HashMap;
use std::io::{self, Read, Seek, SeekFrom, Write};

const PAGE: u64 = 4096;

#[derive(Debug, Default, Clone)]
pub struct SparseDisk {
    size: u64,
    pos: u64,
    pages: HashMap<u64, Box<[u8; PAGE as usize]>>,
}

impl SparseDisk {
    /// A zero-filled disk of `size` bytes; writes beyond it fail.
    pub fn new(size: u64) -> Self {
        SparseDisk {
            size,
            ..Default::default()
        }
    }
    pub fn size(&self) -> u64 {
        self.size
    }
    /// Number of 4 KiB pages written.
    pub fn pages(&self) -> usize {
        self.pages.len()
    }
}

impl Read for SparseDisk {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let avail = self.size.saturating_sub(self.pos);
        let n = (buf.len() as u64).min(avail).min(PAGE - self.pos % PAGE) as usize;
        let off = (self.pos % PAGE) as usize;
        match self.pages.get(&(self.pos / PAGE)) {
            Some(p) => buf[..n].copy_from_slice(&p[off..off + n]),
            None => buf[..n].fill(0),
        }
        self.pos += n as u64;
        Ok(n)
    }
}

impl Write for SparseDisk {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let avail = self.size.saturating_sub(self.pos);
        if avail == 0 {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "write beyond the end of the disk",
            ));
        }
        let n = (buf.len() as u64).min(avail).min(PAGE - self.pos % PAGE) as usize;
        let off = (self.pos % PAGE) as usize;
        let page = self
            .pages
            .entry(self.pos / PAGE)
            .or_insert_with(|| Box::new([0; PAGE as usize]));
        page[off..off + n].copy_from_slice(&buf[..n]);
        self.pos += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for SparseDisk {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let new = match to {
            SeekFrom::Start(o) => Some(o),
            SeekFrom::End(d) => self.size.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = new.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "bad seek"))?;
        Ok(self.pos)
    }
}
