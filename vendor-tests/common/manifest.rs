//! Manifest: what a tree holds, field by field.

use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::process::Command;

use super::*;

/// path (relative, "/"-separated) -> field -> value.
pub type Manifest = BTreeMap<String, BTreeMap<&'static str, String>>;

/// Fields compared by default. `blocks` is recorded but only checked where
/// a test asks (allocation differs legitimately between filesystems).
pub const ALL_FIELDS: &[&str] = &[
    "type", "mode", "uid", "gid", "size", "nlink", "rdev", "mtime_s", "mtime_ns", "target", "link",
    "xattrs", "acl", "content",
];

/// Walk a tree (not following symlinks) and record the manifest, skipping
/// the root's own entry and lost+found.
pub fn manifest(root: &Path) -> Manifest {
    let mut m = Manifest::new();
    let mut first_path: HashMap<(u64, u64), String> = HashMap::new();
    let mut stack = vec![root.to_path_buf()];
    let mut all = Vec::new();
    while let Some(d) = stack.pop() {
        let mut ents: Vec<_> = fs::read_dir(&d)
            .unwrap_or_else(|e| panic!("read_dir {d:?}: {e}"))
            .map(|e| e.unwrap())
            .collect();
        ents.sort_by_key(|e| e.file_name());
        for e in ents {
            let p = e.path();
            let rel = rel_of(root, &p);
            if rel == "lost+found" {
                continue;
            }
            let md = fs::symlink_metadata(&p).unwrap();
            if md.file_type().is_dir() {
                stack.push(p.clone());
            }
            all.push((rel, p, md));
        }
    }
    all.sort_by(|a, b| a.0.cmp(&b.0));
    for (rel, p, md) in &all {
        let ft = md.file_type();
        let mut f: BTreeMap<&'static str, String> = BTreeMap::new();
        let ty = if ft.is_dir() {
            "dir"
        } else if ft.is_file() {
            "file"
        } else if ft.is_symlink() {
            "symlink"
        } else if ft.is_char_device() {
            "chardev"
        } else if ft.is_block_device() {
            "blockdev"
        } else if ft.is_fifo() {
            "fifo"
        } else if ft.is_socket() {
            "socket"
        } else {
            "unknown"
        };
        f.insert("type", ty.into());
        f.insert("mode", format!("{:04o}", md.mode() & 0o7777));
        f.insert("uid", md.uid().to_string());
        f.insert("gid", md.gid().to_string());
        if !ft.is_dir() {
            f.insert("size", md.size().to_string());
        }
        f.insert("nlink", md.nlink().to_string());
        if ft.is_char_device() || ft.is_block_device() {
            f.insert(
                "rdev",
                format!("{}:{}", rdev_major(md.rdev()), rdev_minor(md.rdev())),
            );
        }
        f.insert("mtime_s", md.mtime().to_string());
        f.insert("mtime_ns", md.mtime_nsec().to_string());
        f.insert("blocks", md.blocks().to_string());
        if ft.is_symlink() {
            f.insert(
                "target",
                String::from_utf8_lossy(fs::read_link(p).unwrap().as_os_str().as_bytes())
                    .into_owned(),
            );
        }
        if !ft.is_dir() && md.nlink() > 1 {
            let first = first_path
                .entry((md.dev(), md.ino()))
                .or_insert_with(|| rel.clone());
            f.insert("link", first.clone());
        }
        if ft.is_file() {
            f.insert("content", content_digest(p));
        }
        f.insert("xattrs", String::new());
        f.insert("acl", String::new());
        m.insert(rel.clone(), f);
    }
    for (rel, x) in xattrs_of_tree(root) {
        if let Some(f) = m.get_mut(&rel) {
            f.insert("xattrs", x);
        }
    }
    for (rel, a) in acls_of_tree(root) {
        if let Some(f) = m.get_mut(&rel) {
            f.insert("acl", a);
        }
    }
    m
}

pub fn rdev_major(d: u64) -> u64 {
    ((d >> 32) & 0xffff_f000) | ((d >> 8) & 0xfff)
}
pub fn rdev_minor(d: u64) -> u64 {
    ((d >> 12) & 0xffff_ff00) | (d & 0xff)
}

pub fn rel_of(root: &Path, p: &Path) -> String {
    p.strip_prefix(root).unwrap().to_string_lossy().into_owned()
}

