//! `--mkfs-options`: the mke2fs arguments DIB passes to the root
//! filesystem's mkfs (`diskimage_builder/lib/disk-image-create` puts them
//! after its own `-i 4096 -J size=64`, as `root-fs-opts`). dibr writes
//! ext4 itself, so each option is honoured, accepted because dibr already
//! does what it asks, or refused naming the option and the reason —
//! never silently dropped. Meanings from mke2fs(8).

use crate::ext4::journal::MIN_BLOCKS;
use crate::ext4::layout::BLOCK_SIZE;
use crate::ext4::Density;

/// What the options ask of dibr's ext4 writer (`None`: not given).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MkfsOptions {
    /// `-i` / `-N`.
    pub density: Option<Density>,
    /// `-m`, in tenths of a percent.
    pub reserved_per_mille: Option<u16>,
    /// `-J size=`, in blocks.
    pub journal_blocks: Option<u64>,
    /// `-E resize=`, in blocks.
    pub resize_blocks: Option<u64>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("--mkfs-options: {0}")]
pub struct MkfsOptionsError(String);

fn err<T>(msg: impl Into<String>) -> Result<T, MkfsOptionsError> {
    Err(MkfsOptionsError(msg.into()))
}

/// mke2fs's getopt string: the options that take a value.
const WITH_VALUE: &str = "bdegilmoprstzCEGIJLMNORTU";
/// The features dibr's writer always sets (`ext4/superblock.rs`), as
/// mke2fs -O spells them.
const WRITTEN: &[&str] = &[
    "has_journal",
    "ext_attr",
    "dir_index",
    "filetype",
    "meta_bg",
    "extent",
    "extents",
    "64bit",
    "flex_bg",
    "sparse_super",
    "large_file",
    "huge_file",
    "dir_nlink",
    "extra_isize",
    "metadata_csum",
];
/// Features dibr never sets: asking for their absence (`^name`) is
/// already true.
const NOT_WRITTEN: &[&str] = &[
    "resize_inode",
    "uninit_bg",
    "gdt_csum",
    "quota",
    "project",
    "bigalloc",
    "inline_data",
    "encrypt",
    "casefold",
    "fname_encoding",
    "ea_inode",
    "large_dir",
    "mmp",
    "sparse_super2",
    "metadata_csum_seed",
    "orphan_file",
    "fast_commit",
    "stable_inodes",
    "verity",
    "journal_dev",
    "compression",
    "imagic_inodes",
    "lazy_bg",
    "snapshot_bitmap",
    "dirdata",
    "exclude_bitmap",
    "exclude_inode",
    "needs_recovery",
    "replica",
];

/// Parse DIB's mkfs option string (split on whitespace, as the shell
/// does; options may be bundled or take their value attached, as getopt
/// allows: `-Fq`, `-i4096`).
pub fn parse(s: &str) -> Result<MkfsOptions, MkfsOptionsError> {
    let mut o = MkfsOptions::default();
    let mut words = s.split_whitespace();
    while let Some(w) = words.next() {
        let Some(flags) = w.strip_prefix('-').filter(|f| !f.is_empty()) else {
            return err(format!(
                "{w:?} is not an option: mke2fs's device and size come from the block-device config and --image-size"
            ));
        };
        for (i, c) in flags.char_indices() {
            if !WITH_VALUE.contains(c) {
                flag(c)?;
                continue;
            }
            let rest = &flags[i + c.len_utf8()..];
            let value = if rest.is_empty() {
                words
                    .next()
                    .ok_or_else(|| MkfsOptionsError(format!("-{c} needs a value")))?
            } else {
                rest
            };
            with_value(&mut o, c, value)?;
            break;
        }
    }
    Ok(o)
}

/// Options without a value.
fn flag(c: char) -> Result<(), MkfsOptionsError> {
    match c {
        // Quiet, verbose, force, keep (no discard), direct I/O: how mke2fs
        // talks and treats a device, not what it writes.
        'q' | 'v' | 'F' | 'K' | 'D' => Ok(()),
        'j' => Ok(()), // a journal: dibr always writes one
        'c' => err("-c (check the device for bad blocks): dibr writes an image file, not a device"),
        'n' => err("-n (do not create the filesystem): not a build option"),
        'S' => err("-S (write superblock and descriptors only): not a build option"),
        'V' => err("-V (print the version): not a build option"),
        other => err(format!("-{other} is not an mke2fs option dibr knows")),
    }
}

