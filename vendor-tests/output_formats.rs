//! qcow2, vhd and streamOptimized vmdk outputs written by dibr itself, judged by the real
//! qemu-img: `check` (qcow2), `compare` against the raw input, `info`
//! (format and virtual size); compressed size against `qemu-img convert -c`.

mod common;
use common::*;

use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use dibr::output::qcow2::{write_qcow2, Qcow2Options};
use dibr::output::vhd::{vpc_size, write_vhd};
use dibr::output::vmdk::write_vmdk;
use sha2::{Digest, Sha256};

const MIB: u64 = 1 << 20;

/// 256 MiB sparse raw image: random 1 MiB, an explicitly written zero
/// MiB, 4 MiB of compressible text, an unaligned random fragment and the
/// last sector.
fn make_raw(path: &Path) {
    let f = File::create(path).unwrap();
    f.set_len(256 * MIB).unwrap();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rnd = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 32) as u8
            })
            .collect()
    };
    f.write_all_at(&rnd(MIB as usize), MIB).unwrap();
    f.write_all_at(&vec![0u8; MIB as usize], 64 * MIB).unwrap();
    let mut text = String::new();
    let mut i = 0u64;
    while text.len() < 4 * MIB as usize {
        text.push_str(&format!(
            "line {i}: the quick brown fox jumps over the lazy dog {}\n",
            i * 7919 % 1000
        ));
        i += 1;
    }
    f.write_all_at(&text.as_bytes()[..4 * MIB as usize], 100 * MIB)
        .unwrap();
    f.write_all_at(&rnd(1000), 150 * MIB + 12345).unwrap();
    f.write_all_at(&[0xab; 512], 256 * MIB - 512).unwrap();
}

fn qemu_img(args: &[&dyn AsRef<std::ffi::OsStr>]) -> (bool, String) {
    let mut c = Command::new("qemu-img");
    for a in args {
        c.arg(a);
    }
    let o = run(&mut c);
    (o.status.success(), out_text(&o))
}

fn info(img: &Path, fmt: &str) -> serde_json::Value {
    let (ok, out) = qemu_img(&[&"info", &"--output=json", &"-f", &fmt, &img]);
    assert!(ok, "qemu-img info {img:?}: {out}");
    let json = &out[out.find('{').unwrap()..=out.rfind('}').unwrap()];
    serde_json::from_str(json).unwrap()
}

/// The length of `qemu-img convert -c` of `raw` into `out`, with `-o opts`
/// when given: the size dibr's compressed qcow2 is held to.
fn qemu_compressed_len(raw: &Path, out: &Path, opts: Option<&str>) -> u64 {
    let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> =
        vec![&"convert", &"-c", &"-f", &"raw", &"-O", &"qcow2"];
    if let Some(o) = &opts {
        args.extend([&"-o" as &dyn AsRef<std::ffi::OsStr>, o]);
    }
    args.extend([&raw as &dyn AsRef<std::ffi::OsStr>, &out]);
    let (ok, text) = qemu_img(&args);
    assert!(ok, "{text}");
    fs::metadata(out).unwrap().len()
}

fn check_qcow2(raw: &Path, img: &Path) {
    check_qcow2_compat(raw, img, "1.1");
}

fn check_qcow2_compat(raw: &Path, img: &Path, compat: &str) {
    let (ok, out) = qemu_img(&[&"check", &"-f", &"qcow2", &img]);
    assert!(ok, "qemu-img check {img:?}: {out}");
    assert!(
        out.contains("No errors were found"),
        "qemu-img check: {out}"
    );
    assert!(!out.contains("leak"), "qemu-img check: {out}");
    let (ok, out) = qemu_img(&[&"compare", &"-f", &"raw", &"-F", &"qcow2", &raw, &img]);
    assert!(ok && out.contains("Images are identical"), "compare: {out}");
    let i = info(img, "qcow2");
    assert_eq!(i["format"], "qcow2");
    assert_eq!(
        i["virtual-size"].as_u64(),
        Some(fs::metadata(raw).unwrap().len())
    );
    assert_eq!(i["cluster-size"].as_u64(), Some(65536));
    assert_eq!(i["format-specific"]["data"]["compat"], compat);
}

