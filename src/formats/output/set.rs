//! Output sets: every output of one command — images, their `--checksum`
//! side files and `NAME.d/` — appears together, or none of them does.
//!
//! One file can be made to appear atomically (`rename(2)`); several cannot.
//! So while a set is open, [`AtomicFile::commit`](super::atomic::AtomicFile)
//! does not name its file: the set keeps it (unnamed, or under a hidden
//! name when another process wrote it). When every output is complete,
//! [`OutputSet::commit`] gives each a hidden name, writes a journal of
//! `hidden → final` renames beside them, and hands the journal to
//! `dibr __commit-outputs`, a child in its own process group: a SIGINT
//! from the terminal or a SIGKILL of the building process does not stop
//! it, so once the renames begin they all happen. Should the committer be
//! killed too (its process group, or the machine), the journal is still
//! there: the next build or assembly into that directory finishes it
//! ([`recover`]), since every file it names was complete when it was
//! written. Hidden names of dead processes without a journal are removed.

use std::ffi::OsString;
use std::fs;
use std::io::{self, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};

use super::atomic::AtomicFile;

/// What a staged output is until the set is committed.
enum Staged {
    /// Written by this process: an [`AtomicFile`] not yet named.
    File(AtomicFile),
    /// A complete file under a hidden name (written by a child process).
    Named { hidden: PathBuf, dest: PathBuf },
    /// A directory filled under a hidden name, to replace `dest`.
    Dir { hidden: PathBuf, dest: PathBuf },
}

/// Where the process is with its outputs; the SIGINT handler reads it.
enum Phase {
    /// No set being committed.
    Open,
    /// The committer is renaming; the handler waits for it.
    Committing,
    /// A set was named: these outputs exist.
    Done(Vec<PathBuf>),
    /// Interrupted before a commit: nothing may be named any more.
    Abandoned,
}

/// The sets open on this thread. Per thread, so that an output written
/// by another thread (the library's parallel tests) joins no set by
/// accident; the commit and the handler meet in [`PHASE`].
#[derive(Default)]
struct Local {
    depth: usize,
    staged: Vec<Staged>,
}

thread_local! {
    static LOCAL: std::cell::RefCell<Local> = std::cell::RefCell::new(Local::default());
}

/// The prefix of journal files (`.dibr-commit-PID`; `.dibr-commit-tmp-PID` while written).
const JOURNAL_PREFIX: &str = ".dibr-commit-";
/// The tags of hidden names (`.dibr-TAG-PID-NAME`) the set and
/// [`AtomicFile`] use, which [`recover`] may remove for dead processes.
const HIDDEN_TAGS: [&str; 3] = ["tmp", "link", "stage"];

static PHASE: Mutex<Phase> = Mutex::new(Phase::Open);
static PHASE_CHANGED: Condvar = Condvar::new();

fn phase() -> std::sync::MutexGuard<'static, Phase> {
    PHASE.lock().unwrap_or_else(|p| p.into_inner())
}

/// An open output set; commit it when every output is written. Dropped
/// uncommitted, it removes what it staged. Sets nest: only the outermost
/// one (e.g. `dibr build`'s around `dibr assemble`'s) names the outputs.
#[must_use = "an output set names nothing until committed"]
pub struct OutputSet {
    outer: bool,
    done: bool,
}

/// Open an output set on this thread.
pub fn begin() -> OutputSet {
    let depth = LOCAL.with_borrow_mut(|l| {
        l.depth += 1;
        l.depth
    });
    OutputSet {
        outer: depth == 1,
        done: false,
    }
}

/// Called by [`AtomicFile::commit`]: keep `file` for the open set, or hand
/// it back when no set is open.
pub(super) fn defer(file: AtomicFile) -> Result<(), AtomicFile> {
    LOCAL.with_borrow_mut(|l| {
        if l.depth == 0 {
            return Err(file);
        }
        l.staged.push(Staged::File(file));
        Ok(())
    })
}

