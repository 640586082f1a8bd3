//! Plans the whole volume (tree, short names, cluster allocation), then
//! writes it into the region with positioned writes.

use super::boot_sector::{self, BootParams, BACKUP_BOOT_SECTOR, ROOT_CLUSTER};
use super::dir::{self, ATTR_ARCHIVE, ATTR_DIRECTORY, ATTR_VOLUME_ID};
use super::layout::{Layout, SECTOR};
use super::{FatEntry, FatError, FatKind, FatOptions, FatSource, FatStats};
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;

const FAT_EOC: u32 = 0x0FFF_FFFF;
/// FAT[1]: end-of-chain with the "clean shutdown" and "no I/O error" bits set.
const FAT1_CLEAN: u32 = 0x0FFF_FFFF;
const FAT0_MEDIA: u32 = 0x0FFF_FFF8;
const CHUNK: usize = 1 << 20;

enum Kind<'a> {
    Dir {
        children: Vec<usize>,
        by_name: HashMap<String, usize>,
    },
    File {
        src: FatSource<'a>,
        size: u64,
    },
}

struct Node<'a> {
    name: String,
    path: String,
    kind: Kind<'a>,
    short: [u8; 11],
    long: bool,
    first_cluster: u32,
    clusters: u32,
}

struct Plan<'a> {
    nodes: Vec<Node<'a>>,
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> FatError {
    let what = what.into();
    move |source| FatError::Io { what, source }
}

impl<'a> Plan<'a> {
    fn new() -> Self {
        let root = Node {
            name: String::new(),
            path: "/".into(),
            kind: Kind::Dir {
                children: Vec::new(),
                by_name: HashMap::new(),
            },
            short: [b' '; 11],
            long: false,
            first_cluster: ROOT_CLUSTER,
            clusters: 0,
        };
        Plan { nodes: vec![root] }
    }

    fn add(&mut self, e: &FatEntry<'a>) -> Result<(), FatError> {
        let comps: Vec<&str> = e
            .path
            .trim_start_matches('/')
            .split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .collect();
        if comps.is_empty() {
            if matches!(e.kind, FatKind::Dir) {
                return Ok(()); // the root itself
            }
            return Err(FatError::InvalidName {
                path: e.path.into(),
                reason: "empty path",
            });
        }
        let mut cur = 0usize;
        for (i, comp) in comps.iter().enumerate() {
            let path = comps[..=i].join("/");
            if let Some(reason) = dir::invalid_reason(comp) {
                return Err(FatError::InvalidName { path, reason });
            }
            let last = i + 1 == comps.len();
            let key = dir::fold(comp);
            let existing = match &self.nodes[cur].kind {
                Kind::Dir { by_name, .. } => by_name.get(&key).copied(),
                Kind::File { .. } => return Err(FatError::NotADirectory { path }),
            };
            if let Some(idx) = existing {
                let n = &self.nodes[idx];
                if !last && matches!(n.kind, Kind::File { .. }) {
                    return Err(FatError::NotADirectory {
                        path: e.path.into(),
                    });
                }
                let both_dirs =
                    matches!(n.kind, Kind::Dir { .. }) && (!last || matches!(e.kind, FatKind::Dir));
                if n.name != *comp || !both_dirs {
                    return Err(FatError::Collision {
                        path,
                        other: n.path.clone(),
                    });
                }
                cur = idx;
                continue;
            }
            let kind = match (last, e.kind) {
                (true, FatKind::File(src)) => {
                    let size = match src {
                        FatSource::Bytes(b) => b.len() as u64,
                        FatSource::Path(p) => std::fs::metadata(p)
                            .map_err(io_err(format!("{path}: {}", p.display())))?
                            .len(),
                    };
                    if size > u64::from(u32::MAX) {
                        return Err(FatError::FileTooLarge { path, size });
                    }
                    Kind::File { src, size }
                }
                _ => Kind::Dir {
                    children: Vec::new(),
                    by_name: HashMap::new(),
                },
            };
            let idx = self.nodes.len();
            self.nodes.push(Node {
                name: (*comp).to_string(),
                path,
                kind,
                short: [b' '; 11],
                long: false,
                first_cluster: 0,
                clusters: 0,
            });
            if let Kind::Dir { children, by_name } = &mut self.nodes[cur].kind {
                children.push(idx);
                by_name.insert(key, idx);
            }
            cur = idx;
        }
        Ok(())
    }

    fn children(&self, i: usize) -> &[usize] {
        match &self.nodes[i].kind {
            Kind::Dir { children, .. } => children,
            Kind::File { .. } => &[],
        }
    }

