//! `dibr assemble`: a root tarball or directory into a whole-disk image.

use std::path::PathBuf;

use clap::Args;

use super::size::parse_size;
use crate::assemble::{assemble, AssembleConfig, DiskType, LayoutKind};

#[derive(Args, Debug)]
pub struct AssembleArgs {
    /// Root tree: a tar archive (plain, gzip or zstd; `-` for stdin) or a directory
    #[arg(long, value_name = "SRC")]
    pub from: PathBuf,
    /// Image name; outputs are NAME.raw, NAME.qcow2, NAME.vhd
    #[arg(short = 'o', default_value = "image")]
    pub output: PathBuf,
    /// Output types, comma separated: raw, qcow2, vhd
    #[arg(short = 't', default_value = "qcow2")]
    pub types: String,
    /// Partition layout: efi (ESP + BIOS boot + root, DIB's block-device-efi) or gpt (BIOS boot + root)
    #[arg(long, default_value = "efi")]
    pub layout: String,
    /// Do not compress qcow2 (DIB's -u)
    #[arg(short = 'u')]
    pub uncompressed: bool,
    /// Largest size the root filesystem must be able to grow to
    #[arg(long, default_value = "1P")]
    pub max_resize: String,
}

pub fn config(a: &AssembleArgs) -> Result<AssembleConfig, String> {
    let mut types = Vec::new();
    for t in a.types.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        types.push(match t {
            "raw" => DiskType::Raw,
            "qcow2" => DiskType::Qcow2,
            "vhd" | "vpc" => DiskType::Vhd,
            other => {
                return Err(format!(
                    "unknown disk type {other:?}: expected raw, qcow2 or vhd"
                ))
            }
        });
    }
    if types.is_empty() {
        return Err("-t needs at least one of raw, qcow2, vhd".into());
    }
    let layout = match a.layout.as_str() {
        "efi" => LayoutKind::Efi,
        "gpt" => LayoutKind::Gpt,
        "mbr" => {
            return Err("--layout mbr is not supported by assemble yet: use efi or gpt".into())
        }
        other => return Err(format!("unknown layout {other:?}: expected efi or gpt")),
    };
    let source_date_epoch = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.is_empty() => Some(
            v.trim()
                .parse::<i64>()
                .map_err(|_| format!("SOURCE_DATE_EPOCH={v:?} is not a number"))?,
        ),
        _ => None,
    };
    Ok(AssembleConfig {
        from: a.from.clone(),
        image_name: a.output.clone(),
        types,
        layout,
        uncompressed: a.uncompressed,
        max_resize_bytes: parse_size(&a.max_resize).map_err(|e| format!("--max-resize: {e}"))?,
        source_date_epoch,
    })
}

pub fn run(a: &AssembleArgs) -> Result<(), Box<dyn std::error::Error>> {
    let cfg = config(a)?;
    let outs = assemble(&cfg)?;
    for o in outs {
        eprintln!("dibr assemble: wrote {}", o.display());
    }
    Ok(())
}
