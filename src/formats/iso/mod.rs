//! A bootable ISO 9660 image of a ramdisk (kernel + initramfs) that boots
//! from BIOS and from UEFI, written without root: the writer behind the
//! `iso` element (diskimage-builder's `iso` element, `cleanup.d/100-build-iso`,
//! does the same with a loop-mounted FAT image and `sudo`).
//!
//! The layout follows DIB's: `/vmlinuz`, `/initrd`, ISOLINUX in
//! `/isolinux` for BIOS, and an El Torito EFI boot image
//! (`/isolinux/efiboot.img`) for UEFI. What differs is how the pieces are
//! made:
//!
//! - the EFI boot image is a FAT32 volume from dibr's own writer
//!   ([`crate::fat`]) holding `EFI/BOOT/BOOTX64.EFI`, a GRUB the host's
//!   `grub-mkimage` builds from `grub-efi-amd64-bin`'s modules
//!   ([`efiboot`]), and its `grub.cfg`;
//! - the ISO is written by `xorriso -as mkisofs` as the calling user
//!   ([`xorriso`]), ISOLINUX (`isolinux`, `syslinux-common`) taken from the
//!   host, with an isohybrid MBR.
//!
//! Reproducible: with a SOURCE_DATE_EPOCH every timestamp (FAT entries,
//! ISO files, volume dates, the isohybrid MBR id) is that time and the
//! FAT volume id is derived from it, so the same inputs give the same
//! bytes. FAT32 needs at least 65525 clusters (about 33 MiB, mostly
//! zeros), more than El Torito's 16-bit load size can count: xorriso then
//! records a load size of 0, which UEFI firmware (EDK II's El Torito
//! partition driver) reads as "the image runs to the end of the medium";
//! the FAT volume's own size bounds what is read.

pub mod config;
pub mod efiboot;
pub mod xorriso;

use std::io;
use std::path::{Path, PathBuf};

/// The volume label DIB gives its ISOs, and which its grub.cfg searches for.
pub const DIB_VOLUME_ID: &str = "VMEDIA_BOOT_ISO";

/// Host files and programs the writer uses; found by the caller
/// (`crate::settings::iso_host`), so the writer reads no environment.
#[derive(Clone, Debug)]
pub struct IsoHost {
    /// `xorriso` on PATH (package xorriso).
    pub xorriso: Option<PathBuf>,
    /// `grub-mkimage` on PATH (package grub-common).
    pub grub_mkimage: Option<PathBuf>,
    /// GRUB's x86_64-efi module directory (package grub-efi-amd64-bin).
    pub grub_efi_dir: PathBuf,
    /// ISOLINUX's boot image (package isolinux).
    pub isolinux_bin: PathBuf,
    /// ISOLINUX's isohybrid MBR template (package isolinux).
    pub isohdpfx: PathBuf,
    /// ISOLINUX's core module, needed since SYSLINUX 5 (package syslinux-common).
    pub ldlinux_c32: PathBuf,
}

impl Default for IsoHost {
    /// Debian's and Ubuntu's paths, tools not found.
    fn default() -> Self {
        IsoHost {
            xorriso: None,
            grub_mkimage: None,
            grub_efi_dir: "/usr/lib/grub/x86_64-efi".into(),
            isolinux_bin: "/usr/lib/ISOLINUX/isolinux.bin".into(),
            isohdpfx: "/usr/lib/ISOLINUX/isohdpfx.bin".into(),
            ldlinux_c32: "/usr/lib/syslinux/modules/bios/ldlinux.c32".into(),
        }
    }
}

impl IsoHost {
    /// Every host piece is there, or the first missing one named with the
    /// Debian package that provides it.
    pub fn check(&self) -> Result<(), IsoError> {
        let missing = |what: &str, package: &'static str| IsoError::MissingHostTool {
            what: what.to_string(),
            package,
        };
        if self.xorriso.is_none() {
            return Err(missing("xorriso (not on PATH)", "xorriso"));
        }
        if self.grub_mkimage.is_none() {
            return Err(missing("grub-mkimage (not on PATH)", "grub-common"));
        }
        let files: [(&Path, &'static str); 4] = [
            (&self.grub_efi_dir.join("linux.mod"), "grub-efi-amd64-bin"),
            (&self.isolinux_bin, "isolinux"),
            (&self.isohdpfx, "isolinux"),
            (&self.ldlinux_c32, "syslinux-common"),
        ];
        for (f, package) in files {
            if !f.is_file() {
                return Err(missing(&f.display().to_string(), package));
            }
        }
        Ok(())
    }
}

