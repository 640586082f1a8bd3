//! The unprivileged CI user the rootless builds and the boot tests run
//! as (`.ci/run` creates it), and commands run as that user.

use std::process::{Command, Stdio};

use super::tool;

pub const USER: &str = "dibr-ci";

/// `prog` as the CI user with a clean environment plus `env`.
pub fn as_user(prog: impl AsRef<std::ffi::OsStr>, env: &[(&str, &str)]) -> Command {
    let mut c = Command::new(tool("setpriv"));
    c.args([
        &format!("--reuid={USER}"),
        &format!("--regid={USER}"),
        "--init-groups",
        "env",
        "-i",
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        &format!("HOME=/home/{USER}"),
    ]);
    for (k, v) in env {
        c.arg(format!("{k}={v}"));
    }
    c.arg(prog).stdin(Stdio::null());
    c
}
