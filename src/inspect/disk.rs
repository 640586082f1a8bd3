//! Opening an image file (raw or qcow2) and finding its volumes: the
//! partitions of a GPT or MBR, or one filesystem on the whole disk (DIB's
//! fallback layout), each with the filesystem found on it.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::disk::read::{read_gpt, read_gpt_primary, read_mbr, ReadError as TableError};
use crate::ext4::read::{Ext4, ReadError as ExtError};
use crate::image_io::ImageSource;
use crate::output::qcow2::read::{self as qcow2, Qcow2, Qcow2Error};

#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("{}: {source}", path.display())]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    Qcow2 { path: PathBuf, source: Qcow2Error },
    #[error("{}: a VHD image; convert it first: qemu-img convert -O raw {} DISK.raw", path.display(), path.display())]
    Vhd { path: PathBuf },
    #[error("{}: partition table: {source}", path.display())]
    Table { path: PathBuf, source: TableError },
}

/// A raw image file.
pub struct RawFile {
    file: File,
    len: u64,
}

impl ImageSource for RawFile {
    fn size(&self) -> u64 {
        self.len
    }
    fn read_at(&self, off: u64, buf: &mut [u8]) -> std::io::Result<()> {
        if off.saturating_add(buf.len() as u64) > self.len {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "read past the end of the image",
            ));
        }
        self.file.read_exact_at(buf, off)
    }
}

/// The image format found by its magic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Raw,
    Qcow2,
}

/// An opened image: the guest's view of the disk.
pub struct Image {
    pub path: PathBuf,
    pub format: Format,
    disk: Box<dyn ImageSource>,
}

impl Image {
    /// Opens `path`, decoding qcow2 when it starts with its magic.
    pub fn open(path: &Path) -> Result<Image, DiskError> {
        let open_err = |source| DiskError::Open {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(open_err)?;
        let len = file.metadata().map_err(open_err)?.len();
        let mut magic = [0u8; 8];
        let n = file.read_at(&mut magic, 0).map_err(open_err)?;
        if &magic[..n.min(8)] == b"conectix" {
            return Err(DiskError::Vhd {
                path: path.to_path_buf(),
            });
        }
        let raw = RawFile { file, len };
        if n >= 4 && &magic[..4] == qcow2::MAGIC {
            let q = Qcow2::open(Box::new(raw)).map_err(|source| DiskError::Qcow2 {
                path: path.to_path_buf(),
                source,
            })?;
            return Ok(Image {
                path: path.to_path_buf(),
                format: Format::Qcow2,
                disk: Box::new(q),
            });
        }
        Ok(Image {
            path: path.to_path_buf(),
            format: Format::Raw,
            disk: Box::new(raw),
        })
    }

    /// Wraps an in-memory disk (tests, fuzzing).
    pub fn from_source(path: &Path, format: Format, disk: Box<dyn ImageSource>) -> Image {
        Image {
            path: path.to_path_buf(),
            format,
            disk,
        }
    }

    pub fn disk(&self) -> &dyn ImageSource {
        &*self.disk
    }
}

/// Which partition table the disk has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Table {
    Gpt,
    Mbr,
    /// A filesystem on the whole disk.
    None,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FsKind {
    Ext4 {
        label: String,
        uuid: String,
    },
    Vfat,
    /// An ext2/3/4 magic whose superblock does not hold together (or
    /// asks for features this reader lacks): named as such, not as an
    /// unknown filesystem.
    BadExt4 {
        detail: String,
    },
    /// Nothing this reader recognizes.
    Other,
}

/// A partition (or the whole disk) and what is on it.
#[derive(Clone, Debug)]
pub struct Volume {
    /// Partition number as Linux counts it (None: the whole disk).
    pub number: Option<u32>,
    /// Byte offset and length.
    pub start: u64,
    pub len: u64,
    pub fs: FsKind,
    /// GPT partition name and unique GUID (fstab's PARTLABEL=/PARTUUID=).
    pub part_label: Option<String>,
    pub part_uuid: Option<String>,
}

impl Volume {
    pub fn describe(&self) -> String {
        let what = match &self.fs {
            FsKind::Ext4 { label, .. } if !label.is_empty() => format!("ext4 '{label}'"),
            FsKind::Ext4 { .. } => "ext4".into(),
            FsKind::Vfat => "vfat".into(),
            FsKind::BadExt4 { detail } => format!("ext4, unreadable: {detail}"),
            FsKind::Other => "unknown filesystem".into(),
        };
        match self.number {
            Some(n) => format!("partition {n} ({what})"),
            None => format!("whole disk ({what})"),
        }
    }

    pub fn end(&self) -> u64 {
        self.start.saturating_add(self.len)
    }
}

/// The disk's table and volumes.
#[derive(Clone, Debug)]
pub struct Layout {
    pub table: Table,
    pub disk_size: u64,
    pub volumes: Vec<Volume>,
    /// Something worth telling (e.g. a GPT whose backup is stale).
    pub notes: Vec<String>,
}

/// `Read + Seek` over an [`ImageSource`], for the partition-table readers.
struct Cursor<'a> {
    src: &'a dyn ImageSource,
    pos: u64,
}

