//! GNU sparse maps (GNU tar manual, "Sparse Formats"): building the logical
//! segment list from the old GNU header map, PAX 0.0/0.1 records, or the
//! PAX 1.0 map at the start of the data area, and checking it is sane.
//!
//! In every format the stored data is the segments' bytes back to back, so
//! the data for segment `i` starts at the sum of the earlier lengths.

use crate::tree::Segment;

/// Upper bound on segments per file: 16 MiB of map in memory, and at most
/// 1 048 576 extents, whose tree takes about 3 100 blocks (12 MiB) in
/// ext4. With [`SEGMENT_DATA`] such a map also needs at least 512 MiB of
/// stored data, so the tree stays a few percent of the image. (It was
/// 4 194 304 with no density rule: 1 M one-byte segments, a 13.7 MB tar,
/// made a 3.9 GiB image; issue 14.)
pub const MAX_SEGMENTS: usize = 1 << 20;

/// Stored bytes each segment must account for on average, beyond
/// [`FREE_SEGMENTS`]. Every writer's maps meet it: GNU tar finds data in
/// 512-byte blocks or by SEEK_DATA/SEEK_HOLE (GNU tar manual, "Sparse
/// Formats"; `sparse_scan_file`), so all its segments but the last are at
/// least 512 bytes, and dibr's own capture uses SEEK_DATA. A map of tiny
/// segments, by contrast, costs a 4 KiB block per byte: without this rule
/// 1 M one-byte segments became a 3.9 GiB image.
pub const SEGMENT_DATA: u64 = 512;

/// Segments a map may have whatever their size, so hand-made small maps
/// still work; they cost at most 16 blocks (64 KiB) per file.
pub const FREE_SEGMENTS: u64 = 8;

/// Upper bound on the size of a PAX 1.0 in-data map.
pub const MAX_MAP_BYTES: u64 = 64 << 20;

/// Turn a flat offset,len,... list into validated segments: sorted,
/// non-overlapping, inside `realsize`, no denser than [`SEGMENT_DATA`]
/// allows. Zero-length segments (GNU tar ends maps with one at `realsize`)
/// are dropped. Returns the segments and the total data length.
pub fn segments_from_pairs(flat: &[u64], realsize: u64) -> Result<(Vec<Segment>, u64), String> {
    let (segs, total) = checked_segments(flat, realsize)?;
    check_density(segs.len(), total)?;
    Ok((segs, total))
}

/// At most [`FREE_SEGMENTS`] plus one segment per [`SEGMENT_DATA`] stored
/// bytes.
fn check_density(segments: usize, total: u64) -> Result<(), String> {
    let allowed = FREE_SEGMENTS + total / SEGMENT_DATA;
    if segments as u64 > allowed {
        return Err(format!(
            "{segments} segments hold only {total} data bytes; a map may have \
             {FREE_SEGMENTS} segments plus one per {SEGMENT_DATA} bytes ({allowed} here), \
             as GNU tar's always do"
        ));
    }
    Ok(())
}

/// The segments of a flat map, sorted, non-overlapping and inside
/// `realsize`, and their total length.
fn checked_segments(flat: &[u64], realsize: u64) -> Result<(Vec<Segment>, u64), String> {
    if !flat.len().is_multiple_of(2) {
        return Err("odd number of map values".into());
    }
    if flat.len() / 2 > MAX_SEGMENTS {
        return Err(format!("more than {MAX_SEGMENTS} segments"));
    }
    let mut segs: Vec<Segment> = Vec::with_capacity(flat.len() / 2);
    let mut end = 0u64;
    let mut total = 0u64;
    for p in flat.chunks_exact(2) {
        let (offset, len) = (p[0], p[1]);
        let seg_end = offset
            .checked_add(len)
            .ok_or_else(|| format!("segment {offset}+{len} overflows"))?;
        if seg_end > realsize {
            return Err(format!(
                "segment {offset}+{len} lies beyond the file size {realsize}"
            ));
        }
        if len == 0 {
            continue;
        }
        if offset < end {
            return Err(format!(
                "segment at {offset} overlaps or precedes the previous one (ending at {end})"
            ));
        }
        end = seg_end;
        total += len; // cannot overflow: bounded by realsize
        segs.push(Segment { offset, len });
    }
    Ok((segs, total))
}

