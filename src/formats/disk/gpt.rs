//! GPT writer (UEFI 2.x): protective MBR, primary header + entry array at the
//! start, backup entry array + header at the end, CRC32s. Partitions are
//! placed the way DIB's `sgdisk -n i:0:+<N>M` call places them: each starts at
//! the first free sector aligned to 1 MiB, in order.
//!
//! GUIDs are either derived from a seed (reproducible builds:
//! `SOURCE_DATE_EPOCH`) or random.

use std::io::{Seek, SeekFrom, Write};

use sha2::{Digest, Sha256};

/// A GUID in its canonical (string-order) bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Guid(pub [u8; 16]);

impl Guid {
    pub const ZERO: Guid = Guid([0; 16]);

    /// Parses `XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX` (any case).
    pub fn parse(s: &str) -> Option<Guid> {
        let hex: Vec<u8> = s.bytes().filter(|&b| b != b'-').collect();
        if hex.len() != 32 || s.len() != 36 || !hex.iter().all(u8::is_ascii_hexdigit) {
            return None;
        }
        for (i, b) in s.bytes().enumerate() {
            if matches!(i, 8 | 13 | 18 | 23) != (b == b'-') {
                return None;
            }
        }
        let mut out = [0u8; 16];
        for (i, o) in out.iter_mut().enumerate() {
            let pair = std::str::from_utf8(&hex[2 * i..2 * i + 2]).ok()?;
            *o = u8::from_str_radix(pair, 16).ok()?;
        }
        Some(Guid(out))
    }

    /// On-disk (mixed-endian) form.
    pub fn to_disk(self) -> [u8; 16] {
        let g = self.0;
        let mut d = g;
        d[0..4].copy_from_slice(&[g[3], g[2], g[1], g[0]]);
        d[4..6].copy_from_slice(&[g[5], g[4]]);
        d[6..8].copy_from_slice(&[g[7], g[6]]);
        d
    }

    pub fn from_disk(d: [u8; 16]) -> Guid {
        // the swap is its own inverse
        Guid(Guid(d).to_disk())
    }

    /// A version-4-shaped GUID derived from `seed` and `what`: same inputs,
    /// same GUID.
    pub fn derived(seed: &[u8], what: &str) -> Guid {
        let mut h = Sha256::new();
        h.update(b"dibr-gpt-guid\0");
        h.update((seed.len() as u64).to_le_bytes());
        h.update(seed);
        h.update(what.as_bytes());
        let mut g = [0u8; 16];
        g.copy_from_slice(&h.finalize()[..16]);
        g[6] = (g[6] & 0x0f) | 0x40;
        g[8] = (g[8] & 0x3f) | 0x80;
        Guid(g)
    }

    /// A random version-4 GUID (from /dev/urandom).
    pub fn random() -> std::io::Result<Guid> {
        use std::io::Read;
        let mut g = [0u8; 16];
        std::fs::File::open("/dev/urandom")?.read_exact(&mut g)?;
        g[6] = (g[6] & 0x0f) | 0x40;
        g[8] = (g[8] & 0x3f) | 0x80;
        Ok(Guid(g))
    }
}

impl std::fmt::Display for Guid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let g = &self.0;
        for (i, b) in g.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

/// sgdisk's four-hex-digit type codes DIB configs use, and their GUIDs.
pub const TYPE_CODES: &[(u16, &str, &str)] = &[
    (
        0x0700,
        "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7",
        "Microsoft basic data",
    ),
    (
        0x4100,
        "9E1A2D38-C612-4316-AA26-8B49521E5A8B",
        "PowerPC PReP boot",
    ),
    (0x8200, "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F", "Linux swap"),
    (
        0x8300,
        "0FC63DAF-8483-4772-8E79-3D69D8477DE4",
        "Linux filesystem",
    ),
    (
        0x8302,
        "933AC7E1-2EB4-4F13-B844-0E14E2AEF915",
        "Linux /home",
    ),
    (
        0x8303,
        "44479540-F297-41B2-9AF7-D131D5F0458A",
        "Linux x86 root (/)",
    ),
    (
        0x8304,
        "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709",
        "Linux x86-64 root (/)",
    ),
    (
        0x8305,
        "B921B045-1DF0-41C3-AF44-4C6F280D3FAE",
        "Linux ARM64 root (/)",
    ),
    (0x8e00, "E6D6D379-F507-44C2-A23C-238F2A3DF928", "Linux LVM"),
    (
        0xea00,
        "BC13C2FF-59E6-4262-A352-B275FD6F7172",
        "Freedesktop $BOOT",
    ),
    (
        0xef00,
        "C12A7328-F81F-11D2-BA4B-00A0C93EC93B",
        "EFI system partition",
    ),
    (
        0xef02,
        "21686148-6449-6E6F-744E-656564454649",
        "BIOS boot partition",
    ),
    (0xfd00, "A19D880F-05FC-4D3B-A006-743F0F84911E", "Linux RAID"),
];

