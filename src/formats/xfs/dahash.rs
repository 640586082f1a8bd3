//! The directory/attribute name hash (`xfs_da_hashname` in the kernel's
//! libxfs/xfs_da_btree.c, "XFS Algorithms & Data Structures",
//! *Directories*): four bytes at a time, 7-bit rotations.

pub fn hash(name: &[u8]) -> u32 {
    let mut h: u32 = 0;
    let mut chunks = name.chunks_exact(4);
    for c in chunks.by_ref() {
        h = ((c[0] as u32) << 21)
            ^ ((c[1] as u32) << 14)
            ^ ((c[2] as u32) << 7)
            ^ (c[3] as u32)
            ^ h.rotate_left(28);
    }
    let r = chunks.remainder();
    match r.len() {
        3 => ((r[0] as u32) << 14) ^ ((r[1] as u32) << 7) ^ (r[2] as u32) ^ h.rotate_left(21),
        2 => ((r[0] as u32) << 7) ^ (r[1] as u32) ^ h.rotate_left(14),
        1 => (r[0] as u32) ^ h.rotate_left(7),
        _ => h,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn dot_names() {
        assert_eq!(super::hash(b"."), 0x2e);
        assert_eq!(super::hash(b".."), (0x2e << 7) ^ 0x2e);
    }
}
