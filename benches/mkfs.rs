//! `cargo bench --bench mkfs`: dibr mkfs against its anchors, in one run.
//!
//! Input: a real root filesystem tarball, `DIBR_BENCH_TAR` (default
//! /var/tmp/dibr-bench/root.tar; make one as an ordinary user with
//! `mmdebstrap --variant=apt --include=linux-image-amd64,systemd-sysv,... bookworm root.tar`).
//! Contenders, each run `DIBR_BENCH_RUNS` times (default 5) after a `sync`,
//! outputs in `DIBR_BENCH_DIR` (default target/bench-mkfs):
//!   dibr     `dibr mkfs --from root.tar`
//!   (a)      `tar -x` then `mke2fs -t ext4 -b 4096 -d DIR`
//!   (b)      `mke2fs -t ext4 -b 4096 -d DIR` from the extracted directory
//! plus a flat 100 000-entry directory (tar) through dibr and mke2fs -d,
//! and an extracted tree of 100 000 small files (100 directories of 1 000,
//! 28-36 bytes each) through both, each fsynced (issue 18: dibr >= 4x).
//! `DIBR_BENCH_CASES` picks cases (default `root,flat,small`; with
//! `DIBR_BENCH_MILLION=1` also `million`): 1 000 000 small files from a tar
//! (issue 18: <= 10 s wall, <= 256 MiB RSS) against `dd` writing and
//! fsyncing as many bytes as dibr's image holds (what writing that much
//! costs on this disk; mke2fs -d is not run: minutes per run).
//! Prints medians and the ratios, and writes JSON to DIR/result.json.
//! Under `cargo test` (no `--bench` argument) it does nothing.

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::{median, sh, timed};

fn size_arg(bytes: u64) -> String {
    format!("{}k", bytes.div_ceil(1024))
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("mkfs bench: skipped (run `cargo bench --bench mkfs`)");
        return;
    }
    let dibr = env!("CARGO_BIN_EXE_dibr");
    let tarball = PathBuf::from(
        std::env::var("DIBR_BENCH_TAR").unwrap_or_else(|_| "/var/tmp/dibr-bench/root.tar".into()),
    );
    let runs: usize = std::env::var("DIBR_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let dir = PathBuf::from(
        std::env::var("DIBR_BENCH_DIR").unwrap_or_else(|_| "target/bench-mkfs".into()),
    );
    std::fs::create_dir_all(&dir).unwrap();
    let mut results = Vec::new();

    let cases = std::env::var("DIBR_BENCH_CASES").unwrap_or_else(|_| {
        if std::env::var("DIBR_BENCH_MILLION").is_ok_and(|v| v == "1") {
            "root,flat,small,million".into()
        } else {
            "root,flat,small".into()
        }
    });
    for case in cases.split(',') {
        match case {
            "root" => root_tarball(dibr, &tarball, &dir, runs, &mut results),
            "flat" => results.push(flat_dir(dibr, &dir, runs)),
            "small" => results.push(small_files(dibr, &dir, runs)),
            "million" => results.push(million_small_files(dibr, &dir, runs)),
            other => {
                panic!("DIBR_BENCH_CASES: unknown case {other:?} (root, flat, small, million)")
            }
        }
    }
    let json = format!("[{}]\n", results.join(","));
    std::fs::write(dir.join("result.json"), &json).unwrap();
    println!("JSON: {}", Path::new(&dir).join("result.json").display());
}

