//! The finish phase: once every entry is in, number the inodes, write
//! directories, extent-tree and xattr blocks and the journal after the file
//! data, choose the group count, and write bitmaps, inode tables, group
//! descriptors and superblocks.
//!
//! Group count and inodes per group: see `groups.rs` (the growth ceiling
//! against the virtual size).

use std::collections::HashMap;
use std::os::unix::fs::FileExt;

use super::builder::{Builder, Kind, NodeId, ROOT};
use super::csum;
use super::dir::{self, DirEntry, HashInfo};
use super::error::{Error, Result};
use super::extent::{self, Extent};
use super::groups::{self, growth_ceiling, Geometry};
use super::inode::{self, InodeRecord};
use super::journal;
use super::layout::{
    group_overhead, has_super, itable_blocks, meta_gdt_block, Allocator, BLOCKS_PER_GROUP,
    BLOCK_SIZE, INODE_SIZE, META_BG_SIZE,
};
use super::nodes::Full;
use super::superblock::{self, GroupDesc, SuperParams, BG_INODE_UNINIT, BG_INODE_ZEROED};
use super::xattr;

const FIRST_INO: u32 = 11;
const LPF_BLOCKS: usize = 4;

/// What was built, for the summary line and tests.
#[derive(Clone, Debug)]
pub struct Summary {
    pub blocks_count: u64,
    pub free_blocks: u64,
    pub inodes_count: u32,
    pub used_inodes: u32,
    pub inodes_per_group: u32,
    pub groups: u64,
    pub journal_blocks: u64,
    pub growth_ceiling_bytes: u64,
    /// The growth ceiling asked for, when a fixed size made it lower.
    pub ceiling_lowered_from: Option<u64>,
    pub uuid: [u8; 16],
    pub entries: u64,
    pub data_bytes: u64,
    /// Xattrs of namespaces ext4 cannot hold (`btrfs.*`, `system.nfs4_acl`,
    /// ...), dropped as GNU tar extracting onto ext4 would, and the first
    /// as "'name' on 'path'".
    pub foreign_xattrs: u64,
    pub first_foreign_xattr: Option<String>,
}

fn file_type(k: &Kind) -> u8 {
    match k {
        Kind::File { .. } => 1,
        Kind::Dir(_) => 2,
        Kind::Chr(..) => 3,
        Kind::Blk(..) => 4,
        Kind::Fifo => 5,
        Kind::Sock => 6,
        Kind::Symlink { .. } => 7,
        Kind::Removed => 0,
    }
}

/// What the layout decided beyond the node itself, kept sparse (most
/// nodes need nothing: a file's `i_block` follows from its extents), so
/// that finishing a tree costs no per-node record.
#[derive(Default)]
struct Finals {
    /// Files with extent-tree blocks: the root `i_block` and the tree's
    /// block count.
    trees: HashMap<NodeId, ([u8; 60], u64)>,
    /// Per directory record: its blocks' extent root and counts.
    dirs: Vec<Final>,
    /// Nodes with an xattr block.
    file_acl: HashMap<NodeId, u64>,
}

/// One inode's layout-dependent fields.
#[derive(Clone)]
struct Final {
    i_block: [u8; 60],
    flags: u32,
    size: u64,
    blocks: u64,
    file_acl: u64,
    links: u32,
}

impl Default for Final {
    fn default() -> Self {
        Final {
            i_block: [0; 60],
            flags: 0,
            size: 0,
            blocks: 0,
            file_acl: 0,
            links: 0,
        }
    }
}

/// A bitmap over all blocks of the filesystem, one bit per block.
struct BlockMap {
    bits: Vec<u8>,
}

impl BlockMap {
    fn new(groups: u64) -> Self {
        BlockMap {
            bits: vec![0u8; (groups * BLOCKS_PER_GROUP / 8) as usize],
        }
    }
    fn mark(&mut self, start: u64, len: u64) {
        let mut b = start;
        let end = start + len;
        while b < end && !b.is_multiple_of(8) {
            self.bits[(b / 8) as usize] |= 1 << (b % 8);
            b += 1;
        }
        while b + 8 <= end {
            self.bits[(b / 8) as usize] = 0xFF;
            b += 8;
        }
        while b < end {
            self.bits[(b / 8) as usize] |= 1 << (b % 8);
            b += 1;
        }
    }
    fn group(&self, g: u64) -> &[u8] {
        let s = (g * BLOCKS_PER_GROUP / 8) as usize;
        &self.bits[s..s + (BLOCKS_PER_GROUP / 8) as usize]
    }
}

/// ext4's UUID and hash seed from `parts` (its own domain: the bytes
/// every reproducible ext4 image so far has carried).
fn derive(tag: &str, parts: &[&[u8]]) -> [u8; 16] {
    crate::uuid::v4(crate::uuid::digest16("dibr-ext4:", tag, parts))
}

impl Builder {
    fn werr(&self, e: std::io::Error) -> Error {
        Error::Write {
            path: self.path.clone(),
            source: e,
        }
    }

    fn write_at(&self, buf: &[u8], block: u64) -> Result<()> {
        self.file
            .write_all_at(buf, self.base + block * BLOCK_SIZE)
            .map_err(|e| self.werr(e))
    }

