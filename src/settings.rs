//! The environment, read once.
//!
//! Every setting dibr takes from the environment — `SOURCE_DATE_EPOCH`
//! (reproducible-builds.org's specification), diskimage-builder's `DIB_*`
//! variables as `disk-image-create` reads them, dibr's own `DIBR_*` knobs
//! — is resolved here into a typed value. Only the command line (`cli/`)
//! and the build pipeline (`build/`) call these functions; they hand the
//! values down as options, so the stages and format writers below them
//! never read `std::env` and can be driven (and tested) with any settings.
//! The one other place that touches the environment is where a hook's
//! environment is put together for element scripts.

use std::num::ParseIntError;

use crate::assemble::AssembleSettings;
use crate::boot::BootSettings;
use crate::disk::config::RootParams;
use crate::ext4::IoOptions;

#[derive(Debug, thiserror::Error)]
pub enum SettingError {
    #[error("SOURCE_DATE_EPOCH={value:?} is not a whole number of seconds")]
    SourceDateEpoch {
        value: String,
        #[source]
        source: ParseIntError,
    },
}

/// `SOURCE_DATE_EPOCH`: seconds since 1970 that every timestamp, UUID and
/// seed derives from, so two runs give byte-identical outputs. Parsed and
/// validated here only; the writers take the seconds as an `i64`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SourceDateEpoch(i64);

impl SourceDateEpoch {
    pub const VAR: &'static str = "SOURCE_DATE_EPOCH";

    /// A decimal number of seconds; surrounding whitespace is ignored.
    pub fn parse(value: &str) -> Result<Self, SettingError> {
        value
            .trim()
            .parse::<i64>()
            .map(SourceDateEpoch)
            .map_err(|source| SettingError::SourceDateEpoch {
                value: value.to_string(),
                source,
            })
    }

    /// The variable's value; unset or empty means none.
    pub fn from_env() -> Result<Option<Self>, SettingError> {
        non_empty(Self::VAR).map(|v| Self::parse(&v)).transpose()
    }

    /// [`SourceDateEpoch::from_env`] as plain seconds, for option structs.
    pub fn secs_from_env() -> Result<Option<i64>, SettingError> {
        Ok(Self::from_env()?.map(Self::secs))
    }

    pub fn secs(self) -> i64 {
        self.0
    }
}

/// A variable's value when it is set, valid UTF-8 and not empty
/// (`disk-image-create` treats an empty variable as unset).
fn non_empty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// `DIB_BLOCK_DEVICE_CONFIG`: the block-device YAML, inline or
/// `file://PATH` (`block_device_create_config_file` in DIB's
/// `lib/common-functions`).
pub fn block_device_config() -> Option<String> {
    non_empty("DIB_BLOCK_DEVICE_CONFIG")
}

/// `FS_TYPE` (default ext4) and `ROOT_LABEL` (empty means the default),
/// the root filesystem parameters `disk-image-create` passes to the
/// block-device layer.
pub fn root_params() -> RootParams {
    RootParams {
        fs_type: non_empty("FS_TYPE").unwrap_or_else(|| "ext4".into()),
        label: non_empty("ROOT_LABEL"),
    }
}

/// `DIB_BOOTLOADER_DEFAULT_CMDLINE` (set but empty means no extra
/// options) and `DIB_GRUB_TIMEOUT` (a number, else DIB's default), as the
/// bootloader element's `finalise.d/50-bootloader` reads them.
pub fn boot() -> BootSettings {
    let default = BootSettings::default();
    BootSettings {
        cmdline_extra: std::env::var("DIB_BOOTLOADER_DEFAULT_CMDLINE")
            .unwrap_or(default.cmdline_extra),
        timeout: std::env::var("DIB_GRUB_TIMEOUT")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(default.timeout),
    }
}

/// `DIBR_NO_FSYNC` and `DIBR_NO_COPY_FILE_RANGE`: set (to anything) turns
/// the ext4 writer's final fsync or its copy_file_range off.
pub fn ext4_io() -> IoOptions {
    IoOptions {
        fsync: std::env::var_os("DIBR_NO_FSYNC").is_none(),
        copy_file_range: std::env::var_os("DIBR_NO_COPY_FILE_RANGE").is_none(),
    }
}

/// Everything the assembler takes from the environment: `DIB_BLOCK_SIZE`
/// (the disk's sector size; wins over the `local_loop` node's
/// `block_size`), the boot loader's settings and the ext4 writer's I/O.
pub fn assemble() -> AssembleSettings {
    AssembleSettings {
        block_size: non_empty("DIB_BLOCK_SIZE"),
        boot: boot(),
        ext4_io: ext4_io(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_date_epoch_parses_whole_seconds_only() {
        assert_eq!(
            SourceDateEpoch::parse(" 1700000000\n").unwrap().secs(),
            1_700_000_000
        );
        assert_eq!(SourceDateEpoch::parse("-5").unwrap().secs(), -5);
        for bad in ["", "1.5", "soon", "1e9"] {
            let e = SourceDateEpoch::parse(bad).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!("SOURCE_DATE_EPOCH={bad:?} is not a whole number of seconds")
            );
        }
    }
}
