//! The uploaded file: its Glance `disk_format` (by its magic) and the
//! sha512 Glance computes over it (`os_hash_value`: the file's bytes
//! as uploaded, as `sha512sum` prints them).

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::Path;

use sha2::{Digest, Sha512};

use super::GlanceError;

pub struct Described {
    pub disk_format: &'static str,
    pub sha512: String,
}

/// `qcow2` (its magic), `vmdk` (a sparse extent's `KDMV` magic, VMware's
/// Virtual Disk Format 5.0), `vhd` (the `conectix` footer), else `raw`.
pub fn disk_format(f: &File, len: u64) -> std::io::Result<&'static str> {
    let mut magic = [0u8; 8];
    let n = f.read_at(&mut magic, 0)?;
    if n >= 4 && &magic[..4] == crate::output::qcow2::read::MAGIC {
        return Ok("qcow2");
    }
    if n >= 4 && &magic[..4] == b"KDMV" {
        return Ok("vmdk");
    }
    if len >= 512 {
        f.read_exact_at(&mut magic, len - 512)?;
        if &magic == b"conectix" {
            return Ok("vhd");
        }
    }
    Ok("raw")
}

pub fn describe(path: &Path) -> Result<Described, GlanceError> {
    let err = |source| GlanceError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut f = File::open(path).map_err(err)?;
    let len = f.metadata().map_err(err)?.len();
    let disk_format = disk_format(&f, len).map_err(err)?;
    let mut h = Sha512::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(err)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(Described {
        disk_format,
        sha512: format!("{:x}", h.finalize()),
    })
}
