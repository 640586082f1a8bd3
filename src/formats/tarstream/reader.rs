//! The archive state machine: header blocks, GNU long-name and PAX
//! extension headers, sparse maps, and the data of the current entry.
//!
//! Archive structure (POSIX pax(1), "ustar Interchange Format"): 512-byte
//! blocks; each member is a header block followed by its data padded to a
//! block boundary; the archive ends with two zero blocks. GNU tar also
//! accepts an archive ending after one zero block or at a block boundary
//! without any, and so do we. Extension headers ('L', 'K', 'x', and 'g')
//! are members of their own whose data modifies the next real member.

use std::io;

use super::acl;
use super::header::{
    cstr, padded, parse_signed, parse_unsigned, shown, slot_empty, sparse_slots, Block, Dialect,
    Header, BLOCK,
};
use super::pax::{parse_records, PaxAttrs, Record, SparseAttrs};
use super::source::{Buffered, TarSource};
use super::sparse::{segments_from_pairs, DataMapParser, MAX_MAP_BYTES, MAX_SEGMENTS};
use super::xattrs::Xattrs;
use super::TarError;
use crate::tree::{
    display_path, normalize_path, Entry, EntryKind, FileData, RawLocation, Segment, Timestamp,
};

/// Largest extension header (PAX 'x'/'g', GNU 'L'/'K') we load into memory;
/// real ones are a few KiB (big xattrs at most 64 KiB each on Linux).
pub const MAX_EXT_SIZE: u64 = 16 << 20;

/// Extension headers seen since the last real member.
#[derive(Default)]
struct Pending {
    /// Offset of the first extension header of this member.
    first: Option<u64>,
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
    local: Vec<Record>,
    local_bytes: u64,
}

/// The current member's data region.
struct Current {
    path: String,
    /// Offset of the member's first header (for messages).
    offset: u64,
    is_file: bool,
    /// Stream offset of the first data byte (after a PAX 1.0 map).
    data_start: u64,
    /// Bytes of segment data, returned by `read`.
    data_len: u64,
    /// Of which already returned (or declared consumed by the caller).
    consumed: u64,
    /// Stream offset just past the data and its padding.
    end: u64,
    seg_lens: Vec<u64>,
}

/// Streaming tar reader; see the module documentation of
/// [`crate::tarstream`].
pub struct TarReader<R> {
    buf: Buffered<R>,
    /// Values from PAX global headers, applied under each entry's own.
    globals: PaxAttrs,
    cur: Option<Current>,
    /// End of archive reached (or an error made going on pointless).
    done: bool,
}

fn io_err(offset: u64) -> impl FnOnce(io::Error) -> TarError {
    move |source| TarError::Io { offset, source }
}

impl<R: TarSource> TarReader<R> {
    pub fn new(input: R) -> Self {
        TarReader {
            buf: Buffered::new(input),
            globals: PaxAttrs::default(),
            cur: None,
            done: false,
        }
    }

    /// The input, e.g. to inspect a [`super::TarInput`]'s compression.
    pub fn get_ref(&self) -> &R {
        &self.buf.src
    }

    /// Next entry, after skipping any unread data (and padding) of the
    /// previous one. `Ok(None)` at end of archive. After an error the
    /// reader stays at end.
    pub fn next_entry(&mut self) -> Result<Option<Entry>, TarError> {
        let r = self.next_inner();
        if r.is_err() {
            self.done = true;
            self.cur = None;
        }
        r
    }

