//! `dibr get-kernel` and `dibr check` (issue 5) on real disks: fixture
//! trees packed as tarballs and laid out by `dibr assemble` (efi, mbr, a
//! separate ext4 /boot), filesystems made by `mke2fs -d` with other
//! feature sets (1 KiB blocks, ext3 block maps, inline data, meta_bg,
//! htree directories forced by `e2fsck -D`), qcow2 files written by
//! `qemu-img` (v2, v3 zlib, zstd, zero clusters made by `qemu-io write
//! -z`) read back and compared with `qemu-img convert -O raw`, and the
//! Debian bookworm tree of the boot test. The kernel and initrd must come
//! out byte-identical to what went into the tarball; check must pass the
//! good image and name the failing item on each broken one. Nothing here
//! needs root except the run as the unprivileged user.

mod common;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::build::{stage, USER};
use common::*;
use sha2::{Digest, Sha256};

const TOOLS: &[&str] = &["qemu-img", "qemu-io", "tar", "mke2fs", "e2fsck"];
const KVER: &str = "6.1.0-13-test";

/// Random bytes behind an x86-64 bzImage header (`HdrS`, boot protocol
/// 2.15, `XLF_KERNEL_64`), which `check` reads for the kernel's format.
fn kernel_bytes() -> Vec<u8> {
    let mut k = prng_bytes(51, 3 << 20);
    k[0x202..0x206].copy_from_slice(b"HdrS");
    k[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
    k[0x236..0x238].copy_from_slice(&1u16.to_le_bytes());
    k
}
fn initrd_bytes() -> Vec<u8> {
    prng_bytes(52, (2 << 20) + 777)
}

/// What to break in the fixture.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Variant {
    Good,
    HostKey,
    PersistentNet,
    MachineId,
    NoConsole,
    Firewall,
    SshdDisabled,
    NoCloudInit,
    /// Host keys made only by cloud-init (as Debian's openssh-server
    /// without runtime-ssh-host-keys): sshd fails at a boot without a
    /// datasource.
    KeysOnlyFromCloudInit,
    /// Host keys made by the ssh unit itself (`ExecStartPre=ssh-keygen -A`
    /// in a drop-in), no cloud-init.
    KeygenInSshUnit,
}

