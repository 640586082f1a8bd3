//! Decide, before any work, whether and how the sandbox can run, and
//! explain each refusal with its cause and its fix.
//!
//! The decision is a pure function of [`HostFacts`] (sysctls, subuid files,
//! helper binaries — read from a root directory so tests can fake them) and
//! of the outcome of one probe (a helper that really unshares).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use super::idmap::{own_ranges, parse_subid, user_name, FlattenReason, IdMapping, IdRange};
use super::mode::{refusal_reason, Chosen, FakerootTools, Mode, ProcSource, Runtime};

/// What the host looks like, as far as the sandbox cares.
#[derive(Debug, Clone, Default)]
pub struct HostFacts {
    pub euid: u32,
    pub uid: u32,
    pub gid: u32,
    pub user: Option<String>,
    /// `kernel.apparmor_restrict_unprivileged_userns` (Ubuntu ≥ 23.10).
    pub apparmor_restrict_userns: Option<u64>,
    /// `user.max_user_namespaces`.
    pub max_user_namespaces: Option<u64>,
    /// `kernel.unprivileged_userns_clone` (Debian < 11 patch).
    pub unprivileged_userns_clone: Option<u64>,
    pub newuidmap: Option<PathBuf>,
    pub newgidmap: Option<PathBuf>,
    pub subuid: Option<IdRange>,
    pub subgid: Option<IdRange>,
    /// Running in a container (/.dockerenv, /run/.containerenv, or
    /// `container=` in pid 1's environment as systemd-nspawn/podman set).
    pub in_container: bool,
    /// A seccomp filter is active (`Seccomp: 2` in /proc/self/status), as
    /// Docker's and Podman's default profiles install one.
    pub seccomp_filter: bool,
    /// AppArmor is enabled (/sys/module/apparmor/parameters/enabled = Y);
    /// None when the module is absent.
    pub apparmor_enabled: Option<bool>,
    /// `DIBR_USERNS=single`.
    pub force_single: bool,
    /// Effective capabilities (`CapEff:` of /proc/self/status).
    pub cap_eff: u64,
    /// This process's `/proc/self/uid_map` and `gid_map` texts.
    pub uid_map: String,
    pub gid_map: String,
    pub runtime: Runtime,
    /// fakeroot and fakechroot, when installed.
    pub fakeroot: Option<FakerootTools>,
    /// `DIBR_SANDBOX`: a mode asked for by name.
    pub forced: Option<String>,
}

/// Capability numbers (linux/capability.h).
const CAP_SYS_CHROOT: u32 = 18;
const CAP_SYS_ADMIN: u32 = 21;

impl HostFacts {
    fn has_cap(&self, cap: u32) -> bool {
        self.cap_eff & (1 << cap) != 0
    }
}

/// `CapEff:` of a /proc/PID/status text.
fn cap_eff(status: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0)
}

fn read_num(p: &Path) -> Option<u64> {
    std::fs::read_to_string(p).ok()?.trim().parse().ok()
}

/// `Seccomp:` of a /proc/PID/status text: 2 is filter mode.
fn seccomp_filter(status: &str) -> bool {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Seccomp:"))
        .map(|v| v.trim() == "2")
        .unwrap_or(false)
}

/// The AppArmor profile dibr ships, and how to install it.
pub const APPARMOR_PROFILE_FIX: &str = "install the AppArmor profile dibr ships \
    (contrib/apparmor/dibr: 'userns,' for dibr in /usr/bin, /usr/local/bin, ~/.cargo/bin or \
    a cargo target/release directory; edit its path if yours differs): \
    sudo install -m 644 contrib/apparmor/dibr /etc/apparmor.d/dibr && \
    sudo apparmor_parser -r /etc/apparmor.d/dibr";

/// The sysctl that lifts Ubuntu's restriction.
pub const APPARMOR_SYSCTL_FIX: &str =
    "sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0 \
    (persist it: echo kernel.apparmor_restrict_unprivileged_userns=0 | \
    sudo tee /etc/sysctl.d/60-dibr-userns.conf)";

fn find_exe(root: &Path, dirs: &[PathBuf], name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    dirs.iter().find_map(|d| {
        let rel = d.strip_prefix("/").unwrap_or(d);
        let p = root.join(rel).join(name);
        let m = std::fs::metadata(&p).ok()?;
        (m.is_file() && m.permissions().mode() & 0o111 != 0).then_some(p)
    })
}