    /// Directories and files in pre-order (root first).
    fn preorder(&self) -> Vec<usize> {
        let mut out = Vec::with_capacity(self.nodes.len());
        let mut stack = vec![0usize];
        while let Some(i) = stack.pop() {
            out.push(i);
            stack.extend(self.children(i).iter().rev());
        }
        out
    }

    /// Short names, per directory: exact 8.3 names first (they own their
    /// name), then generated ones for the rest, in entry order.
    fn assign_short_names(&mut self, order: &[usize]) -> Result<(), FatError> {
        for &d in order {
            let kids = self.children(d).to_vec();
            let mut taken = HashSet::new();
            for &k in &kids {
                if let Some(s) = dir::exact_short(&self.nodes[k].name) {
                    taken.insert(s);
                    self.nodes[k].short = s;
                }
            }
            for &k in &kids {
                if dir::exact_short(&self.nodes[k].name).is_some() {
                    continue;
                }
                let s = dir::generate_short(&self.nodes[k].name, &mut taken).ok_or_else(|| {
                    FatError::InvalidName {
                        path: self.nodes[k].path.clone(),
                        reason: "no free short name left in its directory",
                    }
                })?;
                self.nodes[k].short = s;
                self.nodes[k].long = true;
            }
        }
        Ok(())
    }

    /// Number of 32-byte records directory `d` holds.
    fn dir_records(&self, d: usize, has_label: bool) -> usize {
        let own = if d == 0 { usize::from(has_label) } else { 2 };
        own + self
            .children(d)
            .iter()
            .map(|&k| {
                let n = &self.nodes[k];
                1 + if n.long {
                    n.name.encode_utf16().count().div_ceil(13)
                } else {
                    0
                }
            })
            .sum::<usize>()
    }
}

fn parse_label(label: &str) -> Result<Option<[u8; 11]>, FatError> {
    if label.is_empty() {
        return Ok(None);
    }
    let bad = |reason| FatError::InvalidLabel {
        label: label.into(),
        reason,
    };
    if label.len() > 11 {
        return Err(bad("longer than 11 characters"));
    }
    let up = label.to_ascii_uppercase();
    if !up.bytes().all(|c| {
        c == b' '
            || c.is_ascii_uppercase()
            || c.is_ascii_digit()
            || b"!#$%&'()-@^_`{}~".contains(&c)
    }) {
        return Err(bad(
            "only A-Z, 0-9, space and ! # $ % & ' ( ) - @ ^ _ ` { } ~ are allowed",
        ));
    }
    if up.starts_with(' ') {
        return Err(bad("cannot start with a space"));
    }
    let mut l = [b' '; 11];
    l[..up.len()].copy_from_slice(up.as_bytes());
    Ok(Some(l))
}

/// Writes a FAT32 volume of `size` bytes at byte `offset` of `file` holding
/// `entries`. Bytes of `file` outside `[offset, offset + size)` are not
/// touched (the file is extended if it is shorter); inside it, everything
/// not written is zero.
pub fn write_fat32(
    file: &File,
    offset: u64,
    size: u64,
    entries: &[FatEntry],
    opts: &FatOptions,
) -> Result<FatStats, FatError> {
    if !offset.is_multiple_of(SECTOR) {
        return Err(FatError::Misaligned { offset });
    }
    let layout = Layout::compute(size)?;
    let label = parse_label(&opts.label)?;
    let mut plan = Plan::new();
    for e in entries {
        plan.add(e)?;
    }
    let order = plan.preorder();
    plan.assign_short_names(&order)?;
    let used = allocate_clusters(&mut plan, &order, &layout, label.is_some())?;
    let vol = Volume::prepare(file, offset, size)?;
    let boot = write_boot_records(&vol, &layout, label, used, opts)?;
    write_fats(&vol, &layout, &plan, used)?;
    let dirs = write_dirs(&vol, &layout, &plan, &order, label, opts.timestamp)?;
    let (files, data_bytes) = write_file_data(&vol, &layout, &plan, &order)?;
    Ok(FatStats {
        cluster_bytes: layout.cluster_bytes(),
        layout,
        clusters_used: used,
        clusters_free: boot.free,
        files,
        dirs,
        data_bytes,
        volume_id: boot.volume_id,
    })
}

