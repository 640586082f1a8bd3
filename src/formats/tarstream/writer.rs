//! A small POSIX pax (ustar + extended header) writer, deterministic by
//! construction: every header field is derived from the member alone, no
//! user or group names, PAX records in a fixed order.
//!
//! A member is one ustar header block, preceded by a PAX `x` header when
//! some value does not fit the ustar fields (long path or link target,
//! sub-second or out-of-range mtime, large ids or sizes, device numbers above
//! 7 octal digits), when it has xattrs, or when it is a sparse file in
//! GNU PAX format 1.0.

use std::io::{self, Write};

use super::header::BLOCK;
use crate::tree::Timestamp;

/// Name of every PAX extended header member (as the `tar` crate and star
/// write it; readers that know pax never extract it).
const PAX_HEADER_NAME: &[u8] = b"././@PaxHeader";

/// Largest value of an octal field of `width` bytes (width-1 digits + NUL).
fn octal_max(width: usize) -> u64 {
    (1u64 << (3 * (width as u32 - 1))) - 1
}

/// Write `v` as zero-padded octal ending in NUL, or GNU base-256 if it
/// does not fit (callers also put the exact value in a PAX record).
fn put_num(field: &mut [u8], v: u64) {
    let w = field.len();
    if v <= octal_max(w) {
        let s = format!("{v:0width$o}", width = w - 1);
        field[..w - 1].copy_from_slice(s.as_bytes());
        field[w - 1] = 0;
    } else {
        field.fill(0);
        let be = v.to_be_bytes();
        let n = be.len().min(w - 1);
        field[w - n..].copy_from_slice(&be[be.len() - n..]);
        field[0] = 0x80;
    }
}

/// Append one PAX record `"%d %s=%s\n"`; the length counts itself.
pub fn pax_record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    let body = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = body + 1;
    loop {
        let digits = len.to_string().len();
        if digits + body == len {
            break;
        }
        len = digits + body;
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

/// A PAX time value: `secs.nnnnnnnnn`, negative times as `-S.F` meaning
/// `-(S + F)` (what GNU tar writes and reads).
pub fn pax_time(t: Timestamp) -> String {
    if t.nsec == 0 {
        t.secs.to_string()
    } else if t.secs >= 0 {
        format!("{}.{:09}", t.secs, t.nsec)
    } else {
        // t = secs + nsec/1e9 = -((-secs - 1) + (1e9 - nsec)/1e9)
        let whole = -(t.secs + 1);
        format!("-{}.{:09}", whole, 1_000_000_000 - t.nsec)
    }
}

/// GNU tar's escaping of xattr names in `SCHILY.xattr.` keywords (`%` and
/// `=` would otherwise break the record syntax).
pub fn encode_xattr_name(name: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len());
    for &b in name {
        match b {
            b'%' => out.extend_from_slice(b"%25"),
            b'=' => out.extend_from_slice(b"%3D"),
            _ => out.push(b),
        }
    }
    out
}

/// ustar type flags.
pub mod typeflag {
    pub const FILE: u8 = b'0';
    pub const HARDLINK: u8 = b'1';
    pub const SYMLINK: u8 = b'2';
    pub const CHAR: u8 = b'3';
    pub const BLOCK: u8 = b'4';
    pub const DIR: u8 = b'5';
    pub const FIFO: u8 = b'6';
    pub const PAX: u8 = b'x';
}

/// One member's metadata as it goes into the headers.
pub struct Member<'a> {
    /// Archive name (directories with a trailing `/`).
    pub name: &'a [u8],
    pub typeflag: u8,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: Timestamp,
    /// Bytes of data following the header (for sparse files: map + data).
    pub size: u64,
    pub linkname: &'a [u8],
    pub dev: (u32, u32),
    /// Sorted by name.
    pub xattrs: &'a [(Vec<u8>, Vec<u8>)],
    /// GNU PAX sparse 1.0: the real file size (the name goes into
    /// `GNU.sparse.name` and the ustar name is `name`'s stand-in).
    pub sparse: Option<SparseInfo<'a>>,
}

pub struct SparseInfo<'a> {
    pub real_name: &'a [u8],
    pub realsize: u64,
}

/// Counts bytes and pads data to block boundaries.
pub struct TarWriter<W: Write> {
    out: W,
    written: u64,
}