fn check_vhd(raw: &Path, img: &Path, scratch: &Path) {
    let (ok, out) = qemu_img(&[&"compare", &"-f", &"raw", &"-F", &"vpc", &raw, &img]);
    assert!(ok && out.contains("Images are identical"), "compare: {out}");
    let ours = info(img, "vpc");
    assert_eq!(ours["format"], "vpc");
    // qemu's own conversion: same virtual size (rounded up to CHS geometry).
    let theirs_p = scratch.join("qemu.vhd");
    let (ok, out) = qemu_img(&[&"convert", &"-f", &"raw", &"-O", &"vpc", &raw, &theirs_p]);
    assert!(ok, "qemu-img convert -O vpc: {out}");
    let theirs = info(&theirs_p, "vpc");
    let size = fs::metadata(raw).unwrap().len();
    println!(
        "vhd: raw {size}, ours virtual {} ({} bytes on disk), qemu-img virtual {} ({} bytes)",
        ours["virtual-size"],
        fs::metadata(img).unwrap().len(),
        theirs["virtual-size"],
        fs::metadata(&theirs_p).unwrap().len()
    );
    assert_eq!(ours["virtual-size"], theirs["virtual-size"]);
    assert_eq!(ours["virtual-size"].as_u64(), Some(vpc_size(size).3 * 512));
    assert!(ours["virtual-size"].as_u64().unwrap() >= size);
}

/// `qemu-img check` and `compare` against the raw input; `info` says
/// streamOptimized with the raw size; the size is near qemu's own
/// `convert -O vmdk -o subformat=streamOptimized`.
fn check_vmdk(raw: &Path, img: &Path, scratch: &Path) {
    let (ok, out) = qemu_img(&[&"check", &"-f", &"vmdk", &img]);
    assert!(
        ok && out.contains("No errors were found"),
        "qemu-img check {img:?}: {out}"
    );
    let (ok, out) = qemu_img(&[&"compare", &"-f", &"raw", &"-F", &"vmdk", &raw, &img]);
    assert!(ok && out.contains("Images are identical"), "compare: {out}");
    let ours = info(img, "vmdk");
    assert_eq!(ours["format"], "vmdk");
    assert_eq!(
        ours["format-specific"]["data"]["create-type"],
        "streamOptimized"
    );
    let size = fs::metadata(raw).unwrap().len();
    assert_eq!(
        ours["virtual-size"].as_u64(),
        Some(size.next_multiple_of(512))
    );
    let theirs_p = scratch.join("qemu.vmdk");
    let (ok, out) = qemu_img(&[
        &"convert",
        &"-f",
        &"raw",
        &"-O",
        &"vmdk",
        &"-o",
        &"subformat=streamOptimized",
        &raw,
        &theirs_p,
    ]);
    assert!(ok, "qemu-img convert -O vmdk: {out}");
    let (o, t) = (
        fs::metadata(img).unwrap().len(),
        fs::metadata(&theirs_p).unwrap().len(),
    );
    println!("vmdk: raw {size}, dibr {o} bytes, qemu-img convert {t} bytes");
    assert!(
        o as f64 <= t as f64 * 1.05 + 65536.0,
        "dibr {o} vs qemu {t}"
    );
}

fn sha(p: &Path) -> String {
    let mut h = Sha256::new();
    h.update(fs::read(p).unwrap());
    format!("{:x}", h.finalize())
}

fn setup(test: &str) -> Option<(tempfile::TempDir, PathBuf)> {
    if !require(test, false, &["qemu-img"]) {
        return None;
    }
    let d = scratch(test);
    let raw = d.path().join("disk.raw");
    Some((d, raw))
}

