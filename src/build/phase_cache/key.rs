//! What a phase-cache entry is keyed by: everything that can change the
//! target tree up to a boundary (docs/phase-cache.md lists the rules).
//!
//! A key is the sha256 of its [`Parts`], each part itself a digest, so
//! that a miss can name the parts that differ from the last entry made
//! for the same boundary.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::elements::Phase;

/// Variables of the hook environment left out of the key: per-run paths
/// (the work directory), values derived from the element list (each
/// element is keyed by its own content instead, so that an element that
/// has no hook before the boundary does not invalidate it), and settings
/// that change where or how loudly dibr works but not what the hooks
/// make. Everything else hooks see is keyed, `SOURCE_DATE_EPOCH` included.
pub const NOT_KEYED: &[&str] = &[
    // The work directory (a new one every build).
    "TMP_BUILD_DIR",
    "TMP_IMAGE_DIR",
    "TMP_HOOKS_PATH",
    "TMP_MOUNT_PATH",
    "TARGET_ROOT",
    // The command line (its options are keyed through what they set) and
    // DIB's `declare -p` of the DIB_* variables (keyed one by one).
    "DIB_ARGS",
    "DIB_ENV",
    // The `-o` path: keyed on its own, from the first phase whose files
    // name it (see `image_name`), not in every entry.
    "IMAGE_NAME",
    // The element list and where elements are found, keyed per element.
    "ELEMENTS_PATH",
    "IMAGE_ELEMENT",
    "IMAGE_ELEMENT_YAML",
    "BASH_FUNC_get_image_element_array%%",
    // Where and how dibr works, not what the tree holds.
    "DIB_OFFLINE",
    "DIB_DEBUG_TRACE",
    "DIB_CHECKSUM",
    "DIB_NO_TMPFS",
    "DIB_MIN_TMPFS",
    "DIB_IMAGE_CACHE",
    "DIB_LOCKFILES",
    "DIB_QUIET",
    "DIBR_PHASE_CACHE",
    "DIBR_PHASE_CACHE_HOURS",
    "DIBR_PHASE_CACHE_GIB",
    "DIBR_PHASE_CACHE_MIN_SECONDS",
    // The login session.
    "_",
    "SHLVL",
    "OLDPWD",
    // The directory the build was started from, which the caller's shell
    // exports: nodepool and CI jobs start every build somewhere new, and
    // the outputs' paths (`-o`) are keyed through IMAGE_NAME.
    "PWD",
    "TERM",
    "COLUMNS",
    "LINES",
    "SSH_CLIENT",
    "SSH_CONNECTION",
    "SSH_TTY",
    "SSH_AUTH_SOCK",
    "DISPLAY",
    "XDG_SESSION_ID",
    "DBUS_SESSION_BUS_ADDRESS",
];

/// The parts of a key, each a hex digest (or a short value).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parts {
    pub boundary: String,
    pub arch: String,
    pub sandbox: String,
    /// The dibr binary and its shell library (`_LIB`).
    pub dibr: String,
    /// Element name → digest of its files up to the boundary, for the
    /// elements with such files.
    pub elements: BTreeMap<String, String>,
    pub environment: String,
    /// `IMAGE_NAME`'s digest and the first element file naming it, or `-`
    /// before that file's phase (see [`super::image_name`]).
    pub image_name: String,
    pub packages: Vec<String>,
    /// The `/etc/fstab` dibr writes before pre-finalise.d (digest, or
    /// `none` without a disk); only the entry after finalise.d has it.
    pub fstab: String,
    /// Names, sizes and mtimes of the bootstrap tarballs in
    /// `DIB_IMAGE_CACHE/debootstrap`.
    pub bootstrap: String,
}

impl Parts {
    /// The key: sha256 over every part, in hex.
    pub fn key(&self) -> String {
        hex(&Sha256::digest(self.to_text().as_bytes()))
    }

