//! The boot loader plugged into the assembler's seams: the stream feeds
//! [`BootCollector`], the planner's files go to the root filesystem and the
//! ESP like tree entries, and once the partition table is written GRUB's
//! boot.img/core.img go into sector 0 and the BIOS boot partition (GPT) or
//! the gap after the MBR.

use std::fs::File;

use super::plan::{FsType, Plan};
use super::{AssembleHooks, DiskInfo, ExtraEntry, HookError};
use crate::boot::{self, grub_bios, BootCollector, BootOptions, BootPlan, BootSettings};
use crate::disk::layout::TableKind;
use crate::tree::{Entry, EntryKind};

/// Where the ESP is mounted in the tree (DIB's block-device-efi).
const ESP_MOUNT: &str = "boot/efi";

#[derive(Default)]
pub struct BootHooks {
    collector: BootCollector,
    plan: Option<BootPlan>,
    settings: BootSettings,
}

impl BootHooks {
    pub fn new(settings: BootSettings) -> Self {
        BootHooks {
            settings,
            ..Self::default()
        }
    }
}

impl AssembleHooks for BootHooks {
    fn wants(&mut self, e: &Entry) -> bool {
        self.collector.note(e);
        e.kind == EntryKind::File && BootCollector::wants(&e.path)
    }

    fn keep(&mut self, e: &Entry, data: &[u8]) {
        self.collector.keep(&e.path, data.to_vec());
    }

    fn extra_entries(&mut self, plan: &Plan) -> Result<Vec<ExtraEntry>, HookError> {
        let root = &plan.filesystems[plan.root()];
        let efi = plan.filesystems.iter().any(|f| {
            f.fstype == FsType::Vfat
                && f.mount.as_ref().map(|m| m.rel.as_slice()) == Some(ESP_MOUNT.as_bytes())
        });
        let mut o = BootOptions::new(&root.label, plan.partitioned, efi, &self.settings);
        o.root_fstype = root.type_name.clone();
        let bp = boot::plan(&self.collector, &o)?;
        let mut out = Vec::new();
        for f in &bp.root_files {
            out.push(ExtraEntry {
                path: f.path.clone(),
                mode: f.mode,
                data: Some(f.data.clone()),
            });
        }
        for f in &bp.esp_files {
            out.push(ExtraEntry {
                path: format!("{ESP_MOUNT}/{}", f.path),
                mode: f.mode,
                data: Some(f.data.clone()),
            });
        }
        self.plan = Some(bp);
        Ok(out)
    }

    fn after_table(&mut self, disk: &File, info: &DiskInfo) -> Result<(), HookError> {
        let Some(bp) = self.plan.as_mut() else {
            return Ok(());
        };
        if let Some(b) = &bp.bios {
            let target = match info.table {
                Some(TableKind::Gpt) => info.bios_boot.map(|(first, n)| grub_bios::CoreTarget {
                    first_lba: first,
                    sectors: n,
                    place: "the BIOS boot partition".into(),
                }),
                Some(TableKind::Mbr) => {
                    info.first_partition_lba
                        .filter(|f| *f > 1)
                        .map(|f| grub_bios::CoreTarget {
                            first_lba: 1,
                            sectors: f - 1,
                            place: "the gap after the MBR".into(),
                        })
                }
                None => None,
            };
            match target {
                Some(t) if info.sector == grub_bios::SECTOR => {
                    grub_bios::install(disk, 0, b, &t)?;
                    bp.report
                        .push(format!("BIOS: core.img at LBA {} ({})", t.first_lba, t.place));
                }
                Some(_) => bp.report.push(format!(
                    "BIOS: not installed: GRUB's BIOS boot code needs 512-byte sectors, the disk has {}",
                    info.sector
                )),
                None => bp.report.push(
                    "BIOS: not installed: the layout has no BIOS boot partition (GPT type EF02) or MBR gap"
                        .into(),
                ),
            }
        }
        for line in &bp.report {
            crate::detail!("dibr assemble: {line}");
        }
        Ok(())
    }
}
