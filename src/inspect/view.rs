//! The image's filesystems "mounted" in userspace: the root ext4 plus the
//! ext4 filesystems its /etc/fstab mounts (a separate /boot in
//! particular), with path resolution that follows symlinks across them as
//! the kernel would (absolute targets restart at the image's root, at most
//! 40 links, as Linux's MAXSYMLINKS).
//!
//! Every directory is read once and kept sorted by name, so looking up a
//! path is a binary search per component however large the directory;
//! file contents are read anew each time. Both are charged to the
//! command's budgets (`limits`).

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::rc::Rc;

use super::disk::{FsKind, Image, Layout, Volume};
use super::limits::{Budget, Limits, DIR_ENTRY_OVERHEAD, MAX_COMPONENTS, MAX_LINKS, MIN_DIRENT};
use super::InspectError;
use crate::ext4::read::{DirEntry, Ext4, Inode, ReadError, ROOT_INO};

/// The largest directory read (outside the budgets) while choosing the
/// root and /boot filesystems: a root or /etc this large is no system's.
const PROBE_DIR: u64 = 1 << 20;
/// The label DIB (and dibr) give the root filesystem.
pub const ROOT_LABEL: &str = "cloudimg-rootfs";

struct Mount<'a> {
    point: String,
    fs: Ext4<'a>,
    volume: Volume,
}

/// A resolved file: which filesystem and its inode.
pub struct Node {
    pub fs: usize,
    pub inode: Inode,
    /// Its path with symlinks resolved.
    pub path: String,
}

pub struct View<'a> {
    image: &'a Image,
    mounts: Vec<Mount<'a>>,
    /// How the root was chosen, and anything noteworthy.
    pub notes: Vec<String>,
    pub limits: Limits,
    contents: Budget,
    dir_bytes: Budget,
    /// Directories read so far, by (filesystem, inode): entries sorted by
    /// name ("." and ".." left out).
    dirs: RefCell<HashMap<(usize, u32), Listing>>,
}

/// A directory's entries, sorted by name.
type Listing = Rc<[DirEntry]>;

fn components(p: &str) -> VecDeque<String> {
    p.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .map(str::to_string)
        .collect()
}

impl<'a> View<'a> {
    /// A read error, with the file (or the path being resolved) it hit.
    fn file_err(&self, fs: usize, path: &str, source: ReadError) -> InspectError {
        InspectError::File {
            image: self.image.path.clone(),
            volume: self.mounts[fs].volume.describe(),
            path: path.to_string(),
            source,
        }
    }

    /// The root volume and where each filesystem is mounted.
    pub fn mounts(&self) -> impl Iterator<Item = (&str, &Volume)> {
        self.mounts.iter().map(|m| (m.point.as_str(), &m.volume))
    }

    pub fn image_path(&self) -> &std::path::Path {
        &self.image.path
    }

    /// Where filesystem `fs` (a [`Node::fs`]) is mounted.
    pub fn mount_point(&self, fs: usize) -> &str {
        self.mounts.get(fs).map(|m| m.point.as_str()).unwrap_or("/")
    }

    pub fn root_volume(&self) -> &Volume {
        &self.mounts[0].volume
    }

    /// [`View::open_with`] the default limits.
    pub fn open(image: &'a Image, layout: &Layout) -> Result<View<'a>, InspectError> {
        View::open_with(image, layout, Limits::default())
    }

    /// Finds the root filesystem and mounts what its fstab names, as a
    /// table of contents: every readable ext4, the root among them, then
    /// the others where fstab says and a kernels-only /boot.
    pub fn open_with(
        image: &'a Image,
        layout: &Layout,
        limits: Limits,
    ) -> Result<View<'a>, InspectError> {
        let (mut ext4, bad) = open_ext4(image, layout)?;
        let Some((root_i, why)) = pick_root(&ext4) else {
            let found: Vec<String> = ext4.iter().map(|(v, _)| v.describe()).chain(bad).collect();
            return Err(InspectError::NoRoot {
                image: image.path.clone(),
                found: found.join(", "),
            });
        };
        let (rv, rfs) = ext4.remove(root_i);
        let mut notes = vec![format!("root: {} ({why})", rv.describe())];
        if rfs.needs_recovery() {
            notes.push(format!(
                "{}: the journal needs recovery (unclean shutdown); the newest changes may be missing",
                rv.describe()
            ));
        }
        let mut view = View {
            image,
            mounts: vec![Mount {
                point: "/".into(),
                fs: rfs,
                volume: rv,
            }],
            notes,
            limits,
            contents: Budget::new("file contents read", limits.read_budget),
            dir_bytes: Budget::new("directory listings kept", limits.dir_budget),
            dirs: RefCell::new(HashMap::new()),
        };
        view.mount_fstab(&mut ext4);
        view.mount_kernels_boot(&mut ext4);
        Ok(view)
    }

