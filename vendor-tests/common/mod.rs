//! Shared helpers for the vendor tests: they judge `dibr mkfs` output with
//! the real tools (e2fsck, dumpe2fs, debugfs, resize2fs, the kernel through
//! a loop mount, getfattr/getfacl, GNU tar).
//!
//! Every way of running the mkfs under test goes through [`mkfs_argv`]; the
//! environment variable `DIBR_TEST_MKFS=mke2fs` swaps in a stand-in built on
//! `mke2fs -d` so the harness itself can be validated (and seen to fail on
//! what mke2fs gets wrong: whole-second timestamps, tar xattrs, debris).
#![allow(dead_code)]

pub mod build;
pub mod leak;
pub mod vm;

use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

// ---------------------------------------------------------------------------
// Environment: CI, root, tools, skipping.
// ---------------------------------------------------------------------------

pub fn is_ci() -> bool {
    matches!(std::env::var("CI").as_deref(), Ok("true") | Ok("1"))
}

/// `DIBR_IMAGE_TESTS=1`: the slow tests that build real images (network,
/// minutes; `.ci/run` sets it).
pub fn image_tests() -> bool {
    std::env::var("DIBR_IMAGE_TESTS").as_deref() == Ok("1")
}

/// `DIBR_TEST_CACHE` (default /var/tmp/dibr-test-cache): downloads,
/// bootstraps and fixtures kept between runs.
pub fn test_cache() -> PathBuf {
    PathBuf::from(
        std::env::var("DIBR_TEST_CACHE").unwrap_or_else(|_| "/var/tmp/dibr-test-cache".into()),
    )
}

pub fn slow_tests() -> bool {
    std::env::var("DIBR_SLOW_TESTS").as_deref() == Ok("1")
}

pub fn is_root() -> bool {
    fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// Search PATH plus the sbin directories (tests may run with a user PATH).
pub fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    for d in ["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"] {
        dirs.push(PathBuf::from(d));
    }
    dirs.into_iter().map(|d| d.join(tool)).find(|p| p.is_file())
}

/// Resolve a tool to a full path so it works whatever PATH cargo was given.
pub fn tool(name: &str) -> PathBuf {
    which(name).unwrap_or_else(|| PathBuf::from(name))
}

/// A prerequisite is missing: outside CI print "skipped: why" and return;
/// in CI (CI=true) that is a failure.
pub fn skip(test: &str, why: &str) {
    if is_ci() {
        panic!(
            "{test}: prerequisite missing in CI (CI=true makes this a failure, not a skip): {why}"
        );
    }
    println!("skipped: {test}: {why}");
    eprintln!("skipped: {test}: {why}");
}

/// Returns false (after printing/panicking via [`skip`]) if any prerequisite
/// is missing.
pub fn require(test: &str, need_root: bool, tools: &[&str]) -> bool {
    if need_root && !is_root() {
        skip(test, "needs root (mknod/chown/setcap/loop mount)");
        return false;
    }
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|t| which(t).is_none())
        .collect();
    if !missing.is_empty() {
        skip(
            test,
            &format!(
                "missing tools: {} (see .ci/run for the packages)",
                missing.join(", ")
            ),
        );
        return false;
    }
    true
}

// ---------------------------------------------------------------------------
// Running commands.
// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------
// The mkfs under test (ONE switch point).
// ---------------------------------------------------------------------------

#[derive(Clone, Debug)]
pub enum Src {
    /// `--from PATH` (tar file of any compression, or a directory).
    Path(PathBuf),
    /// `--from -` with this file on stdin.
    Stdin(PathBuf),
}

#[derive(Clone, Debug, Default)]
pub struct Opts {
    pub label: Option<String>,
    pub uuid: Option<String>,
    pub size: Option<String>,
    pub extra_size: Option<String>,
    pub max_resize: Option<String>,
    pub journal_size: Option<String>,
    pub env: Vec<(String, String)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Impl {
    Dibr,
    Mke2fsStandIn,
}

pub fn mkfs_impl() -> Impl {
    match std::env::var("DIBR_TEST_MKFS").as_deref() {
        Err(_) | Ok("") | Ok("dibr") => Impl::Dibr,
        Ok("mke2fs") => Impl::Mke2fsStandIn,
        Ok(other) => panic!("DIBR_TEST_MKFS={other:?}: expected unset, 'dibr' or 'mke2fs'"),
    }
}

pub fn dibr_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_dibr"))
}

