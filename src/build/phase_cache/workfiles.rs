//! What the skipped phases left outside the tree: files hooks wrote into
//! the work directory's `hooks/` (TMP_HOOKS_PATH, which in-target hooks
//! read as /tmp/in_target.d) and `image/` (TMP_IMAGE_DIR) for the phases
//! after them. dibr's own debian-minimal records the codename `stable`
//! stands for in `$TMP_HOOKS_PATH` in root.d; without it a later phase
//! asks the mirror again, from inside the chroot, and writes its answer
//! into the image. An entry keeps these files beside the tree (`.work`,
//! a tar made by GNU tar outside the namespace: the work directory
//! belongs to the building user) and a hit puts them back.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The work directory's subdirectories hooks write into.
const DIRS: [&str; 2] = ["hooks", "image"];

/// Every path below [`DIRS`] with its size and mtime, as laid out before
/// the first phase.
pub struct Snapshot(BTreeMap<PathBuf, (u64, i64, i64)>);

fn walk(root: &Path, rel: &Path, out: &mut BTreeMap<PathBuf, (u64, i64, i64)>) {
    let Ok(rd) = std::fs::read_dir(root.join(rel)) else {
        return;
    };
    let mut names: Vec<_> = rd.flatten().map(|e| e.file_name()).collect();
    names.sort();
    for n in names {
        let r = rel.join(n);
        let Ok(m) = std::fs::symlink_metadata(root.join(&r)) else {
            continue;
        };
        out.insert(r.clone(), (m.len(), m.mtime(), m.mtime_nsec()));
        if m.is_dir() {
            walk(root, &r, out);
        }
    }
}

fn listing(root: &Path) -> BTreeMap<PathBuf, (u64, i64, i64)> {
    let mut m = BTreeMap::new();
    for d in DIRS {
        walk(root, Path::new(d), &mut m);
    }
    m
}

pub fn snapshot(root: &Path) -> Snapshot {
    Snapshot(listing(root))
}

/// Paths added or changed since `before` (directories only when new).
pub fn changed(root: &Path, before: &Snapshot) -> Vec<PathBuf> {
    listing(root)
        .into_iter()
        .filter(|(p, v)| match before.0.get(p) {
            None => true,
            Some(old) => old != v && !root.join(p).is_dir(),
        })
        .map(|(p, _)| p)
        .collect()
}

/// Archive `paths` (relative to `root`) into `out`; nothing when empty.
pub fn save(root: &Path, paths: &[PathBuf], out: &Path) -> std::io::Result<()> {
    let _ = std::fs::remove_file(out);
    if paths.is_empty() {
        return Ok(());
    }
    let part = out.with_extension("work-part");
    let mut child = Command::new("tar")
        .arg("-cf")
        .arg(&part)
        .arg("-C")
        .arg(root)
        .args(["--no-recursion", "--null", "-T", "-"])
        .stdin(Stdio::piped())
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        for p in paths {
            stdin.write_all(p.as_os_str().as_encoded_bytes())?;
            stdin.write_all(&[0])?;
        }
    }
    let st = child.wait()?;
    if !st.success() {
        let _ = std::fs::remove_file(&part);
        return Err(std::io::Error::other(format!(
            "tar -cf {}: {st}",
            part.display()
        )));
    }
    std::fs::rename(&part, out)
}

/// Put the archived files back into the work directory `root`.
pub fn load(root: &Path, tar: &Path) -> std::io::Result<usize> {
    if !tar.is_file() {
        return Ok(0);
    }
    let o = Command::new("tar")
        .arg("-xvf")
        .arg(tar)
        .arg("-C")
        .arg(root)
        .stderr(Stdio::inherit())
        .output()?;
    if !o.status.success() {
        return Err(std::io::Error::other(format!(
            "tar -xf {}: {}",
            tar.display(),
            o.status
        )));
    }
    Ok(o.stdout
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .count())
}
