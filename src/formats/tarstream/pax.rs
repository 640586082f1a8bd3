//! PAX extended header records (POSIX pax(1), "pax Extended Header"): the
//! `"%d %s=%s\n"` record syntax and the keywords we understand.
//!
//! Global headers ('g') set defaults for every later entry; an entry's own
//! header ('x') overrides them. A record with an empty value deletes the
//! keyword (POSIX: "If the value field is zero length, it shall delete any
//! header block field, previously entered extended header value, or global
//! extended header value of the same name"); we apply that to the scalar
//! keywords. For xattrs an empty value is a legitimate empty attribute value
//! (GNU tar writes `SCHILY.xattr.user.x=` for one), so it is kept.

use super::xattrs::Xattrs;
use crate::tree::Timestamp;

/// One `key=value` record, value bytes verbatim (may contain NUL).
pub type Record = (Vec<u8>, Vec<u8>);

/// Split a PAX extended header's data into records. The length prefix
/// counts the whole record including itself and the final newline, which is
/// what lets values contain newlines and NULs.
pub fn parse_records(data: &[u8]) -> Result<Vec<Record>, String> {
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        // Some writers pad the data area with NULs; nothing follows them.
        if rest[0] == 0 {
            break;
        }
        let sp = rest
            .iter()
            .position(|&b| b == b' ')
            .ok_or_else(|| "record without length field".to_string())?;
        let len_text = &rest[..sp];
        if len_text.is_empty() || len_text.len() > 20 || !len_text.iter().all(u8::is_ascii_digit) {
            return Err(format!(
                "bad record length {:?}",
                String::from_utf8_lossy(len_text)
            ));
        }
        let len: usize = std::str::from_utf8(len_text)
            .ok()
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| "record length out of range".to_string())?;
        if len <= sp + 1 || len > rest.len() {
            return Err(format!(
                "record length {len} does not fit the header ({} bytes left)",
                rest.len()
            ));
        }
        let record = &rest[sp + 1..len];
        let Some((&b'\n', kv)) = record.split_last() else {
            return Err(format!("record of length {len} does not end in a newline"));
        };
        let eq = kv
            .iter()
            .position(|&b| b == b'=')
            .ok_or_else(|| format!("record {:?} has no '='", String::from_utf8_lossy(kv)))?;
        out.push((kv[..eq].to_vec(), kv[eq + 1..].to_vec()));
        rest = &rest[len..];
    }
    Ok(out)
}

/// Sparse-file keywords (GNU tar manual, "Sparse Formats", PAX formats
/// 0.0, 0.1 and 1.0). Only taken from an entry's own header.
#[derive(Clone, Debug, Default)]
pub struct SparseAttrs {
    /// `GNU.sparse.major` / `GNU.sparse.minor`.
    pub major: Option<u64>,
    pub minor: Option<u64>,
    /// `GNU.sparse.name`: the real name (0.1, 1.0).
    pub name: Option<Vec<u8>>,
    /// `GNU.sparse.size` (0.x) or `GNU.sparse.realsize` (1.0).
    pub realsize: Option<u64>,
    /// `GNU.sparse.map` (0.1): flat offset,len list.
    pub map: Option<Vec<u64>>,
    /// `GNU.sparse.offset` / `GNU.sparse.numbytes` values in record order
    /// (0.0), flattened as offset,len,...
    pub pairs: Vec<u64>,
    /// Whether any `GNU.sparse.offset` record appeared.
    pub has_pairs: bool,
}

impl SparseAttrs {
    pub fn is_sparse(&self) -> bool {
        self.major.is_some() || self.realsize.is_some() || self.map.is_some() || self.has_pairs
    }

    /// PAX 1.0: the map is at the start of the data area.
    pub fn map_in_data(&self) -> bool {
        self.major == Some(1)
    }
}

/// The interpreted keywords that matter for an [`crate::tree::Entry`].
#[derive(Clone, Debug, Default)]
pub struct PaxAttrs {
    pub path: Option<Vec<u8>>,
    pub linkpath: Option<Vec<u8>>,
    pub size: Option<u64>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub mtime: Option<Timestamp>,
    pub atime: Option<Timestamp>,
    pub ctime: Option<Timestamp>,
    /// `SCHILY.devmajor` / `SCHILY.devminor` (star, for numbers that do not
    /// fit the octal fields).
    pub devmajor: Option<u32>,
    pub devminor: Option<u32>,
    /// (Linux name, value) in record order, deduplicated by name.
    pub xattrs: Xattrs,
    /// `SCHILY.acl.access` / `SCHILY.acl.default` text.
    pub acl_access: Option<Vec<u8>>,
    pub acl_default: Option<Vec<u8>>,
    pub sparse: SparseAttrs,
}

fn text(v: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(v).map_err(|_| "value is not UTF-8".to_string())
}

fn decimal(v: &[u8]) -> Result<u64, String> {
    let t = text(v)?;
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{t:?} is not a decimal number"));
    }
    t.parse().map_err(|_| format!("{t:?} is out of range"))
}

fn id32(v: &[u8]) -> Result<u32, String> {
    let n = decimal(v)?;
    u32::try_from(n).map_err(|_| format!("{n} does not fit in 32 bits"))
}