/// A real root tarball: dibr against `tar -x` + `mke2fs -d` and `mke2fs -d`.
fn root_tarball(dibr: &str, tarball: &Path, dir: &Path, runs: usize, results: &mut Vec<String>) {
    if tarball.exists() {
        let tar_bytes = std::fs::metadata(tarball).unwrap().len();
        // mke2fs needs a size up front; twice the tarball is ample.
        let size = size_arg(tar_bytes * 2);
        let tree = dir.join("tree");
        let out = |n: &str| dir.join(n);
        let (mut td, mut ta, mut tb) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..runs {
            let _ = std::fs::remove_file(out("dibr.img"));
            td.push(timed(|| {
                sh(Command::new(dibr)
                    .args(["mkfs", "--from"])
                    .arg(tarball)
                    .arg("-o")
                    .arg(out("dibr.img")))
            }));
            let _ = std::fs::remove_file(out("dibr.img"));
            let _ = std::fs::remove_dir_all(&tree);
            let _ = std::fs::remove_file(out("a.img"));
            ta.push(timed(|| {
                std::fs::create_dir_all(&tree).unwrap();
                sh(Command::new("tar")
                    .arg("-xf")
                    .arg(tarball)
                    .arg("-C")
                    .arg(&tree));
                sh(Command::new("mke2fs")
                    .args(["-q", "-F", "-t", "ext4", "-b", "4096", "-d"])
                    .arg(&tree)
                    .arg(out("a.img"))
                    .arg(&size));
            }));
            let _ = std::fs::remove_file(out("a.img"));
            tb.push(timed(|| {
                sh(Command::new("mke2fs")
                    .args(["-q", "-F", "-t", "ext4", "-b", "4096", "-d"])
                    .arg(&tree)
                    .arg(out("b.img"))
                    .arg(&size));
            }));
            let _ = std::fs::remove_file(out("b.img"));
        }
        let _ = std::fs::remove_dir_all(&tree);
        let (d, a, b) = (median(td), median(ta), median(tb));
        println!(
            "root tarball {} ({} MB), {runs} runs, medians:",
            tarball.display(),
            tar_bytes >> 20
        );
        println!("  dibr mkfs --from root.tar        {d:7.2} s");
        println!(
            "  (a) tar -x + mke2fs -d           {a:7.2} s   ratio {:.1}x (target >= 6x)",
            a / d
        );
        println!(
            "  (b) mke2fs -d (extracted dir)    {b:7.2} s   ratio {:.1}x (target >= 3x)",
            b / d
        );
        results.push(format!(
            "{{\"case\":\"root-tarball\",\"dibr_s\":{d:.3},\"tar_x_mke2fs_s\":{a:.3},\"mke2fs_d_s\":{b:.3},\"ratio_a\":{:.2},\"ratio_b\":{:.2}}}",
            a / d,
            b / d
        ));
    } else {
        println!(
            "root tarball {} missing: skipping that case (set DIBR_BENCH_TAR)",
            tarball.display()
        );
    }
}

/// A flat directory of 100 000 empty files: dibr (tar) against `mke2fs -d`.
fn flat_dir(dibr: &str, dir: &Path, runs: usize) -> String {
    // A flat directory of 100 000 empty files.
    let flat = dir.join("flat");
    let _ = std::fs::remove_dir_all(&flat);
    std::fs::create_dir_all(flat.join("d")).unwrap();
    for i in 0..100_000 {
        std::fs::write(flat.join(format!("d/file-{i:06}")), b"").unwrap();
    }
    let flat_tar = dir.join("flat.tar");
    sh(Command::new("tar")
        .arg("-C")
        .arg(&flat)
        .arg("-cf")
        .arg(&flat_tar)
        .arg("."));
    let (mut fd, mut fm) = (Vec::new(), Vec::new());
    for i in 0..runs {
        fd.push(timed(|| {
            sh(Command::new(dibr)
                .args(["mkfs", "--from"])
                .arg(&flat_tar)
                .arg("-o")
                .arg(dir.join("flat.img")))
        }));
        // mke2fs -d is quadratic in a flat directory (minutes at 100k): once.
        if i > 0 {
            continue;
        }
        fm.push(timed(|| {
            sh(Command::new("mke2fs")
                .args(["-q", "-F", "-t", "ext4", "-b", "4096", "-N", "120000", "-d"])
                .arg(&flat)
                .arg(dir.join("flat-mk.img"))
                .arg("1G"));
        }));
    }
    let (d, m) = (median(fd), median(fm));
    println!("flat 100 000-entry directory, medians:");
    println!("  dibr mkfs (tar)                  {d:7.2} s   (target < 2 s)");
    println!(
        "  mke2fs -d (dir)                  {m:7.2} s   ratio {:.1}x",
        m / d
    );
    let json = format!(
        "{{\"case\":\"flat-100k\",\"dibr_s\":{d:.3},\"mke2fs_d_s\":{m:.3},\"ratio\":{:.2}}}",
        m / d
    );
    let _ = std::fs::remove_dir_all(&flat);
    for f in ["flat.tar", "flat.img", "flat-mk.img"] {
        let _ = std::fs::remove_file(dir.join(f));
    }
    json
}

