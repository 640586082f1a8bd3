//! `dibr assemble`: a root tree (tarball or directory) into a whole-disk
//! image, in userspace, in one pass over the tree, driven by DIB's
//! block-device YAML (`DIB_BLOCK_DEVICE_CONFIG`, or the
//! `block-device-default.yaml` of the block-device-efi/gpt/mbr elements).
//!
//! The config is parsed and checked as `dib-block-device init` does
//! ([`crate::disk::config::load_with_params`]), turned into a [`Plan`]
//! (filesystems, their partitions and mount points) and placed
//! ([`Plan::place`]). Then the tree streams once: [`Assembly::place_entry`]
//! decides for every entry which filesystem it goes to (longest mount
//! point wins, as the mounts stack in DIB's `mnt/`); ext4 filesystems are
//! written in place at their partition offsets by [`crate::ext4::Builder`]
//! (no temporary copy), vfat entries are collected (an ESP is small) and
//! written by the FAT32 writer. `/etc/fstab` is replaced by the one
//! `dib-block-device writefstab` would write. Without an image size the
//! filesystem on the last partition grows with the tree and the disk is
//! sized after it ([`Plan::size_disk`]); the partition table is written
//! last, then the outputs are converted from the raw disk.
//!
//! Seams for boot loaders ([`AssembleHooks`]): every entry is offered to
//! the hook before it is placed (it may keep small files such as
//! `/usr/lib/grub/i386-pc/*`), extra entries can be added after the tree
//! and before the filesystems are finished, and after the partition table
//! is written the hook gets the raw disk and a [`DiskInfo`].

mod block_device;
pub mod boot;
mod error;
mod hooks;
mod layer_outputs;
pub mod lvm_plan;
mod output_kind;
pub mod plan;
mod router;
mod side_files;
mod xfs_fs;

use std::fs::File;
use std::path::PathBuf;

use crate::disk::config::{self, RootParams};
use crate::disk::gpt::GuidSource;
use crate::disk::layout::{self, TableKind};
use crate::ext4::{self, layout::BLOCK_SIZE, Builder, Options};
use crate::fat::{self, FatEntry, FatOptions};
use crate::lvm;
use crate::output::atomic::AtomicFile;
use crate::output::container::Reference;
use crate::output::qcow2::{self, Qcow2Options};
use crate::output::vhd;
use crate::output::vmdk;
use crate::tree::Timestamp;
pub use block_device::{BlockDeviceConfig, EFI_YAML, FALLBACK_YAML, GPT_YAML, MBR_YAML};
use error::io_err;
pub use error::AssembleError;
use hooks::disk_info;
pub use hooks::{AssembleHooks, DiskInfo, ExtraEntry, HookError, NoHooks, KEEP_LIMIT};
pub use layer_outputs::{image_meta, is_layer_output, write_from_layer};
pub use output_kind::{output_path, parse_types, DiskType, OutputKind};
pub use plan::{FsPlan, FsType, Placement, Plan, PlanError, Region, Target};
pub use router::Assembly;
use router::{Added, Writer};
use side_files::write_glance;
pub use side_files::{manifest_files, write_checksum, write_manifests, ManifestFile};
use side_files::{write_layer_output, write_tar_output};

const MIB: u64 = 1 << 20;
/// Growth ceiling for ext4 filesystems not mounted at `/` (/boot, /var …):
/// 16 TiB keeps 32752 inodes per 128 MiB group, about mke2fs's density.
const SMALL_FS_MAX_RESIZE: u64 = 16 << 40;

#[derive(Clone, Debug)]
pub struct AssembleConfig {
    pub from: PathBuf,
    /// Output name without extension.
    pub image_name: PathBuf,
    pub types: Vec<OutputKind>,
    pub block_device: BlockDeviceConfig,
    pub root_params: RootParams,
    /// `--image-size` / `DIB_IMAGE_SIZE` in bytes (already rounded as DIB).
    pub image_size: Option<u64>,
    pub uncompressed: bool,
    /// qcow2 version and compression (qemu-img's `compat`, `compression_type`).
    pub qcow2: qcow2::Qcow2Format,
    /// How the root filesystem is made (growth ceiling, mkfs options).
    pub root_fs: RootFsOptions,
    pub source_date_epoch: Option<i64>,
    /// Write NAME.<type>.sha256/.md5 next to each output.
    pub checksum: bool,
    /// The build's elements, recorded in each disk output's Glance side
    /// file (`dibr_elements`; empty for `dibr assemble`).
    pub elements: Vec<String>,
    /// What the environment says, resolved by the caller
    /// (`crate::settings::assemble`).
    pub settings: AssembleSettings,
    /// The docker/oci outputs' `repository:tag` (DIB's `--docker-target`);
    /// None: the image name's, `:latest`.
    pub image_reference: Option<Reference>,
}

