//! Boot loaders written straight into the image file: no block device, no
//! `grub-install`, no root.
//!
//! The assembler streams the tree once. While it does, [`BootCollector`]
//! keeps the few small files boot needs (GRUB's i386-pc modules, the EFI
//! binaries, a core.img the `bootloader` element prepared) and notes the
//! kernels in /boot. After the stream, [`plan`] decides what goes where:
//! files to add to the root filesystem (GRUB's modules and grub.cfg when the
//! tree has none) and to the ESP (the EFI loaders and their grub.cfg), and
//! the boot.img/core.img pair for BIOS. Once the partition table is on disk,
//! [`grub_bios::install`] patches them into sector 0 and the BIOS boot
//! partition (GPT) or the post-MBR gap (msdos), as grub-bios-setup does.
//!
//! Everything comes from the image's own packages (grub-pc-bin,
//! grub-efi-amd64-bin, shim-signed, grub-efi-amd64-signed, systemd-boot-efi).
//! core.img is the one piece that needs a program: the `bootloader` element
//! runs the image's own `grub-mkimage` in the sandbox and leaves the result
//! at /boot/grub/i386-pc/core.img; for a tree made elsewhere the assembler
//! runs the host's `grub-mkimage` over the tree's modules ([`mkimage`]).

pub mod collect;
pub mod efi;
pub mod grub_bios;
pub mod grub_cfg;
pub mod mkimage;

pub use collect::BootCollector;

use std::io;
use std::path::PathBuf;

/// What the boot planner needs to know about the disk and the root.
#[derive(Clone, Debug)]
pub struct BootOptions {
    /// Label the loaders search for (`cloudimg-rootfs`).
    pub root_label: String,
    /// The root filesystem's type (`ext4`, `xfs`): GRUB's module for it
    /// goes into core.img and grub.cfg (/boot is on the root).
    pub root_fstype: String,
    /// The disk has somewhere to put core.img (BIOS boot partition or an
    /// MBR gap): prepare BIOS boot.
    pub bios: bool,
    /// The disk has an ESP: put EFI loaders on it.
    pub efi: bool,
    /// Kernel command line after `root=LABEL=… ro`.
    pub cmdline: String,
    /// GRUB menu timeout in seconds (DIB_GRUB_TIMEOUT, DIB's default 5).
    pub timeout: u32,
    /// The host's `grub-mkimage`, for a tree without a core.img.
    pub mkimage: Option<PathBuf>,
    /// Where `grub-mkimage` gets a private scratch directory.
    pub scratch_dir: PathBuf,
}

/// The boot loader's share of DIB's environment, resolved once by the
/// caller (`crate::settings::boot`) and handed down.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootSettings {
    /// `DIB_BOOTLOADER_DEFAULT_CMDLINE`: appended to the consoles.
    pub cmdline_extra: String,
    /// `DIB_GRUB_TIMEOUT`: GRUB menu timeout in seconds.
    pub timeout: u32,
    /// `grub-mkimage` (Debian/Ubuntu) or `grub2-mkimage` (Fedora) as found
    /// on the host's `PATH`; none means a tree without a core.img cannot
    /// boot from BIOS ([`BootError::NoMkimage`]).
    pub mkimage: Option<PathBuf>,
    /// The temporary directory `grub-mkimage`'s scratch files go in.
    pub scratch_dir: PathBuf,
}

impl Default for BootSettings {
    /// DIB's defaults (`elements/bootloader/finalise.d/50-bootloader`):
    /// `nofb nomodeset gfxpayload=text` and a 5-second timeout; no host
    /// tools, and `/tmp` (what an unset `TMPDIR` means).
    fn default() -> Self {
        BootSettings {
            cmdline_extra: "nofb nomodeset gfxpayload=text".into(),
            timeout: 5,
            mkimage: None,
            scratch_dir: PathBuf::from("/tmp"),
        }
    }
}

impl BootOptions {
    /// GRUB's module for the root filesystem: `xfs` for xfs, else `ext2`
    /// (which reads ext2/3/4).
    pub fn root_fs_module(&self) -> &'static str {
        if self.root_fstype == "xfs" {
            "xfs"
        } else {
            "ext2"
        }
    }

    /// DIB's command line (`elements/bootloader/finalise.d/50-bootloader`):
    /// serial and VGA consoles, `no_timer_check`, then
    /// [`BootSettings::cmdline_extra`].
    pub fn new(root_label: &str, bios: bool, efi: bool, settings: &BootSettings) -> BootOptions {
        BootOptions {
            root_label: root_label.to_string(),
            root_fstype: "ext4".to_string(),
            bios,
            efi,
            cmdline: format!(
                "console=tty0 console=ttyS0,115200 no_timer_check {}",
                settings.cmdline_extra
            )
            .trim()
            .to_string(),
            timeout: settings.timeout,
            mkimage: settings.mkimage.clone(),
            scratch_dir: settings.scratch_dir.clone(),
        }
    }
}

