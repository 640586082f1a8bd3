//! Helpers shared by the benches (a directory module, so cargo does not
//! take it for a bench target of its own).
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;
use std::time::Instant;

/// PATH of the commands run as the bench user.
pub const USER_PATH: &str = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin";

/// Run `cmd`; panic with its output unless it exits 0.
pub fn sh(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    if !out.status.success() {
        panic!(
            "{cmd:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Seconds `f` takes, after a `sync` so earlier writes do not count.
pub fn timed(mut f: impl FnMut()) -> f64 {
    sh(&mut Command::new("sync"));
    let t = Instant::now();
    f();
    t.elapsed().as_secs_f64()
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// `prog` run as `user` with setpriv in a clean environment (`PATH` =
/// [`USER_PATH`], `HOME`, then `env`, which may override both), or as
/// ourselves with `env` added when `user` is None.
pub fn user_cmd(user: Option<&str>, prog: &Path, env: &[(&str, &str)]) -> Command {
    match user {
        Some(u) => {
            let mut c = Command::new("setpriv");
            c.args([
                &format!("--reuid={u}"),
                &format!("--regid={u}"),
                "--init-groups",
                "env",
                "-i",
                &format!("PATH={USER_PATH}"),
                &format!("HOME=/home/{u}"),
            ]);
            c.args(env.iter().map(|(k, v)| format!("{k}={v}")));
            c.arg(prog);
            c
        }
        None => {
            let mut c = Command::new(prog);
            c.envs(env.iter().copied());
            c
        }
    }
}