/// How the root ext4 filesystem is made: what disk-image-create's
/// `--max-online-resize`, `--mkfs-options`, `--mkfs-journal-size` and
/// `--image-extra-size` ask for (`diskimage_builder/lib/disk-image-create`
/// turns them into mke2fs arguments; dibr's writer takes them typed).
#[derive(Clone, Debug, PartialEq)]
pub struct RootFsOptions {
    /// Growth ceiling in bytes.
    pub max_resize_bytes: u64,
    /// The ceiling is dibr's default, not asked for: a fixed
    /// `--image-size` too small for its inode density lowers it.
    pub fit_ceiling: bool,
    /// mke2fs `-i`/`-N`, or the ceiling's density.
    pub density: ext4::Density,
    /// mke2fs `-m`, in tenths of a percent.
    pub reserved_per_mille: u16,
    /// mke2fs `-J size=` / `--mkfs-journal-size`, in blocks.
    pub journal_blocks: Option<u64>,
    /// `--image-extra-size`: free space added to a computed size.
    pub extra_bytes: u64,
}

impl Default for RootFsOptions {
    fn default() -> Self {
        RootFsOptions {
            max_resize_bytes: 1 << 50,
            fit_ceiling: true,
            density: ext4::Density::Ceiling,
            reserved_per_mille: 50,
            journal_blocks: None,
            extra_bytes: 0,
        }
    }
}

/// The assembler's environment settings, resolved once by the command line
/// or the build pipeline; the default is an empty environment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AssembleSettings {
    /// `DIB_BLOCK_SIZE`: the disk's sector size, which wins over the
    /// `local_loop` node's `block_size` (unparsed: the plan reports it).
    pub block_size: Option<String>,
    /// The boot loader's command line and menu timeout.
    pub boot: crate::boot::BootSettings,
    /// fsync and copy_file_range use of the ext4 writer.
    pub ext4_io: ext4::IoOptions,
}

fn epoch_now(sde: Option<i64>) -> i64 {
    sde.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0)
    })
}

fn fat_seed(epoch: i64, label: &str) -> u64 {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(epoch.to_le_bytes());
    h.update(label.as_bytes());
    let d = h.finalize();
    u64::from_le_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
}

/// Assemble the disk with GRUB (BIOS) and the EFI loaders the tree has;
/// returns the outputs written.
/// What an assembly wrote.
#[derive(Debug)]
pub struct Assembled {
    /// The outputs, in the order of the types asked for.
    pub outputs: Vec<PathBuf>,
    /// How far the root ext4 can grow online (none: the root is not ext4).
    pub root_growth_ceiling: Option<u64>,
}

pub fn assemble(cfg: &AssembleConfig) -> Result<Assembled, AssembleError> {
    assemble_with(cfg, &mut boot::BootHooks::new(cfg.settings.boot.clone()))
}