impl HostFacts {
    /// Read the facts below `root` (`/` for the real host) for the given
    /// user; `path_dirs` are searched for newuidmap/newgidmap.
    pub fn gather(root: &Path, euid: u32, uid: u32, gid: u32, path_dirs: &[PathBuf]) -> Self {
        let user = user_name(&root.join("etc/passwd"), uid);
        let sub = |f: &str| {
            std::fs::read_to_string(root.join(f))
                .ok()
                .and_then(|t| parse_subid(&t, user.as_deref(), uid))
        };
        let status = std::fs::read_to_string(root.join("proc/self/status")).unwrap_or_default();
        let in_container = root.join(".dockerenv").exists()
            || root.join("run/.containerenv").exists()
            || std::fs::read(root.join("proc/1/environ"))
                .map(|e| e.split(|b| *b == 0).any(|v| v.starts_with(b"container=")))
                .unwrap_or(false);
        HostFacts {
            euid,
            uid,
            gid,
            cap_eff: cap_eff(&status),
            uid_map: std::fs::read_to_string(root.join("proc/self/uid_map")).unwrap_or_default(),
            gid_map: std::fs::read_to_string(root.join("proc/self/gid_map")).unwrap_or_default(),
            runtime: Runtime::detect(root, &|_| None, in_container),
            fakeroot: FakerootTools::find(root, path_dirs),
            forced: None,
            apparmor_restrict_userns: read_num(
                &root.join("proc/sys/kernel/apparmor_restrict_unprivileged_userns"),
            ),
            max_user_namespaces: read_num(&root.join("proc/sys/user/max_user_namespaces")),
            unprivileged_userns_clone: read_num(
                &root.join("proc/sys/kernel/unprivileged_userns_clone"),
            ),
            newuidmap: find_exe(root, path_dirs, "newuidmap"),
            newgidmap: find_exe(root, path_dirs, "newgidmap"),
            subuid: sub("etc/subuid"),
            subgid: sub("etc/subgid"),
            in_container,
            seccomp_filter: seccomp_filter(&status),
            apparmor_enabled: std::fs::read_to_string(
                root.join("sys/module/apparmor/parameters/enabled"),
            )
            .ok()
            .map(|v| v.trim() == "Y"),
            user,
            force_single: false,
        }
    }

    /// The real host, for the current process, with what the environment
    /// says of it (`env`, resolved by the caller).
    pub fn current(env: &HostEnv) -> Self {
        let mut f = HostFacts::gather(
            Path::new("/"),
            rustix::process::geteuid().as_raw(),
            rustix::process::getuid().as_raw(),
            rustix::process::getgid().as_raw(),
            &env.path_dirs,
        );
        f.force_single = env.force_single;
        f.forced = env.forced.clone();
        let var = |k: &str| env.runtime_vars.get(k).cloned();
        f.runtime = Runtime::detect(Path::new("/"), &var, f.in_container);
        f
    }
}

/// What preflight takes from the environment, resolved once by the caller
/// (`crate::settings::sandbox`) so that this module reads only the host's
/// files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostEnv {
    /// Where newuidmap, newgidmap, fakeroot and fakechroot are looked for:
    /// `PATH`, then the standard system directories.
    pub path_dirs: Vec<PathBuf>,
    /// `DIBR_USERNS=single`: map one uid even when subordinate ids exist.
    pub force_single: bool,
    /// `DIBR_SANDBOX`: a mode asked for by name (unset or empty: none).
    pub forced: Option<String>,
    /// The variables of [`Runtime::ENV_VARS`] that are set.
    pub runtime_vars: BTreeMap<String, String>,
}

/// Result of really trying to enter namespaces (see `enter::probe`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// Namespaces and a fresh /proc work.
    Ok,
    /// Namespaces work; a fresh /proc is refused but a bind of /proc works.
    OkProcBound,
    /// The step that failed (e.g. `unshare(CLONE_NEWUSER)`), and its errno.
    Failed { step: String, errno: i32 },
}

/// Why the sandbox cannot run here. Every message names cause and fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PreflightError {
    AppArmorRestricted {
        step: String,
    },
    MaxUserNamespacesZero,
    UnprivilegedUsernsCloneOff,
    UnshareDenied {
        step: String,
        errno: i32,
        in_container: bool,
        /// A seccomp filter is active.
        seccomp: bool,
        /// The host's AppArmor restriction is on too (rootless only).
        apparmor_restricted: bool,
        as_root: bool,
        runtime: Runtime,
    },
    NamespaceLimit {
        step: String,
    },
    HelperFailed {
        detail: String,
    },
    /// No namespace sandbox, and the fallback mode is not available either.
    NoFallback {
        cause: Box<PreflightError>,
        fallback: &'static str,
        missing: String,
    },
    /// `DIBR_SANDBOX` named a mode that cannot run here.
    Forced {
        value: String,
        detail: String,
    },
}

