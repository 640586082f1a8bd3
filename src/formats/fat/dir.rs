//! Directory records: 8.3 short names, VFAT long-name (LFN) entries with
//! their checksum, and DOS timestamps.

use crate::le::{put_u16, put_u32};
use crate::units::civil_from_days;
use std::collections::HashSet;

pub const ATTR_DIRECTORY: u8 = 0x10;
pub const ATTR_ARCHIVE: u8 = 0x20;
pub const ATTR_VOLUME_ID: u8 = 0x08;
const ATTR_LFN: u8 = 0x0F;
/// UTF-16 code units per LFN entry.
const LFN_CHARS: usize = 13;
/// Longest long name, in UTF-16 code units.
pub const MAX_LFN: usize = 255;

/// Characters allowed in a short name besides A-Z and 0-9.
fn short_ok(c: u8) -> bool {
    c.is_ascii_uppercase() || c.is_ascii_digit() || b"!#$%&'()-@^_`{}~".contains(&c)
}

/// Why a name cannot be stored, or `None` when it can.
pub fn invalid_reason(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return Some("empty path component");
    }
    if name == "." || name == ".." {
        return Some("`.` and `..` cannot be stored");
    }
    if name.ends_with('.') || name.ends_with(' ') {
        return Some("FAT names cannot end with `.` or a space");
    }
    if name.encode_utf16().count() > MAX_LFN {
        return Some("longer than 255 UTF-16 units");
    }
    if name
        .chars()
        .any(|c| (c as u32) < 0x20 || c == '\u{7f}' || "\"*/:<>?\\|".contains(c))
    {
        return Some("contains a character FAT forbids (control, \" * / : < > ? \\ |)");
    }
    None
}

/// The key under which FAT compares names (case-insensitive).
pub fn fold(name: &str) -> String {
    name.to_uppercase()
}

/// `name` as an exact 8.3 short name (upper-case, valid characters), if it
/// is one; such names need no LFN entries.
pub fn exact_short(name: &str) -> Option<[u8; 11]> {
    let b = name.as_bytes();
    let (base, ext) = match name.rfind('.') {
        Some(i) => (&b[..i], &b[i + 1..]),
        None => (b, &b[..0]),
    };
    if base.is_empty() || base.len() > 8 || ext.len() > 3 || (name.contains('.') && ext.is_empty())
    {
        return None;
    }
    if !base.iter().chain(ext).all(|&c| short_ok(c)) {
        return None;
    }
    let mut s = [b' '; 11];
    s[..base.len()].copy_from_slice(base);
    s[8..8 + ext.len()].copy_from_slice(ext);
    if s[0] == 0xE5 {
        s[0] = 0x05;
    }
    Some(s)
}

/// Short-name characters derived from a long name part: upper-cased,
/// spaces and dots dropped, anything else invalid turned into `_`.
fn squeeze(part: &str) -> Vec<u8> {
    part.chars()
        .filter(|&c| c != ' ' && c != '.')
        .map(|c| {
            let u = c.to_ascii_uppercase();
            if u.is_ascii() && short_ok(u as u8) {
                u as u8
            } else {
                b'_'
            }
        })
        .collect()
}

/// Generates a unique `BASE~N.EXT` short name for a long name (the Windows
/// "numeric tail" scheme), recording it in `taken`.
pub fn generate_short(name: &str, taken: &mut HashSet<[u8; 11]>) -> Option<[u8; 11]> {
    // A name that is 8.3 except for case keeps its upper-cased form, as
    // Windows and Linux do (`grub.cfg` -> `GRUB.CFG` + LFN).
    if let Some(s) = exact_short(&name.to_ascii_uppercase()) {
        if name.is_ascii() && taken.insert(s) {
            return Some(s);
        }
    }
    let trimmed = name.trim_start_matches('.');
    let (base, ext) = match trimmed.rfind('.') {
        Some(i) => (&trimmed[..i], &trimmed[i + 1..]),
        None => (trimmed, ""),
    };
    let mut base = squeeze(base);
    if base.is_empty() {
        base.push(b'_');
    }
    let mut ext = squeeze(ext);
    ext.truncate(3);
    for n in 1u32..1_000_000 {
        let tail = format!("~{n}");
        let keep = base.len().min(8 - tail.len());
        let mut s = [b' '; 11];
        s[..keep].copy_from_slice(&base[..keep]);
        s[keep..keep + tail.len()].copy_from_slice(tail.as_bytes());
        s[8..8 + ext.len()].copy_from_slice(&ext);
        if taken.insert(s) {
            return Some(s);
        }
    }
    None
}

/// The LFN checksum of an 11-byte short name.
pub fn lfn_checksum(short: &[u8; 11]) -> u8 {
    short.iter().fold(0u8, |sum, &c| {
        (sum >> 1).wrapping_add(sum << 7).wrapping_add(c)
    })
}

