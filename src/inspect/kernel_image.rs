//! What a kernel file is, from its first bytes: the boot format the
//! loader must understand and the architecture it runs on.
//!
//! - x86: a bzImage, `HdrS` at 0x202 (the kernel's
//!   Documentation/arch/x86/boot.rst, "The Real-Mode Kernel Header");
//!   `xloadflags` bit 0 (`XLF_KERNEL_64`, protocol 2.12+) says 64-bit.
//! - arm64: an `Image`, magic `ARM\x64` at 0x38
//!   (Documentation/arch/arm64/booting.rst, "Call the kernel image");
//!   with `MZ` at 0 it also carries the PE/COFF EFI stub, so UEFI (and
//!   GRUB's EFI loader) can start it. Debian's arm64 `vmlinuz` is that
//!   Image gzip-compressed (GRUB decompresses it on load).
//! - `EFI_ZBOOT` kernels: a PE/COFF image with `zimg` at offset 4 and the
//!   compression name at 0x18 (drivers/firmware/efi/libstub/zboot-header.S);
//!   the PE machine (`0xAA64`, `0x8664`) gives the architecture.

use std::io::Read;

/// How many bytes of the kernel are looked at (a gzip'd Image's first
/// compressed bytes give its header).
pub const HEAD: usize = 64 << 10;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelImage {
    /// For the user: "arm64 Image with an EFI stub, gzip-compressed".
    pub format: String,
    /// uname's name (`x86_64`, `aarch64`, `i686`); None when unknown.
    pub arch: Option<&'static str>,
}

fn le16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The PE/COFF machine of an `MZ` file (`e_lfanew` at 0x3c → `PE\0\0`).
fn pe_machine(b: &[u8]) -> Option<u16> {
    let pe = le32(b, 0x3c)? as usize;
    (b.get(pe..pe + 4)? == b"PE\0\0").then_some(())?;
    le16(b, pe + 4)
}

/// The kernel file's format, from its first bytes (up to [`HEAD`]).
pub fn identify(head: &[u8]) -> Option<KernelImage> {
    if head.starts_with(&[0x1f, 0x8b]) {
        let mut inner = Vec::new();
        let _ = flate2::read::GzDecoder::new(head)
            .take(4096)
            .read_to_end(&mut inner);
        let k = identify_plain(&inner)?;
        return Some(KernelImage {
            format: format!("{}, gzip-compressed", k.format),
            arch: k.arch,
        });
    }
    identify_plain(head)
}

fn identify_plain(b: &[u8]) -> Option<KernelImage> {
    let mz = b.starts_with(b"MZ");
    if b.get(0x38..0x3c) == Some(b"ARM\x64") {
        let stub = if mz && pe_machine(b) == Some(0xaa64) {
            " with an EFI stub"
        } else {
            ""
        };
        return Some(KernelImage {
            format: format!("arm64 Image{stub}"),
            arch: Some("aarch64"),
        });
    }
    if b.get(0x202..0x206) == Some(b"HdrS") {
        let proto = le16(b, 0x206)?;
        let x64 = proto >= 0x020c && le16(b, 0x236).is_some_and(|f| f & 1 != 0);
        return Some(KernelImage {
            format: format!(
                "x86 bzImage (boot protocol {}.{:02})",
                proto >> 8,
                proto & 0xff
            ),
            arch: Some(if x64 { "x86_64" } else { "i686" }),
        });
    }
    if mz && b.get(4..8) == Some(b"zimg") {
        let comp = b.get(0x18..0x20).map(|c| {
            String::from_utf8_lossy(c)
                .trim_end_matches('\0')
                .to_string()
        });
        let arch = match pe_machine(b) {
            Some(0xaa64) => Some("aarch64"),
            Some(0x8664) => Some("x86_64"),
            Some(0x5064) => Some("riscv64"),
            _ => None,
        };
        return Some(KernelImage {
            format: format!(
                "EFI zboot image ({}-compressed)",
                comp.unwrap_or_else(|| "?".into())
            ),
            arch,
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn arm64_image() -> Vec<u8> {
        let mut b = vec![0u8; 0x200];
        b[..2].copy_from_slice(b"MZ");
        b[0x38..0x3c].copy_from_slice(b"ARM\x64");
        b[0x3c..0x40].copy_from_slice(&0x40u32.to_le_bytes());
        b[0x40..0x44].copy_from_slice(b"PE\0\0");
        b[0x44..0x46].copy_from_slice(&0xaa64u16.to_le_bytes());
        b
    }

    #[test]
    fn arm64_plain_and_gzipped() {
        let k = identify(&arm64_image()).unwrap();
        assert_eq!(k.format, "arm64 Image with an EFI stub");
        assert_eq!(k.arch, Some("aarch64"));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&arm64_image()).unwrap();
        gz.write_all(&vec![7u8; 1 << 20]).unwrap();
        let gz = gz.finish().unwrap();
        let k = identify(&gz[..gz.len().min(HEAD)]).unwrap();
        assert_eq!(k.format, "arm64 Image with an EFI stub, gzip-compressed");
        assert_eq!(k.arch, Some("aarch64"));
    }

    #[test]
    fn bzimage_and_unknown() {
        let mut b = vec![0u8; 0x240];
        b[0x202..0x206].copy_from_slice(b"HdrS");
        b[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
        b[0x236..0x238].copy_from_slice(&1u16.to_le_bytes());
        let k = identify(&b).unwrap();
        assert_eq!(k.format, "x86 bzImage (boot protocol 2.15)");
        assert_eq!(k.arch, Some("x86_64"));
        assert_eq!(identify(b"\x7fELF not a boot image"), None);
        assert_eq!(identify(&[0x1f, 0x8b, 0, 0]), None);
    }
}
