//! The disks boot (issue 4, acceptance 3 and 4).
//!
//! As the unprivileged CI user: a Debian bookworm root tarball from
//! `mmdebstrap --mode=unshare` with linux-image-cloud-amd64, systemd-sysv,
//! grub-pc-bin, grub-efi-amd64-bin, shim-signed and grub-efi-amd64-signed
//! (cached in `DIBR_TEST_CACHE`), `dibr assemble --layout efi -t raw,qcow2`,
//! then the qcow2 boots under qemu-system-x86_64 with TCG (no KVM for the
//! user) twice at once: SeaBIOS (GRUB's boot.img → core.img in the BIOS boot
//! partition) and OVMF (shim → signed GRUB from the ESP). Each must print the
//! kernel command line dibr wrote and reach the serial login prompt within
//! 5 minutes. A second assembly must give byte-identical raw and qcow2.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::build::{stage, USER};
use common::*;

const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";
const BOOT_TIMEOUT: Duration = Duration::from_secs(300);
const PACKAGES: &str = "linux-image-cloud-amd64,systemd-sysv,udev,initramfs-tools,\
grub-pc-bin,grub-efi-amd64-bin,shim-signed,grub-efi-amd64-signed";

fn cache_dir() -> PathBuf {
    PathBuf::from(
        std::env::var("DIBR_TEST_CACHE").unwrap_or_else(|_| "/var/tmp/dibr-test-cache".into()),
    )
}

