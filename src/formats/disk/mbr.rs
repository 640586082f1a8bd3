//! MBR (DOS) partition tables written the way diskimage-builder's
//! `level1/mbr.py` writes them, so a dibr image and a DIB image of the same
//! layout carry the same table bytes (apart from the disk id).
//!
//! Layout: primary partitions first (table entries 0..), then — on the first
//! non-primary partition — one extended partition (type 0x0F) spanning the rest
//! of the disk, with an EBR chain inside: every logical partition is preceded
//! by its EBR, one alignment unit (1 MiB by default) before its data. Logical
//! partitions are numbered from 5. Partition starts and ends are aligned.
//!
//! CHS fields reproduce DIB byte for byte, including its quirks: a fixed
//! geometry of 254 heads / 63 sectors (never changing with the disk size),
//! the end CHS computed from `start + length` (one past the last sector), and
//! the cylinder's high bits encoded as `cylinder / 4` OR-ed into the sector
//! byte. Linux ignores CHS for LBA partitions; these fields only matter for
//! byte-compatibility with DIB.

use std::io::{Seek, SeekFrom, Write};

/// Sector size DIB's MBR writer assumes.
pub const SECTOR: u64 = 512;

const HEADS: u64 = 254;
const SECTORS_PER_TRACK: u64 = 63;
const MAX_CYLINDERS: u64 = 1023;
const OFF_DISK_ID: u64 = 440;
const OFF_TABLE: u64 = 446;
const OFF_SIGNATURE: u64 = 510;
/// EBR link entries (DIB: "extended CHS").
pub const TYPE_EXTENDED_CHS: u8 = 0x05;
/// The extended partition in the MBR (DIB: "extended LBA").
pub const TYPE_EXTENDED_LBA: u8 = 0x0F;
/// DIB's default partition type (Linux).
pub const TYPE_LINUX: u8 = 0x83;

#[derive(Debug, thiserror::Error)]
pub enum MbrError {
    #[error("disk size {0} is not a multiple of {SECTOR} bytes")]
    DiskSize(u64),
    #[error("alignment {0} must be a non-zero multiple of {SECTOR} bytes")]
    Alignment(u64),
    #[error("All primary partitions must be given first")]
    PrimaryAfterLogical,
    #[error("an MBR holds at most 4 primary partitions (3 when logical partitions follow)")]
    TooManyPrimaries,
    #[error("partition {number} (sectors {start}..{end}) does not fit on a disk of {disk_sectors} sectors")]
    DoesNotFit {
        number: u32,
        start: u64,
        end: u64,
        disk_sectors: u64,
    },
    #[error("partition size {0} is zero or too small for one sector")]
    Empty(u64),
    #[error("sector {0} is beyond what an MBR can address (2 TiB with 512-byte sectors)")]
    TooLarge(u64),
    #[error("partition type 0x{0:02x} cannot be used for a partition (0 marks an unused slot, 0x05/0x0f/0x85 are extended partitions)")]
    BadType(u8),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// One partition as the writer placed it (absolute 512-byte sectors).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacedPartition {
    /// Linux partition number: 1..4 primary, 5.. logical.
    pub number: u32,
    pub start: u64,
    pub sectors: u64,
    pub ptype: u8,
    pub boot: bool,
}

/// Incremental MBR writer, mirroring DIB's `MBR` context manager.
pub struct MbrWriter<W: Write + Seek> {
    dev: W,
    disk_sectors: u64,
    align: u64,
    /// Start of the extended partition (before: start of the first partition).
    abs_start: u64,
    next_free: u64,
    last_ebr: u64,
    number: u32,
    primaries: u32,
    logicals: u32,
    placed: Vec<PlacedPartition>,
}

fn lba2chs(lba: u64) -> (u64, u64, u64) {
    if lba > HEADS * SECTORS_PER_TRACK * MAX_CYLINDERS {
        return (MAX_CYLINDERS, HEADS, SECTORS_PER_TRACK);
    }
    (
        lba / (HEADS * SECTORS_PER_TRACK),
        (lba / SECTORS_PER_TRACK) % HEADS,
        lba % SECTORS_PER_TRACK + 1,
    )
}

/// DIB's CHS encoding (head, sector|cyl/4, cyl%256) — see the module docs.
fn encode_chs((c, h, s): (u64, u64, u64)) -> [u8; 3] {
    [h as u8, (s | (c / 4)) as u8, (c % 256) as u8]
}

/// One 16-byte partition table entry as DIB writes it.
pub fn entry_bytes(boot: bool, ptype: u8, lba_start: u64, lba_len: u64) -> [u8; 16] {
    let mut e = [0u8; 16];
    e[0] = if boot { 0x80 } else { 0 };
    e[1..4].copy_from_slice(&encode_chs(lba2chs(lba_start)));
    e[4] = ptype;
    e[5..8].copy_from_slice(&encode_chs(lba2chs(lba_start + lba_len)));
    e[8..12].copy_from_slice(&(lba_start as u32).to_le_bytes());
    e[12..16].copy_from_slice(&(lba_len as u32).to_le_bytes());
    e
}

