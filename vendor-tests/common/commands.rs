//! Running commands.

use std::process::{Command, Output, Stdio};

pub fn out_text(o: &Output) -> String {
    format!(
        "exit: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null());
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Run, panic with the full output unless it exits 0.
pub fn run_ok(cmd: &mut Command) -> Output {
    let o = run(cmd);
    assert!(
        o.status.success(),
        "command failed: {cmd:?}\n{}",
        out_text(&o)
    );
    o
}

pub fn sh(script: &str) -> Output {
    run_ok(Command::new("sh").arg("-c").arg(script))
}

/// Single-quote for sh.
pub fn q(p: impl AsRef<std::ffi::OsStr>) -> String {
    let s = p.as_ref().to_string_lossy();
    format!("'{}'", s.replace('\'', "'\\''"))
}
