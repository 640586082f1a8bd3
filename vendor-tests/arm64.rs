//! arm64 images on an amd64 host (issue 16, items 2 and 3): `-a arm64`
//! runs the image's programs through the kernel's binfmt_misc handler for
//! qemu-user, and stops before any work when the host has none.
//!
//! - `arm64_preflight_names_the_host_setup` (always): with a binfmt_misc
//!   directory that has no aarch64 handler (`DIBR_BINFMT_MISC_DIR`, the
//!   settings seam), or one without the F flag, `dibr build -a arm64` as
//!   the CI user stops before the sandbox starts, naming the package and
//!   the command that register it, and leaves nothing behind; on the real
//!   host (`.ci/run` registers qemu-aarch64) the same build gets past the
//!   check and says it is emulated. `ARCH` in the environment (DIB's
//!   default for `-a`) is honoured the same way.
//! - `arm64_debian_vm_builds_rootless_and_boots` (slow, `DIBR_ARM64_TESTS=1`):
//!   `dibr build -a arm64 -o deb-arm64.qcow2 debian vm` as the CI user
//!   (Debian stable, as DIB's default; mkinitramfs runs once, deferred to
//!   finalise.d: see the debootstrap element's README);
//!   `dibr check` passes it (an arm64 Image kernel, console=ttyAMA0),
//!   `get-kernel` extracts it; grown by 3 GiB, it boots under
//!   `qemu-system-aarch64 -M virt -cpu max` with AAVMF (TCG) to a login
//!   prompt, `uname -m` is aarch64, cloud-init runs a NoCloud user-data and
//!   the root filesystem has grown.

mod common;

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::build::{assert_no_leftovers, before, build_cmd, serial, stage, USER};
use common::vm::{self, Vm};
use common::*;

/// What Debian 13's qemu-user-binfmt registers for aarch64.
const AARCH64: &str = "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: POF\noffset 0\nmagic 7f454c460201010000000000000000000200b700\nmask ffffffffffffff00fffffffffffffffffeffffff\n";

fn fake_binfmt(dir: &Path, handler: Option<&str>) -> String {
    fs::create_dir_all(dir).unwrap();
    fs::write(dir.join("status"), "enabled\n").unwrap();
    fs::write(dir.join("register"), "").unwrap();
    if let Some(h) = handler {
        fs::write(dir.join("qemu-aarch64"), h).unwrap();
    }
    run_ok(Command::new("chmod").args(["-R", "a+rX"]).arg(dir));
    dir.display().to_string()
}

#[test]
fn arm64_preflight_names_the_host_setup() {
    let test = "arm64_preflight_names_the_host_setup";
    if std::env::consts::ARCH != "x86_64" {
        skip(
            test,
            "the emulated direction tested here is arm64 on x86_64",
        );
        return;
    }
    let _g = serial();
    let Some(s) = stage(test) else { return };
    let b = before();
    let fakes = s.out.parent().unwrap().join("binfmt");
    let none = fake_binfmt(&fakes.join("none"), None);
    let no_f = fake_binfmt(&fakes.join("no-f"), Some(&AARCH64.replace("POF", "PO")));
    for (arch, dir, want) in [
        (
            "arm64",
            none.as_str(),
            &[
                "no binfmt_misc handler for AArch64",
                "sudo apt install qemu-user-static binfmt-support",
                "update-binfmts --enable qemu-aarch64",
                "systemctl restart systemd-binfmt",
            ][..],
        ),
        (
            "aarch64",
            none.as_str(),
            &["sudo apt install qemu-user-static"][..],
        ),
        (
            "arm64",
            no_f.as_str(),
            &["without F (fix-binary)", "qemu-user-static"][..],
        ),
    ] {
        let o = build_cmd(
            &s,
            &["-a", arch, "-o", "deb-arm64.qcow2", "debian", "vm"],
            &[("DIBR_BINFMT_MISC_DIR", dir)],
        )
        .output()
        .unwrap();
        let text = out_text(&o);
        assert!(
            !o.status.success(),
            "{test}: -a {arch} with {dir} built\n{text}"
        );
        for w in want {
            assert!(
                text.contains(w),
                "{test}: -a {arch}, {dir}: no {w:?}\n{text}"
            );
        }
        // Before any work: not even the sandbox's line.
        assert!(
            !text.contains("dibr: sandbox:") && !text.contains("building"),
            "{test}: -a {arch} started working before refusing\n{text}"
        );
        assert_eq!(
            fs::read_dir(&s.out).unwrap().count(),
            0,
            "{test}: outputs left"
        );
    }
    // DIB's ARCH in the environment is the default for -a
    // (diskimage_builder/lib/common-defaults), checked the same way.
    for (arch, want) in [
        ("aarch64", "no binfmt_misc handler for AArch64"),
        ("sparc64", "ARCH=sparc64 in the environment"),
    ] {
        let o = build_cmd(
            &s,
            &["-o", "deb-arm64.qcow2", "debian", "vm"],
            &[("DIBR_BINFMT_MISC_DIR", none.as_str()), ("ARCH", arch)],
        )
        .output()
        .unwrap();
        let text = out_text(&o);
        assert!(
            !o.status.success() && text.contains(want),
            "{test}: ARCH={arch}: no {want:?}\n{text}"
        );
        assert_eq!(fs::read_dir(&s.out).unwrap().count(), 0);
    }
    assert_no_leftovers(test, &b);

    // The real host: CI registers qemu-aarch64 with F (.ci/run).
    let real = Path::new("/proc/sys/fs/binfmt_misc/qemu-aarch64");
    if !real.exists() {
        assert!(!is_ci(), "{test}: .ci/run registers qemu-aarch64");
        skip(test, "qemu-aarch64 is not registered on this host");
        return;
    }
    let o = build_cmd(&s, &["-a", "arm64", "-o", "x", "dibr-no-such-element"], &[])
        .output()
        .unwrap();
    let text = out_text(&o);
    assert!(
        !o.status.success()
            && text.contains("through qemu-user (/proc/sys/fs/binfmt_misc/qemu-aarch64)")
            && text.contains("'dibr-no-such-element' not found"),
        "{test}: the registered host did not pass the check\n{text}"
    );
    assert_no_leftovers(test, &b);
}

