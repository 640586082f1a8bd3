//! The disks boot (issue 4, acceptance 3 and 4).
//!
//! As the unprivileged CI user: a Debian bookworm root tarball from
//! `mmdebstrap --mode=unshare` with linux-image-cloud-amd64, systemd-sysv,
//! grub-pc-bin, grub-efi-amd64-bin, shim-signed and grub-efi-amd64-signed
//! (cached in `DIBR_TEST_CACHE`), `dibr assemble --layout efi -t raw,qcow2`,
//! then the qcow2 boots under qemu-system-x86_64 with TCG (no KVM for the
//! user) twice at once: SeaBIOS (GRUB's boot.img → core.img in the BIOS boot
//! partition) and OVMF (shim → signed GRUB from the ESP), together with the
//! same tree assembled with `--layout mbr -t qcow2,vmdk` under SeaBIOS
//! (core.img in the gap after the MBR), booted from its streamOptimized
//! vmdk (`qemu-img check`, and `compare` with its qcow2). Each must print
//! the kernel command line dibr wrote and reach the serial login prompt
//! within 5 minutes. A second assembly
//! must give byte-identical raw and qcow2.
//!
//! Then `dibr build dibr-test-bootable vm block-device-efi -t qcow2` (the
//! `bootloader` element prepares core.img with the image's own
//! grub-mkimage, grub.cfg and the ESP loaders inside the sandbox) and the
//! result boots under SeaBIOS and OVMF the same way.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::build::{add_shipped, build_cmd, stage, USER};
use common::vm::{self, as_user, Vm, OVMF_CODE, OVMF_VARS};
use common::*;

/// The tests take turns: each runs its VMs at once on the 2 cores.
static VMS: std::sync::Mutex<()> = std::sync::Mutex::new(());

const BOOT_TIMEOUT: Duration = Duration::from_secs(300);
const PACKAGES: &str = "linux-image-cloud-amd64,systemd-sysv,udev,initramfs-tools,\
grub-pc-bin,grub-efi-amd64-bin,shim-signed,grub-efi-amd64-signed";

/// The environment of every command here: reproducible outputs, a short
/// GRUB menu.
const ENV: &[(&str, &str)] = &[
    ("SOURCE_DATE_EPOCH", "1700000000"),
    ("DIB_GRUB_TIMEOUT", "1"),
];

/// The bootable root tarball, made rootless by the CI user (cached; the
/// tests of this binary run in parallel, so one makes it, the others wait).
fn boot_rootfs(test: &str) -> Option<PathBuf> {
    static MAKING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _making = MAKING.lock().unwrap_or_else(|p| p.into_inner());
    let tar = common::build::user_cache("boot").join("bookworm-boot.tar");
    common::build::mmdebstrap_tar(
        test,
        &tar,
        ENV,
        &["--variant=apt".into(), format!("--include={PACKAGES}")],
    )
}

fn start_vm(disk: &Path, log: &Path, uefi_vars: Option<&Path>) -> Vm {
    let mut c = vm::qemu(log, 1024, uefi_vars);
    // qcow2, or vmdk (streamOptimized) by the extension.
    let format = match disk.extension().and_then(|e| e.to_str()) {
        Some("vmdk") => "vmdk",
        _ => "qcow2",
    };
    c.arg("-drive").arg(format!(
        "file={},format={format},if=virtio,snapshot=on",
        disk.display()
    ));
    vm::start(c)
}

