//! The end of a build, for the person who started it: each output with
//! its size on disk and the disk size a VM sees, how far the root
//! filesystem can grow, the side files, the log, and the commands that
//! come next (mkosi ends its builds the same way; DIB prints only the
//! names).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::units::human;

/// What the summary reports.
pub struct Summary<'a> {
    pub outputs: &'a [PathBuf],
    /// Files the elements wrote themselves (`no-final-image` builds).
    pub by_elements: &'a [String],
    /// Outputs that replaced a file of the same name.
    pub replaced: &'a [PathBuf],
    /// The root filesystem's online growth ceiling (disk outputs).
    pub growth_ceiling: Option<u64>,
    pub seconds: f64,
    pub log: Option<PathBuf>,
}

/// The lines of the summary.
pub fn lines(s: &Summary) -> Vec<String> {
    let mut out = vec![headline(s)];
    for o in s.outputs {
        out.push(format!("  {}", describe(o, s.replaced.contains(o))));
    }
    if let Some(c) = s.growth_ceiling {
        out.push(format!(
            "  the root filesystem grows with the disk (growroot, or resize2fs online) up to {}",
            human(c)
        ));
    }
    let side = side_files(s.outputs);
    if !side.is_empty() {
        out.push(format!("  beside it: {}", side.join(", ")));
    }
    if let Some(l) = &s.log {
        out.push(format!("  build log: {}", l.display()));
    }
    out.extend(next_commands(s.outputs));
    out
}