fn number(opt: &str, v: &str) -> Result<u64, MkfsOptionsError> {
    v.parse::<u64>()
        .map_err(|_| MkfsOptionsError(format!("{opt} {v:?}: expected a whole number")))
}

/// Options with a value.
fn with_value(o: &mut MkfsOptions, c: char, v: &str) -> Result<(), MkfsOptionsError> {
    match c {
        'b' => match v {
            "4096" | "4k" | "4K" => Ok(()),
            _ => err(format!("-b {v}: dibr writes 4096-byte blocks only (GRUB, the kernel and growth to 1 PiB want them)")),
        },
        'i' => {
            let n = number("-i", v)?;
            if !(BLOCK_SIZE..=64 << 20).contains(&n) {
                return err(format!(
                    "-i {v}: dibr takes 4096 to 67108864 bytes per inode (its groups are 32768 blocks of 4 KiB, one inode bitmap block; mke2fs would shrink the groups instead)"
                ));
            }
            o.density = Some(Density::BytesPerInode(n));
            Ok(())
        }
        'N' => {
            let n = number("-N", v)?;
            if n == 0 || n > u32::MAX as u64 {
                return err(format!("-N {v}: expected 1 to 4294967295 inodes"));
            }
            o.density = Some(Density::Count(n));
            Ok(())
        }
        'm' => {
            let p: f64 = v
                .parse()
                .ok()
                .filter(|p: &f64| (0.0..=50.0).contains(p))
                .ok_or_else(|| {
                    MkfsOptionsError(format!("-m {v}: expected a percentage from 0 to 50"))
                })?;
            o.reserved_per_mille = Some((p * 10.0).round() as u16);
            Ok(())
        }
        'I' => match v {
            "256" => Ok(()),
            _ => err(format!("-I {v}: dibr writes 256-byte inodes (mke2fs's default) only")),
        },
        't' => match v {
            "ext4" => Ok(()),
            _ => err(format!("-t {v}: the root filesystem dibr writes is ext4; the block-device config's mkfs type chooses it")),
        },
        'g' => match v {
            "32768" => Ok(()),
            _ => err(format!("-g {v}: dibr's block groups are 32768 blocks")),
        },
        'G' => match v {
            "16" => Ok(()),
            _ => err(format!("-G {v}: dibr packs 16 groups' tables per flex group")),
        },
        'J' => journal(o, v),
        'E' => extended(o, v),
        'O' => features(v),
        'L' => err(format!("-L {v}: set the root label with --root-label (DIB's) or the block-device config's mkfs label")),
        'U' => err(format!("-U {v}: set the filesystem UUID with the block-device config's mkfs uuid")),
        'T' => err(format!("-T {v}: usage types are mke2fs.conf profiles; pass what they set (-i, -N, -m) directly")),
        other => err(format!("-{other} {v}: not supported by dibr's ext4 writer")),
    }
}

/// `-J size=MiB` (DIB's `--mkfs-journal-size`); a journal device is refused.
fn journal(o: &mut MkfsOptions, v: &str) -> Result<(), MkfsOptionsError> {
    for kv in v.split(',').filter(|s| !s.is_empty()) {
        match kv.split_once('=') {
            Some(("size", mib)) => o.journal_blocks = Some(journal_mib("-J size", mib)?),
            _ => {
                return err(format!(
                    "-J {kv}: dibr writes an internal journal; only size=MiB is supported"
                ))
            }
        }
    }
    Ok(())
}

/// A journal size in MiB (mke2fs `-J size=`, DIB's `--mkfs-journal-size`)
/// as blocks, within what jbd2 and mke2fs accept.
pub fn journal_mib(opt: &str, v: &str) -> Result<u64, MkfsOptionsError> {
    let mib = number(opt, v)?;
    let blocks = mib * ((1 << 20) / BLOCK_SIZE);
    if blocks < MIN_BLOCKS || mib > 10240 {
        return err(format!(
            "{opt}={v}: the journal is 4 to 10240 MiB (jbd2's minimum, mke2fs's maximum)"
        ));
    }
    Ok(blocks)
}