    /// One `name value` line per part (the entry's `.key` file).
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        for (k, v) in [
            ("boundary", &self.boundary),
            ("arch", &self.arch),
            ("sandbox", &self.sandbox),
            ("dibr", &self.dibr),
            ("environment", &self.environment),
            ("image-name", &self.image_name),
            ("bootstrap", &self.bootstrap),
            ("fstab", &self.fstab),
        ] {
            s.push_str(&format!("{k} {v}\n"));
        }
        s.push_str(&format!("packages {}\n", self.packages.join(",")));
        for (n, d) in &self.elements {
            s.push_str(&format!("element {n} {d}\n"));
        }
        s
    }

    /// The parts back from [`Parts::to_text`] (unknown lines ignored).
    pub fn from_text(text: &str) -> Parts {
        let mut p = Parts::default();
        for line in text.lines() {
            let Some((k, v)) = line.split_once(' ') else {
                continue;
            };
            let v = v.to_string();
            match k {
                "boundary" => p.boundary = v,
                "arch" => p.arch = v,
                "sandbox" => p.sandbox = v,
                "dibr" => p.dibr = v,
                "environment" => p.environment = v,
                "image-name" => p.image_name = v,
                "bootstrap" => p.bootstrap = v,
                "fstab" => p.fstab = v,
                "packages" => {
                    p.packages = v
                        .split(',')
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                        .collect()
                }
                "element" => {
                    if let Some((n, d)) = v.split_once(' ') {
                        p.elements.insert(n.to_string(), d.to_string());
                    }
                }
                _ => {}
            }
        }
        p
    }

    /// What differs from `old`, in words (for the line a miss prints).
    pub fn differences(&self, old: &Parts) -> Vec<String> {
        let mut v = Vec::new();
        for (n, d) in &self.elements {
            match old.elements.get(n) {
                None => v.push(format!("element {n} added")),
                Some(o) if o != d => v.push(format!("element {n} changed")),
                _ => {}
            }
        }
        for n in old.elements.keys() {
            if !self.elements.contains_key(n) {
                v.push(format!("element {n} removed"));
            }
        }
        let simple = [
            ("hook environment", &self.environment, &old.environment),
            ("bootstrap tarball", &self.bootstrap, &old.bootstrap),
            ("dibr binary or library", &self.dibr, &old.dibr),
            ("architecture", &self.arch, &old.arch),
            ("sandbox mode", &self.sandbox, &old.sandbox),
            ("/etc/fstab (block-device layout)", &self.fstab, &old.fstab),
        ];
        for (what, a, b) in simple {
            if a != b {
                v.push(format!("{what} changed"));
            }
        }
        if self.image_name != old.image_name {
            match self.image_name.split_once(' ') {
                Some((_, file)) => v.push(format!("IMAGE_NAME (-o) changed, which {file} names")),
                None => v.push("IMAGE_NAME (-o) changed".into()),
            }
        }
        if self.packages != old.packages {
            v.push("-p packages changed".into());
        }
        v
    }
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The first phase whose hooks a file of an element can change the tree
/// in, by the file's top-level name: `None` for files that cannot change
/// the tree before any boundary (cleanup.d, which runs in every build, the
/// documentation, the dependency lists — the elements they pull in are
/// keyed themselves). `first-boot.d/` is installed into the tree before
/// post-root.d; the block-device configs make `/etc/fstab` (keyed itself)
/// and reach hooks as `DIB_ROOT_LABEL` (a keyed variable), so they count
/// from block-device.d. Anything unknown (`environment.d`, `bin/`,
/// `static/`, `package-installs.yaml`, `pkg-map`, `source-repository-*`,
/// …) counts from root.d on.
pub fn file_phase(top: &str) -> Option<Phase> {
    match Phase::from_dir_name(top) {
        Some(Phase::Root | Phase::Environment) => Some(Phase::Root),
        Some(Phase::Cleanup) => None,
        Some(Phase::FirstBoot) => Some(Phase::PostRoot),
        Some(p) => Some(p),
        None if top.starts_with("README")
            || top == "element-deps"
            || top == "element-provides"
            || top == "test-elements" =>
        {
            None
        }
        None if top.starts_with("block-device-") && top.ends_with(".yaml") => {
            Some(Phase::BlockDevice)
        }
        None => Some(Phase::Root),
    }
}

/// One file of an element: the phase it counts from and the digest of its
/// path, kind, mode and content.
pub type Record = (Phase, [u8; 32]);

/// One element's files as [`Record`]s.
pub fn element_records(dir: &Path) -> std::io::Result<Vec<Record>> {
    let mut out = Vec::new();
    visit(dir, Path::new(""), &mut |p, r, phase| {
        out.push((phase, file_digest(p, r)?));
        Ok(())
    })?;
    Ok(out)
}

/// Calls `f(path, relative path, phase)` for every file, link and
/// directory below `base/rel` that counts for a phase ([`file_phase`]),
/// in name order, a directory before what it holds (links to directories
/// are not followed).
pub fn visit(
    base: &Path,
    rel: &Path,
    f: &mut impl FnMut(&Path, &Path, Phase) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let mut names: Vec<_> = std::fs::read_dir(base.join(rel))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()?;
    names.sort();
    for n in names {
        let r = rel.join(&n);
        let top = r
            .components()
            .next()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .unwrap_or_default();
        let Some(phase) = file_phase(&top) else {
            continue;
        };
        let p = base.join(&r);
        f(&p, &r, phase)?;
        if std::fs::symlink_metadata(&p)?.is_dir() {
            visit(base, &r, f)?;
        }
    }
    Ok(())
}

