//! The in-memory tree between [`super::Builder::add`] and
//! [`super::Builder::finish`], packed so that millions of entries fit in
//! little memory (issue 18: 0.74 KiB per entry made 10 M entries need
//! 7.4 GB). Everything variable-sized lives in a few shared arenas instead
//! of one heap allocation per entry: names and symlink targets in one byte
//! arena, extents in one `Vec<Extent>`, directory entries in one
//! `Vec<Child>` chained per directory; a node is a fixed 48-byte record,
//! with atime, ctime and xattrs in a side table only for the nodes whose
//! atime or ctime differ from the mtime or that have xattrs (a plain tar
//! archive has neither). Large directories get a hash index of child
//! slots (4 bytes per child) that hashes the names in the arena.

use std::hash::{BuildHasher, Hasher};

use hashbrown::HashTable;

use super::extent::Extent;
use super::inode::{TIME_MAX, TIME_MIN};
use super::xattr::Attr;
use crate::tree::Timestamp;

pub type NodeId = u32;
pub const ROOT: NodeId = 0;
/// End of a directory's chain of children.
const NIL: u32 = u32::MAX;
/// Directories with more children than this get a hash index; smaller
/// ones are searched along their chain.
const INDEX_FROM: u32 = 16;

/// A byte string in the arena: offset << 12 | length (names are at most
/// 255 bytes, symlink targets at most 4095).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArenaRef(u64);

impl ArenaRef {
    fn range(self) -> std::ops::Range<usize> {
        let off = (self.0 >> 12) as usize;
        off..off + (self.0 & 0xFFF) as usize
    }
    pub fn len(self) -> usize {
        (self.0 & 0xFFF) as usize
    }
    pub fn is_empty(self) -> bool {
        self.len() == 0
    }
}

/// A timestamp inside ext4's 34-bit range (callers clamp first), packed
/// into 64 bits: seconds from [`TIME_MIN`] (34 bits), then nanoseconds
/// (30 bits) — exactly what the inode can hold, so nothing is lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackedTime(u64);

impl PackedTime {
    pub fn pack(t: Timestamp) -> Self {
        let secs = t.secs.clamp(TIME_MIN, TIME_MAX);
        PackedTime((((secs - TIME_MIN) as u64) << 30) | (t.nsec as u64 & 0x3FFF_FFFF))
    }
    pub fn get(self) -> Timestamp {
        Timestamp::new(
            (self.0 >> 30) as i64 + TIME_MIN,
            (self.0 & 0x3FFF_FFFF) as u32,
        )
    }
}

/// A file's extents: `len` entries of [`Tree::extents`] from `start`.
#[derive(Clone, Copy, Debug, Default)]
pub struct ExtentRange {
    start: u32,
    len: u32,
}

#[derive(Debug)]
pub enum Kind {
    File {
        size: u64,
        extents: ExtentRange,
    },
    /// Index into [`Tree::dirs`].
    Dir(u32),
    Symlink {
        target: ArenaRef,
        /// Block holding a slow symlink's target (0: fast symlink, the
        /// target lives in `i_block`; block 0 is the superblock's).
        block: u64,
    },
    Chr(u32, u32),
    Blk(u32, u32),
    Fifo,
    Sock,
    /// Unlinked by a later duplicate entry.
    Removed,
}

/// One name in a directory.
#[derive(Clone, Copy, Debug)]
struct Child {
    name: ArenaRef,
    id: NodeId,
    /// The directory's next child slot in insertion order, or [`NIL`].
    next: u32,
}

#[derive(Debug)]
pub struct Dir {
    first: u32,
    last: u32,
    len: u32,
    pub parent: NodeId,
    /// Child slots by name hash, once the directory is large.
    index: Option<HashTable<u32>>,
}

/// Link counts saturate here (ext4 allows 65000 for a file; the writer
/// only needs to see that a count is too large).
const NLINK_MAX: u32 = (1 << 20) - 1;

#[derive(Debug)]
pub struct Node {
    pub kind: Kind,
    mtime: PackedTime,
    pub uid: u32,
    pub gid: u32,
    /// Permission bits (low 12) and link count (high 20, saturating).
    perm_nlink: u32,
    /// Index into [`Tree::extras`]; 0: none (atime = ctime = mtime, no
    /// xattrs).
    extra: u32,
}