    fn no_space(&self, what: &str, needed_blocks: u64) -> Error {
        Error::DoesNotFit {
            size_bytes: self.alloc.limit().unwrap_or(0) * BLOCK_SIZE,
            needed_bytes: needed_blocks * BLOCK_SIZE,
            exact: false,
            detail: format!("ran out of room for {what}"),
        }
    }

    fn alloc_runs(&mut self, n: u64, what: &str, map: &mut Vec<(u64, u64)>) -> Result<Vec<u64>> {
        let est = self.alloc.next() + n;
        let runs = self
            .alloc
            .alloc_runs(n)
            .ok_or_else(|| self.no_space(what, est))?;
        let mut blocks = Vec::with_capacity(n as usize);
        for r in runs {
            map.push((r.start, r.len));
            blocks.extend(r.start..r.start + r.len);
        }
        Ok(blocks)
    }

    /// Lay out and write all metadata; returns the summary. The caller
    /// renames the file into place afterwards.
    ///
    /// The stages run in this order because each allocates after the one
    /// before (file data, then extent trees, directories, xattr blocks, the
    /// journal, and the per-group tables last): the order is part of the
    /// image's bytes.
    pub fn finish(mut self) -> Result<Summary> {
        self.flush_gather()?;
        self.tree.drop_indexes();
        let lpf = self.make_lost_found()?;
        let num = self.number_inodes(lpf)?;
        let id = self.identity();
        let mut finals = Finals {
            dirs: vec![Final::default(); self.tree.dirs.len()],
            ..Default::default()
        };
        // Every used block run, for the bitmaps.
        let mut used: Vec<(u64, u64)> = Vec::new();
        self.write_extent_trees(&num, id.fs_seed, &mut finals, &mut used)?;
        self.write_dirs(&num, &id, &mut finals, &mut used)?;
        let ibody = self.write_xattrs(&num, id.fs_seed, &mut finals, &mut used)?;
        let jnl = self.write_journal(&id, num.last_ino, &mut used)?;
        let geo = self.place_groups(num.last_ino, &mut used)?;
        let groups = self.write_bitmaps(&geo, &num, &used, id.fs_seed)?;
        let itables = InodeTables {
            num: &num,
            finals: &finals,
            ibody: &ibody,
            jnl: &jnl,
            fs_seed: id.fs_seed,
        };
        let dirs_in_group = self.write_inode_tables(&geo, &itables)?;
        let free_blocks = self.write_descriptors(&geo, &groups, &dirs_in_group, id.fs_seed)?;
        let inodes_count = geo.ipg as u64 * geo.groups;
        self.write_superblocks(
            geo.groups,
            &SuperParams {
                inodes_count: inodes_count as u32,
                blocks_count: geo.blocks_count,
                r_blocks_count: reserved_blocks(geo.blocks_count, self.opts.reserved_per_mille),
                free_blocks,
                free_inodes: (inodes_count - num.last_ino as u64) as u32,
                inodes_per_group: geo.ipg,
                time: self.now.secs.clamp(0, u32::MAX as i64) as u32,
                uuid: id.uuid,
                label: self.opts.label,
                hash_seed: id.hash_seed,
                jnl_blocks: jnl.jnl_blocks(),
                overhead_clusters: 0,
            },
        )?;
        self.extend_and_sync(geo.blocks_count)?;
        Ok(Summary {
            blocks_count: geo.blocks_count,
            free_blocks,
            inodes_count: inodes_count as u32,
            used_inodes: num.last_ino,
            inodes_per_group: geo.ipg,
            groups: geo.groups,
            journal_blocks: jnl.blocks,
            growth_ceiling_bytes: growth_ceiling(geo.ipg),
            ceiling_lowered_from: geo.lowered_from,
            uuid: id.uuid,
            entries: self.stats.entries,
            data_bytes: self.stats.data_bytes,
            foreign_xattrs: self.stats.foreign_xattrs,
            first_foreign_xattr: self.stats.first_foreign_xattr.take(),
        })
    }

    /// lost+found: keep the tree's own, else make mke2fs's.
    fn make_lost_found(&mut self) -> Result<LostFound> {
        let lpf_name: &[u8] = b"lost+found";
        let root = self.tree.dir_of(ROOT).expect("the root is a directory");
        let lpf = match self.tree.get(root, lpf_name) {
            Some(id) if self.tree.is_dir(id) => Some(id),
            Some(_) => None,
            None => {
                let too_many = || Error::Option("more than 2^32 entries".into());
                let id = self
                    .tree
                    .new_dir(0o700, ROOT, self.now)
                    .map_err(|Full| too_many())?;
                self.tree
                    .insert(root, lpf_name, id)
                    .map_err(|Full| too_many())?;
                Some(id)
            }
        };
        let is_new = lpf
            .and_then(|id| self.tree.dir_of(id))
            .is_some_and(|d| self.tree.live(d).next().is_none());
        Ok(LostFound { id: lpf, is_new })
    }

