//! The environment, read once.
//!
//! Every setting dibr takes from the environment — `SOURCE_DATE_EPOCH`
//! (reproducible-builds.org's specification), diskimage-builder's `DIB_*`
//! variables as `disk-image-create` reads them, dibr's own `DIBR_*` knobs
//! and the host lookups that depend on it (`TMPDIR`, tools on `PATH`,
//! where dibr's own elements and libraries are installed) — is resolved
//! here into a typed value. Only `main.rs` (the sandbox's settings, once
//! per process), the command line (`cli/`) and the build pipeline
//! (`build/`) call these functions; they hand the values down as options,
//! so the stages and format writers below them never read `std::env` and
//! can be driven (and tested) with any settings. The one other place that
//! touches the environment is where a hook's environment is put together
//! for element scripts (`build/env.rs`).

use std::num::ParseIntError;
use std::path::{Path, PathBuf};

use crate::assemble::AssembleSettings;
use crate::boot::BootSettings;
use crate::disk::config::RootParams;
use crate::elements::package_installs::Env;
use crate::elements::path::{ElementsPath, PathError};
use crate::ext4::IoOptions;
use crate::sandbox::mode::Runtime;
use crate::sandbox::{HostEnv, SandboxSettings};

#[derive(Debug, thiserror::Error)]
pub enum SettingError {
    #[error("SOURCE_DATE_EPOCH={value:?} is not a whole number of seconds")]
    SourceDateEpoch {
        value: String,
        #[source]
        source: ParseIntError,
    },
    #[error("{name}={value:?}: {expected}")]
    Invalid {
        name: &'static str,
        value: String,
        expected: &'static str,
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
///
/// Also the host tools the boot planner may run: `grub-mkimage` (or
/// Fedora's `grub2-mkimage`) found on `PATH`, and the temporary directory
/// (`TMPDIR`) it works in.
pub fn boot() -> BootSettings {
    let default = BootSettings::default();
    BootSettings {
        mkimage: on_path(&["grub-mkimage", "grub2-mkimage"]),
        scratch_dir: std::env::temp_dir(),
        cmdline_extra: std::env::var("DIB_BOOTLOADER_DEFAULT_CMDLINE")
            .unwrap_or(default.cmdline_extra),
        timeout: std::env::var("DIB_GRUB_TIMEOUT")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(default.timeout),
    }
}

/// The host programs the `iso` element's writer runs (`xorriso`,
/// `grub-mkimage`) found on `PATH`; its data files are at Debian's paths.
pub fn iso_host() -> crate::iso::IsoHost {
    crate::iso::IsoHost {
        xorriso: on_path(&["xorriso"]),
        grub_mkimage: on_path(&["grub-mkimage"]),
        ..Default::default()
    }
}

/// `DIB_DEPLOY_ISO_KERNEL_CMDLINE_ARGS`: what the `iso` element adds to a
/// ramdisk ISO's kernel command line after DIB's `boot_method=vmedia`.
pub fn iso_cmdline() -> String {
    let extra = std::env::var("DIB_DEPLOY_ISO_KERNEL_CMDLINE_ARGS").unwrap_or_default();
    format!("boot_method=vmedia {extra}").trim_end().to_string()
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

/// `DIB_BLOCK_DEVICE` (default `efi`): the `block-device-*` element added
/// when an element needs the virtual `block-device` and none provides it
/// (`crate::elements::resolve::resolve`).
pub fn block_device_kind() -> String {
    non_empty("DIB_BLOCK_DEVICE").unwrap_or_else(|| "efi".into())
}

/// The process environment as a map, for package-installs' `when`
/// conditions (variables that are not UTF-8 are left out).
pub fn process_env() -> Env {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}

/// The phase cache's limits (docs/phase-cache.md): entries older than
/// `DIBR_PHASE_CACHE_HOURS` (default 24, as the debootstrap element's
/// `DIB_DEBIAN_CACHE_HOURS`: package updates) are not used, and the
/// least recently used go when the cache passes `DIBR_PHASE_CACHE_GIB`
/// (default 8), and an entry is stored only when the phases it saves took
/// at least `DIBR_PHASE_CACHE_MIN_SECONDS` (default 5).
/// `DIBR_PHASE_CACHE`: `on` (the default), `off` (as `--no-cache`) or
/// `refresh` (as `--refresh-cache`); the options win.
pub fn phase_cache_mode() -> Result<crate::build::phase_cache::Mode, SettingError> {
    use crate::build::phase_cache::Mode;
    match non_empty("DIBR_PHASE_CACHE").as_deref() {
        None | Some("on") | Some("1") => Ok(Mode::Use),
        Some("off") | Some("0") => Ok(Mode::Off),
        Some("refresh") => Ok(Mode::Refresh),
        Some(v) => Err(SettingError::Invalid {
            name: "DIBR_PHASE_CACHE",
            value: v.to_string(),
            expected: "expected on, off or refresh",
        }),
    }
}

pub fn phase_cache_limits() -> Result<crate::build::phase_cache::Limits, SettingError> {
    let num = |name: &'static str, default: f64| -> Result<f64, SettingError> {
        match non_empty(name) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|n| n.is_finite() && *n >= 0.0)
                .ok_or(SettingError::Invalid {
                    name,
                    value: v,
                    expected: "expected a number >= 0 (hours, GiB or seconds), e.g. 24 or 0.5",
                }),
        }
    };
    let hours = num("DIBR_PHASE_CACHE_HOURS", 24.0)?;
    let gib = num("DIBR_PHASE_CACHE_GIB", 8.0)?;
    let min_seconds = num("DIBR_PHASE_CACHE_MIN_SECONDS", 5.0)?;
    Ok(crate::build::phase_cache::Limits {
        max_age: std::time::Duration::from_secs_f64(hours * 3600.0),
        max_bytes: (gib * (1u64 << 30) as f64) as u64,
        min_saved: std::time::Duration::from_secs_f64(min_seconds),
    })
}