/// The LFN entries for `name`, in on-disk order (highest ordinal first).
pub fn lfn_entries(name: &str, short: &[u8; 11]) -> Vec<[u8; 32]> {
    let units: Vec<u16> = name.encode_utf16().collect();
    let count = units.len().div_ceil(LFN_CHARS);
    let sum = lfn_checksum(short);
    let mut out = Vec::with_capacity(count);
    for i in (0..count).rev() {
        let mut e = [0u8; 32];
        let mut ord = (i + 1) as u8;
        if i + 1 == count {
            ord |= 0x40;
        }
        e[0] = ord;
        e[11] = ATTR_LFN;
        e[13] = sum;
        let slots = (1..11)
            .step_by(2)
            .chain((14..26).step_by(2))
            .chain((28..32).step_by(2));
        for (k, off) in slots.enumerate() {
            let idx = i * LFN_CHARS + k;
            let u = match idx.cmp(&units.len()) {
                std::cmp::Ordering::Less => units[idx],
                std::cmp::Ordering::Equal => 0x0000,
                std::cmp::Ordering::Greater => 0xFFFF,
            };
            put_u16(&mut e, off, u);
        }
        out.push(e);
    }
    out
}

/// A DOS (date, time, tenths-of-a-second... here 10 ms units) triple for a
/// Unix time, in UTC, clamped to the FAT range 1980-01-01 .. 2107-12-31.
pub fn dos_time(unix: i64) -> (u16, u16, u8) {
    const MIN: i64 = 315_532_800; // 1980-01-01T00:00:00Z
    const MAX: i64 = 4_354_819_199; // 2107-12-31T23:59:59Z
    let t = unix.clamp(MIN, MAX);
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let date = (((y - 1980) as u16) << 9) | ((m as u16) << 5) | d as u16;
    let time = (((secs / 3600) as u16) << 11)
        | ((((secs / 60) % 60) as u16) << 5)
        | ((secs % 60) / 2) as u16;
    let fine = ((secs % 2) * 100) as u8;
    (date, time, fine)
}

/// One 32-byte short directory entry.
pub fn short_entry(short: &[u8; 11], attr: u8, cluster: u32, size: u32, unix: i64) -> [u8; 32] {
    let (date, time, fine) = dos_time(unix);
    let mut e = [0u8; 32];
    e[..11].copy_from_slice(short);
    e[11] = attr;
    if attr & ATTR_VOLUME_ID == 0 {
        e[13] = fine;
        put_u16(&mut e, 14, time);
        put_u16(&mut e, 16, date);
        put_u16(&mut e, 18, date);
    }
    put_u16(&mut e, 20, (cluster >> 16) as u16);
    put_u16(&mut e, 22, time);
    put_u16(&mut e, 24, date);
    put_u16(&mut e, 26, cluster as u16);
    put_u32(&mut e, 28, size);
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_and_generated_short_names() {
        assert_eq!(&exact_short("BOOTX64.EFI").unwrap(), b"BOOTX64 EFI");
        assert_eq!(&exact_short("EFI").unwrap(), b"EFI        ");
        assert!(exact_short("grub.cfg").is_none());
        assert!(exact_short("A.B.C").is_none());
        let mut taken = HashSet::new();
        assert_eq!(
            &generate_short("grub.cfg", &mut taken).unwrap(),
            b"GRUB    CFG"
        );
        assert_eq!(
            &generate_short("grubx64.efi", &mut taken).unwrap(),
            b"GRUBX64 EFI"
        );
        assert_eq!(
            &generate_short("Grub.cfg", &mut taken).unwrap(),
            b"GRUB~1  CFG"
        );
        assert_eq!(
            &generate_short("grub.config", &mut taken).unwrap(),
            b"GRUB~1  CON"
        );
        assert_eq!(
            &generate_short(".hidden", &mut taken).unwrap(),
            b"HIDDEN~1   "
        );
        assert_eq!(
            &generate_short("a very long name.conf", &mut taken).unwrap(),
            b"AVERYL~1CON"
        );
    }

    #[test]
    fn checksum_and_lfn_layout() {
        // Known value: checksum of "FILENA~1TXT".
        let s = *b"FILENA~1TXT";
        let e = lfn_entries("filename-long.txt", &s);
        assert_eq!(e.len(), 2);
        assert_eq!(e[0][0], 0x42);
        assert_eq!(e[1][0], 0x01);
        assert_eq!(e[0][13], lfn_checksum(&s));
        // "filename-long" = 13 units in entry 1; ".txt" + NUL + 0xFFFF padding in entry 2.
        assert_eq!(&e[0][1..3], &[b'.', 0]);
        assert_eq!(&e[0][9..11], &[0, 0]);
        assert_eq!(&e[0][14..16], &[0xFF, 0xFF]);
    }

    #[test]
    fn dos_dates() {
        // 2024-02-29T13:37:59Z
        let (d, t, f) = dos_time(1_709_213_879);
        assert_eq!(d, ((2024 - 1980) << 9) | (2 << 5) | 29);
        assert_eq!(t, (13 << 11) | (37 << 5) | 29);
        assert_eq!(f, 100);
        assert_eq!(dos_time(0).0, (1 << 5) | 1);
    }
}