/// TCG emulating arm64 on a loaded 2-core machine: generous.
const BOOT_TIMEOUT: Duration = Duration::from_secs(40 * 60);
const GROW: u64 = 3 << 30;
const AAVMF_CODE: &str = "/usr/share/AAVMF/AAVMF_CODE.fd";
const AAVMF_VARS: &str = "/usr/share/AAVMF/AAVMF_VARS.fd";

/// A NoCloud seed whose user-data reports on the PL011 console.
fn seed(dir: &Path) -> std::path::PathBuf {
    vm::Seed {
        name: "dibr-arm64",
        ssh_key: None,
        console: "ttyAMA0",
        before: "",
        lines: &[
            "echo DIBR-USERDATA-MARKER",
            "echo \"DIBR-ARCH $(uname -m)\"",
            "echo \"DIBR-ROOT-BYTES $(df -B1 --output=size / | tail -n1 | tr -d ' ')\"",
            "echo DIBR-DONE",
        ],
    }
    .write(dir)
}

fn field(text: &str, key: &str) -> String {
    text.lines()
        .find_map(|l| l.trim().strip_prefix(key))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| panic!("no {key} line on the serial console"))
}

fn virtual_size(disk: &Path) -> u64 {
    let o = run_ok(
        Command::new(tool("qemu-img"))
            .args(["info", "--output=json"])
            .arg(disk),
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v["virtual-size"].as_u64().unwrap()
}

/// `dibr check` and `get-kernel` on the arm64 image.
fn inspect(test: &str, dibr: &Path, disk: &Path, out: &Path) {
    let o = run(vm::as_user(dibr, &[]).arg("check").arg(disk));
    let report = out_text(&o);
    assert!(o.status.success(), "{test}: dibr check failed\n{report}");
    assert!(
        report
            .lines()
            .any(|l| l.starts_with("PASS kernel") && l.contains("arm64 Image")),
        "{test}: check did not read an arm64 Image kernel\n{report}"
    );
    assert!(
        report.contains("console=ttyAMA0"),
        "{test}: check did not judge the PL011 console\n{report}"
    );
    run_ok(
        vm::as_user(dibr, &[])
            .arg("get-kernel")
            .arg(disk)
            .arg("-o")
            .arg(out.join("k")),
    );
    let k = fs::read(out.join("k.vmlinuz")).unwrap();
    assert!(
        k.len() > 1 << 20,
        "{test}: get-kernel's kernel is too small"
    );
}

#[test]
fn arm64_debian_vm_builds_rootless_and_boots() {
    let test = "arm64_debian_vm_builds_rootless_and_boots";
    if std::env::var("DIBR_ARM64_TESTS").as_deref() != Ok("1") {
        println!("skipped: {test}: set DIBR_ARM64_TESTS=1 (slow: an emulated arm64 build, over 20 minutes on 2 cores, and a TCG boot)");
        return;
    }
    let tools = [
        "mmdebstrap",
        "qemu-system-aarch64",
        "qemu-img",
        "mkfs.fat",
        "mcopy",
    ];
    if !require(test, true, &tools) {
        return;
    }
    let _g = serial();
    let Some(s) = stage(test) else { return };
    let elements = Path::new(env!("CARGO_MANIFEST_DIR")).join("elements");
    let cache = common::build::user_cache("image-cache");
    let (elements_s, cache_s) = (elements.display().to_string(), cache.display().to_string());
    let t0 = Instant::now();
    let o = build_cmd(
        &s,
        &[
            "-a",
            "arm64",
            "-o",
            "deb-arm64.qcow2",
            "-t",
            "qcow2,tar",
            "debian",
            "vm",
        ],
        &[
            ("DIBR_ELEMENTS_DIR", &elements_s),
            ("DIB_IMAGE_CACHE", &cache_s),
            ("DIB_GRUB_TIMEOUT", "1"),
        ],
    )
    .output()
    .unwrap();
    let text = out_text(&o);
    assert!(o.status.success(), "{test}: dibr build failed\n{text}");
    eprintln!(
        "{test}: built in {:?}\n{}",
        t0.elapsed(),
        String::from_utf8_lossy(&o.stderr)
    );
    let disk = s.out.join("deb-arm64.qcow2");
    run_ok(
        Command::new(tool("qemu-img"))
            .args(["check", "-q"])
            .arg(&disk),
    );
    inspect(test, &s.bin, &disk, &s.out);
    // Issue 19: the Glance side file of an arm64 image (UEFI-only, virt).
    let os = run_ok(
        Command::new("tar")
            .arg("-xOf")
            .arg(s.out.join("deb-arm64.tar"))
            .arg("usr/lib/os-release"),
    );
    common::glance::assert_real_qcow2_for(
        test,
        "aarch64",
        &disk,
        &String::from_utf8_lossy(&os.stdout),
        &["debian", "vm"],
    );

    let before = virtual_size(&disk);
    let d = s.out.join("boot.qcow2");
    fs::copy(&disk, &d).unwrap();
    run_ok(
        Command::new(tool("qemu-img"))
            .args(["resize", "-q"])
            .arg(&d)
            .arg(format!("+{GROW}")),
    );
    let seed = seed(&s.out);
    let vars = s.out.join("vars.fd");
    fs::copy(AAVMF_VARS, &vars).unwrap();
    run_ok(
        Command::new("chown")
            .arg(USER)
            .arg(&d)
            .arg(&seed)
            .arg(&vars),
    );
    let log = s.out.join("serial.log");
    let mut q = vm::as_user("qemu-system-aarch64", &[]);
    q.args(["-M", "virt", "-cpu", "max", "-smp", "2", "-m", "2048"]);
    q.args(["-display", "none", "-monitor", "none", "-no-reboot"]);
    q.arg("-drive").arg(format!(
        "if=pflash,format=raw,readonly=on,file={AAVMF_CODE}"
    ));
    q.arg("-drive")
        .arg(format!("if=pflash,format=raw,file={}", vars.display()));
    q.arg("-drive")
        .arg(format!("file={},format=qcow2,if=virtio", d.display()));
    q.arg("-drive").arg(format!(
        "file={},format=raw,if=virtio,readonly=on",
        seed.display()
    ));
    q.arg("-serial").arg(format!("file:{}", log.display()));
    q.stdout(Stdio::null()).stderr(Stdio::null());
    let mut vm = Vm(q.spawn().expect("starting qemu-system-aarch64"));
    let t0 = Instant::now();
    let wait = |vm: &mut Vm, marker: &str| vm::wait_for(vm, &log, marker, test, t0, BOOT_TIMEOUT);
    wait(&mut vm, "DIBR-DONE");
    eprintln!("{test}: user-data ran after {:?}", t0.elapsed());
    let text = wait(&mut vm, " login:");
    eprintln!("{test}: login prompt after {:?}", t0.elapsed());
    assert_eq!(
        field(&text, "DIBR-ARCH"),
        "aarch64",
        "{test}: not an arm64 kernel"
    );
    assert!(
        text.contains("DIBR-USERDATA-MARKER"),
        "{test}: no user-data marker"
    );
    let root: u64 = field(&text, "DIBR-ROOT-BYTES").parse().unwrap();
    assert!(
        root > before + GROW - (768 << 20),
        "{test}: root filesystem is {root} bytes; the disk grew from {before} by {GROW}"
    );
}
