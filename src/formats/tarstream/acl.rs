//! POSIX.1e text ACLs, as GNU tar `--acls` stores them in `SCHILY.acl.access`
//! and `SCHILY.acl.default` (the `acl_to_text` long or abbreviated form,
//! entries separated by ',' or newlines), converted to the Linux VFS xattr
//! value of `system.posix_acl_access` / `system.posix_acl_default` when
//! reading, and back when writing ([`xattr_to_text`]).
//!
//! VFS format (linux/posix_acl_xattr.h): little-endian u32 version 2, then
//! per entry u16 tag, u16 perm, u32 id; entries sorted by tag then id, id
//! 0xFFFFFFFF for the owner/group-owner/mask/other entries.

const USER_OBJ: u16 = 0x01;
const USER: u16 = 0x02;
const GROUP_OBJ: u16 = 0x04;
const GROUP: u16 = 0x08;
const MASK: u16 = 0x10;
const OTHER: u16 = 0x20;
const UNDEFINED_ID: u32 = u32::MAX;
/// The VFS value's leading version word.
const VERSION: u32 = 2;

/// Convert a text ACL to the VFS xattr value. Returns `Ok(None)` for an
/// empty text (GNU tar writes an empty default ACL for non-directories).
/// User and group names must be numeric: we cannot resolve names reliably
/// against the target image's passwd.
pub fn text_to_xattr(text: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let text = std::str::from_utf8(text).map_err(|_| "not UTF-8".to_string())?;
    let mut entries: Vec<(u16, u32, u16)> = Vec::new();
    for raw in text.split([',', '\n']) {
        // Comments ("#effective:r--") and surrounding blanks are dropped.
        let e = raw.split('#').next().unwrap_or("").trim();
        if e.is_empty() {
            continue;
        }
        let e = e
            .strip_prefix("default:")
            .or_else(|| e.strip_prefix("d:"))
            .unwrap_or(e);
        let mut parts = e.split(':');
        let (Some(tag), Some(qual), Some(perm)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(format!("entry {e:?} is not tag:qualifier:perms"));
        };
        if parts.next().is_some() {
            return Err(format!("entry {e:?} has too many fields"));
        }
        let qual = qual.trim();
        let named = !qual.is_empty();
        let tag = match (tag.trim(), named) {
            ("user" | "u", false) => USER_OBJ,
            ("user" | "u", true) => USER,
            ("group" | "g", false) => GROUP_OBJ,
            ("group" | "g", true) => GROUP,
            ("mask" | "m", false) => MASK,
            ("other" | "o", false) => OTHER,
            _ => return Err(format!("entry {e:?} has an unknown tag")),
        };
        let id = if named {
            qual.parse::<u32>().map_err(|_| {
                format!("entry {e:?} names {qual:?}; only numeric ids are supported (create the archive with --numeric-owner)")
            })?
        } else {
            UNDEFINED_ID
        };
        let mut bits = 0u16;
        for c in perm.trim().chars() {
            bits |= match c {
                'r' => 4,
                'w' => 2,
                'x' => 1,
                '-' => 0,
                _ => return Err(format!("entry {e:?} has bad permissions")),
            };
        }
        entries.push((tag, id, bits));
    }
    if entries.is_empty() {
        return Ok(None);
    }
    entries.sort_unstable_by_key(|&(tag, id, _)| (tag, id));
    if entries
        .windows(2)
        .any(|w| w[0].0 == w[1].0 && w[0].1 == w[1].1)
    {
        return Err("duplicate entry".into());
    }
    let has = |t: u16| entries.iter().any(|e| e.0 == t);
    if !has(USER_OBJ) || !has(GROUP_OBJ) || !has(OTHER) {
        return Err("missing user::, group:: or other:: entry".into());
    }
    if (has(USER) || has(GROUP)) && !has(MASK) {
        return Err("named entries without a mask:: entry".into());
    }
    let mut out = Vec::with_capacity(4 + 8 * entries.len());
    out.extend_from_slice(&VERSION.to_le_bytes());
    for (tag, id, perm) in entries {
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(&perm.to_le_bytes());
        out.extend_from_slice(&id.to_le_bytes());
    }
    Ok(Some(out))
}

