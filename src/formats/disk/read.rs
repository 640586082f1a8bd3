//! Small, defensive readers for the tables `mbr` and `gpt` write — used by
//! the tests and the fuzz targets; every field read from disk is checked
//! before use, nothing panics on hostile input.

use std::io::{Read, Seek, SeekFrom};

use super::gpt::{GptEntry, Guid};

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("no 0x55AA signature in sector {0}")]
    NoSignature(u64),
    #[error("no GPT header (\"EFI PART\") at LBA {0}")]
    NoGpt(u64),
    #[error("GPT {0}")]
    Corrupt(&'static str),
    #[error("EBR chain loops or is longer than {0} entries")]
    EbrChain(usize),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// A partition read from an MBR/EBR chain (absolute 512-byte sectors).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MbrRead {
    pub number: u32,
    pub start: u64,
    pub sectors: u64,
    pub ptype: u8,
    pub boot: bool,
}

fn read_at<R: Read + Seek>(r: &mut R, off: u64, buf: &mut [u8]) -> Result<(), ReadError> {
    r.seek(SeekFrom::Start(off))?;
    r.read_exact(buf)?;
    Ok(())
}

fn le32(b: &[u8]) -> u64 {
    u32::from_le_bytes(b[..4].try_into().unwrap()) as u64
}
fn le64(b: &[u8]) -> u64 {
    u64::from_le_bytes(b[..8].try_into().unwrap())
}

const MAX_LOGICAL: usize = 4096;

/// Reads the MBR at sector 0 and, for an extended partition (0x05, 0x0F,
/// 0x85), its EBR chain, as Linux numbers them: primaries 1–4 by slot,
/// logicals from 5. Empty slots (type 0) are skipped; the extended
/// partition itself is listed.
pub fn read_mbr<R: Read + Seek>(r: &mut R) -> Result<Vec<MbrRead>, ReadError> {
    let mut s = [0u8; 512];
    read_at(r, 0, &mut s)?;
    if s[510..512] != [0x55, 0xAA] {
        return Err(ReadError::NoSignature(0));
    }
    let mut out = Vec::new();
    let mut ext = None;
    for i in 0..4 {
        let e = &s[446 + 16 * i..462 + 16 * i];
        if e[4] == 0 {
            continue;
        }
        let p = MbrRead {
            number: i as u32 + 1,
            start: le32(&e[8..]),
            sectors: le32(&e[12..]),
            ptype: e[4],
            boot: e[0] & 0x80 != 0,
        };
        if matches!(p.ptype, 0x05 | 0x0F | 0x85) && ext.is_none() {
            ext = Some(p.start);
        }
        out.push(p);
    }
    if let Some(ext_start) = ext {
        let mut ebr = ext_start;
        let mut number = 5;
        let mut seen = std::collections::HashSet::new();
        loop {
            if !seen.insert(ebr) || seen.len() > MAX_LOGICAL {
                return Err(ReadError::EbrChain(MAX_LOGICAL));
            }
            read_at(r, ebr.saturating_mul(512), &mut s)?;
            if s[510..512] != [0x55, 0xAA] {
                return Err(ReadError::NoSignature(ebr));
            }
            let e = &s[446..462];
            if e[4] != 0 {
                out.push(MbrRead {
                    number,
                    start: ebr + le32(&e[8..]),
                    sectors: le32(&e[12..]),
                    ptype: e[4],
                    boot: e[0] & 0x80 != 0,
                });
                number += 1;
            }
            let link = &s[462..478];
            if link[4] == 0 || le32(&link[8..]) == 0 {
                break;
            }
            ebr = ext_start + le32(&link[8..]);
        }
    }
    Ok(out)
}

/// A GPT as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GptRead {
    pub disk_guid: Guid,
    pub first_usable: u64,
    pub last_usable: u64,
    pub backup_lba: u64,
    /// Used entries (non-zero type), with their 1-based slot number.
    pub entries: Vec<(u32, GptEntry)>,
}