    fn next_inner(&mut self) -> Result<Option<Entry>, TarError> {
        if let Some(cur) = self.cur.take() {
            self.skip_to_end(&cur)?;
        }
        if self.done {
            return Ok(None);
        }
        let mut ext = Pending::default();
        let mut block: Block = [0; BLOCK];
        loop {
            let hoff = self.buf.pos();
            let n = self.buf.read_full(&mut block).map_err(io_err(hoff))?;
            let ext_path = || ext_name(&ext);
            if n == 0 && ext.first.is_none() {
                self.done = true;
                return Ok(None);
            }
            if n == 0 {
                return Err(TarError::Truncated {
                    what: "archive: extension header not followed by a file header".into(),
                    path: ext_path(),
                    offset: ext.first.unwrap_or(hoff),
                });
            }
            if n < BLOCK {
                return Err(TarError::Truncated {
                    what: format!("header ({n} of 512 bytes present)"),
                    path: ext_path(),
                    offset: hoff,
                });
            }
            if Header::is_zero(&block) {
                if let Some(first) = ext.first {
                    return Err(TarError::BadHeader {
                        path: ext_path(),
                        offset: first,
                        detail: "extension header followed by the end-of-archive marker".into(),
                    });
                }
                // Consume the second zero block if there is one; like GNU
                // tar, anything after the first zero block ends the
                // archive either way.
                let _ = self.buf.read_full(&mut block).map_err(io_err(hoff + 512))?;
                self.done = true;
                return Ok(None);
            }
            let h = Header::check(&block).map_err(|(stored, computed)| TarError::BadChecksum {
                offset: hoff,
                stored,
                computed,
            })?;
            let size = parse_unsigned(h.field("size")).map_err(|_| TarError::BadNumber {
                field: "size",
                value: shown(h.field("size")),
                path: String::from_utf8_lossy(&h.path()).into_owned(),
                offset: hoff,
            })?;
            let typeflag = h.typeflag();
            match typeflag {
                b'L' | b'K' | b'x' | b'X' | b'g' => {
                    let what = match typeflag {
                        b'L' => "GNU long name",
                        b'K' => "GNU long link name",
                        _ => "PAX extended header",
                    };
                    let name = String::from_utf8_lossy(&h.path()).into_owned();
                    let data = self.read_ext(size, hoff, what, &name)?;
                    match typeflag {
                        b'L' => ext.long_name = Some(cstr(&data).to_vec()),
                        b'K' => ext.long_link = Some(cstr(&data).to_vec()),
                        b'g' => {
                            self.apply_global(&data, hoff, &name)?;
                            continue; // not part of the next member
                        }
                        _ => {
                            ext.local_bytes += size;
                            if ext.local_bytes > MAX_EXT_SIZE {
                                return Err(TarError::BadPax {
                                    path: name,
                                    offset: hoff,
                                    detail: format!(
                                        "extended headers larger than {MAX_EXT_SIZE} bytes in total"
                                    ),
                                });
                            }
                            let recs = parse_records(&data).map_err(|detail| TarError::BadPax {
                                path: name,
                                offset: hoff,
                                detail,
                            })?;
                            ext.local.extend(recs);
                        }
                    }
                    ext.first.get_or_insert(hoff);
                }
                // Volume label: no file, skip it and its (usually empty) data.
                b'V' => self.skip_data(size, hoff, "volume label")?,
                _ => return self.member(&h, hoff, size, ext).map(Some),
            }
        }
    }

    /// Skip `size` bytes of member data plus padding, or fail as truncated.
    fn skip_data(&mut self, size: u64, offset: u64, what: &str) -> Result<(), TarError> {
        let start = self.buf.pos();
        let want = padded(size).ok_or_else(|| TarError::BadHeader {
            path: String::new(),
            offset,
            detail: format!("{what}: size {size} out of range"),
        })?;
        let got = self.buf.skip(want).map_err(io_err(start))?;
        if got < want {
            return Err(TarError::Truncated {
                what: format!("in {what} data (expected {want} bytes, archive ended after {got})"),
                path: String::new(),
                offset,
            });
        }
        Ok(())
    }

    /// Load an extension header's data (size capped) and skip its padding.
    fn read_ext(
        &mut self,
        size: u64,
        hoff: u64,
        what: &str,
        name: &str,
    ) -> Result<Vec<u8>, TarError> {
        if size > MAX_EXT_SIZE {
            return Err(TarError::BadHeader {
                path: name.to_string(),
                offset: hoff,
                detail: format!("{what} of {size} bytes exceeds the {MAX_EXT_SIZE}-byte limit"),
            });
        }
        let mut data = vec![0u8; size as usize];
        let got = self.buf.read_full(&mut data).map_err(io_err(hoff))?;
        let pad = padded(size).unwrap_or(size) - size;
        let got_pad = self.buf.skip(pad).map_err(io_err(hoff))?;
        if got < data.len() || got_pad < pad {
            return Err(TarError::Truncated {
                what: format!("in {what} (expected {size} bytes, archive ended after {got})"),
                path: name.to_string(),
                offset: hoff,
            });
        }
        Ok(data)
    }

