//! From a validated block-device graph (`crate::disk::config`) to what the
//! assembler writes: which filesystems exist, where each one lives (a
//! partition of the layout, or the whole image), where it is mounted and
//! what `/etc/fstab` says about it — and the sizing rules.
//!
//! DIB's plugins and what dibr does with them (`diskimage_builder/
//! block_device/`):
//! - `local_loop` (level0/localloop.py): the one disk image, `image0.raw`;
//!   its `size` wins over `--image-size`, `block_size` (or
//!   `DIB_BLOCK_SIZE`) is the sector size.
//! - `partitioning` (level1): MBR incl. logical partitions, or GPT, laid
//!   out by [`crate::disk::layout::compute`] with DIB's size arithmetic.
//! - `mkfs` (level2/mkfs.py): ext4 and xfs (dibr's writers) and vfat
//!   (dibr's FAT32 writer); anything else is refused naming the node. An
//!   xfs filesystem needs a fixed size (its partition's or LV's, or the
//!   image size): dibr's XFS writer does not grow with the tree. `opts` are mkfs
//!   command-line options and are refused too (dibr's writers take none).
//! - `mount` (level3/mount.py): splits the tree, longest mount point wins.
//! - `fstab` (level4/fstab.py): one line per mounted filesystem in mount
//!   order, as `cmd_writefstab` writes it.
//! - `lvm` (level1/lvm.py): one PV per VG on a partition, linear LVs
//!   ([`super::lvm_plan`]); a filesystem on an LV is written at the LV's
//!   offset inside its partition, and the PV header by [`crate::lvm`].

use serde_json::Value;

use crate::disk::config::{fs_label, Entry, Graph, Plugin};
use crate::disk::layout::{self, Layout, LayoutError};
use crate::lvm;

use super::lvm_plan::{self, VgLayout, VgPlan};
use crate::tree::normalize_path;
use crate::uuid::Uuid;

const MIB: u64 = 1 << 20;

