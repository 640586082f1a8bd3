//! Nothing of the build host in an image (issue 14, item 2): a built tree
//! is compared with what a clean install of its packages would have, and
//! searched for what only the build host or the build could have put there.
//!
//! - `dpkg --root TREE --verify` (the real tool) lists every packaged file
//!   whose content differs from its package; files in `/etc` that no package
//!   owns (`var/lib/dpkg/info/*.list`) are the rest of what the build wrote.
//!   Each must be on the caller's allow-list, with the reason it may differ.
//! - Fingerprints of this host (its resolv.conf name servers, machine-id,
//!   the non-default lines of its /etc/hosts) and of the build (work
//!   directory names, the building user's home) must appear in no file.
//! - What DIB removes or restores after a build must be gone: policy-rc.d,
//!   apt proxy settings, the host's resolv.conf and hostname, a machine-id,
//!   files in /tmp.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A path (or a prefix ending in `/`, or a `*` suffix) that may differ
/// from a clean install, and why.
pub type Allowed = (&'static str, &'static str);

/// Every finding in `tree` (an extracted image), with `allowed` exempting
/// files that may legitimately differ. Empty: nothing of the builder.
pub fn builder_leaks(tree: &Path, allowed: &[Allowed]) -> Vec<String> {
    let mut found = Vec::new();
    found.extend(differing_files(tree, allowed));
    found.extend(fingerprints(tree));
    found.extend(leftovers(tree));
    found
}

fn is_allowed(path: &str, allowed: &[Allowed]) -> bool {
    allowed.iter().any(|(p, _)| {
        if let Some(prefix) = p.strip_suffix('*') {
            path.starts_with(prefix)
        } else if p.ends_with('/') {
            path.starts_with(p)
        } else {
            path == *p
        }
    })
}

/// Files whose content is not what their package ships, and files in
/// /etc that no package ships, minus the allowed ones.
fn differing_files(tree: &Path, allowed: &[Allowed]) -> Vec<String> {
    let mut found = Vec::new();
    let o = Command::new("dpkg")
        .arg(format!("--root={}", tree.display()))
        .arg("--verify")
        .output()
        .expect("dpkg --verify");
    // Format (dpkg(1), --verify-format rpm): "??5?????? c /etc/x".
    for line in String::from_utf8_lossy(&o.stdout).lines() {
        let Some(path) = line.split_whitespace().last() else {
            continue;
        };
        let md5_differs = line.as_bytes().get(2) == Some(&b'5');
        if md5_differs && !is_allowed(path, allowed) {
            found.push(format!(
                "{path}: differs from its package (dpkg --verify: {line})"
            ));
        }
    }
    let owned = packaged_paths(tree);
    for p in walk(&tree.join("etc")) {
        let rel = format!("/{}", p.strip_prefix(tree).unwrap().display());
        let meta = fs::symlink_metadata(&p).unwrap();
        if meta.is_dir() || owned.contains(&rel) || is_allowed(&rel, allowed) {
            continue;
        }
        found.push(format!("{rel}: in no package and not on the allow-list"));
    }
    found
}

/// Every path a package installs (`var/lib/dpkg/info/*.list`).
fn packaged_paths(tree: &Path) -> BTreeSet<String> {
    let mut set = BTreeSet::new();
    let info = tree.join("var/lib/dpkg/info");
    for e in fs::read_dir(&info).expect("var/lib/dpkg/info").flatten() {
        if e.path().extension().is_some_and(|x| x == "list") {
            for l in fs::read_to_string(e.path()).unwrap_or_default().lines() {
                set.insert(l.to_string());
            }
        }
    }
    set
}

/// Regular files and symlinks below `dir`, sorted; directories are entered.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                stack.push(p.clone());
            }
            out.push(p);
        }
    }
    out.sort();
    out
}

