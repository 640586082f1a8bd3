//! The sandbox's filesystem setup as data: a list of [`FsOp`]s, built from
//! a configuration, normalised and sorted (parents before children), so it
//! can be inspected and tested without entering any namespace. `enter.rs`
//! executes it.
//!
//! Destinations are absolute paths as seen *inside* the sandbox; the
//! executor prefixes them with the target root.

use std::fmt;
use std::path::{Component, Path, PathBuf};

/// Host device nodes bind-mounted into the sandbox's /dev (never mknod'ed:
/// device nodes created in a user namespace cannot be opened).
pub const DEV_NODES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// One filesystem operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FsOp {
    /// Bind-mount host `src` (recursively) on `dst`, optionally read-only.
    Bind {
        src: PathBuf,
        dst: PathBuf,
        ro: bool,
    },
    /// A fresh procfs for the sandbox's pid namespace.
    Proc { dst: PathBuf },
    /// sysfs; falls back to a recursive read-only bind of the host /sys
    /// when the kernel refuses a new sysfs (it does unless the network
    /// namespace is ours, and we share the host's).
    Sysfs { dst: PathBuf, ro: bool },
    /// A tmpfs (mode 0755) for /dev.
    DevTmpfs { dst: PathBuf },
    /// Bind of host `/dev/<name>` on `<dev>/<name>`.
    DevNode { name: String, dst: PathBuf },
    /// A new devpts instance on `<dev>/pts` plus `<dev>/ptmx -> pts/ptmx`.
    Devpts { dst: PathBuf },
    /// A tmpfs (mode 1777), e.g. /dev/shm.
    Tmpfs { dst: PathBuf },
    /// A symlink `dst -> target`.
    Symlink { target: PathBuf, dst: PathBuf },
    /// The host's /etc/resolv.conf bound read-only on `dst`.
    ResolvConf { dst: PathBuf },
}

/// Every variant's `dst`, by shared or mutable reference as `$op` is: one
/// list of variants for [`FsOp::dst`] and [`FsOp::dst_mut`].
macro_rules! dst_of {
    ($op:expr) => {
        match $op {
            FsOp::Bind { dst, .. }
            | FsOp::Proc { dst }
            | FsOp::Sysfs { dst, .. }
            | FsOp::DevTmpfs { dst }
            | FsOp::DevNode { dst, .. }
            | FsOp::Devpts { dst }
            | FsOp::Tmpfs { dst }
            | FsOp::Symlink { dst, .. }
            | FsOp::ResolvConf { dst } => dst,
        }
    };
}

impl FsOp {
    pub fn dst(&self) -> &Path {
        dst_of!(self)
    }

    /// The destination, for rewriting it in place.
    fn dst_mut(&mut self) -> &mut PathBuf {
        dst_of!(self)
    }

    /// Whether the destination is a directory (else a file or link).
    pub fn dst_is_dir(&self) -> bool {
        match self {
            FsOp::DevNode { .. } | FsOp::Symlink { .. } | FsOp::ResolvConf { .. } => false,
            FsOp::Bind { src, .. } => src.is_dir(),
            _ => true,
        }
    }

    /// Whether this op mounts something (a symlink does not).
    pub fn is_mount(&self) -> bool {
        !matches!(self, FsOp::Symlink { .. })
    }

    /// Needs to run inside the new pid namespace (procfs shows the pid
    /// namespace of the mounting process).
    pub fn needs_pid_ns(&self) -> bool {
        matches!(self, FsOp::Proc { .. })
    }
}

impl fmt::Display for FsOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FsOp::Bind { src, dst, ro } => write!(
                f,
                "bind {} on {}{}",
                src.display(),
                dst.display(),
                if *ro { " (ro)" } else { "" }
            ),
            FsOp::Proc { dst } => write!(f, "proc on {}", dst.display()),
            FsOp::Sysfs { dst, ro } => write!(
                f,
                "sysfs on {}{}",
                dst.display(),
                if *ro { " (ro)" } else { "" }
            ),
            FsOp::DevTmpfs { dst } => write!(f, "tmpfs (mode 0755) on {}", dst.display()),
            FsOp::DevNode { name, dst } => write!(f, "bind /dev/{name} on {}", dst.display()),
            FsOp::Devpts { dst } => write!(f, "devpts (newinstance) on {}", dst.display()),
            FsOp::Tmpfs { dst } => write!(f, "tmpfs (mode 1777) on {}", dst.display()),
            FsOp::Symlink { target, dst } => {
                write!(f, "symlink {} -> {}", dst.display(), target.display())
            }
            FsOp::ResolvConf { dst } => {
                write!(f, "bind host /etc/resolv.conf on {} (ro)", dst.display())
            }
        }
    }
}

