//! How many block groups, and how many inodes each holds: the choice that
//! trades the filesystem's growth ceiling against its (virtual) size.
//!
//! `s_inodes_count` is 32 bits (Documentation/filesystems/ext4/super.rst),
//! so a filesystem whose groups hold `ipg` inodes can grow to at most
//! `floor((2^32-1) / ipg)` groups of 128 MiB. dibr's default keeps `ipg`
//! as low as the growth ceiling requires (496 for 1 PiB) and adds groups
//! until the tree's inodes fit — a sparse image whose virtual size follows
//! the inode count. With a fixed size too small for that, the ceiling is
//! lowered (denser groups) unless it was asked for explicitly. mke2fs's
//! `-i` and `-N` (mke2fs(8)) fix the density instead; the ceiling follows.
//! No group layout here has reserved GDT blocks: dibr writes `meta_bg`,
//! whose descriptor blocks never move, so the inode count is the only
//! limit on growth.

use super::error::{Error, Result};
use super::layout::{
    group_overhead, itable_blocks, Allocator, BLOCKS_PER_GROUP, BLOCK_SIZE, INODES_PER_BLOCK,
};

/// Smallest tail group created: a last group of a handful of blocks is
/// legal but pointless, mke2fs drops such groups too.
const MIN_LAST_GROUP: u64 = 256;
/// Most inodes a group can hold: its inode bitmap is one block
/// (mke2fs: `EXT2_MAX_INODES_PER_GROUP`, 8 × block size).
pub const MAX_IPG: u32 = 32768;
const GROUP_BYTES: u64 = BLOCKS_PER_GROUP * BLOCK_SIZE;

/// How densely inodes are laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Density {
    /// dibr's default: the fewest inodes per group the growth ceiling
    /// (`Options::max_resize_bytes`) allows; more groups when the tree
    /// needs more inodes.
    #[default]
    Ceiling,
    /// mke2fs `-i`: one inode per this many bytes of filesystem.
    BytesPerInode(u64),
    /// mke2fs `-N`: at least this many inodes in all.
    Count(u64),
}

/// inodes_per_group allowed by a growth ceiling of `max_bytes`.
pub fn max_inodes_per_group(max_bytes: u64) -> u32 {
    let groups = max_bytes.div_ceil(GROUP_BYTES).max(1);
    let ipg = (u32::MAX as u64 / groups).min(MAX_IPG as u64);
    ((ipg / INODES_PER_BLOCK) * INODES_PER_BLOCK).max(INODES_PER_BLOCK) as u32
}

/// Largest size a filesystem with this inodes_per_group can grow to.
pub fn growth_ceiling(ipg: u32) -> u64 {
    (u32::MAX as u64 / ipg as u64) * GROUP_BYTES
}

/// What the layout is asked for (the writer's options and the tree).
#[derive(Clone, Copy, Debug)]
pub struct Request {
    pub density: Density,
    pub max_resize_bytes: u64,
    /// The ceiling is a default, not a demand: a fixed size may lower it.
    pub fit_ceiling: bool,
    pub size_blocks: Option<u64>,
    pub extra_blocks: u64,
    /// Inodes the tree uses (the last inode number).
    pub inodes: u64,
}

/// How many groups, how large, and where each group's tables are.
pub struct Geometry {
    pub ipg: u32,
    pub groups: u64,
    pub blocks_count: u64,
    pub tables: Vec<Tables>,
    /// The growth ceiling the filesystem would have had, when a fixed size
    /// made it lower.
    pub lowered_from: Option<u64>,
}

/// Where one group's bitmaps and inode table are.
pub struct Tables {
    pub block_bitmap: u64,
    pub inode_bitmap: u64,
    pub inode_table: u64,
}

/// The rule that gives a group count its inodes per group.
#[derive(Clone, Copy, Debug)]
enum Rule {
    /// Exactly this many (the ceiling's).
    Keep(u32),
    /// At least this many, more if the tree's inodes need them.
    Fit(u32),
    /// mke2fs `-i`: bytes per inode over the filesystem's blocks.
    Ratio(u64),
    /// mke2fs `-N`: this many over all groups.
    Count(u64),
}