/// Incremental parser for the PAX 1.0 in-data map: decimal numbers each
/// ended by '\n' — the count, then offset/size pairs — padded with NULs to
/// a block boundary.
#[derive(Default)]
pub struct DataMapParser {
    count: Option<u64>,
    values: Vec<u64>,
    cur: Option<u64>,
}

impl DataMapParser {
    /// Feed one 512-byte block. Returns `Ok(true)` once the map is
    /// complete (the rest of that block is padding).
    pub fn feed(&mut self, block: &[u8]) -> Result<bool, String> {
        for &b in block {
            if self.done() {
                return Ok(true);
            }
            match b {
                b'0'..=b'9' => {
                    let v = self
                        .cur
                        .unwrap_or(0)
                        .checked_mul(10)
                        .and_then(|v| v.checked_add((b - b'0') as u64))
                        .ok_or("number out of range")?;
                    self.cur = Some(v);
                }
                b'\n' => {
                    let v = self.cur.take().ok_or("empty number")?;
                    match self.count {
                        None => {
                            if v > MAX_SEGMENTS as u64 {
                                return Err(format!("{v} segments is more than {MAX_SEGMENTS}"));
                            }
                            self.count = Some(v);
                        }
                        Some(_) => self.values.push(v),
                    }
                }
                _ => return Err(format!("unexpected byte {b:#04x} in map")),
            }
        }
        Ok(self.done())
    }

    fn done(&self) -> bool {
        self.count
            .is_some_and(|c| self.values.len() as u64 == c * 2)
    }

    pub fn into_values(self) -> Vec<u64> {
        self.values
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs() {
        let (s, t) = segments_from_pairs(&[0, 10, 100, 5, 200, 0], 200).unwrap();
        assert_eq!(
            s,
            vec![
                Segment { offset: 0, len: 10 },
                Segment {
                    offset: 100,
                    len: 5
                }
            ]
        );
        assert_eq!(t, 15);
        assert!(segments_from_pairs(&[0, 10, 5, 5], 200).is_err());
        assert!(segments_from_pairs(&[0, 300], 200).is_err());
        assert!(segments_from_pairs(&[u64::MAX, 2], u64::MAX).is_err());
        assert_eq!(segments_from_pairs(&[], 0).unwrap().0, vec![]);
    }

    /// Issue 14: many one-byte segments are refused, GNU tar-like maps
    /// (512-byte multiples, a short last one) are not.
    #[test]
    fn density() {
        let tiny = |n: u64| (0..n).flat_map(|i| [i * 8192, 1]).collect::<Vec<_>>();
        assert!(segments_from_pairs(&tiny(8), 1 << 20).is_ok());
        let e = segments_from_pairs(&tiny(9), 1 << 20).unwrap_err();
        assert!(e.contains("9 segments hold only 9 data bytes"), "{e}");
        assert!(segments_from_pairs(&tiny(1_000_000), 1 << 40).is_err());
        // 100 000 segments of 512 bytes, the last one short.
        let mut gnu: Vec<u64> = (0..100_000u64).flat_map(|i| [i * 4096, 512]).collect();
        let last = gnu.len() - 1;
        gnu[last] = 3;
        let (s, total) = segments_from_pairs(&gnu, 1 << 40).unwrap();
        assert_eq!((s.len(), total), (100_000, 99_999 * 512 + 3));
    }

    #[test]
    fn data_map() {
        let mut p = DataMapParser::default();
        let mut b = [0u8; 512];
        b[..8].copy_from_slice(b"2\n0\n10\n1");
        assert!(!p.feed(&b[..8]).unwrap());
        assert!(p.feed(b"00\n5\n\0\0").unwrap());
        assert_eq!(p.into_values(), vec![0, 10, 100, 5]);
        assert!(DataMapParser::default().feed(b"x").is_err());
        assert!(DataMapParser::default().feed(b"\n").is_err());
        assert!(DataMapParser::default().feed(b"99999999999\n").is_err());
        let cap = format!("{MAX_SEGMENTS}\n");
        assert_eq!(DataMapParser::default().feed(cap.as_bytes()), Ok(false));
        let over = format!("{}\n", MAX_SEGMENTS + 1);
        assert!(DataMapParser::default().feed(over.as_bytes()).is_err());
        assert!(DataMapParser::default().feed(b"1\n0\0").is_err());
    }
}