/// 100 000 small files in an extracted tree: `dibr mkfs --from DIR`
/// (fsyncs) against `mke2fs -d DIR` plus an fsync of its image, interleaved.
fn small_files(dibr: &str, dir: &Path, runs: usize) -> String {
    let tree = dir.join("small");
    let _ = std::fs::remove_dir_all(&tree);
    for i in 0..100_000 {
        let d = tree.join(format!("d{:05}", i / 1000));
        if i % 1000 == 0 {
            std::fs::create_dir_all(&d).unwrap();
        }
        std::fs::write(
            d.join(format!("file-{i:07}")),
            format!("file {i}\n").repeat(3),
        )
        .unwrap();
    }
    let (img_d, img_m) = (dir.join("small-dibr.img"), dir.join("small-mk.img"));
    let (mut td, mut tm) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let _ = std::fs::remove_file(&img_d);
        td.push(timed(|| {
            sh(Command::new(dibr)
                .args(["mkfs", "--from"])
                .arg(&tree)
                .arg("-o")
                .arg(&img_d))
        }));
        let _ = std::fs::remove_file(&img_m);
        tm.push(timed(|| {
            sh(Command::new("mke2fs")
                .args(["-q", "-F", "-t", "ext4", "-b", "4096", "-N", "120000", "-d"])
                .arg(&tree)
                .arg(&img_m)
                .arg("2G"));
            std::fs::File::open(&img_m).unwrap().sync_all().unwrap();
        }));
    }
    let (d, m) = (median(td), median(tm));
    println!("extracted tree of 100 000 small files, {runs} runs, medians:");
    println!("  dibr mkfs --from DIR             {d:7.2} s");
    println!(
        "  mke2fs -d DIR (+ fsync)          {m:7.2} s   ratio {:.1}x (target >= 4x)",
        m / d
    );
    let _ = std::fs::remove_dir_all(&tree);
    let _ = std::fs::remove_file(&img_d);
    let _ = std::fs::remove_file(&img_m);
    format!(
        "{{\"case\":\"small-files-100k-dir\",\"dibr_s\":{d:.3},\"mke2fs_d_s\":{m:.3},\"ratio\":{:.2}}}",
        m / d
    )
}

/// A tar of `n` small files (28-36 bytes), 1 000 per directory.
fn small_files_tar(path: &Path, n: usize) {
    let mut b = tar::Builder::new(std::io::BufWriter::new(
        std::fs::File::create(path).unwrap(),
    ));
    for i in 0..n {
        let d = format!("d{:04}", i / 1000);
        if i % 1000 == 0 {
            let mut h = tar::Header::new_ustar();
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
            h.set_mtime(1_700_000_000);
            h.set_size(0);
            b.append_data(&mut h, &d, std::io::empty()).unwrap();
        }
        let data = format!("file {i} {}", "x".repeat(36));
        let data = &data.as_bytes()[..28 + i % 9];
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, format!("{d}/f{:04}", i % 1000), data)
            .unwrap();
    }
    b.finish().unwrap();
}

/// 1 000 000 small files: `dibr mkfs --from TAR` (wall and max RSS) against
/// `dd` writing and fsyncing the bytes dibr's image holds, interleaved.
fn million_small_files(dibr: &str, dir: &Path, runs: usize) -> String {
    let tar = dir.join("million.tar");
    if !tar.exists() {
        // Complete or absent: an interrupted run leaves only the .part.
        let part = dir.join("million.tar.part");
        small_files_tar(&part, 1_000_000);
        std::fs::rename(&part, &tar).unwrap();
    }
    let (img, floor, rss) = (
        dir.join("million.img"),
        dir.join("million-floor.img"),
        dir.join("million.rss"),
    );
    let (mut td, mut tf, mut rss_kib) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        let _ = std::fs::remove_file(&img);
        td.push(timed(|| {
            sh(Command::new("/usr/bin/time")
                .args(["-f", "%M", "-o"])
                .arg(&rss)
                .arg(dibr)
                .args(["mkfs", "--from"])
                .arg(&tar)
                .arg("-o")
                .arg(&img))
        }));
        let text = std::fs::read_to_string(&rss).unwrap();
        rss_kib.push(
            text.trim()
                .lines()
                .last()
                .unwrap()
                .trim()
                .parse::<u64>()
                .unwrap(),
        );
        let used_mib =
            (std::os::unix::fs::MetadataExt::blocks(&std::fs::metadata(&img).unwrap()) * 512) >> 20;
        let _ = std::fs::remove_file(&floor);
        tf.push(timed(|| {
            sh(Command::new("dd")
                .arg("if=/dev/zero")
                .arg(format!("of={}", floor.display()))
                .args(["bs=1M", "conv=fsync", "status=none"])
                .arg(format!("count={used_mib}")))
        }));
    }
    let (d, f) = (median(td), median(tf));
    let max_rss = rss_kib.iter().max().copied().unwrap_or(0) >> 10;
    println!("1 000 000 small files from a tar, {runs} runs, medians:");
    println!("  dibr mkfs --from TAR             {d:7.2} s   max RSS {max_rss} MiB (targets <= 10 s, <= 256 MiB)");
    println!(
        "  dd + fsync of as many bytes      {f:7.2} s   ratio {:.2}x",
        f / d
    );
    for p in [&img, &floor, &rss] {
        let _ = std::fs::remove_file(p);
    }
    format!(
        "{{\"case\":\"small-files-1m-tar\",\"dibr_s\":{d:.3},\"dd_s\":{f:.3},\"max_rss_mib\":{max_rss},\"ratio\":{:.2}}}",
        f / d
    )
}
