//! Decoding of one 512-byte tar header block: field layout, checksum and the
//! two numeric encodings.
//!
//! Layouts: POSIX pax(1) "ustar Interchange Format" (name, mode, ..., prefix)
//! and the GNU tar manual, "GNU tar format" (`struct oldgnu_header`: atime,
//! ctime, the 4-entry sparse map at 386, `isextended` at 482, `realsize` at
//! 483). Numbers are octal text, or GNU base-256 when the first byte has the
//! high bit set (GNU tar manual, "Basic Tar Format", note on numeric fields).

pub const BLOCK: usize = 512;
pub type Block = [u8; BLOCK];

/// Round `n` up to a whole number of blocks, `None` on overflow.
pub fn padded(n: u64) -> Option<u64> {
    n.checked_add(BLOCK as u64 - 1)
        .map(|v| v & !(BLOCK as u64 - 1))
}

/// Which header dialect the magic field says this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// "ustar\0" "00": POSIX ustar / pax; has the `prefix` field.
    Ustar,
    /// "ustar " " \0": GNU; bytes 345.. hold atime/ctime/sparse data.
    Gnu,
    /// No magic: V7 tar.
    V7,
}

/// Why a numeric field did not decode.
#[derive(Debug, PartialEq, Eq)]
pub struct NumError;

/// A header block that passed its checksum test.
pub struct Header<'a> {
    pub block: &'a Block,
}

/// Field up to its first NUL (names, link names, magic).
pub fn cstr(field: &[u8]) -> &[u8] {
    match field.iter().position(|&b| b == 0) {
        Some(n) => &field[..n],
        None => field,
    }
}

/// The field as text for error messages.
pub fn shown(field: &[u8]) -> String {
    String::from_utf8_lossy(cstr(field)).into_owned()
}

/// Decode a numeric field: octal digits optionally surrounded by spaces and
/// terminated by space/NUL, or GNU base-256 (first byte 0x80 positive, 0xff
/// negative; the remaining bits are a big-endian two's complement number).
/// A blank field (only spaces/NULs) is 0, as GNU tar writes blank device
/// numbers for non-devices.
pub fn parse_signed(field: &[u8]) -> Result<i64, NumError> {
    let Some(&first) = field.first() else {
        return Ok(0);
    };
    if first & 0x80 != 0 {
        // Base-256: sign from bit 6 of the first byte, which belongs to the
        // number (the top bit is the marker).
        let mut v: i128 = (first & 0x7f) as i128;
        if first & 0x40 != 0 {
            v -= 0x80; // sign-extend the 7-bit two's complement start
        }
        for &b in &field[1..] {
            v = v.checked_mul(256).ok_or(NumError)? + b as i128;
            if v > i64::MAX as i128 || v < i64::MIN as i128 {
                return Err(NumError);
            }
        }
        return i64::try_from(v).map_err(|_| NumError);
    }
    let mut i = 0;
    while i < field.len() && field[i] == b' ' {
        i += 1;
    }
    let mut v: i64 = 0;
    while i < field.len() && (b'0'..=b'7').contains(&field[i]) {
        v = v
            .checked_mul(8)
            .and_then(|v| v.checked_add((field[i] - b'0') as i64))
            .ok_or(NumError)?;
        i += 1;
    }
    // Only terminators may follow.
    if field[i..].iter().any(|&b| b != b' ' && b != 0) {
        return Err(NumError);
    }
    Ok(v)
}

/// [`parse_signed`] for fields that cannot be negative.
pub fn parse_unsigned(field: &[u8]) -> Result<u64, NumError> {
    u64::try_from(parse_signed(field)?).map_err(|_| NumError)
}

impl<'a> Header<'a> {
    /// Whether the block is all zeros (end-of-archive marker).
    pub fn is_zero(block: &Block) -> bool {
        block.iter().all(|&b| b == 0)
    }

