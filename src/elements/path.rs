//! `ELEMENTS_PATH`: where elements are looked for, and which copy of an
//! element wins (DIB's `element_dependencies.py:_find_all_elements`).
//!
//! DIB walks the colon-separated entries *last to first* so that an element
//! in an earlier entry overrides one of the same name in a later entry; its
//! own element library is appended last (`disk-image-create`), so users can
//! override any shipped element. dibr does the same with its `elements/`
//! directory.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use super::element::{Element, ElementError};

/// Building the element table failed.
#[derive(Debug, thiserror::Error)]
pub enum PathError {
    #[error("ELEMENTS_PATH entry '{}' is not a directory (fix or remove that entry)", .0.display())]
    InvalidElementDir(PathBuf),
    #[error("ELEMENTS_PATH has an empty entry (two colons in a row, or a leading/trailing colon): remove it")]
    EmptyEntry,
    #[error("cannot list ELEMENTS_PATH entry '{}': {source}", dir.display())]
    List { dir: PathBuf, source: io::Error },
    #[error(transparent)]
    Element(#[from] ElementError),
}

/// Elements of DIB's own library that dibr replaces with its own even when
/// DIB's directory comes first on `ELEMENTS_PATH`, and why: DIB's versions
/// need what a rootless build cannot have (loop devices, sysfs mounts,
/// debootstrap as root). Every other DIB element runs as DIB's (its bind
/// mounts and `sudo` work in the build's namespaces).
pub const KEPT_FROM_DIBR: &[(&str, &str)] = &[
    ("vm", "DIB's partitions a loop device"),
    ("bootloader", "DIB's runs grub-install on a loop device"),
    ("block-device-efi", "dibr's assembler reads the same YAML"),
    ("block-device-gpt", "dibr's assembler reads the same YAML"),
    ("block-device-mbr", "dibr's assembler reads the same YAML"),
    ("debootstrap", "DIB's runs debootstrap as root"),
    ("iso", "DIB's loop-mounts its EFI boot image with sudo"),
    (
        "debian-minimal",
        "DIB's mounts /proc and /sys into the tree from root.d",
    ),
    (
        "ubuntu-minimal",
        "DIB's mounts /proc and /sys into the tree from root.d",
    ),
];

/// One element whose DIB copy was passed over for dibr's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Substitution {
    pub element: String,
    /// DIB's copy, not used.
    pub dib: PathBuf,
    pub why: &'static str,
}

impl std::fmt::Display for Substitution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "using dibr's element {} instead of DIB's {} ({})",
            self.element,
            self.dib.display(),
            self.why
        )
    }
}

/// Whether `dir` is diskimage-builder's own element library
/// (`diskimage_builder/elements`, beside `diskimage_builder/lib/disk-image-create`).
pub fn is_dib_library(dir: &Path) -> bool {
    dir.canonicalize()
        .ok()
        .and_then(|d| d.parent().map(|p| p.join("lib/disk-image-create")))
        .is_some_and(|f| f.is_file())
}

/// The ordered list of element directories; earlier entries win.
///
/// Built from the environment by `crate::settings::elements_path`
/// (`ELEMENTS_PATH` and dibr's shipped library), or from any list by
/// [`ElementsPath::new`]/[`ElementsPath::parse`]: nothing here reads the
/// environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElementsPath {
    dirs: Vec<PathBuf>,
    /// dibr's own library, when it is on the path: its copies of
    /// [`KEPT_FROM_DIBR`] win over DIB's.
    shipped: Option<PathBuf>,
}

impl ElementsPath {
    /// From an explicit list of directories, highest priority first (no
    /// shipped library: every element is taken as found).
    pub fn new(dirs: Vec<PathBuf>) -> ElementsPath {
        ElementsPath {
            dirs,
            shipped: None,
        }
    }

    /// From an `ELEMENTS_PATH` value (colon list, highest priority first),
    /// with `shipped` (dibr's own element library) appended last when given.
    /// An unset or empty `ELEMENTS_PATH` means only the shipped elements.
    /// Empty entries inside a non-empty value are an error, as in DIB
    /// (`os.path.isdir('')` is false there).
    pub fn parse(elements_path: Option<&str>, shipped: Option<&Path>) -> Result<Self, PathError> {
        let mut dirs = Vec::new();
        if let Some(v) = elements_path.filter(|v| !v.is_empty()) {
            for entry in v.split(':') {
                if entry.is_empty() {
                    return Err(PathError::EmptyEntry);
                }
                dirs.push(PathBuf::from(entry));
            }
        }
        if let Some(s) = shipped {
            dirs.push(s.to_owned());
        }
        Ok(ElementsPath {
            dirs,
            shipped: shipped.map(Path::to_owned),
        })
    }

