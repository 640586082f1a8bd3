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

pub mod boot;
pub mod plan;

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use crate::capture::{self, CaptureError, CaptureOptions, EntryTar, OutputType};
use crate::disk::config::{self, RootParams};
use crate::disk::gpt::{self, GuidSource};
use crate::disk::layout::{self, Layout, PartType, TableKind};
use crate::ext4::{self, layout::BLOCK_SIZE, Builder, Options};
use crate::fat::{self, FatEntry, FatOptions};
use crate::output::atomic::AtomicFile;
use crate::output::qcow2::{self, Qcow2Options};
use crate::output::vhd;
use crate::source::Source;
use crate::tree::{Entry, EntryKind, FileData, Segment, Timestamp};
pub use plan::{FsPlan, FsType, Placement, Plan, PlanError, Region, Target};

const MIB: u64 = 1 << 20;
/// Growth ceiling for ext4 filesystems not mounted at `/` (/boot, /var …):
/// 16 TiB keeps 32752 inodes per 128 MiB group, about mke2fs's density.
const SMALL_FS_MAX_RESIZE: u64 = 16 << 40;
/// Largest file a hook may keep in memory.
pub const KEEP_LIMIT: u64 = 256 << 20;

/// The block-device YAML shipped in dibr's block-device elements.
pub const EFI_YAML: &str =
    include_str!("../../elements/block-device-efi/block-device-default.yaml");
pub const GPT_YAML: &str =
    include_str!("../../elements/block-device-gpt/block-device-default.yaml");
pub const MBR_YAML: &str =
    include_str!("../../elements/block-device-mbr/block-device-default.yaml");
/// DIB's fallback when no element provides a config
/// (`lib/common-functions:block_device_create_config_file`): one
/// filesystem on the whole image, no partition table.
pub const FALLBACK_YAML: &str = "- local_loop:
    name: image0
    mkfs:
      name: mkfs_root
      mount:
        mount_point: /
        fstab:
          options: \"defaults\"
          fsck-passno: 1
";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskType {
    Raw,
    Qcow2,
    Vhd,
}

/// One requested output: a disk format or a tarball of the same tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputKind {
    Disk(DiskType),
    Tar(OutputType),
}

impl OutputKind {
    /// `-t` names: raw, qcow2, vhd (vpc), tar, tgz, tar.zst (tzst).
    pub fn parse(t: &str) -> Option<OutputKind> {
        Some(match t {
            "raw" => OutputKind::Disk(DiskType::Raw),
            "qcow2" => OutputKind::Disk(DiskType::Qcow2),
            "vhd" | "vpc" => OutputKind::Disk(DiskType::Vhd),
            "tar" => OutputKind::Tar(OutputType::Tar),
            "tgz" => OutputKind::Tar(OutputType::Tgz),
            "tar.zst" | "tzst" => OutputKind::Tar(OutputType::TarZst),
            _ => return None,
        })
    }

    pub fn ext(self) -> &'static str {
        match self {
            OutputKind::Disk(DiskType::Raw) => "raw",
            OutputKind::Disk(DiskType::Qcow2) => "qcow2",
            OutputKind::Disk(DiskType::Vhd) => "vhd",
            OutputKind::Tar(OutputType::Tar) => "tar",
            OutputKind::Tar(OutputType::Tgz) => "tgz",
            OutputKind::Tar(OutputType::TarZst) => "tar.zst",
        }
    }
}

/// Parses a `-t` list; the message names the bad type.
pub fn parse_types(list: &str) -> Result<Vec<OutputKind>, String> {
    let mut v = Vec::new();
    for t in list.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        let k = OutputKind::parse(t).ok_or_else(|| {
            format!("unknown output type {t:?}: expected raw, qcow2, vhd, tar, tgz or tar.zst")
        })?;
        if !v.contains(&k) {
            v.push(k);
        }
    }
    if v.is_empty() {
        return Err("-t needs at least one of raw, qcow2, vhd, tar, tgz, tar.zst".into());
    }
    Ok(v)
}

/// The block-device config text and where it came from (for messages).
#[derive(Clone, Debug)]
pub struct BlockDeviceConfig {
    pub text: String,
    pub origin: String,
}