    /// Inode numbers: root 2, lost+found 11, then breadth-first per
    /// directory so siblings sit together.
    fn number_inodes(&self, lpf: LostFound) -> Result<Numbering> {
        let mut ino_of = vec![0u32; self.tree.len()];
        ino_of[ROOT as usize] = 2;
        if let Some(l) = lpf.id {
            ino_of[l as usize] = FIRST_INO;
        }
        let mut order: Vec<NodeId> = Vec::new();
        let mut next_ino = if lpf.id.is_some() {
            FIRST_INO + 1
        } else {
            FIRST_INO
        };
        let mut stack = vec![ROOT];
        let mut dirs_in_order = vec![ROOT];
        let mut subdirs = Vec::new();
        while let Some(d) = stack.pop() {
            let Some(drec) = self.tree.dir_of(d) else {
                continue;
            };
            subdirs.clear();
            for (_, c) in self.tree.live(drec) {
                if ino_of[c as usize] == 0 {
                    ino_of[c as usize] = next_ino;
                    next_ino = next_ino
                        .checked_add(1)
                        .ok_or_else(|| Error::Option("more than 2^32 inodes".into()))?;
                    order.push(c);
                }
                if self.tree.is_dir(c) {
                    subdirs.push(c);
                }
            }
            for s in subdirs.iter().rev() {
                stack.push(*s);
            }
            dirs_in_order.extend_from_slice(&subdirs);
        }
        Ok(Numbering {
            ino_of,
            order,
            dirs_in_order,
            last_ino: next_ino - 1,
            lpf,
        })
    }

    /// Identity: UUID and hash seed, derived from SOURCE_DATE_EPOCH, the
    /// label and the tree's size when it is set, else random.
    fn identity(&self) -> Identity {
        let label = self.opts.label;
        let (uuid, hash_seed) = match self.opts.source_date_epoch {
            Some(epoch) => {
                let parts: [&[u8]; 4] = [
                    &epoch.to_le_bytes(),
                    &label,
                    &(self.tree.len() as u64).to_le_bytes(),
                    &self.alloc.next().to_le_bytes(),
                ];
                (derive("uuid", &parts), derive("hash_seed", &parts))
            }
            None => (crate::uuid::random(), crate::uuid::random()),
        };
        let uuid = self.opts.uuid.unwrap_or(uuid);
        let hinfo = HashInfo {
            seed: [
                u32::from_le_bytes(hash_seed[0..4].try_into().unwrap_or_default()),
                u32::from_le_bytes(hash_seed[4..8].try_into().unwrap_or_default()),
                u32::from_le_bytes(hash_seed[8..12].try_into().unwrap_or_default()),
                u32::from_le_bytes(hash_seed[12..16].try_into().unwrap_or_default()),
            ],
            signed: false,
        };
        Identity {
            uuid,
            hash_seed,
            fs_seed: csum::fs_seed(&uuid),
            hinfo,
        }
    }

    /// Files: extent-tree blocks where more than four extents need them
    /// (the in-inode roots are made with the inode records). The data and
    /// slow symlink blocks are marked from the tree by `write_bitmaps`,
    /// not copied into `used` (16 bytes per file).
    fn write_extent_trees(
        &mut self,
        num: &Numbering,
        fs_seed: u32,
        finals: &mut Finals,
        used: &mut Vec<(u64, u64)>,
    ) -> Result<()> {
        for &id in &num.order {
            let ino = num.ino_of[id as usize];
            let node = self.tree.node(id);
            if node.nlink() > 65000 && !self.tree.is_dir(id) {
                return Err(Error::Option(format!(
                    "inode {ino} has {} hard links; ext4 allows 65000",
                    node.nlink()
                )));
            }
            let range = match node.kind {
                Kind::File { extents, .. } => extents,
                _ => continue,
            };
            let extents = self.tree.extents(range);
            let n_tree = extent::tree_blocks(extents.len());
            if n_tree == 0 {
                continue;
            }
            let extents = extents.to_vec();
            let tree_pblks = self.alloc_runs(n_tree, "extent trees", used)?;
            let tree = extent::build(&extents, &tree_pblks, csum::inode_seed(fs_seed, ino, 0));
            for (p, b) in &tree.blocks {
                self.write_at(b, *p)?;
            }
            finals.trees.insert(id, (tree.i_block, n_tree));
        }
        Ok(())
    }

    /// The inode fields of node `id` that its layout decides.
    fn final_of(&self, id: NodeId, finals: &Finals) -> Final {
        let node = self.tree.node(id);
        let mut f = Final {
            links: node.nlink(),
            ..Default::default()
        };
        match node.kind {
            Kind::File { size, extents } => {
                let ex = self.tree.extents(extents);
                let data_blocks: u64 = ex.iter().map(|e| e.len as u64).sum();
                let (i_block, n_tree) = match finals.trees.get(&id) {
                    Some(&t) => t,
                    None => (extent::build(ex, &[], 0).i_block, 0),
                };
                f.i_block = i_block;
                f.flags = inode::EXT4_EXTENTS_FL;
                f.size = size;
                f.blocks = data_blocks + n_tree;
            }
            Kind::Symlink { target, block } => {
                f.size = target.len() as u64;
                if block != 0 {
                    let mut ex = Vec::new();
                    extent::push(&mut ex, 0, block, 1);
                    f.i_block = extent::build(&ex, &[], 0).i_block;
                    f.flags = inode::EXT4_EXTENTS_FL;
                    f.blocks = 1;
                } else {
                    f.i_block[..target.len()].copy_from_slice(self.tree.bytes(target));
                }
            }
            Kind::Chr(ma, mi) | Kind::Blk(ma, mi) => f.i_block = inode::encode_rdev(ma, mi),
            Kind::Dir(d) => f = finals.dirs[d as usize].clone(),
            _ => {}
        }
        if let Some(&b) = finals.file_acl.get(&id) {
            f.file_acl = b;
            f.blocks += 1;
        }
        f
    }

