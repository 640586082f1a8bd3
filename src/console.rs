//! What a build shows on the terminal, and where the rest goes.
//!
//! diskimage-builder prints every line of every hook (a `debian vm` build
//! is about a thousand lines, warnings of apt and initramfs-tools among
//! them) unless `--logfile` silences the terminal entirely. dibr's default
//! is in between, as mkosi's is: the hooks' output goes to a log file, and
//! the terminal shows dibr's own lines — a line per phase with its time,
//! hook and package counts, progress for the long steps, the summary. A
//! hook that fails has its whole output shown. The modes:
//!
//! - **compact** (`dibr build`, `dibr ramdisk`): [`start_compact`];
//! - **verbose** (`-v`, and dibr called as `disk-image-create` or
//!   `ramdisk-image-create`, whose callers — nodepool, the Ironic builder —
//!   read the whole output as DIB gives it): nothing here is started and
//!   every line is live;
//! - **DIB's `--logfile`**: `cli/logfile.rs` (outfilter.py's format,
//!   the terminal quiet unless `DIB_QUIET=0`).
//!
//! In compact mode dibr's own standard error stays the terminal; only the
//! sandbox's processes (every hook) write into a pipe ([`child_output`]),
//! read by one thread that writes each line to the log (and to the
//! terminal when it is one of dibr's helpers' `dibr: …` lines), follows
//! `dib-run-parts Running …` to know the current hook, counts packages
//! set up, and keeps the current hook's lines for a failure report.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use indicatif::{ProgressBar, ProgressStyle};

/// Lines of the current hook kept for a failure report; a hook that
/// prints more has its first lines dropped (the log has them all).
const FAILED_HOOK_LINES: usize = 4000;

/// The line the copier answers [`sync`] on: no hook prints it.
const SYNC_MARK: &str = "\u{1}dibr-console-sync\u{1}";

/// What the hooks' output has shown since the phase started.
#[derive(Default)]
struct Tracker {
    /// The phase's name (`install.d`).
    phase: String,
    /// The hook `dib-run-parts` last said it runs.
    hook: Option<String>,
    hooks: usize,
    /// `Setting up PKG` lines (dpkg, through apt or not).
    packages: usize,
    /// The current hook's lines (for a failure report).
    lines: VecDeque<String>,
    /// Markers seen (see [`sync`]).
    synced: u64,
    /// When the current hook started (its `Running` line was read).
    hook_started: Option<Instant>,
    /// The phase's hooks and their seconds, in the order they ran (what
    /// dib-run-parts' profiling table has, timed here as the lines come).
    hook_secs: Vec<(String, f64)>,
}

impl Tracker {
    /// Follow one line of hook output.
    fn see(&mut self, line: &str) {
        if let Some(path) = line.strip_prefix("dib-run-parts Running ") {
            self.hook_ended();
            let name = path.rsplit('/').next().unwrap_or(path).trim();
            self.hook = Some(name.to_string());
            self.hook_started = Some(Instant::now());
            self.hooks += 1;
            self.lines.clear();
        } else if line
            .strip_prefix("dib-run-parts ")
            .and_then(|l| l.strip_suffix(" completed"))
            .is_some_and(|n| Some(n) == self.hook.as_deref())
        {
            self.hook_ended();
        } else if line.starts_with("Setting up ") {
            self.packages += 1;
        }
        if self.lines.len() == FAILED_HOOK_LINES {
            self.lines.pop_front();
        }
        self.lines.push_back(line.to_string());
    }

    /// The current hook is over: keep its time.
    fn hook_ended(&mut self) {
        if let (Some(h), Some(t)) = (&self.hook, self.hook_started.take()) {
            self.hook_secs.push((h.clone(), t.elapsed().as_secs_f64()));
        }
    }

    /// `slowest: 01-install 380.2s, 50-bootloader 20.1s`: the (up to)
    /// three hooks that took a second or more, slowest first — where an
    /// emulated (qemu-user) build spends its time.
    fn slowest(&self) -> Option<String> {
        let mut v: Vec<&(String, f64)> = self.hook_secs.iter().filter(|(_, s)| *s >= 1.0).collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1));
        let shown: Vec<String> = v
            .iter()
            .take(3)
            .map(|(h, s)| format!("{h} {s:.1}s"))
            .collect();
        (!shown.is_empty()).then(|| format!("slowest: {}", shown.join(", ")))
    }
}