    fn apply_global(&mut self, data: &[u8], hoff: u64, name: &str) -> Result<(), TarError> {
        let bad = |detail| TarError::BadPax {
            path: name.to_string(),
            offset: hoff,
            detail,
        };
        for (k, v) in parse_records(data).map_err(bad)? {
            self.globals.apply(&k, &v, false).map_err(bad)?;
        }
        if self.globals.xattrs.bytes() as u64 > MAX_EXT_SIZE {
            return Err(bad(format!(
                "global xattrs larger than {MAX_EXT_SIZE} bytes in total"
            )));
        }
        Ok(())
    }

    /// Build the entry for a real member header and set up its data.
    fn member(
        &mut self,
        h: &Header<'_>,
        hoff: u64,
        header_size: u64,
        ext: Pending,
    ) -> Result<Entry, TarError> {
        let first = ext.first.unwrap_or(hoff);
        let mut attrs = self.member_attrs(h, &ext, first)?;
        let sparse = std::mem::take(&mut attrs.sparse);
        let typeflag = h.typeflag();
        let is_sparse_pax = sparse.is_sparse() && matches!(typeflag, b'0' | 0 | b'7');
        let raw_path = raw_path(h, &ext, &attrs, &sparse, is_sparse_pax);
        let path = normalize_path(&raw_path).map_err(|source| TarError::Path {
            offset: first,
            source,
        })?;
        let disp = display_path(&path);
        let f = Fields {
            h,
            path: &disp,
            offset: first,
        };
        let kind = entry_kind(&f, &raw_path, &attrs, &ext)?;
        if path.is_empty() && kind != EntryKind::Dir {
            return Err(TarError::BadHeader {
                path: String::from_utf8_lossy(&raw_path).into_owned(),
                offset: first,
                detail: "a non-directory entry names the archive root".into(),
            });
        }
        let meta = metadata(&f, &attrs)?;
        let mut stored = attrs.size.unwrap_or(header_size);

        // Sparse map as flat offset,len pairs plus the real size: old GNU
        // maps sit in extension headers before the data region, PAX 1.0
        // maps at its start.
        let mut sparse_map: Option<(Vec<u64>, u64)> = None;
        if typeflag == b'S' {
            let realsize = u64::try_from(f.num("realsize")?)
                .map_err(|_| f.bad_sparse("negative realsize".into()))?;
            sparse_map = Some((self.old_gnu_map(h, &disp, first)?, realsize));
        }
        let region_start = self.buf.pos();
        let region_end = padded(stored)
            .and_then(|p| region_start.checked_add(p))
            .ok_or_else(|| TarError::BadNumber {
                field: "size",
                value: stored.to_string(),
                path: disp.clone(),
                offset: first,
            })?;
        if is_sparse_pax && kind == EntryKind::File {
            sparse_map = Some(self.pax_sparse_map(&f, sparse, &mut stored)?);
        }
        let data_start = self.buf.pos();
        let (size, segments, data_len) = data_layout(&f, &kind, sparse_map, stored)?;
        let xattrs = with_acls(std::mem::take(&mut attrs.xattrs), &attrs, &f)?;

        self.cur = Some(Current {
            path: disp,
            offset: first,
            is_file: kind == EntryKind::File,
            data_start,
            data_len,
            consumed: 0,
            end: region_end,
            seg_lens: segments.iter().map(|s| s.len).collect(),
        });
        Ok(Entry {
            path,
            kind,
            mode: meta.mode,
            uid: meta.uid,
            gid: meta.gid,
            mtime: meta.mtime,
            atime: meta.atime,
            ctime: meta.ctime,
            xattrs,
            size,
            segments,
            source_offset: first,
        })
    }

    /// The global PAX attributes with the member's own records applied.
    fn member_attrs(
        &self,
        h: &Header<'_>,
        ext: &Pending,
        first: u64,
    ) -> Result<PaxAttrs, TarError> {
        let early_name =
            String::from_utf8_lossy(ext.long_name.as_deref().unwrap_or(&h.path())).into_owned();
        let mut attrs = self.globals.clone();
        for (k, v) in &ext.local {
            attrs.apply(k, v, true).map_err(|detail| TarError::BadPax {
                path: early_name.clone(),
                offset: first,
                detail,
            })?;
        }
        Ok(attrs)
    }

