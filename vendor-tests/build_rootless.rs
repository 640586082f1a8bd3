//! `dibr build` as an ordinary user (issue 3, acceptance 2, 4 and 5).
//!
//! Every scenario runs the real binary as the unprivileged CI user
//! `dibr-ci` (created by .ci/run with a subuid/subgid range) through
//! `setpriv`, with the test elements in vendor-tests/elements:
//! `dibr-test-os` builds a tiny tree from host binaries (offline), and
//! `dibr-test-hooks` chowns, setcaps, hard-links, starts a daemon in the
//! chroot and calls `sudo` outside.

mod common;

use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::build::*;
use common::*;
use dibr::tree::EntryKind;

#[test]
fn build_as_user_keeps_owners_caps_links_and_leaves_nothing() {
    let test = "build_as_user_keeps_owners_caps_links_and_leaves_nothing";
    let _serial = serial();
    let Some(s) = stage(test) else { return };
    let b = before();
    let o = build_cmd(
        &s,
        &[
            // -v: the hooks' output (the PROFILING table) on the terminal.
            "-v",
            "-n",
            "-t",
            "tar,tgz",
            "--checksum",
            "-o",
            "img",
            "dibr-test-hooks",
        ],
        &[],
    )
    .output()
    .unwrap();
    let text = out_text(&o);
    assert!(o.status.success(), "{test}: build failed\n{text}");
    assert!(
        text.contains("PROFILING") && text.contains("50-ownership-caps-links"),
        "{test}: no per-hook timing\n{text}"
    );
    let tar = s.out.join("img.tar");
    assert!(s.out.join("img.tgz").is_file(), "{test}: img.tgz missing");
    let m = read_tar(&tar);
    let f42 = &m["f42"];
    assert_eq!(
        (f42.uid, f42.gid),
        (0, 42),
        "{test}: chown 0:42 inside the chroot lost"
    );
    assert_eq!(
        m["f42-link"].kind,
        EntryKind::HardLink(b"f42".to_vec()),
        "{test}: hard link lost"
    );
    assert_eq!(m["suid"].mode & 0o7777, 0o4755, "{test}: setuid bit lost");
    let cap = m["capbin"]
        .xattrs
        .iter()
        .find(|(n, _)| n == b"security.capability")
        .map(|(_, v)| v.clone());
    let cap = cap.unwrap_or_else(|| panic!("{test}: security.capability lost"));
    // vfs_cap_data v2, permitted bit 13 (cap_net_raw), effective flag.
    assert_eq!(cap.len(), 20, "{test}: capability value {cap:?}");
    assert_eq!(
        cap[4..8],
        [0x00, 0x20, 0x00, 0x00],
        "{test}: cap_net_raw not set: {cap:?}"
    );
    assert!(
        m.contains_key("from-sudo"),
        "{test}: sudo in an outside hook did not run its command"
    );
    assert_eq!(
        m["dev/null"].kind,
        EntryKind::CharDev { major: 1, minor: 3 },
        "{test}: /dev/null not synthesised"
    );
    // first-boot.d: hooks and a one-shot unit, enabled.
    for p in [
        "usr/local/lib/dibr/first-boot.d/10-first-boot-marker",
        "usr/local/lib/dibr/dib-run-parts",
        "etc/systemd/system/dibr-first-boot.service",
    ] {
        assert!(m.contains_key(p), "{test}: first-boot.d: {p} missing");
    }
    assert_eq!(
        m["etc/systemd/system/multi-user.target.wants/dibr-first-boot.service"].kind,
        EntryKind::Symlink(b"../dibr-first-boot.service".to_vec()),
        "{test}: first-boot unit not enabled"
    );
    // --checksum: the real tools agree with the side files.
    for (tool_name, ext) in [("sha256sum", "sha256"), ("md5sum", "md5")] {
        let o = Command::new(tool_name)
            .arg("-c")
            .arg(format!("img.tar.{ext}"))
            .current_dir(&s.out)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{test}: {tool_name} -c failed\n{}",
            out_text(&o)
        );
    }
    assert!(
        !m.contains_key("tmp/in_target.d"),
        "{test}: hooks leaked into the image"
    );
    // Files owned by the user outside, not by a subuid: the output is usable.
    use std::os::unix::fs::MetadataExt;
    let uid = fs::metadata(&tar).unwrap().uid();
    assert_ne!(uid, 0, "{test}: output owned by root");
    assert_no_leftovers(test, &b);
}

