//! Container image archives: which layers, in which order, and are they
//! what the image says they are.
//!
//! - OCI image layout (image-spec `image-layout.md`): `oci-layout`,
//!   `index.json` → manifest (or a nested index, by platform) → `layers[]`,
//!   every blob at `blobs/<alg>/<hex>` and named by its digest, which is
//!   checked (sha256).
//! - `docker save` (moby `image/spec/v1.2.md` + the 2023 OCI-flavoured
//!   variant): `manifest.json` = `[{"Config", "RepoTags", "Layers"}]`; a layer
//!   stored as `blobs/sha256/<hex>` is checked against its name, a legacy
//!   `<id>/layer.tar` against the config's `rootfs.diff_ids`.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::UnpackError;

/// One layer to apply.
#[derive(Debug)]
pub struct Layer {
    pub path: PathBuf,
    /// "layer 2 of 3 (sha256:abcd…)", for messages.
    pub label: String,
}

/// The extracted archive: its files by archive path, symlinks resolved.
pub struct Extracted {
    pub dir: PathBuf,
    /// Archive name for messages.
    pub archive: String,
    /// Symlinks in the archive (docker save links duplicate layers).
    pub links: HashMap<String, String>,
}

impl Extracted {
    fn err(&self, detail: impl Into<String>) -> UnpackError {
        UnpackError::Image {
            archive: self.archive.clone(),
            detail: detail.into(),
        }
    }

    /// `what` (a file of the archive) is not JSON.
    fn json_err(&self, what: String, source: serde_json::Error) -> UnpackError {
        UnpackError::Json {
            archive: self.archive.clone(),
            what,
            source,
        }
    }

    /// Resolve `rel` (archive path) through the archive's symlinks.
    fn file(&self, rel: &str) -> Result<PathBuf, UnpackError> {
        let mut cur = rel.trim_start_matches("./").to_string();
        for _ in 0..16 {
            match self.links.get(&cur) {
                Some(t) => {
                    let base = Path::new(&cur).parent().unwrap_or(Path::new(""));
                    cur = normalize(&base.join(t));
                }
                None => {
                    let p = self.dir.join(&cur);
                    if p.is_file() {
                        return Ok(p);
                    }
                    return Err(self.err(format!(
                        "{rel} is named by the image but not in the archive"
                    )));
                }
            }
        }
        Err(self.err(format!("{rel}: too many symlinks")))
    }

    fn json(&self, rel: &str) -> Result<Value, UnpackError> {
        let p = self.file(rel)?;
        let text = std::fs::read(&p).map_err(|source| UnpackError::Io {
            path: p.display().to_string(),
            source,
        })?;
        serde_json::from_slice(&text).map_err(|source| self.json_err(rel.to_string(), source))
    }

    /// A blob by digest, its content checked.
    fn blob(&self, digest: &str) -> Result<PathBuf, UnpackError> {
        let (alg, hex) = digest
            .split_once(':')
            .ok_or_else(|| self.err(format!("digest {digest:?} has no algorithm")))?;
        if alg != "sha256" {
            return Err(self.err(format!(
                "digest {digest}: only sha256 digests are supported"
            )));
        }
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(self.err(format!("digest {digest:?} is not a sha256 digest")));
        }
        let rel = format!("blobs/sha256/{hex}");
        let p = self.file(&rel)?;
        self.check(&p, &rel, hex)?;
        Ok(p)
    }

    fn check(&self, p: &Path, rel: &str, want: &str) -> Result<(), UnpackError> {
        let got = sha256_file(p).map_err(|source| UnpackError::Io {
            path: p.display().to_string(),
            source,
        })?;
        if !got.eq_ignore_ascii_case(want) {
            return Err(UnpackError::Digest {
                archive: self.archive.clone(),
                blob: rel.to_string(),
                want: want.to_string(),
                got,
            });
        }
        Ok(())
    }
}

/// Lexical normalisation of an archive-internal path (`a/../b` → `b`).
fn normalize(p: &Path) -> String {
    let mut out: Vec<String> = Vec::new();
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::Normal(s) => out.push(s.to_string_lossy().into_owned()),
            _ => {}
        }
    }
    out.join("/")
}

pub fn sha256_file(p: &Path) -> io::Result<String> {
    let mut f = File::open(p)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(format!("{:x}", h.finalize()))
}

/// GOARCH names of the platform field for dibr's `ARCH` (DIB's names).
pub fn oci_arch(arch: &str) -> &str {
    match arch {
        "x86_64" | "amd64" => "amd64",
        "aarch64" | "arm64" => "arm64",
        "ppc64le" | "ppc64el" => "ppc64le",
        other => other,
    }
}

const INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// The layers of an OCI image layout archive, bottom first.
pub fn oci_layers(x: &Extracted, arch: &str) -> Result<Vec<Layer>, UnpackError> {
    let mut index = x.json("index.json")?;
    let want = oci_arch(arch);
    for _depth in 0..4 {
        let manifests = index
            .get("manifests")
            .and_then(Value::as_array)
            .ok_or_else(|| x.err("index has no \"manifests\" list"))?;
        let plat = |m: &Value| {
            m.pointer("/platform/architecture")
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        let chosen = match manifests.len() {
            0 => return Err(x.err("index lists no image")),
            1 => &manifests[0],
            _ => manifests
                .iter()
                .find(|m| plat(m).as_deref() == Some(want))
                .ok_or_else(|| {
                    let have: Vec<String> = manifests.iter().filter_map(plat).collect();
                    x.err(format!(
                        "no image for architecture {want} in the index (it has: {}); set ARCH or pick another image",
                        have.join(", ")
                    ))
                })?,
        };
        let digest = chosen
            .get("digest")
            .and_then(Value::as_str)
            .ok_or_else(|| x.err("index entry without a digest"))?;
        let blob = x.blob(digest)?;
        let doc: Value =
            serde_json::from_slice(&std::fs::read(&blob).map_err(|source| UnpackError::Io {
                path: blob.display().to_string(),
                source,
            })?)
            .map_err(|source| x.json_err(format!("manifest {digest}"), source))?;
        let mt = chosen
            .get("mediaType")
            .or_else(|| doc.get("mediaType"))
            .and_then(Value::as_str)
            .unwrap_or("");
        if mt == INDEX || mt == DOCKER_LIST || doc.get("manifests").is_some() {
            index = doc;
            continue;
        }
        let layers = doc
            .get("layers")
            .and_then(Value::as_array)
            .ok_or_else(|| x.err(format!("manifest {digest} has no \"layers\"")))?;
        let n = layers.len();
        let mut out = Vec::with_capacity(n);
        for (i, l) in layers.iter().enumerate() {
            let d = l
                .get("digest")
                .and_then(Value::as_str)
                .ok_or_else(|| x.err(format!("layer {} has no digest", i + 1)))?;
            let lmt = l.get("mediaType").and_then(Value::as_str).unwrap_or("");
            if lmt.contains("nondistributable") || lmt.contains("foreign") {
                return Err(x.err(format!(
                    "layer {d} is a foreign layer ({lmt}), not in the archive"
                )));
            }
            out.push(Layer {
                path: x.blob(d)?,
                label: format!("layer {} of {n} ({d})", i + 1),
            });
        }
        return Ok(out);
    }
    Err(x.err("image indexes nested too deeply"))
}

/// The layers of a `docker save` archive, bottom first.
pub fn docker_layers(x: &Extracted) -> Result<Vec<Layer>, UnpackError> {
    let m = x.json("manifest.json")?;
    let images = m
        .as_array()
        .ok_or_else(|| x.err("manifest.json is not a list"))?;
    let img = match images.len() {
        0 => return Err(x.err("manifest.json lists no image")),
        1 => &images[0],
        _ => {
            let tags: Vec<String> = images
                .iter()
                .map(|i| {
                    i.get("RepoTags")
                        .map(|t| t.to_string())
                        .unwrap_or_else(|| "untagged".into())
                })
                .collect();
            return Err(x.err(format!(
                "the archive holds {} images ({}); save one image per archive",
                images.len(),
                tags.join(", ")
            )));
        }
    };
    let diff_ids: Vec<String> = match img.get("Config").and_then(Value::as_str) {
        Some(c) => x
            .json(c)?
            .pointer("/rootfs/diff_ids")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(|s| s.trim_start_matches("sha256:").to_string())
                    .collect()
            })
            .unwrap_or_default(),
        None => Vec::new(),
    };
    let layers = img
        .get("Layers")
        .and_then(Value::as_array)
        .ok_or_else(|| x.err("manifest.json has no \"Layers\""))?;
    let n = layers.len();
    let mut out = Vec::with_capacity(n);
    for (i, l) in layers.iter().enumerate() {
        let rel = l
            .as_str()
            .ok_or_else(|| x.err(format!("layer {} is not a path", i + 1)))?;
        let path = x.file(rel)?;
        let resolved = path
            .strip_prefix(&x.dir)
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        if let Some(hex) = resolved.strip_prefix("blobs/sha256/") {
            x.check(&path, rel, hex)?;
        } else if let Some(want) = diff_ids.get(i) {
            // Legacy layout: layer.tar is uncompressed, its sha256 is the diff_id.
            x.check(&path, rel, want)?;
        }
        out.push(Layer {
            path,
            label: format!("layer {} of {n} ({rel})", i + 1),
        });
    }
    Ok(out)
}
