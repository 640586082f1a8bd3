//! The checksum LVM2 puts on its label, its metadata area header and its
//! metadata text (`calc_crc` in lvm2's `lib/misc/crc.c`): the reflected
//! CRC-32 polynomial of zlib and Ethernet, but started from LVM's own
//! initial value and with no final inversion, so zlib's crc32 does not
//! give the same number.

/// `INITIAL_CRC` of lvm2's `lib/misc/crc.h`.
pub const INITIAL: u32 = 0xf597_a6cf;

/// CRC-32 (polynomial 0xEDB88320, reflected) of `buf`, continuing from
/// `crc`; no pre- or post-inversion, as LVM computes it.
pub fn calc_crc(mut crc: u32, buf: &[u8]) -> u32 {
    for &b in buf {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ if crc & 1 != 0 { 0xedb8_8320 } else { 0 };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continues_and_differs_from_zlib() {
        let all = calc_crc(INITIAL, b"LVM2 metadata");
        let split = calc_crc(calc_crc(INITIAL, b"LVM2 "), b"metadata");
        assert_eq!(all, split);
        // zlib's crc32("123456789") is 0xCBF43926: with its initial value
        // inverted in and out this function agrees with it.
        assert_eq!(!calc_crc(!0, b"123456789"), 0xcbf4_3926);
        assert_ne!(calc_crc(INITIAL, b"123456789"), 0xcbf4_3926);
    }
}