impl fmt::Display for PreflightError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use PreflightError::*;
        match self {
            AppArmorRestricted { step } => write!(
                f,
                "unprivileged user namespaces are restricted by AppArmor \
                 (kernel.apparmor_restrict_unprivileged_userns=1, the Ubuntu 24.04 default; {step} was refused). \
                 Fix: {APPARMOR_SYSCTL_FIX}; or {APPARMOR_PROFILE_FIX}. \
                 See docs/troubleshooting.md"
            ),
            MaxUserNamespacesZero => write!(
                f,
                "user namespaces are disabled (user.max_user_namespaces=0). \
                 Fix: sudo sysctl -w user.max_user_namespaces=15000"
            ),
            UnprivilegedUsernsCloneOff => write!(
                f,
                "unprivileged user namespaces are disabled (kernel.unprivileged_userns_clone=0, \
                 a Debian kernel patch). Fix: sudo sysctl -w kernel.unprivileged_userns_clone=1"
            ),
            UnshareDenied {
                step,
                errno,
                in_container,
                seccomp,
                apparmor_restricted,
                as_root,
                runtime,
            } => {
                let e = std::io::Error::from_raw_os_error(*errno);
                write!(f, "{step} was refused ({e}). ")?;
                if *in_container || *seccomp {
                    let what = if *in_container {
                        "This is a container"
                    } else {
                        "A seccomp filter is active"
                    };
                    let cause = if *seccomp {
                        "its seccomp filter refuses user, mount and pid namespaces to processes \
                         without CAP_SYS_ADMIN (the default profiles of Docker, containerd and \
                         Kubernetes' RuntimeDefault do)"
                    } else {
                        "seccomp is off here (Seccomp: 0), so the container's settings or a security \
                         module refused it, not seccomp"
                    };
                    write!(
                        f,
                        "{what}{}: {cause}. Fix: {}; or run dibr in a VM. \
                         dibr mkfs and dibr assemble need no namespaces and work here",
                        if *in_container && *seccomp {
                            " with a seccomp filter"
                        } else {
                            ""
                        },
                        runtime.full_sandbox_fix()
                    )?;
                    if *apparmor_restricted {
                        write!(
                            f,
                            ". The host also restricts unprivileged user namespaces through AppArmor \
                             (kernel.apparmor_restrict_unprivileged_userns=1): on the host, \
                             {APPARMOR_SYSCTL_FIX}"
                        )?;
                    }
                    write!(f, ". See docs/troubleshooting.md")
                } else if *as_root {
                    write!(
                        f,
                        "dibr runs as root but lacks CAP_SYS_ADMIN. Fix: run dibr as an ordinary \
                         user (it uses a user namespace), or grant CAP_SYS_ADMIN"
                    )
                } else {
                    write!(
                        f,
                        "The kernel or a security module (seccomp, SELinux, a hardened kernel) forbids \
                         unprivileged namespaces. Fix: allow unprivileged user namespaces \
                         (sysctl user.max_user_namespaces, kernel.unprivileged_userns_clone, \
                         kernel.apparmor_restrict_unprivileged_userns), or run in a VM"
                    )
                }
            }
            NamespaceLimit { step } => write!(
                f,
                "{step} failed with ENOSPC: the user namespace limit is exhausted \
                 (user.max_user_namespaces). Fix: sudo sysctl -w user.max_user_namespaces=15000"
            ),
            HelperFailed { detail } => write!(f, "the sandbox helper failed to start: {detail}"),
            NoFallback {
                cause,
                fallback,
                missing,
            } => write!(
                f,
                "{cause}. dibr's {fallback} mode, which works without namespaces, cannot run \
                 either: {missing}"
            ),
            Forced { value, detail } => write!(
                f,
                "DIBR_SANDBOX={value}: {detail} (values: userns, root, root-userns, chroot, \
                 fakeroot; unset it to let dibr choose)"
            ),
        }
    }
}