    /// The directories, highest priority first.
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// The colon-joined value, as exported to hooks as `ELEMENTS_PATH`.
    pub fn to_env_value(&self) -> String {
        let v: Vec<String> = self.dirs.iter().map(|d| d.display().to_string()).collect();
        v.join(":")
    }

    /// Every element on the path, by name, with overrides applied.
    ///
    /// As in DIB: each entry must be a directory; every subdirectory (symlinks
    /// followed) is an element; the element's path is canonicalised and its
    /// name is the last component of that canonical path.
    pub fn discover(&self) -> Result<BTreeMap<String, Element>, PathError> {
        Ok(self.discover_noting()?.0)
    }

    /// The Python that DIB's library on this path belongs to (the first
    /// such directory): the interpreter of the installation whose
    /// `site-packages/diskimage_builder/elements` it is, e.g.
    /// `~/dib/bin/python3` for `~/dib/lib/python3.11/site-packages/…`.
    /// DIB's own `disk-image-create` exports its interpreter as
    /// `DIB_PYTHON_EXEC`, and DIB's outside helpers (package-installs-squash,
    /// element-info's tools) need that one, with `diskimage_builder`
    /// importable.
    pub fn dib_python(&self) -> Option<PathBuf> {
        let lib = self
            .dirs
            .iter()
            .find(|d| is_dib_library(d))?
            .canonicalize()
            .ok()?;
        // elements → diskimage_builder → site-packages → pythonX.Y → lib → prefix
        let site = lib.parent()?.parent()?;
        let version = site.parent()?;
        let prefix = version.parent()?.parent()?;
        let named = version.file_name()?.to_str()?;
        [named, "python3"]
            .iter()
            .map(|n| prefix.join("bin").join(n))
            .find(|p| p.is_file())
    }

    /// [`Self::discover`], also returning the elements of DIB's library
    /// passed over for dibr's ([`KEPT_FROM_DIBR`]), so the build can say so.
    pub fn discover_noting(
        &self,
    ) -> Result<(BTreeMap<String, Element>, Vec<Substitution>), PathError> {
        let mut all: BTreeMap<String, Element> = BTreeMap::new();
        let mut substituted = Vec::new();
        let shipped = self.shipped.as_ref().and_then(|d| d.canonicalize().ok());
        for dir in self.dirs.iter().rev() {
            if !dir.is_dir() {
                return Err(PathError::InvalidElementDir(dir.clone()));
            }
            let dib = is_dib_library(dir);
            let list = |source| PathError::List {
                dir: dir.clone(),
                source,
            };
            for entry in std::fs::read_dir(dir).map_err(list)? {
                let entry = entry.map_err(list)?;
                let p = entry.path();
                if !p.is_dir() {
                    continue;
                }
                let real = p.canonicalize().map_err(list)?;
                let Some(name) = real.file_name().and_then(|n| n.to_str()) else {
                    continue; // not UTF-8: cannot be named in element-deps
                };
                let kept = KEPT_FROM_DIBR.iter().find(|(n, _)| *n == name);
                let have_dibrs = all
                    .get(name)
                    .zip(shipped.as_deref())
                    .is_some_and(|(e, s)| e.path.starts_with(s));
                if let (true, Some((_, why)), true) = (dib, kept, have_dibrs) {
                    substituted.push(Substitution {
                        element: name.to_owned(),
                        dib: real,
                        why,
                    });
                    continue;
                }
                let e = Element::load(name, &real)?;
                all.insert(name.to_owned(), e);
            }
        }
        Ok((all, substituted))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dib_python_is_the_interpreter_of_the_library_s_installation() {
        let t = tempfile::tempdir().unwrap();
        let pkg = t
            .path()
            .join("venv/lib/python3.11/site-packages/diskimage_builder");
        std::fs::create_dir_all(pkg.join("elements")).unwrap();
        std::fs::create_dir_all(pkg.join("lib")).unwrap();
        std::fs::create_dir_all(t.path().join("venv/bin")).unwrap();
        std::fs::create_dir_all(t.path().join("mine")).unwrap();
        let path = ElementsPath::new(vec![t.path().join("mine"), pkg.join("elements")]);
        // Not DIB's library until lib/disk-image-create is beside it.
        assert_eq!(path.dib_python(), None);
        std::fs::write(pkg.join("lib/disk-image-create"), "").unwrap();
        assert_eq!(path.dib_python(), None, "no interpreter in venv/bin");
        std::fs::write(t.path().join("venv/bin/python3"), "").unwrap();
        let bin = t.path().canonicalize().unwrap().join("venv/bin");
        assert_eq!(path.dib_python(), Some(bin.join("python3")));
        std::fs::write(t.path().join("venv/bin/python3.11"), "").unwrap();
        assert_eq!(path.dib_python(), Some(bin.join("python3.11")));
    }
}
