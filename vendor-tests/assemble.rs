//! `dibr assemble` (issue 4, first slice): a root tarball into a GPT disk
//! with DIB's block-device-efi layout, judged by the real tools: `sgdisk -v`
//! / `-p`, `partx`, `e2fsck -fn` on the root partition, `fsck.fat -n` and
//! mtools on the ESP, `blkid` against the generated fstab, `qemu-img check`
//! and `compare` for qcow2 and vhd, and byte-identical outputs with
//! SOURCE_DATE_EPOCH. Runs as an ordinary user where possible: nothing here
//! needs root.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use common::*;

const MIB: u64 = 1 << 20;

fn assemble(dir: &Path, tar: &Path, name: &str, types: &str, epoch: Option<&str>) -> String {
    let mut c = Command::new(dibr_bin());
    c.args(["assemble", "--from"])
        .arg(tar)
        .args(["-o", name, "-t", types])
        .current_dir(dir);
    match epoch {
        Some(e) => c.env("SOURCE_DATE_EPOCH", e),
        None => c.env_remove("SOURCE_DATE_EPOCH"),
    };
    let o = c.output().unwrap();
    let text = out_text(&o);
    assert!(o.status.success(), "assemble failed\n{text}");
    text
}

fn extract(disk: &Path, out: &Path, start: u64, len: Option<u64>) {
    let mut c = Command::new("dd");
    c.arg(format!("if={}", disk.display()))
        .arg(format!("of={}", out.display()))
        .arg("bs=1M")
        .arg(format!("skip={}", start / MIB))
        .args(["conv=sparse", "status=none"]);
    if let Some(l) = len {
        c.arg(format!("count={}", l / MIB));
    }
    run_ok(&mut c);
}

