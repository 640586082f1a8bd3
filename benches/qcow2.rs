//! `cargo bench --bench qcow2`: dibr's raw → qcow2 (-c) and vhd writers
//! against `qemu-img convert`, on a generated sparse image (256 MiB of
//! mixed text/random data in a 1 GiB file; `DIBR_BENCH_QCOW2_MIB` sets the
//! data amount). Prints median times of 3 runs and output sizes.
//! Under `cargo test` (no `--bench` argument) it does nothing.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use dibr::output::qcow2::{write_qcow2, Qcow2Compression, Qcow2Options};
use dibr::output::vhd::write_vhd;

const MIB: u64 = 1 << 20;

fn make_raw(p: &Path, data_mib: u64) {
    let f = File::create(p).unwrap();
    f.set_len(4 * data_mib * MIB).unwrap();
    let mut x: u64 = 88172645463325252;
    let mut chunk = vec![0u8; MIB as usize];
    for m in 0..data_mib {
        for (i, b) in chunk.iter_mut().enumerate() {
            *b = if m % 2 == 0 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            } else {
                b"the quick brown fox jumps over the lazy dog\n"[(i + m as usize) % 44]
            };
        }
        f.write_all_at(&chunk, m * 4 * MIB).unwrap();
    }
}

fn median(mut f: impl FnMut()) -> f64 {
    let mut v: Vec<f64> = (0..3)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .collect();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[1]
}

fn qemu(args: &[&str]) {
    let st = Command::new("qemu-img").args(args).status().unwrap();
    assert!(st.success(), "qemu-img {args:?}");
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let mib = std::env::var("DIBR_BENCH_QCOW2_MIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(256);
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("disk.raw");
    make_raw(&raw, mib);
    let d = |n: &str| dir.path().join(n);
    let s = |p: &Path| p.to_str().unwrap().to_owned();
    let size = |p: &Path| std::fs::metadata(p).unwrap().len();
    let t_ours = median(|| {
        write_qcow2(&raw, &d("a.qcow2"), &Qcow2Options::default()).unwrap();
    });
    let t_qemu = median(|| {
        qemu(&[
            "convert",
            "-c",
            "-f",
            "raw",
            "-O",
            "qcow2",
            &s(&raw),
            &s(&d("b.qcow2")),
        ])
    });
    println!(
        "qcow2 -c: dibr {t_ours:.2}s {} bytes | qemu-img {t_qemu:.2}s {} bytes",
        size(&d("a.qcow2")),
        size(&d("b.qcow2"))
    );
    // compression_type=zstd (qemu >= 5.1): the same comparison.
    let zstd = Qcow2Options {
        compression: Qcow2Compression::Zstd,
        ..Default::default()
    };
    let t_ours = median(|| {
        write_qcow2(&raw, &d("a-zstd.qcow2"), &zstd).unwrap();
    });
    let t_qemu = median(|| {
        qemu(&[
            "convert",
            "-c",
            "-o",
            "compression_type=zstd",
            "-f",
            "raw",
            "-O",
            "qcow2",
            &s(&raw),
            &s(&d("b-zstd.qcow2")),
        ])
    });
    println!(
        "qcow2 -c zstd: dibr {t_ours:.2}s {} bytes | qemu-img {t_qemu:.2}s {} bytes | ratio {:.2}x",
        size(&d("a-zstd.qcow2")),
        size(&d("b-zstd.qcow2")),
        t_qemu / t_ours
    );
    let t_ours = median(|| write_vhd(&raw, &d("a.vhd")).unwrap());
    let t_qemu = median(|| {
        qemu(&[
            "convert",
            "-f",
            "raw",
            "-O",
            "vpc",
            &s(&raw),
            &s(&d("b.vhd")),
        ])
    });
    println!(
        "vhd: dibr {t_ours:.2}s {} bytes | qemu-img {t_qemu:.2}s {} bytes",
        size(&d("a.vhd")),
        size(&d("b.vhd"))
    );
}