    /// A PAX sparse file's map (0.0 pairs, 0.1 `GNU.sparse.map`, or 1.0 at
    /// the start of the data, whose bytes then no longer count as stored
    /// data) and its real size.
    fn pax_sparse_map(
        &mut self,
        f: &Fields<'_>,
        sparse: SparseAttrs,
        stored: &mut u64,
    ) -> Result<(Vec<u64>, u64), TarError> {
        let realsize = sparse.realsize.ok_or_else(|| {
            f.bad_sparse("no GNU.sparse.size / GNU.sparse.realsize record".into())
        })?;
        let flat = if sparse.map_in_data() {
            let (values, map_bytes) = self.data_map(*stored, f.path, f.offset)?;
            *stored -= map_bytes;
            values
        } else if let Some(m) = sparse.map {
            m
        } else {
            if !sparse.pairs.len().is_multiple_of(2) {
                return Err(f.bad_sparse("GNU.sparse.offset without numbytes".into()));
            }
            sparse.pairs
        };
        Ok((flat, realsize))
    }

    /// Old GNU sparse map: 4 slots in the header, then 21 per extension
    /// block while `isextended` is set (GNU tar manual, "Old GNU Format").
    fn old_gnu_map(
        &mut self,
        h: &Header<'_>,
        path: &str,
        first: u64,
    ) -> Result<Vec<u64>, TarError> {
        let bad = |detail: String| TarError::BadSparse {
            path: path.to_string(),
            offset: first,
            detail,
        };
        let mut flat = Vec::new();
        let mut ended = false;
        let mut add = |slots: &mut dyn Iterator<Item = (&[u8], &[u8])>,
                       flat: &mut Vec<u64>|
         -> Result<(), TarError> {
            for (off, len) in slots {
                if ended || slot_empty(off) {
                    ended = true;
                    continue;
                }
                let o =
                    parse_unsigned(off).map_err(|_| bad(format!("bad offset {:?}", shown(off))))?;
                let l =
                    parse_unsigned(len).map_err(|_| bad(format!("bad length {:?}", shown(len))))?;
                flat.extend([o, l]);
            }
            if flat.len() / 2 > MAX_SEGMENTS {
                return Err(bad(format!("more than {MAX_SEGMENTS} segments")));
            }
            Ok(())
        };
        add(&mut h.gnu_sparse_slots(), &mut flat)?;
        let mut extended = h.gnu_is_extended();
        let mut block: Block = [0; BLOCK];
        while extended {
            let at = self.buf.pos();
            let n = self.buf.read_full(&mut block).map_err(io_err(at))?;
            if n < BLOCK {
                return Err(TarError::Truncated {
                    what: "in sparse map extension header".into(),
                    path: path.to_string(),
                    offset: first,
                });
            }
            add(&mut sparse_slots(&block[..504]), &mut flat)?;
            extended = block[504] != 0;
        }
        Ok(flat)
    }

    /// PAX 1.0 sparse map at the start of the data area. Returns the flat
    /// map and how many data bytes (whole blocks) it occupied.
    fn data_map(
        &mut self,
        stored: u64,
        path: &str,
        first: u64,
    ) -> Result<(Vec<u64>, u64), TarError> {
        let mut parser = DataMapParser::default();
        let mut block: Block = [0; BLOCK];
        let mut used = 0u64;
        loop {
            if used + BLOCK as u64 > stored.min(MAX_MAP_BYTES) {
                return Err(TarError::BadSparse {
                    path: path.to_string(),
                    offset: first,
                    detail: format!("in-data map does not end within {used} bytes"),
                });
            }
            let at = self.buf.pos();
            let n = self.buf.read_full(&mut block).map_err(io_err(at))?;
            if n < BLOCK {
                return Err(TarError::Truncated {
                    what: "in sparse map".into(),
                    path: path.to_string(),
                    offset: first,
                });
            }
            used += BLOCK as u64;
            let done = parser.feed(&block).map_err(|detail| TarError::BadSparse {
                path: path.to_string(),
                offset: first,
                detail,
            })?;
            if done {
                return Ok((parser.into_values(), used));
            }
        }
    }

    /// Skip the rest of the current member (unread data and padding).
    fn skip_to_end(&mut self, cur: &Current) -> Result<(), TarError> {
        let pos = self.buf.pos();
        let want = cur.end.saturating_sub(pos);
        let got = self.buf.skip(want).map_err(io_err(pos))?;
        if got < want {
            let ended = pos + got;
            let data_end = cur.data_start + cur.data_len;
            let what = if ended < data_end {
                format!(
                    "in file data (expected {} bytes, archive ended after {})",
                    cur.data_len,
                    ended.saturating_sub(cur.data_start)
                )
            } else {
                format!("in the padding after the data (archive ended at byte {ended})")
            };
            return Err(TarError::Truncated {
                what,
                path: cur.path.clone(),
                offset: cur.offset,
            });
        }
        Ok(())
    }
}

