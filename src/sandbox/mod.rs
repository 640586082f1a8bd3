//! Run commands as "root" in a target tree without being root: a user
//! namespace (subordinate ids via newuidmap/newgidmap, or a single uid),
//! a private mount namespace with /proc, read-only /sys, a minimal /dev and
//! the host's resolv.conf, and a pid namespace whose end kills every
//! process a hook left behind. The host network is shared.
//!
//! This is the only module that uses `unsafe` (in `sys.rs`); namespaces are
//! entered by a freshly exec'ed single-threaded helper, `dibr __sandbox`,
//! because unshare(CLONE_NEWUSER) refuses multi-threaded callers.
//!
//! ```no_run
//! use dibr::sandbox::{configure, run, Bind, SandboxConfig};
//! configure(dibr::settings::sandbox());
//! let cfg = SandboxConfig {
//!     root: "/tmp/target".into(),
//!     binds: vec![Bind::ro("/tmp/hooks", "/tmp/in_target.d")],
//!     env: vec![("PATH".into(), "/usr/sbin:/usr/bin:/sbin:/bin".into())],
//!     cwd: "/".into(),
//!     chroot: true,
//!     tree_dev: false,
//! };
//! let status = run(&cfg, &["/bin/sh".into(), "-c".into(), "id -u".into()]).unwrap();
//! ```

pub mod binfmt;
mod direct;
pub mod enter;
mod fakeroot;
pub mod idmap;
pub mod mode;
pub mod plan;
pub mod preflight;
mod sys;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Mutex, OnceLock};

pub use idmap::{FlattenReason, IdMapping, IdRange};
pub use mode::{Chosen, Mode, ProcSource};
pub use plan::{Bind, FsOp};
pub use preflight::{HostEnv, PreflightError};

/// How to run a command in the sandbox.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// The target tree.
    pub root: PathBuf,
    /// Extra binds, e.g. the hooks directory read-only at /tmp/in_target.d.
    /// With `chroot` the destination is inside `root`; without, it is a
    /// host path that must exist.
    pub binds: Vec<Bind>,
    /// The command's whole environment (nothing is inherited).
    pub env: Vec<(String, String)>,
    /// Working directory (inside the target when `chroot`).
    pub cwd: PathBuf,
    /// false: run outside the chroot but inside the namespaces, as DIB's
    /// outside hooks (root.d, extra-data.d, cleanup.d) run with TARGET_ROOT.
    pub chroot: bool,
    /// Outside the chroot: the standard device nodes (null, zero, full,
    /// random, urandom, tty) in the tree's /dev while the command runs, as
    /// DIB's tree has them from debootstrap (bound from the host in the
    /// namespace sandbox, made with mknod(2) in chroot mode, left to
    /// fakeroot's own mknod in fakeroot mode). Capture ignores /dev.
    pub tree_dev: bool,
}