/// What goes on the ISO.
#[derive(Clone, Debug)]
pub struct IsoInput<'a> {
    pub kernel: &'a Path,
    pub initrd: &'a Path,
    /// Kernel command line (DIB: `boot_method=vmedia` and
    /// `DIB_DEPLOY_ISO_KERNEL_CMDLINE_ARGS`), words separated by spaces.
    pub cmdline: &'a str,
    /// ISO volume id, searched for by GRUB ([`DIB_VOLUME_ID`]).
    pub volume_id: &'a str,
    /// SOURCE_DATE_EPOCH: every timestamp, and the ids derived from it.
    pub source_date_epoch: Option<i64>,
    /// Where the scratch directory (EFI image, configs) is made.
    pub scratch_base: &'a Path,
}

/// What was written, for the build's message.
#[derive(Clone, Debug)]
pub struct IsoStats {
    pub bytes: u64,
    pub efi_image_bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum IsoError {
    #[error("iso: {what} is missing: install the Debian package {package}")]
    MissingHostTool { what: String, package: &'static str },
    #[error("iso: kernel command line {cmdline:?}: {reason}")]
    BadCmdline { cmdline: String, reason: String },
    #[error("iso: volume id {id:?}: {reason}")]
    BadVolumeId { id: String, reason: &'static str },
    #[error("iso: {tool} failed ({status}): {stderr}")]
    Tool {
        tool: String,
        status: String,
        stderr: String,
    },
    #[error("iso: the EFI boot image: {0}")]
    Fat(#[from] crate::fat::FatError),
    #[error("iso: {what}: {source}")]
    Io { what: String, source: io::Error },
}

pub(crate) fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> IsoError {
    let what = what.into();
    move |source| IsoError::Io { what, source }
}

/// A private scratch directory, removed on drop.
pub(crate) struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(base: &Path) -> Result<Scratch, IsoError> {
        for i in 0..100u32 {
            let p = base.join(format!(".dibr-iso.{}.{i}", std::process::id()));
            match std::fs::create_dir(&p) {
                Ok(()) => return Ok(Scratch(p)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io_err(format!("creating {}", p.display()))(e)),
            }
        }
        Err(IsoError::Io {
            what: format!("creating a scratch directory in {}", base.display()),
            source: io::Error::other("too many leftovers"),
        })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes the ISO to `out` (a path no one else writes; the caller names it
/// when complete). The host pieces are checked first, so a missing one is
/// reported before any work.
pub fn write_iso(host: &IsoHost, input: &IsoInput, out: &Path) -> Result<IsoStats, IsoError> {
    host.check()?;
    config::check_volume_id(input.volume_id)?;
    let words = config::cmdline_words(input.cmdline)?;
    let scratch = Scratch::new(input.scratch_base)?;
    let root = scratch.0.join("root");
    let isolinux = root.join("isolinux");
    let efi_dir = root.join("EFI/BOOT");
    for d in [&isolinux, &efi_dir] {
        std::fs::create_dir_all(d).map_err(io_err(format!("creating {}", d.display())))?;
    }
    let copy = |from: &Path, to: PathBuf| {
        std::fs::copy(from, &to)
            .map(|_| ())
            .map_err(io_err(format!("copying {}", from.display())))
    };
    copy(&host.isolinux_bin, isolinux.join("isolinux.bin"))?;
    copy(&host.ldlinux_c32, isolinux.join("ldlinux.c32"))?;
    let write = |to: PathBuf, text: &str| {
        std::fs::write(&to, text).map_err(io_err(format!("writing {}", to.display())))
    };
    write(isolinux.join("isolinux.cfg"), &config::isolinux_cfg(&words))?;
    let grub_cfg = config::grub_cfg(&words, input.volume_id);
    write(efi_dir.join("grub.cfg"), &grub_cfg)?;

    let grub = efiboot::grub_efi(host, input.volume_id, &scratch.0)?;
    let efi_img = isolinux.join("efiboot.img");
    let efi_image_bytes = efiboot::efi_image(&efi_img, &grub, &grub_cfg, input.source_date_epoch)?;
    std::fs::remove_file(&grub).map_err(io_err(format!("removing {}", grub.display())))?;

    xorriso::run(host, input, &root, out)?;
    let bytes = std::fs::metadata(out)
        .map_err(io_err(format!("reading {}", out.display())))?
        .len();
    Ok(IsoStats {
        bytes,
        efi_image_bytes,
    })
}
