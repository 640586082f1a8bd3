//! fakeroot mode's one `faked` per build (fakeroot(1), faked(1)).
//!
//! The `fakeroot` wrapper starts a daemon per command and can only carry
//! owners and modes across commands through its save file, which loses
//! extended attributes (file capabilities). dibr instead starts one
//! `faked-sysv --foreground` for the whole build and hands every hook, and
//! finally the capture, its key through the environment — what the wrapper
//! itself exports: `FAKEROOTKEY`, `LD_LIBRARY_PATH` and `LD_PRELOAD`.
//! The daemon dies with dibr (PR_SET_PDEATHSIG) and is stopped by
//! [`stop`] at the end of the build.

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;

use super::mode::FakerootTools;
use super::{sys, SandboxError};

/// The running daemon and its key.
struct Faked {
    child: Child,
    key: String,
}

static FAKED: Mutex<Option<Faked>> = Mutex::new(None);

/// The environment a hook needs to reach the build's `faked` (started on
/// first use).
pub fn hook_env(tools: &FakerootTools) -> Result<Vec<(OsString, OsString)>, SandboxError> {
    let key = key(tools)?;
    let lib_dir = tools
        .lib
        .parent()
        .map(|d| d.as_os_str().to_owned())
        .unwrap_or_default();
    let lib_name = tools
        .lib
        .file_name()
        .map(|n| n.to_owned())
        .unwrap_or_default();
    Ok(vec![
        ("FAKEROOTKEY".into(), key.into()),
        ("LD_LIBRARY_PATH".into(), lib_dir),
        ("LD_PRELOAD".into(), lib_name),
        // What the fakeroot wrapper exports: files faked never saw are
        // root's.
        ("FAKED_MODE".into(), "unknown-is-root".into()),
    ])
}

fn key(tools: &FakerootTools) -> Result<String, SandboxError> {
    let mut g = FAKED
        .lock()
        .map_err(|_| SandboxError::Setup("fakeroot: lock poisoned".into()))?;
    if let Some(f) = g.as_mut() {
        if matches!(f.child.try_wait(), Ok(None)) {
            return Ok(f.key.clone());
        }
        return Err(SandboxError::Setup(format!(
            "fakeroot: {} exited during the build; the faked owners are lost",
            tools.faked.display()
        )));
    }
    let f = start(tools)?;
    let key = f.key.clone();
    *g = Some(f);
    Ok(key)
}

/// Start `faked-sysv --foreground` and read its `KEY:PID` line.
fn start(tools: &FakerootTools) -> Result<Faked, SandboxError> {
    let fail = |detail: String| {
        SandboxError::Setup(format!(
            "fakeroot: starting {}: {detail}",
            tools.faked.display()
        ))
    };
    let mut cmd = Command::new(&tools.faked);
    cmd.arg("--foreground")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    sys::command_dies_with_parent(&mut cmd);
    let mut child = cmd.spawn().map_err(|e| fail(e.to_string()))?;
    let mut line = String::new();
    let read = child
        .stdout
        .take()
        .map(|o| BufReader::new(o).read_line(&mut line));
    let key = line.trim().split(':').next().unwrap_or("").to_string();
    if !matches!(read, Some(Ok(n)) if n > 0) || key.is_empty() || key.parse::<u64>().is_err() {
        let _ = child.kill();
        let _ = child.wait();
        return Err(fail(format!(
            "expected KEY:PID on its output, got {line:?}"
        )));
    }
    Ok(Faked { child, key })
}

/// Stop the daemon (SIGTERM lets it remove its SysV message queue).
pub fn stop() {
    let Ok(mut g) = FAKED.lock() else { return };
    if let Some(mut f) = g.take() {
        let _ = sys::kill(f.child.id(), rustix::process::Signal::TERM);
        let _ = f.child.wait();
    }
}