/// A file the planner adds to a filesystem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedFile {
    /// Path relative to the filesystem root, `/`-separated, no leading `/`.
    pub path: String,
    pub data: Vec<u8>,
    pub mode: u32,
}

/// The BIOS pair, ready for [`grub_bios::install`].
#[derive(Clone, Debug)]
pub struct BiosImages {
    pub boot_img: Vec<u8>,
    pub core_img: Vec<u8>,
    /// Where core.img came from, for the log.
    pub core_origin: String,
}

/// What boot adds to the image.
#[derive(Clone, Debug, Default)]
pub struct BootPlan {
    /// Files for the root filesystem (relative to /).
    pub root_files: Vec<PlannedFile>,
    /// Files for the ESP (relative to the ESP root).
    pub esp_files: Vec<PlannedFile>,
    pub bios: Option<BiosImages>,
    /// One line per decision, printed by the assembler.
    pub report: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BootError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("GRUB's {0} in the tree is {1} bytes, expected 512: is grub-pc-bin's /usr/lib/grub/i386-pc complete?")]
    BadBootImg(&'static str, usize),
    #[error("core.img ({origin}) is {len} bytes: too short to hold GRUB's diskboot sector")]
    BadCoreImg { origin: String, len: usize },
    #[error("core.img needs {needed} sectors but {place} has room for {available}: {hint}")]
    CoreTooLarge {
        needed: u64,
        available: u64,
        place: String,
        hint: &'static str,
    },
    #[error("the tree has GRUB's i386-pc modules but no /boot/grub/i386-pc/core.img, and there is no grub-mkimage on this host to make one: add the `bootloader` element to the build (it runs the image's own grub-mkimage), or install grub-common (Debian/Ubuntu) / grub2-tools (Fedora) on the host")]
    NoMkimage,
    #[error("grub-mkimage failed ({status}): {stderr}")]
    Mkimage { status: String, stderr: String },
}

pub(crate) fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> BootError {
    let what = what.into();
    move |source| BootError::Io { what, source }
}

/// Decide what boot adds to the image, from what the stream kept.
pub fn plan(c: &BootCollector, o: &BootOptions) -> Result<BootPlan, BootError> {
    // An arm64 tree's serial console is the PL011 (ttyAMA0), as DIB's
    // bootloader element sets it for arm64.
    let arch_o;
    let o = match efi::tree_arch(c) {
        Some(a) if a.serial != efi::X64.serial => {
            arch_o = BootOptions {
                cmdline: o.cmdline.replace(efi::X64.serial, a.serial),
                ..o.clone()
            };
            &arch_o
        }
        _ => o,
    };
    let mut p = BootPlan::default();
    let kernel = c.newest_kernel();
    match &kernel {
        Some(k) => p.report.push(format!(
            "kernel /boot/{}{}",
            k.vmlinuz,
            k.initrd
                .as_ref()
                .map(|i| format!(", initrd /boot/{i}"))
                .unwrap_or_default()
        )),
        None if o.bios || o.efi => p
            .report
            .push("no /boot/vmlinuz-* in the tree: the disk will not boot a kernel".into()),
        None => {}
    }

    // grub.cfg on the root filesystem: the tree's own wins (the bootloader
    // element or update-grub made it); otherwise one for the newest kernel.
    let grub_present = c.has_grub_i386() || c.has_efi_grub();
    if (o.bios || o.efi) && grub_present {
        if c.has_root_grub_cfg() {
            p.report
                .push("grub.cfg: the tree's /boot/grub/grub.cfg".into());
        } else if let Some(k) = &kernel {
            p.root_files.push(PlannedFile {
                path: "boot/grub/grub.cfg".into(),
                data: grub_cfg::menu(k, o).into_bytes(),
                mode: 0o644,
            });
            p.report
                .push("grub.cfg: written by dibr for the newest kernel".into());
        }
    }

    if o.bios {
        match grub_bios::prepare(c, o, &mut p)? {
            Some(b) => {
                p.report.push(format!(
                    "BIOS: GRUB boot.img in sector 0, core.img ({} bytes, {})",
                    b.core_img.len(),
                    b.core_origin
                ));
                p.bios = Some(b);
            }
            None => p.report.push(
                "BIOS: the tree has no GRUB for i386-pc (grub-pc-bin): not BIOS-bootable".into(),
            ),
        }
    }
    if o.efi {
        efi::prepare(c, o, kernel.as_ref(), &mut p)?;
    }
    Ok(p)
}