#[test]
fn efi_layout_disk_is_clean_for_every_tool() {
    let test = "efi_layout_disk_is_clean_for_every_tool";
    if !require(
        test,
        false,
        &[
            "sgdisk", "partx", "e2fsck", "debugfs", "fsck.fat", "mcopy", "blkid", "qemu-img",
            "tar", "dd",
        ],
    ) {
        return;
    }
    let work = scratch(test);
    let dir = work.path();
    let tree = dir.join("tree");
    fs::create_dir_all(tree.join("boot/efi/EFI/BOOT")).unwrap();
    fs::create_dir_all(tree.join("etc")).unwrap();
    let efi = prng_bytes(7, 300_000);
    fs::write(tree.join("boot/efi/EFI/BOOT/BOOTX64.EFI"), &efi).unwrap();
    fs::write(tree.join("boot/efi/EFI/BOOT/grub.cfg"), "set timeout=1\n").unwrap();
    fs::write(tree.join("etc/fstab"), "# replaced by dibr\n").unwrap();
    fs::write(tree.join("etc/hostname"), "dibr\n").unwrap();
    let tar = dir.join("root.tar");
    run_ok(
        Command::new("tar")
            .arg("-C")
            .arg(&tree)
            .arg("-cf")
            .arg(&tar)
            .arg("."),
    );
    assemble(dir, &tar, "disk", "raw,qcow2,vhd", Some("1700000000"));
    let raw = dir.join("disk.raw");

    // Partition table: DIB's efi layout, 1 MiB aligned, root last.
    let v = run(Command::new(tool("sgdisk")).arg("-v").arg(&raw));
    assert!(
        out_text(&v).contains("No problems found"),
        "{test}: sgdisk -v\n{}",
        out_text(&v)
    );
    let p = run_ok(
        Command::new("partx")
            .args([
                "--show",
                "--bytes",
                "--noheadings",
                "--output",
                "NR,START,SIZE,NAME",
            ])
            .arg(&raw),
    );
    let rows: Vec<Vec<String>> = String::from_utf8_lossy(&p.stdout)
        .lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect();
    assert_eq!(rows.len(), 3, "{test}: partitions {rows:?}");
    assert_eq!(
        rows[0][1..],
        ["2048".to_string(), (550 * MIB).to_string(), "ESP".into()],
        "{test}: ESP row"
    );
    assert_eq!(
        rows[1][1..],
        ["1128448".to_string(), (8 * MIB).to_string(), "BSP".into()],
        "{test}: BSP row"
    );
    assert_eq!(rows[2][1], "1144832", "{test}: root start");
    assert_eq!(rows[2][3], "root", "{test}: root name");
    let root_start = 1144832 * 512;

    // Filesystems.
    let root = dir.join("root.img");
    extract(&raw, &root, root_start, None);
    e2fsck_ok(&root);
    let esp = dir.join("esp.img");
    extract(&raw, &esp, MIB, Some(550 * MIB));
    let f = run(Command::new(tool("fsck.fat")).arg("-n").arg(&esp));
    assert!(f.status.success(), "{test}: fsck.fat -n\n{}", out_text(&f));
    let back = dir.join("back.efi");
    run_ok(
        Command::new("mcopy")
            .args(["-n", "-i"])
            .arg(&esp)
            .arg("::EFI/BOOT/BOOTX64.EFI")
            .arg(&back),
    );
    assert!(
        fs::read(&back).unwrap() == efi,
        "{test}: BOOTX64.EFI differs on the ESP"
    );

    // fstab: root by label, ESP by the UUID blkid reads.
    let cat = run_ok(
        Command::new(tool("debugfs"))
            .args(["-R", "cat /etc/fstab"])
            .arg(&root),
    );
    let fstab = String::from_utf8_lossy(&cat.stdout).into_owned();
    let b = run_ok(
        Command::new("blkid")
            .args(["-s", "UUID", "-o", "value"])
            .arg(&esp),
    );
    let esp_uuid = String::from_utf8_lossy(&b.stdout).trim().to_string();
    assert!(
        fstab.contains("LABEL=cloudimg-rootfs / ext4"),
        "{test}: fstab\n{fstab}"
    );
    assert!(
        fstab.contains(&format!("UUID={esp_uuid} /boot/efi vfat")),
        "{test}: fstab lacks ESP {esp_uuid}\n{fstab}"
    );
    let ls = run_ok(
        Command::new(tool("debugfs"))
            .args(["-R", "ls /boot/efi"])
            .arg(&root),
    );
    assert!(
        !String::from_utf8_lossy(&ls.stdout).contains("EFI"),
        "{test}: ESP files leaked into the root fs"
    );

    // Conversions.
    let c = run(Command::new("qemu-img")
        .arg("check")
        .arg(dir.join("disk.qcow2")));
    assert!(
        c.status.success() && out_text(&c).contains("No errors"),
        "{test}: qemu-img check\n{}",
        out_text(&c)
    );
    let c = run(Command::new("qemu-img")
        .arg("compare")
        .arg(&raw)
        .arg(dir.join("disk.qcow2")));
    assert!(
        c.status.success(),
        "{test}: qemu-img compare qcow2\n{}",
        out_text(&c)
    );
    let c = run(Command::new("qemu-img")
        .args(["compare", "-f", "raw", "-F", "vpc"])
        .arg(&raw)
        .arg(dir.join("disk.vhd")));
    assert!(
        c.status.success(),
        "{test}: qemu-img compare vhd\n{}",
        out_text(&c)
    );

    // Reproducible: a second assembly is byte-identical.
    assemble(dir, &tar, "again", "raw,qcow2", Some("1700000000"));
    for ext in ["raw", "qcow2"] {
        assert_eq!(
            sha256_file(&dir.join(format!("disk.{ext}"))),
            sha256_file(&dir.join(format!("again.{ext}"))),
            "{test}: {ext} differs between two assemblies"
        );
    }
}

#[test]
fn esp_symlink_is_refused_and_nothing_is_left() {
    let test = "esp_symlink_is_refused_and_nothing_is_left";
    if !require(test, false, &["tar"]) {
        return;
    }
    let work = scratch(test);
    let dir = work.path();
    let tree = dir.join("tree");
    fs::create_dir_all(tree.join("boot/efi/EFI")).unwrap();
    std::os::unix::fs::symlink("x", tree.join("boot/efi/EFI/link")).unwrap();
    let tar = dir.join("root.tar");
    run_ok(
        Command::new("tar")
            .arg("-C")
            .arg(&tree)
            .arg("-cf")
            .arg(&tar)
            .arg("."),
    );
    let out = dir.join("out");
    fs::create_dir(&out).unwrap();
    let o = Command::new(dibr_bin())
        .args(["assemble", "--from"])
        .arg(&tar)
        .args(["-o", "disk", "-t", "raw,qcow2"])
        .current_dir(&out)
        .output()
        .unwrap();
    let text = out_text(&o);
    assert!(!o.status.success(), "{test}: accepted\n{text}");
    assert!(
        text.contains("boot/efi/EFI/link") && text.contains("symlink"),
        "{test}: message\n{text}"
    );
    let left: Vec<_> = fs::read_dir(&out)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "{test}: left behind: {left:?}");
}
