//! The build's work directory (DIB's TMP_BUILD_DIR): `hooks/`
//! (TMP_HOOKS_PATH), `mnt/` (TMP_MOUNT_PATH, the target tree) and `image/`
//! (TMP_IMAGE_DIR). Two builds by the same user never share one: the name
//! has the pid, time and a counter, and is created exclusively.

use std::io;
use std::path::{Path, PathBuf};

pub struct WorkDir {
    root: PathBuf,
}

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
        let w = WorkDir { root };
        for d in ["hooks", "mnt", "image"] {
            std::fs::create_dir(w.root.join(d))?;
        }
        Ok(w)
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