/// A hidden path beside `dest` for a file another process writes (and
/// names itself, atomically); it joins the open set as `dest`. Without an
/// open set, `dest` itself.
pub fn stage_path(dest: &Path) -> PathBuf {
    LOCAL.with_borrow_mut(|l| {
        if l.depth == 0 {
            return dest.to_path_buf();
        }
        let hidden = hidden_name(dest, "stage");
        super::atomic::add_pending(&hidden);
        l.staged.push(Staged::Named {
            hidden: hidden.clone(),
            dest: dest.to_path_buf(),
        });
        hidden
    })
}

/// A fresh hidden directory to fill, which replaces the directory `dest`
/// when the set is committed (created at once when no set is open).
pub fn stage_dir(dest: &Path) -> io::Result<PathBuf> {
    LOCAL.with_borrow_mut(|l| {
        if l.depth == 0 {
            fs::create_dir_all(dest)?;
            return Ok(dest.to_path_buf());
        }
        let parent = dest.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(parent)?;
        let hidden = hidden_name(parent, "stage");
        fs::create_dir(&hidden)?;
        super::atomic::add_pending(&hidden);
        l.staged.push(Staged::Dir {
            hidden: hidden.clone(),
            dest: dest.to_path_buf(),
        });
        Ok(hidden)
    })
}

/// Where the content of output `dest` can be read now: its staged file if
/// the open set holds it (e.g. to checksum it), else `dest`.
pub fn readable(dest: &Path) -> PathBuf {
    LOCAL.with_borrow(|l| {
        for st in &l.staged {
            match st {
                Staged::File(f) if f.dest() == dest => return f.readable_path(),
                Staged::Named { hidden, dest: d } if d == dest => return hidden.clone(),
                _ => {}
            }
        }
        dest.to_path_buf()
    })
}

/// The output a staged path stands for (`.dibr-stage-PID-NAME` → NAME),
/// for messages; other paths unchanged.
pub fn final_name(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let dest = name.as_deref().and_then(|n| {
        let rest = n.strip_prefix(".dibr-stage-")?;
        let (pid, dest) = rest.split_once('-')?;
        pid.parse::<u32>().ok().map(|_| dest.to_string())
    });
    match dest {
        Some(d) => path.with_file_name(d),
        None => path.to_path_buf(),
    }
}

/// `.dibr-TAG-PID-NAME` beside `path` (NAME is `path`'s file name, last,
/// so that the extension that tells an output's type is kept).
pub(super) fn hidden_name(path: &Path, tag: &str) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "image".into());
    path.with_file_name(format!(".dibr-{tag}-{}-{name}", std::process::id()))
}

impl OutputSet {
    /// Name every staged output (outermost set only). Returns the final
    /// paths named.
    pub fn commit(mut self) -> io::Result<Vec<PathBuf>> {
        self.done = true;
        if !self.outer {
            return Ok(Vec::new());
        }
        let staged = LOCAL.with_borrow_mut(|l| std::mem::take(&mut l.staged));
        let entries = {
            let mut p = phase();
            if matches!(*p, Phase::Abandoned) {
                drop(p);
                abandon(staged);
                return Err(io::Error::new(
                    io::ErrorKind::Interrupted,
                    "interrupted before the outputs were named",
                ));
            }
            let entries = match hide_all(staged) {
                Ok(e) => e,
                Err((e, entries)) => {
                    remove_entries(&entries);
                    return Err(e);
                }
            };
            *p = Phase::Committing;
            entries
        };
        let result = write_journal(&entries).and_then(|j| run_committer(&j));
        let mut p = phase();
        let r = match result {
            Ok(()) => {
                let dests: Vec<PathBuf> = entries.into_iter().map(|e| e.dest).collect();
                *p = Phase::Done(dests.clone());
                Ok(dests)
            }
            Err(e) => {
                *p = Phase::Open;
                Err(e)
            }
        };
        PHASE_CHANGED.notify_all();
        r
    }
}