/// What few nodes have: times other than the mtime, xattrs.
#[derive(Debug)]
struct Extra {
    atime: PackedTime,
    ctime: PackedTime,
    xattrs: Vec<Attr>,
}

impl Node {
    pub fn perm(&self) -> u16 {
        (self.perm_nlink & 0o7777) as u16
    }
    pub fn nlink(&self) -> u32 {
        self.perm_nlink >> 12
    }
    fn set_nlink(&mut self, n: u32) {
        self.perm_nlink = (self.perm_nlink & 0o7777) | (n.min(NLINK_MAX) << 12);
    }
}

/// Metadata of a node as an entry gives it.
pub struct Meta {
    pub perm: u16,
    pub uid: u32,
    pub gid: u32,
    pub atime: Timestamp,
    pub mtime: Timestamp,
    pub ctime: Timestamp,
    pub xattrs: Vec<Attr>,
}

/// The whole tree: nodes and the arenas they point into.
#[derive(Debug)]
pub struct Tree {
    pub nodes: Vec<Node>,
    pub dirs: Vec<Dir>,
    children: Vec<Child>,
    bytes: Vec<u8>,
    extents: Vec<Extent>,
    extras: Vec<Extra>,
    hasher: std::hash::BuildHasherDefault<std::hash::DefaultHasher>,
}

/// Arena overflow (beyond 2^32 children, extents or xattr sets, or 2^52
/// bytes of names): the caller reports it as too many entries.
#[derive(Debug)]
pub struct Full;

fn idx32(n: usize) -> Result<u32, Full> {
    u32::try_from(n).ok().filter(|&v| v != NIL).ok_or(Full)
}