/// `dibr: build finished in 77.2s: a.qcow2, b.raw` (the line scripts and
/// tests look for).
fn headline(s: &Summary) -> String {
    let listed = if s.outputs.is_empty() {
        if s.by_elements.is_empty() {
            "no image (no-final-image)".to_string()
        } else {
            format!("{} (written by the elements)", s.by_elements.join(", "))
        }
    } else {
        s.outputs
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!("dibr: build finished in {:.1}s: {listed}", s.seconds)
}

/// `debian.qcow2: 412.31 MiB, a 6.92 GiB disk (replaced the previous file)`.
fn describe(path: &Path, replaced: bool) -> String {
    let name = path
        .file_name()
        .unwrap_or(path.as_os_str())
        .to_string_lossy();
    let size = std::fs::metadata(path).map(|m| m.len()).ok();
    let mut d = match (size, virtual_size(path)) {
        (Some(s), Some(v)) => format!("{name}: {}, a {} disk", human(s), human(v)),
        (Some(s), None) => format!("{name}: {}", human(s)),
        (None, _) => name.into_owned(),
    };
    if replaced {
        d.push_str(" (replaced the file that was there)");
    }
    d
}

/// The size of the disk a VM sees: qcow2's header field `size` (qemu's
/// docs/interop/qcow2.txt), a VHD footer's current size (Microsoft's VHD
/// specification), a raw image's length; `None` for archives.
fn virtual_size(path: &Path) -> Option<u64> {
    let f = File::open(path).ok()?;
    let len = f.metadata().ok()?.len();
    let ext = path.extension()?.to_str()?;
    match ext {
        "qcow2" => {
            let src = crate::image_io::FileSource { file: &f, len };
            crate::output::qcow2::read::read_header(&src)
                .ok()
                .map(|h| h.size)
        }
        "vhd" => {
            let mut foot = [0u8; 512];
            f.read_exact_at(&mut foot, len.checked_sub(512)?).ok()?;
            (&foot[0..8] == b"conectix")
                .then(|| u64::from_be_bytes(foot[48..56].try_into().unwrap_or_default()))
        }
        "vmdk" => {
            // A sparse extent header: "KDMV", version, flags, then the
            // capacity in sectors, little-endian (VMware's Virtual Disk
            // Format 5.0).
            let mut h = [0u8; 20];
            f.read_exact_at(&mut h, 0).ok()?;
            (&h[0..4] == b"KDMV")
                .then(|| u64::from_le_bytes(h[12..20].try_into().unwrap_or_default()) * 512)
        }
        "raw" => Some(len),
        _ => None,
    }
}

/// Checksums and manifests written beside the outputs.
fn side_files(outputs: &[PathBuf]) -> Vec<String> {
    let mut side = Vec::new();
    for o in outputs {
        for ext in ["sha256", "md5"] {
            let mut p = o.as_os_str().to_owned();
            p.push(format!(".{ext}"));
            let p = PathBuf::from(p);
            if p.is_file() {
                side.push(p.display().to_string());
            }
        }
    }
    if let Some(o) = outputs.first() {
        let d = o.with_extension("d");
        if d.join("dib-manifests").is_dir() {
            side.push(format!("{}/dib-manifests", d.display()));
        }
    }
    side
}

/// How to use what was built: boot and check a disk image.
fn next_commands(outputs: &[PathBuf]) -> Vec<String> {
    let Some(disk) = outputs.iter().find(|o| {
        // What `dibr vm` and `dibr check` read.
        o.extension().is_some_and(|e| e == "qcow2" || e == "raw")
    }) else {
        return Vec::new();
    };
    let shown = shell_word(disk);
    let mut next = vec![
        "next:".to_string(),
        format!("  dibr vm {shown}      boot it; log in with `ssh` as the command prints (your ~/.ssh key, through a NoCloud seed)"),
        format!("  dibr check {shown}   check it as OpenStack would boot it"),
    ];
    // The upload, with the properties read from the image
    // (NAME.TYPE.glance.json beside it; docs/glance.md).
    if let Ok(line) = crate::inspect::glance::openstack::command_for_output(disk) {
        next.push(format!("  {line}"));
    }
    next
}

/// The path as the user would type it: relative to the working
/// directory when inside it, quoted when it has to be.
fn shell_word(p: &Path) -> String {
    let cwd = std::env::current_dir().ok();
    let rel = cwd
        .as_deref()
        .and_then(|c| p.strip_prefix(c).ok())
        .unwrap_or(p);
    let s = rel.display().to_string();
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_./+,:=@".contains(c))
    {
        s
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_of_qcow2_vhd_and_raw() {
        let d = std::env::temp_dir().join(format!("dibr-summary-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        // A real qcow2 of a sparse 7 GiB raw disk.
        let raw = std::fs::File::create(d.join("src.raw")).unwrap();
        raw.set_len(7 << 30).unwrap();
        crate::output::qcow2::write_qcow2(
            &d.join("src.raw"),
            &d.join("a.qcow2"),
            &crate::output::qcow2::Qcow2Options::default(),
        )
        .unwrap();
        let mut v = vec![0u8; 1024];
        v[512..520].copy_from_slice(b"conectix");
        v[512 + 48..512 + 56].copy_from_slice(&(3u64 << 20).to_be_bytes());
        std::fs::write(d.join("a.vhd"), &v).unwrap();
        std::fs::write(d.join("a.raw"), vec![0u8; 4096]).unwrap();
        std::fs::write(d.join("a.tar"), b"x").unwrap();
        assert_eq!(virtual_size(&d.join("a.qcow2")), Some(7 << 30));
        assert_eq!(virtual_size(&d.join("a.vhd")), Some(3 << 20));
        assert_eq!(virtual_size(&d.join("a.raw")), Some(4096));
        assert_eq!(virtual_size(&d.join("a.tar")), None);
        let outs = [d.join("a.qcow2")];
        let l = lines(&Summary {
            outputs: &outs,
            by_elements: &[],
            replaced: &outs,
            growth_ceiling: Some(1 << 50),
            seconds: 1.0,
            log: None,
        });
        assert!(l[0].starts_with("dibr: build finished in 1.0s: "), "{l:?}");
        assert!(
            l[1].contains("a.qcow2: 256.00 KiB, a 7.00 GiB disk (replaced"),
            "{l:?}"
        );
        assert!(l[2].ends_with("up to 1.00 PiB"), "{l:?}");
        assert!(l.iter().any(|x| x.contains("dibr vm ")), "{l:?}");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
