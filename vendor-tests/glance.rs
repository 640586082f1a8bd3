//! Issue 19: the Glance properties beside every disk output
//! (`NAME.<type>.glance.json`) and `dibr check --glance`, on fixture
//! trees assembled by `dibr assemble`: a Debian 13 x86_64 image with
//! both boot paths (efi layout, raw + qcow2 + vhd), an Ubuntu 24.04
//! aarch64 image with only a UEFI loader (gpt layout), a tree-only image
//! (no kernel, no loader; mbr layout) and that image with BIOS boot code
//! put in sector 0 by hand (an image dibr did not make). os_distro and
//! os_version are looked up in the osinfo-db package's database, the
//! hash is `sha512sum`'s, two assemblies give the same JSON, and the
//! `openstack image create` line parses with python-openstackclient's
//! own parser (pip-installed once into the test cache; no cloud).

mod common;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::glance::*;
use common::*;
use serde_json::Value;

const TOOLS: &[&str] = &["tar", "sha512sum", "cpio", "zstd"];
const KVER: &str = "6.1.0-13-test";

/// A 64-byte ELF header for `machine` (little-endian, 64-bit).
fn elf(machine: u16) -> Vec<u8> {
    let mut h = vec![0u8; 64];
    h[..4].copy_from_slice(b"\x7fELF");
    h[4] = 2;
    h[5] = 1;
    h[6] = 1;
    h[16] = 3;
    h[18..20].copy_from_slice(&machine.to_le_bytes());
    h
}

struct Guest {
    os_release: &'static str,
    machine: u16,
    kernel: bool,
    /// modules.builtin and modules.dep lines.
    builtin: &'static str,
    dep: &'static str,
    guest_agent: bool,
    esp_loader: Option<&'static str>,
    /// Modules of a real initramfs (newc cpio, zstd); None: random bytes.
    initrd_modules: Option<&'static [&'static str]>,
}

/// An initramfs as initramfs-tools makes it: an uncompressed early
/// archive, then a zstd-compressed one with the modules.
fn initramfs(dir: &Path, modules: &[&str]) -> Vec<u8> {
    let early = dir.join("early");
    let main = dir.join("main");
    write_file(
        &early.join("kernel/x86/microcode/GenuineIntel.bin"),
        b"ucode",
    );
    for m in modules {
        write_file(
            &main.join(format!("usr/lib/modules/{KVER}/kernel/drivers/{m}.ko")),
            b"\x7fELF",
        );
    }
    write_file(&main.join("init"), b"#!/bin/sh\n");
    let out = dir.join("initrd.img");
    let o = sh(&format!(
        "set -e; (cd {e} && find . | cpio -o -H newc --quiet) > {o}; (cd {m} && find . | cpio -o -H newc --quiet | zstd -q -c) >> {o}",
        e = q(&early),
        m = q(&main),
        o = q(&out)
    ));
    assert!(o.status.success(), "{}", out_text(&o));
    fs::read(out).unwrap()
}

fn guest_tree(root: &Path, g: &Guest) {
    let w = |p: &str, d: &[u8]| write_file(&root.join(p.trim_start_matches('/')), d);
    w("/etc/os-release", g.os_release.as_bytes());
    w("/usr/bin/sh", &elf(g.machine));
    symlink("usr/bin", root.join("bin")).unwrap();
    w("/etc/hostname", b"glance\n");
    if g.kernel {
        w(&format!("/boot/vmlinuz-{KVER}"), &prng_bytes(61, 3 << 20));
        let initrd = match g.initrd_modules {
            Some(m) => initramfs(&root.with_extension("initramfs"), m),
            None => prng_bytes(62, 2 << 20),
        };
        w(&format!("/boot/initrd.img-{KVER}"), &initrd);
        symlink(format!("boot/vmlinuz-{KVER}"), root.join("vmlinuz")).unwrap();
        symlink(format!("boot/initrd.img-{KVER}"), root.join("initrd.img")).unwrap();
        w(
            &format!("/lib/modules/{KVER}/modules.builtin"),
            g.builtin.as_bytes(),
        );
        w(
            &format!("/lib/modules/{KVER}/modules.dep"),
            g.dep.as_bytes(),
        );
    }
    if g.guest_agent {
        w("/usr/sbin/qemu-ga", &elf(g.machine));
        w(
            "/lib/udev/rules.d/60-qemu-guest-agent.rules",
            b"SUBSYSTEM==\"virtio-ports\", ATTR{name}==\"org.qemu.guest_agent.0\", TAG+=\"systemd\", ENV{SYSTEMD_WANTS}=\"qemu-guest-agent.service\"\n",
        );
    }
    if let Some(l) = g.esp_loader {
        w(&format!("/boot/efi/EFI/BOOT/{l}"), &prng_bytes(63, 4096));
    }
}

