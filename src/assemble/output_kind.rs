//! The output-type vocabulary of `-t`: disk formats, tarballs and
//! container image archives and squashfs, their names and the files they are written
//! to (DIB's `NAME.<type>` naming; `NAME.docker.tar`, `NAME.oci.tar`, `NAME.squash`).

use std::path::{Path, PathBuf};

use crate::capture::OutputType;
pub use crate::output::container::ContainerType;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskType {
    Raw,
    Qcow2,
    Vhd,
    Vmdk,
}

/// One requested output: a disk format, a tarball of the same tree, or a
/// container image archive with the tree as its layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputKind {
    Disk(DiskType),
    Tar(OutputType),
    Container(ContainerType),
    /// squashfs of the tree (DIB's `NAME.squash`).
    Squashfs,
}

impl OutputKind {
    /// `-t` names: raw, qcow2, vhd (vpc), vmdk, tar, tgz, tar.zst (tzst), docker, oci, squashfs.
    pub fn parse(t: &str) -> Option<OutputKind> {
        Some(match t {
            "raw" => OutputKind::Disk(DiskType::Raw),
            "qcow2" => OutputKind::Disk(DiskType::Qcow2),
            "vhd" | "vpc" => OutputKind::Disk(DiskType::Vhd),
            "vmdk" => OutputKind::Disk(DiskType::Vmdk),
            "tar" => OutputKind::Tar(OutputType::Tar),
            "tgz" => OutputKind::Tar(OutputType::Tgz),
            "tar.zst" | "tzst" => OutputKind::Tar(OutputType::TarZst),
            "docker" => OutputKind::Container(ContainerType::Docker),
            "oci" => OutputKind::Container(ContainerType::Oci),
            "squashfs" => OutputKind::Squashfs,
            _ => return None,
        })
    }

    pub fn ext(self) -> &'static str {
        match self {
            OutputKind::Disk(DiskType::Raw) => "raw",
            OutputKind::Disk(DiskType::Qcow2) => "qcow2",
            OutputKind::Disk(DiskType::Vhd) => "vhd",
            OutputKind::Disk(DiskType::Vmdk) => "vmdk",
            OutputKind::Tar(OutputType::Tar) => "tar",
            OutputKind::Tar(OutputType::Tgz) => "tgz",
            OutputKind::Tar(OutputType::TarZst) => "tar.zst",
            OutputKind::Container(ContainerType::Docker) => "docker.tar",
            OutputKind::Container(ContainerType::Oci) => "oci.tar",
            OutputKind::Squashfs => "squash",
        }
    }
}

/// Parses a `-t` list; the message names the bad type.
pub fn parse_types(list: &str) -> Result<Vec<OutputKind>, String> {
    let mut v = Vec::new();
    for t in list.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        let k = OutputKind::parse(t).ok_or_else(|| {
            format!(
                "unknown output type {t:?}: expected raw, qcow2, vhd, vmdk, tar, tgz, tar.zst, docker, oci or squashfs"
            )
        })?;
        if !v.contains(&k) {
            v.push(k);
        }
    }
    if v.is_empty() {
        return Err(
            "-t needs at least one of raw, qcow2, vhd, vmdk, tar, tgz, tar.zst, docker, oci, squashfs".into(),
        );
    }
    Ok(v)
}

/// The output path for a type (DIB's naming: NAME.raw, NAME.qcow2, …).
pub fn output_path(name: &Path, t: OutputKind) -> PathBuf {
    let mut s = name.as_os_str().to_owned();
    s.push(".");
    s.push(t.ext());
    PathBuf::from(s)
}
