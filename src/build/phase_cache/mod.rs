//! The phase cache: the target tree captured after install.d (and the
//! `-p` packages), after post-install.d and after finalise.d, restored by
//! a later build whose inputs up to that point are the same, so that it
//! skips the phases before (mkosi's `Incremental=` caches the tree after package
//! installation; diskimage-builder has nothing like it).
//!
//! An entry is a tar made by the same capture as the image's
//! ([`crate::capture`]: owners, modes, xattrs with file capabilities,
//! hard links, holes, nanosecond mtimes) without the
//! `SOURCE_DATE_EPOCH` clamp, and restored inside the sandbox by GNU tar
//! like the debootstrap element's bootstrap tarball. Its name is its key
//! ([`key::Parts`]); beside it `NAME.key` lists the key's parts (to tell
//! why a later build missed) and its mtime is the entry's last use (for
//! least-recently-used eviction), `NAME.lock` is flock(2)ed shared while a
//! build restores the entry and exclusively while one writes or evicts
//! it. The user-facing rules are in docs/phase-cache.md.

mod image_name;
pub mod key;
mod workfiles;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use sha2::Digest;

use super::env::HookEnv;
use super::workdir::WorkDir;
use super::{io, BuildConfig, BuildError};
use crate::elements::resolve::Resolved;
use crate::elements::Phase;
use crate::sandbox;
use key::Parts;

/// `--no-cache` / `--refresh-cache`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Restore the deepest valid entry, store what is missing.
    #[default]
    Use,
    /// Run every phase and replace the entries (`--refresh-cache`).
    Refresh,
    /// Neither read nor write (`--no-cache`).
    Off,
}

/// The boundaries, shallow to deep: the tree is stored after these
/// phases (after install.d together with the `-p` packages; after
/// finalise.d with everything from post-root.d on: the first-boot.d
/// hooks, post-root.d, block-device.d, `/etc/fstab`, pre-finalise.d).
pub const BOUNDARIES: [Phase; 3] = [Phase::Install, Phase::PostInstall, Phase::Finalise];

/// The line of an entry's `.key` file that records its tar's length.
const SIZE_LINE: &str = "tar-bytes ";

/// The age limit, size cap and worth (`DIBR_PHASE_CACHE_HOURS`,
/// `DIBR_PHASE_CACHE_GIB`, `DIBR_PHASE_CACHE_MIN_SECONDS`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_age: Duration,
    pub max_bytes: u64,
    /// An entry is stored only when the phases it lets a later build skip,
    /// beyond the entry below it, took at least this long: storing ~1 GB
    /// costs seconds, and a post-install.d that ran in 0.1 s is cheaper
    /// to run again than to store (mkosi caches only after the packages).
    pub min_saved: Duration,
}

pub struct PhaseCache {
    dir: PathBuf,
    mode: Mode,
    limits: Limits,
    offline: bool,
    /// The parts every boundary shares.
    base: Parts,
    /// The digest of the `/etc/fstab` the build writes (`none` without a
    /// disk), part of the key after finalise.d only.
    fstab: String,
    /// The digest of `IMAGE_NAME` and the file that first names it, with
    /// the phase from which it is keyed (see [`image_name`]).
    image_name: Option<(Phase, String)>,
    /// Each element's file records (see [`key::element_records`]).
    records: Vec<(String, Vec<key::Record>)>,
    bootstrap_dir: PathBuf,
    /// The work directory's hooks/ and image/ before the first phase.
    work: workfiles::Snapshot,
}

/// A usable entry, its lock held shared until the tree is restored.
pub struct Hit {
    pub boundary: Phase,
    tar: PathBuf,
    age: Duration,
    _lock: std::fs::File,
}

/// What the build skips and runs after the lookup.
pub struct Plan {
    pub hit: Option<Hit>,
    /// The line said about the lookup.
    pub line: String,
}