#[allow(clippy::too_many_arguments)]
fn ustar_block(
    name: &[u8],
    mode: u32,
    uid: u64,
    gid: u64,
    size: u64,
    mtime: u64,
    typeflag: u8,
    linkname: &[u8],
    dev: (u64, u64),
) -> [u8; BLOCK] {
    let mut b = [0u8; BLOCK];
    let n = name.len().min(100);
    b[..n].copy_from_slice(&name[..n]);
    put_num(&mut b[100..108], mode as u64);
    put_num(&mut b[108..116], uid);
    put_num(&mut b[116..124], gid);
    put_num(&mut b[124..136], size);
    put_num(&mut b[136..148], mtime);
    b[156] = typeflag;
    let l = linkname.len().min(100);
    b[157..157 + l].copy_from_slice(&linkname[..l]);
    b[257..263].copy_from_slice(b"ustar\0");
    b[263..265].copy_from_slice(b"00");
    // uname (265..297) and gname (297..329) stay empty: numeric owners only.
    put_num(&mut b[329..337], dev.0);
    put_num(&mut b[337..345], dev.1);
    // Checksum: sum of all bytes with the checksum field as spaces.
    b[148..156].fill(b' ');
    let sum: u32 = b.iter().map(|&x| x as u32).sum();
    let s = format!("{sum:06o}\0 ");
    b[148..156].copy_from_slice(s.as_bytes());
    b
}

impl<W: Write> TarWriter<W> {
    pub fn new(out: W) -> Self {
        TarWriter { out, written: 0 }
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    pub fn into_inner(self) -> W {
        self.out
    }

    fn put(&mut self, b: &[u8]) -> io::Result<()> {
        self.out.write_all(b)?;
        self.written += b.len() as u64;
        Ok(())
    }

    /// Write the member's header(s); its `size` bytes of data must follow
    /// through [`TarWriter::write_data`], then [`TarWriter::pad`].
    pub fn header(&mut self, m: &Member) -> io::Result<()> {
        let mut rec = Vec::new();
        let (name, path_record): (&[u8], bool) = match &m.sparse {
            Some(_) => (m.name, false),
            None => (m.name, m.name.len() > 100),
        };
        if path_record {
            pax_record(&mut rec, b"path", m.name);
        }
        if m.linkname.len() > 100 {
            pax_record(&mut rec, b"linkpath", m.linkname);
        }
        if let Some(s) = &m.sparse {
            pax_record(&mut rec, b"GNU.sparse.major", b"1");
            pax_record(&mut rec, b"GNU.sparse.minor", b"0");
            pax_record(&mut rec, b"GNU.sparse.name", s.real_name);
            pax_record(
                &mut rec,
                b"GNU.sparse.realsize",
                s.realsize.to_string().as_bytes(),
            );
        }
        if m.size > octal_max(12) {
            pax_record(&mut rec, b"size", m.size.to_string().as_bytes());
        }
        if m.uid as u64 > octal_max(8) {
            pax_record(&mut rec, b"uid", m.uid.to_string().as_bytes());
        }
        if m.gid as u64 > octal_max(8) {
            pax_record(&mut rec, b"gid", m.gid.to_string().as_bytes());
        }
        let mtime_fits = m.mtime.secs >= 0 && (m.mtime.secs as u64) <= octal_max(12);
        if m.mtime.nsec != 0 || !mtime_fits {
            pax_record(&mut rec, b"mtime", pax_time(m.mtime).as_bytes());
        }
        if m.dev.0 as u64 > octal_max(8) {
            pax_record(&mut rec, b"SCHILY.devmajor", m.dev.0.to_string().as_bytes());
        }
        if m.dev.1 as u64 > octal_max(8) {
            pax_record(&mut rec, b"SCHILY.devminor", m.dev.1.to_string().as_bytes());
        }
        for (k, v) in m.xattrs {
            let key: &[u8] = match k.as_slice() {
                b"system.posix_acl_access" => b"SCHILY.acl.access",
                b"system.posix_acl_default" => b"SCHILY.acl.default",
                _ => continue,
            };
            if let Some(text) = super::acl::xattr_to_text(v) {
                pax_record(&mut rec, key, text.as_bytes());
            }
        }
        for (k, v) in m.xattrs {
            let mut key = b"SCHILY.xattr.".to_vec();
            key.extend_from_slice(&encode_xattr_name(k));
            pax_record(&mut rec, &key, v);
        }
        // ustar header mtime: the PAX record carries the exact value.
        let hdr_mtime = m.mtime.secs.clamp(0, octal_max(12) as i64) as u64;
        if !rec.is_empty() {
            let h = ustar_block(
                PAX_HEADER_NAME,
                0o644,
                0,
                0,
                rec.len() as u64,
                hdr_mtime,
                typeflag::PAX,
                b"",
                (0, 0),
            );
            self.put(&h)?;
            self.put(&rec)?;
            self.pad(rec.len() as u64)?;
        }
        let h = ustar_block(
            name,
            m.mode & 0o7777,
            m.uid as u64,
            m.gid as u64,
            m.size,
            hdr_mtime,
            m.typeflag,
            m.linkname,
            (m.dev.0 as u64, m.dev.1 as u64),
        );
        self.put(&h)
    }

    pub fn write_data(&mut self, b: &[u8]) -> io::Result<()> {
        self.put(b)
    }

    /// Zero bytes up to the next block boundary after `len` data bytes.
    pub fn pad(&mut self, len: u64) -> io::Result<()> {
        let rem = (len % BLOCK as u64) as usize;
        if rem != 0 {
            self.put(&[0u8; BLOCK][..BLOCK - rem])?;
        }
        Ok(())
    }

    /// The end-of-archive marker (two zero blocks) and a flush.
    pub fn finish(&mut self) -> io::Result<()> {
        self.put(&[0u8; 2 * BLOCK])?;
        self.out.flush()
    }
}

/// The in-data map of GNU PAX sparse 1.0: the pair count, then offset and
/// length, each a decimal number ending in `\n`, padded with NULs to a block
/// boundary.
pub fn sparse_map_block(pairs: &[(u64, u64)]) -> Vec<u8> {
    let mut m = format!("{}\n", pairs.len()).into_bytes();
    for (o, l) in pairs {
        m.extend_from_slice(format!("{o}\n{l}\n").as_bytes());
    }
    let rem = m.len() % BLOCK;
    if rem != 0 {
        m.resize(m.len() + BLOCK - rem, 0);
    }
    m
}

/// The ustar stand-in name of a sparse 1.0 member: `DIR/GNUSparseFile.0/BASE`
/// (GNU tar puts its pid where we put 0, which would not be reproducible).
pub fn sparse_stand_in(path: &[u8]) -> Vec<u8> {
    let (dir, base) = match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (&path[..i + 1], &path[i + 1..]),
        None => (&b""[..], path),
    };
    let mut out = dir.to_vec();
    out.extend_from_slice(b"GNUSparseFile.0/");
    out.extend_from_slice(base);
    out.truncate(100);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_lengths_count_themselves() {
        for vlen in [0usize, 1, 3, 4, 5, 90, 91, 92, 93, 994, 995, 996, 9990] {
            let mut out = Vec::new();
            let v = vec![b'v'; vlen];
            pax_record(&mut out, b"path", &v);
            let sp = out.iter().position(|&b| b == b' ').unwrap();
            let n: usize = std::str::from_utf8(&out[..sp]).unwrap().parse().unwrap();
            assert_eq!(n, out.len(), "value length {vlen}");
        }
    }

