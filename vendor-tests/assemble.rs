//! `dibr assemble` (issue 4): a root tarball into a disk laid out by DIB's
//! block-device YAML — the shipped efi, gpt and mbr layouts and a custom
//! MBR config with logical partitions, a separate ext4 /boot and a vfat
//! /boot/efi — judged by the real tools: `sgdisk -v`/`-p`, `partx`,
//! `e2fsck -fn` on every ext4 partition (copied out with dd: e2fsck has no
//! offset option), `fsck.fat -n` and mtools on the vfat ones, `blkid`
//! labels against the generated fstab, debugfs for which filesystem got
//! which file, `qemu-img check`/`compare` for qcow2, vhd and vmdk, byte-identical
//! outputs with SOURCE_DATE_EPOCH, and the refusals (xfs, an lvm entry
//! without PVs, a tree that does not fit --image-size) leaving nothing
//! behind. Nothing here needs root.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

const MIB: u64 = 1 << 20;
const EPOCH: &str = "1700000000";
const TOOLS: &[&str] = &[
    "sgdisk", "partx", "e2fsck", "debugfs", "fsck.fat", "mcopy", "blkid", "qemu-img", "tar", "dd",
];

fn assemble_cmd(dir: &Path, tar: &Path, name: &str, extra: &[&str]) -> Command {
    let mut c = Command::new(dibr_bin());
    c.args(["assemble", "--from"])
        .arg(tar)
        .args(["-o", name])
        .args(extra)
        .current_dir(dir)
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .env_remove("DIB_BLOCK_DEVICE_CONFIG")
        .env_remove("DIB_IMAGE_SIZE");
    c
}

fn assemble(dir: &Path, tar: &Path, name: &str, extra: &[&str]) -> String {
    let o = assemble_cmd(dir, tar, name, extra).output().unwrap();
    let text = out_text(&o);
    assert!(o.status.success(), "assemble {extra:?} failed\n{text}");
    text
}

/// partx rows: (NR, START sector, SIZE bytes, TYPE, FLAGS, NAME).
fn partx(disk: &Path) -> Vec<Vec<String>> {
    let p = run_ok(
        Command::new("partx")
            .args([
                "--bytes",
                "--noheadings",
                "--raw",
                "--output",
                "NR,START,SIZE,TYPE,FLAGS,NAME",
            ])
            .arg(disk),
    );
    String::from_utf8_lossy(&p.stdout)
        .lines()
        .map(|l| l.split(' ').map(str::to_string).collect())
        .collect()
}

fn row_bytes(r: &[String]) -> (u64, u64) {
    (r[1].parse::<u64>().unwrap() * 512, r[2].parse().unwrap())
}

fn tar_of(dir: &Path, tree: &Path) -> PathBuf {
    let tar = dir.join("root.tar");
    run_ok(
        Command::new("tar")
            .arg("-C")
            .arg(tree)
            .arg("-cf")
            .arg(&tar)
            .arg("."),
    );
    tar
}

fn sgdisk_clean(test: &str, raw: &Path) {
    let v = run(Command::new(tool("sgdisk")).arg("-v").arg(raw));
    assert!(
        out_text(&v).contains("No problems found"),
        "{test}: sgdisk -v\n{}",
        out_text(&v)
    );
}

fn fat_clean(test: &str, img: &Path) {
    let f = run(Command::new(tool("fsck.fat")).arg("-n").arg(img));
    assert!(f.status.success(), "{test}: fsck.fat -n\n{}", out_text(&f));
}

fn blkid(img: &Path, tag: &str) -> String {
    let b = run(Command::new(tool("blkid"))
        .args(["-s", tag, "-o", "value"])
        .arg(img));
    String::from_utf8_lossy(&b.stdout).trim().to_string()
}