/// Clusters for every node, directories first (each a contiguous run from
/// the root cluster on); returns the clusters used.
fn allocate_clusters(
    plan: &mut Plan<'_>,
    order: &[usize],
    layout: &Layout,
    has_label: bool,
) -> Result<u32, FatError> {
    let cb = layout.cluster_bytes();
    let mut next = ROOT_CLUSTER;
    let available = layout.cluster_count;
    let mut used: u64 = 0;
    let dirs_then_files = order
        .iter()
        .filter(|&&i| matches!(plan.nodes[i].kind, Kind::Dir { .. }))
        .chain(
            order
                .iter()
                .filter(|&&i| matches!(plan.nodes[i].kind, Kind::File { .. })),
        )
        .copied()
        .collect::<Vec<_>>();
    for &i in &dirs_then_files {
        let bytes = match &plan.nodes[i].kind {
            Kind::Dir { .. } => {
                let recs = plan.dir_records(i, has_label);
                if recs > 65_536 {
                    return Err(FatError::DirTooLarge {
                        path: plan.nodes[i].path.clone(),
                        entries: recs,
                    });
                }
                (recs as u64 * 32).max(1)
            }
            Kind::File { size, .. } => *size,
        };
        let n = bytes.div_ceil(cb);
        used += n;
        if used > u64::from(available) {
            return Err(FatError::DoesNotFit {
                path: plan.nodes[i].path.clone(),
                needed: used,
                available,
                cluster_bytes: cb,
            });
        }
        let node = &mut plan.nodes[i];
        node.clusters = n as u32;
        node.first_cluster = if n == 0 { 0 } else { next };
        next += n as u32;
    }
    Ok(used as u32)
}

/// The volume's region of the image file.
struct Volume<'f> {
    file: &'f File,
    offset: u64,
}

impl<'f> Volume<'f> {
    /// Extend the file if needed and zero the region (punching a hole
    /// keeps a sparse image sparse).
    fn prepare(file: &'f File, offset: u64, size: u64) -> Result<Self, FatError> {
        let end = offset
            .checked_add(size)
            .ok_or(FatError::TooLarge { size })?;
        let len = file.metadata().map_err(io_err("image"))?.len();
        if len < end {
            file.set_len(end).map_err(io_err("image: extend"))?;
        }
        zero_region(file, offset, size)?;
        Ok(Volume { file, offset })
    }

    /// `buf` at byte `vol_off` of the volume.
    fn write(&self, buf: &[u8], vol_off: u64) -> Result<(), FatError> {
        self.file
            .write_all_at(buf, self.offset + vol_off)
            .map_err(io_err("image: write"))
    }
}

/// What the boot records say that the statistics repeat.
struct BootRecords {
    free: u32,
    volume_id: u32,
}

/// Boot sector, FSInfo and the third sector, and their backup copy.
fn write_boot_records(
    vol: &Volume<'_>,
    layout: &Layout,
    label: Option<[u8; 11]>,
    used: u32,
    opts: &FatOptions,
) -> Result<BootRecords, FatError> {
    let params = BootParams {
        layout,
        hidden_sectors: u32::try_from(vol.offset / SECTOR).unwrap_or(0),
        volume_id: opts.volume_id(),
        label: label.unwrap_or(*b"NO NAME    "),
    };
    let free = layout.cluster_count - used;
    let next_free = if free > 0 {
        ROOT_CLUSTER + used
    } else {
        0xFFFF_FFFF
    };
    let mut boot = Vec::with_capacity(3 * 512);
    boot.extend_from_slice(&boot_sector::boot_sector(&params));
    boot.extend_from_slice(&boot_sector::fsinfo_sector(free, next_free));
    boot.extend_from_slice(&boot_sector::third_sector());
    vol.write(&boot, 0)?;
    vol.write(&boot, u64::from(BACKUP_BOOT_SECTOR) * SECTOR)?;
    Ok(BootRecords {
        free,
        volume_id: params.volume_id,
    })
}

/// Both FATs: one contiguous chain per node.
fn write_fats(
    vol: &Volume<'_>,
    layout: &Layout,
    plan: &Plan<'_>,
    used: u32,
) -> Result<(), FatError> {
    let mut fat = vec![0u32; used as usize + 2];
    fat[0] = FAT0_MEDIA;
    fat[1] = FAT1_CLEAN;
    for n in &plan.nodes {
        for k in 0..n.clusters {
            let c = n.first_cluster + k;
            fat[c as usize] = if k + 1 == n.clusters { FAT_EOC } else { c + 1 };
        }
    }
    let fat_bytes: Vec<u8> = fat.iter().flat_map(|v| v.to_le_bytes()).collect();
    for copy in 0..super::layout::NUM_FATS {
        vol.write(&fat_bytes, layout.fat_offset(copy))?;
    }
    Ok(())
}

