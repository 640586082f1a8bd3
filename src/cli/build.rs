//! `dibr build`: disk-image-create's options and environment variables.
//! Options dibr cannot honour yet are refused with the reason; the ones
//! disk-image-create itself ignores in a case (`--ramdisk-element` when
//! not building a ramdisk, `--image-extra-size` with `--image-size`) are
//! ignored with a note. The root filesystem's options are in `root_fs.rs`.

use std::path::PathBuf;

use clap::Args;

use crate::assemble::OutputKind;
use crate::build::{build_image, AssembleOpts, BuildConfig};
use crate::capture::OutputType;
use crate::output::container::{parse_reference, Reference};

#[derive(Args, Debug, Clone)]
pub struct BuildArgs {
    /// Elements to build the image from
    #[arg(required = true, value_name = "ELEMENT")]
    pub elements: Vec<String>,
    /// Image name; outputs are NAME.<type> for each -t type (NAME.qcow2, NAME.raw, …). With one type, a NAME ending in .<type> is used as is (as DIB: -o debian.qcow2 writes debian.qcow2)
    #[arg(short = 'o', default_value = "image", value_name = "NAME")]
    pub output: PathBuf,
    /// Output types, comma separated: qcow2, raw, vhd, vmdk, tar, tgz, tar.zst, docker (NAME.docker.tar), oci (NAME.oci.tar), squashfs (NAME.squash)
    #[arg(short = 't', default_value = "qcow2", value_name = "TYPES")]
    pub types: String,
    /// Architecture (DIB's -a): amd64 (x86_64) or arm64 (aarch64; on another host through qemu-user binfmt). Default: $ARCH, else the host's, as DIB
    #[arg(short = 'a', value_name = "ARCH")]
    pub arch: Option<String>,
    /// Skip the base element (DIB's -n)
    #[arg(short = 'n')]
    pub skip_base: bool,
    /// Extra packages to install after install.d, comma separated (DIB's -p)
    #[arg(short = 'p', value_delimiter = ',', value_name = "PKG,…")]
    pub packages: Vec<String>,
    /// Trace hooks (DIB's -x: DIB_DEBUG_TRACE=1; may be repeated as in DIB)
    #[arg(short = 'x', action = clap::ArgAction::Count)]
    pub trace: u8,
    /// Do not compress qcow2 (DIB's -u)
    #[arg(short = 'u')]
    pub uncompressed: bool,
    /// Write NAME.<type>.sha256 and .md5 next to each output (as DIB)
    #[arg(long)]
    pub checksum: bool,
    /// Image cache directory (default ~/.cache/dibr, or DIB_IMAGE_CACHE)
    #[arg(long, value_name = "DIR")]
    pub image_cache: Option<PathBuf>,
    /// Use cached downloads only (DIB_OFFLINE); an old phase-cache entry is then used with a warning
    #[arg(long)]
    pub offline: bool,
    /// Run every phase and store nothing in the phase cache (DIB_IMAGE_CACHE/phases: the tree after install.d and post-install.d, see docs/phase-cache.md)
    #[arg(long, conflicts_with = "refresh_cache")]
    pub no_cache: bool,
    /// Run every phase and replace the phase cache's entries for these inputs
    #[arg(long)]
    pub refresh_cache: bool,
    /// On failure keep the work directory and print how to enter it
    #[arg(long)]
    pub keep_on_error: bool,
    /// Build in $TMPDIR (default /tmp), not on the tmpfs /dev/shm (DIB's --no-tmpfs; also DIB_NO_TMPFS=1)
    #[arg(long)]
    pub no_tmpfs: bool,
    /// GiB that must be free on /dev/shm to build there (DIB's --min-tmpfs; default 4, or DIB_MIN_TMPFS)
    #[arg(long, value_name = "GIB")]
    pub min_tmpfs: Option<u64>,
    /// Disk size as DIB's: a number is GiB (2, 1.5), or give a unit (3G). Default: $DIB_IMAGE_SIZE, else just large enough
    #[arg(long, value_name = "SIZE")]
    pub image_size: Option<String>,
    /// Label of the root filesystem (DIB's --root-label; default cloudimg-rootfs)
    #[arg(long, value_name = "LABEL")]
    pub root_label: Option<String>,
    #[command(flatten)]
    pub root_fs: super::root_fs::RootFsArgs,
    /// qcow2 options as qemu-img's -o: compat=0.10 (qcow2 version 2, as nodepool passes) or compat=1.1 (version 3, the default); compression_type=zlib (default) or zstd (qemu >= 5.1, version 3 only); others are refused
    #[arg(long, value_name = "OPTS", allow_hyphen_values = true)]
    pub qemu_img_options: Option<String>,
    /// Append the whole build log (dibr's and the hooks' output) to FILE as DIB's timestamped lines; the terminal then stays quiet unless DIB_QUIET=0 (as DIB)
    #[arg(long, value_name = "FILE")]
    pub logfile: Option<PathBuf>,
    /// Show every hook's output live, as disk-image-create does (which dibr, called by that name, always does); by default the terminal shows a line per phase and progress, and the hooks' output goes to a log file under the image cache (shown in full when a hook fails)
    #[arg(short = 'v', long)]
    pub verbose: bool,
    /// Clear the environment before starting (DIB's -c): dibr runs itself again with only PATH (bash's default) and HOME, so no DIB_* or other variable of the caller reaches the build or its hooks
    #[arg(short = 'c')]
    pub clear_env: bool,
    /// Default installation type for the elements: source or package (DIB's --install-type: DIB_DEFAULT_INSTALLTYPE for the hooks; default: $DIB_DEFAULT_INSTALLTYPE, else source)
    #[arg(long, value_name = "TYPE")]
    pub install_type: Option<String>,
    /// Main element of a ramdisk (DIB's --ramdisk-element, e.g. dracut-ramdisk): `dibr ramdisk` builds it first; default $RAMDISK_ELEMENT, else none (DIB adds `ramdisk`). Ignored by `dibr build`, as disk-image-create ignores it
    #[arg(long, value_name = "ELEMENT")]
    pub ramdisk_element: Option<String>,
    /// The docker/oci outputs' repository[:tag] (default: the image name, :latest)
    #[arg(long, value_name = "REPO:TAG")]
    pub docker_target: Option<String>,
}

