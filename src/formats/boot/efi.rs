//! UEFI: loaders on the ESP at the removable-media path
//! `EFI/BOOT/BOOTX64.EFI`, so firmware finds them without NVRAM entries.
//!
//! Preference (reference `rootless-and-boot.md` §4.3, DIB's bootloader
//! element uses the distro's signed binaries the same way):
//! 1. shim + the distro-signed GRUB (Secure Boot capable): `BOOTX64.EFI` =
//!    shim, `grubx64.efi` = signed GRUB next to it (shim loads it from its
//!    own directory), `mmx64.efi` = MokManager.
//! 2. the distro's GRUB EFI image alone (signed or the monolithic unsigned
//!    one from grub-efi-amd64-bin) as `BOOTX64.EFI`.
//!
//! Debian-built GRUB EFI images source `$prefix/grub.cfg` (`/EFI/<ID>/`)
//! or else `$cmdpath/grub.cfg` (`/EFI/BOOT/`): both get a stub that finds
//! the root by label and loads /boot/grub/grub.cfg from it.

use super::collect::{BootCollector, Kernel};
use super::{grub_cfg, BootError, BootOptions, BootPlan, PlannedFile};

const SHIM: &[&str] = &[
    "usr/lib/shim/shimx64.efi.signed",
    "usr/lib/shim/shimx64.efi",
];
const MOK: &[&str] = &["usr/lib/shim/mmx64.efi.signed", "usr/lib/shim/mmx64.efi"];
const GRUB: &[&str] = &[
    "usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed",
    "usr/lib/grub/x86_64-efi/monolithic/grubx64.efi",
];

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
    if c.has_esp_loader() {
        p.report
            .push("UEFI: the tree's own /boot/efi/EFI/BOOT/BOOTX64.EFI".into());
        return Ok(());
    }
    let Some((grub_path, grub)) = first(c, GRUB) else {
        p.report.push(
            "UEFI: the tree has no GRUB EFI image (grub-efi-amd64-bin or grub-efi-amd64-signed): not UEFI-bootable"
                .into(),
        );
        return Ok(());
    };
    if kernel.is_none() && !c.has_root_grub_cfg() {
        p.report
            .push("UEFI: loaders installed, but there is no kernel to boot".into());
    }
    match (first(c, SHIM), grub_path.ends_with(".signed")) {
        (Some((shim_path, shim)), true) => {
            p.esp_files.push(esp_file("EFI/BOOT/BOOTX64.EFI", shim));
            p.esp_files.push(esp_file("EFI/BOOT/grubx64.efi", grub));
            if let Some((_, mm)) = first(c, MOK) {
                p.esp_files.push(esp_file("EFI/BOOT/mmx64.efi", mm));
            }
            p.report.push(format!(
                "UEFI: /{shim_path} as EFI/BOOT/BOOTX64.EFI, /{grub_path} as EFI/BOOT/grubx64.efi"
            ));
        }
        _ => {
            p.esp_files.push(esp_file("EFI/BOOT/BOOTX64.EFI", grub));
            p.report
                .push(format!("UEFI: /{grub_path} as EFI/BOOT/BOOTX64.EFI"));
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