#[test]
fn qcow2_compressed_vs_qemu() {
    let Some((d, raw)) = setup("qcow2_compressed_vs_qemu") else {
        return;
    };
    make_raw(&raw);
    let img = d.path().join("dibr.qcow2");
    let st = write_qcow2(&raw, &img, &Qcow2Options::default()).unwrap();
    println!("{st:?}");
    check_qcow2(&raw, &img);
    assert!(st.clusters_compressed > 0 && st.clusters_raw > 0, "{st:?}");
    let theirs = qemu_compressed_len(&raw, &d.path().join("qemu.qcow2"), None);
    let ours = fs::metadata(&img).unwrap().len();
    println!("qcow2 -c: dibr {ours} bytes, qemu-img convert -c {theirs} bytes");
    // This disk's text is one line pattern repeated, where zlib-rs's deflate
    // ends up 0.06 % larger than zlib's (a real file system's text is
    // smaller: `qcow2_zstd_as_qemu_img_options_ask` and the assemble bench
    // hold dibr to `<=` there); 0.1 % here.
    assert!(
        ours * 1000 <= theirs * 1001,
        "dibr {ours} > qemu-img convert -c {theirs} + 0.1 %"
    );
    // Determinism.
    let img2 = d.path().join("dibr2.qcow2");
    write_qcow2(&raw, &img2, &Qcow2Options::default()).unwrap();
    assert_eq!(sha(&img), sha(&img2));
}

/// nodepool passes `--qemu-img-options compat=0.10` for every qcow2: qcow2
/// version 2, judged by qemu-img (check, compare, info's compat), written
/// by `dibr assemble` as DIB's option asks; other qemu-img keys are
/// refused by name.
#[test]
fn qcow2_compat_0_10_as_nodepool_asks() {
    let test = "qcow2_compat_0_10_as_nodepool_asks";
    let Some((d, raw)) = setup(test) else {
        return;
    };
    make_raw(&raw);
    let v2 = d.path().join("v2.qcow2");
    let opts = Qcow2Options {
        compat: dibr::output::qcow2::Qcow2Compat::V2,
        ..Default::default()
    };
    write_qcow2(&raw, &v2, &opts).unwrap();
    check_qcow2_compat(&raw, &v2, "0.10");
    // Through the command line, as nodepool's disk-image-create passes it.
    let tar = d.path().join("tree.tar");
    run_ok(
        Command::new("tar")
            .arg("-cf")
            .arg(&tar)
            .arg("-C")
            .arg(env!("CARGO_MANIFEST_DIR"))
            .arg("src"),
    );
    let name = d.path().join("nodepool");
    let o = run(Command::new(dibr_bin())
        .args([
            "assemble",
            "--layout",
            "mbr",
            "-t",
            "raw,qcow2",
            "--qemu-img-options",
            "compat=0.10",
            "--from",
        ])
        .arg(&tar)
        .arg("-o")
        .arg(&name));
    assert!(o.status.success(), "{test}: {}", out_text(&o));
    check_qcow2_compat(
        &d.path().join("nodepool.raw"),
        &d.path().join("nodepool.qcow2"),
        "0.10",
    );
    let o = run(Command::new(dibr_bin())
        .args([
            "assemble",
            "-t",
            "qcow2",
            "--qemu-img-options",
            "compat=0.10,cluster_size=2M",
            "--from",
        ])
        .arg(&tar)
        .arg("-o")
        .arg(d.path().join("refused")));
    let text = out_text(&o);
    assert!(
        !o.status.success() && text.contains("cluster_size is not supported"),
        "{test}: {text}"
    );
    assert!(
        !d.path().join("refused.qcow2").exists(),
        "{test}: output despite the refusal"
    );
}