fn refuse(opt: &str, why: &str) -> String {
    format!("{opt} is not supported yet: {why}")
}

pub fn config(a: &BuildArgs) -> Result<BuildConfig, String> {
    refuse_unsupported(a)?;
    let arch = requested_arch(a)?;
    let outputs = outputs(a)?;
    let (image_size, root_fs) = root_filesystem(a, outputs.assemble.is_some())?;
    let source_date_epoch =
        crate::settings::SourceDateEpoch::secs_from_env().map_err(|e| e.to_string())?;
    Ok(BuildConfig {
        elements: a.elements.clone(),
        skip_base: a.skip_base,
        image_name: image_name(&a.output, &outputs.all),
        types: outputs.tar_types,
        layer_outputs: outputs.layer_outputs,
        image_reference: image_reference(a)?,
        arch,
        packages: a.packages.clone(),
        keep_on_error: a.keep_on_error || env_is("break", |b| b.contains("after-error")),
        tmpfs_min_gib: tmpfs_min_gib(a),
        image_cache: image_cache(a),
        offline: a.offline || env_is("DIB_OFFLINE", |v| !v.is_empty() && v != "0"),
        debug_trace: a.trace > 0 || env_is("DIB_DEBUG_TRACE", |v| v != "0" && !v.is_empty()),
        source_date_epoch,
        checksum: a.checksum,
        assemble: outputs.assemble,
        image_size,
        root_label: a.root_label.clone().filter(|l| !l.is_empty()),
        root_fs,
        install_type: a.install_type.clone(),
        phase_cache: if a.no_cache {
            crate::build::phase_cache::Mode::Off
        } else if a.refresh_cache {
            crate::build::phase_cache::Mode::Refresh
        } else {
            crate::settings::phase_cache_mode().map_err(|e| e.to_string())?
        },
        phase_cache_limits: crate::settings::phase_cache_limits().map_err(|e| e.to_string())?,
    })
}

/// Options dibr refuses, naming the alternative.
fn refuse_unsupported(a: &BuildArgs) -> Result<(), String> {
    if a.install_type
        .as_deref()
        .is_some_and(|t| t.trim().is_empty())
    {
        return Err("--install-type needs a value: source or package".into());
    }
    for t in a.types.split(',').map(str::trim) {
        if matches!(t, "aci") {
            return Err(refuse(
                &format!("-t {t}"),
                "dibr writes qcow2, raw, vhd, vmdk, tar, tgz, tar.zst, docker, oci and squashfs",
            ));
        }
    }
    Ok(())
}

