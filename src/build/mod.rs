//! `dibr build`: diskimage-builder's build flow, rootless.
//!
//! The table of contents is [`build_image`]; it follows
//! `diskimage_builder/lib/disk-image-create` (and `lib/common-functions`,
//! `lib/img-functions` in DIB's source): resolve elements, lay out
//! the hooks, run root.d … cleanup.d in DIB's order (in the target chroot or
//! outside it, as DIB does) inside the user-namespace sandbox, then capture
//! the tree as a tar stream from inside the namespace.

pub mod env;
pub mod first_boot;
pub mod hooks_dir;
pub mod phase_cache;
mod summary;
pub mod workdir;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use crate::capture::OutputType;
use crate::elements::{self, Phase};
use crate::output::container::Reference;
use crate::sandbox::{self, Bind, SandboxConfig};
use workdir::WorkDir;

/// Everything `dibr build` was asked to do.
#[derive(Debug, Clone)]
pub struct BuildConfig {
    pub elements: Vec<String>,
    pub skip_base: bool,
    /// Output name without extension (DIB's `-o`).
    pub image_name: PathBuf,
    pub types: Vec<OutputType>,
    /// docker/oci/squashfs outputs made from the captured tree's tar
    /// (without a disk type; with one, the assembler writes them).
    pub layer_outputs: Vec<crate::assemble::OutputKind>,
    /// `--docker-target`: their `repository:tag` (None: the image name's).
    pub image_reference: Option<Reference>,
    pub arch: String,
    /// `-p`: packages installed after install.d.
    pub packages: Vec<String>,
    pub keep_on_error: bool,
    /// Work directory on /dev/shm when it has this many GiB free (DIB's
    /// tmpfs build; `None` with --no-tmpfs).
    pub tmpfs_min_gib: Option<u64>,
    pub image_cache: PathBuf,
    pub offline: bool,
    pub debug_trace: bool,
    pub source_date_epoch: Option<i64>,
    pub checksum: bool,
    /// Disk outputs requested: the captured tree goes through the
    /// assembler, which writes every output (`types` is then empty).
    pub assemble: Option<AssembleOpts>,
    /// `--image-size` / `DIB_IMAGE_SIZE` in bytes (rounded as DIB).
    pub image_size: Option<u64>,
    /// `--root-label` (DIB's ROOT_LABEL).
    pub root_label: Option<String>,
    /// The root filesystem's ceiling and mkfs options.
    pub root_fs: crate::assemble::RootFsOptions,
    /// `--install-type`: DIB_DEFAULT_INSTALLTYPE for the hooks.
    pub install_type: Option<String>,
    /// `--no-cache` / `--refresh-cache` (docs/phase-cache.md).
    pub phase_cache: phase_cache::Mode,
    /// The phase cache's age limit and size cap.
    pub phase_cache_limits: phase_cache::Limits,
}