fn size_to_bytes(s: &str) -> u64 {
    let s = s.trim();
    let (num, mul) = match s.chars().last() {
        Some('K') | Some('k') => (&s[..s.len() - 1], 1u64 << 10),
        Some('M') | Some('m') => (&s[..s.len() - 1], 1 << 20),
        Some('G') | Some('g') => (&s[..s.len() - 1], 1 << 30),
        Some('T') | Some('t') => (&s[..s.len() - 1], 1 << 40),
        Some('P') | Some('p') => (&s[..s.len() - 1], 1 << 50),
        _ => (s, 1),
    };
    num.parse::<u64>().expect("size") * mul
}

/// argv (program first) and environment for one mkfs run. Everything that
/// runs the mkfs under test (directly, under ulimit, setpriv, unshare)
/// builds on this.
pub fn mkfs_argv(src: &Src, out: &Path, o: &Opts) -> Vec<OsString> {
    let from: OsString = match src {
        Src::Path(p) => p.clone().into_os_string(),
        Src::Stdin(_) => "-".into(),
    };
    let mut a: Vec<OsString> = Vec::new();
    match mkfs_impl() {
        Impl::Dibr => {
            a.push(dibr_bin().into());
            a.push("mkfs".into());
            a.push("--from".into());
            a.push(from);
            a.push("-o".into());
            a.push(out.into());
            let mut opt = |k: &str, v: &Option<String>| {
                if let Some(v) = v {
                    a.push(k.into());
                    a.push(v.into());
                }
            };
            opt("--label", &o.label);
            opt("--uuid", &o.uuid);
            opt("--size", &o.size);
            opt("--extra-size", &o.extra_size);
            opt("--max-resize", &o.max_resize);
            opt("--journal-size", &o.journal_size);
        }
        Impl::Mke2fsStandIn => {
            // Stand-in: same feature set, ipg <= 496, fixed 4 GiB unless --size.
            let size = o.size.clone().unwrap_or_else(|| "4G".into());
            let bytes = size_to_bytes(&size);
            let groups = bytes.div_ceil(128 << 20).max(1);
            a.push(tool("mke2fs").into());
            for x in [
                "-q", "-F", "-t", "ext4", "-b", "4096", "-O",
                "metadata_csum,64bit,meta_bg,^resize_inode,flex_bg,dir_index,extents,huge_file,dir_nlink,extra_isize,has_journal",
            ] {
                a.push(x.into());
            }
            a.push("-N".into());
            a.push((groups * 496).to_string().into());
            if let Some(l) = &o.label {
                a.push("-L".into());
                a.push(l.into());
            }
            if let Some(u) = &o.uuid {
                a.push("-U".into());
                a.push(u.into());
            }
            if let Some(j) = &o.journal_size {
                a.push("-J".into());
                a.push(format!("size={}", size_to_bytes(j) >> 20).into());
            }
            a.push("-d".into());
            a.push(from);
            a.push(out.into());
            a.push(size.into());
        }
    }
    a
}

pub fn mkfs_command(src: &Src, out: &Path, o: &Opts) -> Command {
    let argv = mkfs_argv(src, out, o);
    let mut c = Command::new(&argv[0]);
    c.args(&argv[1..]);
    c.env_remove("SOURCE_DATE_EPOCH");
    for (k, v) in &o.env {
        c.env(k, v);
    }
    stdin_for(&mut c, src);
    c
}

pub fn stdin_for(c: &mut Command, src: &Src) {
    match src {
        Src::Stdin(p) => {
            c.stdin(fs::File::open(p).unwrap_or_else(|e| panic!("open {p:?}: {e}")));
        }
        Src::Path(_) => {
            c.stdin(Stdio::null());
        }
    }
}

/// Run the mkfs under test; returns its output (does not judge it).
pub fn mkfs(src: &Src, out: &Path, o: &Opts) -> Output {
    let mut c = mkfs_command(src, out, o);
    c.output()
        .unwrap_or_else(|e| panic!("cannot run {c:?}: {e}"))
}