impl BlockDeviceConfig {
    /// `DIB_BLOCK_DEVICE_CONFIG` as DIB reads it: `file://PATH`, or the
    /// YAML itself.
    pub fn from_value(v: &str) -> Result<Self, AssembleError> {
        if let Some(p) = v.strip_prefix("file://") {
            let text = std::fs::read_to_string(p).map_err(|source| AssembleError::Io {
                what: format!("reading the block-device config {p}"),
                source,
            })?;
            return Ok(BlockDeviceConfig {
                text,
                origin: v.to_string(),
            });
        }
        Ok(BlockDeviceConfig {
            text: v.to_string(),
            origin: "DIB_BLOCK_DEVICE_CONFIG".into(),
        })
    }

    /// `--layout efi|gpt|mbr`: the shipped elements' default YAML.
    pub fn layout(name: &str) -> Option<Self> {
        let text = match name {
            "efi" => EFI_YAML,
            "gpt" => GPT_YAML,
            "mbr" => MBR_YAML,
            _ => return None,
        };
        Some(BlockDeviceConfig {
            text: text.to_string(),
            origin: format!("block-device-{name}/block-device-default.yaml"),
        })
    }

    pub fn fallback() -> Self {
        BlockDeviceConfig {
            text: FALLBACK_YAML.into(),
            origin: "DIB's default block-device fallback config".into(),
        }
    }

    /// DIB's lookup in the image's elements
    /// (`block_device_create_config_file`): per element, the arch-specific
    /// `block-device-<ARCH>.yaml` first, then `block-device-default.yaml`;
    /// first match wins.
    pub fn from_elements(elements: &[(String, PathBuf)], arch: &str) -> Option<Self> {
        for (name, dir) in elements {
            for f in [
                format!("block-device-{arch}.yaml"),
                "block-device-default.yaml".to_string(),
            ] {
                let p = dir.join(&f);
                if let Ok(text) = std::fs::read_to_string(&p) {
                    return Some(BlockDeviceConfig {
                        text,
                        origin: format!("{name}/{f}"),
                    });
                }
            }
        }
        None
    }
}

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
    /// Growth ceiling of the root filesystem.
    pub max_resize_bytes: u64,
    pub source_date_epoch: Option<i64>,
    /// Write NAME.<type>.sha256/.md5 next to each output.
    pub checksum: bool,
    /// What the environment says, resolved by the caller
    /// (`crate::settings::assemble`).
    pub settings: AssembleSettings,
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

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AssembleError {
    #[error(transparent)]
    Source(#[from] crate::source::SourceError),
    #[error("block-device config ({origin}): {source}")]
    Config {
        origin: String,
        #[source]
        source: config::ConfigError,
    },
    #[error("block-device config ({origin}): {source}")]
    Plan {
        origin: String,
        #[source]
        source: Box<PlanError>,
    },
    #[error("filesystem '{node}' (mounted at {mount}): {source}")]
    Ext4 {
        node: String,
        mount: String,
        #[source]
        source: Box<ext4::Error>,
    },
    #[error("filesystem '{node}' (mounted at {mount}, {size} bytes): the tree does not fit{hint}")]
    DoesNotFit {
        node: String,
        mount: String,
        size: u64,
        /// Bytes in use when the writer ran out (a lower bound).
        needed: u64,
        hint: &'static str,
    },
    #[error("vfat filesystem '{node}' (mounted at {mount}): {source}")]
    Fat {
        node: String,
        mount: String,
        #[source]
        source: fat::FatError,
    },
    #[error("vfat filesystem '{node}' (mounted at {mount}): the files under it need {needed} bytes, more than its {size}-byte partition; enlarge the partition in the block-device config")]
    FatTooLarge {
        node: String,
        mount: String,
        needed: u64,
        size: u64,
    },
    #[error("writing the partition table: {0}")]
    Table(#[from] layout::LayoutError),
    #[error(transparent)]
    Output(#[from] qcow2::OutputError),
    #[error("tar output: {0}")]
    Tar(#[from] CaptureError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("entry '{path}' (source offset {offset}) is under the vfat filesystem at {mount} but is a {kind}: FAT holds only files and directories")]
    FatEntry {
        path: String,
        offset: u64,
        mount: String,
        kind: &'static str,
    },
    #[error("entry '{path}' (source offset {offset}) is a hard link to '{target}' on another filesystem ({from} → {to}); hard links cannot cross mount points")]
    CrossLink {
        path: String,
        offset: u64,
        target: String,
        from: String,
        to: String,
    },
    #[error("entry '{path}' is the mount point {mount} but is a {kind} in the tree; it must be a directory")]
    MountPointKind {
        path: String,
        mount: String,
        kind: &'static str,
    },
    #[error("tar outputs read the tree a second time, which standard input cannot do: pass --from FILE or a directory, or drop tar/tgz/tar.zst from -t")]
    TarFromStdin,
    #[error("boot hook: {0}")]
    Hook(HookError),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> AssembleError {
    let what = what.into();
    move |source| AssembleError::Io { what, source }
}

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
        let u = &self.root_uuid;
        format!(
            "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
            u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]
        )
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

/// The output path for a type (DIB's naming: NAME.raw, NAME.qcow2, …).
pub fn output_path(name: &Path, t: OutputKind) -> PathBuf {
    let mut s = name.as_os_str().to_owned();
    s.push(".");
    s.push(t.ext());
    PathBuf::from(s)
}

/// File data held in memory.
struct Bytes<'a>(&'a [u8]);

impl FileData for Bytes<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.0.len().min(buf.len());
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

fn read_all(
    data: &mut dyn FileData,
    limit: u64,
    path: &str,
) -> Result<Option<Vec<u8>>, AssembleError> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = data
            .read(&mut buf)
            .map_err(io_err(format!("reading '{path}'")))?;
        if n == 0 {
            return Ok(Some(out));
        }
        out.extend_from_slice(&buf[..n]);
        if out.len() as u64 > limit {
            return Ok(None);
        }
    }
}

/// Dense file content (holes filled) from segment data.
fn densify(e: &Entry, data: Vec<u8>) -> Vec<u8> {
    if e.segments.len() == 1 && e.segments[0].offset == 0 && e.segments[0].len == e.size {
        return data;
    }
    let mut out = vec![0u8; e.size as usize];
    let mut pos = 0usize;
    for s in &e.segments {
        let (o, l) = (s.offset as usize, s.len as usize);
        if let (Some(dst), Some(src)) = (out.get_mut(o..o + l), data.get(pos..pos + l)) {
            dst.copy_from_slice(src);
        }
        pos += l;
    }
    out
}

fn kind_name(k: &EntryKind) -> &'static str {
    match k {
        EntryKind::File => "file",
        EntryKind::Dir => "directory",
        EntryKind::Symlink(_) => "symlink",
        EntryKind::HardLink(_) => "hard link",
        EntryKind::Fifo => "fifo",
        EntryKind::Socket => "socket",
        _ => "device node",
    }
}

