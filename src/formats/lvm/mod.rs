//! LVM2 physical volumes written in userspace: the label, the metadata
//! area and the volume group's metadata text that `pvcreate`, `vgcreate`
//! and `lvcreate` would leave on a device, so that `vgchange -ay` (or the
//! initramfs) finds the volume group and its linear logical volumes, and
//! the filesystems dibr writes at the logical volumes' offsets.
//!
//! The on-disk format is LVM2's "text" format (lvm2: `lib/label/label.h`,
//! `lib/format_text/layout.h`, `lib/format_text/format-text.c`,
//! `lib/format_text/export.c`): sector 1 of the PV holds the label
//! (`LABELONE`) and the PV header (UUID, size, data and metadata area
//! lists); the metadata area starts at 4 KiB with its header
//! (`" LVM2 x[5A%r0N*>"`) whose raw location points at the metadata text.
//! The layout is `pvcreate`'s default: metadata area 4 KiB – 1 MiB,
//! extents (4 MiB, `vgcreate`'s default and DIB's `PHYSICAL_EXTENT_BYTES`)
//! from 1 MiB.
//!
//! Only what DIB's `lvm` plugin builds is written: one PV per VG, linear
//! LVs laid one after the other. Thin pools and spanned VGs are refused by
//! the caller.

mod crc;
mod label;
mod metadata;
mod read;

use std::fs::File;
use std::os::unix::fs::FileExt;

pub use crc::{calc_crc, INITIAL};
pub use metadata::metadata_text;
pub use read::{read_pv, PvInfo};

/// Sector size of LVM's own units (metadata sizes are in 512-byte sectors).
pub const SECTOR: u64 = 512;
/// Extent size: `vgcreate`'s default and DIB's `PHYSICAL_EXTENT_BYTES`.
pub const EXTENT_BYTES: u64 = 4 << 20;
/// First extent: `pvcreate`'s default 1 MiB data alignment.
pub const PE_START: u64 = 1 << 20;
/// Start of the metadata area (`pvcreate`'s default, after the label).
pub const MDA_START: u64 = 4096;
/// Size of the metadata area: up to the first extent.
pub const MDA_SIZE: u64 = PE_START - MDA_START;

#[derive(Debug, thiserror::Error)]
pub enum LvmError {
    #[error("LVM {what} name '{name}' is not valid: LVM allows letters, digits and '+_.-', not starting with '-', and not '.' or '..'")]
    BadName { what: &'static str, name: String },
    #[error("physical volume of VG '{vg}' has {size} bytes, less than one 4 MiB extent after LVM's 1 MiB header")]
    PvTooSmall { vg: String, size: u64 },
    #[error("logical volumes of VG '{vg}' need {need} extents, the VG has {have}")]
    OutOfExtents { vg: String, need: u64, have: u64 },
    #[error("the metadata of VG '{vg}' is {size} bytes, more than LVM's metadata area holds")]
    MetadataTooLarge { vg: String, size: usize },
    #[error("not an LVM2 physical volume: {0}")]
    Invalid(String),
    #[error("writing the LVM physical volume of VG '{vg}': {source}")]
    Io {
        vg: String,
        #[source]
        source: std::io::Error,
    },
}

/// An LVM UUID: 32 characters of `[0-9a-zA-Z]` (lvm2 `lib/uuid/uuid.c`),
/// raw in the PV header, in 6-4-4-4-4-4-6 groups in the metadata text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LvmId(pub [u8; 32]);

const ID_CHARS: &[u8; 62] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

impl LvmId {
    fn from_bytes(bytes: &[u8; 32]) -> LvmId {
        let mut id = [0u8; 32];
        for (o, b) in id.iter_mut().zip(bytes) {
            *o = ID_CHARS[usize::from(*b) % ID_CHARS.len()];
        }
        LvmId(id)
    }