/// `-E` extended options.
fn extended(o: &mut MkfsOptions, v: &str) -> Result<(), MkfsOptionsError> {
    for kv in v.split(',').filter(|s| !s.is_empty()) {
        let (k, val) = kv.split_once('=').unwrap_or((kv, ""));
        match k {
            "resize" => {
                let n = number("-E resize", val)?;
                if n == 0 || n > 1 << 48 {
                    return err(format!(
                        "-E resize={val}: expected 1 to 2^48 blocks of 4 KiB"
                    ));
                }
                o.resize_blocks = Some(n);
            }
            // How mke2fs initialises a device: dibr writes every table and
            // the journal into a fresh sparse file, zeroed already.
            "lazy_itable_init" | "lazy_journal_init" | "nodiscard" | "discard"
            | "assume_storage_prezeroed" => {}
            "root_owner" => {
                return err(
                    "-E root_owner: the root directory keeps the owner the tree gives it",
                )
            }
            other => {
                return err(format!(
                    "-E {other}: not supported by dibr's ext4 writer (it honours resize=, and accepts lazy_itable_init, lazy_journal_init, discard, nodiscard)"
                ))
            }
        }
    }
    Ok(())
}

/// `-O`: features dibr writes are accepted, the absence of ones it never
/// writes too; anything else is refused by name.
fn features(v: &str) -> Result<(), MkfsOptionsError> {
    for f in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (drop, name) = match f.strip_prefix('^') {
            Some(n) => (true, n),
            None => (false, f),
        };
        let written = WRITTEN.contains(&name);
        let known = written || NOT_WRITTEN.contains(&name);
        match (drop, written, known) {
            (false, true, _) | (true, false, true) => {}
            (true, true, _) => {
                return err(format!(
                    "-O ^{name}: dibr's ext4 writer always sets {name} and cannot leave it out"
                ))
            }
            (false, false, true) => {
                return err(format!(
                    "-O {name}: dibr's ext4 writer does not write {name} (it writes {})",
                    WRITTEN.join(",")
                ))
            }
            (_, _, false) => return err(format!("-O {f}: unknown ext4 feature {name:?}")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn honoured() {
        let o = parse("-i 4096 -m 1 -J size=128 -E resize=262144,lazy_itable_init=1").unwrap();
        assert_eq!(o.density, Some(Density::BytesPerInode(4096)));
        assert_eq!(o.reserved_per_mille, Some(10));
        assert_eq!(o.journal_blocks, Some(32768));
        assert_eq!(o.resize_blocks, Some(262144));
        let o = parse("-N100000 -m0.5 -Fq").unwrap();
        assert_eq!(o.density, Some(Density::Count(100000)));
        assert_eq!(o.reserved_per_mille, Some(5));
        assert_eq!(parse("").unwrap(), MkfsOptions::default());
    }

    #[test]
    fn features_written_or_absent_are_accepted() {
        assert!(parse("-O metadata_csum,64bit,^resize_inode,^orphan_file -I 256 -b 4096").is_ok());
        for (opts, names) in [
            ("-O ^metadata_csum", "metadata_csum"),
            ("-O inline_data", "inline_data"),
            ("-O frobnicate", "frobnicate"),
            ("-I 128", "-I 128"),
            ("-b 1024", "-b 1024"),
            ("-E stride=16", "stride"),
            ("-J device=/dev/sdb", "device"),
            ("-L root", "--root-label"),
            ("-i 1024", "-i 1024"),
            ("-c", "-c"),
            ("/dev/sda", "/dev/sda"),
            ("-i", "-i needs a value"),
        ] {
            let e = parse(opts).unwrap_err().to_string();
            assert!(e.contains(names), "{opts}: {e}");
            assert!(e.starts_with("--mkfs-options: "), "{e}");
        }
    }
}