fn whole_blocks(n: u64) -> u64 {
    n.div_ceil(INODES_PER_BLOCK).max(1) * INODES_PER_BLOCK
}

impl Rule {
    fn of(r: &Request) -> Rule {
        let ceiling = max_inodes_per_group(r.max_resize_bytes);
        match r.density {
            Density::Ceiling if r.fit_ceiling && r.size_blocks.is_some() => Rule::Fit(ceiling),
            Density::Ceiling => Rule::Keep(ceiling),
            Density::BytesPerInode(b) => Rule::Ratio(b),
            Density::Count(n) => Rule::Count(n),
        }
    }

    /// Inodes per group for `groups` groups over `blocks` blocks (mke2fs
    /// spreads its inode count evenly and rounds up to whole inode-table
    /// blocks, as `ext2fs_initialize` does).
    fn ipg(self, groups: u64, blocks: u64, inodes: u64) -> u64 {
        match self {
            Rule::Keep(i) => i as u64,
            Rule::Fit(i) => (i as u64).max(whole_blocks(inodes.div_ceil(groups))),
            Rule::Ratio(b) => whole_blocks((blocks * BLOCK_SIZE / b).div_ceil(groups)),
            Rule::Count(n) => whole_blocks(n.div_ceil(groups)),
        }
    }
}

/// Choose the geometry and place every group's tables (committing them
/// in `alloc`).
pub fn choose(alloc: &mut Allocator, r: &Request) -> Result<Geometry> {
    if let Density::Count(n) = r.density {
        if n < r.inodes {
            return Err(Error::Option(format!(
                "-N {n}: the tree needs {} inodes; ask for at least that many",
                r.inodes
            )));
        }
    }
    let rule = Rule::of(r);
    let (ipg, groups, blocks_count, tables) = match r.size_blocks {
        Some(size) => fixed(alloc, r, rule, size)?,
        None => {
            let (ipg, groups, blocks, tables, a) = auto(alloc, r, rule, r.extra_blocks)?;
            *alloc = a;
            (ipg, groups, blocks, tables)
        }
    };
    let ceiling = growth_ceiling(ipg);
    if !r.fit_ceiling && ceiling < r.max_resize_bytes {
        return Err(Error::Option(format!(
            "the inode density asked for ({ipg} inodes per 128 MiB group) lets the filesystem grow to {} only, below the growth ceiling asked for ({}): lower the ceiling or drop -i/-N",
            crate::units::human(ceiling),
            crate::units::human(r.max_resize_bytes)
        )));
    }
    let lowered_from = match rule {
        Rule::Fit(c) if ipg > c => Some(growth_ceiling(c)),
        _ => None,
    };
    Ok(Geometry {
        ipg,
        groups,
        blocks_count,
        tables,
        lowered_from,
    })
}

type Placed = (u32, u64, u64, Vec<Tables>);

/// The smallest size in blocks that holds the tree, with everything
/// before the group tables already allocated in `alloc` (its limit is
/// ignored), and the density the request would get at that size.
pub fn smallest_blocks(alloc: &Allocator, r: &Request) -> Result<u64> {
    auto(alloc, r, Rule::of(r), 0).map(|(_, _, blocks, _, _)| blocks)
}

