//! Shared pieces of the `dibr build` tests: a world-readable stage with
//! the binary and test elements, running builds as the CI user, and the
//! leftover checks (mounts, processes, work directories).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::*;
use dibr::tarstream::TarReader;
use dibr::tree::{EntryKind, FileData};

pub use super::user::USER;

/// The leftover checks look at the whole machine (processes, /tmp), so the
/// scenarios run one at a time.
pub static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// A world-readable copy of the binary and the test elements, and an
/// output directory the user owns.
pub struct Stage {
    pub _dir: tempfile::TempDir,
    pub bin: PathBuf,
    pub elements: PathBuf,
    pub out: PathBuf,
}

pub fn stage(test: &str) -> Option<Stage> {
    if !require(test, true, &["setpriv", "newuidmap", "bash", "setcap"]) {
        return None;
    }
    if Command::new("id")
        .arg(USER)
        .output()
        .map(|o| !o.status.success())
        .unwrap_or(true)
    {
        assert!(
            !is_ci(),
            "{test}: user {USER} missing in CI (.ci/run creates it)"
        );
        skip(test, "no dibr-ci user");
        return None;
    }
    let dir = scratch(test);
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let bin = dir.path().join("dibr");
    fs::copy(dibr_bin(), &bin).unwrap();
    fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).unwrap();
    let elements = dir.path().join("elements");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("vendor-tests/elements");
    run_ok(Command::new("cp").arg("-a").arg(&src).arg(&elements));
    run_ok(Command::new("chmod").args(["-R", "a+rX"]).arg(&elements));
    let out = dir.path().join("out");
    fs::create_dir(&out).unwrap();
    run_ok(Command::new("chown").arg(USER).arg(&out));
    Some(Stage {
        _dir: dir,
        bin,
        elements,
        out,
    })
}

/// `dibr build …` as the user, with a clean environment.
pub fn build_cmd(s: &Stage, args: &[&str], extra_env: &[(&str, &str)]) -> Command {
    let elements = s.elements.display().to_string();
    // Builds run every phase unless a test asks for the phase cache
    // (vendor-tests/phase_cache.rs): a cache hit would skip the hooks
    // whose output or effects the other tests check.
    let mut env = vec![
        ("DIBR_PHASE_CACHE", "off"),
        ("ELEMENTS_PATH", elements.as_str()),
    ];
    env.extend_from_slice(extra_env);
    let mut c = super::user::as_user(&s.bin, &env);
    c.arg("build").args(args).current_dir(&s.out);
    c
}

/// `dir` under the test cache, made and owned by the CI user (whose
/// builds write there).
pub fn user_cache(dir: &str) -> PathBuf {
    let d = test_cache().join(dir);
    fs::create_dir_all(&d).unwrap();
    run_ok(Command::new("chown").arg(USER).arg(&d));
    d
}

/// A bookworm root tarball at `tar` (in a directory the CI user owns),
/// made once by `mmdebstrap --mode=unshare --format=tar ARGS…` as that
/// user and kept: `None` (a skip; a failure under CI) when mmdebstrap
/// cannot make it.
pub fn mmdebstrap_tar(
    test: &str,
    tar: &Path,
    env: &[(&str, &str)],
    args: &[String],
) -> Option<PathBuf> {
    if tar.is_file() {
        return Some(tar.to_path_buf());
    }
    let part = tar.with_extension("part");
    let t0 = std::time::Instant::now();
    let o = run(super::user::as_user("mmdebstrap", env)
        .args(["--quiet", "--mode=unshare", "--format=tar"])
        .args(args)
        .arg("bookworm")
        .arg(&part));
    if !o.status.success() {
        let _ = fs::remove_file(&part);
        assert!(!is_ci(), "{test}: mmdebstrap failed\n{}", out_text(&o));
        skip(test, "mmdebstrap failed (no Debian mirror?)");
        return None;
    }
    eprintln!(
        "{test}: mmdebstrap --mode=unshare as {USER}: {:?}",
        t0.elapsed()
    );
    fs::rename(&part, tar).unwrap();
    Some(tar.to_path_buf())
}

pub fn mountinfo() -> Vec<String> {
    // Mount points only: ids and counters of unrelated mounts may change.
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .map(|l| l.split_whitespace().nth(4).unwrap_or("").to_string())
        .collect()
}

pub fn user_processes(pattern: &str) -> Vec<String> {
    let o = Command::new("pgrep")
        .args(["-u", USER, "-a", "-f", pattern])
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// The user's dibr work directories, in /tmp and on /dev/shm (where
/// builds go by default, as DIB's tmpfs).
pub fn work_dirs() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = [std::env::temp_dir(), PathBuf::from("/dev/shm")]
        .iter()
        .filter_map(|d| fs::read_dir(d).ok())
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("dibr_build."))
        })
        .filter(|p| {
            use std::os::unix::fs::MetadataExt;
            let uid = Command::new("id").args(["-u", USER]).output().unwrap();
            let uid: u32 = String::from_utf8_lossy(&uid.stdout)
                .trim()
                .parse()
                .unwrap_or(u32::MAX);
            fs::symlink_metadata(p)
                .map(|m| m.uid() == uid)
                .unwrap_or(false)
        })
        .collect();
    v.sort();
    v
}