/// The static part of the decision: refusals that need no probe, and the
/// mapping to use.
pub fn decide(facts: &HostFacts, probe: &Probe) -> Result<IdMapping, PreflightError> {
    const EPERM: i32 = 1;
    const EACCES: i32 = 13;
    const ENOSPC: i32 = 28;
    let rootless = facts.euid != 0;
    if rootless {
        if facts.unprivileged_userns_clone == Some(0) {
            return Err(PreflightError::UnprivilegedUsernsCloneOff);
        }
        if facts.max_user_namespaces == Some(0) {
            return Err(PreflightError::MaxUserNamespacesZero);
        }
    }
    if let Probe::Failed { step, errno } = probe {
        let apparmor = rootless
            && facts.apparmor_restrict_userns == Some(1)
            && facts.apparmor_enabled != Some(false);
        // In a container with a seccomp filter, the filter refuses first;
        // the host's AppArmor restriction is named as well.
        let container = facts.in_container && facts.seccomp_filter;
        if apparmor && !container {
            return Err(PreflightError::AppArmorRestricted { step: step.clone() });
        }
        if *errno == ENOSPC {
            return Err(PreflightError::NamespaceLimit { step: step.clone() });
        }
        if *errno == EPERM || *errno == EACCES {
            return Err(PreflightError::UnshareDenied {
                step: step.clone(),
                errno: *errno,
                in_container: facts.in_container,
                seccomp: facts.seccomp_filter,
                apparmor_restricted: apparmor,
                as_root: !rootless,
                runtime: facts.runtime,
            });
        }
        return Err(PreflightError::HelperFailed {
            detail: format!("{step}: {}", std::io::Error::from_raw_os_error(*errno)),
        });
    }
    if !rootless {
        return Ok(IdMapping::Root);
    }
    let (uid, gid) = (facts.uid, facts.gid);
    let single = |reason| Ok(IdMapping::SingleUid { uid, gid, reason });
    if facts.force_single {
        return single(FlattenReason::Requested);
    }
    if facts.newuidmap.is_none() {
        return single(FlattenReason::NoUidmapTools {
            missing: "newuidmap",
        });
    }
    if facts.newgidmap.is_none() {
        return single(FlattenReason::NoUidmapTools {
            missing: "newgidmap",
        });
    }
    let user = facts.user.clone().unwrap_or_else(|| uid.to_string());
    let (subuid, subgid) = match (facts.subuid, facts.subgid) {
        (None, _) => {
            return single(FlattenReason::NoSubidRange {
                user,
                file: "/etc/subuid",
            })
        }
        (_, None) => {
            return single(FlattenReason::NoSubidRange {
                user,
                file: "/etc/subgid",
            })
        }
        (Some(u), Some(g)) => (u, g),
    };
    for (r, file) in [(subuid, "/etc/subuid"), (subgid, "/etc/subgid")] {
        if r.count < 2 {
            return single(FlattenReason::RangeTooSmall { user, file });
        }
    }
    Ok(IdMapping::Subids {
        uid,
        gid,
        subuid,
        subgid,
    })
}

/// Choose the sandbox mode (see [`super::mode`]): the namespace modes when
/// `probe` (a helper that really enters them) succeeds, else chroot mode
/// for root and fakeroot mode for an ordinary user. `DIBR_SANDBOX` picks a
/// mode by name instead.
pub fn choose(
    facts: &HostFacts,
    probe: &mut dyn FnMut(&IdMapping) -> Probe,
) -> Result<Chosen, PreflightError> {
    let chosen = |mode, why| Chosen {
        mode,
        runtime: facts.runtime,
        why_not_namespaces: why,
    };
    if let Some(name) = &facts.forced {
        return forced(facts, name, probe).map(|m| {
            let why = (!matches!(m, Mode::Namespaces { .. }))
                .then(|| format!("DIBR_SANDBOX={name} asks for it"));
            chosen(m, why)
        });
    }
    match namespaces(facts, probe) {
        Ok(m) => Ok(chosen(m, None)),
        Err((cause, why)) => match fallback(facts) {
            Ok(m) => Ok(chosen(m, Some(why))),
            Err((fallback, missing)) => Err(PreflightError::NoFallback {
                cause: Box::new(cause),
                fallback,
                missing,
            }),
        },
    }
}

/// The mode `DIBR_SANDBOX` names, if it can run here.
fn forced(
    facts: &HostFacts,
    name: &str,
    probe: &mut dyn FnMut(&IdMapping) -> Probe,
) -> Result<Mode, PreflightError> {
    let refuse = |detail: String| PreflightError::Forced {
        value: name.to_string(),
        detail,
    };
    match name {
        "userns" | "root" | "root-userns" => namespaces(facts, probe).map_err(|(e, _)| e),
        "chroot" if facts.euid == 0 && facts.has_cap(CAP_SYS_CHROOT) => Ok(Mode::Chroot),
        "chroot" => Err(refuse("chroot mode needs root with CAP_SYS_CHROOT".into())),
        "fakeroot" => facts.fakeroot.clone().map(Mode::Fakeroot).ok_or_else(|| {
            refuse(
                "fakeroot mode needs fakeroot and fakechroot: apt-get install fakeroot fakechroot"
                    .into(),
            )
        }),
        other => Err(refuse(format!("unknown sandbox mode {other:?}"))),
    }
}

