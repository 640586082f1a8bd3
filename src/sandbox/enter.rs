//! The helper side: `dibr __sandbox <mode> …`, a freshly exec'ed,
//! single-threaded process that enters the namespaces.
//!
//! Process tree for `run` (H = this helper, C = pid 1 of the new pid
//! namespace, X = the command):
//!
//! ```text
//! caller ──spawn──> H: PDEATHSIG(KILL); [fork mapper M; unshare(NEWUSER);
//!                      M runs newuidmap/newgidmap on H] or write own maps;
//!                      unshare(NEWNS|NEWPID); mount --make-rprivate /;
//!                      create missing mountpoints; fork ──> C (pid 1):
//!                        PDEATHSIG(KILL); apply plan; chroot; chdir;
//!                        spawn X; reap until X exits; exit(X's status)
//!                      ── kernel kills everything left in the pid ns ──
//!                      H: unmount, remove the mountpoints it created,
//!                         exit(X's status)
//! ```
//!
//! If the caller dies, H gets SIGKILL (PDEATHSIG), then C does, and with
//! pid 1 gone the kernel kills every process in the namespace. The mount
//! namespace disappears with its last process, so no mount reaches the host.

use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use rustix::mount::MountFlags;

use super::idmap::IdMapping;
use super::mode::ProcSource;
use super::plan::{self, Bind, FsOp};
use super::sys::{self, Namespaces, SysError};

/// Exit code of the helper when setting up the sandbox failed (the reason
/// is in the status file).
pub const SETUP_FAILED: i32 = 125;

/// A parsed helper command line.
#[derive(Debug, Clone)]
pub struct HelperArgs {
    pub mode: String,
    pub parent: u32,
    pub map: IdMapping,
    pub root: PathBuf,
    pub cwd: PathBuf,
    pub chroot: bool,
    pub binds: Vec<Bind>,
    pub env: Vec<(OsString, OsString)>,
    pub status_file: Option<PathBuf>,
    pub argv: Vec<OsString>,
    /// Bind the helper's /proc instead of mounting a fresh one (the
    /// container masks /proc paths; see `super::mode`).
    pub proc_bind: bool,
    /// A namespace-free mode (`super::direct`), instead of namespaces.
    pub direct: Option<Direct>,
    /// The environment is in this inherited descriptor (NUL-separated
    /// `K=V`), not in `--env` arguments.
    pub env_fd: Option<i32>,
    /// Outside the chroot: the standard device nodes in the tree's /dev
    /// (see [`plan::outside_plan`]).
    pub tree_dev: bool,
}

/// The namespace-free modes, as the helper runs them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Direct {
    /// chroot(2) as real root.
    Chroot,
    /// fakechroot's wrapper around coreutils' chroot, under fakeroot (the
    /// environment carries the faked key).
    Fakeroot {
        fakechroot: PathBuf,
        chroot: PathBuf,
    },
}

impl HelperArgs {
    /// Render as arguments after `__sandbox`.
    pub fn to_args(&self) -> Vec<OsString> {
        let mut a: Vec<OsString> = vec![
            self.mode.clone().into(),
            "--parent".into(),
            self.parent.to_string().into(),
            "--map".into(),
            self.map.to_arg().into(),
            "--root".into(),
            self.root.clone().into(),
            "--cwd".into(),
            self.cwd.clone().into(),
        ];
        if self.chroot {
            a.push("--chroot".into());
        }
        if let Some(s) = &self.status_file {
            a.push("--status-file".into());
            a.push(s.clone().into());
        }
        if self.proc_bind {
            a.push("--proc-bind".into());
        }
        if self.tree_dev {
            a.push("--tree-dev".into());
        }
        if let Some(fd) = self.env_fd {
            a.push("--env-fd".into());
            a.push(fd.to_string().into());
        }
        match &self.direct {
            None => {}
            Some(Direct::Chroot) => a.push("--direct-chroot".into()),
            Some(Direct::Fakeroot { fakechroot, chroot }) => {
                a.push("--direct-fakeroot".into());
                a.push(fakechroot.clone().into());
                a.push(chroot.clone().into());
            }
        }
        for b in &self.binds {
            a.push("--bind".into());
            a.push(b.src.clone().into());
            a.push(b.dst.clone().into());
            a.push(if b.ro { "ro" } else { "rw" }.into());
        }
        for (k, v) in &self.env {
            let mut kv = k.clone();
            kv.push("=");
            kv.push(v);
            a.push("--env".into());
            a.push(kv);
        }
        a.push("--".into());
        a.extend(self.argv.iter().cloned());
        a
    }

