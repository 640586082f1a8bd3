//! Where the image's name can reach the tree: `IMAGE_NAME` is the `-o`
//! path, and nodepool gives every build a new one
//! (`/opt/nodepool_dib/ubuntu-noble-0000001234`), so keying it into every
//! entry would make every nodepool build miss. It is keyed into the
//! entries from the first phase whose element files name it (or a
//! variable an `environment.d` file derives from it) on, and left out of
//! those before.
//!
//! In diskimage-builder's own elements that is `source-repositories`
//! (extra-data.d/98-source-repositories names its git manifest
//! `dib-manifest-git-$(basename ${IMAGE_NAME})`) and `dpkg`
//! (finalise.d/99-write-dpkg-manifest, `dib-manifest-dpkg-…`); the
//! `manifests` element derives `DIB_MANIFEST_SAVE_DIR` from it in
//! environment.d/14-manifests, which only its cleanup.d reads, and
//! cleanup.d runs in every build. The rule is textual: a program in the
//! tree that reads `IMAGE_NAME` from its environment is not seen (see
//! docs/phase-cache.md, "What the cache cannot see").

use std::path::{Path, PathBuf};

use super::key::visit;
use crate::elements::Phase;

/// The variable whose value is the `-o` path.
pub const VAR: &str = "IMAGE_NAME";

/// The first element file that can put the name into the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirstUse {
    /// The phase from which the name is keyed.
    pub phase: Phase,
    pub element: String,
    /// Relative to the element's directory.
    pub file: PathBuf,
}

/// An `environment.d` file's text, kept to follow its assignments.
struct EnvFile {
    element: String,
    file: PathBuf,
    text: String,
}

/// The earliest file (by phase, then element order) that names
/// `IMAGE_NAME` or a variable derived from it; `None` when none does.
/// Each file is read once: first the `environment.d` files (the names
/// derived from it), then the others, searched and not kept (a `static/`
/// blob may be large).
pub fn first_use(elements: &[(String, PathBuf)]) -> std::io::Result<Option<FirstUse>> {
    let mut env_files = Vec::new();
    for (element, dir) in elements {
        visit(dir, Path::new(""), &mut |p, rel, _| {
            if is_environment(rel) && is_file(p) {
                env_files.push(EnvFile {
                    element: element.clone(),
                    file: rel.to_path_buf(),
                    text: String::from_utf8_lossy(&std::fs::read(p)?).into_owned(),
                });
            }
            Ok(())
        })?;
    }
    let names = derived_names(&env_files);
    // environment.d is sourced before every phase: a line of it that does
    // more than assign counts from root.d, the earliest there is.
    if let Some(e) = env_files.iter().find(|e| {
        e.text
            .lines()
            .any(|l| assigned(l).is_none() && mentions(l.as_bytes(), &names))
    }) {
        return Ok(Some(FirstUse {
            phase: Phase::Root,
            element: e.element.clone(),
            file: e.file.clone(),
        }));
    }
    let mut best: Option<FirstUse> = None;
    for (element, dir) in elements {
        visit(dir, Path::new(""), &mut |p, rel, phase| {
            let earlier = best.as_ref().is_none_or(|b| phase < b.phase);
            if earlier && !is_environment(rel) && is_file(p) && mentions(&std::fs::read(p)?, &names)
            {
                best = Some(FirstUse {
                    phase,
                    element: element.clone(),
                    file: rel.to_path_buf(),
                });
            }
            Ok(())
        })?;
    }
    Ok(best)
}

fn is_environment(rel: &Path) -> bool {
    rel.starts_with(Phase::Environment.dir_name())
}

/// A regular file, links followed: a hook may be a link to a script of
/// the element.
fn is_file(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file())
}

/// `IMAGE_NAME` and the variables `environment.d` assigns from it,
/// directly or through another such variable.
fn derived_names(env_files: &[EnvFile]) -> Vec<String> {
    let mut names = vec![VAR.to_string()];
    loop {
        let before = names.len();
        for line in env_files.iter().flat_map(|e| e.text.lines()) {
            if let Some(var) = assigned(line) {
                if !names.iter().any(|n| n == var) && mentions(line.as_bytes(), &names) {
                    names.push(var.to_string());
                }
            }
        }
        if names.len() == before {
            return names;
        }
    }
}

/// The variable a shell line assigns (`[export ]NAME=…`), if it is one.
fn assigned(line: &str) -> Option<&str> {
    let l = line.trim_start();
    let l = l.strip_prefix("export ").map_or(l, str::trim_start);
    let (var, _) = l.split_once('=')?;
    let ok = !var.is_empty()
        && var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !var.starts_with(|c: char| c.is_ascii_digit());
    ok.then_some(var)
}

