//! The private directory a `dibr vm` run keeps its NoCloud seed and its
//! copy of the UEFI variables in, under the temporary directory.
//!
//! A run removes it when qemu exits or on ^C/SIGTERM, but a run that is
//! killed (SIGKILL, an OOM kill, a CI job's timeout killing the process
//! group) cannot. Each directory therefore holds a lock file that its run
//! keeps locked (flock(2)) for as long as it lives; the next `dibr vm` of
//! the same user removes the directories whose lock is free and whose run
//! is gone, as `dibr build` reclaims the work directories of dead builds.

use std::fs::File;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::vm::VmError;

/// `dibr-vm.PID.NANOS`: the pid says whose it is at a glance (and is
/// checked too, see [`reclaim_stale`]).
const PREFIX: &str = "dibr-vm.";
/// Locked by the run that made the directory, for as long as it runs.
const LOCK: &str = "lock";

/// A run's directory; removed when dropped. Holds its lock.
pub struct VmDir {
    pub path: PathBuf,
    _lock: File,
}

impl VmDir {
    /// Makes `BASE/dibr-vm.PID.NANOS` (mode 0700) and locks it.
    pub fn create(base: &Path) -> Result<VmDir, VmError> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let path = base.join(format!("{PREFIX}{}.{nanos:08x}", std::process::id()));
        let io = |source| VmError::Io {
            path: path.clone(),
            source,
        };
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(io)?;
        let lock = File::create(path.join(LOCK)).map_err(io)?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive)
            .map_err(|e| io(e.into()))?;
        Ok(VmDir { path, _lock: lock })
    }
}

impl Drop for VmDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Removes this user's run directories under `base` whose run died:
/// the lock is free (or missing: killed between making the directory and
/// locking it, or made before locks existed) and no process has the pid in
/// the name. Both must hold, so a run in another pid namespace sharing
/// `/tmp` (its lock is held) and a run between `mkdir` and `flock` (its
/// pid is alive) are left alone. Returns how many were removed.
pub fn reclaim_stale(base: &Path) -> usize {
    let me = rustix::process::getuid().as_raw();
    let Ok(rd) = std::fs::read_dir(base) else {
        return 0;
    };
    let mut n = 0;
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let p = e.path();
        let mine = std::fs::symlink_metadata(&p).is_ok_and(|m| m.is_dir() && m.uid() == me);
        if !mine || !lock_is_free(&p) || pid_alive(rest) {
            continue;
        }
        if std::fs::remove_dir_all(&p).is_ok() {
            n += 1;
        }
    }
    n
}

fn lock_is_free(dir: &Path) -> bool {
    match File::open(dir.join(LOCK)) {
        Ok(f) => {
            rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_ok()
        }
        Err(_) => true,
    }
}

/// Whether the pid at the start of `PID.NANOS` is a running process (a
/// name that does not parse counts as alive: not ours to remove).
fn pid_alive(rest: &str) -> bool {
    match rest.split('.').next().and_then(|p| p.parse::<u32>().ok()) {
        Some(pid) => Path::new(&format!("/proc/{pid}")).exists(),
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pid no process has: above the kernel's pid_max ceiling (2^22).
    const DEAD_PID: u32 = 4_194_305;

    fn dead_dir(base: &Path, tag: &str, lock: bool) -> PathBuf {
        let d = base.join(format!("{PREFIX}{DEAD_PID}.{tag}"));
        std::fs::create_dir(&d).unwrap();
        std::fs::write(d.join("seed.img"), b"seed").unwrap();
        if lock {
            std::fs::write(d.join(LOCK), b"").unwrap();
        }
        d
    }

    #[test]
    fn a_killed_runs_directory_is_removed_a_live_one_is_not() {
        let base = std::env::temp_dir().join(format!("dibr-vmdir-test.{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir(&base).unwrap();
        // Killed after locking, and killed before locking.
        let killed = dead_dir(&base, "00000001", true);
        let unlocked = dead_dir(&base, "00000002", false);
        // Dead pid but the lock is held (a run in another pid namespace).
        let held = dead_dir(&base, "00000003", true);
        let holder = File::open(held.join(LOCK)).unwrap();
        rustix::fs::flock(
            &holder,
            rustix::fs::FlockOperation::NonBlockingLockExclusive,
        )
        .unwrap();
        // This run's own directory: locked, and its pid alive.
        let live = VmDir::create(&base).unwrap();
        // Not a run directory at all.
        std::fs::create_dir(base.join("dibr-vmx.1.2")).unwrap();

        assert_eq!(reclaim_stale(&base), 2);
        assert!(!killed.exists() && !unlocked.exists());
        assert!(held.join("seed.img").exists());
        assert!(live.path.join(LOCK).exists());
        assert!(base.join("dibr-vmx.1.2").exists());
        drop(holder);
        assert_eq!(reclaim_stale(&base), 1, "the lock was let go");
        let live_path = live.path.clone();
        drop(live);
        assert!(!live_path.exists());
        std::fs::remove_dir_all(&base).unwrap();
    }
}