    /// Directories: linear or htree-indexed blocks, and their extent trees.
    fn write_dirs(
        &mut self,
        num: &Numbering,
        id: &Identity,
        finals: &mut Finals,
        used: &mut Vec<(u64, u64)>,
    ) -> Result<()> {
        for &d in &num.dirs_in_order {
            let ino = num.ino_of[d as usize];
            let iseed = csum::inode_seed(id.fs_seed, ino, 0);
            let Some(drec) = self.tree.dir_of(d) else {
                continue;
            };
            let parent_ino = num.ino_of[self.tree.dirs[drec as usize].parent as usize];
            let mut subdirs = 0u32;
            let entries: Vec<DirEntry> = self
                .tree
                .live(drec)
                .map(|(name, c)| {
                    let k = &self.tree.node(c).kind;
                    if matches!(k, Kind::Dir(_)) {
                        subdirs += 1;
                    }
                    DirEntry {
                        name,
                        ino: num.ino_of[c as usize],
                        file_type: file_type(k),
                    }
                })
                .collect();
            let (blocks, indexed) = if Some(d) == num.lpf.id && num.lpf.is_new {
                (dir::lost_found(ino, 2, LPF_BLOCKS, iseed), false)
            } else {
                let enc = dir::encode(ino, parent_ino, &entries, &id.hinfo, iseed)
                    .map_err(|source| Error::DirTooLarge { ino, source })?;
                (enc.blocks, enc.indexed)
            };
            drop(entries);
            let n = blocks.len() as u64;
            let pblks = self.alloc_runs(n, "directories", used)?;
            for (b, p) in blocks.iter().zip(&pblks) {
                self.write_at(b, *p)?;
            }
            let mut ex: Vec<Extent> = Vec::new();
            for (i, p) in pblks.iter().enumerate() {
                extent::push(&mut ex, i as u64, *p, 1);
            }
            let n_tree = extent::tree_blocks(ex.len());
            let tree_pblks = self.alloc_runs(n_tree, "extent trees", used)?;
            let tree = extent::build(&ex, &tree_pblks, iseed);
            for (p, b) in &tree.blocks {
                self.write_at(b, *p)?;
            }
            let links = 2 + subdirs;
            finals.dirs[drec as usize] = Final {
                i_block: tree.i_block,
                flags: inode::EXT4_EXTENTS_FL | if indexed { inode::EXT4_INDEX_FL } else { 0 },
                size: n * BLOCK_SIZE,
                blocks: n + n_tree,
                file_acl: 0,
                // dir_nlink: past 65000 subdirectories the count is 1.
                links: if links > 65000 { 1 } else { links },
            };
        }
        Ok(())
    }

    /// Extended attributes: the inode body first, shared blocks after
    /// (one block per distinct content, reference-counted). Returns the
    /// in-inode parts for the inode records.
    fn write_xattrs(
        &mut self,
        num: &Numbering,
        fs_seed: u32,
        finals: &mut Finals,
        used: &mut Vec<(u64, u64)>,
    ) -> Result<HashMap<NodeId, [u8; xattr::IBODY_SPACE]>> {
        let mut ibody: HashMap<NodeId, [u8; xattr::IBODY_SPACE]> = HashMap::new();
        let mut shared: HashMap<Vec<u8>, (u64, u32)> = HashMap::new();
        let mut block_users: Vec<(NodeId, Vec<u8>)> = Vec::new();
        for id in num.all() {
            let attrs = self.tree.xattrs(id);
            if attrs.is_empty() {
                continue;
            }
            let p = xattr::place(attrs.to_vec()).map_err(|source| Error::Xattrs {
                ino: num.ino_of[id as usize],
                source,
            })?;
            if !p.ibody.is_empty() {
                ibody.insert(id, xattr::encode_ibody(&p.ibody));
            }
            if !p.block.is_empty() {
                block_users.push((id, xattr::encode_block(&p.block)));
            }
        }
        block_users.sort_by_key(|(id, _)| num.ino_of[*id as usize]);
        let mut block_order: Vec<Vec<u8>> = Vec::new();
        for (id, content) in &block_users {
            let entry = match shared.get_mut(content) {
                Some(e) => e,
                None => {
                    let b = self.alloc_runs(1, "xattr blocks", used)?[0];
                    block_order.push(content.clone());
                    shared.entry(content.clone()).or_insert((b, 0))
                }
            };
            entry.1 += 1;
            finals.file_acl.insert(*id, entry.0);
        }
        for content in block_order {
            let (b, refs) = shared[&content];
            let mut buf = content;
            xattr::seal_block(&mut buf, refs, b, fs_seed);
            self.write_at(&buf, b)?;
        }
        Ok(ibody)
    }