fn synthetic(path: &[u8], kind: EntryKind, mode: u32, now: Timestamp) -> Entry {
    Entry {
        path: path.to_vec(),
        kind,
        mode,
        uid: 0,
        gid: 0,
        mtime: now,
        atime: None,
        ctime: None,
        xattrs: Vec::new(),
        size: 0,
        segments: Vec::new(),
        source_offset: 0,
    }
}

fn file_entry(mut e: Entry, len: u64) -> Entry {
    e.kind = EntryKind::File;
    e.size = len;
    e.segments = if len > 0 {
        vec![Segment { offset: 0, len }]
    } else {
        Vec::new()
    };
    e
}

/// A filesystem being written.
enum Writer {
    Ext4(Box<Builder>),
    /// (path inside the fs, content; None for a directory); bytes so far.
    Vfat(Vec<(String, Option<Vec<u8>>)>, u64),
}

/// Files kept from the tree for NAME.d/ (DIB's manifests element:
/// `/etc/dib-manifests` copied to `${IMAGE_NAME}.d/dib-manifests`).
const MANIFEST_DIR: &[u8] = b"etc/dib-manifests";

/// The state of one assembly while the tree streams.
pub struct Assembly<'h> {
    plan: Plan,
    writers: Vec<Writer>,
    regions: Vec<Region>,
    fstab: Vec<u8>,
    saw_fstab: bool,
    /// Mount points (index into filesystems) whose directory was in the tree.
    saw_mount_point: Vec<bool>,
    now: Timestamp,
    hooks: &'h mut dyn AssembleHooks,
    manifests: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Assembly<'_> {
    fn mount_str(&self, i: usize) -> String {
        self.plan.filesystems[i]
            .mount
            .as_ref()
            .map(|m| m.point.clone())
            .unwrap_or_else(|| "(not mounted)".into())
    }

    fn rel_of(&self, i: usize) -> &[u8] {
        self.plan.filesystems[i]
            .mount
            .as_ref()
            .map(|m| m.rel.as_slice())
            .unwrap_or(b"")
    }

    /// Path inside filesystem `i` of an image path routed to it.
    fn inside(&self, i: usize, path: &[u8]) -> Vec<u8> {
        let r = self.rel_of(i);
        if r.is_empty() {
            path.to_vec()
        } else if path.len() > r.len() {
            path[r.len() + 1..].to_vec()
        } else {
            Vec::new()
        }
    }

    fn ext4_err(&self, i: usize, source: ext4::Error) -> AssembleError {
        let f = &self.plan.filesystems[i];
        if let ext4::Error::DoesNotFit { needed_bytes, .. } = source {
            return AssembleError::DoesNotFit {
                needed: needed_bytes,
                node: f.node.clone(),
                mount: self.mount_str(i),
                size: self.regions[i].size.unwrap_or(0),
                hint: if matches!(f.target, Target::Partition(_)) && self.plan.loop_size.is_none() {
                    "; pass a larger --image-size (DIB_IMAGE_SIZE), or drop it to size the disk after the tree, or enlarge the partition in the block-device config"
                } else {
                    "; pass a larger --image-size"
                },
            };
        }
        AssembleError::Ext4 {
            node: f.node.clone(),
            mount: self.mount_str(i),
            source: Box::new(source),
        }
    }

    /// Seam (a): the one place that decides where a tree entry goes.
    pub fn place_entry(&mut self, e: &Entry, data: &mut dyn FileData) -> Result<(), AssembleError> {
        // A hook sees every entry and may keep a file's content (the entry
        // is then placed from memory).
        if self.hooks.wants(e) && e.kind == EntryKind::File && e.size <= KEEP_LIMIT {
            let bytes = read_all(data, KEEP_LIMIT, &e.display_path())?.unwrap_or_default();
            self.hooks.keep(e, &densify(e, bytes.clone()));
            return self.place(e, &mut Bytes(&bytes));
        }
        self.place(e, data)
    }

    fn place(&mut self, e: &Entry, data: &mut dyn FileData) -> Result<(), AssembleError> {
        if e.path == b"etc/fstab" && !matches!(e.kind, EntryKind::Dir) {
            // dib-block-device writefstab: `cp` over whatever the tree had.
            self.saw_fstab = true;
            let fe = file_entry(
                Entry {
                    mode: if matches!(e.kind, EntryKind::File) {
                        e.mode
                    } else {
                        0o644
                    },
                    ..e.clone()
                },
                self.fstab.len() as u64,
            );
            let fstab = std::mem::take(&mut self.fstab);
            let r = self.route(&fe, &mut Bytes(&fstab));
            self.fstab = fstab;
            return r;
        }
        if e.kind == EntryKind::File
            && e.path.starts_with(MANIFEST_DIR)
            && e.path.get(MANIFEST_DIR.len()) == Some(&b'/')
            && e.size <= KEEP_LIMIT
        {
            let path = e.display_path();
            let bytes = read_all(data, KEEP_LIMIT, &path)?.unwrap_or_default();
            self.manifests.push((
                e.path[MANIFEST_DIR.len() + 1..].to_vec(),
                densify(e, bytes.clone()),
            ));
            return self.route(e, &mut Bytes(&bytes));
        }
        self.route(e, data)
    }

    fn route(&mut self, e: &Entry, data: &mut dyn FileData) -> Result<(), AssembleError> {
        let i = self.plan.route(&e.path);
        let is_mount_point = !e.path.is_empty() && self.rel_of(i) == e.path.as_slice();
        if is_mount_point {
            if e.kind != EntryKind::Dir {
                return Err(AssembleError::MountPointKind {
                    path: e.display_path(),
                    mount: self.mount_str(i),
                    kind: kind_name(&e.kind),
                });
            }
            self.saw_mount_point[i] = true;
            // The directory in the parent filesystem, and its metadata on
            // the mounted filesystem's root (cp -a onto the mount point).
            let parent = self.parent_of(&e.path);
            let mut pe = e.clone();
            pe.path = self.inside(parent, &e.path);
            self.add(parent, &pe, data)?;
            let mut ce = e.clone();
            ce.path = Vec::new();
            return self.add(i, &ce, data);
        }
        let mut re = e.clone();
        re.path = self.inside(i, &e.path);
        if let EntryKind::HardLink(t) = &e.kind {
            let ti = self.plan.route(t);
            if ti != i || (self.rel_of(i) == t.as_slice() && !t.is_empty()) {
                return Err(AssembleError::CrossLink {
                    path: e.display_path(),
                    offset: e.source_offset,
                    target: crate::tree::display_path(t),
                    from: self.mount_str(i),
                    to: self.mount_str(ti),
                });
            }
            re.kind = EntryKind::HardLink(self.inside(i, t));
        }
        self.add(i, &re, data)
    }

    /// The filesystem holding the directory a mount point is made in: the
    /// longest other mount point above it.
    fn parent_of(&self, path: &[u8]) -> usize {
        let cut = path.iter().rposition(|&b| b == b'/').unwrap_or(0);
        self.plan.route(&path[..cut])
    }

    fn add(&mut self, i: usize, e: &Entry, data: &mut dyn FileData) -> Result<(), AssembleError> {
        let limit = self.regions[i].size.unwrap_or(u64::MAX);
        let mount = self.mount_str(i);
        match &mut self.writers[i] {
            Writer::Ext4(b) => {
                let r = b.add(e, data);
                r.map_err(|err| self.ext4_err(i, err))
            }
            Writer::Vfat(list, bytes) => {
                if e.path.is_empty() {
                    return Ok(()); // FAT's root has no metadata to set
                }
                let rel = String::from_utf8_lossy(&e.path).into_owned();
                // Last entry wins, as in the ext4 writer and tar extraction
                // (a hook's file replaces the tree's).
                if let Some(k) = list.iter().position(|(p, _)| *p == rel) {
                    if e.kind == EntryKind::Dir && list[k].1.is_none() {
                        return Ok(()); // a directory that exists
                    }
                    let (_, old) = list.remove(k);
                    *bytes -= old.map(|d| d.len() as u64).unwrap_or(0);
                }
                match &e.kind {
                    EntryKind::Dir => list.push((rel, None)),
                    EntryKind::File => {
                        let Some(d) = read_all(data, limit.saturating_sub(*bytes), &rel)? else {
                            let node = self.plan.filesystems[i].node.clone();
                            return Err(AssembleError::FatTooLarge {
                                node,
                                mount,
                                needed: *bytes + e.size,
                                size: limit,
                            });
                        };
                        let d = densify(e, d);
                        *bytes += d.len() as u64;
                        list.push((rel, Some(d)));
                    }
                    EntryKind::HardLink(t) => {
                        let t = String::from_utf8_lossy(t).into_owned();
                        let d = list
                            .iter()
                            .rev()
                            .find(|(p, _)| *p == t)
                            .and_then(|(_, d)| d.clone());
                        match d {
                            Some(d) => {
                                *bytes += d.len() as u64;
                                list.push((rel, Some(d)))
                            }
                            None => {
                                return Err(AssembleError::FatEntry {
                                    path: e.display_path(),
                                    offset: e.source_offset,
                                    mount,
                                    kind: "hard link to something that is not a file",
                                })
                            }
                        }
                    }
                    other => {
                        let mut path = self.rel_of(i).to_vec();
                        path.push(b'/');
                        path.extend_from_slice(&e.path);
                        return Err(AssembleError::FatEntry {
                            path: crate::tree::display_path(&path),
                            offset: e.source_offset,
                            mount,
                            kind: kind_name(other),
                        });
                    }
                }
                Ok(())
            }
        }
    }
}

