//! The build's work directory (DIB's TMP_BUILD_DIR): `hooks/`
//! (TMP_HOOKS_PATH), `mnt/` (TMP_MOUNT_PATH, the target tree) and `image/`
//! (TMP_IMAGE_DIR). Two builds by the same user never share one: the name
//! has the pid, time and a counter, and is created exclusively.

use std::io;
use std::path::{Path, PathBuf};

pub struct WorkDir {
    root: PathBuf,
}

impl WorkDir {
    /// Under `$TMPDIR` (default /tmp), or `DIB_TMP_DIR`/`TMP_DIR` as DIB reads them.
    pub fn create() -> io::Result<WorkDir> {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let base = std::env::var_os("DIB_TMP_DIR")
            .or_else(|| std::env::var_os("TMP_DIR"))
            .map(PathBuf::from)
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