    /// The journal (inode 8): its blocks, extent tree and jbd2 superblock.
    fn write_journal(
        &mut self,
        id: &Identity,
        last_ino: u32,
        used: &mut Vec<(u64, u64)>,
    ) -> Result<Journal> {
        let j_blocks = self
            .opts
            .journal_blocks
            .unwrap_or_else(|| journal::default_blocks(self.alloc.next()))
            .max(journal::MIN_BLOCKS);
        if self.opts.size_blocks.is_some()
            && journal_allocation(&mut self.alloc.clone(), j_blocks).is_none()
        {
            return Err(self.journal_does_not_fit(j_blocks, last_ino));
        }
        let j_pblks = self.alloc_runs(j_blocks, "the journal", used)?;
        let mut j_ex: Vec<Extent> = Vec::new();
        for (i, p) in j_pblks.iter().enumerate() {
            extent::push(&mut j_ex, i as u64, *p, 1);
        }
        drop(j_pblks);
        let j_seed = csum::inode_seed(id.fs_seed, 8, 0);
        let j_ntree = extent::tree_blocks(j_ex.len());
        let j_tree_pblks = self.alloc_runs(j_ntree, "the journal", used)?;
        let j_tree = extent::build(&j_ex, &j_tree_pblks, j_seed);
        for (p, b) in &j_tree.blocks {
            self.write_at(b, *p)?;
        }
        self.write_at(
            &journal::superblock(j_blocks as u32, &id.uuid),
            j_ex[0].pblk,
        )?;
        Ok(Journal {
            blocks: j_blocks,
            tree_blocks: j_ntree,
            i_block: j_tree.i_block,
        })
    }

    /// The journal is the last thing before the group tables, so when it
    /// does not fit, the smallest size that holds the tree is known
    /// exactly: the journal and its extent tree, then the tables.
    fn journal_does_not_fit(&self, j_blocks: u64, last_ino: u32) -> Error {
        let mut a = self.alloc.unbounded();
        let _ = journal_allocation(&mut a, j_blocks);
        let size = self.alloc.limit().unwrap_or(0) * BLOCK_SIZE;
        match groups::smallest_blocks(&a, &self.group_request(last_ino)) {
            Ok(blocks) => Error::DoesNotFit {
                size_bytes: size,
                needed_bytes: blocks * BLOCK_SIZE,
                exact: true,
                detail: format!(
                    "no room for the {} MiB journal",
                    (j_blocks * BLOCK_SIZE) >> 20
                ),
            },
            Err(e) => e,
        }
    }

    fn group_request(&self, last_ino: u32) -> groups::Request {
        groups::Request {
            density: self.opts.density,
            max_resize_bytes: self.opts.max_resize_bytes,
            fit_ceiling: self.opts.fit_ceiling,
            size_blocks: self.opts.size_blocks,
            extra_blocks: self.opts.extra_blocks,
            inodes: last_ino as u64,
        }
    }

    /// Group count, inodes per group and the per-group tables
    /// ([`groups::choose`]); the table blocks join `used`.
    fn place_groups(&mut self, last_ino: u32, used: &mut Vec<(u64, u64)>) -> Result<Geometry> {
        let req = self.group_request(last_ino);
        let geo = groups::choose(&mut self.alloc, &req)?;
        for t in &geo.tables {
            used.push((t.block_bitmap, 1));
            used.push((t.inode_bitmap, 1));
            used.push((t.inode_table, itable_blocks(geo.ipg)));
        }
        Ok(geo)
    }

    /// Block and inode bitmaps of every group; returns what the group
    /// descriptors record about them.
    fn write_bitmaps(
        &self,
        geo: &Geometry,
        num: &Numbering,
        used: &[(u64, u64)],
        fs_seed: u32,
    ) -> Result<Vec<GroupBitmaps>> {
        let last_ino = num.last_ino;
        let mut map = BlockMap::new(geo.groups);
        for g in 0..geo.groups {
            map.mark(g * BLOCKS_PER_GROUP, group_overhead(g));
        }
        for &(s, l) in used {
            map.mark(s, l);
        }
        // File data and slow symlink targets of the nodes in the tree (a
        // file replaced by a later entry leaves its blocks free).
        for &id in &num.order {
            match self.tree.node(id).kind {
                Kind::File { extents, .. } => {
                    for e in self.tree.extents(extents) {
                        map.mark(e.pblk, e.len as u64);
                    }
                }
                Kind::Symlink { block, .. } if block != 0 => map.mark(block, 1),
                _ => {}
            }
        }
        // Bits past the end of the filesystem are set.
        let end_pad = geo.groups * BLOCKS_PER_GROUP - geo.blocks_count;
        map.mark(geo.blocks_count, end_pad);
        let ipg = geo.ipg;
        let ib_bytes = (ipg / 8) as usize;
        let mut out = Vec::with_capacity(geo.groups as usize);
        for g in 0..geo.groups {
            let t = &geo.tables[g as usize];
            let first_ino = g * ipg as u64 + 1;
            let used_here = (last_ino as u64 + 1)
                .saturating_sub(first_ino)
                .min(ipg as u64) as u32;
            let mut ibm = vec![0u8; BLOCK_SIZE as usize];
            for i in 0..used_here as usize {
                ibm[i / 8] |= 1 << (i % 8);
            }
            for b in ibm.iter_mut().skip(ib_bytes) {
                *b = 0xFF;
            }
            let bbm = map.group(g);
            let in_group = (geo.blocks_count - g * BLOCKS_PER_GROUP).min(BLOCKS_PER_GROUP);
            let used_bits: u64 = bbm.iter().map(|b| b.count_ones() as u64).sum();
            let free = in_group - (used_bits - (BLOCKS_PER_GROUP - in_group));
            self.write_at(bbm, t.block_bitmap)?;
            self.write_at(&ibm, t.inode_bitmap)?;
            out.push(GroupBitmaps {
                free_blocks: free,
                used_inodes: used_here,
                block_bitmap_csum: csum::raw(fs_seed, bbm),
                inode_bitmap_csum: csum::raw(fs_seed, &ibm[..ib_bytes]),
            });
        }
        Ok(out)
    }

