//! Files written beside the disk: tar outputs of the same tree, the
//! `--checksum` side files and the manifests directory (`NAME.d/`).

use std::fs::File;
use std::path::{Path, PathBuf};

use super::hooks::KEEP_LIMIT;
use super::plan::Plan;
use super::router::{fstab_replacement, read_all, Bytes};
use super::{io_err, AssembleConfig, AssembleError};
use crate::capture::{self, CaptureError, CaptureOptions, EntryTar, OutputType};
use crate::output::atomic::AtomicFile;
use crate::source::Source;
use crate::tree::{Entry, EntryKind};

/// Tar outputs: the tree read a second time, with the same replacements
/// (fstab) and additions (mount points, hook entries) the disk got.
pub(super) fn write_tar_output(
    cfg: &AssembleConfig,
    out: &Path,
    ty: OutputType,
    plan: &Plan,
    added: &[Entry],
    added_data: &[Vec<u8>],
) -> Result<(), AssembleError> {
    let opts = CaptureOptions {
        source_date_epoch: cfg.source_date_epoch,
        no_fsync: !cfg.settings.ext4_io.fsync,
        ..Default::default()
    };
    capture::write_output_with(out, ty, opts.no_fsync, &mut |w| {
        fill_tree(cfg, &opts, plan, added, added_data, w)
    })?;
    Ok(())
}

/// The tree as the disk got it, as a tar into `w`.
fn fill_tree(
    cfg: &AssembleConfig,
    opts: &CaptureOptions,
    plan: &Plan,
    added: &[Entry],
    added_data: &[Vec<u8>],
    w: &mut dyn std::io::Write,
) -> Result<capture::CaptureStats, CaptureError> {
    let fstab = plan.fstab().into_bytes();
    let mut t = EntryTar::new(w, opts, &cfg.from);
    let mut src = Source::open(&cfg.from).map_err(CaptureError::from)?;
    let added_paths: Vec<&[u8]> = added.iter().map(|e| e.path.as_slice()).collect();
    while let Some(e) = src.next_entry().map_err(CaptureError::from)? {
        if added_paths.contains(&e.path.as_slice()) && e.path != b"etc/fstab" {
            continue; // replaced by a hook's entry, written below
        }
        if let Some(fe) = fstab_replacement(&e, fstab.len() as u64) {
            t.add(&fe, &mut Bytes(&fstab))?;
            continue;
        }
        t.add(&e, src.data())?;
    }
    for (e, d) in added.iter().zip(added_data) {
        t.add(e, &mut Bytes(d))?;
    }
    t.finish()
}

/// docker/oci/squashfs outputs: the tar of [`write_tar_output`] into an
/// unnamed scratch file beside `out` (never named: gone when dropped),
/// then the output made from it.
pub(super) fn write_layer_output(
    cfg: &AssembleConfig,
    out: &Path,
    kind: super::OutputKind,
    plan: &Plan,
    added: &[Entry],
    added_data: &[Vec<u8>],
) -> Result<(), AssembleError> {
    let opts = CaptureOptions {
        source_date_epoch: cfg.source_date_epoch,
        no_fsync: true,
        ..Default::default()
    };
    let mut scratch = out.as_os_str().to_owned();
    scratch.push(".layer");
    let scratch = PathBuf::from(scratch);
    let layer = AtomicFile::create(&scratch).map_err(io_err(format!(
        "creating a scratch layer beside {}",
        out.display()
    )))?;
    let file = layer.file();
    {
        let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
        fill_tree(cfg, &opts, plan, added, added_data, &mut w)?;
        std::io::Write::flush(&mut w).map_err(io_err("writing the scratch layer"))?;
    }
    let meta = super::image_meta(
        &cfg.image_name,
        cfg.image_reference.as_ref(),
        super::epoch_now(cfg.source_date_epoch),
        "amd64",
        concat!("dibr ", env!("CARGO_PKG_VERSION")).into(),
    );
    super::write_from_layer(kind, file, &scratch, out, &meta, cfg.source_date_epoch)
}