    /// Helper arguments for `mode`, started by process `parent` with id
    /// mapping `map`; everything else at its default (the host's root as
    /// root and working directory, no binds, environment or command), for
    /// the caller to set what its mode needs. The parser starts from the
    /// same defaults, so an unset field round-trips.
    pub fn new(mode: &str, parent: u32, map: IdMapping) -> HelperArgs {
        HelperArgs {
            mode: mode.to_string(),
            parent,
            map,
            root: "/".into(),
            cwd: "/".into(),
            chroot: false,
            binds: vec![],
            env: vec![],
            status_file: None,
            argv: vec![],
            proc_bind: false,
            direct: None,
            env_fd: None,
            tree_dev: false,
        }
    }

    /// Parse arguments after `__sandbox`.
    pub fn parse(args: &[OsString]) -> Result<HelperArgs, String> {
        let mut it = args.iter();
        let mode = it.next().and_then(|m| m.to_str()).ok_or("missing mode")?;
        let mut h = HelperArgs::new(mode, 0, IdMapping::Root);
        let mut next = |what: &str| it.next().cloned().ok_or(format!("{what} needs a value"));
        while let Ok(flag) = next("") {
            match flag.to_str() {
                Some("--parent") => {
                    h.parent = next("--parent")?
                        .to_str()
                        .and_then(|s| s.parse().ok())
                        .ok_or("bad --parent")?
                }
                Some("--map") => {
                    let m = next("--map")?;
                    h.map = m
                        .to_str()
                        .and_then(IdMapping::from_arg)
                        .ok_or("bad --map")?
                }
                Some("--root") => h.root = next("--root")?.into(),
                Some("--cwd") => h.cwd = next("--cwd")?.into(),
                Some("--chroot") => h.chroot = true,
                Some("--status-file") => h.status_file = Some(next("--status-file")?.into()),
                Some("--proc-bind") => h.proc_bind = true,
                Some("--tree-dev") => h.tree_dev = true,
                Some("--env-fd") => {
                    h.env_fd = Some(
                        next("--env-fd")?
                            .to_str()
                            .and_then(|s| s.parse().ok())
                            .ok_or("bad --env-fd")?,
                    )
                }
                Some("--direct-chroot") => h.direct = Some(Direct::Chroot),
                Some("--direct-fakeroot") => {
                    h.direct = Some(Direct::Fakeroot {
                        fakechroot: next("--direct-fakeroot")?.into(),
                        chroot: next("--direct-fakeroot")?.into(),
                    })
                }
                Some("--bind") => {
                    let src = next("--bind")?;
                    let dst = next("--bind")?;
                    let ro = next("--bind")?;
                    h.binds.push(Bind {
                        src: src.into(),
                        dst: dst.into(),
                        ro: ro == "ro",
                    })
                }
                Some("--env") => {
                    let kv = next("--env")?;
                    let b = kv.as_bytes();
                    let eq = b.iter().position(|&c| c == b'=').ok_or("--env needs K=V")?;
                    h.env.push((
                        OsStr::from_bytes(&b[..eq]).into(),
                        OsStr::from_bytes(&b[eq + 1..]).into(),
                    ));
                }
                Some("--") => {
                    h.argv = it.cloned().collect();
                    break;
                }
                _ => return Err(format!("unknown argument {flag:?}")),
            }
        }
        Ok(h)
    }
}

/// Entry point of `dibr __sandbox …`; returns the exit code.
pub fn main(args: &[OsString]) -> i32 {
    let mut h = match HelperArgs::parse(args) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("dibr __sandbox: {e}");
            return 2;
        }
    };
    if let Some(fd) = h.env_fd {
        match std::fs::read(format!("/proc/self/fd/{fd}")) {
            Ok(data) => h.env.extend(parse_env_block(&data)),
            Err(e) => {
                eprintln!("dibr __sandbox: reading the environment from fd {fd}: {e}");
                return 2;
            }
        }
    }
    // Nothing the caller had open reaches the command but stdio.
    sys::cloexec_from(3);
    if let Some(p) = &h.status_file {
        if let Ok(f) = std::fs::OpenOptions::new().append(true).open(p) {
            let _ = STATUS.set(f);
        }
    }
    // Die with the caller; close the race where it died before prctl.
    if sys::die_with_parent().is_err() || sys::getppid() != Some(h.parent) {
        return SETUP_FAILED;
    }
    match h.mode.as_str() {
        "probe" => probe(&h),
        "remove" => remove(&h),
        "run" if h.direct.is_some() => match super::direct::run(&h) {
            Ok(code) => code,
            Err(e) => {
                report(&h, &e);
                SETUP_FAILED
            }
        },
        "run" => match run(&h) {
            Ok(code) => code,
            Err(e) => {
                report(&h, &e);
                SETUP_FAILED
            }
        },
        m => {
            eprintln!("dibr __sandbox: unknown mode {m}");
            2
        }
    }
}