impl Tree {
    /// A tree holding only the root directory (made by the writer: mode
    /// 0755, root-owned, all times `now`).
    pub fn new(now: Timestamp) -> Tree {
        let mut t = Tree {
            nodes: Vec::new(),
            dirs: Vec::new(),
            children: Vec::new(),
            bytes: Vec::new(),
            extents: Vec::new(),
            extras: vec![Extra {
                atime: PackedTime(0),
                ctime: PackedTime(0),
                xattrs: Vec::new(),
            }],
            hasher: Default::default(),
        };
        // Cannot overflow: the arenas are empty.
        let _ = t.new_dir(0o755, ROOT, now);
        t
    }

    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id as usize]
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    fn push_node(&mut self, kind: Kind, m: Meta) -> Result<NodeId, Full> {
        let id = idx32(self.nodes.len())?;
        let mut n = Node {
            kind,
            mtime: PackedTime(0),
            uid: 0,
            gid: 0,
            perm_nlink: 1 << 12,
            extra: 0,
        };
        self.put_meta(&mut n, m)?;
        self.nodes.push(n);
        Ok(id)
    }

    fn put_meta(&mut self, n: &mut Node, m: Meta) -> Result<(), Full> {
        let (atime, mtime, ctime) = (
            PackedTime::pack(m.atime),
            PackedTime::pack(m.mtime),
            PackedTime::pack(m.ctime),
        );
        n.extra = if atime == mtime && ctime == mtime && m.xattrs.is_empty() {
            0
        } else {
            self.extras.push(Extra {
                atime,
                ctime,
                xattrs: m.xattrs,
            });
            idx32(self.extras.len() - 1)?
        };
        n.mtime = mtime;
        n.uid = m.uid;
        n.gid = m.gid;
        n.perm_nlink = (n.perm_nlink & !0o7777) | (m.perm & 0o7777) as u32;
        Ok(())
    }

    pub fn atime(&self, id: NodeId) -> Timestamp {
        let n = &self.nodes[id as usize];
        match n.extra {
            0 => n.mtime.get(),
            x => self.extras[x as usize].atime.get(),
        }
    }

    pub fn mtime(&self, id: NodeId) -> Timestamp {
        self.nodes[id as usize].mtime.get()
    }

    pub fn ctime(&self, id: NodeId) -> Timestamp {
        let n = &self.nodes[id as usize];
        match n.extra {
            0 => n.mtime.get(),
            x => self.extras[x as usize].ctime.get(),
        }
    }

    /// One more name for `id`.
    pub fn link(&mut self, id: NodeId) {
        let n = &mut self.nodes[id as usize];
        n.set_nlink(n.nlink() + 1);
    }

    /// One name fewer for `id`; returns how many are left.
    pub fn unlink_one(&mut self, id: NodeId) -> u32 {
        let n = &mut self.nodes[id as usize];
        n.set_nlink(n.nlink().saturating_sub(1));
        n.nlink()
    }

    /// A new node of `kind` with metadata `m` (one link).
    pub fn add_node(&mut self, kind: Kind, m: Meta) -> Result<NodeId, Full> {
        self.push_node(kind, m)
    }

    /// A new, empty directory whose parent is `parent`.
    pub fn new_dir_with(&mut self, parent: NodeId, m: Meta) -> Result<NodeId, Full> {
        let d = idx32(self.dirs.len())?;
        self.dirs.push(Dir {
            first: NIL,
            last: NIL,
            len: 0,
            parent,
            index: None,
        });
        self.push_node(Kind::Dir(d), m)
    }

    /// A directory made by the writer itself (root, implicit parents,
    /// lost+found): root-owned, all times `now`.
    pub fn new_dir(&mut self, perm: u16, parent: NodeId, now: Timestamp) -> Result<NodeId, Full> {
        self.new_dir_with(
            parent,
            Meta {
                perm,
                uid: 0,
                gid: 0,
                atime: now,
                mtime: now,
                ctime: now,
                xattrs: Vec::new(),
            },
        )
    }

    /// Replace a node's metadata (a directory entry for a directory that
    /// exists), keeping its kind and links.
    pub fn set_meta(&mut self, id: NodeId, m: Meta) -> Result<(), Full> {
        let mut n = std::mem::replace(
            &mut self.nodes[id as usize],
            Node {
                kind: Kind::Removed,
                mtime: PackedTime(0),
                uid: 0,
                gid: 0,
                perm_nlink: 0,
                extra: 0,
            },
        );
        let r = self.put_meta(&mut n, m);
        self.nodes[id as usize] = n;
        r
    }

    pub fn xattrs(&self, id: NodeId) -> &[Attr] {
        &self.extras[self.nodes[id as usize].extra as usize].xattrs
    }

    /// Store bytes (a name of at most 255 bytes or a symlink target of at
    /// most 4095) in the arena.
    pub fn push_bytes(&mut self, b: &[u8]) -> Result<ArenaRef, Full> {
        debug_assert!(b.len() < 4096);
        let off = self.bytes.len() as u64;
        if off >= 1 << 52 || b.len() >= 4096 {
            return Err(Full);
        }
        self.bytes.extend_from_slice(b);
        Ok(ArenaRef(off << 12 | b.len() as u64))
    }

    pub fn bytes(&self, r: ArenaRef) -> &[u8] {
        &self.bytes[r.range()]
    }

    /// Store a file's extents.
    pub fn push_extents(&mut self, e: &[Extent]) -> Result<ExtentRange, Full> {
        let start = idx32(self.extents.len())?;
        let len = idx32(e.len())?;
        idx32(self.extents.len() + e.len())?;
        self.extents.extend_from_slice(e);
        Ok(ExtentRange { start, len })
    }

    pub fn extents(&self, r: ExtentRange) -> &[Extent] {
        &self.extents[r.start as usize..(r.start + r.len) as usize]
    }

    /// The directory record of node `id`, if it is a directory.
    pub fn dir_of(&self, id: NodeId) -> Option<u32> {
        match self.nodes[id as usize].kind {
            Kind::Dir(d) => Some(d),
            _ => None,
        }
    }

    pub fn is_dir(&self, id: NodeId) -> bool {
        self.dir_of(id).is_some()
    }

    fn hash(&self, name: &[u8]) -> u64 {
        let mut h = self.hasher.build_hasher();
        h.write(name);
        h.finish()
    }

    fn slot_of(&self, d: u32, name: &[u8]) -> Option<u32> {
        let dir = &self.dirs[d as usize];
        match &dir.index {
            Some(ix) => ix
                .find(self.hash(name), |&s| {
                    self.bytes(self.children[s as usize].name) == name
                })
                .copied(),
            None => {
                let mut s = dir.first;
                while s != NIL {
                    let c = &self.children[s as usize];
                    if self.bytes(c.name) == name {
                        return Some(s);
                    }
                    s = c.next;
                }
                None
            }
        }
    }

    /// The child called `name` of directory record `d`.
    pub fn get(&self, d: u32, name: &[u8]) -> Option<NodeId> {
        self.slot_of(d, name).map(|s| self.children[s as usize].id)
    }

    /// Point `name` in directory record `d` at `id` (replacing what it
    /// named, keeping its position; else appended).
    pub fn insert(&mut self, d: u32, name: &[u8], id: NodeId) -> Result<(), Full> {
        if let Some(s) = self.slot_of(d, name) {
            self.children[s as usize].id = id;
            return Ok(());
        }
        let slot = idx32(self.children.len())?;
        let name = self.push_bytes(name)?;
        self.children.push(Child {
            name,
            id,
            next: NIL,
        });
        let last = self.dirs[d as usize].last;
        if last == NIL {
            self.dirs[d as usize].first = slot;
        } else {
            self.children[last as usize].next = slot;
        }
        let dir = &mut self.dirs[d as usize];
        dir.last = slot;
        dir.len += 1;
        if dir.len > INDEX_FROM {
            self.index_slot(d, slot);
        }
        Ok(())
    }

    /// Add `slot` to directory `d`'s hash index, building the index from
    /// the chain when the directory has just grown large.
    fn index_slot(&mut self, d: u32, slot: u32) {
        let (bytes, children, hasher) = (&self.bytes, &self.children, &self.hasher);
        let hash_of = |s: &u32| {
            let mut h = hasher.build_hasher();
            h.write(&bytes[children[*s as usize].name.range()]);
            h.finish()
        };
        let dir = &mut self.dirs[d as usize];
        match &mut dir.index {
            Some(ix) => {
                ix.insert_unique(hash_of(&slot), slot, hash_of);
            }
            None => {
                let mut ix = HashTable::with_capacity(dir.len as usize * 2);
                let mut s = dir.first;
                while s != NIL {
                    ix.insert_unique(hash_of(&s), s, hash_of);
                    s = children[s as usize].next;
                }
                dir.index = Some(ix);
            }
        }
    }

    /// Directory record `d`'s children in insertion order.
    pub fn live(&self, d: u32) -> Children<'_> {
        Children {
            tree: self,
            slot: self.dirs[d as usize].first,
        }
    }

    /// Drop the name indexes (lookups are over once every entry is in).
    pub fn drop_indexes(&mut self) {
        for d in &mut self.dirs {
            d.index = None;
        }
    }
}

