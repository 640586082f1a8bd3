//! The mkfs under test (ONE switch point).

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use super::*;

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

pub fn size_to_bytes(s: &str) -> u64 {
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