#[test]
fn build_is_reproducible_with_source_date_epoch() {
    let test = "build_is_reproducible_with_source_date_epoch";
    let _serial = serial();
    let Some(s) = stage(test) else { return };
    let mut sums = Vec::new();
    for name in ["r1", "r2"] {
        let o = build_cmd(
            &s,
            &["-n", "-t", "tar", "-o", name, "dibr-test-hooks"],
            &[("SOURCE_DATE_EPOCH", "1700000000")],
        )
        .output()
        .unwrap();
        assert!(o.status.success(), "{test}: build failed\n{}", out_text(&o));
        sums.push(sha256_file(&s.out.join(format!("{name}.tar"))));
    }
    assert_eq!(sums[0], sums[1], "{test}: two builds differ");
}

fn expect_failure(test: &str, s: &Stage, args: &[&str], words: &[&str]) {
    let b = before();
    let o = build_cmd(s, args, &[]).output().unwrap();
    let text = out_text(&o);
    assert!(!o.status.success(), "{test}: build succeeded\n{text}");
    let lower = text.to_lowercase();
    for w in words {
        assert!(
            lower.contains(&w.to_lowercase()),
            "{test}: message lacks {w:?}\n{text}"
        );
    }
    let left: Vec<_> = fs::read_dir(&s.out)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "{test}: output left behind: {left:?}");
    assert_no_leftovers(test, &b);
}

#[test]
fn failing_hook_names_it_and_leaves_nothing() {
    let test = "failing_hook_names_it_and_leaves_nothing";
    let _serial = serial();
    let Some(s) = stage(test) else { return };
    expect_failure(
        test,
        &s,
        &["-n", "-t", "tar", "-o", "f", "dibr-test-fail"],
        &[
            "install.d",
            "60-this-hook-fails",
            "about to fail on purpose",
        ],
    );
}

#[test]
fn unknown_element_is_refused() {
    let test = "unknown_element_is_refused";
    let _serial = serial();
    let Some(s) = stage(test) else { return };
    expect_failure(
        test,
        &s,
        &[
            "-n",
            "-t",
            "tar",
            "-o",
            "u",
            "dibr-test-os",
            "no-such-element",
        ],
        &["no-such-element", "not found"],
    );
}

#[test]
fn two_operating_systems_conflict() {
    let test = "two_operating_systems_conflict";
    let _serial = serial();
    let Some(s) = stage(test) else { return };
    let second = s.elements.join("dibr-test-os2");
    fs::create_dir(&second).unwrap();
    fs::write(second.join("element-provides"), "operating-system\n").unwrap();
    run_ok(Command::new("chmod").args(["-R", "a+rX"]).arg(&second));
    expect_failure(
        test,
        &s,
        &[
            "-n",
            "-t",
            "tar",
            "-o",
            "c",
            "dibr-test-os",
            "dibr-test-os2",
        ],
        &["operating-system"],
    );
}

#[test]
fn interrupt_during_install_cleans_up() {
    let test = "interrupt_during_install_cleans_up";
    let _serial = serial();
    let Some(s) = stage(test) else { return };
    let slow = s.elements.join("dibr-test-slow");
    fs::create_dir_all(slow.join("install.d")).unwrap();
    fs::write(slow.join("element-deps"), "dibr-test-os\n").unwrap();
    let hook = slow.join("install.d/50-slow");
    fs::write(&hook, "#!/bin/bash\necho slow-hook-started\nsleep 30\n").unwrap();
    fs::set_permissions(&hook, fs::Permissions::from_mode(0o755)).unwrap();
    run_ok(Command::new("chmod").args(["-R", "a+rX"]).arg(&slow));
    let b = before();
    let mut child = build_cmd(&s, &["-n", "-t", "tar", "-o", "i", "dibr-test-slow"], &[])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the hook to start, then interrupt the build as Ctrl-C would.
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let t0 = Instant::now();
    while user_processes("sleep 30").is_empty() {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "{test}: the slow hook never started"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // setpriv execs dibr, so the child's pid is dibr's.
    run_ok(Command::new("kill").args(["-INT", &child.id().to_string()]));
    let status = child.wait().unwrap();
    let out = reader.join().unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(
        !status.success(),
        "{test}: interrupted build succeeded\n{out}{err}"
    );
    assert!(
        err.contains("interrupted"),
        "{test}: no interruption message\n{err}"
    );
    let left: Vec<_> = fs::read_dir(&s.out)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "{test}: output left behind: {left:?}");
    assert_no_leftovers(test, &b);
}

