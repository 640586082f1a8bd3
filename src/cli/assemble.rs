//! `dibr assemble`: a root tarball or directory into a whole-disk image.

use crate::output::qcow2::{Qcow2Compat, Qcow2Compression, Qcow2Format};
use std::path::PathBuf;

use clap::Args;

use super::size::parse_size;
use crate::assemble::{
    assemble, parse_types, plan::round_image_size, AssembleConfig, BlockDeviceConfig,
};
use crate::settings::{self, SourceDateEpoch};

#[derive(Args, Debug)]
pub struct AssembleArgs {
    /// Root tree: a tar archive (plain, gzip or zstd; `-` for stdin) or a directory
    #[arg(long, value_name = "SRC")]
    pub from: PathBuf,
    /// Image name; outputs are NAME.raw, NAME.qcow2, NAME.vhd, NAME.vmdk, NAME.tar, …
    #[arg(short = 'o', default_value = "image")]
    pub output: PathBuf,
    /// Output types, comma separated: raw, qcow2, vhd, vmdk, tar, tgz, tar.zst, docker (NAME.docker.tar), oci (NAME.oci.tar), squashfs (NAME.squash)
    #[arg(short = 't', default_value = "qcow2")]
    pub types: String,
    /// Partition layout from dibr's block-device elements: efi (ESP + BIOS boot + root), gpt (BIOS boot + root) or mbr (one primary root partition)
    #[arg(long, default_value = "efi")]
    pub layout: String,
    /// DIB block-device YAML (inline, or file://PATH); wins over --layout. Default: $DIB_BLOCK_DEVICE_CONFIG
    #[arg(long, value_name = "YAML", allow_hyphen_values = true)]
    pub block_device_config: Option<String>,
    /// Disk size as DIB's --image-size: a number is GiB (2, 1.5), or give a unit (3G, 500M). Default: $DIB_IMAGE_SIZE, else just large enough
    #[arg(long, value_name = "SIZE")]
    pub image_size: Option<String>,
    /// Do not compress qcow2 (DIB's -u)
    #[arg(short = 'u')]
    pub uncompressed: bool,
    /// qcow2 options as qemu-img's -o: compat=0.10 (qcow2 version 2) or compat=1.1 (version 3, the default); compression_type=zlib (default) or zstd (qemu >= 5.1, version 3 only)
    #[arg(long, value_name = "OPTS", allow_hyphen_values = true)]
    pub qemu_img_options: Option<String>,
    /// Largest size the root filesystem must be able to grow to, in bytes with a unit (64T, 1P); the same as --max-online-resize. Default 1P, lowered to fit an --image-size too small for it
    #[arg(long, value_name = "SIZE")]
    pub max_resize: Option<String>,
    #[command(flatten)]
    pub root_fs: super::root_fs::RootFsArgs,
    /// Write NAME.<type>.sha256 and .md5 next to each output (as DIB)
    #[arg(long)]
    pub checksum: bool,
    /// The docker/oci outputs' repository[:tag] (default: the image name, :latest)
    #[arg(long, value_name = "REPO:TAG")]
    pub docker_target: Option<String>,
}

/// DIB's image size: `--image-size`/`DIB_IMAGE_SIZE` are GiB (fractions
/// allowed; `disk-image-create` turns them into KiB), rounded up to
/// 64 KiB. dibr also takes a size with a unit.
pub fn parse_image_size(v: &str) -> Result<u64, String> {
    let t = v.trim();
    let bytes = match t.parse::<f64>() {
        Ok(g) if g.is_finite() && g > 0.0 => (g * (1u64 << 30) as f64) as u64,
        Ok(_) => return Err(format!("image size {v:?} must be positive")),
        Err(_) => parse_size(t).map_err(|e| format!("image size: {e}"))?,
    };
    if bytes < (1 << 20) {
        return Err(format!("image size {v:?} is smaller than 1 MiB"));
    }
    Ok(round_image_size(bytes))
}

/// `--image-size`, else `DIB_IMAGE_SIZE`.
pub fn image_size(arg: Option<&str>) -> Result<Option<u64>, String> {
    let env = std::env::var("DIB_IMAGE_SIZE")
        .ok()
        .filter(|v| !v.is_empty());
    match arg.map(str::to_string).or(env) {
        Some(v) => parse_image_size(&v).map(Some),
        None => Ok(None),
    }
}

