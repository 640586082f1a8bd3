//! Reading a PV header area back, with every check LVM makes before it
//! trusts one (lvm2 `lib/label/label.c`: label id, sector and checksum;
//! `lib/format_text/format-text.c`: the metadata area header's checksum,
//! magic, version and start, the raw location inside the area, the text's
//! checksum). Used by the unit tests and the mutation tests: a flipped
//! byte anywhere LVM checks must be refused here too.

use super::crc::{calc_crc, INITIAL};
use super::label::{CRC_FROM, LABEL_AT, LABEL_ID, LABEL_SIZE, LABEL_TYPE};
use super::metadata::{MAGIC, MDA_HEADER_SIZE};
use super::{LvmError, LvmId};

/// What a PV header area says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PvInfo {
    pub pv_id: LvmId,
    pub dev_size: u64,
    pub pe_start: u64,
    pub mda_start: u64,
    pub mda_size: u64,
    /// The VG metadata text (without its NUL).
    pub text: String,
}

fn bad(why: impl Into<String>) -> LvmError {
    LvmError::Invalid(why.into())
}

fn get64(b: &[u8], at: usize) -> Result<u64, LvmError> {
    b.get(at..at + 8)
        .and_then(|s| s.try_into().ok())
        .map(u64::from_le_bytes)
        .ok_or_else(|| bad(format!("truncated at byte {at}")))
}

fn get32(b: &[u8], at: usize) -> Result<u32, LvmError> {
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map(u32::from_le_bytes)
        .ok_or_else(|| bad(format!("truncated at byte {at}")))
}

/// Parses the label sector; returns the PV UUID, the device size, the
/// data area's start and the (single) metadata area.
fn read_label(area: &[u8]) -> Result<(LvmId, u64, u64, u64, u64), LvmError> {
    let s = area
        .get(LABEL_AT..LABEL_AT + LABEL_SIZE)
        .ok_or_else(|| bad("shorter than the label sector"))?;
    if &s[0..8] != LABEL_ID {
        return Err(bad("no LABELONE in sector 1"));
    }
    if get64(s, 8)? != 1 {
        return Err(bad("the label does not name its own sector"));
    }
    if get32(s, 16)? != calc_crc(INITIAL, &s[CRC_FROM..]) {
        return Err(bad("label checksum mismatch"));
    }
    if &s[24..32] != LABEL_TYPE {
        return Err(bad("label type is not LVM2 001"));
    }
    let mut at = usize::try_from(get32(s, 20)?).map_err(|_| bad("PV header offset"))?;
    if !(32..LABEL_SIZE - 72).contains(&at) {
        return Err(bad("PV header offset outside the label sector"));
    }
    let mut id = [0u8; 32];
    id.copy_from_slice(&s[at..at + 32]);
    if !id.iter().all(u8::is_ascii_alphanumeric) {
        return Err(bad("PV UUID has characters LVM does not use"));
    }
    at += 32;
    let dev_size = get64(s, at)?;
    at += 8;
    let pe_start = get64(s, at)?;
    if get64(s, at + 8)? != 0 || get64(s, at + 16)? != 0 || get64(s, at + 24)? != 0 {
        return Err(bad("more than one data area, or no end to the list"));
    }
    at += 32;
    let (mda_start, mda_size) = (get64(s, at)?, get64(s, at + 8)?);
    if get64(s, at + 16)? != 0 || get64(s, at + 24)? != 0 {
        return Err(bad("more than one metadata area, or no end to the list"));
    }
    Ok((LvmId(id), dev_size, pe_start, mda_start, mda_size))
}

/// Reads and checks a PV's header area (its first `pe_start` bytes).
pub fn read_pv(area: &[u8]) -> Result<PvInfo, LvmError> {
    let (pv_id, dev_size, pe_start, mda_start, mda_size) = read_label(area)?;
    if mda_start < 1024 || mda_size < MDA_HEADER_SIZE as u64 || mda_start + mda_size > pe_start {
        return Err(bad("metadata area overlaps the label or the extents"));
    }
    let start = usize::try_from(mda_start).map_err(|_| bad("metadata area start"))?;
    let size = usize::try_from(mda_size).map_err(|_| bad("metadata area size"))?;
    let mda = area
        .get(start..start + size)
        .ok_or_else(|| bad("metadata area past the end"))?;
    let h = &mda[..MDA_HEADER_SIZE];
    if get32(h, 0)? != calc_crc(INITIAL, &h[4..]) {
        return Err(bad("metadata area header checksum mismatch"));
    }
    if &h[4..20] != MAGIC || get32(h, 20)? != 1 {
        return Err(bad("metadata area header magic or version"));
    }
    if get64(h, 24)? != mda_start || get64(h, 32)? != mda_size {
        return Err(bad("metadata area header disagrees with the PV header"));
    }
    let (off, len, crc) = (get64(h, 40)?, get64(h, 48)?, get32(h, 56)?);
    if get64(h, 64)? != 0 || get64(h, 72)? != 0 {
        return Err(bad("more than one metadata copy in the area"));
    }
    if off < MDA_HEADER_SIZE as u64 || len == 0 || off + len > mda_size {
        return Err(bad("metadata text outside its area"));
    }
    let text = &mda[off as usize..(off + len) as usize];
    if calc_crc(INITIAL, text) != crc {
        return Err(bad("metadata text checksum mismatch"));
    }
    let Some((0, body)) = text.split_last() else {
        return Err(bad("metadata text is not NUL-terminated"));
    };
    let text = String::from_utf8(body.to_vec()).map_err(|_| bad("metadata text is not UTF-8"))?;
    Ok(PvInfo {
        pv_id,
        dev_size,
        pe_start,
        mda_start,
        mda_size,
        text,
    })
}
