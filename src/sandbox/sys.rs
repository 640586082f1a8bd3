//! Thin syscall wrappers for the sandbox. Every error names the syscall and
//! the path it was about, so a refusal deep inside the helper still tells
//! the user what was attempted.
//!
//! This file and `enter.rs` are the only places in dibr that may contain
//! `unsafe`; each block carries a `// SAFETY:` comment.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::io::Errno;
use rustix::mount::{MountFlags, MountPropagationFlags, UnmountFlags};

/// A failed system call: which one, on what, and the errno.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{call}({}): {errno}", path.display())]
pub struct SysError {
    pub call: &'static str,
    pub path: PathBuf,
    #[source]
    pub errno: Errno,
}

pub type SysResult<T> = Result<T, SysError>;

fn err(call: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(Errno) -> SysError {
    let path = path.into();
    move |errno| SysError { call, path, errno }
}

/// Namespaces to unshare.
#[derive(Debug, Clone, Copy, Default)]
pub struct Namespaces {
    pub user: bool,
    pub mount: bool,
    pub pid: bool,
}

/// unshare(2). Must be called from a single-threaded process when `user`
/// is set (the kernel refuses CLONE_NEWUSER with EINVAL otherwise).
pub fn unshare(ns: Namespaces) -> SysResult<()> {
    use rustix::thread::UnshareFlags;
    let mut flags = UnshareFlags::empty();
    let mut names = Vec::new();
    if ns.user {
        flags |= UnshareFlags::NEWUSER;
        names.push("CLONE_NEWUSER");
    }
    if ns.mount {
        flags |= UnshareFlags::NEWNS;
        names.push("CLONE_NEWNS");
    }
    if ns.pid {
        flags |= UnshareFlags::NEWPID;
        names.push("CLONE_NEWPID");
    }
    #[allow(unsafe_code)]
    // SAFETY: none of these flags (NEWUSER/NEWNS/NEWPID) unshares the file
    // descriptor table or the filesystem info (CLONE_FILES / CLONE_FS) of
    // a process whose other threads could observe it: callers only use this
    // in the freshly exec'ed, single-threaded `dibr __sandbox` helper.
    unsafe { rustix::thread::unshare_unsafe(flags) }.map_err(err("unshare", names.join("|")))
}

/// Outcome of [`fork`].
pub enum Fork {
    Parent(rustix::process::Pid),
    Child,
}

/// fork(2). Only for the single-threaded helper.
pub fn fork() -> SysResult<Fork> {
    assert!(
        single_threaded(),
        "sandbox: fork() called from a multi-threaded process"
    );
    #[allow(unsafe_code)]
    // SAFETY: the process is single-threaded (asserted above via
    // /proc/self/status), so the child does not inherit locks held by
    // other threads; it only runs ordinary Rust code afterwards.
    let r = unsafe { libc::fork() };
    match r {
        -1 => Err(SysError {
            call: "fork",
            path: PathBuf::new(),
            errno: Errno::from_io_error(&std::io::Error::last_os_error()).unwrap_or(Errno::INVAL),
        }),
        0 => Ok(Fork::Child),
        pid => Ok(Fork::Parent(
            rustix::process::Pid::from_raw(pid).expect("fork returned a positive pid"),
        )),
    }
}

/// Whether this process has exactly one thread (from /proc/self/status).
pub fn single_threaded() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:").map(|v| v.trim() == "1"))
        })
        .unwrap_or(false)
}

/// Make every mount below `/` private, recursively, so nothing we mount
/// propagates back to the host's mount namespace.
pub fn make_rprivate() -> SysResult<()> {
    rustix::mount::mount_change(
        "/",
        MountPropagationFlags::PRIVATE | MountPropagationFlags::REC,
    )
    .map_err(err("mount(MS_REC|MS_PRIVATE)", "/"))
}

pub fn mount_fs(fstype: &str, target: &Path, flags: MountFlags, data: &str) -> SysResult<()> {
    let call = match fstype {
        "proc" => "mount(proc)",
        "sysfs" => "mount(sysfs)",
        "tmpfs" => "mount(tmpfs)",
        "devpts" => "mount(devpts)",
        _ => "mount",
    };
    let data = CString::new(data).map_err(|_| SysError {
        call,
        path: target.into(),
        errno: Errno::INVAL,
    })?;
    rustix::mount::mount(fstype, target, fstype, flags, Some(data.as_c_str()))
        .map_err(err(call, target))
}