#[test]
fn dib_command_names_dispatch() {
    let test = "dib_command_names_dispatch";
    let _serial = serial();
    let Some(s) = stage(test) else { return };
    let info = s.bin.with_file_name("element-info");
    std::os::unix::fs::symlink(&s.bin, &info).unwrap();
    let o = Command::new(&info)
        .args(["--env", "dibr-test-hooks"])
        .env("ELEMENTS_PATH", &s.elements)
        .output()
        .unwrap();
    let text = out_text(&o);
    assert!(o.status.success(), "{test}: element-info failed\n{text}");
    assert!(
        text.contains("export IMAGE_ELEMENT=") && text.contains("dibr-test-os"),
        "{test}: element-info --env output\n{text}"
    );
    let dic = s.bin.with_file_name("disk-image-create");
    std::os::unix::fs::symlink(&s.bin, &dic).unwrap();
    let o = Command::new(&dic)
        .args(["-t", "aci", "dibr-test-os"])
        .output()
        .unwrap();
    let text = out_text(&o);
    assert!(
        !o.status.success() && text.contains("-t aci is not supported yet"),
        "{test}: disk-image-create did not act as dibr build\n{text}"
    );
}

/// `dibr build -t raw,tar` with block-device-efi: the captured tree goes
/// through the assembler with the element's block-device-default.yaml
/// (DIB's lookup), one build gives the disk and the tarball, and the disk
/// passes the same tools as `dibr assemble`'s: sgdisk -v, partx, e2fsck
/// on the root, fsck.fat on the ESP, owners from the chroot kept in ext4,
/// /etc/fstab as DIB writes it in both the disk and the tar.
#[test]
fn build_disk_with_block_device_efi() {
    let test = "build_disk_with_block_device_efi";
    let _serial = serial();
    if !require(
        test,
        true,
        &["sgdisk", "partx", "e2fsck", "debugfs", "fsck.fat", "dd"],
    ) {
        return;
    }
    let Some(s) = stage(test) else { return };
    add_shipped(&s, &["block-device-efi"]);
    let b = before();
    let o = build_cmd(
        &s,
        &[
            "-n",
            "-t",
            "raw,tar",
            "--checksum",
            "-o",
            "disk",
            "dibr-test-hooks",
            "block-device-efi",
        ],
        &[("SOURCE_DATE_EPOCH", "1700000000")],
    )
    .output()
    .unwrap();
    let text = out_text(&o);
    assert!(o.status.success(), "{test}: build failed\n{text}");
    assert!(
        text.contains("block-device-efi/block-device-default.yaml"),
        "{test}: config not from the element\n{text}"
    );
    let raw = s.out.join("disk.raw");
    let v = run(Command::new(tool("sgdisk")).arg("-v").arg(&raw));
    assert!(
        out_text(&v).contains("No problems found"),
        "{test}: sgdisk -v\n{}",
        out_text(&v)
    );
    let p = run_ok(
        Command::new("partx")
            .args([
                "--raw",
                "--bytes",
                "--noheadings",
                "--output",
                "START,SIZE,NAME",
            ])
            .arg(&raw),
    );
    let rows: Vec<Vec<u64>> = String::from_utf8_lossy(&p.stdout)
        .lines()
        .map(|l| l.split(' ').take(2).map(|x| x.parse().unwrap()).collect())
        .collect();
    assert_eq!(rows.len(), 3, "{test}: partitions\n{}", out_text(&p));
    let cut = |name: &str, r: &[u64]| {
        let out = s.out.join(name);
        extract(&raw, &out, r[0] * 512, r[1]);
        out
    };
    let esp = cut("esp.img", &rows[0]);
    let f = run(Command::new(tool("fsck.fat")).arg("-n").arg(&esp));
    assert!(f.status.success(), "{test}: fsck.fat\n{}", out_text(&f));
    let root = cut("root.img", &rows[2]);
    e2fsck_ok(&root);
    let st = run_ok(
        Command::new(tool("debugfs"))
            .args(["-R", "stat /f42"])
            .arg(&root),
    );
    assert!(
        out_text(&st).contains("User:     0   Group:    42"),
        "{test}: chown 0:42 lost in ext4\n{}",
        out_text(&st)
    );
    let fstab = run_ok(
        Command::new(tool("debugfs"))
            .args(["-R", "cat /etc/fstab"])
            .arg(&root),
    );
    let fstab = String::from_utf8_lossy(&fstab.stdout).into_owned();
    assert_eq!(
        fstab,
        "LABEL=cloudimg-rootfs / ext4 defaults 0 1\nLABEL=MKFS_ESP /boot/efi vfat defaults 0 2\n",
        "{test}: fstab"
    );
    let m = read_tar(&s.out.join("disk.tar"));
    assert!(
        m.contains_key("etc/fstab") && m.contains_key("f42"),
        "{test}: tar content"
    );
    for ext in ["raw", "tar"] {
        let c = run(Command::new("sha256sum")
            .arg("-c")
            .arg(format!("disk.{ext}.sha256"))
            .current_dir(&s.out));
        assert!(
            c.status.success(),
            "{test}: checksum {ext}\n{}",
            out_text(&c)
        );
    }
    assert_no_leftovers(test, &b);
}

