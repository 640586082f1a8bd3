//! DIB's `lvm` block-device plugin written by dibr in userspace (issue 17
//! item 5): a tree assembled as the unprivileged CI user with DIB's
//! `block-device-efi-lvm` layout as DIB ships it (every LV xfs) but for a
//! 400 MiB PV instead of 40G (the disk would be sparse, but the Glance
//! properties' sha512 reads all 40 GB of a raw output: two minutes an
//! assembly; the gated Debian boot below takes the YAML unchanged), then
//! judged as root by
//! LVM's own tools on a read-only loop device: `pvs`, `vgs` and `lvs`
//! show DIB's VG/LV names and `lvcreate -l N%VG`'s sizes, `pvck` and
//! `vgck` are clean, `xfs_repair -n` passes on every LV, found where
//! `lvs`/`pvs` say it is, the kernel mounts each one and reads the files,
//! and GRUB's own LVM and xfs readers (`grub-fstest`) read files through
//! `(lvm/vg-lv_root)` (this machine's kernel may have no device-mapper for
//! `vgchange -ay`; where it has, the LVs are activated and checked through
//! /dev/mapper too). Two assemblies have identical contents with
//! SOURCE_DATE_EPOCH; the layouts dibr cannot write are refused by name
//! and leave nothing.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::user::{as_user, USER};
use common::*;

const EPOCH: &str = "1700000000";
const MIB: u64 = 1 << 20;
const EXTENT: u64 = 4 * MIB;
const TOOLS: &[&str] = &[
    "pvs",
    "vgs",
    "lvs",
    "pvck",
    "vgck",
    "losetup",
    "partx",
    "xfs_repair",
    "mount",
    "blkid",
    "setpriv",
    "tar",
    "dd",
    "grub-fstest",
];
/// What `vgchange`/`lvs` need to run without udev in a test.
const NO_UDEV: &str =
    "activation{udev_sync=0 udev_rules=0} devices{obtain_device_list_from_udev=0}";

/// DIB's `block-device-efi-lvm/block-device-default.yaml` with a 400 MiB
/// PV for its 40G (see the top of this file).
fn efi_lvm_yaml() -> String {
    dib_efi_lvm_yaml().replace("size: 40G", "size: 400MiB")
}

/// DIB's `block-device-efi-lvm/block-device-default.yaml`, unchanged.
fn dib_efi_lvm_yaml() -> String {
    let dib = test_cache().join("dib-venv");
    let from_dib = fs::read_dir(dib.join("lib"))
        .ok()
        .and_then(|mut d| d.next())
        .and_then(|e| e.ok())
        .map(|e| {
            e.path().join(
                "site-packages/diskimage_builder/elements/block-device-efi-lvm/block-device-default.yaml",
            )
        })
        .and_then(|p| fs::read_to_string(p).ok());
    let text = from_dib.unwrap_or_else(|| EFI_LVM.to_string());
    assert!(
        text.contains("size: 40G") && text.contains("type: xfs"),
        "{text}"
    );
    text
}

/// The PV's partition size.
const PV_BYTES: u64 = 400 * MIB;