/// Iterator over a directory's (name, node) pairs.
pub struct Children<'a> {
    tree: &'a Tree,
    slot: u32,
}

impl<'a> Iterator for Children<'a> {
    type Item = (&'a [u8], NodeId);
    fn next(&mut self) -> Option<Self::Item> {
        if self.slot == NIL {
            return None;
        }
        let c = &self.tree.children[self.slot as usize];
        self.slot = c.next;
        Some((self.tree.bytes(c.name), c.id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_sizes_stay_small() {
        // The point of this module: a regression here is memory per entry.
        assert!(
            std::mem::size_of::<Node>() <= 48,
            "{}",
            std::mem::size_of::<Node>()
        );
        assert!(std::mem::size_of::<Child>() <= 16);
    }

    #[test]
    fn packed_time_round_trips_the_ext4_range() {
        for t in [
            Timestamp::new(TIME_MIN, 0),
            Timestamp::new(TIME_MAX, 999_999_999),
            Timestamp::new(0, 1),
            Timestamp::new(1_700_000_000, 123_456_789),
            Timestamp::new(-1, 999_999_999),
        ] {
            assert_eq!(PackedTime::pack(t).get(), t);
        }
    }

    #[test]
    fn directories_small_and_indexed_keep_order_and_replace_in_place() {
        let now = Timestamp::new(0, 0);
        let mut t = Tree::new(now);
        let root = t.dir_of(ROOT).unwrap();
        let names: Vec<Vec<u8>> = (0..100).map(|i| format!("n{i}").into_bytes()).collect();
        for (i, n) in names.iter().enumerate() {
            t.insert(root, n, i as NodeId + 1000).unwrap();
        }
        t.insert(root, b"n5", 7).unwrap();
        t.insert(root, b"n50", 8).unwrap();
        assert_eq!(t.get(root, b"n5"), Some(7));
        assert_eq!(t.get(root, b"n50"), Some(8));
        assert_eq!(t.get(root, b"n99"), Some(1099));
        assert_eq!(t.get(root, b"n100"), None);
        let got: Vec<&[u8]> = t.live(root).map(|(n, _)| n).collect();
        let want: Vec<&[u8]> = names.iter().map(|n| &n[..]).collect();
        assert_eq!(got, want);
    }
}