fn debian() -> Guest {
    Guest {
        os_release: "PRETTY_NAME=\"Debian GNU/Linux 13 (trixie)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"13\"\nVERSION=\"13 (trixie)\"\nVERSION_CODENAME=trixie\nID=debian\n",
        machine: 0x3E,
        kernel: true,
        builtin: "kernel/drivers/virtio/virtio.ko\nkernel/drivers/virtio/virtio_ring.ko\n",
        dep: "kernel/drivers/virtio/virtio_pci.ko:\nkernel/drivers/block/virtio_blk.ko:\nkernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko\n",
        guest_agent: true,
        esp_loader: Some("BOOTX64.EFI"),
        initrd_modules: Some(&["virtio/virtio_pci", "block/virtio_blk", "scsi/sd_mod"]),
    }
}

fn ubuntu_arm64() -> Guest {
    Guest {
        os_release: "PRETTY_NAME=\"Ubuntu 24.04.3 LTS\"\nNAME=\"Ubuntu\"\nVERSION_ID=\"24.04\"\nVERSION_CODENAME=noble\nID=ubuntu\nID_LIKE=debian\n",
        machine: 0xB7,
        kernel: true,
        // virtio_blk built in, no virtio_net: no hw_vif_model.
        builtin: "kernel/drivers/virtio/virtio_pci.ko\nkernel/drivers/block/virtio_blk.ko\n",
        dep: "kernel/drivers/net/e1000e/e1000e.ko:\n",
        guest_agent: false,
        esp_loader: Some("BOOTAA64.EFI"),
        initrd_modules: None,
    }
}

fn tree_only() -> Guest {
    Guest {
        os_release: "ID=debian\nVERSION_ID=\"13\"\n",
        machine: 0x3E,
        kernel: false,
        builtin: "",
        dep: "",
        guest_agent: false,
        esp_loader: None,
        initrd_modules: None,
    }
}

fn assemble(dir: &Path, tree: &Path, name: &str, extra: &[&str]) {
    let tar = dir.join(format!("{name}.tar"));
    run_ok(
        Command::new("tar")
            .arg("-C")
            .arg(tree)
            .arg("-cf")
            .arg(&tar)
            .arg("."),
    );
    let o = run(Command::new(dibr_bin())
        .args(["assemble", "--from"])
        .arg(&tar)
        .args(["-o", name])
        .args(extra)
        .current_dir(dir)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .env_remove("DIB_BLOCK_DEVICE_CONFIG")
        .env_remove("DIB_IMAGE_SIZE"));
    assert!(
        o.status.success(),
        "assemble {name} {extra:?}\n{}",
        out_text(&o)
    );
}