/// Every directory's records (the label in the root; `.` and `..`, long
/// names, short entries); returns the number of directories below the
/// root.
fn write_dirs(
    vol: &Volume<'_>,
    layout: &Layout,
    plan: &Plan<'_>,
    order: &[usize],
    label: Option<[u8; 11]>,
    t: i64,
) -> Result<u64, FatError> {
    let cb = layout.cluster_bytes();
    let mut dirs = 0u64;
    for &d in order
        .iter()
        .filter(|&&i| matches!(plan.nodes[i].kind, Kind::Dir { .. }))
    {
        let node = &plan.nodes[d];
        let mut buf: Vec<u8> = Vec::with_capacity(node.clusters as usize * cb as usize);
        if d == 0 {
            if let Some(l) = label {
                buf.extend_from_slice(&dir::short_entry(&l, ATTR_VOLUME_ID, 0, 0, t));
            }
        } else {
            dirs += 1;
            let parent = parent_cluster(plan, d);
            buf.extend_from_slice(&dir::short_entry(
                b".          ",
                ATTR_DIRECTORY,
                node.first_cluster,
                0,
                t,
            ));
            buf.extend_from_slice(&dir::short_entry(
                b"..         ",
                ATTR_DIRECTORY,
                parent,
                0,
                t,
            ));
        }
        for &k in plan.children(d) {
            let c = &plan.nodes[k];
            if c.long {
                for e in dir::lfn_entries(&c.name, &c.short) {
                    buf.extend_from_slice(&e);
                }
            }
            let (attr, size) = match c.kind {
                Kind::Dir { .. } => (ATTR_DIRECTORY, 0),
                Kind::File { size, .. } => (ATTR_ARCHIVE, size as u32),
            };
            buf.extend_from_slice(&dir::short_entry(&c.short, attr, c.first_cluster, size, t));
        }
        vol.write(&buf, layout.cluster_offset(node.first_cluster))?;
    }
    Ok(dirs)
}

/// File contents into their clusters, from memory or from a host file
/// (which must still have the size it was planned with); returns the file
/// count and their bytes.
fn write_file_data(
    vol: &Volume<'_>,
    layout: &Layout,
    plan: &Plan<'_>,
    order: &[usize],
) -> Result<(u64, u64), FatError> {
    let mut files = 0u64;
    let mut data_bytes = 0u64;
    let mut chunk = vec![0u8; CHUNK];
    for &i in order.iter() {
        let node = &plan.nodes[i];
        let Kind::File { src, size } = node.kind else {
            continue;
        };
        files += 1;
        data_bytes += size;
        if size == 0 {
            continue;
        }
        let base = layout.cluster_offset(node.first_cluster);
        match src {
            FatSource::Bytes(b) => vol.write(b, base)?,
            FatSource::Path(p) => {
                let what = format!("{}: {}", node.path, p.display());
                let mut f = File::open(p).map_err(io_err(what.clone()))?;
                let mut done = 0u64;
                loop {
                    let n = f.read(&mut chunk).map_err(io_err(what.clone()))?;
                    if n == 0 {
                        break;
                    }
                    if done + n as u64 > size {
                        return Err(FatError::SourceChanged {
                            path: node.path.clone(),
                        });
                    }
                    vol.write(&chunk[..n], base + done)?;
                    done += n as u64;
                }
                if done != size {
                    return Err(FatError::SourceChanged {
                        path: node.path.clone(),
                    });
                }
            }
        }
    }
    Ok((files, data_bytes))
}

/// The cluster a directory's `..` entry names: 0 when the parent is the root.
fn parent_cluster(plan: &Plan, d: usize) -> u32 {
    let path = &plan.nodes[d].path;
    match path.rfind('/') {
        None => 0,
        Some(_) => {
            // Find the parent by walking from the root.
            let mut cur = 0usize;
            let comps: Vec<&str> = path.split('/').collect();
            for comp in &comps[..comps.len() - 1] {
                if let Kind::Dir { by_name, .. } = &plan.nodes[cur].kind {
                    cur = by_name[&dir::fold(comp)];
                }
            }
            if cur == 0 {
                0
            } else {
                plan.nodes[cur].first_cluster
            }
        }
    }
}

/// Zeroes `[offset, offset + size)`: punch a hole, or write zeros where the
/// filesystem cannot.
fn zero_region(file: &File, offset: u64, size: u64) -> Result<(), FatError> {
    use rustix::fs::{fallocate, FallocateFlags};
    if fallocate(
        file,
        FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE,
        offset,
        size,
    )
    .is_ok()
    {
        return Ok(());
    }
    let zeros = vec![0u8; CHUNK];
    let mut done = 0u64;
    while done < size {
        let n = (size - done).min(CHUNK as u64) as usize;
        file.write_all_at(&zeros[..n], offset + done)
            .map_err(io_err("image: zero region"))?;
        done += n as u64;
    }
    Ok(())
}
