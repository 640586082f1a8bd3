//! The environment hooks see, as diskimage-builder gives it
//! (DIB's `diskimage_builder/lib/disk-image-create` and `lib/img-defaults`; recorded from DIB 3.43
//! in vendor-tests/fixtures/dib-env/ and compared by the `dib_env` test).
//!
//! DIB's `disk-image-create` is one bash script that exports what it sets,
//! so **outside** hooks (root.d, extra-data.d, post-root.d, block-device.d,
//! pre-finalise.d, cleanup.d) get the whole caller environment plus DIB's
//! variables. **In-target** hooks are run with
//! `sudo -E chroot … env -u TMPDIR -u VIRTUAL_ENV …`: the same environment
//! minus `TMPDIR`, `VIRTUAL_ENV` and what sudo always removes (exported
//! functions, `PS4`, `LD_*`, …, see [`SUDO_REMOVES`]), with `HOME=/root`
//! and the `USER`/`LOGNAME`/`SHELL`/`TERM` sudo sets.
//!
//! dibr's own additions: `DIB_DIBR=1` (so elements can tell), `TARGET_ROOT`
//! in every outside phase (DIB: root.d and cleanup.d only; dibr's elements
//! use it in extra-data.d too), a PATH whose first entry has the
//! pass-through `sudo`, `DIBR_SANDBOX_MODE` (added by the sandbox) and,
//! for an emulated architecture, `DIBR_EMULATED`.

use std::path::Path;

use super::workdir::WorkDir;
use super::BuildConfig;
use crate::elements::path::ElementsPath;
use crate::elements::resolve::Resolved;
use crate::elements::Phase;

const TARGET_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What DIB's in-target `env -u` removes.
const ENV_U: &[&str] = &["TMPDIR", "VIRTUAL_ENV"];

/// sudo's built-in `env_delete` list (sudo 1.9, `sudo -V` as root):
/// removed even with `-E`. A trailing `*` is a prefix; `()` marks exported
/// bash functions (`BASH_FUNC_name%%`).
const SUDO_REMOVES: &[&str] = &[
    "RUBYOPT",
    "RUBYLIB",
    "PYTHONUSERBASE",
    "PYTHONINSPECT",
    "PYTHONPATH",
    "PYTHONHOME",
    "TMPPREFIX",
    "ZDOTDIR",
    "READNULLCMD",
    "NULLCMD",
    "FPATH",
    "PERL5DB",
    "PERL5OPT",
    "PERL5LIB",
    "PERLLIB",
    "PERLIO_DEBUG",
    "JAVA_TOOL_OPTIONS",
    "SHELLOPTS",
    "BASHOPTS",
    "GLOBIGNORE",
    "PS4",
    "BASH_ENV",
    "ENV",
    "TERMCAP",
    "TERMPATH",
    "TERMINFO_DIRS",
    "TERMINFO",
    "_RLD*",
    "LD_*",
    "PATH_LOCALE",
    "NLSPATH",
    "HOSTALIASES",
    "RES_OPTIONS",
    "LOCALDOMAIN",
    "CDPATH",
    "IFS",
];

fn sudo_removes(k: &str, v: &str) -> bool {
    v.starts_with("()")
        || SUDO_REMOVES.iter().any(|p| match p.strip_suffix('*') {
            Some(pre) => k.starts_with(pre),
            None => k == *p,
        })
}

/// DIB's exported `die` (lib/die): print the message, exit with the status
/// of the command before it.
const DIE_FN: &str = "() {  local rc=$?;\n set +o xtrace;\n echo \"$@\";\n exit $rc\n}";

/// The function behind DIB's `PS4`: `file:line:function` of the traced
/// command (bash ignores an inherited PS4 when it runs as root, as hooks
/// usually do).
const PS4_FN: &str =
    "() {  local -a c=($(caller 0));\n printf '%-60s ' \"${c[2]}:${c[0]}:${c[1]}\"\n}";

fn find_in_path(name: &str) -> Option<String> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .map(|p| p.display().to_string())
}

/// `declare -p`'s double-quoted form of a value.
fn declare_quote(v: &str) -> String {
    let mut s = String::with_capacity(v.len() + 2);
    for c in v.chars() {
        if matches!(c, '"' | '\\' | '$' | '`') {
            s.push('\\');
        }
        s.push(c);
    }
    s
}

