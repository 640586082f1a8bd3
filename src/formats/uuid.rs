//! Filesystem UUIDs in their text form, as blkid, fstab's `UUID=` and
//! `mke2fs -U` write them (RFC 4122: 8-4-4-4-12 lowercase hex digits, the
//! 16 bytes in on-disk order). GPT's GUIDs store their first three fields
//! little-endian and have their own type, `crate::disk::gpt::Guid`.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Uuid(pub [u8; 16]);

impl Uuid {
    /// The canonical form only: groups of 8, 4, 4, 4 and 12 hex digits
    /// (what a block-device config's `uuid:` must be).
    pub fn parse(s: &str) -> Option<Uuid> {
        let groups: Vec<usize> = s.split('-').map(str::len).collect();
        if groups != [8, 4, 4, 4, 12] {
            return None;
        }
        Self::parse_hex(s)
    }

    /// 32 hex digits, hyphens anywhere (`dibr mkfs --uuid`, as lenient
    /// as mke2fs).
    pub fn parse_hex(s: &str) -> Option<Uuid> {
        let hex: Vec<u8> = s.bytes().filter(|c| *c != b'-').collect();
        if hex.len() != 32 {
            return None;
        }
        let digit = |c: u8| char::from(c).to_digit(16).map(|d| d as u8);
        let mut out = [0u8; 16];
        for (o, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
            *o = digit(pair[0])? << 4 | digit(pair[1])?;
        }
        Some(Uuid(out))
    }

    pub fn bytes(self) -> [u8; 16] {
        self.0
    }
}

/// 16 bytes derived from `parts`: SHA-256 over `domain`, `tag` and the
/// length-prefixed parts. Each writer has its own domain (`dibr-uuid:`,
/// ext4's `dibr-ext4:`), so equal parts never name two filesystems alike.
pub fn digest16(domain: &str, tag: &str, parts: &[&[u8]]) -> [u8; 16] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(domain.as_bytes());
    h.update(tag.as_bytes());
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    let d = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    b
}

/// A version-4-shaped UUID derived from `parts` ([`digest16`]): the same
/// inputs give the same UUID, so a build with SOURCE_DATE_EPOCH names its
/// filesystems reproducibly.
pub fn derived(tag: &str, parts: &[&[u8]]) -> [u8; 16] {
    v4(digest16("dibr-uuid:", tag, parts))
}

/// A random version-4 UUID (from /dev/urandom; time and pid if that
/// cannot be read — uniqueness, not secrecy, is the goal).
pub fn random() -> [u8; 16] {
    use std::io::Read;
    let mut b = [0u8; 16];
    let ok = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b));
    if ok.is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        return derived(
            "random",
            &[
                &t.as_nanos().to_le_bytes(),
                &std::process::id().to_le_bytes(),
            ],
        );
    }
    v4(b)
}

/// RFC 4122 version 4 / variant bits, so tools show a normal UUID.
pub fn v4(mut b: [u8; 16]) -> [u8; 16] {
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    b
}

impl fmt::Display for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";
    const BYTES: [u8; 16] = [
        0x0f, 0x1e, 0x2d, 0x3c, 0x4b, 0x5a, 0x69, 0x78, 0x87, 0x96, 0xa5, 0xb4, 0xc3, 0xd2, 0xe1,
        0xf0,
    ];

    #[test]
    fn text_form_round_trips() {
        assert_eq!(Uuid::parse(TEXT), Some(Uuid(BYTES)));
        assert_eq!(Uuid(BYTES).to_string(), TEXT);
        assert_eq!(
            Uuid::parse(&TEXT.to_uppercase()).map(|u| u.to_string()),
            Some(TEXT.to_string())
        );
    }

    #[test]
    fn canonical_parse_wants_the_groups_hex_parse_only_the_digits() {
        let bare = TEXT.replace('-', "");
        assert_eq!(Uuid::parse(&bare), None);
        assert_eq!(Uuid::parse_hex(&bare), Some(Uuid(BYTES)));
        assert_eq!(
            Uuid::parse_hex("0f1e2d3c4b5a-6978-8796a5b4c3d2e1f0"),
            Some(Uuid(BYTES))
        );
        for bad in [
            "",
            "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f",
            "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1fg",
            "+f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
            "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1é",
        ] {
            assert_eq!(Uuid::parse(bad), None, "{bad:?}");
            assert_eq!(Uuid::parse_hex(bad), None, "{bad:?}");
        }
    }
}
