//! The helper side of the namespace-free modes (`super::mode`): chroot mode
//! (root without CAP_SYS_ADMIN) and fakeroot mode (an ordinary user).
//!
//! Without a mount namespace nothing can be bound into the tree, so the
//! helper prepares it by hand and undoes it afterwards: the bind sources
//! (the hooks, at /tmp/in_target.d) are copied in, the host's resolv.conf
//! replaces the tree's for the duration (the original is put back), and in
//! chroot mode the standard character devices are made in /dev with
//! mknod(2) (fakechroot leaves /dev, /proc and /sys to the host's).
//! Without a pid namespace the helper makes itself a child subreaper
//! (prctl(2)), so a daemon a hook leaves behind — double-forked or not — is
//! re-parented to it and killed when the command ends.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::enter::{Direct, HelperArgs};
use super::plan::{host_path, Bind};
use super::sys;

/// Standard character devices (Documentation/admin-guide/devices.txt):
/// name, major, minor.
const DEVICES: [(&str, u32, u32); 6] = [
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

/// What the helper changed in the tree, to undo in reverse order.
#[derive(Default)]
struct Prepared {
    /// Created files and directories, removed afterwards.
    created: Vec<PathBuf>,
    /// Directories whose copied-in contents are removed afterwards.
    emptied: Vec<PathBuf>,
    /// (saved copy, original place): renamed back afterwards.
    saved: Vec<(PathBuf, PathBuf)>,
}

/// Run the command of `h` in a namespace-free mode; returns its exit code.
pub fn run(h: &HelperArgs) -> Result<i32, String> {
    let Some(kind) = &h.direct else {
        return Err("no namespace-free mode given".into());
    };
    if h.argv.is_empty() {
        return Err("no command given".into());
    }
    sys::become_subreaper().map_err(|e| e.to_string())?;
    let mut prepared = Prepared::default();
    let result = prepare(h, kind, &mut prepared).and_then(|()| spawn_and_wait(h, kind));
    let killed = kill_leftovers();
    prepared.undo();
    if killed > 0 {
        eprintln!("dibr: killed {killed} process(es) the hooks left running");
    }
    result
}

/// Make the tree ready: copies for binds, devices, resolv.conf.
fn prepare(h: &HelperArgs, kind: &Direct, p: &mut Prepared) -> Result<(), String> {
    if !h.chroot {
        if let Some(b) = h.binds.first() {
            return Err(format!(
                "binding {} outside the tree needs the namespace sandbox",
                b.src.display()
            ));
        }
        if h.tree_dev && *kind == Direct::Chroot {
            make_devices(&h.root, p)?;
        }
        return Ok(());
    }
    for b in &h.binds {
        copy_bind(&h.root, b, p)?;
    }
    if *kind == Direct::Chroot {
        make_devices(&h.root, p)?;
    }
    host_resolv_conf(&h.root, p)
}

/// A bind becomes a copy of its source (read-only binds only: changes
/// could not flow back).
fn copy_bind(root: &Path, b: &Bind, p: &mut Prepared) -> Result<(), String> {
    if !b.ro {
        return Err(format!(
            "a writable bind of {} needs the namespace sandbox",
            b.src.display()
        ));
    }
    let dst = host_path(root, &b.dst);
    if !dst.exists() {
        std::fs::create_dir_all(&dst).map_err(|e| format!("creating {}: {e}", dst.display()))?;
        p.created.push(dst.clone());
    } else {
        p.emptied.push(dst.clone());
    }
    let st = Command::new("cp")
        .arg("-a")
        .arg("--")
        .arg(b.src.join("."))
        .arg(&dst)
        .status()
        .map_err(|e| format!("running cp: {e}"))?;
    if !st.success() {
        return Err(format!(
            "copying {} to {} failed ({st})",
            b.src.display(),
            dst.display()
        ));
    }
    Ok(())
}

/// /dev/null and friends in the tree, as real device nodes (root may
/// mknod; Docker's device cgroup allows these).
fn make_devices(root: &Path, p: &mut Prepared) -> Result<(), String> {
    let dev = root.join("dev");
    if !dev.exists() {
        std::fs::create_dir(&dev).map_err(|e| format!("creating {}: {e}", dev.display()))?;
        p.created.push(dev.clone());
    }
    for (name, major, minor) in DEVICES {
        let path = dev.join(name);
        if std::fs::symlink_metadata(&path).is_ok() {
            continue;
        }
        sys::mknod_char(&path, 0o666, major, minor).map_err(|e| e.to_string())?;
        // The umask may have taken bits away.
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666));
        p.created.push(path);
    }
    Ok(())
}

