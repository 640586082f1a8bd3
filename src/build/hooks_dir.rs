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

/// The part of the sudo shim for a caller who is root inside the user
/// namespace and has no id of its own there: `sudo chown $USER: file`
/// (ironic-python-agent-builder hands its kernel back to the user this
/// way) would name an unmapped id and fail, so the caller's name or
/// number means root (0) inside — the caller on the host (by name, so
/// that `root:` still means root's login group). Placeholders:
/// @USER@ @UID@ @GROUP@ @GID@ (shell-quoted values).
const SUDO_CHOWN_AS_CALLER: &str = r#"# dibr: the caller (@USER@, uid @UID@) is uid 0 inside the user namespace.
if [ "$1" = chown ]; then
    shift
    owner_done=
    for a in "$@"; do
        shift
        if [ -z "$owner_done" ] && [ "${a#-}" = "$a" ]; then
            owner_done=1
            u=${a%%:*}
            g=
            case $a in *:*) g=${a#*:} ;; esac
            case $u in @USER@|@UID@) u=root ;; esac
            case $g in @GROUP@|@GID@) g=0 ;; esac
            case $a in *:*) a=$u:$g ;; *) a=$u ;; esac
        fi
        set -- "$@" "$a"
    done
    set -- chown "$@"
fi
"#;

/// Who runs the build, when the namespace maps them to root inside.
struct Caller {
    user: String,
    uid: u32,
    group: String,
    gid: u32,
}

impl Caller {
    /// The caller of a user-namespace build that is not real root.
    fn of_namespace() -> Option<Caller> {
        let map = crate::sandbox::mapping().ok()?;
        let uid = map.host_uid(0).filter(|&u| u != 0)?;
        let gid = map.host_gid(0)?;
        let idmap = |file: &str, id: u32| {
            crate::sandbox::idmap::user_name(Path::new(file), id).unwrap_or_else(|| id.to_string())
        };
        Some(Caller {
            user: idmap("/etc/passwd", uid),
            uid,
            group: idmap("/etc/group", gid),
            gid,
        })
    }
}

/// Single-quoted for sh.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The sudo shim, with the chown rule when the caller is root inside.
fn sudo_shim(caller: Option<&Caller>) -> String {
    let Some(c) = caller else {
        return SUDO_SHIM.to_string();
    };
    let rule = SUDO_CHOWN_AS_CALLER
        .replace("@USER@", &sh_quote(&c.user))
        .replace("@UID@", &c.uid.to_string())
        .replace("@GROUP@", &sh_quote(&c.group))
        .replace("@GID@", &c.gid.to_string());
    SUDO_SHIM.replacen("exec \"$@\"\n", &format!("{rule}exec \"$@\"\n"), 1)
}

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
    write_exec(
        &shim.join("sudo"),
        &sudo_shim(Caller::of_namespace().as_ref()),
    )
    .map_err(ioe("writing the sudo shim".into()))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The shim as a hook calls it, with a `chown` that prints its argv.
    fn shim_chown(args: &[&str]) -> String {
        let dir = tempfile::tempdir().unwrap();
        let caller = Caller {
            user: "al'ice".into(),
            uid: 1234,
            group: "staff".into(),
            gid: 50,
        };
        write_exec(&dir.path().join("sudo"), &sudo_shim(Some(&caller))).unwrap();
        write_exec(&dir.path().join("chown"), "#!/bin/sh\necho \"$*\"\n").unwrap();
        let out = std::process::Command::new("sh")
            .arg(dir.path().join("sudo"))
            .arg("chown")
            .args(args)
            .env("PATH", format!("{}:/usr/bin:/bin", dir.path().display()))
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    #[test]
    fn sudo_chown_to_the_caller_means_root_inside() {
        assert_eq!(shim_chown(&["al'ice:", "f"]), "root: f");
        assert_eq!(shim_chown(&["-R", "1234:staff", "d"]), "-R root:0 d");
        assert_eq!(shim_chown(&[":50", "f"]), ":0 f");
        assert_eq!(shim_chown(&["al'ice", "f g"]), "root f g");
        // Other owners, and file names after the owner, are left alone.
        assert_eq!(shim_chown(&["bob:staff", "al'ice"]), "bob:0 al'ice");
        assert_eq!(shim_chown(&["-h", "0:0", "1234"]), "-h 0:0 1234");
        // Without a namespace caller, the shim is the plain one.
        assert_eq!(sudo_shim(None), SUDO_SHIM);
    }
}
