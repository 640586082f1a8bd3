//! Laying the merged hooks out under TMP_HOOKS_PATH, as DIB's
//! `generate_hooks` does (lib/common-functions): every element
//! subdirectory merged into `hooks/<dir>/` (duplicates already refused by
//! [`crate::elements::hooks::Hooks::assemble`]), top-level files copied to
//! `hooks/` (last element wins), plus our `dib-run-parts` and a `sudo`
//! that just runs its command (upstream outside hooks call `sudo`; inside
//! the namespace we already are root).

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::workdir::WorkDir;
use super::BuildError;
use crate::elements::hooks::Hooks;
use crate::elements::resolve::Resolved;

/// ldd without a preloaded library: in the sandbox's fakeroot mode every
/// process preloads libfakeroot, and ldd (the loader with
/// LD_TRACE_LOADED_OBJECTS) would list it as a dependency of every binary,
/// so hooks that copy a binary's libraries would copy it too. fakechroot
/// substitutes ldd inside the tree the same way (its chroot.env).
pub const LDD_SHIM: &str = r#"#!/bin/sh
# dibr: list a binary's libraries as the host would, without fakeroot's.
unset LD_PRELOAD
PATH=${PATH#*:} exec ldd "$@"
"#;

/// DIB's hook runner, see the script's header.
pub const DIB_RUN_PARTS: &str = include_str!("dib-run-parts");

/// A pass-through sudo: drop sudo's own options, run the command.
pub const SUDO_SHIM: &str = r#"#!/bin/sh
# dibr: hooks run as root inside a user namespace; sudo just runs its command.
while [ $# -gt 0 ]; do
    case "$1" in
        -u|-g|-C|-h|-p|-r|-t|-U|-D) shift 2 ;;
        --) shift; break ;;
        -*) shift ;;
        *) break ;;
    esac
done
[ $# -gt 0 ] || exit 0
exec "$@"
"#;

/// Copy a file, symlink or directory tree, keeping modes and links.
pub fn copy_tree(src: &Path, dst: &Path) -> io::Result<()> {
    let md = std::fs::symlink_metadata(src)?;
    if md.file_type().is_symlink() {
        let t = std::fs::read_link(src)?;
        // A later element's entry replaces an earlier one (`cp -a`).
        if std::fs::symlink_metadata(dst).is_ok_and(|m| !m.is_dir()) {
            std::fs::remove_file(dst)?;
        }
        std::os::unix::fs::symlink(t, dst)?;
    } else if md.is_dir() {
        std::fs::create_dir_all(dst)?;
        for e in std::fs::read_dir(src)? {
            let e = e?;
            copy_tree(&e.path(), &dst.join(e.file_name()))?;
        }
    } else {
        if std::fs::symlink_metadata(dst).is_ok_and(|m| m.file_type().is_symlink()) {
            std::fs::remove_file(dst)?;
        }
        std::fs::copy(src, dst)?;
    }
    Ok(())
}

fn write_exec(path: &Path, text: &str) -> io::Result<()> {
    std::fs::write(path, text)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
}

fn ioe(what: String) -> impl FnOnce(io::Error) -> BuildError {
    move |source| BuildError::Io { what, source }
}

/// Lay out the hooks of `elements` under the work dir's `hooks/`.
pub fn write(w: &WorkDir, hooks: &Hooks, resolved: &Resolved) -> Result<(), BuildError> {
    let elements: &[(String, PathBuf)] = &resolved.elements;
    let root = w.hooks();
    for dir in hooks.dir_names() {
        let d = root.join(dir);
        std::fs::create_dir_all(&d).map_err(ioe(format!("creating {}", d.display())))?;
        for s in hooks.dir(dir) {
            for src in std::iter::once(&s.path).chain(&s.merged) {
                copy_tree(src, &d.join(&s.name)).map_err(ioe(format!(
                    "copying hook {} of element {}",
                    src.display(),
                    s.element
                )))?;
            }
        }
    }
    for (name, path) in elements {
        let rd = std::fs::read_dir(path)
            .map_err(ioe(format!("reading element {name} at {}", path.display())))?;
        for e in rd.flatten() {
            let p = e.path();
            if p.is_file() {
                let dst = root.join(e.file_name());
                let _ = std::fs::remove_file(&dst);
                std::fs::copy(&p, &dst)
                    .map_err(ioe(format!("copying {} of element {name}", p.display())))?;
            }
        }
    }
    write_exec(&root.join("dib-run-parts"), DIB_RUN_PARTS)
        .map_err(ioe("writing dib-run-parts".into()))?;
    // element-info --env: IMAGE_ELEMENT(_YAML) and the exported
    // get_image_element_array function upstream hooks call.
    std::fs::write(root.join("dibr-env.bash"), resolved.env_script())
        .map_err(ioe("writing dibr-env.bash".into()))?;
    let shim = w.root().join("shim");
    std::fs::create_dir_all(&shim).map_err(ioe("creating the shim directory".into()))?;
    write_exec(&shim.join("sudo"), SUDO_SHIM).map_err(ioe("writing the sudo shim".into()))?;
    write_exec(&shim.join("ldd"), LDD_SHIM).map_err(ioe("writing the ldd shim".into()))?;
    // Outside hooks of dibr's own elements call `dibr __element-tables`.
    let exe = std::env::current_exe().map_err(ioe("finding the dibr executable".into()))?;
    let q = exe.display().to_string().replace('\'', "'\\''");
    write_exec(
        &shim.join("dibr"),
        &format!("#!/bin/sh\nexec '{q}' \"$@\"\n"),
    )
    .map_err(ioe("writing the dibr shim".into()))?;
    Ok(())
}
