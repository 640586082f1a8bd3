//! Fixtures.

use sha2::{Digest, Sha256};
use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::Command;

use super::*;

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