/// [`assemble`] with boot-loader hooks.
pub fn assemble_with(
    cfg: &AssembleConfig,
    hooks: &mut dyn AssembleHooks,
) -> Result<Assembled, AssembleError> {
    let mut laps = crate::progress::Laps::start();
    let (plan, placement) = plan_disk(cfg)?;
    laps.lap("plan");
    let wants_tar = cfg
        .types
        .iter()
        .any(|&t| matches!(t, OutputKind::Tar(_)) || is_layer_output(t));
    if wants_tar && cfg.from.as_os_str() == "-" {
        return Err(AssembleError::TarFromStdin);
    }
    let epoch = epoch_now(cfg.source_date_epoch);
    // Every output appears together when the last is complete, or none.
    let set = crate::output::set::begin();
    let disk = RawDisk::create(cfg, &placement)?;
    let writers = open_filesystems(cfg, &plan, &placement, &disk)?;
    let ahead = start_ahead(cfg, &disk.file);
    let mut a = Assembly::new(
        plan,
        writers,
        placement.regions.clone(),
        Timestamp::new(epoch, 0),
        hooks,
    );
    a.place_tree(&cfg.from)?;
    let added = a.add_missing()?;
    laps.lap("tree");
    let Assembly {
        plan,
        writers,
        regions,
        manifests,
        hooks,
        ..
    } = a;
    let finished = finish_filesystems(
        &plan,
        writers,
        &regions,
        &disk.file,
        epoch,
        placement.disk_size,
        &mut laps,
    )?;
    let (disk_size, layout) = write_partition_table(cfg, &plan, &placement, &disk.file, &finished)?;
    laps.lap("partition table");
    // Seam (c).
    let info = disk_info(
        &plan,
        layout.as_ref(),
        &regions,
        disk_size,
        finished.root_uuid,
    );
    hooks
        .after_table(&disk.file, &info)
        .map_err(AssembleError::Hook)?;
    laps.lap("boot code");
    if disk_io(cfg).fsync {
        disk.file
            .sync_all()
            .map_err(io_err("syncing the disk image"))?;
    }
    laps.lap("sync");
    let converted = convert_outputs(cfg, &plan, &disk.file, &added, ahead, &mut laps)?;
    write_glance(cfg, &disk.file)?;
    let outs = name_raw_disk(cfg, disk, converted)?;
    write_side_files(cfg, &outs, &manifests)?;
    set.commit()
        .map_err(io_err(format!("naming the outputs {}", list(&outs))))?;
    laps.lap("glance, checksums, naming");
    crate::say!(
        "dibr assemble: disk {} ({}; block-device config {}): {}",
        crate::units::human(disk_size),
        match layout.as_ref().map(|l| l.kind) {
            Some(TableKind::Gpt) => "GPT",
            Some(TableKind::Mbr) => "MBR",
            None => "no partition table",
        },
        cfg.block_device.origin,
        finished.summary.join(", ")
    );
    crate::say!("dibr assemble: times: {}", laps.line());
    Ok(Assembled {
        outputs: outs,
        root_growth_ceiling: finished.root_ceiling,
    })
}

/// How the disk image is written. When raw is not an output the image is
/// a scratch file the converters read straight back: no fsync and no
/// writeback hints, so qcow2/vhd/vmdk read it from the page cache instead
/// of waiting for the disk to take it and give it back (issue 18: the raw
/// was fsynced, dropped from the cache, then re-read).
fn disk_io(cfg: &AssembleConfig) -> ext4::IoOptions {
    let raw_out = cfg.types.contains(&OutputKind::Disk(DiskType::Raw));
    ext4::IoOptions {
        fsync: cfg.settings.ext4_io.fsync && raw_out,
        ..cfg.settings.ext4_io
    }
}

fn plan_err(origin: &str) -> impl Fn(PlanError) -> AssembleError + '_ {
    move |source| AssembleError::Plan {
        origin: origin.to_string(),
        source: Box::new(source),
    }
}

/// `/etc/fstab` as `dib-block-device writefstab` writes it for this
/// block-device config, without the tree: the build writes it into the
/// tree before finalise.d, as disk-image-create does, so that the hooks
/// there (the initramfs's fsck hook) see the image's real fstab.
pub fn fstab_for(
    block_device: &BlockDeviceConfig,
    root_params: &RootParams,
    block_size: Option<&str>,
) -> Result<String, AssembleError> {
    Ok(plan_for(block_device, root_params, block_size)?.fstab())
}

/// The root filesystem's label under this config: what DIB's
/// `dib-block-device getval root-label` prints and disk-image-create
/// exports as `DIB_ROOT_LABEL` before the first hook (the bootloader
/// element's GRUB searches for it; `block-device-efi-lvm` says
/// `img-rootfs`). None when the config has no filesystem.
pub fn root_label_for(
    block_device: &BlockDeviceConfig,
    root_params: &RootParams,
) -> Result<Option<String>, AssembleError> {
    Ok(root_fs_for(block_device, root_params)?.map(|(label, _)| label))
}

/// The root filesystem's label and type (`ext4`, `xfs`), as
/// disk-image-create exports them for the hooks (`DIB_ROOT_LABEL`,
/// `DIB_ROOT_FSTYPE` from `getval root-label` / `root-fstype`).
pub fn root_fs_for(
    block_device: &BlockDeviceConfig,
    root_params: &RootParams,
) -> Result<Option<(String, String)>, AssembleError> {
    let plan = plan_for(block_device, root_params, None)?;
    Ok(plan
        .filesystems
        .get(plan.root())
        .map(|f| (f.label.clone(), f.type_name.clone())))
}

fn plan_for(
    block_device: &BlockDeviceConfig,
    root_params: &RootParams,
    block_size: Option<&str>,
) -> Result<Plan, AssembleError> {
    let origin = &block_device.origin;
    let graph = config::load_with_params(&block_device.text, root_params).map_err(|source| {
        AssembleError::Config {
            origin: origin.clone(),
            source,
        }
    })?;
    Plan::new(graph, block_size).map_err(plan_err(origin))
}