fn assemble(bin: &Path, from: &Path, out: &Path, layout: &str, types: &str) {
    let o = run(as_user(bin, ENV)
        .args(["assemble", "--layout", layout, "-t", types, "--from"])
        .arg(from)
        .arg("-o")
        .arg(out));
    assert!(o.status.success(), "dibr assemble failed\n{}", out_text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    let mut wants = vec!["BIOS: GRUB boot.img in sector 0"];
    if layout == "efi" {
        wants.push("UEFI: /usr/lib/shim/shimx64.efi.signed");
    }
    for want in wants {
        assert!(
            err.contains(want),
            "assemble did not report {want:?}:\n{err}"
        );
    }
}

/// Boots `(disk, uefi?, name, root partition)` at once; each must reach
/// the login prompt with dibr's command line, its root ext4 mounted from
/// `vdaN`, through the firmware it was given.
fn boot_all(test: &str, out: &Path, disks: &[(&Path, bool, &str, u32)]) {
    let mut vms = Vec::new();
    let t0 = Instant::now();
    for (disk, uefi, name, _) in disks {
        let log = out.join(format!("{name}.log"));
        let vars = uefi.then(|| {
            let v = out.join(format!("{name}.OVMF_VARS.fd"));
            fs::copy(OVMF_VARS, &v).unwrap();
            run_ok(Command::new("chown").arg(USER).arg(&v));
            v
        });
        vms.push((start_vm(disk, &log, vars.as_deref()), log));
    }
    for ((vm, log), (_, uefi, name, part)) in vms.iter_mut().zip(disks) {
        vm::wait_for(vm, log, " login:", name, t0, BOOT_TIMEOUT);
        let t = t0.elapsed();
        eprintln!("{test}: {name} → login prompt in {t:?}");
        let text = String::from_utf8_lossy(&fs::read(&*log).unwrap()).into_owned();
        assert!(
            text.contains("root=LABEL=cloudimg-rootfs ro console=tty0 console=ttyS0,115200"),
            "{name}: the kernel command line is not the one dibr's grub.cfg gives"
        );
        assert!(
            text.contains(&format!("EXT4-fs (vda{part}): mounted filesystem")),
            "{name}: the root ext4 (vda{part}) was not mounted by the kernel"
        );
        assert_eq!(
            text.contains("efi: EFI v"),
            *uefi,
            "{name}: the kernel's view of the firmware (UEFI or BIOS) is not the one booted"
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

    let _vms = VMS.lock().unwrap_or_else(|p| p.into_inner());

    let t0 = Instant::now();
    assemble(&s.bin, &tar, &s.out.join("disk"), "efi", "raw,qcow2");
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
    assemble(&s.bin, &tar, &s.out.join("again"), "efi", "raw,qcow2");
    for ext in ["raw", "qcow2"] {
        assert_eq!(
            sha256_file(&s.out.join(format!("disk.{ext}"))),
            sha256_file(&s.out.join(format!("again.{ext}"))),
            "two assemblies with SOURCE_DATE_EPOCH differ in the {ext} output"
        );
        fs::remove_file(s.out.join(format!("again.{ext}"))).unwrap();
    }
    fs::remove_file(&raw).unwrap();
    // The mbr disk boots from its streamOptimized vmdk (issue 17), the
    // same disk as its qcow2.
    assemble(&s.bin, &tar, &s.out.join("mbr"), "mbr", "qcow2,vmdk");
    let mbr = s.out.join("mbr.vmdk");
    run_ok(
        Command::new(tool("qemu-img"))
            .args(["check", "-q", "-f", "vmdk"])
            .arg(&mbr),
    );
    run_ok(
        Command::new(tool("qemu-img"))
            .args(["compare", "-q", "-f", "qcow2", "-F", "vmdk"])
            .arg(s.out.join("mbr.qcow2"))
            .arg(&mbr),
    );

    boot_all(
        test,
        &s.out,
        &[
            (&qcow2, false, "efi-layout-seabios", 3),
            (&qcow2, true, "efi-layout-ovmf", 3),
            (&mbr, false, "mbr-layout-vmdk-seabios", 1),
        ],
    );
}

#[test]
fn dibr_build_vm_boots_with_seabios_and_ovmf() {
    let test = "dibr_build_vm_boots_with_seabios_and_ovmf";
    if !require(
        test,
        true,
        &[
            "mmdebstrap",
            "qemu-system-x86_64",
            "qemu-img",
            "setpriv",
            "newuidmap",
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
    add_shipped(&s, &["vm", "bootloader", "block-device-efi"]);
    run_ok(Command::new("chmod").arg("a+r").arg(&tar));
    let _vms = VMS.lock().unwrap_or_else(|p| p.into_inner());
    let t0 = Instant::now();
    let tar_s = tar.display().to_string();
    let o = build_cmd(
        &s,
        &[
            // -v: the bootloader hook's line is read from the terminal.
            "-v",
            "-n",
            "-t",
            "qcow2",
            "-o",
            "vm",
            "dibr-test-bootable",
            "vm",
            "block-device-efi",
        ],
        &[
            ("DIB_DIBR_TEST_ROOTFS", tar_s.as_str()),
            ("DIB_GRUB_TIMEOUT", "1"),
            ("SOURCE_DATE_EPOCH", "1700000000"),
        ],
    )
    .output()
    .unwrap();
    let text = out_text(&o);
    assert!(o.status.success(), "{test}: dibr build failed\n{text}");
    eprintln!("{test}: dibr build vm -t qcow2: {:?}", t0.elapsed());
    // The bootloader element prepared it all in the sandbox; the assembler
    // only placed it.
    for want in [
        "bootloader: core.img, grub.cfg",
        "the tree's /boot/grub/i386-pc/core.img",
        "UEFI: the tree's own /boot/efi/EFI/BOOT/BOOTX64.EFI",
        "grub.cfg: the tree's /boot/grub/grub.cfg",
    ] {
        assert!(
            text.contains(want),
            "{test}: build output lacks {want:?}\n{text}"
        );
    }
    let qcow2 = s.out.join("vm.qcow2");
    run_ok(
        Command::new(tool("qemu-img"))
            .args(["check", "-q"])
            .arg(&qcow2),
    );
    boot_all(
        test,
        &s.out,
        &[
            (&qcow2, false, "build-vm-seabios", 3),
            (&qcow2, true, "build-vm-ovmf", 3),
        ],
    );
}