/// A user bind: host `src` visible at `dst` inside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    pub src: PathBuf,
    pub dst: PathBuf,
    pub ro: bool,
}

impl Bind {
    pub fn ro(src: impl Into<PathBuf>, dst: impl Into<PathBuf>) -> Self {
        Bind {
            src: src.into(),
            dst: dst.into(),
            ro: true,
        }
    }
    pub fn rw(src: impl Into<PathBuf>, dst: impl Into<PathBuf>) -> Self {
        Bind {
            src: src.into(),
            dst: dst.into(),
            ro: false,
        }
    }
}

/// Why a plan could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("sandbox destination {0} must be absolute and without '..'")]
    BadDestination(PathBuf),
    #[error("two sandbox mounts on {0}")]
    Duplicate(PathBuf),
}

/// Absolute, no `..`, `.` and repeated `/` removed.
pub fn normalise(p: &Path) -> Result<PathBuf, PlanError> {
    if !p.is_absolute() {
        return Err(PlanError::BadDestination(p.into()));
    }
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => out.push(n),
            Component::ParentDir | Component::Prefix(_) => {
                return Err(PlanError::BadDestination(p.into()))
            }
        }
    }
    Ok(out)
}

/// The plan for running inside a target tree (chroot): a full /dev, /proc,
/// read-only /sys, resolv.conf, then the user's binds.
pub fn chroot_plan(binds: &[Bind]) -> Result<Vec<FsOp>, PlanError> {
    let p = PathBuf::from;
    let mut ops = vec![
        FsOp::Proc { dst: p("/proc") },
        FsOp::Sysfs {
            dst: p("/sys"),
            ro: true,
        },
        FsOp::DevTmpfs { dst: p("/dev") },
    ];
    for n in DEV_NODES {
        ops.push(FsOp::DevNode {
            name: n.into(),
            dst: p("/dev").join(n),
        });
    }
    ops.push(FsOp::Devpts { dst: p("/dev/pts") });
    ops.push(FsOp::Tmpfs { dst: p("/dev/shm") });
    for (link, target) in [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        ops.push(FsOp::Symlink {
            target: p(target),
            dst: p("/dev").join(link),
        });
    }
    ops.push(FsOp::ResolvConf {
        dst: p("/etc/resolv.conf"),
    });
    add_binds(&mut ops, binds)?;
    finish(ops)
}

/// The plan for running outside the target (DIB's root.d, extra-data.d,
/// cleanup.d) but inside the namespaces: a fresh /proc for the new pid
/// namespace and the user's binds (destinations are host paths).
///
/// With `tree_dev` (the tree's `/dev`, a host path), the host's
/// [`DEV_NODES`] are bound on it too: DIB's tree keeps the nodes
/// debootstrap made, and outside hooks rely on them (ironic-python-agent-
/// builder's `99-ramdisk-create` archives the tree with `cpio` and only
/// `mknod`s `dev/random` when it is missing, which a user namespace may
/// not do).
pub fn outside_plan(binds: &[Bind], tree_dev: Option<&Path>) -> Result<Vec<FsOp>, PlanError> {
    let mut ops = vec![FsOp::Proc {
        dst: PathBuf::from("/proc"),
    }];
    if let Some(dev) = tree_dev {
        for n in DEV_NODES {
            ops.push(FsOp::DevNode {
                name: n.into(),
                dst: dev.join(n),
            });
        }
    }
    add_binds(&mut ops, binds)?;
    finish(ops)
}

fn add_binds(ops: &mut Vec<FsOp>, binds: &[Bind]) -> Result<(), PlanError> {
    for b in binds {
        ops.push(FsOp::Bind {
            src: b.src.clone(),
            dst: normalise(&b.dst)?,
            ro: b.ro,
        });
    }
    Ok(())
}

