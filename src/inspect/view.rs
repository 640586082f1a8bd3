//! The image's filesystems "mounted" in userspace: the root ext4 plus the
//! ext4 filesystems its /etc/fstab mounts (a separate /boot in
//! particular), with path resolution that follows symlinks across them as
//! the kernel would (absolute targets restart at the image's root, at most
//! 40 links, as Linux's MAXSYMLINKS).

use std::collections::VecDeque;
use std::io::Write;

use super::disk::{FsKind, Image, Layout, Volume};
use super::InspectError;
use crate::ext4::read::{DirEntry, Ext4, Inode, ReadError, ROOT_INO};

const MAX_LINKS: usize = 40;
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
}

fn components(p: &str) -> VecDeque<String> {
    p.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .map(str::to_string)
        .collect()
}

impl<'a> View<'a> {
    fn err(&self, fs: usize, source: ReadError) -> InspectError {
        InspectError::Fs {
            image: self.image.path.clone(),
            volume: self.mounts[fs].volume.describe(),
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

    /// Finds the root filesystem and mounts what its fstab names.
    pub fn open(image: &'a Image, layout: &Layout) -> Result<View<'a>, InspectError> {
        let mut ext4: Vec<(Volume, Ext4<'a>)> = Vec::new();
        for v in &layout.volumes {
            if let FsKind::Ext4 { .. } = v.fs {
                if let Ok(fs) = Ext4::open(image.disk(), v.start) {
                    ext4.push((v.clone(), fs));
                }
            }
        }
        if ext4.is_empty() {
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
        let mut notes = Vec::new();
        // The root: labelled cloudimg-rootfs, else the filesystem with
        // /etc/fstab, else with /etc.
        let has = |fs: &Ext4, path: &[&[u8]]| -> bool {
            let mut ino = ROOT_INO;
            for c in path {
                let Ok(d) = fs.inode(ino) else { return false };
                match fs.lookup(&d, c) {
                    Ok(Some(i)) => ino = i,
                    _ => return false,
                }
            }
            true
        };
        let pick = ext4
            .iter()
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
            });
        let Some((root_i, why)) = pick else {
            let found: Vec<String> = ext4.iter().map(|(v, _)| v.describe()).collect();
            return Err(InspectError::NoRoot {
                image: image.path.clone(),
                found: found.join(", "),
            });
        };
        let (rv, rfs) = ext4.remove(root_i);
        notes.push(format!("root: {} ({why})", rv.describe()));
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
        };
        // Mount the other ext4 filesystems where fstab says.
        let fstab = view.read_file("/etc/fstab", 1 << 20)?.unwrap_or_default();
        let mut entries = parse_fstab(&String::from_utf8_lossy(&fstab));
        // Parents first (/boot before /boot/something).
        entries.sort_by_key(|(_, mp)| mp.len());
        for (spec, mp) in entries {
            if mp == "/" {
                continue;
            }
            if let Some(i) = ext4.iter().position(|(v, fs)| spec_matches(&spec, v, fs)) {
                let (v, fs) = ext4.remove(i);
                view.notes
                    .push(format!("{mp}: {} (fstab {spec})", v.describe()));
                view.mounts.push(Mount {
                    point: mp,
                    fs,
                    volume: v,
                });
            }
        }
        // No fstab entry for /boot, but the root's /boot has no kernel and
        // another filesystem does at its top: that one is /boot.
        if !view.mounts.iter().any(|m| m.point == "/boot") && !view.has_kernel_files("/boot")? {
            if let Some(i) = ext4.iter().position(|(_, fs)| {
                fs.inode(ROOT_INO)
                    .and_then(|d| fs.read_dir(&d))
                    .map(|es| es.iter().any(|e| e.name.starts_with(b"vmlinuz")))
                    .unwrap_or(false)
            }) {
                let (v, fs) = ext4.remove(i);
                view.notes.push(format!(
                    "/boot: {} (not in fstab; it has the kernels)",
                    v.describe()
                ));
                view.mounts.push(Mount {
                    point: "/boot".into(),
                    fs,
                    volume: v,
                });
            }
        }
        Ok(view)
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
        while let Some(c) = pending.pop_front() {
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
                    let fs = &self.mounts[dfs].fs;
                    let dir = fs.inode(dino).map_err(|e| self.err(dfs, e))?;
                    if !dir.is_dir() {
                        return Ok(None);
                    }
                    match fs
                        .lookup(&dir, c.as_bytes())
                        .map_err(|e| self.err(dfs, e))?
                    {
                        Some(i) => (dfs, i),
                        None => return Ok(None),
                    }
                };
            let fs = &self.mounts[cfs].fs;
            let ino = fs.inode(cino).map_err(|e| self.err(cfs, e))?;
            if ino.is_symlink() && (!pending.is_empty() || follow_last) {
                links += 1;
                if links > MAX_LINKS {
                    return Err(InspectError::SymlinkLoop {
                        image: self.image.path.clone(),
                        path: path.to_string(),
                    });
                }
                let target = fs.readlink(&ino).map_err(|e| self.err(cfs, e))?;
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
            None => self.mounts[fs].fs.inode(ino).map_err(|e| self.err(fs, e))?,
        };
        Ok(Some(Node {
            fs,
            inode,
            path: canon(&stack),
        }))
    }

    /// The contents of a regular file (symlinks followed), None if absent
    /// or not a regular file.
    pub fn read_file(&self, path: &str, limit: u64) -> Result<Option<Vec<u8>>, InspectError> {
        match self.resolve(path, true)? {
            Some(n) if n.inode.is_file() => {
                let fs = &self.mounts[n.fs].fs;
                fs.read_all(&n.inode, limit)
                    .map(Some)
                    .map_err(|e| self.err(n.fs, e))
            }
            _ => Ok(None),
        }
    }

    /// Streams a resolved regular file into `w`.
    pub fn copy_node(&self, n: &Node, w: &mut dyn Write) -> Result<u64, InspectError> {
        self.mounts[n.fs]
            .fs
            .copy_to(&n.inode, w)
            .map_err(|e| self.err(n.fs, e))
    }

    /// A directory's entries without "." and "..", None if absent.
    pub fn list_dir(&self, path: &str) -> Result<Option<Vec<DirEntry>>, InspectError> {
        match self.resolve(path, true)? {
            Some(n) if n.inode.is_dir() => {
                let fs = &self.mounts[n.fs].fs;
                let mut v = fs.read_dir(&n.inode).map_err(|e| self.err(n.fs, e))?;
                v.retain(|e| e.name != b"." && e.name != b"..");
                Ok(Some(v))
            }
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
                    .map_err(|e| self.err(n.fs, e))?;
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