    /// Inode records (inode 1, the journal's inode 8, then every node's),
    /// in inode order, one inode table at a time: each is written when the
    /// next group's first inode comes (the whole set of tables would cost
    /// 256 bytes per entry at once). The groups past the last used inode
    /// stay zero. Returns the directory count of each group.
    fn write_inode_tables(&self, geo: &Geometry, t: &InodeTables<'_>) -> Result<Vec<u32>> {
        let now = self.now;
        let mut out = TableWriter {
            b: self,
            geo,
            fs_seed: t.fs_seed,
            group: 0,
            table: vec![0u8; (itable_blocks(geo.ipg) * BLOCK_SIZE) as usize],
        };
        // Inode 1 (bad blocks) carries only times, as mke2fs writes it.
        out.put(
            1,
            &InodeRecord {
                atime: now,
                ctime: now,
                mtime: now,
                ..Default::default()
            },
        )?;
        // Journal inode.
        out.put(
            8,
            &InodeRecord {
                mode: inode::S_IFREG | 0o600,
                size: t.jnl.blocks * BLOCK_SIZE,
                atime: now,
                ctime: now,
                mtime: now,
                crtime: now,
                links: 1,
                blocks_512: (t.jnl.blocks + t.jnl.tree_blocks) * 8,
                flags: inode::EXT4_EXTENTS_FL,
                i_block: t.jnl.i_block,
                ..Default::default()
            },
        )?;
        let mut dirs_in_group = vec![0u32; geo.groups as usize];
        for id in t.num.all() {
            let node = self.tree.node(id);
            let ino = t.num.ino_of[id as usize];
            let fmt = match node.kind {
                Kind::File { .. } => inode::S_IFREG,
                Kind::Dir(_) => {
                    dirs_in_group[((ino - 1) / geo.ipg) as usize] += 1;
                    inode::S_IFDIR
                }
                Kind::Symlink { .. } => inode::S_IFLNK,
                Kind::Chr(..) => inode::S_IFCHR,
                Kind::Blk(..) => inode::S_IFBLK,
                Kind::Fifo => inode::S_IFIFO,
                Kind::Sock => inode::S_IFSOCK,
                Kind::Removed => continue,
            };
            let f = self.final_of(id, t.finals);
            let rec = InodeRecord {
                mode: fmt | node.perm(),
                uid: node.uid,
                gid: node.gid,
                size: f.size,
                atime: self.tree.atime(id),
                ctime: self.tree.ctime(id),
                mtime: self.tree.mtime(id),
                crtime: self.tree.ctime(id),
                links: f.links as u16,
                blocks_512: f.blocks * (BLOCK_SIZE / 512),
                flags: f.flags,
                i_block: f.i_block,
                file_acl: f.file_acl,
                ibody_xattrs: t.ibody.get(&id).copied(),
            };
            out.put(ino, &rec)?;
        }
        out.finish((t.num.last_ino as u64).div_ceil(geo.ipg as u64))?;
        Ok(dirs_in_group)
    }