/// The VFS xattr value as the text GNU tar stores (`acl_to_any_text` long
/// form with numeric ids, one entry per line), or None if the value is not
/// a well-formed v2 ACL.
///
/// The capture writes both the binary `SCHILY.xattr.system.posix_acl_*`
/// record and this text, as GNU tar `--xattrs --acls` does: GNU tar
/// extracting with `--acls` applies the text form after the xattrs and
/// removes a directory's default ACL when the text is missing.
pub fn xattr_to_text(v: &[u8]) -> Option<String> {
    if v.len() < 4 || !(v.len() - 4).is_multiple_of(8) {
        return None;
    }
    if u32::from_le_bytes(v[..4].try_into().ok()?) != VERSION {
        return None;
    }
    let mut out = String::new();
    for e in v[4..].chunks_exact(8) {
        let tag = u16::from_le_bytes([e[0], e[1]]);
        let perm = u16::from_le_bytes([e[2], e[3]]);
        let id = u32::from_le_bytes([e[4], e[5], e[6], e[7]]);
        let head = match tag {
            USER_OBJ => "user::".to_string(),
            USER => format!("user:{id}:"),
            GROUP_OBJ => "group::".to_string(),
            GROUP => format!("group:{id}:"),
            MASK => "mask::".to_string(),
            OTHER => "other::".to_string(),
            _ => return None,
        };
        out.push_str(&head);
        for (bit, c) in [(4, 'r'), (2, 'w'), (1, 'x')] {
            out.push(if perm & bit != 0 { c } else { '-' });
        }
        out.push('\n');
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(tag: u16, perm: u16, id: u32) -> Vec<u8> {
        [
            &tag.to_le_bytes()[..],
            &perm.to_le_bytes(),
            &id.to_le_bytes(),
        ]
        .concat()
    }

    #[test]
    fn converts_and_sorts() {
        let v = text_to_xattr(b"user::rwx,user:1234:r-x,group::r-x,mask::r-x,other::r-x")
            .unwrap()
            .unwrap();
        let mut want = 2u32.to_le_bytes().to_vec();
        want.extend(entry(USER_OBJ, 7, u32::MAX));
        want.extend(entry(USER, 5, 1234));
        want.extend(entry(GROUP_OBJ, 5, u32::MAX));
        want.extend(entry(MASK, 5, u32::MAX));
        want.extend(entry(OTHER, 5, u32::MAX));
        assert_eq!(v, want);
        // Abbreviated, unsorted, with comments and newlines.
        let v2 = text_to_xattr(b"o::r-x\nm::rx\ng::r-x\nu:1234:r-x\t#effective:r-x\nu::rwx")
            .unwrap()
            .unwrap();
        assert_eq!(v2, want);
        let v3 = text_to_xattr(b"u::rw-,g:20:r,g:3:w,g::---,m::rw,o::---")
            .unwrap()
            .unwrap();
        assert_eq!(
            &v3[4 + 8 * 2..4 + 8 * 4],
            [entry(GROUP, 2, 3), entry(GROUP, 4, 20)].concat()
        );
    }

    #[test]
    fn rejects() {
        assert_eq!(text_to_xattr(b"").unwrap(), None);
        assert!(
            text_to_xattr(b"user:alice:rwx,user::rwx,group::r,mask::r,other::r")
                .unwrap_err()
                .contains("alice")
        );
        assert!(text_to_xattr(b"user::rwx").is_err());
        assert!(text_to_xattr(b"user::rwz,group::r,other::r").is_err());
        assert!(text_to_xattr(b"user::r,user:1:r,group::r,other::r").is_err());
        assert!(text_to_xattr(b"bogus::r").is_err());
    }

    #[test]
    fn to_text_like_gnu_tar() {
        let mut v = 2u32.to_le_bytes().to_vec();
        for (t, p, i) in [
            (USER_OBJ, 6, u32::MAX),
            (USER, 5, 1234),
            (GROUP_OBJ, 4, u32::MAX),
            (MASK, 5, u32::MAX),
            (OTHER, 4, u32::MAX),
        ] {
            v.extend(entry(t, p, i));
        }
        assert_eq!(
            xattr_to_text(&v).unwrap(),
            "user::rw-\nuser:1234:r-x\ngroup::r--\nmask::r-x\nother::r--\n"
        );
        assert!(xattr_to_text(&v[..7]).is_none());
        assert!(xattr_to_text(&[1, 0, 0, 0]).is_none());
    }
}
