//! What the boot planner needs from the tree, gathered during the one pass.
//!
//! Only small files are kept in memory: GRUB's i386-pc directory (~3 MB for
//! GRUB 2.06), a prepared core.img, the handful of EFI binaries that may end
//! up on the ESP (~12 MB at most), and /etc/os-release. Kernels are noted by
//! name only; they stay on the root filesystem.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use crate::tree::{Entry, EntryKind};

/// GRUB's BIOS platform directory as grub-pc-bin installs it.
pub const GRUB_I386_DIR: &str = "usr/lib/grub/i386-pc/";
/// Where grub-install (and our `bootloader` element) put the modules and
/// core.img on the target.
pub const BOOT_GRUB_I386_DIR: &str = "boot/grub/i386-pc/";

/// Whether `p` is an EFI binary the planner may copy to the ESP
/// (Debian/Ubuntu paths of every architecture in [`super::efi::ARCHES`]).
fn efi_candidate(p: &str) -> bool {
    super::efi::ARCHES
        .iter()
        .any(|a| [a.shim, a.mok, a.grub].iter().any(|l| l.contains(&p)))
}

/// A kernel found in /boot, with its initrd if there is one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kernel {
    /// File name in /boot (`vmlinuz-6.1.0-13-amd64`).
    pub vmlinuz: String,
    pub initrd: Option<String>,
    pub version: String,
}

#[derive(Debug, Default)]
pub struct BootCollector {
    /// Kept file contents by tree path (no leading `/`).
    files: BTreeMap<String, Vec<u8>>,
    /// Symlinks among the kept paths: path → target as stored.
    links: BTreeMap<String, String>,
    /// Versions with a /boot/vmlinuz-VERSION file.
    kernels: Vec<String>,
    /// Versions with a /boot/initrd.img-VERSION file.
    initrds: Vec<String>,
    root_grub_cfg: bool,
    boot_grub_modules: bool,
    /// The removable-media loader the tree's ESP already has
    /// (`BOOTX64.EFI`, `BOOTAA64.EFI`).
    esp_loader: Option<&'static str>,
}

fn utf8(p: &[u8]) -> Option<&str> {
    std::str::from_utf8(p).ok()
}

impl BootCollector {
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether a regular file at `path` must be kept in memory.
    pub fn wants(path: &[u8]) -> bool {
        let Some(p) = utf8(path) else { return false };
        p.starts_with(GRUB_I386_DIR)
            || p == "boot/grub/i386-pc/core.img"
            || p == "boot/grub/i386-pc/boot.img"
            || p == "etc/os-release"
            || p == "usr/lib/os-release"
            || efi_candidate(p)
            // Symlink targets next to the candidates (`shimx64.efi.signed`
            // may point at a versioned file).
            || p.starts_with("usr/lib/shim/")
            || p.starts_with("usr/lib/grub/x86_64-efi-signed/grubx64.efi")
            || p.starts_with("usr/lib/grub/arm64-efi-signed/grubaa64.efi")
    }

    /// Look at every entry of the tree (before its data is consumed).
    pub fn note(&mut self, e: &Entry) {
        let Some(p) = utf8(&e.path) else { return };
        let is_file = matches!(e.kind, EntryKind::File | EntryKind::HardLink(_));
        if let Some(v) = p.strip_prefix("boot/vmlinuz-") {
            if is_file && !v.contains('/') {
                self.kernels.push(v.to_string());
            }
        } else if let Some(v) = p.strip_prefix("boot/initrd.img-") {
            if is_file && !v.contains('/') {
                self.initrds.push(v.to_string());
            }
        } else if p == "boot/grub/grub.cfg" && is_file {
            self.root_grub_cfg = true;
        } else if p == "boot/grub/i386-pc/normal.mod" {
            self.boot_grub_modules = true;
        } else if let Some(l) = p.strip_prefix("boot/efi/EFI/BOOT/").and_then(|n| {
            super::efi::ARCHES
                .iter()
                .find(|a| a.boot.eq_ignore_ascii_case(n))
                .map(|a| a.boot)
        }) {
            self.esp_loader = Some(l);
        }
        if let EntryKind::Symlink(t) = &e.kind {
            if Self::wants(&e.path) {
                if let Some(t) = utf8(t) {
                    self.links.insert(p.to_string(), t.to_string());
                }
            }
        }
        if let EntryKind::HardLink(t) = &e.kind {
            if Self::wants(&e.path) {
                if let Some(data) = utf8(t).and_then(|t| self.files.get(t)).cloned() {
                    self.files.insert(p.to_string(), data);
                }
            }
        }
    }

    /// Keep a wanted file's contents.
    pub fn keep(&mut self, path: &[u8], data: Vec<u8>) {
        if let Some(p) = utf8(path) {
            self.files.insert(p.to_string(), data);
        }
    }