fn finish(mut ops: Vec<FsOp>) -> Result<Vec<FsOp>, PlanError> {
    for op in ops.iter_mut() {
        let d = normalise(op.dst())?;
        *op.dst_mut() = d;
    }
    // Parents before children; stable, so equal depths keep their order.
    ops.sort_by_key(|op| op.dst().components().count());
    for (i, a) in ops.iter().enumerate() {
        if ops[..i].iter().any(|b| b.dst() == a.dst()) {
            return Err(PlanError::Duplicate(a.dst().into()));
        }
    }
    Ok(ops)
}

/// Ops whose destination lies inside another op's mount (e.g. /dev/null
/// inside the /dev tmpfs): their mountpoints live on that mount and vanish
/// with it. The others need a mountpoint in the target tree itself.
pub fn is_nested(ops: &[FsOp], op: &FsOp) -> bool {
    ops.iter()
        .any(|o| o.is_mount() && o.dst() != op.dst() && op.dst().starts_with(o.dst()))
}

/// `dst` (inside path) below `root`.
pub fn host_path(root: &Path, dst: &Path) -> PathBuf {
    root.join(dst.strip_prefix("/").unwrap_or(dst))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chroot_plan_is_sorted_and_complete() {
        let ops = chroot_plan(&[Bind::ro("/h/hooks", "/tmp//in_target.d/")]).unwrap();
        let text: Vec<String> = ops.iter().map(|o| o.to_string()).collect();
        let pos = |s: &str| {
            text.iter()
                .position(|t| t == s)
                .unwrap_or_else(|| panic!("{s} missing in {text:#?}"))
        };
        assert!(pos("tmpfs (mode 0755) on /dev") < pos("bind /dev/null on /dev/null"));
        assert!(pos("tmpfs (mode 0755) on /dev") < pos("devpts (newinstance) on /dev/pts"));
        assert!(pos("symlink /dev/ptmx -> pts/ptmx") > pos("tmpfs (mode 0755) on /dev"));
        pos("proc on /proc");
        pos("sysfs on /sys (ro)");
        pos("tmpfs (mode 1777) on /dev/shm");
        pos("bind host /etc/resolv.conf on /etc/resolv.conf (ro)");
        pos("bind /h/hooks on /tmp/in_target.d (ro)");
        for n in DEV_NODES {
            pos(&format!("bind /dev/{n} on /dev/{n}"));
        }
        // Nested ops need no mountpoint in the target.
        let null = ops
            .iter()
            .find(|o| o.dst() == Path::new("/dev/null"))
            .unwrap();
        assert!(is_nested(&ops, null));
        let dev = ops.iter().find(|o| o.dst() == Path::new("/dev")).unwrap();
        assert!(!is_nested(&ops, dev));
        let proc_ = ops.iter().find(|o| o.dst() == Path::new("/proc")).unwrap();
        assert!(proc_.needs_pid_ns());
    }

    #[test]
    fn bad_and_duplicate_destinations() {
        assert_eq!(
            chroot_plan(&[Bind::ro("/x", "rel")]),
            Err(PlanError::BadDestination("rel".into()))
        );
        assert_eq!(
            chroot_plan(&[Bind::ro("/x", "/tmp/../etc")]),
            Err(PlanError::BadDestination("/tmp/../etc".into()))
        );
        assert_eq!(
            chroot_plan(&[Bind::ro("/x", "/dev/")]),
            Err(PlanError::Duplicate("/dev".into()))
        );
        let o = outside_plan(&[Bind::rw("/a", "/b/c")], None).unwrap();
        assert_eq!(o.len(), 2);
        let t = outside_plan(&[], Some(Path::new("/w/mnt/dev"))).unwrap();
        let text: Vec<String> = t.iter().map(|o| o.to_string()).collect();
        assert!(text.contains(&"bind /dev/random on /w/mnt/dev/random".to_string()));
        assert_eq!(t.len(), 1 + DEV_NODES.len());
        assert_eq!(
            host_path(Path::new("/t"), Path::new("/b/c")),
            Path::new("/t/b/c")
        );
    }
}