/// The host's resolv.conf in the tree while hooks run (DIB copies it in
/// too), unless the tree's is a symlink (left alone, as the namespace
/// sandbox does) or the host has none.
fn host_resolv_conf(root: &Path, p: &mut Prepared) -> Result<(), String> {
    let host = Path::new("/etc/resolv.conf");
    let Ok(text) = std::fs::read(host) else {
        return Ok(());
    };
    let etc = root.join("etc");
    if !etc.is_dir() {
        return Ok(());
    }
    let dst = etc.join("resolv.conf");
    match std::fs::symlink_metadata(&dst) {
        Ok(m) if m.file_type().is_symlink() => return Ok(()),
        Ok(_) => {
            let saved = etc.join(".resolv.conf.dibr-saved");
            std::fs::rename(&dst, &saved).map_err(|e| format!("saving {}: {e}", dst.display()))?;
            p.saved.push((saved, dst.clone()));
        }
        Err(_) => p.created.push(dst.clone()),
    }
    std::fs::write(&dst, text).map_err(|e| format!("writing {}: {e}", dst.display()))
}

impl Prepared {
    fn undo(&mut self) {
        for (saved, orig) in self.saved.drain(..).rev() {
            if let Err(e) = std::fs::rename(&saved, &orig) {
                eprintln!("dibr sandbox: cannot restore {}: {e}", orig.display());
            }
        }
        for d in self.emptied.drain(..) {
            if let Ok(rd) = std::fs::read_dir(&d) {
                for e in rd.flatten() {
                    let _ = remove_all(&e.path());
                }
            }
        }
        for path in self.created.drain(..).rev() {
            let r = match std::fs::symlink_metadata(&path) {
                Ok(m) if m.is_dir() => remove_all(&path),
                Ok(_) => std::fs::remove_file(&path),
                Err(_) => Ok(()),
            };
            if let Err(e) = r {
                eprintln!("dibr sandbox: cannot remove {}: {e}", path.display());
            }
        }
    }
}

/// Start the command as the mode runs it and wait for it (reaping any
/// orphan that exits meanwhile); returns its exit code.
fn spawn_and_wait(h: &HelperArgs, kind: &Direct) -> Result<i32, String> {
    let mut cmd = match (kind, h.chroot) {
        (Direct::Fakeroot { fakechroot, chroot }, true) => {
            let mut c = Command::new(fakechroot);
            c.arg(chroot).arg(&h.root).args(&h.argv);
            sys::command_dies_with_parent(&mut c);
            c
        }
        (Direct::Chroot, true) => {
            let mut c = Command::new(&h.argv[0]);
            c.args(&h.argv[1..]);
            sys::command_in_chroot(&mut c, &h.root, &h.cwd);
            c
        }
        (_, false) => {
            let mut c = Command::new(&h.argv[0]);
            c.args(&h.argv[1..]).current_dir(&h.cwd);
            sys::command_dies_with_parent(&mut c);
            c
        }
    };
    Ok(super::enter::spawn_and_reap(h, &mut cmd))
}

/// Kill every process left below this subreaper (children, and orphans
/// re-parented to it as their parents die), reaping them; returns how many
/// were alive.
fn kill_leftovers() -> usize {
    let mut killed = std::collections::BTreeSet::new();
    for _ in 0..200 {
        while sys::try_wait_any().is_some() {}
        let kids = children();
        if kids.is_empty() {
            break;
        }
        for pid in kids {
            if sys::kill(pid, rustix::process::Signal::KILL).is_ok() && !is_zombie(pid) {
                killed.insert(pid);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    while sys::try_wait_any().is_some() {}
    killed.len()
}

/// This process's children (proc(5): /proc/PID/task/TID/children).
fn children() -> Vec<u32> {
    let me = std::process::id();
    std::fs::read_to_string(format!("/proc/{me}/task/{me}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, r)| r.starts_with('Z')))
        .unwrap_or(true)
}

/// Remove a tree that holds only files of our own ids, first giving back
/// the write and search permission a hook may have taken from a
/// directory (an ordinary user cannot delete from `chmod 555` dirs).
pub fn remove_all(path: &Path) -> io::Result<()> {
    match std::fs::remove_dir_all(path) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(_) => {}
    }
    open_up(path);
    std::fs::remove_dir_all(path)
}

/// chmod u+rwx every directory below `path` (symlinks not followed).
fn open_up(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(m) = std::fs::symlink_metadata(path) else {
        return;
    };
    if !m.is_dir() {
        return;
    }
    let mode = m.permissions().mode() | 0o700;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode));
    if let Ok(rd) = std::fs::read_dir(path) {
        for e in rd.flatten() {
            open_up(&e.path());
        }
    }
}
