//! POSIX ACL xattr values (Linux VFS format) to the text GNU tar stores in
//! `SCHILY.acl.access` / `SCHILY.acl.default` (`acl_to_any_text` long form
//! with numeric ids, one entry per line).
//!
//! The capture writes both the binary `SCHILY.xattr.system.posix_acl_*`
//! record and this text, as GNU tar `--xattrs --acls` does: GNU tar
//! extracting with `--acls` applies the text form after the xattrs and
//! removes a directory's default ACL when the text is missing.

const VERSION: u32 = 2;

/// The text form, or None if the value is not a well-formed v2 ACL.
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
            0x01 => "user::".to_string(),
            0x02 => format!("user:{id}:"),
            0x04 => "group::".to_string(),
            0x08 => format!("group:{id}:"),
            0x10 => "mask::".to_string(),
            0x20 => "other::".to_string(),
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
        let mut v = tag.to_le_bytes().to_vec();
        v.extend_from_slice(&perm.to_le_bytes());
        v.extend_from_slice(&id.to_le_bytes());
        v
    }

    #[test]
    fn converts_like_gnu_tar() {
        let mut v = 2u32.to_le_bytes().to_vec();
        for (t, p, i) in [
            (1, 6, u32::MAX),
            (2, 5, 1234),
            (4, 4, u32::MAX),
            (0x10, 5, u32::MAX),
            (0x20, 4, u32::MAX),
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