/// Sandbox failures. Each names what was attempted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SandboxError {
    #[error("the sandbox cannot run on this host: {0}")]
    Preflight(#[from] PreflightError),
    #[error("bad sandbox plan: {0}")]
    Plan(#[from] plan::PlanError),
    #[error("cannot start the sandbox helper {}: {source}", helper.display())]
    Spawn {
        helper: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// What the helper (or fakeroot) reported; it crosses a process
    /// boundary as text, in the status file.
    #[error("setting up the sandbox failed: {0}")]
    Setup(String),
    /// The memfd that carries the hook environment to the helper.
    #[error("setting up the sandbox failed: {0}")]
    EnvMemfd(#[source] sys::SysError),
    /// The helper's report of why it could not remove a tree.
    #[error("cannot remove {}: {detail}", path.display())]
    Remove { path: PathBuf, detail: String },
    /// Removing a tree with real ids, in this process.
    #[error("cannot remove {}: {source}", path.display())]
    RemoveDirect {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// [`configure`] was not called: a program that uses this module
    /// installs its settings first.
    #[error("the sandbox is not configured: call dibr::sandbox::configure(dibr::settings::sandbox()) first")]
    NotConfigured,
    #[error("sandbox status file {}: {source}", path.display())]
    StatusFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What the sandbox takes from the process environment, resolved once at
/// start (`crate::settings::sandbox`) and installed with [`configure`], so
/// that nothing below the command line reads the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxSettings {
    /// The `dibr` binary that serves as the helper (`dibr __sandbox`,
    /// `dibr __capture`).
    pub helper: PathBuf,
    /// Where the helpers' status files go (the temporary directory).
    pub scratch_dir: PathBuf,
    /// What preflight takes from the environment.
    pub host: HostEnv,
}

static SETTINGS: OnceLock<SandboxSettings> = OnceLock::new();

/// Install this process's sandbox settings, before the first sandbox runs.
///
/// The settings are process-wide rather than an argument of [`run`]
/// because the sandbox is: the mode is chosen once per process, and the
/// interrupt handler removes trees and kills sandboxes with no caller to
/// hand it anything. A second call is ignored (the mode may already have
/// been chosen with the first).
pub fn configure(settings: SandboxSettings) {
    let _ = SETTINGS.set(settings);
}

fn settings() -> Result<&'static SandboxSettings, SandboxError> {
    SETTINGS.get().ok_or(SandboxError::NotConfigured)
}

static CHOSEN: OnceLock<Result<Chosen, PreflightError>> = OnceLock::new();

/// The sandbox mode preflight chose (computed once per process, probing
/// the kernel with the helper). Print [`Chosen::line`] once per build.
pub fn chosen() -> Result<&'static Chosen, SandboxError> {
    let s = settings()?;
    CHOSEN
        .get_or_init(|| {
            let facts = preflight::HostFacts::current(&s.host);
            preflight::choose(&facts, &mut |m| run_probe(&s.helper, m))
        })
        .as_ref()
        .map_err(|e| SandboxError::from(e.clone()))
}

/// The id mapping of the namespace modes (`Root` for the namespace-free
/// modes, where ids are the real ones). Print [`IdMapping::warning`] if it
/// has one.
pub fn mapping() -> Result<IdMapping, SandboxError> {
    Ok(match &chosen()?.mode {
        Mode::Namespaces { map, .. } => map.clone(),
        Mode::Chroot | Mode::Fakeroot(_) => IdMapping::Root,
    })
}

fn run_probe(helper: &Path, m: &IdMapping) -> preflight::Probe {
    let args = enter::HelperArgs::new("probe", std::process::id(), m.clone());
    let out = Command::new(helper)
        .arg("__sandbox")
        .args(args.to_args())
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output();
    let fail = |step: String, errno| preflight::Probe::Failed { step, errno };
    match out {
        Err(e) => fail(
            format!("starting {}", helper.display()),
            e.raw_os_error().unwrap_or(libc::ENOENT),
        ),
        Ok(o) => {
            let text = String::from_utf8_lossy(&o.stdout);
            let line = text.lines().next().unwrap_or("");
            let f: Vec<&str> = line.split('\t').collect();
            match f.as_slice() {
                ["ok"] => preflight::Probe::Ok,
                ["ok", "bound"] => preflight::Probe::OkProcBound,
                ["fail", step, errno] => fail(step.to_string(), errno.parse().unwrap_or(0)),
                _ => fail(
                    format!("the helper ({}, output {line:?})", o.status),
                    libc::EIO,
                ),
            }
        }
    }
}

static RUNNING: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// Kill every running sandbox (for the caller's SIGINT/SIGTERM handler).
///
/// The pid 1 of each sandbox (the helper's child) gets SIGKILL; the kernel
/// then kills everything else in its pid namespace before the helper's
/// wait returns, the helper removes what it created and exits 137, and
/// [`run`] returns. If pid 1 does not exist yet, the helper itself is
/// killed (its children follow through PDEATHSIG).
pub fn kill_running() {
    if let Ok(list) = RUNNING.lock() {
        for &pid in list.iter() {
            let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
                .unwrap_or_default();
            let mut killed = false;
            for c in children
                .split_whitespace()
                .filter_map(|c| c.parse::<u32>().ok())
            {
                killed |= sys::kill(c, rustix::process::Signal::KILL).is_ok();
            }
            if !killed {
                let _ = sys::kill(pid, rustix::process::Signal::KILL);
            }
        }
    }
}

struct StatusFile(PathBuf);

/// Remove sandbox status files (`dibr-sandbox-PID-….status` in the
/// temporary directory) whose dibr process is gone.
pub fn remove_stale_status_files() {
    use std::os::unix::fs::MetadataExt;
    let me = rustix::process::getuid().as_raw();
    let Some(s) = SETTINGS.get() else {
        return; // nothing configured, so nothing of ours to look for
    };
    let Ok(rd) = std::fs::read_dir(&s.scratch_dir) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("dibr-sandbox-")
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let mine = e.metadata().is_ok_and(|m| m.uid() == me);
        if mine && name.ends_with(".status") && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

impl StatusFile {
    fn new() -> Result<Self, SandboxError> {
        use std::os::unix::fs::OpenOptionsExt;
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let p = settings()?.scratch_dir.join(format!(
            "dibr-sandbox-{}-{}-{nanos}.status",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&p)
            .map_err(|source| SandboxError::StatusFile {
                path: p.clone(),
                source,
            })?;
        Ok(StatusFile(p))
    }
    fn take(&self) -> String {
        std::fs::read_to_string(&self.0)
            .unwrap_or_default()
            .trim()
            .to_string()
    }
}

impl Drop for StatusFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn spawn_helper(args: &enter::HelperArgs) -> Result<ExitStatus, SandboxError> {
    let helper = settings()?.helper.clone();
    // The environment (DIB_DEV_USER_PASSWORD, tokens) goes through an
    // inherited memfd, not argv, which every local user can read in ps.
    let memfd =
        sys::inheritable_memfd(&enter::env_block(&args.env)).map_err(SandboxError::EnvMemfd)?;
    let mut args = args.clone();
    args.env.clear();
    args.env_fd = Some(std::os::fd::AsRawFd::as_raw_fd(&memfd));
    let mut cmd = Command::new(&helper);
    cmd.arg("__sandbox").args(args.to_args());
    // In a compact build the hooks' output goes to the build log.
    if let Some((out, err)) = crate::console::child_output() {
        cmd.stdout(out).stderr(err);
    }
    let child = cmd.spawn();
    drop(memfd);
    let mut child = child.map_err(|source| SandboxError::Spawn {
        helper: helper.clone(),
        source,
    })?;
    let pid = child.id();
    if let Ok(mut l) = RUNNING.lock() {
        l.push(pid);
    }
    let r = child.wait();
    if let Ok(mut l) = RUNNING.lock() {
        l.retain(|&p| p != pid);
    }
    r.map_err(|source| SandboxError::Spawn { helper, source })
}

/// Run `argv` in the sandbox with stdio inherited; returns its exit status
/// (a command killed by signal N shows as exit code 128+N). Blocks until
/// the command has exited, and every process it started is gone.
pub fn run(cfg: &SandboxConfig, argv: &[OsString]) -> Result<ExitStatus, SandboxError> {
    let chosen = chosen()?;
    // Validate the plan here, where errors are easy to report.
    if cfg.chroot {
        plan::chroot_plan(&cfg.binds)?;
    } else {
        plan::outside_plan(&cfg.binds, None)?;
    }
    if argv.is_empty() {
        return Err(SandboxError::Setup("no command given".into()));
    }
    let mut env: Vec<(OsString, OsString)> =
        cfg.env.iter().map(|(k, v)| (k.into(), v.into())).collect();
    // Elements that must act differently without namespaces (debootstrap's
    // mmdebstrap mode) read the mode here.
    env.push(("DIBR_SANDBOX_MODE".into(), chosen.name().into()));
    let (map, proc_bind, direct) = match &chosen.mode {
        Mode::Namespaces { map, proc } => (map.clone(), *proc == ProcSource::Bound, None),
        Mode::Chroot => (IdMapping::Root, false, Some(enter::Direct::Chroot)),
        Mode::Fakeroot(tools) => {
            env.extend(fakeroot::hook_env(tools)?);
            let d = enter::Direct::Fakeroot {
                fakechroot: tools.fakechroot.clone(),
                chroot: tools.chroot.clone(),
            };
            (IdMapping::Root, false, Some(d))
        }
    };
    let status = StatusFile::new()?;
    let args = enter::HelperArgs {
        root: std::path::absolute(&cfg.root).unwrap_or_else(|_| cfg.root.clone()),
        cwd: cfg.cwd.clone(),
        chroot: cfg.chroot,
        binds: cfg.binds.clone(),
        env,
        status_file: Some(status.0.clone()),
        argv: argv.to_vec(),
        proc_bind,
        direct,
        tree_dev: cfg.tree_dev && !cfg.chroot,
        ..enter::HelperArgs::new("run", std::process::id(), map)
    };
    let st = spawn_helper(&args)?;
    let msg = status.take();
    if !msg.is_empty() {
        return Err(SandboxError::Setup(msg));
    }
    Ok(st)
}

/// The command that streams the tree at `target` into the archive `out`
/// (`dibr __capture`), run with [`run`] outside the chroot. In fakeroot
/// mode the owners, devices and capabilities live in `faked`, which only
/// programs using libc see: GNU tar reads the tree through it and dibr
/// re-encodes that stream as its own capture.
pub fn capture_argv(target: &Path, out: &Path) -> Result<Vec<OsString>, SandboxError> {
    let dibr: OsString = settings()?.helper.clone().into();
    Ok(match &chosen()?.mode {
        Mode::Fakeroot(_) => {
            let owner = format!(
                "{}:{}",
                rustix::process::getuid().as_raw(),
                rustix::process::getgid().as_raw()
            );
            vec![
                "/bin/bash".into(),
                "-c".into(),
                "set -o pipefail; tar --numeric-owner --xattrs --xattrs-include='*' --sort=name \
                 --format=pax -C \"$1\" -cf - . | \"$0\" __capture --from-tar - \
                 --real-owner \"$3\" \"$1\" \"$2\""
                    .into(),
                dibr,
                target.into(),
                out.into(),
                owner.into(),
            ]
        }
        _ => vec![dibr, "__capture".into(), target.into(), out.into()],
    })
}

/// Stop what the sandbox keeps running between hooks (fakeroot's daemon).
/// Called at the end of a build and from the interrupt handler.
pub fn shutdown() {
    fakeroot::stop();
}

/// Remove a work directory that may contain files owned by subordinate ids
/// (which the invoking user cannot delete directly), by deleting it from
/// inside a user namespace with the same mapping.
pub fn remove_tree(path: &Path) -> Result<(), SandboxError> {
    match std::fs::remove_dir_all(path) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(_) => {}
    }
    let map = mapping()?;
    if !matches!(map, IdMapping::Subids { .. } | IdMapping::SingleUid { .. }) {
        // Real ids (root, an identity map, the namespace-free modes): the
        // files are ours; a hook may have left directories without write
        // permission, which root ignores and an ordinary user must undo.
        return direct::remove_all(path).map_err(|source| SandboxError::RemoveDirect {
            path: path.into(),
            source,
        });
    }
    let status = StatusFile::new()?;
    let args = enter::HelperArgs {
        root: std::path::absolute(path).unwrap_or_else(|_| path.into()),
        status_file: Some(status.0.clone()),
        ..enter::HelperArgs::new("remove", std::process::id(), map)
    };
    let st = spawn_helper(&args)?;
    let msg = status.take();
    if !st.success() || !msg.is_empty() {
        return Err(SandboxError::Remove {
            path: path.into(),
            detail: if msg.is_empty() {
                format!("helper {st}")
            } else {
                msg
            },
        });
    }
    Ok(())
}