/// The block-device config, parsed and checked, as a [`Plan`] placed on
/// the disk ([`Plan::place`]).
fn plan_disk(cfg: &AssembleConfig) -> Result<(Plan, Placement), AssembleError> {
    let origin = &cfg.block_device.origin;
    let graph =
        config::load_with_params(&cfg.block_device.text, &cfg.root_params).map_err(|source| {
            AssembleError::Config {
                origin: origin.clone(),
                source,
            }
        })?;
    let plan = Plan::new(graph, cfg.settings.block_size.as_deref()).map_err(plan_err(origin))?;
    let placement = plan.place(cfg.image_size).map_err(plan_err(origin))?;
    Ok((plan, placement))
}

/// The raw disk, the working file: it gets its name only if asked for.
struct RawDisk {
    raw: AtomicFile,
    path: PathBuf,
    /// A descriptor of the unnamed file, for the writers and conversions.
    file: File,
}

impl RawDisk {
    fn create(cfg: &AssembleConfig, placement: &Placement) -> Result<RawDisk, AssembleError> {
        let path = output_path(&cfg.image_name, OutputKind::Disk(DiskType::Raw));
        let raw =
            AtomicFile::create(&path).map_err(io_err(format!("creating {}", path.display())))?;
        let file: File = raw
            .file()
            .try_clone()
            .map_err(io_err("duplicating the image file"))?;
        if let Some(d) = placement.disk_size {
            file.set_len(d).map_err(io_err("sizing the disk image"))?;
        }
        Ok(RawDisk { raw, path, file })
    }
}

/// One writer per filesystem: ext4 written in place at its partition's
/// offset, vfat collected in memory (an ESP is small).
fn open_filesystems(
    cfg: &AssembleConfig,
    plan: &Plan,
    placement: &Placement,
    disk: &RawDisk,
) -> Result<Vec<Writer>, AssembleError> {
    let root_idx = plan.root();
    let mut writers = Vec::new();
    for (i, f) in plan.filesystems.iter().enumerate() {
        let region = &placement.regions[i];
        writers.push(match f.fstype {
            FsType::Ext4 => {
                let mut label = [0u8; 16];
                let lb = f.label.as_bytes();
                label[..lb.len().min(16)].copy_from_slice(&lb[..lb.len().min(16)]);
                let opts = ext4_options(cfg, label, f.uuid, region.size, i == root_idx);
                let dup = disk
                    .file
                    .try_clone()
                    .map_err(io_err("duplicating the image file"))?;
                let mut b = Builder::new_at(dup, disk.path.clone(), opts, region.offset).map_err(
                    |source| AssembleError::Ext4 {
                        node: f.node.clone(),
                        mount: f
                            .mount
                            .as_ref()
                            .map(|m| m.point.clone())
                            .unwrap_or_default(),
                        source: Box::new(source),
                    },
                )?;
                b.set_io(disk_io(cfg));
                Writer::Ext4(Box::new(b))
            }
            FsType::Xfs => {
                let dup = disk
                    .file
                    .try_clone()
                    .map_err(io_err("duplicating the image file"))?;
                xfs_fs::open(f, region, dup, &disk.path, cfg.source_date_epoch)?
            }
            FsType::Vfat => Writer::Vfat(Vec::new(), 0),
        });
    }
    Ok(writers)
}

/// The ext4 writer's options for one filesystem: the root one gets what
/// [`RootFsOptions`] asks for, the others (/boot, /var …) a 16 TiB
/// ceiling and mke2fs's defaults, as DIB passes MKFS_OPTS to the root
/// filesystem only (`root-fs-opts`).
fn ext4_options(
    cfg: &AssembleConfig,
    label: [u8; 16],
    uuid: Option<[u8; 16]>,
    size: Option<u64>,
    root: bool,
) -> Options {
    let r = &cfg.root_fs;
    let defaults = RootFsOptions::default();
    let o = if root { r } else { &defaults };
    Options {
        label,
        uuid,
        size_blocks: size.map(|s| s / BLOCK_SIZE),
        extra_blocks: o.extra_bytes.div_ceil(BLOCK_SIZE),
        max_resize_bytes: if root {
            r.max_resize_bytes
        } else {
            r.max_resize_bytes.min(SMALL_FS_MAX_RESIZE)
        },
        fit_ceiling: o.fit_ceiling,
        density: o.density,
        reserved_per_mille: o.reserved_per_mille,
        journal_blocks: o.journal_blocks,
        source_date_epoch: cfg.source_date_epoch,
    }
}

