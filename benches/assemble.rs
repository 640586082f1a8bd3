//! `cargo bench --bench assemble`: a root tarball into a bootable efi-layout
//! qcow2, dibr against the shell pipeline a rootless user would run today
//! (`benches/assemble-pipeline.sh`: `tar -x` in `unshare`, `mke2fs -d`,
//! `mkfs.fat` + `mcopy`, `sgdisk`, `grub-mkimage` + boot code, `qemu-img
//! convert -c`), in one run, same input, same machine. Two rows (issue 18):
//! deflate (`dibr assemble -t qcow2` against the pipeline with `qemu-img
//! convert -c`) and zstd (`--qemu-img-options compression_type=zstd`
//! against `qemu-img convert -c -o compression_type=zstd`). The pipeline's
//! steps up to the raw disk are the same for both rows: they run once per
//! round (`assemble-pipeline.sh … -`) and each row adds its own timed
//! `qemu-img convert` of that raw disk.
//!
//! Input: `DIBR_BENCH_BOOT_TAR` (default /var/tmp/dibr-bench/boot-root.tar),
//! a Debian root tarball with a kernel and GRUB/shim, e.g.
//! `mmdebstrap --format=tar --variant=apt --include=linux-image-amd64,
//! systemd-sysv,udev,initramfs-tools,grub-pc-bin,grub-efi-amd64-bin,
//! shim-signed,grub-efi-amd64-signed,openssh-server,cloud-init,python3,curl,
//! less,vim-tiny bookworm boot-root.tar` (~850 MB).
//! Both contenders run as an ordinary user: when the bench runs as root it
//! switches to `DIBR_BENCH_USER` (default dibr-ci, which needs a subuid
//! range) with setpriv. `DIBR_BENCH_RUNS` (default 5) rounds, interleaved
//! (dibr deflate, pipeline, dibr zstd), each command after a `sync`; work in
//! `DIBR_BENCH_DIR` (default /var/tmp/dibr-bench/assemble).
//! Prints each round with the load average, medians, the speed ratios and
//! the qcow2 sizes next to `qemu-img convert -c` (and `-o
//! compression_type=zstd`) of dibr's own raw disk, and runs `qemu-img
//! check` and `qemu-img compare` (against that raw disk) on dibr's outputs.
//! Under `cargo test` (no `--bench` argument) it does nothing.

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::{is_root, median, sh, timed, user_cmd};

/// The pipeline needs GRUB's i386-pc directory on its PATH.
const PIPELINE_PATH: &str = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin:/usr/lib/grub/i386-pc";
const ZSTD: &str = "compression_type=zstd";