/// `ELEMENTS_PATH` (colon list, highest priority first) with dibr's own
/// element library ([`shipped_elements_dir`]) appended last.
pub fn elements_path() -> Result<ElementsPath, PathError> {
    let v = std::env::var("ELEMENTS_PATH").ok();
    ElementsPath::parse(v.as_deref(), shipped_elements_dir().as_deref())
}

/// dibr's element library: `$DIBR_ELEMENTS_DIR` if set, else
/// `share/dibr/elements` beside the executable's `bin/` (an installed
/// copy, e.g. `/usr/local/bin/dibr` with `/usr/local/share/dibr/elements`
/// in a container image), else the `elements/` directory of the source
/// tree dibr was built from, if it still exists.
pub fn shipped_elements_dir() -> Option<PathBuf> {
    shipped("DIBR_ELEMENTS_DIR", "elements")
}

/// dibr's shell libraries for hooks (`_LIB`: `die`, `img-functions`, …),
/// found as [`shipped_elements_dir`] is: `$DIBR_LIB_DIR`, `share/dibr/lib`,
/// or the source tree's `lib/`.
pub fn shipped_lib_dir() -> Option<PathBuf> {
    shipped("DIBR_LIB_DIR", "lib")
}

/// A directory dibr ships: `$var` if set, else `share/dibr/<name>` beside
/// the executable's `bin/`, else `<name>` in the source tree dibr was
/// built from, if it still exists.
fn shipped(var: &str, name: &str) -> Option<PathBuf> {
    if let Some(d) = std::env::var_os(var) {
        return Some(PathBuf::from(d));
    }
    let installed = std::env::current_exe().ok().and_then(|exe| {
        let d = exe.parent()?.parent()?.join("share/dibr").join(name);
        d.is_dir().then_some(d)
    });
    installed.or_else(|| {
        let d = Path::new(env!("CARGO_MANIFEST_DIR")).join(name);
        d.is_dir().then_some(d)
    })
}

/// The kernel's binfmt_misc directory, where a foreign architecture's
/// qemu-user handler is looked for (`crate::sandbox::binfmt`):
/// `$DIBR_BINFMT_MISC_DIR` (a test seam: a directory of handler files in
/// the kernel's format), else `/proc/sys/fs/binfmt_misc`.
pub fn binfmt_misc_dir() -> PathBuf {
    std::env::var_os("DIBR_BINFMT_MISC_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/proc/sys/fs/binfmt_misc"))
}

/// The directories of `PATH`, in order (none when it is unset).
fn path_dirs() -> Vec<PathBuf> {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default()
}

/// The first of `names` found as a file on `PATH` (each name is looked
/// for in every directory before the next name is tried).
fn on_path(names: &[&str]) -> Option<PathBuf> {
    let dirs = path_dirs();
    names
        .iter()
        .flat_map(|n| dirs.iter().map(move |d| d.join(n)))
        .find(|p| p.is_file())
}

/// The sandbox's view of the process: the helper binary
/// (`$DIBR_SANDBOX_HELPER`, else this executable, else `dibr` on `PATH`),
/// the temporary directory for its status files (`TMPDIR`), and what
/// preflight takes from the environment (`PATH` for newuidmap and
/// fakeroot, `DIBR_USERNS=single`, `DIBR_SANDBOX`, the CI runtime
/// variables). Handed to `crate::sandbox::configure` once, at start.
pub fn sandbox() -> SandboxSettings {
    let mut path = path_dirs();
    for d in ["/usr/bin", "/bin", "/usr/sbin", "/sbin"] {
        path.push(d.into());
    }
    SandboxSettings {
        helper: std::env::var_os("DIBR_SANDBOX_HELPER")
            .map(PathBuf::from)
            .or_else(|| std::env::current_exe().ok())
            .unwrap_or_else(|| PathBuf::from("dibr")),
        scratch_dir: std::env::temp_dir(),
        host: HostEnv {
            path_dirs: path,
            force_single: std::env::var("DIBR_USERNS").as_deref() == Ok("single"),
            forced: non_empty("DIBR_SANDBOX"),
            runtime_vars: Runtime::ENV_VARS
                .iter()
                .filter_map(|k| Some((k.to_string(), std::env::var(k).ok()?)))
                .collect(),
        },
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
