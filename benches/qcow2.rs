//! `cargo bench --bench qcow2`: dibr's raw → qcow2 (-c) and vhd writers
//! against `qemu-img convert`, on a generated sparse image (256 MiB of
//! mixed text/random data in a 1 GiB file; `DIBR_BENCH_QCOW2_MIB` sets the
//! data amount). Prints medians of `DIBR_BENCH_RUNS` (default 5)
//! interleaved runs, the ratios, output sizes and the load average.
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

/// Medians of `DIBR_BENCH_RUNS` (default 5) interleaved runs of `ours`
/// and `theirs` (A, B, A, B …), so load that comes and goes hits both.
fn ab(mut ours: impl FnMut(), mut theirs: impl FnMut()) -> (f64, f64) {
    let runs: usize = std::env::var("DIBR_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let time = |f: &mut dyn FnMut()| {
        let t = Instant::now();
        f();
        t.elapsed().as_secs_f64()
    };
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        a.push(time(&mut ours));
        b.push(time(&mut theirs));
    }
    let med = |mut v: Vec<f64>| {
        v.sort_by(|x, y| x.partial_cmp(y).unwrap());
        v[v.len() / 2]
    };
    (med(a), med(b))
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
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
    println!("load before: {}", loadavg());
    let (t_ours, t_qemu) = ab(
        || {
            write_qcow2(&raw, &d("a.qcow2"), &Qcow2Options::default()).unwrap();
        },
        || {
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
        },
    );
    println!(
        "qcow2 -c: dibr {t_ours:.2}s {} bytes | qemu-img {t_qemu:.2}s {} bytes | ratio {:.2}x",
        size(&d("a.qcow2")),
        size(&d("b.qcow2")),
        t_qemu / t_ours
    );
    // compression_type=zstd (qemu >= 5.1): the same comparison.
    let zstd = Qcow2Options {
        compression: Qcow2Compression::Zstd,
        ..Default::default()
    };
    let (t_ours, t_qemu) = ab(
        || {
            write_qcow2(&raw, &d("a-zstd.qcow2"), &zstd).unwrap();
        },
        || {
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
        },
    );
    println!(
        "qcow2 -c zstd: dibr {t_ours:.2}s {} bytes | qemu-img {t_qemu:.2}s {} bytes | ratio {:.2}x",
        size(&d("a-zstd.qcow2")),
        size(&d("b-zstd.qcow2")),
        t_qemu / t_ours
    );
    let (t_ours, t_qemu) = ab(
        || write_vhd(&raw, &d("a.vhd")).unwrap(),
        || {
            qemu(&[
                "convert",
                "-f",
                "raw",
                "-O",
                "vpc",
                &s(&raw),
                &s(&d("b.vhd")),
            ])
        },
    );
    println!(
        "vhd: dibr {t_ours:.2}s {} bytes | qemu-img {t_qemu:.2}s {} bytes | ratio {:.2}x",
        size(&d("a.vhd")),
        size(&d("b.vhd")),
        t_qemu / t_ours
    );
    println!("load after: {}", loadavg());
}
