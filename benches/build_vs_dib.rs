//! `cargo bench --bench build_vs_dib`: the whole build, `dibr build`
//! (rootless, as an ordinary user) against diskimage-builder's
//! `disk-image-create` (as root, pip-installed), same elements, same
//! mirror (http://deb.debian.org/debian, `DIB_RELEASE=bookworm`), same
//! machine, one run (issue 5).
//!
//! Reported for each tool: the total wall time and the **assembly phase**,
//! the time after the last install hook (the end of `post-install.d`, else
//! of `install.d`/`pre-install.d`) until the tool exits: DIB's post-root.d,
//! `du`, loop device + mkfs + mount, `cp -ra`, finalise.d, cleanup.d,
//! unmount and `qemu-img convert`; dibr's capture and `dibr assemble`. The
//! bench reads each tool's combined output as it comes and timestamps every
//! line; the boundaries are dibr's `dibr: <phase> done in …` lines and
//! DIB's dib-run-parts profiling tables (`Target: post-install.d` …
//! `END PROFILING`). Also shown: the end of root.d (the bootstrap), so
//! total = bootstrap + install hooks + assembly.
//!
//! Modes (`DIBR_BENCH_DIB_MODE`, default `auto`):
//! - `vm`: `disk-image-create -t qcow2 ELEMENTS vm` against
//!   `dibr build -t qcow2 ELEMENTS vm`, the bootable disk. DIB partitions
//!   the disk through a loop device and `kpartx`, which needs the kernel's
//!   device-mapper (`/dev/mapper/control`); in many containers there is
//!   none (or loop partitions never appear), and DIB fails there.
//! - `raw`: the fallback, filesystem only: `disk-image-create -t raw
//!   ELEMENTS` (no `vm`: DIB's default block-device config, one ext4 on
//!   the whole image on a plain loop device, no partitions) against
//!   `dibr build -t raw ELEMENTS` (the same config).
//! - `auto`: `vm` when `/proc/misc` lists device-mapper, else `raw`, and
//!   the output says which and why.
//!
//! `DIBR_BENCH_ELEMENTS` (default `debian-minimal`) are the elements both
//! tools get. Unless `DIBR_BENCH_ISSUE_CMD=0`, dibr's command from the
//! issue, `dibr build -t qcow2 debian vm`, is timed too, for reference
//! (no DIB counterpart in `raw` mode).
//!
//! Caches, both warm: each command first runs once untimed
//! (`DIBR_BENCH_WARMUP=0` skips that when the caches are already warm).
//! DIB: `DIB_IMAGE_CACHE=DIR/dib-cache`, its shared apt archive cache (on
//! by default: `.deb`s are not downloaded again) and its bootstrap tarball
//! (`DIB_DEBOOTSTRAP_CACHE=1 DIB_DEBIAN_USE_DEBOOTSTRAP_CACHE=1`). dibr:
//! `DIB_IMAGE_CACHE=DIR/dibr-cache`, its bootstrap tarball (cached by
//! default; `DIB_DEBIAN_CACHE_HOURS` raised so it is used whatever its
//! age, as DIB's is), and its apt archive cache in the same directory
//! (the dpkg element's, as DIB's). Both build in a tmpfs by default: DIB
//! mounts one, dibr uses /dev/shm when it has room
//! (`DIBR_BENCH_DIBR_TMPDIR=/tmp` puts dibr's work directory on disk).
//! `DIBR_BENCH_RUNS` (default 1) timed runs of each, alternating, after a
//! `sync`; medians are printed. Work and logs (`dib-runN.log`,
//! `dibr-runN.log`: every line with its time from the start) in
//! `DIBR_BENCH_DIR` (default /var/tmp/dibr-bench/build-vs-dib); the
//! figures also go to DIR/result.json.
//!
//! Needs root (DIB runs as root; dibr runs as `DIBR_BENCH_USER`, default
//! dibr-ci, which needs a subordinate uid range) and: DIB in a venv
//! (`DIBR_BENCH_DIB`, default
//! `$DIBR_TEST_CACHE/dib-venv/bin/disk-image-create`, DIBR_TEST_CACHE
//! default /var/tmp/dibr-test-cache; `python3 -m venv V && V/bin/pip
//! install diskimage-builder`), and the Debian packages
//! `sudo debootstrap mmdebstrap qemu-utils uidmap e2fsprogs util-linux`
//! (DIB's debootstrap element runs `debootstrap --version` even when it
//! bootstraps with mmdebstrap), plus `kpartx gdisk dosfstools` for `vm`
//! mode. Without them it prints why and does nothing. Under `cargo test`
//! (no `--bench` argument) it does nothing.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