pub fn bind(src: &Path, dst: &Path, recursive: bool) -> SysResult<()> {
    if recursive {
        rustix::mount::mount_bind_recursive(src, dst).map_err(err("mount(MS_BIND|MS_REC)", dst))
    } else {
        rustix::mount::mount_bind(src, dst).map_err(err("mount(MS_BIND)", dst))
    }
}

/// Make a bind mount read-only. A remount inside a user namespace must keep
/// the flags the kernel locked on the original mount (nosuid, nodev,
/// noexec, atime flags), so they are read back with statvfs first.
pub fn remount_bind_ro(dst: &Path) -> SysResult<()> {
    let st = rustix::fs::statvfs(dst).map_err(err("statvfs", dst))?;
    let mut flags = MountFlags::BIND | MountFlags::RDONLY;
    use rustix::fs::StatVfsMountFlags as F;
    for (have, want) in [
        (F::NOSUID, MountFlags::NOSUID),
        (F::NODEV, MountFlags::NODEV),
        (F::NOEXEC, MountFlags::NOEXEC),
        (F::NOATIME, MountFlags::NOATIME),
        (F::NODIRATIME, MountFlags::NODIRATIME),
        (F::RELATIME, MountFlags::RELATIME),
    ] {
        if st.f_flag.contains(have) {
            flags |= want;
        }
    }
    rustix::mount::mount_remount(dst, flags, "")
        .map_err(err("mount(MS_REMOUNT|MS_BIND|MS_RDONLY)", dst))
}

/// mount_setattr(2) with AT_RECURSIVE and MOUNT_ATTR_RDONLY: makes a
/// recursive bind and all its submounts read-only (Linux >= 5.12).
pub fn make_tree_ro(dst: &Path) -> SysResult<()> {
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    const MOUNT_ATTR_RDONLY: u64 = 0x1;
    let c = CString::new(dst.as_os_str().as_bytes()).map_err(|_| SysError {
        call: "mount_setattr",
        path: dst.into(),
        errno: Errno::INVAL,
    })?;
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_RDONLY,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    #[allow(unsafe_code)]
    // SAFETY: `c` is a valid NUL-terminated path that outlives the call,
    // `attr` is a properly initialised `struct mount_attr` (v0 layout, 32
    // bytes) and its size is passed; the kernel only reads both.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            c.as_ptr(),
            libc::AT_RECURSIVE as libc::c_uint,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r == -1 {
        return Err(SysError {
            call: "mount_setattr(AT_RECURSIVE, MOUNT_ATTR_RDONLY)",
            path: dst.into(),
            errno: Errno::from_io_error(&std::io::Error::last_os_error()).unwrap_or(Errno::INVAL),
        });
    }
    Ok(())
}

pub fn unmount_lazy(dst: &Path) -> SysResult<()> {
    rustix::mount::unmount(dst, UnmountFlags::DETACH).map_err(err("umount2(MNT_DETACH)", dst))
}

/// Make `dir` the root of this mount namespace with pivot_root(2) and
/// detach the old root, so nothing of the host's filesystem is left to
/// climb back to (a chroot(2) can be left by any process holding
/// CAP_SYS_CHROOT, which a hook has in its user namespace). `dir` must be
/// a mount point (the helper binds the tree onto itself). The
/// `pivot_root(".", ".")` form stacks the old root on the new one, and
/// the lazy unmount of "." then removes it (pivot_root(2), NOTES).
pub fn pivot_into(dir: &Path) -> SysResult<()> {
    chdir(dir)?;
    rustix::process::pivot_root(".", ".").map_err(err("pivot_root", dir))?;
    rustix::mount::unmount(".", UnmountFlags::DETACH).map_err(err("umount2(old root)", dir))?;
    chdir(Path::new("/"))
}

pub fn chdir(dir: &Path) -> SysResult<()> {
    rustix::process::chdir(dir).map_err(err("chdir", dir))
}

