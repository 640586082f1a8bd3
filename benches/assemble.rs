//! `cargo bench --bench assemble`: a root tarball into a bootable efi-layout
//! qcow2, dibr against the shell pipeline a rootless user would run today
//! (`benches/assemble-pipeline.sh`: `tar -x` in `unshare`, `mke2fs -d`,
//! `mkfs.fat` + `mcopy`, `sgdisk`, `grub-mkimage` + boot code, `qemu-img
//! convert -c`), in one run, same input, same machine.
//!
//! Input: `DIBR_BENCH_BOOT_TAR` (default /var/tmp/dibr-bench/boot-root.tar),
//! a Debian root tarball with a kernel and GRUB/shim, e.g.
//! `mmdebstrap --variant=apt --include=linux-image-amd64,systemd-sysv,udev,
//! initramfs-tools,grub-pc-bin,grub-efi-amd64-bin,shim-signed,
//! grub-efi-amd64-signed,openssh-server,cloud-init,python3,curl,less,vim-tiny
//! bookworm boot-root.tar` (~850 MB).
//! Both contenders run as an ordinary user: when the bench runs as root it
//! switches to `DIBR_BENCH_USER` (default dibr-ci, which needs a subuid
//! range) with setpriv. `DIBR_BENCH_RUNS` (default 3) runs each, after a
//! `sync`; work in `DIBR_BENCH_DIR` (default /var/tmp/dibr-bench/assemble).
//! Prints medians, the speed ratio, the qcow2 sizes (and qemu-img's
//! conversion of dibr's own raw disk, for a same-disk size comparison).
//! Under `cargo test` (no `--bench` argument) it does nothing.

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::{is_root, median, sh, timed, user_cmd};

/// The pipeline needs GRUB's i386-pc directory on its PATH.
const PIPELINE_PATH: &str = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin:/usr/lib/grub/i386-pc";

fn size(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("assemble bench: skipped (run `cargo bench --bench assemble`)");
        return;
    }
    let tarball = PathBuf::from(
        std::env::var("DIBR_BENCH_BOOT_TAR")
            .unwrap_or_else(|_| "/var/tmp/dibr-bench/boot-root.tar".into()),
    );
    if !tarball.is_file() {
        println!(
            "assemble bench: no input tarball {} (see the header of benches/assemble.rs)",
            tarball.display()
        );
        return;
    }
    let runs: usize = std::env::var("DIBR_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let dir = PathBuf::from(
        std::env::var("DIBR_BENCH_DIR").unwrap_or_else(|_| "/var/tmp/dibr-bench/assemble".into()),
    );
    let user = if is_root() {
        Some(std::env::var("DIBR_BENCH_USER").unwrap_or_else(|_| "dibr-ci".into()))
    } else {
        None
    };
    std::fs::create_dir_all(&dir).unwrap();
    // The user needs the binary, the script and a directory of its own.
    let dibr = dir.join("dibr");
    std::fs::copy(env!("CARGO_BIN_EXE_dibr"), &dibr).unwrap();
    let script = dir.join("assemble-pipeline.sh");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/assemble-pipeline.sh"),
        &script,
    )
    .unwrap();
    if let Some(u) = &user {
        sh(Command::new("chown").args(["-R", u]).arg(&dir));
    }
    let u = user.as_deref();
    let shell = PathBuf::from("/bin/sh");

    let (mut td, mut tp) = (Vec::new(), Vec::new());
    let dibr_out = dir.join("dibr");
    let dibr_q = dir.join("dibr.qcow2");
    let pipe_q = dir.join("pipeline.qcow2");
    for i in 0..runs {
        let _ = std::fs::remove_file(&dibr_q);
        td.push(timed(|| {
            sh(user_cmd(u, &dibr, &[("PATH", PIPELINE_PATH)])
                .args(["assemble", "--layout", "efi", "-t", "qcow2", "--from"])
                .arg(&tarball)
                .arg("-o")
                .arg(&dibr_out));
        }));
        let _ = std::fs::remove_file(&pipe_q);
        tp.push(timed(|| {
            sh(user_cmd(u, &shell, &[("PATH", PIPELINE_PATH)])
                .arg(&script)
                .arg(&tarball)
                .arg(dir.join("pipeline-work"))
                .arg(&pipe_q));
        }));
        println!(
            "run {}: dibr {:.2} s, pipeline {:.2} s",
            i + 1,
            td[i],
            tp[i]
        );
    }
    // Same-disk size check: qemu-img's conversion of dibr's own raw disk.
    let raw = dir.join("dibr.raw");
    let _ = std::fs::remove_file(&raw);
    sh(user_cmd(u, &dibr, &[("PATH", PIPELINE_PATH)])
        .args(["assemble", "--layout", "efi", "-t", "raw", "--from"])
        .arg(&tarball)
        .arg("-o")
        .arg(&dibr_out));
    let qi = dir.join("qemu-img-of-dibr-raw.qcow2");
    let _ = std::fs::remove_file(&qi);
    sh(Command::new("qemu-img")
        .args(["convert", "-c", "-f", "raw", "-O", "qcow2"])
        .arg(&raw)
        .arg(&qi));
    let _ = std::fs::remove_file(&raw);

    let (md, mp) = (median(td), median(tp));
    println!(
        "input {} ({} MB), {runs} runs, medians:",
        tarball.display(),
        size(&tarball) / 1_000_000
    );
    println!("  dibr assemble -t qcow2      {md:8.2} s");
    println!("  shell pipeline (rootless)   {mp:8.2} s");
    println!("  ratio pipeline/dibr         {:8.2}x", mp / md);
    println!(
        "  qcow2 bytes: dibr {}, pipeline {}, qemu-img -c of dibr's raw {}",
        size(&dibr_q),
        size(&pipe_q),
        size(&qi)
    );
    let json = format!(
        "{{\"input_bytes\":{},\"runs\":{runs},\"dibr_s\":{md:.3},\"pipeline_s\":{mp:.3},\"ratio\":{:.3},\"dibr_qcow2\":{},\"pipeline_qcow2\":{},\"qemu_img_of_dibr_raw\":{}}}\n",
        size(&tarball),
        mp / md,
        size(&dibr_q),
        size(&pipe_q),
        size(&qi)
    );
    std::fs::write(dir.join("result.json"), json).unwrap();
}