fn epoch_now(sde: Option<i64>) -> i64 {
    sde.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0)
    })
}

/// Outputs committed so far; removed again if a later step fails, so a
/// failed assembly leaves nothing behind.
struct Committed(Vec<PathBuf>);
impl Drop for Committed {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
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
pub fn assemble(cfg: &AssembleConfig) -> Result<Vec<PathBuf>, AssembleError> {
    assemble_with(cfg, &mut boot::BootHooks::new(cfg.settings.boot.clone()))
}

/// [`assemble`] with boot-loader hooks.
pub fn assemble_with(
    cfg: &AssembleConfig,
    hooks: &mut dyn AssembleHooks,
) -> Result<Vec<PathBuf>, AssembleError> {
    let origin = cfg.block_device.origin.clone();
    let graph =
        config::load_with_params(&cfg.block_device.text, &cfg.root_params).map_err(|source| {
            AssembleError::Config {
                origin: origin.clone(),
                source,
            }
        })?;
    let plan_err = |source| AssembleError::Plan {
        origin: origin.clone(),
        source: Box::new(source),
    };
    let plan = Plan::new(graph, cfg.settings.block_size.as_deref()).map_err(plan_err)?;
    let placement = plan.place(cfg.image_size).map_err(plan_err)?;
    let wants_tar = cfg.types.iter().any(|t| matches!(t, OutputKind::Tar(_)));
    if wants_tar && cfg.from.as_os_str() == "-" {
        return Err(AssembleError::TarFromStdin);
    }
    let epoch = epoch_now(cfg.source_date_epoch);
    let now = Timestamp::new(epoch, 0);

    // The raw disk is the working file; it gets its name only if asked for.
    let raw_path = output_path(&cfg.image_name, OutputKind::Disk(DiskType::Raw));
    let raw = AtomicFile::create(&raw_path)
        .map_err(io_err(format!("creating {}", raw_path.display())))?;
    let file: File = raw
        .file()
        .try_clone()
        .map_err(io_err("duplicating the image file"))?;
    if let Some(d) = placement.disk_size {
        file.set_len(d).map_err(io_err("sizing the disk image"))?;
    }

    let root_idx = plan.root();
    let mut writers = Vec::new();
    for (i, f) in plan.filesystems.iter().enumerate() {
        let region = &placement.regions[i];
        writers.push(match f.fstype {
            FsType::Ext4 => {
                let mut label = [0u8; 16];
                let lb = f.label.as_bytes();
                label[..lb.len().min(16)].copy_from_slice(&lb[..lb.len().min(16)]);
                let opts = Options {
                    label,
                    uuid: f.uuid,
                    size_blocks: region.size.map(|s| s / BLOCK_SIZE),
                    extra_blocks: 0,
                    max_resize_bytes: if i == root_idx {
                        cfg.max_resize_bytes
                    } else {
                        cfg.max_resize_bytes.min(SMALL_FS_MAX_RESIZE)
                    },
                    journal_blocks: None,
                    source_date_epoch: cfg.source_date_epoch,
                };
                let dup = file
                    .try_clone()
                    .map_err(io_err("duplicating the image file"))?;
                let mut b = Builder::new_at(dup, raw_path.clone(), opts, region.offset).map_err(
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
                b.set_io(cfg.settings.ext4_io);
                Writer::Ext4(Box::new(b))
            }
            FsType::Vfat => Writer::Vfat(Vec::new(), 0),
        });
    }
    let fstab = plan.fstab().into_bytes();
    let n_fs = plan.filesystems.len();
    let mut a = Assembly {
        plan,
        writers,
        regions: placement.regions.clone(),
        fstab,
        saw_fstab: false,
        saw_mount_point: vec![false; n_fs],
        now,
        hooks,
        manifests: Vec::new(),
    };

    // One pass over the tree.
    let mut src = Source::open(&cfg.from)?;
    while let Some(e) = src.next_entry()? {
        a.place_entry(&e, src.data())?;
    }

    // Seam (b): what the tree lacked, then the hook's additions.
    let mut added: Vec<Entry> = Vec::new();
    let mut added_data: Vec<Vec<u8>> = Vec::new();
    for i in 0..n_fs {
        let rel = a.rel_of(i).to_vec();
        if !rel.is_empty() && !a.saw_mount_point[i] && a.plan.filesystems[i].mount.is_some() {
            let e = synthetic(&rel, EntryKind::Dir, 0o755, a.now);
            a.route(&e, &mut Bytes(&[]))?;
            added.push(e);
            added_data.push(Vec::new());
        }
    }
    if !a.saw_fstab {
        let e = file_entry(
            synthetic(b"etc/fstab", EntryKind::File, 0o644, a.now),
            a.fstab.len() as u64,
        );
        let fstab = a.fstab.clone();
        a.place(&e, &mut Bytes(&fstab))?;
        added.push(e);
        added_data.push(fstab);
    }
    let extras = a
        .hooks
        .extra_entries(&a.plan)
        .map_err(AssembleError::Hook)?;
    for x in extras {
        let path = crate::tree::normalize_path(x.path.as_bytes()).map_err(|err| {
            AssembleError::Hook(format!("extra entry {:?}: {err}", x.path).into())
        })?;
        let e = match &x.data {
            None => synthetic(&path, EntryKind::Dir, x.mode, a.now),
            Some(d) => file_entry(
                synthetic(&path, EntryKind::File, x.mode, a.now),
                d.len() as u64,
            ),
        };
        let d = x.data.clone().unwrap_or_default();
        a.place(&e, &mut Bytes(&d))?;
        added.push(e);
        added_data.push(d);
    }

    // Finish the filesystems.
    let Assembly {
        plan,
        writers,
        regions,
        manifests,
        hooks,
        ..
    } = a;
    let mut root_uuid = [0u8; 16];
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
                    ext4::Error::DoesNotFit { needed_bytes, .. } => AssembleError::DoesNotFit {
                        needed: needed_bytes,
                        node: f.node.clone(),
                        mount: mount.clone(),
                        size: regions[i].size.unwrap_or(0),
                        hint: "; pass a larger --image-size, or enlarge the partition in the block-device config",
                    },
                    source => AssembleError::Ext4 {
                        node: f.node.clone(),
                        mount: mount.clone(),
                        source: Box::new(source),
                    },
                })?;
                if i == root_idx {
                    root_uuid = s.uuid;
                }
                let bytes = s.blocks_count * BLOCK_SIZE;
                if regions[i].size.is_none() {
                    grow_need = Some(bytes);
                }
                summary_line.push(format!(
                    "{} ext4 '{}' {} ({} used)",
                    mount,
                    f.label,
                    crate::cli::mkfs::human(bytes),
                    crate::cli::mkfs::human((s.blocks_count - s.free_blocks) * BLOCK_SIZE)
                ));
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
                fat::write_fat32(&file, regions[i].offset, size, &entries, &fo).map_err(
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
                    crate::cli::mkfs::human(size),
                    crate::cli::mkfs::human(bytes)
                ));
            }
        }
    }

    // Size the disk (growing case) and write the partition table.
    let (disk_size, layout) = match placement.disk_size {
        Some(d) => (d, placement.layout.clone()),
        None => {
            let need = grow_need.unwrap_or(MIB).div_ceil(MIB) * MIB;
            plan.size_disk(&placement, need).map_err(plan_err)?
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
    }

    // Seam (c).
    let info = disk_info(&plan, layout.as_ref(), &regions, disk_size, root_uuid);
    hooks
        .after_table(&file, &info)
        .map_err(AssembleError::Hook)?;
    file.sync_all().map_err(io_err("syncing the disk image"))?;

    // Outputs: conversions read the raw disk through its open descriptor.
    let mut committed = Committed(Vec::new());
    let raw_fd_path = {
        use std::os::fd::AsRawFd;
        PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()))
    };
    for &t in &cfg.types {
        let out = output_path(&cfg.image_name, t);
        match t {
            OutputKind::Disk(DiskType::Raw) => continue,
            OutputKind::Disk(DiskType::Qcow2) => {
                qcow2::write_qcow2(
                    &raw_fd_path,
                    &out,
                    &Qcow2Options {
                        compress: !cfg.uncompressed,
                        ..Default::default()
                    },
                )?;
            }
            OutputKind::Disk(DiskType::Vhd) => {
                vhd::write_vhd_at(&raw_fd_path, &out, cfg.source_date_epoch)?
            }
            OutputKind::Tar(ty) => {
                committed.0.push(out.clone());
                write_tar_output(cfg, &out, ty, &plan, &added, &added_data)?;
                continue;
            }
        }
        committed.0.push(out);
    }
    let mut outs: Vec<PathBuf> = committed.0.clone();
    if cfg.types.contains(&OutputKind::Disk(DiskType::Raw)) {
        raw.commit()
            .map_err(io_err(format!("naming {}", raw_path.display())))?;
        committed.0.push(raw_path.clone());
        outs.insert(0, raw_path);
    }
    if cfg.checksum {
        for o in &outs {
            for side in write_checksum(o)? {
                committed.0.push(side);
            }
        }
    }
    if !manifests.is_empty() {
        write_manifests(&cfg.image_name, &manifests)?;
    }
    committed.0.clear();
    eprintln!(
        "dibr assemble: disk {} ({}; block-device config {}): {}",
        crate::cli::mkfs::human(disk_size),
        match layout.as_ref().map(|l| l.kind) {
            Some(TableKind::Gpt) => "GPT",
            Some(TableKind::Mbr) => "MBR",
            None => "no partition table",
        },
        origin,
        summary_line.join(", ")
    );
    Ok(outs)
}