/// Content digest that is independent of how holes are allocated:
/// sha256 over (offset, block) for every 4 KiB block that is not all zero,
/// reading only the data regions reported by SEEK_DATA/SEEK_HOLE.
pub fn content_digest(p: &Path) -> String {
    const B: u64 = 4096;
    let mut f = fs::File::open(p).unwrap_or_else(|e| panic!("open {p:?}: {e}"));
    let size = f.metadata().unwrap().len();
    let mut h = Sha256::new();
    let mut next = 0u64; // first byte not yet hashed
    let mut buf = vec![0u8; 1 << 20];
    let zero = [0u8; B as usize];
    while next < size {
        let data = match rustix::fs::seek(&f, rustix::fs::SeekFrom::Data(next)) {
            Ok(o) => o,
            Err(rustix::io::Errno::NXIO) => break,
            Err(_) => next, // no SEEK_DATA support: treat all as data
        };
        let hole = rustix::fs::seek(&f, rustix::fs::SeekFrom::Hole(data))
            .unwrap_or(size)
            .min(size);
        let start = (data / B * B).max(next);
        let end = hole.div_ceil(B).saturating_mul(B).min(size);
        f.seek(SeekFrom::Start(start)).unwrap();
        let mut pos = start;
        while pos < end {
            let want = ((end - pos) as usize).min(buf.len());
            f.read_exact(&mut buf[..want])
                .unwrap_or_else(|e| panic!("read {p:?} at {pos}: {e}"));
            for (i, blk) in buf[..want].chunks(B as usize).enumerate() {
                if blk != &zero[..blk.len()] {
                    h.update((pos + i as u64 * B).to_le_bytes());
                    h.update(blk);
                }
            }
            pos += want as u64;
        }
        next = end.max(next + 1).max(hole);
    }
    let d = h.finalize();
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// Undo the octal escapes (\ooo, \\) getfattr/getfacl use in "# file:".
pub fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            out.push(v as u8);
            i += 4;
        } else if b[i] == b'\\' && i + 1 < b.len() && b[i + 1] == b'\\' {
            out.push(b'\\');
            i += 2;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parse "# file: PATH" blocks of getfattr/getfacl into rel path -> lines.
pub fn parse_file_blocks(
    root: &Path,
    text: &str,
    keep: impl Fn(&str) -> bool,
) -> BTreeMap<String, Vec<String>> {
    let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let prefix = format!("{}/", root.to_string_lossy());
    let mut cur: Option<String> = None;
    for line in text.lines() {
        if let Some(p) = line.strip_prefix("# file: ") {
            let p = unescape(p);
            cur = p.strip_prefix(&prefix).map(String::from);
            if p == root.to_string_lossy() {
                cur = None; // the root's own entry is ignored
            }
            continue;
        }
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(c) = &cur {
            if keep(line) {
                m.entry(c.clone()).or_default().push(line.to_string());
            }
        }
    }
    m
}

/// All xattrs (names + hex values) of every path, via getfattr.
pub fn xattrs_of_tree(root: &Path) -> BTreeMap<String, String> {
    let o = getfattr_tree(root);
    // getfattr exits 1 if some file has none; only fail on real errors.
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.trim().is_empty() || o.status.success(),
        "getfattr on {root:?}:\n{}",
        out_text(&o)
    );
    xattr_map(root, &o.stdout)
}

/// `getfattr -R` dump (hex values, symlinks not followed) of every path
/// under `root`, for [`xattr_map`]; the caller judges its errors.
pub fn getfattr_tree(root: &Path) -> std::process::Output {
    run(Command::new(tool("getfattr"))
        .args([
            "-R",
            "-h",
            "-P",
            "-d",
            "-m",
            "-",
            "-e",
            "hex",
            "--absolute-names",
        ])
        .arg(root)
        .env("LC_ALL", "C"))
}

/// A getfattr dump as path → its sorted `name=value` lines joined by `;`.
pub fn xattr_map(root: &Path, dump: &[u8]) -> BTreeMap<String, String> {
    parse_file_blocks(root, &String::from_utf8_lossy(dump), |_| true)
        .into_iter()
        .map(|(k, mut v)| {
            v.sort();
            (k, v.join(";"))
        })
        .collect()
}

