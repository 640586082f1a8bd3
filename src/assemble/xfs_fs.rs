//! XFS filesystems in the assembly: DIB's `mkfs` nodes with `type: xfs`
//! (`block-device-efi-lvm` formats every LV so) go to dibr's userspace
//! writer ([`crate::xfs`]), written in place at their partition's or LV's
//! offset at the size the layout gives them (the plan refuses an XFS that
//! would grow with the tree).

use std::fs::File;
use std::path::Path;

use super::error::AssembleError;
use super::plan::{FsPlan, Region};
use super::router::Writer;
use crate::xfs;

/// The filesystem UUID: the config's `uuid:`, else derived from
/// SOURCE_DATE_EPOCH, the node and the label (reproducible), else random.
fn uuid_for(f: &FsPlan, epoch: Option<i64>) -> [u8; 16] {
    if let Some(u) = f.uuid {
        return u;
    }
    match epoch {
        Some(e) => crate::uuid::derived(
            "xfs",
            &[&e.to_le_bytes(), f.node.as_bytes(), f.label.as_bytes()],
        ),
        None => crate::uuid::random(),
    }
}

fn mount_of(f: &FsPlan) -> String {
    f.mount
        .as_ref()
        .map(|m| m.point.clone())
        .unwrap_or_default()
}

/// Map a writer error to the assembler's, naming the node and mount.
pub(super) fn error(f: &FsPlan, size: u64, source: xfs::Error) -> AssembleError {
    match source {
        xfs::Error::DoesNotFit {
            needed_bytes,
            detail,
            ..
        } => AssembleError::DoesNotFit {
            node: f.node.clone(),
            mount: mount_of(f),
            size,
            needed: needed_bytes,
            hint: format!(
                " ({detail}): it needs at least {needed_bytes} bytes; enlarge its partition or LV in the block-device config (or the disk with --image-size where the layout is relative)"
            ),
        },
        source => AssembleError::Xfs {
            node: f.node.clone(),
            mount: mount_of(f),
            source: Box::new(source),
        },
    }
}

/// Start the writer for `f` at `region` of the disk image.
pub(super) fn open(
    f: &FsPlan,
    region: &Region,
    file: File,
    path: &Path,
    epoch: Option<i64>,
) -> Result<Writer, AssembleError> {
    let size = region.size.ok_or_else(|| AssembleError::Xfs {
        node: f.node.clone(),
        mount: mount_of(f),
        source: Box::new(xfs::Error::Option(
            "no fixed size (the plan should have refused this)".into(),
        )),
    })?;
    let opts = xfs::Options {
        size_bytes: size,
        uuid: uuid_for(f, epoch),
        label: f.label.as_bytes().to_vec(),
        source_date_epoch: epoch,
    };
    let b = xfs::Builder::new_at(file, path.to_path_buf(), opts, region.offset)
        .map_err(|e| error(f, size, e))?;
    Ok(Writer::Xfs(Box::new(b)))
}

/// Finish the writer: returns the UUID and the summary line's part.
pub(super) fn finish(
    f: &FsPlan,
    region: &Region,
    b: Box<xfs::Builder>,
) -> Result<([u8; 16], String), AssembleError> {
    let size = region.size.unwrap_or(0);
    let uuid = b.uuid();
    let s = b.finish().map_err(|e| error(f, size, e))?;
    let line = format!(
        "{} xfs '{}' {} ({} used)",
        mount_of(f),
        f.label,
        crate::units::human(s.size_bytes),
        crate::units::human(s.blocks_used * 4096)
    );
    Ok((uuid, line))
}