/// PR_SET_PDEATHSIG(SIGKILL): die when the parent (thread) dies.
/// The capabilities in-target hooks keep: Docker's default set (its
/// `oci/caps/defaults.go`), which is what package managers and maintainer
/// scripts are known to run with — owners, modes, setuid/setgid, file
/// capabilities (`setcap` in postinst), device nodes where the kernel
/// allows them. Everything that reaches past the tree is dropped: mounts
/// and namespaces (CAP_SYS_ADMIN), `open_by_handle_at` (CAP_DAC_READ_SEARCH,
/// the "shocker" escape), ptrace, modules, raw I/O, the clock, the network
/// configuration. `with_chroot` keeps CAP_SYS_CHROOT, which only the
/// pivot_root sandbox can afford (chroot mode's one wall is a chroot).
pub fn hook_capabilities(with_chroot: bool) -> rustix::thread::CapabilitySet {
    use rustix::thread::CapabilitySet as C;
    let base = C::CHOWN
        | C::DAC_OVERRIDE
        | C::FSETID
        | C::FOWNER
        | C::MKNOD
        | C::NET_RAW
        | C::SETGID
        | C::SETUID
        | C::SETFCAP
        | C::SETPCAP
        | C::NET_BIND_SERVICE
        | C::KILL
        | C::AUDIT_WRITE;
    if with_chroot {
        base | C::SYS_CHROOT
    } else {
        base
    }
}

/// Drop every capability not in `keep` from the bounding set (prctl
/// PR_CAPBSET_DROP, capabilities(7)): after the next execve even uid 0
/// cannot hold them. Async-signal-safe (no allocation), so it may run
/// between fork and exec.
pub fn bound_capabilities(keep: rustix::thread::CapabilitySet) -> SysResult<()> {
    for n in 0..64u32 {
        let cap = rustix::thread::CapabilitySet::from_bits_retain(1u64 << n);
        if keep.contains(cap) {
            continue;
        }
        match rustix::thread::remove_capability_from_bounding_set(cap) {
            Ok(()) => {}
            // Past the kernel's CAP_LAST_CAP.
            Err(Errno::INVAL) => break,
            Err(e) => return Err(err("prctl(PR_CAPBSET_DROP)", "")(e)),
        }
    }
    Ok(())
}

pub fn die_with_parent() -> SysResult<()> {
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
        .map_err(err("prctl(PR_SET_PDEATHSIG)", ""))
}

pub fn getppid() -> Option<u32> {
    rustix::process::getppid().map(|p| p.as_raw_nonzero().get() as u32)
}

/// Drop supplementary groups (setgroups(0, NULL)).
pub fn clear_groups() -> SysResult<()> {
    rustix::thread::set_thread_groups(&[]).map_err(err("setgroups", ""))
}

pub fn kill(pid: u32, sig: rustix::process::Signal) -> SysResult<()> {
    let p = rustix::process::Pid::from_raw(pid as i32).ok_or(SysError {
        call: "kill",
        path: PathBuf::new(),
        errno: Errno::SRCH,
    })?;
    rustix::process::kill_process(p, sig).map_err(err("kill", ""))
}

/// A pipe whose ends are closed on exec.
pub fn pipe() -> SysResult<(std::os::fd::OwnedFd, std::os::fd::OwnedFd)> {
    rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(err("pipe2", ""))
}

/// Wait for any child; returns (pid, status) or ECHILD.
pub fn wait_any() -> SysResult<(i32, rustix::process::WaitStatus)> {
    loop {
        match rustix::process::wait(rustix::process::WaitOptions::empty()) {
            Ok(Some((pid, st))) => return Ok((pid.as_raw_nonzero().get(), st)),
            Ok(None) => continue,
            Err(Errno::INTR) => continue,
            Err(e) => return Err(err("wait", "")(e)),
        }
    }
}

/// Wait for one specific child.
pub fn wait_pid(pid: rustix::process::Pid) -> SysResult<rustix::process::WaitStatus> {
    loop {
        match rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty()) {
            Ok(Some((_, st))) => return Ok(st),
            Ok(None) => continue,
            Err(Errno::INTR) => continue,
            Err(e) => return Err(err("waitpid", "")(e)),
        }
    }
}

/// Translate a wait status into a shell-style exit code (128+signal).
pub fn status_code(st: rustix::process::WaitStatus) -> i32 {
    if let Some(c) = st.exit_status() {
        c
    } else if let Some(s) = st.terminating_signal() {
        128 + s
    } else {
        1
    }
}

/// Exit immediately without running destructors or flushing stdio buffers
/// shared with the parent (used in forked children).
pub fn exit_now(code: i32) -> ! {
    #[allow(unsafe_code)]
    // SAFETY: _exit(2) takes no pointers and never returns; skipping atexit
    // handlers and stdio flushing is exactly what a forked child wants.
    unsafe {
        libc::_exit(code)
    }
}

