//! Helpers shared by the benches (a directory module, so cargo does not
//! take it for a bench target of its own).
#![allow(dead_code)]

use std::process::Command;
use std::time::Instant;

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