/// `--qemu-img-options compression_type=zstd` (DIB's option, qemu ≥ 5.1):
/// qemu-img checks and compares the file, `info` says zstd, the file is
/// no larger than `qemu-img convert -c -o compression_type=zstd` of the
/// same raw, and the same input gives the same bytes; with compat=0.10
/// it is refused before any output.
#[test]
fn qcow2_zstd_as_qemu_img_options_ask() {
    let test = "qcow2_zstd_as_qemu_img_options_ask";
    let Some((d, raw)) = setup(test) else {
        return;
    };
    make_raw(&raw);
    let tar = d.path().join("tree.tar");
    run_ok(
        Command::new("tar")
            .arg("-cf")
            .arg(&tar)
            .arg("-C")
            .arg(env!("CARGO_MANIFEST_DIR"))
            .arg("src"),
    );
    let assemble = |name: &str, opts: &str| {
        run(Command::new(dibr_bin())
            .args(["assemble", "--layout", "mbr", "-t", "raw,qcow2"])
            .args(["--qemu-img-options", opts, "--from"])
            .arg(&tar)
            .arg("-o")
            .arg(d.path().join(name))
            .env("SOURCE_DATE_EPOCH", "1700000000"))
    };
    for name in ["z1", "z2"] {
        let o = assemble(name, "compression_type=zstd");
        assert!(o.status.success(), "{test}: {}", out_text(&o));
    }
    let (raw1, img1) = (d.path().join("z1.raw"), d.path().join("z1.qcow2"));
    check_qcow2(&raw1, &img1);
    let i = info(&img1, "qcow2");
    assert_eq!(
        i["format-specific"]["data"]["compression-type"], "zstd",
        "{test}: {i}"
    );
    assert_eq!(
        sha(&img1),
        sha(&d.path().join("z2.qcow2")),
        "{test}: not reproducible"
    );
    let theirs = d.path().join("qemu-zstd.qcow2");
    let theirs = qemu_compressed_len(&raw1, &theirs, Some("compression_type=zstd"));
    let ours = fs::metadata(&img1).unwrap().len();
    println!("{test}: zstd qcow2 ours {ours} bytes, qemu-img's {theirs}");
    assert!(ours <= theirs, "{test}: ours {ours} > qemu-img's {theirs}");
    // zlib stays the default: no compression-type change without asking;
    // on this file system too (dibr's source tree: text) the deflate
    // clusters are no larger than qemu-img's own.
    let o = assemble("zl", "compat=1.1");
    assert!(o.status.success(), "{test}: {}", out_text(&o));
    let zl = d.path().join("zl.qcow2");
    let i = info(&zl, "qcow2");
    assert_eq!(i["format-specific"]["data"]["compression-type"], "zlib");
    check_qcow2(&d.path().join("zl.raw"), &zl);
    let theirs = d.path().join("qemu-zlib.qcow2");
    let theirs = qemu_compressed_len(&d.path().join("zl.raw"), &theirs, None);
    let ours = fs::metadata(&zl).unwrap().len();
    println!("{test}: deflate qcow2 ours {ours} bytes, qemu-img's {theirs}");
    assert!(
        ours <= theirs,
        "{test}: deflate: ours {ours} > qemu-img's {theirs}"
    );
    let o = assemble("v2", "compat=0.10,compression_type=zstd");
    let text = out_text(&o);
    assert!(
        !o.status.success() && text.contains("compression_type=zstd needs qcow2 version 3"),
        "{test}: {text}"
    );
    assert!(!d.path().join("v2.qcow2").exists() && !d.path().join("v2.raw").exists());
}

#[test]
fn qcow2_uncompressed() {
    let Some((d, raw)) = setup("qcow2_uncompressed") else {
        return;
    };
    make_raw(&raw);
    let img = d.path().join("dibr.qcow2");
    let opts = Qcow2Options {
        compress: false,
        ..Default::default()
    };
    let st = write_qcow2(&raw, &img, &opts).unwrap();
    println!("{st:?}");
    assert_eq!(st.clusters_compressed, 0);
    assert!(st.clusters_zero >= 16, "explicit zero MiB skipped: {st:?}");
    check_qcow2(&raw, &img);
    let refp = d.path().join("qemu.qcow2");
    let (ok, out) = qemu_img(&[&"convert", &"-f", &"raw", &"-O", &"qcow2", &raw, &refp]);
    assert!(ok, "{out}");
    let (ours, theirs) = (
        fs::metadata(&img).unwrap().len(),
        fs::metadata(&refp).unwrap().len(),
    );
    println!("qcow2 -u: dibr {ours} bytes, qemu-img convert {theirs} bytes");
    assert!(ours as f64 <= theirs as f64 * 1.02);
    let img2 = d.path().join("dibr2.qcow2");
    write_qcow2(&raw, &img2, &opts).unwrap();
    assert_eq!(sha(&img), sha(&img2));
}

#[test]
fn vhd_dynamic() {
    let Some((d, raw)) = setup("vhd_dynamic") else {
        return;
    };
    make_raw(&raw);
    let img = d.path().join("dibr.vhd");
    write_vhd(&raw, &img).unwrap();
    check_vhd(&raw, &img, d.path());
    let img2 = d.path().join("dibr2.vhd");
    write_vhd(&raw, &img2).unwrap();
    assert_eq!(sha(&img), sha(&img2));
}

