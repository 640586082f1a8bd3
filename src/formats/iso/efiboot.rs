//! The El Torito EFI boot image: a FAT32 volume (dibr's writer, no mkfs,
//! no mount) holding the removable-media loader path the UEFI
//! specification prescribes for x86-64, `EFI/BOOT/BOOTX64.EFI`, and the
//! `grub.cfg` beside it.
//!
//! BOOTX64.EFI is a GRUB the host's `grub-mkimage` builds from
//! grub-efi-amd64-bin's modules with an embedded configuration that finds
//! the ISO by label ([`super::config::grub_early_cfg`]). grub-mkimage puts
//! no timestamp in its output: the same modules give the same bytes.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{config, io_err, IsoError, IsoHost};
use crate::fat::{self, FatEntry, FatOptions, Layout};

/// GRUB modules BOOTX64.EFI carries: reading the ISO (iso9660) and the EFI
/// image (fat), finding the ISO by label, the menu, and loading Linux
/// through the EFI handover (linux).
pub const GRUB_MODULES: &[&str] = &[
    "iso9660",
    "fat",
    "part_msdos",
    "part_gpt",
    "search",
    "search_label",
    "configfile",
    "normal",
    "echo",
    "test",
    "linux",
    "all_video",
    "efi_gop",
];

/// Builds BOOTX64.EFI in `scratch`; returns its path.
pub fn grub_efi(host: &IsoHost, volume_id: &str, scratch: &Path) -> Result<PathBuf, IsoError> {
    let tool = host
        .grub_mkimage
        .as_deref()
        .ok_or(IsoError::MissingHostTool {
            what: "grub-mkimage (not on PATH)".into(),
            package: "grub-common",
        })?;
    let early = scratch.join("early.cfg");
    std::fs::write(&early, config::grub_early_cfg(volume_id))
        .map_err(io_err(format!("writing {}", early.display())))?;
    let out = scratch.join("BOOTX64.EFI");
    let res = Command::new(tool)
        .arg("-O")
        .arg("x86_64-efi")
        .arg("-d")
        .arg(&host.grub_efi_dir)
        .arg("-o")
        .arg(&out)
        .arg("-c")
        .arg(&early)
        .arg("-p")
        .arg("/EFI/BOOT")
        .args(GRUB_MODULES)
        .output()
        .map_err(io_err(format!("running {}", tool.display())))?;
    if !res.status.success() {
        return Err(IsoError::Tool {
            tool: tool.display().to_string(),
            status: res.status.to_string(),
            stderr: String::from_utf8_lossy(&res.stderr).trim().to_string(),
        });
    }
    Ok(out)
}

/// The FAT32 volume's size: the FAT32 minimum, or room for the files
/// twice over, in whole MiB.
pub fn image_size(content: u64) -> u64 {
    let want = Layout::min_size().max(2 * content + (1 << 20));
    want.div_ceil(1 << 20) << 20
}

/// Writes the EFI boot image to `out`; returns its size.
pub fn efi_image(
    out: &Path,
    bootx64: &Path,
    grub_cfg: &str,
    source_date_epoch: Option<i64>,
) -> Result<u64, IsoError> {
    let loader = std::fs::metadata(bootx64)
        .map_err(io_err(format!("reading {}", bootx64.display())))?
        .len();
    let size = image_size(loader + grub_cfg.len() as u64);
    let entries = [
        FatEntry::dir("EFI"),
        FatEntry::dir("EFI/BOOT"),
        FatEntry::file("EFI/BOOT/BOOTX64.EFI", bootx64),
        FatEntry::bytes("EFI/BOOT/grub.cfg", grub_cfg.as_bytes()),
    ];
    let timestamp = source_date_epoch.unwrap_or_else(now);
    let opts = FatOptions {
        label: "EFIBOOT".into(),
        volume_id_seed: timestamp as u64,
        timestamp,
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(out)
        .map_err(io_err(format!("creating {}", out.display())))?;
    fat::write_fat32(&file, 0, size, &entries, &opts)?;
    Ok(size)
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