fn phase_list(upto: Phase) -> String {
    let mut v: Vec<&str> = [
        Phase::Root,
        Phase::ExtraData,
        Phase::PreInstall,
        Phase::Install,
    ]
    .iter()
    .map(|p| p.dir_name())
    .collect();
    v.push("-p packages");
    if upto >= Phase::PostInstall {
        v.push(Phase::PostInstall.dir_name());
    }
    if upto >= Phase::Finalise {
        v.extend([
            "first-boot.d install",
            Phase::PostRoot.dir_name(),
            Phase::BlockDevice.dir_name(),
            "/etc/fstab",
            Phase::PreFinalise.dir_name(),
            Phase::Finalise.dir_name(),
        ]);
    }
    v.join(", ")
}

fn hours(d: Duration) -> String {
    format!("{:.1} h", d.as_secs_f64() / 3600.0)
}

impl PhaseCache {
    /// `None` with `--no-cache`. `fstab` is the `/etc/fstab` the build
    /// writes before pre-finalise.d, if it makes a disk.
    pub fn new(
        cfg: &BuildConfig,
        resolved: &Resolved,
        w: &WorkDir,
        env: &HookEnv,
        fstab: Option<&str>,
    ) -> Result<Option<PhaseCache>, BuildError> {
        if cfg.phase_cache == Mode::Off {
            crate::say!("dibr: phase cache: off (--no-cache): every phase runs, nothing is stored");
            return Ok(None);
        }
        let lib = crate::settings::shipped_lib_dir();
        let dibr = key::dibr_digest(lib.as_deref()).map_err(io("reading dibr's own binary"))?;
        let mut records = Vec::new();
        for (name, dir) in &resolved.elements {
            let r = key::element_records(dir)
                .map_err(io(format!("reading element {name} ({})", dir.display())))?;
            records.push((name.clone(), r));
        }
        let image_name = image_name::first_use(&resolved.elements)
            .map_err(io("reading the elements for IMAGE_NAME"))?
            .map(|u| {
                let value = env
                    .cache_view()
                    .into_iter()
                    .find(|(k, _)| k == image_name::VAR)
                    .map(|(_, v)| v)
                    .unwrap_or_default();
                let digest = key::hex(&sha2::Sha256::digest(value.as_bytes()));
                (
                    u.phase,
                    format!("{digest} {}/{}", u.element, u.file.display()),
                )
            });
        let base = Parts {
            arch: cfg.arch.clone(),
            sandbox: sandbox::chosen()?.name().to_string(),
            dibr,
            environment: key::environment_digest(&env.cache_view()),
            packages: cfg.packages.clone(),
            ..Parts::default()
        };
        let dir = cfg.image_cache.join("phases");
        std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
        Ok(Some(PhaseCache {
            dir,
            mode: cfg.phase_cache,
            limits: cfg.phase_cache_limits,
            offline: cfg.offline,
            base,
            fstab: fstab.map_or_else(
                || "none".to_string(),
                |f| key::hex(&sha2::Sha256::digest(f.as_bytes())),
            ),
            image_name,
            records,
            bootstrap_dir: key::bootstrap_dir(&cfg.image_cache),
            work: workfiles::snapshot(w.root()),
        }))
    }

    /// The key's parts for `boundary`, with the bootstrap tarballs as
    /// they are now.
    fn parts(&self, boundary: Phase) -> Parts {
        let mut p = self.base.clone();
        p.boundary = boundary.dir_name().to_string();
        p.bootstrap = key::listing_digest(&self.bootstrap_dir, &self.base.arch);
        if boundary == Phase::Finalise {
            p.fstab = self.fstab.clone();
        }
        p.image_name = match &self.image_name {
            Some((from, v)) if *from <= boundary => v.clone(),
            _ => "-".into(),
        };
        for (name, recs) in &self.records {
            if let Some(d) = key::element_digest(recs, boundary) {
                p.elements.insert(name.clone(), d);
            }
        }
        p
    }

    fn entry(&self, boundary: Phase, key: &str) -> PathBuf {
        let b = boundary.dir_name().trim_end_matches(".d");
        self.dir.join(format!("{b}-{}", &key[..32]))
    }