/// The running compact console.
struct Compact {
    log: Arc<Mutex<File>>,
    log_path: PathBuf,
    /// The pipe's write end, duplicated for each sandboxed process.
    write_end: OwnedFd,
    tracker: Arc<(Mutex<Tracker>, Condvar)>,
    /// A live status line (terminals only).
    bar: Option<ProgressBar>,
    copier: Option<JoinHandle<()>>,
}

static CONSOLE: Mutex<Option<Compact>> = Mutex::new(None);

/// `eprintln!` for a line the user should see: [`say`].
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => { $crate::console::say(&format!($($arg)*)) };
}

/// `eprintln!` for a line only a verbose build shows: [`detail`].
#[macro_export]
macro_rules! detail {
    ($($arg:tt)*) => { $crate::console::detail(&format!($($arg)*)) };
}

/// Errors starting the compact console (the build then stops: the user
/// asked for a build whose output would go nowhere).
#[derive(Debug, thiserror::Error)]
#[error("the build log {path}: {what}: {source}")]
pub struct ConsoleError {
    path: PathBuf,
    what: &'static str,
    #[source]
    source: std::io::Error,
}

/// Send the sandboxed processes' output to `log_path` (created, or
/// replaced) and keep the terminal for dibr's own lines. Ends with
/// [`finish`].
pub fn start_compact(log_path: &Path) -> Result<(), ConsoleError> {
    let fail = |what, source| ConsoleError {
        path: log_path.to_path_buf(),
        what,
        source,
    };
    if let Some(dir) = log_path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| fail("creating its directory", e))?;
    }
    let log = File::create(log_path).map_err(|e| fail("creating", e))?;
    // Close-on-exec: only the sandbox's processes get the write end (as
    // their standard output and error), nothing else dibr starts.
    let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| fail("making a pipe", e.into()))?;
    let log = Arc::new(Mutex::new(log));
    let tracker: Arc<(Mutex<Tracker>, Condvar)> = Arc::default();
    let bar = std::io::stderr().is_terminal().then(|| {
        let b = ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{spinner} {msg} [{elapsed}]")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        b.enable_steady_tick(Duration::from_millis(200));
        b
    });
    let copier = {
        let (log, tracker, bar) = (Arc::clone(&log), Arc::clone(&tracker), bar.clone());
        std::thread::spawn(move || copy_lines(File::from(r), &log, &tracker, bar.as_ref()))
    };
    let c = Compact {
        log,
        log_path: log_path.to_path_buf(),
        write_end: w,
        tracker,
        bar,
        copier: Some(copier),
    };
    if let Ok(mut g) = CONSOLE.lock() {
        *g = Some(c);
    }
    Ok(())
}

/// The copier: every line to the log, each one followed by the tracker.
fn copy_lines(
    r: File,
    log: &Mutex<File>,
    tracker: &(Mutex<Tracker>, Condvar),
    bar: Option<&ProgressBar>,
) {
    let mut lines = BufReader::new(r);
    let mut raw = Vec::new();
    while matches!(lines.read_until(b'\n', &mut raw), Ok(n) if n > 0) {
        let line = String::from_utf8_lossy(&raw);
        let line = line.trim_end_matches(['\n', '\r']);
        let (lock, cv) = tracker;
        let Ok(mut t) = lock.lock() else { break };
        if line == SYNC_MARK {
            t.synced += 1;
            cv.notify_all();
            raw.clear();
            continue;
        }
        log_line(log, line);
        // dibr's own helpers (the sandbox, the capture) speak in lines
        // that start with "dibr": those are for the user too.
        if line.starts_with("dibr: ") || line.starts_with("dibr sandbox: ") {
            match bar {
                Some(b) => b.suspend(|| eprintln!("{line}")),
                None => eprintln!("{line}"),
            }
        }
        t.see(line);
        if let (Some(b), Some(h)) = (bar, &t.hook) {
            b.set_message(status(&t.phase, h, t.packages));
        }
        raw.clear();
    }
}

/// The status line: `install.d 50-b (120 packages set up)`.
fn status(phase: &str, hook: &str, packages: usize) -> String {
    if packages > 0 {
        format!("{phase} {hook} ({packages} packages set up)")
    } else {
        format!("{phase} {hook}")
    }
}