    /// Group descriptors, one 64-byte entry per group in meta_bg blocks
    /// (written to the first, second and last group of each meta group);
    /// returns the filesystem's free block count.
    fn write_descriptors(
        &self,
        geo: &Geometry,
        bitmaps: &[GroupBitmaps],
        dirs_in_group: &[u32],
        fs_seed: u32,
    ) -> Result<u64> {
        let ipg = geo.ipg;
        let groups = geo.groups;
        let mut descs = Vec::with_capacity(groups as usize);
        let mut free_blocks_total = 0u64;
        for g in 0..groups {
            let t = &geo.tables[g as usize];
            let b = &bitmaps[g as usize];
            free_blocks_total += b.free_blocks;
            descs.push(GroupDesc {
                block_bitmap: t.block_bitmap,
                inode_bitmap: t.inode_bitmap,
                inode_table: t.inode_table,
                free_blocks: b.free_blocks as u32,
                free_inodes: ipg - b.used_inodes,
                used_dirs: dirs_in_group[g as usize],
                flags: if b.used_inodes == 0 {
                    BG_INODE_UNINIT | BG_INODE_ZEROED
                } else {
                    BG_INODE_ZEROED
                },
                block_bitmap_csum: b.block_bitmap_csum,
                inode_bitmap_csum: b.inode_bitmap_csum,
                itable_unused: ipg - b.used_inodes,
            });
        }
        for m in 0..groups.div_ceil(META_BG_SIZE) {
            let mut blk = vec![0u8; BLOCK_SIZE as usize];
            for i in 0..META_BG_SIZE {
                let g = m * META_BG_SIZE + i;
                if g >= groups {
                    break;
                }
                let d = superblock::encode_desc(&descs[g as usize], g as u32, fs_seed);
                blk[(i * 64) as usize..(i * 64 + 64) as usize].copy_from_slice(&d);
            }
            for g in [
                m * META_BG_SIZE,
                m * META_BG_SIZE + 1,
                m * META_BG_SIZE + META_BG_SIZE - 1,
            ] {
                if g < groups {
                    if let Some(b) = meta_gdt_block(g) {
                        self.write_at(&blk, b)?;
                    }
                }
            }
        }
        Ok(free_blocks_total)
    }

    /// The superblock at byte 1024 and its backups (sparse_super groups).
    fn write_superblocks(&self, groups: u64, params: &SuperParams) -> Result<()> {
        for g in 0..groups {
            if has_super(g) {
                let sb = superblock::encode(params, g as u16);
                if g == 0 {
                    self.file
                        .write_all_at(&sb, self.base + 1024)
                        .map_err(|e| self.werr(e))?;
                } else {
                    self.write_at(&sb, g * BLOCKS_PER_GROUP)?;
                }
            }
        }
        Ok(())
    }

    /// Extend the file to the filesystem's end (never truncate: the
    /// filesystem may sit inside a disk), and fsync unless told not to.
    fn extend_and_sync(&self, blocks_count: u64) -> Result<()> {
        let end = self.base + blocks_count * BLOCK_SIZE;
        let len = self.file.metadata().map_err(|e| self.werr(e))?.len();
        if len < end {
            self.file.set_len(end).map_err(|e| self.werr(e))?;
        }
        if self.fsync {
            self.file.sync_all().map_err(|e| self.werr(e))?;
        }
        Ok(())
    }
}

/// lost+found's node, and whether dibr made it (then it gets mke2fs's
/// preallocated empty blocks).
#[derive(Clone, Copy)]
struct LostFound {
    id: Option<NodeId>,
    is_new: bool,
}

/// The inode numbering and the orders the stages walk the nodes in.
struct Numbering {
    /// Inode number of each node (0: none).
    ino_of: Vec<u32>,
    /// Nodes numbered in the walk (everything but root and lost+found),
    /// in inode order.
    order: Vec<NodeId>,
    /// Directories, root first, in the order of the walk.
    dirs_in_order: Vec<NodeId>,
    /// The highest inode number in use (= the used inode count).
    last_ino: u32,
    lpf: LostFound,
}

impl Numbering {
    /// Every node with an inode, in inode order: root, lost+found, then
    /// `order`.
    fn all(&self) -> impl Iterator<Item = NodeId> + '_ {
        std::iter::once(ROOT)
            .chain(self.lpf.id)
            .chain(self.order.iter().copied())
    }
}

/// Inode tables written one group at a time as ascending inode numbers
/// come in.
struct TableWriter<'a> {
    b: &'a Builder,
    geo: &'a Geometry,
    fs_seed: u32,
    /// The group whose table is in `table`.
    group: u64,
    table: Vec<u8>,
}

impl TableWriter<'_> {
    fn put(&mut self, ino: u32, rec: &InodeRecord) -> Result<()> {
        let ipg = self.geo.ipg as u64;
        let idx = (ino - 1) as u64;
        let g = idx / ipg;
        debug_assert!(g >= self.group, "inodes come in ascending order");
        if g > self.group {
            self.finish(g)?;
        }
        let off = ((idx % ipg) * INODE_SIZE) as usize;
        let raw = inode::encode(rec, ino, self.fs_seed);
        self.table[off..off + INODE_SIZE as usize].copy_from_slice(&raw);
        Ok(())
    }

    /// Write the tables of the groups before `upto` (all-zero ones for
    /// groups no inode fell in), and start group `upto`.
    fn finish(&mut self, upto: u64) -> Result<()> {
        while self.group < upto {
            let at = self.geo.tables[self.group as usize].inode_table;
            self.b.write_at(&self.table, at)?;
            self.table.fill(0);
            self.group += 1;
        }
        Ok(())
    }
}

/// The filesystem's identity and the seeds derived from it.
struct Identity {
    uuid: [u8; 16],
    hash_seed: [u8; 16],
    /// Metadata checksum seed, crc32c(~0, uuid) (checksums.rst).
    fs_seed: u32,
    /// Directory-index hash parameters (from `hash_seed`).
    hinfo: HashInfo,
}