/// Run the mkfs under test and require success, no debris next to `out`.
pub fn mkfs_ok(src: &Src, out: &Path, o: &Opts) -> Output {
    let r = mkfs(src, out, o);
    assert!(
        r.status.success(),
        "mkfs {src:?} -> {out:?} failed\n{}",
        out_text(&r)
    );
    assert!(
        out.is_file(),
        "mkfs reported success but {out:?} does not exist"
    );
    let dir = out.parent().unwrap();
    let name = out.file_name().unwrap();
    let debris: Vec<_> = dir_entries(dir)
        .into_iter()
        .filter(|n| n.as_os_str() != name)
        .collect();
    assert!(debris.is_empty(), "debris left beside {out:?}: {debris:?}");
    r
}

pub fn dir_entries(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read_dir {dir:?}: {e}"))
        .map(|e| PathBuf::from(e.unwrap().file_name()))
        .collect();
    v.sort();
    v
}

// ---------------------------------------------------------------------------
// The real e2fsprogs.
// ---------------------------------------------------------------------------

/// `e2fsck -fn` must exit 0.
pub fn e2fsck_ok(img: &Path) {
    let p = e2fsck_problems(img);
    assert!(p.is_empty(), "{}", p.join("\n"));
}

pub fn e2fsck_problems(img: &Path) -> Vec<String> {
    let o = run(Command::new(tool("e2fsck")).arg("-fn").arg(img));
    if o.status.code() == Some(0) {
        return vec![];
    }
    vec![format!(
        "e2fsck -fn {img:?} did not exit 0 (4 = errors left, 8 = operational error)\n{}",
        head(&out_text(&o), 80)
    )]
}

pub fn dumpe2fs_h(img: &Path) -> BTreeMap<String, String> {
    let o = run_ok(Command::new(tool("dumpe2fs")).arg("-h").arg(img));
    let mut m = BTreeMap::new();
    for line in String::from_utf8_lossy(&o.stdout).lines() {
        if let Some((k, v)) = line.split_once(':') {
            m.insert(k.trim().to_string(), v.trim().to_string());
        }
    }
    m
}

pub const REQUIRED_FEATURES: &[&str] = &[
    "has_journal",
    "ext_attr",
    "dir_index",
    "filetype",
    "meta_bg",
    "extent",
    "64bit",
    "flex_bg",
    "sparse_super",
    "huge_file",
    "dir_nlink",
    "extra_isize",
    "metadata_csum",
];
pub const FORBIDDEN_FEATURES: &[&str] = &["resize_inode", "sparse_super2", "mmp", "bigalloc"];

/// dumpe2fs -h: features, block size, ipg <= 496, label/uuid if given.
pub fn check_superblock(img: &Path, label: Option<&str>, uuid: Option<&str>) {
    let p = superblock_problems(img, label, uuid);
    assert!(p.is_empty(), "{}", p.join("\n"));
}

pub fn superblock_problems(img: &Path, label: Option<&str>, uuid: Option<&str>) -> Vec<String> {
    let h = dumpe2fs_h(img);
    let get = |k: &str| {
        h.get(k)
            .cloned()
            .unwrap_or_else(|| panic!("dumpe2fs -h {img:?}: no '{k}' line: {h:#?}"))
    };
    let feats: Vec<String> = get("Filesystem features")
        .split_whitespace()
        .map(String::from)
        .collect();
    let mut errs = Vec::new();
    for f in REQUIRED_FEATURES {
        if !feats.iter().any(|x| x == f) {
            errs.push(format!("feature {f} missing"));
        }
    }
    for f in FORBIDDEN_FEATURES {
        if feats.iter().any(|x| x == f) {
            errs.push(format!("feature {f} must not be set"));
        }
    }
    if get("Block size") != "4096" {
        errs.push(format!("Block size {} != 4096", get("Block size")));
    }
    let ipg: u64 = get("Inodes per group").parse().unwrap();
    if ipg > 496 {
        errs.push(format!(
            "Inodes per group {ipg} > 496 (cannot grow to 1 PiB)"
        ));
    }
    if let Some(r) = h.get("Reserved GDT blocks") {
        if r != "0" {
            errs.push(format!("Reserved GDT blocks {r} != 0"));
        }
    }
    if let Some(l) = label {
        if get("Filesystem volume name") != l {
            errs.push(format!(
                "label {:?} != {l:?}",
                get("Filesystem volume name")
            ));
        }
    }
    if let Some(u) = uuid {
        if !get("Filesystem UUID").eq_ignore_ascii_case(u) {
            errs.push(format!("UUID {:?} != {u:?}", get("Filesystem UUID")));
        }
    }
    errs.into_iter()
        .map(|e| format!("dumpe2fs -h: {e}"))
        .collect()
}

