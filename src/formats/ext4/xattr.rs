//! Extended attributes: in-inode storage and external xattr blocks.
//!
//! Layout: Documentation/filesystems/ext4/attributes.rst. Hashes follow the
//! kernel's fs/ext4/xattr.c (`ext4_xattr_hash_entry`, `ext4_xattr_rehash`).
//! POSIX ACLs arrive in the VFS format (`system.posix_acl_*`, version 2,
//! 8-byte entries) and are stored in ext4's disk format (version 1, 4-byte
//! short entries for USER_OBJ/GROUP_OBJ/MASK/OTHER), as
//! e2fsprogs' `convert_posix_acl_to_disk_buffer` does.

use crate::le::{get_u16, get_u32, put_u16, put_u32};

pub const XATTR_MAGIC: u32 = 0xEA02_0000;
/// Size of the in-inode xattr area with 256-byte inodes and i_extra_isize 32.
pub const IBODY_SPACE: usize = 256 - 128 - 32;
/// External block header size.
const BLOCK_HEADER: usize = 32;
const ENTRY_HEADER: usize = 16;

/// One attribute split into ext4's (name index, suffix) form.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Attr {
    pub index: u8,
    pub name: Vec<u8>,
    pub value: Vec<u8>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum XattrError {
    #[error("xattr {name:?} has a malformed POSIX ACL value ({detail})")]
    BadAcl { name: String, detail: &'static str },
    #[error("xattr {name:?} has a name longer than 255 bytes (XATTR_NAME_MAX)")]
    NameTooLong { name: String },
    #[error("xattr {name:?}: {why}")]
    BadName { name: String, why: &'static str },
    #[error("xattrs need {needed} bytes, more than one 4096-byte xattr block holds (large values need ea_inode, which dibr does not enable)")]
    TooLarge { needed: usize },
}

/// The namespaces ext4 on Linux stores by prefix, with their name indexes
/// (fs/ext4/xattr.c `ext4_xattr_handler_map`). The two POSIX ACL names
/// (indexes 2 and 3) are whole names, handled in [`classify`]. Nothing
/// else is reachable through the kernel: index 7 (`system.`) holds only
/// inline_data's `system.data`, which dibr does not enable, and names with
/// no known prefix (e2fsprogs' index 0) are neither listed nor readable,
/// so the writer drops them ([`Name::Foreign`]).
pub const PREFIXES: &[(&[u8], u8)] = &[(b"user.", 1), (b"trusted.", 4), (b"security.", 6)];

/// Longest full name (prefix included): XATTR_NAME_MAX in linux/limits.h.
pub const NAME_MAX: usize = 255;

/// The full name of an attribute stored as (`index`, `suffix`), or `None`
/// when the writer would not have stored it: the inverse of [`classify`],
/// so the writer and `verify` agree on what is valid.
pub fn full_name(index: u8, suffix: &[u8]) -> Option<Vec<u8>> {
    let prefix: &[u8] = match index {
        2 if suffix.is_empty() => return Some(b"system.posix_acl_access".to_vec()),
        3 if suffix.is_empty() => return Some(b"system.posix_acl_default".to_vec()),
        _ => PREFIXES.iter().find(|(_, i)| *i == index)?.0,
    };
    let full = [prefix, suffix].concat();
    match classify(&full) {
        Ok(Name::Stored { index: i, .. }) if i == index => Some(full),
        _ => None,
    }
}

/// What ext4 makes of a full xattr name.
#[derive(Debug, PartialEq, Eq)]
pub enum Name {
    /// Stored under name index `index`, without its first `prefix_len` bytes.
    Stored { index: u8, prefix_len: usize },
    /// A well-formed name of a namespace ext4 on Linux has no handler for
    /// (`btrfs.compression`, `system.nfs4_acl`, macOS `com.apple.*`):
    /// setxattr(2) fails with EOPNOTSUPP, and GNU tar extracting onto ext4
    /// warns and goes on; so does dibr (see [`crate::ext4::Summary`]).
    Foreign,
}

/// Classify a full name. Errors are names no system can have set:
/// setxattr(2) takes a C string of 1..=XATTR_NAME_MAX bytes, every Linux
/// name is `namespace.name`, and the VFS (fs/xattr.c `xattr_resolve_name`)
/// refuses a namespace prefix with nothing after it.
pub fn classify(name: &[u8]) -> Result<Name, &'static str> {
    if name.is_empty() {
        return Err("empty name");
    }
    if name.contains(&0) {
        return Err("name contains a NUL byte");
    }
    if name.len() > NAME_MAX {
        return Err("name longer than 255 bytes (XATTR_NAME_MAX)");
    }
    let whole = |index| Name::Stored {
        index,
        prefix_len: name.len(),
    };
    match name {
        b"system.posix_acl_access" => return Ok(whole(2)),
        b"system.posix_acl_default" => return Ok(whole(3)),
        _ => {}
    }
    if let Some((p, index)) = PREFIXES.iter().find(|(p, _)| name.starts_with(p)) {
        if name.len() == p.len() {
            return Err("namespace prefix without a name");
        }
        return Ok(Name::Stored {
            index: *index,
            prefix_len: p.len(),
        });
    }
    match name.iter().position(|&b| b == b'.') {
        Some(dot) if dot > 0 && dot + 1 < name.len() => Ok(Name::Foreign),
        _ => Err("not of the form namespace.name"),
    }
}

/// Split a full attribute name, converting ACL values to the disk format.
/// `Ok(None)` for a [`Name::Foreign`] name, which ext4 cannot hold.
pub fn to_attr(name: &[u8], value: &[u8]) -> Result<Option<Attr>, XattrError> {
    let shown = || String::from_utf8_lossy(name).into_owned();
    if name.len() > NAME_MAX {
        return Err(XattrError::NameTooLong { name: shown() });
    }
    let (index, prefix_len) = match classify(name) {
        Ok(Name::Stored { index, prefix_len }) => (index, prefix_len),
        Ok(Name::Foreign) => return Ok(None),
        Err(why) => return Err(XattrError::BadName { name: shown(), why }),
    };
    let value = match index {
        2 | 3 => acl_to_disk(value).map_err(|d| XattrError::BadAcl {
            name: shown(),
            detail: d,
        })?,
        _ => value.to_vec(),
    };
    Ok(Some(Attr {
        index,
        name: name[prefix_len..].to_vec(),
        value,
    }))
}

/// VFS POSIX ACL (v2) → ext4 disk ACL (v1).
fn acl_to_disk(v: &[u8]) -> Result<Vec<u8>, &'static str> {
    if v.len() < 4 || !(v.len() - 4).is_multiple_of(8) {
        return Err("length is not 4 + 8n");
    }
    if get_u32(v, 0) != 2 {
        return Err("version is not 2");
    }
    let mut out = Vec::with_capacity(v.len());
    out.extend_from_slice(&1u32.to_le_bytes());
    for e in v[4..].chunks_exact(8) {
        let tag = get_u16(e, 0);
        match tag {
            // ACL_USER_OBJ, ACL_GROUP_OBJ, ACL_MASK, ACL_OTHER: short entries.
            0x01 | 0x04 | 0x10 | 0x20 => out.extend_from_slice(&e[..4]),
            // ACL_USER, ACL_GROUP: full entries with the id.
            0x02 | 0x08 => out.extend_from_slice(e),
            _ => return Err("unknown tag"),
        }
    }
    Ok(out)
}

