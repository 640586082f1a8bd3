//! ext4 metadata checksums (Documentation/filesystems/ext4/checksums.rst).
//!
//! The kernel's `ext4_chksum(seed, buf)` is a *raw* CRC32C update: no
//! pre- or post-inversion. The `crc32c` crate implements the catalogue
//! CRC-32C (inverted in and out), so `raw(seed, b) = !crc32c_append(!seed, b)`.

/// Raw CRC32C update as the kernel's `crc32c(seed, buf, len)`.
#[inline]
pub fn raw(seed: u32, data: &[u8]) -> u32 {
    !crc32c::crc32c_append(!seed, data)
}

/// Filesystem checksum seed without `metadata_csum_seed`: crc32c(~0, s_uuid).
pub fn fs_seed(uuid: &[u8; 16]) -> u32 {
    raw(!0, uuid)
}

/// Per-inode seed: crc32c(fs_seed, le32 inode number, le32 i_generation).
pub fn inode_seed(fs_seed: u32, ino: u32, generation: u32) -> u32 {
    raw(raw(fs_seed, &ino.to_le_bytes()), &generation.to_le_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_is_uninverted_crc32c() {
        // Catalogue CRC-32C check value for "123456789" is 0xE3069283.
        assert_eq!(!raw(!0, b"123456789"), 0xE306_9283);
        // Chaining: raw over a split buffer equals raw over the whole.
        assert_eq!(raw(raw(7, b"1234"), b"56789"), raw(7, b"123456789"));
    }
}