/// What the assembler is asked for by `dibr build`.
#[derive(Debug, Clone)]
pub struct AssembleOpts {
    /// Every requested output, disk and tar.
    pub types: Vec<crate::assemble::OutputKind>,
    pub uncompressed: bool,
    /// `--qemu-img-options compat=…,compression_type=…`.
    pub qcow2: crate::output::qcow2::Qcow2Format,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    #[error(transparent)]
    Elements(#[from] elements::path::PathError),
    #[error(transparent)]
    Resolve(#[from] elements::resolve::ResolveError),
    #[error(transparent)]
    Hooks(#[from] elements::hooks::HookError),
    #[error(transparent)]
    Sandbox(#[from] sandbox::SandboxError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{phase} hook failed ({status}); the hook's output is above. Re-run with --keep-on-error to inspect the tree")]
    HookFailed { phase: String, status: String },
    #[error("root.d left the target tree empty: an element providing operating-system must create the base tree in $TARGET_ROOT")]
    EmptyRoot,
    #[error("capturing the tree failed ({0}); its output is above")]
    Capture(std::process::ExitStatus),
    /// Copying DIB's manifests (`/etc/dib-manifests`) beside the image.
    #[error("{what}: {source}")]
    Manifests {
        what: String,
        #[source]
        source: Box<crate::assemble::AssembleError>,
    },
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Assemble(#[from] crate::assemble::AssembleError),
    #[error(transparent)]
    Binfmt(#[from] sandbox::binfmt::BinfmtError),
}

/// Work directories to remove if the process is interrupted.
static ACTIVE: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Set once SIGINT/SIGTERM arrived; the handler owns the cleanup from then on.
static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether the build was interrupted (the main thread then leaves the
/// cleanup and the exit to the signal handler).
pub fn interrupted() -> bool {
    INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst)
}

/// Called first by the SIGINT/SIGTERM handler: from now on the main
/// thread leaves the exit to it.
pub fn note_interrupt() {
    INTERRUPTED.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// Called from the SIGINT/SIGTERM handler: kill running hooks (their pid
/// namespaces take every process with them) and remove work directories.
pub fn interrupt_cleanup() {
    INTERRUPTED.store(true, std::sync::atomic::Ordering::SeqCst);
    sandbox::kill_running();
    sandbox::shutdown();
    let dirs: Vec<PathBuf> = ACTIVE
        .lock()
        .map(|mut v| std::mem::take(&mut *v))
        .unwrap_or_default();
    for d in dirs {
        if let Err(e) = sandbox::remove_tree(&d) {
            eprintln!("dibr: could not remove {}: {e}", d.display());
        }
    }
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> BuildError {
    let what = what.into();
    move |source| BuildError::Io { what, source }
}

/// Paths of the outputs for `name` and `types` (DIB's naming).
pub fn output_path(name: &Path, t: OutputType) -> PathBuf {
    let ext = match t {
        OutputType::Tar => "tar",
        OutputType::Tgz => "tgz",
        OutputType::TarZst => "tar.zst",
    };
    let mut s = name.as_os_str().to_owned();
    s.push(".");
    s.push(ext);
    PathBuf::from(s)
}

/// Run one phase's hooks with dib-run-parts, in the chroot or outside it.
fn run_phase(w: &WorkDir, phase: Phase, env: &env::HookEnv) -> Result<(), BuildError> {
    let dir = w.hooks().join(phase.dir_name());
    if !dir.is_dir() {
        return Ok(());
    }
    let started = Instant::now();
    crate::console::phase_started(
        phase.dir_name(),
        &format!(
            "dibr: running {} ({})",
            phase.dir_name(),
            if phase.in_target() {
                "in target"
            } else {
                "outside"
            }
        ),
    );
    let cfg = if phase.in_target() {
        let in_target = w.target().join("tmp/in_target.d");
        std::fs::create_dir_all(&in_target)
            .map_err(io(format!("creating {}", in_target.display())))?;
        SandboxConfig {
            root: w.target(),
            binds: vec![Bind::ro(w.hooks(), "/tmp/in_target.d")],
            env: env.in_target(),
            cwd: "/".into(),
            chroot: true,
            tree_dev: false,
        }
    } else {
        SandboxConfig {
            root: w.target(),
            binds: Vec::new(),
            env: env.outside(phase),
            // As DIB: outside hooks run where the user started the build
            // (manifests writes "${IMAGE_NAME}.d/" relative to it).
            cwd: std::env::current_dir().map_err(io("current directory"))?,
            chroot: false,
            // Once root.d has made the tree, it has DIB's /dev nodes.
            tree_dev: phase != Phase::Root,
        }
    };
    let runner: OsString = if phase.in_target() {
        "/tmp/in_target.d/dib-run-parts".into()
    } else {
        w.hooks().join("dib-run-parts").into()
    };
    let target_dir: OsString = if phase.in_target() {
        format!("/tmp/in_target.d/{}", phase.dir_name()).into()
    } else {
        dir.into()
    };
    let status = sandbox::run(&cfg, &["/bin/bash".into(), runner, target_dir])?;
    if phase.in_target() {
        let _ = std::fs::remove_dir(w.target().join("tmp/in_target.d"));
    }
    if !status.success() {
        show_failed_hook(phase.dir_name());
        return Err(BuildError::HookFailed {
            phase: phase.dir_name().to_string(),
            status: status.to_string(),
        });
    }
    crate::console::phase_done(&format!(
        "dibr: {} done in {:.1}s",
        phase.dir_name(),
        started.elapsed().as_secs_f64()
    ));
    Ok(())
}

/// A compact build kept the hooks' output in the log: show the failing
/// hook's whole output on the terminal, as a verbose build would have.
fn show_failed_hook(what: &str) {
    let Some((hook, lines)) = crate::console::failed_hook_output() else {
        return;
    };
    let log = crate::console::log_path()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let head = match hook {
        Some(h) => {
            format!("dibr: {what} failed in {h}; its output (the whole build log is {log}):")
        }
        None => format!("dibr: {what} failed; its output (the whole build log is {log}):"),
    };
    crate::console::say(&head);
    for l in &lines {
        crate::console::say(&format!("  | {l}"));
    }
}

/// `-p`: install extra packages with the image's install-packages.
fn install_extra_packages(
    w: &WorkDir,
    cfg: &BuildConfig,
    env: &env::HookEnv,
) -> Result<(), BuildError> {
    if cfg.packages.is_empty() {
        return Ok(());
    }
    let sb = SandboxConfig {
        root: w.target(),
        binds: Vec::new(),
        env: env.in_target(),
        cwd: "/".into(),
        chroot: true,
        tree_dev: false,
    };
    let mut argv: Vec<OsString> = vec!["install-packages".into()];
    argv.extend(cfg.packages.iter().map(OsString::from));
    let status = sandbox::run(&sb, &argv)?;
    if !status.success() {
        show_failed_hook("-p packages (install-packages)");
        return Err(BuildError::HookFailed {
            phase: "-p packages (install-packages)".into(),
            status: status.to_string(),
        });
    }
    Ok(())
}

/// DIB's finalise_base: empty the guest /tmp, truncate logs. And, as
/// mkosi does, remove ldconfig's aux-cache: a cache of the libraries'
/// inode numbers and ctimes, different in every build (so no image with
/// it is reproducible, nor one restored from the phase cache equal to a
/// cold build's); ldconfig rebuilds it when it next runs.
fn finalise_base(w: &WorkDir, env: &env::HookEnv) -> Result<(), BuildError> {
    let script = "set -e; cd \"$TARGET_ROOT\"; \
        if [ -d tmp ]; then find tmp -mindepth 1 -delete; fi; \
        if [ -d var/log ]; then find var/log -type f -exec truncate -s 0 {} +; fi; \
        rm -f root/*.log var/cache/ldconfig/aux-cache";
    let sb = over_tree(w, env.outside(Phase::Cleanup));
    let st = sandbox::run(&sb, &["/bin/sh".into(), "-c".into(), script.into()])?;
    if !st.success() {
        return Err(BuildError::HookFailed {
            phase: "finalise (emptying /tmp, truncating /var/log)".into(),
            status: st.to_string(),
        });
    }
    Ok(())
}

/// Stream the tree out of the namespace: `dibr __capture` runs inside it,
/// so owners are the in-namespace ones.
fn capture(w: &WorkDir, cfg: &BuildConfig, env: &env::HookEnv) -> Result<Vec<PathBuf>, BuildError> {
    let mut outs = Vec::new();
    for &t in &cfg.types {
        let out = output_path(&cfg.image_name, t);
        let out_abs = if out.is_absolute() {
            out.clone()
        } else {
            std::env::current_dir()
                .map_err(io("current directory"))?
                .join(&out)
        };
        // Written by the capture helper under a hidden name; it joins
        // the output set.
        capture_one(w, cfg, env, &crate::output::set::stage_path(&out_abs))?;
        if cfg.checksum {
            crate::assemble::write_checksum(&out_abs)?;
        }
        outs.push(out_abs);
    }
    outs.extend(capture_layer_outputs(w, cfg, env)?);
    // DIB's manifests element: /etc/dib-manifests → NAME.d/dib-manifests,
    // read from the tree itself (a few small files; the tar is not read
    // again). Only a real directory inside the tree counts: a hook's
    // symlink must not make dibr copy host files.
    let dir = w.target().join("etc/dib-manifests");
    let inside = match (dir.canonicalize(), w.target().canonicalize()) {
        (Ok(d), Ok(t)) => d.starts_with(t) && d.is_dir(),
        _ => false,
    };
    if inside {
        let files =
            crate::assemble::manifest_files(&dir).map_err(|source| BuildError::Manifests {
                what: format!("reading the manifests in {}", dir.display()),
                source: Box::new(source),
            })?;
        if !files.is_empty() {
            crate::assemble::write_manifests(&cfg.image_name, &files).map_err(|source| {
                BuildError::Manifests {
                    what: format!("writing {}.d/dib-manifests", cfg.image_name.display()),
                    source: Box::new(source),
                }
            })?;
        }
    }
    Ok(outs)
}

/// docker/oci/squashfs outputs: the tree captured once into the work
/// directory, then each output made from that tar.
fn capture_layer_outputs(
    w: &WorkDir,
    cfg: &BuildConfig,
    env: &env::HookEnv,
) -> Result<Vec<PathBuf>, BuildError> {
    if cfg.layer_outputs.is_empty() {
        return Ok(Vec::new());
    }
    let layer_path = w.image_dir().join("layer.tar");
    capture_one(w, cfg, env, &layer_path)?;
    let layer = std::fs::File::open(&layer_path).map_err(io("opening the captured layer"))?;
    let created = cfg.source_date_epoch.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64)
    });
    let meta = crate::assemble::image_meta(
        &cfg.image_name,
        cfg.image_reference.as_ref(),
        created,
        &cfg.arch,
        format!(
            "dibr {} {}",
            env!("CARGO_PKG_VERSION"),
            cfg.elements.join(" ")
        ),
    );
    let mut outs = Vec::new();
    for &kind in &cfg.layer_outputs {
        let out = std::path::absolute(crate::assemble::output_path(&cfg.image_name, kind))
            .map_err(io("current directory"))?;
        crate::assemble::write_from_layer(
            kind,
            &layer,
            &layer_path,
            &out,
            &meta,
            cfg.source_date_epoch,
        )?;
        if cfg.checksum {
            crate::assemble::write_checksum(&out)?;
        }
        outs.push(out);
    }
    drop(layer);
    let _ = std::fs::remove_file(&layer_path);
    Ok(outs)
}

/// One capture of the tree into `out_abs` (its type from the name).
fn capture_one(
    w: &WorkDir,
    cfg: &BuildConfig,
    env: &env::HookEnv,
    out_abs: &Path,
) -> Result<(), BuildError> {
    {
        let mut e = env.outside(Phase::Cleanup);
        if let Some(s) = cfg.source_date_epoch {
            e.push(("SOURCE_DATE_EPOCH".into(), s.to_string()));
        }
        let sb = over_tree(w, e);
        let argv = sandbox::capture_argv(&w.target(), out_abs)?;
        let st = sandbox::run(&sb, &argv)?;
        if !st.success() {
            return Err(BuildError::Capture(st));
        }
    }
    Ok(())
}

/// The sandbox for dibr's own steps over the tree (fstab, finalise,
/// capture, the phase cache's store and restore): run outside it, from
/// the work directory, without the tree's /dev.
fn over_tree(w: &WorkDir, env: Vec<(String, String)>) -> SandboxConfig {
    SandboxConfig {
        root: w.target(),
        binds: Vec::new(),
        env,
        cwd: w.root().to_path_buf(),
        chroot: false,
        tree_dev: false,
    }
}

/// The block-device config DIB would use and the root's parameters
/// (label, filesystem type) for this build.
fn block_device_config(
    cfg: &BuildConfig,
    resolved: &elements::resolve::Resolved,
) -> Result<
    (
        crate::assemble::BlockDeviceConfig,
        crate::disk::config::RootParams,
    ),
    BuildError,
> {
    use crate::assemble::BlockDeviceConfig;
    let block_device = match crate::settings::block_device_config() {
        Some(v) => BlockDeviceConfig::from_value(&v)?,
        None => BlockDeviceConfig::from_elements(&resolved.elements, &cfg.arch)
            .unwrap_or_else(BlockDeviceConfig::fallback),
    };
    let mut root_params = crate::settings::root_params();
    if let Some(l) = &cfg.root_label {
        root_params.label = Some(l.clone());
    }
    Ok((block_device, root_params))
}

/// The root label and filesystem type the block-device config gives
/// (None: keep the defaults `cloudimg-rootfs`/`--root-label` and ext4). A
/// config that does not load is left to the assembler, which names the
/// fault; the hooks need neither then.
fn layout_root_fs(
    cfg: &BuildConfig,
    resolved: &crate::elements::Resolved,
) -> Option<(String, String)> {
    let (block_device, root_params) = block_device_config(cfg, resolved).ok()?;
    crate::assemble::root_fs_for(&block_device, &root_params)
        .ok()
        .flatten()
}

/// The `/etc/fstab` of the disk the build makes, from its block-device
/// config (known before any phase: the phase cache keys it).
fn fstab_text(
    cfg: &BuildConfig,
    resolved: &elements::resolve::Resolved,
) -> Result<String, BuildError> {
    let (block_device, root_params) = block_device_config(cfg, resolved)?;
    let block_size = crate::settings::assemble().block_size;
    Ok(crate::assemble::fstab_for(
        &block_device,
        &root_params,
        block_size.as_deref(),
    )?)
}

/// disk-image-create's `dib-block-device writefstab`, which runs before
/// pre-finalise.d and finalise.d: the image's `/etc/fstab` is in the tree
/// when those hooks run (the debootstrap element's
/// finalise.d/80-update-initramfs rebuilds the initramfs then, and
/// initramfs-tools copies fsck into it only for a root that fstab gives a
/// pass number). The assembler writes the same file again.
fn write_fstab(w: &WorkDir, env: &env::HookEnv, fstab: &str) -> Result<(), BuildError> {
    let file = w.image_dir().join("fstab");
    std::fs::write(&file, fstab).map_err(io(format!("writing {}", file.display())))?;
    let script = "set -e; mkdir -p \"$TARGET_ROOT/etc\"; \
        if [ ! -d \"$TARGET_ROOT/etc/fstab\" ]; then \
        rm -f \"$TARGET_ROOT/etc/fstab\"; cat \"$1\" > \"$TARGET_ROOT/etc/fstab\"; \
        chmod 644 \"$TARGET_ROOT/etc/fstab\"; fi";
    let sb = over_tree(w, env.outside(Phase::BlockDevice));
    let argv: Vec<OsString> = vec![
        "/bin/sh".into(),
        "-c".into(),
        script.into(),
        "sh".into(),
        file.clone().into(),
    ];
    let st = sandbox::run(&sb, &argv)?;
    let _ = std::fs::remove_file(&file);
    if !st.success() {
        return Err(BuildError::HookFailed {
            phase: "writing /etc/fstab (dib-block-device writefstab)".into(),
            status: st.to_string(),
        });
    }
    crate::detail!(
        "dibr: wrote /etc/fstab ({} entr{}) before pre-finalise.d",
        fstab.lines().count(),
        if fstab.lines().count() == 1 {
            "y"
        } else {
            "ies"
        }
    );
    Ok(())
}

/// Disk outputs: the tree is captured once into the work directory, then
/// assembled with the block-device config DIB would use
/// (`block_device_create_config_file` in `lib/common-functions`):
/// `DIB_BLOCK_DEVICE_CONFIG` (inline or `file://`), else the first
/// element with `block-device-<ARCH>.yaml` or `block-device-default.yaml`,
/// else DIB's fallback (one ext4 on the whole image, no partition table).
fn assemble_disk(
    w: &WorkDir,
    cfg: &BuildConfig,
    a: &AssembleOpts,
    env: &env::HookEnv,
    resolved: &elements::resolve::Resolved,
) -> Result<crate::assemble::Assembled, BuildError> {
    use crate::assemble::{self, AssembleConfig};
    let tree = w.image_dir().join("tree.tar");
    capture_one(w, cfg, env, &tree)?;
    let (block_device, root_params) = block_device_config(cfg, resolved)?;
    crate::detail!("dibr: block-device config: {}", block_device.origin);
    let image_name = if cfg.image_name.is_absolute() {
        cfg.image_name.clone()
    } else {
        std::env::current_dir()
            .map_err(io("current directory"))?
            .join(&cfg.image_name)
    };
    let acfg = AssembleConfig {
        from: tree.clone(),
        image_name,
        types: a.types.clone(),
        block_device,
        root_params,
        image_size: cfg.image_size,
        uncompressed: a.uncompressed,
        qcow2: a.qcow2,
        root_fs: cfg.root_fs.clone(),
        source_date_epoch: cfg.source_date_epoch,
        checksum: cfg.checksum,
        elements: resolved.elements.iter().map(|(n, _)| n.clone()).collect(),
        settings: crate::settings::assemble(),
        image_reference: cfg.image_reference.clone(),
    };
    // The captured tar is all the assembler reads: the target tree can go
    // while the disk is written (removing tens of thousands of files takes
    // seconds; the final removal of the work directory then finds little).
    // Kept when the user asked to inspect a failed build.
    let remover = (!cfg.keep_on_error).then(|| {
        let target = w.target();
        std::thread::spawn(move || sandbox::remove_tree(&target))
    });
    let outs = assemble::assemble(&acfg);
    if let Some(h) = remover {
        // Not fatal: the work directory's removal at the end retries.
        if let Ok(Err(e)) = h.join() {
            crate::say!("dibr: note: removing the tree during assembly: {e}");
        }
    }
    let outs = outs?;
    let _ = std::fs::remove_file(&tree);
    Ok(outs)
}

/// Finish or remove what killed builds (or assemblies) left in the output directory
/// (journals of output sets, hidden temporary outputs), saying so.
pub fn recover_outputs(image_name: &Path) {
    let dir = match image_name.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let (finished, removed) = crate::output::set::recover(dir);
    if finished > 0 {
        crate::say!(
            "dibr: finished naming the outputs of {finished} build(s) killed while naming them, in {}",
            dir.display()
        );
    }
    if removed > 0 {
        crate::say!(
            "dibr: removed {removed} temporary output(s) of builds that died, in {}",
            dir.display()
        );
    }
}

/// Remove what builds of this user that died left behind (work
/// directories, sandbox status files), saying how much it freed. Not
/// fatal: a directory that cannot be removed is named and left. Returns
/// how many were removed.
pub fn reclaim_stale() -> usize {
    let mut freed = 0;
    let mut n = 0;
    for d in workdir::stale() {
        let size = workdir::disk_usage(&d);
        match sandbox::remove_tree(&d) {
            Ok(()) => {
                freed += size;
                n += 1;
            }
            Err(e) => crate::say!(
                "dibr: cannot remove the stale work directory {}: {e}",
                d.display()
            ),
        }
    }
    sandbox::remove_stale_status_files();
    if n > 0 {
        crate::say!(
            "dibr: removed {n} work director{} of builds that died, freeing {:.1} MiB",
            if n == 1 { "y" } else { "ies" },
            freed as f64 / (1 << 20) as f64
        );
    }
    n
}

/// The element path (`ELEMENTS_PATH` and dibr's library) and the elements
/// the build uses, said on stderr with the DIB elements dibr's replaced.
fn resolve_elements(
    cfg: &BuildConfig,
) -> Result<(elements::path::ElementsPath, elements::resolve::Resolved), BuildError> {
    let (path, resolved, substituted) = resolve_quietly(cfg)?;
    crate::say!(
        "dibr: building {} with elements: {}",
        cfg.image_name.display(),
        resolved.names().join(" ")
    );
    for sub in substituted
        .iter()
        .filter(|s| resolved.elements.iter().any(|(n, _)| *n == s.element))
    {
        crate::say!("dibr: {sub}");
    }
    Ok((path, resolved))
}

/// The element path, the resolved elements and the DIB elements dibr's
/// replaced, without a word on the terminal.
fn resolve_quietly(
    cfg: &BuildConfig,
) -> Result<
    (
        elements::path::ElementsPath,
        elements::resolve::Resolved,
        Vec<elements::path::Substitution>,
    ),
    BuildError,
> {
    let path = crate::settings::elements_path()?;
    let (available, substituted) = path.discover_noting()?;
    let requested = elements::resolve::requested_elements(&cfg.elements, cfg.skip_base);
    let resolved = elements::resolve::resolve(
        &requested,
        &available,
        &crate::settings::block_device_kind(),
    )?;
    Ok((path, resolved, substituted))
}

/// The directory of element `name` when the build's elements resolve to
/// include it, found without a word on the terminal: for commands that
/// act after the build on what an element asks for (`dibr ramdisk` and
/// the `iso` element).
pub fn resolved_element(cfg: &BuildConfig, name: &str) -> Result<Option<PathBuf>, BuildError> {
    let (_, resolved, _) = resolve_quietly(cfg)?;
    Ok(resolved
        .elements
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, p)| p))
}

/// The whole build. Prints DIB-style progress; returns the output paths.
pub fn build_image(cfg: &BuildConfig) -> Result<Vec<PathBuf>, BuildError> {
    let started = Instant::now();
    let started_wall = std::time::SystemTime::now();
    let emulated = sandbox::binfmt::check(
        &cfg.arch,
        std::env::consts::ARCH,
        &crate::settings::binfmt_misc_dir(),
    )?;
    crate::say!("{}", sandbox::chosen()?.line());
    if let Some(h) = &emulated {
        crate::say!(
            "dibr: {} image on a {} host: the image's programs run through qemu-user ({}), several times slower than native",
            cfg.arch,
            std::env::consts::ARCH,
            h.display()
        );
    }
    if let Some(w) = sandbox::mapping()?.warning() {
        crate::say!("dibr: warning: {w}");
    }
    let (path, resolved) = resolve_elements(cfg)?;
    let hooks = elements::hooks::Hooks::assemble(&resolved.elements)?;

    reclaim_stale();
    recover_outputs(&cfg.image_name);
    let existing = existing_outputs(&cfg.image_name);
    let w = WorkDir::create(cfg.tmpfs_min_gib).map_err(io("creating the work directory"))?;
    crate::detail!("dibr: work directory {}", w.root().display());
    if let Ok(mut a) = ACTIVE.lock() {
        a.push(w.root().to_path_buf());
    }
    // Every output appears together when the last is complete, or none.
    let set = crate::output::set::begin();
    let result = (|| {
        hooks_dir::write(&w, &hooks, &resolved)?;
        let mut env = env::HookEnv::new(cfg, &w, &resolved, &path);
        if let Some(h) = &emulated {
            env.set_emulated(h);
        }
        if let Some((label, fstype)) = layout_root_fs(cfg, &resolved) {
            env.set_root_label(&label);
            env.set_root_fstype(&fstype);
        }
        let disk =
            cfg.assemble.is_some() && !resolved.elements.iter().any(|(n, _)| n == "no-final-image");
        let fstab = if disk {
            Some(fstab_text(cfg, &resolved)?)
        } else {
            None
        };
        run_cached_phases(&w, cfg, &env, &resolved, fstab.as_deref())?;
        cleanup_and_assemble(&w, cfg, &env, &resolved)
    })();
    let result = result.and_then(|outs| {
        set.commit().map_err(io(format!(
            "naming the outputs of {}",
            cfg.image_name.display()
        )))?;
        Ok(outs)
    });
    if interrupted() {
        // The signal handler removes the work directory and exits.
        return Err(BuildError::Usage("interrupted".into()));
    }
    sandbox::shutdown();
    let keep = result.is_err() && cfg.keep_on_error;
    if keep {
        let _ = w.keep();
        crate::say!(
            "dibr: keeping the work directory {} (--keep-on-error). Enter the tree with:\n  dibr shell {}\nRemove it with: dibr rm-workdir {}",
            w.root().display(),
            w.target().display(),
            w.root().display()
        );
    } else {
        sandbox::remove_tree(w.root())?;
    }
    if let Ok(mut a) = ACTIVE.lock() {
        a.retain(|p| p != w.root());
    }
    let done = result?;
    say_summary(cfg, &done, started, started_wall, &existing);
    Ok(done.outputs)
}

/// cleanup.d, the final clean-up and the capture or the disk: what runs
/// in every build, from the phase cache or not.
fn cleanup_and_assemble(
    w: &WorkDir,
    cfg: &BuildConfig,
    env: &env::HookEnv,
    resolved: &elements::resolve::Resolved,
) -> Result<crate::assemble::Assembled, BuildError> {
    run_phase(w, Phase::Cleanup, env)?;
    finalise_base(w, env)?;
    // DIB: `no-final-image` in IMAGE_ELEMENT skips the image (elements
    // that make their own outputs, such as ramdisks, use it).
    if resolved.elements.iter().any(|(n, _)| n == "no-final-image") {
        crate::say!("dibr: no-final-image: not writing an image");
        return Ok(crate::assemble::Assembled {
            outputs: Vec::new(),
            root_growth_ceiling: None,
        });
    }
    match &cfg.assemble {
        None => Ok(crate::assemble::Assembled {
            outputs: capture(w, cfg, env)?,
            root_growth_ceiling: None,
        }),
        Some(a) => assemble_disk(w, cfg, a, env, resolved),
    }
}

/// root.d … finalise.d and the `-p` packages, or what the phase cache
/// does not have of them: the deepest valid entry is restored, the phases
/// after it run, and the boundaries passed are stored when worth it.
/// cleanup.d and what follows run in every build.
fn run_cached_phases(
    w: &WorkDir,
    cfg: &BuildConfig,
    env: &env::HookEnv,
    resolved: &elements::resolve::Resolved,
    fstab: Option<&str>,
) -> Result<(), BuildError> {
    let cache = phase_cache::PhaseCache::new(cfg, resolved, w, env, fstab)?;
    let hit = match &cache {
        Some(c) => {
            let plan = c.lookup();
            crate::say!("{}", plan.line);
            plan.hit
        }
        None => None,
    };
    let restored = hit.as_ref().map(|h| h.boundary);
    // When the tree last matched an entry (restored or stored): what a
    // new entry would save is the time since.
    let since = std::cell::Cell::new(Instant::now());
    let store = |b: Phase| match &cache {
        Some(c) if c.worth_storing(b, since.get().elapsed()) => {
            c.store(b, w, env)?;
            since.set(Instant::now());
            Ok(())
        }
        _ => Ok::<(), BuildError>(()),
    };
    match (hit, &cache) {
        (Some(h), Some(c)) => {
            c.restore(h, w, env)?;
            since.set(Instant::now());
        }
        _ => {
            run_install_phases(w, cfg, env)?;
            store(Phase::Install)?;
        }
    }
    if restored < Some(Phase::PostInstall) {
        run_phase(w, Phase::PostInstall, env)?;
        store(Phase::PostInstall)?;
    }
    if restored < Some(Phase::Finalise) {
        run_finalise_phases(w, env, fstab)?;
        store(Phase::Finalise)?;
    }
    Ok(())
}

/// root.d … install.d and the `-p` packages.
fn run_install_phases(
    w: &WorkDir,
    cfg: &BuildConfig,
    env: &env::HookEnv,
) -> Result<(), BuildError> {
    run_phase(w, Phase::Root, env)?;
    if workdir::is_empty_root(&w.target()).map_err(io("reading the target tree"))? {
        return Err(BuildError::EmptyRoot);
    }
    for p in [Phase::ExtraData, Phase::PreInstall, Phase::Install] {
        run_phase(w, p, env)?;
    }
    install_extra_packages(w, cfg, env)
}

/// From the first-boot.d hooks' installation to finalise.d: everything
/// that makes the tree the image holds, with `/etc/fstab` in place
/// before pre-finalise.d when the build makes a disk.
fn run_finalise_phases(
    w: &WorkDir,
    env: &env::HookEnv,
    fstab: Option<&str>,
) -> Result<(), BuildError> {
    if first_boot::install(&w.hooks(), &w.target()).map_err(io("installing first-boot.d hooks"))? {
        crate::detail!(
            "dibr: first-boot.d hooks installed with {}",
            first_boot::UNIT_NAME
        );
    }
    for p in [Phase::PostRoot, Phase::BlockDevice] {
        run_phase(w, p, env)?;
    }
    if let Some(fstab) = fstab {
        write_fstab(w, env, fstab)?;
    }
    for p in [Phase::PreFinalise, Phase::Finalise] {
        run_phase(w, p, env)?;
    }
    Ok(())
}

/// The end summary ([`summary`]): outputs, sizes, the log, what next.
fn say_summary(
    cfg: &BuildConfig,
    done: &crate::assemble::Assembled,
    started: Instant,
    started_wall: std::time::SystemTime,
    existing: &[PathBuf],
) {
    let by_elements = if done.outputs.is_empty() {
        // no-final-image: the elements wrote their own (a ramdisk's
        // NAME.initramfs and NAME.kernel, say).
        written_by_hooks(&cfg.image_name, started_wall)
    } else {
        Vec::new()
    };
    let replaced: Vec<PathBuf> = done
        .outputs
        .iter()
        .filter(|o| existing.contains(o))
        .cloned()
        .collect();
    let lines = summary::lines(&summary::Summary {
        outputs: &done.outputs,
        by_elements: &by_elements,
        replaced: &replaced,
        growth_ceiling: done.root_growth_ceiling,
        seconds: started.elapsed().as_secs_f64(),
        log: crate::console::log_path(),
    });
    for l in lines {
        crate::console::say(&l);
    }
}

/// Files named `NAME.*` beside the image name, as absolute paths (to
/// tell which outputs replace a file).
fn existing_outputs(image_name: &Path) -> Vec<PathBuf> {
    let Ok(cwd) = std::env::current_dir() else {
        return Vec::new();
    };
    let abs = cwd.join(image_name);
    let (Some(dir), Some(base)) = (abs.parent(), abs.file_name().and_then(|n| n.to_str())) else {
        return Vec::new();
    };
    let prefix = format!("{base}.");
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    rd.flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(&prefix))
        })
        .map(|e| dir.join(e.file_name()))
        .collect()
}

/// Files named `NAME.*` beside the image name, changed since `since`.
fn written_by_hooks(image_name: &Path, since: std::time::SystemTime) -> Vec<String> {
    let dir = match image_name.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let Some(base) = image_name.file_name().and_then(|n| n.to_str()) else {
        return Vec::new();
    };
    let prefix = format!("{base}.");
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = rd
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(&prefix))
        })
        .filter(|e| {
            e.metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t >= since && e.path().is_file())
        })
        .map(|e| dir.join(e.file_name()).display().to_string())
        .collect();
    names.sort();
    names
}