    /// Find the deepest usable entry, saying what is skipped and why (or
    /// why not).
    pub fn lookup(&self) -> Plan {
        if self.mode == Mode::Refresh {
            return Plan {
                hit: None,
                line: "dibr: phase cache: --refresh-cache: every phase runs and the entries are replaced".into(),
            };
        }
        let mut why_not = Vec::new();
        for &b in BOUNDARIES.iter().rev() {
            let parts = self.parts(b);
            let entry = self.entry(b, &parts.key());
            match self.usable(&entry, b) {
                Ok(hit) => {
                    let n = parts.elements.len();
                    let mut line = format!(
                        "dibr: phase cache: restoring the tree after {} ({} old, limit {}): skipping {}; valid because the files up to {} of {n} element{}, the hook environment, -p packages, bootstrap tarballs, {}arch {} and dibr are unchanged",
                        b.dir_name(),
                        hours(hit.age),
                        hours(self.limits.max_age),
                        phase_list(b),
                        b.dir_name(),
                        if n == 1 { "" } else { "s" },
                        if b == Phase::Finalise { "/etc/fstab, " } else { "" },
                        parts.arch,
                    );
                    for w in &why_not {
                        line.push_str(&format!("; {w}"));
                    }
                    return Plan {
                        hit: Some(hit),
                        line,
                    };
                }
                Err(reason) => why_not.push(format!("{} runs: {reason}", b.dir_name())),
            }
        }
        Plan {
            hit: None,
            line: format!(
                "dibr: phase cache: every phase runs ({})",
                why_not.last().cloned().unwrap_or_default()
            ),
        }
    }

