//! From a block-device graph and a disk size to a partition layout, with
//! DIB's size arithmetic, and from a layout to a written partition table.
//!
//! Sizes (`utils.py`): `B`, `K`/`KB`, `M`/`MB`, `G`/`GB`, `T`/`TB` are powers
//! of 1000, `KiB`..`TiB` powers of 1024, no unit is bytes, the number may be
//! fractional; `NN%` is a share of the space still free. MBR: free space as
//! `mbr.py` counts it, partitions aligned by `align` (default 1 MiB). GPT:
//! free space starts at disk size − 2 MiB, each size is handed to sgdisk in
//! whole MiB (rounded down), partitions start on 1 MiB boundaries.

use std::io::{Seek, SeekFrom, Write};

use serde_json::Value;

use super::config::{ConfigError, Graph, Plugin};
use super::gpt::{self, Geometry, GptPartition, Guid, GuidSource};
use super::mbr::{MbrError, MbrWriter};

const MIB: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("Invalid size unit spec [{0}]")]
    SizeSpec(String),
    #[error("unit_str [{0}] not known")]
    Unit(String),
    #[error("partition {name}: {msg}")]
    Partition { name: String, msg: String },
    #[error("dibr supports one partitioning node per image (found {0})")]
    ManyPartitionings(usize),
    #[error(transparent)]
    Mbr(#[from] MbrError),
    #[error(transparent)]
    Gpt(#[from] gpt::GptError),
}

const UNITS: &[(&str, u64)] = &[
    ("TiB", 1 << 40),
    ("GiB", 1 << 30),
    ("MiB", 1 << 20),
    ("KiB", 1 << 10),
    ("TB", 1_000_000_000_000),
    ("GB", 1_000_000_000),
    ("MB", 1_000_000),
    ("KB", 1_000),
    ("T", 1_000_000_000_000),
    ("G", 1_000_000_000),
    ("M", 1_000_000),
    ("K", 1_000),
    ("B", 1),
    ("", 1),
];

/// DIB's `parse_abs_size_spec`: bytes.
pub fn parse_abs_size(spec: &str) -> Result<u64, LayoutError> {
    let bad = || LayoutError::SizeSpec(spec.to_string());
    let split = spec
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(spec.len());
    let (num, rest) = spec.split_at(split);
    let unit = rest.strip_prefix(' ').unwrap_or(rest);
    if !unit.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(bad());
    }
    let factor = UNITS
        .iter()
        .find(|(u, _)| *u == unit)
        .map(|(_, f)| *f)
        .ok_or_else(|| LayoutError::Unit(unit.to_string()))?;
    let n: f64 = if num.is_empty() {
        1.0
    } else {
        num.parse().map_err(|_| bad())?
    };
    let bytes = factor as f64 * n;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(bad());
    }
    Ok(bytes as u64)
}

/// DIB's `parse_rel_size_spec`: `NN%` of `free`, else absolute.
pub fn parse_rel_size(spec: &str, free: u64) -> Result<u64, LayoutError> {
    if let Some(pct) = spec.strip_suffix('%') {
        let p: f64 = pct
            .trim()
            .parse()
            .map_err(|_| LayoutError::SizeSpec(spec.to_string()))?;
        if !p.is_finite() || p < 0.0 {
            return Err(LayoutError::SizeSpec(spec.to_string()));
        }
        let v = free as f64 * p / 100.0;
        if v >= u64::MAX as f64 {
            return Err(LayoutError::SizeSpec(spec.to_string()));
        }
        return Ok(v as u64);
    }
    parse_abs_size(spec)
}

fn spec_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableKind {
    Mbr,
    Gpt,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartType {
    Mbr(u8),
    Gpt(Guid),
}

/// One partition of a computed layout; `start`/`size` in bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayoutPartition {
    pub name: String,
    /// Linux partition number (`/dev/…pN`).
    pub number: u32,
    pub start: u64,
    pub size: u64,
    pub ptype: PartType,
    pub boot: bool,
    pub primary: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub kind: TableKind,
    pub disk_size: u64,
    pub sector: u64,
    /// MBR alignment in bytes (GPT: always 1 MiB).
    pub align: u64,
    pub partitions: Vec<LayoutPartition>,
}

