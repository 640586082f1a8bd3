//! The environment hooks see (../shared/reference/diskimage-builder.md §2.2):
//! DIB's core variables, every `DIB_*` knob of the caller passed through,
//! `LC_ALL=C`, and for outside hooks a PATH whose first entry has the
//! pass-through `sudo`.

use std::path::Path;

use super::workdir::WorkDir;
use super::BuildConfig;
use crate::elements::path::ElementsPath;
use crate::elements::resolve::Resolved;
use crate::elements::Phase;

const TARGET_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn find_in_path(name: &str) -> Option<String> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .map(|p| p.display().to_string())
}

pub struct HookEnv {
    common: Vec<(String, String)>,
    host_path: String,
    shim: String,
    target: String,
    hooks: String,
}

impl HookEnv {
    pub fn new(cfg: &BuildConfig, w: &WorkDir, r: &Resolved, path: &ElementsPath) -> HookEnv {
        let s = |p: &Path| p.display().to_string();
        let mut common: Vec<(String, String)> = Vec::new();
        // Caller's DIB_* knobs first, so the core values below win.
        for (k, v) in std::env::vars() {
            if k.starts_with("DIB_") || k == "http_proxy" || k == "https_proxy" || k == "no_proxy" {
                common.push((k, v));
            }
        }
        let name = cfg
            .image_name
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        common.extend([
            ("LC_ALL".into(), "C".into()),
            ("ARCH".into(), cfg.arch.clone()),
            ("IMAGE_NAME".into(), name),
            ("IMAGE_ELEMENT".into(), r.image_element()),
            ("IMAGE_ELEMENT_YAML".into(), r.image_element_yaml()),
            ("ELEMENTS_PATH".into(), path.to_env_value()),
            ("TMP_BUILD_DIR".into(), s(w.root())),
            ("TMP_IMAGE_DIR".into(), s(&w.image_dir())),
            ("TMP_HOOKS_PATH".into(), s(&w.hooks())),
            ("TMP_MOUNT_PATH".into(), s(&w.target())),
            ("DIB_IMAGE_CACHE".into(), s(&cfg.image_cache)),
            // Shared by concurrent builds: cache-url and friends flock here.
            (
                "DIB_LOCKFILES".into(),
                s(&cfg.image_cache.join("lockfiles")),
            ),
            (
                "DIB_OFFLINE".into(),
                if cfg.offline {
                    "1".into()
                } else {
                    String::new()
                },
            ),
            (
                "DIB_DEBUG_TRACE".into(),
                if cfg.debug_trace {
                    "1".into()
                } else {
                    "0".into()
                },
            ),
            (
                "DIB_ROOT_LABEL".into(),
                cfg.root_label
                    .clone()
                    .unwrap_or_else(|| "cloudimg-rootfs".into()),
            ),
            ("DIB_ROOT_FSTYPE".into(), "ext4".into()),
            (
                "DIB_DEFAULT_INSTALLTYPE".into(),
                std::env::var("DIB_DEFAULT_INSTALLTYPE").unwrap_or_else(|_| "source".into()),
            ),
            ("DIB_DIBR".into(), "1".into()),
        ]);
        // DIB runs outside helpers (package-installs-squash, …) with the
        // Python that runs DIB; ours is the host's python3 unless set.
        if std::env::var_os("DIB_PYTHON_EXEC").is_none() {
            let py = ["python3", "python"]
                .iter()
                .find_map(|n| find_in_path(n))
                .unwrap_or_else(|| "/usr/bin/python3".into());
            common.push(("DIB_PYTHON_EXEC".into(), py));
        }
        let dib_env: Vec<String> = common
            .iter()
            .filter(|(k, _)| k.starts_with("DIB_"))
            .map(|(k, v)| format!("declare -x {k}=\"{v}\""))
            .collect();
        common.push(("DIB_ENV".into(), dib_env.join("\n")));
        common.push((
            "DIB_ARGS".into(),
            std::env::args().skip(2).collect::<Vec<_>>().join(" "),
        ));
        if let Ok(tz) = std::env::var("TERM") {
            common.push(("TERM".into(), tz));
        }
        HookEnv {
            common,
            host_path: std::env::var("PATH").unwrap_or_else(|_| TARGET_PATH.into()),
            shim: s(&w.root().join("shim")),
            target: s(&w.target()),
            hooks: s(&w.hooks()),
        }
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
        e.push((
            "HOME".into(),
            std::env::var("HOME").unwrap_or_else(|_| "/root".into()),
        ));
        e
    }

    /// For hooks in the chroot: the hooks are at /tmp/in_target.d.
    pub fn in_target(&self) -> Vec<(String, String)> {
        let mut e: Vec<(String, String)> = self
            .common
            .iter()
            .filter(|(k, _)| k != "TMP_HOOKS_PATH")
            .cloned()
            .collect();
        e.push(("PATH".into(), format!("{TARGET_PATH}:/tmp/in_target.d/bin")));
        e.push(("HOME".into(), "/root".into()));
        e.push(("TMP_HOOKS_PATH".into(), "/tmp/in_target.d".into()));
        let _ = &self.hooks;
        e
    }
}