fn size(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Everything one run needs: who runs it, where, with what.
struct Bench {
    user: Option<String>,
    dir: PathBuf,
    dibr: PathBuf,
    script: PathBuf,
    tarball: PathBuf,
}

impl Bench {
    fn cmd(&self, prog: &Path) -> Command {
        user_cmd(self.user.as_deref(), prog, &[("PATH", PIPELINE_PATH)])
    }

    /// `dibr assemble -t TYPES` into `DIR/NAME.*`, with `--qemu-img-options`.
    fn dibr(&self, ty: &str, name: &str, qemu_opts: Option<&str>) {
        for t in ty.split(',') {
            let _ = std::fs::remove_file(self.dir.join(format!("{name}.{t}")));
        }
        let mut c = self.cmd(&self.dibr);
        c.args(["assemble", "--layout", "efi", "-t", ty]);
        if let Some(o) = qemu_opts {
            c.args(["--qemu-img-options", o]);
        }
        sh(c.arg("--from")
            .arg(&self.tarball)
            .arg("-o")
            .arg(self.dir.join(name)));
    }

    /// `qemu-img convert -c` (with `-o OPTS`) of `raw`, as the user.
    fn convert(&self, raw: &Path, out: &Path, opts: Option<&str>) {
        let _ = std::fs::remove_file(out);
        let mut c = self.cmd(Path::new("/usr/bin/qemu-img"));
        c.args(["convert", "-c", "-f", "raw", "-O", "qcow2"]);
        if let Some(o) = opts {
            c.args(["-o", o]);
        }
        sh(c.arg(raw).arg(out));
    }
}

fn setup() -> Option<(Bench, usize)> {
    if !std::env::args().any(|a| a == "--bench") {
        println!("assemble bench: skipped (run `cargo bench --bench assemble`)");
        return None;
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
        return None;
    }
    let runs: usize = std::env::var("DIBR_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
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
    Some((
        Bench {
            user,
            dir,
            dibr,
            script,
            tarball,
        },
        runs,
    ))
}

fn main() {
    let Some((b, runs)) = setup() else { return };
    let work = b.dir.join("pipeline-work");
    let pipe_raw = work.join("disk.raw");
    let (pipe_q, pipe_z) = (
        b.dir.join("pipeline.qcow2"),
        b.dir.join("pipeline-zstd.qcow2"),
    );
    let [mut td, mut tz, mut tr, mut tc, mut tcz] = [(); 5].map(|_| Vec::new());
    for i in 0..runs {
        let load = loadavg();
        td.push(timed(|| {
            b.dibr("qcow2", "dibr", None);
        }));
        tr.push(timed(|| {
            sh(b.cmd(Path::new("/bin/sh"))
                .arg(&b.script)
                .arg(&b.tarball)
                .arg(&work)
                .arg("-"));
        }));
        tc.push(timed(|| b.convert(&pipe_raw, &pipe_q, None)));
        tcz.push(timed(|| b.convert(&pipe_raw, &pipe_z, Some(ZSTD))));
        tz.push(timed(|| {
            b.dibr("qcow2", "dibr-zstd", Some(ZSTD));
        }));
        println!(
            "round {}: load {load} | dibr {:.2} s, dibr zstd {:.2} s | pipeline to raw {:.2} s + convert -c {:.2} s / zstd {:.2} s",
            i + 1,
            td[i],
            tz[i],
            tr[i],
            tc[i],
            tcz[i]
        );
    }
    let _ = std::fs::remove_file(&pipe_raw);
    let pipe: Vec<f64> = tr.iter().zip(&tc).map(|(a, b)| a + b).collect();
    let pipe_zstd: Vec<f64> = tr.iter().zip(&tcz).map(|(a, b)| a + b).collect();
    let (md, mz, mp, mpz) = (median(td), median(tz), median(pipe), median(pipe_zstd));
    println!(
        "input {} ({} MB), {runs} rounds, load now {}, medians:",
        b.tarball.display(),
        size(&b.tarball) / 1_000_000,
        loadavg()
    );
    println!(
        "  deflate: dibr {md:.2} s, pipeline {mp:.2} s, ratio {:.2}x",
        mp / md
    );
    println!(
        "  zstd:    dibr {mz:.2} s, pipeline {mpz:.2} s, ratio {:.2}x",
        mpz / mz
    );
    let sizes = check_outputs(&b);
    let json = format!(
        "{{\"input_bytes\":{},\"runs\":{runs},\"dibr_s\":{md:.3},\"pipeline_s\":{mp:.3},\"ratio\":{:.3},\"dibr_zstd_s\":{mz:.3},\"pipeline_zstd_s\":{mpz:.3},\"ratio_zstd\":{:.3},\"sizes\":[{},{},{},{},{},{}]}}\n",
        size(&b.tarball),
        mp / md,
        mpz / mz,
        sizes[0], sizes[1], sizes[2], sizes[3], sizes[4], sizes[5]
    );
    std::fs::write(b.dir.join("result.json"), json).unwrap();
}

/// Same-disk size comparison and qemu's verdict: `dibr assemble -t
/// raw,qcow2` once per compression (raw and qcow2 of the same disk: GPT
/// GUIDs are random without SOURCE_DATE_EPOCH), `qemu-img convert` of that
/// raw disk, `qemu-img check` of dibr's qcow2 and `qemu-img compare` with
/// its raw disk. Returns the sizes: dibr, qemu-img of dibr's raw,
/// pipeline — deflate, then zstd.
fn check_outputs(b: &Bench) -> [u64; 6] {
    let mut s = [0u64; 6];
    for (k, (name, opts)) in [("check", None), ("check-zstd", Some(ZSTD))]
        .into_iter()
        .enumerate()
    {
        b.dibr("raw,qcow2", name, opts);
        let (raw, q) = (
            b.dir.join(format!("{name}.raw")),
            b.dir.join(format!("{name}.qcow2")),
        );
        let qi = b.dir.join(format!("qemu-img-of-{name}.qcow2"));
        b.convert(&raw, &qi, opts);
        sh(Command::new("qemu-img").arg("check").arg(&q));
        sh(Command::new("qemu-img")
            .args(["compare", "-f", "raw", "-F", "qcow2"])
            .arg(&raw)
            .arg(&q));
        println!(
            "  {}: qemu-img check clean, qemu-img compare with its raw disk: identical",
            q.display()
        );
        let _ = std::fs::remove_file(&raw);
        let pipe = if k == 0 {
            "pipeline.qcow2"
        } else {
            "pipeline-zstd.qcow2"
        };
        s[3 * k] = size(&q);
        s[3 * k + 1] = size(&qi);
        s[3 * k + 2] = size(&b.dir.join(pipe));
    }
    println!(
        "  qcow2 bytes, deflate: dibr {}, qemu-img -c of dibr's raw {}, pipeline {}",
        s[0], s[1], s[2]
    );
    println!(
        "  qcow2 bytes, zstd:    dibr {}, qemu-img -c of dibr's raw {}, pipeline {}",
        s[3], s[4], s[5]
    );
    s
}
