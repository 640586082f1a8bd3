//! The `iso` element for `dibr ramdisk` (`ramdisk-image-create ... iso`):
//! besides NAME.kernel and NAME.initramfs, NAME.iso booting them from
//! BIOS and UEFI, in the same output set (all three appear together).
//!
//! diskimage-builder's `iso` element makes the ISO in its
//! `cleanup.d/100-build-iso` from the `IMAGE_NAME.kernel` and
//! `IMAGE_NAME.initramfs` its ramdisk elements wrote, with `sudo mount`.
//! dibr packs the ramdisk after the build, so the ISO is made here, by
//! [`crate::iso`], rootless. DIB's own `iso` is passed over for dibr's
//! even when DIB's library comes first (`crate::elements::path`'s
//! `KEPT_FROM_DIBR`); an `iso` element of the user's with a `cleanup.d`
//! is left to do its own work.

use std::path::{Path, PathBuf};

use crate::build::BuildConfig;
use crate::iso::{IsoHost, IsoInput, DIB_VOLUME_ID};

/// What the ISO needs, settled before the build so a missing host tool
/// stops it before any work.
pub struct IsoPlan {
    host: IsoHost,
    cmdline: String,
    source_date_epoch: Option<i64>,
}

/// The plan when the build's elements include dibr's `iso` element.
pub fn plan(cfg: &BuildConfig) -> Result<Option<IsoPlan>, Box<dyn std::error::Error>> {
    let Some(dir) = crate::build::resolved_element(cfg, "iso")? else {
        return Ok(None);
    };
    if dir.join("cleanup.d").is_dir() {
        return Ok(None);
    }
    if !matches!(cfg.arch.as_str(), "amd64" | "x86_64") {
        return Err(format!(
            "element iso: the ISO boots x86-64 only (ISOLINUX, BOOTX64.EFI); this build is for {}",
            cfg.arch
        )
        .into());
    }
    let host = crate::settings::iso_host();
    host.check()
        .map_err(|e| format!("element iso ({}): {e}", dir.display()))?;
    let cmdline = crate::settings::iso_cmdline();
    crate::iso::config::cmdline_words(&cmdline)
        .map_err(|e| format!("DIB_DEPLOY_ISO_KERNEL_CMDLINE_ARGS: {e}"))?;
    Ok(Some(IsoPlan {
        host,
        cmdline,
        source_date_epoch: cfg.source_date_epoch,
    }))
}

/// The set's kernel and initramfs under plain names xorriso can read:
/// an unnamed output (`/proc/self/fd/N`, O_TMPFILE) is linked in as open(2)
/// describes (`linkat` with AT_SYMLINK_FOLLOW); a copy if linking fails.
/// The directory is removed on drop, which must come after the set is
/// committed: an O_TMPFILE file linked once and unlinked again can never
/// be linked (named) again (linkat(2), ENOENT).
pub struct Inputs(PathBuf);

impl Inputs {
    fn new(dir: &Path, files: &[(&Path, &str)]) -> std::io::Result<Inputs> {
        let d = dir.join(format!(".dibr-iso-in.{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir(&d)?;
        let me = Inputs(d);
        for (dest, name) in files {
            let from = crate::output::set::readable(dest);
            let to = me.0.join(name);
            let linked = rustix::fs::linkat(
                rustix::fs::CWD,
                from.as_path(),
                rustix::fs::CWD,
                &to,
                rustix::fs::AtFlags::SYMLINK_FOLLOW,
            );
            if linked.is_err() {
                std::fs::copy(&from, &to)?;
            }
        }
        Ok(me)
    }
}

impl Drop for Inputs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes NAME.iso into the open output set from the set's NAME.kernel
/// and NAME.initramfs. Hold the returned guard until the set is committed.
pub fn write(
    plan: &IsoPlan,
    kernel: &Path,
    initramfs: &Path,
    iso: &Path,
) -> Result<Inputs, Box<dyn std::error::Error>> {
    let dir = match iso.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let inputs = Inputs::new(&dir, &[(kernel, "vmlinuz"), (initramfs, "initrd")]).map_err(|e| {
        format!(
            "element iso: linking the kernel and initramfs in {}: {e}",
            dir.display()
        )
    })?;
    let (kernel, initrd) = (inputs.0.join("vmlinuz"), inputs.0.join("initrd"));
    let input = IsoInput {
        kernel: &kernel,
        initrd: &initrd,
        cmdline: &plan.cmdline,
        volume_id: DIB_VOLUME_ID,
        source_date_epoch: plan.source_date_epoch,
        scratch_base: &dir,
    };
    let out = crate::output::set::stage_path(iso);
    let stats = crate::iso::write_iso(&plan.host, &input, &out)
        .map_err(|e| format!("element iso: {}: {e}", iso.display()))?;
    eprintln!(
        "dibr ramdisk: {} ({} MiB; BIOS: ISOLINUX, UEFI: GRUB in a {} MiB El Torito image; kernel command line: {})",
        iso.display(),
        stats.bytes >> 20,
        stats.efi_image_bytes >> 20,
        plan.cmdline
    );
    Ok(inputs)
}