    /// The entry if it exists and is young enough (or offline), with its
    /// lock taken shared; else why not.
    fn usable(&self, entry: &Path, b: Phase) -> Result<Hit, String> {
        let tar = entry.with_extension("tar");
        let Ok(m) = std::fs::metadata(&tar) else {
            return Err(self.miss_reason(b));
        };
        let age = m
            .modified()
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .unwrap_or_default();
        if age > self.limits.max_age {
            if !self.offline {
                return Err(format!(
                    "its entry is {} old, older than {} (DIBR_PHASE_CACHE_HOURS; package updates)",
                    hours(age),
                    hours(self.limits.max_age)
                ));
            }
            crate::say!(
                "dibr: warning: phase cache: using the entry after {} although it is {} old (DIB_OFFLINE)",
                b.dir_name(),
                hours(age)
            );
        }
        let lock = std::fs::File::create(entry.with_extension("lock"))
            .map_err(|e| format!("cannot open its lock: {e}"))?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockShared)
            .map_err(|e| format!("cannot lock its entry: {e}"))?;
        if !tar.is_file() {
            return Err("its entry was evicted meanwhile".into());
        }
        let recorded = std::fs::read_to_string(entry.with_extension("key"))
            .ok()
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix(SIZE_LINE)?.parse::<u64>().ok())
            });
        let len = std::fs::metadata(&tar).map(|m| m.len()).ok();
        if recorded.is_none() || recorded != len {
            return Err(format!(
                "its entry is damaged ({} bytes, {} recorded; an interrupted write or a crash): it is replaced",
                len.unwrap_or(0),
                recorded.map_or_else(|| "none".to_string(), |r| r.to_string())
            ));
        }
        // The last use, for the least-recently-used eviction.
        if let Ok(f) = std::fs::File::options()
            .write(true)
            .open(entry.with_extension("key"))
        {
            let _ = f.set_modified(SystemTime::now());
        }
        Ok(Hit {
            boundary: b,
            tar,
            age,
            _lock: lock,
        })
    }

    /// Why there is no entry for `b`: what differs from the entry used
    /// last for that boundary, if there is one.
    fn miss_reason(&self, b: Phase) -> String {
        let prefix = format!("{}-", b.dir_name().trim_end_matches(".d"));
        let newest = entries(&self.dir)
            .into_iter()
            .filter(|e| e.name.starts_with(&prefix))
            .max_by_key(|e| e.used);
        let Some(old) = newest else {
            return "no entry yet".into();
        };
        let old = Parts::from_text(&std::fs::read_to_string(&old.key).unwrap_or_default());
        let diff = self.parts(b).differences(&old);
        if diff.is_empty() {
            "no entry for its key".into()
        } else {
            format!("since the last entry, {}", diff.join(", "))
        }
    }

    /// Extract the entry into the (empty) target tree inside the sandbox.
    pub fn restore(&self, hit: Hit, w: &WorkDir, env: &HookEnv) -> Result<(), BuildError> {
        let started = Instant::now();
        let script = "set -e; tar -xpf \"$1\" --numeric-owner --xattrs --xattrs-include='*' \
            --anchored --exclude='dev/*' --exclude='./dev/*' -C \"$TARGET_ROOT\"";
        let sb = super::over_tree(w, env.outside(Phase::Root));
        let argv: Vec<OsString> = vec![
            "/bin/bash".into(),
            "-c".into(),
            script.into(),
            "bash".into(),
            hit.tar.clone().into(),
        ];
        let st = sandbox::run(&sb, &argv)?;
        if !st.success() {
            return Err(BuildError::HookFailed {
                phase: format!(
                    "restoring the phase cache entry {} (remove it, or build with --refresh-cache)",
                    hit.tar.display()
                ),
                status: st.to_string(),
            });
        }
        let work = hit.tar.with_extension("work");
        let n = workfiles::load(w.root(), &work).map_err(io(format!(
            "restoring the work files of {}",
            work.display()
        )))?;
        crate::console::say(&format!(
            "dibr: restored the tree after {} from the phase cache in {:.1}s ({n} file{} hooks left in the work directory)",
            hit.boundary.dir_name(),
            started.elapsed().as_secs_f64(),
            if n == 1 { "" } else { "s" }
        ));
        Ok(())
    }

    /// Capture the tree as the entry for `boundary` (not fatal: a cache
    /// that cannot be written is said and the build goes on).
    pub fn store(&self, boundary: Phase, w: &WorkDir, env: &HookEnv) -> Result<(), BuildError> {
        let started = Instant::now();
        let parts = self.parts(boundary);
        let entry = self.entry(boundary, &parts.key());
        let Some(lock) = lock_for_writing(&entry, boundary)? else {
            return Ok(());
        };
        let changed = workfiles::changed(w.root(), &self.work);
        if let Err(e) = workfiles::save(w.root(), &changed, &entry.with_extension("work")) {
            crate::say!(
                "dibr: warning: phase cache: keeping what hooks left in the work directory failed ({e}); not storing the tree after {}",
                boundary.dir_name()
            );
            return Ok(());
        }
        let tar = entry.with_extension("tar");
        if !capture_tree(w, env, &tar, boundary)? {
            return Ok(());
        }
        let size = std::fs::metadata(&tar).map(|m| m.len()).unwrap_or(0);
        let record = format!("{}{SIZE_LINE}{size}\n", parts.to_text());
        std::fs::write(entry.with_extension("key"), record).map_err(io(format!(
            "writing {}",
            entry.with_extension("key").display()
        )))?;
        crate::console::say(&format!(
            "dibr: phase cache: stored the tree after {} ({:.0} MiB) in {:.1}s",
            boundary.dir_name(),
            size as f64 / (1 << 20) as f64,
            started.elapsed().as_secs_f64()
        ));
        drop(lock);
        self.evict(&tar);
        Ok(())
    }

    /// Whether an entry after `boundary` is worth storing: the phases since
    /// the entry below it (restored or stored) took `took`. Says why not.
    pub fn worth_storing(&self, boundary: Phase, took: Duration) -> bool {
        if took >= self.limits.min_saved {
            return true;
        }
        // An entry of this key that was not used (stale, damaged, or
        // `--refresh-cache`) must not outlive the tree that replaced it.
        let entry = self.entry(boundary, &self.parts(boundary).key());
        if let Ok(Some(_lock)) = lock_for_writing(&entry, boundary) {
            remove_entry(&entry.with_extension("tar"));
        }
        crate::say!(
            "dibr: phase cache: not storing the tree after {}: the phases it would save took {:.1}s, less than storing it costs (DIBR_PHASE_CACHE_MIN_SECONDS={})",
            boundary.dir_name(),
            took.as_secs_f64(),
            self.limits.min_saved.as_secs_f64()
        );
        false
    }

    /// Remove the least recently used entries until the cache fits its
    /// cap (`keep`, just written, stays; entries in use are passed over).
    fn evict(&self, keep: &Path) {
        let mut all = entries(&self.dir);
        let mut total: u64 = all.iter().map(|e| e.size).sum();
        all.sort_by_key(|e| e.used);
        for e in all {
            if total <= self.limits.max_bytes {
                break;
            }
            if e.tar == keep {
                continue;
            }
            let Ok(lock) = std::fs::File::create(e.tar.with_extension("lock")) else {
                continue;
            };
            if rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive)
                .is_err()
            {
                continue;
            }
            if remove_entry(&e.tar) {
                total = total.saturating_sub(e.size);
                crate::say!(
                    "dibr: phase cache: evicted {} ({:.0} MiB, least recently used) to stay under {:.1} GiB (DIBR_PHASE_CACHE_GIB)",
                    e.name,
                    e.size as f64 / (1 << 20) as f64,
                    self.limits.max_bytes as f64 / (1u64 << 30) as f64
                );
            }
        }
    }
}