/// PR_SET_CHILD_SUBREAPER: orphaned descendants (a hook's double-forked
/// daemon) are re-parented to this process instead of the container's init,
/// so the namespace-free modes can find and kill them (prctl(2)).
pub fn become_subreaper() -> SysResult<()> {
    rustix::process::set_child_subreaper(Some(rustix::process::getpid()))
        .map_err(err("prctl(PR_SET_CHILD_SUBREAPER)", ""))
}

/// Wait for any child without blocking; `None` when none has exited (or
/// there is none).
pub fn try_wait_any() -> Option<(i32, rustix::process::WaitStatus)> {
    match rustix::process::wait(rustix::process::WaitOptions::NOHANG) {
        Ok(Some((pid, st))) => Some((pid.as_raw_nonzero().get(), st)),
        _ => None,
    }
}

/// mknod(2) of a character device (chroot mode's /dev, as root).
pub fn mknod_char(path: &Path, mode: u32, major: u32, minor: u32) -> SysResult<()> {
    use rustix::fs::{FileType, Mode};
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        FileType::CharacterDevice,
        Mode::from_raw_mode(mode),
        rustix::fs::makedev(major, minor),
    )
    .map_err(err("mknod", path))
}

/// Make `cmd` chroot into `root` and chdir to `cwd` between fork and exec
/// (chroot mode: no namespaces, the command itself enters the tree), and
/// die with its parent.
pub fn command_in_chroot(cmd: &mut std::process::Command, root: &Path, cwd: &Path) {
    use std::os::unix::process::CommandExt;
    let root = CString::new(root.as_os_str().as_bytes()).unwrap_or_default();
    let cwd = CString::new(cwd.as_os_str().as_bytes()).unwrap_or_default();
    #[allow(unsafe_code)]
    // SAFETY: the closure runs in the forked child before exec and only
    // makes async-signal-safe system calls (prctl, chroot, chdir) on
    // C strings allocated before the fork; it touches no locks or heap
    // (bound_capabilities is prctl calls on integers).
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0
                || libc::chroot(root.as_ptr()) != 0
                || libc::chdir(c"/".as_ptr()) != 0
                || libc::chdir(cwd.as_ptr()) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            // Without CAP_SYS_CHROOT the chroot cannot be left by the
            // classic second chroot.
            bound_capabilities(hook_capabilities(false))
                .map_err(|e| std::io::Error::from_raw_os_error(e.errno.raw_os_error()))
        });
    }
}

/// Make `cmd` die with its parent (PR_SET_PDEATHSIG between fork and exec):
/// for helpers such as fakeroot's `faked` that must not outlive dibr.
pub fn command_dies_with_parent(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    #[allow(unsafe_code)]
    // SAFETY: prctl is async-signal-safe and the closure captures nothing.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Mark every descriptor from `first` up close-on-exec, so the command the
/// helper starts inherits only what it is meant to (stdio): whatever the
/// caller's process had open (a pipe of the terminal's or a CI runner's,
/// a memfd) stays out of the hooks.
pub fn cloexec_from(first: i32) {
    let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .filter(|&n| n >= first)
                .collect()
        })
        .unwrap_or_default();
    for n in fds {
        #[allow(unsafe_code)]
        // SAFETY: `n` was listed in /proc/self/fd a moment ago and this
        // helper is single-threaded, so nothing closed or reused it since;
        // the borrow only lives for the fcntl(F_SETFD) that sets a flag.
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(n) };
        let _ = rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::CLOEXEC);
    }
}

/// An anonymous file holding `data` whose descriptor a child inherits
/// (no close-on-exec): the hook environment travels to the helper this
/// way, not on its command line, where `ps` shows it to every user.
pub fn inheritable_memfd(data: &[u8]) -> SysResult<std::os::fd::OwnedFd> {
    let fd = rustix::fs::memfd_create("dibr-env", rustix::fs::MemfdFlags::empty())
        .map_err(err("memfd_create", ""))?;
    let mut f = std::fs::File::from(fd);
    std::io::Write::write_all(&mut f, data).map_err(|e| SysError {
        call: "write",
        path: "memfd:dibr-env".into(),
        errno: Errno::from_io_error(&e).unwrap_or(Errno::IO),
    })?;
    Ok(f.into())
}