/// A digest of a sparse image's contents: the non-zero 64 KiB pieces of
/// its data regions (SEEK_DATA/SEEK_HOLE) and where they are, so two
/// 40 GiB disks compare without reading their holes.
fn sparse_digest(p: &Path) -> String {
    use rustix::fs::{seek, SeekFrom};
    use sha2::{Digest, Sha256};
    use std::os::unix::fs::FileExt;
    let f = fs::File::open(p).unwrap();
    let size = f.metadata().unwrap().len();
    let mut h = Sha256::new();
    h.update(size.to_le_bytes());
    let mut buf = vec![0u8; 1 << 16];
    let mut off = 0u64;
    while off < size {
        let start = match seek(&f, SeekFrom::Data(off)) {
            Ok(s) => s,
            Err(rustix::io::Errno::NXIO) => break,
            Err(e) => panic!("SEEK_DATA {p:?}: {e}"),
        };
        let end = seek(&f, SeekFrom::Hole(start)).unwrap().min(size);
        let mut at = start - start % buf.len() as u64;
        while at < end {
            let n = (buf.len() as u64).min(size - at) as usize;
            f.read_exact_at(&mut buf[..n], at).unwrap();
            if buf[..n].iter().any(|&b| b != 0) {
                h.update(at.to_le_bytes());
                h.update(&buf[..n]);
            }
            at += n as u64;
        }
        off = end.max(at);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The same as shipped by diskimage-builder 3.x, for machines without its
/// venv.
const EFI_LVM: &str = r#"- local_loop:
    name: image0

- partitioning:
    base: image0
    label: gpt
    partitions:
      - name: ESP
        type: 'EF00'
        size: 550MiB
        mkfs:
          type: vfat
          mount:
            mount_point: /boot/efi
            fstab:
              options: "defaults"
              fsck-passno: 2
      - name: BSP
        type: 'EF02'
        size: 8MiB
      - name: root
        flags: [ boot ]
        size: 40G
- lvm:
    name: lvm
    base: [ root ]
    pvs:
        - name: pv
          base: root
          options: [ "--force" ]
    vgs:
        - name: vg
          base: [ "pv" ]
          options: [ "--force" ]
    lvs:
        - name: lv_root
          base: vg
          extents: 23%VG
        - name: lv_var
          base: vg
          extents: 57%VG
        - name: lv_home
          base: vg
          extents: 20%VG
- mkfs:
    name: fs_root
    base: lv_root
    type: xfs
    label: "img-rootfs"
    mount:
        mount_point: /
        fstab:
            options: "rw,relatime"
            fsck-passno: 1
- mkfs:
    name: fs_var
    base: lv_var
    type: xfs
    mount:
        mount_point: /var
        fstab:
            options: "rw,relatime"
            fsck-passno: 2
- mkfs:
    name: fs_home
    base: lv_home
    type: xfs
    mount:
        mount_point: /home
        fstab:
            options: "rw,nodev,relatime"
            fsck-passno: 2
"#;

/// A world-readable stage: the binary, a root tarball and an output
/// directory the CI user owns.
struct Stage {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    bin: PathBuf,
    tar: PathBuf,
    out: PathBuf,
}

fn stage(test: &str) -> Option<Stage> {
    if !require(test, true, TOOLS) {
        return None;
    }
    if run(Command::new("id").arg(USER)).status.code() != Some(0) {
        assert!(!is_ci(), "{test}: user {USER} missing in CI");
        skip(test, "no dibr-ci user");
        return None;
    }
    let d = scratch(test);
    let dir = d.path().to_path_buf();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    let bin = dir.join("dibr");
    fs::copy(dibr_bin(), &bin).unwrap();
    let tree = dir.join("tree");
    for (p, data) in [
        ("etc/hostname", "lvm\n".as_bytes().to_vec()),
        ("var/lib/data/blob", prng_bytes(3, 3 * MIB as usize)),
        ("home/user/notes", b"home\n".to_vec()),
        ("boot/efi/EFI/BOOT/README", b"esp\n".to_vec()),
    ] {
        let f = tree.join(p);
        fs::create_dir_all(f.parent().unwrap()).unwrap();
        fs::write(f, data).unwrap();
    }
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
    run_ok(Command::new("chown").arg(USER).arg(&out));
    fs::write(dir.join("efi-lvm.yaml"), efi_lvm_yaml()).unwrap();
    run_ok(Command::new("chmod").args(["-R", "a+rX"]).arg(&dir));
    Some(Stage {
        _dir: d,
        dir,
        bin,
        tar,
        out,
    })
}

/// `dibr assemble` as the CI user with DIB's LVM layout; returns stderr.
fn assemble(s: &Stage, name: &str, yaml: &Path) -> String {
    let cfg = format!("file://{}", yaml.display());
    let o = run(as_user(&s.bin, &[("SOURCE_DATE_EPOCH", EPOCH)])
        .args([
            "assemble",
            "-t",
            "raw",
            "--block-device-config",
            &cfg,
            "--from",
        ])
        .arg(&s.tar)
        .arg("-o")
        .arg(name)
        .current_dir(&s.out));
    let text = out_text(&o);
    assert!(o.status.success(), "assemble as {USER} failed\n{text}");
    text
}

/// A read-only loop device of the disk with its partitions, detached in
/// Drop (also when an assertion fails).
struct Loop {
    dev: String,
}

impl Loop {
    fn new(img: &Path) -> Loop {
        let o = run_ok(
            Command::new(tool("losetup"))
                .args(["--show", "-r", "-P", "-f"])
                .arg(img),
        );
        let dev = String::from_utf8_lossy(&o.stdout).trim().to_string();
        let l = Loop { dev };
        // Without udev, losetup -P may leave the partitions unscanned.
        if !Path::new(&format!("{}p3", l.dev)).exists() {
            run_ok(Command::new(tool("partx")).args(["-a", &l.dev]));
        }
        l
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = lvm(&["vgchange", "-an", "vg"]);
        let _ = Command::new(tool("partx")).args(["-d", &self.dev]).output();
        let _ = Command::new(tool("losetup"))
            .args(["-d", &self.dev])
            .output();
    }
}

/// An LVM command that sees only `dev`'s partitions (not the host's VGs).
fn lvm_on(dev: &str, args: &[&str]) -> std::process::Output {
    let filter =
        format!("{NO_UDEV} devices{{filter=[\"a|^{dev}p[0-9]+$|\",\"r|.*|\"] use_devicesfile=0}}");
    run(Command::new(tool(args[0]))
        .args(&args[1..])
        .args(["--config", &filter]))
}

fn lvm(args: &[&str]) -> std::process::Output {
    run(Command::new(tool(args[0]))
        .args(&args[1..])
        .args(["--config", NO_UDEV]))
}

/// `pvs`/`vgs`/`lvs` rows, fields split on '|'.
fn report(dev: &str, cmd: &str, fields: &str) -> Vec<Vec<String>> {
    let o = lvm_on(
        dev,
        &[
            cmd,
            "--noheadings",
            "--units",
            "b",
            "--nosuffix",
            "--separator",
            "|",
            "-o",
            fields,
        ],
    );
    assert!(o.status.success(), "{cmd} failed\n{}", out_text(&o));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| l.trim().split('|').map(str::to_string).collect())
        .collect()
}

fn sysfs_start(dev: &str, n: u32) -> u64 {
    let name = Path::new(dev)
        .file_name()
        .unwrap()
        .to_string_lossy()
        .to_string();
    let p = format!("/sys/block/{name}/{name}p{n}/start");
    fs::read_to_string(&p)
        .unwrap()
        .trim()
        .parse::<u64>()
        .unwrap()
        * 512
}

/// The layout as LVM reads it: DIB's names, `lvcreate -l N%VG`'s extent
/// counts, clean pvck/vgck; returns each LV's (name, byte offset in the
/// disk, size) from where `lvs`/`pvs` place it.
fn lvm_view(test: &str, l: &Loop) -> Vec<(String, u64, u64)> {
    let pv = format!("{}p3", l.dev);
    let pvs = report(
        &l.dev,
        "pvs",
        "pv_name,vg_name,pv_size,pe_start,pv_pe_count",
    );
    assert_eq!(pvs.len(), 1, "{test}: one PV: {pvs:?}");
    assert_eq!(
        (pvs[0][0].as_str(), pvs[0][1].as_str()),
        (pv.as_str(), "vg"),
        "{test}"
    );
    let pe_start: u64 = pvs[0][3].parse().unwrap();
    let count: u64 = pvs[0][4].parse().unwrap();
    assert_eq!(
        pe_start, MIB,
        "{test}: pvcreate's default 1 MiB data alignment"
    );
    assert_eq!(
        count,
        (PV_BYTES - MIB) / EXTENT,
        "{test}: extents of a 400 MiB PV"
    );
    let vgs = report(
        &l.dev,
        "vgs",
        "vg_name,vg_extent_size,vg_extent_count,lv_count",
    );
    assert_eq!(
        vgs,
        vec![vec![
            "vg".to_string(),
            EXTENT.to_string(),
            count.to_string(),
            "3".into()
        ]]
    );
    for (cmd, arg) in [("pvck", pv.as_str()), ("vgck", "vg")] {
        let o = lvm_on(&l.dev, &[cmd, arg]);
        assert!(o.status.success(), "{test}: {cmd} {arg}\n{}", out_text(&o));
    }
    let part = sysfs_start(&l.dev, 3);
    let mut out = Vec::new();
    let lvs = report(&l.dev, "lvs", "lv_name,lv_size,seg_pe_ranges,lv_dm_path");
    for (name, pct) in [("lv_root", 23), ("lv_var", 57), ("lv_home", 20)] {
        let row = lvs
            .iter()
            .find(|r| r[0] == name)
            .unwrap_or_else(|| panic!("{test}: no LV {name}: {lvs:?}"));
        let extents = count * pct / 100;
        assert_eq!(
            row[1],
            (extents * EXTENT).to_string(),
            "{test}: {name} {pct}%VG"
        );
        assert_eq!(row[3], format!("/dev/mapper/vg-{name}"), "{test}");
        let (_, range) = row[2].rsplit_once(':').unwrap();
        let (a, b) = range.split_once('-').unwrap();
        let (a, b): (u64, u64) = (a.parse().unwrap(), b.parse().unwrap());
        assert_eq!(b + 1 - a, extents, "{test}: {name} is one linear segment");
        out.push((
            name.to_string(),
            part + pe_start + a * EXTENT,
            extents * EXTENT,
        ));
    }
    out
}

/// A read-only loop device over one LV's bytes of the disk, detached in
/// Drop.
struct LvLoop {
    dev: String,
}

impl LvLoop {
    fn new(img: &Path, off: u64, size: u64) -> LvLoop {
        let o = run_ok(
            Command::new(tool("losetup"))
                .args(["--show", "-r", "-f", "-o", &off.to_string()])
                .args(["--sizelimit", &size.to_string()])
                .arg(img),
        );
        LvLoop {
            dev: String::from_utf8_lossy(&o.stdout).trim().to_string(),
        }
    }
}

impl Drop for LvLoop {
    fn drop(&mut self) {
        let _ = Command::new(tool("losetup"))
            .args(["-d", &self.dev])
            .output();
    }
}

/// `xfs_repair -n` on a device: exit 0 and nothing it would change.
fn xfs_repair_clean(test: &str, what: &str, dev: &str) {
    let o = run(Command::new(tool("xfs_repair")).arg("-n").arg(dev));
    let text = out_text(&o);
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let odd: Vec<&str> = all
        .lines()
        .map(str::trim)
        .filter(|l| {
            !(l.is_empty()
                || l.starts_with("Phase ")
                || l.starts_with("- ")
                || l.starts_with("No modify flag set"))
        })
        .collect();
    assert!(
        o.status.success() && odd.is_empty(),
        "{test}: xfs_repair -n {what}: {odd:?}\n{text}"
    );
}

/// xfs_repair, the labels, fstab and files of each LV's filesystem, read
/// by the kernel through a normal read-only mount (a log that needed
/// recovery would refuse it).
fn check_filesystems(test: &str, dir: &Path, img: &Path, lvs: &[(String, u64, u64)]) {
    for (name, off, size) in lvs {
        let l = LvLoop::new(img, *off, *size);
        xfs_repair_clean(test, name, &l.dev);
        // -p: probe the device, not blkid's cache (loop numbers repeat).
        let label = run_ok(
            Command::new(tool("blkid"))
                .args(["-p", "-o", "value", "-s", "LABEL"])
                .arg(&l.dev),
        );
        let want = match name.as_str() {
            "lv_root" => "img-rootfs",
            "lv_var" => "fs_var",
            _ => "fs_home",
        };
        assert_eq!(
            String::from_utf8_lossy(&label.stdout).trim(),
            want,
            "{test}: {name}"
        );
        let mnt = dir.join(format!("mnt-{name}"));
        fs::create_dir_all(&mnt).unwrap();
        run_ok(
            Command::new(tool("mount"))
                .args(["-t", "xfs", "-o", "ro"])
                .arg(&l.dev)
                .arg(&mnt),
        );
        let cat = |p: &str| fs::read(mnt.join(p.trim_start_matches('/')));
        let got = match name.as_str() {
            "lv_root" => cat("/etc/hostname").map(|h| (h, cat("/etc/fstab"))),
            "lv_var" => cat("/lib/data/blob").map(|b| (b, cat("/lib/data/blob"))),
            _ => cat("/user/notes").map(|n| (n, cat("/user/notes"))),
        };
        run_ok(Command::new(tool("umount")).arg(&mnt));
        let (first, second) = got.unwrap_or_else(|e| panic!("{test}: {name}: {e}"));
        match name.as_str() {
            "lv_root" => {
                assert_eq!(first, b"lvm\n");
                // DIB's cmd_writefstab: LABEL= for every filesystem,
                // LVM or not.
                assert_eq!(
                    String::from_utf8_lossy(&second.unwrap()),
                    "LABEL=img-rootfs / xfs rw,relatime 0 1\nLABEL=MKFS_ESP /boot/efi vfat defaults 0 2\nLABEL=fs_home /home xfs rw,nodev,relatime 0 2\nLABEL=fs_var /var xfs rw,relatime 0 2\n",
                    "{test}: fstab"
                );
            }
            "lv_var" => assert_eq!(first, prng_bytes(3, 3 * MIB as usize), "{test}"),
            _ => assert_eq!(first, b"home\n", "{test}"),
        }
    }
}

/// GRUB has its own LVM reader (grub-core/disk/lvm.c, what `insmod lvm`
/// loads to find /boot on an LV): `grub-fstest` lists the LVs as
/// `(lvm/vg-lv_*)` and reads files through them.
fn grub_reads_the_lvs(test: &str, img: &Path) {
    let g = |args: &[&str]| {
        let o = run(Command::new(tool("grub-fstest")).arg(img).args(args));
        assert!(
            o.status.success(),
            "{test}: grub-fstest {args:?}\n{}",
            out_text(&o)
        );
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    let devices = g(&["ls"]);
    for lv in ["lv_root", "lv_var", "lv_home"] {
        assert!(
            devices.contains(&format!("(lvm/vg-{lv})")),
            "{test}: GRUB sees no {lv}: {devices}"
        );
    }
    assert_eq!(
        g(&["cat", "(lvm/vg-lv_root)/etc/hostname"]),
        "lvm\n",
        "{test}"
    );
    assert!(
        g(&["ls", "(lvm/vg-lv_home)/user"]).contains("notes"),
        "{test}"
    );
}

/// Where the kernel has device-mapper: `vgchange -ay` on a writable loop
/// of a copy, xfs_repair -n through /dev/mapper, deactivate.
fn activate(test: &str, dir: &Path, img: &Path) {
    let misc = fs::read_to_string("/proc/misc").unwrap_or_default();
    if !misc.contains("device-mapper") {
        eprintln!("{test}: this kernel has no device-mapper: vgchange -ay not tried (LVs checked at the offsets lvs reports)");
        return;
    }
    let copy = dir.join("copy.raw");
    run_ok(
        Command::new("cp")
            .args(["--sparse=always"])
            .arg(img)
            .arg(&copy),
    );
    let o = run_ok(
        Command::new(tool("losetup"))
            .args(["--show", "-P", "-f"])
            .arg(&copy),
    );
    let l = Loop {
        dev: String::from_utf8_lossy(&o.stdout).trim().to_string(),
    };
    if !Path::new(&format!("{}p3", l.dev)).exists() {
        run_ok(Command::new(tool("partx")).args(["-a", &l.dev]));
    }
    let o = lvm_on(&l.dev, &["vgchange", "-ay", "vg"]);
    assert!(o.status.success(), "{test}: vgchange -ay\n{}", out_text(&o));
    let _ = Command::new(tool("dmsetup")).arg("mknodes").output();
    for lv in ["lv_root", "lv_var", "lv_home"] {
        xfs_repair_clean(test, lv, &format!("/dev/mapper/vg-{lv}"));
    }
    let o = lvm_on(&l.dev, &["vgchange", "-an", "vg"]);
    assert!(o.status.success(), "{test}: vgchange -an\n{}", out_text(&o));
}

#[test]
fn efi_lvm_layout_is_what_lvm_reads() {
    let test = "efi_lvm_layout_is_what_lvm_reads";
    let Some(s) = stage(test) else { return };
    let yaml = s.dir.join("efi-lvm.yaml");
    let t0 = std::time::Instant::now();
    let text = assemble(&s, "a", &yaml);
    eprintln!("{test}: assemble as {USER}: {:?}", t0.elapsed());
    assert!(
        text.contains("/ xfs 'img-rootfs'") && text.contains("/var xfs 'fs_var'"),
        "{test}: summary\n{text}"
    );
    assemble(&s, "b", &yaml);
    let (a, b) = (s.out.join("a.raw"), s.out.join("b.raw"));
    assert_eq!(
        sparse_digest(&a),
        sparse_digest(&b),
        "{test}: SOURCE_DATE_EPOCH: identical disks"
    );
    let lvs = {
        let l = Loop::new(&a);
        lvm_view(test, &l)
    };
    check_filesystems(test, &s.dir, &a, &lvs);
    grub_reads_the_lvs(test, &a);
    activate(test, &s.dir, &a);
    lvm_refuses_mutations(test, &s.dir, &a);
}

/// The checks are LVM's, not only dibr's reader's: a byte flipped in the
/// label or in the metadata text of a copy makes `pvck` (label, checksum)
/// or `vgs` (metadata checksum) fail, so a writer that got the checksums
/// or the layout wrong could not pass this test.
fn lvm_refuses_mutations(test: &str, dir: &Path, img: &Path) {
    let part = {
        let l = Loop::new(img);
        sysfs_start(&l.dev, 3)
    };
    // The label's PV size field; the metadata text's first line (VG name).
    for (what, at) in [
        ("label", part + 512 + 72),
        ("metadata text", part + 4096 + 512 + 1),
    ] {
        let copy = dir.join("mutated.raw");
        run_ok(
            Command::new("cp")
                .args(["--sparse=always"])
                .arg(img)
                .arg(&copy),
        );
        let f = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&copy)
            .unwrap();
        let mut b = [0u8; 1];
        std::os::unix::fs::FileExt::read_exact_at(&f, &mut b, at).unwrap();
        b[0] ^= 0x20;
        std::os::unix::fs::FileExt::write_all_at(&f, &b, at).unwrap();
        drop(f);
        let l = Loop::new(&copy);
        let pvck = lvm_on(&l.dev, &["pvck", &format!("{}p3", l.dev)]);
        let vgs = lvm_on(&l.dev, &["vgs", "vg"]);
        assert!(
            !pvck.status.success() || !vgs.status.success(),
            "{test}: LVM accepted a PV with its {what} changed at byte {at}\n{}\n{}",
            out_text(&pvck),
            out_text(&vgs)
        );
        drop(l);
        fs::remove_file(&copy).unwrap();
    }
}

#[test]
fn layouts_dibr_cannot_write_are_refused_by_name() {
    let test = "layouts_dibr_cannot_write_are_refused_by_name";
    let Some(s) = stage(test) else { return };
    let base = efi_lvm_yaml();
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "thin",
            base.replace("extents: 20%VG", "extents: 20%VG\n          type: thin-pool"),
            vec!["lv_home", "thin", "linear"],
        ),
        (
            "spanned",
            base.replace("base: [ \"pv\" ]", "base: [ \"pv\", \"pv2\" ]").replace(
                "          options: [ \"--force\" ]\n    vgs",
                "          options: [ \"--force\" ]\n        - name: pv2\n          base: BSP\n    vgs",
            ),
            vec!["'vg'", "2 PVs"],
        ),
        (
            "relative PV",
            base.replace("size: 400MiB", "size: 100%"),
            vec!["'vg'", "root", "--image-size"],
        ),
        (
            "option",
            base.replace("extents: 57%VG", "extents: 57%VG\n          options: [ \"--stripes\", \"2\" ]"),
            vec!["lv_var", "--stripes"],
        ),
        (
            "btrfs",
            base.replace("type: xfs\n    label", "type: btrfs\n    label"),
            vec!["fs_root", "btrfs"],
        ),
        (
            "too many extents",
            base.replace("extents: 20%VG", "extents: 30%VG"),
            vec!["lv_home", "extents"],
        ),
    ];
    for (what, yaml, words) in cases {
        let p = s.dir.join(format!("{}.yaml", what.replace(' ', "_")));
        fs::write(&p, yaml).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        let cfg = format!("file://{}", p.display());
        let o = run(as_user(&s.bin, &[("SOURCE_DATE_EPOCH", EPOCH)])
            .args([
                "assemble",
                "-t",
                "raw",
                "--block-device-config",
                &cfg,
                "--from",
            ])
            .arg(&s.tar)
            .args(["-o", "refused"])
            .current_dir(&s.out));
        let text = out_text(&o);
        assert!(!o.status.success(), "{test}: {what} was accepted\n{text}");
        for w in words {
            assert!(
                text.contains(w),
                "{test}: {what}: message lacks {w:?}\n{text}"
            );
        }
        assert!(
            dir_entries(&s.out).is_empty(),
            "{test}: {what} left {:?}",
            dir_entries(&s.out)
        );
    }
}