fn disk_info(
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

/// Tar outputs: the tree read a second time, with the same replacements
/// (fstab) and additions (mount points, hook entries) the disk got.
fn write_tar_output(
    cfg: &AssembleConfig,
    out: &Path,
    ty: OutputType,
    plan: &Plan,
    added: &[Entry],
    added_data: &[Vec<u8>],
) -> Result<(), AssembleError> {
    let opts = CaptureOptions {
        source_date_epoch: cfg.source_date_epoch,
        ..Default::default()
    };
    let fstab = plan.fstab().into_bytes();
    capture::write_output_with(out, ty, &mut |w| {
        let mut t = EntryTar::new(w, &opts, &cfg.from);
        let mut src = Source::open(&cfg.from).map_err(|e| CaptureError::Input(e.to_string()))?;
        let added_paths: Vec<&[u8]> = added.iter().map(|e| e.path.as_slice()).collect();
        while let Some(e) = src
            .next_entry()
            .map_err(|e| CaptureError::Input(e.to_string()))?
        {
            if added_paths.contains(&e.path.as_slice()) && e.path != b"etc/fstab" {
                continue; // replaced by a hook's entry, written below
            }
            if e.path == b"etc/fstab" && !matches!(e.kind, EntryKind::Dir) {
                let mode = if e.kind == EntryKind::File {
                    e.mode
                } else {
                    0o644
                };
                let fe = file_entry(Entry { mode, ..e }, fstab.len() as u64);
                t.add(&fe, &mut Bytes(&fstab))?;
                continue;
            }
            t.add(&e, src.data())?;
        }
        for (e, d) in added.iter().zip(added_data) {
            t.add(e, &mut Bytes(d))?;
        }
        t.finish()
    })?;
    Ok(())
}

/// `--checksum`: NAME.<ext>.sha256 and .md5 side files, as DIB's
/// `finish_image` writes them (`sha256sum`/`md5sum` output format).
pub fn write_checksum(path: &Path) -> Result<Vec<PathBuf>, AssembleError> {
    use md5::Md5;
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let what = || format!("reading {}", path.display());
    let mut f = File::open(path).map_err(io_err(what()))?;
    let (mut sha, mut md) = (Sha256::new(), Md5::new());
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io_err(what()))?;
        if n == 0 {
            break;
        }
        sha.update(&buf[..n]);
        md.update(&buf[..n]);
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut written = Vec::new();
    for (ext, sum) in [
        ("sha256", format!("{:x}", sha.finalize())),
        ("md5", format!("{:x}", md.finalize())),
    ] {
        let mut p = path.as_os_str().to_owned();
        p.push(".");
        p.push(ext);
        let p = PathBuf::from(p);
        write_atomic(&p, format!("{sum}  {name}\n").as_bytes())?;
        written.push(p);
    }
    Ok(written)
}