/// python-openstackclient from PyPI in a venv of the test cache (made
/// once): its python.
fn osc_python(test: &str) -> Option<PathBuf> {
    // The tests of this binary share it: one makes it, the others wait.
    static MAKING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = MAKING.lock().unwrap_or_else(|p| p.into_inner());
    let venv = test_cache().join("openstackclient-venv");
    let py = venv.join("bin/python3");
    let have = |py: &Path| {
        Command::new(py)
            .args(["-c", "import openstackclient.image.v2.image"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    if !have(&py) {
        let _ = fs::remove_dir_all(&venv);
        fs::create_dir_all(test_cache()).unwrap();
        let o = run(Command::new("/usr/bin/python3")
            .args(["-m", "venv"])
            .arg(&venv));
        if !o.status.success() {
            assert!(!is_ci(), "{test}: python3 -m venv failed\n{}", out_text(&o));
            skip(test, "python3 -m venv does not work (install python3-venv)");
            return None;
        }
        let o = run(Command::new(venv.join("bin/pip")).args([
            "install",
            "-q",
            "python-openstackclient",
        ]));
        if !o.status.success() {
            let _ = fs::remove_dir_all(&venv);
            assert!(
                !is_ci(),
                "{test}: pip install python-openstackclient failed\n{}",
                out_text(&o)
            );
            skip(test, "pip install python-openstackclient failed (offline?)");
            return None;
        }
    }
    Some(py)
}

/// `openstack image create`'s own argument parser, built as the client
/// builds it (no cloud contacted), given the shell-split line: the parsed
/// options as JSON.
const PARSE: &str = r#"
import json, shlex, sys
from unittest import mock
from openstackclient.image.v2 import image
argv = shlex.split(sys.argv[1])
assert argv[:3] == ["openstack", "image", "create"], argv[:3]
cmd = image.CreateImage(mock.Mock(), mock.Mock())
ns = cmd.get_parser("openstack image create").parse_args(argv[3:])
print(json.dumps({k: getattr(ns, k) for k in
    ["name", "filename", "disk_format", "container_format", "min_disk", "min_ram", "properties"]}))
"#;

/// The command line for `img` parses and carries every property (the
/// hash ones are Glance's to compute: not passed).
fn openstack_line_parses(test: &str, img: &Path) {
    let Some(py) = osc_python(test) else { return };
    let line = dibr::inspect::glance::openstack::command_for_output(img).unwrap();
    let t0 = std::time::Instant::now();
    let o = run(Command::new(py).args(["-c", PARSE, &line]));
    assert!(
        o.status.success(),
        "{test}: the openstack parser refused\n{line}\n{}",
        out_text(&o)
    );
    eprintln!(
        "{test}: openstackclient parsed the line in {:.2}s",
        t0.elapsed().as_secs_f64()
    );
    let ns: Value = serde_json::from_slice(&o.stdout).unwrap();
    let p = props(&side(img));
    assert_eq!(ns["filename"], img.display().to_string());
    assert_eq!(
        ns["name"],
        img.file_stem().unwrap().to_string_lossy().as_ref()
    );
    for (k, v) in &p {
        match k.as_str() {
            "os_hash_algo" | "os_hash_value" => assert!(!line.contains(k.as_str()), "{line}"),
            "disk_format" | "container_format" | "min_disk" | "min_ram" => {
                assert_eq!(&ns[k], v, "{test}: {k} in\n{line}")
            }
            _ => assert_eq!(&ns["properties"][k], v, "{test}: property {k} in\n{line}"),
        }
    }
}

#[test]
fn debian_x86_64_outputs_carry_their_properties() {
    let test = "debian_x86_64_outputs_carry_their_properties";
    if !require(test, false, TOOLS) {
        return;
    }
    let work = scratch(test);
    let dir = work.path();
    guest_tree(&dir.join("tree"), &debian());
    let again = dir.join("again");
    fs::create_dir_all(&again).unwrap();
    for d in [dir, again.as_path()] {
        assemble(
            d,
            &dir.join("tree"),
            "deb",
            &["-t", "raw,qcow2,vhd", "--layout", "efi"],
        );
    }
    let raw_len = fs::metadata(dir.join("deb.raw")).unwrap().len();
    for ext in ["raw", "qcow2", "vhd"] {
        let img = dir.join(format!("deb.{ext}"));
        let p = props(&side(&img));
        expect(
            test,
            &p,
            &[
                ("architecture", "x86_64"),
                ("os_distro", "debian"),
                ("os_version", "13"),
                ("hw_firmware_type", "uefi"),
                ("hw_disk_bus", "virtio"),
                ("hw_vif_model", "virtio"),
                ("hw_qemu_guest_agent", "yes"),
                ("disk_format", ext),
                ("container_format", "bare"),
                ("os_hash_algo", "sha512"),
                ("dibr_version", env!("CARGO_PKG_VERSION")),
                ("dibr_source_date_epoch", "1700000000"),
            ],
            &["hw_machine_type", "dibr_elements"],
        );
        assert_eq!(p["min_ram"], 512);
        assert_eq!(p["min_disk"], raw_len.div_ceil(1 << 30));
        assert_eq!(
            s(&p, "os_hash_value").unwrap(),
            sha512sum(&img),
            "{test}: {ext}"
        );
        // Two assemblies, same SOURCE_DATE_EPOCH: the same JSON, byte for byte.
        let other = again.join(format!("deb.{ext}"));
        assert_eq!(
            fs::read(side(&img)).unwrap(),
            fs::read(side(&other)).unwrap(),
            "{test}: {ext}"
        );
        if ext != "vhd" {
            // check --glance reads the same from the image (no provenance).
            let mut p = p.clone();
            p.retain(|k, _| !k.starts_with("dibr_"));
            assert_eq!(check_glance(&img), p, "{test}: check --glance {ext}");
        }
    }
    in_osinfo(test, &props(&side(&dir.join("deb.qcow2"))));
    openstack_line_parses(test, &dir.join("deb.qcow2"));
    // BIOS boot code added by hand (an image dibr did not make): both
    // boot paths, no hw_firmware_type.
    let hybrid = dir.join("hybrid.raw");
    fs::copy(dir.join("deb.raw"), &hybrid).unwrap();
    put_boot_code(&hybrid);
    let p = check_glance(&hybrid);
    expect(test, &p, &[("os_distro", "debian")], &["hw_firmware_type"]);
}

/// 440 bytes of "boot code" in sector 0, the partition table kept.
fn put_boot_code(img: &Path) {
    use std::os::unix::fs::FileExt;
    let f = fs::OpenOptions::new().write(true).open(img).unwrap();
    f.write_all_at(&[0xEB; 440], 0).unwrap();
}

#[test]
fn ubuntu_arm64_uefi_only() {
    let test = "ubuntu_arm64_uefi_only";
    if !require(test, false, TOOLS) {
        return;
    }
    let work = scratch(test);
    let dir = work.path();
    guest_tree(&dir.join("tree"), &ubuntu_arm64());
    assemble(
        dir,
        &dir.join("tree"),
        "noble",
        &["-t", "qcow2", "--layout", "efi"],
    );
    let img = dir.join("noble.qcow2");
    let p = props(&side(&img));
    expect(
        test,
        &p,
        &[
            ("architecture", "aarch64"),
            ("hw_machine_type", "virt"),
            ("hw_firmware_type", "uefi"),
            ("os_distro", "ubuntu"),
            ("os_version", "24.04"),
            ("hw_disk_bus", "virtio"),
            ("disk_format", "qcow2"),
        ],
        &["hw_vif_model", "hw_qemu_guest_agent"],
    );
    assert_eq!(s(&p, "os_hash_value").unwrap(), sha512sum(&img));
    in_osinfo(test, &p);
    openstack_line_parses(test, &img);
}

#[test]
fn tree_only_image_and_bios_boot_code() {
    let test = "tree_only_image_and_bios_boot_code";
    if !require(test, false, TOOLS) {
        return;
    }
    let work = scratch(test);
    let dir = work.path();
    guest_tree(&dir.join("tree"), &tree_only());
    assemble(
        dir,
        &dir.join("tree"),
        "plain",
        &["-t", "raw", "--layout", "mbr"],
    );
    let img = dir.join("plain.raw");
    let p = props(&side(&img));
    expect(
        test,
        &p,
        &[
            ("architecture", "x86_64"),
            ("os_distro", "debian"),
            ("os_version", "13"),
            ("disk_format", "raw"),
        ],
        &[
            "hw_firmware_type",
            "hw_disk_bus",
            "hw_vif_model",
            "hw_machine_type",
            "hw_qemu_guest_agent",
        ],
    );
    assert_eq!(p["min_ram"], 512);
    assert_eq!(s(&p, "os_hash_value").unwrap(), sha512sum(&img));
    let bios = dir.join("bios.raw");
    fs::copy(&img, &bios).unwrap();
    put_boot_code(&bios);
    expect(
        test,
        &check_glance(&bios),
        &[("hw_firmware_type", "bios")],
        &[],
    );
    // The flavor disk: WARN when the virtual size is larger.
    let gib = fs::metadata(&img).unwrap().len().div_ceil(1 << 30);
    for (flavor, want) in [(gib - 1, "WARN flavor-disk"), (gib, "PASS flavor-disk")] {
        let o = run(Command::new(dibr_bin())
            .args(["check", "--flavor-disk", &flavor.to_string()])
            .arg(&img));
        assert!(
            out_text(&o).contains(want),
            "{test}: --flavor-disk {flavor}\n{}",
            out_text(&o)
        );
    }
}

#[test]
fn virtio_blk_missing_from_the_initramfs() {
    let test = "virtio_blk_missing_from_the_initramfs";
    if !require(test, false, &["tar", "cpio", "zstd"]) {
        return;
    }
    let work = scratch(test);
    let dir = work.path();
    // virtio_blk is a module of the kernel but not in the initramfs: the
    // root disk would not be found on a virtio bus; the NIC's module is
    // loaded from the root, so hw_vif_model stays.
    let g = Guest {
        initrd_modules: Some(&["virtio/virtio_pci", "scsi/sd_mod"]),
        ..debian()
    };
    guest_tree(&dir.join("tree"), &g);
    assemble(
        dir,
        &dir.join("tree"),
        "noblk",
        &["-t", "raw", "--layout", "efi"],
    );
    let img = dir.join("noblk.raw");
    let o = run(Command::new(dibr_bin())
        .arg("check")
        .arg("--glance")
        .arg(&img));
    let p = props(&side(&img));
    let text = out_text(&o);
    expect(test, &p, &[("hw_vif_model", "virtio")], &[]);
    assert!(
        !p.contains_key("hw_disk_bus"),
        "{test}: hw_disk_bus\n{text}"
    );
}

/// The boot test's Debian bookworm tree (real kernel, zstd initramfs,
/// GRUB for BIOS and UEFI), when the test cache has it.
#[test]
fn bookworm_tree_properties() {
    let test = "bookworm_tree_properties";
    let tar = test_cache().join("boot/bookworm-boot.tar");
    if !tar.exists() {
        skip(
            test,
            "no bookworm-boot.tar in the test cache (the boot test makes it)",
        );
        return;
    }
    let work = scratch(test);
    let dir = work.path();
    let o = run(Command::new(dibr_bin())
        .args([
            "assemble", "-t", "qcow2", "--layout", "efi", "-o", "bw", "--from",
        ])
        .arg(&tar)
        .current_dir(dir)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .env_remove("DIB_BLOCK_DEVICE_CONFIG")
        .env_remove("DIB_IMAGE_SIZE"));
    assert!(o.status.success(), "{}", out_text(&o));
    let img = dir.join("bw.qcow2");
    let p = props(&side(&img));
    // Both boot paths (GRUB in the MBR and BOOTX64.EFI): no firmware type.
    expect(
        test,
        &p,
        &[
            ("architecture", "x86_64"),
            ("os_distro", "debian"),
            ("os_version", "12"),
            ("hw_disk_bus", "virtio"),
            ("hw_vif_model", "virtio"),
            ("disk_format", "qcow2"),
        ],
        &["hw_firmware_type", "hw_machine_type"],
    );
    assert_eq!(s(&p, "os_hash_value").unwrap(), sha512sum(&img));
    // bookworm's own osinfo-db (0.20221130) predates debian12: .ci/run
    // installs trixie's package, which knows debian12/13 and ubuntu24.04.
    in_osinfo(test, &p);
    let mut p = p;
    p.retain(|k, _| !k.starts_with("dibr_"));
    assert_eq!(check_glance(&img), p);
}