/// The `bootloader` element refuses a tree without GRUB, naming the
/// package, and the build leaves no half image behind.
#[test]
fn bootloader_element_refuses_a_tree_without_grub() {
    let test = "bootloader_element_refuses_a_tree_without_grub";
    let _serial = serial();
    let Some(s) = stage(test) else { return };
    add_shipped(&s, &["vm", "bootloader", "block-device-efi"]);
    let b = before();
    let o = build_cmd(
        &s,
        &[
            "-n",
            "-t",
            "qcow2",
            "-o",
            "nogrub",
            "dibr-test-os",
            "vm",
            "block-device-efi",
        ],
        &[],
    )
    .output()
    .unwrap();
    let text = out_text(&o);
    assert!(!o.status.success(), "{test}: build succeeded\n{text}");
    for want in [
        "50-bootloader",
        "bootloader: /usr/lib/grub/i386-pc/boot.img is missing: install grub-pc-bin",
    ] {
        assert!(text.contains(want), "{test}: output lacks {want:?}\n{text}");
    }
    let left = dir_entries(&s.out);
    assert!(left.is_empty(), "{test}: outputs left: {left:?}");
    assert_no_leftovers(test, &b);
}

/// The namespace-free sandbox modes (issue 11), forced on this host with
/// `DIBR_SANDBOX`, give the same tree as the user-namespace build: chroot
/// mode as root, fakeroot mode as the CI user. The container tests
/// (vendor-tests/containers.rs) reach the same modes by default inside
/// Docker; this keeps them tested where no container runtime is.
#[test]
fn namespace_free_modes_match_the_userns_build() {
    let test = "namespace_free_modes_match_the_userns_build";
    let _serial = serial();
    if !require(test, true, &["fakeroot", "fakechroot", "faked-sysv", "tar"]) {
        return;
    }
    let Some(s) = stage(test) else { return };
    let b = before();
    let args = |name: &'static str| ["-n", "-t", "tar", "-o", name, "dibr-test-hooks"];
    let mode_line = |o: &std::process::Output| {
        out_text(o)
            .lines()
            .find(|l| l.starts_with("dibr: sandbox: "))
            .unwrap_or("")
            .to_string()
    };
    let o = build_cmd(&s, &args("userns"), &[]).output().unwrap();
    assert!(
        o.status.success(),
        "{test}: userns build failed\n{}",
        out_text(&o)
    );
    assert!(
        mode_line(&o).starts_with("dibr: sandbox: userns ("),
        "{test}: {}",
        mode_line(&o)
    );
    let reference = read_tar(&s.out.join("userns.tar"));

    let o = build_cmd(&s, &args("fake"), &[("DIBR_SANDBOX", "fakeroot")])
        .output()
        .unwrap();
    let text = out_text(&o);
    assert!(o.status.success(), "{test}: fakeroot build failed\n{text}");
    assert!(
        mode_line(&o).starts_with("dibr: sandbox: fakeroot ("),
        "{test}: {text}"
    );
    assert!(
        text.contains("killed 1 process(es) the hooks left running"),
        "{test}: daemon not reported\n{text}"
    );
    same_tree(
        test,
        "fakeroot",
        &reference,
        &read_tar(&s.out.join("fake.tar")),
    );

    // chroot mode needs root: run the same binary as root, into a
    // root-owned output directory.
    let out = s.out.join("root");
    fs::create_dir(&out).unwrap();
    let o = Command::new(&s.bin)
        .args([
            "build",
            "-n",
            "-t",
            "tar",
            "-o",
            "chroot",
            "dibr-test-hooks",
        ])
        .env("ELEMENTS_PATH", &s.elements)
        .env("DIBR_SANDBOX", "chroot")
        .env("DIBR_PHASE_CACHE", "off")
        .env("DIB_IMAGE_CACHE", out.join("cache"))
        .current_dir(&out)
        .output()
        .unwrap();
    let text = out_text(&o);
    assert!(o.status.success(), "{test}: chroot build failed\n{text}");
    assert!(
        mode_line(&o).starts_with("dibr: sandbox: chroot ("),
        "{test}: {text}"
    );
    same_tree(
        test,
        "chroot",
        &reference,
        &read_tar(&out.join("chroot.tar")),
    );
    let left = Command::new("pgrep")
        .args(["-a", "-f", "^sleep 1000"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&left.stdout).trim().is_empty(),
        "{test}: chroot mode left a daemon: {}",
        String::from_utf8_lossy(&left.stdout)
    );
    assert_no_leftovers(test, &b);
}