/// The line every build with an ext4 root prints: its virtual size, the
/// growth ceiling and the option that trades one for the other (a 1 PiB
/// ceiling allows 496 inodes per 128 MiB group, so a tree of many small
/// files gets many sparse groups: see `ext4/groups.rs`).
fn ceiling_line(s: &ext4::Summary) -> String {
    use crate::units::human;
    let size = human(s.blocks_count * BLOCK_SIZE);
    let used = human((s.blocks_count - s.free_blocks) * BLOCK_SIZE);
    let ceiling = human(s.growth_ceiling_bytes);
    let head = format!(
        "root ext4 {size} virtual ({used} used, {} groups of {} inodes)",
        s.groups, s.inodes_per_group
    );
    match s.ceiling_lowered_from {
        Some(from) => format!(
            "{head}; growth ceiling lowered from {} to {ceiling} to fit the image size (a larger --image-size keeps more of it)",
            human(from)
        ),
        None => format!(
            "{head}, can grow online to {ceiling}; a lower --max-online-resize packs the inodes into fewer groups: a smaller virtual size"
        ),
    }
}

/// What to do when a filesystem of a fixed size cannot hold the tree:
/// with a whole-disk size, the smallest `--image-size` that holds it
/// (the other partitions and the table keep their sizes).
fn too_small_hint(
    detail: &str,
    needed: u64,
    exact: bool,
    region: Option<u64>,
    disk_size: Option<u64>,
) -> String {
    let at_least = if exact { "" } else { "at least " };
    match (region, disk_size) {
        (Some(r), Some(d)) if d >= r => {
            // The other partitions and the table keep their sizes: the
            // root grows by exactly what the disk grows (1 MiB aligned).
            let smallest = (d - r + needed).div_ceil(MIB) * MIB;
            let what = if exact {
                "the smallest --image-size that holds it is"
            } else {
                "pass an --image-size of at least"
            };
            format!(
                " ({detail}): it needs {at_least}{needed} bytes; {what} {}M ({})",
                smallest / MIB,
                crate::units::human(smallest)
            )
        }
        _ => format!(
            " ({detail}): it needs {at_least}{needed} bytes; enlarge the partition in the block-device config"
        ),
    }
}

/// What finishing the filesystems leaves for the partition table and the
/// summary line.
struct Finished {
    root_uuid: [u8; 16],
    /// How far the root ext4 can grow online.
    root_ceiling: Option<u64>,
    /// Bytes the filesystem without a fixed size ended up with.
    grow_need: Option<u64>,
    /// One part of the summary line per filesystem.
    summary: Vec<String>,
}

