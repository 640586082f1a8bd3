//! What can go wrong in an assembly, each variant naming the filesystem,
//! entry or file it concerns.

use std::io;

use super::plan::PlanError;
use super::HookError;
use crate::capture::CaptureError;
use crate::disk::config;
use crate::disk::layout;
use crate::ext4;
use crate::fat;
use crate::output::qcow2;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AssembleError {
    #[error("the Glance properties of {}: {source}", output.display())]
    Glance {
        output: std::path::PathBuf,
        #[source]
        source: Box<crate::inspect::glance::GlanceError>,
    },
    #[error(transparent)]
    Source(#[from] crate::source::SourceError),
    #[error("block-device config ({origin}): {source}")]
    Config {
        origin: String,
        #[source]
        source: config::ConfigError,
    },
    #[error("block-device config ({origin}): {source}")]
    Plan {
        origin: String,
        #[source]
        source: Box<PlanError>,
    },
    #[error(transparent)]
    Lvm(crate::lvm::LvmError),
    #[error("filesystem '{node}' (mounted at {mount}): {source}")]
    Ext4 {
        node: String,
        mount: String,
        #[source]
        source: Box<ext4::Error>,
    },
    #[error("xfs filesystem '{node}' (mounted at {mount}): {source}")]
    Xfs {
        node: String,
        mount: String,
        #[source]
        source: Box<crate::xfs::Error>,
    },
    #[error("filesystem '{node}' (mounted at {mount}, {size} bytes): the tree does not fit{hint}")]
    DoesNotFit {
        node: String,
        mount: String,
        size: u64,
        /// Bytes the filesystem needs (a lower bound when the writer ran
        /// out of room for file data).
        needed: u64,
        /// Why, and what to do.
        hint: String,
    },
    #[error("vfat filesystem '{node}' (mounted at {mount}): {source}")]
    Fat {
        node: String,
        mount: String,
        #[source]
        source: fat::FatError,
    },
    #[error("vfat filesystem '{node}' (mounted at {mount}): the files under it need {needed} bytes, more than its {size}-byte partition; enlarge the partition in the block-device config")]
    FatTooLarge {
        node: String,
        mount: String,
        needed: u64,
        size: u64,
    },
    #[error("writing the partition table: {0}")]
    Table(#[from] layout::LayoutError),
    #[error(transparent)]
    Output(#[from] qcow2::OutputError),
    #[error("tar output: {0}")]
    Tar(#[from] CaptureError),
    #[error("container image output: {0}")]
    Container(#[from] crate::output::container::ContainerError),
    #[error("squashfs output: {0}")]
    Squashfs(#[from] crate::output::squashfs::SquashfsError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("entry '{path}' (source offset {offset}) is under the vfat filesystem at {mount} but is a {kind}: FAT holds only files and directories")]
    FatEntry {
        path: String,
        offset: u64,
        mount: String,
        kind: &'static str,
    },
    #[error("entry '{path}' (source offset {offset}) is a hard link to '{target}' on another filesystem ({from} → {to}); hard links cannot cross mount points")]
    CrossLink {
        path: String,
        offset: u64,
        target: String,
        from: String,
        to: String,
    },
    #[error("entry '{path}' is the mount point {mount} but is a {kind} in the tree; it must be a directory")]
    MountPointKind {
        path: String,
        mount: String,
        kind: &'static str,
    },
    #[error("tar outputs read the tree a second time, which standard input cannot do: pass --from FILE or a directory, or drop tar/tgz/tar.zst from -t")]
    TarFromStdin,
    #[error("boot hook: {0}")]
    Hook(HookError),
}

pub(super) fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> AssembleError {
    let what = what.into();
    move |source| AssembleError::Io { what, source }
}
