//! core.img for a tree that was not prepared by the `bootloader` element:
//! the host's `grub-mkimage` over the tree's own i386-pc modules.
//!
//! grub-mkimage is an unprivileged file-to-file tool; with `-d` it takes
//! kernel.img, the modules and the decompressor from the directory given,
//! so the core it writes carries the image's GRUB, not the host's (the
//! module format has been stable across GRUB 2.0x; the `bootloader` element
//! avoids even that dependency by running the image's own grub-mkimage in
//! the sandbox).

use std::path::{Path, PathBuf};
use std::process::Command;

use super::collect::{BootCollector, GRUB_I386_DIR};
use super::{io_err, BootError};

/// A private scratch directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(base: &Path) -> Result<Scratch, BootError> {
        for i in 0..100u32 {
            let p = base.join(format!("dibr-grub.{}.{i}", std::process::id()));
            match std::fs::create_dir(&p) {
                Ok(()) => return Ok(Scratch(p)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io_err(format!("creating {}", p.display()))(e)),
            }
        }
        Err(BootError::Io {
            what: "creating a scratch directory for grub-mkimage".into(),
            source: std::io::Error::other("too many leftovers in the temp dir"),
        })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn write(dir: &Path, name: &str, data: &[u8]) -> Result<(), BootError> {
    let p = dir.join(name);
    std::fs::write(&p, data).map_err(io_err(format!("writing {}", p.display())))
}

/// `grub-mkimage -O i386-pc -d <tree's modules> -c early.cfg MODULES`, with
/// the tool and the scratch directory's parent as the caller found them
/// ([`super::BootSettings`]).
pub fn core_img(
    c: &BootCollector,
    early_cfg: &str,
    modules: &[&str],
    tool: Option<&Path>,
    scratch_base: &Path,
) -> Result<Vec<u8>, BootError> {
    let tool = tool.ok_or(BootError::NoMkimage)?;
    let scratch = Scratch::new(scratch_base)?;
    let dir = scratch.0.join("i386-pc");
    std::fs::create_dir(&dir).map_err(io_err(format!("creating {}", dir.display())))?;
    for (path, data) in c.files_under(GRUB_I386_DIR) {
        let name = &path[GRUB_I386_DIR.len()..];
        if !name.contains('/') {
            write(&dir, name, data)?;
        }
    }
    write(&scratch.0, "early.cfg", early_cfg.as_bytes())?;
    let out = scratch.0.join("core.img");
    let res = Command::new(tool)
        .arg("-O")
        .arg("i386-pc")
        .arg("-d")
        .arg(&dir)
        .arg("-o")
        .arg(&out)
        .arg("-c")
        .arg(scratch.0.join("early.cfg"))
        .arg("-p")
        .arg("/boot/grub")
        .args(modules)
        .output()
        .map_err(io_err(format!("running {}", tool.display())))?;
    if !res.status.success() {
        return Err(BootError::Mkimage {
            status: res.status.to_string(),
            stderr: String::from_utf8_lossy(&res.stderr).trim().to_string(),
        });
    }
    std::fs::read(&out).map_err(io_err(format!("reading {}", out.display())))
}