/// A fake cloud image tree: everything `dibr check` looks for, a kernel
/// and an initrd of random bytes, an older kernel (6.1.0-9 sorts before
/// 6.1.0-13 only by version order) and a large compressible file (so
/// qcow2 compresses clusters). `grub`: a grub.cfg naming the kernel.
fn cloud_tree(root: &Path, v: Variant, grub: bool) {
    let w = |p: &str, d: &[u8]| write_file(&root.join(p.trim_start_matches('/')), d);
    let ln = |target: &str, p: &str| {
        let p = root.join(p.trim_start_matches('/'));
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        symlink(target, p).unwrap();
    };
    w(&format!("/boot/vmlinuz-{KVER}"), &kernel_bytes());
    w(&format!("/boot/initrd.img-{KVER}"), &initrd_bytes());
    w("/boot/vmlinuz-6.1.0-9-test", &prng_bytes(53, 100_000));
    w("/boot/initrd.img-6.1.0-9-test", &prng_bytes(54, 100_000));
    ln(&format!("boot/vmlinuz-{KVER}"), "/vmlinuz");
    ln(&format!("boot/initrd.img-{KVER}"), "/initrd.img");
    if grub {
        let console = if v == Variant::NoConsole {
            "console=tty0"
        } else {
            "console=tty0 console=ttyS0,115200"
        };
        w(
            "/boot/grub/grub.cfg",
            format!(
                "set default=\"0\"\nfunction load_video {{\n  insmod all_video\n}}\n\
                 menuentry 'Test GNU/Linux' --class test $menuentry_id_option 'test-simple' {{\n\
                 \tload_video\n\
                 \tlinux\t/boot/vmlinuz-{KVER} root=LABEL=cloudimg-rootfs ro {console}\n\
                 \tinitrd\t/boot/initrd.img-{KVER}\n}}\n\
                 menuentry 'Old' {{\n\tlinux /boot/vmlinuz-6.1.0-9-test ro console=ttyS0\n}}\n"
            )
            .as_bytes(),
        );
    }
    w(
        "/etc/machine-id",
        if v == Variant::MachineId {
            b"4f1c0e5b2d7a4c3e9b8a7f6e5d4c3b2a\n"
        } else {
            b""
        },
    );
    w("/etc/hostname", b"cloud\n");
    w(
        "/usr/share/doc/big.txt",
        &b"compressible text for qcow2 clusters\n".repeat(60_000),
    );
    if v != Variant::NoCloudInit {
        w("/usr/bin/cloud-init", b"#!/bin/sh\n");
        w(
            "/etc/cloud/cloud.cfg",
            b"users: [default]\ncloud_init_modules:\n - seed_random\n - growpart\n - resizefs\n - [ssh, always]\n",
        );
        w(
            "/etc/cloud/cloud.cfg.d/90_dpkg.cfg",
            b"# debconf\ndatasource_list: [ NoCloud, ConfigDrive, OpenStack, None ]\n",
        );
        w("/lib/systemd/system/cloud-init.service", b"[Unit]\n");
        ln(
            "/lib/systemd/system/cloud-init.service",
            "/etc/systemd/system/cloud-init.target.wants/cloud-init.service",
        );
    }
    w("/usr/bin/growpart", b"#!/bin/sh\n");
    w("/usr/sbin/sshd", b"\x7fELF");
    w("/lib/systemd/system/ssh.service", b"[Unit]\n");
    if v != Variant::SshdDisabled {
        ln(
            "/lib/systemd/system/ssh.service",
            "/etc/systemd/system/multi-user.target.wants/ssh.service",
        );
        ln(
            "/lib/systemd/system/ssh.service",
            "/etc/systemd/system/sshd.service",
        );
    }
    w("/etc/ssh/sshd_config", b"PermitRootLogin no\n");
    // Host keys at first boot without cloud-init: dibr's
    // runtime-ssh-host-keys unit, enabled.
    if !matches!(v, Variant::KeysOnlyFromCloudInit | Variant::KeygenInSshUnit) {
        w(
            "/usr/lib/systemd/system/ssh-keygen.service",
            b"[Service]\nType=oneshot\nExecStart=/usr/bin/ssh-keygen -A\n",
        );
        ln(
            "/usr/lib/systemd/system/ssh-keygen.service",
            "/etc/systemd/system/multi-user.target.wants/ssh-keygen.service",
        );
    }
    if v == Variant::KeygenInSshUnit {
        w(
            "/etc/systemd/system/ssh.service.d/keygen.conf",
            b"[Service]\nExecStartPre=/usr/bin/ssh-keygen -A\n",
        );
    }
    if v == Variant::HostKey {
        w(
            "/etc/ssh/ssh_host_ed25519_key",
            b"-----BEGIN OPENSSH PRIVATE KEY-----\n",
        );
        w("/etc/ssh/ssh_host_ed25519_key.pub", b"ssh-ed25519 AAAA\n");
    }
    if v == Variant::PersistentNet {
        w(
            "/etc/udev/rules.d/70-persistent-net.rules",
            b"# generated\nSUBSYSTEM==\"net\", ACTION==\"add\", DRIVERS==\"?*\", ATTR{address}==\"52:54:00:12:34:56\", NAME=\"eth0\"\n",
        );
    } else {
        w("/etc/udev/rules.d/70-persistent-net.rules", b"");
    }
    w("/lib/systemd/system/ufw.service", b"[Unit]\n");
    w("/etc/ufw/ufw.conf", b"ENABLED=no\n");
    if v == Variant::Firewall {
        ln(
            "/lib/systemd/system/ufw.service",
            "/etc/systemd/system/multi-user.target.wants/ufw.service",
        );
    }
}

fn tar_of(tree: &Path, out: &Path) {
    run_ok(
        Command::new("tar")
            .arg("-C")
            .arg(tree)
            .arg("-cf")
            .arg(out)
            .arg("."),
    );
}