/// A PAX time: `[-]secs[.fraction]`. The value is the signed decimal as a
/// whole, so "-1.25" is 1.25 s before the epoch: secs = -2, nsec =
/// 750_000_000. Digits beyond nanoseconds are truncated (toward the
/// written value's zero), as GNU tar does.
pub fn parse_time(v: &[u8]) -> Result<Timestamp, String> {
    let t = text(v)?;
    let (neg, body) = match t.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let (int, frac) = match body.split_once('.') {
        Some((i, f)) => (i, f),
        None => (body, ""),
    };
    let bad = || format!("{t:?} is not a time value");
    if int.is_empty() && frac.is_empty() {
        return Err(bad());
    }
    if !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let secs: i64 = if int.is_empty() {
        0
    } else {
        int.parse().map_err(|_| format!("{t:?} is out of range"))?
    };
    let mut nsec: u32 = 0;
    for (i, d) in frac.bytes().take(9).enumerate() {
        nsec += (d - b'0') as u32 * 10u32.pow(8 - i as u32);
    }
    if !neg {
        return Ok(Timestamp::new(secs, nsec));
    }
    if nsec == 0 {
        Ok(Timestamp::new(-secs, 0))
    } else {
        let secs = (-secs)
            .checked_sub(1)
            .ok_or_else(|| format!("{t:?} is out of range"))?;
        Ok(Timestamp::new(secs, 1_000_000_000 - nsec))
    }
}