/// `debugfs -R "htree DIR"` must show an indexed, consistent directory.
pub fn check_htree(img: &Path, dir: &str) {
    let p = htree_problems(img, dir);
    assert!(p.is_empty(), "{}", p.join("\n"));
}

pub fn htree_problems(img: &Path, dir: &str) -> Vec<String> {
    let o = run_ok(
        Command::new(tool("debugfs"))
            .arg("-R")
            .arg(format!("htree {dir}"))
            .arg(img),
    );
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    if !out.contains("Root node dump") {
        return vec![format!(
            "debugfs htree: {dir} is not an htree-indexed directory:\n{}",
            head(&out, 10)
        )];
    }
    // Whole words only: hash values such as 0x…-b5a28bad contain "bad".
    let mut v = Vec::new();
    for line in out.lines() {
        let lower = line.to_lowercase();
        let words: Vec<&str> = lower.split(|c: char| !c.is_ascii_alphanumeric()).collect();
        let hit = [
            "error",
            "errors",
            "corrupt",
            "corrupted",
            "mismatch",
            "invalid",
            "bad",
        ]
        .iter()
        .any(|w| words.contains(w))
            || lower.contains("not a directory");
        if hit {
            v.push(format!("debugfs htree {dir}: {line}"));
        }
    }
    v.truncate(20);
    v
}

pub fn head(s: &str, n: usize) -> String {
    s.lines().take(n).collect::<Vec<_>>().join("\n")
}

pub fn e2fsprogs_version(bin: &str) -> Option<(u32, u32, u32)> {
    let o = Command::new(tool(bin))
        .arg("-V")
        .stdin(Stdio::null())
        .output()
        .ok()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let word = text.split_whitespace().nth(1)?; // "resize2fs 1.47.2 (1-Jan-2025)"
    let mut it = word.split('.').map(|x| x.parse::<u32>().ok());
    Some((it.next()??, it.next()??, it.next().flatten().unwrap_or(0)))
}

// ---------------------------------------------------------------------------
// Loop mount (read-only), unmounted in Drop.
// ---------------------------------------------------------------------------

pub struct Mount {
    pub dir: PathBuf,
    mounted: bool,
    _tmp: tempfile::TempDir,
}