fn assemble(dir: &Path, tar: &Path, name: &str, extra: &[&str]) {
    let o = run(Command::new(dibr_bin())
        .args(["assemble", "--from"])
        .arg(tar)
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

/// `tree` as `dir/NAME.tar`, assembled into `dir/NAME.<type>`.
fn tree_image(dir: &Path, tree: &Path, name: &str, extra: &[&str]) {
    let tar = dir.join(format!("{name}.tar"));
    tar_of(tree, &tar);
    assemble(dir, &tar, name, extra);
}

fn dibr(args: &[&std::ffi::OsStr]) -> Output {
    run(Command::new(dibr_bin()).args(args))
}

fn check(img: &Path) -> (bool, String) {
    let o = dibr(&["check".as_ref(), img.as_os_str()]);
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr),
    )
}

/// get-kernel into `prefix`; the outputs must equal the given bytes.
fn get_kernel_is(img: &Path, prefix: &Path, kernel: &[u8], initrd: Option<&[u8]>) -> String {
    let o = dibr(&[
        "get-kernel".as_ref(),
        img.as_os_str(),
        "-o".as_ref(),
        prefix.as_os_str(),
    ]);
    let text = out_text(&o);
    assert!(o.status.success(), "get-kernel {img:?}\n{text}");
    let k = fs::read(with_ext(prefix, "vmlinuz")).unwrap();
    assert!(
        k == kernel,
        "{img:?}: vmlinuz differs ({} bytes vs {})\n{text}",
        k.len(),
        kernel.len()
    );
    match initrd {
        Some(i) => assert!(
            fs::read(with_ext(prefix, "initrd")).unwrap() == i,
            "{img:?}: initrd differs\n{text}"
        ),
        None => assert!(
            !with_ext(prefix, "initrd").exists(),
            "{img:?}: unexpected initrd"
        ),
    }
    let _ = fs::remove_file(with_ext(prefix, "vmlinuz"));
    let _ = fs::remove_file(with_ext(prefix, "initrd"));
    text
}

fn with_ext(prefix: &Path, ext: &str) -> PathBuf {
    PathBuf::from(format!("{}.{ext}", prefix.display()))
}

/// Every item line, as (status, item).
fn items(out: &str) -> Vec<(String, String)> {
    out.lines()
        .filter_map(|l| {
            let (st, rest) = l.split_once(' ')?;
            matches!(st, "PASS" | "FAIL" | "WARN").then(|| {
                (
                    st.to_string(),
                    rest.split(':').next().unwrap_or("").to_string(),
                )
            })
        })
        .collect()
}

