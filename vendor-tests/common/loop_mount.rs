//! Loop mount (read-only), unmounted in Drop.

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
    pub fn ro(img: &Path) -> Mount {
        let tmp = tempfile::Builder::new()
            .prefix("dibr-mnt-")
            .tempdir()
            .unwrap();
        let dir = tmp.path().join("m");
        fs::create_dir(&dir).unwrap();
        run_ok(
            Command::new(tool("mount"))
                .arg("-o")
                .arg("loop,ro,noload")
                .arg(img)
                .arg(&dir),
        );
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