/// The entry's lock taken exclusively, or None (said) when another build
/// holds it.
fn lock_for_writing(entry: &Path, boundary: Phase) -> Result<Option<std::fs::File>, BuildError> {
    let path = entry.with_extension("lock");
    let lock = std::fs::File::create(&path).map_err(io(format!("creating {}", path.display())))?;
    let locked = rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive);
    if locked.is_err() {
        crate::detail!(
            "dibr: phase cache: another build is using or writing the entry after {}; not storing it",
            boundary.dir_name()
        );
        return Ok(None);
    }
    Ok(Some(lock))
}

/// Remove an entry (its tar, then `.key`, `.work` and `.lock`) whose lock
/// the caller holds exclusively; false when it had no tar.
fn remove_entry(tar: &Path) -> bool {
    if std::fs::remove_file(tar).is_err() {
        return false;
    }
    for ext in ["key", "work", "lock"] {
        let _ = std::fs::remove_file(tar.with_extension(ext));
    }
    true
}

/// Capture the tree into `out` inside the sandbox; false (said) if the
/// capture failed.
fn capture_tree(
    w: &WorkDir,
    env: &HookEnv,
    out: &Path,
    boundary: Phase,
) -> Result<bool, BuildError> {
    // Faithful mtimes: the clamp is the final capture's business. No
    // fsync: a cache entry is not precious, and flushing 1 GB twice per
    // build cost more than the hooks it saves; an entry cut short by a
    // crash has another length than its `.key` records and is not used
    // (see `usable`).
    let mut env: Vec<(String, String)> = env
        .outside(Phase::Root)
        .into_iter()
        .filter(|(k, _)| k != "SOURCE_DATE_EPOCH")
        .collect();
    env.push(("DIBR_NO_FSYNC".into(), "1".into()));
    let sb = super::over_tree(w, env);
    let argv = sandbox::capture_argv(&w.target(), out)?;
    let st = sandbox::run(&sb, &argv)?;
    if !st.success() {
        crate::say!(
            "dibr: warning: phase cache: storing the tree after {} failed ({st}); the build goes on",
            boundary.dir_name()
        );
    }
    Ok(st.success())
}

/// One stored entry.
struct Entry {
    name: String,
    tar: PathBuf,
    key: PathBuf,
    size: u64,
    /// Last use (the `.key` file's mtime).
    used: SystemTime,
}

fn entries(dir: &Path) -> Vec<Entry> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| {
            let name = e.file_name().to_str()?.strip_suffix(".tar")?.to_string();
            if name.starts_with('.') {
                return None;
            }
            let tar = e.path();
            let size = e.metadata().ok()?.len();
            let key = tar.with_extension("key");
            let used = std::fs::metadata(&key)
                .or_else(|_| e.metadata())
                .and_then(|m| m.modified())
                .unwrap_or(SystemTime::UNIX_EPOCH);
            Some(Entry {
                name,
                tar,
                key,
                size,
                used,
            })
        })
        .collect()
}