    /// Mount the other ext4 filesystems (taken out of `ext4`) where fstab
    /// says; an fstab that cannot be read mounts nothing more (and says
    /// so).
    fn mount_fstab(&mut self, ext4: &mut Vec<(Volume, Ext4<'a>)>) {
        let fstab = self
            .read_file("/etc/fstab", 1 << 20)
            .unwrap_or_else(|e| {
                self.notes.push(format!("/etc/fstab not read: {e}"));
                None
            })
            .unwrap_or_default();
        let mut entries = parse_fstab(&String::from_utf8_lossy(&fstab));
        // Parents first (/boot before /boot/something).
        entries.sort_by_key(|(_, mp)| mp.len());
        for (spec, mp) in entries {
            if mp == "/" {
                continue;
            }
            if let Some(i) = ext4.iter().position(|(v, fs)| spec_matches(&spec, v, fs)) {
                let (v, fs) = ext4.remove(i);
                self.notes
                    .push(format!("{mp}: {} (fstab {spec})", v.describe()));
                self.mounts.push(Mount {
                    point: mp,
                    fs,
                    volume: v,
                });
            }
        }
    }

    /// No fstab entry for /boot, but the root's /boot has no kernel and
    /// another filesystem (of `ext4`) does at its top: that one is /boot.
    fn mount_kernels_boot(&mut self, ext4: &mut Vec<(Volume, Ext4<'a>)>) {
        let boot_mounted = self.mounts.iter().any(|m| m.point == "/boot");
        if boot_mounted
            || self.has_kernel_files("/boot").unwrap_or_else(|e| {
                self.notes.push(format!("/boot not listed: {e}"));
                false
            })
        {
            return;
        }
        if let Some(i) = ext4.iter().position(|(_, fs)| {
            fs.inode(ROOT_INO)
                .and_then(|d| {
                    if d.size > PROBE_DIR {
                        return Ok(Vec::new());
                    }
                    fs.read_dir(&d)
                })
                .map(|es| es.iter().any(|e| e.name.starts_with(b"vmlinuz")))
                .unwrap_or(false)
        }) {
            let (v, fs) = ext4.remove(i);
            self.notes.push(format!(
                "/boot: {} (not in fstab; it has the kernels)",
                v.describe()
            ));
            self.mounts.push(Mount {
                point: "/boot".into(),
                fs,
                volume: v,
            });
        }
    }

    fn has_kernel_files(&self, dir: &str) -> Result<bool, InspectError> {
        Ok(self
            .list_dir(dir)?
            .unwrap_or_default()
            .iter()
            .any(|e| e.name.starts_with(b"vmlinuz")))
    }

    /// Resolves an absolute path; `follow_last` follows a final symlink.
    pub fn resolve(&self, path: &str, follow_last: bool) -> Result<Option<Node>, InspectError> {
        // The chain of directories walked so far: (name, fs, inode).
        let mut stack: Vec<(String, usize, u32)> = Vec::new();
        let mut pending = components(path);
        let mut links = 0usize;
        let canon = |stack: &[(String, usize, u32)]| -> String {
            let mut s = String::new();
            for (n, _, _) in stack {
                s.push('/');
                s.push_str(n);
            }
            if s.is_empty() {
                s.push('/');
            }
            s
        };
        let mut last: Option<Inode> = None;
        let mut walked = 0usize;
        while let Some(c) = pending.pop_front() {
            walked += 1;
            if walked > MAX_COMPONENTS {
                return Err(InspectError::PathTooLong {
                    image: self.image.path.clone(),
                    path: path.to_string(),
                });
            }
            if c == ".." {
                stack.pop();
                last = None;
                continue;
            }
            let (dfs, dino) = stack
                .last()
                .map(|(_, f, i)| (*f, *i))
                .unwrap_or((0, ROOT_INO));
            let child_path = if stack.is_empty() {
                format!("/{c}")
            } else {
                format!("{}/{c}", canon(&stack))
            };
            let (cfs, cino) =
                if let Some(m) = self.mounts.iter().position(|m| m.point == child_path) {
                    (m, ROOT_INO)
                } else {
                    let dir = self.mounts[dfs]
                        .fs
                        .inode(dino)
                        .map_err(|e| self.file_err(dfs, path, e))?;
                    if !dir.is_dir() {
                        return Ok(None);
                    }
                    let entries = self.dir(dfs, &dir, &canon(&stack))?;
                    match find(&entries, c.as_bytes()) {
                        Some(i) => (dfs, i),
                        None => return Ok(None),
                    }
                };
            let fs = &self.mounts[cfs].fs;
            let ino = fs.inode(cino).map_err(|e| self.file_err(cfs, path, e))?;
            if ino.is_symlink() && (!pending.is_empty() || follow_last) {
                links += 1;
                if links > MAX_LINKS {
                    return Err(InspectError::SymlinkLoop {
                        image: self.image.path.clone(),
                        path: path.to_string(),
                    });
                }
                let target = fs.readlink(&ino).map_err(|e| self.file_err(cfs, path, e))?;
                let target = String::from_utf8_lossy(&target).into_owned();
                if target.starts_with('/') {
                    stack.clear();
                }
                for t in components(&target).into_iter().rev() {
                    pending.push_front(t);
                }
                last = None;
                continue;
            }
            stack.push((c, cfs, cino));
            last = Some(ino);
        }
        let (fs, ino) = stack
            .last()
            .map(|(_, f, i)| (*f, *i))
            .unwrap_or((0, ROOT_INO));
        let inode = match last {
            Some(i) => i,
            None => self.mounts[fs]
                .fs
                .inode(ino)
                .map_err(|e| self.file_err(fs, path, e))?,
        };
        Ok(Some(Node {
            fs,
            inode,
            path: canon(&stack),
        }))
    }

    /// A directory's entries, sorted by name, without "." and "..": read
    /// once and kept, charged to the directory budget. The worst case is
    /// charged before reading (its bytes on disk, decoded into as many
    /// entries as fit), so decoding cannot pass the budget either; what
    /// the entries really take is kept charged.
    fn dir(&self, fs: usize, d: &Inode, path: &str) -> Result<Listing, InspectError> {
        if let Some(e) = self.dirs.borrow().get(&(fs, d.ino)) {
            return Ok(Rc::clone(e));
        }
        let worst = d
            .size
            .saturating_mul(2)
            .saturating_add((d.size / MIN_DIRENT).saturating_mul(DIR_ENTRY_OVERHEAD));
        self.dir_bytes
            .charge(worst)
            .map_err(|over| InspectError::Budget {
                image: self.image.path.clone(),
                path: path.to_string(),
                over,
            })?;
        let read = self.mounts[fs].fs.read_dir(d);
        let mut v = match read {
            Ok(v) => v,
            Err(e) => {
                self.dir_bytes.refund(worst);
                return Err(self.file_err(fs, path, e));
            }
        };
        v.retain(|e| e.name != b"." && e.name != b"..");
        // Stable: of two entries with one name (a corrupt directory), the
        // first on disk stays first, as a linear lookup would find it.
        v.sort_by(|a, b| a.name.cmp(&b.name));
        let held: u64 = v
            .iter()
            .map(|e| e.name.len() as u64 + DIR_ENTRY_OVERHEAD)
            .sum();
        self.dir_bytes.refund(worst.saturating_sub(held));
        let v: Listing = v.into();
        self.dirs.borrow_mut().insert((fs, d.ino), Rc::clone(&v));
        Ok(v)
    }

    /// The contents of a regular file (symlinks followed), None if absent
    /// or not a regular file. Refused by name when larger than `limit`
    /// or than what is left of the command's budget.
    pub fn read_file(&self, path: &str, limit: u64) -> Result<Option<Vec<u8>>, InspectError> {
        match self.resolve(path, true)? {
            Some(n) if n.inode.is_file() => {
                if n.inode.size > limit {
                    return Err(InspectError::TooLarge {
                        image: self.image.path.clone(),
                        path: path.to_string(),
                        what: "a file dibr reads",
                        size: n.inode.size,
                        limit,
                    });
                }
                self.contents
                    .charge(n.inode.size)
                    .map_err(|over| InspectError::Budget {
                        image: self.image.path.clone(),
                        path: path.to_string(),
                        over,
                    })?;
                let fs = &self.mounts[n.fs].fs;
                fs.read_all(&n.inode, limit)
                    .map(Some)
                    .map_err(|e| self.file_err(n.fs, path, e))
            }
            _ => Ok(None),
        }
    }

    /// The bytes of file data a resolved regular file has allocated
    /// (holes and unwritten extents not counted).
    pub fn allocated(&self, n: &Node) -> Result<u64, InspectError> {
        self.mounts[n.fs]
            .fs
            .allocated_bytes(&n.inode)
            .map_err(|e| self.file_err(n.fs, &n.path, e))
    }

    /// Streams a resolved regular file into `w`.
    pub fn copy_node(&self, n: &Node, w: &mut dyn Write) -> Result<u64, InspectError> {
        self.mounts[n.fs]
            .fs
            .copy_to(&n.inode, w)
            .map_err(|e| self.file_err(n.fs, &n.path, e))
    }

    /// A directory's entries without "." and "..", sorted by name; None
    /// if absent.
    pub fn list_dir(&self, path: &str) -> Result<Option<Listing>, InspectError> {
        match self.resolve(path, true)? {
            Some(n) if n.inode.is_dir() => Ok(Some(self.dir(n.fs, &n.inode, &n.path)?)),
            _ => Ok(None),
        }
    }

    /// A symlink's target (not followed), None if not a symlink.
    pub fn readlink(&self, path: &str) -> Result<Option<String>, InspectError> {
        match self.resolve(path, false)? {
            Some(n) if n.inode.is_symlink() => {
                let t = self.mounts[n.fs]
                    .fs
                    .readlink(&n.inode)
                    .map_err(|e| self.file_err(n.fs, path, e))?;
                Ok(Some(String::from_utf8_lossy(&t).into_owned()))
            }
            _ => Ok(None),
        }
    }

    /// Whether the path exists (a dangling symlink counts, as `lstat`).
    pub fn exists(&self, path: &str) -> Result<bool, InspectError> {
        Ok(self.resolve(path, false)?.is_some())
    }
}

/// Every ext4 volume of the layout that opens, and the ones with the ext4
/// magic that do not (named when no root is found: one of them may have
/// been it). No readable ext4 at all is an error naming what was found.
#[allow(clippy::type_complexity)]
fn open_ext4<'a>(
    image: &'a Image,
    layout: &Layout,
) -> Result<(Vec<(Volume, Ext4<'a>)>, Vec<String>), InspectError> {
    let mut ext4: Vec<(Volume, Ext4<'a>)> = Vec::new();
    for v in &layout.volumes {
        if let FsKind::Ext4 { .. } = v.fs {
            if let Ok(fs) = Ext4::open(image.disk(), v.start) {
                ext4.push((v.clone(), fs));
            }
        }
    }
    let bad: Vec<String> = layout
        .volumes
        .iter()
        .filter(|v| matches!(v.fs, FsKind::BadExt4 { .. }))
        .map(Volume::describe)
        .collect();
    if ext4.is_empty() {
        if !bad.is_empty() {
            return Err(InspectError::BadExt4 {
                image: image.path.clone(),
                found: bad.join(", "),
            });
        }
        let found: Vec<String> = layout.volumes.iter().map(Volume::describe).collect();
        return Err(InspectError::NoExt4 {
            image: image.path.clone(),
            found: if found.is_empty() {
                "no partitions".into()
            } else {
                found.join(", ")
            },
        });
    }
    Ok((ext4, bad))
}

/// The root: labelled cloudimg-rootfs, else the filesystem with
/// /etc/fstab, else with /etc. Returns its index and why it was chosen.
fn pick_root(ext4: &[(Volume, Ext4<'_>)]) -> Option<(usize, String)> {
    let has = |fs: &Ext4, path: &[&[u8]]| -> bool {
        let mut ino = ROOT_INO;
        for c in path {
            let Ok(d) = fs.inode(ino) else { return false };
            if d.size > PROBE_DIR {
                return false;
            }
            match fs.lookup(&d, c) {
                Ok(Some(i)) => ino = i,
                _ => return false,
            }
        }
        true
    };
    ext4.iter()
        .position(|(_, fs)| fs.label() == ROOT_LABEL)
        .map(|i| (i, format!("labelled {ROOT_LABEL}")))
        .or_else(|| {
            ext4.iter()
                .position(|(_, fs)| has(fs, &[b"etc", b"fstab"]))
                .map(|i| (i, "has /etc/fstab".to_string()))
        })
        .or_else(|| {
            ext4.iter()
                .position(|(_, fs)| has(fs, &[b"etc"]))
                .map(|i| (i, "has /etc".to_string()))
        })
}

/// The inode of `name` in entries sorted by name (the first of
/// duplicates).
fn find(entries: &[DirEntry], name: &[u8]) -> Option<u32> {
    let i = entries.partition_point(|e| e.name.as_slice() < name);
    entries.get(i).filter(|e| e.name == name).map(|e| e.ino)
}

/// fstab's (spec, mount point) pairs for ext2/3/4 (and `auto`) lines.
pub fn parse_fstab(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim();
            if l.starts_with('#') {
                return None;
            }
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 3 || !matches!(f[2], "ext2" | "ext3" | "ext4" | "auto") {
                return None;
            }
            let mp = f[1].trim_end_matches('/');
            Some((
                f[0].to_string(),
                if mp.is_empty() { "/".into() } else { mp.into() },
            ))
        })
        .collect()
}

/// Whether an fstab spec (`LABEL=`, `UUID=`, `PARTUUID=`, `PARTLABEL=`,
/// `/dev/disk/by-*/…`) names this volume.
fn spec_matches(spec: &str, v: &Volume, fs: &Ext4) -> bool {
    let (kind, val) = if let Some((k, v)) = spec.split_once('=') {
        (k.to_ascii_uppercase(), v.trim_matches('"').to_string())
    } else if let Some(rest) = spec.strip_prefix("/dev/disk/by-") {
        match rest.split_once('/') {
            Some(("label", l)) => ("LABEL".into(), l.to_string()),
            Some(("uuid", u)) => ("UUID".into(), u.to_string()),
            Some(("partuuid", u)) => ("PARTUUID".into(), u.to_string()),
            Some(("partlabel", l)) => ("PARTLABEL".into(), l.to_string()),
            _ => return false,
        }
    } else {
        return false;
    };
    match kind.as_str() {
        "LABEL" => fs.label() == val,
        "UUID" => fs.uuid().eq_ignore_ascii_case(&val),
        "PARTUUID" => v
            .part_uuid
            .as_deref()
            .is_some_and(|u| u.eq_ignore_ascii_case(&val)),
        "PARTLABEL" => v.part_label.as_deref() == Some(val.as_str()),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_by_name_first_of_duplicates() {
        let e = |name: &str, ino| DirEntry {
            name: name.as_bytes().to_vec(),
            ino,
            ftype: 1,
        };
        let mut v = vec![e("vmlinuz", 12), e("boot", 11), e("a", 10), e("boot", 13)];
        v.sort_by(|a, b| a.name.cmp(&b.name));
        assert_eq!(find(&v, b"boot"), Some(11));
        assert_eq!(find(&v, b"a"), Some(10));
        assert_eq!(find(&v, b"vmlinuz"), Some(12));
        assert_eq!(find(&v, b"b"), None);
        assert_eq!(find(&v, b"zz"), None);
        assert_eq!(find(&[], b"a"), None);
    }

    #[test]
    fn fstab_lines() {
        let t = "# c\nLABEL=cloudimg-rootfs / ext4 defaults 0 1\nLABEL=MKFS_ESP /boot/efi vfat x 0 2\nUUID=ab /boot/ ext4 d 0 2\n";
        assert_eq!(
            parse_fstab(t),
            vec![
                ("LABEL=cloudimg-rootfs".to_string(), "/".to_string()),
                ("UUID=ab".to_string(), "/boot".to_string())
            ]
        );
    }
}