/// The namespace modes, or why none works: (the refusal, in words).
fn namespaces(
    facts: &HostFacts,
    probe: &mut dyn FnMut(&IdMapping) -> Probe,
) -> Result<Mode, (PreflightError, String)> {
    let mut attempt = |map: IdMapping| -> Result<Mode, (PreflightError, String)> {
        let p = probe(&map);
        let proc = match &p {
            Probe::Ok => ProcSource::Fresh,
            Probe::OkProcBound => ProcSource::Bound,
            Probe::Failed { step, errno } => {
                let why = refusal_reason(step, *errno, facts.seccomp_filter);
                return Err((
                    decide(facts, &p)
                        .err()
                        .unwrap_or(PreflightError::HelperFailed {
                            detail: why.clone(),
                        }),
                    why,
                ));
            }
        };
        Ok(Mode::Namespaces { map, proc })
    };
    if facts.euid == 0 {
        if facts.has_cap(CAP_SYS_ADMIN) {
            if let Ok(m) = attempt(IdMapping::Root) {
                return Ok(m);
            }
        }
        return attempt(IdMapping::Identity {
            uids: own_ranges(&facts.uid_map),
            gids: own_ranges(&facts.gid_map),
        });
    }
    let map = decide(facts, &Probe::Ok).map_err(|e| {
        let why = e.to_string();
        (e, why)
    })?;
    match attempt(map.clone()) {
        Err((_, why)) if why.starts_with("newuidmap") => {
            // The helpers refused (setuid helpers fail inside containers):
            // fakeroot keeps ownership; else fall back to a single uid.
            let why = format!(
                "newuidmap/newgidmap cannot write the subordinate id map here ({}; setuid helpers \
                 fail inside containers: give them file capabilities instead, as root: setcap \
                 cap_setuid=ep /usr/bin/newuidmap; setcap cap_setgid=ep /usr/bin/newgidmap)",
                why
            );
            if facts.fakeroot.is_some() {
                return Err((
                    PreflightError::HelperFailed {
                        detail: why.clone(),
                    },
                    why,
                ));
            }
            let (uid, gid) = (facts.uid, facts.gid);
            attempt(IdMapping::SingleUid {
                uid,
                gid,
                reason: FlattenReason::UidmapFailed,
            })
        }
        r => r,
    }
}

