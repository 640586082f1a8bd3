//! Which mechanism runs the hooks, chosen once per process from what the
//! environment allows, best first:
//!
//! 1. **namespaces**: user + mount + pid namespaces with a fresh /proc
//!    (`userns` as an ordinary user with subordinate ids, `root` as real
//!    root, `root-userns` as root without CAP_SYS_ADMIN — Podman's default
//!    — with an identity map of the container's ids);
//! 2. the same with the container's /proc bound recursively, where the
//!    kernel refuses a fresh procfs because the container masks /proc paths
//!    (its "fully visible" rule for proc mounts; mkosi binds /proc too);
//! 3. **chroot**: root without CAP_SYS_ADMIN where seccomp refuses user
//!    namespaces (Docker's and containerd's default profiles): a plain
//!    chroot(2) with real chown, mknod and setcap, no /proc;
//! 4. **fakeroot**: an ordinary user where no namespace can be made: hooks
//!    run under fakeroot(1) and fakechroot(1) (LD_PRELOAD, as mmdebstrap's
//!    fakechroot mode), one `faked` per build records owners, modes,
//!    devices and capabilities, and the capture reads them back through it.
//!
//! The choice, and why the better mechanisms were not available, is one
//! log line ([`Chosen::line`]); docs/containers.md quotes these lines.

use std::fmt;
use std::path::{Path, PathBuf};

use super::idmap::IdMapping;

/// Where the sandbox's /proc comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcSource {
    /// A new procfs for the sandbox's pid namespace.
    Fresh,
    /// A recursive bind of this process's /proc (the container's).
    Bound,
}

/// The programs fakeroot mode needs (Debian's `fakeroot` and `fakechroot`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakerootTools {
    /// `faked-sysv`: the daemon that holds the faked ownership.
    pub faked: PathBuf,
    /// `libfakeroot-sysv.so`, preloaded into every hook.
    pub lib: PathBuf,
    /// The `fakechroot` wrapper, for hooks in the target.
    pub fakechroot: PathBuf,
    /// coreutils' `chroot`, which fakechroot intercepts.
    pub chroot: PathBuf,
}

impl FakerootTools {
    /// Look the tools up below `root` (`/` on the real machine).
    pub fn find(root: &Path, path_dirs: &[PathBuf]) -> Option<FakerootTools> {
        let exe = |name: &str| {
            path_dirs.iter().find_map(|d| {
                let p = root.join(d.strip_prefix("/").unwrap_or(d)).join(name);
                p.is_file().then_some(p)
            })
        };
        let mut lib_dirs = multiarch_dirs(root);
        lib_dirs.extend(["usr/lib".to_string(), "usr/lib64".to_string()]);
        let lib = lib_dirs
            .iter()
            .map(|d| root.join(d).join("libfakeroot/libfakeroot-sysv.so"))
            .find(|p| p.is_file())?;
        Some(FakerootTools {
            faked: exe("faked-sysv")?,
            lib,
            fakechroot: exe("fakechroot")?,
            chroot: exe("chroot")?,
        })
    }
}

/// `usr/lib/<triplet>` directories present below `root`.
fn multiarch_dirs(root: &Path) -> Vec<String> {
    std::fs::read_dir(root.join("usr/lib"))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with("-linux-gnu"))
                .map(|n| format!("usr/lib/{n}"))
                .collect()
        })
        .unwrap_or_default()
}

/// How hooks run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    Namespaces { map: IdMapping, proc: ProcSource },
    Chroot,
    Fakeroot(FakerootTools),
}

/// The container runtime or CI system dibr runs in, for naming the fix
/// that gets the full sandbox there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Runtime {
    Kubernetes,
    GitLab,
    GitHubContainer,
    Podman,
    Docker,
    OtherContainer,
    #[default]
    Host,
}

