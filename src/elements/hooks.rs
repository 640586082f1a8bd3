//! Merging the elements' hook directories into one tree per build (DIB's
//! `lib/common-functions:generate_hooks` and `copy_hooks_not_overwrite`).
//!
//! DIB copies every subdirectory of every element (except `tests` and
//! `__pycache__`) into `$TMP_HOOKS_PATH/<dir>/`, one file at a time, and
//! stops the build when a regular file of that name is already there
//! ("There is a duplicated hook in your elements"): two elements may not
//! ship `install.d/50-foo`. A subdirectory of the same name (such as the
//! `install.d/<prefix>-source-install/` dirs of install-types) is merged
//! instead. dibr keeps the merged view as a table rather than a copy; the
//! run order comes from [`super::run_parts`].

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use super::phases::Phase;
use super::run_parts::{self, RunParts};

/// Two elements ship the same hook, or a hook directory cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("duplicated hook {}/{}: elements '{}' ({}) and '{}' ({}) both ship it; rename one of them (hook names must be unique across elements)", .0.dir, .0.name, .0.first_element, .0.first_path.display(), .0.second_element, .0.second_path.display())]
    Duplicate(Box<DuplicateHook>),
    #[error("element '{element}': cannot read {}: {source}", path.display())]
    Read {
        element: String,
        path: PathBuf,
        source: io::Error,
    },
}

/// The two files behind a [`HookError::Duplicate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateHook {
    pub dir: String,
    pub name: String,
    pub first_element: String,
    pub first_path: PathBuf,
    pub second_element: String,
    pub second_path: PathBuf,
}

/// One file of a merged hook directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookScript {
    /// File name, e.g. `50-foo`.
    pub name: String,
    /// The element it comes from.
    pub element: String,
    /// Where it is.
    pub path: PathBuf,
    /// For a directory (`init-scripts/systemd/`, `install.d/x-source-install/`):
    /// the same-named directories of later elements, merged into it in
    /// order, as DIB's `cp -a` of every element into the hooks dir does.
    pub merged: Vec<PathBuf>,
}

/// The merged hook directories of an expanded element set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hooks {
    /// Directory name (`install.d`, `bin`, …) → its files, sorted by name.
    dirs: BTreeMap<String, Vec<HookScript>>,
}

impl Hooks {
    /// Merge the subdirectories of `elements` (`(name, path)`, e.g.
    /// [`super::Resolved::elements`]).
    pub fn assemble(elements: &[(String, PathBuf)]) -> Result<Hooks, HookError> {
        let mut dirs: BTreeMap<String, BTreeMap<String, HookScript>> = BTreeMap::new();
        for (element, epath) in elements {
            let read = |path: &Path, source| HookError::Read {
                element: element.clone(),
                path: path.to_owned(),
                source,
            };
            for sub in std::fs::read_dir(epath).map_err(|e| read(epath, e))? {
                let sub = sub.map_err(|e| read(epath, e))?;
                let sub_path = sub.path();
                let Some(dir) = sub.file_name().to_str().map(str::to_owned) else {
                    continue;
                };
                if !sub_path.is_dir() || dir == "tests" || dir == "__pycache__" {
                    continue;
                }
                let merged = dirs.entry(dir.clone()).or_default();
                for f in std::fs::read_dir(&sub_path).map_err(|e| read(&sub_path, e))? {
                    let f = f.map_err(|e| read(&sub_path, e))?;
                    let Some(name) = f.file_name().to_str().map(str::to_owned) else {
                        continue;
                    };
                    let path = f.path();
                    if let Some(prev) = merged.get_mut(&name) {
                        if prev.path.is_file() || !path.is_dir() {
                            return Err(HookError::Duplicate(Box::new(DuplicateHook {
                                dir,
                                name,
                                first_element: prev.element.clone(),
                                first_path: prev.path.clone(),
                                second_element: element.clone(),
                                second_path: path,
                            })));
                        }
                        // A directory merged with a directory, as `cp -a` merges.
                        prev.merged.push(path);
                        continue;
                    }
                    merged.insert(
                        name.clone(),
                        HookScript {
                            name,
                            element: element.clone(),
                            path,
                            merged: Vec::new(),
                        },
                    );
                }
            }
        }
        Ok(Hooks {
            dirs: dirs
                .into_iter()
                .map(|(d, m)| (d, m.into_values().collect()))
                .collect(),
        })
    }

    /// All files of a merged directory (`install.d`, `bin`, …), by name.
    pub fn dir(&self, dir: &str) -> &[HookScript] {
        self.dirs.get(dir).map(Vec::as_slice).unwrap_or(&[])
    }

    /// All files of a phase directory, by name.
    pub fn phase(&self, phase: Phase) -> &[HookScript] {
        self.dir(phase.dir_name())
    }

    /// dib-run-parts' selection for a phase: what runs, in order, and what
    /// is ignored and why.
    pub fn run_parts(&self, phase: Phase) -> RunParts {
        run_parts::select_from(
            self.phase(phase)
                .iter()
                .map(|h| (h.name.as_str(), h.path.as_path())),
        )
    }

    /// The scripts of a phase that run, in run order.
    pub fn targets(&self, phase: Phase) -> Vec<&HookScript> {
        let rp = self.run_parts(phase);
        let files = self.phase(phase);
        rp.targets
            .iter()
            .filter_map(|t| files.iter().find(|h| &h.name == t))
            .collect()
    }

    /// The environment.d files in the order dib-run-parts sources them;
    /// `hooks_dir` is the merged hooks directory as the runner sees it
    /// (`$TMP_HOOKS_PATH` outside, `/tmp/in_target.d` inside).
    pub fn environment_files(&self, hooks_dir: &str) -> Vec<&HookScript> {
        let files = self.phase(Phase::Environment);
        let dir = format!("{hooks_dir}/environment.d");
        run_parts::environment_files(
            &dir,
            files.iter().map(|h| (h.name.as_str(), h.path.as_path())),
        )
        .iter()
        .filter_map(|n| files.iter().find(|h| &h.name == n))
        .collect()
    }

    /// Names of all merged directories.
    pub fn dir_names(&self) -> impl Iterator<Item = &str> {
        self.dirs.keys().map(String::as_str)
    }
}