fn mentions(text: &[u8], names: &[String]) -> bool {
    names
        .iter()
        .any(|n| text.windows(n.len()).any(|w| w == n.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn element(root: &Path, name: &str, files: &[(&str, &str)]) -> (String, PathBuf) {
        let d = root.join(name);
        for (f, text) in files {
            let p = d.join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        std::fs::create_dir_all(&d).unwrap();
        (name.to_string(), d)
    }

    fn root(tag: &str) -> PathBuf {
        let r = std::env::temp_dir().join(format!("dibr-imgname-{tag}.{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&r);
        r
    }

    #[test]
    fn dibs_manifests_elements_key_the_name_from_their_phase() {
        let r = root("dib");
        let manifests = element(
            &r,
            "manifests",
            &[
                (
                    "environment.d/14-manifests",
                    "export DIB_MANIFEST_IMAGE_DIR=${DIB_MANIFEST_IMAGE_DIR:-/etc/dib-manifests}\n\
                     export DIB_MANIFEST_SAVE_DIR=${DIB_MANIFEST_SAVE_DIR:-${IMAGE_NAME}.d/}\n",
                ),
                (
                    "extra-data.d/20-manifest-dir",
                    "mkdir -p $TMP_MOUNT_PATH/${DIB_MANIFEST_IMAGE_DIR}\n",
                ),
                (
                    "cleanup.d/01-copy-manifests-dir",
                    "mkdir -p ${DIB_MANIFEST_SAVE_DIR}\n",
                ),
                ("README.rst", "IMAGE_NAME.d\n"),
            ],
        );
        let dpkg = element(
            &r,
            "dpkg",
            &[
                ("install.d/10-x", "apt-get install foo\n"),
                (
                    "finalise.d/99-write-dpkg-manifest",
                    "DPKG_MANIFEST_NAME=dib-manifest-dpkg-$(basename ${IMAGE_NAME})\n",
                ),
            ],
        );
        // manifests alone: only cleanup.d reads what it derives.
        assert_eq!(first_use(std::slice::from_ref(&manifests)).unwrap(), None);
        let u = first_use(&[manifests.clone(), dpkg.clone()])
            .unwrap()
            .unwrap();
        assert_eq!(u.phase, Phase::Finalise);
        assert_eq!(
            (u.element.as_str(), u.file.to_str()),
            ("dpkg", Some("finalise.d/99-write-dpkg-manifest"))
        );
        // A post-install.d hook that copies the derived directory's name
        // into the tree: from post-install.d on.
        let copier = element(
            &r,
            "copier",
            &[(
                "post-install.d/50-x",
                "echo \"$DIB_MANIFEST_SAVE_DIR\" > $TARGET_ROOT/x\n",
            )],
        );
        let u = first_use(&[manifests.clone(), dpkg, copier])
            .unwrap()
            .unwrap();
        assert_eq!(
            (u.phase, u.element.as_str()),
            (Phase::PostInstall, "copier")
        );
        // A variable derived in two steps, used in install.d.
        let chain = element(
            &r,
            "chain",
            &[
                (
                    "environment.d/10-a",
                    "export A_DIR=\"$(dirname $IMAGE_NAME)\"\n",
                ),
                ("environment.d/20-b", "B_FILE=${A_DIR}/b\n"),
                ("install.d/10-b", "touch \"$B_FILE\"\n"),
            ],
        );
        let u = first_use(&[manifests.clone(), chain]).unwrap().unwrap();
        assert_eq!((u.phase, u.element.as_str()), (Phase::Install, "chain"));
        // An environment.d line that does more than assign: from root.d.
        let env_use = element(
            &r,
            "envuse",
            &[("environment.d/10-c", "cp \"$IMAGE_NAME\" /tmp/x || true\n")],
        );
        assert_eq!(first_use(&[env_use]).unwrap().unwrap().phase, Phase::Root);
        // A helper in bin/ counts from root.d, as every unknown file does.
        let bin = element(&r, "bin", &[("bin/helper", "echo $IMAGE_NAME\n")]);
        assert_eq!(first_use(&[bin]).unwrap().unwrap().phase, Phase::Root);
        std::fs::remove_dir_all(&r).unwrap();
    }

    #[test]
    fn assignments_are_recognised() {
        assert_eq!(assigned("export FOO=${IMAGE_NAME}"), Some("FOO"));
        assert_eq!(assigned("  BAR_2=x"), Some("BAR_2"));
        assert_eq!(assigned("echo a=b"), None);
        assert_eq!(assigned("2X=y"), None);
        assert_eq!(assigned("if [ \"$IMAGE_NAME\" = x ]; then"), None);
    }
}