    /// Verify the checksum: the sum of all bytes with the checksum field
    /// taken as spaces. Historic tars summed signed chars, so accept both
    /// (GNU tar does the same). Returns the stored text and computed
    /// unsigned sum on mismatch.
    pub fn check(block: &'a Block) -> Result<Header<'a>, (String, u32)> {
        let mut unsigned: u32 = 0;
        let mut signed: i32 = 0;
        for (i, &b) in block.iter().enumerate() {
            let b = if (148..156).contains(&i) { b' ' } else { b };
            unsigned += b as u32;
            signed += b as i8 as i32;
        }
        let field = &block[148..156];
        match parse_unsigned(field) {
            Ok(v) if v == unsigned as u64 || v as i64 == signed as i64 => Ok(Header { block }),
            _ => Err((shown(field), unsigned)),
        }
    }

    pub fn dialect(&self) -> Dialect {
        match (&self.block[257..263], &self.block[263..265]) {
            (b"ustar\0", _) => Dialect::Ustar,
            (b"ustar ", b" \0") => Dialect::Gnu,
            _ => Dialect::V7,
        }
    }

    pub fn typeflag(&self) -> u8 {
        self.block[156]
    }

    /// Name, with the ustar `prefix` joined in front when present.
    pub fn path(&self) -> Vec<u8> {
        let name = cstr(&self.block[0..100]);
        if self.dialect() == Dialect::Ustar {
            let prefix = cstr(&self.block[345..500]);
            if !prefix.is_empty() {
                let mut p = prefix.to_vec();
                p.push(b'/');
                p.extend_from_slice(name);
                return p;
            }
        }
        name.to_vec()
    }

    pub fn link_name(&self) -> Vec<u8> {
        cstr(&self.block[157..257]).to_vec()
    }

    /// (field name, bytes) of a numeric field, for decoding and messages.
    pub fn field(&self, name: &'static str) -> &'a [u8] {
        let b = self.block;
        match name {
            "mode" => &b[100..108],
            "uid" => &b[108..116],
            "gid" => &b[116..124],
            "size" => &b[124..136],
            "mtime" => &b[136..148],
            "devmajor" => &b[329..337],
            "devminor" => &b[337..345],
            // GNU only.
            "atime" => &b[345..357],
            "ctime" => &b[357..369],
            "realsize" => &b[483..495],
            _ => &b[0..0],
        }
    }

    /// GNU `isextended` flag of an old GNU sparse header.
    pub fn gnu_is_extended(&self) -> bool {
        self.block[482] != 0
    }

    /// The 4 sparse map slots of an old GNU sparse header, as raw
    /// (offset, numbytes) field pairs.
    pub fn gnu_sparse_slots(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> {
        sparse_slots(&self.block[386..482])
    }
}

/// (offset, numbytes) 12-byte field pairs from a GNU sparse map area.
pub fn sparse_slots(area: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    area.chunks_exact(24).map(|c| (&c[..12], &c[12..]))
}

/// Whether a GNU sparse-map slot is unused (offset field starts with NUL),
/// which ends the map.
pub fn slot_empty(offset_field: &[u8]) -> bool {
    offset_field.first().is_none_or(|&b| b == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn octal_fields() {
        assert_eq!(parse_signed(b"0000644\0"), Ok(0o644));
        assert_eq!(parse_signed(b"   644 \0"), Ok(0o644));
        assert_eq!(parse_signed(b"\0\0\0\0"), Ok(0));
        assert_eq!(parse_signed(b"        "), Ok(0));
        assert_eq!(parse_signed(b"00000000012\0"), Ok(10));
        assert_eq!(parse_signed(b"0008"), Err(NumError));
        assert_eq!(parse_signed(b"12 3"), Err(NumError));
        assert_eq!(parse_signed(&[b'7'; 30]), Err(NumError));
    }

    #[test]
    fn base256_fields() {
        let mut f = [0u8; 12];
        f[0] = 0x80;
        f[11] = 0x01;
        f[10] = 0x02;
        assert_eq!(parse_signed(&f), Ok(0x201));
        // -1 in 12 bytes.
        let f = [0xffu8; 12];
        assert_eq!(parse_signed(&f), Ok(-1));
        // -2^40 (GNU tar writes negative mtimes this way).
        let mut f = [0xffu8; 12];
        f[7..].fill(0);
        assert_eq!(parse_signed(&f), Ok(-(1i64 << 40)));
        assert_eq!(parse_unsigned(&[0xffu8; 12]), Err(NumError));
        // Too big for i64.
        let mut f = [0u8; 12];
        f[0] = 0x80;
        f[1] = 0x01;
        assert_eq!(parse_signed(&f), Err(NumError));
    }

    #[test]
    fn padding() {
        assert_eq!(padded(0), Some(0));
        assert_eq!(padded(1), Some(512));
        assert_eq!(padded(512), Some(512));
        assert_eq!(padded(u64::MAX), None);
    }
}
