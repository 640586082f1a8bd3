//! UEFI: loaders on the ESP at the removable-media path
//! `EFI/BOOT/BOOT<ARCH>.EFI` (`BOOTX64.EFI` on x86-64, `BOOTAA64.EFI` on
//! arm64: UEFI specification, "Removable Media Boot Behavior"), so
//! firmware finds them without NVRAM entries.
//!
//! Preference (reference `rootless-and-boot.md` §4.3, DIB's bootloader
//! element uses the distro's signed binaries the same way):
//! 1. shim + the distro-signed GRUB (Secure Boot capable): `BOOTX64.EFI` =
//!    shim, `grubx64.efi` = signed GRUB next to it (shim loads it from its
//!    own directory), `mmx64.efi` = MokManager (`aa64` names on arm64).
//! 2. the distro's GRUB EFI image alone (signed or the monolithic unsigned
//!    one from grub-efi-amd64-bin / grub-efi-arm64-bin) as `BOOT<ARCH>.EFI`.
//!
//! The architecture is the GRUB EFI image's: the tree of an x86-64 image
//! has `x86_64-efi` GRUB, an arm64 one `arm64-efi`.
//!
//! Debian-built GRUB EFI images source `$prefix/grub.cfg` (`/EFI/<ID>/`)
//! or else `$cmdpath/grub.cfg` (`/EFI/BOOT/`): both get a stub that finds
//! the root by label and loads /boot/grub/grub.cfg from it.

use super::collect::{BootCollector, Kernel};
use super::{grub_cfg, BootError, BootOptions, BootPlan, PlannedFile};

/// One EFI architecture's file names (Debian's packages: shim-signed,
/// grub-efi-<arch>-signed, grub-efi-<arch>-bin).
pub struct EfiArch {
    /// The removable-media loader (`BOOTX64.EFI`).
    pub boot: &'static str,
    /// GRUB's name next to shim (`grubx64.efi`) and MokManager's.
    pub grub_name: &'static str,
    pub mok_name: &'static str,
    pub shim: &'static [&'static str],
    pub mok: &'static [&'static str],
    pub grub: &'static [&'static str],
    /// The Linux serial console on the platform's usual UART (DIB's
    /// bootloader element: ttyS0, ttyAMA0 for arm64).
    pub serial: &'static str,
    /// The packages that provide GRUB for it, for messages.
    pub packages: &'static str,
}

pub const X64: EfiArch = EfiArch {
    boot: "BOOTX64.EFI",
    grub_name: "grubx64.efi",
    mok_name: "mmx64.efi",
    shim: &[
        "usr/lib/shim/shimx64.efi.signed",
        "usr/lib/shim/shimx64.efi",
    ],
    mok: &["usr/lib/shim/mmx64.efi.signed", "usr/lib/shim/mmx64.efi"],
    grub: &[
        "usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed",
        "usr/lib/grub/x86_64-efi/monolithic/grubx64.efi",
    ],
    serial: "ttyS0,115200",
    packages: "grub-efi-amd64-bin or grub-efi-amd64-signed",
};

pub const AA64: EfiArch = EfiArch {
    boot: "BOOTAA64.EFI",
    grub_name: "grubaa64.efi",
    mok_name: "mmaa64.efi",
    shim: &[
        "usr/lib/shim/shimaa64.efi.signed",
        "usr/lib/shim/shimaa64.efi",
    ],
    mok: &["usr/lib/shim/mmaa64.efi.signed", "usr/lib/shim/mmaa64.efi"],
    grub: &[
        "usr/lib/grub/arm64-efi-signed/grubaa64.efi.signed",
        "usr/lib/grub/arm64-efi/monolithic/grubaa64.efi",
    ],
    serial: "ttyAMA0,115200",
    packages: "grub-efi-arm64-bin or grub-efi-arm64-signed",
};

/// Every architecture, x86-64 first.
pub const ARCHES: &[&EfiArch] = &[&X64, &AA64];

/// The architecture of the tree's GRUB EFI image, if it has one.
pub fn tree_arch(c: &BootCollector) -> Option<&'static EfiArch> {
    ARCHES
        .iter()
        .copied()
        .find(|a| a.grub.iter().any(|g| c.file(g).is_some()))
}

fn first<'a>(c: &'a BootCollector, paths: &[&'a str]) -> Option<(&'a str, &'a [u8])> {
    paths.iter().find_map(|p| c.file(p).map(|d| (*p, d)))
}

fn esp_file(path: &str, data: &[u8]) -> PlannedFile {
    PlannedFile {
        path: path.to_string(),
        data: data.to_vec(),
        mode: 0o644,
    }
}