/// Entry by entry: kind (incl. link targets and device numbers), mode,
/// owner and xattrs.
fn same_tree(
    test: &str,
    mode: &str,
    want: &std::collections::BTreeMap<String, TarEntry>,
    got: &std::collections::BTreeMap<String, TarEntry>,
) {
    let mut diffs = Vec::new();
    for (path, w) in want {
        match got.get(path) {
            None => diffs.push(format!("{path}: missing")),
            Some(g) => {
                if (g.kind != w.kind)
                    || g.mode != w.mode
                    || (g.uid, g.gid) != (w.uid, w.gid)
                    || g.xattrs != w.xattrs
                {
                    diffs.push(format!(
                        "{path}: {:?} {:o} {}:{} {:?}, userns build {:?} {:o} {}:{} {:?}",
                        g.kind,
                        g.mode,
                        g.uid,
                        g.gid,
                        g.xattrs,
                        w.kind,
                        w.mode,
                        w.uid,
                        w.gid,
                        w.xattrs
                    ))
                }
            }
        }
    }
    for path in got.keys().filter(|p| !want.contains_key(*p)) {
        diffs.push(format!("{path}: not in the userns build"));
    }
    assert!(
        diffs.is_empty(),
        "{test}: {mode} mode differs:\n{}",
        diffs.join("\n")
    );
}