    /// Reproducible: the same seed and role give the same UUID.
    pub fn derived(seed: &[u8], what: &str) -> LvmId {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(b"dibr-lvm-uuid\0");
        h.update((seed.len() as u64).to_le_bytes());
        h.update(seed);
        h.update(what.as_bytes());
        let d: [u8; 32] = h.finalize().into();
        Self::from_bytes(&d)
    }

    /// From /dev/urandom.
    pub fn random() -> std::io::Result<LvmId> {
        use std::io::Read;
        let mut b = [0u8; 32];
        File::open("/dev/urandom")?.read_exact(&mut b)?;
        Ok(Self::from_bytes(&b))
    }

    /// `xxxxxx-xxxx-xxxx-xxxx-xxxx-xxxx-xxxxxx`, as the metadata text and
    /// `pvs -o uuid` show it.
    pub fn text(&self) -> String {
        let mut s = String::with_capacity(38);
        for (i, c) in self.0.iter().enumerate() {
            if matches!(i, 6 | 10 | 14 | 18 | 22 | 26) {
                s.push('-');
            }
            s.push(char::from(*c));
        }
        s
    }
}

/// A linear logical volume: `extents` extents from `start` on the PV.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lv {
    pub name: String,
    pub id: LvmId,
    pub start: u64,
    pub extents: u64,
}

/// A volume group on one physical volume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vg {
    pub name: String,
    pub id: LvmId,
    pub pv_id: LvmId,
    /// The PV's size in bytes (its partition's).
    pub pv_size: u64,
    /// The device the metadata names as a hint (`device = ...`).
    pub pv_device: String,
    pub lvs: Vec<Lv>,
    /// `creation_time` of the VG and its LVs (SOURCE_DATE_EPOCH).
    pub time: i64,
    pub host: String,
}

/// LVM's name rule for VGs and LVs (lvm2 `lib/misc/lvm-string.c`:
/// `validate_name`).
pub fn check_name(what: &'static str, name: &str) -> Result<(), LvmError> {
    let ok = !name.is_empty()
        && name.len() <= 127
        && !name.starts_with('-')
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"+_.-".contains(&c));
    if ok {
        Ok(())
    } else {
        Err(LvmError::BadName {
            what,
            name: name.into(),
        })
    }
}

/// Extents a PV of `size` bytes holds after the 1 MiB header.
pub fn pe_count(size: u64) -> u64 {
    size.saturating_sub(PE_START) / EXTENT_BYTES
}

/// `lvcreate -l N%VG` (lvm2 `tools/lvcreate.c`: `percent_of_extents`
/// rounds down).
pub fn percent_of(extents: u64, percent: f64) -> u64 {
    ((extents as f64) * percent / 100.0).floor() as u64
}

/// The device-mapper name of an LV (`/dev/mapper/<this>`): VG and LV
/// joined by '-', each '-' inside a name doubled (lvm2 `dm_build_dm_name`).
pub fn dm_name(vg: &str, lv: &str) -> String {
    format!("{}-{}", vg.replace('-', "--"), lv.replace('-', "--"))
}

impl Vg {
    /// Extents the VG has.
    pub fn pe_count(&self) -> u64 {
        pe_count(self.pv_size)
    }

    /// Byte offset of an LV inside the PV.
    pub fn lv_offset(lv: &Lv) -> u64 {
        PE_START + lv.start * EXTENT_BYTES
    }

    /// Checks names and extents.
    pub fn check(&self) -> Result<(), LvmError> {
        check_name("VG", &self.name)?;
        if self.pe_count() == 0 {
            return Err(LvmError::PvTooSmall {
                vg: self.name.clone(),
                size: self.pv_size,
            });
        }
        let mut end = 0;
        for lv in &self.lvs {
            check_name("LV", &lv.name)?;
            end = end.max(lv.start + lv.extents);
        }
        if end > self.pe_count() {
            return Err(LvmError::OutOfExtents {
                vg: self.name.clone(),
                need: end,
                have: self.pe_count(),
            });
        }
        Ok(())
    }