/// The journal as written: inode 8's size, block count and extent root.
struct Journal {
    blocks: u64,
    tree_blocks: u64,
    i_block: [u8; 60],
}

impl Journal {
    /// `s_jnl_blocks` (super.rst 0x10C): a copy of inode 8's `i_block`,
    /// then `i_size_high` and `i_size`.
    fn jnl_blocks(&self) -> [u32; 17] {
        let mut jnl_blocks = [0u32; 17];
        for (i, w) in self.i_block.chunks_exact(4).enumerate() {
            jnl_blocks[i] = u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
        }
        let j_size = self.blocks * BLOCK_SIZE;
        jnl_blocks[15] = (j_size >> 32) as u32;
        jnl_blocks[16] = j_size as u32;
        jnl_blocks
    }
}

/// One group's bitmaps as its descriptor records them.
struct GroupBitmaps {
    free_blocks: u64,
    used_inodes: u32,
    block_bitmap_csum: u32,
    inode_bitmap_csum: u32,
}

/// What the inode records are made from.
struct InodeTables<'a> {
    num: &'a Numbering,
    finals: &'a Finals,
    ibody: &'a HashMap<NodeId, [u8; xattr::IBODY_SPACE]>,
    jnl: &'a Journal,
    fs_seed: u32,
}

/// Blocks reserved for root (mke2fs `-m`, default 5 %), in tenths of a
/// percent so that `-m 0.5` is exact.
fn reserved_blocks(blocks: u64, per_mille: u16) -> u64 {
    (blocks as u128 * per_mille as u128 / 1000) as u64
}

/// The journal's blocks and its extent-tree blocks, allocated as
/// `write_journal` allocates them; `None` if they do not fit.
fn journal_allocation(a: &mut Allocator, j_blocks: u64) -> Option<()> {
    let mut ex: Vec<Extent> = Vec::new();
    let mut logical = 0;
    for r in a.alloc_runs(j_blocks)? {
        for p in r.start..r.start + r.len {
            extent::push(&mut ex, logical, p, 1);
            logical += 1;
        }
    }
    a.alloc_runs(extent::tree_blocks(ex.len()))?;
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ext4::{verify, Options};
    use crate::le::get_u32;
    use crate::tree::{Entry, EntryKind, FileData, Timestamp};
    use std::os::unix::fs::FileExt;

    struct Data<'a>(&'a [u8]);

    impl FileData for Data<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = buf.len().min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    /// What `finish` reports and writes agrees with what the independent
    /// checker finds: counts of blocks and inodes, the superblock's free
    /// counts (at their offsets), and a version 4 UUID derived from the
    /// tree when none is given.
    #[test]
    fn summary_superblock_and_checker_agree() {
        let tmp = tempfile::NamedTempFile::new().unwrap();
        let opts = Options {
            label: *b"finish-test\0\0\0\0\0",
            max_resize_bytes: 1 << 40,
            fit_ceiling: false,
            source_date_epoch: Some(1_700_000_000),
            ..Default::default()
        };
        let mut b = Builder::new(tmp.reopen().unwrap(), tmp.path().into(), opts).unwrap();
        let t = Timestamp::new(1_700_000_000, 0);
        let data = vec![7u8; 10_000];
        let tree = [
            (Entry::new(Vec::new(), EntryKind::Dir, 0o755, t), &[][..]),
            (Entry::new(b"d".to_vec(), EntryKind::Dir, 0o755, t), &[]),
            (
                Entry {
                    size: data.len() as u64,
                    segments: vec![crate::tree::Segment {
                        offset: 0,
                        len: data.len() as u64,
                    }],
                    ..Entry::new(b"d/f".to_vec(), EntryKind::File, 0o644, t)
                },
                &data[..],
            ),
            (
                Entry::new(b"l".to_vec(), EntryKind::Symlink(b"d/f".to_vec()), 0o777, t),
                &[],
            ),
        ];
        for (e, d) in &tree {
            b.add(e, &mut Data(d)).unwrap();
        }
        let s = b.finish().unwrap();
        let f = tmp.reopen().unwrap();
        let r = verify::verify_file(&f).unwrap();
        assert_eq!((r.dirs, r.files, r.symlinks), (3, 1, 1)); // lost+found too
        assert_eq!(s.blocks_count, r.blocks_count);
        assert_eq!(s.groups, r.groups);
        assert_eq!(s.free_blocks, r.blocks_count - r.blocks_used);
        assert_eq!(s.used_inodes as u64, r.inodes);
        let mut sb = [0u8; 1024];
        f.read_exact_at(&mut sb, 1024).unwrap();
        let free = get_u32(&sb, 0x0C) as u64 | (get_u32(&sb, 0x158) as u64) << 32;
        assert_eq!(free, s.free_blocks, "s_free_blocks_count");
        assert_eq!(
            get_u32(&sb, 0x10),
            s.inodes_count - s.used_inodes,
            "s_free_inodes_count"
        );
        assert_eq!(sb[0x68..0x78], s.uuid, "s_uuid");
        assert_eq!(s.uuid[6] >> 4, 4, "UUID version");
        assert_eq!(s.uuid[8] >> 6, 0b10, "UUID variant");
    }
}
