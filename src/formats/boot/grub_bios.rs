//! GRUB for BIOS: boot.img in sector 0, core.img in the BIOS boot partition
//! (GPT) or the gap after the MBR (msdos), patched exactly as
//! `grub-bios-setup --no-rs-codes` does (GRUB 2.06 `util/setup.c`, function
//! `grub_util_bios_setup`; the boot.img layout is `grub-core/boot/i386/pc/boot.S`
//! and the core.img blocklist is `grub-core/boot/i386/pc/diskboot.S`).
//!
//! boot.img (`grub-core/boot/i386/pc/boot.S`) offsets:
//! - 0x03..0x5A  BPB, copied from the existing sector 0 (`setup.c:385`)
//! - 0x5C..0x64  `kernel_sector`: LBA of core.img's first sector (u64 LE)
//! - 0x64        `boot_drive`: 0xFF = use the drive the BIOS passed in DL
//! - 0x66..0x68  `boot_drive_check` jump, replaced by two NOPs on hard
//!   disks so a bogus DL is forced to 0x80 (`setup.c:390-397`)
//! - 0x1B8..0x1FE disk signature and partition table, kept from sector 0
//! - 0x1FE..0x200 0x55AA
//!
//! core.img's first sector is diskboot.img; its last blocklist entry, at
//! 0x1F4 (`0x200 - 12`), says where the rest is: `{u64 start, u16 len,
//! u16 segment=0x820}`; the entry below it (0x1E8) is zeroed as the
//! terminator (`setup.c:554-580`, `diskboot.S:365-377`).

use std::fs::File;
use std::os::unix::fs::FileExt;

use super::collect::{BootCollector, BOOT_GRUB_I386_DIR, GRUB_I386_DIR};
use super::{grub_cfg, io_err, mkimage, BiosImages, BootError, BootOptions, BootPlan, PlannedFile};

pub const SECTOR: u64 = 512;
/// GRUB refuses core images past this many sectors (`setup.c:505-516`:
/// `(0x78000 - 0x9000) >> 9`), the room below the real-mode stack.
pub const MAX_CORE_SECTORS: u64 = 952;

/// Where core.img goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoreTarget {
    pub first_lba: u64,
    pub sectors: u64,
    /// For messages: "the BIOS boot partition", "the gap after the MBR".
    pub place: String,
}

/// The modules grub-install puts into core.img for an ext4 root on GPT or
/// msdos (`biosdisk part_gpt part_msdos ext2`), plus `search` for the early
/// config that finds the root by label; an xfs root gets `xfs` instead of
/// `ext2` ([`BootOptions::root_fs_module`]).
pub const CORE_MODULES: &[&str] = &["biosdisk", "part_gpt", "part_msdos", "ext2", "search"];

/// [`CORE_MODULES`] with the root filesystem's module.
fn core_modules(o: &BootOptions) -> Vec<&'static str> {
    CORE_MODULES
        .iter()
        .map(|&m| if m == "ext2" { o.root_fs_module() } else { m })
        .collect()
}

/// boot.img and core.img for this tree, and the module directory the core's
/// prefix points at, if the tree does not have it yet.
pub fn prepare(
    c: &BootCollector,
    o: &BootOptions,
    plan: &mut BootPlan,
) -> Result<Option<BiosImages>, BootError> {
    let boot_img = c
        .file("boot/grub/i386-pc/boot.img")
        .or_else(|| c.file(&format!("{GRUB_I386_DIR}boot.img")));
    let Some(boot_img) = boot_img else {
        return Ok(None);
    };
    if boot_img.len() != SECTOR as usize {
        return Err(BootError::BadBootImg("boot.img", boot_img.len()));
    }
    // grub-install copies the platform directory to /boot/grub/i386-pc: the
    // core's prefix loads `normal` and friends from there.
    if !c.has_boot_grub_modules() {
        let mut n = 0;
        for (path, data) in c.files_under(GRUB_I386_DIR) {
            let name = &path[GRUB_I386_DIR.len()..];
            if name.contains('/') || !(name.ends_with(".mod") || name.ends_with(".lst")) {
                continue;
            }
            plan.root_files.push(PlannedFile {
                path: format!("{BOOT_GRUB_I386_DIR}{name}"),
                data: data.to_vec(),
                mode: 0o644,
            });
            n += 1;
        }
        plan.report.push(format!(
            "BIOS: {n} GRUB modules copied to /boot/grub/i386-pc"
        ));
    }
    let (core_img, origin) = match c.file("boot/grub/i386-pc/core.img") {
        Some(core) => (
            core.to_vec(),
            "the tree's /boot/grub/i386-pc/core.img".to_string(),
        ),
        None => {
            let early = grub_cfg::early_bios(&o.root_label);
            let core = mkimage::core_img(
                c,
                &early,
                &core_modules(o),
                o.mkimage.as_deref(),
                &o.scratch_dir,
            )?;
            (
                core,
                "made by the host's grub-mkimage from the tree's modules".to_string(),
            )
        }
    };
    if core_img.len() < SECTOR as usize {
        return Err(BootError::BadCoreImg {
            origin,
            len: core_img.len(),
        });
    }
    Ok(Some(BiosImages {
        boot_img: boot_img.to_vec(),
        core_img,
        core_origin: origin,
    }))
}

