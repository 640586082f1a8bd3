//! Loop mount (read-only), unmounted in Drop (a test that panics while
//! it is mounted still unmounts it and frees the loop device).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::*;

pub struct Mount {
    pub dir: PathBuf,
    mounted: bool,
    _tmp: tempfile::TempDir,
}

impl Mount {
    /// An ext4 image, read-only without replaying its journal.
    pub fn ro(img: &Path) -> Mount {
        Mount::with(img, None, "loop,ro,noload")
    }

    /// A squashfs image (`mount -t squashfs -o loop,ro`).
    pub fn squashfs(img: &Path) -> Mount {
        Mount::with(img, Some("squashfs"), "loop,ro")
    }

    /// An XFS image, read-only with log recovery as usual: the kernel
    /// refuses a read-only mount of a filesystem whose log needs
    /// recovery, so this mount also proves the log is clean.
    pub fn xfs(img: &Path) -> Mount {
        Mount::with(img, Some("xfs"), "loop,ro")
    }

    fn with(img: &Path, fstype: Option<&str>, opts: &str) -> Mount {
        let tmp = tempfile::Builder::new()
            .prefix("dibr-mnt-")
            .tempdir()
            .unwrap();
        let dir = tmp.path().join("m");
        fs::create_dir(&dir).unwrap();
        let mut c = Command::new(tool("mount"));
        if let Some(t) = fstype {
            c.arg("-t").arg(t);
        }
        run_ok(c.arg("-o").arg(opts).arg(img).arg(&dir));
        Mount {
            dir,
            mounted: true,
            _tmp: tmp,
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if !self.mounted {
            return;
        }
        for _ in 0..20 {
            let ok = Command::new(tool("umount"))
                .arg(&self.dir)
                .stdin(Stdio::null())
                .status()
                .map(|s| s.success());
            if ok.unwrap_or(false) {
                self.mounted = false;
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(250));
        }
        let _ = Command::new(tool("umount"))
            .arg("-l")
            .arg(&self.dir)
            .status();
        eprintln!("warning: {:?} needed a lazy unmount", self.dir);
    }
}