/// `--checksum`: NAME.<ext>.sha256 and .md5 side files, as DIB's
/// `finish_image` writes them (`sha256sum`/`md5sum` output format).
pub fn write_checksum(path: &Path) -> Result<Vec<PathBuf>, AssembleError> {
    use md5::Md5;
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let what = || format!("reading {}", path.display());
    let mut f = File::open(crate::output::set::readable(path)).map_err(io_err(what()))?;
    let (mut sha, mut md) = (Sha256::new(), Md5::new());
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io_err(what()))?;
        if n == 0 {
            break;
        }
        sha.update(&buf[..n]);
        md.update(&buf[..n]);
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut written = Vec::new();
    for (ext, sum) in [
        ("sha256", format!("{:x}", sha.finalize())),
        ("md5", format!("{:x}", md.finalize())),
    ] {
        let mut p = path.as_os_str().to_owned();
        p.push(".");
        p.push(ext);
        let p = PathBuf::from(p);
        write_atomic(&p, format!("{sum}  {name}\n").as_bytes())?;
        written.push(p);
    }
    Ok(written)
}

fn write_atomic(p: &Path, data: &[u8]) -> Result<(), AssembleError> {
    use std::io::Write;
    let what = || format!("writing {}", p.display());
    let a = AtomicFile::create(p).map_err(io_err(what()))?;
    a.file().write_all(data).map_err(io_err(what()))?;
    a.commit().map_err(io_err(what()))
}

/// A manifest file: path below /etc/dib-manifests, content.
pub type ManifestFile = (Vec<u8>, Vec<u8>);

/// The regular files below `dir` (the tree's /etc/dib-manifests), for
/// [`write_manifests`] when no disk is assembled; symlinks are not followed.
pub fn manifest_files(dir: &Path) -> Result<Vec<ManifestFile>, AssembleError> {
    let mut s = Source::open(dir)?;
    let mut out = Vec::new();
    while let Some(e) = s.next_entry()? {
        if e.kind == EntryKind::File {
            let data = read_all(s.data(), KEEP_LIMIT, &e.display_path())?.unwrap_or_default();
            out.push((e.path.clone(), data));
        }
    }
    Ok(out)
}

/// DIB's manifests element copies the image's /etc/dib-manifests to
/// `${IMAGE_NAME}.d/dib-manifests` (`DIB_MANIFEST_SAVE_DIR`).
pub fn write_manifests(name: &Path, files: &[(Vec<u8>, Vec<u8>)]) -> Result<(), AssembleError> {
    use std::os::unix::ffi::OsStrExt;
    let mut d = name.as_os_str().to_owned();
    d.push(".d");
    let dest = PathBuf::from(d).join("dib-manifests");
    let dir = crate::output::set::stage_dir(&dest)
        .map_err(io_err(format!("creating {}", dest.display())))?;
    for (rel, data) in files {
        let p = dir.join(std::ffi::OsStr::from_bytes(rel));
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)
                .map_err(io_err(format!("creating {}", parent.display())))?;
        }
        if dir == dest {
            write_atomic(&p, data)?;
        } else {
            // The staged directory is named as a whole.
            std::fs::write(&p, data).map_err(io_err(format!("writing {}", p.display())))?;
        }
    }
    Ok(())
}

/// `NAME.<type>.glance.json` beside every disk output: the properties
/// read back from the finished disk (what `dibr check --glance` prints)
/// and the build's provenance. A VHD's guest is read from the raw disk
/// it was made from (`raw`, still unnamed); its format and hash are the
/// VHD file's. The side files join the output set.
pub(super) fn write_glance(cfg: &AssembleConfig, raw: &File) -> Result<(), AssembleError> {
    use super::{output_path, DiskType, OutputKind};
    use crate::inspect::glance::{self, Provenance};
    let raw_path = super::fd_path(raw);
    let provenance = Provenance {
        elements: cfg.elements.clone(),
        source_date_epoch: cfg.source_date_epoch,
    };
    for &t in &cfg.types {
        let OutputKind::Disk(d) = t else { continue };
        let out = output_path(&cfg.image_name, t);
        let file = match d {
            DiskType::Raw => raw_path.clone(),
            _ => crate::output::set::readable(&out),
        };
        // Every output's guest is the raw disk it was converted from
        // (dibr reads raw and qcow2 disks, but a qcow2's clusters would be
        // decompressed again for nothing); format and hash are the file's.
        let image = &raw_path;
        let err = |source| AssembleError::Glance {
            output: out.clone(),
            source: Box::new(source),
        };
        let mut r = glance::read(image, &file).map_err(err)?;
        for n in &r.notes {
            crate::detail!("dibr assemble: {}: Glance properties: {n}", out.display());
        }
        provenance.add_to(&mut r.properties);
        write_atomic(
            &glance::side_file(&out),
            glance::to_json(&r.properties).as_bytes(),
        )?;
    }
    Ok(())
}
