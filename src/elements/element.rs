//! One element: a directory whose name is the element's name, with optional
//! `element-deps` and `element-provides` files (DIB's
//! `diskimage_builder/element_dependencies.py:Element`).

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};

/// Reading an element's metadata failed.
#[derive(Debug, thiserror::Error)]
pub enum ElementError {
    #[error("element '{element}': cannot read {}: {source} (check the file's permissions, or remove it if the element needs none)", file.display())]
    Read {
        element: String,
        file: PathBuf,
        source: io::Error,
    },
    #[error("element '{element}': {} is not UTF-8 text; element-deps and element-provides hold one element name per line", file.display())]
    NotText { element: String, file: PathBuf },
}

/// An element found on `ELEMENTS_PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    /// The element's name: the last component of its (canonical) path.
    pub name: String,
    /// Canonical path of the element directory (DIB uses `os.path.realpath`).
    pub path: PathBuf,
    /// Names from `element-deps`.
    pub depends: BTreeSet<String>,
    /// Names from `element-provides` (virtual elements such as
    /// `operating-system`, `block-device`, `bootloader`).
    pub provides: BTreeSet<String>,
}

/// Parse an `element-deps` / `element-provides` file: one name per line,
/// surrounding whitespace stripped, blank lines ignored, as DIB does.
///
/// Lines starting with `#` are also ignored. DIB has no comment syntax (it
/// would report "Element '# …' not found"), so no element set that works with
/// DIB changes meaning; this only lets dibr's own elements carry comments.
pub fn parse_name_list(text: &str) -> BTreeSet<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

impl Element {
    /// Load the element at `path` (already canonical) under `name`.
    /// A missing `element-deps` / `element-provides` means an empty set;
    /// any other read error is reported with the file at fault.
    pub fn load(name: &str, path: &Path) -> Result<Element, ElementError> {
        Ok(Element {
            name: name.to_owned(),
            path: path.to_owned(),
            depends: read_set(name, &path.join("element-deps"))?,
            provides: read_set(name, &path.join("element-provides"))?,
        })
    }

    /// `package-installs.json` then `package-installs.yaml`, those that exist,
    /// in the order `package-installs-squash` reads them.
    pub fn package_installs_files(&self) -> Vec<PathBuf> {
        ["package-installs.json", "package-installs.yaml"]
            .iter()
            .map(|f| self.path.join(f))
            .filter(|p| p.exists())
            .collect()
    }

    /// The element's `pkg-map` file, if any.
    pub fn pkg_map_file(&self) -> Option<PathBuf> {
        let p = self.path.join("pkg-map");
        p.is_file().then_some(p)
    }

    /// The element's `bin/` directory (installed to `/usr/local/bin` by
    /// `install-bin`), if any.
    pub fn bin_dir(&self) -> Option<PathBuf> {
        let p = self.path.join("bin");
        p.is_dir().then_some(p)
    }

    /// The element's `static/` tree (copied to `/` by `install-static`), if any.
    pub fn static_dir(&self) -> Option<PathBuf> {
        let p = self.path.join("static");
        p.is_dir().then_some(p)
    }
}

fn read_set(element: &str, file: &Path) -> Result<BTreeSet<String>, ElementError> {
    match std::fs::read(file) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(text) => Ok(parse_name_list(&text)),
            Err(_) => Err(ElementError::NotText {
                element: element.to_owned(),
                file: file.to_owned(),
            }),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(BTreeSet::new()),
        Err(source) => Err(ElementError::Read {
            element: element.to_owned(),
            file: file.to_owned(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_list_strips_blanks_whitespace_and_comments() {
        let s = parse_name_list("foo\n\n  bar  \n# a comment\n\tbaz\r\nfoo\n");
        let v: Vec<_> = s.into_iter().collect();
        assert_eq!(v, ["bar", "baz", "foo"]);
    }

    #[test]
    fn name_list_of_file_without_trailing_newline() {
        // DIB's test fixtures write "\n".join(deps): no final newline.
        let v: Vec<_> = parse_name_list("a\nb").into_iter().collect();
        assert_eq!(v, ["a", "b"]);
    }
}
