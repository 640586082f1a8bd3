//! Extended attributes in the inode's attribute fork, shortform only
//! ("XFS Algorithms & Data Structures", *Extended Attributes*, *Short
//! Form Attributes*; `xfs_attr_shortform` in the kernel's
//! libxfs/xfs_da_format.h). Linux namespaces become XFS flags (`user.`
//! none, `trusted.` ATTR_ROOT, `security.` ATTR_SECURE); POSIX ACLs are
//! stored the way XFS's own ACL code does (`SGI_ACL_FILE`/`SGI_ACL_DEFAULT`
//! in the root namespace, big-endian `struct xfs_acl`, libxfs/xfs_format.h).

const ATTR_ROOT: u8 = 2;
const ATTR_SECURE: u8 = 4;
/// Tags of ACL entries that carry an id (ACL_USER, ACL_GROUP).
const ACL_USER: u16 = 0x02;
const ACL_GROUP: u16 = 0x08;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum XattrError {
    #[error("extended attribute '{0}' is in a namespace XFS does not store")]
    Foreign(String),
    #[error("POSIX ACL '{0}' is not in the VFS v2 format")]
    BadAcl(String),
    #[error("extended attribute '{name}' has a value of {len} bytes; dibr's XFS writer keeps attributes in the inode (at most 255 bytes each)")]
    TooLong { name: String, len: usize },
    #[error("the extended attributes take {0} bytes; dibr's XFS writer keeps attributes in the inode (at most 300 bytes in all)")]
    TooMany(usize),
}

/// Largest attribute fork the writer accepts, leaving the data fork room
/// for two extents.
pub const MAX_FORK: usize = 336 - 32;

/// Convert a VFS v2 ACL (little-endian header 2, entries tag:16 perm:16
/// id:32) into `struct xfs_acl`.
fn acl(name: &str, v: &[u8]) -> Result<Vec<u8>, XattrError> {
    let bad = || XattrError::BadAcl(name.to_string());
    if v.len() < 4 || !(v.len() - 4).is_multiple_of(8) || v[..4] != 2u32.to_le_bytes() {
        return Err(bad());
    }
    let ents = &v[4..];
    let mut out = Vec::with_capacity(4 + ents.len() / 8 * 12);
    out.extend_from_slice(&((ents.len() / 8) as u32).to_be_bytes());
    for e in ents.chunks_exact(8) {
        let tag = u16::from_le_bytes([e[0], e[1]]);
        let perm = u16::from_le_bytes([e[2], e[3]]);
        let id = u32::from_le_bytes([e[4], e[5], e[6], e[7]]);
        let id = if tag == ACL_USER || tag == ACL_GROUP {
            id
        } else {
            u32::MAX
        };
        out.extend_from_slice(&(tag as u32).to_be_bytes());
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&perm.to_be_bytes());
        out.extend_from_slice(&[0, 0]);
    }
    Ok(out)
}

/// One Linux attribute as XFS stores it: (flags, name, value).
fn convert(name: &[u8], value: &[u8]) -> Result<(u8, Vec<u8>, Vec<u8>), XattrError> {
    let shown = String::from_utf8_lossy(name).into_owned();
    match name {
        b"system.posix_acl_access" => {
            Ok((ATTR_ROOT, b"SGI_ACL_FILE".to_vec(), acl(&shown, value)?))
        }
        b"system.posix_acl_default" => {
            Ok((ATTR_ROOT, b"SGI_ACL_DEFAULT".to_vec(), acl(&shown, value)?))
        }
        _ => {
            let (flags, rest) = if let Some(r) = name.strip_prefix(b"user.") {
                (0, r)
            } else if let Some(r) = name.strip_prefix(b"trusted.") {
                (ATTR_ROOT, r)
            } else if let Some(r) = name.strip_prefix(b"security.") {
                (ATTR_SECURE, r)
            } else {
                return Err(XattrError::Foreign(shown));
            };
            Ok((flags, rest.to_vec(), value.to_vec()))
        }
    }
}

/// An access ACL of only the owner, group and other entries says no
/// more than the mode; the kernel stores none for it
/// (`posix_acl_equiv_mode`), and neither does the writer.
fn is_minimal_access_acl(name: &[u8], v: &[u8]) -> bool {
    name == b"system.posix_acl_access"
        && v.len() == 4 + 3 * 8
        && v[4..]
            .chunks_exact(8)
            .map(|e| u16::from_le_bytes([e[0], e[1]]))
            .eq([0x01u16, 0x04, 0x20])
}

/// The shortform attribute fork for `attrs` (empty when there are none).
pub fn shortform(attrs: &[(Vec<u8>, Vec<u8>)]) -> Result<Vec<u8>, XattrError> {
    let attrs: Vec<&(Vec<u8>, Vec<u8>)> = attrs
        .iter()
        .filter(|(n, v)| !is_minimal_access_acl(n, v))
        .collect();
    if attrs.is_empty() {
        return Ok(Vec::new());
    }
    let mut v = vec![0u8; 4];
    for (name, value) in &attrs {
        let (flags, n, val) = convert(name, value)?;
        if n.is_empty() || n.len() > 255 || val.len() > 255 {
            return Err(XattrError::TooLong {
                name: String::from_utf8_lossy(name).into_owned(),
                len: val.len().max(n.len()),
            });
        }
        v.push(n.len() as u8);
        v.push(val.len() as u8);
        v.push(flags);
        v.extend_from_slice(&n);
        v.extend_from_slice(&val);
    }
    if v.len() > MAX_FORK {
        return Err(XattrError::TooMany(v.len()));
    }
    let total = v.len() as u16;
    v[..2].copy_from_slice(&total.to_be_bytes());
    v[2] = attrs.len() as u8;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_become_flags() {
        let v = shortform(&[(b"security.capability".to_vec(), vec![1, 2])]).unwrap();
        assert_eq!(&v[..4], &[0, 19, 1, 0]);
        assert_eq!(&v[4..7], &[10, 2, ATTR_SECURE]);
        assert_eq!(&v[7..17], b"capability");
        assert!(matches!(
            shortform(&[(b"os2.x".to_vec(), vec![])]),
            Err(XattrError::Foreign(_))
        ));
    }

    #[test]
    fn acls_are_converted() {
        let mut a = 2u32.to_le_bytes().to_vec();
        a.extend_from_slice(&[1, 0, 6, 0, 0xff, 0xff, 0xff, 0xff]);
        a.extend_from_slice(&[2, 0, 4, 0, 0xe8, 3, 0, 0]);
        let x = acl("a", &a).unwrap();
        assert_eq!(&x[..4], &2u32.to_be_bytes());
        assert_eq!(&x[16..20], &2u32.to_be_bytes());
        assert_eq!(&x[20..24], &1000u32.to_be_bytes());
    }
}