/// A fixed size keeps its size (dropping a tail group too small to be
/// useful); the density comes from the rule.
fn fixed(alloc: &mut Allocator, r: &Request, rule: Rule, size: u64) -> Result<Placed> {
    let mut blocks = size;
    let mut groups = blocks.div_ceil(BLOCKS_PER_GROUP);
    let tail = blocks % BLOCKS_PER_GROUP;
    if groups > 1 && tail != 0 && tail < group_overhead(groups - 1) + MIN_LAST_GROUP {
        groups -= 1;
        blocks = groups * BLOCKS_PER_GROUP;
    }
    let ipg = rule.ipg(groups, blocks, r.inodes);
    let too_small = |detail: String| -> Error {
        match auto(alloc, r, rule, 0) {
            Ok((_, _, need, _, _)) => Error::DoesNotFit {
                size_bytes: size * BLOCK_SIZE,
                needed_bytes: need * BLOCK_SIZE,
                exact: true,
                detail,
            },
            Err(e) => e,
        }
    };
    if ipg > MAX_IPG as u64 || ipg * groups < r.inodes {
        return Err(too_small(format!(
            "{} inodes in {groups} block groups of 128 MiB need {} inodes per group{}",
            r.inodes,
            r.inodes.div_ceil(groups),
            match rule {
                Rule::Keep(i) => format!("; the growth ceiling asked for allows {i}: lower it (--max-online-resize, --max-resize)"),
                Rule::Ratio(_) | Rule::Count(_) => " (-i/-N give fewer)".to_string(),
                Rule::Fit(_) => format!("; a group holds at most {MAX_IPG}"),
            }
        )));
    }
    let mut a = alloc.clone();
    let Some(tables) = place_tables(&mut a, groups, ipg as u32) else {
        return Err(too_small(format!(
            "no room for the inode tables and bitmaps of {groups} groups of {ipg} inodes"
        )));
    };
    *alloc = a;
    Ok((ipg as u32, groups, blocks, tables))
}

/// The smallest group count that holds the tree's inodes and blocks
/// (plus `extra` free blocks), with the rule's density. Works on a copy
/// of the allocator without its size limit; returns it with the tables
/// placed.
fn auto(
    alloc: &Allocator,
    r: &Request,
    rule: Rule,
    extra: u64,
) -> Result<(u32, u64, u64, Vec<Tables>, Allocator)> {
    let inodes = r.inodes.max(1);
    let mut groups = alloc.next().div_ceil(BLOCKS_PER_GROUP).max(1);
    loop {
        let ipg = rule.ipg(groups, groups * BLOCKS_PER_GROUP, inodes);
        if ipg > MAX_IPG as u64 {
            let wanted = match rule {
                Rule::Count(n) => n,
                Rule::Fit(_) => inodes,
                Rule::Keep(_) | Rule::Ratio(_) => {
                    return Err(Error::Option(format!(
                        "{ipg} inodes per group is more than a group's {MAX_IPG}"
                    )))
                }
            };
            groups = groups.max(wanted.div_ceil(MAX_IPG as u64));
            if rule.ipg(groups, groups * BLOCKS_PER_GROUP, inodes) > MAX_IPG as u64 {
                groups += 1;
            }
            continue;
        }
        if ipg * groups < inodes {
            groups = inodes.div_ceil(ipg);
            continue;
        }
        if ipg * groups > u32::MAX as u64 {
            return Err(Error::Option(format!(
                "{groups} groups of {ipg} inodes: more than 2^32-1 inodes"
            )));
        }
        let mut a = alloc.unbounded();
        let tables = place_tables(&mut a, groups, ipg as u32)
            .ok_or_else(|| Error::Option("allocator refused unbounded allocation".into()))?;
        let mut blocks = a.next() + extra + fixed_metadata_within(a.next(), extra);
        let floor = (groups - 1) * BLOCKS_PER_GROUP + group_overhead(groups - 1) + MIN_LAST_GROUP;
        blocks = blocks.max(floor);
        let last = (blocks - 1) / BLOCKS_PER_GROUP;
        let tail_min = last * BLOCKS_PER_GROUP + group_overhead(last) + MIN_LAST_GROUP;
        blocks = blocks.max(tail_min);
        let need = blocks.div_ceil(BLOCKS_PER_GROUP);
        if need <= groups {
            return Ok((ipg as u32, groups, blocks, tables, a));
        }
        groups = need;
    }
}

/// Superblock and descriptor copies in the `len` blocks after `start`:
/// extra free space (mke2fs-style `--extra-size`, DIB's
/// `--image-extra-size`) is free space, so they come on top of it.
fn fixed_metadata_within(start: u64, len: u64) -> u64 {
    if len == 0 {
        return 0;
    }
    let first = start.div_ceil(BLOCKS_PER_GROUP);
    let mut extra = 0;
    let mut g = first;
    while g * BLOCKS_PER_GROUP < start + len + extra {
        extra += group_overhead(g);
        g += 1;
    }
    extra
}