impl Drop for OutputSet {
    fn drop(&mut self) {
        let staged = LOCAL.with_borrow_mut(|l| {
            l.depth = l.depth.saturating_sub(1);
            if self.outer && !self.done {
                std::mem::take(&mut l.staged)
            } else {
                Vec::new()
            }
        });
        abandon(staged);
    }
}

/// For the SIGINT/SIGTERM handler: wait for a running commit and return
/// what it named; otherwise stop any later commit and return nothing (the
/// caller then removes the pending hidden files, `atomic::cleanup_pending`).
pub fn interrupt() -> Vec<PathBuf> {
    let mut p = phase();
    while matches!(*p, Phase::Committing) {
        p = PHASE_CHANGED.wait(p).unwrap_or_else(|e| e.into_inner());
    }
    if let Phase::Done(d) = &*p {
        return d.clone();
    }
    *p = Phase::Abandoned;
    Vec::new()
}

fn abandon(staged: Vec<Staged>) {
    for st in staged {
        match st {
            Staged::File(f) => drop(f),
            Staged::Named { hidden, .. } => {
                let _ = fs::remove_file(hidden);
            }
            Staged::Dir { hidden, .. } => {
                let _ = fs::remove_dir_all(hidden);
            }
        }
    }
}

/// One line of the journal: rename `hidden` to `dest`.
struct Entry {
    dir: bool,
    hidden: PathBuf,
    dest: PathBuf,
}

/// Give every staged output a hidden name.
fn hide_all(staged: Vec<Staged>) -> Result<Vec<Entry>, (io::Error, Vec<Entry>)> {
    let mut entries = Vec::new();
    let mut rest = staged.into_iter();
    while let Some(st) = rest.next() {
        let e = match st {
            Staged::File(f) => {
                let dest = f.dest().to_path_buf();
                match f.into_hidden() {
                    Ok(hidden) => Entry {
                        dir: false,
                        hidden,
                        dest,
                    },
                    Err(e) => {
                        abandon(rest.collect());
                        return Err((e, entries));
                    }
                }
            }
            Staged::Named { hidden, dest } => Entry {
                dir: false,
                hidden,
                dest,
            },
            Staged::Dir { hidden, dest } => Entry {
                dir: true,
                hidden,
                dest,
            },
        };
        entries.push(e);
    }
    Ok(entries)
}

fn remove_entries(entries: &[Entry]) {
    for e in entries {
        let _ = if e.dir {
            fs::remove_dir_all(&e.hidden)
        } else {
            fs::remove_file(&e.hidden)
        };
    }
}

fn hex(p: &Path) -> String {
    p.as_os_str()
        .as_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn unhex(s: &str) -> Option<PathBuf> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect();
    Some(PathBuf::from(OsString::from_vec(bytes?)))
}

/// The journal, `.dibr-commit-PID` in the first output's directory: one
/// line per rename, `F|D HEX(hidden) HEX(dest)` (absolute paths, hex so
/// any byte is safe), written under a temporary name and renamed.
fn write_journal(entries: &[Entry]) -> io::Result<PathBuf> {
    let first = entries.first().map(|e| e.dest.as_path());
    let dir = match first.and_then(Path::parent) {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let dir = std::path::absolute(&dir)?;
    let mut text = String::new();
    for e in entries {
        let (h, d) = (
            std::path::absolute(&e.hidden)?,
            std::path::absolute(&e.dest)?,
        );
        text.push_str(&format!(
            "{} {} {}\n",
            if e.dir { 'D' } else { 'F' },
            hex(&h),
            hex(&d)
        ));
    }
    let journal = dir.join(format!("{JOURNAL_PREFIX}{}", std::process::id()));
    let temp = dir.join(format!(".dibr-commit-tmp-{}", std::process::id()));
    let mut f = fs::File::create(&temp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    fs::rename(&temp, &journal)?;
    Ok(journal)
}

/// The program that carries out journals (`PROGRAM __commit-outputs
/// JOURNAL`), set once by the command line; unset (the library's own
/// tests), journals are carried out in this process.
static COMMITTER: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Have journals carried out by `exe __commit-outputs` (dibr itself).
pub fn use_committer(exe: PathBuf) {
    let _ = COMMITTER.set(exe);
}

/// Carry out the journal in the committer (its own process group, so the
/// renames survive the caller), or in this process when there is none.
fn run_committer(journal: &Path) -> io::Result<()> {
    use std::os::unix::process::CommandExt;
    let Some(exe) = COMMITTER.get() else {
        return apply(journal);
    };
    let st = std::process::Command::new(exe)
        .arg("__commit-outputs")
        .arg(journal)
        .stdin(std::process::Stdio::null())
        .process_group(0)
        .status()?;
    if st.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "naming the outputs ({} __commit-outputs {}): {st}",
            exe.display(),
            journal.display()
        )))
    }
}