pub struct Before {
    pub mounts: Vec<String>,
    pub work: Vec<PathBuf>,
}

pub fn before() -> Before {
    Before {
        mounts: mountinfo(),
        work: work_dirs(),
    }
}

/// Nothing may be left: no new mounts, no daemon, no work directory.
pub fn assert_no_leftovers(test: &str, b: &Before) {
    // diskimage-builder (the benches run it as root on the same machine)
    // mounts under /tmp/dib_build.* and /tmp/dib_image.*: not dibr's.
    let theirs = |m: &String| m.starts_with("/tmp/dib_build.") || m.starts_with("/tmp/dib_image.");
    let now: Vec<String> = mountinfo().into_iter().filter(|m| !theirs(m)).collect();
    let was: Vec<String> = b.mounts.iter().filter(|m| !theirs(m)).cloned().collect();
    assert_eq!(now, was, "{test}: host mounts changed");
    let procs = user_processes("sleep 1000|sleep 30");
    assert!(procs.is_empty(), "{test}: processes left behind: {procs:?}");
    // Only new ones count: another build on the machine may finish (and
    // remove its own work directory) while this test runs.
    let new: Vec<PathBuf> = work_dirs()
        .into_iter()
        .filter(|d| !b.work.contains(d))
        .collect();
    assert!(
        new.is_empty(),
        "{test}: work directory left behind: {new:?}"
    );
}

pub struct TarEntry {
    pub kind: EntryKind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

pub fn read_tar(p: &Path) -> BTreeMap<String, TarEntry> {
    let mut r = TarReader::new(fs::File::open(p).unwrap());
    let mut m = BTreeMap::new();
    let mut sink = vec![0u8; 65536];
    while let Some(e) = r.next_entry().unwrap() {
        while r.read(&mut sink).unwrap() > 0 {}
        m.insert(
            String::from_utf8_lossy(&e.path).into_owned(),
            TarEntry {
                kind: e.kind,
                mode: e.mode,
                uid: e.uid,
                gid: e.gid,
                xattrs: e.xattrs,
            },
        );
    }
    m
}

/// Adds elements of dibr's shipped library (`elements/`) to the stage's
/// world-readable element directory, as they sit on ELEMENTS_PATH after the
/// user's own.
pub fn add_shipped(s: &Stage, names: &[&str]) {
    let lib = Path::new(env!("CARGO_MANIFEST_DIR")).join("elements");
    for n in names {
        run_ok(
            Command::new("cp")
                .arg("-a")
                .arg(lib.join(n))
                .arg(&s.elements),
        );
    }
    run_ok(Command::new("chmod").args(["-R", "a+rX"]).arg(&s.elements));
}

/// diskimage-builder from PyPI in a venv of the test cache (made once):
/// its python and DIB's elements directory.
pub fn dib_venv(test: &str) -> Option<(PathBuf, PathBuf)> {
    let venv = test_cache().join("dib-venv");
    let py = venv.join("bin/python3");
    let have = Command::new(&py)
        .args(["-c", "import diskimage_builder"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !have {
        let _ = fs::remove_dir_all(&venv);
        fs::create_dir_all(test_cache()).unwrap();
        let o = Command::new("/usr/bin/python3")
            .arg("-m")
            .arg("venv")
            .arg(&venv)
            .output()
            .unwrap();
        if !o.status.success() {
            assert!(
                !is_ci(),
                "{test}: python3 -m venv failed in CI (python3-venv missing?)\n{}",
                out_text(&o)
            );
            skip(test, "python3 -m venv does not work (install python3-venv)");
            return None;
        }
        let o = Command::new(venv.join("bin/pip"))
            .args(["install", "-q", "diskimage-builder"])
            .output()
            .unwrap();
        if !o.status.success() {
            assert!(
                !is_ci(),
                "{test}: pip install diskimage-builder failed\n{}",
                out_text(&o)
            );
            skip(test, "pip install diskimage-builder failed (offline?)");
            return None;
        }
    }
    let out = Command::new(&py)
        .args(["-c", "import diskimage_builder, os; print(os.path.join(os.path.dirname(diskimage_builder.__file__), 'elements'))"])
        .output()
        .unwrap();
    let elements = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    run_ok(Command::new("chmod").args(["-R", "a+rX"]).arg(&venv));
    Some((py, elements))
}