/// Best-known name while only extension headers have been read.
fn ext_name(ext: &Pending) -> String {
    ext.long_name
        .as_deref()
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .unwrap_or_default()
}

impl<R: TarSource> FileData for TarReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let Some(cur) = self.cur.as_mut() else {
            return Ok(0);
        };
        let left = cur.data_len - cur.consumed;
        if left == 0 || out.is_empty() {
            return Ok(0);
        }
        let want = out.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = self.buf.read(&mut out[..want])?;
        if n == 0 {
            let err = TarError::Truncated {
                what: format!(
                    "in file data (expected {} bytes, archive ended after {})",
                    cur.data_len, cur.consumed
                ),
                path: cur.path.clone(),
                offset: cur.offset,
            };
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, err));
        }
        cur.consumed += n as u64;
        Ok(n)
    }

    fn raw_location(&self) -> Option<RawLocation<'_>> {
        let cur = self.cur.as_ref().filter(|c| c.is_file)?;
        let (file, start) = self.buf.raw_offset(cur.data_start)?;
        let mut offsets = Vec::with_capacity(cur.seg_lens.len());
        let mut at = start;
        for len in &cur.seg_lens {
            offsets.push(at);
            at += len;
        }
        Some(RawLocation { file, offsets })
    }

    fn mark_consumed(&mut self) {
        if let Some(cur) = self.cur.as_mut() {
            cur.consumed = cur.data_len;
        }
    }
}

/// One member's header fields, with errors that name the member.
struct Fields<'a> {
    h: &'a Header<'a>,
    path: &'a str,
    offset: u64,
}

impl Fields<'_> {
    fn num(&self, field: &'static str) -> Result<i64, TarError> {
        parse_signed(self.h.field(field)).map_err(|_| TarError::BadNumber {
            field,
            value: shown(self.h.field(field)),
            path: self.path.to_string(),
            offset: self.offset,
        })
    }

    fn num32(&self, field: &'static str) -> Result<u32, TarError> {
        let v = self.num(field)?;
        u32::try_from(v).map_err(|_| TarError::BadNumber {
            field,
            value: v.to_string(),
            path: self.path.to_string(),
            offset: self.offset,
        })
    }

    /// Old GNU headers carry atime/ctime (written by --incremental);
    /// all-NUL means absent.
    fn gnu_time(&self, field: &'static str) -> Result<Option<Timestamp>, TarError> {
        if self.h.dialect() != Dialect::Gnu || self.h.field(field).iter().all(|&b| b == 0) {
            return Ok(None);
        }
        Ok(Some(Timestamp::new(self.num(field)?, 0)))
    }

    fn bad_sparse(&self, detail: String) -> TarError {
        TarError::BadSparse {
            path: self.path.to_string(),
            offset: self.offset,
            detail,
        }
    }
}

/// Name precedence: the real name of a PAX sparse file, then PAX `path`,
/// GNU long name, ustar prefix/name.
fn raw_path(
    h: &Header<'_>,
    ext: &Pending,
    attrs: &PaxAttrs,
    sparse: &SparseAttrs,
    is_sparse_pax: bool,
) -> Vec<u8> {
    match (is_sparse_pax, &sparse.name, &attrs.path, &ext.long_name) {
        (true, Some(n), _, _) => n.clone(),
        (_, _, Some(p), _) => p.clone(),
        (_, _, _, Some(l)) => l.clone(),
        _ => h.path(),
    }
}