/// The namespace-free mode for this user, or (its name, what it lacks).
fn fallback(facts: &HostFacts) -> Result<Mode, (&'static str, String)> {
    if facts.euid == 0 {
        if facts.has_cap(CAP_SYS_CHROOT) {
            Ok(Mode::Chroot)
        } else {
            Err((
                "chroot",
                "root here has no CAP_SYS_CHROOT (add it: --cap-add SYS_CHROOT)".into(),
            ))
        }
    } else {
        facts.fakeroot.clone().map(Mode::Fakeroot).ok_or((
            "fakeroot",
            "fakeroot and fakechroot are not installed (apt-get install fakeroot fakechroot)"
                .into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    struct FakeHost {
        dir: tempfile::TempDir,
    }

    impl FakeHost {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            for d in [
                "etc",
                "proc/sys/kernel",
                "proc/sys/user",
                "proc/self",
                "proc/1",
                "run",
                "usr/bin",
                "sys/module/apparmor/parameters",
            ] {
                fs::create_dir_all(dir.path().join(d)).unwrap();
            }
            fs::write(
                dir.path().join("etc/passwd"),
                "root:x:0:0::/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n",
            )
            .unwrap();
            FakeHost { dir }
        }
        fn write(&self, rel: &str, text: &str) -> &Self {
            fs::write(self.dir.path().join(rel), text).unwrap();
            self
        }
        fn tools(&self) -> &Self {
            use std::os::unix::fs::PermissionsExt;
            for t in ["newuidmap", "newgidmap"] {
                let p = self.dir.path().join("usr/bin").join(t);
                fs::write(&p, "#!/bin/sh\n").unwrap();
                fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
            }
            self
        }
        fn facts(&self, euid: u32) -> HostFacts {
            HostFacts::gather(
                self.dir.path(),
                euid,
                1000,
                1000,
                &[PathBuf::from("/usr/bin")],
            )
        }
    }

    fn err(f: &HostFacts, p: &Probe) -> String {
        decide(f, p).unwrap_err().to_string()
    }

    fn eperm(step: &str) -> Probe {
        Probe::Failed {
            step: step.into(),
            errno: 1,
        }
    }

    #[test]
    fn full_mapping_when_everything_is_there() {
        let h = FakeHost::new();
        h.tools()
            .write("etc/subuid", "alice:100000:65536\n")
            .write("etc/subgid", "alice:100000:65536\n");
        let m = decide(&h.facts(1000), &Probe::Ok).unwrap();
        assert_eq!(m.host_uid(42), Some(100042));
        assert!(m.warning().is_none());
    }

    #[test]
    fn root_gets_no_user_namespace() {
        let h = FakeHost::new();
        assert_eq!(decide(&h.facts(0), &Probe::Ok).unwrap(), IdMapping::Root);
        let e = err(&h.facts(0), &eperm("unshare(CLONE_NEWNS|CLONE_NEWPID)"));
        assert!(e.contains("CAP_SYS_ADMIN"), "{e}");
    }

    #[test]
    fn apparmor_restriction_named_with_fix() {
        let h = FakeHost::new();
        h.tools().write(
            "proc/sys/kernel/apparmor_restrict_unprivileged_userns",
            "1\n",
        );
        // Restricted, but a profile lets dibr through: fine.
        assert!(decide(&h.facts(1000), &Probe::Ok).is_ok());
        let e = err(&h.facts(1000), &eperm("mount(MS_REC|MS_PRIVATE)"));
        assert!(
            e.contains("kernel.apparmor_restrict_unprivileged_userns=1"),
            "{e}"
        );
        assert!(
            e.contains("sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0"),
            "{e}"
        );
        assert!(e.contains("AppArmor profile"), "{e}");
        assert!(e.contains("contrib/apparmor/dibr"), "{e}");
        assert!(e.contains("apparmor_parser -r /etc/apparmor.d/dibr"), "{e}");
        // The sysctl present but AppArmor disabled: not the cause.
        h.write("sys/module/apparmor/parameters/enabled", "N\n");
        let e = err(&h.facts(1000), &eperm("mount(MS_REC|MS_PRIVATE)"));
        assert!(
            !e.contains("apparmor_restrict_unprivileged_userns=1"),
            "{e}"
        );
        assert!(e.contains("mount(MS_REC|MS_PRIVATE) was refused"), "{e}");
        // As root the restriction does not apply.
        h.write("sys/module/apparmor/parameters/enabled", "Y\n");
        let e = err(&h.facts(0), &eperm("unshare(CLONE_NEWNS|CLONE_NEWPID)"));
        assert!(
            e.contains("CAP_SYS_ADMIN") && !e.contains("AppArmor"),
            "{e}"
        );
    }

    #[test]
    fn shipped_apparmor_profile_matches_the_message() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/apparmor/dibr");
        let t = fs::read_to_string(&p).unwrap();
        assert!(APPARMOR_PROFILE_FIX.contains("contrib/apparmor/dibr"));
        assert!(
            t.contains("abi <abi/4.0>,") && t.contains("  userns,"),
            "{t}"
        );
        let attach = t
            .lines()
            .find(|l| l.starts_with("profile dibr "))
            .expect("a profile line");
        for dir in ["usr/local/bin", ".cargo/bin", "target/release"] {
            assert!(attach.contains(dir), "{attach}: {dir}");
            assert!(
                APPARMOR_PROFILE_FIX.contains(dir.trim_start_matches("usr/")),
                "{dir}"
            );
        }
        assert!(attach.ends_with("flags=(unconfined) {"), "{attach}");
    }

    #[test]
    fn container_seccomp_named_before_host_apparmor() {
        // A Docker job on an Ubuntu 24.04 host: the container's seccomp
        // filter refuses unshare; the host's AppArmor sysctl shows through.
        let h = FakeHost::new();
        h.tools()
            .write(".dockerenv", "")
            .write(
                "proc/self/status",
                "Name:\tdibr\nSeccomp:\t2\nSeccomp_filters:\t1\n",
            )
            .write(
                "proc/sys/kernel/apparmor_restrict_unprivileged_userns",
                "1\n",
            )
            .write("sys/module/apparmor/parameters/enabled", "Y\n");
        let f = h.facts(1000);
        assert!(f.seccomp_filter && f.in_container);
        let e = err(&f, &eperm("unshare(CLONE_NEWUSER)"));
        assert!(
            e.contains("This is a container with a seccomp filter"),
            "{e}"
        );
        assert!(e.contains("--security-opt seccomp=unconfined"), "{e}");
        assert!(
            e.contains("dibr mkfs and dibr assemble need no namespaces"),
            "{e}"
        );
        assert!(
            e.contains("sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0"),
            "{e}"
        );
        // As root in the container: seccomp, and no AppArmor (root is not restricted).
        let e = err(&h.facts(0), &eperm("unshare(CLONE_NEWNS|CLONE_NEWPID)"));
        assert!(
            e.contains("seccomp=unconfined") && e.contains("SYS_ADMIN"),
            "{e}"
        );
        assert!(!e.contains("apparmor_restrict"), "{e}");
        // podman/nspawn: container= in pid 1's environment.
        let h = FakeHost::new();
        h.write("proc/1/environ", "PATH=/bin\0container=podman\0")
            .write("proc/self/status", "Seccomp:\t2\n");
        let e = err(&h.facts(1000), &eperm("unshare(CLONE_NEWUSER)"));
        assert!(e.contains("This is a container"), "{e}");
        // A seccomp filter outside any container is named too.
        let h = FakeHost::new();
        h.write("proc/self/status", "Seccomp:\t2\n");
        let e = err(&h.facts(1000), &eperm("unshare(CLONE_NEWUSER)"));
        assert!(e.contains("A seccomp filter is active"), "{e}");
        // No filter, no container: the generic cause and its sysctls.
        let h = FakeHost::new();
        h.write("proc/self/status", "Seccomp:\t0\n");
        let e = err(&h.facts(1000), &eperm("unshare(CLONE_NEWUSER)"));
        assert!(e.contains("user.max_user_namespaces"), "{e}");
    }

    #[test]
    fn sysctls_refuse_before_probing() {
        let h = FakeHost::new();
        h.write("proc/sys/user/max_user_namespaces", "0\n");
        let e = err(&h.facts(1000), &Probe::Ok);
        assert!(e.contains("user.max_user_namespaces=0"), "{e}");
        let h = FakeHost::new();
        h.write("proc/sys/kernel/unprivileged_userns_clone", "0\n");
        let e = err(&h.facts(1000), &Probe::Ok);
        assert!(e.contains("kernel.unprivileged_userns_clone=0"), "{e}");
        assert!(e.contains("unprivileged_userns_clone=1"), "{e}");
    }

    #[test]
    fn docker_seccomp_explained() {
        let h = FakeHost::new();
        h.write(".dockerenv", "");
        let e = err(&h.facts(1000), &eperm("unshare(CLONE_NEWNS|CLONE_NEWPID)"));
        assert!(e.contains("seccomp"), "{e}");
        assert!(e.contains("seccomp=unconfined"), "{e}");
        let h = FakeHost::new();
        let e = err(&h.facts(1000), &eperm("unshare(CLONE_NEWUSER)"));
        assert!(e.contains("unshare(CLONE_NEWUSER) was refused"), "{e}");
        let e = err(
            &h.facts(1000),
            &Probe::Failed {
                step: "unshare(CLONE_NEWUSER)".into(),
                errno: 28,
            },
        );
        assert!(
            e.contains("ENOSPC") && e.contains("max_user_namespaces"),
            "{e}"
        );
    }

    #[test]
    fn missing_tools_or_range_flatten_with_fix() {
        let h = FakeHost::new();
        h.write("etc/subuid", "alice:100000:65536\n")
            .write("etc/subgid", "alice:100000:65536\n");
        let m = decide(&h.facts(1000), &Probe::Ok).unwrap();
        assert!(m.flattens_ownership());
        let w = m.warning().unwrap();
        assert!(
            w.contains("newuidmap") && w.contains("apt install uidmap"),
            "{w}"
        );

        let h = FakeHost::new();
        h.tools().write("etc/subuid", "bob:100000:65536\n");
        let w = decide(&h.facts(1000), &Probe::Ok)
            .unwrap()
            .warning()
            .unwrap();
        assert!(
            w.contains("alice") && w.contains("/etc/subuid") && w.contains("usermod --add-subuids"),
            "{w}"
        );

        // Numeric owner lines count too; subgid missing is named.
        let h = FakeHost::new();
        h.tools().write("etc/subuid", "1000:100000:65536\n");
        let w = decide(&h.facts(1000), &Probe::Ok)
            .unwrap()
            .warning()
            .unwrap();
        assert!(w.contains("/etc/subgid"), "{w}");
    }

    fn fakeroot_tools(h: &FakeHost) {
        use std::os::unix::fs::PermissionsExt;
        for t in ["usr/bin/faked-sysv", "usr/bin/fakechroot", "usr/bin/chroot"] {
            let p = h.dir.path().join(t);
            fs::write(&p, "#!/bin/sh\n").unwrap();
            fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
        }
        let lib = h.dir.path().join("usr/lib/x86_64-linux-gnu/libfakeroot");
        fs::create_dir_all(&lib).unwrap();
        fs::write(lib.join("libfakeroot-sysv.so"), "").unwrap();
    }

    fn pick(f: &HostFacts, probe: Probe) -> Result<Chosen, PreflightError> {
        choose(f, &mut |_| probe.clone())
    }

    #[test]
    fn container_modes_in_order() {
        let h = FakeHost::new();
        h.tools().write(".dockerenv", "");
        // Root with CAP_SYS_ADMIN: plain namespaces.
        h.write(
            "proc/self/status",
            "Seccomp:\t0\nCapEff:\t000001ffffffffff\n",
        );
        let c = pick(&h.facts(0), Probe::Ok).unwrap();
        assert_eq!(c.name(), "root");
        // Podman: root without CAP_SYS_ADMIN, userns allowed, /proc masked.
        h.write(
            "proc/self/status",
            "Seccomp:\t2\nCapEff:\t00000000800405fb\n",
        )
        .write("proc/self/uid_map", "0 0 4294967295\n")
        .write("proc/self/gid_map", "0 0 4294967295\n");
        let mut seen = Vec::new();
        let c = choose(&h.facts(0), &mut |m| {
            seen.push(m.clone());
            Probe::OkProcBound
        })
        .unwrap();
        assert_eq!(c.name(), "root-userns");
        assert!(
            matches!(&seen[..], [IdMapping::Identity { .. }]),
            "{seen:?}"
        );
        assert!(
            c.line().contains("/proc is the container's"),
            "{}",
            c.line()
        );
        // Docker as root: seccomp refuses unshare → chroot mode, cause named.
        let c = pick(&h.facts(0), eperm("unshare(CLONE_NEWUSER)")).unwrap();
        assert_eq!(c.mode, Mode::Chroot);
        let l = c.line();
        assert!(
            l.contains("refused (Operation not permitted) by this container's seccomp filter"),
            "{l}"
        );
        assert!(
            l.contains("--security-opt seccomp=unconfined --security-opt systempaths=unconfined"),
            "{l}"
        );
        // Docker -u 1000: no fallback without fakeroot, with the fix named.
        h.write("etc/subuid", "alice:100000:65536\n")
            .write("etc/subgid", "alice:100000:65536\n");
        let e = pick(&h.facts(1000), eperm("unshare(CLONE_NEWUSER)"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("apt-get install fakeroot fakechroot"), "{e}");
        assert!(e.contains("seccomp=unconfined"), "{e}");
        fakeroot_tools(&h);
        let c = pick(&h.facts(1000), eperm("unshare(CLONE_NEWUSER)")).unwrap();
        assert_eq!(c.name(), "fakeroot");
        // Setuid newuidmap failing in a container: fakeroot, and the
        // file-capability fix is named.
        let c = pick(&h.facts(1000), eperm("newuidmap/newgidmap")).unwrap();
        assert_eq!(c.name(), "fakeroot");
        assert!(
            c.line().contains("setcap cap_setuid=ep /usr/bin/newuidmap"),
            "{}",
            c.line()
        );
    }

    #[test]
    fn never_blames_seccomp_without_a_filter() {
        let h = FakeHost::new();
        h.tools().write("run/.containerenv", "").write(
            "proc/self/status",
            "Seccomp:\t0\nCapEff:\t00000000800405fb\n",
        );
        let c = pick(&h.facts(0), eperm("unshare(CLONE_NEWUSER)")).unwrap();
        assert_eq!(c.name(), "chroot");
        assert!(!c.line().contains("seccomp filter"), "{}", c.line());
        assert!(
            c.line().contains("podman run --security-opt unmask=ALL"),
            "{}",
            c.line()
        );
    }

    #[test]
    fn forced_modes() {
        let h = FakeHost::new();
        h.write("proc/self/status", "CapEff:\t000001ffffffffff\n");
        let mut f = h.facts(0);
        f.forced = Some("chroot".into());
        assert_eq!(pick(&f, Probe::Ok).unwrap().mode, Mode::Chroot);
        f.forced = Some("fakeroot".into());
        let e = pick(&f, Probe::Ok).unwrap_err().to_string();
        assert!(
            e.contains("DIBR_SANDBOX=fakeroot") && e.contains("apt-get install"),
            "{e}"
        );
        f.forced = Some("bogus".into());
        assert!(pick(&f, Probe::Ok).is_err());
        let mut f = h.facts(1000);
        f.forced = Some("chroot".into());
        assert!(pick(&f, Probe::Ok)
            .unwrap_err()
            .to_string()
            .contains("needs root"));
    }
}
