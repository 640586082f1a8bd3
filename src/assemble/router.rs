//! The one pass over the tree: [`Assembly::place_entry`] decides for every
//! entry which filesystem it goes to (longest mount point wins, as the
//! mounts stack in DIB's `mnt/`), replaces `/etc/fstab`, keeps the
//! manifests and hands hooks the files they asked for.

use std::io;
use std::path::Path;

use super::hooks::{AssembleHooks, KEEP_LIMIT};
use super::plan::{Plan, Region, Target};
use super::{io_err, AssembleError};
use crate::ext4::{self, Builder};
use crate::source::Source;
use crate::tree::{Entry, EntryKind, FileData, Segment, Timestamp};

/// File data held in memory.
pub(super) struct Bytes<'a>(pub(super) &'a [u8]);

impl FileData for Bytes<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.0.len().min(buf.len());
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

pub(super) fn read_all(
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

pub(super) fn synthetic(path: &[u8], kind: EntryKind, mode: u32, now: Timestamp) -> Entry {
    Entry::new(path.to_vec(), kind, mode, now)
}

/// dib-block-device writefstab `cp`s the generated fstab over whatever the
/// tree has at /etc/fstab (a directory excepted): the entry that replaces
/// `e`, a file of `len` bytes keeping a regular file's mode (else 0644).
/// One rule for the disk and the tar outputs.
pub(super) fn fstab_replacement(e: &Entry, len: u64) -> Option<Entry> {
    if e.path != b"etc/fstab" || matches!(e.kind, EntryKind::Dir) {
        return None;
    }
    let mode = if e.kind == EntryKind::File {
        e.mode
    } else {
        0o644
    };
    Some(file_entry(Entry { mode, ..e.clone() }, len))
}

pub(super) fn file_entry(mut e: Entry, len: u64) -> Entry {
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
pub(super) enum Writer {
    Ext4(Box<Builder>),
    Xfs(Box<crate::xfs::Builder>),
    /// (path inside the fs, content; None for a directory); bytes so far.
    Vfat(Vec<(String, Option<Vec<u8>>)>, u64),
}

/// Files kept from the tree for NAME.d/ (DIB's manifests element:
/// `/etc/dib-manifests` copied to `${IMAGE_NAME}.d/dib-manifests`).
const MANIFEST_DIR: &[u8] = b"etc/dib-manifests";

/// The state of one assembly while the tree streams.
pub struct Assembly<'h> {
    pub(super) plan: Plan,
    pub(super) writers: Vec<Writer>,
    pub(super) regions: Vec<Region>,
    pub(super) fstab: Vec<u8>,
    pub(super) saw_fstab: bool,
    /// Mount points (index into filesystems) whose directory was in the tree.
    pub(super) saw_mount_point: Vec<bool>,
    pub(super) now: Timestamp,
    pub(super) hooks: &'h mut dyn AssembleHooks,
    pub(super) manifests: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Entries the disk got that the tree did not have (missing mount points,
/// a generated fstab, hook files), for the tar outputs.
pub(super) struct Added {
    pub(super) entries: Vec<Entry>,
    /// Content of each entry (empty for directories).
    pub(super) data: Vec<Vec<u8>>,
}

impl<'h> Assembly<'h> {
    pub(super) fn new(
        plan: Plan,
        writers: Vec<Writer>,
        regions: Vec<Region>,
        now: Timestamp,
        hooks: &'h mut dyn AssembleHooks,
    ) -> Self {
        let fstab = plan.fstab().into_bytes();
        let n_fs = plan.filesystems.len();
        Assembly {
            plan,
            writers,
            regions,
            fstab,
            saw_fstab: false,
            saw_mount_point: vec![false; n_fs],
            now,
            hooks,
            manifests: Vec::new(),
        }
    }
}

impl Assembly<'_> {
    /// One pass over the tree.
    pub(super) fn place_tree(&mut self, from: &Path) -> Result<(), AssembleError> {
        let mut src = Source::open(from)?;
        while let Some(e) = src.next_entry()? {
            self.place_entry(&e, src.data())?;
        }
        Ok(())
    }

    /// Seam (b): what the tree lacked (mount point directories, the
    /// fstab), then the hook's additions.
    pub(super) fn add_missing(&mut self) -> Result<Added, AssembleError> {
        let mut added: Vec<Entry> = Vec::new();
        let mut added_data: Vec<Vec<u8>> = Vec::new();
        for i in 0..self.plan.filesystems.len() {
            let rel = self.rel_of(i).to_vec();
            if !rel.is_empty()
                && !self.saw_mount_point[i]
                && self.plan.filesystems[i].mount.is_some()
            {
                let e = synthetic(&rel, EntryKind::Dir, 0o755, self.now);
                self.route(&e, &mut Bytes(&[]))?;
                added.push(e);
                added_data.push(Vec::new());
            }
        }
        if !self.saw_fstab {
            let e = file_entry(
                synthetic(b"etc/fstab", EntryKind::File, 0o644, self.now),
                self.fstab.len() as u64,
            );
            let fstab = self.fstab.clone();
            self.place(&e, &mut Bytes(&fstab))?;
            added.push(e);
            added_data.push(fstab);
        }
        let extras = self
            .hooks
            .extra_entries(&self.plan)
            .map_err(AssembleError::Hook)?;
        for x in extras {
            let path = crate::tree::normalize_path(x.path.as_bytes()).map_err(|err| {
                AssembleError::Hook(format!("extra entry {:?}: {err}", x.path).into())
            })?;
            let e = match &x.data {
                None => synthetic(&path, EntryKind::Dir, x.mode, self.now),
                Some(d) => file_entry(
                    synthetic(&path, EntryKind::File, x.mode, self.now),
                    d.len() as u64,
                ),
            };
            let d = x.data.clone().unwrap_or_default();
            self.place(&e, &mut Bytes(&d))?;
            added.push(e);
            added_data.push(d);
        }
        Ok(Added {
            entries: added,
            data: added_data,
        })
    }

    fn mount_str(&self, i: usize) -> String {
        self.plan.filesystems[i]
            .mount
            .as_ref()
            .map(|m| m.point.clone())
            .unwrap_or_else(|| "(not mounted)".into())
    }

    pub(super) fn rel_of(&self, i: usize) -> &[u8] {
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
                }
                .to_string(),
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

    pub(super) fn place(
        &mut self,
        e: &Entry,
        data: &mut dyn FileData,
    ) -> Result<(), AssembleError> {
        if let Some(fe) = fstab_replacement(e, self.fstab.len() as u64) {
            self.saw_fstab = true;
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

    pub(super) fn route(
        &mut self,
        e: &Entry,
        data: &mut dyn FileData,
    ) -> Result<(), AssembleError> {
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
            Writer::Xfs(b) => {
                let r = b.add(e, data);
                let f = &self.plan.filesystems[i];
                r.map_err(|err| super::xfs_fs::error(f, limit, err))
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
