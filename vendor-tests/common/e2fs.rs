//! The real e2fsprogs.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};

use super::*;

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