    /// A kept file, following symlinks among kept paths (relative or
    /// absolute, a few levels deep).
    pub fn file(&self, path: &str) -> Option<&[u8]> {
        let mut p = path.to_string();
        for _ in 0..8 {
            if let Some(d) = self.files.get(&p) {
                return Some(d);
            }
            let t = self.links.get(&p)?;
            p = if let Some(abs) = t.strip_prefix('/') {
                abs.to_string()
            } else {
                let dir = p.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
                normalize(&format!("{dir}/{t}"))
            };
        }
        None
    }

    /// Kept files under a directory prefix (ending in `/`), sorted.
    pub fn files_under<'a>(&'a self, dir: &'a str) -> impl Iterator<Item = (&'a str, &'a [u8])> {
        self.files
            .range(dir.to_string()..)
            .take_while(move |(k, _)| k.starts_with(dir))
            .map(|(k, v)| (k.as_str(), v.as_slice()))
    }

    pub fn has_grub_i386(&self) -> bool {
        self.file(&format!("{GRUB_I386_DIR}boot.img")).is_some()
            || self.file("boot/grub/i386-pc/boot.img").is_some()
    }

    pub fn has_efi_grub(&self) -> bool {
        super::efi::tree_arch(self).is_some()
    }

    pub fn has_root_grub_cfg(&self) -> bool {
        self.root_grub_cfg
    }

    /// The tree already has GRUB's modules in /boot/grub/i386-pc (it ran
    /// grub-install or the `bootloader` element).
    pub fn has_boot_grub_modules(&self) -> bool {
        self.boot_grub_modules
    }

    /// The removable-media loader the tree already has on its ESP.
    pub fn esp_loader(&self) -> Option<&'static str> {
        self.esp_loader
    }

    /// `ID` from os-release (`debian`), the name distro GRUB EFI images use
    /// for their prefix directory (`/EFI/debian`).
    pub fn os_id(&self) -> Option<String> {
        self.os_release_field("ID")
    }

    /// `PRETTY_NAME` from os-release, for the menu entry.
    pub fn os_pretty_name(&self) -> Option<String> {
        self.os_release_field("PRETTY_NAME")
    }

    fn os_release_field(&self, key: &str) -> Option<String> {
        let text = self
            .file("etc/os-release")
            .or_else(|| self.file("usr/lib/os-release"))?;
        let text = String::from_utf8_lossy(text);
        text.lines().find_map(|l| {
            let v = l.strip_prefix(key)?.strip_prefix('=')?;
            let v = v.trim().trim_matches('"').trim_matches('\'');
            (!v.is_empty()).then(|| v.to_string())
        })
    }

    /// The newest kernel by version order, with its initrd.
    pub fn newest_kernel(&self) -> Option<Kernel> {
        let v = self
            .kernels
            .iter()
            .max_by(|a, b| version_cmp(a, b))?
            .clone();
        Some(Kernel {
            vmlinuz: format!("vmlinuz-{v}"),
            initrd: self.initrds.contains(&v).then(|| format!("initrd.img-{v}")),
            version: v,
        })
    }
}

fn normalize(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out.join("/")
}

/// Natural order: digit runs compare as numbers, the rest byte-wise
/// (`6.1.0-13` < `6.1.0-9` is wrong; this gets it right).
pub fn version_cmp(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    loop {
        match (a.first(), b.first()) {
            (None, None) => return Ordering::Equal,
            (None, _) => return Ordering::Less,
            (_, None) => return Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let na = a.iter().take_while(|c| c.is_ascii_digit()).count();
                let nb = b.iter().take_while(|c| c.is_ascii_digit()).count();
                let da = trim_zeros(&a[..na]);
                let db = trim_zeros(&b[..nb]);
                let o = da.len().cmp(&db.len()).then_with(|| da.cmp(db));
                if o != Ordering::Equal {
                    return o;
                }
                a = &a[na..];
                b = &b[nb..];
            }
            (Some(x), Some(y)) => {
                if x != y {
                    return x.cmp(y);
                }
                a = &a[1..];
                b = &b[1..];
            }
        }
    }
}

fn trim_zeros(d: &[u8]) -> &[u8] {
    let n = d.iter().take_while(|c| **c == b'0').count();
    &d[n..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_in_natural_order() {
        assert_eq!(
            version_cmp("6.1.0-13-amd64", "6.1.0-9-amd64"),
            Ordering::Greater
        );
        assert_eq!(version_cmp("5.10.0", "6.1.0"), Ordering::Less);
        assert_eq!(version_cmp("6.1.0", "6.1.0"), Ordering::Equal);
    }

    #[test]
    fn symlinks_resolve_among_kept_files() {
        let mut c = BootCollector::new();
        c.keep(b"usr/lib/shim/shimx64.efi.signed.latest", vec![1, 2]);
        c.links.insert(
            "usr/lib/shim/shimx64.efi.signed".into(),
            "shimx64.efi.signed.latest".into(),
        );
        assert_eq!(
            c.file("usr/lib/shim/shimx64.efi.signed"),
            Some(&[1u8, 2][..])
        );
        assert_eq!(c.file("usr/lib/shim/none"), None);
    }
}