/// Strings only this host or this build could have written.
fn host_fingerprints() -> Vec<(String, &'static str)> {
    let mut fp: Vec<(String, &'static str)> = vec![
        ("dibr_build.".into(), "a dibr work directory name"),
        ("/home/dibr-ci".into(), "the building user's home"),
        ("dibr-vt-".into(), "the test's scratch directory"),
    ];
    for l in fs::read_to_string("/etc/resolv.conf")
        .unwrap_or_default()
        .lines()
    {
        let l = l.trim();
        if let Some(ns) = l.strip_prefix("nameserver") {
            let ns = ns.trim();
            // Loopback resolvers are everyone's, not this host's.
            if !ns.starts_with("127.") && ns != "::1" && !ns.is_empty() {
                fp.push((ns.to_string(), "a name server of the build host"));
            }
        }
    }
    let id = fs::read_to_string("/etc/machine-id").unwrap_or_default();
    if id.trim().len() == 32 {
        fp.push((id.trim().to_string(), "the build host's machine-id"));
    }
    for l in fs::read_to_string("/etc/hosts").unwrap_or_default().lines() {
        let words: Vec<&str> = l.split_whitespace().collect();
        let default = words.is_empty()
            || words[0].starts_with('#')
            || words[1..]
                .iter()
                .all(|w| w.starts_with("localhost") || w.starts_with("ip6-"));
        if !default {
            fp.push((
                l.trim().to_string(),
                "a line of the build host's /etc/hosts",
            ));
        }
    }
    fp
}

/// Files (below 4 MiB, outside the package database and documentation)
/// that contain a fingerprint.
fn fingerprints(tree: &Path) -> Vec<String> {
    let fp = host_fingerprints();
    let mut found = Vec::new();
    for top in [
        "etc",
        "root",
        "home",
        "var/lib",
        "var/log",
        "usr/local",
        "opt",
        "boot/grub",
    ] {
        for p in walk(&tree.join(top)) {
            let meta = fs::symlink_metadata(&p).unwrap();
            if !meta.is_file() || meta.len() > 4 << 20 {
                continue;
            }
            let rel = p.strip_prefix(tree).unwrap().display().to_string();
            if rel.starts_with("var/lib/apt/lists/") {
                continue;
            }
            let data = fs::read(&p).unwrap_or_default();
            for (s, what) in &fp {
                if data.windows(s.len()).any(|w| w == s.as_bytes()) {
                    found.push(format!("/{rel}: contains {what} ({s:?})"));
                }
            }
        }
    }
    found
}

/// What DIB removes or restores at the end of a build.
fn leftovers(tree: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for p in ["usr/sbin/policy-rc.d", "etc/apt/apt.conf.d/01proxy"] {
        if fs::symlink_metadata(tree.join(p)).is_ok() {
            found.push(format!("/{p}: left by the build (DIB removes it)"));
        }
    }
    for p in walk(&tree.join("etc/apt")) {
        let data = fs::read_to_string(&p).unwrap_or_default();
        if data
            .lines()
            .any(|l| l.contains("::Proxy") && !l.trim_start().starts_with("//"))
        {
            found.push(format!(
                "{}: an apt proxy setting of the build",
                p.display()
            ));
        }
    }
    for (file, host) in [
        ("etc/resolv.conf", "/etc/resolv.conf"),
        ("etc/hostname", "/etc/hostname"),
    ] {
        let (img, host) = (fs::read(tree.join(file)), fs::read(host));
        if let (Ok(i), Ok(h)) = (img, host) {
            if !h.is_empty() && i == h {
                found.push(format!("/{file}: the build host's"));
            }
        }
    }
    let id = fs::read_to_string(tree.join("etc/machine-id")).unwrap_or_default();
    if !(id.trim().is_empty() || id.trim() == "uninitialized") {
        found.push(format!(
            "/etc/machine-id: {:?} (every instance would share it; DIB empties it)",
            id.trim()
        ));
    }
    for d in ["tmp", "var/tmp"] {
        for p in walk(&tree.join(d)) {
            found.push(format!("{}: left in /{d} by the build", p.display()));
        }
    }
    found
}