/// Type GUID for an sgdisk code such as `EF00` (case-insensitive) or a full
/// GUID string.
pub fn type_guid(code: &str) -> Option<Guid> {
    if let Some(g) = Guid::parse(code) {
        return Some(g);
    }
    if code.len() != 4 {
        return None;
    }
    let n = u16::from_str_radix(code, 16).ok()?;
    TYPE_CODES
        .iter()
        .find(|(c, _, _)| *c == n)
        .map(|(_, g, _)| Guid::parse(g).expect("table GUID"))
}

/// The sgdisk code of a type GUID, if it is one of [`TYPE_CODES`].
pub fn type_code(g: Guid) -> Option<u16> {
    TYPE_CODES
        .iter()
        .find(|(_, s, _)| Guid::parse(s) == Some(g))
        .map(|(c, _, _)| *c)
}

/// One partition entry, placed (inclusive LBA range).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GptEntry {
    pub type_guid: Guid,
    pub part_guid: Guid,
    pub first_lba: u64,
    pub last_lba: u64,
    pub attributes: u64,
    /// At most 36 UTF-16 code units.
    pub name: String,
}

/// A partition to place: size in bytes (rounded down to whole sectors).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GptPartition {
    pub name: String,
    pub type_guid: Guid,
    pub size: u64,
    pub attributes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum GptError {
    #[error("sector size {0} is not 512 or 4096")]
    SectorSize(u64),
    #[error("disk of {0} bytes is too small for a GPT")]
    DiskTooSmall(u64),
    #[error("alignment {0} must be a non-zero multiple of the sector size")]
    Alignment(u64),
    #[error("partition {index} ({name}) of {size} bytes does not fit (first free sector {start}, last usable {last_usable})")]
    DoesNotFit {
        index: usize,
        name: String,
        size: u64,
        start: u64,
        last_usable: u64,
    },
    #[error("partition name {0:?} is longer than 36 UTF-16 code units")]
    NameTooLong(String),
    #[error("partition {0} has the all-zero type GUID (marks an unused entry)")]
    ZeroType(String),
    #[error("at most {ENTRIES} partitions")]
    TooMany,
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// Number of entries in the array (as sgdisk and the UEFI minimum).
pub const ENTRIES: usize = 128;
const ENTRY_SIZE: usize = 128;

/// Geometry of a GPT disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub sector: u64,
    pub sectors: u64,
}

impl Geometry {
    pub fn new(disk_size: u64, sector: u64) -> Result<Self, GptError> {
        if sector != 512 && sector != 4096 {
            return Err(GptError::SectorSize(sector));
        }
        let g = Geometry {
            sector,
            sectors: disk_size / sector,
        };
        if g.sectors < 2 * g.array_sectors() + 3 + 1 {
            return Err(GptError::DiskTooSmall(disk_size));
        }
        Ok(g)
    }
    fn array_sectors(&self) -> u64 {
        ((ENTRIES * ENTRY_SIZE) as u64).div_ceil(self.sector)
    }
    pub fn first_usable(&self) -> u64 {
        2 + self.array_sectors()
    }
    pub fn last_usable(&self) -> u64 {
        self.sectors - 2 - self.array_sectors()
    }
}

