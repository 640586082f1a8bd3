//! XFS metadata checksums: CRC32C seeded with `~0`, over the whole
//! structure with its own checksum field zeroed, stored inverted and
//! little-endian ("XFS Algorithms & Data Structures", *Checksumming*;
//! `xfs_update_cksum` in the kernel's libxfs/xfs_cksum.h).

/// Compute and store the checksum of `buf`, whose checksum field is the
/// four bytes at `at`.
pub fn set(buf: &mut [u8], at: usize) {
    buf[at..at + 4].fill(0);
    // crc32c::crc32c applies the standard ~0 seed and final inversion,
    // which is exactly `~crc32c(~0, buf)` stored as XFS does.
    let c = crc32c::crc32c(buf);
    buf[at..at + 4].copy_from_slice(&c.to_le_bytes());
}

/// Big-endian field writers: every XFS on-disk integer is big-endian
/// except the checksums.
pub fn be16(buf: &mut [u8], at: usize, v: u16) {
    buf[at..at + 2].copy_from_slice(&v.to_be_bytes());
}
pub fn be32(buf: &mut [u8], at: usize, v: u32) {
    buf[at..at + 4].copy_from_slice(&v.to_be_bytes());
}
pub fn be64(buf: &mut [u8], at: usize, v: u64) {
    buf[at..at + 8].copy_from_slice(&v.to_be_bytes());
}

#[cfg(test)]
mod tests {
    #[test]
    fn matches_the_xfs_superblock_of_mkfs() {
        // crc32c of "123456789" is the standard check value.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
    }
}