/// `setpriv` to the CI user with a clean environment.
fn as_user(prog: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut c = Command::new(tool("setpriv"));
    c.args([
        &format!("--reuid={USER}"),
        &format!("--regid={USER}"),
        "--init-groups",
        "env",
        "-i",
    ])
    .arg("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    .arg(format!("HOME=/home/{USER}"))
    .arg("SOURCE_DATE_EPOCH=1700000000")
    .arg("DIB_GRUB_TIMEOUT=1")
    .arg(prog);
    c.stdin(Stdio::null());
    c
}

/// The bootable root tarball, made rootless by the CI user (cached).
fn boot_rootfs(test: &str) -> Option<PathBuf> {
    let dir = cache_dir().join("boot");
    let tar = dir.join("bookworm-boot.tar");
    if tar.is_file() {
        return Some(tar);
    }
    fs::create_dir_all(&dir).unwrap();
    run_ok(Command::new("chown").arg(USER).arg(&dir));
    let part = dir.join("bookworm-boot.part.tar");
    let t0 = Instant::now();
    let o = run(as_user("mmdebstrap")
        .args(["--quiet", "--mode=unshare", "--format=tar", "--variant=apt"])
        .arg(format!("--include={PACKAGES}"))
        .arg("bookworm")
        .arg(&part));
    if !o.status.success() {
        let _ = fs::remove_file(&part);
        assert!(!is_ci(), "{test}: mmdebstrap failed\n{}", out_text(&o));
        skip(test, "mmdebstrap failed (no Debian mirror?)");
        return None;
    }
    eprintln!(
        "{test}: mmdebstrap --mode=unshare as {USER}: {:?}",
        t0.elapsed()
    );
    fs::rename(&part, &tar).unwrap();
    Some(tar)
}

/// Kills qemu if the test fails half-way.
struct Vm(Child);

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_vm(disk: &Path, log: &Path, uefi_vars: Option<&Path>) -> Vm {
    let mut c = as_user("qemu-system-x86_64");
    c.args([
        "-machine",
        "q35,accel=tcg",
        "-cpu",
        "max",
        "-smp",
        "1",
        "-m",
        "1024",
        "-display",
        "none",
        "-no-reboot",
        "-monitor",
        "none",
    ]);
    c.arg("-serial").arg(format!("file:{}", log.display()));
    if let Some(vars) = uefi_vars {
        c.arg("-drive")
            .arg(format!("if=pflash,format=raw,readonly=on,file={OVMF_CODE}"));
        c.arg("-drive")
            .arg(format!("if=pflash,format=raw,file={}", vars.display()));
    }
    c.arg("-drive").arg(format!(
        "file={},format=qcow2,if=virtio,snapshot=on",
        disk.display()
    ));
    c.stdout(Stdio::null()).stderr(Stdio::piped());
    Vm(c.spawn().expect("starting qemu-system-x86_64"))
}

/// Waits for the login prompt on the serial log; returns the time taken.
fn wait_login(vm: &mut Vm, log: &Path, what: &str, t0: Instant) -> Duration {
    loop {
        let text = fs::read(log).unwrap_or_default();
        let text = String::from_utf8_lossy(&text);
        if text.contains(" login:") {
            return t0.elapsed();
        }
        if let Ok(Some(st)) = vm.0.try_wait() {
            panic!(
                "{what}: qemu exited ({st}) before the login prompt\n--- serial (tail) ---\n{}",
                tail(&text, 3000)
            );
        }
        if t0.elapsed() > BOOT_TIMEOUT {
            panic!(
                "{what}: no login prompt within {BOOT_TIMEOUT:?}\n--- serial (tail) ---\n{}",
                tail(&text, 3000)
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn tail(s: &str, n: usize) -> &str {
    let mut i = s.len().saturating_sub(n);
    while !s.is_char_boundary(i) {
        i += 1;
    }
    &s[i..]
}

fn assemble(bin: &Path, from: &Path, out: &Path) {
    let o = run(as_user(bin)
        .args(["assemble", "--layout", "efi", "-t", "raw,qcow2", "--from"])
        .arg(from)
        .arg("-o")
        .arg(out));
    assert!(o.status.success(), "dibr assemble failed\n{}", out_text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    for want in [
        "BIOS: GRUB boot.img in sector 0",
        "UEFI: /usr/lib/shim/shimx64.efi.signed",
    ] {
        assert!(
            err.contains(want),
            "assemble did not report {want:?}:\n{err}"
        );
    }
}

#[test]
fn efi_disk_boots_with_seabios_and_ovmf() {
    let test = "efi_disk_boots_with_seabios_and_ovmf";
    if !require(
        test,
        true,
        &[
            "mmdebstrap",
            "qemu-system-x86_64",
            "qemu-img",
            "sgdisk",
            "setpriv",
        ],
    ) {
        return;
    }
    if !Path::new(OVMF_CODE).is_file() {
        skip(test, "no OVMF firmware (package ovmf)");
        return;
    }
    let Some(s) = stage(test) else { return };
    let Some(tar) = boot_rootfs(test) else { return };

    let t0 = Instant::now();
    assemble(&s.bin, &tar, &s.out.join("disk"));
    eprintln!("{test}: assemble raw+qcow2: {:?}", t0.elapsed());
    let raw = s.out.join("disk.raw");
    let qcow2 = s.out.join("disk.qcow2");
    let v = run(Command::new(tool("sgdisk")).arg("-v").arg(&raw));
    assert!(
        String::from_utf8_lossy(&v.stdout).contains("No problems found"),
        "sgdisk -v: {}",
        out_text(&v)
    );
    run_ok(
        Command::new(tool("qemu-img"))
            .args(["check", "-q"])
            .arg(&qcow2),
    );
    run_ok(
        Command::new(tool("qemu-img"))
            .args(["compare", "-q", "-f", "raw", "-F", "qcow2"])
            .arg(&raw)
            .arg(&qcow2),
    );

    // Acceptance 4: same inputs, same SOURCE_DATE_EPOCH, same bytes.
    assemble(&s.bin, &tar, &s.out.join("again"));
    for ext in ["raw", "qcow2"] {
        assert_eq!(
            sha256_file(&s.out.join(format!("disk.{ext}"))),
            sha256_file(&s.out.join(format!("again.{ext}"))),
            "two assemblies with SOURCE_DATE_EPOCH differ in the {ext} output"
        );
        fs::remove_file(s.out.join(format!("again.{ext}"))).unwrap();
    }

    // Both firmwares at once (TCG, one vCPU each).
    let vars = s.out.join("OVMF_VARS.fd");
    fs::copy(OVMF_VARS, &vars).unwrap();
    run_ok(Command::new("chown").arg(USER).arg(&vars));
    let bios_log = s.out.join("seabios.log");
    let uefi_log = s.out.join("ovmf.log");
    let t0 = Instant::now();
    let mut bios = start_vm(&qcow2, &bios_log, None);
    let mut uefi = start_vm(&qcow2, &uefi_log, Some(&vars));
    let tb = wait_login(&mut bios, &bios_log, "SeaBIOS boot", t0);
    eprintln!("{test}: SeaBIOS → login prompt in {tb:?}");
    drop(bios);
    let tu = wait_login(&mut uefi, &uefi_log, "OVMF boot", t0);
    eprintln!("{test}: OVMF → login prompt in {tu:?}");
    drop(uefi);
    for (log, what) in [(&bios_log, "SeaBIOS"), (&uefi_log, "OVMF")] {
        let text = String::from_utf8_lossy(&fs::read(log).unwrap()).into_owned();
        assert!(
            text.contains("root=LABEL=cloudimg-rootfs ro console=tty0 console=ttyS0,115200"),
            "{what}: the kernel command line is not the one dibr's grub.cfg gives"
        );
        assert!(
            text.contains("EXT4-fs (vda3): mounted filesystem"),
            "{what}: the root ext4 (vda3) was not mounted by the kernel"
        );
    }
    let uefi_text = String::from_utf8_lossy(&fs::read(&uefi_log).unwrap()).into_owned();
    assert!(
        uefi_text.contains("efi: EFI v"),
        "OVMF: the kernel did not start through UEFI"
    );
    let bios_text = String::from_utf8_lossy(&fs::read(&bios_log).unwrap()).into_owned();
    assert!(
        !bios_text.contains("efi: EFI v"),
        "SeaBIOS: the kernel reports UEFI, so the BIOS path was not tested"
    );
}