/// Disk size used to place partitions before the real size is known
/// (largest an MBR can describe): with every partition before the last of
/// an absolute size, starts do not depend on the disk size.
const PROVISIONAL_DISK: u64 = (1 << 41) - 2 * MIB;

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Layout(#[from] LayoutError),
    #[error("mkfs node '{node}': filesystem type '{fs}' is not supported by dibr's userspace writers; use ext4 or xfs (or vfat for an EFI system partition)")]
    FsType { node: String, fs: String },
    #[error("mkfs node '{node}': 'opts: {opts}' are mkfs command-line options, which dibr's own ext4/vfat writers cannot take; remove 'opts' from the block-device config")]
    MkfsOpts { node: String, opts: String },
    #[error("mkfs node '{node}': 'uuid: {uuid}' is not a UUID (expected 8-4-4-4-12 hex digits)")]
    BadUuid { node: String, uuid: String },
    #[error("{plugin} node '{node}' is based on '{base}', which is {what}; {fix}")]
    BadBase {
        plugin: &'static str,
        node: String,
        base: String,
        what: String,
        fix: &'static str,
    },
    #[error("partition '{partition}' has two filesystems ('{first}' and '{second}'); give each mkfs node its own partition")]
    TwoFilesystems {
        partition: String,
        first: String,
        second: String,
    },
    #[error("the block-device config has {0} local_loop nodes; dibr writes one disk image (image0): remove the others")]
    ManyImages(usize),
    #[error("the block-device config has no local_loop node: add '- local_loop: {{name: image0}}' as DIB's configs do")]
    NoImage,
    #[error("mount node '{node}': mount point '{point}' is {why}")]
    BadMountPoint {
        node: String,
        point: String,
        why: String,
    },
    #[error("no filesystem is mounted at / in the block-device config: the root tree has nowhere to go (add a mount with mount_point: / to the root mkfs)")]
    NoRoot,
    #[error("partition '{partition}' has the relative size '{size}' but is not the last partition: without an image size its start is unknown until the disk is. Pass --image-size (or DIB_IMAGE_SIZE), or give it an absolute size such as 2GiB")]
    NeedImageSize { partition: String, size: String },
    #[error("vfat filesystem '{node}' would have to grow with the tree (it is on {place}); dibr sizes FAT only from a fixed size: give its partition an absolute size or pass --image-size")]
    GrowingVfat { node: String, place: String },
    #[error("xfs filesystem '{node}' would have to grow with the tree (it is on {place}); dibr writes XFS only at a fixed size: give its partition or LV an absolute size, or pass --image-size (DIB_IMAGE_SIZE)")]
    GrowingXfs { node: String, place: String },
    #[error("partition '{partition}' (filesystem '{node}') starts at byte {start}, not on a 4 KiB boundary as dibr's ext4 and xfs writers need; use the default 1 MiB 'align'")]
    Misaligned {
        partition: String,
        node: String,
        start: u64,
    },
    #[error("internal: partition '{partition}' moved from byte {before} to {after} when the disk was sized")]
    Moved {
        partition: String,
        before: u64,
        after: u64,
    },
    #[error("lvm node '{node}': {why}")]
    Lvm { node: String, why: String },
    #[error("the growing filesystem needs {need} bytes; no disk size up to {max} bytes gives its partition that much with this layout")]
    CannotGrow { need: u64, max: u64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsType {
    Ext4,
    Xfs,
    Vfat,
}

/// Where a filesystem lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Index into the layout's partitions.
    Partition(usize),
    /// The whole image, no partition table (DIB's fallback config).
    Whole,
    /// A logical volume: index of the VG in `Plan::lvm`, of the LV in it.
    Lv { vg: usize, lv: usize },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FstabPlan {
    pub options: String,
    pub dump_freq: String,
    pub passno: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountPlan {
    pub node: String,
    /// As configured (`/boot/efi`).
    pub point: String,
    /// Normalised, relative to the tree root: `""` for `/`, `boot/efi`.
    pub rel: Vec<u8>,
    pub fstab: Option<FstabPlan>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsPlan {
    /// The mkfs node's name (`mkfs_root`, `mkfs_ESP`).
    pub node: String,
    pub fstype: FsType,
    /// The type as configured, for fstab (`ext4`, `vfat`).
    pub type_name: String,
    /// Label as DIB's mkfs.py makes it (upper-cased for vfat).
    pub label: String,
    /// `uuid:` from the config (ext4 and xfs; DIB ignores it for vfat).
    pub uuid: Option<[u8; 16]>,
    pub target: Target,
    pub mount: Option<MountPlan>,
}

/// Everything the assembler needs from the config.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub graph: Graph,
    /// The local_loop's own `size` (wins over --image-size, as in DIB).
    pub loop_size: Option<u64>,
    pub sector: u64,
    pub partitioned: bool,
    pub filesystems: Vec<FsPlan>,
    /// Indices into `filesystems` in DIB's mount order (sorted mount points).
    pub mount_order: Vec<usize>,
    /// The `lvm` entries' volume groups.
    pub lvm: Vec<VgPlan>,
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl Plan {
    /// Checks the graph against what dibr can write and collects the plan;
    /// `block_size` (`DIB_BLOCK_SIZE`) wins over the `local_loop` node's.
    pub fn new(graph: Graph, block_size: Option<&str>) -> Result<Plan, PlanError> {
        let image = the_image(&graph)?;
        let image_name = image.name().unwrap_or("image0").to_string();
        let loop_size = match image.values.get("size") {
            Some(v) => Some(layout::parse_abs_size(&text(v))?),
            None => None,
        };
        let sector = match block_size
            .map(str::to_string)
            .or_else(|| image.values.get("block_size").map(text))
        {
            Some(b) => layout::parse_abs_size(&b)?,
            None => 512,
        };
        let parts = partition_names(&graph, &image_name)?;
        let lvm = lvm_plan::plan_lvm(&graph, parts.as_deref())?;
        let mut filesystems = plan_filesystems(&graph, &image_name, parts.as_deref(), &lvm)?;
        attach_mounts(&graph, &mut filesystems)?;
        attach_fstabs(&graph, &mut filesystems)?;
        let mount_order = mount_order(&filesystems);
        if !filesystems
            .iter()
            .any(|f| f.mount.as_ref().is_some_and(|m| m.rel.is_empty()))
        {
            return Err(PlanError::NoRoot);
        }
        Ok(Plan {
            graph,
            loop_size,
            sector,
            partitioned: parts.is_some(),
            filesystems,
            mount_order,
            lvm,
        })
    }

    /// Index of the filesystem mounted at `/`.
    pub fn root(&self) -> usize {
        self.filesystems
            .iter()
            .position(|f| f.mount.as_ref().is_some_and(|m| m.rel.is_empty()))
            .unwrap_or(0)
    }

    /// The filesystem an entry at `path` (normalised, relative) belongs to:
    /// the longest mount point that is `path` or a parent of it.
    pub fn route(&self, path: &[u8]) -> usize {
        let mut best = (self.root(), 0usize);
        for (i, f) in self.filesystems.iter().enumerate() {
            let Some(m) = &f.mount else { continue };
            let r = &m.rel;
            if r.is_empty() {
                continue;
            }
            let under = path == r.as_slice()
                || (path.len() > r.len() && path.starts_with(r) && path[r.len()] == b'/');
            if under && r.len() > best.1 {
                best = (i, r.len());
            }
        }
        best.0
    }

    /// `/etc/fstab` as `dib-block-device writefstab` writes it
    /// (`blockdevice.py:cmd_writefstab`): one line per mounted filesystem
    /// with an fstab node, in mount order, `LABEL=<label> <mount point>
    /// <type> <options> <dump-freq> <fsck-passno>`. mkfs.py always sets a
    /// label (the node name when none is configured), so DIB always writes
    /// `LABEL=` — for vfat the upper-cased label it passed to `mkfs -n`.
    pub fn fstab(&self) -> String {
        let mut s = String::new();
        for &i in &self.mount_order {
            let f = &self.filesystems[i];
            let Some(m) = &f.mount else { continue };
            let Some(t) = &m.fstab else { continue };
            s.push_str(&format!(
                "LABEL={} {} {} {} {} {}\n",
                f.label, m.point, f.type_name, t.options, t.dump_freq, t.passno
            ));
        }
        s
    }
}

/// Where each filesystem is written and how large it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Region {
    pub offset: u64,
    /// Fixed size in bytes; None: just large enough (the filesystem that
    /// grows with the tree, then the disk is sized after it).
    pub size: Option<u64>,
}

/// Placement before the tree is read.
#[derive(Debug, Clone, PartialEq)]
pub struct Placement {
    /// The layout for the final disk size, or (growing case) a provisional
    /// one whose starts are final.
    pub layout: Option<Layout>,
    /// Known disk size (an image size was given).
    pub disk_size: Option<u64>,
    /// Per filesystem, same order as `Plan::filesystems`.
    pub regions: Vec<Region>,
    /// The volume groups, placed on their partitions.
    pub vgs: Vec<VgLayout>,
}

/// DIB's image size rounding: up to a multiple of 64 KiB (qemu-img bug
/// LP#1180021, `disk-image-create`).
pub fn round_image_size(bytes: u64) -> u64 {
    bytes.div_ceil(64 << 10) * (64 << 10)
}

/// Every partition of the config's partitioning entries, in order.
fn partitions(plan: &Plan) -> impl Iterator<Item = &Value> {
    plan.graph
        .entries
        .iter()
        .filter(|e| e.plugin == Plugin::Partitioning)
        .flat_map(|e| {
            e.values
                .get("partitions")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
        })
}

fn size_spec(plan: &Plan, idx: usize) -> Option<String> {
    partitions(plan)
        .nth(idx)
        .and_then(|p| p.get("size").map(text))
}

impl Plan {
    /// Places the filesystems. With `image_size` (or the local_loop's own
    /// size) the layout is DIB's for that disk and every filesystem fills
    /// its partition. Without it, partitions with absolute sizes keep them,
    /// the last partition (if relative, e.g. `100%`) grows with its
    /// filesystem; a relative size anywhere else needs an image size.
    pub fn place(&self, image_size: Option<u64>) -> Result<Placement, PlanError> {
        let disk_size = self.loop_size.or(image_size);
        if !self.partitioned {
            let regions = self
                .filesystems
                .iter()
                .map(|_| Region {
                    offset: 0,
                    size: disk_size,
                })
                .collect();
            for f in &self.filesystems {
                if disk_size.is_none() && f.fstype == FsType::Vfat {
                    return Err(PlanError::GrowingVfat {
                        node: f.node.clone(),
                        place: "the whole disk".into(),
                    });
                }
                if disk_size.is_none() && f.fstype == FsType::Xfs {
                    return Err(PlanError::GrowingXfs {
                        node: f.node.clone(),
                        place: "the whole disk".into(),
                    });
                }
            }
            return Ok(Placement {
                layout: None,
                disk_size,
                regions,
                vgs: Vec::new(),
            });
        }
        let layout = match disk_size {
            Some(d) => layout::compute(&self.graph, d, self.sector)?,
            None => {
                let n = partitions(self).count();
                for i in 0..n.saturating_sub(1) {
                    let spec = size_spec(self, i).unwrap_or_default();
                    if spec.trim_end().ends_with('%') {
                        let l = layout::compute(&self.graph, PROVISIONAL_DISK, self.sector)?;
                        let name = l
                            .and_then(|l| l.partitions.get(i).map(|p| p.name.clone()))
                            .unwrap_or_default();
                        return Err(PlanError::NeedImageSize {
                            partition: name,
                            size: spec,
                        });
                    }
                }
                layout::compute(&self.graph, PROVISIONAL_DISK, self.sector)?
            }
        };
        let Some(layout) = layout else {
            return Err(PlanError::NoImage);
        };
        if disk_size.is_none() {
            self.pv_sizes_fixed(&layout)?;
        }
        let vgs = lvm_plan::resolve(&self.lvm, &layout)?;
        let regions = self.regions_in(&layout, disk_size.is_none(), &vgs)?;
        Ok(Placement {
            layout: Some(layout),
            disk_size,
            regions,
            vgs,
        })
    }

    /// A PV's partition must have its size before the tree is read: LVs
    /// are sized from it.
    fn pv_sizes_fixed(&self, layout: &Layout) -> Result<(), PlanError> {
        for vg in &self.lvm {
            let spec = size_spec(self, vg.partition).unwrap_or_default();
            if spec.trim_end().ends_with('%') {
                return Err(PlanError::Lvm {
                    node: vg.name.clone(),
                    why: format!("its PV is on partition '{}' of the relative size '{spec}', and the LVs are sized from it: pass --image-size (or DIB_IMAGE_SIZE), or give the partition an absolute size such as 40G", layout.partitions[vg.partition].name),
                });
            }
        }
        Ok(())
    }

    /// Each filesystem's region in a partitioned layout: its partition, or
    /// its LV inside the PV's partition. `growing`: no disk size is known,
    /// so a relative last partition grows with its filesystem.
    fn regions_in(
        &self,
        layout: &Layout,
        growing: bool,
        vgs: &[VgLayout],
    ) -> Result<Vec<Region>, PlanError> {
        let last = layout.partitions.len().saturating_sub(1);
        let last_grows =
            growing && size_spec(self, last).is_some_and(|s| s.trim_end().ends_with('%'));
        let mut regions = Vec::new();
        for f in &self.filesystems {
            let i = match f.target {
                Target::Partition(i) => i,
                Target::Lv { vg, lv } => {
                    let (v, l) = (&vgs[vg], &vgs[vg].lvs[lv]);
                    regions.push(Region {
                        offset: layout.partitions[v.partition].start + lvm::Vg::lv_offset(l),
                        size: Some(l.extents * lvm::EXTENT_BYTES),
                    });
                    continue;
                }
                Target::Whole => unreachable!("partitioned plans have no whole-disk targets"),
            };
            let p = &layout.partitions[i];
            if f.fstype != FsType::Vfat && !p.start.is_multiple_of(4096) {
                return Err(PlanError::Misaligned {
                    partition: p.name.clone(),
                    node: f.node.clone(),
                    start: p.start,
                });
            }
            let grows = last_grows && i == last;
            if grows && f.fstype == FsType::Vfat {
                return Err(PlanError::GrowingVfat {
                    node: f.node.clone(),
                    place: format!("partition '{}', which takes the rest of the disk", p.name),
                });
            }
            if grows && f.fstype == FsType::Xfs {
                return Err(PlanError::GrowingXfs {
                    node: f.node.clone(),
                    place: format!("partition '{}', which takes the rest of the disk", p.name),
                });
            }
            regions.push(Region {
                offset: p.start,
                size: (!grows).then_some(p.size),
            });
        }
        Ok(regions)
    }

    /// The growing case: the smallest disk (whole MiB) whose DIB layout
    /// gives the last partition at least `need` bytes, with every start as
    /// provisionally placed. Without a partition table: `need` itself.
    pub fn size_disk(
        &self,
        provisional: &Placement,
        need: u64,
    ) -> Result<(u64, Option<Layout>), PlanError> {
        let Some(prov) = &provisional.layout else {
            return Ok((need, None));
        };
        let last = prov.partitions.len() - 1;
        let start = prov.partitions[last].start;
        let pct: f64 = size_spec(self, last)
            .and_then(|s| s.trim_end().strip_suffix('%').map(|p| p.trim().to_string()))
            .and_then(|p| p.parse().ok())
            .filter(|p: &f64| *p > 0.0)
            .unwrap_or(100.0);
        let spec = size_spec(self, last).unwrap_or_default();
        let relative = spec.trim_end().ends_with('%');
        // An absolute last partition (a PV's, say) keeps its size as
        // configured (DIB checks the unrounded size against disk_free,
        // the disk less 2 MiB): the disk ends 1 MiB after it.
        let (need, slack) = if relative {
            (need, 0)
        } else {
            let asked = layout::parse_abs_size(&spec)?;
            (
                need.max(prov.partitions[last].size),
                asked.max(need) + 2 * MIB,
            )
        };
        let mut disk = (start + need.max(slack.saturating_sub(2 * MIB))).div_ceil(MIB) * MIB
            + if relative { 0 } else { 2 * MIB };
        for _ in 0..64 {
            let l = layout::compute(&self.graph, disk, self.sector)?.ok_or(PlanError::NoImage)?;
            let got = l.partitions[last].size;
            if got >= need {
                for (a, b) in prov.partitions.iter().zip(&l.partitions) {
                    if a.start != b.start {
                        return Err(PlanError::Moved {
                            partition: a.name.clone(),
                            before: a.start,
                            after: b.start,
                        });
                    }
                }
                return Ok((disk, Some(l)));
            }
            let short = need - got.min(need);
            let step = ((short as f64 * 100.0 / pct).ceil() as u64).max(1);
            disk += step.div_ceil(MIB) * MIB;
            if disk > PROVISIONAL_DISK {
                break;
            }
        }
        Err(PlanError::CannotGrow {
            need,
            max: PROVISIONAL_DISK,
        })
    }
}

/// The one `local_loop` node: the disk image.
fn the_image(graph: &Graph) -> Result<&Entry, PlanError> {
    let loops: Vec<_> = graph
        .entries
        .iter()
        .filter(|e| e.plugin == Plugin::LocalLoop)
        .collect();
    match loops.len() {
        0 => Err(PlanError::NoImage),
        1 => Ok(loops[0]),
        n => Err(PlanError::ManyImages(n)),
    }
}

/// Partition names in the layout's order (their index is the partition's
/// in [`Target::Partition`]); None when the disk is not partitioned.
fn partition_names(graph: &Graph, image_name: &str) -> Result<Option<Vec<String>>, PlanError> {
    let mut part_names: Vec<String> = Vec::new();
    let mut partitioned = false;
    for e in graph
        .entries
        .iter()
        .filter(|e| e.plugin == Plugin::Partitioning)
    {
        partitioned = true;
        let base = e.base().unwrap_or("");
        if base != image_name {
            return Err(PlanError::BadBase {
                plugin: "partitioning",
                node: e.name().unwrap_or("").into(),
                base: base.into(),
                what: "not the disk image".into(),
                fix: "partition the local_loop node",
            });
        }
        if let Some(list) = e.values.get("partitions").and_then(Value::as_array) {
            for p in list {
                part_names.push(p.get("name").map(text).unwrap_or_default());
            }
        }
    }
    Ok(partitioned.then_some(part_names))
}

/// What a node name refers to, for messages.
fn kind_of(graph: &Graph, name: &str) -> String {
    match graph.nodes.iter().find(|n| n.name == name) {
        Some(n) => format!("a {} node", n.plugin.key()),
        None => "not a node".into(),
    }
}

/// One [`FsPlan`] per `mkfs` node (level2/mkfs.py): a type dibr writes, no
/// `opts`, on a partition (or the unpartitioned disk) no other filesystem
/// uses.
fn plan_filesystems(
    graph: &Graph,
    image_name: &str,
    parts: Option<&[String]>,
    vgs: &[VgPlan],
) -> Result<Vec<FsPlan>, PlanError> {
    let partitioned = parts.is_some();
    let part_names = parts.unwrap_or_default();
    let mut filesystems: Vec<FsPlan> = Vec::new();
    for e in graph.entries.iter().filter(|e| e.plugin == Plugin::Mkfs) {
        let node = e.name().unwrap_or("").to_string();
        let base = e.base().unwrap_or("").to_string();
        let type_name = e.values.get("type").map(text).unwrap_or_default();
        let fstype = match type_name.as_str() {
            "ext4" => FsType::Ext4,
            "xfs" => FsType::Xfs,
            "vfat" | "fat" => FsType::Vfat,
            _ => {
                return Err(PlanError::FsType {
                    node,
                    fs: type_name,
                })
            }
        };
        if let Some(o) = e.values.get("opts") {
            return Err(PlanError::MkfsOpts {
                node,
                opts: text(o),
            });
        }
        let uuid = match (fstype, e.values.get("uuid")) {
            (FsType::Ext4 | FsType::Xfs, Some(u)) => {
                let s = text(u);
                Some(Uuid::parse(&s).map(Uuid::bytes).ok_or(PlanError::BadUuid {
                    node: node.clone(),
                    uuid: s,
                })?)
            }
            _ => None,
        };
        let lv = vgs.iter().enumerate().find_map(|(v, vg)| {
            vg.lvs
                .iter()
                .position(|l| l.name == base)
                .map(|l| Target::Lv { vg: v, lv: l })
        });
        let pv_part = part_names
            .iter()
            .position(|p| *p == base)
            .filter(|i| vgs.iter().any(|v| v.partition == *i));
        let target = if let Some(t) = lv {
            if let Some(other) = filesystems.iter().find(|f| f.target == t) {
                return Err(PlanError::TwoFilesystems {
                    partition: base,
                    first: other.node.clone(),
                    second: node,
                });
            }
            t
        } else if pv_part.is_some() {
            return Err(PlanError::BadBase {
                plugin: "mkfs",
                node,
                base,
                what: "an LVM physical volume".into(),
                fix: "base the filesystem on one of its logical volumes",
            });
        } else if base == image_name && !partitioned {
            Target::Whole
        } else if let Some(i) = part_names.iter().position(|p| *p == base) {
            if let Some(other) = filesystems
                .iter()
                .find(|f| f.target == Target::Partition(i))
            {
                return Err(PlanError::TwoFilesystems {
                    partition: base,
                    first: other.node.clone(),
                    second: node,
                });
            }
            Target::Partition(i)
        } else {
            return Err(PlanError::BadBase {
                plugin: "mkfs",
                node,
                what: if base == image_name {
                    "the partitioned disk itself".into()
                } else {
                    kind_of(graph, &base)
                },
                base,
                fix: "base a filesystem on a partition (or on the disk when there is no partitioning)",
            });
        };
        filesystems.push(FsPlan {
            label: fs_label(e),
            node,
            fstype,
            type_name,
            uuid,
            target,
            mount: None,
        });
    }
    Ok(filesystems)
}

/// `mount` nodes (level3/mount.py): one absolute mount point per
/// filesystem; swap (`none`) is refused.
fn attach_mounts(graph: &Graph, filesystems: &mut [FsPlan]) -> Result<(), PlanError> {
    for e in graph.entries.iter().filter(|e| e.plugin == Plugin::Mount) {
        let node = e.name().unwrap_or("").to_string();
        let base = e.base().unwrap_or("").to_string();
        let Some(fs) = filesystems.iter_mut().find(|f| f.node == base) else {
            return Err(PlanError::BadBase {
                plugin: "mount",
                what: kind_of(graph, &base),
                node,
                base,
                fix: "mount a mkfs node",
            });
        };
        let point = e.values.get("mount_point").map(text).unwrap_or_default();
        let bad = |why: &str| PlanError::BadMountPoint {
            node: node.clone(),
            point: point.clone(),
            why: why.into(),
        };
        if point == "none" {
            return Err(bad("'none' (swap), and dibr writes no swap areas"));
        }
        if !point.starts_with('/') {
            return Err(bad("not an absolute path"));
        }
        let rel = normalize_path(point.as_bytes()).map_err(|e| bad(&e.to_string()))?;
        if fs.mount.is_some() {
            return Err(bad("a second mount of the same filesystem"));
        }
        fs.mount = Some(MountPlan {
            node,
            point,
            rel,
            fstab: None,
        });
    }
    Ok(())
}

/// `fstab` nodes (level4/fstab.py), with its defaults.
fn attach_fstabs(graph: &Graph, filesystems: &mut [FsPlan]) -> Result<(), PlanError> {
    for e in graph.entries.iter().filter(|e| e.plugin == Plugin::Fstab) {
        let node = e.name().unwrap_or("").to_string();
        let base = e.base().unwrap_or("").to_string();
        let Some(m) = filesystems
            .iter_mut()
            .filter_map(|f| f.mount.as_mut())
            .find(|m| m.node == base)
        else {
            return Err(PlanError::BadBase {
                plugin: "fstab",
                what: kind_of(graph, &base),
                node,
                base,
                fix: "base an fstab node on a mount node",
            });
        };
        // level4/fstab.py defaults.
        m.fstab = Some(FstabPlan {
            options: e
                .values
                .get("options")
                .map(text)
                .unwrap_or_else(|| "defaults".into()),
            dump_freq: e
                .values
                .get("dump-freq")
                .map(text)
                .unwrap_or_else(|| "0".into()),
            passno: e
                .values
                .get("fsck-passno")
                .map(text)
                .unwrap_or_else(|| "2".into()),
        });
    }
    Ok(())
}

/// The mounted filesystems in DIB's mount order: sorted mount point
/// strings (Python str order = bytes).
fn mount_order(filesystems: &[FsPlan]) -> Vec<usize> {
    let mut mount_order: Vec<usize> = (0..filesystems.len())
        .filter(|&i| filesystems[i].mount.is_some())
        .collect();
    // DIB sorts the mount point strings (Python str order = bytes).
    mount_order.sort_by(|&a, &b| {
        let pa = &filesystems[a].mount.as_ref().map(|m| m.point.clone());
        let pb = &filesystems[b].mount.as_ref().map(|m| m.point.clone());
        pa.cmp(pb)
    });
    mount_order
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::config::{load_with_params, RootParams};

    const EFI: &str = include_str!("../../elements/block-device-efi/block-device-default.yaml");
    const GPT: &str = include_str!("../../elements/block-device-gpt/block-device-default.yaml");
    const MBR: &str = include_str!("../../elements/block-device-mbr/block-device-default.yaml");

    fn plan(text: &str) -> Result<Plan, PlanError> {
        Plan::new(
            load_with_params(text, &RootParams::default()).unwrap(),
            None,
        )
    }

    #[test]
    fn shipped_layouts_plan() {
        let p = plan(EFI).unwrap();
        assert_eq!(p.filesystems.len(), 2);
        assert_eq!(
            p.fstab(),
            "LABEL=cloudimg-rootfs / ext4 defaults 0 1\nLABEL=MKFS_ESP /boot/efi vfat defaults 0 2\n"
        );
        assert_eq!(p.route(b"boot/efi/EFI/x"), 0);
        assert_eq!(p.route(b"boot/efi"), 0);
        assert_eq!(p.route(b"boot/efis"), 1);
        assert_eq!(p.route(b"usr/bin"), 1);
        let pl = p.place(None).unwrap();
        assert_eq!(
            pl.regions[0],
            Region {
                offset: MIB,
                size: Some(550 * MIB)
            }
        );
        assert_eq!(
            pl.regions[1],
            Region {
                offset: 559 * MIB,
                size: None
            }
        );
        let (d, l) = p.size_disk(&pl, 100 * MIB + 5).unwrap();
        assert_eq!(d, (559 + 101 + 1) * MIB);
        assert!(l.unwrap().partitions[2].size >= 100 * MIB + 5);
        // With an image size: DIB's layout for that disk, root fills it.
        let pl = p.place(Some(2 << 30)).unwrap();
        assert_eq!(pl.regions[1].size, Some((2048 - 559 - 1) * MIB));

        let p = plan(GPT).unwrap();
        assert_eq!(p.fstab(), "LABEL=cloudimg-rootfs / ext4 defaults 0 1\n");
        let p = plan(MBR).unwrap();
        assert_eq!(p.filesystems[0].type_name, "ext4");
        let pl = p.place(None).unwrap();
        assert_eq!(pl.regions[0].offset, MIB);
        let (d, l) = p.size_disk(&pl, 64 * MIB).unwrap();
        assert!(l.unwrap().partitions[0].size >= 64 * MIB);
        assert!((65 * MIB..=66 * MIB).contains(&d), "{d}");
    }

    #[test]
    fn refusals_name_the_node() {
        let btrfs = EFI.replace("type: ext4", "type: btrfs");
        let e = plan(&btrfs).unwrap_err().to_string();
        assert!(
            e.contains("mkfs_root") && e.contains("btrfs") && e.contains("use ext4 or xfs"),
            "{e}"
        );
        // xfs is written at a fixed size only: refused where the root
        // partition would grow with the tree, planned with an image size.
        let xfs = EFI.replace("type: ext4", "type: xfs");
        let p = plan(&xfs).unwrap();
        assert_eq!(p.filesystems[p.root()].fstype, FsType::Xfs);
        assert!(p.fstab().contains(" / xfs "), "{}", p.fstab());
        let e = p.place(None).unwrap_err().to_string();
        assert!(e.contains("mkfs_root") && e.contains("--image-size"), "{e}");
        assert!(p.place(Some(4 << 30)).is_ok());
        let rel = EFI.replace("size: 550MiB", "size: 10%");
        let e = plan(&rel).unwrap().place(None).unwrap_err().to_string();
        assert!(e.contains("ESP") && e.contains("--image-size"), "{e}");
        assert!(plan(&rel).unwrap().place(Some(4 << 30)).is_ok());
        let opts = GPT.replace("type: ext4", "type: ext4\n          opts: \"-i 16384\"");
        let e = plan(&opts).unwrap_err().to_string();
        assert!(e.contains("opts"), "{e}");
        let fallback = "- local_loop:\n    name: image0\n    mkfs:\n      name: mkfs_root\n      mount:\n        mount_point: /\n        fstab:\n          options: \"defaults\"\n          fsck-passno: 1\n";
        let p = plan(fallback).unwrap();
        assert_eq!(p.filesystems[0].target, Target::Whole);
        assert_eq!(
            p.place(None).unwrap().regions[0],
            Region {
                offset: 0,
                size: None
            }
        );
    }
}
