//! `first-boot.d` (from dibr's original design): those hooks are installed
//! into the image with a one-shot systemd unit that runs them once at first
//! boot, before the login prompt, with the same dib-run-parts semantics.

use std::io;
use std::path::Path;

use super::hooks_dir::{copy_tree, DIB_RUN_PARTS};

pub const UNIT_NAME: &str = "dibr-first-boot.service";
const LIB_DIR: &str = "usr/local/lib/dibr";

const UNIT: &str = "[Unit]
Description=dibr first-boot hooks (run once)
Wants=network-online.target
After=network-online.target
Before=getty.target serial-getty@ttyS0.service systemd-user-sessions.service
ConditionPathExists=!/var/lib/dibr/first-boot.done

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/bash /usr/local/lib/dibr/dib-run-parts /usr/local/lib/dibr/first-boot.d
ExecStartPost=/bin/sh -c 'mkdir -p /var/lib/dibr && touch /var/lib/dibr/first-boot.done'
StandardOutput=journal+console

[Install]
WantedBy=multi-user.target
";

/// Install `hooks/first-boot.d` into `target` and enable the unit; no-op
/// when no element has first-boot hooks. Returns whether anything was installed.
pub fn install(hooks: &Path, target: &Path) -> io::Result<bool> {
    let src = hooks.join("first-boot.d");
    if !src.is_dir() || std::fs::read_dir(&src)?.next().is_none() {
        return Ok(false);
    }
    let lib = target.join(LIB_DIR);
    std::fs::create_dir_all(&lib)?;
    let dst = lib.join("first-boot.d");
    if dst.exists() {
        std::fs::remove_dir_all(&dst)?;
    }
    copy_tree(&src, &dst)?;
    let runner = lib.join("dib-run-parts");
    std::fs::write(&runner, DIB_RUN_PARTS)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&runner, std::fs::Permissions::from_mode(0o755))?;
    let units = target.join("etc/systemd/system");
    let wants = units.join("multi-user.target.wants");
    std::fs::create_dir_all(&wants)?;
    std::fs::write(units.join(UNIT_NAME), UNIT)?;
    let link = wants.join(UNIT_NAME);
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(format!("../{UNIT_NAME}"), link)?;
    Ok(true)
}