/// Do every rename of `journal` that is not done yet, then remove it.
/// Safe to run again after an interruption.
pub fn apply(journal: &Path) -> io::Result<()> {
    let text = fs::read_to_string(journal)?;
    let bad = || {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is not a dibr output journal", journal.display()),
        )
    };
    let mut entries = Vec::new();
    for line in text.lines() {
        let mut w = line.split(' ');
        let (kind, h, d) = (w.next(), w.next(), w.next());
        let (Some(kind), Some(h), Some(d)) = (kind, h, d) else {
            return Err(bad());
        };
        let (Some(hidden), Some(dest)) = (unhex(h), unhex(d)) else {
            return Err(bad());
        };
        entries.push(Entry {
            dir: kind == "D",
            hidden,
            dest,
        });
    }
    for e in &entries {
        rename_one(e)?;
    }
    let dir = journal.parent().unwrap_or(Path::new("."));
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    fs::remove_file(journal)
}

fn rename_one(e: &Entry) -> io::Result<()> {
    let what = |err: io::Error| {
        io::Error::new(
            err.kind(),
            format!(
                "naming {} (from {}): {err}",
                e.dest.display(),
                e.hidden.display()
            ),
        )
    };
    if fs::symlink_metadata(&e.hidden).is_err() {
        // Done by an earlier, interrupted run of the same journal.
        return Ok(());
    }
    if !e.dir {
        return fs::rename(&e.hidden, &e.dest).map_err(what);
    }
    if let Some(p) = e.dest.parent() {
        fs::create_dir_all(p).map_err(what)?;
    }
    if fs::symlink_metadata(&e.dest).is_ok_and(|m| m.is_dir()) {
        // A directory cannot be renamed over a non-empty one: swap them,
        // then remove the old content (now under the hidden name).
        rustix::fs::renameat_with(
            rustix::fs::CWD,
            &e.hidden,
            rustix::fs::CWD,
            &e.dest,
            rustix::fs::RenameFlags::EXCHANGE,
        )
        .map_err(|x| what(x.into()))?;
        return fs::remove_dir_all(&e.hidden).map_err(what);
    }
    fs::rename(&e.hidden, &e.dest).map_err(what)
}

/// Finish what dead dibr processes left in `dir`: journals are carried
/// out (their files were complete), hidden files without one removed.
/// Returns how many journals were finished and leftovers removed.
pub fn recover(dir: &Path) -> (usize, usize) {
    let Ok(rd) = fs::read_dir(dir) else {
        return (0, 0);
    };
    let names: Vec<OsString> = rd.flatten().map(|e| e.file_name()).collect();
    let mut finished = 0;
    for n in &names {
        let s = n.to_string_lossy();
        if let Some(pid) = s.strip_prefix(JOURNAL_PREFIX).and_then(|p| p.parse().ok()) {
            if !alive(pid) && apply(&dir.join(n)).is_ok() {
                finished += 1;
            }
        }
    }
    let mut removed = 0;
    for n in &names {
        let s = n.to_string_lossy();
        let Some(pid) = leftover_pid(&s) else {
            continue;
        };
        let p = dir.join(n);
        if alive(pid) || fs::symlink_metadata(&p).is_err() {
            continue;
        }
        let r = if p.is_dir() {
            fs::remove_dir_all(&p)
        } else {
            fs::remove_file(&p)
        };
        if r.is_ok() {
            removed += 1;
        }
    }
    (finished, removed)
}