/// What the typeflag (and, for V7 archives, a trailing '/') makes the
/// member; link targets by PAX `linkpath`, GNU long link, ustar linkname.
fn entry_kind(
    f: &Fields<'_>,
    raw_path: &[u8],
    attrs: &PaxAttrs,
    ext: &Pending,
) -> Result<EntryKind, TarError> {
    let h = f.h;
    let typeflag = h.typeflag();
    let link = || match (&attrs.linkpath, &ext.long_link) {
        (Some(p), _) => p.clone(),
        (_, Some(l)) => l.clone(),
        _ => h.link_name(),
    };
    Ok(match typeflag {
        // V7 convention (also honoured by GNU tar): a "regular file"
        // whose name ends in '/' is a directory.
        0 | b'0' if raw_path.ends_with(b"/") && (typeflag == 0 || h.dialect() == Dialect::V7) => {
            EntryKind::Dir
        }
        0 | b'0' | b'7' | b'S' => EntryKind::File,
        b'1' => EntryKind::HardLink(normalize_path(&link()).map_err(|source| TarError::Path {
            offset: f.offset,
            source,
        })?),
        b'2' => EntryKind::Symlink(link()),
        b'3' | b'4' => {
            let major = match attrs.devmajor {
                Some(v) => v,
                None => f.num32("devmajor")?,
            };
            let minor = match attrs.devminor {
                Some(v) => v,
                None => f.num32("devminor")?,
            };
            if typeflag == b'3' {
                EntryKind::CharDev { major, minor }
            } else {
                EntryKind::BlockDev { major, minor }
            }
        }
        // 'D': GNU incremental dumpdir, a directory whose data lists its
        // contents; the listing is skipped.
        b'5' | b'D' => EntryKind::Dir,
        b'6' => EntryKind::Fifo,
        other => {
            return Err(TarError::UnsupportedType {
                typeflag: other as char,
                path: f.path.to_string(),
                offset: f.offset,
            })
        }
    })
}

/// Permissions, owners and times: PAX values win over the header's.
struct Metadata {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: Timestamp,
    atime: Option<Timestamp>,
    ctime: Option<Timestamp>,
}

fn metadata(f: &Fields<'_>, attrs: &PaxAttrs) -> Result<Metadata, TarError> {
    Ok(Metadata {
        mode: (f.num("mode")? & 0o7777) as u32,
        uid: match attrs.uid {
            Some(v) => v,
            None => f.num32("uid")?,
        },
        gid: match attrs.gid {
            Some(v) => v,
            None => f.num32("gid")?,
        },
        mtime: match attrs.mtime {
            Some(t) => t,
            None => Timestamp::new(f.num("mtime")?, 0),
        },
        atime: match attrs.atime {
            Some(t) => Some(t),
            None => f.gnu_time("atime")?,
        },
        ctime: match attrs.ctime {
            Some(t) => Some(t),
            None => f.gnu_time("ctime")?,
        },
    })
}

/// (apparent size, data segments, stored data bytes) of a member.
fn data_layout(
    f: &Fields<'_>,
    kind: &EntryKind,
    sparse_map: Option<(Vec<u64>, u64)>,
    stored: u64,
) -> Result<(u64, Vec<Segment>, u64), TarError> {
    Ok(match (kind, sparse_map) {
        (EntryKind::File, Some((flat, realsize))) => {
            let (segs, total) =
                segments_from_pairs(&flat, realsize).map_err(|d| f.bad_sparse(d))?;
            if total > stored {
                return Err(f.bad_sparse(format!(
                    "map describes {total} data bytes but the entry stores only {stored}"
                )));
            }
            (realsize, segs, total)
        }
        (EntryKind::File, None) => {
            let segs = if stored > 0 {
                vec![Segment {
                    offset: 0,
                    len: stored,
                }]
            } else {
                vec![]
            };
            (stored, segs, stored)
        }
        _ => (0, vec![], 0),
    })
}

/// POSIX ACLs in their text form (`SCHILY.acl.access`/`.default`) as the
/// `system.posix_acl_*` xattrs; an explicit xattr of the same name wins.
fn with_acls(
    mut xattrs: Xattrs,
    attrs: &PaxAttrs,
    f: &Fields<'_>,
) -> Result<Vec<Record>, TarError> {
    for (text, name) in [
        (&attrs.acl_access, &b"system.posix_acl_access"[..]),
        (&attrs.acl_default, &b"system.posix_acl_default"[..]),
    ] {
        let Some(text) = text else { continue };
        if xattrs.contains(name) {
            continue;
        }
        match acl::text_to_xattr(text) {
            Ok(Some(v)) => xattrs.set(name.to_vec(), v),
            Ok(None) => {}
            Err(detail) => {
                return Err(TarError::BadAcl {
                    path: f.path.to_string(),
                    offset: f.offset,
                    text: String::from_utf8_lossy(text).into_owned(),
                    detail,
                })
            }
        }
    }
    Ok(xattrs.into_vec())
}
