//! `dibr assemble`: a root tree (tarball or directory) into a whole-disk
//! image, in userspace, in one pass over the tree.
//!
//! Layouts follow diskimage-builder's `block-device-efi` (GPT: ESP EF00
//! 550 MiB vfat at /boot/efi, BIOS boot EF02 8 MiB, root 8300) and
//! `block-device-gpt` (BIOS boot + root). Partitions are 1 MiB aligned and
//! the root partition is last, so growpart can extend it. Entries under
//! `boot/efi/` go to the FAT ESP; everything else streams straight into the
//! root ext4 at its partition offset (no temporary copy). The root
//! filesystem is just large enough; the disk is sized after it, then the
//! GPT (backup header at the end) is written. Boot loaders come next.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use crate::boot::{self, grub_bios, BootCollector, BootOptions};
use crate::disk::gpt::{self, Geometry, GptPartition, Guid, GuidSource};
use crate::ext4::{self, layout::BLOCK_SIZE, Builder, Options};
use crate::fat::{self, FatEntry, FatOptions};
use crate::output::atomic::AtomicFile;
use crate::output::qcow2::{self, Qcow2Options};
use crate::output::vhd;
use crate::source::Source;
use crate::tree::{Entry, EntryKind, FileData, Segment, Timestamp};

const MIB: u64 = 1 << 20;
/// DIB's block-device-efi sizes.
pub const ESP_SIZE: u64 = 550 * MIB;
pub const BSP_SIZE: u64 = 8 * MIB;
const ROOT_LABEL: &str = "cloudimg-rootfs";
/// Largest single file the boot collector keeps in memory.
const BOOT_FILE_LIMIT: u64 = 64 * MIB;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayoutKind {
    /// ESP + BIOS boot + root (DIB's block-device-efi): boots BIOS and UEFI.
    Efi,
    /// BIOS boot + root (DIB's block-device-gpt).
    Gpt,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskType {
    Raw,
    Qcow2,
    Vhd,
}

#[derive(Clone, Debug)]
pub struct AssembleConfig {
    pub from: PathBuf,
    /// Output name without extension.
    pub image_name: PathBuf,
    pub types: Vec<DiskType>,
    pub layout: LayoutKind,
    pub uncompressed: bool,
    pub max_resize_bytes: u64,
    pub source_date_epoch: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AssembleError {
    #[error(transparent)]
    Source(#[from] crate::source::SourceError),
    #[error(transparent)]
    Ext4(#[from] ext4::Error),
    #[error("writing the ESP: {0}")]
    Fat(#[from] fat::FatError),
    #[error("writing the partition table: {0}")]
    Gpt(#[from] gpt::GptError),
    #[error(transparent)]
    Output(#[from] qcow2::OutputError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("entry '{path}' (source offset {offset}) is under /boot/efi but is a {kind}: the FAT ESP holds only files and directories")]
    EspEntry {
        path: String,
        offset: u64,
        kind: &'static str,
    },
    #[error("boot loader: {0}")]
    Boot(#[from] boot::BootError),
    #[error("the files under /boot/efi need {needed} bytes, more than the {ESP_SIZE}-byte ESP")]
    EspTooLarge { needed: u64 },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> AssembleError {
    let what = what.into();
    move |source| AssembleError::Io { what, source }
}

/// The output path for a type (DIB's naming: NAME.raw, NAME.qcow2, NAME.vhd).
pub fn output_path(name: &Path, t: DiskType) -> PathBuf {
    let ext = match t {
        DiskType::Raw => "raw",
        DiskType::Qcow2 => "qcow2",
        DiskType::Vhd => "vhd",
    };
    let mut s = name.as_os_str().to_owned();
    s.push(".");
    s.push(ext);
    PathBuf::from(s)
}

/// File data held in memory (fstab).
struct Bytes<'a>(&'a [u8]);

impl FileData for Bytes<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.0.len().min(buf.len());
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

fn read_all(data: &mut dyn FileData, limit: u64, path: &str) -> Result<Vec<u8>, AssembleError> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = data
            .read(&mut buf)
            .map_err(io_err(format!("reading '{path}'")))?;
        if n == 0 {
            return Ok(out);
        }
        out.extend_from_slice(&buf[..n]);
        if out.len() as u64 > limit {
            return Err(AssembleError::EspTooLarge {
                needed: out.len() as u64,
            });
        }
    }
}

/// Strictly below `boot/efi/`: the relative path inside the ESP.
fn esp_relative(path: &[u8]) -> Option<&[u8]> {
    path.strip_prefix(b"boot/efi/")
}

/// Partition plan before the root size is known: fixed partitions, then root.
fn fixed_partitions(layout: LayoutKind) -> Vec<(&'static str, &'static str, u64)> {
    match layout {
        LayoutKind::Efi => vec![("ESP", "EF00", ESP_SIZE), ("BSP", "EF02", BSP_SIZE)],
        LayoutKind::Gpt => vec![("BSP", "EF02", BSP_SIZE)],
    }
}

/// Assemble the disk; returns the outputs written.
pub fn assemble(cfg: &AssembleConfig) -> Result<Vec<PathBuf>, AssembleError> {
    let now = Timestamp::new(
        cfg.source_date_epoch.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0)
        }),
        0,
    );
    // Offsets of the fixed partitions, 1 MiB aligned from 1 MiB on.
    let fixed = fixed_partitions(cfg.layout);
    let mut off = MIB;
    let mut esp_off = None;
    for (name, _, size) in &fixed {
        if *name == "ESP" {
            esp_off = Some(off);
        }
        off += size;
    }
    let root_off = off;

    // The raw disk is the working file; it gets its name only if asked for.
    let raw_path = output_path(&cfg.image_name, DiskType::Raw);
    let raw = AtomicFile::create(&raw_path)
        .map_err(io_err(format!("creating {}", raw_path.display())))?;
    let file: File = raw
        .file()
        .try_clone()
        .map_err(io_err("duplicating the image file"))?;

    let mut label = [0u8; 16];
    label[..ROOT_LABEL.len()].copy_from_slice(ROOT_LABEL.as_bytes());
    let opts = Options {
        label,
        uuid: None,
        size_blocks: None,
        extra_blocks: 0,
        max_resize_bytes: cfg.max_resize_bytes,
        journal_blocks: None,
        source_date_epoch: cfg.source_date_epoch,
    };
    let mut root = Builder::new_at(
        file.try_clone()
            .map_err(io_err("duplicating the image file"))?,
        raw_path.clone(),
        opts,
        root_off,
    )?;

    // One pass: ESP entries to memory (it is small), the rest into ext4.
    let mut src = Source::open(&cfg.from)?;
    let mut esp: Vec<(String, Option<Vec<u8>>)> = Vec::new();
    let mut esp_bytes = 0u64;
    let mut saw_mount_point = false;
    let mut bootc = BootCollector::new();
    while let Some(e) = src.next_entry()? {
        bootc.note(&e);
        if cfg.layout == LayoutKind::Efi {
            if let Some(rel) = esp_relative(&e.path) {
                let rel = String::from_utf8_lossy(rel).into_owned();
                match &e.kind {
                    EntryKind::Dir => esp.push((rel, None)),
                    EntryKind::File => {
                        let d = read_all(src.data(), ESP_SIZE - esp_bytes, &rel)?;
                        esp_bytes += d.len() as u64;
                        esp.push((rel, Some(d)));
                    }
                    EntryKind::HardLink(t) => {
                        let t = esp_relative(t).map(|t| String::from_utf8_lossy(t).into_owned());
                        let data = esp
                            .iter()
                            .find(|(p, _)| Some(p) == t.as_ref())
                            .and_then(|(_, d)| d.clone());
                        match data {
                            Some(d) => esp.push((rel, Some(d))),
                            None => {
                                return Err(AssembleError::EspEntry {
                                    path: e.display_path(),
                                    offset: e.source_offset,
                                    kind: "hard link to a file outside the ESP",
                                })
                            }
                        }
                    }
                    other => {
                        return Err(AssembleError::EspEntry {
                            path: e.display_path(),
                            offset: e.source_offset,
                            kind: match other {
                                EntryKind::Symlink(_) => "symlink",
                                EntryKind::Fifo => "fifo",
                                EntryKind::Socket => "socket",
                                _ => "device node",
                            },
                        })
                    }
                }
                continue;
            }
            if e.path == b"boot/efi" {
                saw_mount_point = true;
            }
        }
        if e.kind == EntryKind::File && BootCollector::wants(&e.path) {
            let d = read_all(src.data(), BOOT_FILE_LIMIT, &e.display_path())?;
            root.add(&e, &mut Bytes(&d))?;
            bootc.keep(&e.path, d);
            continue;
        }
        root.add(&e, src.data())?;
    }

    // Boot loaders: what goes onto the root fs and the ESP, and the BIOS pair.
    let bplan = boot::plan(
        &bootc,
        &BootOptions::from_env(ROOT_LABEL, true, esp_off.is_some()),
    )?;
    for f in &bplan.root_files {
        let mut fe = synthetic(f.path.as_bytes(), EntryKind::File, f.mode, now);
        fe.size = f.data.len() as u64;
        fe.segments = vec![Segment {
            offset: 0,
            len: fe.size,
        }];
        root.add(&fe, &mut Bytes(&f.data))?;
    }
    for f in &bplan.esp_files {
        esp.retain(|(p, _)| !p.eq_ignore_ascii_case(&f.path));
        esp.push((f.path.clone(), Some(f.data.clone())));
    }

    // The ESP, and fstab entries as DIB writes them (LABEL= / UUID=).
    let mut fstab = format!("LABEL={ROOT_LABEL} / ext4 defaults 0 1\n");
    if let Some(esp_off) = esp_off {
        let entries: Vec<FatEntry> = esp
            .iter()
            .map(|(p, d)| match d {
                None => FatEntry::dir(p),
                Some(b) => FatEntry::bytes(p, b),
            })
            .collect();
        let mut fo = FatOptions::from_env();
        if let Some(s) = cfg.source_date_epoch {
            fo.timestamp = s;
            fo.volume_id_seed = s as u64;
        }
        let st = fat::write_fat32(&file, esp_off, ESP_SIZE, &entries, &fo)?;
        fstab.push_str(&format!(
            "UUID={:04X}-{:04X} /boot/efi vfat defaults 0 2\n",
            st.volume_id >> 16,
            st.volume_id & 0xffff
        ));
        if !saw_mount_point {
            let mp = synthetic(b"boot/efi", EntryKind::Dir, 0o755, now);
            root.add(&mp, &mut Bytes(&[]))?;
        }
    }
    let mut fe = synthetic(b"etc/fstab", EntryKind::File, 0o644, now);
    fe.size = fstab.len() as u64;
    fe.segments = vec![Segment {
        offset: 0,
        len: fe.size,
    }];
    // Last entry wins: this replaces any fstab the tree had.
    root.add(&fe, &mut Bytes(fstab.as_bytes()))?;
    let summary = root.finish()?;

    // Size the disk after the root filesystem, then the GPT.
    let root_size = (summary.blocks_count * BLOCK_SIZE).div_ceil(MIB) * MIB;
    let disk_size = root_off + root_size + MIB;
    file.set_len(disk_size)
        .map_err(io_err("sizing the disk image"))?;
    let geo = Geometry::new(disk_size, 512)?;
    let mut parts: Vec<GptPartition> = fixed
        .iter()
        .map(|(n, code, size)| GptPartition {
            name: n.to_string(),
            type_guid: gpt::type_guid(code).unwrap_or(Guid::ZERO),
            size: *size,
            attributes: 0,
        })
        .collect();
    parts.push(GptPartition {
        name: "root".into(),
        type_guid: gpt::type_guid("8300").unwrap_or(Guid::ZERO),
        size: root_size,
        attributes: 0,
    });
    let guids = match cfg.source_date_epoch {
        // Same inputs, same disk, whatever the output is called.
        Some(s) => GuidSource::Seed(s.to_le_bytes().to_vec()),
        None => GuidSource::Random,
    };
    let entries = gpt::place(geo, MIB, &parts, &guids)?;
    let placed_root = entries.last().map(|e| e.first_lba * 512).unwrap_or(0);
    if placed_root != root_off {
        return Err(AssembleError::Io {
            what: "placing the root partition".into(),
            source: io::Error::other(format!(
                "root placed at {placed_root}, written at {root_off}"
            )),
        });
    }
    let mut w = file
        .try_clone()
        .map_err(io_err("duplicating the image file"))?;
    gpt::write_gpt(
        &mut w,
        geo,
        guids.disk().map_err(io_err("disk GUID"))?,
        &entries,
    )?;
    if let Some(b) = &bplan.bios {
        let bsp = entries
            .iter()
            .zip(&parts)
            .find(|(_, p)| p.name == "BSP")
            .map(|(e, _)| e);
        if let Some(bsp) = bsp {
            let target = grub_bios::CoreTarget {
                first_lba: bsp.first_lba,
                sectors: bsp.last_lba - bsp.first_lba + 1,
                place: "the BIOS boot partition".into(),
            };
            grub_bios::install(&file, 0, b, &target)?;
        }
    }
    for line in &bplan.report {
        eprintln!("dibr assemble: {line}");
    }
    file.sync_all().map_err(io_err("syncing the disk image"))?;

    // Outputs: conversions read the raw disk through its open descriptor.
    let mut outs = Vec::new();
    let raw_fd_path = {
        use std::os::fd::AsRawFd;
        PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()))
    };
    for &t in &cfg.types {
        let out = output_path(&cfg.image_name, t);
        match t {
            DiskType::Raw => continue,
            DiskType::Qcow2 => {
                qcow2::write_qcow2(
                    &raw_fd_path,
                    &out,
                    &Qcow2Options {
                        compress: !cfg.uncompressed,
                        ..Default::default()
                    },
                )?;
            }
            DiskType::Vhd => vhd::write_vhd(&raw_fd_path, &out)?,
        }
        outs.push(out);
    }
    if cfg.types.contains(&DiskType::Raw) {
        raw.commit()
            .map_err(io_err(format!("naming {}", raw_path.display())))?;
        outs.insert(0, raw_path);
    }
    eprintln!(
        "dibr assemble: disk {} MiB: {}root ext4 {} MiB ({} used) at {} MiB",
        disk_size / MIB,
        if esp_off.is_some() {
            format!("ESP {} MiB ({} files), ", ESP_SIZE / MIB, esp.len())
        } else {
            String::new()
        },
        root_size / MIB,
        crate::cli::mkfs::human((summary.blocks_count - summary.free_blocks) * BLOCK_SIZE),
        root_off / MIB
    );
    Ok(outs)
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