/// DIB's `-a` names, as Debian spells them (DIB's debootstrap maps
/// x86_64→amd64 and aarch64→arm64; the rpm-distro element maps back).
/// A foreign architecture needs the host's qemu-user binfmt handler,
/// which the build's preflight checks before any work.
/// DIB's `ARCH=${ARCH:-$_ARCH}` (diskimage_builder/lib/common-defaults):
/// `-a`, else the caller's `ARCH`, else the host's own architecture.
fn requested_arch(a: &BuildArgs) -> Result<String, String> {
    if let Some(given) = &a.arch {
        return arch(given);
    }
    match std::env::var("ARCH").ok().filter(|v| !v.is_empty()) {
        Some(env) => arch(&env)
            .map_err(|e| format!("ARCH={env} in the environment (DIB's default for -a): {e}")),
        None => arch(match std::env::consts::ARCH {
            "aarch64" => "arm64",
            _ => "amd64",
        }),
    }
}

pub fn arch(a: &str) -> Result<String, String> {
    match a {
        "amd64" | "x86_64" => Ok("amd64".to_string()),
        "arm64" | "aarch64" => Ok("arm64".to_string()),
        other => Err(refuse(
            &format!("-a {other}"),
            "dibr builds amd64 (x86_64) and arm64 (aarch64) images",
        )),
    }
}

/// What `-t` asks for.
struct Outputs {
    all: Vec<OutputKind>,
    /// Without a disk type the tree is captured straight into these.
    tar_types: Vec<OutputType>,
    /// Without a disk type, these are made from the captured tree's tar.
    layer_outputs: Vec<OutputKind>,
    /// With a disk type the assembler writes every output from one capture.
    assemble: Option<AssembleOpts>,
}

fn outputs(a: &BuildArgs) -> Result<Outputs, String> {
    let all = crate::assemble::parse_types(&a.types)?;
    let disk = all.iter().any(|t| matches!(t, OutputKind::Disk(_)));
    let tar_types: Vec<OutputType> = if disk {
        Vec::new()
    } else {
        all.iter()
            .filter_map(|t| match t {
                OutputKind::Tar(t) => Some(*t),
                OutputKind::Disk(_) | OutputKind::Container(_) | OutputKind::Squashfs => None,
            })
            .collect()
    };
    let layer_outputs = all
        .iter()
        .copied()
        .filter(|&t| !disk && crate::assemble::is_layer_output(t))
        .collect();
    let qcow2 = crate::cli::assemble::qemu_img_options(a.qemu_img_options.as_deref())?;
    let assemble = disk.then(|| AssembleOpts {
        types: all.clone(),
        uncompressed: a.uncompressed,
        qcow2,
    });
    Ok(Outputs {
        all,
        tar_types,
        layer_outputs,
        assemble,
    })
}

/// `--docker-target`, checked as Docker's reference grammar asks.
fn image_reference(a: &BuildArgs) -> Result<Option<Reference>, String> {
    a.docker_target
        .as_deref()
        .map(|t| parse_reference(t).map_err(|e| format!("--docker-target: {e}")))
        .transpose()
}

/// `--image-size` and the root filesystem's options (their notes printed).
fn root_filesystem(
    a: &BuildArgs,
    disk: bool,
) -> Result<(Option<u64>, crate::assemble::RootFsOptions), String> {
    let image_size = crate::cli::assemble::image_size(a.image_size.as_deref())?;
    if image_size.is_some() && !disk {
        return Err(refuse(
            "--image-size",
            "tar outputs have no size; add a disk type (-t raw, qcow2, vhd, vmdk)",
        ));
    }
    let (root_fs, notes) = super::root_fs::resolve(
        &a.root_fs,
        &super::root_fs::RootFsEnv::from_env(),
        image_size,
        None,
    )?;
    for n in notes {
        eprintln!("dibr: note: {n}");
    }
    if !disk && root_fs != crate::assemble::RootFsOptions::default() {
        eprintln!(
            "dibr: note: the root filesystem options (--mkfs-options, --max-online-resize, --mkfs-journal-size, --image-extra-size or their variables) have no effect: -t {} writes no filesystem",
            a.types
        );
    }
    Ok((image_size, root_fs))
}