#[test]
fn all_hole_image() {
    let Some((d, raw)) = setup("all_hole_image") else {
        return;
    };
    File::create(&raw)
        .unwrap()
        .set_len(64 * MIB + 4096)
        .unwrap();
    for compress in [true, false] {
        let img = d.path().join(format!("hole-{compress}.qcow2"));
        let st = write_qcow2(
            &raw,
            &img,
            &Qcow2Options {
                compress,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(st.clusters_read, 0, "{st:?}");
        check_qcow2(&raw, &img);
        println!("all-hole qcow2: {} bytes", st.file_size);
    }
    let img = d.path().join("hole.vhd");
    write_vhd(&raw, &img).unwrap();
    check_vhd(&raw, &img, d.path());
}

#[test]
fn errors_name_the_file() {
    let d = scratch("errors_name_the_file");
    let missing = d.path().join("nope.raw");
    let e = write_qcow2(
        &missing,
        &d.path().join("x.qcow2"),
        &Qcow2Options::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("nope.raw"), "{e}");
    let e = write_vhd(&missing, &d.path().join("x.vhd")).unwrap_err();
    assert!(e.to_string().contains("nope.raw"), "{e}");
    assert!(!d.path().join("x.qcow2").exists());
}

/// Several L2 tables (data in every 512 MiB slice), compressed clusters
/// straddling host clusters, and a size that is not a cluster multiple
/// with data in the partial last cluster.
#[test]
fn qcow2_multi_l2_odd_size() {
    let Some((d, raw)) = setup("qcow2_multi_l2_odd_size") else {
        return;
    };
    let size = 1536 * MIB + 3 * 512;
    let f = File::create(&raw).unwrap();
    f.set_len(size).unwrap();
    for (k, off) in [0, 511 * MIB + 777, 512 * MIB, 1100 * MIB, size - 1000]
        .into_iter()
        .enumerate()
    {
        let chunk: Vec<u8> = (0..(if off + 300_000 > size { 1000 } else { 300_000 }))
            .map(|i: usize| ((i * (k + 3)) % 251) as u8 ^ (i / 4096) as u8)
            .collect();
        f.write_all_at(&chunk, off).unwrap();
    }
    drop(f);
    for compress in [true, false] {
        let img = d.path().join(format!("m-{compress}.qcow2"));
        let st = write_qcow2(
            &raw,
            &img,
            &Qcow2Options {
                compress,
                ..Default::default()
            },
        )
        .unwrap();
        println!("{st:?}");
        check_qcow2(&raw, &img);
    }
    let img = d.path().join("m.vhd");
    write_vhd(&raw, &img).unwrap();
    check_vhd(&raw, &img, d.path());
}

#[test]
fn vmdk_stream_optimized() {
    let Some((d, raw)) = setup("vmdk_stream_optimized") else {
        return;
    };
    make_raw(&raw);
    let img = d.path().join("dibr.vmdk");
    write_vmdk(&raw, &img).unwrap();
    check_vmdk(&raw, &img, d.path());
    // The same raw image gives the same file.
    let again = d.path().join("again");
    fs::create_dir(&again).unwrap();
    write_vmdk(&raw, &again.join("dibr.vmdk")).unwrap();
    assert_eq!(sha(&img), sha(&again.join("dibr.vmdk")));
}

/// Odd sizes: a hole-only disk (no grain, no grain table), and one whose
/// size is not a whole grain nor a whole grain table, data in the last
/// sector and across a grain-table boundary.
#[test]
fn vmdk_holes_and_odd_sizes() {
    let Some((d, raw)) = setup("vmdk_holes_and_odd_sizes") else {
        return;
    };
    File::create(&raw).unwrap().set_len(64 * MIB).unwrap();
    let img = d.path().join("hole.vmdk");
    write_vmdk(&raw, &img).unwrap();
    check_vmdk(&raw, &img, d.path());
    let odd = d.path().join("odd.raw");
    let f = File::create(&odd).unwrap();
    f.set_len(100 * MIB + 3 * 512).unwrap();
    f.write_all_at(&[0x5a; 4096], 32 * MIB - 2048).unwrap();
    f.write_all_at(&[0xa5; 512], 100 * MIB + 2 * 512).unwrap();
    drop(f);
    let img = d.path().join("odd.vmdk");
    write_vmdk(&odd, &img).unwrap();
    check_vmdk(&odd, &img, d.path());
}
