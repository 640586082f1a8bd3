//! Unpacking a distribution's published root filesystem into the target
//! tree — the rootless replacement for DIB's "download the cloud image,
//! `kpartx` + `mount` it, `tar` it out" (`sysprep/bin/extract-image`).
//!
//! Accepted: a root filesystem tarball (plain, gzip, zstd, xz, bzip2: what
//! openSUSE's `*-lxc.tar.xz`, CentOS's `Container-Base` tarball, `podman
//! export` or `tar -C / -c` give), an OCI image layout archive (Fedora's
//! `Fedora-Container-Base-*.oci.tar.xz`, `podman save --format
//! oci-archive`, `skopeo copy … oci-archive:`) and a `docker save`
//! archive. The format is told from the archive's content, not its name.
//!
//! It runs where the distro elements' `root.d` hooks run: as root of dibr's
//! user namespace, so owners are applied as stored (numeric) and dpkg/rpm
//! databases stay right. Image archives are first spread into a scratch
//! directory (layers must be applied in manifest order, which is not the
//! archive's order), their blobs checked against their sha256 digests, then
//! applied bottom up with OCI whiteouts (see [`layer`]).

pub mod fsops;
pub mod image;
pub mod layer;

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

use crate::tarstream::{open_input, TarError, TarReader};
use crate::tree::{Entry, EntryKind, FileData};

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("{what}: {source}")]
    Tar { what: String, source: TarError },
    #[error("{what}: tar entry '{path}': {action}: {source}")]
    Entry {
        what: String,
        path: String,
        action: String,
        source: io::Error,
    },
    #[error("{what}: tar entry '{path}' belongs to {uid}:{gid}, an id this build does not map: give your user a subordinate id range (sudo usermod --add-subuids 100000-165535 --add-subgids 100000-165535 $USER; install uidmap) so dibr maps 65536 ids")]
    Unmapped {
        what: String,
        path: String,
        uid: u32,
        gid: u32,
    },
    #[error("{path}: {source}")]
    Io { path: String, source: io::Error },
    #[error("{archive}: {detail}")]
    Image { archive: String, detail: String },
    /// A container image's JSON file (index, manifest) that does not parse;
    /// `what` names it ("index.json", "manifest sha256:…").
    #[error("{archive}: {what} is not valid JSON: {source}")]
    Json {
        archive: String,
        what: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{archive}: {blob} has sha256 {got}, but the image names it {want}: the download is damaged or was altered; delete it and fetch it again")]
    Digest {
        archive: String,
        blob: String,
        want: String,
        got: String,
    },
}

/// How an unpack went, for the hook's log.
#[derive(Debug, Default)]
pub struct Report {
    /// "tarball", "OCI image" or "docker save archive".
    pub format: &'static str,
    pub layers: usize,
    pub entries: u64,
    pub bytes: u64,
    pub whiteouts: u64,
    /// Device nodes and sockets not created (dibr synthesises /dev).
    pub skipped: Vec<String>,
    pub xattrs_skipped: u64,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} entries ({} MB of file data)",
            self.format,
            self.entries,
            self.bytes / 1_000_000
        )?;
        if self.layers > 0 {
            write!(
                f,
                " from {} layers, {} whiteouts",
                self.layers, self.whiteouts
            )?;
        }
        if !self.skipped.is_empty() {
            write!(
                f,
                "; skipped {} device nodes/sockets (e.g. {})",
                self.skipped.len(),
                self.skipped[0]
            )?;
        }
        if self.xattrs_skipped > 0 {
            write!(
                f,
                "; {} extended attributes not supported here",
                self.xattrs_skipped
            )?;
        }
        Ok(())
    }
}

pub struct Options {
    /// Apply owners as stored (root of a namespace, or real root).
    pub owners: bool,
    /// DIB's ARCH (amd64, arm64, …), to pick from multi-platform images.
    pub arch: String,
    /// Where an image archive's blobs are spread out (removed afterwards).
    pub scratch: PathBuf,
}

/// Archive paths that only image archives have at their top.
fn is_image_marker(path: &[u8]) -> bool {
    let first = path.split(|&b| b == b'/').next().unwrap_or(b"");
    matches!(
        path,
        b"oci-layout" | b"index.json" | b"manifest.json" | b"repositories"
    ) || first == b"blobs"
        || (first.len() == 64 && first.iter().all(u8::is_ascii_hexdigit))
        || (path.len() == 69 && path.ends_with(b".json"))
}