/// The pid in a hidden name `.dibr-TAG-PID-NAME` (or the journal's own
/// temporary name, `.dibr-commit-tmp-PID`).
fn leftover_pid(name: &str) -> Option<u32> {
    if let Some(p) = name.strip_prefix(".dibr-commit-tmp-") {
        return p.parse().ok();
    }
    HIDDEN_TAGS.iter().find_map(|t| {
        let rest = name.strip_prefix(&format!(".dibr-{t}-"))?;
        let (pid, _) = rest.split_once('-')?;
        pid.parse().ok()
    })
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dest: &Path, data: &[u8]) {
        let f = AtomicFile::create(dest).unwrap();
        f.file().write_all(data).unwrap();
        f.commit().unwrap();
    }

    /// Nothing appears before the commit; everything after it, a
    /// directory replacing an older one included.
    #[test]
    fn outputs_appear_together() {
        let d = tempfile::tempdir().unwrap();
        let (a, b, m) = (
            d.path().join("x.raw"),
            d.path().join("x.qcow2"),
            d.path().join("x.d/m"),
        );
        fs::create_dir_all(&m).unwrap();
        fs::write(m.join("old"), b"old").unwrap();
        let set = begin();
        write(&a, b"a");
        {
            let inner = begin();
            write(&b, b"b");
            assert!(inner.commit().unwrap().is_empty());
        }
        let md = stage_dir(&m).unwrap();
        fs::write(md.join("new"), b"new").unwrap();
        assert_eq!(fs::read(readable(&b)).unwrap(), b"b");
        assert!(!a.exists() && !b.exists() && m.join("old").exists());
        let named = set.commit().unwrap();
        assert_eq!(named.len(), 3);
        assert_eq!(fs::read(&a).unwrap(), b"a");
        assert_eq!(fs::read(&b).unwrap(), b"b");
        assert!(m.join("new").exists() && !m.join("old").exists());
        let left: Vec<_> = fs::read_dir(d.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .filter(|n| n.to_string_lossy().starts_with('.'))
            .collect();
        assert!(left.is_empty(), "hidden files left: {left:?}");
    }

    /// A set dropped without a commit leaves nothing.
    #[test]
    fn dropped_set_leaves_nothing() {
        let d = tempfile::tempdir().unwrap();
        let set = begin();
        write(&d.path().join("y.raw"), b"y");
        let h = stage_path(&d.path().join("y.tar"));
        fs::write(&h, b"t").unwrap();
        drop(set);
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 0);
    }

    /// A journal left by a dead committer is finished by the next run.
    #[test]
    fn recover_finishes_a_journal() {
        let d = tempfile::tempdir().unwrap();
        let (h, dest) = (d.path().join(".dibr-link-1-z.raw"), d.path().join("z.raw"));
        fs::write(&h, b"z").unwrap();
        let e = [Entry {
            dir: false,
            hidden: h,
            dest: dest.clone(),
        }];
        let j = write_journal(&e).unwrap();
        // Pretend a dead process wrote it: PID 0 never names a process.
        let dead = d.path().join(format!("{JOURNAL_PREFIX}999999999"));
        fs::rename(&j, &dead).unwrap();
        fs::write(d.path().join(".dibr-stage-999999999-w.tar"), b"w").unwrap();
        assert_eq!(recover(d.path()), (1, 1));
        assert_eq!(fs::read(&dest).unwrap(), b"z");
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1);
    }
}