/// Place every group's bitmaps and inode table after the data (flex_bg
/// lets them live anywhere in the filesystem).
fn place_tables(a: &mut Allocator, groups: u64, ipg: u32) -> Option<Vec<Tables>> {
    let mut bbs = Vec::with_capacity(groups as usize);
    for _ in 0..groups {
        bbs.push(a.alloc_contig(1)?.start);
    }
    let mut ibs = Vec::with_capacity(groups as usize);
    for _ in 0..groups {
        ibs.push(a.alloc_contig(1)?.start);
    }
    let mut out = Vec::with_capacity(groups as usize);
    for g in 0..groups as usize {
        out.push(Tables {
            block_bitmap: bbs[g],
            inode_bitmap: ibs[g],
            inode_table: a.alloc_contig(itable_blocks(ipg))?.start,
        });
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(size: Option<u64>, inodes: u64) -> Request {
        Request {
            density: Density::Ceiling,
            max_resize_bytes: 1 << 50,
            fit_ceiling: true,
            size_blocks: size,
            extra_blocks: 0,
            inodes,
        }
    }

    #[test]
    fn ceilings() {
        assert_eq!(max_inodes_per_group(1 << 50), 496);
        assert_eq!(growth_ceiling(MAX_IPG), 131071 * GROUP_BYTES);
    }

    #[test]
    fn auto_size_keeps_the_ceiling_and_adds_groups() {
        let mut a = Allocator::new(None);
        let g = choose(&mut a, &req(None, 30_000)).unwrap();
        assert_eq!(g.ipg, 496);
        assert_eq!(g.groups, 61);
        assert!(g.lowered_from.is_none());
    }

    #[test]
    fn fixed_size_lowers_the_ceiling_to_fit() {
        // 4 groups of 128 MiB for 30000 inodes: 7504 per group.
        let mut a = Allocator::new(Some(4 * BLOCKS_PER_GROUP));
        let g = choose(&mut a, &req(Some(4 * BLOCKS_PER_GROUP), 30_000)).unwrap();
        assert_eq!(g.groups, 4);
        assert_eq!(g.ipg, 7504);
        assert_eq!(g.lowered_from, Some(growth_ceiling(496)));
        // Asked for explicitly, the ceiling is not lowered.
        let mut r = req(Some(4 * BLOCKS_PER_GROUP), 30_000);
        r.fit_ceiling = false;
        let mut a = Allocator::new(Some(4 * BLOCKS_PER_GROUP));
        assert!(matches!(choose(&mut a, &r), Err(Error::DoesNotFit { .. })));
    }

    #[test]
    fn too_small_at_any_ceiling_names_the_smallest_size() {
        // 100000 inodes need 4 groups of at most 32768.
        let mut a = Allocator::new(Some(2 * BLOCKS_PER_GROUP));
        match choose(&mut a, &req(Some(2 * BLOCKS_PER_GROUP), 100_000)) {
            Err(Error::DoesNotFit { needed_bytes, .. }) => {
                assert!(needed_bytes > 3 * GROUP_BYTES && needed_bytes <= 4 * GROUP_BYTES)
            }
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("fits"),
        }
    }

    #[test]
    fn bytes_per_inode_as_mke2fs() {
        let mut r = req(Some(8 * BLOCKS_PER_GROUP), 100);
        r.density = Density::BytesPerInode(4096);
        let mut a = Allocator::new(r.size_blocks);
        let g = choose(&mut a, &r).unwrap();
        assert_eq!(g.ipg as u64 * g.groups, 8 * BLOCKS_PER_GROUP);
        r.density = Density::Count(10_000);
        let mut a = Allocator::new(r.size_blocks);
        assert_eq!(choose(&mut a, &r).unwrap().ipg, 1264);
    }
}