/// `K=V` entries separated by NUL bytes (what [`env_block`] writes).
fn parse_env_block(data: &[u8]) -> Vec<(OsString, OsString)> {
    data.split(|&b| b == 0)
        .filter_map(|kv| {
            let eq = kv.iter().position(|&c| c == b'=')?;
            Some((
                OsStr::from_bytes(&kv[..eq]).into(),
                OsStr::from_bytes(&kv[eq + 1..]).into(),
            ))
        })
        .collect()
}

/// The environment as one NUL-separated block, for the helper's env fd.
pub fn env_block(env: &[(OsString, OsString)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in env {
        out.extend_from_slice(k.as_bytes());
        out.push(b'=');
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    out
}

/// The status file, opened once before any chroot (the fd survives fork
/// and is closed on exec, so the command does not inherit it).
static STATUS: std::sync::OnceLock<std::fs::File> = std::sync::OnceLock::new();

pub(super) fn report(_h: &HelperArgs, msg: &str) {
    if let Some(mut f) = STATUS.get() {
        if writeln!(f, "{msg}").is_ok() {
            return;
        }
    }
    eprintln!("dibr sandbox: {msg}");
}

/// Enter a user namespace with the mapping (none for [`IdMapping::Root`]).
/// On failure returns the step and its errno.
fn enter_userns(map: &IdMapping) -> Result<(), (String, i32)> {
    let se = |e: SysError| {
        (
            format!("{}{}", e.call, paren(&e.path)),
            e.errno.raw_os_error(),
        )
    };
    match map {
        IdMapping::Root => Ok(()),
        IdMapping::SingleUid { uid, gid, .. } => {
            sys::unshare(Namespaces {
                user: true,
                ..Default::default()
            })
            .map_err(se)?;
            let w = |f: &str, s: String| {
                std::fs::write(f, s).map_err(|e| {
                    (
                        format!("write {f}"),
                        e.raw_os_error().unwrap_or(libc::EPERM),
                    )
                })
            };
            w("/proc/self/setgroups", "deny".into())?;
            w("/proc/self/uid_map", format!("0 {uid} 1\n"))?;
            w("/proc/self/gid_map", format!("0 {gid} 1\n"))?;
            Ok(())
        }
        IdMapping::Subids { .. } | IdMapping::Identity { .. } => {
            let (r, w) = sys::pipe().map_err(se)?;
            let me = std::process::id();
            let _ = std::io::stdout().flush();
            let _ = std::io::stderr().flush();
            match sys::fork().map_err(se)? {
                sys::Fork::Child => {
                    drop(w);
                    let mut f = std::fs::File::from(r);
                    let mut b = [0u8; 1];
                    let code = match f.read(&mut b) {
                        Ok(1) => run_mappers(map, me),
                        _ => 1,
                    };
                    sys::exit_now(code)
                }
                sys::Fork::Parent(pid) => {
                    drop(r);
                    let res = sys::unshare(Namespaces {
                        user: true,
                        ..Default::default()
                    });
                    if res.is_ok() {
                        let _ = std::fs::File::from(w).write_all(b"x");
                    } else {
                        drop(w);
                    }
                    let st = sys::wait_pid(pid).map_err(se)?;
                    res.map_err(se)?;
                    if st.exit_status() != Some(0) {
                        let step = match map {
                            IdMapping::Identity { .. } => "writing the identity uid_map/gid_map",
                            _ => "newuidmap/newgidmap",
                        };
                        return Err((step.into(), libc::EPERM));
                    }
                    // newgidmap leaves setgroups allowed: drop the host's
                    // supplementary groups (they would show as nogroup).
                    let _ = sys::clear_groups();
                    Ok(())
                }
            }
        }
    }
}

fn paren(p: &Path) -> String {
    if p.as_os_str().is_empty() {
        String::new()
    } else {
        format!("({})", p.display())
    }
}

/// In the forked mapper: write the maps of process `pid` with the setuid
/// helpers, or itself for an identity map. Returns the exit code.
fn run_mappers(map: &IdMapping, pid: u32) -> i32 {
    if let IdMapping::Identity { uids, gids } = map {
        for (file, ranges) in [("uid_map", uids), ("gid_map", gids)] {
            let path = format!("/proc/{pid}/{file}");
            let text = super::idmap::identity_map_text(ranges);
            if let Err(e) = std::fs::write(&path, &text) {
                eprintln!("dibr sandbox: writing {path} ({}): {e}", text.trim());
                return 1;
            }
        }
        return 0;
    }
    for (tool, args) in [
        ("newuidmap", map.newuidmap_args()),
        ("newgidmap", map.newgidmap_args()),
    ] {
        let Some(args) = args else { return 1 };
        match Command::new(tool).arg(pid.to_string()).args(&args).status() {
            Ok(s) if s.success() => {}
            Ok(s) => {
                eprintln!("dibr sandbox: {tool} {pid} {} failed ({s})", args.join(" "));
                return 1;
            }
            Err(e) => {
                eprintln!("dibr sandbox: cannot run {tool}: {e}");
                return 1;
            }
        }
    }
    0
}

/// `probe`: enter the namespaces, make a mount and, as pid 1 of the new pid
/// namespace, mount a fresh /proc (or, where that is refused, bind the
/// current one); print `ok`, `ok\tbound` or `fail\t<step>\t<errno>`.
fn probe(h: &HelperArgs) -> i32 {
    let se = |e: SysError| {
        (
            format!("{}{}", e.call, paren(&e.path)),
            e.errno.raw_os_error(),
        )
    };
    let r = enter_userns(&h.map).and_then(|()| {
        sys::unshare(Namespaces {
            user: false,
            mount: true,
            pid: true,
        })
        .map_err(se)?;
        sys::make_rprivate().map_err(se)?;
        probe_proc()
    });
    match r {
        Ok(ProcSource::Fresh) => {
            println!("ok");
            0
        }
        Ok(ProcSource::Bound) => {
            println!("ok\tbound");
            0
        }
        Err((step, errno)) => {
            println!("fail\t{step}\t{errno}");
            1
        }
    }
}

/// In a child that is pid 1 of the new pid namespace (procfs shows the
/// namespace of the mounting process), mount proc on /proc — private to
/// this mount namespace — or bind it.
fn probe_proc() -> Result<ProcSource, (String, i32)> {
    const FRESH: i32 = 0;
    const BOUND: i32 = 10;
    let _ = std::io::stdout().flush();
    match sys::fork().map_err(|e| (e.call.to_string(), e.errno.raw_os_error()))? {
        sys::Fork::Child => {
            let proc_ = Path::new("/proc");
            let fl = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
            let code = if sys::mount_fs("proc", proc_, fl, "").is_ok() {
                FRESH
            } else if sys::bind(proc_, proc_, true).is_ok() {
                BOUND
            } else {
                20
            };
            sys::exit_now(code)
        }
        sys::Fork::Parent(pid) => {
            let st =
                sys::wait_pid(pid).map_err(|e| (e.call.to_string(), e.errno.raw_os_error()))?;
            match st.exit_status() {
                Some(FRESH) => Ok(ProcSource::Fresh),
                Some(BOUND) => Ok(ProcSource::Bound),
                _ => Err(("mount(proc)".into(), libc::EPERM)),
            }
        }
    }
}

/// `remove`: delete `--root` from inside the user namespace, where files
/// owned by mapped subordinate ids belong to us.
fn remove(h: &HelperArgs) -> i32 {
    if let Err((step, errno)) = enter_userns(&h.map) {
        report(
            h,
            &format!("{step}: {}", std::io::Error::from_raw_os_error(errno)),
        );
        return SETUP_FAILED;
    }
    match std::fs::remove_dir_all(&h.root) {
        Ok(()) => 0,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => {
            report(h, &format!("removing {}: {e}", h.root.display()));
            1
        }
    }
}

/// What H created in the target and must remove afterwards.
#[derive(Default)]
struct Created {
    paths: Vec<PathBuf>,
    mounts: Vec<PathBuf>,
}

fn run(h: &HelperArgs) -> Result<i32, String> {
    let ops = if h.chroot {
        plan::chroot_plan(&h.binds)
    } else {
        let dev = h.tree_dev.then(|| h.root.join("dev"));
        plan::outside_plan(&h.binds, dev.as_deref())
    }
    .map_err(|e| e.to_string())?;
    let root: PathBuf = if h.chroot { h.root.clone() } else { "/".into() };
    if h.argv.is_empty() {
        return Err("no command given".into());
    }
    enter_userns(&h.map)
        .map_err(|(s, e)| format!("{s}: {}", std::io::Error::from_raw_os_error(e)))?;
    sys::unshare(Namespaces {
        user: false,
        mount: true,
        pid: true,
    })
    .map_err(|e| e.to_string())?;
    sys::make_rprivate().map_err(|e| e.to_string())?;
    if h.chroot {
        // pivot_root needs the tree to be a mount point.
        sys::bind(&root, &root, true).map_err(|e| e.to_string())?;
    }

    let mut created = Created::default();
    let ops = prepare_mountpoints(&root, ops, h.chroot, &mut created)?;
    for op in &ops {
        if op.is_mount() && !plan::is_nested(&ops, op) {
            created.mounts.push(plan::host_path(&root, op.dst()));
        }
    }

    // C learns of H's death through EOF on this pipe (closes the window
    // before C's prctl).
    let (alive_r, alive_w) = sys::pipe().map_err(|e| e.to_string())?;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    let child = match sys::fork().map_err(|e| e.to_string())? {
        sys::Fork::Child => {
            drop(alive_w);
            let code = pid1(h, &root, &ops, alive_r);
            sys::exit_now(code)
        }
        sys::Fork::Parent(pid) => pid,
    };
    drop(alive_r);
    let st = sys::wait_pid(child).map_err(|e| e.to_string())?;
    drop(alive_w);
    cleanup(&created);
    Ok(sys::status_code(st))
}

/// Create the mountpoints of top-level ops that are missing in the target
/// (recording them for removal), and drop a resolv.conf bind that cannot
/// be done safely (the target's file is a symlink, or the host has none).
fn prepare_mountpoints(
    root: &Path,
    ops: Vec<FsOp>,
    chroot: bool,
    created: &mut Created,
) -> Result<Vec<FsOp>, String> {
    let mut out = Vec::with_capacity(ops.len());
    for op in ops.iter() {
        if plan::is_nested(&ops, op) {
            out.push(op.clone());
            continue;
        }
        let p = plan::host_path(root, op.dst());
        if let FsOp::ResolvConf { .. } = op {
            let host_ok = std::fs::metadata("/etc/resolv.conf").is_ok_and(|m| m.is_file());
            let lm = std::fs::symlink_metadata(&p);
            let parent_ok = p.parent().is_some_and(|d| d.is_dir());
            match lm {
                Ok(m) if m.is_file() && host_ok => {}
                Err(_) if host_ok && parent_ok => {
                    std::fs::File::create(&p)
                        .map_err(|e| format!("creating {}: {e}", p.display()))?;
                    created.paths.push(p);
                }
                _ => continue,
            }
            out.push(op.clone());
            continue;
        }
        if let (false, FsOp::DevNode { .. }) = (chroot, op) {
            if tree_dev_mountpoint(&p, created)? {
                out.push(op.clone());
            }
            continue;
        }
        if std::fs::symlink_metadata(&p).is_err() {
            if !chroot {
                return Err(format!("mountpoint {} does not exist", p.display()));
            }
            // Create missing ancestors one by one, remembering each.
            let mut missing = Vec::new();
            let mut a = p.parent();
            while let Some(d) = a {
                if d.exists() || d == root {
                    break;
                }
                missing.push(d.to_path_buf());
                a = d.parent();
            }
            for d in missing.into_iter().rev() {
                std::fs::create_dir(&d).map_err(|e| format!("creating {}: {e}", d.display()))?;
                created.paths.push(d);
            }
            if op.dst_is_dir() {
                std::fs::create_dir(&p)
            } else {
                std::fs::File::create(&p).map(drop)
            }
            .map_err(|e| format!("creating {}: {e}", p.display()))?;
            created.paths.push(p);
        } else if let FsOp::Symlink { .. } = op {
            // Something is already there; leave it.
            continue;
        }
        out.push(op.clone());
    }
    Ok(out)
}

/// Whether a host device node can be bound on `p`, a node of the tree's
/// /dev seen from outside: only when that /dev is a real directory and `p`
/// is a file or device node, or missing (then an empty file is made and
/// recorded for removal). Never through a symlink, which would take the
/// bind out of the tree.
fn tree_dev_mountpoint(p: &Path, created: &mut Created) -> Result<bool, String> {
    let dev_is_dir = p
        .parent()
        .and_then(|d| std::fs::symlink_metadata(d).ok())
        .is_some_and(|m| m.is_dir());
    if !dev_is_dir {
        return Ok(false);
    }
    match std::fs::symlink_metadata(p) {
        Ok(m) => {
            use std::os::unix::fs::FileTypeExt;
            Ok(m.is_file() || m.file_type().is_char_device())
        }
        Err(_) => {
            std::fs::File::create(p).map_err(|e| format!("creating {}: {e}", p.display()))?;
            created.paths.push(p.to_path_buf());
            Ok(true)
        }
    }
}

fn cleanup(c: &Created) {
    for m in c.mounts.iter().rev() {
        let _ = sys::unmount_lazy(m);
    }
    for p in c.paths.iter().rev() {
        let r = if p.is_dir() {
            std::fs::remove_dir(p)
        } else {
            std::fs::remove_file(p)
        };
        if let Err(e) = r {
            eprintln!("dibr sandbox: cannot remove {}: {e}", p.display());
        }
    }
}

/// Pid 1 of the new pid namespace.
fn pid1(h: &HelperArgs, root: &Path, ops: &[FsOp], alive: std::os::fd::OwnedFd) -> i32 {
    if sys::die_with_parent().is_err() {
        return SETUP_FAILED;
    }
    // H may have died before prctl: then the pipe is at EOF.
    let _ = rustix::io::ioctl_fionbio(&alive, true);
    let mut b = [0u8; 1];
    if let Ok(0) = rustix::io::read(&alive, &mut b) {
        return SETUP_FAILED;
    }
    drop(alive);
    if let Err(e) = apply(root, ops, h.proc_bind) {
        report(h, &e);
        return SETUP_FAILED;
    }
    if h.chroot {
        // A mount namespace of our own first: pivot_root moves the root of
        // every process of the namespace, and H must keep the host's to
        // clean up.
        let own_ns = sys::unshare(Namespaces {
            mount: true,
            ..Default::default()
        });
        if let Err(e) = own_ns
            .and_then(|()| sys::pivot_into(root))
            .and_then(|()| sys::bound_capabilities(sys::hook_capabilities(true)))
        {
            report(h, &e.to_string());
            return SETUP_FAILED;
        }
    }
    if let Err(e) = sys::chdir(&h.cwd) {
        report(h, &e.to_string());
        return SETUP_FAILED;
    }
    let mut cmd = Command::new(&h.argv[0]);
    cmd.args(&h.argv[1..]);
    // We are init: everything left when the command exits dies with us.
    spawn_and_reap(h, &mut cmd)
}

/// Start `cmd` with the sandbox's environment and reap every child (the
/// helper is pid 1 or a subreaper: orphans come to it) until the command
/// itself exits; returns its exit code (127/126 when it cannot start, as
/// a shell would).
pub(super) fn spawn_and_reap(h: &HelperArgs, cmd: &mut Command) -> i32 {
    cmd.env_clear().envs(h.env.iter().map(|(k, v)| (k, v)));
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            report(h, &format!("cannot run {:?}: {e}", h.argv[0]));
            return if e.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            };
        }
    };
    let want = child.id() as i32;
    loop {
        match sys::wait_any() {
            Ok((pid, st)) if pid == want => return sys::status_code(st),
            Ok(_) => continue,
            Err(_) => return 1,
        }
    }
}