/// Decode `%XX` escapes in `LIBARCHIVE.xattr.` and `SCHILY.xattr.` names.
fn url_decode(s: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' && i + 2 < s.len() {
            if let (Some(h), Some(l)) = (hex(s[i + 1]), hex(s[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(s[i]);
        i += 1;
    }
    out
}

/// Standard base64 (RFC 4648) decoder; padding optional (libarchive omits
/// it), whitespace ignored.
pub fn base64_decode(s: &[u8]) -> Result<Vec<u8>, String> {
    let val = |b: u8| -> Option<u32> {
        Some(match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(s.len() / 4 * 3 + 2);
    let mut acc: u32 = 0;
    let mut bits = 0;
    let mut ended = false;
    for &b in s {
        if b.is_ascii_whitespace() {
            continue;
        }
        if b == b'=' {
            ended = true;
            continue;
        }
        if ended {
            return Err("base64 data after padding".into());
        }
        let v = val(b).ok_or_else(|| format!("invalid base64 byte {:?}", b as char))?;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    if bits >= 6 {
        return Err("truncated base64 data".into());
    }
    Ok(out)
}

/// An xattr name as the record spells it, decoded. An empty name is
/// refused: no system can store one (Linux setxattr(2) fails with ERANGE),
/// and ext4 would hold it as a nameless entry its checkers reject.
fn xattr_name(encoded: &[u8]) -> Result<Vec<u8>, String> {
    let name = url_decode(encoded);
    if name.is_empty() {
        return Err("empty xattr name".into());
    }
    Ok(name)
}

impl PaxAttrs {
    /// Apply one record. `local` is false for global ('g') headers, whose
    /// sparse keywords are ignored (they only make sense per file).
    /// Errors are a description of the bad record.
    pub fn apply(&mut self, key: &[u8], value: &[u8], local: bool) -> Result<(), String> {
        let keyname = || String::from_utf8_lossy(key).into_owned();
        let wrap = |e: String| format!("{}: {e}", keyname());
        let empty = value.is_empty();
        macro_rules! set {
            ($field:expr, $parse:expr) => {
                $field = if empty {
                    None
                } else {
                    Some($parse(value).map_err(wrap)?)
                }
            };
        }
        if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
            // GNU tar escapes '%' and '=' in the name as %25 / %3D
            // (xheader.c xattr_encode_keyword); every '%' is escaped, so
            // decoding all %XX is exact.
            self.xattrs
                .set(xattr_name(name).map_err(wrap)?, value.to_vec());
            return Ok(());
        }
        if let Some(name) = key.strip_prefix(b"LIBARCHIVE.xattr.") {
            let v = base64_decode(value).map_err(wrap)?;
            self.xattrs.set(xattr_name(name).map_err(wrap)?, v);
            return Ok(());
        }
        match key {
            b"path" => set!(self.path, |v: &[u8]| Ok::<_, String>(v.to_vec())),
            b"linkpath" => set!(self.linkpath, |v: &[u8]| Ok::<_, String>(v.to_vec())),
            b"size" => set!(self.size, decimal),
            b"uid" => set!(self.uid, id32),
            b"gid" => set!(self.gid, id32),
            b"mtime" => set!(self.mtime, parse_time),
            b"atime" => set!(self.atime, parse_time),
            b"ctime" => set!(self.ctime, parse_time),
            b"SCHILY.devmajor" => set!(self.devmajor, id32),
            b"SCHILY.devminor" => set!(self.devminor, id32),
            b"SCHILY.acl.access" => self.acl_access = Some(value.to_vec()),
            b"SCHILY.acl.default" => self.acl_default = Some(value.to_vec()),
            _ if !local => {}
            b"GNU.sparse.major" => set!(self.sparse.major, decimal),
            b"GNU.sparse.minor" => set!(self.sparse.minor, decimal),
            b"GNU.sparse.name" => set!(self.sparse.name, |v: &[u8]| Ok::<_, String>(v.to_vec())),
            b"GNU.sparse.size" | b"GNU.sparse.realsize" => set!(self.sparse.realsize, decimal),
            b"GNU.sparse.map" => {
                let mut list = Vec::new();
                let t = text(value).map_err(wrap)?;
                if !t.is_empty() {
                    for n in t.split(',') {
                        list.push(decimal(n.as_bytes()).map_err(wrap)?);
                    }
                }
                if list.len() % 2 != 0 {
                    return Err(wrap("odd number of values".into()));
                }
                self.sparse.map = Some(list);
            }
            b"GNU.sparse.offset" => {
                // Format 0.0: pairs must alternate offset, numbytes.
                if !self.sparse.pairs.len().is_multiple_of(2) {
                    return Err(wrap("two offsets without numbytes between".into()));
                }
                self.sparse.has_pairs = true;
                self.sparse.pairs.push(decimal(value).map_err(wrap)?);
            }
            b"GNU.sparse.numbytes" => {
                if self.sparse.pairs.len() % 2 != 1 {
                    return Err(wrap("numbytes without preceding offset".into()));
                }
                self.sparse.pairs.push(decimal(value).map_err(wrap)?);
            }
            // Everything else (uname/gname: numeric ids only; charset,
            // comment, SCHILY.dev/ino/nlink, GNU.sparse.numblocks, which
            // we recount) is deliberately ignored.
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records() {
        let mut p = PaxAttrs::default();
        p.apply(b"SCHILY.xattr.user.a%3Db%25c", b"v", true).unwrap();
        assert_eq!(
            p.xattrs.clone().into_vec(),
            vec![(b"user.a=b%c".to_vec(), b"v".to_vec())]
        );
        let e = p.apply(b"SCHILY.xattr.", b"v", true).unwrap_err();
        assert!(e.contains("SCHILY.xattr.: empty xattr name"), "{e}");
        assert!(p.apply(b"LIBARCHIVE.xattr.", b"dg==", true).is_err());
        let data = b"30 mtime=1795270848.652214775\n21 SCHILY.xattr.a=\x00\n\n";
        let r = parse_records(data).unwrap();
        assert_eq!(r[0], (b"mtime".to_vec(), b"1795270848.652214775".to_vec()));
        assert_eq!(r[1], (b"SCHILY.xattr.a".to_vec(), b"\x00\n".to_vec()));
        assert!(parse_records(b"99 path=x\n").is_err());
        assert!(parse_records(b"x path=x\n").is_err());
        assert!(parse_records(b"9 pathx\n").is_err());
        assert!(parse_records(b"3 \n").is_err());
        assert!(parse_records(b"99999999999999999999999 a=b\n").is_err());
        assert_eq!(parse_records(b"10 path=x\n\0\0\0").unwrap().len(), 1);
    }

    #[test]
    fn times() {
        assert_eq!(parse_time(b"1.5").unwrap(), Timestamp::new(1, 500_000_000));
        assert_eq!(
            parse_time(b"-157766399.876543211").unwrap(),
            Timestamp::new(-157766400, 123456789)
        );
        assert_eq!(parse_time(b"-5").unwrap(), Timestamp::new(-5, 0));
        assert_eq!(
            parse_time(b"-0.25").unwrap(),
            Timestamp::new(-1, 750_000_000)
        );
        assert_eq!(
            parse_time(b"4102444800.1234567899").unwrap(),
            Timestamp::new(4102444800, 123456789)
        );
        assert_eq!(
            parse_time(b"99999999999").unwrap(),
            Timestamp::new(99999999999, 0)
        );
        for bad in [
            &b""[..],
            b"-",
            b".",
            b"1e5",
            b"1.2.3",
            b"99999999999999999999",
            b"- 1",
        ] {
            assert!(parse_time(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn base64() {
        assert_eq!(base64_decode(b"aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64_decode(b"aGVsbG8").unwrap(), b"hello");
        assert_eq!(base64_decode(b"AAEC/w").unwrap(), [0, 1, 2, 255]);
        assert_eq!(base64_decode(b"").unwrap(), b"");
        assert!(base64_decode(b"a").is_err());
        assert!(base64_decode(b"a!bc").is_err());
        assert_eq!(url_decode(b"user.a%3Db%"), b"user.a=b%");
    }

    #[test]
    fn globals_and_overrides() {
        let mut g = PaxAttrs::default();
        g.apply(b"uid", b"7", false).unwrap();
        g.apply(b"GNU.sparse.size", b"7", false).unwrap();
        assert!(!g.sparse.is_sparse());
        let mut l = g.clone();
        l.apply(b"uid", b"", true).unwrap();
        assert_eq!(l.uid, None);
        assert!(l.apply(b"uid", b"4294967296", true).is_err());
        assert!(l.apply(b"GNU.sparse.numbytes", b"1", true).is_err());
    }
}