/// ext4: metadata, journal and superblocks; vfat: the whole FAT32 volume.
/// Each is a lap of its own (`mkfs ext4 /`, `mkfs vfat /boot/efi`).
fn finish_filesystems(
    plan: &Plan,
    writers: Vec<Writer>,
    regions: &[Region],
    file: &File,
    epoch: i64,
    disk_size: Option<u64>,
    laps: &mut crate::progress::Laps,
) -> Result<Finished, AssembleError> {
    let root_idx = plan.root();
    let mut root_uuid = [0u8; 16];
    let mut root_ceiling = None;
    let mut grow_need = None;
    let mut summary_line = Vec::new();
    for (i, w) in writers.into_iter().enumerate() {
        let f = &plan.filesystems[i];
        let mount = f
            .mount
            .as_ref()
            .map(|m| m.point.clone())
            .unwrap_or_default();
        match w {
            Writer::Ext4(b) => {
                let s = b.finish().map_err(|source| match source {
                    ext4::Error::DoesNotFit {
                        needed_bytes,
                        exact,
                        detail,
                        ..
                    } => AssembleError::DoesNotFit {
                        needed: needed_bytes,
                        node: f.node.clone(),
                        mount: mount.clone(),
                        size: regions[i].size.unwrap_or(0),
                        hint: too_small_hint(
                            &detail,
                            needed_bytes,
                            exact,
                            regions[i].size,
                            disk_size,
                        ),
                    },
                    source => AssembleError::Ext4 {
                        node: f.node.clone(),
                        mount: mount.clone(),
                        source: Box::new(source),
                    },
                })?;
                if i == root_idx {
                    root_uuid = s.uuid;
                    root_ceiling = Some(s.growth_ceiling_bytes);
                    crate::say!("dibr: {}", ceiling_line(&s));
                }
                let bytes = s.blocks_count * BLOCK_SIZE;
                if regions[i].size.is_none() {
                    grow_need = Some(bytes);
                }
                summary_line.push(format!(
                    "{} ext4 '{}' {} ({} used)",
                    mount,
                    f.label,
                    crate::units::human(bytes),
                    crate::units::human((s.blocks_count - s.free_blocks) * BLOCK_SIZE)
                ));
                laps.lap(format!("mkfs ext4 {mount}"));
            }
            Writer::Xfs(b) => {
                let (uuid, line) = xfs_fs::finish(f, &regions[i], b)?;
                if i == root_idx {
                    root_uuid = uuid;
                }
                summary_line.push(line);
            }
            Writer::Vfat(list, bytes) => {
                let size = regions[i].size.unwrap_or(0);
                let entries: Vec<FatEntry> = list
                    .iter()
                    .map(|(p, d)| match d {
                        None => FatEntry::dir(p),
                        Some(b) => FatEntry::bytes(p, b),
                    })
                    .collect();
                let fo = FatOptions {
                    label: f.label.clone(),
                    volume_id_seed: fat_seed(epoch, &f.label),
                    timestamp: epoch,
                };
                fat::write_fat32(file, regions[i].offset, size, &entries, &fo).map_err(
                    |source| AssembleError::Fat {
                        node: f.node.clone(),
                        mount: mount.clone(),
                        source,
                    },
                )?;
                summary_line.push(format!(
                    "{} vfat '{}' {} ({} files)",
                    mount,
                    f.label,
                    crate::units::human(size),
                    crate::units::human(bytes)
                ));
                laps.lap(format!("mkfs vfat {mount}"));
            }
        }
    }
    Ok(Finished {
        root_uuid,
        root_ceiling,
        grow_need,
        summary: summary_line,
    })
}

/// Size the disk (after the tree when it has no fixed size) and write the
/// partition table; returns the disk size and the layout written.
fn write_partition_table(
    cfg: &AssembleConfig,
    plan: &Plan,
    placement: &Placement,
    file: &File,
    finished: &Finished,
) -> Result<(u64, Option<layout::Layout>), AssembleError> {
    let (disk_size, layout) = match placement.disk_size {
        Some(d) => (d, placement.layout.clone()),
        None => {
            let need = finished.grow_need.unwrap_or(MIB).div_ceil(MIB) * MIB;
            plan.size_disk(placement, need)
                .map_err(plan_err(&cfg.block_device.origin))?
        }
    };
    file.set_len(disk_size)
        .map_err(io_err("sizing the disk image"))?;
    let guids = match cfg.source_date_epoch {
        // Same inputs, same disk, whatever the output is called.
        Some(s) => GuidSource::Seed(s.to_le_bytes().to_vec()),
        None => GuidSource::Random,
    };
    if let Some(l) = &layout {
        let mut w = file
            .try_clone()
            .map_err(io_err("duplicating the image file"))?;
        layout::write(&mut w, l, &guids)?;
        write_volume_groups(cfg, placement, l, file)?;
    }
    Ok((disk_size, layout))
}

/// The LVM physical volumes: label, metadata area and VG text at the
/// start of each PV's partition (the LVs' filesystems are already written
/// at their offsets). UUIDs derive from SOURCE_DATE_EPOCH when it is set.
fn write_volume_groups(
    cfg: &AssembleConfig,
    placement: &Placement,
    l: &layout::Layout,
    file: &File,
) -> Result<(), AssembleError> {
    let seed = cfg.source_date_epoch.map(|s| s.to_le_bytes());
    let id = |what: String| -> Result<lvm::LvmId, AssembleError> {
        match &seed {
            Some(s) => Ok(lvm::LvmId::derived(s, &what)),
            None => lvm::LvmId::random().map_err(io_err("reading /dev/urandom for an LVM UUID")),
        }
    };
    for vg in &placement.vgs {
        let p = &l.partitions[vg.partition];
        if p.size != vg.pv_size {
            return Err(plan_err(&cfg.block_device.origin)(PlanError::Moved {
                partition: p.name.clone(),
                before: vg.pv_size,
                after: p.size,
            }));
        }
        let mut lvs = Vec::new();
        for lv in &vg.lvs {
            lvs.push(lvm::Lv {
                id: id(format!("lv {}/{}", vg.name, lv.name))?,
                ..lv.clone()
            });
        }
        let v = lvm::Vg {
            name: vg.name.clone(),
            id: id(format!("vg {}", vg.name))?,
            pv_id: id(format!("pv {}", vg.name))?,
            pv_size: vg.pv_size,
            pv_device: format!("/dev/mapper/loop0p{}", p.number),
            lvs,
            time: epoch_now(cfg.source_date_epoch),
            host: "dibr".into(),
        };
        v.write(file, p.start).map_err(AssembleError::Lvm)?;
    }
    Ok(())
}

