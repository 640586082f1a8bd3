//! Which block-device YAML an assembly uses: the shipped block-device
//! elements' defaults, `DIB_BLOCK_DEVICE_CONFIG`'s value, the image's
//! elements, or DIB's fallback (`block_device_create_config_file` in DIB's
//! `lib/common-functions`).

use std::path::PathBuf;

use super::AssembleError;

/// The block-device YAML shipped in dibr's block-device elements.
pub const EFI_YAML: &str =
    include_str!("../../elements/block-device-efi/block-device-default.yaml");
pub const GPT_YAML: &str =
    include_str!("../../elements/block-device-gpt/block-device-default.yaml");
pub const MBR_YAML: &str =
    include_str!("../../elements/block-device-mbr/block-device-default.yaml");
/// DIB's fallback when no element provides a config
/// (`lib/common-functions:block_device_create_config_file`): one
/// filesystem on the whole image, no partition table.
pub const FALLBACK_YAML: &str = "- local_loop:
    name: image0
    mkfs:
      name: mkfs_root
      mount:
        mount_point: /
        fstab:
          options: \"defaults\"
          fsck-passno: 1
";

/// The block-device config text and where it came from (for messages).
#[derive(Clone, Debug)]
pub struct BlockDeviceConfig {
    pub text: String,
    pub origin: String,
}

impl BlockDeviceConfig {
    /// `DIB_BLOCK_DEVICE_CONFIG` as DIB reads it: `file://PATH`, or the
    /// YAML itself.
    pub fn from_value(v: &str) -> Result<Self, AssembleError> {
        if let Some(p) = v.strip_prefix("file://") {
            let text = std::fs::read_to_string(p).map_err(|source| AssembleError::Io {
                what: format!("reading the block-device config {p}"),
                source,
            })?;
            return Ok(BlockDeviceConfig {
                text,
                origin: v.to_string(),
            });
        }
        Ok(BlockDeviceConfig {
            text: v.to_string(),
            origin: "DIB_BLOCK_DEVICE_CONFIG".into(),
        })
    }

    /// `--layout efi|gpt|mbr`: the shipped elements' default YAML.
    pub fn layout(name: &str) -> Option<Self> {
        let text = match name {
            "efi" => EFI_YAML,
            "gpt" => GPT_YAML,
            "mbr" => MBR_YAML,
            _ => return None,
        };
        Some(BlockDeviceConfig {
            text: text.to_string(),
            origin: format!("block-device-{name}/block-device-default.yaml"),
        })
    }

    pub fn fallback() -> Self {
        BlockDeviceConfig {
            text: FALLBACK_YAML.into(),
            origin: "DIB's default block-device fallback config".into(),
        }
    }

    /// DIB's lookup in the image's elements
    /// (`block_device_create_config_file`): per element, the arch-specific
    /// `block-device-<ARCH>.yaml` first, then `block-device-default.yaml`;
    /// first match wins.
    pub fn from_elements(elements: &[(String, PathBuf)], arch: &str) -> Option<Self> {
        for (name, dir) in elements {
            for f in [
                format!("block-device-{arch}.yaml"),
                "block-device-default.yaml".to_string(),
            ] {
                let p = dir.join(&f);
                if let Ok(text) = std::fs::read_to_string(&p) {
                    return Some(BlockDeviceConfig {
                        text,
                        origin: format!("{name}/{f}"),
                    });
                }
            }
        }
        None
    }
}