mod common;
use common::{is_root, median, sh, user_cmd, USER_PATH};

const MIRROR: &str = "http://deb.debian.org/debian";
const SECURITY_MIRROR: &str = "http://deb.debian.org/debian-security";
const RELEASE: &str = "bookworm";

/// Where one build's time went, in seconds from its start.
#[derive(Clone, Debug)]
struct Timing {
    total: f64,
    /// End of root.d (the bootstrap).
    root_end: f64,
    /// End of the last install hook.
    install_end: f64,
    /// The assembly phase in steps: (what, seconds).
    steps: Vec<(&'static str, f64)>,
}

impl Timing {
    fn assembly(&self) -> f64 {
        self.total - self.install_end
    }
    fn install(&self) -> f64 {
        self.install_end - self.root_end
    }
}

/// Run `cmd` with stdout and stderr into one pipe; every line is stamped
/// with its time from the start as it is read. Returns whether it
/// succeeded, the stamped lines and the total time. The lines go to `log`.
fn run_logged(mut cmd: Command, log: &Path) -> (bool, Vec<(f64, String)>, f64) {
    let (reader, writer) = std::io::pipe().expect("pipe");
    cmd.stdin(Stdio::null())
        .stdout(writer.try_clone().expect("pipe"))
        .stderr(writer);
    sh(&mut Command::new("sync"));
    let t0 = Instant::now();
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    // Our copies of the write end go with the Command, so the reader sees
    // end-of-file when the tool and its children are done.
    let shown = format!("{cmd:?}");
    drop(cmd);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut r = BufReader::new(reader);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match r.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let t = t0.elapsed().as_secs_f64();
                    let line = String::from_utf8_lossy(&buf).trim_end().to_string();
                    if tx.send((t, line)).is_err() {
                        break;
                    }
                }
            }
        }
    });
    let status = child.wait().expect("waiting for the build");
    let total = t0.elapsed().as_secs_f64();
    // A daemon left behind may hold the pipe: give up on it after 5 s.
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while let Ok(l) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        lines.push(l);
    }
    let mut f = std::fs::File::create(log).unwrap();
    writeln!(f, "# {shown}").unwrap();
    for (t, l) in &lines {
        writeln!(f, "{t:9.3} {l}").unwrap();
    }
    writeln!(f, "{total:9.3} # exit: {status}").unwrap();
    (status.success(), lines, total)
}

const INSTALL_PHASES: [&str; 3] = ["pre-install.d", "install.d", "post-install.d"];

/// dibr: `dibr: root.d done in …`, `dibr: post-install.d done in …`.
fn dibr_marks(lines: &[(f64, String)]) -> (Option<f64>, Option<f64>) {
    let (mut root, mut install) = (None, None);
    for (t, l) in lines {
        let Some(rest) = l.strip_prefix("dibr: ") else {
            continue;
        };
        if rest.starts_with("root.d done in ") {
            root = Some(*t);
        }
        if INSTALL_PHASES
            .iter()
            .any(|p| rest.starts_with(&format!("{p} done in ")))
        {
            install = Some(*t);
        }
    }
    (root, install)
}

/// DIB: dib-run-parts ends every phase with a profiling table,
/// `Target: <phase>` … `END PROFILING` (lines prefixed by DIB's own
/// timestamp).
fn dib_marks(lines: &[(f64, String)]) -> (Option<f64>, Option<f64>) {
    let (mut root, mut install) = (None, None);
    let mut target = String::new();
    for (t, l) in lines {
        if let Some(i) = l.find("dib-run-parts Target: ") {
            target = l[i + "dib-run-parts Target: ".len()..].trim().to_string();
        } else if l.contains("END PROFILING") {
            if target == "root.d" {
                root = Some(*t);
            } else if INSTALL_PHASES.contains(&target.as_str()) {
                install = Some(*t);
            }
        }
    }
    (root, install)
}