/// Places partitions one after another, each at the next free sector aligned
/// to `align` bytes (sgdisk `-n i:0:+SIZE`).
pub fn place(
    geo: Geometry,
    align: u64,
    parts: &[GptPartition],
    guids: &GuidSource,
) -> Result<Vec<GptEntry>, GptError> {
    if align == 0 || !align.is_multiple_of(geo.sector) {
        return Err(GptError::Alignment(align));
    }
    if parts.len() > ENTRIES {
        return Err(GptError::TooMany);
    }
    let al = align / geo.sector;
    let mut next = geo.first_usable();
    let mut out = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        if p.type_guid == Guid::ZERO {
            return Err(GptError::ZeroType(p.name.clone()));
        }
        if p.name.encode_utf16().count() > 36 {
            return Err(GptError::NameTooLong(p.name.clone()));
        }
        let start = next.div_ceil(al) * al;
        let len = p.size / geo.sector;
        let err = || GptError::DoesNotFit {
            index: i + 1,
            name: p.name.clone(),
            size: p.size,
            start,
            last_usable: geo.last_usable(),
        };
        if len == 0 {
            return Err(err());
        }
        let last = start.checked_add(len - 1).ok_or_else(err)?;
        if last > geo.last_usable() {
            return Err(err());
        }
        out.push(GptEntry {
            type_guid: p.type_guid,
            part_guid: guids.partition(i + 1)?,
            first_lba: start,
            last_lba: last,
            attributes: p.attributes,
            name: p.name.clone(),
        });
        next = last + 1;
    }
    Ok(out)
}

/// Where disk and partition GUIDs come from.
#[derive(Debug, Clone)]
pub enum GuidSource {
    Random,
    /// Derived from this seed (e.g. `SOURCE_DATE_EPOCH` + image name).
    Seed(Vec<u8>),
}

impl GuidSource {
    pub fn disk(&self) -> std::io::Result<Guid> {
        match self {
            GuidSource::Random => Guid::random(),
            GuidSource::Seed(s) => Ok(Guid::derived(s, "disk")),
        }
    }
    pub fn partition(&self, n: usize) -> std::io::Result<Guid> {
        match self {
            GuidSource::Random => Guid::random(),
            GuidSource::Seed(s) => Ok(Guid::derived(s, &format!("partition {n}"))),
        }
    }
}

fn entry_array(entries: &[GptEntry]) -> Vec<u8> {
    let mut a = vec![0u8; ENTRIES * ENTRY_SIZE];
    for (e, slot) in entries.iter().zip(a.chunks_exact_mut(ENTRY_SIZE)) {
        slot[0..16].copy_from_slice(&e.type_guid.to_disk());
        slot[16..32].copy_from_slice(&e.part_guid.to_disk());
        slot[32..40].copy_from_slice(&e.first_lba.to_le_bytes());
        slot[40..48].copy_from_slice(&e.last_lba.to_le_bytes());
        slot[48..56].copy_from_slice(&e.attributes.to_le_bytes());
        for (j, u) in e.name.encode_utf16().take(36).enumerate() {
            slot[56 + 2 * j..58 + 2 * j].copy_from_slice(&u.to_le_bytes());
        }
    }
    a
}

fn header(geo: Geometry, disk: Guid, backup: bool, array_crc: u32) -> Vec<u8> {
    let (my, alt, array) = if backup {
        (geo.sectors - 1, 1, geo.last_usable() + 1)
    } else {
        (1, geo.sectors - 1, 2)
    };
    let mut h = vec![0u8; geo.sector as usize];
    h[0..8].copy_from_slice(b"EFI PART");
    h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
    h[12..16].copy_from_slice(&92u32.to_le_bytes());
    h[24..32].copy_from_slice(&my.to_le_bytes());
    h[32..40].copy_from_slice(&alt.to_le_bytes());
    h[40..48].copy_from_slice(&geo.first_usable().to_le_bytes());
    h[48..56].copy_from_slice(&geo.last_usable().to_le_bytes());
    h[56..72].copy_from_slice(&disk.to_disk());
    h[72..80].copy_from_slice(&array.to_le_bytes());
    h[80..84].copy_from_slice(&(ENTRIES as u32).to_le_bytes());
    h[84..88].copy_from_slice(&(ENTRY_SIZE as u32).to_le_bytes());
    h[88..92].copy_from_slice(&array_crc.to_le_bytes());
    let crc = crc32fast::hash(&h[..92]);
    h[16..20].copy_from_slice(&crc.to_le_bytes());
    h
}

/// The protective MBR's table area (bytes 440..512 of LBA 0); boot code
/// before it is left alone.
pub fn protective_mbr_tail(geo: Geometry) -> [u8; 72] {
    let mut t = [0u8; 72];
    let e = &mut t[6..22];
    e[1..4].copy_from_slice(&[0x00, 0x02, 0x00]);
    e[4] = 0xEE;
    e[5..8].copy_from_slice(&[0xFF, 0xFF, 0xFF]);
    e[8..12].copy_from_slice(&1u32.to_le_bytes());
    let len = (geo.sectors - 1).min(u32::MAX as u64) as u32;
    e[12..16].copy_from_slice(&len.to_le_bytes());
    t[70] = 0x55;
    t[71] = 0xAA;
    t
}

