//! Directory-index name hashes (half-MD4 as used by `dir_index` with
//! `s_def_hash_version = 1`), after the kernel's fs/ext4/hash.c.
//!
//! Golden vectors in the tests were produced with
//! `debugfs -R "dx_hash -h half_md4 -s SEED NAME"` from e2fsprogs.

const K2: u32 = 0o13240474631;
const K3: u32 = 0o15666365641;

#[inline]
fn f(x: u32, y: u32, z: u32) -> u32 {
    z ^ (x & (y ^ z))
}
#[inline]
fn g(x: u32, y: u32, z: u32) -> u32 {
    (x & y).wrapping_add((x ^ y) & z)
}
#[inline]
fn h(x: u32, y: u32, z: u32) -> u32 {
    x ^ y ^ z
}

/// The kernel's `half_md4_transform`.
fn half_md4_transform(buf: &mut [u32; 4], inp: &[u32; 8]) {
    let (mut a, mut b, mut c, mut d) = (buf[0], buf[1], buf[2], buf[3]);
    macro_rules! round {
        ($f:ident, $a:ident, $b:ident, $c:ident, $d:ident, $x:expr, $s:expr) => {
            $a = $a
                .wrapping_add($f($b, $c, $d))
                .wrapping_add($x)
                .rotate_left($s);
        };
    }
    round!(f, a, b, c, d, inp[0], 3);
    round!(f, d, a, b, c, inp[1], 7);
    round!(f, c, d, a, b, inp[2], 11);
    round!(f, b, c, d, a, inp[3], 19);
    round!(f, a, b, c, d, inp[4], 3);
    round!(f, d, a, b, c, inp[5], 7);
    round!(f, c, d, a, b, inp[6], 11);
    round!(f, b, c, d, a, inp[7], 19);

    round!(g, a, b, c, d, inp[1].wrapping_add(K2), 3);
    round!(g, d, a, b, c, inp[3].wrapping_add(K2), 5);
    round!(g, c, d, a, b, inp[5].wrapping_add(K2), 9);
    round!(g, b, c, d, a, inp[7].wrapping_add(K2), 13);
    round!(g, a, b, c, d, inp[0].wrapping_add(K2), 3);
    round!(g, d, a, b, c, inp[2].wrapping_add(K2), 5);
    round!(g, c, d, a, b, inp[4].wrapping_add(K2), 9);
    round!(g, b, c, d, a, inp[6].wrapping_add(K2), 13);

    round!(h, a, b, c, d, inp[3].wrapping_add(K3), 3);
    round!(h, d, a, b, c, inp[7].wrapping_add(K3), 9);
    round!(h, c, d, a, b, inp[2].wrapping_add(K3), 11);
    round!(h, b, c, d, a, inp[6].wrapping_add(K3), 15);
    round!(h, a, b, c, d, inp[1].wrapping_add(K3), 3);
    round!(h, d, a, b, c, inp[5].wrapping_add(K3), 9);
    round!(h, c, d, a, b, inp[0].wrapping_add(K3), 11);
    round!(h, b, c, d, a, inp[4].wrapping_add(K3), 15);

    buf[0] = buf[0].wrapping_add(a);
    buf[1] = buf[1].wrapping_add(b);
    buf[2] = buf[2].wrapping_add(c);
    buf[3] = buf[3].wrapping_add(d);
}

/// The kernel's `str2hashbuf_unsigned`/`_signed`: pack up to `num*4` name
/// bytes into words, padding with a length-derived pattern.
fn str2hashbuf(msg: &[u8], num: usize, signed: bool) -> [u32; 8] {
    let mut out = [0u32; 8];
    let len = msg.len() as u32;
    let mut pad = len | (len << 8);
    pad |= pad << 16;
    let mut val = pad;
    let take = msg.len().min(num * 4);
    let mut idx = 0;
    let mut left = num as isize;
    for (i, &byte) in msg[..take].iter().enumerate() {
        let c = if signed {
            byte as i8 as i32 as u32
        } else {
            byte as u32
        };
        val = c.wrapping_add(val << 8);
        if i % 4 == 3 {
            out[idx] = val;
            idx += 1;
            val = pad;
            left -= 1;
        }
    }
    left -= 1;
    if left >= 0 {
        out[idx] = val;
        idx += 1;
    }
    while left > 0 {
        out[idx] = pad;
        idx += 1;
        left -= 1;
    }
    out
}

/// Hash value used for "end of directory" in 32-bit hash space; the kernel
/// never hands it out as a real hash.
const EXT4_HTREE_EOF_32BIT: u32 = 0x7fff_ffff;

/// half-MD4 hash of `name` with the filesystem's `s_hash_seed` words.
/// Returns (major hash with bit 0 cleared, minor hash).
pub fn half_md4(name: &[u8], seed: &[u32; 4], signed: bool) -> (u32, u32) {
    let mut buf = [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476];
    if seed.iter().any(|&w| w != 0) {
        buf = *seed;
    }
    let mut p = name;
    loop {
        let inp = str2hashbuf(p, 8, signed);
        half_md4_transform(&mut buf, &inp);
        if p.len() <= 32 {
            break;
        }
        p = &p[32..];
    }
    let mut hash = buf[1] & !1;
    if hash == (EXT4_HTREE_EOF_32BIT << 1) {
        hash = (EXT4_HTREE_EOF_32BIT - 1) << 1;
    }
    (hash, buf[2])
}