fn write_atomic(p: &Path, data: &[u8]) -> Result<(), AssembleError> {
    use std::io::Write;
    let what = || format!("writing {}", p.display());
    let a = AtomicFile::create(p).map_err(io_err(what()))?;
    a.file().write_all(data).map_err(io_err(what()))?;
    a.commit().map_err(io_err(what()))
}

/// A manifest file: path below /etc/dib-manifests, content.
pub type ManifestFile = (Vec<u8>, Vec<u8>);

/// The regular files below `dir` (the tree's /etc/dib-manifests), for
/// [`write_manifests`] when no disk is assembled; symlinks are not followed.
pub fn manifest_files(dir: &Path) -> Result<Vec<ManifestFile>, AssembleError> {
    let mut s = Source::open(dir)?;
    let mut out = Vec::new();
    while let Some(e) = s.next_entry()? {
        if e.kind == EntryKind::File {
            let data = read_all(s.data(), KEEP_LIMIT, &e.display_path())?.unwrap_or_default();
            out.push((e.path.clone(), data));
        }
    }
    Ok(out)
}

/// DIB's manifests element copies the image's /etc/dib-manifests to
/// `${IMAGE_NAME}.d/dib-manifests` (`DIB_MANIFEST_SAVE_DIR`).
pub fn write_manifests(name: &Path, files: &[(Vec<u8>, Vec<u8>)]) -> Result<(), AssembleError> {
    use std::os::unix::ffi::OsStrExt;
    let mut d = name.as_os_str().to_owned();
    d.push(".d");
    let dir = PathBuf::from(d).join("dib-manifests");
    for (rel, data) in files {
        let p = dir.join(std::ffi::OsStr::from_bytes(rel));
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)
                .map_err(io_err(format!("creating {}", parent.display())))?;
        }
        write_atomic(&p, data)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
            max_resize_bytes: 1 << 50,
            source_date_epoch: Some(1_700_000_000),
            checksum: false,
            settings: AssembleSettings::default(),
        };
        let mut p = Probe::default();
        let outs = assemble_with(&cfg, &mut p).unwrap();
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
