//! `dibr mkfs` at scale (issue 18, item 3): a tree of many small files in
//! bounded memory, judged by `e2fsck -fn` and by the maximum RSS of the
//! dibr process (`/usr/bin/time -f %M`, the kernel's rusage of the child).
//!
//! 1 000 000 files in at most 256 MiB (the bound; 104 MiB measured,
//! 28 s for the whole test on a loaded 2-core machine, so it runs always).
//! The archive (1 GB) is written here: 1 000 files per directory, 28 to 36
//! bytes each, one ustar header and one data block per file.

mod common;
use common::*;

use std::fs;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::process::Command;
use std::time::Instant;

/// One 512-byte ustar header (POSIX.1-2001 "ustar Interchange Format").
fn header(name: &str, typeflag: u8, mode: u32, size: usize) -> [u8; 512] {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    let octal = |h: &mut [u8; 512], at: usize, len: usize, v: u64| {
        let s = format!("{v:0w$o}\0", w = len - 1);
        h[at..at + len].copy_from_slice(s.as_bytes());
    };
    octal(&mut h, 100, 8, mode as u64);
    octal(&mut h, 108, 8, 0);
    octal(&mut h, 116, 8, 0);
    octal(&mut h, 124, 12, size as u64);
    octal(&mut h, 136, 12, 1_700_000_000);
    h[148..156].copy_from_slice(b"        ");
    h[156] = typeflag;
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    let sum: u32 = h.iter().map(|&b| b as u32).sum();
    let s = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
    h
}

/// A tar of `n` small files, 1 000 per directory.
fn small_files_tar(path: &Path, n: usize) {
    let mut w = BufWriter::with_capacity(1 << 20, fs::File::create(path).unwrap());
    for i in 0..n {
        if i % 1000 == 0 {
            w.write_all(&header(&format!("d{:05}/", i / 1000), b'5', 0o755, 0))
                .unwrap();
        }
        let data = format!("file {i}\n").repeat(3);
        let name = format!("d{:05}/file-{i:07}", i / 1000);
        w.write_all(&header(&name, b'0', 0o644, data.len()))
            .unwrap();
        let mut block = [0u8; 512];
        block[..data.len()].copy_from_slice(data.as_bytes());
        w.write_all(&block).unwrap();
    }
    w.write_all(&[0u8; 1024]).unwrap();
    w.flush().unwrap();
}

/// Build `n` files and require e2fsck -fn clean and at most `max_mib` of
/// RSS; prints wall time and RSS.
fn small_files(test: &str, n: usize, max_mib: u64) {
    let work = scratch(test);
    let tar = work.path().join("small.tar");
    small_files_tar(&tar, n);
    let img = work.path().join("small.img");
    let stats = work.path().join("rss");
    let t0 = Instant::now();
    let o = run(Command::new(tool("time"))
        .args(["-f", "%M", "-o"])
        .arg(&stats)
        .arg(dibr_bin())
        .args(["mkfs", "--from"])
        .arg(&tar)
        .arg("-o")
        .arg(&img));
    let wall = t0.elapsed();
    assert!(
        o.status.success(),
        "{test}: dibr mkfs failed\n{}",
        out_text(&o)
    );
    let text = fs::read_to_string(&stats).unwrap();
    let rss_kib: u64 = text
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("{test}: /usr/bin/time wrote {text:?}"));
    eprintln!(
        "{test}: {n} files in {:.2} s, max RSS {} MiB ({} bytes per file)",
        wall.as_secs_f64(),
        rss_kib >> 10,
        rss_kib * 1024 / n as u64
    );
    assert!(
        rss_kib <= max_mib << 10,
        "{test}: dibr mkfs of {n} small files reached {} MiB of RSS; the bound is {max_mib} MiB",
        rss_kib >> 10
    );
    e2fsck_ok(&img);
    // Inodes 1-10 (reserved), lost+found (11), the files and directories.
    let sb = dumpe2fs_h(&img);
    let count = |k: &str| -> u64 {
        sb.get(k)
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{test}: dumpe2fs -h has no {k:?}"))
    };
    let used = count("Inode count") - count("Free inodes");
    let want = 11 + n as u64 + n.div_ceil(1000) as u64;
    assert_eq!(used, want, "{test}: used inodes for {n} files");
}

#[test]
fn million_small_files() {
    small_files("million_small_files", 1_000_000, 256);
}
