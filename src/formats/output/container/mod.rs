//! Container image archives of one layer (the captured tree's tar), for
//! `docker load`/`podman load` without a daemon: `docker` is the
//! docker-archive format (`docker save`'s `manifest.json`, the image
//! config named by its digest, `<digest>/layer.tar`), `oci` an OCI image
//! layout (`oci-layout`, `index.json`, `blobs/sha256/…`) in a tar.
//!
//! The layer is the tar as it is, uncompressed: owners, modes, setuid
//! bits and xattrs (capabilities) are whatever the capture wrote. Nothing
//! depends on the clock but `created`, which the caller gives
//! (`SOURCE_DATE_EPOCH`), so the same layer gives the same archive.

mod archive;
mod reference;

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

pub use reference::{default_reference, parse_reference, Reference};

use archive::{Archive, Blob};

/// Which archive: docker-archive or an OCI image layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContainerType {
    Docker,
    Oci,
}

/// What the image says about itself.
#[derive(Clone, Debug)]
pub struct ImageMeta {
    pub reference: Reference,
    /// Seconds since the Unix epoch: the config's and history's `created`
    /// and the archive members' mtime.
    pub created: i64,
    /// Go's name for the architecture (`amd64`).
    pub architecture: String,
    /// The history entry's `created_by`.
    pub created_by: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error("reading the layer {}: {source}", path.display())]
    Layer { path: PathBuf, source: io::Error },
    #[error("{}: {source}", path.display())]
    Output { path: PathBuf, source: io::Error },
    #[error("image reference {reference:?}: {msg}")]
    Reference { reference: String, msg: String },
}

/// Write the archive `ty` at `out` (appearing only when complete) with
/// `layer` (an uncompressed tar; `layer_path` names it in messages) as
/// its only layer.
pub fn write_container(
    ty: ContainerType,
    layer: &File,
    layer_path: &Path,
    out: &Path,
    meta: &ImageMeta,
) -> Result<(), ContainerError> {
    let lerr = |source| ContainerError::Layer {
        path: layer_path.to_path_buf(),
        source,
    };
    let (layer_digest, layer_size) = digest_file(layer).map_err(lerr)?;
    let config = to_bytes(&config_json(meta, &layer_digest));
    let mut a = Archive::create(out, meta.created)?;
    match ty {
        ContainerType::Docker => docker(&mut a, layer, &layer_digest, &config, meta),
        ContainerType::Oci => oci(&mut a, layer, (&layer_digest, layer_size), &config, meta),
    }?;
    a.commit()
}

/// The docker-archive layout `docker save` wrote before Docker 25 (and
/// `podman save --format docker-archive` writes).
fn docker(
    a: &mut Archive,
    layer: &File,
    layer_digest: &str,
    config: &[u8],
    meta: &ImageMeta,
) -> Result<(), ContainerError> {
    let config_name = format!("{}.json", hex(config));
    let layer_dir = layer_digest.trim_start_matches("sha256:");
    let layer_name = format!("{layer_dir}/layer.tar");
    let manifest = json!([{
        "Config": config_name,
        "RepoTags": [meta.reference.to_string()],
        "Layers": [layer_name],
    }]);
    let repositories = json!({
        meta.reference.repository.clone(): { meta.reference.tag.clone(): layer_dir }
    });
    a.dir(&format!("{layer_dir}/"))?;
    a.blob(&format!("{layer_dir}/VERSION"), Blob::Bytes(b"1.0"))?;
    a.blob(&layer_name, Blob::File(layer))?;
    a.blob(&config_name, Blob::Bytes(config))?;
    a.blob("manifest.json", Blob::Bytes(&to_bytes(&manifest)))?;
    a.blob("repositories", Blob::Bytes(&to_bytes(&repositories)))
}

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// An OCI image layout ("image-layout.md" of the image spec) in a tar,
/// as `skopeo copy … oci-archive:` writes it: the reference's name in
/// `org.opencontainers.image.ref.name`. Docker 25's `docker save` adds a
/// `manifest.json` naming the same blobs, so that `docker load` (older
/// ones too) takes the archive: so does this one.
fn oci(
    a: &mut Archive,
    layer: &File,
    (layer_digest, layer_size): (&str, u64),
    config: &[u8],
    meta: &ImageMeta,
) -> Result<(), ContainerError> {
    let manifest = to_bytes(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": format!("sha256:{}", hex(config)),
            "size": config.len(),
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": layer_digest,
            "size": layer_size,
        }],
    }));
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": OCI_MANIFEST,
            "digest": format!("sha256:{}", hex(&manifest)),
            "size": manifest.len(),
            "annotations": {
                "org.opencontainers.image.ref.name": meta.reference.to_string(),
            },
        }],
    });
    let config_blob = format!("blobs/sha256/{}", hex(config));
    let layer_blob = format!(
        "blobs/sha256/{}",
        layer_digest.trim_start_matches("sha256:")
    );
    let docker_manifest = json!([{
        "Config": config_blob,
        "RepoTags": [meta.reference.to_string()],
        "Layers": [layer_blob],
    }]);
    a.blob(
        "oci-layout",
        Blob::Bytes(br#"{"imageLayoutVersion":"1.0.0"}"#),
    )?;
    a.blob("index.json", Blob::Bytes(&to_bytes(&index)))?;
    a.dir("blobs/")?;
    a.dir("blobs/sha256/")?;
    a.blob(&config_blob, Blob::Bytes(config))?;
    let manifest_blob = format!("blobs/sha256/{}", hex(&manifest));
    a.blob(&manifest_blob, Blob::Bytes(&manifest))?;
    a.blob(&layer_blob, Blob::File(layer))?;
    a.blob("manifest.json", Blob::Bytes(&to_bytes(&docker_manifest)))
}

/// The image config (OCI image spec "config.md", which Docker's is):
/// a shell as the default command, the usual PATH, one layer.
fn config_json(meta: &ImageMeta, layer_digest: &str) -> Value {
    let created = rfc3339(meta.created);
    json!({
        "architecture": meta.architecture,
        "created": created,
        "os": "linux",
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["/bin/sh"],
        },
        "rootfs": { "type": "layers", "diff_ids": [layer_digest] },
        "history": [{ "created": created, "created_by": meta.created_by }],
    })
}

fn to_bytes(v: &Value) -> Vec<u8> {
    v.to_string().into_bytes()
}

fn hex(b: &[u8]) -> String {
    format!("{:x}", Sha256::digest(b))
}

/// `sha256:<hex>` of the whole file, and its size.
fn digest_file(f: &File) -> io::Result<(String, u64)> {
    use std::os::unix::fs::FileExt;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut off = 0u64;
    loop {
        let n = f.read_at(&mut buf, off)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        off += n as u64;
    }
    Ok((format!("sha256:{:x}", h.finalize()), off))
}

/// `YYYY-MM-DDTHH:MM:SSZ` for seconds since the epoch.
fn rfc3339(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = crate::units::civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests;