/// A Write + Seek that discards: lets the MBR writer compute placements.
struct Discard(u64);
impl Write for Discard {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0 += b.len() as u64;
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
impl Seek for Discard {
    fn seek(&mut self, p: SeekFrom) -> std::io::Result<u64> {
        if let SeekFrom::Start(o) = p {
            self.0 = o;
        }
        Ok(self.0)
    }
}

fn mbr_type(v: Option<&Value>, name: &str) -> Result<u8, LayoutError> {
    let Some(v) = v else { return Ok(0x83) };
    let s = spec_string(v);
    let hex = s.trim_start_matches("0x").trim_start_matches("0X");
    u8::from_str_radix(hex, 16).map_err(|_| LayoutError::Partition {
        name: name.into(),
        msg: format!("MBR partition type [{s}] is not a hex byte"),
    })
}

fn gpt_type(v: Option<&Value>, name: &str) -> Result<Guid, LayoutError> {
    let s = v.map(spec_string).unwrap_or_else(|| "8300".into());
    gpt::type_guid(&s).ok_or_else(|| LayoutError::Partition {
        name: name.into(),
        msg: format!("unknown GPT partition type [{s}] (an sgdisk code such as EF00, or a GUID)"),
    })
}

/// Computes the layout of the graph's partitioning node on a disk of
/// `disk_size` bytes with `sector`-byte sectors (512, or 4096 for GPT).
/// `Ok(None)` when the config has no partitioning (filesystem on the disk).
pub fn compute(graph: &Graph, disk_size: u64, sector: u64) -> Result<Option<Layout>, LayoutError> {
    let parts: Vec<_> = graph
        .entries
        .iter()
        .filter(|e| e.plugin == Plugin::Partitioning)
        .collect();
    let entry = match parts.len() {
        0 => return Ok(None),
        1 => parts[0],
        n => return Err(LayoutError::ManyPartitionings(n)),
    };
    let kind = match entry.values.get("label").and_then(Value::as_str) {
        Some("gpt") => TableKind::Gpt,
        _ => TableKind::Mbr,
    };
    let align = match entry.values.get("align") {
        Some(a) => parse_abs_size(&spec_string(a))?,
        None => MIB,
    };
    let list = entry
        .values
        .get("partitions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let partitions = match kind {
        TableKind::Mbr => place_mbr(&list, disk_size, align, sector)?,
        TableKind::Gpt => place_gpt(&list, disk_size, sector)?,
    };
    Ok(Some(Layout {
        kind,
        disk_size,
        sector,
        align,
        partitions,
    }))
}

/// A partition's name (`name`) and size text (`size`, mandatory).
fn name_and_size(p: &Value) -> Result<(String, String), LayoutError> {
    let name = p.get("name").map(spec_string).unwrap_or_default();
    let size = p
        .get("size")
        .map(spec_string)
        .ok_or_else(|| LayoutError::Partition {
            name: name.clone(),
            msg: format!("No 'size' in partition [{name}]"),
        })?;
    Ok((name, size))
}

/// MBR placement, primary and logical, as DIB's `MBR` class (run against a
/// writer that discards the bytes).
fn place_mbr(
    list: &[Value],
    disk_size: u64,
    align: u64,
    sector: u64,
) -> Result<Vec<LayoutPartition>, LayoutError> {
    if sector != 512 {
        return Err(LayoutError::Partition {
            name: "(table)".into(),
            msg: "MBR tables are written with 512-byte sectors only (as DIB)".into(),
        });
    }
    let mut w = MbrWriter::new(Discard(0), disk_size, align, 0)?;
    let mut out = Vec::new();
    for p in list {
        let (name, size) = name_and_size(p)?;
        let (boot, primary) = flags(p, &name)?;
        let bytes = parse_rel_size(&size, w.free())?;
        let ptype = mbr_type(p.get("type"), &name)?;
        let number = w.add_partition(primary, boot, bytes, ptype)?;
        let Some(placed) = w.partitions().last().cloned() else {
            return Err(LayoutError::Partition {
                name,
                msg: "internal error: the partition was not placed".into(),
            });
        };
        out.push(LayoutPartition {
            name,
            number,
            start: placed.start * 512,
            size: placed.sectors * 512,
            ptype: PartType::Mbr(ptype),
            boot,
            primary,
        });
    }
    Ok(out)
}

/// GPT placement: whole MiB sizes, 1 MiB aligned, out of the disk less
/// the two tables' MiB.
fn place_gpt(
    list: &[Value],
    disk_size: u64,
    sector: u64,
) -> Result<Vec<LayoutPartition>, LayoutError> {
    let geo = Geometry::new(disk_size, sector)?;
    let mut free = disk_size.saturating_sub(2 * MIB);
    let mut gparts = Vec::new();
    for p in list {
        let (name, size) = name_and_size(p)?;
        let (boot, primary) = flags(p, &name)?;
        if primary {
            return Err(LayoutError::Partition {
                name,
                msg: "the 'primary' flag is not supported with GPT".into(),
            });
        }
        let bytes = parse_rel_size(&size, free)?;
        if bytes > free {
            return Err(LayoutError::Partition {
                name,
                msg: format!("size {bytes} is more than the {free} bytes still free"),
            });
        }
        if bytes < MIB {
            return Err(LayoutError::Partition {
                name,
                msg: format!("size {bytes} is less than 1 MiB (GPT sizes are whole MiB)"),
            });
        }
        free -= bytes;
        gparts.push(GptPartition {
            name: name.clone(),
            type_guid: gpt_type(p.get("type"), &name)?,
            size: bytes / MIB * MIB,
            // DIB's boot flag means legacy-BIOS-bootable (attribute bit 2).
            attributes: if boot { 1 << 2 } else { 0 },
        });
    }
    // Placement only; GUIDs are chosen when writing.
    let entries = gpt::place(geo, MIB, &gparts, &GuidSource::Seed(Vec::new()))?;
    Ok(entries
        .iter()
        .zip(&gparts)
        .enumerate()
        .map(|(i, (e, p))| LayoutPartition {
            name: p.name.clone(),
            number: i as u32 + 1,
            start: e.first_lba * sector,
            size: (e.last_lba + 1 - e.first_lba) * sector,
            ptype: PartType::Gpt(p.type_guid),
            boot: p.attributes != 0,
            primary: false,
        })
        .collect())
}

fn mismatch(name: &str) -> LayoutError {
    LayoutError::Partition {
        name: name.into(),
        msg: "partition type does not match the table kind".into(),
    }
}

fn flags(p: &Value, name: &str) -> Result<(bool, bool), LayoutError> {
    let (mut boot, mut primary) = (false, false);
    if let Some(f) = p.get("flags") {
        let list = f.as_array().ok_or_else(|| LayoutError::Partition {
            name: name.into(),
            msg: "'flags' must be a list".into(),
        })?;
        for f in list {
            match f.as_str() {
                Some("boot") => boot = true,
                Some("primary") => primary = true,
                _ => {
                    return Err(LayoutError::Partition {
                        name: name.into(),
                        msg: format!(
                            "Unknown flag [{}] in partitioning for [{name}]",
                            spec_string(f)
                        ),
                    })
                }
            }
        }
    }
    Ok((boot, primary))
}

/// Writes the layout's partition table to `dev` (a disk of
/// `layout.disk_size` bytes). MBR disk id and GPT GUIDs come from `guids`.
pub fn write<W: Write + Seek>(
    dev: &mut W,
    layout: &Layout,
    guids: &GuidSource,
) -> Result<(), LayoutError> {
    match layout.kind {
        TableKind::Mbr => {
            let id = u32::from_le_bytes(
                guids.disk().map_err(gpt::GptError::Io)?.0[..4]
                    .try_into()
                    .unwrap(),
            );
            let mut w = MbrWriter::new(&mut *dev, layout.disk_size, layout.align, id)?;
            for p in &layout.partitions {
                let PartType::Mbr(t) = p.ptype else {
                    return Err(mismatch(&p.name));
                };
                w.add_partition(p.primary, p.boot, p.size, t)?;
            }
            w.finish()?;
        }
        TableKind::Gpt => {
            let geo = Geometry::new(layout.disk_size, layout.sector)?;
            let mut entries = Vec::new();
            for p in &layout.partitions {
                let PartType::Gpt(t) = p.ptype else {
                    return Err(mismatch(&p.name));
                };
                entries.push(gpt::GptEntry {
                    type_guid: t,
                    part_guid: guids
                        .partition(p.number as usize)
                        .map_err(gpt::GptError::Io)?,
                    first_lba: p.start / layout.sector,
                    last_lba: (p.start + p.size) / layout.sector - 1,
                    attributes: if p.boot { 1 << 2 } else { 0 },
                    name: p.name.clone(),
                });
            }
            gpt::write_gpt(dev, geo, guids.disk().map_err(gpt::GptError::Io)?, &entries)?;
        }
    }
    Ok(())
}

/// Parses a block-device config, lays it out on a sparse in-memory disk of
/// `disk_size` bytes, writes the table and reads it back, checking the
/// reader sees exactly the layout. Used by the fuzz target and the mutation
/// test; returns the layout (or the first error).
pub fn check_roundtrip(text: &str, disk_size: u64, sector: u64) -> Result<Option<Layout>, String> {
    use super::read::{read_gpt, read_mbr};
    let graph = super::config::load(text).map_err(|e| e.to_string())?;
    let Some(l) = compute(&graph, disk_size, sector).map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    let mut disk = super::mem::SparseDisk::new(disk_size);
    write(&mut disk, &l, &GuidSource::Seed(b"roundtrip".to_vec())).map_err(|e| e.to_string())?;
    let got: Vec<(u32, u64, u64)> = match l.kind {
        TableKind::Mbr => read_mbr(&mut disk)
            .map_err(|e| format!("read back: {e}"))?
            .into_iter()
            .filter(|p| !matches!(p.ptype, 0x05 | 0x0f))
            .map(|p| (p.number, p.start * 512, p.sectors * 512))
            .collect(),
        TableKind::Gpt => read_gpt(&mut disk, sector)
            .map_err(|e| format!("read back: {e}"))?
            .entries
            .into_iter()
            .map(|(n, e)| {
                (
                    n,
                    e.first_lba * sector,
                    (e.last_lba + 1 - e.first_lba) * sector,
                )
            })
            .collect(),
    };
    let want: Vec<(u32, u64, u64)> = l
        .partitions
        .iter()
        .map(|p| (p.number, p.start, p.size))
        .collect();
    assert_eq!(
        got, want,
        "partition table read back differs from the layout"
    );
    for w in want.windows(2) {
        assert!(w[0].1 + w[0].2 <= w[1].1, "partitions overlap: {want:?}");
    }
    if let Some(last) = want.last() {
        assert!(last.1 + last.2 <= disk_size, "partition beyond the disk");
    }
    Ok(Some(l))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_as_dib_utils() {
        assert_eq!(parse_abs_size("154MiB").unwrap(), 154 * MIB);
        assert_eq!(parse_abs_size("198").unwrap(), 198);
        assert_eq!(parse_abs_size("1.5 GiB").unwrap(), 3 << 29);
        assert_eq!(parse_abs_size("1G").unwrap(), 1_000_000_000);
        assert_eq!(parse_abs_size("2KB").unwrap(), 2000);
        assert_eq!(parse_abs_size("5K").unwrap(), 5000);
        assert_eq!(parse_abs_size("7B").unwrap(), 7);
        assert_eq!(parse_abs_size("1TiB").unwrap(), 1 << 40);
        assert_eq!(parse_abs_size("MiB").unwrap(), MIB);
        assert!(matches!(
            parse_abs_size("1 TiBB"),
            Err(LayoutError::Unit(_))
        ));
        assert!(matches!(parse_abs_size("10xyz"), Err(LayoutError::Unit(_))));
        assert!(matches!(
            parse_abs_size("1..2M"),
            Err(LayoutError::SizeSpec(_))
        ));
        assert!(matches!(
            parse_abs_size("-1M"),
            Err(LayoutError::SizeSpec(_))
        ));
        assert!(parse_abs_size("99999999999999999999TiB").is_err());
        assert_eq!(parse_rel_size("50%", 1000).unwrap(), 500);
        assert_eq!(parse_rel_size("54%", 1071644672).unwrap(), 578688122);
        assert_eq!(parse_rel_size("100%", 7).unwrap(), 7);
        assert_eq!(parse_rel_size("8MiB", 7).unwrap(), 8 * MIB);
        assert!(parse_rel_size("x%", 7).is_err());
        assert!(parse_rel_size("-5%", 7).is_err());
        assert!(parse_rel_size("inf%", 7).is_err());
    }
}