#[test]
fn good_image_passes_and_gives_its_kernel() {
    let test = "good_image_passes_and_gives_its_kernel";
    if !require(test, false, TOOLS) {
        return;
    }
    let work = scratch(test);
    let dir = work.path();
    let tree = dir.join("tree");
    cloud_tree(&tree, Variant::Good, true);
    tree_image(dir, &tree, "good", &["-t", "raw,qcow2", "--layout", "efi"]);
    for ext in ["raw", "qcow2"] {
        let img = dir.join(format!("good.{ext}"));
        let (ok, out) = check(&img);
        assert!(ok, "{test}: check {ext} failed\n{out}");
        let it = items(&out);
        for name in [
            "root-partition-last",
            "grow-root",
            "no-mac-address",
            "sshd",
            "ssh-host-keys",
            "no-firewall",
            "cloud-init",
            "cloud-init-datasource",
            "kernel",
            "serial-console",
            "machine-id",
        ] {
            assert!(
                it.contains(&("PASS".to_string(), name.to_string())),
                "{test}: {ext}: {name} did not pass\n{out}"
            );
        }
        // The last line counts the items.
        let n = it.len();
        assert_eq!(
            String::from_utf8_lossy(&dibr(&["check".as_ref(), img.as_os_str()]).stdout)
                .lines()
                .last(),
            Some(format!("{n} passed, 0 warnings, 0 failed").as_str()),
            "{test}: {ext}: summary line\n{out}"
        );
        // The grub.cfg's default entry, not the older kernel.
        let text = get_kernel_is(
            &img,
            &dir.join(format!("k-{ext}")),
            &kernel_bytes(),
            Some(&initrd_bytes()),
        );
        assert!(
            text.contains("grub.cfg"),
            "{test}: not via grub.cfg\n{text}"
        );
    }
    // Default prefix: the image name without its extension, beside it.
    let o = dibr(&["get-kernel".as_ref(), dir.join("good.qcow2").as_os_str()]);
    assert!(o.status.success(), "{}", out_text(&o));
    assert!(fs::read(dir.join("good.vmlinuz")).unwrap() == kernel_bytes());
    assert!(fs::read(dir.join("good.initrd")).unwrap() == initrd_bytes());
    // --json is valid JSON with every item.
    let o = dibr(&[
        "check".as_ref(),
        "--json".as_ref(),
        dir.join("good.qcow2").as_os_str(),
    ]);
    assert!(o.status.success(), "{}", out_text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("check --json output");
    assert_eq!(v["passed"], true);
    assert!(v["items"].as_array().unwrap().len() >= 11);

    // As the unprivileged user: nothing here needs privileges.
    let Some(s) = stage(test) else { return };
    let img = s.out.join("good.qcow2");
    fs::copy(dir.join("good.qcow2"), &img).unwrap();
    let user_cmd = |args: &[&str]| {
        let mut c = Command::new(tool("setpriv"));
        c.args([
            &format!("--reuid={USER}"),
            &format!("--regid={USER}"),
            "--init-groups",
        ])
        .arg(&s.bin)
        .args(args)
        .current_dir(&s.out);
        run(&mut c)
    };
    let o = user_cmd(&["get-kernel", "good.qcow2", "-o", "user"]);
    assert!(o.status.success(), "{test}: as {USER}\n{}", out_text(&o));
    assert!(fs::read(s.out.join("user.vmlinuz")).unwrap() == kernel_bytes());
    assert!(fs::read(s.out.join("user.initrd")).unwrap() == initrd_bytes());
    let o = user_cmd(&["check", "good.qcow2"]);
    assert!(
        o.status.success(),
        "{test}: check as {USER}\n{}",
        out_text(&o)
    );
}

#[test]
fn broken_images_name_the_failing_item() {
    let test = "broken_images_name_the_failing_item";
    if !require(test, false, TOOLS) {
        return;
    }
    let work = scratch(test);
    let dir = work.path();
    for (v, item, words) in [
        (
            Variant::HostKey,
            "ssh-host-keys",
            "/etc/ssh/ssh_host_ed25519_key",
        ),
        (
            Variant::PersistentNet,
            "no-mac-address",
            "52:54:00:12:34:56",
        ),
        (
            Variant::MachineId,
            "machine-id",
            "4f1c0e5b2d7a4c3e9b8a7f6e5d4c3b2a",
        ),
        (Variant::NoConsole, "serial-console", "console=ttyS0"),
        (Variant::Firewall, "no-firewall", "ufw.service"),
        (Variant::SshdDisabled, "sshd", "not enabled"),
        (Variant::NoCloudInit, "cloud-init", "not installed"),
    ] {
        let name = format!("{v:?}").to_lowercase();
        let tree = dir.join(&name);
        cloud_tree(&tree, v, true);
        tree_image(dir, &tree, &name, &["-t", "raw", "--layout", "mbr"]);
        let (ok, out) = check(&dir.join(format!("{name}.raw")));
        assert!(!ok, "{test}: {v:?}: check passed\n{out}");
        let line = out
            .lines()
            .find(|l| l.starts_with(&format!("FAIL {item}:")))
            .unwrap_or_else(|| panic!("{test}: {v:?}: no 'FAIL {item}'\n{out}"));
        assert!(line.contains(words), "{test}: {v:?}: {line}");
        // Only that item (and, without cloud-init, what needs it) fails.
        let others: Vec<_> = items(&out)
            .into_iter()
            .filter(|(s, i)| {
                s == "FAIL" && i != item && !(v == Variant::NoCloudInit && i == "grow-root")
            })
            .collect();
        assert!(
            others.is_empty(),
            "{test}: {v:?}: also failed {others:?}\n{out}"
        );
        fs::remove_dir_all(&tree).unwrap();
    }
}

/// Host keys that only cloud-init makes: sshd fails at a boot without a
/// datasource, so sshd and ssh-host-keys warn (saying why) instead of
/// passing; the summary line counts the warnings. A keygen in the ssh
/// unit's drop-in counts as making them without cloud-init.
#[test]
fn host_keys_only_from_cloud_init_warn() {
    let test = "host_keys_only_from_cloud_init_warn";
    if !require(test, false, TOOLS) {
        return;
    }
    let work = scratch(test);
    let dir = work.path();
    let tree = dir.join("tree");
    cloud_tree(&tree, Variant::KeysOnlyFromCloudInit, true);
    tree_image(dir, &tree, "ci-keys", &["-t", "raw", "--layout", "mbr"]);
    let (ok, out) = check(&dir.join("ci-keys.raw"));
    assert!(ok, "{test}: warnings must not fail the check\n{out}");
    let line = |item: &str| {
        out.lines()
            .find(|l| l.contains(&format!(" {item}:")))
            .unwrap_or_else(|| panic!("{test}: no {item} line\n{out}"))
            .to_string()
    };
    let keys = line("ssh-host-keys");
    assert!(
        keys.starts_with("WARN ")
            && keys.contains("only by cloud-init")
            && keys.contains("sshd fails"),
        "{test}: {keys}"
    );
    assert!(
        line("sshd").starts_with("WARN "),
        "{test}: {}",
        line("sshd")
    );
    let passed = items(&out).iter().filter(|(s, _)| s == "PASS").count();
    assert!(
        out.lines()
            .any(|l| l == format!("{passed} passed, 2 warnings, 0 failed")),
        "{test}: no summary line for 2 warnings\n{out}"
    );
    fs::remove_dir_all(&tree).unwrap();

    let tree = dir.join("tree2");
    cloud_tree(&tree, Variant::KeygenInSshUnit, true);
    tree_image(dir, &tree, "unit-keys", &["-t", "raw", "--layout", "mbr"]);
    let (ok, out) = check(&dir.join("unit-keys.raw"));
    assert!(ok, "{test}: keygen in ssh.service.d\n{out}");
    let keys = out
        .lines()
        .find(|l| l.contains(" ssh-host-keys:"))
        .unwrap_or_default();
    assert!(
        keys.starts_with("PASS ") && keys.contains("/etc/systemd/system/ssh.service.d/keygen.conf"),
        "{test}: {keys}\n{out}"
    );
    assert!(
        out.lines().any(|l| l.starts_with("PASS sshd:")),
        "{test}\n{out}"
    );
}

#[test]
fn kernel_by_version_and_symlinks_without_grub_cfg() {
    let test = "kernel_by_version_and_symlinks_without_grub_cfg";
    if !require(test, false, TOOLS) {
        return;
    }
    let work = scratch(test);
    let dir = work.path();
    // No grub.cfg: the newest /boot/vmlinuz-* by version (6.1.0-13 over
    // 6.1.0-9), itself an absolute symlink into /usr/lib/modules.
    let tree = dir.join("tree");
    cloud_tree(&tree, Variant::Good, false);
    let kdir = tree.join(format!("usr/lib/modules/{KVER}"));
    fs::create_dir_all(&kdir).unwrap();
    fs::rename(
        tree.join(format!("boot/vmlinuz-{KVER}")),
        kdir.join("vmlinuz"),
    )
    .unwrap();
    symlink(
        format!("/usr/lib/modules/{KVER}/vmlinuz"),
        tree.join(format!("boot/vmlinuz-{KVER}")),
    )
    .unwrap();
    tree_image(dir, &tree, "v", &["-t", "raw,qcow2", "--layout", "efi"]);
    for ext in ["raw", "qcow2"] {
        let text = get_kernel_is(
            &dir.join(format!("v.{ext}")),
            &dir.join("v-out"),
            &kernel_bytes(),
            Some(&initrd_bytes()),
        );
        assert!(text.contains("newest kernel in /boot"), "{test}: {text}");
    }
    let (_, out) = check(&dir.join("v.qcow2"));
    assert!(out.contains("WARN serial-console"), "{test}: {out}");

    // Only the /vmlinuz and /initrd.img links (relative, through a
    // directory link) to files not named vmlinuz-*.
    let tree = dir.join("tree2");
    fs::create_dir_all(tree.join("usr/lib/kernel/a")).unwrap();
    fs::create_dir_all(tree.join("etc")).unwrap();
    fs::write(tree.join("etc/hostname"), "x\n").unwrap();
    fs::write(tree.join("usr/lib/kernel/a/bzImage"), kernel_bytes()).unwrap();
    fs::write(tree.join("usr/lib/kernel/a/initramfs"), initrd_bytes()).unwrap();
    symlink("a", tree.join("usr/lib/kernel/current")).unwrap();
    symlink("usr/lib/kernel/current/bzImage", tree.join("vmlinuz")).unwrap();
    symlink(
        "./usr/lib/kernel/../kernel/current/initramfs",
        tree.join("initrd.img"),
    )
    .unwrap();
    tree_image(dir, &tree, "l", &["-t", "qcow2", "--layout", "mbr"]);
    let text = get_kernel_is(
        &dir.join("l.qcow2"),
        &dir.join("l-out"),
        &kernel_bytes(),
        Some(&initrd_bytes()),
    );
    assert!(text.contains("/vmlinuz link"), "{test}: {text}");
}

/// MBR with an ext4 /boot partition (fstab LABEL=boot) and the root as a
/// logical partition after it.
const SEPARATE_BOOT: &str = "
- local_loop:
    name: image0
- partitioning:
    base: image0
    label: mbr
    partitions:
      - name: boot
        flags: [ primary ]
        size: 48MiB
        mkfs:
          type: ext4
          label: boot
          mount:
            mount_point: /boot
            fstab:
              options: defaults
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
fn separate_boot_partition() {
    let test = "separate_boot_partition";
    if !require(test, false, TOOLS) {
        return;
    }
    let work = scratch(test);
    let dir = work.path();
    let tree = dir.join("tree");
    cloud_tree(&tree, Variant::Good, false);
    // grub-mkconfig's paths for a separate /boot: relative to it.
    write_file(
        &tree.join("boot/grub/grub.cfg"),
        format!(
            "menuentry 'Sep' {{\n\tlinux /vmlinuz-{KVER} root=LABEL=cloudimg-rootfs ro console=ttyS0\n\tinitrd /initrd.img-{KVER}\n}}\n"
        )
        .as_bytes(),
    );
    let tar = dir.join("s.tar");
    tar_of(&tree, &tar);
    let cfg = dir.join("sep.yaml");
    fs::write(&cfg, SEPARATE_BOOT).unwrap();
    let cfg = format!("file://{}", cfg.display());
    assemble(
        dir,
        &tar,
        "s",
        &["-t", "raw,qcow2", "--block-device-config", &cfg],
    );
    for ext in ["raw", "qcow2"] {
        let img = dir.join(format!("s.{ext}"));
        let text = get_kernel_is(
            &img,
            &dir.join("s-out"),
            &kernel_bytes(),
            Some(&initrd_bytes()),
        );
        assert!(
            text.contains("/boot: partition 1 (ext4 'boot')"),
            "{test}: {text}"
        );
        let (ok, out) = check(&img);
        assert!(ok, "{test}: {ext}\n{out}");
        assert!(
            out.contains("PASS root-partition-last: partition 5"),
            "{test}: {out}"
        );
    }
}

/// The whole virtual disk as our qcow2 reader sees it, hashed.
fn reader_sha256(img: &Path) -> String {
    let image = dibr::inspect::disk::Image::open(img).unwrap();
    let d = image.disk();
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 4 << 20];
    let mut off = 0u64;
    while off < d.size() {
        let n = (d.size() - off).min(buf.len() as u64) as usize;
        d.read_at(off, &mut buf[..n]).unwrap();
        h.update(&buf[..n]);
        off += n as u64;
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn qemu_raw_sha256(img: &Path, dir: &Path) -> String {
    let raw = dir.join("qemu.raw");
    run_ok(
        Command::new(tool("qemu-img"))
            .args(["convert", "-O", "raw"])
            .arg(img)
            .arg(&raw),
    );
    let s = sha256_file(&raw);
    fs::remove_file(raw).unwrap();
    s
}

#[test]
fn qcow2_reader_matches_qemu_img() {
    let test = "qcow2_reader_matches_qemu_img";
    if !require(test, false, TOOLS) {
        return;
    }
    let work = scratch(test);
    let dir = work.path();
    let tree = dir.join("tree");
    cloud_tree(&tree, Variant::Good, true);
    tree_image(dir, &tree, "q", &["-t", "raw,qcow2", "--layout", "efi"]);
    let raw = dir.join("q.raw");
    let want = sha256_file(&raw);
    let qimg = |out: &str, opts: &[&str]| {
        let p = dir.join(out);
        run_ok(
            Command::new(tool("qemu-img"))
                .args(["convert", "-O", "qcow2"])
                .args(opts)
                .arg(&raw)
                .arg(&p),
        );
        p
    };
    let mut cases = vec![
        ("dibr", dir.join("q.qcow2")),
        ("v3 zlib", qimg("z.qcow2", &["-c"])),
        ("v2 zlib", qimg("v2.qcow2", &["-c", "-o", "compat=0.10"])),
        (
            "v3 zstd",
            qimg("zstd.qcow2", &["-c", "-o", "compression_type=zstd"]),
        ),
        (
            "4k clusters, uncompressed",
            qimg("u.qcow2", &["-o", "cluster_size=4096"]),
        ),
    ];
    // Zero clusters (v3 L2 bit 0) over allocated data: the reader must
    // return zeros there, as qemu does.
    let zero = qimg("zero.qcow2", &[]);
    run_ok(
        Command::new(tool("qemu-io"))
            .args(["-f", "qcow2", "-c", "write -z 0 64M"])
            .arg(&zero),
    );
    cases.push(("zero clusters", zero));
    for (what, img) in &cases {
        let got = reader_sha256(img);
        let qemu = qemu_raw_sha256(img, dir);
        assert_eq!(
            got, qemu,
            "{test}: {what}: reader differs from qemu-img convert"
        );
        if *what != "zero clusters" {
            assert_eq!(got, want, "{test}: {what}: differs from the raw disk");
        }
    }
    // The compressed ones really hold compressed clusters (qemu-img map
    // says so), so the reader met them.
    for (what, img) in &cases[..4] {
        let map = run_ok(
            Command::new(tool("qemu-img"))
                .args(["map", "--output=json"])
                .arg(img),
        );
        let map: serde_json::Value = serde_json::from_slice(&map.stdout).unwrap();
        assert!(
            map.as_array()
                .unwrap()
                .iter()
                .any(|e| e["compressed"] == true),
            "{test}: {what}: no compressed cluster"
        );
    }
    get_kernel_is(
        &cases[3].1,
        &dir.join("zstd-out"),
        &kernel_bytes(),
        Some(&initrd_bytes()),
    );

    // A backing file is refused by name; nothing is written.
    let over = dir.join("over.qcow2");
    run_ok(
        Command::new(tool("qemu-img"))
            .args(["create", "-f", "qcow2", "-F", "qcow2", "-b"])
            .arg(&cases[1].1)
            .arg(&over),
    );
    let o = dibr(&[
        "get-kernel".as_ref(),
        over.as_os_str(),
        "-o".as_ref(),
        dir.join("ov").as_os_str(),
    ]);
    let text = out_text(&o);
    assert!(
        !o.status.success() && text.contains("backing file") && text.contains("z.qcow2"),
        "{test}: {text}"
    );
    assert!(!dir.join("ov.vmlinuz").exists());
}

#[test]
fn other_ext4_feature_sets_from_mke2fs() {
    let test = "other_ext4_feature_sets_from_mke2fs";
    if !require(test, false, TOOLS) {
        return;
    }
    let work = scratch(test);
    let dir = work.path();
    let tree = dir.join("tree");
    cloud_tree(&tree, Variant::Good, true);
    // A big /boot: an htree directory once e2fsck -D indexes it.
    for i in 0..3000 {
        write_file(
            &tree.join(format!("boot/many/f{i:05}-with-a-longer-name")),
            b"x",
        );
        if i % 3 == 0 {
            write_file(&tree.join(format!("boot/config-{i}")), b"");
        }
    }
    for (name, args) in [
        (
            "ext4-1k",
            &["-t", "ext4", "-b", "1024", "-O", "^64bit,^metadata_csum"][..],
        ),
        ("ext3", &["-t", "ext3", "-b", "4096"][..]),
        ("ext2-2k", &["-t", "ext2", "-b", "2048"][..]),
        (
            "inline-metabg",
            &[
                "-t",
                "ext4",
                "-O",
                "inline_data,meta_bg,^resize_inode",
                "-I",
                "512",
            ][..],
        ),
    ] {
        let img = dir.join(format!("{name}.img"));
        let o = run(Command::new(tool("mke2fs"))
            .args(["-q", "-F", "-L", "cloudimg-rootfs", "-N", "8000"])
            .args(args)
            .arg("-d")
            .arg(&tree)
            .arg(&img)
            .arg("64M"));
        assert!(
            o.status.success(),
            "{test}: mke2fs {name}\n{}",
            out_text(&o)
        );
        let o = run(Command::new(tool("e2fsck")).args(["-fyD"]).arg(&img));
        assert!(
            o.status.code().unwrap_or(8) < 4,
            "{test}: e2fsck -fyD {name}\n{}",
            out_text(&o)
        );
        let htree = run(Command::new(tool("debugfs"))
            .args(["-R", "htree /boot"])
            .arg(&img));
        assert!(
            out_text(&htree).contains("Root node dump"),
            "{test}: {name}: /boot is not indexed"
        );
        let text = get_kernel_is(
            &img,
            &dir.join(name),
            &kernel_bytes(),
            Some(&initrd_bytes()),
        );
        assert!(text.contains("grub.cfg"), "{test}: {name}: {text}");
        let (ok, out) = check(&img);
        assert!(ok, "{test}: {name}\n{out}");
        assert!(
            out.contains("PASS root-partition-last: one filesystem on the whole disk"),
            "{out}"
        );
        fs::remove_file(img).unwrap();
    }
}

#[test]
fn bookworm_image_gives_its_kernel() {
    let test = "bookworm_image_gives_its_kernel";
    let tar = test_cache().join("boot/bookworm-boot.tar");
    if !tar.exists() {
        // Made by the boot test (mmdebstrap); not worth a download here.
        skip(
            test,
            "no bookworm-boot.tar in the test cache (the boot test makes it)",
        );
        return;
    }
    if !require(test, false, TOOLS) {
        return;
    }
    let work = scratch(test);
    let dir = work.path();
    assemble(dir, &tar, "bw", &["-t", "qcow2", "--layout", "efi"]);
    let listing = run_ok(Command::new("tar").arg("-tf").arg(&tar));
    let names = String::from_utf8_lossy(&listing.stdout).into_owned();
    let kernel = names
        .lines()
        .filter(|l| l.starts_with("./boot/vmlinuz-"))
        .max()
        .expect("a kernel in the bookworm tree")
        .to_string();
    let version = kernel.trim_start_matches("./boot/vmlinuz-");
    let read = |member: &str| run_ok(Command::new("tar").arg("-xOf").arg(&tar).arg(member)).stdout;
    let t0 = std::time::Instant::now();
    get_kernel_is(
        &dir.join("bw.qcow2"),
        &dir.join("bw"),
        &read(&kernel),
        Some(&read(&format!("./boot/initrd.img-{version}"))),
    );
    eprintln!(
        "{test}: get-kernel on the bookworm qcow2 took {:.2}s",
        t0.elapsed().as_secs_f64()
    );
}
