//! The build's work directory (DIB's TMP_BUILD_DIR): `hooks/`
//! (TMP_HOOKS_PATH), `mnt/` (TMP_MOUNT_PATH, the target tree) and `image/`
//! (TMP_IMAGE_DIR). Two builds by the same user never share one: the name
//! has the pid, time and a counter, and is created exclusively.

use std::io;
use std::path::{Path, PathBuf};

pub struct WorkDir {
    root: PathBuf,
    /// `.lock` in the work directory, flock(2)ed for as long as this build
    /// lives: a work directory whose lock can be taken belongs to a build
    /// that died (SIGKILL, a crash, a lost container) and may be reclaimed.
    _lock: std::fs::File,
}

/// The lock file's name inside a work directory.
const LOCK: &str = ".lock";
/// Marks a work directory kept on purpose (`--keep-on-error`): never
/// reclaimed automatically.
pub const KEPT: &str = ".kept";

/// Linux's tmpfs magic number (statfs(2)).
const TMPFS_MAGIC: i64 = 0x0102_1994;
const SHM: &str = "/dev/shm";

/// DIB builds in a tmpfs by default (`--no-tmpfs` turns it off,
/// `--min-tmpfs` sets the size it needs): the tree, written and read many
/// times and then removed, never needs to reach a disk. dibr cannot mount
/// one on the host, but `/dev/shm` is a tmpfs every user may write: it is
/// used when it has at least `min_gib` GiB free.
pub fn tmpfs_base(min_gib: u64) -> Option<PathBuf> {
    let st = rustix::fs::statfs(SHM).ok()?;
    #[allow(clippy::unnecessary_cast)] // f_type's width differs by libc
    let is_tmpfs = st.f_type as i64 == TMPFS_MAGIC;
    let free = (st.f_bavail as u64).saturating_mul(st.f_bsize as u64);
    let writable = rustix::fs::access(SHM, rustix::fs::Access::WRITE_OK).is_ok();
    (is_tmpfs && writable && free >= min_gib << 30).then(|| PathBuf::from(SHM))
}

impl WorkDir {
    /// Under `DIB_TMP_DIR`/`TMP_DIR`/`TMPDIR` when the user set one, else
    /// on the tmpfs `/dev/shm` when `tmpfs_min_gib` allows it (see
    /// [`tmpfs_base`]), else /tmp.
    pub fn create(tmpfs_min_gib: Option<u64>) -> io::Result<WorkDir> {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let base = std::env::var_os("DIB_TMP_DIR")
            .or_else(|| std::env::var_os("TMP_DIR"))
            .or_else(|| std::env::var_os("TMPDIR"))
            .map(PathBuf::from)
            .or_else(|| tmpfs_min_gib.and_then(tmpfs_base))
            .unwrap_or_else(std::env::temp_dir);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let root = base.join(format!(
            "dibr_build.{}.{nanos:x}.{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir(&root)?;
        let lock = std::fs::File::create(root.join(LOCK))?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive)?;
        let w = WorkDir { root, _lock: lock };
        for d in ["hooks", "mnt", "image"] {
            std::fs::create_dir(w.root.join(d))?;
        }
        Ok(w)
    }

    /// Mark the directory as kept by the user's request.
    pub fn keep(&self) -> io::Result<()> {
        std::fs::write(self.root.join(KEPT), b"")
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn hooks(&self) -> PathBuf {
        self.root.join("hooks")
    }
    pub fn target(&self) -> PathBuf {
        self.root.join("mnt")
    }
    pub fn image_dir(&self) -> PathBuf {
        self.root.join("image")
    }
}

/// Where work directories are made: the user's temporary directory
/// settings, /dev/shm and the system's temporary directory.
pub fn bases() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = ["DIB_TMP_DIR", "TMP_DIR", "TMPDIR"]
        .iter()
        .filter_map(std::env::var_os)
        .map(PathBuf::from)
        .collect();
    v.push(PathBuf::from(SHM));
    v.push(std::env::temp_dir());
    v.push(PathBuf::from("/tmp"));
    v.sort();
    v.dedup();
    v
}

/// Work directories of this user's builds that died: their lock is free
/// (or, made before locks existed, the pid in their name is gone), and
/// they were not kept on purpose.
pub fn stale() -> Vec<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let me = rustix::process::getuid().as_raw();
    let mut out = Vec::new();
    for base in bases() {
        let Ok(rd) = std::fs::read_dir(&base) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_prefix("dibr_build.") else {
                continue;
            };
            let mine = std::fs::symlink_metadata(&p).is_ok_and(|m| m.is_dir() && m.uid() == me);
            if !mine || p.join(KEPT).exists() {
                continue;
            }
            let dead = match std::fs::File::open(p.join(LOCK)) {
                Ok(f) => {
                    rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive)
                        .is_ok()
                }
                Err(_) => rest
                    .split('.')
                    .next()
                    .and_then(|pid| pid.parse::<u32>().ok())
                    .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists()),
            };
            if dead {
                out.push(p);
            }
        }
    }
    out
}

/// Bytes below `p` (best effort: what cannot be read counts as 0).
pub fn disk_usage(p: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(m) = std::fs::symlink_metadata(p) else {
        return 0;
    };
    let own = m.blocks() * 512;
    if !m.is_dir() {
        return own;
    }
    own + std::fs::read_dir(p)
        .map(|rd| rd.flatten().map(|e| disk_usage(&e.path())).sum::<u64>())
        .unwrap_or(0)
}

/// DIB's check after root.d: the tree is empty apart from lost+found and tmp.
pub fn is_empty_root(target: &Path) -> io::Result<bool> {
    for e in std::fs::read_dir(target)? {
        let n = e?.file_name();
        if n != "lost+found" && n != "tmp" {
            return Ok(false);
        }
    }
    Ok(true)
}
