//! The kernel modules an initramfs carries: its cpio "newc" archives
//! walked by header (an uncompressed early archive — microcode — then a
//! gzip- or zstd-compressed one, as initramfs-tools and dracut make
//! them), file data skipped, names of `*.ko` (`.ko.xz`, `.ko.zst`,
//! `.ko.gz`) kept as module names. Other compressions (xz, lz4, lzma)
//! are named, not read.

use std::collections::BTreeSet;
use std::io::{self, Read};

/// Entries walked per initramfs (a hostile archive of empty entries).
const MAX_ENTRIES: usize = 1 << 20;
/// Bytes decompressed per initramfs.
const MAX_UNPACKED: u64 = 4 << 30;

fn hex(h: &[u8]) -> Option<u64> {
    u64::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok()
}

/// `virtio_blk` for `…/virtio_blk.ko.zst` (module names use `_`).
fn module_name(path: &str) -> Option<String> {
    let base = path.rsplit('/').next()?;
    let (stem, _) = base.split_once(".ko")?;
    let rest = &base[stem.len() + 3..];
    matches!(rest, "" | ".xz" | ".zst" | ".gz").then(|| stem.replace('-', "_"))
}

/// Walks one archive from `r` to its trailer; false when `r` was at its
/// end before a header.
fn walk(r: &mut dyn Read, names: &mut BTreeSet<String>, n: &mut usize) -> Result<bool, String> {
    let bad = |what: &str| format!("not a newc cpio archive ({what})");
    loop {
        let mut h = [0u8; 110];
        // Zeros pad between archives (cpio pads its output to 512 bytes).
        loop {
            match r.read_exact(&mut h[..4]) {
                Ok(()) if h[..4] == [0; 4] && *n == 0 => continue,
                Ok(()) => break,
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && *n == 0 => return Ok(false),
                Err(e) => return Err(e.to_string()),
            }
        }
        r.read_exact(&mut h[4..]).map_err(|e| e.to_string())?;
        if &h[..5] != b"07070" {
            return Err(bad("magic"));
        }
        *n += 1;
        if *n > MAX_ENTRIES {
            return Err(format!("more than {MAX_ENTRIES} entries"));
        }
        let size = hex(&h[54..62]).ok_or_else(|| bad("file size"))?;
        let name_len = hex(&h[94..102]).ok_or_else(|| bad("name size"))?;
        if name_len > 4096 {
            return Err(bad("name longer than 4096"));
        }
        let padded = (110 + name_len).div_ceil(4) * 4 - 110;
        let mut name = vec![0u8; padded as usize];
        r.read_exact(&mut name).map_err(|e| e.to_string())?;
        let name = String::from_utf8_lossy(&name[..name_len.saturating_sub(1) as usize]);
        if name == "TRAILER!!!" {
            return Ok(true);
        }
        if let Some(m) = module_name(&name) {
            names.insert(m);
        }
        let skip = size.div_ceil(4) * 4;
        let got = io::copy(&mut r.take(skip), &mut io::sink()).map_err(|e| e.to_string())?;
        if got != skip {
            return Err(bad("truncated"));
        }
    }
}

/// The module names in an initramfs image (its bytes).
pub fn modules(data: &[u8]) -> Result<BTreeSet<String>, String> {
    let mut names = BTreeSet::new();
    let mut rest = data;
    loop {
        // Archives are padded with zeros between them.
        let start = rest.iter().position(|&b| b != 0).unwrap_or(rest.len());
        rest = &rest[start..];
        if rest.is_empty() {
            return Ok(names);
        }
        let mut n = 0;
        if rest.starts_with(b"07070") {
            let mut cur = io::Cursor::new(rest);
            walk(&mut cur, &mut names, &mut n)?;
            rest = &rest[cur.position() as usize..];
            continue;
        }
        let mut r: Box<dyn Read> = if rest.starts_with(&[0x1f, 0x8b]) {
            Box::new(flate2::read::MultiGzDecoder::new(rest).take(MAX_UNPACKED))
        } else if rest.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Box::new(
                zstd::stream::read::Decoder::new(rest)
                    .map_err(|e| e.to_string())?
                    .take(MAX_UNPACKED),
            )
        } else {
            let what = match rest {
                [0xfd, b'7', b'z', b'X', b'Z', ..] => "xz",
                [0x02, 0x21, 0x4c, 0x18, ..] => "lz4",
                [0x5d, 0, 0, ..] => "lzma",
                [b'B', b'Z', b'h', ..] => "bzip2",
                _ => "an unknown format",
            };
            return Err(format!("compressed as {what}, which dibr does not read"));
        };
        // The compressed archive is the last one; several may follow
        // each other inside it.
        while walk(&mut *r, &mut names, &mut n)? {
            n = 0;
        }
        return Ok(names);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn newc(names: &[&str]) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, n) in names.iter().chain(["TRAILER!!!"].iter()).enumerate() {
            let data: &[u8] = if *n == "TRAILER!!!" { b"" } else { b"xyz" };
            let h = format!(
                "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
                i, 0o100644, 0, 0, 1, 0, data.len(), 0, 0, 0, 0, n.len() + 1, 0
            );
            out.extend_from_slice(h.as_bytes());
            out.extend_from_slice(n.as_bytes());
            out.push(0);
            while out.len() % 4 != 0 {
                out.push(0);
            }
            out.extend_from_slice(data);
            while out.len() % 4 != 0 {
                out.push(0);
            }
        }
        out
    }

    #[test]
    fn early_archive_then_compressed_one() {
        let mut img = newc(&["kernel/x86/microcode/GenuineIntel.bin"]);
        img.extend_from_slice(&[0; 512]);
        let mut main = newc(&[
            "usr/lib/modules/6.1/kernel/drivers/block/virtio_blk.ko",
            "usr/lib/modules/6.1/modules.dep",
        ]);
        // cpio's padding to 512 bytes, then a second archive.
        main.resize(main.len().div_ceil(512) * 512, 0);
        main.extend(newc(&[
            "usr/lib/modules/6.1/kernel/drivers/virtio/virtio_pci.ko.zst",
        ]));
        main.resize(main.len().div_ceil(512) * 512, 0);
        let mut gz = img.clone();
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(&main).unwrap();
        gz.extend(e.finish().unwrap());
        let want: BTreeSet<String> = ["virtio_blk", "virtio_pci"].map(String::from).into();
        assert_eq!(modules(&gz).unwrap(), want);
        let mut zst = img;
        zst.extend(zstd::encode_all(&main[..], 1).unwrap());
        assert_eq!(modules(&zst).unwrap(), want);
        let err = modules(b"\xfd7zXZ\0rest").unwrap_err();
        assert!(err.contains("xz"), "{err}");
        assert!(modules(b"random bytes").is_err());
    }
}