/// Writes protective MBR, both headers and both entry arrays. The device
/// must be `geo.sectors * geo.sector` bytes long (a sparse file is fine, a
/// growable buffer grows to it).
pub fn write_gpt<W: Write + Seek>(
    dev: &mut W,
    geo: Geometry,
    disk_guid: Guid,
    entries: &[GptEntry],
) -> Result<(), GptError> {
    if entries.len() > ENTRIES {
        return Err(GptError::TooMany);
    }
    let array = entry_array(entries);
    let crc = crc32fast::hash(&array);
    dev.seek(SeekFrom::Start(440))?;
    dev.write_all(&protective_mbr_tail(geo))?;
    dev.seek(SeekFrom::Start(geo.sector))?;
    dev.write_all(&header(geo, disk_guid, false, crc))?;
    dev.write_all(&array)?;
    dev.seek(SeekFrom::Start((geo.last_usable() + 1) * geo.sector))?;
    dev.write_all(&array)?;
    dev.seek(SeekFrom::Start((geo.sectors - 1) * geo.sector))?;
    dev.write_all(&header(geo, disk_guid, true, crc))?;
    dev.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guid_text_and_disk_forms() {
        let esp = type_guid("EF00").unwrap();
        assert_eq!(esp.to_string(), "C12A7328-F81F-11D2-BA4B-00A0C93EC93B");
        assert_eq!(
            esp.to_disk(),
            [
                0x28, 0x73, 0x2A, 0xC1, 0x1F, 0xF8, 0xD2, 0x11, 0xBA, 0x4B, 0x00, 0xA0, 0xC9, 0x3E,
                0xC9, 0x3B
            ]
        );
        assert_eq!(Guid::from_disk(esp.to_disk()), esp);
        assert_eq!(
            type_guid("ef02"),
            type_guid("21686148-6449-6e6f-744e-656564454649")
        );
        assert_eq!(type_code(type_guid("8300").unwrap()), Some(0x8300));
        for (code, g, _) in TYPE_CODES {
            assert_eq!(type_guid(&format!("{code:04X}")), Guid::parse(g));
        }
        assert_eq!(type_guid("FFFF"), None);
        assert_eq!(type_guid("+EF0"), None);
        assert_eq!(Guid::parse("+2A7328-F81F-11D2-BA4B-00A0C93EC93B"), None);
        assert_eq!(Guid::parse("C12A7328F81F-11D2-BA4B-00A0C93EC93B-"), None);
        let d = Guid::derived(b"1700000000", "disk");
        assert_eq!(d, Guid::derived(b"1700000000", "disk"));
        assert_ne!(d, Guid::derived(b"1700000001", "disk"));
        assert_eq!(d.0[6] >> 4, 4);
        assert_eq!(d.0[8] >> 6, 2);
        assert_ne!(Guid::random().unwrap(), Guid::random().unwrap());
    }

    #[test]
    fn place_errors() {
        let geo = Geometry::new(64 << 20, 512).unwrap();
        let p = |name: &str, t: Guid, size: u64| GptPartition {
            name: name.into(),
            type_guid: t,
            size,
            attributes: 0,
        };
        let t = type_guid("8300").unwrap();
        let s = GuidSource::Seed(vec![]);
        assert!(matches!(
            place(geo, 1 << 20, &[p("a", Guid::ZERO, 1 << 20)], &s),
            Err(GptError::ZeroType(_))
        ));
        assert!(matches!(
            place(geo, 1 << 20, &[p(&"x".repeat(37), t, 1 << 20)], &s),
            Err(GptError::NameTooLong(_))
        ));
        assert!(place(geo, 1 << 20, &[p(&"x".repeat(36), t, 1 << 20)], &s).is_ok());
        assert!(matches!(
            place(geo, 1 << 20, &[p("a", t, 100)], &s),
            Err(GptError::DoesNotFit { .. })
        ));
        assert!(matches!(
            place(geo, 100, &[], &s),
            Err(GptError::Alignment(100))
        ));
        assert!(matches!(
            place(geo, 1 << 20, &vec![p("a", t, 512); 129], &s),
            Err(GptError::TooMany)
        ));
        assert!(matches!(
            Geometry::new(1 << 20, 1024),
            Err(GptError::SectorSize(1024))
        ));
        assert!(matches!(
            Geometry::new(16 << 10, 512),
            Err(GptError::DiskTooSmall(_))
        ));
    }
}
