//! Sector 1 of the PV: the label header (lvm2 `lib/label/label.h`:
//! `struct label_header`) and the text format's PV header right after it
//! (`lib/format_text/layout.h`: `struct pv_header`, its disk_locn lists
//! and `struct pv_header_extension`). All integers little-endian.

use super::crc::{calc_crc, INITIAL};
use super::{Vg, MDA_SIZE, MDA_START, PE_START};

/// Byte offset of the label in the PV (sector 1).
pub const LABEL_AT: usize = 512;
pub const LABEL_SIZE: usize = 512;
pub const LABEL_ID: &[u8; 8] = b"LABELONE";
pub const LABEL_TYPE: &[u8; 8] = b"LVM2 001";
/// Offset of the PV header inside the label sector (`offset_xl`).
pub const PV_HEADER_AT: usize = 32;
/// Where the checksum starts: `offset_xl`, to the end of the sector.
pub const CRC_FROM: usize = 20;
/// `PV_HEADER_EXTENSION_VSN`, and `PV_EXT_USED` (the PV is in a VG).
const EXT_VERSION: u32 = 2;
const PV_EXT_USED: u32 = 1;

fn put64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

/// Fills the label sector of `area` (the PV's first bytes).
pub fn write(area: &mut [u8], vg: &Vg) {
    let s = &mut area[LABEL_AT..LABEL_AT + LABEL_SIZE];
    s[0..8].copy_from_slice(LABEL_ID);
    put64(s, 8, 1); // sector_xl: the label's own sector
    put32(s, 20, PV_HEADER_AT as u32);
    s[24..32].copy_from_slice(LABEL_TYPE);
    let mut at = PV_HEADER_AT;
    s[at..at + 32].copy_from_slice(&vg.pv_id.0);
    at += 32;
    put64(s, at, vg.pv_size);
    at += 8;
    // Data areas: one from pe_start to the end of the device (size 0),
    // then the terminating null entry.
    put64(s, at, PE_START);
    at += 32;
    // Metadata areas: one, then the null entry.
    put64(s, at, MDA_START);
    put64(s, at + 8, MDA_SIZE);
    at += 32;
    put32(s, at, EXT_VERSION);
    put32(s, at + 4, PV_EXT_USED);
    // The bootloader area list is empty: its null entry is already zero.
    let crc = calc_crc(INITIAL, &s[CRC_FROM..]);
    put32(s, 16, crc);
}