fn debugfs(img: &Path, req: &str) -> String {
    let o = run(Command::new(tool("debugfs")).args(["-R", req]).arg(img));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn qemu_ok(test: &str, raw: &Path, other: &Path, fmt: &str) {
    if fmt == "qcow2" || fmt == "vmdk" {
        let c = run(Command::new("qemu-img")
            .args(["check", "-f", fmt])
            .arg(other));
        assert!(
            c.status.success() && out_text(&c).contains("No errors"),
            "{test}: qemu-img check\n{}",
            out_text(&c)
        );
    }
    let c = run(Command::new("qemu-img")
        .args(["compare", "-f", "raw", "-F", fmt])
        .arg(raw)
        .arg(other));
    assert!(
        c.status.success(),
        "{test}: qemu-img compare {fmt}\n{}",
        out_text(&c)
    );
}

fn left_in(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect()
}

#[test]
fn efi_layout_disk_is_clean_for_every_tool() {
    let test = "efi_layout_disk_is_clean_for_every_tool";
    if !require(test, false, TOOLS) {
        return;
    }
    let work = scratch(test);
    let dir = work.path();
    let tree = dir.join("tree");
    fs::create_dir_all(tree.join("boot/efi/EFI/BOOT")).unwrap();
    fs::create_dir_all(tree.join("etc/dib-manifests")).unwrap();
    let efi = prng_bytes(7, 300_000);
    fs::write(tree.join("boot/efi/EFI/BOOT/BOOTX64.EFI"), &efi).unwrap();
    fs::write(tree.join("boot/efi/EFI/BOOT/grub.cfg"), "set timeout=1\n").unwrap();
    fs::write(tree.join("etc/fstab"), "# replaced by dibr\n").unwrap();
    fs::write(tree.join("etc/hostname"), "dibr\n").unwrap();
    fs::write(tree.join("etc/dib-manifests/dib_environment"), "X=1\n").unwrap();
    let tar = tar_of(dir, &tree);
    let said = assemble(
        dir,
        &tar,
        "disk",
        &[
            "-t",
            "raw,qcow2,vhd,vmdk,tar",
            "--layout",
            "efi",
            "--checksum",
        ],
    );
    // Issue 18 item 4: where the time went, one lap per step.
    let times = said
        .lines()
        .find(|l| l.starts_with("dibr assemble: times: "))
        .unwrap_or_else(|| panic!("{test}: no times line\n{said}"));
    for step in [
        "plan ",
        "tree ",
        "mkfs vfat /boot/efi ",
        "mkfs ext4 / ",
        "partition table ",
        "boot code ",
        "output qcow2 ",
        "output vhd ",
        "output vmdk ",
        "output tar ",
        "total ",
    ] {
        assert!(times.contains(step), "{test}: no '{step}' in {times}");
    }
    let raw = dir.join("disk.raw");

    // Partition table: DIB's efi layout, 1 MiB aligned, root last.
    sgdisk_clean(test, &raw);
    let rows = partx(&raw);
    assert_eq!(rows.len(), 3, "{test}: partitions {rows:?}");
    assert_eq!(
        (
            rows[0][1].as_str(),
            rows[0][2].as_str(),
            rows[0][5].as_str()
        ),
        ("2048", (550 * MIB).to_string().as_str(), "ESP"),
        "{test}: ESP row {rows:?}"
    );
    assert_eq!(
        (
            rows[1][1].as_str(),
            rows[1][2].as_str(),
            rows[1][5].as_str()
        ),
        ("1128448", (8 * MIB).to_string().as_str(), "BSP"),
        "{test}: BSP row {rows:?}"
    );
    assert_eq!(
        (rows[2][1].as_str(), rows[2][5].as_str()),
        ("1144832", "root"),
        "{test}: root row {rows:?}"
    );
    let p = run_ok(Command::new(tool("sgdisk")).arg("-p").arg(&raw));
    let p = out_text(&p);
    assert!(
        p.contains("EF00") && p.contains("EF02") && p.contains("8300"),
        "{test}: sgdisk -p type codes\n{p}"
    );
    // Just large enough: the disk ends 1 MiB after root (backup GPT).
    let (root_start, root_size) = row_bytes(&rows[2]);
    assert_eq!(
        fs::metadata(&raw).unwrap().len(),
        root_start + root_size + MIB,
        "{test}: disk size"
    );

    // Filesystems.
    let root = dir.join("root.img");
    extract(&raw, &root, root_start, root_size);
    e2fsck_ok(&root);
    let esp = dir.join("esp.img");
    extract(&raw, &esp, MIB, 550 * MIB);
    fat_clean(test, &esp);
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

    // fstab as DIB's writefstab: LABEL= for both, labels blkid reads back.
    let fstab = debugfs(&root, "cat /etc/fstab");
    assert_eq!(blkid(&root, "LABEL"), "cloudimg-rootfs");
    let esp_label = blkid(&esp, "LABEL");
    assert_eq!(esp_label, "MKFS_ESP", "{test}: ESP label");
    assert_eq!(
        fstab,
        format!("LABEL=cloudimg-rootfs / ext4 defaults 0 1\nLABEL={esp_label} /boot/efi vfat defaults 0 2\n"),
        "{test}: fstab"
    );
    assert!(
        !debugfs(&root, "ls /boot/efi").contains("EFI"),
        "{test}: ESP files leaked into the root fs"
    );

    // Conversions, the tar of the same tree, checksums, manifests.
    qemu_ok(test, &raw, &dir.join("disk.qcow2"), "qcow2");
    qemu_ok(test, &raw, &dir.join("disk.vhd"), "vpc");
    qemu_ok(test, &raw, &dir.join("disk.vmdk"), "vmdk");
    let t = run_ok(
        Command::new("tar")
            .arg("-xOf")
            .arg(dir.join("disk.tar"))
            .arg("etc/fstab"),
    );
    assert_eq!(
        String::from_utf8_lossy(&t.stdout),
        fstab,
        "{test}: tar fstab"
    );
    for ext in ["raw", "qcow2", "vhd", "vmdk", "tar"] {
        let c = run(Command::new("sha256sum")
            .arg("-c")
            .arg(format!("disk.{ext}.sha256"))
            .current_dir(dir));
        assert!(c.status.success(), "{test}: sha256 {ext}\n{}", out_text(&c));
        assert!(dir.join(format!("disk.{ext}.md5")).is_file());
    }
    assert_eq!(
        fs::read_to_string(dir.join("disk.d/dib-manifests/dib_environment")).unwrap(),
        "X=1\n",
        "{test}: manifests in NAME.d"
    );

    // Reproducible: a second assembly is byte-identical (under the same
    // name: the vmdk's descriptor names its file).
    fs::create_dir(dir.join("again")).unwrap();
    assemble(dir, &tar, "again/disk", &["-t", "raw,qcow2,vmdk"]);
    for ext in ["raw", "qcow2", "vmdk"] {
        assert_eq!(
            sha256_file(&dir.join(format!("disk.{ext}"))),
            sha256_file(&dir.join(format!("again/disk.{ext}"))),
            "{test}: {ext} differs between two assemblies"
        );
    }
    // qcow2 alone (its scratch raw disk neither named nor synced): the
    // same bytes as next to the raw output.
    fs::create_dir(dir.join("alone")).unwrap();
    assemble(dir, &tar, "alone/disk", &["-t", "qcow2"]);
    assert_eq!(
        sha256_file(&dir.join("disk.qcow2")),
        sha256_file(&dir.join("alone/disk.qcow2")),
        "{test}: qcow2 alone differs from qcow2 next to raw"
    );
    assert!(
        !dir.join("alone/disk.raw").exists(),
        "{test}: raw left behind"
    );
}

fn small_tree(dir: &Path) -> PathBuf {
    let tree = dir.join("tree");
    fs::create_dir_all(tree.join("usr/bin")).unwrap();
    fs::create_dir_all(tree.join("boot")).unwrap();
    fs::create_dir_all(tree.join("etc")).unwrap();
    fs::write(tree.join("usr/bin/tool"), prng_bytes(3, 200_000)).unwrap();
    fs::hard_link(tree.join("usr/bin/tool"), tree.join("usr/bin/tool2")).unwrap();
    fs::write(tree.join("boot/vmlinuz"), prng_bytes(4, 100_000)).unwrap();
    fs::write(tree.join("etc/hostname"), "dibr\n").unwrap();
    tar_of(dir, &tree)
}

#[test]
fn gpt_and_mbr_layouts() {
    let test = "gpt_and_mbr_layouts";
    if !require(test, false, TOOLS) {
        return;
    }
    let work = scratch(test);
    let dir = work.path();
    let tar = small_tree(dir);

    // gpt: BIOS boot + root (legacy-BIOS-bootable attribute from flags: [boot]).
    assemble(dir, &tar, "g", &["-t", "raw,qcow2", "--layout", "gpt"]);
    let raw = dir.join("g.raw");
    sgdisk_clean(test, &raw);
    let rows = partx(&raw);
    assert_eq!(rows.len(), 2, "{test}: gpt partitions {rows:?}");
    assert_eq!((rows[0][1].as_str(), rows[0][5].as_str()), ("2048", "BSP"));
    assert_eq!(
        (rows[1][1].as_str(), rows[1][5].as_str()),
        ("18432", "root")
    );
    let a = run_ok(
        Command::new(tool("sgdisk"))
            .args(["-A", "2:get:2"])
            .arg(&raw),
    );
    assert!(
        out_text(&a).contains("2:2:1"),
        "{test}: legacy BIOS bootable\n{}",
        out_text(&a)
    );
    let (s, l) = row_bytes(&rows[1]);
    let root = dir.join("g-root.img");
    extract(&raw, &root, s, l);
    e2fsck_ok(&root);
    assert!(debugfs(&root, "ls -l /boot").contains("vmlinuz"));
    assert!(debugfs(&root, "stat /usr/bin/tool2").contains("Links: 2"));
    qemu_ok(test, &raw, &dir.join("g.qcow2"), "qcow2");

    // mbr: one bootable primary 0x83 at 1 MiB (DIB's mbr.py), typeless mkfs
    // made ext4 cloudimg-rootfs by DIB's mkfs_root merge.
    assemble(dir, &tar, "m", &["-t", "raw,qcow2", "--layout", "mbr"]);
    let raw = dir.join("m.raw");
    let rows = partx(&raw);
    assert_eq!(rows.len(), 1, "{test}: mbr partitions {rows:?}");
    assert_eq!(
        (
            rows[0][0].as_str(),
            rows[0][1].as_str(),
            rows[0][3].as_str(),
            rows[0][4].as_str()
        ),
        ("1", "2048", "0x83", "0x80"),
        "{test}: mbr row {rows:?}"
    );
    let (s, l) = row_bytes(&rows[0]);
    let root = dir.join("m-root.img");
    extract(&raw, &root, s, l);
    e2fsck_ok(&root);
    assert_eq!(blkid(&root, "LABEL"), "cloudimg-rootfs");
    assert_eq!(
        debugfs(&root, "cat /etc/fstab"),
        "LABEL=cloudimg-rootfs / ext4 defaults 0 1\n"
    );
    qemu_ok(test, &raw, &dir.join("m.qcow2"), "qcow2");

    // DIB's fallback config (no partitioning): the disk is the filesystem,
    // just large enough, or exactly --image-size (GiB, rounded to 64 KiB).
    let fallback = "- local_loop:\n    name: image0\n    mkfs:\n      name: mkfs_root\n      mount:\n        mount_point: /\n        fstab:\n          options: \"defaults\"\n          fsck-passno: 1\n";
    for (name, size) in [("f", None), ("fs", Some("0.05"))] {
        let mut args = vec!["-t", "raw"];
        if let Some(sz) = size {
            args.extend(["--image-size", sz]);
        }
        let mut c = assemble_cmd(dir, &tar, name, &args);
        c.env("DIB_BLOCK_DEVICE_CONFIG", fallback);
        let o = c.output().unwrap();
        assert!(o.status.success(), "{test}: fallback\n{}", out_text(&o));
        let raw = dir.join(format!("{name}.raw"));
        assert!(
            blkid(&raw, "PTTYPE").is_empty(),
            "{test}: fallback has a partition table"
        );
        e2fsck_ok(&raw);
        assert_eq!(blkid(&raw, "LABEL"), "cloudimg-rootfs");
        if size.is_some() {
            // 0.05 GiB = 52428 KiB, rounded up to 52480 KiB.
            assert_eq!(fs::metadata(&raw).unwrap().len(), 52480 * 1024);
        }
    }
}

/// MBR with a primary vfat ESP, an ext4 /boot and the root as logical
/// partitions; separate filesystems get their own files.
const CUSTOM: &str = "
- local_loop:
    name: image0
- partitioning:
    base: image0
    label: mbr
    partitions:
      - name: esp
        flags: [ primary ]
        type: 'ef'
        size: 40MiB
        mkfs:
          type: vfat
          label: efi
          mount:
            mount_point: /boot/efi
            fstab:
              options: umask=0077
              fsck-passno: 2
      - name: boot
        size: 48MiB
        mkfs:
          type: ext4
          label: boot
          mount:
            mount_point: /boot
            fstab:
              options: defaults,nodev
              dump-freq: 1
              fsck-passno: 2
      - name: root
        size: 100%
        mkfs:
          name: mkfs_root
          mount:
            mount_point: /
            fstab:
              options: defaults
              fsck-passno: 1
";

#[test]
fn custom_yaml_separate_boot_and_vfat() {
    let test = "custom_yaml_separate_boot_and_vfat";
    if !require(test, false, TOOLS) {
        return;
    }
    let work = scratch(test);
    let dir = work.path();
    let tree = dir.join("tree");
    fs::create_dir_all(tree.join("boot/efi/EFI/BOOT")).unwrap();
    fs::create_dir_all(tree.join("etc")).unwrap();
    fs::write(tree.join("boot/vmlinuz"), prng_bytes(5, 120_000)).unwrap();
    fs::write(
        tree.join("boot/efi/EFI/BOOT/BOOTX64.EFI"),
        prng_bytes(6, 5000),
    )
    .unwrap();
    fs::write(tree.join("etc/hostname"), "dibr\n").unwrap();
    let tar = tar_of(dir, &tree);
    let cfg = dir.join("custom.yaml");
    fs::write(&cfg, CUSTOM).unwrap();
    let file_cfg = format!("file://{}", cfg.display());

    for (name, extra) in [("c", None), ("s", Some("300M"))] {
        let mut args = vec!["-t", "raw,qcow2"];
        if let Some(sz) = extra {
            args.extend(["--image-size", sz]);
        }
        let mut c = assemble_cmd(dir, &tar, name, &args);
        c.env("DIB_BLOCK_DEVICE_CONFIG", &file_cfg);
        let o = c.output().unwrap();
        assert!(o.status.success(), "{test}: {name}\n{}", out_text(&o));
        let raw = dir.join(format!("{name}.raw"));
        if extra.is_some() {
            assert_eq!(
                fs::metadata(&raw).unwrap().len(),
                300 * MIB,
                "{test}: --image-size"
            );
        }
        // partx: primary 1, extended 2, logical 5 and 6.
        let rows = partx(&raw);
        let nrs: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
        assert_eq!(
            nrs,
            ["1", "2", "5", "6"],
            "{test}: {name} partitions {rows:?}"
        );
        assert_eq!(rows[0][3], "0xef", "{test}: ESP type");
        assert_eq!(rows[1][3], "0xf", "{test}: extended type");
        let (s, l) = row_bytes(&rows[0]);
        let esp = dir.join(format!("{name}-esp.img"));
        extract(&raw, &esp, s, l);
        fat_clean(test, &esp);
        assert_eq!(blkid(&esp, "LABEL"), "EFI");
        let (s, l) = row_bytes(&rows[2]);
        assert_eq!(l, 48 * MIB, "{test}: /boot size");
        let boot = dir.join(format!("{name}-boot.img"));
        extract(&raw, &boot, s, l);
        e2fsck_ok(&boot);
        assert_eq!(blkid(&boot, "LABEL"), "boot");
        let (s, l) = row_bytes(&rows[3]);
        let root = dir.join(format!("{name}-root.img"));
        extract(&raw, &root, s, l);
        e2fsck_ok(&root);
        // A fixed partition is filled by its filesystem.
        let blocks: u64 = dumpe2fs_h(&boot)["Block count"].parse().unwrap();
        assert_eq!(
            blocks * 4096,
            48 * MIB,
            "{test}: /boot fs fills its partition"
        );
        if extra.is_some() {
            let blocks: u64 = dumpe2fs_h(&root)["Block count"].parse().unwrap();
            assert_eq!(
                blocks * 4096,
                l / 4096 * 4096,
                "{test}: root fills its partition"
            );
        }
        // Each file on its filesystem, mount points as empty directories.
        assert!(
            debugfs(&boot, "ls -l /").contains("vmlinuz"),
            "{test}: /boot fs"
        );
        assert!(
            !debugfs(&root, "ls -l /boot").contains("vmlinuz"),
            "{test}: root has /boot files"
        );
        assert!(
            debugfs(&boot, "ls -l /efi").contains("."),
            "{test}: /boot/efi mount point"
        );
        assert!(
            !debugfs(&boot, "ls -l /efi").contains("EFI"),
            "{test}: ESP files on /boot"
        );
        let m = run_ok(
            Command::new("mdir")
                .args(["-b", "-i"])
                .arg(&esp)
                .arg("::EFI/BOOT"),
        );
        assert!(out_text(&m).contains("BOOTX64.EFI"), "{test}: ESP content");
        assert_eq!(
            debugfs(&root, "cat /etc/fstab"),
            "LABEL=cloudimg-rootfs / ext4 defaults 0 1\nLABEL=boot /boot ext4 defaults,nodev 1 2\nLABEL=EFI /boot/efi vfat umask=0077 0 2\n",
            "{test}: fstab in mount order"
        );
        qemu_ok(test, &raw, &dir.join(format!("{name}.qcow2")), "qcow2");
    }
}

/// (what, extra arguments, DIB_BLOCK_DEVICE_CONFIG, words the message must have)
type Case<'a> = (&'a str, Vec<String>, Option<String>, Vec<&'a str>);

#[test]
fn refusals_name_the_cause_and_leave_nothing() {
    let test = "refusals_name_the_cause_and_leave_nothing";
    if !require(test, false, &["tar"]) {
        return;
    }
    let work = scratch(test);
    let dir = work.path();
    let tree = dir.join("tree");
    fs::create_dir_all(tree.join("boot/efi/EFI")).unwrap();
    fs::write(tree.join("big"), prng_bytes(9, 12 << 20)).unwrap();
    let tar = tar_of(dir, &tree);
    let out = dir.join("out");
    fs::create_dir(&out).unwrap();
    let gpt = include_str!("../elements/block-device-gpt/block-device-default.yaml");
    let cases: Vec<Case> = vec![
        (
            "btrfs",
            vec![],
            Some(gpt.replace("type: ext4", "type: btrfs")),
            vec!["mkfs_root", "btrfs", "use ext4 or xfs"],
        ),
        (
            "growing xfs",
            vec![],
            Some(gpt.replace("type: ext4", "type: xfs")),
            vec!["mkfs_root", "xfs", "grow with the tree", "--image-size"],
        ),
        (
            "lvm",
            vec![],
            Some(
                "- local_loop:\n    name: image0\n- lvm:\n    name: lvm\n    base: [image0]\n"
                    .into(),
            ),
            vec!["Lvm config requires a 'pvs'"],
        ),
        (
            "too small",
            vec!["--image-size".into(), "14M".into()],
            Some(gpt.into()),
            vec!["mkfs_root", "does not fit", "--image-size"],
        ),
        (
            "relative ESP",
            vec![],
            Some(
                include_str!("../elements/block-device-efi/block-device-default.yaml")
                    .replace("size: 550MiB", "size: 10%"),
            ),
            vec!["ESP", "--image-size"],
        ),
        (
            "unknown layout",
            vec!["--layout".into(), "zfs".into()],
            None,
            vec!["zfs", "efi, gpt or mbr"],
        ),
        (
            "symlink on the ESP",
            vec![],
            None,
            vec!["boot/efi/EFI/link", "symlink"],
        ),
    ];
    std::os::unix::fs::symlink("x", tree.join("boot/efi/EFI/link")).unwrap();
    let tar_link = dir.join("link.tar");
    run_ok(
        Command::new("tar")
            .arg("-C")
            .arg(&tree)
            .arg("-cf")
            .arg(&tar_link)
            .arg("."),
    );
    for (what, args, cfg, want) in cases {
        let src = if what == "symlink on the ESP" {
            &tar_link
        } else {
            &tar
        };
        let mut a: Vec<&str> = vec!["-t", "raw,qcow2,tar"];
        a.extend(args.iter().map(String::as_str));
        let mut c = assemble_cmd(&out, src, "disk", &a);
        if let Some(y) = cfg {
            c.env("DIB_BLOCK_DEVICE_CONFIG", y);
        }
        let o = c.output().unwrap();
        let text = out_text(&o);
        assert!(!o.status.success(), "{test}: {what} accepted\n{text}");
        for w in want {
            assert!(
                text.contains(w),
                "{test}: {what}: message lacks {w:?}\n{text}"
            );
        }
        assert!(
            left_in(&out).is_empty(),
            "{test}: {what} left {:?}",
            left_in(&out)
        );
    }
}

/// Issue 14, item 6: `dibr assemble -t raw,qcow2,tar --checksum` stopped
/// by SIGINT or SIGTERM at random points. Every run ends in one of two
/// states, and says which: nothing (exit 130, "nothing was written", not
/// even a hidden temporary file) or the whole set (exit 0, or 130 saying
/// "interrupted after the outputs were complete" and naming them).
#[test]
fn interrupted_assembly_leaves_all_or_nothing_and_says_which() {
    let test = "interrupted_assembly_leaves_all_or_nothing_and_says_which";
    let dir = scratch(test);
    let tree = dir.path().join("tree");
    fs::create_dir_all(tree.join("usr/lib")).unwrap();
    fs::create_dir_all(tree.join("etc")).unwrap();
    // About 60 MiB of poorly compressible data: the conversions take a
    // while, so the signals land in every stage.
    for i in 0..30 {
        fs::write(
            tree.join(format!("usr/lib/blob{i}")),
            prng_bytes(i, 2 << 20),
        )
        .unwrap();
    }
    fs::write(tree.join("etc/hostname"), "dibr\n").unwrap();
    let tar = tar_of(dir.path(), &tree);
    let out = dir.path().join("out");
    fs::create_dir(&out).unwrap();
    let args = ["-t", "raw,qcow2,tar", "--checksum", "--layout", "gpt"];
    let mut full: Vec<String> = ["a.raw", "a.qcow2", "a.tar"]
        .iter()
        .flat_map(|o| [o.to_string(), format!("{o}.sha256"), format!("{o}.md5")])
        .collect();
    // Every disk output's Glance properties (issue 19) join the set.
    full.extend(["a.raw.glance.json".into(), "a.qcow2.glance.json".into()]);
    full.sort();
    let names = |d: &Path| -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(d)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let t0 = std::time::Instant::now();
    let o = assemble_cmd(&out, &tar, "a", &args).output().unwrap();
    let whole = t0.elapsed();
    assert!(o.status.success(), "{test}: {}", out_text(&o));
    assert_eq!(names(&out), full, "{test}: the outputs of a whole run");
    let (mut nothing, mut all) = (0, 0);
    let mut seed = 0x5eed_u64;
    for round in 0..12 {
        for n in names(&out) {
            fs::remove_file(out.join(n)).unwrap();
        }
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let delay =
            std::time::Duration::from_millis((seed >> 33) % (whole.as_millis() as u64 + 100));
        let sig = if round % 2 == 0 { "INT" } else { "TERM" };
        let child = assemble_cmd(&out, &tar, "a", &args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        let _ = Command::new("kill")
            .args([format!("-{sig}"), child.id().to_string()])
            .status();
        let o = child.wait_with_output().unwrap();
        let text = out_text(&o);
        let got = names(&out);
        let ctx = format!("{test}: round {round}, SIG{sig} after {delay:?}\n{text}");
        match o.status.code() {
            Some(0) => {
                assert_eq!(got, full, "{ctx}");
                all += 1;
            }
            Some(130) if text.contains("interrupted; nothing was written") => {
                assert!(got.is_empty(), "{ctx}\nleft: {got:?}");
                nothing += 1;
            }
            Some(130) if text.contains("interrupted after the outputs were complete") => {
                assert_eq!(got, full, "{ctx}");
                for n in &full {
                    assert!(
                        text.contains(n.as_str()),
                        "{ctx}\nthe message does not name {n}"
                    );
                }
                all += 1;
            }
            _ => panic!("{ctx}\nunexpected end: {:?}", o.status),
        }
    }
    eprintln!(
        "{test}: 12 signals over {whole:?} runs: {nothing} left nothing, {all} the whole set"
    );
}
