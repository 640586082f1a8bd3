//! `dibr ramdisk` (and `ramdisk-image-create`): build the elements like
//! `dibr build`, then write the tree as `NAME.initramfs` (cpio newc,
//! gzip by default as DIB, or zstd) and its newest kernel as `NAME.kernel`,
//! the pair deploy and inspection ramdisks are booted with. dibr's
//! `ramdisk` element gives the tree an `/init`; elements that build the
//! ramdisk themselves (DIB's `ramdisk`, `dracut-ramdisk`) are taken at
//! their word.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use clap::Args;

use super::build::{config, BuildArgs};
use super::ramdisk_iso::{self, IsoPlan};
use crate::output::atomic::AtomicFile;
use crate::output::cpio;
use crate::source::Source;
use crate::tree::EntryKind;

#[derive(Args, Debug)]
pub struct RamdiskArgs {
    #[command(flatten)]
    pub build: BuildArgs,
    /// initramfs compression: gzip (DIB's) or zstd
    #[arg(long, default_value = "gzip", value_name = "gzip|zstd")]
    pub compress: String,
}

fn with_ext(name: &Path, ext: &str) -> PathBuf {
    let mut s = name.as_os_str().to_owned();
    s.push(".");
    s.push(ext);
    PathBuf::from(s)
}

/// Removes the intermediate tree tarball whatever happens.
struct Temp(PathBuf);
impl Drop for Temp {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// In the kernel image and initrds of the tree: left out of the ramdisk.
fn is_boot_image(p: &[u8]) -> bool {
    p.starts_with(b"boot/vmlinuz") || p.starts_with(b"boot/initrd")
}

/// Elements that make the ramdisk themselves write `IMAGE_NAME.initramfs`
/// and `IMAGE_NAME.kernel` from the tree, as under DIB (DIB's
/// `ramdisk-base`, `cleanup.d/99-extract-ramdisk-files`, after its
/// `ramdisk` or `dracut-ramdisk` built a busybox or dracut initramfs in
/// post-install.d). Then theirs is the ramdisk, under the name asked for,
/// and the tree is not packed again; a lone one of the pair is dropped.
/// Returns whether it adopted the pair.
fn adopt_elements_ramdisk(
    tree_name: &Path,
    name: &Path,
    iso: Option<&IsoPlan>,
) -> Result<bool, Box<dyn std::error::Error>> {
    let made = (
        with_ext(tree_name, "initramfs"),
        with_ext(tree_name, "kernel"),
    );
    let _strays = (Temp(made.0.clone()), Temp(made.1.clone()));
    if !(made.0.is_file() && made.1.is_file()) {
        return Ok(false);
    }
    let (ipath, kpath) = (with_ext(name, "initramfs"), with_ext(name, "kernel"));
    let set = crate::output::set::begin();
    std::fs::rename(&made.1, crate::output::set::stage_path(&kpath))?;
    std::fs::rename(&made.0, crate::output::set::stage_path(&ipath))?;
    let _iso_inputs = match iso {
        Some(plan) => Some(ramdisk_iso::write(
            plan,
            &kpath,
            &ipath,
            &with_ext(name, "iso"),
        )?),
        None => None,
    };
    set.commit()?;
    eprintln!(
        "dibr ramdisk: {} and {}, as the elements' hooks made them (not packed again from the tree)",
        kpath.display(),
        ipath.display()
    );
    Ok(true)
}

pub fn run(a: &RamdiskArgs) -> Result<(), Box<dyn std::error::Error>> {
    super::build::session(&a.build, || build_ramdisk(a))
}

/// DIB's ramdisk-image-create puts `RAMDISK_ELEMENT` first
/// (`arg_to_elements` in `diskimage_builder/lib/common-functions`); its
/// default is `ramdisk` (`diskimage_builder/lib/ramdisk-defaults`). Given
/// twice (`dibr ramdisk debian-minimal ramdisk`), it is listed once.
fn with_ramdisk_element(mut args: BuildArgs) -> BuildArgs {
    let main = args
        .ramdisk_element
        .clone()
        .or_else(|| {
            std::env::var("RAMDISK_ELEMENT")
                .ok()
                .filter(|v| !v.trim().is_empty())
        })
        .unwrap_or_else(|| "ramdisk".into());
    if !args.elements.contains(&main) {
        args.elements.insert(0, main);
    }
    args
}

/// A kernel of the tree: its version and its bytes.
type Kernel = (String, Vec<u8>);

/// The tree's newest `/boot/vmlinuz-*` (GRUB's version order).
fn newest_kernel(tar: &Path) -> Result<Option<Kernel>, Box<dyn std::error::Error>> {
    let mut src = Source::open(tar)?;
    let mut best: Option<Kernel> = None;
    while let Some(e) = src.next_entry()? {
        let p = String::from_utf8_lossy(&e.path).into_owned();
        let Some(v) = p.strip_prefix("boot/vmlinuz-") else {
            continue;
        };
        if e.kind != EntryKind::File {
            continue;
        }
        let newer = best
            .as_ref()
            .map(|(b, _)| crate::boot::collect::version_cmp(v, b).is_gt())
            .unwrap_or(true);
        if newer {
            let mut data = Vec::with_capacity(e.size as usize);
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let n = src.data().read(&mut buf)?;
                if n == 0 {
                    break;
                }
                data.extend_from_slice(&buf[..n]);
            }
            best = Some((v.to_string(), data));
        }
    }
    Ok(best)
}