/// A C program, linked statically so no library of the tree is needed,
/// that tries the classic chroot escape (issue 14): chroot into a
/// subdirectory, climb `..` past it, chroot to where it landed, then read
/// `argv[1]` and create `argv[2]` (host paths).
const ESCAPE_C: &str = r#"
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>
int main(int argc, char **argv) {
    if (argc < 3) return 2;
    mkdir("/escape-x", 0700);
    if (chroot("/escape-x") != 0) perror("chroot(/escape-x)");
    for (int i = 0; i < 64; i++) chdir("..");
    if (chroot(".") != 0) perror("chroot(.)");
    char buf[64] = {0};
    int fd = open(argv[1], O_RDONLY);
    if (fd >= 0 && read(fd, buf, sizeof buf - 1) > 0) printf("PROBE: ESCAPED, read %s\n", buf);
    else printf("PROBE: no read\n");
    int w = open(argv[2], O_WRONLY | O_CREAT, 0644);
    printf(w >= 0 ? "PROBE: ESCAPED, wrote\n" : "PROBE: no write\n");
    rmdir("/escape-x");
    return 0;
}
"#;

/// Issue 14, acceptance 1 (the namespace sandbox): an in-target hook with
/// a static binary cannot leave the tree (pivot_root, not chroot), sees
/// only descriptors 0–2, and the hook environment never shows in `ps`.
#[test]
fn hooks_cannot_leave_the_tree_or_see_secrets() {
    let test = "hooks_cannot_leave_the_tree_or_see_secrets";
    let _serial = serial();
    if !require(test, true, &["gcc", "ps"]) {
        return;
    }
    let Some(s) = stage(test) else { return };
    let b = before();
    // The probe and the element that runs it.
    let src = s.out.parent().unwrap().join("escape.c");
    fs::write(&src, ESCAPE_C).unwrap();
    let probe = s.elements.join("escape-probe");
    run_ok(
        Command::new("gcc")
            .args(["-static", "-O1", "-o"])
            .arg(&probe)
            .arg(&src),
    );
    let el = s.elements.join("dibr-test-escape");
    fs::create_dir_all(el.join("extra-data.d")).unwrap();
    fs::create_dir_all(el.join("install.d")).unwrap();
    fs::write(el.join("element-deps"), "dibr-test-os\n").unwrap();
    let hook = |p: &str, text: &str| {
        let p = el.join(p);
        fs::write(&p, text).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    };
    hook(
        "extra-data.d/10-probe",
        "#!/bin/bash\nset -eu\ncp \"$DIB_TEST_PROBE\" \"$TARGET_ROOT/escape-probe\"\n",
    );
    hook(
        "install.d/10-probe",
        "#!/bin/bash\nset -u\n/escape-probe \"$DIB_TEST_SECRET\" \"$DIB_TEST_WRITE\"\n\
         rm -f /escape-probe\n\
         echo \"FDS: $(ls /proc/self/fd | tr '\\n' ' ')\"\n\
         echo \"CAPBND: $(awk '/^CapBnd:/ {print $2}' /proc/self/status)\"\n\
         mkdir -p /tmp/m && mount -t tmpfs none /tmp/m 2>/dev/null && echo MOUNTED\n\
         sleep 2\n",
    );
    run_ok(Command::new("chmod").args(["-R", "a+rX"]).arg(&s.elements));
    // What the hook must not reach: a mode-600 file of the building user
    // and a place the user may write.
    let home = std::path::PathBuf::from(
        String::from_utf8(
            run_ok(Command::new("sh").args(["-c", "getent passwd dibr-ci | cut -d: -f6"])).stdout,
        )
        .unwrap()
        .trim(),
    );
    let secret = home.join(".dibr-escape-secret");
    let written = home.join("dibr-escape-written");
    fs::write(&secret, "TOPSECRET").unwrap();
    run_ok(Command::new("chown").arg("dibr-ci").arg(&secret));
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).unwrap();
    let _ = fs::remove_file(&written);
    let password = "sekrit-dibr-test-4711";
    let (secret_s, written_s, probe_s) = (
        secret.display().to_string(),
        written.display().to_string(),
        probe.display().to_string(),
    );
    let mut child = build_cmd(
        &s,
        // -v: the probes' lines are read from the terminal.
        &["-v", "-n", "-t", "tar", "-o", "escape", "dibr-test-escape"],
        &[
            ("DIB_TEST_PROBE", probe_s.as_str()),
            ("DIB_TEST_SECRET", secret_s.as_str()),
            ("DIB_TEST_WRITE", written_s.as_str()),
            ("DIB_DEV_USER_PASSWORD", password),
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    // Every process's command line, while the build runs.
    let mut seen_in_ps = Vec::new();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() && started.elapsed() < Duration::from_secs(120) {
        let ps = Command::new("ps").args(["-eo", "args"]).output().unwrap();
        for l in String::from_utf8_lossy(&ps.stdout).lines() {
            if l.contains(password) && !l.starts_with("ps ") {
                seen_in_ps.push(l.to_string());
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let o = child.wait_with_output().unwrap();
    let text = out_text(&o);
    let _ = fs::remove_file(&secret);
    assert!(o.status.success(), "{test}: build failed\n{text}");
    assert!(
        text.contains("PROBE: no read") && text.contains("PROBE: no write"),
        "{test}: the chroot escape worked or did not run\n{text}"
    );
    assert!(
        !text.contains("ESCAPED") && !text.contains("TOPSECRET"),
        "{test}: escaped\n{text}"
    );
    assert!(
        !written.exists(),
        "{test}: the hook wrote {}",
        written.display()
    );
    let fds = text
        .lines()
        .find_map(|l| l.split_once("FDS: "))
        .map(|(_, f)| f.to_string())
        .unwrap_or_default();
    let extra: Vec<&str> = fds
        .split_whitespace()
        .filter(|f| !["0", "1", "2", "3"].contains(f))
        .collect();
    assert!(
        extra.is_empty(),
        "{test}: a hook inherited descriptors {extra:?} (ls itself has 3)\n{text}"
    );
    assert!(
        seen_in_ps.is_empty(),
        "{test}: DIB_DEV_USER_PASSWORD visible in ps: {seen_in_ps:?}"
    );
    // Capabilities bounded to what package managers need: chown stays;
    // CAP_DAC_READ_SEARCH (2, open_by_handle_at) and CAP_SYS_ADMIN (21,
    // mount) are gone, and a mount fails.
    let bnd = text
        .lines()
        .find_map(|l| l.split_once("CAPBND: "))
        .and_then(|(_, c)| u64::from_str_radix(c.trim(), 16).ok())
        .unwrap_or_else(|| panic!("{test}: the hook did not print CapBnd\n{text}"));
    assert!(
        bnd & 1 != 0 && bnd & (1 << 2) == 0 && bnd & (1 << 21) == 0,
        "{test}: hook capability bounding set {bnd:#x}\n{text}"
    );
    assert!(
        !text.contains("MOUNTED"),
        "{test}: a hook mounted a tmpfs\n{text}"
    );
    assert_no_leftovers(test, &b);
}

/// Issue 14, items 3 and 6: builds killed with SIGKILL at random points
/// leave work directories (subuid-owned files included), status files and
/// hidden temporary outputs; the next build reclaims them and says so, no
/// process of theirs lives on, and no partial output set (tar and qcow2
/// with their checksums) is visible at any moment.
#[test]
fn killed_builds_are_reclaimed_by_the_next() {
    let test = "killed_builds_are_reclaimed_by_the_next";
    let _serial = serial();
    let Some(s) = stage(test) else { return };
    let b = before();
    let status_files = || -> Vec<String> {
        fs::read_dir("/tmp")
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("dibr-sandbox-"))
            .collect()
    };
    let args = [
        "-n",
        "-t",
        "tar,qcow2",
        "--checksum",
        "-o",
        "k",
        "dibr-test-hooks",
    ];
    let mut full: Vec<String> = ["k.tar", "k.qcow2"]
        .iter()
        .flat_map(|o| [o.to_string(), format!("{o}.sha256"), format!("{o}.md5")])
        .collect();
    // The qcow2's Glance properties (issue 19) join the set.
    full.push("k.qcow2.glance.json".into());
    let visible = |dir: &std::path::Path| -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .map(|r| {
                r.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| !n.starts_with('.'))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    let status_before = status_files();
    // The time a whole build takes here: the kills spread over it.
    let t0 = Instant::now();
    let o = build_cmd(&s, &args, &[]).output().unwrap();
    let whole = t0.elapsed();
    assert!(o.status.success(), "{test}: first build\n{}", out_text(&o));
    let mut expected = full.clone();
    expected.sort();
    assert_eq!(
        visible(&s.out),
        expected,
        "{test}: the outputs of a whole build"
    );
    let mut seed = std::process::id() as u64;
    let (mut sets_seen, mut transient) = (0, 0);
    for round in 0..20 {
        for n in visible(&s.out) {
            fs::remove_file(s.out.join(n)).unwrap();
        }
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let span = whole.as_millis() as u64 + 200;
        let delay = Duration::from_millis(50 + (seed >> 33) % span);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        // Several names cannot appear in one step (POSIX has no
        // multi-file rename): during the microseconds of a commit's
        // renames a reader may see some of them. What must hold is that a
        // commit, once begun, always completes: any partial sample is a
        // subset of the set and the round ends with the whole set.
        let watcher = {
            let (stop, dir, expected) = (stop.clone(), s.out.clone(), expected.clone());
            std::thread::spawn(move || -> (bool, Vec<Vec<String>>) {
                let (mut complete, mut partial) = (false, Vec::new());
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let v = visible(&dir);
                    if v == expected {
                        complete = true;
                    } else if !v.is_empty() {
                        partial.push(v);
                    }
                    std::thread::sleep(Duration::from_micros(200));
                }
                (complete, partial)
            })
        };
        let mut c = build_cmd(&s, &args, &[])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        // setpriv execs dibr: the child is dibr itself.
        let _ = c.kill();
        let _ = c.wait();
        // A commit under way finishes in its own process.
        let t = Instant::now();
        while !user_processes("__commit-outputs").is_empty()
            && t.elapsed() < Duration::from_secs(20)
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(20));
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let (complete, partial) = watcher.join().unwrap();
        let v = visible(&s.out);
        assert!(
            v.is_empty() || v == expected,
            "{test}: round {round} (killed after {delay:?}): partial output set after the kill: {v:?}"
        );
        for p in &partial {
            assert!(
                v == expected && p.iter().all(|n| expected.contains(n)),
                "{test}: round {round} (killed after {delay:?}): {p:?} was visible, and the round ended with {v:?}"
            );
        }
        sets_seen += (complete || v == expected) as usize;
        transient += partial.len();
    }
    eprintln!(
        "{test}: 20 kills over {whole:?} builds; {sets_seen} output sets completed, \
         {transient} samples caught a commit mid-rename"
    );
    // Each killed build reclaimed its predecessors' when it started; what
    // the last ones left is for the next build.
    let pending: Vec<_> = work_dirs()
        .into_iter()
        .filter(|d| !b.work.contains(d))
        .collect();
    let o = build_cmd(&s, &args, &[]).output().unwrap();
    let text = out_text(&o);
    assert!(
        o.status.success(),
        "{test}: the build after the kills failed\n{text}"
    );
    if !pending.is_empty() {
        assert!(
            text.contains("of builds that died, freeing"),
            "{test}: {pending:?} were left, and the next build did not say it reclaimed them\n{text}"
        );
    }
    for d in &pending {
        assert!(!d.exists(), "{test}: {} not reclaimed\n{text}", d.display());
    }
    assert_eq!(
        visible(&s.out),
        expected,
        "{test}: the outputs of the last build"
    );
    let hidden: Vec<String> = fs::read_dir(&s.out)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(
        hidden.is_empty(),
        "{test}: temporary outputs of killed builds left: {hidden:?}\n{text}"
    );
    let new_status: Vec<String> = status_files()
        .into_iter()
        .filter(|f| !status_before.contains(f))
        .collect();
    assert!(
        new_status.is_empty(),
        "{test}: status files left: {new_status:?}"
    );
    let procs = user_processes("__sandbox|__commit-outputs|sleep 1000");
    assert!(
        procs.is_empty(),
        "{test}: processes of killed builds: {procs:?}"
    );
    assert_no_leftovers(test, &b);
}
