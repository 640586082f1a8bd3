//! The seams boot loaders plug into ([`AssembleHooks`]): (a) every tree
//! entry before it is placed, (b) extra entries after the tree, (c) the raw
//! disk and a [`DiskInfo`] once the partition table is written.

use std::fs::File;

use super::plan::{FsType, Plan, Region, Target};
use crate::disk::gpt;
use crate::disk::layout::{Layout, PartType, TableKind};
use crate::tree::Entry;

/// Largest file a hook may keep in memory.
pub const KEEP_LIMIT: u64 = 256 << 20;

/// Errors hooks return.
pub type HookError = Box<dyn std::error::Error + Send + Sync>;

/// A file or directory a hook adds (seam b). `path` is relative to the
/// image root (`boot/efi/EFI/BOOT/BOOTX64.EFI`); it is routed to the
/// filesystem mounted there like a tree entry and replaces an entry of the
/// same path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtraEntry {
    pub path: String,
    pub mode: u32,
    /// None: a directory.
    pub data: Option<Vec<u8>>,
}

/// The disk after its partition table is written (seam c).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskInfo {
    /// None: a filesystem on the whole disk (DIB's fallback), no table.
    pub table: Option<TableKind>,
    pub sector: u64,
    pub disk_size: u64,
    /// GPT BIOS boot partition (type EF02): (first LBA, sectors).
    pub bios_boot: Option<(u64, u64)>,
    /// First LBA of the first partition (MBR: end of the post-MBR gap).
    pub first_partition_lba: Option<u64>,
    /// EFI system partition (GPT EF00 / MBR 0xEF, or the vfat at
    /// /boot/efi): (first LBA, sectors).
    pub esp: Option<(u64, u64)>,
    /// Number of the root partition (`/dev/sdaN`), None without a table.
    pub root_partition: Option<u32>,
    /// Byte offset of the root filesystem in the disk.
    pub root_offset: u64,
    pub root_label: String,
    pub root_uuid: [u8; 16],
    /// The whole layout (None without a table).
    pub layout: Option<Layout>,
}

impl DiskInfo {
    pub fn esp_present(&self) -> bool {
        self.esp.is_some()
    }

    /// The root UUID as blkid prints it.
    pub fn root_uuid_string(&self) -> String {
        crate::uuid::Uuid(self.root_uuid).to_string()
    }
}

/// Where boot loaders plug in. Every method has a do-nothing default.
pub trait AssembleHooks {
    /// Seam (a): called for every tree entry before it is placed; return
    /// true for a regular file to get its content in [`Self::keep`] (at most
    /// [`KEEP_LIMIT`] bytes; the entry is still placed as usual).
    fn wants(&mut self, _entry: &Entry) -> bool {
        false
    }
    fn keep(&mut self, _entry: &Entry, _data: &[u8]) {}
    /// Seam (b): after the whole tree, before the filesystems are
    /// finished: entries to add (to the root fs, the ESP, … by path).
    fn extra_entries(&mut self, _plan: &Plan) -> Result<Vec<ExtraEntry>, HookError> {
        Ok(Vec::new())
    }
    /// Seam (c): after the partition table is written and before the
    /// outputs are converted: write boot code into the raw disk.
    fn after_table(&mut self, _disk: &File, _info: &DiskInfo) -> Result<(), HookError> {
        Ok(())
    }
}

/// No boot loader.
pub struct NoHooks;
impl AssembleHooks for NoHooks {}

pub(super) fn disk_info(
    plan: &Plan,
    layout: Option<&Layout>,
    regions: &[Region],
    disk_size: u64,
    root_uuid: [u8; 16],
) -> DiskInfo {
    let root = plan.root();
    let sector = layout.map(|l| l.sector).unwrap_or(plan.sector);
    let lba = |start: u64, size: u64| (start / sector, size / sector);
    let ef02 = gpt::type_guid("EF02");
    let ef00 = gpt::type_guid("EF00");
    let mut info = DiskInfo {
        table: layout.map(|l| l.kind),
        sector,
        disk_size,
        bios_boot: None,
        first_partition_lba: None,
        esp: None,
        root_partition: None,
        root_offset: regions[root].offset,
        root_label: plan.filesystems[root].label.clone(),
        root_uuid,
        layout: layout.cloned(),
    };
    if let Some(l) = layout {
        info.first_partition_lba = l.partitions.iter().map(|p| p.start / sector).min();
        for p in &l.partitions {
            match p.ptype {
                PartType::Gpt(g) if Some(g) == ef02 => info.bios_boot = Some(lba(p.start, p.size)),
                PartType::Gpt(g) if Some(g) == ef00 => info.esp = Some(lba(p.start, p.size)),
                PartType::Mbr(0xef) => info.esp = Some(lba(p.start, p.size)),
                _ => {}
            }
        }
        if let Target::Partition(i) = plan.filesystems[root].target {
            info.root_partition = l.partitions.get(i).map(|p| p.number);
        }
        if info.esp.is_none() {
            for f in &plan.filesystems {
                let at_efi = f.mount.as_ref().is_some_and(|m| m.rel == b"boot/efi");
                if let (true, FsType::Vfat, Target::Partition(i)) = (at_efi, f.fstype, &f.target) {
                    let p = &l.partitions[*i];
                    info.esp = Some(lba(p.start, p.size));
                }
            }
        }
    }
    info
}