/// Reads and verifies a GPT header at `lba` and its entry array.
fn read_header<R: Read + Seek>(r: &mut R, sector: u64, lba: u64) -> Result<GptRead, ReadError> {
    let mut h = vec![0u8; sector as usize];
    read_at(
        r,
        lba.checked_mul(sector)
            .ok_or(ReadError::Corrupt("header LBA"))?,
        &mut h,
    )?;
    if &h[0..8] != b"EFI PART" {
        return Err(ReadError::NoGpt(lba));
    }
    let hsize = le32(&h[12..]) as usize;
    if !(92..=sector as usize).contains(&hsize) {
        return Err(ReadError::Corrupt("header size"));
    }
    let crc = le32(&h[16..]) as u32;
    let mut hc = h[..hsize].to_vec();
    hc[16..20].fill(0);
    if crc32fast::hash(&hc) != crc {
        return Err(ReadError::Corrupt("header CRC mismatch"));
    }
    if le64(&h[24..]) != lba {
        return Err(ReadError::Corrupt("header's own LBA is wrong"));
    }
    let n = le32(&h[80..]) as usize;
    let esize = le32(&h[84..]) as usize;
    if esize < 128 || !esize.is_multiple_of(8) || n.saturating_mul(esize) > 1 << 20 {
        return Err(ReadError::Corrupt("entry array size"));
    }
    let array_lba = le64(&h[72..]);
    let mut a = vec![0u8; n * esize];
    read_at(
        r,
        array_lba
            .checked_mul(sector)
            .ok_or(ReadError::Corrupt("array LBA"))?,
        &mut a,
    )?;
    if crc32fast::hash(&a) != le32(&h[88..]) as u32 {
        return Err(ReadError::Corrupt("entry array CRC mismatch"));
    }
    let mut entries = Vec::new();
    for (i, e) in a.chunks_exact(esize).enumerate() {
        let t = Guid::from_disk(e[0..16].try_into().unwrap());
        if t == Guid::ZERO {
            continue;
        }
        let units: Vec<u16> = e[56..128]
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .take_while(|&u| u != 0)
            .collect();
        entries.push((
            i as u32 + 1,
            GptEntry {
                type_guid: t,
                part_guid: Guid::from_disk(e[16..32].try_into().unwrap()),
                first_lba: le64(&e[32..]),
                last_lba: le64(&e[40..]),
                attributes: le64(&e[48..]),
                name: String::from_utf16_lossy(&units),
            },
        ));
    }
    Ok(GptRead {
        disk_guid: Guid::from_disk(h[56..72].try_into().unwrap()),
        first_usable: le64(&h[40..]),
        last_usable: le64(&h[48..]),
        backup_lba: le64(&h[32..]),
        entries,
    })
}

/// Reads the primary GPT alone (its CRCs and entry bounds checked), for
/// images from other tools whose backup may be stale or gone (a disk
/// enlarged with `qemu-img resize` keeps its backup in the middle until
/// the first boot moves it).
pub fn read_gpt_primary<R: Read + Seek>(r: &mut R, sector: u64) -> Result<GptRead, ReadError> {
    if sector != 512 && sector != 4096 {
        return Err(ReadError::Corrupt("sector size"));
    }
    let p = read_header(r, sector, 1)?;
    for (_, e) in &p.entries {
        if e.first_lba < p.first_usable || e.last_lba > p.last_usable || e.first_lba > e.last_lba {
            return Err(ReadError::Corrupt("entry outside the usable range"));
        }
    }
    Ok(p)
}

/// Reads the primary GPT and checks the backup agrees with it (CRCs, disk
/// GUID, entries) and that every entry lies within the usable range.
pub fn read_gpt<R: Read + Seek>(r: &mut R, sector: u64) -> Result<GptRead, ReadError> {
    if sector != 512 && sector != 4096 {
        return Err(ReadError::Corrupt("sector size"));
    }
    let p = read_header(r, sector, 1)?;
    let b = read_header(r, sector, p.backup_lba)?;
    if b.disk_guid != p.disk_guid
        || b.entries != p.entries
        || b.first_usable != p.first_usable
        || b.last_usable != p.last_usable
        || b.backup_lba != 1
    {
        return Err(ReadError::Corrupt("backup header differs from primary"));
    }
    if p.first_usable > p.last_usable {
        return Err(ReadError::Corrupt("usable range"));
    }
    for (_, e) in &p.entries {
        if e.first_lba < p.first_usable || e.last_lba > p.last_usable || e.first_lba > e.last_lba {
            return Err(ReadError::Corrupt("entry outside the usable range"));
        }
    }
    Ok(p)
}
