//! Plain-text tables for the in-image shell hooks of dibr's own
//! `package-installs` and `pkg-map` elements.
//!
//! DIB resolves package-installs and pkg-map with Python scripts run in the
//! chroot (`package-installs-v2`, `pkg-map`), so every image needs a Python
//! before its first package is installed. dibr squashes and maps outside,
//! where it already has the element set, and leaves two kinds of files for
//! shell hooks to read:
//!
//! - `package-installs/<phase>.<op>`: one package per line, in DIB's order,
//!   already mapped through the owning element's pkg-map (missing names kept
//!   as they are, names mapped to "" dropped, as `pkg-map --missing-ok`);
//!   `op` is `install` or `uninstall`.
//! - `pkg-map/<element>`: `name<TAB>mapped` for every name the element's
//!   pkg-map knows for this `DISTRO_NAME`/`DIB_RELEASE` (an empty mapped
//!   value means "drop"), for `install-packages -m <element>`.

use std::path::{Path, PathBuf};

use super::package_installs::{self, Env, PackageInstallsError};
use super::pkg_map::{PkgMap, PkgMapError};

#[derive(Debug, thiserror::Error)]
pub enum TablesError {
    #[error(transparent)]
    PackageInstalls(#[from] PackageInstallsError),
    #[error(transparent)]
    PkgMap(#[from] PkgMapError),
    #[error("IMAGE_ELEMENT_YAML is not a mapping of element names to paths: {0}")]
    ElementsYaml(#[source] PackageInstallsError),
    #[error(
        "IMAGE_ELEMENT_YAML is not a mapping of element names to paths: element {0} has no path"
    )]
    ElementWithoutPath(String),
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Counts for the log line.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct TablesSummary {
    pub packages: usize,
    pub pkg_maps: usize,
}

/// Elements from `IMAGE_ELEMENT_YAML` (`name: path` lines).
pub fn elements_from_yaml(text: &str) -> Result<Vec<(String, PathBuf)>, TablesError> {
    let doc = package_installs::parse_document(text, "IMAGE_ELEMENT_YAML")
        .map_err(TablesError::ElementsYaml)?;
    doc.into_iter()
        .map(|(k, v)| match v.as_str() {
            Some(p) => Ok((k, PathBuf::from(p))),
            None => Err(TablesError::ElementWithoutPath(k)),
        })
        .collect()
}

fn write(path: &Path, text: &str) -> Result<(), TablesError> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).map_err(|source| TablesError::Write {
            path: d.to_path_buf(),
            source,
        })?;
    }
    std::fs::write(path, text).map_err(|source| TablesError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// Write the tables for `elements` (IMAGE_ELEMENT order) under `out`.
pub fn write_tables(
    elements: &[(String, PathBuf)],
    env: &Env,
    out: &Path,
) -> Result<TablesSummary, TablesError> {
    let distro = env.get("DISTRO_NAME").map(String::as_str).unwrap_or("");
    let release = env.get("DIB_RELEASE").map(String::as_str);
    let mut maps = std::collections::BTreeMap::new();
    let mut summary = TablesSummary::default();
    // The directories exist even when no element has a map or a package:
    // the in-image hooks read them unconditionally.
    for d in [out.join("pkg-map"), out.join("package-installs")] {
        std::fs::create_dir_all(&d).map_err(|source| TablesError::Write { path: d, source })?;
    }
    for (name, path) in elements {
        let f = path.join("pkg-map");
        if f.is_file() {
            let m = PkgMap::load(&f)?;
            let mut text = String::new();
            for (k, v) in m.table(distro, release) {
                text.push_str(&format!("{k}\t{v}\n"));
            }
            write(&out.join("pkg-map").join(name), &text)?;
            maps.insert(name.clone(), m);
            summary.pkg_maps += 1;
        }
    }
    let squashed = package_installs::squash(elements, env)?;
    for (phase, ops) in &squashed.phases {
        for (op, list) in ops {
            let mut text = String::new();
            for (pkg, element) in list {
                let mapped = match maps.get(element) {
                    Some(m) => m.map(&[pkg.as_str()], distro, release, true)?,
                    None => vec![pkg.clone()],
                };
                for p in mapped {
                    // A mapped value may name several packages.
                    for word in p.split_whitespace() {
                        text.push_str(word);
                        text.push('\n');
                        summary.packages += 1;
                    }
                }
            }
            write(
                &out.join("package-installs").join(format!("{phase}.{op}")),
                &text,
            )?;
        }
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn squashed_and_mapped_per_phase() {
        let d = tempfile::tempdir().unwrap();
        let e = d.path().join("grubby");
        std::fs::create_dir_all(&e).unwrap();
        std::fs::write(
            e.join("package-installs.yaml"),
            "grub-pc:\nvim:\n  phase: pre-install.d\nold:\n  uninstall:\n",
        )
        .unwrap();
        std::fs::write(
            e.join("pkg-map"),
            r#"{"family": {"redhat": {"grub-pc": "grub2-tools grub2"}}, "default": {"vim": "vim-tiny"}}"#,
        )
        .unwrap();
        let mut env = Env::new();
        env.insert("DISTRO_NAME".into(), "fedora".into());
        env.insert("ARCH".into(), "amd64".into());
        let out = d.path().join("out");
        let s = write_tables(&[("grubby".into(), e)], &env, &out).unwrap();
        let read = |p: &str| std::fs::read_to_string(out.join(p)).unwrap();
        assert_eq!(
            read("package-installs/install.d.install"),
            "grub2-tools\ngrub2\n"
        );
        assert_eq!(read("package-installs/pre-install.d.install"), "vim-tiny\n");
        assert_eq!(read("package-installs/install.d.uninstall"), "old\n");
        assert!(read("pkg-map/grubby").contains("grub-pc\tgrub2-tools grub2\n"));
        assert_eq!(s.pkg_maps, 1);
    }
}