#[inline]
fn pad4(n: usize) -> usize {
    (n + 3) & !3
}

fn entry_len(a: &Attr) -> usize {
    pad4(ENTRY_HEADER + a.name.len())
}

fn value_len(a: &Attr) -> usize {
    pad4(a.value.len())
}

/// `ext4_xattr_hash_entry`: name bytes (unsigned) then value words.
fn entry_hash(a: &Attr) -> u32 {
    let mut hash: u32 = 0;
    for &c in &a.name {
        hash = (hash << 5) ^ (hash >> 27) ^ c as u32;
    }
    let mut padded = a.value.clone();
    padded.resize(pad4(a.value.len()), 0);
    for w in padded.chunks_exact(4) {
        hash = (hash << 16) ^ (hash >> 16) ^ get_u32(w, 0);
    }
    hash
}

/// Where each attribute of an inode goes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Placement {
    pub ibody: Vec<Attr>,
    pub block: Vec<Attr>,
}

/// Put attributes in the inode while they fit, the rest in one block
/// (sorted as the kernel keeps block entries: index, name length, name).
pub fn place(mut attrs: Vec<Attr>) -> Result<Placement, XattrError> {
    attrs.sort_by(|a, b| (a.index, a.name.len(), &a.name).cmp(&(b.index, b.name.len(), &b.name)));
    attrs.dedup_by(|a, b| a.index == b.index && a.name == b.name);
    let mut p = Placement::default();
    // 4-byte magic, entries, 4-byte terminator, values.
    let mut used = 4 + 4;
    for a in attrs {
        let need = entry_len(&a) + value_len(&a);
        if used + need <= IBODY_SPACE {
            used += need;
            p.ibody.push(a);
        } else {
            p.block.push(a);
        }
    }
    let block_need: usize = BLOCK_HEADER
        + 4
        + p.block
            .iter()
            .map(|a| entry_len(a) + value_len(a))
            .sum::<usize>();
    if !p.block.is_empty() && block_need > 4096 {
        return Err(XattrError::TooLarge { needed: block_need });
    }
    Ok(p)
}