    /// The PV's first 1 MiB: label, metadata area header and text.
    pub fn header_area(&self) -> Result<Vec<u8>, LvmError> {
        self.check()?;
        let mut area = vec![0u8; PE_START as usize];
        label::write(&mut area, self);
        metadata::write(&mut area, self)?;
        Ok(area)
    }

    /// Writes the PV header area at `offset` (the partition's start).
    pub fn write(&self, file: &File, offset: u64) -> Result<(), LvmError> {
        let area = self.header_area()?;
        file.write_all_at(&area, offset)
            .map_err(|source| LvmError::Io {
                vg: self.name.clone(),
                source,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> Vg {
        let id = |w: &str| LvmId::derived(b"test", w);
        Vg {
            name: "vg".into(),
            id: id("vg"),
            pv_id: id("pv"),
            pv_size: 40 << 30,
            pv_device: "/dev/mapper/loop0p3".into(),
            lvs: vec![
                Lv {
                    name: "lv_root".into(),
                    id: id("lv_root"),
                    start: 0,
                    extents: percent_of(10239, 23.0),
                },
                Lv {
                    name: "lv_var".into(),
                    id: id("lv_var"),
                    start: 2354,
                    extents: percent_of(10239, 57.0),
                },
            ],
            time: 1_700_000_000,
            host: "dibr".into(),
        }
    }

    #[test]
    fn pvcreate_layout_and_lvcreate_arithmetic() {
        let vg = sample();
        // `pvcreate` + `vgcreate` on a 40 GiB device: 10239 extents.
        assert_eq!(vg.pe_count(), 10239);
        assert_eq!(vg.lvs[0].extents, 2354);
        assert_eq!(vg.lvs[1].extents, 5836);
        assert_eq!(dm_name("vg", "lv_root"), "vg-lv_root");
        assert_eq!(dm_name("my-vg", "lv-1"), "my--vg-lv--1");
        let area = vg.header_area().unwrap();
        let info = read_pv(&area).unwrap();
        assert_eq!(info.dev_size, 40 << 30);
        assert_eq!(
            (info.pe_start, info.mda_start, info.mda_size),
            (PE_START, 4096, 1044480)
        );
        assert_eq!(info.pv_id, vg.pv_id);
        assert!(info.text.starts_with("vg {\nid = \""), "{}", info.text);
        assert!(info.text.contains("pe_count = 10239\n"));
        assert!(info.text.contains("extent_count = 5836\n"));
        assert!(info.text.contains("\"pv0\", 2354\n"));
        assert_eq!(vg.id.text().len(), 38);
        assert_eq!(area, vg.header_area().unwrap(), "reproducible");
    }

    #[test]
    fn refusals() {
        let mut vg = sample();
        vg.lvs[1].extents = 9000;
        assert!(matches!(vg.check(), Err(LvmError::OutOfExtents { .. })));
        let mut vg = sample();
        vg.lvs[0].name = "-x".into();
        assert!(vg.header_area().unwrap_err().to_string().contains("'-x'"));
        let mut vg = sample();
        vg.pv_size = 4 << 20;
        assert!(matches!(vg.check(), Err(LvmError::PvTooSmall { .. })));
    }

    /// Every byte LVM checks, flipped, is refused by the reader (the
    /// checksums cover the label from `offset_xl` on, the metadata area
    /// header from its magic on, and the whole text).
    #[test]
    fn mutations_are_refused() {
        let area = sample().header_area().unwrap();
        let info = read_pv(&area).unwrap();
        let text_end = 4096 + 512 + info.text.len() + 1;
        let checked = (512..512 + 200)
            .chain(4096..4096 + 80)
            .chain(4096 + 512..text_end);
        for at in checked {
            let mut m = area.clone();
            m[at] ^= 0x5a;
            assert!(read_pv(&m).is_err(), "byte {at} flipped was accepted");
        }
    }
}