impl Runtime {
    /// The environment variables [`Runtime::detect`] looks at, so the
    /// caller can read just these (`crate::settings::sandbox`).
    pub const ENV_VARS: &'static [&'static str] =
        &["KUBERNETES_SERVICE_HOST", "GITLAB_CI", "GITHUB_ACTIONS"];

    /// From the markers runtimes leave: `KUBERNETES_SERVICE_HOST` (every
    /// pod), `GITLAB_CI`/`GITHUB_ACTIONS` (set by the runners),
    /// `/run/.containerenv` (Podman), `/.dockerenv` (Docker), and
    /// `container=` in pid 1's environment (systemd's container interface).
    pub fn detect(
        root: &Path,
        env: &dyn Fn(&str) -> Option<String>,
        in_container: bool,
    ) -> Runtime {
        let set = |k: &str| env(k).is_some_and(|v| !v.is_empty());
        if set("KUBERNETES_SERVICE_HOST") {
            Runtime::Kubernetes
        } else if in_container && set("GITLAB_CI") {
            Runtime::GitLab
        } else if in_container && set("GITHUB_ACTIONS") {
            Runtime::GitHubContainer
        } else if root.join("run/.containerenv").exists() {
            Runtime::Podman
        } else if root.join(".dockerenv").exists() {
            Runtime::Docker
        } else if in_container {
            Runtime::OtherContainer
        } else {
            Runtime::Host
        }
    }

    /// What lifts both the seccomp refusal of user namespaces and the
    /// /proc masks, in this runtime's own terms.
    pub fn full_sandbox_fix(self) -> &'static str {
        match self {
            Runtime::Docker => {
                "docker run --security-opt seccomp=unconfined --security-opt systempaths=unconfined"
            }
            Runtime::Podman => "podman run --security-opt unmask=ALL",
            Runtime::Kubernetes => {
                "in the pod spec, securityContext.seccompProfile.type: Unconfined and \
                 securityContext.procMount: Unmasked (with hostUsers: false)"
            }
            Runtime::GitLab => {
                "in the runner's config.toml, [runners.docker] security_opt = \
                 [\"seccomp=unconfined\", \"systempaths=unconfined\"] (a runner administrator's setting)"
            }
            Runtime::GitHubContainer => {
                "in the workflow, container: options: --security-opt seccomp=unconfined \
                 --security-opt systempaths=unconfined"
            }
            Runtime::OtherContainer => {
                "run the container without a seccomp filter and with /proc unmasked, or run dibr \
                 on the host"
            }
            Runtime::Host => "allow unprivileged user namespaces (docs/troubleshooting.md)",
        }
    }

    /// What unmasks /proc (so a fresh procfs can be mounted).
    pub fn proc_fix(self) -> &'static str {
        match self {
            Runtime::Docker => "docker run --security-opt systempaths=unconfined",
            Runtime::Podman => "podman run --security-opt unmask=ALL",
            Runtime::Kubernetes => "securityContext.procMount: Unmasked (with hostUsers: false)",
            Runtime::GitLab => {
                "security_opt = [\"systempaths=unconfined\"] in the runner's config.toml"
            }
            Runtime::GitHubContainer => "container: options: --security-opt systempaths=unconfined",
            Runtime::OtherContainer | Runtime::Host => "unmask /proc in the container's settings",
        }
    }
}

/// The chosen mode and the facts that explain it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chosen {
    pub mode: Mode,
    pub runtime: Runtime,
    /// Why the namespace modes could not be used (for the fallbacks).
    pub why_not_namespaces: Option<String>,
}

impl Chosen {
    /// The mode's short name: `userns`, `root`, `root-userns`, `chroot`,
    /// `fakeroot` (also the values `DIBR_SANDBOX` accepts).
    pub fn name(&self) -> &'static str {
        match &self.mode {
            Mode::Namespaces { map, .. } => match map {
                IdMapping::Root => "root",
                IdMapping::Identity { .. } => "root-userns",
                _ => "userns",
            },
            Mode::Chroot => "chroot",
            Mode::Fakeroot(_) => "fakeroot",
        }
    }

    /// The one log line: mode, mechanism, why not better, limits, fix.
    pub fn line(&self) -> String {
        format!("dibr: sandbox: {} ({})", self.name(), self)
    }
}