impl Read for Cursor<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.src.size().saturating_sub(self.pos);
        let n = (buf.len() as u64).min(left) as usize;
        self.src.read_at(self.pos, &mut buf[..n])?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for Cursor<'_> {
    fn seek(&mut self, p: SeekFrom) -> std::io::Result<u64> {
        let new = match p {
            SeekFrom::Start(o) => Some(o),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
            SeekFrom::End(d) => self.src.size().checked_add_signed(d),
        };
        self.pos = new.ok_or_else(|| std::io::Error::other("seek out of range"))?;
        Ok(self.pos)
    }
}

/// No partition table: one volume, the whole disk (a bare filesystem, or
/// nothing dibr can read).
fn whole_disk(src: &dyn ImageSource, size: u64, notes: Vec<String>) -> Layout {
    Layout {
        table: Table::None,
        disk_size: size,
        volumes: vec![Volume {
            number: None,
            start: 0,
            len: size,
            fs: probe(src, 0),
            part_label: None,
            part_uuid: None,
        }],
        notes,
    }
}

fn probe(src: &dyn ImageSource, start: u64) -> FsKind {
    match Ext4::open(src, start) {
        Ok(fs) => {
            return FsKind::Ext4 {
                label: fs.label().to_string(),
                uuid: fs.uuid(),
            }
        }
        Err(ExtError::NotExt4) => {}
        Err(ExtError::Superblock(d)) => {
            return FsKind::BadExt4 {
                detail: format!("corrupt superblock ({d})"),
            }
        }
        Err(e) => {
            return FsKind::BadExt4 {
                detail: e.to_string(),
            }
        }
    }
    let mut bs = [0u8; 512];
    if src.read_at(start, &mut bs).is_ok()
        && bs[510..512] == [0x55, 0xAA]
        && (&bs[82..87] == b"FAT32" || &bs[54..57] == b"FAT")
    {
        return FsKind::Vfat;
    }
    FsKind::Other
}

/// Finds the partition table (GPT with 512- or 4096-byte sectors, then
/// MBR) or a filesystem on the whole disk.
pub fn layout(img: &Image) -> Result<Layout, DiskError> {
    let src = img.disk();
    let size = src.size();
    let mut notes = Vec::new();
    let table_err = |source| DiskError::Table {
        path: img.path.clone(),
        source,
    };
    // A bare filesystem first: an ext4 superblock at 1024 on the disk.
    if Ext4::open(src, 0).is_ok() {
        return Ok(whole_disk(src, size, notes));
    }
    for sector in [512u64, 4096] {
        let mut c = Cursor { src, pos: 0 };
        let gpt = match read_gpt(&mut c, sector) {
            Ok(g) => Some(g),
            Err(TableError::NoGpt(1)) => None,
            Err(e) => {
                let mut c = Cursor { src, pos: 0 };
                match read_gpt_primary(&mut c, sector) {
                    Ok(g) => {
                        notes.push(format!("GPT backup not usable ({e}); read the primary"));
                        Some(g)
                    }
                    Err(TableError::NoGpt(_)) => None,
                    Err(e) => return Err(table_err(e)),
                }
            }
        };
        if let Some(g) = gpt {
            let volumes = g
                .entries
                .iter()
                .map(|(n, e)| {
                    let start = e.first_lba.saturating_mul(sector);
                    let len = (e.last_lba - e.first_lba + 1).saturating_mul(sector);
                    Volume {
                        number: Some(*n),
                        start,
                        len,
                        fs: probe(src, start),
                        part_label: Some(e.name.clone()),
                        part_uuid: Some(e.part_guid.to_string().to_lowercase()),
                    }
                })
                .collect();
            return Ok(Layout {
                table: Table::Gpt,
                disk_size: size,
                volumes,
                notes,
            });
        }
    }
    let mut c = Cursor { src, pos: 0 };
    match read_mbr(&mut c) {
        Ok(parts) if !parts.is_empty() => {
            let volumes = parts
                .iter()
                .filter(|p| !matches!(p.ptype, 0x05 | 0x0F | 0x85))
                .map(|p| {
                    let start = p.start.saturating_mul(512);
                    Volume {
                        number: Some(p.number),
                        start,
                        len: p.sectors.saturating_mul(512),
                        fs: probe(src, start),
                        part_label: None,
                        part_uuid: None,
                    }
                })
                .collect();
            Ok(Layout {
                table: Table::Mbr,
                disk_size: size,
                volumes,
                notes,
            })
        }
        Ok(_) | Err(TableError::NoSignature(0)) => Ok(whole_disk(src, size, notes)),
        Err(e) => Err(table_err(e)),
    }
}