/// A path that opens the (possibly unnamed, `O_TMPFILE`) raw disk again:
/// its `/proc/self/fd` entry. Converters and readers take paths.
fn fd_path(file: &File) -> PathBuf {
    use std::os::fd::AsRawFd;
    PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()))
}

/// The qcow2 options `-u` and `--qemu-img-options` ask for.
fn qcow2_options(cfg: &AssembleConfig) -> Qcow2Options {
    Qcow2Options {
        compress: !cfg.uncompressed,
        compat: cfg.qcow2.compat,
        compression: cfg.qcow2.compression,
    }
}

/// Starts compressing the qcow2's clusters on the core the tree's writing
/// leaves idle (`qcow2::ahead`), when a compressed qcow2 is asked for. It
/// reads the disk through a fresh open of it; when that fails there is no
/// head start, and the same output.
fn start_ahead(cfg: &AssembleConfig, file: &File) -> Option<qcow2::ahead::Ahead> {
    let qcow2 = cfg
        .types
        .iter()
        .any(|&t| matches!(t, OutputKind::Disk(DiskType::Qcow2)));
    if !qcow2 || cfg.uncompressed {
        return None;
    }
    let again = File::open(fd_path(file)).ok()?;
    Some(qcow2::ahead::Ahead::start(again, &qcow2_options(cfg)))
}

/// qcow2, vhd, vmdk and tar outputs, a lap each; conversions read the raw
/// disk through its open descriptor (it has no name yet).
fn convert_outputs(
    cfg: &AssembleConfig,
    plan: &Plan,
    file: &File,
    added: &Added,
    mut ahead: Option<qcow2::ahead::Ahead>,
    laps: &mut crate::progress::Laps,
) -> Result<Vec<PathBuf>, AssembleError> {
    let mut outs = Vec::new();
    let raw_fd_path = fd_path(file);
    for &t in &cfg.types {
        let out = output_path(&cfg.image_name, t);
        match t {
            OutputKind::Disk(DiskType::Raw) => continue,
            OutputKind::Disk(DiskType::Qcow2) => {
                let what = if cfg.uncompressed {
                    "writing"
                } else {
                    "compressing"
                };
                let name = out.file_name().unwrap_or(out.as_os_str()).to_string_lossy();
                let phase = crate::progress::Phase::start(&format!("qcow2: {what} {name}"), None);
                let ahead = ahead.take().map(qcow2::ahead::Ahead::finish);
                let stats = qcow2::write_qcow2_ahead(
                    &raw_fd_path,
                    &out,
                    &qcow2_options(cfg),
                    ahead.as_ref(),
                    &|done, total| {
                        if done == 0 {
                            phase.set_total(total);
                        }
                        phase.set_bytes(done);
                    },
                )?;
                phase.done();
                crate::detail!(
                    "dibr assemble: {name}: {} of {} clusters compressed while the disk was written ({} held)",
                    stats.clusters_ahead,
                    stats.clusters_compressed + stats.clusters_raw,
                    ahead.as_ref().map_or(0, |a| a.len()),
                );
            }
            OutputKind::Disk(DiskType::Vhd) => {
                vhd::write_vhd_at(&raw_fd_path, &out, cfg.source_date_epoch)?
            }
            OutputKind::Disk(DiskType::Vmdk) => vmdk::write_vmdk(&raw_fd_path, &out)?,
            OutputKind::Tar(ty) => {
                write_tar_output(cfg, &out, ty, plan, &added.entries, &added.data)?
            }
            OutputKind::Container(_) | OutputKind::Squashfs => {
                write_layer_output(cfg, &out, t, plan, &added.entries, &added.data)?
            }
        }
        laps.lap(format!("output {}", t.ext()));
        outs.push(out);
    }
    Ok(outs)
}

/// The outputs in order: the raw disk first, if it was asked for (it
/// joins the output set now), then the conversions.
fn name_raw_disk(
    cfg: &AssembleConfig,
    disk: RawDisk,
    mut outs: Vec<PathBuf>,
) -> Result<Vec<PathBuf>, AssembleError> {
    if cfg.types.contains(&OutputKind::Disk(DiskType::Raw)) {
        let RawDisk { raw, path, .. } = disk;
        raw.commit()
            .map_err(io_err(format!("naming {}", path.display())))?;
        outs.insert(0, path);
    }
    Ok(outs)
}