/// Whether the variable `k` is set and `test` holds for its value.
fn env_is(k: &str, test: impl Fn(&str) -> bool) -> bool {
    std::env::var(k).map(|v| test(&v)).unwrap_or(false)
}

/// `--image-cache`, `DIB_IMAGE_CACHE`, `~/.cache/dibr`.
fn image_cache(a: &BuildArgs) -> PathBuf {
    a.image_cache
        .clone()
        .or_else(|| std::env::var_os("DIB_IMAGE_CACHE").map(PathBuf::from))
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/dibr")))
        .unwrap_or_else(|| PathBuf::from("/tmp/dibr-cache"))
}

/// GiB that must be free on /dev/shm (`--min-tmpfs`, `DIB_MIN_TMPFS`,
/// 4), or `None` with `--no-tmpfs`/`DIB_NO_TMPFS=1`.
fn tmpfs_min_gib(a: &BuildArgs) -> Option<u64> {
    if a.no_tmpfs || env_is("DIB_NO_TMPFS", |v| v == "1") {
        return None;
    }
    Some(
        a.min_tmpfs
            .or_else(|| {
                std::env::var("DIB_MIN_TMPFS")
                    .ok()
                    .and_then(|v| v.parse().ok())
            })
            .unwrap_or(4),
    )
}

/// DIB's `IMAGE_NAME=${IMAGE_NAME%%\.${IMAGE_TYPES[0]}}`: with `-t qcow2`
/// first, `-o debian.qcow2` names the image `debian`, so the output is
/// `debian.qcow2` and not `debian.qcow2.qcow2`.
fn image_name(name: &std::path::Path, types: &[OutputKind]) -> PathBuf {
    // DIB: `IMAGE_NAME=${IMAGE_NAME%%\.${IMAGE_TYPES[0]}}` (the first type,
    // however many are asked for).
    if let (Some(t), Some(s)) = (types.first(), name.to_str()) {
        if let Some(stem) = s.strip_suffix(&format!(".{}", t.ext())) {
            if !stem.is_empty() && !stem.ends_with('/') {
                return PathBuf::from(stem);
            }
        }
    }
    name.to_path_buf()
}