/// One line into the log, as `cli/logfile.rs` writes them
/// (diskimage-builder's outfilter.py format).
fn log_line(log: &Mutex<File>, line: &str) {
    if let Ok(mut f) = log.lock() {
        let _ = writeln!(
            f,
            "{} | {line}",
            crate::cli::logfile::timestamp(SystemTime::now())
        );
    }
}

/// Where a sandboxed process writes its standard output and error: the
/// compact console's pipe, or `None` (inherit dibr's).
pub fn child_output() -> Option<(OwnedFd, OwnedFd)> {
    let g = CONSOLE.lock().ok()?;
    let c = g.as_ref()?;
    let out = c.write_end.try_clone().ok()?;
    let err = c.write_end.try_clone().ok()?;
    Some((out, err))
}

/// Whether the compact console is running.
pub fn is_compact() -> bool {
    CONSOLE.lock().map(|g| g.is_some()).unwrap_or(false)
}

/// A line for the user: on the terminal (and in the log when there is
/// one).
pub fn say(line: &str) {
    let g = CONSOLE.lock();
    match g.as_ref().ok().and_then(|g| g.as_ref()) {
        Some(c) => {
            log_line(&c.log, line);
            match &c.bar {
                Some(b) => b.suspend(|| eprintln!("{line}")),
                None => eprintln!("{line}"),
            }
        }
        None => eprintln!("{line}"),
    }
}

/// A line for the log: on the terminal only when everything is shown.
pub fn detail(line: &str) {
    let g = CONSOLE.lock();
    match g.as_ref().ok().and_then(|g| g.as_ref()) {
        Some(c) => log_line(&c.log, line),
        None => eprintln!("{line}"),
    }
}

/// Wait (briefly) until the copier has read everything written into the
/// pipe before now, so counts and the failed hook's lines are complete.
fn sync() {
    let (tracker, mut pipe) = {
        let Ok(g) = CONSOLE.lock() else { return };
        let Some(c) = g.as_ref() else { return };
        let Ok(w) = c.write_end.try_clone() else {
            return;
        };
        (Arc::clone(&c.tracker), File::from(w))
    };
    let (lock, cv) = &*tracker;
    let Ok(t) = lock.lock() else { return };
    let want = t.synced + 1;
    drop(t);
    if writeln!(pipe, "{SYNC_MARK}").is_err() {
        return;
    }
    let Ok(t) = lock.lock() else { return };
    let _ = cv.wait_timeout_while(t, Duration::from_secs(5), |t| t.synced < want);
}

/// A phase of hooks begins: the status line names it.
pub fn phase_started(name: &str, line: &str) {
    detail(line);
    let Ok(g) = CONSOLE.lock() else { return };
    let Some(c) = g.as_ref() else { return };
    if let Ok(mut t) = c.tracker.0.lock() {
        let synced = t.synced;
        *t = Tracker {
            synced,
            phase: name.to_string(),
            ..Tracker::default()
        };
    }
    if let Some(b) = &c.bar {
        b.set_message(name.to_string());
        b.reset_elapsed();
    }
}

/// The phase ended well: its line, with what the hooks did when known.
pub fn phase_done(line: &str) {
    sync();
    let counts = {
        let g = CONSOLE.lock();
        g.ok().and_then(|g| {
            let c = g.as_ref()?;
            let mut t = c.tracker.0.lock().ok()?;
            t.hook_ended();
            Some((t.hooks, t.packages, t.slowest()))
        })
    };
    match counts {
        Some((hooks, packages, slowest)) => {
            let mut what = vec![format!("{hooks} hook{}", if hooks == 1 { "" } else { "s" })];
            if packages > 0 {
                what.push(format!("{packages} packages set up"));
            }
            let slowest = slowest.map(|s| format!("; {s}")).unwrap_or_default();
            say(&format!("{line} ({}{slowest})", what.join(", ")))
        }
        None => say(line),
    }
}

/// The output of the hook that was running when a phase failed (all of
/// it up to [`FAILED_HOOK_LINES`] lines), for the terminal; empty when
/// the console is not compact (the terminal showed it already).
pub fn failed_hook_output() -> Option<(Option<String>, Vec<String>)> {
    sync();
    let g = CONSOLE.lock().ok()?;
    let c = g.as_ref()?;
    let t = c.tracker.0.lock().ok()?;
    Some((t.hook.clone(), t.lines.iter().cloned().collect()))
}