/// The assembly phase cut at the first line (after the install hooks and
/// after the previous cut) that contains each marker; the step before a
/// marker is named by it, the rest until the exit by `last`. A marker
/// that does not appear merges its step into the next.
fn steps(
    lines: &[(f64, String)],
    install_end: f64,
    total: f64,
    markers: &[(&str, &'static str)],
    last: &'static str,
) -> Vec<(&'static str, f64)> {
    let mut out = Vec::new();
    let mut at = install_end;
    for (needle, what) in markers {
        if let Some((t, _)) = lines.iter().find(|(t, l)| *t >= at && l.contains(needle)) {
            out.push((*what, t - at));
            at = *t;
        }
    }
    out.push((last, total - at));
    out
}

/// dibr's assembly phase: the hooks after post-install.d and the capture,
/// `dibr assemble` (it prints its summary when the outputs are written and
/// synced), then the work directory is removed.
const DIBR_STEPS: [(&str, &str); 2] = [
    ("dibr: captured ", "later hooks + capture"),
    ("dibr assemble: disk ", "assemble + fsync"),
];
const DIBR_LAST: &str = "remove work dir";

/// DIB's: post-root.d, `du`, loop device, mkfs and mount (until the first
/// mount), `cp -ra` into the filesystem and finalise.d (until cleanup.d
/// starts), cleanup.d, fstrim, unmount and the image written (qemu-img
/// convert, or a move for raw), then DIB's exit (it sleeps 1 s).
const DIB_STEPS: [(&str, &str); 3] = [
    ("Calling [sudo mount ", "du + loop + mkfs"),
    ("/cleanup.d", "cp -ra + finalise.d"),
    (" created...", "cleanup + umount + image"),
];
const DIB_LAST: &str = "exit";

fn tail(lines: &[(f64, String)], n: usize) -> String {
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|(_, l)| l.as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Apparent and allocated size of a file, bytes.
fn sizes(p: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(p)
        .map(|m| (m.len(), m.blocks() * 512))
        .unwrap_or((0, 0))
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .env("PATH", USER_PATH)
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Lines stamped with their time from the start of the build.
type Lines = [(f64, String)];
/// The end of root.d and of the last install hook, found in the lines.
type Marks = fn(&Lines) -> (Option<f64>, Option<f64>);

/// One contender: how to run it, where its output lands.
struct Contender {
    label: String,
    tool: &'static str,
    make: Box<dyn Fn() -> Command>,
    marks: Marks,
    step_markers: &'static [(&'static str, &'static str)],
    last_step: &'static str,
    /// Output files, removed before each run (DIB renames an old image).
    outputs: Vec<PathBuf>,
    log_stem: &'static str,
}

impl Contender {
    fn run(&self, dir: &Path, tag: &str) -> Timing {
        for o in &self.outputs {
            let _ = std::fs::remove_file(o);
        }
        let log = dir.join(format!("{}-{tag}.log", self.log_stem));
        let (ok, lines, total) = run_logged((self.make)(), &log);
        if !ok {
            panic!(
                "{} failed after {total:.1} s (log: {}):\n{}",
                self.label,
                log.display(),
                tail(&lines, 40)
            );
        }
        let (root, install) = (self.marks)(&lines);
        let install_end = install.unwrap_or_else(|| {
            panic!(
                "{}: no end of the install hooks in its output ({})",
                self.label,
                log.display()
            )
        });
        Timing {
            total,
            root_end: root.unwrap_or(0.0),
            install_end,
            steps: steps(
                &lines,
                install_end,
                total,
                self.step_markers,
                self.last_step,
            ),
        }
    }
}

fn env_or(k: &str, d: &str) -> String {
    std::env::var(k)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| d.to_string())
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("build_vs_dib bench: skipped (run `cargo bench --bench build_vs_dib`)");
        return;
    }
    let skip = |why: &str| {
        println!("build_vs_dib bench: skipped: {why} (see the header of benches/build_vs_dib.rs)");
    };
    if !is_root() {
        return skip(
            "needs root: diskimage-builder runs as root (dibr itself runs as DIBR_BENCH_USER)",
        );
    }
    let cache = env_or("DIBR_TEST_CACHE", "/var/tmp/dibr-test-cache");
    let dib = PathBuf::from(env_or(
        "DIBR_BENCH_DIB",
        &format!("{cache}/dib-venv/bin/disk-image-create"),
    ));
    if !dib.is_file() {
        return skip(&format!(
            "no diskimage-builder at {} (python3 -m venv V && V/bin/pip install diskimage-builder; set DIBR_BENCH_DIB=V/bin/disk-image-create)",
            dib.display()
        ));
    }
    let mode = env_or("DIBR_BENCH_DIB_MODE", "auto");
    let dm = std::fs::read_to_string("/proc/misc")
        .map(|s| s.contains("device-mapper"))
        .unwrap_or(false);
    let (vm, why) = match mode.as_str() {
        "vm" => (true, "DIBR_BENCH_DIB_MODE=vm".to_string()),
        "raw" => (false, "DIBR_BENCH_DIB_MODE=raw".to_string()),
        "auto" if dm => (true, "the kernel has device-mapper, so DIB's kpartx can map the loop device's partitions".to_string()),
        "auto" => (false, "no device-mapper in this kernel (/proc/misc), so DIB's kpartx cannot map the partitions of its loop device and `-t qcow2 … vm` fails here: comparing the filesystem-only build (DIB's default block-device config, one ext4 on a plain loop device) instead".to_string()),
        m => panic!("DIBR_BENCH_DIB_MODE={m}: expected auto, vm or raw"),
    };
    let mut tools = vec![
        "sudo",
        "debootstrap",
        "mmdebstrap",
        "qemu-img",
        "losetup",
        "mkfs.ext4",
        "setpriv",
        "newuidmap",
    ];
    if vm {
        tools.extend(["kpartx", "dmsetup", "sgdisk", "mkfs.vfat"]);
    }
    let missing: Vec<&str> = tools.into_iter().filter(|t| !have(t)).collect();
    if !missing.is_empty() {
        return skip(&format!(
            "missing {} (apt-get install sudo debootstrap mmdebstrap qemu-utils uidmap e2fsprogs util-linux{})",
            missing.join(", "),
            if vm { " kpartx gdisk dosfstools" } else { "" }
        ));
    }
    let user = env_or("DIBR_BENCH_USER", "dibr-ci");
    let has_subuid = std::fs::read_to_string("/etc/subuid")
        .map(|s| s.lines().any(|l| l.starts_with(&format!("{user}:"))))
        .unwrap_or(false);
    if !has_subuid {
        return skip(&format!(
            "user {user} has no subordinate uid range (useradd -m {user}; usermod --add-subuids 200000-265535 --add-subgids 200000-265535 {user})"
        ));
    }

    let runs: usize = env_or("DIBR_BENCH_RUNS", "1").parse().unwrap_or(1).max(1);
    let warmup = env_or("DIBR_BENCH_WARMUP", "1") != "0";
    let elements: Vec<String> = env_or("DIBR_BENCH_ELEMENTS", "debian-minimal")
        .split_whitespace()
        .map(String::from)
        .collect();
    let dir = PathBuf::from(env_or("DIBR_BENCH_DIR", "/var/tmp/dibr-bench/build-vs-dib"));
    let (dib_dir, dibr_dir) = (dir.join("dib"), dir.join("dibr"));
    for d in [&dib_dir, &dibr_dir, &dir.join("dibr-cache")] {
        std::fs::create_dir_all(d).unwrap();
    }
    // The user needs the binary and directories of its own.
    let dibr = dibr_dir.join("dibr");
    let _ = std::fs::remove_file(&dibr);
    std::fs::copy(env!("CARGO_BIN_EXE_dibr"), &dibr).unwrap();
    sh(Command::new("chown")
        .args(["-R", &user])
        .arg(&dibr_dir)
        .arg(dir.join("dibr-cache")));
    sh(Command::new("chmod").args(["755"]).arg(&dir));

    let (ty, ext) = if vm {
        ("qcow2", "qcow2")
    } else {
        ("raw", "raw")
    };
    let mut els = elements.clone();
    if vm && !els.iter().any(|e| e == "vm") {
        els.push("vm".into());
    }
    let dib_cmdline = format!("disk-image-create -t {ty} {}", els.join(" "));
    let dibr_cmdline = format!("dibr build -t {ty} {}", els.join(" "));

    let dib_env: Vec<(String, String)> = vec![
        (
            "PATH".into(),
            format!("{}:{USER_PATH}", dib.parent().unwrap().display()),
        ),
        ("HOME".into(), "/root".into()),
        ("USER".into(), "root".into()),
        ("LANG".into(), "C.UTF-8".into()),
        ("DIB_RELEASE".into(), RELEASE.into()),
        ("DIB_DISTRIBUTION_MIRROR".into(), MIRROR.into()),
        ("DIB_DEBIAN_SECURITY_MIRROR".into(), SECURITY_MIRROR.into()),
        (
            "DIB_IMAGE_CACHE".into(),
            dir.join("dib-cache").display().to_string(),
        ),
        ("DIB_DEBOOTSTRAP_CACHE".into(), "1".into()),
        ("DIB_DEBIAN_USE_DEBOOTSTRAP_CACHE".into(), "1".into()),
    ];
    let dibr_cache = dir.join("dibr-cache").display().to_string();
    let mut dibr_env: Vec<(String, String)> = vec![
        ("DIB_RELEASE".into(), RELEASE.into()),
        ("DIB_DISTRIBUTION_MIRROR".into(), MIRROR.into()),
        ("DIB_DEBIAN_SECURITY_MIRROR".into(), SECURITY_MIRROR.into()),
        ("DIB_IMAGE_CACHE".into(), dibr_cache),
        ("DIB_DEBIAN_CACHE_HOURS".into(), "1000000".into()),
    ];
    let dibr_tmpdir = std::env::var("DIBR_BENCH_DIBR_TMPDIR").unwrap_or_default();
    if !dibr_tmpdir.is_empty() {
        dibr_env.push(("TMPDIR".into(), dibr_tmpdir.clone()));
    }

    let dib_cmd = {
        let (dib, dib_dir, els, env) = (dib.clone(), dib_dir.clone(), els.clone(), dib_env);
        move || {
            let mut c = Command::new(&dib);
            c.env_clear()
                .envs(env.iter().map(|(k, v)| (k, v)))
                .current_dir(&dib_dir)
                .args(["-o", "image", "-t", ty])
                .args(&els);
            c
        }
    };
    let dibr_build = |els: Vec<String>, ty: &'static str, name: &'static str| {
        let (dibr, dibr_dir, user, env) = (
            dibr.clone(),
            dibr_dir.clone(),
            user.clone(),
            dibr_env.clone(),
        );
        move || {
            let env: Vec<(&str, &str)> =
                env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let mut c = user_cmd(Some(&user), &dibr, &env);
            c.current_dir(&dibr_dir)
                .args(["build", "--no-cache", "-o", name, "-t", ty])
                .args(&els);
            c
        }
    };
    let mut contenders = vec![
        Contender {
            label: format!("{dib_cmdline} (root)"),
            tool: "dib",
            make: Box::new(dib_cmd),
            marks: dib_marks,
            step_markers: &DIB_STEPS,
            last_step: DIB_LAST,
            outputs: vec![dib_dir.join(format!("image.{ext}"))],
            log_stem: "dib",
        },
        Contender {
            label: format!("{dibr_cmdline} ({user})"),
            tool: "dibr",
            make: Box::new(dibr_build(els.clone(), ty, "image")),
            marks: dibr_marks,
            step_markers: &DIBR_STEPS,
            last_step: DIBR_LAST,
            outputs: vec![dibr_dir.join(format!("image.{ext}"))],
            log_stem: "dibr",
        },
    ];
    let issue_els = ["debian", "vm"].map(String::from).to_vec();
    let issue_same = vm && els == issue_els;
    if env_or("DIBR_BENCH_ISSUE_CMD", "1") != "0" && !issue_same {
        contenders.push(Contender {
            label: format!("dibr build -t qcow2 debian vm ({user}; issue's command)"),
            tool: "dibr-issue",
            make: Box::new(dibr_build(issue_els, "qcow2", "issue")),
            marks: dibr_marks,
            step_markers: &DIBR_STEPS,
            last_step: DIBR_LAST,
            outputs: vec![dibr_dir.join("issue.qcow2")],
            log_stem: "dibr-issue",
        });
    }

    println!(
        "build_vs_dib: mode {}: {why}",
        if vm { "vm" } else { "raw" }
    );
    println!(
        "  mirror {MIRROR}, DIB_RELEASE={RELEASE}, {runs} timed run(s), work in {}",
        dir.display()
    );
    println!(
        "  build directories: DIB's own choice (a tmpfs when there is RAM enough), dibr's in {}",
        if dibr_tmpdir.is_empty() {
            "its default (/dev/shm when it has room, as DIB's tmpfs)"
        } else {
            dibr_tmpdir.as_str()
        }
    );
    let load_start = loadavg();
    println!("  load average at start: {load_start}");
    if warmup {
        for c in &contenders {
            let t = c.run(&dir, "warmup");
            println!(
                "  warm-up {:<10} total {:7.1} s, assembly {:6.1} s (caches now warm)",
                c.tool,
                t.total,
                t.assembly()
            );
        }
    }
    let mut timings: Vec<Vec<Timing>> = vec![Vec::new(); contenders.len()];
    for i in 0..runs {
        for (c, ts) in contenders.iter().zip(timings.iter_mut()) {
            let t = c.run(&dir, &format!("run{}", i + 1));
            println!(
                "  run {}: {:<10} total {:7.1} s = bootstrap {:5.1} + install hooks {:6.1} + assembly {:6.1} (load {})",
                i + 1,
                c.tool,
                t.total,
                t.root_end,
                t.install(),
                t.assembly(),
                loadavg()
            );
            println!(
                "         {:<10} assembly: {}",
                "",
                t.steps
                    .iter()
                    .map(|(w, s)| format!("{w} {s:.1}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            ts.push(t);
        }
    }
    let load_end = loadavg();
    let med = |ts: &Vec<Timing>, f: fn(&Timing) -> f64| median(ts.iter().map(f).collect());
    println!(
        "build_vs_dib: medians of {runs} run(s), caches warm; load average {load_start} at start, {load_end} at the end"
    );
    println!(
        "  {:<60} {:>9} {:>9} {:>9} {:>9}",
        "", "total s", "bootstrap", "install", "assembly"
    );
    for (c, ts) in contenders.iter().zip(&timings) {
        println!(
            "  {:<60} {:9.1} {:9.1} {:9.1} {:9.1}",
            c.label,
            med(ts, |t| t.total),
            med(ts, |t| t.root_end),
            med(ts, Timing::install),
            med(ts, Timing::assembly)
        );
    }
    let (dib_t, dib_a) = (
        med(&timings[0], |t| t.total),
        med(&timings[0], Timing::assembly),
    );
    let (dibr_t, dibr_a) = (
        med(&timings[1], |t| t.total),
        med(&timings[1], Timing::assembly),
    );
    println!(
        "  ratio DIB/dibr: total {:.2}x (target ≥ 1), assembly phase {:.2}x (target ≥ 5)",
        dib_t / dibr_t,
        dib_a / dibr_a
    );
    for c in &contenders {
        for o in &c.outputs {
            let (len, alloc) = sizes(o);
            println!("  output {}: {len} bytes ({alloc} allocated)", o.display());
        }
    }
    let mut json = format!(
        "{{\"mode\":\"{}\",\"elements\":\"{}\",\"runs\":{runs},\"dib_cmd\":\"{dib_cmdline}\",\"dibr_cmd\":\"{dibr_cmdline}\",\"dib_s\":{dib_t:.3},\"dibr_s\":{dibr_t:.3},\"dib_assembly_s\":{dib_a:.3},\"dibr_assembly_s\":{dibr_a:.3},\"ratio\":{:.3},\"ratio_assembly\":{:.3},\"dibr_tmpdir\":\"{dibr_tmpdir}\",\"load_start\":\"{load_start}\",\"load_end\":\"{load_end}\"",
        if vm { "vm" } else { "raw" },
        els.join(" "),
        dib_t / dibr_t,
        dib_a / dibr_a
    );
    if let Some(ts) = timings.get(2) {
        json.push_str(&format!(
            ",\"issue_dibr_s\":{:.3},\"issue_dibr_assembly_s\":{:.3}",
            med(ts, |t| t.total),
            med(ts, Timing::assembly)
        ));
    }
    json.push_str("}\n");
    std::fs::write(dir.join("result.json"), json).unwrap();
}