pub fn prepare(
    c: &BootCollector,
    o: &BootOptions,
    kernel: Option<&Kernel>,
    p: &mut BootPlan,
) -> Result<(), BootError> {
    if let Some(l) = c.esp_loader() {
        p.report
            .push(format!("UEFI: the tree's own /boot/efi/EFI/BOOT/{l}"));
        return Ok(());
    }
    let Some(arch) = tree_arch(c) else {
        p.report.push(format!(
            "UEFI: the tree has no GRUB EFI image ({}): not UEFI-bootable",
            ARCHES
                .iter()
                .map(|a| a.packages)
                .collect::<Vec<_>>()
                .join(", ")
        ));
        return Ok(());
    };
    let Some((grub_path, grub)) = first(c, arch.grub) else {
        return Ok(());
    };
    if kernel.is_none() && !c.has_root_grub_cfg() {
        p.report
            .push("UEFI: loaders installed, but there is no kernel to boot".into());
    }
    let boot = format!("EFI/BOOT/{}", arch.boot);
    match (first(c, arch.shim), grub_path.ends_with(".signed")) {
        (Some((shim_path, shim)), true) => {
            let next = format!("EFI/BOOT/{}", arch.grub_name);
            p.esp_files.push(esp_file(&boot, shim));
            p.esp_files.push(esp_file(&next, grub));
            if let Some((_, mm)) = first(c, arch.mok) {
                p.esp_files
                    .push(esp_file(&format!("EFI/BOOT/{}", arch.mok_name), mm));
            }
            p.report.push(format!(
                "UEFI: /{shim_path} as {boot}, /{grub_path} as {next}"
            ));
        }
        _ => {
            p.esp_files.push(esp_file(&boot, grub));
            p.report.push(format!("UEFI: /{grub_path} as {boot}"));
        }
    }
    let stub = grub_cfg::esp_stub(&o.root_label).into_bytes();
    p.esp_files.push(esp_file("EFI/BOOT/grub.cfg", &stub));
    if let Some(id) = c.os_id().filter(|id| {
        !id.is_empty()
            && id
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_' || ch == '.')
    }) {
        p.esp_files
            .push(esp_file(&format!("EFI/{id}/grub.cfg"), &stub));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::{plan, BootSettings};
    use super::*;

    fn files(p: &BootPlan) -> Vec<&str> {
        p.esp_files.iter().map(|f| f.path.as_str()).collect()
    }

    #[test]
    fn arm64_trees_get_arm64_names_and_the_pl011_console() {
        let o = BootOptions::new("cloudimg-rootfs", true, true, &BootSettings::default());
        // Debian's unsigned monolithic arm64 GRUB alone.
        let mut c = BootCollector::new();
        assert!(BootCollector::wants(
            b"usr/lib/grub/arm64-efi/monolithic/grubaa64.efi"
        ));
        c.keep(
            b"usr/lib/grub/arm64-efi/monolithic/grubaa64.efi",
            b"MZ grub".to_vec(),
        );
        let p = plan(&c, &o).unwrap();
        assert_eq!(files(&p), ["EFI/BOOT/BOOTAA64.EFI", "EFI/BOOT/grub.cfg"]);
        assert!(p.bios.is_none(), "no BIOS boot code for an arm64 tree");
        // shim with the signed GRUB: shim is the loader, GRUB beside it.
        c.keep(
            b"usr/lib/grub/arm64-efi-signed/grubaa64.efi.signed",
            b"MZ s".to_vec(),
        );
        c.keep(b"usr/lib/shim/shimaa64.efi.signed", b"MZ shim".to_vec());
        c.keep(b"usr/lib/shim/mmaa64.efi.signed", b"MZ mm".to_vec());
        let p = plan(&c, &o).unwrap();
        assert_eq!(
            files(&p),
            [
                "EFI/BOOT/BOOTAA64.EFI",
                "EFI/BOOT/grubaa64.efi",
                "EFI/BOOT/mmaa64.efi",
                "EFI/BOOT/grub.cfg"
            ]
        );
        assert_eq!(p.esp_files[0].data, b"MZ shim");
        // An x86-64 tree keeps the x64 names and ttyS0.
        let mut c = BootCollector::new();
        c.keep(
            b"usr/lib/grub/x86_64-efi/monolithic/grubx64.efi",
            b"MZ".to_vec(),
        );
        assert_eq!(tree_arch(&c).map(|a| a.boot), Some("BOOTX64.EFI"));
        assert!(o.cmdline.contains("console=ttyS0,115200"));
    }
}