/// Unpack `src` into the directory `dest`.
pub fn unpack(src: &Path, dest: &Path, opts: &Options) -> Result<Report, UnpackError> {
    let archive = src.display().to_string();
    let tar_err = |source| UnpackError::Tar {
        what: archive.clone(),
        source,
    };
    let mut rd = TarReader::new(open_input(src).map_err(tar_err)?);
    // Leading directories are held back until the first other entry says
    // whether this is a root filesystem or an image archive.
    let mut held: Vec<Entry> = Vec::new();
    let first = loop {
        match rd.next_entry().map_err(tar_err)? {
            Some(e) if e.kind == EntryKind::Dir => held.push(e),
            other => break other,
        }
    };
    let root = fsops::open_root(dest).map_err(|source| UnpackError::Io {
        path: dest.display().to_string(),
        source,
    })?;
    let mut report = Report::default();
    if !first.as_ref().is_some_and(|e| is_image_marker(&e.path)) {
        report.format = "tarball";
        held.extend(first);
        let a = layer::Apply {
            root: &root,
            whiteouts: false,
            owners: opts.owners,
            what: archive.clone(),
        };
        layer::apply_entries(&mut rd, &a, &mut report, held)?;
        return Ok(report);
    }

    // An image archive: spread it out, then apply its layers in order.
    let scratch = Scratch::new(&opts.scratch)?;
    let mut links = HashMap::new();
    let mut next = first;
    while let Some(e) = next {
        let rel = String::from_utf8_lossy(&e.path).into_owned();
        match &e.kind {
            EntryKind::File => {
                let p = scratch.0.join(&rel);
                if let Some(parent) = p.parent() {
                    std::fs::create_dir_all(parent).map_err(|source| UnpackError::Io {
                        path: parent.display().to_string(),
                        source,
                    })?;
                }
                let mut f = std::fs::File::create(&p).map_err(|source| UnpackError::Io {
                    path: p.display().to_string(),
                    source,
                })?;
                copy_data(&mut rd, &mut f).map_err(|source| UnpackError::Entry {
                    what: archive.clone(),
                    path: rel.clone(),
                    action: "copying it to the scratch directory".into(),
                    source,
                })?;
            }
            EntryKind::Symlink(t) | EntryKind::HardLink(t) => {
                let t = String::from_utf8_lossy(t).into_owned();
                let t = if matches!(e.kind, EntryKind::HardLink(_)) {
                    // Hard link targets are archive-absolute.
                    let depth = rel.matches('/').count();
                    format!("{}{t}", "../".repeat(depth))
                } else {
                    t
                };
                links.insert(rel, t);
            }
            _ => {}
        }
        next = rd.next_entry().map_err(tar_err)?;
    }
    let x = image::Extracted {
        dir: scratch.0.clone(),
        archive: archive.clone(),
        links,
    };
    let layers = if scratch.0.join("index.json").is_file() {
        report.format = "OCI image";
        image::oci_layers(&x, &opts.arch)?
    } else if scratch.0.join("manifest.json").is_file() {
        report.format = "docker save archive";
        image::docker_layers(&x)?
    } else {
        return Err(UnpackError::Image {
            archive,
            detail: "looks like an image archive (blobs/ or a layer directory) but has neither index.json nor manifest.json".into(),
        });
    };
    report.layers = layers.len();
    for l in &layers {
        let what = format!("{archive}: {}", l.label);
        let input = open_input(&l.path).map_err(|source| UnpackError::Tar {
            what: what.clone(),
            source,
        })?;
        let mut lrd = TarReader::new(input);
        let a = layer::Apply {
            root: &root,
            whiteouts: true,
            owners: opts.owners,
            what,
        };
        layer::apply(&mut lrd, &a, &mut report)?;
    }
    Ok(report)
}

fn copy_data<R: crate::tarstream::TarSource>(
    rd: &mut TarReader<R>,
    out: &mut std::fs::File,
) -> io::Result<()> {
    use std::io::Write;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = FileData::read(rd, &mut buf)?;
        if n == 0 {
            return Ok(());
        }
        out.write_all(&buf[..n])?;
    }
}

/// A scratch directory removed when dropped, whatever happened.
struct Scratch(PathBuf);

impl Scratch {
    fn new(parent: &Path) -> Result<Self, UnpackError> {
        let p = parent.join(format!(".dibr-unpack.{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).map_err(|source| UnpackError::Io {
            path: p.display().to_string(),
            source,
        })?;
        Ok(Scratch(p))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests;
