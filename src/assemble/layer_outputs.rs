//! Outputs made from the tree's tar as a whole: docker/oci image archives
//! (the tar is their layer) and squashfs (`mksquashfs -tar`).

use std::fs::File;
use std::path::Path;

use super::{AssembleError, OutputKind};
use crate::output::container::{default_reference, write_container, ImageMeta, Reference};
use crate::output::squashfs::write_squashfs;

/// Whether `kind` is written from the tree's tar by [`write_from_layer`].
pub fn is_layer_output(kind: OutputKind) -> bool {
    matches!(kind, OutputKind::Container(_) | OutputKind::Squashfs)
}

/// Write `out` of `kind` from the uncompressed tar `layer`.
pub fn write_from_layer(
    kind: OutputKind,
    layer: &File,
    layer_path: &Path,
    out: &Path,
    meta: &ImageMeta,
    source_date_epoch: Option<i64>,
) -> Result<(), AssembleError> {
    match kind {
        OutputKind::Container(ty) => write_container(ty, layer, layer_path, out, meta)?,
        OutputKind::Squashfs => write_squashfs(layer, layer_path, out, source_date_epoch)?,
        OutputKind::Disk(_) | OutputKind::Tar(_) => {
            return Err(AssembleError::Io {
                what: format!("{}: not an output made from the tree's tar", out.display()),
                source: std::io::Error::from(std::io::ErrorKind::InvalidInput),
            })
        }
    }
    Ok(())
}

/// What the docker/oci outputs say of the image: `reference` or the image
/// name's (`NAME:latest`), created at `created`.
pub fn image_meta(
    image_name: &Path,
    reference: Option<&Reference>,
    created: i64,
    architecture: &str,
    created_by: String,
) -> ImageMeta {
    let name = image_name
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    ImageMeta {
        reference: reference
            .cloned()
            .unwrap_or_else(|| default_reference(&name)),
        created,
        architecture: architecture.into(),
        created_by,
    }
}