fn u32_field(v: u64) -> Result<u64, MbrError> {
    if v > u32::MAX as u64 {
        Err(MbrError::TooLarge(v))
    } else {
        Ok(v)
    }
}

impl<W: Write + Seek> MbrWriter<W> {
    /// Starts a table on `dev` (a disk of `disk_size` bytes): writes the disk
    /// id and the boot signature. Nothing else of sector 0 is touched, so boot
    /// code already there survives.
    pub fn new(mut dev: W, disk_size: u64, align: u64, disk_id: u32) -> Result<Self, MbrError> {
        if !disk_size.is_multiple_of(SECTOR) {
            return Err(MbrError::DiskSize(disk_size));
        }
        if align == 0 || !align.is_multiple_of(SECTOR) {
            return Err(MbrError::Alignment(align));
        }
        dev.seek(SeekFrom::Start(OFF_DISK_ID))?;
        dev.write_all(&disk_id.to_le_bytes())?;
        dev.seek(SeekFrom::Start(OFF_SIGNATURE))?;
        dev.write_all(&[0x55, 0xAA])?;
        let align = align / SECTOR;
        Ok(MbrWriter {
            dev,
            disk_sectors: disk_size / SECTOR,
            align,
            abs_start: align,
            next_free: align,
            last_ebr: 0,
            number: 0,
            primaries: 0,
            logicals: 0,
            placed: Vec::new(),
        })
    }

    fn align_up(&self, lba: u64) -> u64 {
        lba.div_ceil(self.align) * self.align
    }

    /// Not yet partitioned bytes, as DIB's `MBR.free()` computes them (the
    /// space for the next partition's alignment gap is already deducted).
    /// `NN%` sizes are taken of this.
    pub fn free(&self) -> u64 {
        (self.disk_sectors * SECTOR).saturating_sub(
            self.next_free
                .saturating_add(self.align)
                .saturating_mul(SECTOR),
        )
    }

    fn write_entry(
        &mut self,
        block: u64,
        index: u64,
        boot: bool,
        ptype: u8,
        start: u64,
        len: u64,
    ) -> Result<(), MbrError> {
        let e = entry_bytes(boot, ptype, u32_field(start)?, u32_field(len)?);
        self.dev
            .seek(SeekFrom::Start(block * SECTOR + OFF_TABLE + 16 * index))?;
        self.dev.write_all(&e)?;
        Ok(())
    }

    fn check_fits(&self, number: u32, start: u64, end: u64) -> Result<(), MbrError> {
        if end > self.disk_sectors {
            return Err(MbrError::DoesNotFit {
                number,
                start,
                end,
                disk_sectors: self.disk_sectors,
            });
        }
        Ok(())
    }

    /// Adds a partition of `size` bytes (rounded down to whole sectors) and
    /// returns its Linux partition number.
    pub fn add_partition(
        &mut self,
        primary: bool,
        boot: bool,
        size: u64,
        ptype: u8,
    ) -> Result<u32, MbrError> {
        if matches!(ptype, 0x00 | 0x05 | 0x0f | 0x85) {
            return Err(MbrError::BadType(ptype));
        }
        let len = size / SECTOR;
        if len == 0 {
            return Err(MbrError::Empty(size));
        }
        if primary {
            if self.logicals > 0 {
                return Err(MbrError::PrimaryAfterLogical);
            }
            if self.primaries >= 4 {
                return Err(MbrError::TooManyPrimaries);
            }
            let start = self.align_up(self.next_free);
            let end = self.align_up(start + len);
            self.check_fits(self.number + 1, start, start + len)?;
            self.write_entry(0, self.number as u64, boot, ptype, start, len)?;
            self.next_free = end;
            self.primaries += 1;
            return Ok(self.record(start, len, ptype, boot));
        }
        if self.logicals == 0 {
            if self.primaries >= 4 {
                return Err(MbrError::TooManyPrimaries);
            }
            self.abs_start = self.next_free;
            let ext_len = self.disk_sectors.saturating_sub(self.next_free);
            self.write_entry(
                0,
                self.number as u64,
                false,
                TYPE_EXTENDED_LBA,
                self.next_free,
                ext_len,
            )?;
            self.number = 4;
        }
        let ebr = self.next_free;
        let start = self.align_up(ebr + 1);
        let end = self.align_up(start + len);
        self.check_fits(self.number + 1, start, start + len)?;
        if self.last_ebr != 0 {
            let prev = self.last_ebr;
            self.write_entry(
                prev,
                1,
                false,
                TYPE_EXTENDED_CHS,
                ebr - self.abs_start,
                end - ebr,
            )?;
        }
        let rel = self.align_up(1);
        self.write_entry(ebr, 0, boot, ptype, rel, len)?;
        self.dev
            .seek(SeekFrom::Start(ebr * SECTOR + OFF_SIGNATURE))?;
        self.dev.write_all(&[0x55, 0xAA])?;
        self.next_free = end;
        self.last_ebr = ebr;
        self.logicals += 1;
        Ok(self.record(ebr + rel, len, ptype, boot))
    }