/// Execute the plan below `root`.
fn apply(root: &Path, ops: &[FsOp], proc_bind: bool) -> Result<(), String> {
    let s = |e: SysError| e.to_string();
    let nosuid_nodev = MountFlags::NOSUID | MountFlags::NODEV;
    for op in ops {
        let dst = plan::host_path(root, op.dst());
        // Mountpoints inside our own tmpfs mounts are made here.
        if plan::is_nested(ops, op) && std::fs::symlink_metadata(&dst).is_err() {
            match op {
                FsOp::Symlink { .. } => {}
                o if o.dst_is_dir() => std::fs::create_dir(&dst)
                    .map_err(|e| format!("mkdir {}: {e}", dst.display()))?,
                _ => std::fs::File::create(&dst)
                    .map(drop)
                    .map_err(|e| format!("creating {}: {e}", dst.display()))?,
            }
        }
        match op {
            FsOp::Bind { src, ro, .. } => {
                sys::bind(src, &dst, true).map_err(s)?;
                if *ro {
                    sys::make_tree_ro(&dst)
                        .or_else(|_| sys::remount_bind_ro(&dst))
                        .map_err(s)?;
                }
            }
            FsOp::Proc { .. } if proc_bind => {
                // The container's /proc, where a fresh one is refused; on
                // the host's own /proc (outside hooks) there is nothing to do.
                if dst != Path::new("/proc") {
                    sys::bind(Path::new("/proc"), &dst, true).map_err(s)?
                }
            }
            FsOp::Proc { .. } => {
                sys::mount_fs("proc", &dst, nosuid_nodev | MountFlags::NOEXEC, "").map_err(s)?
            }
            FsOp::Sysfs { ro, .. } => {
                let mut fl = nosuid_nodev | MountFlags::NOEXEC;
                if *ro {
                    fl |= MountFlags::RDONLY;
                }
                if sys::mount_fs("sysfs", &dst, fl, "").is_err() {
                    // A new sysfs needs our own network namespace; bind the
                    // host's instead.
                    sys::bind(Path::new("/sys"), &dst, true).map_err(s)?;
                    if *ro {
                        sys::make_tree_ro(&dst)
                            .or_else(|_| sys::remount_bind_ro(&dst))
                            .map_err(s)?;
                    }
                }
            }
            FsOp::DevTmpfs { .. } => {
                sys::mount_fs("tmpfs", &dst, MountFlags::NOSUID, "mode=0755").map_err(s)?
            }
            FsOp::DevNode { name, .. } => {
                sys::bind(&Path::new("/dev").join(name), &dst, false).map_err(s)?
            }
            FsOp::Devpts { .. } => {
                let fl = MountFlags::NOSUID | MountFlags::NOEXEC;
                sys::mount_fs("devpts", &dst, fl, "newinstance,ptmxmode=0666,mode=0620")
                    .or_else(|_| sys::mount_fs("devpts", &dst, fl, "newinstance,ptmxmode=0666"))
                    .map_err(s)?
            }
            FsOp::Tmpfs { .. } => {
                sys::mount_fs("tmpfs", &dst, nosuid_nodev, "mode=1777").map_err(s)?
            }
            FsOp::Symlink { target, .. } => {
                if std::fs::symlink_metadata(&dst).is_err() {
                    std::os::unix::fs::symlink(target, &dst)
                        .map_err(|e| format!("symlink {}: {e}", dst.display()))?
                }
            }
            FsOp::ResolvConf { .. } => {
                sys::bind(Path::new("/etc/resolv.conf"), &dst, false).map_err(s)?;
                let _ = sys::remount_bind_ro(&dst);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helper_args_round_trip() {
        let h = HelperArgs {
            mode: "run".into(),
            parent: 42,
            map: IdMapping::Root,
            root: "/t r".into(),
            cwd: "/".into(),
            chroot: true,
            binds: vec![Bind::ro("/h", "/tmp/in_target.d")],
            env: vec![("A".into(), "b=c d".into())],
            status_file: Some("/s".into()),
            argv: vec!["sh".into(), "--".into(), "-c".into()],
            env_fd: Some(7),
            proc_bind: true,
            tree_dev: true,
            direct: Some(Direct::Fakeroot {
                fakechroot: "/usr/bin/fakechroot".into(),
                chroot: "/usr/sbin/chroot".into(),
            }),
        };
        let p = HelperArgs::parse(&h.to_args()).unwrap();
        assert_eq!(p.to_args(), h.to_args());
        assert_eq!(p.env, h.env);
        assert_eq!(p.argv, h.argv);
        assert_eq!(p.binds, h.binds);
        assert_eq!(p.direct, h.direct);
        assert!(p.proc_bind);
        assert!(p.tree_dev);
        assert_eq!(p.env_fd, Some(7));
        let block = env_block(&h.env);
        assert_eq!(parse_env_block(&block), h.env);
    }
}