/// Extended POSIX ACLs (access + default; files with only base entries are
/// skipped by -s), via getfacl -n.
pub fn acls_of_tree(root: &Path) -> BTreeMap<String, String> {
    let o = run(Command::new(tool("getfacl"))
        .args(["-R", "-P", "-n", "-s", "-p"])
        .arg(root)
        .env("LC_ALL", "C"));
    assert!(o.status.success(), "getfacl on {root:?}:\n{}", out_text(&o));
    parse_file_blocks(root, &String::from_utf8_lossy(&o.stdout), |_| true)
        .into_iter()
        .map(|(k, v)| (k, v.join(",")))
        .collect()
}

/// Compare two manifests on the given fields; one line per differing path
/// and field, with both values.
pub fn diff_manifests(want: &Manifest, got: &Manifest, fields: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for (p, w) in want {
        let Some(g) = got.get(p) else {
            out.push(format!("{p}: missing from image"));
            continue;
        };
        for f in fields {
            let (a, b) = (w.get(f), g.get(f));
            if a != b {
                out.push(format!(
                    "{p}: {f}: source={} image={}",
                    short(a.map(String::as_str).unwrap_or("<none>")),
                    short(b.map(String::as_str).unwrap_or("<none>"))
                ));
            }
        }
    }
    for p in got.keys() {
        if !want.contains_key(p) {
            out.push(format!("{p}: in image but not in source"));
        }
    }
    out
}

pub fn short(s: &str) -> String {
    if s.len() > 120 {
        format!(
            "{}…({} bytes)",
            &s[..s
                .char_indices()
                .take_while(|(i, _)| *i < 110)
                .last()
                .map(|(i, c)| i + c.len_utf8())
                .unwrap_or(0)],
            s.len()
        )
    } else {
        format!("{s:?}")
    }
}

/// Summarise a problem list: lines that are not "path: field: …" come
/// first, in full; manifest differences are grouped per field, at most 12
/// shown per field, with counts (a 10 000-file mtime mismatch stays readable
/// and does not hide the rarer fields).
pub fn report(problems: &[String]) -> String {
    let mut other = Vec::new();
    let mut per_field: BTreeMap<String, Vec<&String>> = BTreeMap::new();
    for d in problems {
        let parts: Vec<&str> = d.splitn(3, ": ").collect();
        let is_field = parts.len() == 3 && ALL_FIELDS.contains(&parts[1])
            || d.ends_with(": missing from image")
            || d.ends_with(": in image but not in source");
        if !is_field {
            other.push(d);
        } else {
            let f = if parts.len() == 3 && ALL_FIELDS.contains(&parts[1]) {
                parts[1]
            } else {
                parts[parts.len() - 1]
            };
            per_field.entry(f.to_string()).or_default().push(d);
        }
    }
    let counts: BTreeMap<&String, usize> = per_field.iter().map(|(k, v)| (k, v.len())).collect();
    let mut s = format!(
        "{} problems; manifest differences per field: {counts:?}\n",
        problems.len()
    );
    for o in &other {
        s.push_str(&format!("* {o}\n"));
    }
    for (f, v) in &per_field {
        s.push_str(&format!("-- {f} ({}):\n", v.len()));
        for d in v.iter().take(12) {
            s.push_str(&format!("  {d}\n"));
        }
        if v.len() > 12 {
            s.push_str(&format!("  … {} more\n", v.len() - 12));
        }
    }
    s
}

/// Read the image back and compare it to `want` on `fields`: as root
/// through the kernel (read-only loop mount); otherwise with debugfs (rdump
/// plus batch `stat`), which cannot see xattrs/ACLs or special files, so
/// those are not compared then (CI runs as root: the mount path).
/// Returns the image's manifest for extra checks.
pub fn compare_image(img: &Path, want: &Manifest, fields: &[&str]) -> (Manifest, Vec<String>) {
    if is_root() {
        let m = Mount::ro(img);
        let got = manifest(&m.dir);
        drop(m);
        let d = diff_manifests(want, &got, fields);
        return (got, d);
    }
    assert!(
        !is_ci(),
        "CI must run as root so the kernel reads the image back"
    );
    println!(
        "note: not root: reading {img:?} with debugfs rdump/stat; xattrs and ACLs not compared"
    );
    let got = debugfs_manifest(img);
    let fields: Vec<&str> = fields
        .iter()
        .copied()
        .filter(|f| !["xattrs", "acl"].contains(f))
        .collect();
    let d = diff_manifests(want, &got, &fields);
    (got, d)
}