/// Digest of a file's path, kind, mode and content (a link's target).
fn file_digest(p: &Path, rel: &Path) -> std::io::Result<[u8; 32]> {
    let m = std::fs::symlink_metadata(p)?;
    let mut h = Sha256::new();
    h.update(rel.as_os_str().as_encoded_bytes());
    h.update([0]);
    h.update(m.permissions().mode().to_le_bytes());
    if m.file_type().is_symlink() {
        h.update(b"l");
        h.update(std::fs::read_link(p)?.as_os_str().as_encoded_bytes());
    } else if m.is_file() {
        h.update(b"f");
        std::io::copy(&mut std::fs::File::open(p)?, &mut h)?;
    } else if m.is_dir() {
        h.update(b"d");
    }
    Ok(h.finalize().into())
}

/// Digest of the records of phases up to `boundary`; `None` when the
/// element has none (it then stays out of the key).
pub fn element_digest(records: &[Record], boundary: Phase) -> Option<String> {
    let mut h = Sha256::new();
    let mut any = false;
    for (p, d) in records {
        if *p <= boundary {
            h.update(d);
            any = true;
        }
    }
    any.then(|| hex(&h.finalize()))
}

/// Digest of the hook environment less [`NOT_KEYED`], sorted by name.
pub fn environment_digest(env: &[(String, String)]) -> String {
    let mut v: Vec<&(String, String)> = env
        .iter()
        .filter(|(k, _)| !NOT_KEYED.contains(&k.as_str()))
        .collect();
    v.sort();
    let mut h = Sha256::new();
    for (k, val) in v {
        h.update(k.as_bytes());
        h.update([0]);
        h.update(val.as_bytes());
        h.update([0]);
    }
    hex(&h.finalize())
}

/// Digest of the files in `dir` whose name has `-ARCH-` by name, size
/// and mtime (the debootstrap element's tarballs,
/// `DISTRO-RELEASE-ARCH-KEY.tar`: refreshed by age, they change the
/// tree; another architecture's do not).
pub fn listing_digest(dir: &Path, arch: &str) -> String {
    let tag = format!("-{arch}-");
    let mut v: Vec<(String, u64, i64, i64)> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    let m = e.metadata().ok()?;
                    let n = e.file_name().to_string_lossy().into_owned();
                    (m.is_file() && !n.ends_with(".part") && n.contains(&tag))
                        .then(|| (n, m.len(), m.mtime(), m.mtime_nsec()))
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    let mut h = Sha256::new();
    for (n, len, s, ns) in v {
        h.update(format!("{n}\0{len}\0{s}.{ns}\0").as_bytes());
    }
    hex(&h.finalize())
}

/// Digest of dibr itself: the running binary and the shell library
/// hooks source (a rebuilt dibr may make a different tree).
pub fn dibr_digest(lib: Option<&Path>) -> std::io::Result<String> {
    let mut h = Sha256::new();
    h.update(env!("CARGO_PKG_VERSION").as_bytes());
    let exe = std::fs::read("/proc/self/exe")?;
    h.update(&exe);
    if let Some(lib) = lib {
        for (_, d) in element_records(lib)? {
            h.update(d);
        }
    }
    Ok(hex(&h.finalize()))
}

/// The directory of the bootstrap tarballs.
pub fn bootstrap_dir(image_cache: &Path) -> PathBuf {
    image_cache.join("debootstrap")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_of_element_files() {
        assert_eq!(file_phase("root.d"), Some(Phase::Root));
        assert_eq!(file_phase("environment.d"), Some(Phase::Root));
        assert_eq!(file_phase("install.d"), Some(Phase::Install));
        assert_eq!(file_phase("post-install.d"), Some(Phase::PostInstall));
        assert_eq!(file_phase("finalise.d"), Some(Phase::Finalise));
        assert_eq!(file_phase("pre-finalise.d"), Some(Phase::PreFinalise));
        assert_eq!(file_phase("cleanup.d"), None);
        assert_eq!(file_phase("first-boot.d"), Some(Phase::PostRoot));
        assert_eq!(file_phase("README.rst"), None);
        assert_eq!(
            file_phase("block-device-default.yaml"),
            Some(Phase::BlockDevice)
        );
        assert_eq!(file_phase("package-installs.yaml"), Some(Phase::Root));
        assert_eq!(file_phase("static"), Some(Phase::Root));
    }

    #[test]
    fn environment_ignores_per_run_variables() {
        let a = vec![
            ("TMP_BUILD_DIR".to_string(), "/tmp/a".to_string()),
            ("DIB_RELEASE".to_string(), "trixie".to_string()),
        ];
        let b = vec![
            ("DIB_RELEASE".to_string(), "trixie".to_string()),
            ("TMP_BUILD_DIR".to_string(), "/tmp/b".to_string()),
        ];
        assert_eq!(environment_digest(&a), environment_digest(&b));
        let c = vec![("DIB_RELEASE".to_string(), "bookworm".to_string())];
        assert_ne!(environment_digest(&a), environment_digest(&c));
    }
}
