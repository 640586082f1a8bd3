//! Which firmware boots the image: SeaBIOS (qemu's default) when sector 0
//! holds BIOS boot code, OVMF when the image can boot only by UEFI (an
//! EFI System Partition and no BIOS boot code), or when asked to.

use std::path::{Path, PathBuf};

use super::VmError;
use crate::inspect::disk::{layout, FsKind, Image, Table};

/// How the image can boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootModes {
    /// Sector 0 has boot code (GRUB's boot.img, a DOS MBR).
    pub bios: bool,
    /// A FAT partition (the ESP) on a partitioned disk.
    pub uefi: bool,
}

/// What qemu is given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Firmware {
    /// qemu's default BIOS (SeaBIOS).
    Bios,
    /// OVMF: the code (read-only) and the image's own copy of the variables.
    Uefi { code: PathBuf, vars: PathBuf },
}

/// Reads the image's sector 0 and partition table.
pub fn boot_modes(path: &Path) -> Result<BootModes, VmError> {
    let err = |detail: String| VmError::Image {
        path: path.to_path_buf(),
        detail,
    };
    let img = Image::open(path).map_err(|e| err(e.to_string()))?;
    let mut mbr = [0u8; 512];
    if img.disk().size() >= 512 {
        img.disk()
            .read_at(0, &mut mbr)
            .map_err(|e| err(format!("reading sector 0: {e}")))?;
    }
    let lay = layout(&img).map_err(|e| err(e.to_string()))?;
    Ok(modes_of(&mbr, &lay))
}

/// The judgement on sector 0 and the layout (unit-testable).
pub fn modes_of(sector0: &[u8; 512], lay: &crate::inspect::disk::Layout) -> BootModes {
    let signature = sector0[510] == 0x55 && sector0[511] == 0xAA;
    let bios = signature && sector0[..440].iter().any(|&b| b != 0);
    let uefi = lay.table != Table::None && lay.volumes.iter().any(|v| v.fs == FsKind::Vfat);
    BootModes { bios, uefi }
}

/// UEFI when asked, or when the image cannot boot by BIOS but has an ESP.
pub fn wants_uefi(modes: BootModes, force_uefi: bool) -> bool {
    force_uefi || (!modes.bios && modes.uefi)
}

/// OVMF's code and variable template in `dir` (Debian's
/// /usr/share/OVMF): the 4 MiB pair first, then the 2 MiB one; never the
/// Secure Boot variants (their variables enrol Microsoft's keys).
pub fn find_ovmf(dir: &Path) -> Result<(PathBuf, PathBuf), VmError> {
    let pairs = [
        ("OVMF_CODE_4M.fd", "OVMF_VARS_4M.fd"),
        ("OVMF_CODE.fd", "OVMF_VARS.fd"),
    ];
    for (code, vars) in pairs {
        let (c, v) = (dir.join(code), dir.join(vars));
        if c.is_file() && v.is_file() {
            return Ok((c, v));
        }
    }
    Err(VmError::NoOvmf {
        looked: pairs
            .iter()
            .map(|(c, v)| format!("{}/{{{c},{v}}}", dir.display()))
            .collect::<Vec<_>>()
            .join(", "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::disk::{Layout, Volume};

    fn lay(table: Table, fs: &[FsKind]) -> Layout {
        Layout {
            table,
            disk_size: 1 << 30,
            volumes: fs
                .iter()
                .enumerate()
                .map(|(i, f)| Volume {
                    number: Some(i as u32 + 1),
                    start: (i as u64 + 1) << 20,
                    len: 1 << 20,
                    fs: f.clone(),
                    part_label: None,
                    part_uuid: None,
                })
                .collect(),
            notes: Vec::new(),
        }
    }

    #[test]
    fn boot_code_means_bios_esp_alone_means_uefi() {
        let ext4 = FsKind::Ext4 {
            label: "cloudimg-rootfs".into(),
            uuid: String::new(),
        };
        let mut code = [0u8; 512];
        code[0] = 0xEB;
        code[510] = 0x55;
        code[511] = 0xAA;
        let mut protective = [0u8; 512];
        protective[510] = 0x55;
        protective[511] = 0xAA;
        // GRUB's boot.img and an ESP (dibr's efi layout): both; SeaBIOS.
        let m = modes_of(&code, &lay(Table::Gpt, &[FsKind::Vfat, ext4.clone()]));
        assert_eq!(
            m,
            BootModes {
                bios: true,
                uefi: true
            }
        );
        assert!(!wants_uefi(m, false));
        assert!(wants_uefi(m, true));
        // A protective MBR without code and an ESP: UEFI only.
        let m = modes_of(&protective, &lay(Table::Gpt, &[FsKind::Vfat, ext4.clone()]));
        assert_eq!(
            m,
            BootModes {
                bios: false,
                uefi: true
            }
        );
        assert!(wants_uefi(m, false));
        // Code without the 55AA signature is not boot code.
        let mut unsigned = code;
        unsigned[510] = 0;
        assert!(!modes_of(&unsigned, &lay(Table::Mbr, std::slice::from_ref(&ext4))).bios);
        // Nothing bootable: BIOS (qemu's default) all the same.
        let m = modes_of(&protective, &lay(Table::None, &[ext4]));
        assert!(!wants_uefi(m, false));
    }

    #[test]
    fn ovmf_pairs_in_order() {
        let dir = Path::new("/tmp").join(format!("dibr-ovmf-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let e = find_ovmf(&dir).unwrap_err().to_string();
        assert!(e.contains("ovmf") && e.contains("OVMF_CODE_4M.fd"), "{e}");
        for f in ["OVMF_CODE.fd", "OVMF_VARS.fd", "OVMF_CODE_4M.secboot.fd"] {
            std::fs::write(dir.join(f), b"").unwrap();
        }
        assert_eq!(
            find_ovmf(&dir).unwrap(),
            (dir.join("OVMF_CODE.fd"), dir.join("OVMF_VARS.fd"))
        );
        // The code without its matching variables does not count.
        std::fs::write(dir.join("OVMF_CODE_4M.fd"), b"").unwrap();
        assert_eq!(find_ovmf(&dir).unwrap().0, dir.join("OVMF_CODE.fd"));
        std::fs::write(dir.join("OVMF_VARS_4M.fd"), b"").unwrap();
        assert_eq!(find_ovmf(&dir).unwrap().0, dir.join("OVMF_CODE_4M.fd"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