fn build_ramdisk(a: &RamdiskArgs) -> Result<(), Box<dyn std::error::Error>> {
    let gzip = match a.compress.as_str() {
        "gzip" => true,
        "zstd" => false,
        o => return Err(format!("--compress {o:?}: expected gzip or zstd").into()),
    };
    let mut args = with_ramdisk_element(a.build.clone());
    args.types = "tar".into();
    let mut cfg = config(&args)?;
    let name = cfg.image_name.clone();
    let iso = ramdisk_iso::plan(&cfg)?;
    let tree_name = with_ext(&name, "dibr-ramdisk-tree");
    cfg.image_name = tree_name.clone();
    cfg.checksum = false;
    std::fs::create_dir_all(&cfg.image_cache).map_err(|e| {
        format!(
            "creating the image cache {}: {e}",
            cfg.image_cache.display()
        )
    })?;
    let outs = crate::build::build_image(&cfg)?;
    let Some(tar) = outs.into_iter().next() else {
        return Err(
            "the build wrote no tree (no-final-image?): nothing to make a ramdisk from".into(),
        );
    };
    let _tmp = Temp(tar.clone());
    // Manifests (NAME.d/) belong to the ramdisk's name, not the tree's.
    let tree_d = with_ext(&tree_name, "d");
    if tree_d.is_dir() {
        let d = with_ext(&name, "d");
        if d.exists() {
            let _ = std::fs::remove_dir_all(&tree_d);
        } else {
            std::fs::rename(&tree_d, &d)?;
        }
    }

    if adopt_elements_ramdisk(&tree_name, &name, iso.as_ref())? {
        return Ok(());
    }

    let best = newest_kernel(&tar)?;
    let Some((version, kernel)) = best else {
        return Err(
            "the tree has no /boot/vmlinuz-*: add a kernel (debian-minimal installs one)".into(),
        );
    };
    let kpath = with_ext(&name, "kernel");
    // Both appear together, or neither.
    let set = crate::output::set::begin();
    let k = AtomicFile::create(&kpath)?;
    let mut kf = k.file();
    kf.write_all(&kernel)?;
    kf.sync_all()?;

    let ipath = with_ext(&name, "initramfs");
    let i = AtomicFile::create(&ipath)?;
    let stats = {
        let out = BufWriter::with_capacity(1 << 20, i.file());
        if gzip {
            let mut z = flate2::write::GzEncoder::new(out, flate2::Compression::new(6));
            let s = cpio::write_newc(&tar, &mut z, &is_boot_image)?;
            z.finish()?.flush()?;
            s
        } else {
            let mut z = zstd::stream::write::Encoder::new(out, 10)?;
            let s = cpio::write_newc(&tar, &mut z, &is_boot_image)?;
            z.finish()?.flush()?;
            s
        }
    };
    i.file().sync_all()?;
    i.commit()?;
    k.commit()?;
    let _iso_inputs = match &iso {
        Some(plan) => Some(ramdisk_iso::write(
            plan,
            &kpath,
            &ipath,
            &with_ext(&name, "iso"),
        )?),
        None => None,
    };
    set.commit()?;
    eprintln!(
        "dibr ramdisk: {} (kernel {version}), {} ({} entries, {} MiB of files, {})",
        kpath.display(),
        ipath.display(),
        stats.entries,
        stats.data_bytes >> 20,
        if gzip { "gzip" } else { "zstd" }
    );
    Ok(())
}