/// `-o debian.qcow2 -t raw,qcow2` writes `debian.qcow2.raw` and
/// `debian.qcow2.qcow2`, as disk-image-create does (only the first
/// type's extension comes off the name): say so, since it surprises.
fn naming_note(output: &std::path::Path, name: &std::path::Path, types: &str) -> Option<String> {
    let all = crate::assemble::parse_types(types).ok()?;
    if all.len() < 2 || output != name {
        return None;
    }
    let given = output.to_str()?;
    let t = all
        .iter()
        .find(|t| given.ends_with(&format!(".{}", t.ext())))?;
    let names: Vec<String> = all
        .iter()
        .map(|k| crate::assemble::output_path(name, *k).display().to_string())
        .collect();
    Some(format!(
        "dibr: note: -o {given} with -t {types}: the outputs are {} (as disk-image-create names them: only the first type's extension, .{}, is taken off -o; give -o {} for {})",
        names.join(", "),
        all[0].ext(),
        given.strip_suffix(&format!(".{}", t.ext())).unwrap_or(given),
        all.iter()
            .map(|k| format!("{}.{}", given.strip_suffix(&format!(".{}", t.ext())).unwrap_or(given), k.ext()))
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

pub fn run(a: &BuildArgs) -> Result<(), Box<dyn std::error::Error>> {
    if a.ramdisk_element.is_some() {
        eprintln!("dibr: note: --ramdisk-element is for ramdisk-image-create (dibr ramdisk); ignored, as disk-image-create ignores it");
    }
    session(a, || {
        let cfg = config(a)?;
        if let Some(n) = naming_note(&a.output, &cfg.image_name, &a.types) {
            crate::console::say(&n);
        }
        std::fs::create_dir_all(&cfg.image_cache).map_err(|e| {
            format!(
                "creating the image cache {}: {e}",
                cfg.image_cache.display()
            )
        })?;
        build_image(&cfg)?;
        Ok(())
    })
}

/// The environment variable that tells the re-executed dibr that `-c`
/// has been carried out.
const CLEARED: &str = "DIBR_ENV_CLEARED";

/// What disk-image-create does before it builds: `-c` re-executes with a
/// clear environment (DIB: `exec -c $0 "$@"`), and `--logfile` sends all
/// output to the file (`outfilter.py`). Then `build` runs; its error, if
/// any, goes to the log too.
pub fn session(
    a: &BuildArgs,
    build: impl FnOnce() -> Result<(), Box<dyn std::error::Error>>,
) -> Result<(), Box<dyn std::error::Error>> {
    if a.clear_env && std::env::var_os(CLEARED).is_none() {
        return Err(reexec_with_clear_env().into());
    }
    let tee = match &a.logfile {
        Some(f) => Some(super::logfile::Tee::start(
            f,
            super::logfile::quiet_from(std::env::var("DIB_QUIET").ok().as_deref()),
        )?),
        None => None,
    };
    let compact = tee.is_none() && !a.verbose;
    if compact {
        let types = crate::assemble::parse_types(&a.types).unwrap_or_default();
        let name = image_name(&a.output, &types);
        let log = crate::console::log_file_for(&image_cache(a).join("logs"), &name, 20);
        crate::console::start_compact(&log)?;
    }
    let r = build();
    if compact {
        if let Err(e) = &r {
            crate::console::detail(&format!("dibr: error: {e}"));
        }
        crate::console::finish();
    }
    if let Some(t) = tee {
        t.finish(r.as_ref().err().map(|e| format!("dibr: error: {e}")));
    }
    r
}

/// DIB's `-c`: run the same command line again with only PATH (bash's
/// default, as `exec -c` leaves bash) and HOME (where DIB's `~` still
/// points). Returns only if the exec failed.
fn reexec_with_clear_env() -> String {
    use std::os::unix::process::CommandExt;
    eprintln!("Re-execing to clear environment.");
    eprintln!("(note this will prevent much of the local_config element from working)");
    let mut args = std::env::args_os();
    let argv0 = args.next().unwrap_or_else(|| "dibr".into());
    let mut c = std::process::Command::new("/proc/self/exe");
    c.arg0(&argv0).args(args).env_clear().env(CLEARED, "1").env(
        "PATH",
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    );
    if let Some(h) = std::env::var_os("HOME") {
        c.env("HOME", h);
    }
    format!(
        "-c: re-executing dibr with a clear environment: {}",
        c.exec()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn name(args: &[&str]) -> PathBuf {
        let cli =
            crate::cli::Cli::try_parse_from(["dibr", "build"].iter().chain(args).chain(&["vm"]))
                .unwrap();
        match cli.command {
            crate::cli::Command::Build(a) => config(&a).unwrap().image_name,
            _ => unreachable!(),
        }
    }

    #[test]
    fn single_type_extension_is_stripped_as_dib_does() {
        assert_eq!(name(&["-o", "debian.qcow2"]), PathBuf::from("debian"));
        assert_eq!(name(&["-o", "d/x.raw", "-t", "raw"]), PathBuf::from("d/x"));
        assert_eq!(
            name(&["-o", "x.tar.zst", "-t", "tar.zst"]),
            PathBuf::from("x")
        );
        // Several types: only the first one's extension goes (DIB's
        // IMAGE_TYPES[0]); another extension is kept as given.
        assert_eq!(
            name(&["-o", "debian.qcow2", "-t", "qcow2,raw"]),
            PathBuf::from("debian")
        );
        assert_eq!(
            name(&["-o", "debian.qcow2", "-t", "raw,qcow2"]),
            PathBuf::from("debian.qcow2")
        );
        assert_eq!(name(&["-o", "debian.img"]), PathBuf::from("debian.img"));
        assert_eq!(name(&["-o", ".qcow2"]), PathBuf::from(".qcow2"));
    }

    #[test]
    fn several_types_naming_is_said() {
        let p = std::path::Path::new;
        let n = naming_note(p("debian.qcow2"), p("debian.qcow2"), "raw,qcow2").unwrap();
        assert!(
            n.contains("debian.qcow2.raw, debian.qcow2.qcow2")
                && n.contains("give -o debian for debian.raw, debian.qcow2"),
            "{n}"
        );
        assert_eq!(
            naming_note(p("debian.qcow2"), p("debian"), "qcow2,raw"),
            None
        );
        assert_eq!(naming_note(p("debian"), p("debian"), "qcow2,raw"), None);
        assert_eq!(naming_note(p("debian.qcow2"), p("debian"), "qcow2"), None);
    }
}