/// Manifest of an image without mounting: `debugfs rdump` for names,
/// content and symlink targets, then one batch of `stat` for mode, owner,
/// links, inode (hard-link groups) and mtime with nanoseconds and epoch bits.
pub fn debugfs_manifest(img: &Path) -> Manifest {
    let tmp = tempfile::Builder::new()
        .prefix("dibr-rdump-")
        .tempdir()
        .unwrap();
    let out = tmp.path().join("r");
    fs::create_dir(&out).unwrap();
    // rdump complains (and carries on) when it cannot chown as non-root.
    let o = run(Command::new(tool("debugfs"))
        .arg("-R")
        .arg(format!("rdump / {}", out.display()))
        .arg(img));
    assert!(o.status.success(), "debugfs rdump failed\n{}", out_text(&o));
    let mut m = manifest(&out);
    let cmds: String = m
        .keys()
        .map(|p| format!("stat \"/{}\"\n", p.replace('"', "\\\"")))
        .collect();
    let cmdfile = tmp.path().join("cmds");
    fs::write(&cmdfile, cmds).unwrap();
    let o = run_ok(
        Command::new(tool("debugfs"))
            .arg("-f")
            .arg(&cmdfile)
            .arg(img),
    );
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let mut by_ino: BTreeMap<String, String> = BTreeMap::new();
    let mut seen = std::collections::BTreeSet::new();
    for chunk in text.split("debugfs: stat \"/").skip(1) {
        let (path, body) = chunk.split_once("\"\n").unwrap_or((chunk, ""));
        let path = path.replace("\\\"", "\"");
        let w: Vec<&str> = body.split_whitespace().collect();
        let after = |k: &str| {
            w.iter()
                .position(|x| *x == k)
                .and_then(|i| w.get(i + 1))
                .map(|s| s.to_string())
        };
        let Some(f) = m.get_mut(&path) else { continue };
        if after("Inode:").is_none() || after("mtime:").is_none() {
            continue;
        }
        seen.insert(path.clone());
        if let Some(mode) = after("Mode:") {
            let v = u32::from_str_radix(&mode, 8).unwrap_or(0) & 0o7777;
            f.insert("mode", format!("{v:04o}"));
        }
        for (k, field) in [("User:", "uid"), ("Group:", "gid"), ("Links:", "nlink")] {
            if let Some(v) = after(k) {
                f.insert(field, v);
            }
        }
        if let Some(mt) = after("mtime:") {
            // 0xLLLLLLLL:EEEEEEEE, extra = nsec << 2 | epoch bits
            let (lo, ex) = mt
                .trim_start_matches("0x")
                .split_once(':')
                .unwrap_or((&mt, "0"));
            let lo =
                u32::from_str_radix(lo.trim_start_matches("0x"), 16).unwrap_or(0) as i32 as i64;
            let ex = u32::from_str_radix(ex, 16).unwrap_or(0);
            f.insert("mtime_s", (lo + (((ex & 3) as i64) << 32)).to_string());
            f.insert("mtime_ns", (ex >> 2).to_string());
        }
        let nlink: u64 = f.get("nlink").and_then(|n| n.parse().ok()).unwrap_or(1);
        f.remove("link");
        if f.get("type").map(String::as_str) != Some("dir") && nlink > 1 {
            if let Some(ino) = after("Inode:") {
                let first = by_ino.entry(ino).or_insert_with(|| path.clone()).clone();
                f.insert("link", first);
            }
        }
    }
    let unparsed: Vec<&String> = m.keys().filter(|k| !seen.contains(*k)).collect();
    assert!(
        unparsed.is_empty(),
        "debugfs stat gave nothing parseable for {unparsed:?}\n{}",
        head(&text, 40)
    );
    m
}

/// Fields to compare: all but `skip`, and (for harness development only,
/// refused under CI) the comma-separated DIBR_TEST_IGNORE_FIELDS, e.g. to
/// show the mke2fs stand-in agrees on everything but timestamps.
pub fn fields_except(skip: &[&str]) -> Vec<&'static str> {
    let extra = std::env::var("DIBR_TEST_IGNORE_FIELDS").unwrap_or_default();
    let extra: Vec<&str> = extra
        .split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .collect();
    if !extra.is_empty() {
        assert!(
            !is_ci(),
            "DIBR_TEST_IGNORE_FIELDS is for harness development and is refused under CI"
        );
        eprintln!("WARNING: DIBR_TEST_IGNORE_FIELDS={extra:?}: these fields are NOT compared");
    }
    ALL_FIELDS
        .iter()
        .copied()
        .filter(|f| !skip.contains(f) && !extra.contains(f))
        .collect()
}