/// `--image-size` as the user wrote it, in GiB (DIB exports the option's
/// text as `DIB_IMAGE_SIZE` before it computes the size in KiB).
fn gib_text(bytes: u64) -> String {
    let g = bytes as f64 / (1u64 << 30) as f64;
    if g.fract() == 0.0 {
        format!("{}", g as u64)
    } else {
        let s = format!("{g:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// Keep the last value of every name, in first-seen order.
fn dedup(v: Vec<(String, String)>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::with_capacity(v.len());
    for (k, val) in v {
        if let Some(e) = out.iter_mut().find(|(n, _)| *n == k) {
            e.1 = val;
        } else {
            out.push((k, val));
        }
    }
    out
}

pub struct HookEnv {
    /// Caller environment plus DIB's variables, before the per-side edits.
    common: Vec<(String, String)>,
    host_path: String,
    shim: String,
    target: String,
}

impl HookEnv {
    /// `DIB_ROOT_LABEL` from the block-device config's root filesystem
    /// (disk-image-create's `getval root-label`), once the layout is known.
    pub fn set_root_label(&mut self, label: &str) {
        for (k, v) in self.common.iter_mut() {
            if k == "DIB_ROOT_LABEL" {
                *v = label.to_string();
            }
        }
    }

    /// `DIB_ROOT_FSTYPE` from the block-device config's root filesystem
    /// (`getval root-fstype`): the bootloader element adds GRUB's xfs
    /// module for an xfs root.
    pub fn set_root_fstype(&mut self, fstype: &str) {
        for (k, v) in self.common.iter_mut() {
            if k == "DIB_ROOT_FSTYPE" {
                *v = fstype.to_string();
            }
        }
    }

    /// `DIBR_EMULATED`: the binfmt_misc handler the image's programs run
    /// through when the image's architecture is not the host's. Inside the
    /// target `uname -m` answers the emulated architecture, so this is how
    /// an element can tell (the debootstrap element defers mkinitramfs on
    /// it: see its README).
    pub fn set_emulated(&mut self, handler: &Path) {
        self.common
            .push(("DIBR_EMULATED".into(), handler.display().to_string()));
    }

    pub fn new(cfg: &BuildConfig, w: &WorkDir, r: &Resolved, path: &ElementsPath) -> HookEnv {
        Self::with_caller(cfg, w, r, path, Self::caller())
    }

    /// The caller's environment (names and values that are UTF-8). All of
    /// it, `LD_PRELOAD` included as DIB passes it to outside hooks (e.g.
    /// `eatmydata disk-image-create`); the sandbox's fakeroot mode replaces
    /// `LD_PRELOAD`, `LD_LIBRARY_PATH` and `FAKEROOTKEY` with its own.
    fn caller() -> Vec<(String, String)> {
        std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect()
    }

    fn with_caller(
        cfg: &BuildConfig,
        w: &WorkDir,
        r: &Resolved,
        path: &ElementsPath,
        caller: Vec<(String, String)>,
    ) -> HookEnv {
        let s = |p: &Path| p.display().to_string();
        let get = |k: &str| lookup(&caller, k);
        // Values the caller may set and DIB keeps (`${VAR:-default}`).
        let or = |k: &str, d: String| get(k).filter(|v| !v.is_empty()).unwrap_or(d);
        let dib_args = dib_args();
        let python = python_exec(&caller, path);
        let dib_env = dib_env_text(&caller, &dib_args, &python);

        let mut e = caller.clone();
        e.extend([
            ("LC_ALL".into(), "C".into()),
            ("ARCH".into(), cfg.arch.clone()),
            // As given to -o (less a `.TYPE` DIB strips too), relative to
            // the directory the build runs in, like DIB's.
            ("IMAGE_NAME".into(), s(&cfg.image_name)),
            ("IMAGE_TYPE".into(), or("IMAGE_TYPE", "qcow2".into())),
            ("FS_TYPE".into(), or("FS_TYPE", "ext4".into())),
            ("IMAGE_ELEMENT".into(), r.image_element()),
            ("IMAGE_ELEMENT_YAML".into(), r.image_element_yaml()),
            ("ELEMENTS_PATH".into(), path.to_env_value()),
            ("TMP_BUILD_DIR".into(), s(w.root())),
            ("TMP_IMAGE_DIR".into(), s(&w.image_dir())),
            ("TMP_HOOKS_PATH".into(), s(&w.hooks())),
            ("TMP_MOUNT_PATH".into(), s(&w.target())),
            ("OUT_IMAGE_PATH".into(), String::new()),
            ("DIB_ARGS".into(), dib_args),
            ("DIB_ENV".into(), dib_env),
            ("DIB_PYTHON_EXEC".into(), python),
        ]);
        e.extend(dib_settings(cfg, &caller));
        e.extend([
            ("DIB_DIBR".into(), "1".into()),
            ("BASH_FUNC_die%%".into(), DIE_FN.into()),
            ("BASH_FUNC__ps4%%".into(), PS4_FN.into()),
            ("PS4".into(), "+ $(_ps4):   ".into()),
        ]);
        if cfg.skip_base {
            e.push(("SKIP_BASE".into(), "1".into()));
        }
        if let Some(b) = cfg.image_size {
            e.push(("DIB_IMAGE_SIZE".into(), gib_text(b)));
        }
        match crate::settings::shipped_lib_dir() {
            Some(d) => e.push(("_LIB".into(), s(&d))),
            None => eprintln!(
                "dibr: warning: no lib/ directory found (set DIBR_LIB_DIR): hooks that source $_LIB/… will fail"
            ),
        }
        e.push(image_element_array(r));
        HookEnv {
            common: dedup(e),
            host_path: get("PATH").unwrap_or_else(|| TARGET_PATH.into()),
            shim: s(&w.root().join("shim")),
            target: s(&w.target()),
        }
    }

    /// The environment both sides start from (the caller's plus DIB's
    /// variables, before the per-side edits): what the phase cache keys.
    pub fn cache_view(&self) -> Vec<(String, String)> {
        self.common.clone()
    }

    /// For hooks outside the chroot (root.d, extra-data.d, post-root.d,
    /// block-device.d, pre-finalise.d, cleanup.d).
    pub fn outside(&self, _phase: Phase) -> Vec<(String, String)> {
        let mut e = self.common.clone();
        e.push((
            "PATH".into(),
            format!("{}:{}:{TARGET_PATH}", self.shim, self.host_path),
        ));
        e.push(("TARGET_ROOT".into(), self.target.clone()));
        if !e.iter().any(|(k, _)| k == "HOME") {
            e.push(("HOME".into(), "/root".into()));
        }
        dedup(e)
    }

    /// For hooks in the chroot (the hooks are at /tmp/in_target.d): what
    /// `sudo -E chroot … env -u TMPDIR -u VIRTUAL_ENV` passes.
    pub fn in_target(&self) -> Vec<(String, String)> {
        let term = self
            .common
            .iter()
            .find(|(k, _)| k == "TERM")
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| "unknown".into());
        let mut e: Vec<(String, String)> = self
            .common
            .iter()
            .filter(|(k, v)| !ENV_U.contains(&k.as_str()) && !sudo_removes(k, v))
            .filter(|(k, _)| k != "TMP_HOOKS_PATH")
            .cloned()
            .collect();
        e.extend([
            ("PATH".into(), format!("{TARGET_PATH}:/tmp/in_target.d/bin")),
            ("HOME".into(), "/root".into()),
            ("TMP_HOOKS_PATH".into(), "/tmp/in_target.d".into()),
            // What sudo sets for the target user (root).
            ("USER".into(), "root".into()),
            ("LOGNAME".into(), "root".into()),
            ("SHELL".into(), "/bin/bash".into()),
            ("TERM".into(), term),
        ]);
        dedup(e)
    }
}

/// The caller's value of `k` (the last one, as a shell would see it).
fn lookup(caller: &[(String, String)], k: &str) -> Option<String> {
    caller
        .iter()
        .rev()
        .find(|(n, _)| n == k)
        .map(|(_, v)| v.clone())
}

/// DIB_ARGS: the command line after the command (`dibr build`, or the
/// `disk-image-create` symlink).
fn dib_args() -> String {
    let argv: Vec<String> = std::env::args().collect();
    let argv0 = argv
        .first()
        .and_then(|a| Path::new(a).file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let skip = if argv0.ends_with("image-create") {
        1
    } else {
        2
    };
    argv.iter()
        .skip(skip)
        .cloned()
        .collect::<Vec<_>>()
        .join(" ")
}

/// DIB_PYTHON_EXEC: the caller's, else the Python of DIB's element
/// library on ELEMENTS_PATH (as DIB's wrapper exports its own), else the
/// first python3/python on PATH.
fn python_exec(caller: &[(String, String)], path: &ElementsPath) -> String {
    lookup(caller, "DIB_PYTHON_EXEC")
        .filter(|v| !v.is_empty())
        .or_else(|| path.dib_python().map(|p| p.display().to_string()))
        .unwrap_or_else(|| {
            ["python3", "python"]
                .iter()
                .find_map(|n| find_in_path(n))
                .unwrap_or_else(|| "/usr/bin/python3".into())
        })
}

/// DIB_ENV: `declare -p` of the DIB_* variables when DIB starts: the
/// caller's, DIB_ARGS and DIB_PYTHON_EXEC (set by DIB's wrapper).
fn dib_env_text(caller: &[(String, String)], dib_args: &str, python: &str) -> String {
    let mut start: Vec<(String, String)> = caller
        .iter()
        .filter(|(k, _)| k.starts_with("DIB_"))
        .cloned()
        .collect();
    start.push(("DIB_ARGS".into(), dib_args.to_string()));
    start.push(("DIB_PYTHON_EXEC".into(), python.to_string()));
    let mut start = dedup(start);
    start.sort();
    start
        .iter()
        .map(|(k, v)| format!("declare -x {k}=\"{}\"", declare_quote(v)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The DIB_* settings disk-image-create derives from its options (an
/// option wins over the caller's variable; otherwise the caller's value,
/// else DIB's default).
fn dib_settings(cfg: &BuildConfig, caller: &[(String, String)]) -> Vec<(String, String)> {
    let get = |k: &str| lookup(caller, k);
    let or = |k: &str, d: String| get(k).filter(|v| !v.is_empty()).unwrap_or(d);
    let flag = |on: bool| if on { "1" } else { "0" }.to_string();
    let trace = if cfg.debug_trace {
        get("DIB_DEBUG_TRACE")
            .filter(|v| v.parse::<u32>().is_ok_and(|n| n > 0))
            .unwrap_or_else(|| "1".into())
    } else {
        "0".into()
    };
    let s = |p: &Path| p.display().to_string();
    vec![
        ("DIB_IMAGE_CACHE".into(), s(&cfg.image_cache)),
        // Shared by concurrent builds: cache-url and friends flock here.
        (
            "DIB_LOCKFILES".into(),
            or("DIB_LOCKFILES", s(&cfg.image_cache.join("lockfiles"))),
        ),
        (
            "DIB_OFFLINE".into(),
            if cfg.offline {
                "1".into()
            } else {
                String::new()
            },
        ),
        ("DIB_DEBUG_TRACE".into(), trace),
        (
            "DIB_CHECKSUM".into(),
            if cfg.checksum {
                "1".into()
            } else {
                or("DIB_CHECKSUM", "0".into())
            },
        ),
        ("DIB_NO_TMPFS".into(), flag(cfg.tmpfs_min_gib.is_none())),
        (
            "DIB_MIN_TMPFS".into(),
            cfg.tmpfs_min_gib
                .map(|g| g.to_string())
                .unwrap_or_else(|| or("DIB_MIN_TMPFS", "2".into())),
        ),
        (
            "DIB_ROOT_LABEL".into(),
            cfg.root_label
                .clone()
                .unwrap_or_else(|| "cloudimg-rootfs".into()),
        ),
        ("DIB_ROOT_FSTYPE".into(), "ext4".into()),
        // --install-type wins over the caller's variable (DIB sets its
        // variable from the option).
        (
            "DIB_DEFAULT_INSTALLTYPE".into(),
            cfg.install_type
                .clone()
                .unwrap_or_else(|| or("DIB_DEFAULT_INSTALLTYPE", "source".into())),
        ),
    ]
}

/// `get_image_element_array`, the bash function DIB exports: the element
/// names and paths as an associative array's body.
fn image_element_array(r: &Resolved) -> (String, String) {
    let mut arr = String::new();
    for (n, p) in &r.elements {
        arr.push_str(&format!("[{n}]={} ", p.display()));
    }
    (
        "BASH_FUNC_get_image_element_array%%".into(),
        format!("() {{  echo \"{}\"\n}}", declare_quote(&arr)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sudo_list_and_functions() {
        assert!(sudo_removes("LD_PRELOAD", "x"));
        assert!(sudo_removes("PS4", "+ "));
        assert!(sudo_removes("BASH_FUNC_die%%", "() {  exit\n}"));
        assert!(!sudo_removes("DIB_RELEASE", "bookworm"));
        assert!(!sudo_removes("LDX", "x"));
    }

    #[test]
    fn declare_quoting_and_sizes() {
        assert_eq!(declare_quote(r#"a"b$c\d`e"#), r#"a\"b\$c\\d\`e"#);
        assert_eq!(gib_text(2 << 30), "2");
        assert_eq!(gib_text(3 << 29), "1.5");
    }

    #[test]
    fn dedup_keeps_last_value_first_position() {
        let v = vec![
            ("A".to_string(), "1".to_string()),
            ("B".to_string(), "2".to_string()),
            ("A".to_string(), "3".to_string()),
        ];
        assert_eq!(
            dedup(v),
            vec![
                ("A".to_string(), "3".to_string()),
                ("B".to_string(), "2".to_string())
            ]
        );
    }
}