/// With DIBR_IMAGE_TESTS=1: the real `debian vm block-device-efi-lvm`
/// build as the CI user (DIB's element library on ELEMENTS_PATH after
/// dibr's own, `-p lvm2` for the initramfs as DIB's `lvm` element's
/// package-installs would), its layout exactly DIB's (xfs on every LV, a
/// sparse 40G PV), boots to a login prompt under SeaBIOS and OVMF with
/// its root filesystem on the LV `vg/lv_root` (nowhere else holds it).
///
/// GRUB (BIOS core.img with the lvm module, and the UEFI stub) searches
/// for `DIB_ROOT_LABEL`, which dibr takes from the block-device config's
/// root label as DIB's `getval root-label` does (img-rootfs here); with
/// the constant cloudimg-rootfs it stopped at "no such device". About 6 min
/// (build 228 s with a warm phase cache, each boot ~1 min).
#[test]
fn debian_vm_on_lvm_boots_under_seabios_and_ovmf() {
    let test = "debian_vm_on_lvm_boots_under_seabios_and_ovmf";
    if !image_tests() {
        println!("skipped: {test}: set DIBR_IMAGE_TESTS=1 (a real Debian build and two TCG boots)");
        return;
    }
    if !require(
        test,
        true,
        &["mmdebstrap", "qemu-system-x86_64", "qemu-img"],
    ) {
        return;
    }
    let Some((py, dib_elements)) = common::build::dib_venv(test) else {
        return;
    };
    let Some(s) = common::build::stage(test) else {
        return;
    };
    let yaml = s.out.join("efi-lvm.yaml");
    fs::write(&yaml, dib_efi_lvm_yaml()).unwrap();
    let elements = Path::new(env!("CARGO_MANIFEST_DIR")).join("elements");
    let cache = common::build::user_cache("image-cache");
    let cfg = format!("file://{}", yaml.display());
    let (elements_s, cache_s, dib_s, py_s) = (
        elements.display().to_string(),
        cache.display().to_string(),
        dib_elements.display().to_string(),
        py.display().to_string(),
    );
    let args = [
        "-v",
        "-o",
        "lvmdeb",
        "-t",
        "qcow2",
        "-p",
        "lvm2",
        "debian",
        "vm",
        "block-device-efi-lvm",
    ];
    let t0 = std::time::Instant::now();
    let o = common::build::build_cmd(
        &s,
        &args,
        &[
            ("ELEMENTS_PATH", dib_s.as_str()),
            ("DIBR_ELEMENTS_DIR", elements_s.as_str()),
            ("DIB_IMAGE_CACHE", cache_s.as_str()),
            ("DIB_RELEASE", "bookworm"),
            ("DIB_PYTHON_EXEC", py_s.as_str()),
            ("DIB_BLOCK_DEVICE_CONFIG", cfg.as_str()),
        ],
    )
    .output()
    .unwrap();
    let text = out_text(&o);
    assert!(o.status.success(), "{test}: dibr build failed\n{text}");
    eprintln!("{test}: build {:?}", t0.elapsed());
    assert!(
        text.contains("/ xfs 'img-rootfs'") && text.contains("/var xfs 'fs_var'"),
        "{test}\n{text}"
    );
    let disk = s.out.join("lvmdeb.qcow2");
    let vars = s.out.join("OVMF_VARS.fd");
    fs::copy(common::vm::OVMF_VARS, &vars).unwrap();
    run_ok(Command::new("chown").arg(USER).arg(&vars));
    for (fw, uefi) in [("SeaBIOS", None), ("OVMF", Some(vars.as_path()))] {
        let log = s.out.join(format!("console-{fw}.log"));
        let mut c = common::vm::qemu(&log, 1024, uefi);
        c.arg("-drive").arg(format!(
            "file={},format=qcow2,if=virtio,snapshot=on",
            disk.display()
        ));
        let mut v = common::vm::start(c);
        let t0 = std::time::Instant::now();
        common::vm::wait_for(
            &mut v,
            &log,
            " login:",
            &format!("{test}: {fw}"),
            t0,
            std::time::Duration::from_secs(600),
        );
        eprintln!("{test}: {fw}: login prompt after {:?}", t0.elapsed());
    }
}