    /// The next partition number, given to the partition just written
    /// (`sectors` from `start`) and remembered for [`Self::partitions`].
    fn record(&mut self, start: u64, sectors: u64, ptype: u8, boot: bool) -> u32 {
        self.number += 1;
        self.placed.push(PlacedPartition {
            number: self.number,
            start,
            sectors,
            ptype,
            boot,
        });
        self.number
    }

    /// Partitions placed so far.
    pub fn partitions(&self) -> &[PlacedPartition] {
        &self.placed
    }

    /// Flushes and hands the device back.
    pub fn finish(mut self) -> Result<(W, Vec<PlacedPartition>), MbrError> {
        self.dev.flush()?;
        Ok((self.dev, self.placed))
    }
}

/// A partition for [`write_mbr`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MbrPartition {
    pub primary: bool,
    pub boot: bool,
    /// Bytes.
    pub size: u64,
    pub ptype: u8,
}

/// Writes a whole table in one go (see [`MbrWriter`]).
pub fn write_mbr<W: Write + Seek>(
    dev: W,
    disk_size: u64,
    align: u64,
    disk_id: u32,
    parts: &[MbrPartition],
) -> Result<Vec<PlacedPartition>, MbrError> {
    let mut w = MbrWriter::new(dev, disk_size, align, disk_id)?;
    for p in parts {
        w.add_partition(p.primary, p.boot, p.size, p.ptype)?;
    }
    Ok(w.finish()?.1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    const MIB: u64 = 1 << 20;

    #[test]
    fn chs_bytes_as_dib_writes_them() {
        // 10 MiB at LBA 2048: start (0,32,33); end from 22528 (one past): (1,103,38).
        let e = entry_bytes(false, 0x83, 2048, 20480);
        assert_eq!(e[1..4], [32, 33, 0]);
        assert_eq!(e[5..8], [103, 38, 1]);
        // DIB's high cylinder bits: cylinder / 4 OR-ed into the sector byte.
        let lba = 300 * 254 * 63;
        assert_eq!(encode_chs(lba2chs(lba)), [0, 1 | 75, 44]);
        // Beyond 1023/254/63: the maximum.
        let e = entry_bytes(true, 0x83, 2048, 100_000_000);
        assert_eq!(e[0], 0x80);
        assert_eq!(e[5..8], [254, 0xff, 0xff]);
    }

    #[test]
    fn one_primary_is_forty_bytes() {
        let mut c = Cursor::new(vec![0u8; 4 * MIB as usize]);
        write_mbr(
            &mut c,
            4 * MIB,
            MIB,
            0x0102_0304,
            &[MbrPartition {
                primary: true,
                boot: true,
                size: MIB,
                ptype: 0x83,
            }],
        )
        .unwrap();
        let b = c.into_inner();
        assert!(b.iter().filter(|&&x| x != 0).count() <= 4 + 2 + 16);
        assert_eq!(b[440..444], [4, 3, 2, 1]);
        assert_eq!(b[510..512], [0x55, 0xAA]);
        assert_eq!(b[446..462], entry_bytes(true, 0x83, 2048, 2048));
        assert!(b[512..].iter().all(|&x| x == 0));
    }

    #[test]
    fn errors() {
        let c = || Cursor::new(Vec::new());
        assert!(matches!(
            MbrWriter::new(c(), 1000, MIB, 0),
            Err(MbrError::DiskSize(_))
        ));
        assert!(matches!(
            MbrWriter::new(c(), 1 << 30, 100, 0),
            Err(MbrError::Alignment(_))
        ));
        let mut w = MbrWriter::new(c(), 1 << 30, MIB, 0).unwrap();
        w.add_partition(false, false, MIB, 0x83).unwrap();
        assert!(matches!(
            w.add_partition(true, false, MIB, 0x83),
            Err(MbrError::PrimaryAfterLogical)
        ));
        let mut w = MbrWriter::new(c(), 1 << 30, MIB, 0).unwrap();
        for _ in 0..4 {
            w.add_partition(true, false, MIB, 0x83).unwrap();
        }
        assert!(matches!(
            w.add_partition(true, false, MIB, 0x83),
            Err(MbrError::TooManyPrimaries)
        ));
        assert!(matches!(
            w.add_partition(false, false, MIB, 0x83),
            Err(MbrError::TooManyPrimaries)
        ));
        let mut w = MbrWriter::new(c(), 16 * MIB, MIB, 0).unwrap();
        assert!(matches!(
            w.add_partition(true, false, 0, 0x83),
            Err(MbrError::Empty(0))
        ));
        assert_eq!(w.free(), 14 * MIB);
        assert!(matches!(
            w.add_partition(true, false, 16 * MIB, 0x83),
            Err(MbrError::DoesNotFit { .. })
        ));
        w.add_partition(true, false, w.free(), 0x83).unwrap();
        let mut w = MbrWriter::new(c(), 4 << 40, MIB, 0).unwrap();
        assert!(matches!(
            w.add_partition(true, false, 3 << 40, 0x83),
            Err(MbrError::TooLarge(_))
        ));
    }
}