/// The log file of the compact console.
pub fn log_path() -> Option<PathBuf> {
    let g = CONSOLE.lock().ok()?;
    g.as_ref().map(|c| c.log_path.clone())
}

/// Stop the compact console: the status line goes, the last lines reach
/// the log. A daemon a hook left behind may hold the pipe open, so the
/// copier is not waited for long.
pub fn finish() {
    let c = match CONSOLE.lock() {
        Ok(mut g) => g.take(),
        Err(_) => None,
    };
    let Some(mut c) = c else { return };
    if let Some(b) = &c.bar {
        b.finish_and_clear();
    }
    drop(c.write_end);
    if let Some(h) = c.copier.take() {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !h.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if h.is_finished() {
            let _ = h.join();
        }
    }
}

/// A place for the build log: `DIR/NAME-YYYYMMDDTHHMMSSZ.log`, the
/// oldest beyond `keep` removed so the directory does not grow for ever.
pub fn log_file_for(dir: &Path, image_name: &Path, keep: usize) -> PathBuf {
    let base = image_name
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "image".into());
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let stamp: String = crate::progress::utc_stamp(now)
        .chars()
        .filter(|c| !matches!(c, '-' | ':'))
        .collect();
    prune_logs(dir, keep);
    dir.join(format!("{base}-{stamp}-{}.log", std::process::id()))
}

/// Keep the `keep` newest `*.log` files of `dir`.
fn prune_logs(dir: &Path, keep: usize) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut logs: Vec<(SystemTime, PathBuf)> = rd
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    if logs.len() < keep {
        return;
    }
    logs.sort();
    for (_, p) in &logs[..logs.len() + 1 - keep] {
        let _ = std::fs::remove_file(p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracker_follows_hooks_and_packages() {
        let mut t = Tracker::default();
        t.see("dib-run-parts Running /tmp/in_target.d/install.d/01-a");
        t.see("Setting up libc6:amd64 (2.36-9) ...");
        t.see("Setting up bash (5.2) ...");
        t.see("dib-run-parts Running /tmp/in_target.d/install.d/50-b");
        t.see("oops");
        assert_eq!(t.hooks, 2);
        assert_eq!(t.packages, 2);
        assert_eq!(t.hook.as_deref(), Some("50-b"));
        assert_eq!(
            t.lines.iter().collect::<Vec<_>>(),
            [
                "dib-run-parts Running /tmp/in_target.d/install.d/50-b",
                "oops"
            ]
        );
    }

    #[test]
    fn tracker_times_hooks_and_names_the_slowest() {
        let mut t = Tracker::default();
        t.see("dib-run-parts Running /tmp/in_target.d/install.d/01-a");
        t.see("dib-run-parts 01-a completed");
        t.see("dib-run-parts Running /tmp/in_target.d/install.d/50-b");
        t.hook_ended();
        assert_eq!(
            t.hook_secs
                .iter()
                .map(|(h, _)| h.as_str())
                .collect::<Vec<_>>(),
            ["01-a", "50-b"]
        );
        assert_eq!(t.slowest(), None, "hooks under a second are not named");
        t.hook_secs = vec![
            ("01-a".into(), 2.0),
            ("02-b".into(), 380.0),
            ("03-c".into(), 0.5),
            ("04-d".into(), 20.0),
            ("05-e".into(), 1.5),
        ];
        assert_eq!(
            t.slowest().as_deref(),
            Some("slowest: 02-b 380.0s, 04-d 20.0s, 01-a 2.0s")
        );
    }

    #[test]
    fn logs_are_pruned_to_the_newest() {
        let d = std::env::temp_dir().join(format!("dibr-console-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        for i in 0..5 {
            let p = d.join(format!("x{i}.log"));
            std::fs::write(&p, "").unwrap();
            let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + i);
            File::options()
                .write(true)
                .open(&p)
                .unwrap()
                .set_modified(t)
                .unwrap();
        }
        let p = log_file_for(&d, Path::new("out/debian"), 3);
        assert!(p
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("debian-"));
        let mut left: Vec<String> = std::fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["x3.log", "x4.log"]);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