impl Mount {
    pub fn ro(img: &Path) -> Mount {
        let tmp = tempfile::Builder::new()
            .prefix("dibr-mnt-")
            .tempdir()
            .unwrap();
        let dir = tmp.path().join("m");
        fs::create_dir(&dir).unwrap();
        run_ok(
            Command::new(tool("mount"))
                .arg("-o")
                .arg("loop,ro,noload")
                .arg(img)
                .arg(&dir),
        );
        Mount {
            dir,
            mounted: true,
            _tmp: tmp,
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if !self.mounted {
            return;
        }
        for _ in 0..20 {
            let ok = Command::new(tool("umount"))
                .arg(&self.dir)
                .stdin(Stdio::null())
                .status()
                .map(|s| s.success());
            if ok.unwrap_or(false) {
                self.mounted = false;
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(250));
        }
        let _ = Command::new(tool("umount"))
            .arg("-l")
            .arg(&self.dir)
            .status();
        eprintln!("warning: {:?} needed a lazy unmount", self.dir);
    }
}

// ---------------------------------------------------------------------------
// Manifest: what a tree holds, field by field.
// ---------------------------------------------------------------------------

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

fn rdev_major(d: u64) -> u64 {
    ((d >> 32) & 0xffff_f000) | ((d >> 8) & 0xfff)
}
fn rdev_minor(d: u64) -> u64 {
    ((d >> 12) & 0xffff_ff00) | (d & 0xff)
}

fn rel_of(root: &Path, p: &Path) -> String {
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
fn unescape(s: &str) -> String {
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
fn parse_file_blocks(
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
    let o = run(Command::new(tool("getfattr"))
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
        .env("LC_ALL", "C"));
    // getfattr exits 1 if some file has none; only fail on real errors.
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.trim().is_empty() || o.status.success(),
        "getfattr on {root:?}:\n{}",
        out_text(&o)
    );
    parse_file_blocks(root, &String::from_utf8_lossy(&o.stdout), |_| true)
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

fn short(s: &str) -> String {
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

// ---------------------------------------------------------------------------
// Fixtures.
// ---------------------------------------------------------------------------

/// Deterministic pseudo-random bytes (xorshift64*), incompressible.
pub fn prng_bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(n + 8);
    while v.len() < n {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        v.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    v.truncate(n);
    v
}

pub fn write_file(p: &Path, data: &[u8]) {
    if let Some(d) = p.parent() {
        fs::create_dir_all(d).unwrap();
    }
    let mut f = fs::File::create(p).unwrap_or_else(|e| panic!("create {p:?}: {e}"));
    f.write_all(data).unwrap();
}

/// A small tree that needs no privileges: files, dirs, symlinks, a hard
/// link, a user xattr, sub-second mtimes.
pub fn build_simple_tree(root: &Path) {
    fs::create_dir_all(root).unwrap();
    write_file(&root.join("etc/hostname"), b"dibr\n");
    write_file(&root.join("etc/motd"), &prng_bytes(7, 5000));
    write_file(&root.join("usr/bin/tool"), &prng_bytes(8, 40_000));
    write_file(&root.join("usr/lib/empty"), b"");
    write_file(
        &root.join("usr/share/doc/readme.txt"),
        &b"hello world\n".repeat(500),
    );
    fs::create_dir_all(root.join("var/empty")).unwrap();
    fs::hard_link(root.join("usr/bin/tool"), root.join("usr/bin/tool-alias")).unwrap();
    std::os::unix::fs::symlink("../usr/bin/tool", root.join("etc/tool-link")).unwrap();
    std::os::unix::fs::symlink("hostname", root.join("etc/short")).unwrap();
    fs::set_permissions(
        root.join("usr/bin/tool"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    if which("setfattr").is_some() {
        run_ok(
            Command::new(tool("setfattr"))
                .args(["-n", "user.origin", "-v", "simple"])
                .arg(root.join("etc/motd")),
        );
    }
    // Fixed sub-second mtimes everywhere, deepest first so dirs keep theirs.
    run_ok(
        Command::new("sh")
            .arg("-c")
            .arg("find . -depth -exec touch -h -d '2023-11-14 22:13:20.250000000 UTC' {} +")
            .current_dir(root),
    );
}

/// Make a tar with GNU tar: `args` go before `-C tree -cf out .`.
pub fn gnu_tar(tree: &Path, out: &Path, args: &[&str]) {
    let o = run(Command::new(tool("tar"))
        .args(args)
        .arg("-C")
        .arg(tree)
        .arg("-cf")
        .arg(out)
        .arg(".")
        .env("LC_ALL", "C"));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "tar {args:?} failed:\n{}", out_text(&o));
    if !err.trim().is_empty() {
        eprintln!("tar {args:?} warned: {err}");
    }
}

/// Owned scratch dir for one test (removed on drop, even on panic).
pub fn scratch(tag: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("dibr-vt-{tag}-"))
        .tempdir()
        .unwrap()
}

pub fn sha256_file(p: &Path) -> String {
    let mut f = fs::File::open(p).unwrap();
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).unwrap();
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Copies `len` bytes at `start` of a disk image out to `out` (sparse), so
/// fsck/e2fsck/blkid can look at one partition.
pub fn extract(disk: &Path, out: &Path, start: u64, len: u64) {
    run_ok(
        Command::new(tool("dd"))
            .arg(format!("if={}", disk.display()))
            .arg(format!("of={}", out.display()))
            .args([
                "bs=1M",
                "iflag=skip_bytes,count_bytes",
                "conv=sparse",
                "status=none",
            ])
            .arg(format!("skip={start}"))
            .arg(format!("count={len}")),
    );
}