    #[test]
    fn times() {
        assert_eq!(pax_time(Timestamp::new(5, 0)), "5");
        assert_eq!(pax_time(Timestamp::new(5, 7)), "5.000000007");
        assert_eq!(pax_time(Timestamp::new(-1, 0)), "-1");
        // -157766400 + 0.123456789 = -157766399.876543211
        assert_eq!(
            pax_time(Timestamp::new(-157766400, 123456789)),
            "-157766399.876543211"
        );
        assert_eq!(pax_time(Timestamp::new(-1, 5)), "-0.999999995");
    }

    #[test]
    fn numbers() {
        let mut f = [0u8; 8];
        put_num(&mut f, 0o644);
        assert_eq!(&f, b"0000644\0");
        put_num(&mut f, 1 << 30);
        assert_eq!(f[0], 0x80);
        assert_eq!(&f[4..], &(1u32 << 30).to_be_bytes());
    }

    #[test]
    fn stand_in_names() {
        assert_eq!(sparse_stand_in(b"a/b/c"), b"a/b/GNUSparseFile.0/c");
        assert_eq!(sparse_stand_in(b"c"), b"GNUSparseFile.0/c");
        assert_eq!(sparse_map_block(&[(1, 2)]).len(), 512);
        assert!(sparse_map_block(&[(1, 2)]).starts_with(b"1\n1\n2\n\0"));
    }

    #[test]
    fn xattr_names_escaped() {
        assert_eq!(encode_xattr_name(b"user.a=b%"), b"user.a%3Db%25");
    }
}