fn write_entry(buf: &mut [u8], off: usize, a: &Attr, value_offs: usize) {
    buf[off] = a.name.len() as u8; // e_name_len
    buf[off + 1] = a.index; // e_name_index
    put_u16(buf, off + 2, value_offs as u16); // e_value_offs
    put_u32(buf, off + 4, 0); // e_value_inum
    put_u32(buf, off + 8, a.value.len() as u32); // e_value_size
    put_u32(buf, off + 12, entry_hash(a)); // e_hash
    buf[off + 16..off + 16 + a.name.len()].copy_from_slice(&a.name);
}

/// The in-inode area (`IBODY_SPACE` bytes, starting at inode offset 160).
/// Value offsets are relative to the first entry, right after the magic.
pub fn encode_ibody(attrs: &[Attr]) -> [u8; IBODY_SPACE] {
    let mut buf = [0u8; IBODY_SPACE];
    if attrs.is_empty() {
        return buf;
    }
    put_u32(&mut buf, 0, XATTR_MAGIC);
    let base = 4;
    let mut e = base;
    let mut vend = IBODY_SPACE;
    for a in attrs {
        vend -= value_len(a);
        buf[vend..vend + a.value.len()].copy_from_slice(&a.value);
        write_entry(&mut buf, e, a, vend - base);
        e += entry_len(a);
    }
    buf
}

/// An external xattr block without its checksum (which depends on the
/// block number; see [`seal_block`]).
pub fn encode_block(attrs: &[Attr]) -> Vec<u8> {
    let mut buf = vec![0u8; 4096];
    put_u32(&mut buf, 0, XATTR_MAGIC); // h_magic
    put_u32(&mut buf, 4, 1); // h_refcount (patched when shared)
    put_u32(&mut buf, 8, 1); // h_blocks
    let mut e = BLOCK_HEADER;
    let mut vend = 4096;
    let mut bhash: u32 = 0;
    for a in attrs {
        vend -= value_len(a);
        buf[vend..vend + a.value.len()].copy_from_slice(&a.value);
        write_entry(&mut buf, e, a, vend);
        let h = entry_hash(a);
        bhash = (bhash << 16) ^ (bhash >> 16) ^ h;
        e += entry_len(a);
    }
    put_u32(&mut buf, 12, bhash); // h_hash
    buf
}