fn list(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// `--checksum` side files for every output, and the manifests (`NAME.d/`).
fn write_side_files(
    cfg: &AssembleConfig,
    outs: &[PathBuf],
    manifests: &[ManifestFile],
) -> Result<(), AssembleError> {
    if cfg.checksum {
        for o in outs {
            write_checksum(o)?;
        }
    }
    if !manifests.is_empty() {
        write_manifests(&cfg.image_name, manifests)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::Entry;

    /// A hook sees the entries it asks for, adds files to the ESP and the
    /// root, and gets the disk description after the table is written.
    #[derive(Default)]
    struct Probe {
        kept: Vec<(String, Vec<u8>)>,
        info: Option<DiskInfo>,
    }

    impl AssembleHooks for Probe {
        fn wants(&mut self, e: &Entry) -> bool {
            e.path.starts_with(b"usr/lib/grub/i386-pc/")
        }
        fn keep(&mut self, e: &Entry, data: &[u8]) {
            self.kept.push((e.display_path(), data.to_vec()));
        }
        fn extra_entries(&mut self, plan: &Plan) -> Result<Vec<ExtraEntry>, HookError> {
            assert_eq!(plan.filesystems.len(), 2);
            Ok(vec![
                ExtraEntry {
                    path: "boot/efi/EFI/BOOT/BOOTX64.EFI".into(),
                    mode: 0o644,
                    data: Some(b"loader".to_vec()),
                },
                ExtraEntry {
                    path: "boot/grub/grub.cfg".into(),
                    mode: 0o644,
                    data: Some(b"set timeout=1\n".to_vec()),
                },
            ])
        }
        fn after_table(&mut self, disk: &File, info: &DiskInfo) -> Result<(), HookError> {
            use std::os::unix::fs::FileExt;
            let mut sig = [0u8; 8];
            disk.read_exact_at(&mut sig, info.sector)?;
            assert_eq!(&sig, b"EFI PART", "primary GPT header is written");
            self.info = Some(info.clone());
            Ok(())
        }
    }

    #[test]
    fn hooks_see_entries_add_files_and_get_disk_info() {
        let t = tempfile::tempdir().unwrap();
        let tree = t.path().join("tree");
        std::fs::create_dir_all(tree.join("usr/lib/grub/i386-pc")).unwrap();
        std::fs::write(tree.join("usr/lib/grub/i386-pc/boot.img"), [7u8; 512]).unwrap();
        std::fs::write(tree.join("etc-hostname"), b"x\n").unwrap();
        std::fs::create_dir_all(tree.join("boot/efi/EFI/BOOT")).unwrap();
        std::fs::write(tree.join("boot/efi/EFI/BOOT/BOOTX64.EFI"), b"old").unwrap();
        let cfg = AssembleConfig {
            from: tree,
            image_name: t.path().join("disk"),
            types: vec![OutputKind::Disk(DiskType::Raw)],
            block_device: BlockDeviceConfig::layout("efi").unwrap(),
            root_params: RootParams::default(),
            image_size: None,
            uncompressed: false,
            qcow2: Default::default(),
            root_fs: RootFsOptions::default(),
            source_date_epoch: Some(1_700_000_000),
            checksum: false,
            elements: Vec::new(),
            settings: AssembleSettings::default(),
            image_reference: None,
        };
        let mut p = Probe::default();
        let outs = assemble_with(&cfg, &mut p).unwrap().outputs;
        assert_eq!(outs, [t.path().join("disk.raw")]);
        assert_eq!(
            p.kept,
            [("usr/lib/grub/i386-pc/boot.img".to_string(), vec![7u8; 512])]
        );
        let info = p.info.unwrap();
        assert_eq!(info.table, Some(TableKind::Gpt));
        assert_eq!(info.sector, 512);
        assert_eq!(info.bios_boot, Some((1_128_448, 16_384)));
        assert_eq!(info.esp, Some((2048, 1_126_400)));
        assert_eq!(info.first_partition_lba, Some(2048));
        assert_eq!(info.root_partition, Some(3));
        assert_eq!(info.root_offset, 1_144_832 * 512);
        assert_eq!(info.root_label, "cloudimg-rootfs");
        assert_ne!(info.root_uuid, [0u8; 16]);
        assert_eq!(info.root_uuid_string().len(), 36);
    }
}