/// Patch the pair for `target`; `sector0` is the disk's current first sector
/// (partition table already written). Returns (new sector 0, core sectors).
pub fn patch(
    b: &BiosImages,
    sector0: &[u8; 512],
    target: &CoreTarget,
) -> Result<([u8; 512], Vec<u8>), BootError> {
    let n = (b.core_img.len() as u64).div_ceil(SECTOR);
    let available = target.sectors.min(MAX_CORE_SECTORS);
    if n > available || n > u64::from(u16::MAX) {
        return Err(BootError::CoreTooLarge {
            needed: n,
            available,
            place: target.place.clone(),
            hint: "give the BIOS boot partition (EF02) at least 1 MiB, or start the first MBR partition at 1 MiB",
        });
    }
    let mut core = b.core_img.clone();
    core.resize((n * SECTOR) as usize, 0);
    core[0x1E8..0x1F4].fill(0);
    core[0x1F4..0x1FC].copy_from_slice(&(target.first_lba + 1).to_le_bytes());
    core[0x1FC..0x1FE].copy_from_slice(&((n - 1) as u16).to_le_bytes());
    core[0x1FE..0x200].copy_from_slice(&0x0820u16.to_le_bytes());

    let mut boot = [0u8; 512];
    boot.copy_from_slice(&b.boot_img);
    boot[0x03..0x5A].copy_from_slice(&sector0[0x03..0x5A]);
    boot[0x5C..0x64].copy_from_slice(&target.first_lba.to_le_bytes());
    boot[0x64] = 0xFF;
    boot[0x66] = 0x90;
    boot[0x67] = 0x90;
    boot[0x1B8..0x1FE].copy_from_slice(&sector0[0x1B8..0x1FE]);
    boot[0x1FE] = 0x55;
    boot[0x1FF] = 0xAA;
    Ok((boot, core))
}

/// Write the patched pair into the disk image at `base` (the disk's offset
/// in `file`, 0 for a whole-disk file).
pub fn install(
    file: &File,
    base: u64,
    b: &BiosImages,
    target: &CoreTarget,
) -> Result<(), BootError> {
    let mut s0 = [0u8; 512];
    file.read_exact_at(&mut s0, base)
        .map_err(io_err("reading sector 0 for boot.img"))?;
    let (boot, core) = patch(b, &s0, target)?;
    file.write_all_at(&core, base + target.first_lba * SECTOR)
        .map_err(io_err(format!(
            "writing core.img at LBA {}",
            target.first_lba
        )))?;
    file.write_all_at(&boot, base)
        .map_err(io_err("writing boot.img to sector 0"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn images(core_len: usize) -> BiosImages {
        BiosImages {
            boot_img: (0..512).map(|i| i as u8).collect(),
            core_img: vec![0xAB; core_len],
            core_origin: "test".into(),
        }
    }

    /// The recipe's fields, checked against the offsets grub-bios-setup
    /// writes (reference §4.2: core of 26 954 bytes at LBA 2048 gives the
    /// blocklist (2049, 52, 0x820)).
    #[test]
    fn blocklist_and_mbr_fields() {
        let mut s0 = [0u8; 512];
        s0[0x1B8..0x1BC].copy_from_slice(&[1, 2, 3, 4]);
        s0[0x1C2] = 0xEE;
        let t = CoreTarget {
            first_lba: 2048,
            sectors: 2048,
            place: "bsp".into(),
        };
        let (boot, core) = patch(&images(26_954), &s0, &t).unwrap();
        assert_eq!(core.len(), 53 * 512);
        assert_eq!(&core[0x1F4..0x1FC], &2049u64.to_le_bytes());
        assert_eq!(&core[0x1FC..0x1FE], &52u16.to_le_bytes());
        assert_eq!(&core[0x1FE..0x200], &[0x20, 0x08]);
        assert!(core[0x1E8..0x1F4].iter().all(|b| *b == 0));
        assert_eq!(&boot[0x5C..0x64], &2048u64.to_le_bytes());
        assert_eq!(boot[0x64], 0xFF);
        assert_eq!(&boot[0x66..0x68], &[0x90, 0x90]);
        assert_eq!(&boot[0x1B8..0x1BC], &[1, 2, 3, 4]);
        assert_eq!(boot[0x1C2], 0xEE);
        assert_eq!(&boot[0x1FE..], &[0x55, 0xAA]);
        // Code bytes outside the patched fields are boot.img's.
        assert_eq!(boot[0x70], 0x70);
        assert!(boot[0x03..0x5A].iter().all(|b| *b == 0));
    }

    #[test]
    fn too_small_a_gap_is_refused() {
        let t = CoreTarget {
            first_lba: 1,
            sectors: 20,
            place: "the gap after the MBR".into(),
        };
        let e = patch(&images(30_000), &[0u8; 512], &t).unwrap_err();
        assert!(e.to_string().contains("needs 59 sectors"), "{e}");
    }
}