/// Set refcount and checksum (crc32c(fs_seed, le64 blocknr, block with
/// h_checksum zeroed): kernel `ext4_xattr_block_csum`).
pub fn seal_block(buf: &mut [u8], refcount: u32, blocknr: u64, fs_seed: u32) {
    put_u32(buf, 4, refcount);
    put_u32(buf, 16, 0);
    let c = super::csum::raw(super::csum::raw(fs_seed, &blocknr.to_le_bytes()), buf);
    put_u32(buf, 16, c);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vfs_acl(entries: &[(u16, u16, u32)]) -> Vec<u8> {
        let mut v = 2u32.to_le_bytes().to_vec();
        for &(t, p, id) in entries {
            v.extend_from_slice(&t.to_le_bytes());
            v.extend_from_slice(&p.to_le_bytes());
            v.extend_from_slice(&id.to_le_bytes());
        }
        v
    }

    #[test]
    fn acl_conversion() {
        let v = vfs_acl(&[
            (1, 7, !0),
            (2, 5, 1234),
            (4, 5, !0),
            (0x10, 5, !0),
            (0x20, 5, !0),
        ]);
        let a = to_attr(b"system.posix_acl_access", &v).unwrap().unwrap();
        assert_eq!(a.index, 2);
        assert!(a.name.is_empty());
        assert_eq!(a.value.len(), 4 + 4 + 8 + 4 + 4 + 4);
        assert_eq!(&a.value[..4], &1u32.to_le_bytes());
        assert_eq!(get_u32(&a.value, 12), 1234);
        assert!(to_attr(b"system.posix_acl_access", &[1, 2, 3]).is_err());
    }

    #[test]
    fn malformed_names_are_refused_foreign_ones_dropped() {
        for bad in [
            &b""[..],
            b"user.",
            b"trusted.",
            b"security.",
            b"system.",
            b"user.a\0b",
            b"user",
            b".x",
        ] {
            let e = to_attr(bad, b"v").unwrap_err();
            assert!(matches!(e, XattrError::BadName { .. }), "{bad:?}: {e}");
        }
        for foreign in [
            &b"system.posix_acl_"[..],
            b"system.data",
            b"system.nfs4_acl",
            b"btrfs.compression",
            b"com.apple.quarantine",
        ] {
            assert_eq!(to_attr(foreign, b"v"), Ok(None), "{foreign:?}");
        }
        let long = [&b"user."[..], &[b'x'; 251]].concat();
        assert!(matches!(
            to_attr(&long, b""),
            Err(XattrError::NameTooLong { .. })
        ));
        let max = [&b"user."[..], &[b'x'; 250]].concat();
        let a = to_attr(&max, b"").unwrap().unwrap();
        assert_eq!((a.index, a.name.len()), (1, 250));
        assert_eq!(full_name(a.index, &a.name), Some(max));
        // A 255-byte suffix fits the u8 on disk but not XATTR_NAME_MAX.
        assert_eq!(full_name(6, &[b'x'; 255]), None);
        assert_eq!(full_name(1, b""), None);
        assert_eq!(full_name(0, b"user.x"), None);
        assert_eq!(full_name(7, b"data"), None);
        assert_eq!(full_name(2, b"x"), None);
        assert_eq!(
            full_name(3, b""),
            Some(b"system.posix_acl_default".to_vec())
        );
    }

    #[test]
    fn placement_spills_to_block() {
        let cap = to_attr(b"security.capability", &[0u8; 20])
            .unwrap()
            .unwrap();
        let big = to_attr(b"user.big", &[7u8; 3000]).unwrap().unwrap();
        let p = place(vec![big.clone(), cap.clone()]).unwrap();
        assert_eq!(p.ibody, vec![cap]);
        assert_eq!(p.block, vec![big]);
        assert!(place(vec![to_attr(b"user.huge", &[0u8; 5000]).unwrap().unwrap()]).is_err());
    }
}