/// `--qemu-img-options` (DIB's, passed to `qemu-img convert -o`): a comma
/// list of `key=value`. dibr writes qcow2 itself and honours `compat` and
/// `compression_type`; any other key is refused by name.
pub fn qemu_img_options(v: Option<&str>) -> Result<Qcow2Format, String> {
    let mut f = Qcow2Format::default();
    for kv in v
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let (k, val) = kv.split_once('=').unwrap_or((kv, ""));
        match k {
            "compat" => {
                f.compat = Qcow2Compat::from_qemu_img(val).ok_or_else(|| {
                    format!("--qemu-img-options: compat={val}: expected 0.10 (qcow2 version 2) or 1.1 (version 3)")
                })?
            }
            "compression_type" => {
                f.compression = Qcow2Compression::from_qemu_img(val).ok_or_else(|| {
                    format!("--qemu-img-options: compression_type={val}: expected zlib or zstd")
                })?
            }
            other => {
                return Err(format!(
                    "--qemu-img-options: {other} is not supported: dibr writes qcow2 itself (64 KiB clusters, \
                     deflate or zstd) and honours only compat=0.10|1.1 and compression_type=zlib|zstd"
                ))
            }
        }
    }
    if f.compat == Qcow2Compat::V2 && f.compression != Qcow2Compression::Zlib {
        return Err(
            "--qemu-img-options: compression_type=zstd needs qcow2 version 3: drop compat=0.10 \
                    (readers that need version 2 predate zstd clusters too)"
                .into(),
        );
    }
    Ok(f)
}

pub fn config(a: &AssembleArgs) -> Result<AssembleConfig, String> {
    let types = parse_types(&a.types)?;
    let image_size = image_size(a.image_size.as_deref())?;
    let (root_fs, notes) = super::root_fs::resolve(
        &a.root_fs,
        &super::root_fs::RootFsEnv::from_env(),
        image_size,
        a.max_resize.as_deref(),
    )?;
    for n in notes {
        eprintln!("dibr assemble: note: {n}");
    }
    let env = settings::block_device_config();
    let block_device = match a.block_device_config.as_deref().or(env.as_deref()) {
        Some(v) => BlockDeviceConfig::from_value(v).map_err(|e| e.to_string())?,
        None => BlockDeviceConfig::layout(&a.layout).ok_or_else(|| {
            format!(
                "unknown layout {:?}: expected efi, gpt or mbr (or pass --block-device-config)",
                a.layout
            )
        })?,
    };
    Ok(AssembleConfig {
        from: a.from.clone(),
        image_name: a.output.clone(),
        types,
        block_device,
        root_params: settings::root_params(),
        image_size,
        uncompressed: a.uncompressed,
        qcow2: qemu_img_options(a.qemu_img_options.as_deref())?,
        root_fs,
        source_date_epoch: SourceDateEpoch::secs_from_env().map_err(|e| e.to_string())?,
        checksum: a.checksum,
        elements: Vec::new(),
        settings: settings::assemble(),
        image_reference: a
            .docker_target
            .as_deref()
            .map(crate::output::container::parse_reference)
            .transpose()
            .map_err(|e| format!("--docker-target: {e}"))?,
    })
}

pub fn run(a: &AssembleArgs) -> Result<(), Box<dyn std::error::Error>> {
    let cfg = config(a)?;
    crate::build::recover_outputs(&cfg.image_name);
    let outs = assemble(&cfg)?.outputs;
    for o in outs {
        eprintln!("dibr assemble: wrote {}", o.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_sizes_as_dib() {
        assert_eq!(parse_image_size("2").unwrap(), 2 << 30);
        assert_eq!(parse_image_size("1.5").unwrap(), 3 << 29);
        assert_eq!(parse_image_size("500M").unwrap(), 500 << 20);
        // 0.001 GiB = 1073741 bytes → up to 64 KiB.
        assert_eq!(parse_image_size("0.001").unwrap(), 17 * 65536);
        assert!(parse_image_size("0").is_err());
        assert!(parse_image_size("big").is_err());
    }
}