impl fmt::Display for Chosen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let why = self
            .why_not_namespaces
            .as_deref()
            .unwrap_or("no user namespace can be made");
        match &self.mode {
            Mode::Namespaces { map, proc } => {
                match map {
                    IdMapping::Root => write!(f, "mount and pid namespaces, as root with CAP_SYS_ADMIN")?,
                    IdMapping::Identity { .. } => write!(
                        f,
                        "user, mount and pid namespaces with an identity map of this container's ids, \
                         because root here has no CAP_SYS_ADMIN"
                    )?,
                    IdMapping::Subids { .. } => write!(
                        f,
                        "user, mount and pid namespaces; subordinate ids mapped by newuidmap"
                    )?,
                    IdMapping::SingleUid { .. } => write!(
                        f,
                        "user, mount and pid namespaces; only your own uid is mapped, so ownership \
                         is flattened to root"
                    )?,
                }
                if *proc == ProcSource::Bound {
                    write!(
                        f,
                        "; /proc is the container's, bound, because a fresh /proc is refused where \
                         the container masks /proc paths: hooks see the container's processes. \
                         For a fresh /proc: {}",
                        self.runtime.proc_fix()
                    )?;
                }
                Ok(())
            }
            Mode::Chroot => write!(
                f,
                "root without CAP_SYS_ADMIN, and {why}: hooks run in a plain chroot, without /proc \
                 and without isolation from the container; processes they leave are killed after \
                 each phase. For the full sandbox: {}",
                self.runtime.full_sandbox_fix()
            ),
            Mode::Fakeroot(_) => write!(
                f,
                "not root, and {why}: hooks run under fakeroot and fakechroot (LD_PRELOAD: static \
                 binaries bypass them), without /proc and without isolation from the container; \
                 processes they leave are killed after each phase. For the full sandbox: {}",
                self.runtime.full_sandbox_fix()
            ),
        }
    }
}

/// The reason a namespace probe failed, in words: the step, its error,
/// and the cause when it is certain (a seccomp filter is only named when
/// /proc/self/status says one is active).
pub fn refusal_reason(step: &str, errno: i32, seccomp_filter: bool) -> String {
    let e = std::io::Error::from_raw_os_error(errno);
    let e = e.to_string();
    let e = e.split(" (os error").next().unwrap_or(&e).to_string();
    if seccomp_filter && step.starts_with("unshare") {
        format!("{step} is refused ({e}) by this container's seccomp filter")
    } else if step.starts_with("mount") {
        format!("{step} is refused ({e}) even for a bind mount")
    } else {
        format!("{step} is refused ({e})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chosen(mode: Mode, runtime: Runtime, why: Option<&str>) -> Chosen {
        Chosen {
            mode,
            runtime,
            why_not_namespaces: why.map(str::to_string),
        }
    }

    #[test]
    fn lines_name_mode_cause_and_fix() {
        let c = chosen(
            Mode::Chroot,
            Runtime::Docker,
            Some(&refusal_reason("unshare(CLONE_NEWUSER)", 1, true)),
        );
        let l = c.line();
        assert!(l.starts_with("dibr: sandbox: chroot ("), "{l}");
        assert!(l.contains("seccomp filter"), "{l}");
        assert!(l.contains("--security-opt seccomp=unconfined"), "{l}");
        // Never blame seccomp when there is no filter.
        let r = refusal_reason("unshare(CLONE_NEWUSER)", 1, false);
        assert!(!r.contains("seccomp"), "{r}");
        let c = chosen(
            Mode::Namespaces {
                map: IdMapping::Identity {
                    uids: vec![],
                    gids: vec![],
                },
                proc: ProcSource::Bound,
            },
            Runtime::Podman,
            None,
        );
        assert_eq!(c.name(), "root-userns");
        assert!(
            c.line().contains("--security-opt unmask=ALL"),
            "{}",
            c.line()
        );
    }

    #[test]
    fn runtime_markers() {
        let d = tempfile::tempdir().unwrap();
        let none = |_: &str| None;
        assert_eq!(Runtime::detect(d.path(), &none, false), Runtime::Host);
        std::fs::write(d.path().join(".dockerenv"), "").unwrap();
        assert_eq!(Runtime::detect(d.path(), &none, true), Runtime::Docker);
        let gl = |k: &str| (k == "GITLAB_CI").then(|| "true".to_string());
        assert_eq!(Runtime::detect(d.path(), &gl, true), Runtime::GitLab);
        let k8s = |k: &str| (k == "KUBERNETES_SERVICE_HOST").then(|| "10.0.0.1".to_string());
        assert_eq!(Runtime::detect(d.path(), &k8s, true), Runtime::Kubernetes);
    }
}
